//! The consumer: reads published items and releases their space.

use std::ops::Range;
use std::time::Duration;

use crate::codec::{Bytes, Codec};
use crate::device::{AlignedBuf, BlockDevice};
use crate::error::{Error, Result, RetryReason, Side};
use crate::format::v2::Published;
use crate::format::{self, Geometry};
use crate::position::Position;
use crate::ring::{Durability, Items, Link, Options, RingFormat, RingState, SideState};

/// The reading side of a ring.
///
/// `pop` peeks at the item at the consumer position (repeated calls return
/// the same item); `pop_from` and `fold` look further ahead; `advance`
/// releases everything before a position, so the producer may reuse it.
///
/// It speaks both formats, detected at attach. In format 2 every record is
/// checked before it is delivered (its position, length, CRC32C and
/// producer epoch): a bad one is [`Error::Corrupt`] naming where it is and
/// what was expected and found, and is never delivered.
///
/// The consumer re-reads the producer sector only when it has used up what
/// it knows to be published, and then reads all the new data it can (up to
/// the read-ahead) in one contiguous read, two at the wrap. Items are then
/// handed out from memory.
///
/// ```
/// use shared_block_ring::{create, Consumer, FileDevice, Options, Producer};
///
/// # fn main() -> Result<(), shared_block_ring::Error> {
/// # let file = tempfile::NamedTempFile::new_in(".").unwrap(); // O_DIRECT works here
/// # file.as_file().set_len(64 * 1024).unwrap();
/// # let path = file.path();
/// create(&FileDevice::open(path)?)?;
/// let mut producer = Producer::attach(FileDevice::open(path)?, Options::new())?;
/// let end = producer.push_many([&b"a"[..], b"b", b"c"])?;
/// producer.advance(end)?;
///
/// let mut consumer = Consumer::attach(FileDevice::open(path)?, Options::new())?;
/// let (next, item) = consumer.pop()?; // a peek: nothing is released yet
/// assert_eq!(item, b"a");
/// let (after_b, item) = consumer.pop_from(next)?; // look further ahead
/// assert_eq!(item, b"b");
/// consumer.advance(after_b)?; // releases a and b, durably
/// // Everything published now, in one pass:
/// let (end, all) = consumer.fold(consumer.position(), Vec::new(), |mut v, item| {
///     v.push(item);
///     v
/// })?;
/// assert_eq!(all, [b"c".to_vec()]);
/// consumer.advance(end)?;
/// assert!(consumer.pop().unwrap_err().is_retry()); // empty
/// # Ok(())
/// # }
/// ```
pub struct Consumer<D: BlockDevice, C: Codec = Bytes> {
    link: Link<D>,
    codec: C,
    /// How items lie in the stream.
    items: Items,
    /// Our position as on the device.
    consumer: u64,
    /// Our `suspend` flag as on the device.
    suspend: bool,
    /// The producer position as last read.
    producer: u64,
    /// The producer's `suspend_ack` as last read.
    ack: bool,
    /// Format 2: the producer sector's epoch and `durable` as last read
    /// (the epoch rule: records from `durable` on carry exactly `epoch`).
    epoch: u64,
    durable: u64,
    /// Power-loss mode: a producer position known to be on stable storage:
    /// read before a flush of ours that succeeded (0 until then). The
    /// consumer never makes a position beyond it durable before another
    /// flush: otherwise a power cut could keep our new position but lose
    /// the producer's, leaving consumer > producer. A flush updates it, and
    /// so does format 2's `durable` field (a producer position the
    /// producer has flushed); our durable (FUA) writes do not: they make
    /// only our own sector durable.
    producer_durable: u64,
    /// Stream bytes `buf_start..buf_end` are in `buf`, all published.
    buf: AlignedBuf,
    buf_start: u64,
    buf_end: u64,
}

impl<D: BlockDevice> Consumer<D, Bytes> {
    /// Attaches a consumer whose items are byte strings.
    ///
    /// # Errors
    /// See [`attach_with_codec`](Self::attach_with_codec).
    pub fn attach(device: D, options: Options) -> Result<Self> {
        Consumer::attach_with_codec(device, Bytes, options)
    }
}

