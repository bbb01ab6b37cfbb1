//! Recovery at attach: how far the records after the last durable position
//! really go.
//!
//! A format-2 producer writes its records, then its pointer, then flushes
//! once; a power cut may keep the pointer and lose some of the records it
//! covers. So attach does not trust `P` alone: it checks every record from
//! `max(C, durable)` (everything before was made durable by a completed
//! flush, or has been released) to `P`, and the end of the run of valid
//! records, `q`, is where the ring's published items really end. A valid
//! record must also carry the producer sector's epoch: a record that an
//! earlier producer left where the lost one should be ends the run too.
//!
//! [`scan`] is pure: it reads stream sectors through a closure (a device,
//! an image in memory, a fuzzer's bytes) and holds at most
//! [`SCAN_CHUNK`] bytes at a time, whatever lengths it finds. [`recover`]
//! decodes the three head sectors and runs the scan.

use super::{
    check_record_checksum, check_record_epoch, check_record_header, checksum_append, decode_state,
    detect, header_from, record_checksum_start, scan_start, Detected, Header, Published, RingId,
    State,
};
use crate::device::AlignedBuf;
use crate::error::{Corruption, Error, Side};
use crate::format::Geometry;
use crate::layout::{self, v2 as l};

/// The most stream bytes a scan reads at once (rounded to whole sectors,
/// at least one sector, at most the data area).
pub const SCAN_CHUNK: usize = 1 << 20;

/// What a recovery scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Where the scan started: `max(C, durable)`.
    pub start: u64,
    /// Where it was asked to stop: `P`.
    pub stop: u64,
    /// The epoch every record in the range must carry (the producer
    /// sector's).
    pub epoch: u64,
    /// `q`: the end of the run of valid records from `start`; `stop` when
    /// every record is valid.
    pub end: u64,
    /// Valid records found.
    pub records: u64,
    /// The first problem, at `end` (`None` when `end == stop`).
    pub problem: Option<Corruption>,
}

impl Scan {
    /// True when every record up to `stop` is valid.
    pub fn is_complete(&self) -> bool {
        self.end == self.stop && self.problem.is_none()
    }
}

/// Validates the records from `from` to `to` (stream positions) of ring
/// `ring_id`, each of which must carry the producer epoch `epoch`,
/// reading stream sectors with `read(stream_sector, buf)`: it must fill
/// `buf` with the `buf.len() / sector_size` stream sectors from
/// `stream_sector` on (wrapping as the ring does; never more than the data
/// area at once). Only the sectors that hold `[from, to)` are read.
///
/// A range that no ring could have (`from > to`, more than the capacity,
/// not a multiple of 8) is reported as the problem, with nothing read.
///
/// # Errors
/// Only what `read` returns; invalid records are results, not errors.
pub fn scan<E>(
    geometry: &Geometry,
    ring_id: &RingId,
    from: u64,
    to: u64,
    epoch: u64,
    read: impl FnMut(u64, &mut [u8]) -> Result<(), E>,
) -> Result<Scan, E> {
    let published = Published {
        end: to,
        epoch,
        current_from: from,
    };
    walk(
        geometry,
        ring_id,
        from,
        &published,
        SCAN_CHUNK,
        read,
        |_| {},
    )
}

