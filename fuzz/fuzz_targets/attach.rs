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
use shared_block_ring::{MemDevice, Position};

fuzz_target!(|data: &[u8]| {
    let ss = 512usize << (data.len() % 4);
    let bound = fuzz_support::bound_for_ring(data.len());
    let mut images = vec![data.to_vec()];
    for top in [Position::MAX.offset(), u64::MAX] {
        images.extend(moved_to_top(data, ss, top));
    }
    for image in images {
        let disk = MemDevice::from_bytes(ss, image);
        fuzz_support::with_memory_bound(bound, || fuzz_support::exercise(&disk, data.len()));
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
