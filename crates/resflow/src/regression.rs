//! Training and evaluating regression models (see [`model::regression`] for the two forms
//! and the decoder): resolving thresholds and statistics from the training target, and
//! the MSE and MAE of the served prediction on a dataset.
//!
//! ```text
//! prepare(config, train)   read the target column, resolve thresholds / percentiles, end
//!                          values, mean and std; the tasks become the heads
//! Trainer::new(config, ..) trains them (network.rs builds the loss from the target column)
//! evaluate(scorer, data)   fused score = predicted value  ->  MSE, MAE against the target
//! ```

pub use model::regression::*;

use metrics::{RegressionErrors, RegressionReport};

use model::{ModelConfig, ModelError, Scorer};

use crate::Trainer;
use shards::Dataset;

use crate::error::Error;
use crate::score_data::score_dataset;

/// The position of the continuous target `name` among `data`'s columns; an error when it
/// is missing or a 0/1 label.
pub fn target_column(data: &Dataset, name: &str) -> Result<usize, Error> {
    let schema = data.schema();
    let Some(k) = schema.task_index(name) else {
        return Err(ModelError::Layout(format!(
            "the regression target {name:?} is not a column of the data (its tasks: {:?})",
            schema.tasks
        ))
        .into());
    };
    if !schema.targets.iter().any(|t| t == name) {
        return Err(ModelError::Layout(format!(
            "column {name:?} holds 0/1 labels, not a continuous target (convert it with \"targets\": [{name:?}])"
        ))
        .into());
    }
    Ok(k)
}

/// Every value of the target column `name` of `data`, in storage order.
pub fn target_values(data: &Dataset, name: &str) -> Result<Vec<f32>, Error> {
    let k = target_column(data, name)?;
    let t = data.schema().tasks.len();
    let mut out = Vec::new();
    out.try_reserve_exact(data.rows()).map_err(|_| {
        ModelError::Layout(format!(
            "{} target values do not fit in memory",
            data.rows()
        ))
    })?;
    let mut batches = data.batches(65_536, None);
    let mut batch = data.new_batch();
    while batches.next_into(&mut batch) {
        out.extend(batch.labels.chunks_exact(t).map(|row| row[k]));
    }
    Ok(out)
}

/// Resolves a regression configuration from the training set (nothing to do for other
/// models): see [`ModelConfig::resolve_regression`].
pub fn prepare(config: &mut ModelConfig, train: &Dataset) -> Result<(), Error> {
    let Some(r) = &config.regression else {
        return Ok(());
    };
    let y = target_values(train, &r.target)?;
    config.resolve_regression(&y)?;
    Ok(())
}

/// A regression model's evaluation on a dataset: the errors of its predicted value and,
/// for the thresholds form, how well each head ranks its derived label `1[y > t_i]`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RegressionEval {
    /// The continuous target column.
    pub target: String,
    /// Rows evaluated.
    pub rows: u64,
    /// Mean squared error of the predicted value (weighted by the weight column, if any).
    pub mse: f64,
    /// Mean absolute error of the predicted value.
    pub mae: f64,
    /// The thresholds form's heads (empty for the direct form).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub thresholds: Vec<ThresholdAuc>,
}

/// One threshold head of a regression evaluation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ThresholdAuc {
    /// The head (`<target>><t_i>`).
    pub head: String,
    /// `t_i`.
    pub threshold: f32,
    /// The AUC of `q_i = P(y > t_i)` against `1[y > t_i]` (unweighted); `None` when every
    /// evaluated row lies on one side of the threshold.
    pub auc: Option<f64>,
}

/// Accumulates a [`RegressionEval`] batch by batch, from the predicted values and the head
/// outputs (`sigmoid(z_i)`, rows by heads) of either the scorer or the trainer.
struct RegressionEvaluator {
    config: RegressionConfig,
    heads: Vec<String>,
    column: usize,
    columns: usize,
    errors: RegressionErrors,
    y: Vec<f32>,
    /// Per threshold head: its outputs and its derived labels, over every row so far.
    scores: Vec<Vec<f32>>,
    labels: Vec<Vec<f32>>,
}

