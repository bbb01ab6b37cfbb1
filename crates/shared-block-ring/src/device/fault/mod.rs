//! A fault-injecting wrapper for any [`BlockDevice`]: a volatile write
//! cache, crashes and power cuts, and I/O errors on demand.
//!
//! This is how the crate proves its durability promise, and it is public so
//! that applications can test their own recovery code the same way.
//!
//! # The cache model
//!
//! The wrapped device always holds every completed write: that is what
//! other readers see, and what a *process* crash leaves. Beside it,
//! [`FaultDevice`] remembers which sectors were written since the last
//! [`flush`](BlockDevice::flush) and what they held on stable storage
//! before. A *power cut* may keep any subset of those unflushed sector
//! writes: every sector of every unflushed write independently survives or
//! not, which covers a multi-sector write torn at any sector boundary (in
//! any combination) and a cache that destages writes out of order. A single
//! sector is never torn. [`write_durable`](BlockDevice::write_durable) is
//! modelled as a FUA write: once it returns, its sectors are on stable
//! storage (and no older cached version of them can resurface); the other
//! unflushed writes stay in the cache, as with NBD's FUA flag or `O_DSYNC`
//! on a disk that supports FUA. A durable write is not a flush.
//!
//! # Transfers and chains
//!
//! The writes of one [`transfer`](BlockDevice::transfer) are in flight
//! together and done in any order: a crash while they are in flight leaves
//! any subset of them done ([`CrashPoint::process_crash_images`]), and a
//! power cut then may keep any subset of their sectors, as for any
//! unflushed write. An injected fault fails one write or read of a
//! transfer and the others are still carried out. A
//! [`chain`](BlockDevice::chain) is its operations one after another, so
//! a crash inside it leaves a prefix of it done.
//!
//! # Crashes
//!
//! Every completed write and flush is a *crash point*; a durable write is
//! two (once its data is in the cache, and once it is durable); a transfer
//! with two or more writes is two (while its writes are in flight, and once
//! they are all done), with one write one, with none none. Arm a crash
//! with [`crash_after`](FaultDevice::crash_after): when the device reaches
//! that crash point it freezes a [`CrashPoint`] and fails every later
//! operation with `EIO`, as if the machine had stopped right there. The
//! crash point then yields the image a process crash leaves
//! ([`CrashPoint::process_crash_image`]) and every image a power cut may
//! leave ([`CrashPoint::power_cut_images`]). Re-open such an image with
//! [`MemDevice::from_bytes`](super::MemDevice::from_bytes) and check what
//! your program finds there.
//!
//! # I/O errors
//!
//! [`fail_nth`](FaultDevice::fail_nth) fails one future read, write or
//! flush with `EIO`; [`fail_all`](FaultDevice::fail_all) fails every one of
//! that kind until [`clear_faults`](FaultDevice::clear_faults). A failed
//! operation changes nothing on the device. [`counts`](FaultDevice::counts)
//! tells how many operations of each kind were made.
//!
//! ```
//! use shared_block_ring::device::{FaultDevice, FaultOp};
//! use shared_block_ring::{create, Error, MemDevice, Options, Producer};
//!
//! let disk = FaultDevice::new(MemDevice::new(512, 16));
//! create(&disk).unwrap();
//! let mut producer = Producer::attach(disk.clone(), Options::new()).unwrap();
//! let end = producer.push(b"hello").unwrap();
//!
//! // The flush that must precede publication fails: nothing is published.
//! disk.fail_nth(FaultOp::Flush, 1);
//! assert!(matches!(producer.advance(end), Err(Error::Io { .. })));
//! producer.advance(end).unwrap(); // the fault has cleared
//!
//! // Pull the plug after the next push: the unflushed item may or may not
//! // be on the disk, but the published one always is.
//! disk.crash_after(1);
//! producer.push(b"world").unwrap();
//! let crash = disk.crash_point().unwrap();
//! assert_eq!(crash.unflushed().len(), 1);
//! for image in crash.power_cut_images(64, 0) {
//!     let mut c = shared_block_ring::Consumer::attach(
//!         MemDevice::from_bytes(512, image),
//!         Options::new(),
//!     )
//!     .unwrap();
//!     assert_eq!(c.pop().unwrap().1, b"hello");
//! }
//! ```

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{check_range, BlockDevice, TransferFailed};
use crate::error::{IoOp, Side};

// This file holds FaultDevice and the cache model it keeps; `crash.rs`
// holds CrashPoint and the images a crash may leave; `tests.rs` the unit
// tests.
mod crash;

pub use crash::{CrashPoint, PowerCutImages, UnflushedSector};

