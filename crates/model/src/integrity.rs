//! Integrity of the files this crate writes (model files and checkpoints): checksums,
//! deterministic bytes, finite values.
//!
//! Both files are safetensors: an 8-byte little-endian header length, a JSON header (the
//! tensors' dtypes, shapes and byte ranges, and a `__metadata__` map of strings), then the
//! tensors' bytes. [`serialize`] writes that layout itself, so that the bytes are a function
//! of the content alone: metadata keys and tensors in name order (the `safetensors` crate
//! writes its metadata map in hash order, so two identical runs wrote different bytes). It
//! refuses a non-finite value, naming the tensor, and records in the metadata
//!
//! ```text
//! checksums      {"<tensor>": "<crc32 of its bytes, 8 hex digits>", ...}
//! metadata_crc32 crc32 of every other metadata entry, as "key=value\n" lines in key order
//! ```
//!
//! [`open`] parses bytes with the `safetensors` crate (bounds, overlaps, dtypes) and then
//! verifies both checksums and that the tensors are exactly those listed, so a flipped bit
//! anywhere in a tensor or in the configuration is an error on load, as it is for shards.
//! Finite values are checked by the loaders, which know which tensors they read.

use std::collections::{BTreeMap, HashMap};

use safetensors::SafeTensors;

/// Metadata key of the per-tensor checksums.
pub const CHECKSUMS_KEY: &str = "checksums";
/// Metadata key of the checksum over the other metadata entries.
pub const METADATA_CRC_KEY: &str = "metadata_crc32";

/// One tensor to write: its name, shape and f32 values.
pub struct Array<'a> {
    /// The tensor's name.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its values.
    pub values: std::borrow::Cow<'a, [f32]>,
}

impl<'a> Array<'a> {
    /// A tensor borrowing its values (nothing is copied before the file's bytes).
    pub fn borrowed(name: String, shape: Vec<usize>, values: &'a [f32]) -> Self {
        Self {
            name,
            shape,
            values: std::borrow::Cow::Borrowed(values),
        }
    }

    /// A tensor owning its values.
    pub fn owned(name: String, shape: Vec<usize>, values: Vec<f32>) -> Self {
        Self {
            name,
            shape,
            values: std::borrow::Cow::Owned(values),
        }
    }
}

/// The checksum of the metadata entries other than [`METADATA_CRC_KEY`].
fn metadata_crc<'a>(entries: impl Iterator<Item = (&'a String, &'a String)>) -> String {
    let mut sorted: Vec<(&String, &String)> =
        entries.filter(|(k, _)| *k != METADATA_CRC_KEY).collect();
    sorted.sort();
    let mut h = crc32fast::Hasher::new();
    for (k, v) in sorted {
        h.update(k.as_bytes());
        h.update(b"=");
        h.update(v.as_bytes());
        h.update(b"\n");
    }
    format!("{:08x}", h.finalize())
}

/// Serialises `arrays` and `metadata` as safetensors bytes that depend only on the content,
/// with checksums; an error names the first tensor holding a NaN or an infinity.
pub fn serialize(
    mut arrays: Vec<Array<'_>>,
    mut metadata: BTreeMap<String, String>,
) -> Result<Vec<u8>, String> {
    arrays.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(w) = arrays.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(format!("tensor {:?} is written twice", w[0].name));
    }
    // Offsets and checksums first, from the values themselves, so that the bytes are
    // written once, into a buffer of their exact size (no growing copy of the data).
    let mut checksums = BTreeMap::new();
    let mut entries = serde_json::Map::new();
    let mut at = 0usize;
    let mut chunk: Vec<u8> = Vec::with_capacity(4 * 4096);
    for a in &arrays {
        if a.shape.iter().product::<usize>() != a.values.len() {
            return Err(format!(
                "tensor {:?}: shape {:?} for {} values",
                a.name,
                a.shape,
                a.values.len()
            ));
        }
        if let Some(i) = a.values.iter().position(|v| !v.is_finite()) {
            return Err(format!(
                "tensor {:?} holds a non-finite value ({} at index {i}); it is not written",
                a.name, a.values[i]
            ));
        }
        let mut h = crc32fast::Hasher::new();
        for part in a.values.chunks(4096) {
            chunk.clear();
            chunk.extend(part.iter().flat_map(|v| v.to_le_bytes()));
            h.update(&chunk);
        }
        checksums.insert(a.name.clone(), format!("{:08x}", h.finalize()));
        let start = at;
        at += 4 * a.values.len();
        entries.insert(
            a.name.clone(),
            serde_json::json!({
                "dtype": "F32",
                "shape": a.shape,
                "data_offsets": [start, at],
            }),
        );
    }
    metadata.insert(
        CHECKSUMS_KEY.into(),
        serde_json::to_string(&checksums).map_err(|e| e.to_string())?,
    );
    let crc = metadata_crc(metadata.iter());
    metadata.insert(METADATA_CRC_KEY.into(), crc);
    entries.insert(
        "__metadata__".into(),
        serde_json::to_value(&metadata).map_err(|e| e.to_string())?,
    );
    // serde_json's map is ordered by key (no `preserve_order` feature): one byte sequence
    // per content.
    let mut header = serde_json::to_vec(&entries).map_err(|e| e.to_string())?;
    // Pad with spaces so that the data starts 8-byte aligned, as the format recommends.
    header.resize((header.len() + 8).div_ceil(8) * 8 - 8, b' ');
    let mut out = Vec::new();
    out.try_reserve_exact(8 + header.len() + at)
        .map_err(|_| format!("cannot allocate {} bytes to write the file", at))?;
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    for a in &arrays {
        out.extend(a.values.iter().flat_map(|v| v.to_le_bytes()));
    }
    Ok(out)
}

