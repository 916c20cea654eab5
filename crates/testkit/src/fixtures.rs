//! The small model that the scorer's tests and the ONNX export's tests both score: seven
//! fields of a few dozen to a few hundred ids, two of them bags (a sum and a mean; the sum
//! stands between single-valued fields, so that an order of columns that puts the single
//! fields first differs from the layout's), three dense features, and up to three tasks.

use model::config::TaskConfig;
use model::{Field, InputLayout, ModelConfig, Pooling};

/// The task names, of which a fixture takes the first `tasks`.
const TASKS: [&str; 3] = ["click", "cart", "order"];

/// The layout: `user` (50 ids), `age` (7), the bag `history` (300, summed), `item` (300),
/// `shop` (40), the bag `tags` (25, averaged), `cat` (12); 3 dense features; the first
/// `tasks` of click, cart, order. Panics on more than 3 tasks.
pub fn small_layout(tasks: usize) -> InputLayout {
    let field = |name: &str, vocab: u32, bag: Option<Pooling>| Field {
        name: name.into(),
        vocab,
        bag,
    };
    InputLayout {
        fields: vec![
            field("user", 50, None),
            field("age", 7, None),
            field("history", 300, Some(Pooling::Sum)),
            field("item", 300, None),
            field("shop", 40, None),
            field("tags", 25, Some(Pooling::Mean)),
            field("cat", 12, None),
        ],
        dense: 3,
        tasks: TASKS[..tasks].iter().map(|s| s.to_string()).collect(),
    }
}

/// The default model (ResFlow) with 8-wide embeddings and hidden layers of 24 and 10, over
/// the tasks of [`small_layout`] (each of weight 1). Panics on more than 3 tasks.
pub fn small_config(tasks: usize) -> ModelConfig {
    ModelConfig {
        embedding_dim: 8,
        hidden: vec![24, 10],
        tasks: TASKS[..tasks]
            .iter()
            .map(|n| TaskConfig::unweighted(*n))
            .collect(),
        ..ModelConfig::default()
    }
}
