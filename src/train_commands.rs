//! `resflow train`, `eval`, `export`, `score` and `demo`: the model's life cycle.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use metrics::{EvalConfig, EvalReport, StreamingEvaluator};
use resflow::{Model, ModelConfig, Scorer, StepStats, TrainSummary, Trainer, score_dataset};
use serde::Serialize;
use shards::Dataset;

pub(crate) type Fallible<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// Options of `resflow train`.
#[derive(Args)]
pub struct TrainArgs {
    /// Training dataset (a directory of shards).
    #[arg(long)]
    train: PathBuf,
    /// Evaluation dataset, evaluated after every epoch.
    #[arg(long)]
    eval: Option<PathBuf>,
    /// Model configuration (JSON; every key optional, see docs/resflow.md).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Worker threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// Epochs (overrides the configuration).
    #[arg(long)]
    epochs: Option<usize>,
    /// Save a checkpoint here after every epoch (and every --checkpoint-every steps).
    #[arg(long)]
    checkpoint_dir: Option<PathBuf>,
    /// Also checkpoint every this many steps.
    #[arg(long)]
    checkpoint_every: Option<u64>,
    /// Continue from the checkpoint in --checkpoint-dir.
    #[arg(long)]
    resume: bool,
    /// Also evaluate (on --eval) every this many steps; it is always evaluated after each epoch.
    #[arg(long)]
    eval_every: Option<u64>,
    /// Write the JSON report here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Export the trained model (safetensors) here.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Options of `resflow eval`.
#[derive(Args)]
pub struct EvalArgs {
    /// An exported model file, or a checkpoint directory.
    #[arg(long)]
    model: PathBuf,
    /// Dataset to evaluate on.
    #[arg(long)]
    data: PathBuf,
    /// Write the JSON report here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// List-metric options.
    #[command(flatten)]
    list: crate::eval_options::ListMetricArgs,
}

/// Options of `resflow export`.
#[derive(Args)]
pub struct ExportArgs {
    /// Checkpoint directory.
    #[arg(long, required_unless_present = "model", conflicts_with = "model")]
    checkpoint: Option<PathBuf>,
    /// An exported model file (instead of a checkpoint), to write as ONNX.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Model file to write.
    #[arg(long, required_unless_present = "onnx")]
    out: Option<PathBuf>,
    /// Also write the model as an ONNX graph (opset 17) here; see docs/onnx.md.
    #[arg(long)]
    onnx: Option<PathBuf>,
}

/// Options of `resflow score`.
#[derive(Args)]
pub struct ScoreArgs {
    /// Exported model file.
    #[arg(long)]
    model: PathBuf,
    /// Dataset to score.
    #[arg(long)]
    data: PathBuf,
    /// CSV of scores to write: row, group, one probability per task, fused score.
    #[arg(long)]
    out: PathBuf,
}

/// Options of `resflow demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Training rows to generate.
    #[arg(long, default_value_t = 200_000)]
    rows: usize,
    /// Worker threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
}

/// The report of `train` and `eval`.
#[derive(Serialize)]
struct Report<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    train: Option<&'a TrainSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eval: Option<&'a EvalReport>,
}

pub(crate) fn threads(n: Option<usize>) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if let Some(n) = n.filter(|&n| n > cores) {
        eprintln!(
            "warning: --threads {n} is more than the {cores} cores available; the workers will \
             contend for them and run slower than with --threads {cores}"
        );
    }
    n.unwrap_or(cores).max(1)
}

pub(crate) fn open(dir: &Path) -> Fallible<Dataset> {
    Dataset::open(dir).map_err(|e| format!("cannot open dataset {}: {e}", dir.display()).into())
}

fn write_report(path: &Option<PathBuf>, report: &Report<'_>) -> Fallible {
    if let Some(p) = path {
        let text = serde_json::to_string_pretty(report)?;
        resflow::write_atomically(p, text.as_bytes())?;
        eprintln!("report written to {}", p.display());
    }
    Ok(())
}

/// Prints an evaluation as a table.
fn print_eval(title: &str, r: &EvalReport) {
    println!("{title} ({} rows)", r.rows);
    println!(
        "{:>12} | {:>7} | {:>7} | {:>8} | {:>11}",
        "task", "AUC", "GAUC", "log loss", "calibration"
    );
    let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
    for t in &r.tasks {
        println!(
            "{:>12} | {:>7} | {:>7} | {:>8.4} | {:>11}",
            t.name,
            f(t.auc),
            f(t.gauc),
            t.logloss,
            f(t.calibration)
        );
    }
    crate::eval_options::print_list_metrics(r);
}

