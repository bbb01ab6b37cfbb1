//! Device errors: every operation that touches the device reports a failed
//! read, write or flush as `Error::Io` (naming the operation), the handle
//! can retry once the fault clears, re-attaching works, and nothing that
//! was published is lost.

use shared_block_ring::device::{FaultDevice, FaultOp};
use shared_block_ring::{
    create, Consumer, Durability, Error, IoOp, MemDevice, Options, Position, Producer, RingState,
};

type Dev = FaultDevice<MemDevice>;
/// Consumer position, producer position, and the items between them.
type Contents = (u64, u64, Vec<Vec<u8>>);

fn options(durability: Durability) -> Options {
    Options::new()
        .durability(durability)
        .consumer_poll_interval(std::time::Duration::ZERO)
        .max_backoff(std::time::Duration::from_millis(1))
}

/// A ring holding published "a" and "b" and unpublished "c", with a
/// producer and a consumer attached (the consumer has read nothing yet).
struct Ring {
    dev: Dev,
    durability: Durability,
    p: Option<Producer<Dev>>,
    c: Option<Consumer<Dev>>,
}

impl Ring {
    fn new(durability: Durability) -> Ring {
        let dev = FaultDevice::new(MemDevice::new(512, 16));
        create(&dev).unwrap();
        let mut p = Producer::attach(dev.clone(), options(durability)).unwrap();
        p.push(b"a").unwrap();
        let end = p.push(b"b").unwrap();
        p.advance(end).unwrap();
        p.push(b"c").unwrap();
        let c = Consumer::attach(dev.clone(), options(durability)).unwrap();
        Ring {
            dev,
            durability,
            p: Some(p),
            c: Some(c),
        }
    }

    fn p(&mut self) -> &mut Producer<Dev> {
        self.p.as_mut().unwrap()
    }

    fn c(&mut self) -> &mut Consumer<Dev> {
        self.c.as_mut().unwrap()
    }

    /// What a fresh consumer finds on the device: positions and items.
    fn contents(&self) -> Contents {
        // Through a copy: our own consumer may hold the consumer lock.
        let copy = MemDevice::from_bytes(512, self.dev.inner().to_vec());
        let mut c = Consumer::attach(copy, Options::new()).unwrap();
        let (end, items) = c
            .fold(c.position(), Vec::new(), |mut v, i| {
                v.push(i);
                v
            })
            .unwrap();
        (c.position().offset(), end.offset(), items)
    }
}

/// An operation under test; returns Ok when it did what it should.
type Op = fn(&mut Ring) -> Result<(), Error>;

fn ops() -> Vec<(&'static str, Op)> {
    vec![
        ("create", |r| create(&r.dev).map(|_| ())),
        ("Producer::attach", |r| {
            r.p = None;
            r.p = Some(Producer::attach(r.dev.clone(), options(r.durability))?);
            Ok(())
        }),
        ("Consumer::attach", |r| {
            r.c = None;
            r.c = Some(Consumer::attach(r.dev.clone(), options(r.durability))?);
            Ok(())
        }),
        ("push", |r| r.p().push(b"d").map(|_| ())),
        ("push_wait", |r| r.p().push_wait(b"d", None).map(|_| ())),
        ("push_many", |r| {
            r.p().push_many([b"d".as_slice(), &[9u8; 1500]]).map(|_| ())
        }),
        ("Producer::advance", |r| {
            let t = r.p().tail();
            r.p().advance(t)
        }),
        ("Producer::state", |r| r.p().state().map(|_| ())),
        ("Producer::debug_info", |r| r.p().debug_info().map(|_| ())),
        ("pop", |r| r.c().pop().map(|_| ())),
        ("pop_wait", |r| r.c().pop_wait(None).map(|_| ())),
        ("pop_from", |r| r.c().pop_from(Position::new(8)).map(|_| ())),
        ("peek_bytes", |r| {
            r.c().peek_bytes(Position::ZERO).map(|_| ())
        }),
        ("wait_for_item", |r| {
            r.c().wait_for_item(Position::ZERO, None)
        }),
        ("fold", |r| {
            r.c().fold(Position::ZERO, 0, |n, _| n + 1).map(|_| ())
        }),
        ("for_each_bytes", |r| {
            r.c()
                .for_each_bytes(Position::ZERO, |_, _, _| Ok(()))
                .map(|_| ())
        }),
        ("Consumer::advance", |r| r.c().advance(Position::new(8))),
        ("suspend", |r| r.c().suspend()),
        ("resume", |r| {
            // Resume needs an acknowledged suspend first (a retry may find
            // the suspend written but not yet acknowledged).
            match r.c().suspend() {
                Ok(()) | Err(Error::Retry(_)) => {}
                Err(e) => return Err(e),
            }
            r.p().state()?;
            r.c().resume()
        }),
        ("Consumer::state", |r| r.c().state().map(|_| ())),
        ("Consumer::debug_info", |r| r.c().debug_info().map(|_| ())),
    ]
}

