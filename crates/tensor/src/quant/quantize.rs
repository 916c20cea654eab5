//! The quantization formulas, written once: a scale from a largest magnitude, and one value
//! rounded to an integer step of that scale.
//!
//! ```text
//!   weights, per column j:   sb_j  = max_k |b_kj| / 63        qb_kj = round(b_kj / sb_j)       in [-63, 63]
//!   activations, per row i:  sa_i  = max_k |a_ik| / 127       qa_ik = round(a_ik / sa_i) + 128 in [1, 255]
//! ```
//!
//! `round` is round half to even (as ONNX's `QuantizeLinear`). A scale that comes out zero
//! (an all-zero row or column, or a largest magnitude so small that dividing it by 63 or
//! 127 underflows) is replaced by 1, which quantizes every element of the line to 0.

/// Largest weight step: 7 bits, so that `vpmaddubsw`'s pair sum `2 * 255 * 63 = 32130`
/// stays below `i16::MAX`.
pub(crate) const WEIGHT_LEVELS: f32 = 63.0;

/// Largest activation step from the zero point 128: the u8 values are `1..=255`.
pub(crate) const ACTIVATION_LEVELS: f32 = 127.0;

/// `1.5 * 2^23`: adding it to a float of magnitude below `2^22` leaves a number whose unit
/// in the last place is 1, so the addition rounds to an integer (half to even, the
/// default IEEE rounding), and subtracting it again is exact.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// `x` rounded to the nearest integer, half to even, for `|x| <= levels <= 127`: the same
/// value as [`f32::round_ties_even`], in two additions that vectorize on every target.
#[inline(always)]
pub(crate) fn round_even(x: f32) -> f32 {
    (x + ROUND_MAGIC) - ROUND_MAGIC
}

/// The scale of a line whose largest magnitude is `max` (finite, `>= 0`), for `levels` steps.
#[inline]
pub(crate) fn scale(max: f32, levels: f32) -> f32 {
    let s = max / levels;
    if s > 0.0 { s } else { 1.0 }
}

/// The integer step of `x` on `scale`, clamped to `[-levels, levels]` (clamping matters
/// only when the scale lost precision below f32's normal range). `x` is finite.
#[inline(always)]
pub(crate) fn step(x: f32, scale: f32, levels: f32) -> f32 {
    let v = x / scale;
    let v = if v > levels { levels } else { v };
    let v = if v < -levels { -levels } else { v };
    round_even(v)
}

/// The u8 code `step(x, sa, 127) + 128` of an activation, read from the bits of the
/// rounding sum: `v + 1.5 * 2^23` for an integer `|v| <= 127` has the bits
/// `0x4B40_0000 + v`, whose low byte is `v mod 256`; adding 128 (mod 256) gives `v + 128`.
/// Integer operations only after the rounding, so the loop vectorizes on every target.
#[inline(always)]
pub(crate) fn activation_code(x: f32, sa: f32) -> u8 {
    let v = x / sa;
    let v = if v > ACTIVATION_LEVELS {
        ACTIVATION_LEVELS
    } else {
        v
    };
    let v = if v < -ACTIVATION_LEVELS {
        -ACTIVATION_LEVELS
    } else {
        v
    };
    ((v + ROUND_MAGIC).to_bits() as u8).wrapping_add(128)
}

/// The largest magnitude of `row`, or the index of its first non-finite element.
///
/// Taken on the bits: for a float with its sign cleared, IEEE order is integer order, and
/// the infinities and NaNs are exactly the values from `0x7F80_0000` up. One integer
/// maximum then finds both the largest magnitude and any non-finite element, in a loop
/// that vectorizes (a flag per element did not: the loop ran scalar).
#[inline(always)]
pub(crate) fn max_abs(row: &[f32]) -> Result<f32, usize> {
    max_abs_of(row.iter().copied())
}

/// [`max_abs`] of a line given as its elements in order (a row of a view whose rows are
/// not contiguous): the same bit maximum, the same first non-finite position.
#[inline(always)]
pub(crate) fn max_abs_of(line: impl Iterator<Item = f32> + Clone) -> Result<f32, usize> {
    let mut max = 0u32;
    for x in line.clone() {
        max = max.max(x.to_bits() & 0x7FFF_FFFF);
    }
    if max < 0x7F80_0000 {
        Ok(f32::from_bits(max))
    } else {
        Err(line.take_while(|x| x.is_finite()).count())
    }
}

