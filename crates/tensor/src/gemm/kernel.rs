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
//! instantiation of it under its own `#[target_feature]`, plus its cache blocking; the SIMD
//! tiers are each one invocation of `simd_tier!`, which writes the kernel type and the
//! tier's entry points the same way for all of them.

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
    /// Whether a transposed A (`rsa = 1`, the weight gradient `X^T dY`) is packed rather
    /// than read in place: a measured choice per tier (the figures are beside each value).
    const PACK_TRANSPOSED_A: bool;

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

    /// [`MicroKernel::tile`] for a transposed A read in place (`rsa = 1`, columns `csa`
    /// floats apart) that also copies the panel it reads into `packed` in the packed
    /// layout (`packed[p * MR + i] = A(i, p)`), so that the tiles after it read the packed
    /// copy: the packing then overlaps this tile's arithmetic.
    ///
    /// # Safety
    /// As [`MicroKernel::tile`] with `rsa = 1`; `packed` is valid for `kc * MR` writes and
    /// overlaps none of the other operands.
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile_packing_a(
        kc: usize,
        alpha_beta: &[f32; 2],
        a: *const f32,
        csa: usize,
        b: *const f32,
        c: *mut f32,
        rsc: usize,
        csc: usize,
        packed: *mut f32,
    );
}

