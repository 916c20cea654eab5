//! The baseline multi-task models ResFlow is compared against, as *heads*: everything
//! between the shared input vector `x` (embeddings, dense features, input BatchNorm) and the
//! task logits.
//!
//! ```text
//! shared by every kind:   ids -> embeddings -> concat -> BN_in -> x
//! head (one per kind):    x -> ... -> z_1, ..., z_T           (one logit per task)
//! shared by every kind:   p_t = sigmoid(z_t), weighted BCE per task, trainer, model file, scorer
//! ```
//!
//! ResFlow's own towers stay in [`crate::network`] (its serving form has a hand-fused fast
//! path); the baselines are built here from three pieces:
//!
//! - an MLP of hidden layers `h = BN(act(x W + b))`, the same layer as ResFlow's towers, so
//!   `activation` and `batch_norm` apply to every model alike;
//! - a gate `softmax(x W_g)` and the gated mixture [`autodiff::Tape::mix`];
//! - plain linear maps (logits, attention projections).
//!
//! A head's parameters are named tensors (`head/mmoe/expert/0/layer/0/weight`, ...). The
//! [`Builder`] creates them (seeded Glorot initialisation) or reads them back by name and
//! shape, so the same `build` function serves initialisation, checkpoints, export and the
//! model file. The serving form of a baseline is its training form: the scorer runs the
//! head's forward pass on a tape in inference mode.

mod aitm;
mod esmm;
mod mmoe;
mod ple;
mod shared_bottom;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};

use autodiff::{ParamId, ParamStore, Tape, Var};
use tensor::Matrix;

use crate::config::{Activation, BatchNormMode, ModelConfig, ModelKind};
use crate::error::ModelError;
use crate::network::{BnIds, LayerIds, Mode};
use crate::rng::SplitMix64;

pub(crate) use aitm::Aitm;
pub(crate) use esmm::Esmm;
pub(crate) use mmoe::Mmoe;
pub(crate) use ple::Ple;
pub(crate) use shared_bottom::SharedBottom;

/// Prefix of every head tensor's name.
pub(crate) const PREFIX: &str = "head/";

/// Where a [`Builder`] takes parameter values from.
enum Source<'a> {
    /// Fresh, seeded initialisation.
    Init(SplitMix64),
    /// Named tensors (a model file or exported parameters), and the names taken so far.
    Load {
        tensors: &'a HashMap<String, Matrix>,
        taken: HashSet<&'a str>,
    },
}

/// Creates or loads the named parameters of a head into a [`ParamStore`].
pub(crate) struct Builder<'a> {
    store: &'a mut ParamStore,
    source: Source<'a>,
}

impl<'a> Builder<'a> {
    /// Fresh parameters from `rng`.
    pub(crate) fn init(store: &'a mut ParamStore, rng: SplitMix64) -> Self {
        Self {
            store,
            source: Source::Init(rng),
        }
    }

    /// Parameters read from `tensors` by name; every shape is checked.
    pub(crate) fn load(store: &'a mut ParamStore, tensors: &'a HashMap<String, Matrix>) -> Self {
        Self {
            store,
            source: Source::Load {
                tensors,
                taken: HashSet::new(),
            },
        }
    }

    /// In load mode, fails if some tensor was never asked for (a file of another model).
    pub(crate) fn finish(self) -> Result<(), ModelError> {
        if let Source::Load { tensors, taken } = self.source
            && taken.len() != tensors.len()
        {
            let mut extra: Vec<&str> = tensors
                .keys()
                .map(|k| k.as_str())
                .filter(|k| !taken.contains(k))
                .collect();
            extra.sort_unstable();
            return Err(ModelError::Layout(format!(
                "{} tensors do not belong to this model, {:?} first",
                extra.len(),
                extra[0]
            )));
        }
        Ok(())
    }

