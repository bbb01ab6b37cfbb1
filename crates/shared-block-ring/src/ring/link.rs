//! One side's view of the device, in either format: attach (format 2:
//! recovery and the owner lease), the state sectors, and the data runs.

use std::time::Duration;

use super::owned::Owned;
use super::{read_stream, Durability, Items, Options, RingFormat};
use crate::device::{AlignedBuf, BlockDevice, Op, TransferFailed};
use crate::error::{Error, IoOp, Result, Side};
use crate::format::v2::{self as codec, lease, scan::Recovery, State as State2};
use crate::format::{self, Geometry, Label, State};
use crate::layout;

/// A state sector as the producer and the consumer use it, in either
/// format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct SideState {
    /// `P` or `C`. A consumer's view of a format-2 producer sector is
    /// capped at the end of its valid records while the sector is the one
    /// a power cut left (see [`Owned::capped`]).
    pub(crate) position: u64,
    /// `suspend_ack` or `suspend`.
    pub(crate) flag: bool,
    /// Format 2's producer sector: `durable`, a producer position whose
    /// records (and pointer) are on stable storage. Otherwise 0.
    pub(crate) durable: u64,
    /// Format 2's producer sector: the producer's epoch. Otherwise 0.
    pub(crate) epoch: u64,
}

impl SideState {
    /// A position and a flag (what format 1 has).
    pub(crate) fn new(position: u64, flag: bool) -> SideState {
        SideState {
            position,
            flag,
            ..SideState::default()
        }
    }
}

/// Where a producer's cache flushes go around the pointer that publishes
/// its items (FORMAT.md, "Publishing", for each format).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Publication {
    /// Flush the items before writing the pointer (format 1).
    pub(crate) flush_before_pointer: bool,
    /// Write the pointer durably by itself, FUA / DSYNC (format 1).
    pub(crate) pointer_durable: bool,
    /// Flush once after the plain pointer write (format 2).
    pub(crate) flush_after_pointer: bool,
    /// `advance_pipelined` defers the pointer to the next flush (format 1;
    /// format 2's `advance` already costs one flush).
    pub(crate) pipelined: bool,
}

/// One side's view of the device: geometry, options, a sector buffer, the
/// role lock (released on drop) and, for format 2, the owned side.
pub(crate) struct Link<D: BlockDevice> {
    pub(crate) device: D,
    pub(crate) geometry: Geometry,
    pub(crate) side: Side,
    pub(crate) options: Options,
    sector: AlignedBuf,
    /// The other side's state sector, read with a write of ours.
    theirs: AlignedBuf,
    holds_lock: bool,
    /// Format 2: the side this handle owns.
    owned: Option<Box<Owned>>,
}

