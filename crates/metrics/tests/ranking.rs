//! The list metrics (Weighted Recall@K with item weights of collective feedback, Recall@K,
//! NDCG@K, list AUC), both fusion forms and the evaluator's list report, against
//! hand-worked cases and brute force over every order of tied items.

use std::collections::BTreeMap;

use metrics::{
    Averaging, EvalBatch, EvalConfig, FusionKind, ItemWeight, StreamingEvaluator, fuse, fuse_row,
    list_metrics, sweep_fusion_weights, weighted_recall_at_k,
};
use proptest::prelude::*;

/// Exact rational results computed in f64: only a few roundings.
const EXACT: f64 = 1e-12;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < EXACT
}

/// The hand-worked data: rows (group, item, score, orders).
fn hand_rows() -> (Vec<u64>, Vec<u64>, Vec<f32>, Vec<f32>) {
    let rows = [
        // Group 1: item 10 shown twice (0 + 1 orders), item 20 twice (2 + 1), item 30 once.
        (1, 10, 0.9, 0.0),
        (1, 20, 0.7, 2.0),
        (1, 10, 0.9, 1.0),
        (1, 30, 0.4, 3.0),
        (1, 20, 0.6, 1.0),
        // Group 2: items 5 and 7 tie at 0.3; item 6 scores highest but was not ordered.
        (2, 5, 0.3, 0.5),
        (2, 6, 0.8, 0.0),
        (2, 7, 0.3, 1.5),
        // Group 3: nothing ordered: skipped.
        (3, 1, 0.5, 0.0),
        (3, 2, 0.1, 0.0),
    ];
    (
        rows.iter().map(|r| r.0).collect(),
        rows.iter().map(|r| r.1).collect(),
        rows.iter().map(|r| r.2).collect(),
        rows.iter().map(|r| r.3).collect(),
    )
}

#[test]
fn weighted_recall_with_repeated_items_and_non_binary_weights() {
    let (g, items, s, w) = hand_rows();
    // Group 1 merged into items (highest score, summed weight):
    //   item 10: (0.9, 1), item 20: (0.7, 3), item 30: (0.4, 3); total 7.
    //   WR@1 = 1/7, WR@2 = 4/7, WR@3 = 1.
    // Group 2: 6 (0.8, 0), then the tied block {5, 7} with weight 2; total 2.
    //   WR@1 = 0; WR@2 = half the block = 1 -> 1/2; WR@3 = 1.
    // Macro: K=1 (1/7 + 0)/2 = 1/14, K=2 (4/7 + 1/2)/2 = 15/28, K=3 1.
    // Micro: K=1 1/9, K=2 (4 + 1)/9 = 5/9, K=3 1.
    let ks = [1, 2, 3];
    let m = list_metrics(&s, &w, &g, Some(&items), &ks, Averaging::Macro).unwrap();
    for (v, want) in m.weighted_recall.iter().zip([1.0 / 14.0, 15.0 / 28.0, 1.0]) {
        assert!(close(*v, want), "{v} vs {want}");
    }
    assert_eq!(
        (m.groups_used, m.groups_total, m.zero_weight_groups),
        (2, 3, 1)
    );
    let micro = list_metrics(&s, &w, &g, Some(&items), &ks, Averaging::Micro).unwrap();
    for (v, want) in micro
        .weighted_recall
        .iter()
        .zip([1.0 / 9.0, 5.0 / 9.0, 1.0])
    {
        assert!(close(*v, want), "{v} vs {want}");
    }
    // Recall@K: group 1 has 3 relevant items: 1/3, 2/3, 1. Group 2 has 2 (5 and 7): 0,
    // half the tied block of 2 relevant -> 1/2, 1. Macro: 1/6, 7/12, 1.
    for (v, want) in m.recall.iter().zip([1.0 / 6.0, 7.0 / 12.0, 1.0]) {
        assert!(close(*v, want), "{v} vs {want}");
    }
    // NDCG@2, gain = weight, discount 1/log2(r + 1):
    //   group 1: DCG = 1 + 3/log2(3), IDCG = 3 + 3/log2(3);
    //   group 2: DCG = 0 + (mean block weight 1)/log2(3), IDCG = 1.5 + 0.5/log2(3).
    let l3 = 3f64.log2();
    let want = ((1.0 + 3.0 / l3) / (3.0 + 3.0 / l3) + (1.0 / l3) / (1.5 + 0.5 / l3)) / 2.0;
    assert!(close(m.ndcg[1], want), "{} vs {want}", m.ndcg[1]);
    // List AUC: group 1 has no irrelevant item; group 2 ranks its only irrelevant item
    // above both relevant ones: AUC 0, over one group.
    assert_eq!((m.list_auc, m.list_auc_groups), (Some(0.0), 1));
    // Without item ids every impression is an item: group 1 is then (0.9, 0), (0.9, 1)
    // tied, (0.7, 2), (0.6, 1), (0.4, 3): WR@1 = 0.5/7 (half the tied block's weight 1).
    let rows = list_metrics(&s, &w, &g, None, &[1], Averaging::Micro).unwrap();
    assert!(close(rows.weighted_recall[0], 0.5 / 9.0), "{rows:?}");
    let direct = weighted_recall_at_k(&s, &w, &g, &[1], Averaging::Micro).unwrap();
    assert_eq!(direct.values, vec![(1, rows.weighted_recall[0])]);
}

