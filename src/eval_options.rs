//! The list-metric options of `eval` and `compare` (the Ks, the item weights and the item
//! field, the averaging, the fusion form, its weights and a sweep), parsed into the
//! library's [`ListOptions`], and the printing of an evaluation report (its tables, list
//! metrics and warnings). It depends on no other command module.

use clap::{Args, ValueEnum};
use metrics::{Averaging, EvalReport, FusionKind, ItemWeight};
use resflow::{ItemField, ListOptions};

type Fallible<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// Macro or micro averaging, for the command line.
#[derive(Clone, Copy, Default, ValueEnum)]
pub enum AveragingArg {
    /// The mean of the per-request values (every request counts the same).
    #[default]
    Macro,
    /// Pooled over requests (heavy requests count more).
    Micro,
}

/// A fusion form, for the command line.
#[derive(Clone, Copy, ValueEnum)]
pub enum FusionArg {
    /// `sum_t a_t p_t`.
    Additive,
    /// `prod_t q_t ^ a_t` over the conditional probabilities `q_t = p_t / p_(t-1)`.
    Multiplicative,
}

/// Options of the list metrics (Weighted Recall@K, Recall@K, NDCG@K, list AUC).
#[derive(Args, Clone, Default)]
pub struct ListMetricArgs {
    /// The Ks of the list metrics, comma-separated (the paper: 100).
    #[arg(long = "k", value_delimiter = ',', default_values_t = [10usize, 50, 100])]
    ks: Vec<usize>,
    /// Item weight of Weighted Recall@K: `deepest` (the count of the deepest event, summed
    /// over an item's impressions in a request), `column` (the dataset's weight column), or
    /// `mix:c1,c2,...` (sum_t c_t label_t).
    #[arg(long, default_value = "deepest")]
    item_weight: String,
    /// The single-valued field identifying an item (repeated impressions in a request are
    /// merged), or `none` for rows as items. Default: the schema's item field, if any.
    #[arg(long)]
    item_field: Option<String>,
    /// Averaging over requests.
    #[arg(long, value_enum, default_value = "macro")]
    averaging: AveragingArg,
    /// The fusion Recall@K, NDCG@K and list AUC rank by (WR@K is reported for both).
    /// Default: the model's.
    #[arg(long, value_enum)]
    fusion: Option<FusionArg>,
    /// Fusion weights, one per task, comma-separated. Default: the model's.
    #[arg(long, value_delimiter = ',')]
    fusion_weights: Option<Vec<f32>>,
    /// Fusion weight vectors to sweep, WR@K reported for each under both forms: vectors
    /// separated by commas, weights by colons (e.g. 1:1,1:5,1:20,1:100).
    #[arg(long)]
    fusion_sweep: Option<String>,
}

fn parse_floats(text: &str, sep: char, what: &str) -> Fallible<Vec<f32>> {
    text.split(sep)
        .map(|v| {
            v.trim()
                .parse::<f32>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| format!("{what}: {v:?} is not a finite number").into())
        })
        .collect()
}

impl ListMetricArgs {
    /// The options, parsed (they are checked against the data when applied).
    pub fn to_options(&self) -> Fallible<ListOptions> {
        let mut options = ListOptions::default();
        if !self.ks.is_empty() {
            options.ks = self.ks.clone();
        }
        if options.ks.contains(&0) {
            return Err("--k: every K must be at least 1".into());
        }
        options.item_weight = match self.item_weight.as_str() {
            "" | "deepest" => ItemWeight::DeepestEvent,
            "column" => ItemWeight::Column,
            other => match other.strip_prefix("mix:") {
                Some(c) => ItemWeight::Mix(parse_floats(c, ',', "--item-weight mix")?),
                None => {
                    return Err(format!(
                        "--item-weight {other:?}: expected deepest, column or mix:c1,c2,..."
                    )
                    .into());
                }
            },
        };
        options.item_field = match self.item_field.as_deref() {
            Some("none") => ItemField::Rows,
            Some(f) => ItemField::Named(f.to_string()),
            None => ItemField::Schema,
        };
        options.averaging = match self.averaging {
            AveragingArg::Macro => Averaging::Macro,
            AveragingArg::Micro => Averaging::Micro,
        };
        options.fusion = self.fusion.map(|f| match f {
            FusionArg::Additive => FusionKind::Additive,
            FusionArg::Multiplicative => FusionKind::Multiplicative,
        });
        options.fusion_weights = self.fusion_weights.clone();
        if let Some(s) = &self.fusion_sweep {
            options.fusion_sweep = s
                .split(',')
                .map(|v| parse_floats(v, ':', "--fusion-sweep"))
                .collect::<Fallible<_>>()?;
        }
        Ok(options)
    }
}

