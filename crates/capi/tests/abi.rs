//! The C ABI called from Rust: fixed status values, the same scores as the [`Scorer`]
//! (also from two threads sharing one model), no allocation in the score call after the
//! workspace is made, and error paths that touch no kernel (so they also run under Miri:
//! `cargo +nightly miri test -p capi --test abi`).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ffi::CStr;
use std::ptr::{null, null_mut};

use common::{RequestData, test_model, test_model_of};
use resflow::Scorer;
use resflow_capi::*;

/// Counts allocations made by the current thread (other test threads do not disturb it).
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

/// A model handle loaded from the bytes of `test_model(seed)`.
fn load(seed: u64) -> (*mut ResflowModel, Scorer) {
    load_model(test_model(seed))
}

/// A model handle loaded from the bytes of `model`, and the Rust scorer of the same model.
fn load_model(model: resflow::Model) -> (*mut ResflowModel, Scorer) {
    let bytes = model.to_bytes().unwrap();
    let mut handle = null_mut();
    // SAFETY: `bytes` is live for its length; `handle` is writable.
    let st = unsafe {
        resflow_model_from_bytes(
            RESFLOW_ABI_VERSION,
            bytes.as_ptr(),
            bytes.len(),
            &mut handle,
        )
    };
    assert_eq!(st, ResflowStatus::Ok, "{}", last_error());
    (handle, Scorer::new(model).unwrap())
}

