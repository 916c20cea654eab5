//! Element-wise kernels: activations with their derivatives, softmax, bias and column sums,
//! and vector updates.
//!
//! Each kernel is written once, in plain Rust, by `multiversion!`: the body is compiled
//! three times, for the baseline target, under `#[target_feature(enable = "avx2,fma")]` and
//! under `"avx512f"`, and the tier picks one at run time. The compiler vectorises each copy
//! for its register width; `exp` and `ln` are written in `math.rs` so that they vectorise too.
//! Because Rust never fuses a multiply and an add on its own, all three copies perform the
//! same operations in the same order and return bit-identical results, which the tests check.
//!
//! Every function comes in two forms: `relu(..)` on the process-wide tier
//! ([`Tier::active`](crate::Tier::active)) and `relu_with(tier, ..)` on an explicit one (the
//! portable code when the CPU lacks that tier). Lengths must agree; a mismatch is a bug in
//! the caller and panics (see each `# Panics`).

/// Defines `$name(args)` on the active tier and `$with(tier, args)` on an explicit tier,
/// from one plain-Rust body compiled for each instruction set.
macro_rules! multiversion {
    (
        $(#[$meta:meta])*
        pub fn $name:ident / $with:ident ( $($arg:ident : $ty:ty),* $(,)? ) $body:block
    ) => {
        $(#[$meta])*
        pub fn $name($($arg: $ty),*) {
            $with($crate::arch::Tier::active(), $($arg),*)
        }

        #[doc = concat!("[`", stringify!($name), "`] on an explicit kernel tier.")]
        pub fn $with(tier: $crate::arch::Tier, $($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx2,fma")]
            fn avx512($($arg: $ty),*) {
                body($($arg),*)
            }

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            fn avx2($($arg: $ty),*) {
                body($($arg),*)
            }

            match tier {
                // SAFETY: the guard checked at run time that this CPU has AVX-512F.
                #[cfg(target_arch = "x86_64")]
                $crate::arch::Tier::Avx512 if tier.is_supported() => unsafe { avx512($($arg),*) },
                // SAFETY: the guard checked at run time that this CPU has AVX2 and FMA.
                #[cfg(target_arch = "x86_64")]
                $crate::arch::Tier::Avx2 if tier.is_supported() => unsafe { avx2($($arg),*) },
                _ => body($($arg),*),
            }
        }
    };
}

mod activation;
pub mod math;
mod probability;
mod rows;
mod softmax;
mod vector;

pub use activation::*;
pub use probability::{product_logit, product_logit_derivatives};
pub use rows::*;
pub use softmax::*;
pub use vector::*;

/// Sum of a slice with eight interleaved partial sums: vectorises, and its error grows
/// with `len / 8` rather than `len`.
#[inline(always)]
pub(crate) fn sum8(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for l in 0..8 {
            acc[l] += c[l];
        }
    }
    let tail: f32 = chunks.remainder().iter().sum();
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// Dot product with eight interleaved partial sums (see [`sum8`]).
#[inline(always)]
pub(crate) fn dot8(x: &[f32], y: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut xc = x.chunks_exact(8);
    let mut yc = y.chunks_exact(8);
    for (a, b) in (&mut xc).zip(&mut yc) {
        for l in 0..8 {
            acc[l] += a[l] * b[l];
        }
    }
    let tail: f32 = xc
        .remainder()
        .iter()
        .zip(yc.remainder())
        .map(|(a, b)| a * b)
        .sum();
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}
