//! AVX-512F kernels: the 12 x 32 GEMM micro-kernel and the GEMV kernels.
//!
//! Register picture of the micro-kernel (32 zmm registers of 16 floats):
//!
//! ```text
//!            b0 (16 floats)  b1 (16 floats)      <- one row of the packed B panel
//!   a[0]  -> acc[0][0]       acc[0][1]
//!   a[1]  -> acc[1][0]       acc[1][1]
//!    ...          ...             ...               24 accumulators, 2 B registers,
//!   a[11] -> acc[11][0]      acc[11][1]             broadcasts folded into the FMAs
//! ```
//!
//! Each step of k loads two vectors of B, broadcasts 12 elements of A and issues 24
//! independent FMAs: enough chains to hide the 4-cycle FMA latency on two FMA pipes.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::kernel::{Blocking, MicroKernel, store_tile};

/// The AVX-512F micro-kernel (12 x 32).
pub(crate) struct Avx512;

impl MicroKernel for Avx512 {
    const MR: usize = 12;
    const NR: usize = 32;
    const BLOCKING: Blocking = Blocking {
        mc: 240,
        kc: 640,
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
        // SAFETY: the caller upholds the tile contract, which includes AVX-512F support.
        unsafe { tile_12x32(kc, alpha, a, 1, MR, b, beta, c, rsc, csc) }
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
        unsafe { tile_12x32(kc, alpha, a, rsa, csa, b, beta, c, rsc, csc) }
    }
}

const MR: usize = 12;

/// The 12 x 32 tile with A read through strides: element `(i, p)` of the A panel is at
/// `a + i * rsa + p * csa`. A packed panel is `rsa = 1, csa = 12`; a row-major A read in
/// place is `rsa = lda, csa = 1`.
#[target_feature(enable = "avx512f")]
unsafe fn tile_12x32(
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
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    let mut rows = [a; MR];
    for (i, r) in rows.iter_mut().enumerate() {
        // SAFETY: row i < 12 of the panel starts inside A (the tile contract).
        *r = unsafe { a.add(i * rsa) };
    }
    for p in 0..kc {
        // SAFETY: the A panel has kc steps of 12 elements at these strides and b holds
        // kc * 32 floats (the tile contract); this is step p < kc.
        unsafe {
            let b0 = _mm512_loadu_ps(b);
            let b1 = _mm512_loadu_ps(b.add(16));
            for (row, r) in acc.iter_mut().zip(&rows) {
                let ai = _mm512_set1_ps(*r.add(p * csa));
                row[0] = _mm512_fmadd_ps(ai, b0, row[0]);
                row[1] = _mm512_fmadd_ps(ai, b1, row[1]);
            }
            b = b.add(32);
        }
    }
    let va = _mm512_set1_ps(alpha);
    if csc == 1 {
        let vb = _mm512_set1_ps(beta);
        for (i, row) in acc.iter().enumerate() {
            // SAFETY: row i of the tile is 32 contiguous valid floats (csc == 1).
            unsafe {
                let ci = c.add(i * rsc);
                let mut r0 = _mm512_mul_ps(va, row[0]);
                let mut r1 = _mm512_mul_ps(va, row[1]);
                if beta != 0.0 {
                    r0 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(ci), r0);
                    r1 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(ci.add(16)), r1);
                }
                _mm512_storeu_ps(ci, r0);
                _mm512_storeu_ps(ci.add(16), r1);
            }
        }
    } else {
        let mut buf = [0.0f32; MR * 32];
        for (i, row) in acc.iter().enumerate() {
            // SAFETY: buf has 32 floats per row i < 12.
            unsafe {
                _mm512_storeu_ps(buf.as_mut_ptr().add(i * 32), row[0]);
                _mm512_storeu_ps(buf.as_mut_ptr().add(i * 32 + 16), row[1]);
            }
        }
        // SAFETY: forwarded from the tile contract on c.
        unsafe { store_tile(&buf, MR, 32, 32, alpha, beta, c, rsc, csc) };
    }
}

