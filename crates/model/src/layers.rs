//! The vocabulary of layers every model kind is built from, and the [`Builder`] that
//! creates (or loads) their parameters as named tensors.
//!
//! ```text
//! Linear     z = x W (+ b)                     weight [in, out], bias [1, out]
//! BatchNorm  y = gamma (x - mean) / sqrt(var + eps) + beta     gamma, beta, running_mean, running_var [1, c]
//! Dense      o = BN(act(x W + b))              a hidden layer; act = PReLU (slope [1, out]) or ReLU
//! Mlp        Dense layers one after the other
//! Tower      an Mlp, then a 1-unit Linear: one task's logit
//! gate       softmax(x W), W [in, choices], no bias (mixing weights over experts)
//! ```
//!
//! A layer holds [`ParamRef`]s, not values: the values live in the model's named tensors
//! (`Vec<(String, Matrix)>`, names like `head/mmoe/expert/0/layer/1/weight`), and each
//! [`Graph`](crate::graph::Graph) looks them up in its own storage (the autodiff store, the serving plan, the
//! reference). So one head description serves training, serving and the tests.
//!
//! The [`Builder`] walks a head's structure once. Initialising, it draws every tensor
//! (Glorot-uniform weights, zero biases, PReLU slopes 0, BatchNorm `gamma = 1, beta = 0`,
//! statistics 0 / 1, as in the authors' Keras code); loading, it finds every tensor by name
//! in a model's list and checks its shape, and at the end that no tensor was left over.

use std::collections::HashMap;

use tensor::Matrix;

use crate::error::ModelError;
use crate::rng::SplitMix64;

/// Where a parameter lives: its position in the model's list of named tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ParamRef(pub usize);

/// `z = x W (+ b)`.
#[derive(Debug, Clone)]
pub struct Linear {
    /// `in x out`.
    pub weight: ParamRef,
    /// `1 x out`, if any.
    pub bias: Option<ParamRef>,
}

/// A BatchNorm layer of `c` channels; `mean` and `var` are running statistics (not
/// trained: updated by the trainer in `batch` mode, fixed at 0 / 1 otherwise).
#[derive(Debug, Clone)]
pub struct BatchNorm {
    /// Scale `1 x c`.
    pub gamma: ParamRef,
    /// Shift `1 x c`.
    pub beta: ParamRef,
    /// Running mean `1 x c`.
    pub mean: ParamRef,
    /// Running variance `1 x c`.
    pub var: ParamRef,
}

/// A hidden layer `BN(act(x W + b))`.
#[derive(Debug, Clone)]
pub struct Dense {
    /// `x W + b`.
    pub linear: Linear,
    /// PReLU slopes `1 x out` (kept at 0 and unused with ReLU).
    pub slope: ParamRef,
    /// The BatchNorm after the activation.
    pub bn: BatchNorm,
}

/// Dense layers one after the other (the identity when there are none).
#[derive(Debug, Clone, Default)]
pub struct Mlp {
    /// Input side first.
    pub layers: Vec<Dense>,
}

/// One task's tower: an MLP, then a 1-unit logit.
#[derive(Debug, Clone)]
pub struct Tower {
    /// The hidden layers.
    pub mlp: Mlp,
    /// `z = h w + c`.
    pub logit: Linear,
}

/// Whether a tensor name is a BatchNorm running statistic (not trained).
pub fn is_statistic(name: &str) -> bool {
    name.ends_with("/running_mean") || name.ends_with("/running_var")
}

enum Source<'a> {
    Init(SplitMix64),
    Load {
        tensors: &'a [(String, Matrix)],
        index: HashMap<&'a str, usize>,
        used: Vec<bool>,
    },
}

/// Creates a model's named tensors (initialising) or finds them in a model's list
/// (loading), and hands out the [`ParamRef`]s the layers hold.
pub struct Builder<'a> {
    source: Source<'a>,
    created: Vec<(String, Matrix)>,
}

impl<'a> Builder<'a> {
    /// Fresh tensors drawn from `rng`.
    pub fn init(rng: SplitMix64) -> Self {
        Self {
            source: Source::Init(rng),
            created: Vec::new(),
        }
    }

    /// The tensors of `tensors`, found by name (each name once).
    pub fn load(tensors: &'a [(String, Matrix)]) -> Result<Self, ModelError> {
        let mut index = HashMap::with_capacity(tensors.len());
        for (i, (name, _)) in tensors.iter().enumerate() {
            if index.insert(name.as_str(), i).is_some() {
                return Err(ModelError::Layout(format!("tensor {name:?} appears twice")));
            }
        }
        Ok(Self {
            source: Source::Load {
                tensors,
                index,
                used: vec![false; tensors.len()],
            },
            created: Vec::new(),
        })
    }

    /// Initialising: the tensors created, in creation order (the [`ParamRef`]s index this
    /// list). Loading: checks that every tensor was used and returns an empty list (the
    /// [`ParamRef`]s index the loaded list).
    pub fn finish(self) -> Result<Vec<(String, Matrix)>, ModelError> {
        match self.source {
            Source::Init(_) => Ok(self.created),
            Source::Load { tensors, used, .. } => {
                let extra: Vec<&str> = tensors
                    .iter()
                    .zip(&used)
                    .filter(|(_, u)| !**u)
                    .map(|((n, _), _)| n.as_str())
                    .collect();
                if let Some(first) = extra.first() {
                    return Err(ModelError::Layout(format!(
                        "{} tensor(s) the model does not use, e.g. {first:?}",
                        extra.len()
                    )));
                }
                Ok(Vec::new())
            }
        }
    }

