//! The workspace handle and the score call: borrowed inputs, caller-owned outputs, no
//! allocation, no threads, no locks.
//!
//! ```text
//! ResflowRequest (borrowed)       --check lengths, offsets, strides-->  model::Request
//! ResflowWorkspace (per thread)   --Scorer::score-->  probs (n x T), fused (n)  (caller's)
//! ```
//!
//! The multi-valued fields' views are kept in a fixed array on the stack
//! ([`RESFLOW_MAX_BAG_FIELDS`]), so converting a request allocates nothing either.

use model::{Bag, Request, Workspace};

use crate::handle::{free_handle, new_handle};
use crate::model::{RESFLOW_MAX_BAG_FIELDS, ResflowModel};
use crate::status::{Failure, ResflowStatus, guard};
use crate::{check_struct_size, slice, slice_mut};

/// Largest `max_candidates` a workspace accepts (a guard against a size that would ask
/// the allocator for more memory than any request needs).
pub const RESFLOW_MAX_CANDIDATES: usize = 1 << 20;

/// Per-thread scratch memory for scoring (opaque). Made for one model and a maximum
/// number of candidates; not shareable: one thread at a time.
pub struct ResflowWorkspace {
    /// Address of the model it was made for (checked at every score call).
    model: usize,
    /// Largest request it holds.
    capacity: usize,
    ws: Workspace,
}

/// Makes a workspace for requests of up to `max_candidates` candidates of `model` (1 to
/// 1048576). It is the only place the library allocates memory for scoring: it sizes every
/// buffer (the kernels' scratch included) and runs one warm-up request, so the score calls
/// that follow never allocate, on whichever thread makes them. A request larger than
/// `max_candidates` fails with `RESFLOW_STATUS_BUFFER_TOO_SMALL` (it does not grow the
/// workspace).
///
/// Thread safety: any thread; a workspace may move between threads but must be used by
/// one thread at a time. Ownership: the caller owns
/// `*out` and frees it with `resflow_workspace_free` before freeing the model.
///
/// # Safety
/// `model` is null or a live handle; `out` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resflow_workspace_new(
    model: *const ResflowModel,
    max_candidates: usize,
    out: *mut *mut ResflowWorkspace,
) -> ResflowStatus {
    // SAFETY: by contract `out` is null or writable.
    unsafe { new_handle(out, || make_workspace(model, max_candidates)) }
}

/// A workspace for `model`, sized and warmed up.
fn make_workspace(
    model: *const ResflowModel,
    max_candidates: usize,
) -> Result<ResflowWorkspace, Failure> {
    // SAFETY: by contract `model` is null or a live handle.
    let handle = unsafe { model.as_ref() }.ok_or_else(|| Failure::null("model"))?;
    if max_candidates == 0 || max_candidates > RESFLOW_MAX_CANDIDATES {
        return Err(Failure::invalid(format!(
            "max_candidates is {max_candidates}, expected 1 to {RESFLOW_MAX_CANDIDATES}"
        )));
    }
    let scorer = &handle.scorer;
    // Twice the estimate: the warm-up request's buffers come on top of the workspace.
    let bytes = 2 * model::checks::workspace_bytes_estimate(scorer.model(), max_candidates);
    if !usize::try_from(bytes).is_ok_and(model::checks::can_allocate) {
        return Err(Failure::new(
            ResflowStatus::OutOfMemory,
            format!(
                "a workspace for {max_candidates} candidates needs about {} MiB, more than this process can allocate",
                bytes >> 20
            ),
        ));
    }
    let mut ws = scorer.workspace(max_candidates);
    warm_up(handle, &mut ws, max_candidates)?;
    Ok(ResflowWorkspace {
        model: model as usize,
        capacity: max_candidates,
        ws,
    })
}

/// Scores one request of `n` candidates with every id 0 and empty bags, so that every
/// buffer the scorer and the kernels use on this thread exists before the first real call.
fn warm_up(model: &ResflowModel, ws: &mut Workspace, n: usize) -> Result<(), Failure> {
    let (req_ids, req_bags) = model.request_counts();
    let (cand_ids, cand_bags) = model.candidate_counts();
    let d = model.scorer.model().layout.dense;
    let ids = vec![0u32; n * cand_ids];
    let offsets = vec![0u64; n + 1];
    let bags = vec![
        Bag {
            offsets: &offsets,
            ids: &[]
        };
        cand_bags
    ];
    let request_ids = vec![0u32; req_ids];
    let request_bags = vec![
        Bag {
            offsets: &[0, 0],
            ids: &[]
        };
        req_bags
    ];
    let dense = vec![0.0f32; n * d];
    let request = Request {
        candidates: n,
        ids: &ids,
        bags: &bags,
        dense: &dense,
        dense_stride: d,
        request_ids: &request_ids,
        request_bags: &request_bags,
    };
    let tasks = model.scorer.tasks();
    let (mut probs, mut fused) = (vec![0.0f32; n * tasks], vec![0.0f32; n]);
    model.scorer.score(ws, &request, &mut probs, &mut fused)?;
    Ok(())
}

