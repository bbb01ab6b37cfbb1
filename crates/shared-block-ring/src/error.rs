//! The one error type of the library.
//!
//! Every operation returns [`Error`]. Two variants are not faults but
//! "not now": [`Error::Retry`] (no space, no item, or a handshake still
//! waiting for the other side) and [`Error::Suspended`]. Everything else is
//! fatal for the handle that returned it. [`Error::is_transient`] tells them
//! apart.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::layout;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an operation should be retried later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RetryReason {
    /// The item fits the ring but not the space left now; the consumer must
    /// release some first.
    Full,
    /// There is no published item at the requested position yet.
    Empty,
    /// The consumer's previous suspend or resume request has not been
    /// acknowledged by the producer yet.
    HandshakePending,
}

impl fmt::Display for RetryReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RetryReason::Full => "the ring is full",
            RetryReason::Empty => "there is no item to read",
            RetryReason::HandshakePending => {
                "the producer has not acknowledged the previous suspend/resume request"
            }
        })
    }
}

/// What is wrong with sector 0 when it does not hold the ring signature.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureProblem {
    /// The signature bytes are all zero: a blank or erased device.
    Blank,
    /// Something else is there: another format, or a damaged ring.
    Foreign {
        /// The first bytes of sector 0, as found.
        found: Vec<u8>,
    },
}

impl std::error::Error for SignatureProblem {}

impl fmt::Display for SignatureProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignatureProblem::Blank => write!(
                f,
                "sector 0 bytes 0..{} are all zero (no ring has been created on it)",
                layout::SIGNATURE.len()
            ),
            SignatureProblem::Foreign { found } => write!(
                f,
                "sector 0 bytes 0..{} hold \"{}\" instead of \"{}\"",
                layout::SIGNATURE.len(),
                crate::escape::escape_bytes(found),
                crate::escape::escape_bytes(layout::SIGNATURE)
            ),
        }
    }
}

/// Which state sector a [`Corruption`] was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Sector 1, written by the producer.
    Producer,
    /// Sector 2, written by the consumer.
    Consumer,
}

impl Side {
    /// The sector this side writes.
    pub const fn sector(self) -> u64 {
        match self {
            Side::Producer => layout::PRODUCER_SECTOR,
            Side::Consumer => layout::CONSUMER_SECTOR,
        }
    }

    /// Lower-case name, as used in logs and debug keys.
    pub const fn name(self) -> &'static str {
        match self {
            Side::Producer => "producer",
            Side::Consumer => "consumer",
        }
    }

    /// Name of the flag this side writes.
    pub const fn flag_name(self) -> &'static str {
        match self {
            Side::Producer => "suspend_ack",
            Side::Consumer => "suspend",
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

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
        }
    }
}

/// The device operation that failed, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoOp {
    /// Reading sectors.
    Read,
    /// Writing sectors.
    Write,
    /// Flushing the device's write cache.
    Flush,
}

impl fmt::Display for IoOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IoOp::Read => "reading",
            IoOp::Write => "writing",
            IoOp::Flush => "flushing",
        })
    }
}