impl<D: BlockDevice> Link<D> {
    /// Checks the device, takes the role lock, detects the format and
    /// attaches: reads both states (format 1), or recovers and takes the
    /// side (format 2: the owner lease, then the producer's rewrite of its
    /// sector or the consumer's claim of its own). Returns the producer's
    /// and the consumer's states as the new handle starts from.
    pub(crate) fn open(
        device: D,
        side: Side,
        options: Options,
    ) -> Result<(Link<D>, SideState, SideState)> {
        let geometry = Geometry::new(device.sector_size(), device.sectors())?;
        if device.is_read_only() {
            return Err(Error::ReadOnly);
        }
        let mut link = Link {
            sector: AlignedBuf::zeroed(geometry.sector_size()),
            theirs: AlignedBuf::zeroed(geometry.sector_size()),
            device,
            geometry,
            side,
            options,
            holds_lock: false,
            owned: None,
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
        if codec::has_magic(&link.sector) {
            let (producer, consumer) = link.attach_v2()?;
            return Ok((link, producer, consumer));
        }
        format::check_signature(&link.sector).map_err(Error::NotInitialised)?;
        let p = link.read_state(Side::Producer)?;
        let c = link.read_state(Side::Consumer)?;
        format::check_positions(p.position, c.position, link.geometry.capacity())?;
        Ok((link, p, c))
    }

    /// Format 2's attach, after the lock (FORMAT.md, "Recovery at attach",
    /// "Producer attach", "Owner lease").
    fn attach_v2(&mut self) -> Result<(SideState, SideState)> {
        let (_, head) = crate::ring2::read_head(&self.device)?;
        let r = codec::scan::recover(&self.geometry, &head, |first, buf| {
            read_stream(&self.device, &self.geometry, first, buf)
        })?;
        let me = crate::host::this_process()?;
        let side = self.side;
        let own = match side {
            Side::Producer => r.producer,
            Side::Consumer => r.consumer,
        };
        let take = lease::decide(
            &lease::Claim {
                side,
                ours: &me,
                sector: &own,
                lease: r.header.lease(),
                now: crate::host::now_ns(),
                take_over: self.options.take_over,
            },
            crate::host::pid_alive,
        )?;
        match take {
            lease::Take::OwnerDead | lease::Take::TakenOver => tracing::info!(
                %side,
                owner = %own.owner,
                last_seen = %own.heartbeat_age(crate::host::now_ns()),
                how = ?take,
                "taking over the side of a format-2 ring"
            ),
            _ => {}
        }
        log_recovery(&r);
        let q = r.published_end();
        let ring_id = r.header.ring_id;
        self.owned = Some(Box::new(Owned::new(
            r.header,
            me,
            own,
            self.geometry.sector_size(),
        )));
        let consumer = SideState::new(r.consumer.position, r.consumer.flag);
        match side {
            Side::Producer => {
                // The previous producer's records in [s, q) may still be
                // only in the cache: make them durable before a sector
                // says `durable = q`; then take the side with a new epoch,
                // and flush that before any record of ours is written.
                self.flush()?;
                let epoch = r.producer.epoch.wrapping_add(1);
                let state = State2 {
                    position: q,
                    durable: q,
                    epoch,
                    ..r.producer
                };
                self.write_v2(state, false)?;
                self.flush()?;
                tracing::debug!(position = q, epoch, %ring_id, "attached as the producer of a format-2 ring");
                let producer = SideState {
                    position: q,
                    flag: r.producer.flag,
                    durable: q,
                    epoch,
                };
                Ok((producer, consumer))
            }
            Side::Consumer => {
                self.write_v2(r.consumer, true)?;
                if r.pointer_ahead_of_records() {
                    if let Some(owned) = self.owned.as_deref_mut() {
                        owned.cap = Some((r.producer.generation, q));
                    }
                }
                let producer = SideState {
                    position: q,
                    flag: r.producer.flag,
                    durable: r.producer.durable,
                    epoch: r.producer.epoch,
                };
                Ok((producer, consumer))
            }
        }
    }

    /// The ring's format.
    pub(crate) fn format(&self) -> RingFormat {
        match self.owned {
            None => RingFormat::V1,
            Some(_) => RingFormat::V2,
        }
    }

    /// How items lie in the stream; a format-2 producer writes its epoch.
    pub(crate) fn items(&self) -> Items {
        match self.owned.as_deref() {
            None => Items::V1,
            Some(o) => Items::V2 {
                ring_id: o.header.ring_id,
                epoch: o.own.epoch,
            },
        }
    }

    /// Format 2: the owner lease.
    pub(crate) fn lease(&self) -> Option<Duration> {
        self.owned.as_deref().map(Owned::lease)
    }

    /// Where a producer's flushes go.
    pub(crate) fn publication(&self) -> Publication {
        let power_loss = self.options.durability == Durability::PowerLoss;
        match self.owned {
            None => Publication {
                flush_before_pointer: power_loss,
                pointer_durable: power_loss,
                flush_after_pointer: false,
                // Both modes: the pointer of the previous batch goes with
                // the next batch's data (its own data completed in the
                // previous call; in the power-loss mode, and flushed).
                pipelined: true,
            },
            Some(_) => Publication {
                flush_before_pointer: false,
                pointer_durable: false,
                flush_after_pointer: power_loss,
                pipelined: false,
            },
        }
    }

    fn read_sector(&mut self, sector: u64) -> Result<()> {
        self.device
            .read(sector, &mut self.sector)
            .map_err(|e| Error::io(IoOp::Read, sector, e))
    }

    fn read_text(&mut self, sector: u64) -> Result<String> {
        self.read_sector(sector)?;
        let text = if codec::has_magic(&self.sector) {
            codec::state_text(&self.sector)
        } else {
            format::state_text(&self.sector)
        };
        Ok(crate::escape::escape_bytes(text).to_string())
    }

    /// Reads and decodes one side's state sector. Format 2: checks it
    /// against the ring; when this handle must check that it still owns
    /// its side before its next write, reading the other side's sector
    /// reads both sectors in one read and checks ours too.
    ///
    /// # Errors
    /// [`Error::Corrupt`], [`Error::Displaced`], or a device error.
    pub(crate) fn read_state(&mut self, whose: Side) -> Result<SideState> {
        let state = match self.owned.as_deref_mut() {
            None => {
                self.device
                    .read(whose.sector(), &mut self.sector)
                    .map_err(|e| Error::io(IoOp::Read, whose.sector(), e))?;
                let s = format::decode_state(whose, &self.sector)?;
                SideState::new(s.position, s.flag)
            }
            Some(owned) => {
                owned.check_poison(self.side)?;
                let rid = owned.header.ring_id;
                let state = if whose != self.side && owned.must_check() {
                    let ss = self.geometry.sector_size();
                    self.device
                        .read(layout::PRODUCER_SECTOR, &mut owned.pair)
                        .map_err(|e| Error::io(IoOp::Read, layout::PRODUCER_SECTOR, e))?;
                    let (ours, theirs) = match self.side {
                        Side::Producer => (&owned.pair[..ss], &owned.pair[ss..]),
                        Side::Consumer => (&owned.pair[ss..], &owned.pair[..ss]),
                    };
                    let mine = codec::decode_state(self.side, &rid, ours)?;
                    let other = codec::decode_state(whose, &rid, theirs)?;
                    owned.judge(self.side, &mine)?;
                    other
                } else {
                    self.device
                        .read(whose.sector(), &mut self.sector)
                        .map_err(|e| Error::io(IoOp::Read, whose.sector(), e))?;
                    codec::decode_state(whose, &rid, &self.sector)?
                };
                let position = if whose == Side::Producer && self.side == Side::Consumer {
                    owned.capped(&state)
                } else {
                    state.position
                };
                SideState {
                    position,
                    flag: state.flag,
                    durable: state.durable,
                    epoch: state.epoch,
                }
            }
        };
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
    pub(crate) fn write_state(&mut self, state: SideState) -> Result<()> {
        let durable = self.options.durability == Durability::PowerLoss;
        self.write_state_as(state, durable)
    }

    /// Writes this side's state sector, durably (by itself: FUA, DSYNC) or
    /// not. Format 2: with our owner, epoch, generation + 1 and a
    /// heartbeat, after checking that the side is still ours when that is
    /// due; `state.durable` is the producer's `durable` field.
    ///
    /// # Errors
    /// [`Error::Displaced`], [`Error::Corrupt`] (our sector, when read to
    /// check), or a device error.
    pub(crate) fn write_state_as(&mut self, state: SideState, durable: bool) -> Result<()> {
        if let Some(owned) = self.owned.as_deref() {
            let next = State2 {
                position: state.position,
                flag: state.flag,
                durable: state.durable,
                ..owned.own
            };
            return self.write_v2(next, durable);
        }
        self.encode_v1(state);
        self.write_own(durable)?;
        self.trace_write(state.position, state.flag);
        Ok(())
    }

    /// Format 1: writes this side's state sector (durably in the
    /// power-loss mode) and reads the other side's, for a handle that
    /// would read it next anyway: in the process-crash mode as one
    /// [`BlockDevice::transfer`] (in flight together), in the power-loss
    /// mode as a [`BlockDevice::chain`] (the read starts once the durable
    /// write completed: io_uring links them, NBD sends them together).
    /// Returns the other side's state, or `None` when the write completed
    /// and the read did not, or when the sector does not decode (the
    /// handle's next ordinary read reports that).
    ///
    /// # Errors
    /// A device error of the write (in the process-crash mode, of either,
    /// named as the device reports it: see [`TransferFailed`]).
    pub(crate) fn write_state_and_read_other(
        &mut self,
        state: SideState,
    ) -> Result<Option<SideState>> {
        debug_assert!(self.owned.is_none(), "format 1 only");
        self.encode_v1(state);
        let (mine, other) = (self.side, self.side.other());
        let read = if self.options.durability == Durability::PowerLoss {
            let mut ops = [
                Op::WriteDurable {
                    sector: mine.sector(),
                    buf: &self.sector,
                },
                Op::Read {
                    sector: other.sector(),
                    buf: &mut self.theirs,
                },
            ];
            match self.device.chain(&mut ops) {
                Ok(()) => true,
                Err(e) if e.done >= 1 => false,
                Err(e) => return Err(Error::io(IoOp::Write, mine.sector(), e.error)),
            }
        } else {
            self.device
                .transfer(
                    &[(mine.sector(), &self.sector)],
                    &mut [(other.sector(), &mut self.theirs)],
                )
                .map_err(|e| transfer_error(e, mine.sector(), other.sector()))?;
            true
        };
        self.trace_write(state.position, state.flag);
        if !read {
            return Ok(None);
        }
        Ok(format::decode_state(other, &self.theirs)
            .ok()
            .map(|s| SideState::new(s.position, s.flag)))
    }

    /// Format 1: encodes this side's state sector with `state` and our
    /// label into the link's sector buffer.
    fn encode_v1(&mut self, state: SideState) {
        let label = Label {
            queue: &self.options.queue,
            client: &self.options.client,
        };
        let state = State {
            position: state.position,
            flag: state.flag,
        };
        format::encode_state(self.side, state, Some(label), &mut self.sector);
    }

    /// Format 2: writes our sector with `state`'s position, flag,
    /// `durable` and epoch, our owner, generation + 1 and a heartbeat.
    fn write_v2(&mut self, state: State2, durable: bool) -> Result<()> {
        self.ensure_owner()?;
        let Some(owned) = self.owned.as_deref_mut() else {
            return Ok(());
        };
        let (next, at) = owned.next(state);
        let label = Label {
            queue: &self.options.queue,
            client: &self.options.client,
        };
        codec::encode_state(
            self.side,
            &owned.header.ring_id,
            &next,
            Some(label),
            &mut self.sector,
        );
        let sector = self.side.sector();
        let r = if durable {
            self.device.write_durable(sector, &self.sector)
        } else {
            self.device.write(sector, &self.sector)
        };
        r.map_err(|e| Error::io(IoOp::Write, sector, e))?;
        owned.written(next, at);
        self.trace_write(next.position, next.flag);
        Ok(())
    }

    fn write_own(&mut self, durable: bool) -> Result<()> {
        let sector = self.side.sector();
        let r = if durable {
            self.device.write_durable(sector, &self.sector)
        } else {
            self.device.write(sector, &self.sector)
        };
        r.map_err(|e| Error::io(IoOp::Write, sector, e))
    }

    fn trace_write(&self, position: u64, flag: bool) {
        tracing::trace!(
            side = %self.side,
            queue = %self.options.queue,
            client = %self.options.client,
            op = "write",
            sector = self.side.sector(),
            position,
            flag,
            "state sector"
        );
    }

    /// Format 2: before a write, checks that the side is still ours when
    /// more than half the lease has passed since our last heartbeat (see
    /// [`lease::must_check_owner`]); a handle found displaced is poisoned.
    /// Format 1: nothing.
    ///
    /// # Errors
    /// [`Error::Displaced`], [`Error::Corrupt`], or a device error.
    pub(crate) fn ensure_owner(&mut self) -> Result<()> {
        let Some(owned) = self.owned.as_deref_mut() else {
            return Ok(());
        };
        owned.check_poison(self.side)?;
        if !owned.must_check() {
            return Ok(());
        }
        let sector = self.side.sector();
        self.device
            .read(sector, &mut self.sector)
            .map_err(|e| Error::io(IoOp::Read, sector, e))?;
        let mine = codec::decode_state(self.side, &owned.header.ring_id, &self.sector)?;
        owned.judge(self.side, &mine)
    }

    /// Format 2: writes a heartbeat (our sector with `state`, a plain
    /// write) when a third of the lease has passed since the last one.
    /// Format 1: nothing.
    ///
    /// # Errors
    /// As [`write_state_as`](Self::write_state_as).
    pub(crate) fn heartbeat(&mut self, state: SideState) -> Result<()> {
        let Some(owned) = self.owned.as_deref() else {
            return Ok(());
        };
        owned.check_poison(self.side)?;
        if owned.heartbeat_due() {
            self.write_state_as(state, false)?;
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes of whole stream sectors starting at stream
    /// sector `stream_sector`, in one read or two at the wrap.
    pub(crate) fn read_stream(&self, stream_sector: u64, buf: &mut [u8]) -> Result<()> {
        read_stream(&self.device, &self.geometry, stream_sector, buf)
    }

    /// Writes whole stream sectors, in one write or two at the wrap.
    /// Format 2: after checking the side is still ours (when due).
    pub(crate) fn write_stream(&mut self, stream_sector: u64, buf: &[u8]) -> Result<()> {
        self.ensure_owner()?;
        let (writes, n) = self.stream_writes(stream_sector, buf);
        for &(sector, run) in &writes[..n] {
            self.device
                .write(sector, run)
                .map_err(|e| Error::io(IoOp::Write, sector, e))?;
        }
        if let Some(owned) = self.owned.as_deref_mut() {
            owned.wrote_records();
        }
        Ok(())
    }

    /// The device writes that put whole stream sectors from `stream_sector`
    /// in place: one run, or two at the wrap; returned in an array with
    /// room for one more (a state sector), with how many are set. No
    /// allocation: this is on every push's path.
    fn stream_writes<'b>(
        &self,
        stream_sector: u64,
        buf: &'b [u8],
    ) -> ([(u64, &'b [u8]); 3], usize) {
        let ss = self.geometry.sector_size();
        let runs = self.geometry.runs(stream_sector, (buf.len() / ss) as u64);
        let mut writes: [(u64, &[u8]); 3] = [(0, &[]); 3];
        let mut n = 0;
        let mut off = 0;
        for (sector, count) in runs.iter() {
            let len = count as usize * ss;
            writes[n] = (sector, &buf[off..off + len]);
            n += 1;
            off += len;
        }
        (writes, n)
    }

    /// Format 1: writes whole stream sectors (plain writes, as
    /// [`write_stream`](Self::write_stream)) and reads the other side's
    /// state sector, as one [`BlockDevice::transfer`] (in flight together
    /// where the device allows): a producer's push that is due to look at
    /// the consumer sector looks with its data write instead of one round
    /// trip before it. Returns the other side's state, or `None` when its
    /// sector does not decode (an ordinary read then reports why).
    ///
    /// # Errors
    /// A device error of either, named as the device reports it (see
    /// [`TransferFailed`]; a write when it does not say).
    pub(crate) fn write_stream_and_read_other(
        &mut self,
        stream_sector: u64,
        buf: &[u8],
    ) -> Result<Option<SideState>> {
        debug_assert!(self.owned.is_none(), "format 1 only");
        let other = self.side.other();
        let (writes, n) = self.stream_writes(stream_sector, buf);
        let writes = &writes[..n];
        let first = writes.first().map_or(other.sector(), |w| w.0);
        self.device
            .transfer(writes, &mut [(other.sector(), &mut self.theirs)])
            .map_err(|e| transfer_error(e, first, other.sector()))?;
        Ok(format::decode_state(other, &self.theirs)
            .ok()
            .map(|s| SideState::new(s.position, s.flag)))
    }

    /// Writes whole stream sectors and this side's state sector (a plain
    /// write) as one [`BlockDevice::transfer`]: in flight together,
    /// completed in any order, so a crash may leave any of them. Only for
    /// a state that publishes none of these sectors' items: a streaming
    /// producer's next batch with the pointer of the previous one, whose
    /// items an earlier flush made durable (FORMAT.md, "Publishing").
    /// Format 2 (no caller yet): the stream write, then the state write.
    pub(crate) fn write_stream_with_state(
        &mut self,
        stream_sector: u64,
        buf: &[u8],
        state: SideState,
    ) -> Result<()> {
        if self.owned.is_some() {
            self.write_stream(stream_sector, buf)?;
            return self.write_state_as(state, false);
        }
        self.encode_v1(state);
        let (mut writes, mut n) = self.stream_writes(stream_sector, buf);
        let first = writes[..n].first().map_or(self.side.sector(), |w| w.0);
        writes[n] = (self.side.sector(), &self.sector);
        n += 1;
        self.device
            .transfer(&writes[..n], &mut [])
            .map_err(|e| Error::io(IoOp::Write, first, e))?;
        self.trace_write(state.position, state.flag);
        Ok(())
    }

    /// A backoff for waiting on the other side. When the device wakes
    /// waiters itself on this host's writes, the polls are only for other
    /// hosts': no phase of frequent polls, and sleeps up to
    /// `max_backoff_notified` (see [`Options::max_backoff_notified`]).
    pub(crate) fn backoff(&self, timeout: Option<Duration>) -> crate::Backoff {
        let o = &self.options;
        if self.device.notifies_changes() {
            let max = o.max_backoff.max(o.max_backoff_notified);
            crate::Backoff::new(max, timeout).without_hot_phase()
        } else {
            crate::Backoff::new(o.max_backoff, timeout)
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
        let mut info = vec![
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
        ];
        if let Some(owned) = self.owned.as_deref() {
            info.push(("format".into(), "2".into()));
            info.push(("ring_id".into(), owned.header.ring_id.to_string()));
            info.push((format!("{}/owner", self.side), owned.me.to_string()));
            info.push((
                format!("{}/generation", self.side),
                owned.own.generation.to_string(),
            ));
            info.push(("producer/durable".into(), p.durable.to_string()));
            info.push(("producer/epoch".into(), p.epoch.to_string()));
            info.push(("lease_ms".into(), owned.lease().as_millis().to_string()));
        }
        Ok(info)
    }
}

/// Logs what recovery found when the producer's pointer runs past its
/// valid records.
fn log_recovery(r: &Recovery) {
    if !r.pointer_ahead_of_records() {
        return;
    }
    let problem = r
        .scan
        .problem
        .as_ref()
        .map(|p| p.to_string())
        .unwrap_or_default();
    tracing::warn!(
        producer_position = r.producer.position,
        records_end = r.published_end(),
        %problem,
        "a power cut kept the producer position but not all of its records (never acknowledged): \
         the published records end at the first bad one"
    );
}

impl<D: BlockDevice> Drop for Link<D> {
    fn drop(&mut self) {
        if let Some(released) = self.owned.as_deref().and_then(Owned::release) {
            // Best effort: clear our ownership, so that the next owner need
            // not wait for the lease.
            let label = Label {
                queue: &self.options.queue,
                client: &self.options.client,
            };
            if let Some(owned) = self.owned.as_deref() {
                codec::encode_state(
                    self.side,
                    &owned.header.ring_id,
                    &released,
                    Some(label),
                    &mut self.sector,
                );
                if let Err(e) = self.write_own(false) {
                    tracing::warn!(side = %self.side, error = %e, "could not clear the owner on detach");
                }
            }
        }
        if self.holds_lock {
            self.device.unlock(self.side);
        }
    }
}

/// The error of a transfer of writes (the first at `write_sector`) and a
/// read (at `read_sector`): named a read when the device says the read
/// failed (see [`TransferFailed`]), a write otherwise.
fn transfer_error(e: std::io::Error, write_sector: u64, read_sector: u64) -> Error {
    match TransferFailed::split(e) {
        (Some(IoOp::Read), e) => Error::io(IoOp::Read, read_sector, e),
        (_, e) => Error::io(IoOp::Write, write_sector, e),
    }
}
