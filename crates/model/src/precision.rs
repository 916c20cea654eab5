//! The arithmetic of a serving plan's GEMMs: f32 (the default, the trained model's scores
//! to rounding) or int8 (dynamic quantization, about twice the multiply rate of f32 on
//! AVX2, at a measured cost in accuracy).
//!
//! With [`Precision::Int8`] every hidden-layer GEMM of the plan (the layers at least
//! [`INT8_MIN_COLS`] wide; the one-column logit layers stay f32) runs on integers:
//!
//! ```text
//! weights   per column j:  sb_j = max_k |W_kj| / 63,   qW_kj = round(W_kj / sb_j)   (i8, once)
//! operand   per row i:     sa_i = max_k |x_ik| / 127,  qx_ik = round(x_ik / sa_i)   (u8 + 128, per block)
//! product   y_ij = sa_i sb_j sum_k qx_ik qW_kj    (exact in i32), then bias and epilogue in f32
//! ```
//!
//! The request part of a first layer (one row per request) and everything after the GEMMs
//! (bias, PReLU, BatchNorm, residual adds, sigmoid) stay f32. The integer kernel is in
//! `tensor::quant`; docs/resflow.md (serving) gives the accuracy measured against f32.

use crate::error::ModelError;

/// The narrowest GEMM (in output columns) that runs in int8 under [`Precision::Int8`]:
/// narrower ones (the logit layers, one column) are a GEMV whose cost is the operand's
/// read, which quantizing would not shorten.
pub const INT8_MIN_COLS: usize = 8;

/// The arithmetic of a serving plan's GEMMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// f32 everywhere.
    #[default]
    F32,
    /// Hidden-layer GEMMs in int8 (see the module documentation).
    Int8,
}

impl Precision {
    /// Every precision, the default first.
    pub const ALL: [Precision; 2] = [Precision::F32, Precision::Int8];

    /// The name used on the command line and in reports: `f32` or `int8`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Int8 => "int8",
        }
    }

    /// Parses [`Precision::name`].
    pub fn parse(name: &str) -> Result<Self, ModelError> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                ModelError::Config(format!(
                    "unknown precision {name:?}: expected \"f32\" or \"int8\""
                ))
            })
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Precision {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for p in Precision::ALL {
            assert_eq!(Precision::parse(p.name()).unwrap(), p);
        }
        let e = Precision::parse("int4").unwrap_err().to_string();
        assert!(e.contains("int4") && e.contains("int8"), "{e}");
        assert_eq!(Precision::default(), Precision::F32);
    }
}
