//! The journal's worker thread: the consumer side. It takes published
//! operations in batches, performs them (retrying a failed batch until it
//! succeeds), and records its progress on the device (a consumer advance)
//! when idle, periodically while busy, and at once when a pusher waits
//! for space.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::codec::{Bytes, Codec};
use crate::consumer::Consumer;
use crate::error::Result;
use crate::position::Position;
use crate::sync::now;

use super::core::Core;
use super::{Dev, Perform};

/// Record progress on the device this long after the worker falls idle.
/// Waiting a little lets a busy journal skip the consumer's cache flush
/// between two batches, leaving the device to the producer.
const RELEASE_WHEN_IDLE: Duration = Duration::from_millis(10);
/// Record progress at least this often while busy, which bounds what a
/// crash makes the next start perform again.
const RELEASE_AT_LEAST_EVERY: Duration = Duration::from_millis(100);

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
    /// Format 2: write the owners' heartbeats if due.
    Heartbeat,
}

/// The consumer side, run by the worker thread (and by `start`).
pub(super) struct Worker<C: Codec> {
    pub(super) core: Arc<Core>,
    pub(super) codec: Arc<C>,
    pub(super) consumer: Consumer<Dev, Bytes>,
    pub(super) perform: Perform<C::Owned>,
    /// Position after the last performed operation; the consumer position
    /// on the device trails it until the next release.
    pub(super) performed_pos: u64,
    /// When the last batch finished.
    pub(super) idle_since: Instant,
    /// When operations were first performed without being released.
    pub(super) unreleased_since: Option<Instant>,
    /// After a failed release, when to try again.
    pub(super) release_blocked_until: Option<Instant>,
    /// Format 2: when to look at the owners' heartbeats next.
    pub(super) next_heartbeat: Option<Instant>,
    /// Format 2: another consumer took the side over: stop.
    pub(super) displaced: bool,
}

/// Marks the worker stopped however its thread ends, so that no waiter
/// waits forever.
struct Stopped(Arc<Core>);

impl Drop for Stopped {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.worker_stopped = true;
        self.0.wake_performed(st);
        self.0.progress.notify_all();
    }
}

impl<C: Codec> Worker<C> {
    /// Performs everything in the ring up to `end`, during `start`.
    /// Failures of `perform` are retried; failures to read the ring end
    /// the start.
    pub(super) fn replay(&mut self, end: u64) -> Result<()> {
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

    pub(super) fn run(mut self) {
        let _stopped = Stopped(self.core.clone());
        while let Some(job) = self.next_job() {
            match job {
                Job::Batch { end_seq, end, ops } => self.batch(end_seq, end, &ops),
                Job::Release => self.release(),
                Job::Heartbeat => self.heartbeat(),
            }
            if self.displaced {
                tracing::error!(journal = %self.core.name, "another consumer took the ring over: the worker stops");
                return;
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
            let now = crate::sync::now();
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
            if let Some(at) = self.next_heartbeat {
                if at <= now {
                    return Some(Job::Heartbeat);
                }
                wake = Some(wake.map_or(at, |w| w.min(at)));
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
                None => core.work.wait(st),
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
        let now = crate::sync::now();
        self.performed_pos = end;
        self.idle_since = now;
        self.unreleased_since.get_or_insert(now);
        let mut st = self.core.lock();
        debug_assert_eq!(ops.len() as u64, end_seq - st.performed);
        st.performed = end_seq;
        st.performed_pos = end;
        st.counters.performed += ops.len() as u64;
        st.counters.batches += 1;
        self.core.wake_performed(st);
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
        let deadline = now() + self.core.retry_interval;
        let mut st = self.core.lock();
        loop {
            if st.shutdown {
                return false;
            }
            if now() >= deadline {
                return true;
            }
            st = self.core.wait_until(&self.core.work, st, deadline);
        }
    }

    /// Format 2: writes the consumer's heartbeat, and the producer's when
    /// no pusher is publishing (a publication writes one anyway, and a
    /// pusher waiting for space writes its own).
    fn heartbeat(&mut self) {
        if let (Some(at), Some(every)) = (self.next_heartbeat, self.core.heartbeat_every) {
            self.next_heartbeat = Some(at.max(now()) + every);
        }
        let consumer = self.consumer.heartbeat();
        let idle = !self.core.lock().committing;
        let producer = match self.core.producer.lock().as_mut() {
            Some(p) if idle => p.heartbeat(),
            _ => Ok(()),
        };
        for (whose, r) in [("consumer", consumer), ("producer", producer)] {
            if let Err(e) = r {
                tracing::warn!(journal = %self.core.name, error = %e, "{whose} heartbeat failed");
                self.core.lock().last_error = Some(format!("{whose} heartbeat: {e}"));
                if whose == "consumer" && matches!(e, crate::Error::Displaced { .. }) {
                    self.displaced = true;
                }
            }
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
                if matches!(e, crate::Error::Displaced { .. }) {
                    self.displaced = true;
                }
                tracing::warn!(journal = %self.core.name, error = %e, "recording the journal's progress failed");
                self.release_blocked_until = Some(now() + self.core.retry_interval);
                self.core.lock().last_error = Some(format!("recording progress: {e}"));
            }
        }
    }
}
