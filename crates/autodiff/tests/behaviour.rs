//! Behaviour beyond gradients: errors name the op and shapes, embedding bags, BatchNorm's
//! statistics, optimisers, and a tiny network that learns XOR.

use autodiff::{
    Adam, AdamConfig, AutodiffError, BatchNormMode, BceTarget, Grads, LazyAdam, ParamStore,
    Pooling, Sgd, Tape,
};
use tensor::Matrix;

#[test]
fn shape_mismatches_are_errors_naming_op_and_shapes() {
    let mut t = Tape::new();
    let a = t.input(2, 3, &[0.0; 6]).unwrap();
    let b = t.input(4, 5, &[0.0; 20]).unwrap();
    let msg = t.linear(a, b, None).unwrap_err().to_string();
    assert!(
        msg.contains("linear") && msg.contains("2x3") && msg.contains("4x5"),
        "{msg}"
    );
    let msg = t.add(a, b).unwrap_err().to_string();
    assert!(
        msg.contains("add") && msg.contains("2x3") && msg.contains("4x5"),
        "{msg}"
    );
    assert!(t.mul(a, b).unwrap_err().to_string().contains("mul"));
    assert!(
        t.concat(&[a, b])
            .unwrap_err()
            .to_string()
            .contains("same rows")
    );
    assert!(t.split(a, 2, 2).unwrap_err().to_string().contains("split"));
    assert!(t.prelu(a, a).unwrap_err().to_string().contains("1 x C"));
    assert!(matches!(t.concat(&[]), Err(AutodiffError::Invalid { .. })));
    // mix: inputs of one shape, a gate of N x K
    assert!(
        t.mix(&[a, b], a)
            .unwrap_err()
            .to_string()
            .contains("same shape")
    );
    let msg = t.mix(&[a, a], a).unwrap_err().to_string();
    assert!(msg.contains("mix") && msg.contains("2x2"), "{msg}");
    assert!(matches!(t.mix(&[], a), Err(AutodiffError::Invalid { .. })));
    assert!(
        t.product_logit(a, b)
            .unwrap_err()
            .to_string()
            .contains("product_logit")
    );
    assert!(t.input(2, 2, &[1.0]).is_err());
    // A non-scalar loss cannot be differentiated.
    let mut g = Grads::default();
    assert!(
        t.backward(a, &mut g)
            .unwrap_err()
            .to_string()
            .contains("1x1")
    );
}

#[test]
fn labels_and_weights_are_validated() {
    let mut t = Tape::new();
    let z = t.input(2, 1, &[0.0, 1.0]).unwrap();
    let target = |labels: &'static [f32]| BceTarget {
        labels,
        weights: None,
        pos_weight: 1.0,
        denom: None,
    };
    assert!(
        t.bce_with_logits(z, target(&[f32::NAN, 0.0]))
            .unwrap_err()
            .to_string()
            .contains("row 0")
    );
    assert!(
        t.bce_with_logits(z, target(&[0.0, 2.0]))
            .unwrap_err()
            .to_string()
            .contains("row 1")
    );
    assert!(t.bce_with_logits(z, target(&[0.0])).is_err());
    let neg = BceTarget {
        labels: &[0.0, 1.0],
        weights: Some(&[1.0, -1.0]),
        pos_weight: 1.0,
        denom: None,
    };
    assert!(
        t.bce_with_logits(z, neg)
            .unwrap_err()
            .to_string()
            .contains("weight of row 1")
    );
    let pw = BceTarget {
        labels: &[0.0, 1.0],
        weights: None,
        pos_weight: 0.0,
        denom: None,
    };
    assert!(t.bce_with_logits(z, pw).is_err());
}

