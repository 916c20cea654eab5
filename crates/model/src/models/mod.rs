//! The model kinds, each a *head*: everything between the shared input vector `x`
//! (embeddings, dense features, input BatchNorm) and the task logits.
//!
//! ```text
//! shared by every kind:   ids -> embeddings -> concat -> BN_in -> x
//! head (one per kind):    x -> ... -> z_1, ..., z_T           (one logit per task)
//! shared by every kind:   p_t = sigmoid(z_t), weighted BCE per task, trainer, model file, scorer
//! ```
//!
//! A head is built from the layers of [`crate::layers`] by the [`Builder`] (so its
//! parameters are named tensors, `head/<kind>/...`) and writes its forward pass once,
//! against `&mut dyn Graph`: the same code trains on the autodiff tape, compiles into the
//! serving plan and runs as the plain reference.
//!
//! Adding a model kind: write one file here (its struct, `build` and [`Head::forward`]),
//! give it a variant in [`crate::config::ModelKind`], and add one line to [`build`].

mod aitm;
mod esmm;
mod mmoe;
mod ple;
mod resflow;
mod shared_bottom;

use std::fmt::Debug;

use tensor::Matrix;

use crate::config::{Activation, BatchNormMode, ModelConfig, ModelKind};
use crate::error::ModelError;
use crate::graph::{Graph, Node};
use crate::layers::{Builder, is_statistic};

/// The prefix of every head tensor's name.
pub const PREFIX: &str = "head/";

/// A model kind's part between the input vector and the task logits.
pub trait Head: Debug + Send + Sync {
    /// Records the head on `g`: one `N x 1` logit per task, in task order, into `logits`.
    fn forward(&self, g: &mut dyn Graph, x: Node, logits: &mut Vec<Node>)
    -> Result<(), ModelError>;

    /// The head's own extra training loss from the task logits, already multiplied by
    /// `scale` (the head's weight divided by the batch size), or `None` (the default).
    fn extra_loss(
        &self,
        _g: &mut dyn Graph,
        _logits: &[Node],
        _scale: f32,
    ) -> Result<Option<Node>, ModelError> {
        Ok(None)
    }

    /// The weight of [`Head::extra_loss`] (0 when there is none).
    fn extra_loss_weight(&self) -> f32 {
        0.0
    }
}

/// The registry: the head of `config.model` for inputs `input` wide, its parameters created
/// or found by `b`.
pub fn build(
    config: &ModelConfig,
    input: usize,
    b: &mut Builder<'_>,
) -> Result<Box<dyn Head>, ModelError> {
    let name = format!("{PREFIX}{}", config.model.name());
    Ok(match &config.model {
        ModelKind::Resflow | ModelKind::Independent => {
            Box::new(resflow::Resflow::build(&name, config, input, b)?)
        }
        ModelKind::SharedBottom(c) => Box::new(shared_bottom::SharedBottom::build(
            &name, c, config, input, b,
        )?),
        ModelKind::Esmm => Box::new(esmm::Esmm::build(&name, config, input, b)?),
        ModelKind::Mmoe(c) => Box::new(mmoe::Mmoe::build(&name, c, config, input, b)?),
        ModelKind::Ple(c) => Box::new(ple::Ple::build(&name, c, config, input, b)?),
        ModelKind::Aitm(c) => Box::new(aitm::Aitm::build(&name, c, config, input, b)?),
    })
}

/// Trainable floats among named tensors: running statistics never, PReLU slopes only with
/// PReLU, BatchNorm scale and shift only with BatchNorm.
pub fn trainable(config: &ModelConfig, tensors: &[(String, Matrix)]) -> usize {
    tensors
        .iter()
        .filter(|(name, _)| {
            let unused_slope = config.activation != Activation::Prelu && name.ends_with("/slope");
            let unused_bn = config.batch_norm == BatchNormMode::None
                && (name.ends_with("/gamma") || name.ends_with("/beta"));
            !(is_statistic(name) || unused_slope || unused_bn)
        })
        .map(|(_, m)| m.rows() * m.cols())
        .sum()
}

/// Multiply-adds of the dense layers for one candidate, for `docs/models.md` and
/// `resflow compare`: every weight matrix used once per candidate, except the attention
/// projections of AITM, used once for each of the two vectors they look at.
pub fn multiply_adds(tensors: &[(String, Matrix)]) -> usize {
    tensors
        .iter()
        .filter(|(name, _)| name.starts_with(PREFIX) && name.ends_with("/weight"))
        .map(|(name, m)| {
            let uses = if name.contains("/attention/") { 2 } else { 1 };
            uses * m.rows() * m.cols()
        })
        .sum()
}
