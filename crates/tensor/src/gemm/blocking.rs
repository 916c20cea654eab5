//! The BLIS loop nest: cache blocking around a register-blocked micro-kernel.
//!
//! ```text
//! for jc in 0..n step NC             B block: KC x NC, packed once per (jc, pc), in L2
//!   for pc in 0..k step KC           beta applies on the first pc only, then C += ...
//!     pack B[pc.., jc..]
//!     for ic in 0..m step MC         A block: MC x KC, packed once per (jc, pc, ic)
//!       pack A[ic.., pc..]         (a transposed A on AVX2: by each panel's first tile)
//!       for ir in 0..MC step MR      one MR x KC micro-panel of A stays in L1 ...
//!         for jr in 0..NC step NR    ... while the kernel streams B's panels past it
//!           C[ic+ir.., jc+jr..] (MR x NR) = kernel(A panel, B panel)
//! ```
//!
//! The block sizes come from the kernel ([`MicroKernel::BLOCKING`]) and are then balanced:
//! `k = 608` with `KC = 384` becomes two passes of 304 rather than 384 + 224, so no pass
//! is short.

use super::GemmScratch;
use super::kernel::{Blocking, MicroKernel, store_tile};
use super::packing::{pack_a, pack_b};
use crate::matrix::{MatMut, MatRef};

/// Splits `len` into equal blocks of at most `max`, rounded up to a multiple of `unit`.
fn balanced(len: usize, max: usize, unit: usize) -> usize {
    let blocks = len.div_ceil(max).max(1);
    len.div_ceil(blocks).div_ceil(unit) * unit
}

/// A 64-byte aligned tile buffer for edge tiles (large enough for every kernel's MR x NR).
#[repr(C, align(64))]
pub(super) struct EdgeTile(pub(super) [f32; 512]);

