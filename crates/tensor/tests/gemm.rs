//! GEMM against references: an f64 triple loop, the matrixmultiply crate, and exact
//! identities, over random shapes, strides and transposes, on every tier this CPU has.

mod common;

use common::{Operand, fill, tiers};
use proptest::prelude::*;
use tensor::tolerance::dot_bound;
use tensor::{Blocking, GemmScratch, MatMut, MatRef, Matrix, Tier, gemm_with, gemm_with_blocking};

/// f64 reference: returns `alpha * A B + beta * C0` and, per element, the magnitude
/// `|alpha| sum |a b| + |beta c0|` that bounds the rounding error.
fn reference(
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c0: &Matrix,
) -> (Vec<f64>, Vec<f64>) {
    let (m, k, n) = (a.rows(), a.cols(), b.cols());
    let (mut val, mut mag) = (vec![0.0; m * n], vec![0.0; m * n]);
    for i in 0..m {
        for j in 0..n {
            let (mut s, mut sa) = (0.0f64, 0.0f64);
            for p in 0..k {
                let t = a.get(i, p) as f64 * b.get(p, j) as f64;
                s += t;
                sa += t.abs();
            }
            let c = if beta == 0.0 {
                0.0
            } else {
                beta as f64 * c0.get(i, j) as f64
            };
            val[i * n + j] = alpha as f64 * s + c;
            mag[i * n + j] = (alpha as f64).abs() * sa + c.abs();
        }
    }
    (val, mag)
}

#[allow(clippy::too_many_arguments)]
fn check_case(
    tier: Tier,
    m: usize,
    n: usize,
    k: usize,
    ta: bool,
    tb: bool,
    pad: usize,
    alpha: f32,
    beta: f32,
    seed: u64,
) {
    check_blocked(tier, None, m, n, k, ta, tb, pad, alpha, beta, seed);
}

/// [`check_case`] with an explicit cache blocking (`None`: the tier's default).
#[allow(clippy::too_many_arguments)]
fn check_blocked(
    tier: Tier,
    blocking: Option<Blocking>,
    m: usize,
    n: usize,
    k: usize,
    ta: bool,
    tb: bool,
    pad: usize,
    alpha: f32,
    beta: f32,
    seed: u64,
) {
    let a = Operand::new(m, k, ta, pad, seed);
    let b = Operand::new(k, n, tb, pad + 1, seed + 1);
    let mut c = Matrix::zeros_with_ld(m, n, n + pad);
    if beta == 0.0 {
        c.fill(f32::NAN);
    } else {
        let f = fill(m * (n + pad), seed + 2);
        c.as_mut_slice().copy_from_slice(&f);
    }
    let c0 = c.clone();
    let mut scratch = GemmScratch::new();
    gemm_with_blocking(
        tier,
        blocking,
        alpha,
        a.view(),
        b.view(),
        beta,
        c.view_mut(),
        &mut scratch,
    )
    .unwrap();
    let (val, mag) = reference(alpha, a.view(), b.view(), beta, &c0);
    let bound = dot_bound(k);
    for i in 0..m {
        for j in 0..n {
            let got = c.get(i, j) as f64;
            let want = val[i * n + j];
            let tol = bound * mag[i * n + j] + 1e-30;
            assert!(
                (got - want).abs() <= tol,
                "{tier} {blocking:?}: m={m} n={n} k={k} ta={ta} tb={tb} pad={pad} alpha={alpha} \
                 beta={beta}: C[{i},{j}] = {got}, want {want} (tol {tol})"
            );
        }
    }
    // Padding between rows of C is never touched.
    for i in 0..m {
        for j in n..n + pad {
            let (got, was) = (
                c.as_slice()[i * (n + pad) + j],
                c0.as_slice()[i * (n + pad) + j],
            );
            assert!(
                got.to_bits() == was.to_bits(),
                "{tier}: padding C[{i},{j}] changed"
            );
        }
    }
}

