//! The trainable network: a [`Model`]'s tensors in an autodiff `ParamStore`, and the
//! autodiff tape as a [`Graph`], so that every model kind's forward pass (written once, in
//! `model::models`) records on the tape for one batch (or one worker's slice of a batch).
//!
//! ```text
//! ids, bags, dense (BatchView) --embedding / bag / input--> concat x
//! logits = Net::forward(tape graph, x)        BN_in, then the kind's head (model::models)
//! loss = sum_t lambda_t * BCE(z_t, y_t; pos_weight_t) / denom  (+ the head's extra loss,
//!        which reads x', the logits and the labels: models::LossInputs)
//!        (lambda_t: the tasks' loss weights, or the balancing's, see crate::balancing)
//! ```
//!
//! `denom` is the number of rows of the *whole* batch, so the gradients of the workers'
//! slices add up to the gradient of the batch mean.

use autodiff::{BceTarget, ParamId, ParamStore, TableId, Tape, Var};
use model::graph::op_error;
use model::layers::{BatchNorm, Linear, ParamRef, is_statistic};
use model::models::LossInputs;
use model::{Graph, Model, ModelError, Net, Node};
use shards::BatchView;
use tensor::Matrix;

use crate::config::{Activation, BatchNormMode, ModelConfig};
use crate::error::Error;
use crate::layout::{Field, InputLayout, Pooling};

/// Where a named tensor of the model lives during training.
#[derive(Debug, Clone, Copy)]
enum Slot {
    /// A trained parameter in the store.
    Param(ParamId),
    /// A running statistic: `Network::stats[i]`.
    Stat(usize),
}

/// The network: configuration, layout, the model's structure and where each tensor lives.
#[derive(Debug)]
pub struct Network {
    /// The configuration.
    pub config: ModelConfig,
    /// The inputs and tasks.
    pub layout: InputLayout,
    /// One embedding table per field.
    pub tables: Vec<TableId>,
    /// The input BatchNorm and the head.
    net: Net,
    /// The model's tensor names, in the model's order.
    names: Vec<String>,
    /// Where each of them lives.
    slots: Vec<Slot>,
    /// The BatchNorm running statistics (updated by the trainer in `batch` mode).
    pub stats: Vec<Vec<f32>>,
}

/// Training or inference behaviour of the BatchNorm layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Batch statistics in `batch` mode.
    Train,
    /// Running statistics.
    Eval,
}

/// What a forward pass recorded.
#[derive(Debug, Clone, Default)]
pub struct Forward {
    /// One `rows x 1` logit per task.
    pub logits: Vec<Var>,
    /// Per-task loss values (each already divided by `denom`, before `lambda`).
    pub task_losses: Vec<Var>,
    /// The total loss (`1 x 1`), when labels were given.
    pub loss: Option<Var>,
    /// The BatchNorm outputs, in the order the forward pass recorded them.
    pub bn_outputs: Vec<Var>,
    /// For each of them, its running mean and variance (indices into [`Network::stats`]).
    pub bn_stats: Vec<(usize, usize)>,
    /// The head's own extra loss (AITM's calibrator), already part of `loss`.
    pub aux_loss: Option<Var>,
}

/// Per-worker scratch of the forward pass (reused; no allocation after warm-up).
#[derive(Debug, Default)]
pub struct Scratch {
    ids: Vec<u32>,
    labels: Vec<f32>,
    parts: Vec<Var>,
    zeros: Vec<f32>,
    ones: Vec<f32>,
    /// The tape variable of each graph node.
    vars: Vec<Var>,
    /// Lists of nodes the heads borrow.
    lists: Vec<Vec<Node>>,
    logits: Vec<Node>,
    /// Tape variables of a list of nodes (mix, concat).
    tmp: Vec<Var>,
    /// Values of the stop-gradient nodes, for gradient checks.
    pub(crate) frozen: Frozen,
}

/// What the stop-gradient nodes of a forward pass do. A finite-difference check must see
/// their values as constants, as the analytic gradient does: it records them at the base
/// point and replays them at the perturbed ones.
#[derive(Debug, Default)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) enum Frozen {
    /// The value of the node's input (training).
    #[default]
    Off,
    /// As `Off`, and every value appended here.
    Record(Vec<f32>),
    /// The recorded values, in order, from the given position.
    Replay(Vec<f32>, usize),
}

