//! Format 2 on a device: creating a ring, reading its head sectors, and
//! the recovery scan, over any [`BlockDevice`]. The decisions themselves
//! are pure functions in [`crate::format::v2`]; this module only does the
//! I/O around them.

use std::time::Duration;

use crate::device::{AlignedBuf, BlockDevice};
use crate::error::{Error, IoOp, Result, Side};
use crate::format::v2::{
    self as codec,
    scan::{Recovery, Scan},
    Detected, Header, RingId, State,
};
use crate::format::Geometry;
use crate::layout::{self, v2 as l};
use crate::ring::Created;

/// The lease a ring gets unless told otherwise (30 s).
pub const DEFAULT_LEASE: Duration = Duration::from_millis(l::DEFAULT_LEASE_MS as u64);

/// Initialises a format-2 ring on `device` with owner lease `lease`, or
/// does nothing if it already holds a valid format-2 ring of this geometry.
///
/// As format 1's [`create`](crate::create): the state sectors are written
/// and flushed before the header, which is written durably last, so a
/// crash part-way leaves sector 0 as it was (blank or foreign), and a later
/// `create` starts again with a new ring id. Records of a previous ring on
/// the same device carry its ring id in their checksums and are never
/// taken for this ring's.
///
/// Unlike format 1, it refuses to overwrite anything that is a ring: a
/// format-1 ring, and a sector 0 with the format-2 magic that does not
/// decode (damaged, newer, or made for another sector size or device
/// size), which may be a ring worth repairing. Erase the device first
/// ([`crate::erase`]) to reuse it.
///
/// # Errors
/// [`Error::BadLease`] (checked before any I/O), [`Error::TooSmall`],
/// [`Error::BadSectorSize`], [`Error::WrongFormat`] for a format-1 ring,
/// the errors of [`codec::detect`] for a format-2 header that is not
/// sound, [`Error::ReadOnly`], [`Error::NoRandomness`], or a device I/O
/// error.
pub fn create<D: BlockDevice + ?Sized>(device: &D, lease: Duration) -> Result<Created> {
    let geometry = Geometry::new(device.sector_size(), device.sectors())?;
    // Validates the lease before anything is read or written.
    Header::new(&geometry, RingId::default(), 0, lease)?;
    let mut sector = AlignedBuf::zeroed(geometry.sector_size());
    read(device, layout::SIGNATURE_SECTOR, &mut sector)?;
    match codec::detect(&sector, &geometry)? {
        Detected::Format2(_) => return Ok(Created::AlreadyInitialised),
        Detected::Format1 => {
            return Err(Error::WrongFormat {
                found: 1,
                expected: 2,
            })
        }
        Detected::NotARing(_) => {}
    }
    if device.is_read_only() {
        return Err(Error::ReadOnly);
    }
    let header = Header::new(
        &geometry,
        crate::host::new_ring_id()?,
        crate::host::now_ns(),
        lease,
    )?;
    for side in [Side::Producer, Side::Consumer] {
        codec::encode_state(side, &header.ring_id, &State::EMPTY, None, &mut sector);
        device
            .write(side.sector(), &sector)
            .map_err(|e| Error::io(IoOp::Write, side.sector(), e))?;
    }
    device
        .flush()
        .map_err(|e| Error::io(IoOp::Flush, layout::PRODUCER_SECTOR, e))?;
    codec::encode_header(&header, &mut sector);
    device
        .write_durable(layout::SIGNATURE_SECTOR, &sector)
        .map_err(|e| Error::io(IoOp::Write, layout::SIGNATURE_SECTOR, e))?;
    tracing::debug!(
        device = %device.describe(),
        capacity = geometry.capacity(),
        ring_id = %header.ring_id,
        "created format-2 ring"
    );
    Ok(Created::Created)
}

fn read<D: BlockDevice + ?Sized>(device: &D, sector: u64, buf: &mut [u8]) -> Result<()> {
    device
        .read(sector, buf)
        .map_err(|e| Error::io(IoOp::Read, sector, e))
}

/// Reads sectors 0, 1 and 2 in one read.
///
/// # Errors
/// [`Error::TooSmall`], [`Error::BadSectorSize`], or a device I/O error.
pub fn read_head<D: BlockDevice + ?Sized>(device: &D) -> Result<(Geometry, AlignedBuf)> {
    let geometry = Geometry::new(device.sector_size(), device.sectors())?;
    let mut head = AlignedBuf::zeroed(3 * geometry.sector_size());
    read(device, layout::SIGNATURE_SECTOR, &mut head)?;
    Ok((geometry, head))
}

/// The recovery scan of [`codec::scan::scan`] on a device: validates the
/// records of ring `ring_id` from `from` to `to`, which must carry the
/// producer epoch `epoch`.
///
/// # Errors
/// A device I/O error.
pub fn scan<D: BlockDevice + ?Sized>(
    device: &D,
    geometry: &Geometry,
    ring_id: &RingId,
    from: u64,
    to: u64,
    epoch: u64,
) -> Result<Scan> {
    codec::scan::scan(geometry, ring_id, from, to, epoch, |first, buf| {
        crate::ring::read_stream(device, geometry, first, buf)
    })
}