#[test]
fn degenerate_groups_are_warned_about() {
    // Every group a single row: each list metric is 1 whatever the scores.
    let m = list_metrics(
        &[0.1, 0.2, 0.3],
        &[1.0, 0.0, 2.0],
        &[1, 2, 3],
        None,
        &[10],
        Averaging::Macro,
    )
    .unwrap();
    assert_eq!(m.weighted_recall, vec![1.0]);
    let w = m.warnings().join("\n");
    assert!(
        w.contains("single candidate") && w.contains("every group"),
        "{w}"
    );
    assert!(w.contains("no positive item weight"), "{w}");
    assert!(w.contains("K = 10 is at least the largest group"), "{w}");
    assert!(w.contains("list AUC is undefined"), "{w}");
    // No positive weight anywhere is an error, K = 0 too, and a negative weight.
    assert!(
        list_metrics(
            &[0.1, 0.2],
            &[0.0, 0.0],
            &[1, 1],
            None,
            &[1],
            Averaging::Macro
        )
        .is_err()
    );
    assert!(
        list_metrics(
            &[0.1, 0.2],
            &[1.0, 0.0],
            &[1, 1],
            None,
            &[0],
            Averaging::Macro
        )
        .is_err()
    );
    assert!(
        list_metrics(
            &[0.1, 0.2],
            &[-1.0, 1.0],
            &[1, 1],
            None,
            &[1],
            Averaging::Macro
        )
        .is_err()
    );
    assert!(
        list_metrics(
            &[0.1, 0.2],
            &[1.0, 1.0],
            &[1, 1],
            Some(&[1]),
            &[1],
            Averaging::Macro
        )
        .is_err()
    );
}

/// Every ordering of `n` items that respects the scores (best first), ties in every order.
fn orders_by_score(scores: &[f32]) -> Vec<Vec<usize>> {
    fn permute(rest: &mut Vec<usize>, cur: &mut Vec<usize>, out: &mut Vec<Vec<usize>>, s: &[f32]) {
        if rest.is_empty() {
            out.push(cur.clone());
            return;
        }
        for j in 0..rest.len() {
            let i = rest[j];
            if cur.last().is_some_and(|&l| s[l] < s[i]) {
                continue;
            }
            rest.remove(j);
            cur.push(i);
            permute(rest, cur, out, s);
            cur.pop();
            rest.insert(j, i);
        }
    }
    let mut out = Vec::new();
    permute(
        &mut (0..scores.len()).collect(),
        &mut Vec::new(),
        &mut out,
        scores,
    );
    out
}

