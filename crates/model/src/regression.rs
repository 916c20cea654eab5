//! Regression: predicting a continuous target (a play time) with the same heads, in two
//! forms.
//!
//! **Chained thresholds** (the paper's other-modality experiment). Thresholds
//! `t_1 < ... < t_K` cut the target's range into `K + 1` buckets; head `i` predicts
//! `q_i = P(y > t_i)`, trained with the cross-entropy on the derived label `1[y > t_i]`.
//! ResFlow chains the heads on their logits (`z_i = own_i + z_(i-1)`; the authors' code has
//! no hidden links and no BatchNorm there), so each head learns how much less likely the
//! next threshold is. The expected value decodes the bucket probabilities:
//!
//! ```text
//! q_0 = 1, q_(K+1) = 0
//! b_i = max(q_i - q_(i+1), 0)                  i = 0..K   (bucket (t_i, t_(i+1)])
//! v_0 = low,  v_i = (t_i + t_(i+1)) / 2,  v_K = high
//! E[y] = sum_i b_i v_i
//! ```
//!
//! The clamp matters only when the heads are not monotone (independent towers, or chained
//! heads whose own part is positive); the sum is not renormalised. `low` and `high`, the
//! values of the open end buckets, are configurable; by default they are the mean training
//! target below `t_1` and above `t_K`.
//!
//! **Direct regression** (the baseline). One head whose logit is the standardised target:
//! `y_hat = mean + std * z`, trained with the squared error `((y - mean) / std - z)^2`.
//!
//! Thresholds may be given outright or as percentiles of the training target; either way
//! they, the end values and the statistics are *resolved* from the training data before
//! training ([`RegressionConfig::resolve`]), and the resolved configuration is what a model
//! file stores, so a served model decodes exactly as the trained one. The heads of a
//! regression model are its tasks, named `<target>>t_i` (or `<target>` for the direct
//! form), each with `pos_weight` and `loss_weight` 1.
//!
//! Serving: the scorer's per-task outputs stay `sigmoid(z_i)` (the `q_i` of the thresholds
//! form) and its fused score is the decoded value `E[y]` ([`Decoder`]); see `docs/models.md`.

use serde::{Deserialize, Serialize};

use crate::config::TaskConfig;
use crate::error::ModelError;

/// The most thresholds a configuration may ask for.
pub const MAX_THRESHOLDS: usize = 1024;

/// How a continuous target is predicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegressionForm {
    /// One head per threshold, `P(y > t_i)`, decoded into the expected value.
    #[default]
    Thresholds,
    /// One head, the standardised value, squared-error loss.
    Direct,
}

/// The regression settings of a model (`"regression"` in a configuration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegressionConfig {
    /// The continuous target column of the data (one of the schema's `targets`).
    pub target: String,
    /// Chained thresholds (default) or direct regression.
    #[serde(default)]
    pub form: RegressionForm,
    /// Increasing thresholds, given outright or resolved from `percentiles`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thresholds: Vec<f32>,
    /// Increasing percentiles in (0, 100) of the training target, turned into thresholds
    /// when training starts (repeated values collapse into one threshold).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percentiles: Vec<f32>,
    /// The value of the bucket below the first threshold (default: the mean training
    /// target there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low: Option<f32>,
    /// The value of the bucket above the last threshold (default: the mean training
    /// target there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high: Option<f32>,
    /// Direct form: the training target's mean (resolved from the data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<f32>,
    /// Direct form: the training target's standard deviation (resolved from the data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<f32>,
}

fn bad<T>(msg: String) -> Result<T, ModelError> {
    Err(ModelError::Config(format!("regression: {msg}")))
}

