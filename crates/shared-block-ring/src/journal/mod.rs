//! A journal: operations written to a ring on disk, then performed in
//! order, at least once, by a background worker, even across crashes.
//!
//! A process that must never lose an operation (an allocation, a state
//! change to apply elsewhere) pushes it into a [`Journal`]. The operation is
//! on the device when [`push`](Journal::push) returns; a worker thread then
//! hands it, in a batch with its neighbours, to the `perform` function given
//! to [`Journal::start`]. If the process dies, the next `start` on the same
//! device performs whatever was left before it returns.
//!
//! The producer and the consumer of the ring are both inside the journal,
//! in one process: the ring is used as a durable FIFO, not as a channel
//! between programs.
//!
//! # Guarantees
//!
//! * **Acknowledged means stored.** When `push` returns `Ok`, the operation
//!   is in the ring and published: in [`Durability::PowerLoss`] (the
//!   default) its bytes were flushed before the pointer that publishes it,
//!   and that pointer is on stable storage, so it survives a process crash
//!   and a power cut. In [`Durability::ProcessCrash`] nothing is flushed:
//!   the operation survives a crash of the process (the writes have reached
//!   the device), but a power cut may lose recent operations, or, on a
//!   device whose volatile cache reorders writes, publish a pointer whose
//!   data was lost, so that a restart performs stale bytes or fails with a
//!   codec error. Use it only where the device has no volatile write cache
//!   or power cuts are handled another way.
//! * **At least once.** Every acknowledged operation is eventually passed
//!   to `perform` in a batch for which `perform` returned `Ok`, in this run
//!   or a later one (given a `perform` that eventually succeeds). It may be
//!   performed more than once: a failed batch is retried whole, including
//!   operations `perform` had already applied; and after a crash, the batch
//!   that was running and the batches performed but not yet recorded on the
//!   device are performed again. `perform` must therefore be idempotent.
//!   The worker records its progress on the device (a consumer `advance`)
//!   10 ms after it falls idle, at least every 100 ms while busy, as soon as
//!   the performed operations fill half the ring or a `push` waits for
//!   space, and at shutdown: after a clean shutdown, the next start performs
//!   nothing again (unless that last record failed, which is logged and
//!   shown in [`JournalStats::last_error`]).
//! * **In order, never skipped.** Operations are passed to `perform` in the
//!   ring's order, which is the order in which pushes were acknowledged: if
//!   one `push` returned before another began, its operation comes first.
//!   A batch is retried (every `retry_interval`) until `perform` succeeds,
//!   and the next batch is not passed to `perform` before that. A panic
//!   inside `perform` counts as a failure: the worker survives and retries.
//!   After a crash, the operations performed again come in the same order,
//!   before any later one.
//! * **Nothing invented.** Only pushed operations are performed. An
//!   operation whose `push` did not return (a crash during the push), or
//!   returned a device error, may or may not be performed.
//! * **Bounded delay.** With a `flush_interval`, an operation's batch starts
//!   at most `flush_interval` after its `push` (the timer starts with the
//!   oldest waiting operation and is not restarted by later pushes),
//!   unless the worker is still performing (or retrying) the batch before
//!   it, or recording progress. A full ring, [`Waiter::flush`] and
//!   [`Waiter::sync`] start a batch at once.
//!
//! A full ring makes `push` wait (for the worker to perform and release
//! operations), never fail; only an operation that can never fit is refused
//! ([`Error::TooLarge`]). After [`Journal::shutdown`], or once the journal
//! is dropped, `push` fails with [`Error::ShutDown`].
//!
//! `perform` runs on the worker thread. It must not wait on its own
//! journal ([`Waiter::sync`] would wait for itself), and should not push
//! into it: a push into a full ring would wait for the worker forever.
//!
//! # Format 2
//!
//! On a format-2 ring (an existing one, or a blank device with
//! [`JournalOptions::format`]), each publication costs one cache flush
//! instead of two, and the journal holds both sides' owner leases: its
//! worker writes their heartbeats while the journal is idle (and a pusher
//! waiting for space writes the producer's), so that no other process
//! takes a live journal's ring over. If another process takes a side over
//! anyway (after the lease expired, with `take_over`), the journal stops
//! using that side: pushes fail with [`Error::Displaced`], or the worker
//! stops performing.
//!
//! # Concurrency
//!
//! `push` takes `&self` and may be called from many threads. Pushes made
//! at the same time are written together: one caller publishes everyone's
//! operations with a single write and a single producer `advance` (group
//! commit), while the others wait for it. With `N` threads pushing, one
//! publish (two cache flushes in the power-loss mode) serves up to `N`
//! operations.
//!
//! # Example
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//! use shared_block_ring::{Journal, JournalOptions, Json, MemDevice};
//!
//! #[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
//! enum Op {
//!     Allocate { volume: String, bytes: u64 },
//!     Free { volume: String },
//! }
//!
//! # fn main() -> Result<(), shared_block_ring::Error> {
//! let disk = MemDevice::new(512, 64); // a blank device: a ring is created
//! let done = Arc::new(Mutex::new(Vec::new()));
//! let log = done.clone();
//! // Batch for up to a minute, unless someone waits or the ring fills.
//! let options = JournalOptions::new()
//!     .name("allocations")
//!     .flush_interval(Duration::from_secs(60));
//! let journal = Journal::start_with_codec(
//!     disk.clone(),
//!     Json::<Op>::new(),
//!     options.clone(),
//!     move |ops: &[Op]| -> Result<(), String> {
//!         // Apply the batch; an Err (or a panic) retries the same batch.
//!         log.lock().unwrap().extend_from_slice(ops);
//!         Ok(())
//!     },
//! )?;
//!
//! let allocate = Op::Allocate { volume: "vm1".into(), bytes: 4096 };
//! let waiter = journal.push(&allocate)?;
//! // The operation is on the device; sync performs it now and waits.
//! waiter.sync()?;
//! assert_eq!(*done.lock().unwrap(), [allocate]);
//!
//! // Shut down before the next one is performed: it stays in the ring,
//! // and the next start performs it before returning.
//! journal.push(&Op::Free { volume: "vm1".into() })?;
//! journal.shutdown();
//! let replayed = Arc::new(Mutex::new(Vec::new()));
//! let log = replayed.clone();
//! let again = Journal::start_with_codec(disk, Json::<Op>::new(), options, move |ops: &[Op]| {
//!     log.lock().unwrap().extend_from_slice(ops);
//!     Ok::<(), String>(())
//! })?;
//! assert_eq!(*replayed.lock().unwrap(), [Op::Free { volume: "vm1".into() }]);
//! assert_eq!(again.stats().replayed, 1);
//! # Ok(())
//! # }
//! ```

