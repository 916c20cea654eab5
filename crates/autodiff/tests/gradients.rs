//! Every op's gradient against central finite differences.
//!
//! Each check builds a scalar loss `L = sum(R * op(params))` with a fixed random `R`, runs
//! backward, then perturbs every parameter element by `+-h` and compares
//! the Richardson-extrapolated central difference `(4 D(h/2) - D(h)) / 3`, where
//! `D(h) = (L(p + h) - L(p - h)) / 2h`, with the analytic gradient. Shapes come from proptest and
//! include one-row batches and widths that are not multiples of the SIMD width. Values are
//! kept away from the kinks of ReLU and PReLU (|x| >= 0.1 > h), where the derivative jumps.

use autodiff::{
    BatchNormMode, BceTarget, Grads, ParamId, ParamStore, Pooling, Result, TableId, Tape, Var,
};
use proptest::prelude::*;
use tensor::Matrix;

/// Finite-difference step.
const H: f32 = 1e-2;
/// Allowed disagreement, relative to the larger magnitude, plus an absolute floor. A plain
/// central difference errs by O(h^2) times the third derivative, which is not small where
/// the op curves sharply (batch normalisation of three rows whose values nearly agree was
/// 2.4% off at h = 1e-2); the extrapolation cancels that term, leaving O(h^4). f32
/// rounding in L adds about 1e-7 |L| / h.
const REL: f64 = 2e-2;
const ABS: f64 = 2e-3;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    /// Magnitude in [0.1, 1], random sign.
    fn away_from_zero(&mut self) -> f32 {
        let v = self.next();
        v.signum() * (0.1 + 0.9 * v.abs())
    }
}

fn matrix(rng: &mut Rng, rows: usize, cols: usize) -> Matrix {
    Matrix::from_fn(rows, cols, |_, _| rng.away_from_zero())
}

type Build = dyn Fn(&mut Tape, &ParamStore) -> Result<Var>;

/// `sum(R * y)` on top of `build`, with `R` fixed by `seed`.
fn loss(tape: &mut Tape, store: &ParamStore, build: &Build, seed: u64) -> Result<Var> {
    let y = build(tape, store)?;
    let (n, c) = tape.shape(y);
    if (n, c) == (1, 1) {
        return Ok(y);
    }
    let mut rng = Rng(seed);
    let r: Vec<f32> = (0..n * c).map(|_| rng.next()).collect();
    let rv = tape.input(n, c, &r)?;
    let p = tape.mul(y, rv)?;
    tape.sum(p)
}

fn eval(store: &ParamStore, build: &Build, seed: u64) -> f64 {
    let mut tape = Tape::new();
    let l = loss(&mut tape, store, build, seed).unwrap();
    tape.value(l)[0] as f64
}

fn close(analytic: f64, numeric: f64) -> bool {
    (analytic - numeric).abs() <= REL * analytic.abs().max(numeric.abs()) + ABS
}

/// The derivative of L in one parameter element, whose value is `orig` and which `set`
/// writes: Richardson's extrapolation of central differences at steps `H` and `H / 2`.
/// The element is restored before returning.
fn numeric(
    set: impl Fn(&mut ParamStore, f32),
    store: &mut ParamStore,
    build: &Build,
    seed: u64,
    orig: f32,
) -> f64 {
    let mut central = |h: f32| {
        // The steps actually taken, after f32 rounding of orig +- h.
        let (hi, lo) = (orig + h, orig - h);
        set(store, hi);
        let up = eval(store, build, seed);
        set(store, lo);
        let down = eval(store, build, seed);
        set(store, orig);
        (up - down) / (hi as f64 - lo as f64)
    };
    let (coarse, fine) = (central(H), central(H / 2.0));
    (4.0 * fine - coarse) / 3.0
}

