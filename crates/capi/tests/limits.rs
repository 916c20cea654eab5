//! Resource limits through the C ABI: a workspace that cannot be allocated is a status, not
//! an abort. The check runs in a child process limited to 2 GB of address space (`ulimit
//! -v`), where a workspace for the documented maximum of candidates does not fit.

use std::ffi::CStr;
use std::ptr::null_mut;

use resflow::{Field, InputLayout, Model, ModelConfig};
use resflow_capi::*;

const CHILD: &str = "RESFLOW_LIMITS_CHILD";

/// Loads the test model and asks for a workspace of `n` candidates.
fn workspace_status(n: usize) -> (ResflowStatus, String) {
    // The paper's widths over 20 fields: about a thousand floats per candidate.
    let layout = InputLayout {
        fields: (0..20)
            .map(|i| Field {
                name: format!("f{i}"),
                vocab: 10,
                bag: None,
            })
            .collect(),
        dense: 0,
        tasks: vec!["click".into(), "conversion".into()],
    };
    let model = Model::random(ModelConfig::default(), layout, 3).unwrap();
    let bytes = model.to_bytes().unwrap();
    let mut model = null_mut();
    // SAFETY: `bytes` is live for its length; `model` is writable.
    let st = unsafe {
        resflow_model_from_bytes(RESFLOW_ABI_VERSION, bytes.as_ptr(), bytes.len(), &mut model)
    };
    assert_eq!(st, ResflowStatus::Ok);
    let mut ws = null_mut();
    // SAFETY: `model` is a live handle; `ws` is writable.
    let st = unsafe { resflow_workspace_new(model, n, &mut ws) };
    // SAFETY: the library returns a NUL-terminated string valid until the next failure.
    let msg = unsafe { CStr::from_ptr(resflow_last_error()) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: `ws` is null or a live workspace of `model`; both are freed once.
    unsafe {
        resflow_workspace_free(ws);
        resflow_model_free(model);
    }
    (st, msg)
}

/// The child's part: run only inside the limited process.
#[test]
fn child_workspace_of_the_maximum_size_under_a_memory_limit() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let (st, msg) = workspace_status(RESFLOW_MAX_CANDIDATES);
    assert_eq!(st, ResflowStatus::OutOfMemory, "{msg}");
    assert!(msg.contains("candidates"), "{msg}");
    // A small workspace still works in the same process.
    assert_eq!(workspace_status(64).0, ResflowStatus::Ok);
    println!("child checked");
}

#[test]
fn oversized_workspace_is_a_status_not_an_abort() {
    if !std::path::Path::new("/bin/sh").exists() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(
            "ulimit -v 2000000 && exec \"$0\" --exact child_workspace_of_the_maximum_size_under_a_memory_limit --nocapture --test-threads 1",
        )
        .arg(&exe)
        .env(CHILD, "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("child checked"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
