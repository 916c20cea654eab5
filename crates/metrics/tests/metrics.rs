//! Metrics against hand-worked cases, brute force, an independent tool, and their
//! invariants.

use metrics::{
    Averaging, EvalConfig, FusionKind, GroupWeight, ItemWeight, MetricsError, StreamingEvaluator,
    auc, auc_par, calibration, compare_fusions, fuse, gauc, log_loss, weighted_recall_at_k,
};
use proptest::prelude::*;

/// Exact rational results computed in f64: only the final division rounds.
const EXACT: f64 = 1e-12;

fn brute_force_auc(s: &[f32], y: &[f32]) -> Option<f64> {
    let (mut num, mut pairs) = (0.0f64, 0.0f64);
    for i in 0..s.len() {
        for j in 0..s.len() {
            if y[i] == 1.0 && y[j] == 0.0 {
                pairs += 1.0;
                if s[i] > s[j] {
                    num += 1.0;
                } else if s[i] == s[j] {
                    num += 0.5;
                }
            }
        }
    }
    (pairs > 0.0).then(|| num / pairs)
}

#[test]
fn auc_hand_worked_with_ties() {
    // Positives at 0.8, 0.5; negatives at 0.5, 0.2.
    // Pairs: (0.8, 0.5) win, (0.8, 0.2) win, (0.5, 0.5) tie = 1/2, (0.5, 0.2) win.
    // AUC = (1 + 1 + 0.5 + 1) / 4 = 0.875.
    let a = auc(&[0.8, 0.5, 0.5, 0.2], &[1.0, 1.0, 0.0, 0.0]).unwrap();
    assert!((a - 0.875).abs() < EXACT);
    // All scores equal: every pair ties, AUC = 1/2.
    assert_eq!(auc(&[0.3; 5], &[1.0, 0.0, 1.0, 0.0, 0.0]).unwrap(), 0.5);
    // -0.0 and 0.0 are the same score.
    assert_eq!(auc(&[-0.0, 0.0], &[1.0, 0.0]).unwrap(), 0.5);
}

#[test]
fn auc_known_values_from_scikit_learn() {
    // sklearn.metrics.roc_auc_score 1.9.1 on the same inputs (printed with repr()).
    let s1 = [0.9, 0.8, 0.8, 0.7, 0.6, 0.6, 0.6, 0.3, 0.2, 0.2, 0.1, 0.05];
    let y1 = [1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0];
    assert!((auc(&s1, &y1).unwrap() - 0.7714285714285715).abs() < EXACT);
    // Scores rounded to one decimal (many ties), drawn with numpy default_rng(2024).
    let s2 = [
        0.7, 0.2, 0.3, 0.8, 1.0, 0.1, 0.1, 0.2, 0.4, 0.2, 0.6, 0.6, 0.1, 0.6, 0.0, 0.5, 1.0, 0.8,
        0.6, 0.3,
    ];
    let y2 = [
        1., 0., 1., 0., 1., 1., 0., 1., 1., 1., 0., 1., 0., 1., 0., 0., 0., 0., 0., 1.,
    ];
    assert!((auc(&s2, &y2).unwrap() - 0.49500000000000005).abs() < EXACT);
    // sklearn.metrics.log_loss 1.9.1.
    let ll = log_loss(&[0.9, 0.1, 0.7, 0.3, 0.5], &[1.0, 0.0, 0.0, 1.0, 1.0]).unwrap();
    assert!((ll - 0.662362764105494).abs() < 1e-7, "{ll}");
}

#[test]
fn bad_inputs_are_errors() {
    assert!(matches!(
        auc(&[0.1, 0.2], &[1.0, 1.0]),
        Err(MetricsError::SingleClass {
            positives: 2,
            negatives: 0,
            ..
        })
    ));
    assert!(matches!(
        auc(&[], &[]),
        Err(MetricsError::SingleClass { .. })
    ));
    assert!(matches!(
        auc(&[0.1], &[1.0, 0.0]),
        Err(MetricsError::LengthMismatch { .. })
    ));
    assert!(matches!(
        auc(&[0.1, 0.2], &[1.0, 0.5]),
        Err(MetricsError::InvalidLabel { index: 1, .. })
    ));
    assert!(matches!(
        auc(&[f32::NAN, 0.2], &[1.0, 0.0]),
        Err(MetricsError::InvalidScore { index: 0, .. })
    ));
    assert!(log_loss(&[1.5], &[1.0]).is_err());
    assert!(log_loss(&[], &[]).is_err());
    assert!(calibration(&[0.5, 0.5], &[0.0, 0.0]).is_err());
    assert!(weighted_recall_at_k(&[0.1], &[1.0], &[1], &[0], Averaging::Macro).is_err());
    assert!(weighted_recall_at_k(&[0.1], &[-1.0], &[1], &[1], Averaging::Macro).is_err());
    assert!(weighted_recall_at_k(&[0.1], &[0.0], &[1], &[1], Averaging::Macro).is_err());
    let msg = gauc(&[0.1, 0.2], &[1.0, 1.0], &[1, 2], GroupWeight::Impressions)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("no group has both classes"), "{msg}");
}

