//! The serving form of a trained model: plain weights, no optimiser state, every
//! normalisation reduced to what inference needs.
//!
//! Training keeps BatchNorm layers with their own parameters; for serving they become
//! arithmetic on the weights:
//!
//! - the shared input BatchNorm `x' = s x + t` is folded into the first layer of every
//!   tower: `x' W + b = x (diag(s) W) + (t W + b)`;
//! - a hidden BatchNorm after the activation becomes a per-unit `scale` and `shift`. It
//!   cannot be folded into the next layer because the residual link adds the previous
//!   task's output *after* it: the next layer sees `scale a_t + shift + o_(t-1)`, and no
//!   change of W scales `a_t` without also scaling `o_(t-1)`.
//!
//! [`ServingModel::forward_naive`] is the whole forward pass written as plainly as
//! possible, one candidate at a time: the reference the fast [`Scorer`](crate::Scorer)
//! is tested against, and the place to read the model's equations in code.

use tensor::Matrix;

use std::collections::HashMap;

use autodiff::ParamStore;

use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::layout::{InputLayout, Pooling};
use crate::network::Network;
use crate::params::ModelParams;
use crate::rng::SplitMix64;

/// One hidden layer of a tower: `a = scale * prelu(x W + b) + shift`.
#[derive(Debug, Clone, PartialEq)]
pub struct HiddenLayer {
    /// `in x out` weights.
    pub weight: Matrix,
    /// `out` biases.
    pub bias: Vec<f32>,
    /// PReLU slopes, one per unit (all zero for ReLU).
    pub slope: Vec<f32>,
    /// Per-unit scale of the (folded) BatchNorm; ones without BatchNorm.
    pub scale: Vec<f32>,
    /// Per-unit shift of the (folded) BatchNorm; zeros without BatchNorm.
    pub shift: Vec<f32>,
}

/// One task's tower: hidden layers and the logit `z = h w + b`.
#[derive(Debug, Clone, PartialEq)]
pub struct Tower {
    /// Hidden layers, input side first.
    pub layers: Vec<HiddenLayer>,
    /// Logit weights (one per unit of the last hidden layer, or of the input if none).
    pub logit_weight: Vec<f32>,
    /// Logit bias.
    pub logit_bias: f32,
}

/// A complete model ready to score.
#[derive(Debug, Clone, PartialEq)]
pub struct ServingModel {
    /// The configuration it was trained with.
    pub config: ModelConfig,
    /// Its inputs and tasks.
    pub layout: InputLayout,
    /// One `vocab x dim` table per categorical field, in layout order.
    pub embeddings: Vec<Matrix>,
    /// One tower per task, in chain order (ResFlow and independent towers; empty for the
    /// baselines).
    pub towers: Vec<Tower>,
    /// A baseline's input BatchNorm and head as named tensors, in training form (empty for
    /// ResFlow). The scorer runs the head on a tape in inference mode.
    pub head: Vec<(String, Matrix)>,
}

/// The inputs of one candidate, for the naive forward pass.
#[derive(Debug, Clone, Copy)]
pub struct CandidateRef<'a> {
    /// One id list per field, in layout order (length 1 for a single-valued field).
    pub ids: &'a [&'a [u32]],
    /// The dense features.
    pub dense: &'a [f32],
}

/// `[emb(field 0) | ... | emb(field F-1) | dense]` for one candidate: single-valued fields
/// look up one row, bags sum their rows (or average them), an empty bag gives zeros.
pub(crate) fn concat_inputs(
    embeddings: &[Matrix],
    layout: &InputLayout,
    dim: usize,
    c: CandidateRef<'_>,
) -> Vec<f32> {
    let mut x = Vec::with_capacity(layout.input_width(dim));
    for ((table, field), ids) in embeddings.iter().zip(&layout.fields).zip(c.ids) {
        let mut v = vec![0.0f32; dim];
        for &id in ids.iter() {
            v.iter_mut()
                .zip(table.row(id as usize))
                .for_each(|(a, b)| *a += b);
        }
        if field.bag == Some(Pooling::Mean) && !ids.is_empty() {
            v.iter_mut().for_each(|a| *a /= ids.len() as f32);
        }
        x.extend(v);
    }
    x.extend_from_slice(c.dense);
    x
}

