//! After a warm-up call, GEMM (any path) and the element-wise kernels allocate nothing:
//! the scratch memory is reused. Checked with a counting global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use tensor::{Matrix, gemm, ops};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is a
// side effect that does not touch the memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's arguments.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn steady_state_kernels_do_not_allocate() {
    // A tower step's products: forward, weight gradient, input gradient, logit layer.
    let x = Matrix::from_fn(256, 608, |i, j| ((i + j) % 7) as f32);
    let w = Matrix::from_fn(608, 128, |i, j| ((i * j) % 5) as f32);
    let w3 = Matrix::from_fn(128, 1, |i, _| i as f32);
    let mut h = Matrix::zeros(256, 128);
    let mut dw = Matrix::zeros(608, 128);
    let mut dx = Matrix::zeros(256, 608);
    let mut logit = Matrix::zeros(256, 1);
    let mut y = vec![0.0f32; 256 * 128];
    let bias = vec![0.5f32; 128];
    let mut db = vec![0.0f32; 128];
    let mut dh = vec![0.0f32; 256 * 128];
    let mut step = || {
        gemm(1.0, x.view(), w.view(), 0.0, h.view_mut()).unwrap();
        gemm(1.0, x.view().t(), h.view(), 0.0, dw.view_mut()).unwrap();
        gemm(1.0, h.view(), w.view().t(), 0.0, dx.view_mut()).unwrap();
        gemm(1.0, h.view(), w3.view(), 0.0, logit.view_mut()).unwrap();
        ops::add_bias_rows(h.as_mut_slice(), &bias);
        ops::sigmoid(h.as_slice(), &mut y);
        ops::prelu(h.as_slice(), &bias, &mut y);
        ops::prelu_backward_add(h.as_slice(), &bias, &y, &mut dh, &mut db);
        ops::add_col_sums(&y, &mut db);
    };
    let start = ALLOCATIONS.load(Ordering::Relaxed);
    step();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    assert!(
        before > start,
        "the warm-up grows the scratch, so the counter must see it"
    );
    for _ in 0..5 {
        step();
    }
    assert_eq!(
        ALLOCATIONS.load(Ordering::Relaxed) - before,
        0,
        "allocations after warm-up"
    );
}
