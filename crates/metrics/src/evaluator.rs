//! A streaming evaluator: push predictions batch by batch during evaluation, then get one
//! report with every metric per task, and the list metrics (Weighted Recall@K, Recall@K,
//! NDCG@K, list AUC) of the fused ranking, under both fusion forms and over a sweep of
//! fusion weights.
//!
//! It keeps, per row, one probability and one label per task and the group id (9 bytes
//! per task plus 8), plus the item id and the weight when given: 10 million rows of two
//! tasks take about 260 MB.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::auc::auc_unchecked;
use crate::error::{MetricsError, Result, check_labels, same_len};
use crate::fusion::{FusionKind, SweepPoint, fuse, sweep_grouped, wr_of};
use crate::gauc::{GroupWeight, gauc_grouped};
use crate::groups::GroupIndex;
use crate::logloss::{calibration, log_loss};
use crate::ranking::list_metrics_grouped;
use crate::weighted_recall::{Averaging, ItemWeight};

/// What the evaluator computes.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalConfig {
    /// Task names in chain order.
    pub tasks: Vec<String>,
    /// The Ks of the list metrics.
    pub ks: Vec<usize>,
    /// Fusion weight per task (used by both fusions).
    pub fusion_weights: Vec<f32>,
    /// The fusion whose ranking Recall@K, NDCG@K and list AUC are reported for (WR@K is
    /// reported for both).
    pub fusion: FusionKind,
    /// Further fusion weight vectors to report WR@K for, under both forms.
    pub fusion_sweep: Vec<Vec<f32>>,
    /// Item weights of Weighted Recall@K.
    pub item_weight: ItemWeight,
    /// Name of the categorical field that identifies an item: the caller passes its ids
    /// with each batch so that repeated impressions of an item in a group are merged.
    /// `None`: every row is an item.
    pub item_field: Option<String>,
    /// Macro or micro averaging of the list metrics.
    pub averaging: Averaging,
    /// Group weighting of GAUC.
    pub gauc_weight: GroupWeight,
}

impl EvalConfig {
    /// The paper's defaults for `tasks`: K = 100 (and 10, 50), fusion weights 1, additive
    /// fusion, item weight from the deepest task, macro averaging, GAUC weighted by
    /// impressions.
    pub fn new(tasks: Vec<String>) -> Self {
        let n = tasks.len();
        Self {
            tasks,
            ks: vec![10, 50, 100],
            fusion_weights: vec![1.0; n],
            fusion: FusionKind::Additive,
            fusion_sweep: Vec::new(),
            item_weight: ItemWeight::DeepestEvent,
            item_field: None,
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

/// The list metrics of the fused ranking, keyed by K.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WrReport {
    /// WR@K, additive fusion: `K -> WR@K`.
    pub additive: BTreeMap<String, f64>,
    /// WR@K, multiplicative fusion (over conditional probabilities): `K -> WR@K`.
    pub multiplicative: BTreeMap<String, f64>,
    /// Groups with positive item weight.
    pub groups_used: usize,
    /// All groups.
    pub groups_total: usize,
    /// The fusion the next three metrics rank by.
    pub fusion: FusionKind,
    /// The fusion weights used.
    pub fusion_weights: Vec<f32>,
    /// Macro or micro.
    pub averaging: Averaging,
    /// Recall@K: `K -> value`.
    pub recall: BTreeMap<String, f64>,
    /// NDCG@K (gain = item weight): `K -> value`.
    pub ndcg: BTreeMap<String, f64>,
    /// Mean list AUC over groups with relevant and irrelevant items.
    pub list_auc: Option<f64>,
    /// WR@K for each weight vector of the sweep (empty without one).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sweep: Vec<SweepReport>,
}

/// WR@K of one weight vector of a fusion sweep.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepReport {
    /// The fusion weights, one per task.
    pub weights: Vec<f32>,
    /// Additive fusion: `K -> WR@K`.
    pub additive: BTreeMap<String, f64>,
    /// Multiplicative fusion: `K -> WR@K`.
    pub multiplicative: BTreeMap<String, f64>,
}

/// Everything the evaluator measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    /// Rows evaluated.
    pub rows: usize,
    /// One entry per task, in chain order.
    pub tasks: Vec<TaskReport>,
    /// The list metrics (absent without group ids, or when no group has positive weight).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wr_at_k: Option<WrReport>,
    /// Why some values are undefined or less informative than they look (degenerate
    /// groups, K beyond every group, ...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// One batch of rows for [`StreamingEvaluator::push_rows`].
#[derive(Debug, Clone, Copy)]
pub struct EvalBatch<'a> {
    /// `n x T` probabilities, row-major.
    pub probs: &'a [f32],
    /// `n x T` 0/1 labels, row-major.
    pub labels: &'a [f32],
    /// `n` group ids, or `None` for data without groups (no GAUC, no list metrics).
    pub groups: Option<&'a [u64]>,
    /// `n` item ids (repeated impressions of an item in a group are merged), or `None`.
    pub items: Option<&'a [u64]>,
    /// `n` row weights (for [`ItemWeight::Column`]), or `None`.
    pub weights: Option<&'a [f32]>,
}

