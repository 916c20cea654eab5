//! `autodiff`: tape-based reverse-mode automatic differentiation.
//!
//! A [`Tape`] records operations as they run forward, each value in one arena of floats;
//! [`Tape::backward`] walks the record in reverse and gives every value its gradient.
//! Parameters live outside the tape in a [`ParamStore`], are bound to a tape for a step
//! ([`Tape::param`], [`Tape::embedding`]), and their gradients land in a [`Grads`]: dense
//! buffers for matrices, `(row id, gradient row)` lists for embedding tables.
//!
//! ```
//! use autodiff::{BceTarget, Grads, ParamStore, Tape};
//! use tensor::Matrix;
//!
//! let mut store = ParamStore::new();
//! let w = store.add("w", Matrix::from_fn(3, 1, |i, _| i as f32 * 0.1));
//! let b = store.add("b", Matrix::zeros(1, 1));
//! let mut tape = Tape::new();
//! let x = tape.input(2, 3, &[1.0, 2.0, 3.0, -1.0, 0.0, 1.0])?;
//! let (wv, bv) = (tape.param(&store, w), tape.param(&store, b));
//! let z = tape.linear(x, wv, Some(bv))?;
//! let target = BceTarget { labels: &[1.0, 0.0], weights: None, pos_weight: 1.0, denom: None };
//! let loss = tape.bce_with_logits(z, target)?;
//! let mut grads = Grads::zeros_like(&store);
//! tape.backward(loss, &mut grads)?;
//! assert_eq!(grads.dense[w.index()].len(), 3);
//! # Ok::<(), autodiff::AutodiffError>(())
//! ```
//!
//! `docs/autodiff.md` explains the design, how to add an op, and the derivations.
#![forbid(unsafe_code)]

mod error;
mod ops;
mod optim;
mod params;
mod tape;

pub use error::{AutodiffError, Result};
pub use ops::{BatchNormMode, BceTarget, map_loss_math};
pub use optim::{Adam, AdamConfig, LazyAdam, Sgd};
pub use params::{DenseParam, Grads, ParamId, ParamStore, SparseRows, Table, TableId};
pub use tape::{Tape, Var};
pub use tensor::Pooling;
