//! `gemm_packed_fused` (a product with packed weights and a per-tile epilogue) against an
//! f64 reference and, bit for bit, against `gemm_packed` followed by the same epilogue in
//! plain loops, on every shape from 0 and every tier this CPU has.

use proptest::prelude::*;
use tensor::tolerance::{CLOSE, dot_bound};
use tensor::{
    Epilogue, GemmScratch, MatRef, Matrix, PackedB, Tier, gemm_packed, gemm_packed_fused,
};

/// A deterministic pseudo-random fill (xorshift), values in [-1, 1).
fn fill(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn random(rows: usize, cols: usize, seed: u64) -> Matrix {
    let v = fill(rows * cols, seed);
    Matrix::from_fn(rows, cols, |i, j| v[i * cols + j])
}

/// The parts of an epilogue, owned.
struct Parts {
    bias: Vec<f32>,
    slope: Vec<f32>,
    scale: Vec<f32>,
    shift: Vec<f32>,
    residual: Matrix,
}

impl Parts {
    fn new(m: usize, n: usize, seed: u64) -> Self {
        Self {
            bias: fill(n, seed + 11),
            slope: fill(n, seed + 12).iter().map(|s| 0.25 * s).collect(),
            scale: fill(n, seed + 13).iter().map(|s| 1.0 + 0.5 * s).collect(),
            shift: fill(n, seed + 14),
            residual: random(m, n, seed + 15),
        }
    }

    /// The epilogue with the optional parts chosen by `sel` (bit 0 PReLU, 1 affine, 2
    /// residual).
    fn epilogue(&self, sel: u8) -> Epilogue<'_> {
        Epilogue {
            bias: &self.bias,
            slope: (sel & 1 != 0).then_some(&self.slope[..]),
            affine: (sel & 2 != 0).then_some((&self.scale[..], &self.shift[..])),
            residual: (sel & 4 != 0).then(|| self.residual.view()),
        }
    }
}

/// The epilogue in plain f32 loops, in the documented order.
fn apply_f32(e: &Epilogue<'_>, y: &mut Matrix) {
    for i in 0..y.rows() {
        for j in 0..y.cols() {
            let mut v = y.get(i, j) + e.bias[j];
            if let Some(s) = e.slope {
                v = if v > 0.0 { v } else { s[j] * v };
            }
            if let Some((s, t)) = e.affine {
                v = s[j] * v + t[j];
            }
            if let Some(r) = e.residual {
                v += r.get(i, j);
            }
            y.set(i, j, v);
        }
    }
}

/// Checks one case on one tier: the f64 reference (every shape) and the unfused path
/// bit for bit (where both run the blocked kernel: M, N >= 2 and K >= 1).
fn check(tier: Tier, a: MatRef<'_>, k: usize, n: usize, sel: u8, seed: u64) {
    let m = a.rows();
    let w = random(k, n, seed + 1);
    let packed = PackedB::new(tier, w.view()).unwrap();
    let parts = Parts::new(m, n, seed);
    let e = parts.epilogue(sel);
    let mut got = Matrix::from_fn(m, n, |_, _| f32::NAN);
    let mut s = GemmScratch::new();
    gemm_packed_fused(a, &packed, &e, got.view_mut(), &mut s).unwrap();

    for i in 0..m {
        for j in 0..n {
            let (mut dot, mut mag) = (0.0f64, 0.0f64);
            for p in 0..k {
                let t = a.get(i, p) as f64 * w.get(p, j) as f64;
                dot += t;
                mag += t.abs();
            }
            let mut v = dot + e.bias[j] as f64;
            let mut err = dot_bound(k) * mag + CLOSE as f64 * v.abs();
            if let Some(sl) = e.slope {
                if v <= 0.0 {
                    v *= sl[j] as f64;
                }
                err += CLOSE as f64 * v.abs();
                // v near 0: the f32 sum may fall on the other side of 0.
                err *= 1.0 + (sl[j] as f64).abs();
            }
            if let Some((sc, sh)) = e.affine {
                v = sc[j] as f64 * v + sh[j] as f64;
                err = err * (sc[j] as f64).abs() + CLOSE as f64 * (v.abs() + sh[j].abs() as f64);
            }
            if let Some(r) = e.residual {
                v += r.get(i, j) as f64;
                err += CLOSE as f64 * (v.abs() + r.get(i, j).abs() as f64);
            }
            let g = got.get(i, j) as f64;
            assert!(
                (g - v).abs() <= 2.0 * err + 1e-30,
                "{tier} {m}x{n}x{k} sel {sel} ({i}, {j}): fused {g}, reference {v}"
            );
        }
    }

    if m >= 2 && n >= 2 && k >= 1 {
        let mut want = Matrix::from_fn(m, n, |_, _| f32::NAN);
        gemm_packed(1.0, a, &packed, 0.0, want.view_mut(), &mut s).unwrap();
        apply_f32(&e, &mut want);
        for (x, y) in got.as_slice().iter().zip(want.as_slice()) {
            assert_eq!(x.to_bits(), y.to_bits(), "{tier} {m}x{n}x{k} sel {sel}");
        }
    }
}

