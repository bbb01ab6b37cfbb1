//! Little-endian fields of a 512-byte block, its checksum, and the
//! zero-padded view that keeps decoders in bounds.

use crate::error::Corruption;
use crate::layout::v2 as l;

/// The first 512 bytes of `sector`, zero padded when it is shorter (a
/// library bug, never a device's: sectors are at least 512 bytes), so
/// decoders never index out of bounds; a padded block fails its checksum.
pub(super) fn block(sector: &[u8]) -> [u8; l::HEADER_LEN] {
    let mut b = [0u8; l::HEADER_LEN];
    let n = sector.len().min(l::HEADER_LEN);
    b[..n].copy_from_slice(&sector[..n]);
    b
}

pub(super) fn get_u32(b: &[u8; l::HEADER_LEN], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

pub(super) fn get_u64(b: &[u8; l::HEADER_LEN], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

pub(super) fn get_id(b: &[u8; l::HEADER_LEN], at: usize) -> [u8; l::ID_LEN] {
    let mut x = [0u8; l::ID_LEN];
    x.copy_from_slice(&b[at..at + l::ID_LEN]);
    x
}

/// Checks the CRC32C at [`CHECKSUM_OFFSET`](l::CHECKSUM_OFFSET).
pub(super) fn check_block_checksum(b: &[u8; l::HEADER_LEN], sector: u64) -> Result<(), Corruption> {
    let expected = crc32c::crc32c(&b[..l::CHECKSUM_OFFSET]);
    let found = get_u32(b, l::CHECKSUM_OFFSET);
    if expected == found {
        Ok(())
    } else {
        Err(Corruption::BadChecksum {
            sector,
            byte: l::CHECKSUM_OFFSET,
            expected,
            found,
        })
    }
}

/// Zeroes `sector`, lets `fill` write the first 512 bytes, then stores
/// their checksum. Bytes past 512 of a larger sector stay zero.
pub(super) fn encode_block(sector: &mut [u8], fill: impl FnOnce(&mut [u8])) {
    sector.fill(0);
    let n = sector.len().min(l::HEADER_LEN);
    let b = &mut sector[..n];
    if n < l::HEADER_LEN {
        // Not a sector of a valid geometry; leave it zero (it will fail
        // its checksum) rather than panic.
        return;
    }
    fill(b);
    let crc = crc32c::crc32c(&b[..l::CHECKSUM_OFFSET]);
    b[l::CHECKSUM_OFFSET..].copy_from_slice(&crc.to_le_bytes());
}
