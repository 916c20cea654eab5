//! `testkit`: support for the workspace's tests. [`CountingAllocator`] forwards to the
//! system allocator and counts every allocation, so a test can prove that a hot path
//! allocates nothing after warm-up:
//!
//! ```ignore
//! #[global_allocator]
//! static GLOBAL: testkit::CountingAllocator = testkit::CountingAllocator;
//! let before = testkit::allocations();
//! step();
//! assert_eq!(testkit::allocations(), before);
//! ```

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
