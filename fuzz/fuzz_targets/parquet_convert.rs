//! Arbitrary bytes as a Parquet file, converted with a generic spec (a boolean or integer
//! label pair, hashed ids, a learned vocabulary, percentile buckets, a list bag, a dense
//! column, a group): a dataset or a typed error, never a panic; a failed conversion leaves
//! no output directory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shards::convert::{BagSpec, ColumnSpec, ConvertOptions, CsvSpec, InputFormat, convert_as};

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("resflow-fuzz-parquet-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("input.parquet");
    std::fs::write(&input, data).unwrap();
    let _ = shards::convert::read_header(&input);
    for (k, spec) in [spec(true), spec(false)].iter().enumerate() {
        let out = dir.join(format!("out{k}"));
        let options = ConvertOptions { strict: k == 1, rows_per_shard: 7, ..ConvertOptions::default() };
        if convert_as(&input, InputFormat::Parquet, spec, &out, options).is_err() {
            assert!(!out.exists(), "a failed conversion left its output behind");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
});

/// The spec of the seed corpus's columns; `learn` adds the encodings that need a first pass.
fn spec(learn: bool) -> CsvSpec {
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
