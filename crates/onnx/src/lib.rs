//! `onnx`: every resflow model kind as a standard ONNX graph (opset 17), for serving stacks
//! that run ONNX.
//!
//! ```text
//! inputs.rs   ids/<field> [N] (single-valued), ids/<field> [N, L] + lengths/<field> [N] (bags),
//!             dense [N, D]  --gather, pool, check-->  x = [embeddings | dense]
//! record.rs   the head's forward pass recorded on an ONNX Graph (the same code that trains
//!             and serves): input BatchNorm folded into the first layers, hidden BatchNorm as
//!             a per-column scale and shift, as the serving plan does
//! lib.rs      probabilities = sigmoid(logits) [N, T];  fused [N];  the model file bytes
//! proto.rs    the protobuf wire format of the ONNX messages
//! ```
//!
//! The contract of the graph:
//!
//! - **Ids** are int64, as the dataset's schema encodes them (id 0 is the unknown bucket of
//!   a learned vocabulary). A bag is given as padded ids `[N, L]` (any padding value; `L`
//!   may be 0) with its lengths `[N]`; each bag has its own `L`.
//! - **Dense features** are standardised by the caller, as for the C ABI: the graph takes
//!   what the model saw in training (`resflow_schema_standardize_dense` does it in C,
//!   `(x - mean) / std` from `schema.json` anywhere else).
//! - **Validation per candidate:** a candidate with an id outside `0..vocab`, a length
//!   outside `0..=L`, or a non-finite dense feature gets NaN probabilities and a NaN fused
//!   score; the other candidates of the request are scored as usual.
//! - Every field is given per candidate (the scorer's request-level split has no
//!   counterpart here).

#![forbid(unsafe_code)]

mod inputs;
pub mod proto;
mod record;
#[cfg(test)]
mod tests;

use std::path::Path;

use model::config::FusionKind;
use model::{Model, ModelError};

pub use inputs::{CANDIDATES, DENSE, ids_name, lengths_name};

use crate::proto::{Attribute, DataType, Dim, ValueInfo};
use crate::record::{Builder, Recorder};

/// The ONNX operator set the graph is written for.
pub const OPSET: i64 = 17;

/// The ONNX IR version of opset 17 (ONNX 1.12).
pub const IR_VERSION: i64 = 8;

/// The output holding every task's probability, `N x T`, tasks in the model's order.
pub const PROBABILITIES: &str = "probabilities";

/// The output holding the fused ranking score, `N`.
pub const FUSED: &str = "fused";

/// The largest file written: a protobuf message is at most 2 GiB.
pub const MAX_BYTES: u64 = (1 << 31) - 1;

/// Why a model cannot be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The model is invalid, or its head uses an op with no place in a serving graph.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The weights do not fit in one ONNX file.
    #[error(
        "the ONNX graph would hold {bytes} bytes of weights; an ONNX file holds at most 2 GiB (a protobuf limit): train with smaller embedding tables (--max-vocab) or serve the model file"
    )]
    TooLarge {
        /// Bytes of the weights.
        bytes: u64,
    },
}

/// The model as ONNX file bytes.
pub fn to_bytes(model: &Model) -> Result<Vec<u8>, ExportError> {
    let dim = model.config.embedding_dim as u64;
    let weights = 4
        * (model
            .layout
            .fields
            .iter()
            .map(|f| (f.vocab as u64 + 1) * dim)
            .sum::<u64>()
            + model
                .tensors
                .iter()
                .map(|(_, m)| (m.rows() * m.cols()) as u64)
                .sum::<u64>());
    if weights > MAX_BYTES - (1 << 24) {
        return Err(ExportError::TooLarge { bytes: weights });
    }
    let net = model.net()?;
    export_net(model, &net)
}

