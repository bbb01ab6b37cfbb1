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
//! a [`Corruption`] or an [`Error`] rather than panicking, a short buffer is
//! read as if zero padded (so it fails its checksum), and no length read
//! from a device sizes anything before it has been checked against the
//! published end.
//!
//! The submodules hold the two decisions attach makes: [`lease`] (may this
//! process take a side?) and [`scan`] (how far do the records after the
//! last durable position really go?).

use std::fmt;
use std::time::Duration;

use crate::error::{Corruption, Error, HeartbeatAge, Hex, RecordProblem, Side, SignatureProblem};
use crate::format::{Geometry, Label};
use crate::layout::{self, v2 as l};

pub mod lease;
pub mod scan;

// ---------------------------------------------------------------------------
// Identifiers

/// The 16 random bytes that identify a ring. Every state sector carries
/// it, and it seeds every record's CRC32C, so sectors and records of
/// another ring (a previous ring on the same device, a misdirected write)
/// are told apart from this ring's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RingId(pub [u8; l::ID_LEN]);

/// An owner token: 16 random bytes drawn at each attach. All zero means
/// "no owner".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Token(pub [u8; l::ID_LEN]);

/// A Linux boot id (`/proc/sys/kernel/random/boot_id`): random at every
/// boot, so equal boot ids mean the same running kernel. All zero means
/// unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct BootId(pub [u8; l::ID_LEN]);

macro_rules! hex_display {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                Hex(&self.0).fmt(f)
            }
        }
        impl $t {
            /// True when all bytes are zero.
            pub fn is_zero(&self) -> bool {
                self.0 == [0; l::ID_LEN]
            }
        }
    )*};
}
hex_display!(RingId, Token, BootId);

/// A host name as stored in a state sector: at most
/// [`OWNER_HOST_MAX`](l::OWNER_HOST_MAX) bytes, no zero byte. Kept as
/// bytes (a host name need not be UTF-8); compared byte for byte.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HostName {
    bytes: [u8; l::OWNER_HOST_MAX],
    len: u8,
}

impl HostName {
    /// No host name.
    pub const EMPTY: HostName = HostName {
        bytes: [0; l::OWNER_HOST_MAX],
        len: 0,
    };

    /// `name` up to its first zero byte, truncated to 64 bytes (at a
    /// character boundary when it is UTF-8).
    pub fn new(name: &[u8]) -> HostName {
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        let mut len = name.len().min(l::OWNER_HOST_MAX);
        if let Ok(text) = std::str::from_utf8(name) {
            while !text.is_char_boundary(len) {
                len -= 1;
            }
        }
        let mut bytes = [0; l::OWNER_HOST_MAX];
        bytes[..len].copy_from_slice(&name[..len]);
        HostName {
            bytes,
            // len <= 64 fits a u8.
            len: len as u8,
        }
    }

    /// The name's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// True for an empty name.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Debug for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostName(\"{}\")", self)
    }
}

/// Escaped: a host name read from a device is untrusted.
impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::escape::escape_bytes(self.as_bytes()).fmt(f)
    }
}

/// Who owns a side of a format-2 ring: what its state sector records about
/// the process that last took it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Owner {
    /// Random per attach; zero: no owner.
    pub token: Token,
    /// The owner's boot id; zero: unknown.
    pub boot_id: BootId,
    /// The owner's process id (in its pid namespace); zero: unknown.
    pub pid: u32,
    /// The owner's pid namespace (inode number of `/proc/self/ns/pid`);
    /// zero: unknown.
    pub pid_namespace: u32,
    /// The owner's host name.
    pub host: HostName,
}

impl Owner {
    /// No owner: every field zero.
    pub const NONE: Owner = Owner {
        token: Token([0; l::ID_LEN]),
        boot_id: BootId([0; l::ID_LEN]),
        pid: 0,
        pid_namespace: 0,
        host: HostName::EMPTY,
    };

    /// True when nobody owns the side (a zero token).
    pub fn is_none(&self) -> bool {
        self.token.is_zero()
    }
}

