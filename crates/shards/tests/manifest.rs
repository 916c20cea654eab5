//! The dataset manifest and the writer's guards: a dataset is exactly the shards it was
//! written with, under the schema it was written with.

use std::path::PathBuf;

use shards::convert::{ConvertOptions, aliexpress_spec, convert_csv};
use shards::synth::{SynthConfig, generate};
use shards::{Dataset, MANIFEST_FILE, MAX_VOCAB, Manifest, Schema, ShardError, ShardWriter};

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("manifest-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// A generated dataset of `rows` rows, 1,000 per shard.
fn dataset(name: &str, rows: usize, seed: u64) -> PathBuf {
    let dir = temp_dir(name);
    generate(
        &SynthConfig {
            rows,
            seed,
            max_vocab: 300,
            rows_per_shard: 1_000,
            ..SynthConfig::default()
        },
        &dir,
    )
    .unwrap();
    dir
}

fn open_err(dir: &std::path::Path) -> String {
    Dataset::open(dir).unwrap_err().to_string()
}

#[test]
fn manifest_lists_every_shard_and_row() {
    let dir = dataset("lists", 3_500, 1);
    let m = Manifest::read(&dir).unwrap();
    assert_eq!(m.rows, 3_500);
    let rows: Vec<u64> = m.shards.iter().map(|s| s.rows).collect();
    assert_eq!(rows, vec![1_000, 1_000, 1_000, 500]);
    assert_eq!(Dataset::open(&dir).unwrap().rows(), 3_500);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn missing_shard_is_refused() {
    let dir = dataset("missing", 3_000, 1);
    std::fs::remove_file(dir.join("shard-00001.rfs")).unwrap();
    let e = open_err(&dir);
    assert!(
        e.contains("shard-00001.rfs") && e.contains("missing"),
        "{e}"
    );
    // All shards gone: still an error, never an empty dataset.
    for i in [0, 2] {
        std::fs::remove_file(dir.join(shards::shard_name(i))).unwrap();
    }
    assert!(open_err(&dir).contains("missing"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn extra_or_foreign_shard_is_refused() {
    let dir = dataset("extra", 2_000, 1);
    let other = dataset("other", 2_000, 7);
    // An extra shard from another dataset of the same schema.
    std::fs::copy(other.join("shard-00000.rfs"), dir.join("shard-00002.rfs")).unwrap();
    let e = open_err(&dir);
    assert!(
        e.contains("shard-00002.rfs") && e.contains("not listed"),
        "{e}"
    );
    std::fs::remove_file(dir.join("shard-00002.rfs")).unwrap();
    // A listed shard replaced by another dataset's shard with the same row count.
    std::fs::copy(other.join("shard-00001.rfs"), dir.join("shard-00001.rfs")).unwrap();
    let e = open_err(&dir);
    assert!(e.contains("shard-00001.rfs") && e.contains("digest"), "{e}");
    for d in [dir, other] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn edited_vocabulary_in_schema_is_refused() {
    let dir = dataset("vocab", 1_000, 1);
    let path = dir.join("schema.json");
    let mut schema = Schema::from_json(&std::fs::read_to_string(&path).unwrap()).unwrap();
    schema.single[0].vocab += 1_000;
    std::fs::write(&path, schema.to_json()).unwrap();
    let e = open_err(&dir);
    assert!(e.contains("schema.json differs"), "{e}");
    // Beyond the largest vocabulary: refused by the schema itself.
    schema.single[0].vocab = 4_000_000_000;
    std::fs::write(&path, schema.to_json()).unwrap();
    let e = open_err(&dir);
    assert!(e.contains(&MAX_VOCAB.to_string()), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn dataset_without_manifest_names_the_remedy_and_rebuild_restores_it() {
    let dir = dataset("old", 2_000, 1);
    let original = std::fs::read(dir.join(MANIFEST_FILE)).unwrap();
    std::fs::remove_file(dir.join(MANIFEST_FILE)).unwrap();
    let e = open_err(&dir);
    assert!(e.contains("resflow manifest --data"), "{e}");
    let m = Manifest::rebuild(&dir).unwrap();
    assert_eq!(m.rows, 2_000);
    assert_eq!(std::fs::read(dir.join(MANIFEST_FILE)).unwrap(), original);
    assert_eq!(Dataset::open(&dir).unwrap().rows(), 2_000);
    // A second rebuild would overwrite a manifest: refused.
    assert!(Manifest::rebuild(&dir).is_err());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn manifest_that_does_not_add_up_is_refused() {
    let dir = dataset("sum", 2_000, 1);
    let path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("\"rows\": 2000", "\"rows\": 2500")).unwrap();
    assert!(open_err(&dir).contains("add up"));
    std::fs::write(&path, "{").unwrap();
    assert!(open_err(&dir).contains(MANIFEST_FILE));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn writer_refuses_non_empty_directory_and_zero_rows_per_shard() {
    let dir = temp_dir("nonempty");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), b"mine").unwrap();
    let schema = shards::synth::schema(&SynthConfig::default());
    let e = ShardWriter::create(&dir, schema.clone(), 10, false).unwrap_err();
    assert!(e.to_string().contains("not empty"), "{e}");
    assert_eq!(std::fs::read(dir.join("notes.txt")).unwrap(), b"mine");
    let fresh = temp_dir("zero");
    let e = ShardWriter::create(&fresh, schema, 0, false).unwrap_err();
    assert!(e.to_string().contains("at least 1"), "{e}");
    for d in [dir, fresh] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn stray_id_in_a_learned_vocabulary_is_an_error_naming_the_line() {
    let dir = temp_dir("stray");
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("ae.csv");
    let mut text = String::from("search_id");
    for i in 1..=16 {
        text.push_str(&format!(",categorical_{i}"));
    }
    for i in 1..=63 {
        text.push_str(&format!(",numerical_{i}"));
    }
    text.push_str(",click,conversion\n");
    for r in 0..5u32 {
        text.push_str(&r.to_string());
        for i in 0..16 {
            // Line 5 (the fourth data row) carries one stray id.
            let id: u32 = if r == 3 && i == 0 { 4_294_967_294 } else { i };
            text.push_str(&format!(",{id}"));
        }
        for _ in 0..63 {
            text.push_str(",0.5");
        }
        text.push_str(",0,0\n");
    }
    std::fs::write(&csv, text).unwrap();
    let out = dir.join("ds");
    let e = convert_csv(&csv, &aliexpress_spec(), &out, ConvertOptions::default()).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ShardError::Csv { line: 5, .. }), "{msg}");
    assert!(
        msg.contains("4294967294") && msg.contains("categorical_1"),
        "{msg}"
    );
    assert!(!out.exists());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_label_that_is_also_a_feature_is_refused() {
    let mut schema = shards::synth::schema(&SynthConfig::default());
    schema.dense.count = 1;
    schema.dense.names = vec![schema.tasks[0].clone()];
    let e = schema.validate().unwrap_err().to_string();
    assert!(e.contains("also an input feature"), "{e}");
}
