//! CSV to shards. One engine, driven by a [`CsvSpec`] that says which column is what; the
//! built-in layouts (AliExpress, Ali-CCP) are specs built from the file's header.
//!
//! ```json
//! { "labels": ["click", "conversion"],
//!   "single": [{"column": "user_id", "hash_buckets": 100000}, {"column": "age", "vocab": 8}],
//!   "multi":  [{"column": "tags", "separator": ";", "hash_buckets": 5000}],
//!   "dense":  ["price", "score"],
//!   "group":  "search_id",
//!   "weight": null,
//!   "funnel": true }
//! ```
//!
//! Categorical values are integer ids, checked against `vocab` when it is given and
//! learned (`max id + 1`) when it is not; with `hash_buckets` any value (a string too) is
//! hashed (FNV-1a) into that many ids. The first line must be a header. Bad input is an
//! error naming the file, line and column: a short row, a non-numeric label or feature, a
//! label that is not 0/1, an id out of range, an empty file, a missing column. With
//! `funnel`, a later task positive without the earlier one (a conversion without a click)
//! is counted as a warning, or is an error in strict mode. The dataset is written to a
//! temporary directory and renamed into place only when the whole file converted, so a
//! failed conversion leaves nothing behind.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, ShardError, io};
use crate::schema::{DenseSpec, FORMAT_VERSION, MultiField, Pooling, Schema, SingleField};
use crate::writer::{DatasetInfo, Row, ShardWriter};

/// A single-valued categorical column.
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

/// Which CSV column is what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvSpec {
    /// Label columns, in chain order.
    pub labels: Vec<String>,
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
    /// Labels may be any value in [0, 1].
    #[serde(default)]
    pub soft_labels: bool,
    /// Check that a later task is never positive without the earlier one.
    #[serde(default)]
    pub funnel: bool,
}

/// Conversion settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvertOptions {
    /// Funnel violations are errors instead of counted warnings.
    pub strict: bool,
    /// Rows per shard file.
    pub rows_per_shard: usize,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        Self {
            strict: false,
            rows_per_shard: 65_536,
        }
    }
}

/// What a conversion did.
#[derive(Debug, Clone)]
pub struct ConvertReport {
    /// The dataset written.
    pub info: DatasetInfo,
    /// Bytes of CSV read.
    pub bytes: u64,
    /// Rows where a later task was positive without the earlier one (kept as they were).
    pub funnel_violations: u64,
}

/// The AliExpress layout: `search_id, categorical_1..16, numerical_1..63, click,
/// conversion`; the search id (one result page) is the group.
pub fn aliexpress_spec() -> CsvSpec {
    CsvSpec {
        labels: vec!["click".into(), "conversion".into()],
        single: (1..=16)
            .map(|i| ColumnSpec {
                column: format!("categorical_{i}"),
                vocab: None,
                hash_buckets: None,
            })
            .collect(),
        multi: vec![],
        dense: (1..=63).map(|i| format!("numerical_{i}")).collect(),
        group: Some("search_id".into()),
        weight: None,
        soft_labels: false,
        funnel: true,
    }
}

/// The Ali-CCP layout of the released code: label columns, the 17 single-valued fields
/// (205 ... 129), the bags 210 and 853 (`;`-separated), with the layout's hash sizes as
/// vocabularies. Label columns are `click` and `conversion` (or `cart` and `order` for
/// three tasks); a `session` column, if present, is the group.
pub fn aliccp_spec(header: &[String]) -> CsvSpec {
    let has = |c: &str| header.iter().any(|h| h == c);
    let labels: Vec<String> = ["click", "cart", "conversion", "order"]
        .iter()
        .filter(|c| has(c))
        .map(|c| c.to_string())
        .collect();
    CsvSpec {
        labels,
        single: crate::synth::ALICCP_SINGLE
            .iter()
            .map(|&(c, v)| ColumnSpec {
                column: c.into(),
                vocab: Some(v),
                hash_buckets: None,
            })
            .collect(),
        multi: crate::synth::ALICCP_MULTI
            .iter()
            .map(|&(c, v)| BagSpec {
                column: c.into(),
                separator: ';',
                vocab: Some(v),
                hash_buckets: None,
                pooling: Pooling::Sum,
            })
            .collect(),
        dense: vec![],
        group: has("session").then(|| "session".to_string()),
        weight: None,
        soft_labels: false,
        funnel: true,
    }
}

/// Reads only the header line of a CSV file.
pub fn read_header(path: &Path) -> Result<Vec<String>> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    let mut line = Vec::new();
    std::io::BufReader::new(file)
        .read_until(b'\n', &mut line)
        .map_err(io(path))?;
    if line.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(csv_err(
            path,
            1,
            "-",
            "empty file: a header line is needed".into(),
        ));
    }
    let mut spans = Vec::new();
    split(trim_eol(&line), &mut spans);
    Ok(spans
        .iter()
        .map(|&(a, b)| {
            String::from_utf8_lossy(&unquote(&line[a..b]))
                .trim()
                .to_string()
        })
        .collect())
}

