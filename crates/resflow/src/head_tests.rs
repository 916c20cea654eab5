//! Every head on a tiny instance: its gradients against central finite differences, and
//! its BatchNorm layers listed in the order its forward pass records them.

use autodiff::{Grads, ParamStore, Tape};

use model::config::{BatchNormMode, ModelConfig, ModelKind};
use model::rng::SplitMix64;
use model::{Field, InputLayout, Model};

use crate::network::{Forward, Mode, Network, Scratch};

const ROWS: usize = 6;

fn layout(tasks: usize) -> InputLayout {
    InputLayout {
        fields: vec![
            Field {
                name: "a".into(),
                vocab: 4,
                bag: None,
            },
            Field {
                name: "b".into(),
                vocab: 4,
                bag: None,
            },
        ],
        dense: 1,
        tasks: ["click", "cart", "order"][..tasks]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    }
}

/// A tiny configuration of `kind` (input width 2 fields x 2 + 1 dense = 5).
fn config(kind: &str, tasks: usize, bn: BatchNormMode) -> ModelConfig {
    let mut c = ModelConfig {
        embedding_dim: 2,
        hidden: vec![4, 3],
        batch_norm: bn,
        tasks: ModelConfig::default().tasks,
        ..ModelConfig::default()
    };
    c.tasks.truncate(tasks.min(2));
    while c.tasks.len() < tasks {
        let mut t = c.tasks[1].clone();
        t.name = ["click", "cart", "order"][c.tasks.len()].into();
        c.tasks.push(t);
    }
    for (t, name) in c.tasks.iter_mut().zip(["click", "cart", "order"]) {
        t.name = name.into();
    }
    c.model = match ModelKind::from_name(kind).unwrap() {
        ModelKind::SharedBottom(mut s) => {
            s.bottom = vec![4];
            s.tower = vec![3];
            ModelKind::SharedBottom(s)
        }
        ModelKind::Mmoe(mut m) => {
            m.experts = 3;
            m.expert_hidden = vec![3];
            m.tower = vec![2];
            ModelKind::Mmoe(m)
        }
        ModelKind::Ple(mut p) => {
            p.expert_hidden = vec![3];
            p.tower = vec![2];
            ModelKind::Ple(p)
        }
        other => other,
    };
    c.validate().unwrap();
    c
}

/// A network with every parameter randomised (not the initial zeros and ones, so that
/// every path carries gradient) and a random input.
fn instance(c: &ModelConfig, seed: u64) -> (Network, ParamStore, Vec<f32>) {
    let l = layout(c.tasks.len());
    let params = Model::init(c.clone(), l.clone()).unwrap();
    let (net, mut store) = Network::from_params(&params).unwrap();
    let mut rng = SplitMix64::new(seed);
    for p in &mut store.dense {
        let (r, k) = p.value.shape();
        let scale = if p.name.ends_with("gamma") { 0.3 } else { 0.8 };
        let base = if p.name.ends_with("gamma") { 1.0 } else { 0.0 };
        p.value = tensor::Matrix::from_fn(r, k, |_, _| base + rng.uniform(scale));
    }
    let x = (0..ROWS * l.input_width(c.embedding_dim))
        .map(|_| rng.uniform(1.5))
        .collect();
    (net, store, x)
}

/// Records the head of `net` on `x` (`ROWS` rows) on a fresh tape.
fn forward(
    net: &Network,
    store: &ParamStore,
    x: &[f32],
    mode: Mode,
    denom: Option<f32>,
) -> (Tape, Forward) {
    let mut tape = Tape::new();
    let xv = tape.input(ROWS, x.len() / ROWS, x).unwrap();
    let mut out = Forward::default();
    net.forward_input(
        &mut tape,
        store,
        xv,
        mode,
        denom,
        &mut Scratch::default(),
        &mut out,
    )
    .unwrap();
    (tape, out)
}

/// `sum(R * logits) + aux` of the head on `x`.
fn loss(net: &Network, store: &ParamStore, x: &[f32], grads: Option<&mut Grads>) -> f64 {
    let (mut tape, out) = forward(net, store, x, Mode::Train, Some(ROWS as f32));
    let mut rng = SplitMix64::new(99);
    let mut total = out.aux_loss;
    for &z in &out.logits {
        let r: Vec<f32> = (0..ROWS).map(|_| rng.uniform(1.0)).collect();
        let rv = tape.input(ROWS, 1, &r).unwrap();
        let p = tape.mul(z, rv).unwrap();
        let s = tape.sum(p).unwrap();
        total = Some(match total {
            None => s,
            Some(t) => tape.add(t, s).unwrap(),
        });
    }
    let total = total.unwrap();
    if let Some(g) = grads {
        tape.backward(total, g).unwrap();
    }
    tape.value(total)[0] as f64
}

fn check_gradients(kind: &str, tasks: usize, bn: BatchNormMode, seed: u64) {
    check_gradients_of(&config(kind, tasks, bn), kind, seed);
}

