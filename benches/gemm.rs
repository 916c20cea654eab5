//! Criterion benchmark: our GEMM against matrixmultiply on the model's shapes.
//!
//! Run with `cargo bench --bench gemm`. Both sides run in the same process on the same
//! operands; compare the two lines of each shape (the ratio is what to quote). For a quick
//! table with GFLOP/s and the measured peak, use `cargo run --release -- bench gemm`.

// criterion_group! and criterion_main! generate items without doc comments.
#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tensor::{GemmScratch, Matrix, Tier, gemm_with};

fn gemm_shapes(c: &mut Criterion) {
    let tier = Tier::active();
    for s in bench::gemm::SHAPES {
        let mut group = c.benchmark_group(format!(
            "gemm {}x{}x{} {}{}",
            s.m,
            s.n,
            s.k,
            if s.trans_a { 'T' } else { 'N' },
            if s.trans_b { 'T' } else { 'N' }
        ));
        group.throughput(Throughput::Elements((2 * s.m * s.n * s.k) as u64));
        group.sample_size(20);
        let (a, b) = bench::gemm::operands(&s);
        let (av, bv) = bench::gemm::views(&s, &a, &b);
        let mut out = Matrix::zeros(s.m, s.n);
        let mut scratch = GemmScratch::new();
        group.bench_function(BenchmarkId::new("ours", tier.name()), |bench| {
            bench.iter(|| gemm_with(tier, 1.0, av, bv, 0.0, out.view_mut(), &mut scratch).unwrap())
        });
        group.bench_function(BenchmarkId::new("matrixmultiply", "0.3"), |bench| {
            bench.iter(|| bench::gemm::reference_gemm(av, bv, &mut out.view_mut()))
        });
        group.finish();
    }
}

criterion_group!(benches, gemm_shapes);
criterion_main!(benches);