/// A progress display: a bar when both stdout and stderr are terminals; otherwise (output
/// piped or logged) a plain line on stderr after the first step and every few seconds.
struct Progress {
    bar: Option<ProgressBar>,
    last_line: Option<Instant>,
    start: Instant,
    rows: u64,
}

impl Progress {
    fn new(total_rows: u64, label: &str) -> Self {
        let terminal = std::io::stderr().is_terminal() && std::io::stdout().is_terminal();
        let bar = terminal.then(|| {
            let b = ProgressBar::new(total_rows);
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} rows, {per_sec}, ETA {eta} {msg}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            b.set_prefix(label.to_string());
            b
        });
        Self {
            bar,
            last_line: None,
            start: Instant::now(),
            rows: 0,
        }
    }

    fn step(&mut self, trainer: &Trainer, s: &StepStats) {
        self.rows += s.rows as u64;
        let tasks = &trainer.network.config.tasks;
        let losses = tasks
            .iter()
            .zip(&s.losses)
            .map(|(t, l)| format!("{} {l:.4}", t.name))
            .collect::<Vec<_>>()
            .join(", ");
        match &self.bar {
            Some(b) => {
                b.inc(s.rows as u64);
                b.set_message(format!("loss: {losses}"));
            }
            None if self
                .last_line
                .is_none_or(|t| t.elapsed().as_secs_f64() > 5.0) =>
            {
                let rate = self.rows as f64 / self.start.elapsed().as_secs_f64();
                eprintln!(
                    "epoch {} step {}: {:.0} samples/s, loss: {losses}",
                    trainer.epoch + 1,
                    trainer.step,
                    rate
                );
                self.last_line = Some(Instant::now());
            }
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Trains `trainer` to `epochs` epochs with progress, checkpoints and periodic evaluation.
pub(crate) fn run_training(
    trainer: &mut Trainer,
    train: &Dataset,
    eval: Option<&Dataset>,
    epochs: usize,
    checkpoint: Option<(&Path, Option<u64>)>,
    eval_every: Option<u64>,
    label: &str,
) -> Fallible<TrainSummary> {
    let (mut seconds, mut rows, first_step) = (0.0, 0u64, trainer.step);
    while trainer.epoch < epochs {
        let mut progress = Progress::new(
            train.rows() as u64,
            &format!("{label} epoch {}/{epochs}", trainer.epoch + 1),
        );
        let eval_config = trainer.eval_config();
        let (s, r) = trainer.train_epoch(train, |t, stats| {
            progress.step(t, stats);
            if let Some((dir, Some(every))) = checkpoint
                && every > 0
                && t.step.is_multiple_of(every)
            {
                t.save_checkpoint(dir)?;
            }
            if let (Some(ds), Some(every)) = (eval, eval_every)
                && every > 0
                && t.step.is_multiple_of(every)
            {
                let rep = t.evaluate(ds, &eval_config)?;
                print_eval(&format!("evaluation at step {}", t.step), &rep);
            }
            Ok(())
        })?;
        progress.finish();
        seconds += s;
        rows += r;
        if let Some((dir, _)) = checkpoint {
            trainer.save_checkpoint(dir)?;
        }
        if let Some(ds) = eval
            && trainer.epoch < epochs
        {
            let rep = trainer.evaluate(ds, &eval_config)?;
            print_eval(&format!("evaluation after epoch {}", trainer.epoch), &rep);
        }
    }
    Ok(TrainSummary {
        samples_per_s: rows as f64 / f64::max(seconds, 1e-9),
        threads: trainer.threads(),
        steps: trainer.step - first_step,
        seconds,
    })
}

/// The configuration in `path` (or the paper's defaults), with `epochs` applied and its
/// tasks matched to the data's: without a file, task settings follow the data's task names
/// (tasks beyond the defaults' two get the last default's weights); with one, the names must
/// agree.
pub(crate) fn config_for(
    path: Option<&Path>,
    data: &Dataset,
    epochs: Option<usize>,
) -> Fallible<ModelConfig> {
    let mut config = match path {
        Some(p) => ModelConfig::from_json(
            &std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?,
        )
        .map_err(|e| format!("{}: {e}", p.display()))?,
        None => ModelConfig::default(),
    };
    if let Some(e) = epochs {
        config.epochs = e;
    }
    let tasks = &data.schema().tasks;
    if config.tasks.iter().map(|t| &t.name).ne(tasks.iter()) {
        if path.is_some() {
            return Err(format!(
                "the configuration's tasks {:?} differ from the data's {:?}",
                config.tasks.iter().map(|t| &t.name).collect::<Vec<_>>(),
                tasks
            )
            .into());
        }
        let d = ModelConfig::default().tasks;
        config.tasks = tasks
            .iter()
            .enumerate()
            .map(|(i, name)| resflow::config::TaskConfig {
                name: name.clone(),
                ..d[i.min(d.len() - 1)].clone()
            })
            .collect();
        config.validate()?;
    }
    Ok(config)
}

/// Runs `resflow train`.
pub fn train(args: TrainArgs) -> Fallible {
    // Every output and option is checked before any data is read.
    let mut plan = resflow::OutputPlan::new().input("--train", &args.train);
    for (option, path) in [("--eval", &args.eval), ("--config", &args.config)] {
        if let Some(p) = path {
            plan = plan.input(option, p);
        }
    }
    plan.file("--out", args.out.as_deref())
        .file("--report", args.report.as_deref())
        .dir(
            "--checkpoint-dir",
            args.checkpoint_dir.as_deref(),
            &[resflow::CHECKPOINT_FILE],
        )
        .check()?;
    check_train_options(&args)?;
    let train = open(&args.train)?;
    if train.rows() == 0 {
        return Err(format!("--train {}: the dataset has no rows", args.train.display()).into());
    }
    let eval = args.eval.as_deref().map(open).transpose()?;
    // (An empty evaluation set is refused below, with its own message.)
    if let (Some(e), Some(path)) = (&eval, &args.eval)
        && e.rows() > 0
    {
        train
            .schema()
            .check_compatible(e.schema())
            .map_err(|err| format!("--eval {}: {err}", path.display()))?;
    }
    let config = config_for(args.config.as_deref(), &train, args.epochs)?;
    let threads = threads(args.threads);
    let mut trainer = match (&args.checkpoint_dir, args.resume) {
        (Some(dir), true) => {
            if !dir.join(resflow::CHECKPOINT_FILE).exists() {
                return Err(format!(
                    "--resume: {} holds no checkpoint ({}); drop --resume to start afresh",
                    dir.display(),
                    resflow::CHECKPOINT_FILE
                )
                .into());
            }
            let t = Trainer::load_checkpoint(dir, threads)?;
            if let Some(path) = &args.config {
                let diff =
                    resflow::checks::config_differences(&t.network.config, &config, &["epochs"]);
                if !diff.is_empty() {
                    return Err(format!(
                        "--resume: the checkpoint in {} was trained with another configuration \
                         than --config {} ({}); resume without --config, or start afresh in \
                         another --checkpoint-dir",
                        dir.display(),
                        path.display(),
                        diff.join("; ")
                    )
                    .into());
                }
            }
            eprintln!(
                "resuming from {} at epoch {}, step {}",
                dir.display(),
                t.epoch + 1,
                t.step
            );
            t
        }
        (None, true) => return Err("--resume needs --checkpoint-dir".into()),
        _ => Trainer::new(config.clone(), resflow::layout_of(train.schema()), threads)?,
    };
    trainer
        .network
        .check_layout(&resflow::layout_of(train.schema()))
        .map_err(|e| format!("--train {}: {e}", args.train.display()))?;
    if let (Some(ds), Some(path)) = (&eval, &args.eval) {
        if ds.rows() == 0 {
            return Err(format!("--eval {}: the dataset has no rows", path.display()).into());
        }
        trainer
            .network
            .check_layout(&resflow::layout_of(ds.schema()))
            .map_err(|e| format!("--eval {}: {e}", path.display()))?;
    }
    let epochs = args.epochs.unwrap_or(trainer.network.config.epochs);
    eprintln!(
        "training on {} rows, {} threads, batch {}, {} epoch(s), {} parameters",
        train.rows(),
        threads,
        trainer.network.config.batch_size,
        epochs,
        trainer.parameter_count()?
    );
    let checkpoint = args
        .checkpoint_dir
        .as_deref()
        .map(|d| (d, args.checkpoint_every));
    let summary = run_training(
        &mut trainer,
        &train,
        eval.as_ref(),
        epochs,
        checkpoint,
        args.eval_every,
        "train",
    )?;
    println!(
        "trained {} steps in {:.1} s: {:.0} samples/s with {} threads",
        summary.steps, summary.seconds, summary.samples_per_s, summary.threads
    );
    // The trained model is written before anything else can fail.
    if let Some(out) = &args.out {
        trainer.export()?.save(out)?;
        println!("model written to {}", out.display());
    }
    let report = match &eval {
        Some(ds) => {
            let config = crate::eval_options::with_defaults(trainer.eval_config(), ds.schema())?;
            Some(trainer.evaluate(ds, &config)?)
        }
        None => None,
    };
    if let Some(r) = &report {
        print_eval("final evaluation", r);
    }
    write_report(
        &args.report,
        &Report {
            train: Some(&summary),
            eval: report.as_ref(),
        },
    )
}

/// The options of `train` that are only meaningful with others, or with a positive value.
fn check_train_options(args: &TrainArgs) -> Fallible {
    let zero = |v: Option<u64>| v == Some(0);
    if zero(args.checkpoint_every) || zero(args.eval_every) {
        return Err("--checkpoint-every and --eval-every must be at least 1".into());
    }
    if args.threads == Some(0) || args.epochs == Some(0) {
        return Err("--threads and --epochs must be at least 1".into());
    }
    if args.checkpoint_every.is_some() && args.checkpoint_dir.is_none() {
        return Err("--checkpoint-every needs --checkpoint-dir".into());
    }
    if args.eval_every.is_some() && args.eval.is_none() {
        return Err("--eval-every needs --eval".into());
    }
    Ok(())
}

/// Evaluates an exported model through the scorer.
fn evaluate_model(
    model: &Model,
    data: &Dataset,
    list: &crate::eval_options::ListMetricArgs,
) -> Fallible<EvalReport> {
    let mut config = EvalConfig::new(model.layout.tasks.clone());
    config.fusion_weights = model.config.fusion_weights();
    config.fusion = model.config.fusion.kind;
    list.apply(&mut config, data.schema())?;
    let scorer = Scorer::new(model.clone())?;
    let mut ev = StreamingEvaluator::new(config)?;
    let mut feed = resflow::EvalFeeder::new(data.schema(), ev.config())?;
    score_dataset(&scorer, data, |probs, _, batch| {
        feed.push(&mut ev, probs, batch)
    })?;
    Ok(ev.report()?)
}

/// Runs `resflow eval`.
pub fn eval(args: EvalArgs) -> Fallible {
    resflow::OutputPlan::new()
        .input("--model", &args.model)
        .input("--data", &args.data)
        .file("--report", args.report.as_deref())
        .check()?;
    let data = open(&args.data)?;
    let report = if args.model.is_dir() {
        let mut t = Trainer::load_checkpoint(&args.model, threads(None))?;
        let mut config = t.eval_config();
        args.list.apply(&mut config, data.schema())?;
        t.evaluate(&data, &config)?
    } else {
        evaluate_model(&Model::load(&args.model)?, &data, &args.list)?
    };
    print_eval(&format!("evaluation of {}", args.model.display()), &report);
    write_report(
        &args.report,
        &Report {
            train: None,
            eval: Some(&report),
        },
    )
}

/// Runs `resflow export`.
pub fn export(args: ExportArgs) -> Fallible {
    let source = match (&args.checkpoint, &args.model) {
        (Some(c), _) => ("--checkpoint", c),
        (None, Some(m)) => ("--model", m),
        (None, None) => return Err("give --checkpoint or --model".into()),
    };
    resflow::OutputPlan::new()
        .input(source.0, source.1)
        .file("--out", args.out.as_deref())
        .file("--onnx", args.onnx.as_deref())
        .check()?;
    let model = match &args.checkpoint {
        Some(c) => {
            let t = Trainer::load_checkpoint(c, 1)?;
            println!("checkpoint of epoch {}, step {}", t.epoch, t.step);
            t.export()?
        }
        None => Model::load(source.1)?,
    };
    if let Some(out) = &args.out {
        model.save(out)?;
        println!("model written to {}", out.display());
    }
    if let Some(path) = &args.onnx {
        onnx::save(&model, path)?;
        println!("ONNX graph written to {}", path.display());
    }
    Ok(())
}

/// Runs `resflow score`.
pub fn score(args: ScoreArgs) -> Fallible {
    resflow::OutputPlan::new()
        .input("--model", &args.model)
        .input("--data", &args.data)
        .file("--out", Some(&args.out))
        .check()?;
    let model = Model::load(&args.model)?;
    let data = open(&args.data)?;
    let scorer = Scorer::new(model)?;
    let tasks = scorer.model().layout.tasks.clone();
    // Written under a temporary name and renamed when complete, like every output.
    let name = args
        .out
        .file_name()
        .map_or("scores".into(), |n| n.to_string_lossy().into_owned());
    shards::atomic::remove_stale_temporaries(&args.out);
    let tmp = args
        .out
        .with_file_name(format!(".{name}.tmp-{}-0", std::process::id()));
    let result = (|| -> Fallible<u64> {
        let file = std::fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        let mut out = std::io::BufWriter::new(file);
        let mut header = vec!["row".to_string(), "group".to_string()];
        header.extend(tasks.iter().map(|t| format!("p_{t}")));
        header.push("fused".into());
        writeln!(out, "{}", header.join(","))?;
        let mut row = 0u64;
        let mut line = String::new();
        score_dataset(&scorer, &data, |probs, fused, batch| {
            use std::fmt::Write as _;
            for r in 0..batch.rows {
                line.clear();
                let _ = write!(line, "{row},{}", batch.group.get(r).copied().unwrap_or(0));
                for p in &probs[r * tasks.len()..(r + 1) * tasks.len()] {
                    let _ = write!(line, ",{p}");
                }
                let _ = writeln!(line, ",{}", fused[r]);
                out.write_all(line.as_bytes())
                    .map_err(|e| resflow::ModelError::Io {
                        path: args.out.display().to_string(),
                        source: e,
                    })?;
                row += 1;
            }
            Ok(())
        })?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, &args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
        Ok(row)
    })();
    let row = result.inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    println!("scored {row} rows into {}", args.out.display());
    Ok(())
}

/// Runs `resflow demo`: synthetic data, ResFlow against independent towers, one table.
pub fn demo(args: DemoArgs) -> Fallible {
    with_synthetic_funnel(args.rows, 2, |train, eval| {
        let threads = threads(args.threads);
        let mut results = vec![];
        for (name, residual) in [("ResFlow", true), ("independent towers", false)] {
            let mut config = ModelConfig::default();
            config.residual.hidden = residual;
            config.residual.logits = residual;
            config.optimizer.learning_rate = 2e-3;
            let mut t = Trainer::new(config, resflow::layout_of(train.schema()), threads)?;
            let summary = run_training(&mut t, train, None, 1, None, None, name)?;
            let report = t.evaluate(eval, &t.eval_config())?;
            results.push((name, summary, report));
        }
        println!(
            "\nResFlow vs independent towers (its ablation), 1 epoch on {} synthetic rows, {threads} threads",
            train.rows()
        );
        let cols: Vec<String> = results[0]
            .2
            .tasks
            .iter()
            .flat_map(|t| [format!("{} AUC", t.name), format!("{} GAUC", t.name)])
            .collect();
        print!("{:>20}", "model");
        for c in &cols {
            print!(" | {c:>15}");
        }
        println!(
            " | {:>10} | {:>10} | {:>10}",
            "WR@10 add", "WR@10 mul", "samples/s"
        );
        for (name, summary, r) in &results {
            print!("{name:>20}");
            for t in &r.tasks {
                print!(
                    " | {:>15.4} | {:>15.4}",
                    t.auc.unwrap_or(f64::NAN),
                    t.gauc.unwrap_or(f64::NAN)
                );
            }
            let wr = |add: bool| {
                r.wr_at_k.as_ref().map_or(f64::NAN, |w| {
                    if add {
                        w.additive["10"]
                    } else {
                        w.multiplicative["10"]
                    }
                })
            };
            println!(
                " | {:>10.4} | {:>10.4} | {:>10.0}",
                wr(true),
                wr(false),
                summary.samples_per_s
            );
        }
        println!(
            "\nAUC and GAUC per task on held-out sessions; Weighted Recall@10: the share of each session's conversions ranked in its top 10 by the fused score (see docs/metrics.md)."
        );
        println!(
            "The same against Shared-Bottom, ESMM, MMoE, PLE and AITM, over several seeds: resflow compare (docs/models.md)."
        );
        Ok(())
    })
}

/// Generates the built-in synthetic funnel of `tasks` tasks (`rows` training rows and a
/// quarter as many for evaluation, at least 1,000 each, different seeds) in a temporary directory, runs `f` on
/// it, and removes it.
pub(crate) fn with_synthetic_funnel(
    rows: usize,
    tasks: usize,
    f: impl FnOnce(&Dataset, &Dataset) -> Fallible,
) -> Fallible {
    let dir = std::env::temp_dir().join(format!("resflow-funnel-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let result = (|| -> Fallible {
        let make = |rows: usize, seed, name: &str| -> Fallible<Dataset> {
            let config = shards::synth::SynthConfig {
                rows: rows.max(1000),
                seed,
                tasks,
                ..Default::default()
            };
            shards::synth::generate(&config, &dir.join(name))?;
            open(&dir.join(name))
        };
        eprintln!(
            "generating a synthetic {} funnel: {} training rows, {} evaluation rows",
            shards::synth::task_names(tasks).join(" -> "),
            rows.max(1000),
            (rows / 4).max(1000)
        );
        let train = make(rows, 1, "train")?;
        let eval = make(rows / 4, 2, "eval")?;
        f(&train, &eval)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
