//! Parameters live outside the tape, in a [`ParamStore`]; their gradients accumulate in a
//! [`Grads`] of the same layout.
//!
//! ```text
//! ParamStore (read-only during a step, shared by every worker)
//!   dense:  [ W1 (608 x 128), b1 (1 x 128), ... ]      ParamId indexes it
//!   tables: [ emb_205 (vocab x 32), ... ]              TableId indexes it
//! Grads (one per worker, summed in a fixed order)
//!   dense:  same shapes as the parameters, accumulated with +=
//!   sparse: per table, the (row id, gradient row) pairs of the batch, never a
//!           table-sized buffer
//! ```

use tensor::Matrix;

/// Index of a dense parameter in a [`ParamStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ParamId(pub(crate) u32);

/// Index of an embedding table in a [`ParamStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TableId(pub(crate) u32);

impl ParamId {
    /// Position of the parameter in the store.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl TableId {
    /// Position of the table in the store.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A named dense parameter.
#[derive(Debug, Clone)]
pub struct DenseParam {
    /// Name, for reports and files.
    pub name: String,
    /// The value.
    pub value: Matrix,
}

/// A named embedding table (`rows x dim`).
#[derive(Debug, Clone)]
pub struct Table {
    /// Name, for reports and files.
    pub name: String,
    /// The rows.
    pub value: Matrix,
}

/// Every parameter of a model: dense matrices and embedding tables.
#[derive(Debug, Clone, Default)]
pub struct ParamStore {
    /// Dense parameters, indexed by [`ParamId`].
    pub dense: Vec<DenseParam>,
    /// Embedding tables, indexed by [`TableId`].
    pub tables: Vec<Table>,
}

impl ParamStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a dense parameter and returns its id.
    pub fn add(&mut self, name: impl Into<String>, value: Matrix) -> ParamId {
        self.dense.push(DenseParam {
            name: name.into(),
            value,
        });
        ParamId(self.dense.len() as u32 - 1)
    }

    /// Adds an embedding table and returns its id.
    pub fn add_table(&mut self, name: impl Into<String>, value: Matrix) -> TableId {
        self.tables.push(Table {
            name: name.into(),
            value,
        });
        TableId(self.tables.len() as u32 - 1)
    }

    /// The value of a dense parameter.
    pub fn get(&self, id: ParamId) -> &Matrix {
        &self.dense[id.index()].value
    }

    /// The value of a dense parameter, mutable (for optimisers and initialisation).
    pub fn get_mut(&mut self, id: ParamId) -> &mut Matrix {
        &mut self.dense[id.index()].value
    }

    /// An embedding table.
    pub fn table(&self, id: TableId) -> &Matrix {
        &self.tables[id.index()].value
    }

    /// An embedding table, mutable.
    pub fn table_mut(&mut self, id: TableId) -> &mut Matrix {
        &mut self.tables[id.index()].value
    }

    /// Number of trainable floats.
    pub fn len(&self) -> usize {
        let size = |m: &Matrix| m.rows() * m.cols();
        self.dense.iter().map(|p| size(&p.value)).sum::<usize>()
            + self.tables.iter().map(|t| size(&t.value)).sum::<usize>()
    }

    /// True when the store holds no parameter.
    pub fn is_empty(&self) -> bool {
        self.dense.is_empty() && self.tables.is_empty()
    }
}

/// The gradient rows of one embedding table: `ids[k]` receives `rows[k * dim..][..dim]`.
/// Ids may repeat; [`SparseRows::coalesce`] sums them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseRows {
    /// Width of a row.
    pub dim: usize,
    /// Row ids, one per gradient row.
    pub ids: Vec<u32>,
    /// Gradient rows, `ids.len() x dim`.
    pub rows: Vec<f32>,
    order: Vec<u32>,
}

impl SparseRows {
    /// Empties the rows, keeping the memory.
    pub fn clear(&mut self) {
        self.ids.clear();
        self.rows.clear();
    }

    /// Appends a gradient row for `id`.
    pub fn push(&mut self, id: u32, row: &[f32]) {
        self.ids.push(id);
        self.rows.extend_from_slice(row);
    }

    /// Appends every row of `other` (a deterministic merge: order is kept).
    pub fn extend(&mut self, other: &SparseRows) {
        self.ids.extend_from_slice(&other.ids);
        self.rows.extend_from_slice(&other.rows);
    }

    /// Sorts by id and sums the rows of repeated ids, in their original order (so the
    /// result does not depend on the sort's stability). Memory is reused.
    pub fn coalesce(&mut self) {
        let dim = self.dim;
        let n = self.ids.len();
        if n == 0 {
            return;
        }
        self.order.clear();
        self.order.extend(0..n as u32);
        let ids = &self.ids;
        self.order.sort_unstable_by_key(|&k| (ids[k as usize], k));
        // Rebuild in place through the tail of `rows`: write coalesced rows after the
        // originals, then move them to the front.
        let mut out = 0usize;
        let mut last: Option<u32> = None;
        self.rows.reserve(n * dim);
        for k in 0..n {
            let src = self.order[k] as usize;
            let id = self.ids[src];
            if last == Some(id) {
                let dst = n * dim + (out - 1) * dim;
                for j in 0..dim {
                    self.rows[dst + j] += self.rows[src * dim + j];
                }
            } else {
                for j in 0..dim {
                    let v = self.rows[src * dim + j];
                    self.rows.push(v);
                }
                self.order[out] = id;
                out += 1;
                last = Some(id);
            }
        }
        self.rows.copy_within(n * dim..n * dim + out * dim, 0);
        self.rows.truncate(out * dim);
        self.ids.clear();
        self.ids.extend_from_slice(&self.order[..out]);
    }
}