/// `host (pid N)`, as error messages name an owner.
impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.is_empty() {
            f.write_str("an unnamed host")?;
        } else {
            self.host.fmt(f)?;
        }
        write!(f, " (pid {})", self.pid)
    }
}

// ---------------------------------------------------------------------------
// Little-endian fields of a 512-byte block

/// The first 512 bytes of `sector`, zero padded when it is shorter (a
/// library bug, never a device's: sectors are at least 512 bytes), so
/// decoders never index out of bounds; a padded block fails its checksum.
fn block(sector: &[u8]) -> [u8; l::HEADER_LEN] {
    let mut b = [0u8; l::HEADER_LEN];
    let n = sector.len().min(l::HEADER_LEN);
    b[..n].copy_from_slice(&sector[..n]);
    b
}

fn get_u32(b: &[u8; l::HEADER_LEN], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn get_u64(b: &[u8; l::HEADER_LEN], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

fn get_id(b: &[u8; l::HEADER_LEN], at: usize) -> [u8; l::ID_LEN] {
    let mut x = [0u8; l::ID_LEN];
    x.copy_from_slice(&b[at..at + l::ID_LEN]);
    x
}

/// Checks the CRC32C at [`CHECKSUM_OFFSET`](l::CHECKSUM_OFFSET).
fn check_block_checksum(b: &[u8; l::HEADER_LEN], sector: u64) -> Result<(), Corruption> {
    let expected = crc32c::crc32c(&b[..l::CHECKSUM_OFFSET]);
    let found = get_u32(b, l::CHECKSUM_OFFSET);
    if expected == found {
        Ok(())
    } else {
        Err(Corruption::BadChecksum {
            sector,
            byte: l::CHECKSUM_OFFSET,
            expected,
            found,
        })
    }
}

/// Zeroes `sector`, lets `fill` write the first 512 bytes, then stores
/// their checksum. Bytes past 512 of a larger sector stay zero.
fn encode_block(sector: &mut [u8], fill: impl FnOnce(&mut [u8])) {
    sector.fill(0);
    let n = sector.len().min(l::HEADER_LEN);
    let b = &mut sector[..n];
    if n < l::HEADER_LEN {
        // Not a sector of a valid geometry; leave it zero (it will fail
        // its checksum) rather than panic.
        return;
    }
    fill(b);
    let crc = crc32c::crc32c(&b[..l::CHECKSUM_OFFSET]);
    b[l::CHECKSUM_OFFSET..].copy_from_slice(&crc.to_le_bytes());
}

// ---------------------------------------------------------------------------
// Sector 0: the header

/// The header of a format-2 ring (sector 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// The sector size the ring was created with.
    pub sector_size: u32,
    /// The device size in sectors at creation.
    pub sectors: u64,
    /// The ring's id.
    pub ring_id: RingId,
    /// Creation time: Unix time in nanoseconds.
    pub created: u64,
    /// The owner lease, in milliseconds (at least 1).
    pub lease_ms: u32,
    /// Feature flags: always [`KNOWN_FLAGS`](l::KNOWN_FLAGS) once decoded.
    pub flags: u32,
}

impl Header {
    /// The header of a new ring on `geometry`.
    ///
    /// # Errors
    /// [`Error::BadLease`] unless `lease` is from 1 ms to `u32::MAX` ms.
    pub fn new(
        geometry: &Geometry,
        ring_id: RingId,
        created: u64,
        lease: Duration,
    ) -> Result<Header, Error> {
        let millis = lease.as_millis();
        let lease_ms = match u32::try_from(millis) {
            Ok(ms) if ms > 0 => ms,
            _ => return Err(Error::BadLease { millis }),
        };
        Ok(Header {
            // Geometry guarantees at most 64 KiB.
            sector_size: geometry.sector_size() as u32,
            sectors: geometry.sectors(),
            ring_id,
            created,
            lease_ms,
            flags: l::KNOWN_FLAGS,
        })
    }

    /// The owner lease.
    pub fn lease(&self) -> Duration {
        Duration::from_millis(u64::from(self.lease_ms))
    }

    /// Checks that the ring fits a device opened with `sector_size`-byte
    /// sectors and `sectors` sectors.
    ///
    /// # Errors
    /// [`Error::WrongSectorSize`] (checked first: with the wrong sector
    /// size the sector count is wrong too), then [`Error::WrongDeviceSize`].
    pub fn check_device(&self, sector_size: usize, sectors: u64) -> Result<(), Error> {
        if self.sector_size as usize != sector_size {
            return Err(Error::WrongSectorSize {
                ring: self.sector_size,
                device: sector_size,
            });
        }
        if self.sectors != sectors {
            return Err(Error::WrongDeviceSize {
                ring: self.sectors,
                device: sectors,
                sector_size,
            });
        }
        Ok(())
    }

    /// The ring's geometry, as recorded.
    ///
    /// # Errors
    /// As [`Geometry::new`]; never for a decoded header, whose fields were
    /// checked.
    pub fn geometry(&self) -> Result<Geometry, Error> {
        Geometry::new(self.sector_size as usize, self.sectors)
    }
}

/// Writes the header sector: the fields, zeroes, and the CRC32C of bytes
/// `0..508` at byte 508. Bytes past 512 of a larger sector are zero.
pub fn encode_header(header: &Header, sector: &mut [u8]) {
    encode_block(sector, |b| {
        b[..l::MAGIC_LEN].copy_from_slice(l::MAGIC);
        b[l::VERSION_OFFSET..][..4].copy_from_slice(&l::VERSION.to_le_bytes());
        b[l::SECTOR_SIZE_OFFSET..][..4].copy_from_slice(&header.sector_size.to_le_bytes());
        b[l::DEVICE_SECTORS_OFFSET..][..8].copy_from_slice(&header.sectors.to_le_bytes());
        b[l::RING_ID_OFFSET..][..l::ID_LEN].copy_from_slice(&header.ring_id.0);
        b[l::CREATED_OFFSET..][..8].copy_from_slice(&header.created.to_le_bytes());
        b[l::LEASE_OFFSET..][..4].copy_from_slice(&header.lease_ms.to_le_bytes());
        b[l::FLAGS_OFFSET..][..4].copy_from_slice(&header.flags.to_le_bytes());
    });
}

/// True when sector 0 starts with the format-2 magic.
pub fn has_magic(sector: &[u8]) -> bool {
    sector.len() >= l::MAGIC_LEN && sector[..l::MAGIC_LEN] == l::MAGIC[..]
}

/// Decodes a header sector. The checks run in this order, so that a
/// damaged header is reported as damaged, not as a newer version: magic,
/// checksum, version, flags, then the fields (sector size, device size,
/// lease).
///
/// # Errors
/// [`Error::NotInitialised`] without the magic;
/// [`Corruption::BadChecksum`] (sector 0, byte 508);
/// [`Error::UnsupportedFormat`] for another version or unknown flags;
/// [`Corruption::BadField`] for an impossible sector size, device size or
/// a zero lease.
pub fn decode_header(sector: &[u8]) -> Result<Header, Error> {
    if !has_magic(sector) {
        return Err(Error::NotInitialised(not_a_ring(sector)));
    }
    let b = block(sector);
    check_block_checksum(&b, layout::SIGNATURE_SECTOR)?;
    let version = get_u32(&b, l::VERSION_OFFSET);
    let flags = get_u32(&b, l::FLAGS_OFFSET);
    if version != l::VERSION || flags & !l::KNOWN_FLAGS != 0 {
        return Err(Error::UnsupportedFormat { version, flags });
    }
    let header = Header {
        sector_size: get_u32(&b, l::SECTOR_SIZE_OFFSET),
        sectors: get_u64(&b, l::DEVICE_SECTORS_OFFSET),
        ring_id: RingId(get_id(&b, l::RING_ID_OFFSET)),
        created: get_u64(&b, l::CREATED_OFFSET),
        lease_ms: get_u32(&b, l::LEASE_OFFSET),
        flags,
    };
    let field = |byte, field, found: u64, expected: String| {
        Error::Corrupt(Corruption::BadField {
            sector: layout::SIGNATURE_SECTOR,
            byte,
            field,
            found,
            expected,
        })
    };
    if let Err(e) = header.geometry() {
        return Err(match e {
            Error::TooSmall { .. } => field(
                l::DEVICE_SECTORS_OFFSET,
                "device size in sectors",
                header.sectors,
                format!("at least {}", layout::MIN_SECTORS),
            ),
            _ => field(
                l::SECTOR_SIZE_OFFSET,
                "sector size",
                u64::from(header.sector_size),
                format!(
                    "a power of two from {} to {} whose device size fits in a u64",
                    layout::MIN_SECTOR_SIZE,
                    layout::MAX_SECTOR_SIZE
                ),
            ),
        });
    }
    if header.lease_ms == 0 {
        return Err(field(
            l::LEASE_OFFSET,
            "lease in milliseconds",
            0,
            "at least 1".into(),
        ));
    }
    Ok(header)
}

/// What sector 0 of a device holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detected {
    /// Format 1's signature (the OCaml library's format).
    Format1,
    /// A valid format-2 header.
    Format2(Header),
    /// No ring: blank (all zero) or something else.
    NotARing(SignatureProblem),
}

