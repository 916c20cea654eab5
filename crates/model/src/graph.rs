//! The ops a model's forward pass is written in, and the [`Graph`] that carries them out.
//!
//! A model kind writes its forward pass once, against `&mut dyn Graph`. Three graphs run
//! it:
//!
//! ```text
//! head.forward(g, x)  --g = autodiff tape (resflow::network)-->  training: values + gradients
//!                     --g = plan builder (plan.rs)----------->  serving: a compiled plan
//!                     --g = reference (reference.rs)--------->  tests: plain loops, one op at a time
//! ```
//!
//! Every op works on whole batches: a [`Node`] stands for an `N x C` matrix (N rows, the
//! candidates or training samples; C columns). Parameters are named by [`ParamRef`]s into
//! the model's named tensors; each graph looks them up in its own storage. The layers of
//! `layers.rs` are plain data; how each runs on a graph is written at the end of this file.

use crate::error::ModelError;
use crate::layers::{BatchNorm, Dense, Linear, Mlp, ParamRef, Tower};

/// A value recorded on a graph: an `N x C` matrix, named by its position in the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Node(pub u32);

impl Node {
    /// The position, for a graph's own tables.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// The ops of a forward pass. Shapes are those of the operands; a graph returns
/// [`ModelError::Op`] when they do not fit (a bug in a head, never bad input).
pub trait Graph {
    /// `x W (+ b)`: `N x I` times `I x O`, plus the bias row.
    fn linear(&mut self, x: Node, l: &Linear) -> Result<Node, ModelError>;
    /// The configured activation: PReLU with the slopes in `slope` (one per column), or
    /// ReLU (the slopes unused).
    fn activation(&mut self, x: Node, slope: ParamRef) -> Result<Node, ModelError>;
    /// BatchNorm in the configured mode (identity for `none`): batch statistics in training
    /// (`batch` mode), the running statistics at inference, `0 / 1` in `affine` mode.
    fn batch_norm(&mut self, x: Node, bn: &BatchNorm) -> Result<Node, ModelError>;
    /// A hidden layer `BN(act(x W + b))`. Graphs that fuse override it; the meaning is this
    /// composition.
    fn dense(&mut self, x: Node, d: &Dense) -> Result<Node, ModelError> {
        let a = self.linear(x, &d.linear)?;
        let a = self.activation(a, d.slope)?;
        self.batch_norm(a, &d.bn)
    }
    /// `a + b`, same shapes.
    fn add(&mut self, a: Node, b: Node) -> Result<Node, ModelError>;
    /// `c x`.
    fn scale(&mut self, x: Node, c: f32) -> Result<Node, ModelError>;
    /// `min(x, 0)` element-wise.
    fn min_zero(&mut self, x: Node) -> Result<Node, ModelError>;
    /// `max(x, 0)` element-wise.
    fn relu(&mut self, x: Node) -> Result<Node, ModelError>;
    /// `1 / (1 + e^-x)` element-wise.
    fn sigmoid(&mut self, x: Node) -> Result<Node, ModelError>;
    /// Softmax of every row.
    fn softmax(&mut self, x: Node) -> Result<Node, ModelError>;
    /// `sum_k gate[:, k] xs[k]`: `K` inputs `N x C`, a gate `N x K`.
    fn mix(&mut self, xs: &[Node], gate: Node) -> Result<Node, ModelError>;
    /// Row-wise dot product `sum_j a[:, j] b[:, j]` (`N x 1`).
    fn row_dot(&mut self, a: Node, b: Node) -> Result<Node, ModelError>;
    /// The columns of every input side by side (same row count).
    fn concat(&mut self, xs: &[Node]) -> Result<Node, ModelError>;
    /// `logit(sigmoid(a) sigmoid(b))` element-wise (`tensor::ops::product_logit`).
    fn product_logit(&mut self, a: Node, b: Node) -> Result<Node, ModelError>;
    /// The sum of every entry, `1 x 1` (training losses only: a serving graph refuses it).
    fn sum(&mut self, x: Node) -> Result<Node, ModelError>;
    /// `a * b` element-wise, same shapes (training losses only; the default refuses, as a
    /// serving graph does).
    fn mul(&mut self, _a: Node, _b: Node) -> Result<Node, ModelError> {
        Err(training_only("mul"))
    }
    /// `ln(1 + e^x)` element-wise (training losses only).
    fn softplus(&mut self, _x: Node) -> Result<Node, ModelError> {
        Err(training_only("softplus"))
    }
    /// `1 / x` element-wise (training losses only).
    fn reciprocal(&mut self, _x: Node) -> Result<Node, ModelError> {
        Err(training_only("reciprocal"))
    }
    /// `min(max(x, lo), hi)` element-wise (training losses only).
    fn clamp(&mut self, _x: Node, _lo: f32, _hi: f32) -> Result<Node, ModelError> {
        Err(training_only("clamp"))
    }
    /// `x`'s value, outside the gradient's path (training losses only).
    fn stop_gradient(&mut self, _x: Node) -> Result<Node, ModelError> {
        Err(training_only("stop_gradient"))
    }
    /// An empty list of nodes whose memory is reused: give it back with
    /// [`Graph::recycle`], so that a warm forward pass allocates nothing.
    fn list(&mut self) -> Vec<Node>;
    /// Returns a list taken with [`Graph::list`].
    fn recycle(&mut self, list: Vec<Node>);
}

/// The error of a loss op on a graph that does not train.
fn training_only(op: &'static str) -> ModelError {
    op_error(op, "a training loss op has no place in this graph")
}

/// The error of an op whose operands do not fit.
pub fn op_error(op: &'static str, detail: impl Into<String>) -> ModelError {
    ModelError::Op {
        op,
        detail: detail.into(),
    }
}

impl Dense {
    /// `BN(act(x W + b))` on `g`.
    pub fn forward(&self, g: &mut dyn Graph, x: Node) -> Result<Node, ModelError> {
        g.dense(x, self)
    }
}

impl Mlp {
    /// The last layer's output on `g` (`x` itself when there are no layers).
    pub fn forward(&self, g: &mut dyn Graph, x: Node) -> Result<Node, ModelError> {
        self.layers.iter().try_fold(x, |h, l| g.dense(h, l))
    }
}

impl Tower {
    /// The `N x 1` logit of `x`.
    pub fn forward(&self, g: &mut dyn Graph, x: Node) -> Result<Node, ModelError> {
        let h = self.mlp.forward(g, x)?;
        g.linear(h, &self.logit)
    }
}

/// `softmax(x W)`: the mixing weights of a gate.
pub fn gate(g: &mut dyn Graph, x: Node, l: &Linear) -> Result<Node, ModelError> {
    let z = g.linear(x, l)?;
    g.softmax(z)
}
