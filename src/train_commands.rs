//! `resflow train`, `eval`, `export`, `score` and `demo`: the model's life cycle. The
//! training run, the evaluation and the synthetic funnel are the library's
//! (`resflow::session`, `resflow::evaluate_model`, `resflow::funnel`); this module parses
//! the options, names them in the errors, and prints.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use resflow::session::{Progress, Quiet, Schedule, run_epochs};
use resflow::{
    Model, ModelConfig, Report, RunError, Scorer, Session, SessionOptions, Trainer, score_dataset,
};

use crate::common::{Bar, Fallible, open, read_config, synthetic_funnel, threads, write_json};
use crate::eval_options::{in_option_terms, print_eval, print_regression};

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
    /// Train as one rank of several: `mpirun -np N resflow train --distributed ...` (a build
    /// with `--features mpi`; rank 0 writes the files; see docs/distributed.md).
    #[arg(long)]
    distributed: bool,
    /// With --distributed: row-shard the embedding tables, each rank holding the rows that
    /// hash to it and their optimiser state (see docs/distributed.md).
    #[arg(long)]
    shard_tables: bool,
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
    /// Arithmetic of the scorer's GEMMs for a model file: `f32` (default) or `int8`, to
    /// measure what int8 serving costs in AUC (a checkpoint is evaluated in f32 only).
    #[arg(long, default_value = "f32")]
    precision: resflow::Precision,
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
    /// CSV of scores to write: row, group, one probability per head (task, or a regression
    /// model's P(y > t) per threshold), the fused score (a regression model: its predicted value).
    #[arg(long)]
    out: PathBuf,
    /// Arithmetic of the scorer's GEMMs: `f32` (default) or `int8`.
    #[arg(long, default_value = "f32")]
    precision: resflow::Precision,
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

fn write_report(path: &Option<PathBuf>, report: &Report) -> Fallible {
    if let Some(p) = path {
        write_json(p, report)?;
        eprintln!("report written to {}", p.display());
    }
    Ok(())
}

/// The report of `train`: the run's, and with `--distributed` what rank 0 exchanged.
#[derive(serde::Serialize)]
struct TrainReport {
    #[serde(flatten)]
    run: Report,
    #[serde(skip_serializing_if = "Option::is_none")]
    distributed: Option<distributed::Traffic>,
}

/// Runs `resflow train`.
pub fn train(args: TrainArgs) -> Fallible {
    // Distributed: every rank joins first; from then on an error on one rank ends them all.
    let replicas = distributed::Replicas::join(args.distributed)?;
    let result = train_as(args, &replicas);
    replicas.or_abort(result)
}