/// Quantizes one contiguous row of activations into `out` (`out.len() >= row.len()`; the
/// rest of `out` is set to the zero point 128) and returns its scale, or the index of the
/// first non-finite element. `codes(row, sa, out)` may write the codes of a prefix of the
/// row faster and returns its length; the rest are written one by one.
#[inline(always)]
pub(crate) fn quantize_row(
    row: &[f32],
    out: &mut [u8],
    codes: impl Fn(&[f32], f32, &mut [u8]) -> usize,
) -> Result<f32, usize> {
    let sa = scale(max_abs(row)?, ACTIVATION_LEVELS);
    let (body, pad) = out.split_at_mut(row.len());
    let done = codes(row, sa, body);
    for (q, &x) in body[done..].iter_mut().zip(&row[done..]) {
        *q = activation_code(x, sa);
    }
    pad.fill(128);
    Ok(sa)
}

/// Quantizes `m` contiguous rows (row `i` at `a[i * lda..][..k]`) into `out` (`ld` bytes per
/// row) and `scales`, on `tier`'s instructions (the same bits on every tier: division and
/// rounding are correctly rounded IEEE operations). Returns the largest scale, or the
/// position of the first non-finite element.
#[allow(clippy::too_many_arguments)]
pub(crate) fn quantize_rows(
    tier: crate::arch::Tier,
    a: &[f32],
    lda: usize,
    k: usize,
    out: &mut [u8],
    ld: usize,
    scales: &mut [f32],
) -> Result<f32, (usize, usize)> {
    match tier {
        #[cfg(target_arch = "x86_64")]
        crate::arch::Tier::Avx2 | crate::arch::Tier::Avx512 => {
            // SAFETY: the caller passes a tier the CPU supports (checked by `require`), and
            // both x86 tiers include AVX2.
            unsafe { quantize_rows_avx2(a, lda, k, out, ld, scales) }
        }
        _ => quantize_rows_generic(a, lda, k, out, ld, scales, |_, _, _| 0),
    }
}

/// [`quantize_rows`] on AVX2: the largest magnitude as in the generic code (compiled under
/// AVX2), the codes 32 at a time by [`codes_avx2`].
///
/// # Safety
/// The CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_rows_avx2(
    a: &[f32],
    lda: usize,
    k: usize,
    out: &mut [u8],
    ld: usize,
    scales: &mut [f32],
) -> Result<f32, (usize, usize)> {
    quantize_rows_generic(a, lda, k, out, ld, scales, |row, sa, out| {
        codes_avx2(row, sa, out)
    })
}

/// The codes of the first `32 * (row.len() / 32)` activations of `row` on scale `sa`, into
/// `out`; returns how many it wrote. The same bytes as [`activation_code`]: the quotient
/// `x / sa` rounded half to even by `vcvtps2dq` (the default rounding mode), narrowed to
/// bytes by the saturating packs, clamped to `[-127, 127]` and offset by 128.
///
/// The narrowing is what costs: the generic loop, vectorized by the compiler 8 floats at a
/// time, spent most of its samples in the shuffles and 8-byte stores that narrow each
/// register of codes (`perf annotate` of `resflow bench score --precision int8`); here 32
/// codes take two 32-to-16-bit packs, one 16-to-8-bit pack, one lane fix and one store.
/// Callable from code compiled with AVX2 (`quantize_rows_avx2`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn codes_avx2(row: &[f32], sa: f32, out: &mut [u8]) -> usize {
    use std::arch::x86_64::{
        _mm256_add_epi8, _mm256_cvtps_epi32, _mm256_div_ps, _mm256_loadu_ps, _mm256_max_epi8,
        _mm256_packs_epi16, _mm256_packs_epi32, _mm256_permutevar8x32_epi32, _mm256_set1_epi8,
        _mm256_set1_ps, _mm256_setr_epi32, _mm256_storeu_si256,
    };
    let n = row.len().min(out.len()) / 32 * 32;
    let scale = _mm256_set1_ps(sa);
    let low = _mm256_set1_epi8(-(ACTIVATION_LEVELS as i8));
    let zero_point = _mm256_set1_epi8(-128);
    // After the two in-lane packs the 4-byte groups are in the order 0 2 4 6 1 3 5 7.
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (src, dst) in row[..n].chunks_exact(32).zip(out[..n].chunks_exact_mut(32)) {
        // SAFETY: `src` holds 32 floats and `dst` 32 bytes (exact chunks), read and
        // written unaligned.
        unsafe {
            let v = |j: usize| {
                _mm256_cvtps_epi32(_mm256_div_ps(
                    _mm256_loadu_ps(src.as_ptr().add(8 * j)),
                    scale,
                ))
            };
            let lo = _mm256_packs_epi32(v(0), v(1));
            let hi = _mm256_packs_epi32(v(2), v(3));
            let bytes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(lo, hi), order);
            let codes = _mm256_add_epi8(_mm256_max_epi8(bytes, low), zero_point);
            _mm256_storeu_si256(dst.as_mut_ptr().cast(), codes);
        }
    }
    n
}

