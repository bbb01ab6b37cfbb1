//! `sbr produce`: standard input to the ring, one item per line.
//!
//! A reader thread splits standard input into items and hands them over in
//! chunks; the main thread pushes each chunk with one write and publishes.
//! By default everything is published as soon as it is pushed, with
//! [`Producer::advance_pipelined`] (one cache flush per chunk, the pointer
//! riding on the next chunk's flush), and the pending pointer is written
//! whenever the input pauses, so no line ever waits for more input. With
//! `--batch N`, items are published with a full `advance` after every N.

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};

use shared_block_ring::{BlockDevice, Error, Producer, RetryReason};

use crate::common::{CmdResult, DeviceArgs, Failure, Names, OnDevice, EXIT_FATAL, EXIT_RETRY};

/// Arguments of `sbr produce`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    dev: DeviceArgs,

    #[command(flatten)]
    names: Names,

    /// Publish after every N items (and at the end of input). Without it,
    /// each line is published as soon as it is read: lines that arrive
    /// together are published together. Items are also published early
    /// when the ring fills up, so that the consumer can make room.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    batch: Option<u64>,

    /// When the ring is full, exit with status 75 instead of waiting
    /// (everything pushed so far is published first).
    #[arg(long)]
    no_wait: bool,

    /// The byte that ends each item (default: newline), as a character or
    /// an escape: '\n', '\t', '\0', '\x1e'.
    #[arg(long, value_parser = parse_delimiter, default_value = "\\n", conflicts_with = "null")]
    delimiter: u8,

    /// Items end with NUL bytes (like find -print0).
    #[arg(long)]
    null: bool,
}

fn parse_delimiter(s: &str) -> Result<u8, String> {
    match s {
        "\\n" => Ok(b'\n'),
        "\\t" => Ok(b'\t'),
        "\\0" => Ok(0),
        _ if s.len() == 1 => Ok(s.as_bytes()[0]),
        _ => s
            .strip_prefix("\\x")
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or_else(|| {
                format!("invalid delimiter {s:?}: give one byte, such as ',' or '\\x1e'")
            }),
    }
}

/// Items in one flat buffer (no allocation per item once it has grown).
#[derive(Default)]
pub(crate) struct Chunk {
    /// The items' bytes, one after the other.
    pub(crate) bytes: Vec<u8>,
    /// Where each item ends in `bytes`.
    pub(crate) ends: Vec<usize>,
}

impl Chunk {
    /// The items `from..to`.
    fn items(&self, from: usize, to: usize) -> impl Iterator<Item = &[u8]> {
        let mut start = if from == 0 { 0 } else { self.ends[from - 1] };
        self.ends[from..to].iter().map(move |&end| {
            let item = &self.bytes[start..end];
            start = end;
            item
        })
    }

    fn bytes_of(&self, from: usize, to: usize) -> usize {
        let start = if from == 0 { 0 } else { self.ends[from - 1] };
        self.ends[to - 1] - start
    }
}

/// What the reader thread sends (`sbr bench` sends the same).
pub(crate) enum Input {
    Items(Chunk),
    /// Item number `.0` (1-based) is longer than `.1` bytes.
    TooLong(u64, u64),
    ReadError(std::io::Error),
}

/// Largest chunk the reader hands over.
pub(crate) const CHUNK_BYTES: usize = 1 << 20;
/// Most items in one chunk.
pub(crate) const CHUNK_ITEMS: usize = 16384;

/// Runs `sbr produce`.
pub fn run(a: Args) -> CmdResult {
    let name = a.dev.device.clone();
    let device = a.dev.open(false)?;
    let options = a.names.apply(a.dev.options());
    let producer = Producer::attach(device, options).on(&name)?;
    let delimiter = if a.null { 0 } else { a.delimiter };
    let max_item = producer.geometry().max_item_len();
    let (tx, rx) = mpsc::sync_channel(2);
    let (recycle_tx, recycle_rx) = mpsc::channel();
    std::thread::spawn(move || read_items(delimiter, max_item, tx, recycle_rx));
    let mut feeder = Feeder::new(name, producer, a.batch, a.no_wait);
    let result = feeder.feed(rx, recycle_tx);
    // Whatever happened, items already pushed are complete: publish them.
    let publish = feeder.publish();
    result.and(publish)?;
    tracing::info!(items = feeder.published, "produced");
    Ok(())
}

/// The reader thread: splits standard input at `delimiter` into chunks.
/// A chunk is sent when it is full, or when everything read so far has
/// been split (the next read may block), so a slow writer's lines are not
/// held back.
fn read_items(delimiter: u8, max_item: u64, tx: SyncSender<Input>, recycle: Receiver<Chunk>) {
    let mut input = BufReader::with_capacity(1 << 20, std::io::stdin().lock());
    let mut chunk = Chunk::default();
    let mut count = 0u64;
    loop {
        let start = chunk.bytes.len();
        // Never buffer more of one line than the ring could take.
        let n = match (&mut input)
            .take(max_item + 2)
            .read_until(delimiter, &mut chunk.bytes)
        {
            Ok(n) => n,
            Err(e) => {
                let _ = tx.send(Input::Items(std::mem::take(&mut chunk)));
                let _ = tx.send(Input::ReadError(e));
                return;
            }
        };
        if n == 0 {
            break;
        }
        count += 1;
        if chunk.bytes.last() == Some(&delimiter) {
            chunk.bytes.pop();
        }
        if (chunk.bytes.len() - start) as u64 > max_item {
            chunk.bytes.truncate(start);
            let _ = tx.send(Input::Items(std::mem::take(&mut chunk)));
            let _ = tx.send(Input::TooLong(count, max_item));
            return;
        }
        chunk.ends.push(chunk.bytes.len());
        if chunk.bytes.len() >= CHUNK_BYTES
            || chunk.ends.len() >= CHUNK_ITEMS
            || input.buffer().is_empty()
        {
            let mut next = recycle.try_recv().unwrap_or_default();
            next.bytes.clear();
            next.ends.clear();
            if tx
                .send(Input::Items(std::mem::replace(&mut chunk, next)))
                .is_err()
            {
                return;
            }
        }
    }
    if !chunk.ends.is_empty() {
        let _ = tx.send(Input::Items(chunk));
    }
}

