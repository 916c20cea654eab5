//! The hook over MPI: [`Cluster`] joins the processes `mpirun` started, [`MpiReduce`]
//! combines each training step across them (see the crate's documentation for the order of
//! every sum). Each collective call's buffers are kept between steps, so a warm step
//! allocates nothing here.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use mpi::Threading;
use mpi::collective::CommunicatorCollectives;
use mpi::datatype::{Partition, PartitionMut};
use mpi::environment::Universe;
use mpi::topology::{Communicator, SimpleCommunicator};

use std::path::Path;

use autodiff::{Grads, Table};
use resflow::Trainer;
use resflow::compact::CompactTables;
use resflow::reduce::{Reduce, owner};
use tensor::Matrix;

use crate::order::{chunk, fold_in_rank_order, pack_rows, unpack_rows};
use crate::sharded::Sharding;
use crate::{Error, Traffic};

fn too_large(what: &str, n: usize) -> resflow::Error {
    resflow::Error::Distributed(format!(
        "{what} of {n} elements is more than one MPI message carries (2^31 - 1)"
    ))
}

pub(crate) fn count(what: &str, n: usize) -> Result<i32, resflow::Error> {
    i32::try_from(n).map_err(|_| too_large(what, n))
}

/// The processes started by one `mpirun`, joined. MPI is finalised when the cluster and
/// every [`MpiReduce`] made from it are dropped.
pub struct Cluster {
    universe: Arc<Universe>,
    world: SimpleCommunicator,
    traffic: Arc<Counters>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("rank", &self.rank())
            .field("ranks", &self.ranks())
            .finish()
    }
}

