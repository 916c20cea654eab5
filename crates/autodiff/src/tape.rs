//! The tape: a list of recorded operations and one arena of floats for their values.
//!
//! ```text
//! nodes:   [ Input | Param W | Param b | Linear | Prelu | ... | Bce ]   (recording order)
//! values:  |x.....|W........|b..|h=xW+b.......|prelu(h).....|...|loss|  (one arena)
//! grads:   |      same offsets as values, filled by backward           |
//! ```
//!
//! Forward: each op method checks shapes (an error, never a panic), reserves its output
//! in the arena, computes it right away, and records a [`Node`]. Backward: the loss's
//! gradient is set to 1 and the nodes are visited in reverse; each op adds its inputs'
//! gradients (`+=`, because a value can feed several ops). Parameter nodes then add their
//! gradient into the caller's [`Grads`]; embedding nodes append sparse rows to it.
//!
//! `reset` empties every list but keeps its memory, so a training step that records the
//! same graph again allocates nothing.

use crate::error::{AutodiffError, Result};
use crate::ops::Op;
use crate::params::{Grads, ParamId, ParamStore};

/// A value recorded on a tape: a small copyable handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Var(pub(crate) u32);

/// One recorded operation and where its value lives.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Node {
    pub op: Op,
    pub rows: usize,
    pub cols: usize,
    pub off: usize,
    /// Whether any parameter or embedding lies upstream: gradients of nodes that only
    /// depend on data are never computed.
    pub needs_grad: bool,
}

/// Arena values are aligned to 16 floats (64 bytes) so every value starts on a cache line.
const ALIGN: usize = 16;

/// A tape for one step of forward and backward passes.
#[derive(Debug, Default)]
pub struct Tape {
    pub(crate) nodes: Vec<Node>,
    /// The value arena; `values[..used]` holds this step's values. The rest is memory kept
    /// from earlier steps (never shrunk), so recording allocates nothing once warm.
    pub(crate) values: Vec<f32>,
    used: usize,
    /// The gradient arena, at the values' offsets. Never shrunk, and not cleared as a
    /// whole: [`Tape::backward`] zeroes each slot just before the first op adds into it.
    pub(crate) grads: Vec<f32>,
    /// How much of `grads` the last backward pass made valid (0 before one, after
    /// `reset`).
    grads_valid: usize,
    /// Per-op saved data (BatchNorm statistics, labels, sample weights, bag offsets).
    pub(crate) aux: Vec<f32>,
    /// Embedding ids.
    pub(crate) ids: Vec<u32>,
    /// Bag offsets.
    pub(crate) offsets: Vec<u64>,
    /// Lists of inputs (concat).
    pub(crate) lists: Vec<Var>,
    /// f64 scratch for stable column sums.
    pub(crate) wide: Vec<f64>,
    /// f32 scratch of the same kind (block partial sums, per-column coefficients).
    pub(crate) narrow: Vec<f32>,
    /// Per node: does the loss being differentiated depend on it?
    reaches_loss: Vec<bool>,
    /// Per node, during a backward pass: does its gradient slot hold this pass's values
    /// (zeroed, or written) yet? See [`Tape::take_fresh_grad`].
    pub(crate) grad_ready: Vec<bool>,
    /// During [`Tape::backward_to`], per node: does it depend on one of the targets? (Empty
    /// otherwise: every gradient is wanted.)
    towards: Vec<bool>,
    /// The GEMMs' packing buffers: owned by the tape rather than by its thread, so a warm
    /// tape runs on any thread without allocating.
    pub(crate) gemm: tensor::GemmScratch,
}

impl Tape {
    /// An empty tape.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets every recorded op, keeping the memory for the next step.
    pub fn reset(&mut self) {
        self.nodes.clear();
        self.used = 0;
        self.grads_valid = 0;
        self.aux.clear();
        self.ids.clear();
        self.offsets.clear();
        self.lists.clear();
    }

    /// Doubles the room of the lists whose length varies from step to step (the ids of
    /// bags), from what this step used. Called once after a first step, it keeps later
    /// batches with a few more ids than the first from reallocating.
    pub fn reserve_headroom(&mut self) {
        self.ids.reserve(self.ids.len());
        self.offsets.reserve(self.offsets.len());
        self.aux.reserve(self.aux.len());
        self.lists.reserve(self.lists.len());
    }

    /// Number of recorded ops.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// `(rows, cols)` of a value.
    pub fn shape(&self, v: Var) -> (usize, usize) {
        let n = &self.nodes[v.0 as usize];
        (n.rows, n.cols)
    }

    /// The value of `v`, row-major.
    pub fn value(&self, v: Var) -> &[f32] {
        let n = &self.nodes[v.0 as usize];
        &self.values[n.off..n.off + n.rows * n.cols]
    }

