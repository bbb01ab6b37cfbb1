//! What producer and consumer share: options, ring creation, and the I/O
//! of state sectors and data runs.

use std::time::Duration;

use crate::device::{AlignedBuf, BlockDevice};
use crate::error::{Error, IoOp, Result, Side};
use crate::format::{self, Geometry, Label, State};
use crate::layout;

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

/// Options for attaching a producer or a consumer.
#[derive(Debug, Clone)]
pub struct Options {
    pub(crate) queue: String,
    pub(crate) client: String,
    pub(crate) durability: Durability,
    pub(crate) consumer_poll_interval: Duration,
    pub(crate) read_ahead: usize,
    pub(crate) max_backoff: Duration,
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
    /// (`push_wait`, `pop_wait`); 4 ms by default.
    pub fn max_backoff(mut self, max: Duration) -> Options {
        self.max_backoff = max;
        self
    }

    /// The durability mode.
    pub fn durability_mode(&self) -> Durability {
        self.durability
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

/// One side's view of the device: geometry, options, a sector buffer, and
/// the role lock, released on drop.
pub(crate) struct Link<D: BlockDevice> {
    pub(crate) device: D,
    pub(crate) geometry: Geometry,
    pub(crate) side: Side,
    pub(crate) options: Options,
    sector: AlignedBuf,
    holds_lock: bool,
}

impl<D: BlockDevice> Link<D> {
    /// Checks the device, takes the role lock, and checks the signature.
    pub(crate) fn open(device: D, side: Side, options: Options) -> Result<Link<D>> {
        let geometry = Geometry::new(device.sector_size(), device.sectors())?;
        if device.is_read_only() {
            return Err(Error::ReadOnly);
        }
        let mut link = Link {
            sector: AlignedBuf::zeroed(geometry.sector_size()),
            device,
            geometry,
            side,
            options,
            holds_lock: false,
        };
        match link
            .device
            .try_lock(side)
            .map_err(|e| Error::io(IoOp::Read, side.sector(), e))?
        {
            Ok(()) => link.holds_lock = true,
            Err(holder) => {
                let holder = match link.read_text(side.sector()) {
                    Ok(text) if !text.is_empty() => format!("{holder}; its sector says \"{text}\""),
                    _ => holder,
                };
                return Err(Error::Locked { role: side, holder });
            }
        }
        link.read_sector(layout::SIGNATURE_SECTOR)?;
        format::check_signature(&link.sector).map_err(Error::NotInitialised)?;
        Ok(link)
    }

    fn read_sector(&mut self, sector: u64) -> Result<()> {
        self.device
            .read(sector, &mut self.sector)
            .map_err(|e| Error::io(IoOp::Read, sector, e))
    }

    fn read_text(&mut self, sector: u64) -> Result<String> {
        self.read_sector(sector)?;
        Ok(crate::escape::escape_bytes(format::state_text(&self.sector)).to_string())
    }

    /// Reads and decodes one side's state sector.
    pub(crate) fn read_state(&mut self, whose: Side) -> Result<State> {
        self.read_sector(whose.sector())?;
        let state = format::decode_state(whose, &self.sector)?;
        tracing::trace!(
            side = %self.side,
            queue = %self.options.queue,
            client = %self.options.client,
            op = "read",
            sector = whose.sector(),
            position = state.position,
            flag = state.flag,
            "state sector"
        );
        Ok(state)
    }

    /// Writes this side's state sector; durably in the power-loss mode.
    pub(crate) fn write_state(&mut self, state: State) -> Result<()> {
        let durable = self.options.durability == Durability::PowerLoss;
        self.write_state_as(state, durable)
    }

    /// Writes this side's state sector, durably or not.
    pub(crate) fn write_state_as(&mut self, state: State, durable: bool) -> Result<()> {
        let label = Label {
            queue: &self.options.queue,
            client: &self.options.client,
        };
        format::encode_state(self.side, state, Some(label), &mut self.sector);
        let sector = self.side.sector();
        let r = if durable {
            self.device.write_durable(sector, &self.sector)
        } else {
            self.device.write(sector, &self.sector)
        };
        r.map_err(|e| Error::io(IoOp::Write, sector, e))?;
        tracing::trace!(
            side = %self.side,
            queue = %self.options.queue,
            client = %self.options.client,
            op = "write",
            sector,
            position = state.position,
            flag = state.flag,
            "state sector"
        );
        Ok(())
    }

    /// Reads `buf.len()` bytes of whole stream sectors starting at stream
    /// sector `stream_sector`, in one read or two at the wrap.
    pub(crate) fn read_stream(&self, stream_sector: u64, buf: &mut [u8]) -> Result<()> {
        read_stream(&self.device, &self.geometry, stream_sector, buf)
    }

    /// Writes whole stream sectors, in one write or two at the wrap.
    pub(crate) fn write_stream(&self, stream_sector: u64, buf: &[u8]) -> Result<()> {
        let ss = self.geometry.sector_size();
        let runs = self.geometry.runs(stream_sector, (buf.len() / ss) as u64);
        let mut off = 0;
        for (sector, count) in runs.iter() {
            let len = count as usize * ss;
            self.device
                .write(sector, &buf[off..off + len])
                .map_err(|e| Error::io(IoOp::Write, sector, e))?;
            off += len;
        }
        Ok(())
    }

    /// A backoff for waiting on the other side: without the phase of
    /// frequent polls when the device wakes waiters itself.
    pub(crate) fn backoff(&self, timeout: Option<Duration>) -> crate::Backoff {
        let b = crate::Backoff::new(self.options.max_backoff, timeout);
        if self.device.notifies_changes() {
            b.without_hot_phase()
        } else {
            b
        }
    }

    /// Reads one stream sector into the link's sector buffer.
    pub(crate) fn read_stream_sector(&mut self, stream_sector: u64) -> Result<&[u8]> {
        let sector = self.geometry.physical_sector(stream_sector);
        self.read_sector(sector)?;
        Ok(&self.sector)
    }

    pub(crate) fn flush(&self) -> Result<()> {
        self.device
            .flush()
            .map_err(|e| Error::io(IoOp::Flush, layout::FIRST_DATA_SECTOR, e))
    }

    /// Key/value pairs describing the ring as it is on the device now.
    pub(crate) fn debug_info(&mut self) -> Result<Vec<(String, String)>> {
        let p = self.read_state(Side::Producer)?;
        let c = self.read_state(Side::Consumer)?;
        Ok(vec![
            ("queue".into(), self.options.queue.clone()),
            ("client".into(), self.options.client.clone()),
            ("producer/offset".into(), p.position.to_string()),
            ("producer/suspend_ack".into(), p.flag.to_string()),
            ("consumer/offset".into(), c.position.to_string()),
            ("consumer/suspend".into(), c.flag.to_string()),
            ("capacity".into(), self.geometry.capacity().to_string()),
            (
                "used".into(),
                p.position.saturating_sub(c.position).to_string(),
            ),
            ("durability".into(), self.options.durability.to_string()),
            ("device".into(), self.device.describe()),
        ])
    }
}

impl<D: BlockDevice> Drop for Link<D> {
    fn drop(&mut self) {
        if self.holds_lock {
            self.device.unlock(self.side);
        }
    }
}
