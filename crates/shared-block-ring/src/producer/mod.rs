//! The producer: appends items to the stream and publishes them.
//!
//! This file holds [`Producer`], its public API and its publication and
//! consumer-watching logic; `staging.rs` holds the staging buffer (how a
//! push lays out its items in memory, checks the room left, and writes them
//! or leaves them for the next publication).

use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::codec::{Bytes, Codec};
use crate::device::{AlignedBuf, BlockDevice};
use crate::error::{Corruption, Error, Result, RetryReason, Side};
use crate::format::{self, Geometry};
use crate::position::Position;
use crate::ring::{
    self, Created, Durability, Items, Link, Options, RingFormat, RingState, SideState,
};

mod staging;

/// The writing side of a ring.
///
/// `push` writes an item to the device past the published end of the
/// stream, where the consumer does not look yet; `advance` publishes every
/// item up to a position by rewriting the producer sector. Several pushes
/// may precede one `advance`.
///
/// It speaks both formats, detected at attach: format 1 (the OCaml
/// library's) and format 2 (checksummed records, one cache flush per
/// publication, an owner lease; see `FORMAT.md`).
///
/// The producer keeps the partly filled sector at the end of the stream in
/// memory, so a push writes its item (or batch) in one contiguous write
/// (two at the wrap) without reading anything first. The only exception is
/// a push that ends in the very sector where the consumer's unread data
/// begins (the ring is within one sector of full): that sector is read once
/// so the unread bytes are written back unchanged.
///
/// ```
/// use shared_block_ring::{create, Error, FileDevice, Options, Producer};
///
/// # fn main() -> Result<(), Error> {
/// # let file = tempfile::NamedTempFile::new_in(".").unwrap(); // O_DIRECT works here
/// # file.as_file().set_len(64 * 1024).unwrap();
/// # let path = file.path();
/// create(&FileDevice::open(path)?)?;
/// let mut producer = Producer::attach(FileDevice::open(path)?, Options::new().queue("jobs"))?;
/// producer.push(b"one")?;
/// let end = producer.push_many([&b"two"[..], b"three"])?; // one device write
/// producer.advance(end)?; // all three visible to the consumer, and durable
/// assert_eq!(producer.published(), end);
///
/// // A full ring is not an error to give up on: retry once the consumer
/// // has released space (push_wait does that for you).
/// match producer.push(&vec![0u8; 1 << 20]) {
///     Err(Error::TooLarge { .. }) => {} // never fits in this 64 KiB ring
///     other => panic!("{other:?}"),
/// }
/// # Ok(())
/// # }
/// ```
pub struct Producer<D: BlockDevice, C: Codec = Bytes> {
    link: Link<D>,
    codec: C,
    /// How items lie in the stream (format 2: records with our epoch).
    items: Items,
    /// The position in the producer sector on the device (written, and so
    /// visible to the consumer; perhaps not durable yet).
    published: u64,
    /// The producer position known to be on stable storage: written by a
    /// durable write, or written before a flush that succeeded. In the
    /// process-crash mode, which flushes nothing, it follows `published`.
    /// While it lags behind `published` (a failed flush), the publication
    /// is still pending: `sync`, `advance` or a retried
    /// `advance_pipelined` makes it durable.
    published_durable: u64,
    /// The end of the last pushed item: `published..tail` is pushed but
    /// not yet visible.
    tail: u64,
    /// The end of the pushed bytes written to the device: `written..tail`
    /// (write-behind, see [`commit`](Self::commit)) is only in `staging`,
    /// to be written with the next publication.
    written: u64,
    /// The consumer position as last read.
    consumer: u64,
    /// Our `suspend_ack` as on the device.
    ack: bool,
    /// When the consumer sector was last read.
    looked_at: Instant,
    /// The written end at the last flush that succeeded (or at attach):
    /// items before it are on stable storage (power-loss mode).
    flushed_to: u64,
    /// The published position at the last flush that succeeded (format 2:
    /// at attach, `q`, which attach flushed): its pointer and records are
    /// on stable storage. Format 2 writes it as the producer sector's
    /// `durable`, in both modes, so that a consumer may trust it.
    flushed_pointer: u64,
    /// Power-loss mode: a consumer position that is on stable storage (we
    /// read it, then flushed; 0 until then). Space the consumer released beyond it is not
    /// overwritten before another flush: otherwise a power cut could bring
    /// back the old consumer position over data that is already gone.
    consumer_durable: u64,
    /// Power-loss mode, streaming publication: a position whose items are
    /// flushed but whose pointer is not written yet (it rides on the next
    /// flush); see [`advance_pipelined`](Self::advance_pipelined).
    deferred: Option<u64>,
    /// `staging[..tail - base]` holds the stream bytes from `base` to
    /// `tail`: the partly filled sector at `written` and the pushed bytes
    /// not yet written after it; pushes append after them and write from
    /// `base`.
    staging: AlignedBuf,
    scratch: Vec<u8>,
}