/// Every error the library reports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not now: retry later (see the reason). Not a fault.
    #[error("{0}; retry later")]
    Retry(RetryReason),

    /// The consumer has asked the producer to pause, and the producer has
    /// acknowledged. Not a fault: retry after the consumer resumes.
    #[error(
        "the ring is suspended: its consumer asked the producer to pause; retry after it resumes"
    )]
    Suspended,

    /// Sector 0 does not hold the ring signature.
    #[error("not a shared block ring (not initialised): {0}")]
    NotInitialised(SignatureProblem),

    /// The device has fewer than 4 sectors.
    #[error(
        "the block device is too small for a ring: it has {sectors} sectors of {sector_size} bytes; \
         the minimum size is {} sectors", layout::MIN_SECTORS
    )]
    TooSmall {
        /// Sectors on the device.
        sectors: u64,
        /// Sector size in bytes.
        sector_size: usize,
    },

    /// The sector size is not one the format supports.
    #[error(
        "unsupported sector size {sector_size}: it must be a power of two from {} to {} bytes",
        layout::MIN_SECTOR_SIZE,
        layout::MAX_SECTOR_SIZE
    )]
    BadSectorSize {
        /// The sector size asked for.
        sector_size: usize,
    },

    /// A sector size that the device cannot do I/O in.
    #[error(
        "sector size {requested} does not suit this device: its logical block size is {device} bytes, \
         and the sector size must be a multiple of it"
    )]
    SectorSizeMismatch {
        /// The sector size asked for.
        requested: usize,
        /// The device's logical block size.
        device: usize,
    },

    /// The item (or batch) can never fit, however much the consumer releases.
    #[error("the ring is too small for a message of size {needed} bytes: its capacity is {capacity} bytes")]
    TooLarge {
        /// Stream bytes needed, header included.
        needed: u64,
        /// Data capacity of the ring.
        capacity: u64,
    },

    /// A push would take the stream past [`Position::MAX`](crate::Position::MAX)
    /// (2^63 - 4, about 9.2 EB of items since the ring was created).
    /// Nothing was pushed; the consumer can still drain the ring, which
    /// must then be erased and created anew. Not transient.
    #[error(
        "cannot push: the stream would end at position {end}, past the largest position the \
         format allows ({}); drain the ring, then erase and create it anew",
        crate::Position::MAX
    )]
    PositionLimit {
        /// Where the stream would have ended (saturated at `u64::MAX`).
        end: u64,
    },

    /// The device holds an invalid state.
    #[error("the ring is corrupt: {0}")]
    Corrupt(Corruption),

    /// A read was asked to start outside the readable range.
    #[error("position {position} is outside the readable range [{consumer}, {producer}]")]
    PositionOutOfRange {
        /// The position asked for.
        position: u64,
        /// Consumer position.
        consumer: u64,
        /// Producer position.
        producer: u64,
    },

    /// A position passed to `advance` (or `pop_from`) that this handle never
    /// handed out.
    #[error("invalid position {position}: {reason}")]
    InvalidPosition {
        /// The position passed.
        position: u64,
        /// Why it was refused.
        reason: &'static str,
    },

    /// The device refused or failed an operation.
    #[error("device I/O error while {op} sector {sector}: {source}")]
    Io {
        /// What was being done.
        op: IoOp,
        /// First sector involved.
        sector: u64,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// The device could not be opened.
    #[error("cannot open {}: {source}", path.display())]
    Open {
        /// The path or address of the device.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// A device spec that is a URI this library cannot use (a bad NBD URI,
    /// TLS, an unknown scheme).
    #[error("invalid device URI {uri}: {reason}")]
    InvalidUri {
        /// The spec as given.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The filesystem refuses O_DIRECT (tmpfs does).
    #[error(
        "cannot open {} with O_DIRECT: its filesystem does not support direct I/O (tmpfs?); \
         use buffered I/O instead (FileOptions::direct(false), or `--buffered` in sbr), \
         which only works when both sides run on this host", path.display()
    )]
    DirectIoUnsupported {
        /// The path of the file.
        path: PathBuf,
    },

    /// The device was opened read-only, and this operation writes.
    #[error("the device is read-only; this operation needs to write")]
    ReadOnly,

    /// Another handle holds this role on the same ring.
    #[error("the {role} role of this ring is already held: {holder}")]
    Locked {
        /// The role asked for.
        role: Side,
        /// Who holds it, as far as the lock tells.
        holder: String,
    },

    /// The item codec failed.
    #[error("item codec error: {0}")]
    Codec(CodecError),

    /// The journal has been shut down (or dropped): it accepts no more
    /// operations, and waits on operations it had not performed end here.
    /// Operations already pushed stay in the ring for the next start.
    #[error(
        "the journal has shut down: it accepts no more operations \
         (those already pushed stay in the ring and are performed by the next start)"
    )]
    ShutDown,
}

