//! `metrics`: how well a ranker ranks. It knows only scores, labels and group ids.
//!
//! - [`auc`] (and [`auc_par`], exact over parallel chunks), [`gauc`] per group;
//! - [`log_loss`] and [`calibration`] of probabilities;
//! - [`weighted_recall_at_k`], the paper's offline metric, and [`list_metrics`]: WR@K with
//!   Recall@K, NDCG@K and list AUC beside it, repeated impressions of an item merged;
//! - [`fuse`], [`fuse_row`], [`compare_fusions`] and [`sweep_fusion_weights`]: additive vs
//!   multiplicative fusion of task scores (the one definition the model crate uses too);
//! - [`regression_errors`] and [`RegressionErrors`]: MSE and MAE of a predicted value;
//! - [`StreamingEvaluator`]: all of the above per task from batches, as a JSON-ready report.
//!
//! `docs/metrics.md` defines each metric with a worked example.
#![forbid(unsafe_code)]

mod auc;
mod error;
mod evaluator;
mod fusion;
mod gauc;
mod groups;
mod logloss;
mod ranking;
mod regression;
mod weighted_recall;

pub use auc::{ScoreHistogram, auc, auc_par};
pub use error::{MetricsError, Result};
pub use evaluator::{
    EvalBatch, EvalConfig, EvalReport, StreamingEvaluator, SweepReport, TaskReport, WrReport,
};
pub use fusion::{
    FusionComparison, FusionKind, SweepPoint, compare_fusions, fuse, fuse_row, sweep_fusion_weights,
};
pub use gauc::{Gauc, GroupWeight, gauc};
pub use groups::GroupIndex;
pub use logloss::{LOG_LOSS_EPS, calibration, log_loss};
pub use ranking::{ListMetrics, list_metrics};
pub use regression::{RegressionErrors, RegressionReport, regression_errors};
pub use weighted_recall::{Averaging, ItemWeight, WeightedRecall, weighted_recall_at_k};
