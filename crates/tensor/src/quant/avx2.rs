//! The AVX2 int8 micro-kernel (also the AVX-512 tier's on a CPU without AVX-512 VNNI; with
//! it, that tier runs `vpdpbusd`, avx512.rs).
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

/// Rows of the tile. 6 x 16 with the loop in assembly ([`accumulate_6x16`]) reached
/// 158-189 GOP/s (kernel alone, best rounds of three interleaved runs, thread clock, Zen 3,
/// load average 3.3-4.0) on the scoring shapes of `resflow bench gemm`; 4 x 16 with
/// intrinsics 140-178, 5 x 16 141-184, and 6 x 16 with intrinsics, which spills an
/// accumulator, 134-163 (docs/tensor.md, section 11, has the table).
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
    // SAFETY: forwarded from the caller (R rows of A, the panel, the tile of C).
    unsafe {
        let (acc0, acc1) = if R == 6 {
            let (a0, a1) = accumulate_6x16(t);
            // R == 6: the arrays have the same length.
            (
                std::array::from_fn(|r| a0[r]),
                std::array::from_fn(|r| a1[r]),
            )
        } else {
            accumulate::<R>(t)
        };
        store::<R>(t, &acc0, &acc1);
    }
}

/// The accumulators of an `R x 16` tile: columns 0..8 and 8..16 of each row.
///
/// # Safety
/// As [`Q8Kernel::tile`] with `rows == R`; the CPU has AVX2.
#[target_feature(enable = "avx2")]
unsafe fn accumulate<const R: usize>(t: &Tile) -> ([__m256i; R], [__m256i; R]) {
    // SAFETY: the caller guarantees R rows of 4 * groups bytes of A at stride lda (read
    // 4 bytes at a time, unaligned), a 64-byte aligned panel of 64 * groups bytes (read
    // 32 bytes at a time, aligned) and NR biases.
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
        (acc0, acc1)
    }
}