/// [`quantize_rows`] with `codes` as in [`quantize_row`].
#[inline(always)]
fn quantize_rows_generic(
    a: &[f32],
    lda: usize,
    k: usize,
    out: &mut [u8],
    ld: usize,
    scales: &mut [f32],
    codes: impl Fn(&[f32], f32, &mut [u8]) -> usize + Copy,
) -> Result<f32, (usize, usize)> {
    let mut max_scale = 0.0f32;
    for (i, sa) in scales.iter_mut().enumerate() {
        let row = if k == 0 {
            &[][..]
        } else {
            &a[i * lda..i * lda + k]
        };
        let s = quantize_row(row, &mut out[i * ld..(i + 1) * ld], codes).map_err(|j| (i, j))?;
        *sa = s;
        max_scale = max_scale.max(s);
    }
    Ok(max_scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_even_is_round_ties_even_on_the_quantization_range() {
        // Every float in [-128, 128] at a step of 1/1024 (which holds every half), and
        // the neighbours of every half.
        let mut x = -128.0f32;
        while x <= 128.0 {
            assert_eq!(round_even(x), x.round_ties_even(), "{x}");
            for y in [x.next_up(), x.next_down()] {
                assert_eq!(round_even(y), y.round_ties_even(), "{y}");
            }
            x += 1.0 / 1024.0;
        }
        assert_eq!(round_even(0.5), 0.0);
        assert_eq!(round_even(1.5), 2.0);
        assert_eq!(round_even(-2.5), -2.0);
        assert_eq!(round_even(0.499_999_97), 0.0);
    }

    #[test]
    fn activation_codes_are_the_steps_plus_128() {
        let sa = 0.37f32;
        let mut x = -60.0f32;
        while x <= 60.0 {
            let want = (step(x, sa, ACTIVATION_LEVELS) + 128.0) as u8;
            assert_eq!(activation_code(x, sa), want, "{x}");
            x += 0.001;
        }
        assert_eq!(activation_code(-1e30, 1.0), 1);
        assert_eq!(activation_code(1e30, 1.0), 255);
        assert_eq!(activation_code(0.0, 1.0), 128);
        assert_eq!(activation_code(-0.0, 1.0), 128);
    }

    #[test]
    fn scales_of_zero_and_tiny_lines_are_one() {
        assert_eq!(scale(0.0, WEIGHT_LEVELS), 1.0);
        assert_eq!(scale(f32::from_bits(1), WEIGHT_LEVELS), 1.0);
        assert_eq!(scale(127.0, ACTIVATION_LEVELS), 1.0);
    }

    #[test]
    fn max_abs_finds_the_first_non_finite() {
        assert_eq!(max_abs(&[1.0, -3.0, 2.0]), Ok(3.0));
        assert_eq!(max_abs(&[]), Ok(0.0));
        assert_eq!(max_abs(&[1.0, f32::NAN, f32::INFINITY]), Err(1));
        assert_eq!(max_abs(&[f32::NEG_INFINITY]), Err(0));
        // Through strides: every other element of a buffer.
        let buf = [1.0, f32::NAN, -3.0, 9.0, 2.0, f32::INFINITY, f32::NAN];
        assert_eq!(max_abs_of(buf.iter().step_by(2).copied().take(3)), Ok(3.0));
        assert_eq!(max_abs_of(buf.iter().skip(1).step_by(2).copied()), Err(0));
        assert_eq!(max_abs_of(buf.iter().step_by(2).copied()), Err(3));
    }
}