impl RegressionConfig {
    /// Checks what a configuration file can get wrong before any data is seen.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.target.is_empty() {
            return bad("target must name the continuous target column".into());
        }
        let finite = |what: &str, v: Option<f32>| match v {
            Some(x) if !x.is_finite() => bad(format!("{what} must be finite, got {x}")),
            _ => Ok(()),
        };
        for (what, v) in [
            ("low", self.low),
            ("high", self.high),
            ("mean", self.mean),
            ("std", self.std),
        ] {
            finite(what, v)?;
        }
        if self.std.is_some_and(|s| s <= 0.0) {
            return bad("std must be positive".into());
        }
        match self.form {
            RegressionForm::Direct => {
                if !self.thresholds.is_empty() || !self.percentiles.is_empty() {
                    return bad("the direct form has no thresholds or percentiles".into());
                }
                if self.low.is_some() || self.high.is_some() {
                    return bad("the direct form has no end buckets (low, high)".into());
                }
                if self.mean.is_some() != self.std.is_some() {
                    return bad("mean and std are given together".into());
                }
            }
            RegressionForm::Thresholds => {
                if self.thresholds.is_empty() && self.percentiles.is_empty() {
                    return bad(
                        "the thresholds form needs thresholds or percentiles (e.g. \"percentiles\": [20, 40, 60, 80])"
                            .into(),
                    );
                }
                if self.thresholds.len() > MAX_THRESHOLDS || self.percentiles.len() > MAX_THRESHOLDS
                {
                    return bad(format!("at most {MAX_THRESHOLDS} thresholds"));
                }
                let increasing = |v: &[f32]| {
                    v.iter().all(|x| x.is_finite()) && v.windows(2).all(|w| w[0] < w[1])
                };
                if !increasing(&self.thresholds) {
                    return bad(format!(
                        "thresholds must be finite and strictly increasing, got {:?}",
                        self.thresholds
                    ));
                }
                if !increasing(&self.percentiles)
                    || self.percentiles.iter().any(|&p| !(p > 0.0 && p < 100.0))
                {
                    return bad(format!(
                        "percentiles must be strictly increasing and in (0, 100), got {:?}",
                        self.percentiles
                    ));
                }
                if self.mean.is_some() || self.std.is_some() {
                    return bad("mean and std belong to the direct form".into());
                }
                if let (Some(lo), Some(&t)) = (self.low, self.thresholds.first())
                    && lo > t
                {
                    return bad(format!("low {lo} lies above the first threshold {t}"));
                }
                if let (Some(hi), Some(&t)) = (self.high, self.thresholds.last())
                    && hi < t
                {
                    return bad(format!("high {hi} lies below the last threshold {t}"));
                }
            }
        }
        Ok(())
    }

    /// Whether everything the decoder needs is known (after [`RegressionConfig::resolve`]).
    pub fn is_resolved(&self) -> bool {
        match self.form {
            RegressionForm::Direct => self.mean.is_some() && self.std.is_some(),
            RegressionForm::Thresholds => {
                !self.thresholds.is_empty() && self.low.is_some() && self.high.is_some()
            }
        }
    }

    /// Fills in what comes from the training targets `y` (finite values): thresholds from
    /// percentiles (when not given), end values (when not given), mean and std (direct
    /// form). An error for an empty target or thresholds that leave a bucket empty of
    /// meaning (every training value on one side).
    pub fn resolve(&mut self, y: &[f32]) -> Result<(), ModelError> {
        if y.is_empty() {
            return bad(format!("no training values of {:?}", self.target));
        }
        if let Some(x) = y.iter().find(|x| !x.is_finite()) {
            return bad(format!("the training target holds {x}"));
        }
        match self.form {
            RegressionForm::Direct => {
                if self.mean.is_none() {
                    let n = y.len() as f64;
                    let mean = y.iter().map(|&v| v as f64).sum::<f64>() / n;
                    let var = y
                        .iter()
                        .map(|&v| (v as f64 - mean) * (v as f64 - mean))
                        .sum::<f64>()
                        / n;
                    self.mean = Some(mean as f32);
                    self.std = Some(if var > 0.0 { var.sqrt() as f32 } else { 1.0 });
                }
            }
            RegressionForm::Thresholds => {
                if self.thresholds.is_empty() {
                    let mut sorted = y.to_vec();
                    sorted.sort_unstable_by(f32::total_cmp);
                    let mut t: Vec<f32> = self
                        .percentiles
                        .iter()
                        .map(|&p| percentile(&sorted, p))
                        .collect();
                    t.dedup();
                    self.thresholds = t;
                }
                let (first, last) = (self.thresholds[0], *self.thresholds.last().expect("one"));
                let mean_where = |keep: &dyn Fn(f32) -> bool| {
                    let (mut s, mut n) = (0.0f64, 0usize);
                    for &v in y.iter().filter(|&&v| keep(v)) {
                        s += v as f64;
                        n += 1;
                    }
                    (n > 0).then(|| (s / n as f64) as f32)
                };
                if self.low.is_none() {
                    self.low = Some(mean_where(&|v| v <= first).unwrap_or(first));
                }
                if self.high.is_none() {
                    self.high = Some(mean_where(&|v| v > last).unwrap_or(last));
                }
            }
        }
        self.validate()
    }

    /// The heads: one task per threshold, `<target>><t_i>`, or the target itself for the
    /// direct form.
    pub fn tasks(&self) -> Vec<TaskConfig> {
        let names: Vec<String> = match self.form {
            RegressionForm::Direct => vec![self.target.clone()],
            RegressionForm::Thresholds => self
                .thresholds
                .iter()
                .map(|t| format!("{}>{t}", self.target))
                .collect(),
        };
        names.into_iter().map(TaskConfig::unweighted).collect()
    }

    /// The decoder of a resolved configuration.
    pub fn decoder(&self) -> Result<Decoder, ModelError> {
        if !self.is_resolved() {
            return bad(format!(
                "the {} form is not resolved from training data yet (thresholds, end values or statistics missing)",
                match self.form {
                    RegressionForm::Direct => "direct",
                    RegressionForm::Thresholds => "thresholds",
                }
            ));
        }
        Ok(match self.form {
            RegressionForm::Direct => Decoder::Direct {
                mean: self.mean.expect("resolved"),
                std: self.std.expect("resolved"),
            },
            RegressionForm::Thresholds => {
                let t = &self.thresholds;
                let mut values = Vec::with_capacity(t.len() + 1);
                values.push(self.low.expect("resolved"));
                values.extend(t.windows(2).map(|w| 0.5 * (w[0] + w[1])));
                values.push(self.high.expect("resolved"));
                Decoder::Thresholds {
                    thresholds: t.clone(),
                    values,
                }
            }
        })
    }
}

