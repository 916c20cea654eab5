//! The converters' fidelity to the authors' data treatment: label mapping and its errors,
//! a byte order mark, dropping conversions without a click, percentile buckets, dense
//! standardisation, learned vocabularies with an unknown id, hashing collisions, leakage,
//! and test sets converted with a training set's encodings (`--vocab-from`).

use std::path::{Path, PathBuf};

use shards::convert::{
    ColumnSpec, ConvertOptions, CsvSpec, LabelColumn, aliccp_spec, aliexpress_spec_for,
    convert_csv, read_header,
};
use shards::{Batch, Dataset, EncodingKind, Schema, bucket_of, standardize};

/// A fresh empty directory under the system temp dir.
fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("shards-convert-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Every row of a dataset in one batch.
fn read(ds: &Dataset) -> Batch {
    let mut b = ds.new_batch();
    let mut it = ds.batches(ds.rows().max(1), None);
    assert!(it.next_into(&mut b));
    b
}

/// An Ali-CCP file with the given label columns (values per row) and small ids.
fn aliccp_csv(path: &Path, label_names: &[&str], labels: &[Vec<u8>]) {
    let single: Vec<&str> = shards::synth::ALICCP_SINGLE.iter().map(|f| f.0).collect();
    let mut text = String::from("sample_id");
    for l in label_names {
        text.push_str(&format!(",{l}"));
    }
    for f in &single {
        text.push_str(&format!(",{f}"));
    }
    text.push_str(",210,853\n");
    for (r, y) in labels.iter().enumerate() {
        text.push_str(&r.to_string());
        for v in y {
            text.push_str(&format!(",{v}"));
        }
        for k in 0..single.len() {
            text.push_str(&format!(",{}", (r + k) % 3));
        }
        text.push_str(&format!(",{};{},\n", r % 5, (r + 1) % 5));
    }
    std::fs::write(path, text).unwrap();
}

fn convert(
    csv: &Path,
    spec: &CsvSpec,
    out: &Path,
    options: ConvertOptions,
) -> shards::Result<shards::convert::ConvertReport> {
    convert_csv(csv, spec, out, options)
}

#[test]
fn aliccp_authors_header_and_label_errors() {
    let dir = temp_dir("aliccp");
    let rows = vec![vec![1, 1], vec![0, 0], vec![1, 0], vec![0, 1]];
    // The authors' pipeline: sample_id, ctr_label, cvr_label, ...
    let csv = dir.join("authors.csv");
    aliccp_csv(&csv, &["ctr_label", "cvr_label"], &rows);
    let spec = aliccp_spec(&read_header(&csv).unwrap(), None).unwrap();
    assert_eq!(spec.labels, vec!["ctr_label", "cvr_label"]);
    let r = convert(&csv, &spec, &dir.join("a"), ConvertOptions::default()).unwrap();
    assert_eq!(r.info.schema.tasks, vec!["click", "conversion"]);
    assert_eq!(
        (r.info.rows, r.funnel_violations, r.dropped_rows),
        (4, 1, 0)
    );
    assert_eq!(r.info.schema.item.as_deref(), Some("205"));
    // The authors' cleaning drops the conversion without a click (the last row).
    let r = convert(
        &csv,
        &spec,
        &dir.join("clean"),
        ConvertOptions {
            drop_funnel_violations: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!((r.info.rows, r.dropped_rows), (3, 1));
    let b = read(&Dataset::open(&dir.join("clean")).unwrap());
    assert_eq!(b.labels, vec![1.0, 1.0, 0.0, 0.0, 1.0, 0.0]);
    // A misnamed label column is an error naming what is expected and what was found.
    let bad = dir.join("mixed.csv");
    aliccp_csv(&bad, &["click", "cvr_label"], &rows);
    let e = aliccp_spec(&read_header(&bad).unwrap(), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("ctr_label,cvr_label")
            && e.contains("click,conversion")
            && e.contains("\"cvr_label\""),
        "{e}"
    );
    // An extra column is not silently a third task.
    let extra = dir.join("extra.csv");
    aliccp_csv(&extra, &["click", "conversion", "order"], &[vec![1, 1, 0]]);
    let e = aliccp_spec(&read_header(&extra).unwrap(), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"order\""), "{e}");
    // An explicit mapping takes any names, and still refuses unnamed extra columns.
    let m = LabelColumn::parse_list("click=click,conversion=cvr_label").unwrap();
    let spec = aliccp_spec(&read_header(&bad).unwrap(), Some(&m)).unwrap();
    let r = convert(&bad, &spec, &dir.join("mapped"), ConvertOptions::default()).unwrap();
    assert_eq!(r.info.schema.tasks, vec!["click", "conversion"]);
    let m = LabelColumn::parse_list("click,conversion").unwrap();
    let e = aliccp_spec(&read_header(&extra).unwrap(), Some(&m))
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"order\""), "{e}");
    let m = LabelColumn::parse_list("click=205").unwrap();
    let e = aliccp_spec(&read_header(&extra).unwrap(), Some(&m))
        .unwrap_err()
        .to_string();
    assert!(e.contains("feature"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn byte_order_mark_is_ignored() {
    let dir = temp_dir("bom");
    let csv = dir.join("bom.csv");
    std::fs::write(&csv, b"\xEF\xBB\xBFclick,user\n1,3\n0,4\n").unwrap();
    assert_eq!(read_header(&csv).unwrap(), vec!["click", "user"]);
    let spec: CsvSpec =
        serde_json::from_str(r#"{"labels": ["click"], "single": [{"column": "user"}]}"#).unwrap();
    let r = convert(&csv, &spec, &dir.join("ds"), ConvertOptions::default()).unwrap();
    assert_eq!(r.info.rows, 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_label_that_is_also_a_feature_is_leakage() {
    for json in [
        r#"{"labels": ["click"], "single": [{"column": "click"}]}"#,
        r#"{"labels": ["click"], "dense": ["click"]}"#,
        r#"{"labels": ["click", "buy"], "group": "buy"}"#,
    ] {
        let spec: CsvSpec = serde_json::from_str(json).unwrap();
        let e = spec.validate().unwrap_err().to_string();
        assert!(e.contains("leaks"), "{json}: {e}");
    }
    for (json, needle) in [
        (r#"{"labels": []}"#, "at least one label column"),
        (
            r#"{"labels": ["a"], "single": [{"column": "u", "vocab": 3, "hash_buckets": 4}]}"#,
            "choose one",
        ),
        (
            r#"{"labels": ["a"], "single": [{"column": "u", "min_count": 2}]}"#,
            "min_count needs",
        ),
        (
            r#"{"labels": ["a"], "single": [{"column": "u"}], "dense": ["u"]}"#,
            "used twice",
        ),
        (r#"{"labels": ["a"], "item": "u"}"#, "item column"),
        (r#"{"labels": ["a", "b"], "tasks": ["x"]}"#, "task names"),
    ] {
        let spec: CsvSpec = serde_json::from_str(json).unwrap();
        let e = spec.validate().unwrap_err().to_string();
        assert!(e.contains(needle), "{json}: {e}");
    }
}

/// A file with a string column, a numeric column and a dense column.
fn census_like(path: &Path, rows: &[(&str, f32, f32, u8)]) {
    let mut text = String::from("industry,age,hours,income\n");
    for (i, a, h, y) in rows {
        text.push_str(&format!("{i},{a},{h},{y}\n"));
    }
    std::fs::write(path, text).unwrap();
}

fn census_spec() -> CsvSpec {
    serde_json::from_str(
        r#"{"labels": ["income"],
            "single": [{"column": "industry", "vocabulary": true, "min_count": 2},
                       {"column": "age", "quantiles": 3}],
            "dense": ["hours"]}"#,
    )
    .unwrap()
}

#[test]
fn vocabularies_buckets_and_statistics_are_learned_on_train_and_reused_on_test() {
    let dir = temp_dir("vocab");
    let train = dir.join("train.csv");
    census_like(
        &train,
        &[
            ("retail", 20.0, 40.0, 0),
            ("finance", 30.0, 50.0, 1),
            ("retail", 40.0, 38.0, 0),
            ("mining", 50.0, 45.0, 1),
            ("finance", 60.0, 60.0, 1),
            ("retail", 70.0, 20.0, 0),
        ],
    );
    let r = convert(
        &train,
        &census_spec(),
        &dir.join("train"),
        ConvertOptions::default(),
    )
    .unwrap();
    let s = &r.info.schema;
    // Vocabulary: retail (3) then finance (2); mining (1) is below min_count -> unknown id 0.
    assert_eq!(
        s.encoding("industry"),
        Some(&EncodingKind::Vocabulary {
            values: vec!["retail".into(), "finance".into()],
            min_count: 2
        })
    );
    assert_eq!(s.single[0].vocab, 3);
    assert_eq!(
        (
            r.columns[0].distinct,
            r.columns[0].rare,
            r.columns[0].unknown
        ),
        (3, 1, 1)
    );
    // Quantiles 1/4, 2/4, 3/4 of the six ages (nearest rank): sorted[1], sorted[3], sorted[4].
    assert_eq!(
        s.encoding("age"),
        Some(&EncodingKind::Quantiles {
            cuts: vec![30.0, 50.0, 60.0]
        })
    );
    assert_eq!(s.single[1].vocab, 4);
    // Dense statistics: hours have mean 42.1666.. and a population std.
    let h = [40.0f64, 50.0, 38.0, 45.0, 60.0, 20.0];
    let mean = h.iter().sum::<f64>() / 6.0;
    let std = (h.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 6.0).sqrt();
    let (m, sd) = (
        s.dense.mean.as_ref().unwrap()[0],
        s.dense.std.as_ref().unwrap()[0],
    );
    assert!(
        (m as f64 - mean).abs() < 1e-5 && (sd as f64 - std).abs() < 1e-5,
        "{m} {sd}"
    );
    let b = read(&Dataset::open(&dir.join("train")).unwrap());
    let ids: Vec<u32> = b.single_ids.chunks(2).map(|r| r[0]).collect();
    assert_eq!(ids, vec![1, 2, 1, 0, 2, 1]);
    let ages: Vec<u32> = b.single_ids.chunks(2).map(|r| r[1]).collect();
    assert_eq!(ages, vec![0, 1, 1, 2, 3, 3]);
    // The stored dense values are exactly what the schema's own transform gives.
    let mut raw: Vec<f32> = h.iter().map(|&x| x as f32).collect();
    s.standardize_dense(&mut raw);
    assert_eq!(b.dense_values, raw);

    // A test set converted on its own learns other encodings: refused as incompatible.
    let test = dir.join("test.csv");
    census_like(
        &test,
        &[
            ("finance", 25.0, 41.0, 1),
            ("farming", 65.0, 30.0, 0),
            ("retail", 99.0, 44.0, 0),
        ],
    );
    convert(
        &test,
        &census_spec(),
        &dir.join("alone"),
        ConvertOptions::default(),
    )
    .unwrap();
    let alone = Dataset::open(&dir.join("alone")).unwrap();
    let e = s.check_compatible(alone.schema()).unwrap_err().to_string();
    assert!(e.contains("--vocab-from") && e.contains("industry"), "{e}");
    // With the training set's encodings: same ids for the same values, unseen -> 0, the
    // training cut points and statistics.
    let reuse = ConvertOptions {
        reuse: Some(s.clone()),
        ..Default::default()
    };
    let r = convert(&test, &census_spec(), &dir.join("test"), reuse).unwrap();
    s.check_compatible(&r.info.schema).unwrap();
    assert_eq!(r.columns[0].unknown, 1, "farming is unknown");
    let b = read(&Dataset::open(&dir.join("test")).unwrap());
    assert_eq!(
        b.single_ids,
        vec![2, bucket_of(&[30.0, 50.0, 60.0], 25.0), 0, 3, 1, 3]
    );
    let want: Vec<f32> = [41.0f32, 30.0, 44.0]
        .iter()
        .map(|&x| standardize(x, m, sd))
        .collect();
    assert_eq!(b.dense_values, want);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn hashing_reports_collisions_and_unseen_learned_ids_go_to_the_unknown_id_on_reuse() {
    let dir = temp_dir("hash");
    let csv = dir.join("h.csv");
    std::fs::write(&csv, "y,name,item\n1,a,0\n0,b,1\n1,c,2\n0,a,1\n").unwrap();
    let spec: CsvSpec = serde_json::from_str(
        r#"{"labels": ["y"], "single": [{"column": "name", "hash_buckets": 1}, {"column": "item"}], "item": "item"}"#,
    )
    .unwrap();
    let r = convert(&csv, &spec, &dir.join("ds"), ConvertOptions::default()).unwrap();
    // Three distinct names in one bucket: two of them collide.
    assert_eq!(
        (
            r.columns[0].encoding,
            r.columns[0].distinct,
            r.columns[0].collisions
        ),
        ("hash", 3, 2)
    );
    assert_eq!(r.info.schema.single[1].vocab, 3, "learned as max id + 1");
    assert_eq!(r.info.schema.encoding("item"), Some(&EncodingKind::Ids));
    // A test id beyond the training vocabulary was never seen in training: it goes to the
    // unknown id 0, as an unseen string does, and is counted; the vocabulary stays the
    // training set's.
    let test = dir.join("t.csv");
    std::fs::write(&test, "y,name,item\n1,a,5\n0,b,2\n1,c,9\n").unwrap();
    let reuse = ConvertOptions {
        reuse: Some(r.info.schema.clone()),
        ..Default::default()
    };
    let t = convert(&test, &spec, &dir.join("t"), reuse).unwrap();
    let item = t.columns.iter().find(|c| c.column == "item").unwrap();
    assert_eq!((item.encoding, item.ids, item.unknown), ("ids", 3, 2));
    assert_eq!(t.info.schema.single[1].vocab, 3);
    let b = read(&Dataset::open(&dir.join("t")).unwrap());
    let items: Vec<u32> = (0..b.rows).map(|r| b.single_ids[r * 2 + 1]).collect();
    assert_eq!(items, vec![0, 2, 0]);
    // A size given in the spec is still a hard limit.
    let fixed: CsvSpec = serde_json::from_str(
        r#"{"labels": ["y"], "single": [{"column": "name", "hash_buckets": 1}, {"column": "item", "vocab": 3}], "item": "item"}"#,
    )
    .unwrap();
    let e = convert(&test, &fixed, &dir.join("f"), ConvertOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("out of range (vocab 3)"), "{e}");
    // A spec that does not match the training set is refused before any row is written.
    let other: CsvSpec =
        serde_json::from_str(r#"{"labels": ["y"], "single": [{"column": "item"}]}"#).unwrap();
    let reuse = ConvertOptions {
        reuse: Some(r.info.schema.clone()),
        ..Default::default()
    };
    assert!(convert(&test, &other, &dir.join("o"), reuse).is_err());
    assert!(!dir.join("o").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A small AliExpress-layout file with varied numerics.
fn aliexpress_csv(path: &Path, rows: usize, labels: &str) {
    let mut text = String::from("search_id");
    for i in 1..=16 {
        text.push_str(&format!(",categorical_{i}"));
    }
    for i in 1..=63 {
        text.push_str(&format!(",numerical_{i}"));
    }
    text.push_str(&format!(",{labels}\n"));
    for r in 0..rows {
        text.push_str(&(r / 4).to_string());
        for i in 0..16 {
            text.push_str(&format!(",{}", (r + i) % 7));
        }
        for i in 0..63 {
            text.push_str(&format!(",{}", ((r * 37 + i * 11) % 101) as f32 * 0.25));
        }
        text.push_str(&format!(",{},{}\n", (r % 3 == 0) as u8, (r % 9 == 0) as u8));
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn aliexpress_numerics_bucketised_at_training_percentiles() {
    let dir = temp_dir("ae");
    let csv = dir.join("ae.csv");
    aliexpress_csv(&csv, 400, "click,conversion");
    let header = read_header(&csv).unwrap();
    let spec = aliexpress_spec_for(&header, None, Some(99)).unwrap();
    assert_eq!((spec.single.len(), spec.dense.len()), (16 + 63, 0));
    let r = convert(&csv, &spec, &dir.join("ds"), ConvertOptions::default()).unwrap();
    let s = &r.info.schema;
    let Some(EncodingKind::Quantiles { cuts }) = s.encoding("numerical_1") else {
        panic!("no cut points: {:?}", s.encodings)
    };
    // 101 distinct values, 99 percentiles: strictly increasing, at most 99 of them.
    assert!(cuts.len() <= 99 && cuts.len() > 90, "{}", cuts.len());
    assert!(cuts.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(s.single[16].vocab as usize, cuts.len() + 1);
    // The stored ids are bucket_of(cuts, raw value) for every row.
    let b = read(&Dataset::open(&dir.join("ds")).unwrap());
    for r in 0..400 {
        let raw = ((r * 37) % 101) as f32 * 0.25;
        assert_eq!(b.single_ids[r * 79 + 16], bucket_of(cuts, raw), "row {r}");
    }
    // Without bucketising, numerics are dense and standardised.
    let dense = aliexpress_spec_for(&header, None, None).unwrap();
    let r = convert(&csv, &dense, &dir.join("dense"), ConvertOptions::default()).unwrap();
    assert_eq!(r.info.schema.dense.count, 63);
    assert!(r.info.schema.dense.mean.is_some());
    // AliExpress label columns are checked too.
    let bad = dir.join("bad.csv");
    aliexpress_csv(&bad, 4, "clk,conversion");
    let e = aliexpress_spec_for(&read_header(&bad).unwrap(), None, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("click,conversion") && e.contains("clk"), "{e}");
    let m = LabelColumn::parse_list("click=clk,conversion").unwrap();
    let spec = aliexpress_spec_for(&read_header(&bad).unwrap(), Some(&m), None).unwrap();
    assert_eq!(spec.task_names(), ["click", "conversion"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn schema_refuses_inconsistent_encodings() {
    let base = r#"{"format_version": 1, "tasks": ["y"], "single": [{"name": "a", "vocab": 3}]"#;
    for (extra, needle) in [
        (
            r#", "encodings": [{"field": "a", "kind": "quantiles", "cuts": [1.0, 0.5]}]}"#,
            "strictly increasing",
        ),
        (
            r#", "encodings": [{"field": "a", "kind": "hash", "buckets": 7}]}"#,
            "gives 7 ids",
        ),
        (
            r#", "encodings": [{"field": "b", "kind": "ids"}]}"#,
            "unknown field",
        ),
        (r#", "item": "z"}"#, "item field"),
        (
            r#", "dense": {"count": 1, "mean": [0.0], "std": [0.0]}}"#,
            "positive",
        ),
    ] {
        let e = Schema::from_json(&format!("{base}{extra}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{extra}: {e}");
    }
    let ok = Schema::from_json(&format!(
        r#"{base}, "encodings": [{{"field": "a", "kind": "vocabulary", "values": ["x", "y"], "min_count": 1}}]}}"#
    ))
    .unwrap();
    assert_eq!(ok.encoding("a").and_then(|e| e.vocab()), Some(3));
    let _ = ColumnSpec::ids("x");
}

#[test]
fn a_continuous_target_column_converts_and_is_checked() {
    let dir = temp_dir("target");
    let csv = dir.join("plays.csv");
    std::fs::write(
        &csv,
        "user,item,play_time,liked\n1,2,12.5,1\n0,1,0,0\n3,2,301.25,1\n",
    )
    .unwrap();
    let spec: CsvSpec = serde_json::from_str(
        r#"{"labels": ["play_time", "liked"], "targets": ["play_time"],
            "single": [{"column": "user"}, {"column": "item"}]}"#,
    )
    .unwrap();
    let out = dir.join("ds");
    convert(&csv, &spec, &out, ConvertOptions::default()).unwrap();
    let ds = Dataset::open(&out).unwrap();
    assert_eq!(ds.schema().targets, vec!["play_time".to_string()]);
    assert_eq!(ds.schema().target_mask(), vec![true, false]);
    assert_eq!(read(&ds).labels, vec![12.5, 1.0, 0.0, 0.0, 301.25, 1.0]);
    // The 0/1 column is still checked, the target only for being a finite number.
    for (text, needle) in [
        (
            "user,item,play_time,liked\n1,2,12.5,2\n",
            "label 2 is not 0 or 1",
        ),
        (
            "user,item,play_time,liked\n1,2,inf,1\n",
            "target inf is not a finite number",
        ),
    ] {
        let bad = dir.join("bad.csv");
        std::fs::write(&bad, text).unwrap();
        let err = convert(&bad, &spec, &dir.join("bad"), ConvertOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{err}");
    }
    // A target that is not a label column, and a funnel check over a target.
    for (json, needle) in [
        (
            r#"{"labels": ["liked"], "targets": ["play_time"], "single": [{"column": "user"}]}"#,
            "must be one of the label columns",
        ),
        (
            r#"{"labels": ["play_time"], "targets": ["play_time"], "funnel": true, "single": [{"column": "user"}]}"#,
            "funnel",
        ),
    ] {
        let spec: CsvSpec = serde_json::from_str(json).unwrap();
        let err = spec.validate().unwrap_err().to_string();
        assert!(err.contains(needle), "{json}: {err}");
    }
    // A schema naming a target that is not a task.
    let mut schema = ds.schema().clone();
    schema.targets = vec!["watch".into()];
    let err = schema.validate().unwrap_err().to_string();
    assert!(err.contains("not one of the tasks"), "{err}");
    // Targets are part of the structure: a dataset without them is not compatible.
    let mut plain = ds.schema().clone();
    plain.targets.clear();
    assert_ne!(plain.fingerprint(), ds.schema().fingerprint());
    assert!(ds.schema().check_compatible(&plain).is_err());
    std::fs::remove_dir_all(dir).unwrap();
}