/// Checks every dense parameter and every row of every table against finite differences.
fn check(name: &str, store: &mut ParamStore, build: &Build) {
    let seed = 77;
    let mut tape = Tape::new();
    let l = loss(&mut tape, store, build, seed).unwrap();
    let mut grads = Grads::zeros_like(store);
    tape.backward(l, &mut grads).unwrap();
    for p in 0..store.dense.len() {
        let (rows, cols) = store.dense[p].value.shape();
        for i in 0..rows {
            for j in 0..cols {
                let numeric = numeric(
                    |s, v| s.dense[p].value.set(i, j, v),
                    store,
                    build,
                    seed,
                    store.dense[p].value.get(i, j),
                );
                let analytic = grads.dense[p][i * cols + j] as f64;
                assert!(
                    close(analytic, numeric),
                    "{name}: d/d {}[{i},{j}]: analytic {analytic}, numeric {numeric}",
                    store.dense[p].name
                );
            }
        }
    }
    for t in 0..store.tables.len() {
        let mut sparse = grads.sparse[t].clone();
        sparse.coalesce();
        let (rows, cols) = store.tables[t].value.shape();
        for i in 0..rows {
            let k = sparse.ids.iter().position(|&id| id as usize == i);
            for j in 0..cols {
                let numeric = numeric(
                    |s, v| s.tables[t].value.set(i, j, v),
                    store,
                    build,
                    seed,
                    store.tables[t].value.get(i, j),
                );
                let analytic = k.map_or(0.0, |k| sparse.rows[k * cols + j] as f64);
                assert!(
                    close(analytic, numeric),
                    "{name}: d/d table {t}[{i},{j}]: analytic {analytic}, numeric {numeric}"
                );
            }
        }
    }
}

