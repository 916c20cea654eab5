//! The build without MPI: a [`Cluster`] that cannot be joined, so that callers compile the
//! same either way and `--distributed` explains how to get a build that has it.

use resflow::Trainer;

use crate::{Error, Traffic};

/// The processes started by one `mpirun` (this build has no MPI: [`Cluster::join`] fails).
#[derive(Debug)]
pub struct Cluster {
    never: std::convert::Infallible,
}

impl Cluster {
    /// Always [`Error::NotBuilt`] in this build.
    pub fn join() -> Result<Self, Error> {
        Err(Error::NotBuilt)
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        match self.never {}
    }

    /// Processes in all.
    pub fn ranks(&self) -> usize {
        match self.never {}
    }

    /// See the MPI build.
    pub fn attach(
        &self,
        _trainer: &mut Trainer,
        _data_rows: usize,
        _shard_tables: bool,
        _checkpoint_dir: Option<&std::path::Path>,
    ) -> Result<(), Error> {
        match self.never {}
    }

    /// See the MPI build.
    pub fn traffic(&self) -> Traffic {
        match self.never {}
    }

    /// See the MPI build.
    pub fn barrier(&self) {
        match self.never {}
    }

    /// See the MPI build.
    pub fn abort(&self, _code: i32) -> ! {
        match self.never {}
    }
}