/// `y[i] = dot(A[i, :], x)` for `m` rows of a row-major `A` (row stride `lda`), `x` of
/// length `k`. Four rows at a time, so four independent FMA chains share each load of x.
///
/// # Safety
/// `a + i * lda + p` is readable for `i < m, p < k`; `x` has `k` and `y` `m` floats;
/// the CPU supports AVX-512F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn dot_rows(
    m: usize,
    k: usize,
    a: *const f32,
    lda: usize,
    x: &[f32],
    y: &mut [f32],
) {
    let full = k / 16 * 16;
    let tail: __mmask16 = ((1u32 << (k - full)) - 1) as __mmask16;
    let xp = x.as_ptr();
    let mut i = 0;
    while i + 4 <= m {
        let mut acc = [_mm512_setzero_ps(); 4];
        // SAFETY: rows i..i+4 exist; p + 16 <= full <= k for the full loads and the masked
        // load touches only lanes below k.
        unsafe {
            let rows = [
                a.add(i * lda),
                a.add((i + 1) * lda),
                a.add((i + 2) * lda),
                a.add((i + 3) * lda),
            ];
            let mut p = 0;
            while p < full {
                let xv = _mm512_loadu_ps(xp.add(p));
                for r in 0..4 {
                    acc[r] = _mm512_fmadd_ps(_mm512_loadu_ps(rows[r].add(p)), xv, acc[r]);
                }
                p += 16;
            }
            if tail != 0 {
                let xv = _mm512_maskz_loadu_ps(tail, xp.add(full));
                for r in 0..4 {
                    acc[r] =
                        _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, rows[r].add(full)), xv, acc[r]);
                }
            }
        }
        for r in 0..4 {
            y[i + r] = _mm512_reduce_add_ps(acc[r]);
        }
        i += 4;
    }
    while i < m {
        let mut acc = _mm512_setzero_ps();
        // SAFETY: as above, for the single row i < m.
        unsafe {
            let row = a.add(i * lda);
            let mut p = 0;
            while p < full {
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(row.add(p)), _mm512_loadu_ps(xp.add(p)), acc);
                p += 16;
            }
            if tail != 0 {
                let xv = _mm512_maskz_loadu_ps(tail, xp.add(full));
                acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, row.add(full)), xv, acc);
            }
        }
        y[i] = _mm512_reduce_add_ps(acc);
        i += 1;
    }
}

/// `y += sum_p x[p] * A[:, p]` for an `A` whose columns are contiguous (column stride `lda`).
///
/// # Safety
/// `a + p * lda + i` is readable for `i < y.len(), p < x.len()`; the CPU supports AVX-512F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn axpy_cols(a: *const f32, lda: usize, x: &[f32], y: &mut [f32]) {
    let m = y.len();
    let full = m / 16 * 16;
    let tail: __mmask16 = ((1u32 << (m - full)) - 1) as __mmask16;
    let yp = y.as_mut_ptr();
    for (p, &xp) in x.iter().enumerate() {
        let xv = _mm512_set1_ps(xp);
        // SAFETY: column p has m readable floats; y has m floats; the masked ops touch only
        // lanes below m.
        unsafe {
            let col = a.add(p * lda);
            let mut i = 0;
            while i < full {
                let v =
                    _mm512_fmadd_ps(_mm512_loadu_ps(col.add(i)), xv, _mm512_loadu_ps(yp.add(i)));
                _mm512_storeu_ps(yp.add(i), v);
                i += 16;
            }
            if tail != 0 {
                let v = _mm512_fmadd_ps(
                    _mm512_maskz_loadu_ps(tail, col.add(full)),
                    xv,
                    _mm512_maskz_loadu_ps(tail, yp.add(full)),
                );
                _mm512_mask_storeu_ps(yp.add(full), tail, v);
            }
        }
    }
}
