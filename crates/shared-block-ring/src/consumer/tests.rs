//! The consumer's read accounting: what it reads, and how often.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::*;
use crate::device::MemDevice;
use crate::producer::Producer;
use crate::ring::create;

/// Counts the data bytes read, the data reads and the reads of the
/// producer sector.
struct Reads {
    inner: MemDevice,
    bytes: Arc<AtomicU64>,
    reads: Arc<AtomicU64>,
    producer_reads: Arc<AtomicU64>,
}

impl BlockDevice for Reads {
    fn sector_size(&self) -> usize {
        self.inner.sector_size()
    }
    fn sectors(&self) -> u64 {
        self.inner.sectors()
    }
    fn read(&self, sector: u64, buf: &mut [u8]) -> io::Result<()> {
        if sector >= crate::layout::FIRST_DATA_SECTOR {
            self.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
            self.reads.fetch_add(1, Ordering::Relaxed);
        } else if sector == crate::layout::PRODUCER_SECTOR {
            self.producer_reads.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.read(sector, buf)
    }
    fn write(&self, sector: u64, buf: &[u8]) -> io::Result<()> {
        self.inner.write(sector, buf)
    }
    fn flush(&self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn item(n: u64) -> Vec<u8> {
    let len = 1000 + (n * 37 % 1100) as usize;
    (0..len).map(|i| (n as usize + i) as u8).collect()
}

#[test]
fn items_straddling_the_read_ahead_are_not_read_twice() {
    let disk = MemDevice::new(512, 64);
    create(&disk).unwrap();
    let bytes = Arc::new(AtomicU64::new(0));
    let reads = Arc::new(AtomicU64::new(0));
    let counted = Reads {
        inner: disk.clone(),
        bytes: bytes.clone(),
        reads: reads.clone(),
        producer_reads: Arc::default(),
    };
    let options = Options::new().durability(Durability::ProcessCrash);
    let mut p = Producer::attach(disk, options.clone()).unwrap();
    let mut c = Consumer::attach(counted, options.read_ahead(4096)).unwrap();
    let (mut pushed, mut popped, mut consumed) = (0u64, 0u64, 0u64);
    // Several times round the ring (capacity 30.5 KiB), so that reads
    // also meet the wrap.
    for _ in 0..12 {
        let before = pushed;
        while pushed < before + 12 {
            p.push(&item(pushed)).unwrap();
            pushed += 1;
        }
        p.advance(p.tail()).unwrap();
        let start = c.position();
        let end = c
            .for_each_bytes(start, |_, _, got| {
                assert_eq!(got, item(popped), "item {popped}");
                popped += 1;
                Ok(())
            })
            .unwrap();
        consumed += end.offset() - start.offset();
        c.advance(end).unwrap();
    }
    assert_eq!(popped, pushed);
    // A read repeats at most the sector it starts in (shared with what
    // was read before), and each drain may end in a partly published
    // sector. Reading a straddling item again from its start cost
    // about 1 KiB more per read here (302080 bytes instead of 255488).
    let n = reads.load(Ordering::Relaxed);
    let read = bytes.load(Ordering::Relaxed);
    assert!(
        read <= consumed + n * 512 + 12 * 512,
        "{read} bytes in {n} reads for {consumed} bytes of items"
    );
}

#[test]
fn a_waiting_drain_reads_the_producer_sector_only_when_it_knows_of_nothing() {
    let disk = MemDevice::new(512, 64);
    create(&disk).unwrap();
    let reads = Arc::new(AtomicU64::new(0));
    let producer_reads = Arc::new(AtomicU64::new(0));
    let counted = Reads {
        inner: disk.clone(),
        bytes: Arc::default(),
        reads: reads.clone(),
        producer_reads: producer_reads.clone(),
    };
    let options = Options::new().durability(Durability::ProcessCrash);
    let mut p = Producer::attach(disk, options.clone()).unwrap();
    let mut c = Consumer::attach(counted, options).unwrap();
    let counts = || {
        (
            producer_reads.load(Ordering::Relaxed),
            reads.load(Ordering::Relaxed),
        )
    };
    let timeout = Some(Duration::from_secs(5));
    let mut got = Vec::new();
    let mut drain = |c: &mut Consumer<Reads>| {
        c.for_each_bytes_wait(c.position(), timeout, |_, _, b| {
            got.push(b[0]);
            Ok(())
        })
        .unwrap()
    };

    let a = p.push_many([&[1u8][..], &[2]]).unwrap();
    p.advance(a).unwrap();
    let before = counts();
    let end = drain(&mut c);
    // It knew of nothing: one look at the producer sector, one read of
    // the data.
    assert_eq!((counts().0 - before.0, counts().1 - before.1), (1, 1));
    assert_eq!(end, a);

    // Published before the release that catches up, which sees it.
    let b = p.push_many([&[3u8][..]]).unwrap();
    p.advance(b).unwrap();
    c.advance(end).unwrap();
    let before = counts();
    let end = drain(&mut c);
    // Only the data: `for_each_bytes` after `wait_for_item` would look
    // at the producer sector again.
    assert_eq!((counts().0 - before.0, counts().1 - before.1), (0, 1));
    assert_eq!(end, b);

    // Nothing known: the pass's own look finds what was published.
    c.advance(end).unwrap();
    let d = p.push_many([&[4u8][..]]).unwrap();
    p.advance(d).unwrap();
    assert_eq!(drain(&mut c), d);
    assert_eq!(got, [1, 2, 3, 4]);

    // Published during a pass, after its look: left for the next pass.
    c.advance(d).unwrap();
    let e = p.push_many([&[5u8][..]]).unwrap();
    p.advance(e).unwrap();
    let mut late = None;
    let end = c
        .for_each_bytes_wait(c.position(), timeout, |_, _, _| {
            if late.is_none() {
                let f = p.push_many([&[6u8][..]]).unwrap();
                p.advance(f).unwrap();
                late = Some(f);
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(end, e, "the pass went past the position its look saw");
    let mut next = Vec::new();
    let after = c
        .for_each_bytes_wait(end, timeout, |_, _, b| {
            next.push(b[0]);
            Ok(())
        })
        .unwrap();
    assert_eq!((next, Some(after)), (vec![6], late));
    // An empty ring times out with a retry, not an error.
    c.advance(after).unwrap();
    let err = c
        .for_each_bytes_wait(c.position(), Some(Duration::from_millis(20)), |_, _, _| {
            Ok(())
        })
        .unwrap_err();
    assert!(err.is_retry(), "{err}");
}
