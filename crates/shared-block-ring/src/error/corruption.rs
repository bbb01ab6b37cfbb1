//! [`Corruption`] and [`RecordProblem`]: what is invalid on a device and
//! where, with the messages that say so; and [`Hex`], the hex digits of ring
//! ids in those messages and elsewhere. Re-exported from the [`error`](super)
//! module, so their paths do not change.

use std::fmt;

use super::Side;
use crate::layout;

/// An invalid state found on the device. Each names where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Corruption {
    /// A flag byte other than 1 (true) or 2 (false).
    BadFlag {
        /// Whose state sector.
        side: Side,
        /// The byte found.
        value: u8,
    },
    /// A state position that is not a multiple of 4.
    UnalignedPosition {
        /// Whose state sector.
        side: Side,
        /// The position found.
        position: u64,
    },
    /// The consumer is ahead of the producer.
    ConsumerAheadOfProducer {
        /// Consumer position (sector 2).
        consumer: u64,
        /// Producer position (sector 1).
        producer: u64,
    },
    /// More bytes are in use than the ring can hold.
    UsedExceedsCapacity {
        /// `producer - consumer`.
        used: u64,
        /// Data capacity of the ring.
        capacity: u64,
    },
    /// A state position past [`Position::MAX`](crate::Position::MAX)
    /// (2^63 - 4): no ring gets there, and the arithmetic on positions
    /// keeps its headroom only below it.
    PositionTooLarge {
        /// Whose state sector.
        side: Side,
        /// The position found.
        position: u64,
    },
    /// An item's length runs past the producer position.
    ItemPastProducer {
        /// Stream position of the item.
        position: u64,
        /// Payload length read from its header.
        len: u32,
        /// Producer position.
        producer: u64,
        /// Sector holding the length field.
        sector: u64,
        /// Byte offset of the length field within that sector.
        byte: usize,
    },
    /// Format 2: a header or state sector whose CRC32C does not match its
    /// bytes (torn, damaged, or never written as such).
    BadChecksum {
        /// The sector.
        sector: u64,
        /// Byte offset of the stored checksum.
        byte: usize,
        /// The CRC32C computed over the sector's bytes before `byte`.
        expected: u32,
        /// The CRC32C stored at `byte`.
        found: u32,
    },
    /// Format 2: a state sector that carries another ring's id (a sector
    /// of another ring, misdirected or left over).
    WrongRing {
        /// The sector.
        sector: u64,
        /// Byte offset of the ring id.
        byte: usize,
        /// The ring id in the header (sector 0).
        expected: [u8; 16],
        /// The ring id found.
        found: [u8; 16],
    },
    /// Format 2: a state sector whose tag names another sector (a state
    /// written to the wrong place).
    WrongSectorTag {
        /// The sector read.
        sector: u64,
        /// Byte offset of the tag.
        byte: usize,
        /// The tag found (the sector it was written for).
        found: u8,
    },
    /// Format 2: a field whose checksum is right but whose value is not
    /// valid (an unaligned position, `durable` past the position, a zero
    /// lease, an impossible sector size).
    BadField {
        /// The sector.
        sector: u64,
        /// Byte offset of the field.
        byte: usize,
        /// What the field is.
        field: &'static str,
        /// The value found.
        found: u64,
        /// What a valid value is.
        expected: String,
    },
    /// Format 2: a record that fails its checks; it is not delivered.
    BadRecord {
        /// Sector holding the record header.
        sector: u64,
        /// Byte offset of the record header within that sector.
        byte: usize,
        /// Stream position of the record.
        position: u64,
        /// What is wrong with it.
        problem: RecordProblem,
    },
}