fn sigmoid(z: f32) -> f32 {
    let mut y = [0.0];
    tensor::ops::sigmoid_with(tensor::Tier::Portable, &[z], &mut y);
    y[0]
}

impl ServingModel {
    /// A model with random weights (Glorot-uniform layers, small uniform embeddings, random
    /// PReLU slopes and BatchNorm scales), for tests and benchmarks of the serving path.
    pub fn random(config: ModelConfig, layout: InputLayout, seed: u64) -> Result<Self, ModelError> {
        config.validate()?;
        layout.validate()?;
        if !config.model.is_tower_chain() {
            return ModelParams::init(ModelConfig { seed, ..config }, layout)?.export();
        }
        let mut rng = SplitMix64::new(seed);
        let dim = config.embedding_dim;
        let embeddings = layout
            .fields
            .iter()
            .map(|f| Matrix::from_fn(f.vocab as usize, dim, |_, _| rng.uniform(0.05)))
            .collect();
        let mut towers = Vec::with_capacity(config.tasks.len());
        for _ in &config.tasks {
            let mut width = layout.input_width(dim);
            let mut layers = Vec::new();
            for &out in &config.hidden {
                let limit = (6.0 / (width + out) as f32).sqrt();
                layers.push(HiddenLayer {
                    weight: Matrix::from_fn(width, out, |_, _| rng.uniform(limit)),
                    bias: (0..out).map(|_| rng.uniform(0.1)).collect(),
                    slope: (0..out).map(|_| rng.uniform(0.25)).collect(),
                    scale: (0..out).map(|_| 1.0 + rng.uniform(0.2)).collect(),
                    shift: (0..out).map(|_| rng.uniform(0.1)).collect(),
                });
                width = out;
            }
            let limit = (6.0 / (width + 1) as f32).sqrt();
            towers.push(Tower {
                layers,
                logit_weight: (0..width).map(|_| rng.uniform(limit)).collect(),
                logit_bias: rng.uniform(0.5),
            });
        }
        let model = ServingModel {
            config,
            layout,
            embeddings,
            towers,
            head: Vec::new(),
        };
        model.validate()?;
        Ok(model)
    }

    /// Checks that every tensor has the shape the configuration and layout imply.
    pub fn validate(&self) -> Result<(), ModelError> {
        self.checked_head().map(|_| ())
    }

    /// [`ServingModel::validate`], returning a baseline's head as built for the check
    /// (`None` for ResFlow's towers), so that a scorer builds it once.
    pub(crate) fn checked_head(&self) -> Result<Option<(Network, ParamStore)>, ModelError> {
        self.config.validate()?;
        self.layout.validate()?;
        let bad = |d: String| Err(ModelError::Layout(d));
        let dim = self.config.embedding_dim;
        if self.embeddings.len() != self.layout.fields.len() {
            return bad(format!(
                "{} embedding tables for {} fields",
                self.embeddings.len(),
                self.layout.fields.len()
            ));
        }
        for (table, field) in self.embeddings.iter().zip(&self.layout.fields) {
            if table.shape() != (field.vocab as usize, dim) {
                return bad(format!(
                    "table of {:?} is {:?}, expected ({}, {dim})",
                    field.name,
                    table.shape(),
                    field.vocab
                ));
            }
        }
        if !self.config.model.is_tower_chain() {
            if self.layout.tasks.len() != self.config.tasks.len() || !self.towers.is_empty() {
                return bad(format!(
                    "{} layout tasks and {} towers for a {} model of {} tasks",
                    self.layout.tasks.len(),
                    self.towers.len(),
                    self.config.model.name(),
                    self.config.tasks.len()
                ));
            }
            return self.head_network().map(Some);
        }
        if !self.head.is_empty() {
            return bad(format!(
                "{} head tensors in a {} model",
                self.head.len(),
                self.config.model.name()
            ));
        }
        if self.layout.tasks.len() != self.config.tasks.len()
            || self.towers.len() != self.config.tasks.len()
        {
            return bad(format!(
                "{} towers, {} layout tasks, {} configured tasks",
                self.towers.len(),
                self.layout.tasks.len(),
                self.config.tasks.len()
            ));
        }
        for (t, tower) in self.towers.iter().enumerate() {
            let mut width = self.layout.input_width(dim);
            if tower.layers.len() != self.config.hidden.len() {
                return bad(format!(
                    "task {t}: {} layers, configured {}",
                    tower.layers.len(),
                    self.config.hidden.len()
                ));
            }
            for (l, (layer, &out)) in tower.layers.iter().zip(&self.config.hidden).enumerate() {
                let ok = layer.weight.shape() == (width, out)
                    && [&layer.bias, &layer.slope, &layer.scale, &layer.shift]
                        .iter()
                        .all(|v| v.len() == out);
                if !ok {
                    return bad(format!(
                        "task {t} layer {l}: weight {:?}, expected ({width}, {out})",
                        layer.weight.shape()
                    ));
                }
                width = out;
            }
            if tower.logit_weight.len() != width {
                return bad(format!(
                    "task {t}: logit weight has {} entries, expected {width}",
                    tower.logit_weight.len()
                ));
            }
        }
        Ok(None)
    }