impl SparseRows {
    /// Sums the rows of repeated ids in O(n), keeping the ids in order of first occurrence
    /// (deterministic, unsorted). `marks` is scratch of at least `table_rows` entries, all
    /// `u32::MAX`, and is left that way.
    pub fn coalesce_in_place(&mut self, marks: &mut Vec<u32>, table_rows: usize) {
        if marks.len() < table_rows {
            marks.resize(table_rows, u32::MAX);
        }
        let d = self.dim;
        let mut out = 0usize;
        for k in 0..self.ids.len() {
            let id = self.ids[k] as usize;
            match marks[id] {
                u32::MAX => {
                    marks[id] = out as u32;
                    self.ids[out] = id as u32;
                    if out != k {
                        self.rows.copy_within(k * d..(k + 1) * d, out * d);
                    }
                    out += 1;
                }
                at => {
                    let (first, rest) = self.rows.split_at_mut(k * d);
                    let dst = &mut first[at as usize * d..at as usize * d + d];
                    for (a, b) in dst.iter_mut().zip(&rest[..d]) {
                        *a += b;
                    }
                }
            }
        }
        self.ids.truncate(out);
        self.rows.truncate(out * d);
        for &id in &self.ids {
            marks[id as usize] = u32::MAX;
        }
    }
}

/// Gradients for every parameter of a [`ParamStore`].
#[derive(Debug, Clone, Default)]
pub struct Grads {
    /// One buffer per dense parameter, same shape, row-major.
    pub dense: Vec<Vec<f32>>,
    /// One sparse row list per table.
    pub sparse: Vec<SparseRows>,
}

impl Grads {
    /// Zero gradients shaped like `store`.
    pub fn zeros_like(store: &ParamStore) -> Self {
        Self {
            dense: store
                .dense
                .iter()
                .map(|p| vec![0.0; p.value.rows() * p.value.cols()])
                .collect(),
            sparse: store
                .tables
                .iter()
                .map(|t| SparseRows {
                    dim: t.value.cols(),
                    ..SparseRows::default()
                })
                .collect(),
        }
    }

    /// Doubles the room of every sparse list from its current length (their lengths vary
    /// with the bags of each batch): called once after a first step, see
    /// [`crate::Tape::reserve_headroom`].
    pub fn reserve_headroom(&mut self) {
        for s in &mut self.sparse {
            s.ids.reserve(s.ids.len());
            // [`SparseRows::coalesce`] builds its result after the rows: twice the room.
            s.rows.reserve(3 * s.rows.len());
            s.order.reserve(2 * s.ids.len().max(s.order.len()));
        }
    }

    /// Sets every dense gradient to zero and empties the sparse lists (memory is kept).
    pub fn zero(&mut self) {
        self.dense.iter_mut().for_each(|g| g.fill(0.0));
        self.sparse.iter_mut().for_each(SparseRows::clear);
    }

    /// Adds every gradient of `others` into `self`, in the order given: dense gradients
    /// element-wise, sparse rows appended. It runs on the current rayon pool, each dense
    /// buffer and each table's list on one thread, so the floats are those of adding the
    /// others one after the other, on any number of threads: summing workers in a fixed
    /// order gives the same floats on every run.
    pub fn add_all<'a, I>(&mut self, others: I)
    where
        I: Iterator<Item = &'a Grads> + Clone + Sync,
    {
        use rayon::prelude::*;
        let Grads { dense, sparse } = self;
        rayon::join(
            || {
                dense.par_iter_mut().enumerate().for_each(|(i, g)| {
                    for o in others.clone() {
                        tensor::ops::axpy(1.0, &o.dense[i], g);
                    }
                })
            },
            || {
                sparse.par_iter_mut().enumerate().for_each(|(k, s)| {
                    for o in others.clone() {
                        s.extend(&o.sparse[k]);
                    }
                })
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesce_in_place_sums_repeated_ids_in_first_occurrence_order() {
        let mut s = SparseRows {
            dim: 2,
            ..Default::default()
        };
        for (id, row) in [
            (5, [1.0, 2.0]),
            (3, [10.0, 20.0]),
            (5, [0.5, 0.25]),
            (9, [7.0, 7.0]),
            (3, [1.0, 1.0]),
        ] {
            s.push(id, &row);
        }
        let mut marks = Vec::new();
        s.coalesce_in_place(&mut marks, 10);
        assert_eq!(s.ids, vec![5, 3, 9]);
        assert_eq!(s.rows, vec![1.5, 2.25, 11.0, 21.0, 7.0, 7.0]);
        assert!(
            marks.iter().all(|&m| m == u32::MAX),
            "scratch is left clean"
        );
    }

    #[test]
    fn coalesce_sums_repeated_ids_in_order() {
        let mut s = SparseRows {
            dim: 2,
            ..Default::default()
        };
        s.push(5, &[1.0, 2.0]);
        s.push(3, &[10.0, 20.0]);
        s.push(5, &[0.5, 0.25]);
        s.push(9, &[7.0, 7.0]);
        s.push(3, &[1.0, 1.0]);
        s.coalesce();
        assert_eq!(s.ids, vec![3, 5, 9]);
        assert_eq!(s.rows, vec![11.0, 21.0, 1.5, 2.25, 7.0, 7.0]);
        let mut e = SparseRows::default();
        e.coalesce();
        assert!(e.ids.is_empty());
    }
}
