//! CSV and Parquet to shards. One engine, driven by a [`CsvSpec`] that says which column is
//! what; the built-in layouts (AliExpress, Ali-CCP) are specs built from the file's header
//! ([`layouts`]). The engine sees rows through [`Record`]: a CSV line (`csv.rs`) or a row
//! of a Parquet row group (`parquet.rs`), whose cells it reads as the text a CSV file would
//! hold, so both formats give the same shards ([`convert`] picks the format from the file's
//! first bytes).
//!
//! ```json
//! { "labels": ["clicked", "bought"], "tasks": ["click", "conversion"],
//!   "single": [{"column": "user_id", "hash_buckets": 100000}, {"column": "age", "vocab": 8},
//!              {"column": "city", "vocabulary": true, "min_count": 5},
//!              {"column": "price", "quantiles": 99}],
//!   "multi":  [{"column": "tags", "separator": ";", "vocabulary": true}],
//!   "dense":  ["score"],
//!   "group":  "search_id", "item": "item_id",
//!   "weight": null, "funnel": true, "standardize": true }
//! ```
//!
//! A regression dataset names its continuous label columns in `targets`: they may hold
//! any finite number (a play time), and the schema lists their tasks as `targets`:
//!
//! ```json
//! { "labels": ["play_time"], "targets": ["play_time"], "single": [...] }
//! ```
//!
//! How a categorical cell becomes an id:
//! - default: the cell is an integer id, checked against `vocab` when given, the vocabulary
//!   learned (`max id + 1`) when not; converting with a training set's learned size, an id
//!   the training set never reached goes to the unknown id 0 and is counted (the report's
//!   `unknown`), as an unseen string value of a vocabulary does;
//! - `hash_buckets`: any value (a string too) hashed with FNV-1a into that many ids; the
//!   report counts the distinct values that collide;
//! - `vocabulary`: a vocabulary learned on this file: values seen at least `min_count`
//!   times get ids 1, 2, ... (most frequent first), anything else the unknown id 0;
//! - `quantiles`: a numeric column cut at that many quantiles of this file (99 gives the
//!   authors' percentiles); the id is the number of cut points at or below the value.
//!
//! Dense columns are standardised with this file's mean and standard deviation unless
//! `standardize` is false. Every learned thing (vocabularies, cut points, statistics) is
//! stored in the schema, and [`ConvertOptions::reuse`] (the command line's `--vocab-from`)
//! converts another file (a test set) with a training set's, so both feed a model the
//! same way. Learning takes a first pass over the file (skipped when there is nothing to
//! learn); the second writes the shards.
//!
//! The first line must be a header (a UTF-8 byte order mark is ignored). Bad input is an
//! error naming the file, line and column: a short row, a non-numeric label or feature, a
//! label that is not 0/1, an id out of range, an empty file, a missing column, a column
//! used both as a label and as a feature. With `funnel`, a later task positive without the
//! earlier one (a conversion without a click) is counted as a warning, is an error in
//! strict mode, or drops the row with [`ConvertOptions::drop_funnel_violations`] (the
//! authors' cleaning). The dataset is written to a temporary directory and renamed into
//! place only when the whole file converted, so a failed conversion leaves nothing behind.

mod csv;
pub mod layouts;
#[cfg(feature = "parquet")]
mod parquet;

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use layouts::{
    ALICCP_LABEL_SETS, ALIEXPRESS_LABELS, LabelColumn, aliccp_spec, aliexpress_spec,
    aliexpress_spec_for, relabel,
};

use crate::error::{Result, ShardError, io};
use crate::schema::{
    DenseSpec, Encoding, EncodingKind, FORMAT_VERSION, MultiField, Pooling, Schema, SingleField,
    Vocabulary, bucket_of, fnv1a, standardize,
};
use crate::writer::{DatasetInfo, Row, ShardWriter};
use csv::{csv_err, for_each_line, parse_f32, parse_u64};

/// One input row, whatever the file format: its cells as the bytes a CSV file would hold,
/// the values of a bag, and errors that name the file, the row and the column.
pub(crate) trait Record {
    /// The cell at header position `i` (a Parquet null reads as an empty cell).
    fn cell(&self, i: usize) -> Cow<'_, [u8]>;
    /// Calls `f` on every value of the bag at position `i`: the parts of a cell split at
    /// `separator` (nothing for an empty cell), or the elements of a Parquet list.
    fn for_each_value(
        &self,
        i: usize,
        separator: u8,
        f: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()>;
    /// An error at position `i` of this row.
    fn err(&self, i: usize, detail: String) -> ShardError;
    /// An error about this row as a whole (`columns` names what it concerns).
    fn row_err(&self, columns: &str, detail: String) -> ShardError;
}

/// The file formats `convert` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// Comma-separated text with a header line.
    Csv,
    /// Apache Parquet (column names from its schema).
    Parquet,
}

impl InputFormat {
    /// The format of the file at `path`: Parquet when it starts with the Parquet magic
    /// `PAR1`, CSV otherwise.
    pub fn of(path: &Path) -> Result<Self> {
        use std::io::Read;
        let mut magic = [0u8; 4];
        let mut file = std::fs::File::open(path).map_err(io(path))?;
        let mut n = 0;
        while n < 4 {
            match file.read(&mut magic[n..]).map_err(io(path))? {
                0 => break,
                k => n += k,
            }
        }
        Ok(if n == 4 && &magic == b"PAR1" {
            InputFormat::Parquet
        } else {
            InputFormat::Csv
        })
    }
}

