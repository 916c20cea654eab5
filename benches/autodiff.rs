//! Criterion benchmark: one training step of a 608 -> 128 -> 64 -> 1 tower at batch 1024
//! on the autodiff tape, next to the same step's GEMMs alone (the difference is the tape's
//! overhead). Run with `cargo bench --bench autodiff`; `cargo run --release -- bench tape`
//! prints the share directly.

// criterion_group! and criterion_main! generate items without doc comments.
#![allow(missing_docs)]

use bench::tape::TowerBench;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn tower_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("tower 608-128-64-1, batch 1024");
    group.throughput(Throughput::Elements(1024));
    group.sample_size(30);
    let mut tape = TowerBench::new(1024, &[608, 128, 64]);
    group.bench_function("tape forward + backward", |b| b.iter(|| tape.step()));
    let mut plain = TowerBench::new(1024, &[608, 128, 64]);
    group.bench_function("GEMMs alone", |b| b.iter(|| plain.gemms()));
    group.finish();
}

criterion_group!(benches, tower_step);
criterion_main!(benches);
