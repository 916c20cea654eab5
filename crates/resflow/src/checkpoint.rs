//! Checkpoints: everything needed to continue training exactly where it stopped.
//!
//! One safetensors file, `checkpoint.safetensors`, in the checkpoint directory: every
//! parameter under its store name, the BatchNorm running statistics, both optimisers'
//! moments (`adam/m/<name>`, `adam/v/<name>`, `lazy_adam/m/<table>`, ...), and in the
//! metadata the configuration, the input layout, the step, the epoch, the batches taken in
//! the current epoch and the optimisers' step counts. The file is written to a temporary
//! name, flushed and renamed, so a run killed while saving keeps the previous checkpoint.
//! Like a model file it carries checksums and deterministic bytes ([`crate::integrity`]);
//! one holding a NaN or an infinity is never written (the previous one is kept) and never
//! loaded.
//! Because batch order is a function of the seed and the epoch, a resumed run takes the
//! same batches as an uninterrupted one and ends with the same parameters, bit for bit.

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::tensor::Dtype;
use tensor::Matrix;

use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::integrity::{self, Array};
use crate::layout::InputLayout;
use crate::model_file::write_atomically;
use crate::params::ModelParams;
use crate::trainer::Trainer;

/// File name inside a checkpoint directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
const FORMAT: &str = "resflow-checkpoint";
/// Checkpoint version (2: checksums, deterministic bytes, finite values).
const VERSION: &str = "2";

fn bad(path: &Path, detail: String) -> ModelError {
    ModelError::ModelFile {
        path: path.display().to_string(),
        detail,
    }
}

