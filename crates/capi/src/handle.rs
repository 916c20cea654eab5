//! Opaque handles: how every constructor entry point hands a new object to C, and how every
//! free entry point takes it back. One pair for every handle type (model, workspace,
//! schema), so the rules are written once:
//!
//! ```text
//! resflow_<thing>_new/load(..., T **out)   out checked non-null, *out = NULL first,
//!                                          then the object is made; on success *out = it
//! resflow_<thing>_free(T *handle)          NULL does nothing; otherwise dropped once
//! ```

use crate::status::{Failure, ResflowStatus, guard};

/// Runs a constructor entry point: `out` must not be null and is set to NULL before
/// anything else, so a failed call never leaves a stale pointer; then `make` builds the
/// object, and on success `*out` owns it (a boxed `T`, freed by [`free_handle`]).
///
/// # Safety
/// `out` is null or points to a writable `*mut T`.
pub(crate) unsafe fn new_handle<T>(
    out: *mut *mut T,
    make: impl FnOnce() -> Result<T, Failure>,
) -> ResflowStatus {
    guard(|| {
        if out.is_null() {
            return Err(Failure::null("out"));
        }
        // SAFETY: `out` is non-null and, by this function's contract, writable.
        unsafe { out.write(std::ptr::null_mut()) };
        let object = make()?;
        // SAFETY: as above.
        unsafe { out.write(Box::into_raw(Box::new(object))) };
        Ok(())
    })
}

/// Runs a free entry point: NULL does nothing; anything else is dropped.
///
/// # Safety
/// `handle` is null or came from [`new_handle`] with the same `T`, is not yet freed, and
/// no other thread uses it.
pub(crate) unsafe fn free_handle<T>(handle: *mut T) {
    let _ = guard(|| {
        if !handle.is_null() {
            // SAFETY: by contract `handle` came from `Box::into_raw` in `new_handle` and
            // is freed once.
            drop(unsafe { Box::from_raw(handle) });
        }
        Ok(())
    });
}
