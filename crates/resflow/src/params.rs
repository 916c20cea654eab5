//! The trainable parameters of ResFlow, their initialisation, and the export to the
//! serving form.
//!
//! ```text
//! x  = [emb(f_0) | ... | emb(f_F-1) | dense]                     (1 x I), I = F dim + D
//! x' = BN_in(x)                                                   shared by every tower
//! o_t^1 = BN_t^1(PReLU_t^1(x' W_t^1 + b_t^1))     (+ o_(t-1)^1)   residual, tasks t > 0
//! o_t^l = BN_t^l(PReLU_t^l(o_t^(l-1) W_t^l + b_t^l)) (+ o_(t-1)^l)
//! z_t   = o_t^L w_t + c_t                          (+ z_(t-1))
//! p_t   = sigmoid(z_t)
//! ```
//!
//! Initialisation (seeded, reproducible) follows the authors' Keras defaults: Glorot
//! uniform for dense weights (`U(-sqrt(6 / (in + out)), +sqrt(6 / (in + out)))`), zero
//! biases, PReLU slopes 0, BatchNorm `gamma = 1, beta = 0` with statistics 0 / 1, and
//! embeddings `U(-0.05, 0.05)`.

use tensor::Matrix;

use crate::config::{Activation, BatchNormMode, ModelConfig};
use crate::error::ModelError;
use crate::layout::InputLayout;
use crate::network::{Network, input_bn_tensors};
use crate::rng::SplitMix64;
use crate::serving::{CandidateRef, HiddenLayer, ServingModel, Tower, concat_inputs};

/// One BatchNorm layer's parameters and running statistics, per channel.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchNormParams {
    /// Learned scale.
    pub gamma: Vec<f32>,
    /// Learned shift.
    pub beta: Vec<f32>,
    /// Running mean (used at inference in `batch` mode; fixed at 0 in `affine` mode).
    pub running_mean: Vec<f32>,
    /// Running variance (used at inference in `batch` mode; fixed at 1 in `affine` mode).
    pub running_var: Vec<f32>,
}

impl BatchNormParams {
    /// `gamma = 1, beta = 0`, statistics 0 / 1, for `width` channels.
    pub fn identity(width: usize) -> Self {
        Self {
            gamma: vec![1.0; width],
            beta: vec![0.0; width],
            running_mean: vec![0.0; width],
            running_var: vec![1.0; width],
        }
    }

    /// The inference-time transform `y = scale x + shift` of this layer.
    ///
    /// - `affine` (the authors' code): statistics frozen at 0 / 1, so
    ///   `scale = gamma / sqrt(1 + eps)`, `shift = beta`;
    /// - `batch`: `scale = gamma / sqrt(var + eps)`, `shift = beta - mean scale`;
    /// - `none`: the identity.
    pub fn scale_shift(&self, mode: BatchNormMode, eps: f32) -> (Vec<f32>, Vec<f32>) {
        let n = self.gamma.len();
        match mode {
            BatchNormMode::None => (vec![1.0; n], vec![0.0; n]),
            BatchNormMode::Affine => (
                self.gamma.iter().map(|g| g / (1.0 + eps).sqrt()).collect(),
                self.beta.clone(),
            ),
            BatchNormMode::Batch => {
                let scale: Vec<f32> = self
                    .gamma
                    .iter()
                    .zip(&self.running_var)
                    .map(|(g, v)| g / (v + eps).sqrt())
                    .collect();
                let shift = self
                    .beta
                    .iter()
                    .zip(&self.running_mean)
                    .zip(&scale)
                    .map(|((b, m), s)| b - m * s)
                    .collect();
                (scale, shift)
            }
        }
    }
}

/// One hidden layer: dense weights, PReLU slopes, BatchNorm.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerParams {
    /// `in x out` weights.
    pub weight: Matrix,
    /// `out` biases.
    pub bias: Vec<f32>,
    /// PReLU slopes (kept at 0 and not trained for ReLU).
    pub slope: Vec<f32>,
    /// The BatchNorm after the activation.
    pub bn: BatchNormParams,
}

/// One task tower.
#[derive(Debug, Clone, PartialEq)]
pub struct TowerParams {
    /// Hidden layers, input side first.
    pub layers: Vec<LayerParams>,
    /// Logit weights.
    pub logit_weight: Vec<f32>,
    /// Logit bias.
    pub logit_bias: f32,
}

