//! One training run, from datasets and a configuration to a trained model and its report:
//! the loop with its checkpoint and evaluation cadence, resuming, and the matching of a
//! configuration's tasks to the data's.
//!
//! ```text
//! Session::start(train, eval, config, options)   checks every input, makes or resumes the Trainer
//!   .train(progress)                             epochs: steps -> [checkpoint every N] [evaluate every M]
//!                                                after each epoch: checkpoint, evaluate (not after the last)
//!   .final_evaluation()                          the evaluation set with the default list metrics
//!                                                (a regression model: MSE, MAE, per-threshold AUC)
//! train(...)                                     the three in one call, with a Report
//! ```
//!
//! What a front end shows while it runs (a progress bar, lines on a log) it gets through
//! [`Progress`]; the loop itself prints nothing. The steps are the [`Trainer`]'s, so what
//! the trainer does inside a step (how gradients are reduced) is no concern of the loop.

use std::path::{Path, PathBuf};

use metrics::EvalReport;
use serde::{Deserialize, Serialize};
use shards::Dataset;

use crate::config::TaskConfig;
use crate::list_options::ListOptions;
use crate::regression::RegressionEval;
use crate::{CHECKPOINT_FILE, Error, ModelConfig, RunError, StepStats, TrainSummary, Trainer};

/// When an evaluation during training happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalPoint {
    /// After this optimiser step (the `eval_every` cadence).
    Step(u64),
    /// After this many completed epochs.
    Epoch(usize),
}

/// What a training run reports while it runs. Every method does nothing by default.
/// The step and evaluation calls come from one of the trainer's worker threads (see
/// [`Trainer::train_epoch`]), hence `Send`.
pub trait Progress: Send {
    /// An epoch starts: `run` names the run (`"train"`, a model and seed in a comparison),
    /// `epoch` counts from 1 up to `epochs`, over `rows` rows.
    fn epoch_started(&mut self, run: &str, epoch: usize, epochs: usize, rows: u64) {
        let _ = (run, epoch, epochs, rows);
    }
    /// A step is done (the trainer's `step` already counts it, `epoch` is the one
    /// running). An error stops the run and is its result.
    fn step(&mut self, trainer: &Trainer, stats: &StepStats) -> Result<(), Error> {
        let _ = (trainer, stats);
        Ok(())
    }
    /// The epoch that started last is done.
    fn epoch_finished(&mut self) {}
    /// The evaluation set was evaluated during training.
    fn evaluated(&mut self, point: EvalPoint, report: &EvalReport) {
        let _ = (point, report);
    }
    /// The evaluation set was evaluated during training, for a regression model.
    fn evaluated_regression(&mut self, point: EvalPoint, report: &RegressionEval) {
        let _ = (point, report);
    }
    /// A note for the user (a warning, what is being compared).
    fn note(&mut self, text: &str) {
        let _ = text;
    }
}

/// A [`Progress`] that shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl Progress for Quiet {}

/// A [`Progress`] that calls a closure after every step and shows nothing else.
pub struct OnStep<F>(pub F);

impl<F> Progress for OnStep<F>
where
    F: FnMut(&Trainer, &StepStats) -> Result<(), Error> + Send,
{
    fn step(&mut self, trainer: &Trainer, stats: &StepStats) -> Result<(), Error> {
        (self.0)(trainer, stats)
    }
}

/// The cadence of a run of epochs: how far, where and how often to checkpoint, how often
/// to evaluate.
#[derive(Debug, Clone, Default)]
pub struct Schedule<'a> {
    /// Train until this many epochs are complete (counted from the trainer's start, so a
    /// resumed trainer trains what remains).
    pub epochs: usize,
    /// Save a checkpoint here after every epoch.
    pub checkpoint_dir: Option<&'a Path>,
    /// Also checkpoint every this many steps (with `checkpoint_dir`).
    pub checkpoint_every: Option<u64>,
    /// The evaluation set: evaluated after every epoch but the last.
    pub eval: Option<&'a Dataset>,
    /// Also evaluate every this many steps (with `eval`).
    pub eval_every: Option<u64>,
}

