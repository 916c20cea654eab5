//! Status codes, the static string of each, the thread-local last-error message, and the
//! guard that every entry point runs its body in (panics become `RESFLOW_STATUS_INTERNAL`).
//!
//! A failing call returns a status and leaves a detailed message for the calling thread,
//! read with [`resflow_last_error`]; a successful call leaves the message as it was.

use std::cell::RefCell;
use std::ffi::{CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

use resflow::ModelError;

/// The result of every fallible call. The values are fixed: they never change between
/// versions of the library, and new statuses only ever get new values.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResflowStatus {
    /// Success.
    Ok = 0,
    /// A required pointer argument is null (or a non-empty array's pointer is null).
    NullArgument = 1,
    /// An argument is out of its domain: lengths that do not add up, offsets that are not
    /// monotone, an id outside its field's vocabulary, a NaN dense feature, a wrong
    /// `struct_size`, a workspace made for another model, an unknown `RESFLOW_KERNEL`.
    InvalidArgument = 2,
    /// An output buffer, or the workspace, is smaller than the request needs.
    BufferTooSmall = 3,
    /// The operating system could not read a file.
    Io = 4,
    /// The bytes are not a model file this library can read, or the model inside is
    /// inconsistent.
    BadModelFile = 5,
    /// The CPU lacks the instructions of the kernel tier forced with `RESFLOW_KERNEL`.
    UnsupportedCpu = 6,
    /// The caller was compiled against a header of another ABI version.
    AbiMismatch = 7,
    /// A bug inside the library, including a caught panic; the message says where.
    Internal = 8,
    /// The memory a call needs (a workspace for `max_candidates`) cannot be allocated in
    /// this process; nothing was allocated.
    OutOfMemory = 9,
}

/// Every status, in value order.
const ALL_STATUSES: [ResflowStatus; 10] = [
    ResflowStatus::Ok,
    ResflowStatus::NullArgument,
    ResflowStatus::InvalidArgument,
    ResflowStatus::BufferTooSmall,
    ResflowStatus::Io,
    ResflowStatus::BadModelFile,
    ResflowStatus::UnsupportedCpu,
    ResflowStatus::AbiMismatch,
    ResflowStatus::Internal,
    ResflowStatus::OutOfMemory,
];

impl ResflowStatus {
    /// The static, NUL-terminated description of the status.
    pub fn description(self) -> &'static std::ffi::CStr {
        match self {
            ResflowStatus::Ok => c"ok",
            ResflowStatus::NullArgument => c"null argument",
            ResflowStatus::InvalidArgument => c"invalid argument",
            ResflowStatus::BufferTooSmall => c"buffer too small",
            ResflowStatus::Io => c"I/O error",
            ResflowStatus::BadModelFile => c"bad model file",
            ResflowStatus::UnsupportedCpu => c"unsupported CPU",
            ResflowStatus::AbiMismatch => c"ABI version mismatch",
            ResflowStatus::Internal => c"internal error",
            ResflowStatus::OutOfMemory => c"out of memory",
        }
    }
}

/// A failed call: its status and the message for [`resflow_last_error`].
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) status: ResflowStatus,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(status: ResflowStatus, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// A null pointer where `what` was required.
    pub(crate) fn null(what: &str) -> Self {
        Self::new(ResflowStatus::NullArgument, format!("{what} is null"))
    }

    /// An argument out of its domain.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(ResflowStatus::InvalidArgument, message)
    }
}

