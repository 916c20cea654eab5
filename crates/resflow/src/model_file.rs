//! The exported model file: safetensors, with the configuration and the input layout as
//! JSON in its metadata.
//!
//! ```text
//! metadata:  format = "resflow-model", version = "1", config = {...}, layout = {...}
//! tensors:   embedding/<field>            [vocab, dim]
//!            task/<t>/layer/<l>/weight    [in, out]      (input BatchNorm folded in at l = 0)
//!            task/<t>/layer/<l>/bias      [out]
//!            task/<t>/layer/<l>/slope     [out]          PReLU slopes
//!            task/<t>/layer/<l>/scale     [out]          hidden BatchNorm, as scale ...
//!            task/<t>/layer/<l>/shift     [out]          ... and shift
//!            task/<t>/logit/weight        [last]
//!            task/<t>/logit/bias          [1]
//! baselines (Shared-Bottom, ESMM, MMoE, PLE, AITM), instead of the task/ tensors:
//!            input_bn/{gamma,beta,running_mean,running_var}   [1, width]
//!            head/<model>/...             [rows, cols]   the head in training form
//! ```
//!
//! safetensors is a small, widely read format (a JSON header, then raw little-endian
//! arrays), so a model can be inspected with other tools. The metadata also holds a CRC-32
//! of every tensor and of the other metadata entries, verified on load, and the bytes are a
//! function of the content ([`crate::integrity`]). Files are written to a temporary name,
//! flushed and renamed, so a crash never leaves a half-written model under the real name.
//! Loading checks the checksums, then every tensor's dtype, shape and finiteness against
//! the configuration. A model holding a NaN or an infinity is never written.

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::tensor::Dtype;
use tensor::Matrix;

use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::integrity::{self, Array};
use crate::layout::InputLayout;
use crate::serving::{HiddenLayer, ServingModel, Tower};

/// The `format` value in the metadata.
pub const FORMAT: &str = "resflow-model";
/// The file format version this build writes and reads (2: checksums, deterministic bytes).
pub const VERSION: &str = "2";

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ModelError + '_ {
    move |source| ModelError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `bytes` to `path` atomically (a temporary sibling, fsync, rename; stale
/// temporaries of killed writers removed): [`shards::write_atomically`], with this crate's
/// error.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    shards::write_atomically(path, bytes).map_err(io_err(path))
}

