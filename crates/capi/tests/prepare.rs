//! Raw inputs prepared through the C ABI equal what the converter stored for training:
//! the same standardised dense values and the same ids (learned vocabulary with its unknown
//! id, percentile buckets, hashing, raw integer ids), and bad arguments are statuses.

use std::ffi::CString;
use std::ptr::{null, null_mut};

use resflow_capi::*;
use shards::Dataset;
use shards::convert::{ConvertOptions, CsvSpec, convert_csv};

#[test]
fn prepared_inputs_equal_the_converted_training_data() {
    let dir = std::env::temp_dir().join(format!("capi-prepare-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let rows = [
        ("retail", "20", "40.5", "u1", "3", "0"),
        ("finance", "30", "50", "u2", "1", "1"),
        ("retail", "40", "38", "u3", "2", "0"),
        ("mining", "50", "45.25", "u1", "0", "1"),
        ("finance", "60", "60", "u4", "1", "1"),
        ("retail", "70", "20", "u5", "3", "0"),
    ];
    let mut text = String::from("industry,age,hours,user,item,income\n");
    for r in &rows {
        text.push_str(&format!(
            "{},{},{},{},{},{}\n",
            r.0, r.1, r.2, r.3, r.4, r.5
        ));
    }
    let csv = dir.join("train.csv");
    std::fs::write(&csv, text).unwrap();
    let spec: CsvSpec = serde_json::from_str(
        r#"{"labels": ["income"],
            "single": [{"column": "industry", "vocabulary": true, "min_count": 2},
                       {"column": "age", "quantiles": 3},
                       {"column": "user", "hash_buckets": 7},
                       {"column": "item"}],
            "dense": ["hours"]}"#,
    )
    .unwrap();
    let out = dir.join("ds");
    convert_csv(&csv, &spec, &out, ConvertOptions::default()).unwrap();
    let ds = Dataset::open(&out).unwrap();
    let mut b = ds.new_batch();
    assert!(ds.batches(rows.len(), None).next_into(&mut b));

    let path = CString::new(out.to_str().unwrap()).unwrap();
    let mut schema = null_mut();
    // SAFETY: valid NUL-terminated path and a writable out pointer.
    let st = unsafe { resflow_schema_load(RESFLOW_ABI_VERSION, path.as_ptr(), &mut schema) };
    assert_eq!(st, ResflowStatus::Ok);
    // Dense: the raw hours, standardised through the C ABI, equal the stored values.
    let mut hours: Vec<f32> = rows.iter().map(|r| r.2.parse().unwrap()).collect();
    // SAFETY: `hours` holds rows x 1 writable floats.
    let st = unsafe { resflow_schema_standardize_dense(schema, hours.as_mut_ptr(), rows.len()) };
    assert_eq!(st, ResflowStatus::Ok);
    assert_eq!(hours, b.dense_values);
    // Categoricals: each raw cell encodes to the stored id.
    let fields = ["industry", "age", "user", "item"];
    for (r, row) in rows.iter().enumerate() {
        for (k, raw) in [row.0, row.1, row.3, row.4].iter().enumerate() {
            let (f, v) = (
                CString::new(fields[k]).unwrap(),
                CString::new(*raw).unwrap(),
            );
            let mut id = u32::MAX;
            // SAFETY: live handle, NUL-terminated strings, writable id.
            let st = unsafe { resflow_schema_encode(schema, f.as_ptr(), v.as_ptr(), &mut id) };
            assert_eq!(st, ResflowStatus::Ok, "{} {raw}", fields[k]);
            assert_eq!(id, b.single_ids[r * 4 + k], "row {r} field {}", fields[k]);
        }
    }
    let encode = |field: &str, raw: &str| {
        let (f, v) = (CString::new(field).unwrap(), CString::new(raw).unwrap());
        let mut id = 0u32;
        // SAFETY: live handle, NUL-terminated strings, writable id.
        let st = unsafe { resflow_schema_encode(schema, f.as_ptr(), v.as_ptr(), &mut id) };
        (st, id)
    };
    // An unseen value goes to the unknown id 0; a value beyond the cut points to the top
    // bucket; bad values and unknown fields are statuses.
    assert_eq!(encode("industry", "farming"), (ResflowStatus::Ok, 0));
    assert_eq!(encode("age", "1000"), (ResflowStatus::Ok, 3));
    assert_eq!(encode("age", "old").0, ResflowStatus::InvalidArgument);
    assert_eq!(encode("item", "9").0, ResflowStatus::InvalidArgument);
    assert_eq!(encode("colour", "red").0, ResflowStatus::InvalidArgument);
    let mut nan = [f32::NAN];
    // SAFETY: one writable float.
    let st = unsafe { resflow_schema_standardize_dense(schema, nan.as_mut_ptr(), 1) };
    assert_eq!(st, ResflowStatus::InvalidArgument);
    // SAFETY: null pointers are refused, not dereferenced.
    unsafe {
        assert_eq!(
            resflow_schema_standardize_dense(null(), nan.as_mut_ptr(), 1),
            ResflowStatus::NullArgument
        );
        assert_eq!(
            resflow_schema_load(RESFLOW_ABI_VERSION, null(), &mut null_mut()),
            ResflowStatus::NullArgument
        );
        let missing = CString::new(dir.join("nope").to_str().unwrap()).unwrap();
        let mut h = null_mut();
        assert_eq!(
            resflow_schema_load(RESFLOW_ABI_VERSION, missing.as_ptr(), &mut h),
            ResflowStatus::Io
        );
        assert!(h.is_null());
        resflow_schema_free(schema);
        resflow_schema_free(null_mut());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
