//! `resflow bench ...`: reproducible side-by-side benchmarks.

use std::time::Duration;

use clap::{Args, Subcommand};

/// The benchmarks `resflow bench` can run.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Our GEMM against matrixmultiply on the model's shapes (GFLOP/s, ratio, % of peak).
    Gemm(GemmArgs),
    /// Element-wise kernels (sigmoid, tanh, softplus, ReLU): ns per element on the chosen
    /// tier, on the portable tier and with the standard library's functions.
    Ops(OpsArgs),
    /// Scoring latency of one request (1, 100, 500, 2000 candidates), one thread, Ali-CCP layout.
    Score(ScoreArgs),
    /// One tape training step of a 608-128-64-1 tower at batch 1024 against its GEMMs alone.
    Tape(TapeArgs),
    /// AUC over 10 million scores and GAUC over 10 million rows in 100,000 groups.
    Metrics(MetricsArgs),
    /// Batch iteration (rows/s), CSV conversion (MB/s) and checksum cost on synthetic data.
    Shards(ShardsArgs),
    /// Training samples/s on the Ali-CCP layout with 1 and 2 threads.
    Train(TrainBenchArgs),
}

/// Options of `resflow bench train`.
#[derive(Args)]
pub struct TrainBenchArgs {
    /// Print one JSON object on stdout and nothing else.
    #[arg(long)]
    json: bool,
    /// Synthetic rows (one epoch per run).
    #[arg(long, default_value_t = 300_000)]
    rows: usize,
    /// Cap on embedding-table rows.
    #[arg(long, default_value_t = 100_000)]
    max_vocab: u32,
    /// Runs per thread count; the best is reported.
    #[arg(long, default_value_t = 2)]
    runs: usize,
    /// Instead: the cost of each loss balancing (fixed, uncertainty, GradNorm), interleaved,
    /// with 2 threads (1 on a single core); best and median of `--runs` rounds.
    #[arg(long)]
    balancing: bool,
    /// With --balancing, the clock of every step: `wall`, or `thread` (the CPU time of the
    /// one worker's thread, which leaves out the time other processes held the core).
    #[arg(long, default_value = "wall", value_parser = parse_clock)]
    clock: bench::Clock,
}

/// Options of `resflow bench shards`.
#[derive(Args)]
pub struct ShardsArgs {
    /// Print one JSON object on stdout and nothing else.
    #[arg(long)]
    json: bool,
    /// Synthetic rows to generate and iterate.
    #[arg(long, default_value_t = 2_000_000)]
    rows: usize,
}

