//! The dataset schema: what every row holds, stored as `schema.json` next to the shards.
//!
//! ```json
//! { "format_version": 1,
//!   "tasks": ["click", "conversion"],
//!   "single": [{"name": "101", "vocab": 294900}, ...],
//!   "multi":  [{"name": "210", "vocab": 99000, "pooling": "sum"}, ...],
//!   "dense":  {"count": 0},
//!   "group": "session", "weight": false, "soft_labels": false }
//! ```
//!
//! Tasks are listed in chain order (click before conversion). Every shard carries the
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

/// How a multi-valued field's embeddings are pooled by a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// Sum of the rows.
    Sum,
    /// Mean of the rows.
    Mean,
}

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

/// Dense f32 features: a count, optional names and optional normalisation statistics.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenseSpec {
    /// Features per row.
    pub count: usize,
    /// Optional feature names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Optional per-feature mean (for normalisation by a model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<Vec<f32>>,
    /// Optional per-feature standard deviation.
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
        Ok(())
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
        text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
        })
    }

    /// Number of tasks.
    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }
}
