//! Int8 GEMM for serving: `C ~ A B` with A quantized per row at run time and B quantized
//! per column once (dynamic quantization, as ONNX Runtime's and PyTorch's dynamic int8).
//!
//! The math (docs/tensor.md works it through):
//!
//! ```text
//!   weights B (K x N), per column j:   sb_j = max_k |b_kj| / 63,   qb_kj = round(b_kj / sb_j)        in [-63, 63]
//!   activations A (M x K), per row i:  sa_i = max_k |a_ik| / 127,  qa_ik = round(a_ik / sa_i) + 128  in [1, 255]
//!   acc_ij = sum_k (qa_ik - 128) qb_kj               exact in i32 (K <= MAX_K)
//!   c_ij   = (acc_ij as f32) * (sa_i * sb_j)         written over C
//! ```
//!
//! `round` is half to even; a scale that would be zero (an all-zero line) is 1. The weights
//! take 7 bits, not 8, so that the AVX2 kernel's `vpmaddubsw`, which adds two u8 x i8
//! products into a saturating i16, never saturates: `2 * 255 * 63 = 32130 < 32767`. The
//! kernel computes `sum_k qa_ik qb_kj - 128 sum_k qb_kj`, the second sum precomputed per
//! column when B is packed.
//!
//! - [`PackedQ8`]: B quantized and packed once, for a [`Tier`];
//! - [`QuantRows`]: a workspace holding A quantized, reused call after call;
//! - [`gemm_q8`]: the product, on the tier B was packed for.
//!
//! Every tier computes the same integers and the same f32 expression, so the result is the
//! same bit for bit on every tier. Non-finite inputs are refused with an error.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod kernel;
mod packing;
mod peak;
mod quantize;

use crate::arch::Tier;
use crate::error::TensorError;
use crate::matrix::{MatMut, MatRef};

use packing::Packed;
pub use peak::{int8_peak_loop, int8_peak_ops};

/// The int8 micro-kernel a tier runs on this CPU: the one choice `gemm_q8`, the floor loop
/// ([`int8_peak_loop`]) and the benchmarks' labels all follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Int8Kernel {
    /// Plain integer loops (`kernel.rs`), the reference twin.
    Portable,
    /// `vpmaddubsw` + `vpmaddwd` + `vpaddd` on ymm (`avx2.rs`): the AVX2 tier, and the
    /// AVX-512 tier on a CPU without VNNI.
    Avx2,
    /// `vpdpbusd` on zmm (`avx512.rs`): the AVX-512 tier on a CPU with AVX-512 VNNI.
    Avx512Vnni,
}

impl Int8Kernel {
    /// The kernel `tier` runs on this CPU ([`Tier::has_vnni`] decides the AVX-512 tier's).
    pub fn for_tier(tier: Tier) -> Int8Kernel {
        match tier {
            Tier::Portable => Int8Kernel::Portable,
            Tier::Avx512 if tier.has_vnni() => Int8Kernel::Avx512Vnni,
            Tier::Avx2 | Tier::Avx512 => Int8Kernel::Avx2,
        }
    }

    /// The kernel and its instructions, as `resflow info` and the benchmarks print them.
    pub fn name(self) -> &'static str {
        match self {
            Int8Kernel::Portable => "portable",
            Int8Kernel::Avx2 => "avx2 (vpmaddubsw + vpmaddwd + vpaddd)",
            Int8Kernel::Avx512Vnni => "avx512 vnni (vpdpbusd)",
        }
    }
}

/// The largest K the int8 GEMM takes: `sum_k 255 * 63` must fit in an i32
/// (`2^31 / 16065 = 133_674`).
pub const MAX_K: usize = 133_000;

/// Refuses a K above [`MAX_K`], before anything is allocated for it.
fn check_k(op: &'static str, k: usize) -> Result<(), TensorError> {
    if k > MAX_K {
        return Err(TensorError::Shape {
            op,
            detail: format!(
                "K = {k} exceeds {MAX_K}, the longest sum of u8 x i8 products an i32 holds"
            ),
        });
    }
    Ok(())
}

