//! The built-in CSV layouts (AliExpress, Ali-CCP) as [`CsvSpec`]s, and the label mapping
//! every layout takes.
//!
//! A layout knows its feature columns; its label columns are either given explicitly
//! (`task=column` pairs, in chain order) or recognised in the header among the sets the
//! layout's public files and the authors' pipeline use. Any other column the layout does
//! not know is an error that names it, so a misnamed or extra label column can never
//! silently change the tasks.

use crate::error::{Result, ShardError};
use crate::schema::Pooling;

use super::{BagSpec, ColumnSpec, CsvSpec};

/// One task and the column holding its label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelColumn {
    /// The task's name in the dataset schema (`click`, `conversion`, ...).
    pub task: String,
    /// The CSV column.
    pub column: String,
}

impl LabelColumn {
    /// Parses `task=column`, or a bare `column` (the task takes the column's name).
    pub fn parse(text: &str) -> Result<Self> {
        let (task, column) = match text.split_once('=') {
            Some((t, c)) => (t.trim(), c.trim()),
            None => (text.trim(), text.trim()),
        };
        if task.is_empty() || column.is_empty() {
            return Err(ShardError::Schema(format!(
                "label mapping {text:?}: expected task=column or column"
            )));
        }
        Ok(Self {
            task: task.into(),
            column: column.into(),
        })
    }

    /// Parses a comma-separated list of mappings.
    pub fn parse_list(text: &str) -> Result<Vec<Self>> {
        text.split(',').map(Self::parse).collect()
    }
}

/// The Ali-CCP label column sets recognised in a header, with their task names.
pub const ALICCP_LABEL_SETS: [(&[&str], &[&str]); 3] = [
    (&["click", "conversion"], &["click", "conversion"]),
    // The authors' preprocessing writes these; cvr_label marks click-and-convert.
    (&["ctr_label", "cvr_label"], &["click", "conversion"]),
    (&["click", "cart", "order"], &["click", "cart", "order"]),
];

/// The AliExpress label columns.
pub const ALIEXPRESS_LABELS: [&str; 2] = ["click", "conversion"];

fn describe(sets: &[&[&str]]) -> String {
    sets.iter()
        .map(|s| s.join(","))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// Resolves the label columns of a layout: `explicit` when given (each column must be in
/// the header), else exactly one of `sets` found in the header's non-feature columns.
fn resolve_labels(
    layout: &str,
    header: &[String],
    known: &dyn Fn(&str) -> bool,
    sets: &[(&[&str], &[&str])],
    explicit: Option<&[LabelColumn]>,
) -> Result<(Vec<String>, Vec<String>)> {
    let candidates: Vec<&str> = header
        .iter()
        .map(String::as_str)
        .filter(|c| !known(c))
        .collect();
    if let Some(m) = explicit {
        if m.is_empty() {
            return Err(ShardError::Schema("--labels names no column".into()));
        }
        for l in m {
            if !header.iter().any(|h| h == &l.column) {
                return Err(ShardError::Schema(format!(
                    "label column {:?} is not in the header (its columns that are not {layout} features: {candidates:?})",
                    l.column
                )));
            }
            if known(&l.column) {
                return Err(ShardError::Schema(format!(
                    "column {:?} is a {layout} feature and cannot also be a label",
                    l.column
                )));
            }
        }
        let extra: Vec<&str> = candidates
            .iter()
            .copied()
            .filter(|c| !m.iter().any(|l| l.column == *c))
            .collect();
        if !extra.is_empty() {
            return Err(ShardError::Schema(format!(
                "the header has columns the {layout} layout does not know and --labels does not name: {extra:?}"
            )));
        }
        return Ok((
            m.iter().map(|l| l.column.clone()).collect(),
            m.iter().map(|l| l.task.clone()).collect(),
        ));
    }
    let set_names: Vec<&[&str]> = sets.iter().map(|s| s.0).collect();
    for (cols, tasks) in sets {
        let mut want: Vec<&str> = cols.to_vec();
        let mut got = candidates.clone();
        want.sort_unstable();
        got.sort_unstable();
        if want == got {
            return Ok((
                cols.iter().map(|c| c.to_string()).collect(),
                tasks.iter().map(|t| t.to_string()).collect(),
            ));
        }
    }
    Err(ShardError::Schema(format!(
        "the {layout} layout expects the label columns {} (or a mapping given with --labels task=column,...); the header's columns that are not {layout} features are {candidates:?}",
        describe(&set_names)
    )))
}

/// The AliExpress layout with the default labels: `search_id, categorical_1..16,
/// numerical_1..63, click, conversion`; the search id (one result page) is the group.
/// Numerical columns are dense and standardised.
pub fn aliexpress_spec() -> CsvSpec {
    aliexpress_columns(
        ALIEXPRESS_LABELS.iter().map(|s| s.to_string()).collect(),
        ALIEXPRESS_LABELS.iter().map(|s| s.to_string()).collect(),
        None,
    )
}

fn aliexpress_columns(labels: Vec<String>, tasks: Vec<String>, quantiles: Option<u32>) -> CsvSpec {
    let numeric = (1..=63).map(|i| format!("numerical_{i}"));
    let (single_numeric, dense): (Vec<ColumnSpec>, Vec<String>) = match quantiles {
        Some(q) => (
            numeric
                .map(|c| ColumnSpec {
                    quantiles: Some(q),
                    ..ColumnSpec::ids(&c)
                })
                .collect(),
            vec![],
        ),
        None => (vec![], numeric.collect()),
    };
    CsvSpec {
        labels,
        tasks,
        single: (1..=16)
            .map(|i| ColumnSpec::ids(&format!("categorical_{i}")))
            .chain(single_numeric)
            .collect(),
        multi: vec![],
        dense,
        group: Some("search_id".into()),
        weight: None,
        item: None,
        soft_labels: false,
        targets: vec![],
        funnel: true,
        standardize: true,
    }
}

/// The AliExpress layout for a file with this `header`: labels from `labels` or the
/// default `click, conversion`; with `quantiles`, every numerical column is cut into ids at
/// that many training-set quantiles (the authors: 99 percentiles) instead of being dense.
pub fn aliexpress_spec_for(
    header: &[String],
    labels: Option<&[LabelColumn]>,
    quantiles: Option<u32>,
) -> Result<CsvSpec> {
    let known = |c: &str| {
        c == "search_id"
            || c.strip_prefix("categorical_")
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| (1..=16).contains(&n))
            || c.strip_prefix("numerical_")
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| (1..=63).contains(&n))
    };
    let set: &[&str] = &ALIEXPRESS_LABELS;
    let (cols, tasks) = resolve_labels("AliExpress", header, &known, &[(set, set)], labels)?;
    Ok(aliexpress_columns(cols, tasks, quantiles))
}