/// What [`walk`] shows its visitor.
pub(crate) enum Visit<'a> {
    /// Payload bytes `offset..offset + bytes.len()` of the record being
    /// checked, before its checksum has been.
    Payload { offset: u64, bytes: &'a [u8] },
    /// The record at `span` is valid.
    Valid(&'a super::RecordSpan),
}

/// [`scan`] from `from` to `published.end` under `published`'s epoch
/// rule (the inspector walks from `C`, where records before `durable` may
/// carry older epochs), with a chosen chunk size (tests use tiny ones to
/// cross every refill path), showing each record's payload and verdict to
/// `visit` (the inspector keeps previews of the valid ones).
pub(crate) fn walk<E>(
    geometry: &Geometry,
    ring_id: &RingId,
    from: u64,
    published: &Published,
    chunk: usize,
    read: impl FnMut(u64, &mut [u8]) -> Result<(), E>,
    mut visit: impl FnMut(Visit<'_>),
) -> Result<Scan, E> {
    let to = published.end;
    let mut result = Scan {
        start: from,
        stop: to,
        epoch: published.epoch,
        end: from,
        records: 0,
        problem: None,
    };
    if let Err(problem) = check_range(geometry, from, to) {
        result.problem = Some(problem);
        return Ok(result);
    }
    let mut window = Window::new(geometry, to, chunk, read);
    let mut at = from;
    while at < to {
        // A header may straddle sectors and chunks; one that runs past the
        // range is read up to its end only (and fails the length check).
        let mut bytes = [0u8; l::RECORD_HEADER_LEN as usize];
        let n = (to - at).min(l::RECORD_HEADER_LEN) as usize;
        window.copy(at, &mut bytes[..n])?;
        let header = header_from(at, &bytes[..n], to);
        let span = match check_record_header(geometry, at, &header, to) {
            Ok(span) => span,
            Err(problem) => {
                result.problem = Some(problem);
                break;
            }
        };
        // The length was checked against `to`: the payload lies within the
        // range, and is checksummed a window at a time.
        let mut crc = record_checksum_start(ring_id, &header);
        let mut p = span.payload_start();
        let payload_end = p + u64::from(span.len);
        while p < payload_end {
            let bytes = window.bytes(p, payload_end)?;
            crc = checksum_append(crc, bytes);
            visit(Visit::Payload {
                offset: p - span.payload_start(),
                bytes,
            });
            p += bytes.len() as u64;
        }
        if let Err(problem) = check_record_checksum(geometry, &span, &header, crc)
            .and_then(|()| check_record_epoch(geometry, &span, published))
        {
            result.problem = Some(problem);
            break;
        }
        visit(Visit::Valid(&span));
        at = span.next;
        result.records += 1;
        result.end = at;
    }
    Ok(result)
}

/// `from <= to <= from + capacity`, both multiples of 8.
fn check_range(geometry: &Geometry, from: u64, to: u64) -> Result<(), Corruption> {
    for (value, field, byte, sector) in [
        (
            from,
            "scan start",
            l::POSITION_OFFSET,
            layout::CONSUMER_SECTOR,
        ),
        (
            to,
            "producer position",
            l::POSITION_OFFSET,
            layout::PRODUCER_SECTOR,
        ),
    ] {
        if value % l::RECORD_ALIGN != 0 {
            return Err(Corruption::BadField {
                sector,
                byte,
                field,
                found: value,
                expected: format!("a multiple of {}", l::RECORD_ALIGN),
            });
        }
    }
    crate::format::check_positions(to, from, geometry.capacity())
}

/// A window of whole stream sectors read through the closure.
struct Window<'g, F> {
    geometry: &'g Geometry,
    read: F,
    buf: AlignedBuf,
    /// Stream position of `buf[0]`; `len` valid bytes.
    start: u64,
    len: usize,
    /// One past the last stream sector that may be read.
    last_sector: u64,
    chunk_sectors: u64,
}

impl<'g, E, F: FnMut(u64, &mut [u8]) -> Result<(), E>> Window<'g, F> {
    fn new(geometry: &'g Geometry, to: u64, chunk: usize, read: F) -> Self {
        let ss = geometry.sector_size() as u64;
        Window {
            geometry,
            read,
            buf: AlignedBuf::zeroed(0),
            start: 0,
            len: 0,
            last_sector: to.div_ceil(ss),
            chunk_sectors: (chunk as u64 / ss).clamp(1, geometry.data_sectors()),
        }
    }

    /// Reads the window that starts with the sector holding `at` (< `to`).
    fn fill(&mut self, at: u64) -> Result<(), E> {
        let ss = self.geometry.sector_size() as u64;
        let first = at / ss;
        let count = self
            .chunk_sectors
            .min(self.last_sector.saturating_sub(first))
            .max(1);
        // count <= chunk_sectors <= data sectors, each ss bytes: at most the
        // chunk size or the capacity, never a length read from the device.
        let bytes = (count * ss) as usize;
        if self.buf.len() < bytes {
            self.buf.resize(bytes);
        }
        (self.read)(first, &mut self.buf[..bytes])?;
        self.start = first * ss;
        self.len = bytes;
        Ok(())
    }

    /// The bytes from `at` up to `end` or the end of the window, whichever
    /// is first (at least one byte when `at < end`).
    fn bytes(&mut self, at: u64, end: u64) -> Result<&[u8], E> {
        if at < self.start || at >= self.start + self.len as u64 {
            self.fill(at)?;
        }
        let off = (at - self.start) as usize;
        let n = (end - at).min((self.len - off) as u64) as usize;
        Ok(&self.buf[off..off + n])
    }

    /// Copies `out.len()` bytes from `at` (a record header, which may cross
    /// sectors and windows; all before `to`).
    fn copy(&mut self, at: u64, out: &mut [u8]) -> Result<(), E> {
        let mut done = 0;
        while done < out.len() {
            let end = at + out.len() as u64;
            let bytes = self.bytes(at + done as u64, end)?;
            out[done..done + bytes.len()].copy_from_slice(bytes);
            done += bytes.len();
        }
        Ok(())
    }
}

/// What attach learns from a format-2 ring's head sectors and its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// The header (sector 0).
    pub header: Header,
    /// The producer's state (sector 1) as on the device.
    pub producer: State,
    /// The consumer's state (sector 2).
    pub consumer: State,
    /// The scan from `max(C, durable)` to `P`.
    pub scan: Scan,
}

