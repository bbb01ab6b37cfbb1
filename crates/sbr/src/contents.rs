//! What a device already holds, looked at before `create` or `erase`
//! overwrites it. Both commands use this module, and neither uses the
//! other's internals through it, so the dependency runs one way:
//! `create` -> `erase` -> `contents`.
//!
//! Like mkfs, `sbr create` refuses a device that holds anything but zeros,
//! the repeating pattern `sbr erase` writes, or a ring (finished, or left
//! half-made by an interrupted create), unless `--force`. Known formats are
//! named by their magic bytes at the offsets their specifications give (the
//! same places util-linux's blkid looks); anything else is "non-zero data
//! at sector N".

use shared_block_ring::format::{self, State};
use shared_block_ring::{AlignedBuf, BlockDevice, Error, IoOp, Side};

/// Whether sector 0 of `device` holds a ring's signature (format 1) or
/// magic (format 2).
pub fn holds_ring(device: &dyn BlockDevice) -> bool {
    let mut sector = AlignedBuf::zeroed(device.sector_size());
    device.sectors() > 0
        && device.read(0, &mut sector).is_ok()
        && (format::check_signature(&sector).is_ok() || format::v2::has_magic(&sector))
}

/// Whether sector 0 of `device` holds the format-2 magic.
pub fn holds_format_2(device: &dyn BlockDevice) -> bool {
    let mut sector = AlignedBuf::zeroed(device.sector_size());
    device.sectors() > 0 && device.read(0, &mut sector).is_ok() && format::v2::has_magic(&sector)
}

/// How much of the device is looked at: the first MiB (or all of it),
/// which covers every signature below.
pub const LOOK_BYTES: usize = 1 << 20;

/// What the start of a device holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Only zero bytes.
    Zeros,
    /// A pattern of up to [`MAX_PATTERN`] bytes repeated from byte 0, as
    /// `sbr erase --pattern` writes.
    Pattern,
    /// A ring's signature (format 1) or magic (format 2).
    Ring,
    /// The two state sectors of a new ring without its signature: a
    /// `create` that was interrupted.
    UnfinishedRing,
    /// A known format, named.
    Known(&'static str),
    /// Something else, first seen in this sector.
    Data { sector: u64 },
}

/// The longest erase pattern recognised.
pub const MAX_PATTERN: usize = 4096;

/// Magic bytes at fixed offsets, most specific first.
const SIGNATURES: &[(usize, &[u8], &str)] = &[
    (
        0,
        b"mirage shared-block-device ",
        "a shared block ring of another format version",
    ),
    (0, b"LUKS\xba\xbe", "a LUKS encrypted volume"),
    (
        0,
        b"SKUL\xba\xbe",
        "a LUKS2 encrypted volume (secondary header)",
    ),
    (0, b"XFSB", "an XFS filesystem"),
    (0, b"hsqs", "a squashfs image"),
    (3, b"NTFS    ", "an NTFS filesystem"),
    (82, b"FAT32   ", "a FAT32 filesystem"),
    (54, b"FAT12   ", "a FAT12 filesystem"),
    (54, b"FAT16   ", "a FAT16 filesystem"),
    (0x10040, b"_BHRfS_M", "a btrfs filesystem"),
    (32769, b"CD001", "an ISO 9660 image"),
    (4086, b"SWAPSPACE2", "a Linux swap area"),
    (4086, b"SWAP-SPACE", "a Linux swap area"),
    (65526, b"SWAPSPACE2", "a Linux swap area (64 KiB pages)"),
    (512, b"EFI PART", "a GPT partition table"),
    (
        4096,
        b"EFI PART",
        "a GPT partition table (4096-byte sectors)",
    ),
];