/// Describes one SIMD tier once: its register type, the `#[target_feature]` it is compiled
/// under, its tile shape, prefetch distance, cache blocking and packing choice. The macro
/// writes everything else the same way for every tier: the kernel type and its
/// [`MicroKernel`] impl (which calls [`tile`] through a `#[target_feature]` function), and
/// the tier's entry points for the GEMV kernels (`dot_rows`, `axpy_cols`), compiled under
/// the same features so that the generic code they inline runs on the tier's registers. A
/// tier file (`avx2.rs`, `avx512.rs`) then holds only its measured choices and one
/// invocation; the portable tier, which needs no target feature, implements the trait
/// directly below.
///
/// ```text
/// simd_tier! {
///     /// docs of the kernel type
///     Avx2 { vector: __m256, feature: "avx2,fma", mr: MR, nv: NV, prefetch: PREFETCH,
///            blocking: BLOCKING, pack_transposed_a: PACK_TRANSPOSED_A }
/// }
/// ```
#[cfg(target_arch = "x86_64")]
macro_rules! simd_tier {
    (
        $(#[$meta:meta])*
        $name:ident {
            vector: $vector:ty,
            feature: $feature:literal,
            mr: $mr:expr,
            nv: $nv:expr,
            prefetch: $prefetch:expr,
            blocking: $blocking:expr,
            pack_transposed_a: $pack:expr $(,)?
        }
    ) => {
        $(#[$meta])*
        pub(crate) struct $name;

        impl super::kernel::MicroKernel for $name {
            const MR: usize = $mr;
            const NR: usize = $nv * <$vector as super::vector::F32Vector>::LANES;
            const BLOCKING: super::kernel::Blocking = $blocking;
            const PACK_TRANSPOSED_A: bool = $pack;

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
                #[target_feature(enable = $feature)]
                #[allow(clippy::too_many_arguments)]
                unsafe fn tile_tier(
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
                    // SAFETY: forwarded from the tile contract; this function enables the
                    // tier's features.
                    unsafe {
                        super::kernel::tile::<$vector, { $mr }, { $nv }, { $prefetch }>(
                            kc, alpha_beta, a, rsa, csa, b, c, rsc, csc,
                        )
                    }
                }
                // SAFETY: the caller upholds the tile contract, which includes the CPU
                // supporting the tier's features.
                unsafe { tile_tier(kc, alpha_beta, a, rsa, csa, b, c, rsc, csc) }
            }

            unsafe fn tile_packing_a(
                kc: usize,
                alpha_beta: &[f32; 2],
                a: *const f32,
                csa: usize,
                b: *const f32,
                c: *mut f32,
                rsc: usize,
                csc: usize,
                packed: *mut f32,
            ) {
                #[target_feature(enable = $feature)]
                #[allow(clippy::too_many_arguments)]
                unsafe fn tile_tier(
                    kc: usize,
                    alpha_beta: &[f32; 2],
                    a: *const f32,
                    csa: usize,
                    b: *const f32,
                    c: *mut f32,
                    rsc: usize,
                    csc: usize,
                    packed: *mut f32,
                ) {
                    // SAFETY: forwarded from the contract; this function enables the tier's
                    // features.
                    unsafe {
                        super::kernel::tile_packing_a::<$vector, { $mr }, { $nv }, { $prefetch }>(
                            kc, alpha_beta, a, csa, b, c, rsc, csc, packed,
                        )
                    }
                }
                // SAFETY: the caller upholds the contract, which includes the CPU
                // supporting the tier's features.
                unsafe { tile_tier(kc, alpha_beta, a, csa, b, c, rsc, csc, packed) }
            }
        }

        /// [`super::gemv::dot_rows`] on this tier.
        ///
        /// # Safety
        /// As [`super::gemv::dot_rows`]; the CPU supports the tier's features.
        #[target_feature(enable = $feature)]
        #[allow(clippy::too_many_arguments)]
        pub(crate) unsafe fn dot_rows(
            m: usize,
            k: usize,
            a: *const f32,
            lda: usize,
            x: &[f32],
            alpha: f32,
            beta: f32,
            y: &mut [f32],
        ) {
            // SAFETY: forwarded; this function enables the tier's features.
            unsafe { super::gemv::dot_rows::<$vector>(m, k, a, lda, x, alpha, beta, y) }
        }

        /// [`super::gemv::axpy_cols`] on this tier.
        ///
        /// # Safety
        /// As [`super::gemv::axpy_cols`]; the CPU supports the tier's features.
        #[target_feature(enable = $feature)]
        pub(crate) unsafe fn axpy_cols(a: *const f32, lda: usize, x: &[f32], y: &mut [f32]) {
            // SAFETY: forwarded; this function enables the tier's features.
            unsafe { super::gemv::axpy_cols::<$vector>(a, lda, x, y) }
        }
    };
}
#[cfg(target_arch = "x86_64")]
pub(super) use simd_tier;

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
/// The K loop is unrolled by [`UNROLL`] steps, and each layout of A gets its own copy of the
/// loop with A's step between columns (`csa`) known when it compiles: row-major A read in
/// place (`csa = 1`) and a packed panel (`rsa = 1, csa = MR`) then address every broadcast
/// as a fixed offset from a pointer that moves once per unrolled group. With `csa` only known
/// at run time, the AVX2 loop spent 18 instructions of bookkeeping (address arithmetic, the
/// prefetch test, the loop branch) beside its 12 FMAs, 41% of its instructions FMAs.
///
/// `PREFETCH` (in steps of K, 0 for none) asks for A's cache line that far ahead when A is
/// read through a stride (a transposed view, the only layout left for the run-time `csa`):
/// every step then needs a new line, which the hardware prefetcher does not fetch early
/// enough on its own.
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
    let nul = std::ptr::null_mut();
    // SAFETY: forwarded from the caller; each of the three copies reads A with the strides
    // given, and none writes a packed copy.
    unsafe {
        if csa == 1 {
            tile_loop::<V, MR, NV, 0, 1, false>(kc, alpha_beta, a, rsa, csa, b, c, rsc, csc, nul)
        } else if rsa == 1 && csa == MR {
            tile_loop::<V, MR, NV, 0, MR, false>(kc, alpha_beta, a, rsa, csa, b, c, rsc, csc, nul)
        } else {
            tile_loop::<V, MR, NV, PREFETCH, 0, false>(
                kc, alpha_beta, a, rsa, csa, b, c, rsc, csc, nul,
            )
        }
    }
}

/// [`MicroKernel::tile_packing_a`] written once: the run-time-stride copy of [`tile_loop`]
/// with each step's `MR` floats of A (contiguous, since `rsa = 1`) also copied to `packed`.
///
/// # Safety
/// As [`MicroKernel::tile_packing_a`], with `NR = NV * V::LANES`; the CPU supports `V`'s
/// instructions.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn tile_packing_a<
    V: F32Vector,
    const MR: usize,
    const NV: usize,
    const PREFETCH: usize,
>(
    kc: usize,
    alpha_beta: &[f32; 2],
    a: *const f32,
    csa: usize,
    b: *const f32,
    c: *mut f32,
    rsc: usize,
    csc: usize,
    packed: *mut f32,
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        tile_loop::<V, MR, NV, PREFETCH, 0, true>(kc, alpha_beta, a, 1, csa, b, c, rsc, csc, packed)
    }
}

/// Steps of K per trip of the micro-kernel's loop.
const UNROLL: usize = 4;