/// Brute force, macro averaged: `(WR@K, Recall@K, NDCG@K)` per K and the mean list AUC.
fn brute_force(
    s: &[f32],
    w: &[f32],
    g: &[u64],
    items: &[u64],
    ks: &[usize],
) -> Option<(Vec<[f64; 3]>, Option<f64>)> {
    // Merge impressions: (group, item) -> (highest score, summed weight).
    let mut merged: BTreeMap<u64, BTreeMap<u64, (f32, f64)>> = BTreeMap::new();
    for i in 0..s.len() {
        let e = merged
            .entry(g[i])
            .or_default()
            .entry(items[i])
            .or_insert((f32::MIN, 0.0));
        e.0 = e.0.max(s[i]);
        e.1 += w[i] as f64;
    }
    let mut sums = vec![[0.0f64; 3]; ks.len()];
    let (mut used, mut auc_sum, mut auc_n) = (0usize, 0.0f64, 0usize);
    for group in merged.values() {
        let sc: Vec<f32> = group.values().map(|v| v.0).collect();
        let wt: Vec<f64> = group.values().map(|v| v.1).collect();
        let total: f64 = wt.iter().sum();
        if total <= 0.0 {
            continue;
        }
        used += 1;
        let relevant = wt.iter().filter(|&&x| x > 0.0).count() as f64;
        let orders = orders_by_score(&sc);
        let mut ideal = wt.clone();
        ideal.sort_by(|a, b| b.total_cmp(a));
        for (q, &k) in ks.iter().enumerate() {
            let disc = |r: usize| 1.0 / ((r + 2) as f64).log2();
            let idcg: f64 = ideal
                .iter()
                .take(k)
                .enumerate()
                .map(|(r, x)| x * disc(r))
                .sum();
            let mut acc = [0.0f64; 3];
            for o in &orders {
                let top = &o[..k.min(o.len())];
                acc[0] += top.iter().map(|&i| wt[i]).sum::<f64>() / total;
                acc[1] += top.iter().filter(|&&i| wt[i] > 0.0).count() as f64 / relevant;
                acc[2] += top
                    .iter()
                    .enumerate()
                    .map(|(r, &i)| wt[i] * disc(r))
                    .sum::<f64>()
                    / idcg;
            }
            for m in 0..3 {
                sums[q][m] += acc[m] / orders.len() as f64;
            }
        }
        let (mut num, mut pairs) = (0.0, 0.0);
        for a in 0..sc.len() {
            for b in 0..sc.len() {
                if wt[a] > 0.0 && wt[b] == 0.0 {
                    pairs += 1.0;
                    num += if sc[a] > sc[b] {
                        1.0
                    } else if sc[a] == sc[b] {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
        }
        if pairs > 0.0 {
            auc_sum += num / pairs;
            auc_n += 1;
        }
    }
    (used > 0).then(|| {
        (
            sums.iter().map(|v| v.map(|x| x / used as f64)).collect(),
            (auc_n > 0).then(|| auc_sum / auc_n as f64),
        )
    })
}

fn small_lists() -> impl Strategy<Value = (Vec<f32>, Vec<f32>, Vec<u64>, Vec<u64>)> {
    (1usize..14).prop_flat_map(|n| {
        (
            prop::collection::vec((0u8..4).prop_map(|v| v as f32 / 4.0), n),
            prop::collection::vec(
                prop::sample::select(vec![0.0f32, 0.0, 0.5, 1.0, 2.0, 3.0]),
                n,
            ),
            prop::collection::vec(0u64..3, n),
            prop::collection::vec(0u64..5, n),
        )
    })
}

proptest! {
    #[test]
    fn list_metrics_equal_brute_force_over_tie_orders((s, w, g, items) in small_lists()) {
        let ks = [1, 2, 3, 5];
        match brute_force(&s, &w, &g, &items, &ks) {
            None => prop_assert!(list_metrics(&s, &w, &g, Some(&items), &ks, Averaging::Macro).is_err()),
            Some((want, auc)) => {
                let m = list_metrics(&s, &w, &g, Some(&items), &ks, Averaging::Macro).unwrap();
                for q in 0..ks.len() {
                    prop_assert!((m.weighted_recall[q] - want[q][0]).abs() < 1e-9, "WR {:?} {:?}", m, want);
                    prop_assert!((m.recall[q] - want[q][1]).abs() < 1e-9, "Recall {:?} {:?}", m, want);
                    prop_assert!((m.ndcg[q] - want[q][2]).abs() < 1e-9, "NDCG {:?} {:?}", m, want);
                }
                match (m.list_auc, auc) {
                    (Some(a), Some(b)) => prop_assert!((a - b).abs() < 1e-9),
                    (a, b) => prop_assert_eq!(a, b),
                }
            }
        }
    }

    #[test]
    fn fusion_forms_rank_like_brute_force(n in 2usize..20, seed in 0u64..10_000, a in 0u8..4, b in 0u8..4) {
        // Chained cumulative heads: p1 >= p2 >= p3, probabilities well apart.
        let u = |i: usize, salt: u64| (((i as u64 * 2_654_435_761 + seed * 97 + salt) % 1000) as f32 + 1.0) / 1001.0;
        let p1: Vec<f32> = (0..n).map(|i| u(i, 1)).collect();
        let p2: Vec<f32> = (0..n).map(|i| p1[i] * u(i, 2)).collect();
        let p3: Vec<f32> = (0..n).map(|i| p2[i] * u(i, 3)).collect();
        let weights = [1.0 + a as f32, 0.5 * b as f32, 1.0];
        let probs: [&[f32]; 3] = [&p1, &p2, &p3];
        for kind in FusionKind::ALL {
            let fused = fuse(&probs, &weights, kind).unwrap();
            // Brute force in f64 from the definitions.
            let want: Vec<f64> = (0..n).map(|i| {
                let p = [p1[i] as f64, p2[i] as f64, p3[i] as f64];
                match kind {
                    FusionKind::Additive => p.iter().zip(weights).map(|(p, w)| p * w as f64).sum(),
                    FusionKind::Multiplicative => {
                        let q = [p[0], p[1] / p[0], p[2] / p[1]];
                        q.iter().zip(weights).map(|(q, w)| q.powf(w as f64)).product()
                    }
                }
            }).collect();
            for i in 0..n {
                prop_assert!((fused[i] as f64 - want[i]).abs() <= 1e-5 * want[i].abs().max(1e-30), "{kind:?} {i}");
                prop_assert_eq!(fused[i], fuse_row(&[p1[i], p2[i], p3[i]], &weights, kind));
                for j in 0..n {
                    // Pairs the f64 reference separates clearly are ordered the same way.
                    if want[i] > want[j] * (1.0 + 1e-4) {
                        prop_assert!(fused[i] > fused[j], "{kind:?} {i} {j}");
                    }
                }
            }
        }
        // Exponents 1 on every conditional telescope to the deepest head.
        let tele = fuse(&probs, &[1.0, 1.0, 1.0], FusionKind::Multiplicative).unwrap();
        for i in 0..n {
            prop_assert!((tele[i] - p3[i]).abs() <= 1e-6 * p3[i]);
        }
    }
}

#[test]
fn multiplicative_fusion_edge_cases() {
    // p_(t-1) = 0: the conditional is taken as 0.
    assert_eq!(
        fuse_row(&[0.0, 0.0], &[1.0, 1.0], FusionKind::Multiplicative),
        0.0
    );
    // Exponent 0 ignores a task: only CTR counts.
    assert_eq!(
        fuse_row(&[0.25, 0.05], &[1.0, 0.0], FusionKind::Multiplicative),
        0.25
    );
    // A head above its predecessor gives a conditional above 1 (not clipped).
    assert!((fuse_row(&[0.2, 0.3], &[0.0, 1.0], FusionKind::Multiplicative) - 1.5).abs() < 1e-6);
}

#[test]
fn evaluator_merges_items_weights_and_sweeps() {
    let (g, items, s, w) = hand_rows();
    // One task whose probability is the score, labels 1 where an order happened; the
    // orders themselves come in as the weight column.
    let labels: Vec<f32> = w.iter().map(|&x| (x > 0.0) as u8 as f32).collect();
    let mut config = EvalConfig::new(vec!["order".into()]);
    config.ks = vec![1, 2, 3];
    config.item_weight = ItemWeight::Column;
    config.fusion_sweep = vec![vec![2.0]];
    let mut ev = StreamingEvaluator::new(config.clone()).unwrap();
    ev.push_rows(EvalBatch {
        probs: &s[..4],
        labels: &labels[..4],
        groups: Some(&g[..4]),
        items: Some(&items[..4]),
        weights: Some(&w[..4]),
    })
    .unwrap();
    assert!(
        ev.push(&s[4..], &labels[4..], Some(&g[4..])).is_err(),
        "columns must agree"
    );
    ev.push_rows(EvalBatch {
        probs: &s[4..],
        labels: &labels[4..],
        groups: Some(&g[4..]),
        items: Some(&items[4..]),
        weights: Some(&w[4..]),
    })
    .unwrap();
    let r = ev.report().unwrap();
    let wr = r.wr_at_k.as_ref().unwrap();
    // The hand-worked values above (a scaled single task ranks the same both ways).
    assert!(close(wr.additive["1"], 1.0 / 14.0), "{wr:?}");
    assert!(close(wr.multiplicative["2"], 15.0 / 28.0), "{wr:?}");
    assert!(close(wr.recall["1"], 1.0 / 6.0), "{wr:?}");
    assert_eq!(wr.list_auc, Some(0.0));
    assert_eq!(wr.sweep.len(), 1);
    assert_eq!(wr.sweep[0].additive, wr.additive);
    assert!(
        r.warnings.iter().any(|w| w.contains("K = 3 is at least")),
        "{:?}",
        r.warnings
    );
    // Item weights from a weight column need the column.
    let mut ev = StreamingEvaluator::new(config).unwrap();
    ev.push(&s, &labels, Some(&g)).unwrap();
    assert!(
        ev.report()
            .unwrap_err()
            .to_string()
            .contains("weight column")
    );
    // Bad configurations are refused up front.
    let mut bad = EvalConfig::new(vec!["a".into(), "b".into()]);
    bad.fusion_sweep = vec![vec![1.0]];
    assert!(StreamingEvaluator::new(bad).is_err());
    let mut bad = EvalConfig::new(vec!["a".into()]);
    bad.ks = vec![0];
    assert!(StreamingEvaluator::new(bad).is_err());
}

#[test]
fn evaluator_warns_when_every_group_is_one_row() {
    let mut ev = StreamingEvaluator::new(EvalConfig::new(vec!["click".into()])).unwrap();
    ev.push(
        &[0.9, 0.1, 0.5, 0.4],
        &[1.0, 0.0, 1.0, 0.0],
        Some(&[1, 2, 3, 4]),
    )
    .unwrap();
    let r = ev.report().unwrap();
    assert_eq!(r.tasks[0].gauc, None);
    let w = r.warnings.join("\n");
    assert!(w.contains("GAUC is undefined"), "{w}");
    assert!(w.contains("single candidate"), "{w}");
    let json = serde_json::to_value(&r).unwrap();
    assert!(json["warnings"].is_array());
}

#[test]
fn sweep_reports_each_weight_vector() {
    // Two items in one request: A ordered (click 0.3, ctcvr 0.12), B not (0.6, 0.06).
    let click = [0.3f32, 0.6];
    let ctcvr = [0.12f32, 0.06];
    let orders = [1.0f32, 0.0];
    let points = sweep_fusion_weights(
        &[&click, &ctcvr],
        &orders,
        &[1, 1],
        None,
        &[vec![1.0, 1.0], vec![1.0, 20.0]],
        &[1],
        Averaging::Macro,
    )
    .unwrap();
    // Additive 1:1 ranks B first (0.66 > 0.42); 1:20 ranks A first (2.7 > 1.8).
    assert_eq!(points[0].additive, vec![(1, 0.0)]);
    assert_eq!(points[1].additive, vec![(1, 1.0)]);
    // Multiplicative 1:1 ranks by the deepest head: A (0.12 > 0.06).
    assert_eq!(points[0].multiplicative, vec![(1, 1.0)]);
}