fn io_op(kind: FaultOp) -> IoOp {
    match kind {
        FaultOp::Read => IoOp::Read,
        FaultOp::Write => IoOp::Write,
        FaultOp::Flush => IoOp::Flush,
    }
}

fn kinds() -> [FaultOp; 3] {
    [FaultOp::Read, FaultOp::Write, FaultOp::Flush]
}

fn setup(name: &str, durability: Durability) -> Ring {
    let mut r = Ring::new(durability);
    if name == "create" {
        // create on a blank device writes; on a ring it only reads.
        r.p = None;
        r.c = None;
        r.dev = FaultDevice::new(MemDevice::new(512, 16));
    }
    r
}

/// How many operations of each kind `op` makes, from a clean run.
fn profile(name: &str, op: Op, durability: Durability) -> ([u64; 3], Contents) {
    let mut r = setup(name, durability);
    let before = r.dev.counts();
    op(&mut r).unwrap_or_else(|e| panic!("{name} without faults: {e}"));
    let after = r.dev.counts();
    let writes = after.writes + after.durable_writes - before.writes - before.durable_writes;
    (
        [
            after.reads - before.reads,
            writes,
            after.flushes - before.flushes,
        ],
        r.contents(),
    )
}

#[test]
fn every_failed_device_operation_surfaces_as_io_and_a_retry_succeeds() {
    let mut injected = 0;
    for durability in [Durability::PowerLoss, Durability::ProcessCrash] {
        for (name, op) in ops() {
            let (counts, clean) = profile(name, op, durability);
            assert!(counts.iter().sum::<u64>() > 0, "{name} does no I/O?");
            for kind in kinds() {
                for n in 1..=counts[kind as usize] {
                    let mut r = setup(name, durability);
                    r.dev.fail_nth(kind, n);
                    match op(&mut r) {
                        Err(Error::Io { op: got, .. }) => assert_eq!(
                            got,
                            io_op(kind),
                            "{name}: failing {kind:?} #{n} reported as {got}"
                        ),
                        other => panic!(
                            "{durability} {name}: failing {kind:?} #{n} gave {:?}",
                            other.map_err(|e| e.to_string())
                        ),
                    }
                    injected += 1;
                    // The fault has cleared: the same handle retries, and
                    // ends where a clean run ends.
                    op(&mut r).unwrap_or_else(|e| {
                        panic!("{durability} {name}: retry after failing {kind:?} #{n}: {e}")
                    });
                    assert_eq!(r.contents(), clean, "{durability} {name} {kind:?} #{n}");
                }
            }
        }
    }
    println!("{injected} injected device errors, each surfaced as Error::Io and retried");
    assert!(injected > 60);
}

