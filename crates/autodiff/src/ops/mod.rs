//! The operations a tape can record, one file each: forward (a `Tape` method that checks
//! shapes and computes the value) and backward (adds the inputs' gradients), with the
//! derivation written next to the code.
//!
//! Adding an op: add a variant to [`Op`] naming its inputs, write `impl Tape { pub fn
//! my_op(..) }` that checks shapes, calls `push` and fills the value, write
//! `backward(t, node, ..)`, and list both in [`needs_grad`] and [`backward`] below. Then add
//! its finite-difference test in `tests/gradients.rs`.

mod add;
mod batch_norm;
mod bce;
mod clamp;
mod concat;
mod embedding;
mod linear;
mod mix;
mod mul;
mod prelu;
mod product_logit;
mod reciprocal;
mod relu;
mod scale;
mod sigmoid;
mod softmax;
mod softplus;
mod split;
mod stop_gradient;
mod sum;
mod tanh;

pub use batch_norm::BatchNormMode;
pub use bce::{BceTarget, map_loss_math};
use tensor::Pooling;

use crate::error::Result;
use crate::params::{Grads, ParamId, TableId};
use crate::tape::{Node, Tape, Var};

/// A recorded operation and its inputs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Op {
    /// Data from outside.
    Leaf,
    /// A dense parameter bound for the step.
    Param(ParamId),
    /// `y = x W (+ b)`.
    Linear { x: Var, w: Var, b: Option<Var> },
    /// `y = a + b`, or `a + row` broadcast over rows when `b` is `1 x C`.
    Add { a: Var, b: Var },
    /// `y = alpha x`.
    Scale { x: Var, alpha: f32 },
    /// `y = a * b` element-wise, or `a * col` broadcast when `b` is `N x 1`.
    Mul { a: Var, b: Var },
    /// `y = sum_k g[:, k] * x_k`; the inputs are `lists[start..start + len]`.
    Mix { start: usize, len: usize, gate: Var },
    /// `y = logit(sigmoid(a) sigmoid(b))` element-wise.
    ProductLogit { a: Var, b: Var },
    /// `y = max(x, 0)`.
    Relu { x: Var },
    /// `y = x` or `slope x`.
    Prelu { x: Var, slope: Var },
    /// `y = 1 / (1 + e^-x)`.
    Sigmoid { x: Var },
    /// `y = tanh x`.
    Tanh { x: Var },
    /// `y = ln(1 + e^x)`.
    Softplus { x: Var },
    /// `y = 1 / x`.
    Reciprocal { x: Var },
    /// `y = min(max(x, lo), hi)`.
    Clamp { x: Var, lo: f32, hi: f32 },
    /// Row-wise softmax.
    Softmax { x: Var },
    /// Columns side by side; the inputs are `lists[start..start + len]`.
    Concat { start: usize, len: usize },
    /// Columns `col..col + cols` of `x`.
    Split { x: Var, col: usize },
    /// Sum of every element (`mean`: divided by the count).
    Sum { x: Var, mean: bool },
    /// Per-row sums (`N x C -> N x 1`).
    SumCols { x: Var },
    /// BatchNorm over rows; statistics saved at `aux`.
    BatchNorm {
        x: Var,
        gamma: Var,
        beta: Var,
        aux: usize,
        train: bool,
    },
    /// Embedding lookup (`pooling: None`, one id per row) or pooled bag; ids start at
    /// `ids` in the tape's id list, bag offsets at `offs` in its offset list.
    Embedding {
        table: TableId,
        ids: usize,
        offs: usize,
        pooling: Option<Pooling>,
    },
    /// Weighted binary cross-entropy with logits; labels and weights at `aux`.
    Bce {
        logits: Var,
        aux: usize,
        weighted: bool,
        pos_weight: f32,
        denom: f32,
    },
}

/// Whether a node with this op depends on anything trainable.
pub(crate) fn needs_grad(t: &Tape, op: &Op) -> bool {
    let g = |v: &Var| t.nodes[v.0 as usize].needs_grad;
    match op {
        Op::Leaf => false,
        Op::Param(_) | Op::Embedding { .. } => true,
        Op::Linear { x, w, b } => g(x) || g(w) || b.as_ref().is_some_and(g),
        Op::Add { a, b } | Op::Mul { a, b } | Op::ProductLogit { a, b } => g(a) || g(b),
        Op::Mix { start, len, gate } => g(gate) || t.lists[*start..start + len].iter().any(g),
        Op::Scale { x, .. }
        | Op::Relu { x }
        | Op::Sigmoid { x }
        | Op::Tanh { x }
        | Op::Softplus { x }
        | Op::Reciprocal { x }
        | Op::Clamp { x, .. }
        | Op::Softmax { x }
        | Op::Split { x, .. }
        | Op::Sum { x, .. }
        | Op::SumCols { x } => g(x),
        Op::Prelu { x, slope } => g(x) || g(slope),
        Op::Concat { start, len } => t.lists[*start..start + len].iter().any(g),
        Op::BatchNorm { x, gamma, beta, .. } => g(x) || g(gamma) || g(beta),
        Op::Bce { logits, .. } => g(logits),
    }
}