impl<D: BlockDevice, C: Codec> Consumer<D, C> {
    /// Attaches to the ring on `device` as its consumer, in the ring's
    /// format. Format 1: only reads. Format 2: recovers the published
    /// records (a power cut may have kept a producer pointer whose records
    /// it lost: the consumer then sees them end at the first bad record,
    /// until the producer writes its sector again) and takes the consumer
    /// side (owner lease), writing the consumer sector durably.
    ///
    /// # Errors
    /// [`Error::NotInitialised`], [`Error::Corrupt`], [`Error::Locked`]
    /// when another consumer on this host is attached, [`Error::ReadOnly`],
    /// or a device error; format 2 also those of
    /// [`Producer::attach_with_codec`](crate::Producer::attach_with_codec)
    /// for the consumer side.
    pub fn attach_with_codec(device: D, codec: C, options: Options) -> Result<Self> {
        let (link, p, c) = Link::open(device, Side::Consumer, options)?;
        Ok(Consumer {
            items: link.items(),
            link,
            codec,
            consumer: c.position,
            suspend: c.flag,
            producer: p.position,
            ack: p.flag,
            epoch: p.epoch,
            durable: p.durable,
            producer_durable: p.durable,
            buf: AlignedBuf::zeroed(0),
            buf_start: 0,
            buf_end: 0,
        })
    }

    /// Detaches. Items not released by `advance` will be delivered again to
    /// the next consumer.
    pub fn detach(self) {}

    /// The ring's geometry.
    pub fn geometry(&self) -> Geometry {
        self.link.geometry
    }

    /// The options this consumer was attached with.
    pub fn options(&self) -> &Options {
        &self.link.options
    }

    /// The ring's format.
    pub fn format(&self) -> RingFormat {
        self.link.format()
    }

    /// Format 2: writes a heartbeat (the consumer sector, unchanged but
    /// for its heartbeat and generation) when a third of the ring's lease
    /// has passed since the last write of the sector, so that an idle
    /// consumer keeps its side: cheap to call often. Format 1: nothing.
    ///
    /// # Errors
    /// [`Error::Displaced`] when another consumer took the side over (this
    /// handle then writes nothing more), or a device error.
    pub fn heartbeat(&mut self) -> Result<()> {
        self.link
            .heartbeat(SideState::new(self.consumer, self.suspend))
    }

    /// The consumer position on the device: everything before it has been
    /// released.
    pub fn position(&self) -> Position {
        Position::new(self.consumer)
    }

    /// The producer position as last read.
    pub fn known_producer(&self) -> Position {
        Position::new(self.producer)
    }

    /// Reads the producer sector and tells whether the producer has
    /// acknowledged a suspend.
    ///
    /// # Errors
    /// [`Error::Corrupt`] or a device error.
    pub fn state(&mut self) -> Result<RingState> {
        self.look_at_producer()?;
        Ok(if self.ack {
            RingState::Suspended
        } else {
            RingState::Running
        })
    }

    /// Key/value pairs for logs: at least `producer/offset`,
    /// `producer/suspend_ack`, `consumer/offset`, `consumer/suspend`, read
    /// from the device now.
    ///
    /// # Errors
    /// [`Error::Corrupt`] or a device error.
    pub fn debug_info(&mut self) -> Result<Vec<(String, String)>> {
        self.link.debug_info()
    }

    /// Asks the producer to pause. Succeeds at once when already asked (and
    /// acknowledged); the producer acknowledges the next time it looks, and
    /// [`state`](Self::state) then reports [`RingState::Suspended`].
    ///
    /// ```
    /// use shared_block_ring::{create, Consumer, Error, MemDevice, Options, Producer, RingState};
    ///
    /// # fn main() -> Result<(), Error> {
    /// let disk = MemDevice::new(512, 16);
    /// create(&disk)?;
    /// let mut producer = Producer::attach(disk.clone(), Options::new())?;
    /// let mut consumer = Consumer::attach(disk, Options::new())?;
    ///
    /// consumer.suspend()?; // requested
    /// assert_eq!(consumer.state()?, RingState::Running); // not yet acknowledged
    /// assert_eq!(producer.state()?, RingState::Suspended); // the producer looks, and acknowledges
    /// assert!(matches!(producer.push(b"x"), Err(Error::Suspended)));
    /// assert_eq!(consumer.state()?, RingState::Suspended);
    ///
    /// consumer.resume()?;
    /// assert_eq!(producer.state()?, RingState::Running);
    /// producer.push(b"x")?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::Retry`] while the previous request is unacknowledged; a
    /// device error.
    pub fn suspend(&mut self) -> Result<()> {
        self.request(true)
    }

