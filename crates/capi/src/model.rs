//! The model handle: loading a model file from a path or from memory, and what the host
//! needs to know to build requests (tasks, fields in request order, dense width).
//!
//! A [`ResflowModel`] is immutable once loaded, so any number of threads may score with it
//! at once; each thread brings its own [`ResflowWorkspace`](crate::ResflowWorkspace).

use std::ffi::{CStr, CString, c_char};
use std::path::Path;

use model::{Model, Precision, Scorer};

use crate::handle::{free_handle, new_handle};
use crate::status::{Failure, ResflowStatus, guard, guard_ptr};
use crate::{RESFLOW_ABI_VERSION, check_struct_size};

/// Most multi-valued fields a model may have in one group (request or candidate): the score
/// call keeps their views in a fixed array on the stack, so it never allocates.
pub const RESFLOW_MAX_BAG_FIELDS: usize = 64;

/// `group` value of `resflow_model_field`: the request-level fields (given once).
pub const RESFLOW_REQUEST_FIELDS: u32 = 0;
/// `group` value of `resflow_model_field`: the candidate-level fields (given per candidate).
pub const RESFLOW_CANDIDATE_FIELDS: u32 = 1;

/// `precision` value of the `_with_precision` load functions: every GEMM in f32 (what
/// `resflow_model_load` and `resflow_model_from_bytes` do).
pub const RESFLOW_PRECISION_F32: u32 = 0;
/// `precision` value of the `_with_precision` load functions: the hidden layers' GEMMs in
/// int8 (dynamic quantization: about twice the multiply rate on AVX2, probabilities within
/// the accuracy measured in docs/resflow.md).
pub const RESFLOW_PRECISION_INT8: u32 = 1;

fn precision(value: u32) -> Result<Precision, Failure> {
    match value {
        RESFLOW_PRECISION_F32 => Ok(Precision::F32),
        RESFLOW_PRECISION_INT8 => Ok(Precision::Int8),
        other => Err(Failure::invalid(format!(
            "precision {other}: expected RESFLOW_PRECISION_F32 (0) or RESFLOW_PRECISION_INT8 (1)"
        ))),
    }
}

/// One categorical field as the host sees it.
pub(crate) struct FieldEntry {
    pub(crate) name: CString,
    pub(crate) vocab: u32,
    pub(crate) multi_valued: bool,
}

/// A loaded model (opaque). Immutable; share it between threads freely.
pub struct ResflowModel {
    pub(crate) scorer: Scorer,
    tasks: Vec<CString>,
    /// Request-level fields: single-valued first, then multi-valued, in request order.
    request: Vec<FieldEntry>,
    /// Candidate-level fields, in the same order.
    candidate: Vec<FieldEntry>,
}