/// Options of `resflow bench metrics`.
#[derive(Args)]
pub struct MetricsArgs {
    /// Print one JSON object on stdout and nothing else.
    #[arg(long)]
    json: bool,
    /// Rows.
    #[arg(long, default_value_t = 10_000_000)]
    rows: usize,
    /// Groups for GAUC.
    #[arg(long, default_value_t = 100_000)]
    groups: usize,
    /// Runs of each metric; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// Options of `resflow bench tape`.
#[derive(Args)]
pub struct TapeArgs {
    /// Print one JSON object on stdout and nothing else.
    #[arg(long)]
    json: bool,
    /// Batch rows.
    #[arg(long, default_value_t = 1024)]
    batch: usize,
    /// Interleaved rounds; the best is reported.
    #[arg(long, default_value_t = 7)]
    rounds: usize,
}

/// Options of `resflow bench score`.
#[derive(Args)]
pub struct ScoreArgs {
    /// Print one JSON object on stdout and nothing else.
    #[arg(long)]
    json: bool,
    /// Candidates per request (repeatable); default 1, 100, 500 and 2000.
    #[arg(long = "candidates")]
    candidates: Vec<usize>,
    /// Cap on embedding-table rows (the Ali-CCP hash sizes go up to 3.2 million).
    #[arg(long, default_value_t = 100_000)]
    max_vocab: u32,
    /// Timed requests per size (for 100 candidates; scaled down for larger requests).
    #[arg(long, default_value_t = 2000)]
    calls: usize,
    /// Clock of every call: `wall` (elapsed time) or `thread` (CPU time of the scoring
    /// thread, which leaves out the time other processes held the core on a shared machine).
    #[arg(long, default_value = "wall", value_parser = parse_clock)]
    clock: bench::Clock,
    /// Arithmetic of the plan's GEMMs, `f32` or `int8` (repeatable: each is timed in turn
    /// for every size, and every precision but f32 is compared with f32's probabilities
    /// on the same requests); default f32.
    #[arg(long = "precision")]
    precisions: Vec<resflow::Precision>,
}

/// Options of `resflow bench ops`.
#[derive(Args)]
pub struct OpsArgs {
    /// Print one JSON object on stdout and nothing else.
    #[arg(long)]
    json: bool,
    /// Kernel tier (portable, avx2, avx512); default: RESFLOW_KERNEL or the best.
    #[arg(long)]
    kernel: Option<String>,
    /// Elements per call (default: one 1024 x 128 activation).
    #[arg(long, default_value_t = 131_072)]
    len: usize,
    /// Interleaved rounds; the best is reported.
    #[arg(long, default_value_t = 7)]
    rounds: usize,
}

/// Options of `resflow bench gemm`.
#[derive(Args)]
pub struct GemmArgs {
    /// Print one JSON object on stdout and nothing else.
    #[arg(long)]
    json: bool,
    /// Kernel tier for our GEMM (portable, avx2, avx512); default: RESFLOW_KERNEL or the best.
    #[arg(long)]
    kernel: Option<String>,
    /// Interleaved rounds per shape; the best and the median are reported.
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Minimum length of one timed round, in milliseconds.
    #[arg(long, default_value_t = 20)]
    round_ms: u64,
    /// Benchmark these shapes instead of the model's: `M,N,K` or `M,N,K,OP` with OP one of
    /// NN, TN, NT, TT (repeatable).
    #[arg(long = "shape", value_parser = parse_shape)]
    shapes: Vec<bench::gemm::GemmShape>,
    /// Also time ours with this cache blocking, `MC,KC,KC_COLS,NC` (repeatable): how the
    /// tiers' block sizes were chosen. The default is printed in the header.
    #[arg(long = "blocking", value_parser = parse_blocking)]
    blockings: Vec<tensor::Blocking>,
    /// Clock of every round: `wall` (elapsed time) or `thread` (CPU time of the benchmarking
    /// thread, which leaves out the time other processes held the core on a shared machine).
    #[arg(long, default_value = "wall", value_parser = parse_clock)]
    clock: bench::Clock,
}

fn parse_clock(s: &str) -> Result<bench::Clock, String> {
    match s {
        "wall" => Ok(bench::Clock::Wall),
        "thread" => Ok(bench::Clock::Thread),
        _ => Err(format!("expected wall or thread, got {s:?}")),
    }
}

fn parse_blocking(s: &str) -> Result<tensor::Blocking, String> {
    let v: Vec<usize> = s
        .split(',')
        .map(|p| p.trim().parse::<usize>().map_err(|e| format!("{p:?}: {e}")))
        .collect::<Result<_, _>>()?;
    match v[..] {
        [mc, kc, kc_cols, nc] if v.iter().all(|&x| x > 0) => Ok(tensor::Blocking {
            mc,
            kc,
            kc_cols,
            nc,
        }),
        _ => Err(format!(
            "expected MC,KC,KC_COLS,NC, four sizes of at least 1, got {s:?}"
        )),
    }
}

fn parse_shape(s: &str) -> Result<bench::gemm::GemmShape, String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let dims: Vec<usize> = parts
        .iter()
        .take(3)
        .map(|p| p.parse::<usize>().map_err(|e| format!("{p:?}: {e}")))
        .collect::<Result<_, _>>()?;
    if dims.len() != 3 || parts.len() > 4 {
        return Err(format!("expected M,N,K or M,N,K,OP, got {s:?}"));
    }
    let op = parts.get(3).copied().unwrap_or("NN").to_ascii_uppercase();
    let (trans_a, trans_b) = match op.as_str() {
        "NN" => (false, false),
        "TN" => (true, false),
        "NT" => (false, true),
        "TT" => (true, true),
        _ => return Err(format!("operation {op:?} is not one of NN, TN, NT, TT")),
    };
    Ok(bench::gemm::GemmShape {
        m: dims[0],
        n: dims[1],
        k: dims[2],
        trans_a,
        trans_b,
        role: "user shape",
    })
}

