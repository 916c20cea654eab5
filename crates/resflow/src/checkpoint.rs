//! Checkpoints: everything needed to continue training exactly where it stopped.
//!
//! One safetensors file, `checkpoint.safetensors`, in the checkpoint directory: every
//! parameter under its store name, the BatchNorm running statistics, both optimisers'
//! moments (`adam/m/<name>`, `adam/v/<name>`, `lazy_adam/m/<table>`, ...), and in the
//! metadata the configuration, the input layout, the step, the epoch, the batches taken in
//! the current epoch and the optimisers' step counts. Running statistics are stored as
//! `stat/<tensor name>`. The loss balancing's learned values, their Adam moments and
//! GradNorm's first-step losses are `balance/value`, `balance/adam/m`, `balance/adam/v`
//! and `balance/initial` (with `balance_steps` in the metadata); fixed loss weights have
//! none. Checkpoints carry a format version (`4`, which added the balancing state); a
//! version 3 checkpoint (fixed weights, nothing else differs) still loads; one written
//! before every model kind was stored as named tensors (versions 1 and 2) is refused with a
//! message saying so: train again, or export it to a model file with the build that wrote
//! it (old model files still load). The file is written to a temporary
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

use model::integrity::{self, Array};
use model::{InputLayout, Model, ModelConfig, ModelError, write_atomically};

use crate::error::Error;
use crate::trainer::Trainer;

/// File name inside a checkpoint directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
const FORMAT: &str = "resflow-checkpoint";
/// Checkpoint version (4: the loss balancing's state; 3: statistics by tensor name, every
/// model kind as named tensors; checksums, deterministic bytes, finite values as in 2).
const VERSION: &str = "4";
/// The previous version, still read: the same file without balancing state.
const VERSION_3: &str = "3";

/// Metadata key: the processes whose table shards complete this checkpoint.
pub(crate) const TABLE_SHARDS: &str = "table_shards";

pub(crate) fn bad(path: &Path, detail: String) -> ModelError {
    ModelError::ModelFile {
        path: path.display().to_string(),
        detail,
    }
}

