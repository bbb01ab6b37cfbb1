//! The journal's coordination: pushers queue their operations and one of
//! them (the leader) publishes everyone's with a single producer advance
//! (group commit); waiters wait for operations to be performed; a full
//! ring makes the leader wait for the worker to release space.
//!
//! Everything shared lives in [`State`] under one mutex. Three condition
//! variables carry the wake-ups, and every wait re-checks its condition
//! under the mutex: a notification may be early, late or spurious, never
//! needed to be exact. `tests/journal_model.rs` explores the interleavings
//! of this protocol under a controlled scheduler (see `crate::sync`).

use std::collections::{HashMap, VecDeque};
#[cfg(feature = "tokio")]
use std::task::Poll;
use std::task::Waker;
use std::time::{Duration, Instant};

use crate::codec::Bytes;
use crate::error::{Error, Result};
use crate::format::Geometry;
use crate::producer::Producer;
use crate::ring::{Items, RingState};
use crate::sync::{now, Condvar, Mutex, MutexGuard};

use super::Dev;

/// The longest a committing thread waits for concurrent pushers to join
/// its group (see `Core::gather`).
const MAX_GATHER: Duration = Duration::from_millis(1);

/// An operation waiting to be published.
pub(super) struct Queued {
    pub(super) ticket: u64,
    pub(super) bytes: Vec<u8>,
    pub(super) stream_len: u64,
    pub(super) pushed_at: Instant,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) pushed: u64,
    pub(super) performed: u64,
    pub(super) replayed: u64,
    pub(super) retried: u64,
    pub(super) batches: u64,
    pub(super) commits: u64,
}

/// Everything the pushers, the waiters and the worker share, under one
/// mutex. Operations are numbered in ring order from 1 (the first one
/// published after start): `committed`, `taken` and `performed` count
/// them.
pub(super) struct State {
    /// `shutdown` was called: no new pushes, the worker stops.
    pub(super) shutdown: bool,
    /// The worker thread has ended: nothing more will be performed.
    pub(super) worker_stopped: bool,

    /// Pushes waiting to be published, in arrival order.
    pub(super) queue: VecDeque<Queued>,
    pub(super) next_ticket: u64,
    /// A pusher is publishing (the leader of a group commit).
    pub(super) committing: bool,
    /// The leader is waiting for more pushers to join its group.
    pub(super) gathering: bool,
    /// Results of finished pushes, by ticket: the operation's number, or
    /// the error its push failed with.
    pub(super) outcomes: HashMap<u64, Result<u64>>,
    /// Pushers seen at the end of the last commit: how many the next
    /// leader waits for.
    pub(super) concurrency: usize,
    /// How long the last commit took.
    pub(super) last_cycle: Duration,
    /// Operations written to the ring whose publishing failed (their
    /// pushers got an error); the next successful advance publishes them.
    pub(super) orphans: Vec<Vec<u8>>,
    /// The bytes of the published operations not yet taken by the worker,
    /// in ring order: exactly what the producer wrote, handed over in
    /// memory so that the worker need not read it back from the device
    /// (the ring is read at start only).
    pub(super) ready: VecDeque<Vec<u8>>,

    /// Operations published.
    pub(super) committed: u64,
    /// The producer position after operation `committed`.
    pub(super) published: u64,
    /// When the oldest published operation not yet taken was pushed.
    pub(super) pending_since: Option<Instant>,
    /// Operations taken into batches by the worker.
    pub(super) taken: u64,
    /// Operations performed.
    pub(super) performed: u64,
    /// The position after the last performed operation.
    pub(super) performed_pos: u64,
    /// Start the next batch now (a waiter asked).
    pub(super) urgent: bool,
    /// A leader is waiting for space: perform and release now.
    pub(super) space_wanted: bool,
    /// Consumer advances so far, so that a leader waiting for space can
    /// tell when some was released.
    pub(super) released: u64,