#[test]
fn gauc_hand_worked() {
    // Group 1: scores (0.9 +, 0.1 -) -> AUC 1, 2 impressions, 1 click.
    // Group 2: scores (0.2 +, 0.8 -, 0.5 -) -> AUC 0, 3 impressions, 1 click.
    // Group 3: all negative -> skipped.
    // By impressions: (2 * 1 + 3 * 0) / 5 = 0.4; by clicks: (1 + 0) / 2 = 0.5.
    let s = [0.9, 0.1, 0.2, 0.8, 0.5, 0.3, 0.4];
    let y = [1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0];
    let g = [1, 1, 2, 2, 2, 3, 3];
    let r = gauc(&s, &y, &g, GroupWeight::Impressions).unwrap();
    assert!((r.value - 0.4).abs() < EXACT);
    assert_eq!((r.groups_used, r.groups_total), (2, 3));
    assert!((gauc(&s, &y, &g, GroupWeight::Clicks).unwrap().value - 0.5).abs() < EXACT);
    // Interleaved rows give the same value.
    let order = [0, 2, 5, 1, 3, 6, 4];
    let (s2, y2, g2): (Vec<f32>, Vec<f32>, Vec<u64>) = (
        order.iter().map(|&i| s[i]).collect(),
        order.iter().map(|&i| y[i]).collect(),
        order.iter().map(|&i| g[i]).collect(),
    );
    assert_eq!(gauc(&s2, &y2, &g2, GroupWeight::Impressions).unwrap(), r);
}

#[test]
fn weighted_recall_hand_worked() {
    // Group 1: items (score, orders): (0.9, 0), (0.8, 2), (0.1, 1). Total 3.
    //   K = 1: top = {0.9} -> 0/3; K = 2: {0.9, 0.8} -> 2/3; K = 3 -> 1.
    // Group 2: (0.5, 1), (0.5, 0), (0.2, 1). Total 2. The two 0.5 items tie.
    //   K = 1: expected weight of one of the tied pair = (1 + 0) / 2 = 0.5 -> 0.25;
    //   K = 2: both -> 1/2; K = 3 -> 1.
    // Group 3: no orders -> skipped.
    // Macro: K=1 (0 + 0.25)/2 = 0.125; K=2 (2/3 + 1/2)/2 = 7/12; K=3 1.
    // Micro: K=1 (0 + 0.5)/5 = 0.1; K=2 (2 + 1)/5 = 0.6; K=3 1.
    let s = [0.9, 0.8, 0.1, 0.5, 0.5, 0.2, 0.7];
    let w = [0.0, 2.0, 1.0, 1.0, 0.0, 1.0, 0.0];
    let g = [1, 1, 1, 2, 2, 2, 3];
    let m = weighted_recall_at_k(&s, &w, &g, &[1, 2, 3], Averaging::Macro).unwrap();
    let want = [0.125, 7.0 / 12.0, 1.0];
    for ((_, v), w) in m.values.iter().zip(want) {
        assert!((v - w).abs() < EXACT, "{v} vs {w}");
    }
    assert_eq!((m.groups_used, m.groups_total), (2, 3));
    let micro = weighted_recall_at_k(&s, &w, &g, &[1, 2, 3], Averaging::Micro).unwrap();
    for ((_, v), w) in micro.values.iter().zip([0.1, 0.6, 1.0]) {
        assert!((v - w).abs() < EXACT, "{v} vs {w}");
    }
}

