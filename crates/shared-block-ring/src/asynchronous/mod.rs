//! An async API for tokio programs (feature `tokio`): [`AsyncProducer`],
//! [`AsyncConsumer`] with a [`Stream`](futures_core::Stream) of items
//! ([`ItemStream`]), and [`AsyncJournal`] with [`Waiter::performed`].
//!
//! They wrap the blocking [`Producer`](crate::Producer),
//! [`Consumer`](crate::Consumer) and [`Journal`](crate::Journal): the ring,
//! its format and its guarantees are exactly theirs.
//!
//! # Example
//!
//! ```
//! use futures_util::StreamExt;
//! use shared_block_ring::{create, AsyncConsumer, AsyncProducer, MemDevice, Options};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), shared_block_ring::Error> {
//! let disk = MemDevice::new(512, 64); // a FileDevice works the same way
//! create(&disk)?;
//! let producer = AsyncProducer::attach(disk.clone(), Options::new()).await?;
//! let consumer = AsyncConsumer::attach(disk, Options::new()).await?;
//!
//! let end = producer.push(b"hello").await?; // waits while the ring is full
//! producer.advance(end).await?; // publishes
//!
//! let mut items = consumer.stream(); // waits for items, never releases
//! let (next, item) = items.next().await.unwrap()?;
//! assert_eq!(item, b"hello");
//! consumer.advance(next).await?; // releases what was processed
//! # Ok(())
//! # }
//! ```
//!
//! # How it runs: the blocking pool
//!
//! Device I/O is blocking (`pread`/`pwrite` with O_DIRECT, `fsync`, NBD
//! requests), so it never runs on a thread that the runtime needs for
//! other tasks. The blocking handle lives in a slot, an
//! `Arc<tokio::sync::Mutex<Option<_>>>`: an operation locks the slot
//! asynchronously, then runs on the handle:
//!
//! * On a current-thread runtime, and for every wait: on tokio's blocking
//!   pool ([`tokio::task::spawn_blocking`]), with the lock guard moved into
//!   the blocking task, which drops it when it ends. A task whose future
//!   was dropped still gives the handle back when it ends; the next call
//!   waits for that, asynchronously.
//! * On a multi-thread runtime, the first attempt of each operation runs
//!   in place under [`tokio::task::block_in_place`], which first hands the
//!   worker's other tasks to another thread (so no task waits for this
//!   I/O), and the operation goes to the blocking pool as above only if it
//!   has to wait for the other side. Why: a trip to the blocking pool and
//!   back costs two thread wake-ups per call, 10-30 µs each on a busy
//!   2-core machine, which made push+advance and pop+advance 20-50 %
//!   slower than the blocking calls; in place they are within a few
//!   percent (`benches/async_ring.rs`). The price: other futures *of the
//!   same task* (in a `join!` or `select!` with the call) do not run during
//!   that one attempt, as with any `block_in_place`.
//!
//! So at most one operation uses a handle at a time, and calls on one
//! handle run in the order they were made. Methods take `&self`, so a
//! handle can be shared (in an `Arc`) between tasks.
//!
//! An operation that waits for the other side does not keep the handle
//! from the others: after each step of its wait it gives way to any
//! operation queued behind it, and queues again. So an `advance` (or a
//! `detach`) made while a `pop` or a stream waits for an item, or while a
//! `push` waits for space, runs within one backoff step.
//!
//! Batching (`push_many`, the stream's reads of every published item at
//! once) amortises the cost of a call further.
//!
//! # How it waits: change notifications and backoff, never spinning
//!
//! A push into a full ring, a pop from an empty one, and the suspend
//! handshake wait for the other side, which may be another process or
//! another host: a block device cannot signal, so waiting means looking
//! again. The async handles wait exactly as the blocking `push_wait` and
//! `pop_wait` do, in one task on the blocking pool that looks and sleeps in
//! turn: the adaptive
//! [`Backoff`] (sleeps doubling up to
//! [`Options::max_backoff`](crate::Options::max_backoff), 4 ms by default),
//! each sleep being a [`BlockDevice::wait_for_change`](crate::BlockDevice::wait_for_change),
//! which on a [`FileDevice`](crate::FileDevice) returns as soon as any
//! process on this host writes the file (inotify), and on other devices
//! sleeps. Between two sleeps the task checks whether its future was
//! dropped, and if so ends. A waiting operation therefore holds one thread
//! of the blocking pool (512 by default), asleep, and no worker thread;
//! the other side is seen as soon as the blocking API would see it.
//!
//! The alternative, sleeping on tokio's timer between attempts made on the
//! blocking pool, would give up the inotify wake-up, round every pause up
//! to the timer's millisecond, and pay a hand-over per look.
//!
//! [`Waiter::performed`] waits without any thread: the journal's worker
//! wakes the future when it has performed the operation.
//!
//! # Cancellation
//!
//! Every future here may be dropped at any await point (by
//! `tokio::time::timeout`, `select!`, or aborting its task). A call that
//! runs in place (a first attempt on a multi-thread runtime) is done whole
//! before its future can be dropped; one on the blocking pool goes on
//! without its future. What a dropped future leaves behind:
//!
//! | future dropped | before its blocking call started | while it runs (on the blocking pool) |
//! | --- | --- | --- |
//! | [`AsyncProducer::push`], `push_many` | nothing pushed | while waiting for space: nothing pushed, and the task ends within one backoff step (4 ms by default); if the write had begun: the items are pushed whole but not published (the next `advance` past them publishes them: compare [`tail`](AsyncProducer::tail) before and after) |
//! | [`AsyncProducer::advance`] | nothing published | the advance completes or fails as a whole: everything up to the position is published, or nothing |
//! | [`AsyncConsumer::pop`], `pop_from` | nothing | nothing: popping never releases; the item is returned again by the next pop |
//! | [`ItemStream`]'s `next()` | nothing | nothing: the fetch goes on inside the stream, and the next `next()` yields its items |
//! | the [`ItemStream`] itself | nothing | nothing released; the items it fetched and had not yielded are dropped with it, and a new stream (or a pop) returns them |
//! | [`AsyncConsumer::advance`] | nothing released | releases up to the given position (one the caller got from a pop), or nothing |
//! | `suspend`, `resume` | nothing asked | the request may have been written; the next call of the same waits for its acknowledgement |
//! | [`AsyncJournal::push`] | nothing pushed | the operation may or may not be stored, and if stored it is performed, as after a crash during a blocking push |
//! | [`Performed`] | nothing | nothing: the operation is performed all the same |
//!
//! A dropped future never leaves a half-written item visible, and never
//! releases an item that was not returned: both are single writes of the
//! blocking API, which either happen whole or not at all.
//!
//! # Shutdown
//!
//! [`AsyncProducer::detach`] and [`AsyncConsumer::detach`] wait for any
//! operation still running and then drop the handle, releasing the role:
//! a new `attach` succeeds once they return. Dropping an async handle
//! without `detach` releases the role when its last blocking task ends.
//! When the runtime shuts down, its tasks' futures are dropped, so the
//! blocking tasks end within one backoff step and do not hold up the
//! shutdown. [`AsyncJournal::shutdown`] runs [`Journal::shutdown`] on the
//! blocking pool.
//!
//! [`Journal::shutdown`]: crate::Journal::shutdown
//! [`Waiter::performed`]: crate::Waiter::performed

