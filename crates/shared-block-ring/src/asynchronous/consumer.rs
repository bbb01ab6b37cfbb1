//! The async consumer and its stream of items.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use crate::codec::{Bytes, Codec};
use crate::consumer::Consumer;
use crate::device::BlockDevice;
use crate::error::{Error, Result, RetryReason};
use crate::format::Geometry;
use crate::position::Position;
use crate::ring::{Options, RingState};

use super::{run, run_attached, Slot, Turn};

/// The most items one blocking task of an [`ItemStream`] fetches: enough
/// to amortise the hand-over to the blocking pool over small items.
const STREAM_BATCH: usize = 256;

/// The reading side of a ring, for async code: a [`Consumer`] whose
/// operations run on tokio's blocking pool, and whose waits (for an item,
/// for the suspend handshake) are futures. See the [module docs](super)
/// for how it runs, waits and is cancelled.
///
/// Items are decoded on the blocking pool, so `C::Owned` must be `Send`.
pub struct AsyncConsumer<D: BlockDevice + 'static, C: Codec + 'static = Bytes> {
    slot: Slot<Consumer<D, C>>,
    geometry: Geometry,
}

impl<D: BlockDevice + 'static> AsyncConsumer<D, Bytes> {
    /// Attaches a consumer of byte strings, on the blocking pool; see
    /// [`Consumer::attach`].
    ///
    /// # Errors
    /// As [`Consumer::attach`].
    pub async fn attach(device: D, options: Options) -> Result<Self> {
        Self::attach_with_codec(device, Bytes, options).await
    }
}

