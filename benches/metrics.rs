//! Criterion benchmark: AUC and GAUC over 10 million rows (100,000 groups).
//! Run with `cargo bench --bench metrics`; `cargo run --release -- bench metrics` prints
//! the same timings as a table.

// criterion_group! and criterion_main! generate items without doc comments.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use metrics::{GroupWeight, auc, gauc};

fn ten_million(c: &mut Criterion) {
    let (scores, labels, contiguous, scattered) = bench::metrics::data(10_000_000, 100_000);
    let mut group = c.benchmark_group("10M rows");
    group.sample_size(10);
    group.bench_function("auc", |b| b.iter(|| auc(&scores, &labels).unwrap()));
    group.bench_function("gauc, 100k contiguous groups", |b| {
        b.iter(|| gauc(&scores, &labels, &contiguous, GroupWeight::Impressions).unwrap())
    });
    group.bench_function("gauc, 100k scattered groups", |b| {
        b.iter(|| gauc(&scores, &labels, &scattered, GroupWeight::Impressions).unwrap())
    });
    group.finish();
}

criterion_group!(benches, ten_million);
criterion_main!(benches);
