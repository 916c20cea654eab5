//! Score fusion: one ranking score from the probabilities of every task, in the two forms
//! the paper compares.
//!
//! ```text
//! additive:        s = sum_t a_t p_t
//! multiplicative:  s = prod_t q_t ^ a_t,   q_1 = p_1,  q_t = p_t / p_(t-1)
//! ```
//!
//! The heads of a chained model predict cumulative events over all impressions (click,
//! click-and-convert, ...), so the multiplicative baseline's factors are the conditional
//! probabilities: `q_2 = pCTCVR / pCTR = pCVR`, and `CTR^a CVR^b` is
//! `q_1^a q_2^b`. (A product over the raw heads would be `CTR^a CTCVR^b = CTR^(a+b) CVR^b`,
//! not the paper's baseline.) When `p_(t-1) = 0` the conditional is undefined and `q_t` is
//! taken as 0: an item that cannot pass an earlier stage ranks last. `q_t` is not clipped
//! at 1: a head without the monotone option may predict `p_t > p_(t-1)`.
//!
//! The paper found additive fusion better: in a product one tiny factor vetoes an item,
//! while a sum lets each task contribute on its own scale. [`compare_fusions`] ranks with
//! both and reports Weighted Recall@K for each; [`sweep_fusion_weights`] does it for a list
//! of weight vectors.

use serde::{Deserialize, Serialize};

use crate::error::{MetricsError, Result, check_scores, same_len};
use crate::groups::GroupIndex;
use crate::ranking::list_metrics_grouped;
use crate::weighted_recall::{Averaging, ItemWeight, WeightedRecall, check_weights};

/// The two fusion forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FusionKind {
    /// `sum_t a_t p_t`.
    Additive,
    /// `prod_t q_t ^ a_t` over the conditional probabilities `q_t = p_t / p_(t-1)`.
    Multiplicative,
}

impl FusionKind {
    /// Both forms, additive first.
    pub const ALL: [FusionKind; 2] = [FusionKind::Additive, FusionKind::Multiplicative];

    /// `"additive"` or `"multiplicative"`.
    pub fn name(self) -> &'static str {
        match self {
            FusionKind::Additive => "additive",
            FusionKind::Multiplicative => "multiplicative",
        }
    }
}

/// The fused score of one row: `p` holds the row's probability per task in chain order,
/// `weights` one weight per task (the caller checks the lengths agree).
#[inline]
pub fn fuse_row(p: &[f32], weights: &[f32], kind: FusionKind) -> f32 {
    match kind {
        FusionKind::Additive => p.iter().zip(weights).map(|(p, a)| a * p).sum(),
        FusionKind::Multiplicative => {
            let (mut s, mut prev) = (1.0f64, 1.0f64);
            for (&p, &a) in p.iter().zip(weights) {
                let p = p as f64;
                let q = if prev > 0.0 { p / prev } else { 0.0 };
                s *= q.powf(a as f64);
                prev = p;
            }
            s as f32
        }
    }
}

/// Fused scores from per-task probability columns (`probs[t][i]`) and one weight per task.
pub fn fuse(probs: &[&[f32]], weights: &[f32], kind: FusionKind) -> Result<Vec<f32>> {
    let first = probs
        .first()
        .ok_or_else(|| MetricsError::Invalid("no task probabilities".into()))?;
    same_len("fusion weights", probs.len(), weights.len())?;
    if let Some(i) = weights.iter().position(|w| !w.is_finite()) {
        return Err(MetricsError::Invalid(format!(
            "fusion weight {i} is {}, expected a finite number",
            weights[i]
        )));
    }
    for p in probs {
        same_len("task probabilities", first.len(), p.len())?;
    }
    let mut row = vec![0.0f32; probs.len()];
    Ok((0..first.len())
        .map(|i| {
            for (r, p) in row.iter_mut().zip(probs) {
                *r = p[i];
            }
            fuse_row(&row, weights, kind)
        })
        .collect())
}

