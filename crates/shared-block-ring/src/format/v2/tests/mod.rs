//! Byte-exact and rejection tests of the format-2 codec. The pinned
//! checksums were computed by an independent bitwise CRC32C (Castagnoli,
//! reflected polynomial 0x82F63B78), not by the crate under test.

use super::*;
use crate::error::{Corruption, Error, RecordProblem, Side, SignatureProblem};
use crate::format::{Geometry, Label};
use crate::layout::v2 as l;
use std::time::Duration;

mod header;
mod record;
mod state;

const RID: RingId = RingId([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);

fn geom() -> Geometry {
    Geometry::new(512, 64).unwrap()
}

fn header() -> Header {
    Header {
        sector_size: 512,
        sectors: 64,
        ring_id: RID,
        created: 0x0102_0304_0506_0708,
        lease_ms: 30_000,
        flags: 0,
    }
}

fn encoded_header() -> Vec<u8> {
    let mut s = vec![0xaa; 512];
    encode_header(&header(), &mut s);
    s
}

/// Rewrites the checksum of a 512-byte block after a test changed a field,
/// so the field's own check is what fails.
fn reseal(s: &mut [u8]) {
    let crc = crc32c::crc32c(&s[..508]);
    s[508..512].copy_from_slice(&crc.to_le_bytes());
}
