//! Records: header layout, checksum, and the checks made before a record is
//! delivered.

use super::ids::RingId;
use super::state::State;
use crate::error::{Corruption, Error, RecordProblem};
use crate::format::Geometry;
use crate::layout::v2 as l;

/// The bytes of a record header: length, CRC32C, position, epoch.
pub type RecordHeaderBytes = [u8; l::RECORD_HEADER_LEN as usize];

/// A record whose header passed [`check_record_header`]: where it is, how
/// long, and which producer epoch wrote it. Its payload is
/// `position + 24 .. position + 24 + len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordSpan {
    /// Stream position of the record header.
    pub position: u64,
    /// Payload length.
    pub len: u32,
    /// Stream position of the next record.
    pub next: u64,
    /// The epoch of the producer that wrote it.
    pub epoch: u64,
}

impl RecordSpan {
    /// Stream position of the first payload byte.
    pub fn payload_start(&self) -> u64 {
        self.position + l::RECORD_HEADER_LEN
    }
}

/// What the producer sector says about the records a reader may accept:
/// where the published ones end, and which producer epoch wrote them.
///
/// The epoch rule (FORMAT.md, "Records"): records from `current_from` on
/// (`max(C, durable)`) were written by the producer that wrote the sector,
/// so they carry exactly `epoch`; records before it were flushed earlier,
/// perhaps by an earlier producer, and carry at most `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Published {
    /// The published end: `P` (or `q`, when a reader caps its view).
    pub end: u64,
    /// The producer sector's epoch.
    pub epoch: u64,
    /// From this position on, records must carry exactly `epoch`.
    pub current_from: u64,
}

impl Published {
    /// The records a producer sector publishes to a consumer at `consumer`:
    /// up to its position, with its epoch, exact from `max(C, durable)`.
    pub fn by(producer: &State, consumer: u64) -> Published {
        Published {
            end: producer.position,
            epoch: producer.epoch,
            current_from: consumer.max(producer.durable),
        }
    }
}

/// The largest payload one record can have in a ring of `geometry`.
pub fn max_record_len(geometry: &Geometry) -> u64 {
    geometry
        .capacity()
        .saturating_sub(l::RECORD_HEADER_LEN)
        .min(u64::from(u32::MAX))
}

/// Checks whether a record of `payload_len` bytes could ever fit, and
/// returns the stream bytes it occupies.
///
/// # Errors
/// [`Error::TooLarge`] when `24 + payload_len` exceeds the capacity or
/// the length does not fit the u32 field.
pub fn record_len_fits(geometry: &Geometry, payload_len: usize) -> Result<u64, Error> {
    let len = payload_len as u64;
    if len > max_record_len(geometry) {
        return Err(Error::TooLarge {
            needed: len.saturating_add(l::RECORD_HEADER_LEN),
            capacity: geometry.capacity(),
        });
    }
    Ok(l::record_stream_len(len))
}

/// The record checksum's state after the ring id and the header's length,
/// position and epoch fields (bytes 0..4 and 8..24: not the CRC field
/// itself); continue it over the payload with [`checksum_append`].
pub fn record_checksum_start(ring_id: &RingId, header: &RecordHeaderBytes) -> u32 {
    let crc = crc32c::crc32c(&ring_id.0);
    let crc = crc32c::crc32c_append(crc, &header[l::RECORD_LEN_OFFSET..l::RECORD_CRC_OFFSET]);
    crc32c::crc32c_append(crc, &header[l::RECORD_POSITION_OFFSET..])
}

/// Continues a CRC32C over more bytes (for a payload read in pieces).
pub fn checksum_append(crc: u32, bytes: &[u8]) -> u32 {
    crc32c::crc32c_append(crc, bytes)
}

/// The CRC32C of a record: over the ring id, header bytes 0..4 and 8..24,
/// and the payload.
pub fn record_checksum(ring_id: &RingId, header: &RecordHeaderBytes, payload: &[u8]) -> u32 {
    checksum_append(record_checksum_start(ring_id, header), payload)
}

