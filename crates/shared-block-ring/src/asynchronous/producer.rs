//! The async producer.

use crate::codec::{Bytes, Codec};
use crate::device::BlockDevice;
use crate::error::{Error, Result, RetryReason};
use crate::format::Geometry;
use crate::position::Position;
use crate::producer::Producer;
use crate::ring::{Options, RingState};

use super::{run_attached, Slot};

/// The writing side of a ring, for async code: a [`Producer`] whose
/// operations run on tokio's blocking pool, and whose waits (for space,
/// for a resume) are futures. See the [module docs](super) for how it
/// runs, waits and is cancelled.
///
/// Items are encoded with the codec `C` on the calling task, and the bytes
/// are pushed by a `Producer<D, Bytes>` (so the item itself need not be
/// sent to another thread).
pub struct AsyncProducer<D: BlockDevice + 'static, C: Codec = Bytes> {
    slot: Slot<Producer<D, Bytes>>,
    codec: C,
    geometry: Geometry,
}

impl<D: BlockDevice + 'static> AsyncProducer<D, Bytes> {
    /// Attaches a producer of byte strings, on the blocking pool; see
    /// [`Producer::attach`].
    ///
    /// # Errors
    /// As [`Producer::attach`].
    pub async fn attach(device: D, options: Options) -> Result<Self> {
        Self::attach_with_codec(device, Bytes, options).await
    }

    /// Wraps an attached blocking producer.
    pub fn new(producer: Producer<D, Bytes>) -> Self {
        Self::with_codec(producer, Bytes)
    }
}