fn store_with(rng: &mut Rng, shapes: &[(usize, usize)]) -> (ParamStore, Vec<ParamId>) {
    let mut store = ParamStore::new();
    let ids = shapes
        .iter()
        .enumerate()
        .map(|(k, &(r, c))| store.add(format!("p{k}"), matrix(rng, r, c)))
        .collect();
    (store, ids)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn linear(n in 1usize..5, i in 1usize..19, o in 1usize..19, bias: bool, seed: u64) {
        let mut rng = Rng(seed);
        let (mut store, p) = store_with(&mut rng, &[(n, i), (i, o), (1, o)]);
        let build = move |t: &mut Tape, s: &ParamStore| {
            let (x, w, b) = (t.param(s, p[0]), t.param(s, p[1]), t.param(s, p[2]));
            t.linear(x, w, if bias { Some(b) } else { None })
        };
        check("linear", &mut store, &build);
    }

    #[test]
    fn add_scale_mul(n in 1usize..5, c in 1usize..19, broadcast: bool, seed: u64) {
        let mut rng = Rng(seed);
        let (mut store, p) = store_with(&mut rng, &[(n, c), (n, c), (1, c), (n, 1)]);
        let build = move |t: &mut Tape, s: &ParamStore| {
            let (a, b, row, col) = (t.param(s, p[0]), t.param(s, p[1]), t.param(s, p[2]), t.param(s, p[3]));
            let sum = t.add(a, if broadcast { row } else { b })?;
            let scaled = t.scale(sum, -1.5)?;
            let prod = t.mul(scaled, if broadcast { col } else { b })?;
            // a value used twice: gradients must accumulate
            t.mul(prod, a)
        };
        check("add/scale/mul", &mut store, &build);
    }

    #[test]
    fn activations(n in 1usize..5, c in 1usize..19, seed: u64) {
        let mut rng = Rng(seed);
        let (mut store, p) = store_with(&mut rng, &[(n, c), (1, c)]);
        for which in 0..5 {
            let p = p.clone();
            let build = move |t: &mut Tape, s: &ParamStore| {
                let (x, a) = (t.param(s, p[0]), t.param(s, p[1]));
                match which {
                    0 => t.relu(x),
                    1 => t.prelu(x, a),
                    2 => t.sigmoid(x),
                    3 => t.tanh(x),
                    _ => t.softmax(x),
                }
            };
            check(["relu", "prelu", "sigmoid", "tanh", "softmax"][which], &mut store, &build);
        }
    }

    #[test]
    fn loss_ops(n in 1usize..5, c in 1usize..19, seed: u64) {
        // softplus everywhere; reciprocal of values of magnitude 0.1 to 1; clamp into
        // [-0.5, 0.5], entries on both sides of each bound (stop_gradient, whose reference
        // is not a difference quotient, is checked at known points below).
        let mut rng = Rng(seed);
        let (mut store, p) = store_with(&mut rng, &[(n, c)]);
        // Keep every entry at least 0.05 from the clamp bounds +-0.5 (a central difference
        // across a bound is no reference).
        for v in store.dense[0].value.as_mut_slice() {
            if (v.abs() - 0.5).abs() < 0.05 {
                *v += 0.1 * v.signum();
            }
        }
        for which in 0..4 {
            let p = p.clone();
            let build = move |t: &mut Tape, s: &ParamStore| {
                let x = t.param(s, p[0]);
                match which {
                    0 => t.softplus(x),
                    1 => t.reciprocal(x),
                    2 => {
                        let y = t.clamp(x, -0.5, 0.5)?;
                        t.mul(y, x)
                    }
                    _ => {
                        let y = t.clamp(x, -0.5, 0.5)?;
                        t.reciprocal(y)
                    }
                }
            };
            check(["softplus", "reciprocal", "clamp", "clamp/reciprocal"][which], &mut store, &build);
        }
    }

    #[test]
    fn concat_split_and_reductions(n in 1usize..5, c1 in 1usize..10, c2 in 1usize..10, seed: u64) {
        let mut rng = Rng(seed);
        let (mut store, p) = store_with(&mut rng, &[(n, c1), (n, c2)]);
        let build = move |t: &mut Tape, s: &ParamStore| {
            let (a, b) = (t.param(s, p[0]), t.param(s, p[1]));
            let cat = t.concat(&[a, b, a])?;
            let mid = t.split(cat, c1 / 2, c1 + c2 - c1 / 2)?;
            let rows = t.sum_cols(mid)?;
            let sq = t.mul(rows, rows)?;
            let m = t.mean(sq)?;
            let total = t.sum(cat)?;
            let both = t.concat(&[m, total])?;
            t.sum(both)
        };
        check("concat/split/sum", &mut store, &build);
    }

    #[test]
    fn gated_mixture(n in 1usize..5, c in 1usize..12, k in 1usize..5, seed: u64) {
        let mut rng = Rng(seed);
        let mut shapes = vec![(n, c); k];
        shapes.push((n, k));
        let (mut store, p) = store_with(&mut rng, &shapes);
        let build = move |t: &mut Tape, s: &ParamStore| {
            let xs: Vec<Var> = p[..k].iter().map(|&id| t.param(s, id)).collect();
            let logits = t.param(s, p[k]);
            let gate = t.softmax(logits)?;
            // the first expert twice: its gradient must accumulate from both slots
            let mut inputs = xs.clone();
            inputs[k - 1] = xs[0];
            let y = t.mix(&inputs, gate)?;
            t.mul(y, xs[0])
        };
        check("mix", &mut store, &build);
    }

    #[test]
    fn attention_over_two_vectors(n in 1usize..5, d in 1usize..9, seed: u64) {
        // AITM's transfer: scores <q u, k u> / sqrt(d) for u in {p, q}, softmax over the
        // two, mix of the values.
        let mut rng = Rng(seed);
        let (mut store, p) = store_with(&mut rng, &[(n, d), (n, d), (d, d), (d, d), (d, d)]);
        let build = move |t: &mut Tape, s: &ParamStore| {
            let (a, b) = (t.param(s, p[0]), t.param(s, p[1]));
            let (wq, wk, wv) = (t.param(s, p[2]), t.param(s, p[3]), t.param(s, p[4]));
            let mut scores = Vec::new();
            let mut values = Vec::new();
            for u in [a, b] {
                let (q, k) = (t.linear(u, wq, None)?, t.linear(u, wk, None)?);
                let qk = t.mul(q, k)?;
                let dot = t.sum_cols(qk)?;
                scores.push(t.scale(dot, 1.0 / (d as f32).sqrt())?);
                values.push(t.linear(u, wv, None)?);
            }
            let sc = t.concat(&scores)?;
            let w = t.softmax(sc)?;
            t.mix(&values, w)
        };
        check("attention", &mut store, &build);
    }

    #[test]
    fn product_logit(n in 1usize..5, c in 1usize..9, seed: u64) {
        let mut rng = Rng(seed);
        let (mut store, p) = store_with(&mut rng, &[(n, c), (n, c)]);
        let build = move |t: &mut Tape, s: &ParamStore| {
            let (a, b) = (t.param(s, p[0]), t.param(s, p[1]));
            // logits over a useful range, not only [-1, 1]
            let (a3, b2) = (t.scale(a, 3.0)?, t.scale(b, -2.0)?);
            t.product_logit(a3, b2)
        };
        check("product_logit", &mut store, &build);
    }

    #[test]
    fn batch_norm(n in 2usize..7, c in 1usize..12, train: bool, seed: u64) {
        let mut rng = Rng(seed);
        let (mut store, p) = store_with(&mut rng, &[(n, c), (1, c), (1, c)]);
        let mean: Vec<f32> = (0..c).map(|_| rng.next() * 0.3).collect();
        let var: Vec<f32> = (0..c).map(|_| 1.0 + rng.next() * 0.5).collect();
        let build = move |t: &mut Tape, s: &ParamStore| {
            let (x, g, b) = (t.param(s, p[0]), t.param(s, p[1]), t.param(s, p[2]));
            let mode = if train { BatchNormMode::Train { eps: 1e-3 } } else { BatchNormMode::Eval { mean: &mean, var: &var, eps: 1e-3 } };
            t.batch_norm(x, g, b, mode)
        };
        check("batch_norm", &mut store, &build);
    }

    #[test]
    fn embeddings(n in 1usize..5, d in 1usize..10, seed: u64) {
        let mut rng = Rng(seed);
        let mut store = ParamStore::new();
        let table: TableId = store.add_table("e", matrix(&mut rng, 6, d));
        let ids: Vec<u32> = (0..n).map(|r| ((r * 5 + seed as usize) % 6) as u32).collect();
        // bags: empty, repeated ids, several ids
        let mut offsets = vec![0u64];
        let mut bag_ids = vec![];
        for r in 0..n {
            for k in 0..(r % 3) {
                bag_ids.push(((r + k * 2) % 6) as u32);
            }
            if r % 3 == 2 { bag_ids.push(bag_ids[bag_ids.len() - 1]); }
            offsets.push(bag_ids.len() as u64);
        }
        for pooling in [Pooling::Sum, Pooling::Mean] {
            let (ids, offsets, bag_ids) = (ids.clone(), offsets.clone(), bag_ids.clone());
            let build = move |t: &mut Tape, s: &ParamStore| {
                let a = t.embedding(s, table, &ids)?;
                let b = t.embedding_bag(s, table, &offsets, &bag_ids, pooling)?;
                let cat = t.concat(&[a, b])?;
                t.tanh(cat)
            };
            check("embedding", &mut store, &build);
        }
    }

    #[test]
    fn weighted_bce(n in 1usize..8, pos_weight in 0.5f32..50.0, weighted: bool, seed: u64) {
        let mut rng = Rng(seed);
        let (mut store, p) = store_with(&mut rng, &[(n, 1)]);
        let labels: Vec<f32> = (0..n).map(|r| (r % 2) as f32).collect();
        let weights: Vec<f32> = (0..n).map(|_| 0.5 + rng.next().abs()).collect();
        let build = move |t: &mut Tape, s: &ParamStore| {
            let z = t.param(s, p[0]);
            let z3 = t.scale(z, 3.0)?;
            let target = BceTarget { labels: &labels, weights: if weighted { Some(&weights) } else { None }, pos_weight, denom: None };
            t.bce_with_logits(z3, target)
        };
        check("bce", &mut store, &build);
    }
}