impl Trainer {
    /// Writes a checkpoint into `dir` (created if needed), atomically.
    pub fn save_checkpoint(&self, dir: &Path) -> Result<(), ModelError> {
        std::fs::create_dir_all(dir).map_err(|source| ModelError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let mut arrays: Vec<Array<'_>> = Vec::new();
        let mut push = |name: String, shape: Vec<usize>, v: &[f32]| {
            arrays.push(Array::owned(name, shape, v.to_vec()))
        };
        let store = &self.store;
        for p in &store.dense {
            push(
                format!("param/{}", p.name),
                vec![p.value.rows(), p.value.cols()],
                &p.value.to_vec(),
            );
        }
        for t in &store.tables {
            push(
                format!("param/{}", t.name),
                vec![t.value.rows(), t.value.cols()],
                &t.value.to_vec(),
            );
        }
        let (adam, lazy) = self.optimisers_ref();
        let (m, v) = adam.moments();
        for ((p, m), v) in store.dense.iter().zip(m).zip(v) {
            push(format!("adam/m/{}", p.name), vec![m.len()], m);
            push(format!("adam/v/{}", p.name), vec![v.len()], v);
        }
        let (m, v) = lazy.moments();
        for ((t, m), v) in store.tables.iter().zip(m).zip(v) {
            push(format!("lazy_adam/m/{}", t.name), vec![m.len()], m);
            push(format!("lazy_adam/v/{}", t.name), vec![v.len()], v);
        }
        let mut network = self.network.clone();
        for (k, bn) in network.bn_layers_mut().into_iter().enumerate() {
            push(
                format!("bn/{k}/running_mean"),
                vec![bn.mean.len()],
                &bn.mean,
            );
            push(format!("bn/{k}/running_var"), vec![bn.var.len()], &bn.var);
        }
        let json = |v: serde_json::Result<String>| v.map_err(|e| ModelError::Config(e.to_string()));
        let meta = BTreeMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("version".to_string(), VERSION.to_string()),
            (
                "config".to_string(),
                json(serde_json::to_string(&self.network.config))?,
            ),
            (
                "layout".to_string(),
                json(serde_json::to_string(&self.network.layout))?,
            ),
            ("step".to_string(), self.step.to_string()),
            ("epoch".to_string(), self.epoch.to_string()),
            (
                "batch_in_epoch".to_string(),
                self.batch_in_epoch.to_string(),
            ),
            ("adam_steps".to_string(), adam.steps().to_string()),
            ("lazy_adam_steps".to_string(), lazy.steps().to_string()),
        ]);
        let bytes = integrity::serialize(arrays, meta).map_err(|e| {
            ModelError::NonFinite(format!(
                "checkpoint at step {}: {e}; the previous checkpoint in {} is kept",
                self.step,
                dir.display()
            ))
        })?;
        write_atomically(&dir.join(CHECKPOINT_FILE), &bytes)
    }

    /// A trainer restored from the checkpoint in `dir`, with `threads` workers.
    pub fn load_checkpoint(dir: &Path, threads: usize) -> Result<Self, ModelError> {
        let path = dir.join(CHECKPOINT_FILE);
        let bytes = std::fs::read(&path).map_err(|source| ModelError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let (st, meta) =
            integrity::open(&bytes).map_err(|e| bad(&path, format!("not a checkpoint: {e}")))?;
        let get = |k: &str| {
            meta.get(k)
                .ok_or_else(|| bad(&path, format!("metadata has no {k:?}")))
        };
        if get("format")? != FORMAT {
            return Err(bad(&path, "not a resflow checkpoint".into()));
        }
        if get("version")? != VERSION {
            return Err(bad(
                &path,
                format!(
                    "checkpoint version {:?}, this build reads {VERSION:?}",
                    get("version")?
                ),
            ));
        }
        let number = |k: &str| {
            get(k)?
                .parse::<u64>()
                .map_err(|e| bad(&path, format!("{k}: {e}")))
        };
        let config: ModelConfig =
            serde_json::from_str(get("config")?).map_err(|e| bad(&path, format!("config: {e}")))?;
        let layout: InputLayout =
            serde_json::from_str(get("layout")?).map_err(|e| bad(&path, format!("layout: {e}")))?;
        let array = |name: &str, len: usize| -> Result<Vec<f32>, ModelError> {
            let v = st
                .tensor(name)
                .map_err(|_| bad(&path, format!("tensor {name:?} is missing")))?;
            if v.dtype() != Dtype::F32 || v.shape().iter().product::<usize>() != len {
                return Err(bad(
                    &path,
                    format!(
                        "tensor {name:?} has dtype {:?} and shape {:?}, expected {len} f32",
                        v.dtype(),
                        v.shape()
                    ),
                ));
            }
            let values: Vec<f32> = v
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            if let Some((i, x)) = integrity::first_non_finite(&values) {
                return Err(bad(
                    &path,
                    format!(
                        "tensor {name:?} holds {x} at index {i}: the training had diverged; \
                         resume from an earlier checkpoint or start afresh"
                    ),
                ));
            }
            Ok(values)
        };
        // Build the trainer from freshly initialised parameters of the same shapes, then
        // overwrite every value.
        let init = ModelParams::init(config, layout).map_err(|e| bad(&path, e.to_string()))?;
        let mut trainer = Trainer::from_params(&init, threads)?;
        for p in trainer.store.dense.iter_mut() {
            let (r, c) = p.value.shape();
            p.value = Matrix::from_slice(r, c, &array(&format!("param/{}", p.name), r * c)?)?;
        }
        for t in trainer.store.tables.iter_mut() {
            let (r, c) = t.value.shape();
            t.value = Matrix::from_slice(r, c, &array(&format!("param/{}", t.name), r * c)?)?;
        }
        let dense: Vec<(String, usize)> = trainer
            .store
            .dense
            .iter()
            .map(|p| (p.name.clone(), p.value.as_slice().len()))
            .collect();
        let tables: Vec<(String, usize)> = trainer
            .store
            .tables
            .iter()
            .map(|t| (t.name.clone(), t.value.rows() * t.value.cols()))
            .collect();
        let (adam_m, adam_v) = (
            dense
                .iter()
                .map(|(n, l)| array(&format!("adam/m/{n}"), *l))
                .collect::<Result<Vec<_>, _>>()?,
            dense
                .iter()
                .map(|(n, l)| array(&format!("adam/v/{n}"), *l))
                .collect::<Result<Vec<_>, _>>()?,
        );
        let (lazy_m, lazy_v) = (
            tables
                .iter()
                .map(|(n, l)| array(&format!("lazy_adam/m/{n}"), *l))
                .collect::<Result<Vec<_>, _>>()?,
            tables
                .iter()
                .map(|(n, l)| array(&format!("lazy_adam/v/{n}"), *l))
                .collect::<Result<Vec<_>, _>>()?,
        );
        let (adam_steps, lazy_steps) = (number("adam_steps")?, number("lazy_adam_steps")?);
        {
            let (adam, lazy) = trainer.optimisers();
            adam.restore(adam_m, adam_v, adam_steps);
            lazy.restore(lazy_m, lazy_v, lazy_steps);
        }
        for (k, bn) in trainer.network.bn_layers_mut().into_iter().enumerate() {
            let c = bn.mean.len();
            bn.mean = array(&format!("bn/{k}/running_mean"), c)?;
            bn.var = array(&format!("bn/{k}/running_var"), c)?;
        }
        trainer.step = number("step")?;
        trainer.epoch = number("epoch")? as usize;
        trainer.batch_in_epoch = number("batch_in_epoch")?;
        Ok(trainer)
    }
}