/// Sector 0 without either format's mark: blank when the bytes where a
/// mark would be are zero, else foreign (showing the first 32 bytes).
fn not_a_ring(sector: &[u8]) -> SignatureProblem {
    let found = &sector[..sector.len().min(l::MAGIC_LEN)];
    if found.iter().all(|&b| b == 0) {
        SignatureProblem::Blank
    } else {
        SignatureProblem::Foreign {
            found: found.to_vec(),
        }
    }
}

/// Detects the format of a ring from its sector 0 and, for format 2,
/// checks the header against the device (`geometry`: the device's sector
/// size and sector count as opened).
///
/// # Errors
/// For a sector 0 with the format-2 magic: as [`decode_header`], then as
/// [`Header::check_device`]. Format 1 and a missing ring are not errors
/// here.
pub fn detect(sector: &[u8], geometry: &Geometry) -> Result<Detected, Error> {
    if crate::format::check_signature(sector).is_ok() {
        return Ok(Detected::Format1);
    }
    if !has_magic(sector) {
        return Ok(Detected::NotARing(not_a_ring(sector)));
    }
    let header = decode_header(sector)?;
    header.check_device(geometry.sector_size(), geometry.sectors())?;
    Ok(Detected::Format2(header))
}

// ---------------------------------------------------------------------------
// Sectors 1 and 2: the states