/// Trains `trainer` on `train` until `schedule.epochs` epochs are complete, checkpointing
/// and evaluating on the schedule's cadence, reporting to `progress` under the name `run`.
/// Evaluations during training use the model's evaluation configuration
/// ([`Trainer::eval_config`]); a regression model's are its errors
/// ([`crate::regression::evaluate_trainer`]).
pub fn run_epochs(
    trainer: &mut Trainer,
    train: &Dataset,
    schedule: &Schedule<'_>,
    run: &str,
    progress: &mut dyn Progress,
) -> Result<TrainSummary, Error> {
    let every = |n: Option<u64>| n.filter(|&n| n > 0);
    let checkpoint_every = schedule
        .checkpoint_dir
        .and(every(schedule.checkpoint_every));
    let eval_every = schedule.eval.and(every(schedule.eval_every));
    let (mut seconds, mut rows, first_step) = (0.0, 0u64, trainer.step);
    let eval_config = trainer.eval_config();
    while trainer.epoch < schedule.epochs {
        progress.epoch_started(run, trainer.epoch + 1, schedule.epochs, train.rows() as u64);
        let (s, r) = trainer.train_epoch(train, |t, stats| {
            progress.step(t, stats)?;
            // Of several replicas, rank 0 alone writes the (identical) checkpoints; with
            // row-sharded tables every rank writes its rows too.
            if let (Some(dir), Some(n)) = (schedule.checkpoint_dir, checkpoint_every)
                && t.step.is_multiple_of(n)
            {
                t.save_checkpoint_as_rank(dir)?;
            }
            if let (Some(ds), Some(n)) = (schedule.eval, eval_every)
                && t.step.is_multiple_of(n)
            {
                evaluate_during(t, ds, &eval_config, EvalPoint::Step(t.step), progress)?;
            }
            Ok(())
        })?;
        progress.epoch_finished();
        seconds += s;
        rows += r;
        if let Some(dir) = schedule.checkpoint_dir {
            trainer.save_checkpoint_as_rank(dir)?;
        }
        if let Some(ds) = schedule.eval
            && trainer.epoch < schedule.epochs
        {
            let point = EvalPoint::Epoch(trainer.epoch);
            evaluate_during(trainer, ds, &eval_config, point, progress)?;
        }
    }
    Ok(TrainSummary {
        samples_per_s: rows as f64 / f64::max(seconds, 1e-9),
        threads: trainer.threads(),
        steps: trainer.step - first_step,
        seconds,
    })
}

/// One evaluation during training, reported to `progress`: the ranking metrics of
/// `config`, or a regression model's errors.
fn evaluate_during(
    trainer: &mut Trainer,
    data: &Dataset,
    config: &metrics::EvalConfig,
    point: EvalPoint,
    progress: &mut dyn Progress,
) -> Result<(), Error> {
    if trainer.network.config.regression.is_some() {
        let report = crate::regression::evaluate_trainer(trainer, data)?;
        progress.evaluated_regression(point, &report);
    } else {
        let report = trainer.evaluate(data, config)?;
        progress.evaluated(point, &report);
    }
    Ok(())
}

impl Trainer {
    /// Runs `epochs` epochs (from where the trainer is), the training-time summary:
    /// [`run_epochs`] without checkpoints or evaluations, `on_step` called
    /// after every step (an error stops the run).
    pub fn fit(
        &mut self,
        data: &Dataset,
        epochs: usize,
        on_step: impl FnMut(&Trainer, &StepStats) -> Result<(), Error> + Send,
    ) -> Result<TrainSummary, Error> {
        let schedule = Schedule {
            epochs,
            ..Default::default()
        };
        let mut progress = OnStep(on_step);
        run_epochs(self, data, &schedule, "fit", &mut progress)
    }
}

/// `config` (or, with `None`, the paper's defaults) with its tasks matched to the data's
/// task names `tasks`. A configuration given must name the data's tasks, in order; the
/// defaults follow the data (tasks beyond the defaults' two get the last default's
/// weights).
pub fn config_for_tasks(
    config: Option<ModelConfig>,
    tasks: &[String],
) -> Result<ModelConfig, Error> {
    let given = config.is_some();
    let mut config = config.unwrap_or_default();
    if config.regression.is_some() {
        // Its heads are the thresholds resolved from the training target, not the data's
        // tasks.
        return Err(RunError::Options(
            "a regression configuration takes its heads from the training target: resolve it \
             with resflow::regression::prepare (Session::start does)"
                .into(),
        )
        .into());
    }
    if config.tasks.iter().map(|t| &t.name).ne(tasks.iter()) {
        if given {
            return Err(RunError::Tasks {
                config: config.tasks.iter().map(|t| t.name.clone()).collect(),
                data: tasks.to_vec(),
            }
            .into());
        }
        let d = ModelConfig::default().tasks;
        config.tasks = tasks
            .iter()
            .enumerate()
            .map(|(i, name)| TaskConfig {
                name: name.clone(),
                ..d[i.min(d.len() - 1)].clone()
            })
            .collect();
    }
    config.validate()?;
    Ok(config)
}

