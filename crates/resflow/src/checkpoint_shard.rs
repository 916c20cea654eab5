//! Checkpoints of row-sharded tables: every process writes the rows it owns.
//!
//! With row-sharded embedding tables no process holds every table row current, so no
//! process can write the whole checkpoint. A checkpoint of `N` processes at step `S` is:
//!
//! ```text
//! checkpoint.safetensors                 rank 0: dense parameters, statistics, Adam,
//!                                        metadata (step S, table_shards = N), no tables
//! tables-<r>-of-<N>-step-<S>.safetensors rank r: for every table, the rows r owns (in
//!                                        increasing id order) and their lazy Adam moments
//! ```
//!
//! Each file is written atomically (temporary name, flush, rename) with the model file's
//! checksums. The order makes a checkpoint whole or absent: every rank writes its table
//! file, the ranks agree that all succeeded, rank 0 then writes `checkpoint.safetensors`
//! (the commit: it names step `S`), the ranks agree again, and each removes its table files
//! of other steps. A rank that dies before the commit leaves the previous
//! `checkpoint.safetensors` and that step's table files in place; one that dies after it
//! leaves at most older table files, which nothing reads.
//!
//! Resuming needs the same `N`: which rows a process owns depends on `N`
//! ([`crate::reduce::owner`]), and a different `N` is refused with the number to use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::Dtype;

use model::integrity::{self, Array};
use model::{ModelError, write_atomically};

use crate::checkpoint::bad;
use crate::error::Error;
use crate::trainer::Trainer;

const FORMAT: &str = "resflow-table-shard";
const VERSION: &str = "1";

/// The file holding rank `rank`'s rows of a checkpoint of `ranks` processes at `step`.
pub fn table_shard_file(dir: &Path, rank: usize, ranks: usize, step: u64) -> PathBuf {
    dir.join(format!("tables-{rank}-of-{ranks}-step-{step}.safetensors"))
}

