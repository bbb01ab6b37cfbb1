//! What producer and consumer share: options, ring creation, and the I/O
//! of state sectors and data runs, in either format.
//!
//! The producer and the consumer are written once for both formats. What
//! differs lives here: [`Link`] (in `link`) attaches to a ring of either
//! format and reads and writes its state sectors, with format 2's owner
//! lease (in `owned`), and says where a producer's flushes go
//! (`Publication`); [`Items`] (in `items`) lays out and checks items or
//! records.

use std::time::Duration;

use crate::device::{AlignedBuf, BlockDevice};
use crate::error::{Error, IoOp, Result, Side};
use crate::format::{self, Geometry, State};
use crate::layout;

mod items;
mod link;
mod owned;

pub(crate) use items::Items;
pub(crate) use link::{Link, SideState};

/// What a published item survives. Both modes use O_DIRECT on files, so
/// both sides always see each other's completed writes; they differ in
/// when the device's volatile write cache is flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[non_exhaustive]
pub enum Durability {
    /// Survives a power cut (the default). The producer flushes the item
    /// data before it writes the pointer that publishes it, and `advance`
    /// (either side) returns only once the new pointer is on stable
    /// storage. Costs two cache flushes per producer `advance` and one per
    /// consumer `advance`, whatever the number of items.
    #[default]
    PowerLoss,
    /// Survives a crash of either process, not a power cut: the original
    /// library's behaviour. Writes complete to the device (visible to the
    /// other side) but nothing is flushed, so a power cut may lose recent
    /// advances or, on a device that reorders cached writes, publish a
    /// pointer whose data was lost.
    ProcessCrash,
}

impl Durability {
    /// A short name, for logs and command lines: `power-loss`, `process-crash`.
    pub const fn name(self) -> &'static str {
        match self {
            Durability::PowerLoss => "power-loss",
            Durability::ProcessCrash => "process-crash",
        }
    }
}

impl std::fmt::Display for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Durability {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "power-loss" => Ok(Durability::PowerLoss),
            "process-crash" => Ok(Durability::ProcessCrash),
            other => Err(format!(
                "unknown durability mode {other:?}: expected power-loss or process-crash"
            )),
        }
    }
}

/// The on-disk format of a ring. Attach detects it; it is chosen when a
/// ring is created ([`create_with`], [`Options::format`], the journal on a
/// blank device).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[non_exhaustive]
pub enum RingFormat {
    /// Format 1: the OCaml library's format (the default).
    #[default]
    V1,
    /// Format 2: checksummed records, one cache flush per publication, and
    /// an owner lease per side. The OCaml library cannot read it.
    V2,
}

impl RingFormat {
    /// The format's number: 1 or 2.
    pub const fn number(self) -> u32 {
        match self {
            RingFormat::V1 => 1,
            RingFormat::V2 => 2,
        }
    }
}

impl std::fmt::Display for RingFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.number())
    }
}

impl std::str::FromStr for RingFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "1" => Ok(RingFormat::V1),
            "2" => Ok(RingFormat::V2),
            other => Err(format!("unknown ring format {other:?}: expected 1 or 2")),
        }
    }
}

/// Options for attaching a producer or a consumer.
#[derive(Debug, Clone)]
pub struct Options {
    pub(crate) queue: String,
    pub(crate) client: String,
    pub(crate) durability: Durability,
    pub(crate) consumer_poll_interval: Duration,
    pub(crate) read_ahead: usize,
    pub(crate) max_backoff: Duration,
    pub(crate) max_backoff_notified: Duration,
    pub(crate) take_over: bool,
    pub(crate) format: RingFormat,
    pub(crate) lease: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            queue: "unknown".into(),
            client: "unknown".into(),
            durability: Durability::default(),
            consumer_poll_interval: Duration::from_millis(10),
            read_ahead: 4 << 20,
            max_backoff: Duration::from_millis(4),
            max_backoff_notified: Duration::from_millis(20),
            take_over: false,
            format: RingFormat::default(),
            lease: crate::ring2::DEFAULT_LEASE,
        }
    }
}

impl Options {
    /// Queue `unknown`, client `unknown` (the original's defaults), power-loss
    /// durability.
    pub fn new() -> Options {
        Options::default()
    }