impl ResflowModel {
    /// Wraps a model, checking what the C API needs of it, its plan in `precision`.
    pub(crate) fn new(model: Model, precision: Precision) -> Result<Self, Failure> {
        // The kernel tier is chosen once per process, from `RESFLOW_KERNEL` if set: report
        // a bad value here rather than as a panic at the first score call.
        tensor::Tier::from_env().map_err(|e| {
            let mut failure = Failure::from(model::ModelError::from(e));
            failure.message = format!("RESFLOW_KERNEL: {}", failure.message);
            failure
        })?;
        let scorer = Scorer::with_precision(model, precision)?;
        let cstring = |s: &str| {
            CString::new(s).map_err(|_| {
                Failure::new(
                    ResflowStatus::BadModelFile,
                    format!("name {s:?} holds a NUL"),
                )
            })
        };
        let layout = &scorer.model().layout;
        let entries = |names: Vec<&str>| -> Result<Vec<FieldEntry>, Failure> {
            names
                .into_iter()
                .map(|name| {
                    let field = &layout.fields[layout.field_index(name).unwrap_or_default()];
                    Ok(FieldEntry {
                        name: cstring(name)?,
                        vocab: field.vocab,
                        multi_valued: field.bag.is_some(),
                    })
                })
                .collect()
        };
        let request = entries(scorer.request_fields())?;
        let candidate = entries(scorer.candidate_fields())?;
        for (group, fields) in [("request", &request), ("candidate", &candidate)] {
            let bags = fields.iter().filter(|f| f.multi_valued).count();
            if bags > RESFLOW_MAX_BAG_FIELDS {
                return Err(Failure::new(
                    ResflowStatus::BadModelFile,
                    format!(
                        "{bags} multi-valued {group} fields, the C API supports {RESFLOW_MAX_BAG_FIELDS}"
                    ),
                ));
            }
        }
        let tasks = layout
            .tasks
            .iter()
            .map(|t| cstring(t))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            scorer,
            tasks,
            request,
            candidate,
        })
    }

    /// Number of single-valued and multi-valued fields of a group.
    pub(crate) fn counts(fields: &[FieldEntry]) -> (usize, usize) {
        let bags = fields.iter().filter(|f| f.multi_valued).count();
        (fields.len() - bags, bags)
    }

    pub(crate) fn request_counts(&self) -> (usize, usize) {
        Self::counts(&self.request)
    }

    pub(crate) fn candidate_counts(&self) -> (usize, usize) {
        Self::counts(&self.candidate)
    }
}

pub(crate) fn check_abi(abi_version: u32) -> Result<(), Failure> {
    if abi_version != RESFLOW_ABI_VERSION {
        return Err(Failure::new(
            ResflowStatus::AbiMismatch,
            format!(
                "the caller was built for ABI version {abi_version}, this library is version {RESFLOW_ABI_VERSION}"
            ),
        ));
    }
    Ok(())
}

/// Loads a model file. On success `*out` holds a new model handle; on failure `*out` is
/// set to NULL (when `out` is not null) and the status says why: `RESFLOW_STATUS_IO` (the
/// file cannot be read), `RESFLOW_STATUS_BAD_MODEL_FILE` (not a model file, truncated,
/// inconsistent), `RESFLOW_STATUS_ABI_MISMATCH` (`abi_version` is not
/// `RESFLOW_ABI_VERSION`: pass that macro), `RESFLOW_STATUS_UNSUPPORTED_CPU`.
///
/// `path` is a NUL-terminated UTF-8 path. The model scores in f32
/// (`resflow_model_load_with_precision` chooses).
///
/// Thread safety: any thread; loads may run concurrently. Ownership: the caller owns the
/// handle and frees it with `resflow_model_free` after every workspace made from it.
///
/// # Safety
/// `path` is null or a NUL-terminated string; `out` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resflow_model_load(
    abi_version: u32,
    path: *const c_char,
    out: *mut *mut ResflowModel,
) -> ResflowStatus {
    // SAFETY: the same contract as this function's.
    unsafe { resflow_model_load_with_precision(abi_version, path, RESFLOW_PRECISION_F32, out) }
}

/// `resflow_model_load` with the arithmetic of the scorer's GEMMs: `precision` is
/// `RESFLOW_PRECISION_F32` or `RESFLOW_PRECISION_INT8` (any other value:
/// `RESFLOW_STATUS_INVALID_ARGUMENT`). Statuses, `*out`, threading and ownership as for
/// `resflow_model_load`.
///
/// # Safety
/// `path` is null or a NUL-terminated string; `out` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resflow_model_load_with_precision(
    abi_version: u32,
    path: *const c_char,
    precision: u32,
    out: *mut *mut ResflowModel,
) -> ResflowStatus {
    let load = || {
        check_abi(abi_version)?;
        let precision = self::precision(precision)?;
        if path.is_null() {
            return Err(Failure::null("path"));
        }
        // SAFETY: `path` is non-null and, by contract, NUL-terminated.
        let path = unsafe { CStr::from_ptr(path) };
        let path = path
            .to_str()
            .map_err(|_| Failure::invalid("path is not UTF-8"))?;
        ResflowModel::new(Model::load(Path::new(path))?, precision)
    };
    // SAFETY: by contract `out` is null or writable.
    unsafe { new_handle(out, load) }
}

