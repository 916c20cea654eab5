//! The one dispatch point: which SIMD tier the kernels run on.
//!
//! CPU features are detected here and nowhere else. [`Tier::active`] picks the best tier this
//! CPU supports once and caches it; the environment variable `RESFLOW_KERNEL`
//! (`portable`, `avx2` or `avx512`) forces a tier, and naming a tier the CPU lacks is an
//! error rather than a crash. Every kernel family (GEMM micro-kernels, element-wise
//! kernels) takes a [`Tier`] so tests can run each tier the machine has.

mod cpu;
mod peak;
pub use cpu::{Cache, Cpu};
pub use peak::{fma_loop_flops, fma_loop_gflops, peak_gflops};

use std::sync::OnceLock;

use crate::error::TensorError;

/// A SIMD instruction-set level the kernels are compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    /// Plain Rust, compiled for the baseline target (SSE2 on x86-64, NEON on aarch64).
    Portable,
    /// x86-64 with AVX2 and FMA: 16 registers of 8 floats.
    Avx2,
    /// x86-64 with AVX-512F: 32 registers of 16 floats.
    Avx512,
}

impl Tier {
    /// Every tier, slowest first.
    pub const ALL: [Tier; 3] = [Tier::Portable, Tier::Avx2, Tier::Avx512];

    /// The tier's name as `RESFLOW_KERNEL` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Portable => "portable",
            Tier::Avx2 => "avx2",
            Tier::Avx512 => "avx512",
        }
    }

    /// Parses a tier name (`portable`, `avx2`, `avx512`).
    pub fn parse(name: &str) -> Result<Tier, TensorError> {
        Tier::ALL
            .into_iter()
            .find(|t| t.name() == name.trim().to_ascii_lowercase())
            .ok_or_else(|| TensorError::UnknownTier(name.to_string()))
    }

    /// True when this CPU can run the tier (runtime detection).
    pub fn is_supported(self) -> bool {
        match self {
            Tier::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Tier::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Tier::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// True when the tier's int8 GEMM can use `vpdpbusd` (AVX-512 VNNI: four u8 x i8
    /// products summed into each i32 lane in one instruction): the AVX-512 tier on a CPU
    /// that has the extension. Without it the AVX-512 tier runs the AVX2 int8 kernel.
    pub fn has_vnni(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        if self == Tier::Avx512 {
            return self.is_supported() && std::arch::is_x86_feature_detected!("avx512vnni");
        }
        false
    }

    /// The tiers this CPU supports, slowest first.
    pub fn supported() -> Vec<Tier> {
        Tier::ALL.into_iter().filter(|t| t.is_supported()).collect()
    }

    /// The best tier this CPU supports.
    pub fn best() -> Tier {
        *Tier::supported().last().unwrap_or(&Tier::Portable)
    }

    /// Checks that the CPU can run `self`, as an error naming the tiers it can run.
    pub fn require(self) -> Result<Tier, TensorError> {
        if self.is_supported() {
            Ok(self)
        } else {
            Err(TensorError::UnsupportedTier {
                tier: self.name(),
                supported: Tier::supported()
                    .iter()
                    .map(|t| t.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    }

    /// The tier chosen from `RESFLOW_KERNEL` if set, else the best supported one.
    pub fn from_env() -> Result<Tier, TensorError> {
        match std::env::var("RESFLOW_KERNEL") {
            Ok(name) if !name.trim().is_empty() => Tier::parse(&name)?.require(),
            _ => Ok(Tier::best()),
        }
    }

    /// The process-wide tier, chosen once by [`Tier::from_env`] and cached.
    ///
    /// # Panics
    /// If `RESFLOW_KERNEL` names an unknown tier or one this CPU lacks; call
    /// [`Tier::from_env`] first to report that as an error instead.
    pub fn active() -> Tier {
        static ACTIVE: OnceLock<Tier> = OnceLock::new();
        *ACTIVE.get_or_init(|| match Tier::from_env() {
            Ok(t) => t,
            Err(e) => panic!("RESFLOW_KERNEL: {e}"),
        })
    }
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Asks the CPU to start loading the cache line holding `data[0]` (a hint: no effect on
/// results). Gathers of random embedding rows use it to overlap their cache misses.
#[inline(always)]
pub fn prefetch(data: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if let Some(first) = data.first() {
        // SAFETY: prefetching never faults or changes memory; the pointer comes from a live
        // reference, and SSE (which provides the instruction) is part of the x86-64 baseline.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                (first as *const f32).cast::<i8>(),
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in Tier::ALL {
            assert_eq!(Tier::parse(t.name()), Ok(t));
        }
        assert_eq!(Tier::parse("AVX2 "), Ok(Tier::Avx2));
        assert!(matches!(
            Tier::parse("sse9"),
            Err(TensorError::UnknownTier(_))
        ));
    }

    #[test]
    fn portable_always_runs_and_best_is_supported() {
        assert!(Tier::Portable.is_supported());
        assert!(Tier::best().is_supported());
        assert_eq!(Tier::supported()[0], Tier::Portable);
        for t in Tier::ALL {
            assert_eq!(t.require().is_ok(), t.is_supported());
        }
    }
}