/// The input layout of a dataset: its single-valued fields, then its bags, then its dense
/// features, and its tasks.
pub fn layout_of(schema: &shards::Schema) -> InputLayout {
    let single = schema.single.iter().map(|f| Field {
        name: f.name.clone(),
        vocab: f.vocab,
        bag: None,
    });
    let multi = schema.multi.iter().map(|f| Field {
        name: f.name.clone(),
        vocab: f.vocab,
        bag: Some(f.pooling),
    });
    InputLayout {
        fields: single.chain(multi).collect(),
        dense: schema.dense.count,
        tasks: schema.tasks.clone(),
    }
}

impl Network {
    /// Puts `model` into a new store (trained tensors as parameters, running statistics
    /// beside them) and records where each tensor went.
    pub fn from_params(model: &Model) -> Result<(Self, ParamStore), Error> {
        let net = model.net()?;
        Self::with_tables(model, net, model.embeddings.iter().cloned())
    }

    /// [`Network::from_params`] that moves the embedding tables into the store instead of
    /// copying them (they are most of a model's memory).
    pub fn from_owned_params(mut model: Model) -> Result<(Self, ParamStore), Error> {
        // Validated while the tables are still in place.
        let net = model.net()?;
        let tables = std::mem::take(&mut model.embeddings);
        Self::with_tables(&model, net, tables.into_iter())
    }

    /// [`Network::from_owned_params`] for a model whose tables hold only some rows (or
    /// none: [`Model::init_without_tables`]), as a process of row-sharded training keeps
    /// them; their row counts are not checked against the layout.
    pub fn from_partial_params(mut model: Model) -> Result<(Self, ParamStore), Error> {
        let net = model.dense_net()?;
        let tables = std::mem::take(&mut model.embeddings);
        Self::with_tables(&model, net, tables.into_iter())
    }

    /// The network of `model` (already validated into `net`) with these tables.
    fn with_tables(
        model: &Model,
        net: Net,
        embeddings: impl Iterator<Item = Matrix>,
    ) -> Result<(Self, ParamStore), Error> {
        let mut store = ParamStore::new();
        let tables = model
            .layout
            .fields
            .iter()
            .zip(embeddings)
            .map(|(f, t)| store.add_table(format!("embedding/{}", f.name), t))
            .collect();
        let (mut names, mut slots, mut stats) = (Vec::new(), Vec::new(), Vec::new());
        for (name, m) in &model.tensors {
            names.push(name.clone());
            slots.push(if is_statistic(name) {
                stats.push(m.to_vec());
                Slot::Stat(stats.len() - 1)
            } else {
                Slot::Param(store.add(name.clone(), m.clone()))
            });
        }
        Ok((
            Network {
                config: model.config.clone(),
                layout: model.layout.clone(),
                tables,
                net,
                names,
                slots,
                stats,
            },
            store,
        ))
    }

    /// Reads the parameters (and the running statistics) back out of the store.
    pub fn to_params(&self, store: &ParamStore) -> Model {
        let tensors = self
            .names
            .iter()
            .zip(&self.slots)
            .map(|(name, slot)| {
                let m = match *slot {
                    Slot::Param(id) => store.get(id).clone(),
                    Slot::Stat(i) => Matrix::from_slice(1, self.stats[i].len(), &self.stats[i])
                        .expect("a row of its own length"),
                };
                (name.clone(), m)
            })
            .collect();
        Model {
            config: self.config.clone(),
            layout: self.layout.clone(),
            embeddings: self
                .tables
                .iter()
                .map(|&t| store.table(t).clone())
                .collect(),
            tensors,
        }
    }

    /// The input BatchNorm's `(gamma, beta)` in the store: the last parameters every task
    /// shares in every model kind (GradNorm measures the task gradients on them); `None`
    /// when the BatchNorms are off (`batch_norm: "none"`).
    pub fn shared_params(&self) -> Option<(ParamId, ParamId)> {
        if self.config.batch_norm == BatchNormMode::None {
            return None;
        }
        let bn = &self.net.input_bn;
        match (self.slots[bn.gamma.0], self.slots[bn.beta.0]) {
            (Slot::Param(g), Slot::Param(b)) => Some((g, b)),
            _ => None,
        }
    }

