//! How items lie in the stream, in either format: format 1's items (a
//! 4-byte length, the payload, padding to 4) or format 2's records (a
//! 24-byte header with length, CRC32C, position and epoch, the payload,
//! padding to 8). The producer stages them with [`Items`]; the consumer
//! checks them with it before delivering anything.

use crate::error::{Corruption, Error, Result};
use crate::format::v2::{self as codec, Published, RingId};
use crate::format::{self, Geometry};
use crate::layout::{self, v2 as l};
use crate::position::{check_alignment, Position};

/// The item layout of an attached ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Items {
    /// Format 1.
    V1,
    /// Format 2: records of ring `ring_id`; a producer writes `epoch`.
    V2 { ring_id: RingId, epoch: u64 },
}

impl Items {
    /// Bytes of header before the payload.
    pub(crate) fn header_len(self) -> usize {
        match self {
            Items::V1 => layout::ITEM_HEADER_LEN as usize,
            Items::V2 { .. } => l::RECORD_HEADER_LEN as usize,
        }
    }

    /// Items start at multiples of this.
    pub(crate) fn align(self) -> u64 {
        match self {
            Items::V1 => layout::ITEM_ALIGN,
            Items::V2 { .. } => l::RECORD_ALIGN,
        }
    }

    /// The largest stream position.
    pub(crate) fn max_position(self) -> u64 {
        match self {
            Items::V1 => Position::MAX.offset(),
            Items::V2 { .. } => l::MAX_POSITION,
        }
    }

    /// Refuses a position that is not an item boundary.
    pub(crate) fn check_alignment(self, position: u64) -> Result<()> {
        check_alignment(position, self.align())
    }

    /// The stream bytes an item of `payload_len` bytes takes.
    ///
    /// # Errors
    /// [`Error::TooLarge`] when it can never fit `geometry`.
    pub(crate) fn stream_len(self, geometry: &Geometry, payload_len: usize) -> Result<u64> {
        match self {
            Items::V1 => geometry.item_len_fits(payload_len),
            Items::V2 { .. } => codec::record_len_fits(geometry, payload_len),
        }
    }

    /// Writes the header of the item of `payload` at stream position
    /// `position` into `out` ([`header_len`](Self::header_len) bytes).
    ///
    /// # Errors
    /// [`Error::TooLarge`] for a payload longer than `u32::MAX` bytes
    /// (callers check [`stream_len`](Self::stream_len) first).
    pub(crate) fn write_header(self, position: u64, payload: &[u8], out: &mut [u8]) -> Result<()> {
        match self {
            Items::V1 => {
                let len = u32::try_from(payload.len()).map_err(|_| Error::TooLarge {
                    needed: payload.len() as u64,
                    capacity: u64::from(u32::MAX),
                })?;
                out.copy_from_slice(&format::encode_item_header(len));
            }
            Items::V2 { ring_id, epoch } => {
                out.copy_from_slice(&codec::encode_record_header(
                    &ring_id, position, epoch, payload,
                )?);
            }
        }
        Ok(())
    }

    /// Checks the header of the item at `at`, given the stream bytes from
    /// `at` on (at least up to `min(at + header_len, published.end)`),
    /// against what the producer sector publishes; returns the payload
    /// length and the next position. Nothing is sized by the length before
    /// it has been checked against the published end.
    ///
    /// # Errors
    /// [`Corruption::ItemPastProducer`] (format 1) or
    /// [`Corruption::BadRecord`] (format 2).
    pub(crate) fn check_header(
        self,
        geometry: &Geometry,
        at: u64,
        bytes: &[u8],
        published: &Published,
    ) -> std::result::Result<(usize, u64), Corruption> {
        match self {
            Items::V1 => {
                let mut header = [0u8; layout::ITEM_HEADER_LEN as usize];
                header.copy_from_slice(&bytes[..layout::ITEM_HEADER_LEN as usize]);
                format::check_item(geometry, at, header, published.end)
            }
            Items::V2 { .. } => {
                let header = codec::header_from(at, bytes, published.end);
                let span = codec::check_record_header(geometry, at, &header, published.end)?;
                Ok((span.len as usize, span.next))
            }
        }
    }

    /// Format 2: checks the checksum and the epoch of the record at `at`,
    /// whose header and payload are `bytes` (checked by
    /// [`check_header`](Self::check_header) first). Format 1 has nothing to
    /// check.
    ///
    /// # Errors
    /// [`Corruption::BadRecord`].
    pub(crate) fn check_payload(
        self,
        geometry: &Geometry,
        at: u64,
        bytes: &[u8],
        published: &Published,
    ) -> std::result::Result<(), Corruption> {
        let Items::V2 { ring_id, .. } = self else {
            return Ok(());
        };
        let record = Published {
            end: at + bytes.len() as u64,
            ..*published
        };
        codec::check_record(geometry, &ring_id, at, bytes, &record).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_layouts_stage_and_check_the_same_way() {
        let g = Geometry::new(512, 16).unwrap();
        let v2 = Items::V2 {
            ring_id: RingId([7; 16]),
            epoch: 3,
        };
        for items in [Items::V1, v2] {
            let payload = b"payload";
            let at = 64;
            let n = items.stream_len(&g, payload.len()).unwrap() as usize;
            let mut bytes = vec![0u8; n];
            let hl = items.header_len();
            items.write_header(at, payload, &mut bytes[..hl]).unwrap();
            bytes[hl..hl + payload.len()].copy_from_slice(payload);
            let published = Published {
                end: at + n as u64,
                epoch: 3,
                current_from: 0,
            };
            let (len, next) = items.check_header(&g, at, &bytes, &published).unwrap();
            assert_eq!((len, next), (payload.len(), at + n as u64));
            items
                .check_payload(&g, at, &bytes[..hl + len], &published)
                .unwrap();
            assert!(items.check_alignment(at).is_ok());
            assert!(items.check_alignment(at + 4).is_err() == (items != Items::V1));
        }
        // A record of another epoch after the durable position is refused.
        let mut bytes = [0u8; 32];
        let old = Items::V2 {
            ring_id: RingId([7; 16]),
            epoch: 2,
        };
        old.write_header(64, b"x", &mut bytes[..24]).unwrap();
        bytes[24] = b'x';
        let published = Published {
            end: 96,
            epoch: 3,
            current_from: 0,
        };
        assert!(v2.check_payload(&g, 64, &bytes[..25], &published).is_err());
        assert_eq!(v2.max_position() % v2.align(), 0);
        assert_eq!(Items::V1.max_position(), Position::MAX.offset());
    }
}