fn io(path: &Path, source: std::io::Error) -> ModelError {
    ModelError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// `(rank, ranks, step)` of a table file name, if it is one.
fn parse_name(name: &str) -> Option<(usize, usize, u64)> {
    let rest = name.strip_prefix("tables-")?.strip_suffix(".safetensors")?;
    let (rank, rest) = rest.split_once("-of-")?;
    let (ranks, step) = rest.split_once("-step-")?;
    Some((rank.parse().ok()?, ranks.parse().ok()?, step.parse().ok()?))
}

impl Trainer {
    /// Saves this process's part of a checkpoint into `dir`. Alone or with replicated
    /// tables, rank 0 writes the whole checkpoint and the others nothing. With row-sharded
    /// tables every rank writes its rows, then rank 0 the rest (collective: every rank calls
    /// it at the same step).
    pub fn save_checkpoint_as_rank(&mut self, dir: &Path) -> Result<(), Error> {
        let (rank, ranks) = self.rank();
        if !self.shards_tables() {
            if rank == 0 {
                self.save_checkpoint(dir)?;
            }
            return Ok(());
        }
        let mine = self.save_table_shard(dir);
        let agreed = self.reduce_mut().agree(mine.is_ok());
        mine?;
        agreed?;
        let main = if rank == 0 {
            self.save_checkpoint(dir)
        } else {
            Ok(())
        };
        let agreed = self.reduce_mut().agree(main.is_ok());
        main?;
        agreed?;
        // The commit is done: this rank's files of other steps are no longer needed.
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let name = e.file_name();
                if let Some((r, n, s)) = parse_name(&name.to_string_lossy())
                    && r == rank
                    && (n != ranks || s != self.step)
                {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(())
    }

    /// Writes the rows this process owns, and their lazy Adam moments, atomically.
    fn save_table_shard(&mut self, dir: &Path) -> Result<(), Error> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let (rank, ranks) = self.rank();
        let mut arrays = Vec::new();
        let mut meta = BTreeMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("version".to_string(), VERSION.to_string()),
            ("rank".to_string(), rank.to_string()),
            ("ranks".to_string(), ranks.to_string()),
            ("step".to_string(), self.step.to_string()),
        ]);
        let c = self.compact_ref().ok_or_else(not_compact)?;
        for t in 0..self.store.tables.len() {
            // The owned rows are stored compactly, in increasing id order, and lazy Adam's
            // moments are theirs only: both are written as they are.
            let table = &self.store.tables[t];
            let owned = &c.owned[t].value;
            let (n, d) = owned.shape();
            let rows = c.full_rows[t];
            let (m, v) = self.optimisers_ref().1.moments();
            let mut values = Vec::with_capacity(n * d);
            for r in 0..n {
                values.extend_from_slice(owned.row(r));
            }
            let (ms, vs) = (m[t].clone(), v[t].clone());
            let shape = vec![n, d];
            arrays.push(Array::owned(
                format!("param/{}", table.name),
                shape.clone(),
                values,
            ));
            arrays.push(Array::owned(
                format!("lazy_adam/m/{}", table.name),
                shape.clone(),
                ms,
            ));
            arrays.push(Array::owned(
                format!("lazy_adam/v/{}", table.name),
                shape,
                vs,
            ));
            meta.insert(format!("rows/{}", table.name), rows.to_string());
        }
        let path = table_shard_file(dir, rank, ranks, self.step);
        let bytes = integrity::serialize(arrays, meta).map_err(|e| {
            ModelError::NonFinite(format!(
                "table rows of rank {rank} at step {}: {e}; the previous checkpoint in {} is \
                 kept",
                self.step,
                dir.display()
            ))
        })?;
        Ok(write_atomically(&path, &bytes)?)
    }

    /// Loads the rows this process owns (and their lazy Adam moments) from the table file
    /// of the checkpoint in `dir` this trainer was resumed from. Refuses a checkpoint
    /// written by another number of processes, naming the number to use.
    pub fn load_table_shard(&mut self, dir: &Path) -> Result<(), Error> {
        // The rank of the rows held (known before the trainer joins the others).
        let (rank, ranks) = self.compact_ref().map_or_else(|| self.rank(), |c| c.rank());
        let n = self.table_shards;
        if n != ranks {
            return Err(Error::Distributed(format!(
                "the checkpoint in {} holds embedding tables sharded over {n} ranks, and this \
                 run has {ranks}: resume it with `mpirun -np {n} resflow train --distributed \
                 --shard-tables --resume ...`",
                dir.display()
            )));
        }
        let path = table_shard_file(dir, rank, ranks, self.step);
        let bytes = std::fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                bad(
                    &path,
                    format!(
                        "rank {rank}'s embedding rows of this checkpoint (step {}) are \
                         missing; copy every rank's tables-*-step-{}.safetensors next to {}",
                        self.step,
                        self.step,
                        crate::CHECKPOINT_FILE
                    ),
                )
            } else {
                io(&path, e)
            }
        })?;
        let (st, meta) =
            integrity::open(&bytes).map_err(|e| bad(&path, format!("not a table shard: {e}")))?;
        let get = |k: &str| {
            meta.get(k)
                .map(String::as_str)
                .ok_or_else(|| bad(&path, format!("metadata has no {k:?}")))
        };
        if get("format")? != FORMAT || get("version")? != VERSION {
            return Err(bad(&path, "not a resflow table shard of this version".into()).into());
        }
        let expect = [
            ("rank", rank.to_string()),
            ("ranks", ranks.to_string()),
            ("step", self.step.to_string()),
        ];
        for (k, want) in &expect {
            let got = get(k)?;
            if got != want {
                return Err(bad(&path, format!("{k} is {got}, expected {want}")).into());
            }
        }
        let (mut lm, mut lv) = {
            let (m, v) = self.optimisers_ref().1.moments();
            (m.to_vec(), v.to_vec())
        };
        let lazy_steps = self.optimisers_ref().1.steps();
        let tables = self.store.tables.len();
        let names: Vec<String> = self.store.tables.iter().map(|t| t.name.clone()).collect();
        let c = self.compact_mut().ok_or_else(not_compact)?;
        for t in 0..tables {
            let (rows, d) = (c.full_rows[t], c.owned[t].value.cols());
            let name = &names[t];
            if get(&format!("rows/{name}"))? != rows.to_string() {
                return Err(bad(&path, format!("table {name:?} has another row count")).into());
            }
            let owned = &c.owned_ids[t];
            let read = |key: String| -> Result<Vec<f32>, ModelError> {
                let v = st
                    .tensor(&key)
                    .map_err(|_| bad(&path, format!("tensor {key:?} is missing")))?;
                if v.dtype() != Dtype::F32 || v.shape() != [owned.len(), d] {
                    return Err(bad(
                        &path,
                        format!(
                            "tensor {key:?} has dtype {:?} and shape {:?}, expected [{}, {d}] f32",
                            v.dtype(),
                            v.shape(),
                            owned.len()
                        ),
                    ));
                }
                let values: Vec<f32> = v
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                if let Some((i, x)) = integrity::first_non_finite(&values) {
                    return Err(bad(&path, format!("tensor {key:?} holds {x} at index {i}")));
                }
                Ok(values)
            };
            let values = read(format!("param/{name}"))?;
            let ms = read(format!("lazy_adam/m/{name}"))?;
            let vs = read(format!("lazy_adam/v/{name}"))?;
            let table = &mut c.owned[t].value;
            for k in 0..owned.len() {
                table
                    .row_mut(k)
                    .copy_from_slice(&values[k * d..(k + 1) * d]);
            }
            lm[t] = ms;
            lv[t] = vs;
        }
        self.optimisers().1.restore(lm, lv, lazy_steps);
        self.mark_shard_loaded();
        self.note_table_bytes();
        Ok(())
    }

    /// An error when this trainer was restored from a checkpoint of row-sharded tables
    /// (it holds only the dense part): such a checkpoint continues only as the run that
    /// wrote it, with the same number of processes.
    pub fn check_tables_whole(&self) -> Result<(), Error> {
        match self.table_shards {
            0 => Ok(()),
            n => Err(Error::Distributed(format!(
                "this checkpoint's embedding tables are sharded over {n} processes (written \
                 with --shard-tables): continue it with `mpirun -np {n} resflow train \
                 --distributed --shard-tables --resume ...`, whose --out writes the whole \
                 model file"
            ))),
        }
    }
}

/// Row-sharded tables are stored compactly once the trainer knows its rank.
fn not_compact() -> Error {
    Error::Distributed(
        "row-sharded table checkpoints need the trainer's cross-process setup first".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let p = table_shard_file(Path::new("d"), 1, 2, 30);
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(parse_name(&name), Some((1, 2, 30)));
        assert_eq!(parse_name("checkpoint.safetensors"), None);
        assert_eq!(parse_name("tables-x-of-2-step-3.safetensors"), None);
    }
}
