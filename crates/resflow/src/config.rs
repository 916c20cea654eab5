//! The model configuration: every knob of ResFlow, with defaults equal to the authors'
//! released Ali-CCP settings (see `docs/resflow.md`).
//!
//! A configuration is a JSON object; every field is optional and falls back to its default,
//! so `{}` is the paper's model and `{"residual": {"hidden": false, "logits": false}}` is
//! the independent-towers ablation.

use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// The whole model and training configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Width of every embedding vector (the authors' code: 32).
    pub embedding_dim: usize,
    /// Hidden widths of each task tower (the authors' code: 128, 64), then a 1-unit logit.
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
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            embedding_dim: 32,
            hidden: vec![128, 64],
            activation: Activation::Prelu,
            batch_norm: BatchNormMode::Affine,
            bn_epsilon: 1e-3,
            bn_momentum: 0.99,
            residual: Residual::default(),
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
    /// Denominator guard (Keras default 1e-7).
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
            epsilon: 1e-7,
            sparse_embeddings: true,
        }
    }
}

/// How task probabilities become one ranking score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Fusion {
    /// Additive (`sum w_t p_t`, the paper's finding) or multiplicative (`prod p_t ^ w_t`).
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

/// The two fusion forms compared in the paper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FusionKind {
    /// `sum_t w_t p_t`.
    Additive,
    /// `prod_t p_t ^ w_t`.
    Multiplicative,
}

impl ModelConfig {
    /// Parses a JSON configuration and checks it.
    pub fn from_json(text: &str) -> Result<Self, ModelError> {
        let config: ModelConfig =
            serde_json::from_str(text).map_err(|e| ModelError::Config(e.to_string()))?;
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
        if self.hidden.contains(&0) {
            return bad(format!(
                "hidden widths must be at least 1, got {:?}",
                self.hidden
            ));
        }
        if self.tasks.is_empty() {
            return bad("at least one task is needed".into());
        }
        for t in &self.tasks {
            if !(t.pos_weight.is_finite() && t.pos_weight > 0.0) {
                return bad(format!(
                    "task {:?}: pos_weight must be positive, got {}",
                    t.name, t.pos_weight
                ));
            }
            if !(t.loss_weight.is_finite() && t.loss_weight >= 0.0) {
                return bad(format!(
                    "task {:?}: loss_weight must be >= 0, got {}",
                    t.name, t.loss_weight
                ));
            }
        }
        let mut names: Vec<&str> = self.tasks.iter().map(|t| t.name.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return bad("task names must be distinct".into());
        }
        if !(self.bn_epsilon.is_finite() && self.bn_epsilon > 0.0) {
            return bad(format!(
                "bn_epsilon must be positive, got {}",
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
        if !(o.learning_rate.is_finite() && o.learning_rate > 0.0) {
            return bad(format!(
                "optimizer.learning_rate must be positive, got {}",
                o.learning_rate
            ));
        }
        if !(0.0..1.0).contains(&o.beta1) || !(0.0..1.0).contains(&o.beta2) {
            return bad("optimizer.beta1 and beta2 must be in [0, 1)".into());
        }
        if self.batch_size == 0 {
            return bad("batch_size must be at least 1".into());
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
        Ok(())
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
    fn mistakes_are_clear_errors() {
        for (json, needle) in [
            (r#"{"hidden": [128, 0]}"#, "hidden widths"),
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
        ] {
            let err = ModelConfig::from_json(json).unwrap_err().to_string();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }
}