/// The `p`-th percentile (0 < p < 100) of sorted values, linearly interpolated between
/// order statistics (NumPy's default).
pub fn percentile(sorted: &[f32], p: f32) -> f32 {
    let pos = (p as f64 / 100.0) * (sorted.len() - 1) as f64;
    let (i, frac) = (pos.floor() as usize, pos - pos.floor());
    let j = (i + 1).min(sorted.len() - 1);
    (sorted[i] as f64 + frac * (sorted[j] as f64 - sorted[i] as f64)) as f32
}

/// Turns a regression model's head outputs into the predicted value.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoder {
    /// `E[y] = sum_i max(q_i - q_(i+1), 0) v_i` over `K + 1` buckets.
    Thresholds {
        /// `t_1 < ... < t_K`.
        thresholds: Vec<f32>,
        /// The bucket values `v_0 ..= v_K`.
        values: Vec<f32>,
    },
    /// `mean + std * z`.
    Direct {
        /// The training target's mean.
        mean: f32,
        /// Its standard deviation.
        std: f32,
    },
}

impl Decoder {
    /// The predicted value of one row from its head logits `z` (one per head); the
    /// thresholds form reads `q_i = sigmoid(z_i)`.
    pub fn value_from_logits(&self, z: &[f32]) -> f32 {
        match self {
            Decoder::Direct { mean, std } => mean + std * z[0],
            Decoder::Thresholds { values, .. } => expected(values, z.iter().map(|&z| sigmoid(z))),
        }
    }