mod core;
mod worker;

use std::collections::{HashMap, VecDeque};
use std::fmt::{self, Display};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::codec::{Bytes, Codec};
use crate::consumer::Consumer;
use crate::device::{AlignedBuf, BlockDevice};
use crate::error::{Error, IoOp, Result, SignatureProblem};
use crate::format::{self, Geometry};
use crate::layout;
use crate::producer::Producer;
use crate::ring::{self, Durability, Options, RingFormat};
use crate::sync::{now, thread, Condvar, Mutex};

use self::core::{fail_queue, Core, Counters, State};
use self::worker::Worker;

/// Both halves of the ring share one device. Erasing its type lets the
/// journal accept any device by value (no `Clone` bound: a `FileDevice`,
/// an `Arc<FileDevice>`, a `Box<dyn BlockDevice>` from `device::open`) and
/// keeps `Journal` generic over the codec only; the cost is one dynamic
/// call per device operation, nothing next to the I/O itself.
type Dev = Arc<dyn BlockDevice>;

/// The caller's `perform`, with its error turned into text for logs.
type Perform<T> = Box<dyn FnMut(&[T]) -> std::result::Result<(), String> + Send>;

/// Options for [`Journal::start`].
#[derive(Debug, Clone)]
pub struct JournalOptions {
    ring: Options,
    flush_interval: Duration,
    retry_interval: Duration,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            ring: Options::new(),
            flush_interval: Duration::ZERO,
            retry_interval: Duration::from_secs(5),
        }
    }
}

impl JournalOptions {
    /// Name and client `unknown`, power-loss durability, a flush interval
    /// of zero (perform as soon as possible) and a retry interval of 5 s,
    /// as in the original.
    pub fn new() -> JournalOptions {
        JournalOptions::default()
    }

    /// The journal's name: written into the ring's state sectors (as the
    /// queue name) and used in logs.
    pub fn name(mut self, name: impl Into<String>) -> JournalOptions {
        self.ring = self.ring.queue(name);
        self
    }

    /// The client name written into the ring's state sectors.
    pub fn client(mut self, client: impl Into<String>) -> JournalOptions {
        self.ring = self.ring.client(client);
        self
    }

