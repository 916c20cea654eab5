//! `metrics`: how well a ranker ranks. It knows only scores, labels and group ids.
//!
//! - [`auc`] (and [`auc_par`], exact over parallel chunks), [`gauc`] per group;
//! - [`log_loss`] and [`calibration`] of probabilities;
//! - [`weighted_recall_at_k`], the paper's offline metric (a reconstruction, see the module);
//! - [`fuse`] and [`compare_fusions`]: additive vs multiplicative fusion of task scores;
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
mod weighted_recall;

pub use auc::{ScoreHistogram, auc, auc_par};
pub use error::{MetricsError, Result};
pub use evaluator::{EvalConfig, EvalReport, StreamingEvaluator, TaskReport, WrReport};
pub use fusion::{FusionComparison, FusionKind, compare_fusions, fuse};
pub use gauc::{Gauc, GroupWeight, gauc};
pub use groups::GroupIndex;
pub use logloss::{LOG_LOSS_EPS, calibration, log_loss};
pub use weighted_recall::{Averaging, ItemWeight, WeightedRecall, weighted_recall_at_k};
