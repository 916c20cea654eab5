//! Every head on a tiny instance: its gradients against central finite differences, and
//! its BatchNorm layers listed in the order its forward pass records them.

use autodiff::{Grads, ParamStore, Tape};

use model::config::{BatchNormMode, ModelConfig, ModelKind};
use model::rng::SplitMix64;
use model::{Field, InputLayout, Model};

use crate::network::{Forward, Frozen, HeadTargets, Mode, Network, Scratch};

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
    forward_frozen(net, store, x, mode, denom, &mut Frozen::Off)
}

/// [`forward`] with the stop-gradient values recorded or replayed by `frozen`.
fn forward_frozen(
    net: &Network,
    store: &ParamStore,
    x: &[f32],
    mode: Mode,
    denom: Option<f32>,
    frozen: &mut Frozen,
) -> (Tape, Forward) {
    let mut tape = Tape::new();
    let xv = tape.input(ROWS, x.len() / ROWS, x).unwrap();
    let mut out = Forward::default();
    let labels = labels(net.config.tasks.len());
    let mut scratch = Scratch::default();
    scratch.frozen = std::mem::take(frozen);
    net.forward_input(
        &mut tape,
        store,
        xv,
        mode,
        denom.map(|denom| HeadTargets {
            denom,
            labels: &labels,
        }),
        &mut scratch,
        &mut out,
    )
    .unwrap();
    *frozen = scratch.frozen;
    (tape, out)
}

/// `ROWS x tasks` labels of a funnel, row-major: every event implies the one before it,
/// and every pattern (nothing, click only, click and conversion, ...) occurs.
fn labels(tasks: usize) -> Vec<f32> {
    (0..ROWS)
        .flat_map(|r| (0..tasks).map(move |t| f32::from(t < r % (tasks + 1))))
        .collect()
}

/// `sum(R * logits) + aux` of the head on `x`; stop-gradient values as `frozen` says.
fn loss(
    net: &Network,
    store: &ParamStore,
    x: &[f32],
    grads: Option<&mut Grads>,
    frozen: &mut Frozen,
) -> f64 {
    let (mut tape, out) = forward_frozen(net, store, x, Mode::Train, Some(ROWS as f32), frozen);
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
    let c = config(kind, tasks, bn);
    let (net, mut store, x) = instance(&c, seed);
    let mut grads = Grads::zeros_like(&store);
    // The stop-gradient values (propensities) at the base point, replayed at every
    // perturbed point: the analytic gradient treats them as constants.
    let mut recorded = Frozen::Record(Vec::new());
    loss(&net, &store, &x, Some(&mut grads), &mut recorded);
    let Frozen::Record(frozen) = recorded else {
        unreachable!("recorded above")
    };
    let (mut checked, mut kinks) = (0usize, 0usize);
    for p in 0..store.dense.len() {
        for i in 0..store.dense[p].value.as_slice().len() {
            let orig = store.dense[p].value.as_slice()[i];
            let mut at = |h: f32| {
                store.dense[p].value.as_mut_slice()[i] = orig + h;
                let up = loss(
                    &net,
                    &store,
                    &x,
                    None,
                    &mut Frozen::Replay(frozen.clone(), 0),
                );
                store.dense[p].value.as_mut_slice()[i] = orig - h;
                let down = loss(
                    &net,
                    &store,
                    &x,
                    None,
                    &mut Frozen::Replay(frozen.clone(), 0),
                );
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

/// Two tasks for the kinds defined for the click -> conversion pair, else three.
fn tasks_of(kind: &str) -> usize {
    if ModelKind::from_name(kind).unwrap().two_tasks_only() {
        2
    } else {
        3
    }
}

#[test]
fn every_head_matches_finite_differences() {
    for kind in ModelKind::NAMES {
        let tasks = tasks_of(kind);
        check_gradients(kind, tasks, BatchNormMode::Affine, 1);
        check_gradients(kind, 2, BatchNormMode::Batch, 2);
    }
}

#[test]
fn every_batch_norm_is_recorded_with_its_own_statistics() {
    for kind in ModelKind::NAMES {
        let tasks = tasks_of(kind);
        let c = config(kind, tasks, BatchNormMode::Batch);
        let (net, store, x) = instance(&c, 3);
        // With the loss: towers only the loss reads are recorded too.
        let (_, out) = forward(&net, &store, &x, Mode::Train, Some(ROWS as f32));
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

/// The counterfactual losses against their formulas, computed in f64 from the logits the
/// heads return. The training-only towers (ESCM2-DR's imputation, DCMT's counterfactual)
/// get a zero logit layer, so their outputs are known: `e^ = 0` and `c = 0`.
#[test]
fn counterfactual_losses_match_their_formulas() {
    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
    for kind in ["escm2_ipw", "escm2_dr", "dcmt"] {
        let c = config(kind, 2, BatchNormMode::Affine);
        let (net, mut store, x) = instance(&c, 5);
        for p in &mut store.dense {
            if p.name.contains("/train/") && p.name.contains("/logit/") {
                p.value.as_mut_slice().fill(0.0);
            }
        }
        let (tape, out) = forward(&net, &store, &x, Mode::Train, Some(ROWS as f32));
        let got = tape.value(out.aux_loss.unwrap())[0] as f64;
        let (a, z) = (tape.value(out.logits[0]), tape.value(out.logits[1]));
        let y = labels(2);
        let mut want = 0.0;
        for i in 0..ROWS {
            let (a, z) = (a[i] as f64, z[i] as f64);
            let (o, r) = (y[2 * i] as f64, y[2 * i + 1] as f64);
            // The CVR tower's probability behind the product head.
            let q = sig(z) / sig(a);
            let ce = |p: f64, r: f64| -r * p.ln() - (1.0 - r) * (1.0 - p).ln();
            let d = ce(q, r);
            want += match &c.model {
                ModelKind::Escm2Ipw(e) => o * d / sig(a).max(e.propensity_clip as f64),
                ModelKind::Escm2Dr(e) => o * (d + d * d) / sig(a).max(e.propensity_clip as f64),
                ModelKind::Dcmt(m) => {
                    let clip = m.propensity_clip as f64;
                    let p = sig(a).clamp(clip, 1.0 - clip);
                    o * d / p
                        + (1.0 - o) * ce(0.5, 1.0 - r) / (1.0 - p)
                        + m.constraint_weight as f64 * (1.0 - q - 0.5).abs()
                }
                _ => unreachable!(),
            };
        }
        let weight = net.config.model.clone();
        let w = match weight {
            ModelKind::Escm2Ipw(e) | ModelKind::Escm2Dr(e) => e.counterfactual_weight,
            ModelKind::Dcmt(m) => m.cvr_weight,
            _ => unreachable!(),
        } as f64;
        want *= w / ROWS as f64;
        assert!(
            (got - want).abs() <= 1e-4 * want.abs().max(1.0),
            "{kind}: loss {got}, formula {want}"
        );
    }
}
