//! A durable single-producer, single-consumer queue of variable-length items
//! stored directly on a block device, on-disk compatible with the OCaml
//! `shared-block-ring` library (MirageOS / xapi-project).
//!
//! # How the pieces connect
//!
//! * A [`BlockDevice`] is where the ring lives: a [`FileDevice`] (a regular
//!   file or a kernel block device, with O_DIRECT), an [`NbdDevice`] (an
//!   export of an NBD server such as qemu-nbd or nbdkit, for hosts that
//!   share no disk), a [`MemDevice`] for tests, or anything else that reads
//!   and writes sectors. [`device::open`] picks one from a path or URI. A
//!   [`device::FaultDevice`] wraps any of them to simulate crashes, power
//!   cuts and I/O errors in tests.
//! * [`create`] writes an empty ring onto a device.
//! * A [`Producer`] pushes items and publishes them with `advance`; a
//!   [`Consumer`] pops them and releases them with its own `advance`. The two
//!   may be in different processes, or on different hosts sharing the disk:
//!   the device is their only channel.
//! * Items are bytes by default; a [`Codec`] maps them to any other type
//!   ([`Utf8`], [`Json`]).
//! * [`Durability`] chooses what an `advance` survives: a power cut (the
//!   default) or only a process crash (the original's behaviour, faster).
//! * Format 2 (opt-in; not readable by the OCaml library): checksummed
//!   records, one flush per publication and an owner lease per side.
//!   [`ring2::create`] (or [`create_with`] and [`Options::format`]) writes
//!   such a ring; `Producer`, `Consumer` and `Journal` detect the format at
//!   attach and speak both. [`format::v2`] is its codec with the lease
//!   decision and the recovery scan; [`inspect::v2`] reads it.
//! * With the `tokio` feature, the `asynchronous` module wraps the producer,
//!   the consumer and the journal for async code: `AsyncProducer`,
//!   `AsyncConsumer` (with a `Stream` of items) and `AsyncJournal`.
//!
//! The on-disk format is documented in `FORMAT.md` beside the crate
//! sources, and every layout constant lives in [`layout`]. What survives
//! which crash, the assumptions about the device, and the tests that prove
//! it are in `RELIABILITY.md` beside it.
//!
//! # Example
//!
//! ```
//! use shared_block_ring::{create, Consumer, MemDevice, Options, Producer};
//!
//! # fn main() -> Result<(), shared_block_ring::Error> {
//! // 64 sectors of 512 bytes; a FileDevice works the same way.
//! let disk = MemDevice::new(512, 64);
//! create(&disk)?;
//!
//! let mut producer = Producer::attach(disk.clone(), Options::new())?;
//! let mut consumer = Consumer::attach(disk, Options::new())?;
//!
//! // Pushed items are invisible until the producer advances past them.
//! producer.push(b"hello")?;
//! let end = producer.push(b"world")?;
//! assert!(consumer.pop().unwrap_err().is_retry());
//! producer.advance(end)?;
//!
//! // pop peeks; advance releases.
//! let (next, item) = consumer.pop()?;
//! assert_eq!(item, b"hello");
//! consumer.advance(next)?;
//! let (next, item) = consumer.pop()?;
//! assert_eq!(item, b"world");
//! consumer.advance(next)?;
//! # Ok(())
//! # }
//! ```
//!
//! # Journal
//!
//! A [`Journal`] keeps both ends of a ring in one process: `push` stores an
//! operation on the device and returns, and a worker thread performs the
//! operations in batches, in order, at least once, even across crashes
//! (the next `start` performs what was left). The [`journal`] module
//! documents its guarantees precisely.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use shared_block_ring::{Journal, JournalOptions, MemDevice};
//!
//! # fn main() -> Result<(), shared_block_ring::Error> {
//! let disk = MemDevice::new(512, 64); // blank: the journal creates a ring
//! let performed = Arc::new(Mutex::new(Vec::new()));
//! let sink = performed.clone();
//! let journal = Journal::start(disk, JournalOptions::new(), move |ops: &[Vec<u8>]| {
//!     // Idempotent work goes here; an Err retries the same batch later.
//!     sink.lock().unwrap().extend_from_slice(ops);
//!     Ok::<(), std::io::Error>(())
//! })?;
//!
//! journal.push(b"first")?;
//! let waiter = journal.push(b"second")?; // on the device when push returns
//! waiter.sync()?; // performed, with everything pushed before it
//! assert_eq!(*performed.lock().unwrap(), [b"first".to_vec(), b"second".to_vec()]);
//! journal.shutdown();
//! # Ok(())
//! # }
//! ```
//!
//! # Errors
//!
//! Every fallible operation returns [`Error`]. [`Error::Retry`] (full,
//! empty, or a handshake waiting for the other side) and
//! [`Error::Suspended`] are not faults: [`Error::is_transient`] tells them
//! from the rest. Everything read from a device is validated before use; a
//! corrupt ring gives [`Error::Corrupt`] naming the sector, byte and value.

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(feature = "tokio")]
pub mod asynchronous;
mod backoff;
pub mod codec;
mod consumer;
pub mod device;
pub mod erase;
mod error;
pub mod escape;
pub mod format;
pub mod host;
pub mod inspect;
pub mod journal;
pub mod layout;
mod position;
mod producer;
mod ring;
pub mod ring2;
mod sync;
#[cfg(feature = "shuttle")]
#[doc(hidden)]
pub use sync::model_clock;

#[cfg(feature = "tokio")]
pub use asynchronous::{AsyncConsumer, AsyncJournal, AsyncProducer, ItemStream, Performed};
pub use backoff::Backoff;
#[cfg(feature = "json")]
pub use codec::Json;
pub use codec::{Bytes, Codec, Utf8};
pub use consumer::Consumer;
pub use device::{AlignedBuf, BlockDevice, FileDevice, FileOptions, MemDevice, NbdDevice};
pub use error::{
    CodecError, Corruption, Error, HeartbeatAge, IoOp, RecordProblem, Result, RetryReason, Side,
    SignatureProblem,
};
pub use format::Geometry;
pub use journal::{Journal, JournalOptions, JournalStats, Waiter};
pub use position::Position;
pub use producer::Producer;
pub use ring::{create, create_with, Created, Durability, Options, RingFormat, RingState};

/// A directory for test files on a filesystem that supports O_DIRECT
/// (`/tmp` may be tmpfs): `target/tmp` of this workspace.
#[cfg(test)]
pub(crate) fn test_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tmp");
    std::fs::create_dir_all(&dir).expect("create target/tmp");
    dir
}
