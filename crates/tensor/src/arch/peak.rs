//! Measuring this core's FP32 peak: a tight loop of independent FMA chains.
//!
//! Twelve accumulators, each updated by one FMA per iteration, keep both FMA pipes busy:
//! latency x pipes chains are needed, 8 on Zen 3 and Zen 4 (4 cycles), 10 on Zen 2 (5
//! cycles); 12 cover them all. The figure is the ceiling that GEMM efficiency is quoted
//! against.

use std::time::Instant;

use super::Tier;

/// Floating-point operations that [`fma_loop_gflops`] performs for `iters` steps on `tier`
/// (12 chains of one multiply-add per step, over the tier's lanes; the portable loop
/// when the CPU lacks `tier`).
pub fn fma_loop_flops(tier: Tier, iters: u64) -> u64 {
    let lanes = match tier {
        #[cfg(target_arch = "x86_64")]
        Tier::Avx512 if tier.is_supported() => 16,
        #[cfg(target_arch = "x86_64")]
        Tier::Avx2 if tier.is_supported() => 8,
        _ => 4,
    };
    iters * 12 * lanes * 2
}

/// Floating-point operations per second (in GFLOP/s) of `iters` steps of 12 FMA chains on
/// `tier`, measured once.
pub fn fma_loop_gflops(tier: Tier, iters: u64) -> f64 {
    let start = Instant::now();
    let sink = match tier {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `is_supported` checked the CPU has AVX-512F.
        Tier::Avx512 if tier.is_supported() => unsafe { chains_avx512(iters) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `is_supported` checked the CPU has AVX2 and FMA.
        Tier::Avx2 if tier.is_supported() => unsafe { chains_avx2(iters) },
        _ => chains_portable(iters),
    };
    let flops = fma_loop_flops(tier, iters);
    let secs = start.elapsed().as_secs_f64();
    std::hint::black_box(sink);
    flops as f64 / secs / 1e9
}

/// Best of `runs` measurements of [`fma_loop_gflops`], each about 20 ms long.
pub fn peak_gflops(tier: Tier, runs: usize) -> f64 {
    (0..runs.max(1))
        .map(|_| fma_loop_gflops(tier, 2_000_000))
        .fold(0.0, f64::max)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn chains_avx512(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_set1_ps(0.0); 12];
    let a = _mm512_set1_ps(0.999_999);
    let b = _mm512_set1_ps(1e-7);
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm512_fmadd_ps(*v, a, b);
        }
    }
    acc.iter().map(|v| _mm512_reduce_add_ps(*v)).sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn chains_avx2(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_set1_ps(0.0); 12];
    let a = _mm256_set1_ps(0.999_999);
    let b = _mm256_set1_ps(1e-7);
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm256_fmadd_ps(*v, a, b);
        }
    }
    let mut out = [0.0f32; 8];
    let sum = acc
        .iter()
        .fold(_mm256_set1_ps(0.0), |s, v| _mm256_add_ps(s, *v));
    // SAFETY: out has room for the 8 lanes written by the unaligned store.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), sum) };
    out.iter().sum()
}

/// Portable chains: 12 x 4 lanes of multiply-add (two operations each, not fused).
fn chains_portable(iters: u64) -> f32 {
    let mut acc = [[0.0f32; 4]; 12];
    let (a, b) = (
        std::hint::black_box(0.999_999f32),
        std::hint::black_box(1e-7f32),
    );
    for _ in 0..iters {
        for v in acc.iter_mut() {
            for l in v.iter_mut() {
                *l = *l * a + b;
            }
        }
    }
    acc.iter().flatten().sum()
}