/// How a [`Session`] runs, besides its configuration. Every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionOptions {
    /// Epochs in all (default: the configuration's, or the resumed checkpoint's).
    pub epochs: Option<usize>,
    /// Worker threads (default: every core).
    pub threads: Option<usize>,
    /// Save a checkpoint here after every epoch (and every `checkpoint_every` steps).
    pub checkpoint_dir: Option<PathBuf>,
    /// Also checkpoint every this many steps (needs `checkpoint_dir`).
    pub checkpoint_every: Option<u64>,
    /// Also evaluate every this many steps (needs an evaluation set); the evaluation set
    /// is always evaluated after each epoch.
    pub eval_every: Option<u64>,
    /// Continue from the checkpoint in `checkpoint_dir`.
    pub resume: bool,
    /// `(rank, ranks)`: this process is rank `rank` of `ranks` sharing the embedding
    /// tables by rows (`--shard-tables`), and makes (or resumes) only the rows it owns
    /// ([`Trainer::new_sharded`]); attach it to the others with a hook that shards the
    /// tables over the same ranks before training.
    pub shard_tables: Option<(usize, usize)>,
}

impl SessionOptions {
    /// Checks the options that are meaningful only with others or with a positive value.
    pub fn check(&self, has_eval: bool) -> Result<(), Error> {
        let bad = |m: &str| Err(RunError::Options(m.into()).into());
        if self.checkpoint_every == Some(0) || self.eval_every == Some(0) {
            return bad("checkpoint_every and eval_every must be at least 1");
        }
        if self.threads == Some(0) || self.epochs == Some(0) {
            return bad("threads and epochs must be at least 1");
        }
        if self.checkpoint_every.is_some() && self.checkpoint_dir.is_none() {
            return bad("checkpoint_every needs checkpoint_dir");
        }
        if self.eval_every.is_some() && !has_eval {
            return bad("eval_every needs an evaluation dataset");
        }
        if self.resume && self.checkpoint_dir.is_none() {
            return Err(RunError::ResumeWithoutDir.into());
        }
        Ok(())
    }
}

/// The report of a run: the training throughput and the final evaluation (the ranking
/// metrics, or a regression model's errors), any of which may be absent (an evaluation
/// alone has no training part). It serialises to the JSON report of `resflow train` and
/// `resflow eval`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The training throughput.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train: Option<TrainSummary>,
    /// The final evaluation of a model of 0/1 tasks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval: Option<EvalReport>,
    /// The final evaluation of a regression model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regression: Option<RegressionEval>,
}

/// One training run over a training set and an optional evaluation set: made (or resumed)
/// and checked by [`Session::start`], trained by [`Session::train`].
pub struct Session<'a> {
    /// The trainer (its model, step and epoch).
    pub trainer: Trainer,
    train: &'a Dataset,
    eval: Option<&'a Dataset>,
    options: SessionOptions,
    epochs: usize,
    resumed: bool,
}

impl std::fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("trainer", &self.trainer)
            .field("options", &self.options)
            .field("epochs", &self.epochs)
            .field("resumed", &self.resumed)
            .finish()
    }
}

