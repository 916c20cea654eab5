//! `resflow bench train`: training throughput on the Ali-CCP layout of the paper's released
//! code (19 fields of which 2 bags, embeddings of 32, towers 128-64-1 with PReLU and
//! BatchNorm, batch 1024, Adam with lazy Adam for the embeddings), synthetic data, with 1
//! and 2 worker threads in the same run. Besides samples/s it reports the page faults taken
//! by the steps after the first two (zero: every buffer is faulted in at start or in the
//! first step) and the bytes of parameters and Adam moments, against which a caller can
//! compare the process's peak RSS.

use std::path::Path;

use resflow::{Error, ModelConfig, StepPhases, StepStats, Trainer};
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
    /// Page faults (minor and major) taken inside the steps after the first two, summed
    /// over the runs (`None` where `/proc/self/stat` cannot be read).
    pub faults_after_warm_up: Option<u64>,
    /// Where the steps after the first two went, in the best run.
    pub phases: StepPhases,
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
    /// Trainable parameters.
    pub parameters: usize,
    /// Bytes of the parameters and both Adam moments (3 floats per parameter).
    pub state_bytes: usize,
}

/// Page faults of this process so far (minor + major, fields 10 and 12 of
/// `/proc/self/stat`), or `None` off Linux.
fn faults() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // `rest` starts at field 3.
    Some(f.get(7)?.parse::<u64>().ok()? + f.get(9)?.parse::<u64>().ok()?)
}

/// One epoch on `data`: samples/s over the steps, and the faults inside the steps after
/// the first two (the batches are fetched outside both counts, as in `Trainer::train_epoch`).
fn epoch(trainer: &mut Trainer, data: &Dataset) -> Result<(f64, Option<u64>), Error> {
    epoch_on(trainer, data, crate::Clock::Wall)
}

/// [`epoch`] timed on `clock` (the thread clock only with one worker, which then steps on
/// the calling pool thread).
fn epoch_on(
    trainer: &mut Trainer,
    data: &Dataset,
    clock: crate::Clock,
) -> Result<(f64, Option<u64>), Error> {
    let mut batches = data.batches(trainer.network.config.batch_size, Some(1));
    let mut batch = data.new_batch();
    let mut stats = StepStats::default();
    trainer.on_pool(|t| {
        let (mut seconds, mut rows, mut faulted, mut step) = (0.0f64, 0usize, Some(0u64), 0);
        while batches.next_into(&mut batch) {
            let before = faults();
            let start = clock.now();
            t.train_step_into(&batch, &mut stats)?;
            seconds += clock.now() - start;
            rows += batch.rows;
            step += 1;
            if step == 2 {
                t.reset_phases();
            }
            if step > 2 {
                faulted = match (faulted, before, faults()) {
                    (Some(n), Some(a), Some(b)) => Some(n + (b - a)),
                    _ => None,
                };
            }
        }
        Ok((rows as f64 / seconds.max(1e-9), faulted))
    })
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
        let mut parameters = 0;
        for &t in threads {
            let (mut best, mut faulted) = (0.0f64, Some(0u64));
            let mut phases = StepPhases::default();
            for _ in 0..runs.max(1) {
                let mut trainer =
                    Trainer::new(ModelConfig::default(), resflow::layout_of(data.schema()), t)?;
                parameters = trainer.parameter_count()?;
                let (samples_per_s, f) = epoch(&mut trainer, &data)?;
                if samples_per_s > best {
                    best = samples_per_s;
                    phases = trainer.phases().clone();
                }
                faulted = faulted.zip(f).map(|(a, b)| a + b);
            }
            out.push(TrainRun {
                threads: t,
                samples_per_s: best,
                faults_after_warm_up: faulted,
                phases,
            });
        }
        let speedup = out.last().map_or(1.0, |l| l.samples_per_s)
            / out.first().map_or(1.0, |f| f.samples_per_s);
        Ok(TrainReport {
            rows,
            max_vocab,
            runs: out,
            speedup,
            parameters,
            state_bytes: 3 * 4 * parameters,
        })
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Throughput of one loss balancing.
#[derive(Debug, Clone, Serialize)]
pub struct BalancingRun {
    /// `"fixed"`, `"uncertainty"` or `"gradnorm"`.
    pub balancing: &'static str,
    /// Samples per second over an epoch: the best run.
    pub best_samples_per_s: f64,
    /// The median run.
    pub median_samples_per_s: f64,
    /// Median step time over the fixed weights' median step time.
    pub cost_vs_fixed: f64,
}

/// The cost of each loss balancing: one epoch of `rows` synthetic rows with `threads`
/// workers per run, the balancings interleaved in every round (fixed, uncertainty,
/// GradNorm, then again), `runs` rounds, each step timed on `clock` (with
/// [`crate::Clock::Thread`], one worker: the CPU time of the thread that runs it).
pub fn balancing(
    rows: usize,
    max_vocab: u32,
    threads: usize,
    runs: usize,
    work: &Path,
    clock: crate::Clock,
) -> Result<Vec<BalancingRun>, Error> {
    let threads = if clock == crate::Clock::Thread {
        1
    } else {
        threads
    };
    use resflow::config::LossBalancing;
    let dir = work.join(format!("resflow-bench-balancing-{}", std::process::id()));
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
        let kinds = LossBalancing::NAMES;
        let mut speeds = vec![Vec::new(); kinds.len()];
        for _ in 0..runs.max(1) {
            for (k, name) in kinds.iter().enumerate() {
                let config = ModelConfig {
                    loss_balancing: LossBalancing::from_name(name)?,
                    ..ModelConfig::default()
                };
                let mut trainer = Trainer::new(config, resflow::layout_of(data.schema()), threads)?;
                speeds[k].push(epoch_on(&mut trainer, &data, clock)?.0);
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let medians: Vec<f64> = speeds.iter_mut().map(median).collect();
        Ok(kinds
            .iter()
            .zip(&speeds)
            .zip(&medians)
            .map(|((&balancing, s), &m)| BalancingRun {
                balancing,
                best_samples_per_s: s.iter().copied().fold(0.0, f64::max),
                median_samples_per_s: m,
                cost_vs_fixed: medians[0] / m,
            })
            .collect())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
