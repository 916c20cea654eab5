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
    let options = CompareOptions {
        models: args.models.clone(),
        seeds: parse_seeds(&args.seeds)?,
        epochs: args.epochs,
        threads: threads(args.threads),
        latency_calls: args.latency_calls,
        list: args.list.to_options()?,
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
        let mut row = vec![m.model.clone()];
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
    if k.is_some() {
        println!(
            "\nWR@K: the share of each group's deepest-event weight ranked in its top K by the fused score (additive or multiplicative fusion; see docs/metrics.md). Latency (p50, one thread, 500 candidates): \"serve\" through the scorer (ResFlow's fused path, the baselines' generic one), \"tape\" the inference forward pass on the autodiff tape, the same engine for every model."
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