impl RegressionEvaluator {
    fn new(config: &ModelConfig, data: &Dataset) -> Result<Self, Error> {
        let Some(r) = &config.regression else {
            return Err(ModelError::Config(
                "the model predicts 0/1 tasks, not a continuous target".into(),
            )
            .into());
        };
        let column = target_column(data, &r.target)?;
        let per_head = match r.form {
            RegressionForm::Thresholds => r.thresholds.len(),
            RegressionForm::Direct => 0,
        };
        let mut scores = Vec::with_capacity(per_head);
        for _ in 0..per_head {
            let mut v = Vec::new();
            v.try_reserve_exact(data.rows()).map_err(|_| {
                ModelError::Layout(format!(
                    "{} rows by {per_head} thresholds do not fit in memory",
                    data.rows()
                ))
            })?;
            scores.push(v);
        }
        Ok(Self {
            config: r.clone(),
            heads: config.tasks.iter().map(|t| t.name.clone()).collect(),
            column,
            columns: data.schema().tasks.len(),
            errors: RegressionErrors::default(),
            y: Vec::new(),
            labels: scores.clone(),
            scores,
        })
    }

    /// Rows of `batch`: their predicted values and head outputs (rows by heads).
    fn push(&mut self, values: &[f32], probs: &[f32], batch: &shards::Batch) -> Result<(), Error> {
        self.y.clear();
        let k = self.column;
        self.y
            .extend(batch.labels.chunks_exact(self.columns).map(|row| row[k]));
        let w = (!batch.weight.is_empty()).then_some(batch.weight.as_slice());
        self.errors.push(values, &self.y, w)?;
        let heads = self.heads.len();
        for (i, (s, l)) in self.scores.iter_mut().zip(&mut self.labels).enumerate() {
            let t = self.config.thresholds[i];
            s.extend(probs.chunks_exact(heads).map(|row| row[i]));
            l.extend(self.y.iter().map(|&y| (y > t) as u8 as f32));
        }
        Ok(())
    }

    fn report(self) -> Result<RegressionEval, Error> {
        let e = self.errors.report()?;
        let thresholds = (self.scores.iter().zip(&self.labels).enumerate())
            .map(|(i, (s, l))| ThresholdAuc {
                head: self.heads[i].clone(),
                threshold: self.config.thresholds[i],
                auc: metrics::auc(s, l).ok(),
            })
            .collect();
        Ok(RegressionEval {
            target: self.config.target,
            rows: e.rows,
            mse: e.mse,
            mae: e.mae,
            thresholds,
        })
    }
}

/// The evaluation of a regression model's served prediction (the scorer's fused score) on
/// `data`, against its target column (weighted by the weight column when there is one).
pub fn evaluate(scorer: &Scorer, data: &Dataset) -> Result<RegressionEval, Error> {
    let mut ev = RegressionEvaluator::new(&scorer.model().config, data)?;
    score_dataset(scorer, data, |probs, values, batch| {
        ev.push(values, probs, batch)
    })?;
    ev.report()
}

/// The same evaluation from the trainer's own forward pass (the tape, as during
/// training), its head outputs decoded by the model's [`Decoder`]: what `resflow train`
/// reports during and after training. The direct form's logit is recovered from the
/// trainer's `sigmoid(z)` (exact up to rounding while `|z|` stays moderate, as it does
/// for a standardised target).
pub fn evaluate_trainer(trainer: &mut Trainer, data: &Dataset) -> Result<RegressionEval, Error> {
    let config = trainer.network.config.clone();
    let mut ev = RegressionEvaluator::new(&config, data)?;
    let decoder = ev.config.decoder()?;
    let heads = config.tasks.len();
    let mut values = Vec::new();
    trainer.predict(data, |probs, batch| {
        values.clear();
        values.extend(probs.chunks_exact(heads).map(|q| decoded(&decoder, q)));
        ev.push(&values, probs, batch)
    })?;
    ev.report()
}

/// The decoded value of one row from its head outputs `q_i = sigmoid(z_i)`.
fn decoded(decoder: &Decoder, q: &[f32]) -> f32 {
    decoder.value_from_probabilities(q).unwrap_or_else(|| {
        // The direct form: z = ln(q / (1 - q)), in f64.
        let p = q[0] as f64;
        decoder.value_from_logits(&[(p / (1.0 - p)).ln() as f32])
    })
}