fn train_as(args: TrainArgs, replicas: &distributed::Replicas) -> Fallible {
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
    let eval = args.eval.as_deref().map(open).transpose()?;
    let config = args.config.as_deref().map(read_config).transpose()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = threads(Some(replicas.threads(args.threads, cores)));
    let options = SessionOptions {
        epochs: args.epochs,
        threads: Some(threads),
        checkpoint_dir: args.checkpoint_dir.clone(),
        checkpoint_every: args.checkpoint_every,
        eval_every: args.eval_every,
        resume: args.resume,
        // Each rank makes only the rows it owns.
        shard_tables: args.shard_tables.then(|| replicas.rank()),
    };
    let mut session = Session::start(&train, eval.as_ref(), config, options)
        .map_err(|e| in_train_terms(e, &args))?;
    replicas.attach(
        &mut session.trainer,
        train.rows(),
        args.shard_tables,
        args.checkpoint_dir.as_deref(),
    )?;
    let (rank, ranks) = replicas.rank();
    let who = if ranks > 1 {
        format!("rank {rank} of {ranks}: ")
    } else {
        String::new()
    };
    if let (true, Some(dir)) = (session.resumed(), &args.checkpoint_dir) {
        eprintln!(
            "{who}resuming from {} at epoch {}, step {}",
            dir.display(),
            session.trainer.epoch + 1,
            session.trainer.step
        );
    }
    eprintln!(
        "{who}training on {} rows, {} threads, batch {}, {} epoch(s), {} parameters",
        train.rows(),
        threads,
        session.trainer.network.config.batch_size,
        session.epochs(),
        session.trainer.parameter_count()?
    );
    // Rank 0 shows the progress and writes the files (the replicas are identical).
    let (mut bar, mut quiet) = (Bar::default(), Quiet);
    let progress: &mut dyn Progress = if replicas.writes() {
        &mut bar
    } else {
        &mut quiet
    };
    let summary = session.train(progress)?;
    let traffic = replicas.traffic();
    if replicas.writes() {
        println!(
            "trained {} steps in {:.1} s: {:.0} samples/s with {ranks} ranks x {} threads",
            summary.steps, summary.seconds, summary.samples_per_s, summary.threads
        );
        if let Some(t) = traffic.filter(|t| t.steps > 0) {
            println!(
                "rank 0 sent per step: {} B dense, {} B sparse rows, {} B row lookups, {} B \
                 other; {:.2} s moving data, {:.2} s waiting for the other ranks",
                t.dense / t.steps,
                t.sparse / t.steps,
                t.lookups / t.steps,
                t.other / t.steps,
                t.seconds,
                t.wait_seconds
            );
        }
    }
    // The trained model is written before anything else can fail. Row-sharded tables:
    // every rank sends its rows to rank 0, which alone holds the whole tables, for as long
    // as it takes to write them.
    if let Some(out) = &args.out
        && let Some(model) = session.trainer.export_gathered()?
    {
        model.save(out)?;
        println!("model written to {}", out.display());
    }
    // Every rank evaluates its share; rank 0 reports.
    let eval = session.final_evaluation()?;
    if session.trainer.shards_tables() {
        let (held, whole) = session.trainer.table_bytes();
        println!(
            "rank {rank} holds {held} B of embedding rows and their Adam moments, at most {} \
             B at once since it started (the whole tables with theirs: {whole} B)",
            session.trainer.table_peak_bytes()
        );
    }
    if !replicas.writes() {
        return Ok(());
    }
    if let Some(r) = &eval.eval {
        print_eval("final evaluation", r);
    }
    if let Some(r) = &eval.regression {
        print_regression("final evaluation", r);
    }
    let report = TrainReport {
        run: Report {
            train: Some(summary),
            ..eval
        },
        distributed: traffic,
    };
    if let Some(p) = &args.report {
        write_json(p, &report)?;
        eprintln!("report written to {}", p.display());
    }
    Ok(())
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
    if args.resume && args.checkpoint_dir.is_none() {
        return Err("--resume needs --checkpoint-dir".into());
    }
    if args.shard_tables && !args.distributed {
        return Err(
            "--shard-tables needs --distributed (mpirun -np N resflow train \
                    --distributed --shard-tables ...)"
                .into(),
        );
    }
    Ok(())
}

/// A training run's input mistake in the words of `train`'s options.
fn in_train_terms(e: resflow::Error, args: &TrainArgs) -> Box<dyn std::error::Error> {
    let path = |p: &Option<PathBuf>| {
        p.as_deref()
            .map_or(String::new(), |p| p.display().to_string())
    };
    let (train, eval) = (args.train.display(), path(&args.eval));
    let resflow::Error::Run(run) = e else {
        return e.into();
    };
    match run {
        RunError::EmptyTrain => format!("--train {train}: the dataset has no rows"),
        RunError::EmptyEval => format!("--eval {eval}: the dataset has no rows"),
        RunError::EvalSchema(err) => format!("--eval {eval}: {err}"),
        RunError::TrainLayout(err) => format!("--train {train}: {err}"),
        RunError::EvalLayout(err) => format!("--eval {eval}: {err}"),
        RunError::ResumeWithoutDir => "--resume needs --checkpoint-dir".to_string(),
        RunError::NoCheckpoint { dir } => format!(
            "--resume: {} holds no checkpoint ({}); drop --resume to start afresh",
            dir.display(),
            resflow::CHECKPOINT_FILE
        ),
        RunError::ConfigDiffers { dir, differences } => format!(
            "--resume: the checkpoint in {} was trained with another configuration than \
             --config {} ({}); resume without --config, or start afresh in another \
             --checkpoint-dir",
            dir.display(),
            path(&args.config),
            differences.join("; ")
        ),
        other => other.to_string(),
    }
    .into()
}

