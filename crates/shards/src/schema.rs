//! The dataset schema: what every row holds, stored as `schema.json` next to the shards.
//!
//! ```json
//! { "format_version": 1,
//!   "tasks": ["click", "conversion"],
//!   "single": [{"name": "101", "vocab": 294900}, ...],
//!   "multi":  [{"name": "210", "vocab": 99000, "pooling": "sum"}, ...],
//!   "dense":  {"count": 2, "names": ["price", "age"], "mean": [..], "std": [..]},
//!   "group": "session", "weight": false, "soft_labels": false,
//!   "targets": ["play_time"],
//!   "item": "205",
//!   "encodings": [{"field": "city", "kind": "vocabulary", "values": ["Lyon", ...], "min_count": 1},
//!                 {"field": "numerical_1", "kind": "quantiles", "cuts": [0.1, ...]}] }
//! ```
//!
//! `encodings` record how a converter turned raw column values into ids (a learned
//! vocabulary, hashing, percentile buckets), and `dense.mean` / `dense.std` the
//! training-set statistics dense columns were standardised with: the stored values are
//! already transformed. [`Encoding::encode`] and [`Schema::standardize_dense`] are the one
//! definition of those transforms, so anything that prepares a raw row later (a test set
//! converted with the training set's encodings, a serving host) computes the same inputs.
//! [`Schema::check_compatible`] tells whether two datasets (train and eval) feed a model
//! the same way.
//!
//! Tasks are listed in chain order (click before conversion). A task named in `targets` is
//! a continuous target column (any finite value) instead of a 0/1 label. Every shard carries the
//! schema's *fingerprint*, a hash of its structure (field names and kinds, tasks, dense
//! count, group and weight columns; not the vocabulary sizes, which converters learn while
//! streaming): a shard written for another layout is refused. Vocabulary sizes are still
//! enforced: every id is checked against its field's size when a shard is opened.

use serde::{Deserialize, Serialize};

use crate::error::{Result, ShardError};

/// The format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// The largest vocabulary a field may have: 2^26 ids. Its embedding table at the default
/// width (32) takes 8 GiB before optimiser state, beyond what this project's models are
/// trained with, so a larger vocabulary is a mistake (a stray id, an edited schema) caught
/// before anything is allocated.
pub const MAX_VOCAB: u32 = 1 << 26;

/// A single-valued categorical field: one id per row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SingleField {
    /// Name (the column it came from).
    pub name: String,
    /// Number of ids; every id is below it.
    pub vocab: u32,
}

/// How a multi-valued field's embeddings are pooled by a model (`"sum"` or `"mean"`).
pub use tensor::Pooling;

/// A multi-valued categorical field: a list of ids per row (possibly empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultiField {
    /// Name.
    pub name: String,
    /// Number of ids; every id is below it.
    pub vocab: u32,
    /// Pooling a model should apply.
    #[serde(default = "sum")]
    pub pooling: Pooling,
}

fn sum() -> Pooling {
    Pooling::Sum
}

/// Dense f32 features: a count, optional names and the statistics they were standardised
/// with.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenseSpec {
    /// Features per row.
    pub count: usize,
    /// Optional feature names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Per-feature training-set mean, when the stored values are standardised
    /// (`(x - mean) / std`); absent when they are raw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<Vec<f32>>,
    /// Per-feature training-set standard deviation (1 for a constant feature).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<Vec<f32>>,
}

/// What every row of a dataset holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schema {
    /// Must equal [`FORMAT_VERSION`].
    pub format_version: u32,
    /// Label names in chain order.
    pub tasks: Vec<String>,
    /// Single-valued categorical fields.
    #[serde(default)]
    pub single: Vec<SingleField>,
    /// Multi-valued categorical fields.
    #[serde(default)]
    pub multi: Vec<MultiField>,
    /// Dense features.
    #[serde(default)]
    pub dense: DenseSpec,
    /// Name of the group key (query, session or user), if rows carry one.
    #[serde(default)]
    pub group: Option<String>,
    /// Whether rows carry a sample weight.
    #[serde(default)]
    pub weight: bool,
    /// Labels may be any value in [0, 1] (otherwise exactly 0 or 1).
    #[serde(default)]
    pub soft_labels: bool,
    /// Tasks whose column is a continuous target (any finite number, e.g. a play time)
    /// rather than a 0/1 label; regression models read them, see `docs/shards.md`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// The single-valued field that identifies an item, if any: list metrics merge repeated
    /// impressions of an item within a group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    /// How raw values of some fields became ids (fields not listed hold raw integer ids).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub encodings: Vec<Encoding>,
}

/// How one field's raw values became ids. (Unknown keys are not refused here: serde cannot
/// combine that with the flattened kind; each kind's own keys are still required.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Encoding {
    /// The field (single or multi-valued).
    pub field: String,
    /// The transform.
    #[serde(flatten)]
    pub kind: EncodingKind,
}