impl<D: BlockDevice> Producer<D, Bytes> {
    /// Attaches a producer whose items are byte strings.
    ///
    /// # Errors
    /// See [`attach_with_codec`](Self::attach_with_codec).
    pub fn attach(device: D, options: Options) -> Result<Self> {
        Producer::attach_with_codec(device, Bytes, options)
    }
}

impl<D: BlockDevice, C: Codec> Producer<D, C> {
    /// Initialises a ring on `device` (a no-op if it already holds one); see
    /// [`ring::create`].
    ///
    /// # Errors
    /// [`Error::TooSmall`] below 4 sectors, or a device error.
    pub fn create(device: &D) -> Result<Created> {
        ring::create(device)
    }

    /// Attaches to the ring on `device` as its producer, in the ring's
    /// format.
    ///
    /// If the consumer has asked for a suspend, the request is acknowledged
    /// and the attach fails with [`Error::Suspended`], as in the original:
    /// retry once the consumer resumes.
    ///
    /// Format 2: attach recovers the published records (a power cut may
    /// have kept a pointer whose records it lost: they end at the first
    /// bad record, which is logged), takes the producer side (owner
    /// lease), and rewrites the producer sector with the recovered
    /// position and a new epoch: a flush, a write, a flush.
    ///
    /// # Errors
    /// [`Error::NotInitialised`], [`Error::Corrupt`], [`Error::Locked`] when
    /// another producer on this host is attached, [`Error::Suspended`],
    /// [`Error::ReadOnly`], or a device error. Format 2 also:
    /// [`Error::Owned`] while another producer holds the side,
    /// [`Error::LeaseExpired`] when its lease expired (see
    /// [`Options::take_over`]), the header's errors
    /// ([`Error::WrongSectorSize`], [`Error::WrongDeviceSize`],
    /// [`Error::UnsupportedFormat`]), [`Error::NoRandomness`].
    pub fn attach_with_codec(device: D, codec: C, options: Options) -> Result<Self> {
        let (link, p, c) = Link::open(device, Side::Producer, options)?;
        let ss = link.geometry.sector_size();
        let mut staging = AlignedBuf::zeroed(ss);
        if p.position % ss as u64 != 0 {
            link.read_stream(p.position / ss as u64, &mut staging)?;
        }
        let mut producer = Producer {
            items: link.items(),
            link,
            codec,
            published: p.position,
            published_durable: p.position,
            tail: p.position,
            written: p.position,
            consumer: c.position,
            ack: p.flag,
            looked_at: Instant::now(),
            flushed_to: p.position,
            flushed_pointer: p.position,
            consumer_durable: 0,
            deferred: None,
            staging,
            scratch: Vec::new(),
        };
        producer.acknowledge(c.flag)?;
        if producer.ack {
            return Err(Error::Suspended);
        }
        Ok(producer)
    }

    /// Detaches. Pushed items that were never published are abandoned (the
    /// consumer never sees them).
    pub fn detach(self) {}

    /// The ring's geometry.
    pub fn geometry(&self) -> Geometry {
        self.link.geometry
    }

    /// The options this producer was attached with.
    pub fn options(&self) -> &Options {
        &self.link.options
    }

    /// The ring's format.
    pub fn format(&self) -> RingFormat {
        self.link.format()
    }

    /// Format 2: writes a heartbeat (the producer sector, unchanged but for
    /// its heartbeat and generation) when a third of the ring's lease has
    /// passed since the last write of the sector, so that an idle producer
    /// keeps its side: cheap to call often. Every `advance` writes one
    /// anyway. Format 1: nothing.
    ///
    /// # Errors
    /// [`Error::Displaced`] when another producer took the side over (this
    /// handle then writes nothing more), or a device error.
    pub fn heartbeat(&mut self) -> Result<()> {
        let state = SideState {
            position: self.published,
            flag: self.ack,
            durable: self.flushed_pointer,
            epoch: 0,
        };
        self.link.heartbeat(state)
    }

