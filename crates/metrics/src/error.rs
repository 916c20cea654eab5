//! The one error type of the `metrics` crate.

/// Why a metric cannot be computed on the given input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricsError {
    /// Two inputs that must align have different lengths.
    #[error("{what}: {got} values, expected {expected}")]
    LengthMismatch {
        /// Which input.
        what: &'static str,
        /// The length it must have.
        expected: usize,
        /// The length it has.
        got: usize,
    },
    /// AUC needs both classes; this input has only one (or none).
    #[error(
        "{what}: needs both positive and negative labels, got {positives} positives and {negatives} negatives"
    )]
    SingleClass {
        /// Which metric.
        what: &'static str,
        /// Positive labels seen.
        positives: u64,
        /// Negative labels seen.
        negatives: u64,
    },
    /// A label is not 0 or 1 (or NaN).
    #[error("label at index {index} is {value}, expected 0 or 1")]
    InvalidLabel {
        /// Position in the input.
        index: usize,
        /// The value found.
        value: f32,
    },
    /// A score or probability is NaN (or, for log loss, outside [0, 1]).
    #[error("{what} at index {index} is {value}")]
    InvalidScore {
        /// What kind of value.
        what: &'static str,
        /// Position in the input.
        index: usize,
        /// The value found.
        value: f32,
    },
    /// A parameter is unusable (K = 0, no tasks, weights of the wrong length...).
    #[error("{0}")]
    Invalid(String),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, MetricsError>;

/// Checks that `got` equals `expected`.
pub(crate) fn same_len(what: &'static str, expected: usize, got: usize) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(MetricsError::LengthMismatch {
            what,
            expected,
            got,
        })
    }
}

/// Checks that every label is exactly 0 or 1.
pub(crate) fn check_labels(labels: &[f32]) -> Result<()> {
    match labels.iter().position(|&y| y != 0.0 && y != 1.0) {
        Some(index) => Err(MetricsError::InvalidLabel {
            index,
            value: labels[index],
        }),
        None => Ok(()),
    }
}

/// Checks that no score is NaN.
pub(crate) fn check_scores(what: &'static str, scores: &[f32]) -> Result<()> {
    match scores.iter().position(|s| s.is_nan()) {
        Some(index) => Err(MetricsError::InvalidScore {
            what,
            index,
            value: scores[index],
        }),
        None => Ok(()),
    }
}