/// The MSE and MAE of the best constant, the training mean, on `data` (what a model must
/// beat to have learned anything).
pub fn constant_baseline(
    train: &Dataset,
    data: &Dataset,
    name: &str,
) -> Result<RegressionReport, Error> {
    let y_train = target_values(train, name)?;
    let mean =
        (y_train.iter().map(|&v| v as f64).sum::<f64>() / y_train.len().max(1) as f64) as f32;
    let y = target_values(data, name)?;
    Ok(metrics::regression_errors(&vec![mean; y.len()], &y)?)
}

/// The three regression models of the comparison, by name.
pub const VARIANTS: [&str; 3] = ["resflow", "independent", "direct"];

/// The shared settings of the regression comparison, after the authors' other-modality
/// code: embeddings of 8, towers 128-64, no BatchNorm, Adam at 1e-3, thresholds at the
/// deciles of the training target.
pub fn comparison_defaults() -> ModelConfig {
    ModelConfig {
        embedding_dim: 8,
        hidden: vec![128, 64],
        batch_norm: model::config::BatchNormMode::None,
        batch_size: 1024,
        regression: Some(RegressionConfig {
            target: String::new(),
            form: RegressionForm::Thresholds,
            thresholds: Vec::new(),
            percentiles: (1..10).map(|i| 10.0 * i as f32).collect(),
            low: None,
            high: None,
            mean: None,
            std: None,
        }),
        optimizer: model::config::OptimizerConfig {
            learning_rate: 1e-3,
            ..Default::default()
        },
        ..ModelConfig::default()
    }
}

/// `base` as variant `name` of [`VARIANTS`], for the continuous target `target`:
/// ResFlow's chained thresholds (logit links only, as in the authors' code), independent
/// towers over the same thresholds, or direct regression (one head, squared error).
pub fn variant(base: &ModelConfig, name: &str, target: &str) -> Result<ModelConfig, Error> {
    let mut c = base.clone();
    let mut r = c
        .regression
        .clone()
        .or_else(|| comparison_defaults().regression)
        .expect("the defaults regress");
    r.target = target.to_string();
    c.residual = model::config::Residual::default();
    c.topology = Default::default();
    match name {
        "resflow" => {
            c.model = model::config::ModelKind::Resflow;
            c.residual.hidden = false;
            r.form = RegressionForm::Thresholds;
        }
        "independent" => {
            c.model = model::config::ModelKind::Independent;
            r.form = RegressionForm::Thresholds;
        }
        "direct" => {
            c.model = model::config::ModelKind::Independent;
            r = RegressionConfig {
                form: RegressionForm::Direct,
                thresholds: Vec::new(),
                percentiles: Vec::new(),
                low: None,
                high: None,
                ..r
            };
        }
        other => {
            return Err(ModelError::Config(format!(
                "unknown regression model {other:?}; the models are {}",
                VARIANTS.join(", ")
            ))
            .into());
        }
    }
    if r.form == RegressionForm::Thresholds && r.thresholds.is_empty() && r.percentiles.is_empty() {
        r.percentiles = comparison_defaults()
            .regression
            .expect("the defaults regress")
            .percentiles;
    }
    c.regression = Some(r);
    c.fusion = Default::default();
    c.validate()?;
    Ok(c)
}

/// One model of a regression comparison over seeds.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RegressionRun {
    /// The variant's name.
    pub name: String,
    /// Heads (thresholds, or 1).
    pub heads: usize,
    /// MSE on the evaluation set, over seeds.
    pub mse: crate::compare::Stat,
    /// MAE on the evaluation set, over seeds.
    pub mae: crate::compare::Stat,
    /// Training throughput of the first seed's run (samples per second).
    pub samples_per_s: f64,
}

/// A regression comparison: every variant, and the best constant beside them.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RegressionComparison {
    /// The target column.
    pub target: String,
    /// The models.
    pub runs: Vec<RegressionRun>,
    /// The training mean as the prediction.
    pub constant: RegressionReport,
}