/// One side's state in format 2 (sector 1 for the producer, 2 for the
/// consumer). The ring id is not part of it: it is the header's, written
/// with every state and checked on every read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct State {
    /// Stream position: `P` (producer) or `C` (consumer).
    pub position: u64,
    /// `suspend_ack` (producer) or `suspend` (consumer).
    pub flag: bool,
    /// +1 on every write of the sector.
    pub generation: u64,
    /// Producer: the last position whose records are known durable (at
    /// most `position`). Consumer: zero.
    pub durable: u64,
    /// Unix time (ns) of this write.
    pub heartbeat: u64,
    /// Who owns the side.
    pub owner: Owner,
    /// Producer: its epoch, +1 at every producer attach; every record it
    /// writes carries it. Consumer: zero.
    pub epoch: u64,
}

impl State {
    /// The state of a new ring: position 0, flag false, generation 0, no
    /// owner, no heartbeat.
    pub const EMPTY: State = State {
        position: 0,
        flag: false,
        generation: 0,
        durable: 0,
        heartbeat: 0,
        owner: Owner::NONE,
        epoch: 0,
    };

    /// How long ago (by `now`, Unix ns) the heartbeat was written.
    pub fn heartbeat_age(&self, now: u64) -> HeartbeatAge {
        HeartbeatAge::between(self.heartbeat, now)
    }

    /// The next write of this side: generation + 1, the given heartbeat.
    pub fn next(&self, heartbeat: u64) -> State {
        State {
            generation: self.generation.wrapping_add(1),
            heartbeat,
            ..*self
        }
    }
}

