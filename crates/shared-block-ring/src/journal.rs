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

use std::collections::{HashMap, VecDeque};
use std::fmt::{self, Display};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::codec::{Bytes, Codec};
use crate::consumer::Consumer;
use crate::device::{AlignedBuf, BlockDevice};
use crate::error::{Error, IoOp, Result, SignatureProblem};
use crate::format::{self, Geometry};
use crate::layout;
use crate::position::Position;
use crate::producer::Producer;
use crate::ring::{self, Durability, Options, RingState};

/// Both halves of the ring share one device. Erasing its type lets the
/// journal accept any device by value (no `Clone` bound: a `FileDevice`,
/// an `Arc<FileDevice>`, a `Box<dyn BlockDevice>` from `device::open`) and
/// keeps `Journal` generic over the codec only; the cost is one dynamic
/// call per device operation, nothing next to the I/O itself.
type Dev = Arc<dyn BlockDevice>;

/// The caller's `perform`, with its error turned into text for logs.
type Perform<T> = Box<dyn FnMut(&[T]) -> std::result::Result<(), String> + Send>;

/// Record progress on the device this long after the worker falls idle.
/// Waiting a little lets a busy journal skip the consumer's cache flush
/// between two batches, leaving the device to the producer.
const RELEASE_WHEN_IDLE: Duration = Duration::from_millis(10);
/// Record progress at least this often while busy, which bounds what a
/// crash makes the next start perform again.
const RELEASE_AT_LEAST_EVERY: Duration = Duration::from_millis(100);
/// The longest a committing thread waits for concurrent pushers to join
/// its group (see `Core::gather`).
const MAX_GATHER: Duration = Duration::from_millis(1);

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

/// An operation waiting to be published.
struct Queued {
    ticket: u64,
    bytes: Vec<u8>,
    stream_len: u64,
    pushed_at: Instant,
}

#[derive(Default)]
struct Counters {
    pushed: u64,
    performed: u64,
    replayed: u64,
    retried: u64,
    batches: u64,
    commits: u64,
}

/// Everything the pushers, the waiters and the worker share, under one
/// mutex. Operations are numbered in ring order from 1 (the first one
/// published after start): `committed`, `taken` and `performed` count
/// them.
struct State {
    /// `shutdown` was called: no new pushes, the worker stops.
    shutdown: bool,
    /// The worker thread has ended: nothing more will be performed.
    worker_stopped: bool,

    /// Pushes waiting to be published, in arrival order.
    queue: VecDeque<Queued>,
    next_ticket: u64,
    /// A pusher is publishing (the leader of a group commit).
    committing: bool,
    /// The leader is waiting for more pushers to join its group.
    gathering: bool,
    /// Results of finished pushes, by ticket: the operation's number, or
    /// the error its push failed with.
    outcomes: HashMap<u64, Result<u64>>,
    /// Pushers seen at the end of the last commit: how many the next
    /// leader waits for.
    concurrency: usize,
    /// How long the last commit took.
    last_cycle: Duration,
    /// Operations written to the ring whose publishing failed (their
    /// pushers got an error); the next successful advance publishes them.
    orphans: Vec<Vec<u8>>,
    /// The bytes of the published operations not yet taken by the worker,
    /// in ring order: exactly what the producer wrote, handed over in
    /// memory so that the worker need not read it back from the device
    /// (the ring is read at start only).
    ready: VecDeque<Vec<u8>>,

    /// Operations published.
    committed: u64,
    /// The producer position after operation `committed`.
    published: u64,
    /// When the oldest published operation not yet taken was pushed.
    pending_since: Option<Instant>,
    /// Operations taken into batches by the worker.
    taken: u64,
    /// Operations performed.
    performed: u64,
    /// The position after the last performed operation.
    performed_pos: u64,
    /// Start the next batch now (a waiter asked).
    urgent: bool,
    /// A leader is waiting for space: perform and release now.
    space_wanted: bool,
    /// Consumer advances so far, so that a leader waiting for space can
    /// tell when some was released.
    released: u64,

    counters: Counters,
    last_error: Option<String>,
}

struct Core {
    state: Mutex<State>,
    /// Wakes the worker: new operations, a flush, a need for space, shutdown.
    work: Condvar,
    /// Wakes pushers and waiters: a commit finished, operations were
    /// performed, space was released, shutdown.
    progress: Condvar,
    /// Wakes a gathering leader when a pusher arrives.
    arrived: Condvar,
    /// The producer, used by one leader at a time; `None` after shutdown,
    /// which releases the producer role at once even while waiters (which
    /// hold the `Core`) live on.
    producer: Mutex<Option<Producer<Dev, Bytes>>>,
    geometry: Geometry,
    name: String,
    flush_interval: Duration,
    retry_interval: Duration,
}

