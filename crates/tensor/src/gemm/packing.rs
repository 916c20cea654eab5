//! Packing: copying blocks of op(A) and op(B) into the panel order the micro-kernel reads.
//!
//! ```text
//!   A block (mc x kc)  ->  panels of MR rows, each stored column by column:
//!                          panel[p * MR + i] = A[r0 + i, p0 + p]
//!   B block (kc x nc)  ->  panels of NR columns, each stored row by row:
//!                          panel[p * NR + j] = B[p0 + p, j0 + j]
//! ```
//!
//! After packing, the kernel walks both panels with unit stride whatever the original
//! strides were (row-major, transposed, sub-matrix), which is what makes one kernel serve
//! every layout. A panel at an edge (fewer than MR rows or NR columns left) keeps whatever
//! its padding slots held: those slots only feed tile rows and columns that the driver
//! discards, because each C element depends on one row of A and one column of B.

use super::kernel::prefetch;
use crate::matrix::MatRef;

/// How many columns ahead [`pack_a`] prefetches a transposed A (columns contiguous, the
/// weight gradient's `X^T`). Since the AVX2 kernel packs the full panels of such an A
/// itself (`MicroKernel::tile_packing_a`), `pack_a` copies only a block's last, partial
/// panel of it. The distance was chosen when it copied the whole block: AMD EPYC Zen 3,
/// 608 x 128 x 1024 TN, thread clock, ratio to matrixmultiply in the same run (2026-12-01,
/// load average 6.8, three runs of 11 rounds each): no prefetch 0.87-0.95, distance 2 0.94-0.97, 3 0.97-0.98, 4 0.99-1.06, 6
/// 0.98-1.02. T1 and NTA hints at distance 4 measured within noise of T0 (0.96-1.06).
const PACK_PREFETCH: usize = 4;

/// Packs rows `r0..r0 + mc` and columns `p0..p0 + kc` of `a` into `mr`-row panels in `out`.
#[inline(always)]
pub(crate) fn pack_a(
    mr: usize,
    a: MatRef<'_>,
    r0: usize,
    mc: usize,
    p0: usize,
    kc: usize,
    out: &mut [f32],
) {
    let (rs, cs, data) = (a.row_stride(), a.col_stride(), a.data());
    if rs == 1 && cs != 1 {
        // Columns of A are contiguous (a transposed view): walk each column once, in order,
        // and deal it out MR floats per panel. Column by column reads memory sequentially;
        // panel by panel would jump `cs` floats per step and miss the cache on every one.
        let full = mc / mr * mr;
        for p in 0..kc {
            // Ask for the column PACK_PREFETCH steps ahead (every line of it) while this one
            // is copied: the columns are `cs` floats apart and the hardware prefetcher
            // does not run ahead of such short, strided reads on its own.
            let ahead = data
                .as_ptr()
                .wrapping_add((p0 + p + PACK_PREFETCH) * cs + r0);
            for l in (0..mc).step_by(16) {
                prefetch(ahead.wrapping_add(l));
            }
            prefetch(ahead.wrapping_add(mc.saturating_sub(1)));
            let col = &data[(p0 + p) * cs + r0..(p0 + p) * cs + r0 + mc];
            for (ip, src) in col[..full].chunks_exact(mr).enumerate() {
                let at = ip * mr * kc + p * mr;
                out[at..at + mr].copy_from_slice(src);
            }
            if full < mc {
                let at = full * kc + p * mr;
                out[at..at + mc - full].copy_from_slice(&col[full..]);
            }
        }
        return;
    }
    for (panel, ip) in out.chunks_mut(mr * kc).zip((0..mc).step_by(mr)) {
        let rows = mr.min(mc - ip);
        if cs == 1 {
            // Rows of A are contiguous: read each row once, scatter with stride mr.
            for i in 0..rows {
                let start = (r0 + ip + i) * rs + p0;
                for (dst, &v) in panel.chunks_exact_mut(mr).zip(&data[start..start + kc]) {
                    dst[i] = v;
                }
            }
        } else {
            for (p, dst) in panel.chunks_exact_mut(mr).enumerate() {
                for (i, d) in dst.iter_mut().enumerate().take(rows) {
                    *d = data[(r0 + ip + i) * rs + (p0 + p) * cs];
                }
            }
        }
    }
}

/// Packs rows `p0..p0 + kc` and columns `j0..j0 + nc` of `b` into `nr`-column panels in `out`.
#[inline(always)]
pub(crate) fn pack_b(
    nr: usize,
    b: MatRef<'_>,
    p0: usize,
    kc: usize,
    j0: usize,
    nc: usize,
    out: &mut [f32],
) {
    let (rs, cs, data) = (b.row_stride(), b.col_stride(), b.data());
    for (panel, jp) in out.chunks_mut(nr * kc).zip((0..nc).step_by(nr)) {
        let cols = nr.min(nc - jp);
        if cs == 1 {
            // Rows of B are contiguous: each panel row is one short copy.
            for (p, dst) in panel.chunks_exact_mut(nr).enumerate() {
                let start = (p0 + p) * rs + j0 + jp;
                if cols == nr {
                    dst.copy_from_slice(&data[start..start + nr]);
                } else {
                    dst[..cols].copy_from_slice(&data[start..start + cols]);
                }
            }
        } else if rs == 1 {
            // Columns of B are contiguous (a transposed view): read each column once.
            for j in 0..cols {
                let start = (j0 + jp + j) * cs + p0;
                for (dst, &v) in panel.chunks_exact_mut(nr).zip(&data[start..start + kc]) {
                    dst[j] = v;
                }
            }
        } else {
            for (p, dst) in panel.chunks_exact_mut(nr).enumerate() {
                for (j, d) in dst.iter_mut().enumerate().take(cols) {
                    *d = data[(p0 + p) * rs + (j0 + jp + j) * cs];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Matrix;

    #[test]
    fn panels_hold_the_documented_order_for_every_layout() {
        let m = Matrix::from_fn(7, 5, |i, j| (10 * i + j) as f32);
        for view in [m.view(), m.view().t().to_matrix().view().t()] {
            let mut out = vec![-1.0; 2 * 4 * 3];
            // rows 1..6 (5 rows -> 2 panels of 4), columns 2..5
            pack_a(4, view, 1, 5, 2, 3, &mut out);
            assert_eq!(out[0..4], [12.0, 22.0, 32.0, 42.0]);
            assert_eq!(out[4..8], [13.0, 23.0, 33.0, 43.0]);
            assert_eq!(out[12], 52.0);
            let mut out = vec![-1.0; 2 * 3 * 4];
            // rows 0..4 of the 5 x 7 transpose, columns 1..6 -> panels of 3
            pack_b(3, view.t(), 0, 4, 1, 5, &mut out);
            assert_eq!(out[0..3], [10.0, 20.0, 30.0]);
            assert_eq!(out[3..6], [11.0, 21.0, 31.0]);
            assert_eq!(out[12..14], [40.0, 50.0]);
        }
    }
}
