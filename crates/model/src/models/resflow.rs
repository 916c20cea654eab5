//! ResFlow (Tao et al., KDD 2024): one tower per task, from dense to sparse feedback, with
//! residual links from each task's tower into the tasks it feeds.
//!
//! ```text
//! o_t^0 = x for every task
//! o_t^l = BN(act(o_t^(l-1) W_t^l + b_t^l)) + sum_{p in hidden(t)} o_p^l   (layer l links)
//! z_t   = o_t^L w_t + c_t + sum_{p in logits(t)} z_p                       (residual.logits)
//!       = z_p + min(o_t^L w_t + c_t, 0)                  monotone variant: p_t <= p_p
//! ```
//!
//! By default `hidden(t) = logits(t) = {t - 1}`: the paper's chain. The topology
//! ([`crate::topology`]) may give a task several parents, none, or a parent later in the
//! task order, and switch the hidden links of single layers off; towers are then computed
//! in an order where every parent comes first, and the logits are returned in task order.
//!
//! The links carry what the denser task learned into the sparser one, so the conversion
//! tower learns a correction to the click tower instead of everything from its few
//! positives. Independent towers (the paper's ablation) are this head with both links off
//! ([`crate::config::ModelConfig::links`]).

use super::Head;
use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::graph::{Graph, Node};
use crate::layers::{Builder, Tower};
use crate::topology::Links;

/// ResFlow's towers and links.
#[derive(Debug, Clone)]
pub(crate) struct Resflow {
    towers: Vec<Tower>,
    links: Links,
}

impl Resflow {
    /// `name/task/<t>/layer/<l>/...` and `name/task/<t>/logit/...`, each tower of the
    /// configured `hidden` widths.
    pub(crate) fn build(
        name: &str,
        config: &ModelConfig,
        input: usize,
        b: &mut Builder<'_>,
    ) -> Result<Self, ModelError> {
        Ok(Self {
            towers: b.towers(name, config.tasks.len(), input, &config.hidden)?,
            links: config.links()?,
        })
    }
}

impl Head for Resflow {
    fn forward(
        &self,
        g: &mut dyn Graph,
        x: Node,
        logits: &mut Vec<Node>,
    ) -> Result<(), ModelError> {
        let tasks = self.towers.len();
        let depth = self.links.layers.len();
        // Every task's hidden outputs (`hidden[t * depth + l]`) and logit, filled in
        // evaluation order; `x` stands in until a slot is written.
        let mut hidden = g.list();
        hidden.resize(tasks * depth, x);
        let mut z_of = g.list();
        z_of.resize(tasks, x);
        for &t in &self.links.order {
            let tower = &self.towers[t];
            let mut h = x;
            for (l, layer) in tower.mlp.layers.iter().enumerate() {
                let mut o = g.dense(h, layer)?;
                if self.links.layers[l] {
                    for &p in &self.links.hidden[t] {
                        o = g.add(o, hidden[p * depth + l])?;
                    }
                }
                hidden[t * depth + l] = o;
                h = o;
            }
            let own = g.linear(h, &tower.logit)?;
            let z = match self.links.logits[t].split_first() {
                None => own,
                Some((&first, rest)) => {
                    let own = if self.links.monotone {
                        g.min_zero(own)?
                    } else {
                        own
                    };
                    let mut parents = z_of[first];
                    for &p in rest {
                        parents = g.add(parents, z_of[p])?;
                    }
                    g.add(parents, own)?
                }
            };
            z_of[t] = z;
        }
        logits.extend_from_slice(&z_of);
        g.recycle(hidden);
        g.recycle(z_of);
        Ok(())
    }
}
