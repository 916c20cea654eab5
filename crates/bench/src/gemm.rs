//! `resflow bench gemm`: our GEMM against matrixmultiply, and against OpenBLAS when the
//! crate is built with the `openblas` feature, on the shapes the model uses.
//!
//! Shapes come from the ResFlow towers (batch 1024, inputs 608 -> 128 -> 64 -> 1) in the
//! three products of training (forward `X W`, weight gradient `X^T dY`, input gradient
//! `dY W^T`), from scoring 500 candidates, and two squares for comparison with the
//! literature. All sides run in one process on the same operands, interleaved round by
//! round. Extra block sizes ([`GemmBenchConfig::blockings`]) add more sides of ours, which
//! is how the blocking of each tier was chosen.
//!
//! A second, short table times the int8 GEMM of serving ([`tensor::gemm_q8`]) against our
//! f32 GEMM on weights packed once ([`tensor::gemm_packed`]), on the scoring shapes
//! ([`Q8_SHAPES`]): the int8 side once with the quantization of A included (what a
//! scoring call pays) and once the kernel alone.

use std::time::Duration;

use serde::Serialize;
use tensor::{
    Blocking, GemmScratch, MatMut, MatRef, Matrix, PackedB, PackedQ8, QuantRows, TensorError, Tier,
    gemm_packed, gemm_q8, gemm_with_blocking,
};

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

/// The shapes of the int8 table: the products of scoring one request.
pub const Q8_SHAPES: [GemmShape; 5] = [
    shape(
        48,
        256,
        288,
        false,
        false,
        "scoring block, layer 1 of both towers (split)",
    ),
    shape(
        48,
        128,
        608,
        false,
        false,
        "scoring block, layer 1 of one tower (no split)",
    ),
    shape(
        500,
        256,
        288,
        false,
        false,
        "500 candidates, layer 1 of both towers (split)",
    ),
    shape(
        48,
        64,
        128,
        false,
        false,
        "scoring block, layer 2 of one tower",
    ),
    shape(256, 256, 256, false, false, "square"),
];

/// The int8 GEMM against our f32 GEMM on one shape.
#[derive(Debug, Clone, Serialize)]
pub struct Q8Result {
    /// Rows of C.
    pub m: usize,
    /// Columns of C.
    pub n: usize,
    /// Inner dimension.
    pub k: usize,
    /// Our f32 GEMM on packed weights (`gemm_packed`), best round, GFLOP/s.
    pub f32_gflops: f64,
    /// Its median round.
    pub f32_median_gflops: f64,
    /// Quantizing A and the int8 GEMM (`QuantRows::quantize` + `gemm_q8`), best round,
    /// GOP/s (`2 M N K` per call).
    pub int8_gops: f64,
    /// Its median round.
    pub int8_median_gops: f64,
    /// The int8 GEMM alone on A quantized beforehand, best round, GOP/s.
    pub kernel_gops: f64,
    /// Its median round.
    pub kernel_median_gops: f64,
    /// `int8_gops / f32_gflops` (best rounds).
    pub ratio: f64,
    /// Where the shape comes from.
    pub role: &'static str,
}

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
    /// OpenBLAS, best round, GFLOP/s (only with the `openblas` feature).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub openblas_gflops: Option<f64>,
    /// OpenBLAS, median round, GFLOP/s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub openblas_median_gflops: Option<f64>,
    /// `ours_gflops / openblas_gflops`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub openblas_ratio: Option<f64>,
    /// Ours with each of [`GemmBenchConfig::blockings`], in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blocked: Vec<BlockedResult>,
    /// Where the shape comes from.
    pub role: &'static str,
}

/// Our GEMM with one explicit cache blocking.
#[derive(Debug, Clone, Serialize)]
pub struct BlockedResult {
    /// `MC,KC,KC_COLS,NC`.
    pub blocking: String,
    /// Best round, GFLOP/s.
    pub gflops: f64,
    /// Median round, GFLOP/s.
    pub median_gflops: f64,
}