/// B quantized per column and packed for the int8 micro-kernel.
#[derive(Debug, Clone)]
pub struct PackedQ8 {
    tier: Tier,
    rows: usize,
    cols: usize,
    packed: Packed,
    /// The largest column scale (for the range check of [`gemm_q8`]).
    max_scale: f32,
}

impl PackedQ8 {
    /// Quantizes `b` (K x N, any strides) per column and packs it for `tier`'s kernel.
    ///
    /// Errors when the CPU cannot run `tier`, K exceeds [`MAX_K`], an element is not
    /// finite, or the memory cannot be allocated.
    pub fn new(tier: Tier, b: MatRef<'_>) -> Result<Self, TensorError> {
        tier.require()?;
        check_k("PackedQ8::new", b.rows())?;
        let packed = packing::pack(b)?;
        let max_scale = packed.scales[..b.cols()]
            .iter()
            .fold(0.0f32, |m, &s| m.max(s));
        Ok(Self {
            tier,
            rows: b.rows(),
            cols: b.cols(),
            packed,
            max_scale,
        })
    }

    /// Rows (K) of B.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns (N) of B.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The tier it was packed for, which [`gemm_q8`] runs on.
    pub fn tier(&self) -> Tier {
        self.tier
    }

    /// Heap bytes of the packed weights, their scales and column sums (for memory budgets).
    pub fn bytes(&self) -> usize {
        self.packed.bytes()
    }

    /// The quantized weight `qb[k, j]`, in `[-63, 63]`.
    ///
    /// # Panics
    /// If `(k, j)` is outside B.
    pub fn quantized(&self, k: usize, j: usize) -> i8 {
        assert!(
            k < self.rows && j < self.cols,
            "({k}, {j}) outside {}x{}",
            self.rows,
            self.cols
        );
        self.packed.get(k, j)
    }

    /// The scale `sb_j` of column `j`.
    ///
    /// # Panics
    /// If `j` is not a column of B.
    pub fn scale(&self, j: usize) -> f32 {
        assert!(j < self.cols, "column {j} of {}", self.cols);
        self.packed.scales[j]
    }
}

/// Rows of A quantized to u8 with one scale per row: a reusable workspace (grows, never
/// shrinks: no allocation once warm).
///
/// Row `i` is stored as `K` bytes padded with the zero point 128 to a multiple of 4 (the
/// kernel reads 4 k at a time).
#[derive(Debug, Default, Clone)]
pub struct QuantRows {
    q: Vec<u8>,
    scales: Vec<f32>,
    rows: usize,
    cols: usize,
    /// Bytes per stored row: `cols` rounded up to a multiple of 4.
    ld: usize,
    /// The largest row scale (for the range check of [`gemm_q8`]).
    max_scale: f32,
}

impl QuantRows {
    /// An empty workspace; it grows on first use.
    pub fn new() -> Self {
        Self::default()
    }

    /// Quantizes `a` (M x K, any strides) into this workspace, replacing what it held.
    ///
    /// Runs on the process-wide tier ([`Tier::active`]); every tier gives the same bytes.
    /// Errors when K exceeds [`MAX_K`], an element is not finite, or the memory cannot be
    /// allocated; the workspace then holds an empty matrix.
    pub fn quantize(&mut self, a: MatRef<'_>) -> Result<(), TensorError> {
        self.quantize_with(Tier::active(), a)
    }

