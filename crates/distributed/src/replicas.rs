//! What a training command needs to run as one of several replicas, in one place: join the
//! cluster (or explain why not), pick the threads per rank, attach the trainer, let rank 0
//! alone write files and print, and end every rank when one fails.

use resflow::Trainer;

use crate::{Cluster, Error, Traffic};

/// One process of a training run: alone, or one rank of a cluster.
#[derive(Debug, Default)]
pub struct Replicas {
    cluster: Option<Cluster>,
}

impl Replicas {
    /// Alone when `distributed` is false; otherwise joins the processes `mpirun` started
    /// ([`Error::NotBuilt`] in a build without MPI, [`Error::NotLaunched`] or
    /// [`Error::NoMpirun`] outside a launcher).
    pub fn join(distributed: bool) -> Result<Self, Error> {
        Ok(Self {
            cluster: distributed.then(Cluster::join).transpose()?,
        })
    }

    /// The cluster, when distributed.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_ref()
    }

    /// `(rank, ranks)`: `(0, 1)` alone.
    pub fn rank(&self) -> (usize, usize) {
        self.cluster
            .as_ref()
            .map_or((0, 1), |c| (c.rank(), c.ranks()))
    }

    /// Whether this process writes the run's files (checkpoints, model, report) and prints
    /// its progress: rank 0, or the only process.
    pub fn writes(&self) -> bool {
        self.rank().0 == 0
    }

    /// Worker threads: `requested`, or the `cores` shared among the ranks on this machine.
    pub fn threads(&self, requested: Option<usize>, cores: usize) -> usize {
        requested
            .unwrap_or_else(|| match &self.cluster {
                Some(_) => crate::threads_per_rank(cores),
                None => cores,
            })
            .max(1)
    }

    /// Makes `trainer` a replica of the others (see [`Cluster::attach`]): with
    /// `shard_tables`, its embedding tables row-sharded over the ranks (a resumed trainer
    /// loads its rows from `checkpoint_dir`). Alone, only checks that `trainer` holds whole
    /// tables (not a checkpoint of sharded ones).
    pub fn attach(
        &self,
        trainer: &mut Trainer,
        data_rows: usize,
        shard_tables: bool,
        checkpoint_dir: Option<&std::path::Path>,
    ) -> Result<(), Error> {
        match &self.cluster {
            Some(c) => c.attach(trainer, data_rows, shard_tables, checkpoint_dir),
            None => trainer.check_tables_whole().map_err(Error::Train),
        }
    }

    /// Bytes and time of the collective calls so far (`None` alone).
    pub fn traffic(&self) -> Option<Traffic> {
        self.cluster.as_ref().map(Cluster::traffic)
    }

    /// `result`, unless it is an error on one rank of a cluster: then the error is printed
    /// with the rank, and every rank of the run ends (the others would wait for this one
    /// in their next collective call).
    pub fn or_abort<T, E: std::fmt::Display>(&self, result: Result<T, E>) -> Result<T, E> {
        match (&self.cluster, result) {
            (Some(c), Err(e)) => {
                eprintln!("error on rank {} of {}: {e}", c.rank(), c.ranks());
                c.abort(1)
            }
            (_, r) => r,
        }
    }
}
