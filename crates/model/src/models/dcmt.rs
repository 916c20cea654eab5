//! DCMT, the Direct entire-space Causal Multi-Task framework (Zhu et al., ICDE 2023): a
//! click tower and twin CVR towers, a factual one for the clicked space and a
//! counterfactual one for the unclicked space, each inverse-propensity weighted, bound by
//! the prior that the two CVR predictions sum to about 1.
//!
//! ```text
//! x --tower_ctr--> a          p(click)            = sigmoid(a)       head 1 (task loss)
//! x --tower_cvr--> f          factual CVR         = sigmoid(f)
//!                             z = logit(sigmoid(a) sigmoid(f))      head 2 (task loss, CTCVR)
//! x --tower_cf---> c          counterfactual CVR  = sigmoid(c)      (training only)
//! o = click label, r = conversion label, N rows
//! p^ = stop_gradient(clamp(sigmoid(a), clip, 1 - clip))
//! L_cvr = (1/N) sum [ o CE(r, sigmoid(f)) / p^                    factual (clicked) space
//!                   + (1 - o) CE(1 - r, sigmoid(c)) / (1 - p^)    counterfactual (unclicked) space
//!                   + constraint_weight |1 - (sigmoid(f) + sigmoid(c))| ]
//! loss = task losses (CTR, CTCVR) + cvr_weight L_cvr
//! ```
//!
//! An unclicked row's conversion label is 0, so its counterfactual label `1 - r` is 1: the
//! counterfactual tower learns where a conversion is *not* expected, and the constraint
//! ties it to the factual tower. On the tape: `CE(1 - r, sigmoid(c)) = softplus(-c) + r c`,
//! `1 - p^ = sigmoid(-a)` (computed directly, not as a difference), the unclicked rows'
//! weight `(1 - o) / (1 - p^) = 1 / (1 - p^) - o / (1 - p^)`, and
//! `|1 - sigmoid(f) - sigmoid(c)| = |sigmoid(-f) - sigmoid(c)|`. Serving runs the click
//! and factual towers only; the counterfactual tower lives under `head/dcmt/train/`.

use super::escm2::{ClickThenConversion, cross_entropy, inverse_propensity};
use super::{Head, LossInputs};
use crate::config::{DcmtConfig, ModelConfig};
use crate::error::ModelError;
use crate::graph::{Graph, Node};
use crate::layers::{Builder, Tower};

/// DCMT's parameters and options.
#[derive(Debug, Clone)]
pub(crate) struct Dcmt {
    /// The click tower and the factual CVR tower (`<name>/cvr`).
    towers: ClickThenConversion,
    counterfactual: Tower,
    weight: f32,
    constraint_weight: f32,
    clip: f32,
}

impl Dcmt {
    pub(crate) fn build(
        name: &str,
        c: &DcmtConfig,
        config: &ModelConfig,
        input: usize,
        b: &mut Builder<'_>,
    ) -> Result<Self, ModelError> {
        let towers = ClickThenConversion::build(name, config, input, b)?;
        Ok(Self {
            towers,
            counterfactual: ClickThenConversion::train_tower(
                name,
                "counterfactual",
                config,
                input,
                b,
            )?,
            weight: c.cvr_weight,
            constraint_weight: c.constraint_weight,
            clip: c.propensity_clip,
        })
    }
}

impl Head for Dcmt {
    fn forward(
        &self,
        g: &mut dyn Graph,
        x: Node,
        logits: &mut Vec<Node>,
    ) -> Result<(), ModelError> {
        self.towers.forward(g, x, logits)
    }

    fn forward_train(
        &self,
        g: &mut dyn Graph,
        x: Node,
        logits: &mut Vec<Node>,
        aux: &mut Vec<Node>,
    ) -> Result<(), ModelError> {
        self.towers.forward_train(g, x, logits, aux)
    }

    /// `scale * sum_rows` of the three terms of `L_cvr` above.
    fn extra_loss(
        &self,
        g: &mut dyn Graph,
        inputs: &LossInputs<'_>,
    ) -> Result<Option<Node>, ModelError> {
        let [a, f, o, r] = ClickThenConversion::loss_inputs("dcmt", inputs)?;
        let (lo, hi) = (self.clip, 1.0 - self.clip);
        let c = self.counterfactual.forward(g, inputs.x)?;
        // Factual space: o CE(r, sigmoid(f)) / p^.
        let p = g.sigmoid(a)?;
        let w1 = inverse_propensity(g, p, o, lo, hi)?;
        let ce_f = cross_entropy(g, f, r)?;
        let factual = g.mul(w1, ce_f)?;
        // Counterfactual space: (1 - o) CE(1 - r, sigmoid(c)) / (1 - p^).
        let neg_a = g.scale(a, -1.0)?;
        let q = g.sigmoid(neg_a)?;
        let all = g.clamp(q, lo, hi)?;
        let all = g.stop_gradient(all)?;
        let w_all = g.reciprocal(all)?;
        let w_clicked = g.mul(o, w_all)?;
        let neg = g.scale(w_clicked, -1.0)?;
        let w0 = g.add(w_all, neg)?;
        let neg_c = g.scale(c, -1.0)?;
        let sp = g.softplus(neg_c)?;
        let rc = g.mul(r, c)?;
        let ce_cf = g.add(sp, rc)?;
        let counter = g.mul(w0, ce_cf)?;
        // Constraint: |sigmoid(-f) - sigmoid(c)|.
        let neg_f = g.scale(f, -1.0)?;
        let not_f = g.sigmoid(neg_f)?;
        let pc = g.sigmoid(c)?;
        let neg_pc = g.scale(pc, -1.0)?;
        let gap = g.add(not_f, neg_pc)?;
        let up = g.relu(gap)?;
        let neg_gap = g.scale(gap, -1.0)?;
        let down = g.relu(neg_gap)?;
        let abs = g.add(up, down)?;
        let constraint = g.scale(abs, self.constraint_weight)?;
        let rows = g.add(factual, counter)?;
        let rows = g.add(rows, constraint)?;
        let sum = g.sum(rows)?;
        Ok(Some(g.scale(sum, inputs.scale)?))
    }

    fn extra_loss_weight(&self) -> f32 {
        self.weight
    }
}
