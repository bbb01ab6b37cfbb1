//! Format 2: pure encoding, decoding and validation, no I/O.
//!
//! Format 2 is the opt-in format beside format 1 (see "Format 2" in
//! `FORMAT.md`): a self-describing, checksummed header in sector 0, state
//! sectors with a checksum, the ring's id, a generation, the producer's
//! `durable` position and an owner with its heartbeat, and records that
//! carry their length, their own stream position and a CRC32C seeded with
//! the ring id. Its constants live in [`crate::layout::v2`].
//!
//! As in [`crate::format`], nothing here trusts its input: decoders return
//! a [`Corruption`](crate::error::Corruption) or an
//! [`Error`](crate::Error) rather than panicking, a short buffer is read
//! as if zero padded (so it fails its checksum), and no length read from a
//! device sizes anything before it has been checked against the published
//! end.
//!
//! One file a part of the ring: [`ids`] (the identifiers), `fields` (the
//! little-endian fields and checksum of a 512-byte block), [`header`]
//! (sector 0 and detection), [`state`] (sectors 1 and 2), [`record`] (the
//! records), all re-exported here.
//!
//! The submodules hold the two decisions attach makes: [`lease`] (may this
//! process take a side?) and [`scan`] (how far do the records after the
//! last durable position really go?).

pub mod lease;
pub mod scan;

mod fields;
pub mod header;
pub mod ids;
pub mod record;
pub mod state;

pub use header::*;
pub use ids::*;
pub use record::*;
pub use state::*;
#[cfg(test)]
mod tests;
