//! Loss balancing end to end: GradNorm's per-task gradient norms against a fresh tape and a
//! finite difference, a badly scaled task rebalanced by uncertainty weighting and by
//! GradNorm (and left alone by fixed weights), the balancing state through a checkpoint,
//! and a balanced model served like any other.

mod common;

use autodiff::{Grads, Tape};
use common::{data, serving_gap, temp};

use resflow::network::{Forward, Mode, Network, Scratch};
use resflow::{ModelConfig, Scorer, Trainer};
use shards::{Batch, Dataset};

/// Two tasks, the second's loss made 100 times smaller by its loss weight.
fn config(balancing: &str) -> ModelConfig {
    let mut c = ModelConfig::from_json(&format!(
        r#"{{"embedding_dim": 8, "hidden": [32, 16], "batch_size": 256, "seed": 5,
            "tasks": [{{"name": "click", "pos_weight": 1, "loss_weight": 1}},
                      {{"name": "conversion", "pos_weight": 1, "loss_weight": 0.01}}],
            "loss_balancing": {balancing}}}"#
    ))
    .unwrap();
    c.optimizer.learning_rate = 3e-3;
    c
}

fn first_batch(ds: &Dataset, rows: usize) -> Batch {
    let mut it = ds.batches(rows, Some(7));
    let mut b = ds.new_batch();
    assert!(it.next_into(&mut b));
    b
}

/// Task `t`'s batch-mean loss and its gradient on the input BatchNorm's (gamma, beta), on
/// one fresh tape over the whole batch.
fn task_loss_and_shared_grad(
    net: &Network,
    store: &autodiff::ParamStore,
    b: &Batch,
    t: usize,
) -> (f64, Vec<f32>) {
    let mut tape = Tape::new();
    let mut out = Forward::default();
    let view = b.split(1).next().unwrap();
    net.forward(
        &mut tape,
        store,
        &view,
        Mode::Train,
        b.rows as f32,
        true,
        &mut Scratch::default(),
        &mut out,
    )
    .unwrap();
    let mut grads = Grads::zeros_like(store);
    tape.backward(out.task_losses[t], &mut grads).unwrap();
    let (g, beta) = net.shared_params().unwrap();
    let mut v = grads.dense[g.index()].clone();
    v.extend_from_slice(&grads.dense[beta.index()]);
    (tape.value(out.task_losses[t])[0] as f64, v)
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt()
}

