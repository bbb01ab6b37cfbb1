//! `sbr produce`: standard input to the ring, one item per line.
//!
//! A reader thread splits standard input into items and hands them over in
//! chunks; the main thread pushes each chunk with one write and publishes.
//! By default what is pushed is published with
//! [`Producer::advance_pipelined`] (each publication's pointer written with
//! the next one's items: in the power-loss mode one cache flush per
//! publication, in the process-crash mode one round trip), and everything
//! is published with `advance` whenever the input pauses, so no line ever
//! waits for more input. Chunks that are already waiting are gathered into
//! one publication (group commit, up to an eighth of the ring or 4 MiB of
//! ring space): an input faster than the device costs one flush per
//! group, not per chunk.
//! With `--batch N`, items are published with a full `advance` after
//! every N.

use std::io::{BufRead, BufReader, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shared_block_ring::{Backoff, BlockDevice, Error, Options, Producer, RetryReason, RingState};

use crate::common::{CmdResult, DeviceArgs, Failure, Names, OnDevice, EXIT_FATAL, EXIT_RETRY};
use crate::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use crate::sync::thread;

/// Arguments of `sbr produce`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    dev: DeviceArgs,

    #[command(flatten)]
    names: Names,

    /// Publish after every N items (and whenever the input pauses or
    /// ends, so that no line waits for more input). Without it,
    /// lines are published as they are read: once no more input is
    /// waiting, or every eighth of the ring (at most 4 MiB) while it is,
    /// so that a fast input costs one flush per group. Items are also
    /// published early when the ring fills up, so that the consumer can
    /// make room.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    batch: Option<u64>,

    /// When the ring is full, exit with status 75 instead of waiting: the
    /// ring is filled with as many whole items as fit, they are published,
    /// and the message says which input lines were published and which
    /// were read but not published.
    #[arg(long)]
    no_wait: bool,

    /// While the consumer has suspended the ring, wait for it to resume
    /// (as the producer waits while the ring is full) instead of exiting
    /// with status 69.
    #[arg(long)]
    wait_resume: bool,

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
    let device: Arc<dyn BlockDevice> = Arc::from(a.dev.open(false)?);
    let options = a.names.apply(a.dev.options());
    let producer = attach(&a.dev, &device, options, a.wait_resume)?;
    let delimiter = if a.null { 0 } else { a.delimiter };
    let max_item = producer.geometry().max_item_len();
    let (tx, rx) = mpsc::sync_channel(2);
    let (recycle_tx, recycle_rx) = mpsc::channel();
    let input = Arc::new(InputCount::default());
    let reader = {
        let input = Arc::clone(&input);
        thread::spawn(move || {
            let stdin = std::io::stdin().lock();
            read_items(stdin, delimiter, max_item, tx, recycle_rx, &input)
        })
    };
    let mut feeder =
        Feeder::new(name.clone(), producer, a.batch, a.no_wait).wait_resume(a.wait_resume);
    let result = feeder.feed(rx, recycle_tx);
    // Whatever happened, items already pushed are complete: publish them.
    let publish = feeder.publish();
    if feeder.stopped_full {
        return Err(full_report(&name, feeder.published, &input, reader));
    }
    result.and(publish)?;
    tracing::info!(items = feeder.published, "produced");
    Ok(())
}

/// Attaches the producer; with `wait_resume`, waits while the ring is
/// suspended (each attempt acknowledges the consumer's request anew).
fn attach(
    dev: &DeviceArgs,
    device: &Arc<dyn BlockDevice>,
    options: Options,
    wait_resume: bool,
) -> Result<Producer<Arc<dyn BlockDevice>>, Failure> {
    let mut backoff = Backoff::new(RESUME_POLL, None);
    loop {
        match Producer::attach(Arc::clone(device), options.clone()) {
            Err(Error::Suspended) if wait_resume => {
                backoff.wait_with(|d| device.wait_for_change(d));
            }
            r => return r.map_err(|e| dev.failure(&e)),
        }
    }
}

