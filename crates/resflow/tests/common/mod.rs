//! Helpers shared by the end-to-end tests: temporary directories, a small synthetic funnel,
//! and the trainer-versus-scorer comparison.
#![allow(dead_code)]

use std::path::PathBuf;

use resflow::{Scorer, Trainer, score_dataset};
use shards::Dataset;
use shards::synth::{SynthConfig, generate};

/// A fresh temporary directory path for this process (not created).
pub fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("resflow-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// A synthetic funnel of `rows` rows (tables capped at 400 rows) in `temp(name)`.
pub fn data(name: &str, rows: usize, seed: u64) -> (PathBuf, Dataset) {
    let dir = temp(name);
    generate(
        &SynthConfig {
            rows,
            seed,
            max_vocab: 400,
            rows_per_shard: 8_000,
            ..SynthConfig::default()
        },
        &dir,
    )
    .unwrap();
    let ds = Dataset::open(&dir).unwrap();
    (dir, ds)
}

/// The trainer's evaluation-pass probabilities of every row (`rows x tasks`).
pub fn predictions(t: &mut Trainer, data: &Dataset) -> Vec<f32> {
    let mut out = vec![];
    t.predict(data, |p, _| {
        out.extend_from_slice(p);
        Ok(())
    })
    .unwrap();
    out
}

/// The scorer's probabilities of every row (`rows x tasks`).
pub fn served(scorer: &Scorer, data: &Dataset) -> Vec<f32> {
    let mut out = vec![];
    score_dataset(scorer, data, |p, _, _| {
        out.extend_from_slice(p);
        Ok(())
    })
    .unwrap();
    out
}

/// The largest difference between the trainer's evaluation pass and the scorer over `data`.
pub fn serving_gap(t: &mut Trainer, scorer: &Scorer, data: &Dataset) -> f32 {
    let (a, b) = (predictions(t, data), served(scorer, data));
    testkit::max_abs_diff(&a, &b)
}
