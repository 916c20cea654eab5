//! `resflow`: training the residual multi-task ranker of "Residual Multi-Task Learner for
//! Applied Ranking" (KDD 2024) and the baselines it is compared against.
//!
//! What a model is (configuration, layers, the model kinds, the model file) and how it is
//! served (the compiled plan, the [`Scorer`]) live in the `model` crate, re-exported here;
//! this crate adds what training needs: the autodiff tape as the models' graph
//! ([`network`]), the data-parallel [`Trainer`], checkpoints, and scoring a whole dataset.
//! See `docs/architecture.md` for the crates and the data flow.
#![forbid(unsafe_code)]

mod checkpoint;
pub mod divergence;
mod error;
mod eval_rows;
#[cfg(test)]
mod head_tests;
pub mod network;
pub mod output_plan;
pub mod regression;
mod score_data;
mod trainer;

pub use model::{
    Bag, BagBuffer, CandidateRef, FORMAT, Field, Graph, InputLayout, Model, ModelConfig,
    ModelError, Net, Node, Plan, Pooling, Request, RequestBuffers, Scorer, VERSION, VERSION_2,
    Workspace, bn_scale_shift, checks, concat_inputs, config, from_folded_towers, graph, integrity,
    layers, layout, models, rng, write_atomically,
};

pub use checkpoint::CHECKPOINT_FILE;
pub use error::Error;
pub use eval_rows::EvalFeeder;
pub use network::layout_of;
pub use output_plan::OutputPlan;
pub use score_data::score_dataset;
pub use trainer::{StepStats, TrainSummary, Trainer};