/// The column names of a CSV file's header line or of a Parquet file's schema (its
/// top-level fields), the format taken from the file's first bytes.
pub fn read_header(path: &Path) -> Result<Vec<String>> {
    match InputFormat::of(path)? {
        InputFormat::Csv => csv::read_header(path),
        InputFormat::Parquet => Input::open(path, InputFormat::Parquet)?.header(),
    }
}

/// An opened input file.
enum Input<'a> {
    Csv(&'a Path),
    #[cfg(feature = "parquet")]
    Parquet(parquet::ParquetInput),
}

impl<'a> Input<'a> {
    fn open(path: &'a Path, format: InputFormat) -> Result<Self> {
        match format {
            InputFormat::Csv => Ok(Input::Csv(path)),
            #[cfg(feature = "parquet")]
            InputFormat::Parquet => Ok(Input::Parquet(parquet::ParquetInput::open(path)?)),
            #[cfg(not(feature = "parquet"))]
            InputFormat::Parquet => Err(ShardError::Schema(format!(
                "{} is a Parquet file, and this build reads no Parquet (the shards crate's \"parquet\" feature is off)",
                path.display()
            ))),
        }
    }

    fn header(&self) -> Result<Vec<String>> {
        match self {
            Input::Csv(path) => csv::read_header(path),
            #[cfg(feature = "parquet")]
            Input::Parquet(p) => Ok(p.header().to_vec()),
        }
    }

    /// Calls `f` on every row; `cols` says which positions are read and which are bags.
    /// Returns the bytes of the input.
    #[cfg_attr(not(feature = "parquet"), allow(unused_variables))]
    fn for_each(
        &self,
        header: &[String],
        cols: &Columns,
        mut f: impl FnMut(&dyn Record) -> Result<()>,
    ) -> Result<u64> {
        match self {
            Input::Csv(path) => for_each_line(path, header, |line| f(line)),
            #[cfg(feature = "parquet")]
            Input::Parquet(p) => p.for_each(&cols.used(), &cols.multi, &mut f),
        }
    }
}

/// A single-valued categorical (or bucketised numeric) column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    /// Column name in the header.
    pub column: String,
    /// Number of ids, if known (ids are checked against it); learned from the data if absent.
    #[serde(default)]
    pub vocab: Option<u32>,
    /// Hash every value into this many ids (for string values or huge id spaces).
    #[serde(default)]
    pub hash_buckets: Option<u32>,
    /// Learn a vocabulary of the column's values (any text), with an unknown id 0.
    #[serde(default)]
    pub vocabulary: bool,
    /// With `vocabulary`: how often a value must occur to get its own id (default 1).
    #[serde(default)]
    pub min_count: Option<u64>,
    /// Cut a numeric column into ids at this many quantiles of the data (99: percentiles).
    #[serde(default)]
    pub quantiles: Option<u32>,
}

impl ColumnSpec {
    /// A column of raw integer ids with a learned vocabulary size.
    pub fn ids(column: &str) -> Self {
        Self {
            column: column.into(),
            vocab: None,
            hash_buckets: None,
            vocabulary: false,
            min_count: None,
            quantiles: None,
        }
    }
}

/// A multi-valued categorical column: ids separated by `separator` (an empty cell is an
/// empty list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BagSpec {
    /// Column name in the header.
    pub column: String,
    /// Separator between ids.
    #[serde(default = "semicolon")]
    pub separator: char,
    /// Number of ids, if known.
    #[serde(default)]
    pub vocab: Option<u32>,
    /// Hash every value into this many ids.
    #[serde(default)]
    pub hash_buckets: Option<u32>,
    /// Learn a vocabulary of the values, with an unknown id 0.
    #[serde(default)]
    pub vocabulary: bool,
    /// With `vocabulary`: how often a value must occur to get its own id (default 1).
    #[serde(default)]
    pub min_count: Option<u64>,
    /// Pooling a model should apply.
    #[serde(default = "sum_pooling")]
    pub pooling: Pooling,
}

fn semicolon() -> char {
    ';'
}

fn sum_pooling() -> Pooling {
    Pooling::Sum
}

fn yes() -> bool {
    true
}

/// Which CSV column is what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvSpec {
    /// Label columns, in chain order.
    pub labels: Vec<String>,
    /// Task names, one per label column (default: the columns' names).
    #[serde(default)]
    pub tasks: Vec<String>,
    /// Single-valued categorical columns.
    #[serde(default)]
    pub single: Vec<ColumnSpec>,
    /// Multi-valued categorical columns.
    #[serde(default)]
    pub multi: Vec<BagSpec>,
    /// Dense numeric columns.
    #[serde(default)]
    pub dense: Vec<String>,
    /// The group column (its values: integers, or any string, hashed).
    #[serde(default)]
    pub group: Option<String>,
    /// A sample-weight column.
    #[serde(default)]
    pub weight: Option<String>,
    /// The single-valued column that identifies an item (for list metrics).
    #[serde(default)]
    pub item: Option<String>,
    /// Labels may be any value in [0, 1].
    #[serde(default)]
    pub soft_labels: bool,
    /// Label columns (among `labels`) that hold a continuous target (any finite number,
    /// e.g. a play time) instead of 0/1; their tasks are the schema's `targets`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// Check that a later task is never positive without the earlier one.
    #[serde(default)]
    pub funnel: bool,
    /// Standardise dense columns with the data's mean and standard deviation.
    #[serde(default = "yes")]
    pub standardize: bool,
}

