//! ESCM2, the Entire Space Counterfactual Multi-task Model (Wang et al., SIGIR 2022): ESMM
//! plus a counterfactual risk on the CVR tower that corrects the click space's selection
//! bias, with the click head's prediction as the propensity. Two variants, one file:
//!
//! ```text
//! x --tower_ctr--> a        p(click)              = sigmoid(a)      head 1 (task loss)
//! x --tower_cvr--> b        p(convert | do(click)) = sigmoid(b)
//!                           z = logit(sigmoid(a) sigmoid(b))       head 2 (task loss, CTCVR)
//! o = click label, r = conversion label, N rows
//! p^ = stop_gradient(clamp(sigmoid(a), clip, 1))                  the propensity
//! d  = CE(r, sigmoid(b)) = softplus(b) - r b                      the CVR error of a row
//! IPW:  R = (1/N) sum o d / p^
//! DR:   e^ = tower_imp(x)                                          predicted error (training only)
//!       R = (1/N) sum [ e^ + o (d - e^) / p^ ]                    doubly robust risk
//!         + (1/N) sum o (d - e^)^2 / p^                            imputation loss
//! loss = task losses (CTR, CTCVR) + counterfactual_weight R
//! ```
//!
//! Serving runs ESMM's forward pass only: the imputation tower lives under
//! `head/escm2_dr/train/` and only the loss reads it. `d` is computed for every row, but
//! only the clicked rows (`o = 1`) count in `o d / p^`; on them the conversion label is
//! the post-click conversion label (a conversion implies a click).

use super::{Head, LossInputs, TRAIN_ONLY};
use crate::config::{Escm2Config, ModelConfig};
use crate::error::ModelError;
use crate::graph::{Graph, Node, op_error};
use crate::layers::{Builder, Tower};

/// The pair ESMM, ESCM2 and DCMT all serve: a click tower `a` and a CVR tower `b`, heads
/// `a` and `logit(sigmoid(a) sigmoid(b))`, the CVR logit `b` kept for the loss.
#[derive(Debug, Clone)]
pub(crate) struct ClickThenConversion {
    ctr: Tower,
    cvr: Tower,
}

impl ClickThenConversion {
    /// The two towers, `<name>/ctr` and `<name>/cvr`, over the model's hidden sizes.
    pub(crate) fn build(
        name: &str,
        config: &ModelConfig,
        input: usize,
        b: &mut Builder<'_>,
    ) -> Result<Self, ModelError> {
        Ok(Self {
            ctr: b.tower(&format!("{name}/ctr"), input, &config.hidden)?,
            cvr: b.tower(&format!("{name}/cvr"), input, &config.hidden)?,
        })
    }

    /// A tower that only the training loss reads, `<name>/train/<what>`.
    pub(crate) fn train_tower(
        name: &str,
        what: &str,
        config: &ModelConfig,
        input: usize,
        b: &mut Builder<'_>,
    ) -> Result<Tower, ModelError> {
        b.tower(&format!("{name}{TRAIN_ONLY}{what}"), input, &config.hidden)
    }

    /// The serving forward pass (the CVR logit dropped).
    pub(crate) fn forward(
        &self,
        g: &mut dyn Graph,
        x: Node,
        logits: &mut Vec<Node>,
    ) -> Result<(), ModelError> {
        let mut aux = g.list();
        let r = self.forward_train(g, x, logits, &mut aux);
        g.recycle(aux);
        r
    }

    /// Pushes the two heads' logits, and the CVR logit onto `aux`.
    pub(crate) fn forward_train(
        &self,
        g: &mut dyn Graph,
        x: Node,
        logits: &mut Vec<Node>,
        aux: &mut Vec<Node>,
    ) -> Result<(), ModelError> {
        let a = self.ctr.forward(g, x)?;
        let b = self.cvr.forward(g, x)?;
        logits.push(a);
        logits.push(g.product_logit(a, b)?);
        aux.push(b);
        Ok(())
    }

    /// What the counterfactual losses read: the click logit `a`, the CVR logit `b`, the
    /// click labels `o` and the conversion labels `r`; an error naming `kind` otherwise.
    pub(crate) fn loss_inputs(
        kind: &'static str,
        inputs: &LossInputs<'_>,
    ) -> Result<[Node; 4], ModelError> {
        match (inputs.logits, inputs.aux, inputs.labels) {
            (&[a, _], &[b], &[o, r]) => Ok([a, b, o, r]),
            _ => Err(op_error(
                kind,
                "needs two logits, the CVR logit and two labels",
            )),
        }
    }
}

/// ESCM2's parameters and options.
#[derive(Debug, Clone)]
pub(crate) struct Escm2 {
    towers: ClickThenConversion,
    /// The DR variant's imputation tower (`None`: IPW).
    imputation: Option<Tower>,
    weight: f32,
    clip: f32,
}

impl Escm2 {
    pub(crate) fn build(
        name: &str,
        c: &Escm2Config,
        doubly_robust: bool,
        config: &ModelConfig,
        input: usize,
        b: &mut Builder<'_>,
    ) -> Result<Self, ModelError> {
        let towers = ClickThenConversion::build(name, config, input, b)?;
        let imputation = if doubly_robust {
            let t = ClickThenConversion::train_tower(name, "imputation", config, input, b)?;
            Some(t)
        } else {
            None
        };
        Ok(Self {
            towers,
            imputation,
            weight: c.counterfactual_weight,
            clip: c.propensity_clip,
        })
    }
}

/// `softplus(z) - r z`: the cross-entropy of `sigmoid(z)` against the 0/1 label `r`, per row.
pub(crate) fn cross_entropy(g: &mut dyn Graph, z: Node, r: Node) -> Result<Node, ModelError> {
    let sp = g.softplus(z)?;
    let rz = g.mul(r, z)?;
    let neg = g.scale(rz, -1.0)?;
    g.add(sp, neg)
}

/// `o / p^` per row with `p^ = clamp(p, lo, hi)` outside the gradient: the inverse
/// propensity weight of the rows `o` selects.
pub(crate) fn inverse_propensity(
    g: &mut dyn Graph,
    p: Node,
    o: Node,
    lo: f32,
    hi: f32,
) -> Result<Node, ModelError> {
    let clipped = g.clamp(p, lo, hi)?;
    let fixed = g.stop_gradient(clipped)?;
    let inv = g.reciprocal(fixed)?;
    g.mul(o, inv)
}

impl Head for Escm2 {
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

    /// `scale * sum_rows` of the IPW or DR terms above.
    fn extra_loss(
        &self,
        g: &mut dyn Graph,
        inputs: &LossInputs<'_>,
    ) -> Result<Option<Node>, ModelError> {
        let [a, b, o, r] = ClickThenConversion::loss_inputs("escm2", inputs)?;
        let p = g.sigmoid(a)?;
        let w = inverse_propensity(g, p, o, self.clip, 1.0)?;
        let d = cross_entropy(g, b, r)?;
        let rows = match &self.imputation {
            None => g.mul(w, d)?,
            Some(tower) => {
                let e = tower.forward(g, inputs.x)?;
                let neg_e = g.scale(e, -1.0)?;
                let diff = g.add(d, neg_e)?;
                // e^ + o (d - e^) / p^ + o (d - e^)^2 / p^
                let sq = g.mul(diff, diff)?;
                let corr = g.add(diff, sq)?;
                let weighted = g.mul(w, corr)?;
                g.add(e, weighted)?
            }
        };
        let sum = g.sum(rows)?;
        Ok(Some(g.scale(sum, inputs.scale)?))
    }

    fn extra_loss_weight(&self) -> f32 {
        self.weight
    }
}
