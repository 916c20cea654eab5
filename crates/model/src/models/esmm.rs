//! ESMM, the Entire Space Multi-task Model (Ma et al., SIGIR 2018): a click tower and a
//! conversion-given-click tower, both trained over every impression through the product
//! of their probabilities.
//!
//! ```text
//! x --tower_ctr--> a        p(click)            = sigmoid(a)
//! x --tower_cvr--> b        p(convert | click)  = sigmoid(b)   (never supervised directly)
//!                           p(click and convert) = sigmoid(a) sigmoid(b) = sigmoid(z),
//!                           z = logit(sigmoid(a) sigmoid(b))   (the graph's product_logit)
//! ```
//!
//! The two heads are trained on the click label and the click-and-convert label, so the
//! CVR tower learns from the whole impression space instead of the clicked sample only.
//! `p(ctcvr) <= p(ctr)` holds for every row by construction. Defined for two tasks.

use super::Head;
use super::escm2::ClickThenConversion;
use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::graph::{Graph, Node};
use crate::layers::Builder;

/// ESMM's parameters: the CTR and the CVR towers (the pair that ESCM2 and DCMT serve too).
#[derive(Debug, Clone)]
pub(crate) struct Esmm {
    towers: ClickThenConversion,
}

impl Esmm {
    pub(crate) fn build(
        name: &str,
        config: &ModelConfig,
        input: usize,
        b: &mut Builder<'_>,
    ) -> Result<Self, ModelError> {
        Ok(Self {
            towers: ClickThenConversion::build(name, config, input, b)?,
        })
    }
}

impl Head for Esmm {
    fn forward(
        &self,
        g: &mut dyn Graph,
        x: Node,
        logits: &mut Vec<Node>,
    ) -> Result<(), ModelError> {
        self.towers.forward(g, x, logits)
    }
}