#[test]
fn embedding_bags_pool_and_validate() {
    let mut store = ParamStore::new();
    let e = store.add_table("e", Matrix::from_fn(4, 2, |i, j| (10 * i + j) as f32));
    let mut t = Tape::new();
    // E[i] = (10 i, 10 i + 1); rows: [] -> 0, [1, 1] -> 2 E[1] = (20, 22),
    // [3, 0, 2] -> (30 + 0 + 20, 31 + 1 + 21) = (50, 53); means (10, 11) and (50/3, 53/3).
    let offsets = [0u64, 0, 2, 5];
    let ids = [1u32, 1, 3, 0, 2];
    let s = t
        .embedding_bag(&store, e, &offsets, &ids, Pooling::Sum)
        .unwrap();
    assert_eq!(t.value(s), &[0.0, 0.0, 20.0, 22.0, 50.0, 53.0]);
    let m = t
        .embedding_bag(&store, e, &offsets, &ids, Pooling::Mean)
        .unwrap();
    // Mean pooling multiplies by the reciprocal of the bag size.
    let third = 1.0f32 / 3.0;
    assert_eq!(
        t.value(m),
        &[0.0, 0.0, 10.0, 11.0, 50.0 * third, 53.0 * third]
    );
    let err = t
        .embedding_bag(&store, e, &offsets, &[1, 1, 3, 9, 2], Pooling::Sum)
        .unwrap_err();
    assert_eq!(
        err,
        AutodiffError::IdOutOfRange {
            op: "embedding_bag",
            row: 2,
            id: 9,
            rows: 4
        }
    );
    assert!(
        t.embedding_bag(&store, e, &[0, 3, 2], &[0, 0], Pooling::Sum)
            .is_err()
    );
    assert!(
        t.embedding_bag(&store, e, &[1, 2], &[0, 0], Pooling::Sum)
            .is_err()
    );
    assert!(
        t.embedding(&store, e, &[0, 4])
            .unwrap_err()
            .to_string()
            .contains("id 4")
    );
    // Sparse gradients: row 1 twice (repeated id), rows 0, 2, 3 once, no dense table buffer.
    let loss = t.sum(s).unwrap();
    let mut g = Grads::zeros_like(&store);
    t.backward(loss, &mut g).unwrap();
    let mut rows = g.sparse[0].clone();
    assert_eq!(rows.ids.len(), 5);
    rows.coalesce();
    assert_eq!(rows.ids, vec![0, 1, 2, 3]);
    assert_eq!(rows.rows, vec![1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0]);
}

#[test]
fn batch_norm_statistics_and_modes() {
    let mut store = ParamStore::new();
    let g = store.add("gamma", Matrix::from_fn(1, 2, |_, _| 2.0));
    let b = store.add("beta", Matrix::from_fn(1, 2, |_, _| 1.0));
    let mut t = Tape::new();
    let x = t
        .input(4, 2, &[1.0, 10.0, 2.0, 10.0, 3.0, 10.0, 4.0, 10.0])
        .unwrap();
    let (gv, bv) = (t.param(&store, g), t.param(&store, b));
    let y = t
        .batch_norm(x, gv, bv, BatchNormMode::Train { eps: 0.0 })
        .unwrap();
    let (mean, var) = t.batch_stats(y).unwrap();
    assert_eq!(mean, &[2.5, 10.0]);
    assert_eq!(var, &[1.25, 0.0].map(|v: f32| v)[..]);
    // column 0 normalised: (x - 2.5) / sqrt(1.25) * 2 + 1
    let want0 = (1.0f32 - 2.5) / 1.25f32.sqrt() * 2.0 + 1.0;
    assert!((t.value(y)[0] - want0).abs() < 1e-6);
    // Eval mode uses the given statistics; the frozen "affine" form is mean 0, var 1.
    let z = t
        .batch_norm(
            x,
            gv,
            bv,
            BatchNormMode::Eval {
                mean: &[0.0, 0.0],
                var: &[1.0, 1.0],
                eps: 1e-3,
            },
        )
        .unwrap();
    assert!((t.value(z)[1] - (2.0 * 10.0 / 1.001f32.sqrt() + 1.0)).abs() < 1e-4);
    assert!(t.batch_stats(x).is_none());
    let bad = t.batch_norm(
        x,
        gv,
        bv,
        BatchNormMode::Eval {
            mean: &[0.0],
            var: &[1.0],
            eps: 1e-3,
        },
    );
    assert!(bad.is_err());
}