/// Every parameter of a ResFlow model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelParams {
    /// The configuration.
    pub config: ModelConfig,
    /// The inputs and tasks.
    pub layout: InputLayout,
    /// One `vocab x dim` table per field.
    pub embeddings: Vec<Matrix>,
    /// The BatchNorm on the concatenated input, shared by all towers.
    pub input_bn: BatchNormParams,
    /// One tower per task (ResFlow and independent towers; empty for the baselines).
    pub towers: Vec<TowerParams>,
    /// A baseline's head as named tensors, running statistics included (empty for
    /// ResFlow; see `models`).
    pub head: Vec<(String, Matrix)>,
}

fn glorot(rng: &mut SplitMix64, rows: usize, cols: usize) -> Matrix {
    let limit = (6.0 / (rows + cols) as f32).sqrt();
    Matrix::from_fn(rows, cols, |_, _| rng.uniform(limit))
}

impl ModelParams {
    /// Freshly initialised parameters (see the module documentation), seeded by
    /// `config.seed`.
    pub fn init(config: ModelConfig, layout: InputLayout) -> Result<Self, ModelError> {
        config.validate()?;
        layout.validate()?;
        if layout.tasks.len() != config.tasks.len() {
            return Err(ModelError::Layout(format!(
                "the data has {} tasks ({:?}), the configuration {}",
                layout.tasks.len(),
                layout.tasks,
                config.tasks.len()
            )));
        }
        // Fields named in the configuration exist; the sizes fit in memory.
        crate::checks::check_config_for_layout(&config, &layout)?;
        let mut rng = SplitMix64::new(config.seed);
        let dim = config.embedding_dim;
        let embeddings = layout
            .fields
            .iter()
            .map(|f| Matrix::from_fn(f.vocab as usize, dim, |_, _| rng.uniform(0.05)))
            .collect();
        let input = layout.input_width(dim);
        if !config.model.is_tower_chain() {
            return Ok(Self {
                head: Network::init_head(&config, input, rng)?,
                input_bn: BatchNormParams::identity(input),
                config,
                layout,
                embeddings,
                towers: Vec::new(),
            });
        }
        let towers = (0..config.tasks.len())
            .map(|_| {
                let mut width = input;
                let layers = config
                    .hidden
                    .iter()
                    .map(|&out| {
                        let layer = LayerParams {
                            weight: glorot(&mut rng, width, out),
                            bias: vec![0.0; out],
                            slope: vec![0.0; out],
                            bn: BatchNormParams::identity(out),
                        };
                        width = out;
                        layer
                    })
                    .collect();
                TowerParams {
                    layers,
                    logit_weight: glorot(&mut rng, width, 1).to_vec(),
                    logit_bias: 0.0,
                }
            })
            .collect();
        Ok(Self {
            input_bn: BatchNormParams::identity(input),
            config,
            layout,
            embeddings,
            towers,
            head: Vec::new(),
        })
    }

    /// Number of trainable floats (embedding tables included).
    pub fn parameter_count(&self) -> usize {
        let bn = |b: &BatchNormParams| {
            if self.config.batch_norm == BatchNormMode::None {
                0
            } else {
                2 * b.gamma.len()
            }
        };
        let prelu = self.config.activation == Activation::Prelu;
        self.embeddings
            .iter()
            .map(|t| t.rows() * t.cols())
            .sum::<usize>()
            + bn(&self.input_bn)
            + self
                .towers
                .iter()
                .map(|t| {
                    t.layers
                        .iter()
                        .map(|l| {
                            let (i, o) = l.weight.shape();
                            i * o + o + if prelu { o } else { 0 } + bn(&l.bn)
                        })
                        .sum::<usize>()
                        + t.logit_weight.len()
                        + 1
                })
                .sum::<usize>()
            + crate::models::trainable(&self.config, &self.head)
    }

    /// Trainable floats outside the embedding tables.
    pub fn dense_parameter_count(&self) -> usize {
        self.parameter_count()
            - self
                .embeddings
                .iter()
                .map(|t| t.rows() * t.cols())
                .sum::<usize>()
    }

    /// Multiply-adds of the dense layers for one candidate (the embedding lookups and the
    /// element-wise work are not counted; a FLOP count is twice this).
    pub fn multiply_adds(&self) -> usize {
        let towers: usize = self
            .towers
            .iter()
            .map(|t| {
                t.layers
                    .iter()
                    .map(|l| l.weight.rows() * l.weight.cols())
                    .sum::<usize>()
                    + t.logit_weight.len()
            })
            .sum();
        towers + crate::models::multiply_adds(&self.head)
    }

