//! Integrity of model files and checkpoints, and divergence: identical runs write identical
//! bytes, a flipped bit is caught on load, nothing non-finite is written or resumed from,
//! and a diverged training stops with the last good checkpoint kept.

mod common;

use common::{data, temp};

use resflow::{InputLayout, ModelConfig, ModelError, ServingModel, Trainer};
use shards::Dataset;

fn config() -> ModelConfig {
    ModelConfig::from_json(r#"{"embedding_dim": 8, "hidden": [16, 8], "batch_size": 256}"#).unwrap()
}

fn trained(ds: &Dataset) -> Trainer {
    let mut t = Trainer::new(config(), InputLayout::from_schema(ds.schema()), 1).unwrap();
    t.fit(ds, 1, |_, _| Ok(())).unwrap();
    t
}

/// The JSON header of safetensors bytes, and where the data starts.
fn header(bytes: &[u8]) -> (serde_json::Value, usize) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (serde_json::from_slice(&bytes[8..8 + n]).unwrap(), 8 + n)
}

/// The byte range of tensor `name` in safetensors bytes.
fn tensor_range(bytes: &[u8], name: &str) -> std::ops::Range<usize> {
    let (h, start) = header(bytes);
    let o = &h[name]["data_offsets"];
    start + o[0].as_u64().unwrap() as usize..start + o[1].as_u64().unwrap() as usize
}

