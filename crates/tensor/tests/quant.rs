//! The int8 GEMM against a reference written here from the formulas alone (quantize with
//! `round_ties_even`, sum in i64, the same f32 expression): bit for bit on every tier this
//! CPU has, every shape from 0, every layout. Then the quantization itself (ranges, round
//! trip, zero lines), the accuracy against the exact product, and the errors.

mod common;

use common::{Operand, tiers};
use proptest::prelude::*;
use tensor::quant::MAX_K;
use tensor::tolerance::UNIT_ROUNDOFF;
use tensor::{MatMut, MatRef, Matrix, PackedQ8, QuantRows, TensorError, Tier, gemm_q8};

/// The scale of a line with largest magnitude `max` for `levels` steps (1 if zero).
fn ref_scale(max: f32, levels: f32) -> f32 {
    let s = max / levels;
    if s > 0.0 { s } else { 1.0 }
}

/// Weights quantized per column: (qb as k x n row-major, sb).
fn ref_weights(b: MatRef<'_>) -> (Vec<i32>, Vec<f32>) {
    let (k, n) = b.shape();
    let mut q = vec![0; k * n];
    let mut s = vec![0.0; n];
    for j in 0..n {
        let max = (0..k).map(|p| b.get(p, j).abs()).fold(0.0f32, f32::max);
        s[j] = ref_scale(max, 63.0);
        for p in 0..k {
            q[p * n + j] = (b.get(p, j) / s[j]).round_ties_even().clamp(-63.0, 63.0) as i32;
        }
    }
    (q, s)
}

/// Activations quantized per row: (qa as m x k row-major, in [1, 255], sa).
fn ref_activations(a: MatRef<'_>) -> (Vec<i32>, Vec<f32>) {
    let (m, k) = a.shape();
    let mut q = vec![0; m * k];
    let mut s = vec![0.0; m];
    for i in 0..m {
        let max = (0..k).map(|p| a.get(i, p).abs()).fold(0.0f32, f32::max);
        s[i] = ref_scale(max, 127.0);
        for p in 0..k {
            q[i * k + p] = (a.get(i, p) / s[i]).round_ties_even().clamp(-127.0, 127.0) as i32 + 128;
        }
    }
    (q, s)
}

/// The int8 product from the formulas: `(sum_k (qa - 128) qb) as f32 * (sa_i * sb_j)`.
fn ref_gemm_q8(a: MatRef<'_>, b: MatRef<'_>) -> Vec<f32> {
    let (m, k, n) = (a.rows(), a.cols(), b.cols());
    let (qa, sa) = ref_activations(a);
    let (qb, sb) = ref_weights(b);
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let acc: i64 = (0..k)
                .map(|p| i64::from(qa[i * k + p] - 128) * i64::from(qb[p * n + j]))
                .sum();
            let acc = i32::try_from(acc).expect("the accumulator fits an i32");
            c[i * n + j] = (acc as f32) * (sa[i] * sb[j]);
        }
    }
    c
}

/// Runs `gemm_q8` on `tier` into a NaN-filled C (row-major with padding, or transposed)
/// and returns C row-major.
fn run_q8(tier: Tier, a: MatRef<'_>, b: MatRef<'_>, c_transposed: bool) -> Vec<f32> {
    let (m, n) = (a.rows(), b.cols());
    let packed = PackedQ8::new(tier, b).unwrap();
    let mut qa = QuantRows::new();
    qa.quantize_with(tier, a).unwrap();
    let ld = if c_transposed { m + 3 } else { n + 3 };
    let mut data = vec![f32::NAN; ld * if c_transposed { n } else { m }];
    {
        let c = if c_transposed {
            MatMut::from_slice(&mut data, n, m, ld).unwrap().t()
        } else {
            MatMut::from_slice(&mut data, m, n, ld).unwrap()
        };
        gemm_q8(&qa, &packed, c).unwrap();
    }
    let at = |i: usize, j: usize| {
        if c_transposed {
            data[j * ld + i]
        } else {
            data[i * ld + j]
        }
    };
    (0..m * n).map(|x| at(x / n.max(1), x % n.max(1))).collect()
}