/// The whole benchmark: which kernel ran, the measured peak, and every shape.
#[derive(Debug, Clone, Serialize)]
pub struct GemmReport {
    /// The kernel tier our GEMM ran on.
    pub kernel: &'static str,
    /// This core's FP32 peak, measured with an FMA loop in the same run (GFLOP/s).
    pub peak_gflops: f64,
    /// `wall` or `thread`: the clock of every figure.
    pub clock: &'static str,
    /// The default cache blocking of the kernel tier, `MC,KC,KC_COLS,NC`.
    pub blocking: String,
    /// matrixmultiply's version.
    pub reference: &'static str,
    /// OpenBLAS's configuration string (version, kernel, threads), with the feature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub openblas: Option<String>,
    /// One entry per shape.
    pub shapes: Vec<GemmResult>,
    /// The int8 kernel the tier runs on this CPU and the instructions of its floor.
    pub int8_kernel: &'static str,
    /// The int8 floor: the kernel's instructions on registers, in GOP/s, measured in the
    /// same run (`None` on the portable tier or without an int8 table).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub int8_peak_gops: Option<f64>,
    /// The int8 table: one entry per shape of [`GemmBenchConfig::int8_shapes`].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub int8: Vec<Q8Result>,
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
    /// Extra sides: ours with these block sizes instead of the tier's default.
    pub blockings: Vec<Blocking>,
    /// The clock rounds are measured with (all sides run on the calling thread).
    pub clock: crate::Clock,
    /// The shapes of the int8 table (empty: no table).
    pub int8_shapes: Vec<GemmShape>,
}