/// [`tile`] for one layout of A: `CSA` is A's column step when it is known at compile time,
/// or 0 to use the run-time `csa`. With `PACK` (and `rsa = 1`) each step's `MR` floats of A
/// are also copied to `packed + p * MR`.
///
/// # Safety
/// As [`tile`]; with `PACK`, as [`tile_packing_a`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_loop<
    V: F32Vector,
    const MR: usize,
    const NV: usize,
    const PREFETCH: usize,
    const CSA: usize,
    const PACK: bool,
>(
    kc: usize,
    alpha_beta: &[f32; 2],
    a: *const f32,
    rsa: usize,
    csa: usize,
    b: *const f32,
    c: *mut f32,
    rsc: usize,
    csc: usize,
    packed: *mut f32,
) {
    let lanes = V::LANES;
    let csa = if CSA != 0 { CSA } else { csa };
    // SAFETY: for the whole body, the caller's contract covers every pointer read or written here:
    // rows i < MR and steps p < kc of A, kc * NV * LANES floats of b, the MR x NR tile of C.
    // The prefetch hints may point past A; they never fault.
    unsafe {
        let mut acc = [[V::zero(); NV]; MR];
        let mut rows: [*const f32; MR] = std::array::from_fn(|i| a.add(i * rsa));
        let mut bp = b;
        let mut pp = packed;
        for _ in 0..kc / UNROLL {
            for u in 0..UNROLL {
                if PACK {
                    std::ptr::copy_nonoverlapping(rows[0].add(u * csa), pp.add(u * MR), MR);
                }
                step::<V, MR, NV, PREFETCH>(&mut acc, &rows, csa, bp, u);
            }
            for r in rows.iter_mut() {
                *r = r.add(UNROLL * csa);
            }
            bp = bp.add(UNROLL * NV * lanes);
            if PACK {
                pp = pp.add(UNROLL * MR);
            }
        }
        for u in 0..kc % UNROLL {
            if PACK {
                std::ptr::copy_nonoverlapping(rows[0].add(u * csa), pp.add(u * MR), MR);
            }
            step::<V, MR, NV, PREFETCH>(&mut acc, &rows, csa, bp, u);
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

/// One step of K, `u` steps past the rows' current position: the body of [`tile_loop`].
///
/// A function rather than a closure: a closure does not inherit its caller's
/// `#[target_feature]`, and one left out of line ran the AVX2 kernel at 1 GFLOP/s.
///
/// # Safety
/// As [`tile`], for step `u` of each row and of `bp`.
#[inline(always)]
unsafe fn step<V: F32Vector, const MR: usize, const NV: usize, const PREFETCH: usize>(
    acc: &mut [[V; NV]; MR],
    rows: &[*const f32; MR],
    csa: usize,
    bp: *const f32,
    u: usize,
) {
    let lanes = V::LANES;
    // SAFETY: the caller guarantees step u of every row of A and of the B panel is readable;
    // the prefetch hints may point past A and never fault.
    unsafe {
        let mut bv = [V::zero(); NV];
        for (v, x) in bv.iter_mut().enumerate() {
            *x = V::load(bp.add(u * NV * lanes + v * lanes));
        }
        if PREFETCH > 0 {
            prefetch(rows[0].wrapping_add((u + PREFETCH) * csa));
            prefetch(rows[MR - 1].wrapping_add((u + PREFETCH) * csa));
        }
        for (row, r) in acc.iter_mut().zip(rows) {
            let ai = V::broadcast(r.add(u * csa));
            for (x, &bj) in row.iter_mut().zip(&bv) {
                *x = V::mul_add(ai, bj, *x);
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
    /// In place, as it always was: no measurement has been taken for this tier.
    const PACK_TRANSPOSED_A: bool = false;

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

    unsafe fn tile_packing_a(
        kc: usize,
        alpha_beta: &[f32; 2],
        a: *const f32,
        csa: usize,
        b: *const f32,
        c: *mut f32,
        rsc: usize,
        csc: usize,
        packed: *mut f32,
    ) {
        // SAFETY: forwarded from the contract; Lanes4 needs no CPU feature.
        unsafe { tile_packing_a::<Lanes4, 4, 4, 0>(kc, alpha_beta, a, csa, b, c, rsc, csc, packed) }
    }
}

/// A hint to load the cache line holding `p` into L1; never faults, whatever `p` is.
#[inline(always)]
pub(super) fn prefetch(p: *const f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching never faults or changes memory, and SSE (which provides the
    // instruction) is part of the x86-64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
