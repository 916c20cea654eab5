//! The trainable network: ResFlow's parameters in an autodiff `ParamStore`, and its forward
//! pass recorded on a tape for one batch (or one worker's slice of a batch).
//!
//! ```text
//! ids, bags, dense (BatchView) --embedding / bag / input--> concat --BN_in--> x
//! per task t:  h = x;  for each layer: h = BN(PReLU(h W + b)) (+ o_(t-1)^l);  z_t = h w + c (+ z_(t-1))
//! loss = sum_t lambda_t * BCE(z_t, y_t; pos_weight_t) / denom
//! ```
//!
//! `denom` is the number of rows of the *whole* batch, so the gradients of the workers'
//! slices add up to the gradient of the batch mean.

use autodiff::{BceTarget, ParamId, ParamStore, Pooling as AdPooling, TableId, Tape, Var};
use shards::BatchView;
use tensor::Matrix;

use std::collections::HashMap;

use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::layout::{Field, InputLayout, Pooling};
use crate::models::{Builder, Ctx, Head, Lists};
use crate::params::{BatchNormParams, LayerParams, ModelParams, TowerParams};
use crate::rng::SplitMix64;

/// A BatchNorm layer's trainable parameters and running statistics.
#[derive(Debug, Clone)]
pub struct BnIds {
    /// Scale.
    pub gamma: ParamId,
    /// Shift.
    pub beta: ParamId,
    /// Running mean (used for inference in `batch` mode).
    pub mean: Vec<f32>,
    /// Running variance.
    pub var: Vec<f32>,
}

/// One hidden layer's parameters.
#[derive(Debug, Clone)]
pub struct LayerIds {
    /// Weights `in x out`.
    pub w: ParamId,
    /// Bias `1 x out`.
    pub b: ParamId,
    /// PReLU slopes `1 x out` (unused for ReLU).
    pub slope: ParamId,
    /// The BatchNorm after the activation.
    pub bn: BnIds,
}

/// One tower's parameters.
#[derive(Debug, Clone)]
pub struct TowerIds {
    /// Hidden layers.
    pub layers: Vec<LayerIds>,
    /// Logit weights `last x 1`.
    pub logit_w: ParamId,
    /// Logit bias `1 x 1`.
    pub logit_b: ParamId,
}

/// The network: configuration, layout and where each parameter lives in the store.
#[derive(Debug, Clone)]
pub struct Network {
    /// The configuration.
    pub config: ModelConfig,
    /// The inputs and tasks.
    pub layout: InputLayout,
    /// One embedding table per field.
    pub tables: Vec<TableId>,
    /// The input BatchNorm.
    pub input_bn: BnIds,
    /// One tower per task (ResFlow and independent towers; empty for the baselines).
    pub towers: Vec<TowerIds>,
    /// A baseline's head (`None` for ResFlow's tower chain).
    pub(crate) head: Option<Head>,
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
    /// The BatchNorm outputs, input BatchNorm first then tower by tower, layer by layer.
    pub bn_outputs: Vec<Var>,
    /// The head's own extra loss (AITM's calibrator), already part of `loss`.
    pub aux_loss: Option<Var>,
    /// The scale parameter of each BatchNorm in `bn_outputs`: which layer each output
    /// belongs to (the order must be that of [`Network::bn_layers_mut`]).
    pub bn_params: Vec<ParamId>,
}

/// Per-worker scratch of the forward pass (reused; no allocation after warm-up).
#[derive(Debug, Default)]
pub struct Scratch {
    ids: Vec<u32>,
    labels: Vec<f32>,
    parts: Vec<Var>,
    zeros: Vec<f32>,
    ones: Vec<f32>,
    hidden: Vec<Var>,
    prev_hidden: Vec<Var>,
    lists: Lists,
}

impl InputLayout {
    /// The layout of a dataset: its single-valued fields, then its bags, then its dense
    /// features, and its tasks.
    pub fn from_schema(schema: &shards::Schema) -> Self {
        let single = schema.single.iter().map(|f| Field {
            name: f.name.clone(),
            vocab: f.vocab,
            bag: None,
        });
        let multi = schema.multi.iter().map(|f| Field {
            name: f.name.clone(),
            vocab: f.vocab,
            bag: Some(match f.pooling {
                shards::Pooling::Sum => Pooling::Sum,
                shards::Pooling::Mean => Pooling::Mean,
            }),
        });
        InputLayout {
            fields: single.chain(multi).collect(),
            dense: schema.dense.count,
            tasks: schema.tasks.clone(),
        }
    }
}

