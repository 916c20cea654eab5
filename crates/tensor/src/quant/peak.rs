//! The int8 compute floor: a tight loop of the kernel's instructions on registers.
//!
//! What the int8 micro-kernel of a tier could reach if its loads and stores were free, with
//! nothing loaded. Written in assembly so that the compiler cannot hoist the products of
//! loop-invariant registers out of the loop.
//!
//! - AVX2 (and AVX-512 without VNNI): eight chains, each step `p = vpmaddubsw(a, b);
//!   p = vpmaddwd(p, ones); c += p` (32 multiply-adds, 64 integer operations);
//! - AVX-512 VNNI: twelve chains of `c = vpdpbusd(c, a, b)` on zmm registers (64
//!   multiply-adds, 128 integer operations per step and chain); twelve cover a latency of
//!   up to 6 cycles at two instructions per cycle.

use super::Int8Kernel;
use crate::arch::Tier;

/// Integer operations of [`int8_peak_loop`] on `tier` over `iters` steps.
pub fn int8_peak_ops(tier: Tier, iters: u64) -> u64 {
    match Int8Kernel::for_tier(tier) {
        Int8Kernel::Avx512Vnni => iters * 12 * 128,
        Int8Kernel::Avx2 | Int8Kernel::Portable => iters * 8 * 64,
    }
}

/// Runs `iters` steps of the floor loop of `tier`'s int8 kernel and returns a value that
/// depends on every step, or `None` when the CPU cannot run the tier or the tier is the
/// portable one (whose plain loops have no such floor). Time it to get the floor:
/// [`int8_peak_ops`] over the seconds taken.
pub fn int8_peak_loop(tier: Tier, iters: u64) -> Option<i32> {
    if !tier.is_supported() {
        return None;
    }
    match Int8Kernel::for_tier(tier) {
        // SAFETY: the kernel is chosen only where the CPU has AVX-512F and VNNI.
        #[cfg(target_arch = "x86_64")]
        Int8Kernel::Avx512Vnni => Some(unsafe { chains_vnni(iters) }),
        // SAFETY: both x86 SIMD tiers include AVX2, and the CPU runs this one.
        #[cfg(target_arch = "x86_64")]
        Int8Kernel::Avx2 => Some(unsafe { chains_avx2(iters) }),
        _ => None,
    }
}

/// # Safety
/// The CPU has AVX-512F and AVX-512 VNNI.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn chains_vnni(iters: u64) -> i32 {
    use std::arch::x86_64::{
        __m512i, _mm512_add_epi32, _mm512_reduce_add_epi32, _mm512_set1_epi8, _mm512_setzero_si512,
    };
    let a = _mm512_set1_epi8(3);
    let b = _mm512_set1_epi8(-2);
    let mut c: [__m512i; 12] = [_mm512_setzero_si512(); 12];
    if iters > 0 {
        // SAFETY: register arithmetic only; no memory is touched and the counter register
        // is declared clobbered.
        unsafe {
            std::arch::asm!(
                "2:",
                "vpdpbusd {c0}, {a}, {b}",
                "vpdpbusd {c1}, {a}, {b}",
                "vpdpbusd {c2}, {a}, {b}",
                "vpdpbusd {c3}, {a}, {b}",
                "vpdpbusd {c4}, {a}, {b}",
                "vpdpbusd {c5}, {a}, {b}",
                "vpdpbusd {c6}, {a}, {b}",
                "vpdpbusd {c7}, {a}, {b}",
                "vpdpbusd {c8}, {a}, {b}",
                "vpdpbusd {c9}, {a}, {b}",
                "vpdpbusd {c10}, {a}, {b}",
                "vpdpbusd {c11}, {a}, {b}",
                "dec {n}",
                "jnz 2b",
                n = inout(reg) iters => _,
                a = in(zmm_reg) a,
                b = in(zmm_reg) b,
                c0 = inout(zmm_reg) c[0],
                c1 = inout(zmm_reg) c[1],
                c2 = inout(zmm_reg) c[2],
                c3 = inout(zmm_reg) c[3],
                c4 = inout(zmm_reg) c[4],
                c5 = inout(zmm_reg) c[5],
                c6 = inout(zmm_reg) c[6],
                c7 = inout(zmm_reg) c[7],
                c8 = inout(zmm_reg) c[8],
                c9 = inout(zmm_reg) c[9],
                c10 = inout(zmm_reg) c[10],
                c11 = inout(zmm_reg) c[11],
                options(nomem, nostack),
            );
        }
    }
    let sum = c
        .iter()
        .fold(_mm512_setzero_si512(), |s, &v| _mm512_add_epi32(s, v));
    // Every lane holds the same value: return lane 0's (the sum of 16 equal lanes / 16).
    _mm512_reduce_add_epi32(sum) / 16
}