/// Loads a model from the bytes of a model file in memory (for hosts that fetch models
/// over the network or embed them). The bytes are copied; the buffer may be freed as soon
/// as the call returns. Statuses and `*out` as for `resflow_model_load`; the model scores
/// in f32 (`resflow_model_from_bytes_with_precision` chooses).
///
/// Thread safety: any thread. Ownership: as for `resflow_model_load`.
///
/// # Safety
/// `bytes` is null or points to `len` readable bytes; `out` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resflow_model_from_bytes(
    abi_version: u32,
    bytes: *const u8,
    len: usize,
    out: *mut *mut ResflowModel,
) -> ResflowStatus {
    // SAFETY: the same contract as this function's.
    unsafe {
        resflow_model_from_bytes_with_precision(abi_version, bytes, len, RESFLOW_PRECISION_F32, out)
    }
}

/// `resflow_model_from_bytes` with the arithmetic of the scorer's GEMMs, as for
/// `resflow_model_load_with_precision`.
///
/// # Safety
/// `bytes` is null or points to `len` readable bytes; `out` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resflow_model_from_bytes_with_precision(
    abi_version: u32,
    bytes: *const u8,
    len: usize,
    precision: u32,
    out: *mut *mut ResflowModel,
) -> ResflowStatus {
    let load = || {
        check_abi(abi_version)?;
        let precision = self::precision(precision)?;
        // SAFETY: by contract `bytes` points to `len` readable bytes.
        let bytes = unsafe { crate::slice(bytes, len, "bytes") }?;
        ResflowModel::new(Model::from_bytes(bytes, "model bytes")?, precision)
    };
    // SAFETY: by contract `out` is null or writable.
    unsafe { new_handle(out, load) }
}

/// Frees a model handle. Freeing NULL does nothing.
///
/// Thread safety: call it once, when no other thread uses the model and every workspace
/// made from it has been freed. Ownership: the handle is invalid afterwards.
///
/// # Safety
/// `model` is null or a handle from `resflow_model_load`/`resflow_model_from_bytes` not
/// yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resflow_model_free(model: *mut ResflowModel) {
    // SAFETY: by contract `model` is null or a live handle of `resflow_model_load` /
    // `resflow_model_from_bytes` (both made by `new_handle`), freed once.
    unsafe { free_handle(model) }
}

/// Sizes of a model's inputs and outputs; see `resflow_model_info`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResflowModelInfo {
    /// Set to `sizeof(ResflowModelInfo)` before the call; the library sets it to the size
    /// it filled.
    pub struct_size: usize,
    /// Number of tasks T: probabilities per candidate.
    pub tasks: usize,
    /// Single-valued request-level fields: length of `request_ids`.
    pub request_ids: usize,
    /// Multi-valued request-level fields: length of `request_bags`.
    pub request_bags: usize,
    /// Single-valued candidate-level fields S_c: `ids` is `candidates x S_c`.
    pub candidate_ids: usize,
    /// Multi-valued candidate-level fields: length of `bags`.
    pub candidate_bags: usize,
    /// Dense features D per candidate.
    pub dense: usize,
    /// Width of each embedding.
    pub embedding_dim: usize,
}