    /// What an acknowledged push survives; see the [module docs](self).
    pub fn durability(mut self, durability: Durability) -> JournalOptions {
        self.ring = self.ring.durability(durability);
        self
    }

    /// The format of the ring created on a blank device (format 1 by
    /// default); a device that holds a ring keeps its format.
    pub fn format(mut self, format: RingFormat) -> JournalOptions {
        self.ring = self.ring.format(format);
        self
    }

    /// The owner lease of a format-2 ring created on a blank device (30 s
    /// by default).
    pub fn lease(mut self, lease: Duration) -> JournalOptions {
        self.ring = self.ring.lease(lease);
        self
    }

    /// Format 2: take both sides over if their owners' leases have
    /// expired (see [`Options::take_over`]).
    pub fn take_over(mut self, take_over: bool) -> JournalOptions {
        self.ring = self.ring.take_over(take_over);
        self
    }

    /// How long the worker may wait, after the oldest unperformed
    /// operation was pushed, to gather more operations into its batch.
    /// Zero (the default) performs as soon as possible.
    pub fn flush_interval(mut self, interval: Duration) -> JournalOptions {
        self.flush_interval = interval;
        self
    }

    /// How long the worker waits after a failed batch before retrying the
    /// same batch (5 s by default).
    pub fn retry_interval(mut self, interval: Duration) -> JournalOptions {
        self.retry_interval = interval;
        self
    }
}

/// Counters of a running journal, from [`Journal::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JournalStats {
    /// Operations acknowledged by `push` since start.
    pub pushed: u64,
    /// Operations performed successfully since start, including those
    /// replayed by `start` (an operation performed twice counts twice).
    pub performed: u64,
    /// Of `performed`, those found in the ring and performed by `start`.
    pub replayed: u64,
    /// Failed attempts (an `Err` or a panic from `perform`, or an
    /// operation the codec cannot decode) that were, or will be, retried.
    pub retried: u64,
    /// Successful calls of `perform`.
    pub batches: u64,
    /// Producer advances (group commits): `pushed / commits` is the
    /// average number of operations published together.
    pub commits: u64,
    /// Operations in the ring not yet performed.
    pub backlog_items: u64,
    /// Bytes of the ring (headers and padding included) taken by
    /// operations not yet performed.
    pub backlog_bytes: u64,
    /// The last failure of `perform`, of decoding, or of recording
    /// progress on the device, if any.
    pub last_error: Option<String>,
}

/// A journal of operations of type `C::Item` (bytes by default), performed
/// in order, at least once; see the [module docs](self).
pub struct Journal<C: Codec = Bytes> {
    core: Arc<Core>,
    codec: Arc<C>,
    worker: Mutex<Option<thread::JoinHandle<()>>>,
}

impl Journal<Bytes> {
    /// Starts a journal of byte-string operations on `device`; see
    /// [`start_with_codec`](Self::start_with_codec).
    ///
    /// # Errors
    /// As [`start_with_codec`](Self::start_with_codec).
    pub fn start<D, F, E>(device: D, options: JournalOptions, perform: F) -> Result<Journal<Bytes>>
    where
        D: BlockDevice + 'static,
        F: FnMut(&[Vec<u8>]) -> std::result::Result<(), E> + Send + 'static,
        E: Display + 'static,
    {
        Journal::start_with_codec(device, Bytes, options, perform)
    }
}

