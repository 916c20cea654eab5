//! `testkit`: support for the workspace's tests. [`CountingAllocator`] forwards to the
//! system allocator and counts every allocation, so a test can prove that a hot path
//! allocates nothing after warm-up. It counts every thread of the process, so such a test
//! runs with `harness = false` (a plain `main`), where no harness thread allocates beside it:
//!
//! ```ignore
//! #[global_allocator]
//! static GLOBAL: testkit::CountingAllocator = testkit::CountingAllocator;
//! let before = testkit::allocations();
//! step();
//! assert_eq!(testkit::allocations(), before);
//! ```
//!
//! With the feature `model`, [`fixtures`] holds the small model that several crates' tests
//! score.

#[cfg(feature = "model")]
pub mod fixtures;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

/// Allocations and reallocations made so far through [`CountingAllocator`].
pub fn allocations() -> usize {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// The system allocator, counting each `alloc` and `realloc`.
pub struct CountingAllocator;

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is a side
// effect that does not touch the memory.
unsafe impl GlobalAlloc for CountingAllocator {
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

/// The largest `|a_i - b_i|`, NaN if any difference is NaN (so that `gap <= tolerance`
/// fails on a NaN instead of folding it away). Panics when the lengths differ.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "compared slices differ in length");
    let mut worst = 0.0f32;
    for (x, y) in a.iter().zip(b) {
        let d = (x - y).abs();
        if d.is_nan() {
            return f32::NAN;
        }
        worst = worst.max(d);
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::max_abs_diff;

    #[test]
    fn max_abs_diff_keeps_nan() {
        assert_eq!(max_abs_diff(&[1.0, 2.0], &[1.5, 2.0]), 0.5);
        assert!(max_abs_diff(&[1.0, f32::NAN], &[1.0, 0.0]).is_nan());
        assert!(max_abs_diff(&[f32::NAN], &[f32::NAN]).is_nan());
        assert_eq!(max_abs_diff(&[], &[]), 0.0);
        // A NaN gap fails a tolerance check.
        let gap = max_abs_diff(&[f32::NAN], &[0.0]);
        assert_eq!(gap.partial_cmp(&1.0), None);
    }
}