    /// The serving form: the input BatchNorm folded into every tower's first layer, each
    /// hidden BatchNorm reduced to a scale and shift (see [`ServingModel`]).
    pub fn export(&self) -> Result<ServingModel, ModelError> {
        if !self.config.model.is_tower_chain() {
            // A baseline serves in its training form: the scorer runs its head on a tape.
            let mut head = input_bn_tensors(&self.input_bn);
            head.extend(self.head.iter().cloned());
            head.sort_by(|a, b| a.0.cmp(&b.0));
            let model = ServingModel {
                config: self.config.clone(),
                layout: self.layout.clone(),
                embeddings: self.embeddings.clone(),
                towers: Vec::new(),
                head,
            };
            model.validate()?;
            return Ok(model);
        }
        let (mode, eps) = (self.config.batch_norm, self.config.bn_epsilon);
        let (s_in, t_in) = self.input_bn.scale_shift(mode, eps);
        let towers = self
            .towers
            .iter()
            .map(|tower| {
                let layers = tower
                    .layers
                    .iter()
                    .enumerate()
                    .map(|(l, layer)| {
                        let (scale, shift) = layer.bn.scale_shift(mode, eps);
                        let (weight, bias) = if l == 0 {
                            // (s x + t) W + b = x (diag(s) W) + (t W + b)
                            let w = Matrix::from_fn(
                                layer.weight.rows(),
                                layer.weight.cols(),
                                |i, j| s_in[i] * layer.weight.get(i, j),
                            );
                            let b = (0..layer.weight.cols())
                                .map(|j| {
                                    layer.bias[j]
                                        + (0..layer.weight.rows())
                                            .map(|i| t_in[i] * layer.weight.get(i, j))
                                            .sum::<f32>()
                                })
                                .collect();
                            (w, b)
                        } else {
                            (layer.weight.clone(), layer.bias.clone())
                        };
                        let slope = match self.config.activation {
                            Activation::Prelu => layer.slope.clone(),
                            Activation::Relu => vec![0.0; layer.slope.len()],
                        };
                        HiddenLayer {
                            weight,
                            bias,
                            slope,
                            scale,
                            shift,
                        }
                    })
                    .collect();
                Tower {
                    layers,
                    logit_weight: tower.logit_weight.clone(),
                    logit_bias: tower.logit_bias,
                }
            })
            .collect();
        let model = ServingModel {
            config: self.config.clone(),
            layout: self.layout.clone(),
            embeddings: self.embeddings.clone(),
            towers,
            head: Vec::new(),
        };
        model.validate()?;
        Ok(model)
    }

    /// Inference-mode probabilities for one candidate, with every BatchNorm applied as a
    /// separate step: the reference that [`ModelParams::export`] must reproduce. ResFlow's
    /// tower chain only (a baseline's export keeps its training form, so there is nothing
    /// to check); empty for a baseline.
    pub fn forward_eval_naive(&self, c: CandidateRef<'_>) -> Vec<f32> {
        let (mode, eps) = (self.config.batch_norm, self.config.bn_epsilon);
        let mut x = concat_inputs(&self.embeddings, &self.layout, self.config.embedding_dim, c);
        let bn = |p: &BatchNormParams, v: &mut [f32]| {
            let (s, t) = p.scale_shift(mode, eps);
            v.iter_mut()
                .zip(s.iter().zip(&t))
                .for_each(|(a, (s, t))| *a = s * *a + t);
        };
        bn(&self.input_bn, &mut x);
        let residual = self.config.links();
        let (mut prev, mut prev_z, mut probs) = (Vec::<Vec<f32>>::new(), 0.0f32, Vec::new());
        for (t, tower) in self.towers.iter().enumerate() {
            let mut h = x.clone();
            let mut outs = Vec::new();
            for (l, layer) in tower.layers.iter().enumerate() {
                let mut a: Vec<f32> = (0..layer.bias.len())
                    .map(|j| {
                        (0..h.len())
                            .map(|i| h[i] * layer.weight.get(i, j))
                            .sum::<f32>()
                            + layer.bias[j]
                    })
                    .collect();
                let prelu = self.config.activation == Activation::Prelu;
                a.iter_mut().zip(&layer.slope).for_each(|(v, s)| {
                    *v = if *v > 0.0 {
                        *v
                    } else if prelu {
                        s * *v
                    } else {
                        0.0
                    }
                });
                bn(&layer.bn, &mut a);
                if residual.hidden && t > 0 {
                    a.iter_mut().zip(&prev[l]).for_each(|(v, p)| *v += p);
                }
                outs.push(a.clone());
                h = a;
            }
            let own = h
                .iter()
                .zip(&tower.logit_weight)
                .map(|(a, w)| a * w)
                .sum::<f32>()
                + tower.logit_bias;
            let z = if residual.logits && t > 0 {
                prev_z + if residual.monotone { own.min(0.0) } else { own }
            } else {
                own
            };
            probs.push(1.0 / (1.0 + (-z as f64).exp() as f32));
            prev = outs;
            prev_z = z;
        }
        probs
    }
}
