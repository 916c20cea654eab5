//! `shards`: the training data of resflow, as memory-mapped binary shards.
//!
//! ```text
//! CSV / synthetic --convert / gen--> ShardWriter --> dir/ schema.json + manifest.json + shard-00000.rfs ...
//! Dataset::open(dir) --> validated, memory-mapped Shards --> Batches --> Batch --> per-worker BatchViews
//! ```
//!
//! The byte layout is in [`header`] and `docs/shards.md`; [`reader`] explains the
//! validation; [`convert`] turns CSV files into datasets; [`synth`] generates the built-in
//! synthetic funnel used by the demo and the tests; [`playtime`] a regression dataset with
//! a known error floor.
#![deny(unsafe_code)]

pub mod atomic;
pub mod convert;
mod dataset;
mod error;
pub mod header;
pub mod manifest;
pub mod playtime;
pub mod reader;
mod schema;
pub mod synth;
mod writer;

pub use atomic::write_atomically;
pub use dataset::{Batch, BatchView, Batches, Dataset, Share, part_range};
pub use error::{Result, ShardError};
pub use manifest::{MANIFEST_FILE, Manifest};
pub use reader::{OpenOptions, Shard};
pub use schema::{
    DenseSpec, Encoding, EncodingKind, FORMAT_VERSION, MAX_VOCAB, MultiField, Pooling, Schema,
    SingleField, Vocabulary, bucket_of, fnv1a, standardize,
};
pub use writer::{DatasetInfo, Row, ShardWriter, shard_name};
