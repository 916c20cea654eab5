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

    /// One step on every table. `grads.sparse` is coalesced in place (sorted, repeated
    /// ids summed). Tables are independent, so they are updated in parallel on the current
    /// rayon pool, each by one thread: the result does not depend on the schedule.
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
        tables
            .par_iter_mut()
            .zip(self.m.par_iter_mut())
            .zip(self.v.par_iter_mut())
            .zip(sparse.par_iter_mut())
            .zip(self.marks.par_iter_mut())
            .for_each(|((((table, m), v), s), marks)| {
                update_table(
                    &config,
                    lazy,
                    lr_t,
                    &mut table.value,
                    m,
                    v,
                    s,
                    marks,
                    zero_row,
                )
            });
    }
}

/// One table's step: the rows of `s` only (lazy), or every row with a zero gradient for the
/// rows not in the batch (dense).
fn update_table(
    config: &AdamConfig,
    lazy: bool,
    lr_t: f32,
    table: &mut tensor::Matrix,
    m: &mut [f32],
    v: &mut [f32],
    s: &mut crate::params::SparseRows,
    marks: &mut Vec<u32>,
    zero_row: &[f32],
) {
    let d = table.cols();
    let rows = table.rows();
    if lazy {
        s.coalesce_in_place(marks, rows);
    } else {
        // The dense walk below needs the ids in increasing order.
        s.coalesce();
    }
    let update = |table: &mut tensor::Matrix, m: &mut [f32], v: &mut [f32], r: usize, g: &[f32]| {
        adam_update(
            config,
            lr_t,
            table.row_mut(r),
            &mut m[r * d..(r + 1) * d],
            &mut v[r * d..(r + 1) * d],
            g,
        );
    };
    if lazy {
        // Rows are random reads and writes of three arrays: start loading a few rows ahead.
        const AHEAD: usize = 4;
        for (k, &id) in s.ids.iter().enumerate() {
            if let Some(&next) = s.ids.get(k + AHEAD) {
                let r = next as usize;
                // Every 64-byte line of the row in the three arrays.
                for c in (0..d).step_by(16) {
                    tensor::arch::prefetch(&m[r * d + c..]);
                    tensor::arch::prefetch(&v[r * d + c..]);
                    tensor::arch::prefetch(&table.row(r)[c..]);
                }
            }
            update(table, m, v, id as usize, &s.rows[k * d..(k + 1) * d]);
        }
    } else {
        let zeros = &zero_row[..d];
        let mut next = 0;
        for r in 0..rows {
            if next < s.ids.len() && s.ids[next] as usize == r {
                update(table, m, v, r, &s.rows[next * d..(next + 1) * d]);
                next += 1;
            } else {
                update(table, m, v, r, zeros);
            }
        }
    }
}
