//! Loss balancing: how the per-task losses become the one loss a step minimises.
//!
//! ```text
//! fixed:        loss = sum_t lambda_t L_t
//! uncertainty:  loss = sum_t exp(-s_t) lambda_t L_t + s_t / 2       s_t learned (Adam)
//! gradnorm:     loss = sum_t w_t lambda_t L_t                        w_t learned (Adam), sum_t w_t = T
//!               G_t = || d(w_t lambda_t L_t) / dW ||,  W = the input BatchNorm's gamma and beta
//!               L_grad = sum_t | G_t - mean(G) r_t^alpha |,  r_t = (L_t / L_t(0)) / mean_j (L_j / L_j(0))
//! ```
//!
//! Every kind reaches the network the same way: a factor per task on `lambda_t`
//! ([`Balancer::loss_weights`]), so the tape records the same ops for all of them and the
//! fixed weights record exactly what they always did. The learned values (`s_t` or `w_t`)
//! are a `1 x T` parameter in a store of their own, stepped by the trainer's Adam (same
//! `beta1`, `beta2`, `epsilon`; the step size may be set apart). Their gradients are closed
//! forms of the per-task losses (and, for GradNorm, of the per-task gradient norms the
//! workers measure), written once here as plain functions so that the tests can check them
//! against finite differences. They are saved in checkpoints and never in the model file:
//! serving does not depend on how the model was trained. Equations and costs:
//! `docs/training.md`.

use autodiff::{Adam, AdamConfig, ParamStore};
use model::config::{LossBalancing, ModelConfig};
use model::{ModelError, config::OptimizerConfig};
use tensor::Matrix;

use crate::error::Error;

/// The smallest GradNorm weight (before renormalisation): an Adam step could otherwise
/// carry a weight through zero, flipping the sign of its task's loss.
pub const GRADNORM_MIN_WEIGHT: f32 = 1e-3;
/// The bound on a log-variance `|s_t|`: `exp(30)` is about `1e13`, far beyond any useful
/// weight and far from the `f32` overflow of `exp(89)`.
pub const MAX_LOG_VARIANCE: f32 = 30.0;

/// Uncertainty weighting's objective, `sum_t exp(-s_t) l_t + s_t / 2`, for weighted task
/// losses `l_t = lambda_t L_t`.
pub fn uncertainty_loss(s: &[f32], weighted: &[f64]) -> f64 {
    s.iter()
        .zip(weighted)
        .map(|(&s, &l)| (-(s as f64)).exp() * l + 0.5 * s as f64)
        .sum()
}

/// Its gradient with respect to each `s_t`: `1/2 - exp(-s_t) l_t`, into `out`.
pub fn uncertainty_gradient(s: &[f32], weighted: &[f64], out: &mut [f32]) {
    for ((g, &s), &l) in out.iter_mut().zip(s).zip(weighted) {
        *g = (0.5 - (-(s as f64)).exp() * l) as f32;
    }
}

/// GradNorm's targets `mean_j(G_j) r_t^alpha` into `out`, for weights `w`, per-task
/// gradient norms `a_t = || d(lambda_t L_t)/dW ||` (so `G_t = w_t a_t`), losses `L_t` and
/// first-step losses `L_t(0)`.
pub fn gradnorm_targets(
    w: &[f32],
    a: &[f64],
    losses: &[f64],
    initial: &[f32],
    alpha: f32,
    out: &mut [f64],
) {
    let t = w.len() as f64;
    let mean_g = w.iter().zip(a).map(|(&w, &a)| w as f64 * a).sum::<f64>() / t;
    // Inverse training rates L_t / L_t(0), then relative to their mean.
    let rate = |k: usize| losses[k] / (initial[k] as f64).max(f64::MIN_POSITIVE);
    let mean_rate = (0..w.len()).map(rate).sum::<f64>() / t;
    for (k, o) in out.iter_mut().enumerate() {
        let r = if mean_rate > 0.0 {
            rate(k) / mean_rate
        } else {
            1.0
        };
        *o = mean_g * r.powf(alpha as f64);
    }
}

/// GradNorm's objective `sum_t |w_t a_t - target_t|` (targets held constant, as the paper
/// prescribes).
pub fn gradnorm_loss(w: &[f32], a: &[f64], targets: &[f64]) -> f64 {
    w.iter()
        .zip(a)
        .zip(targets)
        .map(|((&w, &a), &c)| (w as f64 * a - c).abs())
        .sum()
}