    /// A baseline's input BatchNorm and head, built from [`ServingModel::head`] (shapes
    /// checked, every tensor used).
    pub(crate) fn head_network(&self) -> Result<(Network, ParamStore), ModelError> {
        let tensors: HashMap<String, Matrix> = self.head.iter().cloned().collect();
        if tensors.len() != self.head.len() {
            return Err(ModelError::Layout(
                "a head tensor name appears twice".into(),
            ));
        }
        let mut store = ParamStore::new();
        let net = Network::from_tensors(&self.config, &self.layout, &mut store, &tensors)?;
        Ok((net, store))
    }

    /// Probabilities of every task for one candidate, computed the plain way (f32, in the
    /// order of the equations). Ids must be in range. A baseline's head runs on a tape of
    /// its own, one candidate at a time.
    pub fn forward_naive(&self, c: CandidateRef<'_>) -> Vec<f32> {
        // x = [emb(field 0) | ... | dense]
        let x = concat_inputs(&self.embeddings, &self.layout, self.config.embedding_dim, c);
        if !self.config.model.is_tower_chain() {
            let (net, store) = self.head_network().expect("a validated model");
            let mut tape = autodiff::Tape::new();
            let xv = tape.input(1, x.len(), &x).expect("one row");
            let mut out = crate::network::Forward::default();
            net.forward_input(
                &mut tape,
                &store,
                xv,
                crate::network::Mode::Eval,
                None,
                &mut Default::default(),
                &mut out,
            )
            .expect("a validated model");
            return out
                .logits
                .iter()
                .map(|&z| sigmoid(tape.value(z)[0]))
                .collect();
        }
        let residual = self.config.links();
        let mut prev_hidden: Vec<Vec<f32>> = Vec::new();
        let mut prev_logit = 0.0f32;
        let mut probs = Vec::with_capacity(self.towers.len());
        for (t, tower) in self.towers.iter().enumerate() {
            let mut h = x.clone();
            let mut hidden = Vec::with_capacity(tower.layers.len());
            for (l, layer) in tower.layers.iter().enumerate() {
                // o_t^l = scale * prelu(h W + b) + shift  (+ o_(t-1)^l)
                let mut a: Vec<f32> = (0..layer.bias.len())
                    .map(|j| {
                        (0..h.len())
                            .map(|i| h[i] * layer.weight.get(i, j))
                            .sum::<f32>()
                            + layer.bias[j]
                    })
                    .collect();
                for j in 0..a.len() {
                    let act = if a[j] > 0.0 {
                        a[j]
                    } else {
                        layer.slope[j] * a[j]
                    };
                    a[j] = layer.scale[j] * act + layer.shift[j];
                    if residual.hidden && t > 0 {
                        a[j] += prev_hidden[l][j];
                    }
                }
                hidden.push(a.clone());
                h = a;
            }
            // z_t = own_t + z_(t-1)   (or + min(own_t, 0) in the monotone variant)
            let own: f32 = h
                .iter()
                .zip(&tower.logit_weight)
                .map(|(a, w)| a * w)
                .sum::<f32>()
                + tower.logit_bias;
            let z = if residual.logits && t > 0 {
                prev_logit + if residual.monotone { own.min(0.0) } else { own }
            } else {
                own
            };
            probs.push(sigmoid(z));
            prev_hidden = hidden;
            prev_logit = z;
        }
        probs
    }
}