impl From<ModelError> for Failure {
    fn from(e: ModelError) -> Self {
        let status = match &e {
            ModelError::Config(_)
            | ModelError::Layout(_)
            | ModelError::ModelFile { .. }
            | ModelError::NonFinite(_) => ResflowStatus::BadModelFile,
            ModelError::Io { .. } => ResflowStatus::Io,
            ModelError::Request(_) | ModelError::IdOutOfRange { .. } => {
                ResflowStatus::InvalidArgument
            }
            ModelError::BufferTooSmall { .. } => ResflowStatus::BufferTooSmall,
            ModelError::Tensor(tensor::TensorError::UnsupportedTier { .. }) => {
                ResflowStatus::UnsupportedCpu
            }
            ModelError::Tensor(tensor::TensorError::UnknownTier(_)) => {
                ResflowStatus::InvalidArgument
            }
            // Training-side errors cannot come out of loading or scoring; if one ever
            // does, it is a bug, reported as such.
            ModelError::Tensor(_)
            | ModelError::Tape(_)
            | ModelError::Data(_)
            | ModelError::Metrics(_) => ResflowStatus::Internal,
        };
        Self::new(status, e.to_string())
    }
}

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

fn set_last_error(message: String) {
    let bytes: Vec<u8> = message
        .into_bytes()
        .into_iter()
        .filter(|&b| b != 0)
        .collect();
    let message = CString::new(bytes).unwrap_or_default();
    LAST_ERROR.with(|slot| *slot.borrow_mut() = Some(message));
}

/// Runs an entry point's body: panics are caught and reported as
/// [`ResflowStatus::Internal`], failures leave their message in the thread's last error.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Failure>) -> ResflowStatus {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => ResflowStatus::Ok,
        Ok(Err(failure)) => {
            set_last_error(failure.message);
            failure.status
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic with no message".into());
            set_last_error(format!("internal error (caught panic): {what}"));
            ResflowStatus::Internal
        }
    }
}

/// Like [`guard`] for entry points that return a pointer: null on failure or panic.
pub(crate) fn guard_ptr(body: impl FnOnce() -> *const c_char) -> *const c_char {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(std::ptr::null())
}

/// The static, NUL-terminated description of a status value, such as `"buffer too small"`;
/// `"unknown status"` for a value that is not a status.
///
/// Thread safety: any thread, any time. Ownership: the string is static; never free it.
#[unsafe(no_mangle)]
pub extern "C" fn resflow_status_string(status: i32) -> *const c_char {
    guard_ptr(|| {
        ALL_STATUSES
            .iter()
            .find(|s| **s as i32 == status)
            .map_or(c"unknown status", |s| s.description())
            .as_ptr()
    })
}

/// The detailed message of the last call that failed on the calling thread, such as
/// `"bad request: field \"210\": offsets must start at 0 and never decrease"`; an empty
/// string if no call has failed on this thread.
///
/// Thread safety: each thread has its own message. Ownership: the string belongs to the
/// library; it stays valid until the next failing call on the same thread. Copy it to
/// keep it. Never free it.
#[unsafe(no_mangle)]
pub extern "C" fn resflow_last_error() -> *const c_char {
    guard_ptr(|| {
        LAST_ERROR.with(|slot| slot.borrow().as_ref().map_or(c"".as_ptr(), |s| s.as_ptr()))
    })
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;

    use super::*;

    fn last() -> String {
        // SAFETY: a NUL-terminated string valid until the next failure on this thread.
        unsafe { CStr::from_ptr(resflow_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_panic_becomes_internal_with_its_message() {
        let status = guard(|| panic!("the invariant broke"));
        assert_eq!(status, ResflowStatus::Internal);
        assert!(
            last().contains("(caught panic): the invariant broke"),
            "{}",
            last()
        );
    }

    #[test]
    fn success_keeps_the_last_message_and_nul_bytes_are_dropped() {
        assert_eq!(last(), "");
        let status = guard(|| Err(Failure::invalid("a\0b")));
        assert_eq!(status, ResflowStatus::InvalidArgument);
        assert_eq!(guard(|| Ok(())), ResflowStatus::Ok);
        assert_eq!(last(), "ab");
    }

    #[test]
    fn pointer_entry_points_return_null_on_panic() {
        assert!(guard_ptr(|| panic!("no")).is_null());
    }
}
