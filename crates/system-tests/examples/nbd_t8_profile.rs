//! Where the time of the T8 scenario goes: the batched producer and
//! consumer of `sbr bench` (batches of 256 items of 100 bytes, published
//! with `advance`, drained by a consumer thread with `for_each_bytes`), on
//! a local file and through qemu-nbd, with every device call of each side
//! counted and timed.
//!
//! ```text
//! cargo run --release -p system-tests --example nbd_t8_profile [SECONDS] [ROUNDS]
//! ```
//!
//! Each round runs the scenario for SECONDS (default 1) on the local file,
//! then through qemu-nbd (`--cache=none`, a Unix socket, as `sbr bench`
//! starts it; `QEMU_NBD_ARGS` adds options), in both durability modes; ROUNDS (default 3) rounds
//! alternate the devices so both see the same machine load. It prints the
//! median items/s and NBD / local for each mode, and for the last round
//! the device calls per published batch of each side, their mean time,
//! and the share of the side's wall time spent in them. A measurement,
//! not a test: nothing is asserted about the figures.
//!
//! A third column, "nbd+transfer", emulates a producer and a consumer that
//! use [`BlockDevice::transfer`] to overlap round trips the ring's ordering
//! rules allow to overlap, in the process-crash mode: the producer's
//! pointer to batch N is written together with batch N+1's items (the
//! pointer's own items were acknowledged before), and the consumer's state
//! write goes together with its next read. The emulation defers those
//! state writes in a device wrapper; in the library it would be a change
//! of the producer and the consumer (see the NBD part of issue 12's
//! report). The pointer of the last batch is written when the producer
//! is done.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shared_block_ring::device::{self, BlockDevice};
use shared_block_ring::{
    create, layout, Consumer, Durability, Error, FileOptions, Options, Producer, RetryReason, Side,
};
use system_tests::nbd::{NbdServer, Transport};
use system_tests::ring_file;

const ITEM_LEN: usize = 100;
const BATCH: usize = 256;
const RING_BYTES: usize = 32 << 20;

fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: f64 = args
        .next()
        .map(|s| s.parse().expect("SECONDS must be a number"))
        .unwrap_or(1.0);
    let rounds: usize = args
        .next()
        .map(|s| s.parse().expect("ROUNDS must be a number"))
        .unwrap_or(3);
    let budget = Duration::from_secs_f64(seconds);
    let file = ring_file(RING_BYTES);
    let image = ring_file(RING_BYTES);
    // QEMU_NBD_ARGS adds options, such as --aio=io_uring, to compare.
    let extra = std::env::var("QEMU_NBD_ARGS").unwrap_or_default();
    let mut qemu_args = vec!["--cache=none"];
    qemu_args.extend(extra.split_whitespace());
    let server = NbdServer::qemu_nbd(image.path(), "t8", Transport::Unix, &qemu_args);
    println!("qemu-nbd {}", qemu_args.join(" "));
    let local = file.path().to_str().expect("UTF-8 path").to_string();
    let uri = server.uri();
    let specs = [
        ("local file", local.as_str(), false),
        ("qemu-nbd", uri.as_str(), false),
        ("nbd+transfer", uri.as_str(), true),
    ];
    for durability in [Durability::PowerLoss, Durability::ProcessCrash] {
        let mut rates = [Vec::new(), Vec::new(), Vec::new()];
        let mut last = Vec::new();
        for _ in 0..rounds {
            last.clear();
            for ((name, spec, overlap), rates) in specs.iter().zip(rates.iter_mut()) {
                if *overlap && durability == Durability::PowerLoss {
                    continue;
                }
                let run = run(spec, durability, budget, *overlap);
                rates.push(run.items as f64 / run.elapsed.as_secs_f64());
                last.push((*name, run));
            }
        }
        let [l, n, t] = rates.map(median);
        print!(
            "\n{durability}: local {l:.0} items/s, qemu-nbd {n:.0} items/s: NBD / local {:.2}",
            n / l
        );
        if t.is_finite() {
            print!("; nbd+transfer {t:.0} items/s: {:.2}", t / l);
        }
        println!(" (medians of {rounds})");
        for (name, run) in &last {
            run.print(name);
        }
    }
}