/// A kind of device operation, for [`FaultDevice::fail_nth`] and
/// [`FaultDevice::fail_all`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultOp {
    /// [`BlockDevice::read`].
    Read,
    /// [`BlockDevice::write`] and [`BlockDevice::write_durable`].
    Write,
    /// [`BlockDevice::flush`].
    Flush,
}

impl FaultOp {
    fn index(self) -> usize {
        match self {
            FaultOp::Read => 0,
            FaultOp::Write => 1,
            FaultOp::Flush => 2,
        }
    }
}

/// How many operations a [`FaultDevice`] has seen, failed ones included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpCounts {
    /// Reads.
    pub reads: u64,
    /// Plain (cached) writes.
    pub writes: u64,
    /// Durable (FUA) writes.
    pub durable_writes: u64,
    /// Flushes.
    pub flushes: u64,
    /// Operations failed on purpose (injected faults and operations after
    /// a crash).
    pub failed: u64,
    /// Crash points passed: one per completed write and flush, two per
    /// completed durable write, two per transfer of two writes or more (see
    /// the [module documentation](self)).
    pub crash_points: u64,
}

/// Wraps a [`BlockDevice`], modelling a volatile write cache, crashes and
/// power cuts, and injecting I/O errors; see the [module
/// documentation](self).
///
/// Clones share the wrapped device and all the fault state, so a producer
/// and a consumer in one test can each own a clone. Role locks, change
/// notifications, the sector size, the size and read-only state pass
/// through to the wrapped device.
///
/// Crash images hold a copy of the whole device: use small devices.
pub struct FaultDevice<D: BlockDevice> {
    shared: Arc<Shared<D>>,
}

impl<D: BlockDevice> Clone for FaultDevice<D> {
    fn clone(&self) -> Self {
        FaultDevice {
            shared: Arc::clone(&self.shared),
        }
    }
}