    /// How items lie in this ring's stream (for the journal's sizes).
    pub(crate) fn items(&self) -> Items {
        self.items
    }

    /// Format 2: the ring's owner lease.
    pub(crate) fn lease(&self) -> Option<Duration> {
        self.link.lease()
    }

    /// The published end of the stream, as in the producer sector.
    pub fn published(&self) -> Position {
        Position::new(self.published)
    }

    /// The end of the last pushed item (published or not).
    pub fn tail(&self) -> Position {
        Position::new(self.tail)
    }

    /// Free bytes as of the last look at the consumer sector (a lower
    /// bound: the consumer may have released more since).
    pub fn free_bytes(&self) -> u64 {
        self.link.geometry.capacity() - (self.tail - self.consumer)
    }

    /// The ring space an item of `payload_len` bytes takes in this ring's
    /// format: its header, the payload and the padding after it.
    ///
    /// # Errors
    /// [`Error::TooLarge`] for an item that can never fit the ring.
    pub fn stream_len(&self, payload_len: usize) -> Result<u64> {
        self.items.stream_len(&self.link.geometry, payload_len)
    }

    /// Reads the consumer sector, acknowledges a changed suspend request,
    /// and tells whether the ring is suspended.
    ///
    /// # Errors
    /// [`Error::Corrupt`] or a device error.
    pub fn state(&mut self) -> Result<RingState> {
        self.look_at_consumer()?;
        Ok(if self.ack {
            RingState::Suspended
        } else {
            RingState::Running
        })
    }

    /// Key/value pairs for logs: at least `producer/offset`,
    /// `producer/suspend_ack`, `consumer/offset`, `consumer/suspend`, read
    /// from the device now, plus this handle's unpublished bytes.
    ///
    /// # Errors
    /// [`Error::Corrupt`] or a device error.
    pub fn debug_info(&mut self) -> Result<Vec<(String, String)>> {
        let mut info = self.link.debug_info()?;
        info.push((
            "producer/unpublished".into(),
            (self.tail - self.published).to_string(),
        ));
        Ok(info)
    }

    /// Writes `item` to the device after the last pushed item, without
    /// publishing it. Returns the position to pass to
    /// [`advance`](Self::advance) to publish it (and everything pushed
    /// before it).
    ///
    /// While a publication left by
    /// [`advance_pipelined`](Self::advance_pipelined) is pending, the write
    /// is deferred: the next `advance_pipelined` issues it together with
    /// that pending pointer (one device round trip for both), and
    /// [`advance`](Self::advance) before its flush. Either way the item is
    /// on the device before any pointer that publishes it is written.
    ///
    /// At least every [`consumer_poll_interval`](Options::consumer_poll_interval)
    /// a push also reads the consumer sector, to acknowledge a suspend or
    /// resume request; in format 1 that read goes in one transfer with the
    /// push's data write (in flight together on io_uring and NBD), and a
    /// suspend request found so undoes the push (FORMAT.md, "Suspend and
    /// resume").
    ///
    /// # Errors
    /// [`Error::Retry`] when the ring has no room for it now;
    /// [`Error::Suspended`]; [`Error::TooLarge`] when it can never fit;
    /// [`Error::Codec`]; a device error. After any error nothing was pushed.
    pub fn push(&mut self, item: &C::Item) -> Result<Position> {
        self.push_many(std::iter::once(item))
    }

    /// Pushes several items in one device write (two at the wrap). All or
    /// nothing: if the batch does not fit now, nothing is written and the
    /// result is [`Error::Retry`]. Returns the position after the last
    /// item.
    ///
    /// # Errors
    /// As [`push`](Self::push); [`Error::TooLarge`] also when the whole
    /// batch exceeds the ring's capacity.
    pub fn push_many<'i, I>(&mut self, items: I) -> Result<Position>
    where
        I: IntoIterator<Item = &'i C::Item>,
        C::Item: 'i,
    {
        // Format 1 looks at the consumer sector, when due, in the same
        // transfer as the batch's data (see `commit`), not before it.
        let look = self.may_look_with_write();
        if !look {
            self.check_running()?;
        }
        let head = self.head();
        let mut scratch = std::mem::take(&mut self.scratch);
        let staged = self.stage_all(head, items, &mut scratch);
        self.scratch = scratch;
        if look && !staged.as_ref().is_ok_and(|&end| end != head) {
            // Nothing to write with the look: look now, as without the
            // fold (a suspend is reported before an item's own error, and
            // an empty batch still notices one).
            self.check_running()?;
        }
        let end = staged?;
        if end == head {
            return Ok(Position::new(self.tail));
        }
        self.commit(end, look)
    }

