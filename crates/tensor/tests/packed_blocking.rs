//! `PackedB::with_blocking`: weights packed with an explicit depth of pass over K and
//! block of columns give, through `gemm_packed`, the same product bit for bit as
//! `gemm_with_blocking` with that blocking (the same sums in the same order), on every
//! shape from 0 and across pass and block boundaries; a block size of 0 is an error.

use tensor::{
    Blocking, GemmScratch, Matrix, PackedB, Tier, default_blocking, gemm_packed, gemm_with_blocking,
};

fn tiers() -> Vec<Tier> {
    let t = Tier::supported();
    eprintln!("testing kernel tiers: {t:?}");
    t
}

/// Values in [-1, 1) from a small linear congruential sequence.
fn random(rows: usize, cols: usize, seed: u64) -> Matrix {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    Matrix::from_fn(rows, cols, |_, _| {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    })
}

fn check(tier: Tier, m: usize, n: usize, k: usize, kc: usize, nc: usize, beta: f32) {
    let a = random(m, k, (m * 7 + k) as u64);
    let b = random(k, n, (n * 5 + k) as u64 + 1);
    let blocking = Blocking {
        kc,
        kc_cols: kc,
        nc,
        ..default_blocking(tier)
    };
    let packed = PackedB::with_blocking(tier, b.view(), blocking).unwrap();
    assert_eq!((packed.rows(), packed.cols(), packed.tier()), (k, n, tier));
    let c0 = Matrix::from_fn(m, n, |i, j| (i * 3 + j) as f32 * 0.25 - 1.0);
    let (mut want, mut got) = (c0.clone(), c0.clone());
    let mut s = GemmScratch::new();
    gemm_with_blocking(
        tier,
        Some(blocking),
        1.25,
        a.view(),
        b.view(),
        beta,
        want.view_mut(),
        &mut s,
    )
    .unwrap();
    gemm_packed(1.25, a.view(), &packed, beta, got.view_mut(), &mut s).unwrap();
    for i in 0..m {
        for j in 0..n {
            assert_eq!(
                got.get(i, j).to_bits(),
                want.get(i, j).to_bits(),
                "{tier}: {m}x{n}x{k} kc={kc} nc={nc} beta={beta} at ({i},{j})"
            );
        }
    }
}

#[test]
fn explicit_blocking_gives_the_same_product_as_the_driver() {
    for tier in tiers() {
        for m in 0..=13 {
            for n in [0, 1, 2, 9, 17, 33] {
                for k in [0, 1, 5, 17] {
                    for (kc, nc) in [(1, 1), (4, 16), (7, 40)] {
                        check(tier, m, n, k, kc, nc, 0.0);
                        check(tier, m, n, k, kc, nc, 0.5);
                    }
                }
            }
        }
        // The serving shapes, with the depth a plan packs small blocks with.
        for &(m, n, k, kc) in &[
            (48, 128, 608, 304),
            (48, 256, 288, 288),
            (48, 128, 608, 152),
            (5, 64, 128, 64),
            (50, 1100, 70, 33),
        ] {
            check(tier, m, n, k, kc, 512, 0.0);
            check(tier, m, n, k, kc, 512, 1.0);
        }
    }
}

#[test]
fn a_zero_block_size_is_an_error() {
    let b = Matrix::zeros(4, 5);
    for (kc, nc) in [(0, 8), (8, 0)] {
        let blocking = Blocking {
            kc,
            nc,
            ..default_blocking(Tier::Portable)
        };
        let err = PackedB::with_blocking(Tier::Portable, b.view(), blocking).unwrap_err();
        assert!(err.to_string().contains("at least 1"), "{err}");
    }
}