/// Frees a workspace. Freeing NULL does nothing.
///
/// Thread safety: not while a score call uses it. Ownership: the handle is invalid
/// afterwards.
///
/// # Safety
/// `workspace` is null or a handle from `resflow_workspace_new` not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resflow_workspace_free(workspace: *mut ResflowWorkspace) {
    // SAFETY: by contract `workspace` is null or a live handle of `resflow_workspace_new`
    // (made by `new_handle`), freed once.
    unsafe { free_handle(workspace) }
}

/// The ids of one multi-valued field over a list of rows: row `r` owns
/// `ids[offsets[r] .. offsets[r + 1]]`. `offsets` has `rows + 1` entries, starts at 0,
/// never decreases and ends at `ids_len`. An element of an array, not passed alone: its
/// layout is fixed for ABI version 1.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ResflowBag {
    /// `rows + 1` offsets into `ids`.
    pub offsets: *const u64,
    /// Number of offsets (`rows + 1`).
    pub offsets_len: usize,
    /// Every row's ids, concatenated (may be NULL when `ids_len` is 0).
    pub ids: *const u32,
    /// Number of ids.
    pub ids_len: usize,
}

/// One request: `candidates` candidates of one user/context. Every pointer is borrowed for
/// the duration of the call only; a pointer may be NULL when its length is 0. Field order
/// within `ids`, `bags`, `request_ids` and `request_bags` is the order
/// `resflow_model_field` reports.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ResflowRequest {
    /// Set to `sizeof(ResflowRequest)`.
    pub struct_size: usize,
    /// Number of candidates n (0 is allowed and scores nothing).
    pub candidates: usize,
    /// Single-valued candidate ids, `n x candidate_ids`, row-major.
    pub ids: *const u32,
    /// Length of `ids`: `n * candidate_ids`.
    pub ids_len: usize,
    /// One bag per multi-valued candidate field, each over n rows.
    pub bags: *const ResflowBag,
    /// Length of `bags`: `candidate_bags`.
    pub bags_len: usize,
    /// Dense features: candidate `r` reads `dense[r * dense_stride .. + D]`.
    pub dense: *const f32,
    /// Length of `dense`: at least `(n - 1) * dense_stride + D` when D > 0 and n > 0.
    pub dense_len: usize,
    /// Floats between consecutive candidates' dense features (at least D).
    pub dense_stride: usize,
    /// Single-valued request-level ids, one per field.
    pub request_ids: *const u32,
    /// Length of `request_ids`: `request_ids` of the model info.
    pub request_ids_len: usize,
    /// One bag per multi-valued request-level field, each over one row (2 offsets).
    pub request_bags: *const ResflowBag,
    /// Length of `request_bags`.
    pub request_bags_len: usize,
}

/// Converts a C bag array into `out[..len]`.
///
/// # Safety
/// `bags` is null or points to `len` readable `ResflowBag`s whose arrays are readable for
/// their lengths during `'a`.
unsafe fn bags<'a>(
    bags: *const ResflowBag,
    len: usize,
    expected: usize,
    what: &str,
    out: &mut [Bag<'a>; RESFLOW_MAX_BAG_FIELDS],
) -> Result<(), Failure> {
    if len != expected {
        return Err(Failure::invalid(format!(
            "{what}: {len} bags, the model has {expected} multi-valued fields"
        )));
    }
    // SAFETY: by contract `bags` points to `len` readable bags.
    let c_bags = unsafe { slice(bags, len, what) }?;
    for (slot, b) in out.iter_mut().zip(c_bags) {
        *slot = Bag {
            // SAFETY: by contract each bag's arrays are readable for their lengths.
            offsets: unsafe { slice(b.offsets, b.offsets_len, "bag offsets") }?,
            // SAFETY: as above.
            ids: unsafe { slice(b.ids, b.ids_len, "bag ids") }?,
        };
    }
    Ok(())
}

