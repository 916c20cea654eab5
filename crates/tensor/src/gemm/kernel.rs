//! The micro-kernel contract, and the one micro-kernel every tier instantiates.
//!
//! A micro-kernel computes one `MR x NR` tile of C from a panel of A and a packed panel of B:
//!
//! ```text
//!   a: MR rows of kc floats, element (i, p) at a + i * rsa + p * csa
//!        packed panel:      rsa = 1,   csa = MR   (see packing.rs)
//!        row-major A:       rsa = lda, csa = 1    (read in place)
//!        transposed A:      rsa = 1,   csa = lda  (read in place)
//!   b: kc rows of NR floats (b[p * NR + j] = op(B)[p, j])
//!   C[i, j] = alpha * sum_p A(i, p) * b[p * NR + j] + beta * C[i, j]
//! ```
//!
//! Contract (the same for every tier): C is written through `c + i * rsc + j * csc`;
//! when `beta == 0` C is never read, so it may hold NaN or garbage. The driver only calls a
//! kernel on full tiles; edge tiles go through a small buffer (see `blocking.rs`).
//!
//! [`tile`] is that kernel written once, generic over the register type
//! ([`F32Vector`]) and the tile shape: `MR` rows of C, each held in `NV` registers, so
//! `NR = NV * LANES`. A tier (`avx2.rs`, `avx512.rs`, [`Portable`] below) is one
//! instantiation of it under its own `#[target_feature]`, plus its cache blocking.

use super::vector::{F32Vector, Lanes4};

/// Cache-blocking sizes for one kernel: how much of A, B and the K dimension one pass covers.
///
/// The driver balances each size against the problem (`k = 608` with `kc = 512` runs as
/// two passes of 304), so these are upper bounds. Every size must be at least 1; `mc` is
/// rounded up to a multiple of MR and `nc` to a multiple of NR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocking {
    /// Rows of A per block: the MC x KC block of A, when A has to be packed, stays in L2.
    pub mc: usize,
    /// Depth of one pass over K when A is row-major (read in place, row by row): one
    /// MR x KC sliver of A stays in L1 while the B panels stream past it.
    pub kc: usize,
    /// Depth of one pass over K when A is read in place column by column (a transposed
    /// view, the weight gradient `X^T dY`): each step of K then touches a new cache line
    /// of A, so the sliver occupies `KC` lines of L1 rather than `MR * KC` floats.
    pub kc_cols: usize,
    /// Columns of B packed per block: the packed KC x NC block of B.
    pub nc: usize,
}

/// A register-blocked micro-kernel for one instruction-set tier.
pub(crate) trait MicroKernel {
    /// Rows of the C tile (elements of A broadcast per step).
    const MR: usize;
    /// Columns of the C tile (a whole number of vector registers).
    const NR: usize;
    /// Cache blocking chosen for this kernel (the measurements are beside each value).
    const BLOCKING: Blocking;

    /// Computes one full `MR x NR` tile, as described in the module documentation, with
    /// `alpha_beta = [alpha, beta]`.
    ///
    /// Alpha and beta come by reference so that they stay in memory during the K loop: as
    /// arguments they arrive in vector registers, and on AVX2 keeping beta there while
    /// 12 accumulators, 2 B registers and a broadcast are live spilled an accumulator to
    /// the stack in some builds, halving the speed.
    ///
    /// # Safety
    /// `a + i * rsa + p * csa` is readable for `i < MR, p < kc` and `b` for `kc * NR`
    /// reads; `c + i * rsc + j * csc` is valid for writes (and reads when `beta != 0`) for
    /// every `i < MR, j < NR`; the CPU supports the kernel's tier.
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile(
        kc: usize,
        alpha_beta: &[f32; 2],
        a: *const f32,
        rsa: usize,
        csa: usize,
        b: *const f32,
        c: *mut f32,
        rsc: usize,
        csc: usize,
    );
}

