//! Block size negotiation: the server's constraints
//! (`NBD_INFO_BLOCK_SIZE`), checked, and the sector size and request size
//! the device derives from them.

use std::io;

use super::super::choose_sector_size;
use super::wire::bad_data;
use crate::error::Error;
use crate::layout;

/// The largest request sent when the server states no maximum payload:
/// the protocol's advice for portable clients (32 MiB).
pub(super) const DEFAULT_MAX_PAYLOAD: u32 = 32 << 20;

/// The server's block size constraints (`NBD_INFO_BLOCK_SIZE`), or the
/// protocol's defaults when it sent none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSizes {
    /// Requests must be aligned to and a multiple of this (a power of two,
    /// 1 to 64 KiB).
    pub minimum: u32,
    /// Requests smaller than this may be slow (read-modify-write).
    pub preferred: u32,
    /// The largest READ or WRITE payload the server accepts.
    pub maximum: u32,
    /// True when the server sent these; false for the defaults.
    pub advertised: bool,
}

impl BlockSizes {
    pub(super) const DEFAULT: BlockSizes = BlockSizes {
        minimum: 1,
        preferred: 4096,
        maximum: DEFAULT_MAX_PAYLOAD,
        advertised: false,
    };
}

/// Checks the constraints the client relies on against the rules of
/// doc/proto.md ("Block size constraints"), so that nothing later divides
/// by zero or sends a misaligned request.
pub(super) fn check_block_sizes(
    minimum: u32,
    preferred: u32,
    maximum: u32,
) -> io::Result<BlockSizes> {
    if !minimum.is_power_of_two() || minimum > 64 * 1024 {
        return Err(bad_data(format!(
            "minimum block size {minimum} is not a power of two from 1 to 65536"
        )));
    }
    // The preferred size is only reported, so a quirky one is not refused.
    if maximum < minimum || (maximum != u32::MAX && maximum % minimum != 0) {
        return Err(bad_data(format!(
            "maximum payload {maximum} is not a multiple of the minimum block size {minimum}"
        )));
    }
    Ok(BlockSizes {
        minimum,
        preferred,
        maximum,
        advertised: true,
    })
}

/// The sector size for an export with these constraints: `requested`, which
/// must be a multiple of the minimum block size, or else the minimum block
/// size, but never less than the smallest sector the format allows.
pub(super) fn sector_size(sizes: &BlockSizes, requested: Option<usize>) -> Result<usize, Error> {
    let minimum = sizes.minimum as usize;
    choose_sector_size(requested, minimum, minimum.max(layout::MIN_SECTOR_SIZE))
}

/// The most bytes one READ or WRITE carries: the server's maximum payload
/// (at most [`DEFAULT_MAX_PAYLOAD`]) rounded down to whole sectors.
///
/// # Errors
/// [`io::ErrorKind::InvalidData`] when that is less than one sector.
pub(super) fn max_request(sizes: &BlockSizes, sector_size: usize) -> io::Result<usize> {
    let max_payload = sizes.maximum.min(DEFAULT_MAX_PAYLOAD) as usize;
    let max_request = max_payload / sector_size * sector_size;
    if max_request == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the server accepts requests of at most {max_payload} bytes, less than one \
                 {sector_size}-byte sector"
            ),
        ));
    }
    Ok(max_request)
}

/// Reads and writes larger than this are cut into requests of this size,
/// which are in flight together: the server then writes one piece to its
/// disk (or reads the next from it) while another travels, instead of
/// receiving a whole large write before it starts writing. Measured with
/// qemu-nbd on a 2-core machine (the `nbd_ops` example of the system
/// tests): 256 KiB and 512 KiB did about equally well, better than 64 KiB
/// (more requests) and than 1 MiB or more (less overlap).
pub(super) const PIPELINE_CHUNK: usize = 512 << 10;