    /// Encodes and stages `items` after `head`; returns the end.
    fn stage_all<'i, I>(&mut self, head: usize, items: I, scratch: &mut Vec<u8>) -> Result<usize>
    where
        I: IntoIterator<Item = &'i C::Item>,
        C::Item: 'i,
    {
        let mut end = head;
        for item in items {
            let bytes = self.codec.encode(item, scratch)?;
            end = self.stage(head, end, bytes)?;
        }
        Ok(end)
    }

    /// Like [`push`](Self::push), but when the ring is full, polls (with
    /// adaptive backoff) until there is room or `timeout` passes.
    ///
    /// ```
    /// use std::time::Duration;
    /// use shared_block_ring::{create, Consumer, MemDevice, Options, Producer};
    ///
    /// # fn main() -> Result<(), shared_block_ring::Error> {
    /// let disk = MemDevice::new(512, 4); // one data sector: 512 bytes
    /// create(&disk)?;
    /// let mut producer = Producer::attach(disk.clone(), Options::new())?;
    /// let end = producer.push(&[1u8; 400])?;
    /// producer.advance(end)?;
    /// // Full: waits at most 10 ms, then gives up with Retry.
    /// let e = producer.push_wait(&[2u8; 400], Some(Duration::from_millis(10))).unwrap_err();
    /// assert!(e.is_retry());
    /// // A consumer in another thread makes room; push_wait returns then.
    /// let consumer = std::thread::spawn(move || -> Result<(), shared_block_ring::Error> {
    ///     let mut c = Consumer::attach(disk, Options::new())?;
    ///     let (next, _) = c.pop_wait(Some(Duration::from_secs(10)))?;
    ///     c.advance(next)
    /// });
    /// let end = producer.push_wait(&[2u8; 400], Some(Duration::from_secs(10)))?;
    /// producer.advance(end)?;
    /// consumer.join().unwrap()?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`push`](Self::push); [`Error::Retry`] only after the timeout.
    pub fn push_wait(&mut self, item: &C::Item, timeout: Option<Duration>) -> Result<Position> {
        let mut backoff = self.link.backoff(timeout);
        loop {
            match self.push(item) {
                Err(Error::Retry(RetryReason::Full)) if self.pause(&mut backoff) => {}
                other => return other,
            }
        }
    }

    /// A backoff for waiting until the consumer makes room, to pass to
    /// [`pause`](Self::pause): what [`push_wait`](Self::push_wait) uses.
    pub fn backoff(&self, timeout: Option<Duration>) -> Backoff {
        self.link.backoff(timeout)
    }

    /// Waits one step of `backoff`, waking early when the device reports a
    /// change (the consumer released space, or asked for a suspend).
    /// Returns false once the backoff's deadline has passed.
    pub fn pause(&self, backoff: &mut Backoff) -> bool {
        backoff.wait_with(|d| self.link.device.wait_for_change(d))
    }

    /// Publishes every pushed item up to `position` (as returned by `push`):
    /// the consumer can see them once this returns. In the power-loss mode
    /// the items and the producer sector are on stable storage when this
    /// returns. Format 1 flushes the item data before the producer sector
    /// is written, which it writes durably: two flushes in all (see
    /// [`advance_pipelined`](Self::advance_pipelined) for one). Format 2
    /// writes the sector and then flushes once: its records carry
    /// checksums, so recovery tells a pointer that reached the disk before
    /// its records.
    ///
    /// The producer position never moves back, and nothing already
    /// promised is dropped: a position below the one left pending by
    /// [`advance_pipelined`](Self::advance_pipelined) publishes that
    /// pending position (its items are already durable), and a position
    /// already published changes nothing, except that a publication a
    /// failed call left not yet durable is made durable.
    ///
    /// # Errors
    /// [`Error::InvalidPosition`] for a position past the last push or not
    /// on an item boundary; a device error (the items then stay pushed but
    /// unpublished, and `advance` may be called again).
    pub fn advance(&mut self, position: Position) -> Result<()> {
        let p = self.check_advance(position)?;
        let target = p.max(self.published).max(self.deferred.unwrap_or(0));
        if target <= self.published_durable {
            return Ok(());
        }
        self.publish(target, self.ack)?;
        self.deferred = None;
        Ok(())
    }

