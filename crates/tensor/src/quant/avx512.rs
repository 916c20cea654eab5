//! The AVX-512 VNNI int8 micro-kernel: the AVX-512 tier's on a CPU with `avx512vnni`.
//!
//! The panel layout (packing.rs) already puts 4 consecutive k of each column in one 32-bit
//! lane, which is the operand `vpdpbusd` takes: one 64-byte line of the panel is one zmm
//! register, 16 columns by 4 k. Each group of 4 k, for each row r of the tile:
//!
//! ```text
//!   av       = vpbroadcastd(a[r, 4g..4g+4])   64 bytes: the row's 4 u8, 16 times
//!   b        = the panel's line g              one aligned 64-byte load per group, all rows
//!   acc[r]  += vpdpbusd(av, b)                 16 i32: the 4-k dot product of each column
//! ```
//!
//! One instruction where the AVX2 kernel (avx2.rs) needs three per 8 columns
//! (`vpmaddubsw`, `vpmaddwd`, `vpaddd`), and no i16 intermediate: `vpdpbusd` sums the four
//! products in 32 bits, so the integers are the same exact ones (kernel.rs bounds every
//! partial sum), and the store is the AVX2 kernel's (`vcvtdq2ps`, then `vmulps` by
//! `sa_r * sb_j`, never fused): every tier writes the same bits.
//!
//! The tile is `MR x 16`: `MR` accumulators, the panel's line and a broadcast, so 12 rows
//! take 14 of the 32 zmm registers. The row count is the measured choice below.

use std::arch::x86_64::{
    __m512i, _mm512_cvtepi32_ps, _mm512_dpbusd_epi32, _mm512_load_si512, _mm512_loadu_ps,
    _mm512_loadu_si512, _mm512_mask_storeu_ps, _mm512_mul_ps, _mm512_set1_epi32, _mm512_set1_ps,
    _mm512_storeu_ps,
};

use super::kernel::{Q8Kernel, Tile};
use super::packing::NR;

/// Rows of the tile. On an AMD EPYC Zen 4 (family 25, model 17), kernel alone, best of 9
/// interleaved rounds, thread clock (`resflow bench gemm`, 2026-12-04), on the scoring
/// shapes: 12 rows 432-459 GOP/s, 92-98% of the 470 GOP/s floor (twice the AVX2 kernel's
/// 221-228 on the same core); 16 rows 385-443 and 8 rows 396-436.
const MR: usize = 12;

/// The AVX-512 VNNI int8 kernel.
pub(crate) struct Avx512Vnni;

/// Calls `tile_rows::<R>` for `R = t.rows`, written out for each row count below MR.
macro_rules! by_rows {
    ($t:expr, $($r:literal)*) => {
        match $t.rows {
            $($r => tile_rows::<$r>($t),)*
            _ => tile_rows::<MR>($t),
        }
    };
}

impl Q8Kernel for Avx512Vnni {
    const MR: usize = MR;

    unsafe fn tile(t: &Tile) {
        // SAFETY: forwarded from the caller, which guarantees AVX-512F and VNNI and
        // `rows <= MR` rows.
        unsafe { by_rows!(t, 1 2 3 4 5 6 7 8 9 10 11) }
    }
}

/// [`Avx512Vnni::tile`] for exactly `R` rows.
///
/// # Safety
/// As [`Q8Kernel::tile`] with `rows == R`; the CPU has AVX-512F and AVX-512 VNNI.
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn tile_rows<const R: usize>(t: &Tile) {
    // SAFETY: the caller guarantees R rows of 4 * groups bytes of A at stride lda (read
    // 4 bytes at a time, unaligned), a 64-byte aligned panel of 64 * groups bytes (read
    // one aligned line at a time), NR biases and column scales, R row scales, and the
    // rows x cols elements of C for writes.
    unsafe {
        let mut acc = [_mm512_loadu_si512(t.bias.cast::<__m512i>()); R];
        let mut ap = t.a;
        let mut bp = t.b;
        for _ in 0..t.groups {
            let b = _mm512_load_si512(bp.cast::<__m512i>());
            for (r, acc) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_epi32(ap.add(r * t.lda).cast::<i32>().read_unaligned());
                *acc = _mm512_dpbusd_epi32(*acc, av, b);
            }
            ap = ap.add(4);
            bp = bp.add(64);
        }

        let sb = _mm512_loadu_ps(t.sb);
        // The columns of C the tile covers; a full panel when cols == NR.
        let mask = (((1u32 << t.cols) - 1) & 0xffff) as u16;
        for (r, acc) in acc.iter().enumerate() {
            let sa = _mm512_set1_ps(*t.sa.add(r));
            let y = _mm512_mul_ps(_mm512_cvtepi32_ps(*acc), _mm512_mul_ps(sa, sb));
            let cr = t.c.add(r * t.rsc);
            if t.csc == 1 {
                _mm512_mask_storeu_ps(cr, mask, y);
            } else {
                // A column-strided C: through a buffer.
                let mut buf = [0.0f32; NR];
                _mm512_storeu_ps(buf.as_mut_ptr(), y);
                for (j, &v) in buf.iter().enumerate().take(t.cols) {
                    *cr.add(j * t.csc) = v;
                }
            }
        }
    }
}