/// The header of the record of `payload` at stream position `position`,
/// written by the producer of epoch `epoch` in ring `ring_id`, checksum
/// included.
///
/// # Errors
/// [`Error::TooLarge`] for a payload longer than `u32::MAX` bytes.
pub fn encode_record_header(
    ring_id: &RingId,
    position: u64,
    epoch: u64,
    payload: &[u8],
) -> Result<RecordHeaderBytes, Error> {
    let len = u32::try_from(payload.len()).map_err(|_| Error::TooLarge {
        needed: (payload.len() as u64).saturating_add(l::RECORD_HEADER_LEN),
        capacity: u64::from(u32::MAX),
    })?;
    let mut h = [0u8; l::RECORD_HEADER_LEN as usize];
    h[l::RECORD_LEN_OFFSET..l::RECORD_CRC_OFFSET].copy_from_slice(&len.to_le_bytes());
    h[l::RECORD_POSITION_OFFSET..l::RECORD_EPOCH_OFFSET].copy_from_slice(&position.to_le_bytes());
    h[l::RECORD_EPOCH_OFFSET..].copy_from_slice(&epoch.to_le_bytes());
    let crc = record_checksum(ring_id, &h, payload);
    h[l::RECORD_CRC_OFFSET..l::RECORD_POSITION_OFFSET].copy_from_slice(&crc.to_le_bytes());
    Ok(h)
}

/// Writes the whole record of `payload` at `position` (producer epoch
/// `epoch`) into the start of `out`: header, payload, zero padding to 8
/// bytes. Returns its stream length
/// ([`record_stream_len`](l::record_stream_len)).
///
/// # Errors
/// [`Error::TooLarge`] for a payload longer than `u32::MAX` bytes or one
/// whose record does not fit in `out`.
pub fn encode_record(
    ring_id: &RingId,
    position: u64,
    epoch: u64,
    payload: &[u8],
    out: &mut [u8],
) -> Result<u64, Error> {
    let header = encode_record_header(ring_id, position, epoch, payload)?;
    let total = l::record_stream_len(payload.len() as u64);
    let Some(out) = usize::try_from(total).ok().and_then(|n| out.get_mut(..n)) else {
        return Err(Error::TooLarge {
            needed: total,
            capacity: out.len() as u64,
        });
    };
    let hl = l::RECORD_HEADER_LEN as usize;
    out[..hl].copy_from_slice(&header);
    out[hl..hl + payload.len()].copy_from_slice(payload);
    out[hl + payload.len()..].fill(0);
    Ok(total)
}

/// The fields of a record header, undecided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordHeader {
    /// Payload length.
    pub len: u32,
    /// Stored CRC32C.
    pub checksum: u32,
    /// The record's own stream position.
    pub position: u64,
    /// The epoch of the producer that wrote it.
    pub epoch: u64,
}

/// Splits a record header into its fields (no checks).
pub fn decode_record_header(header: &RecordHeaderBytes) -> RecordHeader {
    let u32_at = |at: usize| {
        let mut x = [0u8; 4];
        x.copy_from_slice(&header[at..at + 4]);
        u32::from_le_bytes(x)
    };
    let u64_at = |at: usize| {
        let mut x = [0u8; 8];
        x.copy_from_slice(&header[at..at + 8]);
        u64::from_le_bytes(x)
    };
    RecordHeader {
        len: u32_at(l::RECORD_LEN_OFFSET),
        checksum: u32_at(l::RECORD_CRC_OFFSET),
        position: u64_at(l::RECORD_POSITION_OFFSET),
        epoch: u64_at(l::RECORD_EPOCH_OFFSET),
    }
}

fn bad_record(geometry: &Geometry, at: u64, problem: RecordProblem) -> Corruption {
    let (sector, byte) = geometry.locate(at);
    Corruption::BadRecord {
        sector,
        byte,
        position: at,
        problem,
    }
}

/// Checks the header of the record at stream position `at`, read as
/// `header`, against the published end `end`, before anything is sized by
/// its length: first its position field (a stale or misdirected header
/// explains a wrong length too), then `24 + len <= end - at`.
///
/// # Errors
/// [`Corruption::BadRecord`] with [`RecordProblem::Stale`],
/// [`RecordProblem::Position`] or [`RecordProblem::Length`].
pub fn check_record_header(
    geometry: &Geometry,
    at: u64,
    header: &RecordHeaderBytes,
    end: u64,
) -> Result<RecordSpan, Corruption> {
    let h = decode_record_header(header);
    if h.position != at {
        let capacity = geometry.capacity();
        let problem = match at.checked_sub(h.position) {
            Some(back) if back % capacity == 0 => RecordProblem::Stale {
                expected: at,
                found: h.position,
                laps: back / capacity,
            },
            _ => RecordProblem::Position {
                expected: at,
                found: h.position,
            },
        };
        return Err(bad_record(geometry, at, problem));
    }
    let available = end.saturating_sub(at);
    let needed = l::RECORD_HEADER_LEN + u64::from(h.len);
    match at.checked_add(l::record_stream_len(u64::from(h.len))) {
        Some(next) if needed <= available => Ok(RecordSpan {
            position: at,
            len: h.len,
            next,
            epoch: h.epoch,
        }),
        _ => Err(bad_record(
            geometry,
            at,
            RecordProblem::Length {
                len: h.len,
                available,
            },
        )),
    }
}

