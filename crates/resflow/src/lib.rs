//! `resflow`: the residual multi-task ranker of "Residual Multi-Task Learner for Applied
//! Ranking" (KDD 2024).
//!
//! Each task (click, conversion, ...) has its own MLP tower over shared embeddings of
//! categorical features; the hidden layers and the logit of task `t` are added into those
//! of task `t + 1`. This crate holds the model's configuration ([`config`]), its input
//! layout ([`layout`]), the serving form of a trained model and its file format
//! ([`ServingModel`]), and the [`Scorer`] that ranks candidates with it. The baseline
//! multi-task models of the paper's comparison (independent towers, Shared-Bottom, ESMM,
//! MMoE, PLE, AITM) are other kinds of the same model ([`config::ModelKind`]): they share
//! the embeddings, the trainer, the model file and the scorer (`docs/models.md`).
#![forbid(unsafe_code)]

mod checkpoint;
pub mod checks;
pub mod config;
pub mod divergence;
mod error;
mod integrity;
pub mod layout;
mod model_file;
mod models;
pub mod network;
mod params;
pub mod rng;
mod score_data;
mod scorer;
mod serving;
mod trainer;

pub use checkpoint::CHECKPOINT_FILE;
pub use config::ModelConfig;
pub use error::ModelError;
pub use layout::{Field, InputLayout, Pooling};
pub use model_file::{FORMAT, VERSION, write_atomically};
pub use params::{BatchNormParams, LayerParams, ModelParams, TowerParams};
pub use score_data::score_dataset;
pub use scorer::{Bag, Request, Scorer, Workspace};
pub use serving::{CandidateRef, HiddenLayer, ServingModel, Tower};
pub use trainer::{StepStats, TrainSummary, Trainer};