mod consumer;
mod journal;
mod producer;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::backoff::Backoff;
use crate::error::{Error, Result};

pub use consumer::{AsyncConsumer, ItemStream};
pub use journal::{AsyncJournal, Performed};
pub use producer::AsyncProducer;

/// Where a blocking handle lives between operations (`None` once it was
/// detached), and how many callers wait for it; see the module docs.
struct Slot<T> {
    handle: Arc<Mutex<Option<T>>>,
    queued: Arc<AtomicUsize>,
}

impl<T> Clone for Slot<T> {
    fn clone(&self) -> Self {
        Slot {
            handle: self.handle.clone(),
            queued: self.queued.clone(),
        }
    }
}

/// Counts a caller waiting for the slot, until it has it or gives up.
struct Queued(Arc<AtomicUsize>);

impl Drop for Queued {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<T> Slot<T> {
    fn new(handle: T) -> Slot<T> {
        Slot {
            handle: Arc::new(Mutex::new(Some(handle))),
            queued: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Waits (asynchronously, in call order) for every earlier operation to
    /// end; an operation waiting for the other side gives way.
    async fn lock(&self) -> OwnedMutexGuard<Option<T>> {
        self.queued.fetch_add(1, Ordering::AcqRel);
        let _queued = Queued(self.queued.clone());
        self.handle.clone().lock_owned().await
    }
}

/// What a blocking task checks between two steps of a wait: whether its
/// future was dropped, and whether another operation waits for the handle.
struct Turn {
    cancelled: Arc<AtomicBool>,
    queued: Arc<AtomicUsize>,
    wait: Arc<WaitState>,
    /// Running in place (`block_in_place`): one attempt, no waiting.
    inline: bool,
}

/// Carried from one turn of a waiting operation to the next.
#[derive(Default)]
struct WaitState {
    /// The backoff so far: a wait that gave way goes on where it was
    /// (two waiting operations taking turns never restart the fast polls).
    backoff: std::sync::Mutex<Option<Backoff>>,
    /// The last turn gave way to another operation: queue up again.
    gave_way: AtomicBool,
}

impl Turn {
    fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }
}

/// Held by the future; sets the flag when the future is dropped.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Runs `op` on the handle in `slot` once every earlier operation on it
/// has ended: in place (`block_in_place`) for a first attempt on a
/// multi-thread runtime, on the blocking pool otherwise (see the module
/// docs). An `op` that waits for the other side (through [`retry`]) goes
/// to the blocking pool when in place, and there may give way to an
/// operation queued after it; either way it is then queued again. `None`
/// when the handle was detached.
///
/// Panics in `op` are resumed here, as if the blocking call had been made
/// in place.
async fn run<T, R, F>(slot: &Slot<T>, op: F) -> Option<Result<R>>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(&mut T, &Turn) -> Result<R> + Send + Sync + 'static,
{
    let op = Arc::new(op);
    let cancelled = Arc::new(AtomicBool::new(false));
    let _cancel = CancelOnDrop(cancelled.clone());
    let wait = Arc::new(WaitState::default());
    // `block_in_place` exists on the multi-thread runtime only.
    let mut inline = tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::MultiThread;
    loop {
        let mut guard = slot.lock().await;
        let turn = Turn {
            cancelled: cancelled.clone(),
            queued: slot.queued.clone(),
            wait: wait.clone(),
            inline,
        };
        if inline {
            inline = false;
            let result = tokio::task::block_in_place(|| {
                let handle = guard.as_mut()?;
                Some(op(handle, &turn))
            });
            drop(guard);
            if !wait.gave_way.swap(false, Ordering::AcqRel) {
                return result;
            }
            continue;
        }
        let op = op.clone();
        let task = tokio::task::spawn_blocking(move || {
            // Dropped before the task started: do nothing at all.
            if turn.cancelled() {
                return Some(Err(Error::ShutDown));
            }
            let handle = guard.as_mut()?;
            Some(op(handle, &turn))
        });
        let result = match task.await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // The runtime is shutting down and never ran the task.
            Err(_) => Some(Err(Error::ShutDown)),
        };
        if !wait.gave_way.swap(false, Ordering::AcqRel) {
            return result;
        }
    }
}

/// [`run`] on a handle that cannot have been detached: `detach` consumes
/// the async handle that owns the slot, so its methods never see an empty
/// one. (Shared with [`ItemStream`], which can: it ends instead.)
async fn run_attached<T, R, F>(slot: &Slot<T>, op: F) -> Result<R>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(&mut T, &Turn) -> Result<R> + Send + Sync + 'static,
{
    run(slot, op).await.unwrap_or(Err(Error::ShutDown))
}

/// Runs `f` on the blocking pool (an attach, a journal's start or push),
/// unless the future is dropped before the task starts; resumes its panic
/// here.
async fn blocking<R, F>(f: F) -> Result<R>
where
    R: Send + 'static,
    F: FnOnce() -> Result<R> + Send + 'static,
{
    let cancelled = Arc::new(AtomicBool::new(false));
    let _cancel = CancelOnDrop(cancelled.clone());
    let task = tokio::task::spawn_blocking(move || {
        if cancelled.load(Ordering::Acquire) {
            return Err(Error::ShutDown);
        }
        f()
    });
    match task.await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(Error::ShutDown),
    }
}