/// How often a producer waiting for a resume looks at the consumer sector
/// (at least; a change notification wakes it sooner).
const RESUME_POLL: Duration = Duration::from_millis(100);

/// How often a producer waiting for input looks at the consumer sector.
const IDLE_LOOK: Duration = Duration::from_millis(100);

/// What the reader thread has taken from standard input, for the report
/// of `--no-wait`.
#[derive(Default)]
struct InputCount {
    /// Bytes read from standard input.
    bytes: AtomicU64,
    /// Lines split off (each an item), and the bytes they took, delimiter
    /// included.
    lines: AtomicU64,
    line_bytes: AtomicU64,
    /// Set to make the reader stop reading.
    stop: AtomicBool,
    /// Set by the reader when it returns.
    finished: AtomicBool,
}

/// Standard input, counted.
struct Counted<'a, R> {
    inner: R,
    count: &'a InputCount,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.count.stop.load(Ordering::Relaxed) {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        self.count.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// The message of `--no-wait` on a full ring: exactly which input lines
/// were published and which were read but not published.
fn full_report(
    name: &str,
    published: u64,
    input: &InputCount,
    _reader: thread::JoinHandle<()>,
) -> Failure {
    // Stop the reader and let it finish the line in hand, so that the
    // counts no longer move (a reader blocked on a silent input has read
    // nothing more, and is left behind).
    input.stop.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(1);
    while !input.finished.load(Ordering::Acquire) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(1));
    }
    let lines = input.lines.load(Ordering::Relaxed);
    let extra = input
        .bytes
        .load(Ordering::Relaxed)
        .saturating_sub(input.line_bytes.load(Ordering::Relaxed));
    let done = match published {
        0 => "no line was published".to_string(),
        1 => "line 1 was published (1 item)".to_string(),
        n => format!("lines 1 to {n} were published ({n} items)"),
    };
    let mut left = match lines - published.min(lines) {
        0 => String::new(),
        1 => format!("line {}", published + 1),
        _ => format!("lines {} to {lines}", published + 1),
    };
    if extra > 0 {
        let partial = format!("{extra} bytes of line {}", lines + 1);
        left = if left.is_empty() {
            partial
        } else {
            format!("{left} and {partial}")
        };
    }
    let left = if left.is_empty() {
        "nothing else was read".to_string()
    } else {
        format!("{left} were read but not published")
    };
    Failure::new(
        EXIT_RETRY,
        format!("{name}: the ring is full: {done}; {left}"),
    )
}

