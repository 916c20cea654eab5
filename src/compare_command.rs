//! `resflow compare`: ResFlow against the baseline multi-task models, each trained on the
//! same data with the same seeds, in one table (and a JSON report). The experiment is the
//! library's (`resflow::compare`); this module parses the options and prints the table.

use std::path::PathBuf;

use clap::Args;
use resflow::{CompareOptions, CompareReport};

use crate::common::{Bar, Fallible, open, read_config, synthetic_funnel, threads, write_json};
use crate::eval_options::in_option_terms;

/// Options of `resflow compare`.
#[derive(Args)]
pub struct CompareArgs {
    /// Training dataset (shards). Without it, a synthetic funnel of --rows rows is generated.
    #[arg(long, requires = "eval")]
    train: Option<PathBuf>,
    /// Evaluation dataset (shards).
    #[arg(long, requires = "train")]
    eval: Option<PathBuf>,
    /// Models to compare, comma-separated (default: every kind the data's tasks allow;
    /// ESMM, ESCM2 and DCMT need exactly two).
    #[arg(long, value_delimiter = ',')]
    models: Option<Vec<String>>,
    /// Seeds per model: a count N (seeds 1, 2, ..., N) or a comma-separated list (e.g.
    /// 7,11,13; a single seed as a list: 7,). Initialisation and batch order change with
    /// the seed.
    #[arg(long, default_value = "3")]
    seeds: String,
    /// Loss balancings to compare, comma-separated (fixed, uncertainty, gradnorm): each
    /// model is trained once per balancing with the same seeds (default: the
    /// configuration's own balancing only).
    #[arg(long, value_delimiter = ',')]
    loss_balancing: Option<Vec<String>>,
    /// Epochs per run (overrides the configuration).
    #[arg(long)]
    epochs: Option<usize>,
    /// Shared settings (JSON, as for `train`); each model's kind and its defaults are set on
    /// top. If it has a `model` key, that kind keeps the sizes given there (e.g.
    /// `{"model": {"kind": "mmoe", "experts": 8}}`); every other kind uses its defaults.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Worker threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// Training rows of the synthetic funnel (without --train; a quarter as many for evaluation).
    #[arg(long, default_value_t = 200_000)]
    rows: usize,
    /// Tasks of the synthetic funnel (without --train): 2 (click, conversion) or 3 (click,
    /// cart, order).
    #[arg(long, default_value_t = 2, conflicts_with = "train")]
    tasks: usize,
    /// Scoring calls timed per model (requests of 500 candidates, one thread).
    #[arg(long, default_value_t = 200)]
    latency_calls: usize,
    /// Write the JSON report here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// List-metric options.
    #[command(flatten)]
    list: crate::eval_options::ListMetricArgs,
    /// Compare regression models of a continuous target instead: ResFlow's chained
    /// thresholds, independent towers over the same thresholds, and direct regression
    /// (MSE and MAE). Without --train, on the generated play-time dataset (--rows rows).
    #[arg(long, conflicts_with_all = ["tasks", "latency_calls"])]
    regression: bool,
    /// With --regression: the target column (default: the data's only continuous target).
    #[arg(long, requires = "regression")]
    target: Option<String>,
    /// With --regression: write each model's first-seed model file here
    /// (`<model>.safetensors`; the directory must exist).
    #[arg(long, requires = "regression")]
    save: Option<PathBuf>,
}

/// The seeds of `--seeds`: a count `N` gives `1..=N`, a comma-separated list itself.
fn parse_seeds(text: &str) -> Result<Vec<u64>, String> {
    let bad = || format!("--seeds {text:?}: expected a count (3) or a list of seeds (7,11,13)");
    if text.contains(',') {
        let seeds: Vec<u64> = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<u64>().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        let mut distinct = seeds.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if seeds.is_empty() || distinct.len() != seeds.len() {
            return Err(format!(
                "--seeds {text:?}: give at least one seed, each once"
            ));
        }
        Ok(seeds)
    } else {
        match text.trim().parse::<u64>() {
            Ok(0) => Err("--seeds must be at least 1".into()),
            Ok(n) if n > resflow::compare::MAX_SEEDS as u64 => Err(format!(
                "--seeds {n}: at most {} runs per model",
                resflow::compare::MAX_SEEDS
            )),
            Ok(n) => Ok((1..=n).collect()),
            Err(_) => Err(bad()),
        }
    }
}

/// Runs `resflow compare`.
pub fn compare(args: CompareArgs) -> Fallible {
    if args.regression {
        return compare_regression(args);
    }
    let options = CompareOptions {
        models: args.models.clone(),
        seeds: parse_seeds(&args.seeds)?,
        epochs: args.epochs,
        threads: threads(args.threads),
        latency_calls: args.latency_calls,
        list: args.list.to_options()?,
        balancing: args.loss_balancing.clone(),
    };
    options.check()?;
    let config = args.config.as_deref().map(read_config).transpose()?;
    let report = match (&args.train, &args.eval) {
        (Some(t), Some(e)) => {
            resflow::compare(&open(t)?, &open(e)?, config, &options, &mut Bar::default())
        }
        _ => {
            let funnel = synthetic_funnel(args.rows, args.tasks)?;
            resflow::compare(
                &funnel.train,
                &funnel.eval,
                config,
                &options,
                &mut Bar::default(),
            )
        }
    }
    .map_err(in_option_terms)?;
    print_table(&report);
    if let Some(path) = &args.report {
        write_json(path, &report)?;
        println!("report written to {}", path.display());
    }
    Ok(())
}