impl Default for GemmBenchConfig {
    fn default() -> Self {
        Self {
            tier: Tier::active(),
            rounds: 7,
            min_round: Duration::from_millis(20),
            shapes: SHAPES.to_vec(),
            blockings: Vec::new(),
            clock: crate::Clock::Wall,
            int8_shapes: Q8_SHAPES.to_vec(),
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

/// The shape's A and B, each stored row-major as itself or as its transpose, as the
/// shape's `op` says ([`views`] gives the operands).
pub fn operands(s: &GemmShape) -> (Matrix, Matrix) {
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
    (a, b)
}

/// `op(A)` (`m x k`) and `op(B)` (`k x n`) as views of the matrices [`operands`] made.
pub fn views<'a>(s: &GemmShape, a: &'a Matrix, b: &'a Matrix) -> (MatRef<'a>, MatRef<'a>) {
    let av = if s.trans_a { a.view().t() } else { a.view() };
    let bv = if s.trans_b { b.view().t() } else { b.view() };
    (av, bv)
}

/// The best rate (`work` units per second, in billions) of five timed runs of `run`.
fn best_of_five(clock: crate::Clock, work: f64, mut run: impl FnMut()) -> f64 {
    (0..5)
        .map(|_| {
            let start = clock.now();
            run();
            work / (clock.now() - start) / 1e9
        })
        .fold(0.0, f64::max)
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

/// `MC,KC,KC_COLS,NC`, as `--blocking` takes it.
pub fn blocking_name(b: &Blocking) -> String {
    format!("{},{},{},{}", b.mc, b.kc, b.kc_cols, b.nc)
}

/// Runs one shape.
pub fn bench_shape(config: &GemmBenchConfig, s: &GemmShape) -> Result<GemmResult, TensorError> {
    let (a, b) = operands(s);
    let (av, bv) = views(s, &a, &b);
    let mut c = Matrix::zeros(s.m, s.n);
    let mut c_ref = Matrix::zeros(s.m, s.n);
    let mut scratch = GemmScratch::new();
    let tier = config.tier;
    // Check each call works before timing it (shape errors, unsupported tier, bad blocking).
    for blocking in std::iter::once(None).chain(config.blockings.iter().copied().map(Some)) {
        gemm_with_blocking(tier, blocking, 1.0, av, bv, 0.0, c.view_mut(), &mut scratch)?;
    }
    let mut ours = || {
        gemm_with_blocking(tier, None, 1.0, av, bv, 0.0, c.view_mut(), &mut scratch)
            .expect("checked above")
    };
    let mut reference = || reference_gemm(av, bv, &mut c_ref.view_mut());
    // Each extra blocking gets its own output and scratch, so the sides stay independent.
    let mut outs: Vec<(Blocking, Matrix, GemmScratch)> = config
        .blockings
        .iter()
        .map(|&bl| (bl, Matrix::zeros(s.m, s.n), GemmScratch::new()))
        .collect();
    let mut blocked: Vec<Box<dyn FnMut() + '_>> = outs
        .iter_mut()
        .map(|(bl, out, sc)| {
            let bl = *bl;
            Box::new(move || {
                gemm_with_blocking(tier, Some(bl), 1.0, av, bv, 0.0, out.view_mut(), sc)
                    .expect("checked above")
            }) as Box<dyn FnMut()>
        })
        .collect();
    let mut sides: Vec<&mut dyn FnMut()> = vec![&mut ours, &mut reference];
    #[cfg(feature = "openblas")]
    let mut c_blas = Matrix::zeros(s.m, s.n);
    #[cfg(feature = "openblas")]
    let mut blas = || openblas::sgemm(av, bv, &mut c_blas.view_mut());
    #[cfg(feature = "openblas")]
    sides.push(&mut blas);
    for f in blocked.iter_mut() {
        sides.push(f.as_mut());
    }
    let t = crate::time_interleaved(config.rounds, config.min_round, config.clock, &mut sides);
    drop(sides);
    let flop = 2.0 * (s.m * s.n * s.k) as f64;
    let g = |secs: f64| flop / secs / 1e9;
    let (ours, reference) = (t[0], t[1]);
    #[cfg(feature = "openblas")]
    let (blas, extra) = (Some(t[2]), &t[3..]);
    #[cfg(not(feature = "openblas"))]
    let (blas, extra): (Option<crate::Timing>, _) = (None, &t[2..]);
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
        openblas_gflops: blas.map(|b| g(b.best)),
        openblas_median_gflops: blas.map(|b| g(b.median)),
        openblas_ratio: blas.map(|b| b.best / ours.best),
        blocked: config
            .blockings
            .iter()
            .zip(extra)
            .map(|(bl, t)| BlockedResult {
                blocking: blocking_name(bl),
                gflops: g(t.best),
                median_gflops: g(t.median),
            })
            .collect(),
        role: s.role,
    })
}

/// Runs every shape and measures the peak (with the best tier this CPU has).
pub fn run(config: &GemmBenchConfig) -> Result<GemmReport, TensorError> {
    config.tier.require()?;
    let peak = peak_gflops(config.clock);
    let shapes = config
        .shapes
        .iter()
        .map(|s| bench_shape(config, s))
        .collect::<Result<_, _>>()?;
    let int8 = config
        .int8_shapes
        .iter()
        .map(|s| bench_q8_shape(config, s))
        .collect::<Result<Vec<_>, _>>()?;
    let int8_peak_gops = if int8.is_empty() {
        None
    } else {
        int8_peak_gops(config.tier, config.clock)
    };
    Ok(GemmReport {
        kernel: config.tier.name(),
        peak_gflops: peak,
        clock: match config.clock {
            crate::Clock::Wall => "wall",
            crate::Clock::Thread => "thread",
        },
        blocking: blocking_name(&tensor::default_blocking(config.tier)),
        reference: "matrixmultiply 0.3",
        openblas: openblas_config(),
        shapes,
        int8_kernel: tensor::quant::Int8Kernel::for_tier(config.tier).name(),
        int8_peak_gops,
        int8,
    })
}

/// Best of five runs of the int8 floor loop of `tier`'s kernel
/// ([`tensor::quant::int8_peak_loop`]) on `clock`, or `None` when it has no such loop.
fn int8_peak_gops(tier: Tier, clock: crate::Clock) -> Option<f64> {
    let iters = 1_000_000;
    let ops = tensor::quant::int8_peak_ops(tier, iters) as f64;
    let mut supported = true;
    let best = best_of_five(clock, ops, || {
        supported &= std::hint::black_box(tensor::quant::int8_peak_loop(tier, iters)).is_some();
    });
    supported.then_some(best)
}

/// Runs one shape of the int8 table: f32 `gemm_packed`, int8 with quantization, int8
/// kernel alone, interleaved.
pub fn bench_q8_shape(config: &GemmBenchConfig, s: &GemmShape) -> Result<Q8Result, TensorError> {
    let (a, b) = operands(s);
    let (av, bv) = views(s, &a, &b);
    let tier = config.tier;
    let packed = PackedB::new(tier, bv)?;
    let packed_q8 = PackedQ8::new(tier, bv)?;
    let (mut c32, mut c8, mut ck) = (
        Matrix::zeros(s.m, s.n),
        Matrix::zeros(s.m, s.n),
        Matrix::zeros(s.m, s.n),
    );
    let mut scratch = GemmScratch::new();
    let (mut rows, mut rows_k) = (QuantRows::new(), QuantRows::new());
    // Check each call works before timing it.
    gemm_packed(1.0, av, &packed, 0.0, c32.view_mut(), &mut scratch)?;
    rows.quantize(av)?;
    gemm_q8(&rows, &packed_q8, c8.view_mut())?;
    rows_k.quantize(av)?;
    let mut f32_side =
        || gemm_packed(1.0, av, &packed, 0.0, c32.view_mut(), &mut scratch).expect("checked above");
    let mut int8_side = || {
        rows.quantize(av).expect("checked above");
        gemm_q8(&rows, &packed_q8, c8.view_mut()).expect("checked above")
    };
    let mut kernel_side = || gemm_q8(&rows_k, &packed_q8, ck.view_mut()).expect("checked above");
    let mut sides: Vec<&mut dyn FnMut()> = vec![&mut f32_side, &mut int8_side, &mut kernel_side];
    let t = crate::time_interleaved(config.rounds, config.min_round, config.clock, &mut sides);
    let ops = 2.0 * (s.m * s.n * s.k) as f64;
    let g = |secs: f64| ops / secs / 1e9;
    Ok(Q8Result {
        m: s.m,
        n: s.n,
        k: s.k,
        f32_gflops: g(t[0].best),
        f32_median_gflops: g(t[0].median),
        int8_gops: g(t[1].best),
        int8_median_gops: g(t[1].median),
        kernel_gops: g(t[2].best),
        kernel_median_gops: g(t[2].median),
        ratio: t[0].best / t[1].best,
        role: s.role,
    })
}

/// The int8 table as text (empty when the report has none): one line per shape, best
/// (median) of the rounds.
pub fn int8_table(report: &GemmReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if report.int8.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "int8 GEMM (gemm_q8, kernel {}: {}) against our f32 GEMM on packed weights (gemm_packed); 2 M N K per call",
        report.kernel, report.int8_kernel
    );
    if let Some(p) = report.int8_peak_gops {
        let _ = writeln!(
            out,
            "int8 floor (chains of the kernel's instructions on registers) {p:.0} GOP/s, FP32 peak {:.0} GFLOP/s",
            report.peak_gflops
        );
    }
    let _ = writeln!(
        out,
        "{:>5} {:>5} {:>5} | {:>15} | {:>19} | {:>19} | {:>5} | {:>6} | shape",
        "M",
        "N",
        "K",
        "f32 GFLOP/s",
        "int8 GOP/s, with A q",
        "int8 kernel GOP/s",
        "ratio",
        "% floor"
    );
    for r in &report.int8 {
        let _ = writeln!(
            out,
            "{:>5} {:>5} {:>5} | {:>6.1} ({:>6.1}) | {:>10.1} ({:>6.1}) | {:>10.1} ({:>6.1}) | {:>5.2} | {:>6} | {}",
            r.m,
            r.n,
            r.k,
            r.f32_gflops,
            r.f32_median_gflops,
            r.int8_gops,
            r.int8_median_gops,
            r.kernel_gops,
            r.kernel_median_gops,
            r.ratio,
            report.int8_peak_gops.map_or("-".to_string(), |p| format!(
                "{:.0}%",
                100.0 * r.kernel_gops / p
            )),
            r.role
        );
    }
    out
}