/// # Safety
/// The CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn chains_avx2(iters: u64) -> i32 {
    use std::arch::x86_64::{
        __m256i, _mm256_add_epi32, _mm256_extract_epi32, _mm256_set1_epi8, _mm256_set1_epi16,
        _mm256_setzero_si256,
    };
    let ones = _mm256_set1_epi16(1);
    let a = _mm256_set1_epi8(3);
    let b = _mm256_set1_epi8(-2);
    let mut c: [__m256i; 8] = [_mm256_setzero_si256(); 8];
    if iters > 0 {
        // SAFETY: register arithmetic only; no memory is touched and the counter register
        // is declared clobbered.
        unsafe {
            std::arch::asm!(
                "2:",
                "vpmaddubsw {p}, {a}, {b}",
                "vpmaddwd {p}, {p}, {ones}",
                "vpaddd {c0}, {c0}, {p}",
                "vpmaddubsw {p}, {a}, {b}",
                "vpmaddwd {p}, {p}, {ones}",
                "vpaddd {c1}, {c1}, {p}",
                "vpmaddubsw {p}, {a}, {b}",
                "vpmaddwd {p}, {p}, {ones}",
                "vpaddd {c2}, {c2}, {p}",
                "vpmaddubsw {p}, {a}, {b}",
                "vpmaddwd {p}, {p}, {ones}",
                "vpaddd {c3}, {c3}, {p}",
                "vpmaddubsw {p}, {a}, {b}",
                "vpmaddwd {p}, {p}, {ones}",
                "vpaddd {c4}, {c4}, {p}",
                "vpmaddubsw {p}, {a}, {b}",
                "vpmaddwd {p}, {p}, {ones}",
                "vpaddd {c5}, {c5}, {p}",
                "vpmaddubsw {p}, {a}, {b}",
                "vpmaddwd {p}, {p}, {ones}",
                "vpaddd {c6}, {c6}, {p}",
                "vpmaddubsw {p}, {a}, {b}",
                "vpmaddwd {p}, {p}, {ones}",
                "vpaddd {c7}, {c7}, {p}",
                "dec {n}",
                "jnz 2b",
                n = inout(reg) iters => _,
                a = in(ymm_reg) a,
                b = in(ymm_reg) b,
                ones = in(ymm_reg) ones,
                p = out(ymm_reg) _,
                c0 = inout(ymm_reg) c[0],
                c1 = inout(ymm_reg) c[1],
                c2 = inout(ymm_reg) c[2],
                c3 = inout(ymm_reg) c[3],
                c4 = inout(ymm_reg) c[4],
                c5 = inout(ymm_reg) c[5],
                c6 = inout(ymm_reg) c[6],
                c7 = inout(ymm_reg) c[7],
                options(nomem, nostack),
            );
        }
    }
    let sum = c
        .iter()
        .fold(_mm256_setzero_si256(), |s, &v| _mm256_add_epi32(s, v));
    _mm256_extract_epi32::<0>(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loop_computes_what_it_counts() {
        // Each step adds 4 * (3 * -2) = -24 to every lane of each chain: 8 chains on the
        // AVX2 kernel's loop, 12 on the VNNI one.
        for tier in Tier::supported() {
            let chains = if tier.has_vnni() { 12 } else { 8 };
            match int8_peak_loop(tier, 1000) {
                Some(v) => assert_eq!(v, chains * 1000 * -24, "{tier}"),
                None => assert_eq!(tier, Tier::Portable),
            }
            let per_step = if tier.has_vnni() { 12 * 128 } else { 8 * 64 };
            assert_eq!(int8_peak_ops(tier, 10), 10 * per_step);
        }
    }
}
