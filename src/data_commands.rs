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
    /// Generate the play-time regression dataset instead (a continuous target with a known
    /// generating function; prints its error floor).
    #[arg(long, conflicts_with_all = ["tasks", "csv", "click_rate", "conversion_rate"])]
    play_time: bool,
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
    /// Ali-CCP, the released code's columns (labels click,conversion or the authors'
    /// ctr_label,cvr_label, fields 205 ... 129, bags 210 and 853).
    Aliccp,
    /// AliExpress: search_id, categorical_1..16, numerical_1..63, click, conversion.
    Aliexpress,
    /// Any CSV or Parquet file, described by a JSON spec given with --schema.
    Csv,
}

/// Options of `resflow convert`.
#[derive(Args)]
pub struct ConvertArgs {
    /// Input layout.
    #[arg(long, value_enum)]
    layout: Layout,
    /// CSV file (with a header line) or Parquet file (recognised by its first bytes; the
    /// column names are its schema's top-level fields, list columns are bags).
    #[arg(long)]
    input: PathBuf,
    /// Column spec (JSON) for --layout csv; see docs/shards.md.
    #[arg(long)]
    schema: Option<PathBuf>,
    /// Output directory (must not exist, or be empty).
    #[arg(long)]
    out: PathBuf,
    /// Label columns in chain order, as task=column (or column): e.g.
    /// click=ctr_label,conversion=cvr_label. Without it a layout recognises its usual label
    /// columns and refuses anything else.
    #[arg(long)]
    labels: Option<String>,
    /// Treat a later task positive without the earlier one (a conversion without a click) as an error.
    #[arg(long, conflicts_with = "drop_funnel_violations")]
    strict: bool,
    /// Drop rows with a later task positive without the earlier one (a conversion without a
    /// click), as the authors' preprocessing does.
    #[arg(long)]
    drop_funnel_violations: bool,
    /// AliExpress: cut every numerical column into ids at this many training-set quantiles
    /// (the authors: 99 percentiles) instead of feeding it as a dense feature.
    #[arg(long)]
    quantiles: Option<u32>,
    /// Keep dense columns raw instead of standardising them with the data's mean and std.
    #[arg(long)]
    raw_dense: bool,
    /// A converted training set whose vocabularies, cut points and dense statistics are
    /// applied to this file (convert a test set with it).
    #[arg(long)]
    vocab_from: Option<PathBuf>,
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
    resflow::OutputPlan::new()
        .dir("--out", Some(&args.out), &[])
        .file("--csv", args.csv.as_deref())
        .check()?;
    if args
        .csv
        .as_deref()
        .is_some_and(|c| c.starts_with(&args.out))
    {
        return Err(
            "--csv must not be inside --out (a dataset directory holds only its shards)".into(),
        );
    }
    if args.play_time {
        let config = shards::playtime::PlayTimeConfig {
            rows: args.rows,
            seed: args.seed,
            teacher_seed: args.teacher_seed,
            max_vocab: args.max_vocab,
            ..Default::default()
        };
        let p = shards::playtime::generate(&config, &args.out)?;
        println!(
            "wrote {} rows in {} shards to {} (continuous target: {})",
            p.info.rows,
            p.info.shards,
            p.info.dir.display(),
            shards::playtime::TARGET
        );
        println!(
            "target mean {:.2}, variance {:.1} (the best constant's MSE); error floor E[m^2]/2 = {:.1} \
             (the conditional mean's MSE on these rows: {:.1}, MAE {:.2})",
            p.target_mean, p.target_variance, p.floor_mse, p.oracle_mse, p.oracle_mae
        );
        return Ok(());
    }
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
        ConvertOptions, CsvSpec, LabelColumn, aliccp_spec, aliexpress_spec_for, convert,
        read_header, relabel,
    };
    let mut plan = resflow::OutputPlan::new().input("--input", &args.input);
    if let Some(s) = &args.schema {
        plan = plan.input("--schema", s);
    }
    plan.dir("--out", Some(&args.out), &[]).check()?;
    if args.schema.is_some() && !matches!(args.layout, Layout::Csv) {
        return Err(
            "--schema is read only with --layout csv; the other layouts have fixed columns".into(),
        );
    }
    let labels = args
        .labels
        .as_deref()
        .map(LabelColumn::parse_list)
        .transpose()?;
    if args.quantiles.is_some() && !matches!(args.layout, Layout::Aliexpress) {
        return Err(
            "--quantiles applies to the AliExpress layout; with --layout csv give \"quantiles\" per column in the spec"
                .into(),
        );
    }
    let header = read_header(&args.input)?;
    let mut spec = match args.layout {
        Layout::Aliexpress => aliexpress_spec_for(&header, labels.as_deref(), args.quantiles)?,
        Layout::Aliccp => aliccp_spec(&header, labels.as_deref())?,
        Layout::Csv => {
            let path = args.schema.ok_or(
                "--layout csv needs --schema FILE, a JSON column spec (see docs/shards.md)",
            )?;
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let spec = serde_json::from_str::<CsvSpec>(&text)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            relabel(spec, labels.as_deref())
        }
    };
    if args.raw_dense {
        spec.standardize = false;
    }
    let reuse = match &args.vocab_from {
        None => None,
        Some(dir) => Some(shards::Dataset::open(dir)?.schema().clone()),
    };
    let start = std::time::Instant::now();
    if args.rows_per_shard == 0 {
        return Err("--rows-per-shard must be at least 1".into());
    }
    let options = ConvertOptions {
        strict: args.strict,
        drop_funnel_violations: args.drop_funnel_violations,
        rows_per_shard: args.rows_per_shard,
        reuse,
    };
    let report = convert(&args.input, &spec, &args.out, options)?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "converted {} rows ({:.1} MB, {:.0} MB/s) into {} shards in {} (tasks: {})",
        report.info.rows,
        report.bytes as f64 / 1e6,
        report.bytes as f64 / 1e6 / secs.max(1e-9),
        report.info.shards,
        report.info.dir.display(),
        report.info.schema.tasks.join(", ")
    );
    if report.info.schema.dense.mean.is_some() && report.info.schema.dense.count > 0 {
        println!(
            "{} dense columns standardised with {} mean and std (stored in schema.json)",
            report.info.schema.dense.count,
            if args.vocab_from.is_some() {
                "the training set's"
            } else {
                "this file's"
            }
        );
    }
    for c in &report.columns {
        match c.encoding {
            "hash" if c.collisions > 0 => eprintln!(
                "warning: column {}: {} of {} distinct values share a hash bucket with another ({} buckets); a larger hash_buckets or \"vocabulary\": true avoids it",
                c.column, c.collisions, c.distinct, c.ids
            ),
            "ids" if c.unknown > 0 => eprintln!(
                "warning: column {}: {} ids beyond the training set's {} mapped to the unknown id 0",
                c.column, c.unknown, c.ids
            ),
            "vocabulary" => println!(
                "column {}: vocabulary of {} ids ({} values below min_count); {} cells mapped to the unknown id 0",
                c.column, c.ids, c.rare, c.unknown
            ),
            _ => {}
        }
    }
    if report.dropped_rows > 0 {
        println!(
            "dropped {} rows with a later task positive without the earlier one",
            report.dropped_rows
        );
    } else if report.funnel_violations > 0 {
        eprintln!(
            "warning: {} rows have a later task positive without the earlier one (kept; --drop-funnel-violations drops them, --strict refuses them)",
            report.funnel_violations
        );
    }
    Ok(())
}
