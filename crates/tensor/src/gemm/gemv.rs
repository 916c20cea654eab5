//! Matrix-vector products: the path for `N = 1` (a logit layer) and, by transposition,
//! `M = 1` (scoring one candidate).
//!
//! Packing copies every element of A once so the micro-kernel can reuse it NR times; with
//! one column of B there is no reuse, so packing would only add a pass over memory. These
//! kernels read A where it lies instead: dot products along contiguous rows, or scaled
//! column sums (axpy) along contiguous columns.

use super::GemmScratch;
use super::vector::{F32Vector, Lanes4};
use crate::arch::Tier;
use crate::matrix::{MatMut, MatRef};

/// Rows per block of [`dot_rows`]: eight multiply-add chains share each load of x, and
/// one [`F32Vector::sum8`] reduces the eight accumulators into one register of results.
///
/// On an AMD EPYC Zen 4 (32 KiB L1d, 1 MiB L2), 1024 x 1 x 64 NN, best of 9 interleaved
/// rounds, thread clock (2026-12-04): four rows, one horizontal sum each and alpha and beta
/// in a scalar loop after ran at 44.1 (avx512) and 41.8 (avx2) GFLOP/s against OpenBLAS's
/// 55.0 and 54.6; eight rows with `sum8` and alpha and beta on its register at 55.6 and
/// 56.2 against 53.5 and 54.8. Sixteen rows measured within noise of eight on avx512 and
/// spilled on avx2 (16 accumulators and x exceed the 16 ymm; 38 GFLOP/s); prefetching the
/// next block's rows lost (47 and 37).
const ROWS: usize = 8;

/// Rows per block after the last full block of [`ROWS`], when that many are left: with
/// those rows one by one (one dependent chain each), 4 x 1 x 608 fell from 55 to 35
/// GFLOP/s on avx512 and from 44 to 21 on avx2; with this block it ran at 60.0 and 46.1
/// (Zen 4, 2026-12-04).
const ROWS_LEFT: usize = 4;

/// `y[i] = alpha * dot(A[i, :], x) + beta * y[i]` for `m` rows of a row-major `A` (row
/// stride `lda`), `x` of length `k`; `y` is not read when `beta == 0`.
///
/// Blocking: [`ROWS`] rows at a time ([`row_block`]); their sums leave as one register
/// through a transposing reduction, so alpha and beta apply to `ROWS` results at once.
/// Of the last `m % ROWS` rows, [`ROWS_LEFT`] go as one more block when there are that
/// many, the others one by one, each reduced on its own.
///
/// # Safety
/// `a + i * lda + p` is readable for `i < m, p < k`; `x` has `k` and `y` `m` floats; the
/// CPU supports `V`'s instructions (the caller is a tier's `#[target_feature]` entry point).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn dot_rows<V: F32Vector>(
    m: usize,
    k: usize,
    a: *const f32,
    lda: usize,
    x: &[f32],
    alpha: f32,
    beta: f32,
    y: &mut [f32],
) {
    let out = |s: f32, yi: f32| alpha_beta(alpha, beta, s, yi);
    let mut i = 0;
    // SAFETY: each block covers rows i..i + R below m, which the caller's contract makes
    // readable for k floats.
    unsafe {
        while i + ROWS <= m {
            let sums = V::sum8(row_block::<V, ROWS>(a.add(i * lda), lda, k, x));
            for (yi, &s) in y[i..i + ROWS].iter_mut().zip(&sums) {
                *yi = out(s, *yi);
            }
            i += ROWS;
        }
        if i + ROWS_LEFT <= m {
            let acc = row_block::<V, ROWS_LEFT>(a.add(i * lda), lda, k, x);
            for (yi, s) in y[i..i + ROWS_LEFT].iter_mut().zip(&acc) {
                *yi = out(s.sum(), *yi);
            }
            i += ROWS_LEFT;
        }
        while i < m {
            let [s] = row_block::<V, 1>(a.add(i * lda), lda, k, x);
            y[i] = out(s.sum(), y[i]);
            i += 1;
        }
    }
}

/// `alpha * s + beta * c`, with C not read when `beta == 0` (it may hold NaN).
#[inline(always)]
fn alpha_beta(alpha: f32, beta: f32, s: f32, c: f32) -> f32 {
    if beta == 0.0 {
        alpha * s
    } else {
        alpha * s + beta * c
    }
}

/// The accumulators of `R` rows of A (the first at `row0`, `lda` floats apart) against
/// `x`: lane `l` of `acc[r]` holds the sum of `A(r, p) * x[p]` over the `p` in lane `l`.
/// One multiply-add chain per row, all sharing each load of x, in steps of one register;
/// the last `k % LANES` columns go through one partial (zero-filled) register.
///
/// # Safety
/// `row0 + r * lda + p` is readable for `r < R, p < k`; `x` has `k` floats; the CPU
/// supports `V`'s instructions.
#[inline(always)]
unsafe fn row_block<V: F32Vector, const R: usize>(
    row0: *const f32,
    lda: usize,
    k: usize,
    x: &[f32],
) -> [V; R] {
    let lanes = V::LANES;
    let full = k / lanes * lanes;
    let tail = k - full;
    let xp = x.as_ptr();
    // SAFETY: every full load covers p + LANES <= full <= k floats of a row and of x, the
    // partial loads the last `tail`; rows r < R are readable (the caller's contract).
    unsafe {
        let rows: [*const f32; R] = std::array::from_fn(|r| row0.add(r * lda));
        let mut acc = [V::zero(); R];
        let mut p = 0;
        while p < full {
            let xv = V::load(xp.add(p));
            for (s, row) in acc.iter_mut().zip(&rows) {
                *s = V::mul_add(V::load(row.add(p)), xv, *s);
            }
            p += lanes;
        }
        if tail != 0 {
            let xv = V::load_partial(xp.add(full), tail);
            for (s, row) in acc.iter_mut().zip(&rows) {
                *s = V::mul_add(V::load_partial(row.add(full), tail), xv, *s);
            }
        }
        acc
    }
}

