//! The model file: safetensors, with the configuration and the input layout as JSON in
//! its metadata, and every tensor of the [`Model`] under its own name.
//!
//! ```text
//! metadata:  format = "resflow-model", version = "3", config = {...}, layout = {...},
//!            checksums = CRC-32 of every tensor and of the other metadata (integrity.rs)
//! tensors:   embedding/<field>                                  [vocab, dim]
//!            input_bn/{gamma,beta,running_mean,running_var}     [1, width]
//!            head/<kind>/...                                    [rows, cols]   (see models/)
//!            e.g. head/resflow/task/<t>/layer/<l>/{weight,bias,slope}, .../bn/{gamma,...},
//!                 head/resflow/task/<t>/logit/{weight,bias}
//! ```
//!
//! The file holds the model as trained (BatchNorm layers with their statistics); the
//! scorer folds them when it compiles its plan. safetensors is a small, widely read format
//! (a JSON header, then raw little-endian arrays), so a model can be inspected with other
//! tools. Files are written to a temporary name, flushed and renamed, so a crash never
//! leaves a half-written model under the real name. The bytes are a function of the
//! content; loading verifies the checksums, then every tensor's dtype, shape and values
//! against the configuration. A model holding a NaN or an infinity is never written.
//!
//! Version 2 files (checksums, written before every kind was stored the same way) still
//! load: a baseline's tensors had today's names already; ResFlow's (`task/<t>/layer/<l>/...`)
//! were stored folded, the input BatchNorm inside the first layer and each hidden BatchNorm
//! as a `scale` and `shift`. Such a file is read back as the same function: an input
//! BatchNorm that does nothing and hidden BatchNorms whose `gamma` and `beta` give that
//! scale and shift (see [`from_folded_towers`]). Version 1 files (no checksums) are refused
//! with a message saying to export the model again; any other version with a message
//! naming it.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::tensor::Dtype;
use tensor::Matrix;

use crate::config::{BatchNormMode, ModelConfig};
use crate::error::ModelError;
use crate::integrity::{self, Array};
use crate::layout::InputLayout;
use crate::model::Model;

/// The `format` value in the metadata.
pub const FORMAT: &str = "resflow-model";
/// The file format version this build writes (3: every model kind as named tensors, with
/// checksums).
pub const VERSION: &str = "3";
/// The older version this build still reads (2: checksums, ResFlow's towers stored folded;
/// see the module documentation).
pub const VERSION_2: &str = "2";

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

impl Model {
    /// Serialises the model to safetensors bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ModelError> {
        self.validate()?;
        // The tables are most of the bytes: borrowed where their rows are contiguous.
        let mut arrays: Vec<Array<'_>> = Vec::new();
        for (table, field) in self.embeddings.iter().zip(&self.layout.fields) {
            let (name, shape) = (
                format!("embedding/{}", field.name),
                vec![table.rows(), table.cols()],
            );
            arrays.push(if table.ld() == table.cols() {
                Array::borrowed(name, shape, table.as_slice())
            } else {
                Array::owned(name, shape, table.to_vec())
            });
        }
        for (name, m) in &self.tensors {
            arrays.push(Array::owned(
                name.clone(),
                vec![m.rows(), m.cols()],
                m.to_vec(),
            ));
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
        let version = get("version")?;
        if version != VERSION && version != VERSION_2 {
            return Err(bad(format!(
                "format version {version:?}; this build reads versions {VERSION_2:?} and \
                 {VERSION:?}{}",
                if version == "1" {
                    " (version 1 files carry no checksums: export the model again from its \
                     checkpoint)"
                } else {
                    " (a newer resflow wrote it?)"
                }
            )));
        }
        let config: ModelConfig = serde_json::from_str(get("config")?)
            .map_err(|e| bad(format!("config metadata: {e}")))?;
        let layout: InputLayout = serde_json::from_str(get("layout")?)
            .map_err(|e| bad(format!("layout metadata: {e}")))?;
        config.validate().map_err(|e| bad(e.to_string()))?;
        layout.validate().map_err(|e| bad(e.to_string()))?;

        // Every tensor as a matrix (a one-dimensional tensor as one row).
        let mut tensors: Vec<(String, Matrix)> = Vec::new();
        let mut names: Vec<&str> = st.names().into_iter().collect();
        names.sort_unstable();
        for name in names {
            let view = st
                .tensor(name)
                .map_err(|e| bad(format!("tensor {name:?}: {e}")))?;
            if view.dtype() != Dtype::F32 {
                return Err(bad(format!(
                    "tensor {name:?} is {:?}, expected F32",
                    view.dtype()
                )));
            }
            let (rows, cols) = match *view.shape() {
                [n] => (1, n),
                [r, c] => (r, c),
                ref other => {
                    return Err(bad(format!(
                        "tensor {name:?} has shape {other:?}, expected one or two dimensions"
                    )));
                }
            };
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
            let m = Matrix::from_slice(rows, cols, &values).map_err(|e| bad(e.to_string()))?;
            tensors.push((name.to_string(), m));
        }
        let dim = config.embedding_dim;
        let mut embeddings = Vec::with_capacity(layout.fields.len());
        for f in &layout.fields {
            let name = format!("embedding/{}", f.name);
            let i = tensors
                .iter()
                .position(|(n, _)| *n == name)
                .ok_or_else(|| bad(format!("tensor {name:?} is missing")))?;
            let (_, m) = tensors.swap_remove(i);
            if m.shape() != (f.vocab as usize, dim) {
                return Err(bad(format!(
                    "tensor {name:?} has shape {:?}, expected ({}, {dim})",
                    m.shape(),
                    f.vocab
                )));
            }
            embeddings.push(m);
        }
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        if version == VERSION_2 && tensors.iter().any(|(n, _)| n.starts_with("task/")) {
            tensors =
                from_folded_towers(&config, &layout, tensors).map_err(|e| bad(e.to_string()))?;
        }
        let model = Model {
            config,
            layout,
            embeddings,
            tensors,
        };
        // Put the tensors in the order the model's structure finds them.
        let model = model.canonical().map_err(|e| bad(e.to_string()))?;
        Ok(model)
    }

