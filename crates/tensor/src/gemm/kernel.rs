//! The micro-kernel contract and the portable micro-kernel.
//!
//! A micro-kernel computes one `MR x NR` tile of C from two packed panels:
//!
//! ```text
//!   a: kc columns of MR floats  (a[p * MR + i] = op(A)[i, p])
//!   b: kc rows of NR floats     (b[p * NR + j] = op(B)[p, j])
//!   C[i, j] = alpha * sum_p a[p * MR + i] * b[p * NR + j] + beta * C[i, j]
//! ```
//!
//! Contract (the same for every tier): C is written through `c + i * rsc + j * csc`;
//! when `beta == 0` C is never read, so it may hold NaN or garbage. The driver only calls a
//! kernel on full tiles; edge tiles go through a small buffer (see `blocking.rs`).

/// Cache-blocking sizes for one kernel: how much of A, B and the K dimension one pass covers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Blocking {
    /// Rows of A packed per block (a multiple of MR): the A block, MC x KC, stays in L2.
    pub mc: usize,
    /// Depth of one pass: one MR x KC micro-panel of A stays in L1 across all of B's panels.
    pub kc: usize,
    /// Columns of B packed per block (a multiple of NR): the KC x NC block stays in L2/L3.
    pub nc: usize,
}

/// A register-blocked micro-kernel for one instruction-set tier.
pub(crate) trait MicroKernel {
    /// Rows of the C tile (elements of A broadcast per step).
    const MR: usize;
    /// Columns of the C tile (a whole number of vector registers).
    const NR: usize;
    /// Cache blocking chosen for this kernel (see docs/tensor.md for the measurements).
    const BLOCKING: Blocking;

    /// Computes one full `MR x NR` tile, as described in the module documentation.
    ///
    /// # Safety
    /// `a` is valid for `kc * MR` reads and `b` for `kc * NR` reads; `c + i * rsc + j * csc`
    /// is valid for writes (and reads when `beta != 0`) for every `i < MR, j < NR`; the CPU
    /// supports the kernel's tier.
    unsafe fn tile(
        kc: usize,
        alpha: f32,
        a: *const f32,
        b: *const f32,
        beta: f32,
        c: *mut f32,
        rsc: usize,
        csc: usize,
    );

    /// Like [`MicroKernel::tile`], but A is read in place through strides: element
    /// `(i, p)` of the panel is `a[i * rsa + p * csa]`. Skips packing, which for the narrow
    /// C of the model's layers costs a whole extra pass over A for little reuse.
    ///
    /// # Safety
    /// As [`MicroKernel::tile`], with `a + i * rsa + p * csa` readable for `i < MR, p < kc`.
    unsafe fn tile_strided(
        kc: usize,
        alpha: f32,
        a: *const f32,
        rsa: usize,
        csa: usize,
        b: *const f32,
        beta: f32,
        c: *mut f32,
        rsc: usize,
        csc: usize,
    );
}

/// Writes `alpha * acc + beta * C` into a C tile given as `MR x NR` row-major accumulators.
///
/// # Safety
/// As [`MicroKernel::tile`] for `c`, with the tile's `mr x nr` shape.
#[inline(always)]
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

/// The portable kernel: plain Rust over a 4 x 16 accumulator array, which the compiler
/// keeps in vector registers of whatever width the build target has (SSE2 on x86-64).
pub(crate) struct Portable;

impl MicroKernel for Portable {
    const MR: usize = 4;
    const NR: usize = 16;
    const BLOCKING: Blocking = Blocking {
        mc: 128,
        kc: 256,
        nc: 1024,
    };

    unsafe fn tile(
        kc: usize,
        alpha: f32,
        a: *const f32,
        b: *const f32,
        beta: f32,
        c: *mut f32,
        rsc: usize,
        csc: usize,
    ) {
        // SAFETY: a packed panel is the strided case rsa = 1, csa = MR.
        unsafe { portable_tile(kc, alpha, a, 1, Self::MR, b, beta, c, rsc, csc) }
    }

    unsafe fn tile_strided(
        kc: usize,
        alpha: f32,
        a: *const f32,
        rsa: usize,
        csa: usize,
        b: *const f32,
        beta: f32,
        c: *mut f32,
        rsc: usize,
        csc: usize,
    ) {
        // SAFETY: forwarded from the strided-A tile contract.
        unsafe { portable_tile(kc, alpha, a, rsa, csa, b, beta, c, rsc, csc) }
    }
}

/// The portable 4 x 16 tile, A element `(i, p)` at `a + i * rsa + p * csa`.
///
/// # Safety
/// As [`MicroKernel::tile_strided`].
unsafe fn portable_tile(
    kc: usize,
    alpha: f32,
    a: *const f32,
    rsa: usize,
    csa: usize,
    b: *const f32,
    beta: f32,
    c: *mut f32,
    rsc: usize,
    csc: usize,
) {
    const MR: usize = Portable::MR;
    const NR: usize = Portable::NR;
    // SAFETY: the caller guarantees kc * NR readable floats at b.
    let b = unsafe { std::slice::from_raw_parts(b, kc * NR) };
    let mut acc = [[0.0f32; NR]; MR];
    for (p, bp) in b.chunks_exact(NR).enumerate() {
        for (i, row) in acc.iter_mut().enumerate() {
            // SAFETY: (i, p) with i < MR, p < kc is inside the A panel.
            let ai = unsafe { *a.add(i * rsa + p * csa) };
            for (acc, &bj) in row.iter_mut().zip(bp) {
                *acc += ai * bj;
            }
        }
    }
    // SAFETY: forwarded from the caller's contract on c.
    unsafe { store_tile(acc.as_flattened(), MR, NR, NR, alpha, beta, c, rsc, csc) };
}
