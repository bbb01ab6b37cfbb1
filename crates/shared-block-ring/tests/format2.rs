//! Format 2 end to end through the public API: producer, consumer and
//! journal on format-2 rings, in both durability modes; the flush count of
//! a publication; recovery of a pointer ahead of its records at attach
//! (both sides); the consumer's known-durable producer position; the owner
//! lease within one process (the on-host lock bypassed).

mod common;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shared_block_ring::device::{FaultDevice, OpCounts};
use shared_block_ring::format::v2 as codec;
use shared_block_ring::{
    ring2, BlockDevice, Consumer, Corruption, Durability, Error, Journal, JournalOptions,
    MemDevice, Options, Position, Producer, RecordProblem, RingFormat, RingState, Side,
};

fn ring(sectors: u64) -> MemDevice {
    let d = MemDevice::new(512, sectors);
    ring2::create(&d, ring2::DEFAULT_LEASE).unwrap();
    d
}

fn item(n: usize) -> Vec<u8> {
    (0..(n * 37) % 700).map(|i| (n + i) as u8).collect()
}

#[test]
fn items_go_round_the_ring_in_both_modes() {
    for durability in [Durability::PowerLoss, Durability::ProcessCrash] {
        let d = ring(16); // 6.5 KiB
        let options = Options::new().durability(durability);
        let mut p = Producer::attach(d.clone(), options.clone()).unwrap();
        let mut c = Consumer::attach(d.clone(), options.clone()).unwrap();
        assert_eq!((p.format(), c.format()), (RingFormat::V2, RingFormat::V2));
        let (mut pushed, mut popped) = (0, 0);
        for round in 0..60 {
            for _ in 0..1 + round % 4 {
                match p.push(&item(pushed)) {
                    Ok(_) => pushed += 1,
                    Err(e) if e.is_retry() => break,
                    Err(e) => panic!("{e}"),
                }
            }
            p.advance(p.tail()).unwrap();
            if round % 7 == 3 {
                // Re-attach both sides now and then: a new epoch each time.
                drop(p);
                p = Producer::attach(d.clone(), options.clone()).unwrap();
                drop(c);
                c = Consumer::attach(d.clone(), options.clone()).unwrap();
            }
            loop {
                match c.pop() {
                    Ok((next, got)) => {
                        assert_eq!(got, item(popped), "{durability} item {popped}");
                        popped += 1;
                        c.advance(next).unwrap();
                    }
                    Err(e) if e.is_retry() => break,
                    Err(e) => panic!("{durability}: {e}"),
                }
            }
        }
        assert_eq!(popped, pushed);
        assert!(pushed > 100, "{pushed}");
        // The ring went round several times.
        assert!(p.published().offset() > 5 * p.geometry().capacity());
    }
}

#[test]
fn a_publication_costs_one_flush_and_no_durable_write() {
    let d = FaultDevice::new(ring(64));
    let mut p = Producer::attach(d.clone(), Options::new()).unwrap();
    let before = d.counts();
    for i in 0..10 {
        let end = p.push(&item(i)).unwrap();
        p.advance(end).unwrap();
    }
    let after = d.counts();
    let delta = |f: fn(&OpCounts) -> u64| f(&after) - f(&before);
    assert_eq!(delta(|c| c.flushes), 10, "{before:?} {after:?}");
    assert_eq!(delta(|c| c.durable_writes), 0, "{before:?} {after:?}");
    // advance_pipelined is advance: one flush, pointer written.
    let end = p.push(b"x").unwrap();
    p.advance_pipelined(end).unwrap();
    assert_eq!(p.pending_publication(), None);
    assert_eq!(d.counts().flushes - after.flushes, 1);
    // Process-crash mode: no flush at all.
    drop(p);
    let mut p = Producer::attach(
        d.clone(),
        Options::new().durability(Durability::ProcessCrash),
    )
    .unwrap();
    let before = d.counts();
    let end = p.push(b"y").unwrap();
    p.advance(end).unwrap();
    assert_eq!(d.counts().flushes, before.flushes);
}

