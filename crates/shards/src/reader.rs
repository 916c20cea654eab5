//! Reading a shard without copying: the file is memory-mapped, the header and every section
//! are validated once when it is opened, and the columns are then handed out as `&[u32]`,
//! `&[f32]`, `&[u64]` slices of the mapping (checked `bytemuck` casts: a misaligned or short
//! section is an error, never undefined behaviour).
//!
//! Validation on open, in order: length, magic, version, section count, schema fingerprint,
//! each section's kind, alignment, bounds and expected length, checksums (unless disabled),
//! then the values: labels finite and 0/1 (or in [0, 1] for soft labels), every id below its
//! field's vocabulary, bag offsets starting at 0, never decreasing and ending at the number
//! of ids, dense features finite, weights finite and non-negative.

use std::path::Path;

use crate::error::{Result, ShardError, io};
use crate::header::{
    ALIGN, ENTRY, FIXED_HEADER, MAGIC, Section, SectionKind, expected_sections, header_size,
};
use crate::schema::{FORMAT_VERSION, Schema};

/// The bytes of a shard: a memory mapping, or an owned 8-byte aligned copy.
#[derive(Debug)]
enum Bytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u64>, usize),
}

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v, len) => &bytemuck::cast_slice(v)[..*len],
        }
    }
}

/// How much to check when opening.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOptions {
    /// Verify each section's CRC-32 (one pass over the bytes; see docs/shards.md for its cost).
    pub verify_checksums: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            verify_checksums: true,
        }
    }
}

/// One validated shard file.
#[derive(Debug)]
pub struct Shard {
    name: String,
    bytes: Bytes,
    rows: usize,
    tasks: usize,
    single: usize,
    dense: usize,
    /// `(offset, len)` in bytes of each expected section, in schema order.
    sections: Vec<(usize, usize)>,
    bags: usize,
    has_group: bool,
    has_weight: bool,
}