/// Runs a benchmark command.
pub fn run(command: BenchCommand) -> Result<(), Box<dyn std::error::Error>> {
    let json = match &command {
        BenchCommand::Gemm(a) => a.json,
        BenchCommand::Ops(a) => a.json,
        BenchCommand::Score(a) => a.json,
        BenchCommand::Tape(a) => a.json,
        BenchCommand::Metrics(a) => a.json,
        BenchCommand::Shards(a) => a.json,
        BenchCommand::Train(a) => a.json,
    };
    // Every figure is labelled with the CPU it was measured on.
    if !json {
        println!("CPU: {}", tensor::Cpu::detect());
    }
    match command {
        BenchCommand::Gemm(args) => gemm(args),
        BenchCommand::Ops(args) => ops(args),
        BenchCommand::Score(args) => score(args),
        BenchCommand::Tape(args) => tape(args),
        BenchCommand::Metrics(args) => metrics(args),
        BenchCommand::Shards(args) => shards_bench(args),
        BenchCommand::Train(args) => train_bench(args),
    }
}

fn train_bench(args: TrainBenchArgs) -> Result<(), Box<dyn std::error::Error>> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads: Vec<usize> = if cores > 1 { vec![1, 2] } else { vec![1] };
    if args.balancing {
        let mut t = *threads.last().expect("a thread count");
        if args.clock == bench::Clock::Thread {
            t = 1;
        }
        let r = bench::train::balancing(
            args.rows.max(1024),
            args.max_vocab.max(4),
            t,
            args.runs,
            &std::env::temp_dir(),
            args.clock,
        )?;
        if args.json {
            print_json(&r)?;
            return Ok(());
        }
        println!(
            "loss balancing, Ali-CCP layout (2 tasks, towers 128-64-1, batch 1024), {} synthetic rows, {t} thread(s), {} rounds, {:?} clock",
            args.rows, args.runs, args.clock
        );
        for b in &r {
            println!(
                "{:<12} best {:>7.0} samples/s, median {:>7.0} samples/s, step cost {:.2}x fixed",
                b.balancing, b.best_samples_per_s, b.median_samples_per_s, b.cost_vs_fixed
            );
        }
        return Ok(());
    }
    let r = bench::train::run(
        args.rows.max(1024),
        args.max_vocab.max(4),
        &threads,
        args.runs,
        &std::env::temp_dir(),
    )?;
    if args.json {
        print_json(&r)?;
        return Ok(());
    }
    println!(
        "training, Ali-CCP layout (19 fields, dim 32, towers 128-64-1, batch 1024, lazy Adam), {} synthetic rows, tables capped at {} rows",
        r.rows, r.max_vocab
    );
    for run in &r.runs {
        let faults = run
            .faults_after_warm_up
            .map_or("unknown".to_string(), |f| f.to_string());
        println!(
            "{} thread(s): {:.0} samples/s, page faults in steps after the second: {faults}",
            run.threads, run.samples_per_s
        );
        let p = &run.phases;
        let ms = |s: f64| 1e3 * s / p.steps.max(1) as f64;
        let waits: Vec<String> = p.waits.iter().map(|&w| format!("{:.2}", ms(w))).collect();
        println!(
            "  ms per step: passes {:.2} (launch {:.2}, waits per worker {}), reduce {:.2}, optimise {:.2}, rest {:.2}",
            ms(p.passes),
            ms(p.launch),
            waits.join(" / "),
            ms(p.reduce),
            ms(p.optimise),
            ms(p.rest)
        );
    }
    println!("speed-up: {:.2}x", r.speedup);
    println!(
        "{} parameters; parameters and Adam moments: {:.2} GB",
        r.parameters,
        r.state_bytes as f64 / 1e9
    );
    Ok(())
}

