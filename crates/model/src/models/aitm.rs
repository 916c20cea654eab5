//! AITM, the Adaptive Information Transfer Multi-task framework (Xi et al., KDD 2021):
//! one tower per task and, between consecutive tasks, an attention that decides how much
//! of the previous task's information to take.
//!
//! ```text
//! q_t = tower_t(x)                                  (N x d, d = last hidden width)
//! t = 1:   z_1 = q_1
//! t > 1:   p_t = info_t(z_(t-1))                    transferred information (a hidden layer)
//!          for u in {p_t, q_t}:  s_u = <u Wq_t, u Wk_t> / sqrt(d),   v_u = u Wv_t
//!          (w_p, w_q) = softmax(s_p, s_q)           per row, over the two vectors
//!          z_t = w_p v_p + w_q v_q                  the graph's mix
//! logit_t = z_t w_t + c_t,  y_t = sigmoid(logit_t)
//! calibrator (optional): weight * sum_(t>1) mean(max(y_t - y_(t-1), 0))
//! ```
//!
//! The calibrator penalises a deeper task predicting more than the task before it (an
//! order should not be likelier than a click). Its mean is over rows without the data's
//! sample weights (the cross-entropy uses them).

use super::{Head, LossInputs};
use crate::config::{AitmConfig, ModelConfig};
use crate::error::ModelError;
use crate::graph::{Graph, Node};
use crate::layers::{Builder, Dense, Linear, Mlp};

/// The transfer from task `t - 1` into task `t`.
#[derive(Debug, Clone)]
struct Transfer {
    info: Dense,
    query: Linear,
    key: Linear,
    value: Linear,
}

/// AITM's parameters.
#[derive(Debug, Clone)]
pub(crate) struct Aitm {
    towers: Vec<Mlp>,
    /// `transfers[t - 1]` feeds task `t`.
    transfers: Vec<Transfer>,
    logits: Vec<Linear>,
    width: usize,
    calibrator_weight: f32,
}

impl Aitm {
    pub(crate) fn build(
        name: &str,
        c: &AitmConfig,
        config: &ModelConfig,
        input: usize,
        b: &mut Builder<'_>,
    ) -> Result<Self, ModelError> {
        let tasks = config.tasks.len();
        let hidden = &config.hidden;
        let d = *hidden.last().expect("validated: at least one hidden layer");
        let mut towers = Vec::with_capacity(tasks);
        let mut transfers = Vec::new();
        let mut logits = Vec::with_capacity(tasks);
        for t in 0..tasks {
            let p = format!("{name}/task/{t}");
            towers.push(b.mlp(&p, input, hidden)?.0);
            if t > 0 {
                transfers.push(Transfer {
                    info: b.dense(&format!("{p}/info"), d, d)?,
                    query: b.gate(&format!("{p}/attention/query"), d, d)?,
                    key: b.gate(&format!("{p}/attention/key"), d, d)?,
                    value: b.gate(&format!("{p}/attention/value"), d, d)?,
                });
            }
            logits.push(b.linear(&format!("{p}/logit"), d, 1)?);
        }
        Ok(Self {
            towers,
            transfers,
            logits,
            width: d,
            calibrator_weight: c.calibrator_weight,
        })
    }
}

impl Head for Aitm {
    fn forward(
        &self,
        g: &mut dyn Graph,
        x: Node,
        logits: &mut Vec<Node>,
    ) -> Result<(), ModelError> {
        let inv_sqrt_d = 1.0 / (self.width as f32).sqrt();
        let mut prev: Option<Node> = None;
        for (t, tower) in self.towers.iter().enumerate() {
            let q = tower.forward(g, x)?;
            let z = match prev {
                None => q,
                Some(z_prev) => {
                    let tr = &self.transfers[t - 1];
                    let p = g.dense(z_prev, &tr.info)?;
                    let mut scores = [p; 2];
                    let mut values = [p; 2];
                    for (k, u) in [p, q].into_iter().enumerate() {
                        // s_u = <u Wq, u Wk> / sqrt(d),  v_u = u Wv
                        let qu = g.linear(u, &tr.query)?;
                        let ku = g.linear(u, &tr.key)?;
                        let dot = g.row_dot(qu, ku)?;
                        scores[k] = g.scale(dot, inv_sqrt_d)?;
                        values[k] = g.linear(u, &tr.value)?;
                    }
                    let s = g.concat(&scores)?;
                    let w = g.softmax(s)?;
                    g.mix(&values, w)?
                }
            };
            logits.push(g.linear(z, &self.logits[t])?);
            prev = Some(z);
        }
        Ok(())
    }

    /// The calibrator: `scale * sum_(t>1) sum_rows max(p_t - p_(t-1), 0)`.
    fn extra_loss(
        &self,
        g: &mut dyn Graph,
        inputs: &LossInputs<'_>,
    ) -> Result<Option<Node>, ModelError> {
        let scale = inputs.scale;
        let mut penalty: Option<Node> = None;
        for pair in inputs.logits.windows(2) {
            let (pb, pt) = (g.sigmoid(pair[0])?, g.sigmoid(pair[1])?);
            let neg = g.scale(pb, -1.0)?;
            let diff = g.add(pt, neg)?;
            let excess = g.relu(diff)?;
            let sum = g.sum(excess)?;
            let term = g.scale(sum, scale)?;
            penalty = Some(match penalty {
                None => term,
                Some(acc) => g.add(acc, term)?,
            });
        }
        Ok(penalty)
    }

    fn extra_loss_weight(&self) -> f32 {
        self.calibrator_weight
    }
}