impl<D, C> AsyncConsumer<D, C>
where
    D: BlockDevice + 'static,
    C: Codec + 'static,
    C::Owned: Send + 'static,
{
    /// Attaches a consumer whose items `codec` decodes; see
    /// [`Consumer::attach_with_codec`].
    ///
    /// # Errors
    /// As [`Consumer::attach_with_codec`]; [`Error::ShutDown`] when the
    /// runtime is shutting down.
    pub async fn attach_with_codec(device: D, codec: C, options: Options) -> Result<Self> {
        let consumer =
            super::blocking(move || Consumer::attach_with_codec(device, codec, options)).await?;
        Ok(Self::new(consumer))
    }

    /// Wraps an attached blocking consumer.
    pub fn new(consumer: Consumer<D, C>) -> Self {
        AsyncConsumer {
            geometry: consumer.geometry(),
            slot: Slot::new(consumer),
        }
    }

    /// Waits for every operation still running (one whose future was
    /// dropped), then detaches: the consumer role is free when this
    /// returns. Items not released are delivered again to the next
    /// consumer. Streams made by [`stream`](Self::stream) end.
    pub async fn detach(self) {
        super::detach(&self.slot).await;
    }

    /// Waits for every operation still running, and returns the blocking
    /// consumer. Streams made by [`stream`](Self::stream) end.
    pub async fn into_blocking(self) -> Consumer<D, C> {
        match super::into_blocking(&self.slot).await {
            Some(consumer) => consumer,
            // Only `detach` and this empty the slot, and both consume self.
            None => unreachable!("an async consumer is attached until it is consumed"),
        }
    }

    /// The ring's geometry.
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// The consumer position on the device (everything before it is
    /// released), once any operation still running has ended.
    pub async fn position(&self) -> Position {
        match super::read(&self.slot, Consumer::position).await {
            Some(position) => position,
            None => unreachable!("an async consumer is attached until it is consumed"),
        }
    }

    /// The item at the consumer position and the position after it,
    /// waiting until one is published; does not release it (see
    /// [`advance`](Self::advance)). See [`Consumer::pop_wait`].
    ///
    /// # Errors
    /// [`Error::Corrupt`]; [`Error::Codec`]; a device error. Never
    /// [`Error::Retry`]: use `tokio::time::timeout` to bound the wait.
    pub async fn pop(&self) -> Result<(Position, C::Owned)> {
        run_attached(&self.slot, |consumer, turn| {
            let from = consumer.position();
            wait_pop(consumer, turn, from)
        })
        .await
    }

    /// The item at `from` (a position returned by an earlier pop) and the
    /// position after it, waiting until one is published there; see
    /// [`Consumer::pop_from`].
    ///
    /// # Errors
    /// As [`pop`](Self::pop); [`Error::PositionOutOfRange`] for a position
    /// before the consumer's or past the producer's.
    pub async fn pop_from(&self, from: Position) -> Result<(Position, C::Owned)> {
        run_attached(&self.slot, move |consumer, turn| {
            wait_pop(consumer, turn, from)
        })
        .await
    }

    /// Releases everything before `position`, so the producer may reuse
    /// it; see [`Consumer::advance`].
    ///
    /// # Errors
    /// As [`Consumer::advance`].
    pub async fn advance(&self, position: Position) -> Result<()> {
        advance(&self.slot, position).await
    }

    /// Reads the producer sector and tells whether the producer has
    /// acknowledged a suspend; see [`Consumer::state`].
    ///
    /// # Errors
    /// [`Error::Corrupt`] or a device error.
    pub async fn state(&self) -> Result<RingState> {
        run_attached(&self.slot, |c, _| c.state()).await
    }

    /// Asks the producer to pause, and waits until it has acknowledged
    /// (waiting first for a previous request to be acknowledged). The
    /// producer acknowledges when it next looks at the consumer sector: in
    /// a push (at most [`Options::consumer_poll_interval`] after the
    /// request, or when the ring is full), in
    /// [`AsyncProducer::running`](super::AsyncProducer::running) or
    /// [`state`](super::AsyncProducer::state); an idle producer does not,
    /// so bound the wait with `tokio::time::timeout`. See
    /// [`Consumer::suspend`].
    ///
    /// # Errors
    /// [`Error::Corrupt`] or a device error.
    pub async fn suspend(&self) -> Result<()> {
        self.handshake(true).await
    }

    /// Asks a paused producer to continue, and waits until it has
    /// acknowledged; the mirror of [`suspend`](Self::suspend).
    ///
    /// # Errors
    /// [`Error::Corrupt`] or a device error.
    pub async fn resume(&self) -> Result<()> {
        self.handshake(false).await
    }

    async fn handshake(&self, suspend: bool) -> Result<()> {
        run_attached(&self.slot, move |consumer, turn| {
            super::retry(
                consumer,
                turn,
                |c| {
                    // Retry(HandshakePending) while an earlier request is
                    // unacknowledged; writes ours otherwise.
                    if suspend {
                        c.suspend()?;
                    } else {
                        c.resume()?;
                    }
                    match (c.state()?, suspend) {
                        (RingState::Suspended, true) | (RingState::Running, false) => Ok(()),
                        _ => Err(Error::Retry(RetryReason::HandshakePending)),
                    }
                },
                |e| matches!(e, Error::Retry(RetryReason::HandshakePending)),
            )
        })
        .await
    }

    /// A [`Stream`] of the items from the consumer position on, each with
    /// the position after it, waiting for items as they are published.
    /// See [`ItemStream`].
    pub fn stream(&self) -> ItemStream<D, C> {
        ItemStream {
            slot: self.slot.clone(),
            cursor: None,
            buffered: VecDeque::new(),
            fetching: None,
        }
    }
}

impl<D: BlockDevice + 'static, C: Codec + 'static> std::fmt::Debug for AsyncConsumer<D, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncConsumer")
            .field("geometry", &self.geometry)
            .finish_non_exhaustive()
    }
}

/// Pops at `from`, waiting while nothing is published there.
fn wait_pop<D: BlockDevice, C: Codec>(
    consumer: &mut Consumer<D, C>,
    turn: &Turn,
    from: Position,
) -> Result<(Position, C::Owned)> {
    super::retry(
        consumer,
        turn,
        |c| c.pop_from(from),
        |e| matches!(e, Error::Retry(RetryReason::Empty)),
    )
}

async fn advance<D, C>(slot: &Slot<Consumer<D, C>>, position: Position) -> Result<()>
where
    D: BlockDevice + 'static,
    C: Codec + 'static,
{
    run_attached(slot, move |c, _| c.advance(position)).await
}

/// A batch of items read by one blocking task: `None` once the consumer
/// was detached.
type Fetch<T> = Pin<Box<dyn Future<Output = Option<Result<Vec<(Position, T)>>>> + Send>>;