/// Writes a format-2 ring whose producer sector says `P` but whose last
/// record was lost (zeroed), as a power cut during `advance` can leave it.
fn ring_with_lost_record() -> (MemDevice, Vec<u64>) {
    let d = ring(32);
    let mut p = Producer::attach(d.clone(), Options::new()).unwrap();
    let mut ends = vec![0];
    for i in 0..3 {
        let e = p.push(&item(i + 1)).unwrap();
        p.advance(e).unwrap();
        ends.push(e.offset());
    }
    // Two more records and their pointer; the first of them is lost.
    ends.push(p.push(&item(10)).unwrap().offset());
    ends.push(p.push(&item(11)).unwrap().offset());
    p.advance(p.tail()).unwrap();
    drop(p);
    let g = shared_block_ring::Geometry::new(512, 32).unwrap();
    d.with_bytes_mut(|b| {
        for at in ends[3]..ends[4] {
            let (s, o) = g.locate(at);
            b[s as usize * 512 + o] = 0;
        }
    });
    (d, ends)
}

#[test]
fn a_consumer_attaching_first_caps_its_view_until_the_producer_rewrites() {
    let (d, ends) = ring_with_lost_record();
    let r = ring2::recover(&d).unwrap();
    assert!(r.pointer_ahead_of_records());
    assert_eq!(r.published_end(), ends[3]);
    let mut c = Consumer::attach(d.clone(), Options::new()).unwrap();
    let (end, n) = c.fold(c.position(), 0, |n, _| n + 1).unwrap();
    assert_eq!((end.offset(), n), (ends[3], 3));
    assert!(c.pop_from(end).unwrap_err().is_retry());
    // The producer attaches: P = q, and pushes on from there.
    let mut p = Producer::attach(d.clone(), Options::new()).unwrap();
    assert_eq!(p.published().offset(), ends[3]);
    let e = p.push(b"after recovery").unwrap();
    p.advance(e).unwrap();
    let (next, got) = c.pop_from(end).unwrap();
    assert_eq!((next, got.as_slice()), (e, &b"after recovery"[..]));
}

#[test]
fn the_producer_rewrites_its_sector_at_attach() {
    let (d, ends) = ring_with_lost_record();
    let before = ring2::recover(&d).unwrap().producer;
    let p = Producer::attach(d.clone(), Options::new()).unwrap();
    let r = ring2::recover(&d).unwrap();
    assert_eq!(r.producer.position, ends[3]);
    assert_eq!(r.producer.durable, ends[3]);
    assert_eq!(r.producer.epoch, before.epoch + 1);
    assert_eq!(r.producer.generation, before.generation + 1);
    assert!(r.scan.is_complete());
    assert!(!r.producer.owner.is_none());
    drop(p);
    // A clean detach clears the owner.
    assert!(ring2::recover(&d).unwrap().producer.owner.is_none());
}

#[test]
fn a_bad_record_is_never_delivered_and_names_its_place() {
    let d = ring(32);
    let mut p = Producer::attach(d.clone(), Options::new()).unwrap();
    let a = p.push(b"first").unwrap();
    let b = p.push(&[7u8; 900]).unwrap();
    p.advance(b).unwrap();
    // Published again: the producer sector's `durable` is now past both,
    // so damage there is corruption, not a power cut's lost tail.
    let e = p.push(b"third").unwrap();
    p.advance(e).unwrap();
    assert_eq!(ring2::recover(&d).unwrap().producer.durable, b.offset());
    let g = p.geometry();
    // Damage the second record's payload.
    let (s, o) = g.locate(a.offset() + 24 + 500);
    d.with_bytes_mut(|bytes| bytes[s as usize * 512 + o] ^= 0x40);
    let mut c = Consumer::attach(d.clone(), Options::new()).unwrap();
    let (next, got) = c.pop().unwrap();
    assert_eq!((next, got.as_slice()), (a, &b"first"[..]));
    c.advance(next).unwrap();
    let e = c.pop().unwrap_err();
    let (sector, byte) = g.locate(a.offset());
    match e {
        Error::Corrupt(Corruption::BadRecord {
            sector: s,
            byte: b,
            position,
            problem: RecordProblem::Checksum { expected, found },
        }) => {
            assert_eq!((s, b, position), (sector, byte, a.offset()));
            assert_ne!(expected, found);
        }
        other => panic!("{other:?}"),
    }
    assert!(c.fold(c.position(), 0, |n, _| n + 1).is_err());
}

