//! Named tolerances: the error classes tests compare against, in one place.
//!
//! A literal epsilon in an assert hides what was assumed; these names say it.

/// Bit-for-bit equality: operations that only move or select values.
pub const EXACT: f32 = 0.0;

/// Relative error of one correctly-rounded f32 operation chain of a few steps
/// (a SIMD kernel against its scalar twin with the same formula).
pub const CLOSE: f32 = 1e-6;

/// Relative error of an approximation (polynomial `exp`, different summation orders over
/// hundreds of terms).
pub const APPROXIMATE: f32 = 1e-5;

/// Agreement between two implementations of a whole model (different but valid orders of
/// every reduction through several layers).
pub const MODEL: f32 = 1e-4;

/// Agreement of two implementations of a model's probabilities (fused and folded against
/// plain, one op at a time): a few hundred reordered multiply-adds before a sigmoid, which
/// flattens logit differences.
pub const PROBABILITY: f32 = 2e-6;

/// An f32 forward or backward pass against a float64 reference of the same equations: a
/// few hundred roundings.
pub const F64_REFERENCE: f32 = 2e-5;

/// Unit roundoff of f32 (`2^-24`).
pub const UNIT_ROUNDOFF: f64 = 5.960_464_477_539_063e-8;

/// The classical bound on the error of a length-`k` f32 dot product, relative to
/// `sum |a_i b_i|`: `gamma_k = k u / (1 - k u)`, plus one rounding for the final scaling,
/// doubled for slack (FMA and non-FMA paths round differently).
pub fn dot_bound(k: usize) -> f64 {
    let ku = (k as f64 + 2.0) * UNIT_ROUNDOFF;
    2.0 * ku / (1.0 - ku)
}
