//! `resflow bench gemm`: our GEMM against matrixmultiply on the shapes the model uses.
//!
//! Shapes come from the ResFlow towers (batch 1024, inputs 608 -> 128 -> 64 -> 1) in the
//! three products of training (forward `X W`, weight gradient `X^T dY`, input gradient
//! `dY W^T`), from scoring 500 candidates, and two squares for comparison with the
//! literature.

use std::time::Duration;

use serde::Serialize;
use tensor::{GemmScratch, MatMut, MatRef, Matrix, TensorError, Tier, gemm_with};

/// One GEMM problem: `C (m x n) = op(A) (m x k) * op(B) (k x n)`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct GemmShape {
    /// Rows of C.
    pub m: usize,
    /// Columns of C.
    pub n: usize,
    /// The inner dimension.
    pub k: usize,
    /// A is stored as `k x m` and used transposed.
    pub trans_a: bool,
    /// B is stored as `n x k` and used transposed.
    pub trans_b: bool,
    /// Where the shape comes from.
    #[serde(skip)]
    pub role: &'static str,
}

const fn shape(
    m: usize,
    n: usize,
    k: usize,
    trans_a: bool,
    trans_b: bool,
    role: &'static str,
) -> GemmShape {
    GemmShape {
        m,
        n,
        k,
        trans_a,
        trans_b,
        role,
    }
}

/// The benchmark's shapes, model shapes first.
pub const SHAPES: [GemmShape; 8] = [
    shape(1024, 128, 608, false, false, "tower layer 1 forward"),
    shape(1024, 64, 128, false, false, "tower layer 2 forward"),
    shape(1024, 1, 64, false, false, "logit layer forward"),
    shape(608, 128, 1024, true, false, "layer 1 weight gradient"),
    shape(1024, 608, 128, false, true, "layer 1 input gradient"),
    shape(500, 128, 608, false, false, "scoring 500 candidates"),
    shape(256, 256, 256, false, false, "square"),
    shape(1024, 1024, 1024, false, false, "large square"),
];

/// Results for one shape.
#[derive(Debug, Clone, Serialize)]
pub struct GemmResult {
    /// Rows of C.
    pub m: usize,
    /// Columns of C.
    pub n: usize,
    /// Inner dimension.
    pub k: usize,
    /// A used transposed.
    pub trans_a: bool,
    /// B used transposed.
    pub trans_b: bool,
    /// Our GEMM, best round, GFLOP/s.
    pub ours_gflops: f64,
    /// matrixmultiply, best round, GFLOP/s.
    pub reference_gflops: f64,
    /// `ours_gflops / reference_gflops`.
    pub ratio: f64,
    /// Our GEMM, median round, GFLOP/s.
    pub ours_median_gflops: f64,
    /// matrixmultiply, median round, GFLOP/s.
    pub reference_median_gflops: f64,
    /// Where the shape comes from.
    pub role: &'static str,
}

/// The whole benchmark: which kernel ran, the measured peak, and every shape.
#[derive(Debug, Clone, Serialize)]
pub struct GemmReport {
    /// The kernel tier our GEMM ran on.
    pub kernel: &'static str,
    /// This core's FP32 peak, measured with an FMA loop in the same run (GFLOP/s).
    pub peak_gflops: f64,
    /// One entry per shape.
    pub shapes: Vec<GemmResult>,
}

/// How to run the benchmark.
#[derive(Debug, Clone)]
pub struct GemmBenchConfig {
    /// Kernel tier for our GEMM.
    pub tier: Tier,
    /// Interleaved rounds per shape (best and median are taken over these).
    pub rounds: usize,
    /// Minimum duration of one round of one side.
    pub min_round: Duration,
    /// The shapes to run.
    pub shapes: Vec<GemmShape>,
}

impl Default for GemmBenchConfig {
    fn default() -> Self {
        Self {
            tier: Tier::active(),
            rounds: 7,
            min_round: Duration::from_millis(20),
            shapes: SHAPES.to_vec(),
        }
    }
}

/// Deterministic operand values in [-1, 1).
fn operand(rows: usize, cols: usize, seed: usize) -> Matrix {
    Matrix::from_fn(rows, cols, |i, j| {
        let h = (i * 7919 + j * 104_729 + seed * 15_485_863) % 2003;
        h as f32 / 1001.5 - 1.0
    })
}

/// `C = A B` by matrixmultiply's `sgemm` on our views (its strided interface takes any layout).
pub fn reference_gemm(a: MatRef<'_>, b: MatRef<'_>, c: &mut MatMut<'_>) {
    let (m, k, n) = (a.rows(), a.cols(), b.cols());
    let (rsc, csc) = (c.row_stride() as isize, c.col_stride() as isize);
    let cp = c.data_mut().as_mut_ptr();
    // SAFETY: the views were validated against their slices, so every (i, p), (p, j) and
    // (i, j) addressed through these strides lies inside the borrowed buffers; C is
    // uniquely borrowed.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.data().as_ptr(),
            a.row_stride() as isize,
            a.col_stride() as isize,
            b.data().as_ptr(),
            b.row_stride() as isize,
            b.col_stride() as isize,
            0.0,
            cp,
            rsc,
            csc,
        );
    }
}

/// Runs one shape.
pub fn bench_shape(config: &GemmBenchConfig, s: &GemmShape) -> Result<GemmResult, TensorError> {
    let a = if s.trans_a {
        operand(s.k, s.m, 1)
    } else {
        operand(s.m, s.k, 1)
    };
    let b = if s.trans_b {
        operand(s.n, s.k, 2)
    } else {
        operand(s.k, s.n, 2)
    };
    let av = if s.trans_a { a.view().t() } else { a.view() };
    let bv = if s.trans_b { b.view().t() } else { b.view() };
    let mut c = Matrix::zeros(s.m, s.n);
    let mut c_ref = Matrix::zeros(s.m, s.n);
    let mut scratch = GemmScratch::new();
    // Check the call works before timing it (shape errors, unsupported tier).
    gemm_with(config.tier, 1.0, av, bv, 0.0, c.view_mut(), &mut scratch)?;
    let tier = config.tier;
    let (ours, reference) = crate::time_best_and_median(
        config.rounds,
        config.min_round,
        || {
            gemm_with(tier, 1.0, av, bv, 0.0, c.view_mut(), &mut scratch).expect("checked above");
        },
        || reference_gemm(av, bv, &mut c_ref.view_mut()),
    );
    let flop = 2.0 * (s.m * s.n * s.k) as f64;
    let g = |secs: f64| flop / secs / 1e9;
    Ok(GemmResult {
        m: s.m,
        n: s.n,
        k: s.k,
        trans_a: s.trans_a,
        trans_b: s.trans_b,
        ours_gflops: g(ours.best),
        reference_gflops: g(reference.best),
        ratio: reference.best / ours.best,
        ours_median_gflops: g(ours.median),
        reference_median_gflops: g(reference.median),
        role: s.role,
    })
}

/// Runs every shape and measures the peak (with the best tier this CPU has).
pub fn run(config: &GemmBenchConfig) -> Result<GemmReport, TensorError> {
    config.tier.require()?;
    let peak = tensor::arch::peak_gflops(Tier::best(), 5);
    let shapes = config
        .shapes
        .iter()
        .map(|s| bench_shape(config, s))
        .collect::<Result<_, _>>()?;
    Ok(GemmReport {
        kernel: config.tier.name(),
        peak_gflops: peak,
        shapes,
    })
}
