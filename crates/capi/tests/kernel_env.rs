//! `RESFLOW_KERNEL` naming no kernel tier is reported by the load call as
//! `RESFLOW_STATUS_INVALID_ARGUMENT` with a message, not as a panic later. (A test binary of
//! its own: the variable is read once per process.)

mod common;

use std::ffi::CStr;
use std::ptr::null_mut;

use resflow_capi::*;

#[test]
fn unknown_kernel_tier_is_an_invalid_argument() {
    // SAFETY: this binary's only test; no other thread reads the environment.
    unsafe { std::env::set_var("RESFLOW_KERNEL", "no-such-tier") };
    let bytes = common::test_model(1).to_bytes().unwrap();
    let mut model = null_mut();
    // SAFETY: `bytes` is live for its length; `model` is writable.
    let st = unsafe {
        resflow_model_from_bytes(RESFLOW_ABI_VERSION, bytes.as_ptr(), bytes.len(), &mut model)
    };
    assert_eq!(st, ResflowStatus::InvalidArgument);
    assert!(model.is_null());
    // SAFETY: a NUL-terminated string valid until the next failure on this thread.
    let message = unsafe { CStr::from_ptr(resflow_last_error()) }.to_string_lossy();
    assert!(message.starts_with("RESFLOW_KERNEL: "), "{message}");
}
