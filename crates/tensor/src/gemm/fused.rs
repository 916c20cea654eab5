//! A product with packed weights whose epilogue runs on each tile as it is stored: the
//! form of a serving plan's hidden layer, in one pass over its output.
//!
//! ```text
//! y = A B_packed                 (the micro-kernel of the tier, the usual contract)
//! y = y + bias                   per column (a layer's bias, or a request's row)
//! y = y > 0 ? y : slope * y      PReLU per column          (optional)
//! y = scale * y + shift          BatchNorm at inference    (optional)
//! y = y + R                      a residual link, m x n    (optional)
//! ```
//!
//! Done as separate passes, each step reads and writes the whole `m x n` output once
//! more. Here the driver applies them to a tile right after the kernel has written it,
//! while its `MR x NR` floats are still in L1, so the output is written once.
//!
//! The loop order is the one of `blocking.rs`: for each `MR`-row panel of A (an
//! `MR x kc` sliver, which stays in L1), every `NR`-column panel of B streams past it
//! from L2. A is read in place (row-major, unit column stride); only a last partial panel
//! of fewer than `MR` rows is packed. The kernel and its contract are the ones
//! [`super::gemm_packed`] uses, so without an epilogue the products are the same bit for
//! bit.

use super::blocking::EdgeTile;
use super::kernel::{MicroKernel, store_tile};
use super::packing::pack_a;
use super::{GemmScratch, PackedB, check_shapes};
use crate::arch::Tier;
use crate::error::TensorError;
use crate::matrix::{MatMut, MatRef};

/// What [`gemm_packed_fused`] does to each element of `A B` before it is stored (see the
/// module documentation for the order). Every slice has one value per column of the
/// product.
#[derive(Debug, Clone, Copy)]
pub struct Epilogue<'a> {
    /// Added to every row.
    pub bias: &'a [f32],
    /// PReLU slopes (0 for ReLU), applied after the bias.
    pub slope: Option<&'a [f32]>,
    /// `(scale, shift)`: `y = scale * y + shift`, after the activation.
    pub affine: Option<(&'a [f32], &'a [f32])>,
    /// An `m x n` matrix added last (a residual link).
    pub residual: Option<MatRef<'a>>,
}

impl Epilogue<'_> {
    fn check(&self, m: usize, n: usize) -> Result<(), TensorError> {
        let bad = |what: &str, got: usize| {
            Err(TensorError::Shape {
                op: "gemm_packed_fused",
                detail: format!("{what} has {got} values for {n} columns"),
            })
        };
        if self.bias.len() != n {
            return bad("the bias", self.bias.len());
        }
        if let Some(s) = self.slope
            && s.len() != n
        {
            return bad("the PReLU slope", s.len());
        }
        if let Some((s, t)) = self.affine {
            if s.len() != n {
                return bad("the scale", s.len());
            }
            if t.len() != n {
                return bad("the shift", t.len());
            }
        }
        if let Some(r) = self.residual
            && r.shape() != (m, n)
        {
            return Err(TensorError::Shape {
                op: "gemm_packed_fused",
                detail: format!("the residual is {:?}, the product {m}x{n}", r.shape()),
            });
        }
        Ok(())
    }

    /// Applies the epilogue to the tile of `rows x cols` floats at `c` (row stride
    /// `ldc`), rows `i0..` and columns `j0..` of the product: the column vectors are cut
    /// to the tile once, and each row is one pass (bias, activation and affine together),
    /// then the residual.
    ///
    /// # Safety
    /// `c + i * ldc + j` is valid for reads and writes for `i < rows, j < cols`, no other
    /// reference to those floats is live, and the residual (if any) has unit column
    /// stride.
    #[inline(always)]
    unsafe fn apply_tile(
        &self,
        c: *mut f32,
        ldc: usize,
        (i0, rows): (usize, usize),
        (j0, cols): (usize, usize),
    ) {
        let b = &self.bias[j0..j0 + cols];
        let slope = self.slope.map(|s| &s[j0..j0 + cols]);
        let affine = self
            .affine
            .map(|(s, t)| (&s[j0..j0 + cols], &t[j0..j0 + cols]));
        for i in 0..rows {
            // SAFETY: row i of the tile, as the caller guarantees.
            let y = unsafe { std::slice::from_raw_parts_mut(c.add(i * ldc), cols) };
            match (slope, affine) {
                (Some(s), Some((sc, sh))) => {
                    for ((((v, &b), &a), &sc), &sh) in y.iter_mut().zip(b).zip(s).zip(sc).zip(sh) {
                        // Both sides computed, then a select: a blend, not a branch on
                        // the sign.
                        let x = *v + b;
                        let neg = a * x;
                        *v = sc * (if x > 0.0 { x } else { neg }) + sh;
                    }
                }
                (Some(s), None) => {
                    for ((v, &b), &a) in y.iter_mut().zip(b).zip(s) {
                        let x = *v + b;
                        let neg = a * x;
                        *v = if x > 0.0 { x } else { neg };
                    }
                }
                (None, Some((sc, sh))) => {
                    for (((v, &b), &sc), &sh) in y.iter_mut().zip(b).zip(sc).zip(sh) {
                        *v = sc * (*v + b) + sh;
                    }
                }
                (None, None) => {
                    for (v, &b) in y.iter_mut().zip(b) {
                        *v += b;
                    }
                }
            }
            if let Some(r) = self.residual {
                let row = &r.data()[(i0 + i) * r.row_stride() + j0..][..cols];
                for (v, &x) in y.iter_mut().zip(row) {
                    *v += x;
                }
            }
        }
    }

    /// Applies the epilogue to `y`, the columns `j0..j0 + y.len()` of row `i` (the
    /// unfused path).
    fn apply(&self, i: usize, j0: usize, y: &mut [f32]) {
        let cols = y.len();
        for (v, &b) in y.iter_mut().zip(&self.bias[j0..j0 + cols]) {
            *v += b;
        }
        if let Some(s) = self.slope {
            for (v, &a) in y.iter_mut().zip(&s[j0..j0 + cols]) {
                // Both sides computed, then a select: a blend, not a branch on the sign.
                let (x, neg) = (*v, a * *v);
                *v = if x > 0.0 { x } else { neg };
            }
        }
        if let Some((s, t)) = self.affine {
            for ((v, &s), &t) in y.iter_mut().zip(&s[j0..j0 + cols]).zip(&t[j0..j0 + cols]) {
                *v = s * *v + t;
            }
        }
        if let Some(r) = self.residual {
            if r.col_stride() == 1 {
                let row = &r.data()[i * r.row_stride() + j0..][..cols];
                for (v, &x) in y.iter_mut().zip(row) {
                    *v += x;
                }
            } else {
                for (j, v) in y.iter_mut().enumerate() {
                    *v += r.get(i, j0 + j);
                }
            }
        }
    }
}