/// Weighted Recall@K under additive and under multiplicative fusion.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FusionComparison {
    /// Ranking by `sum_t a_t p_t`.
    pub additive: WeightedRecall,
    /// Ranking by `prod_t q_t ^ a_t`.
    pub multiplicative: WeightedRecall,
}

/// Ranks every group's items by each fusion and evaluates WR@K for each (every row is an
/// item).
#[allow(clippy::too_many_arguments)]
pub fn compare_fusions(
    probs: &[&[f32]],
    labels: &[&[f32]],
    groups: &[u64],
    fusion_weights: &[f32],
    ks: &[usize],
    item_weight: &ItemWeight,
    averaging: Averaging,
) -> Result<FusionComparison> {
    let weights = item_weight.weights(labels)?;
    same_len("groups", weights.len(), groups.len())?;
    let index = GroupIndex::new(groups);
    let run = |kind| {
        wr_of(
            probs,
            &weights,
            &index,
            None,
            fusion_weights,
            kind,
            ks,
            averaging,
        )
    };
    Ok(FusionComparison {
        additive: run(FusionKind::Additive)?,
        multiplicative: run(FusionKind::Multiplicative)?,
    })
}

/// WR@K of one fused ranking.
#[allow(clippy::too_many_arguments)]
pub(crate) fn wr_of(
    probs: &[&[f32]],
    weights: &[f32],
    index: &GroupIndex,
    items: Option<&[u64]>,
    fusion_weights: &[f32],
    kind: FusionKind,
    ks: &[usize],
    averaging: Averaging,
) -> Result<WeightedRecall> {
    let s = fuse(probs, fusion_weights, kind)?;
    check_scores("fused score", &s)?;
    let m = list_metrics_grouped(&s, weights, index, items, ks, averaging)?;
    Ok(WeightedRecall {
        values: ks.iter().copied().zip(m.weighted_recall).collect(),
        groups_used: m.groups_used,
        groups_total: m.groups_total,
    })
}

/// WR@K of one weight vector of a sweep, under both forms.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepPoint {
    /// The fusion weights, one per task.
    pub weights: Vec<f32>,
    /// WR@K per K, additive fusion.
    pub additive: Vec<(usize, f64)>,
    /// WR@K per K, multiplicative fusion.
    pub multiplicative: Vec<(usize, f64)>,
}

/// Weighted Recall@K under both fusion forms for every weight vector of `sweep`.
/// `weights` are the row weights (see [`ItemWeight::row_weights`]); `items` merges
/// repeated impressions as in [`crate::list_metrics`].
#[allow(clippy::too_many_arguments)]
pub fn sweep_fusion_weights(
    probs: &[&[f32]],
    weights: &[f32],
    groups: &[u64],
    items: Option<&[u64]>,
    sweep: &[Vec<f32>],
    ks: &[usize],
    averaging: Averaging,
) -> Result<Vec<SweepPoint>> {
    same_len("groups", weights.len(), groups.len())?;
    if let Some(items) = items {
        same_len("items", weights.len(), items.len())?;
    }
    check_weights(weights)?;
    sweep_grouped(
        probs,
        weights,
        &GroupIndex::new(groups),
        items,
        sweep,
        ks,
        averaging,
    )
}

/// [`sweep_fusion_weights`] with a prepared grouping.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sweep_grouped(
    probs: &[&[f32]],
    weights: &[f32],
    index: &GroupIndex,
    items: Option<&[u64]>,
    sweep: &[Vec<f32>],
    ks: &[usize],
    averaging: Averaging,
) -> Result<Vec<SweepPoint>> {
    sweep
        .iter()
        .map(|w| {
            let run = |kind| {
                wr_of(probs, weights, index, items, w, kind, ks, averaging).map(|r| r.values)
            };
            Ok(SweepPoint {
                weights: w.clone(),
                additive: run(FusionKind::Additive)?,
                multiplicative: run(FusionKind::Multiplicative)?,
            })
        })
        .collect()
}
