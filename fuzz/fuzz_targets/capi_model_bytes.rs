//! Fuzz target: `resflow_model_from_bytes` on arbitrary bytes returns a status (usually
//! `RESFLOW_STATUS_BAD_MODEL_FILE`), never crashes; a model that loads answers
//! `resflow_model_info` and frees cleanly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use resflow_capi::*;

fuzz_target!(|data: &[u8]| {
    let mut model = std::ptr::null_mut();
    // SAFETY: `data` is live for its length; `model` is writable.
    let st = unsafe {
        resflow_model_from_bytes(RESFLOW_ABI_VERSION, data.as_ptr(), data.len(), &mut model)
    };
    assert_ne!(st, ResflowStatus::Internal);
    if st == ResflowStatus::Ok {
        let mut info = ResflowModelInfo {
            struct_size: size_of::<ResflowModelInfo>(),
            ..Default::default()
        };
        // SAFETY: `model` is live; `info` is writable with its size set.
        assert_eq!(unsafe { resflow_model_info(model, &mut info) }, ResflowStatus::Ok);
    } else {
        assert!(model.is_null());
    }
    // SAFETY: `model` is null or a live handle, freed once.
    unsafe { resflow_model_free(model) };
});
