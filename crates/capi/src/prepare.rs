//! Preparing raw feature values for scoring exactly as the converter prepared the training
//! data: a dataset's `schema.json` holds the training-set statistics dense features were
//! standardised with and the encodings (learned vocabularies, hashing, percentile cut
//! points) categorical values went through. The model itself takes prepared inputs (ids and
//! standardised dense values); a host that has raw values runs them through these calls
//! first, which use the converter's own functions (`shards::Schema::standardize_dense`,
//! `shards::Vocabulary::encode`, `shards::EncodingKind::encode_numeric`).
//!
//! ```text
//! resflow_schema_load(path of schema.json or of the dataset directory) -> ResflowSchema*
//! resflow_schema_standardize_dense(schema, values, rows)   (in place, rows x D)
//! resflow_schema_encode(schema, "field", "raw value", &id)
//! ```

use std::ffi::{CStr, c_char};
use std::path::Path;

use shards::{EncodingKind, Schema, Vocabulary};

use crate::handle::{free_handle, new_handle};
use crate::model::check_abi;
use crate::status::{Failure, ResflowStatus, guard};

/// A loaded dataset schema: the preparation of raw inputs (opaque to C).
pub struct ResflowSchema {
    schema: Schema,
    /// The lookup table of each encoding that is a vocabulary, by encoding index.
    tables: Vec<Option<Vocabulary>>,
}

fn c_str<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: non-null and, by the callers' contract, NUL-terminated.
    unsafe { CStr::from_ptr(ptr) }
        .to_str()
        .map_err(|_| Failure::invalid(format!("{what} is not UTF-8")))
}

/// Loads a schema. `path` is a `schema.json` file or a dataset directory holding one. On
/// success `*out` holds a new handle; on failure `*out` is NULL (when `out` is not null)
/// and the status says why: `RESFLOW_STATUS_IO` (unreadable), `RESFLOW_STATUS_BAD_MODEL_FILE`
/// (not a valid schema), `RESFLOW_STATUS_ABI_MISMATCH`.
///
/// Thread safety: any thread. Ownership: the caller frees the handle with
/// `resflow_schema_free`; the handle is immutable and may be shared by threads.
///
/// # Safety
/// `path` is null or a NUL-terminated string; `out` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resflow_schema_load(
    abi_version: u32,
    path: *const c_char,
    out: *mut *mut ResflowSchema,
) -> ResflowStatus {
    // SAFETY: by contract `out` is null or writable.
    unsafe { new_handle(out, || load(abi_version, path)) }
}

/// The schema `path` names, with its vocabularies' lookup tables.
fn load(abi_version: u32, path: *const c_char) -> Result<ResflowSchema, Failure> {
    check_abi(abi_version)?;
    let path = Path::new(c_str(path, "path")?);
    let file = if path.is_dir() {
        path.join("schema.json")
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&file)
        .map_err(|e| Failure::new(ResflowStatus::Io, format!("{}: {e}", file.display())))?;
    let schema = Schema::from_json(&text).map_err(|e| {
        Failure::new(
            ResflowStatus::BadModelFile,
            format!("{}: {e}", file.display()),
        )
    })?;
    let tables = schema
        .encodings
        .iter()
        .map(|e| match &e.kind {
            EncodingKind::Vocabulary { values, .. } => Some(Vocabulary::new(values)),
            _ => None,
        })
        .collect();
    Ok(ResflowSchema { schema, tables })
}

/// Frees a schema handle. Freeing NULL does nothing.
///
/// # Safety
/// `schema` is null or a handle from `resflow_schema_load` not yet freed, used by no
/// other thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resflow_schema_free(schema: *mut ResflowSchema) {
    // SAFETY: by contract `schema` is null or a live handle of `resflow_schema_load`
    // (made by `new_handle`), freed once and used by no other thread.
    unsafe { free_handle(schema) }
}

/// Standardises `rows` rows of raw dense features in place (`values` holds `rows x D`
/// floats, D the schema's dense count), with the training-set mean and std, exactly as the
/// converter did; nothing changes when the schema stores raw values. A non-finite value is
/// `RESFLOW_STATUS_INVALID_ARGUMENT` (and nothing is changed).
///
/// Thread safety: any thread, concurrently. Ownership: nothing is allocated or kept.
///
/// # Safety
/// `schema` is null or a live handle; `values` is null or points to `rows x D` writable
/// floats nobody else touches during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resflow_schema_standardize_dense(
    schema: *const ResflowSchema,
    values: *mut f32,
    rows: usize,
) -> ResflowStatus {
    guard(|| {
        // SAFETY: by contract `schema` is null or a live handle.
        let s = unsafe { schema.as_ref() }.ok_or_else(|| Failure::null("schema"))?;
        let len = rows
            .checked_mul(s.schema.dense.count)
            .ok_or_else(|| Failure::invalid("rows x dense features overflows"))?;
        // SAFETY: by contract `values` points to `len` writable floats.
        let values = unsafe { crate::slice_mut(values, len, "values") }?;
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(Failure::invalid(format!(
                "dense value {i} is {}, expected a finite number",
                values[i]
            )));
        }
        s.schema.standardize_dense(values);
        Ok(())
    })
}

/// The id of one raw value of a categorical field, as the converter computed it: through
/// the field's learned vocabulary (unknown values get id 0), its hash, or its percentile
/// cut points; a field without an encoding takes integer ids below its vocabulary. `field`
/// and `raw` are NUL-terminated UTF-8 strings (`raw` as it would appear in the CSV cell;
/// surrounding spaces are ignored). An unknown field, or a value the encoding cannot read
/// (a non-number for cut points, an out-of-range integer id), is
/// `RESFLOW_STATUS_INVALID_ARGUMENT`.
///
/// Thread safety: any thread, concurrently. Ownership: nothing is allocated or kept.
///
/// # Safety
/// `schema` is null or a live handle; `field` and `raw` are null or NUL-terminated;
/// `id` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resflow_schema_encode(
    schema: *const ResflowSchema,
    field: *const c_char,
    raw: *const c_char,
    id: *mut u32,
) -> ResflowStatus {
    guard(|| {
        // SAFETY: by contract `schema` is null or a live handle.
        let s = unsafe { schema.as_ref() }.ok_or_else(|| Failure::null("schema"))?;
        if id.is_null() {
            return Err(Failure::null("id"));
        }
        let field = c_str(field, "field")?;
        let raw = c_str(raw, "raw")?;
        let vocab = s
            .schema
            .single
            .iter()
            .map(|f| (&f.name, f.vocab))
            .chain(s.schema.multi.iter().map(|f| (&f.name, f.vocab)))
            .find(|f| f.0 == field)
            .map(|f| f.1)
            .ok_or_else(|| Failure::invalid(format!("the schema has no field {field:?}")))?;
        let value = match s.schema.encodings.iter().position(|e| e.field == field) {
            Some(k) => match (&s.schema.encodings[k].kind, &s.tables[k]) {
                (EncodingKind::Vocabulary { .. }, Some(table)) => table.encode(raw.as_bytes()),
                (kind, _) => kind
                    .encode_numeric(raw)
                    .map_err(|e| Failure::invalid(format!("field {field:?}: {e}")))?,
            },
            None => EncodingKind::Ids
                .encode_numeric(raw)
                .map_err(|e| Failure::invalid(format!("field {field:?}: {e}")))?,
        };
        if value >= vocab {
            return Err(Failure::invalid(format!(
                "field {field:?}: id {value} is out of range (vocab {vocab})"
            )));
        }
        // SAFETY: `id` is non-null and, by contract, writable.
        unsafe { id.write(value) };
        Ok(())
    })
}
