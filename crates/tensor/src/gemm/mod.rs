//! General matrix multiply: `C = alpha * op(A) * op(B) + beta * C`.
//!
//! `op` is expressed through the views: pass `a.t()` for a transposed operand, which only
//! swaps strides. Any `M, N, K >= 0` and any strides are accepted. Routing:
//!
//! - an empty product (`K = 0` or `alpha = 0`) only scales C by beta;
//! - `N = 1` (and `M = 1`, by transposing the whole product) goes to the GEMV kernels in
//!   `gemv`, which read A in place instead of packing it;
//! - everything else goes through the BLIS loop nest in `blocking.rs` with the
//!   micro-kernel of the chosen [`Tier`].
//!
//! `beta = 0` never reads C (so C may hold NaN), as in BLAS.

mod blocking;
mod gemv;
mod kernel;
mod packing;
mod vector;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

use std::cell::RefCell;

pub use kernel::Blocking;

use crate::arch::Tier;
use crate::error::TensorError;
use crate::matrix::{AlignedVec, MatMut, MatRef, Matrix};

use blocking::BSource;

/// Reusable scratch memory for [`gemm_with`]: packed panels and GEMV buffers.
///
/// The buffers grow to the largest call seen and are then reused, so repeated products
/// of the same shapes allocate nothing.
#[derive(Debug, Default)]
pub struct GemmScratch {
    a: AlignedVec,
    b: AlignedVec,
    x: AlignedVec,
    y: AlignedVec,
}

impl GemmScratch {
    /// Empty scratch; it grows on first use.
    pub fn new() -> Self {
        Self::default()
    }

    /// Floats currently held (a measure of the memory a call needed).
    pub fn len(&self) -> usize {
        self.a.len() + self.b.len() + self.x.len() + self.y.len()
    }