/// Calls `f` on every input of `op`.
pub(crate) fn for_each_input(lists: &[Var], op: &Op, mut f: impl FnMut(Var)) {
    match *op {
        Op::Leaf | Op::Param(_) | Op::Embedding { .. } => {}
        Op::Linear { x, w, b } => {
            f(x);
            f(w);
            if let Some(b) = b {
                f(b);
            }
        }
        Op::Add { a, b } | Op::Mul { a, b } | Op::ProductLogit { a, b } => {
            f(a);
            f(b);
        }
        Op::Mix { start, len, gate } => {
            lists[start..start + len].iter().for_each(|&v| f(v));
            f(gate);
        }
        Op::Scale { x, .. }
        | Op::Relu { x }
        | Op::Sigmoid { x }
        | Op::Tanh { x }
        | Op::Softplus { x }
        | Op::Reciprocal { x }
        | Op::Clamp { x, .. }
        | Op::Softmax { x }
        | Op::Split { x, .. }
        | Op::Sum { x, .. }
        | Op::SumCols { x } => f(x),
        Op::Prelu { x, slope } => {
            f(x);
            f(slope);
        }
        Op::Concat { start, len } => lists[start..start + len].iter().for_each(|&v| f(v)),
        Op::BatchNorm { x, gamma, beta, .. } => {
            f(x);
            f(gamma);
            f(beta);
        }
        Op::Bce { logits, .. } => f(logits),
    }
}

/// Runs one node's backward step.
pub(crate) fn backward(t: &mut Tape, node: Node, grads: &mut Grads) -> Result<()> {
    match node.op {
        Op::Leaf => Ok(()),
        Op::Param(id) => {
            let len = node.rows * node.cols;
            tensor::ops::axpy(
                1.0,
                &t.grads[node.off..node.off + len],
                &mut grads.dense[id.index()],
            );
            Ok(())
        }
        Op::Linear { x, w, b } => linear::backward(t, node, x, w, b),
        Op::Add { a, b } => add::backward(t, node, a, b),
        Op::Scale { x, alpha } => scale::backward(t, node, x, alpha),
        Op::Mul { a, b } => mul::backward(t, node, a, b),
        Op::Mix { start, len, gate } => mix::backward(t, node, start, len, gate),
        Op::ProductLogit { a, b } => product_logit::backward(t, node, a, b),
        Op::Relu { x } => relu::backward(t, node, x),
        Op::Prelu { x, slope } => prelu::backward(t, node, x, slope),
        Op::Sigmoid { x } => sigmoid::backward(t, node, x),
        Op::Tanh { x } => tanh::backward(t, node, x),
        Op::Softplus { x } => softplus::backward(t, node, x),
        Op::Reciprocal { x } => reciprocal::backward(t, node, x),
        Op::Clamp { x, lo, hi } => clamp::backward(t, node, x, lo, hi),
        Op::Softmax { x } => softmax::backward(t, node, x),
        Op::Concat { start, len } => concat::backward(t, node, start, len),
        Op::Split { x, col } => split::backward(t, node, x, col),
        Op::Sum { x, mean } => sum::backward(t, node, x, mean),
        Op::SumCols { x } => sum::backward_cols(t, node, x),
        Op::BatchNorm {
            x,
            gamma,
            beta,
            aux,
            train,
        } => batch_norm::backward(t, node, x, gamma, beta, aux, train),
        Op::Embedding {
            table,
            ids,
            offs,
            pooling,
        } => embedding::backward(t, node, table, ids, offs, pooling, grads),
        Op::Bce {
            logits,
            aux,
            weighted,
            pos_weight,
            denom,
        } => bce::backward(t, node, logits, aux, weighted, pos_weight, denom),
    }
}

/// Gradient of the node at `node` (read-only) and the gradient slot `(off, len)` of an
/// input (mutable), borrowed from the tape's arena at once.
pub(crate) fn grad_pair<'a>(
    t: &'a mut Tape,
    node: &Node,
    input: (usize, usize),
) -> (&'a mut [f32], &'a [f32]) {
    let len = node.rows * node.cols;
    let (before, gy) = t.grads.split_at_mut(node.off);
    (&mut before[input.0..input.0 + input.1], &gy[..len])
}

/// Everything a backward step reads and writes: all values, the gradients recorded before
/// the node (the inputs' slots, mutable) and the node's own gradient.
/// What the local derivative of an element-wise op reads.
#[derive(Clone, Copy)]
pub(super) enum Reads {
    /// The input `x` (ReLU, softplus).
    Input,
    /// The op's own output `y` (sigmoid, tanh).
    Output,
}

impl Tape {
    /// Records the element-wise op `op` of `x`, whose value `kernel` writes in full (so the
    /// slot is not cleared first): the one forward of ReLU, softplus, sigmoid and tanh.
    pub(super) fn elementwise(
        &mut self,
        name: &'static str,
        op: Op,
        x: Var,
        kernel: fn(&[f32], &mut [f32]),
    ) -> Result<Var> {
        self.check(name, x)?;
        let ((n, c), (xo, _)) = (self.shape(x), self.slot(x));
        let (v, off) = self.push_overwritten(op, n, c);
        let (before, out) = self.split_values(off, n * c);
        kernel(&before[xo..xo + n * c], out);
        Ok(v)
    }
}

/// The backward of an element-wise op: `dx += grad(dy, r)` element by element, with `r`
/// the input or the output as `reads` says.
pub(super) fn elementwise_backward(
    t: &mut Tape,
    node: Node,
    x: Var,
    reads: Reads,
    grad: impl Fn(f32, f32) -> f32,
) -> Result<()> {
    let s = t.slot(x);
    let r = match reads {
        Reads::Input => s.0,
        Reads::Output => node.off,
    };
    let (values, before, gy) = parts(t, &node);
    let rv = &values[r..r + gy.len()];
    for ((g, &d), &rv) in before[s.0..s.0 + s.1].iter_mut().zip(gy).zip(rv) {
        *g += grad(d, rv);
    }
    Ok(())
}

pub(crate) fn parts<'a>(t: &'a mut Tape, node: &Node) -> (&'a [f32], &'a mut [f32], &'a [f32]) {
    let len = node.rows * node.cols;
    let (before, after) = t.grads.split_at_mut(node.off);
    (&t.values, before, &after[..len])
}