#[test]
fn lazy_adam_touches_only_rows_in_the_batch_and_dense_adam_keeps_decaying() {
    let mut store = ParamStore::new();
    let e = store.add_table("e", Matrix::from_fn(5, 3, |_, _| 1.0));
    let cfg = AdamConfig {
        lr: 0.1,
        ..AdamConfig::default()
    };
    for lazy in [true, false] {
        let mut s = store.clone();
        let mut opt = LazyAdam::new(cfg, &s, lazy);
        let mut row1 = vec![];
        for step in 0..2 {
            let mut t = Tape::new();
            // step 0 touches rows 1 (twice) and 3; step 1 touches row 2 only
            let ids: &[u32] = if step == 0 { &[1, 1, 3] } else { &[2] };
            let v = t.embedding(&s, e, ids).unwrap();
            let l = t.sum(v).unwrap();
            let mut g = Grads::zeros_like(&s);
            t.backward(l, &mut g).unwrap();
            opt.step(&mut s, &mut g);
            row1.push(s.table(e).get(1, 0));
        }
        let moved: Vec<bool> = (0..5).map(|r| s.table(e).get(r, 0) != 1.0).collect();
        assert_eq!(moved, vec![false, true, true, true, false], "lazy = {lazy}");
        // Row 1 has no gradient at step 1: lazy Adam leaves it, dense Adam moves it on
        // with its decaying first moment.
        assert_eq!(row1[0] == row1[1], lazy, "lazy = {lazy}: {row1:?}");
    }
}

#[test]
fn a_two_layer_network_learns_xor() {
    let mut store = ParamStore::new();
    let mut seed = 3u64;
    let mut rnd = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0
    };
    let w1 = store.add("w1", Matrix::from_fn(2, 8, |_, _| rnd()));
    let b1 = store.add("b1", Matrix::zeros(1, 8));
    let w2 = store.add("w2", Matrix::from_fn(8, 1, |_, _| rnd()));
    let b2 = store.add("b2", Matrix::zeros(1, 1));
    let x = [0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0];
    let y = [0.0, 1.0, 1.0, 0.0];
    let mut adam = Adam::new(
        AdamConfig {
            lr: 0.05,
            ..AdamConfig::default()
        },
        &store,
    );
    let mut tape = Tape::new();
    let mut grads = Grads::zeros_like(&store);
    let mut last = f32::INFINITY;
    for _ in 0..600 {
        tape.reset();
        grads.zero();
        let xv = tape.input(4, 2, &x).unwrap();
        let (a, b, c, d) = (
            tape.param(&store, w1),
            tape.param(&store, b1),
            tape.param(&store, w2),
            tape.param(&store, b2),
        );
        let h = tape.linear(xv, a, Some(b)).unwrap();
        let h = tape.tanh(h).unwrap();
        let z = tape.linear(h, c, Some(d)).unwrap();
        let loss = tape
            .bce_with_logits(
                z,
                BceTarget {
                    labels: &y,
                    weights: None,
                    pos_weight: 1.0,
                    denom: None,
                },
            )
            .unwrap();
        last = tape.value(loss)[0];
        tape.backward(loss, &mut grads).unwrap();
        adam.step(&mut store, &grads);
    }
    assert!(last < 0.05, "XOR loss after training: {last}");
    // SGD also decreases the loss from where Adam left it.
    let sgd = Sgd { lr: 0.1 };
    sgd.step(&mut store, &grads);
}

