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
//!          z_t = w_p v_p + w_q v_q                  autodiff's mix
//! logit_t = z_t w_t + c_t,  y_t = sigmoid(logit_t)
//! calibrator (optional): weight * sum_(t>1) mean(max(y_t - y_(t-1), 0))
//! ```
//!
//! The calibrator penalises a deeper task predicting more than the task before it (an
//! order should not be likelier than a click). Its mean is over rows without the data's
//! sample weights (the cross-entropy uses them).

use autodiff::Var;

use super::{Builder, Ctx, Linear, PREFIX, push_bn};
use crate::error::ModelError;
use crate::network::{BnIds, LayerIds};

/// The transfer from task `t - 1` into task `t`.
#[derive(Debug, Clone)]
struct Transfer {
    info: LayerIds,
    query: Linear,
    key: Linear,
    value: Linear,
}

/// AITM's parameters.
#[derive(Debug, Clone)]
pub(crate) struct Aitm {
    towers: Vec<Vec<LayerIds>>,
    /// `transfers[t - 1]` feeds task `t`.
    transfers: Vec<Transfer>,
    logits: Vec<Linear>,
    width: usize,
}

impl Aitm {
    pub(crate) fn build(
        hidden: &[usize],
        tasks: usize,
        input: usize,
        b: &mut Builder<'_>,
    ) -> Result<Self, ModelError> {
        let name = format!("{PREFIX}aitm");
        let d = *hidden.last().expect("validated: at least one hidden layer");
        let mut towers = Vec::with_capacity(tasks);
        let mut transfers = Vec::new();
        let mut logits = Vec::with_capacity(tasks);
        for t in 0..tasks {
            let p = format!("{name}/task/{t}");
            towers.push(b.mlp(&p, input, hidden)?.0);
            if t > 0 {
                transfers.push(Transfer {
                    info: b.layer(&format!("{p}/info"), d, d)?,
                    query: b.gate(&format!("{p}/attention/query"), d, d)?,
                    key: b.gate(&format!("{p}/attention/key"), d, d)?,
                    value: b.gate(&format!("{p}/attention/value"), d, d)?,
                });
            }
            logits.push(b.logit(&format!("{p}/logit"), d)?);
        }
        Ok(Self {
            towers,
            transfers,
            logits,
            width: d,
        })
    }

    /// `calibrator`: the calibrator's weight divided by the batch size, when a loss is
    /// being recorded and the calibrator is on.
    pub(crate) fn forward(
        &self,
        ctx: &mut Ctx<'_>,
        x: Var,
        logits: &mut Vec<Var>,
        calibrator: Option<f32>,
    ) -> Result<Option<Var>, ModelError> {
        let inv_sqrt_d = 1.0 / (self.width as f32).sqrt();
        let mut prev: Option<Var> = None;
        let mut penalty: Option<Var> = None;
        for (t, tower) in self.towers.iter().enumerate() {
            let q = ctx.mlp(x, tower)?;
            let z = match prev {
                None => q,
                Some(z_prev) => {
                    let tr = &self.transfers[t - 1];
                    let p = ctx.layer(z_prev, &tr.info)?;
                    let mut scores = [p; 2];
                    let mut values = [p; 2];
                    for (k, u) in [p, q].into_iter().enumerate() {
                        let qu = ctx.linear(u, &tr.query)?;
                        let ku = ctx.linear(u, &tr.key)?;
                        let prod = ctx.tape.mul(qu, ku)?;
                        let dot = ctx.tape.sum_cols(prod)?;
                        scores[k] = ctx.tape.scale(dot, inv_sqrt_d)?;
                        values[k] = ctx.linear(u, &tr.value)?;
                    }
                    let s = ctx.tape.concat(&scores)?;
                    let w = ctx.tape.softmax(s)?;
                    ctx.tape.mix(&values, w)?
                }
            };
            let logit = ctx.linear(z, &self.logits[t])?;
            if let (Some(scale), Some(&before)) = (calibrator, logits.last()) {
                // max(p_t - p_(t-1), 0), summed over rows, times weight / batch size
                let (pt, pb) = (ctx.tape.sigmoid(logit)?, ctx.tape.sigmoid(before)?);
                let neg = ctx.tape.scale(pb, -1.0)?;
                let diff = ctx.tape.add(pt, neg)?;
                let excess = ctx.tape.relu(diff)?;
                let sum = ctx.tape.sum(excess)?;
                let term = ctx.tape.scale(sum, scale)?;
                penalty = Some(match penalty {
                    None => term,
                    Some(acc) => ctx.tape.add(acc, term)?,
                });
            }
            logits.push(logit);
            prev = Some(z);
        }
        Ok(penalty)
    }

    pub(crate) fn bn_layers_mut<'a>(&'a mut self, v: &mut Vec<&'a mut BnIds>) {
        let mut transfers = self.transfers.iter_mut();
        for (t, tower) in self.towers.iter_mut().enumerate() {
            push_bn(tower, v);
            if t > 0
                && let Some(tr) = transfers.next()
            {
                v.push(&mut tr.info.bn);
            }
        }
    }
}