    /// The predicted value of one row from its head outputs as the scorer reports them
    /// (`sigmoid(z_i)`), for the thresholds form; the direct form needs the logit
    /// ([`Decoder::value_from_logits`]).
    pub fn value_from_probabilities(&self, q: &[f32]) -> Option<f32> {
        match self {
            Decoder::Direct { .. } => None,
            Decoder::Thresholds { values, .. } => Some(expected(values, q.iter().copied())),
        }
    }
}

/// `sum_i max(q_i - q_(i+1), 0) v_i` with `q_0 = 1`, `q_(K+1) = 0`, in f64.
fn expected(values: &[f32], q: impl Iterator<Item = f32>) -> f32 {
    let (mut prev, mut sum) = (1.0f64, 0.0f64);
    let mut k = 0;
    for qi in q {
        sum += (prev - qi as f64).max(0.0) * values[k] as f64;
        prev = qi as f64;
        k += 1;
    }
    sum += prev.max(0.0) * values[k] as f64;
    sum as f32
}

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tensor::tolerance::CLOSE;

    fn thresholds(t: &[f32], low: f32, high: f32) -> RegressionConfig {
        RegressionConfig {
            target: "play_time".into(),
            form: RegressionForm::Thresholds,
            thresholds: t.to_vec(),
            percentiles: vec![],
            low: Some(low),
            high: Some(high),
            mean: None,
            std: None,
        }
    }

    #[test]
    fn the_decoder_worked_by_hand() {
        // Thresholds 10, 20, 40; end values 4 and 60: bucket values 4, 15, 30, 60.
        let d = thresholds(&[10.0, 20.0, 40.0], 4.0, 60.0)
            .decoder()
            .unwrap();
        let Decoder::Thresholds { values, .. } = &d else {
            panic!("thresholds")
        };
        assert_eq!(values, &[4.0, 15.0, 30.0, 60.0]);
        // q = (0.8, 0.5, 0.1): buckets 0.2, 0.3, 0.4, 0.1
        // E = 0.2*4 + 0.3*15 + 0.4*30 + 0.1*60 = 0.8 + 4.5 + 12 + 6 = 23.3
        let e = d.value_from_probabilities(&[0.8, 0.5, 0.1]).unwrap();
        assert!((e - 23.3).abs() <= CLOSE * 23.3, "{e}");
        // Not monotone: q = (0.3, 0.6, 0.1). Bucket 1 = max(0.3 - 0.6, 0) = 0, bucket 2 =
        // 0.6 - 0.1 = 0.5: E = 0.7*4 + 0*15 + 0.5*30 + 0.1*60 = 2.8 + 15 + 6 = 23.8 (the
        // bucket probabilities sum to 1.3: no renormalisation).
        let e = d.value_from_probabilities(&[0.3, 0.6, 0.1]).unwrap();
        assert!((e - 23.8).abs() <= CLOSE * 23.8, "{e}");
        // Certain extremes give the end values.
        assert_eq!(d.value_from_probabilities(&[0.0, 0.0, 0.0]), Some(4.0));
        assert_eq!(d.value_from_probabilities(&[1.0, 1.0, 1.0]), Some(60.0));
        // Logits: z = 0 everywhere is q = 0.5, 0.5, 0.5: E = 0.5*4 + 0.5*60 = 32.
        assert!((d.value_from_logits(&[0.0; 3]) - 32.0).abs() <= CLOSE * 32.0);
        let direct = Decoder::Direct {
            mean: 30.0,
            std: 10.0,
        };
        assert_eq!(direct.value_from_logits(&[-0.5]), 25.0);
        assert_eq!(direct.value_from_probabilities(&[0.3]), None);
    }

    #[test]
    fn the_decoder_against_brute_force_sampling_of_buckets() {
        // For monotone q, E equals sum over buckets of P(bucket) * value, computed here
        // the long way: the probability of each bucket from the survival function.
        let d = thresholds(&[1.0, 2.0, 3.0, 5.0], 0.5, 8.0)
            .decoder()
            .unwrap();
        let mut rng = crate::rng::SplitMix64::new(3);
        for _ in 0..100 {
            let mut q: Vec<f32> = (0..4).map(|_| 0.5 + rng.uniform(0.5)).collect();
            q.sort_by(|a, b| b.total_cmp(a));
            let values = [0.5f64, 1.5, 2.5, 4.0, 8.0];
            let surv = |i: usize| match i {
                0 => 1.0,
                i if i <= 4 => q[i - 1] as f64,
                _ => 0.0,
            };
            let want: f64 = (0..5).map(|b| (surv(b) - surv(b + 1)) * values[b]).sum();
            let got = d.value_from_probabilities(&q).unwrap() as f64;
            assert!((got - want).abs() <= CLOSE as f64 * want, "{got} vs {want}");
        }
    }

    #[test]
    fn resolution_from_training_targets() {
        let y: Vec<f32> = (1..=100).map(|v| v as f32).collect();
        let mut c = RegressionConfig {
            percentiles: vec![25.0, 50.0, 75.0],
            thresholds: vec![],
            low: None,
            high: None,
            ..thresholds(&[], 0.0, 0.0)
        };
        c.resolve(&y).unwrap();
        // NumPy: percentile(1..=100, 25) = 25.75, 50 -> 50.5, 75 -> 75.25.
        assert_eq!(c.thresholds, vec![25.75, 50.5, 75.25]);
        // Mean below 25.75: 1..=25 -> 13; above 75.25: 76..=100 -> 88.
        assert_eq!((c.low, c.high), (Some(13.0), Some(88.0)));
        assert_eq!(c.tasks().len(), 3);
        assert_eq!(c.tasks()[1].name, "play_time>50.5");
        // Repeated percentiles of a lumpy target collapse.
        let mut lumpy = RegressionConfig {
            thresholds: vec![],
            percentiles: vec![10.0, 20.0, 90.0],
            low: None,
            high: None,
            ..thresholds(&[], 0.0, 0.0)
        };
        let y2: Vec<f32> = (0..100)
            .map(|i| if i < 50 { 0.0 } else { i as f32 })
            .collect();
        lumpy.resolve(&y2).unwrap();
        assert_eq!(lumpy.thresholds.len(), 2);
        let mut direct = RegressionConfig {
            form: RegressionForm::Direct,
            thresholds: vec![],
            low: None,
            high: None,
            ..thresholds(&[], 0.0, 0.0)
        };
        assert!(direct.decoder().is_err(), "unresolved");
        direct.resolve(&[1.0, 3.0]).unwrap();
        assert_eq!((direct.mean, direct.std), (Some(2.0), Some(1.0)));
    }

    #[test]
    fn mistakes_are_clear_errors() {
        let base = thresholds(&[1.0, 2.0], 0.5, 3.0);
        for (c, needle) in [
            (
                RegressionConfig {
                    thresholds: vec![2.0, 1.0],
                    ..base.clone()
                },
                "strictly increasing",
            ),
            (
                RegressionConfig {
                    thresholds: vec![],
                    percentiles: vec![50.0, 100.0],
                    ..base.clone()
                },
                "(0, 100)",
            ),
            (
                RegressionConfig {
                    thresholds: vec![],
                    ..base.clone()
                },
                "needs thresholds or percentiles",
            ),
            (
                RegressionConfig {
                    low: Some(1.5),
                    ..base.clone()
                },
                "low 1.5 lies above",
            ),
            (
                RegressionConfig {
                    form: RegressionForm::Direct,
                    ..base.clone()
                },
                "direct form has no thresholds",
            ),
            (
                RegressionConfig {
                    target: String::new(),
                    ..base.clone()
                },
                "target",
            ),
        ] {
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
        let mut c = base;
        assert!(
            c.resolve(&[])
                .unwrap_err()
                .to_string()
                .contains("no training values")
        );
        assert!(c.resolve(&[f32::NAN]).is_err());
    }
}