impl Cluster {
    /// Joins the other processes: refuses a process no MPI launcher started, then
    /// initialises MPI (calls come from one thread at a time: the trainer's epoch thread).
    pub fn join() -> Result<Self, Error> {
        crate::launched_by_mpirun()?;
        let (universe, level) = mpi::initialize_with_threading(Threading::Serialized)
            .ok_or_else(|| Error::Setup("MPI was already initialised in this process".into()))?;
        if level < Threading::Serialized {
            return Err(Error::Setup(format!(
                "this MPI provides thread level {level:?}; training calls MPI from a worker \
                 thread and needs Serialized"
            )));
        }
        let world = universe.world();
        Ok(Self {
            universe: Arc::new(universe),
            world,
            traffic: Arc::default(),
        })
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    /// Processes in all.
    pub fn ranks(&self) -> usize {
        self.world.size() as usize
    }

    /// The training hook of this process (replicated tables).
    pub fn reduce(&self) -> MpiReduce {
        MpiReduce {
            sharding: None,
            _universe: Arc::clone(&self.universe),
            world: self.universe.world(),
            rank: self.rank(),
            ranks: self.ranks(),
            bufs: Buffers::default(),
            traffic: Arc::clone(&self.traffic),
        }
    }

    /// Bytes this process has sent in the collective calls of training, by kind (every
    /// hook made by this cluster counts).
    pub fn traffic(&self) -> Traffic {
        let c = &self.traffic;
        Traffic {
            dense: c.dense.load(Ordering::Relaxed),
            sparse: c.sparse.load(Ordering::Relaxed),
            lookups: c.lookups.load(Ordering::Relaxed),
            sync: c.sync.load(Ordering::Relaxed),
            other: c.other.load(Ordering::Relaxed),
            steps: c.steps.load(Ordering::Relaxed),
            seconds: c.nanos.load(Ordering::Relaxed) as f64 * 1e-9,
            wait_seconds: c.wait_nanos.load(Ordering::Relaxed) as f64 * 1e-9,
        }
    }

    /// An error unless every process gives the same `values` (named by `names`), so that
    /// a run whose processes disagree (threads, data, checkpoint) stops before its first
    /// step, on every rank with the same message.
    pub fn check_same(&self, names: &[&str], values: &[u64]) -> Result<(), Error> {
        let n = values.len();
        let mut all = vec![0u64; n * self.ranks()];
        self.world.all_gather_into(values, &mut all[..]);
        for (q, theirs) in all.chunks_exact(n.max(1)).enumerate().skip(1) {
            for ((name, &a), &b) in names.iter().zip(&all[..n]).zip(theirs) {
                if a != b {
                    return Err(Error::Setup(format!(
                        "the processes disagree on {name}: rank 0 has {a}, rank {q} has {b}; \
                         every rank needs the same options, data and checkpoint"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Makes `trainer` one of the cluster's replicas: checks that every process has the
    /// same threads, configuration, position and parameters, then installs the hook. With
    /// `shard_tables` the embedding tables are row-sharded; a trainer resumed from a
    /// checkpoint of sharded tables then loads its rows from `checkpoint_dir`.
    pub fn attach(
        &self,
        trainer: &mut Trainer,
        data_rows: usize,
        shard_tables: bool,
        checkpoint_dir: Option<&Path>,
    ) -> Result<(), Error> {
        let c = &trainer.network.config;
        let config = serde_json::to_string(c).unwrap_or_default();
        let names = [
            "threads",
            "training rows",
            "the configuration",
            "the step",
            "the epoch",
            "the batch in the epoch",
            "the parameters",
            "--shard-tables",
            "the ranks the checkpoint's tables are sharded over",
        ];
        let values = [
            trainer.threads() as u64,
            data_rows as u64,
            crc32fast::hash(config.as_bytes()) as u64,
            trainer.step,
            trainer.epoch as u64,
            trainer.batch_in_epoch,
            fingerprint(trainer) as u64,
            u64::from(shard_tables),
            trainer.table_shards as u64,
        ];
        self.check_same(&names, &values)?;
        if !shard_tables {
            trainer.set_reduce(Box::new(self.reduce()))?;
            return trainer.check_tables_whole().map_err(Error::Train);
        }
        let mut hook = self.reduce();
        hook.sharding = Some(Sharding::new(trainer.store.tables.len()));
        trainer.set_reduce(Box::new(hook))?;
        if trainer.awaits_table_shard() {
            let dir = checkpoint_dir.ok_or_else(|| {
                Error::Setup("resuming row-sharded tables needs --checkpoint-dir".into())
            })?;
            // Every rank reports its own problem (a missing file, another N); the
            // agreement stops all of them together.
            let loaded = trainer.load_table_shard(dir);
            let mut hook = self.reduce();
            let agreed = hook.agree(loaded.is_ok());
            loaded?;
            agreed?;
        }
        Ok(())
    }

    /// Waits for every process.
    pub fn barrier(&self) {
        self.world.barrier();
    }

    /// Ends every process of the run with `code` (after an error on this one: the others
    /// would otherwise wait for it in their next collective call).
    pub fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}

/// A checksum of every parameter and running statistic.
fn fingerprint(trainer: &Trainer) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for p in &trainer.store.dense {
        h.update(bytemuck::cast_slice(p.value.as_slice()));
    }
    for t in &trainer.store.tables {
        h.update(bytemuck::cast_slice(t.value.as_slice()));
    }
    for s in &trainer.network.stats {
        h.update(bytemuck::cast_slice(s));
    }
    h.finalize()
}

#[derive(Debug, Default)]
struct Counters {
    dense: AtomicU64,
    sparse: AtomicU64,
    lookups: AtomicU64,
    sync: AtomicU64,
    other: AtomicU64,
    steps: AtomicU64,
    nanos: AtomicU64,
    wait_nanos: AtomicU64,
}

/// Adds the time since it was made to the cluster's time in collective calls when dropped.
struct Timed<'a>(&'a AtomicU64, Instant);

impl Drop for Timed<'_> {
    fn drop(&mut self) {
        self.0
            .fetch_add(self.1.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
}

fn timed(c: &Counters) -> Timed<'_> {
    Timed(&c.nanos, Instant::now())
}

impl Counters {
    fn add(counter: &AtomicU64, bytes: usize) {
        counter.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

#[derive(Debug, Default)]
struct Buffers {
    flat: Vec<f32>,
    recv: Vec<f32>,
    counts: Vec<i32>,
    displs: Vec<i32>,
    rcounts: Vec<i32>,
    rdispls: Vec<i32>,
    ids: Vec<u32>,
    rows: Vec<f32>,
    all_ids: Vec<u32>,
    all_rows: Vec<f32>,
    table_counts: Vec<usize>,
    local_counts: Vec<i32>,
    all_counts: Vec<i32>,
    all_counts_usize: Vec<usize>,
    id_counts: Vec<i32>,
    id_displs: Vec<i32>,
    row_counts: Vec<i32>,
    row_displs: Vec<i32>,
    flags: Vec<i32>,
    f64s: Vec<f64>,
    f32s: Vec<f32>,
}

/// The training hook over MPI (see [`Reduce`]).
pub struct MpiReduce {
    /// Row-sharded tables: the exchanges' layout and buffers (`None`: replicated).
    sharding: Option<Sharding>,
    _universe: Arc<Universe>,
    world: SimpleCommunicator,
    rank: usize,
    ranks: usize,
    bufs: Buffers,
    traffic: Arc<Counters>,
}

impl std::fmt::Debug for MpiReduce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpiReduce")
            .field("rank", &self.rank)
            .field("ranks", &self.ranks)
            .finish()
    }
}

impl MpiReduce {
    /// Per-rank counts and displacements of `lens` elements each (the displacements
    /// their prefix sums), into `counts` and `displs`.
    fn layout(
        lens: impl Iterator<Item = usize>,
        counts: &mut Vec<i32>,
        displs: &mut Vec<i32>,
    ) -> Result<usize, resflow::Error> {
        counts.clear();
        displs.clear();
        let mut at = 0usize;
        for n in lens {
            counts.push(count("a buffer", n)?);
            displs.push(count("a buffer", at)?);
            at += n;
        }
        count("a buffer", at)?;
        Ok(at)
    }

    /// [`Reduce::gather`] for any element type: the lengths first, then the values, into
    /// `scratch`, which then trades places with `values` (both keep their memory).
    fn gather_any<T: mpi::datatype::Equivalence + Copy + Default>(
        &mut self,
        values: &mut Vec<T>,
        scratch: &mut Vec<T>,
    ) -> Result<(), resflow::Error> {
        if self.ranks == 1 {
            return Ok(());
        }
        let _t = timed(&self.traffic);
        let b = &mut self.bufs;
        let n = count("gathered values", values.len())?;
        b.flags.resize(self.ranks, 0);
        self.world.all_gather_into(&n, &mut b.flags[..]);
        let total = Self::layout(
            b.flags.iter().map(|&c| c as usize),
            &mut b.counts,
            &mut b.displs,
        )?;
        scratch.resize(total, T::default());
        {
            let mut all = PartitionMut::new(&mut scratch[..], &b.counts[..], &b.displs[..]);
            self.world.all_gather_varcount_into(&values[..], &mut all);
        }
        Counters::add(
            &self.traffic.other,
            (std::mem::size_of::<T>() * values.len() + 4) * (self.ranks - 1),
        );
        std::mem::swap(values, scratch);
        Ok(())
    }

    fn dense(&mut self, dense: &mut [Vec<f32>]) -> Result<(), resflow::Error> {
        let (r, b) = (self.ranks, &mut self.bufs);
        b.flat.clear();
        for g in dense.iter() {
            b.flat.extend_from_slice(g);
        }
        let n = b.flat.len();
        Self::layout(
            (0..r).map(|c| chunk(n, c, r).len()),
            &mut b.counts,
            &mut b.displs,
        )?;
        let m = chunk(n, self.rank, r).len();
        Self::layout((0..r).map(|_| m), &mut b.rcounts, &mut b.rdispls)?;
        b.recv.resize(r * m, 0.0);
        {
            let send = Partition::new(&b.flat[..], &b.counts[..], &b.displs[..]);
            let mut recv = PartitionMut::new(&mut b.recv[..], &b.rcounts[..], &b.rdispls[..]);
            self.world.all_to_all_varcount_into(&send, &mut recv);
        }
        fold_in_rank_order(&mut b.recv, r);
        {
            let mut all = PartitionMut::new(&mut b.flat[..], &b.counts[..], &b.displs[..]);
            self.world.all_gather_varcount_into(&b.recv[..m], &mut all);
        }
        let mut at = 0;
        for g in dense.iter_mut() {
            let len = g.len();
            g.copy_from_slice(&b.flat[at..at + len]);
            at += len;
        }
        // Sent: every chunk but our own, then our summed chunk to every other rank.
        Counters::add(&self.traffic.dense, 4 * ((n - m) + m * (r - 1)));
        Ok(())
    }

    fn sparse(&mut self, tables: &mut [autodiff::SparseRows]) -> Result<(), resflow::Error> {
        let (r, t, b) = (self.ranks, tables.len(), &mut self.bufs);
        if t == 0 {
            return Ok(());
        }
        pack_rows(tables, &mut b.ids, &mut b.rows, &mut b.table_counts);
        b.local_counts.clear();
        for &c in &b.table_counts {
            b.local_counts.push(count("a table's gradient rows", c)?);
        }
        b.all_counts.resize(r * t, 0);
        self.world
            .all_gather_into(&b.local_counts[..], &mut b.all_counts[..]);
        let dims: Vec<usize> = tables.iter().map(|s| s.dim).collect();
        let per_rank = |q: usize, width: &dyn Fn(usize) -> usize| -> usize {
            (0..t)
                .map(|k| b.all_counts[q * t + k] as usize * width(k))
                .sum()
        };
        let ids_total = Self::layout(
            (0..r).map(|q| per_rank(q, &|_| 1)),
            &mut b.id_counts,
            &mut b.id_displs,
        )?;
        let rows_total = Self::layout(
            (0..r).map(|q| per_rank(q, &|k| dims[k])),
            &mut b.row_counts,
            &mut b.row_displs,
        )?;
        b.all_ids.resize(ids_total, 0);
        b.all_rows.resize(rows_total, 0.0);
        {
            let mut all = PartitionMut::new(&mut b.all_ids[..], &b.id_counts[..], &b.id_displs[..]);
            self.world.all_gather_varcount_into(&b.ids[..], &mut all);
        }
        {
            let mut all =
                PartitionMut::new(&mut b.all_rows[..], &b.row_counts[..], &b.row_displs[..]);
            self.world.all_gather_varcount_into(&b.rows[..], &mut all);
        }
        b.all_counts_usize.clear();
        b.all_counts_usize
            .extend(b.all_counts.iter().map(|&c| c as usize));
        unpack_rows(&b.all_counts_usize, &b.all_ids, &b.all_rows, tables);
        Counters::add(
            &self.traffic.sparse,
            (4 * b.ids.len() + 4 * b.rows.len()) * (r - 1),
        );
        Counters::add(&self.traffic.other, 4 * t * (r - 1));
        Ok(())
    }
}

impl Reduce for MpiReduce {
    fn rank(&self) -> usize {
        self.rank
    }

    fn ranks(&self) -> usize {
        self.ranks
    }

    fn agree(&mut self, ok: bool) -> Result<(), resflow::Error> {
        let traffic = Arc::clone(&self.traffic);
        let _t = Timed(&traffic.wait_nanos, Instant::now());
        let b = &mut self.bufs;
        b.flags.resize(self.ranks, 0);
        self.world
            .all_gather_into(&i32::from(!ok), &mut b.flags[..]);
        Counters::add(&self.traffic.other, 4 * (self.ranks - 1));
        let failed: Vec<String> = (0..self.ranks)
            .filter(|&q| b.flags[q] != 0)
            .map(|q| q.to_string())
            .collect();
        if failed.is_empty() || !ok {
            return Ok(());
        }
        Err(resflow::Error::Distributed(format!(
            "rank {} of {} failed in this step (its own message says why); every rank stops",
            failed.join(", "),
            self.ranks
        )))
    }

    fn gradients(&mut self, grads: &mut Grads) -> Result<(), resflow::Error> {
        if self.ranks == 1 {
            return Ok(());
        }
        let traffic = Arc::clone(&self.traffic);
        let _t = timed(&traffic);
        traffic.steps.fetch_add(1, Ordering::Relaxed);
        self.dense(&mut grads.dense)?;
        match &mut self.sharding {
            Some(sh) => {
                let sent =
                    sh.route_gradients(&self.world, self.rank, self.ranks, &mut grads.sparse)?;
                Counters::add(&self.traffic.sparse, sent);
                Ok(())
            }
            None => self.sparse(&mut grads.sparse),
        }
    }

    fn shards_tables(&self) -> bool {
        self.sharding.is_some()
    }

    fn fetch_rows(
        &mut self,
        compact: &CompactTables,
        work: &mut [Table],
    ) -> Result<(), resflow::Error> {
        let Some(sh) = &mut self.sharding else {
            return Ok(());
        };
        let _t = timed(&self.traffic);
        let sent = sh.fetch(&self.world, self.rank, self.ranks, compact, work)?;
        Counters::add(&self.traffic.lookups, sent);
        Ok(())
    }

    fn fetch_eval_rows(
        &mut self,
        compact: &CompactTables,
        work: &mut [Table],
    ) -> Result<(), resflow::Error> {
        let Some(sh) = &mut self.sharding else {
            return Ok(());
        };
        let sent = sh.fetch(&self.world, self.rank, self.ranks, compact, work)?;
        Counters::add(&self.traffic.sync, sent);
        Ok(())
    }

    fn gather_tables(
        &mut self,
        compact: &CompactTables,
    ) -> Result<Option<Vec<Matrix>>, resflow::Error> {
        let Some(sh) = &mut self.sharding else {
            return Err(resflow::Error::Distributed(
                "gathering row-sharded tables needs the sharded hook".into(),
            ));
        };
        let (whole, sent) = sh.gather(&self.world, self.rank, self.ranks, compact)?;
        Counters::add(&self.traffic.sync, sent);
        Ok(whole)
    }

    fn owned_rows(&self, table: usize, table_rows: usize, rows: &mut Vec<u32>) {
        rows.clear();
        let sharded = self.sharding.is_some();
        rows.extend(
            (0..table_rows as u32)
                .filter(|&id| !sharded || owner(table, id, self.ranks) == self.rank),
        );
    }

    fn sum(&mut self, values: &mut [f64]) -> Result<(), resflow::Error> {
        let (r, n, b) = (self.ranks, values.len(), &mut self.bufs);
        if r == 1 || n == 0 {
            return Ok(());
        }
        let _t = timed(&self.traffic);
        b.f64s.resize(r * n, 0.0);
        self.world.all_gather_into(&values[..], &mut b.f64s[..]);
        for (j, v) in values.iter_mut().enumerate() {
            *v = b.f64s[j];
            for q in 1..r {
                *v += b.f64s[q * n + j];
            }
        }
        Counters::add(&self.traffic.other, 8 * n * (r - 1));
        Ok(())
    }

    fn gather(&mut self, values: &mut Vec<f64>) -> Result<(), resflow::Error> {
        let mut scratch = std::mem::take(&mut self.bufs.f64s);
        let r = self.gather_any(values, &mut scratch);
        self.bufs.f64s = scratch;
        r
    }

    fn gather_f32(&mut self, values: &mut Vec<f32>) -> Result<(), resflow::Error> {
        let mut scratch = std::mem::take(&mut self.bufs.f32s);
        let r = self.gather_any(values, &mut scratch);
        self.bufs.f32s = scratch;
        r
    }
}
