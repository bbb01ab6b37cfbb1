//! Sector 0: the self-describing header, and detection of what a device
//! holds.

use std::time::Duration;

use super::fields::{block, check_block_checksum, encode_block, get_id, get_u32, get_u64};
use super::ids::RingId;
use crate::error::{Corruption, Error, SignatureProblem};
use crate::format::Geometry;
use crate::layout::{self, v2 as l};

/// The header of a format-2 ring (sector 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// The sector size the ring was created with.
    pub sector_size: u32,
    /// The device size in sectors at creation.
    pub sectors: u64,
    /// The ring's id.
    pub ring_id: RingId,
    /// Creation time: Unix time in nanoseconds.
    pub created: u64,
    /// The owner lease, in milliseconds (at least 1).
    pub lease_ms: u32,
    /// Feature flags: always [`KNOWN_FLAGS`](l::KNOWN_FLAGS) once decoded.
    pub flags: u32,
}

impl Header {
    /// The header of a new ring on `geometry`.
    ///
    /// # Errors
    /// [`Error::BadLease`] unless `lease` is from 1 ms to `u32::MAX` ms.
    pub fn new(
        geometry: &Geometry,
        ring_id: RingId,
        created: u64,
        lease: Duration,
    ) -> Result<Header, Error> {
        let millis = lease.as_millis();
        let lease_ms = match u32::try_from(millis) {
            Ok(ms) if ms > 0 => ms,
            _ => return Err(Error::BadLease { millis }),
        };
        Ok(Header {
            // Geometry guarantees at most 64 KiB.
            sector_size: geometry.sector_size() as u32,
            sectors: geometry.sectors(),
            ring_id,
            created,
            lease_ms,
            flags: l::KNOWN_FLAGS,
        })
    }

    /// The owner lease.
    pub fn lease(&self) -> Duration {
        Duration::from_millis(u64::from(self.lease_ms))
    }

    /// Checks that the ring fits a device opened with `sector_size`-byte
    /// sectors and `sectors` sectors.
    ///
    /// # Errors
    /// [`Error::WrongSectorSize`] (checked first: with the wrong sector
    /// size the sector count is wrong too), then [`Error::WrongDeviceSize`].
    pub fn check_device(&self, sector_size: usize, sectors: u64) -> Result<(), Error> {
        if self.sector_size as usize != sector_size {
            return Err(Error::WrongSectorSize {
                ring: self.sector_size,
                device: sector_size,
            });
        }
        if self.sectors != sectors {
            return Err(Error::WrongDeviceSize {
                ring: self.sectors,
                device: sectors,
                sector_size,
            });
        }
        Ok(())
    }

    /// The ring's geometry, as recorded.
    ///
    /// # Errors
    /// As [`Geometry::new`]; never for a decoded header, whose fields were
    /// checked.
    pub fn geometry(&self) -> Result<Geometry, Error> {
        Geometry::new(self.sector_size as usize, self.sectors)
    }
}

/// Writes the header sector: the fields, zeroes, and the CRC32C of bytes
/// `0..508` at byte 508. Bytes past 512 of a larger sector are zero.
pub fn encode_header(header: &Header, sector: &mut [u8]) {
    encode_block(sector, |b| {
        b[..l::MAGIC_LEN].copy_from_slice(l::MAGIC);
        b[l::VERSION_OFFSET..][..4].copy_from_slice(&l::VERSION.to_le_bytes());
        b[l::SECTOR_SIZE_OFFSET..][..4].copy_from_slice(&header.sector_size.to_le_bytes());
        b[l::DEVICE_SECTORS_OFFSET..][..8].copy_from_slice(&header.sectors.to_le_bytes());
        b[l::RING_ID_OFFSET..][..l::ID_LEN].copy_from_slice(&header.ring_id.0);
        b[l::CREATED_OFFSET..][..8].copy_from_slice(&header.created.to_le_bytes());
        b[l::LEASE_OFFSET..][..4].copy_from_slice(&header.lease_ms.to_le_bytes());
        b[l::FLAGS_OFFSET..][..4].copy_from_slice(&header.flags.to_le_bytes());
    });
}

