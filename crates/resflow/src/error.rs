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
    /// A training run was asked for something its inputs cannot give: the variants below
    /// say which input (see [`RunError`]).
    #[error(transparent)]
    Run(#[from] RunError),
}

/// The mistakes of a training run's inputs ([`crate::session`], [`crate::compare`]),
/// detected before any training step. Each names the input, so a front end (the command
/// line, a binding) can say it in its own words.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The training dataset has no rows.
    #[error("the training dataset has no rows")]
    EmptyTrain,
    /// The evaluation dataset has no rows.
    #[error("the evaluation dataset has no rows")]
    EmptyEval,
    /// The evaluation dataset's schema is not the training dataset's.
    #[error("the evaluation dataset does not match the training dataset: {0}")]
    EvalSchema(shards::ShardError),
    /// The training dataset does not fit the model (a resumed checkpoint's, typically).
    #[error("the training dataset does not fit the model: {0}")]
    TrainLayout(Box<Error>),
    /// The evaluation dataset does not fit the model.
    #[error("the evaluation dataset does not fit the model: {0}")]
    EvalLayout(Box<Error>),
    /// A configuration's tasks are not the data's, in name and order.
    #[error("the configuration's tasks {config:?} differ from the data's {data:?}")]
    Tasks {
        /// The configuration's task names.
        config: Vec<String>,
        /// The dataset's task names.
        data: Vec<String>,
    },
    /// Resuming was asked for without a checkpoint directory.
    #[error("resuming needs a checkpoint directory")]
    ResumeWithoutDir,
    /// Resuming was asked for, but the directory holds no checkpoint.
    #[error("{} holds no checkpoint ({}); start afresh instead of resuming", dir.display(), crate::CHECKPOINT_FILE)]
    NoCheckpoint {
        /// The checkpoint directory.
        dir: std::path::PathBuf,
    },
    /// The checkpoint resumed was trained with another configuration than the one given.
    #[error("the checkpoint in {} was trained with another configuration ({})", dir.display(), differences.join("; "))]
    ConfigDiffers {
        /// The checkpoint directory.
        dir: std::path::PathBuf,
        /// The settings that differ, `path: checkpoint's vs given`.
        differences: Vec<String>,
    },
    /// The list metrics' item weight `column` was asked for data without a weight column.
    #[error("item weight column: the dataset has no weight column")]
    NoWeightColumn,
    /// An option has a value it cannot take (a cadence or K of 0, no seeds, ...).
    #[error("{0}")]
    Options(String),
}

impl From<tensor::TensorError> for Error {
    fn from(e: tensor::TensorError) -> Self {
        Error::Model(ModelError::Tensor(e))
    }
}
