//! Optimisers: SGD, Adam for dense parameters, and Adam for embedding tables in its lazy
//! (sparse) and dense forms.
//!
//! Adam, per parameter `p` with gradient `g` at step `t` (TensorFlow's formulation):
//!
//! ```text
//! m = b1 m + (1 - b1) g
//! v = b2 v + (1 - b2) g^2
//! p = p - lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)
//! ```
//!
//! For an embedding table, a batch touches a few thousand of possibly millions of rows.
//! Dense Adam (what TF1's optimiser did) decays `m` and `v` of *every* row at every step,
//! and so keeps moving rows that received no gradient, at a cost proportional to the table.
//! Lazy Adam updates only the rows present in the batch (their moments decay only when they
//! are seen): the cost is proportional to the batch, which is what makes CPU training of
//! large tables fast. Rows with repeated ids in a batch are summed first.

use rayon::prelude::*;

use crate::error::Result;
use crate::params::{Grads, ParamStore};

/// Zeroed moment buffers of `lens` floats each, faulted in now, in parallel on the current
/// rayon pool: a lazy update touches rows at random, and a first touch during training is
/// a page fault in the middle of a step (55% of an epoch's 1.83 M faults were the moments'
/// first touches before this). Large buffers get huge pages (see
/// [`tensor::advise_huge_pages`]), so the pre-fault costs one fault per 2 MiB.
fn moments(lens: impl Iterator<Item = usize>) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::new();
    for len in lens {
        out.push(tensor::try_zeroed_vec(len)?);
    }
    // One task per 2 MiB: chunks of every buffer, spread over the pool's threads.
    const CHUNK: usize = (2 << 20) / 4;
    out.par_iter_mut()
        .flat_map(|v| v.par_chunks_mut(CHUNK))
        .for_each(tensor::prefault_zeroed);
    Ok(out)
}

/// Copies `src` into `dst` when every buffer has the same length, keeping `dst`'s memory
/// (already faulted in, on huge pages); otherwise takes `src`.
fn copy_or_take(dst: &mut Vec<Vec<f32>>, src: Vec<Vec<f32>>) {
    if dst.len() == src.len() && dst.iter().zip(&src).all(|(a, b)| a.len() == b.len()) {
        dst.par_iter_mut()
            .zip(src.par_iter())
            .for_each(|(a, b)| a.copy_from_slice(b));
    } else {
        *dst = src;
    }
}

/// Adam's hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    /// Step size.
    pub lr: f32,
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Denominator guard.
    pub eps: f32,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-7,
        }
    }
}

impl AdamConfig {
    /// The bias-corrected step size at step `t` (1-based).
    fn step_size(&self, t: u64) -> f32 {
        let t = t as i32;
        self.lr * (1.0 - self.beta2.powi(t)).sqrt() / (1.0 - self.beta1.powi(t))
    }
}

/// The Adam update of a slice, on the SIMD kernel of `tensor::ops`.
#[inline(always)]
fn adam_update(c: &AdamConfig, lr_t: f32, p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32]) {
    tensor::ops::adam_update(lr_t, c.beta1, c.beta2, c.eps, p, m, v, g);
}

/// Plain stochastic gradient descent: `p -= lr g` (embedding rows included).
#[derive(Debug, Clone, Copy)]
pub struct Sgd {
    /// Step size.
    pub lr: f32,
}

impl Sgd {
    /// Applies one step to every parameter of `store`.
    pub fn step(&self, store: &mut ParamStore, grads: &Grads) {
        for (p, g) in store.dense.iter_mut().zip(&grads.dense) {
            tensor::ops::axpy(-self.lr, g, p.value.as_mut_slice());
        }
        for (t, s) in store.tables.iter_mut().zip(&grads.sparse) {
            for (k, &id) in s.ids.iter().enumerate() {
                tensor::ops::axpy(
                    -self.lr,
                    &s.rows[k * s.dim..(k + 1) * s.dim],
                    t.value.row_mut(id as usize),
                );
            }
        }
    }
}

/// Adam for the dense parameters of a store.
#[derive(Debug, Clone)]
pub struct Adam {
    /// Hyper-parameters.
    pub config: AdamConfig,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    t: u64,
}