/// The micro-kernel: `MR` rows of `NV` registers of accumulators, held across all of `kc`.
///
/// Each step `p` loads one row of the B panel (`NV` registers), broadcasts `A(i, p)` for each
/// of the `MR` rows and issues `MR * NV` independent multiply-adds. On AVX2 (6 x 16: 12
/// accumulators, 2 B registers, 1 broadcast = 15 of 16 ymm registers):
///
/// ```text
///               b[0] = B[p, 0..8]   b[1] = B[p, 8..16]
///   A(0, p) ->  acc[0][0]           acc[0][1]
///    ...           ...                 ...
///   A(5, p) ->  acc[5][0]           acc[5][1]
/// ```
///
/// An FMA has a latency of 4 cycles and two issue per cycle (Zen 3, Zen 5), so at least 8
/// independent chains keep both pipes busy; 12 (AVX2) and 24 (AVX-512) give slack.
///
/// `PREFETCH` (in steps of K, 0 for none) asks for A's cache line that far ahead when A is
/// read through a stride (`csa != 1`, a transposed view): every step then needs a new line,
/// which the hardware prefetcher does not fetch early enough on its own.
///
/// # Safety
/// As [`MicroKernel::tile`], with `NR = NV * V::LANES`; the CPU supports `V`'s instructions.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn tile<V: F32Vector, const MR: usize, const NV: usize, const PREFETCH: usize>(
    kc: usize,
    alpha_beta: &[f32; 2],
    a: *const f32,
    rsa: usize,
    csa: usize,
    b: *const f32,
    c: *mut f32,
    rsc: usize,
    csc: usize,
) {
    let lanes = V::LANES;
    // SAFETY: for the whole body, the caller's contract covers every pointer read or written here:
    // rows i < MR and steps p < kc of A, kc * NV * LANES floats of b, the MR x NR tile of C.
    // The prefetch hints may point past A; they never fault.
    unsafe {
        let mut acc = [[V::zero(); NV]; MR];
        let rows: [*const f32; MR] = std::array::from_fn(|i| a.add(i * rsa));
        let mut bp = b;
        let mut off = 0;
        for _ in 0..kc {
            let bv: [V; NV] = std::array::from_fn(|v| V::load(bp.add(v * lanes)));
            if PREFETCH > 0 && csa != 1 {
                prefetch(rows[0].wrapping_add(off + PREFETCH * csa));
                prefetch(rows[MR - 1].wrapping_add(off + PREFETCH * csa));
            }
            for (row, r) in acc.iter_mut().zip(&rows) {
                let ai = V::broadcast(r.add(off));
                for (x, &bj) in row.iter_mut().zip(&bv) {
                    *x = V::mul_add(ai, bj, *x);
                }
            }
            bp = bp.add(NV * lanes);
            off += csa;
        }
        let [alpha, beta] = *alpha_beta;
        if csc == 1 {
            let va = V::splat(alpha);
            let vb = V::splat(beta);
            for (i, row) in acc.iter().enumerate() {
                let ci = c.add(i * rsc);
                for (v, &x) in row.iter().enumerate() {
                    let cv = ci.add(v * lanes);
                    let mut r = V::mul(va, x);
                    if beta != 0.0 {
                        r = V::mul_add(vb, V::load(cv), r);
                    }
                    r.store(cv);
                }
            }
        } else {
            // Column-strided C (a transposed view): spill the tile, then scalar stores.
            let mut buf = [[[0.0f32; 16]; NV]; MR];
            for (row, out) in acc.iter().zip(buf.iter_mut()) {
                for (&x, o) in row.iter().zip(out.iter_mut()) {
                    x.store(o.as_mut_ptr());
                }
            }
            for (i, out) in buf.iter().enumerate() {
                for j in 0..NV * lanes {
                    let cij = c.add(i * rsc + j * csc);
                    let v = alpha * out[j / lanes][j % lanes];
                    *cij = if beta == 0.0 { v } else { v + beta * *cij };
                }
            }
        }
    }
}

/// Writes `alpha * acc + beta * C` into a C tile given as `mr x nr` row-major accumulators
/// (row stride `ld_acc`): the copy-out of an edge tile.
///
/// # Safety
/// As [`MicroKernel::tile`] for `c`, with the tile's `mr x nr` shape.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn store_tile(
    acc: &[f32],
    mr: usize,
    nr: usize,
    ld_acc: usize,
    alpha: f32,
    beta: f32,
    c: *mut f32,
    rsc: usize,
    csc: usize,
) {
    for i in 0..mr {
        for j in 0..nr {
            // SAFETY: the caller guarantees (i, j) of the tile is a valid C element.
            let cij = unsafe { c.add(i * rsc + j * csc) };
            let v = alpha * acc[i * ld_acc + j];
            // SAFETY: as above; C is read only when beta != 0, as the contract says.
            unsafe { *cij = if beta == 0.0 { v } else { v + beta * *cij } };
        }
    }
}

/// The portable kernel: [`tile`] over 4-float registers of plain Rust, 4 x 16, which the
/// compiler keeps in SSE2 registers on x86-64 (NEON on aarch64).
pub(crate) struct Portable;

impl MicroKernel for Portable {
    const MR: usize = 4;
    const NR: usize = 16;
    const BLOCKING: Blocking = Blocking {
        mc: 128,
        kc: 256,
        kc_cols: 256,
        nc: 1024,
    };

    unsafe fn tile(
        kc: usize,
        alpha_beta: &[f32; 2],
        a: *const f32,
        rsa: usize,
        csa: usize,
        b: *const f32,
        c: *mut f32,
        rsc: usize,
        csc: usize,
    ) {
        // SAFETY: forwarded from the tile contract; Lanes4 needs no CPU feature.
        unsafe { tile::<Lanes4, 4, 4, 0>(kc, alpha_beta, a, rsa, csa, b, c, rsc, csc) }
    }
}

/// A hint to load the cache line holding `p` into L1; never faults, whatever `p` is.
#[inline(always)]
fn prefetch(p: *const f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching never faults or changes memory, and SSE (which provides the
    // instruction) is part of the x86-64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