/// Runs `resflow compare --regression`.
fn compare_regression(args: CompareArgs) -> Fallible {
    use resflow::regression::{PlayTimeSets, compare};
    let seeds = parse_seeds(&args.seeds)?;
    let config = args.config.as_deref().map(read_config).transpose()?;
    let threads = threads(args.threads);
    if let Some(dir) = &args.save
        && !dir.is_dir()
    {
        return Err(format!("--save {}: not a directory", dir.display()).into());
    }
    let run = |train: &shards::Dataset, eval: &shards::Dataset| {
        compare(
            train,
            eval,
            config.clone(),
            args.target.as_deref(),
            args.models.as_deref(),
            &seeds,
            args.epochs,
            threads,
            args.save.as_deref(),
            &mut Bar::default(),
        )
    };
    let (report, floor) = match (&args.train, &args.eval) {
        (Some(t), Some(e)) => (run(&open(t)?, &open(e)?)?, None),
        _ => {
            eprintln!(
                "generating the play-time dataset: {} training rows, {} evaluation rows",
                args.rows.max(1000),
                (args.rows / 4).max(1000)
            );
            let sets = PlayTimeSets::generate(args.rows)?;
            (run(&sets.train, &sets.eval)?, Some(sets.eval_info.clone()))
        }
    };
    println!(
        "\n{}: {} seed(s) (mean ± standard deviation), {threads} threads",
        report.target,
        seeds.len()
    );
    println!(
        "{:>12} | {:>5} | {:>20} | {:>16} | {:>9}",
        "model", "heads", "MSE", "MAE", "samples/s"
    );
    for r in &report.runs {
        println!(
            "{:>12} | {:>5} | {:>20} | {:>16} | {:>9.0}",
            r.name,
            r.heads,
            r.mse.show(1),
            r.mae.show(2),
            r.samples_per_s
        );
    }
    println!(
        "{:>12} | {:>5} | {:>20.1} | {:>16.2} |",
        "constant", "-", report.constant.mse, report.constant.mae
    );
    if let Some(f) = &floor {
        println!(
            "{:>12} | {:>5} | {:>20.1} | {:>16.2} |   (E[y|x] itself; expected MSE floor {:.1})",
            "oracle", "-", f.oracle_mse, f.oracle_mae, f.floor_mse
        );
    }
    if let Some(path) = &args.report {
        write_json(path, &report)?;
        println!("report written to {}", path.display());
    }
    Ok(())
}

fn print_table(r: &CompareReport) {
    println!(
        "\n{} training rows, {} evaluation rows, {} epoch(s), {} seed(s) (mean ± standard deviation), {} threads, kernel {}",
        r.train_rows,
        r.eval_rows,
        r.epochs,
        r.seeds.len(),
        r.threads,
        r.kernel
    );
    let Some(first) = r.models.first() else {
        return;
    };
    let k = first.wr_additive.keys().next().cloned();
    let mut header = vec!["model".to_string()];
    for t in &first.tasks {
        header.push(format!("{} AUC", t.name));
        header.push(format!("{} GAUC", t.name));
    }
    if let Some(k) = &k {
        header.push(format!("WR@{k} add"));
        header.push(format!("WR@{k} mul"));
    }
    for h in [
        "dense params",
        "MACs/cand",
        "samples/s",
        "serve ms @500",
        "tape ms @500",
    ] {
        header.push(h.to_string());
    }
    let mut rows = vec![header];
    for m in &r.models {
        let mut row = vec![if r.models.iter().all(|m| m.loss_balancing == "fixed") {
            m.model.clone()
        } else {
            format!("{} ({})", m.model, m.loss_balancing)
        }];
        for t in &m.tasks {
            row.push(t.auc.show(4));
            row.push(t.gauc.show(4));
        }
        if let Some(k) = &k {
            for map in [&m.wr_additive, &m.wr_multiplicative] {
                row.push(map.get(k).map_or("-".into(), |s| s.show(4)));
            }
        }
        row.push(m.dense_parameters.to_string());
        row.push(m.multiply_adds_per_candidate.to_string());
        row.push(format!("{:.0}", m.samples_per_s.mean));
        row.push(format!("{:.3}", m.score_500_p50_ms.mean));
        row.push(format!("{:.3}", m.tape_500_p50_ms.mean));
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, &w)| format!("{cell:>w$}"))
            .collect();
        println!("{}", cells.join(" | "));
    }
    if r.models.iter().any(|m| m.loss_balancing != "fixed") {
        println!("\nloss weights at the end of training (mean over seeds, per task):");
        for m in &r.models {
            let w: Vec<String> = m
                .final_loss_weights
                .iter()
                .map(|s| format!("{:.4}", s.mean))
                .collect();
            println!("  {} ({}): {}", m.model, m.loss_balancing, w.join(", "));
        }
    }
    if k.is_some() {
        println!(
            "\nWR@K: the share of each group's deepest-event weight ranked in its top K by the fused score (additive or multiplicative fusion; see docs/metrics.md). Latency (p50, one thread, 500 candidates): \"serve\" through the scorer (one compiled serving plan for every model), \"tape\" the inference forward pass on the autodiff tape, the same engine for every model."
        );
    }
}

#[cfg(test)]
mod tests {
    use super::parse_seeds;

    #[test]
    fn seeds_as_a_count_or_a_list() {
        assert_eq!(parse_seeds("3").unwrap(), vec![1, 2, 3]);
        assert_eq!(parse_seeds("7,11, 13").unwrap(), vec![7, 11, 13]);
        assert_eq!(parse_seeds("7,").unwrap(), vec![7]);
        for bad in ["0", "x", "1,1", ",", "2,b"] {
            assert!(parse_seeds(bad).is_err(), "{bad}");
        }
    }
}
