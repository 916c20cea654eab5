//! Shared-Bottom (Caruana 1997): one MLP shared by every task, a small tower per task.
//!
//! ```text
//! x --bottom MLP--> s --tower_t--> z_t        for every task t
//! ```
//!
//! All tasks read the same representation `s`, so a sparse task borrows the dense task's
//! features entirely, and conflicting tasks pull `s` in different directions.

use super::Head;
use crate::config::{ModelConfig, SharedBottomConfig};
use crate::error::ModelError;
use crate::graph::{Graph, Node};
use crate::layers::{Builder, Mlp, Tower};

/// Shared-Bottom's parameters.
#[derive(Debug, Clone)]
pub(crate) struct SharedBottom {
    bottom: Mlp,
    towers: Vec<Tower>,
}

impl SharedBottom {
    pub(crate) fn build(
        name: &str,
        c: &SharedBottomConfig,
        config: &ModelConfig,
        input: usize,
        b: &mut Builder<'_>,
    ) -> Result<Self, ModelError> {
        let (bottom, width) = b.mlp(&format!("{name}/bottom"), input, &c.bottom)?;
        let towers = b.towers(name, config.tasks.len(), width, &c.tower)?;
        Ok(Self { bottom, towers })
    }
}

impl Head for SharedBottom {
    fn forward(
        &self,
        g: &mut dyn Graph,
        x: Node,
        logits: &mut Vec<Node>,
    ) -> Result<(), ModelError> {
        let s = self.bottom.forward(g, x)?;
        for tower in &self.towers {
            logits.push(tower.forward(g, s)?);
        }
        Ok(())
    }
}