    /// Writes the pointer `target` with the flag `ack`, with the flushes
    /// the format puts around it: when this returns, `target` is published
    /// and (in the power-loss mode) durable.
    fn publish(&mut self, target: u64, ack: bool) -> Result<()> {
        let policy = self.link.publication();
        if target > self.written {
            // Pushed items still in memory (write-behind): on the device
            // before the flush and the pointer that publish them.
            self.write_staging(self.head(), None)?;
        }
        if policy.flush_before_pointer && target > self.flushed_to {
            self.flush()?;
        }
        let state = SideState {
            position: target,
            flag: ack,
            durable: self.flushed_pointer,
            epoch: 0,
        };
        self.link.write_state_as(state, policy.pointer_durable)?;
        self.published = target;
        self.ack = ack;
        if policy.flush_after_pointer {
            // If this fails, the pointer is visible but not durable:
            // `published_durable` still lags, so the publication stays
            // pending.
            self.flush()?;
        }
        self.published_durable = target;
        Ok(())
    }

    /// Publishes like [`advance`](Self::advance), with one cache flush
    /// instead of two, for a producer that publishes batch after batch.
    ///
    /// In the power-loss mode this writes the pointer of the *previous*
    /// pipelined batch (whose items were flushed by the previous call),
    /// then flushes once: that makes the previous pointer and this batch's
    /// items durable together. This batch's pointer is written by the next
    /// call, or by [`sync`](Self::sync) (which the producer must call when
    /// no batch follows soon), or by [`advance`](Self::advance). So when
    /// this returns, everything up to the previous call's position is
    /// published and durable, and `position`'s items are durable but not
    /// yet visible. A pointer is never written before the flush that covers
    /// its items.
    ///
    /// A position at or below the pending one changes nothing (unless a
    /// failed call left a publication not yet durable: this call then
    /// flushes to make it durable).
    ///
    /// In the process-crash mode there are no flushes, and the same
    /// deferral saves a round trip instead: the previous batch's pointer
    /// goes in one transfer with this batch's items (the previous batch's
    /// items completed in the previous call, before this pointer is
    /// issued), so when this returns everything up to the previous call's
    /// position is published, and `position`'s items are written but not
    /// yet visible. In format 2, whose `advance` already costs one flush,
    /// this is [`advance`](Self::advance).
    ///
    /// # Errors
    /// As [`advance`](Self::advance). After a device error the previous
    /// position is still pending (see
    /// [`pending_publication`](Self::pending_publication)): retrying this
    /// call, [`sync`](Self::sync) or [`advance`](Self::advance) makes it
    /// durable.
    pub fn advance_pipelined(&mut self, position: Position) -> Result<()> {
        if !self.link.publication().pipelined {
            return self.advance(position);
        }
        let p = self.check_advance(position)?;
        let pending = self.deferred.unwrap_or(self.published);
        if p <= pending && self.published == self.published_durable {
            return Ok(());
        }
        let unwritten = self.written < self.tail;
        if let Some(d) = self.deferred {
            // Its items were flushed by the previous call; the flush below
            // makes the pointer durable. The items pushed since lie past
            // `d`, where the consumer does not look: they go in the same
            // transfer (in flight together, in any order). If the flush
            // fails, the pointer is visible but not durable:
            // `published_durable` still lags, so the publication stays
            // pending. If the transfer fails, `d` stays deferred.
            let pointer = SideState::new(d, self.ack);
            if unwritten {
                self.write_staging(self.head(), Some(pointer))?;
            } else {
                self.link.write_state_as(pointer, false)?;
            }
            self.published = d;
            self.deferred = None;
        } else if unwritten {
            self.write_staging(self.head(), None)?;
        }
        if self.power_loss() {
            self.flush()?;
        } else {
            // Nothing is flushed in this mode: a written pointer counts
            // (as `advance` counts it).
            self.published_durable = self.published;
        }
        if p > self.published {
            self.deferred = Some(p);
        }
        Ok(())
    }

    /// Makes the publication left pending by
    /// [`advance_pipelined`](Self::advance_pipelined) (or by a failed call)
    /// durable: writes its pointer durably. A no-op when nothing is
    /// pending.
    ///
    /// # Errors
    /// A device error (the publication is then still pending).
    pub fn sync(&mut self) -> Result<()> {
        match self.pending_publication() {
            Some(d) => self.advance(d),
            None => Ok(()),
        }
    }

