//! Element-wise kernels against f64 references, finite differences and their invariants,
//! on every tier this CPU has; SIMD tiers must match the portable code bit for bit.

use proptest::prelude::*;
use tensor::Tier;
use tensor::ops;
use tensor::tolerance::{APPROXIMATE, EXACT};

fn sigmoid64(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        x.exp() / (1.0 + x.exp())
    }
}
fn softplus64(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// Values that stress every branch: zero, tiny, the tanh switch at 1/8, saturation, and
/// the largest magnitudes the issue names.
const SPECIAL: [f32; 20] = [
    0.0, -0.0, 1e-30, -1e-30, 1e-4, -1e-4, 0.124, 0.126, -0.125, 1.0, -1.0, 5.5, -9.0, 20.0, -30.0,
    88.0, -88.0, 100.0, -100.0, -1e4,
];

/// Relative-or-absolute closeness: `|got - want| <= tol * max(|want|, floor)`.
fn close(got: f32, want: f64, tol: f32, floor: f64) -> bool {
    (got as f64 - want).abs() <= tol as f64 * want.abs().max(floor)
}

type Unary = fn(Tier, &[f32], &mut [f32]);
type Reference = fn(f64) -> f64;

fn unary_cases() -> Vec<(&'static str, Unary, Reference)> {
    vec![
        ("relu", ops::relu_with, |x| x.max(0.0)),
        ("sigmoid", ops::sigmoid_with, sigmoid64),
        ("log_sigmoid", ops::log_sigmoid_with, |x| -softplus64(-x)),
        ("softplus", ops::softplus_with, softplus64),
        ("tanh", ops::tanh_with, f64::tanh),
    ]
}

fn check_unary(xs: &[f32]) {
    for (name, f, reference) in unary_cases() {
        let mut portable = vec![f32::NAN; xs.len()];
        f(Tier::Portable, xs, &mut portable);
        for (i, (&x, &y)) in xs.iter().zip(&portable).enumerate() {
            // Outputs below 1e-30 are compared absolutely (subnormal tails).
            assert!(
                close(y, reference(x as f64), APPROXIMATE, 1e-30),
                "{name}({x}) = {y}, want {} at {i}",
                reference(x as f64)
            );
        }
        for tier in Tier::supported() {
            let mut y = vec![f32::NAN; xs.len()];
            f(tier, xs, &mut y);
            for (a, b) in y.iter().zip(&portable) {
                assert!(
                    a.to_bits() == b.to_bits() || (a - b).abs() <= EXACT,
                    "{name} on {tier}: {a} vs portable {b}"
                );
            }
        }
    }
}

#[test]
fn special_values_and_invariants() {
    check_unary(&SPECIAL);
    let mut y = [0.0f32; SPECIAL.len()];
    for tier in Tier::supported() {
        ops::sigmoid_with(tier, &SPECIAL, &mut y);
        assert!(
            y.iter().all(|v| (0.0..=1.0).contains(v)),
            "{tier}: sigmoid outside [0, 1]: {y:?}"
        );
        assert_eq!(y[17], 1.0, "sigmoid(100) is exactly 1");
        assert!(
            (y[18] as f64 - sigmoid64(-100.0)).abs() <= 2e-45,
            "sigmoid(-100) = {}",
            y[18]
        );
        ops::tanh_with(tier, &SPECIAL, &mut y);
        assert!(y.iter().all(|v| (-1.0..=1.0).contains(v)));
        assert_eq!((y[17], y[18]), (1.0, -1.0));
        ops::log_sigmoid_with(tier, &SPECIAL, &mut y);
        assert_eq!(y[18], -100.0);
        assert!(y.iter().all(|v| v.is_finite() && *v <= 0.0));
        ops::softplus_with(tier, &SPECIAL, &mut y);
        assert_eq!(y[17], 100.0);
        assert!(y.iter().all(|v| v.is_finite() && *v >= 0.0));
    }
}

#[test]
fn exp_and_ln_are_accurate_over_their_range() {
    let mut x = -103.9f32;
    while x < 88.7 {
        let want = (x as f64).exp();
        let got = ops::math::exp(x);
        assert!(
            close(got, want, 2.5e-7, 1e-37) || (got as f64 - want).abs() <= 2e-45,
            "exp({x}) = {got}, want {want}"
        );
        x += 0.0137;
    }
    assert_eq!(ops::math::exp(200.0), f32::INFINITY);
    assert_eq!(ops::math::exp(-200.0), 0.0);
    assert!(ops::math::exp(f32::NAN).is_nan());
    let mut x = 1e-30f32;
    while x < 1e30 {
        assert!(
            close(ops::math::ln(x), (x as f64).ln(), 2.5e-7, 1e-7),
            "ln({x})"
        );
        x *= 1.37;
    }
    for z in [0.0f32, 1e-30, 1e-8, 1e-4, 0.5, 1.0] {
        assert!(
            close(ops::math::ln_1p(z), (z as f64).ln_1p(), 2.5e-7, 1e-38),
            "ln_1p({z})"
        );
    }
}

/// `(f(x + h) - f(x - h)) / 2h` in f64 around an f32 point, through the f32 kernel.
fn central_difference(f: Unary, x: f32, h: f32) -> f64 {
    let (mut a, mut b) = ([0.0f32], [0.0f32]);
    f(Tier::Portable, &[x + h], &mut a);
    f(Tier::Portable, &[x - h], &mut b);
    (a[0] as f64 - b[0] as f64) / (2.0 * h as f64)
}

#[test]
fn derivatives_match_finite_differences() {
    let xs: Vec<f32> = (-40..=40).map(|i| i as f32 * 0.173 + 0.05).collect();
    let h = 1e-2;
    for tier in Tier::supported() {
        let n = xs.len();
        let dy = vec![1.0f32; n];
        let (mut y, mut dx) = (vec![0.0; n], vec![0.0; n]);
        ops::sigmoid_with(tier, &xs, &mut y);
        ops::sigmoid_backward_with(tier, &y, &dy, &mut dx);
        for i in 0..n {
            let fd = central_difference(ops::sigmoid_with, xs[i], h);
            assert!(
                (dx[i] as f64 - fd).abs() <= 1e-3 * fd.abs().max(1e-2),
                "{tier} sigmoid'({}) {} vs {fd}",
                xs[i],
                dx[i]
            );
        }
        ops::tanh_with(tier, &xs, &mut y);
        ops::tanh_backward_with(tier, &y, &dy, &mut dx);
        for i in 0..n {
            let fd = central_difference(ops::tanh_with, xs[i], h);
            assert!(
                (dx[i] as f64 - fd).abs() <= 1e-3 * fd.abs().max(1e-2),
                "{tier} tanh'({}) {} vs {fd}",
                xs[i],
                dx[i]
            );
        }
        ops::relu_backward_with(tier, &xs, &dy, &mut dx);
        for i in 0..n {
            let fd = central_difference(ops::relu_with, xs[i], h);
            assert!((dx[i] as f64 - fd).abs() <= 1e-3, "{tier} relu'({})", xs[i]);
        }
        // PReLU with 3 columns: dx against finite differences, dslopes against the f64 sum.
        let slopes = [0.0f32, 0.25, -0.5];
        let rows = n / 3;
        let x = &xs[..rows * 3];
        let dyv: Vec<f32> = (0..rows * 3).map(|i| ((i * 7) % 5) as f32 - 2.0).collect();
        let mut dxp = vec![0.0; rows * 3];
        let mut ds = [1.0f32; 3];
        ops::prelu_backward_add_with(tier, x, &slopes, &dyv, &mut dxp, &mut ds);
        for c in 0..3 {
            let want: f64 = (0..rows)
                .filter(|r| x[r * 3 + c] <= 0.0)
                .map(|r| dyv[r * 3 + c] as f64 * x[r * 3 + c] as f64)
                .sum();
            assert!(
                (ds[c] as f64 - (1.0 + want)).abs() <= 1e-5 * want.abs().max(1.0),
                "dslope[{c}] {} vs {}",
                ds[c],
                1.0 + want
            );
        }
        for i in 0..rows * 3 {
            let f = |v: f32| {
                let mut xx = x.to_vec();
                xx[i] = v;
                let mut y = vec![0.0; xx.len()];
                ops::prelu_with(Tier::Portable, &xx, &slopes, &mut y);
                y.iter()
                    .zip(&dyv)
                    .map(|(a, b)| *a as f64 * *b as f64)
                    .sum::<f64>()
            };
            let fd = (f(x[i] + h) - f(x[i] - h)) / (2.0 * h as f64);
            assert!(
                (dxp[i] as f64 - fd).abs() <= 1e-3 * fd.abs().max(1.0),
                "prelu dx[{i}]"
            );
        }
    }
}

#[test]
fn softmax_rows_sum_to_one_and_backward_matches_finite_differences() {
    let cols = 5;
    let x: Vec<f32> = (0..4 * cols)
        .map(|i| ((i * 37) % 11) as f32 * 0.7 - 3.0)
        .collect();
    let dy: Vec<f32> = (0..4 * cols).map(|i| ((i * 13) % 7) as f32 - 3.0).collect();
    for tier in Tier::supported() {
        let mut y = vec![0.0; x.len()];
        ops::softmax_rows_with(tier, &x, cols, &mut y);
        for r in 0..4 {
            let row = &x[r * cols..(r + 1) * cols];
            let m = row
                .iter()
                .cloned()
                .fold(f64::NEG_INFINITY, |a, b| a.max(b as f64));
            let z: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
            for c in 0..cols {
                let want = (row[c] as f64 - m).exp() / z;
                assert!(close(y[r * cols + c], want, APPROXIMATE, 1e-30));
            }
        }
        let mut dx = vec![0.0; x.len()];
        ops::softmax_rows_backward_with(tier, &y, &dy, cols, &mut dx);
        let h = 1e-2f32;
        for i in 0..x.len() {
            let f = |v: f32| {
                let mut xx = x.clone();
                xx[i] = v;
                let mut yy = vec![0.0; xx.len()];
                ops::softmax_rows_with(Tier::Portable, &xx, cols, &mut yy);
                yy.iter()
                    .zip(&dy)
                    .map(|(a, b)| *a as f64 * *b as f64)
                    .sum::<f64>()
            };
            let fd = (f(x[i] + h) - f(x[i] - h)) / (2.0 * h as f64);
            assert!(
                (dx[i] as f64 - fd).abs() <= 1e-3 * fd.abs().max(1.0),
                "softmax dx[{i}] {} vs {fd}",
                dx[i]
            );
        }
    }
    // Huge logits do not overflow.
    let mut y = [0.0f32; 2];
    ops::softmax_rows(&[1e4, 1e4 - 1.0], 2, &mut y);
    assert!(close(y[0], sigmoid64(1.0), APPROXIMATE, 0.0));
}

#[test]
fn bias_add_column_sums_and_vector_updates() {
    for tier in Tier::supported() {
        let rows = 1000;
        let cols = 300; // crosses the 256-column and 128-row blocks of the column sum
        let x: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7919) % 1000) as f32 * 1e-3)
            .collect();
        let mut out = vec![0.5f32; cols];
        ops::add_col_sums_with(tier, &x, &mut out);
        for c in 0..cols {
            let want: f64 = 0.5 + (0..rows).map(|r| x[r * cols + c] as f64).sum::<f64>();
            assert!(
                close(out[c], want, 1e-6, 1.0),
                "col {c}: {} vs {want}",
                out[c]
            );
        }
        let mut y = x.clone();
        let bias: Vec<f32> = (0..cols).map(|c| c as f32).collect();
        ops::add_bias_rows_with(tier, &mut y, &bias);
        assert_eq!(y[5 * cols + 7], x[5 * cols + 7] + 7.0);
        let mut v = vec![1.0f32; 37];
        ops::axpy_with(tier, 2.0, &[3.0; 37], &mut v);
        ops::scale_with(tier, 0.5, &mut v);
        assert!(v.iter().all(|&e| e == 3.5));
        let mut o = vec![0.0; 37];
        ops::mul_with(tier, &v, &v, &mut o);
        ops::add_with(tier, &o.clone(), &v, &mut o);
        assert!(o.iter().all(|&e| e == 3.5 * 3.5 + 3.5));
    }
}