#[test]
fn suspend_and_resume_work_on_format_2() {
    let d = ring(16);
    let mut p = Producer::attach(d.clone(), Options::new()).unwrap();
    let mut c = Consumer::attach(d.clone(), Options::new()).unwrap();
    c.suspend().unwrap();
    assert_eq!(p.state().unwrap(), RingState::Suspended);
    assert!(matches!(p.push(b"x"), Err(Error::Suspended)));
    assert_eq!(c.state().unwrap(), RingState::Suspended);
    drop(p);
    // Attaching to a suspended ring acknowledges and fails, as in format 1.
    assert!(matches!(
        Producer::attach(d.clone(), Options::new()),
        Err(Error::Suspended)
    ));
    c.resume().unwrap();
    let mut p = Producer::attach(d.clone(), Options::new()).unwrap();
    let e = p.push(b"x").unwrap();
    p.advance(e).unwrap();
    assert_eq!(c.pop().unwrap().1, b"x");
}

/// A device whose role locks are not taken: two handles of one side in one
/// process, as two hosts sharing a disk would be (the on-host lock cannot
/// see them). Only the owner lease stands between them.
#[derive(Clone)]
struct NoLock(MemDevice);

impl BlockDevice for NoLock {
    fn sector_size(&self) -> usize {
        self.0.sector_size()
    }
    fn sectors(&self) -> u64 {
        self.0.sectors()
    }
    fn read(&self, sector: u64, buf: &mut [u8]) -> io::Result<()> {
        self.0.read(sector, buf)
    }
    fn write(&self, sector: u64, buf: &[u8]) -> io::Result<()> {
        self.0.write(sector, buf)
    }
    fn flush(&self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Rewrites the owner of `side` as another host's, heartbeat `ago` in the
/// past, as if another host held it.
fn owned_elsewhere(d: &MemDevice, side: Side, ago: Duration) {
    let r = ring2::recover(d).unwrap();
    let mut s = match side {
        Side::Producer => r.producer,
        Side::Consumer => r.consumer,
    };
    s.owner = codec::Owner {
        token: codec::Token([9; 16]),
        boot_id: codec::BootId([8; 16]),
        pid: 4242,
        pid_namespace: 1,
        host: codec::HostName::new(b"elsewhere"),
    };
    s.heartbeat = shared_block_ring::host::now_ns() - ago.as_nanos() as u64;
    let mut sector = vec![0u8; 512];
    codec::encode_state(side, &r.header.ring_id, &s, None, &mut sector);
    d.write(side.sector(), &sector).unwrap();
}

#[test]
fn a_side_owned_elsewhere_is_refused_until_its_lease_expires_and_take_over_is_asked() {
    let d = MemDevice::new(512, 16);
    ring2::create(&d, Duration::from_secs(10)).unwrap();
    for side in [Side::Producer, Side::Consumer] {
        let attach = |take_over: bool| -> Result<(), Error> {
            let o = Options::new().take_over(take_over);
            match side {
                Side::Producer => Producer::attach(d.clone(), o).map(drop),
                Side::Consumer => Consumer::attach(d.clone(), o).map(drop),
            }
        };
        owned_elsewhere(&d, side, Duration::from_secs(2));
        let e = attach(true).unwrap_err();
        assert!(matches!(e, Error::Owned { .. }), "{e}");
        assert!(e.to_string().contains("elsewhere (pid 4242)"), "{e}");
        assert!(e.to_string().contains("s ago"), "{e}");
        owned_elsewhere(&d, side, Duration::from_secs(11));
        let e = attach(false).unwrap_err();
        assert!(matches!(e, Error::LeaseExpired { .. }), "{e}");
        assert!(e.to_string().contains("take over"), "{e}");
        attach(true).unwrap();
    }
}

/// Its check before writing comes with its look at the consumer sector
/// (one read of both sectors), or, when it has not looked, as a read of
/// its own sector before writing its records.
#[test]
fn a_displaced_producer_stops_without_writing() {
    for poll in [Duration::ZERO, Duration::from_secs(3600)] {
        displaced_producer(Options::new().consumer_poll_interval(poll));
    }
}

fn displaced_producer(options: Options) {
    let disk = MemDevice::new(512, 16);
    ring2::create(&disk, Duration::from_millis(200)).unwrap();
    let mut old = Producer::attach(NoLock(disk.clone()), options).unwrap();
    let e = old.push(b"from the old owner").unwrap();
    old.advance(e).unwrap();
    // This process is the owner: a second handle of the same process and
    // host would be taken as "ours"; make the old owner look foreign.
    owned_elsewhere(&disk, Side::Producer, Duration::from_secs(1));
    let mut new = Producer::attach(NoLock(disk.clone()), Options::new().take_over(true)).unwrap();
    let e2 = new.push(b"from the new owner").unwrap();
    new.advance(e2).unwrap();
    let image = disk.to_vec();
    // The old owner's next write comes after more than half the lease:
    // it reads its sector first, finds another token, and stops.
    std::thread::sleep(Duration::from_millis(150));
    let err = old.push(b"must not be written").unwrap_err();
    assert!(
        matches!(
            err,
            Error::Displaced {
                side: Side::Producer,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(disk.to_vec(), image, "the displaced producer wrote nothing");
    // Poisoned: everything fails the same way, with no I/O.
    assert!(matches!(
        old.advance(e),
        Err(Error::Displaced { .. }) | Ok(())
    ));
    assert!(matches!(old.heartbeat(), Err(Error::Displaced { .. })));
    assert!(matches!(old.state(), Err(Error::Displaced { .. })));
    drop(old);
    assert_eq!(disk.to_vec(), image, "nor when dropped");
    let mut c = Consumer::attach(disk.clone(), Options::new()).unwrap();
    assert_eq!(c.pop().unwrap().1, b"from the old owner");
    let (n, _) = c.pop().unwrap();
    c.advance(n).unwrap();
    assert_eq!(c.pop().unwrap().1, b"from the new owner");
}

#[test]
fn a_displaced_consumer_stops_without_writing() {
    let disk = MemDevice::new(512, 16);
    ring2::create(&disk, Duration::from_millis(200)).unwrap();
    let mut p = Producer::attach(disk.clone(), Options::new()).unwrap();
    for i in 0..4 {
        let e = p.push(&item(i)).unwrap();
        p.advance(e).unwrap();
    }
    let mut old = Consumer::attach(NoLock(disk.clone()), Options::new()).unwrap();
    let (n, _) = old.pop().unwrap();
    old.advance(n).unwrap();
    owned_elsewhere(&disk, Side::Consumer, Duration::from_secs(1));
    let mut new = Consumer::attach(NoLock(disk.clone()), Options::new().take_over(true)).unwrap();
    let (n2, got) = new.pop().unwrap();
    assert_eq!(got, item(1));
    new.advance(n2).unwrap();
    let image = disk.to_vec();
    std::thread::sleep(Duration::from_millis(150));
    let (n, _) = old.pop().unwrap();
    let err = old.advance(n).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Displaced {
                side: Side::Consumer,
                ..
            }
        ),
        "{err}"
    );
    assert!(matches!(old.suspend(), Err(Error::Displaced { .. })));
    drop(old);
    assert_eq!(disk.to_vec(), image, "the displaced consumer wrote nothing");
}

#[test]
fn heartbeats_keep_an_idle_side_and_are_cheap() {
    let disk = MemDevice::new(512, 16);
    ring2::create(&disk, Duration::from_millis(300)).unwrap();
    let d = FaultDevice::new(disk.clone());
    let mut p = Producer::attach(d.clone(), Options::new()).unwrap();
    let mut c = Consumer::attach(d.clone(), Options::new()).unwrap();
    let before = d.counts();
    p.heartbeat().unwrap();
    c.heartbeat().unwrap();
    assert_eq!(d.counts().writes, before.writes, "not due yet: no write");
    std::thread::sleep(Duration::from_millis(120));
    let hb = ring2::recover(&disk).unwrap();
    p.heartbeat().unwrap();
    c.heartbeat().unwrap();
    let r = ring2::recover(&disk).unwrap();
    assert_eq!(d.counts().writes, before.writes + 2);
    assert!(r.producer.heartbeat > hb.producer.heartbeat);
    assert!(r.consumer.heartbeat > hb.consumer.heartbeat);
    assert_eq!(r.producer.generation, hb.producer.generation + 1);
    assert_eq!(r.producer.position, hb.producer.position);
}

#[test]
fn the_journal_works_on_format_2() {
    for blank in [true, false] {
        let d = MemDevice::new(512, 64);
        if !blank {
            ring2::create(&d, ring2::DEFAULT_LEASE).unwrap();
        }
        let done = Arc::new(Mutex::new(Vec::new()));
        let sink = done.clone();
        let options = JournalOptions::new().format(RingFormat::V2);
        let j = Journal::start(d.clone(), options.clone(), move |ops: &[Vec<u8>]| {
            sink.lock().unwrap().extend_from_slice(ops);
            Ok::<(), String>(())
        })
        .unwrap();
        let mut last = None;
        for i in 0..300 {
            last = Some(j.push(&item(i)).unwrap());
        }
        last.unwrap().sync().unwrap();
        j.shutdown();
        let done = done.lock().unwrap();
        assert_eq!(done.len(), 300);
        assert!(done.iter().enumerate().all(|(i, op)| *op == item(i)));
        assert!(ring2::recover(&d).unwrap().scan.is_complete());
    }
}

#[test]
fn the_journal_heartbeats_while_idle() {
    let d = MemDevice::new(512, 64);
    ring2::create(&d, Duration::from_millis(600)).unwrap();
    let j = Journal::start(d.clone(), JournalOptions::new(), |_: &[Vec<u8>]| {
        Ok::<(), String>(())
    })
    .unwrap();
    let first = ring2::recover(&d).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = ring2::recover(&d).unwrap();
        if r.producer.heartbeat > first.producer.heartbeat
            && r.consumer.heartbeat > first.consumer.heartbeat
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no heartbeat from an idle journal within 20 s (lease 600 ms)"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(j);
}

#[test]
fn positions_are_checked_against_format_2_alignment() {
    let d = ring(16);
    let mut p = Producer::attach(d.clone(), Options::new()).unwrap();
    let e = p.push(b"abc").unwrap();
    assert_eq!(e.offset() % 8, 0);
    let err = p.advance(Position::new(4)).unwrap_err();
    assert!(err.to_string().contains("multiples of 8"), "{err}");
    p.advance(e).unwrap();
    let mut c = Consumer::attach(d.clone(), Options::new()).unwrap();
    assert!(c.pop_from(Position::new(4)).is_err());
    let count = AtomicU64::new(0);
    c.for_each_bytes(c.position(), |_, _, _| {
        count.fetch_add(1, Ordering::Relaxed);
        Ok(())
    })
    .unwrap();
    assert_eq!(count.load(Ordering::Relaxed), 1);
}

/// Amendment 3: the producer sector's `durable` is a producer position on
/// stable storage, so the consumer releases up to it without a flush of
/// its own; past it, it flushes first (format 1's rule).
#[test]
fn the_consumer_trusts_durable_and_flushes_past_it() {
    let d = FaultDevice::new(ring(32));
    let mut p = Producer::attach(d.clone(), Options::new()).unwrap();
    let first = p.push(b"one").unwrap();
    p.advance(first).unwrap();
    let second = p.push(b"two").unwrap();
    p.advance(second).unwrap(); // its sector says durable = first
    let mut c = Consumer::attach(d.clone(), Options::new()).unwrap();
    let before = d.counts();
    c.advance(first).unwrap();
    assert_eq!(d.counts().flushes, before.flushes, "released up to durable");
    c.advance(second).unwrap();
    assert_eq!(d.counts().flushes, before.flushes + 1, "released past it");
}

/// A producer in the process-crash mode never flushes, so its `durable`
/// stays where its attach flushed: a power-loss consumer does not release
/// past a pointer that is not on stable storage without flushing first.
#[test]
fn a_process_crash_producer_never_claims_durability_it_lacks() {
    let d = FaultDevice::new(ring(32));
    let mut p = Producer::attach(
        d.clone(),
        Options::new().durability(Durability::ProcessCrash),
    )
    .unwrap();
    let attached_at = p.published().offset();
    let mut ends = vec![];
    for i in 0..3 {
        ends.push(p.push(&item(i)).unwrap());
        p.advance(*ends.last().unwrap()).unwrap();
    }
    assert_eq!(ring2::recover(&d).unwrap().producer.durable, attached_at);
    let mut c = Consumer::attach(d.clone(), Options::new()).unwrap();
    let before = d.counts();
    c.advance(ends[0]).unwrap();
    assert_eq!(d.counts().flushes, before.flushes + 1);
}