#[test]
fn bce_matches_its_definition_at_known_points() {
    // x = 0: softplus(0) = ln 2; y = 1, p = 3 -> 3 ln 2; y = 0 -> ln 2. Mean of both: 2 ln 2.
    let mut t = Tape::new();
    let z = t.input(2, 1, &[0.0, 0.0]).unwrap();
    let l = t
        .bce_with_logits(
            z,
            BceTarget {
                labels: &[1.0, 0.0],
                weights: None,
                pos_weight: 3.0,
                denom: None,
            },
        )
        .unwrap();
    assert!((t.value(l)[0] - 2.0 * std::f32::consts::LN_2).abs() < 1e-6);
    // Huge logits stay finite: y = 0, x = 100 -> loss 100 (softplus(100)); y = 1, x = -100 -> 100 p.
    let z = t.input(2, 1, &[100.0, -100.0]).unwrap();
    let l = t
        .bce_with_logits(
            z,
            BceTarget {
                labels: &[0.0, 1.0],
                weights: Some(&[1.0, 2.0]),
                pos_weight: 2.0,
                denom: Some(1.0),
            },
        )
        .unwrap();
    assert!(
        (t.value(l)[0] - (100.0 + 2.0 * 2.0 * 100.0)).abs() < 1e-3,
        "{}",
        t.value(l)[0]
    );
}