    fn param(
        &mut self,
        name: String,
        rows: usize,
        cols: usize,
        init: impl FnOnce(&mut SplitMix64) -> Matrix,
    ) -> Result<ParamRef, ModelError> {
        match &mut self.source {
            Source::Init(rng) => {
                let m = init(rng);
                debug_assert_eq!(m.shape(), (rows, cols));
                self.created.push((name, m));
                Ok(ParamRef(self.created.len() - 1))
            }
            Source::Load {
                tensors,
                index,
                used,
            } => {
                let &i = index
                    .get(name.as_str())
                    .ok_or_else(|| ModelError::Layout(format!("tensor {name:?} is missing")))?;
                let shape = tensors[i].1.shape();
                if shape != (rows, cols) {
                    return Err(ModelError::Layout(format!(
                        "tensor {name:?} has shape {shape:?}, expected ({rows}, {cols})"
                    )));
                }
                used[i] = true;
                Ok(ParamRef(i))
            }
        }
    }

    /// A `rows x cols` weight, Glorot-uniform at initialisation:
    /// `U(-sqrt(6 / (rows + cols)), +sqrt(6 / (rows + cols)))`.
    pub fn weight(
        &mut self,
        name: String,
        rows: usize,
        cols: usize,
    ) -> Result<ParamRef, ModelError> {
        self.param(name, rows, cols, |rng| {
            let limit = (6.0 / (rows + cols) as f32).sqrt();
            Matrix::from_fn(rows, cols, |_, _| rng.uniform(limit))
        })
    }

    /// A `1 x cols` row filled with `value` at initialisation.
    pub fn row(&mut self, name: String, cols: usize, value: f32) -> Result<ParamRef, ModelError> {
        self.param(name, 1, cols, |_| Matrix::from_fn(1, cols, |_, _| value))
    }

    /// A BatchNorm of `width` channels, `name/{gamma,beta,running_mean,running_var}`.
    pub fn batch_norm(&mut self, name: &str, width: usize) -> Result<BatchNorm, ModelError> {
        Ok(BatchNorm {
            gamma: self.row(format!("{name}/gamma"), width, 1.0)?,
            beta: self.row(format!("{name}/beta"), width, 0.0)?,
            mean: self.row(format!("{name}/running_mean"), width, 0.0)?,
            var: self.row(format!("{name}/running_var"), width, 1.0)?,
        })
    }

    /// `x W + b` from `input` to `out` units, `name/{weight,bias}`.
    pub fn linear(&mut self, name: &str, input: usize, out: usize) -> Result<Linear, ModelError> {
        Ok(Linear {
            weight: self.weight(format!("{name}/weight"), input, out)?,
            bias: Some(self.row(format!("{name}/bias"), out, 0.0)?),
        })
    }

    /// A gate's `x W` over `choices` from `input` units (no bias, as in MMoE).
    pub fn gate(&mut self, name: &str, input: usize, choices: usize) -> Result<Linear, ModelError> {
        Ok(Linear {
            weight: self.weight(format!("{name}/weight"), input, choices)?,
            bias: None,
        })
    }

    /// A hidden layer from `input` to `out` units, `name/{weight,bias,slope,bn/...}`.
    pub fn dense(&mut self, name: &str, input: usize, out: usize) -> Result<Dense, ModelError> {
        Ok(Dense {
            linear: self.linear(name, input, out)?,
            slope: self.row(format!("{name}/slope"), out, 0.0)?,
            bn: self.batch_norm(&format!("{name}/bn"), out)?,
        })
    }

    /// Hidden layers `name/layer/<l>/...` of `widths`; returns them and the output width
    /// (`input` if there are none).
    pub fn mlp(
        &mut self,
        name: &str,
        input: usize,
        widths: &[usize],
    ) -> Result<(Mlp, usize), ModelError> {
        let mut width = input;
        let mut layers = Vec::with_capacity(widths.len());
        for (l, &out) in widths.iter().enumerate() {
            layers.push(self.dense(&format!("{name}/layer/{l}"), width, out)?);
            width = out;
        }
        Ok((Mlp { layers }, width))
    }

    /// A tower `name/layer/<l>/...`, `name/logit/...` from `input` units.
    pub fn tower(
        &mut self,
        name: &str,
        input: usize,
        widths: &[usize],
    ) -> Result<Tower, ModelError> {
        let (mlp, width) = self.mlp(name, input, widths)?;
        Ok(Tower {
            mlp,
            logit: self.linear(&format!("{name}/logit"), width, 1)?,
        })
    }

    /// One tower per task, `name/task/<t>/...`, each from `input` units.
    pub fn towers(
        &mut self,
        name: &str,
        tasks: usize,
        input: usize,
        widths: &[usize],
    ) -> Result<Vec<Tower>, ModelError> {
        (0..tasks)
            .map(|t| self.tower(&format!("{name}/task/{t}"), input, widths))
            .collect()
    }
}
