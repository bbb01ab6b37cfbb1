//! Support shared by the fuzz targets: an allocator that enforces a memory
//! bound per input, the calls `attach` and `attach2` make on a ring, and
//! (in [`v2`]) making a format-2 image pass its checksums.
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

use shared_block_ring::{Consumer, MemDevice, Options, Position, Producer, RingFormat};

pub mod v2;

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

/// Bytes of header before an item's payload.
fn header_len(format: RingFormat) -> u64 {
    match format {
        RingFormat::V1 => shared_block_ring::layout::ITEM_HEADER_LEN,
        _ => shared_block_ring::layout::v2::RECORD_HEADER_LEN,
    }
}

/// Attaches both sides to `disk` (of either format) and runs every reading
/// and writing call on it: pop, pop_from, peek, fold, for_each_bytes,
/// advance, suspend/resume, push, publish. Nothing may panic; whatever is
/// delivered must lie within the published range (with room for its
/// header); a walk after the producer's last successful advance ends
/// exactly there. `len` (the input's length) varies the read-ahead.
pub fn exercise(disk: &MemDevice, len: usize) {
    // A small read-ahead on some inputs, to cross read boundaries.
    let read_ahead = if len.is_multiple_of(3) { 4 << 20 } else { 700 };
    let options = Options::new()
        .read_ahead(read_ahead)
        .consumer_poll_interval(std::time::Duration::ZERO);
    if let Ok(mut c) = Consumer::attach(disk.clone(), options.clone()) {
        let capacity = c.geometry().capacity();
        let header = header_len(c.format());
        let start = c.position();
        // Walk the published items one by one, checking their bounds.
        let mut at = start;
        let mut positions = vec![at];
        let mut drained = false;
        for _ in 0..10_000 {
            match c.pop_from(at) {
                Ok((next, item)) => {
                    assert!(next > at);
                    assert!(next.offset() - at.offset() <= capacity);
                    assert!(item.len() as u64 + header <= next.offset() - at.offset());
                    assert!(next <= c.known_producer());
                    at = next;
                    positions.push(at);
                }
                Err(e) => {
                    drained = e.is_retry();
                    break;
                }
            }
        }
        // fold agrees with the walk (the image does not change in between).
        match c.fold(start, 0usize, |n, _| n + 1) {
            Ok((end, n)) => {
                assert!(drained || positions.len() > 10_000);
                if drained {
                    assert_eq!((end, n), (at, positions.len() - 1));
                }
            }
            Err(_) => assert!(!drained),
        }
        let _ = c.for_each_bytes(start, |s, n, b| {
            assert!(s < n && b.len() as u64 + header <= n.offset() - s.offset());
            Ok(())
        });
        if let Some(&p) = positions.get(positions.len() / 2) {
            let _ = c.peek_bytes(p);
            let _ = c.pop_from(Position::new(p.offset().wrapping_add(4)));
            let _ = c.advance(p);
        }
        let _ = c.pop();
        let _ = c.state();
        let _ = c.debug_info();
        let _ = c.suspend();
        let _ = c.resume();
        let _ = c.advance(Position::new(!3));
        let _ = c.pop_from(Position::new(!3));
    }
    let mut published = None;
    if let Ok(mut p) = Producer::attach(disk.clone(), options) {
        let capacity = p.geometry().capacity() as usize;
        let _ = p.state();
        let _ = p.debug_info();
        let before = p.tail();
        if let Ok(end) = p.push(b"fuzz") {
            // Never a position that wrapped, nor one past the maximum.
            assert!(end > before && end <= Position::MAX);
            let _ = p.advance(end);
        }
        let header = header_len(p.format()) as usize;
        let big = vec![7u8; capacity.saturating_sub(header).min(1 << 16)];
        if let Ok(end) = p.push_many([b"a".as_slice(), &big, b""]) {
            let _ = p.advance_pipelined(end);
        }
        let _ = p.push(&big);
        let _ = p.advance_pipelined(p.tail());
        let _ = p.sync();
        if p.advance(p.tail()).is_ok() {
            published = Some(p.published());
        }
        assert!(p.tail() <= Position::MAX);
        let _ = p.heartbeat();
    }
    // A consumer attaching after the producer wrote sees a consistent ring
    // or a clear error; a walk that succeeds ends where the producer's last
    // advance said (nothing acknowledged is missing).
    if let Ok(mut c) = Consumer::attach(disk.clone(), Options::new()) {
        if let (Ok((end, _)), Some(published)) =
            (c.fold(c.position(), 0usize, |n, _| n + 1), published)
        {
            assert_eq!(end, published);
        }
    }
}
