//! Training and evaluating regression models (see [`model::regression`] for the two forms
//! and the decoder): resolving thresholds and statistics from the training target, and
//! the MSE and MAE of the served prediction on a dataset.
//!
//! ```text
//! prepare(config, train)   read the target column, resolve thresholds / percentiles, end
//!                          values, mean and std; the tasks become the heads
//! Trainer::new(config, ..) trains them (network.rs builds the loss from the target column)
//! evaluate(scorer, data)   fused score = predicted value  ->  MSE, MAE against the target
//! ```

pub use model::regression::*;

use metrics::{RegressionErrors, RegressionReport};
use model::{ModelConfig, ModelError, Scorer};
use shards::Dataset;

use crate::error::Error;
use crate::score_data::score_dataset;

/// The position of the continuous target `name` among `data`'s columns; an error when it
/// is missing or a 0/1 label.
pub fn target_column(data: &Dataset, name: &str) -> Result<usize, Error> {
    let schema = data.schema();
    let Some(k) = schema.task_index(name) else {
        return Err(ModelError::Layout(format!(
            "the regression target {name:?} is not a column of the data (its tasks: {:?})",
            schema.tasks
        ))
        .into());
    };
    if !schema.targets.iter().any(|t| t == name) {
        return Err(ModelError::Layout(format!(
            "column {name:?} holds 0/1 labels, not a continuous target (convert it with \"targets\": [{name:?}])"
        ))
        .into());
    }
    Ok(k)
}

/// Every value of the target column `name` of `data`, in storage order.
pub fn target_values(data: &Dataset, name: &str) -> Result<Vec<f32>, Error> {
    let k = target_column(data, name)?;
    let t = data.schema().tasks.len();
    let mut out = Vec::new();
    out.try_reserve_exact(data.rows()).map_err(|_| {
        ModelError::Layout(format!(
            "{} target values do not fit in memory",
            data.rows()
        ))
    })?;
    let mut batches = data.batches(65_536, None);
    let mut batch = data.new_batch();
    while batches.next_into(&mut batch) {
        out.extend(batch.labels.chunks_exact(t).map(|row| row[k]));
    }
    Ok(out)
}

/// Resolves a regression configuration from the training set (nothing to do for other
/// models): see [`ModelConfig::resolve_regression`].
pub fn prepare(config: &mut ModelConfig, train: &Dataset) -> Result<(), Error> {
    let Some(r) = &config.regression else {
        return Ok(());
    };
    let y = target_values(train, &r.target)?;
    config.resolve_regression(&y)?;
    Ok(())
}

/// MSE and MAE of a regression model's served prediction (the scorer's fused score) on
/// `data`, against its target column (weighted by the weight column when there is one).
pub fn evaluate(scorer: &Scorer, data: &Dataset) -> Result<RegressionReport, Error> {
    let Some(r) = &scorer.model().config.regression else {
        return Err(ModelError::Config(
            "the model predicts 0/1 tasks, not a continuous target".into(),
        )
        .into());
    };
    let k = target_column(data, &r.target)?;
    let t = data.schema().tasks.len();
    let mut errors = RegressionErrors::default();
    let mut y = Vec::new();
    score_dataset(scorer, data, |_, values, batch| {
        y.clear();
        y.extend(batch.labels.chunks_exact(t).map(|row| row[k]));
        let w = (!batch.weight.is_empty()).then_some(batch.weight.as_slice());
        errors.push(values, &y, w)?;
        Ok(())
    })?;
    Ok(errors.report()?)
}

/// The MSE and MAE of the best constant, the training mean, on `data` (what a model must
/// beat to have learned anything).
pub fn constant_baseline(
    train: &Dataset,
    data: &Dataset,
    name: &str,
) -> Result<RegressionReport, Error> {
    let y_train = target_values(train, name)?;
    let mean =
        (y_train.iter().map(|&v| v as f64).sum::<f64>() / y_train.len().max(1) as f64) as f32;
    let y = target_values(data, name)?;
    Ok(metrics::regression_errors(&vec![mean; y.len()], &y)?)
}
