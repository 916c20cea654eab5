//! Synchronous data-parallel training.
//!
//! ```text
//! batch (1024 rows) --split--> worker 0 rows 0..512     worker 1 rows 512..1024     (rayon, one per thread)
//!                                tape: forward, loss/1024   tape: forward, loss/1024
//!                                backward -> grads 0         backward -> grads 1
//!                   reduce in a fixed order: grads 0 += grads 1   (dense add, sparse rows appended)
//!                   Adam on dense parameters, lazy Adam on the embedding rows seen
//! ```
//!
//! Each worker divides its loss by the whole batch size, so the summed gradient is the
//! gradient of the batch mean. The reduction order is fixed, so a run is reproducible bit
//! for bit for a given seed and thread count. The GEMMs inside a worker are single-threaded:
//! thread pools never nest. In `batch` BatchNorm mode each worker normalises with its own
//! slice's statistics (as separate devices would); the running averages are updated from the
//! exact combination of the slices' means and variances.
//!
//! Several processes can train one model ([`Trainer::set_reduce`], see [`crate::reduce`]):
//! each takes its share of every global batch, and a hook combines the processes' results
//! after the workers' own reduction, in rank order.

use std::sync::Arc;
use std::time::Instant;

use autodiff::{Adam, AdamConfig, Grads, LazyAdam, ParamId, ParamStore, Tape, Var};
use metrics::{EvalConfig, EvalReport, StreamingEvaluator};
use rayon::prelude::*;
use serde::Serialize;
use shards::{Batch, Dataset};
use tensor::Matrix;

use model::config::{BatchNormMode, ModelConfig};
use model::{InputLayout, Model, ModelError};

use crate::balancing::Balancer;
use crate::compact::CompactTables;
use crate::error::Error;
use crate::network::{Forward, Mode, Network, Scratch, layout_of};
use crate::reduce::{Local, Reduce};

/// What the loss balancing asks of a worker's step.
#[derive(Debug, Clone, Copy)]
struct Weighting<'a> {
    /// The task loss weights (`None`: the tasks' own `loss_weight`s).
    weights: Option<&'a [f32]>,
    /// GradNorm: the shared parameters `(gamma, beta)` whose per-task gradients are measured.
    shared: Option<(ParamId, ParamId)>,
}

/// One worker thread's reusable state.
#[derive(Debug, Default)]
struct Worker {
    tape: Tape,
    grads: Grads,
    scratch: Scratch,
    forward: Forward,
    /// Per-task loss of this worker's slice (already divided by the batch size).
    losses: Vec<f64>,
    /// Per BatchNorm layer: this slice's (mean, variance).
    stats: Vec<(Vec<f32>, Vec<f32>)>,
    rows: usize,
    /// `rows x tasks` probabilities (evaluation).
    probs: Vec<f32>,
    error: Option<Error>,
    /// Whether a training step ran on this worker (its buffers have their size).
    warm: bool,
    /// GradNorm: per task, `dL_t/d(gamma, beta)` of this slice (gamma's, then beta's).
    task_grads: Vec<Vec<f32>>,
    /// Seconds of this worker's last pass (forward and backward), for [`StepPhases`].
    busy: f64,
}

impl Worker {
    fn train(
        &mut self,
        net: &Network,
        store: &ParamStore,
        batch: &Batch,
        part: usize,
        parts: usize,
        weighting: Weighting<'_>,
    ) {
        let start = Instant::now();
        self.rows = 0;
        self.error = None;
        self.busy = 0.0;
        let Some(view) = batch.split(parts).nth(part) else {
            return;
        };
        self.rows = view.rows();
        let result = (|| -> Result<(), Error> {
            self.tape.reset();
            self.grads.zero();
            net.forward_weighted(
                &mut self.tape,
                store,
                &view,
                Mode::Train,
                batch.global_rows() as f32,
                true,
                weighting.weights,
                &mut self.scratch,
                &mut self.forward,
            )?;
            let loss = self.forward.loss.expect("the loss was requested");
            match (weighting.shared, weighting.weights) {
                (Some(shared), Some(weights)) => self.backward_per_task(loss, shared, weights)?,
                _ => self.tape.backward(loss, &mut self.grads)?,
            }
            if !self.warm {
                self.tape.reserve_headroom();
                self.grads.reserve_headroom();
            }
            self.losses.clear();
            self.losses.extend(
                self.forward
                    .task_losses
                    .iter()
                    .map(|&l| self.tape.value(l)[0] as f64),
            );
            self.stats
                .resize_with(self.forward.bn_outputs.len(), Default::default);
            for (s, &v) in self.stats.iter_mut().zip(&self.forward.bn_outputs) {
                if let Some((m, var)) = self.tape.batch_stats(v) {
                    s.0.clear();
                    s.0.extend_from_slice(m);
                    s.1.clear();
                    s.1.extend_from_slice(var);
                }
            }
            Ok(())
        })();
        self.error = result.err();
        self.busy = start.elapsed().as_secs_f64();
    }

