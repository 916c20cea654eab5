//! Writing a dataset: rows are buffered column by column into a shard of a configurable
//! size, which is then written to a temporary name, flushed to disk and renamed. A crashed
//! conversion therefore never leaves a file that looks like a complete shard. The manifest
//! (the shard list, see [`crate::manifest`]) and then `schema.json` are written last, the
//! same way, so a directory without them is not a dataset.

use std::path::{Path, PathBuf};

use crate::atomic::write_atomically;
use crate::error::{Result, ShardError, io};
use crate::header::{
    ALIGN, ENTRY, FIXED_HEADER, MAGIC, SectionKind, expected_sections, header_size,
};
use crate::manifest::{Manifest, ShardEntry, header_digest};
use crate::schema::{FORMAT_VERSION, MAX_VOCAB, Schema};

/// One row to write, borrowed from the caller.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    /// One label per task.
    pub labels: &'a [f32],
    /// One id per single-valued field.
    pub single: &'a [u32],
    /// One id list per multi-valued field.
    pub bags: &'a [&'a [u32]],
    /// The dense features.
    pub dense: &'a [f32],
    /// The group id (ignored without a group column).
    pub group: u64,
    /// The sample weight (ignored without a weight column).
    pub weight: f32,
}

/// What a finished writer produced.
#[derive(Debug, Clone)]
pub struct DatasetInfo {
    /// The directory.
    pub dir: PathBuf,
    /// The schema written to `schema.json` (vocabularies finalised).
    pub schema: Schema,
    /// Rows written.
    pub rows: u64,
    /// Shard files written.
    pub shards: usize,
}

/// File name of shard `i`.
pub fn shard_name(i: usize) -> String {
    format!("shard-{i:05}.rfs")
}

/// Streams rows into shard files in a directory.
#[derive(Debug)]
pub struct ShardWriter {
    dir: PathBuf,
    schema: Schema,
    rows_per_shard: usize,
    /// Learn vocabulary sizes from the data (`max id + 1`) instead of checking them.
    learn_vocab: bool,
    max_ids: Vec<u32>,
    /// Per task, whether it is a continuous target ([`Schema::target_mask`]).
    targets: Vec<bool>,
    rows: usize,
    total: u64,
    shards: usize,
    labels: Vec<f32>,
    single: Vec<u32>,
    offsets: Vec<Vec<u64>>,
    ids: Vec<Vec<u32>>,
    dense: Vec<f32>,
    group: Vec<u64>,
    weight: Vec<f32>,
    buf: Vec<u8>,
    /// The shards written so far, for the manifest.
    entries: Vec<ShardEntry>,
}

impl ShardWriter {
    /// A writer into `dir` (created if needed; it must be new or empty), with
    /// `rows_per_shard` rows per file (at least 1). With `learn_vocab`, ids are not checked
    /// against the schema's vocabulary sizes; the sizes written at the end are `max id + 1`
    /// (or the schema's size if larger), and an id that would make a vocabulary larger than
    /// [`MAX_VOCAB`] (a stray id in the data) is an error naming the row.
    pub fn create(
        dir: &Path,
        schema: Schema,
        rows_per_shard: usize,
        learn_vocab: bool,
    ) -> Result<Self> {
        schema.validate()?;
        if rows_per_shard == 0 {
            return Err(ShardError::Schema(
                "rows per shard must be at least 1".into(),
            ));
        }
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        if dir.join("schema.json").exists() || dir.join(shard_name(0)).exists() {
            return Err(ShardError::Schema(format!(
                "{} already holds a dataset; choose an empty directory",
                dir.display()
            )));
        }
        if std::fs::read_dir(dir).map_err(io(dir))?.next().is_some() {
            return Err(ShardError::Schema(format!(
                "{} is not empty; choose a new or empty directory",
                dir.display()
            )));
        }
        let fields = schema.single.len() + schema.multi.len();
        let bags = schema.multi.len();
        Ok(Self {
            dir: dir.to_path_buf(),
            rows_per_shard,
            learn_vocab,
            max_ids: vec![0; fields],
            targets: schema.target_mask(),
            rows: 0,
            total: 0,
            shards: 0,
            labels: Vec::new(),
            single: Vec::new(),
            offsets: vec![vec![0]; bags],
            ids: vec![Vec::new(); bags],
            dense: Vec::new(),
            group: Vec::new(),
            weight: Vec::new(),
            buf: Vec::new(),
            entries: Vec::new(),
            schema,
        })
    }