    /// Asks a paused producer to continue; the mirror of
    /// [`suspend`](Self::suspend).
    ///
    /// # Errors
    /// [`Error::Retry`] while the previous request is unacknowledged; a
    /// device error.
    pub fn resume(&mut self) -> Result<()> {
        self.request(false)
    }

    fn request(&mut self, suspend: bool) -> Result<()> {
        self.look_at_producer()?;
        if self.suspend != self.ack {
            return Err(Error::Retry(RetryReason::HandshakePending));
        }
        if self.suspend != suspend {
            self.link
                .write_state(SideState::new(self.consumer, suspend))?;
            self.suspend = suspend;
        }
        Ok(())
    }

    /// The item at the consumer position, and the position after it (the
    /// one to pass to [`advance`](Self::advance)). Does not release it:
    /// calling `pop` again returns the same item.
    ///
    /// # Errors
    /// [`Error::Retry`] when no item is published; [`Error::Corrupt`];
    /// [`Error::Codec`]; a device error.
    pub fn pop(&mut self) -> Result<(Position, C::Owned)> {
        self.pop_from(Position::new(self.consumer))
    }

    /// The item at `from` (a position returned by an earlier pop), and the
    /// position after it: a way to look ahead before advancing.
    ///
    /// # Errors
    /// As [`pop`](Self::pop); [`Error::PositionOutOfRange`] when `from` is
    /// before the consumer position or past the producer position.
    pub fn pop_from(&mut self, from: Position) -> Result<(Position, C::Owned)> {
        let (range, next) = self.item_at(from.offset())?;
        let item = self.codec.decode(&self.buf[range])?;
        Ok((Position::new(next), item))
    }

    /// The raw bytes of the item at `from`, borrowed from the consumer's
    /// buffer (no copy, no decoding), and the position after it.
    ///
    /// # Errors
    /// As [`pop_from`](Self::pop_from), without codec errors.
    pub fn peek_bytes(&mut self, from: Position) -> Result<(Position, &[u8])> {
        let (range, next) = self.item_at(from.offset())?;
        Ok((Position::new(next), &self.buf[range]))
    }

    /// Like [`pop`](Self::pop), but when the ring is empty, polls (with
    /// adaptive backoff) until an item is published or `timeout` passes.
    ///
    /// ```
    /// use std::time::Duration;
    /// use shared_block_ring::{create, Consumer, MemDevice, Options, Producer};
    ///
    /// # fn main() -> Result<(), shared_block_ring::Error> {
    /// let disk = MemDevice::new(512, 16);
    /// create(&disk)?;
    /// let mut consumer = Consumer::attach(disk.clone(), Options::new())?;
    /// // Empty: gives up with Retry after the timeout.
    /// assert!(consumer.pop_wait(Some(Duration::from_millis(10))).unwrap_err().is_retry());
    /// let producer = std::thread::spawn(move || -> Result<(), shared_block_ring::Error> {
    ///     let mut p = Producer::attach(disk, Options::new())?;
    ///     let end = p.push(b"late")?;
    ///     p.advance(end)
    /// });
    /// let (next, item) = consumer.pop_wait(Some(Duration::from_secs(10)))?;
    /// assert_eq!(item, b"late");
    /// consumer.advance(next)?;
    /// producer.join().unwrap()?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`pop`](Self::pop); [`Error::Retry`] only after the timeout.
    pub fn pop_wait(&mut self, timeout: Option<Duration>) -> Result<(Position, C::Owned)> {
        self.wait_for_item(Position::new(self.consumer), timeout)?;
        self.pop()
    }