impl CsvSpec {
    /// The task names (the label columns' names unless `tasks` renames them).
    pub fn task_names(&self) -> &[String] {
        if self.tasks.is_empty() {
            &self.labels
        } else {
            &self.tasks
        }
    }

    /// Checks the spec's own consistency: labels present and distinct, no column used
    /// twice (a label that is also a feature is leakage), one encoding per column.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ShardError::Schema(m));
        if self.labels.is_empty() {
            return bad(
                "the conversion spec needs at least one label column (\"labels\": [\"click\", ...], or --labels task=column,...)"
                    .into(),
            );
        }
        if !self.tasks.is_empty() && self.tasks.len() != self.labels.len() {
            return bad(format!(
                "{} task names for {} label columns",
                self.tasks.len(),
                self.labels.len()
            ));
        }
        let mut tasks = self.task_names().to_vec();
        tasks.sort_unstable();
        if let Some(w) = tasks.windows(2).find(|w| w[0] == w[1]) {
            return bad(format!("task {:?} is named twice", w[0]));
        }
        for (i, t) in self.targets.iter().enumerate() {
            if !self.labels.contains(t) {
                return bad(format!(
                    "target column {t:?} must be one of the label columns {:?}",
                    self.labels
                ));
            }
            if self.targets[..i].contains(t) {
                return bad(format!("target column {t:?} is listed twice"));
            }
        }
        if self.funnel && !self.targets.is_empty() {
            return bad(
                "funnel checks 0/1 labels in chain order; it does not apply to a dataset with continuous targets"
                    .into(),
            );
        }
        let mut used: Vec<(&str, &str)> =
            self.labels.iter().map(|c| (c.as_str(), "label")).collect();
        let features = self
            .single
            .iter()
            .map(|c| (c.column.as_str(), "single-valued feature"))
            .chain(
                self.multi
                    .iter()
                    .map(|c| (c.column.as_str(), "multi-valued feature")),
            )
            .chain(self.dense.iter().map(|c| (c.as_str(), "dense feature")))
            .chain(self.group.iter().map(|c| (c.as_str(), "group")))
            .chain(self.weight.iter().map(|c| (c.as_str(), "weight")));
        for (c, what) in features {
            if let Some(&(_, before)) = used.iter().find(|u| u.0 == c) {
                return bad(if before == "label" {
                    format!(
                        "column {c:?} is both a label and a {what}: that leaks the label into the features"
                    )
                } else {
                    format!("column {c:?} is used twice (as a {before} and as a {what})")
                });
            }
            used.push((c, what));
        }
        if let Some(item) = &self.item
            && !self.single.iter().any(|c| &c.column == item)
        {
            return bad(format!(
                "the item column {item:?} must be one of the single-valued columns"
            ));
        }
        for c in &self.single {
            let kinds = c.vocab.is_some() as u8
                + c.hash_buckets.is_some() as u8
                + c.vocabulary as u8
                + c.quantiles.is_some() as u8;
            if kinds > 1 {
                return bad(format!(
                    "column {:?}: choose one of vocab, hash_buckets, vocabulary and quantiles",
                    c.column
                ));
            }
            check_encoding(&c.column, c.hash_buckets, c.vocabulary, c.min_count)?;
            if c.quantiles.is_some_and(|q| !(1..=65_535).contains(&q)) {
                return bad(format!(
                    "column {:?}: quantiles must be between 1 and 65535",
                    c.column
                ));
            }
        }
        for b in &self.multi {
            if !b.separator.is_ascii() {
                return bad(format!(
                    "column {:?}: the separator must be an ASCII character",
                    b.column
                ));
            }
            let kinds =
                b.vocab.is_some() as u8 + b.hash_buckets.is_some() as u8 + b.vocabulary as u8;
            if kinds > 1 {
                return bad(format!(
                    "column {:?}: choose one of vocab, hash_buckets and vocabulary",
                    b.column
                ));
            }
            check_encoding(&b.column, b.hash_buckets, b.vocabulary, b.min_count)?;
        }
        Ok(())
    }
}

fn check_encoding(
    column: &str,
    hash: Option<u32>,
    vocabulary: bool,
    min_count: Option<u64>,
) -> Result<()> {
    if hash == Some(0) {
        return Err(ShardError::Schema(format!(
            "column {column:?}: hash_buckets must be at least 1"
        )));
    }
    if min_count.is_some() && !vocabulary {
        return Err(ShardError::Schema(format!(
            "column {column:?}: min_count needs \"vocabulary\": true"
        )));
    }
    if min_count == Some(0) {
        return Err(ShardError::Schema(format!(
            "column {column:?}: min_count must be at least 1"
        )));
    }
    Ok(())
}

/// Conversion settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvertOptions {
    /// Funnel violations are errors instead of counted warnings.
    pub strict: bool,
    /// Drop rows where a later task is positive without the earlier one (a conversion
    /// without a click), as the authors' preprocessing does.
    pub drop_funnel_violations: bool,
    /// Rows per shard file.
    pub rows_per_shard: usize,
    /// A training set's schema whose vocabularies, cut points and dense statistics are
    /// applied instead of learning new ones (for a test set); the result must be compatible.
    pub reuse: Option<Schema>,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        Self {
            strict: false,
            drop_funnel_violations: false,
            rows_per_shard: 65_536,
            reuse: None,
        }
    }
}