/// Attach's recovery on a device: reads the head sectors, checks them
/// (format, header against the device, states) and scans the records from
/// `max(C, durable)` to `P` (see [`Recovery`]). Reads only; what to do
/// about a pointer ahead of its records is the caller's.
///
/// # Errors
/// As [`codec::scan::recover`], or a device I/O error.
pub fn recover<D: BlockDevice + ?Sized>(device: &D) -> Result<Recovery> {
    let (geometry, head) = read_head(device)?;
    codec::scan::recover(&geometry, &head, |first, buf| {
        crate::ring::read_stream(device, &geometry, first, buf)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::FaultDevice;
    use crate::error::{Corruption, SignatureProblem};
    use crate::MemDevice;

    #[test]
    fn a_new_ring_is_empty_recoverable_and_created_once() {
        let d = MemDevice::new(512, 64);
        assert_eq!(create(&d, DEFAULT_LEASE).unwrap(), Created::Created);
        let r = recover(&d).unwrap();
        assert_eq!(r.producer, State::EMPTY);
        assert_eq!(r.consumer, State::EMPTY);
        assert!(r.scan.is_complete() && r.published_end() == 0);
        assert_eq!(r.header.lease(), DEFAULT_LEASE);
        assert_eq!((r.header.sector_size, r.header.sectors), (512, 64));
        assert!(!r.header.ring_id.is_zero());
        let before = d.to_vec();
        assert_eq!(
            create(&d, Duration::from_secs(1)).unwrap(),
            Created::AlreadyInitialised
        );
        assert_eq!(d.to_vec(), before);
        // Another device gets another ring id.
        let d2 = MemDevice::new(512, 64);
        create(&d2, DEFAULT_LEASE).unwrap();
        assert_ne!(recover(&d2).unwrap().header.ring_id, r.header.ring_id);
    }

    #[test]
    fn a_4k_ring_writes_zeroes_past_512_bytes() {
        let d = MemDevice::new(4096, 8);
        d.with_bytes_mut(|b| b.fill(0xff));
        // Foreign content is overwritten, as format 1 does.
        create(&d, DEFAULT_LEASE).unwrap();
        let bytes = d.to_vec();
        for s in 0..3 {
            assert!(bytes[s * 4096 + 512..(s + 1) * 4096]
                .iter()
                .all(|&b| b == 0));
        }
        assert!(recover(&d).unwrap().scan.is_complete());
    }

    #[test]
    fn create_refuses_other_rings_and_bad_leases() {
        let d = MemDevice::new(512, 64);
        crate::create(&d).unwrap();
        assert!(matches!(
            create(&d, DEFAULT_LEASE),
            Err(Error::WrongFormat {
                found: 1,
                expected: 2
            })
        ));
        let d = MemDevice::new(512, 64);
        assert!(matches!(
            create(&d, Duration::ZERO),
            Err(Error::BadLease { millis: 0 })
        ));
        assert!(d.to_vec().iter().all(|&b| b == 0), "nothing written");
        // A damaged format-2 header is left for repair, not overwritten.
        create(&d, DEFAULT_LEASE).unwrap();
        d.with_bytes_mut(|b| b[100] ^= 1);
        let before = d.to_vec();
        assert!(matches!(
            create(&d, DEFAULT_LEASE),
            Err(Error::Corrupt(Corruption::BadChecksum { sector: 0, .. }))
        ));
        assert_eq!(d.to_vec(), before);
        // So is a ring opened with another device size.
        let bigger = MemDevice::new(512, 128);
        let mut header = before[..512].to_vec();
        header[100] ^= 1; // undamaged again
        bigger.with_bytes_mut(|b| b[..512].copy_from_slice(&header));
        assert!(matches!(
            create(&bigger, DEFAULT_LEASE),
            Err(Error::WrongDeviceSize { .. })
        ));
    }

    #[test]
    fn format_1_create_refuses_a_format_2_ring_and_writes_nothing() {
        let d = MemDevice::new(512, 64);
        create(&d, DEFAULT_LEASE).unwrap();
        let before = d.to_vec();
        assert!(matches!(
            crate::create(&d),
            Err(Error::WrongFormat {
                found: 2,
                expected: 1
            })
        ));
        assert_eq!(d.to_vec(), before);
        // Even a damaged format-2 header (it may be worth repairing).
        d.with_bytes_mut(|b| b[100] ^= 1);
        assert!(matches!(
            crate::create(&d),
            Err(Error::WrongFormat { found: 2, .. })
        ));
    }

    #[test]
    fn the_format_1_library_sees_no_ring_on_a_format_2_device() {
        let d = MemDevice::new(512, 64);
        create(&d, DEFAULT_LEASE).unwrap();
        let mut s0 = vec![0u8; 512];
        d.read(0, &mut s0).unwrap();
        assert!(matches!(
            crate::format::check_signature(&s0),
            Err(SignatureProblem::Foreign { .. })
        ));
    }

    /// A crash at every crash point of create, with every subset of the
    /// unflushed writes kept: the device holds either no ring (and a second
    /// create makes a sound one) or a sound empty ring.
    #[test]
    fn a_crash_during_create_leaves_no_ring_or_a_sound_one() {
        let (mut states, mut rings) = (0, 0);
        for points in 1.. {
            let fault = FaultDevice::new(MemDevice::new(512, 16));
            fault.crash_after(points);
            let done = create(&fault, DEFAULT_LEASE).is_ok() && !fault.has_crashed();
            let Some(crash) = fault.crash_point() else {
                assert!(done);
                break;
            };
            let mut images = vec![crash.process_crash_image().to_vec()];
            images.extend(crash.power_cut_images(64, points));
            for image in images {
                states += 1;
                let d = MemDevice::from_bytes(512, image);
                match recover(&d) {
                    Ok(r) => {
                        rings += 1;
                        assert!(r.scan.is_complete() && r.producer == State::EMPTY);
                    }
                    Err(Error::NotInitialised(_)) => {
                        assert_eq!(create(&d, DEFAULT_LEASE).unwrap(), Created::Created);
                        assert!(recover(&d).unwrap().scan.is_complete());
                    }
                    Err(e) => panic!("crash point {points}: {e}"),
                }
            }
        }
        assert!(states >= 8 && rings >= 1, "{states} states, {rings} rings");
    }
}