    fn value(
        &mut self,
        name: &str,
        rows: usize,
        cols: usize,
        init: impl FnOnce(&mut SplitMix64) -> Matrix,
    ) -> Result<Matrix, ModelError> {
        match &mut self.source {
            Source::Init(rng) => Ok(init(rng)),
            Source::Load { tensors, taken } => {
                let (key, m) = tensors
                    .get_key_value(name)
                    .ok_or_else(|| ModelError::Layout(format!("tensor {name:?} is missing")))?;
                if m.shape() != (rows, cols) {
                    return Err(ModelError::Layout(format!(
                        "tensor {name:?} has shape {:?}, expected ({rows}, {cols})",
                        m.shape()
                    )));
                }
                taken.insert(key.as_str());
                Ok(m.clone())
            }
        }
    }

    fn param(
        &mut self,
        name: String,
        rows: usize,
        cols: usize,
        init: impl FnOnce(&mut SplitMix64) -> Matrix,
    ) -> Result<ParamId, ModelError> {
        let v = self.value(&name, rows, cols, init)?;
        Ok(self.store.add(name, v))
    }

    /// A `rows x cols` weight, Glorot-uniform at initialisation.
    pub(crate) fn weight(
        &mut self,
        name: String,
        rows: usize,
        cols: usize,
    ) -> Result<ParamId, ModelError> {
        self.param(name, rows, cols, |rng| {
            let limit = (6.0 / (rows + cols) as f32).sqrt();
            Matrix::from_fn(rows, cols, |_, _| rng.uniform(limit))
        })
    }

    /// A `1 x cols` row filled with `value` at initialisation.
    fn row(&mut self, name: String, cols: usize, value: f32) -> Result<ParamId, ModelError> {
        self.param(name, 1, cols, |_| Matrix::from_fn(1, cols, |_, _| value))
    }

    /// A running statistic (not trained), `value` at initialisation.
    fn stat(&mut self, name: String, cols: usize, value: f32) -> Result<Vec<f32>, ModelError> {
        Ok(self
            .value(&name, 1, cols, |_| Matrix::from_fn(1, cols, |_, _| value))?
            .to_vec())
    }

    /// A BatchNorm of `width` channels: `gamma = 1`, `beta = 0`, statistics 0 / 1.
    pub(crate) fn bn(&mut self, name: &str, width: usize) -> Result<BnIds, ModelError> {
        Ok(BnIds {
            gamma: self.row(format!("{name}/gamma"), width, 1.0)?,
            beta: self.row(format!("{name}/beta"), width, 0.0)?,
            mean: self.stat(format!("{name}/running_mean"), width, 0.0)?,
            var: self.stat(format!("{name}/running_var"), width, 1.0)?,
        })
    }

    /// A hidden layer `BN(act(x W + b))` from `input` to `out` units.
    pub(crate) fn layer(
        &mut self,
        name: &str,
        input: usize,
        out: usize,
    ) -> Result<LayerIds, ModelError> {
        Ok(LayerIds {
            w: self.weight(format!("{name}/weight"), input, out)?,
            b: self.row(format!("{name}/bias"), out, 0.0)?,
            slope: self.row(format!("{name}/slope"), out, 0.0)?,
            bn: self.bn(&format!("{name}/bn"), out)?,
        })
    }

    /// An MLP of hidden layers; returns it and its output width (`input` if it is empty).
    pub(crate) fn mlp(
        &mut self,
        name: &str,
        input: usize,
        widths: &[usize],
    ) -> Result<(Vec<LayerIds>, usize), ModelError> {
        let mut width = input;
        let mut layers = Vec::with_capacity(widths.len());
        for (l, &out) in widths.iter().enumerate() {
            layers.push(self.layer(&format!("{name}/layer/{l}"), width, out)?);
            width = out;
        }
        Ok((layers, width))
    }

    /// A logit `z = h w + c` from `input` units.
    pub(crate) fn logit(&mut self, name: &str, input: usize) -> Result<Linear, ModelError> {
        Ok(Linear {
            w: self.weight(format!("{name}/weight"), input, 1)?,
            b: Some(self.row(format!("{name}/bias"), 1, 0.0)?),
        })
    }