impl<D: BlockDevice + 'static, C: Codec> AsyncProducer<D, C> {
    /// Attaches a producer whose items `codec` encodes; see
    /// [`Producer::attach`].
    ///
    /// # Errors
    /// As [`Producer::attach`]; [`Error::ShutDown`] when the runtime is
    /// shutting down.
    pub async fn attach_with_codec(device: D, codec: C, options: Options) -> Result<Self> {
        let producer = super::blocking(move || Producer::attach(device, options)).await?;
        Ok(Self::with_codec(producer, codec))
    }

    /// Wraps an attached blocking producer; items are encoded with `codec`.
    pub fn with_codec(producer: Producer<D, Bytes>, codec: C) -> Self {
        AsyncProducer {
            geometry: producer.geometry(),
            slot: Slot::new(producer),
            codec,
        }
    }

    /// Waits for every operation still running (one whose future was
    /// dropped), then detaches: the producer role is free when this
    /// returns. Pushed items that were never published are abandoned.
    pub async fn detach(self) {
        super::detach(&self.slot).await;
    }

    /// Waits for every operation still running, and returns the blocking
    /// producer.
    pub async fn into_blocking(self) -> Producer<D, Bytes> {
        match super::into_blocking(&self.slot).await {
            Some(producer) => producer,
            // Only `detach` and this empty the slot, and both consume self.
            None => unreachable!("an async producer is attached until it is consumed"),
        }
    }

    /// The ring's geometry.
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// The published end of the stream, once any operation still running
    /// has ended; see [`Producer::published`].
    pub async fn published(&self) -> Position {
        self.read(Producer::published).await
    }

    /// The end of the last pushed item, published or not, once any
    /// operation still running has ended; see [`Producer::tail`].
    pub async fn tail(&self) -> Position {
        self.read(Producer::tail).await
    }

    /// Free bytes as of the last look at the consumer sector; see
    /// [`Producer::free_bytes`].
    pub async fn free_bytes(&self) -> u64 {
        self.read(Producer::free_bytes).await
    }

    /// Reads a field of the handle: memory only, no I/O, so not on the
    /// blocking pool.
    async fn read<R>(&self, f: impl FnOnce(&Producer<D, Bytes>) -> R) -> R {
        match super::read(&self.slot, f).await {
            Some(value) => value,
            None => unreachable!("an async producer is attached until it is consumed"),
        }
    }

    /// Pushes `item` (without publishing it), waiting while the ring is
    /// full; returns the position to pass to [`advance`](Self::advance).
    /// See [`Producer::push_wait`].
    ///
    /// # Errors
    /// [`Error::Suspended`] when the consumer asked for a pause (see
    /// [`running`](Self::running)); [`Error::TooLarge`] when it can never
    /// fit; [`Error::Codec`]; a device error. Never [`Error::Retry`]: use
    /// `tokio::time::timeout` to bound the wait.
    pub async fn push(&self, item: &C::Item) -> Result<Position> {
        let mut scratch = Vec::new();
        let bytes = self.codec.encode(item, &mut scratch)?.to_vec();
        self.push_encoded(vec![bytes]).await
    }

    /// Pushes several items in one device write, all or nothing, waiting
    /// until they fit together; see [`Producer::push_many`]. Returns the
    /// position after the last.
    ///
    /// # Errors
    /// As [`push`](Self::push); [`Error::TooLarge`] also when the batch
    /// exceeds the ring's capacity.
    pub async fn push_many<'i, I>(&self, items: I) -> Result<Position>
    where
        I: IntoIterator<Item = &'i C::Item>,
        C::Item: 'i,
    {
        let mut scratch = Vec::new();
        let mut encoded = Vec::new();
        for item in items {
            encoded.push(self.codec.encode(item, &mut scratch)?.to_vec());
        }
        self.push_encoded(encoded).await
    }

    async fn push_encoded(&self, items: Vec<Vec<u8>>) -> Result<Position> {
        run_attached(&self.slot, move |producer, turn| {
            super::retry(
                producer,
                turn,
                |p| p.push_many(items.iter().map(Vec::as_slice)),
                |e| matches!(e, Error::Retry(RetryReason::Full)),
            )
        })
        .await
    }

    /// Publishes every pushed item up to `position`; see
    /// [`Producer::advance`].
    ///
    /// # Errors
    /// As [`Producer::advance`].
    pub async fn advance(&self, position: Position) -> Result<()> {
        run_attached(&self.slot, move |p, _| p.advance(position)).await
    }

    /// Publishes with one cache flush instead of two, leaving this batch's
    /// pointer for the next call or [`sync`](Self::sync); see
    /// [`Producer::advance_pipelined`].
    ///
    /// # Errors
    /// As [`Producer::advance_pipelined`].
    pub async fn advance_pipelined(&self, position: Position) -> Result<()> {
        run_attached(&self.slot, move |p, _| p.advance_pipelined(position)).await
    }

    /// Writes the pointer left pending by
    /// [`advance_pipelined`](Self::advance_pipelined); see
    /// [`Producer::sync`].
    ///
    /// # Errors
    /// A device error.
    pub async fn sync(&self) -> Result<()> {
        run_attached(&self.slot, |p, _| p.sync()).await
    }

    /// Reads the consumer sector, acknowledges a changed suspend request,
    /// and tells whether the ring is suspended; see [`Producer::state`].
    ///
    /// # Errors
    /// [`Error::Corrupt`] or a device error.
    pub async fn state(&self) -> Result<RingState> {
        run_attached(&self.slot, |p, _| p.state()).await
    }

    /// Waits until the ring is running: while the consumer has it
    /// suspended, keeps looking at the consumer sector (acknowledging its
    /// requests, which is the producer's half of the handshake) until it
    /// resumes. Returns at once when the ring is running.
    ///
    /// # Errors
    /// [`Error::Corrupt`] or a device error.
    pub async fn running(&self) -> Result<()> {
        run_attached(&self.slot, |producer, turn| {
            super::retry(
                producer,
                turn,
                |p| match p.state()? {
                    RingState::Running => Ok(()),
                    RingState::Suspended => Err(Error::Suspended),
                },
                |e| matches!(e, Error::Suspended),
            )
        })
        .await
    }
}

impl<D: BlockDevice + 'static, C: Codec> Drop for AsyncProducer<D, C> {
    /// Without [`detach`](AsyncProducer::detach): the blocking producer is
    /// dropped with the last reference to it, here or at the end of an
    /// operation still running. Its drop writes a pointer left pending by
    /// `advance_pipelined`; that write goes to the blocking pool when
    /// there is a runtime.
    fn drop(&mut self) {
        let Ok(mut slot) = self.slot.handle.try_lock() else {
            return;
        };
        let pending = slot
            .as_ref()
            .is_some_and(|p| p.pending_publication().is_some());
        if pending {
            if let (Some(producer), Ok(runtime)) =
                (slot.take(), tokio::runtime::Handle::try_current())
            {
                runtime.spawn_blocking(move || drop(producer));
            }
        }
    }
}

impl<D: BlockDevice + 'static, C: Codec> std::fmt::Debug for AsyncProducer<D, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncProducer")
            .field("geometry", &self.geometry)
            .finish_non_exhaustive()
    }
}