/// `y += sum_p x[p] * A[:, p]` for an `A` whose columns are contiguous (column stride `lda`).
///
/// # Safety
/// `a + p * lda + i` is readable for `i < y.len(), p < x.len()`; the CPU supports `V`'s
/// instructions (the caller is a tier's `#[target_feature]` entry point).
#[inline(always)]
pub(crate) unsafe fn axpy_cols<V: F32Vector>(a: *const f32, lda: usize, x: &[f32], y: &mut [f32]) {
    let lanes = V::LANES;
    let m = y.len();
    let full = m / lanes * lanes;
    let tail = m - full;
    let yp = y.as_mut_ptr();
    for (p, &xp) in x.iter().enumerate() {
        // SAFETY: column p has m readable floats and y has m floats; the full loads and
        // stores cover i + LANES <= full <= m, the partial ones the last `tail`.
        unsafe {
            let xv = V::splat(xp);
            let col = a.add(p * lda);
            let mut i = 0;
            while i < full {
                V::mul_add(V::load(col.add(i)), xv, V::load(yp.add(i))).store(yp.add(i));
                i += lanes;
            }
            if tail != 0 {
                let v = V::mul_add(
                    V::load_partial(col.add(full), tail),
                    xv,
                    V::load_partial(yp.add(full), tail),
                );
                v.store_partial(yp.add(full), tail);
            }
        }
    }
}

/// `C (m x 1) = alpha * A (m x k) * x (k x 1) + beta * C`, for `m, k >= 1`.
///
/// # Safety
/// The CPU supports `tier`.
pub(crate) unsafe fn gemv(
    tier: Tier,
    alpha: f32,
    a: MatRef<'_>,
    x: MatRef<'_>,
    beta: f32,
    c: &mut MatMut<'_>,
    scratch: &mut GemmScratch,
) {
    let (m, k) = a.shape();
    // x as a contiguous slice: borrowed when it already is one, else gathered.
    scratch.x.ensure_len(k);
    let xs: &[f32] = if x.row_stride() == 1 || k == 1 {
        &x.data()[..k]
    } else {
        let buf = &mut scratch.x.as_mut_slice()[..k];
        for (p, v) in buf.iter_mut().enumerate() {
            *v = x.get(p, 0);
        }
        buf
    };
    let (rs, cs, data) = (a.row_stride(), a.col_stride(), a.data());
    // C's column is contiguous: the kernels write it directly, else they fill `y` first.
    let direct = c.row_stride() == 1 || m == 1;

    if cs == 1 || k == 1 {
        // Rows of A are contiguous: one dot product per row, alpha and beta applied by the
        // kernel when it writes C itself.
        if !direct {
            scratch.y.ensure_len(m);
        }
        let (alpha_k, beta_k, y) = if direct {
            (alpha, beta, &mut c.data_mut()[..m])
        } else {
            (1.0, 0.0, &mut scratch.y.as_mut_slice()[..m])
        };
        let ap = data.as_ptr();
        match tier {
            // SAFETY: rows i < m hold k floats at data + i * rs (validated view); the caller
            // checked the CPU supports the tier.
            #[cfg(target_arch = "x86_64")]
            Tier::Avx512 => unsafe {
                super::avx512::dot_rows(m, k, ap, rs, xs, alpha_k, beta_k, y)
            },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Tier::Avx2 => unsafe { super::avx2::dot_rows(m, k, ap, rs, xs, alpha_k, beta_k, y) },
            // SAFETY: as above; Lanes4 needs no CPU feature.
            _ => unsafe { dot_rows::<Lanes4>(m, k, ap, rs, xs, alpha_k, beta_k, y) },
        }
        if direct {
            return;
        }
    } else {
        scratch.y.ensure_len(m);
        let y = &mut scratch.y.as_mut_slice()[..m];
        if rs == 1 {
            // Columns of A are contiguous: accumulate x[p] * column p.
            y.fill(0.0);
            match tier {
                // SAFETY: columns p < k hold m floats at data + p * cs (validated view); the
                // caller checked the CPU supports the tier.
                #[cfg(target_arch = "x86_64")]
                Tier::Avx512 => unsafe { super::avx512::axpy_cols(data.as_ptr(), cs, xs, y) },
                // SAFETY: as above.
                #[cfg(target_arch = "x86_64")]
                Tier::Avx2 => unsafe { super::avx2::axpy_cols(data.as_ptr(), cs, xs, y) },
                // SAFETY: as above; Lanes4 needs no CPU feature.
                _ => unsafe { axpy_cols::<Lanes4>(data.as_ptr(), cs, xs, y) },
            }
        } else {
            for (i, yi) in y.iter_mut().enumerate() {
                *yi = (0..k).map(|p| a.get(i, p) * xs[p]).sum();
            }
        }
    }

    // y -> C with alpha and beta: over a slice when C's column is contiguous.
    let y = &scratch.y.as_slice()[..m];
    let out = |yi: f32, ci: f32| alpha_beta(alpha, beta, yi, ci);
    if direct {
        for (ci, &yi) in c.data_mut()[..m].iter_mut().zip(y) {
            *ci = out(yi, *ci);
        }
    } else {
        for (i, &yi) in y.iter().enumerate() {
            let v = out(yi, if beta == 0.0 { 0.0 } else { c.get(i, 0) });
            c.set(i, 0, v);
        }
    }
}