/// The reader thread: splits standard input at `delimiter` into chunks.
/// A chunk is sent when it is full, or when everything read so far has
/// been split (the next read may block), so a slow writer's lines are not
/// held back.
fn read_items(
    source: impl Read,
    delimiter: u8,
    max_item: u64,
    tx: SyncSender<Input>,
    recycle: Receiver<Chunk>,
    counts: &InputCount,
) {
    /// Tells `full_report` the reader is done, however it returns.
    struct Finished<'a>(&'a AtomicBool);
    impl Drop for Finished<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Release);
        }
    }
    let _finished = Finished(&counts.finished);
    let stdin = Counted {
        inner: source,
        count: counts,
    };
    let mut input = BufReader::with_capacity(1 << 20, stdin);
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
        counts.lines.store(count, Ordering::Relaxed);
        counts.line_bytes.fetch_add(n as u64, Ordering::Relaxed);
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
    /// Default mode: the most ring bytes one publication gathers (an
    /// eighth of the ring, at most 4 MiB: the consumer sees a group only
    /// with the next one's pointer, so two groups stay well inside it).
    commit_bytes: u64,
    /// The tail at the last publication.
    published_tail: u64,
    /// Items pushed since the last full publication.
    unpublished: u64,
    /// Items published so far.
    published: u64,
    /// Wait while the ring is suspended, instead of failing.
    wait_resume: bool,
    /// Set when `--no-wait` stopped at a full ring.
    stopped_full: bool,
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
            commit_bytes: (producer.geometry().capacity() / 8).clamp(1, 4 << 20),
            published_tail: producer.tail().offset(),
            name,
            producer,
            batch,
            no_wait,
            unpublished: 0,
            published: 0,
            wait_resume: false,
            stopped_full: false,
        }
    }

    /// Whether to wait while the ring is suspended (`--wait-resume`)
    /// instead of failing with [`Error::Suspended`].
    pub(crate) fn wait_resume(mut self, wait: bool) -> Feeder<D> {
        self.wait_resume = wait;
        self
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
                    match self.idle(&rx)? {
                        Some(input) => input,
                        None => return Ok(()),
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

    /// Waits for more input; meanwhile looks at the consumer sector every
    /// [`IDLE_LOOK`], so that a suspend or resume request is acknowledged
    /// while the input is quiet (a producer otherwise looks only when it
    /// pushes, and `sbr suspend --wait` would wait for the next line), and
    /// keeps a format-2 side's lease with heartbeats.
    /// `None` at the end of the input.
    fn idle(&mut self, rx: &Receiver<Input>) -> Result<Option<Input>, Failure> {
        loop {
            match rx.recv_timeout(IDLE_LOOK) {
                Ok(input) => return Ok(Some(input)),
                Err(RecvTimeoutError::Timeout) => {
                    self.producer.state().on(&self.name)?;
                    self.producer.heartbeat().on(&self.name)?;
                }
                Err(RecvTimeoutError::Disconnected) => return Ok(None),
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
            if self.batch.is_none() {
                // Group commit: what is pushed joins the publication being
                // gathered unless that would take it past `commit_bytes`
                // of ring space (the feed loop publishes when the input
                // runs dry, so only input already waiting is gathered). A
                // fast input costs one flush per group, not per chunk.
                // `None`: an item too large for the ring, whose push fails
                // below (publishing first loses nothing).
                let next = chunk.items(from, to).try_fold(0u64, |n, item| {
                    Some(n + self.producer.stream_len(item.len()).ok()?)
                });
                let gathered = self.gathered();
                if gathered > 0 && next.is_none_or(|n| gathered + n > self.commit_bytes) {
                    self.publish_pipelined()?;
                }
            }
            self.push(chunk, from, to)?;
            from = to;
            match self.batch {
                Some(b) if self.unpublished >= b => self.publish()?,
                Some(_) => {}
                // A group as large as the limit on its own.
                None if self.gathered() >= self.commit_bytes => self.publish_pipelined()?,
                None => {}
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
                        return Err(self.fill_and_stop(chunk, from, to));
                    }
                    // Waiting for room may take long: keep the lease.
                    self.producer.heartbeat().on(&self.name)?;
                    self.producer.pause(&mut backoff);
                }
                Err(Error::Suspended) if self.wait_resume => {
                    self.publish()?;
                    self.wait_for_resume()?;
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

    /// `--no-wait` on a full ring: pushes items `from..to` one at a time
    /// while whole items fit, publishes them, and returns the failure that
    /// stops the feed.
    fn fill_and_stop(&mut self, chunk: &Chunk, from: usize, to: usize) -> Failure {
        self.stopped_full = true;
        for item in chunk.items(from, to) {
            match self.producer.push(item) {
                Ok(_) => self.unpublished += 1,
                Err(Error::Retry(RetryReason::Full)) => break,
                Err(e) => return Failure::ring(&self.name, &e),
            }
        }
        match self.publish() {
            Ok(()) => Failure::new(EXIT_RETRY, format!("{}: the ring is full", self.name)),
            Err(f) => f,
        }
    }

    /// Waits until the consumer resumes the ring (looking at its sector,
    /// which acknowledges the request).
    fn wait_for_resume(&mut self) -> CmdResult {
        let mut backoff = Backoff::new(RESUME_POLL, None);
        while self.producer.state().on(&self.name)? == RingState::Suspended {
            self.producer.heartbeat().on(&self.name)?;
            self.producer.pause(&mut backoff);
        }
        Ok(())
    }

    /// Publishes everything pushed, durably.
    pub(crate) fn publish(&mut self) -> CmdResult {
        let tail = self.producer.tail();
        self.producer.advance(tail).on(&self.name)?;
        self.published += self.unpublished;
        self.unpublished = 0;
        self.published_tail = tail.offset();
        Ok(())
    }

    /// Publishes everything pushed with [`Producer::advance_pipelined`]:
    /// its pointer goes with the next publication's items.
    fn publish_pipelined(&mut self) -> CmdResult {
        let tail = self.producer.tail();
        self.producer.advance_pipelined(tail).on(&self.name)?;
        self.published_tail = tail.offset();
        Ok(())
    }

    /// Ring bytes pushed since the last publication.
    fn gathered(&self) -> u64 {
        self.producer.tail().offset() - self.published_tail
    }
}

/// The reader/feeder hand-over under the shuttle model checker: `cargo
/// nextest run -p sbr --features shuttle -E 'test(/produce::model/)'
/// --no-capture` (the README's test command runs it). Shuttle runs each
/// scenario under thousands of thread interleavings and fails on a
/// deadlock (the reader blocked on a full channel that nobody drains, the
/// feeder waiting for a reader that is gone) or a failed assertion.
#[cfg(all(test, feature = "shuttle"))]
mod model {
    use super::*;
    use shared_block_ring::{create, Consumer, MemDevice};
    use std::sync::atomic::AtomicUsize;

    /// Standard input that hands over one line per read, letting the
    /// scheduler switch threads before each read.
    struct Trickle {
        lines: Vec<Vec<u8>>,
        next: usize,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            thread::yield_now();
            let Some(line) = self.lines.get(self.next) else {
                return Ok(0);
            };
            self.next += 1;
            buf[..line.len()].copy_from_slice(line);
            Ok(line.len())
        }
    }

    /// Feeds `lines` through a reader thread and a feeder into a fresh
    /// ring of `sectors` sectors; returns the feed's outcome and the items
    /// published, in ring order. The reader thread must have ended.
    fn feed(lines: &[&str], max_item: u64, sectors: u64, no_wait: bool) -> (bool, Vec<Vec<u8>>) {
        let disk = MemDevice::new(512, sectors);
        create(&disk).unwrap();
        let producer = Producer::attach(disk.clone(), Options::new()).unwrap();
        let (tx, rx) = mpsc::sync_channel(2);
        let (recycle_tx, recycle_rx) = mpsc::channel();
        let counts = Arc::new(InputCount::default());
        let source = Trickle {
            lines: lines
                .iter()
                .map(|l| format!("{l}\n").into_bytes())
                .collect(),
            next: 0,
        };
        let reader = {
            let counts = Arc::clone(&counts);
            thread::spawn(move || read_items(source, b'\n', max_item, tx, recycle_rx, &counts))
        };
        let mut feeder = Feeder::new("model".into(), producer, None, no_wait);
        let fed = feeder.feed(rx, recycle_tx);
        let published = feeder.publish();
        reader.join().unwrap();
        drop(feeder);
        let mut consumer = Consumer::attach(disk, Options::new()).unwrap();
        let mut items = Vec::new();
        while let Ok((next, item)) = consumer.pop() {
            items.push(item);
            consumer.advance(next).unwrap();
        }
        (fed.and(published).is_ok(), items)
    }

    fn explore(name: &str, scenario: impl Fn() + Send + Sync + 'static) -> usize {
        let count = Arc::new(AtomicUsize::new(0));
        let run = {
            let count = Arc::clone(&count);
            let scenario = Arc::new(scenario);
            move || {
                count.fetch_add(1, Ordering::Relaxed);
                scenario();
            }
        };
        shuttle::check_random(run.clone(), 2000);
        shuttle::check_pct(run, 1000, 3);
        let n = count.load(Ordering::Relaxed);
        println!("produce model: {name}: {n} schedules explored, 0 deadlocks, 0 failed assertions");
        n
    }

    fn bytes(lines: &[&str]) -> Vec<Vec<u8>> {
        lines.iter().map(|l| l.as_bytes().to_vec()).collect()
    }

    #[test]
    fn the_reader_and_the_feeder_never_deadlock_nor_lose_a_line() {
        let mut total = 0;
        // Every line arrives, once, in order; both threads end.
        total += explore("all lines", || {
            let lines = ["a", "bb", "ccc", "dddd", "e", "ff"];
            let (ok, items) = feed(&lines, 64, 64, false);
            assert!(ok);
            assert_eq!(items, bytes(&lines));
        });
        // A line too long for the ring stops the feed with an error; the
        // lines before it are published, nothing after it; the reader,
        // perhaps blocked on the full channel, ends.
        total += explore("a line too long", || {
            let lines = [
                "a",
                "b",
                "c",
                "this line is far too long",
                "d",
                "e",
                "f",
                "g",
            ];
            let (ok, items) = feed(&lines, 8, 64, false);
            assert!(!ok);
            assert_eq!(items, bytes(&lines[..3]));
        });
        // --no-wait on a ring that fills: the feeder stops early while the
        // reader may be blocked sending; what fits is published, in order.
        total += explore("a full ring with --no-wait", || {
            let lines: Vec<String> = (0..12).map(|i| format!("{i:0>100}")).collect();
            let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
            // 4 sectors: one data sector of 512 bytes, four items of 104.
            let (ok, items) = feed(&lines, 200, 4, true);
            assert!(!ok);
            assert_eq!(items, bytes(&lines[..4]));
        });
        println!("produce model: {total} schedules explored in all");
    }
}

/// Group commit in the default mode: chunks already waiting share a
/// publication; a chunk with nothing behind it is published before the
/// feeder waits for more.
#[cfg(all(test, not(feature = "shuttle")))]
mod group_commit {
    use super::*;
    use shared_block_ring::layout::PRODUCER_SECTOR;
    use shared_block_ring::{create, Consumer, MemDevice};
    use std::io;
    use std::sync::atomic::AtomicUsize;

    /// Counts the writes of the producer sector: publications.
    #[derive(Clone)]
    struct Pointers {
        disk: MemDevice,
        written: Arc<AtomicUsize>,
    }

    impl BlockDevice for Pointers {
        fn sector_size(&self) -> usize {
            self.disk.sector_size()
        }
        fn sectors(&self) -> u64 {
            self.disk.sectors()
        }
        fn read(&self, sector: u64, buf: &mut [u8]) -> io::Result<()> {
            self.disk.read(sector, buf)
        }
        fn write(&self, sector: u64, buf: &[u8]) -> io::Result<()> {
            if sector == PRODUCER_SECTOR {
                self.written.fetch_add(1, Ordering::Relaxed);
            }
            self.disk.write(sector, buf)
        }
        fn flush(&self) -> io::Result<()> {
            self.disk.flush()
        }
    }

    /// A ring of 1 MiB (so at most 128 KiB of ring space per
    /// publication) behind a counting device.
    fn ring() -> (MemDevice, Pointers) {
        let disk = MemDevice::new(512, 2048);
        create(&disk).unwrap();
        let counted = Pointers {
            disk: disk.clone(),
            written: Arc::default(),
        };
        (disk, counted)
    }

    /// A chunk of `n` items of `len` bytes (at least 4), numbered from
    /// `first`.
    fn chunk_of(first: u32, n: u32, len: usize) -> Chunk {
        let mut c = Chunk::default();
        for i in first..first + n {
            if len >= 4 {
                c.bytes.extend_from_slice(&i.to_le_bytes());
                c.bytes.resize(c.bytes.len() + len - 4, i as u8);
            }
            c.ends.push(c.bytes.len());
        }
        c
    }

    /// A chunk of `n` items of 1000 bytes, numbered from `first`.
    fn chunk(first: u32, n: u32) -> Chunk {
        chunk_of(first, n, 1000)
    }

    fn items(disk: MemDevice) -> Vec<Vec<u8>> {
        let mut c = Consumer::attach(disk, Options::new()).unwrap();
        let (_, items) = c
            .fold(c.position(), Vec::new(), |mut v, item| {
                v.push(item);
                v
            })
            .unwrap();
        items
    }

    fn numbers(disk: MemDevice) -> Vec<u32> {
        items(disk)
            .iter()
            .map(|item| u32::from_le_bytes([item[0], item[1], item[2], item[3]]))
            .collect()
    }

    /// Feeds `chunks`, all waiting before the feeder starts, to a fresh
    /// ring; returns the producer-sector writes and the disk.
    fn feed_waiting(chunks: Vec<Chunk>) -> (usize, MemDevice) {
        let (disk, counted) = ring();
        let written = Arc::clone(&counted.written);
        let producer = Producer::attach(counted, Options::new()).unwrap();
        let (tx, rx) = mpsc::sync_channel(chunks.len());
        let n: usize = chunks.iter().map(|c| c.ends.len()).sum();
        for c in chunks {
            tx.send(Input::Items(c)).unwrap();
        }
        drop(tx);
        let (recycle, _kept) = mpsc::channel();
        let mut feeder = Feeder::new("group".into(), producer, None, false);
        let before = written.load(Ordering::Relaxed);
        feeder.feed(rx, recycle).unwrap();
        feeder.publish().unwrap();
        assert_eq!(feeder.published, n as u64);
        (written.load(Ordering::Relaxed) - before, disk)
    }

    #[test]
    fn chunks_already_waiting_share_a_publication() {
        // Eight chunks of 64 items (64 KB of ring space each).
        let (publications, disk) = feed_waiting((0..8).map(|k| chunk(k * 64, 64)).collect());
        // Two chunks per group of at most 128 KiB: four publications, the
        // last pointer superseding the one still deferred (three writes).
        // One per chunk would write eight; one group of all, one.
        assert!(
            (3..=4).contains(&publications),
            "{publications} producer-sector writes for 8 waiting chunks"
        );
        assert_eq!(numbers(disk), (0..512).collect::<Vec<_>>());
    }

    #[test]
    fn a_group_is_bounded_by_ring_space_not_payload() {
        // Empty lines: no payload, four bytes of ring space each. Eight
        // chunks of 16000 take 500 KiB of the 1 MiB ring, two chunks per
        // group; counted by payload, they would make one group, published
        // only at the end (one pointer write).
        let (publications, disk) =
            feed_waiting((0..8).map(|k| chunk_of(k * 16000, 16000, 0)).collect());
        assert!(
            (3..=4).contains(&publications),
            "{publications} producer-sector writes for 500 KiB of empty lines"
        );
        let got = items(disk);
        assert_eq!(got.len(), 8 * 16000);
        assert!(got.iter().all(Vec::is_empty));
    }

    #[test]
    fn a_chunk_with_nothing_behind_it_is_published_before_the_feeder_waits() {
        let (disk, counted) = ring();
        let producer = Producer::attach(counted, Options::new()).unwrap();
        let (tx, rx) = mpsc::sync_channel(2);
        let (recycle, _kept) = mpsc::channel();
        let feeder = thread::spawn(move || {
            let mut feeder = Feeder::new("group".into(), producer, None, false);
            feeder.feed(rx, recycle).and_then(|()| feeder.publish())
        });
        tx.send(Input::Items(chunk(0, 3))).unwrap();
        // The input stays open: the items must still become visible.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if numbers(disk.clone()).len() == 3 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "3 items pushed with an open, quiet input were not published within 10 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        tx.send(Input::Items(chunk(3, 2))).unwrap();
        drop(tx);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !feeder.is_finished() {
            assert!(
                Instant::now() < deadline,
                "the feeder did not end within 10 s of the input"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(feeder.join().unwrap().is_ok());
        assert_eq!(numbers(disk), (0..5).collect::<Vec<_>>());
    }
}
