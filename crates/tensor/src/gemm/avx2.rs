//! The AVX2 + FMA tier: the generic kernels of `kernel.rs` and `gemv.rs` on `__m256`
//! (8 floats, 16 registers), compiled under `#[target_feature(enable = "avx2,fma")]`.
//!
//! Only the register type and the sizes below differ from the AVX-512 tier (`avx512.rs`);
//! `simd_tier!` (kernel.rs) writes the kernel type and the entry points from them.
//! The figures beside each choice were measured on an AMD EPYC Zen 3 (32 KiB L1d, 512 KiB
//! L2 per core), one thread, GFLOP/s best of the interleaved rounds of
//! `resflow bench gemm --clock thread --shape ...` (add `--blocking MC,KC,KC_COLS,NC` to
//! try other sizes, or change the constants here); docs/tensor.md has the tables.

use std::arch::x86_64::__m256;

use super::kernel::{Blocking, simd_tier};

/// Rows of the C tile. 6 x 16 keeps 12 accumulators + 2 B registers + 1 broadcast in the
/// 16 ymm registers. On 1024 x 128 x 608 NN it ran at 94.6 GFLOP/s; 4 x 24, 3 x 32 and
/// 2 x 48 need 16 or more registers, spill and ran at 35-39; 8 x 8 has only 8 chains
/// (75.9); 5 x 16 and 4 x 16 reached 89.3 and 87.3.
const MR: usize = 6;
/// Registers per row of the C tile (NR = 16 floats).
const NV: usize = 2;
/// Prefetch distance for a transposed A read in place (on this tier only by the first tile
/// of each panel, which packs it; see `PACK_TRANSPOSED_A`), in steps of K: 608 x 128 x 1024
/// TN went from 74 to 85 GFLOP/s with every tile in place; with the packing tile, distances
/// 8, 16 and none measured within noise of 4 (2026-12-02).
const PREFETCH: usize = 4;

/// - `kc = 640`: the tower's K = 608 in one pass (96 GFLOP/s on 1024 x 128 x 608
///   against 94 with two passes of 304 and 93 with three of 203), and K = 1024 as two
///   passes of 512 (86.4 on 1024^3 against 82.4 with four of 256).
/// - `kc_cols = 256`: the depth for a transposed A, which this tier packs (below);
///   128 to 640 measured within noise of each other packed (608 x 128 x 1024 TN).
/// - `nc = 512`: 1024^3 at 86.4, 87.4 at 1024 (within noise), 83.9 at 256, 78.0 at 128.
/// - `mc = 120`: used only when A must be packed (no unit stride at all).
const BLOCKING: Blocking = Blocking {
    mc: 120,
    kc: 640,
    kc_cols: 256,
    nc: 512,
};

/// Packed: 608 x 128 x 1024 TN, thread clock, two interleaved runs (2026-12-01, load
/// average 8-9): median 60.3-62.4 GFLOP/s packed against 47.7-50.5 read in place with
/// the prefetch. In place, each step reads 6 floats of a new line of X, and the lines of
/// a sliver, 2.4 KiB apart, crowd into half of L1's sets. The first tile of each panel
/// packs it as it reads it in place (`MicroKernel::tile_packing_a`), so the copy overlaps
/// that tile's arithmetic: best of ten interleaved runs 76.6-92.9 GFLOP/s against
/// 74.1-86.5 packed beforehand, ahead in 9 of 10 (2026-12-02, docs/tensor.md section 5).
const PACK_TRANSPOSED_A: bool = true;

simd_tier! {
    /// The AVX2 + FMA micro-kernel (6 x 16).
    Avx2 {
        vector: __m256,
        feature: "avx2,fma",
        mr: MR,
        nv: NV,
        prefetch: PREFETCH,
        blocking: BLOCKING,
        pack_transposed_a: PACK_TRANSPOSED_A,
    }
}
