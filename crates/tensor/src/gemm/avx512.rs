//! The AVX-512F tier: the generic kernels of `kernel.rs` and `gemv.rs` on `__m512`
//! (16 floats, 32 registers), compiled under `#[target_feature(enable = "avx512f")]`.
//!
//! Only the register type and the sizes below differ from the AVX2 tier (`avx2.rs`);
//! `simd_tier!` (kernel.rs) writes the kernel type and the entry points from them. The
//! sizes were measured on an AMD EPYC Zen 5 (48 KiB L1d, 1 MiB L2 per core); see
//! docs/tensor.md.

use std::arch::x86_64::__m512;

use super::kernel::{Blocking, simd_tier};

/// Rows of the C tile: 12 x 32 is 24 accumulators + 2 B registers of the 32 zmm, with the
/// broadcasts folded into the FMAs' memory operands.
const MR: usize = 12;
/// Registers per row of the C tile (NR = 32 floats).
const NV: usize = 2;
/// No prefetch for a transposed A: the Zen 5 figures (259 GFLOP/s on 608 x 128 x 1024 TN,
/// 94% of peak) were measured without, and no AVX-512 machine was at hand to measure it.
const PREFETCH: usize = 0;

/// `kc = 640` makes the tower's K = 608 one pass and keeps a 12 x 640 sliver (30 KiB)
/// in the 48 KiB L1 (266 GFLOP/s on 1024 x 128 x 608 against 256 at KC = 256); the
/// transposed case was measured best at the same depth (259 against 253).
const BLOCKING: Blocking = Blocking {
    mc: 240,
    kc: 640,
    kc_cols: 640,
    nc: 512,
};

/// In place: on Zen 5 608 x 128 x 1024 TN ran at 259.8 GFLOP/s in place against 224.9
/// packed (docs/tensor.md, section 5).
const PACK_TRANSPOSED_A: bool = false;

simd_tier! {
    /// The AVX-512F micro-kernel (12 x 32).
    Avx512 {
        vector: __m512,
        feature: "avx512f",
        mr: MR,
        nv: NV,
        prefetch: PREFETCH,
        blocking: BLOCKING,
        pack_transposed_a: PACK_TRANSPOSED_A,
    }
}
