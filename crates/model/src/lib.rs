//! `model`: what a resflow model *is*, and how it is served. No autodiff, no trainer: the
//! C ABI links this crate and `tensor` only.
//!
//! ```text
//! config.rs, layout.rs   the configuration (every knob) and the input layout (fields, tasks)
//! topology.rs            which task feeds which in ResFlow, which tower layers link
//! regression.rs          a continuous target: chained thresholds or direct, and the decoder
//! graph.rs               the ops a forward pass is written in (trait Graph)
//! layers.rs              the vocabulary: Linear, BatchNorm, Dense, Mlp, Tower, gate; the Builder
//! models/                one file per model kind (ResFlow and the baselines) + the registry
//! model.rs               Model: config, layout, embeddings and named tensors; Net (its structure)
//! model_file.rs          the safetensors model file (and write_atomically)
//! reference.rs           the plain reference forward pass (tests)
//! plan.rs                the serving plan: a model's forward pass compiled (BN folded, fused
//!                        epilogues, the request-level split of the first layers)
//! precision.rs           the plan's arithmetic: f32, or int8 GEMMs (dynamic quantization)
//! scorer.rs              Scorer, Request, Workspace: a request in, probabilities out
//! request.rs             RequestBuffers: a request that owns its buffers
//! ```
//!
//! The training side (the autodiff tape as a [`Graph`], the trainer, checkpoints) lives in
//! the `resflow` crate, which re-exports everything here.
#![forbid(unsafe_code)]

pub mod checks;
pub mod config;
mod error;
pub mod graph;
pub mod integrity;
pub mod layers;
pub mod layout;
mod model;
mod model_file;
pub mod models;
pub mod plan;
mod precision;
mod reference;
pub mod regression;
mod request;
pub mod rng;
mod scorer;
pub mod topology;

pub use config::ModelConfig;
pub use error::ModelError;
pub use graph::{Graph, Node};
pub use layout::{Field, InputLayout, Pooling};
pub use model::{Model, Net, TableInit, bn_scale_shift};
pub use model_file::{FORMAT, VERSION, VERSION_2, from_folded_towers, write_atomically};
pub use plan::Plan;
pub use precision::{INT8_MIN_COLS, Precision};
pub use reference::{CandidateRef, concat_inputs};
pub use request::{BagBuffer, RequestBuffers};
pub use scorer::{Bag, Request, Scorer, Workspace};
