//! `bench`: side-by-side benchmarks that a user can reproduce with `resflow bench ...`.
//!
//! The machines this runs on are often shared and noisy, so every figure is a comparison
//! made in one process: ours and a reference, interleaved round by round on the same
//! buffers, with the best and the median of the rounds reported. Absolute numbers drift
//! between runs; the ratio is what to quote.

pub mod gemm;
pub mod metrics;
pub mod ops;
pub mod score;
pub mod shards;
pub mod tape;
mod timing;
pub mod train;

pub use timing::{Clock, Timing, time_best_and_median, time_interleaved};
