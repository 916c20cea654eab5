//! `resflow bench train`: training throughput on the Ali-CCP layout of the paper's released
//! code (19 fields of which 2 bags, embeddings of 32, towers 128-64-1 with PReLU and
//! BatchNorm, batch 1024, Adam with lazy Adam for the embeddings), synthetic data, with 1
//! and 2 worker threads in the same run.

use std::path::Path;

use resflow::{Error, ModelConfig, Trainer};
use serde::Serialize;
use shards::Dataset;
use shards::synth::{SynthConfig, generate};

/// Throughput with one thread count.
#[derive(Debug, Clone, Serialize)]
pub struct TrainRun {
    /// Worker threads.
    pub threads: usize,
    /// Samples per second over the epoch (best of the runs).
    pub samples_per_s: f64,
}

/// The whole benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    /// Rows trained per run (one epoch).
    pub rows: usize,
    /// Embedding rows per field (capped hash sizes).
    pub max_vocab: u32,
    /// One entry per thread count.
    pub runs: Vec<TrainRun>,
    /// Samples/s with the most threads over samples/s with one.
    pub speedup: f64,
}

/// Trains one epoch of `rows` synthetic rows with each thread count in `threads`, `runs` times.
pub fn run(
    rows: usize,
    max_vocab: u32,
    threads: &[usize],
    runs: usize,
    work: &Path,
) -> Result<TrainReport, Error> {
    let dir = work.join(format!("resflow-bench-train-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let result = (|| {
        generate(
            &SynthConfig {
                rows,
                max_vocab,
                ..SynthConfig::default()
            },
            &dir,
        )?;
        let data = Dataset::open(&dir)?;
        let mut out = vec![];
        for &t in threads {
            let mut best = 0.0f64;
            for _ in 0..runs.max(1) {
                let mut trainer =
                    Trainer::new(ModelConfig::default(), resflow::layout_of(data.schema()), t)?;
                let s = trainer.fit(&data, 1, |_, _| Ok(()))?;
                best = best.max(s.samples_per_s);
            }
            out.push(TrainRun {
                threads: t,
                samples_per_s: best,
            });
        }
        let speedup = out.last().map_or(1.0, |l| l.samples_per_s)
            / out.first().map_or(1.0, |f| f.samples_per_s);
        Ok(TrainReport {
            rows,
            max_vocab,
            runs: out,
            speedup,
        })
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
