//! Where the time of format 2's durable publication goes (targets T9 and
//! T11 of `sbr bench`), on a ring file, against the device operations it
//! is made of, all measured in the same rounds so that a device whose speed
//! drifts from second to second is compared with itself.
//!
//! ```text
//! cargo run --release -p system-tests --example format2_profile [MILLIS] [ROUNDS]
//! ```
//!
//! Each round measures, for MILLIS ms each (default 300), in turn: a
//! 512-byte O_DIRECT write with `RWF_DSYNC` (the "single-flush rate" of
//! T9), a plain 512-byte O_DIRECT write, a flush (`fdatasync`) after a
//! plain write, format 2's unbatched push+advance of 100-byte items, and
//! format 1's, and the journal on each format with 4 threads pushing
//! 100-byte operations (no-op perform). Every device call of the two
//! publications is timed. ROUNDS
//! (default 7) rounds; the medians are printed, with what a publication
//! costs in device time, and the rate each operation mix allows. A
//! measurement, not a test.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shared_block_ring::device::BlockDevice;
use shared_block_ring::{
    create_with, AlignedBuf, FileDevice, Journal, JournalOptions, Options, Producer, RingFormat,
};
use system_tests::ring_file;

/// Counts and times every call.
#[derive(Default)]
struct Times {
    writes: AtomicU64,
    write_ns: AtomicU64,
    flushes: AtomicU64,
    flush_ns: AtomicU64,
    durable: AtomicU64,
    durable_ns: AtomicU64,
}

struct Timed {
    inner: FileDevice,
    t: Arc<Times>,
}

fn add(n: &AtomicU64, ns: &AtomicU64, since: Instant) {
    n.fetch_add(1, Ordering::Relaxed);
    ns.fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
}

impl BlockDevice for Timed {
    fn sector_size(&self) -> usize {
        self.inner.sector_size()
    }
    fn sectors(&self) -> u64 {
        self.inner.sectors()
    }
    fn read(&self, sector: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read(sector, buf)
    }
    fn write(&self, sector: u64, buf: &[u8]) -> io::Result<()> {
        let s = Instant::now();
        let r = self.inner.write(sector, buf);
        add(&self.t.writes, &self.t.write_ns, s);
        r
    }
    fn write_durable(&self, sector: u64, buf: &[u8]) -> io::Result<()> {
        let s = Instant::now();
        let r = self.inner.write_durable(sector, buf);
        add(&self.t.durable, &self.t.durable_ns, s);
        r
    }
    fn flush(&self) -> io::Result<()> {
        let s = Instant::now();
        let r = self.inner.flush();
        add(&self.t.flushes, &self.t.flush_ns, s);
        r
    }
}