/// [`accumulate`] for a full 6 x 16 tile, written out: the compiler's version keeps the
/// panel's two registers and the vector of ones live beside the 12 accumulators and the
/// broadcast, 17 registers, and spills an accumulator to the stack in every group. Here
/// the panel is read as `vpmaddubsw`'s memory operand (its signed operand may come from
/// memory), so 12 accumulators, the broadcast, one product and the ones fit in 15.
///
/// # Safety
/// As [`Q8Kernel::tile`] with `rows == 6`; the CPU has AVX2.
#[target_feature(enable = "avx2")]
unsafe fn accumulate_6x16(t: &Tile) -> ([__m256i; 6], [__m256i; 6]) {
    // SAFETY: as `accumulate`: the bias, then per group 4 bytes of each of 6 rows of A
    // (rows 0..3 from `a0`, rows 3..6 from `a3 = a0 + 3 lda`, at offsets 0, lda, 2 lda)
    // and the panel's 64 aligned bytes; the loop runs `groups` times and only when
    // `groups > 0`, touching no memory but those reads and the listed registers.
    unsafe {
        let ones = _mm256_set1_epi16(1);
        let b0 = _mm256_loadu_si256(t.bias.cast::<__m256i>());
        let b1 = _mm256_loadu_si256(t.bias.add(8).cast::<__m256i>());
        let (mut c00, mut c10, mut c20, mut c30, mut c40, mut c50) = (b0, b0, b0, b0, b0, b0);
        let (mut c01, mut c11, mut c21, mut c31, mut c41, mut c51) = (b1, b1, b1, b1, b1, b1);
        if t.groups > 0 {
            std::arch::asm!(
                "2:",
                "vpbroadcastd {av}, dword ptr [{a0}]",
                "vpmaddubsw {p}, {av}, ymmword ptr [{bp}]",
                "vpmaddwd {p}, {p}, {ones}",
                "vpaddd {c00}, {c00}, {p}",
                "vpmaddubsw {p}, {av}, ymmword ptr [{bp} + 32]",
                "vpmaddwd {p}, {p}, {ones}",
                "vpaddd {c01}, {c01}, {p}",
                "vpbroadcastd {av}, dword ptr [{a0} + {lda}]",
                "vpmaddubsw {p}, {av}, ymmword ptr [{bp}]",
                "vpmaddwd {p}, {p}, {ones}",
                "vpaddd {c10}, {c10}, {p}",
                "vpmaddubsw {p}, {av}, ymmword ptr [{bp} + 32]",
                "vpmaddwd {p}, {p}, {ones}",
                "vpaddd {c11}, {c11}, {p}",
                "vpbroadcastd {av}, dword ptr [{a0} + 2 * {lda}]",
                "vpmaddubsw {p}, {av}, ymmword ptr [{bp}]",
                "vpmaddwd {p}, {p}, {ones}",
                "vpaddd {c20}, {c20}, {p}",
                "vpmaddubsw {p}, {av}, ymmword ptr [{bp} + 32]",
                "vpmaddwd {p}, {p}, {ones}",
                "vpaddd {c21}, {c21}, {p}",
                "vpbroadcastd {av}, dword ptr [{a3}]",
                "vpmaddubsw {p}, {av}, ymmword ptr [{bp}]",
                "vpmaddwd {p}, {p}, {ones}",
                "vpaddd {c30}, {c30}, {p}",
                "vpmaddubsw {p}, {av}, ymmword ptr [{bp} + 32]",
                "vpmaddwd {p}, {p}, {ones}",
                "vpaddd {c31}, {c31}, {p}",
                "vpbroadcastd {av}, dword ptr [{a3} + {lda}]",
                "vpmaddubsw {p}, {av}, ymmword ptr [{bp}]",
                "vpmaddwd {p}, {p}, {ones}",
                "vpaddd {c40}, {c40}, {p}",
                "vpmaddubsw {p}, {av}, ymmword ptr [{bp} + 32]",
                "vpmaddwd {p}, {p}, {ones}",
                "vpaddd {c41}, {c41}, {p}",
                "vpbroadcastd {av}, dword ptr [{a3} + 2 * {lda}]",
                "vpmaddubsw {p}, {av}, ymmword ptr [{bp}]",
                "vpmaddwd {p}, {p}, {ones}",
                "vpaddd {c50}, {c50}, {p}",
                "vpmaddubsw {p}, {av}, ymmword ptr [{bp} + 32]",
                "vpmaddwd {p}, {p}, {ones}",
                "vpaddd {c51}, {c51}, {p}",
                "add {a0}, 4",
                "add {a3}, 4",
                "add {bp}, 64",
                "dec {n}",
                "jnz 2b",
                a0 = inout(reg) t.a => _,
                a3 = inout(reg) t.a.add(3 * t.lda) => _,
                bp = inout(reg) t.b => _,
                n = inout(reg) t.groups => _,
                lda = in(reg) t.lda,
                ones = in(ymm_reg) ones,
                av = out(ymm_reg) _,
                p = out(ymm_reg) _,
                c00 = inout(ymm_reg) c00,
                c01 = inout(ymm_reg) c01,
                c10 = inout(ymm_reg) c10,
                c11 = inout(ymm_reg) c11,
                c20 = inout(ymm_reg) c20,
                c21 = inout(ymm_reg) c21,
                c30 = inout(ymm_reg) c30,
                c31 = inout(ymm_reg) c31,
                c40 = inout(ymm_reg) c40,
                c41 = inout(ymm_reg) c41,
                c50 = inout(ymm_reg) c50,
                c51 = inout(ymm_reg) c51,
                options(nostack, readonly),
            );
        }
        (
            [c00, c10, c20, c30, c40, c50],
            [c01, c11, c21, c31, c41, c51],
        )
    }
}

/// Writes `rows x cols` of C from an `R x 16` tile's accumulators:
/// `C[r, j] = (acc as f32) * (sa_r * sb_j)`.
///
/// # Safety
/// As [`Q8Kernel::tile`] with `rows == R`; the CPU has AVX2.
#[target_feature(enable = "avx2")]
unsafe fn store<const R: usize>(t: &Tile, acc0: &[__m256i; R], acc1: &[__m256i; R]) {
    // SAFETY: the caller guarantees NR column scales, R row scales, and the rows x cols
    // elements of C for writes.
    unsafe {
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