    /// Waits until an item is published at `from`, polling with adaptive
    /// backoff, for at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Retry`] after the timeout; as [`pop_from`](Self::pop_from).
    pub fn wait_for_item(&mut self, from: Position, timeout: Option<Duration>) -> Result<()> {
        let mut backoff = self.link.backoff(timeout);
        loop {
            match self.item_at(from.offset()) {
                Ok(_) => return Ok(()),
                Err(Error::Retry(RetryReason::Empty))
                    if backoff.wait_with(|d| self.link.device.wait_for_change(d)) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Folds `f` over every item published now, starting at `from`, and
    /// returns the position after the last one with the result. The
    /// producer sector is read once; the data in as few reads as the
    /// read-ahead allows.
    ///
    /// # Errors
    /// [`Error::PositionOutOfRange`], [`Error::Corrupt`], [`Error::Codec`],
    /// or a device error.
    pub fn fold<B>(
        &mut self,
        from: Position,
        init: B,
        mut f: impl FnMut(B, C::Owned) -> B,
    ) -> Result<(Position, B)> {
        let end = self.snapshot_end(from)?;
        let mut at = from.offset();
        let mut acc = init;
        while at < end {
            let (range, next) = self.item_at(at)?;
            acc = f(acc, self.codec.decode(&self.buf[range])?);
            at = next;
        }
        Ok((Position::new(at), acc))
    }

    /// Calls `f(start, next, bytes)` on the raw bytes of every item
    /// published now, from `from`, without decoding or copying them; returns
    /// the position after the last. The fastest way to read what a ring
    /// holds; to drain it continuously, see
    /// [`for_each_bytes_wait`](Self::for_each_bytes_wait).
    ///
    /// # Errors
    /// As [`fold`](Self::fold), plus whatever `f` returns (which stops the
    /// walk).
    pub fn for_each_bytes(
        &mut self,
        from: Position,
        f: impl FnMut(Position, Position, &[u8]) -> Result<()>,
    ) -> Result<Position> {
        let end = self.snapshot_end(from)?;
        self.walk_bytes(from.offset(), end, f)
    }

    /// Waits, as [`wait_for_item`](Self::wait_for_item), until an item is
    /// published at `from`, then calls `f(start, next, bytes)` on every
    /// item from `from` up to the producer position that wait saw, without
    /// reading the producer sector again, and returns the position after
    /// the last. The way to drain a ring continuously: a pass reads the
    /// producer sector only while it knows of no item at `from` (once when
    /// one is there, once a poll while it waits), and not at all when the
    /// [`advance`](Self::advance) before it caught up and found items
    /// then. (`wait_for_item` followed by
    /// [`for_each_bytes`](Self::for_each_bytes) reads it once more.) Items
    /// published after the look are left for the next pass.
    ///
    /// ```
    /// use std::time::Duration;
    /// use shared_block_ring::{create, Consumer, MemDevice, Options, Producer};
    ///
    /// # fn main() -> Result<(), shared_block_ring::Error> {
    /// let disk = MemDevice::new(512, 16);
    /// create(&disk)?;
    /// let mut producer = Producer::attach(disk.clone(), Options::new())?;
    /// let mut consumer = Consumer::attach(disk, Options::new())?;
    /// let end = producer.push_many([&b"one"[..], b"two"])?;
    /// producer.advance(end)?;
    ///
    /// let mut got = Vec::new();
    /// let next = consumer.for_each_bytes_wait(
    ///     consumer.position(),
    ///     Some(Duration::from_secs(1)),
    ///     |_, _, bytes| Ok(got.push(bytes.to_vec())),
    /// )?;
    /// consumer.advance(next)?;
    /// assert_eq!(got, [b"one".to_vec(), b"two".to_vec()]);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Retry`] when nothing is published by the timeout; as
    /// [`for_each_bytes`](Self::for_each_bytes).
    pub fn for_each_bytes_wait(
        &mut self,
        from: Position,
        timeout: Option<Duration>,
        f: impl FnMut(Position, Position, &[u8]) -> Result<()>,
    ) -> Result<Position> {
        self.wait_for_item(from, timeout)?;
        self.walk_bytes(from.offset(), self.producer, f)
    }

    /// Calls `f` on the items from `at` to `end` (both published item
    /// boundaries).
    fn walk_bytes(
        &mut self,
        mut at: u64,
        end: u64,
        mut f: impl FnMut(Position, Position, &[u8]) -> Result<()>,
    ) -> Result<Position> {
        while at < end {
            let (range, next) = self.item_at(at)?;
            f(Position::new(at), Position::new(next), &self.buf[range])?;
            at = next;
        }
        Ok(Position::new(at))
    }

    /// Reads the producer sector once for a walk from `from`, and returns
    /// where the walk ends.
    fn snapshot_end(&mut self, from: Position) -> Result<u64> {
        self.look_at_producer()?;
        if from.offset() > self.producer || from.offset() < self.consumer {
            return Err(self.out_of_range(from.offset()));
        }
        Ok(self.producer)
    }

    /// Releases everything before `position`, so the producer may
    /// overwrite it. In the power-loss mode the consumer sector is on
    /// stable storage when this returns; released items are then never
    /// delivered again.
    ///
    /// Format 1: a release up to the producer position last read also
    /// reads the producer sector, with the same write where the device
    /// overlaps them, so that the next pop finds the items published since
    /// without a read of its own.
    ///
    /// # Errors
    /// [`Error::InvalidPosition`] for a position not on an item boundary;
    /// [`Error::PositionOutOfRange`] before the consumer position or past
    /// the producer position; a device error (nothing is released then).
    pub fn advance(&mut self, position: Position) -> Result<()> {
        let p = position.offset();
        self.items.check_alignment(p)?;
        if p > self.producer {
            self.look_at_producer()?;
        }
        if p < self.consumer || p > self.producer {
            return Err(self.out_of_range(p));
        }
        if p == self.consumer {
            return Ok(());
        }
        let power_loss = self.link.options.durability == Durability::PowerLoss;
        if power_loss && p > self.producer_durable {
            // The producer position we read may still be only in the
            // device's cache (the producer writes its pointer before the
            // flush that makes it durable). A flush now covers it. Our own
            // durable (FUA) write below would not: it makes only our sector
            // durable, so it never counts as this flush.
            let seen = self.producer;
            self.link.flush()?;
            self.producer_durable = seen;
        }
        let state = SideState::new(p, self.suspend);
        if p == self.producer && self.link.format() == RingFormat::V1 {
            // Caught up: the next pop reads the producer sector first
            // thing. Read it with this write, in one round trip where the
            // device overlaps them. What it says is not durable: our
            // durable write makes only our sector durable (see
            // `producer_durable`).
            let producer = self.link.write_state_and_read_other(state)?;
            self.consumer = p;
            if let Some(s) = producer {
                // A bad sector is left for the next ordinary read to
                // report: this one was not asked for.
                let _ = self.take_producer_state(s);
            }
            return Ok(());
        }
        self.link.write_state(state)?;
        self.consumer = p;
        Ok(())
    }

    fn out_of_range(&self, position: u64) -> Error {
        Error::PositionOutOfRange {
            position,
            consumer: self.consumer,
            producer: self.producer,
        }
    }

    /// Reads the producer sector.
    fn look_at_producer(&mut self) -> Result<()> {
        let p = self.link.read_state(Side::Producer)?;
        self.take_producer_state(p)
    }

    /// Takes a producer sector just read as the producer's state.
    fn take_producer_state(&mut self, p: SideState) -> Result<()> {
        format::check_positions(p.position, self.consumer, self.link.geometry.capacity())?;
        if p.position < self.producer {
            tracing::warn!(
                was = self.producer,
                now = p.position,
                "the producer position moved backwards (a power cut in process-crash mode?)"
            );
        }
        self.producer = p.position;
        self.ack = p.flag;
        self.epoch = p.epoch;
        self.durable = p.durable;
        // Format 2's `durable` is a producer position the producer flushed
        // before writing it (format 1: zero).
        self.producer_durable = self.producer_durable.max(p.durable);
        // Bytes past the producer position are not published (any more).
        self.buf_end = self.buf_end.min(self.producer);
        Ok(())
    }

    /// Locates the item at stream position `at` in the buffer, reading it
    /// if needed. Returns its payload's range in `buf` and the next
    /// position.
    fn item_at(&mut self, at: u64) -> Result<(Range<usize>, u64)> {
        self.items.check_alignment(at)?;
        if at >= self.producer {
            self.look_at_producer()?;
        }
        if at < self.consumer || at > self.producer {
            return Err(self.out_of_range(at));
        }
        if at == self.producer {
            return Err(Error::Retry(RetryReason::Empty));
        }
        let hl = self.items.header_len();
        // A format-2 header that the producer position cuts is read up to
        // it only (and fails the length check).
        let header_end = (at + hl as u64).min(self.producer);
        self.ensure_buffered(at, header_end)?;
        let h = (at - self.buf_start) as usize;
        let published = self.published();
        let geometry = self.link.geometry;
        // Checked against the producer position before anything is sized
        // by it: a hostile length cannot cause a large read or allocation.
        let (len, next) = self.items.check_header(
            &geometry,
            at,
            &self.buf[h..(header_end - self.buf_start) as usize],
            &published,
        )?;
        self.ensure_buffered(at, at + (hl + len) as u64)?;
        let h = (at - self.buf_start) as usize;
        // Format 2: the checksum and the epoch, before delivery.
        self.items
            .check_payload(&geometry, at, &self.buf[h..h + hl + len], &published)?;
        Ok((h + hl..h + hl + len, next))
    }

    /// What the producer sector last read publishes, for checking records.
    fn published(&self) -> Published {
        Published {
            end: self.producer,
            epoch: self.epoch,
            current_from: self.durable,
        }
    }

    /// Makes stream bytes `from..to` (all published) available in `buf`,
    /// reading from the start of `from`'s sector up to the read-ahead or the
    /// producer position, whichever comes first, but at least to `to`.
    fn ensure_buffered(&mut self, from: u64, to: u64) -> Result<()> {
        if from >= self.buf_start && to <= self.buf_end {
            return Ok(());
        }
        let ss = self.link.geometry.sector_size() as u64;
        let first = from / ss;
        // Saturating: the read-ahead is the caller's choice (up to
        // usize::MAX); the sum is capped by the producer position anyway.
        let want = from
            .saturating_add(self.link.options.read_ahead as u64)
            .min(self.producer)
            .max(to);
        let last = want.div_ceil(ss);
        let len = ((last - first) * ss) as usize;
        // Whole sectors from `first` on that the buffer already holds are
        // kept rather than read again: an item that straddles the end of
        // one read would otherwise be read twice (a quarter of the bytes
        // again with 1 MiB items and a 4 MiB read-ahead). They are
        // published and not released, so they cannot have changed. The
        // sector holding `buf_end` is read again: its bytes past `buf_end`
        // were not published when it was read.
        let start = first * ss;
        let kept = if from >= self.buf_start && start >= self.buf_start {
            ((self.buf_end / ss * ss).saturating_sub(start) as usize).min(len)
        } else {
            0
        };
        if kept > 0 {
            let at = (start - self.buf_start) as usize;
            self.buf.copy_within(at..at + kept, 0);
        }
        if self.buf.len() < len {
            self.buf.resize(len);
        }
        // Mark the buffer empty first, so a failed read leaves nothing stale.
        self.buf_end = self.buf_start;
        if kept < len {
            self.link
                .read_stream(first + (kept as u64) / ss, &mut self.buf[kept..len])?;
        }
        self.buf_start = start;
        self.buf_end = want;
        Ok(())
    }
}

/// For the async wrapper (`crate::asynchronous`), which waits in steps so
/// that it can stop between two when its future is dropped: the same
/// backoff and change notification as [`Consumer::wait_for_item`].
#[cfg(feature = "tokio")]
impl<D: BlockDevice, C: Codec> Consumer<D, C> {
    pub(crate) fn backoff(&self) -> crate::Backoff {
        self.link.backoff(None)
    }

    pub(crate) fn pause(&self, backoff: &mut crate::Backoff) -> bool {
        backoff.wait_with(|d| self.link.device.wait_for_change(d))
    }
}

impl<D: BlockDevice, C: Codec> std::fmt::Debug for Consumer<D, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("device", &self.link.device.describe())
            .field("consumer", &self.consumer)
            .field("producer", &self.producer)
            .field("suspend", &self.suspend)
            .finish()
    }
}

#[cfg(test)]
mod tests;
