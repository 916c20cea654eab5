//! `resflow bench ops`: element-wise kernels on the active tier against the same kernel on
//! the portable tier and against a plain loop over the standard library's `f32` functions.

use std::time::Duration;

use serde::Serialize;
use tensor::{Tier, ops};

/// One kernel's figures, in nanoseconds per element (best round).
#[derive(Debug, Clone, Serialize)]
pub struct OpResult {
    /// Kernel name.
    pub op: &'static str,
    /// Our kernel on the chosen tier.
    pub ours_ns: f64,
    /// Our kernel on the portable tier (baseline SIMD only).
    pub portable_ns: f64,
    /// A plain loop over `f32::exp` / `f32::tanh` / `max` (the libm route).
    pub std_ns: f64,
}

/// Results for all kernels.
#[derive(Debug, Clone, Serialize)]
pub struct OpsReport {
    /// The tier our kernels ran on.
    pub kernel: &'static str,
    /// Elements per call (a 1024 x 128 activation).
    pub len: usize,
    /// One entry per kernel.
    pub ops: Vec<OpResult>,
}

type Kernel = fn(Tier, &[f32], &mut [f32]);
type Reference = fn(&[f32], &mut [f32]);

fn std_sigmoid(x: &[f32], y: &mut [f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = 1.0 / (1.0 + (-x).exp());
    }
}

fn std_tanh(x: &[f32], y: &mut [f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = x.tanh();
    }
}

fn std_softplus(x: &[f32], y: &mut [f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = x.max(0.0) + (-x.abs()).exp().ln_1p();
    }
}

fn std_relu(x: &[f32], y: &mut [f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = x.max(0.0);
    }
}

/// Times every kernel on `len` elements, `rounds` interleaved rounds.
pub fn run(tier: Tier, len: usize, rounds: usize) -> OpsReport {
    let x: Vec<f32> = (0..len)
        .map(|i| ((i * 7919) % 2001) as f32 / 100.0 - 10.0)
        .collect();
    let mut y = vec![0.0f32; len];
    let cases: [(&'static str, Kernel, Reference); 4] = [
        ("sigmoid", ops::sigmoid_with, std_sigmoid),
        ("tanh", ops::tanh_with, std_tanh),
        ("softplus", ops::softplus_with, std_softplus),
        ("relu", ops::relu_with, std_relu),
    ];
    let round = Duration::from_millis(10);
    let per = |s: f64| s * 1e9 / len as f64;
    let ops = cases
        .into_iter()
        .map(|(op, ours, reference)| {
            let mut y2 = y.clone();
            let (o, s) = crate::time_best_and_median(
                rounds,
                round,
                || ours(tier, &x, &mut y),
                || reference(&x, &mut y2),
            );
            let (p, _) = crate::time_best_and_median(
                rounds,
                round,
                || ours(Tier::Portable, &x, &mut y),
                || {},
            );
            OpResult {
                op,
                ours_ns: per(o.best),
                portable_ns: per(p.best),
                std_ns: per(s.best),
            }
        })
        .collect();
    OpsReport {
        kernel: tier.name(),
        len,
        ops,
    }
}
