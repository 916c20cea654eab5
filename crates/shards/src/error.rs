//! The one error type of the `shards` crate: every failure names the file and, where it
//! applies, the section, row, line or column.

use std::path::Path;

/// What went wrong reading, writing or converting a dataset.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// An operating-system error on a file.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A shard file's bytes are not a valid shard (magic, version, bounds, checksum...).
    #[error("{file}: section {section}: {detail}")]
    Format {
        /// The shard file.
        file: String,
        /// The header or the section concerned.
        section: String,
        /// What is wrong.
        detail: String,
    },
    /// A value inside a valid section breaks the schema (id out of range, NaN label...).
    #[error("{file}: section {section}, row {row}: {detail}")]
    Value {
        /// The shard file.
        file: String,
        /// The section.
        section: String,
        /// The row.
        row: usize,
        /// What is wrong.
        detail: String,
    },
    /// A dataset directory is inconsistent: shards missing, extra or replaced, a manifest
    /// or schema that does not match.
    #[error("dataset {dir}: {detail}")]
    Dataset {
        /// The dataset directory.
        dir: String,
        /// What is wrong.
        detail: String,
    },
    /// The schema is invalid, or data does not match it.
    #[error("schema: {0}")]
    Schema(String),
    /// A Parquet input is malformed, or a column of it cannot feed the spec.
    #[error("{file}: {at}: {detail}")]
    Parquet {
        /// The Parquet file.
        file: String,
        /// Where: the footer, a row group, or a 1-based row and its column.
        at: String,
        /// What is wrong.
        detail: String,
    },
    /// A CSV input is malformed.
    #[error("{file}:{line}: column {column:?}: {detail}")]
    Csv {
        /// The CSV file.
        file: String,
        /// 1-based line number.
        line: usize,
        /// The column's name (or number).
        column: String,
        /// What is wrong.
        detail: String,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, ShardError>;

/// An I/O error mapper naming `path`.
pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ShardError + '_ {
    move |source| ShardError::Io {
        path: path.display().to_string(),
        source,
    }
}
