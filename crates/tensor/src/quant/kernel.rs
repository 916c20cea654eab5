//! The int8 micro-kernel contract, the loop that calls it, and the portable kernel.
//!
//! A tile is `rows <= MR` rows of C by one panel of [`NR`] columns:
//!
//! ```text
//!   acc[r][j] = bias_j + sum_{g < groups} sum_{t < 4} a[r * lda + 4 g + t] * b[g * 64 + 4 j + t]
//!             = sum_k (qa_rk - 128) qb_kj                         (bias_j = -128 sum_k qb_kj)
//!   C[r, j]   = (acc[r][j] as f32) * (sa_r * sb_j)                for j < cols
//! ```
//!
//! No partial sum overflows an i32: after the first `p` values of k the accumulator is
//! `sum_{k < p} (qa_k - 128) qb_k - 128 sum_{k >= p} qb_k`, at most `127 * 63 p + 128 * 63
//! (K - p) <= 8064 K` in magnitude, 1.07e9 at the limit K = 133 000 (`vpmaddubsw`'s pairs
//! and `vpmaddwd`'s sums of 4 are exact too: at most 32130 and 64260). So the integers are
//! exact, every tier computes the same ones and the same two f32 roundings, and every tier
//! writes the same bits.

use super::packing::{NR, Packed};

/// One tile's operands, as raw pointers into buffers the caller has checked.
pub(crate) struct Tile {
    /// Rows of the tile, `1..=MR`.
    pub(crate) rows: usize,
    /// Columns of C the tile covers, `1..=NR` (the panel always holds NR).
    pub(crate) cols: usize,
    /// Groups of 4 k.
    pub(crate) groups: usize,
    /// The tile's first row of quantized A; row r starts at `a + r * lda`.
    pub(crate) a: *const u8,
    /// Bytes between rows of A (`4 * groups`).
    pub(crate) lda: usize,
    /// The panel: `groups` lines of 64 bytes, 64-byte aligned.
    pub(crate) b: *const u8,
    /// NR accumulator starts (`-128 colsum_j`).
    pub(crate) bias: *const i32,
    /// NR column scales.
    pub(crate) sb: *const f32,
    /// `rows` row scales.
    pub(crate) sa: *const f32,
    /// `C[0, 0]` of the tile; `C[r, j]` at `c + r * rsc + j * csc`.
    pub(crate) c: *mut f32,
    /// Row stride of C.
    pub(crate) rsc: usize,
    /// Column stride of C.
    pub(crate) csc: usize,
}

/// An int8 micro-kernel for one tier.
pub(crate) trait Q8Kernel {
    /// Rows of a full tile.
    const MR: usize;

    /// Computes one tile as the module documentation says, writing only `rows x cols`
    /// elements of C.
    ///
    /// # Safety
    /// Every pointer of `t` is valid for the reads and writes the module documentation
    /// lists; `1 <= rows <= MR`, `1 <= cols <= NR`; the CPU supports the kernel's tier.
    unsafe fn tile(t: &Tile);
}

/// Bytes of quantized A one block of rows may take: the block stays in L2 (512 KiB per
/// core on Zen 3, 1 MiB on Zen 5) while every panel of B passes over it.
const A_BLOCK_BYTES: usize = 256 << 10;