#[test]
fn loss_ops_at_known_points() {
    let mut t = Tape::new();
    let x = t.input(1, 4, &[0.0, 100.0, -100.0, 2.0]).unwrap();
    let sp = t.softplus(x).unwrap();
    let v = t.value(sp).to_vec();
    assert!((v[0] - std::f32::consts::LN_2).abs() < 1e-6);
    assert_eq!(v[1], 100.0);
    assert!(v[2] >= 0.0 && v[2] < 1e-40);
    assert!((v[3] - (1.0f32 + 2.0f32.exp()).ln()).abs() < 1e-6);
    let c = t.clamp(x, -1.0, 1.0).unwrap();
    assert_eq!(t.value(c), &[0.0, 1.0, -1.0, 1.0]);
    assert!(t.clamp(x, 1.0, -1.0).is_err());
    assert!(t.clamp(x, f32::NAN, 1.0).is_err());
    let q = t.input(1, 3, &[2.0, -0.5, 4.0]).unwrap();
    let r = t.reciprocal(q).unwrap();
    assert_eq!(t.value(r), &[0.5, -2.0, 0.25]);
    // stop_gradient: the same value, no gradient into the input.
    let mut store = ParamStore::new();
    let id = store.add("w", Matrix::from_slice(1, 2, &[0.3, -0.7]).unwrap());
    let mut t = Tape::new();
    let w = t.param(&store, id);
    let k = t.stop_gradient(w).unwrap();
    assert_eq!(t.value(k), t.value(w));
    let l = t.sum(k).unwrap();
    let mut g = Grads::zeros_like(&store);
    t.backward(l, &mut g).unwrap();
    assert_eq!(g.dense[0], vec![0.0, 0.0]);
    // d/dw [sigmoid(w) stop(w)] = sigmoid'(w) w: only the path outside the stop.
    let mut t = Tape::new();
    let w = t.param(&store, id);
    let k = t.stop_gradient(w).unwrap();
    let s = t.sigmoid(w).unwrap();
    let p = t.mul(s, k).unwrap();
    let l = t.sum(p).unwrap();
    let mut g = Grads::zeros_like(&store);
    t.backward(l, &mut g).unwrap();
    for (i, &wv) in [0.3f32, -0.7].iter().enumerate() {
        let sg = 1.0 / (1.0 + (-wv).exp());
        assert!((g.dense[0][i] - sg * (1.0 - sg) * wv).abs() < 1e-6);
    }
}
