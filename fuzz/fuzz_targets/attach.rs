//! An arbitrary small device image: attach both sides, then pop, pop_from,
//! peek, fold, for_each_bytes, advance, suspend/resume and push on it.
//! Nothing may panic, hang, or let the library's heap grow beyond a bound
//! set by the ring's size (see `fuzz_support`); whatever is delivered must
//! lie within the published range.
//!
//! The input is the image itself (so the OCaml test vectors are seeds as
//! they are). Its length modulo 4 picks the sector size (512 << n), so
//! every multiple of 512 is read with 512-byte sectors.
//!
//! Each image is also exercised moved to the top of the position range:
//! both positions raised by the same multiple of the capacity (which keeps
//! every item where it is on the device) to just below `Position::MAX`,
//! where pushes meet the limit, and to just below 2^64, which attach must
//! refuse (issue 15: such positions used to make push overflow, or
//! acknowledge items never delivered).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared_block_ring::{Consumer, MemDevice, Options, Position, Producer};

fuzz_target!(|data: &[u8]| {
    let ss = 512usize << (data.len() % 4);
    let bound = fuzz_support::bound_for_ring(data.len());
    let mut images = vec![data.to_vec()];
    for top in [Position::MAX.offset(), u64::MAX] {
        images.extend(moved_to_top(data, ss, top));
    }
    for image in images {
        let disk = MemDevice::from_bytes(ss, image);
        fuzz_support::with_memory_bound(bound, || exercise(&disk, data.len()));
    }
});

/// The image with both state positions raised by the same multiple of the
/// capacity, so that the producer position lands within two capacities
/// below `top` (how far below is picked from the image). None when the
/// image has no ring geometry or a position would overflow.
fn moved_to_top(data: &[u8], ss: usize, top: u64) -> Option<Vec<u8>> {
    let data_sectors = (data.len() / ss).checked_sub(3).filter(|&n| n > 0)? as u64;
    let capacity = data_sectors * ss as u64;
    let at = |sector: usize| {
        let b: [u8; 8] = data[sector * ss..sector * ss + 8].try_into().unwrap();
        u64::from_le_bytes(b)
    };
    let (p, c) = (at(1), at(2));
    let below = u64::from(data.iter().fold(0u8, |h, &b| h.wrapping_mul(31) ^ b) % 2);
    let k = top.checked_sub(p)? / capacity;
    let shift = k.checked_sub(below)? * capacity;
    let mut image = data.to_vec();
    for (sector, v) in [(1, p.checked_add(shift)?), (2, c.checked_add(shift)?)] {
        image[sector * ss..sector * ss + 8].copy_from_slice(&v.to_le_bytes());
    }
    Some(image)
}

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
        let big = vec![7u8; capacity.saturating_sub(4).min(1 << 16)];
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
