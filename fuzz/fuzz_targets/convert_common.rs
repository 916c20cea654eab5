//! What the conversion targets share: a scratch directory holding the fuzz input, the
//! conversions run on it (a failed one must leave no output directory), and the generic
//! spec of the seed corpora's columns.

use std::path::PathBuf;

use shards::convert::{BagSpec, ColumnSpec, ConvertOptions, CsvSpec, InputFormat, convert_as};

/// A fresh directory holding the fuzz input as `input.<ext>`, removed when dropped.
pub struct Scratch {
    dir: PathBuf,
    /// The input file.
    pub input: PathBuf,
}

impl Scratch {
    /// The directory `resflow-fuzz-<target>-<pid>` of the temporary directory, emptied,
    /// with `data` written to `input.<ext>`.
    pub fn new(target: &str, ext: &str, data: &[u8]) -> Self {
        let dir = std::env::temp_dir().join(format!("resflow-fuzz-{target}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let input = dir.join(format!("input.{ext}"));
        std::fs::write(&input, data).unwrap();
        Self { dir, input }
    }

    /// Converts the input as `format` with each spec (the second one strictly), in shards
    /// of 7 rows: a dataset or a typed error, and a failed conversion leaves no output.
    pub fn convert_each(&self, format: InputFormat, specs: &[CsvSpec]) {
        for (k, spec) in specs.iter().enumerate() {
            let out = self.dir.join(format!("out{k}"));
            let options = ConvertOptions { strict: k == 1, rows_per_shard: 7, ..ConvertOptions::default() };
            if convert_as(&self.input, format, spec, &out, options).is_err() {
                assert!(!out.exists(), "a failed conversion left its output behind");
            }
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The generic spec of the seed corpora's columns (labels `a`, `b`; ids `u`, `v`, `q`; the
/// bag `t`; the dense column `x`; the group `g`). `learn` adds the encodings that need a
/// first pass (hashed ids, a learned vocabulary, percentile buckets, standardised dense
/// features); without it `q` is a plain id column.
pub fn spec(learn: bool) -> CsvSpec {
    let single = if learn {
        vec![
            ColumnSpec { hash_buckets: Some(13), ..ColumnSpec::ids("u") },
            ColumnSpec { vocabulary: true, min_count: Some(2), ..ColumnSpec::ids("v") },
            ColumnSpec { quantiles: Some(3), ..ColumnSpec::ids("q") },
        ]
    } else {
        vec![ColumnSpec { vocab: Some(100), ..ColumnSpec::ids("q") }]
    };
    CsvSpec {
        labels: vec!["a".into(), "b".into()],
        tasks: vec![],
        targets: vec![],
        single,
        multi: vec![BagSpec {
            column: "t".into(),
            separator: ';',
            vocab: Some(9),
            hash_buckets: None,
            vocabulary: false,
            min_count: None,
            pooling: shards::Pooling::Sum,
        }],
        dense: vec!["x".into()],
        group: Some("g".into()),
        weight: None,
        item: None,
        soft_labels: false,
        funnel: true,
        standardize: learn,
    }
}
