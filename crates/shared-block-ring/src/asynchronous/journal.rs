//! The journal from async code.

use std::borrow::Borrow;
use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::codec::{Bytes, Codec};
use crate::device::BlockDevice;
use crate::error::Result;
use crate::journal::{Journal, JournalOptions, Waiter};

/// A [`Journal`] for async code: [`push`](Self::push) is a future that
/// resolves once the operation is on the device, and the [`Waiter`] it
/// returns has [`performed`](Waiter::performed), a future that resolves
/// once the operation was performed.
///
/// Pushes run on tokio's blocking pool (a push writes, and may lead a group
/// commit or wait for space); waiting for an operation to be performed
/// takes no thread at all. Cancellation: see the [module docs](super).
///
/// ```
/// use shared_block_ring::{AsyncJournal, JournalOptions, MemDevice};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), shared_block_ring::Error> {
/// let disk = MemDevice::new(512, 64); // blank: the journal creates a ring
/// let journal = AsyncJournal::start(disk, JournalOptions::new(), |ops: &[Vec<u8>]| {
///     // Idempotent work goes here; it runs on the journal's worker thread.
///     Ok::<(), std::io::Error>(())
/// })
/// .await?;
/// let waiter = journal.push(b"first").await?; // on the device
/// waiter.performed().await?; // performed
/// journal.shutdown().await;
/// # Ok(())
/// # }
/// ```
pub struct AsyncJournal<C: Codec + 'static = Bytes> {
    journal: Arc<Journal<C>>,
}

impl AsyncJournal<Bytes> {
    /// Starts a journal of byte-string operations, on the blocking pool;
    /// see [`Journal::start`].
    ///
    /// # Errors
    /// As [`Journal::start`].
    pub async fn start<D, F, E>(device: D, options: JournalOptions, perform: F) -> Result<Self>
    where
        D: BlockDevice + 'static,
        F: FnMut(&[Vec<u8>]) -> std::result::Result<(), E> + Send + 'static,
        E: Display + 'static,
    {
        Self::start_with_codec(device, Bytes, options, perform).await
    }
}

impl<C: Codec + 'static> AsyncJournal<C> {
    /// Starts a journal whose operations `codec` encodes, on the blocking
    /// pool (the start performs what a previous run left in the ring); see
    /// [`Journal::start_with_codec`].
    ///
    /// # Errors
    /// As [`Journal::start_with_codec`]; [`Error::ShutDown`](crate::Error::ShutDown)
    /// when the runtime is shutting down.
    pub async fn start_with_codec<D, F, E>(
        device: D,
        codec: C,
        options: JournalOptions,
        perform: F,
    ) -> Result<Self>
    where
        D: BlockDevice + 'static,
        F: FnMut(&[C::Owned]) -> std::result::Result<(), E> + Send + 'static,
        E: Display + 'static,
    {
        let journal =
            super::blocking(move || Journal::start_with_codec(device, codec, options, perform))
                .await?;
        Ok(Self::new(journal))
    }

    /// Wraps a started journal.
    pub fn new(journal: Journal<C>) -> Self {
        AsyncJournal {
            journal: Arc::new(journal),
        }
    }

    /// The blocking journal, for [`stats`](Journal::stats) and the like
    /// (its `push` blocks: not on a runtime thread).
    pub fn journal(&self) -> &Journal<C> {
        &self.journal
    }

    /// Writes `op` to the ring, waiting while the ring is full, and
    /// resolves once it is published (durably, in the power-loss mode);
    /// see [`Journal::push`]. The operation is copied (`to_owned`) for the
    /// blocking pool.
    ///
    /// # Errors
    /// As [`Journal::push`].
    pub async fn push(&self, op: &C::Item) -> Result<Waiter>
    where
        C::Item: ToOwned,
        <C::Item as ToOwned>::Owned: Send + 'static,
    {
        let op = op.to_owned();
        let journal = self.journal.clone();
        super::blocking(move || journal.push(op.borrow())).await
    }

    /// Stops the journal, on the blocking pool; see [`Journal::shutdown`].
    /// Waiters of operations not performed resolve with
    /// [`Error::ShutDown`](crate::Error::ShutDown).
    pub async fn shutdown(&self) {
        let journal = self.journal.clone();
        // A panic of the worker is logged by `shutdown` itself.
        let _ = tokio::task::spawn_blocking(move || journal.shutdown()).await;
    }
}

impl<C: Codec + 'static> Drop for AsyncJournal<C> {
    /// Dropping the journal shuts it down, which waits for the batch being
    /// performed: on the blocking pool when there is a runtime. Call
    /// [`shutdown`](AsyncJournal::shutdown) to know when it is done.
    fn drop(&mut self) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            // The task holds a reference until the shutdown is done, so the
            // one dropped here is not the last, or finds it done already:
            // either way `Journal::drop` has nothing left to wait for.
            let journal = self.journal.clone();
            runtime.spawn_blocking(move || journal.shutdown());
        }
    }
}

impl<C: Codec + 'static> std::fmt::Debug for AsyncJournal<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncJournal")
            .field("journal", &self.journal)
            .finish()
    }
}

impl Waiter {
    /// A future that resolves once the operation has been performed: the
    /// async [`sync`](Waiter::sync). Like `sync`, it starts the operation's
    /// batch at once ([`flush`](Waiter::flush)) when first polled. It takes
    /// no thread: the journal's worker wakes it. Dropping it changes
    /// nothing (the operation is performed all the same).
    ///
    /// Resolves with [`Error::ShutDown`](crate::Error::ShutDown) when the
    /// journal stopped before performing it (it stays in the ring for the
    /// next start). Needs no particular runtime.
    pub fn performed(&self) -> Performed {
        Performed {
            waiter: self.clone(),
            flushed: false,
        }
    }
}

/// The future of [`Waiter::performed`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Performed {
    waiter: Waiter,
    flushed: bool,
}

impl Future for Performed {
    type Output = Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if !self.flushed {
            self.flushed = true;
            self.waiter.flush();
        }
        self.waiter.poll_performed(cx)
    }
}
