//! The one error type of the `resflow` crate.

/// What went wrong, with the file, field, row or op involved.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The configuration is invalid (which key, what was expected).
    #[error("bad configuration: {0}")]
    Config(String),
    /// The input layout does not fit the configuration or the data.
    #[error("bad input layout: {0}")]
    Layout(String),
    /// A model file is unreadable, truncated or inconsistent.
    #[error("model file {path}: {detail}")]
    ModelFile {
        /// The file.
        path: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A value that must be finite is not (a diverged training, a corrupt file): nothing
    /// holding it is written.
    #[error("non-finite values: {0}")]
    NonFinite(String),
    /// An operating-system error on a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A scoring request whose buffers do not add up.
    #[error("bad request: {0}")]
    Request(String),
    /// An output buffer is shorter than the request needs.
    #[error("output buffer {what} holds {got} floats, the request needs {needed}")]
    BufferTooSmall {
        /// Which buffer.
        what: &'static str,
        /// Floats needed.
        needed: usize,
        /// Floats given.
        got: usize,
    },
    /// A categorical id is not below its field's vocabulary size.
    #[error("field {field:?}, {}: id {id} is out of range (vocabulary {vocab})", place(*.row))]
    IdOutOfRange {
        /// The field's name.
        field: String,
        /// The candidate (row) index, or `None` for a field given once per request.
        row: Option<usize>,
        /// The offending id.
        id: u64,
        /// The field's vocabulary size.
        vocab: u32,
    },
    /// A tensor kernel rejected its operands (a bug if it happens inside the model).
    #[error(transparent)]
    Tensor(#[from] tensor::TensorError),
    /// The autodiff tape rejected an operation (bad ids or labels in the data, or a bug).
    #[error("model forward: {0}")]
    Tape(#[from] autodiff::AutodiffError),
    /// Reading a dataset failed.
    #[error(transparent)]
    Data(#[from] shards::ShardError),
    /// A metric could not be computed.
    #[error("evaluation: {0}")]
    Metrics(#[from] metrics::MetricsError),
}

/// Where an id was found: a candidate, or the request-level fields.
fn place(row: Option<usize>) -> String {
    row.map_or_else(|| "request-level".to_string(), |r| format!("candidate {r}"))
}