/// Runs `resflow eval`.
pub fn eval(args: EvalArgs) -> Fallible {
    resflow::OutputPlan::new()
        .input("--model", &args.model)
        .input("--data", &args.data)
        .file("--report", args.report.as_deref())
        .check()?;
    let list = args.list.to_options()?;
    if args.model.is_dir() && args.precision != resflow::Precision::F32 {
        return Err(format!(
            "--precision {}: a checkpoint is evaluated in f32; export it (`resflow export`) and evaluate the model file",
            args.precision
        )
        .into());
    }
    let data = open(&args.data)?;
    // A regression model is measured by the errors of its predicted value.
    let model = if args.model.is_dir() {
        None
    } else {
        Some(Model::load(&args.model)?)
    };
    let regression_model = match &model {
        Some(m) => m.config.regression.is_some().then(|| m.clone()),
        None => {
            let t = Trainer::load_checkpoint(&args.model, 1)?;
            t.check_tables_whole()?;
            t.network
                .config
                .regression
                .is_some()
                .then(|| t.export())
                .transpose()?
        }
    };
    if let Some(m) = regression_model {
        let scorer = resflow::Scorer::with_precision(m, args.precision)?;
        let r = resflow::regression::evaluate(&scorer, &data)
            .map_err(|e| format!("--data {}: {e}", args.data.display()))?;
        print_regression(&format!("evaluation of {}", args.model.display()), &r);
        return write_report(
            &args.report,
            &Report {
                regression: Some(r),
                ..Report::default()
            },
        );
    }
    let report = if args.model.is_dir() {
        let mut t = Trainer::load_checkpoint(&args.model, threads(None))?;
        let config = list
            .eval_config(t.eval_config(), data.schema())
            .map_err(in_option_terms)?;
        t.evaluate(&data, &config)?
    } else {
        let model = model.as_ref().expect("a model file");
        resflow::evaluate_model(model, &data, &list, args.precision).map_err(in_option_terms)?
    };
    print_eval(&format!("evaluation of {}", args.model.display()), &report);
    write_report(
        &args.report,
        &Report {
            eval: Some(report),
            ..Report::default()
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
            t.check_tables_whole()?;
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
    let scorer = Scorer::with_precision(model, args.precision)?;
    // The model's heads: the data's tasks, or a regression model's thresholds.
    let tasks: Vec<String> = (scorer.model().config.tasks.iter())
        .map(|t| t.name.clone())
        .collect();
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
    let funnel = synthetic_funnel(args.rows, 2)?;
    let (train, eval) = (&funnel.train, &funnel.eval);
    let threads = threads(args.threads);
    let mut results = vec![];
    for (name, residual) in [("ResFlow", true), ("independent towers", false)] {
        let mut config = ModelConfig::default();
        config.residual.hidden = residual;
        config.residual.logits = residual;
        config.optimizer.learning_rate = 2e-3;
        let mut t = Trainer::new(config, resflow::layout_of(train.schema()), threads)?;
        let schedule = Schedule {
            epochs: 1,
            ..Schedule::default()
        };
        let summary = run_epochs(&mut t, train, &schedule, name, &mut Bar::default())?;
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
        "The same against Shared-Bottom, ESMM, MMoE, PLE, AITM, ESCM2 and DCMT, over several seeds: resflow compare (docs/models.md)."
    );
    Ok(())
}