    /// The queue name written into the state sector's text.
    pub fn queue(mut self, queue: impl Into<String>) -> Options {
        self.queue = queue.into();
        self
    }

    /// The client name written into the state sector's text.
    pub fn client(mut self, client: impl Into<String>) -> Options {
        self.client = client.into();
        self
    }

    /// What an `advance` survives; see [`Durability`].
    pub fn durability(mut self, durability: Durability) -> Options {
        self.durability = durability;
        self
    }

    /// Producer only: the longest a push goes without re-reading the
    /// consumer's sector to notice a suspend request (10 ms by default). It
    /// is re-read anyway whenever the ring looks full. Zero re-reads it on
    /// every push, as the original did.
    pub fn consumer_poll_interval(mut self, interval: Duration) -> Options {
        self.consumer_poll_interval = interval;
        self
    }

    /// Consumer only: how many bytes of published items one read fetches at
    /// most (4 MiB by default; a single larger item is still read whole).
    pub fn read_ahead(mut self, bytes: usize) -> Options {
        self.read_ahead = bytes.max(1);
        self
    }

    /// The longest sleep between two polls of the blocking helpers
    /// (`push_wait`, `pop_wait`); 4 ms by default. On a device that wakes
    /// waiters when this host writes it, see also
    /// [`max_backoff_notified`](Self::max_backoff_notified).
    pub fn max_backoff(mut self, max: Duration) -> Options {
        self.max_backoff = max;
        self
    }

    /// The longest sleep between two polls of the blocking helpers on a
    /// device that wakes them as soon as this host writes it
    /// ([`BlockDevice::notifies_changes`](crate::BlockDevice::notifies_changes):
    /// a local file or block device); 20 ms by default. The larger of this
    /// and [`max_backoff`](Self::max_backoff) applies there.
    ///
    /// On such a device a write by any process on this host ends the
    /// sleep at once, so the polls only find writes that bypass the
    /// notification: those of another host sharing the disk, or those made
    /// through another path to the same storage (a loop device over the
    /// ring's file). An idle waiter's CPU is mostly the cost of its
    /// wake-ups (about 75-200 us each on a virtual machine), so polling
    /// every 4 ms there costs 2-5 % of a core for nothing when no other
    /// host writes the ring. The price of the default is that an item from
    /// another host reaches a waiter that has been idle for a while up to
    /// 20 ms late (10 ms on average). Zero polls as often as `max_backoff`
    /// on every device.
    ///
    /// The async handles (feature `tokio`) keep `max_backoff`: their waits
    /// give way to other operations on the handle after each sleep.
    pub fn max_backoff_notified(mut self, max: Duration) -> Options {
        self.max_backoff_notified = max;
        self
    }

    /// Format 2: take this side over if its owner's lease has expired (by
    /// default, attach refuses with [`Error::LeaseExpired`]). A live owner
    /// is never taken over: attach fails with [`Error::Owned`]. The
    /// displaced owner stops with [`Error::Displaced`] at its next write.
    /// Format 1 has no owners and ignores it.
    pub fn take_over(mut self, take_over: bool) -> Options {
        self.take_over = take_over;
        self
    }

    /// The format of a ring created with these options ([`create_with`],
    /// a journal on a blank device); format 1 by default. Attaching
    /// detects the format and ignores this.
    pub fn format(mut self, format: RingFormat) -> Options {
        self.format = format;
        self
    }

    /// The owner lease recorded in a format-2 ring created with these
    /// options (30 s by default; from 1 ms to `u32::MAX` ms, checked when
    /// the ring is created). Attaching reads the lease from the ring.
    pub fn lease(mut self, lease: Duration) -> Options {
        self.lease = lease;
        self
    }

    /// The durability mode.
    pub fn durability_mode(&self) -> Durability {
        self.durability
    }

    /// The format a ring created with these options gets.
    pub fn ring_format(&self) -> RingFormat {
        self.format
    }

    /// The lease a format-2 ring created with these options gets.
    pub fn ring_lease(&self) -> Duration {
        self.lease
    }