/// `C = epilogue(A B)` with B packed beforehand ([`PackedB`]), on the tier B was packed
/// for; C is only written (it may hold NaN). The epilogue is applied to each tile as the
/// kernel stores it (module documentation).
///
/// Any shapes from 0 are accepted: a row-major A and C (unit column stride) with at
/// least two columns take the fused path; other layouts, `N = 1` and `K = 0` compute the
/// product with [`super::gemm_packed`] and then apply the epilogue in a second pass,
/// with the same result.
///
/// Errors when the shapes of A, B, C or the epilogue's slices disagree.
pub fn gemm_packed_fused(
    a: MatRef<'_>,
    b: &PackedB,
    epilogue: &Epilogue<'_>,
    mut c: MatMut<'_>,
    scratch: &mut GemmScratch,
) -> Result<(), TensorError> {
    check_shapes("gemm_packed_fused", &a, &b.raw.view(), &c)?;
    let (m, k, n) = (a.rows(), a.cols(), b.cols());
    epilogue.check(m, n)?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    let strided_residual = epilogue.residual.is_some_and(|r| r.col_stride() != 1);
    if n < 2 || k == 0 || a.col_stride() != 1 || c.col_stride() != 1 || strided_residual {
        super::gemm_packed(1.0, a, b, 0.0, c.rb_mut(), scratch)?;
        for i in 0..m {
            if c.col_stride() == 1 {
                epilogue.apply(i, 0, c.row_mut(i));
            } else {
                let mut row: [f32; 1] = [0.0];
                for j in 0..n {
                    row[0] = c.get(i, j);
                    epilogue.apply(i, j, &mut row);
                    c.set(i, j, row[0]);
                }
            }
        }
        return Ok(());
    }
    match b.tier {
        // SAFETY: the portable kernel runs on every CPU.
        Tier::Portable => unsafe {
            fused::<super::kernel::Portable>(a, b, epilogue, &mut c, scratch)
        },
        // SAFETY: PackedB::new checked that the CPU has AVX2 and FMA.
        #[cfg(target_arch = "x86_64")]
        Tier::Avx2 => unsafe { super::avx2::fused(a, b, epilogue, &mut c, scratch) },
        // SAFETY: PackedB::new checked that the CPU has AVX-512F.
        #[cfg(target_arch = "x86_64")]
        Tier::Avx512 => unsafe { super::avx512::fused(a, b, epilogue, &mut c, scratch) },
        #[cfg(not(target_arch = "x86_64"))]
        _ => unreachable!("PackedB::new rejects x86 tiers elsewhere"),
    }
    Ok(())
}

