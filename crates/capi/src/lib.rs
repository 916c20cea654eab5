//! The C ABI of resflow, for C and C++ ranking services that score candidates in-process.
//!
//! ```text
//! resflow_model_load / resflow_model_from_bytes -> ResflowModel*      (immutable, shared;
//!     the _with_precision forms choose f32 or int8 GEMMs)
//! resflow_workspace_new(model, max_candidates)  -> ResflowWorkspace*  (one per thread)
//! resflow_score(model, workspace, &request, probs, n*T, fused, n)     (no allocation)
//! resflow_schema_load(dataset dir) -> ResflowSchema*: raw values prepared as the
//!     converter prepared the training data (standardised dense, encoded categoricals)
//! ```
//!
//! Every entry point runs inside `catch_unwind`: a panic becomes `RESFLOW_STATUS_INTERNAL`
//! and never unwinds into the host. Every pointer is checked for null and every length for
//! consistency before use; a failing call returns a status and leaves a message for
//! [`resflow_last_error`]. The header `include/resflow.h` is generated from this crate by
//! cbindgen (the `header` test checks that the committed copy is current).

mod handle;
mod model;
mod prepare;
mod score;
mod status;

use std::ffi::c_char;

pub use model::{
    RESFLOW_CANDIDATE_FIELDS, RESFLOW_MAX_BAG_FIELDS, RESFLOW_PRECISION_F32,
    RESFLOW_PRECISION_INT8, RESFLOW_REQUEST_FIELDS, ResflowFieldInfo, ResflowModel,
    ResflowModelInfo, resflow_model_field, resflow_model_free, resflow_model_from_bytes,
    resflow_model_from_bytes_with_precision, resflow_model_info, resflow_model_load,
    resflow_model_load_with_precision, resflow_model_task_name,
};
pub use prepare::{
    ResflowSchema, resflow_schema_encode, resflow_schema_free, resflow_schema_load,
    resflow_schema_standardize_dense,
};
pub use score::{
    RESFLOW_MAX_CANDIDATES, ResflowBag, ResflowRequest, ResflowWorkspace, resflow_score,
    resflow_workspace_free, resflow_workspace_new,
};
pub use status::{ResflowStatus, resflow_last_error, resflow_status_string};

use status::Failure;

/// The version of this ABI. Pass it to the load functions; a library of another version
/// refuses with `RESFLOW_STATUS_ABI_MISMATCH` instead of misreading structs.
pub const RESFLOW_ABI_VERSION: u32 = 1;

/// The ABI version of the library actually linked, to compare with the header's
/// `RESFLOW_ABI_VERSION`.
///
/// Thread safety: any thread, any time. Ownership: nothing is allocated.
#[unsafe(no_mangle)]
pub extern "C" fn resflow_abi_version() -> u32 {
    RESFLOW_ABI_VERSION
}

/// The library's version, such as `"0.1.0"`, NUL-terminated.
///
/// Thread safety: any thread, any time. Ownership: the string is static; never free it.
#[unsafe(no_mangle)]
pub extern "C" fn resflow_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// A borrowed C array as a slice: empty when `len` is 0 (whatever `ptr` is), an error
/// when `ptr` is null or misaligned, or the length cannot be an allocation's.
///
/// # Safety
/// When `len > 0` and `ptr` is non-null, `ptr` points to `len` readable, initialised `T`s
/// that nobody writes during `'a`.
pub(crate) unsafe fn slice<'a, T>(
    ptr: *const T,
    len: usize,
    what: &str,
) -> Result<&'a [T], Failure> {
    if len == 0 {
        return Ok(&[]);
    }
    check_array(ptr, len, what)?;
    // SAFETY: non-null, aligned, length within isize::MAX bytes (checked); readable and
    // unaliased by the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// A borrowed writable C array as a mutable slice; errors as for [`slice`].
///
/// # Safety
/// When `len > 0` and `ptr` is non-null, `ptr` points to `len` writable `T`s that nobody
/// else reads or writes during `'a`.
pub(crate) unsafe fn slice_mut<'a, T>(
    ptr: *mut T,
    len: usize,
    what: &str,
) -> Result<&'a mut [T], Failure> {
    if len == 0 {
        return Ok(&mut []);
    }
    check_array(ptr.cast_const(), len, what)?;
    // SAFETY: non-null, aligned, length within isize::MAX bytes (checked); writable and
    // unaliased by the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
}

fn check_array<T>(ptr: *const T, len: usize, what: &str) -> Result<(), Failure> {
    if ptr.is_null() {
        return Err(Failure::null(&format!("{what} (length {len})")));
    }
    if !ptr.is_aligned() {
        return Err(Failure::invalid(format!("{what} is not aligned")));
    }
    if len > isize::MAX as usize / size_of::<T>().max(1) {
        return Err(Failure::invalid(format!(
            "{what}: length {len} is too large"
        )));
    }
    Ok(())
}

/// Checks that `ptr` is non-null, aligned, and that the `struct_size` it starts with is at
/// least the size of this version's `T` (every struct passed by pointer starts with one).
///
/// # Safety
/// `ptr` is null or points to a readable value that starts with a `usize`.
pub(crate) unsafe fn check_struct_size<T>(ptr: *const T, what: &str) -> Result<(), Failure> {
    if ptr.is_null() {
        return Err(Failure::null(what));
    }
    if !ptr.is_aligned() {
        return Err(Failure::invalid(format!("{what} is not aligned")));
    }
    // SAFETY: non-null and aligned (checked); by contract it starts with a readable usize.
    let size = unsafe { ptr.cast::<usize>().read() };
    if size < size_of::<T>() {
        return Err(Failure::invalid(format!(
            "{what}->struct_size is {size}, this library needs at least {} (set it to sizeof)",
            size_of::<T>()
        )));
    }
    Ok(())
}
