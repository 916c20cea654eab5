//! Catching a diverged training at the step where it happens.
//!
//! A learning rate far too high, or a pathological batch, can turn the loss and then the
//! parameters into NaN or infinity. Left alone, training would go on for hours on garbage
//! and write a model nothing can load. [`check_step`] runs after every optimiser step: the
//! step's losses and every dense parameter must be finite (the dense parameters are a few
//! hundred thousand floats, a pass over them costs far less than a step). Embedding tables
//! are checked where they are written: a checkpoint or model holding a non-finite value is
//! never written ([`crate::integrity`]), so the last good checkpoint stays on disk.

use autodiff::ParamStore;
use model::ModelError;
use model::config::TaskConfig;
use model::integrity::first_non_finite;

/// An error when step `step` just taken diverged: a non-finite loss (`losses`, one per
/// task of `tasks`) or dense parameter of `store`; it names the step, the task or
/// parameter, and the remedy.
pub fn check_step(
    step: u64,
    tasks: &[TaskConfig],
    losses: &[f64],
    store: &ParamStore,
) -> Result<(), ModelError> {
    let remedy = "the last checkpoint written before it is kept; lower \
                  optimizer.learning_rate or check the data";
    for (task, loss) in tasks.iter().zip(losses) {
        if !loss.is_finite() {
            return Err(ModelError::NonFinite(format!(
                "training diverged at step {step}: the loss of task {:?} is {loss}; {remedy}",
                task.name
            )));
        }
    }
    for p in store
        .dense
        .iter()
        .filter(|p| !all_finite(p.value.as_slice()))
    {
        if let Some((i, x)) = first_non_finite(p.value.as_slice()) {
            return Err(ModelError::NonFinite(format!(
                "training diverged at step {step}: parameter {:?} holds {x} at index {i}; {remedy}",
                p.name
            )));
        }
    }
    Ok(())
}

/// Whether every value is finite. A float is infinite or NaN when its exponent bits are
/// all ones: the largest exponent field of a block is one vectorised pass, where a search
/// that stops at the first offender runs one element at a time (this check follows every
/// step, over every dense parameter).
fn all_finite(values: &[f32]) -> bool {
    const EXPONENT: u32 = 0x7f80_0000;
    values.chunks(4096).all(|block| {
        block
            .iter()
            .map(|x| x.to_bits() & EXPONENT)
            .fold(0, u32::max)
            != EXPONENT
    })
}

#[cfg(test)]
mod tests {
    use super::all_finite;

    #[test]
    fn all_finite_finds_every_kind_of_non_finite_anywhere() {
        assert!(all_finite(&[]));
        let mut v: Vec<f32> = (0..10_000).map(|i| i as f32 * 1e30 - 3e33).collect();
        v.push(f32::MAX);
        v.push(f32::MIN_POSITIVE / 2.0);
        assert!(all_finite(&v));
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            for at in [0, 4095, 4096, v.len() - 1] {
                let mut w = v.clone();
                w[at] = bad;
                assert!(!all_finite(&w), "{bad} at {at}");
            }
        }
    }
}