impl<C: Codec + 'static> Journal<C> {
    /// Starts a journal on `device`, whose operations `codec` turns into
    /// ring items and back.
    ///
    /// A blank device (sector 0 all zero) gets a new ring; a device holding
    /// a ring is reused; anything else is refused, never overwritten. Then
    /// the journal attaches as both producer and consumer (acknowledging
    /// and lifting a suspend left on the ring), and performs every
    /// operation already in the ring, retrying every `retry_interval` until
    /// `perform` succeeds, before it returns and starts the worker thread.
    ///
    /// # Errors
    /// [`Error::NotInitialised`] for a device holding something else than a
    /// ring; [`Error::Locked`] when this ring's producer or consumer is
    /// attached elsewhere in this host; [`Error::Corrupt`] or
    /// [`Error::Codec`] when an operation left in the ring cannot be read;
    /// a device error.
    ///
    /// # Panics
    /// When the operating system cannot start a thread, as
    /// [`std::thread::spawn`].
    pub fn start_with_codec<D, F, E>(
        device: D,
        codec: C,
        options: JournalOptions,
        mut perform: F,
    ) -> Result<Journal<C>>
    where
        D: BlockDevice + 'static,
        F: FnMut(&[C::Owned]) -> std::result::Result<(), E> + Send + 'static,
        E: Display + 'static,
    {
        let device: Dev = Arc::new(device);
        ensure_ring(&*device, &options.ring)?;
        let mut consumer = Consumer::attach(device.clone(), options.ring.clone())?;
        let producer = match Producer::attach(device.clone(), options.ring.clone()) {
            Err(Error::Suspended) => {
                // A consumer before us asked the producer to pause, and the
                // attach has just acknowledged it. We are the consumer now.
                tracing::info!(journal = %options.ring.queue, "lifting a suspend left on the ring");
                consumer.resume()?;
                Producer::attach(device.clone(), options.ring.clone())?
            }
            other => other?,
        };
        let published = producer.published().offset();
        let start = consumer.position().offset();
        let items = producer.items();
        // Format 2: heartbeats well within the lease (a call writes only
        // when a third of it has passed since the last write).
        let heartbeat_every = producer.lease().map(|lease| lease / 6);
        let core = Arc::new(Core {
            state: Mutex::new(State {
                shutdown: false,
                worker_stopped: false,
                queue: VecDeque::new(),
                next_ticket: 0,
                committing: false,
                gathering: false,
                outcomes: HashMap::new(),
                concurrency: 1,
                last_cycle: Duration::ZERO,
                orphans: Vec::new(),
                ready: VecDeque::new(),
                committed: 0,
                published,
                pending_since: None,
                taken: 0,
                performed: 0,
                performed_pos: start,
                urgent: false,
                space_wanted: false,
                released: 0,
                counters: Counters::default(),
                last_error: None,
                wakers: Vec::new(),
            }),
            work: Condvar::new(),
            progress: Condvar::new(),
            arrived: Condvar::new(),
            producer: Mutex::new(Some(producer)),
            geometry: consumer.geometry(),
            items,
            heartbeat_every,
            name: options.ring.queue.clone(),
            flush_interval: options.flush_interval,
            retry_interval: options.retry_interval,
        });
        let codec = Arc::new(codec);
        let mut worker = Worker {
            core: core.clone(),
            codec: codec.clone(),
            consumer,
            perform: Box::new(move |ops: &[C::Owned]| perform(ops).map_err(|e| e.to_string())),
            performed_pos: start,
            idle_since: Instant::now(),
            unreleased_since: None,
            release_blocked_until: None,
            next_heartbeat: heartbeat_every.map(|every| now() + every),
            displaced: false,
        };
        worker.replay(published)?;
        let handle = thread::Builder::new()
            .name(format!("journal {}", core.name))
            .spawn(move || worker.run())
            .expect("start the journal's worker thread");
        tracing::debug!(journal = %core.name, device = %device.describe(), "journal started");
        Ok(Journal {
            core,
            codec,
            worker: Mutex::new(Some(handle)),
        })
    }
}

impl<C: Codec> Journal<C> {
    /// Writes `op` to the ring and returns once it is published (durably,
    /// in the power-loss mode); the worker performs it later. Waits while
    /// the ring is full.
    ///
    /// # Errors
    /// [`Error::TooLarge`] when the operation can never fit the ring;
    /// [`Error::Codec`] when it cannot be encoded; [`Error::ShutDown`]
    /// after shutdown; [`Error::Suspended`] when another consumer has
    /// suspended the ring; a device error (the operation may then still be
    /// performed later, as after a crash during the push).
    pub fn push(&self, op: &C::Item) -> Result<Waiter> {
        let mut scratch = Vec::new();
        let bytes = self.codec.encode(op, &mut scratch)?.to_vec();
        let stream_len = self
            .core
            .items
            .stream_len(&self.core.geometry, bytes.len())?;
        let seq = self.core.push(bytes, stream_len)?;
        Ok(Waiter {
            core: self.core.clone(),
            seq,
        })
    }

    /// A snapshot of the journal's counters.
    pub fn stats(&self) -> JournalStats {
        let st = self.core.lock();
        JournalStats {
            pushed: st.counters.pushed,
            performed: st.counters.performed,
            replayed: st.counters.replayed,
            retried: st.counters.retried,
            batches: st.counters.batches,
            commits: st.counters.commits,
            backlog_items: st.committed - st.performed,
            backlog_bytes: st.published - st.performed_pos,
            last_error: st.last_error.clone(),
        }
    }

    /// The ring's geometry.
    pub fn geometry(&self) -> Geometry {
        self.core.geometry
    }

