//! The int8 compute floor: a tight loop of the kernel's three instructions on registers.
//!
//! Eight chains, each step `p = vpmaddubsw(a, b); p = vpmaddwd(p, ones); c += p` (32
//! multiply-adds, 64 integer operations), with nothing loaded: what the int8 micro-kernel
//! could reach if its loads and stores were free. Written in assembly so that the compiler
//! cannot hoist the products of loop-invariant registers out of the loop.

/// Integer operations of [`int8_peak_loop`] over `iters` steps: 8 chains x 32
/// multiply-adds x 2.
pub fn int8_peak_ops(iters: u64) -> u64 {
    iters * 8 * 64
}

/// Runs `iters` steps of the loop and returns a value that depends on every step, or
/// `None` when the CPU has no AVX2 (the int8 kernel of the portable tier has no such
/// floor). Time it to get the floor: [`int8_peak_ops`] over the seconds taken.
pub fn int8_peak_loop(iters: u64) -> Option<i32> {
    #[cfg(target_arch = "x86_64")]
    if crate::arch::Tier::Avx2.is_supported() {
        // SAFETY: the CPU has AVX2 (checked just above).
        return Some(unsafe { chains_avx2(iters) });
    }
    let _ = iters;
    None
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
        // Each step adds 4 * (3 * -2) = -24 to every lane of each of the 8 chains.
        if let Some(v) = int8_peak_loop(1000) {
            assert_eq!(v, 8 * 1000 * -24);
        }
        assert_eq!(int8_peak_ops(10), 10 * 512);
    }
}
