//! The options of the list metrics an evaluation reports (the Ks, the item weights and the
//! item field, the averaging, the fusion form, its weights and a sweep), and how they
//! complete a model's [`EvalConfig`] for a dataset.
//!
//! A front end parses its own spelling of them (the command line's `--k`, `--item-weight`,
//! ...; a binding's keyword arguments) into [`ListOptions`]; `ListOptions::default()` is
//! what an evaluation uses when nothing is asked: K = 10, 50, 100, the deepest event as the
//! item weight, the schema's item field, macro averaging, the model's fusion.

use metrics::{Averaging, EvalConfig, FusionKind, ItemWeight};
use serde::{Deserialize, Serialize};
use shards::Schema;

use crate::{Error, RunError};

/// Which field identifies an item in the list metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemField {
    /// The schema's item field, if it has one (otherwise rows are items).
    #[default]
    Schema,
    /// Every row is an item.
    Rows,
    /// This single-valued field.
    Named(String),
}

/// Options of the list metrics (Weighted Recall@K, Recall@K, NDCG@K, list AUC).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListOptions {
    /// The Ks (each at least 1; the paper reports 100).
    pub ks: Vec<usize>,
    /// Item weight of Weighted Recall@K.
    pub item_weight: ItemWeight,
    /// The field identifying an item (repeated impressions in a request are merged).
    pub item_field: ItemField,
    /// Averaging over requests.
    pub averaging: Averaging,
    /// The fusion Recall@K, NDCG@K and list AUC rank by (`None`: the model's).
    pub fusion: Option<FusionKind>,
    /// Fusion weights, one per task (`None`: the model's).
    pub fusion_weights: Option<Vec<f32>>,
    /// Fusion weight vectors to report WR@K for, under both forms.
    pub fusion_sweep: Vec<Vec<f32>>,
}

impl Default for ListOptions {
    fn default() -> Self {
        Self {
            ks: vec![10, 50, 100],
            item_weight: ItemWeight::DeepestEvent,
            item_field: ItemField::Schema,
            averaging: Averaging::Macro,
            fusion: None,
            fusion_weights: None,
            fusion_sweep: Vec::new(),
        }
    }
}

impl ListOptions {
    /// `base` (the model's evaluation configuration: tasks, fusion) completed with these
    /// options for data with `schema`.
    pub fn eval_config(&self, mut base: EvalConfig, schema: &Schema) -> Result<EvalConfig, Error> {
        self.apply(&mut base, schema)?;
        Ok(base)
    }

    /// Applies the options to `config` (built for the model) for data with `schema`.
    pub fn apply(&self, config: &mut EvalConfig, schema: &Schema) -> Result<(), Error> {
        if self.ks.contains(&0) {
            return Err(RunError::Options("every K must be at least 1".into()).into());
        }
        if self.item_weight == ItemWeight::Column && !schema.weight {
            return Err(RunError::NoWeightColumn.into());
        }
        config.ks = if self.ks.is_empty() {
            ListOptions::default().ks
        } else {
            self.ks.clone()
        };
        config.item_weight = self.item_weight.clone();
        config.item_field = match &self.item_field {
            ItemField::Schema => schema.item.clone(),
            ItemField::Rows => None,
            ItemField::Named(f) => Some(f.clone()),
        };
        config.averaging = self.averaging;
        if let Some(f) = self.fusion {
            config.fusion = f;
        }
        if let Some(w) = &self.fusion_weights {
            config.fusion_weights = w.clone();
        }
        config.fusion_sweep = self.fusion_sweep.clone();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(weight: bool, item: Option<&str>) -> Schema {
        let mut s = shards::synth::schema(&shards::synth::SynthConfig::default());
        s.weight = weight;
        s.item = item.map(String::from);
        s
    }

    #[test]
    fn defaults_take_the_schemas_item_field_and_keep_the_models_fusion() {
        let mut base = EvalConfig::new(vec!["click".into(), "conversion".into()]);
        base.fusion = FusionKind::Multiplicative;
        base.fusion_weights = vec![1.0, 5.0];
        let c = ListOptions::default()
            .eval_config(base.clone(), &schema(false, Some("205")))
            .unwrap();
        assert_eq!(c.item_field.as_deref(), Some("205"));
        assert_eq!(c.ks, [10, 50, 100]);
        assert_eq!(c.fusion, FusionKind::Multiplicative);
        assert_eq!(c.fusion_weights, [1.0, 5.0]);
        let rows = ListOptions {
            item_field: ItemField::Rows,
            fusion: Some(FusionKind::Additive),
            ks: vec![],
            ..Default::default()
        };
        let c = rows.eval_config(base, &schema(false, Some("205"))).unwrap();
        assert_eq!(c.item_field, None);
        assert_eq!(c.fusion, FusionKind::Additive);
        assert_eq!(c.ks, [10, 50, 100]);
    }

    #[test]
    fn impossible_options_are_refused() {
        let base = EvalConfig::new(vec!["click".into()]);
        let zero = ListOptions {
            ks: vec![5, 0],
            ..Default::default()
        };
        assert!(matches!(
            zero.eval_config(base.clone(), &schema(true, None)),
            Err(Error::Run(RunError::Options(_)))
        ));
        let column = ListOptions {
            item_weight: ItemWeight::Column,
            ..Default::default()
        };
        assert!(matches!(
            column.eval_config(base.clone(), &schema(false, None)),
            Err(Error::Run(RunError::NoWeightColumn))
        ));
        assert_eq!(
            column
                .eval_config(base, &schema(true, None))
                .unwrap()
                .item_weight,
            ItemWeight::Column
        );
    }
}