    /// A gate `softmax(x W)` over `choices` from `input` units (no bias, as in MMoE).
    pub(crate) fn gate(
        &mut self,
        name: &str,
        input: usize,
        choices: usize,
    ) -> Result<Linear, ModelError> {
        Ok(Linear {
            w: self.weight(format!("{name}/weight"), input, choices)?,
            b: None,
        })
    }
}

fn is_stat(name: &str) -> bool {
    name.ends_with("/running_mean") || name.ends_with("/running_var")
}

/// A linear map `x W (+ b)`.
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    w: ParamId,
    b: Option<ParamId>,
}

/// A task's tower: hidden layers, then a logit.
#[derive(Debug, Clone)]
pub(crate) struct TaskTower {
    layers: Vec<LayerIds>,
    logit: Linear,
}

impl TaskTower {
    /// `name/layer/<l>/...` and `name/logit/...` from `input` units.
    pub(crate) fn build(
        b: &mut Builder<'_>,
        name: &str,
        input: usize,
        widths: &[usize],
    ) -> Result<Self, ModelError> {
        let (layers, width) = b.mlp(name, input, widths)?;
        Ok(Self {
            layers,
            logit: b.logit(&format!("{name}/logit"), width)?,
        })
    }

    /// One tower per task, `name/task/<t>/...`, each from `input` units.
    pub(crate) fn per_task(
        b: &mut Builder<'_>,
        name: &str,
        tasks: usize,
        input: usize,
        widths: &[usize],
    ) -> Result<Vec<Self>, ModelError> {
        (0..tasks)
            .map(|t| Self::build(b, &format!("{name}/task/{t}"), input, widths))
            .collect()
    }

    /// The `rows x 1` logit of `x`.
    pub(crate) fn forward(&self, ctx: &mut Ctx<'_>, x: Var) -> Result<Var, ModelError> {
        let h = ctx.mlp(x, &self.layers)?;
        ctx.linear(h, &self.logit)
    }

    /// Its BatchNorm layers.
    pub(crate) fn bn_layers_mut<'a>(&'a mut self, v: &mut Vec<&'a mut BnIds>) {
        push_bn(&mut self.layers, v);
    }
}

/// Lists of tape handles a head reuses from call to call, so that a warm forward pass
/// allocates nothing. A head takes a list out (`std::mem::take`), fills it, and puts it back.
#[derive(Debug, Default)]
pub(crate) struct Lists {
    pub experts: Vec<Var>,
    pub inputs: Vec<Var>,
    pub next: Vec<Var>,
    pub chosen: Vec<Var>,
}

/// Everything a head's forward pass uses besides its own parameters.
pub(crate) struct Ctx<'a> {
    /// The tape being recorded.
    pub tape: &'a mut Tape,
    /// The parameters.
    pub store: &'a ParamStore,
    /// Activation, BatchNorm mode and epsilon.
    pub config: &'a ModelConfig,
    /// Training or inference BatchNorm.
    pub mode: Mode,
    /// Zeros and ones for the frozen BatchNorm statistics.
    pub zeros: &'a mut Vec<f32>,
    /// See `zeros`.
    pub ones: &'a mut Vec<f32>,
    /// Every BatchNorm output, in the order of the layers' `bn_layers_mut`.
    pub bn_outputs: &'a mut Vec<Var>,
    /// The scale parameter of each of those BatchNorms.
    pub bn_params: &'a mut Vec<ParamId>,
    /// Reused lists of handles.
    pub lists: &'a mut Lists,
}

