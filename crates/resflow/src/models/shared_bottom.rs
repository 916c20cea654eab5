//! Shared-Bottom (Caruana 1997): one MLP shared by every task, a small tower per task.
//!
//! ```text
//! x --bottom MLP--> s --tower_t--> z_t        for every task t
//! ```
//!
//! All tasks read the same representation `s`, so a sparse task borrows the dense task's
//! features entirely, and conflicting tasks pull `s` in different directions.

use autodiff::Var;

use super::{Builder, Ctx, PREFIX, TaskTower, push_bn};
use crate::config::SharedBottomConfig;
use crate::error::ModelError;
use crate::network::{BnIds, LayerIds};

/// Shared-Bottom's parameters.
#[derive(Debug, Clone)]
pub(crate) struct SharedBottom {
    bottom: Vec<LayerIds>,
    towers: Vec<TaskTower>,
}

impl SharedBottom {
    pub(crate) fn build(
        c: &SharedBottomConfig,
        tasks: usize,
        input: usize,
        b: &mut Builder<'_>,
    ) -> Result<Self, ModelError> {
        let name = format!("{PREFIX}shared_bottom");
        let (bottom, width) = b.mlp(&format!("{name}/bottom"), input, &c.bottom)?;
        let towers = TaskTower::per_task(b, &name, tasks, width, &c.tower)?;
        Ok(Self { bottom, towers })
    }

    pub(crate) fn forward(
        &self,
        ctx: &mut Ctx<'_>,
        x: Var,
        logits: &mut Vec<Var>,
    ) -> Result<(), ModelError> {
        let s = ctx.mlp(x, &self.bottom)?;
        for tower in &self.towers {
            logits.push(tower.forward(ctx, s)?);
        }
        Ok(())
    }

    pub(crate) fn bn_layers_mut<'a>(&'a mut self, v: &mut Vec<&'a mut BnIds>) {
        push_bn(&mut self.bottom, v);
        for t in &mut self.towers {
            t.bn_layers_mut(v);
        }
    }
}