/// Compares the checksum computed over a record (`computed`: from
/// [`record_checksum`], or [`record_checksum_start`] continued over the
/// payload) with the one in its header.
///
/// # Errors
/// [`Corruption::BadRecord`] with [`RecordProblem::Checksum`].
pub fn check_record_checksum(
    geometry: &Geometry,
    span: &RecordSpan,
    header: &RecordHeaderBytes,
    computed: u32,
) -> Result<(), Corruption> {
    let found = decode_record_header(header).checksum;
    if found == computed {
        Ok(())
    } else {
        Err(bad_record(
            geometry,
            span.position,
            RecordProblem::Checksum {
                expected: computed,
                found,
            },
        ))
    }
}

/// Checks the epoch of a record whose checksum is right (so the epoch is
/// what its writer wrote) against the producer sector: exactly its epoch
/// from `current_from` on, at most its epoch before.
///
/// # Errors
/// [`Corruption::BadRecord`] with [`RecordProblem::Epoch`].
pub fn check_record_epoch(
    geometry: &Geometry,
    span: &RecordSpan,
    published: &Published,
) -> Result<(), Corruption> {
    let ok = if span.position >= published.current_from {
        span.epoch == published.epoch
    } else {
        span.epoch <= published.epoch
    };
    if ok {
        Ok(())
    } else {
        Err(bad_record(
            geometry,
            span.position,
            RecordProblem::Epoch {
                expected: published.epoch,
                found: span.epoch,
            },
        ))
    }
}

/// Reads a record header from the stream bytes `bytes` (which start at
/// the header), for a record at `at` in a range ending at `end`. When
/// fewer than 24 bytes lie before `end` (or in `bytes`), the missing bytes
/// read as zero and the position field as `at`, so the header check
/// reports a length problem, never a misplaced record.
pub fn header_from(at: u64, bytes: &[u8], end: u64) -> RecordHeaderBytes {
    let mut header = [0u8; l::RECORD_HEADER_LEN as usize];
    let hl = header.len();
    let n = usize::try_from(end.saturating_sub(at))
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    if n < hl {
        header[..n].copy_from_slice(&bytes[..n]);
        header[l::RECORD_POSITION_OFFSET..l::RECORD_EPOCH_OFFSET]
            .copy_from_slice(&at.to_le_bytes());
    } else {
        header.copy_from_slice(&bytes[..hl]);
    }
    header
}

/// Checks the whole record at `at`: `bytes` holds the stream from `at`
/// on, and `published` says where the published records end and which
/// epoch they carry. The header is checked before the payload is looked
/// at; nothing outside `bytes` is read: when `bytes` stops before the
/// published end, the end is taken as `at + bytes.len()`, so give it every
/// published byte (or use [`check_record_header`],
/// [`check_record_checksum`] and [`check_record_epoch`] to read the
/// payload separately).
///
/// # Errors
/// As [`check_record_header`], [`check_record_checksum`] and
/// [`check_record_epoch`].
pub fn check_record(
    geometry: &Geometry,
    ring_id: &RingId,
    at: u64,
    bytes: &[u8],
    published: &Published,
) -> Result<RecordSpan, Corruption> {
    let end = published.end.min(at.saturating_add(bytes.len() as u64));
    let header = header_from(at, bytes, end);
    let span = check_record_header(geometry, at, &header, end)?;
    let hl = l::RECORD_HEADER_LEN as usize;
    // 24 + len <= end - at <= bytes.len(): in bounds.
    let payload = &bytes[hl..hl + span.len as usize];
    check_record_checksum(
        geometry,
        &span,
        &header,
        record_checksum(ring_id, &header, payload),
    )?;
    check_record_epoch(geometry, &span, published)?;
    Ok(span)
}
