//! MMoE, Multi-gate Mixture-of-Experts (Ma et al., KDD 2018): expert MLPs shared by every
//! task, mixed by one softmax gate per task.
//!
//! ```text
//! e_k = expert_k(x)                      k = 1..E    (each N x w)
//! g_t = softmax(x W_t)                   W_t: I x E  (one gate per task, no bias)
//! h_t = sum_k g_t[:, k] e_k              the graph's mix
//! z_t = tower_t(h_t)
//! ```
//!
//! Each task learns its own weighting of the shared experts, so tasks that disagree can
//! lean on different experts.

use super::Head;
use crate::config::{MmoeConfig, ModelConfig};
use crate::error::ModelError;
use crate::graph::gate;
use crate::graph::{Graph, Node};
use crate::layers::{Builder, Linear, Mlp, Tower};

/// MMoE's parameters.
#[derive(Debug, Clone)]
pub(crate) struct Mmoe {
    experts: Vec<Mlp>,
    gates: Vec<Linear>,
    towers: Vec<Tower>,
}

impl Mmoe {
    pub(crate) fn build(
        name: &str,
        c: &MmoeConfig,
        config: &ModelConfig,
        input: usize,
        b: &mut Builder<'_>,
    ) -> Result<Self, ModelError> {
        let tasks = config.tasks.len();
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
        let towers = b.towers(name, tasks, width, &c.tower)?;
        Ok(Self {
            experts,
            gates,
            towers,
        })
    }
}

impl Head for Mmoe {
    fn forward(
        &self,
        g: &mut dyn Graph,
        x: Node,
        logits: &mut Vec<Node>,
    ) -> Result<(), ModelError> {
        let mut experts = g.list();
        for e in &self.experts {
            experts.push(e.forward(g, x)?);
        }
        for (l, tower) in self.gates.iter().zip(&self.towers) {
            let w = gate(g, x, l)?;
            let h = g.mix(&experts, w)?;
            logits.push(tower.forward(g, h)?);
        }
        g.recycle(experts);
        Ok(())
    }
}