fn row(v: &[f32]) -> Matrix {
    Matrix::from_slice(1, v.len(), v).expect("a row of its own length")
}

impl Network {
    /// Puts `params` into a new store and records where each parameter went.
    pub fn from_params(params: &ModelParams) -> Result<(Self, ParamStore), ModelError> {
        Self::with_tables(params, params.embeddings.iter().cloned())
    }

    /// [`Network::from_params`] that moves the embedding tables into the store instead of
    /// copying them (they are most of a model's memory).
    pub fn from_owned_params(mut params: ModelParams) -> Result<(Self, ParamStore), ModelError> {
        let tables = std::mem::take(&mut params.embeddings);
        Self::with_tables(&params, tables.into_iter())
    }

    fn with_tables(
        params: &ModelParams,
        embeddings: impl Iterator<Item = Matrix>,
    ) -> Result<(Self, ParamStore), ModelError> {
        let mut store = ParamStore::new();
        let tables: Vec<TableId> = params
            .layout
            .fields
            .iter()
            .zip(embeddings)
            .map(|(f, t)| store.add_table(format!("embedding/{}", f.name), t))
            .collect();
        if !params.config.model.is_tower_chain() {
            let mut tensors: HashMap<String, Matrix> = params.head.iter().cloned().collect();
            tensors.extend(input_bn_tensors(&params.input_bn));
            let mut net = Self::from_tensors(&params.config, &params.layout, &mut store, &tensors)?;
            net.tables = tables;
            return Ok((net, store));
        }
        let bn = |s: &mut ParamStore, name: String, p: &BatchNormParams| BnIds {
            gamma: s.add(format!("{name}/gamma"), row(&p.gamma)),
            beta: s.add(format!("{name}/beta"), row(&p.beta)),
            mean: p.running_mean.clone(),
            var: p.running_var.clone(),
        };
        let input_bn = bn(&mut store, "input_bn".into(), &params.input_bn);
        let towers = params
            .towers
            .iter()
            .enumerate()
            .map(|(t, tower)| TowerIds {
                layers: tower
                    .layers
                    .iter()
                    .enumerate()
                    .map(|(l, layer)| {
                        let p = format!("task/{t}/layer/{l}");
                        LayerIds {
                            w: store.add(format!("{p}/weight"), layer.weight.clone()),
                            b: store.add(format!("{p}/bias"), row(&layer.bias)),
                            slope: store.add(format!("{p}/slope"), row(&layer.slope)),
                            bn: bn(&mut store, format!("{p}/bn"), &layer.bn),
                        }
                    })
                    .collect(),
                logit_w: store.add(
                    format!("task/{t}/logit/weight"),
                    Matrix::from_slice(tower.logit_weight.len(), 1, &tower.logit_weight)
                        .expect("a column"),
                ),
                logit_b: store.add(format!("task/{t}/logit/bias"), row(&[tower.logit_bias])),
            })
            .collect();
        Ok((
            Network {
                config: params.config.clone(),
                layout: params.layout.clone(),
                tables,
                input_bn,
                towers,
                head: None,
            },
            store,
        ))
    }

    /// A baseline network (no embedding tables) whose input BatchNorm and head are read
    /// from named tensors into `store`: every tensor must be used and have its shape.
    pub(crate) fn from_tensors(
        config: &ModelConfig,
        layout: &InputLayout,
        store: &mut ParamStore,
        tensors: &HashMap<String, Matrix>,
    ) -> Result<Self, ModelError> {
        let input = layout.input_width(config.embedding_dim);
        let mut b = Builder::load(store, tensors);
        let input_bn = b.bn("input_bn", input)?;
        let head = Head::build(config, input, &mut b)?;
        b.finish()?;
        Ok(Network {
            config: config.clone(),
            layout: layout.clone(),
            tables: Vec::new(),
            input_bn,
            towers: Vec::new(),
            head,
        })
    }