/// Parses safetensors `bytes` and verifies the checksums written by [`serialize`]: the
/// metadata checksum, and that every tensor is listed in `checksums` with a matching CRC-32
/// and every listed tensor is present. Returns the tensors and the metadata.
pub fn open(bytes: &[u8]) -> Result<(SafeTensors<'_>, HashMap<String, String>), String> {
    let (_, header) =
        SafeTensors::read_metadata(bytes).map_err(|e| format!("not a safetensors file: {e}"))?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| format!("not a safetensors file: {e}"))?;
    let meta = header.metadata().clone().unwrap_or_default();
    let (Some(listed), Some(crc)) = (meta.get(CHECKSUMS_KEY), meta.get(METADATA_CRC_KEY)) else {
        return Err(format!(
            "no {CHECKSUMS_KEY:?} in the metadata: written by an older resflow or another tool, \
             so its integrity cannot be verified"
        ));
    };
    if metadata_crc(meta.iter()) != *crc {
        return Err("metadata checksum mismatch: the configuration or layout is corrupt".into());
    }
    let listed: BTreeMap<String, String> =
        serde_json::from_str(listed).map_err(|e| format!("{CHECKSUMS_KEY}: {e}"))?;
    let names = st.names();
    if names.len() != listed.len() {
        return Err(format!(
            "{} tensors, the checksums list {}",
            names.len(),
            listed.len()
        ));
    }
    for name in names {
        let Some(want) = listed.get(name) else {
            return Err(format!("tensor {name:?} has no checksum"));
        };
        let view = st
            .tensor(name)
            .map_err(|e| format!("tensor {name:?}: {e}"))?;
        if format!("{:08x}", crc32fast::hash(view.data())) != *want {
            return Err(format!(
                "tensor {name:?}: checksum mismatch, the tensor is corrupt"
            ));
        }
    }
    Ok((st, meta))
}

/// Whether every value is finite; otherwise the first offending index and value.
pub fn first_non_finite(values: &[f32]) -> Option<(usize, f32)> {
    values
        .iter()
        .position(|v| !v.is_finite())
        .map(|i| (i, values[i]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let w = [0.5f32, -1.0, 2.0, 0.25];
        let meta = BTreeMap::from([
            ("format".to_string(), "test".to_string()),
            ("config".to_string(), "{\"a\":1}".to_string()),
        ]);
        serialize(
            vec![
                Array::owned("b".into(), vec![2, 2], w.to_vec()),
                Array::owned("a".into(), vec![1], vec![3.0]),
            ],
            meta,
        )
        .unwrap()
    }

    #[test]
    fn round_trip_and_deterministic_bytes() {
        let bytes = sample();
        assert_eq!(bytes, sample());
        let (st, meta) = open(&bytes).unwrap();
        assert_eq!(meta["format"], "test");
        assert_eq!(st.tensor("b").unwrap().shape(), &[2, 2]);
        assert_eq!(
            (8 + u64::from_le_bytes(bytes[..8].try_into().unwrap())) % 8,
            0
        );
    }

    #[test]
    fn every_single_bit_flip_is_caught_or_harmless() {
        let bytes = sample();
        let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                match open(&b) {
                    Err(_) => {}
                    // A flip in the header's padding or in JSON whitespace changes nothing
                    // that is read; anything in the data must be caught.
                    Ok((st, _)) => {
                        assert!(
                            i < header,
                            "flip of byte {i} bit {bit} in the data accepted"
                        );
                        for n in ["a", "b"] {
                            assert_eq!(
                                st.tensor(n).unwrap().data(),
                                open(&bytes).unwrap().0.tensor(n).unwrap().data()
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn non_finite_values_are_never_written() {
        let e = serialize(
            vec![Array::owned("w".into(), vec![2], vec![1.0, f32::NAN])],
            BTreeMap::new(),
        )
        .unwrap_err();
        assert!(e.contains("\"w\"") && e.contains("non-finite"), "{e}");
    }

    #[test]
    fn files_without_checksums_are_refused() {
        let e = open(
            &safetensors::serialize(
                Vec::<(&str, safetensors::tensor::TensorView<'_>)>::new(),
                None,
            )
            .unwrap(),
        )
        .unwrap_err();
        assert!(e.contains("older resflow"), "{e}");
    }
}