fn relock<T>(r: std::sync::LockResult<T>) -> T {
    // A panic while holding a lock (there is no such path outside a bug)
    // leaves counters, not half-written data: keep going.
    r.unwrap_or_else(PoisonError::into_inner)
}

impl Core {
    fn lock(&self) -> MutexGuard<'_, State> {
        relock(self.state.lock())
    }

    fn wait<'a>(&self, cv: &Condvar, guard: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        relock(cv.wait(guard))
    }

    fn wait_until<'a>(
        &self,
        cv: &Condvar,
        guard: MutexGuard<'a, State>,
        deadline: Instant,
    ) -> MutexGuard<'a, State> {
        let timeout = deadline.saturating_duration_since(Instant::now());
        relock(cv.wait_timeout(guard, timeout)).0
    }

    /// Publishes queued operations, as the leader, until `ticket` (the
    /// leader's own push) has an outcome; then lets another pusher lead.
    fn lead(&self, ticket: u64) {
        loop {
            self.commit();
            let mut st = self.lock();
            if st.outcomes.contains_key(&ticket) {
                st.committing = false;
                drop(st);
                // A pusher still queued takes over.
                self.progress.notify_all();
                return;
            }
        }
    }

    /// One group commit: writes the queued operations that fit (in one
    /// write, two at the wrap) and publishes them with one advance. Waits
    /// for the worker to free space when none fits.
    fn commit(&self) {
        let mut guard = relock(self.producer.lock());
        let mut st = self.lock();
        let Some(producer) = guard.as_mut() else {
            fail_queue(&mut st, || Error::ShutDown);
            drop(st);
            self.progress.notify_all();
            return;
        };
        st = self.gather(st);
        let wanted: u64 = st.queue.iter().map(|q| q.stream_len).sum();
        if wanted > producer.free_bytes() {
            // Our view of the consumer may be stale: look again.
            drop(st);
            let state = producer.state();
            st = self.lock();
            let failure = match state {
                Ok(RingState::Running) => None,
                Ok(RingState::Suspended) => Some(Error::Suspended),
                Err(e) => Some(e),
            };
            if let Some(e) = failure {
                tracing::warn!(journal = %self.name, error = %e, "cannot publish operations");
                fail_queue(&mut st, || e.duplicate());
                drop(st);
                self.progress.notify_all();
                return;
            }
        }
        let free = producer.free_bytes();
        let mut fit = 0;
        let mut bytes = 0;
        for q in &st.queue {
            if bytes + q.stream_len > free {
                break;
            }
            bytes += q.stream_len;
            fit += 1;
        }
        let batch: Vec<Queued> = st.queue.drain(..fit).collect();
        let orphans = producer.tail() > producer.published();
        debug_assert_eq!(orphans, !st.orphans.is_empty());
        if batch.is_empty() && !orphans {
            if !st.queue.is_empty() {
                self.wait_for_space(st);
            }
            return;
        }
        drop(st);

        let started = Instant::now();
        let pushed = if batch.is_empty() {
            Ok(producer.tail())
        } else {
            producer.push_many(batch.iter().map(|q| q.bytes.as_slice()))
        };
        let result = match pushed {
            Ok(end) => producer.advance(end).map(|()| end).map_err(|e| (e, true)),
            Err(e) => Err((e, false)),
        };

        let mut st = self.lock();
        match result {
            Ok(end) => {
                let n = batch.len();
                if !st.orphans.is_empty() || n > 0 {
                    // Orphans come first in the ring; nobody waits on them.
                    let orphans = std::mem::take(&mut st.orphans);
                    st.committed += orphans.len() as u64;
                    st.ready.extend(orphans);
                    let oldest = batch.first().map_or_else(Instant::now, |q| q.pushed_at);
                    st.pending_since.get_or_insert(oldest);
                    for q in batch {
                        st.committed += 1;
                        let seq = st.committed;
                        st.outcomes.insert(q.ticket, Ok(seq));
                        st.ready.push_back(q.bytes);
                    }
                    st.published = end.offset();
                    st.counters.pushed += n as u64;
                    st.counters.commits += 1;
                    self.work.notify_one();
                }
                tracing::trace!(journal = %self.name, ops = n, position = end.offset(), "published");
                st.concurrency = n + st.queue.len();
            }
            Err((e, written)) => {
                tracing::warn!(journal = %self.name, ops = batch.len(), error = %e, "publishing operations failed");
                st.concurrency = batch.len() + st.queue.len();
                for q in batch {
                    if written {
                        st.orphans.push(q.bytes);
                    }
                    st.outcomes.insert(q.ticket, Err(e.duplicate()));
                }
                // The pushes still queued would meet the same device: fail
                // them too (none of them was written) rather than retry at
                // once, over and over.
                fail_queue(&mut st, || e.duplicate());
            }
        }
        st.last_cycle = started.elapsed();
        drop(st);
        self.progress.notify_all();
    }

    /// Group commit only pays if the group is large. When several threads
    /// pushed together last time, they are probably about to push again
    /// (each was just released by the last commit), so wait a little,
    /// at most a quarter of a commit, for them to join.
    fn gather<'a>(&self, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        if st.queue.len() >= st.concurrency {
            return st;
        }
        let deadline = Instant::now() + (st.last_cycle / 4).min(MAX_GATHER);
        st.gathering = true;
        while st.queue.len() < st.concurrency && !st.shutdown && Instant::now() < deadline {
            st = self.wait_until(&self.arrived, st, deadline);
        }
        st.gathering = false;
        st
    }

    /// Asks the worker for space and waits until it releases some (or the
    /// journal shuts down, which fails the queue).
    fn wait_for_space(&self, mut st: MutexGuard<'_, State>) {
        let seen = st.released;
        st.space_wanted = true;
        self.work.notify_one();
        tracing::debug!(journal = %self.name, "the ring is full: waiting for the worker");
        while st.released == seen && !st.shutdown {
            st = self.wait(&self.progress, st);
        }
        st.space_wanted = false;
    }
}