fn keyed(values: impl IntoIterator<Item = (usize, f64)>) -> BTreeMap<String, f64> {
    values
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// Accumulates predictions, then reports.
#[derive(Debug, Clone)]
pub struct StreamingEvaluator {
    config: EvalConfig,
    probs: Vec<Vec<f32>>,
    labels: Vec<Vec<f32>>,
    groups: Vec<u64>,
    items: Vec<u64>,
    weights: Vec<f32>,
    /// Whether batches carry (groups, items, weights); fixed by the first batch.
    shape: Option<(bool, bool, bool)>,
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
        for w in &config.fusion_sweep {
            same_len("fusion sweep weights", t, w.len())?;
        }
        if let Some(w) = config
            .fusion_weights
            .iter()
            .chain(config.fusion_sweep.iter().flatten())
            .find(|w| !w.is_finite())
        {
            return Err(MetricsError::Invalid(format!(
                "fusion weight {w} is not a finite number"
            )));
        }
        if config.ks.is_empty() || config.ks.contains(&0) {
            return Err(MetricsError::Invalid(format!(
                "K must be at least 1, got {:?}",
                config.ks
            )));
        }
        if let ItemWeight::Mix(c) = &config.item_weight {
            same_len("item weight coefficients", t, c.len())?;
        }
        Ok(Self {
            probs: vec![Vec::new(); t],
            labels: vec![Vec::new(); t],
            groups: Vec::new(),
            items: Vec::new(),
            weights: Vec::new(),
            shape: None,
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &EvalConfig {
        &self.config
    }

    /// Rows pushed so far.
    pub fn rows(&self) -> usize {
        self.labels[0].len()
    }

    /// Adds a batch: `probs` and `labels` are `n x T` row-major; `groups` has `n` ids or is
    /// `None` for data without groups (then GAUC and the list metrics are not computed).
    /// Every batch must agree on whether groups are given.
    pub fn push(&mut self, probs: &[f32], labels: &[f32], groups: Option<&[u64]>) -> Result<()> {
        self.push_rows(EvalBatch {
            probs,
            labels,
            groups,
            items: None,
            weights: None,
        })
    }

    /// Adds a batch with optional item ids and row weights. Every batch must agree on which
    /// of groups, items and weights it gives.
    pub fn push_rows(&mut self, b: EvalBatch<'_>) -> Result<()> {
        let t = self.config.tasks.len();
        if !b.probs.len().is_multiple_of(t) {
            return Err(MetricsError::Invalid(format!(
                "{} probabilities is not a multiple of {t} tasks",
                b.probs.len()
            )));
        }
        let n = b.probs.len() / t;
        same_len("labels", b.probs.len(), b.labels.len())?;
        check_labels(b.labels)?;
        if let Some(i) = b.probs.iter().position(|p| !(0.0..=1.0).contains(p)) {
            return Err(MetricsError::InvalidScore {
                what: "probability",
                index: i,
                value: b.probs[i],
            });
        }
        let shape = (b.groups.is_some(), b.items.is_some(), b.weights.is_some());
        if self.shape.is_some_and(|s| s != shape) {
            return Err(MetricsError::Invalid(
                "every batch must give the same columns (group ids, item ids, weights)".into(),
            ));
        }
        if let Some(g) = b.groups {
            same_len("groups", n, g.len())?;
        }
        if let Some(i) = b.items {
            same_len("items", n, i.len())?;
        }
        if let Some(w) = b.weights {
            same_len("weights", n, w.len())?;
            crate::weighted_recall::check_weights(w)?;
        }
        self.shape = Some(shape);
        self.groups.extend_from_slice(b.groups.unwrap_or(&[]));
        self.items.extend_from_slice(b.items.unwrap_or(&[]));
        self.weights.extend_from_slice(b.weights.unwrap_or(&[]));
        for k in 0..t {
            self.probs[k].extend((0..n).map(|i| b.probs[i * t + k]));
            self.labels[k].extend((0..n).map(|i| b.labels[i * t + k]));
        }
        Ok(())
    }

    /// Computes the report.
    pub fn report(&self) -> Result<EvalReport> {
        let rows = self.labels[0].len();
        if rows == 0 {
            return Err(MetricsError::Invalid("no rows were evaluated".into()));
        }
        let mut warnings = Vec::new();
        let index = (!self.groups.is_empty()).then(|| GroupIndex::new(&self.groups));
        let mut tasks = Vec::with_capacity(self.config.tasks.len());
        for (k, name) in self.config.tasks.iter().enumerate() {
            let (p, y) = (&self.probs[k], &self.labels[k]);
            let gauc = index
                .as_ref()
                .and_then(|ix| gauc_grouped(p, y, ix, self.config.gauc_weight).ok());
            let auc = auc_unchecked(p, y).ok();
            if auc.is_none() {
                warnings.push(format!("task {name}: a single class: AUC is undefined"));
            }
            match (&index, gauc) {
                (Some(_), None) => warnings.push(format!(
                    "task {name}: no group has both classes: GAUC is undefined"
                )),
                (Some(ix), Some(g)) if g.groups_used < ix.len() / 2 => warnings.push(format!(
                    "task {name}: GAUC averages only {} of {} groups (the others have a single class)",
                    g.groups_used,
                    ix.len()
                )),
                _ => {}
            }
            tasks.push(TaskReport {
                name: name.clone(),
                positives: y.iter().filter(|&&v| v == 1.0).count() as u64,
                auc,
                gauc: gauc.map(|g| g.value),
                gauc_groups: gauc.map_or(0, |g| g.groups_used),
                logloss: log_loss(p, y)?,
                calibration: calibration(p, y).ok(),
            });
        }
        let wr_at_k = match &index {
            None => None,
            Some(ix) => self.list_report(ix, &mut warnings)?,
        };
        Ok(EvalReport {
            rows,
            tasks,
            wr_at_k,
            warnings,
        })
    }

    /// The list metrics of the fused rankings, or `None` (with a warning) when no group has
    /// positive item weight.
    fn list_report(&self, ix: &GroupIndex, warnings: &mut Vec<String>) -> Result<Option<WrReport>> {
        let c = &self.config;
        let labels: Vec<&[f32]> = self.labels.iter().map(|v| v.as_slice()).collect();
        let probs: Vec<&[f32]> = self.probs.iter().map(|v| v.as_slice()).collect();
        let column = (!self.weights.is_empty()).then_some(self.weights.as_slice());
        let weights = c.item_weight.row_weights(&labels, column)?;
        let items = (!self.items.is_empty()).then_some(self.items.as_slice());
        if weights.iter().all(|&w| w == 0.0) {
            warnings.push(
                "no item has positive weight: WR@K, Recall@K, NDCG@K and list AUC are undefined"
                    .into(),
            );
            return Ok(None);
        }
        let fused = fuse(&probs, &c.fusion_weights, c.fusion)?;
        crate::error::check_scores("fused score", &fused)?;
        let main = list_metrics_grouped(&fused, &weights, ix, items, &c.ks, c.averaging)?;
        warnings.extend(main.warnings());
        let wr = |kind| {
            wr_of(
                &probs,
                &weights,
                ix,
                items,
                &c.fusion_weights,
                kind,
                &c.ks,
                c.averaging,
            )
            .map(|w| keyed(w.values))
        };
        let sweep: Vec<SweepPoint> = sweep_grouped(
            &probs,
            &weights,
            ix,
            items,
            &c.fusion_sweep,
            &c.ks,
            c.averaging,
        )?;
        Ok(Some(WrReport {
            additive: wr(FusionKind::Additive)?,
            multiplicative: wr(FusionKind::Multiplicative)?,
            groups_used: main.groups_used,
            groups_total: main.groups_total,
            fusion: c.fusion,
            fusion_weights: c.fusion_weights.clone(),
            averaging: c.averaging,
            recall: keyed(c.ks.iter().copied().zip(main.recall.iter().copied())),
            ndcg: keyed(c.ks.iter().copied().zip(main.ndcg.iter().copied())),
            list_auc: main.list_auc,
            sweep: sweep
                .into_iter()
                .map(|p| SweepReport {
                    weights: p.weights,
                    additive: keyed(p.additive),
                    multiplicative: keyed(p.multiplicative),
                })
                .collect(),
        }))
    }
}