impl Adam {
    /// Zero moments for every dense parameter of `store`.
    ///
    /// # Panics
    /// Aborts when the memory cannot be allocated; see [`Adam::try_new`].
    pub fn new(config: AdamConfig, store: &ParamStore) -> Self {
        Self::try_new(config, store).unwrap_or_else(|e| panic!("Adam::new: {e}"))
    }

    /// Zero moments for every dense parameter of `store`, faulted in on the current rayon
    /// pool, or an error when the memory cannot be allocated.
    pub fn try_new(config: AdamConfig, store: &ParamStore) -> Result<Self> {
        let lens = || store.dense.iter().map(|p| p.value.as_slice().len());
        Ok(Self {
            config,
            m: moments(lens())?,
            v: moments(lens())?,
            t: 0,
        })
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.t
    }

    /// The moments `(m, v)`, for checkpoints.
    pub fn moments(&self) -> (&[Vec<f32>], &[Vec<f32>]) {
        (&self.m, &self.v)
    }

    /// Restores moments and the step count from a checkpoint. Moments shaped like the
    /// current ones are copied into them (their memory is already faulted in).
    pub fn restore(&mut self, m: Vec<Vec<f32>>, v: Vec<Vec<f32>>, t: u64) {
        copy_or_take(&mut self.m, m);
        copy_or_take(&mut self.v, v);
        self.t = t;
    }

    /// One step on every dense parameter. The gradient buffers are laid out like the
    /// parameters (`Grads::zeros_like` guarantees it).
    pub fn step(&mut self, store: &mut ParamStore, grads: &Grads) {
        self.step_dense(&mut store.dense, &grads.dense);
    }

    /// [`Adam::step`] on the dense parameters alone (so that tables can be updated at the
    /// same time by another thread). Parameters are updated in parallel on the current
    /// rayon pool, each by one thread.
    pub fn step_dense(&mut self, dense: &mut [crate::params::DenseParam], grads: &[Vec<f32>]) {
        self.t += 1;
        let lr_t = self.config.step_size(self.t);
        let config = self.config;
        dense
            .par_iter_mut()
            .zip(self.m.par_iter_mut())
            .zip(self.v.par_iter_mut())
            .zip(grads.par_iter())
            .for_each(|(((p, m), v), g)| {
                let (rows, cols) = p.value.shape();
                let ld = p.value.ld();
                let data = p.value.as_mut_slice();
                for r in 0..rows {
                    let (a, b) = (r * ld, r * cols);
                    adam_update(
                        &config,
                        lr_t,
                        &mut data[a..a + cols],
                        &mut m[a..a + cols],
                        &mut v[a..a + cols],
                        &g[b..b + cols],
                    );
                }
            });
    }
}

/// Adam for embedding tables: lazy (only rows in the batch) or dense (every row, every step).
#[derive(Debug, Clone)]
pub struct LazyAdam {
    /// Hyper-parameters.
    pub config: AdamConfig,
    /// Update only the rows seen in the batch (`true`) or every row (`false`).
    pub lazy: bool,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    t: u64,
    /// Per table: scratch for summing repeated ids (all `u32::MAX` between steps).
    marks: Vec<Vec<u32>>,
    /// A zero gradient row as wide as the widest table (dense mode's unseen rows).
    zero_row: Vec<f32>,
}

impl LazyAdam {
    /// Zero moments for every table of `store`.
    ///
    /// # Panics
    /// Aborts when the memory cannot be allocated; see [`LazyAdam::try_new`].
    pub fn new(config: AdamConfig, store: &ParamStore, lazy: bool) -> Self {
        Self::try_new(config, store, lazy).unwrap_or_else(|e| panic!("LazyAdam::new: {e}"))
    }