impl Shard {
    /// Memory-maps and validates the shard at `path`.
    #[allow(unsafe_code)]
    pub fn open(path: &Path, schema: &Schema, options: OpenOptions) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(io(path))?;
        let len = file.metadata().map_err(io(path))?.len();
        let name = path.display().to_string();
        if (len as usize) < FIXED_HEADER {
            return Err(format_err(
                &name,
                "header",
                format!("file is {len} bytes, shorter than the {FIXED_HEADER}-byte header"),
            ));
        }
        // SAFETY: the mapping is read-only and private to this process. Its contents are
        // treated as untrusted bytes and fully validated below; the remaining assumption is
        // the usual one for memory-mapped files, that no other process truncates or rewrites
        // the shard while it is open (shards are written once, under a temporary name, and
        // renamed into place; they are never modified afterwards).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io(path))?;
        Self::validate(name, Bytes::Mapped(map), schema, options)
    }

    /// Validates a shard held in memory (`origin` names it in errors).
    pub fn from_bytes(
        bytes: &[u8],
        origin: &str,
        schema: &Schema,
        options: OpenOptions,
    ) -> Result<Self> {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        Self::validate(
            origin.to_string(),
            Bytes::Owned(words, bytes.len()),
            schema,
            options,
        )
    }

    fn validate(name: String, bytes: Bytes, schema: &Schema, options: OpenOptions) -> Result<Self> {
        let b = bytes.as_slice();
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        let err = |section: &str, d: String| format_err(&name, section, d);
        if b.len() < FIXED_HEADER {
            return Err(err(
                "header",
                format!(
                    "{} bytes is shorter than the {FIXED_HEADER}-byte header",
                    b.len()
                ),
            ));
        }
        if b[..8] != MAGIC {
            return Err(err("header", "not a shard file (bad magic bytes)".into()));
        }
        if u32_at(8) != FORMAT_VERSION {
            return Err(err(
                "header",
                format!(
                    "format version {} is not supported (this build reads {FORMAT_VERSION})",
                    u32_at(8)
                ),
            ));
        }
        let expected = expected_sections(schema);
        let count = u32_at(12) as usize;
        if count != expected.len() {
            return Err(err(
                "header",
                format!("{count} sections, the schema needs {}", expected.len()),
            ));
        }
        let rows64 = u64_at(16);
        if u64_at(24) != schema.fingerprint() {
            return Err(err(
                "header",
                "schema fingerprint differs: this shard was written for another schema".into(),
            ));
        }
        let hsize = header_size(count);
        if b.len() < hsize {
            return Err(err(
                "header",
                format!("file is {} bytes, the header needs {hsize}", b.len()),
            ));
        }
        if rows64 > b.len() as u64 {
            return Err(err(
                "header",
                format!("{rows64} rows cannot fit in {} bytes", b.len()),
            ));
        }
        let rows = rows64 as usize;
        let (tasks, single, dense) = (schema.tasks.len(), schema.single.len(), schema.dense.count);
        let mut sections = Vec::with_capacity(count);
        let mut end_prev = hsize;
        for (k, &(kind, index)) in expected.iter().enumerate() {
            let e = FIXED_HEADER + k * ENTRY;
            let s = Section {
                kind: SectionKind::from_u32(u32_at(e)).ok_or_else(|| {
                    err(
                        "header",
                        format!("section {k} has unknown kind {}", u32_at(e)),
                    )
                })?,
                index: u32_at(e + 4),
                offset: u64_at(e + 8),
                len: u64_at(e + 16),
                crc: u32_at(e + 24),
            };
            let sname = kind.name(index);
            if (s.kind, s.index) != (kind, index) {
                return Err(err(
                    "header",
                    format!("section {k} is {}, expected {sname}", s.kind.name(s.index)),
                ));
            }
            let end = s.offset.checked_add(s.len).filter(|&e| e <= b.len() as u64);
            let Some(end) = end else {
                return Err(err(
                    &sname,
                    format!(
                        "bytes {}..+{} lie outside the {}-byte file",
                        s.offset,
                        s.len,
                        b.len()
                    ),
                ));
            };
            let (off, len) = (s.offset as usize, s.len as usize);
            if off % ALIGN != 0 || off < end_prev {
                return Err(err(
                    &sname,
                    format!("offset {off} is misaligned or overlaps the previous section"),
                ));
            }
            let elems = match kind {
                SectionKind::Labels => Some(rows * tasks),
                SectionKind::Single => Some(rows * single),
                SectionKind::BagOffsets => Some(rows + 1),
                SectionKind::BagIds => None,
                SectionKind::Dense => Some(rows * dense),
                SectionKind::Group | SectionKind::Weight => Some(rows),
            };
            let size = kind.element_size();
            if len % size != 0 || elems.is_some_and(|n| n * size != len) {
                return Err(err(
                    &sname,
                    format!(
                        "{len} bytes, expected {}",
                        elems.map_or("a multiple of 4".to_string(), |n| (n * size).to_string())
                    ),
                ));
            }
            if options.verify_checksums && crc32fast::hash(&b[off..off + len]) != s.crc {
                return Err(err(
                    &sname,
                    "checksum mismatch: the section is corrupt".into(),
                ));
            }
            sections.push((off, len));
            end_prev = end as usize;
        }
        let shard = Shard {
            name,
            bytes,
            rows,
            tasks,
            single,
            dense,
            sections,
            bags: schema.multi.len(),
            has_group: schema.group.is_some(),
            has_weight: schema.weight,
        };
        shard.check_values(schema)?;
        Ok(shard)
    }

    fn value_err(&self, section: &str, row: usize, detail: String) -> ShardError {
        ShardError::Value {
            file: self.name.clone(),
            section: section.into(),
            row,
            detail,
        }
    }

    fn check_values(&self, schema: &Schema) -> Result<()> {
        let t = self.tasks.max(1);
        let targets = schema.target_mask();
        for (i, &y) in self.labels().iter().enumerate() {
            if !schema.label_ok(targets.get(i % t).copied().unwrap_or(false), y) {
                return Err(self.value_err(
                    "labels",
                    i / t,
                    format!("label {:?} is {y}", schema.tasks[i % t]),
                ));
            }
        }
        if self.single > 0 {
            for (i, &id) in self.single().iter().enumerate() {
                let f = &schema.single[i % self.single];
                if id >= f.vocab {
                    return Err(self.value_err(
                        "single-valued ids",
                        i / self.single,
                        format!("field {:?}: id {id} >= vocab {}", f.name, f.vocab),
                    ));
                }
            }
        }
        for (k, f) in schema.multi.iter().enumerate() {
            let (offsets, ids) = (self.bag_offsets(k), self.bag_ids(k));
            let name = SectionKind::BagOffsets.name(k as u32);
            if offsets[0] != 0 {
                return Err(self.value_err(
                    &name,
                    0,
                    format!("first offset is {}, expected 0", offsets[0]),
                ));
            }
            if let Some(r) = offsets.windows(2).position(|w| w[0] > w[1]) {
                return Err(self.value_err(&name, r, "offsets decrease".into()));
            }
            if offsets[self.rows] != ids.len() as u64 {
                return Err(self.value_err(
                    &name,
                    self.rows,
                    format!("last offset {} but {} ids", offsets[self.rows], ids.len()),
                ));
            }
            if let Some(p) = ids.iter().position(|&id| id >= f.vocab) {
                let row = offsets.partition_point(|&o| o <= p as u64) - 1;
                return Err(self.value_err(
                    &SectionKind::BagIds.name(k as u32),
                    row,
                    format!("field {:?}: id {} >= vocab {}", f.name, ids[p], f.vocab),
                ));
            }
        }
        if let Some(p) = self.dense().iter().position(|v| !v.is_finite()) {
            return Err(self.value_err(
                "dense features",
                p / self.dense.max(1),
                format!("value {} is not finite", self.dense()[p]),
            ));
        }
        if let Some(r) = self
            .weight()
            .iter()
            .position(|w| !(w.is_finite() && *w >= 0.0))
        {
            return Err(self.value_err(
                "weights",
                r,
                format!("weight {} is not finite and >= 0", self.weight()[r]),
            ));
        }
        Ok(())
    }

    fn section<T: bytemuck::Pod>(&self, k: usize) -> &[T] {
        let (off, len) = self.sections[k];
        // Alignment and length were checked at open; try_cast cannot fail here.
        bytemuck::try_cast_slice(&self.bytes.as_slice()[off..off + len]).expect("validated section")
    }

    /// Position of a section in the schema order.
    fn index_of(&self, kind: SectionKind, bag: usize) -> Option<usize> {
        let mut k = 1 + usize::from(self.single > 0);
        match kind {
            SectionKind::Labels => Some(0),
            SectionKind::Single => (self.single > 0).then_some(1),
            SectionKind::BagOffsets => Some(k + 2 * bag),
            SectionKind::BagIds => Some(k + 2 * bag + 1),
            SectionKind::Dense => (self.dense > 0).then_some(k + 2 * self.bags),
            SectionKind::Group => {
                k += 2 * self.bags + usize::from(self.dense > 0);
                self.has_group.then_some(k)
            }
            SectionKind::Weight => {
                k += 2 * self.bags + usize::from(self.dense > 0) + usize::from(self.has_group);
                self.has_weight.then_some(k)
            }
        }
    }

    /// The file name (for messages).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Rows in the shard.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The file's size in bytes.
    pub fn file_len(&self) -> u64 {
        self.bytes.as_slice().len() as u64
    }

    /// The shard's digest as a manifest records it: the CRC-32 of its header and section
    /// table, which holds every section's CRC-32 (see [`crate::manifest`]).
    pub fn digest(&self) -> String {
        let b = self.bytes.as_slice();
        crate::manifest::header_digest(&b[..header_size(self.sections.len()).min(b.len())])
    }

    /// `rows x tasks` labels.
    pub fn labels(&self) -> &[f32] {
        self.section(0)
    }

    /// `rows x single fields` ids (empty without single-valued fields).
    pub fn single(&self) -> &[u32] {
        self.index_of(SectionKind::Single, 0)
            .map_or(&[], |k| self.section(k))
    }

    /// The `rows + 1` offsets of bag `k`.
    pub fn bag_offsets(&self, k: usize) -> &[u64] {
        self.section(
            self.index_of(SectionKind::BagOffsets, k)
                .expect("bag index within the schema"),
        )
    }

    /// The ids of bag `k`.
    pub fn bag_ids(&self, k: usize) -> &[u32] {
        self.section(
            self.index_of(SectionKind::BagIds, k)
                .expect("bag index within the schema"),
        )
    }

    /// `rows x dense` features (empty without dense features).
    pub fn dense(&self) -> &[f32] {
        self.index_of(SectionKind::Dense, 0)
            .map_or(&[], |k| self.section(k))
    }

    /// Group ids (empty without a group column).
    pub fn group(&self) -> &[u64] {
        self.index_of(SectionKind::Group, 0)
            .map_or(&[], |k| self.section(k))
    }

    /// Sample weights (empty without a weight column).
    pub fn weight(&self) -> &[f32] {
        self.index_of(SectionKind::Weight, 0)
            .map_or(&[], |k| self.section(k))
    }
}

/// The schema of the `shard_open` fuzz target and of its seed corpus in `fuzz/corpus/`:
/// two tasks, two single-valued fields, one bag, two dense features, a group and a weight
/// (every section kind).
pub fn fuzz_schema() -> Schema {
    use crate::schema::{DenseSpec, MultiField, Pooling, SingleField};
    Schema {
        format_version: FORMAT_VERSION,
        tasks: vec!["click".into(), "conversion".into()],
        single: vec![
            SingleField {
                name: "user".into(),
                vocab: 10,
            },
            SingleField {
                name: "item".into(),
                vocab: 20,
            },
        ],
        multi: vec![MultiField {
            name: "tags".into(),
            vocab: 5,
            pooling: Pooling::Sum,
        }],
        dense: DenseSpec {
            count: 2,
            ..DenseSpec::default()
        },
        group: Some("session".into()),
        weight: true,
        soft_labels: false,
        targets: Vec::new(),
        item: None,
        encodings: Vec::new(),
    }
}

fn format_err(file: &str, section: &str, detail: String) -> ShardError {
    ShardError::Format {
        file: file.to_string(),
        section: section.to_string(),
        detail,
    }
}
