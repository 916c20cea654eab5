//! Fuzz target: `Trainer::checkpoint_from_bytes` on arbitrary bytes returns a trainer or a
//! typed error, never panics; a checkpoint that loads holds only finite parameters, saves,
//! and what it saves loads and saves again to the same bytes (checkpoints are deterministic).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use resflow::Trainer;

fuzz_target!(|data: &[u8]| {
    let Ok(t) = Trainer::checkpoint_from_bytes(data, Path::new("fuzz.safetensors"), 1) else {
        return;
    };
    for p in &t.store.dense {
        assert!(p.value.as_slice().iter().all(|v| v.is_finite()));
    }
    for p in &t.store.tables {
        assert!(p.value.as_slice().iter().all(|v| v.is_finite()));
    }
    let dir = std::env::temp_dir().join(format!("fuzz-ckpt-{}", std::process::id()));
    t.save_checkpoint(&dir).expect("a loaded checkpoint saves");
    let path = dir.join(resflow::CHECKPOINT_FILE);
    let first = std::fs::read(&path).unwrap();
    let again = Trainer::checkpoint_from_bytes(&first, &path, 1).expect("a saved checkpoint loads");
    again.save_checkpoint(&dir).expect("and saves");
    assert_eq!(std::fs::read(&path).unwrap(), first, "saving is deterministic");
});