/// Trains every variant in `models` (default: [`VARIANTS`]) on `train` once per seed (the
/// same seeds for each), `epochs` epochs (default: the configuration's), with `threads`
/// workers, and measures each served model on `eval`. `base` holds the shared settings
/// (default: [`comparison_defaults`]); `target` the continuous target column (default:
/// the data's only one). With `save`, each variant's first-seed model is written there as
/// `<variant>.safetensors`, ready for the scorer and the C ABI.
#[allow(clippy::too_many_arguments)]
pub fn compare(
    train: &Dataset,
    eval: &Dataset,
    base: Option<ModelConfig>,
    target: Option<&str>,
    models: Option<&[String]>,
    seeds: &[u64],
    epochs: Option<usize>,
    threads: usize,
    save: Option<&std::path::Path>,
    progress: &mut dyn crate::Progress,
) -> Result<RegressionComparison, Error> {
    train
        .schema()
        .check_compatible(eval.schema())
        .map_err(crate::RunError::EvalSchema)?;
    let target = match target {
        Some(t) => t.to_string(),
        None => match train.schema().targets.as_slice() {
            [one] => one.clone(),
            other => {
                return Err(ModelError::Layout(format!(
                    "the data has {} continuous targets ({other:?}); name the one to predict",
                    other.len()
                ))
                .into());
            }
        },
    };
    if seeds.is_empty() || threads == 0 || epochs == Some(0) {
        return Err(
            crate::RunError::Options("at least one seed, one thread and one epoch".into()).into(),
        );
    }
    let base = base.unwrap_or_else(comparison_defaults);
    let layout = crate::layout_of(train.schema());
    let names: Vec<String> = match models {
        Some(m) => m.to_vec(),
        None => VARIANTS.iter().map(|s| s.to_string()).collect(),
    };
    let mut runs = Vec::new();
    for name in &names {
        let mut config = variant(&base, name, &target)?;
        if let Some(e) = epochs {
            config.epochs = e;
        }
        prepare(&mut config, train)?;
        let (mut mse, mut mae, mut speed) = (Vec::new(), Vec::new(), 0.0);
        for &seed in seeds {
            let mut c = config.clone();
            c.seed = seed;
            let mut t = Trainer::new(c, layout.clone(), threads)?;
            let schedule = crate::session::Schedule {
                epochs: config.epochs,
                ..Default::default()
            };
            let label = format!("{name} seed {seed}/{}", seeds.len());
            let summary = crate::session::run_epochs(&mut t, train, &schedule, &label, progress)?;
            if seed == seeds[0] {
                speed = summary.samples_per_s;
            }
            let model = t.export()?;
            if let (Some(dir), true) = (save, seed == seeds[0]) {
                model.save(&dir.join(format!("{name}.safetensors")))?;
            }
            let report = evaluate(&Scorer::new(model)?, eval)?;
            mse.push(report.mse);
            mae.push(report.mae);
        }
        runs.push(RegressionRun {
            name: name.clone(),
            heads: config.tasks.len(),
            mse: crate::compare::Stat::of(mse),
            mae: crate::compare::Stat::of(mae),
            samples_per_s: speed,
        });
    }
    Ok(RegressionComparison {
        constant: constant_baseline(train, eval, &target)?,
        target,
        runs,
    })
}

/// A generated play-time training and evaluation pair ([`shards::playtime`]), drawn from
/// the same world with sampling seeds 1 and 2, in a temporary directory removed on drop.
#[derive(Debug)]
pub struct PlayTimeSets {
    /// The training set.
    pub train: Dataset,
    /// The evaluation set.
    pub eval: Dataset,
    /// The evaluation set's figures: its error floor, the oracle's errors.
    pub eval_info: shards::playtime::PlayTimeInfo,
    dir: std::path::PathBuf,
}

impl PlayTimeSets {
    /// `rows` training rows and a quarter as many (at least 1000 each) for evaluation.
    pub fn generate(rows: usize) -> Result<Self, Error> {
        use shards::playtime::{PlayTimeConfig, generate};
        let dir =
            std::env::temp_dir().join(format!("resflow-playtime-{}-{rows}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let make = |rows: usize, seed: u64, name: &str| {
            let config = PlayTimeConfig {
                rows: rows.max(1000),
                seed,
                ..PlayTimeConfig::default()
            };
            let info = generate(&config, &dir.join(name))?;
            Ok::<_, Error>((Dataset::open(&dir.join(name))?, info))
        };
        let (train, _) = make(rows, 1, "train")?;
        let (eval, eval_info) = make(rows / 4, 2, "eval")?;
        Ok(Self {
            train,
            eval,
            eval_info,
            dir,
        })
    }
}

impl Drop for PlayTimeSets {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