/// Its gradient with respect to each `w_t`: `sign(w_t a_t - target_t) a_t`, into `out`.
pub fn gradnorm_gradient(w: &[f32], a: &[f64], targets: &[f64], out: &mut [f32]) {
    for (((g, &w), &a), &c) in out.iter_mut().zip(w).zip(a).zip(targets) {
        let d = w as f64 * a - c;
        *g = if d > 0.0 {
            a as f32
        } else if d < 0.0 {
            -a as f32
        } else {
            0.0
        };
    }
}

/// The balancing state of a trainer: the learned values and their optimiser.
#[derive(Debug, Clone)]
pub struct Balancer {
    kind: LossBalancing,
    /// The tasks' `loss_weight`s, `lambda_t`.
    lambda: Vec<f32>,
    /// What the network multiplies each task loss by this step.
    weights: Vec<f32>,
    /// `s_t` (uncertainty) or `w_t` (GradNorm): one `1 x T` parameter.
    store: ParamStore,
    adam: Option<Adam>,
    grad: Vec<Vec<f32>>,
    /// GradNorm: the first step's task losses `L_t(0)` (empty before it).
    initial: Vec<f32>,
    /// GradNorm scratch: per-task gradient norms `a_t` and targets.
    norms: Vec<f64>,
    targets: Vec<f64>,
}

/// The balancing state a checkpoint stores.
#[derive(Debug, Clone, PartialEq)]
pub struct BalanceState {
    /// `s_t` or `w_t`.
    pub values: Vec<f32>,
    /// Adam's first moments.
    pub m: Vec<f32>,
    /// Adam's second moments.
    pub v: Vec<f32>,
    /// Adam's step count.
    pub steps: u64,
    /// GradNorm's first-step losses (empty before the first step, and for uncertainty).
    pub initial: Vec<f32>,
}

impl Balancer {
    /// The balancing `config.loss_balancing` asks for, at its starting point (`s_t = 0`,
    /// `w_t = 1`: both start from the fixed weights).
    pub fn new(config: &ModelConfig) -> Result<Self, Error> {
        let lambda: Vec<f32> = config.tasks.iter().map(|t| t.loss_weight).collect();
        let tasks = lambda.len();
        let kind = config.loss_balancing;
        let start = match kind {
            LossBalancing::Uncertainty(_) => 0.0,
            _ => 1.0,
        };
        let mut store = ParamStore::new();
        let name = match kind {
            LossBalancing::Uncertainty(_) => "balance/log_variance",
            _ => "balance/task_weight",
        };
        store.add(
            name,
            Matrix::from_slice(1, tasks, &vec![start; tasks]).map_err(ModelError::from)?,
        );
        let adam = match kind.learning_rate(&config.optimizer) {
            None => None,
            Some(lr) => Some(Adam::try_new(adam_config(&config.optimizer, lr), &store)?),
        };
        let mut b = Self {
            kind,
            lambda,
            weights: vec![0.0; tasks],
            store,
            adam,
            grad: vec![vec![0.0; tasks]],
            initial: Vec::new(),
            norms: vec![0.0; tasks],
            targets: vec![0.0; tasks],
        };
        b.refresh();
        Ok(b)
    }

    /// The balancing in use.
    pub fn kind(&self) -> LossBalancing {
        self.kind
    }

    /// The weight of each task loss in this step's total, `lambda_t exp(-s_t)` or
    /// `lambda_t w_t`; `None` for fixed weights (the network then uses `lambda_t` itself).
    pub fn loss_weights(&self) -> Option<&[f32]> {
        (!self.kind.is_fixed()).then_some(&self.weights[..])
    }

    /// The learned values: `s_t` for uncertainty weighting, `w_t` for GradNorm, `None` for
    /// fixed weights.
    pub fn learned(&self) -> Option<&[f32]> {
        (!self.kind.is_fixed()).then(|| self.store.dense[0].value.as_slice())
    }

    /// Whether the workers must measure per-task gradients on the shared parameters.
    pub fn wants_task_gradients(&self) -> bool {
        matches!(self.kind, LossBalancing::Gradnorm(_))
    }

    fn refresh(&mut self) {
        let v = self.store.dense[0].value.as_slice();
        for ((w, &l), &x) in self.weights.iter_mut().zip(&self.lambda).zip(v) {
            *w = match self.kind {
                LossBalancing::Fixed => l,
                LossBalancing::Uncertainty(_) => l * (-x).exp(),
                LossBalancing::Gradnorm(_) => l * x,
            };
        }
    }