fn shards_bench(args: ShardsArgs) -> Result<(), Box<dyn std::error::Error>> {
    let r = bench::shards::run(args.rows.max(1), &std::env::temp_dir())?;
    if args.json {
        print_json(&r)?;
        return Ok(());
    }
    println!(
        "{} synthetic rows (Ali-CCP layout), {:.1} MB of shards, one thread, page cache warm",
        r.rows,
        r.dataset_bytes as f64 / 1e6
    );
    println!(
        "iterate batches of 1024, storage order: {:.1} M rows/s",
        r.iterate_sequential_rows_per_s / 1e6
    );
    println!(
        "iterate batches of 1024, shuffled:      {:.1} M rows/s",
        r.iterate_shuffled_rows_per_s / 1e6
    );
    println!("open with checksums:    {:.3} s", r.open_with_checksums_s);
    println!(
        "open without checksums: {:.3} s",
        r.open_without_checksums_s
    );
    println!(
        "convert Ali-CCP CSV:    {:.0} MB/s",
        r.convert_aliccp_mb_per_s
    );
    println!(
        "convert AliExpress CSV: {:.0} MB/s",
        r.convert_aliexpress_mb_per_s
    );
    Ok(())
}

fn metrics(args: MetricsArgs) -> Result<(), Box<dyn std::error::Error>> {
    let r = bench::metrics::run(args.rows.max(2), args.groups.max(1), args.runs);
    if args.json {
        print_json(&r)?;
        return Ok(());
    }
    println!(
        "{} rows, {} groups, one thread, median of {} runs",
        r.rows, r.groups, args.runs
    );
    println!("AUC:                          {:.3} s", r.auc_s);
    println!("GAUC, groups stored together: {:.3} s", r.gauc_contiguous_s);
    println!("GAUC, groups scattered:       {:.3} s", r.gauc_scattered_s);
    Ok(())
}

fn tape(args: TapeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let r = bench::tape::run(args.batch.max(1), &[608, 128, 64], args.rounds.max(1));
    if args.json {
        print_json(&r)?;
        return Ok(());
    }
    println!(
        "one tower training step (forward + backward), batch {}, widths {:?} -> 1, one thread, best of {} rounds",
        r.batch, r.widths, args.rounds
    );
    println!(
        "tape step:        {:.3} ms ({:.0} samples/s)",
        r.step_ms, r.samples_per_s
    );
    println!("its GEMMs alone:  {:.3} ms", r.gemm_ms);
    println!(
        "tape overhead:    {:.1}% of the step",
        100.0 * r.overhead_share
    );
    Ok(())
}

fn score(args: ScoreArgs) -> Result<(), Box<dyn std::error::Error>> {
    let sizes = if args.candidates.is_empty() {
        vec![1, 100, 500, 2000]
    } else {
        args.candidates
    };
    let precisions = if args.precisions.is_empty() {
        vec![resflow::Precision::F32]
    } else {
        args.precisions
    };
    let report = bench::score::run(
        &sizes,
        &precisions,
        args.max_vocab.max(1),
        args.calls.max(1),
        args.clock,
    )?;
    if args.json {
        print_json(&report)?;
        return Ok(());
    }
    println!(
        "scoring one request, one thread, Ali-CCP layout (19 fields, dim 32, towers 128-64-1, 2 tasks), kernel {}, tables capped at {} rows, {} clock",
        report.kernel, report.max_vocab, report.clock
    );
    println!(
        "{:>10} | {:>9} | {:>8} | {:>8} | {:>22} | {:>12} | {:>17}",
        "candidates",
        "precision",
        "p50 ms",
        "p99 ms",
        "p50 ms, no field split",
        "candidates/s",
        "max |p - p_f32|"
    );
    for r in &report.requests {
        let deviation = r
            .deviation
            .map_or("-".to_string(), |d| format!("{:.2e}", d.max_abs));
        println!(
            "{:>10} | {:>9} | {:>8.3} | {:>8.3} | {:>22.3} | {:>12.0} | {:>17}",
            r.candidates,
            r.precision,
            r.p50_ms,
            r.p99_ms,
            r.p50_no_split_ms,
            r.candidates_per_s,
            deviation
        );
    }
    Ok(())
}

/// Prints a report as one line of JSON; an object report gains a `cpu` field (the
/// [`tensor::Cpu`] it was measured on).
fn print_json<T: serde::Serialize>(report: &T) -> Result<(), serde_json::Error> {
    let mut value = serde_json::to_value(report)?;
    if let serde_json::Value::Object(fields) = &mut value {
        fields.insert("cpu".into(), serde_json::to_value(tensor::Cpu::detect())?);
    }
    println!("{value}");
    Ok(())
}