/// Best of five runs of the FMA-loop peak ([`tensor::arch::fma_loop_gflops`]) with the best
/// tier this CPU has, on `clock`.
fn peak_gflops(clock: crate::Clock) -> f64 {
    let (tier, iters) = (Tier::best(), 2_000_000);
    let flops = tensor::arch::fma_loop_flops(tier, iters) as f64;
    best_of_five(clock, flops, || {
        tensor::arch::fma_loop_gflops(tier, iters);
    })
}

/// OpenBLAS's configuration string, when the benchmark was built with it.
fn openblas_config() -> Option<String> {
    #[cfg(feature = "openblas")]
    return Some(openblas::config());
    #[cfg(not(feature = "openblas"))]
    None
}

/// OpenBLAS through its C interface (`cblas-sys` declares it; the system library is linked
/// here), on one thread.
#[cfg(feature = "openblas")]
mod openblas {
    use std::ffi::{CStr, c_char, c_int};
    use std::sync::Once;

    use cblas_sys::{CBLAS_LAYOUT, CBLAS_TRANSPOSE, cblas_sgemm};
    use tensor::{MatMut, MatRef};

    // Links the system OpenBLAS (Debian: libopenblas-dev) and declares the two functions
    // of its own interface that the C BLAS one lacks.
    #[link(name = "openblas")]
    unsafe extern "C" {
        fn openblas_set_num_threads(threads: c_int);
        fn openblas_get_config() -> *const c_char;
    }