/// Scores one request: writes `n x T` probabilities (row-major: candidate r, task t at
/// `probs[r * T + t]`, tasks in `resflow_model_task_name` order) and `n` fused ranking
/// scores. `probs_len` must be at least `n * T` and `fused_len` at least `n`
/// (`RESFLOW_STATUS_BUFFER_TOO_SMALL` otherwise); the two must not overlap each other or
/// the inputs. For a regression model (its configuration has `regression`), `fused` is
/// the predicted value (the chained thresholds' expected value, or the direct head's
/// value) and `probs` the per-threshold `P(y > t)`, the thresholds in the task names
/// (`play_time>30.5`); see docs/models.md.
///
/// Every length, offset, stride and id is checked before use: a request that does not add
/// up gives `RESFLOW_STATUS_INVALID_ARGUMENT` (or `RESFLOW_STATUS_NULL_ARGUMENT`) and a
/// message, never a crash. On failure the outputs may be partly written.
///
/// Never allocates on success, never starts a thread, never takes a lock. Writing the
/// error message of a failing call allocates.
///
/// Thread safety: any number of threads may score with one model at once, each with its
/// own workspace. `workspace` must have been made from this `model`. Ownership: every
/// buffer stays the caller's; nothing is kept after the call returns.
///
/// # Safety
/// `model` and `workspace` are null or live handles; `request` is null or points to a
/// readable `ResflowRequest` whose pointers are readable for their lengths; `probs` and
/// `fused` are null or writable for their lengths.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resflow_score(
    model: *const ResflowModel,
    workspace: *mut ResflowWorkspace,
    request: *const ResflowRequest,
    probs: *mut f32,
    probs_len: usize,
    fused: *mut f32,
    fused_len: usize,
) -> ResflowStatus {
    guard(|| {
        // SAFETY: by contract `model` is null or a live handle.
        let handle = unsafe { model.as_ref() }.ok_or_else(|| Failure::null("model"))?;
        // SAFETY: by contract `workspace` is null or a live handle used by this thread only.
        let ws = unsafe { workspace.as_mut() }.ok_or_else(|| Failure::null("workspace"))?;
        // SAFETY: by contract `request` is null or points to a struct starting with its size.
        unsafe { check_struct_size(request, "request") }?;
        // SAFETY: non-null (checked) and readable by contract.
        let r = unsafe { &*request };
        if ws.model != model as usize {
            return Err(Failure::invalid("the workspace was made for another model"));
        }
        let n = r.candidates;
        if n > ws.capacity {
            return Err(Failure::new(
                ResflowStatus::BufferTooSmall,
                format!(
                    "request of {n} candidates, the workspace holds {}: make a larger one",
                    ws.capacity
                ),
            ));
        }
        // n is bounded by the workspace capacity, so these products cannot overflow.
        let tasks = handle.scorer.tasks();
        if probs_len < n * tasks || fused_len < n {
            return Err(Failure::new(
                ResflowStatus::BufferTooSmall,
                format!(
                    "outputs hold {probs_len} probabilities and {fused_len} fused scores, \
                     {n} candidates x {tasks} tasks need {} and {n}",
                    n * tasks
                ),
            ));
        }
        let d = handle.scorer.model().layout.dense;
        if d > 0 && n > 0 {
            let needed = (n - 1)
                .checked_mul(r.dense_stride)
                .and_then(|v| v.checked_add(d));
            if needed.is_none_or(|needed| r.dense_len < needed) || r.dense_stride < d {
                return Err(Failure::invalid(format!(
                    "dense: {} floats with stride {} for {n} candidates of {d} features",
                    r.dense_len, r.dense_stride
                )));
            }
        }
        let (_, req_bags) = handle.request_counts();
        let (_, cand_bags) = handle.candidate_counts();
        let empty = Bag {
            offsets: &[],
            ids: &[],
        };
        let (mut c_bags, mut q_bags) = (
            [empty; RESFLOW_MAX_BAG_FIELDS],
            [empty; RESFLOW_MAX_BAG_FIELDS],
        );
        // SAFETY: by contract the request's arrays are readable for their lengths.
        unsafe { bags(r.bags, r.bags_len, cand_bags, "bags", &mut c_bags) }?;
        // SAFETY: as above.
        unsafe {
            bags(
                r.request_bags,
                r.request_bags_len,
                req_bags,
                "request_bags",
                &mut q_bags,
            )
        }?;
        let request = Request {
            candidates: n,
            // SAFETY: by contract `ids` is readable for `ids_len` values.
            ids: unsafe { slice(r.ids, r.ids_len, "ids") }?,
            bags: &c_bags[..cand_bags],
            // SAFETY: by contract `dense` is readable for `dense_len` values.
            dense: unsafe { slice(r.dense, r.dense_len, "dense") }?,
            dense_stride: r.dense_stride,
            // SAFETY: by contract `request_ids` is readable for `request_ids_len` values.
            request_ids: unsafe { slice(r.request_ids, r.request_ids_len, "request_ids") }?,
            request_bags: &q_bags[..req_bags],
        };
        let probs_ptr = probs as usize;
        let fused_ptr = fused as usize;
        let p_end = probs_ptr.saturating_add(probs_len.saturating_mul(size_of::<f32>()));
        let f_end = fused_ptr.saturating_add(fused_len.saturating_mul(size_of::<f32>()));
        if probs_len > 0 && fused_len > 0 && probs_ptr < f_end && fused_ptr < p_end {
            return Err(Failure::invalid("probs and fused overlap"));
        }
        // SAFETY: by contract `probs` is writable for `probs_len` floats; it does not
        // overlap `fused` (checked) or the inputs (contract).
        let probs = unsafe { slice_mut(probs, probs_len, "probs") }?;
        // SAFETY: as above, for `fused`.
        let fused = unsafe { slice_mut(fused, fused_len, "fused") }?;
        handle.scorer.score(&mut ws.ws, &request, probs, fused)?;
        Ok(())
    })
}