    /// [`QuantRows::quantize`] on an explicit `tier` (errors when the CPU cannot run it).
    pub fn quantize_with(&mut self, tier: Tier, a: MatRef<'_>) -> Result<(), TensorError> {
        const OP: &str = "QuantRows::quantize";
        tier.require()?;
        let (m, k) = a.shape();
        (self.rows, self.cols, self.ld, self.max_scale) = (0, 0, 0, 0.0);
        check_k(OP, k)?;
        let ld = k.div_ceil(4) * 4;
        let len = m.checked_mul(ld).ok_or(TensorError::Alloc {
            what: OP,
            bytes: usize::MAX,
        })?;
        grow(&mut self.q, len, OP)?;
        grow(&mut self.scales, m, OP)?;
        let not_finite = |row: usize, col: usize| TensorError::NonFinite {
            op: OP,
            what: "activation",
            row,
            col,
        };
        let max_scale = if a.is_row_major() || k == 0 {
            let lda = if m > 1 { a.row_stride() } else { k };
            quantize::quantize_rows(tier, a.data(), lda, k, &mut self.q, ld, &mut self.scales)
                .map_err(|(i, j)| not_finite(i, j))?
        } else {
            let mut max_scale = 0.0f32;
            for (i, sa) in self.scales.iter_mut().enumerate() {
                let out = &mut self.q[i * ld..(i + 1) * ld];
                *sa = quantize_strided(a, i, out).map_err(|j| not_finite(i, j))?;
                max_scale = max_scale.max(*sa);
            }
            max_scale
        };
        (self.rows, self.cols, self.ld, self.max_scale) = (m, k, ld, max_scale);
        Ok(())
    }

    /// Rows (M) held.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns (K) held.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Row `i` quantized: K bytes, each `qa_ik` in `[1, 255]` (128 is zero).
    ///
    /// # Panics
    /// If `i` is not a row held.
    pub fn row(&self, i: usize) -> &[u8] {
        assert!(i < self.rows, "row {i} of {}", self.rows);
        &self.q[i * self.ld..i * self.ld + self.cols]
    }

    /// The scale `sa_i` of row `i`.
    ///
    /// # Panics
    /// If `i` is not a row held.
    pub fn scale(&self, i: usize) -> f32 {
        assert!(i < self.rows, "row {i} of {}", self.rows);
        self.scales[i]
    }
}

/// Makes `v` exactly `len` long, keeping its capacity when it shrinks and reserving
/// fallibly when it grows.
fn grow<T: Clone + Default>(
    v: &mut Vec<T>,
    len: usize,
    what: &'static str,
) -> Result<(), TensorError> {
    if len > v.len() {
        v.try_reserve(len - v.len())
            .map_err(|_| TensorError::Alloc {
                what,
                bytes: len.saturating_mul(std::mem::size_of::<T>()),
            })?;
    }
    v.resize(len, T::default());
    Ok(())
}

/// [`quantize::quantize_row`] for row `i` of a view whose rows are not contiguous (a
/// transposed operand; the plan never passes one): the same formulas ([`quantize::max_abs_of`],
/// [`quantize::activation_code`]) read through the strides, so the same bytes. It stays
/// apart from the contiguous path because that one's loops are what vectorize, and copying
/// the row out first would need a buffer of K floats, allocated or kept for the purpose.
fn quantize_strided(a: MatRef<'_>, i: usize, out: &mut [u8]) -> Result<f32, usize> {
    use quantize::{ACTIVATION_LEVELS, activation_code, max_abs_of, scale};
    let k = a.cols();
    let (rs, cs, data) = (a.row_stride(), a.col_stride(), a.data());
    let at = |p: usize| data[i * rs + p * cs];
    let sa = scale(max_abs_of((0..k).map(at))?, ACTIVATION_LEVELS);
    for (p, q) in out.iter_mut().enumerate() {
        *q = if p < k {
            activation_code(at(p), sa)
        } else {
            128
        };
    }
    Ok(sa)
}

