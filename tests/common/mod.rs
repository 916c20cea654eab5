//! What the command-line tests share.

pub mod mpi;
