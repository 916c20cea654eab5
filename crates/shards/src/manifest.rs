//! The dataset manifest, `manifest.json`: the list of a dataset's shards with their row
//! counts, sizes and digests, and a digest of its schema, written by [`crate::ShardWriter`]
//! (so by `convert` and `gen`) just before `schema.json`.
//!
//! ```json
//! { "format": "resflow-dataset-manifest", "version": 1,
//!   "schema_digest": "5f0c3d2e9a1b4c77", "rows": 20000,
//!   "shards": [{"name": "shard-00000.rfs", "rows": 5000, "bytes": 912448,
//!               "digest": "1c9a03be"}, ...] }
//! ```
//!
//! A shard's `digest` is the CRC-32 of its header and section table. The table holds the
//! CRC-32 of every section, so the digest identifies the shard's whole content while costing
//! only the few hundred header bytes to check. [`crate::Dataset::open`] refuses a dataset
//! whose shard files are not exactly those listed (a missing shard, an extra one, one from
//! another dataset, one whose rows or size differ), and one whose `schema.json` was edited
//! after writing: the schema digest covers every field of the schema, vocabulary sizes
//! included, unlike the structural fingerprint stored in each shard (which converters must
//! know before they have learned the vocabularies).
//!
//! A dataset written before manifests existed has none and is refused with a message
//! naming the remedy: `resflow manifest --data DIR` ([`Manifest::rebuild`]) validates every
//! shard present against the schema and records them, for a user who vouches that the
//! shards in the directory are the complete set.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::atomic::write_atomically;
use crate::error::{Result, ShardError, io};
use crate::reader::{OpenOptions, Shard};
use crate::schema::Schema;

/// File name of the manifest inside a dataset directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The `format` value of a manifest.
pub const MANIFEST_FORMAT: &str = "resflow-dataset-manifest";
/// The manifest version this build reads and writes.
pub const MANIFEST_VERSION: u32 = 1;

/// One shard as recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardEntry {
    /// File name inside the dataset directory (`shard-NNNNN.rfs`).
    pub name: String,
    /// Rows in the shard.
    pub rows: u64,
    /// File size in bytes.
    pub bytes: u64,
    /// CRC-32 of the header and section table, 8 hex digits.
    pub digest: String,
}

/// The manifest of a dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Must equal [`MANIFEST_FORMAT`].
    pub format: String,
    /// Must equal [`MANIFEST_VERSION`].
    pub version: u32,
    /// [`schema_digest`] of the schema the shards were written with.
    pub schema_digest: String,
    /// Total rows (the sum over the shards).
    pub rows: u64,
    /// Every shard, in file-name order.
    pub shards: Vec<ShardEntry>,
}

/// A digest of everything in a schema (field names, kinds, vocabulary sizes, dense
/// statistics...): FNV-1a 64 over its canonical JSON, 16 hex digits.
pub fn schema_digest(schema: &Schema) -> String {
    let h = schema
        .to_json()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
        });
    format!("{h:016x}")
}

/// The digest of a shard's header bytes, as recorded in a manifest.
pub fn header_digest(header: &[u8]) -> String {
    format!("{:08x}", crc32fast::hash(header))
}

fn dataset_err(dir: &Path, detail: String) -> ShardError {
    ShardError::Dataset {
        dir: dir.display().to_string(),
        detail,
    }
}

/// The shard files (`shard-*.rfs`) present in `dir`, sorted.
pub(crate) fn shard_files(dir: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.starts_with("shard-") && n.ends_with(".rfs"))
        .collect();
    names.sort();
    Ok(names)
}

impl Manifest {
    /// A manifest for `schema` and the given shards.
    pub fn new(schema: &Schema, shards: Vec<ShardEntry>) -> Self {
        Self {
            format: MANIFEST_FORMAT.into(),
            version: MANIFEST_VERSION,
            schema_digest: schema_digest(schema),
            rows: shards.iter().map(|s| s.rows).sum(),
            shards,
        }
    }