/// What happened to one hashed or vocabulary-encoded column.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnReport {
    /// The column.
    pub column: String,
    /// `"hash"`, `"vocabulary"`, or `"ids"` (raw integer ids with a training set's learned
    /// size, when reusing it).
    pub encoding: &'static str,
    /// Distinct values in this file (counted in the learning pass; 0 when reusing).
    pub distinct: u64,
    /// Ids of the field.
    pub ids: u32,
    /// Hashing: distinct values that share their bucket with another value.
    pub collisions: u64,
    /// Vocabulary: distinct values too rare to get an id (`min_count`).
    pub rare: u64,
    /// Vocabulary: cells mapped to the unknown id 0 (rare or unseen values); reused integer
    /// ids: ids beyond the training set's, mapped to 0.
    pub unknown: u64,
}

/// What a conversion did.
#[derive(Debug, Clone)]
pub struct ConvertReport {
    /// The dataset written.
    pub info: DatasetInfo,
    /// Bytes of CSV read (one pass).
    pub bytes: u64,
    /// Rows where a later task was positive without the earlier one.
    pub funnel_violations: u64,
    /// Of those, rows dropped ([`ConvertOptions::drop_funnel_violations`]).
    pub dropped_rows: u64,
    /// Hashed and vocabulary-encoded columns: collisions, rare and unknown values.
    pub columns: Vec<ColumnReport>,
}

/// Column positions resolved against the header.
struct Columns {
    labels: Vec<usize>,
    /// Per label column, whether it is a continuous target.
    targets: Vec<bool>,
    single: Vec<usize>,
    multi: Vec<usize>,
    dense: Vec<usize>,
    group: Option<usize>,
    weight: Option<usize>,
}