/// A library error in the words of these options (`--item-weight column` on data without
/// a weight column); any other error as it is.
pub fn in_option_terms(e: resflow::Error) -> Box<dyn std::error::Error> {
    match e {
        resflow::Error::Run(resflow::RunError::NoWeightColumn) => {
            "--item-weight column: the dataset has no weight column".into()
        }
        e => e.into(),
    }
}

/// Prints an evaluation as a table, then its list metrics.
pub fn print_eval(title: &str, r: &EvalReport) {
    println!("{title} ({} rows)", r.rows);
    println!(
        "{:>12} | {:>7} | {:>7} | {:>8} | {:>11}",
        "task", "AUC", "GAUC", "log loss", "calibration"
    );
    let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
    for t in &r.tasks {
        println!(
            "{:>12} | {:>7} | {:>7} | {:>8.4} | {:>11}",
            t.name,
            f(t.auc),
            f(t.gauc),
            t.logloss,
            f(t.calibration)
        );
    }
    print_list_metrics(r);
}

/// Prints a regression model's evaluation: its errors, and each threshold head's AUC.
pub fn print_regression(title: &str, r: &resflow::regression::RegressionEval) {
    println!(
        "{title} ({} rows): {} MSE {:.3}, MAE {:.3}",
        r.rows, r.target, r.mse, r.mae
    );
    if !r.thresholds.is_empty() {
        let aucs: Vec<String> = r
            .thresholds
            .iter()
            .map(|t| match t.auc {
                Some(a) => format!("{} {a:.4}", t.threshold),
                None => format!("{} -", t.threshold),
            })
            .collect();
        println!("  AUC of P(y > t) per threshold t: {}", aucs.join(", "));
    }
}

fn sorted_ks(m: &std::collections::BTreeMap<String, f64>) -> Vec<&String> {
    let mut ks: Vec<&String> = m.keys().collect();
    ks.sort_by_key(|k| k.parse::<usize>().unwrap_or(usize::MAX));
    ks
}

fn row(m: &std::collections::BTreeMap<String, f64>) -> String {
    sorted_ks(m)
        .iter()
        .map(|k| format!("@{k} {:.4}", m[*k]))
        .collect::<Vec<_>>()
        .join("  ")
}

/// Prints the list metrics of a report (and its warnings, on stderr).
fn print_list_metrics(r: &EvalReport) {
    if let Some(w) = &r.wr_at_k {
        let avg = match w.averaging {
            Averaging::Macro => "macro",
            Averaging::Micro => "micro",
        };
        println!(
            "list metrics over {} of {} requests ({avg} average), fusion weights {:?}:",
            w.groups_used, w.groups_total, w.fusion_weights
        );
        println!(
            "  Weighted Recall, additive fusion:       {}",
            row(&w.additive)
        );
        println!(
            "  Weighted Recall, multiplicative fusion: {}",
            row(&w.multiplicative)
        );
        let name = w.fusion.name();
        println!("  Recall, {name} fusion: {}", row(&w.recall));
        println!("  NDCG, {name} fusion:   {}", row(&w.ndcg));
        println!(
            "  list AUC, {name} fusion: {}",
            w.list_auc.map_or("-".into(), |v| format!("{v:.4}"))
        );
        for p in &w.sweep {
            println!(
                "  sweep {:?}: additive {} | multiplicative {}",
                p.weights,
                row(&p.additive),
                row(&p.multiplicative)
            );
        }
    }
    for warning in &r.warnings {
        eprintln!("warning: {warning}");
    }
}
