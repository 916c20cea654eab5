//! Weighted Recall@K, the paper's offline metric for a ranking stage.
//!
//! The paper introduces it because it tracks the online business metric (orders per
//! user; Pearson 0.788 for two-target and 0.867 for three-target models) far better than
//! Recall@K, NDCG or list AUC. The exact formula is not in the material we have; this is
//! our reconstruction, configurable where the paper is silent:
//!
//! ```text
//! for each group q (a search request), rank its items by the fused score, best first;
//! W_qi  = the item's weight of collective feedback (default: the count of its deepest
//!         positive event, i.e. its order label; optionally a weighted mix of task labels)
//! WR@K(q) = sum of W over the top K / sum of W over all items of q
//! groups with sum W = 0 are skipped;
//! WR@K = mean over groups (macro, default) or sum of top-K weight / sum of all weight
//!        over groups (micro)
//! ```
//!
//! Ties: items with equal scores are in no particular order, so the value is the
//! expectation over their orders: a block of tied items straddling position K contributes
//! its weight times the fraction of the block that fits above K. The metric is then
//! exactly invariant to the input order.

use serde::Serialize;

use crate::auc::score_key;
use crate::error::{MetricsError, Result, check_scores, same_len};
use crate::groups::GroupIndex;

/// How the per-group values are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Averaging {
    /// Mean of the per-group recalls: every request counts the same.
    Macro,
    /// Pooled: total top-K weight over total weight: heavy requests count more.
    Micro,
}

/// Where an item's weight comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemWeight {
    /// The label of the last (deepest) task in the chain, e.g. orders.
    DeepestEvent,
    /// `sum_t c_t label_t`, one coefficient per task.
    Mix(Vec<f32>),
}

impl ItemWeight {
    /// Each item's weight, from per-task label columns (`labels[t][i]`).
    pub fn weights(&self, labels: &[&[f32]]) -> Result<Vec<f32>> {
        let last = labels
            .last()
            .ok_or_else(|| MetricsError::Invalid("no task labels".into()))?;
        for l in labels {
            same_len("task labels", last.len(), l.len())?;
        }
        match self {
            ItemWeight::DeepestEvent => Ok(last.to_vec()),
            ItemWeight::Mix(c) => {
                same_len("item weight coefficients", labels.len(), c.len())?;
                Ok((0..last.len())
                    .map(|i| labels.iter().zip(c).map(|(l, c)| c * l[i]).sum())
                    .collect())
            }
        }
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
/// `groups`, for every K in `ks`.
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
    same_len("weights", scores.len(), weights.len())?;
    same_len("groups", scores.len(), groups.len())?;
    check_scores("score", scores)?;
    if let Some(i) = weights.iter().position(|w| !(w.is_finite() && *w >= 0.0)) {
        return Err(MetricsError::InvalidScore {
            what: "item weight",
            index: i,
            value: weights[i],
        });
    }
    weighted_recall_grouped(scores, weights, &GroupIndex::new(groups), ks, averaging)
}

/// [`weighted_recall_at_k`] on validated inputs and a prepared grouping.
pub(crate) fn weighted_recall_grouped(
    scores: &[f32],
    weights: &[f32],
    index: &GroupIndex,
    ks: &[usize],
    averaging: Averaging,
) -> Result<WeightedRecall> {
    if ks.is_empty() || ks.contains(&0) {
        return Err(MetricsError::Invalid(format!(
            "K must be at least 1, got {ks:?}"
        )));
    }
    let mut sums = vec![0.0f64; ks.len()]; // macro: sum of ratios; micro: sum of top-K weight
    let (mut total_weight, mut used) = (0.0f64, 0usize);
    let mut ranked: Vec<(u32, f32)> = Vec::new();
    for rows in index.iter() {
        let group_weight: f64 = rows.iter().map(|&i| weights[i as usize] as f64).sum();
        if group_weight <= 0.0 {
            continue;
        }
        used += 1;
        total_weight += group_weight;
        // Best first: descending score key.
        ranked.clear();
        ranked.extend(rows.iter().map(|&i| {
            (
                u32::MAX - score_key(scores[i as usize]),
                weights[i as usize],
            )
        }));
        ranked.sort_unstable_by_key(|r| r.0);
        for (s, &k) in sums.iter_mut().zip(ks) {
            let top = top_k_weight(&ranked, k);
            *s += match averaging {
                Averaging::Macro => top / group_weight,
                Averaging::Micro => top,
            };
        }
    }
    if used == 0 {
        return Err(MetricsError::Invalid(
            "weighted recall: no group has positive item weight".into(),
        ));
    }
    let values = ks
        .iter()
        .zip(&sums)
        .map(|(&k, &s)| {
            (
                k,
                match averaging {
                    Averaging::Macro => s / used as f64,
                    Averaging::Micro => s / total_weight,
                },
            )
        })
        .collect();
    Ok(WeightedRecall {
        values,
        groups_used: used,
        groups_total: index.len(),
    })
}

/// Expected weight of the top `k` items of `ranked` (sorted best first), ties in random
/// order.
fn top_k_weight(ranked: &[(u32, f32)], k: usize) -> f64 {
    let (mut taken, mut sum, mut i) = (0usize, 0.0f64, 0usize);
    while i < ranked.len() && taken < k {
        let mut j = i;
        let mut block = 0.0f64;
        while j < ranked.len() && ranked[j].0 == ranked[i].0 {
            block += ranked[j].1 as f64;
            j += 1;
        }
        let size = j - i;
        let fits = (k - taken).min(size);
        sum += block * fits as f64 / size as f64;
        taken += fits;
        i = j;
    }
    sum
}