impl Recovery {
    /// The end of the published records: `q`, which is `P` unless a power
    /// cut kept the pointer but lost some of its records.
    pub fn published_end(&self) -> u64 {
        self.scan.end
    }

    /// True when the producer's pointer runs past its valid records: the
    /// producer must rewrite its sector with `P = durable = q` (durably, by
    /// a write and a flush) before anything else, and a consumer must not
    /// read past `q` while the sector still says `P`.
    pub fn pointer_ahead_of_records(&self) -> bool {
        self.scan.end < self.producer.position
    }
}

/// Decodes the head sectors (`head`: sectors 0, 1 and 2 as read, each
/// `geometry.sector_size()` bytes; shorter is read as zero padded) of a
/// format-2 ring, checks them against each other and the device, and scans
/// the records from `max(C, durable)` to `P` with `read` (as in [`scan`]).
///
/// # Errors
/// [`Error::WrongFormat`] for a format-1 ring; [`Error::NotInitialised`];
/// as [`detect`] for a damaged or mismatched header; [`Error::Corrupt`]
/// for an invalid state sector or positions that contradict each other;
/// whatever `read` returns.
pub fn recover(
    geometry: &Geometry,
    head: &[u8],
    read: impl FnMut(u64, &mut [u8]) -> Result<(), Error>,
) -> Result<Recovery, Error> {
    let ss = geometry.sector_size();
    let sector = |n: usize| {
        let start = (n * ss).min(head.len());
        &head[start..((n + 1) * ss).min(head.len())]
    };
    let header = match detect(sector(0), geometry)? {
        Detected::Format2(h) => h,
        Detected::Format1 => {
            return Err(Error::WrongFormat {
                found: 1,
                expected: 2,
            })
        }
        Detected::NotARing(p) => return Err(Error::NotInitialised(p)),
    };
    let producer = decode_state(Side::Producer, &header.ring_id, sector(1))?;
    let consumer = decode_state(Side::Consumer, &header.ring_id, sector(2))?;
    super::check_states(&producer, &consumer, geometry.capacity())?;
    let scan = scan(
        geometry,
        &header.ring_id,
        scan_start(&producer, &consumer),
        producer.position,
        producer.epoch,
        read,
    )?;
    Ok(Recovery {
        header,
        producer,
        consumer,
        scan,
    })
}

#[cfg(test)]
mod tests;