/// `C = alpha * A * B + beta * C` for `A: m x k`, `B: k x n` with `m, n, k >= 1`.
///
/// # Safety
/// The CPU supports `K`'s instruction set.
pub(crate) unsafe fn gemm_blocked<K: MicroKernel>(
    blocking: Blocking,
    alpha: f32,
    a: MatRef<'_>,
    b: BSource<'_>,
    beta: f32,
    c: &mut MatMut<'_>,
    scratch: &mut GemmScratch,
) {
    let (m, k, n) = (a.rows(), a.cols(), b.cols());
    let (mr, nr) = (K::MR, K::NR);
    debug_assert!(matches!(b, BSource::Matrix(_)) || b.nr() == nr);
    debug_assert!(mr * nr <= 512);
    // Read a row-major A in place, and a transposed A (columns contiguous) too on the tiers
    // that measured it faster (see "Packing, and when not to" in docs/tensor.md); a
    // transposed A takes the shallower kc_cols.
    let (rsa, csa, adata) = (a.row_stride(), a.col_stride(), a.data());
    let direct = csa == 1 || (rsa == 1 && !K::PACK_TRANSPOSED_A);
    // A packed transposed A is packed by the kernel, panel by panel, as the first tile of
    // each panel reads it in place (see "Packing, and when not to" in docs/tensor.md).
    let pack_in_kernel = !direct && rsa == 1;
    let kc_block = if csa == 1 {
        blocking.kc
    } else {
        blocking.kc_cols
    };
    // A pre-packed B brings its own blocks (packed for a row-major A: `kc`).
    let (kc_max, nc_max) = match b {
        BSource::Matrix(_) => (
            balanced(k, kc_block.max(1), 1),
            balanced(n, blocking.nc.max(1), nr),
        ),
        BSource::Packed { kc, nc, .. } => (kc, nc),
    };
    let mc_max = balanced(m, blocking.mc.max(1), mr);
    scratch.a.ensure_len(mc_max * kc_max);
    if let BSource::Matrix(_) = b {
        scratch.b.ensure_len(nc_max * kc_max);
    }
    // Offset of the next (jc, pc) block in a pre-packed B (blocks in loop order).
    let mut packed_at = 0;
    let (rsc, csc) = (c.row_stride(), c.col_stride());
    let cptr = c.data_mut().as_mut_ptr();
    let mut edge = EdgeTile([0.0; 512]);

    for jc in (0..n).step_by(nc_max) {
        let nc = nc_max.min(n - jc);
        for pc in (0..k).step_by(kc_max) {
            let kc = kc_max.min(k - pc);
            // beta applies on the first pass over K only; later passes accumulate.
            let scale = [alpha, if pc == 0 { beta } else { 1.0 }];
            let pb: &[f32] = match b {
                BSource::Matrix(b) => {
                    pack_b(nr, b, pc, kc, jc, nc, scratch.b.as_mut_slice());
                    scratch.b.as_slice()
                }
                BSource::Packed { data, .. } => {
                    let len = nc.div_ceil(nr) * nr * kc;
                    let block = &data[packed_at..packed_at + len];
                    packed_at += len;
                    block
                }
            };
            for ic in (0..m).step_by(mc_max) {
                let mc = mc_max.min(m - ic);
                let full_rows = mc / mr * mr;
                if pack_in_kernel {
                    // The full panels are packed by the first tile of each (below); a last,
                    // partial one is packed here, after them.
                    if full_rows < mc {
                        pack_a(
                            mr,
                            a,
                            ic + full_rows,
                            mc - full_rows,
                            pc,
                            kc,
                            &mut scratch.a.as_mut_slice()[full_rows * kc..],
                        );
                    }
                } else if !direct {
                    pack_a(mr, a, ic, mc, pc, kc, scratch.a.as_mut_slice());
                } else if full_rows < mc {
                    // A last, partial panel cannot be read as MR rows: pack it alone.
                    pack_a(
                        mr,
                        a,
                        ic + full_rows,
                        mc - full_rows,
                        pc,
                        kc,
                        scratch.a.as_mut_slice(),
                    );
                }
                let pa = scratch.a.as_mut_slice();
                debug_assert!(pa.len() >= mc * kc);
                let pa = pa.as_mut_ptr();
                let panel = |ir: usize| {
                    if !direct {
                        // SAFETY: the scratch holds at least mc x kc floats (above), and the
                        // panel at row ir < mc is its floats ir * kc .. (ir + MR) * kc.
                        APanel::Packed(unsafe { pa.add(ir * kc) })
                    } else if ir < full_rows {
                        let start = (ic + ir) * rsa + pc * csa;
                        APanel::Rows(
                            adata[start..start + (mr - 1) * rsa + (kc - 1) * csa + 1].as_ptr(),
                            rsa,
                            csa,
                        )
                    } else {
                        APanel::Packed(pa)
                    }
                };
                for ir in (0..mc).step_by(mr) {
                    let a_panel = panel(ir);
                    let rows = mr.min(mc - ir);
                    // The first tile of a full panel packs it while reading A in place.
                    let packing = pack_in_kernel && ir < full_rows;
                    let in_place = (ic + ir) * rsa + pc * csa;
                    for jr in (0..nc).step_by(nr) {
                        let cols = nr.min(nc - jr);
                        let b_panel = pb[jr * kc..jr * kc + nr * kc].as_ptr();
                        // SAFETY: the tile's top-left (ic + ir, jc + jr) is inside C, whose
                        // view was validated against its slice; C elements are at
                        // row * rsc + col * csc.
                        let ctile = unsafe { cptr.add((ic + ir) * rsc + (jc + jr) * csc) };
                        if packing && jr == 0 {
                            let src =
                                adata[in_place..in_place + (mr - 1) + (kc - 1) * csa + 1].as_ptr();
                            let full = rows == mr && cols == nr;
                            let (out, ab, ldo, cso) = if full {
                                (ctile, &scale, rsc, csc)
                            } else {
                                (edge.0.as_mut_ptr(), &[1.0, 0.0], nr, 1)
                            };
                            // SAFETY: as for the panel above (ir < mc).
                            let dst = unsafe { pa.add(ir * kc) };
                            // SAFETY: A(i, p) = src[i + p * csa] for i < MR, p < kc lies in the
                            // slice above; dst is this panel's MR x kc floats of the scratch,
                            // which no operand overlaps; the tile (C or the edge buffer) is
                            // as for the calls below; the caller checked the CPU.
                            unsafe {
                                K::tile_packing_a(kc, ab, src, csa, b_panel, out, ldo, cso, dst)
                            };
                            if !full {
                                // SAFETY: only the rows x cols part inside C is written.
                                unsafe {
                                    store_tile(
                                        &edge.0, rows, cols, nr, alpha, scale[1], ctile, rsc, csc,
                                    )
                                };
                            }
                        } else if rows == mr && cols == nr {
                            // SAFETY: the panels were sliced to their full extent above; the
                            // full MR x NR tile lies inside C; the caller checked the CPU.
                            unsafe { run::<K>(a_panel, kc, &scale, b_panel, ctile, rsc, csc) };
                        } else {
                            let buf = edge.0.as_mut_ptr();
                            // SAFETY: as above for the panels; the edge buffer holds
                            // MR x NR <= 512 floats with row stride NR; beta = 0 never reads it.
                            unsafe { run::<K>(a_panel, kc, &[1.0, 0.0], b_panel, buf, nr, 1) };
                            // SAFETY: only the rows x cols part inside C is written.
                            unsafe {
                                store_tile(
                                    &edge.0, rows, cols, nr, alpha, scale[1], ctile, rsc, csc,
                                )
                            };
                        }
                    }
                }
            }
        }
    }
}