#[test]
#[should_panic(expected = "relu: slice lengths differ")]
fn length_mismatch_panics_with_the_op_name() {
    ops::relu(&[1.0, 2.0], &mut [0.0]);
}

#[test]
fn prelu_scale_shift_is_prelu_then_affine() {
    let x: Vec<f32> = (0..21).map(|i| i as f32 * 0.5 - 5.0).collect();
    let (slopes, scale, shift) = (
        [0.1f32, -0.2, 0.0],
        [2.0f32, 0.5, -1.0],
        [0.25f32, 0.0, 3.0],
    );
    for tier in Tier::supported() {
        let mut y = x.clone();
        ops::prelu_scale_shift_with(tier, &mut y, &slopes, &scale, &shift);
        for (i, (&v, &got)) in x.iter().zip(&y).enumerate() {
            let c = i % 3;
            let want = scale[c] * if v > 0.0 { v } else { slopes[c] * v } + shift[c];
            assert_eq!(got, want, "{tier} element {i}");
        }
    }
}

#[test]
fn normalize_rows_matches_its_formula_on_every_tier() {
    // 37 columns: a full AVX-512 vector, a remainder, several rows.
    let c = 37;
    let x: Vec<f32> = (0..5 * c).map(|i| (i as f32 * 0.37).sin() * 4.0).collect();
    let mean: Vec<f32> = (0..c).map(|j| j as f32 * 0.1 - 1.0).collect();
    let scale: Vec<f32> = (0..c).map(|j| 0.5 + j as f32 * 0.03).collect();
    let shift: Vec<f32> = (0..c).map(|j| (j as f32).cos()).collect();
    for tier in Tier::supported() {
        let mut y = vec![f32::NAN; x.len()];
        ops::normalize_rows_with(tier, &x, &mean, &scale, &shift, &mut y);
        for (i, (&v, &got)) in x.iter().zip(&y).enumerate() {
            let j = i % c;
            let want = (v - mean[j]) * scale[j] + shift[j];
            assert!(
                (got - want).abs() <= 1e-6 * want.abs().max(1.0),
                "{tier} element {i}: {got} vs {want}"
            );
        }
    }
    let mut empty: [f32; 0] = [];
    ops::normalize_rows(&[], &mean, &scale, &shift, &mut empty);
}