/// C (M x N) = dequantized (A_q B_q), see the module docs. Shapes checked: a.cols() ==
/// b.rows(), c is a.rows() x b.cols().
///
/// Runs on the tier `b` was packed for: the AVX-512 tier runs the VNNI kernel where the CPU
/// has AVX-512 VNNI ([`Tier::has_vnni`]) and the AVX2 kernel elsewhere. C may have
/// any strides and is never read. Errors when the shapes disagree, or when the operands'
/// magnitudes could carry a result beyond f32's range (`K max|a| max|b|` above
/// `f32::MAX`).
pub fn gemm_q8(a: &QuantRows, b: &PackedQ8, mut c: MatMut<'_>) -> Result<(), TensorError> {
    const OP: &str = "gemm_q8";
    if a.cols() != b.rows() || c.rows() != a.rows() || c.cols() != b.cols() {
        return Err(TensorError::Shape {
            op: OP,
            detail: format!(
                "A is {}x{}, B is {}x{}, C is {}x{}: need A m x k, B k x n, C m x n",
                a.rows(),
                a.cols(),
                b.rows(),
                b.cols(),
                c.rows(),
                c.cols()
            ),
        });
    }
    let (m, k, n) = (a.rows(), a.cols(), b.cols());
    if m == 0 || n == 0 {
        return Ok(());
    }
    let bound = f64::from(a.max_scale) * f64::from(b.max_scale) * (k as f64 * 127.0 * 63.0);
    if bound > f64::from(f32::MAX) {
        return Err(TensorError::Overflow {
            op: OP,
            detail: format!(
                "K = {k}, largest row scale {}, largest column scale {}: |c| could reach {bound:e}",
                a.max_scale, b.max_scale
            ),
        });
    }
    let (rsc, csc) = (c.row_stride(), c.col_stride());
    let cp = c.data_mut().as_mut_ptr();
    let (qa, sa) = (&a.q[..m * a.ld], &a.scales[..m]);
    match Int8Kernel::for_tier(b.tier) {
        // SAFETY: A holds m rows of 4 * groups bytes (QuantRows pads K as packing does),
        // B's panels cover n, C is an m x n view of its buffer; the portable kernel runs
        // everywhere.
        Int8Kernel::Portable => unsafe {
            kernel::run::<kernel::Portable>(m, n, qa, sa, &b.packed, cp, rsc, csc)
        },
        // SAFETY: as above; PackedQ8::new checked that the CPU runs the tier, and the VNNI
        // kernel is chosen only where it has AVX-512F and VNNI.
        #[cfg(target_arch = "x86_64")]
        Int8Kernel::Avx512Vnni => unsafe {
            kernel::run::<avx512::Avx512Vnni>(m, n, qa, sa, &b.packed, cp, rsc, csc)
        },
        // SAFETY: as above; both x86 tiers include AVX2.
        #[cfg(target_arch = "x86_64")]
        Int8Kernel::Avx2 => unsafe {
            kernel::run::<avx2::Avx2>(m, n, qa, sa, &b.packed, cp, rsc, csc)
        },
        #[cfg(not(target_arch = "x86_64"))]
        _ => unreachable!("PackedQ8::new rejects x86 tiers elsewhere"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Matrix;

    #[test]
    fn each_tier_names_the_kernel_it_runs() {
        assert_eq!(Int8Kernel::for_tier(Tier::Portable), Int8Kernel::Portable);
        assert_eq!(Int8Kernel::for_tier(Tier::Avx2), Int8Kernel::Avx2);
        let avx512 = if Tier::Avx512.has_vnni() {
            Int8Kernel::Avx512Vnni
        } else {
            Int8Kernel::Avx2
        };
        assert_eq!(Int8Kernel::for_tier(Tier::Avx512), avx512);
        assert!(Int8Kernel::Avx512Vnni.name().contains("vpdpbusd"));
    }

    #[test]
    fn padding_of_rows_matches_the_groups_of_the_panels() {
        let b = Matrix::from_fn(7, 20, |i, j| (i as f32) - (j as f32) * 0.5);
        let p = PackedQ8::new(Tier::Portable, b.view()).unwrap();
        let mut q = QuantRows::new();
        q.quantize(Matrix::from_fn(3, 7, |i, j| (i * j) as f32).view())
            .unwrap();
        assert_eq!(q.ld, 4 * p.packed.groups);
        assert_eq!(p.packed.lines.len(), 2 * p.packed.groups);
    }
}