#[test]
fn every_small_shape_from_zero() {
    for tier in Tier::supported() {
        for m in 0..=13 {
            for n in 0..=33 {
                for k in [0, 1, 2, 7, 16, 17] {
                    let a = random(m, k, (m * 100 + k) as u64);
                    check(
                        tier,
                        a.view(),
                        k,
                        n,
                        ((m + n + k) % 8) as u8,
                        (n * 7) as u64,
                    );
                }
            }
        }
    }
}

#[test]
fn the_serving_shapes_with_every_epilogue() {
    // A block of 48 candidates and a request's partial last block, on the towers' layers.
    for tier in Tier::supported() {
        for (m, k, n) in [
            (48, 288, 128),
            (20, 288, 128),
            (48, 608, 128),
            (47, 128, 64),
        ] {
            let a = random(m, k, 3);
            for sel in 0..8 {
                check(tier, a.view(), k, n, sel, 5);
            }
        }
    }
}

#[test]
fn strided_operands_take_the_unfused_path_with_the_same_result() {
    for tier in Tier::supported() {
        let at = random(40, 25, 9); // A = at^T, 25 x 40, column stride 40
        check(tier, at.view().t(), 40, 19, 7, 1);
        // C as a transposed view.
        let a = random(9, 12, 2);
        let w = random(12, 10, 4);
        let packed = PackedB::new(tier, w.view()).unwrap();
        let parts = Parts::new(9, 10, 6);
        let e = parts.epilogue(7);
        let mut ct = Matrix::from_fn(10, 9, |_, _| f32::NAN);
        let mut c = Matrix::from_fn(9, 10, |_, _| f32::NAN);
        let mut s = GemmScratch::new();
        gemm_packed_fused(a.view(), &packed, &e, ct.view_mut().t(), &mut s).unwrap();
        gemm_packed_fused(a.view(), &packed, &e, c.view_mut(), &mut s).unwrap();
        for i in 0..9 {
            for j in 0..10 {
                let (x, y) = (ct.get(j, i), c.get(i, j));
                assert!(
                    (x - y).abs() <= CLOSE * (1.0 + y.abs()),
                    "({i}, {j}): {x} {y}"
                );
            }
        }
    }
}

#[test]
fn mismatched_epilogues_are_errors() {
    let tier = Tier::Portable;
    let a = random(4, 3, 1);
    let packed = PackedB::new(tier, random(3, 5, 2).view()).unwrap();
    let parts = Parts::new(4, 5, 3);
    let short = [0.0f32; 4];
    let wrong_res = Matrix::zeros(3, 5);
    let cases = [
        Epilogue {
            bias: &short,
            ..parts.epilogue(0)
        },
        Epilogue {
            slope: Some(&short),
            ..parts.epilogue(0)
        },
        Epilogue {
            affine: Some((&parts.scale, &short)),
            ..parts.epilogue(0)
        },
        Epilogue {
            affine: Some((&short, &parts.shift)),
            ..parts.epilogue(0)
        },
        Epilogue {
            residual: Some(wrong_res.view()),
            ..parts.epilogue(0)
        },
    ];
    let mut c = Matrix::zeros(4, 5);
    for e in &cases {
        let r = gemm_packed_fused(a.view(), &packed, e, c.view_mut(), &mut GemmScratch::new());
        assert!(r.is_err(), "{e:?}");
    }
    // And a product of the wrong shape.
    let mut c = Matrix::zeros(4, 6);
    let e = parts.epilogue(0);
    assert!(
        gemm_packed_fused(a.view(), &packed, &e, c.view_mut(), &mut GemmScratch::new()).is_err()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn random_shapes(m in 0usize..=70, n in 0usize..=150, k in 0usize..=700, pad in 0usize..3,
                     sel in 0u8..8, seed: u64) {
        // K up to 700 crosses every tier's pass depth (several passes over K).
        let v = fill(m * (k + pad), seed);
        let a = MatRef::from_slice(&v, m, k, k + pad).unwrap();
        for tier in Tier::supported() {
            check(tier, a, k, n, sel, seed);
        }
    }
}