#[test]
fn gradnorm_measures_each_tasks_gradient_norm_on_the_shared_layer() {
    let (dir, ds) = data("balance-norms", 4_000, 3);
    let b = first_batch(&ds, 512);
    for (balancing, aux) in [
        (r#"{"kind": "gradnorm"}"#, false),
        // AITM's calibrator is an extra term of the total: every task takes its own pass.
        (r#"{"kind": "gradnorm"}"#, true),
    ] {
        let mut c = config(balancing);
        if aux {
            c = c.with_model("aitm").unwrap();
        }
        let mut t = Trainer::new(c.clone(), resflow::layout_of(ds.schema()), 2).unwrap();
        let (net, store) = Network::from_params(&t.params()).unwrap();
        t.train_step(&b).unwrap();
        let measured = t.balancer().gradient_norms();
        for (k, task) in c.tasks.iter().enumerate() {
            let (_, g) = task_loss_and_shared_grad(&net, &store, &b, k);
            let want = task.loss_weight as f64 * norm(&g);
            let err = (measured[k] - want).abs() / want;
            // Two workers sum in another order; the last task comes by difference.
            assert!(
                err < tensor::tolerance::MODEL as f64,
                "aux {aux}, task {k}: {} vs {want}",
                measured[k]
            );
            // The norm is the directional derivative along the gradient: a finite
            // difference of the loss itself.
            let u: Vec<f32> = g.iter().map(|&x| (x as f64 / norm(&g)) as f32).collect();
            let h = 1e-2f32;
            let shifted = |sign: f32| {
                let mut s = store.clone();
                let (gid, bid) = net.shared_params().unwrap();
                let d = s.get(gid).as_slice().len();
                for (j, x) in s.get_mut(gid).as_mut_slice().iter_mut().enumerate() {
                    *x += sign * h * u[j];
                }
                for (j, x) in s.get_mut(bid).as_mut_slice().iter_mut().enumerate() {
                    *x += sign * h * u[d + j];
                }
                task_loss_and_shared_grad(&net, &s, &b, k).0
            };
            let fd = (shifted(1.0) - shifted(-1.0)) / (2.0 * h as f64);
            let rel = (fd - norm(&g)).abs() / norm(&g);
            assert!(
                rel < 2e-2,
                "task {k}: finite difference {fd} vs {}",
                norm(&g)
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// One step's loss weights `W_t` and task losses `L_t`.
type Step = (Vec<f32>, Vec<f64>);

/// Trains `epochs` on `ds`, returning the trainer and every step's weights and losses.
fn run(ds: &Dataset, c: ModelConfig, epochs: usize) -> (Trainer, Vec<Step>) {
    let mut t = Trainer::new(c, resflow::layout_of(ds.schema()), 2).unwrap();
    let mut steps = vec![];
    t.fit(ds, epochs, |_, s| {
        steps.push((s.loss_weights.clone(), s.losses.clone()));
        Ok(())
    })
    .unwrap();
    (t, steps)
}

/// `W_click L_click / (W_conv L_conv)` averaged over the last `n` steps.
fn weighted_ratio(steps: &[Step], n: usize) -> f64 {
    let tail = &steps[steps.len() - n..];
    let a: f64 = tail.iter().map(|(w, l)| w[0] as f64 * l[0]).sum();
    let b: f64 = tail.iter().map(|(w, l)| w[1] as f64 * l[1]).sum();
    a / b
}

#[test]
fn a_badly_scaled_task_is_rebalanced() {
    let (dir, ds) = data("balance-scale", 30_000, 4);
    // Fixed weights: the conversion loss stays 100 times down-weighted.
    let (_, fixed) = run(&ds, config(r#"{"kind": "fixed"}"#), 2);
    assert!(fixed.iter().all(|(w, _)| w == &[1.0, 0.01]));
    let fixed_ratio = weighted_ratio(&fixed, 20);
    assert!(fixed_ratio > 100.0, "fixed: {fixed_ratio}");

    // Uncertainty weighting: exp(-s_t) lambda_t L_t is driven to 1/2 for every task, so the
    // weighted losses meet, and the conversion's weight rises from lambda = 0.01.
    let (t, unc) = run(
        &ds,
        config(r#"{"kind": "uncertainty", "learning_rate": 0.1}"#),
        2,
    );
    let ratio = weighted_ratio(&unc, 20);
    let w = &unc.last().unwrap().0;
    eprintln!(
        "uncertainty: weights {w:?}, weighted ratio {ratio} (fixed {fixed_ratio}), s {:?}",
        t.balancer().learned()
    );
    assert!(
        (1.0 / 3.0..3.0).contains(&ratio),
        "weighted losses within 3x: {ratio}"
    );
    assert!(
        w[1] / w[0] > 100.0 * 0.01,
        "conversion/click weight {}",
        w[1] / w[0]
    );

    // GradNorm with alpha = 0 pulls every task's gradient norm on the shared layer to the
    // mean: the conversion's starts about 100 times smaller than the click's, so its weight
    // w_t rises until the norms meet (or the click's weight reaches its floor).
    let (t, gn) = run(
        &ds,
        config(r#"{"kind": "gradnorm", "alpha": 0, "learning_rate": 0.05}"#),
        2,
    );
    let w = t.balancer().learned().unwrap().to_vec();
    let a = t.balancer().gradient_norms();
    let g_ratio = (w[0] as f64 * a[0]) / (w[1] as f64 * a[1]);
    eprintln!(
        "gradnorm alpha 0: w {w:?}, a_t {a:?}, G ratio {g_ratio}, weighted ratio {}",
        weighted_ratio(&gn, 20)
    );
    assert!(w[1] > 10.0 * w[0], "conversion weight should rise: {w:?}");
    assert!((w.iter().sum::<f32>() - 2.0).abs() < 1e-5, "{w:?}");
    assert!(
        (1.0 / 3.0..3.0).contains(&g_ratio),
        "gradient norms within 3x: {g_ratio}"
    );
    // With the paper's alpha = 1.5 the target also weighs the training rates: the
    // conversion's loss falls further below its start than the click's (a rare event's
    // loss drops from log 2 to its small entropy), so GradNorm asks for a smaller gradient
    // there; its weight still rises, but the norms stay apart by about (r_1 / r_2)^alpha.
    let (t, _) = run(
        &ds,
        config(r#"{"kind": "gradnorm", "learning_rate": 0.05}"#),
        2,
    );
    let w = t.balancer().learned().unwrap().to_vec();
    eprintln!(
        "gradnorm alpha 1.5: w {w:?}, a_t {:?}",
        t.balancer().gradient_norms()
    );
    assert!(w[1] > 1.2 * w[0], "conversion weight should rise: {w:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn params_bits(t: &Trainer) -> Vec<u32> {
    t.store
        .dense
        .iter()
        .flat_map(|d| d.value.to_vec())
        .chain(t.store.tables.iter().flat_map(|t| t.value.to_vec()))
        .map(f32::to_bits)
        .collect()
}

#[test]
fn balancing_state_survives_a_checkpoint_and_the_model_serves() {
    let (dir, ds) = data("balance-ckpt", 6_000, 5);
    for balancing in [
        r#"{"kind": "uncertainty", "learning_rate": 0.05}"#,
        r#"{"kind": "gradnorm", "learning_rate": 0.05}"#,
    ] {
        let c = config(balancing);
        let mut batches = ds.batches(c.batch_size, Some(11));
        let mut all = vec![];
        let mut b = ds.new_batch();
        while all.len() < 12 && batches.next_into(&mut b) {
            all.push(b.clone());
        }
        let mut a = Trainer::new(c.clone(), resflow::layout_of(ds.schema()), 2).unwrap();
        for b in &all[..6] {
            a.train_step(b).unwrap();
        }
        let ck = temp("balance-ckpt-dir");
        a.save_checkpoint(&ck).unwrap();
        let mut r = Trainer::load_checkpoint(&ck, 2).unwrap();
        assert_eq!(r.balancer().state(), a.balancer().state(), "{balancing}");
        for b in &all[6..] {
            a.train_step(b).unwrap();
            r.train_step(b).unwrap();
        }
        assert_eq!(params_bits(&a), params_bits(&r), "{balancing}");
        assert_eq!(r.balancer().state(), a.balancer().state(), "{balancing}");
        // The model file carries the network only, and serves what the trainer predicts.
        let model = a.export().unwrap();
        assert!(model.tensors.iter().all(|(n, _)| !n.starts_with("balance")));
        let scorer = Scorer::new(model).unwrap();
        let gap = serving_gap(&mut a, &scorer, &ds);
        assert!(gap < tensor::tolerance::APPROXIMATE, "{balancing}: {gap}");
        std::fs::remove_dir_all(&ck).unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn compare_runs_each_balancing_with_the_same_seeds() {
    let (train_dir, train) = data("balance-cmp-train", 2000, 1);
    let (eval_dir, eval) = data("balance-cmp-eval", 1000, 2);
    let mut c = config(r#"{"kind": "gradnorm", "alpha": 0.5, "learning_rate": 0.05}"#);
    c.embedding_dim = 4;
    c.hidden = vec![8];
    let options = resflow::CompareOptions {
        models: Some(vec!["resflow".into()]),
        seeds: vec![3, 5],
        epochs: Some(1),
        threads: 1,
        latency_calls: 1,
        balancing: Some(vec![
            "fixed".into(),
            "uncertainty".into(),
            "gradnorm".into(),
        ]),
        ..Default::default()
    };
    let report = resflow::compare(
        &train,
        &eval,
        Some(c),
        &options,
        &mut resflow::session::Quiet,
    )
    .unwrap();
    let runs: Vec<(&str, &str)> = report
        .models
        .iter()
        .map(|m| (m.model.as_str(), m.loss_balancing.as_str()))
        .collect();
    assert_eq!(
        runs,
        [
            ("resflow", "fixed"),
            ("resflow", "uncertainty"),
            ("resflow", "gradnorm")
        ]
    );
    assert_eq!(report.seeds, vec![3, 5]);
    let weights = |k: usize| -> Vec<f64> {
        report.models[k]
            .final_loss_weights
            .iter()
            .map(|s| s.mean)
            .collect()
    };
    assert_eq!(weights(0), vec![1.0, 0.01f32 as f64]);
    assert!(
        weights(1)[1] > 0.01 && weights(2)[1] > 0.01,
        "{:?} {:?}",
        weights(1),
        weights(2)
    );
    // The configuration's own GradNorm keeps its options; the others take their defaults.
    let g = report.models[2].config.loss_balancing;
    assert_eq!(
        g,
        resflow::config::LossBalancing::Gradnorm(resflow::config::GradNormConfig {
            alpha: 0.5,
            learning_rate: Some(0.05)
        })
    );
    for m in &report.models {
        assert_eq!(m.tasks[0].auc.values.len(), 2);
        assert!(m.tasks[0].auc.mean > 0.5, "{}", m.loss_balancing);
    }
    for d in [train_dir, eval_dir] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

/// The checkpoint `bytes` rewritten with metadata `version` (checksums recomputed).
fn with_version(bytes: &[u8], version: &str) -> Vec<u8> {
    use resflow::integrity::{Array, CHECKSUMS_KEY, METADATA_CRC_KEY, open, serialize};
    let (st, meta) = open(bytes).unwrap();
    let arrays = st
        .tensors()
        .into_iter()
        .map(|(name, v)| {
            let values = v
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            Array::owned(name, v.shape().to_vec(), values)
        })
        .collect();
    let mut meta: std::collections::BTreeMap<String, String> = meta
        .into_iter()
        .filter(|(k, _)| k != CHECKSUMS_KEY && k != METADATA_CRC_KEY)
        .collect();
    meta.insert("version".into(), version.into());
    serialize(arrays, meta).unwrap()
}

#[test]
fn checkpoint_versions_three_and_four_load_and_newer_ones_are_refused() {
    let (dir, ds) = data("balance-version", 2_000, 6);
    let b = first_batch(&ds, 256);
    let path = std::path::Path::new("ckpt");
    // A fixed-weights checkpoint is exactly what version 3 wrote: it loads as version 3.
    let mut fixed = Trainer::new(
        config(r#"{"kind": "fixed"}"#),
        resflow::layout_of(ds.schema()),
        1,
    )
    .unwrap();
    fixed.train_step(&b).unwrap();
    let ck = temp("balance-version-dir");
    fixed.save_checkpoint(&ck).unwrap();
    let bytes = std::fs::read(ck.join(resflow::CHECKPOINT_FILE)).unwrap();
    let v3 = Trainer::checkpoint_from_bytes(&with_version(&bytes, "3"), path, 1).unwrap();
    assert_eq!(params_bits(&v3), params_bits(&fixed));
    assert!(v3.balancer().state().is_none());
    let e = Trainer::checkpoint_from_bytes(&with_version(&bytes, "5"), path, 1)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("version \"5\"") && e.contains("reads \"4\""),
        "{e}"
    );
    // A balanced checkpoint without its balancing state is refused by name.
    let mut g = Trainer::new(
        config(r#"{"kind": "gradnorm"}"#),
        resflow::layout_of(ds.schema()),
        1,
    )
    .unwrap();
    g.train_step(&b).unwrap();
    std::fs::remove_dir_all(&ck).unwrap();
    g.save_checkpoint(&ck).unwrap();
    let bytes = std::fs::read(ck.join(resflow::CHECKPOINT_FILE)).unwrap();
    use resflow::integrity::{Array, CHECKSUMS_KEY, METADATA_CRC_KEY, open, serialize};
    let (st, meta) = open(&bytes).unwrap();
    let arrays = st
        .tensors()
        .into_iter()
        .filter(|(name, _)| name != "balance/adam/v")
        .map(|(name, v)| {
            let values = v
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            Array::owned(name, v.shape().to_vec(), values)
        })
        .collect();
    let meta = meta
        .into_iter()
        .filter(|(k, _)| k != CHECKSUMS_KEY && k != METADATA_CRC_KEY)
        .collect();
    let e = Trainer::checkpoint_from_bytes(&serialize(arrays, meta).unwrap(), path, 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("balance/adam/v"), "{e}");
    std::fs::remove_dir_all(&ck).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
