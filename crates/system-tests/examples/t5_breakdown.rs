//! Where the time of T5 goes: the push-to-pop latency of one 100-byte item
//! on an idle ring (power-loss mode, format 1), cut into its steps, on
//! both I/O paths.
//!
//! ```text
//! cargo run --release -p system-tests --example t5_breakdown [ITEMS] [ROUNDS]
//! ```
//!
//! A producer thread pushes one item 20-30 ms after the consumer thread's
//! previous pop (so the consumer is idle, asleep on its change
//! notification), and the consumer waits in `pop_wait`. Each side has its
//! own `FileDevice` handle, wrapped in a device that stamps every call
//! with CLOCK_MONOTONIC (the stamps are taken in the wrapper, outside the
//! library). ROUNDS (default 4) rounds of ITEMS (default 200) items
//! alternate the sync and io_uring paths, so that both meet the same
//! drift of the disk; after each round the floor (two 512-byte durable
//! writes and a 512-byte read, back to back as `sbr bench` times them, on
//! the same file and path) is timed, and the round's items are held to
//! it.
//!
//! For each item the steps are, from the push:
//! - `push (cpu)`: `push` + `advance` up to the data write, less
//! - `producer reads`: the producer's device reads in that time;
//! - `data write`, `flush`, `pointer write` (durable): the producer's three
//!   round trips;
//! - `wake`: from the end of the pointer write to the start of the
//!   consumer's read of the producer sector that sees it (the inotify
//!   wake-up, and any earlier read the consumer was still in);
//! - `re-read`: that read of the producer sector;
//! - `data read`: the consumer's reads of the item;
//! - `return`: from the end of the data read to `pop_wait`'s return.
//!
//! It also counts the consumer's reads of the producer sector before the
//! pointer write (wake-ups by the data write and the flush, which find
//! nothing new). It prints the medians per path, the median total, and
//! the floor (two durable writes + one read). A measurement, not a test.

use std::io;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shared_block_ring::device::{BlockDevice, ChainError, Io, Op};
use shared_block_ring::{
    create, AlignedBuf, Consumer, Durability, FileDevice, FileOptions, Options, Producer, Side,
};
use system_tests::ring_file;

const ITEM_LEN: usize = 100;
const RING_BYTES: usize = 16 << 20;

/// What a stamped call was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum What {
    Read,
    Write,
    WriteDurable,
    Flush,
    /// A `wait_for_change` that returned `true` (woken by a change).
    Woken,
    PushStart,
    PopReturn,
}

#[derive(Debug, Clone, Copy)]
struct Event {
    who: Side,
    what: What,
    sector: u64,
    /// Nanoseconds since the log's origin.
    start: u64,
    end: u64,
}

#[derive(Clone)]
struct Log {
    origin: Instant,
    events: Arc<Mutex<Vec<Event>>>,
}