fn csv_err(path: &Path, line: usize, column: &str, detail: String) -> ShardError {
    ShardError::Csv {
        file: path.display().to_string(),
        line,
        column: column.to_string(),
        detail,
    }
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && (line[end - 1] == b'\n' || line[end - 1] == b'\r') {
        end -= 1;
    }
    &line[..end]
}

/// Splits a CSV line into field spans (double-quoted fields may contain commas).
fn split(line: &[u8], spans: &mut Vec<(usize, usize)>) {
    spans.clear();
    let mut start = 0;
    let mut quoted = false;
    for (i, &b) in line.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                spans.push((start, i));
                start = i + 1;
            }
            _ => {}
        }
    }
    spans.push((start, line.len()));
}

/// A field without its surrounding quotes ("" inside becomes ").
fn unquote(f: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if f.len() >= 2 && f[0] == b'"' && f[f.len() - 1] == b'"' {
        let inner = &f[1..f.len() - 1];
        let mut out = Vec::with_capacity(inner.len());
        let mut i = 0;
        while i < inner.len() {
            out.push(inner[i]);
            i += if inner[i] == b'"' && inner.get(i + 1) == Some(&b'"') {
                2
            } else {
                1
            };
        }
        std::borrow::Cow::Owned(out)
    } else {
        std::borrow::Cow::Borrowed(f)
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

fn parse_u64(f: &[u8]) -> Option<u64> {
    let f = f.trim_ascii();
    if f.is_empty() || f.len() > 19 {
        return None;
    }
    f.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + (b - b'0') as u64)
    })
}

fn parse_f32(f: &[u8]) -> Option<f32> {
    std::str::from_utf8(f.trim_ascii())
        .ok()?
        .parse::<f32>()
        .ok()
}

/// Column positions resolved against the header.
struct Columns {
    labels: Vec<usize>,
    single: Vec<usize>,
    multi: Vec<usize>,
    dense: Vec<usize>,
    group: Option<usize>,
    weight: Option<usize>,
    count: usize,
}

fn resolve(path: &Path, header: &[String], spec: &CsvSpec) -> Result<Columns> {
    let find = |name: &str| {
        header.iter().position(|h| h == name).ok_or_else(|| {
            csv_err(
                path,
                1,
                name,
                format!("missing column (the header has {} columns)", header.len()),
            )
        })
    };
    Ok(Columns {
        labels: spec.labels.iter().map(|c| find(c)).collect::<Result<_>>()?,
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
        count: header.len(),
    })
}

/// The schema a spec produces (learned vocabularies start at 1 and grow).
pub fn schema_of(spec: &CsvSpec) -> Schema {
    Schema {
        format_version: FORMAT_VERSION,
        tasks: spec.labels.clone(),
        single: spec
            .single
            .iter()
            .map(|c| SingleField {
                name: c.column.clone(),
                vocab: c.hash_buckets.or(c.vocab).unwrap_or(1),
            })
            .collect(),
        multi: spec
            .multi
            .iter()
            .map(|c| MultiField {
                name: c.column.clone(),
                vocab: c.hash_buckets.or(c.vocab).unwrap_or(1),
                pooling: c.pooling,
            })
            .collect(),
        dense: DenseSpec {
            count: spec.dense.len(),
            names: spec.dense.clone(),
            mean: None,
            std: None,
        },
        group: spec.group.clone(),
        weight: spec.weight.is_some(),
        soft_labels: spec.soft_labels,
    }
}

/// An id from a categorical cell: hashed, or an integer checked against the vocabulary.
fn id_of(
    cell: &[u8],
    vocab: Option<u32>,
    buckets: Option<u32>,
) -> std::result::Result<u32, String> {
    if let Some(b) = buckets {
        if b == 0 {
            return Err("hash_buckets must be at least 1".into());
        }
        return Ok((fnv(cell.trim_ascii()) % b as u64) as u32);
    }
    let v = parse_u64(cell).ok_or_else(|| {
        format!(
            "{:?} is not an integer id (set hash_buckets to hash other values)",
            String::from_utf8_lossy(cell)
        )
    })?;
    if v > u32::MAX as u64 - 1 {
        return Err(format!("id {v} does not fit in 32 bits"));
    }
    if let Some(vocab) = vocab.filter(|&vocab| v >= vocab as u64) {
        return Err(format!("id {v} is out of range (vocab {vocab})"));
    }
    Ok(v as u32)
}