    /// A freshly initialised baseline head's named tensors (empty for ResFlow's towers).
    pub(crate) fn init_head(
        config: &ModelConfig,
        input: usize,
        rng: SplitMix64,
    ) -> Result<Vec<(String, Matrix)>, ModelError> {
        let mut store = ParamStore::new();
        let mut b = Builder::init(&mut store, rng);
        let head = Head::build(config, input, &mut b)?;
        Ok(head.map(|h| h.tensors(&store)).unwrap_or_default())
    }

    /// Reads the parameters back out of the store.
    pub fn to_params(&self, store: &ParamStore) -> ModelParams {
        let v = |id: ParamId| store.get(id).to_vec();
        let bn = |b: &BnIds| BatchNormParams {
            gamma: v(b.gamma),
            beta: v(b.beta),
            running_mean: b.mean.clone(),
            running_var: b.var.clone(),
        };
        ModelParams {
            head: self
                .head
                .as_ref()
                .map(|h| h.tensors(store))
                .unwrap_or_default(),
            config: self.config.clone(),
            layout: self.layout.clone(),
            embeddings: self
                .tables
                .iter()
                .map(|&t| store.table(t).clone())
                .collect(),
            input_bn: bn(&self.input_bn),
            towers: self
                .towers
                .iter()
                .map(|t| TowerParams {
                    layers: t
                        .layers
                        .iter()
                        .map(|l| LayerParams {
                            weight: store.get(l.w).clone(),
                            bias: v(l.b),
                            slope: v(l.slope),
                            bn: bn(&l.bn),
                        })
                        .collect(),
                    logit_weight: v(t.logit_w),
                    logit_bias: v(t.logit_b)[0],
                })
                .collect(),
        }
    }

    /// The BatchNorm layers in the order of [`Forward::bn_outputs`].
    pub fn bn_layers_mut(&mut self) -> Vec<&mut BnIds> {
        let mut v = vec![&mut self.input_bn];
        for t in &mut self.towers {
            for l in &mut t.layers {
                v.push(&mut l.bn);
            }
        }
        if let Some(h) = &mut self.head {
            v.extend(h.bn_layers_mut());
        }
        v
    }

    /// Calls `f` on each BatchNorm layer in the order of [`Network::bn_layers_mut`], without
    /// collecting them (ResFlow's towers allocate nothing; a baseline's head lists its own).
    pub fn for_each_bn_layer_mut(&mut self, mut f: impl FnMut(usize, &mut BnIds)) {
        f(0, &mut self.input_bn);
        let mut k = 1;
        for t in &mut self.towers {
            for l in &mut t.layers {
                f(k, &mut l.bn);
                k += 1;
            }
        }
        if let Some(h) = &mut self.head {
            for b in h.bn_layers_mut() {
                f(k, b);
                k += 1;
            }
        }
    }