/// Where the driver finds B: a matrix to pack block by block, or blocks packed once
/// beforehand ([`super::PackedB`]) in the driver's loop order, `jc` outer and `pc` inner.
#[derive(Clone, Copy)]
pub(crate) enum BSource<'a> {
    /// Packed during the call, into the scratch.
    Matrix(MatRef<'a>),
    /// Already packed with these block sizes and panel width.
    Packed {
        data: &'a [f32],
        n: usize,
        kc: usize,
        nc: usize,
        nr: usize,
    },
}

impl BSource<'_> {
    fn cols(&self) -> usize {
        match self {
            BSource::Matrix(b) => b.cols(),
            BSource::Packed { n, .. } => *n,
        }
    }

    fn nr(&self) -> usize {
        match self {
            BSource::Matrix(_) => 0,
            BSource::Packed { nr, .. } => *nr,
        }
    }
}

/// Packs all of `b` (`k x n`) in the order [`gemm_blocked`] reads a [`BSource::Packed`]:
/// for each block of `nc` columns, each pass of `kc` rows, `nr`-column panels.
/// Returns `(kc, nc)`, the block sizes used, after filling `out` (resized to fit).
pub(crate) fn pack_b_whole(
    b: MatRef<'_>,
    blocking: Blocking,
    nr: usize,
    out: &mut crate::matrix::AlignedVec,
) -> (usize, usize) {
    let (k, n) = (b.rows(), b.cols());
    let kc_max = balanced(k, blocking.kc.max(1), 1);
    let nc_max = balanced(n, blocking.nc.max(1), nr);
    out.ensure_len(n.div_ceil(nr) * nr * k);
    let dst = out.as_mut_slice();
    let mut at = 0;
    for jc in (0..n).step_by(nc_max) {
        let nc = nc_max.min(n - jc);
        for pc in (0..k).step_by(kc_max) {
            let kc = kc_max.min(k - pc);
            let len = nc.div_ceil(nr) * nr * kc;
            pack_b(nr, b, pc, kc, jc, nc, &mut dst[at..at + len]);
            at += len;
        }
    }
    (kc_max, nc_max)
}

/// Where the kernel finds its A panel.
#[derive(Clone, Copy)]
enum APanel {
    /// A packed panel (`kc` steps of MR floats).
    Packed(*const f32),
    /// MR rows of a row-major A, `lda` floats apart.
    Rows(*const f32, usize, usize),
}

