//! `resflow`: training the residual multi-task ranker of "Residual Multi-Task Learner for
//! Applied Ranking" (KDD 2024) and the baselines it is compared against.
//!
//! What a model is (configuration, layers, the model kinds, the model file) and how it is
//! served (the compiled plan, the [`Scorer`]) live in the `model` crate, re-exported here;
//! this crate adds what training needs: the autodiff tape as the models' graph
//! ([`network`]), the data-parallel [`Trainer`], checkpoints, and scoring a whole dataset;
//! and on top of the trainer the experiments a front end runs: one training run with its
//! checkpoint and evaluation cadence ([`session`]), the comparison of the model kinds over
//! seeds ([`compare`]), the synthetic funnel they can run on ([`funnel`]).
//! See `docs/architecture.md` for the crates and the data flow.
#![forbid(unsafe_code)]

pub mod balancing;
mod checkpoint;
mod checkpoint_shard;
pub mod compact;
pub mod compare;
pub mod divergence;
mod error;
mod eval_rows;
pub mod funnel;
#[cfg(test)]
mod head_tests;
pub mod latency;
pub mod list_options;
pub mod network;
pub mod output_plan;
pub mod reduce;
pub mod regression;
mod score_data;
pub mod session;
mod trainer;

pub use model::{
    Bag, BagBuffer, CandidateRef, FORMAT, Field, Graph, InputLayout, Model, ModelConfig,
    ModelError, Net, Node, Plan, Pooling, Precision, Request, RequestBuffers, Scorer, VERSION,
    VERSION_2, Workspace, bn_scale_shift, checks, concat_inputs, config, from_folded_towers, graph,
    integrity, layers, layout, models, rng, write_atomically,
};

pub use checkpoint::CHECKPOINT_FILE;
pub use checkpoint_shard::table_shard_file;
pub use compare::{CompareOptions, CompareReport, compare};
pub use error::{Error, RunError};
pub use eval_rows::EvalFeeder;
pub use list_options::{ItemField, ListOptions};
pub use network::layout_of;
pub use output_plan::OutputPlan;
pub use score_data::{evaluate_model, score_dataset};
pub use session::{Progress, Report, Session, SessionOptions, train};
pub use trainer::{StepPhases, StepStats, TrainSummary, Trainer};