/// Checks one case bit for bit against the reference, and the quantized values and scales
/// the library reports against the reference's.
#[allow(clippy::too_many_arguments)]
fn check_exact(tier: Tier, m: usize, n: usize, k: usize, ta: bool, tb: bool, tc: bool, seed: u64) {
    let a = Operand::scaled(m, k, ta, 2, seed, 3.0);
    let b = Operand::scaled(k, n, tb, 1, seed + 1, 0.25);
    let want = ref_gemm_q8(a.view(), b.view());
    let got = run_q8(tier, a.view(), b.view(), tc);
    for (x, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(
            g.to_bits(),
            w.to_bits(),
            "{tier} {m}x{n}x{k} ta={ta} tb={tb} tc={tc}: C[{}, {}] = {g}, reference {w}",
            x / n,
            x % n
        );
    }
    let (qa, sa) = ref_activations(a.view());
    let mut rows = QuantRows::new();
    rows.quantize_with(tier, a.view()).unwrap();
    for i in 0..m {
        assert_eq!(rows.scale(i).to_bits(), sa[i].to_bits());
        let want: Vec<u8> = qa[i * k..(i + 1) * k].iter().map(|&q| q as u8).collect();
        assert_eq!(rows.row(i), &want[..]);
    }
    let (qb, sb) = ref_weights(b.view());
    let packed = PackedQ8::new(tier, b.view()).unwrap();
    for j in 0..n {
        assert_eq!(packed.scale(j).to_bits(), sb[j].to_bits());
        for p in 0..k {
            assert_eq!(i32::from(packed.quantized(p, j)), qb[p * n + j]);
        }
    }
}

#[test]
fn every_small_shape_and_layout_is_exact() {
    for tier in tiers() {
        for m in 0..=13 {
            for n in [0, 1, 2, 7, 15, 16, 17, 33] {
                for k in [0, 1, 3, 4, 5, 8, 13] {
                    for (ta, tb, tc) in [
                        (false, false, false),
                        (true, false, false),
                        (false, true, true),
                        (true, true, false),
                    ] {
                        check_exact(tier, m, n, k, ta, tb, tc, (m * 100 + n * 10 + k) as u64);
                    }
                }
            }
        }
    }
}