#[test]
fn backward_to_targets_gives_their_gradients_and_nothing_else() {
    // embeddings -> BatchNorm(gamma, beta) -> linear -> relu -> linear, plus a second path
    // from the embeddings to the logit that does not pass through the targets.
    let mut store = ParamStore::new();
    let mut seed = 11u64;
    let mut rnd = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0
    };
    let table = store.add_table("e", Matrix::from_fn(7, 5, |_, _| rnd()));
    let gamma = store.add("gamma", Matrix::from_fn(1, 5, |_, _| 1.0 + 0.3 * rnd()));
    let beta = store.add("beta", Matrix::from_fn(1, 5, |_, _| 0.3 * rnd()));
    let w1 = store.add("w1", Matrix::from_fn(5, 6, |_, _| rnd()));
    let w2 = store.add("w2", Matrix::from_fn(6, 1, |_, _| rnd()));
    let side = store.add("side", Matrix::from_fn(5, 1, |_, _| rnd()));
    let ids = [0u32, 3, 5, 6, 2, 3];
    let labels = [1.0, 0.0, 0.0, 1.0, 1.0, 0.0];
    let mut tape = Tape::new();
    let record = |tape: &mut Tape| {
        tape.reset();
        let e = tape.embedding(&store, table, &ids).unwrap();
        let (g, b) = (tape.param(&store, gamma), tape.param(&store, beta));
        let x = tape
            .batch_norm(e, g, b, BatchNormMode::Train { eps: 1e-3 })
            .unwrap();
        let a = tape.param(&store, w1);
        let h = tape.linear(x, a, None).unwrap();
        let h = tape.relu(h).unwrap();
        let c = tape.param(&store, w2);
        let z = tape.linear(h, c, None).unwrap();
        let s = tape.param(&store, side);
        let z2 = tape.linear(e, s, None).unwrap();
        let z = tape.add(z, z2).unwrap();
        tape.bce_with_logits(
            z,
            BceTarget {
                labels: &labels,
                weights: None,
                pos_weight: 1.0,
                denom: None,
            },
        )
        .unwrap()
    };
    let mut all = Grads::zeros_like(&store);
    let loss = record(&mut tape);
    tape.backward(loss, &mut all).unwrap();
    let mut only = Grads::zeros_like(&store);
    let loss = record(&mut tape);
    tape.backward_to(loss, &[gamma, beta], &mut only).unwrap();
    for id in [gamma, beta] {
        assert!(all.dense[id.index()].iter().any(|&g| g != 0.0));
        // The same ops in the same order reach the targets: the same bits.
        assert_eq!(only.dense[id.index()], all.dense[id.index()]);
    }
    for id in [w1, w2, side] {
        assert!(only.dense[id.index()].iter().all(|&g| g == 0.0), "{id:?}");
    }
    assert!(only.sparse.iter().all(|s| s.ids.is_empty()));
    assert!(all.sparse.iter().any(|s| !s.ids.is_empty()));
    // Afterwards a full backward computes everything again.
    let mut again = Grads::zeros_like(&store);
    let loss = record(&mut tape);
    tape.backward(loss, &mut again).unwrap();
    assert_eq!(again.dense, all.dense);
}

