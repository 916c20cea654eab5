//! One SIMD register of f32 lanes: the handful of operations every GEMM and GEMV kernel is
//! written in.
//!
//! The kernels in `kernel.rs` and `gemv.rs` are generic over [`F32Vector`], so each tier
//! differs only in its register type and its tile sizes:
//!
//! ```text
//!   tier       register        lanes   multiply-add
//!   portable   Lanes4 (Rust)   4       a * b + c, rounded twice (the compiler picks SSE2)
//!   avx2       __m256          8       vfmadd (one rounding)
//!   avx512     __m512          16      vfmadd (one rounding)
//! ```
//!
//! The methods are `#[inline(always)]` and carry no `#[target_feature]` themselves: they are
//! inlined into a tier's entry point (`avx2.rs`, `avx512.rs`), which does, so the intrinsics
//! compile to single instructions there. Called anywhere else they are only correct, not fast.

/// A register of `LANES` f32 values.
///
/// # Safety
/// Every method is `unsafe`: the SIMD implementations require the CPU to support their
/// instruction set, and the pointer methods require the pointed-to lanes to be valid.
pub(crate) trait F32Vector: Copy {
    /// Floats per register.
    const LANES: usize;

    /// All lanes zero.
    unsafe fn zero() -> Self;
    /// All lanes `x`.
    unsafe fn splat(x: f32) -> Self;
    /// All lanes `*p` (one load).
    ///
    /// # Safety
    /// `p` is valid for one read.
    unsafe fn broadcast(p: *const f32) -> Self;
    /// Lanes `p[0..LANES]`, unaligned.
    ///
    /// # Safety
    /// `p` is valid for `LANES` reads.
    unsafe fn load(p: *const f32) -> Self;
    /// Lanes `p[0..n]`, the rest zero, for `n < LANES`.
    ///
    /// # Safety
    /// `p` is valid for `n` reads.
    unsafe fn load_partial(p: *const f32, n: usize) -> Self;
    /// Writes all lanes to `p[0..LANES]`, unaligned.
    ///
    /// # Safety
    /// `p` is valid for `LANES` writes.
    unsafe fn store(self, p: *mut f32);
    /// Writes lanes `0..n` to `p[0..n]`, for `n < LANES`.
    ///
    /// # Safety
    /// `p` is valid for `n` writes.
    unsafe fn store_partial(self, p: *mut f32, n: usize);
    /// `a * b + c` lane by lane.
    unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self;
    /// `a * b` lane by lane.
    unsafe fn mul(a: Self, b: Self) -> Self;
    /// Sum of the lanes.
    unsafe fn sum(self) -> f32;
    /// The lane sums of eight registers, `[acc[0].sum(), .., acc[7].sum()]` up to the order
    /// of the additions: one transposing reduction whose shuffles serve all eight, where
    /// eight [`F32Vector::sum`]s each pay a whole reduction for one float.
    unsafe fn sum8(acc: [Self; 8]) -> [f32; 8];
}

/// Through a stack buffer: the partial loads of the tiers that have no masked load.
macro_rules! load_partial_via_buffer {
    ($lanes:expr) => {
        #[inline(always)]
        unsafe fn load_partial(p: *const f32, n: usize) -> Self {
            let mut buf = [0.0f32; $lanes];
            // SAFETY: the caller guarantees n < LANES readable floats at p; buf has LANES.
            unsafe {
                std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n);
                Self::load(buf.as_ptr())
            }
        }
    };
}

/// Through a stack buffer: the partial stores of the tiers that have no masks (only the
/// tail of each column in the `M = 1` GEMV stores one).
macro_rules! store_partial_via_buffer {
    ($lanes:expr) => {
        #[inline(always)]
        unsafe fn store_partial(self, p: *mut f32, n: usize) {
            let mut buf = [0.0f32; $lanes];
            // SAFETY: buf has LANES floats; the caller guarantees n < LANES writable at p.
            unsafe {
                self.store(buf.as_mut_ptr());
                std::ptr::copy_nonoverlapping(buf.as_ptr(), p, n);
            }
        }
    };
}

/// The portable register: four floats in plain Rust, which the compiler keeps in one SSE
/// register (or NEON on aarch64); on x86-64 the multiply-add is written with the baseline
/// SSE instructions (see [`Lanes4::mul_add`]).
#[derive(Clone, Copy)]
#[repr(C, align(16))]
pub(crate) struct Lanes4([f32; 4]);

impl F32Vector for Lanes4 {
    const LANES: usize = 4;

