//! Score fusion: one ranking score from the probabilities of every task.
//!
//! ```text
//! additive:        s = sum_t w_t p_t
//! multiplicative:  s = prod_t p_t ^ w_t
//! ```
//!
//! The paper found additive fusion better: in a product one tiny factor vetoes an item
//! (an item with an excellent conversion rate but a low click probability sinks), while a
//! sum lets each task contribute on its own scale. [`compare_fusions`] ranks with both and
//! reports Weighted Recall@K for each, so the comparison is one call.

use serde::Serialize;

use crate::error::{MetricsError, Result, same_len};
use crate::groups::GroupIndex;
use crate::weighted_recall::{Averaging, ItemWeight, WeightedRecall, weighted_recall_grouped};

/// The two fusion forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FusionKind {
    /// `sum_t w_t p_t`.
    Additive,
    /// `prod_t p_t ^ w_t`.
    Multiplicative,
}

/// Fused scores from per-task probability columns (`probs[t][i]`) and one weight per task.
pub fn fuse(probs: &[&[f32]], weights: &[f32], kind: FusionKind) -> Result<Vec<f32>> {
    let first = probs
        .first()
        .ok_or_else(|| MetricsError::Invalid("no task probabilities".into()))?;
    same_len("fusion weights", probs.len(), weights.len())?;
    for p in probs {
        same_len("task probabilities", first.len(), p.len())?;
    }
    Ok((0..first.len())
        .map(|i| match kind {
            FusionKind::Additive => probs.iter().zip(weights).map(|(p, w)| w * p[i]).sum(),
            FusionKind::Multiplicative => probs
                .iter()
                .zip(weights)
                .map(|(p, w)| p[i].powf(*w))
                .product(),
        })
        .collect())
}

/// Weighted Recall@K under additive and under multiplicative fusion.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FusionComparison {
    /// Ranking by `sum_t w_t p_t`.
    pub additive: WeightedRecall,
    /// Ranking by `prod_t p_t ^ w_t`.
    pub multiplicative: WeightedRecall,
}

/// Ranks every group's items by each fusion and evaluates WR@K for each.
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
    if let Some(i) = weights.iter().position(|w| !(w.is_finite() && *w >= 0.0)) {
        return Err(MetricsError::InvalidScore {
            what: "item weight",
            index: i,
            value: weights[i],
        });
    }
    let index = GroupIndex::new(groups);
    compare_grouped(probs, &weights, &index, fusion_weights, ks, averaging)
}

/// [`compare_fusions`] with item weights and grouping prepared.
pub(crate) fn compare_grouped(
    probs: &[&[f32]],
    weights: &[f32],
    index: &GroupIndex,
    fusion_weights: &[f32],
    ks: &[usize],
    averaging: Averaging,
) -> Result<FusionComparison> {
    let run = |kind| {
        let s = fuse(probs, fusion_weights, kind)?;
        crate::error::check_scores("fused score", &s)?;
        weighted_recall_grouped(&s, weights, index, ks, averaging)
    };
    Ok(FusionComparison {
        additive: run(FusionKind::Additive)?,
        multiplicative: run(FusionKind::Multiplicative)?,
    })
}