impl Columns {
    /// Every position the spec reads, in header order.
    #[cfg_attr(not(feature = "parquet"), allow(dead_code))]
    fn used(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .labels
            .iter()
            .chain(&self.single)
            .chain(&self.multi)
            .chain(&self.dense)
            .chain(&self.group)
            .chain(&self.weight)
            .copied()
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

fn resolve(path: &Path, header: &[String], spec: &CsvSpec) -> Result<Columns> {
    let find = |name: &str| {
        header.iter().position(|h| h == name).ok_or_else(|| {
            csv_err(
                path,
                1,
                name,
                format!(
                    "missing column (the header has {} columns: {})",
                    header.len(),
                    preview(header)
                ),
            )
        })
    };
    Ok(Columns {
        labels: spec.labels.iter().map(|c| find(c)).collect::<Result<_>>()?,
        targets: spec
            .labels
            .iter()
            .map(|c| spec.targets.contains(c))
            .collect(),
        single: spec
            .single
            .iter()
            .map(|c| find(&c.column))
            .collect::<Result<_>>()?,
        multi: spec
            .multi
            .iter()
            .map(|c| find(&c.column))
            .collect::<Result<_>>()?,
        dense: spec.dense.iter().map(|c| find(c)).collect::<Result<_>>()?,
        group: spec.group.as_deref().map(find).transpose()?,
        weight: spec.weight.as_deref().map(find).transpose()?,
    })
}

/// The first columns of a header, for error messages.
fn preview(header: &[String]) -> String {
    let mut s = header.iter().take(8).cloned().collect::<Vec<_>>().join(",");
    if header.len() > 8 {
        s.push_str(",...");
    }
    s
}

/// How one categorical column's cells become ids.
#[derive(Debug, Clone)]
enum Enc {
    /// Raw integer ids; `vocab` checks them; `learned`: the size was learned (an `Ids`
    /// encoding in the schema). With a training set's learned size (`--vocab-from`), an id
    /// beyond it was never seen in training: it goes to the unknown id 0, as an unseen
    /// string value of a vocabulary does, and is counted.
    Ids {
        vocab: Option<u32>,
        learned: bool,
    },
    Hash(u32),
    Vocab {
        table: Vocabulary,
        values: Vec<String>,
        min_count: u64,
    },
    Quantiles(Vec<f32>),
}

impl Enc {
    /// The id of a cell, and whether it went to the unknown id 0 (a value the training
    /// set's vocabulary never saw).
    fn id(&self, cell: &[u8]) -> std::result::Result<(u32, bool), String> {
        match self {
            Enc::Hash(b) => Ok(((fnv1a(cell.trim_ascii()) % *b as u64) as u32, false)),
            Enc::Vocab { table, .. } => {
                let id = table.encode(cell);
                Ok((id, id == 0 && !cell.trim_ascii().is_empty()))
            }
            Enc::Quantiles(cuts) => parse_f32(cell)
                .filter(|v| v.is_finite())
                .map(|v| (bucket_of(cuts, v), false))
                .ok_or_else(|| {
                    format!("{:?} is not a finite number", String::from_utf8_lossy(cell))
                }),
            Enc::Ids { vocab, learned } => {
                let v = parse_u64(cell).ok_or_else(|| {
                    format!(
                        "{:?} is not an integer id (hash_buckets or \"vocabulary\": true encode other values)",
                        String::from_utf8_lossy(cell)
                    )
                })?;
                if v > u32::MAX as u64 - 1 {
                    return Err(format!("id {v} does not fit in 32 bits"));
                }
                match vocab.filter(|&vocab| v >= vocab as u64) {
                    // Only a reused training vocabulary has both a size and `learned`.
                    Some(_) if *learned => Ok((0, true)),
                    Some(vocab) => Err(format!("id {v} is out of range (vocab {vocab})")),
                    None => Ok((v as u32, false)),
                }
            }
        }
    }

    /// The field's vocabulary size before the writer learns anything.
    fn vocab(&self) -> u32 {
        match self {
            Enc::Ids { vocab, .. } => vocab.unwrap_or(1),
            Enc::Hash(b) => *b,
            Enc::Vocab { values, .. } => values.len() as u32 + 1,
            Enc::Quantiles(c) => c.len() as u32 + 1,
        }
    }

    fn schema_encoding(&self) -> Option<EncodingKind> {
        match self {
            Enc::Ids { learned: true, .. } => Some(EncodingKind::Ids),
            Enc::Ids { .. } => None,
            Enc::Hash(b) => Some(EncodingKind::Hash { buckets: *b }),
            Enc::Vocab {
                values, min_count, ..
            } => Some(EncodingKind::Vocabulary {
                values: values.clone(),
                min_count: *min_count,
            }),
            Enc::Quantiles(c) => Some(EncodingKind::Quantiles { cuts: c.clone() }),
        }
    }
}

/// Values kept to estimate a column's quantiles: a uniform reservoir sample.
const RESERVOIR: usize = 100_000;

/// What the learning pass gathers for one categorical column.
#[derive(Default)]
struct Learn {
    counts: HashMap<Vec<u8>, u64>,
    sample: Vec<f32>,
    seen: u64,
}

/// Welford's running mean and variance, in f64.
#[derive(Default, Clone, Copy)]
struct Moments {
    n: f64,
    mean: f64,
    m2: f64,
}

impl Moments {
    fn add(&mut self, x: f64) {
        self.n += 1.0;
        let d = x - self.mean;
        self.mean += d / self.n;
        self.m2 += d * (x - self.mean);
    }

    /// `(mean, std)` as stored; a constant (or empty) feature gets std 1.
    fn finish(&self) -> (f32, f32) {
        let std = if self.n > 0.0 {
            (self.m2 / self.n).sqrt()
        } else {
            0.0
        };
        let std = if std > 0.0 && std.is_finite() && (std as f32) > 0.0 {
            std as f32
        } else {
            1.0
        };
        (self.mean as f32, std)
    }
}

/// Cut points at `q` quantiles of `sample` (sorted in place), duplicates removed.
fn quantile_cuts(sample: &mut [f32], q: u32) -> Vec<f32> {
    sample.sort_unstable_by(f32::total_cmp);
    let n = sample.len();
    let mut cuts: Vec<f32> = Vec::new();
    if n == 0 {
        return cuts;
    }
    for i in 1..=q as usize {
        let c = sample[(i * n / (q as usize + 1)).min(n - 1)];
        if cuts.last().is_none_or(|&l| c > l) {
            cuts.push(c);
        }
    }
    cuts
}

/// The label values of one line, validated.
fn read_labels(
    line: &dyn Record,
    cols: &Columns,
    spec: &CsvSpec,
    labels: &mut [f32],
) -> Result<()> {
    for (k, &c) in cols.labels.iter().enumerate() {
        let cell = line.cell(c);
        let y = parse_f32(&cell).ok_or_else(|| {
            line.err(
                c,
                format!("label {:?} is not a number", String::from_utf8_lossy(&cell)),
            )
        })?;
        let target = cols.targets[k];
        let ok = if target {
            y.is_finite()
        } else if spec.soft_labels {
            (0.0..=1.0).contains(&y)
        } else {
            y == 0.0 || y == 1.0
        };
        if !ok {
            return Err(line.err(
                c,
                format!(
                    "{} {y} is not {}",
                    if target { "target" } else { "label" },
                    if target {
                        "a finite number"
                    } else if spec.soft_labels {
                        "in [0, 1]"
                    } else {
                        "0 or 1"
                    }
                ),
            ));
        }
        labels[k] = y;
    }
    Ok(())
}

/// A later task positive without the earlier one.
fn violates_funnel(labels: &[f32]) -> bool {
    labels.windows(2).any(|w| w[1] > w[0])
}

/// One categorical column of the spec, single or multi-valued.
struct CatColumn<'a> {
    name: &'a str,
    position: usize,
    separator: Option<u8>,
    hash: Option<u32>,
    vocabulary: Option<u64>,
    quantiles: Option<u32>,
    vocab: Option<u32>,
}

fn cat_columns<'a>(spec: &'a CsvSpec, cols: &Columns) -> Vec<CatColumn<'a>> {
    spec.single
        .iter()
        .zip(&cols.single)
        .map(|(c, &p)| CatColumn {
            name: &c.column,
            position: p,
            separator: None,
            hash: c.hash_buckets,
            vocabulary: c.vocabulary.then(|| c.min_count.unwrap_or(1)),
            quantiles: c.quantiles,
            vocab: c.vocab,
        })
        .chain(spec.multi.iter().zip(&cols.multi).map(|(b, &p)| CatColumn {
            name: &b.column,
            position: p,
            separator: Some(b.separator as u8),
            hash: b.hash_buckets,
            vocabulary: b.vocabulary.then(|| b.min_count.unwrap_or(1)),
            quantiles: None,
            vocab: b.vocab,
        }))
        .collect()
}

