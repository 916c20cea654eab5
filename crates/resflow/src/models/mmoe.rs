//! MMoE, Multi-gate Mixture-of-Experts (Ma et al., KDD 2018): expert MLPs shared by every
//! task, mixed by one softmax gate per task.
//!
//! ```text
//! e_k = expert_k(x)                      k = 1..E    (each N x w)
//! g_t = softmax(x W_t)                   W_t: I x E  (one gate per task, no bias)
//! h_t = sum_k g_t[:, k] e_k              autodiff's mix
//! z_t = tower_t(h_t)
//! ```
//!
//! Each task learns its own weighting of the shared experts, so tasks that disagree can
//! lean on different experts.

use autodiff::Var;

use super::{Builder, Ctx, Linear, PREFIX, TaskTower, push_bn};
use crate::config::MmoeConfig;
use crate::error::ModelError;
use crate::network::{BnIds, LayerIds};

/// MMoE's parameters.
#[derive(Debug, Clone)]
pub(crate) struct Mmoe {
    experts: Vec<Vec<LayerIds>>,
    gates: Vec<Linear>,
    towers: Vec<TaskTower>,
}

impl Mmoe {
    pub(crate) fn build(
        c: &MmoeConfig,
        tasks: usize,
        input: usize,
        b: &mut Builder<'_>,
    ) -> Result<Self, ModelError> {
        let name = format!("{PREFIX}mmoe");
        let mut experts = Vec::new();
        let mut width = input;
        for k in 0..c.experts {
            let (e, w) = b.mlp(&format!("{name}/expert/{k}"), input, &c.expert_hidden)?;
            experts.push(e);
            width = w;
        }
        let gates = (0..tasks)
            .map(|t| b.gate(&format!("{name}/gate/{t}"), input, c.experts))
            .collect::<Result<_, _>>()?;
        let towers = TaskTower::per_task(b, &name, tasks, width, &c.tower)?;
        Ok(Self {
            experts,
            gates,
            towers,
        })
    }

    pub(crate) fn forward(
        &self,
        ctx: &mut Ctx<'_>,
        x: Var,
        logits: &mut Vec<Var>,
    ) -> Result<(), ModelError> {
        let mut experts = std::mem::take(&mut ctx.lists.experts);
        experts.clear();
        for e in &self.experts {
            experts.push(ctx.mlp(x, e)?);
        }
        for (gate, tower) in self.gates.iter().zip(&self.towers) {
            let g = ctx.gate(x, gate)?;
            let h = ctx.tape.mix(&experts, g)?;
            logits.push(tower.forward(ctx, h)?);
        }
        ctx.lists.experts = experts;
        Ok(())
    }

    pub(crate) fn bn_layers_mut<'a>(&'a mut self, v: &mut Vec<&'a mut BnIds>) {
        for e in &mut self.experts {
            push_bn(e, v);
        }
        for t in &mut self.towers {
            t.bn_layers_mut(v);
        }
    }
}
