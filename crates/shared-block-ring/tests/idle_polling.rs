//! How often a waiter polls when nothing happens: on a device that wakes it
//! on this host's writes (a local file), only for other hosts' writes, and
//! so rarely (`Options::max_backoff_notified`); elsewhere every
//! `max_backoff`. And a write that the device does not notify is still
//! found by those polls.

mod common;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shared_block_ring::{
    create, BlockDevice, Consumer, Error, FileDevice, MemDevice, Options, Producer, RetryReason,
    Side,
};

/// The sleeps a fresh backoff of `producer` asks for, without sleeping.
fn sleeps<D: BlockDevice>(producer: &Producer<D>, n: usize) -> Vec<Duration> {
    let mut b = producer.backoff(None);
    // Past the 2 ms phase of frequent polls of a device that does not
    // notify (its length is real time, and these calls do not sleep).
    std::thread::sleep(Duration::from_millis(3));
    let mut seen = Vec::new();
    for _ in 0..n {
        b.wait_with(|d| {
            seen.push(d);
            false
        });
    }
    seen
}

fn cap<D: BlockDevice>(disk: D, options: Options) -> Duration {
    let producer = Producer::attach(disk, options).unwrap();
    let s = sleeps(&producer, 40);
    let last = *s.last().unwrap();
    // The sleeps grow to the cap and stay there.
    assert!(s.windows(2).all(|w| w[0] <= w[1]), "{s:?}");
    assert_eq!(s[s.len() - 5..], [last; 5], "{s:?}");
    last
}

#[test]
fn the_cap_is_max_backoff_notified_only_where_the_device_notifies() {
    let f = common::ring_file(64 << 10);
    let file = || FileDevice::open(f.path()).unwrap();
    create(&file()).unwrap();
    assert!(file().notifies_changes());
    let ms = Duration::from_millis;
    assert_eq!(cap(file(), Options::new()), ms(20));
    assert_eq!(
        cap(file(), Options::new().max_backoff_notified(ms(50))),
        ms(50)
    );
    // The larger of the two applies; zero restores max_backoff everywhere.
    assert_eq!(cap(file(), Options::new().max_backoff(ms(30))), ms(30));
    assert_eq!(
        cap(file(), Options::new().max_backoff_notified(ms(0))),
        ms(4)
    );

    let mem = MemDevice::new(512, 64);
    create(&mem).unwrap();
    assert!(!mem.notifies_changes());
    assert_eq!(cap(mem.clone(), Options::new()), ms(4));
    assert_eq!(cap(mem, Options::new().max_backoff_notified(ms(50))), ms(4));
}

/// Counts the reads of the device it wraps, and forwards the change
/// notifications (or, with `notify: false`, claims them but only sleeps:
/// a writer on another host).
#[derive(Clone)]
struct Watched<D> {
    inner: D,
    reads: Arc<AtomicU64>,
    notify: bool,
}

impl<D: BlockDevice> Watched<D> {
    fn new(inner: D, notify: bool) -> Self {
        Watched {
            inner,
            reads: Arc::new(AtomicU64::new(0)),
            notify,
        }
    }
}

impl<D: BlockDevice> BlockDevice for Watched<D> {
    fn sector_size(&self) -> usize {
        self.inner.sector_size()
    }
    fn sectors(&self) -> u64 {
        self.inner.sectors()
    }
    fn read(&self, sector: u64, buf: &mut [u8]) -> io::Result<()> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.read(sector, buf)
    }
    fn write(&self, sector: u64, buf: &[u8]) -> io::Result<()> {
        self.inner.write(sector, buf)
    }
    fn flush(&self) -> io::Result<()> {
        self.inner.flush()
    }
    fn try_lock(&self, side: Side) -> io::Result<Result<(), String>> {
        self.inner.try_lock(side)
    }
    fn unlock(&self, side: Side) {
        self.inner.unlock(side)
    }
    fn notifies_changes(&self) -> bool {
        true
    }
    fn wait_for_change(&self, timeout: Duration) -> bool {
        if self.notify {
            self.inner.wait_for_change(timeout)
        } else {
            std::thread::sleep(timeout);
            false
        }
    }
}

#[test]
fn an_idle_consumer_on_a_local_file_polls_at_most_every_20_ms() {
    let f = common::ring_file(64 << 10);
    let file = FileDevice::open(f.path()).unwrap();
    create(&file).unwrap();
    let disk = Watched::new(file, true);
    let reads = disk.reads.clone();
    let mut consumer = Consumer::attach(disk, Options::new()).unwrap();
    let before = reads.load(Ordering::Relaxed);
    let start = Instant::now();
    let e = consumer.pop_wait(Some(Duration::from_secs(2))).unwrap_err();
    let waited = start.elapsed();
    assert!(matches!(e, Error::Retry(RetryReason::Empty)), "{e}");
    let polls = reads.load(Ordering::Relaxed) - before;
    // The first wait sets the inotify watch up and asks for a fresh look,
    // which starts a 2 ms phase of polls every 50 us (at most 40); then
    // sleeps of 50 us doubling to 20 ms (about 10 polls in the first
    // 40 ms), then one poll per 20 ms: about 150 in two seconds (a loaded
    // machine only sleeps longer). Every 4 ms would be about 550.
    let most = 52 + waited.as_millis() as u64 / 20;
    assert!(
        (2..=most).contains(&polls),
        "{polls} polls in {waited:?}, at most {most} expected"
    );
}

#[test]
fn a_write_the_device_does_not_notify_is_found_by_polling() {
    let mem = MemDevice::new(512, 64);
    create(&mem).unwrap();
    let disk = Watched::new(mem.clone(), false);
    let mut consumer = Consumer::attach(disk, Options::new()).unwrap();
    let writer = std::thread::spawn(move || {
        // Long enough for the consumer's sleeps to reach their cap.
        std::thread::sleep(Duration::from_millis(300));
        let mut p = Producer::attach(mem, Options::new()).unwrap();
        let end = p.push(b"from another host").unwrap();
        p.advance(end).unwrap();
        Instant::now()
    });
    let (next, item) = consumer.pop_wait(Some(Duration::from_secs(30))).unwrap();
    let found = Instant::now();
    assert_eq!(item, b"from another host");
    consumer.advance(next).unwrap();
    let published = common::join_within(writer, Duration::from_secs(30), "the writer thread");
    // Found by a poll within one capped sleep of the publication (20 ms),
    // with generous room for a loaded machine.
    let late = found.saturating_duration_since(published);
    assert!(late < Duration::from_secs(5), "found {late:?} late");
}