    #[inline(always)]
    unsafe fn zero() -> Self {
        Lanes4([0.0; 4])
    }

    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        Lanes4([x; 4])
    }

    #[inline(always)]
    unsafe fn broadcast(p: *const f32) -> Self {
        // SAFETY: the caller guarantees one readable float.
        Lanes4([unsafe { *p }; 4])
    }

    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller guarantees 4 readable floats.
        Lanes4(unsafe { p.cast::<[f32; 4]>().read_unaligned() })
    }

    load_partial_via_buffer!(4);
    store_partial_via_buffer!(4);

    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller guarantees 4 writable floats.
        unsafe { p.cast::<[f32; 4]>().write_unaligned(self.0) }
    }

    /// On x86-64 as one `mulps` and one `addps` (SSE is part of the baseline), the same two
    /// roundings as lane by lane. Written lane by lane, the compiler regrouped the lanes of
    /// the eight-row GEMV kernel across rows, with four shuffles per multiply-add: the
    /// portable 1024 x 1 x 64 NN ran at 13.8 GFLOP/s (16.3 with the four-row kernel of
    /// before) against 30.9 with SSE, and the portable GEMM's blocked shapes 0.5-3.4
    /// GFLOP/s ahead of before, best of three runs each (Zen 4, 2026-12-04).
    #[inline(always)]
    unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self {
        #[cfg(target_arch = "x86_64")]
        let r = {
            use std::arch::x86_64::{__m128, _mm_add_ps, _mm_mul_ps};
            let v = |x: Self| -> __m128 {
                // SAFETY: both are 16 bytes holding four floats in lane order.
                unsafe { std::mem::transmute::<[f32; 4], __m128>(x.0) }
            };
            // SAFETY: SSE is part of the x86-64 baseline; the transmute is as above.
            unsafe {
                let r = _mm_add_ps(_mm_mul_ps(v(a), v(b)), v(c));
                Lanes4(std::mem::transmute::<__m128, [f32; 4]>(r))
            }
        };
        #[cfg(not(target_arch = "x86_64"))]
        let r = Lanes4(std::array::from_fn(|l| a.0[l] * b.0[l] + c.0[l]));
        r
    }

    #[inline(always)]
    unsafe fn mul(a: Self, b: Self) -> Self {
        Lanes4(std::array::from_fn(|l| a.0[l] * b.0[l]))
    }

    #[inline(always)]
    unsafe fn sum(self) -> f32 {
        (self.0[0] + self.0[2]) + (self.0[1] + self.0[3])
    }

    #[inline(always)]
    unsafe fn sum8(acc: [Self; 8]) -> [f32; 8] {
        // SAFETY: sum needs no CPU feature.
        std::array::from_fn(|r| unsafe { acc[r].sum() })
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::F32Vector;

    // Note for every unsafe block below: the trait's contract makes the caller
    // guarantee the CPU feature (AVX2 + FMA, or AVX-512F) and the validity of the pointers.

    impl F32Vector for __m256 {
        const LANES: usize = 8;

        #[inline(always)]
        unsafe fn zero() -> Self {
            // SAFETY: see the note at the top of this module.
            unsafe { _mm256_setzero_ps() }
        }

        #[inline(always)]
        unsafe fn splat(x: f32) -> Self {
            // SAFETY: see the note at the top of this module.
            unsafe { _mm256_set1_ps(x) }
        }

        #[inline(always)]
        unsafe fn broadcast(p: *const f32) -> Self {
            // SAFETY: see the note at the top of this module.
            unsafe { _mm256_broadcast_ss(&*p) }
        }

        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            // SAFETY: see the note at the top of this module.
            unsafe { _mm256_loadu_ps(p) }
        }

        #[inline(always)]
        unsafe fn load_partial(p: *const f32, n: usize) -> Self {
            // A masked load (lane l enabled when l < n; disabled lanes read as zero and
            // never fault), not a copy through a buffer: the copy's call to memcpy made the
            // GEMV kernel store its eight accumulators to the stack and reload them in
            // every block, whether or not K had a tail.
            // SAFETY: see the note at the top of this module; the mask enables lanes < n only.
            unsafe {
                let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
                let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), lanes);
                _mm256_maskload_ps(p, mask)
            }
        }

        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            // SAFETY: see the note at the top of this module.
            unsafe { _mm256_storeu_ps(p, self) }
        }

        store_partial_via_buffer!(8);

        #[inline(always)]
        unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self {
            // SAFETY: see the note at the top of this module.
            unsafe { _mm256_fmadd_ps(a, b, c) }
        }

        #[inline(always)]
        unsafe fn mul(a: Self, b: Self) -> Self {
            // SAFETY: see the note at the top of this module.
            unsafe { _mm256_mul_ps(a, b) }
        }

        #[inline(always)]
        unsafe fn sum(self) -> f32 {
            // SAFETY: see the note at the top of this module.
            unsafe {
                let s = _mm_add_ps(_mm256_castps256_ps128(self), _mm256_extractf128_ps(self, 1));
                let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
                let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
                _mm_cvtss_f32(s)
            }
        }

        #[inline(always)]
        unsafe fn sum8(a: [Self; 8]) -> [f32; 8] {
            // Rows r of a, lanes l: after the first hadds each 128-bit half holds two rows'
            // pair sums, after the second four rows' sums over that half; adding the halves
            // (lanes 0..4 and 4..8 of each row) leaves row r in lane r.
            //   t0 = [r0 01, r0 23, r1 01, r1 23 | r0 45, r0 67, r1 45, r1 67]
            //   u0 = [r0 0..4, r1, r2, r3        | r0 4..8, r1, r2, r3]
            // SAFETY: see the note at the top of this module.
            unsafe {
                let t0 = _mm256_hadd_ps(a[0], a[1]);
                let t1 = _mm256_hadd_ps(a[2], a[3]);
                let t2 = _mm256_hadd_ps(a[4], a[5]);
                let t3 = _mm256_hadd_ps(a[6], a[7]);
                let u0 = _mm256_hadd_ps(t0, t1);
                let u1 = _mm256_hadd_ps(t2, t3);
                let lo = _mm256_permute2f128_ps(u0, u1, 0x20);
                let hi = _mm256_permute2f128_ps(u0, u1, 0x31);
                std::mem::transmute::<__m256, [f32; 8]>(_mm256_add_ps(lo, hi))
            }
        }
    }

    impl F32Vector for __m512 {
        const LANES: usize = 16;

        #[inline(always)]
        unsafe fn zero() -> Self {
            // SAFETY: see the note at the top of this module.
            unsafe { _mm512_setzero_ps() }
        }

        #[inline(always)]
        unsafe fn splat(x: f32) -> Self {
            // SAFETY: see the note at the top of this module.
            unsafe { _mm512_set1_ps(x) }
        }

        #[inline(always)]
        unsafe fn broadcast(p: *const f32) -> Self {
            // SAFETY: see the note at the top of this module.
            unsafe { _mm512_set1_ps(*p) }
        }

        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            // SAFETY: see the note at the top of this module.
            unsafe { _mm512_loadu_ps(p) }
        }

        #[inline(always)]
        unsafe fn load_partial(p: *const f32, n: usize) -> Self {
            // SAFETY: see the note at the top of this module; the mask enables lanes < n only.
            unsafe { _mm512_maskz_loadu_ps(((1u32 << n) - 1) as __mmask16, p) }
        }

        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            // SAFETY: see the note at the top of this module.
            unsafe { _mm512_storeu_ps(p, self) }
        }

        #[inline(always)]
        unsafe fn store_partial(self, p: *mut f32, n: usize) {
            // SAFETY: see the note at the top of this module; the mask enables lanes < n only.
            unsafe { _mm512_mask_storeu_ps(p, ((1u32 << n) - 1) as __mmask16, self) }
        }

        #[inline(always)]
        unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self {
            // SAFETY: see the note at the top of this module.
            unsafe { _mm512_fmadd_ps(a, b, c) }
        }

        #[inline(always)]
        unsafe fn mul(a: Self, b: Self) -> Self {
            // SAFETY: see the note at the top of this module.
            unsafe { _mm512_mul_ps(a, b) }
        }

        #[inline(always)]
        unsafe fn sum(self) -> f32 {
            // SAFETY: see the note at the top of this module.
            unsafe { _mm512_reduce_add_ps(self) }
        }

        #[inline(always)]
        unsafe fn sum8(a: [Self; 8]) -> [f32; 8] {
            // Each register folded to 256 bits (lanes 0..8 plus 8..16), then the AVX
            // reduction; AVX-512F implies AVX2.
            // SAFETY: see the note at the top of this module.
            unsafe {
                let mut half = [_mm256_setzero_ps(); 8];
                for (h, &v) in half.iter_mut().zip(&a) {
                    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
                    *h = _mm256_add_ps(_mm512_castps512_ps256(v), hi);
                }
                <__m256 as F32Vector>::sum8(half)
            }
        }
    }
}