    /// One thread, like ours and matrixmultiply (set once, before the first product).
    fn single_thread() {
        static ONCE: Once = Once::new();
        // SAFETY: a plain setter of the library's thread count, called before any product.
        ONCE.call_once(|| unsafe { openblas_set_num_threads(1) });
    }

    /// The library's configuration: version, kernel, build options.
    pub(super) fn config() -> String {
        single_thread();
        // SAFETY: the library returns a pointer to a static NUL-terminated string.
        let s = unsafe { CStr::from_ptr(openblas_get_config()) };
        s.to_string_lossy().into_owned()
    }

    /// How a view is passed to row-major CBLAS: (transposed?, leading dimension).
    fn layout(rows: usize, cols: usize, rs: usize, cs: usize) -> (CBLAS_TRANSPOSE, c_int) {
        if cs == 1 || cols == 1 {
            (CBLAS_TRANSPOSE::CblasNoTrans, rs.max(cols).max(1) as c_int)
        } else if rs == 1 || rows == 1 {
            (CBLAS_TRANSPOSE::CblasTrans, cs.max(rows).max(1) as c_int)
        } else {
            panic!("the benchmark only makes views with one unit stride")
        }
    }

    /// `C = A B` by OpenBLAS's `cblas_sgemm` on our views (each with one unit stride; C
    /// row-major).
    ///
    /// # Panics
    /// If a view has no unit stride or C is not row-major (the benchmark never makes them).
    pub(super) fn sgemm(a: MatRef<'_>, b: MatRef<'_>, c: &mut MatMut<'_>) {
        single_thread();
        let (m, k, n) = (a.rows(), a.cols(), b.cols());
        let (ta, lda) = layout(m, k, a.row_stride(), a.col_stride());
        let (tb, ldb) = layout(k, n, b.row_stride(), b.col_stride());
        assert!(c.col_stride() == 1 || n == 1, "C must be row-major");
        let ldc = c.row_stride().max(n).max(1) as c_int;
        let cp = c.data_mut().as_mut_ptr();
        // SAFETY: the views were validated against their slices, so with these transposes
        // and leading dimensions every element CBLAS addresses lies inside the borrowed
        // buffers; C is uniquely borrowed.
        unsafe {
            cblas_sgemm(
                CBLAS_LAYOUT::CblasRowMajor,
                ta,
                tb,
                m as c_int,
                n as c_int,
                k as c_int,
                1.0,
                a.data().as_ptr(),
                lda,
                b.data().as_ptr(),
                ldb,
                0.0,
                cp,
                ldc,
            )
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_int8_table_has_one_line_per_shape_with_positive_figures() {
        let config = GemmBenchConfig {
            tier: Tier::Portable,
            rounds: 1,
            min_round: Duration::from_micros(100),
            shapes: Vec::new(),
            blockings: Vec::new(),
            clock: crate::Clock::Thread,
            int8_shapes: vec![
                shape(7, 19, 13, false, false, "odd"),
                shape(5, 3, 9, true, true, "transposed"),
            ],
        };
        let report = run(&config).unwrap();
        assert_eq!(report.int8.len(), 2);
        for r in &report.int8 {
            for x in [r.f32_gflops, r.int8_gops, r.kernel_gops, r.ratio] {
                assert!(x > 0.0 && x.is_finite(), "{r:?}");
            }
        }
        let table = int8_table(&report);
        assert!(
            table.contains("transposed") && table.contains("odd"),
            "{table}"
        );
        let none = GemmReport {
            int8: Vec::new(),
            ..report
        };
        assert!(int8_table(&none).is_empty());
    }
}