/// Operations per second of `op` over `budget`.
fn rate(budget: Duration, mut op: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while n == 0 || start.elapsed() < budget {
        op();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// push+advance of 100-byte items on a fresh ring of `format` for
/// `budget`: items/s, and the mean device time per publication of each
/// kind of call (writes, flushes, durable writes), in microseconds, with
/// their counts per publication.
fn publish(path: &std::path::Path, format: RingFormat, budget: Duration) -> (f64, [f64; 6]) {
    let t = Arc::new(Times::default());
    let mut p = fresh(path, format, t.clone());
    let before = [
        t.writes.load(Ordering::Relaxed),
        t.write_ns.load(Ordering::Relaxed),
        t.flushes.load(Ordering::Relaxed),
        t.flush_ns.load(Ordering::Relaxed),
        t.durable.load(Ordering::Relaxed),
        t.durable_ns.load(Ordering::Relaxed),
    ];
    let item = [7u8; 100];
    let mut n = 0u64;
    let r = rate(budget, || {
        if p.free_bytes() < 4096 {
            // Nobody consumes: start again at the front, untimed as far as
            // the device is concerned (a rare event in a large ring).
            p.advance(p.tail()).unwrap();
            drop(std::mem::replace(&mut p, fresh(path, format, t.clone())));
        }
        let end = p.push(&item).unwrap();
        p.advance(end).unwrap();
        n += 1;
    });
    let after = [
        t.writes.load(Ordering::Relaxed),
        t.write_ns.load(Ordering::Relaxed),
        t.flushes.load(Ordering::Relaxed),
        t.flush_ns.load(Ordering::Relaxed),
        t.durable.load(Ordering::Relaxed),
        t.durable_ns.load(Ordering::Relaxed),
    ];
    let d: Vec<f64> = after
        .iter()
        .zip(before)
        .map(|(a, b)| (a - b) as f64 / n as f64)
        .collect();
    // Per publication: count, then microseconds, for each kind.
    (r, [d[0], d[1] / 1e3, d[2], d[3] / 1e3, d[4], d[5] / 1e3])
}

/// The journal with 4 threads pushing 100-byte operations for `budget`
/// on a fresh ring of `format`: operations/s and operations per commit.
fn journal(path: &std::path::Path, format: RingFormat, budget: Duration) -> (f64, f64) {
    let dev = new_ring(path, format);
    let j = Journal::start(dev, JournalOptions::new(), |_: &[Vec<u8>]| {
        Ok::<(), String>(())
    })
    .unwrap();
    let start = Instant::now();
    let n: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0u64;
                    while start.elapsed() < budget {
                        j.push(&[5u8; 100]).unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let stats = j.stats();
    (rate, stats.pushed as f64 / stats.commits.max(1) as f64)
}

/// A new, empty ring of `format` on the file at `path`.
fn new_ring(path: &std::path::Path, format: RingFormat) -> FileDevice {
    let dev = FileDevice::open(path).unwrap();
    let blank = AlignedBuf::zeroed(512);
    dev.write_durable(0, &blank).unwrap();
    create_with(&dev, &Options::new().format(format)).unwrap();
    dev
}

/// A producer on a new ring of `format`, its calls timed into `t`.
fn fresh(path: &std::path::Path, format: RingFormat, t: Arc<Times>) -> Producer<Timed> {
    let inner = new_ring(path, format);
    Producer::attach(Timed { inner, t }, Options::new()).unwrap()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let millis: u64 = args.next().map_or(300, |s| s.parse().unwrap());
    let rounds: usize = args.next().map_or(7, |s| s.parse().unwrap());
    let budget = Duration::from_millis(millis);
    let ring = ring_file(64 << 20);
    let scratch = ring_file(1 << 20);
    let sdev = FileDevice::open(scratch.path()).unwrap();
    let buf = AlignedBuf::zeroed(512);
    let mut cols: Vec<Vec<f64>> = vec![Vec::new(); 9];
    let mut v2_costs: Vec<[f64; 6]> = Vec::new();
    let mut v1_costs: Vec<[f64; 6]> = Vec::new();
    for round in 0..rounds {
        let mut k = 0u64;
        cols[0].push(rate(budget, || {
            k = (k + 1) % 1024;
            sdev.write_durable(k, &buf).unwrap()
        }));
        cols[1].push(rate(budget, || {
            k = (k + 1) % 1024;
            sdev.write(k, &buf).unwrap()
        }));
        cols[2].push(rate(budget, || {
            k = (k + 1) % 1024;
            sdev.write(k, &buf).unwrap();
            sdev.flush().unwrap()
        }));
        let (r2, c2) = publish(ring.path(), RingFormat::V2, budget);
        let (r1, c1) = publish(ring.path(), RingFormat::V1, budget);
        cols[3].push(r2);
        cols[4].push(r1);
        let (j2, per2) = journal(ring.path(), RingFormat::V2, budget);
        let (j1, per1) = journal(ring.path(), RingFormat::V1, budget);
        cols[5].push(j2);
        cols[6].push(per2);
        cols[7].push(j1);
        cols[8].push(per1);
        v2_costs.push(c2);
        v1_costs.push(c1);
        eprintln!(
            "round {round}: dsync {:.0}/s, write {:.0}/s, write+flush {:.0}/s, format 2 {r2:.0}/s, format 1 {r1:.0}/s, journal 2 {j2:.0}/s, journal 1 {j1:.0}/s",
            cols[0][round], cols[1][round], cols[2][round]
        );
    }
    let m: Vec<f64> = cols.iter_mut().map(|c| median(c)).collect();
    let cost = |v: &[[f64; 6]], i: usize| {
        let mut x: Vec<f64> = v.iter().map(|c| c[i]).collect();
        median(&mut x)
    };
    println!("medians of {rounds} rounds of {millis} ms each:");
    println!(
        "  512 B O_DSYNC write (the single-flush rate): {:.0}/s ({:.0} us)",
        m[0],
        1e6 / m[0]
    );
    println!(
        "  512 B plain O_DIRECT write:                  {:.0}/s ({:.0} us)",
        m[1],
        1e6 / m[1]
    );
    println!(
        "  512 B write + fdatasync:                     {:.0}/s ({:.0} us)",
        m[2],
        1e6 / m[2]
    );
    for (name, r, costs) in [("format 2", m[3], &v2_costs), ("format 1", m[4], &v1_costs)] {
        println!(
            "  {name} push+advance: {r:.0} items/s = {:.2} x the single-flush rate; per publication: \
             {:.2} writes ({:.0} us), {:.2} flushes ({:.0} us), {:.2} durable writes ({:.0} us)",
            r / m[0],
            cost(costs, 0),
            cost(costs, 1),
            cost(costs, 2),
            cost(costs, 3),
            cost(costs, 4),
            cost(costs, 5),
        );
    }
    for (name, r, per) in [("format 2", m[5], m[6]), ("format 1", m[7], m[8])] {
        println!(
            "  {name} journal, 4 threads: {r:.0} operations/s = {:.2} x the single-flush rate, {per:.2} operations per commit",
            r / m[0]
        );
    }
    let w = 1.0 / m[1];
    let f = 1.0 / m[2] - w;
    println!(
        "  from the operations: a flush alone ~{:.0} us; two writes and a flush (format 2) allow {:.0}/s = {:.2} x the single-flush rate",
        f * 1e6,
        1.0 / (2.0 * w + f),
        1.0 / (2.0 * w + f) / m[0]
    );
    println!(
        "  with 4 operations per commit, the journal on format 2 allows at most {:.0}/s = {:.2} x the single-flush rate",
        4.0 / (2.0 * w + f),
        4.0 / (2.0 * w + f) / m[0]
    );
}