impl Error {
    /// True for the outcomes that are not faults: [`Error::Retry`] and
    /// [`Error::Suspended`]. The handle stays usable after them.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Retry(_) | Error::Suspended)
    }

    /// True for [`Error::Retry`].
    pub fn is_retry(&self) -> bool {
        matches!(self, Error::Retry(_))
    }

    /// True for [`Error::Suspended`].
    pub fn is_suspended(&self) -> bool {
        matches!(self, Error::Suspended)
    }

    /// True when the device (or its transport) failed, as opposed to the data
    /// on it being invalid: re-attaching once the fault clears may succeed.
    pub fn is_io(&self) -> bool {
        matches!(self, Error::Io { .. } | Error::Open { .. })
    }

    pub(crate) fn io(op: IoOp, sector: u64, source: io::Error) -> Error {
        Error::Io { op, sector, source }
    }

    /// The same error again (for each waiter on a failed operation): `Error`
    /// is not `Clone` because `io::Error` is not; the copy keeps the kind and
    /// message.
    pub(crate) fn duplicate(&self) -> Error {
        fn io_copy(e: &io::Error) -> io::Error {
            io::Error::new(e.kind(), e.to_string())
        }
        match self {
            Error::Retry(r) => Error::Retry(*r),
            Error::Suspended => Error::Suspended,
            Error::NotInitialised(p) => Error::NotInitialised(p.clone()),
            Error::TooSmall {
                sectors,
                sector_size,
            } => Error::TooSmall {
                sectors: *sectors,
                sector_size: *sector_size,
            },
            Error::BadSectorSize { sector_size } => Error::BadSectorSize {
                sector_size: *sector_size,
            },
            Error::SectorSizeMismatch { requested, device } => Error::SectorSizeMismatch {
                requested: *requested,
                device: *device,
            },
            Error::TooLarge { needed, capacity } => Error::TooLarge {
                needed: *needed,
                capacity: *capacity,
            },
            Error::PositionLimit { end } => Error::PositionLimit { end: *end },
            Error::Corrupt(c) => Error::Corrupt(c.clone()),
            Error::PositionOutOfRange {
                position,
                consumer,
                producer,
            } => Error::PositionOutOfRange {
                position: *position,
                consumer: *consumer,
                producer: *producer,
            },
            Error::InvalidPosition { position, reason } => Error::InvalidPosition {
                position: *position,
                reason,
            },
            Error::Io { op, sector, source } => Error::Io {
                op: *op,
                sector: *sector,
                source: io_copy(source),
            },
            Error::Open { path, source } => Error::Open {
                path: path.clone(),
                source: io_copy(source),
            },
            Error::DirectIoUnsupported { path } => {
                Error::DirectIoUnsupported { path: path.clone() }
            }
            Error::ReadOnly => Error::ReadOnly,
            Error::Locked { role, holder } => Error::Locked {
                role: *role,
                holder: holder.clone(),
            },
            Error::Codec(c) => Error::Codec(CodecError::new(c.to_string())),
            Error::ShutDown => Error::ShutDown,
            Error::InvalidUri { uri, reason } => Error::InvalidUri {
                uri: uri.clone(),
                reason: reason.clone(),
            },
        }
    }
}

impl From<Corruption> for Error {
    fn from(c: Corruption) -> Error {
        Error::Corrupt(c)
    }
}

impl From<CodecError> for Error {
    fn from(c: CodecError) -> Error {
        Error::Codec(c)
    }
}

/// An item that could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(pub Box<dyn std::error::Error + Send + Sync>);

impl CodecError {
    /// Wraps any error.
    pub fn new(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        CodecError(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicated_errors_keep_their_kind_and_message() {
        let e = Error::io(
            IoOp::Write,
            7,
            io::Error::new(io::ErrorKind::TimedOut, "slow disk"),
        );
        let d = e.duplicate();
        assert_eq!(d.to_string(), e.to_string());
        assert!(
            matches!(d, Error::Io { op: IoOp::Write, sector: 7, ref source } if source.kind() == io::ErrorKind::TimedOut)
        );
        assert!(matches!(Error::ShutDown.duplicate(), Error::ShutDown));
    }
}
