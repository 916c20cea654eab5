//! The AVX2 int8 micro-kernel (also the AVX-512 tier's: the same instructions on 256-bit
//! registers; a 512-bit version has not been written or measured).
//!
//! Each group of 4 k, for each row r of the tile:
//!
//! ```text
//!   av    = vpbroadcastd(a[r, 4g..4g+4])          32 bytes: the row's 4 u8, 8 times
//!   b0,b1 = the panel's line g                    2 x 32 bytes: 4 k of columns 0..8, 8..16
//!   t     = vpmaddubsw(av, b0)                    16 i16: a0 b0 + a1 b1 | a2 b2 + a3 b3 per column
//!                                                 (|pair| <= 2 * 255 * 63 = 32130: no saturation)
//!   t     = vpmaddwd(t, ones)                     8 i32: the 4-k dot product of each column
//!   acc[r][0] += t                                vpaddd; the same for b1 into acc[r][1]
//! ```
//!
//! The accumulators start at the panel's `-128 colsum_j` (A's zero point), and the store
//! converts them to f32 (`vcvtdq2ps`) and multiplies by `sa_r * sb_j` (`vmulps` twice,
//! never fused, so the bits equal the portable kernel's).

use std::arch::x86_64::{
    __m256i, _mm256_add_epi32, _mm256_cvtepi32_ps, _mm256_load_si256, _mm256_loadu_ps,
    _mm256_loadu_si256, _mm256_madd_epi16, _mm256_maddubs_epi16, _mm256_mul_ps, _mm256_set1_epi16,
    _mm256_set1_epi32, _mm256_set1_ps, _mm256_storeu_ps,
};

use super::kernel::{Q8Kernel, Tile};
use super::packing::NR;

/// Rows of the tile: 6 x 16 holds 12 accumulators, the panel's 2 registers and the
/// broadcast in the 16 ymm registers (the vector of ones is read from memory).
const MR: usize = 6;

/// The AVX2 int8 kernel.
pub(crate) struct Avx2;

impl Q8Kernel for Avx2 {
    const MR: usize = MR;

    unsafe fn tile(t: &Tile) {
        // SAFETY: forwarded from the caller, which guarantees AVX2 and `rows` rows.
        unsafe {
            match t.rows {
                1 => tile_rows::<1>(t),
                2 => tile_rows::<2>(t),
                3 => tile_rows::<3>(t),
                4 => tile_rows::<4>(t),
                5 => tile_rows::<5>(t),
                _ => tile_rows::<MR>(t),
            }
        }
    }
}

/// [`Avx2::tile`] for exactly `R` rows.
///
/// # Safety
/// As [`Q8Kernel::tile`] with `rows == R`; the CPU has AVX2.
#[target_feature(enable = "avx2")]
unsafe fn tile_rows<const R: usize>(t: &Tile) {
    // SAFETY: the caller guarantees R rows of 4 * groups bytes of A at stride lda (read
    // 4 bytes at a time, unaligned), a 64-byte aligned panel of 64 * groups bytes (read
    // 32 bytes at a time, aligned), NR biases and column scales, R row scales, and the
    // rows x cols elements of C for writes.
    unsafe {
        let ones = _mm256_set1_epi16(1);
        let bias0 = _mm256_loadu_si256(t.bias.cast::<__m256i>());
        let bias1 = _mm256_loadu_si256(t.bias.add(8).cast::<__m256i>());
        let mut acc0 = [bias0; R];
        let mut acc1 = [bias1; R];
        let mut ap = t.a;
        let mut bp = t.b;
        for _ in 0..t.groups {
            let b0 = _mm256_load_si256(bp.cast::<__m256i>());
            let b1 = _mm256_load_si256(bp.add(32).cast::<__m256i>());
            for r in 0..R {
                let a4 = ap.add(r * t.lda).cast::<i32>().read_unaligned();
                let av = _mm256_set1_epi32(a4);
                let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(av, b0), ones);
                let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(av, b1), ones);
                acc0[r] = _mm256_add_epi32(acc0[r], p0);
                acc1[r] = _mm256_add_epi32(acc1[r], p1);
            }
            ap = ap.add(4);
            bp = bp.add(64);
        }
        let sb0 = _mm256_loadu_ps(t.sb);
        let sb1 = _mm256_loadu_ps(t.sb.add(8));
        let direct = t.cols == NR && t.csc == 1;
        for r in 0..R {
            let sa = _mm256_set1_ps(*t.sa.add(r));
            let y0 = _mm256_mul_ps(_mm256_cvtepi32_ps(acc0[r]), _mm256_mul_ps(sa, sb0));
            let y1 = _mm256_mul_ps(_mm256_cvtepi32_ps(acc1[r]), _mm256_mul_ps(sa, sb1));
            let cr = t.c.add(r * t.rsc);
            if direct {
                _mm256_storeu_ps(cr, y0);
                _mm256_storeu_ps(cr.add(8), y1);
            } else {
                // An edge panel or a column-strided C: through a buffer.
                let mut buf = [0.0f32; NR];
                _mm256_storeu_ps(buf.as_mut_ptr(), y0);
                _mm256_storeu_ps(buf.as_mut_ptr().add(8), y1);
                for (j, &y) in buf.iter().enumerate().take(t.cols) {
                    *cr.add(j * t.csc) = y;
                }
            }
        }
    }
}