#[test]
fn failing_from_now_until_cleared_then_reattaching_loses_nothing() {
    for durability in [Durability::PowerLoss, Durability::ProcessCrash] {
        for (name, op) in ops() {
            let (counts, _) = profile(name, op, durability);
            for kind in kinds() {
                if counts[kind as usize] == 0 {
                    continue;
                }
                let mut r = setup(name, durability);
                let (_, published_before, items_before) = if name == "create" {
                    (0, 0, Vec::new())
                } else {
                    r.contents()
                };
                r.dev.fail_all(kind);
                for attempt in 0..3 {
                    assert!(
                        matches!(op(&mut r), Err(Error::Io { .. })),
                        "{name} {kind:?}: attempt {attempt} did not fail"
                    );
                }
                r.dev.clear_faults();
                // Re-attach both sides from scratch.
                r.p = None;
                r.c = None;
                if name == "create" {
                    create(&r.dev).unwrap();
                }
                let mut p = Producer::attach(r.dev.clone(), options(durability))
                    .unwrap_or_else(|e| panic!("{name} {kind:?}: producer re-attach: {e}"));
                let mut c = Consumer::attach(r.dev.clone(), options(durability)).unwrap();
                let (end, items) = c
                    .fold(c.position(), Vec::new(), |mut v, i| {
                        v.push(i);
                        v
                    })
                    .unwrap();
                assert_eq!(end.offset(), published_before, "{name} {kind:?}");
                assert_eq!(items, items_before, "{name} {kind:?}: published items lost");
                // And the ring works.
                let e = p.push(b"after").unwrap();
                p.advance(e).unwrap();
                c.advance(end).unwrap();
                assert_eq!(c.pop().unwrap().1, b"after");
            }
        }
    }
}

#[test]
fn a_failed_flush_publishes_nothing_and_the_retry_publishes_everything() {
    let dev = FaultDevice::new(MemDevice::new(512, 16));
    create(&dev).unwrap();
    let mut p = Producer::attach(dev.clone(), Options::new()).unwrap();
    let mut c = Consumer::attach(dev.clone(), Options::new()).unwrap();
    p.push(b"one").unwrap();
    let end = p.push(b"two").unwrap();
    dev.fail_nth(FaultOp::Flush, 1);
    let e = p.advance(end).unwrap_err();
    assert!(e.is_io() && !e.is_transient(), "{e}");
    assert_eq!(
        e.to_string(),
        "device I/O error while flushing sector 3: Input/output error (os error 5)"
    );
    // Nothing was published: the pointer is written only after the flush.
    assert!(c.pop().unwrap_err().is_retry());
    assert_eq!(p.published(), Position::ZERO);
    p.advance(end).unwrap();
    assert_eq!(c.pop().unwrap().1, b"one");
}

/// A long run where every k-th read, write and flush fails; the driver
/// retries each failed call (or re-attaches the side that failed) and every
/// published item still arrives exactly in order.
#[test]
fn a_workload_under_periodic_faults_delivers_everything_in_order() {
    for (durability, every, reattach) in [
        (Durability::PowerLoss, 7, false),
        (Durability::PowerLoss, 5, true),
        (Durability::ProcessCrash, 3, false),
        (Durability::ProcessCrash, 4, true),
    ] {
        let dev = FaultDevice::new(MemDevice::new(512, 12));
        let opts = options(durability);
        retry(|| create(&dev));
        let mut p = retry(|| Producer::attach(dev.clone(), opts.clone()));
        let mut c = retry(|| Consumer::attach(dev.clone(), opts.clone()));
        let item = |i: u64| -> Vec<u8> { vec![i as u8; (i as usize * 37) % 900] };
        let total = 400u64;
        // Producer: next item to push, and the first item not yet published.
        let (mut next, mut unpublished_from) = (0u64, 0u64);
        let mut starts = vec![0u64]; // starts[i] = position of item i
        let mut received = 0u64;
        let mut faults = 0u64;
        let mut step = 0u64;
        while received < total {
            step += 1;
            assert!(step < 100_000, "{durability}: no progress");
            for kind in kinds() {
                if step % every == kind as u64 % every {
                    dev.fail_nth(kind, 1 + step % 3);
                }
            }
            // Producer side: push up to 3 items, then publish.
            let mut failed = false;
            for _ in 0..3 {
                if next == total {
                    break;
                }
                match p.push(&item(next)) {
                    Ok(end) => {
                        next += 1;
                        starts.truncate(next as usize);
                        starts.push(end.offset());
                    }
                    Err(e) if e.is_retry() => break,
                    Err(e) => {
                        assert!(e.is_io(), "push: {e}");
                        failed = true;
                        break;
                    }
                }
            }
            if !failed && next > unpublished_from {
                match p.advance(Position::new(starts[next as usize])) {
                    Ok(()) => unpublished_from = next,
                    Err(e) => {
                        assert!(e.is_io(), "advance: {e}");
                        failed = true;
                    }
                }
            }
            if failed {
                faults += 1;
                if reattach {
                    drop(p);
                    p = retry(|| Producer::attach(dev.clone(), opts.clone()));
                    // Unpublished items are gone: push them again.
                    let published = p.published().offset();
                    let first = starts.iter().position(|&s| s == published).unwrap() as u64;
                    next = first;
                    unpublished_from = first;
                    starts.truncate(first as usize + 1);
                }
            }
            // Consumer side: pop what is there, release it.
            loop {
                match c.pop() {
                    Ok((end, got)) => {
                        let at = c.position().offset();
                        let i = starts.iter().position(|&s| s == at).unwrap() as u64;
                        assert_eq!(got, item(i), "item {i}");
                        assert_eq!(end.offset(), starts[i as usize + 1]);
                        match c.advance(end) {
                            Ok(()) => received = received.max(i + 1),
                            Err(e) => {
                                assert!(e.is_io(), "consumer advance: {e}");
                                faults += 1;
                                break;
                            }
                        }
                    }
                    Err(e) if e.is_retry() => break,
                    Err(e) => {
                        assert!(e.is_io(), "pop: {e}");
                        faults += 1;
                        if reattach {
                            drop(c);
                            c = retry(|| Consumer::attach(dev.clone(), opts.clone()));
                        }
                        break;
                    }
                }
            }
        }
        dev.clear_faults();
        assert!(faults > 20, "{durability}: only {faults} faults hit");
        assert_eq!(received, total);
        println!(
            "{durability} (reattach {reattach}): {total} items delivered through {faults} faults"
        );
    }
}