impl Ctx<'_> {
    /// A BatchNorm in the configured mode (the identity for `none`).
    pub(crate) fn bn(&mut self, x: Var, bn: &BnIds) -> Result<Var, ModelError> {
        use autodiff::BatchNormMode as Bn;
        if self.config.batch_norm == BatchNormMode::None {
            return Ok(x);
        }
        let eps = self.config.bn_epsilon;
        let c = bn.mean.len();
        self.zeros.resize(c, 0.0);
        self.ones.resize(c, 1.0);
        let mode = match (self.config.batch_norm, self.mode) {
            (BatchNormMode::Batch, Mode::Train) => Bn::Train { eps },
            (BatchNormMode::Batch, Mode::Eval) => Bn::Eval {
                mean: &bn.mean,
                var: &bn.var,
                eps,
            },
            // The authors' frozen form: statistics fixed at 0 and 1.
            _ => Bn::Eval {
                mean: &self.zeros[..c],
                var: &self.ones[..c],
                eps,
            },
        };
        let (g, b) = (
            self.tape.param(self.store, bn.gamma),
            self.tape.param(self.store, bn.beta),
        );
        let y = self.tape.batch_norm(x, g, b, mode)?;
        self.bn_outputs.push(y);
        self.bn_params.push(bn.gamma);
        Ok(y)
    }

    /// One hidden layer: `BN(act(x W + b))`.
    pub(crate) fn layer(&mut self, x: Var, layer: &LayerIds) -> Result<Var, ModelError> {
        let (w, b) = (
            self.tape.param(self.store, layer.w),
            self.tape.param(self.store, layer.b),
        );
        let a = self.tape.linear(x, w, Some(b))?;
        let a = match self.config.activation {
            Activation::Prelu => {
                let s = self.tape.param(self.store, layer.slope);
                self.tape.prelu(a, s)?
            }
            Activation::Relu => self.tape.relu(a)?,
        };
        self.bn(a, &layer.bn)
    }

    /// The layers one after the other (the identity when there are none).
    pub(crate) fn mlp(&mut self, x: Var, layers: &[LayerIds]) -> Result<Var, ModelError> {
        layers.iter().try_fold(x, |h, l| self.layer(h, l))
    }

    /// `x W (+ b)`.
    pub(crate) fn linear(&mut self, x: Var, lin: &Linear) -> Result<Var, ModelError> {
        let w = self.tape.param(self.store, lin.w);
        let b = lin.b.map(|b| self.tape.param(self.store, b));
        Ok(self.tape.linear(x, w, b)?)
    }

    /// `softmax(x W)`.
    pub(crate) fn gate(&mut self, x: Var, lin: &Linear) -> Result<Var, ModelError> {
        let g = self.linear(x, lin)?;
        Ok(self.tape.softmax(g)?)
    }
}

/// A baseline's head: its parameter ids and running statistics.
#[derive(Debug, Clone)]
pub(crate) enum Head {
    SharedBottom(SharedBottom),
    Esmm(Esmm),
    Mmoe(Mmoe),
    Ple(Ple),
    Aitm(Aitm),
}

impl Head {
    /// Creates or loads the head of `config.model` for inputs `input` wide; `None` for
    /// ResFlow's tower chain, which [`crate::network`] builds itself.
    pub(crate) fn build(
        config: &ModelConfig,
        input: usize,
        b: &mut Builder<'_>,
    ) -> Result<Option<Self>, ModelError> {
        let tasks = config.tasks.len();
        Ok(Some(match &config.model {
            ModelKind::Resflow | ModelKind::Independent => return Ok(None),
            ModelKind::SharedBottom(c) => {
                Head::SharedBottom(SharedBottom::build(c, tasks, input, b)?)
            }
            ModelKind::Esmm => Head::Esmm(Esmm::build(&config.hidden, input, b)?),
            ModelKind::Mmoe(c) => Head::Mmoe(Mmoe::build(c, tasks, input, b)?),
            ModelKind::Ple(c) => Head::Ple(Ple::build(c, tasks, input, b)?),
            ModelKind::Aitm(_) => Head::Aitm(Aitm::build(&config.hidden, tasks, input, b)?),
        }))
    }