    /// Checks that a dataset's layout is the one this network was built for.
    pub fn check_layout(&self, layout: &InputLayout) -> Result<(), ModelError> {
        if layout.tasks != self.layout.tasks {
            return Err(ModelError::Layout(format!(
                "the data's tasks {:?} differ from the model's {:?}",
                layout.tasks, self.layout.tasks
            )));
        }
        if layout.dense != self.layout.dense || layout.fields.len() != self.layout.fields.len() {
            return Err(ModelError::Layout(format!(
                "the data has {} fields and {} dense features, the model {} and {}",
                layout.fields.len(),
                layout.dense,
                self.layout.fields.len(),
                self.layout.dense
            )));
        }
        for (a, b) in layout.fields.iter().zip(&self.layout.fields) {
            if a.name != b.name || a.bag.is_some() != b.bag.is_some() || a.vocab > b.vocab {
                return Err(ModelError::Layout(format!(
                    "field {:?} (vocab {}) does not fit the model's field {:?} (vocab {})",
                    a.name, a.vocab, b.name, b.vocab
                )));
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
    ) -> Result<(), ModelError> {
        let n = view.rows();
        let (ns, nb) = (
            self.layout
                .fields
                .iter()
                .filter(|f| f.bag.is_none())
                .count(),
            self.layout
                .fields
                .iter()
                .filter(|f| f.bag.is_some())
                .count(),
        );
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
            let pooling = match self.layout.fields[ns + k].bag {
                Some(Pooling::Mean) => AdPooling::Mean,
                _ => AdPooling::Sum,
            };
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
        self.forward_input(
            tape,
            store,
            x?,
            mode,
            with_loss.then_some(denom),
            scratch,
            out,
        )?;
        if with_loss {
            let mut total: Option<Var> = None;
            for (t, task) in self.config.tasks.iter().enumerate() {
                view.task_labels(t, &mut scratch.labels);
                let target = BceTarget {
                    labels: &scratch.labels,
                    weights: if view.weight().is_empty() {
                        None
                    } else {
                        Some(view.weight())
                    },
                    pos_weight: task.pos_weight,
                    denom: Some(denom),
                };
                let l = tape.bce_with_logits(out.logits[t], target)?;
                out.task_losses.push(l);
                let weighted = tape.scale(l, task.loss_weight)?;
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

    /// Records everything after the embeddings: the input BatchNorm, then ResFlow's towers
    /// or the baseline's head, into `out` (cleared first). `denom` is the batch size when a
    /// loss will be recorded (for a head's own extra loss).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward_input(
        &self,
        tape: &mut Tape,
        store: &ParamStore,
        x: Var,
        mode: Mode,
        denom: Option<f32>,
        scratch: &mut Scratch,
        out: &mut Forward,
    ) -> Result<(), ModelError> {
        out.logits.clear();
        out.task_losses.clear();
        out.loss = None;
        out.aux_loss = None;
        out.bn_outputs.clear();
        out.bn_params.clear();
        let mut ctx = Ctx {
            tape,
            store,
            config: &self.config,
            mode,
            zeros: &mut scratch.zeros,
            ones: &mut scratch.ones,
            bn_outputs: &mut out.bn_outputs,
            bn_params: &mut out.bn_params,
            lists: &mut scratch.lists,
        };
        let x = ctx.bn(x, &self.input_bn)?;
        if let Some(head) = &self.head {
            out.aux_loss = head.forward(&mut ctx, x, &mut out.logits, denom)?;
            return Ok(());
        }
        let residual = self.config.links();
        let mut prev_hidden = std::mem::take(&mut scratch.prev_hidden);
        let mut hidden = std::mem::take(&mut scratch.hidden);
        prev_hidden.clear();
        let mut prev_logit: Option<Var> = None;
        for (t, tower) in self.towers.iter().enumerate() {
            hidden.clear();
            let mut h = x;
            for (l, layer) in tower.layers.iter().enumerate() {
                // o_t^l = BN(act(h W + b)) (+ o_(t-1)^l)
                let mut o = ctx.layer(h, layer)?;
                if residual.hidden && t > 0 {
                    o = ctx.tape.add(o, prev_hidden[l])?;
                }
                hidden.push(o);
                h = o;
            }
            let (w, b) = (
                ctx.tape.param(store, tower.logit_w),
                ctx.tape.param(store, tower.logit_b),
            );
            let own = ctx.tape.linear(h, w, Some(b))?;
            let z = match prev_logit {
                Some(p) if residual.logits => {
                    let own = if residual.monotone {
                        // min(own, 0) = -relu(-own)
                        let neg = ctx.tape.scale(own, -1.0)?;
                        let r = ctx.tape.relu(neg)?;
                        ctx.tape.scale(r, -1.0)?
                    } else {
                        own
                    };
                    ctx.tape.add(p, own)?
                }
                _ => own,
            };
            out.logits.push(z);
            prev_logit = Some(z);
            std::mem::swap(&mut prev_hidden, &mut hidden);
        }
        scratch.prev_hidden = prev_hidden;
        scratch.hidden = hidden;
        Ok(())
    }
}

/// The input BatchNorm as named tensors (`input_bn/gamma`, ..., `input_bn/running_var`).
pub(crate) fn input_bn_tensors(p: &BatchNormParams) -> Vec<(String, Matrix)> {
    [
        ("gamma", &p.gamma),
        ("beta", &p.beta),
        ("running_mean", &p.running_mean),
        ("running_var", &p.running_var),
    ]
    .into_iter()
    .map(|(k, v)| (format!("input_bn/{k}"), row(v)))
    .collect()
}
