//! `resflow compare`: ResFlow against the baseline multi-task models, each trained on the
//! same data with the same seeds, in one table (and a JSON report).

use std::path::{Path, PathBuf};

use clap::Args;
use metrics::EvalReport;
use resflow::config::ModelKind;
use resflow::{InputLayout, ModelConfig, Scorer, Trainer};
use serde::Serialize;
use shards::Dataset;

use crate::train_commands::{
    Fallible, config_for, open, run_training, threads, with_synthetic_funnel,
};

/// Options of `resflow compare`.
#[derive(Args)]
pub struct CompareArgs {
    /// Training dataset (shards). Without it, a synthetic funnel of --rows rows is generated.
    #[arg(long, requires = "eval")]
    train: Option<PathBuf>,
    /// Evaluation dataset (shards).
    #[arg(long, requires = "train")]
    eval: Option<PathBuf>,
    /// Models to compare, comma-separated (default: every kind the data's tasks allow;
    /// ESMM needs exactly two).
    #[arg(long, value_delimiter = ',')]
    models: Option<Vec<String>>,
    /// Seeds per model: a count N (seeds 1, 2, ..., N) or a comma-separated list (e.g.
    /// 7,11,13; a single seed as a list: 7,). Initialisation and batch order change with
    /// the seed.
    #[arg(long, default_value = "3")]
    seeds: String,
    /// Epochs per run (overrides the configuration).
    #[arg(long)]
    epochs: Option<usize>,
    /// Shared settings (JSON, as for `train`); each model's kind and its defaults are set on
    /// top. If it has a `model` key, that kind keeps the sizes given there (e.g.
    /// `{"model": {"kind": "mmoe", "experts": 8}}`); every other kind uses its defaults.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Worker threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// Training rows of the synthetic funnel (without --train; a quarter as many for evaluation).
    #[arg(long, default_value_t = 200_000)]
    rows: usize,
    /// Tasks of the synthetic funnel (without --train): 2 (click, conversion) or 3 (click,
    /// cart, order).
    #[arg(long, default_value_t = 2, conflicts_with = "train")]
    tasks: usize,
    /// Scoring calls timed per model (requests of 500 candidates, one thread).
    #[arg(long, default_value_t = 200)]
    latency_calls: usize,
    /// Write the JSON report here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// List-metric options.
    #[command(flatten)]
    list: crate::eval_options::ListMetricArgs,
}

/// The seeds of `--seeds`: a count `N` gives `1..=N`, a comma-separated list itself.
fn parse_seeds(text: &str) -> Result<Vec<u64>, String> {
    let bad = || format!("--seeds {text:?}: expected a count (3) or a list of seeds (7,11,13)");
    if text.contains(',') {
        let seeds: Vec<u64> = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<u64>().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        let mut distinct = seeds.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if seeds.is_empty() || distinct.len() != seeds.len() {
            return Err(format!(
                "--seeds {text:?}: give at least one seed, each once"
            ));
        }
        Ok(seeds)
    } else {
        match text.trim().parse::<u64>() {
            Ok(0) => Err("--seeds must be at least 1".into()),
            Ok(n) if n > 1000 => Err(format!("--seeds {n}: at most 1000 runs per model")),
            Ok(n) => Ok((1..=n).collect()),
            Err(_) => Err(bad()),
        }
    }
}

/// Mean, sample standard deviation and the values over seeds.
#[derive(Serialize, Clone)]
struct Stat {
    mean: f64,
    std: f64,
    values: Vec<f64>,
}

