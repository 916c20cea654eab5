//! Feeding dataset batches to the evaluator: besides probabilities, labels and group ids,
//! the list metrics may need each row's item id (to merge repeated impressions of an item
//! in a request) and its weight column (item weights from a column). Which field is the
//! item comes from the evaluation configuration; this resolves it against the dataset's
//! schema once and extracts the column batch by batch.

use metrics::{EvalBatch, EvalConfig, StreamingEvaluator};
use shards::{Batch, Schema};

use model::ModelError;

use crate::error::Error;

/// Pushes batches of one dataset into a [`StreamingEvaluator`].
#[derive(Debug, Clone)]
pub struct EvalFeeder {
    item: Option<usize>,
    single: usize,
    items: Vec<u64>,
}

impl EvalFeeder {
    /// A feeder for data with `schema`, evaluated with `config`; an error when the
    /// configuration's item field is not a single-valued field of the schema.
    pub fn new(schema: &Schema, config: &EvalConfig) -> Result<Self, ModelError> {
        let item = match &config.item_field {
            None => None,
            Some(name) => Some(schema.single_index(name).ok_or_else(|| {
                ModelError::Layout(format!(
                    "item field {name:?} is not a single-valued field of the dataset (its fields: {:?})",
                    schema.single.iter().map(|f| &f.name).collect::<Vec<_>>()
                ))
            })?),
        };
        Ok(Self {
            item,
            single: schema.single.len(),
            items: Vec::new(),
        })
    }

    /// Adds one batch and its `rows x tasks` probabilities.
    pub fn push(
        &mut self,
        ev: &mut StreamingEvaluator,
        probs: &[f32],
        batch: &Batch,
    ) -> Result<(), Error> {
        if let Some(f) = self.item {
            self.items.clear();
            self.items.extend(
                batch
                    .single_ids
                    .chunks(self.single)
                    .map(|row| row[f] as u64),
            );
        }
        ev.push_rows(EvalBatch {
            probs,
            labels: &batch.labels,
            groups: (!batch.group.is_empty()).then_some(batch.group.as_slice()),
            items: self.item.map(|_| self.items.as_slice()),
            weights: (!batch.weight.is_empty()).then_some(batch.weight.as_slice()),
        })?;
        Ok(())
    }
}