    /// One update after a step whose batch-mean task losses were `losses` (`L_t`, before
    /// `lambda_t`) and, for GradNorm, whose per-task gradients on the shared parameters
    /// were `task_grads[t]` (`dL_t/dW`, summed over the workers). Allocates nothing.
    pub fn update(&mut self, losses: &[f64], task_grads: &[Vec<f32>]) {
        let Some(adam) = self.adam.as_mut() else {
            return;
        };
        let t = self.lambda.len();
        let values = self.store.dense[0].value.as_slice();
        let grad = &mut self.grad[0];
        match self.kind {
            LossBalancing::Fixed => return,
            LossBalancing::Uncertainty(_) => {
                for ((n, &l), &lambda) in self.norms.iter_mut().zip(losses).zip(&self.lambda) {
                    *n = lambda as f64 * l;
                }
                uncertainty_gradient(values, &self.norms, grad);
            }
            LossBalancing::Gradnorm(g) => {
                if self.initial.is_empty() {
                    self.initial.extend(losses.iter().map(|&l| l as f32));
                }
                for ((n, tg), &lambda) in self.norms.iter_mut().zip(task_grads).zip(&self.lambda) {
                    let sq: f64 = tg.iter().map(|&x| x as f64 * x as f64).sum();
                    *n = lambda as f64 * sq.sqrt();
                }
                gradnorm_targets(
                    values,
                    &self.norms,
                    losses,
                    &self.initial,
                    g.alpha,
                    &mut self.targets,
                );
                gradnorm_gradient(values, &self.norms, &self.targets, grad);
            }
        }
        adam.step_dense(&mut self.store.dense, &self.grad);
        let v = self.store.dense[0].value.as_mut_slice();
        match self.kind {
            LossBalancing::Uncertainty(_) => {
                v.iter_mut()
                    .for_each(|s| *s = s.clamp(-MAX_LOG_VARIANCE, MAX_LOG_VARIANCE));
            }
            LossBalancing::Gradnorm(_) => {
                v.iter_mut().for_each(|w| *w = w.max(GRADNORM_MIN_WEIGHT));
                let sum: f32 = v.iter().sum();
                v.iter_mut().for_each(|w| *w *= t as f32 / sum);
            }
            LossBalancing::Fixed => {}
        }
        self.refresh();
    }

    /// GradNorm's last per-task gradient norms `G_t = w_t || d(lambda_t L_t)/dW ||`
    /// (before that step's update of `w`); zeros before the first step.
    pub fn gradient_norms(&self) -> Vec<f64> {
        match self.kind {
            LossBalancing::Gradnorm(_) => self.norms.clone(),
            _ => Vec::new(),
        }
    }

    /// The state to checkpoint (`None` for fixed weights).
    pub fn state(&self) -> Option<BalanceState> {
        let adam = self.adam.as_ref()?;
        let (m, v) = adam.moments();
        Some(BalanceState {
            values: self.store.dense[0].value.to_vec(),
            m: m[0].clone(),
            v: v[0].clone(),
            steps: adam.steps(),
            initial: self.initial.clone(),
        })
    }

    /// Restores a checkpointed state (lengths checked against the tasks).
    pub fn restore(&mut self, state: BalanceState) -> Result<(), ModelError> {
        let t = self.lambda.len();
        let Some(adam) = self.adam.as_mut() else {
            return Err(ModelError::Config(
                "balancing state given for fixed loss weights".into(),
            ));
        };
        let ok = |n: usize| n == t;
        if !(ok(state.values.len())
            && ok(state.m.len())
            && ok(state.v.len())
            && (state.initial.is_empty() || ok(state.initial.len())))
        {
            return Err(ModelError::Config(format!(
                "balancing state for {} tasks, the model has {t}",
                state.values.len()
            )));
        }
        self.store.dense[0]
            .value
            .as_mut_slice()
            .copy_from_slice(&state.values);
        adam.restore(vec![state.m], vec![state.v], state.steps);
        self.initial = state.initial;
        self.refresh();
        Ok(())
    }
}

