//! The comparison experiment: ResFlow and the baseline multi-task models, each trained on
//! the same data with the same seeds, evaluated on the same set, timed through the scorer
//! and on the tape; per model the mean and standard deviation over seeds.
//!
//! ```text
//! for each kind:   config = base with this kind (the base's own kind keeps its sizes)
//!   for each seed:   train (run_epochs) -> evaluate -> export -> time the scorer and the tape
//!   summarise:       Stat (mean, std, values) of every figure over the seeds
//! ```

use std::collections::BTreeMap;

use metrics::EvalReport;
use serde::Serialize;
use shards::Dataset;

use crate::config::ModelKind;
use crate::latency::{latencies, percentile, tape_forward_latencies};
use crate::list_options::ListOptions;
use crate::session::{Progress, Schedule, config_for_tasks, run_epochs};
use crate::{Error, InputLayout, Model, ModelConfig, RunError, Scorer, Trainer};

/// Candidates per request in the latency figures.
pub const LATENCY_CANDIDATES: usize = 500;

/// The most seeds a comparison takes per model.
pub const MAX_SEEDS: usize = 1000;

/// What to compare and how.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// Model kinds by name (`None`: every kind the data's tasks allow; ESMM needs two).
    pub models: Option<Vec<String>>,
    /// Seeds per model, distinct (initialisation and batch order change with the seed).
    pub seeds: Vec<u64>,
    /// Epochs per run (default: the configuration's).
    pub epochs: Option<usize>,
    /// Worker threads of each training run.
    pub threads: usize,
    /// Scoring calls timed per run (requests of [`LATENCY_CANDIDATES`] candidates, one
    /// thread; at least 1).
    pub latency_calls: usize,
    /// The list metrics of the evaluations.
    pub list: ListOptions,
}

impl Default for CompareOptions {
    fn default() -> Self {
        Self {
            models: None,
            seeds: vec![1, 2, 3],
            epochs: None,
            threads: 1,
            latency_calls: 200,
            list: ListOptions::default(),
        }
    }
}

impl CompareOptions {
    /// Checks the kinds' names and the seeds.
    pub fn check(&self) -> Result<(), Error> {
        for m in self.models.iter().flatten() {
            ModelKind::from_name(m)?;
        }
        let mut distinct = self.seeds.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if self.seeds.is_empty() || distinct.len() != self.seeds.len() {
            return Err(RunError::Options("give at least one seed, each once".into()).into());
        }
        if self.seeds.len() > MAX_SEEDS {
            return Err(RunError::Options(format!("at most {MAX_SEEDS} runs per model")).into());
        }
        if self.threads == 0 || self.epochs == Some(0) {
            return Err(RunError::Options("threads and epochs must be at least 1".into()).into());
        }
        Ok(())
    }
}

/// Mean, sample standard deviation and the values over seeds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stat {
    /// The mean.
    pub mean: f64,
    /// The sample standard deviation (0 for one value).
    pub std: f64,
    /// The values, one per seed.
    pub values: Vec<f64>,
}

