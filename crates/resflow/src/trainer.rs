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

use std::sync::Arc;
use std::time::Instant;

use autodiff::{Adam, AdamConfig, Grads, LazyAdam, ParamStore, Tape};
use metrics::{EvalConfig, EvalReport, StreamingEvaluator};
use rayon::prelude::*;
use serde::Serialize;
use shards::{Batch, Dataset};

use model::config::{BatchNormMode, ModelConfig};
use model::{InputLayout, Model, ModelError};

use crate::error::Error;
use crate::network::{Forward, Mode, Network, Scratch, layout_of};

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
}

impl Worker {
    fn train(
        &mut self,
        net: &Network,
        store: &ParamStore,
        batch: &Batch,
        part: usize,
        parts: usize,
    ) {
        self.rows = 0;
        self.error = None;
        let Some(view) = batch.split(parts).nth(part) else {
            return;
        };
        self.rows = view.rows();
        let result = (|| -> Result<(), Error> {
            self.tape.reset();
            self.grads.zero();
            net.forward(
                &mut self.tape,
                store,
                &view,
                Mode::Train,
                batch.rows as f32,
                true,
                &mut self.scratch,
                &mut self.forward,
            )?;
            let loss = self.forward.loss.expect("the loss was requested");
            self.tape.backward(loss, &mut self.grads)?;
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
    workers: Vec<Worker>,
    /// Shared so that a whole epoch can run inside it while the trainer is borrowed.
    pool: Arc<rayon::ThreadPool>,
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
        let (network, store) = Network::from_owned_params(Model::init(config, layout)?)?;
        Self::with_network(network, store, threads)
    }

    /// A trainer starting from `params` (optimiser state fresh).
    pub fn from_params(params: &Model, threads: usize) -> Result<Self, Error> {
        let (network, store) = Network::from_params(params)?;
        Self::with_network(network, store, threads)
    }

    fn with_network(network: Network, store: ParamStore, threads: usize) -> Result<Self, Error> {
        let o = network.config.optimizer;
        let adam_config = AdamConfig {
            lr: o.learning_rate,
            beta1: o.beta1,
            beta2: o.beta2,
            eps: o.epsilon,
        };
        let threads = threads.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("resflow-worker-{i}"))
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
        // The moments are faulted in now, on the workers' threads (see `autodiff::optim`).
        let (adam, lazy) = pool.install(|| -> Result<_, Error> {
            Ok((
                Adam::try_new(adam_config, &store)?,
                LazyAdam::try_new(adam_config, &store, o.sparse_embeddings)?,
            ))
        })?;
        Ok(Self {
            adam,
            lazy,
            network,
            store,
            step: 0,
            epoch: 0,
            batch_in_epoch: 0,
            workers,
            pool: Arc::new(pool),
        })
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
        if batch.rows == 0 {
            return Err(ModelError::Request("an empty batch".into()).into());
        }
        let parts = self.workers.len();
        let (net, store, workers) = (&self.network, &self.store, &mut self.workers);
        // par_iter splits with rayon::join, whose jobs live on the stack: no allocation.
        self.pool.install(|| {
            workers
                .par_iter_mut()
                .enumerate()
                .for_each(|(k, w)| w.train(net, store, batch, k, parts))
        });
        if let Some(e) = self.workers.iter_mut().find_map(|w| w.error.take()) {
            return Err(e);
        }
        // Reduce in worker order, into worker 0.
        let (first, rest) = self.workers.split_first_mut().expect("at least one worker");
        for w in rest.iter().filter(|w| w.rows > 0) {
            first.grads.add(&w.grads);
        }
        if !first.warm {
            // Worker 0's lists now hold every worker's rows.
            first.grads.reserve_headroom();
        }
        // Dense parameters and embedding tables are disjoint: update both at once, on the
        // workers' pool.
        let (adam, lazy) = (&mut self.adam, &mut self.lazy);
        let ParamStore { dense, tables } = &mut self.store;
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
        for w in self.workers.iter_mut().filter(|w| w.rows > 0) {
            w.warm = true;
        }
        let tasks = self.network.config.tasks.len();
        stats.rows = batch.rows;
        stats.losses.clear();
        stats.losses.resize(tasks, 0.0);
        for w in self.workers.iter().filter(|w| w.rows > 0) {
            for (a, b) in stats.losses.iter_mut().zip(&w.losses) {
                *a += b;
            }
        }
        if self.network.config.batch_norm == BatchNormMode::Batch {
            self.update_running_stats(batch.rows);
        }
        self.step += 1;
        self.batch_in_epoch += 1;
        Ok(())
    }

    /// Runs `f` on one of the trainer's worker threads: steps taken inside it enter the
    /// pool without queueing a job (so they allocate nothing once warm).
    pub fn on_pool<R: Send>(&mut self, f: impl FnOnce(&mut Trainer) -> R + Send) -> R {
        let pool = Arc::clone(&self.pool);
        pool.install(|| f(self))
    }

    /// Running averages from the workers' slice statistics: the batch mean is the
    /// row-weighted mean of the slice means; the batch variance adds the spread of the slice
    /// means to the row-weighted slice variances.
    fn update_running_stats(&mut self, rows: usize) {
        let momentum = self.network.config.bn_momentum;
        let workers = &self.workers;
        let Some(layers) = workers.first().map(|w| &w.forward.bn_stats) else {
            return;
        };
        for (k, &(m, v)) in layers.iter().enumerate() {
            for j in 0..self.network.stats[m].len() {
                let (mut mean, mut var) = (0.0f64, 0.0f64);
                for w in workers.iter().filter(|w| w.rows > 0) {
                    mean += w.rows as f64 * w.stats[k].0[j] as f64;
                }
                mean /= rows as f64;
                for w in workers.iter().filter(|w| w.rows > 0) {
                    let d = w.stats[k].0[j] as f64 - mean;
                    var += w.rows as f64 * (w.stats[k].1[j] as f64 + d * d);
                }
                var /= rows as f64;
                let stats = &mut self.network.stats;
                stats[m][j] = momentum * stats[m][j] + (1.0 - momentum) * mean as f32;
                stats[v][j] = momentum * stats[v][j] + (1.0 - momentum) * var as f32;
            }
        }
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
        let mut batches = data.batches(self.network.config.batch_size, Some(seed));
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
            crate::divergence::check_step(self, &stats)?;
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
        let parts = self.workers.len();
        while batches.next_into(&mut batch) {
            let (net, store, workers, b) = (&self.network, &self.store, &mut self.workers, &batch);
            self.pool.install(|| {
                workers
                    .par_iter_mut()
                    .enumerate()
                    .for_each(|(k, w)| w.predict(net, store, b, k, parts))
            });
            if let Some(e) = self.workers.iter_mut().find_map(|w| w.error.take()) {
                return Err(e);
            }
            probs.clear();
            for w in &self.workers {
                probs.extend_from_slice(&w.probs);
            }
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
        let tables: usize = self
            .store
            .tables
            .iter()
            .map(|t| t.value.rows() * t.value.cols())
            .sum();
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

    /// Runs `epochs` epochs (from where the trainer is), the training-time summary:
    /// [`crate::session::run_epochs`] without checkpoints or evaluations, `on_step` called
    /// after every step (an error stops the run).
    pub fn fit(
        &mut self,
        data: &Dataset,
        epochs: usize,
        on_step: impl FnMut(&Trainer, &StepStats) -> Result<(), Error> + Send,
    ) -> Result<TrainSummary, Error> {
        let schedule = crate::session::Schedule {
            epochs,
            ..Default::default()
        };
        let mut progress = crate::session::OnStep(on_step);
        crate::session::run_epochs(self, data, &schedule, "fit", &mut progress)
    }
}