/// The ONNX bytes of `net` (the structure of `model`'s tensors) with `model`'s tables.
fn export_net(model: &Model, net: &model::Net) -> Result<Vec<u8>, ExportError> {
    let mut b = Builder::default();
    let assembled = inputs::assemble(&mut b, model);
    let mut g = Recorder::new(model, b, assembled.x.clone(), assembled.order.clone());
    let x = g.input_node();
    let mut logits = Vec::new();
    net.forward(&mut g, x, &mut logits)?;
    let names: Vec<String> = logits.iter().map(|&z| g.tensor(z)).collect();
    let mut b = g.b;

    let tasks = model.layout.tasks.len();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let z = b.node("Concat", &refs, vec![Attribute::Int("axis", 1)]);
    match &assembled.bad {
        Some(bad) => {
            // 0 for a valid candidate, NaN for one with a bad input.
            let zero = b.scalar(0.0);
            let nan = b.scalar(f32::NAN);
            let any = b.node("Greater", &[bad, &zero], vec![]);
            let check = b.node("Where", &[&any, &nan, &zero], vec![]);
            let p = b.node("Sigmoid", &[&z], vec![]);
            b.node_named("Add", &[&p, &check], vec![], PROBABILITIES);
        }
        None => b.node_named("Sigmoid", &[&z], vec![], PROBABILITIES),
    }
    fused(&mut b, model, tasks);

    let outputs = vec![
        ValueInfo {
            name: PROBABILITIES.into(),
            data_type: DataType::Float,
            dims: vec![Dim::Named(CANDIDATES.into()), Dim::Fixed(tasks as i64)],
            doc: format!(
                "probability of each task, in the order {}",
                json_list(&model.layout.tasks)
            ),
        },
        ValueInfo {
            name: FUSED.into(),
            data_type: DataType::Float,
            dims: vec![Dim::Named(CANDIDATES.into())],
            doc: "the fused ranking score of the model's configuration".into(),
        },
    ];
    let kind = model.config.model.name();
    let graph = proto::Graph {
        nodes: b.nodes,
        name: format!("resflow_{kind}"),
        initializers: b.initializers,
        doc: "Inputs: ids/<field> int64 [N] per single-valued field; ids/<field> int64 [N, L] \
              padded and lengths/<field> int64 [N] per bag; dense float [N, D], standardised \
              as in training. A candidate with an id outside 0..vocab, a length outside 0..=L \
              or a non-finite dense value scores NaN."
            .into(),
        inputs: assembled.inputs,
        outputs,
    };
    let fields: Vec<String> = model.layout.fields.iter().map(|f| f.name.clone()).collect();
    let file = proto::Model {
        ir_version: IR_VERSION,
        opset: OPSET,
        producer_name: "resflow".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc: format!("resflow model ({kind}), exported for serving"),
        graph,
        metadata: vec![
            ("resflow.model".into(), kind.into()),
            ("resflow.tasks".into(), json_list(&model.layout.tasks)),
            ("resflow.fields".into(), json_list(&fields)),
            ("resflow.dense".into(), model.layout.dense.to_string()),
            ("resflow.layout".into(), layout_json(&model.layout)),
        ],
    };
    let bytes = file.encode();
    if bytes.len() as u64 > MAX_BYTES {
        return Err(ExportError::TooLarge {
            bytes: bytes.len() as u64,
        });
    }
    Ok(bytes)
}

/// Writes the model's ONNX graph to `path` atomically (a temporary sibling, then a rename).
pub fn save(model: &Model, path: &Path) -> Result<(), ExportError> {
    let bytes = to_bytes(model)?;
    model::write_atomically(path, &bytes)?;
    Ok(())
}

/// The fused score as `metrics::fuse_row` computes it: `sum_t w_t p_t` (additive), or
/// `prod_t (p_t / p_(t-1)) ^ w_t` with `p_0 = 1` and a ratio of 0 after a zero
/// (multiplicative).
fn fused(b: &mut Builder, model: &Model, tasks: usize) {
    let w = model.config.fusion_weights();
    let axis1 = b.i64("axes", vec![1], &[1]);
    match model.config.fusion.kind {
        FusionKind::Additive => {
            let wc = b.f32("fusion/weights", vec![tasks as i64, 1], &w);
            let s = b.node("MatMul", &[PROBABILITIES, &wc], vec![]);
            b.node_named("Squeeze", &[&s, &axis1], vec![], FUSED);
        }
        FusionKind::Multiplicative => {
            let slice = |b: &mut Builder, from: i64, to: i64| {
                let starts = b.i64("starts", vec![1], &[from]);
                let ends = b.i64("ends", vec![1], &[to]);
                b.node("Slice", &[PROBABILITIES, &starts, &ends, &axis1], vec![])
            };
            let ratios = if tasks == 1 {
                PROBABILITIES.to_string()
            } else {
                let first = slice(b, 0, 1);
                let prev = slice(b, 0, tasks as i64 - 1);
                let next = slice(b, 1, tasks as i64);
                let zero = b.scalar(0.0);
                let positive = b.node("Greater", &[&prev, &zero], vec![]);
                let q = b.node("Div", &[&next, &prev], vec![]);
                let q = b.node("Where", &[&positive, &q, &zero], vec![]);
                b.node("Concat", &[&first, &q], vec![Attribute::Int("axis", 1)])
            };
            let wc = b.f32("fusion/weights", vec![tasks as i64], &w);
            let powers = b.node("Pow", &[&ratios, &wc], vec![]);
            b.node_named(
                "ReduceProd",
                &[&powers],
                vec![
                    Attribute::Ints("axes", vec![1]),
                    Attribute::Int("keepdims", 0),
                ],
                FUSED,
            );
        }
    }
}

/// `"text"`: a JSON string.
fn json_str(s: &str) -> String {
    let mut q = String::from('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            c if (c as u32) < 0x20 => q.push_str(&format!("\\u{:04x}", c as u32)),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// `["a", "b"]`: a JSON list of strings.
fn json_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| json_str(s)).collect();
    format!("[{}]", quoted.join(", "))
}

/// The input layout as JSON, for a caller that builds the inputs from the file alone:
/// `{"fields": [{"name", "vocab", "bag": null | "sum" | "mean"}], "dense": D, "tasks": [...]}`.
fn layout_json(layout: &model::InputLayout) -> String {
    let fields: Vec<String> = layout
        .fields
        .iter()
        .map(|f| {
            let bag = match f.bag {
                None => "null",
                Some(model::Pooling::Sum) => "\"sum\"",
                Some(model::Pooling::Mean) => "\"mean\"",
            };
            format!(
                "{{\"name\": {}, \"vocab\": {}, \"bag\": {bag}}}",
                json_str(&f.name),
                f.vocab
            )
        })
        .collect();
    format!(
        "{{\"fields\": [{}], \"dense\": {}, \"tasks\": {}}}",
        fields.join(", "),
        layout.dense,
        json_list(&layout.tasks)
    )
}
