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
//!
//! With row-sharded tables ([`Reduce::shards_tables`]) each process is the *owner* of the
//! rows [`owner`] assigns to it, and only its owned rows are kept current by its optimiser.
//! Two more calls then bracket a step: [`Reduce::fetch_rows`] before the forward pass (the
//! rows this process's share looks up, from their owners) and, inside
//! [`Reduce::gradients`], the gradient rows go to their owners instead of to everyone.
//! A process stores only its owned rows ([`crate::compact`]); an evaluation fetches the
//! rows it reads as a step does, and [`Reduce::gather_tables`] assembles the whole tables on
//! rank 0 alone, for the export.

use autodiff::{Grads, Table};
use tensor::Matrix;

use crate::compact::CompactTables;

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

    /// Whether the embedding tables are row-sharded: each process owns the rows [`owner`]
    /// gives it, and [`Reduce::gradients`] leaves in each table's sparse list only the
    /// rows this process owns (every process's, in rank order), so that its optimiser
    /// updates only those.
    fn shards_tables(&self) -> bool {
        false
    }

    /// Row-sharded tables: writes into the working tables `work` the current value of
    /// every working row of `compact` (the rows this process's share of the step looks
    /// up, [`CompactTables::prepare`]) that another process owns. A no-op with
    /// replicated tables.
    fn fetch_rows(&mut self, _compact: &CompactTables, _work: &mut [Table]) -> Result<(), Error> {
        Ok(())
    }

    /// [`Reduce::fetch_rows`] for an evaluation batch (counted apart from the steps).
    fn fetch_eval_rows(
        &mut self,
        compact: &CompactTables,
        work: &mut [Table],
    ) -> Result<(), Error> {
        self.fetch_rows(compact, work)
    }

    /// Row-sharded tables: every process's rows of `compact` sent to rank 0, which
    /// returns the whole tables (`Some`, in table order); the other processes return
    /// `None`. One process owns every row, so alone it returns its own rows as they are.
    fn gather_tables(&mut self, compact: &CompactTables) -> Result<Option<Vec<Matrix>>, Error> {
        (0..compact.owned.len())
            .map(|k| compact.whole(k))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// Row-sharded tables: the rows of `table` (store index) this process owns, in
    /// increasing order, appended to `rows` (cleared first). Replicated: every row.
    fn owned_rows(&self, table: usize, table_rows: usize, rows: &mut Vec<u32>) {
        let _ = table;
        rows.clear();
        rows.extend(0..table_rows as u32);
    }
}

/// The process that owns row `id` of table `table` when `ranks` processes shard the
/// tables: a multiplicative hash of (table, id), so that the hot low ids of every table
/// spread over the processes instead of landing on one.
pub fn owner(table: usize, id: u32, ranks: usize) -> usize {
    if ranks <= 1 {
        return 0;
    }
    let key = ((table as u64) << 32) | u64::from(id);
    let h = key.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // The high bits are the well-mixed ones; reduce them to 0..ranks without a modulo bias
    // worth the name (ranks is far below 2^32).
    (((h >> 32) * ranks as u64) >> 32) as usize
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

#[cfg(test)]
mod tests {
    use super::owner;

    #[test]
    fn owners_are_in_range_and_spread() {
        assert_eq!(owner(3, 17, 1), 0);
        for ranks in [2usize, 3, 8] {
            let mut per = vec![0usize; ranks];
            for t in 0..4 {
                for id in 0..10_000u32 {
                    let q = owner(t, id, ranks);
                    assert!(q < ranks);
                    per[q] += 1;
                }
            }
            let fair = 40_000 / ranks;
            for &n in &per {
                assert!(n > fair * 9 / 10 && n < fair * 11 / 10, "{per:?}");
            }
        }
    }
}
