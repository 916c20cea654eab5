//! The model configuration: every knob of ResFlow, with defaults equal to the authors'
//! released Ali-CCP settings (see `docs/resflow.md`).
//!
//! A configuration is a JSON object; every field is optional and falls back to its default,
//! so `{}` is the paper's model and `{"residual": {"hidden": false, "logits": false}}` is
//! the independent-towers ablation. `{"preset": "authors"}` starts from a named preset
//! instead of the defaults (see [`ModelConfig::preset`]); the other keys then override it.

use serde::{Deserialize, Serialize};

use crate::error::ModelError;
use crate::regression::{RegressionConfig, RegressionForm};
use crate::topology::{Links, Topology};

/// The whole model and training configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Which multi-task model: ResFlow (default) or one of the baselines it is compared
    /// against (see [`ModelKind`] and `docs/models.md`).
    pub model: ModelKind,
    /// Width of every embedding vector (the authors' code: 32).
    pub embedding_dim: usize,
    /// Hidden widths of each task tower (the authors' code: 128, 64), then a 1-unit logit.
    /// ESMM and AITM use these towers too.
    pub hidden: Vec<usize>,
    /// Activation after each hidden layer.
    pub activation: Activation,
    /// How each BatchNorm behaves (see [`BatchNormMode`]).
    pub batch_norm: BatchNormMode,
    /// BatchNorm epsilon (Keras default, used by the authors: 1e-3).
    pub bn_epsilon: f32,
    /// BatchNorm running-average momentum in `batch` mode (Keras default: 0.99).
    pub bn_momentum: f32,
    /// Which residual links are on; both off gives independent towers.
    pub residual: Residual,
    /// Which task feeds which, and which tower layers link (ResFlow only; default: each
    /// task's parent is the previous task, every layer links). See [`crate::topology`].
    #[serde(skip_serializing_if = "Topology::is_default")]
    pub topology: Topology,
    /// Regression of a continuous target instead of 0/1 tasks (chained thresholds or
    /// direct); its heads are then the tasks. See [`crate::regression`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regression: Option<RegressionConfig>,
    /// Tasks in chain order, from dense to sparse feedback (click before conversion).
    pub tasks: Vec<TaskConfig>,
    /// Optimiser settings.
    pub optimizer: OptimizerConfig,
    /// Samples per optimiser step (split across worker threads).
    pub batch_size: usize,
    /// Passes over the training data.
    pub epochs: usize,
    /// Seed for initialisation and shuffling.
    pub seed: u64,
    /// How the scorer fuses task probabilities into one ranking score.
    pub fusion: Fusion,
    /// Fields that are constant within a request (user, context): a scorer receives them
    /// once per request and computes their share of the first layer once.
    pub request_fields: Vec<String>,
    /// How the task losses are weighted against each other during training (see
    /// [`LossBalancing`]); left out of the written configuration when it is the default
    /// (fixed weights), so files written before it existed are unchanged.
    #[serde(skip_serializing_if = "LossBalancing::is_fixed")]
    pub loss_balancing: LossBalancing,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            model: ModelKind::Resflow,
            embedding_dim: 32,
            hidden: vec![128, 64],
            activation: Activation::Prelu,
            batch_norm: BatchNormMode::Affine,
            bn_epsilon: 1e-3,
            bn_momentum: 0.99,
            residual: Residual::default(),
            topology: Topology::default(),
            regression: None,
            tasks: vec![
                TaskConfig {
                    name: "click".into(),
                    pos_weight: 100.0,
                    loss_weight: 2.0,
                },
                TaskConfig {
                    name: "conversion".into(),
                    pos_weight: 500.0,
                    loss_weight: 1.0,
                },
            ],
            optimizer: OptimizerConfig::default(),
            batch_size: 1024,
            epochs: 1,
            seed: 42,
            fusion: Fusion::default(),
            request_fields: Vec::new(),
            loss_balancing: LossBalancing::Fixed,
        }
    }
}

/// The multi-task model: ResFlow or a baseline. Every kind shares the embeddings, the input
/// BatchNorm, the hidden-layer form (`activation`, `batch_norm`), the losses, the trainer,
/// the model file and the scorer; only the part between the input vector and the task
/// logits differs. Default sizes give dense parameter counts close to ResFlow's two
/// 128-64 towers (about 174k in the Ali-CCP layout, see `docs/models.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelKind {
    /// ResFlow: one tower per task (`hidden`), linked by the residual connections chosen in
    /// `residual`.
    Resflow,
    /// Independent towers: ResFlow with every residual link off (the paper's ablation).
    Independent,
    /// Shared-Bottom: one MLP shared by all tasks, then a small tower per task.
    SharedBottom(SharedBottomConfig),
    /// ESMM: a click tower and a conversion-given-click tower (both `hidden`); the second
    /// head is `p(click) p(conversion | click)`. Defined for exactly two tasks.
    Esmm,
    /// MMoE: expert MLPs over the input, one softmax gate per task, then a tower per task.
    Mmoe(MmoeConfig),
    /// PLE: task-specific and shared experts with per-task gates, stacked in levels.
    Ple(PleConfig),
    /// AITM: one tower per task (`hidden`) and an attention-based transfer of information
    /// from each task to the next, with an optional calibrator loss.
    Aitm(AitmConfig),
    /// ESCM2-IPW: ESMM's two towers and heads, plus the inverse-propensity-weighted
    /// counterfactual CVR loss (propensity from the click head). Exactly two tasks.
    Escm2Ipw(Escm2Config),
    /// ESCM2-DR: ESCM2-IPW's towers plus an imputation tower (training only) predicting
    /// the CVR error, with the doubly robust loss and the imputation loss. Two tasks.
    Escm2Dr(Escm2Config),
    /// DCMT: a click tower and twin factual / counterfactual CVR towers (the counterfactual
    /// one training only), trained over clicked and unclicked rows under the constraint
    /// `p_factual + p_counterfactual ~ 1`. Exactly two tasks.
    Dcmt(DcmtConfig),
}

