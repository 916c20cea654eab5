//! AVX2 + FMA kernels: the 6 x 16 GEMM micro-kernel and the GEMV kernels.
//!
//! Register picture of the micro-kernel (16 ymm registers of 8 floats):
//!
//! ```text
//!           b0 (8 floats)  b1 (8 floats)     <- one row of the packed B panel
//!   a[0] -> acc[0][0]      acc[0][1]
//!    ...        ...            ...              12 accumulators + 2 B registers
//!   a[5] -> acc[5][0]      acc[5][1]            + 1 broadcast = 15 of 16 registers
//! ```

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::kernel::{Blocking, MicroKernel, store_tile};

/// The AVX2 + FMA micro-kernel (6 x 16).
pub(crate) struct Avx2;

impl MicroKernel for Avx2 {
    const MR: usize = 6;
    const NR: usize = 16;
    const BLOCKING: Blocking = Blocking {
        mc: 120,
        kc: 256,
        nc: 512,
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
        // SAFETY: the caller upholds the tile contract, which includes AVX2 + FMA support.
        unsafe { tile_6x16(kc, alpha, a, 1, MR, b, beta, c, rsc, csc) }
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
        // SAFETY: forwarded from the strided-A tile contract (which includes CPU support).
        unsafe { tile_6x16(kc, alpha, a, rsa, csa, b, beta, c, rsc, csc) }
    }
}

const MR: usize = 6;

#[target_feature(enable = "avx2,fma")]
unsafe fn tile_6x16(
    kc: usize,
    alpha: f32,
    a: *const f32,
    rsa: usize,
    csa: usize,
    mut b: *const f32,
    beta: f32,
    c: *mut f32,
    rsc: usize,
    csc: usize,
) {
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    let mut rows = [a; MR];
    for (i, r) in rows.iter_mut().enumerate() {
        // SAFETY: row i < 6 of the panel starts inside A (the tile contract).
        *r = unsafe { a.add(i * rsa) };
    }
    for p in 0..kc {
        // SAFETY: the A panel has kc steps of 6 elements at these strides and b holds
        // kc * 16 floats (the tile contract); this is step p < kc.
        unsafe {
            let b0 = _mm256_loadu_ps(b);
            let b1 = _mm256_loadu_ps(b.add(8));
            for (row, r) in acc.iter_mut().zip(&rows) {
                let ai = _mm256_broadcast_ss(&*r.add(p * csa));
                row[0] = _mm256_fmadd_ps(ai, b0, row[0]);
                row[1] = _mm256_fmadd_ps(ai, b1, row[1]);
            }
            b = b.add(16);
        }
    }
    let va = _mm256_set1_ps(alpha);
    if csc == 1 {
        let vb = _mm256_set1_ps(beta);
        for (i, row) in acc.iter().enumerate() {
            // SAFETY: row i of the tile is 16 contiguous valid floats (csc == 1).
            unsafe {
                let ci = c.add(i * rsc);
                let mut r0 = _mm256_mul_ps(va, row[0]);
                let mut r1 = _mm256_mul_ps(va, row[1]);
                if beta != 0.0 {
                    r0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci), r0);
                    r1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci.add(8)), r1);
                }
                _mm256_storeu_ps(ci, r0);
                _mm256_storeu_ps(ci.add(8), r1);
            }
        }
    } else {
        let mut buf = [0.0f32; MR * 16];
        for (i, row) in acc.iter().enumerate() {
            // SAFETY: buf has 16 floats per row i < 6.
            unsafe {
                _mm256_storeu_ps(buf.as_mut_ptr().add(i * 16), row[0]);
                _mm256_storeu_ps(buf.as_mut_ptr().add(i * 16 + 8), row[1]);
            }
        }
        // SAFETY: forwarded from the tile contract on c.
        unsafe { store_tile(&buf, MR, 16, 16, alpha, beta, c, rsc, csc) };
    }
}

/// Sum of the 8 lanes of `v`.
#[target_feature(enable = "avx2,fma")]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

/// `y[i] = dot(A[i, :], x)` for `m` rows of a row-major `A` (row stride `lda`): four rows
/// at a time, so four independent FMA chains share each load of x.
///
/// # Safety
/// `a + i * lda + p` is readable for `i < m, p < k`; `x` has `k` and `y` `m` floats; the
/// CPU supports AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn dot_rows(
    m: usize,
    k: usize,
    a: *const f32,
    lda: usize,
    x: &[f32],
    y: &mut [f32],
) {
    let full = k / 8 * 8;
    let xp = x.as_ptr();
    let mut i = 0;
    while i + 4 <= m {
        let mut acc = [_mm256_setzero_ps(); 4];
        // SAFETY: rows i..i+4 exist (i + 4 <= m).
        let rows = unsafe {
            [
                a.add(i * lda),
                a.add((i + 1) * lda),
                a.add((i + 2) * lda),
                a.add((i + 3) * lda),
            ]
        };
        let mut p = 0;
        while p < full {
            // SAFETY: p + 8 <= full <= k on valid rows and on x.
            unsafe {
                let xv = _mm256_loadu_ps(xp.add(p));
                acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(rows[0].add(p)), xv, acc[0]);
                acc[1] = _mm256_fmadd_ps(_mm256_loadu_ps(rows[1].add(p)), xv, acc[1]);
                acc[2] = _mm256_fmadd_ps(_mm256_loadu_ps(rows[2].add(p)), xv, acc[2]);
                acc[3] = _mm256_fmadd_ps(_mm256_loadu_ps(rows[3].add(p)), xv, acc[3]);
            }
            p += 8;
        }
        for r in 0..4 {
            let mut s = hsum(acc[r]);
            for (q, &xq) in x.iter().enumerate().take(k).skip(full) {
                // SAFETY: q < k on a valid row.
                s += unsafe { *rows[r].add(q) } * xq;
            }
            y[i + r] = s;
        }
        i += 4;
    }
    while i < m {
        let mut acc = _mm256_setzero_ps();
        // SAFETY: row i < m exists.
        let row = unsafe { a.add(i * lda) };
        let mut p = 0;
        while p < full {
            // SAFETY: p + 8 <= k on a valid row and on x.
            unsafe {
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(row.add(p)), _mm256_loadu_ps(xp.add(p)), acc)
            };
            p += 8;
        }
        let mut s = hsum(acc);
        for (q, &xq) in x.iter().enumerate().take(k).skip(full) {
            // SAFETY: q < k on a valid row.
            s += unsafe { *row.add(q) } * xq;
        }
        y[i] = s;
        i += 1;
    }
}

/// `y += sum_p x[p] * A[:, p]` for an `A` whose columns are contiguous (column stride `lda`).
///
/// # Safety
/// `a + p * lda + i` is readable for `i < y.len(), p < x.len()`; the CPU supports AVX2 + FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn axpy_cols(a: *const f32, lda: usize, x: &[f32], y: &mut [f32]) {
    let m = y.len();
    let full = m / 8 * 8;
    let yp = y.as_mut_ptr();
    for (p, &xp) in x.iter().enumerate() {
        let xv = _mm256_set1_ps(xp);
        // SAFETY: column p has m readable floats and y has m floats; i + 8 <= full <= m.
        unsafe {
            let col = a.add(p * lda);
            let mut i = 0;
            while i < full {
                let v =
                    _mm256_fmadd_ps(_mm256_loadu_ps(col.add(i)), xv, _mm256_loadu_ps(yp.add(i)));
                _mm256_storeu_ps(yp.add(i), v);
                i += 8;
            }
            for q in full..m {
                *yp.add(q) += *col.add(q) * xp;
            }
        }
    }
}
