//! List metrics of one ranking per group: Weighted Recall@K (the paper's metric), and the
//! metrics the paper compares it with, Recall@K, NDCG@K and list AUC.
//!
//! A group (a search request) holds candidate *items*. When the rows carry an item id, the
//! rows of one item in one group (repeated impressions) are merged first: the item's
//! weight is the sum of their weights and its score the highest of their scores (the
//! impressions of an item in a request share its features, so the scores normally agree).
//! Without item ids every row is an item. Then, with `W_i >= 0` the item weights, items
//! ranked best first, `r = 1, 2, ...` the rank and `rel_i = [W_i > 0]`:
//!
//! ```text
//! WR@K(q)     = sum_{r <= K} W_r / sum_i W_i
//! Recall@K(q) = #{r <= K: rel_r} / #{i: rel_i}
//! NDCG@K(q)   = DCG@K / IDCG@K,  DCG@K = sum_{r <= K} W_r / log2(r + 1),
//!               IDCG@K = the DCG@K of the items sorted by W, largest first
//! ListAUC(q)  = AUC of the scores against rel inside q (groups with both kinds only)
//! ```
//!
//! Groups with zero total weight are skipped by every metric. Macro averaging takes the
//! mean of the per-group values; micro pools numerators and denominators over groups
//! (list AUC is always the plain mean over groups that have one).
//!
//! Ties: equally scored items are in no particular order, so every value is the
//! expectation over their orders. A block of `s` tied items at ranks `a+1 ..= a+s`
//! contributes, at each of those ranks, the block's mean weight (and mean relevance): the
//! metrics are exactly invariant to the input order.

use serde::Serialize;

use crate::auc::score_key;
use crate::error::{MetricsError, Result, check_scores, same_len};
use crate::groups::GroupIndex;
use crate::weighted_recall::{Averaging, check_weights};

/// Every list metric for several K at once (values in the order the Ks were asked for).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListMetrics {
    /// The Ks.
    pub ks: Vec<usize>,
    /// Weighted Recall@K per K.
    pub weighted_recall: Vec<f64>,
    /// Recall@K per K.
    pub recall: Vec<f64>,
    /// NDCG@K per K (gain = item weight).
    pub ndcg: Vec<f64>,
    /// Mean list AUC over the groups that have both relevant and irrelevant items.
    pub list_auc: Option<f64>,
    /// Groups averaged by list AUC.
    pub list_auc_groups: usize,
    /// Groups with positive total weight (the ones that count).
    pub groups_used: usize,
    /// All groups.
    pub groups_total: usize,
    /// Groups skipped because no item has weight.
    pub zero_weight_groups: usize,
    /// Groups (among those used) with a single candidate item: every metric is 1 there
    /// whatever the scores.
    pub single_item_groups: usize,
    /// Candidates in the largest group (after merging impressions of the same item).
    pub largest_group: usize,
}

impl ListMetrics {
    /// Plain-language warnings about groups that make the values less informative.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.zero_weight_groups > 0 {
            w.push(format!(
                "{} of {} groups have no positive item weight and are skipped by WR@K, Recall@K and NDCG@K",
                self.zero_weight_groups, self.groups_total
            ));
        }
        if self.single_item_groups > 0 {
            w.push(format!(
                "{} of {} groups used have a single candidate: their WR@K, Recall@K and NDCG@K are 1 whatever the ranking{}",
                self.single_item_groups,
                self.groups_used,
                if self.single_item_groups == self.groups_used {
                    " (every group: these list metrics say nothing; is the group column right?)"
                } else {
                    ""
                }
            ));
        }
        if let Some(&k) = self.ks.iter().find(|&&k| k >= self.largest_group) {
            w.push(format!(
                "K = {k} is at least the largest group ({} candidates): WR@{k}, Recall@{k} and NDCG@{k} are 1 by construction",
                self.largest_group
            ));
        }
        if self.list_auc.is_none() {
            w.push("no group has both relevant and irrelevant items: list AUC is undefined".into());
        }
        w
    }
}

/// One group's candidates, best first: `(descending score key, weight)`.
type Ranked = Vec<(u32, f64)>;