impl ModelKind {
    /// The kind's name as written in a configuration (`"resflow"`, `"mmoe"`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            ModelKind::Resflow => "resflow",
            ModelKind::Independent => "independent",
            ModelKind::SharedBottom(_) => "shared_bottom",
            ModelKind::Esmm => "esmm",
            ModelKind::Mmoe(_) => "mmoe",
            ModelKind::Ple(_) => "ple",
            ModelKind::Aitm(_) => "aitm",
            ModelKind::Escm2Ipw(_) => "escm2_ipw",
            ModelKind::Escm2Dr(_) => "escm2_dr",
            ModelKind::Dcmt(_) => "dcmt",
        }
    }

    /// The kind called `name`, with its default hyper-parameters.
    pub fn from_name(name: &str) -> Result<Self, ModelError> {
        Ok(match name {
            "resflow" => ModelKind::Resflow,
            "independent" => ModelKind::Independent,
            "shared_bottom" => ModelKind::SharedBottom(SharedBottomConfig::default()),
            "esmm" => ModelKind::Esmm,
            "mmoe" => ModelKind::Mmoe(MmoeConfig::default()),
            "ple" => ModelKind::Ple(PleConfig::default()),
            "aitm" => ModelKind::Aitm(AitmConfig::default()),
            "escm2_ipw" => ModelKind::Escm2Ipw(Escm2Config::default()),
            "escm2_dr" => ModelKind::Escm2Dr(Escm2Config::default()),
            "dcmt" => ModelKind::Dcmt(DcmtConfig::default()),
            other => {
                return Err(ModelError::Config(format!(
                    "unknown model {other:?}; the models are {}",
                    Self::NAMES.join(", ")
                )));
            }
        })
    }

    /// Every kind's name.
    pub const NAMES: [&'static str; 10] = [
        "resflow",
        "independent",
        "shared_bottom",
        "esmm",
        "mmoe",
        "ple",
        "aitm",
        "escm2_ipw",
        "escm2_dr",
        "dcmt",
    ];

    /// Whether the kind is defined for the click -> conversion pair only (ESMM and the
    /// counterfactual models built on it).
    pub fn two_tasks_only(&self) -> bool {
        matches!(
            self,
            ModelKind::Esmm | ModelKind::Escm2Ipw(_) | ModelKind::Escm2Dr(_) | ModelKind::Dcmt(_)
        )
    }
}

/// The most experts a gate may mix (MMoE's `experts`, each of PLE's expert counts): far
/// beyond any published setting, and small enough that a mistyped number is an error, not an
/// attempt to allocate the machine's memory.
pub const MAX_EXPERTS: usize = 256;
/// The widest layer (and embedding) a configuration may ask for: 65,536 units, far beyond
/// any ranking model, so a mistyped width is an error rather than a huge allocation.
pub const MAX_WIDTH: usize = 1 << 16;
/// The most extraction levels PLE may stack.
pub const MAX_LEVELS: usize = 16;
/// The largest batch: 2^20 samples (the C ABI's largest request too).
pub const MAX_BATCH: usize = 1 << 20;
/// The most epochs a configuration may ask for.
pub const MAX_EPOCHS: usize = 1_000_000;
/// The largest loss weight, positive-example weight or calibrator weight: far beyond the
/// paper's (500 at most), small enough that a typo is an error rather than a diverged run.
pub const MAX_WEIGHT: f32 = 1e6;

/// Shared-Bottom sizes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SharedBottomConfig {
    /// Hidden widths of the shared MLP.
    pub bottom: Vec<usize>,
    /// Hidden widths of each task's tower on top of it (may be empty).
    pub tower: Vec<usize>,
}

impl Default for SharedBottomConfig {
    fn default() -> Self {
        Self {
            bottom: vec![256],
            tower: vec![64],
        }
    }
}

/// MMoE sizes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MmoeConfig {
    /// Number of experts.
    pub experts: usize,
    /// Hidden widths of each expert MLP (the gates mix their last layer).
    pub expert_hidden: Vec<usize>,
    /// Hidden widths of each task's tower on the mixture (may be empty).
    pub tower: Vec<usize>,
}

impl Default for MmoeConfig {
    fn default() -> Self {
        Self {
            experts: 4,
            expert_hidden: vec![64],
            tower: vec![32],
        }
    }
}

/// PLE sizes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PleConfig {
    /// Extraction levels stacked (the PLE paper's default: 2).
    pub levels: usize,
    /// Experts of each task at each level.
    pub task_experts: usize,
    /// Shared experts at each level.
    pub shared_experts: usize,
    /// Hidden widths of each expert MLP.
    pub expert_hidden: Vec<usize>,
    /// Hidden widths of each task's tower on the last level (may be empty).
    pub tower: Vec<usize>,
}

impl Default for PleConfig {
    fn default() -> Self {
        Self {
            levels: 2,
            task_experts: 1,
            shared_experts: 2,
            expert_hidden: vec![64],
            tower: vec![32],
        }
    }
}

/// AITM options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AitmConfig {
    /// Weight of the behavioural expectation calibrator,
    /// `sum_t mean(max(y_t - y_(t-1), 0))` over the predicted probabilities `y_t` (rows
    /// unweighted, unlike the cross-entropy); 0 turns it off (the AITM paper: 0.6).
    pub calibrator_weight: f32,
}

impl Default for AitmConfig {
    fn default() -> Self {
        Self {
            calibrator_weight: 0.6,
        }
    }
}

/// ESCM2 options (both variants), `docs/models.md`. The loss is ESMM's (the click and
/// click-and-convert tasks, with their `loss_weight`s; the paper's global weight is the
/// conversion task's) plus `counterfactual_weight` times the counterfactual CVR risk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Escm2Config {
    /// Weight of the counterfactual CVR risk (the paper's `lambda_c`; the reference code's
    /// `counterfactual_w`: 0.5). 0 trains ESMM.
    pub counterfactual_weight: f32,
    /// Propensities are clipped to `[propensity_clip, 1]` before they are inverted, so no
    /// clicked row weighs more than `1 / propensity_clip` (the reference code caps the
    /// inverse propensity at 15: `1 / 15`).
    pub propensity_clip: f32,
}

impl Default for Escm2Config {
    fn default() -> Self {
        Self {
            counterfactual_weight: 0.5,
            propensity_clip: 1.0 / 15.0,
        }
    }
}

/// DCMT options, `docs/models.md`. The loss is ESMM's (click and click-and-convert tasks)
/// plus `cvr_weight` times DCMT's CVR loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DcmtConfig {
    /// Weight of the CVR loss (factual, counterfactual and constraint terms; the paper's
    /// `w_cvr`: 1).
    pub cvr_weight: f32,
    /// Weight of the counterfactual constraint `|1 - (p_factual + p_counterfactual)|`
    /// inside the CVR loss (the paper's `lambda_1`: 0.001).
    pub constraint_weight: f32,
    /// Click propensities are clipped to `[propensity_clip, 1 - propensity_clip]` before
    /// `1 / p` and `1 / (1 - p)` are taken (the reference code: 1e-6).
    pub propensity_clip: f32,
}