#[test]
fn every_small_size_and_layout() {
    for tier in tiers() {
        for m in 0..=13 {
            for n in 0..=13 {
                for k in [0, 1, 2, 7, 17] {
                    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                        check_case(
                            tier,
                            m,
                            n,
                            k,
                            ta,
                            tb,
                            (m + n) % 3,
                            1.5,
                            0.0,
                            (m * 31 + n) as u64,
                        );
                        check_case(
                            tier,
                            m,
                            n,
                            k,
                            ta,
                            tb,
                            1,
                            -0.5,
                            0.75,
                            (m * 17 + n + k) as u64,
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn tower_and_odd_shapes() {
    for tier in tiers() {
        for &(m, n, k, ta, tb) in &[
            (266, 265, 67, false, false),
            (97, 128, 608, false, false),
            (33, 608, 128, false, true),
            (128, 64, 97, true, false),
            (1, 300, 70, false, false),
            (1, 300, 70, true, true),
            (300, 1, 70, false, false),
            (300, 1, 70, true, true),
            (130, 40, 900, false, false),
        ] {
            check_case(tier, m, n, k, ta, tb, 3, 1.0, 0.0, 7);
            check_case(tier, m, n, k, ta, tb, 0, 0.5, -1.0, 8);
        }
    }
}

#[test]
fn every_blocking_gives_the_same_product() {
    // Tiny blocks force many passes over K (beta on the first only), many row and column
    // blocks, partial panels inside every block, and the transposed-A depth `kc_cols`.
    let blockings = [
        Blocking {
            mc: 1,
            kc: 1,
            kc_cols: 1,
            nc: 1,
        },
        Blocking {
            mc: 7,
            kc: 5,
            kc_cols: 3,
            nc: 17,
        },
        Blocking {
            mc: 13,
            kc: 64,
            kc_cols: 9,
            nc: 40,
        },
        Blocking {
            mc: 4096,
            kc: 4096,
            kc_cols: 4096,
            nc: 4096,
        },
    ];
    for tier in tiers() {
        for bl in blockings {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                check_blocked(tier, Some(bl), 37, 45, 29, ta, tb, 1, 1.25, 0.0, 3);
                check_blocked(tier, Some(bl), 50, 33, 70, ta, tb, 2, -0.5, 0.5, 4);
            }
        }
    }
}

#[test]
fn a_zero_block_size_is_an_error() {
    let a = Matrix::zeros(4, 5);
    let b = Matrix::zeros(5, 3);
    let mut c = Matrix::zeros(4, 3);
    let bl = Blocking {
        mc: 8,
        kc: 0,
        kc_cols: 8,
        nc: 8,
    };
    let err = gemm_with_blocking(
        Tier::Portable,
        Some(bl),
        1.0,
        a.view(),
        b.view(),
        0.0,
        c.view_mut(),
        &mut GemmScratch::new(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("block sizes"), "{err}");
}

#[test]
fn gemv_tails_on_every_lane_count() {
    // N = 1 and M = 1 take the GEMV kernels; K and M from 1 to 40 cover every partial
    // register (4, 8 and 16 lanes) and the eight-row blocks of the dot-product kernel.
    for tier in tiers() {
        for len in 1..=40 {
            for (ta, tb) in [(false, false), (true, true)] {
                check_case(tier, len, 1, 41 - len, ta, tb, 1, 0.75, 0.0, len as u64);
                check_case(tier, 1, len, 41 - len, ta, tb, 0, 1.5, -0.25, len as u64);
            }
        }
    }
}

#[test]
fn gemv_every_row_count_and_depth() {
    // Every M and K up to 40 with N = 1: full eight-row blocks and the rows after them,
    // each with every partial register, writing a contiguous C (the kernel applies alpha
    // and beta itself, reading C only when beta != 0) and a strided one (through the
    // scratch vector).
    for tier in tiers() {
        for m in 1..=40 {
            for k in 1..=40 {
                let seed = (m * 41 + k) as u64;
                check_case(tier, m, 1, k, false, false, 0, -1.25, 0.0, seed);
                check_case(tier, m, 1, k, false, false, 0, 0.5, 0.75, seed);
                check_case(tier, m, 1, k, false, true, 2, 1.0, -1.0, seed);
            }
        }
    }
}

#[test]
fn identity_products_are_exact() {
    for tier in tiers() {
        for (m, n) in [(1, 1), (5, 3), (12, 32), (13, 33), (266, 265)] {
            let a = Matrix::from_fn(m, n, |i, j| ((i * 7 + j * 3) % 11) as f32 - 5.25);
            let mut s = GemmScratch::new();
            let mut c = Matrix::zeros(m, n);
            c.fill(f32::NAN);
            gemm_with(
                tier,
                1.0,
                a.view(),
                Matrix::identity(n).view(),
                0.0,
                c.view_mut(),
                &mut s,
            )
            .unwrap();
            assert_eq!(c.to_vec(), a.to_vec(), "{tier}: A * I != A for {m}x{n}");
            c.fill(f32::NAN);
            gemm_with(
                tier,
                1.0,
                Matrix::identity(m).view(),
                a.view(),
                0.0,
                c.view_mut(),
                &mut s,
            )
            .unwrap();
            assert_eq!(c.to_vec(), a.to_vec(), "{tier}: I * A != A for {m}x{n}");
        }
    }
}

#[test]
fn zero_k_and_zero_alpha_only_scale_c() {
    for tier in tiers() {
        let a = Matrix::zeros(4, 0);
        let b = Matrix::zeros(0, 3);
        let mut c = Matrix::from_fn(4, 3, |i, j| (i + j) as f32);
        let mut s = GemmScratch::new();
        gemm_with(tier, 1.0, a.view(), b.view(), 2.0, c.view_mut(), &mut s).unwrap();
        assert_eq!(c.get(3, 2), 10.0);
        c.fill(f32::NAN);
        gemm_with(tier, 1.0, a.view(), b.view(), 0.0, c.view_mut(), &mut s).unwrap();
        assert!(c.to_vec().iter().all(|&x| x == 0.0));
        let a = Matrix::from_fn(4, 5, |_, _| f32::NAN);
        let b = Matrix::zeros(5, 3);
        gemm_with(tier, 0.0, a.view(), b.view(), 0.0, c.view_mut(), &mut s).unwrap();
        assert!(
            c.to_vec().iter().all(|&x| x == 0.0),
            "alpha = 0 must not read A"
        );
    }
}

#[test]
fn shape_mismatch_is_an_error_naming_the_shapes() {
    let a = Matrix::zeros(4, 5);
    let b = Matrix::zeros(6, 3);
    let mut c = Matrix::zeros(4, 3);
    let err = tensor::gemm(1.0, a.view(), b.view(), 0.0, c.view_mut()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("gemm") && msg.contains("4x5") && msg.contains("6x3"),
        "{msg}"
    );
}

#[test]
fn parallel_gemm_matches_serial() {
    let a = Operand::new(700, 300, false, 0, 1);
    let b = Operand::new(300, 50, true, 0, 2);
    let mut c1 = Matrix::zeros(700, 50);
    let mut c2 = Matrix::zeros(700, 50);
    tensor::gemm(1.0, a.view(), b.view(), 0.0, c1.view_mut()).unwrap();
    tensor::gemm_par(1.0, a.view(), b.view(), 0.0, c2.view_mut()).unwrap();
    assert_eq!(c1.to_vec(), c2.to_vec());
    // A column-separated C (a transposed view) takes the transposed route.
    let mut ct = Matrix::zeros(50, 700);
    tensor::gemm_par(1.0, a.view(), b.view(), 0.0, ct.view_mut().t()).unwrap();
    assert_eq!(ct.view().t().to_matrix().to_vec(), c1.to_vec());
}

#[test]
fn agrees_with_matrixmultiply() {
    for tier in tiers() {
        for (i, &(m, n, k)) in [(64, 64, 64), (100, 37, 250), (9, 300, 31), (1024, 1, 64)]
            .iter()
            .enumerate()
        {
            let a = Operand::new(m, k, i % 2 == 1, 2, i as u64);
            let b = Operand::new(k, n, i % 3 == 1, 0, 9 + i as u64);
            let mut c = Matrix::zeros(m, n);
            let mut r = Matrix::zeros(m, n);
            gemm_with(
                tier,
                1.0,
                a.view(),
                b.view(),
                0.0,
                c.view_mut(),
                &mut GemmScratch::new(),
            )
            .unwrap();
            let (av, bv) = (a.view(), b.view());
            // SAFETY: the pointers and strides describe the validated views above and r.
            unsafe {
                matrixmultiply::sgemm(
                    m,
                    k,
                    n,
                    1.0,
                    av.data().as_ptr(),
                    av.row_stride() as isize,
                    av.col_stride() as isize,
                    bv.data().as_ptr(),
                    bv.row_stride() as isize,
                    bv.col_stride() as isize,
                    0.0,
                    r.as_mut_slice().as_mut_ptr(),
                    n as isize,
                    1,
                );
            }
            let (val, mag) = reference(1.0, av, bv, 0.0, &r);
            for e in 0..m * n {
                let tol = 2.0 * dot_bound(k) * mag[e] + 1e-30;
                let (x, y) = (c.as_slice()[e] as f64, r.as_slice()[e] as f64);
                assert!(
                    (x - y).abs() <= tol,
                    "{tier} {m}x{n}x{k} [{e}]: ours {x} matrixmultiply {y}"
                );
                assert!((y - val[e]).abs() <= tol);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_shapes_strides_and_transposes(
        m in 0usize..=300, n in 0usize..=300, k in 0usize..=300,
        ta: bool, tb: bool, pad in 0usize..5,
        alpha in -2.0f32..2.0, beta_sel in 0usize..3, seed: u64,
    ) {
        let beta = [0.0, 1.0, -0.7][beta_sel];
        for tier in Tier::supported() {
            check_case(tier, m, n, k, ta, tb, pad, alpha, beta, seed);
        }
    }

    #[test]
    fn random_blockings(
        m in 0usize..=80, n in 0usize..=80, k in 0usize..=80, ta: bool, tb: bool,
        mc in 1usize..50, kc in 1usize..50, kc_cols in 1usize..50, nc in 1usize..70,
        beta_sel in 0usize..2, seed: u64,
    ) {
        let beta = [0.0, 0.6][beta_sel];
        let bl = Blocking { mc, kc, kc_cols, nc };
        for tier in Tier::supported() {
            check_blocked(tier, Some(bl), m, n, k, ta, tb, 1, 0.9, beta, seed);
        }
    }

    #[test]
    fn strided_c_views(m in 1usize..40, n in 1usize..40, k in 0usize..40, seed: u64) {
        // C as a transposed view (column stride > 1) goes through the strided store path.
        let a = Operand::new(m, k, false, 0, seed);
        let b = Operand::new(k, n, false, 0, seed + 1);
        let mut ct = Matrix::zeros(n, m);
        for tier in Tier::supported() {
            ct.fill(f32::NAN);
            let cv: MatMut<'_> = ct.view_mut().t();
            gemm_with(tier, 1.0, a.view(), b.view(), 0.0, cv, &mut GemmScratch::new()).unwrap();
            let (val, mag) = reference(1.0, a.view(), b.view(), 0.0, &Matrix::zeros(m, n));
            for i in 0..m {
                for j in 0..n {
                    let got = ct.get(j, i) as f64;
                    prop_assert!((got - val[i * n + j]).abs() <= dot_bound(k) * mag[i * n + j] + 1e-30);
                }
            }
        }
    }
}

/// `gemm_packed` against `gemm_with_blocking` with the same depth of pass for every layout
/// of A (`kc_cols = kc`, the depth B was packed with): the same sums in the same order, so
/// the products agree bit for bit, on every shape from 0, across block boundaries.
fn check_packed(tier: Tier, m: usize, n: usize, k: usize, ta: bool, tb: bool, beta: f32) {
    let a = Operand::new(m, k, ta, 1, (m * 7 + k) as u64);
    let b = Operand::new(k, n, tb, 2, (n * 5 + k) as u64);
    let packed = tensor::PackedB::new(tier, b.view()).unwrap();
    assert_eq!((packed.rows(), packed.cols(), packed.tier()), (k, n, tier));
    let c0 = Matrix::from_fn(m, n, |i, j| (i * 3 + j) as f32 * 0.25 - 1.0);
    let (mut want, mut got) = (c0.clone(), c0.clone());
    let d = tensor::default_blocking(tier);
    let same_depth = Blocking { kc_cols: d.kc, ..d };
    let mut s = GemmScratch::new();
    gemm_with_blocking(
        tier,
        Some(same_depth),
        1.25,
        a.view(),
        // B as the packed value holds it (row-major): the GEMV paths read that copy.
        packed.matrix().view(),
        beta,
        want.view_mut(),
        &mut s,
    )
    .unwrap();
    tensor::gemm_packed(1.25, a.view(), &packed, beta, got.view_mut(), &mut s).unwrap();
    for i in 0..m {
        for j in 0..n {
            assert_eq!(
                got.get(i, j).to_bits(),
                want.get(i, j).to_bits(),
                "{tier}: {m}x{n}x{k} ta={ta} tb={tb} beta={beta} at ({i},{j})"
            );
        }
    }
}

#[test]
fn packed_b_gives_the_same_product() {
    for tier in tiers() {
        for m in 0..=13 {
            for n in 0..=19 {
                for k in [0, 1, 5, 17] {
                    for (ta, tb) in [(false, false), (true, true)] {
                        check_packed(tier, m, n, k, ta, tb, 0.0);
                        check_packed(tier, m, n, k, ta, tb, 0.5);
                    }
                }
            }
        }
        // The serving shapes, and blocks of B past one pass of K (kc = 640) and one block
        // of columns (nc = 512 on the x86 tiers, 1024 portable).
        for &(m, n, k) in &[
            (48, 128, 288),
            (500, 128, 608),
            (37, 64, 128),
            (61, 1, 64),
            (13, 1100, 70),
            (25, 40, 1500),
        ] {
            check_packed(tier, m, n, k, false, false, 0.0);
            check_packed(tier, m, n, k, true, false, 1.0);
        }
    }
}

#[test]
fn packed_b_shape_mismatch_is_an_error() {
    let b = Matrix::zeros(4, 5);
    let packed = tensor::PackedB::new(Tier::Portable, b.view()).unwrap();
    let a = Matrix::zeros(3, 6);
    let mut c = Matrix::zeros(3, 5);
    let err = tensor::gemm_packed(
        1.0,
        a.view(),
        &packed,
        0.0,
        c.view_mut(),
        &mut GemmScratch::new(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("3x6"), "{err}");
}