/// The loop nest: blocks of rows of A (sized for L2), then panels of B (one panel, at
/// most `64 * K / 4` bytes, stays in L1 across the block), then tiles of MR rows.
///
/// # Safety
/// `a` holds `m` rows of `lda = 4 * groups` bytes, `sa` `m` scales; `b` holds
/// `n.div_ceil(NR)` panels of `groups` lines; C is valid for writes at `i * rsc + j * csc` for
/// `i < m`, `j < n`; the CPU supports `K`'s tier.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn run<K: Q8Kernel>(
    m: usize,
    n: usize,
    a: &[u8],
    sa: &[f32],
    b: &Packed,
    c: *mut f32,
    rsc: usize,
    csc: usize,
) {
    let groups = b.groups;
    let lda = 4 * groups;
    let mc = (A_BLOCK_BYTES / lda.max(1)) / K::MR * K::MR;
    let mc = mc.max(K::MR);
    for i0 in (0..m).step_by(mc) {
        let i_end = (i0 + mc).min(m);
        for p in 0..n.div_ceil(NR) {
            let j0 = p * NR;
            for i in (i0..i_end).step_by(K::MR) {
                let t = Tile {
                    rows: K::MR.min(i_end - i),
                    cols: NR.min(n - j0),
                    groups,
                    a: a[i * lda..].as_ptr(),
                    lda,
                    b: b.panel(p).as_ptr(),
                    bias: b.bias[j0..j0 + NR].as_ptr(),
                    sb: b.scales[j0..j0 + NR].as_ptr(),
                    sa: sa[i..].as_ptr(),
                    // SAFETY: (i, j0) is an element of C (i < m, j0 < n), so the offset
                    // stays inside C's buffer.
                    c: unsafe { c.add(i * rsc + j0 * csc) },
                    rsc,
                    csc,
                };
                // SAFETY: the tile's rows and columns lie inside A, the panel and C (the
                // caller's contract), and the CPU runs K's tier.
                unsafe { K::tile(&t) };
            }
        }
    }
}

/// The portable kernel: plain integer loops over a 4 x 16 tile, the definition every SIMD
/// kernel is tested against.
pub(crate) struct Portable;

impl Q8Kernel for Portable {
    const MR: usize = 4;

    unsafe fn tile(t: &Tile) {
        // SAFETY: forwarded from the caller; `tile_rows` reads `R = t.rows` rows.
        unsafe {
            match t.rows {
                1 => tile_rows::<1>(t),
                2 => tile_rows::<2>(t),
                3 => tile_rows::<3>(t),
                _ => tile_rows::<4>(t),
            }
        }
    }
}

/// [`Portable::tile`] for exactly `R` rows.
///
/// # Safety
/// As [`Q8Kernel::tile`] with `rows == R`.
unsafe fn tile_rows<const R: usize>(t: &Tile) {
    // SAFETY: the caller guarantees R rows of `lda >= 4 * groups` bytes of A, a panel of
    // `64 * groups` bytes, NR biases and scales, R row scales.
    let (a, b, bias) = unsafe {
        (
            std::array::from_fn::<&[u8], R, _>(|r| {
                std::slice::from_raw_parts(t.a.add(r * t.lda), 4 * t.groups)
            }),
            std::slice::from_raw_parts(t.b, 64 * t.groups),
            std::slice::from_raw_parts(t.bias, NR),
        )
    };
    let mut acc = [[0i32; NR]; R];
    for row in acc.iter_mut() {
        row.copy_from_slice(bias);
    }
    for (g, line) in b.chunks_exact(64).enumerate() {
        // The line de-interleaved to i16, k-major: bw[t][j] = qb[4g + t, j]. Every product
        // then fits an i16 (|255 * 63| = 16065) and the loops below run over 16 contiguous
        // columns, which the compiler turns into 16-bit multiplies and 32-bit adds on
        // whatever vector registers the target has.
        let mut bw = [[0i16; NR]; 4];
        for (j, col) in line.chunks_exact(4).enumerate() {
            for (t, &q) in col.iter().enumerate() {
                bw[t][j] = i16::from(q as i8);
            }
        }
        for (row, a) in acc.iter_mut().zip(&a) {
            for (t, bt) in bw.iter().enumerate() {
                let at = i16::from(a[4 * g + t]);
                for (x, &q) in row.iter_mut().zip(bt) {
                    *x += i32::from(at * q);
                }
            }
        }
    }
    // SAFETY: as above for the scales; C's rows x cols elements are valid for writes.
    unsafe {
        for (r, row) in acc.iter().enumerate() {
            let sa = *t.sa.add(r);
            for (j, &x) in row.iter().enumerate().take(t.cols) {
                *t.c.add(r * t.rsc + j * t.csc) = (x as f32) * (sa * *t.sb.add(j));
            }
        }
    }
}