/// Retries `f` while it fails with an I/O error (the faults are one-shot).
fn retry<T>(mut f: impl FnMut() -> Result<T, Error>) -> T {
    for _ in 0..100 {
        match f() {
            Ok(t) => return t,
            Err(e) => assert!(e.is_io(), "{e}"),
        }
    }
    panic!("still failing after 100 tries");
}

/// The producer position every power-cut image of `dev` (crashed now)
/// holds, after checking that each image attaches and delivers intact
/// items ("a", "b", ... in order).
fn producer_positions_after_a_power_cut(dev: &Dev) -> Vec<u64> {
    dev.crash_after(0);
    let point = dev.crash_point().unwrap();
    let mut found = Vec::new();
    for image in point.power_cut_images(4096, 15) {
        let ring = MemDevice::from_bytes(512, image);
        let mut c = Consumer::attach(ring, Options::new()).unwrap();
        let (end, items) = c
            .fold(c.position(), Vec::new(), |mut v, i| {
                v.push(i);
                v
            })
            .unwrap();
        for (n, item) in items.iter().enumerate() {
            assert_eq!(item, &[b'a' + n as u8]);
        }
        found.push(end.offset());
    }
    found
}

/// Regression test (issue 15, item 2): after `advance_pipelined` fails in
/// its flush (having written the previous batch's pointer, which is then
/// visible but not durable), `sync`, `advance` and a retried
/// `advance_pipelined` must each make that publication durable. They used
/// to return Ok without writing or flushing anything (the producer then
/// counted the pointer as published), and a power cut lost the
/// publication (the producer at 0 in 1 of 3 images).
#[test]
fn after_a_failed_pipelined_advance_a_retry_makes_the_publication_durable() {
    for retry in ["sync", "advance", "advance_pipelined", "drop"] {
        let dev = FaultDevice::new(MemDevice::new(512, 16));
        create(&dev).unwrap();
        let mut p = Producer::attach(dev.clone(), Options::new()).unwrap();
        let a = p.push(b"a").unwrap();
        p.advance_pipelined(a).unwrap();
        let b = p.push(b"b").unwrap();
        dev.fail_nth(FaultOp::Flush, 1);
        let e = p.advance_pipelined(b).unwrap_err();
        assert_eq!(
            e.to_string(),
            "device I/O error while flushing sector 3: Input/output error (os error 5)"
        );
        // The pointer of `a` is written but not durable: still pending.
        let pending_after_failure = p.pending_publication();
        let (durable, pending) = match retry {
            "sync" => (p.sync(), None),
            "advance" => (p.advance(a), None),
            // Makes `a` durable, and leaves `b` pending.
            "advance_pipelined" => (p.advance_pipelined(b), Some(b)),
            _ => {
                drop(p);
                p = Producer::attach(dev.clone(), Options::new()).unwrap();
                (Ok(()), None)
            }
        };
        durable.unwrap_or_else(|e| panic!("{retry}: {e}"));
        let pending_after_retry = p.pending_publication();
        drop(p); // (dropping writes b's pointer in the pipelined case)
        let found = producer_positions_after_a_power_cut(&dev);
        assert!(
            found.iter().all(|&at| at >= a.offset()),
            "{retry}: the publication of a was lost by a power cut: producer at {found:?}"
        );
        assert_eq!(pending_after_failure, Some(a), "{retry}");
        assert_eq!(pending_after_retry, pending, "{retry}");
    }
}