impl Default for DcmtConfig {
    fn default() -> Self {
        Self {
            cvr_weight: 1.0,
            constraint_weight: 1e-3,
            propensity_clip: 1e-6,
        }
    }
}

/// The hidden-layer activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// PReLU with one learned slope per unit, initial slope 0 (the authors' choice).
    Prelu,
    /// Plain ReLU.
    Relu,
}

/// What a BatchNorm layer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchNormMode {
    /// What the authors' code trains: statistics frozen at mean 0, variance 1, so each
    /// "BatchNorm" is a learned per-channel scale and shift `gamma x / sqrt(1 + eps) + beta`.
    /// It gave higher AUC than real batch statistics in our measurements (docs/resflow.md).
    Affine,
    /// Ordinary BatchNorm: batch statistics in training, running averages at inference.
    Batch,
    /// No normalisation layers at all.
    None,
}

/// The residual links between consecutive task towers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Residual {
    /// Add task `t`'s hidden output of layer `l` to task `t + 1`'s output of layer `l`.
    pub hidden: bool,
    /// Add task `t`'s logit to task `t + 1`'s logit.
    pub logits: bool,
    /// Monotone variant: `z_t = z_(t-1) + min(own_t, 0)`, so `p_t <= p_(t-1)`.
    pub monotone: bool,
}

impl Default for Residual {
    fn default() -> Self {
        Self {
            hidden: true,
            logits: true,
            monotone: false,
        }
    }
}

/// One task of the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    /// The label's name in the dataset schema.
    pub name: String,
    /// Weight of positive examples in the cross-entropy (TensorFlow's `pos_weight`).
    #[serde(default = "one")]
    pub pos_weight: f32,
    /// Weight of this task's loss in the total loss (`lambda_t`).
    #[serde(default = "one")]
    pub loss_weight: f32,
}

impl TaskConfig {
    /// The task of label `name` with unit weights (`pos_weight = loss_weight = 1`), as a
    /// config file that names only the label gets it.
    pub fn unweighted(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            pos_weight: 1.0,
            loss_weight: 1.0,
        }
    }
}

fn one() -> f32 {
    1.0
}

/// Optimiser settings: Adam for dense parameters, lazy Adam for embedding rows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimizerConfig {
    /// Step size (the authors: 4e-4 with 32-wide embeddings).
    pub learning_rate: f32,
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Denominator guard (TF1's `AdamOptimizer`, which the authors' code uses: 1e-8).
    pub epsilon: f32,
    /// Update only the embedding rows seen in a batch (lazy Adam, fast) or decay every
    /// row's moments at every step (dense Adam, what TF1 did).
    pub sparse_embeddings: bool,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            learning_rate: 4e-4,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            sparse_embeddings: true,
        }
    }
}

/// How task probabilities become one ranking score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Fusion {
    /// Additive (`sum a_t p_t`, the paper's finding) or multiplicative (`prod q_t ^ a_t`
    /// over the conditional probabilities `q_t = p_t / p_(t-1)`).
    pub kind: FusionKind,
    /// One weight per task; empty means 1 for every task.
    pub weights: Vec<f32>,
}

impl Default for Fusion {
    fn default() -> Self {
        Self {
            kind: FusionKind::Additive,
            weights: Vec::new(),
        }
    }
}

/// The two fusion forms compared in the paper; defined (with the fused score itself) in the
/// `metrics` crate, so that training, evaluation and serving share one definition.
pub use metrics::FusionKind;

/// How the task losses `lambda_t L_t` are combined into the training loss. Training only:
/// the balancing state lives in checkpoints, never in the model file, and serving is the
/// same for every choice. Equations and costs: `docs/training.md`.
///
/// ```json
/// "loss_balancing": {"kind": "fixed"}
/// "loss_balancing": {"kind": "uncertainty", "learning_rate": 0.01}
/// "loss_balancing": {"kind": "gradnorm", "alpha": 1.5, "learning_rate": 0.025}
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LossBalancing {
    /// `sum_t lambda_t L_t` with the tasks' `loss_weight`s (the default).
    #[default]
    Fixed,
    /// Uncertainty weighting (Kendall, Gal and Cipolla, 2018): a learned log-variance
    /// `s_t` per task, `sum_t exp(-s_t) lambda_t L_t + s_t / 2`.
    Uncertainty(UncertaintyConfig),
    /// GradNorm (Chen et al., 2018): learned task weights `w_t` in
    /// `sum_t w_t lambda_t L_t`, moved so that each task's gradient norm on the shared
    /// input BatchNorm tracks the mean norm times the task's relative inverse training
    /// rate to the power `alpha`.
    Gradnorm(GradNormConfig),
}

/// Uncertainty weighting's options.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct UncertaintyConfig {
    /// Adam step size of the log-variances; `null` (the default) is
    /// `optimizer.learning_rate`, the paper's "same optimiser".
    pub learning_rate: Option<f32>,
}

/// GradNorm's options.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GradNormConfig {
    /// The asymmetry `alpha` (the paper's default 1.5; 0 pulls every gradient norm to the
    /// same value).
    pub alpha: f32,
    /// Adam step size of the task weights; `null` (the default) is
    /// `optimizer.learning_rate`.
    pub learning_rate: Option<f32>,
}

impl Default for GradNormConfig {
    fn default() -> Self {
        Self {
            alpha: 1.5,
            learning_rate: None,
        }
    }
}

/// The largest GradNorm `alpha` a configuration may ask for (the paper explores 0 to 3).
pub const MAX_GRADNORM_ALPHA: f32 = 10.0;

impl LossBalancing {
    /// True for the default fixed weights.
    pub fn is_fixed(&self) -> bool {
        matches!(self, LossBalancing::Fixed)
    }

