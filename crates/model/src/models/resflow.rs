//! ResFlow (Tao et al., KDD 2024): one tower per task, in chain order from dense to sparse
//! feedback, with residual links from each task's tower into the next.
//!
//! ```text
//! o_1^l = BN(act(o_1^(l-1) W_1^l + b_1^l))                     o_t^0 = x for every task
//! o_t^l = BN(act(o_t^(l-1) W_t^l + b_t^l)) + o_(t-1)^l         t > 1   (residual.hidden)
//! z_t   = o_t^L w_t + c_t + z_(t-1)                             t > 1   (residual.logits)
//!       = z_(t-1) + min(o_t^L w_t + c_t, 0)                     monotone variant: p_t <= p_(t-1)
//! ```
//!
//! The links carry what the denser task learned into the sparser one, so the conversion
//! tower learns a correction to the click tower instead of everything from its few
//! positives. Independent towers (the paper's ablation) are this head with both links off
//! ([`crate::config::ModelConfig::links`]).

use super::Head;
use crate::config::{ModelConfig, Residual};
use crate::error::ModelError;
use crate::graph::{Graph, Node};
use crate::layers::{Builder, Tower};

/// ResFlow's towers and links.
#[derive(Debug, Clone)]
pub(crate) struct Resflow {
    towers: Vec<Tower>,
    links: Residual,
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
            links: config.links(),
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
        // The previous task's hidden outputs, layer by layer, and the current task's.
        let (mut prev, mut own) = (g.list(), g.list());
        let mut prev_logit: Option<Node> = None;
        for (t, tower) in self.towers.iter().enumerate() {
            own.clear();
            let mut h = x;
            for (l, layer) in tower.mlp.layers.iter().enumerate() {
                let mut o = g.dense(h, layer)?;
                if self.links.hidden && t > 0 {
                    o = g.add(o, prev[l])?;
                }
                own.push(o);
                h = o;
            }
            let z = g.linear(h, &tower.logit)?;
            let z = match prev_logit {
                Some(p) if self.links.logits => {
                    let z = if self.links.monotone {
                        g.min_zero(z)?
                    } else {
                        z
                    };
                    g.add(p, z)?
                }
                _ => z,
            };
            logits.push(z);
            prev_logit = Some(z);
            std::mem::swap(&mut prev, &mut own);
        }
        g.recycle(prev);
        g.recycle(own);
        Ok(())
    }
}