    /// The name of running statistic `i` (for checkpoints).
    pub fn stat_name(&self, i: usize) -> &str {
        let k = self
            .slots
            .iter()
            .position(|s| matches!(s, Slot::Stat(j) if *j == i))
            .expect("a statistic of this network");
        &self.names[k]
    }

    /// Checks that a dataset's layout is the one this network was built for.
    pub fn check_layout(&self, layout: &InputLayout) -> Result<(), Error> {
        let bad = |d: String| Err(Error::Model(ModelError::Layout(d)));
        if layout.tasks != self.layout.tasks {
            return bad(format!(
                "the data's tasks {:?} differ from the model's {:?}",
                layout.tasks, self.layout.tasks
            ));
        }
        if layout.dense != self.layout.dense || layout.fields.len() != self.layout.fields.len() {
            return bad(format!(
                "the data has {} fields and {} dense features, the model {} and {}",
                layout.fields.len(),
                layout.dense,
                self.layout.fields.len(),
                self.layout.dense
            ));
        }
        for (a, b) in layout.fields.iter().zip(&self.layout.fields) {
            if a.name != b.name || a.bag.is_some() != b.bag.is_some() || a.vocab > b.vocab {
                return bad(format!(
                    "field {:?} (vocab {}) does not fit the model's field {:?} (vocab {})",
                    a.name, a.vocab, b.name, b.vocab
                ));
            }
        }
        Ok(())
    }