/// Regression test (issue 12): a streaming producer's `advance_pipelined`
/// writes the next batch and the pending pointer in one transfer; when the
/// batch's write fails and the pointer's does not, the pointer is on the
/// device (its items are durable) though the call failed, and the consumer
/// may release up to it. The producer must not then take the consumer for
/// one ahead of it (it used to compare with the last pointer it knew it
/// had written: `ConsumerAheadOfProducer`), and a retry publishes both.
#[test]
fn a_failed_pipelined_transfer_that_wrote_the_pointer_leaves_a_usable_producer() {
    let dev = FaultDevice::new(MemDevice::new(512, 16));
    create(&dev).unwrap();
    let mut p = Producer::attach(dev.clone(), Options::new()).unwrap();
    let mut c = Consumer::attach(dev.clone(), Options::new()).unwrap();
    let a = p.push(b"a").unwrap();
    p.advance_pipelined(a).unwrap();
    let b = p.push(b"b").unwrap(); // kept for the next call's transfer
    dev.fail_nth(FaultOp::Write, 1); // the batch's write; the pointer's succeeds
    let e = p.advance_pipelined(b).unwrap_err();
    assert!(e.is_io(), "{e}");
    assert_eq!(p.pending_publication(), Some(a));
    let (at, item) = c.pop().unwrap();
    assert_eq!((at, item.as_slice()), (a, &b"a"[..]));
    c.advance(a).unwrap();
    assert_eq!(p.state().unwrap(), RingState::Running);
    p.advance_pipelined(b).unwrap();
    p.sync().unwrap();
    assert_eq!(c.pop_from(a).unwrap(), (b, b"b".to_vec()));
}

/// Issue 12: a consumer that releases everything it knows of reads the
/// producer sector with its write (a transfer, or a chain after its durable
/// write), so its next pop finds the items published since without reading
/// that sector again: one read (the data) instead of two. What it read
/// with its write is not taken as durable: the release past it still
/// flushes first.
#[test]
fn a_caught_up_release_reads_the_producer_sector_with_its_write() {
    for durability in [Durability::ProcessCrash, Durability::PowerLoss] {
        let dev = FaultDevice::new(MemDevice::new(512, 16));
        create(&dev).unwrap();
        let mut p = Producer::attach(dev.clone(), options(durability)).unwrap();
        let mut c = Consumer::attach(dev.clone(), options(durability)).unwrap();
        let a = p.push(b"a").unwrap();
        p.advance(a).unwrap();
        assert_eq!(c.pop().unwrap(), (a, b"a".to_vec()));
        let b = p.push(b"b").unwrap();
        p.advance(b).unwrap();
        c.advance(a).unwrap();
        assert_eq!(c.known_producer(), b, "{durability}");
        let reads = dev.counts().reads;
        assert_eq!(c.pop_from(a).unwrap(), (b, b"b".to_vec()));
        assert_eq!(dev.counts().reads - reads, 1, "{durability}: the data only");
        let flushes = dev.counts().flushes;
        c.advance(b).unwrap();
        let expected = u64::from(durability == Durability::PowerLoss);
        assert_eq!(dev.counts().flushes - flushes, expected, "{durability}");
    }
}
