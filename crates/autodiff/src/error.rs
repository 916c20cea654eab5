//! The one error type of the `autodiff` crate.

/// A rejected operation, naming the op and the shapes or values involved.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AutodiffError {
    /// Operand shapes do not fit the op.
    #[error("{op}: shape mismatch: {detail}")]
    Shape {
        /// The op being recorded.
        op: &'static str,
        /// Both shapes and the rule they broke.
        detail: String,
    },
    /// An embedding id is not below its table's row count.
    #[error("{op}: row {row}: id {id} is out of range for a table of {rows} rows")]
    IdOutOfRange {
        /// The op being recorded.
        op: &'static str,
        /// The batch row holding the id.
        row: usize,
        /// The id.
        id: u32,
        /// Rows in the table.
        rows: usize,
    },
    /// Any other invalid argument (bad offsets, NaN labels, a non-scalar loss...).
    #[error("{op}: {detail}")]
    Invalid {
        /// The op or method called.
        op: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// A tensor kernel rejected its operands (a bug if shapes were checked at record time).
    #[error(transparent)]
    Tensor(#[from] tensor::TensorError),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, AutodiffError>;

/// A shape-mismatch error for `op` with the two shapes.
pub(crate) fn shape_err(
    op: &'static str,
    a: (usize, usize),
    b: (usize, usize),
    rule: &str,
) -> AutodiffError {
    AutodiffError::Shape {
        op,
        detail: format!("{}x{} and {}x{}: {rule}", a.0, a.1, b.0, b.1),
    }
}