    /// Records the head on `ctx.tape`: one `rows x 1` logit per task into `logits`, and the
    /// head's own extra loss (already divided by `denom`) when `denom` is given.
    pub(crate) fn forward(
        &self,
        ctx: &mut Ctx<'_>,
        x: Var,
        logits: &mut Vec<Var>,
        denom: Option<f32>,
    ) -> Result<Option<Var>, ModelError> {
        match self {
            Head::SharedBottom(h) => h.forward(ctx, x, logits).map(|()| None),
            Head::Esmm(h) => h.forward(ctx, x, logits).map(|()| None),
            Head::Mmoe(h) => h.forward(ctx, x, logits).map(|()| None),
            Head::Ple(h) => h.forward(ctx, x, logits).map(|()| None),
            Head::Aitm(h) => {
                let weight = match &ctx.config.model {
                    ModelKind::Aitm(c) => c.calibrator_weight,
                    _ => 0.0,
                };
                h.forward(
                    ctx,
                    x,
                    logits,
                    denom.filter(|_| weight > 0.0).map(|d| weight / d),
                )
            }
        }
    }

    /// The BatchNorm layers, in the order the forward pass records them.
    pub(crate) fn bn_layers_mut(&mut self) -> Vec<&mut BnIds> {
        let mut v = Vec::new();
        match self {
            Head::SharedBottom(h) => h.bn_layers_mut(&mut v),
            Head::Esmm(h) => h.bn_layers_mut(&mut v),
            Head::Mmoe(h) => h.bn_layers_mut(&mut v),
            Head::Ple(h) => h.bn_layers_mut(&mut v),
            Head::Aitm(h) => h.bn_layers_mut(&mut v),
        }
        v
    }

    /// The head's named tensors, sorted by name: its parameters (taken from `store`, where every name
    /// starting with [`PREFIX`] is the head's) and its BatchNorm running statistics.
    pub(crate) fn tensors(&self, store: &ParamStore) -> Vec<(String, Matrix)> {
        let mut out: Vec<(String, Matrix)> = store
            .dense
            .iter()
            .filter(|p| p.name.starts_with(PREFIX))
            .map(|p| (p.name.clone(), p.value.clone()))
            .collect();
        let mut head = self.clone();
        for bn in head.bn_layers_mut() {
            let name = store.dense[bn.gamma.index()]
                .name
                .trim_end_matches("/gamma")
                .to_string();
            let row =
                |v: &[f32]| Matrix::from_slice(1, v.len(), v).expect("a row of its own length");
            out.push((format!("{name}/running_mean"), row(&bn.mean)));
            out.push((format!("{name}/running_var"), row(&bn.var)));
        }
        // One canonical order (the model file's), so that equal models compare equal.
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// Pushes every BatchNorm of `layers` onto `v`.
pub(crate) fn push_bn<'a>(layers: &'a mut [LayerIds], v: &mut Vec<&'a mut BnIds>) {
    v.extend(layers.iter_mut().map(|l| &mut l.bn));
}

/// Trainable floats among named head tensors, counted like ResFlow's: running statistics
/// never, PReLU slopes only with PReLU, BatchNorm scale and shift only with BatchNorm.
pub(crate) fn trainable(config: &ModelConfig, tensors: &[(String, Matrix)]) -> usize {
    tensors
        .iter()
        .filter(|(name, _)| {
            let unused_slope = config.activation != Activation::Prelu && name.ends_with("/slope");
            let unused_bn = config.batch_norm == BatchNormMode::None
                && (name.ends_with("/gamma") || name.ends_with("/beta"));
            !(is_stat(name) || unused_slope || unused_bn)
        })
        .map(|(_, m)| m.rows() * m.cols())
        .sum()
}

/// Multiply-adds of the dense layers for one candidate, for `docs/models.md` and
/// `resflow compare`: every weight matrix used once per candidate, except the attention
/// projections of AITM, used once for each of the two vectors they look at.
pub(crate) fn multiply_adds(tensors: &[(String, Matrix)]) -> usize {
    tensors
        .iter()
        .filter(|(name, _)| name.ends_with("/weight"))
        .map(|(name, m)| {
            let uses = if name.contains("/attention/") { 2 } else { 1 };
            uses * m.rows() * m.cols()
        })
        .sum()
}