impl std::error::Error for Corruption {}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corruption::BadFlag { side, value } => write!(
                f,
                "sector {} byte {}: the {} flag is {value}, but only {} (true) and {} (false) are valid \
                 (a zero here usually means the sector was never written, or the sector size is wrong)",
                side.sector(),
                layout::FLAG_OFFSET,
                side.flag_name(),
                layout::FLAG_TRUE,
                layout::FLAG_FALSE
            ),
            Corruption::UnalignedPosition { side, position } => write!(
                f,
                "sector {} bytes 0..8: the {side} position {position} is not a multiple of {}",
                side.sector(),
                layout::ITEM_ALIGN
            ),
            Corruption::ConsumerAheadOfProducer { consumer, producer } => write!(
                f,
                "the consumer position {consumer} (sector {} bytes 0..8) is ahead of the producer position {producer} (sector {} bytes 0..8)",
                layout::CONSUMER_SECTOR,
                layout::PRODUCER_SECTOR
            ),
            Corruption::PositionTooLarge { side, position } => write!(
                f,
                "sector {} bytes 0..8: the {side} position {position} is past the largest valid \
                 position {} (2^63 - 4)",
                side.sector(),
                crate::Position::MAX
            ),
            Corruption::UsedExceedsCapacity { used, capacity } => write!(
                f,
                "producer - consumer = {used} bytes in use, more than the ring's capacity of {capacity} bytes"
            ),
            Corruption::ItemPastProducer {
                position,
                len,
                producer,
                sector,
                byte,
            } => write!(
                f,
                "sector {sector} byte {byte}: the item at position {position} has length {len}, \
                 which runs past the producer position {producer}"
            ),
            Corruption::BadChecksum {
                sector,
                byte,
                expected,
                found,
            } => write!(
                f,
                "sector {sector} bytes {byte}..{}: the CRC32C is {found:#010x}, but bytes 0..{byte} give \
                 {expected:#010x} (a torn or damaged sector)",
                byte + 4
            ),
            Corruption::WrongRing {
                sector,
                byte,
                expected,
                found,
            } => write!(
                f,
                "sector {sector} bytes {byte}..{}: ring id {} differs from the header's {} \
                 (a sector of another ring, misdirected or left over)",
                byte + 16,
                Hex(found),
                Hex(expected)
            ),
            Corruption::WrongSectorTag {
                sector,
                byte,
                found,
            } => write!(
                f,
                "sector {sector} byte {byte}: the sector tag is {found}, expected {sector} \
                 (a state sector written to the wrong place)"
            ),
            Corruption::BadField {
                sector,
                byte,
                field,
                found,
                expected,
            } => write!(
                f,
                "sector {sector} byte {byte}: the {field} is {found}, expected {expected}"
            ),
            Corruption::BadRecord {
                sector,
                byte,
                position,
                problem,
            } => write!(
                f,
                "sector {sector} byte {byte}: the record at position {position} is invalid: {problem}"
            ),
        }
    }
}

/// What is wrong with a format-2 record, with the value expected and the
/// value found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RecordProblem {
    /// The payload length runs past the published end: `24 + len >
    /// available`, where `available` is the published end minus the
    /// record's position.
    Length {
        /// Payload length found in the header.
        len: u32,
        /// Stream bytes published from the record's position on.
        available: u64,
    },
    /// The record's position field is not its position: a misdirected
    /// sector, or bytes that were never a record header.
    Position {
        /// The record's stream position.
        expected: u64,
        /// The position field found.
        found: u64,
    },
    /// The record's position field is its position some whole laps of the
    /// ring earlier: a stale record that the new one never replaced.
    Stale {
        /// The record's stream position.
        expected: u64,
        /// The position field found (`expected - laps * capacity`).
        found: u64,
        /// How many laps older the record is.
        laps: u64,
    },
    /// The record's CRC32C does not match its bytes: a torn or overwritten
    /// record, or a record of another ring (the ring id seeds the CRC).
    Checksum {
        /// The CRC32C computed over the ring id, the header and the payload.
        expected: u32,
        /// The CRC32C stored in the record.
        found: u32,
    },
    /// A record whose checksum is right but whose producer epoch is not
    /// the one the producer sector allows there: at or after the durable
    /// position, a record of an earlier producer left where the record of
    /// the producer that published it was lost (`found < expected`);
    /// anywhere, a record newer than the producer sector (`found >
    /// expected`).
    Epoch {
        /// The producer sector's epoch.
        expected: u64,
        /// The record's epoch.
        found: u64,
    },
}

impl fmt::Display for RecordProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordProblem::Length { len, available } => write!(
                f,
                "its length {len} runs past the published end: {header} + {len} bytes, \
                 but only {available} bytes are published from it (expected a length of at most {})",
                available.saturating_sub(layout::v2::RECORD_HEADER_LEN),
                header = layout::v2::RECORD_HEADER_LEN
            ),
            RecordProblem::Position { expected, found } => write!(
                f,
                "its position field holds {found}, expected {expected} \
                 (a sector written to the wrong place, or not a record)"
            ),
            RecordProblem::Stale {
                expected,
                found,
                laps,
            } => write!(
                f,
                "its position field holds {found}, expected {expected}: \
                 a stale record from {laps} lap(s) of the ring earlier, never overwritten"
            ),
            RecordProblem::Checksum { expected, found } => write!(
                f,
                "its CRC32C is {found:#010x}, but its bytes (with this ring's id) give {expected:#010x} \
                 (a torn or overwritten record, or one of another ring)"
            ),
            RecordProblem::Epoch { expected, found } if found < expected => write!(
                f,
                "its producer epoch is {found}, expected {expected}: a record an earlier producer \
                 left there, where the record of the producer that published it was lost"
            ),
            RecordProblem::Epoch { expected, found } => write!(
                f,
                "its producer epoch is {found}, newer than the producer sector's {expected} \
                 (expected at most {expected})"
            ),
        }
    }
}

/// 16 bytes as 32 lower-case hex digits (ring ids, tokens, boot ids).
pub(crate) struct Hex<'a>(pub(crate) &'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}
