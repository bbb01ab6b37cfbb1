//! An arbitrary small device image: attach both sides, then pop, pop_from,
//! peek, fold, for_each_bytes, advance, suspend/resume and push on it.
//! Nothing may panic, hang, or let the library's heap grow beyond a bound
//! set by the ring's size (see `fuzz_support`); whatever is delivered must
//! lie within the published range.
//!
//! The input is the image itself (so the OCaml test vectors are seeds as
//! they are). Its length modulo 4 picks the sector size (512 << n), so
//! every multiple of 512 is read with 512-byte sectors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared_block_ring::{Consumer, MemDevice, Options, Position, Producer};

fuzz_target!(|data: &[u8]| {
    let ss = 512usize << (data.len() % 4);
    let disk = MemDevice::from_bytes(ss, data.to_vec());
    let bound = fuzz_support::bound_for_ring(data.len());
    fuzz_support::with_memory_bound(bound, || exercise(&disk, data.len()));
});

fn exercise(disk: &MemDevice, len: usize) {
    // A small read-ahead on some inputs, to cross read boundaries.
    let read_ahead = if len.is_multiple_of(3) { 4 << 20 } else { 700 };
    let options = Options::new()
        .read_ahead(read_ahead)
        .consumer_poll_interval(std::time::Duration::ZERO);
    if let Ok(mut c) = Consumer::attach(disk.clone(), options.clone()) {
        let capacity = c.geometry().capacity();
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
                    assert!(item.len() as u64 + 4 <= next.offset() - at.offset());
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
            assert!(s < n && b.len() as u64 + 4 <= n.offset() - s.offset());
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
    if let Ok(mut p) = Producer::attach(disk.clone(), options) {
        let capacity = p.geometry().capacity() as usize;
        let _ = p.state();
        let _ = p.debug_info();
        if let Ok(end) = p.push(b"fuzz") {
            let _ = p.advance(end);
        }
        let big = vec![7u8; capacity.saturating_sub(4).min(1 << 16)];
        if let Ok(end) = p.push_many([b"a".as_slice(), &big, b""]) {
            let _ = p.advance_pipelined(end);
        }
        let _ = p.push(&big);
        let _ = p.advance_pipelined(p.tail());
        let _ = p.sync();
        let _ = p.advance(p.tail());
    }
    // A consumer attaching after the producer wrote sees a consistent ring
    // or a clear error.
    if let Ok(mut c) = Consumer::attach(disk.clone(), Options::new()) {
        let _ = c.fold(c.position(), 0usize, |n, _| n + 1);
    }
}