#[test]
fn identical_runs_write_identical_model_and_checkpoint_bytes() {
    let (dir, ds) = data("determinism", 2_000, 1);
    let (a, b) = (trained(&ds), trained(&ds));
    assert_eq!(
        a.export().unwrap().to_bytes().unwrap(),
        b.export().unwrap().to_bytes().unwrap()
    );
    let (ca, cb) = (temp("ckpt-a"), temp("ckpt-b"));
    a.save_checkpoint(&ca).unwrap();
    b.save_checkpoint(&cb).unwrap();
    let file = resflow::CHECKPOINT_FILE;
    assert_eq!(
        std::fs::read(ca.join(file)).unwrap(),
        std::fs::read(cb.join(file)).unwrap()
    );
    for d in [dir, ca, cb] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn a_flipped_bit_in_a_model_file_is_caught_on_load() {
    let (dir, ds) = data("flip-model", 2_000, 1);
    let bytes = trained(&ds).export().unwrap().to_bytes().unwrap();
    let r = tensor_range(&bytes, "task/0/layer/0/weight");
    // The exponent's top bit of the first weight: 0.05 becomes about 1.7e37.
    let mut flipped = bytes.clone();
    flipped[r.start + 3] ^= 0x40;
    let e = ServingModel::from_bytes(&flipped, "m")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("checksum") && e.contains("task/0/layer/0/weight"),
        "{e}"
    );
    // And in the configuration held in the metadata.
    let mut meta = bytes.clone();
    let pos = meta.windows(4).position(|w| w == b"seed").unwrap();
    meta[pos] = b'S';
    let e = ServingModel::from_bytes(&meta, "m")
        .unwrap_err()
        .to_string();
    assert!(e.contains("metadata checksum"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_flipped_bit_in_a_checkpoint_is_caught_by_resume_export_and_eval() {
    let (dir, ds) = data("flip-ckpt", 2_000, 1);
    let ckpt = temp("flip-ckpt-dir");
    trained(&ds).save_checkpoint(&ckpt).unwrap();
    let path = ckpt.join(resflow::CHECKPOINT_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    let name = "adam/v/task/0/layer/0/weight";
    let (h, _) = header(&bytes);
    let name = if h.get(name).is_some() {
        name.to_string()
    } else {
        // Whatever the store calls it: the first Adam second moment.
        h.as_object()
            .unwrap()
            .keys()
            .find(|k| k.starts_with("adam/v/"))
            .unwrap()
            .clone()
    };
    let r = tensor_range(&bytes, &name);
    bytes[r.start + 3] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let e = Trainer::load_checkpoint(&ckpt, 1)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("checksum"), "{e}");
    for d in [dir, ckpt] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

/// Rewrites tensor `name` of safetensors `bytes` to hold a NaN, with every checksum
/// recomputed as the documented format prescribes (so only the finiteness check can object).
fn nan_with_valid_checksums(bytes: &[u8], name: &str) -> Vec<u8> {
    let (mut h, start) = header(bytes);
    let r = tensor_range(bytes, name);
    let mut data = bytes[start..].to_vec();
    data[r.start - start..r.start - start + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    let meta = h["__metadata__"].as_object_mut().unwrap();
    let mut sums: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(meta["checksums"].as_str().unwrap()).unwrap();
    sums[name] = format!(
        "{:08x}",
        crc32fast::hash(&data[r.start - start..r.end - start])
    )
    .into();
    meta["checksums"] = serde_json::to_string(&sums).unwrap().into();
    meta.remove("metadata_crc32");
    let mut lines = crc32fast::Hasher::new();
    for (k, v) in meta.iter() {
        lines.update(format!("{k}={}\n", v.as_str().unwrap()).as_bytes());
    }
    meta.insert(
        "metadata_crc32".into(),
        format!("{:08x}", lines.finalize()).into(),
    );
    let head = serde_json::to_vec(&h).unwrap();
    let mut out = (head.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&head);
    out.extend_from_slice(&data);
    out
}

#[test]
fn non_finite_checkpoints_and_models_are_never_written_nor_loaded() {
    let (dir, ds) = data("nonfinite", 2_000, 1);
    let ckpt = temp("nonfinite-ckpt");
    let mut t = trained(&ds);
    t.save_checkpoint(&ckpt).unwrap();
    let path = ckpt.join(resflow::CHECKPOINT_FILE);
    let good = std::fs::read(&path).unwrap();
    // A NaN embedding row: neither a checkpoint nor a model is written, the old one is kept.
    t.store.tables[0].value.as_mut_slice()[3] = f32::NAN;
    let e = t.save_checkpoint(&ckpt).unwrap_err();
    assert!(matches!(e, ModelError::NonFinite(_)), "{e}");
    assert!(e.to_string().contains("previous checkpoint"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), good);
    assert!(matches!(
        t.export().and_then(|m| m.to_bytes()),
        Err(ModelError::NonFinite(_))
    ));
    // A checkpoint with a NaN and valid checksums (written by something else): refused.
    let name = format!("param/{}", t.store.tables[0].name);
    std::fs::write(&path, nan_with_valid_checksums(&good, &name)).unwrap();
    let e = Trainer::load_checkpoint(&ckpt, 1)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("NaN") && e.contains("diverged"), "{e}");
    for d in [dir, ckpt] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn divergence_stops_training_and_keeps_the_last_good_checkpoint() {
    let (dir, ds) = data("diverge", 4_000, 1);
    let ckpt = temp("diverge-ckpt");
    let mut t = Trainer::new(config(), InputLayout::from_schema(ds.schema()), 1).unwrap();
    t.fit(&ds, 1, |_, _| Ok(())).unwrap();
    t.save_checkpoint(&ckpt).unwrap();
    let path = ckpt.join(resflow::CHECKPOINT_FILE);
    let good = std::fs::read(&path).unwrap();
    // Poison one dense weight, as a huge step would.
    t.store.dense[0].value.as_mut_slice()[0] = f32::INFINITY;
    let mut saved = 0;
    let e = t
        .fit(&ds, 2, |t, _| {
            saved += 1;
            t.save_checkpoint(&ckpt)
        })
        .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("diverged at step"), "{msg}");
    assert_eq!(saved, 0, "no checkpoint is taken after a diverged step");
    assert_eq!(std::fs::read(&path).unwrap(), good);
    for d in [dir, ckpt] {
        std::fs::remove_dir_all(d).unwrap();
    }
}