#[test]
fn fusion_forms_hand_worked() {
    // One request, two items, heads predicting cumulative events (click, click-and-order).
    // Item A was ordered: p_click 0.3, p_ctcvr 0.12 (so p_cvr = 0.12 / 0.3 = 0.4).
    // Item B was not:     p_click 0.6, p_ctcvr 0.06 (p_cvr = 0.1).
    // Additive (1, 1):       A = 0.42 < B = 0.66      -> B first, WR@1 = 0.
    // Additive (1, 20):      A = 2.7  > B = 1.8       -> A first, WR@1 = 1.
    // Multiplicative (1, 1): A = 0.3 x 0.4 = 0.12 > B = 0.6 x 0.1 = 0.06 -> A first.
    let click = [0.3f32, 0.6];
    let ctcvr = [0.12f32, 0.06];
    let (labels_click, labels_order) = ([1.0f32, 1.0], [1.0f32, 0.0]);
    let c = compare_fusions(
        &[&click, &ctcvr],
        &[&labels_click, &labels_order],
        &[7, 7],
        &[1.0, 1.0],
        &[1, 2],
        &ItemWeight::DeepestEvent,
        Averaging::Macro,
    )
    .unwrap();
    assert_eq!(c.additive.values, vec![(1, 0.0), (2, 1.0)]);
    assert_eq!(c.multiplicative.values, vec![(1, 1.0), (2, 1.0)]);
    let f = fuse(&[&click, &ctcvr], &[1.0, 20.0], FusionKind::Additive).unwrap();
    assert!(
        (f[0] - 2.7).abs() < 1e-6 && (f[1] - 1.8).abs() < 1e-6,
        "{f:?}"
    );
    // CTR^1 CVR^2 for B: 0.6 x 0.1^2 = 0.006; CTR^0.5 CVR^1 for A: sqrt(0.3) x 0.4.
    let m = fuse(&[&click, &ctcvr], &[1.0, 2.0], FusionKind::Multiplicative).unwrap();
    assert!((m[1] - 0.006).abs() < 1e-7, "{m:?}");
    let m = fuse(&[&click, &ctcvr], &[0.5, 1.0], FusionKind::Multiplicative).unwrap();
    assert!((m[0] - 0.3f32.sqrt() * 0.4).abs() < 1e-6, "{m:?}");
    assert!(fuse(&[&click], &[1.0, 1.0], FusionKind::Additive).is_err());
    assert!(fuse(&[&click], &[f32::NAN], FusionKind::Additive).is_err());
}

#[test]
fn item_weight_mix() {
    let w = ItemWeight::Mix(vec![0.5, 2.0])
        .weights(&[&[1.0, 0.0], &[1.0, 0.0]])
        .unwrap();
    assert_eq!(w, vec![2.5, 0.0]);
    assert!(
        ItemWeight::Mix(vec![1.0])
            .weights(&[&[1.0], &[1.0]])
            .is_err()
    );
}

#[test]
fn evaluator_report_and_json() {
    let mut ev =
        StreamingEvaluator::new(EvalConfig::new(vec!["click".into(), "order".into()])).unwrap();
    // Two batches, rows (p_click, p_order | y_click, y_order), groups 1 and 2.
    ev.push(
        &[0.9, 0.5, 0.2, 0.1, 0.6, 0.3],
        &[1.0, 1.0, 0.0, 0.0, 1.0, 0.0],
        Some(&[1, 1, 2]),
    )
    .unwrap();
    ev.push(&[0.3, 0.2, 0.1, 0.05], &[0.0, 0.0, 1.0, 1.0], Some(&[2, 1]))
        .unwrap();
    assert!(
        ev.push(&[0.3, 0.2], &[0.0, 0.0], None).is_err(),
        "mixing grouped and ungrouped batches"
    );
    let r = ev.report().unwrap();
    assert_eq!(r.rows, 5);
    assert_eq!(r.tasks[0].name, "click");
    // click: scores 0.9 +, 0.2 -, 0.6 +, 0.3 -, 0.1 +: pairs 3 x 2 = 6, wins: 0.9 beats both,
    // 0.6 beats both, 0.1 beats none -> 4/6.
    assert!((r.tasks[0].auc.unwrap() - 4.0 / 6.0).abs() < EXACT);
    assert_eq!(r.tasks[0].positives, 3);
    let wr = r.wr_at_k.as_ref().unwrap();
    assert!(wr.additive.contains_key("100") && wr.multiplicative.contains_key("10"));
    // K >= every group size: WR = 1.
    assert_eq!(wr.additive["100"], 1.0);
    let json = serde_json::to_value(&r).unwrap();
    assert!(json["tasks"][1]["logloss"].as_f64().unwrap() > 0.0);
    assert!(json["wr_at_k"]["additive"]["10"].is_number());
    // Without groups: no GAUC, no WR@K, other metrics present.
    let mut plain = StreamingEvaluator::new(EvalConfig::new(vec!["click".into()])).unwrap();
    plain.push(&[0.9, 0.1], &[1.0, 0.0], None).unwrap();
    let r = plain.report().unwrap();
    assert_eq!((r.tasks[0].auc, r.tasks[0].gauc), (Some(1.0), None));
    assert!(r.wr_at_k.is_none());
    assert!(
        StreamingEvaluator::new(EvalConfig::new(vec!["a".into()]))
            .unwrap()
            .report()
            .is_err()
    );
}

