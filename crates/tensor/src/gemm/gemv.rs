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

/// `y[i] = dot(A[i, :], x)` for `m` rows of a row-major `A` (row stride `lda`), `x` of
/// length `k`: four rows at a time, so four independent multiply-add chains share each load
/// of x; the last `k % LANES` columns go through one partial (zero-filled) register.
///
/// # Safety
/// `a + i * lda + p` is readable for `i < m, p < k`; `x` has `k` and `y` `m` floats; the
/// CPU supports `V`'s instructions (the caller is a tier's `#[target_feature]` entry point).
#[inline(always)]
pub(crate) unsafe fn dot_rows<V: F32Vector>(
    m: usize,
    k: usize,
    a: *const f32,
    lda: usize,
    x: &[f32],
    y: &mut [f32],
) {
    let lanes = V::LANES;
    let full = k / lanes * lanes;
    let tail = k - full;
    let xp = x.as_ptr();
    let mut i = 0;
    // SAFETY: in both loops, rows i..i + 4 (or i) are below m; every full load covers
    // p + LANES <= full <= k floats of a row and of x, the partial load the last `tail`.
    unsafe {
        while i + 4 <= m {
            let rows: [*const f32; 4] = std::array::from_fn(|r| a.add((i + r) * lda));
            let mut acc = [V::zero(); 4];
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
            for (r, s) in acc.iter().enumerate() {
                y[i + r] = s.sum();
            }
            i += 4;
        }
        while i < m {
            let row = a.add(i * lda);
            let mut s = V::zero();
            let mut p = 0;
            while p < full {
                s = V::mul_add(V::load(row.add(p)), V::load(xp.add(p)), s);
                p += lanes;
            }
            if tail != 0 {
                let xv = V::load_partial(xp.add(full), tail);
                s = V::mul_add(V::load_partial(row.add(full), tail), xv, s);
            }
            y[i] = s.sum();
            i += 1;
        }
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
            // SAFETY: as above; Lanes4 needs no CPU feature.
            _ => unsafe { dot_rows::<Lanes4>(m, k, data.as_ptr(), rs, xs, y) },
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
            // SAFETY: as above; Lanes4 needs no CPU feature.
            _ => unsafe { axpy_cols::<Lanes4>(data.as_ptr(), cs, xs, y) },
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