    /// True when no call has used this scratch yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

thread_local! {
    static SCRATCH: RefCell<GemmScratch> = RefCell::new(GemmScratch::new());
}

/// `C = alpha * A * B + beta * C` on the process-wide kernel tier ([`Tier::active`]),
/// with per-thread scratch memory. Transposes are views: `gemm(1.0, x.t(), dy, 0.0, dw)`.
///
/// Single-threaded by design: training runs one worker per core, each calling this.
pub fn gemm(
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: MatMut<'_>,
) -> Result<(), TensorError> {
    SCRATCH.with(|s| gemm_with(Tier::active(), alpha, a, b, beta, c, &mut s.borrow_mut()))
}

/// Checks that `A: m x k`, `B: k x n` and `C: m x n` agree.
fn check_shapes(
    op: &'static str,
    a: &MatRef<'_>,
    b: &MatRef<'_>,
    c: &MatMut<'_>,
) -> Result<(), TensorError> {
    if a.cols() != b.rows() || a.rows() != c.rows() || b.cols() != c.cols() {
        return Err(TensorError::Shape {
            op,
            detail: format!(
                "A is {}x{}, B is {}x{}, C is {}x{}: need A m x k, B k x n, C m x n",
                a.rows(),
                a.cols(),
                b.rows(),
                b.cols(),
                c.rows(),
                c.cols()
            ),
        });
    }
    Ok(())
}

/// `C = beta * C`, writing zeros without reading C when `beta = 0`.
fn scale(beta: f32, c: &mut MatMut<'_>) {
    for i in 0..c.rows() {
        for j in 0..c.cols() {
            let v = if beta == 0.0 { 0.0 } else { beta * c.get(i, j) };
            c.set(i, j, v);
        }
    }
}

/// `C = alpha * A * B + beta * C` on an explicit `tier` with caller-provided scratch.
///
/// Errors when the shapes disagree or the CPU cannot run `tier`.
pub fn gemm_with(
    tier: Tier,
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: MatMut<'_>,
    scratch: &mut GemmScratch,
) -> Result<(), TensorError> {
    gemm_with_blocking(tier, None, alpha, a, b, beta, c, scratch)
}

/// The cache blocking [`gemm_with`] uses on `tier` (the figures behind each value are in
/// `docs/tensor.md`).
pub fn default_blocking(tier: Tier) -> Blocking {
    match tier {
        Tier::Portable => <kernel::Portable as kernel::MicroKernel>::BLOCKING,
        #[cfg(target_arch = "x86_64")]
        Tier::Avx2 => <avx2::Avx2 as kernel::MicroKernel>::BLOCKING,
        #[cfg(target_arch = "x86_64")]
        Tier::Avx512 => <avx512::Avx512 as kernel::MicroKernel>::BLOCKING,
        #[cfg(not(target_arch = "x86_64"))]
        _ => <kernel::Portable as kernel::MicroKernel>::BLOCKING,
    }
}

/// [`gemm_with`] with explicit cache blocking (`None`: [`default_blocking`]), for tuning
/// sweeps such as `resflow bench gemm --blocking MC,KC,NC`. The result is the same for any
/// blocking up to rounding (the order of the sums over K changes with KC).
///
/// Errors when the shapes disagree, a block size is 0, or the CPU cannot run `tier`.
#[allow(clippy::too_many_arguments)]
pub fn gemm_with_blocking(
    tier: Tier,
    blocking: Option<Blocking>,
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    mut c: MatMut<'_>,
    scratch: &mut GemmScratch,
) -> Result<(), TensorError> {
    check_shapes("gemm", &a, &b, &c)?;
    let blocking = blocking.unwrap_or_else(|| default_blocking(tier));
    if blocking.mc == 0 || blocking.kc == 0 || blocking.kc_cols == 0 || blocking.nc == 0 {
        return Err(TensorError::Shape {
            op: "gemm",
            detail: format!("block sizes must be at least 1, got {blocking:?}"),
        });
    }
    tier.require()?;
    let (m, k, n) = (a.rows(), a.cols(), b.cols());
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 || alpha == 0.0 {
        scale(beta, &mut c);
        return Ok(());
    }
    if n == 1 {
        // SAFETY: tier.require() succeeded above.
        unsafe { gemv::gemv(tier, alpha, a, b, beta, &mut c, scratch) };
        return Ok(());
    }
    if m == 1 {
        // C^T (n x 1) = B^T (n x k) * A^T (k x 1): the same GEMV on transposed views.
        let mut ct = c.t();
        // SAFETY: tier.require() succeeded above.
        unsafe { gemv::gemv(tier, alpha, b.t(), a.t(), beta, &mut ct, scratch) };
        return Ok(());
    }
    match tier {
        // SAFETY: the portable kernel runs on every CPU.
        Tier::Portable => unsafe {
            blocking::gemm_blocked::<kernel::Portable>(
                blocking,
                alpha,
                a,
                BSource::Matrix(b),
                beta,
                &mut c,
                scratch,
            )
        },
        // SAFETY: tier.require() succeeded above, so the CPU has AVX2 and FMA.
        #[cfg(target_arch = "x86_64")]
        Tier::Avx2 => unsafe {
            blocking::gemm_blocked::<avx2::Avx2>(
                blocking,
                alpha,
                a,
                BSource::Matrix(b),
                beta,
                &mut c,
                scratch,
            )
        },
        // SAFETY: tier.require() succeeded above, so the CPU has AVX-512F.
        #[cfg(target_arch = "x86_64")]
        Tier::Avx512 => unsafe {
            blocking::gemm_blocked::<avx512::Avx512>(
                blocking,
                alpha,
                a,
                BSource::Matrix(b),
                beta,
                &mut c,
                scratch,
            )
        },
        #[cfg(not(target_arch = "x86_64"))]
        _ => unreachable!("require() rejects x86 tiers elsewhere"),
    }
    Ok(())
}

/// A right-hand operand packed once, for a tier, in the panel order its micro-kernel
/// reads: the weights of a layer that multiplies many left-hand sides.
///
/// [`gemm_with`] packs B on every call (one copy of every element of B, into the
/// scratch); a serving plan multiplies the same weights for every request and every
/// block of rows, so it packs them once with [`PackedB::new`] and calls [`gemm_packed`].
/// The products are the same, bit for bit, as [`gemm_with`] with a row-major A.
#[derive(Debug, Clone)]
pub struct PackedB {
    tier: Tier,
    /// The matrix as given: the GEMV paths (`N = 1`, `M = 1`) read it in place.
    raw: Matrix,
    packed: AlignedVec,
    kc: usize,
    nc: usize,
    nr: usize,
}

impl PackedB {
    /// Packs `b` (`k x n`) for `tier`'s kernel with its default blocking.
    ///
    /// Errors when the CPU cannot run `tier`.
    pub fn new(tier: Tier, b: MatRef<'_>) -> Result<Self, TensorError> {
        tier.require()?;
        let blocking = default_blocking(tier);
        let nr = match tier {
            Tier::Portable => <kernel::Portable as kernel::MicroKernel>::NR,
            #[cfg(target_arch = "x86_64")]
            Tier::Avx2 => <avx2::Avx2 as kernel::MicroKernel>::NR,
            #[cfg(target_arch = "x86_64")]
            Tier::Avx512 => <avx512::Avx512 as kernel::MicroKernel>::NR,
            #[cfg(not(target_arch = "x86_64"))]
            _ => <kernel::Portable as kernel::MicroKernel>::NR,
        };
        let mut packed = AlignedVec::default();
        let (kc, nc) = if b.rows() == 0 || b.cols() <= 1 {
            // Empty, or a single column: only the GEMV path reads it.
            (1, 1)
        } else {
            blocking::pack_b_whole(b, blocking, nr, &mut packed)
        };
        Ok(Self {
            tier,
            raw: b.to_matrix(),
            packed,
            kc,
            nc,
            nr,
        })
    }

    /// Rows (K) of the packed matrix.
    pub fn rows(&self) -> usize {
        self.raw.rows()
    }