/// Converts the CSV at `input` into a dataset at `out` (which must not exist, or be empty).
pub fn convert_csv(
    input: &Path,
    spec: &CsvSpec,
    out: &Path,
    options: ConvertOptions,
) -> Result<ConvertReport> {
    if spec.labels.is_empty() {
        return Err(ShardError::Schema(
            "the conversion spec needs at least one label column".into(),
        ));
    }
    if let Some(b) = spec.multi.iter().find(|b| !b.separator.is_ascii()) {
        return Err(ShardError::Schema(format!(
            "column {:?}: the separator must be an ASCII character",
            b.column
        )));
    }
    if out.exists() && std::fs::read_dir(out).map_err(io(out))?.next().is_some() {
        return Err(ShardError::Schema(format!(
            "{} exists and is not empty",
            out.display()
        )));
    }
    crate::atomic::remove_stale_temporaries(out);
    let tmp: PathBuf = crate::atomic::staging_dir(out);
    let _ = std::fs::remove_dir_all(&tmp);
    let result = convert_into(input, spec, &tmp, options);
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
    input: &Path,
    spec: &CsvSpec,
    dir: &Path,
    options: ConvertOptions,
) -> Result<ConvertReport> {
    let header = read_header(input)?;
    let cols = resolve(input, &header, spec)?;
    let mut writer = ShardWriter::create(dir, schema_of(spec), options.rows_per_shard, true)?;
    let file = std::fs::File::open(input).map_err(io(input))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut line = Vec::with_capacity(4096);
    let mut spans = Vec::new();
    let (mut labels, mut single, mut dense) = (
        vec![0.0f32; cols.labels.len()],
        vec![0u32; cols.single.len()],
        vec![0.0f32; cols.dense.len()],
    );
    let mut bag_ids: Vec<Vec<u32>> = vec![Vec::new(); cols.multi.len()];
    let (mut bytes, mut lineno, mut violations) = (0u64, 0usize, 0u64);
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(io(input))?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        lineno += 1;
        if lineno == 1 {
            continue;
        }
        let text = trim_eol(&line);
        if text.is_empty() {
            continue;
        }
        split(text, &mut spans);
        let col_name = |i: usize| {
            header
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("#{}", i + 1))
        };
        if spans.len() != cols.count {
            return Err(csv_err(
                input,
                lineno,
                &col_name(spans.len().min(cols.count)),
                format!("{} columns, the header has {}", spans.len(), cols.count),
            ));
        }
        let cell =
            |i: usize| -> std::borrow::Cow<'_, [u8]> { unquote(&text[spans[i].0..spans[i].1]) };
        for (k, &c) in cols.labels.iter().enumerate() {
            let y = parse_f32(&cell(c)).ok_or_else(|| {
                csv_err(
                    input,
                    lineno,
                    &col_name(c),
                    format!(
                        "label {:?} is not a number",
                        String::from_utf8_lossy(&cell(c))
                    ),
                )
            })?;
            let ok = if spec.soft_labels {
                (0.0..=1.0).contains(&y)
            } else {
                y == 0.0 || y == 1.0
            };
            if !ok {
                return Err(csv_err(
                    input,
                    lineno,
                    &col_name(c),
                    format!(
                        "label {y} is not {}",
                        if spec.soft_labels {
                            "in [0, 1]"
                        } else {
                            "0 or 1"
                        }
                    ),
                ));
            }
            labels[k] = y;
        }
        if spec.funnel && labels.windows(2).any(|w| w[1] > w[0]) {
            if options.strict {
                return Err(csv_err(input, lineno, &spec.labels.join(","), "a later task is positive without the earlier one (e.g. a conversion without a click)".into()));
            }
            violations += 1;
        }
        for (k, (&c, s)) in cols.single.iter().zip(&spec.single).enumerate() {
            single[k] = id_of(&cell(c), s.vocab, s.hash_buckets)
                .map_err(|d| csv_err(input, lineno, &col_name(c), d))?;
        }
        for (k, (&c, s)) in cols.multi.iter().zip(&spec.multi).enumerate() {
            bag_ids[k].clear();
            let raw = cell(c);
            if !raw.trim_ascii().is_empty() {
                let sep = s.separator as u8;
                for part in raw.split(|&b| b == sep) {
                    bag_ids[k].push(
                        id_of(part, s.vocab, s.hash_buckets)
                            .map_err(|d| csv_err(input, lineno, &col_name(c), d))?,
                    );
                }
            }
        }
        for (k, &c) in cols.dense.iter().enumerate() {
            dense[k] = parse_f32(&cell(c))
                .filter(|v| v.is_finite())
                .ok_or_else(|| {
                    csv_err(
                        input,
                        lineno,
                        &col_name(c),
                        format!(
                            "{:?} is not a finite number",
                            String::from_utf8_lossy(&cell(c))
                        ),
                    )
                })?;
        }
        let group = match cols.group {
            None => 0,
            Some(c) => {
                let raw = cell(c);
                parse_u64(&raw).unwrap_or_else(|| fnv(raw.trim_ascii()))
            }
        };
        let weight = match cols.weight {
            None => 1.0,
            Some(c) => parse_f32(&cell(c))
                .filter(|w| w.is_finite() && *w >= 0.0)
                .ok_or_else(|| {
                    csv_err(
                        input,
                        lineno,
                        &col_name(c),
                        "weight is not a finite number >= 0".into(),
                    )
                })?,
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
            .map_err(|e| csv_err(input, lineno, "-", e.to_string()))?;
    }
    if lineno == 0 {
        return Err(csv_err(
            input,
            1,
            "-",
            "empty file: a header line is needed".into(),
        ));
    }
    let info = writer.finish()?;
    Ok(ConvertReport {
        info,
        bytes,
        funnel_violations: violations,
    })
}
