//! Embedding lookups: one row per id (single-valued fields), or a pooled bag of rows
//! (multi-valued fields, given as offsets + ids).
//!
//! Shapes: a table `V x D`; `N` ids (lookup) or `N + 1` offsets and their ids (bags);
//! `y: N x D`. Row `n` of a bag is `sum_{k in bag n} E[id_k]` (or that divided by the bag's
//! size for mean pooling; an empty bag gives zeros).
//!
//! Gradient: `dE[id_k] += dy_n` (or `dy_n / size`) for every id of row `n`. The backward
//! step appends these `(id, row)` pairs to the table's sparse gradient instead of touching
//! a `V x D` buffer: a batch reaches a few thousand of the table's rows, the table may
//! have millions.

use super::Op;
use crate::error::{AutodiffError, Result};
use crate::params::{Grads, ParamStore, TableId};
use crate::tape::{Node, Tape, Var};

use tensor::Pooling;

impl Tape {
    /// One row of `table` per id: `N x D`.
    pub fn embedding(&mut self, store: &ParamStore, table: TableId, ids: &[u32]) -> Result<Var> {
        let rows = store.table(table).rows();
        if let Some((row, &id)) = ids.iter().enumerate().find(|(_, id)| **id as usize >= rows) {
            return Err(AutodiffError::IdOutOfRange {
                op: "embedding",
                row,
                id,
                rows,
            });
        }
        let start = self.ids.len();
        self.ids.extend_from_slice(ids);
        self.gather(store, table, start, usize::MAX, ids.len(), None)
    }

    /// Pooled bags: row `n` pools the rows of `ids[offsets[n] - base..offsets[n + 1] - base]`
    /// with `base = offsets[0]`, so a slice of a larger offset array (one worker's rows of a
    /// batch) can be passed as it is, with exactly the ids it covers.
    pub fn embedding_bag(
        &mut self,
        store: &ParamStore,
        table: TableId,
        offsets: &[u64],
        ids: &[u32],
        pooling: Pooling,
    ) -> Result<Var> {
        let bad = |detail: String| AutodiffError::Invalid {
            op: "embedding_bag",
            detail,
        };
        let n = offsets
            .len()
            .checked_sub(1)
            .ok_or_else(|| bad("offsets need at least one entry".into()))?;
        if let Some(r) = offsets.windows(2).position(|w| w[0] > w[1]) {
            return Err(bad(format!("offsets decrease at row {r}")));
        }
        let base = offsets[0];
        if offsets[n] - base != ids.len() as u64 {
            return Err(bad(format!(
                "offsets span {} ids ({}..{}), but {} ids were given",
                offsets[n] - base,
                base,
                offsets[n],
                ids.len()
            )));
        }
        let rows = store.table(table).rows();
        for r in 0..n {
            for &id in &ids[(offsets[r] - base) as usize..(offsets[r + 1] - base) as usize] {
                if id as usize >= rows {
                    return Err(AutodiffError::IdOutOfRange {
                        op: "embedding_bag",
                        row: r,
                        id,
                        rows,
                    });
                }
            }
        }
        let (start, offs) = (self.ids.len(), self.offsets.len());
        self.ids.extend_from_slice(ids);
        self.offsets.extend(offsets.iter().map(|&o| o - base));
        self.gather(store, table, start, offs, n, Some(pooling))
    }

    fn gather(
        &mut self,
        store: &ParamStore,
        table: TableId,
        ids: usize,
        offs: usize,
        n: usize,
        pooling: Option<Pooling>,
    ) -> Result<Var> {
        let e = store.table(table);
        let d = e.cols();
        let (v, off) = self.push_overwritten(
            Op::Embedding {
                table,
                ids,
                offs,
                pooling,
            },
            n,
            d,
        );
        let Tape {
            values,
            ids: all_ids,
            offsets,
            ..
        } = self;
        let out = &mut values[off..off + n * d];
        for r in 0..n {
            let row = &mut out[r * d..(r + 1) * d];
            let bag = bag(all_ids, offsets, ids, offs, r, pooling);
            match pooling {
                None => row.copy_from_slice(e.row(bag[0] as usize)),
                Some(p) => {
                    row.fill(0.0);
                    for &id in bag {
                        tensor::ops::axpy(1.0, e.row(id as usize), row);
                    }
                    let w = p.row_weight(bag.len());
                    if w != 1.0 {
                        tensor::ops::scale(w, row);
                    }
                }
            }
        }
        Ok(v)
    }
}

/// The ids of row `r`.
fn bag<'a>(
    ids: &'a [u32],
    offsets: &[u64],
    start: usize,
    offs: usize,
    r: usize,
    pooling: Option<Pooling>,
) -> &'a [u32] {
    match pooling {
        None => &ids[start + r..start + r + 1],
        Some(_) => &ids[start + offsets[offs + r] as usize..start + offsets[offs + r + 1] as usize],
    }
}

pub(super) fn backward(
    t: &mut Tape,
    node: Node,
    table: TableId,
    ids: usize,
    offs: usize,
    pooling: Option<Pooling>,
    grads: &mut Grads,
) -> Result<()> {
    let (n, d) = (node.rows, node.cols);
    let gy = &t.grads[node.off..node.off + n * d];
    let sparse = &mut grads.sparse[table.index()];
    for r in 0..n {
        let b = bag(&t.ids, &t.offsets, ids, offs, r, pooling);
        let g = &gy[r * d..(r + 1) * d];
        let scale = pooling.map_or(1.0, |p| p.row_weight(b.len()));
        for &id in b {
            let at = sparse.rows.len();
            sparse.push(id, g);
            if scale != 1.0 {
                tensor::ops::scale(scale, &mut sparse.rows[at..]);
            }
        }
    }
    Ok(())
}
