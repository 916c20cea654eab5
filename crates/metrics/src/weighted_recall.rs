//! Weighted Recall@K, the paper's offline metric for a ranking stage, and the item weights
//! it is computed with.
//!
//! The paper introduces it because it tracks the online business metric (orders per
//! user; Pearson 0.788 for two-target and 0.867 for three-target models) far better than
//! Recall@K, NDCG or list AUC:
//!
//! ```text
//! for each group q (a search request), rank its candidate items by the fused score;
//! W_qi    = the item's weight of collective feedback: by default the count of its deepest
//!           positive event (orders) summed over the group's impressions of that item;
//!           or a weight column; or a weighted mix of the task labels
//! WR@K(q) = sum of W over the top K items / sum of W over all items of q
//! groups with sum W = 0 are skipped;
//! WR@K    = mean over groups (macro, default) or sum of top-K weight / sum of all weight
//!           over groups (micro)
//! ```
//!
//! The engine, with Recall@K, NDCG@K and list AUC beside it, is in [`crate::ranking`];
//! [`weighted_recall_at_k`] is its one-metric front door for rows that are items.

use serde::{Deserialize, Serialize};

use crate::error::{MetricsError, Result, same_len};
use crate::ranking::list_metrics;

/// How the per-group values are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Averaging {
    /// Mean of the per-group values: every request counts the same.
    Macro,
    /// Pooled: total numerator over total denominator: heavy requests count more.
    Micro,
}

/// Where an item's weight (its collective feedback) comes from. Whatever the source, an
/// item shown several times in one group gets the sum over those impressions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemWeight {
    /// The label of the last (deepest) task in the chain, e.g. orders: summed over an
    /// item's impressions it is the count of its deepest positive event (the paper's
    /// weight).
    DeepestEvent,
    /// A per-row weight column given with the rows (e.g. the order count or GMV of the
    /// impression).
    Column,
    /// `sum_t c_t label_t`, one coefficient per task.
    Mix(Vec<f32>),
}

impl ItemWeight {
    /// Each row's weight, from per-task label columns (`labels[t][i]`) and, for
    /// [`ItemWeight::Column`], the weight column.
    pub fn row_weights(&self, labels: &[&[f32]], column: Option<&[f32]>) -> Result<Vec<f32>> {
        let last = labels
            .last()
            .ok_or_else(|| MetricsError::Invalid("no task labels".into()))?;
        for l in labels {
            same_len("task labels", last.len(), l.len())?;
        }
        let w = match self {
            ItemWeight::DeepestEvent => last.to_vec(),
            ItemWeight::Column => {
                let c = column.ok_or_else(|| {
                    MetricsError::Invalid(
                        "item weights from a weight column, but the rows carry no weight column"
                            .into(),
                    )
                })?;
                same_len("weight column", last.len(), c.len())?;
                c.to_vec()
            }
            ItemWeight::Mix(c) => {
                same_len("item weight coefficients", labels.len(), c.len())?;
                if let Some(i) = c.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
                    return Err(MetricsError::Invalid(format!(
                        "item weight coefficient {i} is {}, expected a finite value >= 0",
                        c[i]
                    )));
                }
                (0..last.len())
                    .map(|i| labels.iter().zip(c).map(|(l, c)| c * l[i]).sum())
                    .collect()
            }
        };
        check_weights(&w)?;
        Ok(w)
    }

    /// [`ItemWeight::row_weights`] without a weight column.
    pub fn weights(&self, labels: &[&[f32]]) -> Result<Vec<f32>> {
        self.row_weights(labels, None)
    }
}

/// Checks that every item weight is finite and not negative.
pub(crate) fn check_weights(weights: &[f32]) -> Result<()> {
    match weights.iter().position(|w| !(w.is_finite() && *w >= 0.0)) {
        Some(index) => Err(MetricsError::InvalidScore {
            what: "item weight",
            index,
            value: weights[index],
        }),
        None => Ok(()),
    }
}

/// WR@K for several K at once.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeightedRecall {
    /// `(K, WR@K)`, in the order the Ks were asked for.
    pub values: Vec<(usize, f64)>,
    /// Groups with positive total weight (the ones that count).
    pub groups_used: usize,
    /// All groups.
    pub groups_total: usize,
}

/// Weighted Recall@K of `scores` (higher is ranked first) with item `weights`, grouped by
/// `groups`, for every K in `ks`; every row is its own item (see
/// [`crate::list_metrics`] to merge repeated impressions of an item).
///
/// Errors: lengths differ, a score is NaN, a weight is negative or not finite, a K is 0,
/// or no group has positive weight.
pub fn weighted_recall_at_k(
    scores: &[f32],
    weights: &[f32],
    groups: &[u64],
    ks: &[usize],
    averaging: Averaging,
) -> Result<WeightedRecall> {
    let m = list_metrics(scores, weights, groups, None, ks, averaging)?;
    Ok(WeightedRecall {
        values: ks.iter().copied().zip(m.weighted_recall).collect(),
        groups_used: m.groups_used,
        groups_total: m.groups_total,
    })
}