/// Fills `*info` with the model's sizes. `info->struct_size` must be set to
/// `sizeof(ResflowModelInfo)` first.
///
/// Thread safety: any thread, concurrently with scoring. Ownership: nothing is allocated.
///
/// # Safety
/// `model` is null or a live handle; `info` is null or points to a writable
/// `ResflowModelInfo` whose `struct_size` is set.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resflow_model_info(
    model: *const ResflowModel,
    info: *mut ResflowModelInfo,
) -> ResflowStatus {
    guard(|| {
        // SAFETY: by contract `model` is null or a live handle.
        let model = unsafe { model.as_ref() }.ok_or_else(|| Failure::null("model"))?;
        // SAFETY: by contract `info` is null or points to a struct starting with its size.
        unsafe { check_struct_size(info, "info") }?;
        let (request_ids, request_bags) = model.request_counts();
        let (candidate_ids, candidate_bags) = model.candidate_counts();
        let m = model.scorer.model();
        let filled = ResflowModelInfo {
            struct_size: size_of::<ResflowModelInfo>(),
            tasks: model.tasks.len(),
            request_ids,
            request_bags,
            candidate_ids,
            candidate_bags,
            dense: m.layout.dense,
            embedding_dim: m.config.embedding_dim,
        };
        // SAFETY: `info` is non-null and its struct_size says it holds at least our struct.
        unsafe { info.write(filled) };
        Ok(())
    })
}

/// The name of task `index` (0-based, in chain order: probabilities come in this order),
/// or NULL when `model` is null or `index` is out of range.
///
/// Thread safety: any thread. Ownership: the string belongs to the model; it lives until
/// `resflow_model_free`.
///
/// # Safety
/// `model` is null or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resflow_model_task_name(
    model: *const ResflowModel,
    index: usize,
) -> *const c_char {
    guard_ptr(|| {
        // SAFETY: by contract `model` is null or a live handle.
        unsafe { model.as_ref() }
            .and_then(|m| m.tasks.get(index))
            .map_or(std::ptr::null(), |s| s.as_ptr())
    })
}

/// One categorical field as `resflow_model_field` describes it.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ResflowFieldInfo {
    /// Set to `sizeof(ResflowFieldInfo)` before the call.
    pub struct_size: usize,
    /// The field's name, NUL-terminated; owned by the model.
    pub name: *const c_char,
    /// Vocabulary size: ids must be below it.
    pub vocab: u32,
    /// True for a multi-valued field (a bag of ids), false for a single id.
    pub multi_valued: bool,
}

/// Describes field `index` of a group (`RESFLOW_REQUEST_FIELDS` or
/// `RESFLOW_CANDIDATE_FIELDS`). Within a group the single-valued fields come first, in the
/// order of the `ids`/`request_ids` columns, then the multi-valued ones, in the order of
/// `bags`/`request_bags`. An index past the end gives `RESFLOW_STATUS_INVALID_ARGUMENT`.
///
/// Thread safety: any thread. Ownership: `info->name` belongs to the model.
///
/// # Safety
/// `model` is null or a live handle; `info` is null or points to a writable
/// `ResflowFieldInfo` whose `struct_size` is set.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resflow_model_field(
    model: *const ResflowModel,
    group: u32,
    index: usize,
    info: *mut ResflowFieldInfo,
) -> ResflowStatus {
    guard(|| {
        // SAFETY: by contract `model` is null or a live handle.
        let model = unsafe { model.as_ref() }.ok_or_else(|| Failure::null("model"))?;
        // SAFETY: by contract `info` is null or points to a struct starting with its size.
        unsafe { check_struct_size(info, "info") }?;
        let fields = match group {
            RESFLOW_REQUEST_FIELDS => &model.request,
            RESFLOW_CANDIDATE_FIELDS => &model.candidate,
            _ => return Err(Failure::invalid(format!("no field group {group}"))),
        };
        let f = fields.get(index).ok_or_else(|| {
            Failure::invalid(format!(
                "field index {index}, the group has {} fields",
                fields.len()
            ))
        })?;
        let filled = ResflowFieldInfo {
            struct_size: size_of::<ResflowFieldInfo>(),
            name: f.name.as_ptr(),
            vocab: f.vocab,
            multi_valued: f.multi_valued,
        };
        // SAFETY: `info` is non-null and its struct_size says it holds at least our struct.
        unsafe { info.write(filled) };
        Ok(())
    })
}