fn adam_config(o: &OptimizerConfig, lr: f32) -> AdamConfig {
    AdamConfig {
        lr,
        beta1: o.beta1,
        beta2: o.beta2,
        eps: o.epsilon,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tensor::tolerance::APPROXIMATE;

    /// Central finite difference of `f` at `x[k]`, over the step the `f32` values really take.
    fn fd(f: impl Fn(&[f32]) -> f64, x: &[f32], k: usize, h: f32) -> f64 {
        let mut p = x.to_vec();
        p[k] = x[k] + h;
        let (up, hi) = (f(&p), p[k] as f64);
        p[k] = x[k] - h;
        let (down, lo) = (f(&p), p[k] as f64);
        (up - down) / (hi - lo)
    }

    #[test]
    fn uncertainty_gradient_matches_finite_differences() {
        let s = [0.3f32, -1.2, 2.0];
        let l = [0.7f64, 0.004, 3.5];
        let mut g = [0.0f32; 3];
        uncertainty_gradient(&s, &l, &mut g);
        for (k, &g) in g.iter().enumerate() {
            let want = fd(|s| uncertainty_loss(s, &l), &s, k, 1e-3);
            let err = (g as f64 - want).abs() / want.abs().max(1.0);
            assert!(err < APPROXIMATE as f64, "s_{k}: {g} vs {want}");
        }
        // The minimum over s_t is at exp(-s_t) l_t = 1/2: the weighted losses equalised.
        let at = [(2.0 * l[0]).ln() as f32];
        uncertainty_gradient(&at, &l[..1], &mut g[..1]);
        assert!(g[0].abs() < APPROXIMATE, "{}", g[0]);
    }

    #[test]
    fn gradnorm_gradient_matches_finite_differences_away_from_the_kinks() {
        let w = [0.5f32, 1.1, 1.4];
        let a = [2.0f64, 0.01, 0.7];
        let losses = [0.6f64, 0.05, 0.3];
        let initial = [0.7f32, 0.06, 0.5];
        let mut targets = [0.0f64; 3];
        gradnorm_targets(&w, &a, &losses, &initial, 1.5, &mut targets);
        // Targets by hand: mean G, times r^alpha.
        let g: Vec<f64> = w.iter().zip(&a).map(|(&w, &a)| w as f64 * a).collect();
        let mean_g = g.iter().sum::<f64>() / 3.0;
        let rates: Vec<f64> = losses
            .iter()
            .zip(&initial)
            .map(|(&l, &i)| l / i as f64)
            .collect();
        let mean_r = rates.iter().sum::<f64>() / 3.0;
        for k in 0..3 {
            let want = mean_g * (rates[k] / mean_r).powf(1.5);
            assert!((targets[k] - want).abs() < 1e-12, "{k}");
        }
        let mut grad = [0.0f32; 3];
        gradnorm_gradient(&w, &a, &targets, &mut grad);
        for (k, &g) in grad.iter().enumerate() {
            let want = fd(|w| gradnorm_loss(w, &a, &targets), &w, k, 1e-3);
            let err = (g as f64 - want).abs() / want.abs().max(1.0);
            assert!(err < APPROXIMATE as f64, "w_{k}: {g} vs {want}");
        }
        // The badly scaled task (a tiny gradient norm) is below its target: its weight rises.
        assert!(grad[1] < 0.0 && grad[0] > 0.0, "{grad:?}");
    }

    #[test]
    fn gradnorm_weights_stay_positive_and_sum_to_the_task_count() {
        let config = ModelConfig::from_json(
            r#"{"loss_balancing": {"kind": "gradnorm", "learning_rate": 0.5}}"#,
        )
        .unwrap();
        let mut b = Balancer::new(&config).unwrap();
        assert_eq!(b.learned().unwrap(), &[1.0, 1.0]);
        assert_eq!(b.loss_weights().unwrap(), &[2.0, 1.0], "lambda_t w_t");
        let grads = vec![vec![1.0f32, 0.0], vec![0.0, 1e-4]];
        for _ in 0..50 {
            b.update(&[0.5, 0.5], &grads);
            let w = b.learned().unwrap();
            assert!(w.iter().all(|&w| w >= GRADNORM_MIN_WEIGHT / 2.0), "{w:?}");
            assert!((w.iter().sum::<f32>() - 2.0).abs() < 1e-5, "{w:?}");
        }
        let w = b.learned().unwrap();
        assert!(
            w[1] > 10.0 * w[0],
            "the small-gradient task gains weight: {w:?}"
        );
        // A checkpointed state restores exactly.
        let state = b.state().unwrap();
        let mut c = Balancer::new(&config).unwrap();
        c.restore(state.clone()).unwrap();
        assert_eq!(c.state().unwrap(), state);
        assert_eq!(c.loss_weights(), b.loss_weights());
        let mut short = state;
        short.values.pop();
        assert!(c.restore(short).is_err());
        // Fixed weights have no state and leave the network's weights alone.
        let f = Balancer::new(&ModelConfig::default()).unwrap();
        assert!(f.state().is_none() && f.loss_weights().is_none());
    }
}
