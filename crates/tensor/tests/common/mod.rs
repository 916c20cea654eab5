//! What the integration tests share: a deterministic fill, operands stored row-major or
//! transposed with padding between rows, and the kernel tiers this CPU runs.
//!
//! Each test file is its own crate and uses only part of this, hence the `dead_code` allow.
#![allow(dead_code)]

use tensor::{MatRef, Tier};

/// A deterministic pseudo-random fill (xorshift), values in [-1, 1).
pub fn fill(len: usize, seed: u64) -> Vec<f32> {
    fill_scaled(len, seed, 1.0)
}

/// [`fill`] times `scale`: values in [-scale, scale).
pub fn fill_scaled(len: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0) * scale
        })
        .collect()
}

/// Storage for an `rows x cols` operand, kept either row-major (ld = cols + pad) or as the
/// transpose of a row-major `cols x rows` buffer; `view` gives the operand either way.
pub struct Operand {
    pub data: Vec<f32>,
    pub rows: usize,
    pub cols: usize,
    pub ld: usize,
    pub transposed: bool,
}

impl Operand {
    /// An operand filled by [`fill`].
    pub fn new(rows: usize, cols: usize, transposed: bool, pad: usize, seed: u64) -> Self {
        Self::scaled(rows, cols, transposed, pad, seed, 1.0)
    }

    /// An operand filled by [`fill_scaled`].
    pub fn scaled(
        rows: usize,
        cols: usize,
        transposed: bool,
        pad: usize,
        seed: u64,
        scale: f32,
    ) -> Self {
        let (sr, sc) = if transposed {
            (cols, rows)
        } else {
            (rows, cols)
        };
        let ld = sc + pad;
        Self {
            data: fill_scaled(sr * ld, seed, scale),
            rows,
            cols,
            ld,
            transposed,
        }
    }

    /// The operand as an `rows x cols` view.
    pub fn view(&self) -> MatRef<'_> {
        if self.transposed {
            MatRef::from_slice(&self.data, self.cols, self.rows, self.ld)
                .unwrap()
                .t()
        } else {
            MatRef::from_slice(&self.data, self.rows, self.cols, self.ld).unwrap()
        }
    }
}

/// The tiers this CPU runs, printed so that a test log says which ran.
pub fn tiers() -> Vec<Tier> {
    let t = Tier::supported();
    eprintln!("testing kernel tiers: {t:?}");
    t
}
