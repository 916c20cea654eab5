//! `resflow bench tape`: one training step (forward and backward) of a ResFlow tower,
//! 608 -> 128 -> 64 -> 1 at batch 1024, recorded on the autodiff tape, against the same
//! step's GEMMs called directly. The difference is the tape's overhead: element-wise ops,
//! BatchNorm, the loss, copying parameters onto the tape, and bookkeeping.

use std::time::Duration;

use autodiff::{BatchNormMode, BceTarget, Grads, ParamId, ParamStore, Tape};
use serde::Serialize;
use tensor::{Matrix, gemm};

/// Figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct TapeReport {
    /// Batch rows.
    pub batch: usize,
    /// Layer widths, input first.
    pub widths: Vec<usize>,
    /// One tape step (forward + backward), best round, milliseconds.
    pub step_ms: f64,
    /// The step's 8 GEMMs alone, best round, milliseconds.
    pub gemm_ms: f64,
    /// `(step - gemm) / step`.
    pub overhead_share: f64,
    /// Samples per second of the tape step on one thread.
    pub samples_per_s: f64,
}

struct Tower {
    store: ParamStore,
    x: ParamId,
    layers: Vec<(ParamId, ParamId, ParamId, ParamId, ParamId)>,
    logit: (ParamId, ParamId),
}

fn tower(batch: usize, widths: &[usize]) -> Tower {
    let mut store = ParamStore::new();
    let fill = |r: usize, c: usize, s: usize| {
        Matrix::from_fn(r, c, |i, j| {
            ((i * 31 + j * 17 + s) % 97) as f32 / 485.0 - 0.1
        })
    };
    // The input is a parameter so that its gradient (which feeds the embeddings) is computed.
    let x = store.add("x", fill(batch, widths[0], 1));
    let mut layers = vec![];
    for (k, w) in widths.windows(2).enumerate() {
        layers.push((
            store.add(format!("w{k}"), fill(w[0], w[1], k)),
            store.add(format!("b{k}"), Matrix::zeros(1, w[1])),
            store.add(format!("a{k}"), Matrix::zeros(1, w[1])),
            store.add(format!("g{k}"), Matrix::from_fn(1, w[1], |_, _| 1.0)),
            store.add(format!("beta{k}"), Matrix::zeros(1, w[1])),
        ));
    }
    let last = *widths.last().unwrap();
    let logit = (
        store.add("wz", fill(last, 1, 9)),
        store.add("bz", Matrix::zeros(1, 1)),
    );
    Tower {
        store,
        x,
        layers,
        logit,
    }
}

fn step(
    t: &Tower,
    tape: &mut Tape,
    grads: &mut Grads,
    labels: &[f32],
    stats: &[(Vec<f32>, Vec<f32>)],
) {
    tape.reset();
    grads.zero();
    let s = &t.store;
    let mut h = tape.param(s, t.x);
    for (&(w, b, a, g, beta), (mean, var)) in t.layers.iter().zip(stats) {
        let (w, b, a, g, beta) = (
            tape.param(s, w),
            tape.param(s, b),
            tape.param(s, a),
            tape.param(s, g),
            tape.param(s, beta),
        );
        let z = tape.linear(h, w, Some(b)).expect("shapes are fixed");
        let p = tape.prelu(z, a).expect("shapes are fixed");
        h = tape
            .batch_norm(
                p,
                g,
                beta,
                BatchNormMode::Eval {
                    mean,
                    var,
                    eps: 1e-3,
                },
            )
            .expect("shapes are fixed");
    }
    let (wz, bz) = (tape.param(s, t.logit.0), tape.param(s, t.logit.1));
    let z = tape.linear(h, wz, Some(bz)).expect("shapes are fixed");
    let target = BceTarget {
        labels,
        weights: None,
        pos_weight: 100.0,
        denom: None,
    };
    let loss = tape.bce_with_logits(z, target).expect("labels are valid");
    tape.backward(loss, grads).expect("the loss is a scalar");
}

/// A tower, its tape and the plain buffers of the GEMM-only twin, ready to time.
pub struct TowerBench {
    tower: Tower,
    tape: Tape,
    grads: Grads,
    labels: Vec<f32>,
    stats: Vec<(Vec<f32>, Vec<f32>)>,
    xs: Vec<Matrix>,
    ws: Vec<Matrix>,
    ys: Vec<Matrix>,
    dxs: Vec<Matrix>,
    dws: Vec<Matrix>,
}

impl TowerBench {
    /// A tower of `widths` (input first, a 1-unit logit is added) at `batch` rows.
    pub fn new(batch: usize, widths: &[usize]) -> Self {
        let tower = tower(batch, widths);
        let grads = Grads::zeros_like(&tower.store);
        let mut dims = widths.to_vec();
        dims.push(1);
        let per_input = |d: &[usize]| {
            d.iter()
                .map(|&w| Matrix::zeros(batch, w))
                .collect::<Vec<_>>()
        };
        let per_layer = || {
            dims.windows(2)
                .map(|w| Matrix::zeros(w[0], w[1]))
                .collect::<Vec<_>>()
        };
        Self {
            tape: Tape::new(),
            grads,
            labels: (0..batch).map(|i| (i % 25 == 0) as u32 as f32).collect(),
            stats: widths[1..]
                .iter()
                .map(|&w| (vec![0.0; w], vec![1.0; w]))
                .collect(),
            xs: per_input(&dims[..dims.len() - 1]),
            ws: per_layer(),
            ys: per_input(&dims[1..]),
            dxs: per_input(&dims[..dims.len() - 1]),
            dws: per_layer(),
            tower,
        }
    }

    /// One forward and backward pass on the tape.
    pub fn step(&mut self) {
        step(
            &self.tower,
            &mut self.tape,
            &mut self.grads,
            &self.labels,
            &self.stats,
        );
    }

    /// The same step's products on plain buffers: `Y = X W`, then `dX = dY W^T` and
    /// `dW = X^T dY` for every layer.
    pub fn gemms(&mut self) {
        for l in 0..self.ws.len() {
            gemm(
                1.0,
                self.xs[l].view(),
                self.ws[l].view(),
                0.0,
                self.ys[l].view_mut(),
            )
            .expect("shapes are fixed");
        }
        for l in (0..self.ws.len()).rev() {
            gemm(
                1.0,
                self.ys[l].view(),
                self.ws[l].view().t(),
                0.0,
                self.dxs[l].view_mut(),
            )
            .expect("shapes are fixed");
            gemm(
                1.0,
                self.xs[l].view().t(),
                self.ys[l].view(),
                0.0,
                self.dws[l].view_mut(),
            )
            .expect("shapes are fixed");
        }
    }
}

/// Runs the comparison.
pub fn run(batch: usize, widths: &[usize], rounds: usize) -> TapeReport {
    let mut a = TowerBench::new(batch, widths);
    let mut b = TowerBench::new(batch, widths);
    let (s, g) =
        crate::time_best_and_median(rounds, Duration::from_millis(50), || a.step(), || b.gemms());
    TapeReport {
        batch,
        widths: widths.to_vec(),
        step_ms: s.best * 1e3,
        gemm_ms: g.best * 1e3,
        overhead_share: (s.best - g.best) / s.best,
        samples_per_s: batch as f64 / s.best,
    }
}