/// True when sector 0 starts with the format-2 magic.
pub fn has_magic(sector: &[u8]) -> bool {
    sector.len() >= l::MAGIC_LEN && sector[..l::MAGIC_LEN] == l::MAGIC[..]
}

/// Decodes a header sector. The checks run in this order, so that a
/// damaged header is reported as damaged, not as a newer version: magic,
/// checksum, version, flags, then the fields (sector size, device size,
/// lease).
///
/// # Errors
/// [`Error::NotInitialised`] without the magic;
/// [`Corruption::BadChecksum`] (sector 0, byte 508);
/// [`Error::UnsupportedFormat`] for another version or unknown flags;
/// [`Corruption::BadField`] for an impossible sector size, device size or
/// a zero lease.
pub fn decode_header(sector: &[u8]) -> Result<Header, Error> {
    if !has_magic(sector) {
        return Err(Error::NotInitialised(not_a_ring(sector)));
    }
    let b = block(sector);
    check_block_checksum(&b, layout::SIGNATURE_SECTOR)?;
    let version = get_u32(&b, l::VERSION_OFFSET);
    let flags = get_u32(&b, l::FLAGS_OFFSET);
    if version != l::VERSION || flags & !l::KNOWN_FLAGS != 0 {
        return Err(Error::UnsupportedFormat { version, flags });
    }
    let header = Header {
        sector_size: get_u32(&b, l::SECTOR_SIZE_OFFSET),
        sectors: get_u64(&b, l::DEVICE_SECTORS_OFFSET),
        ring_id: RingId(get_id(&b, l::RING_ID_OFFSET)),
        created: get_u64(&b, l::CREATED_OFFSET),
        lease_ms: get_u32(&b, l::LEASE_OFFSET),
        flags,
    };
    let field = |byte, field, found: u64, expected: String| {
        Error::Corrupt(Corruption::BadField {
            sector: layout::SIGNATURE_SECTOR,
            byte,
            field,
            found,
            expected,
        })
    };
    if let Err(e) = header.geometry() {
        return Err(match e {
            Error::TooSmall { .. } => field(
                l::DEVICE_SECTORS_OFFSET,
                "device size in sectors",
                header.sectors,
                format!("at least {}", layout::MIN_SECTORS),
            ),
            _ => field(
                l::SECTOR_SIZE_OFFSET,
                "sector size",
                u64::from(header.sector_size),
                format!(
                    "a power of two from {} to {} whose device size fits in a u64",
                    layout::MIN_SECTOR_SIZE,
                    layout::MAX_SECTOR_SIZE
                ),
            ),
        });
    }
    if header.lease_ms == 0 {
        return Err(field(
            l::LEASE_OFFSET,
            "lease in milliseconds",
            0,
            "at least 1".into(),
        ));
    }
    Ok(header)
}

/// What sector 0 of a device holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detected {
    /// Format 1's signature (the OCaml library's format).
    Format1,
    /// A valid format-2 header.
    Format2(Header),
    /// No ring: blank (all zero) or something else.
    NotARing(SignatureProblem),
}

/// Sector 0 without either format's mark: blank when the bytes where a
/// mark would be are zero, else foreign (showing the first 32 bytes).
fn not_a_ring(sector: &[u8]) -> SignatureProblem {
    let found = &sector[..sector.len().min(l::MAGIC_LEN)];
    if found.iter().all(|&b| b == 0) {
        SignatureProblem::Blank
    } else {
        SignatureProblem::Foreign {
            found: found.to_vec(),
        }
    }
}

/// Detects the format of a ring from its sector 0 and, for format 2,
/// checks the header against the device (`geometry`: the device's sector
/// size and sector count as opened).
///
/// # Errors
/// For a sector 0 with the format-2 magic: as [`decode_header`], then as
/// [`Header::check_device`]. Format 1 and a missing ring are not errors
/// here.
pub fn detect(sector: &[u8], geometry: &Geometry) -> Result<Detected, Error> {
    if crate::format::check_signature(sector).is_ok() {
        return Ok(Detected::Format1);
    }
    if !has_magic(sector) {
        return Ok(Detected::NotARing(not_a_ring(sector)));
    }
    let header = decode_header(sector)?;
    header.check_device(geometry.sector_size(), geometry.sectors())?;
    Ok(Detected::Format2(header))
}
