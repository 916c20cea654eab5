//! Scalar `exp` and `log` written so the compiler can vectorise them.
//!
//! `f32::exp` calls into libm one element at a time. These versions use only
//! multiplies, adds, integer bit tricks and selects, so a loop over a slice becomes SIMD
//! code at whatever width the calling function is compiled for. Both follow the classic
//! Cephes construction: reduce the argument, evaluate a short polynomial, rebuild the
//! exponent with integer arithmetic. Accuracy is about 1 ulp over the whole range
//! (checked against f64 in `tests/ops.rs`).

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in a part with few mantissa bits (exact products) and the remainder.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Adding then subtracting 1.5 * 2^23 rounds an f32 to the nearest integer.
const ROUND: f32 = 12_582_912.0;

/// `2^n` for an integer `n` in `[-126, 127]`, built from its exponent bits.
#[inline(always)]
fn pow2i(n: i32) -> f32 {
    f32::from_bits(((n + 127) as u32) << 23)
}

/// `e^x`, correct to about 1 ulp; `0` below `-103.97`, `inf` above `88.72`, NaN stays NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Clamp so both halves of the exponent below stay normal.
    let xc = x.clamp(-104.0, 88.8);
    // x = n ln2 + r with |r| <= ln2 / 2. Adding ROUND rounds x log2(e) to an integer, which
    // then sits in the low mantissa bits of `t`: subtracting the bits of ROUND reads it
    // out as an i32 without a float-to-int conversion (those do not vectorise well).
    let t = xc * LOG2E + ROUND;
    let n = t - ROUND;
    let ni = t.to_bits() as i32 - ROUND.to_bits() as i32;
    let r = xc - n * LN2_HI - n * LN2_LO;
    // e^r by its minimax polynomial (Cephes expf).
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    // 2^n as 2^(n/2) * 2^(n - n/2): each factor stays a normal float even when the
    // result is subnormal (n down to -150).
    let half = ni >> 1;
    let y = er * pow2i(half) * pow2i(ni - half);
    // NaN fails both tests and has propagated through the arithmetic above.
    let y = if x > 88.72 { f32::INFINITY } else { y };
    if x < -103.97 { 0.0 } else { y }
}

/// `ln x` for a positive, normal, finite `x`, correct to about 1 ulp.
#[inline(always)]
pub fn ln(x: f32) -> f32 {
    // x = m 2^e with m in [sqrt(1/2), sqrt(2)).
    let bits = x.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 126;
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000); // [0.5, 1)
    let small = m < std::f32::consts::FRAC_1_SQRT_2;
    e -= small as i32;
    m = if small { m + m - 1.0 } else { m - 1.0 };
    let ef = e as f32;
    let z = m * m;
    let mut p = 7.037_683_6e-2_f32;
    p = p * m - 1.151_461e-1;
    p = p * m + 1.167_699_9e-1;
    p = p * m - 1.242_014_1e-1;
    p = p * m + 1.424_932_3e-1;
    p = p * m - 1.666_805_8e-1;
    p = p * m + 2.000_071_4e-1;
    p = p * m - 2.499_999_4e-1;
    p = p * m + 3.333_333e-1;
    let y = p * m * z + ef * LN2_LO - 0.5 * z;
    m + y + ef * LN2_HI
}

/// `ln(1 + z)` for `z >= 0`, accurate also when `1 + z` rounds to 1 (Goldberg's trick:
/// the rounding error of `u = 1 + z` cancels in `ln(u) * z / (u - 1)`).
#[inline(always)]
pub fn ln_1p(z: f32) -> f32 {
    let u = 1.0 + z;
    let d = u - 1.0;
    if d == 0.0 { z } else { ln(u) * (z / d) }
}