/// The size of the pieces a large read or write is cut into: the
/// [`PIPELINE_CHUNK`], or the largest request the server takes, whichever
/// is smaller, in whole sectors.
pub(super) fn pipeline_chunk(max_request: usize, sector_size: usize) -> usize {
    // Sectors are powers of two of at most 64 KiB: the chunk is whole
    // sectors, as the maximum request is.
    debug_assert_eq!(PIPELINE_CHUNK % sector_size, 0);
    max_request.min(PIPELINE_CHUNK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::nbd::fake::*;
    use crate::device::nbd::wire::*;
    use crate::device::nbd::NbdDevice;
    use crate::device::{BlockDevice, FileOptions};
    use crate::error::Error;

    #[test]
    fn the_request_size_is_the_maximum_payload_in_whole_sectors() {
        let sizes = |minimum, maximum| BlockSizes {
            minimum,
            preferred: 4096,
            maximum,
            advertised: true,
        };
        assert_eq!(max_request(&sizes(512, 1 << 20), 512).unwrap(), 1 << 20);
        assert_eq!(max_request(&sizes(1, 5000), 512).unwrap(), 4608);
        // No stated maximum, or a huge one: the protocol's portable 32 MiB.
        assert_eq!(max_request(&BlockSizes::DEFAULT, 4096).unwrap(), 32 << 20);
        assert_eq!(max_request(&sizes(1, u32::MAX), 4096).unwrap(), 32 << 20);
        let e = max_request(&sizes(1, 4095), 4096).unwrap_err();
        assert!(e.to_string().contains("at most 4095 bytes"), "{e}");
        assert_eq!(sector_size(&BlockSizes::DEFAULT, None).unwrap(), 512);
        assert_eq!(sector_size(&sizes(4096, 1 << 20), None).unwrap(), 4096);
        assert_eq!(sector_size(&sizes(512, 1 << 20), Some(2048)).unwrap(), 2048);
        assert_eq!(pipeline_chunk(32 << 20, 512), PIPELINE_CHUNK);
        assert_eq!(pipeline_chunk(4096, 512), 4096);
        assert!(matches!(
            sector_size(&sizes(4096, 1 << 20), Some(512)),
            Err(Error::SectorSizeMismatch { .. })
        ));
    }

    #[test]
    fn opt_go_block_sizes_choose_the_sector_size() {
        for (sizes, sector, advertised) in [
            (None, 512, false),
            (Some([1, 4096, 32 << 20]), 512, true),
            (Some([512, 4096, 1 << 20]), 512, true),
            (Some([4096, 4096, u32::MAX]), 4096, true),
        ] {
            let fake = Fake::start(Script {
                go: Go::Ok(sizes),
                ..Script::default()
            });
            let d = NbdDevice::open(&fake.uri).unwrap();
            assert_eq!(d.sector_size(), sector);
            assert_eq!(d.sectors(), 64 * 1024 / sector as u64);
            assert_eq!(d.export_size(), 64 * 1024);
            assert_eq!(d.block_sizes().advertised, advertised);
            assert!(d.supports_fua() && d.supports_flush() && !d.is_read_only());
            drop(d);
            let seen = fake.finish();
            assert_eq!(seen.options, [OPT_GO]);
            assert_eq!(seen.export.as_deref(), Some("ring"));
            assert_eq!(requests(&seen, CMD_DISC).len(), 1, "a soft disconnect");
        }
    }

    #[test]
    fn a_sector_size_below_the_minimum_block_size_is_refused() {
        let fake = Fake::start(Script {
            go: Go::Ok(Some([4096, 4096, 1 << 20])),
            ..Script::default()
        });
        let e = NbdDevice::open_with(&fake.uri, &FileOptions::new().sector_size(512))
            .err()
            .unwrap();
        assert!(
            matches!(
                e,
                Error::SectorSizeMismatch {
                    requested: 512,
                    device: 4096
                }
            ),
            "{e}"
        );
        let fake = Fake::start(Script::default());
        let d = NbdDevice::open_with(&fake.uri, &FileOptions::new().sector_size(2048)).unwrap();
        assert_eq!((d.sector_size(), d.sectors()), (2048, 32));
        let fake = Fake::start(Script::default());
        let e = NbdDevice::open_with(&fake.uri, &FileOptions::new().sector_size(768))
            .err()
            .unwrap();
        assert!(
            matches!(e, Error::BadSectorSize { sector_size: 768 }),
            "{e}"
        );
    }

    #[test]
    fn invalid_block_sizes_are_a_protocol_error() {
        for sizes in [
            [3, 4096, 4096],
            [1 << 17, 1 << 17, 1 << 20],
            [4096, 4096, 6000],
            [4096, 4096, 512],
        ] {
            let fake = Fake::start(Script {
                go: Go::Ok(Some(sizes)),
                ..Script::default()
            });
            let e = NbdDevice::open(&fake.uri).err().unwrap();
            assert!(matches!(e, Error::Open { .. }), "{e}");
            assert!(e.to_string().contains("protocol error"), "{sizes:?}: {e}");
        }
    }

    #[test]
    fn requests_are_split_at_the_maximum_payload() {
        let fake = Fake::start(Script {
            go: Go::Ok(Some([512, 4096, 4096])),
            ..Script::default()
        });
        let d = NbdDevice::open(&fake.uri).unwrap();
        let data: Vec<u8> = (0..16 * 1024 + 512).map(|i| (i % 253) as u8).collect();
        d.write_durable(8, &data).unwrap();
        let mut back = vec![0u8; data.len()];
        d.read(8, &mut back).unwrap();
        assert!(back == data);
        drop(d);
        let seen = fake.finish();
        let lens = |cmd| {
            requests(&seen, cmd)
                .iter()
                .map(|r| (r.offset, r.len))
                .collect::<Vec<_>>()
        };
        let expected = vec![
            (4096, 4096),
            (8192, 4096),
            (12288, 4096),
            (16384, 4096),
            (20480, 512),
        ];
        assert_eq!(lens(CMD_WRITE), expected);
        assert_eq!(lens(CMD_READ), expected);
        assert!(requests(&seen, CMD_WRITE)
            .iter()
            .all(|r| r.flags == CMD_FLAG_FUA));
    }

    #[test]
    fn a_maximum_payload_below_one_sector_is_refused() {
        let fake = Fake::start(Script {
            go: Go::Ok(Some([256, 256, 256])),
            ..Script::default()
        });
        let e = NbdDevice::open(&fake.uri).err().unwrap();
        assert!(e.to_string().contains("at most 256 bytes"), "{e}");
    }
}