/// Fails every queued push with `error()`.
fn fail_queue(st: &mut State, error: impl Fn() -> Error) {
    while let Some(q) = st.queue.pop_front() {
        st.outcomes.insert(q.ticket, Err(error()));
    }
}

/// A journal of operations of type `C::Item` (bytes by default), performed
/// in order, at least once; see the [module docs](self).
pub struct Journal<C: Codec = Bytes> {
    core: Arc<Core>,
    codec: Arc<C>,
    worker: Mutex<Option<JoinHandle<()>>>,
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
        ensure_ring(&*device)?;
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
            }),
            work: Condvar::new(),
            progress: Condvar::new(),
            arrived: Condvar::new(),
            producer: Mutex::new(Some(producer)),
            geometry: consumer.geometry(),
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
        let stream_len = self.core.geometry.item_len_fits(bytes.len())?;
        let core = &*self.core;
        let mut st = core.lock();
        if st.shutdown {
            return Err(Error::ShutDown);
        }
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.queue.push_back(Queued {
            ticket,
            bytes,
            stream_len,
            pushed_at: Instant::now(),
        });
        if st.gathering {
            core.arrived.notify_one();
        }
        loop {
            if let Some(outcome) = st.outcomes.remove(&ticket) {
                return outcome.map(|seq| Waiter {
                    core: self.core.clone(),
                    seq,
                });
            }
            if !st.committing {
                st.committing = true;
                drop(st);
                core.lead(ticket);
                st = core.lock();
                continue;
            }
            st = core.wait(&core.progress, st);
        }
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
        let handle = relock(self.worker.lock()).take();
        if let Some(handle) = handle {
            // Called from `perform`, the worker cannot wait for itself: it
            // stops when `perform` returns.
            if handle.thread().id() != thread::current().id() && handle.join().is_err() {
                tracing::error!(journal = %self.core.name, "the journal worker panicked");
            }
        }
        // Waits for a commit in progress, then releases the producer role.
        relock(self.core.producer.lock()).take();
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
        let mut st = self.core.lock();
        if self.seq > st.taken && !st.shutdown {
            st.urgent = true;
            drop(st);
            self.core.work.notify_one();
        }
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
        self.wait(Some(Instant::now() + timeout))
    }

    fn wait(&self, deadline: Option<Instant>) -> Result<bool> {
        self.flush();
        let core = &*self.core;
        let mut st = core.lock();
        loop {
            if st.performed >= self.seq {
                return Ok(true);
            }
            if st.worker_stopped {
                return Err(Error::ShutDown);
            }
            st = match deadline {
                None => core.wait(&core.progress, st),
                Some(d) if Instant::now() >= d => return Ok(false),
                Some(d) => core.wait_until(&core.progress, st, d),
            };
        }
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

/// Creates a ring on a blank device; refuses a device holding anything
/// else than a ring (the original treated any attach error as "no ring
/// yet", and could overwrite what was there).
fn ensure_ring(device: &dyn BlockDevice) -> Result<()> {
    let geometry = Geometry::new(device.sector_size(), device.sectors())?;
    let mut sector = AlignedBuf::zeroed(geometry.sector_size());
    device
        .read(layout::SIGNATURE_SECTOR, &mut sector)
        .map_err(|e| Error::io(IoOp::Read, layout::SIGNATURE_SECTOR, e))?;
    match format::check_signature(&sector) {
        Ok(()) => Ok(()),
        Err(SignatureProblem::Blank) => {
            ring::create(device)?;
            tracing::info!(device = %device.describe(), "created a ring for the journal");
            Ok(())
        }
        Err(problem) => Err(Error::NotInitialised(problem)),
    }
}

enum Job {
    /// Perform `ops`, the operations up to number `end_seq`, which end at
    /// ring position `end`.
    Batch {
        end_seq: u64,
        end: u64,
        ops: Vec<Vec<u8>>,
    },
    /// Record progress on the device.
    Release,
}

/// The consumer side, run by the worker thread (and by `start`).
struct Worker<C: Codec> {
    core: Arc<Core>,
    codec: Arc<C>,
    consumer: Consumer<Dev, Bytes>,
    perform: Perform<C::Owned>,
    /// Position after the last performed operation; the consumer position
    /// on the device trails it until the next release.
    performed_pos: u64,
    /// When the last batch finished.
    idle_since: Instant,
    /// When operations were first performed without being released.
    unreleased_since: Option<Instant>,
    /// After a failed release, when to try again.
    release_blocked_until: Option<Instant>,
}

/// Marks the worker stopped however its thread ends, so that no waiter
/// waits forever.
struct Stopped(Arc<Core>);

impl Drop for Stopped {
    fn drop(&mut self) {
        self.0.lock().worker_stopped = true;
        self.0.progress.notify_all();
    }
}

impl<C: Codec> Worker<C> {
    /// Performs everything in the ring up to `end`, during `start`.
    /// Failures of `perform` are retried; failures to read the ring end
    /// the start.
    fn replay(&mut self, end: u64) -> Result<()> {
        if end == self.performed_pos {
            return Ok(());
        }
        let (items, at) = self.read(end)?;
        tracing::info!(journal = %self.core.name, ops = items.len(), "performing operations left in the ring");
        loop {
            match self.call_perform(&items) {
                Ok(()) => break,
                Err(msg) => {
                    self.failed(msg);
                    self.retry_wait();
                }
            }
        }
        self.performed_pos = at;
        self.consumer.advance(Position::new(at))?;
        let mut st = self.core.lock();
        st.performed_pos = at;
        st.counters.performed += items.len() as u64;
        st.counters.replayed += items.len() as u64;
        st.counters.batches += 1;
        Ok(())
    }

    fn run(mut self) {
        let _stopped = Stopped(self.core.clone());
        while let Some(job) = self.next_job() {
            match job {
                Job::Batch { end_seq, end, ops } => self.batch(end_seq, end, &ops),
                Job::Release => self.release(),
            }
        }
        if self.unreleased_since.is_some() {
            self.release();
        }
        tracing::debug!(journal = %self.core.name, "journal worker stopped");
    }

    /// Sleeps until there is something to do; `None` at shutdown.
    fn next_job(&mut self) -> Option<Job> {
        let core = self.core.clone();
        let mut st = core.lock();
        loop {
            if st.shutdown {
                return None;
            }
            let now = Instant::now();
            let mut wake: Option<Instant> = None;
            if st.committed > st.taken {
                let due = if st.urgent || st.space_wanted {
                    now
                } else {
                    st.pending_since.map_or(now, |t| t + core.flush_interval)
                };
                if due <= now {
                    let job = Job::Batch {
                        end_seq: st.committed,
                        end: st.published,
                        ops: st.ready.drain(..).collect(),
                    };
                    st.taken = st.committed;
                    st.urgent = false;
                    st.pending_since = None;
                    return Some(job);
                }
                wake = Some(due);
            }
            if let Some(since) = self.unreleased_since {
                let unreleased = self.performed_pos - self.consumer.position().offset();
                let mut at =
                    (self.idle_since + RELEASE_WHEN_IDLE).min(since + RELEASE_AT_LEAST_EVERY);
                if st.space_wanted || unreleased * 2 >= core.geometry.capacity() {
                    at = now;
                }
                if let Some(blocked) = self.release_blocked_until {
                    at = at.max(blocked);
                }
                if at <= now {
                    return Some(Job::Release);
                }
                wake = Some(wake.map_or(at, |w| w.min(at)));
            }
            st = match wake {
                Some(t) => core.wait_until(&core.work, st, t),
                None => core.wait(&core.work, st),
            };
        }
    }

    /// Decodes and performs one batch, retrying until it succeeds or the
    /// journal shuts down.
    fn batch(&mut self, end_seq: u64, end: u64, ops: &[Vec<u8>]) {
        let mut decoded: Option<Vec<C::Owned>> = None;
        loop {
            let items = match &decoded {
                Some(items) => items,
                None => match ops.iter().map(|op| self.codec.decode(op)).collect() {
                    Ok(items) => decoded.insert(items),
                    Err(e) => {
                        self.failed(format!("decoding an operation: {e}"));
                        if !self.retry_wait() {
                            return;
                        }
                        continue;
                    }
                },
            };
            match self.call_perform(items) {
                Ok(()) => break,
                Err(msg) => {
                    self.failed(msg);
                    if !self.retry_wait() {
                        return;
                    }
                }
            }
        }
        let now = Instant::now();
        self.performed_pos = end;
        self.idle_since = now;
        self.unreleased_since.get_or_insert(now);
        let mut st = self.core.lock();
        debug_assert_eq!(ops.len() as u64, end_seq - st.performed);
        st.performed = end_seq;
        st.performed_pos = end;
        st.counters.performed += ops.len() as u64;
        st.counters.batches += 1;
        drop(st);
        self.core.progress.notify_all();
    }

    /// Reads and decodes the operations in the ring from the last performed
    /// one up to `end` (at start).
    fn read(&mut self, end: u64) -> Result<(Vec<C::Owned>, u64)> {
        let mut at = Position::new(self.performed_pos);
        let mut items = Vec::new();
        while at.offset() < end {
            let (next, bytes) = self.consumer.peek_bytes(at)?;
            items.push(self.codec.decode(bytes)?);
            at = next;
        }
        Ok((items, at.offset()))
    }

    /// Calls `perform`, turning a panic into an error.
    fn call_perform(&mut self, items: &[C::Owned]) -> std::result::Result<(), String> {
        // AssertUnwindSafe: after a panic we only read the message and call
        // `perform` again with the same batch, as after an `Err`; keeping its
        // own state usable is part of being a retryable `perform`.
        match catch_unwind(AssertUnwindSafe(|| (self.perform)(items))) {
            Ok(r) => r,
            Err(payload) => {
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a non-text panic".into());
                Err(format!("perform panicked: {msg}"))
            }
        }
    }

    fn failed(&self, msg: String) {
        tracing::warn!(journal = %self.core.name, error = %msg, retry_in = ?self.core.retry_interval, "journal batch failed; it will be retried");
        let mut st = self.core.lock();
        st.counters.retried += 1;
        st.last_error = Some(msg);
    }

    /// Waits `retry_interval`; false if the journal shut down meanwhile.
    fn retry_wait(&self) -> bool {
        let deadline = Instant::now() + self.core.retry_interval;
        let mut st = self.core.lock();
        loop {
            if st.shutdown {
                return false;
            }
            if Instant::now() >= deadline {
                return true;
            }
            st = self.core.wait_until(&self.core.work, st, deadline);
        }
    }

    /// Records progress: the consumer position moves to the last performed
    /// operation, freeing its space.
    fn release(&mut self) {
        match self.consumer.advance(Position::new(self.performed_pos)) {
            Ok(()) => {
                self.unreleased_since = None;
                self.release_blocked_until = None;
                self.core.lock().released += 1;
                self.core.progress.notify_all();
            }
            Err(e) => {
                tracing::warn!(journal = %self.core.name, error = %e, "recording the journal's progress failed");
                self.release_blocked_until = Some(Instant::now() + self.core.retry_interval);
                self.core.lock().last_error = Some(format!("recording progress: {e}"));
            }
        }
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