#[test]
fn serving_shapes_are_exact() {
    for tier in tiers() {
        for (m, n, k) in [
            (48, 256, 288),
            (48, 128, 608),
            (500, 128, 608),
            (48, 64, 128),
            (131, 45, 301),
        ] {
            check_exact(tier, m, n, k, false, false, false, 7);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn random_shapes_are_exact(
        m in 0usize..40,
        n in 0usize..70,
        k in 0usize..90,
        ta in any::<bool>(),
        tb in any::<bool>(),
        tc in any::<bool>(),
        seed in any::<u64>(),
    ) {
        for tier in Tier::supported() {
            check_exact(tier, m, n, k, ta, tb, tc, seed);
        }
    }

    #[test]
    fn quantized_rows_are_in_range_and_round_trip(
        m in 0usize..12,
        k in 0usize..80,
        scale in prop_oneof![Just(1e-3f32), Just(1.0f32), Just(1e4f32)],
        zero_row in 0usize..12,
        seed in any::<u64>(),
    ) {
        let mut a = Operand::scaled(m, k, false, 0, seed, scale);
        if zero_row < m {
            a.data[zero_row * k..(zero_row + 1) * k].fill(0.0);
        }
        let mut q = QuantRows::new();
        q.quantize(a.view()).unwrap();
        prop_assert_eq!((q.rows(), q.cols()), (m, k));
        for i in 0..m {
            let sa = q.scale(i);
            let row = q.row(i);
            let max = a.data[i * k..(i + 1) * k].iter().fold(0.0f32, |x, y| x.max(y.abs()));
            if max == 0.0 {
                prop_assert_eq!(sa, 1.0);
                prop_assert!(row.iter().all(|&x| x == 128));
                continue;
            }
            prop_assert_eq!(sa, max / 127.0);
            // The largest magnitude lands on the end of the range.
            prop_assert!(row.iter().any(|&x| x == 1 || x == 255));
            for (p, &x) in row.iter().enumerate() {
                prop_assert!((1..=255).contains(&x));
                // Rounding to the step loses at most half a step, plus the rounding of
                // the division a / sa (relative 2^-24 of a value at most 127).
                let back = f64::from(sa) * (f64::from(x) - 128.0);
                let err = (f64::from(a.data[i * k + p]) - back).abs();
                let bound = f64::from(sa) * (0.5 + 128.0 * UNIT_ROUNDOFF);
                prop_assert!(err <= bound, "row {i} col {p}: error {err} > {bound}");
            }
        }
    }

    #[test]
    fn quantized_columns_are_in_range_and_round_trip(
        k in 0usize..80,
        n in 0usize..40,
        zero_col in 0usize..40,
        seed in any::<u64>(),
    ) {
        let mut b = Operand::scaled(k, n, false, 0, seed, 2.0);
        if zero_col < n {
            for p in 0..k {
                b.data[p * n + zero_col] = 0.0;
            }
        }
        let packed = PackedQ8::new(Tier::best(), b.view()).unwrap();
        prop_assert_eq!((packed.rows(), packed.cols()), (k, n));
        for j in 0..n {
            let sb = packed.scale(j);
            let max = (0..k).map(|p| b.data[p * n + j].abs()).fold(0.0f32, f32::max);
            if max == 0.0 {
                prop_assert_eq!(sb, 1.0);
                prop_assert!((0..k).all(|p| packed.quantized(p, j) == 0));
                continue;
            }
            prop_assert_eq!(sb, max / 63.0);
            prop_assert!((0..k).any(|p| packed.quantized(p, j).abs() == 63));
            for p in 0..k {
                let q = packed.quantized(p, j);
                prop_assert!((-63..=63).contains(&q));
                let err = (f64::from(b.data[p * n + j]) - f64::from(sb) * f64::from(q)).abs();
                let bound = f64::from(sb) * (0.5 + 64.0 * UNIT_ROUNDOFF);
                prop_assert!(err <= bound, "({p}, {j}): error {err} > {bound}");
            }
        }
    }

    #[test]
    fn close_to_the_exact_product(
        m in 1usize..24,
        n in 1usize..40,
        k in 1usize..200,
        seed in any::<u64>(),
    ) {
        let a = Operand::scaled(m, k, false, 0, seed, 4.0);
        let b = Operand::scaled(k, n, false, 0, seed ^ 5, 0.1);
        let got = run_q8(Tier::best(), a.view(), b.view(), false);
        let (sa, sb) = (ref_activations(a.view()).1, ref_weights(b.view()).1);
        for i in 0..m {
            for j in 0..n {
                let (mut exact, mut bound) = (0.0f64, 0.0f64);
                let (ea, eb) = (f64::from(sa[i]) / 2.0, f64::from(sb[j]) / 2.0);
                for p in 0..k {
                    let (x, y) = (f64::from(a.view().get(i, p)), f64::from(b.view().get(p, j)));
                    exact += x * y;
                    // a b - a^ b^ = a (b - b^) + (a - a^) b^, |b - b^| <= sb/2,
                    // |a - a^| <= sa/2, |b^| <= |b| + sb/2.
                    bound += x.abs() * eb + ea * (y.abs() + eb);
                }
                // The store rounds three times (acc to f32, sa * sb, the product).
                let c = f64::from(got[i * n + j]);
                let bound = bound * (1.0 + 1e-3) + 4.0 * UNIT_ROUNDOFF * c.abs();
                prop_assert!((c - exact).abs() <= bound,
                    "({i}, {j}): {c} against {exact}, bound {bound}");
            }
        }
    }
}

#[test]
fn workspace_is_reused_and_replaced() {
    let big = Operand::scaled(30, 50, false, 0, 1, 1.0);
    let small = Operand::scaled(3, 5, true, 1, 2, 1.0);
    let mut q = QuantRows::new();
    q.quantize(big.view()).unwrap();
    q.quantize(small.view()).unwrap();
    assert_eq!((q.rows(), q.cols()), (3, 5));
    let (qa, sa) = ref_activations(small.view());
    for i in 0..3 {
        assert_eq!(q.scale(i), sa[i]);
        assert!(
            q.row(i)
                .iter()
                .zip(&qa[i * 5..])
                .all(|(&x, &y)| i32::from(x) == y)
        );
    }
    // A failed quantization leaves an empty matrix, not the old one.
    let bad = Matrix::from_fn(2, 2, |i, _| if i == 1 { f32::NAN } else { 1.0 });
    assert!(q.quantize(bad.view()).is_err());
    assert_eq!((q.rows(), q.cols()), (0, 0));
}

#[test]
fn the_limit_of_k_is_exact_and_one_more_is_refused_without_allocating() {
    let one = [1.0f32];
    let minus = [-1.0f32];
    // A 1 x MAX_K row of ones and a MAX_K x 1 column of minus ones, through a zero stride.
    let a = MatRef::from_strided(&one, 1, MAX_K, 1, 0).unwrap();
    let b = MatRef::from_strided(&minus, MAX_K, 1, 0, 1).unwrap();
    for tier in tiers() {
        let packed = PackedQ8::new(tier, b).unwrap();
        let mut q = QuantRows::new();
        q.quantize(a).unwrap();
        let mut c = [0.0f32];
        gemm_q8(&q, &packed, MatMut::from_slice(&mut c, 1, 1, 1).unwrap()).unwrap();
        let acc = -(127 * 63 * MAX_K as i64) as i32;
        assert_eq!(c[0], (acc as f32) * ((1.0f32 / 127.0) * (1.0f32 / 63.0)));
    }
    let a = MatRef::from_strided(&one, 1, MAX_K + 1, 1, 0).unwrap();
    let b = MatRef::from_strided(&one, MAX_K + 1, 1, 0, 1).unwrap();
    // Shape errors come before the first byte of the 2 MB it would need; the strided view
    // holds one float, so no allocation of that size can come from the view either.
    assert!(matches!(
        PackedQ8::new(Tier::Portable, b),
        Err(TensorError::Shape {
            op: "PackedQ8::new",
            ..
        })
    ));
    let mut q = QuantRows::new();
    assert!(matches!(
        q.quantize(a),
        Err(TensorError::Shape {
            op: "QuantRows::quantize",
            ..
        })
    ));
}

#[test]
fn non_finite_inputs_are_refused_with_their_position() {
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let b = Matrix::from_fn(5, 7, |i, j| if (i, j) == (3, 4) { bad } else { 0.5 });
        for tier in tiers() {
            assert_eq!(
                PackedQ8::new(tier, b.view()).unwrap_err(),
                TensorError::NonFinite {
                    op: "PackedQ8::new",
                    what: "weight",
                    row: 3,
                    col: 4
                }
            );
        }
        let a = Matrix::from_fn(4, 6, |i, j| if (i, j) == (2, 5) { bad } else { 0.5 });
        let at = a.view().t().to_matrix();
        for (tier, view) in tiers()
            .into_iter()
            .flat_map(|t| [(t, a.view()), (t, at.view().t())])
        {
            let mut q = QuantRows::new();
            assert_eq!(
                q.quantize_with(tier, view).unwrap_err(),
                TensorError::NonFinite {
                    op: "QuantRows::quantize",
                    what: "activation",
                    row: 2,
                    col: 5
                }
            );
        }
    }
}

#[test]
fn shape_mismatches_are_refused() {
    let b = PackedQ8::new(Tier::Portable, Matrix::zeros(6, 5).view()).unwrap();
    let mut q = QuantRows::new();
    q.quantize(Matrix::zeros(3, 7).view()).unwrap();
    let mut c = Matrix::zeros(3, 5);
    assert!(matches!(
        gemm_q8(&q, &b, c.view_mut()),
        Err(TensorError::Shape { op: "gemm_q8", .. })
    ));
    q.quantize(Matrix::zeros(3, 6).view()).unwrap();
    for (r, cols) in [(4, 5), (3, 4), (2, 5)] {
        let mut c = Matrix::zeros(r, cols);
        assert!(matches!(
            gemm_q8(&q, &b, c.view_mut()),
            Err(TensorError::Shape { op: "gemm_q8", .. })
        ));
    }
    gemm_q8(&q, &b, c.view_mut()).unwrap();
}

#[test]
fn results_beyond_f32_are_refused() {
    let b = PackedQ8::new(Tier::Portable, Matrix::from_fn(4, 2, |_, _| 1e20).view()).unwrap();
    let mut q = QuantRows::new();
    q.quantize(Matrix::from_fn(2, 4, |_, _| 1e20).view())
        .unwrap();
    let mut c = Matrix::zeros(2, 2);
    assert!(matches!(
        gemm_q8(&q, &b, c.view_mut()),
        Err(TensorError::Overflow { op: "gemm_q8", .. })
    ));
}

#[test]
fn k_zero_writes_zeros() {
    for tier in tiers() {
        let b = PackedQ8::new(tier, Matrix::zeros(0, 19).view()).unwrap();
        let mut q = QuantRows::new();
        q.quantize(Matrix::zeros(7, 0).view()).unwrap();
        let mut c = Matrix::from_fn(7, 19, |_, _| f32::NAN);
        gemm_q8(&q, &b, c.view_mut()).unwrap();
        assert!(c.as_slice().iter().all(|&x| x.to_bits() == 0));
    }
}

#[test]
fn unsupported_tiers_are_refused_at_packing() {
    for tier in Tier::ALL {
        let r = PackedQ8::new(tier, Matrix::zeros(2, 2).view());
        assert_eq!(r.is_ok(), tier.is_supported(), "{tier}");
        if let Ok(p) = r {
            assert_eq!(p.tier(), tier);
            assert!(p.bytes() >= 64);
        }
    }
}
