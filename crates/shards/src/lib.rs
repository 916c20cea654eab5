//! `shards`: the training data of resflow, as memory-mapped binary shards.
//!
//! ```text
//! CSV / synthetic --convert / gen--> ShardWriter --> dir/ schema.json + shard-00000.rfs ...
//! Dataset::open(dir) --> validated, memory-mapped Shards --> Batches --> Batch --> per-worker BatchViews
//! ```
//!
//! The byte layout is in [`header`] and `docs/shards.md`; [`reader`] explains the
//! validation; [`convert`] turns CSV files into datasets; [`synth`] generates the built-in
//! synthetic funnel used by the demo and the tests.
#![deny(unsafe_code)]

pub mod convert;
mod dataset;
mod error;
pub mod header;
pub mod reader;
mod schema;
pub mod synth;
mod writer;

pub use dataset::{Batch, BatchView, Batches, Dataset};
pub use error::{Result, ShardError};
pub use reader::{OpenOptions, Shard};
pub use schema::{
    DenseSpec, Encoding, EncodingKind, FORMAT_VERSION, MultiField, Pooling, Schema, SingleField,
    Vocabulary, bucket_of, fnv1a, standardize,
};
pub use writer::{DatasetInfo, Row, ShardWriter, shard_name, write_atomically};