/// The main thread of `sbr produce` (and of the bench's streaming
/// producer): pushes the chunks the reader sends and publishes them.
pub(crate) struct Feeder<D: BlockDevice> {
    name: String,
    producer: Producer<D>,
    batch: Option<u64>,
    no_wait: bool,
    group_bytes: usize,
    /// Items pushed since the last full publication.
    unpublished: u64,
    /// Items published so far.
    published: u64,
}

impl<D: BlockDevice> Feeder<D> {
    /// A feeder publishing every `batch` items, or as soon as pushed
    /// (pipelined) without one.
    pub(crate) fn new(
        name: String,
        producer: Producer<D>,
        batch: Option<u64>,
        no_wait: bool,
    ) -> Feeder<D> {
        Feeder {
            group_bytes: (producer.geometry().capacity() / 4).clamp(1, 4 << 20) as usize,
            name,
            producer,
            batch,
            no_wait,
            unpublished: 0,
            published: 0,
        }
    }

    /// Pushes and publishes what `rx` brings until it is closed; sends each
    /// chunk back on `recycle` once pushed.
    pub(crate) fn feed(&mut self, rx: Receiver<Input>, recycle: mpsc::Sender<Chunk>) -> CmdResult {
        loop {
            let input = match rx.try_recv() {
                Ok(input) => input,
                Err(TryRecvError::Empty) => {
                    // The input paused: publish what is pending before
                    // waiting for more.
                    self.publish()?;
                    match rx.recv() {
                        Ok(input) => input,
                        Err(_) => return Ok(()),
                    }
                }
                Err(TryRecvError::Disconnected) => return Ok(()),
            };
            match input {
                Input::Items(chunk) => {
                    self.push_chunk(&chunk)?;
                    let _ = recycle.send(chunk);
                }
                Input::TooLong(n, max) => {
                    return Err(Failure::new(
                        EXIT_FATAL,
                        format!(
                            "{}: item {n} is larger than the ring can ever hold \
                             (at most {max} bytes per item in a ring of {} bytes)",
                            self.name,
                            self.producer.geometry().capacity()
                        ),
                    ))
                }
                Input::ReadError(e) => {
                    return Err(Failure::new(
                        EXIT_FATAL,
                        format!("reading standard input: {e}"),
                    ))
                }
            }
        }
    }

    /// Pushes a chunk in groups, publishing as `--batch` asks.
    fn push_chunk(&mut self, chunk: &Chunk) -> CmdResult {
        let n = chunk.ends.len();
        let mut from = 0;
        while from < n {
            let mut to = from + 1;
            let limit = self.batch.map(|b| (b - self.unpublished) as usize);
            while to < n
                && limit.is_none_or(|l| to - from < l)
                && chunk.bytes_of(from, to + 1) <= self.group_bytes
            {
                to += 1;
            }
            self.push(chunk, from, to)?;
            from = to;
            match self.batch {
                Some(b) if self.unpublished >= b => self.publish()?,
                Some(_) => {}
                None => {
                    let tail = self.producer.tail();
                    self.producer.advance_pipelined(tail).on(&self.name)?;
                }
            }
        }
        Ok(())
    }

    /// Pushes items `from..to` of a chunk, waiting for room as needed.
    fn push(&mut self, chunk: &Chunk, from: usize, to: usize) -> CmdResult {
        let mut backoff = self.producer.backoff(None);
        loop {
            match self.producer.push_many(chunk.items(from, to)) {
                Ok(_) => {
                    self.unpublished += (to - from) as u64;
                    return Ok(());
                }
                Err(Error::Retry(RetryReason::Full)) => {
                    // The consumer cannot free space it cannot see.
                    self.publish()?;
                    if self.no_wait {
                        return Err(Failure::new(
                            EXIT_RETRY,
                            format!(
                                "{}: the ring is full; {} items published, the rest of the input was not read",
                                self.name, self.published
                            ),
                        ));
                    }
                    self.producer.pause(&mut backoff);
                }
                Err(Error::TooLarge { .. }) if to - from > 1 => {
                    // The group is larger than the ring: one by one.
                    for i in from..to {
                        self.push(chunk, i, i + 1)?;
                    }
                    return Ok(());
                }
                Err(e) => return Err(Failure::ring(&self.name, &e)),
            }
        }
    }

    /// Publishes everything pushed, durably.
    pub(crate) fn publish(&mut self) -> CmdResult {
        let tail = self.producer.tail();
        self.producer.advance(tail).on(&self.name)?;
        self.published += self.unpublished;
        self.unpublished = 0;
        Ok(())
    }
}
