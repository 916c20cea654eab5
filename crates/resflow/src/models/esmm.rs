//! ESMM, the Entire Space Multi-task Model (Ma et al., SIGIR 2018): a click tower and a
//! conversion-given-click tower, both trained over every impression through the product
//! of their probabilities.
//!
//! ```text
//! x --tower_ctr--> a        p(click)            = sigmoid(a)
//! x --tower_cvr--> b        p(convert | click)  = sigmoid(b)   (never supervised directly)
//!                           p(click and convert) = sigmoid(a) sigmoid(b) = sigmoid(z),
//!                           z = logit(sigmoid(a) sigmoid(b))   (autodiff's product_logit)
//! ```
//!
//! The two heads are trained on the click label and the click-and-convert label, so the
//! CVR tower learns from the whole impression space instead of the clicked sample only.
//! `p(ctcvr) <= p(ctr)` holds for every row by construction. Defined for two tasks.

use autodiff::Var;

use super::{Builder, Ctx, PREFIX, TaskTower};
use crate::error::ModelError;
use crate::network::BnIds;

/// ESMM's parameters: the CTR and the CVR towers.
#[derive(Debug, Clone)]
pub(crate) struct Esmm {
    ctr: TaskTower,
    cvr: TaskTower,
}

impl Esmm {
    pub(crate) fn build(
        hidden: &[usize],
        input: usize,
        b: &mut Builder<'_>,
    ) -> Result<Self, ModelError> {
        Ok(Self {
            ctr: TaskTower::build(b, &format!("{PREFIX}esmm/ctr"), input, hidden)?,
            cvr: TaskTower::build(b, &format!("{PREFIX}esmm/cvr"), input, hidden)?,
        })
    }

    pub(crate) fn forward(
        &self,
        ctx: &mut Ctx<'_>,
        x: Var,
        logits: &mut Vec<Var>,
    ) -> Result<(), ModelError> {
        let a = self.ctr.forward(ctx, x)?;
        let b = self.cvr.forward(ctx, x)?;
        logits.push(a);
        logits.push(ctx.tape.product_logit(a, b)?);
        Ok(())
    }

    pub(crate) fn bn_layers_mut<'a>(&'a mut self, v: &mut Vec<&'a mut BnIds>) {
        self.ctr.bn_layers_mut(v);
        self.cvr.bn_layers_mut(v);
    }
}