#[test]
#[should_panic(expected = "normalize_rows")]
fn normalize_rows_rejects_a_partial_row() {
    ops::normalize_rows(&[1.0; 5], &[0.0; 2], &[1.0; 2], &[0.0; 2], &mut [0.0; 5]);
}

proptest! {
    #[test]
    fn random_inputs_match_references_on_every_tier(xs in prop::collection::vec(-120.0f32..120.0, 0..70)) {
        check_unary(&xs);
    }

    #[test]
    fn prelu_matches_its_definition(rows in 0usize..9, cols in 1usize..19, seed in 0u32..1000) {
        let x: Vec<f32> = (0..rows * cols).map(|i| (((i as u32 + seed) * 2654435761u32 % 2001) as f32 - 1000.0) * 1e-2).collect();
        let slopes: Vec<f32> = (0..cols).map(|c| c as f32 * 0.1 - 0.3).collect();
        for tier in Tier::supported() {
            let mut y = vec![f32::NAN; x.len()];
            ops::prelu_with(tier, &x, &slopes, &mut y);
            for (i, (&xi, &yi)) in x.iter().zip(&y).enumerate() {
                let want = if xi > 0.0 { xi } else { slopes[i % cols] * xi };
                prop_assert_eq!(yi, want);
            }
        }
    }
}
