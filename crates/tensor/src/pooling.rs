//! How the rows of a bag (a multi-valued field's embedding rows) are combined into one:
//! their sum or their mean. One type for every layer that meets a bag: the data schema
//! declares it, the model's input layout records it, the autodiff tape, the scorer and the
//! reference apply it.
//!
//! ```text
//! bag of n rows e_1..e_n (each D wide)  ->  w * (e_1 + ... + e_n),   w = row_weight(n)
//!   Sum:  w = 1          Mean:  w = 1 / n   (an empty bag pools to zeros either way)
//! ```

use serde::{Deserialize, Serialize};

/// How a bag's rows are combined. Written `"sum"` / `"mean"` in schemas and model files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// Sum of the rows (the authors' choice).
    Sum,
    /// Mean of the rows (zeros for an empty bag).
    Mean,
}

impl Pooling {
    /// The weight of each of a bag's `len` rows in the pooled row: 1 for a sum, `1 / len`
    /// for a mean (1 for an empty bag, whose pooled row is zeros whatever the weight). It
    /// is also the factor of the gradient that flows back to each row.
    pub fn row_weight(self, len: usize) -> f32 {
        match self {
            Pooling::Sum => 1.0,
            Pooling::Mean => 1.0 / len.max(1) as f32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Pooling;

    #[test]
    fn row_weights_and_names() {
        assert_eq!(Pooling::Sum.row_weight(4), 1.0);
        assert_eq!(Pooling::Mean.row_weight(4), 0.25);
        assert_eq!(Pooling::Mean.row_weight(1), 1.0);
        assert_eq!(Pooling::Mean.row_weight(0), 1.0);
        assert_eq!(serde_json::to_string(&Pooling::Mean).unwrap(), "\"mean\"");
        assert_eq!(
            serde_json::from_str::<Pooling>("\"sum\"").unwrap(),
            Pooling::Sum
        );
    }
}