/// The items of a ring as a [`Stream`], from [`AsyncConsumer::stream`].
///
/// Each item comes with the position after it. The stream never releases
/// anything: pass that position to [`AsyncConsumer::advance`] (or
/// [`ItemStream::advance`]) once the item is processed, for each item or
/// for the last of several. What is not released is delivered again to the
/// next consumer, or to a new stream, after a crash or a restart.
///
/// ```no_run
/// # use futures_util::StreamExt;
/// # async fn demo(consumer: shared_block_ring::AsyncConsumer<shared_block_ring::FileDevice>)
/// # -> Result<(), shared_block_ring::Error> {
/// let mut items = consumer.stream();
/// while let Some(item) = items.next().await {
///     let (next, bytes) = item?;
///     println!("{}", String::from_utf8_lossy(&bytes));
///     consumer.advance(next).await?; // processed: release it
/// }
/// # Ok(())
/// # }
/// ```
///
/// The stream starts at the consumer position (read when it is first
/// polled) and then follows its own cursor: unlike
/// [`AsyncConsumer::pop`], it yields each item once, released or not. It
/// fetches every item published when it looks (up to 256 items, or the
/// consumer's read-ahead in bytes) in one blocking task, and yields them
/// one by one; dropping it drops the items fetched and not yet yielded,
/// which are not released either. A fetch that finds the consumer
/// advanced past the cursor (by positions from `pop`) goes on from the
/// consumer position.
///
/// It waits for items without end, and ends only when the consumer is
/// detached. An error is yielded as `Some(Err(_))`, and the next poll tries
/// again at the same item (a codec error thus repeats: decode with
/// [`Bytes`] to skip an undecodable item).
pub struct ItemStream<D: BlockDevice + 'static, C: Codec + 'static = Bytes> {
    slot: Slot<Consumer<D, C>>,
    /// Where the next fetch starts; `None`: at the consumer position.
    cursor: Option<Position>,
    buffered: VecDeque<(Position, C::Owned)>,
    fetching: Option<Fetch<C::Owned>>,
}

// The items are moved in and out of the buffer, never pinned; the fetch
// future is pinned in its box.
impl<D: BlockDevice + 'static, C: Codec + 'static> Unpin for ItemStream<D, C> {}

impl<D, C> ItemStream<D, C>
where
    D: BlockDevice + 'static,
    C: Codec + 'static,
    C::Owned: Send + 'static,
{
    /// Releases everything before `position`, as
    /// [`AsyncConsumer::advance`].
    ///
    /// # Errors
    /// As [`Consumer::advance`]; [`Error::ShutDown`] once the consumer is
    /// detached.
    pub async fn advance(&self, position: Position) -> Result<()> {
        advance(&self.slot, position).await
    }

    fn fetch(&self) -> Fetch<C::Owned> {
        let slot = self.slot.clone();
        let cursor = self.cursor;
        Box::pin(async move {
            run(&slot, move |consumer, turn| {
                let released = consumer.position();
                let from = cursor.map_or(released, |c| c.max(released));
                let first = wait_pop(consumer, turn, from)?;
                let limit = from.offset() + consumer.options().read_ahead as u64;
                let mut batch = vec![first];
                while batch.len() < STREAM_BATCH {
                    let at = batch[batch.len() - 1].0;
                    if at.offset() >= limit {
                        break;
                    }
                    // Stop at the end of what is published, or at an error,
                    // which the next fetch meets again and reports.
                    match consumer.pop_from(at) {
                        Ok(item) => batch.push(item),
                        Err(_) => break,
                    }
                }
                Ok(batch)
            })
            .await
        })
    }
}

impl<D, C> Stream for ItemStream<D, C>
where
    D: BlockDevice + 'static,
    C: Codec + 'static,
    C::Owned: Send + 'static,
{
    type Item = Result<(Position, C::Owned)>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(item) = this.buffered.pop_front() {
                return Poll::Ready(Some(Ok(item)));
            }
            let fetching = match &mut this.fetching {
                Some(fetching) => fetching,
                None => this.fetching.insert(this.fetch()),
            };
            let fetched = std::task::ready!(fetching.as_mut().poll(cx));
            this.fetching = None;
            match fetched {
                None => return Poll::Ready(None),
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                Some(Ok(batch)) => {
                    this.cursor = batch.last().map(|(next, _)| *next);
                    this.buffered.extend(batch);
                }
            }
        }
    }
}

impl<D: BlockDevice + 'static, C: Codec + 'static> std::fmt::Debug for ItemStream<D, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ItemStream")
            .field("cursor", &self.cursor)
            .field("buffered", &self.buffered.len())
            .finish_non_exhaustive()
    }
}