    /// The gradient of the last [`Tape::backward`]'s loss with respect to `v`.
    pub fn grad(&self, v: Var) -> &[f32] {
        let n = &self.nodes[v.0 as usize];
        if self.grads_valid < n.off + n.rows * n.cols {
            return &[];
        }
        &self.grads[n.off..n.off + n.rows * n.cols]
    }

    /// Records a node and reserves its value, zeroed; returns the handle and the value's
    /// offset.
    pub(crate) fn push(&mut self, op: Op, rows: usize, cols: usize) -> (Var, usize) {
        let (v, off) = self.push_overwritten(op, rows, cols);
        self.values[off..off + rows * cols].fill(0.0);
        (v, off)
    }

    /// [`Tape::push`] for an op that writes every element of its value: the slot keeps
    /// whatever an earlier step left there (no memset of the arena on every step).
    pub(crate) fn push_overwritten(&mut self, op: Op, rows: usize, cols: usize) -> (Var, usize) {
        let off = self.used;
        let len = (rows * cols).div_ceil(ALIGN) * ALIGN;
        self.used = off + len;
        if self.values.len() < self.used {
            self.values.resize(self.used, 0.0);
        }
        let needs_grad = crate::ops::needs_grad(self, &op);
        self.nodes.push(Node {
            op,
            rows,
            cols,
            off,
            needs_grad,
        });
        (Var(self.nodes.len() as u32 - 1), off)
    }

    /// During a backward step of an op that writes fresh slots (concatenation,
    /// BatchNorm): true when `v`'s gradient slot does not hold this pass's values yet, and
    /// from now on counts as holding them, so the caller must write every element of it
    /// as `0.0 + value` (the bits of `+=` into zero); false when the caller must add.
    pub(crate) fn take_fresh_grad(&mut self, v: Var) -> bool {
        let r = &mut self.grad_ready[v.0 as usize];
        !std::mem::replace(r, true)
    }

    /// [`Tape::take_fresh_grad`] for a caller that only adds: zeroes the slot if it is not
    /// ready.
    pub(crate) fn ready_grad(&mut self, v: Var) {
        if self.take_fresh_grad(v) {
            let (off, len) = self.slot(v);
            self.grads[off..off + len].fill(0.0);
        }
    }

    /// Whether gradients flow into `v` (it depends on a parameter or an embedding).
    pub fn needs_grad(&self, v: Var) -> bool {
        let k = v.0 as usize;
        self.nodes[k].needs_grad && self.towards.get(k).is_none_or(|&t| t)
    }

    /// The values recorded before `off` (read-only) and the value starting at `off`.
    pub(crate) fn split_values(&mut self, off: usize, len: usize) -> (&[f32], &mut [f32]) {
        let (before, after) = self.values.split_at_mut(off);
        (before, &mut after[..len])
    }

    /// Offset and length of a value.
    pub(crate) fn slot(&self, v: Var) -> (usize, usize) {
        let n = &self.nodes[v.0 as usize];
        (n.off, n.rows * n.cols)
    }

    /// Checks that `v` was recorded on this tape.
    pub(crate) fn check(&self, op: &'static str, v: Var) -> Result<()> {
        if (v.0 as usize) < self.nodes.len() {
            Ok(())
        } else {
            Err(AutodiffError::Invalid {
                op,
                detail: format!(
                    "variable {} does not belong to this tape ({} ops recorded)",
                    v.0,
                    self.nodes.len()
                ),
            })
        }
    }

    /// Records a `rows x cols` input written in place by `fill` (which receives the zeroed
    /// value, row-major): [`Tape::input`] without the caller's own buffer and its copy.
    pub fn input_with(&mut self, rows: usize, cols: usize, fill: impl FnOnce(&mut [f32])) -> Var {
        let (v, off) = self.push(Op::Leaf, rows, cols);
        fill(&mut self.values[off..off + rows * cols]);
        v
    }

    /// Records data from outside (a batch of features, labels as a matrix): no gradient
    /// flows into it from the caller's point of view, though [`Tape::grad`] still reports
    /// one.
    pub fn input(&mut self, rows: usize, cols: usize, data: &[f32]) -> Result<Var> {
        if data.len() != rows * cols {
            return Err(AutodiffError::Invalid {
                op: "input",
                detail: format!(
                    "{rows}x{cols} needs {} floats, got {}",
                    rows * cols,
                    data.len()
                ),
            });
        }
        let (v, off) = self.push_overwritten(Op::Leaf, rows, cols);
        self.values[off..off + data.len()].copy_from_slice(data);
        Ok(v)
    }

    /// Binds a dense parameter for this step: its value is copied onto the tape (a few
    /// hundred KiB at most, small next to the products that use it) and its gradient will
    /// be added to `grads.dense[id]` by [`Tape::backward`].
    pub fn param(&mut self, store: &ParamStore, id: ParamId) -> Var {
        let m = store.get(id);
        let (rows, cols) = m.shape();
        let (v, off) = self.push_overwritten(Op::Param(id), rows, cols);
        for i in 0..rows {
            self.values[off + i * cols..off + (i + 1) * cols].copy_from_slice(m.row(i));
        }
        v
    }