    /// GradNorm's backward: the gradient of each task loss on the shared `(gamma, beta)`
    /// into `task_grads`, then the total's gradient into `grads` as usual. Each task takes
    /// one backward pass from its own loss, except the last: when the total is exactly
    /// `sum_t W_t L_t` (no extra loss of the head), its gradient on the shared parameters
    /// is the total's minus the others', divided by `W_T`. In ResFlow the last task's loss
    /// reaches every tower, so that pass would be the dearest.
    fn backward_per_task(
        &mut self,
        loss: Var,
        (gamma, beta): (ParamId, ParamId),
        weights: &[f32],
    ) -> Result<(), Error> {
        let tasks = self.forward.task_losses.len();
        self.task_grads.resize_with(tasks, Vec::new);
        let total = self.tape.value(loss)[0] as f64;
        let sum: f64 = self
            .forward
            .task_losses
            .iter()
            .zip(weights)
            .map(|(&l, &w)| w as f64 * self.tape.value(l)[0] as f64)
            .sum();
        let last = weights[tasks - 1];
        let by_difference = self.forward.aux_loss.is_none()
            && last > 0.0
            && (total - sum).abs() <= tensor::tolerance::APPROXIMATE as f64 * total.abs();
        let explicit = tasks - by_difference as usize;
        let copy = |grads: &Grads, out: &mut Vec<f32>| {
            out.clear();
            out.extend_from_slice(&grads.dense[gamma.index()]);
            out.extend_from_slice(&grads.dense[beta.index()]);
        };
        // Each task's pass computes only what reaches (gamma, beta): the towers' input
        // gradients, none of their weight gradients, nothing below the BatchNorm.
        for t in 0..explicit {
            self.grads.zero();
            self.tape
                .backward_to(self.forward.task_losses[t], &[gamma, beta], &mut self.grads)?;
            copy(&self.grads, &mut self.task_grads[t]);
        }
        self.grads.zero();
        self.tape.backward(loss, &mut self.grads)?;
        if by_difference {
            let (done, rest) = self.task_grads.split_at_mut(tasks - 1);
            let out = &mut rest[0];
            copy(&self.grads, out);
            for (g, &w) in done.iter().zip(weights) {
                tensor::ops::axpy(-w, g, out);
            }
            out.iter_mut().for_each(|x| *x /= last);
        }
        Ok(())
    }

    fn predict(
        &mut self,
        net: &Network,
        store: &ParamStore,
        batch: &Batch,
        part: usize,
        parts: usize,
    ) {
        self.rows = 0;
        self.error = None;
        self.probs.clear();
        let Some(view) = batch.split(parts).nth(part) else {
            return;
        };
        self.rows = view.rows();
        let result = (|| -> Result<(), Error> {
            self.tape.reset();
            net.forward(
                &mut self.tape,
                store,
                &view,
                Mode::Eval,
                1.0,
                false,
                &mut self.scratch,
                &mut self.forward,
            )?;
            let t = self.forward.logits.len();
            self.probs.resize(self.rows * t, 0.0);
            for (k, &z) in self.forward.logits.iter().enumerate() {
                let p = self.tape.sigmoid(z)?;
                for (r, &v) in self.tape.value(p).iter().enumerate() {
                    self.probs[r * t + k] = v;
                }
            }
            Ok(())
        })();
        self.error = result.err();
    }
}

/// Figures of one optimiser step.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StepStats {
    /// Rows in the batch.
    pub rows: usize,
    /// Mean loss per task over the batch.
    pub losses: Vec<f64>,
    /// The weight of each task loss in the step's total (the tasks' `loss_weight`s, or
    /// what the loss balancing made of them).
    pub loss_weights: Vec<f32>,
}

/// Where the wall-clock time of the training steps went, summed over the steps since the
/// trainer was made (or since [`Trainer::reset_phases`]). The phases run one after the
/// other, so their sum is the steps' time; `waits` shows the load imbalance of the
/// workers' passes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StepPhases {
    /// Steps counted.
    pub steps: u64,
    /// The workers' forward and backward passes, until the last worker is done.
    pub passes: f64,
    /// Per worker: the time it waited for the slowest worker at the end of the passes.
    pub waits: Vec<f64>,
    /// The part of `passes` outside the slowest worker's own pass: handing the workers
    /// their jobs (waking the pool's threads) and collecting them.
    pub launch: f64,
    /// The reduction of the workers' gradients (and the cross-process hook).
    pub reduce: f64,
    /// The optimiser step (dense Adam and the embedding tables' Adam).
    pub optimise: f64,
    /// The rest: per-task losses, loss balancing, BatchNorm running statistics.
    pub rest: f64,
}

/// The training throughput part of a report.
#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    /// Training samples per second (wall clock of the steps, evaluation excluded).
    pub samples_per_s: f64,
    /// Worker threads.
    pub threads: usize,
    /// Optimiser steps taken in this run.
    pub steps: u64,
    /// Seconds spent in training steps.
    pub seconds: f64,
}