    /// Records the forward pass (and the loss, when `with_loss`) of `view` on `tape`, into
    /// `out` (cleared first; its lists keep their memory).
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        tape: &mut Tape,
        store: &ParamStore,
        view: &BatchView<'_>,
        mode: Mode,
        denom: f32,
        with_loss: bool,
        scratch: &mut Scratch,
        out: &mut Forward,
    ) -> Result<(), Error> {
        self.forward_weighted(
            tape, store, view, mode, denom, with_loss, None, scratch, out,
        )
    }

    /// [`Network::forward`] with the task losses weighted by `loss_weights` (one per task,
    /// from [`crate::balancing::Balancer::loss_weights`]) instead of the tasks'
    /// `loss_weight`s; `None` is exactly [`Network::forward`].
    #[allow(clippy::too_many_arguments)]
    pub fn forward_weighted(
        &self,
        tape: &mut Tape,
        store: &ParamStore,
        view: &BatchView<'_>,
        mode: Mode,
        denom: f32,
        with_loss: bool,
        loss_weights: Option<&[f32]>,
        scratch: &mut Scratch,
        out: &mut Forward,
    ) -> Result<(), Error> {
        if let Some(w) = loss_weights.filter(|w| w.len() != self.config.tasks.len()) {
            return Err(ModelError::Config(format!(
                "{} loss weights for {} tasks",
                w.len(),
                self.config.tasks.len()
            ))
            .into());
        }
        let n = view.rows();
        let fields = &self.layout.fields;
        let ns = fields.iter().filter(|f| f.bag.is_none()).count();
        let nb = fields.len() - ns;
        let single = view.single();
        scratch.parts.clear();
        for k in 0..ns {
            scratch.ids.clear();
            scratch.ids.extend((0..n).map(|r| single[r * ns + k]));
            let e = tape.embedding(store, self.tables[k], &scratch.ids)?;
            scratch.parts.push(e);
        }
        for k in 0..nb {
            let (offsets, ids) = view.bag(k);
            let pooling = fields[ns + k].bag.unwrap_or(Pooling::Sum);
            let e = tape.embedding_bag(store, self.tables[ns + k], offsets, ids, pooling)?;
            scratch.parts.push(e);
        }
        if self.layout.dense > 0 {
            let d = tape.input(n, self.layout.dense, view.dense())?;
            scratch.parts.push(d);
        }
        let parts = std::mem::take(&mut scratch.parts);
        let x = tape.concat(&parts);
        scratch.parts = parts;
        let targets = HeadTargets {
            denom,
            labels: view.labels(),
        };
        self.forward_input(
            tape,
            store,
            x?,
            mode,
            with_loss.then_some(targets),
            scratch,
            out,
        )?;
        if with_loss {
            let mut total: Option<Var> = None;
            for (t, task) in self.config.tasks.iter().enumerate() {
                let l = match self.regression_loss(tape, view, t, out.logits[t], denom, scratch)? {
                    Some(l) => l,
                    None => self.task_loss(tape, view, t, out.logits[t], denom, scratch)?,
                };
                out.task_losses.push(l);
                let lambda = loss_weights.map_or(task.loss_weight, |w| w[t]);
                let weighted = tape.scale(l, lambda)?;
                total = Some(match total {
                    None => weighted,
                    Some(s) => tape.add(s, weighted)?,
                });
            }
            if let (Some(t), Some(aux)) = (total, out.aux_loss) {
                total = Some(tape.add(t, aux)?);
            }
            out.loss = total;
        }
        Ok(())
    }

    /// Task `t`'s weighted cross-entropy against its own label column.
    #[allow(clippy::too_many_arguments)]
    fn task_loss(
        &self,
        tape: &mut Tape,
        view: &BatchView<'_>,
        t: usize,
        z: Var,
        denom: f32,
        scratch: &mut Scratch,
    ) -> Result<Var, Error> {
        view.task_labels(t, &mut scratch.labels);
        self.bce(tape, view, t, z, &scratch.labels, denom)
    }

    /// Head `t`'s weighted cross-entropy of the logits `z` against `labels` (its
    /// `pos_weight`, the rows' weights when the data has them, divided by `denom`).
    fn bce(
        &self,
        tape: &mut Tape,
        view: &BatchView<'_>,
        t: usize,
        z: Var,
        labels: &[f32],
        denom: f32,
    ) -> Result<Var, Error> {
        let target = BceTarget {
            labels,
            weights: (!view.weight().is_empty()).then(|| view.weight()),
            pos_weight: self.config.tasks[t].pos_weight,
            denom: Some(denom),
        };
        Ok(tape.bce_with_logits(z, target)?)
    }

    /// A regression model's loss of head `t` (`None` for other models): the
    /// cross-entropy on `1[y > t_i]` (chained thresholds), or the squared error
    /// `sum w ((y - mean) / std - z)^2 / denom` (direct form), from the target column.
    #[allow(clippy::too_many_arguments)]
    fn regression_loss(
        &self,
        tape: &mut Tape,
        view: &BatchView<'_>,
        t: usize,
        z: Var,
        denom: f32,
        scratch: &mut Scratch,
    ) -> Result<Option<Var>, Error> {
        use crate::regression::RegressionForm;
        let Some(r) = &self.config.regression else {
            return Ok(None);
        };
        let column = self
            .layout
            .tasks
            .iter()
            .position(|c| c == &r.target)
            .ok_or_else(|| {
                Error::Model(ModelError::Layout(format!(
                    "the regression target {:?} is not a column of the data",
                    r.target
                )))
            })?;
        view.task_labels(column, &mut scratch.labels);
        match r.form {
            RegressionForm::Thresholds => {
                let threshold = r.thresholds[t];
                scratch
                    .labels
                    .iter_mut()
                    .for_each(|y| *y = (*y > threshold) as u8 as f32);
                Ok(Some(self.bce(tape, view, t, z, &scratch.labels, denom)?))
            }
            RegressionForm::Direct => {
                let (mean, std) = (r.mean.unwrap_or(0.0), r.std.unwrap_or(1.0));
                // -(y - mean) / std, so that z + it is the residual.
                scratch
                    .labels
                    .iter_mut()
                    .for_each(|y| *y = -((*y - mean) / std));
                let rows = scratch.labels.len();
                let neg = tape.input(rows, 1, &scratch.labels)?;
                let d = tape.add(z, neg)?;
                let mut sq = tape.mul(d, d)?;
                if !view.weight().is_empty() {
                    let w = tape.input(rows, 1, view.weight())?;
                    sq = tape.mul(sq, w)?;
                }
                let s = tape.sum(sq)?;
                Ok(Some(tape.scale(s, 1.0 / denom)?))
            }
        }
    }

    /// Records everything after the embeddings (the input BatchNorm, then the head) on
    /// `tape` for the concatenated input `x`, into `out` (cleared first). `targets` is
    /// given when a loss will be recorded (for the head's own extra loss).
    #[allow(clippy::too_many_arguments)]
    pub fn forward_input(
        &self,
        tape: &mut Tape,
        store: &ParamStore,
        x: Var,
        mode: Mode,
        targets: Option<HeadTargets<'_>>,
        scratch: &mut Scratch,
        out: &mut Forward,
    ) -> Result<(), Error> {
        out.logits.clear();
        out.task_losses.clear();
        out.loss = None;
        out.aux_loss = None;
        out.bn_outputs.clear();
        out.bn_stats.clear();
        scratch.vars.clear();
        scratch.vars.push(x);
        let mut logits = std::mem::take(&mut scratch.logits);
        let mut g = TapeGraph {
            net: self,
            tape,
            store,
            mode,
            zeros: &mut scratch.zeros,
            ones: &mut scratch.ones,
            vars: &mut scratch.vars,
            lists: &mut scratch.lists,
            tmp: &mut scratch.tmp,
            frozen: &mut scratch.frozen,
            out,
        };
        let mut aux = g.list();
        let result = self.record_head(&mut g, targets, &mut logits, &mut aux);
        g.recycle(aux);
        let aux = match result {
            Ok(aux) => aux,
            Err(e) => {
                scratch.logits = logits;
                return Err(e.into());
            }
        };
        out.aux_loss = aux.map(|a| scratch.vars[a.index()]);
        out.logits
            .extend(logits.iter().map(|z| scratch.vars[z.index()]));
        scratch.logits = logits;
        Ok(())
    }
}