#[test]
fn a_reused_tape_gives_a_fresh_tapes_gradients_bit_for_bit() {
    // The gradient arena is not cleared between steps: each slot is zeroed when the
    // backward pass first reaches it, or written outright by a concatenation or a
    // BatchNorm that reaches it first. A tape that ran other values first, with a value
    // that feeds two ops (read by the concatenation last, so written by it first), a
    // value only the concatenation reads, a concatenation only a BatchNorm reads, an input
    // no gradient flows into and a value recorded after the loss, must give exactly a
    // fresh tape's gradients.
    let mut seed = 3u64;
    let mut rnd = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0
    };
    let mut store = ParamStore::new();
    let table = store.add_table("e", Matrix::from_fn(9, 4, |_, _| rnd()));
    let w = store.add("w", Matrix::from_fn(11, 1, |_, _| rnd()));
    let v = store.add("v", Matrix::from_fn(4, 1, |_, _| rnd()));
    let gamma = store.add("gamma", Matrix::from_fn(1, 11, |_, _| 1.0 + 0.3 * rnd()));
    let beta = store.add("beta", Matrix::from_fn(1, 11, |_, _| 0.3 * rnd()));
    let dense: Vec<f32> = (0..15).map(|_| rnd()).collect();
    let ids = [1u32, 8, 3, 3, 0];
    let ids2 = [2u32, 2, 7, 4, 6];
    let labels = [1.0, 0.0, 1.0, 0.0, 0.0];
    let record = |tape: &mut Tape, store: &ParamStore| {
        tape.reset();
        let x = tape.input(5, 3, &dense).unwrap();
        let e = tape.embedding(store, table, &ids).unwrap();
        let (wv, vv) = (tape.param(store, w), tape.param(store, v));
        let z2 = tape.linear(e, vv, None).unwrap();
        let e2 = tape.embedding(store, table, &ids2).unwrap();
        let c = tape.concat(&[e, x, e2]).unwrap();
        let (g, b) = (tape.param(store, gamma), tape.param(store, beta));
        let h = tape
            .batch_norm(c, g, b, BatchNormMode::Train { eps: 1e-3 })
            .unwrap();
        let z1 = tape.linear(h, wv, None).unwrap();
        let z = tape.add(z1, z2).unwrap();
        let loss = tape
            .bce_with_logits(
                z,
                BceTarget {
                    labels: &labels,
                    weights: None,
                    pos_weight: 1.0,
                    denom: None,
                },
            )
            .unwrap();
        let after = tape.relu(z).unwrap();
        (loss, [x, e, c, wv, vv, z1, z2, z, after, e2, h, g, b])
    };
    let mut reused = Tape::new();
    let mut g = Grads::zeros_like(&store);
    // A first step with other parameters leaves other numbers in every slot.
    let mut other = ParamStore::new();
    other.add_table("e", Matrix::from_fn(9, 4, |_, _| 7.0));
    other.add("w", Matrix::from_fn(11, 1, |_, _| -3.0));
    other.add("v", Matrix::from_fn(4, 1, |_, _| 5.0));
    other.add("gamma", Matrix::from_fn(1, 11, |_, _| 4.0));
    other.add("beta", Matrix::from_fn(1, 11, |_, _| -2.0));
    let (loss, _) = record(&mut reused, &other);
    reused.backward(loss, &mut g).unwrap();
    let (loss, vars) = record(&mut reused, &store);
    let mut got = Grads::zeros_like(&store);
    reused.backward(loss, &mut got).unwrap();
    let mut fresh = Tape::new();
    let (loss, fresh_vars) = record(&mut fresh, &store);
    let mut want = Grads::zeros_like(&store);
    fresh.backward(loss, &mut want).unwrap();
    assert_eq!(got.dense, want.dense);
    assert_eq!(got.sparse[0].ids, want.sparse[0].ids);
    assert_eq!(got.sparse[0].rows, want.sparse[0].rows);
    // The concatenation's blocks are its inputs' gradients, and the embedding that two
    // ops read has the sum of both.
    let (ge, gc, ge2) = (
        reused.grad(vars[1]),
        reused.grad(vars[2]),
        reused.grad(vars[9]),
    );
    for r in 0..5 {
        assert_eq!(&gc[r * 11 + 7..r * 11 + 11], &ge2[r * 4..r * 4 + 4]);
    }
    assert!((0..20).any(|i| ge[i] != gc[(i / 4) * 11 + i % 4]));
    for (a, b) in vars.iter().zip(&fresh_vars) {
        assert_eq!(reused.grad(*a), fresh.grad(*b));
        assert_eq!(reused.grad(*a).len(), reused.value(*a).len());
    }
    // No gradient reaches the data or the value after the loss: zeros, not old numbers.
    for v in [vars[0], vars[8]] {
        assert!(reused.grad(v).iter().all(|&g| g == 0.0));
    }
    assert!(reused.grad(vars[1]).iter().any(|&g| g != 0.0));
    // Before a backward pass, no gradient is reported.
    let _ = record(&mut reused, &store);
    assert!(reused.grad(vars[1]).is_empty());
}