/// Calls `f` on every value of a categorical column: the cell of a single-valued one, the
/// values of a bag (nothing for an empty bag).
fn for_each_value(
    line: &dyn Record,
    position: usize,
    separator: Option<u8>,
    mut f: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    match separator {
        None => f(&line.cell(position)),
        Some(sep) => line.for_each_value(position, sep, &mut f),
    }
}

/// The learning pass: vocabularies, distinct hashed values, quantile samples, dense
/// moments, over the rows that are kept.
#[allow(clippy::type_complexity)]
fn learn(
    input: &Input<'_>,
    header: &[String],
    spec: &CsvSpec,
    cols: &Columns,
    cats: &[CatColumn<'_>],
    options: &ConvertOptions,
) -> Result<(Vec<Enc>, Vec<ColumnReport>, Option<(Vec<f32>, Vec<f32>)>)> {
    let mut learns: Vec<Learn> = cats.iter().map(|_| Learn::default()).collect();
    let mut moments = vec![Moments::default(); cols.dense.len()];
    let mut labels = vec![0.0f32; cols.labels.len()];
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    input.for_each(header, cols, |line| {
        read_labels(line, cols, spec, &mut labels)?;
        if options.drop_funnel_violations && violates_funnel(&labels) {
            return Ok(());
        }
        for (c, l) in cats.iter().zip(learns.iter_mut()) {
            if c.vocabulary.is_none() && c.hash.is_none() && c.quantiles.is_none() {
                continue;
            }
            for_each_value(line, c.position, c.separator, |v| {
                let v = v.trim_ascii();
                if c.quantiles.is_some() {
                    let x = parse_f32(v).filter(|x| x.is_finite()).ok_or_else(|| {
                        line.err(
                            c.position,
                            format!("{:?} is not a finite number", String::from_utf8_lossy(v)),
                        )
                    })?;
                    l.seen += 1;
                    if l.sample.len() < RESERVOIR {
                        l.sample.push(x);
                    } else {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        let j = (rng % l.seen) as usize;
                        if j < RESERVOIR {
                            l.sample[j] = x;
                        }
                    }
                } else if let Some(n) = l.counts.get_mut(v) {
                    *n += 1;
                } else {
                    l.counts.insert(v.to_vec(), 1);
                }
                Ok(())
            })?;
        }
        if spec.standardize {
            for (m, &c) in moments.iter_mut().zip(&cols.dense) {
                let cell = line.cell(c);
                let x = parse_f32(&cell).filter(|v| v.is_finite()).ok_or_else(|| {
                    line.err(
                        c,
                        format!(
                            "{:?} is not a finite number",
                            String::from_utf8_lossy(&cell)
                        ),
                    )
                })?;
                m.add(x as f64);
            }
        }
        Ok(())
    })?;
    let mut reports = Vec::new();
    let encs = cats
        .iter()
        .zip(learns)
        .map(|(c, mut l)| {
            if let Some(b) = c.hash {
                let buckets: HashSet<u32> = l
                    .counts
                    .keys()
                    .map(|v| (fnv1a(v) % b as u64) as u32)
                    .collect();
                reports.push(ColumnReport {
                    column: c.name.into(),
                    encoding: "hash",
                    distinct: l.counts.len() as u64,
                    ids: b,
                    collisions: (l.counts.len() - buckets.len()) as u64,
                    rare: 0,
                    unknown: 0,
                });
                Enc::Hash(b)
            } else if let Some(min_count) = c.vocabulary {
                let mut kept: Vec<(Vec<u8>, u64)> = l
                    .counts
                    .iter()
                    .filter(|e| *e.1 >= min_count)
                    .map(|(v, &n)| (v.clone(), n))
                    .collect();
                kept.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                let values: Vec<String> = kept
                    .iter()
                    .map(|v| String::from_utf8_lossy(&v.0).into_owned())
                    .collect();
                reports.push(ColumnReport {
                    column: c.name.into(),
                    encoding: "vocabulary",
                    distinct: l.counts.len() as u64,
                    ids: values.len() as u32 + 1,
                    collisions: 0,
                    rare: (l.counts.len() - values.len()) as u64,
                    unknown: 0,
                });
                Enc::Vocab {
                    table: Vocabulary::new(&values),
                    values,
                    min_count,
                }
            } else if let Some(q) = c.quantiles {
                Enc::Quantiles(quantile_cuts(&mut l.sample, q))
            } else {
                Enc::Ids {
                    vocab: c.vocab,
                    learned: c.vocab.is_none(),
                }
            }
        })
        .collect();
    let stats = spec
        .standardize
        .then(|| moments.iter().map(Moments::finish).unzip());
    Ok((encs, reports, stats))
}

/// The encoders and dense statistics of a training set's schema, for the same spec.
#[allow(clippy::type_complexity)]
fn reuse(
    train: &Schema,
    spec: &CsvSpec,
    cats: &[CatColumn<'_>],
) -> Result<(Vec<Enc>, Vec<ColumnReport>, Option<(Vec<f32>, Vec<f32>)>)> {
    let mut reports = Vec::new();
    let mut encs = Vec::new();
    for c in cats {
        let field_vocab = train
            .single
            .iter()
            .map(|f| (&f.name, f.vocab))
            .chain(train.multi.iter().map(|f| (&f.name, f.vocab)))
            .find(|f| f.0 == c.name)
            .map(|f| f.1)
            .ok_or_else(|| {
                ShardError::Schema(format!(
                    "the training set has no field {:?} (its fields: {:?})",
                    c.name,
                    train
                        .single
                        .iter()
                        .map(|f| &f.name)
                        .chain(train.multi.iter().map(|f| &f.name))
                        .collect::<Vec<_>>()
                ))
            })?;
        let enc = match train.encoding(c.name) {
            Some(EncodingKind::Hash { buckets }) => Enc::Hash(*buckets),
            Some(EncodingKind::Vocabulary { values, min_count }) => Enc::Vocab {
                table: Vocabulary::new(values),
                values: values.clone(),
                min_count: *min_count,
            },
            Some(EncodingKind::Quantiles { cuts }) => Enc::Quantiles(cuts.clone()),
            Some(EncodingKind::Ids) => Enc::Ids {
                vocab: Some(field_vocab),
                learned: true,
            },
            None => Enc::Ids {
                vocab: Some(field_vocab),
                learned: false,
            },
        };
        let encoding = match &enc {
            Enc::Vocab { .. } => Some("vocabulary"),
            Enc::Ids { learned: true, .. } => Some("ids"),
            _ => None,
        };
        if let Some(encoding) = encoding {
            reports.push(ColumnReport {
                column: c.name.into(),
                encoding,
                distinct: 0,
                ids: enc.vocab(),
                collisions: 0,
                rare: 0,
                unknown: 0,
            });
        }
        encs.push(enc);
    }
    let stats = match (&train.dense.mean, &train.dense.std) {
        (Some(m), Some(s)) if spec.standardize => Some((m.clone(), s.clone())),
        _ => None,
    };
    Ok((encs, reports, stats))
}

/// The schema a spec produces with these encoders and dense statistics.
fn schema_with(spec: &CsvSpec, encs: &[Enc], stats: Option<&(Vec<f32>, Vec<f32>)>) -> Schema {
    let ns = spec.single.len();
    let names = spec
        .single
        .iter()
        .map(|c| &c.column)
        .chain(spec.multi.iter().map(|c| &c.column));
    Schema {
        format_version: FORMAT_VERSION,
        tasks: spec.task_names().to_vec(),
        single: spec
            .single
            .iter()
            .zip(encs)
            .map(|(c, e)| SingleField {
                name: c.column.clone(),
                vocab: e.vocab(),
            })
            .collect(),
        multi: spec
            .multi
            .iter()
            .zip(&encs[ns..])
            .map(|(c, e)| MultiField {
                name: c.column.clone(),
                vocab: e.vocab(),
                pooling: c.pooling,
            })
            .collect(),
        dense: DenseSpec {
            count: spec.dense.len(),
            names: spec.dense.clone(),
            mean: stats.map(|s| s.0.clone()),
            std: stats.map(|s| s.1.clone()),
        },
        group: spec.group.clone(),
        weight: spec.weight.is_some(),
        soft_labels: spec.soft_labels,
        targets: spec
            .labels
            .iter()
            .zip(spec.task_names())
            .filter(|(c, _)| spec.targets.contains(c))
            .map(|(_, t)| t.clone())
            .collect(),
        item: spec.item.clone(),
        encodings: names
            .zip(encs)
            .filter_map(|(n, e)| {
                e.schema_encoding().map(|kind| Encoding {
                    field: n.clone(),
                    kind,
                })
            })
            .collect(),
    }
}

/// The schema a spec produces before any data is seen (learned sizes start at 1).
pub fn schema_of(spec: &CsvSpec) -> Schema {
    let encs: Vec<Enc> = spec
        .single
        .iter()
        .map(|c| (c.vocab, c.hash_buckets, c.vocabulary, c.quantiles))
        .chain(
            spec.multi
                .iter()
                .map(|b| (b.vocab, b.hash_buckets, b.vocabulary, None)),
        )
        .map(
            |(vocab, hash, vocabulary, quantiles)| match (hash, vocabulary, quantiles) {
                (Some(b), _, _) => Enc::Hash(b),
                (_, true, _) => Enc::Vocab {
                    table: Vocabulary::default(),
                    values: vec![],
                    min_count: 1,
                },
                (_, _, Some(_)) => Enc::Quantiles(vec![]),
                _ => Enc::Ids {
                    vocab,
                    learned: vocab.is_none(),
                },
            },
        )
        .collect();
    schema_with(spec, &encs, None)
}

/// Converts the CSV or Parquet file at `input` (the format taken from its first bytes, see
/// [`InputFormat::of`]) into a dataset at `out` (which must not exist, or be empty).
pub fn convert(
    input: &Path,
    spec: &CsvSpec,
    out: &Path,
    options: ConvertOptions,
) -> Result<ConvertReport> {
    convert_as(input, InputFormat::of(input)?, spec, out, options)
}

/// Converts the CSV at `input` into a dataset at `out` (which must not exist, or be empty).
pub fn convert_csv(
    input: &Path,
    spec: &CsvSpec,
    out: &Path,
    options: ConvertOptions,
) -> Result<ConvertReport> {
    convert_as(input, InputFormat::Csv, spec, out, options)
}

/// Converts `input`, read as `format`, into a dataset at `out` (which must not exist, or
/// be empty).
pub fn convert_as(
    input: &Path,
    format: InputFormat,
    spec: &CsvSpec,
    out: &Path,
    options: ConvertOptions,
) -> Result<ConvertReport> {
    spec.validate()?;
    if out.exists() && std::fs::read_dir(out).map_err(io(out))?.next().is_some() {
        return Err(ShardError::Schema(format!(
            "{} exists and is not empty",
            out.display()
        )));
    }
    crate::atomic::remove_stale_temporaries(out);
    let tmp: PathBuf = crate::atomic::staging_dir(out);
    let _ = std::fs::remove_dir_all(&tmp);
    let result = convert_into(input, format, spec, &tmp, &options);
    match result {
        Ok(mut report) => {
            if out.exists() {
                std::fs::remove_dir(out).map_err(io(out))?;
            }
            std::fs::rename(&tmp, out).map_err(io(out))?;
            report.info.dir = out.to_path_buf();
            Ok(report)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

fn convert_into(
    path: &Path,
    format: InputFormat,
    spec: &CsvSpec,
    dir: &Path,
    options: &ConvertOptions,
) -> Result<ConvertReport> {
    let input = Input::open(path, format)?;
    let header = input.header()?;
    let cols = resolve(path, &header, spec)?;
    let cats = cat_columns(spec, &cols);
    let (encs, mut reports, stats) = match &options.reuse {
        Some(train) => reuse(train, spec, &cats)?,
        // Nothing to learn (fixed or raw integer ids, no dense column to standardise): one
        // pass only.
        None if cats
            .iter()
            .all(|c| c.vocabulary.is_none() && c.hash.is_none() && c.quantiles.is_none())
            && (cols.dense.is_empty() || !spec.standardize) =>
        {
            let encs = cats
                .iter()
                .map(|c| Enc::Ids {
                    vocab: c.vocab,
                    learned: c.vocab.is_none(),
                })
                .collect();
            (encs, Vec::new(), None)
        }
        None => learn(&input, &header, spec, &cols, &cats, options)?,
    };
    let schema = schema_with(spec, &encs, stats.as_ref());
    schema.validate()?;
    if let Some(train) = &options.reuse {
        train.check_compatible(&schema)?;
    }
    let mut writer = ShardWriter::create(dir, schema, options.rows_per_shard, true)?;
    let ns = cols.single.len();
    let (mut labels, mut single, mut dense) = (
        vec![0.0f32; cols.labels.len()],
        vec![0u32; ns],
        vec![0.0f32; cols.dense.len()],
    );
    let mut bag_ids: Vec<Vec<u32>> = vec![Vec::new(); cols.multi.len()];
    let mut unknown = vec![0u64; cats.len()];
    let (mut violations, mut dropped) = (0u64, 0u64);
    let bytes = input.for_each(&header, &cols, |line| {
        read_labels(line, &cols, spec, &mut labels)?;
        if (spec.funnel || options.drop_funnel_violations) && violates_funnel(&labels) {
            violations += 1;
            if options.drop_funnel_violations {
                dropped += 1;
                return Ok(());
            }
            if options.strict {
                return Err(line.row_err(
                    &spec.labels.join(","),
                    "a later task is positive without the earlier one (e.g. a conversion without a click)".into(),
                ));
            }
        }
        for (k, (c, e)) in cats.iter().zip(&encs).enumerate() {
            if k < ns {
                let cell = line.cell(c.position);
                let (id, is_unknown) = e.id(&cell).map_err(|d| line.err(c.position, d))?;
                unknown[k] += is_unknown as u64;
                single[k] = id;
            } else {
                let ids = &mut bag_ids[k - ns];
                ids.clear();
                for_each_value(line, c.position, c.separator, |v| {
                    let (id, is_unknown) = e.id(v).map_err(|d| line.err(c.position, d))?;
                    unknown[k] += is_unknown as u64;
                    ids.push(id);
                    Ok(())
                })?;
            }
        }
        for (k, &c) in cols.dense.iter().enumerate() {
            let cell = line.cell(c);
            let x = parse_f32(&cell).filter(|v| v.is_finite()).ok_or_else(|| {
                line.err(
                    c,
                    format!(
                        "{:?} is not a finite number",
                        String::from_utf8_lossy(&cell)
                    ),
                )
            })?;
            dense[k] = match &stats {
                Some((m, s)) => standardize(x, m[k], s[k]),
                None => x,
            };
        }
        let group = match cols.group {
            None => 0,
            Some(c) => {
                let raw = line.cell(c);
                parse_u64(&raw).unwrap_or_else(|| fnv1a(raw.trim_ascii()))
            }
        };
        let weight = match cols.weight {
            None => 1.0,
            Some(c) => parse_f32(&line.cell(c))
                .filter(|w| w.is_finite() && *w >= 0.0)
                .ok_or_else(|| line.err(c, "weight is not a finite number >= 0".into()))?,
        };
        let bags: Vec<&[u32]> = bag_ids.iter().map(|v| v.as_slice()).collect();
        writer
            .push(&Row {
                labels: &labels,
                single: &single,
                bags: &bags,
                dense: &dense,
                group,
                weight,
            })
            .map_err(|e| line.row_err("-", e.to_string()))?;
        Ok(())
    })?;
    for r in &mut reports {
        if let Some(k) = cats.iter().position(|c| c.name == r.column) {
            r.unknown = unknown[k];
        }
    }
    let info = writer.finish()?;
    Ok(ConvertReport {
        info,
        bytes,
        funnel_violations: violations,
        dropped_rows: dropped,
        columns: reports,
    })
}
