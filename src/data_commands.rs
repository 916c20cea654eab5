//! `resflow gen` and `resflow convert`: producing datasets.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// Options of `resflow gen`.
#[derive(Args)]
pub struct GenArgs {
    /// Rows (impressions) to generate.
    #[arg(long, default_value_t = 200_000)]
    rows: usize,
    /// Sampling seed: the same seed writes the same bytes; another seed draws another
    /// sample of the same world (use it for an evaluation set).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seed of the hidden teacher (the world); keep it equal for train and evaluation sets.
    #[arg(long, default_value_t = 2024)]
    teacher_seed: u64,
    /// Output directory (new or empty).
    #[arg(long)]
    out: PathBuf,
    /// 2 tasks (click, conversion) or 3 (click, cart, order).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(2..=3))]
    tasks: u8,
    /// Cap on every field's vocabulary.
    #[arg(long, default_value_t = 2_000)]
    max_vocab: u32,
    /// Target click rate.
    #[arg(long, default_value_t = 0.04)]
    click_rate: f64,
    /// Target rate of the deepest task given a click.
    #[arg(long, default_value_t = 0.15)]
    conversion_rate: f64,
    /// Also write the rows as an Ali-CCP-layout CSV file.
    #[arg(long)]
    csv: Option<PathBuf>,
}

/// The CSV layouts `convert` understands.
#[derive(Clone, Copy, ValueEnum)]
pub enum Layout {
    /// Ali-CCP, the released code's columns (click, conversion, fields 205 ... 129, bags 210 and 853).
    Aliccp,
    /// AliExpress: search_id, categorical_1..16, numerical_1..63, click, conversion.
    Aliexpress,
    /// Any CSV, described by a JSON spec given with --schema.
    Csv,
}

/// Options of `resflow convert`.
#[derive(Args)]
pub struct ConvertArgs {
    /// Input layout.
    #[arg(long, value_enum)]
    layout: Layout,
    /// CSV file (with a header line).
    #[arg(long)]
    input: PathBuf,
    /// Column spec (JSON) for --layout csv; see docs/shards.md.
    #[arg(long)]
    schema: Option<PathBuf>,
    /// Output directory (must not exist, or be empty).
    #[arg(long)]
    out: PathBuf,
    /// Treat a later task positive without the earlier one (a conversion without a click) as an error.
    #[arg(long)]
    strict: bool,
    /// Rows per shard file.
    #[arg(long, default_value_t = 65_536)]
    rows_per_shard: usize,
}

/// Options of `resflow manifest`.
#[derive(Args)]
pub struct ManifestArgs {
    /// Dataset directory without a manifest.json (written by an older resflow): every shard
    /// in it is validated against its schema.json and recorded as the complete set.
    #[arg(long)]
    data: PathBuf,
}

/// Runs `resflow manifest`.
pub fn manifest_command(args: ManifestArgs) -> Result<(), Box<dyn std::error::Error>> {
    let m = shards::Manifest::rebuild(&args.data)?;
    println!(
        "recorded {} shards ({} rows) in {}",
        m.shards.len(),
        m.rows,
        args.data.join(shards::MANIFEST_FILE).display()
    );
    Ok(())
}

/// Runs `resflow gen`.
pub fn gen_command(args: GenArgs) -> Result<(), Box<dyn std::error::Error>> {
    let config = shards::synth::SynthConfig {
        rows: args.rows,
        seed: args.seed,
        teacher_seed: args.teacher_seed,
        tasks: args.tasks as usize,
        max_vocab: args.max_vocab,
        click_rate: args.click_rate,
        conversion_rate: args.conversion_rate,
        ..Default::default()
    };
    let info = shards::synth::generate(&config, &args.out)?;
    println!(
        "wrote {} rows in {} shards to {} (tasks: {})",
        info.rows,
        info.shards,
        info.dir.display(),
        info.schema.tasks.join(", ")
    );
    if let Some(csv) = args.csv {
        shards::synth::write_csv(&config, &csv)?;
        println!("wrote the same rows as CSV to {}", csv.display());
    }
    Ok(())
}

/// Runs `resflow convert`.
pub fn convert_command(args: ConvertArgs) -> Result<(), Box<dyn std::error::Error>> {
    use shards::convert::{
        ConvertOptions, CsvSpec, aliccp_spec, aliexpress_spec, convert_csv, read_header,
    };
    if args.schema.is_some() && !matches!(args.layout, Layout::Csv) {
        return Err(
            "--schema is read only with --layout csv; the other layouts have fixed columns".into(),
        );
    }
    let spec = match args.layout {
        Layout::Aliexpress => aliexpress_spec(),
        Layout::Aliccp => aliccp_spec(&read_header(&args.input)?),
        Layout::Csv => {
            let path = args.schema.ok_or(
                "--layout csv needs --schema FILE, a JSON column spec (see docs/shards.md)",
            )?;
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            serde_json::from_str::<CsvSpec>(&text)
                .map_err(|e| format!("{}: {e}", path.display()))?
        }
    };
    let start = std::time::Instant::now();
    if args.rows_per_shard == 0 {
        return Err("--rows-per-shard must be at least 1".into());
    }
    let options = ConvertOptions {
        strict: args.strict,
        rows_per_shard: args.rows_per_shard,
    };
    let report = convert_csv(&args.input, &spec, &args.out, options)?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "converted {} rows ({:.1} MB, {:.0} MB/s) into {} shards in {}",
        report.info.rows,
        report.bytes as f64 / 1e6,
        report.bytes as f64 / 1e6 / secs.max(1e-9),
        report.info.shards,
        report.info.dir.display()
    );
    if report.funnel_violations > 0 {
        eprintln!(
            "warning: {} rows have a later task positive without the earlier one (kept; use --strict to refuse them)",
            report.funnel_violations
        );
    }
    Ok(())
}