/// The Ali-CCP layout of the released code for a file with this `header`: label columns
/// (given, or one of [`ALICCP_LABEL_SETS`]), the 17 single-valued fields (205 ... 129), the
/// bags 210 and 853 (`;`-separated), with the layout's hash sizes as vocabularies; a
/// `session` column, if present, is the group, and `sample_id` is ignored. Field 205 (the
/// item id) identifies items.
pub fn aliccp_spec(header: &[String], labels: Option<&[LabelColumn]>) -> Result<CsvSpec> {
    let single = crate::synth::ALICCP_SINGLE;
    let multi = crate::synth::ALICCP_MULTI;
    let known = |c: &str| {
        c == "sample_id"
            || c == "session"
            || single.iter().any(|f| f.0 == c)
            || multi.iter().any(|f| f.0 == c)
    };
    let (cols, tasks) = resolve_labels("Ali-CCP", header, &known, &ALICCP_LABEL_SETS, labels)?;
    let has = |c: &str| header.iter().any(|h| h == c);
    Ok(CsvSpec {
        labels: cols,
        tasks,
        single: single
            .iter()
            .map(|&(c, v)| ColumnSpec {
                vocab: Some(v),
                ..ColumnSpec::ids(c)
            })
            .collect(),
        multi: multi
            .iter()
            .map(|&(c, v)| BagSpec {
                column: c.into(),
                separator: ';',
                vocab: Some(v),
                hash_buckets: None,
                vocabulary: false,
                min_count: None,
                pooling: Pooling::Sum,
            })
            .collect(),
        dense: vec![],
        group: has("session").then(|| "session".to_string()),
        weight: None,
        item: Some("205".into()),
        soft_labels: false,
        targets: vec![],
        funnel: true,
        standardize: true,
    })
}

/// A generic spec with its labels replaced by `labels` (when given).
pub fn relabel(mut spec: CsvSpec, labels: Option<&[LabelColumn]>) -> CsvSpec {
    if let Some(m) = labels {
        spec.labels = m.iter().map(|l| l.column.clone()).collect();
        spec.tasks = m.iter().map(|l| l.task.clone()).collect();
    }
    spec
}