/// What one run measured.
struct Run {
    items: u64,
    elapsed: Duration,
    producer: Arc<Counts>,
    consumer: Arc<Counts>,
}

impl Run {
    fn print(&self, device: &str) {
        let batches = (self.items / BATCH as u64).max(1) as f64;
        let wall = self.elapsed.as_secs_f64() * 1e6;
        for (side, counts) in [("producer", &self.producer), ("consumer", &self.consumer)] {
            let c = counts.ops.lock().unwrap_or_else(|p| p.into_inner());
            let mut line = format!("  {device:<10} {side:<8}");
            let mut busy = 0.0;
            for (op, (n, us)) in OPS.iter().zip(c.iter()) {
                if *n > 0 {
                    line += &format!(
                        "  {op} {:.2}/batch {:.0}us",
                        *n as f64 / batches,
                        us / *n as f64
                    );
                    busy += us;
                }
            }
            println!("{line}  (in device calls {:.0}%)", 100.0 * busy / wall);
        }
    }
}

const OPS: [&str; 6] = [
    "read",
    "write",
    "write_durable",
    "flush",
    "wait",
    "transfer",
];

/// Calls and microseconds per kind of device call.
#[derive(Default)]
struct Counts {
    ops: Mutex<[(u64, f64); 6]>,
}

impl Counts {
    fn time<R>(&self, op: usize, f: impl FnOnce() -> R) -> R {
        let started = Instant::now();
        let r = f();
        let us = started.elapsed().as_secs_f64() * 1e6;
        let mut ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        ops[op].0 += 1;
        ops[op].1 += us;
        r
    }
}

/// A device whose calls are counted and timed.
struct Counted {
    inner: Box<dyn BlockDevice>,
    counts: Arc<Counts>,
}