/// Names a known format in `head` (the first bytes of a device).
fn known(head: &[u8]) -> Option<&'static str> {
    let at = |off: usize, magic: &[u8]| head.get(off..off + magic.len()) == Some(magic);
    for &(off, magic, name) in SIGNATURES {
        if at(off, magic) {
            return Some(name);
        }
    }
    // LVM2: a label in one of the first four 512-byte sectors.
    if (0..4).any(|s| at(s * 512, b"LABELONE") && at(s * 512 + 24, b"LVM2 001")) {
        return Some("an LVM2 physical volume");
    }
    // ext2/3/4: the superblock at 1024, magic 0xEF53 at its byte 56, with
    // a sane block size (log2(size) - 10 at byte 24) against chance.
    if at(1024 + 56, &[0x53, 0xef])
        && head
            .get(1024 + 24..1024 + 28)
            .is_some_and(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) <= 6)
    {
        return Some("an ext2/3/4 filesystem");
    }
    // The MBR's boot signature (a FAT or NTFS boot sector has it too, and
    // was named above).
    if at(510, &[0x55, 0xaa]) {
        return Some("an MBR partition table (DOS boot sector)");
    }
    None
}

/// The smallest period of `data` up to [`MAX_PATTERN`], if it has one:
/// a pattern seen at least twice.
fn period(data: &[u8]) -> Option<usize> {
    (1..=MAX_PATTERN.min(data.len() / 2)).find(|&p| data[p..] == data[..data.len() - p])
}

/// Looks at the first [`LOOK_BYTES`] of `device`.
///
/// # Errors
/// A device read error.
pub fn look(device: &dyn BlockDevice) -> Result<Found, Error> {
    let ss = device.sector_size();
    let sectors = (LOOK_BYTES / ss).max(1).min(device.sectors() as usize);
    let mut head = AlignedBuf::zeroed(sectors * ss);
    device.read(0, &mut head).map_err(|e| Error::Io {
        op: IoOp::Read,
        sector: 0,
        source: e,
    })?;
    if format::check_signature(&head[..ss]).is_ok() || format::v2::has_magic(&head[..ss]) {
        return Ok(Found::Ring);
    }
    if let Some(name) = known(&head) {
        return Ok(Found::Known(name));
    }
    if head.iter().all(|&b| b == 0) {
        return Ok(Found::Zeros);
    }
    if sectors >= 3
        && is_new_state(Side::Producer, &head[ss..2 * ss])
        && is_new_state(Side::Consumer, &head[2 * ss..3 * ss])
    {
        return Ok(Found::UnfinishedRing);
    }
    if period(&head).is_some() {
        return Ok(Found::Pattern);
    }
    let first = head.iter().position(|&b| b != 0).unwrap_or(0);
    Ok(Found::Data {
        sector: (first / ss) as u64,
    })
}

