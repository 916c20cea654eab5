//! `resflow bench metrics`: AUC over 10 million scores and GAUC over 10 million rows in
//! 100,000 groups, one thread (the target: each under 2 seconds).

use std::time::Instant;

use metrics::{GroupWeight, auc, gauc};
use serde::Serialize;

/// Timings in seconds (median of the runs).
#[derive(Debug, Clone, Serialize)]
pub struct MetricsReport {
    /// Rows.
    pub rows: usize,
    /// Groups for GAUC.
    pub groups: usize,
    /// AUC seconds.
    pub auc_s: f64,
    /// GAUC seconds, groups stored contiguously (sessions as logged).
    pub gauc_contiguous_s: f64,
    /// GAUC seconds, rows of a group scattered (the sorting path).
    pub gauc_scattered_s: f64,
    /// The AUC value (so the work cannot be skipped).
    pub auc: f64,
}

/// Deterministic data: scores with a signal, about 4% positives, groups of equal size.
pub fn data(rows: usize, groups: usize) -> (Vec<f32>, Vec<f32>, Vec<u64>, Vec<u64>) {
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    let labels: Vec<f32> = (0..rows).map(|_| (next() < 0.04) as u8 as f32).collect();
    let scores: Vec<f32> = labels.iter().map(|&y| next() + 0.3 * y).collect();
    let per = rows.div_ceil(groups.max(1));
    let contiguous: Vec<u64> = (0..rows).map(|i| (i / per) as u64).collect();
    let scattered: Vec<u64> = (0..rows).map(|i| (i % groups.max(1)) as u64).collect();
    (scores, labels, contiguous, scattered)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs each metric `runs` times.
pub fn run(rows: usize, groups: usize, runs: usize) -> MetricsReport {
    let (scores, labels, contiguous, scattered) = data(rows, groups);
    let time = |f: &mut dyn FnMut()| {
        median(
            (0..runs.max(1))
                .map(|_| {
                    let t = Instant::now();
                    f();
                    t.elapsed().as_secs_f64()
                })
                .collect(),
        )
    };
    let mut value = 0.0;
    let auc_s = time(&mut || value = auc(&scores, &labels).expect("both classes"));
    let gauc_contiguous_s = time(&mut || {
        gauc(&scores, &labels, &contiguous, GroupWeight::Impressions)
            .expect("groups have both classes");
    });
    let gauc_scattered_s = time(&mut || {
        gauc(&scores, &labels, &scattered, GroupWeight::Impressions)
            .expect("groups have both classes");
    });
    MetricsReport {
        rows,
        groups,
        auc_s,
        gauc_contiguous_s,
        gauc_scattered_s,
        auc: value,
    }
}