/// The transforms a converter applies to categorical and bucketised columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EncodingKind {
    /// A learned vocabulary: id 0 is the unknown bucket (values never seen, or seen fewer
    /// than `min_count` times in the training set); `values[i]` has id `i + 1`.
    Vocabulary {
        /// The kept values, most frequent first (ties by value).
        values: Vec<String>,
        /// The training-set count a value needed to get its own id.
        min_count: u64,
    },
    /// FNV-1a hash of the trimmed value, modulo `buckets`.
    Hash {
        /// Number of ids.
        buckets: u32,
    },
    /// A numeric column cut at training-set quantiles: the id of `x` is the number of cut
    /// points `<= x` (so `0 ..= cuts.len()`).
    Quantiles {
        /// Strictly increasing finite cut points.
        cuts: Vec<f32>,
    },
    /// Raw integer ids whose vocabulary size was learned from the training set (max + 1).
    Ids,
}

/// FNV-1a, the hash of [`EncodingKind::Hash`] (and of string group keys).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

impl EncodingKind {
    /// The number of ids the encoding produces (`None` for [`EncodingKind::Ids`], whose
    /// size is the field's).
    pub fn vocab(&self) -> Option<u32> {
        match self {
            EncodingKind::Vocabulary { values, .. } => u32::try_from(values.len() + 1).ok(),
            EncodingKind::Hash { buckets } => Some(*buckets),
            EncodingKind::Quantiles { cuts } => u32::try_from(cuts.len() + 1).ok(),
            EncodingKind::Ids => None,
        }
    }

    /// The id of one raw cell (`raw` as written in the CSV, surrounding spaces ignored);
    /// an error for a non-numeric value of a quantile encoding, or a non-integer id.
    /// A vocabulary needs its lookup table: use [`Vocabulary::new`] and its `encode`.
    pub fn encode_numeric(&self, raw: &str) -> std::result::Result<u32, String> {
        let raw = raw.trim();
        match self {
            EncodingKind::Hash { buckets } => Ok((fnv1a(raw.as_bytes()) % *buckets as u64) as u32),
            EncodingKind::Quantiles { cuts } => {
                let x: f32 = raw
                    .parse()
                    .ok()
                    .filter(|x: &f32| !x.is_nan())
                    .ok_or_else(|| format!("{raw:?} is not a number"))?;
                Ok(bucket_of(cuts, x))
            }
            EncodingKind::Ids => raw
                .parse::<u32>()
                .ok()
                .filter(|&v| v < u32::MAX)
                .ok_or_else(|| format!("{raw:?} is not an integer id")),
            EncodingKind::Vocabulary { .. } => {
                Err("a vocabulary encodes through its lookup table (Vocabulary::new)".into())
            }
        }
    }
}

/// The bucket of `x` for sorted cut points: the number of cuts `<= x`.
pub fn bucket_of(cuts: &[f32], x: f32) -> u32 {
    cuts.partition_point(|&c| c <= x) as u32
}

/// The lookup table of a learned vocabulary.
#[derive(Debug, Clone, Default)]
pub struct Vocabulary {
    ids: std::collections::HashMap<Vec<u8>, u32>,
}

impl Vocabulary {
    /// The table of `values` (`values[i]` gets id `i + 1`; anything else id 0).
    pub fn new(values: &[String]) -> Self {
        Self {
            ids: values
                .iter()
                .enumerate()
                .map(|(i, v)| (v.as_bytes().to_vec(), i as u32 + 1))
                .collect(),
        }
    }

    /// The id of a raw cell (surrounding spaces ignored): 0 when unknown.
    pub fn encode(&self, raw: &[u8]) -> u32 {
        self.ids.get(raw.trim_ascii()).copied().unwrap_or(0)
    }
}