fn tier(kernel: &Option<String>) -> Result<tensor::Tier, tensor::TensorError> {
    match kernel {
        Some(name) => tensor::Tier::parse(name)?.require(),
        None => tensor::Tier::from_env(),
    }
}

fn ops(args: OpsArgs) -> Result<(), Box<dyn std::error::Error>> {
    let report = bench::ops::run(tier(&args.kernel)?, args.len.max(1), args.rounds.max(1));
    if args.json {
        print_json(&report)?;
        return Ok(());
    }
    println!(
        "element-wise kernels, {} elements, kernel {}: ns per element (best of {} rounds)",
        report.len, report.kernel, args.rounds
    );
    println!(
        "{:>9} | {:>7} | {:>8} | {:>7} | {:>10}",
        "op", "ours", "portable", "std", "std / ours"
    );
    for r in &report.ops {
        println!(
            "{:>9} | {:>7.3} | {:>8.3} | {:>7.3} | {:>10.1}",
            r.op,
            r.ours_ns,
            r.portable_ns,
            r.std_ns,
            r.std_ns / r.ours_ns
        );
    }
    Ok(())
}

fn gemm(args: GemmArgs) -> Result<(), Box<dyn std::error::Error>> {
    let tier = tier(&args.kernel)?;
    // The int8 table runs on the shapes asked for, or on the scoring shapes.
    let int8_shapes = if args.shapes.is_empty() {
        bench::gemm::Q8_SHAPES.to_vec()
    } else {
        args.shapes.clone()
    };
    let config = bench::gemm::GemmBenchConfig {
        tier,
        rounds: args.rounds.max(1),
        min_round: Duration::from_millis(args.round_ms.max(1)),
        shapes: if args.shapes.is_empty() {
            bench::gemm::SHAPES.to_vec()
        } else {
            args.shapes
        },
        blockings: args.blockings,
        clock: args.clock,
        int8_shapes,
    };
    if !args.json {
        eprintln!(
            "measuring peak and {} shapes on kernel {tier} ...",
            config.shapes.len()
        );
    }
    let report = bench::gemm::run(&config)?;
    if args.json {
        print_json(&report)?;
        return Ok(());
    }
    println!(
        "GEMM, one thread, kernel {} (blocking {}), measured FP32 peak {:.0} GFLOP/s; best (median) of {} interleaved rounds, {} clock",
        report.kernel, report.blocking, report.peak_gflops, config.rounds, report.clock
    );
    println!("mm: {}", report.reference);
    if let Some(blas) = &report.openblas {
        println!("OpenBLAS: {blas}");
    }
    let blas = report.openblas.is_some();
    let mut header = format!(
        "{:>5} {:>5} {:>5} {:>3} | {:>15} | {:>15} | {:>5} |",
        "M", "N", "K", "op", "ours GFLOP/s", "mm GFLOP/s", "ratio"
    );
    if blas {
        header += &format!(" {:>15} | {:>5} |", "OpenBLAS", "ratio");
    }
    for b in &config.blockings {
        header += &format!(" {:>15} |", bench::gemm::blocking_name(b));
    }
    println!("{header} {:>6} | shape", "% peak");
    for r in &report.shapes {
        let op = format!(
            "{}{}",
            if r.trans_a { 'T' } else { 'N' },
            if r.trans_b { 'T' } else { 'N' }
        );
        let mut line = format!(
            "{:>5} {:>5} {:>5} {:>3} | {:>6.1} ({:>6.1}) | {:>6.1} ({:>6.1}) | {:>5.2} |",
            r.m,
            r.n,
            r.k,
            op,
            r.ours_gflops,
            r.ours_median_gflops,
            r.reference_gflops,
            r.reference_median_gflops,
            r.ratio,
        );
        if let (Some(g), Some(med), Some(ratio)) = (
            r.openblas_gflops,
            r.openblas_median_gflops,
            r.openblas_ratio,
        ) {
            line += &format!(" {g:>6.1} ({med:>6.1}) | {ratio:>5.2} |");
        }
        for b in &r.blocked {
            line += &format!(" {:>6.1} ({:>6.1}) |", b.gflops, b.median_gflops);
        }
        println!(
            "{line} {:>5.1}% | {}",
            100.0 * r.ours_gflops / report.peak_gflops,
            r.role
        );
    }
    print!("{}", bench::gemm::int8_table(&report));
    Ok(())
}