/// Table Adam on a table large enough to be split into blocks of rows over the pool's
/// threads: the same bits on 1, 2 and 3 threads, and a plain per-row Adam's values.
#[test]
fn table_adam_split_over_threads_matches_one_thread_and_a_plain_loop() {
    let (rows, dim) = (20011usize, 16usize);
    let mut seed = 11u64;
    let mut rnd = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as u32
    };
    let mut store = ParamStore::new();
    let e = store.add_table(
        "e",
        Matrix::from_fn(rows, dim, |r, c| ((r * 7 + c) % 13) as f32 * 0.1 - 0.6),
    );
    // Three steps of 12,000 ids each, with repeats: enough rows for the update to be split.
    let steps: Vec<(Vec<u32>, Vec<f32>)> = (0..3)
        .map(|_| {
            let ids: Vec<u32> = (0..12_000).map(|_| rnd() % rows as u32).collect();
            let g = (0..ids.len() * dim)
                .map(|_| (rnd() % 2001) as f32 / 1000.0 - 1.0)
                .collect();
            (ids, g)
        })
        .collect();
    let cfg = AdamConfig {
        lr: 0.01,
        ..AdamConfig::default()
    };
    for lazy in [true, false] {
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut s = store.clone();
                let mut opt = LazyAdam::new(cfg, &s, lazy);
                for (ids, g) in &steps {
                    let mut grads = Grads::zeros_like(&s);
                    for (k, &id) in ids.iter().enumerate() {
                        grads.sparse[0].push(id, &g[k * dim..(k + 1) * dim]);
                    }
                    opt.step(&mut s, &mut grads);
                }
                s.table(e).to_vec()
            })
        };
        let one = run(1);
        for threads in [2, 3] {
            assert!(run(threads) == one, "lazy = {lazy}, {threads} threads");
        }
        // A plain loop: sum each row's gradient, then Adam on the rows seen (lazy) or on
        // every row (dense), in f64.
        let mut p: Vec<f64> = store.table(e).to_vec().iter().map(|&x| x as f64).collect();
        let (mut m, mut v) = (vec![0.0f64; p.len()], vec![0.0f64; p.len()]);
        let (b1, b2) = (cfg.beta1 as f64, cfg.beta2 as f64);
        for (t, (ids, g)) in steps.iter().enumerate() {
            let t = t as i32 + 1;
            let lr_t = cfg.lr as f64 * (1.0 - b2.powi(t)).sqrt() / (1.0 - b1.powi(t));
            let mut sum = vec![0.0f64; p.len()];
            let mut seen = vec![false; rows];
            for (k, &id) in ids.iter().enumerate() {
                seen[id as usize] = true;
                for c in 0..dim {
                    sum[id as usize * dim + c] += g[k * dim + c] as f64;
                }
            }
            for r in (0..rows).filter(|&r| seen[r] || !lazy) {
                for i in r * dim..(r + 1) * dim {
                    m[i] = b1 * m[i] + (1.0 - b1) * sum[i];
                    v[i] = b2 * v[i] + (1.0 - b2) * sum[i] * sum[i];
                    p[i] -= lr_t * m[i] / (v[i].sqrt() + cfg.eps as f64);
                }
            }
        }
        for (i, (&a, &b)) in one.iter().zip(&p).enumerate() {
            let tol = tensor::tolerance::APPROXIMATE as f64 * (1.0 + b.abs());
            assert!(
                (a as f64 - b).abs() <= tol,
                "lazy = {lazy}, element {i}: {a} against {b}"
            );
        }
    }
}