struct Shared<D> {
    inner: D,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    counts: OpCounts,
    /// Per [`FaultOp`]: fail the op when this countdown reaches 1.
    fail_in: [Option<u64>; 3],
    /// Per [`FaultOp`]: fail every op of this kind.
    fail_always: [bool; 3],
    /// Crash when `counts.crash_points` reaches this.
    crash_at: Option<u64>,
    crashed: Option<CrashPoint>,
    /// Stable contents of every sector written since the last flush.
    durable: BTreeMap<u64, Vec<u8>>,
    unflushed: Vec<UnflushedSector>,
    next_write: u64,
    /// The writes of the transfer in flight, while a crash may stop it.
    in_flight: Vec<u64>,
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

impl<D: BlockDevice> FaultDevice<D> {
    /// Wraps `inner`, whose current contents count as durable.
    pub fn new(inner: D) -> FaultDevice<D> {
        FaultDevice {
            shared: Arc::new(Shared {
                inner,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// The wrapped device.
    pub fn inner(&self) -> &D {
        &self.shared.inner
    }

    /// Operations seen so far.
    pub fn counts(&self) -> OpCounts {
        self.lock().counts
    }

    /// Fails the `n`-th next operation of kind `op` (1 is the very next)
    /// with `EIO`, once. Replaces an earlier `fail_nth` of that kind.
    pub fn fail_nth(&self, op: FaultOp, n: u64) {
        self.lock().fail_in[op.index()] = Some(n.max(1));
    }

    /// Fails every operation of kind `op` with `EIO` until
    /// [`clear_faults`](Self::clear_faults).
    pub fn fail_all(&self, op: FaultOp) {
        self.lock().fail_always[op.index()] = true;
    }

    /// Cancels every pending [`fail_nth`](Self::fail_nth) and
    /// [`fail_all`](Self::fail_all). A crash is not undone.
    pub fn clear_faults(&self) {
        let mut s = self.lock();
        s.fail_in = [None; 3];
        s.fail_always = [false; 3];
    }

    /// Arms a crash `points` crash points from now (0: crash now). From the
    /// crash on, every operation fails with `EIO`, and
    /// [`crash_point`](Self::crash_point) returns what the device held.
    pub fn crash_after(&self, points: u64) {
        let mut s = self.lock();
        let at = s.counts.crash_points + points;
        s.crash_at = Some(at);
        self.check_crash(&mut s);
    }

    /// The device as it was at the crash, once one has happened.
    pub fn crash_point(&self) -> Option<CrashPoint> {
        self.lock().crashed.clone()
    }

    /// True once an armed crash has happened.
    pub fn has_crashed(&self) -> bool {
        self.lock().crashed.is_some()
    }

    /// What a crash right now would leave, without crashing.
    ///
    /// # Errors
    /// A read error of the wrapped device.
    pub fn snapshot(&self) -> io::Result<CrashPoint> {
        let s = self.lock();
        self.freeze(&s)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is updated in whole steps; a panic elsewhere while it is
        // held leaves it usable.
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn freeze(&self, s: &State) -> io::Result<CrashPoint> {
        let inner = &self.shared.inner;
        let ss = inner.sector_size();
        let mut completed = vec![0u8; ss * inner.sectors() as usize];
        inner.read(0, &mut completed)?;
        Ok(CrashPoint {
            sector_size: ss,
            completed,
            durable: s.durable.clone(),
            unflushed: s.unflushed.clone(),
            in_flight: s.in_flight.clone(),
        })
    }

    /// Crashes if the armed crash point has been reached.
    fn check_crash(&self, s: &mut State) {
        if s.crashed.is_none() && s.crash_at.is_some_and(|at| s.counts.crash_points >= at) {
            // A device that cannot be read back cannot be crashed
            // meaningfully; keep an empty image rather than panic.
            let point = self.freeze(s).unwrap_or_else(|_| CrashPoint {
                sector_size: self.shared.inner.sector_size(),
                completed: Vec::new(),
                durable: BTreeMap::new(),
                unflushed: Vec::new(),
                in_flight: Vec::new(),
            });
            s.crashed = Some(point);
        }
    }

    /// Passes one crash point.
    fn crash_point_passed(&self, s: &mut State) {
        s.counts.crash_points += 1;
        self.check_crash(s);
    }

    /// Whether this operation must fail: after a crash, or by an injected
    /// fault. Counts the failure.
    fn should_fail(&self, s: &mut State, op: FaultOp) -> bool {
        let i = op.index();
        let fail = if s.crashed.is_some() || s.fail_always[i] {
            true
        } else {
            match s.fail_in[i] {
                Some(1) => {
                    s.fail_in[i] = None;
                    true
                }
                Some(n) => {
                    s.fail_in[i] = Some(n - 1);
                    false
                }
                None => false,
            }
        };
        if fail {
            s.counts.failed += 1;
        }
        fail
    }

    /// What stable storage holds in the sectors of `len` bytes at `sector`
    /// that were not written since the last flush: what the device holds
    /// now. The range must have been checked.
    fn stable_before(&self, s: &State, sector: u64, len: usize) -> io::Result<Stable> {
        let inner = &self.shared.inner;
        let ss = inner.sector_size();
        let mut stable = Vec::new();
        for at in sector..sector + (len / ss) as u64 {
            if !s.durable.contains_key(&at) {
                let mut old = vec![0u8; ss];
                inner.read(at, &mut old)?;
                stable.push((at, old));
            }
        }
        Ok(stable)
    }

    /// Records a write of `buf` at `sector` as unflushed, under a new write
    /// number (returned), with `stable` from
    /// [`stable_before`](Self::stable_before).
    fn record_write(&self, s: &mut State, stable: Stable, sector: u64, buf: &[u8]) -> u64 {
        let ss = self.shared.inner.sector_size();
        s.durable.extend(stable);
        let write = s.next_write;
        s.next_write += 1;
        for (i, data) in buf.chunks(ss).enumerate() {
            s.unflushed.push(UnflushedSector {
                write,
                sector: sector + i as u64,
                data: data.to_vec(),
            });
        }
        write
    }

    /// Performs `write` of `buf` at `sector` on the wrapped device and, if
    /// it succeeds, records it as unflushed.
    fn cached_write(
        &self,
        s: &mut State,
        sector: u64,
        buf: &[u8],
        write: impl FnOnce() -> io::Result<()>,
    ) -> io::Result<()> {
        let inner = &self.shared.inner;
        check_range(inner.sector_size(), inner.sectors(), sector, buf.len())?;
        let stable = self.stable_before(s, sector, buf.len())?;
        write()?;
        self.record_write(s, stable, sector, buf);
        Ok(())
    }
}

/// Sectors and what stable storage holds in them.
type Stable = Vec<(u64, Vec<u8>)>;

impl<D: BlockDevice> BlockDevice for FaultDevice<D> {
    fn sector_size(&self) -> usize {
        self.shared.inner.sector_size()
    }

    fn sectors(&self) -> u64 {
        self.shared.inner.sectors()
    }

    fn read(&self, sector: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut s = self.lock();
        s.counts.reads += 1;
        if self.should_fail(&mut s, FaultOp::Read) {
            return Err(eio());
        }
        self.shared.inner.read(sector, buf)
    }

    fn write(&self, sector: u64, buf: &[u8]) -> io::Result<()> {
        let mut s = self.lock();
        s.counts.writes += 1;
        if self.should_fail(&mut s, FaultOp::Write) {
            return Err(eio());
        }
        self.cached_write(&mut s, sector, buf, || self.shared.inner.write(sector, buf))?;
        self.crash_point_passed(&mut s);
        Ok(())
    }

    fn write_durable(&self, sector: u64, buf: &[u8]) -> io::Result<()> {
        let mut s = self.lock();
        s.counts.durable_writes += 1;
        if self.should_fail(&mut s, FaultOp::Write) {
            return Err(eio());
        }
        // First the data reaches the cache (a crash here may or may not
        // keep it), then it is durable.
        self.cached_write(&mut s, sector, buf, || {
            self.shared.inner.write_durable(sector, buf)
        })?;
        self.crash_point_passed(&mut s);
        if s.crashed.is_some() {
            return Err(eio());
        }
        let ss = self.shared.inner.sector_size() as u64;
        let end = sector + buf.len() as u64 / ss;
        // Stable storage now holds these sectors' latest version, and no
        // older cached version of them can be destaged over it.
        s.unflushed.retain(|u| !(sector..end).contains(&u.sector));
        for at in sector..end {
            s.durable.remove(&at);
        }
        self.crash_point_passed(&mut s);
        Ok(())
    }

    /// The writes are in flight together: see the [module
    /// documentation](self) for what a crash, a power cut or an injected
    /// fault leaves.
    fn transfer(&self, writes: &[(u64, &[u8])], reads: &mut [(u64, &mut [u8])]) -> io::Result<()> {
        let mut s = self.lock();
        let inner = &self.shared.inner;
        let (ss, sectors) = (inner.sector_size(), inner.sectors());
        for &(sector, buf) in writes {
            check_range(ss, sectors, sector, buf.len())?;
        }
        for (sector, buf) in reads.iter() {
            check_range(ss, sectors, *sector, buf.len())?;
        }
        s.counts.writes += writes.len() as u64;
        s.counts.reads += reads.len() as u64;
        let (w, r) = (writes.len(), reads.len());
        let say = |op, e| TransferFailed::wrap_in(w, r, op, e);
        let mut error = None;
        // The writes not failed on purpose, in the cache from the moment
        // they are in flight: a power cut may keep any of their sectors.
        let mut before = Vec::with_capacity(writes.len());
        for &(sector, buf) in writes {
            if self.should_fail(&mut s, FaultOp::Write) {
                error.get_or_insert_with(|| say(IoOp::Write, eio()));
                continue;
            }
            before.push((sector, buf, self.stable_before(&s, sector, buf.len())?));
        }
        let going: Vec<(u64, &[u8], u64)> = before
            .into_iter()
            .map(|(sector, buf, stable)| {
                (sector, buf, self.record_write(&mut s, stable, sector, buf))
            })
            .collect();
        if going.len() >= 2 {
            // A crash now leaves any subset of them done.
            s.in_flight = going.iter().map(|&(_, _, w)| w).collect();
            self.crash_point_passed(&mut s);
            s.in_flight.clear();
            if s.crashed.is_some() {
                return Err(eio());
            }
        }
        for &(sector, buf, write) in &going {
            if let Err(e) = inner.write(sector, buf) {
                s.unflushed.retain(|u| u.write != write);
                error.get_or_insert_with(|| say(IoOp::Write, e));
            }
        }
        if !going.is_empty() {
            self.crash_point_passed(&mut s);
            if s.crashed.is_some() {
                return Err(eio());
            }
        }
        for (sector, buf) in reads.iter_mut() {
            if self.should_fail(&mut s, FaultOp::Read) {
                error.get_or_insert_with(|| say(IoOp::Read, eio()));
            } else if let Err(e) = inner.read(*sector, buf) {
                error.get_or_insert_with(|| say(IoOp::Read, e));
            }
        }
        match error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn flush(&self) -> io::Result<()> {
        let mut s = self.lock();
        s.counts.flushes += 1;
        if self.should_fail(&mut s, FaultOp::Flush) {
            return Err(eio());
        }
        self.shared.inner.flush()?;
        s.durable.clear();
        s.unflushed.clear();
        self.crash_point_passed(&mut s);
        Ok(())
    }

    fn is_read_only(&self) -> bool {
        self.shared.inner.is_read_only()
    }

    fn wait_for_change(&self, timeout: std::time::Duration) -> bool {
        self.shared.inner.wait_for_change(timeout)
    }

    fn notifies_changes(&self) -> bool {
        self.shared.inner.notifies_changes()
    }

    fn describe(&self) -> String {
        format!(
            "fault-injecting device over {}",
            self.shared.inner.describe()
        )
    }

    fn try_lock(&self, side: Side) -> io::Result<Result<(), String>> {
        self.shared.inner.try_lock(side)
    }

    fn unlock(&self, side: Side) {
        self.shared.inner.unlock(side)
    }
}

#[cfg(test)]
mod tests;