/// Whether `sector` is exactly what `create` (of either format) writes for
/// `side` before the signature.
fn is_new_state(side: Side, sector: &[u8]) -> bool {
    // Format 2: an empty state with a checksum, carrying the ring id the
    // header was to have.
    use shared_block_ring::layout::v2::{ID_LEN, STATE_RING_ID_OFFSET};
    let mut id = [0u8; ID_LEN];
    id.copy_from_slice(&sector[STATE_RING_ID_OFFSET..STATE_RING_ID_OFFSET + ID_LEN]);
    let rid = format::v2::RingId(id);
    if format::v2::decode_state(side, &rid, sector) == Ok(format::v2::State::EMPTY) {
        return true;
    }
    let mut fresh = vec![0u8; sector.len()];
    format::encode_state(
        side,
        State {
            position: 0,
            flag: false,
        },
        None,
        &mut fresh,
    );
    fresh == sector
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_block_ring::{create, MemDevice};

    fn found(setup: impl FnOnce(&mut [u8])) -> Found {
        let d = MemDevice::new(512, 4096);
        d.with_bytes_mut(setup);
        look(&d).unwrap()
    }

    #[test]
    fn known_signatures_are_named() {
        type Setup = Box<dyn Fn(&mut [u8])>;
        let cases: Vec<(&str, Setup)> = vec![
            (
                "an ext2/3/4 filesystem",
                Box::new(|b| {
                    b[1080..1082].copy_from_slice(&[0x53, 0xef]);
                    b[1024 + 24] = 2;
                }),
            ),
            (
                "an XFS filesystem",
                Box::new(|b| b[..4].copy_from_slice(b"XFSB")),
            ),
            (
                "a btrfs filesystem",
                Box::new(|b| b[0x10040..0x10048].copy_from_slice(b"_BHRfS_M")),
            ),
            (
                "a GPT partition table",
                Box::new(|b| {
                    b[510..512].copy_from_slice(&[0x55, 0xaa]);
                    b[512..520].copy_from_slice(b"EFI PART");
                }),
            ),
            (
                "an MBR partition table (DOS boot sector)",
                Box::new(|b| b[510..512].copy_from_slice(&[0x55, 0xaa])),
            ),
            (
                "a LUKS encrypted volume",
                Box::new(|b| b[..6].copy_from_slice(b"LUKS\xba\xbe")),
            ),
            (
                "an LVM2 physical volume",
                Box::new(|b| {
                    b[512..520].copy_from_slice(b"LABELONE");
                    b[536..544].copy_from_slice(b"LVM2 001");
                }),
            ),
            (
                "a Linux swap area",
                Box::new(|b| b[4086..4096].copy_from_slice(b"SWAPSPACE2")),
            ),
            (
                "a FAT32 filesystem",
                Box::new(|b| {
                    b[82..90].copy_from_slice(b"FAT32   ");
                    b[510..512].copy_from_slice(&[0x55, 0xaa]);
                }),
            ),
            (
                "an NTFS filesystem",
                Box::new(|b| b[3..11].copy_from_slice(b"NTFS    ")),
            ),
            (
                "an ISO 9660 image",
                Box::new(|b| b[32769..32774].copy_from_slice(b"CD001")),
            ),
            (
                "a shared block ring of another format version",
                Box::new(|b| b[..30].copy_from_slice(b"mirage shared-block-device 2.0")),
            ),
        ];
        for (name, setup) in cases {
            assert_eq!(found(setup), Found::Known(name), "{name}");
        }
    }

    #[test]
    fn zeros_patterns_rings_and_other_data() {
        assert_eq!(found(|_| {}), Found::Zeros);
        assert_eq!(
            found(|b| b
                .iter_mut()
                .enumerate()
                .for_each(|(i, x)| *x = b"ab"[i % 2])),
            Found::Pattern
        );
        assert_eq!(found(|b| b[5000] = 1), Found::Data { sector: 9 });
        // The ext magic alone, with a nonsense block size, is just data.
        assert_eq!(
            found(|b| {
                b[1080..1082].copy_from_slice(&[0x53, 0xef]);
                b[1024 + 24] = 99;
            }),
            Found::Data { sector: 2 }
        );
        let d = MemDevice::new(512, 64);
        create(&d).unwrap();
        assert_eq!(look(&d).unwrap(), Found::Ring);
        // A create interrupted before the signature.
        d.with_bytes_mut(|b| b[..512].fill(0));
        assert_eq!(look(&d).unwrap(), Found::UnfinishedRing);
        // The same in format 2.
        let d = MemDevice::new(512, 64);
        shared_block_ring::ring2::create(&d, shared_block_ring::ring2::DEFAULT_LEASE).unwrap();
        assert_eq!(look(&d).unwrap(), Found::Ring);
        d.with_bytes_mut(|b| b[..512].fill(0));
        assert_eq!(look(&d).unwrap(), Found::UnfinishedRing);
        // Devices smaller than what is looked at.
        let small = MemDevice::new(512, 4);
        small.with_bytes_mut(|b| b[700] = 3);
        assert_eq!(look(&small).unwrap(), Found::Data { sector: 1 });
    }
}