/// Trains a ResFlow network.
pub struct Trainer {
    /// The network (parameter ids, running statistics).
    pub network: Network,
    /// The parameters.
    pub store: ParamStore,
    adam: Adam,
    lazy: LazyAdam,
    /// Optimiser steps taken since initialisation.
    pub step: u64,
    /// Completed epochs.
    pub epoch: usize,
    /// Batches already taken in the current epoch (for resuming).
    pub batch_in_epoch: u64,
    /// Resumed from a checkpoint whose embedding tables are row-sharded over this many
    /// processes (0: the checkpoint holds whole tables); each process then loads its rows.
    pub table_shards: usize,
    workers: Vec<Worker>,
    /// Shared so that a whole epoch can run inside it while the trainer is borrowed.
    pool: Arc<rayon::ThreadPool>,
    /// The loss balancing's learned values and their optimiser.
    balancer: Balancer,
    /// GradNorm: per task, the batch's `dL_t/d(gamma, beta)` (the workers' sum).
    task_grads: Vec<Vec<f32>>,
    /// The cross-process part of a step ([`Local`]: none).
    reduce: Box<dyn Reduce>,
    /// The workers' BatchNorm statistics, packed (then every process's, gathered).
    bn_packed: Vec<f64>,
    /// Row-sharded tables: the owned rows and the step's working ids (`store.tables` then
    /// holds the working tables). `None` otherwise.
    compact: Option<CompactTables>,
    /// The most bytes of embedding rows and their moments this trainer has held at once
    /// ([`Trainer::table_peak_bytes`]).
    table_peak: usize,
    /// Row-sharded tables resumed from a checkpoint: whether this process's rows are
    /// loaded ([`Trainer::load_table_shard`]).
    shard_loaded: bool,
    /// Where the steps' time went.
    phases: StepPhases,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("step", &self.step)
            .field("epoch", &self.epoch)
            .field("threads", &self.workers.len())
            .finish()
    }
}

impl Trainer {
    /// A freshly initialised model for data of `layout`, trained with `threads` workers.
    pub fn new(config: ModelConfig, layout: InputLayout, threads: usize) -> Result<Self, Error> {
        // The tables move into the store: a copy would double the model's memory at start.
        // They are written on as many threads as the workers (the same values whatever
        // the count: `Model::init_on_threads`).
        let model = Model::init_on_threads(config, layout, threads.max(1))?;
        let (network, store) = Network::from_owned_params(model)?;
        Self::with_network(network, store, threads, None)
    }

    /// A trainer starting from `params` (optimiser state fresh).
    pub fn from_params(params: &Model, threads: usize) -> Result<Self, Error> {
        let (network, store) = Network::from_params(params)?;
        Self::with_network(network, store, threads, None)
    }

    /// A freshly initialised model of which this process, rank `rank` of `ranks` sharing
    /// the embedding tables by rows, holds only the rows it owns (and lazy Adam's moments
    /// for them): the whole tables are never allocated. Each owned row gets the value
    /// [`Trainer::new`] gives it ([`model::TableInit`]), so the processes together hold
    /// exactly the single-process model. Train it with a [`Reduce`] that shards the tables
    /// over the same ranks ([`Trainer::set_reduce`]).
    pub fn new_sharded(
        config: ModelConfig,
        layout: InputLayout,
        threads: usize,
        (rank, ranks): (usize, usize),
    ) -> Result<Self, Error> {
        let (model, init) = Model::init_without_tables(config, layout, ranks)?;
        Self::sharded(model, Some(&init), threads, (rank, ranks))
    }

    /// A trainer of `model` (whose tables are empty) holding the owned rows of rank `rank`
    /// of `ranks`, drawn from `init`, or zero with `None` (a checkpoint overwrites them).
    pub(crate) fn sharded(
        model: Model,
        init: Option<&model::TableInit>,
        threads: usize,
        shard: (usize, usize),
    ) -> Result<Self, Error> {
        if shard.0 >= shard.1 {
            return Err(Error::Distributed(format!(
                "rank {} of {} processes",
                shard.0, shard.1
            )));
        }
        let dim = model.config.embedding_dim;
        let rows: Vec<usize> = model
            .layout
            .fields
            .iter()
            .map(|f| f.vocab as usize)
            .collect();
        let (network, store) = Network::from_partial_params(model)?;
        let tables: Vec<(String, usize)> = store
            .tables
            .iter()
            .zip(rows)
            .map(|(t, r)| (t.name.clone(), r))
            .collect();
        let fields = network.tables.iter().map(|t| t.index()).collect();
        let compact = CompactTables::draw(init, &tables, dim, fields, shard)?;
        Self::with_network(network, store, threads, Some(compact))
    }