    pub(super) counters: Counters,
    pub(super) last_error: Option<String>,
    /// Async waiters (`Waiter::performed`): each is woken once its
    /// operation is performed or the worker stops.
    pub(super) wakers: Vec<(u64, Waker)>,
}

pub(super) struct Core {
    pub(super) state: Mutex<State>,
    /// Wakes the worker: new operations, a flush, a need for space, shutdown.
    pub(super) work: Condvar,
    /// Wakes pushers and waiters: a commit finished, operations were
    /// performed, space was released, shutdown.
    pub(super) progress: Condvar,
    /// Wakes a gathering leader when a pusher arrives.
    pub(super) arrived: Condvar,
    /// The producer, used by one leader at a time; `None` after shutdown,
    /// which releases the producer role at once even while waiters (which
    /// hold the `Core`) live on.
    pub(super) producer: Mutex<Option<Producer<Dev, Bytes>>>,
    pub(super) geometry: Geometry,
    /// How operations lie in the ring (for their sizes).
    pub(super) items: Items,
    /// Format 2: how often the owners' heartbeats are due to be looked at.
    pub(super) heartbeat_every: Option<Duration>,
    pub(super) name: String,
    pub(super) flush_interval: Duration,
    pub(super) retry_interval: Duration,
}

impl Core {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Waits on `cv` until notified or `deadline`.
    pub(super) fn wait_until<'a>(
        &'a self,
        cv: &Condvar,
        guard: MutexGuard<'a, State>,
        deadline: Instant,
    ) -> MutexGuard<'a, State> {
        cv.wait_until(&self.state, guard, deadline)
    }

    /// Queues `bytes` (an encoded operation of `stream_len` ring bytes)
    /// and returns once it is published (its number) or failed. The
    /// caller leads a group commit when no one else is.
    pub(super) fn push(&self, bytes: Vec<u8>, stream_len: u64) -> Result<u64> {
        let mut st = self.lock();
        if st.shutdown {
            return Err(Error::ShutDown);
        }
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.queue.push_back(Queued {
            ticket,
            bytes,
            stream_len,
            pushed_at: now(),
        });
        if st.gathering {
            self.arrived.notify_one();
        }
        loop {
            if let Some(outcome) = st.outcomes.remove(&ticket) {
                return outcome;
            }
            if !st.committing {
                st.committing = true;
                drop(st);
                self.lead(ticket);
                st = self.lock();
                continue;
            }
            st = self.progress.wait(st);
        }
    }

    /// Asks the worker to start a batch holding operation `seq` now,
    /// unless it is already taken.
    pub(super) fn hurry(&self, seq: u64) {
        let mut st = self.lock();
        if seq > st.taken && !st.shutdown {
            st.urgent = true;
            drop(st);
            self.work.notify_one();
        }
    }

    /// Waits until operation `seq` is performed (true), the deadline
    /// passes (false), or the worker stops first (`ShutDown`).
    pub(super) fn wait_performed(&self, seq: u64, deadline: Option<Instant>) -> Result<bool> {
        self.hurry(seq);
        let mut st = self.lock();
        loop {
            if st.performed >= seq {
                return Ok(true);
            }
            if st.worker_stopped {
                return Err(Error::ShutDown);
            }
            st = match deadline {
                None => self.progress.wait(st),
                Some(d) if now() >= d => return Ok(false),
                Some(d) => self.wait_until(&self.progress, st, d),
            };
        }
    }

    /// The async form of [`wait_performed`](Self::wait_performed), without
    /// the hurry: ready once operation `seq` is performed (or the worker
    /// stopped first); otherwise `waker` is woken when it is.
    #[cfg(feature = "tokio")]
    pub(super) fn poll_performed(&self, seq: u64, waker: &Waker) -> Poll<Result<()>> {
        let mut st = self.lock();
        if st.performed >= seq {
            return Poll::Ready(Ok(()));
        }
        if st.worker_stopped {
            return Poll::Ready(Err(Error::ShutDown));
        }
        st.wakers
            .retain(|(s, w)| !(*s == seq && w.will_wake(waker)));
        st.wakers.push((seq, waker.clone()));
        Poll::Pending
    }

    /// Wakes the async waiters whose operations are performed, or all of
    /// them once the worker has stopped. Wakes after unlocking.
    pub(super) fn wake_performed(&self, mut st: MutexGuard<'_, State>) {
        if st.wakers.is_empty() {
            return;
        }
        let performed = if st.worker_stopped {
            u64::MAX
        } else {
            st.performed
        };
        let (done, waiting) = std::mem::take(&mut st.wakers)
            .into_iter()
            .partition(|(seq, _)| *seq <= performed);
        st.wakers = waiting;
        drop(st);
        for (_, waker) in done {
            waker.wake();
        }
    }

    /// Publishes queued operations, as the leader, until `ticket` (the
    /// leader's own push) has an outcome; then lets another pusher lead.
    pub(super) fn lead(&self, ticket: u64) {
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
        let mut guard = self.producer.lock();
        let mut st = self.lock();
        let Some(producer) = guard.as_mut() else {
            fail_queue(&mut st, || Error::ShutDown);
            drop(st);
            self.progress.notify_all();
            return;
        };
        st = self.gather(st);
        // Releases so far, counted *before* we look at the consumer sector:
        // one that lands while we look (the lock is not held) may or may
        // not be in what we read, so waiting for space must then not wait
        // for yet another release (which may never come).
        let released = st.released;
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
                self.wait_for_space(st, released, producer);
            }
            return;
        }
        drop(st);

        let started = now();
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
                    let oldest = batch.first().map_or_else(now, |q| q.pushed_at);
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
    fn gather<'a>(&'a self, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        if st.queue.len() >= st.concurrency {
            return st;
        }
        let deadline = now() + (st.last_cycle / 4).min(MAX_GATHER);
        st.gathering = true;
        while st.queue.len() < st.concurrency && !st.shutdown && now() < deadline {
            st = self.wait_until(&self.arrived, st, deadline);
        }
        st.gathering = false;
        st
    }

    /// Asks the worker for space and waits until it has released some
    /// since `released` releases (sampled before the caller last looked at
    /// the consumer sector), or the journal shuts down (which fails the
    /// queue). The caller then looks again.
    ///
    /// Format 2: writes the producer's heartbeat while it waits (it holds
    /// the producer, so the worker cannot).
    fn wait_for_space<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        released: u64,
        producer: &mut Producer<Dev, Bytes>,
    ) {
        st.space_wanted = true;
        self.work.notify_one();
        tracing::debug!(journal = %self.name, "the ring is full: waiting for the worker");
        while st.released == released && !st.shutdown && !st.worker_stopped {
            st = match self.heartbeat_every {
                None => self.progress.wait(st),
                Some(every) => {
                    let st = self.wait_until(&self.progress, st, now() + every);
                    drop(st);
                    if let Err(e) = producer.heartbeat() {
                        tracing::warn!(journal = %self.name, error = %e, "producer heartbeat failed");
                        let mut st = self.lock();
                        st.last_error = Some(format!("producer heartbeat: {e}"));
                        if matches!(e, Error::Displaced { .. }) {
                            fail_queue(&mut st, || e.duplicate());
                            st.space_wanted = false;
                            drop(st);
                            self.progress.notify_all();
                            return;
                        }
                        st
                    } else {
                        self.lock()
                    }
                }
            };
        }
        st.space_wanted = false;
        if st.worker_stopped && !st.shutdown {
            // The worker died (a bug): nothing will ever be released.
            fail_queue(&mut st, || Error::ShutDown);
            drop(st);
            self.progress.notify_all();
        }
    }
}

/// Fails every queued push with `error()`.
pub(super) fn fail_queue(st: &mut State, error: impl Fn() -> Error) {
    while let Some(q) = st.queue.pop_front() {
        st.outcomes.insert(q.ticket, Err(error()));
    }
}