    /// A [`Backoff`](crate::Backoff) capped at this handle's maximum sleep,
    /// for callers writing their own wait loops.
    pub fn new_backoff(&self, timeout: Option<Duration>) -> crate::Backoff {
        crate::Backoff::new(self.max_backoff, timeout)
    }
}

/// Whether the producer is allowed to push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RingState {
    /// Items may be pushed.
    Running,
    /// The consumer asked for a pause and the producer acknowledged it.
    Suspended,
}

/// What [`create`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// A new, empty ring was written.
    Created,
    /// The device already held a ring; nothing was changed.
    AlreadyInitialised,
}

/// Initialises a ring on `device`, or does nothing if it already holds one.
///
/// The state sectors are written and flushed before the signature, so a
/// crash part-way leaves a device without a signature, which a later
/// `create` simply initialises again.
///
/// A device whose sector 0 starts with the format-2 magic is refused, never
/// overwritten (unlike the OCaml library's `create`): erase it first
/// ([`crate::erase`]) to reuse it.
///
/// # Errors
/// [`Error::TooSmall`] below 4 sectors, [`Error::BadSectorSize`],
/// [`Error::WrongFormat`] for a format-2 ring, [`Error::ReadOnly`], or a
/// device I/O error.
pub fn create<D: BlockDevice + ?Sized>(device: &D) -> Result<Created> {
    let geometry = Geometry::new(device.sector_size(), device.sectors())?;
    let mut sector = AlignedBuf::zeroed(geometry.sector_size());
    device
        .read(layout::SIGNATURE_SECTOR, &mut sector)
        .map_err(|e| Error::io(IoOp::Read, layout::SIGNATURE_SECTOR, e))?;
    if format::check_signature(&sector).is_ok() {
        return Ok(Created::AlreadyInitialised);
    }
    if format::v2::has_magic(&sector) {
        return Err(Error::WrongFormat {
            found: 2,
            expected: 1,
        });
    }
    if device.is_read_only() {
        return Err(Error::ReadOnly);
    }
    let empty = State {
        position: 0,
        flag: false,
    };
    for side in [Side::Producer, Side::Consumer] {
        format::encode_state(side, empty, None, &mut sector);
        device
            .write(side.sector(), &sector)
            .map_err(|e| Error::io(IoOp::Write, side.sector(), e))?;
    }
    device
        .flush()
        .map_err(|e| Error::io(IoOp::Flush, layout::PRODUCER_SECTOR, e))?;
    format::encode_signature(&mut sector);
    device
        .write_durable(layout::SIGNATURE_SECTOR, &sector)
        .map_err(|e| Error::io(IoOp::Write, layout::SIGNATURE_SECTOR, e))?;
    tracing::debug!(device = %device.describe(), capacity = geometry.capacity(), "created ring");
    Ok(Created::Created)
}

/// Initialises a ring of the format `options` name ([`Options::format`],
/// with [`Options::lease`] for format 2) on `device`, or does nothing if it
/// already holds a ring of that format: [`create`] or
/// [`ring2::create`](crate::ring2::create).
///
/// # Errors
/// As [`create`] or [`ring2::create`](crate::ring2::create); a ring of the
/// other format is [`Error::WrongFormat`].
pub fn create_with<D: BlockDevice + ?Sized>(device: &D, options: &Options) -> Result<Created> {
    match options.format {
        RingFormat::V1 => create(device),
        RingFormat::V2 => crate::ring2::create(device, options.lease),
    }
}

/// Reads `buf.len()` bytes of whole stream sectors of the ring on `device`
/// starting at stream sector `stream_sector`, in one read or two at the wrap.
pub(crate) fn read_stream<D: BlockDevice + ?Sized>(
    device: &D,
    geometry: &Geometry,
    stream_sector: u64,
    buf: &mut [u8],
) -> Result<()> {
    let ss = geometry.sector_size();
    let mut off = 0;
    for (sector, count) in geometry.runs(stream_sector, (buf.len() / ss) as u64).iter() {
        let len = count as usize * ss;
        device
            .read(sector, &mut buf[off..off + len])
            .map_err(|e| Error::io(IoOp::Read, sector, e))?;
        off += len;
    }
    Ok(())
}
