//! `tensor`: row-major f32 matrices, a hand-written SIMD GEMM and element-wise kernels.
//!
//! This crate knows nothing of models. It gives the layers above it three things:
//! - [`Matrix`], [`MatRef`] and [`MatMut`]: owned, aligned storage and zero-cost views
//!   (sub-matrices and transposes are just other strides over the same floats);
//! - [`gemm()`]: `C = alpha * op(A) * op(B) + beta * C`, BLIS-style, with micro-kernels
//!   for AVX-512, AVX2+FMA and a portable fallback chosen at run time in [`arch`];
//! - [`ops`]: activations and element-wise kernels (ReLU, PReLU, sigmoid, tanh, softmax,
//!   bias add, column sums, axpy) with their derivatives;
//! - [`quant`]: an int8 GEMM for serving ([`PackedQ8`], [`QuantRows`], [`gemm_q8`]):
//!   activations quantized per row at run time, weights per column once;
//! - [`Pooling`]: how a bag of rows is combined (sum or mean), the one definition every
//!   layer above uses.
//!
//! Read `docs/tensor.md` for the why: memory layout, packing, the register picture of the
//! micro-kernel, cache blocking and the measurements behind every constant.
#![warn(missing_docs)]

pub mod arch;
mod error;
pub mod gemm;
mod matrix;
pub mod ops;
mod pooling;
pub mod quant;
pub mod tolerance;

pub use arch::{Cpu, Tier};
pub use error::TensorError;
pub use gemm::{
    Blocking, GemmScratch, PackedB, default_blocking, gemm, gemm_naive, gemm_packed, gemm_par,
    gemm_with, gemm_with_blocking,
};
pub use matrix::{
    AlignedVec, HUGE_PAGE_MIN_BYTES, MatMut, MatRef, Matrix, advise_huge_pages, prefault_zeroed,
    try_zeroed_vec,
};
pub use pooling::Pooling;
pub use quant::{PackedQ8, QuantRows, gemm_q8};