    /// The same model with its tensors in creation order (the order [`Model::init`] gives),
    /// after checking them all (see [`Model::net`]).
    pub fn canonical(mut self) -> Result<Self, ModelError> {
        self.validate()?;
        let order = crate::model::tensor_names(&self.config, &self.layout)?;
        let mut by_name: HashMap<String, Matrix> =
            std::mem::take(&mut self.tensors).into_iter().collect();
        self.tensors = order
            .into_iter()
            .map(|name| {
                let m = by_name
                    .remove(&name)
                    .expect("validated: every tensor present");
                (name, m)
            })
            .collect();
        Ok(self)
    }
}

/// A version 2 (or 1) ResFlow file's folded towers as today's tensors. Those versions stored, per task
/// `t` and layer `l`, `task/<t>/layer/<l>/{weight,bias,slope,scale,shift}` with the input
/// BatchNorm folded into layer 0 and `o = scale * prelu(x W + b) + shift`, and
/// `task/<t>/logit/{weight,bias}`. The same function in today's form: the input BatchNorm
/// an identity (`gamma = sqrt(1 + eps)`, `beta = 0`, statistics 0 / 1, which is exactly
/// `x` in `affine` and `batch` mode; in `none` mode BatchNorm is skipped anyway), and each
/// hidden BatchNorm with `gamma = scale sqrt(1 + eps)`, `beta = shift`, statistics 0 / 1.
/// In `none` mode they wrote scale 1 and shift 0, which BatchNorm-free layers are.
pub fn from_folded_towers(
    config: &ModelConfig,
    layout: &InputLayout,
    v1: Vec<(String, Matrix)>,
) -> Result<Vec<(String, Matrix)>, ModelError> {
    let mut old: HashMap<String, Matrix> = v1.into_iter().collect();
    let mut take = |name: &str, cols: usize| -> Result<Matrix, ModelError> {
        let m = old
            .remove(name)
            .ok_or_else(|| ModelError::Layout(format!("version 2 tensor {name:?} is missing")))?;
        if m.cols() != cols {
            return Err(ModelError::Layout(format!(
                "version 2 tensor {name:?} has shape {:?}, expected {cols} columns",
                m.shape()
            )));
        }
        Ok(m)
    };
    let root = (1.0f32 + config.bn_epsilon).sqrt();
    let unit = match config.batch_norm {
        BatchNormMode::None => 1.0,
        _ => root,
    };
    let row = |cols: usize, v: f32| Matrix::from_fn(1, cols, |_, _| v);
    let width = layout.input_width(config.embedding_dim);
    let mut out = Vec::new();
    let bn = |out: &mut Vec<(String, Matrix)>, p: &str, gamma: Matrix, beta: Matrix| {
        let c = gamma.cols();
        out.push((format!("{p}/gamma"), gamma));
        out.push((format!("{p}/beta"), beta));
        out.push((format!("{p}/running_mean"), row(c, 0.0)));
        out.push((format!("{p}/running_var"), row(c, 1.0)));
    };
    bn(&mut out, "input_bn", row(width, unit), row(width, 0.0));
    let name = format!("head/{}", config.model.name());
    for t in 0..config.tasks.len() {
        let mut input = width;
        for (l, &units) in config.hidden.iter().enumerate() {
            let (p, q) = (
                format!("task/{t}/layer/{l}"),
                format!("{name}/task/{t}/layer/{l}"),
            );
            let weight = take(&format!("{p}/weight"), units)?;
            if weight.shape() != (input, units) {
                return Err(ModelError::Layout(format!(
                    "version 2 tensor {p:?}/weight has shape {:?}, expected ({input}, {units})",
                    weight.shape()
                )));
            }
            out.push((format!("{q}/weight"), weight));
            out.push((format!("{q}/bias"), take(&format!("{p}/bias"), units)?));
            out.push((format!("{q}/slope"), take(&format!("{p}/slope"), units)?));
            let scale = take(&format!("{p}/scale"), units)?;
            let gamma = Matrix::from_fn(1, units, |_, j| scale.get(0, j) * unit);
            bn(
                &mut out,
                &format!("{q}/bn"),
                gamma,
                take(&format!("{p}/shift"), units)?,
            );
            input = units;
        }
        let w = take(&format!("task/{t}/logit/weight"), input)?;
        out.push((
            format!("{name}/task/{t}/logit/weight"),
            Matrix::from_slice(input, 1, w.as_slice())?,
        ));
        out.push((
            format!("{name}/task/{t}/logit/bias"),
            take(&format!("task/{t}/logit/bias"), 1)?,
        ));
    }
    if let Some(extra) = old.keys().next() {
        return Err(ModelError::Layout(format!(
            "version 2 tensor {extra:?} is not part of the model"
        )));
    }
    Ok(out)
}