/// How a handle waits for the other side: its backoff, and one step of it
/// (a sleep that a change notification ends early).
trait Waits {
    fn new_backoff(&self) -> Backoff;
    fn pause(&self, backoff: &mut Backoff);
}

// Capped at `max_backoff` even where the device notifies changes: an
// operation queued behind a wait runs only after the wait's current sleep.
impl<D: crate::BlockDevice, C: crate::Codec> Waits for crate::Producer<D, C> {
    fn new_backoff(&self) -> Backoff {
        self.backoff(None).capped(self.options().max_backoff)
    }
    fn pause(&self, backoff: &mut Backoff) {
        crate::Producer::pause(self, backoff);
    }
}

impl<D: crate::BlockDevice, C: crate::Codec> Waits for crate::Consumer<D, C> {
    fn new_backoff(&self) -> Backoff {
        self.backoff().capped(self.options().max_backoff)
    }
    fn pause(&self, backoff: &mut Backoff) {
        crate::Consumer::pause(self, backoff);
    }
}

/// Waits for the other side as the blocking `push_wait`/`pop_wait` do:
/// calls `attempt` until it returns something else than an error for
/// which `wait` is true, with one step of the backoff in between. After
/// each step, gives up (with the last such error) if the future was
/// dropped, or gives way if another operation waits for the handle (the
/// caller then queues again, and the wait goes on where it was).
fn retry<T: Waits, R>(
    handle: &mut T,
    turn: &Turn,
    mut attempt: impl FnMut(&mut T) -> Result<R>,
    wait: impl Fn(&Error) -> bool,
) -> Result<R> {
    let saved = turn.wait.backoff.lock().map(|mut b| b.take());
    let mut backoff = saved.ok().flatten().unwrap_or_else(|| handle.new_backoff());
    loop {
        match attempt(handle) {
            Err(e) if wait(&e) => {
                // In place, never wait: go on on the blocking pool.
                if turn.inline {
                    turn.wait.gave_way.store(true, Ordering::Release);
                    return Err(e);
                }
                if turn.cancelled() {
                    return Err(e);
                }
                handle.pause(&mut backoff);
                // Not one more attempt (a push!) once the future is gone.
                if turn.cancelled() {
                    return Err(e);
                }
                if turn.queued.load(Ordering::Acquire) > 0 {
                    if let Ok(mut saved) = turn.wait.backoff.lock() {
                        *saved = Some(backoff);
                    }
                    turn.wait.gave_way.store(true, Ordering::Release);
                    return Err(e);
                }
            }
            other => return other,
        }
    }
}

/// Detaches the handle in `slot` once every operation on it has ended,
/// dropping it on the blocking pool (a drop may write: a producer's last
/// pipelined pointer).
async fn detach<T: Send + 'static>(slot: &Slot<T>) {
    let handle = slot.lock().await.take();
    if let Some(handle) = handle {
        // A panic in a drop is the blocking API's; nothing to add here.
        let _ = tokio::task::spawn_blocking(move || drop(handle)).await;
    }
}

/// Takes the blocking handle back, once every operation on it has ended.
async fn into_blocking<T>(slot: &Slot<T>) -> Option<T> {
    slot.lock().await.take()
}

/// Reads from the handle, once every operation on it has ended: for
/// fields kept in memory (no I/O, so not on the blocking pool). `None`
/// once detached.
async fn read<T, R>(slot: &Slot<T>, f: impl FnOnce(&T) -> R) -> Option<R> {
    slot.lock().await.as_ref().map(f)
}
