//! Where the time of T3 goes: a streaming producer of 1 MiB items
//! (power-loss mode, format 1, `push_many` then `advance_pipelined` per
//! item, as `sbr produce` does) cut into its steps, against 1 MiB durable
//! writes on the same file, alternating.
//!
//! ```text
//! cargo run --release -p system-tests --example t3_breakdown [BATCHES] [ROUNDS] [sync|uring]
//! ```
//!
//! Each round runs BATCHES (default 100, at most 248) batches of one 1 MiB item, then as
//! many 1 MiB `write_durable` calls (what `sbr bench` calls the 1 MiB
//! O_DSYNC write) on the same file. The producer's device is wrapped in a
//! device that times each call (outside the library). Per batch it prints
//! the medians of: `push_many` (the copy into the staging buffer, CPU),
//! the transfer (this batch's data with the previous pointer), the flush,
//! other device calls, and the whole batch; then the median 1 MiB durable
//! write and the ratio of the two (what T3 measures). A measurement, not a
//! test.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shared_block_ring::device::{BlockDevice, ChainError, Io, Op};
use shared_block_ring::{
    create, AlignedBuf, Durability, FileDevice, FileOptions, Options, Producer, Side,
};
use system_tests::ring_file;

const ITEM_LEN: usize = 1 << 20;
const RING_BYTES: usize = 256 << 20;

/// Device time of the calls made since the last `take`, by kind.
#[derive(Debug, Default, Clone, Copy)]
struct Times {
    transfer: Duration,
    flush: Duration,
    other: Duration,
}

/// A file device that adds up how long each kind of call took.
struct Timed {
    inner: FileDevice,
    times: Arc<Mutex<Times>>,
}

impl Timed {
    fn time<R>(&self, pick: fn(&mut Times) -> &mut Duration, f: impl FnOnce() -> R) -> R {
        let start = Instant::now();
        let r = f();
        let took = start.elapsed();
        if let Ok(mut t) = self.times.lock() {
            *pick(&mut t) += took;
        }
        r
    }
}

impl BlockDevice for Timed {
    fn sector_size(&self) -> usize {
        self.inner.sector_size()
    }
    fn sectors(&self) -> u64 {
        self.inner.sectors()
    }
    fn read(&self, sector: u64, buf: &mut [u8]) -> io::Result<()> {
        self.time(|t| &mut t.other, || self.inner.read(sector, buf))
    }
    fn write(&self, sector: u64, buf: &[u8]) -> io::Result<()> {
        self.time(|t| &mut t.transfer, || self.inner.write(sector, buf))
    }
    fn write_durable(&self, sector: u64, buf: &[u8]) -> io::Result<()> {
        self.time(|t| &mut t.other, || self.inner.write_durable(sector, buf))
    }
    fn transfer(&self, writes: &[(u64, &[u8])], reads: &mut [(u64, &mut [u8])]) -> io::Result<()> {
        self.time(|t| &mut t.transfer, || self.inner.transfer(writes, reads))
    }
    fn chain(&self, ops: &mut [Op<'_>]) -> Result<(), ChainError> {
        self.time(|t| &mut t.other, || self.inner.chain(ops))
    }
    fn flush(&self) -> io::Result<()> {
        self.time(|t| &mut t.flush, || self.inner.flush())
    }
    fn try_lock(&self, side: Side) -> io::Result<Result<(), String>> {
        self.inner.try_lock(side)
    }
    fn unlock(&self, side: Side) {
        self.inner.unlock(side)
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// One round: `batches` streamed batches, then as many 1 MiB durable
/// writes. Returns the per-batch medians (push, transfer, flush, other,
/// batch) and the median durable write, in microseconds.
fn round(path: &std::path::Path, io: Io, batches: usize) -> ([f64; 5], f64, f64) {
    let opts = FileOptions::new().io(io);
    let blank = FileDevice::open_with(path, &opts).expect("open the ring file");
    blank
        .write_durable(0, &AlignedBuf::zeroed(blank.sector_size()))
        .expect("erase the ring's first sector");
    create(&blank).expect("create the ring");
    let times = Arc::new(Mutex::new(Times::default()));
    let device = Timed {
        inner: FileDevice::open_with(path, &opts).expect("open the ring file"),
        times: times.clone(),
    };
    let options = Options::new().durability(Durability::PowerLoss);
    let mut producer = Producer::attach(device, options).expect("attach the producer");
    let item = vec![0x5au8; ITEM_LEN];
    let mut steps: [Vec<f64>; 5] = Default::default();
    for _ in 0..batches {
        let start = Instant::now();
        let end = producer.push_many([&item[..]]).expect("push");
        let pushed = start.elapsed();
        producer.advance_pipelined(end).expect("advance");
        let batch = start.elapsed();
        let t = std::mem::take(&mut *times.lock().expect("the times lock"));
        for (v, d) in steps
            .iter_mut()
            .zip([pushed, t.transfer, t.flush, t.other, batch])
        {
            v.push(us(d));
        }
    }
    producer.sync().expect("sync");
    drop(producer);
    // The 1 MiB durable write, in the middle of the same file.
    let buf = AlignedBuf::zeroed(ITEM_LEN);
    let at = (RING_BYTES / 2 / blank.sector_size()) as u64;
    let mut dsync = Vec::new();
    for _ in 0..batches {
        let start = Instant::now();
        blank.write_durable(at, &buf).expect("durable write");
        dsync.push(us(start.elapsed()));
    }
    // The same, one after another over the area the ring just wrote.
    let mut seq = Vec::new();
    let per = (ITEM_LEN / blank.sector_size()) as u64;
    for i in 0..batches as u64 {
        let start = Instant::now();
        blank
            .write_durable(3 + i * per, &buf)
            .expect("durable write");
        seq.push(us(start.elapsed()));
    }
    (steps.map(median), median(dsync), median(seq))
}

fn main() {
    let mut args = std::env::args().skip(1);
    // Nobody consumes: the batches must fit the ring.
    let most = RING_BYTES / ITEM_LEN - 8;
    let batches: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(100)
        .min(most);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(4);
    let io = match args.next().as_deref() {
        Some("sync") => Io::Sync,
        Some("uring") => Io::Uring,
        _ => Io::Auto,
    };
    let file = ring_file(RING_BYTES);
    let path = file.path();
    println!(
        "{:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6} {:>9} {:>6}",
        "round",
        "push",
        "transfer",
        "flush",
        "other",
        "batch",
        "dsync 1M",
        "ratio",
        "seq 1M",
        "ratio"
    );
    for r in 0..rounds {
        let (s, dsync, seq) = round(path, io, batches);
        println!(
            "{:>6} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>6.2} {:>9.1} {:>6.2}",
            r,
            s[0],
            s[1],
            s[2],
            s[3],
            s[4],
            dsync,
            dsync / s[4],
            seq,
            seq / s[4]
        );
    }
}