    /// Columns (N) of the packed matrix.
    pub fn cols(&self) -> usize {
        self.raw.cols()
    }

    /// The tier it was packed for.
    pub fn tier(&self) -> Tier {
        self.tier
    }

    /// The matrix as given.
    pub fn matrix(&self) -> &Matrix {
        &self.raw
    }
}

/// `C = alpha * A * B + beta * C` with B packed beforehand ([`PackedB`]), on the tier B
/// was packed for. Routing as [`gemm_with`]: `N = 1` and `M = 1` go to the GEMV kernels
/// on B as given; the blocked path reads the packed panels instead of packing B.
///
/// Errors when the shapes disagree.
pub fn gemm_packed(
    alpha: f32,
    a: MatRef<'_>,
    b: &PackedB,
    beta: f32,
    mut c: MatMut<'_>,
    scratch: &mut GemmScratch,
) -> Result<(), TensorError> {
    let (m, k, n) = (a.rows(), a.cols(), b.cols());
    if n <= 1 || m <= 1 || k == 0 || alpha == 0.0 {
        return gemm_with(b.tier, alpha, a, b.raw.view(), beta, c, scratch);
    }
    check_shapes("gemm_packed", &a, &b.raw.view(), &c)?;
    let src = BSource::Packed {
        data: b.packed.as_slice(),
        n,
        kc: b.kc,
        nc: b.nc,
        nr: b.nr,
    };
    let blocking = default_blocking(b.tier);
    match b.tier {
        // SAFETY: the portable kernel runs on every CPU.
        Tier::Portable => unsafe {
            blocking::gemm_blocked::<kernel::Portable>(
                blocking, alpha, a, src, beta, &mut c, scratch,
            )
        },
        // SAFETY: PackedB::new checked that the CPU has AVX2 and FMA.
        #[cfg(target_arch = "x86_64")]
        Tier::Avx2 => unsafe {
            blocking::gemm_blocked::<avx2::Avx2>(blocking, alpha, a, src, beta, &mut c, scratch)
        },
        // SAFETY: PackedB::new checked that the CPU has AVX-512F.
        #[cfg(target_arch = "x86_64")]
        Tier::Avx512 => unsafe {
            blocking::gemm_blocked::<avx512::Avx512>(blocking, alpha, a, src, beta, &mut c, scratch)
        },
        #[cfg(not(target_arch = "x86_64"))]
        _ => unreachable!("PackedB::new rejects x86 tiers elsewhere"),
    }
    Ok(())
}

/// The textbook triple loop, for teaching and as a reference: `C = alpha * A * B + beta * C`
/// with one f32 dot product per element (no blocking, no SIMD).
pub fn gemm_naive(
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    mut c: MatMut<'_>,
) -> Result<(), TensorError> {
    check_shapes("gemm_naive", &a, &b, &c)?;
    for i in 0..a.rows() {
        for j in 0..b.cols() {
            let dot: f32 = (0..a.cols()).map(|p| a.get(i, p) * b.get(p, j)).sum();
            let v = if beta == 0.0 {
                alpha * dot
            } else {
                alpha * dot + beta * c.get(i, j)
            };
            c.set(i, j, v);
        }
    }
    Ok(())
}

/// Parallel `C = alpha * A * B + beta * C` on the rayon pool: C is cut into row blocks
/// (or column blocks, for column-separated layouts), each computed by [`gemm`] on one
/// thread. Use it for large single products; training workers call [`gemm`] instead so
/// that thread pools never nest.
pub fn gemm_par(
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: MatMut<'_>,
) -> Result<(), TensorError> {
    check_shapes("gemm_par", &a, &b, &c)?;
    let threads = rayon::current_num_threads();
    if c.rows() >= c.cols() || c.row_stride() >= c.cols() * c.col_stride() {
        par_rows(threads, alpha, a, b, beta, c)
    } else {
        // Column-separated C: C^T = B^T A^T is row-separated.
        par_rows(threads, alpha, b.t(), a.t(), beta, c.t())
    }
}

fn par_rows(
    threads: usize,
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: MatMut<'_>,
) -> Result<(), TensorError> {
    // Blocks of at least 96 rows (a multiple of every MR) keep each task worth its cost.
    let rows = c.rows();
    let block = rows.div_ceil(threads.max(1)).div_ceil(96).max(1) * 96;
    if threads <= 1 || rows <= block || c.row_stride() < c.cols() * c.col_stride() {
        return gemm(alpha, a, b, beta, c);
    }
    let (top, bottom) = c.split_rows_at(block);
    let (a_top, a_bottom) = (
        a.sub(0, 0, block, a.cols()),
        a.sub(block, 0, rows - block, a.cols()),
    );
    let (r1, r2) = rayon::join(
        || gemm(alpha, a_top, b, beta, top),
        || par_rows(threads - 1, alpha, a_bottom, b, beta, bottom),
    );
    r1.and(r2)
}