impl Network {
    /// The input BatchNorm and the head on `g` (logits and the nodes the head sets aside
    /// into `aux`), then the head's own loss when `targets` are given: its node, if any.
    fn record_head(
        &self,
        g: &mut TapeGraph<'_>,
        targets: Option<HeadTargets<'_>>,
        logits: &mut Vec<Node>,
        aux: &mut Vec<Node>,
    ) -> Result<Option<Node>, ModelError> {
        let x = self.net.forward_train(g, Node(0), logits, aux)?;
        let weight = self.net.head.extra_loss_weight();
        let Some(t) = targets.filter(|_| weight > 0.0) else {
            return Ok(None);
        };
        let labels = g.labels(t.labels, logits.len())?;
        let inputs = LossInputs {
            x,
            logits,
            aux,
            labels: &labels,
            scale: weight / t.denom,
        };
        let loss = self.net.head.extra_loss(g, &inputs);
        g.recycle(labels);
        loss
    }
}

/// What the head's own loss reads of a batch (see [`Network::forward_input`]).
#[derive(Debug, Clone, Copy)]
pub struct HeadTargets<'a> {
    /// The rows of the whole batch (the loss is divided by it).
    pub denom: f32,
    /// `rows x tasks` labels, row-major (as [`BatchView::labels`]).
    pub labels: &'a [f32],
}

/// The autodiff tape as a [`Graph`].
struct TapeGraph<'a> {
    net: &'a Network,
    tape: &'a mut Tape,
    store: &'a ParamStore,
    mode: Mode,
    zeros: &'a mut Vec<f32>,
    ones: &'a mut Vec<f32>,
    vars: &'a mut Vec<Var>,
    lists: &'a mut Vec<Vec<Node>>,
    tmp: &'a mut Vec<Var>,
    frozen: &'a mut Frozen,
    out: &'a mut Forward,
}

/// An autodiff error inside a head: the head does not fit the tape (a bug).
fn tape_err(op: &'static str) -> impl FnOnce(autodiff::AutodiffError) -> ModelError {
    move |e| op_error(op, e.to_string())
}

