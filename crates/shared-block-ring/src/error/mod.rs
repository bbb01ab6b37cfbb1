//! The one error type of the library.
//!
//! Every operation returns [`Error`]. Two variants are not faults but
//! "not now": [`Error::Retry`] (no space, no item, or a handshake still
//! waiting for the other side) and [`Error::Suspended`]. Everything else is
//! fatal for the handle that returned it. [`Error::is_transient`] tells them
//! apart.
//!
//! This file holds [`Error`] and the smaller types its variants carry
//! ([`RetryReason`], [`SignatureProblem`], [`Side`], [`HeartbeatAge`],
//! [`IoOp`], [`CodecError`]); `corruption.rs` holds [`Corruption`] and
//! [`RecordProblem`], what an invalid ring holds and where, with their
//! messages; `tests.rs` the unit tests.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::layout;

mod corruption;

pub(crate) use corruption::Hex;
pub use corruption::{Corruption, RecordProblem};

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

    /// The other side.
    pub const fn other(self) -> Side {
        match self {
            Side::Producer => Side::Consumer,
            Side::Consumer => Side::Producer,
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

/// How long ago an owner last wrote its heartbeat, by our clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeartbeatAge {
    /// The heartbeat is this long before now.
    Ago(std::time::Duration),
    /// The heartbeat is this far after now: the clocks disagree.
    InFuture(std::time::Duration),
    /// The owner never wrote a heartbeat (zero).
    Never,
}

impl HeartbeatAge {
    /// The age of `heartbeat` (Unix time, ns) at `now` (Unix time, ns).
    pub fn between(heartbeat: u64, now: u64) -> HeartbeatAge {
        if heartbeat == 0 {
            HeartbeatAge::Never
        } else if heartbeat <= now {
            HeartbeatAge::Ago(std::time::Duration::from_nanos(now - heartbeat))
        } else {
            HeartbeatAge::InFuture(std::time::Duration::from_nanos(heartbeat - now))
        }
    }
}

impl fmt::Display for HeartbeatAge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeartbeatAge::Ago(d) => write!(f, "last seen {:.1} s ago", d.as_secs_f64()),
            HeartbeatAge::InFuture(d) => write!(
                f,
                "last seen {:.1} s in the future by this host's clock (the clocks disagree)",
                d.as_secs_f64()
            ),
            HeartbeatAge::Never => f.write_str("never seen (no heartbeat)"),
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

    /// Format 2: sector 0 holds a format-2 header of another version, or
    /// with feature flags this library does not know.
    #[error(
        "sector 0 holds a ring of format 2 version {version} with flags {flags:#x}: it needs a newer \
         version of shared-block-ring (this one reads version {}, flags {:#x})",
        layout::v2::VERSION,
        layout::v2::KNOWN_FLAGS
    )]
    UnsupportedFormat {
        /// The version found (sector 0 bytes 32..36).
        version: u32,
        /// The flags found (sector 0 bytes 76..80).
        flags: u32,
    },

    /// Format 2: the device is opened with another sector size than the
    /// ring was created with.
    #[error(
        "the ring was created with {ring}-byte sectors (sector 0 bytes 36..40), but the device is \
         opened with {device}-byte sectors: open it with a sector size of {ring} (--sector-size {ring})"
    )]
    WrongSectorSize {
        /// The sector size recorded in the header.
        ring: u32,
        /// The sector size the device was opened with.
        device: usize,
    },

    /// Format 2: the device has another size than the ring was created on.
    #[error(
        "the ring was created on a device of {ring} sectors (sector 0 bytes 40..48), but this device \
         has {device} sectors of {sector_size} bytes: is it the right device, or was it resized?"
    )]
    WrongDeviceSize {
        /// The device size recorded in the header, in sectors.
        ring: u64,
        /// The device's size now, in sectors.
        device: u64,
        /// The sector size.
        sector_size: usize,
    },

    /// The device holds a ring of another format than the one asked for.
    #[error("the device holds a format-{found} ring; this operation needs format {expected}")]
    WrongFormat {
        /// The format found on the device.
        found: u32,
        /// The format asked for.
        expected: u32,
    },

    /// Format 2: a lease that cannot be recorded.
    #[error(
        "invalid lease of {millis} ms: it must be from 1 ms to {} ms",
        u32::MAX
    )]
    BadLease {
        /// The lease asked for, in milliseconds.
        millis: u128,
    },

    /// The system gave no random bytes (for a ring id or an owner token).
    #[error("cannot draw random bytes for a ring id or an owner token: {source}")]
    NoRandomness {
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// Format 2: this side of the ring has a live owner.
    #[error("the {side} side of this ring is owned by {owner}, {last_seen}")]
    Owned {
        /// The side asked for.
        side: Side,
        /// Who owns it: `host (pid N)`.
        owner: String,
        /// When its heartbeat was last written, by our clock.
        last_seen: HeartbeatAge,
    },

    /// Format 2: this side's owner stopped writing heartbeats longer than
    /// the lease ago; taking over must be asked for explicitly.
    #[error(
        "the {side} side of this ring is owned by {owner}, {last_seen}: its lease of {:.1} s has \
         expired; if that owner is gone, take over (Options::take_over(true), or --take-over in sbr)",
        lease.as_secs_f64()
    )]
    LeaseExpired {
        /// The side asked for.
        side: Side,
        /// Who owns it: `host (pid N)`.
        owner: String,
        /// When its heartbeat was last written, by our clock.
        last_seen: HeartbeatAge,
        /// The ring's lease.
        lease: std::time::Duration,
    },

    /// Format 2: another owner took this side over; this handle writes
    /// nothing more.
    #[error(
        "this {side} was displaced: {by} took the {side} side over (its heartbeat says Unix time \
         {}.{:03} s); this handle stops and writes nothing more",
        at / 1_000_000_000,
        at % 1_000_000_000 / 1_000_000
    )]
    Displaced {
        /// The side.
        side: Side,
        /// The new owner: `host (pid N)`.
        by: String,
        /// The new owner's heartbeat (Unix time, ns).
        at: u64,
    },
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

    /// True when another owner holds (or took over) this side of a format-2
    /// ring: [`Error::Owned`], [`Error::LeaseExpired`], [`Error::Displaced`].
    /// Not transient: retrying the same call does not help.
    pub fn is_ownership(&self) -> bool {
        matches!(
            self,
            Error::Owned { .. } | Error::LeaseExpired { .. } | Error::Displaced { .. }
        )
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
            Error::UnsupportedFormat { version, flags } => Error::UnsupportedFormat {
                version: *version,
                flags: *flags,
            },
            Error::WrongSectorSize { ring, device } => Error::WrongSectorSize {
                ring: *ring,
                device: *device,
            },
            Error::WrongDeviceSize {
                ring,
                device,
                sector_size,
            } => Error::WrongDeviceSize {
                ring: *ring,
                device: *device,
                sector_size: *sector_size,
            },
            Error::WrongFormat { found, expected } => Error::WrongFormat {
                found: *found,
                expected: *expected,
            },
            Error::BadLease { millis } => Error::BadLease { millis: *millis },
            Error::NoRandomness { source } => Error::NoRandomness {
                source: io_copy(source),
            },
            Error::Owned {
                side,
                owner,
                last_seen,
            } => Error::Owned {
                side: *side,
                owner: owner.clone(),
                last_seen: *last_seen,
            },
            Error::LeaseExpired {
                side,
                owner,
                last_seen,
                lease,
            } => Error::LeaseExpired {
                side: *side,
                owner: owner.clone(),
                last_seen: *last_seen,
                lease: *lease,
            },
            Error::Displaced { side, by, at } => Error::Displaced {
                side: *side,
                by: by.clone(),
                at: *at,
            },
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
mod tests;