/// Merges a group's rows into items (when `items` is given) and sorts them best first.
fn rank_group(
    rows: &[u32],
    scores: &[f32],
    weights: &[f32],
    items: Option<&[u64]>,
    scratch: &mut Vec<(u64, u32, f64)>,
    ranked: &mut Ranked,
) {
    ranked.clear();
    let key = |i: usize| u32::MAX - score_key(scores[i]);
    match items {
        None => ranked.extend(
            rows.iter()
                .map(|&i| (key(i as usize), weights[i as usize] as f64)),
        ),
        Some(items) => {
            scratch.clear();
            scratch.extend(rows.iter().map(|&i| {
                let i = i as usize;
                (items[i], key(i), weights[i] as f64)
            }));
            scratch.sort_unstable_by_key(|r| r.0);
            let mut j = 0;
            while j < scratch.len() {
                let (item, mut best, mut w) = scratch[j];
                j += 1;
                while j < scratch.len() && scratch[j].0 == item {
                    best = best.min(scratch[j].1); // the smaller key is the higher score
                    w += scratch[j].2;
                    j += 1;
                }
                ranked.push((best, w));
            }
        }
    }
    ranked.sort_unstable_by_key(|r| r.0);
}

/// `disc[r] = sum_{i < r} 1 / log2(i + 2)`: the DCG discount of the first `r` ranks.
fn grow_discounts(disc: &mut Vec<f64>, upto: usize) {
    if disc.is_empty() {
        disc.push(0.0);
    }
    while disc.len() <= upto {
        let r = disc.len() - 1; // 0-based rank being added
        let last = disc[r];
        disc.push(last + 1.0 / ((r + 2) as f64).log2());
    }
}

/// Per-group numerators and denominators of the three top-K metrics.
struct GroupValues {
    top_weight: Vec<f64>,
    top_relevant: Vec<f64>,
    dcg: Vec<f64>,
    idcg: Vec<f64>,
    weight: f64,
    relevant: f64,
    auc: Option<f64>,
}

fn group_values(
    ranked: &Ranked,
    ks: &[usize],
    disc: &mut Vec<f64>,
    sorted_w: &mut Vec<f64>,
) -> GroupValues {
    let n = ranked.len();
    let kmax = ks.iter().copied().max().unwrap_or(0).min(n);
    grow_discounts(disc, kmax);
    let mut v = GroupValues {
        top_weight: vec![0.0; ks.len()],
        top_relevant: vec![0.0; ks.len()],
        dcg: vec![0.0; ks.len()],
        idcg: vec![0.0; ks.len()],
        weight: ranked.iter().map(|r| r.1).sum(),
        relevant: ranked.iter().filter(|r| r.1 > 0.0).count() as f64,
        auc: None,
    };
    let negatives_total = n as f64 - v.relevant;
    // Walk the tie blocks best first.
    let (mut start, mut neg_seen, mut twice_auc) = (0usize, 0.0f64, 0.0f64);
    while start < n {
        let mut end = start;
        let (mut bw, mut br) = (0.0f64, 0.0f64);
        while end < n && ranked[end].0 == ranked[start].0 {
            bw += ranked[end].1;
            br += (ranked[end].1 > 0.0) as u8 as f64;
            end += 1;
        }
        let size = (end - start) as f64;
        let bn = size - br;
        for (q, &k) in ks.iter().enumerate() {
            if k <= start {
                continue;
            }
            let fits = (k.min(end) - start) as f64;
            v.top_weight[q] += bw * fits / size;
            v.top_relevant[q] += br * fits / size;
            v.dcg[q] += bw / size * (disc[k.min(end).min(kmax)] - disc[start]);
        }
        // Positives of this block beat the negatives ranked below it; ties count half.
        let below = negatives_total - neg_seen - bn;
        twice_auc += 2.0 * br * below + br * bn;
        neg_seen += bn;
        start = end;
    }
    if v.relevant > 0.0 && negatives_total > 0.0 {
        v.auc = Some(twice_auc / (2.0 * v.relevant * negatives_total));
    }
    sorted_w.clear();
    sorted_w.extend(ranked.iter().map(|r| r.1));
    sorted_w.sort_unstable_by(|a, b| b.total_cmp(a));
    for (q, &k) in ks.iter().enumerate() {
        v.idcg[q] = sorted_w
            .iter()
            .take(k)
            .enumerate()
            .map(|(r, w)| w * (disc[r + 1] - disc[r]))
            .sum();
    }
    v
}