    /// Zero moments for every table of `store`, faulted in on the current rayon pool (a
    /// batch touches rows anywhere in them), and the marker arrays that sum repeated ids,
    /// or an error when the memory cannot be allocated (table sizes come from the data).
    pub fn try_new(config: AdamConfig, store: &ParamStore, lazy: bool) -> Result<Self> {
        let lens = || store.tables.iter().map(|t| t.value.rows() * t.value.cols());
        let mut marks = Vec::with_capacity(store.tables.len());
        for t in &store.tables {
            let rows = if lazy { t.value.rows() } else { 0 };
            let mut m = Vec::new();
            m.try_reserve_exact(rows)
                .map_err(|_| tensor::TensorError::Alloc {
                    what: "LazyAdam::try_new",
                    bytes: rows.saturating_mul(4),
                })?;
            m.resize(rows, u32::MAX);
            marks.push(m);
        }
        Ok(Self {
            config,
            lazy,
            m: moments(lens())?,
            v: moments(lens())?,
            t: 0,
            marks,
            zero_row: vec![
                0.0;
                store
                    .tables
                    .iter()
                    .map(|t| t.value.cols())
                    .max()
                    .unwrap_or(0)
            ],
        })
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.t
    }

    /// The moments `(m, v)` of every table, for checkpoints.
    pub fn moments(&self) -> (&[Vec<f32>], &[Vec<f32>]) {
        (&self.m, &self.v)
    }

    /// Restores moments and the step count from a checkpoint. Moments shaped like the
    /// current ones are copied into them (their memory is already faulted in).
    pub fn restore(&mut self, m: Vec<Vec<f32>>, v: Vec<Vec<f32>>, t: u64) {
        copy_or_take(&mut self.m, m);
        copy_or_take(&mut self.v, v);
        self.t = t;
    }

    /// One step on every table. `grads.sparse` is coalesced in place (repeated ids summed;
    /// sorted too in dense mode). The tables are independent, and within a table so are the
    /// rows: the step runs in parallel on the current rayon pool, each table's coalescing on
    /// one thread, then each large table's rows in contiguous blocks, one block per thread,
    /// so that one big table does not leave the other threads idle. Each row is updated by
    /// exactly one thread with the same arithmetic: the result does not depend on the
    /// schedule or on the number of threads.
    pub fn step(&mut self, store: &mut ParamStore, grads: &mut Grads) {
        self.step_tables(&mut store.tables, &mut grads.sparse);
    }

    /// [`LazyAdam::step`] on the tables alone.
    pub fn step_tables(
        &mut self,
        tables: &mut [crate::params::Table],
        sparse: &mut [crate::params::SparseRows],
    ) {
        self.t += 1;
        let lr_t = self.config.step_size(self.t);
        let (config, lazy, zero_row) = (self.config, self.lazy, &self.zero_row[..]);
        // Sum repeated ids first: a row must be updated once, from its whole gradient.
        tables
            .par_iter()
            .zip(sparse.par_iter_mut())
            .zip(self.marks.par_iter_mut())
            .for_each(|((table, s), marks)| {
                if lazy {
                    s.coalesce_in_place(marks, table.value.rows());
                } else {
                    // The dense walk needs the ids in increasing order.
                    s.coalesce();
                }
            });
        let threads = rayon::current_num_threads();
        tables
            .par_iter_mut()
            .zip(self.m.par_iter_mut())
            .zip(self.v.par_iter_mut())
            .zip(sparse.par_iter())
            .for_each(|(((table, m), v), s)| {
                update_table(
                    &config,
                    lazy,
                    lr_t,
                    &mut table.value,
                    m,
                    v,
                    s,
                    zero_row,
                    threads,
                )
            });
    }
}

/// Updates below this many floats (gradient rows times their width in lazy mode, table
/// rows times width in dense mode) stay on one thread: splitting them costs more than it
/// saves.
const SPLIT_FLOATS: usize = 16 * 1024;