impl Schema {
    /// Checks the schema's own consistency.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ShardError::Schema(m));
        if self.format_version != FORMAT_VERSION {
            return bad(format!(
                "format_version {} is not supported (this build reads {FORMAT_VERSION})",
                self.format_version
            ));
        }
        if self.tasks.is_empty() {
            return bad("at least one task (label) is needed".into());
        }
        for (i, t) in self.targets.iter().enumerate() {
            if !self.tasks.contains(t) {
                return bad(format!(
                    "target {t:?} is not one of the tasks {:?}",
                    self.tasks
                ));
            }
            if self.targets[..i].contains(t) {
                return bad(format!("target {t:?} is listed twice"));
            }
        }
        let mut names: Vec<&str> = self
            .single
            .iter()
            .map(|f| f.name.as_str())
            .chain(self.multi.iter().map(|f| f.name.as_str()))
            .collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return bad(format!("field {:?} is declared twice", w[0]));
        }
        if let Some(f) = self
            .single
            .iter()
            .map(|f| (&f.name, f.vocab))
            .chain(self.multi.iter().map(|f| (&f.name, f.vocab)))
            .find(|f| f.1 == 0)
        {
            return bad(format!("field {:?} has vocab 0", f.0));
        }
        if let Some(f) = self
            .single
            .iter()
            .map(|f| (&f.name, f.vocab))
            .chain(self.multi.iter().map(|f| (&f.name, f.vocab)))
            .find(|f| f.1 > MAX_VOCAB)
        {
            return bad(format!(
                "field {:?} has vocab {}, more than the {MAX_VOCAB} allowed",
                f.0, f.1
            ));
        }
        // A label that is also an input would leak the answer into the features.
        if let Some(t) = self
            .tasks
            .iter()
            .find(|t| names.contains(&t.as_str()) || self.dense.names.iter().any(|n| n == *t))
        {
            return bad(format!(
                "label {t:?} is also an input feature: the model would see the answer"
            ));
        }
        let d = &self.dense;
        if !d.names.is_empty() && d.names.len() != d.count {
            return bad(format!(
                "{} dense names for {} dense features",
                d.names.len(),
                d.count
            ));
        }
        for (what, v) in [("mean", &d.mean), ("std", &d.std)] {
            if let Some(v) = v.as_ref().filter(|v| v.len() != d.count) {
                return bad(format!(
                    "dense {what} has {} values for {} features",
                    v.len(),
                    d.count
                ));
            }
        }
        for (what, v) in [("mean", &d.mean), ("std", &d.std)] {
            if let Some(x) = v.iter().flatten().find(|x| !x.is_finite()) {
                return bad(format!("dense {what} holds {x}, expected finite values"));
            }
        }
        if let Some(x) = d.std.iter().flatten().find(|&&x| x <= 0.0) {
            return bad(format!("dense std holds {x}, expected positive values"));
        }
        if d.mean.is_some() != d.std.is_some() {
            return bad("dense mean and std must be given together".into());
        }
        if let Some(item) = &self.item
            && !self.single.iter().any(|f| &f.name == item)
        {
            return bad(format!(
                "the item field {item:?} is not a single-valued field"
            ));
        }
        let mut seen: Vec<&str> = Vec::new();
        for e in &self.encodings {
            if seen.contains(&e.field.as_str()) {
                return bad(format!("field {:?} has two encodings", e.field));
            }
            seen.push(&e.field);
            let vocab = self
                .single
                .iter()
                .map(|f| (&f.name, f.vocab))
                .chain(self.multi.iter().map(|f| (&f.name, f.vocab)))
                .find(|f| f.0 == &e.field)
                .map(|f| f.1);
            let Some(vocab) = vocab else {
                return bad(format!("encoding of unknown field {:?}", e.field));
            };
            if let EncodingKind::Quantiles { cuts } = &e.kind
                && (cuts.iter().any(|c| !c.is_finite()) || cuts.windows(2).any(|w| w[0] >= w[1]))
            {
                return bad(format!(
                    "field {:?}: quantile cut points must be finite and strictly increasing",
                    e.field
                ));
            }
            if matches!(e.kind, EncodingKind::Hash { buckets: 0 }) {
                return bad(format!(
                    "field {:?}: hash buckets must be at least 1",
                    e.field
                ));
            }
            if let Some(n) = e.kind.vocab().filter(|&n| n != vocab) {
                return bad(format!(
                    "field {:?}: its encoding gives {n} ids but its vocab is {vocab}",
                    e.field
                ));
            }
        }
        Ok(())
    }

    /// The encoding of `field`, if it has one.
    pub fn encoding(&self, field: &str) -> Option<&EncodingKind> {
        self.encodings
            .iter()
            .find(|e| e.field == field)
            .map(|e| &e.kind)
    }

    /// The position of a single-valued field.
    pub fn single_index(&self, name: &str) -> Option<usize> {
        self.single.iter().position(|f| f.name == name)
    }

    /// Standardises raw dense values in place with the schema's statistics, exactly as the
    /// converter did (`(x - mean) / std` in f64, rounded once to f32); unchanged when the
    /// schema stores raw values. `values` holds whole rows of `dense.count` features.
    pub fn standardize_dense(&self, values: &mut [f32]) {
        let (Some(mean), Some(std)) = (&self.dense.mean, &self.dense.std) else {
            return;
        };
        for row in values.chunks_mut(self.dense.count.max(1)) {
            for ((x, m), s) in row.iter_mut().zip(mean).zip(std) {
                *x = standardize(*x, *m, *s);
            }
        }
    }

    /// Checks that a dataset with schema `other` (an evaluation set) feeds a model trained
    /// on this one (the training set) the same way: the same tasks, fields, vocabulary sizes,
    /// encodings, dense features and statistics. The error lists every difference.
    pub fn check_compatible(&self, other: &Schema) -> Result<()> {
        let mut diffs = Vec::new();
        if self.tasks != other.tasks {
            diffs.push(format!("tasks {:?} vs {:?}", self.tasks, other.tasks));
        }
        if self.targets != other.targets {
            diffs.push(format!(
                "continuous targets {:?} vs {:?}",
                self.targets, other.targets
            ));
        }
        let fields = |s: &Schema| -> Vec<(String, u32, bool)> {
            s.single
                .iter()
                .map(|f| (f.name.clone(), f.vocab, false))
                .chain(s.multi.iter().map(|f| (f.name.clone(), f.vocab, true)))
                .collect()
        };
        let (a, b) = (fields(self), fields(other));
        if a.len() != b.len() || a.iter().zip(&b).any(|(x, y)| x.0 != y.0 || x.2 != y.2) {
            diffs.push(format!(
                "fields {:?} vs {:?}",
                a.iter().map(|f| &f.0).collect::<Vec<_>>(),
                b.iter().map(|f| &f.0).collect::<Vec<_>>()
            ));
        } else {
            for (x, y) in a.iter().zip(&b) {
                if x.1 != y.1 {
                    diffs.push(format!(
                        "field {:?}: vocabulary of {} ids vs {} (convert the second set with --vocab-from the first)",
                        x.0, x.1, y.1
                    ));
                }
                if self.encoding(&x.0) != other.encoding(&y.0) {
                    diffs.push(format!(
                        "field {:?}: different encodings (learned vocabulary, hashing or cut points)",
                        x.0
                    ));
                }
            }
        }
        if self.dense.count != other.dense.count {
            diffs.push(format!(
                "{} dense features vs {}",
                self.dense.count, other.dense.count
            ));
        } else if self.dense.mean != other.dense.mean || self.dense.std != other.dense.std {
            diffs.push(
                "dense features standardised with different statistics (convert the second set with --vocab-from the first)"
                    .into(),
            );
        }
        if self.group.is_some() != other.group.is_some() {
            diffs.push(format!(
                "group column {:?} vs {:?}",
                self.group, other.group
            ));
        }
        if diffs.is_empty() {
            Ok(())
        } else {
            Err(ShardError::Schema(format!(
                "the datasets are not compatible: {}",
                diffs.join("; ")
            )))
        }
    }

    /// Parses and validates `schema.json` text.
    pub fn from_json(text: &str) -> Result<Self> {
        let s: Schema =
            serde_json::from_str(text).map_err(|e| ShardError::Schema(e.to_string()))?;
        s.validate()?;
        Ok(s)
    }

    /// The schema as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a schema always serialises")
    }

    /// Hash of the structure (not the vocabulary sizes): FNV-1a over a canonical string.
    pub fn fingerprint(&self) -> u64 {
        let mut text = format!("v{};tasks={:?};", self.format_version, self.tasks);
        for f in &self.single {
            text.push_str(&format!("s:{};", f.name));
        }
        for f in &self.multi {
            text.push_str(&format!("m:{};", f.name));
        }
        text.push_str(&format!(
            "d:{};g:{};w:{};soft:{}",
            self.dense.count,
            self.group.is_some(),
            self.weight,
            self.soft_labels
        ));
        // Only when present, so datasets without targets keep their fingerprints.
        if !self.targets.is_empty() {
            text.push_str(&format!(";targets={:?}", self.targets));
        }
        fnv1a(text.as_bytes())
    }

    /// Per task, whether its column is a continuous target (see [`Schema::targets`]).
    pub fn target_mask(&self) -> Vec<bool> {
        self.tasks
            .iter()
            .map(|t| self.targets.contains(t))
            .collect()
    }

    /// Whether `y` is a valid value of task `t`'s column, `target` its entry of
    /// [`Schema::target_mask`]: any finite number for a target, else 0 or 1 (anything in
    /// [0, 1] with soft labels).
    pub fn label_ok(&self, target: bool, y: f32) -> bool {
        if target {
            y.is_finite()
        } else if self.soft_labels {
            (0.0..=1.0).contains(&y)
        } else {
            y == 0.0 || y == 1.0
        }
    }

    /// The position of task `name`.
    pub fn task_index(&self, name: &str) -> Option<usize> {
        self.tasks.iter().position(|t| t == name)
    }

    /// Number of tasks.
    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }
}

/// `(x - mean) / std` in f64, rounded once: the standardisation of one dense value.
pub fn standardize(x: f32, mean: f32, std: f32) -> f32 {
    ((x as f64 - mean as f64) / std as f64) as f32
}