    fn with_network(
        network: Network,
        mut store: ParamStore,
        threads: usize,
        mut compact: Option<CompactTables>,
    ) -> Result<Self, Error> {
        let o = network.config.optimizer;
        let adam_config = adam_config_of(&network.config);
        let threads = threads.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("resflow-worker-{i}"))
            .start_handler(|_| fault_in_stack())
            .build()
            .map_err(|e| {
                ModelError::Config(format!("cannot start {threads} worker threads: {e}"))
            })?;
        let workers = (0..threads)
            .map(|_| Worker {
                grads: Grads::zeros_like(&store),
                ..Worker::default()
            })
            .collect();
        // The math library's pages the loss reads are mapped now, not in a later step.
        autodiff::map_loss_math();
        // The moments are faulted in now, on the workers' threads (see `autodiff::optim`).
        // Row-sharded tables: lazy Adam's moments are the owned rows' only.
        let (adam, lazy) = pool.install(|| -> Result<_, Error> {
            let lazy = match &mut compact {
                Some(c) => {
                    let probe = ParamStore {
                        dense: Vec::new(),
                        tables: std::mem::take(&mut c.owned),
                    };
                    let lazy = LazyAdam::try_new(adam_config, &probe, o.sparse_embeddings);
                    c.owned = probe.tables;
                    lazy?
                }
                None => LazyAdam::try_new(adam_config, &store, o.sparse_embeddings)?,
            };
            Ok((Adam::try_new(adam_config, &store)?, lazy))
        })?;
        if compact.is_some() {
            // The working tables are filled by each step.
            store
                .tables
                .iter_mut()
                .for_each(|t| t.value = Matrix::zeros(0, t.value.cols()));
        }
        let balancer = Balancer::new(&network.config)?;
        if balancer.wants_task_gradients() && network.shared_params().is_none() {
            return Err(ModelError::Config(
                "GradNorm needs the input BatchNorm's parameters (batch_norm affine or batch)"
                    .into(),
            )
            .into());
        }
        Ok(Self {
            adam,
            lazy,
            balancer,
            task_grads: Vec::new(),
            network,
            store,
            step: 0,
            epoch: 0,
            batch_in_epoch: 0,
            table_shards: 0,
            workers,
            pool: Arc::new(pool),
            reduce: Box::new(Local),
            bn_packed: Vec::new(),
            compact,
            table_peak: 0,
            shard_loaded: false,
            phases: StepPhases {
                waits: vec![0.0; threads],
                ..StepPhases::default()
            },
        }
        .noting_table_bytes())
    }

    fn noting_table_bytes(mut self) -> Self {
        self.note_table_bytes();
        self
    }

    /// Raises the peak of [`Trainer::table_peak_bytes`] to what is held now.
    pub(crate) fn note_table_bytes(&mut self) {
        self.table_peak = self.table_peak.max(self.table_bytes().0);
    }

    /// The most bytes of embedding rows and their lazy Adam moments this trainer has held
    /// at once since it was made: counted after its construction, after it was attached to
    /// other processes, after a checkpoint was loaded, and after every step's and
    /// evaluation batch's working rows were prepared. Row-sharded from the start, about
    /// `1/N` of [`Trainer::table_bytes`]'s whole; made whole first, the whole. (Gathering
    /// the whole tables on rank 0 for the export, [`Trainer::export_gathered`], is not
    /// counted.)
    pub fn table_peak_bytes(&self) -> usize {
        self.table_peak
    }

    /// Trains as one of several processes: each takes its share of every global batch
    /// ([`shards::Share::of_rank`] with this trainer's threads), and `reduce` combines the
    /// steps and evaluations across processes. Every process must start from the same
    /// parameters and optimiser state (a fresh model of the same seed, or the same
    /// checkpoint) and have the same number of threads.
    ///
    /// GradNorm is refused across processes: its per-task shared gradients are summed
    /// over this process's workers only, so the processes' task weights would drift apart.
    pub fn set_reduce(&mut self, reduce: Box<dyn Reduce>) -> Result<(), Error> {
        if reduce.ranks() > 1 && self.balancer.wants_task_gradients() {
            return Err(Error::Distributed(
                "GradNorm loss balancing is not supported across processes; use \"fixed\" \
                 or \"uncertainty\" with --distributed"
                    .into(),
            ));
        }
        let ranks = (reduce.rank(), reduce.ranks());
        match &self.compact {
            Some(c) if !reduce.shards_tables() || c.rank() != ranks => {
                return Err(Error::Distributed(format!(
                    "this trainer holds rank {} of {}'s rows of row-sharded tables; it needs                      a hook that shards the tables over the same ranks (this one: rank {} of                      {}, {})",
                    c.rank().0,
                    c.rank().1,
                    ranks.0,
                    ranks.1,
                    if reduce.shards_tables() {
                        "sharded"
                    } else {
                        "replicated"
                    }
                )));
            }
            _ => {}
        }
        if reduce.shards_tables() && self.compact.is_none() {
            // A trainer made with whole tables (a replicated checkpoint resumed with
            // sharded tables): its tables are whole until here.
            // Keep only the owned rows, and lazy Adam's moments only for them. A fresh
            // optimiser's moments are zero: they go before the rows are copied, so that the
            // whole moments and the owned rows never coexist.
            let config = adam_config_of(&self.network.config);
            let sparse = self.network.config.optimizer.sparse_embeddings;
            let fresh = self.lazy.steps() == 0;
            if fresh {
                self.lazy = LazyAdam::try_new(config, &ParamStore::default(), sparse)?;
            }
            let fields = self.network.tables.iter().map(|t| t.index()).collect();
            let mut c = CompactTables::take(
                &mut self.store.tables,
                fields,
                (reduce.rank(), reduce.ranks()),
            )?;
            let (m, v) = if fresh {
                (Vec::new(), Vec::new())
            } else {
                let (m, v) = self.lazy.moments();
                (c.owned_part(m), c.owned_part(v))
            };
            let steps = self.lazy.steps();
            let probe = ParamStore {
                dense: Vec::new(),
                tables: std::mem::take(&mut c.owned),
            };
            // The whole moments go first: the two sizes never coexist.
            self.lazy = LazyAdam::try_new(config, &ParamStore::default(), sparse)?;
            let mut lazy = self
                .pool
                .install(|| LazyAdam::try_new(config, &probe, sparse))?;
            if !fresh {
                lazy.restore(m, v, steps);
            }
            self.lazy = lazy;
            c.owned = probe.tables;
            self.compact = Some(c);
        }
        self.reduce = reduce;
        self.note_table_bytes();
        Ok(())
    }

    /// Bytes this process holds for the embedding tables and their lazy Adam moments, and
    /// the bytes of the whole tables with their moments (equal unless the tables are
    /// row-sharded, where the first is about `1/N` of the second).
    pub fn table_bytes(&self) -> (usize, usize) {
        let (m, v) = self.lazy.moments();
        let moments: usize = m.iter().chain(v).map(Vec::len).sum();
        match &self.compact {
            // The owned rows, their moments, and the step's working rows.
            Some(c) => (
                Self::held_bytes(c, &self.lazy, &self.store),
                4 * 3 * c.full_floats(),
            ),
            None => {
                let t: usize = self
                    .store
                    .tables
                    .iter()
                    .map(|t| t.value.rows() * t.value.cols())
                    .sum();
                (4 * (t + moments), 4 * 3 * t)
            }
        }
    }

    /// [`Trainer::table_bytes`]'s first figure for row-sharded tables.
    fn held_bytes(c: &CompactTables, lazy: &LazyAdam, store: &ParamStore) -> usize {
        let (m, v) = lazy.moments();
        let moments: usize = m.iter().chain(v).map(Vec::len).sum();
        let work: usize = store
            .tables
            .iter()
            .map(|t| t.value.rows() * t.value.cols())
            .sum();
        4 * (c.owned_floats() + moments + work)
    }

    /// Whether this trainer was resumed from a checkpoint of row-sharded tables and its
    /// own rows are not loaded yet ([`Trainer::load_table_shard`]).
    pub fn awaits_table_shard(&self) -> bool {
        self.table_shards > 0 && !self.shard_loaded
    }

    pub(crate) fn mark_shard_loaded(&mut self) {
        self.shard_loaded = true;
    }

    /// Row-sharded tables stored compactly (checkpoints read them).
    pub(crate) fn compact_ref(&self) -> Option<&CompactTables> {
        self.compact.as_ref()
    }

    /// Row-sharded tables stored compactly (checkpoints write them).
    pub(crate) fn compact_mut(&mut self) -> Option<&mut CompactTables> {
        self.compact.as_mut()
    }

    /// This process's rank and the processes training the model (`(0, 1)` alone).
    pub fn rank(&self) -> (usize, usize) {
        (self.reduce.rank(), self.reduce.ranks())
    }

    /// The share of every global batch this process trains on.
    pub fn share(&self) -> shards::Share {
        let (rank, ranks) = self.rank();
        shards::Share::of_rank(rank, ranks, self.threads())
    }

    /// The current model, for the one process that writes it (rank 0, or the only one):
    /// [`Trainer::export`] there, `None` on the others. With row-sharded tables every
    /// process sends its rows to rank 0, which alone assembles the whole tables
    /// (collective: every process calls it).
    pub fn export_gathered(&mut self) -> Result<Option<Model>, Error> {
        let Some(c) = &self.compact else {
            return (self.rank().0 == 0).then(|| self.export()).transpose();
        };
        let Some(tables) = self.reduce.gather_tables(c)? else {
            return Ok(None);
        };
        // The working tables are small: the copy of them in `params` is dropped at once.
        let mut model = self.params();
        model.embeddings = tables;
        model.validate()?;
        Ok(Some(model))
    }

    /// Whether the embedding tables are row-sharded across processes.
    pub fn shards_tables(&self) -> bool {
        self.reduce.shards_tables()
    }

    /// The cross-process hook (checkpoints ask it which rows this process owns).
    pub(crate) fn reduce_mut(&mut self) -> &mut dyn Reduce {
        self.reduce.as_mut()
    }

    /// Worker threads.
    pub fn threads(&self) -> usize {
        self.workers.len()
    }

    /// The optimisers (for checkpoints).
    pub(crate) fn optimisers(&mut self) -> (&mut Adam, &mut LazyAdam) {
        (&mut self.adam, &mut self.lazy)
    }

    /// Reads the optimisers (for checkpoints).
    pub(crate) fn optimisers_ref(&self) -> (&Adam, &LazyAdam) {
        (&self.adam, &self.lazy)
    }

    /// The loss balancing: its learned values and the weights of the next step.
    pub fn balancer(&self) -> &Balancer {
        &self.balancer
    }

    /// The loss balancing, mutable (for checkpoints).
    pub(crate) fn balancer_mut(&mut self) -> &mut Balancer {
        &mut self.balancer
    }

    /// Where the steps' time went since the trainer was made or [`Trainer::reset_phases`].
    pub fn phases(&self) -> &StepPhases {
        &self.phases
    }

    /// Starts [`Trainer::phases`] again from zero.
    pub fn reset_phases(&mut self) {
        let waits = std::mem::take(&mut self.phases.waits);
        self.phases = StepPhases {
            waits,
            ..StepPhases::default()
        };
        self.phases.waits.iter_mut().for_each(|w| *w = 0.0);
    }

    /// One synchronous data-parallel step on `batch`.
    pub fn train_step(&mut self, batch: &Batch) -> Result<StepStats, Error> {
        let mut stats = StepStats::default();
        self.train_step_into(batch, &mut stats)?;
        Ok(stats)
    }

    /// [`Trainer::train_step`] writing its figures into `stats`, whose memory is reused:
    /// once warm (a few steps, and buffers as large as the largest batch seen), a step
    /// allocates nothing when it runs inside the trainer's pool, as the steps of
    /// [`Trainer::train_epoch`] and [`Trainer::on_pool`] do. (Entering the pool from
    /// another thread queues a job, and rayon's queue allocates a block every 63 jobs.)
    pub fn train_step_into(&mut self, batch: &Batch, stats: &mut StepStats) -> Result<(), Error> {
        if batch.global_rows() == 0 {
            return Err(ModelError::Request("an empty batch".into()).into());
        }
        let global_rows = batch.global_rows();
        // Row-sharded tables: the rows this share looks up, from their owners, into the
        // working tables; the batch then reads them through working indices.
        let batch = match &mut self.compact {
            Some(c) => {
                if !self.reduce.shards_tables() {
                    return Err(not_attached());
                }
                let ready = c.prepare(batch, &mut self.store.tables);
                let agreed = self.reduce.agree(ready.is_ok());
                ready?;
                agreed?;
                self.reduce.fetch_rows(c, &mut self.store.tables)?;
                let held = self
                    .table_peak
                    .max(Self::held_bytes(c, &self.lazy, &self.store));
                self.table_peak = held;
                &c.batch
            }
            None => batch,
        };
        let parts = self.workers.len();
        let (net, store, workers) = (&self.network, &self.store, &mut self.workers);
        let weighting = Weighting {
            weights: self.balancer.loss_weights(),
            shared: self
                .balancer
                .wants_task_gradients()
                .then(|| net.shared_params())
                .flatten(),
        };
        // par_iter splits with rayon::join, whose jobs live on the stack: no allocation.
        let start = Instant::now();
        self.pool.install(|| {
            workers
                .par_iter_mut()
                .enumerate()
                .for_each(|(k, w)| w.train(net, store, batch, k, parts, weighting))
        });
        let passes = start.elapsed().as_secs_f64();
        let slowest = self.workers.iter().map(|w| w.busy).fold(0.0, f64::max);
        self.phases.passes += passes;
        self.phases.launch += (passes - slowest).max(0.0);
        for (wait, w) in self.phases.waits.iter_mut().zip(&self.workers) {
            *wait += slowest - w.busy;
        }
        let reduce_start = Instant::now();
        let failed = self.workers.iter_mut().find_map(|w| w.error.take());
        let agreed = self.reduce.agree(failed.is_none());
        if let Some(e) = failed {
            return Err(e);
        }
        agreed?;
        // Reduce in worker order, into worker 0, then across processes.
        let (first, rest) = self.workers.split_first_mut().expect("at least one worker");
        if first.rows == 0 {
            // This process's share of the batch is empty (more parts than rows).
            first.grads.zero();
        }
        // In worker order, each dense buffer and each table's rows on one thread.
        let grads = &mut first.grads;
        self.pool
            .install(|| grads.add_all(rest.iter().filter(|w| w.rows > 0).map(|w| &w.grads)));
        if let Some(c) = &self.compact {
            c.to_global(&mut first.grads.sparse);
        }
        self.reduce.gradients(&mut first.grads)?;
        if let Some(c) = &self.compact {
            c.to_owned_index(&mut first.grads.sparse)?;
        }
        if !first.warm {
            // Worker 0's lists now hold every worker's rows.
            first.grads.reserve_headroom();
        }
        let optimise_start = Instant::now();
        self.phases.reduce += (optimise_start - reduce_start).as_secs_f64();
        // Dense parameters and embedding tables are disjoint: update both at once, on the
        // workers' pool.
        let (adam, lazy) = (&mut self.adam, &mut self.lazy);
        let ParamStore { dense, tables } = &mut self.store;
        let tables = match &mut self.compact {
            Some(c) => &mut c.owned,
            None => tables,
        };
        let Grads {
            dense: gd,
            sparse: gs,
        } = &mut first.grads;
        self.pool.install(|| {
            rayon::join(
                || adam.step_dense(dense, gd),
                || lazy.step_tables(tables, gs),
            )
        });
        let rest_start = Instant::now();
        self.phases.optimise += (rest_start - optimise_start).as_secs_f64();
        for w in self.workers.iter_mut().filter(|w| w.rows > 0) {
            w.warm = true;
        }
        let tasks = self.network.config.tasks.len();
        stats.rows = global_rows;
        stats.losses.clear();
        stats.losses.resize(tasks, 0.0);
        for w in self.workers.iter().filter(|w| w.rows > 0) {
            for (a, b) in stats.losses.iter_mut().zip(&w.losses) {
                *a += b;
            }
        }
        self.reduce.sum(&mut stats.losses)?;
        stats.loss_weights.clear();
        match self.balancer.loss_weights() {
            Some(w) => stats.loss_weights.extend_from_slice(w),
            None => stats
                .loss_weights
                .extend(self.network.config.tasks.iter().map(|t| t.loss_weight)),
        }
        if !self.balancer.kind().is_fixed() {
            self.update_balancing(&stats.losses);
        }
        if self.network.config.batch_norm == BatchNormMode::Batch {
            self.update_running_stats(global_rows)?;
        }
        self.step += 1;
        self.batch_in_epoch += 1;
        self.phases.rest += rest_start.elapsed().as_secs_f64();
        self.phases.steps += 1;
        Ok(())
    }

    /// Sums the workers' per-task shared gradients (GradNorm, in worker order) and steps the
    /// balancing's learned values.
    fn update_balancing(&mut self, losses: &[f64]) {
        if self.balancer.wants_task_gradients() {
            let tasks = losses.len();
            self.task_grads.resize_with(tasks, Vec::new);
            let mut workers = self.workers.iter().filter(|w| w.rows > 0);
            if let Some(first) = workers.next() {
                for (a, b) in self.task_grads.iter_mut().zip(&first.task_grads) {
                    a.clear();
                    a.extend_from_slice(b);
                }
            }
            for w in workers {
                for (a, b) in self.task_grads.iter_mut().zip(&w.task_grads) {
                    tensor::ops::axpy(1.0, b, a);
                }
            }
        }
        self.balancer.update(losses, &self.task_grads);
    }

    /// Runs `f` on one of the trainer's worker threads: steps taken inside it enter the
    /// pool without queueing a job (so they allocate nothing once warm).
    pub fn on_pool<R: Send>(&mut self, f: impl FnOnce(&mut Trainer) -> R + Send) -> R {
        let pool = Arc::clone(&self.pool);
        pool.install(|| f(self))
    }

    /// Running averages from the workers' slice statistics: the batch mean is the
    /// row-weighted mean of the slice means; the batch variance adds the spread of the slice
    /// means to the row-weighted slice variances. The statistics are packed per worker
    /// (`rows`, then each layer's means and variances) and gathered from every process, so
    /// that every worker of every process counts, in order.
    fn update_running_stats(&mut self, rows: usize) -> Result<(), Error> {
        let momentum = self.network.config.bn_momentum;
        let Some(layers) = self.workers.first().map(|w| &w.forward.bn_stats) else {
            return Ok(());
        };
        let stats = &mut self.network.stats;
        let width: usize = layers.iter().map(|&(m, _)| 2 * stats[m].len()).sum();
        let packed = &mut self.bn_packed;
        packed.clear();
        for w in self.workers.iter().filter(|w| w.rows > 0) {
            packed.push(w.rows as f64);
            for (mean, var) in &w.stats {
                packed.extend(mean.iter().chain(var).map(|&x| x as f64));
            }
            assert_eq!(packed.len() % (1 + width), 0, "one record per worker");
        }
        self.reduce.gather(packed)?;
        let records = packed.chunks_exact(1 + width);
        let mut at = 1;
        for &(m, v) in layers {
            let n = stats[m].len();
            for j in 0..n {
                let (mut mean, mut var) = (0.0f64, 0.0f64);
                for w in records.clone() {
                    mean += w[0] * w[at + j];
                }
                mean /= rows as f64;
                for w in records.clone() {
                    let d = w[at + j] - mean;
                    var += w[0] * (w[at + n + j] + d * d);
                }
                var /= rows as f64;
                stats[m][j] = momentum * stats[m][j] + (1.0 - momentum) * mean as f32;
                stats[v][j] = momentum * stats[v][j] + (1.0 - momentum) * var as f32;
            }
            at += 2 * n;
        }
        Ok(())
    }

    /// Trains one epoch (or what remains of it after a resume), calling `on_step` after
    /// every step with the trainer (to checkpoint or evaluate) and the step's figures.
    /// Returns the time spent in steps and the rows. The epoch runs on one of the
    /// trainer's worker threads ([`Trainer::on_pool`]), `on_step` included.
    pub fn train_epoch(
        &mut self,
        data: &Dataset,
        mut on_step: impl FnMut(&mut Trainer, &StepStats) -> Result<(), Error> + Send,
    ) -> Result<(f64, u64), Error> {
        self.on_pool(|t| t.train_epoch_here(data, &mut on_step))
    }

    fn train_epoch_here(
        &mut self,
        data: &Dataset,
        on_step: &mut (impl FnMut(&mut Trainer, &StepStats) -> Result<(), Error> + Send),
    ) -> Result<(f64, u64), Error> {
        self.network.check_layout(&layout_of(data.schema()))?;
        let seed = self
            .network
            .config
            .seed
            .wrapping_add(self.epoch as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let share = self.share();
        let batch_size = self.network.config.batch_size;
        if share.parts > data.rows().min(batch_size) {
            return Err(ModelError::Config(format!(
                "{} workers in all ({} processes x {} threads) need batches of at least as \
                 many rows; batch_size is {batch_size} and the dataset holds {} rows",
                share.parts,
                self.rank().1,
                self.threads(),
                data.rows()
            ))
            .into());
        }
        let mut batches = data.batches(batch_size, Some(seed)).with_share(share);
        let mut batch = data.new_batch();
        // Resuming: skip the batches this epoch already consumed (the order is a function
        // of the seed and the epoch, so they are the same batches).
        for _ in 0..self.batch_in_epoch {
            if !batches.next_into(&mut batch) {
                break;
            }
        }
        let (mut seconds, mut rows) = (0.0f64, 0u64);
        let mut stats = StepStats::default();
        let mut first = true;
        while batches.next_into(&mut batch) {
            let t = Instant::now();
            self.train_step_into(&batch, &mut stats)?;
            crate::divergence::check_step(
                self.step,
                &self.network.config.tasks,
                &stats.losses,
                &self.store,
            )?;
            seconds += t.elapsed().as_secs_f64();
            if std::mem::take(&mut first) {
                // Bags vary in length: room for batches with more ids than this one.
                for ids in &mut batch.bag_ids {
                    ids.reserve(ids.len());
                }
            }
            rows += stats.rows as u64;
            on_step(self, &stats)?;
        }
        self.epoch += 1;
        self.batch_in_epoch = 0;
        Ok((seconds, rows))
    }

    /// Probabilities (`rows x tasks`, storage order) of every row of `data`, with the
    /// evaluation forward pass (running BatchNorm statistics), and the batches' labels and
    /// group ids given to `sink`.
    pub fn predict(
        &mut self,
        data: &Dataset,
        mut sink: impl FnMut(&[f32], &Batch) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.network.check_layout(&layout_of(data.schema()))?;
        let mut batches = data.batches(8192, None);
        let mut batch = data.new_batch();
        let mut probs = Vec::new();
        // Every process reads whole batches and scores its share of them (worker views
        // extended to processes); the probabilities are gathered in rank order.
        let share = self.share();
        // Row-sharded tables: each process also gathers its share alone, and scores it
        // through working tables fetched from the rows' owners, as a training step does.
        let mut mine = self
            .compact
            .is_some()
            .then(|| (data.batches(8192, None).with_share(share), data.new_batch()));
        while batches.next_into(&mut batch) {
            let (b, first, parts) = match (&mut self.compact, &mut mine) {
                (Some(c), Some((shares, part))) => {
                    if !self.reduce.shards_tables() {
                        return Err(not_attached());
                    }
                    if !shares.next_into(part) {
                        return Err(Error::Distributed(
                            "a share of an evaluation batch is missing".into(),
                        ));
                    }
                    let ready = c.prepare(part, &mut self.store.tables);
                    let agreed = self.reduce.agree(ready.is_ok());
                    ready?;
                    agreed?;
                    self.reduce.fetch_eval_rows(c, &mut self.store.tables)?;
                    (&c.batch, 0, share.count)
                }
                _ => (&batch, share.first, share.parts),
            };
            let (net, store, workers) = (&self.network, &self.store, &mut self.workers);
            self.pool.install(|| {
                workers
                    .par_iter_mut()
                    .enumerate()
                    .for_each(|(k, w)| w.predict(net, store, b, first + k, parts))
            });
            if self.compact.is_some() {
                self.note_table_bytes();
            }
            let failed = self.workers.iter_mut().find_map(|w| w.error.take());
            let agreed = self.reduce.agree(failed.is_none());
            if let Some(e) = failed {
                return Err(e);
            }
            agreed?;
            probs.clear();
            for w in &self.workers {
                probs.extend_from_slice(&w.probs);
            }
            self.reduce.gather_f32(&mut probs)?;
            sink(&probs, &batch)?;
        }
        Ok(())
    }

    /// AUC, GAUC, log loss per task and Weighted Recall@K under both fusions on `data`.
    pub fn evaluate(&mut self, data: &Dataset, config: &EvalConfig) -> Result<EvalReport, Error> {
        let mut ev = StreamingEvaluator::new(config.clone())?;
        let mut feed = crate::EvalFeeder::new(data.schema(), config)?;
        self.predict(data, |probs, batch| feed.push(&mut ev, probs, batch))?;
        Ok(ev.report()?)
    }

    /// The evaluation configuration matching this model (task names, fusion weights).
    pub fn eval_config(&self) -> EvalConfig {
        let mut c = EvalConfig::new(self.network.layout.tasks.clone());
        c.fusion_weights = self.network.config.fusion_weights();
        c.fusion = self.network.config.fusion.kind;
        c
    }

    /// Trainable floats, embedding tables included, counted without copying the model:
    /// the dense part is counted on a probe with one-row tables.
    pub fn parameter_count(&self) -> Result<usize, Error> {
        let mut small = self.network.layout.clone();
        small.fields.iter_mut().for_each(|f| f.vocab = 1);
        let probe = Model::init(self.network.config.clone(), small)?;
        let tables: usize = match &self.compact {
            Some(c) => c.full_floats(),
            None => self
                .store
                .tables
                .iter()
                .map(|t| t.value.rows() * t.value.cols())
                .sum(),
        };
        Ok(probe.dense_parameter_count() + tables)
    }

    /// The current parameters.
    pub fn params(&self) -> Model {
        self.network.to_params(&self.store)
    }

    /// The current model, checked, for the model file and the scorer (the same tensors
    /// as [`Trainer::params`]; the scorer folds the BatchNorms when it compiles its plan).
    pub fn export(&self) -> Result<Model, Error> {
        let model = self.params();
        model.validate()?;
        Ok(model)
    }
}

/// How much of a worker thread's stack is faulted in when the thread starts.
const STACK_PREFAULT: usize = 256 << 10;

/// Writes the top [`STACK_PREFAULT`] bytes of the calling thread's stack, so that the
/// kernel maps those pages now. How deep a step's GEMM runs on a worker's stack depends on
/// where rayon runs the job from, so a later step can reach a page the first did not, and
/// fault there (`tests/train_no_alloc.rs` saw one, 16 KiB deep in the micro-kernel).
fn fault_in_stack() {
    let mut buf = [0u8; STACK_PREFAULT];
    std::hint::black_box(&mut buf);
}

/// A trainer holding some rows of row-sharded tables, used before it was attached to the
/// processes holding the others.
fn not_attached() -> Error {
    Error::Distributed(
        "this trainer holds only its rank's rows of row-sharded tables: attach it to the \
         other processes (Trainer::set_reduce with a hook that shards the tables) before \
         training or evaluating"
            .into(),
    )
}

/// The optimiser settings of `config`.
fn adam_config_of(config: &ModelConfig) -> AdamConfig {
    let o = config.optimizer;
    AdamConfig {
        lr: o.learning_rate,
        beta1: o.beta1,
        beta2: o.beta2,
        eps: o.epsilon,
    }
}