impl Log {
    fn now(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    fn push(&self, e: Event) {
        self.events.lock().unwrap().push(e);
    }

    fn mark(&self, who: Side, what: What) {
        let t = self.now();
        self.push(Event {
            who,
            what,
            sector: 0,
            start: t,
            end: t,
        });
    }
}

/// A device whose every call is stamped into the log.
struct Stamped {
    inner: FileDevice,
    who: Side,
    log: Log,
}

impl Stamped {
    fn time<R>(&self, what: What, sector: u64, f: impl FnOnce() -> R) -> R {
        let start = self.log.now();
        let r = f();
        let end = self.log.now();
        self.log.push(Event {
            who: self.who,
            what,
            sector,
            start,
            end,
        });
        r
    }
}

impl BlockDevice for Stamped {
    fn sector_size(&self) -> usize {
        self.inner.sector_size()
    }
    fn sectors(&self) -> u64 {
        self.inner.sectors()
    }
    fn read(&self, sector: u64, buf: &mut [u8]) -> io::Result<()> {
        self.time(What::Read, sector, || self.inner.read(sector, buf))
    }
    fn write(&self, sector: u64, buf: &[u8]) -> io::Result<()> {
        self.time(What::Write, sector, || self.inner.write(sector, buf))
    }
    fn write_durable(&self, sector: u64, buf: &[u8]) -> io::Result<()> {
        self.time(What::WriteDurable, sector, || {
            self.inner.write_durable(sector, buf)
        })
    }
    fn flush(&self) -> io::Result<()> {
        self.time(What::Flush, 0, || self.inner.flush())
    }
    /// Stamped as a write (the producer's push: its data, and the read
    /// of the consumer sector in flight with it when due).
    fn transfer(&self, writes: &[(u64, &[u8])], reads: &mut [(u64, &mut [u8])]) -> io::Result<()> {
        let sector = writes.first().map_or(u64::MAX, |w| w.0);
        self.time(What::Write, sector, || self.inner.transfer(writes, reads))
    }
    fn transfers_together(&self) -> bool {
        self.inner.transfers_together()
    }
    fn chain(&self, ops: &mut [Op<'_>]) -> Result<(), ChainError> {
        // Not used by format 1's producer and consumer today; stamped as
        // one call should they start using it.
        self.time(What::Write, u64::MAX, || self.inner.chain(ops))
    }
    fn wait_for_change(&self, timeout: Duration) -> bool {
        let woken = self.inner.wait_for_change(timeout);
        if woken {
            self.log.mark(self.who, What::Woken);
        }
        woken
    }
    fn notifies_changes(&self) -> bool {
        self.inner.notifies_changes()
    }
    fn try_lock(&self, side: Side) -> io::Result<Result<(), String>> {
        self.inner.try_lock(side)
    }
    fn unlock(&self, side: Side) {
        self.inner.unlock(side)
    }
}

/// One item's steps, in microseconds.
#[derive(Debug, Default, Clone, Copy)]
struct Steps {
    push: f64,
    producer_reads: f64,
    data_write: f64,
    flush: f64,
    pointer_write: f64,
    wake: f64,
    reread: f64,
    data_read: f64,
    ret: f64,
    total: f64,
    early_reads: f64,
    floor: f64,
}

const STEP_NAMES: [&str; 12] = [
    "push (cpu)",
    "producer reads",
    "data write",
    "flush",
    "pointer write",
    "wake",
    "re-read",
    "data read",
    "return",
    "total",
    "early reads",
    "floor",
];

impl Steps {
    fn values(&self) -> [f64; 12] {
        [
            self.push,
            self.producer_reads,
            self.data_write,
            self.flush,
            self.pointer_write,
            self.wake,
            self.reread,
            self.data_read,
            self.ret,
            self.total,
            self.early_reads,
            self.floor,
        ]
    }
}

/// Cuts the events of one item (from its push to its pop) into steps.
fn steps(events: &[Event]) -> Option<Steps> {
    let us = |ns: u64| ns as f64 / 1e3;
    let push = events.iter().find(|e| e.what == What::PushStart)?;
    let pop = events.iter().find(|e| e.what == What::PopReturn)?;
    let producer = |what: What, pointer: bool| {
        events.iter().find(|e| {
            e.who == Side::Producer
                && e.what == what
                && (e.sector == Side::Producer.sector()) == pointer
                && e.start >= push.start
        })
    };
    let data_write = producer(What::Write, false)?;
    let flush = producer(What::Flush, false)?;
    let pointer = producer(What::WriteDurable, true)?;
    let consumer_reads: Vec<&Event> = events
        .iter()
        .filter(|e| e.who == Side::Consumer && e.what == What::Read && e.start >= push.start)
        .collect();
    let first_data = consumer_reads
        .iter()
        .position(|e| e.sector != Side::Producer.sector())?;
    // The read of the producer sector that saw the pointer: the last one
    // before the item's data was read.
    let seen = consumer_reads[..first_data]
        .iter()
        .rev()
        .find(|e| e.sector == Side::Producer.sector())?;
    let data_end = consumer_reads[first_data..]
        .iter()
        .filter(|e| e.sector != Side::Producer.sector())
        .map(|e| e.end)
        .max()?;
    let data_time: u64 = consumer_reads[first_data..]
        .iter()
        .filter(|e| e.sector != Side::Producer.sector())
        .map(|e| e.end - e.start)
        .sum();
    let producer_reads: u64 = events
        .iter()
        .filter(|e| {
            e.who == Side::Producer
                && e.what == What::Read
                && e.start >= push.start
                && e.end <= data_write.start
        })
        .map(|e| e.end - e.start)
        .sum();
    let early = consumer_reads[..first_data]
        .iter()
        .filter(|e| e.sector == Side::Producer.sector() && e.start < pointer.start)
        .count();
    Some(Steps {
        push: us(data_write.start - push.start - producer_reads),
        producer_reads: us(producer_reads),
        data_write: us(data_write.end - data_write.start),
        flush: us(flush.end - flush.start),
        pointer_write: us(pointer.end - pointer.start),
        wake: (seen.start as f64 - pointer.end as f64) / 1e3,
        reread: us(seen.end - seen.start),
        data_read: us(data_time),
        ret: us(pop.end.saturating_sub(data_end)),
        total: us(pop.end - push.start),
        early_reads: early as f64,
        floor: 0.0,
    })
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

/// One round of `items` items on the path `io`: the steps of each item,
/// each with the round's floor.
fn round(path: &std::path::Path, io: Io, items: usize) -> Vec<Steps> {
    let opts = FileOptions::new().io(io);
    let blank = FileDevice::open_with(path, &opts).unwrap();
    blank
        .write_durable(0, &AlignedBuf::zeroed(blank.sector_size()))
        .unwrap();
    create(&blank).unwrap();
    let log = Log {
        origin: Instant::now(),
        events: Arc::new(Mutex::new(Vec::new())),
    };
    let open = |who| Stamped {
        inner: FileDevice::open_with(path, &opts).unwrap(),
        who,
        log: log.clone(),
    };
    let options = Options::new().durability(Durability::PowerLoss);
    let mut producer = Producer::attach(open(Side::Producer), options.clone()).unwrap();
    let mut consumer = Consumer::attach(open(Side::Consumer), options).unwrap();
    let (popped_tx, popped_rx) = mpsc::channel::<()>();
    let clog = log.clone();
    let consumer_thread = std::thread::spawn(move || {
        for _ in 0..items {
            let (next, item) = consumer
                .pop_wait(Some(Duration::from_secs(30)))
                .expect("no item within 30 s");
            clog.mark(Side::Consumer, What::PopReturn);
            assert_eq!(item.len(), ITEM_LEN);
            consumer.advance(next).unwrap();
            if popped_tx.send(()).is_err() {
                break;
            }
        }
    });
    let data = vec![7u8; ITEM_LEN];
    let mut cuts = Vec::new();
    for i in 0..items {
        // Idle: the consumer has been asleep on its notification a while.
        std::thread::sleep(Duration::from_micros(20_000 + (i as u64 * 7919) % 10_000));
        let from = log.events.lock().unwrap().len();
        log.mark(Side::Producer, What::PushStart);
        let end = producer.push(&data).unwrap();
        producer.advance(end).unwrap();
        popped_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the consumer did not pop within 30 s");
        cuts.push(from);
    }
    consumer_thread.join().unwrap();
    let events = log.events.lock().unwrap().clone();
    let mut out = Vec::new();
    for (k, &from) in cuts.iter().enumerate() {
        let to = cuts.get(k + 1).copied().unwrap_or(events.len());
        if let Some(s) = steps(&events[from..to]) {
            out.push(s);
        }
    }
    // The floor as the bench measures it (back to back, on the same file
    // and path), right after the round.
    let d = FileDevice::open_with(path, &opts).unwrap();
    let last = d.sectors() - 1;
    let mut buf = AlignedBuf::zeroed(512);
    let mut floors = Vec::new();
    for _ in 0..100 {
        let t = Instant::now();
        d.write_durable(last, &buf).unwrap();
        d.write_durable(last, &buf).unwrap();
        d.read(last, &mut buf).unwrap();
        floors.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let floor = median(&mut floors);
    for s in &mut out {
        s.floor = floor;
    }
    out
}

fn main() {
    let mut args = std::env::args().skip(1);
    let items: usize = args.next().map_or(200, |s| s.parse().expect("ITEMS"));
    let rounds: usize = args.next().map_or(4, |s| s.parse().expect("ROUNDS"));
    let file = ring_file(RING_BYTES);
    let paths: Vec<Io> = if Io::Uring.effective().is_ok() {
        vec![Io::Sync, Io::Uring]
    } else {
        vec![Io::Sync]
    };
    let mut all: Vec<(Io, Vec<Steps>)> = paths.iter().map(|&io| (io, Vec::new())).collect();
    for r in 0..rounds {
        for (io, steps) in all.iter_mut() {
            let s = round(file.path(), *io, items);
            let mut totals: Vec<f64> = s.iter().map(|x| x.total).collect();
            let mut floors: Vec<f64> = s.iter().map(|x| x.floor).collect();
            eprintln!(
                "round {r} {}: {} items, p50 total {:.0} us, p50 floor {:.0} us",
                io.name(),
                s.len(),
                median(&mut totals),
                median(&mut floors)
            );
            steps.extend(s);
        }
    }
    println!(
        "T5 breakdown: power-loss, 100-byte items, idle consumer; medians in us over {rounds} rounds of {items} items"
    );
    print!("{:<16}", "step");
    for (io, _) in &all {
        print!(" {:>10}", io.name());
    }
    println!();
    for (k, name) in STEP_NAMES.iter().enumerate() {
        print!("{name:<16}");
        for (_, steps) in &all {
            let mut v: Vec<f64> = steps.iter().map(|s| s.values()[k]).collect();
            print!(" {:>10.1}", median(&mut v));
        }
        println!();
    }
    print!("{:<16}", "total / floor");
    for (_, steps) in &all {
        let mut v: Vec<f64> = steps.iter().map(|s| s.total / s.floor).collect();
        print!(" {:>10.2}", median(&mut v));
    }
    println!();
}