fn check_gradients_of(c: &ModelConfig, kind: &str, seed: u64) {
    let (net, mut store, x) = instance(c, seed);
    let mut grads = Grads::zeros_like(&store);
    loss(&net, &store, &x, Some(&mut grads));
    let (mut checked, mut kinks) = (0usize, 0usize);
    for p in 0..store.dense.len() {
        for i in 0..store.dense[p].value.as_slice().len() {
            let orig = store.dense[p].value.as_slice()[i];
            let mut at = |h: f32| {
                store.dense[p].value.as_mut_slice()[i] = orig + h;
                let up = loss(&net, &store, &x, None);
                store.dense[p].value.as_mut_slice()[i] = orig - h;
                let down = loss(&net, &store, &x, None);
                store.dense[p].value.as_mut_slice()[i] = orig;
                (up - down) / (2.0 * h as f64)
            };
            let (coarse, fine, finer) = (at(2e-3), at(1e-3), at(5e-4));
            let analytic = grads.dense[p][i] as f64;
            let tol = |v: f64| 2e-2 * analytic.abs().max(v.abs()) + 2e-3;
            if (coarse - fine).abs() > tol(coarse) || (fine - finer).abs() > tol(fine) {
                // The steps disagree: a ReLU/PReLU kink lies within them, where a
                // difference quotient is no reference. Counted, and kept rare below.
                kinks += 1;
                continue;
            }
            checked += 1;
            assert!(
                (analytic - fine).abs() <= tol(fine),
                "{kind}: d/d {}[{i}] analytic {analytic} vs numeric {fine}",
                store.dense[p].name
            );
        }
    }
    assert!(
        kinks * 20 <= checked,
        "{kind}: {kinks} kinks among {checked} checked entries"
    );
}

#[test]
fn every_head_matches_finite_differences() {
    for kind in ModelKind::NAMES {
        let tasks = if kind == "esmm" { 2 } else { 3 };
        check_gradients(kind, tasks, BatchNormMode::Affine, 1);
        check_gradients(kind, 2, BatchNormMode::Batch, 2);
    }
}

#[test]
fn a_non_chain_topology_matches_finite_differences() {
    // order takes the hidden outputs of click and cart (second layer only) and the logits
    // of both; cart has no parent; click, first in task order, takes cart's hidden
    // outputs, so cart's tower runs first.
    for (json, bn) in [
        (
            r#"{"parents": {"click": {"hidden": ["cart"], "logits": []},
                            "cart": {"hidden": [], "logits": []},
                            "order": {"hidden": ["click", "cart"], "logits": ["click", "cart"]}},
                "layers": [false, true]}"#,
            BatchNormMode::Affine,
        ),
        (
            r#"{"parents": {"order": {"hidden": ["click"], "logits": ["click"]}}, "layers": [true, false]}"#,
            BatchNormMode::Batch,
        ),
    ] {
        let mut c = config("resflow", 3, bn);
        c.topology = serde_json::from_str(json).unwrap();
        let links = c.links().unwrap();
        assert!(links.hidden.iter().any(|p| p.len() > 1) || links.layers != [true, true]);
        check_gradients_of(&c, "resflow (topology)", 4);
    }
    // The monotone variant with a parent later in task order.
    let mut c = config("resflow", 3, BatchNormMode::Affine);
    c.residual.monotone = true;
    c.topology = serde_json::from_str(
        r#"{"parents": {"click": {"logits": ["order"], "hidden": []}, "cart": {"logits": ["click"]}, "order": {"logits": [], "hidden": []}}}"#,
    )
    .unwrap();
    assert_eq!(c.links().unwrap().order, vec![2, 0, 1]);
    check_gradients_of(&c, "resflow (monotone topology)", 5);
}

#[test]
fn every_batch_norm_is_recorded_with_its_own_statistics() {
    for kind in ModelKind::NAMES {
        let tasks = if kind == "esmm" { 2 } else { 3 };
        let c = config(kind, tasks, BatchNormMode::Batch);
        let (net, store, x) = instance(&c, 3);
        let (_, out) = forward(&net, &store, &x, Mode::Train, None);
        assert_eq!(out.logits.len(), tasks, "{kind}");
        assert_eq!(out.bn_outputs.len(), out.bn_stats.len(), "{kind}");
        // Every statistic belongs to exactly one recorded BatchNorm.
        let mut seen: Vec<usize> = out.bn_stats.iter().flat_map(|&(m, v)| [m, v]).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..net.stats.len()).collect::<Vec<_>>(), "{kind}");
        assert!(out.bn_stats.len() > 1, "{kind}");
    }
}

#[test]
fn esmm_never_ranks_conversion_above_click() {
    let c = config("esmm", 2, BatchNormMode::Affine);
    for seed in 0..20 {
        let (net, mut store, x) = instance(&c, seed);
        // Large weights: logits far from zero, where rounding could break the order.
        for p in &mut store.dense {
            p.value.as_mut_slice().iter_mut().for_each(|v| *v *= 4.0);
        }
        let (mut tape, out) = forward(&net, &store, &x, Mode::Eval, None);
        let (ctr, ctcvr) = (
            tape.sigmoid(out.logits[0]).unwrap(),
            tape.sigmoid(out.logits[1]).unwrap(),
        );
        for (a, b) in tape.value(ctr).iter().zip(tape.value(ctcvr)) {
            assert!(b <= a, "p(ctcvr) {b} > p(ctr) {a}");
        }
    }
}
