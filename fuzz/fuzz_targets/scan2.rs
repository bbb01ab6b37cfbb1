//! An arbitrary small device image read as a format-2 ring: recovery
//! (header, states, the scan from max(C, durable) to P) and the inspector.
//! Nothing may panic, hang, or let the library's heap grow beyond a bound
//! set by the ring's size; what the scan accepts must lie in its range.
//!
//! The input's length modulo 4 picks the sector size (512 << n). Its last
//! byte picks how much of the image is made valid first, so the fuzzer
//! gets past the checksums it cannot guess: 0 leaves the image as it is;
//! 1 rewrites a valid header for the image's geometry (ring id from the
//! image) and re-seals both state sectors (tag, ring id, checksum), keeping
//! their fuzzed fields; 2 also re-seals the checksum of every record along
//! the chain from the scan's start whose position field is right (after
//! lowering an epoch above the producer's to it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared_block_ring::layout::v2 as l;
use shared_block_ring::{inspect, ring2, MemDevice};

fuzz_target!(|data: &[u8]| {
    let (ss, image) = fuzz_support::v2::image_of(data, false);
    let bound = fuzz_support::bound_for_ring(image.len());
    fuzz_support::with_memory_bound(bound, || exercise(ss, image));
});

fn exercise(ss: usize, image: Vec<u8>) {
    let disk = MemDevice::from_bytes(ss, image);
    if let Ok(r) = ring2::recover(&disk) {
        let s = &r.scan;
        assert_eq!(s.start, r.consumer.position.max(r.producer.durable));
        assert_eq!(s.stop, r.producer.position);
        assert!(s.start <= s.end && s.end <= s.stop);
        assert_eq!(s.end % l::RECORD_ALIGN, 0);
        assert_eq!(s.problem.is_none(), s.end == s.stop);
        assert!(s.records <= (s.end - s.start) / l::RECORD_HEADER_LEN);
        assert_eq!(s.epoch, r.producer.epoch);
    }
    if let Ok(i) = inspect::v2::inspect(&disk, 8, 64) {
        assert!(i.items.len() <= 8 && i.items.iter().all(|x| x.preview.len() <= 64));
        let _ = i.problems();
    }
}
