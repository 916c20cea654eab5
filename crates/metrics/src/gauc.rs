//! Group AUC: the AUC inside each group (a search request, a session, a user), averaged
//! with a weight per group. Ranking is judged inside a request, never across requests, so
//! GAUC measures what a ranker is used for better than the global AUC does.
//!
//! ```text
//! GAUC = sum_g w_g AUC_g / sum_g w_g,   w_g = impressions of g (or clicks of g)
//! ```
//!
//! Groups whose labels are all 0 or all 1 have no AUC and are skipped; the result says how
//! many groups were used.

use serde::Serialize;

use crate::auc::score_key;
use crate::error::{MetricsError, Result, check_labels, check_scores, same_len};
use crate::groups::GroupIndex;

/// How groups are weighted in the average.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupWeight {
    /// By the number of rows (impressions) of the group: the usual choice.
    Impressions,
    /// By the number of positive rows (clicks) of the group.
    Clicks,
}

/// A GAUC value and how much of the data it covers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Gauc {
    /// The weighted mean of the per-group AUCs.
    pub value: f64,
    /// Groups with both classes (the ones averaged).
    pub groups_used: usize,
    /// All groups.
    pub groups_total: usize,
}

/// AUC of the rows `rows`, or `None` when they hold a single class. `keyed` is scratch.
pub(crate) fn group_auc(
    scores: &[f32],
    labels: &[f32],
    rows: &[u32],
    keyed: &mut Vec<(u32, bool)>,
) -> Option<f64> {
    keyed.clear();
    keyed.extend(
        rows.iter()
            .map(|&i| (score_key(scores[i as usize]), labels[i as usize] == 1.0)),
    );
    let p = keyed.iter().filter(|k| k.1).count() as u64;
    let n = keyed.len() as u64 - p;
    if p == 0 || n == 0 {
        return None;
    }
    keyed.sort_unstable_by_key(|k| k.0);
    let (mut below, mut twice) = (0u128, 0u128);
    let mut i = 0;
    while i < keyed.len() {
        let mut j = i;
        let (mut bp, mut bn) = (0u128, 0u128);
        while j < keyed.len() && keyed[j].0 == keyed[i].0 {
            if keyed[j].1 {
                bp += 1
            } else {
                bn += 1
            }
            j += 1;
        }
        twice += 2 * below * bp + bp * bn;
        below += bn;
        i = j;
    }
    Some(twice as f64 / (2.0 * p as f64 * n as f64))
}

/// GAUC of `scores` against 0/1 `labels`, grouped by `groups`.
///
/// Errors: lengths differ, a label is not 0 or 1, a score is NaN, or no group has both
/// classes.
pub fn gauc(scores: &[f32], labels: &[f32], groups: &[u64], weight: GroupWeight) -> Result<Gauc> {
    same_len("labels", scores.len(), labels.len())?;
    same_len("groups", scores.len(), groups.len())?;
    check_labels(labels)?;
    check_scores("score", scores)?;
    gauc_grouped(scores, labels, &GroupIndex::new(groups), weight)
}

/// [`gauc`] on validated inputs and a prepared grouping.
pub(crate) fn gauc_grouped(
    scores: &[f32],
    labels: &[f32],
    index: &GroupIndex,
    weight: GroupWeight,
) -> Result<Gauc> {
    let mut keyed = Vec::new();
    let (mut num, mut den, mut used) = (0.0f64, 0.0f64, 0usize);
    for rows in index.iter() {
        if let Some(a) = group_auc(scores, labels, rows, &mut keyed) {
            let w = match weight {
                GroupWeight::Impressions => rows.len() as f64,
                GroupWeight::Clicks => {
                    rows.iter().filter(|&&i| labels[i as usize] == 1.0).count() as f64
                }
            };
            num += w * a;
            den += w;
            used += 1;
        }
    }
    if used == 0 {
        let p = labels.iter().filter(|&&y| y == 1.0).count() as u64;
        return Err(MetricsError::SingleClass {
            what: "gauc (no group has both classes)",
            positives: p,
            negatives: labels.len() as u64 - p,
        });
    }
    Ok(Gauc {
        value: num / den,
        groups_used: used,
        groups_total: index.len(),
    })
}