impl Trainer {
    /// Writes a checkpoint into `dir` (created if needed), atomically.
    pub fn save_checkpoint(&self, dir: &Path) -> Result<(), Error> {
        std::fs::create_dir_all(dir).map_err(|source| ModelError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let mut arrays: Vec<Array<'_>> = Vec::new();
        let mut push = |name: String, shape: Vec<usize>, v: &[f32]| {
            arrays.push(Array::owned(name, shape, v.to_vec()))
        };
        let store = &self.store;
        // Row-sharded tables: each process writes its own rows (checkpoint_shard.rs).
        let sharded = self.shards_tables();
        for p in &store.dense {
            push(
                format!("param/{}", p.name),
                vec![p.value.rows(), p.value.cols()],
                &p.value.to_vec(),
            );
        }
        for t in store.tables.iter().filter(|_| !sharded) {
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
        for ((t, m), v) in store.tables.iter().zip(m).zip(v).filter(|_| !sharded) {
            push(format!("lazy_adam/m/{}", t.name), vec![m.len()], m);
            push(format!("lazy_adam/v/{}", t.name), vec![v.len()], v);
        }
        for (i, stat) in self.network.stats.iter().enumerate() {
            push(
                format!("stat/{}", self.network.stat_name(i)),
                vec![stat.len()],
                stat,
            );
        }
        let balance = self.balancer().state();
        if let Some(b) = &balance {
            push("balance/value".into(), vec![b.values.len()], &b.values);
            push("balance/adam/m".into(), vec![b.m.len()], &b.m);
            push("balance/adam/v".into(), vec![b.v.len()], &b.v);
            if !b.initial.is_empty() {
                push("balance/initial".into(), vec![b.initial.len()], &b.initial);
            }
        }
        let json = |v: serde_json::Result<String>| v.map_err(|e| ModelError::Config(e.to_string()));
        let mut meta = BTreeMap::from([
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
        if let Some(b) = &balance {
            meta.insert("balance_steps".to_string(), b.steps.to_string());
        }
        if sharded {
            meta.insert(TABLE_SHARDS.to_string(), self.rank().1.to_string());
        }
        let bytes = integrity::serialize(arrays, meta).map_err(|e| {
            ModelError::NonFinite(format!(
                "checkpoint at step {}: {e}; the previous checkpoint in {} is kept",
                self.step,
                dir.display()
            ))
        })?;
        Ok(write_atomically(&dir.join(CHECKPOINT_FILE), &bytes)?)
    }

    /// A trainer restored from the checkpoint in `dir`, with `threads` workers.
    pub fn load_checkpoint(dir: &Path, threads: usize) -> Result<Self, Error> {
        Self::load_checkpoint_as(dir, threads, None)
    }

    /// [`Trainer::load_checkpoint`] as rank `rank` of `ranks` processes sharing the
    /// embedding tables by rows (`shard`, `None`: alone or replicated). A checkpoint of
    /// row-sharded tables then gives this process its own rows and their moments from its
    /// table file ([`Trainer::load_table_shard`]), and the whole tables are never
    /// allocated. (A checkpoint of whole tables is read whole; [`Trainer::set_reduce`]
    /// then keeps the owned rows.)
    pub fn load_checkpoint_as(
        dir: &Path,
        threads: usize,
        shard: Option<(usize, usize)>,
    ) -> Result<Self, Error> {
        let path = dir.join(CHECKPOINT_FILE);
        let bytes = std::fs::read(&path).map_err(|source| ModelError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let mut t = Self::checkpoint_from_bytes_as(&bytes, &path, threads, shard)?;
        drop(bytes);
        if t.compact_ref().is_some() {
            t.load_table_shard(dir)?;
        }
        Ok(t)
    }

    /// A trainer restored from checkpoint `bytes` (`path` names them in errors).
    pub fn checkpoint_from_bytes(bytes: &[u8], path: &Path, threads: usize) -> Result<Self, Error> {
        Self::checkpoint_from_bytes_as(bytes, path, threads, None)
    }

    /// [`Trainer::checkpoint_from_bytes`]; with `shard` and a checkpoint of row-sharded
    /// tables, the trainer holds this process's rows, zero until
    /// [`Trainer::load_table_shard`] reads them.
    fn checkpoint_from_bytes_as(
        bytes: &[u8],
        path: &Path,
        threads: usize,
        shard: Option<(usize, usize)>,
    ) -> Result<Self, Error> {
        let path = path.to_path_buf();
        let (st, meta) =
            integrity::open(bytes).map_err(|e| bad(&path, format!("not a checkpoint: {e}")))?;
        let get = |k: &str| {
            meta.get(k)
                .ok_or_else(|| bad(&path, format!("metadata has no {k:?}")))
        };
        if get("format")? != FORMAT {
            return Err(bad(&path, "not a resflow checkpoint".into()).into());
        }
        match meta.get("version").map(String::as_str) {
            Some(VERSION) | Some(VERSION_3) => {}
            Some(v) if v.parse::<u32>().is_ok_and(|v| v > 4) => {
                return Err(bad(
                    &path,
                    format!("checkpoint format version {v:?}, this build reads {VERSION:?}"),
                )
                .into());
            }
            v => {
                return Err(bad(
                    &path,
                    format!(
                        "a checkpoint of an earlier format (version {}; this build reads \
                         {VERSION:?}): train again, or export it with the build that wrote \
                         it (its model file still loads)",
                        v.unwrap_or("1")
                    ),
                )
                .into());
            }
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
        // Row-sharded tables are not in this file: each process loads its rows later
        // (`Trainer::load_table_shard`).
        let table_shards = match meta.get(TABLE_SHARDS) {
            Some(n) => match n.parse::<usize>() {
                Ok(n) if n >= 1 => n,
                _ => return Err(bad(&path, format!("{TABLE_SHARDS}: {n:?}")).into()),
            },
            None => 0,
        };
        // Build the trainer from freshly initialised parameters of the same shapes, then
        // overwrite every value. A process of row-sharded tables makes only its rows.
        let mut trainer = match shard {
            Some(s) if table_shards > 0 => {
                let (model, _) = Model::init_without_tables(config, layout, s.1)
                    .map_err(|e| bad(&path, e.to_string()))?;
                Trainer::sharded(model, None, threads, s)?
            }
            _ => {
                let init = Model::init(config, layout).map_err(|e| bad(&path, e.to_string()))?;
                Trainer::from_params(&init, threads)?
            }
        };
        trainer.table_shards = table_shards;
        for p in trainer.store.dense.iter_mut() {
            let (r, c) = p.value.shape();
            p.value = Matrix::from_slice(r, c, &array(&format!("param/{}", p.name), r * c)?)
                .map_err(ModelError::from)?;
        }
        for t in trainer
            .store
            .tables
            .iter_mut()
            .filter(|_| table_shards == 0)
        {
            let (r, c) = t.value.shape();
            t.value = Matrix::from_slice(r, c, &array(&format!("param/{}", t.name), r * c)?)
                .map_err(ModelError::from)?;
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
        let moment = |kind: &str, n: &str, l: usize| {
            if table_shards > 0 {
                Ok(vec![0.0; l])
            } else {
                array(&format!("lazy_adam/{kind}/{n}"), l)
            }
        };
        let (lazy_m, lazy_v) = (
            tables
                .iter()
                .map(|(n, l)| moment("m", n, *l))
                .collect::<Result<Vec<_>, _>>()?,
            tables
                .iter()
                .map(|(n, l)| moment("v", n, *l))
                .collect::<Result<Vec<_>, _>>()?,
        );
        let (adam_steps, lazy_steps) = (number("adam_steps")?, number("lazy_adam_steps")?);
        {
            let (adam, lazy) = trainer.optimisers();
            adam.restore(adam_m, adam_v, adam_steps);
            lazy.restore(lazy_m, lazy_v, lazy_steps);
        }
        for i in 0..trainer.network.stats.len() {
            let name = format!("stat/{}", trainer.network.stat_name(i));
            trainer.network.stats[i] = array(&name, trainer.network.stats[i].len())?;
        }
        if !trainer.network.config.loss_balancing.is_fixed() {
            let t = trainer.network.config.tasks.len();
            let initial = match st.tensor("balance/initial") {
                Ok(_) => array("balance/initial", t)?,
                Err(_) => Vec::new(),
            };
            let state = crate::balancing::BalanceState {
                values: array("balance/value", t)?,
                m: array("balance/adam/m", t)?,
                v: array("balance/adam/v", t)?,
                steps: number("balance_steps")?,
                initial,
            };
            trainer
                .balancer_mut()
                .restore(state)
                .map_err(|e| bad(&path, e.to_string()))?;
        }
        trainer.step = number("step")?;
        trainer.epoch = number("epoch")? as usize;
        trainer.batch_in_epoch = number("batch_in_epoch")?;
        trainer.note_table_bytes();
        Ok(trainer)
    }
}