    /// Back-propagates from the scalar `loss` (a 1 x 1 value): every node's gradient is
    /// computed, dense parameter gradients are added to `grads.dense`, and embedding
    /// gradients are appended to `grads.sparse`.
    pub fn backward(&mut self, loss: Var, grads: &mut Grads) -> Result<()> {
        self.backward_inner(loss, grads)
    }

    /// [`Tape::backward`] restricted to the dense parameters `targets`: only the gradients
    /// of nodes that depend on one of them are computed, and only the targets' gradients
    /// are added to `grads.dense` (every other parameter's and every embedding's are left
    /// as they were). A layer above the targets still passes its input gradient down, but
    /// computes no weight gradient; nothing below the targets runs at all. GradNorm's
    /// per-task gradients on the input BatchNorm cost about one GEMM per linear layer this
    /// way instead of two, and no embedding scatter.
    pub fn backward_to(&mut self, loss: Var, targets: &[ParamId], grads: &mut Grads) -> Result<()> {
        self.check("backward", loss)?;
        let mut towards = std::mem::take(&mut self.towards);
        towards.clear();
        for node in &self.nodes[..=loss.0 as usize] {
            let mut t = matches!(node.op, Op::Param(id) if targets.contains(&id));
            crate::ops::for_each_input(&self.lists, &node.op, |v| t |= towards[v.0 as usize]);
            towards.push(t);
        }
        self.towards = towards;
        let result = self.backward_inner(loss, grads);
        self.towards.clear();
        result
    }

    fn backward_inner(&mut self, loss: Var, grads: &mut Grads) -> Result<()> {
        self.check("backward", loss)?;
        if self.shape(loss) != (1, 1) {
            let (r, c) = self.shape(loss);
            return Err(AutodiffError::Invalid {
                op: "backward",
                detail: format!("the loss must be 1x1, got {r}x{c}"),
            });
        }
        // The arena is not cleared as a whole (a memset of every value's slot, a few MB,
        // streamed through the caches ahead of the pass). A slot becomes ready when the
        // pass first reaches a node that adds into it: it is zeroed just before that
        // node's backward step, while its lines are about to be used. Concatenation and
        // BatchNorm instead write a slot that is not ready yet as `0 + value`, which is
        // the bits `+=` into a zeroed slot would give, and skip the zeroing and its read
        // (the embedding rows and the concatenated input are most of the arena). A node's
        // own slot is zeroed before its step if none of its consumers wrote it. Every
        // slot is therefore zero, or holds exactly what a cleared arena would, before each
        // op reads or adds into it: the same sums in the same order, bit for bit.
        if self.grads.len() < self.used {
            self.grads.resize(self.used, 0.0);
        }
        self.grads_valid = 0;
        let last = loss.0 as usize;
        let mut ready = std::mem::take(&mut self.grad_ready);
        ready.clear();
        ready.resize(self.nodes.len(), false);
        let (off, _) = self.slot(loss);
        self.grads[off] = 1.0;
        ready[last] = true;
        // Only nodes the loss depends on get a backward step (others would add zeros, and
        // embeddings would report rows the loss never used).
        let mut reach = std::mem::take(&mut self.reaches_loss);
        reach.clear();
        reach.resize(last + 1, false);
        reach[last] = true;
        let mut result = Ok(());
        for k in (0..=last).rev() {
            let node = self.nodes[k];
            if !reach[k] {
                continue;
            }
            let (nodes, arena) = (&self.nodes, &mut self.grads);
            let zero = |arena: &mut [f32], i: usize| {
                let n = &nodes[i];
                arena[n.off..n.off + n.rows * n.cols].fill(0.0);
            };
            if !ready[k] {
                ready[k] = true;
                zero(arena, k);
            }
            let writes_fresh = matches!(node.op, Op::Concat { .. } | Op::BatchNorm { .. });
            crate::ops::for_each_input(&self.lists, &node.op, |v| {
                let i = v.0 as usize;
                reach[i] = true;
                if !ready[i] && !writes_fresh {
                    ready[i] = true;
                    zero(arena, i);
                }
            });
            if node.needs_grad && self.towards.get(k).is_none_or(|&t| t) {
                self.grad_ready = std::mem::take(&mut ready);
                result = crate::ops::backward(self, node, grads);
                ready = std::mem::take(&mut self.grad_ready);
                if result.is_err() {
                    break;
                }
            }
        }
        // Nodes the pass never reached (data, values after the loss) or never wrote
        // report a zero gradient, as [`Tape::grad`] promises.
        if result.is_ok() {
            for (n, r) in self.nodes.iter().zip(&ready) {
                if !r {
                    self.grads[n.off..n.off + n.rows * n.cols].fill(0.0);
                }
            }
            self.grads_valid = self.used;
        }
        self.reaches_loss = reach;
        self.grad_ready = ready;
        result
    }
}