impl<'a> Session<'a> {
    /// Checks every input and makes the trainer: a new one for `config` (matched to the
    /// training data's tasks, see [`config_for_tasks`]), or, with `options.resume`, the one
    /// in the checkpoint directory, which must then have been trained with `config` if
    /// one is given (the epochs aside). Both datasets must have rows and fit the model, the
    /// evaluation set the training set's schema.
    pub fn start(
        train: &'a Dataset,
        eval: Option<&'a Dataset>,
        config: Option<ModelConfig>,
        options: SessionOptions,
    ) -> Result<Self, Error> {
        options.check(eval.is_some())?;
        if train.rows() == 0 {
            return Err(RunError::EmptyTrain.into());
        }
        // (An empty evaluation set is refused below, with its own message.)
        if let Some(e) = eval
            && e.rows() > 0
        {
            train
                .schema()
                .check_compatible(e.schema())
                .map_err(RunError::EvalSchema)?;
        }
        let given = config.is_some();
        let mut config = match config {
            Some(mut c) if c.regression.is_some() => {
                // The thresholds, end values and statistics come from the training target
                // (the same on a resume, so the checkpoint's configuration compares equal).
                crate::regression::prepare(&mut c, train)
                    .map_err(|e| RunError::TrainLayout(Box::new(e)))?;
                c
            }
            other => config_for_tasks(other, &train.schema().tasks)?,
        };
        if config.regression.is_none() && !options.resume {
            refuse_continuous_tasks(&config, train)?;
        }
        if let Some(e) = options.epochs {
            config.epochs = e;
        }
        let threads = options
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let layout = crate::layout_of(train.schema());
        let trainer = match (&options.checkpoint_dir, options.resume) {
            (Some(dir), true) => {
                if !dir.join(CHECKPOINT_FILE).exists() {
                    return Err(RunError::NoCheckpoint { dir: dir.clone() }.into());
                }
                let t = Trainer::load_checkpoint_as(dir, threads, options.shard_tables)?;
                if given {
                    let differences =
                        crate::checks::config_differences(&t.network.config, &config, &["epochs"]);
                    if !differences.is_empty() {
                        return Err(RunError::ConfigDiffers {
                            dir: dir.clone(),
                            differences,
                        }
                        .into());
                    }
                }
                t
            }
            (None, true) => return Err(RunError::ResumeWithoutDir.into()),
            _ => match options.shard_tables {
                Some(shard) => Trainer::new_sharded(config, layout.clone(), threads, shard)?,
                None => Trainer::new(config, layout.clone(), threads)?,
            },
        };
        trainer
            .network
            .check_layout(&layout)
            .map_err(|e| RunError::TrainLayout(Box::new(e)))?;
        if let Some(ds) = eval {
            if ds.rows() == 0 {
                return Err(RunError::EmptyEval.into());
            }
            trainer
                .network
                .check_layout(&crate::layout_of(ds.schema()))
                .map_err(|e| RunError::EvalLayout(Box::new(e)))?;
        }
        let epochs = options.epochs.unwrap_or(trainer.network.config.epochs);
        Ok(Self {
            trainer,
            train,
            eval,
            resumed: options.resume,
            options,
            epochs,
        })
    }

    /// Whether the trainer was resumed from a checkpoint.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// The epochs the run trains to (counted from the trainer's start).
    pub fn epochs(&self) -> usize {
        self.epochs
    }

    /// Trains to [`Session::epochs`] on the options' cadence (see [`run_epochs`]).
    pub fn train(&mut self, progress: &mut dyn Progress) -> Result<TrainSummary, Error> {
        let schedule = Schedule {
            epochs: self.epochs,
            checkpoint_dir: self.options.checkpoint_dir.as_deref(),
            checkpoint_every: self.options.checkpoint_every,
            eval: self.eval,
            eval_every: self.options.eval_every,
        };
        run_epochs(&mut self.trainer, self.train, &schedule, "train", progress)
    }

    /// The evaluation set, if any, evaluated with the default list metrics
    /// ([`ListOptions::default`]), or for a regression model by its errors
    /// ([`crate::regression::evaluate_trainer`]); a report without its training part.
    pub fn final_evaluation(&mut self) -> Result<Report, Error> {
        let Some(ds) = self.eval else {
            return Ok(Report::default());
        };
        if self.trainer.network.config.regression.is_some() {
            return Ok(Report {
                regression: Some(crate::regression::evaluate_trainer(&mut self.trainer, ds)?),
                ..Report::default()
            });
        }
        let config = ListOptions::default().eval_config(self.trainer.eval_config(), ds.schema())?;
        Ok(Report {
            eval: Some(self.trainer.evaluate(ds, &config)?),
            ..Report::default()
        })
    }
}

/// A whole run in one call: [`Session::start`], [`Session::train`] and
/// [`Session::final_evaluation`]; the trained trainer (export it with
/// [`Trainer::export`]) and the report.
pub fn train(
    train: &Dataset,
    eval: Option<&Dataset>,
    config: Option<ModelConfig>,
    options: SessionOptions,
    progress: &mut dyn Progress,
) -> Result<(Trainer, Report), Error> {
    let mut session = Session::start(train, eval, config, options)?;
    let summary = session.train(progress)?;
    let report = Report {
        train: Some(summary),
        ..session.final_evaluation()?
    };
    Ok((session.trainer, report))
}

/// A configuration of 0/1 tasks must not train on a continuous target column (its values
/// are not labels): an error naming the column and the way to regress it.
fn refuse_continuous_tasks(config: &ModelConfig, train: &Dataset) -> Result<(), Error> {
    let targets = &train.schema().targets;
    if let Some(t) = config.tasks.iter().find(|t| targets.contains(&t.name)) {
        return Err(RunError::TrainLayout(Box::new(
            model::ModelError::Layout(format!(
                "column {:?} is a continuous target, not 0/1 labels; regress it with a \
                 configuration holding \"regression\": {{\"target\": {:?}}} (see docs/models.md)",
                t.name, t.name
            ))
            .into(),
        ))
        .into());
    }
    Ok(())
}
