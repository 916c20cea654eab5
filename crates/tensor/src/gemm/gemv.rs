//! Matrix-vector products: the path for `N = 1` (a logit layer) and, by transposition,
//! `M = 1` (scoring one candidate).
//!
//! Packing copies every element of A once so the micro-kernel can reuse it NR times; with
//! one column of B there is no reuse, so packing would only add a pass over memory. These
//! kernels read A where it lies instead: dot products along contiguous rows, or scaled
//! column sums (axpy) along contiguous columns.

use super::GemmScratch;
use crate::arch::Tier;
use crate::matrix::{MatMut, MatRef};

/// Portable `y[i] = dot(A[i, :], x)`, with 8 partial sums per row so it vectorises.
fn dot_rows_portable(m: usize, k: usize, a: &[f32], lda: usize, x: &[f32], y: &mut [f32]) {
    for (i, yi) in y.iter_mut().enumerate().take(m) {
        let row = &a[i * lda..i * lda + k];
        let mut acc = [0.0f32; 8];
        let mut rc = row.chunks_exact(8);
        let mut xc = x.chunks_exact(8);
        for (r, xv) in (&mut rc).zip(&mut xc) {
            for l in 0..8 {
                acc[l] += r[l] * xv[l];
            }
        }
        let tail: f32 = rc
            .remainder()
            .iter()
            .zip(xc.remainder())
            .map(|(r, x)| r * x)
            .sum();
        *yi = acc.iter().sum::<f32>() + tail;
    }
}

/// Portable `y += sum_p x[p] * A[:, p]` for contiguous columns of A.
fn axpy_cols_portable(a: &[f32], lda: usize, x: &[f32], y: &mut [f32]) {
    let m = y.len();
    for (p, &xp) in x.iter().enumerate() {
        for (yi, &ai) in y.iter_mut().zip(&a[p * lda..p * lda + m]) {
            *yi += ai * xp;
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
    scratch.y.ensure_len(m);
    let y = &mut scratch.y.as_mut_slice()[..m];
    let (rs, cs, data) = (a.row_stride(), a.col_stride(), a.data());

    if cs == 1 || k == 1 {
        // Rows of A are contiguous: one dot product per row.
        match tier {
            // SAFETY: rows i < m hold k floats at data + i * rs (validated view); the caller
            // checked the CPU supports the tier.
            #[cfg(target_arch = "x86_64")]
            Tier::Avx512 => unsafe { super::avx512::dot_rows(m, k, data.as_ptr(), rs, xs, y) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Tier::Avx2 => unsafe { super::avx2::dot_rows(m, k, data.as_ptr(), rs, xs, y) },
            _ => dot_rows_portable(m, k, data, rs, xs, y),
        }
    } else if rs == 1 {
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
            _ => axpy_cols_portable(data, cs, xs, y),
        }
    } else {
        for (i, yi) in y.iter_mut().enumerate() {
            *yi = (0..k).map(|p| a.get(i, p) * xs[p]).sum();
        }
    }

    for (i, &yi) in y.iter().enumerate() {
        let v = if beta == 0.0 {
            alpha * yi
        } else {
            alpha * yi + beta * c.get(i, 0)
        };
        c.set(i, 0, v);
    }
}