/// Writes a state sector for `side` of ring `ring_id`: the fields, the
/// sector tag, the text (when `label` is given: as format 1's, truncated to
/// 252 bytes), and the CRC32C. The consumer's `durable` and `epoch` are
/// written as zero whatever `state` says.
pub fn encode_state(
    side: Side,
    ring_id: &RingId,
    state: &State,
    label: Option<Label<'_>>,
    sector: &mut [u8],
) {
    encode_block(sector, |b| {
        b[l::POSITION_OFFSET..][..8].copy_from_slice(&state.position.to_le_bytes());
        b[l::FLAG_OFFSET] = if state.flag {
            layout::FLAG_TRUE
        } else {
            layout::FLAG_FALSE
        };
        // Sectors 1 and 2: the tag fits a byte.
        b[l::SECTOR_TAG_OFFSET] = side.sector() as u8;
        b[l::STATE_RING_ID_OFFSET..][..l::ID_LEN].copy_from_slice(&ring_id.0);
        b[l::GENERATION_OFFSET..][..8].copy_from_slice(&state.generation.to_le_bytes());
        let (durable, epoch) = match side {
            Side::Producer => (state.durable, state.epoch),
            Side::Consumer => (0, 0),
        };
        b[l::DURABLE_OFFSET..][..8].copy_from_slice(&durable.to_le_bytes());
        b[l::EPOCH_OFFSET..][..8].copy_from_slice(&epoch.to_le_bytes());
        b[l::HEARTBEAT_OFFSET..][..8].copy_from_slice(&state.heartbeat.to_le_bytes());
        let o = &state.owner;
        b[l::OWNER_TOKEN_OFFSET..][..l::ID_LEN].copy_from_slice(&o.token.0);
        b[l::OWNER_BOOT_ID_OFFSET..][..l::ID_LEN].copy_from_slice(&o.boot_id.0);
        b[l::OWNER_PID_OFFSET..][..4].copy_from_slice(&o.pid.to_le_bytes());
        b[l::OWNER_PID_NS_OFFSET..][..4].copy_from_slice(&o.pid_namespace.to_le_bytes());
        b[l::OWNER_HOST_OFFSET..][..o.host.as_bytes().len()].copy_from_slice(o.host.as_bytes());
        if let Some(label) = label {
            let legacy = crate::format::State {
                position: state.position,
                flag: state.flag,
            };
            crate::format::write_label_text(
                side,
                legacy,
                label,
                &mut b[l::STATE_TEXT_OFFSET..l::STATE_TEXT_OFFSET + l::STATE_TEXT_MAX],
            );
        }
    });
}

