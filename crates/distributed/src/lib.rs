//! `distributed`: training one resflow model with several processes, one per machine or
//! socket, over MPI (synchronous data parallelism).
//!
//! ```text
//! mpirun -np 2 resflow train --distributed ...
//!   rank 0: share 0 of every global batch -> its workers -> process sum --+
//!   rank 1: share 1 of every global batch -> its workers -> process sum --+--> rank-order sums
//!   every rank: the same Adam step on the same sums -> identical replicas
//! ```
//!
//! Every process holds the whole model (replicated tables). A step's combination across
//! processes is the trainer's hook ([`resflow::reduce::Reduce`]); this crate implements it
//! over MPI ([`MpiReduce`], feature `mpi`):
//!
//! - dense gradients: an all-reduce in a fixed order. The flat gradient is cut into one
//!   chunk per rank; an all-to-all sends chunk `c` of every rank to rank `c`, which adds
//!   them in rank order (`g_0 + g_1 + ...`, the in-process workers' order), and an
//!   all-gather returns the sums. Each rank sends and receives `2 (n - 1) / n` of the
//!   gradient, like a ring all-reduce, but the order of the additions never depends on
//!   the transport.
//! - embedding gradients: each table's (row, gradient) lists, all-gathered and concatenated
//!   in rank order, exactly as the in-process reduction appends the workers' lists.
//! - BatchNorm statistics, losses and evaluation probabilities: gathered in rank order.
//!
//! With row-sharded tables (`--shard-tables`, `sharded.rs`) each rank owns the rows that
//! `resflow::reduce::owner` hashes to it: before the forward pass it fetches the rows its
//! share looks up from their owners, and the gradient rows travel to their owners (both by
//! all-to-allv), which update them; the order of every addition is the replicated one, so
//! the parameters are the same, bit for bit.
//!
//! Without the `mpi` feature the crate builds without MPI, and [`Cluster::join`] says how to
//! get it. See `docs/distributed.md` for the launch on a cluster and the traffic of a step.
#![forbid(unsafe_code)]

mod launch;
#[cfg(feature = "mpi")]
mod mpi_reduce;
#[cfg(not(feature = "mpi"))]
mod no_mpi;
pub mod order;
mod replicas;
#[cfg(feature = "mpi")]
mod sharded;

pub use launch::{LAUNCHED_VARS, find_mpirun, launched_by_mpirun, threads_per_rank};
#[cfg(feature = "mpi")]
pub use mpi_reduce::{Cluster, MpiReduce};
#[cfg(not(feature = "mpi"))]
pub use no_mpi::Cluster;
pub use replicas::Replicas;

/// Whether this build can train across processes (the `mpi` feature).
pub const AVAILABLE: bool = cfg!(feature = "mpi");

/// Bytes this process sent in collective calls, by kind (for the traffic figures).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Traffic {
    /// Dense gradients (all-to-all and all-gather).
    pub dense: u64,
    /// Embedding gradient rows (ids and gradients): all-gathered with replicated tables,
    /// sent to their owners with row-sharded ones.
    pub sparse: u64,
    /// Row-sharded tables: the rows a step looks up, fetched from their owners (ids out,
    /// rows back).
    pub lookups: u64,
    /// Row-sharded tables: rows fetched for evaluation batches, and rows sent to rank 0
    /// for the export (not per step).
    pub sync: u64,
    /// Everything else: agreement flags, losses, BatchNorm statistics, counts, predictions.
    pub other: u64,
    /// Gradient reductions (training steps) counted.
    pub steps: u64,
    /// Seconds spent in the collective calls that move data (gradients, statistics,
    /// losses, predictions). They start right after the agreement, when every process is
    /// there, so this is the time of the transfers themselves.
    pub seconds: f64,
    /// Seconds spent in the agreement that opens each step: waiting for the slowest
    /// process to finish its forward and backward passes.
    pub wait_seconds: f64,
}

/// What went wrong setting up or running training across processes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// This build has no MPI.
    #[error(
        "this resflow was built without MPI: rebuild with `cargo build --release --features mpi` \
         (MPICH and libclang are needed: apt-get install mpich libmpich-dev libclang-dev), then \
         launch with `mpirun -np N resflow train --distributed ...`"
    )]
    NotBuilt,
    /// The process was not started by an MPI launcher.
    #[error(
        "--distributed: this process was not started by an MPI launcher (none of {vars} is set); \
         launch it with `mpirun -np N resflow train --distributed ...`"
    )]
    NotLaunched {
        /// The environment variables looked for.
        vars: String,
    },
    /// The process was not started by an MPI launcher, and none is on the `PATH`.
    #[error(
        "--distributed: this process was not started by mpirun, and no mpirun is on PATH: \
         install MPICH (apt-get install mpich) or put your MPI's launcher on PATH, then launch \
         with `mpirun -np N resflow train --distributed ...`"
    )]
    NoMpirun,
    /// MPI could not start, or the processes disagree on what they train.
    #[error("distributed training: {0}")]
    Setup(String),
    /// Training itself failed.
    #[error(transparent)]
    Train(#[from] resflow::Error),
}
