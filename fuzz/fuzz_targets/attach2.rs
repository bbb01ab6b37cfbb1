//! An arbitrary small device image read as a format-2 ring: attach both
//! sides (recovery, the owner lease, the producer's rewrite of its sector),
//! then every reading and writing call, as `attach` does for format 1.
//! Nothing may panic, hang, or let the library's heap grow beyond a bound
//! set by the ring's size; whatever is delivered must be a record that
//! passed its checks, within the published range.
//!
//! The input's length modulo 4 picks the sector size (512 << n). Its last
//! byte picks how much of the image is made valid first, so the fuzzer
//! gets past the checksums it cannot guess (see `fuzz_support::v2`): 0
//! leaves it as it is; 1 makes the header and the state sectors sound
//! (owners cleared, so attach may take the sides); 2 also re-seals the
//! records along the chain from the scan's start.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared_block_ring::MemDevice;

fuzz_target!(|data: &[u8]| {
    let (ss, image) = fuzz_support::v2::image_of(data, true);
    let bound = fuzz_support::bound_for_ring(image.len());
    let disk = MemDevice::from_bytes(ss, image);
    fuzz_support::with_memory_bound(bound, || fuzz_support::exercise(&disk, data.len()));
});