/// Reads `side`'s state sector of ring `ring_id`. Checks, in order: the
/// checksum, the sector tag, the ring id, the flag, the alignment of the
/// position (and of `durable`), the position at most
/// [`MAX_POSITION`](l::MAX_POSITION), `durable <= position` (producer), and
/// a zero `durable` and `epoch` (consumer).
///
/// # Errors
/// [`Corruption::BadChecksum`], [`Corruption::WrongSectorTag`],
/// [`Corruption::WrongRing`], [`Corruption::BadFlag`] or
/// [`Corruption::BadField`], each naming the sector and byte.
pub fn decode_state(side: Side, ring_id: &RingId, sector: &[u8]) -> Result<State, Corruption> {
    let b = block(sector);
    let sector_no = side.sector();
    check_block_checksum(&b, sector_no)?;
    let tag = b[l::SECTOR_TAG_OFFSET];
    if u64::from(tag) != sector_no {
        return Err(Corruption::WrongSectorTag {
            sector: sector_no,
            byte: l::SECTOR_TAG_OFFSET,
            found: tag,
        });
    }
    let found = get_id(&b, l::STATE_RING_ID_OFFSET);
    if found != ring_id.0 {
        return Err(Corruption::WrongRing {
            sector: sector_no,
            byte: l::STATE_RING_ID_OFFSET,
            expected: ring_id.0,
            found,
        });
    }
    let flag = match b[l::FLAG_OFFSET] {
        layout::FLAG_TRUE => true,
        layout::FLAG_FALSE => false,
        value => return Err(Corruption::BadFlag { side, value }),
    };
    let position = get_u64(&b, l::POSITION_OFFSET);
    let durable = get_u64(&b, l::DURABLE_OFFSET);
    let bad = |byte, field, found, expected: String| Corruption::BadField {
        sector: sector_no,
        byte,
        field,
        found,
        expected,
    };
    let aligned = format!("a multiple of {}", l::RECORD_ALIGN);
    if position % l::RECORD_ALIGN != 0 {
        return Err(bad(
            l::POSITION_OFFSET,
            position_field(side),
            position,
            aligned,
        ));
    }
    if position > l::MAX_POSITION {
        return Err(bad(
            l::POSITION_OFFSET,
            position_field(side),
            position,
            format!("at most {} (2^63 - 8)", l::MAX_POSITION),
        ));
    }
    let epoch = get_u64(&b, l::EPOCH_OFFSET);
    match side {
        Side::Producer if durable % l::RECORD_ALIGN != 0 => {
            return Err(bad(l::DURABLE_OFFSET, "durable position", durable, aligned))
        }
        Side::Producer if durable > position => {
            return Err(bad(
                l::DURABLE_OFFSET,
                "durable position",
                durable,
                format!("at most the producer position {position}"),
            ))
        }
        Side::Consumer if durable != 0 => {
            return Err(bad(
                l::DURABLE_OFFSET,
                "consumer's durable field",
                durable,
                "0".into(),
            ))
        }
        Side::Consumer if epoch != 0 => {
            return Err(bad(
                l::EPOCH_OFFSET,
                "consumer's epoch field",
                epoch,
                "0".into(),
            ))
        }
        _ => {}
    }
    Ok(State {
        position,
        flag,
        generation: get_u64(&b, l::GENERATION_OFFSET),
        durable,
        heartbeat: get_u64(&b, l::HEARTBEAT_OFFSET),
        owner: Owner {
            token: Token(get_id(&b, l::OWNER_TOKEN_OFFSET)),
            boot_id: BootId(get_id(&b, l::OWNER_BOOT_ID_OFFSET)),
            pid: get_u32(&b, l::OWNER_PID_OFFSET),
            pid_namespace: get_u32(&b, l::OWNER_PID_NS_OFFSET),
            host: HostName::new(&b[l::OWNER_HOST_OFFSET..l::OWNER_HOST_OFFSET + l::OWNER_HOST_MAX]),
        },
        epoch,
    })
}

fn position_field(side: Side) -> &'static str {
    match side {
        Side::Producer => "producer position",
        Side::Consumer => "consumer position",
    }
}

/// The human-readable text of a format-2 state sector (up to its first
/// zero byte), raw: escape it before showing it.
pub fn state_text(sector: &[u8]) -> &[u8] {
    let end = (l::STATE_TEXT_OFFSET + l::STATE_TEXT_MAX).min(sector.len());
    let text = &sector[l::STATE_TEXT_OFFSET.min(end)..end];
    let n = text.iter().position(|&b| b == 0).unwrap_or(text.len());
    &text[..n]
}

/// Checks the two decoded states against each other and the capacity:
/// `C <= P <= C + capacity`. (Alignment and `durable <= P` are checked by
/// [`decode_state`].)
///
/// # Errors
/// [`Corruption::ConsumerAheadOfProducer`] or [`Corruption::UsedExceedsCapacity`].
pub fn check_states(producer: &State, consumer: &State, capacity: u64) -> Result<(), Corruption> {
    crate::format::check_positions(producer.position, consumer.position, capacity)
}

/// Where the recovery scan starts: `max(C, durable)`. Records before it
/// were made durable by a completed flush (or already released).
pub fn scan_start(producer: &State, consumer: &State) -> u64 {
    consumer.position.max(producer.durable)
}

// ---------------------------------------------------------------------------
// Records

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

#[cfg(test)]
mod tests;
