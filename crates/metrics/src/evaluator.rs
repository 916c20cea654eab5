//! A streaming evaluator: push predictions batch by batch during evaluation, then get one
//! report with every metric per task and Weighted Recall@K under both fusions.
//!
//! It keeps, per row, one probability and one label per task and the group id (9 bytes
//! per task plus 8): 10 million rows of two tasks take about 260 MB.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::auc::auc_unchecked;
use crate::error::{MetricsError, Result, check_labels, same_len};
use crate::fusion::compare_grouped;
use crate::gauc::{GroupWeight, gauc_grouped};
use crate::groups::GroupIndex;
use crate::logloss::{calibration, log_loss};
use crate::weighted_recall::{Averaging, ItemWeight};

/// What the evaluator computes.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalConfig {
    /// Task names in chain order.
    pub tasks: Vec<String>,
    /// The K of Weighted Recall@K.
    pub ks: Vec<usize>,
    /// Fusion weight per task (used by both fusions).
    pub fusion_weights: Vec<f32>,
    /// Item weights of Weighted Recall@K.
    pub item_weight: ItemWeight,
    /// Macro or micro averaging of Weighted Recall@K.
    pub averaging: Averaging,
    /// Group weighting of GAUC.
    pub gauc_weight: GroupWeight,
}

impl EvalConfig {
    /// The paper's defaults for `tasks`: K = 100 (and 10, 50), fusion weights 1, item weight
    /// from the deepest task, macro averaging, GAUC weighted by impressions.
    pub fn new(tasks: Vec<String>) -> Self {
        let n = tasks.len();
        Self {
            tasks,
            ks: vec![10, 50, 100],
            fusion_weights: vec![1.0; n],
            item_weight: ItemWeight::DeepestEvent,
            averaging: Averaging::Macro,
            gauc_weight: GroupWeight::Impressions,
        }
    }
}

/// Metrics of one task. A metric that cannot be computed (a single class) is `None`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskReport {
    /// Task name.
    pub name: String,
    /// Rows with a positive label.
    pub positives: u64,
    /// ROC AUC.
    pub auc: Option<f64>,
    /// Group AUC.
    pub gauc: Option<f64>,
    /// Groups used by GAUC.
    pub gauc_groups: usize,
    /// Mean log loss.
    pub logloss: f64,
    /// `mean(p) / mean(y)`.
    pub calibration: Option<f64>,
}

/// Weighted Recall@K under both fusions, keyed by K.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WrReport {
    /// Additive fusion: `K -> WR@K`.
    pub additive: BTreeMap<String, f64>,
    /// Multiplicative fusion: `K -> WR@K`.
    pub multiplicative: BTreeMap<String, f64>,
    /// Groups with positive item weight.
    pub groups_used: usize,
}

/// Everything the evaluator measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    /// Rows evaluated.
    pub rows: usize,
    /// One entry per task, in chain order.
    pub tasks: Vec<TaskReport>,
    /// Weighted Recall@K (absent without group ids, or when no group has positive weight).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wr_at_k: Option<WrReport>,
}

/// Accumulates predictions, then reports.
#[derive(Debug, Clone)]
pub struct StreamingEvaluator {
    config: EvalConfig,
    probs: Vec<Vec<f32>>,
    labels: Vec<Vec<f32>>,
    groups: Vec<u64>,
    grouped: Option<bool>,
}

impl StreamingEvaluator {
    /// An empty evaluator.
    pub fn new(config: EvalConfig) -> Result<Self> {
        let t = config.tasks.len();
        if t == 0 {
            return Err(MetricsError::Invalid(
                "the evaluator needs at least one task".into(),
            ));
        }
        same_len("fusion weights", t, config.fusion_weights.len())?;
        Ok(Self {
            probs: vec![Vec::new(); t],
            labels: vec![Vec::new(); t],
            groups: Vec::new(),
            grouped: None,
            config,
        })
    }

    /// Rows pushed so far.
    pub fn rows(&self) -> usize {
        self.groups.len().max(self.labels[0].len())
    }

    /// Adds a batch: `probs` and `labels` are `n x T` row-major; `groups` has `n` ids or is
    /// `None` for data without groups (then GAUC and WR@K are not computed). Every batch
    /// must agree on whether groups are given.
    pub fn push(&mut self, probs: &[f32], labels: &[f32], groups: Option<&[u64]>) -> Result<()> {
        let t = self.config.tasks.len();
        if !probs.len().is_multiple_of(t) {
            return Err(MetricsError::Invalid(format!(
                "{} probabilities is not a multiple of {t} tasks",
                probs.len()
            )));
        }
        let n = probs.len() / t;
        same_len("labels", probs.len(), labels.len())?;
        check_labels(labels)?;
        if let Some(i) = probs.iter().position(|p| !(0.0..=1.0).contains(p)) {
            return Err(MetricsError::InvalidScore {
                what: "probability",
                index: i,
                value: probs[i],
            });
        }
        match (self.grouped, groups) {
            (Some(true), None) | (Some(false), Some(_)) => {
                return Err(MetricsError::Invalid(
                    "every batch must give group ids, or none may".into(),
                ));
            }
            _ => {}
        }
        if let Some(g) = groups {
            same_len("groups", n, g.len())?;
            self.groups.extend_from_slice(g);
        }
        self.grouped = Some(groups.is_some());
        for k in 0..t {
            self.probs[k].extend((0..n).map(|i| probs[i * t + k]));
            self.labels[k].extend((0..n).map(|i| labels[i * t + k]));
        }
        Ok(())
    }

    /// Computes the report.
    pub fn report(&self) -> Result<EvalReport> {
        let rows = self.labels[0].len();
        if rows == 0 {
            return Err(MetricsError::Invalid("no rows were evaluated".into()));
        }
        let index = (!self.groups.is_empty()).then(|| GroupIndex::new(&self.groups));
        let mut tasks = Vec::with_capacity(self.config.tasks.len());
        for (k, name) in self.config.tasks.iter().enumerate() {
            let (p, y) = (&self.probs[k], &self.labels[k]);
            let gauc = index
                .as_ref()
                .and_then(|ix| gauc_grouped(p, y, ix, self.config.gauc_weight).ok());
            tasks.push(TaskReport {
                name: name.clone(),
                positives: y.iter().filter(|&&v| v == 1.0).count() as u64,
                auc: auc_unchecked(p, y).ok(),
                gauc: gauc.map(|g| g.value),
                gauc_groups: gauc.map_or(0, |g| g.groups_used),
                logloss: log_loss(p, y)?,
                calibration: calibration(p, y).ok(),
            });
        }
        let wr_at_k = match &index {
            None => None,
            Some(ix) => {
                let labels: Vec<&[f32]> = self.labels.iter().map(|v| v.as_slice()).collect();
                let probs: Vec<&[f32]> = self.probs.iter().map(|v| v.as_slice()).collect();
                let weights = self.config.item_weight.weights(&labels)?;
                compare_grouped(
                    &probs,
                    &weights,
                    ix,
                    &self.config.fusion_weights,
                    &self.config.ks,
                    self.config.averaging,
                )
                .ok()
                .map(|c| {
                    let map = |w: &crate::WeightedRecall| {
                        w.values.iter().map(|(k, v)| (k.to_string(), *v)).collect()
                    };
                    WrReport {
                        additive: map(&c.additive),
                        multiplicative: map(&c.multiplicative),
                        groups_used: c.additive.groups_used,
                    }
                })
            }
        };
        Ok(EvalReport {
            rows,
            tasks,
            wr_at_k,
        })
    }
}
