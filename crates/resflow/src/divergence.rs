//! Catching a diverged training at the step where it happens.
//!
//! A learning rate far too high, or a pathological batch, can turn the loss and then the
//! parameters into NaN or infinity. Left alone, training would go on for hours on garbage
//! and write a model nothing can load. [`check_step`] runs after every optimiser step: the
//! step's losses and every dense parameter must be finite (the dense parameters are a few
//! hundred thousand floats, a pass over them costs far less than a step). Embedding tables
//! are checked where they are written: a checkpoint or model holding a non-finite value is
//! never written ([`crate::integrity`]), so the last good checkpoint stays on disk.

use crate::error::ModelError;
use crate::integrity::first_non_finite;
use crate::trainer::{StepStats, Trainer};

/// An error when the step just taken diverged (a non-finite loss or dense parameter),
/// naming the step, the task or parameter, and the remedy.
pub fn check_step(trainer: &Trainer, stats: &StepStats) -> Result<(), ModelError> {
    let step = trainer.step;
    let remedy = "the last checkpoint written before it is kept; lower \
                  optimizer.learning_rate or check the data";
    for (task, loss) in trainer.network.config.tasks.iter().zip(&stats.losses) {
        if !loss.is_finite() {
            return Err(ModelError::NonFinite(format!(
                "training diverged at step {step}: the loss of task {:?} is {loss}; {remedy}",
                task.name
            )));
        }
    }
    for p in &trainer.store.dense {
        if let Some((i, x)) = first_non_finite(p.value.as_slice()) {
            return Err(ModelError::NonFinite(format!(
                "training diverged at step {step}: parameter {:?} holds {x} at index {i}; {remedy}",
                p.name
            )));
        }
    }
    Ok(())
}
