//! The one error type of the `resflow` crate: the model's own errors, and those of the
//! libraries training brings in (the tape, the data, the metrics).

pub use model::ModelError;

/// What went wrong while training, evaluating or scoring a dataset.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model, its configuration, its file or a request (see [`ModelError`]).
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The autodiff tape rejected an operation (bad ids or labels in the data, or a bug).
    #[error("model forward: {0}")]
    Tape(#[from] autodiff::AutodiffError),
    /// Reading a dataset failed.
    #[error(transparent)]
    Data(#[from] shards::ShardError),
    /// A metric could not be computed.
    #[error("evaluation: {0}")]
    Metrics(#[from] metrics::MetricsError),
    /// Training across processes failed: another process's step, or the transport.
    #[error("distributed training: {0}")]
    Distributed(String),
}

impl From<tensor::TensorError> for Error {
    fn from(e: tensor::TensorError) -> Self {
        Error::Model(ModelError::Tensor(e))
    }
}