    /// Stops the journal: later pushes fail with [`Error::ShutDown`], the
    /// worker finishes the batch it is performing (a failing batch is not
    /// retried again), records its progress and stops, and the ring is
    /// detached. Operations not performed stay in the ring for the next
    /// start. Returns once all that is done; calling it again does nothing.
    pub fn shutdown(&self) {
        {
            let mut st = self.core.lock();
            if !st.shutdown {
                st.shutdown = true;
                fail_queue(&mut st, || Error::ShutDown);
                tracing::debug!(journal = %self.core.name, "shutting down");
            }
        }
        self.core.work.notify_all();
        self.core.progress.notify_all();
        self.core.arrived.notify_all();
        let handle = self.worker.lock().take();
        if let Some(handle) = handle {
            // Called from `perform`, the worker cannot wait for itself: it
            // stops when `perform` returns.
            if handle.thread().id() != thread::current().id() && handle.join().is_err() {
                tracing::error!(journal = %self.core.name, "the journal worker panicked");
            }
        }
        // Waits for a commit in progress, then releases the producer role.
        self.core.producer.lock().take();
    }
}

impl<C: Codec> Drop for Journal<C> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl<C: Codec> fmt::Debug for Journal<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.core.lock();
        f.debug_struct("Journal")
            .field("name", &self.core.name)
            .field("committed", &st.committed)
            .field("performed", &st.performed)
            .field("shutdown", &st.shutdown)
            .finish()
    }
}

/// A handle on one pushed operation, to hurry it or wait for it.
#[derive(Clone)]
pub struct Waiter {
    core: Arc<Core>,
    seq: u64,
}

impl Waiter {
    /// The operation's place in this journal's order: 1 for the first
    /// operation published after start, then 2, 3, ...
    pub fn sequence(&self) -> u64 {
        self.seq
    }

    /// True once the operation has been performed.
    pub fn is_performed(&self) -> bool {
        self.core.lock().performed >= self.seq
    }

    /// Starts a batch holding this operation now, without waiting for the
    /// flush interval. Does nothing if it is already taken.
    pub fn flush(&self) {
        self.core.hurry(self.seq);
    }

    /// Flushes (a caller who waits gains nothing from batching delay) and
    /// blocks until the operation has been performed.
    ///
    /// # Errors
    /// [`Error::ShutDown`] when the journal stopped before performing it
    /// (it stays in the ring for the next start).
    pub fn sync(&self) -> Result<()> {
        self.wait(None).map(|_| ())
    }

    /// Like [`sync`](Self::sync), for at most `timeout`: true when the
    /// operation was performed, false on timeout.
    ///
    /// # Errors
    /// As [`sync`](Self::sync).
    pub fn sync_timeout(&self, timeout: Duration) -> Result<bool> {
        self.wait(Some(now() + timeout))
    }

    fn wait(&self, deadline: Option<Instant>) -> Result<bool> {
        self.core.wait_performed(self.seq, deadline)
    }

    /// For `Waiter::performed` (feature `tokio`, `crate::asynchronous`).
    #[cfg(feature = "tokio")]
    pub(crate) fn poll_performed(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<()>> {
        self.core.poll_performed(self.seq, cx.waker())
    }
}

impl fmt::Debug for Waiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiter")
            .field("journal", &self.core.name)
            .field("sequence", &self.seq)
            .finish()
    }
}

/// Creates a ring (of the format `options` name) on a blank device;
/// accepts a ring of either format; refuses a device holding anything else
/// (the original treated any attach error as "no ring yet", and could
/// overwrite what was there).
fn ensure_ring(device: &dyn BlockDevice, options: &Options) -> Result<()> {
    let geometry = Geometry::new(device.sector_size(), device.sectors())?;
    let mut sector = AlignedBuf::zeroed(geometry.sector_size());
    device
        .read(layout::SIGNATURE_SECTOR, &mut sector)
        .map_err(|e| Error::io(IoOp::Read, layout::SIGNATURE_SECTOR, e))?;
    if format::v2::has_magic(&sector) {
        // Attach checks the header and reports what is wrong with it.
        return Ok(());
    }
    match format::check_signature(&sector) {
        Ok(()) => Ok(()),
        Err(SignatureProblem::Blank) => {
            ring::create_with(device, options)?;
            tracing::info!(device = %device.describe(), format = %options.format, "created a ring for the journal");
            Ok(())
        }
        Err(problem) => Err(Error::NotInitialised(problem)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journals_and_waiters_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Journal<Bytes>>();
        send_sync::<Waiter>();
    }
}