impl TapeGraph<'_> {
    fn var(&self, x: Node) -> Var {
        self.vars[x.index()]
    }

    fn node(&mut self, v: Var) -> Node {
        self.vars.push(v);
        Node(self.vars.len() as u32 - 1)
    }

    fn param(&mut self, p: ParamRef) -> Var {
        match self.net.slots[p.0] {
            Slot::Param(id) => self.tape.param(self.store, id),
            Slot::Stat(_) => unreachable!("a running statistic used as a parameter"),
        }
    }

    /// One `N x 1` node per task from `rows x tasks` labels (a list to recycle).
    fn labels(&mut self, labels: &[f32], tasks: usize) -> Result<Vec<Node>, ModelError> {
        let rows = labels.len() / tasks.max(1);
        let all = self
            .tape
            .input(rows, tasks, labels)
            .map_err(tape_err("labels"))?;
        let mut nodes = self.list();
        for t in 0..tasks {
            let v = self.tape.split(all, t, 1).map_err(tape_err("labels"))?;
            nodes.push(self.node(v));
        }
        Ok(nodes)
    }

    fn stat(&self, p: ParamRef) -> usize {
        match self.net.slots[p.0] {
            Slot::Stat(i) => i,
            Slot::Param(_) => unreachable!("a parameter used as a running statistic"),
        }
    }
}