/// Every list metric of `scores` (higher ranks first) with row weights `weights`, grouped
/// by `groups`, for every K in `ks`. With `items`, the rows of one item in one group are
/// merged first (weights summed, highest score kept).
///
/// Errors: lengths differ, a score is NaN, a weight is negative or not finite, a K is 0 or
/// none is given, or no group has positive weight.
pub fn list_metrics(
    scores: &[f32],
    weights: &[f32],
    groups: &[u64],
    items: Option<&[u64]>,
    ks: &[usize],
    averaging: Averaging,
) -> Result<ListMetrics> {
    same_len("weights", scores.len(), weights.len())?;
    same_len("groups", scores.len(), groups.len())?;
    if let Some(items) = items {
        same_len("items", scores.len(), items.len())?;
    }
    check_scores("score", scores)?;
    check_weights(weights)?;
    list_metrics_grouped(
        scores,
        weights,
        &GroupIndex::new(groups),
        items,
        ks,
        averaging,
    )
}

/// [`list_metrics`] on validated inputs and a prepared grouping.
pub(crate) fn list_metrics_grouped(
    scores: &[f32],
    weights: &[f32],
    index: &GroupIndex,
    items: Option<&[u64]>,
    ks: &[usize],
    averaging: Averaging,
) -> Result<ListMetrics> {
    if ks.is_empty() || ks.contains(&0) {
        return Err(MetricsError::Invalid(format!(
            "K must be at least 1, got {ks:?}"
        )));
    }
    let nk = ks.len();
    // Macro: sums of per-group ratios. Micro: numerators and denominators.
    let (mut wr, mut rc, mut nd) = (vec![0.0f64; nk], vec![0.0f64; nk], vec![0.0f64; nk]);
    let mut idcg_total = vec![0.0f64; nk];
    let (mut weight_total, mut relevant_total) = (0.0f64, 0.0f64);
    let (mut auc_sum, mut auc_groups) = (0.0f64, 0usize);
    let (mut used, mut zero, mut single, mut largest) = (0usize, 0usize, 0usize, 0usize);
    let (mut scratch, mut ranked, mut disc, mut sorted_w) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for rows in index.iter() {
        rank_group(rows, scores, weights, items, &mut scratch, &mut ranked);
        largest = largest.max(ranked.len());
        let g = group_values(&ranked, ks, &mut disc, &mut sorted_w);
        if g.weight <= 0.0 {
            zero += 1;
            continue;
        }
        used += 1;
        single += (ranked.len() == 1) as usize;
        if let Some(a) = g.auc {
            auc_sum += a;
            auc_groups += 1;
        }
        for q in 0..nk {
            match averaging {
                Averaging::Macro => {
                    wr[q] += g.top_weight[q] / g.weight;
                    rc[q] += g.top_relevant[q] / g.relevant;
                    nd[q] += g.dcg[q] / g.idcg[q];
                }
                Averaging::Micro => {
                    wr[q] += g.top_weight[q];
                    rc[q] += g.top_relevant[q];
                    nd[q] += g.dcg[q];
                    idcg_total[q] += g.idcg[q];
                }
            }
        }
        weight_total += g.weight;
        relevant_total += g.relevant;
    }
    if used == 0 {
        return Err(MetricsError::Invalid(
            "weighted recall: no group has positive item weight".into(),
        ));
    }
    let finish = |v: Vec<f64>, den: &dyn Fn(usize) -> f64| -> Vec<f64> {
        v.into_iter().enumerate().map(|(q, x)| x / den(q)).collect()
    };
    let (weighted_recall, recall, ndcg) = match averaging {
        Averaging::Macro => {
            let u = used as f64;
            (finish(wr, &|_| u), finish(rc, &|_| u), finish(nd, &|_| u))
        }
        Averaging::Micro => (
            finish(wr, &|_| weight_total),
            finish(rc, &|_| relevant_total),
            finish(nd, &|q| idcg_total[q]),
        ),
    };
    Ok(ListMetrics {
        ks: ks.to_vec(),
        weighted_recall,
        recall,
        ndcg,
        list_auc: (auc_groups > 0).then(|| auc_sum / auc_groups as f64),
        list_auc_groups: auc_groups,
        groups_used: used,
        groups_total: index.len(),
        zero_weight_groups: zero,
        single_item_groups: single,
        largest_group: largest,
    })
}