/// The fused driver: `m, k >= 1`, `n >= 2`, A and C with unit column stride, B packed
/// for `K`'s tier.
///
/// # Safety
/// The CPU supports `K`'s instruction set.
#[inline(always)]
pub(super) unsafe fn fused<K: MicroKernel>(
    a: MatRef<'_>,
    b: &PackedB,
    epilogue: &Epilogue<'_>,
    c: &mut MatMut<'_>,
    scratch: &mut GemmScratch,
) {
    let (m, k, n) = (a.rows(), a.cols(), b.cols());
    let (mr, nr) = (K::MR, K::NR);
    debug_assert!(b.nr == nr && mr * nr <= 512);
    let (kc_max, nc_max) = (b.kc, b.nc);
    let full_rows = m / mr * mr;
    // Room for one packed partial panel, whether or not this call needs it: the scratch
    // then reaches its size on the first call, whatever the later row counts.
    scratch.a.ensure_len(mr * kc_max);
    let (lda, adata) = (a.row_stride(), a.data());
    let ldc = c.row_stride();
    let cdata = c.data_mut();
    let clen = cdata.len();
    let cptr = cdata.as_mut_ptr();
    let packed = b.packed.as_slice();
    let mut packed_at = 0;
    let mut edge = EdgeTile([0.0; 512]);

    for jc in (0..n).step_by(nc_max) {
        let nc = nc_max.min(n - jc);
        for pc in (0..k).step_by(kc_max) {
            let kc = kc_max.min(k - pc);
            // The first pass over K writes C, later ones add to it; the epilogue runs
            // after the last.
            let scale = [1.0, if pc == 0 { 0.0 } else { 1.0 }];
            let last = pc + kc == k;
            let len = nc.div_ceil(nr) * nr * kc;
            let pb = &packed[packed_at..packed_at + len];
            packed_at += len;
            if full_rows < m {
                // The last rows are too few for a panel read in place: pack them.
                pack_a(
                    mr,
                    a,
                    full_rows,
                    m - full_rows,
                    pc,
                    kc,
                    scratch.a.as_mut_slice(),
                );
            }
            let pa = scratch.a.as_slice();
            for ir in (0..m).step_by(mr) {
                let rows = mr.min(m - ir);
                let (ap, rsa, csa) = if rows == mr {
                    let start = ir * lda + pc;
                    (adata[start..start + (mr - 1) * lda + kc].as_ptr(), lda, 1)
                } else {
                    (pa[..mr * kc].as_ptr(), 1, mr)
                };
                for jr in (0..nc).step_by(nr) {
                    let cols = nr.min(nc - jr);
                    let bp = pb[jr * kc..jr * kc + nr * kc].as_ptr();
                    let at = ir * ldc + jc + jr;
                    debug_assert!(at + (rows - 1) * ldc + cols <= clen);
                    // SAFETY: (ir, jc + jr) is inside C, whose view was validated against
                    // its slice; C elements are at row * ldc + col.
                    let ctile = unsafe { cptr.add(at) };
                    if rows == mr && cols == nr {
                        // SAFETY: the panels were sliced to their full extent above; the
                        // full MR x NR tile lies inside C; the caller checked the CPU.
                        unsafe { K::tile(kc, &scale, ap, rsa, csa, bp, ctile, ldc, 1) };
                    } else {
                        let buf = edge.0.as_mut_ptr();
                        // SAFETY: as above for the panels; the edge buffer holds
                        // MR x NR <= 512 floats with row stride NR; beta = 0 never reads it.
                        unsafe { K::tile(kc, &[1.0, 0.0], ap, rsa, csa, bp, buf, nr, 1) };
                        // SAFETY: only the rows x cols part inside C is written.
                        unsafe {
                            store_tile(&edge.0, rows, cols, nr, 1.0, scale[1], ctile, ldc, 1)
                        };
                    }
                    if last {
                        // SAFETY: the tile's rows x cols lie inside C (the debug assertion
                        // above), no other reference to C is live, and the caller routed
                        // a residual without unit column stride to the unfused path.
                        unsafe { epilogue.apply_tile(ctile, ldc, (ir, rows), (jc + jr, cols)) };
                    }
                }
            }
        }
    }
}
