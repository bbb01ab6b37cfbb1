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
//! requests), so every operation that touches the device runs on tokio's
//! blocking pool ([`tokio::task::spawn_blocking`]), never on a runtime
//! worker thread. The blocking handle lives in a slot, an
//! `Arc<tokio::sync::Mutex<Option<_>>>`: an operation locks the slot
//! asynchronously and moves the lock guard into its blocking task, which
//! drops it when it ends. So at most one operation uses the handle at a
//! time (calls on one handle run in the order they were made), and a task
//! whose future was dropped still gives the handle back when it ends; the
//! next call waits for that, asynchronously. Methods take `&self`, so a
//! handle can be shared (in an `Arc`) between tasks.
//!
//! Each call costs one hand-over to a blocking thread and back (a few
//! microseconds): nothing next to a cache flush, noticeable next to a
//! write that only reaches the page cache. Batching (`push_many`, the
//! stream's reads) amortises it; `benches/async_ring.rs` measures it.
//!
//! # How it waits: change notifications and backoff, never spinning
//!
//! A push into a full ring, a pop from an empty one, and the suspend
//! handshake wait for the other side, which may be another process or
//! another host: a block device cannot signal, so waiting means looking
//! again. The async handles wait exactly as the blocking `push_wait` and
//! `pop_wait` do, in the same blocking task as the operation: the adaptive
//! [`Backoff`](crate::Backoff) (sleeps doubling up to
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
//! `tokio::time::timeout`, `select!`, or aborting its task). What that
//! leaves behind:
//!
//! | future dropped | before its blocking task started | while it runs |
//! | --- | --- | --- |
//! | [`AsyncProducer::push`], `push_many` | nothing pushed | while waiting for space: nothing pushed, and the task ends within one backoff step (4 ms by default); if the write had begun: the items are pushed whole but not published (the next `advance` past them publishes them: compare [`tail`](AsyncProducer::tail) before and after) |
//! | [`AsyncProducer::advance`] | nothing published | the advance completes or fails as a whole: everything up to the position is published, or nothing |
//! | [`AsyncConsumer::pop`], `pop_from`, [`ItemStream`] | nothing | nothing: popping never releases; the item is returned again by the next pop (the stream's cursor does not move past an item it did not yield) |
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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::backoff::Backoff;
use crate::error::{Error, Result};

pub use consumer::{AsyncConsumer, ItemStream};
pub use journal::{AsyncJournal, Performed};
pub use producer::AsyncProducer;

/// Where a blocking handle lives between operations; see the module docs.
/// `None` once it was detached.
type Slot<T> = Arc<tokio::sync::Mutex<Option<T>>>;

fn slot<T>(handle: T) -> Slot<T> {
    Arc::new(tokio::sync::Mutex::new(Some(handle)))
}

/// Set when the future that started a blocking task is dropped (or has
/// finished): the task stops waiting at its next check.
struct Cancelled(Arc<AtomicBool>);

impl Cancelled {
    fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Held by the future; sets the flag when the future is dropped.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Runs `op` on the handle in `slot`, on the blocking pool, once every
/// earlier operation on it has ended. `None` when the handle was detached.
///
/// Panics in `op` are resumed here, as if the blocking call had been made
/// in place.
async fn run<T, R, F>(slot: &Slot<T>, op: F) -> Option<Result<R>>
where
    T: Send + 'static,
    R: Send + 'static,
    F: FnOnce(&mut T, &Cancelled) -> Result<R> + Send + 'static,
{
    let flag = Arc::new(AtomicBool::new(false));
    let _cancel = CancelOnDrop(flag.clone());
    let mut guard = slot.clone().lock_owned().await;
    let cancelled = Cancelled(flag);
    let task = tokio::task::spawn_blocking(move || {
        // Dropped before the task started: do nothing at all.
        if cancelled.is_set() {
            return Some(Err(Error::ShutDown));
        }
        let handle = guard.as_mut()?;
        Some(op(handle, &cancelled))
    });
    match task.await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // The runtime is shutting down and never ran the task.
        Err(_) => Some(Err(Error::ShutDown)),
    }
}

/// Runs `f` on the blocking pool (an attach, a journal's start or
/// shutdown), resuming its panic here.
async fn blocking<R, F>(f: F) -> Result<R>
where
    R: Send + 'static,
    F: FnOnce() -> Result<R> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(Error::ShutDown),
    }
}

/// [`run`] on a handle that cannot have been detached: `detach` consumes
/// the async handle that owns the slot, so its methods never see an empty
/// one. (Shared with [`ItemStream`], which can: it ends instead.)
async fn run_attached<T, R, F>(slot: &Slot<T>, op: F) -> Result<R>
where
    T: Send + 'static,
    R: Send + 'static,
    F: FnOnce(&mut T, &Cancelled) -> Result<R> + Send + 'static,
{
    run(slot, op).await.unwrap_or(Err(Error::ShutDown))
}

/// Waits for the other side as the blocking `push_wait`/`pop_wait` do:
/// calls `attempt` until it returns something else than an error for
/// which `wait` is true, pausing with `pause` (one step of `backoff`,
/// woken early by a change notification) in between, and giving up with
/// the last such error once the future is dropped.
fn retry<T, R>(
    handle: &mut T,
    cancelled: &Cancelled,
    mut backoff: Backoff,
    pause: fn(&T, &mut Backoff) -> bool,
    mut attempt: impl FnMut(&mut T) -> Result<R>,
    wait: impl Fn(&Error) -> bool,
) -> Result<R> {
    loop {
        match attempt(handle) {
            Err(e) if wait(&e) => {
                if cancelled.is_set() {
                    return Err(e);
                }
                pause(handle, &mut backoff);
                // Not one more attempt (a push!) once the future is gone.
                if cancelled.is_set() {
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