fn scores_and_labels() -> impl Strategy<Value = (Vec<f32>, Vec<f32>)> {
    (1usize..60).prop_flat_map(|n| {
        (
            prop::collection::vec((0u8..12).prop_map(|v| v as f32 / 4.0 - 1.0), n),
            prop::collection::vec(prop::bool::ANY.prop_map(|b| b as u8 as f32), n),
        )
    })
}

proptest! {
    #[test]
    fn auc_equals_brute_force_and_its_symmetries((s, y) in scores_and_labels(), chunk in 1usize..9) {
        match brute_force_auc(&s, &y) {
            None => prop_assert!(auc(&s, &y).is_err()),
            Some(want) => {
                let a = auc(&s, &y).unwrap();
                prop_assert!((a - want).abs() < EXACT);
                // Parallel chunks give the identical value.
                prop_assert_eq!(auc_par(&s, &y, chunk).unwrap(), a);
                // Negated scores: 1 - AUC.
                let neg: Vec<f32> = s.iter().map(|v| -v).collect();
                prop_assert!((auc(&neg, &y).unwrap() - (1.0 - a)).abs() < EXACT);
                // A strictly increasing transform changes nothing.
                let t: Vec<f32> = s.iter().map(|v| (v * 3.0 + 0.5).exp()).collect();
                prop_assert_eq!(auc(&t, &y).unwrap(), a);
            }
        }
    }

    #[test]
    fn weighted_recall_is_monotone_and_reaches_one(n in 1usize..40, seed in 0u64..1000) {
        let s: Vec<f32> = (0..n).map(|i| ((i as u64 * 7 + seed) % 5) as f32).collect();
        let w: Vec<f32> = (0..n).map(|i| ((i as u64 * 3 + seed) % 3) as f32).collect();
        let g: Vec<u64> = (0..n).map(|i| (i as u64 * 5 + seed) % 4).collect();
        let biggest = (0..4).map(|k| g.iter().filter(|&&x| x == k).count()).max().unwrap();
        let ks: Vec<usize> = (1..=biggest + 1).collect();
        for avg in [Averaging::Macro, Averaging::Micro] {
            match weighted_recall_at_k(&s, &w, &g, &ks, avg) {
                Err(_) => prop_assert!(w.iter().all(|&x| x == 0.0)),
                Ok(r) => {
                    for pair in r.values.windows(2) {
                        prop_assert!(pair[1].1 >= pair[0].1 - 1e-12);
                    }
                    prop_assert!((r.values[biggest - 1].1 - 1.0).abs() < 1e-12);
                }
            }
        }
    }

    #[test]
    fn one_task_fusion_ranks_like_that_task(n in 1usize..30, seed in 0u64..1000) {
        let p: Vec<f32> = (0..n).map(|i| ((i as u64 * 13 + seed) % 17) as f32 / 17.0 + 0.01).collect();
        let y: Vec<f32> = (0..n).map(|i| (i as u64 + seed).is_multiple_of(3) as u8 as f32).collect();
        let g: Vec<u64> = (0..n).map(|i| i as u64 % 3).collect();
        if y.iter().any(|&v| v > 0.0) {
            let direct = weighted_recall_at_k(&p, &y, &g, &[1, 2, 5], Averaging::Macro).unwrap();
            let c = compare_fusions(&[&p], &[&y], &g, &[2.0], &[1, 2, 5], &ItemWeight::DeepestEvent, Averaging::Macro).unwrap();
            prop_assert_eq!(&c.additive, &direct);
            prop_assert_eq!(&c.multiplicative, &direct);
        }
    }
}