impl Graph for TapeGraph<'_> {
    fn linear(&mut self, x: Node, l: &Linear) -> Result<Node, ModelError> {
        let w = self.param(l.weight);
        let b = l.bias.map(|b| self.param(b));
        let v = self
            .tape
            .linear(self.var(x), w, b)
            .map_err(tape_err("linear"))?;
        Ok(self.node(v))
    }

    fn activation(&mut self, x: Node, slope: ParamRef) -> Result<Node, ModelError> {
        let v = match self.net.config.activation {
            Activation::Prelu => {
                let s = self.param(slope);
                self.tape.prelu(self.var(x), s).map_err(tape_err("prelu"))?
            }
            Activation::Relu => self.tape.relu(self.var(x)).map_err(tape_err("relu"))?,
        };
        Ok(self.node(v))
    }

    fn batch_norm(&mut self, x: Node, bn: &BatchNorm) -> Result<Node, ModelError> {
        use autodiff::BatchNormMode as Bn;
        let config = &self.net.config;
        if config.batch_norm == BatchNormMode::None {
            return Ok(x);
        }
        let eps = config.bn_epsilon;
        let (mean, var) = (self.stat(bn.mean), self.stat(bn.var));
        let c = self.net.stats[mean].len();
        self.zeros.resize(c, 0.0);
        self.ones.resize(c, 1.0);
        let (g, b) = (self.param(bn.gamma), self.param(bn.beta));
        let mode = match (config.batch_norm, self.mode) {
            (BatchNormMode::Batch, Mode::Train) => Bn::Train { eps },
            (BatchNormMode::Batch, Mode::Eval) => Bn::Eval {
                mean: &self.net.stats[mean],
                var: &self.net.stats[var],
                eps,
            },
            // The authors' frozen form: statistics fixed at 0 and 1.
            _ => Bn::Eval {
                mean: &self.zeros[..c],
                var: &self.ones[..c],
                eps,
            },
        };
        let y = self
            .tape
            .batch_norm(self.vars[x.index()], g, b, mode)
            .map_err(tape_err("batch_norm"))?;
        self.out.bn_outputs.push(y);
        self.out.bn_stats.push((mean, var));
        Ok(self.node(y))
    }

    fn add(&mut self, a: Node, b: Node) -> Result<Node, ModelError> {
        let v = self
            .tape
            .add(self.var(a), self.var(b))
            .map_err(tape_err("add"))?;
        Ok(self.node(v))
    }

    fn scale(&mut self, x: Node, c: f32) -> Result<Node, ModelError> {
        let v = self.tape.scale(self.var(x), c).map_err(tape_err("scale"))?;
        Ok(self.node(v))
    }

    fn min_zero(&mut self, x: Node) -> Result<Node, ModelError> {
        // min(x, 0) = -relu(-x)
        let neg = self
            .tape
            .scale(self.var(x), -1.0)
            .map_err(tape_err("min_zero"))?;
        let r = self.tape.relu(neg).map_err(tape_err("min_zero"))?;
        let v = self.tape.scale(r, -1.0).map_err(tape_err("min_zero"))?;
        Ok(self.node(v))
    }

    fn relu(&mut self, x: Node) -> Result<Node, ModelError> {
        let v = self.tape.relu(self.var(x)).map_err(tape_err("relu"))?;
        Ok(self.node(v))
    }

    fn sigmoid(&mut self, x: Node) -> Result<Node, ModelError> {
        let v = self
            .tape
            .sigmoid(self.var(x))
            .map_err(tape_err("sigmoid"))?;
        Ok(self.node(v))
    }

    fn softmax(&mut self, x: Node) -> Result<Node, ModelError> {
        let v = self
            .tape
            .softmax(self.var(x))
            .map_err(tape_err("softmax"))?;
        Ok(self.node(v))
    }

    fn mix(&mut self, xs: &[Node], gate: Node) -> Result<Node, ModelError> {
        self.tmp.clear();
        self.tmp.extend(xs.iter().map(|&x| self.vars[x.index()]));
        let v = self
            .tape
            .mix(self.tmp, self.vars[gate.index()])
            .map_err(tape_err("mix"))?;
        Ok(self.node(v))
    }

    fn row_dot(&mut self, a: Node, b: Node) -> Result<Node, ModelError> {
        let p = self
            .tape
            .mul(self.var(a), self.var(b))
            .map_err(tape_err("row_dot"))?;
        let v = self.tape.sum_cols(p).map_err(tape_err("row_dot"))?;
        Ok(self.node(v))
    }

    fn concat(&mut self, xs: &[Node]) -> Result<Node, ModelError> {
        self.tmp.clear();
        self.tmp.extend(xs.iter().map(|&x| self.vars[x.index()]));
        let v = self.tape.concat(self.tmp).map_err(tape_err("concat"))?;
        Ok(self.node(v))
    }

    fn product_logit(&mut self, a: Node, b: Node) -> Result<Node, ModelError> {
        let v = self
            .tape
            .product_logit(self.var(a), self.var(b))
            .map_err(tape_err("product_logit"))?;
        Ok(self.node(v))
    }

    fn sum(&mut self, x: Node) -> Result<Node, ModelError> {
        let v = self.tape.sum(self.var(x)).map_err(tape_err("sum"))?;
        Ok(self.node(v))
    }

    fn mul(&mut self, a: Node, b: Node) -> Result<Node, ModelError> {
        let v = self
            .tape
            .mul(self.var(a), self.var(b))
            .map_err(tape_err("mul"))?;
        Ok(self.node(v))
    }

    fn softplus(&mut self, x: Node) -> Result<Node, ModelError> {
        let v = self
            .tape
            .softplus(self.var(x))
            .map_err(tape_err("softplus"))?;
        Ok(self.node(v))
    }

    fn reciprocal(&mut self, x: Node) -> Result<Node, ModelError> {
        let v = self
            .tape
            .reciprocal(self.var(x))
            .map_err(tape_err("reciprocal"))?;
        Ok(self.node(v))
    }

    fn clamp(&mut self, x: Node, lo: f32, hi: f32) -> Result<Node, ModelError> {
        let v = self
            .tape
            .clamp(self.var(x), lo, hi)
            .map_err(tape_err("clamp"))?;
        Ok(self.node(v))
    }

    fn stop_gradient(&mut self, x: Node) -> Result<Node, ModelError> {
        let x = self.var(x);
        let v = match self.frozen {
            Frozen::Replay(values, at) => {
                let (n, c) = self.tape.shape(x);
                let end = (*at + n * c).min(values.len());
                let v = self
                    .tape
                    .input(n, c, &values[*at..end])
                    .map_err(tape_err("stop_gradient"))?;
                *at = end;
                v
            }
            _ => self
                .tape
                .stop_gradient(x)
                .map_err(tape_err("stop_gradient"))?,
        };
        if let Frozen::Record(values) = self.frozen {
            values.extend_from_slice(self.tape.value(v));
        }
        Ok(self.node(v))
    }

    fn list(&mut self) -> Vec<Node> {
        let mut l = self.lists.pop().unwrap_or_default();
        l.clear();
        l
    }

    fn recycle(&mut self, list: Vec<Node>) {
        self.lists.push(list);
    }
}