impl Stat {
    /// The statistics of `values`.
    pub fn of(values: Vec<f64>) -> Self {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n.max(1.0);
        let var = if values.len() > 1 {
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        Self {
            mean,
            std: var.sqrt(),
            values,
        }
    }

    /// `mean ± std` with `digits` decimals.
    pub fn show(&self, digits: usize) -> String {
        format!("{:.digits$} ± {:.digits$}", self.mean, self.std)
    }
}

/// One task's figures over seeds.
#[derive(Debug, Clone, Serialize)]
pub struct TaskStats {
    /// Task name.
    pub name: String,
    /// ROC AUC.
    pub auc: Stat,
    /// Group AUC.
    pub gauc: Stat,
    /// Mean log loss.
    pub logloss: Stat,
}

/// One model kind's figures over seeds.
#[derive(Debug, Clone, Serialize)]
pub struct ModelStats {
    /// The kind's name.
    pub model: String,
    /// The configuration every seed trained (its seed aside).
    pub config: ModelConfig,
    /// Trainable floats, embedding tables included.
    pub parameters: usize,
    /// Trainable floats outside the embedding tables.
    pub dense_parameters: usize,
    /// Dense-layer multiply-adds per candidate.
    pub multiply_adds_per_candidate: usize,
    /// Per task, in chain order.
    pub tasks: Vec<TaskStats>,
    /// `K -> WR@K` with additive fusion.
    pub wr_additive: BTreeMap<String, Stat>,
    /// `K -> WR@K` with multiplicative fusion.
    pub wr_multiplicative: BTreeMap<String, Stat>,
    /// Training throughput.
    pub samples_per_s: Stat,
    /// The scorer (what a service sees): one compiled plan for every kind.
    pub score_500_p50_ms: Stat,
    /// The scorer's 99th percentile.
    pub score_500_p99_ms: Stat,
    /// The inference forward pass on the autodiff tape, the same engine for every model:
    /// the models' own cost, whatever their serving path.
    pub tape_500_p50_ms: Stat,
}

/// The comparison's report.
#[derive(Debug, Clone, Serialize)]
pub struct CompareReport {
    /// Training rows.
    pub train_rows: usize,
    /// Evaluation rows.
    pub eval_rows: usize,
    /// Epochs per run.
    pub epochs: usize,
    /// The seeds every model ran with.
    pub seeds: Vec<u64>,
    /// Worker threads of the training runs.
    pub threads: usize,
    /// The kernel tier in use.
    pub kernel: String,
    /// One entry per model kind, in the order asked.
    pub models: Vec<ModelStats>,
}

/// One trained run's figures.
struct Run {
    report: EvalReport,
    samples_per_s: f64,
    p50: f64,
    p99: f64,
    tape_p50: f64,
}

/// Runs the comparison: every kind of `options.models` with the shared settings of
/// `config` (matched to the data's tasks as for a training run, see
/// [`config_for_tasks`]; its own kind keeps its sizes, the others take their defaults),
/// trained on `train` once per seed, evaluated on `eval`. Progress and notes (what is
/// compared, the evaluations' warnings) go to `progress`; each run is named
/// `"<kind> seed <seed>/<seeds>"`.
pub fn compare(
    train: &Dataset,
    eval: &Dataset,
    config: Option<ModelConfig>,
    options: &CompareOptions,
    progress: &mut dyn Progress,
) -> Result<CompareReport, Error> {
    options.check()?;
    train
        .schema()
        .check_compatible(eval.schema())
        .map_err(RunError::EvalSchema)?;
    let mut base = config_for_tasks(config, &train.schema().tasks)?;
    if let Some(e) = options.epochs {
        base.epochs = e;
    }
    let base = &base;
    let layout = crate::layout_of(train.schema());
    let seeds = &options.seeds;
    // The first rows of the evaluation set, for the tape-forward timing.
    let mut first_rows = eval.new_batch();
    if !eval
        .batches(LATENCY_CANDIDATES, None)
        .next_into(&mut first_rows)
    {
        return Err(RunError::EmptyEval.into());
    }
    let names: Vec<&str> = match &options.models {
        Some(list) => list.iter().map(String::as_str).collect(),
        None => ModelKind::NAMES
            .into_iter()
            .filter(|&n| base.with_model(n).is_ok())
            .collect(),
    };
    if options.models.is_none() && names.len() < ModelKind::NAMES.len() {
        progress.note(&format!(
            "comparing {} (ESMM is defined for two tasks, as are ESCM2 and DCMT; the data has {})",
            names.join(", "),
            base.tasks.len()
        ));
    }
    let mut models = Vec::new();
    for name in names {
        // The configuration's own `model`, if it is this kind, keeps its sizes.
        let config = if base.model.name() == name {
            base.clone()
        } else {
            base.with_model(name)?
        };
        let sizes = model_sizes(&config, &layout)?;
        let mut runs = Vec::new();
        for &seed in seeds {
            let mut c = config.clone();
            c.seed = seed;
            let mut t = Trainer::new(c, layout.clone(), options.threads)?;
            let schedule = Schedule {
                epochs: config.epochs,
                ..Schedule::default()
            };
            let label = format!("{name} seed {seed}/{}", seeds.len());
            let summary = run_epochs(&mut t, train, &schedule, &label, progress)?;
            let eval_config = options.list.eval_config(t.eval_config(), eval.schema())?;
            let report = t.evaluate(eval, &eval_config)?;
            if seed == seeds[0] {
                for w in &report.warnings {
                    progress.note(&format!("warning ({name}): {w}"));
                }
            }
            let scorer = Scorer::new(t.export()?)?;
            let calls = options.latency_calls.max(1);
            let lat = latencies(&scorer, LATENCY_CANDIDATES, calls, seed)?;
            let tape = tape_forward_latencies(&t.network, &t.store, &first_rows, calls)?;
            runs.push(Run {
                report,
                samples_per_s: summary.samples_per_s,
                p50: percentile(&lat, 0.5) * 1e3,
                p99: percentile(&lat, 0.99) * 1e3,
                tape_p50: percentile(&tape, 0.5) * 1e3,
            });
        }
        models.push(summarise(name, config, sizes, &runs));
    }
    Ok(CompareReport {
        train_rows: train.rows(),
        eval_rows: eval.rows(),
        epochs: base.epochs,
        seeds: seeds.clone(),
        threads: options.threads,
        kernel: tensor::Tier::active().name().to_string(),
        models,
    })
}

/// `(parameters, dense parameters, multiply-adds per candidate)` of `config` on `layout`.
/// The dense part does not depend on the vocabularies, so it is counted on a copy of the
/// layout with one-row tables (no full-size copy of the embeddings); the tables add
/// `vocab x dim` each.
fn model_sizes(config: &ModelConfig, layout: &InputLayout) -> Result<(usize, usize, usize), Error> {
    let mut small = layout.clone();
    small.fields.iter_mut().for_each(|f| f.vocab = 1);
    let probe = Model::init(config.clone(), small)?;
    let dense = probe.dense_parameter_count();
    let tables: usize = layout
        .fields
        .iter()
        .map(|f| f.vocab as usize * config.embedding_dim)
        .sum();
    Ok((dense + tables, dense, probe.multiply_adds()))
}

fn summarise(
    name: &str,
    config: ModelConfig,
    sizes: (usize, usize, usize),
    runs: &[Run],
) -> ModelStats {
    let stat = |f: &dyn Fn(&Run) -> f64| Stat::of(runs.iter().map(f).collect());
    let tasks = runs[0]
        .report
        .tasks
        .iter()
        .enumerate()
        .map(|(k, t)| TaskStats {
            name: t.name.clone(),
            auc: stat(&|r| r.report.tasks[k].auc.unwrap_or(f64::NAN)),
            gauc: stat(&|r| r.report.tasks[k].gauc.unwrap_or(f64::NAN)),
            logloss: stat(&|r| r.report.tasks[k].logloss),
        })
        .collect();
    let wr = |additive: bool| {
        let keys: Vec<String> = runs[0]
            .report
            .wr_at_k
            .as_ref()
            .map(|w| w.additive.keys().cloned().collect())
            .unwrap_or_default();
        keys.into_iter()
            .map(|k| {
                let s = stat(&|r| {
                    r.report.wr_at_k.as_ref().map_or(f64::NAN, |w| {
                        let m = if additive {
                            &w.additive
                        } else {
                            &w.multiplicative
                        };
                        m.get(&k).copied().unwrap_or(f64::NAN)
                    })
                });
                (k, s)
            })
            .collect()
    };
    ModelStats {
        model: name.to_string(),
        config,
        parameters: sizes.0,
        dense_parameters: sizes.1,
        multiply_adds_per_candidate: sizes.2,
        tasks,
        wr_additive: wr(true),
        wr_multiplicative: wr(false),
        samples_per_s: stat(&|r| r.samples_per_s),
        score_500_p50_ms: stat(&|r| r.p50),
        score_500_p99_ms: stat(&|r| r.p99),
        tape_500_p50_ms: stat(&|r| r.tape_p50),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_is_the_mean_and_the_sample_deviation() {
        let s = Stat::of(vec![1.0, 2.0, 3.0, 6.0]);
        assert_eq!(s.mean, 3.0);
        // Squares about the mean: 4 + 1 + 0 + 9 = 14, over n - 1 = 3.
        assert_eq!(s.std, (14.0f64 / 3.0).sqrt());
        assert_eq!(s.show(2), "3.00 ± 2.16");
        let one = Stat::of(vec![0.5]);
        assert_eq!((one.mean, one.std), (0.5, 0.0));
    }

    #[test]
    fn options_are_checked_before_any_run() {
        let ok = CompareOptions::default();
        assert!(ok.check().is_ok());
        for bad in [
            CompareOptions {
                seeds: vec![],
                ..Default::default()
            },
            CompareOptions {
                seeds: vec![4, 4],
                ..Default::default()
            },
            CompareOptions {
                models: Some(vec!["resflow".into(), "moe".into()]),
                ..Default::default()
            },
            CompareOptions {
                threads: 0,
                ..Default::default()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }
}
