//! The input layout: which categorical fields feed the embeddings, how many dense features
//! follow, and the task names, in the order the model concatenates them.
//!
//! ```text
//! x = [ emb(field 0) | emb(field 1) | ... | emb(field F-1) | dense (D floats) ]
//!       dim floats     dim floats            dim floats
//! ```
//!
//! A single-valued field looks up one row of its table; a multi-valued field (a "bag")
//! pools the rows of its ids (sum, or mean; an empty bag gives zeros).

use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// How a multi-valued field's embedding rows are combined (the data schema's type).
pub use tensor::Pooling;

/// One categorical field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    /// The field's name (as in the dataset schema).
    pub name: String,
    /// Number of distinct ids (rows of the embedding table); ids must be below it.
    pub vocab: u32,
    /// `None` for a single-valued field, the pooling for a multi-valued one.
    pub bag: Option<Pooling>,
}

/// Everything the model needs to know about its inputs and outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputLayout {
    /// Categorical fields in concatenation order.
    pub fields: Vec<Field>,
    /// Number of dense f32 features appended after the embeddings.
    pub dense: usize,
    /// Task (label) names in chain order.
    pub tasks: Vec<String>,
}

impl InputLayout {
    /// Width of the concatenated input for embeddings of width `dim`.
    pub fn input_width(&self, dim: usize) -> usize {
        self.fields.len() * dim + self.dense
    }

    /// Checks vocabulary sizes and name uniqueness.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.fields.is_empty() && self.dense == 0 {
            return Err(ModelError::Layout(
                "no categorical field and no dense feature".into(),
            ));
        }
        if self.tasks.is_empty() {
            return Err(ModelError::Layout("no task".into()));
        }
        for f in &self.fields {
            if f.vocab == 0 {
                return Err(ModelError::Layout(format!(
                    "field {:?} has an empty vocabulary",
                    f.name
                )));
            }
        }
        let mut names: Vec<&str> = self.fields.iter().map(|f| f.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(ModelError::Layout(format!(
                "field {:?} appears twice",
                w[0]
            )));
        }
        Ok(())
    }

    /// Index of the field called `name`.
    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }
}
