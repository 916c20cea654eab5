//! Packing the weights: B (K x N, f32) quantized per column and laid out in the order the
//! int8 micro-kernel reads it.
//!
//! K is padded to a multiple of 4 and N to a multiple of [`NR`] = 16, the padding holding
//! zeros. The columns are cut into panels of 16; a panel is stored as K/4 groups, each
//! group one 64-byte line holding 4 consecutive k of the panel's 16 columns:
//!
//! ```text
//!   line (panel, g) = [ qb[4g..4g+4, 16 panel + 0] | qb[4g..4g+4, 16 panel + 1] | ... | .. + 15 ]
//!                       4 bytes, k ascending          4 bytes                          4 bytes
//!   byte index of qb[k, j] = ((j / 16) * K/4 + k / 4) * 64 + (j % 16) * 4 + k % 4
//! ```
//!
//! One 32-byte load then holds 4 k of 8 columns, which is what `vpmaddubsw` multiplies
//! against 4 bytes of a row of A broadcast to every 32-bit lane. Beside the bytes, each
//! column keeps its scale `sb_j` and `-128 * sum_k qb_kj`, the correction for A's zero
//! point, with which the kernel's accumulators start.

use super::quantize::{WEIGHT_LEVELS, scale, step};
use crate::error::TensorError;
use crate::matrix::MatRef;

/// Columns per panel: two 8-lane registers of i32 accumulators per row of the tile.
pub(crate) const NR: usize = 16;

/// One group of 4 k of one panel: 16 columns x 4 bytes, one cache line.
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(64))]
pub(crate) struct Line(pub(crate) [u8; 64]);

impl std::fmt::Debug for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Line(..)")
    }
}

/// The quantized, packed weights.
#[derive(Debug, Clone, Default)]
pub(crate) struct Packed {
    /// `panels * groups` lines, panel by panel.
    pub(crate) lines: Vec<Line>,
    /// `sb_j` for every column of every panel (padding columns: 1).
    pub(crate) scales: Vec<f32>,
    /// `-128 * sum_k qb_kj` for every column of every panel (padding columns: 0).
    pub(crate) bias: Vec<i32>,
    /// Groups of 4 k: `K.div_ceil(4)`.
    pub(crate) groups: usize,
}

/// A vector of `len` zeros, or an allocation error naming `what`.
pub(crate) fn try_vec<T: bytemuck::Zeroable + Copy>(
    len: usize,
    what: &'static str,
) -> Result<Vec<T>, TensorError> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| TensorError::Alloc {
        what,
        bytes: len.saturating_mul(std::mem::size_of::<T>()),
    })?;
    v.resize(len, T::zeroed());
    Ok(v)
}

/// Quantizes and packs `b` (K x N, any strides, K already checked against the limit).
///
/// Errors on a non-finite element (before any allocation of the packed size) or when the
/// memory cannot be had.
pub(crate) fn pack(b: MatRef<'_>) -> Result<Packed, TensorError> {
    const WHAT: &str = "PackedQ8::new";
    let (k, n) = b.shape();
    let (rs, cs, data) = (b.row_stride(), b.col_stride(), b.data());
    let at = |p: usize, j: usize| data[p * rs + j * cs];
    // Validate every element before sizing anything by the input.
    for p in 0..k {
        for j in 0..n {
            if !at(p, j).is_finite() {
                return Err(TensorError::NonFinite {
                    op: WHAT,
                    what: "weight",
                    row: p,
                    col: j,
                });
            }
        }
    }
    let groups = k.div_ceil(4);
    let panels = n.div_ceil(NR);
    let mut lines: Vec<Line> = try_vec(panels.saturating_mul(groups), WHAT)?;
    let mut scales: Vec<f32> = try_vec(panels * NR, WHAT)?;
    let mut bias: Vec<i32> = try_vec(panels * NR, WHAT)?;
    for j in 0..panels * NR {
        if j >= n {
            scales[j] = 1.0;
            continue;
        }
        let max = (0..k).map(|p| at(p, j).abs()).fold(0.0f32, f32::max);
        let sb = scale(max, WEIGHT_LEVELS);
        let (panel, jj) = (j / NR, j % NR);
        let mut sum = 0i32;
        for p in 0..k {
            let q = step(at(p, j), sb, WEIGHT_LEVELS) as i8;
            sum += i32::from(q);
            lines[panel * groups + p / 4].0[jj * 4 + p % 4] = q as u8;
        }
        scales[j] = sb;
        // |sum| <= 63 K <= 63 * 133_000: no overflow, and 128 times it fits too.
        bias[j] = -128 * sum;
    }
    Ok(Packed {
        lines,
        scales,
        bias,
        groups,
    })
}

impl Packed {
    /// `qb[k, j]` read back from the packed layout.
    pub(crate) fn get(&self, k: usize, j: usize) -> i8 {
        self.lines[(j / NR) * self.groups + k / 4].0[(j % NR) * 4 + k % 4] as i8
    }

    /// The bytes of panel `panel`: `groups * 64` of them.
    pub(crate) fn panel(&self, panel: usize) -> &[u8] {
        bytemuck::cast_slice(&self.lines[panel * self.groups..(panel + 1) * self.groups])
    }

    /// Heap bytes held.
    pub(crate) fn bytes(&self) -> usize {
        std::mem::size_of_val(self.lines.as_slice())
            + std::mem::size_of_val(self.scales.as_slice())
            + std::mem::size_of_val(self.bias.as_slice())
    }
}
