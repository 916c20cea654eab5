//! The cross-process part of a training step, as a hook: [`Reduce`].
//!
//! Inside one process the trainer's workers already reduce in a fixed order (worker 0's
//! gradients, plus worker 1's, plus ...). Several processes training one model (one per
//! machine or socket, over MPI for instance) add one more level: after its own workers,
//! each process combines its results with the others'. The trainer calls the hook at four
//! points, and the in-process [`Local`] does nothing at any of them:
//!
//! ```text
//! step:  workers -> process sum -> agree (did every process's step succeed?)
//!                                -> gradients: dense summed in rank order on every process,
//!                                              sparse (row, gradient) lists concatenated
//!                                              in rank order
//!                                -> gather: the workers' BatchNorm statistics, in order
//!                                -> sum: the step's losses, in rank order
//! evaluation: each process scores its part of every batch -> gather the probabilities
//! ```
//!
//! Every combination is in a fixed order (rank 0 first), so results do not depend on
//! timing; with one worker per process they are those of one process with one worker per
//! rank, bit for bit: a left fold over the ranks is the left fold over the workers.

use autodiff::Grads;

use crate::error::Error;

/// How one process combines its step with the other processes training the same model.
/// Every method is collective: every process calls it, in the same order, with buffers of
/// the same layout.
pub trait Reduce: Send {
    /// This process's rank, `0..ranks()`.
    fn rank(&self) -> usize;

    /// Processes training the model.
    fn ranks(&self) -> usize;

    /// Whether every process's step succeeded (`ok`: this one's). An error names the
    /// processes that failed when another one did.
    fn agree(&mut self, ok: bool) -> Result<(), Error>;

    /// Replaces this process's gradients by the sum over processes: every dense element
    /// becomes `g_0 + g_1 + ... + g_(n-1)`, added in rank order; each table's sparse rows
    /// become the concatenation of every process's rows, in rank order.
    fn gradients(&mut self, grads: &mut Grads) -> Result<(), Error>;

    /// Replaces each `values[j]` by the sum over processes, added in rank order.
    fn sum(&mut self, values: &mut [f64]) -> Result<(), Error>;

    /// Replaces `values` by the concatenation of every process's `values`, in rank order
    /// (lengths may differ between processes).
    fn gather(&mut self, values: &mut Vec<f64>) -> Result<(), Error>;

    /// [`Reduce::gather`] for `f32` values (evaluation probabilities).
    fn gather_f32(&mut self, values: &mut Vec<f32>) -> Result<(), Error>;
}

/// One process: every combination is already complete.
#[derive(Debug, Clone, Copy, Default)]
pub struct Local;

impl Reduce for Local {
    fn rank(&self) -> usize {
        0
    }

    fn ranks(&self) -> usize {
        1
    }

    fn agree(&mut self, _ok: bool) -> Result<(), Error> {
        Ok(())
    }

    fn gradients(&mut self, _grads: &mut Grads) -> Result<(), Error> {
        Ok(())
    }

    fn sum(&mut self, _values: &mut [f64]) -> Result<(), Error> {
        Ok(())
    }

    fn gather(&mut self, _values: &mut Vec<f64>) -> Result<(), Error> {
        Ok(())
    }

    fn gather_f32(&mut self, _values: &mut Vec<f32>) -> Result<(), Error> {
        Ok(())
    }
}