impl Stat {
    fn of(values: Vec<f64>) -> Self {
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

    fn show(&self, digits: usize) -> String {
        format!("{:.digits$} ± {:.digits$}", self.mean, self.std)
    }
}

#[derive(Serialize)]
struct TaskStats {
    name: String,
    auc: Stat,
    gauc: Stat,
    logloss: Stat,
}

#[derive(Serialize)]
struct ModelStats {
    model: String,
    config: ModelConfig,
    /// Trainable floats, embedding tables included.
    parameters: usize,
    /// Trainable floats outside the embedding tables.
    dense_parameters: usize,
    /// Dense-layer multiply-adds per candidate.
    multiply_adds_per_candidate: usize,
    tasks: Vec<TaskStats>,
    /// `K -> WR@K` with additive fusion.
    wr_additive: std::collections::BTreeMap<String, Stat>,
    /// `K -> WR@K` with multiplicative fusion.
    wr_multiplicative: std::collections::BTreeMap<String, Stat>,
    samples_per_s: Stat,
    /// The scorer (what a service sees): ResFlow's fused path, the baselines' generic one.
    score_500_p50_ms: Stat,
    score_500_p99_ms: Stat,
    /// The inference forward pass on the autodiff tape, the same engine for every model:
    /// the models' own cost, whatever their serving path.
    tape_500_p50_ms: Stat,
}

#[derive(Serialize)]
struct CompareReport {
    train_rows: usize,
    eval_rows: usize,
    epochs: usize,
    seeds: Vec<u64>,
    threads: usize,
    kernel: &'static str,
    models: Vec<ModelStats>,
}

/// One trained run's figures.
struct Run {
    report: EvalReport,
    samples_per_s: f64,
    p50: f64,
    p99: f64,
    tape_p50: f64,
}

/// Runs `resflow compare`.
pub fn compare(args: CompareArgs) -> Fallible {
    for m in args.models.iter().flatten() {
        ModelKind::from_name(m)?;
    }
    parse_seeds(&args.seeds)?;
    match (&args.train, &args.eval) {
        (Some(t), Some(e)) => run(&args, &open(t)?, &open(e)?),
        _ => with_synthetic_funnel(args.rows, args.tasks, |train, eval| run(&args, train, eval)),
    }
}

fn run(args: &CompareArgs, train: &Dataset, eval: &Dataset) -> Fallible {
    train.schema().check_compatible(eval.schema())?;
    let base = config_for(args.config.as_deref(), train, args.epochs)?;
    let threads = threads(args.threads);
    let layout = resflow::layout_of(train.schema());
    let seeds = parse_seeds(&args.seeds)?;
    // The first 500 evaluation rows, for the tape-forward timing.
    let mut first_rows = eval.new_batch();
    if !eval.batches(500, None).next_into(&mut first_rows) {
        return Err("the evaluation dataset is empty".into());
    }
    let mut models = Vec::new();
    let names: Vec<&str> = match &args.models {
        Some(list) => list.iter().map(String::as_str).collect(),
        None => ModelKind::NAMES
            .into_iter()
            .filter(|&n| base.with_model(n).is_ok())
            .collect(),
    };
    if args.models.is_none() && names.len() < ModelKind::NAMES.len() {
        eprintln!(
            "comparing {} (ESMM is defined for two tasks; the data has {})",
            names.join(", "),
            base.tasks.len()
        );
    }
    for name in names {
        // The configuration's own `model`, if it is this kind, keeps its sizes.
        let config = if base.model.name() == name {
            base.clone()
        } else {
            base.with_model(name)?
        };
        let sizes = model_sizes(&config, &layout)?;
        let mut runs = Vec::new();
        for &seed in &seeds {
            let mut c = config.clone();
            c.seed = seed;
            let mut t = Trainer::new(c, layout.clone(), threads)?;
            let label = format!("{name} seed {seed}/{}", seeds.len());
            let summary = run_training(&mut t, train, None, config.epochs, None, None, &label)?;
            let mut eval_config = t.eval_config();
            args.list.apply(&mut eval_config, eval.schema())?;
            let report = t.evaluate(eval, &eval_config)?;
            if seed == seeds[0] {
                for w in &report.warnings {
                    eprintln!("warning ({name}): {w}");
                }
            }
            let scorer = Scorer::new(t.export()?)?;
            let calls = args.latency_calls.max(1);
            let lat = bench::score::latencies(&scorer, 500, calls, seed)?;
            let tape =
                bench::score::tape_forward_latencies(&t.network, &t.store, &first_rows, calls)?;
            runs.push(Run {
                report,
                samples_per_s: summary.samples_per_s,
                p50: bench::score::percentile(&lat, 0.5) * 1e3,
                p99: bench::score::percentile(&lat, 0.99) * 1e3,
                tape_p50: bench::score::percentile(&tape, 0.5) * 1e3,
            });
        }
        models.push(summarise(name, config, sizes, &runs));
    }
    let report = CompareReport {
        train_rows: train.rows(),
        eval_rows: eval.rows(),
        epochs: base.epochs,
        seeds,
        threads,
        kernel: tensor::Tier::active().name(),
        models,
    };
    print_table(&report);
    if let Some(path) = &args.report {
        write_json(path, &report)?;
    }
    Ok(())
}

/// `(parameters, dense parameters, multiply-adds per candidate)` of `config` on `layout`.
/// The dense part does not depend on the vocabularies, so it is counted on a copy of the
/// layout with one-row tables (no full-size copy of the embeddings); the tables add
/// `vocab x dim` each.
fn model_sizes(config: &ModelConfig, layout: &InputLayout) -> Fallible<(usize, usize, usize)> {
    let mut small = layout.clone();
    small.fields.iter_mut().for_each(|f| f.vocab = 1);
    let probe = resflow::Model::init(config.clone(), small)?;
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

fn print_table(r: &CompareReport) {
    println!(
        "\n{} training rows, {} evaluation rows, {} epoch(s), {} seed(s) (mean ± standard deviation), {} threads, kernel {}",
        r.train_rows,
        r.eval_rows,
        r.epochs,
        r.seeds.len(),
        r.threads,
        r.kernel
    );
    let Some(first) = r.models.first() else {
        return;
    };
    let k = first.wr_additive.keys().next().cloned();
    let mut header = vec!["model".to_string()];
    for t in &first.tasks {
        header.push(format!("{} AUC", t.name));
        header.push(format!("{} GAUC", t.name));
    }
    if let Some(k) = &k {
        header.push(format!("WR@{k} add"));
        header.push(format!("WR@{k} mul"));
    }
    for h in [
        "dense params",
        "MACs/cand",
        "samples/s",
        "serve ms @500",
        "tape ms @500",
    ] {
        header.push(h.to_string());
    }
    let mut rows = vec![header];
    for m in &r.models {
        let mut row = vec![m.model.clone()];
        for t in &m.tasks {
            row.push(t.auc.show(4));
            row.push(t.gauc.show(4));
        }
        if let Some(k) = &k {
            for map in [&m.wr_additive, &m.wr_multiplicative] {
                row.push(map.get(k).map_or("-".into(), |s| s.show(4)));
            }
        }
        row.push(m.dense_parameters.to_string());
        row.push(m.multiply_adds_per_candidate.to_string());
        row.push(format!("{:.0}", m.samples_per_s.mean));
        row.push(format!("{:.3}", m.score_500_p50_ms.mean));
        row.push(format!("{:.3}", m.tape_500_p50_ms.mean));
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, &w)| format!("{cell:>w$}"))
            .collect();
        println!("{}", cells.join(" | "));
    }
    if k.is_some() {
        println!(
            "\nWR@K: the share of each group's deepest-event weight ranked in its top K by the fused score (additive or multiplicative fusion; see docs/metrics.md). Latency (p50, one thread, 500 candidates): \"serve\" through the scorer (ResFlow's fused path, the baselines' generic one), \"tape\" the inference forward pass on the autodiff tape, the same engine for every model."
        );
    }
}

fn write_json(path: &Path, report: &CompareReport) -> Fallible {
    let text = serde_json::to_string_pretty(report)?;
    resflow::write_atomically(path, text.as_bytes())?;
    println!("report written to {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_seeds;

    #[test]
    fn seeds_as_a_count_or_a_list() {
        assert_eq!(parse_seeds("3").unwrap(), vec![1, 2, 3]);
        assert_eq!(parse_seeds("7,11, 13").unwrap(), vec![7, 11, 13]);
        assert_eq!(parse_seeds("7,").unwrap(), vec![7]);
        for bad in ["0", "x", "1,1", ",", "2,b"] {
            assert!(parse_seeds(bad).is_err(), "{bad}");
        }
    }
}