impl BlockDevice for Counted {
    fn sector_size(&self) -> usize {
        self.inner.sector_size()
    }
    fn sectors(&self) -> u64 {
        self.inner.sectors()
    }
    fn read(&self, sector: u64, buf: &mut [u8]) -> io::Result<()> {
        self.counts.time(0, || self.inner.read(sector, buf))
    }
    fn write(&self, sector: u64, buf: &[u8]) -> io::Result<()> {
        self.counts.time(1, || self.inner.write(sector, buf))
    }
    fn write_durable(&self, sector: u64, buf: &[u8]) -> io::Result<()> {
        self.counts
            .time(2, || self.inner.write_durable(sector, buf))
    }
    fn flush(&self) -> io::Result<()> {
        self.counts.time(3, || self.inner.flush())
    }
    fn transfer(&self, writes: &[(u64, &[u8])], reads: &mut [(u64, &mut [u8])]) -> io::Result<()> {
        self.counts.time(5, || self.inner.transfer(writes, reads))
    }
    fn wait_for_change(&self, timeout: Duration) -> bool {
        self.counts.time(4, || self.inner.wait_for_change(timeout))
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

/// A device that defers writes of its side's state sector and sends a
/// deferred one with the next write or read, in one
/// [`transfer`](BlockDevice::transfer): one round trip instead of two.
/// This emulates the proposed use of `transfer` by the producer (its
/// pointer with the next batch's items) and the consumer (its state with
/// its next read). The state sector never goes with a write it must
/// follow: the items a producer pointer publishes were written, and
/// acknowledged, before the pointer was written here.
struct Overlapping {
    inner: Counted,
    state_sector: Option<u64>,
    deferred: Mutex<Option<Vec<u8>>>,
}

impl Overlapping {
    fn new(inner: Counted, state_sector: Option<u64>) -> Overlapping {
        Overlapping {
            inner,
            state_sector,
            deferred: Mutex::new(None),
        }
    }

    fn take(&self) -> Option<Vec<u8>> {
        self.deferred
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Writes a deferred state sector now.
    fn write_deferred(&self) -> io::Result<()> {
        match (self.take(), self.state_sector) {
            (Some(state), Some(sector)) => self.inner.write(sector, &state),
            _ => Ok(()),
        }
    }
}

impl BlockDevice for Overlapping {
    fn sector_size(&self) -> usize {
        self.inner.sector_size()
    }
    fn sectors(&self) -> u64 {
        self.inner.sectors()
    }
    fn read(&self, sector: u64, buf: &mut [u8]) -> io::Result<()> {
        match (self.take(), self.state_sector) {
            (Some(state), Some(s)) => self.inner.transfer(&[(s, &state)], &mut [(sector, buf)]),
            _ => self.inner.read(sector, buf),
        }
    }
    fn write(&self, sector: u64, buf: &[u8]) -> io::Result<()> {
        if Some(sector) == self.state_sector {
            self.write_deferred()?;
            *self.deferred.lock().unwrap_or_else(|p| p.into_inner()) = Some(buf.to_vec());
            return Ok(());
        }
        match (self.take(), self.state_sector) {
            (Some(state), Some(s)) => self.inner.transfer(&[(sector, buf), (s, &state)], &mut []),
            _ => self.inner.write(sector, buf),
        }
    }
    fn write_durable(&self, sector: u64, buf: &[u8]) -> io::Result<()> {
        self.write_deferred()?;
        self.inner.write_durable(sector, buf)
    }
    fn flush(&self) -> io::Result<()> {
        self.write_deferred()?;
        self.inner.flush()
    }
    fn wait_for_change(&self, timeout: Duration) -> bool {
        self.inner.wait_for_change(timeout)
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

fn open(spec: &str) -> (Counted, Arc<Counts>) {
    let inner = device::open(spec, &FileOptions::new()).unwrap_or_else(|e| panic!("{spec}: {e}"));
    let counts = Arc::new(Counts::default());
    (
        Counted {
            inner,
            counts: counts.clone(),
        },
        counts,
    )
}

/// The T8 scenario, as `sbr bench` runs it, for `budget`; with `overlap`,
/// through [`Overlapping`] devices.
fn run(spec: &str, durability: Durability, budget: Duration, overlap: bool) -> Run {
    // A fresh ring each time: wipe the signature so `create` starts over.
    let (d, _) = open(spec);
    d.write_durable(0, &vec![0u8; d.sector_size()]).unwrap();
    create(&d).unwrap();
    drop(d);
    let options = Options::new().durability(durability);
    let (pd, producer) = open(spec);
    let (cd, consumer) = open(spec);
    let pd = Arc::new(Overlapping::new(
        pd,
        overlap.then_some(layout::PRODUCER_SECTOR),
    ));
    let cd = Overlapping::new(cd, overlap.then_some(layout::CONSUMER_SECTOR));
    let mut p = Producer::attach(pd.clone(), options.clone()).unwrap();
    let mut c = Consumer::attach(cd, options).unwrap();
    let data = [7u8; ITEM_LEN];
    let sent = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let start = Instant::now();
    let items = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut got = 0u64;
            loop {
                if done.load(Ordering::Acquire) && got >= sent.load(Ordering::Acquire) {
                    return got;
                }
                match c.wait_for_item(c.position(), Some(Duration::from_millis(20))) {
                    Ok(()) => {}
                    Err(Error::Retry(RetryReason::Empty)) => continue,
                    Err(e) => panic!("wait: {e}"),
                }
                let end = c
                    .for_each_bytes(c.position(), |_, _, _| {
                        got += 1;
                        Ok(())
                    })
                    .unwrap();
                c.advance(end).unwrap();
            }
        });
        let mut n = 0u64;
        while n == 0 || start.elapsed() < budget {
            let end = loop {
                match p.push_many(std::iter::repeat_n(&data[..], BATCH)) {
                    Ok(end) => break end,
                    Err(e) if e.is_retry() => std::thread::sleep(Duration::from_micros(50)),
                    Err(e) => panic!("push: {e}"),
                }
            };
            p.advance(end).unwrap();
            n += BATCH as u64;
            sent.store(n, Ordering::Release);
        }
        pd.write_deferred().unwrap();
        done.store(true, Ordering::Release);
        let got = reader.join().expect("the consumer thread panicked");
        assert_eq!(got, n, "{spec}: consumed {got} of {n} items");
        n
    });
    Run {
        items,
        elapsed: start.elapsed(),
        producer,
        consumer,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}