    /// Reads and checks `dir/manifest.json` (format, version, totals).
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(dataset_err(
                    dir,
                    format!(
                        "no {MANIFEST_FILE}: the dataset is incomplete or was written by an older \
                         resflow; write it again with convert or gen, or, if the shards present \
                         are the complete set, record them with `resflow manifest --data {}`",
                        dir.display()
                    ),
                ));
            }
            Err(e) => return Err(io(&path)(e)),
        };
        let m: Manifest = serde_json::from_str(&text)
            .map_err(|e| dataset_err(dir, format!("{MANIFEST_FILE}: {e}")))?;
        if m.format != MANIFEST_FORMAT || m.version != MANIFEST_VERSION {
            return Err(dataset_err(
                dir,
                format!(
                    "{MANIFEST_FILE}: format {:?} version {}, this build reads {MANIFEST_FORMAT:?} version {MANIFEST_VERSION}",
                    m.format, m.version
                ),
            ));
        }
        let sum: u64 = m.shards.iter().map(|s| s.rows).sum();
        if sum != m.rows {
            return Err(dataset_err(
                dir,
                format!(
                    "{MANIFEST_FILE}: the shards' rows add up to {sum}, the total says {}",
                    m.rows
                ),
            ));
        }
        Ok(m)
    }

    /// Writes `dir/manifest.json` atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("a manifest always serialises");
        let path = dir.join(MANIFEST_FILE);
        write_atomically(&path, text.as_bytes()).map_err(io(&path))
    }

    /// Checks that `schema` is the one the shards were written with, and that the shard
    /// files in `dir` are exactly the listed ones.
    pub fn check_dir(&self, dir: &Path, schema: &Schema) -> Result<()> {
        if schema_digest(schema) != self.schema_digest {
            return Err(dataset_err(
                dir,
                "schema.json differs from the schema the shards were written with (its digest \
                 does not match manifest.json): it was edited, or belongs to another dataset"
                    .into(),
            ));
        }
        let present = shard_files(dir)?;
        let listed: Vec<&str> = self.shards.iter().map(|s| s.name.as_str()).collect();
        if let Some(missing) = listed.iter().find(|n| !present.iter().any(|p| p == *n)) {
            return Err(dataset_err(
                dir,
                format!(
                    "shard {missing} is listed in {MANIFEST_FILE} but missing ({} of {} shards present)",
                    present.len().min(listed.len()),
                    listed.len()
                ),
            ));
        }
        if let Some(extra) = present.iter().find(|p| !listed.contains(&p.as_str())) {
            return Err(dataset_err(
                dir,
                format!(
                    "shard {extra} is not listed in {MANIFEST_FILE}: it does not belong to this dataset"
                ),
            ));
        }
        Ok(())
    }

    /// Checks an opened shard against its entry (rows, size, digest).
    pub fn check_shard(&self, dir: &Path, entry: &ShardEntry, shard: &Shard) -> Result<()> {
        let (rows, bytes, digest) = (shard.rows() as u64, shard.file_len(), shard.digest());
        if (rows, bytes, digest.as_str()) != (entry.rows, entry.bytes, entry.digest.as_str()) {
            return Err(dataset_err(
                dir,
                format!(
                    "shard {} has {rows} rows, {bytes} bytes, digest {digest}; {MANIFEST_FILE} \
                     lists {} rows, {} bytes, digest {}: it was replaced, perhaps by a shard of \
                     another dataset",
                    entry.name, entry.rows, entry.bytes, entry.digest
                ),
            ));
        }
        Ok(())
    }

    /// Validates every shard present in `dir` against its `schema.json` (checksums and
    /// values) and writes a manifest recording them: the remedy for a dataset written
    /// before manifests existed. Refuses a directory that already has a manifest.
    pub fn rebuild(dir: &Path) -> Result<Self> {
        if dir.join(MANIFEST_FILE).exists() {
            return Err(dataset_err(
                dir,
                format!("already has a {MANIFEST_FILE}; remove it first to record the shards anew"),
            ));
        }
        let schema = crate::dataset::read_schema(dir)?;
        let entries = shard_files(dir)?
            .into_iter()
            .map(|name| {
                let shard = Shard::open(&dir.join(&name), &schema, OpenOptions::default())?;
                Ok(ShardEntry {
                    name,
                    rows: shard.rows() as u64,
                    bytes: shard.file_len(),
                    digest: shard.digest(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let m = Manifest::new(&schema, entries);
        m.write(dir)?;
        Ok(m)
    }
}
