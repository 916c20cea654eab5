//! Arbitrary bytes as a CSV file, converted with the AliExpress layout and with a generic
//! spec (hashed ids, a learned vocabulary, percentile buckets, a bag, a dense column, a
//! group): a dataset or a typed error, never a
//! panic; a failed conversion leaves no output directory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shards::convert::{ConvertOptions, CsvSpec, aliexpress_spec, convert_csv};

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("resflow-fuzz-csv-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("input.csv");
    std::fs::write(&input, data).unwrap();
    let generic: CsvSpec = serde_json_spec();
    for (k, spec) in [aliexpress_spec(), generic].iter().enumerate() {
        let out = dir.join(format!("out{k}"));
        let options = ConvertOptions { strict: k == 1, rows_per_shard: 7, ..ConvertOptions::default() };
        if convert_csv(&input, spec, &out, options).is_err() {
            assert!(!out.exists(), "a failed conversion left its output behind");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
});

fn serde_json_spec() -> CsvSpec {
    CsvSpec {
        labels: vec!["a".into(), "b".into()],
        tasks: vec![],
        single: vec![
            shards::convert::ColumnSpec { hash_buckets: Some(13), ..shards::convert::ColumnSpec::ids("u") },
            shards::convert::ColumnSpec { vocabulary: true, min_count: Some(2), ..shards::convert::ColumnSpec::ids("v") },
            shards::convert::ColumnSpec { quantiles: Some(3), ..shards::convert::ColumnSpec::ids("q") },
        ],
        multi: vec![shards::convert::BagSpec {
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
        targets: Vec::new(),
        funnel: true,
        standardize: true,
    }
}