    /// The position whose publication is not yet durable: the one an
    /// [`advance_pipelined`](Self::advance_pipelined) left to be written by
    /// the next call or [`sync`](Self::sync), or one whose pointer a failed
    /// call wrote without making it durable. `None` when every publication
    /// is durable.
    pub fn pending_publication(&self) -> Option<Position> {
        let unsynced = self.published > self.published_durable;
        self.deferred
            .or(unsynced.then_some(self.published))
            .map(Position::new)
    }

    fn power_loss(&self) -> bool {
        self.link.options.durability == Durability::PowerLoss
    }

    fn check_advance(&self, position: Position) -> Result<u64> {
        let p = position.offset();
        self.items.check_alignment(p)?;
        if p > self.tail {
            return Err(Error::InvalidPosition {
                position: p,
                reason: "beyond the last pushed item",
            });
        }
        Ok(p)
    }

    /// Flushes the device: the data and the pointer written so far, and
    /// the consumer position read before, are then on stable storage.
    fn flush(&mut self) -> Result<()> {
        let seen = self.consumer;
        self.link.flush()?;
        self.flushed_to = self.written;
        self.published_durable = self.published;
        self.flushed_pointer = self.published;
        self.consumer_durable = seen;
        Ok(())
    }

    /// Fails with `Suspended` when the consumer's last known request is a
    /// suspend. Re-reads the consumer sector when the poll interval has
    /// passed, or while suspended (to notice a resume).
    fn check_running(&mut self) -> Result<()> {
        if self.look_due() {
            self.look_at_consumer()?;
        }
        if self.ack {
            Err(Error::Suspended)
        } else {
            Ok(())
        }
    }

    /// Whether the consumer sector is due to be read: the poll interval
    /// has passed, or we are suspended (to notice a resume).
    fn look_due(&self) -> bool {
        self.ack || self.looked_at.elapsed() >= self.link.options.consumer_poll_interval
    }

    /// Whether a push that is due to look at the consumer may do so in one
    /// transfer with its data write, and only then stop if the consumer
    /// asks for a suspend (un-pushing the batch): format 1, not suspended
    /// (a suspended producer must see a resume before it writes anything).
    /// Format 2's look also checks that its side is still ours.
    fn may_look_with_write(&self) -> bool {
        !self.ack && self.format() == RingFormat::V1 && self.look_due()
    }

    /// Reads the consumer sector and acknowledges a changed suspend flag.
    fn look_at_consumer(&mut self) -> Result<()> {
        let c = self.link.read_state(Side::Consumer)?;
        self.note_consumer(c)?;
        self.acknowledge(c.flag)
    }

    /// Takes the consumer's state `c` as read: checks its position against
    /// ours and remembers it.
    fn note_consumer(&mut self, c: SideState) -> Result<()> {
        // A failed `advance_pipelined` may have written the deferred
        // pointer (its items are durable) and the consumer released up
        // to it.
        let pointer = self.published.max(self.deferred.unwrap_or(0));
        if c.position > pointer {
            return Err(Corruption::ConsumerAheadOfProducer {
                consumer: c.position,
                producer: pointer,
            }
            .into());
        }
        format::check_positions(self.tail, c.position, self.link.geometry.capacity())?;
        if c.position < self.consumer {
            tracing::warn!(
                was = self.consumer,
                now = c.position,
                "the consumer position moved backwards (a power cut in process-crash mode?)"
            );
        }
        self.consumer = c.position;
        self.looked_at = Instant::now();
        Ok(())
    }

    /// Makes `suspend_ack` equal the consumer's `suspend` flag: rewrites
    /// the published pointer with it, as `advance` writes a pointer
    /// (durable in the power-loss mode; in the process-crash mode nothing
    /// is, and `published_durable` follows `published`).
    fn acknowledge(&mut self, suspend: bool) -> Result<()> {
        if suspend != self.ack {
            self.publish(self.published, suspend)?;
        }
        Ok(())
    }
}

impl<D: BlockDevice, C: Codec> Drop for Producer<D, C> {
    /// Writes a pointer left pending by `advance_pipelined` (best effort:
    /// call [`sync`](Producer::sync) to see whether it worked).
    fn drop(&mut self) {
        if self.pending_publication().is_some() {
            if let Err(e) = self.sync() {
                tracing::warn!(error = %e, "could not publish the last pipelined batch");
            }
        }
    }
}

impl<D: BlockDevice, C: Codec> std::fmt::Debug for Producer<D, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("device", &self.link.device.describe())
            .field("published", &self.published)
            .field("tail", &self.tail)
            .field("consumer", &self.consumer)
            .field("suspend_ack", &self.ack)
            .finish()
    }
}