fn last_error() -> String {
    // SAFETY: the library returns a NUL-terminated string valid until the next failure.
    unsafe { CStr::from_ptr(resflow_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn workspace(model: *const ResflowModel, n: usize) -> *mut ResflowWorkspace {
    let mut ws = null_mut();
    // SAFETY: the model handle is live; the out pointer is writable.
    let st = unsafe { resflow_workspace_new(model, n, &mut ws) };
    assert_eq!(st, ResflowStatus::Ok);
    ws
}

/// C views of a request's buffers (they borrow `d`).
struct CRequest {
    bags: Vec<ResflowBag>,
    request_bags: Vec<ResflowBag>,
}

impl CRequest {
    fn new(d: &RequestData) -> Self {
        let cbag = |b: &resflow::BagBuffer| ResflowBag {
            offsets: b.offsets.as_ptr(),
            offsets_len: b.offsets.len(),
            ids: b.ids.as_ptr(),
            ids_len: b.ids.len(),
        };
        Self {
            bags: d.bags.iter().map(cbag).collect(),
            request_bags: d.request_bags.iter().map(cbag).collect(),
        }
    }

    fn view(&self, d: &RequestData) -> ResflowRequest {
        ResflowRequest {
            struct_size: size_of::<ResflowRequest>(),
            candidates: d.candidates,
            ids: d.ids.as_ptr(),
            ids_len: d.ids.len(),
            bags: self.bags.as_ptr(),
            bags_len: self.bags.len(),
            dense: d.dense.as_ptr(),
            dense_len: d.dense.len(),
            dense_stride: d.dense_stride,
            request_ids: d.request_ids.as_ptr(),
            request_ids_len: d.request_ids.len(),
            request_bags: self.request_bags.as_ptr(),
            request_bags_len: self.request_bags.len(),
        }
    }
}

fn score(
    model: *const ResflowModel,
    ws: *mut ResflowWorkspace,
    req: &ResflowRequest,
    probs: &mut [f32],
    fused: &mut [f32],
) -> ResflowStatus {
    // SAFETY: the handles are live; `req` borrows live buffers; the outputs are disjoint.
    unsafe {
        resflow_score(
            model,
            ws,
            req,
            probs.as_mut_ptr(),
            probs.len(),
            fused.as_mut_ptr(),
            fused.len(),
        )
    }
}

#[test]
fn status_values_are_fixed() {
    let fixed = [
        (ResflowStatus::Ok, 0, "ok"),
        (ResflowStatus::NullArgument, 1, "null argument"),
        (ResflowStatus::InvalidArgument, 2, "invalid argument"),
        (ResflowStatus::BufferTooSmall, 3, "buffer too small"),
        (ResflowStatus::Io, 4, "I/O error"),
        (ResflowStatus::BadModelFile, 5, "bad model file"),
        (ResflowStatus::UnsupportedCpu, 6, "unsupported CPU"),
        (ResflowStatus::AbiMismatch, 7, "ABI version mismatch"),
        (ResflowStatus::Internal, 8, "internal error"),
    ];
    for (status, value, text) in fixed {
        assert_eq!(status as i32, value);
        // SAFETY: static NUL-terminated strings.
        let s = unsafe { CStr::from_ptr(resflow_status_string(value)) };
        assert_eq!(s.to_str().unwrap(), text);
    }
    // SAFETY: as above.
    let s = unsafe { CStr::from_ptr(resflow_status_string(-1)) };
    assert_eq!(s.to_str().unwrap(), "unknown status");
    assert_eq!(resflow_abi_version(), RESFLOW_ABI_VERSION);
    // SAFETY: a static NUL-terminated string.
    let v = unsafe { CStr::from_ptr(resflow_version()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<ResflowModel>();
    send::<ResflowWorkspace>();
}

#[test]
fn baseline_models_load_and_score_through_the_abi() {
    for kind in [
        "shared_bottom",
        "mmoe",
        "ple",
        "aitm",
        "esmm",
        "escm2_ipw",
        "escm2_dr",
        "dcmt",
    ] {
        let (model, scorer) = load_model(test_model_of(kind, 5));
        let ws = workspace(model, 32);
        let tasks = scorer.tasks();
        let d = RequestData::random(&scorer, 23, 7);
        let c = CRequest::new(&d);
        let (mut probs, mut fused) = (vec![f32::NAN; 23 * tasks], vec![f32::NAN; 23]);
        let st = score(model, ws, &c.view(&d), &mut probs, &mut fused);
        assert_eq!(st, ResflowStatus::Ok, "{kind}: {}", last_error());
        // Warm now: the next call allocates nothing.
        let before = allocations();
        let st = score(model, ws, &c.view(&d), &mut probs, &mut fused);
        assert_eq!(allocations() - before, 0, "{kind}: the warm call allocated");
        assert_eq!(st, ResflowStatus::Ok, "{kind}: {}", last_error());
        let (want_p, want_f) = common::score_request(&d, &scorer);
        assert_eq!(probs, want_p, "{kind}");
        assert_eq!(fused, want_f, "{kind}");
        // SAFETY: handles from this loop iteration, freed once, workspace first.
        unsafe {
            resflow_workspace_free(ws);
            resflow_model_free(model);
        }
    }
}

#[cfg_attr(miri, ignore = "runs the GEMM kernels: too slow under Miri")]
#[test]
fn abi_scores_equal_scorer_and_do_not_allocate() {
    let (model, scorer) = load(3);
    let ws = workspace(model, 64);
    let tasks = scorer.tasks();
    for (n, seed) in [(0, 1), (1, 2), (17, 3), (64, 4)] {
        let d = RequestData::random(&scorer, n, seed);
        let c = CRequest::new(&d);
        let req = c.view(&d);
        let (mut probs, mut fused) = (vec![f32::NAN; n * tasks], vec![f32::NAN; n]);
        let before = allocations();
        let st = score(model, ws, &req, &mut probs, &mut fused);
        let during = allocations() - before;
        assert_eq!(st, ResflowStatus::Ok, "{}", last_error());
        assert_eq!(
            during, 0,
            "{n} candidates: the score call allocated {during} times"
        );
        let (want_p, want_f) = common::score_request(&d, &scorer);
        assert_eq!(probs, want_p);
        assert_eq!(fused, want_f);
    }
    // SAFETY: handles from this test, freed once, workspace first.
    unsafe {
        resflow_workspace_free(ws);
        resflow_model_free(model);
    }
}

#[cfg_attr(miri, ignore = "runs the GEMM kernels: too slow under Miri")]
#[test]
fn int8_handles_score_like_the_int8_scorer() {
    let model = test_model(4);
    let bytes = model.to_bytes().unwrap();
    let scorer = Scorer::with_precision(model, resflow::Precision::Int8).unwrap();
    let mut handle = null_mut();
    // SAFETY: `bytes` is live for its length; `handle` is writable.
    let st = unsafe {
        resflow_model_from_bytes_with_precision(
            RESFLOW_ABI_VERSION,
            bytes.as_ptr(),
            bytes.len(),
            RESFLOW_PRECISION_INT8,
            &mut handle,
        )
    };
    assert_eq!(st, ResflowStatus::Ok, "{}", last_error());
    let ws = workspace(handle, 64);
    let tasks = scorer.tasks();
    let d = RequestData::random(&scorer, 40, 9);
    let c = CRequest::new(&d);
    let (mut probs, mut fused) = (vec![f32::NAN; 40 * tasks], vec![f32::NAN; 40]);
    assert_eq!(
        score(handle, ws, &c.view(&d), &mut probs, &mut fused),
        ResflowStatus::Ok
    );
    let before = allocations();
    assert_eq!(
        score(handle, ws, &c.view(&d), &mut probs, &mut fused),
        ResflowStatus::Ok
    );
    assert_eq!(allocations() - before, 0, "the warm int8 call allocated");
    let (want_p, want_f) = common::score_request(&d, &scorer);
    assert_eq!(probs, want_p);
    assert_eq!(fused, want_f);
    // An unknown precision is refused before the bytes are read.
    let mut out = null_mut();
    // SAFETY: as above.
    let st = unsafe {
        resflow_model_from_bytes_with_precision(
            RESFLOW_ABI_VERSION,
            bytes.as_ptr(),
            bytes.len(),
            7,
            &mut out,
        )
    };
    assert_eq!(st, ResflowStatus::InvalidArgument);
    assert!(
        out.is_null() && last_error().contains("precision 7"),
        "{}",
        last_error()
    );
    // SAFETY: handles from this test, freed once, workspace first.
    unsafe {
        resflow_workspace_free(ws);
        resflow_model_free(handle);
    }
}

#[cfg_attr(miri, ignore = "runs the GEMM kernels: too slow under Miri")]
#[test]
fn two_threads_share_one_model() {
    let (model, scorer) = load(5);
    let addr = model as usize;
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2u64)
            .map(|t| {
                let scorer = &scorer;
                s.spawn(move || {
                    let model = addr as *const ResflowModel;
                    let ws = workspace(model, 100);
                    let mut ok = true;
                    for i in 0..20 {
                        let d = RequestData::random(scorer, 100, t * 100 + i);
                        let c = CRequest::new(&d);
                        let (mut p, mut f) = (vec![0.0; 100 * scorer.tasks()], vec![0.0; 100]);
                        ok &= score(model, ws, &c.view(&d), &mut p, &mut f) == ResflowStatus::Ok;
                        ok &= (p, f) == common::score_request(&d, scorer);
                    }
                    // SAFETY: made above, freed once.
                    unsafe { resflow_workspace_free(ws) };
                    ok
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results, [true, true]);
    // SAFETY: every workspace is freed.
    unsafe { resflow_model_free(model) };
}

/// Error paths that return before any kernel runs.
#[test]
fn error_paths_from_rust() {
    let mut out = null_mut();
    // SAFETY: null arguments are the point; `out` is writable.
    unsafe {
        assert_eq!(
            resflow_model_load(RESFLOW_ABI_VERSION, null(), &mut out),
            ResflowStatus::NullArgument
        );
        assert_eq!(
            resflow_model_from_bytes(RESFLOW_ABI_VERSION + 1, null(), 0, &mut out),
            ResflowStatus::AbiMismatch
        );
        let junk = [7u8; 100];
        assert_eq!(
            resflow_model_from_bytes(RESFLOW_ABI_VERSION, junk.as_ptr(), junk.len(), &mut out),
            ResflowStatus::BadModelFile
        );
        assert!(out.is_null());
        assert!(last_error().contains("not a safetensors file"));
        let mut info = ResflowModelInfo::default();
        assert_eq!(
            resflow_model_info(null(), &mut info),
            ResflowStatus::NullArgument
        );
        resflow_model_free(null_mut());
        resflow_workspace_free(null_mut());
        let req = ResflowRequest {
            struct_size: size_of::<ResflowRequest>(),
            candidates: 0,
            ids: null(),
            ids_len: 0,
            bags: null(),
            bags_len: 0,
            dense: null(),
            dense_len: 0,
            dense_stride: 0,
            request_ids: null(),
            request_ids_len: 0,
            request_bags: null(),
            request_bags_len: 0,
        };
        assert_eq!(
            resflow_score(null(), null_mut(), &req, null_mut(), 0, null_mut(), 0),
            ResflowStatus::NullArgument
        );
    }
    assert_eq!(last_error(), "model is null");
}
