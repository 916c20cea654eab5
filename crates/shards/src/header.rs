//! The byte layout of a shard file.
//!
//! ```text
//! offset  size  field
//! 0       8     magic "RFSHARD\0"
//! 8       4     format version (u32)
//! 12      4     number of sections S (u32)
//! 16      8     rows (u64)
//! 24      8     schema fingerprint (u64)
//! 32      32*S  section table, one entry per section:
//!                 kind u32 | index u32 | offset u64 | length u64 (bytes) | crc32 u32 | 0 u32
//! ...           zero padding to a multiple of 64
//!               sections, each starting on a 64-byte boundary, zero-padded between
//! ```
//!
//! Everything is little-endian. Sections appear in a fixed order given by the schema
//! (labels, single-valued ids, each bag's offsets then ids, dense, group, weight), so a
//! reader knows exactly what to expect and any deviation is an error.

use crate::schema::Schema;

/// The first 8 bytes of every shard.
pub const MAGIC: [u8; 8] = *b"RFSHARD\0";
/// Bytes before the section table.
pub const FIXED_HEADER: usize = 32;
/// Bytes per section-table entry.
pub const ENTRY: usize = 32;
/// Alignment of every section (a cache line; enough for any element type).
pub const ALIGN: usize = 64;

/// What a section holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum SectionKind {
    /// `rows x tasks` f32 labels.
    Labels = 1,
    /// `rows x single fields` u32 ids.
    Single = 2,
    /// `rows + 1` u64 offsets of bag `index`.
    BagOffsets = 3,
    /// u32 ids of bag `index`.
    BagIds = 4,
    /// `rows x dense` f32 features.
    Dense = 5,
    /// `rows` u64 group ids.
    Group = 6,
    /// `rows` f32 sample weights.
    Weight = 7,
}

impl SectionKind {
    /// Parses the kind number of a section-table entry.
    pub fn from_u32(v: u32) -> Option<Self> {
        use SectionKind::*;
        [Labels, Single, BagOffsets, BagIds, Dense, Group, Weight]
            .into_iter()
            .find(|k| *k as u32 == v)
    }

    /// Size in bytes of one element.
    pub fn element_size(self) -> usize {
        match self {
            SectionKind::BagOffsets | SectionKind::Group => 8,
            _ => 4,
        }
    }

    /// Human-readable name for errors.
    pub fn name(self, index: u32) -> String {
        match self {
            SectionKind::Labels => "labels".into(),
            SectionKind::Single => "single-valued ids".into(),
            SectionKind::BagOffsets => format!("bag {index} offsets"),
            SectionKind::BagIds => format!("bag {index} ids"),
            SectionKind::Dense => "dense features".into(),
            SectionKind::Group => "group ids".into(),
            SectionKind::Weight => "weights".into(),
        }
    }
}

/// One section-table entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section {
    /// What it holds.
    pub kind: SectionKind,
    /// Which bag (0 for other kinds).
    pub index: u32,
    /// Byte offset in the file.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// CRC-32 of the section's bytes.
    pub crc: u32,
}

/// The sections a shard of `schema` has, in order, as `(kind, index)`.
pub fn expected_sections(schema: &Schema) -> Vec<(SectionKind, u32)> {
    let mut v = vec![(SectionKind::Labels, 0)];
    if !schema.single.is_empty() {
        v.push((SectionKind::Single, 0));
    }
    for k in 0..schema.multi.len() as u32 {
        v.push((SectionKind::BagOffsets, k));
        v.push((SectionKind::BagIds, k));
    }
    if schema.dense.count > 0 {
        v.push((SectionKind::Dense, 0));
    }
    if schema.group.is_some() {
        v.push((SectionKind::Group, 0));
    }
    if schema.weight {
        v.push((SectionKind::Weight, 0));
    }
    v
}

/// Header size (fixed part and table) rounded up to the section alignment.
pub fn header_size(sections: usize) -> usize {
    (FIXED_HEADER + ENTRY * sections).div_ceil(ALIGN) * ALIGN
}