impl ServingModel {
    /// Serialises the model to safetensors bytes: deterministic, with checksums; a model
    /// holding a NaN or an infinity is refused (see [`crate::integrity`]).
    pub fn to_bytes(&self) -> Result<Vec<u8>, ModelError> {
        self.validate()?;
        let mut arrays: Vec<Array<'_>> = Vec::new();
        let mut push = |name: String, shape: Vec<usize>, values: &[f32]| {
            arrays.push(Array::owned(name, shape, values.to_vec()));
        };
        for (table, field) in self.embeddings.iter().zip(&self.layout.fields) {
            push(
                format!("embedding/{}", field.name),
                vec![table.rows(), table.cols()],
                &table.to_vec(),
            );
        }
        for (t, tower) in self.towers.iter().enumerate() {
            for (l, layer) in tower.layers.iter().enumerate() {
                let p = format!("task/{t}/layer/{l}");
                let (rows, cols) = layer.weight.shape();
                push(
                    format!("{p}/weight"),
                    vec![rows, cols],
                    &layer.weight.to_vec(),
                );
                push(format!("{p}/bias"), vec![cols], &layer.bias);
                push(format!("{p}/slope"), vec![cols], &layer.slope);
                push(format!("{p}/scale"), vec![cols], &layer.scale);
                push(format!("{p}/shift"), vec![cols], &layer.shift);
            }
            push(
                format!("task/{t}/logit/weight"),
                vec![tower.logit_weight.len()],
                &tower.logit_weight,
            );
            push(format!("task/{t}/logit/bias"), vec![1], &[tower.logit_bias]);
        }
        for (name, m) in &self.head {
            push(name.clone(), vec![m.rows(), m.cols()], &m.to_vec());
        }
        let json = |v: serde_json::Result<String>| v.map_err(|e| ModelError::Config(e.to_string()));
        let metadata = BTreeMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("version".to_string(), VERSION.to_string()),
            (
                "config".to_string(),
                json(serde_json::to_string(&self.config))?,
            ),
            (
                "layout".to_string(),
                json(serde_json::to_string(&self.layout))?,
            ),
        ]);
        integrity::serialize(arrays, metadata).map_err(ModelError::NonFinite)
    }

    /// Writes the model file atomically.
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        write_atomically(path, &self.to_bytes()?)
    }

    /// Reads a model file.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }

    /// Parses model-file bytes; `origin` names them in errors.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Self, ModelError> {
        let bad = |detail: String| ModelError::ModelFile {
            path: origin.to_string(),
            detail,
        };
        let (st, meta) = integrity::open(bytes).map_err(bad)?;
        let get = |key: &str| {
            meta.get(key)
                .ok_or_else(|| bad(format!("metadata has no {key:?} entry")))
        };
        if get("format")? != FORMAT {
            return Err(bad(format!(
                "format is {:?}, expected {FORMAT:?}",
                get("format")?
            )));
        }
        if get("version")? != VERSION {
            return Err(bad(format!(
                "format version {:?}, this build reads {VERSION:?}{}",
                get("version")?,
                if get("version")? == "1" {
                    " (version 1 files carry no checksums: export the model again from its checkpoint)"
                } else {
                    ""
                }
            )));
        }
        let config: ModelConfig = serde_json::from_str(get("config")?)
            .map_err(|e| bad(format!("config metadata: {e}")))?;
        let layout: InputLayout = serde_json::from_str(get("layout")?)
            .map_err(|e| bad(format!("layout metadata: {e}")))?;
        config.validate().map_err(|e| bad(e.to_string()))?;
        layout.validate().map_err(|e| bad(e.to_string()))?;

        let array = |name: &str, shape: &[usize]| -> Result<Vec<f32>, ModelError> {
            let view = st
                .tensor(name)
                .map_err(|_| bad(format!("tensor {name:?} is missing")))?;
            if view.dtype() != Dtype::F32 {
                return Err(bad(format!(
                    "tensor {name:?} is {:?}, expected F32",
                    view.dtype()
                )));
            }
            if view.shape() != shape {
                return Err(bad(format!(
                    "tensor {name:?} has shape {:?}, expected {shape:?}",
                    view.shape()
                )));
            }
            let values: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            if values.iter().any(|v| !v.is_finite()) {
                return Err(bad(format!(
                    "tensor {name:?} holds a NaN or infinite value"
                )));
            }
            Ok(values)
        };
        let matrix = |name: &str, rows: usize, cols: usize| -> Result<Matrix, ModelError> {
            Matrix::from_slice(rows, cols, &array(name, &[rows, cols])?).map_err(ModelError::from)
        };

        let dim = config.embedding_dim;
        let embeddings = layout
            .fields
            .iter()
            .map(|f| matrix(&format!("embedding/{}", f.name), f.vocab as usize, dim))
            .collect::<Result<Vec<_>, _>>()?;
        let mut towers = Vec::with_capacity(config.tasks.len());
        let mut head = Vec::new();
        if !config.model.is_tower_chain() {
            let mut names: Vec<&str> = st
                .names()
                .into_iter()
                .filter(|n| !n.starts_with("embedding/"))
                .collect();
            names.sort_unstable();
            for name in names {
                let shape = st
                    .tensor(name)
                    .map_err(|e| bad(format!("tensor {name:?}: {e}")))?
                    .shape()
                    .to_vec();
                let [rows, cols] = shape[..] else {
                    return Err(bad(format!(
                        "tensor {name:?} has shape {shape:?}, expected two dimensions"
                    )));
                };
                head.push((name.to_string(), matrix(name, rows, cols)?));
            }
        }
        for t in 0..config.tasks.len() {
            if !config.model.is_tower_chain() {
                break;
            }
            let mut width = layout.input_width(dim);
            let mut layers = Vec::with_capacity(config.hidden.len());
            for (l, &out) in config.hidden.iter().enumerate() {
                let p = format!("task/{t}/layer/{l}");
                layers.push(HiddenLayer {
                    weight: matrix(&format!("{p}/weight"), width, out)?,
                    bias: array(&format!("{p}/bias"), &[out])?,
                    slope: array(&format!("{p}/slope"), &[out])?,
                    scale: array(&format!("{p}/scale"), &[out])?,
                    shift: array(&format!("{p}/shift"), &[out])?,
                });
                width = out;
            }
            towers.push(Tower {
                layers,
                logit_weight: array(&format!("task/{t}/logit/weight"), &[width])?,
                logit_bias: array(&format!("task/{t}/logit/bias"), &[1])?[0],
            });
        }
        let model = ServingModel {
            config,
            layout,
            embeddings,
            towers,
            head,
        };
        model.validate().map_err(|e| bad(e.to_string()))?;
        Ok(model)
    }
}