/// Calls the kernel for the panel kind.
///
/// # Safety
/// As [`MicroKernel::tile`].
#[inline(always)]
unsafe fn run<K: MicroKernel>(
    panel: APanel,
    kc: usize,
    alpha_beta: &[f32; 2],
    b: *const f32,
    c: *mut f32,
    rsc: usize,
    csc: usize,
) {
    let (a, rsa, csa) = match panel {
        APanel::Packed(a) => (a, 1, K::MR),
        APanel::Rows(a, rsa, csa) => (a, rsa, csa),
    };
    // SAFETY: forwarded from the caller.
    unsafe { K::tile(kc, alpha_beta, a, rsa, csa, b, c, rsc, csc) }
}

#[cfg(test)]
mod tests {
    use super::balanced;
    use crate::Matrix;
    use crate::arch::Tier;
    use crate::gemm::kernel::{MicroKernel, Portable};
    use crate::gemm::packing::pack_a;

    /// The tile that packs a transposed A as it reads it leaves the same panel as `pack_a`
    /// and the same tile of C as the plain kernel on that panel, bit for bit.
    fn packing_tile_matches_pack_a<K: MicroKernel>() {
        let (mr, nr) = (K::MR, K::NR);
        for kc in [1, 2, 3, 4, 5, 9, 37] {
            // X is kc x (mr + 3) row-major; A = X^T starts at column 2 of X (rsa = 1).
            let x = Matrix::from_fn(kc + 1, mr + 3, |p, i| (p * 7 + i * 3) as f32 * 0.37 - 5.0);
            let a = x.view().t();
            let b: Vec<f32> = (0..kc * nr).map(|v| (v % 11) as f32 * 0.5 - 2.0).collect();
            let mut want_panel = vec![f32::NAN; mr * kc];
            pack_a(mr, a, 2, mr, 1, kc, &mut want_panel);
            let mut got_panel = vec![f32::NAN; mr * kc];
            let (mut want_c, mut got_c) = (vec![1.0f32; mr * nr], vec![1.0f32; mr * nr]);
            let ab = [1.5, -0.5];
            let csa = a.col_stride();
            let src = &a.data()[2 + csa..];
            // SAFETY: A(i, p) = src[i + p * csa] for i < mr, p < kc lies inside X; the panel
            // holds mr * kc floats, b kc * nr, and C mr * nr with row stride nr; the tier
            // is one the CPU runs (checked by the caller).
            unsafe {
                K::tile_packing_a(
                    kc,
                    &ab,
                    src.as_ptr(),
                    csa,
                    b.as_ptr(),
                    got_c.as_mut_ptr(),
                    nr,
                    1,
                    got_panel.as_mut_ptr(),
                );
                K::tile(
                    kc,
                    &ab,
                    want_panel.as_ptr(),
                    1,
                    mr,
                    b.as_ptr(),
                    want_c.as_mut_ptr(),
                    nr,
                    1,
                );
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got_panel), bits(&want_panel), "panel, kc = {kc}");
            assert_eq!(bits(&got_c), bits(&want_c), "tile, kc = {kc}");
        }
    }

    #[test]
    fn packing_tile_matches_pack_a_on_every_tier() {
        for tier in Tier::supported() {
            eprintln!("tier {tier}");
            match tier {
                Tier::Portable => packing_tile_matches_pack_a::<Portable>(),
                #[cfg(target_arch = "x86_64")]
                Tier::Avx2 => packing_tile_matches_pack_a::<crate::gemm::avx2::Avx2>(),
                #[cfg(target_arch = "x86_64")]
                Tier::Avx512 => packing_tile_matches_pack_a::<crate::gemm::avx512::Avx512>(),
                #[cfg(not(target_arch = "x86_64"))]
                _ => {}
            }
        }
    }

    #[test]
    fn balanced_blocks_cover_and_align() {
        assert_eq!(balanced(608, 384, 1), 304);
        assert_eq!(balanced(1024, 240, 12), 216);
        assert_eq!(balanced(5, 240, 12), 12);
        for len in 1..500 {
            let b = balanced(len, 64, 4);
            assert!(b.is_multiple_of(4) && b <= 64 && b * len.div_ceil(b) >= len);
        }
    }
}
