//! Arbitrary bytes as a CSV file, converted with the AliExpress layout and with a generic
//! spec (hashed ids, a bag, a dense column, a group): a dataset or a typed error, never a
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
        let options = ConvertOptions { strict: k == 1, rows_per_shard: 7 };
        if convert_csv(&input, spec, &out, options).is_err() {
            assert!(!out.exists(), "a failed conversion left its output behind");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
});

fn serde_json_spec() -> CsvSpec {
    CsvSpec {
        labels: vec!["a".into(), "b".into()],
        single: vec![shards::convert::ColumnSpec { column: "u".into(), vocab: None, hash_buckets: Some(13) }],
        multi: vec![shards::convert::BagSpec {
            column: "t".into(),
            separator: ';',
            vocab: Some(9),
            hash_buckets: None,
            pooling: shards::Pooling::Sum,
        }],
        dense: vec!["x".into()],
        group: Some("g".into()),
        weight: None,
        soft_labels: false,
        funnel: true,
    }
}