    /// The schema being written.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Rows written so far (flushed or buffered).
    pub fn rows(&self) -> u64 {
        self.total + self.rows as u64
    }

    /// Validates and buffers one row; flushes a shard when it is full.
    pub fn push(&mut self, row: &Row<'_>) -> Result<()> {
        let s = &self.schema;
        let bad = |m: String| {
            Err(ShardError::Schema(format!(
                "row {}: {m}",
                self.total + self.rows as u64
            )))
        };
        if row.labels.len() != s.tasks.len()
            || row.single.len() != s.single.len()
            || row.bags.len() != s.multi.len()
            || row.dense.len() != s.dense.count
        {
            return bad(format!(
                "{} labels, {} single ids, {} bags, {} dense values; the schema has {}, {}, {}, {}",
                row.labels.len(),
                row.single.len(),
                row.bags.len(),
                row.dense.len(),
                s.tasks.len(),
                s.single.len(),
                s.multi.len(),
                s.dense.count
            ));
        }
        for (t, &y) in row.labels.iter().enumerate() {
            if !s.label_ok(self.targets[t], y) {
                return bad(format!("label {:?} is {y}", s.tasks[t]));
            }
        }
        if s.weight && !(row.weight.is_finite() && row.weight >= 0.0) {
            return bad(format!("weight {} is not finite and >= 0", row.weight));
        }
        if let Some(i) = row.dense.iter().position(|v| !v.is_finite()) {
            return bad(format!("dense feature {i} is {}", row.dense[i]));
        }
        let vocabs = s
            .single
            .iter()
            .map(|f| (&f.name, f.vocab))
            .chain(s.multi.iter().map(|f| (&f.name, f.vocab)));
        let ids = row
            .single
            .iter()
            .map(std::slice::from_ref)
            .chain(row.bags.iter().copied());
        for (k, ((name, vocab), ids)) in vocabs.zip(ids).enumerate() {
            for &id in ids {
                if !self.learn_vocab && id >= vocab {
                    return bad(format!(
                        "field {name:?}: id {id} is out of range (vocab {vocab})"
                    ));
                }
                if self.learn_vocab && id >= MAX_VOCAB {
                    return bad(format!(
                        "field {name:?}: id {id} would make a learned vocabulary of {} ids, \
                         more than the {MAX_VOCAB} allowed (a stray id?); give the field a \
                         vocab (ids are then checked) or hash_buckets",
                        id as u64 + 1
                    ));
                }
                self.max_ids[k] = self.max_ids[k].max(id);
            }
        }
        self.labels.extend_from_slice(row.labels);
        self.single.extend_from_slice(row.single);
        for (k, bag) in row.bags.iter().enumerate() {
            self.ids[k].extend_from_slice(bag);
            self.offsets[k].push(self.ids[k].len() as u64);
        }
        self.dense.extend_from_slice(row.dense);
        if s.group.is_some() {
            self.group.push(row.group);
        }
        if s.weight {
            self.weight.push(row.weight);
        }
        self.rows += 1;
        if self.rows == self.rows_per_shard {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the buffered rows as one shard (nothing if empty).
    fn flush(&mut self) -> Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let sections = expected_sections(&self.schema);
        let bytes_of = |kind: SectionKind, index: u32, w: &Self| -> Vec<u8> {
            match kind {
                SectionKind::Labels => bytemuck::cast_slice(&w.labels).to_vec(),
                SectionKind::Single => bytemuck::cast_slice(&w.single).to_vec(),
                SectionKind::BagOffsets => {
                    bytemuck::cast_slice(&w.offsets[index as usize]).to_vec()
                }
                SectionKind::BagIds => bytemuck::cast_slice(&w.ids[index as usize]).to_vec(),
                SectionKind::Dense => bytemuck::cast_slice(&w.dense).to_vec(),
                SectionKind::Group => bytemuck::cast_slice(&w.group).to_vec(),
                SectionKind::Weight => bytemuck::cast_slice(&w.weight).to_vec(),
            }
        };
        let payloads: Vec<Vec<u8>> = sections
            .iter()
            .map(|&(k, i)| bytes_of(k, i, self))
            .collect();
        let mut out = std::mem::take(&mut self.buf);
        out.clear();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(sections.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.rows as u64).to_le_bytes());
        out.extend_from_slice(&self.schema.fingerprint().to_le_bytes());
        // Each section starts on the next 64-byte boundary; the file ends with the last
        // section (no trailing padding), so any truncation cuts into data.
        let mut offset = header_size(sections.len());
        let mut offsets = Vec::with_capacity(sections.len());
        for p in &payloads {
            offset = offset.div_ceil(ALIGN) * ALIGN;
            offsets.push(offset);
            offset += p.len();
        }
        for ((&(kind, index), p), &off) in sections.iter().zip(&payloads).zip(&offsets) {
            out.extend_from_slice(&(kind as u32).to_le_bytes());
            out.extend_from_slice(&index.to_le_bytes());
            out.extend_from_slice(&(off as u64).to_le_bytes());
            out.extend_from_slice(&(p.len() as u64).to_le_bytes());
            out.extend_from_slice(&crc32fast::hash(p).to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
        }
        debug_assert_eq!(out.len(), FIXED_HEADER + ENTRY * sections.len());
        out.resize(header_size(sections.len()), 0);
        for (p, &off) in payloads.iter().zip(&offsets) {
            out.resize(off, 0);
            out.extend_from_slice(p);
        }
        let name = shard_name(self.shards);
        let path = self.dir.join(&name);
        write_atomically(&path, &out).map_err(io(&path))?;
        self.entries.push(ShardEntry {
            name,
            rows: self.rows as u64,
            bytes: out.len() as u64,
            digest: header_digest(&out[..header_size(sections.len())]),
        });
        self.buf = out;
        self.shards += 1;
        self.total += self.rows as u64;
        self.rows = 0;
        self.labels.clear();
        self.single.clear();
        for (o, i) in self.offsets.iter_mut().zip(&mut self.ids) {
            o.truncate(1);
            i.clear();
        }
        self.dense.clear();
        self.group.clear();
        self.weight.clear();
        Ok(())
    }

    /// Flushes the last shard, then writes `manifest.json` and, last, `schema.json` (with
    /// learned vocabulary sizes).
    pub fn finish(mut self) -> Result<DatasetInfo> {
        self.flush()?;
        if self.learn_vocab {
            let ns = self.schema.single.len();
            for (k, f) in self.schema.single.iter_mut().enumerate() {
                f.vocab = f.vocab.max(self.max_ids[k].saturating_add(1));
            }
            for (k, f) in self.schema.multi.iter_mut().enumerate() {
                f.vocab = f.vocab.max(self.max_ids[ns + k].saturating_add(1));
            }
        }
        Manifest::new(&self.schema, std::mem::take(&mut self.entries)).write(&self.dir)?;
        let path = self.dir.join("schema.json");
        write_atomically(&path, self.schema.to_json().as_bytes()).map_err(io(&path))?;
        Ok(DatasetInfo {
            dir: self.dir,
            schema: self.schema,
            rows: self.total,
            shards: self.shards,
        })
    }
}
