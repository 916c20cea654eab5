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
mod dcmt;
mod escm2;
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

    /// [`Head::forward`] for training: the same task logits, and into `aux` the nodes the
    /// head's [`Head::extra_loss`] reads besides them (a CVR tower's own logit behind a
    /// product head, say). The default records `forward` and sets nothing aside; a head
    /// that overrides it writes `forward` as this call with a scratch `aux`, so that the
    /// served and the trained pass are one code.
    fn forward_train(
        &self,
        g: &mut dyn Graph,
        x: Node,
        logits: &mut Vec<Node>,
        _aux: &mut Vec<Node>,
    ) -> Result<(), ModelError> {
        self.forward(g, x, logits)
    }

    /// The head's own extra training loss, a `1 x 1` node already multiplied by
    /// `inputs.scale` (the head's weight divided by the batch size), or `None` (the
    /// default). It may record towers that only the loss reads (on `inputs.x`); their
    /// parameters are the head's like any other, and serving never runs them.
    fn extra_loss(
        &self,
        _g: &mut dyn Graph,
        _inputs: &LossInputs<'_>,
    ) -> Result<Option<Node>, ModelError> {
        Ok(None)
    }

    /// The weight of [`Head::extra_loss`] (0 when there is none).
    fn extra_loss_weight(&self) -> f32 {
        0.0
    }
}

/// What [`Head::extra_loss`] reads of a training batch besides the head's parameters.
#[derive(Debug, Clone, Copy)]
pub struct LossInputs<'a> {
    /// The head's input `x'` (after the input BatchNorm), `N x I`.
    pub x: Node,
    /// The task logits [`Head::forward_train`] recorded, one `N x 1` node per task.
    pub logits: &'a [Node],
    /// The nodes [`Head::forward_train`] set aside for the loss.
    pub aux: &'a [Node],
    /// The labels, one `N x 1` node of 0/1 per task in task order. A task's label is also
    /// the mask of its positive rows (the click label: the clicked rows).
    pub labels: &'a [Node],
    /// The head's weight divided by the batch size (the rows of the whole batch, so that
    /// workers' slices add up to the batch mean).
    pub scale: f32,
}

/// The part of a head's name under which it keeps towers that only its training loss
/// reads (`head/<kind>/train/...`): stored and checkpointed like every tensor, never run
/// by the serving plan, and left out of [`multiply_adds`].
pub const TRAIN_ONLY: &str = "/train/";

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
        ModelKind::Escm2Ipw(c) | ModelKind::Escm2Dr(c) => Box::new(escm2::Escm2::build(
            &name,
            c,
            matches!(config.model, ModelKind::Escm2Dr(_)),
            config,
            input,
            b,
        )?),
        ModelKind::Dcmt(c) => Box::new(dcmt::Dcmt::build(&name, c, config, input, b)?),
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
/// projections of AITM, used once for each of the two vectors they look at, and the towers
/// only a training loss reads (under [`TRAIN_ONLY`]), never run when serving.
pub fn multiply_adds(tensors: &[(String, Matrix)]) -> usize {
    tensors
        .iter()
        .filter(|(name, _)| {
            name.starts_with(PREFIX) && name.ends_with("/weight") && !name.contains(TRAIN_ONLY)
        })
        .map(|(name, m)| {
            let uses = if name.contains("/attention/") { 2 } else { 1 };
            uses * m.rows() * m.cols()
        })
        .sum()
}