    /// The name written in a configuration (`"fixed"`, `"uncertainty"`, `"gradnorm"`).
    pub fn name(&self) -> &'static str {
        match self {
            LossBalancing::Fixed => "fixed",
            LossBalancing::Uncertainty(_) => "uncertainty",
            LossBalancing::Gradnorm(_) => "gradnorm",
        }
    }

    /// Every balancing's name.
    pub const NAMES: [&'static str; 3] = ["fixed", "uncertainty", "gradnorm"];

    /// The balancing called `name`, with its default options.
    pub fn from_name(name: &str) -> Result<Self, ModelError> {
        match name {
            "fixed" => Ok(LossBalancing::Fixed),
            "uncertainty" => Ok(LossBalancing::Uncertainty(UncertaintyConfig::default())),
            "gradnorm" => Ok(LossBalancing::Gradnorm(GradNormConfig::default())),
            other => Err(ModelError::Config(format!(
                "unknown loss balancing {other:?}; the choices are {}",
                Self::NAMES.join(", ")
            ))),
        }
    }

    /// The Adam step size of the balancing parameters (`None` for fixed weights).
    pub fn learning_rate(&self, optimizer: &OptimizerConfig) -> Option<f32> {
        match self {
            LossBalancing::Fixed => None,
            LossBalancing::Uncertainty(u) => {
                Some(u.learning_rate.unwrap_or(optimizer.learning_rate))
            }
            LossBalancing::Gradnorm(g) => Some(g.learning_rate.unwrap_or(optimizer.learning_rate)),
        }
    }
}