/// One table's step: the rows of `s` only (lazy), or every row with a zero gradient for the
/// rows not in the batch (dense). `s` is coalesced (and sorted in dense mode). A large
/// update is split into up to `threads` contiguous blocks of rows, updated in parallel.
#[allow(clippy::too_many_arguments)]
fn update_table(
    config: &AdamConfig,
    lazy: bool,
    lr_t: f32,
    table: &mut tensor::Matrix,
    m: &mut [f32],
    v: &mut [f32],
    s: &crate::params::SparseRows,
    zero_row: &[f32],
    threads: usize,
) {
    let (rows, d, ld) = (table.rows(), table.cols(), table.ld());
    if rows == 0 || d == 0 {
        return;
    }
    let work = if lazy { s.ids.len() } else { rows } * d;
    let parts = (work / SPLIT_FLOATS).clamp(1, threads.max(1)).min(rows);
    let per = rows.div_ceil(parts);
    let block = |j: usize, t: &mut [f32], m: &mut [f32], v: &mut [f32]| {
        let rows = Rows {
            lo: j * per,
            hi: (j * per + per).min(rows),
            d,
            ld,
            t,
            m,
            v,
        };
        if lazy {
            rows.update_lazy(config, lr_t, s);
        } else {
            rows.update_dense(config, lr_t, s, &zero_row[..d]);
        }
    };
    if parts == 1 {
        block(0, table.as_mut_slice(), m, v);
        return;
    }
    table
        .as_mut_slice()
        .par_chunks_mut(per * ld)
        .zip(m.par_chunks_mut(per * d))
        .zip(v.par_chunks_mut(per * d))
        .enumerate()
        .for_each(|(j, ((t, m), v))| block(j, t, m, v));
}

/// The block of table rows `lo..hi`: their values (`ld` apart) and moments (`d` apart),
/// starting at row `lo`.
struct Rows<'a> {
    lo: usize,
    hi: usize,
    d: usize,
    ld: usize,
    t: &'a mut [f32],
    m: &'a mut [f32],
    v: &'a mut [f32],
}

impl Rows<'_> {
    /// Adam on table row `r` (inside the block) with gradient `g`.
    fn update(&mut self, config: &AdamConfig, lr_t: f32, r: usize, g: &[f32]) {
        let (d, ld, k) = (self.d, self.ld, r - self.lo);
        adam_update(
            config,
            lr_t,
            &mut self.t[k * ld..k * ld + d],
            &mut self.m[k * d..(k + 1) * d],
            &mut self.v[k * d..(k + 1) * d],
            g,
        );
    }

    /// Starts loading row `r` (inside the block) of the three arrays.
    fn prefetch(&self, r: usize) {
        let (d, ld, k) = (self.d, self.ld, r - self.lo);
        // Every 64-byte line of the row.
        for c in (0..d).step_by(16) {
            tensor::arch::prefetch(&self.m[k * d + c..]);
            tensor::arch::prefetch(&self.v[k * d + c..]);
            tensor::arch::prefetch(&self.t[k * ld + c..]);
        }
    }

    /// Lazy Adam: the rows of `s` that fall in the block, in the order of `s`.
    fn update_lazy(mut self, config: &AdamConfig, lr_t: f32, s: &crate::params::SparseRows) {
        // Rows are random reads and writes of three arrays: start loading the block's
        // next few rows ahead of their update.
        const AHEAD: usize = 4;
        let (lo, hi, d) = (self.lo, self.hi, self.d);
        let inside = |id: u32| (lo..hi).contains(&(id as usize));
        let ids = &s.ids;
        // `ahead`: the next position to look at for a prefetch; `lead`: rows of the block
        // already prefetched and not yet updated.
        let (mut ahead, mut lead) = (0usize, 0usize);
        for (k, &id) in ids.iter().enumerate() {
            if !inside(id) {
                continue;
            }
            if ahead <= k {
                ahead = k + 1;
                lead = 0;
            } else {
                lead -= 1;
            }
            while lead < AHEAD && ahead < ids.len() {
                if inside(ids[ahead]) {
                    self.prefetch(ids[ahead] as usize);
                    lead += 1;
                }
                ahead += 1;
            }
            self.update(config, lr_t, id as usize, &s.rows[k * d..(k + 1) * d]);
        }
    }

    /// Dense Adam: every row of the block, with a zero gradient where `s` (sorted) has none.
    fn update_dense(
        mut self,
        config: &AdamConfig,
        lr_t: f32,
        s: &crate::params::SparseRows,
        zeros: &[f32],
    ) {
        let d = self.d;
        let mut next = s.ids.partition_point(|&id| (id as usize) < self.lo);
        for r in self.lo..self.hi {
            if next < s.ids.len() && s.ids[next] as usize == r {
                self.update(config, lr_t, r, &s.rows[next * d..(next + 1) * d]);
                next += 1;
            } else {
                self.update(config, lr_t, r, zeros);
            }
        }
    }
}
