//! Support shared by the fuzz targets: an allocator that enforces a memory
//! bound per input.
//!
//! libFuzzer's `-malloc_limit_mb` and `-rss_limit_mb` catch gross
//! over-allocation (a length of 4 GiB taken at face value), but their unit
//! is a megabyte, far above the small rings fuzzed here. This allocator
//! enforces the real promise, per input: while a target runs the library on
//! a ring, the library's live heap never grows by more than a bound derived
//! from the ring's capacity. A breach aborts, which libFuzzer reports as a
//! crash with the input that caused it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts live heap bytes and aborts when they exceed the armed bound.
pub struct BoundedAlloc;

/// Every fuzz target links this crate, so this is their allocator.
#[global_allocator]
static ALLOCATOR: BoundedAlloc = BoundedAlloc;

static LIVE: AtomicUsize = AtomicUsize::new(0);
/// Live bytes allowed; `usize::MAX` when no bound is armed.
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);

// SAFETY: every method forwards to the system allocator with the caller's
// arguments unchanged; the counters are only bookkeeping.
unsafe impl GlobalAlloc for BoundedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grow(layout.size());
        // SAFETY: forwarded with the caller's layout, as GlobalAlloc requires.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grow(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            grow(new_size - layout.size());
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn grow(by: usize) {
    let live = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    if live > LIMIT.load(Ordering::Relaxed) {
        // Disarm first: the message itself allocates.
        LIMIT.store(usize::MAX, Ordering::Relaxed);
        eprintln!("memory bound exceeded: {live} live heap bytes (allocation of {by})");
        std::process::abort();
    }
}

/// Runs `f` with the live heap allowed to grow by at most `bytes` over what
/// is live now; aborts the process on a breach.
pub fn with_memory_bound<R>(bytes: usize, f: impl FnOnce() -> R) -> R {
    let base = LIVE.load(Ordering::Relaxed);
    LIMIT.store(base.saturating_add(bytes), Ordering::Relaxed);
    let r = f();
    LIMIT.store(usize::MAX, Ordering::Relaxed);
    r
}

/// The bound used for a ring of `device_bytes` bytes: the consumer's read
/// buffer, the producer's staging buffer and an item handed to the caller
/// can each approach the ring's capacity, and a growing buffer may briefly
/// hold twice its size; the rest (error messages, small vectors) fits in
/// 64 KiB.
pub fn bound_for_ring(device_bytes: usize) -> usize {
    6 * device_bytes + 64 * 1024
}