/// Merges `over` into `base`: objects key by key (recursively), anything else replaced.
fn merge_json(base: &mut serde_json::Value, over: serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge_json(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

impl ModelConfig {
    /// The named presets, for [`ModelConfig::preset`].
    pub const PRESETS: [&'static str; 2] = ["default", "authors"];

    /// A named starting configuration:
    ///
    /// - `"default"`: [`ModelConfig::default`], the authors' model and losses trained with
    ///   lazy (sparse) Adam on the embedding tables, which is what makes CPU training fast;
    /// - `"authors"`: what the authors' released Ali-CCP training does, as far as the code
    ///   says: affine ("frozen") BatchNorm, PReLU towers 128-64, embeddings of 32, loss
    ///   weights 2 and 1, pos_weights 100 and 500, Adam with learning rate 4e-4, betas
    ///   0.9 / 0.999, epsilon 1e-8 (TF1's `AdamOptimizer`), and the dense TF1 update of the
    ///   embedding tables (every row's moments decay at every step). Batch size and epochs
    ///   are not in their code; ours are kept.
    pub fn preset(name: &str) -> Result<Self, ModelError> {
        match name {
            "default" => Ok(Self::default()),
            "authors" => Ok(Self {
                batch_norm: BatchNormMode::Affine,
                activation: Activation::Prelu,
                embedding_dim: 32,
                hidden: vec![128, 64],
                tasks: vec![
                    TaskConfig {
                        name: "click".into(),
                        pos_weight: 100.0,
                        loss_weight: 2.0,
                    },
                    TaskConfig {
                        name: "conversion".into(),
                        pos_weight: 500.0,
                        loss_weight: 1.0,
                    },
                ],
                optimizer: OptimizerConfig {
                    learning_rate: 4e-4,
                    beta1: 0.9,
                    beta2: 0.999,
                    epsilon: 1e-8,
                    sparse_embeddings: false,
                },
                ..Self::default()
            }),
            other => Err(ModelError::Config(format!(
                "unknown preset {other:?}; the presets are {}",
                Self::PRESETS.join(", ")
            ))),
        }
    }

    /// Parses a JSON configuration and checks it. A top-level `"preset"` key names the
    /// configuration the other keys override (default: `"default"`).
    pub fn from_json(text: &str) -> Result<Self, ModelError> {
        let err = |e: serde_json::Error| ModelError::Config(e.to_string());
        let mut value: serde_json::Value = serde_json::from_str(text).map_err(err)?;
        let preset = match value.as_object_mut().and_then(|o| o.remove("preset")) {
            None => None,
            Some(serde_json::Value::String(name)) => Some(name),
            Some(other) => {
                return Err(ModelError::Config(format!(
                    "preset must be a name ({}), got {other}",
                    Self::PRESETS.join(", ")
                )));
            }
        };
        let config: ModelConfig = match preset {
            None => serde_json::from_value(value).map_err(err)?,
            Some(name) => {
                let mut base = serde_json::to_value(Self::preset(&name)?).map_err(err)?;
                merge_json(&mut base, value);
                serde_json::from_value(base).map_err(err)?
            }
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the values a JSON file cannot constrain by type.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |msg: String| Err(ModelError::Config(msg));
        if self.embedding_dim == 0 {
            return bad("embedding_dim must be at least 1".into());
        }
        if self.hidden.is_empty() {
            return bad("at least one hidden layer is needed (hidden: [])".into());
        }
        if self.hidden.iter().any(|w| !(1..=MAX_WIDTH).contains(w)) {
            return bad(format!(
                "hidden widths must be between 1 and {MAX_WIDTH}, got {:?}",
                self.hidden
            ));
        }
        if self.embedding_dim > MAX_WIDTH {
            return bad(format!(
                "embedding_dim must be at most {MAX_WIDTH}, got {}",
                self.embedding_dim
            ));
        }
        self.validate_model()?;
        self.links()?;
        self.validate_regression()?;
        if self.tasks.is_empty() {
            return bad("at least one task is needed".into());
        }
        for t in &self.tasks {
            if !(t.pos_weight > 0.0 && t.pos_weight <= MAX_WEIGHT) {
                return bad(format!(
                    "task {:?}: pos_weight must be in (0, {MAX_WEIGHT}], got {}",
                    t.name, t.pos_weight
                ));
            }
            if !(t.loss_weight >= 0.0 && t.loss_weight <= MAX_WEIGHT) {
                return bad(format!(
                    "task {:?}: loss_weight must be in [0, {MAX_WEIGHT}], got {}",
                    t.name, t.loss_weight
                ));
            }
        }
        if self.tasks.iter().all(|t| t.loss_weight == 0.0) {
            return bad("every task has loss_weight 0: nothing would be trained".into());
        }
        let mut names: Vec<&str> = self.tasks.iter().map(|t| t.name.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return bad("task names must be distinct".into());
        }
        if !(self.bn_epsilon > 0.0 && self.bn_epsilon <= 1.0) {
            return bad(format!(
                "bn_epsilon must be in (0, 1], got {}",
                self.bn_epsilon
            ));
        }
        if !(0.0..1.0).contains(&self.bn_momentum) {
            return bad(format!(
                "bn_momentum must be in [0, 1), got {}",
                self.bn_momentum
            ));
        }
        let o = &self.optimizer;
        if !(o.learning_rate > 0.0 && o.learning_rate <= 1.0) {
            return bad(format!(
                "optimizer.learning_rate must be in (0, 1], got {}",
                o.learning_rate
            ));
        }
        if !(o.epsilon.is_finite() && o.epsilon > 0.0) {
            return bad(format!(
                "optimizer.epsilon must be positive, got {}",
                o.epsilon
            ));
        }
        if !(0.0..1.0).contains(&o.beta1) || !(0.0..1.0).contains(&o.beta2) {
            return bad("optimizer.beta1 and beta2 must be in [0, 1)".into());
        }
        if !(o.epsilon > 0.0 && o.epsilon <= 1.0) {
            return bad(format!(
                "optimizer.epsilon must be in (0, 1], got {}",
                o.epsilon
            ));
        }
        if !(1..=MAX_BATCH).contains(&self.batch_size) {
            return bad(format!(
                "batch_size must be between 1 and {MAX_BATCH}, got {}",
                self.batch_size
            ));
        }
        if !(1..=MAX_EPOCHS).contains(&self.epochs) {
            return bad(format!(
                "epochs must be between 1 and {MAX_EPOCHS}, got {}",
                self.epochs
            ));
        }
        if !self.fusion.weights.is_empty() && self.fusion.weights.len() != self.tasks.len() {
            return bad(format!(
                "fusion.weights has {} entries for {} tasks",
                self.fusion.weights.len(),
                self.tasks.len()
            ));
        }
        if self.fusion.weights.iter().any(|w| !w.is_finite()) {
            return bad("fusion.weights must be finite".into());
        }
        if self.tasks.iter().any(|t| t.name.is_empty()) {
            return bad("task names must not be empty".into());
        }
        self.validate_balancing()
    }

    /// Checks `loss_balancing` against the rest of the configuration.
    fn validate_balancing(&self) -> Result<(), ModelError> {
        let b = &self.loss_balancing;
        let bad = |msg: String| {
            Err(ModelError::Config(format!(
                "loss_balancing {}: {msg}",
                b.name()
            )))
        };
        if b.is_fixed() {
            return Ok(());
        }
        let lr = match b {
            LossBalancing::Uncertainty(u) => u.learning_rate,
            LossBalancing::Gradnorm(g) => g.learning_rate,
            LossBalancing::Fixed => None,
        };
        if let Some(lr) = lr.filter(|lr| !(*lr > 0.0 && *lr <= 1.0)) {
            return bad(format!("learning_rate must be in (0, 1], got {lr}"));
        }
        if let Some(t) = self.tasks.iter().find(|t| t.loss_weight == 0.0) {
            return bad(format!(
                "task {:?} has loss_weight 0: a learned weight on a loss that is not \
                 trained would grow without bound (drop the task or give it a weight)",
                t.name
            ));
        }
        if let LossBalancing::Gradnorm(g) = b {
            if !(0.0..=MAX_GRADNORM_ALPHA).contains(&g.alpha) {
                return bad(format!(
                    "alpha must be in [0, {MAX_GRADNORM_ALPHA}], got {}",
                    g.alpha
                ));
            }
            if self.tasks.len() < 2 {
                return bad("GradNorm balances at least two tasks".into());
            }
            if self.batch_norm == BatchNormMode::None {
                return bad(
                    "GradNorm measures the task gradients on the input BatchNorm's gamma and \
                     beta, the last layer every task shares; batch_norm \"none\" has none"
                        .into(),
                );
            }
        }
        Ok(())
    }

    /// Checks the model kind's own hyper-parameters.
    fn validate_model(&self) -> Result<(), ModelError> {
        let bad = |msg: String| {
            Err(ModelError::Config(format!(
                "model {}: {msg}",
                self.model.name()
            )))
        };
        let widths = |what: &str, w: &[usize], may_be_empty: bool| {
            if w.iter().any(|w| !(1..=MAX_WIDTH).contains(w)) || (w.is_empty() && !may_be_empty) {
                bad(format!(
                    "{what} needs widths between 1 and {MAX_WIDTH}, got {w:?}"
                ))
            } else {
                Ok(())
            }
        };
        // A loss weight in [0, MAX_WEIGHT]; a count in 1..=max; a propensity clip in
        // (0, hi] (or (0, hi) when `open`).
        let weight = |what: &str, w: f32| {
            if (0.0..=MAX_WEIGHT).contains(&w) {
                Ok(())
            } else {
                bad(format!("{what} must be in [0, {MAX_WEIGHT}], got {w}"))
            }
        };
        let count = |what: &str, n: usize, max: usize| {
            if (1..=max).contains(&n) {
                Ok(())
            } else {
                bad(format!("{what} must be between 1 and {max}, got {n}"))
            }
        };
        let clip = |c: f32, hi: f32, open: bool| {
            if c > 0.0 && (c < hi || (!open && c == hi)) {
                Ok(())
            } else {
                let end = if open { ")" } else { "]" };
                bad(format!("propensity_clip must be in (0, {hi}{end}, got {c}"))
            }
        };
        match &self.model {
            ModelKind::Resflow | ModelKind::Independent => Ok(()),
            ModelKind::SharedBottom(c) => {
                widths("bottom", &c.bottom, false)?;
                widths("tower", &c.tower, true)
            }
            m if m.two_tasks_only() && self.tasks.len() != 2 => bad(format!(
                "{} is defined for the click -> conversion pair: 2 tasks, got {}",
                match m {
                    ModelKind::Esmm => "ESMM",
                    ModelKind::Dcmt(_) => "DCMT",
                    _ => "ESCM2",
                },
                self.tasks.len()
            )),
            ModelKind::Esmm => Ok(()),
            ModelKind::Mmoe(c) => {
                count("experts", c.experts, MAX_EXPERTS)?;
                widths("expert_hidden", &c.expert_hidden, false)?;
                widths("tower", &c.tower, true)
            }
            ModelKind::Ple(c) => {
                count("levels", c.levels, MAX_LEVELS)?;
                if c.task_experts > MAX_EXPERTS || c.shared_experts > MAX_EXPERTS {
                    return bad(format!(
                        "task_experts and shared_experts may be at most {MAX_EXPERTS} each"
                    ));
                }
                if c.task_experts + c.shared_experts == 0 {
                    return bad("each gate needs at least one expert".into());
                }
                widths("expert_hidden", &c.expert_hidden, false)?;
                widths("tower", &c.tower, true)
            }
            ModelKind::Aitm(c) => weight("calibrator_weight", c.calibrator_weight),
            ModelKind::Escm2Ipw(c) | ModelKind::Escm2Dr(c) => {
                weight("counterfactual_weight", c.counterfactual_weight)?;
                clip(c.propensity_clip, 1.0, false)
            }
            ModelKind::Dcmt(c) => {
                weight("cvr_weight", c.cvr_weight)?;
                weight("constraint_weight", c.constraint_weight)?;
                clip(c.propensity_clip, 0.5, true)
            }
        }
    }

    /// Checks the regression settings: their own values, and once resolved, that the
    /// tasks are the heads they define (one per threshold, or one for the direct form).
    fn validate_regression(&self) -> Result<(), ModelError> {
        let Some(r) = &self.regression else {
            return Ok(());
        };
        r.validate()?;
        if r.form == RegressionForm::Direct && self.tasks.len() != 1 && r.is_resolved() {
            return Err(ModelError::Config(format!(
                "regression: the direct form has one head, the configuration {} tasks",
                self.tasks.len()
            )));
        }
        if r.is_resolved() && self.tasks != r.tasks() {
            return Err(ModelError::Config(format!(
                "regression: the tasks must be the heads the thresholds define ({:?}), got {:?}",
                r.tasks().iter().map(|t| &t.name).collect::<Vec<_>>(),
                self.tasks.iter().map(|t| &t.name).collect::<Vec<_>>()
            )));
        }
        Ok(())
    }

    /// Resolves the regression settings from the training target `y` (see
    /// [`RegressionConfig::resolve`]) and makes the tasks its heads; nothing to do without
    /// regression.
    pub fn resolve_regression(&mut self, y: &[f32]) -> Result<(), ModelError> {
        if let Some(r) = &mut self.regression {
            r.resolve(y)?;
            self.tasks = r.tasks();
            if !self.fusion.weights.is_empty() && self.fusion.weights.len() != self.tasks.len() {
                self.fusion.weights.clear();
            }
        }
        self.validate()
    }

    /// The residual links in effect: `residual` and `topology` resolved for ResFlow, none
    /// for every other kind; a configuration error for an invalid graph, or for residual
    /// or topology options given to a kind that has no links.
    pub fn links(&self) -> Result<Links, ModelError> {
        let layers = self.hidden.len();
        if self.model != ModelKind::Resflow {
            if self.residual != Residual::default() || !self.topology.is_default() {
                return Err(ModelError::Config(format!(
                    "model {} has no residual links: residual and topology options apply to \
                     resflow only",
                    self.model.name()
                )));
            }
            return Ok(Links::none(self.tasks.len(), layers));
        }
        let names: Vec<&str> = self.tasks.iter().map(|t| t.name.as_str()).collect();
        let r = self.residual;
        self.topology
            .resolve(&names, layers, (r.hidden, r.logits, r.monotone))
            .map_err(ModelError::Config)
    }

    /// A configuration for `name` (see [`ModelKind::from_name`]) with everything else
    /// taken from `self`.
    pub fn with_model(&self, name: &str) -> Result<Self, ModelError> {
        let mut c = self.clone();
        c.model = ModelKind::from_name(name)?;
        if c.model != ModelKind::Resflow {
            // The links are ResFlow's: every other kind is compared without them.
            c.residual = Residual::default();
            c.topology = Topology::default();
        }
        c.validate()?;
        Ok(c)
    }

    /// The fusion weight of each task (1 where none were given).
    pub fn fusion_weights(&self) -> Vec<f32> {
        if self.fusion.weights.is_empty() {
            vec![1.0; self.tasks.len()]
        } else {
            self.fusion.weights.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_json_is_the_papers_model() {
        let c = ModelConfig::from_json("{}").unwrap();
        assert_eq!(c, ModelConfig::default());
        assert_eq!((c.embedding_dim, c.hidden.clone()), (32, vec![128, 64]));
        assert_eq!(
            (c.tasks[0].pos_weight, c.tasks[1].pos_weight),
            (100.0, 500.0)
        );
        assert_eq!((c.tasks[0].loss_weight, c.tasks[1].loss_weight), (2.0, 1.0));
        assert_eq!(c.batch_norm, BatchNormMode::Affine);
    }

    #[test]
    fn the_authors_preset_and_overrides() {
        assert_eq!(ModelConfig::default().optimizer.epsilon, 1e-8);
        let a = ModelConfig::from_json(r#"{"preset": "authors"}"#).unwrap();
        assert_eq!(a, ModelConfig::preset("authors").unwrap());
        assert!(!a.optimizer.sparse_embeddings);
        assert_eq!(a.optimizer.epsilon, 1e-8);
        assert_eq!(a.optimizer.learning_rate, 4e-4);
        assert_eq!(a.batch_norm, BatchNormMode::Affine);
        assert_eq!(
            (a.tasks[0].pos_weight, a.tasks[1].pos_weight),
            (100.0, 500.0)
        );
        assert_eq!((a.tasks[0].loss_weight, a.tasks[1].loss_weight), (2.0, 1.0));
        // Other keys override the preset, nested objects key by key.
        let b = ModelConfig::from_json(
            r#"{"preset": "authors", "optimizer": {"learning_rate": 0.001}, "epochs": 3}"#,
        )
        .unwrap();
        assert_eq!(b.optimizer.learning_rate, 1e-3);
        assert!(
            !b.optimizer.sparse_embeddings,
            "the preset's other optimizer keys stay"
        );
        assert_eq!(b.epochs, 3);
        for (json, needle) in [
            (r#"{"preset": "theirs"}"#, "unknown preset"),
            (r#"{"preset": 3}"#, "preset must be a name"),
            (r#"{"preset": "authors", "optimiser": {}}"#, "unknown field"),
            (r#"{"optimizer": {"epsilon": 0}}"#, "epsilon"),
        ] {
            let err = ModelConfig::from_json(json).unwrap_err().to_string();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn ablation_and_round_trip() {
        let c = ModelConfig::from_json(
            r#"{"residual": {"hidden": false, "logits": false}, "batch_norm": "batch"}"#,
        )
        .unwrap();
        assert!(!c.residual.hidden && !c.residual.logits);
        let back = ModelConfig::from_json(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn model_kinds_parse_with_defaults_and_round_trip() {
        let c = ModelConfig::from_json(r#"{"model": {"kind": "mmoe", "experts": 6}}"#).unwrap();
        assert_eq!(
            c.model,
            ModelKind::Mmoe(MmoeConfig {
                experts: 6,
                ..MmoeConfig::default()
            })
        );
        for name in ModelKind::NAMES {
            let c = ModelConfig::default().with_model(name).unwrap();
            assert_eq!(c.model.name(), name);
            let back = ModelConfig::from_json(&serde_json::to_string(&c).unwrap()).unwrap();
            assert_eq!(back, c);
        }
        let independent = ModelConfig::default().with_model("independent").unwrap();
        assert!(
            independent
                .links()
                .unwrap()
                .logits
                .iter()
                .all(Vec::is_empty)
        );
        assert_eq!(
            ModelConfig::default().links().unwrap().logits,
            vec![vec![], vec![0]]
        );
        let err = ModelKind::from_name("moe").unwrap_err().to_string();
        assert!(err.contains("shared_bottom"), "{err}");
    }

    #[test]
    fn mistakes_are_clear_errors() {
        for (json, needle) in [
            (r#"{"hidden": [128, 0]}"#, "hidden widths"),
            (r#"{"hidden": [1000000000000]}"#, "between 1 and 65536"),
            (r#"{"embedding_dim": 100000000}"#, "embedding_dim"),
            (
                r#"{"model": {"kind": "mmoe", "expert_hidden": [1000000000000]}}"#,
                "between 1 and 65536",
            ),
            (r#"{"tasks": []}"#, "at least one task"),
            (
                r#"{"tasks": [{"name": "a", "pos_weight": -1}]}"#,
                "pos_weight",
            ),
            (r#"{"tasks": [{"name": "a"}, {"name": "a"}]}"#, "distinct"),
            (r#"{"embeding_dim": 8}"#, "unknown field"),
            (r#"{"batch_norm": "sometimes"}"#, "unknown variant"),
            (r#"{"fusion": {"weights": [1, 2, 3]}}"#, "fusion.weights"),
            (r#"{"optimizer": {"learning_rate": 0}}"#, "learning_rate"),
            (r#"{"model": {"kind": "moe"}}"#, "unknown variant"),
            (r#"{"model": {"kind": "mmoe", "experts": 0}}"#, "experts"),
            (
                r#"{"model": {"kind": "mmoe", "expert": 3}}"#,
                "unknown field",
            ),
            (r#"{"model": {"kind": "ple", "levels": 0}}"#, "levels"),
            (
                r#"{"model": {"kind": "mmoe", "experts": 1000000000000}}"#,
                "between 1 and 256",
            ),
            (
                r#"{"model": {"kind": "ple", "task_experts": 18446744073709551615}}"#,
                "at most 256",
            ),
            (
                r#"{"model": {"kind": "shared_bottom", "bottom": []}}"#,
                "bottom",
            ),
            (
                r#"{"model": {"kind": "esmm"}, "tasks": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}"#,
                "click -> conversion pair",
            ),
            (
                r#"{"model": {"kind": "aitm", "calibrator_weight": -1}}"#,
                "calibrator_weight",
            ),
            // Topology: unknown tasks, cycles, monotone without logit links, and link
            // options on kinds that have no links.
            (
                r#"{"topology": {"parents": {"conversion": {"logits": ["clicks"]}}}}"#,
                "logit parent \"clicks\" is not a task",
            ),
            (
                r#"{"topology": {"parents": {"click": {"hidden": ["conversion"]}}}}"#,
                "cycle: click -> conversion -> click",
            ),
            (
                r#"{"residual": {"logits": false, "monotone": true}}"#,
                "residual.logits is off",
            ),
            (
                r#"{"model": {"kind": "mmoe"}, "residual": {"monotone": true}}"#,
                "model mmoe has no residual links",
            ),
            (
                r#"{"model": {"kind": "independent"}, "topology": {"layers": [true, false]}}"#,
                "model independent has no residual links",
            ),
            (r#"{"topology": {"layers": [true]}}"#, "1 switches for 2"),
        ] {
            let err = ModelConfig::from_json(json).unwrap_err().to_string();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn the_documented_ablations_are_valid_configurations() {
        // docs/models.md, "The paper's ablations as configurations".
        for json in [
            "{}",
            r#"{"residual": {"hidden": false, "logits": false}}"#,
            r#"{"residual": {"logits": false}}"#,
            r#"{"residual": {"hidden": false}}"#,
            r#"{"topology": {"layers": [true, false]}}"#,
            r#"{"topology": {"layers": [false, true]}}"#,
            r#"{"residual": {"logits": false}, "topology": {"layers": [true, false]}}"#,
            r#"{"residual": {"logits": false}, "topology": {"layers": [false, true]}}"#,
        ] {
            ModelConfig::from_json(json).unwrap_or_else(|e| panic!("{json}: {e}"));
        }
        let tasks = r#""tasks": [{"name": "click"}, {"name": "cart"}, {"name": "order"}]"#;
        for (topology, order) in [
            ("{}", [0, 1, 2]),
            (
                r#"{"parents": {"order": {"hidden": ["click"], "logits": ["click"]}}}"#,
                [0, 1, 2],
            ),
            (
                r#"{"parents": {"order": {"hidden": ["click", "cart"], "logits": ["click", "cart"]}}}"#,
                [0, 1, 2],
            ),
            (
                r#"{"parents": {"click": {"hidden": ["cart"], "logits": ["cart"]}, "cart": {"hidden": [], "logits": []}}}"#,
                [1, 0, 2],
            ),
            (
                r#"{"parents": {"click": {"hidden": ["order"], "logits": ["order"]}, "cart": {"hidden": ["click"], "logits": ["click"]}, "order": {"hidden": [], "logits": []}}}"#,
                [2, 0, 1],
            ),
        ] {
            let json = format!(r#"{{{tasks}, "topology": {topology}}}"#);
            let c = ModelConfig::from_json(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
            assert_eq!(c.links().unwrap().order, order, "{json}");
        }
    }

    #[test]
    fn loss_balancing_parses_validates_and_stays_out_of_default_files() {
        let c = ModelConfig::from_json("{}").unwrap();
        assert!(c.loss_balancing.is_fixed());
        let text = serde_json::to_string(&c).unwrap();
        assert!(!text.contains("loss_balancing"), "{text}");
        let u = ModelConfig::from_json(r#"{"loss_balancing": {"kind": "uncertainty"}}"#).unwrap();
        assert_eq!(
            u.loss_balancing,
            LossBalancing::Uncertainty(UncertaintyConfig {
                learning_rate: None
            })
        );
        assert_eq!(u.loss_balancing.learning_rate(&u.optimizer), Some(4e-4));
        let g = ModelConfig::from_json(
            r#"{"loss_balancing": {"kind": "gradnorm", "learning_rate": 0.025}}"#,
        )
        .unwrap();
        assert_eq!(
            g.loss_balancing,
            LossBalancing::Gradnorm(GradNormConfig {
                alpha: 1.5,
                learning_rate: Some(0.025)
            })
        );
        for c in [&u, &g] {
            let back = ModelConfig::from_json(&serde_json::to_string(c).unwrap()).unwrap();
            assert_eq!(&back, c);
        }
        for name in LossBalancing::NAMES {
            assert_eq!(LossBalancing::from_name(name).unwrap().name(), name);
        }
        assert!(LossBalancing::from_name("metabalance").is_err());
        for (json, needle) in [
            (
                r#"{"loss_balancing": {"kind": "magic"}}"#,
                "unknown variant",
            ),
            (
                r#"{"loss_balancing": {"kind": "gradnorm", "alpah": 1}}"#,
                "unknown field",
            ),
            (
                r#"{"loss_balancing": {"kind": "gradnorm", "alpha": -1}}"#,
                "alpha",
            ),
            (
                r#"{"loss_balancing": {"kind": "gradnorm", "alpha": 11}}"#,
                "alpha",
            ),
            (
                r#"{"loss_balancing": {"kind": "uncertainty", "learning_rate": 0}}"#,
                "learning_rate",
            ),
            (
                r#"{"loss_balancing": {"kind": "gradnorm"}, "batch_norm": "none"}"#,
                "input BatchNorm",
            ),
            (
                r#"{"loss_balancing": {"kind": "gradnorm"}, "tasks": [{"name": "click"}]}"#,
                "at least two tasks",
            ),
            (
                r#"{"loss_balancing": {"kind": "uncertainty"}, "tasks": [{"name": "a"}, {"name": "b", "loss_weight": 0}]}"#,
                "loss_weight 0",
            ),
        ] {
            let err = ModelConfig::from_json(json).unwrap_err().to_string();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn counterfactual_kinds_check_their_hyper_parameters() {
        let c = ModelConfig::from_json(r#"{"model": {"kind": "escm2_dr"}}"#).unwrap();
        assert_eq!(c.model, ModelKind::Escm2Dr(Escm2Config::default()));
        assert_eq!(Escm2Config::default().counterfactual_weight, 0.5);
        assert_eq!(DcmtConfig::default().constraint_weight, 1e-3);
        let three = r#""tasks": [{"name": "a"}, {"name": "b"}, {"name": "c"}]"#;
        for (json, needle) in [
            (
                format!(r#"{{"model": {{"kind": "escm2_ipw"}}, {three}}}"#),
                "ESCM2 is defined for the click -> conversion pair",
            ),
            (
                format!(r#"{{"model": {{"kind": "dcmt"}}, {three}}}"#),
                "DCMT is defined for the click -> conversion pair",
            ),
            (
                r#"{"model": {"kind": "escm2_ipw", "counterfactual_weight": -0.5}}"#.into(),
                "counterfactual_weight",
            ),
            (
                r#"{"model": {"kind": "escm2_dr", "counterfactual_weight": 1e9}}"#.into(),
                "counterfactual_weight",
            ),
            (
                r#"{"model": {"kind": "escm2_dr", "propensity_clip": 0}}"#.into(),
                "propensity_clip",
            ),
            (
                r#"{"model": {"kind": "escm2_ipw", "propensity_clip": 1.5}}"#.into(),
                "propensity_clip",
            ),
            (
                r#"{"model": {"kind": "dcmt", "propensity_clip": 0.5}}"#.into(),
                "propensity_clip",
            ),
            (
                r#"{"model": {"kind": "dcmt", "constraint_weight": -1}}"#.into(),
                "constraint_weight",
            ),
            (
                r#"{"model": {"kind": "dcmt", "cvr_weight": -1}}"#.into(),
                "cvr_weight",
            ),
            (
                r#"{"model": {"kind": "dcmt", "clip": 0.1}}"#.into(),
                "unknown field",
            ),
        ] {
            let err = ModelConfig::from_json(&json).unwrap_err().to_string();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn every_numeric_value_is_range_checked() {
        for (json, key) in [
            (r#"{"optimizer":{"epsilon":-1}}"#, "epsilon"),
            (r#"{"optimizer":{"epsilon":0}}"#, "epsilon"),
            (r#"{"optimizer":{"epsilon":1e39}}"#, ""),
            (r#"{"optimizer":{"learning_rate":1e30}}"#, "learning_rate"),
            (r#"{"optimizer":{"learning_rate":0}}"#, "learning_rate"),
            (r#"{"optimizer":{"beta1":1}}"#, "beta1"),
            (r#"{"optimizer":{"beta2":-0.1}}"#, "beta2"),
            (r#"{"bn_epsilon":0}"#, "bn_epsilon"),
            (r#"{"bn_epsilon":2}"#, "bn_epsilon"),
            (r#"{"bn_momentum":1}"#, "bn_momentum"),
            (r#"{"batch_size":0}"#, "batch_size"),
            (r#"{"batch_size":2000000}"#, "batch_size"),
            (r#"{"epochs":0}"#, "epochs"),
            (r#"{"embedding_dim":0}"#, "embedding_dim"),
            (r#"{"embedding_dim":65537}"#, "embedding_dim"),
            (r#"{"hidden":[0]}"#, "hidden"),
            (r#"{"hidden":[65537]}"#, "hidden"),
            (r#"{"fusion":{"weights":[1]}}"#, "fusion"),
            (
                r#"{"tasks":[{"name":"click","pos_weight":1e7},{"name":"conversion"}]}"#,
                "pos_weight",
            ),
            (
                r#"{"tasks":[{"name":"click","loss_weight":-1},{"name":"conversion"}]}"#,
                "loss_weight",
            ),
            (
                r#"{"tasks":[{"name":"click","loss_weight":0},{"name":"conversion","loss_weight":0}]}"#,
                "loss_weight",
            ),
            (
                r#"{"model":{"kind":"aitm","calibrator_weight":-1}}"#,
                "calibrator",
            ),
            (r#"{"model":{"kind":"mmoe","experts":0}}"#, "experts"),
            (r#"{"model":{"kind":"ple","levels":99}}"#, "levels"),
        ] {
            let e = ModelConfig::from_json(json).unwrap_err().to_string();
            assert!(e.contains(key), "{json}: {e}");
        }
    }
}
