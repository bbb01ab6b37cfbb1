//! Crash-consistency checker: the durability promise, proven by exhaustion.
//!
//! Each workload (a deterministic mix of push, push_many, producer advance,
//! pop, fold, consumer advance, suspend, resume and re-attaches) runs on a
//! [`FaultDevice`]. It is replayed once per crash point (after every device
//! write and flush, and both halves of every durable write), crashing the
//! device there. For every image the crash may leave (in the power-loss
//! mode: every subset of the unflushed sector writes when there are few, a
//! large sample with every tear point when there are many; in the
//! process-crash mode: the image of all completed writes), both sides
//! re-attach to a copy of the image and the promise is checked:
//!
//! * attach succeeds and finds a consistent ring (a crash during `create`
//!   may leave a blank device, which `create` then initialises);
//! * the producer position is the last one whose `advance` returned, or the
//!   one being published at the crash: every item whose advance returned
//!   is delivered, nothing never published is;
//! * every item from the consumer position to the producer position is
//!   delivered in order and byte for byte as pushed (never torn);
//! * the consumer position is the last one whose `advance` returned, or
//!   the one being written at the crash: released items are never
//!   delivered again;
//! * the suspend flag is the last one set, or the one being set;
//! * the ring keeps working: the producer attaches (after a resume if it
//!   was suspended), pushes and publishes a new item, and the consumer
//!   reads it.
//!
//! Two-handle workloads also interleave the sides: the other side takes
//! steps inside each side's calls, before each of its device operations
//! and inside its durable (FUA) writes, while they are visible and not yet
//! durable (see [`Hooked`]). `FaultDevice` makes a FUA write durable for
//! its own sector only, so a crash there may keep the other side's
//! unflushed writes or not.
//!
//! Format 2 runs the same workloads (on rings it creates, with a lease too
//! long to expire during a run, so that every replay makes the same device
//! operations). There the producer position after a power cut may also be
//! any item boundary between the last returned `advance` and the one in
//! flight: recovery ends the published records at the first one the cut
//! lost, and the items before it are delivered (never acknowledged, but
//! pushed, in order, whole).
//!
//! The number of distinct crash states checked is printed (run with
//! `--nocapture` to see it).
//!
//! [`Hooked`]: hooked::Hooked

#[path = "crash/check.rs"]
mod check;
mod common;
#[path = "crash/held_flush.rs"]
mod held_flush;
#[path = "crash/hooked.rs"]
mod hooked;
#[path = "crash/image.rs"]
mod image;
#[path = "crash/workload.rs"]
mod workload;
#[path = "crash/world.rs"]
mod world;

use std::collections::BTreeMap;
use std::time::Duration;

use shared_block_ring::device::FaultDevice;
use shared_block_ring::BlockDevice as _;
use shared_block_ring::{create, Consumer, Durability, MemDevice, Options, Position, Producer};

use check::check_all;
use held_flush::{HeldFlush, Release};
use image::both_sides_attach_after_a_power_cut;
use workload::{item_bytes, mixed, on_4k_sectors, Workload};

#[test]
fn power_loss_mode_survives_every_power_cut_and_process_crash() {
    let workloads = mixed(0, 40, Durability::PowerLoss, 200)
        .chain((100..102).map(|seed| on_4k_sectors(seed, Durability::PowerLoss, 120)))
        .collect();
    let t = check_all("power-loss", workloads, 100_000);
    // The pipelined publications put the next batch and the previous
    // pointer in one transfer: crashes with both in flight were checked.
    assert!(t.in_flight > 0, "no crash point inside a transfer");
}

#[test]
fn process_crash_mode_survives_every_process_crash() {
    let workloads = mixed(1000, 120, Durability::ProcessCrash, 200)
        .chain([on_4k_sectors(1100, Durability::ProcessCrash, 80)])
        .collect();
    check_all("process-crash", workloads, 10_000);
}

/// Two handles interleaved: the other side takes steps inside each side's
/// calls (see [`Hooked`]), so crash points fall between a producer's
/// pipelined pointer write and its flush with the consumer having read
/// and released up to that pointer, inside FUA writes, and so on.
///
/// [`Hooked`]: hooked::Hooked
#[test]
fn two_interleaved_handles_survive_every_power_cut_and_process_crash() {
    let workloads = mixed(2000, 24, Durability::PowerLoss, 150)
        .chain([on_4k_sectors(2100, Durability::PowerLoss, 100)])
        .map(Workload::interleaved)
        .collect();
    let t = check_all("power-loss, two handles interleaved", workloads, 50_000);
    assert!(t.in_flight > 0, "no crash point inside a transfer");
}

#[test]
fn two_interleaved_handles_survive_every_process_crash() {
    let workloads = mixed(3000, 60, Durability::ProcessCrash, 200)
        .map(Workload::interleaved)
        .collect();
    check_all("process-crash, two handles interleaved", workloads, 5_000);
}

// Format 2: the same workloads as format 1 above, on format-2 rings (the
// interleaved power-loss run with more of them), each required to check at
// least as many crash states as format 1's run does (267,579; 13,988;
// 262,397; 9,593 when this was written).

#[test]
fn format_2_power_loss_mode_survives_every_power_cut_and_process_crash() {
    let workloads = mixed(0, 40, Durability::PowerLoss, 200)
        .chain((100..102).map(|seed| on_4k_sectors(seed, Durability::PowerLoss, 120)))
        .map(Workload::format2)
        .collect();
    check_all("format 2, power-loss", workloads, 267_579);
}

#[test]
fn format_2_process_crash_mode_survives_every_process_crash() {
    let workloads = mixed(1000, 120, Durability::ProcessCrash, 200)
        .chain([on_4k_sectors(1100, Durability::ProcessCrash, 80)])
        .map(Workload::format2)
        .collect();
    check_all("format 2, process-crash", workloads, 13_988);
}

#[test]
fn format_2_two_interleaved_handles_survive_every_power_cut_and_process_crash() {
    let workloads = mixed(2000, 30, Durability::PowerLoss, 150)
        .chain([on_4k_sectors(2100, Durability::PowerLoss, 100)])
        .map(Workload::interleaved)
        .map(Workload::format2)
        .collect();
    check_all(
        "format 2, power-loss, two handles interleaved",
        workloads,
        262_397,
    );
}

#[test]
fn format_2_two_interleaved_handles_survive_every_process_crash() {
    let workloads = mixed(3000, 60, Durability::ProcessCrash, 200)
        .map(Workload::interleaved)
        .map(Workload::format2)
        .collect();
    check_all(
        "format 2, process-crash, two handles interleaved",
        workloads,
        9_593,
    );
}

/// Regression test: a consumer `advance` whose write has reached the device
/// (so the producer can read the new position) but is not yet durable, as
/// while a FUA write is in flight. The producer must not overwrite the
/// space that advance releases until the new consumer position is on
/// stable storage: otherwise a power cut can bring back the old consumer
/// position over overwritten data, and the consumer would then re-deliver
/// garbage in place of the items it had not finished releasing.
///
/// The consumer here writes in the process-crash mode only to stage that
/// in-flight state exactly: its position written, visible, not flushed.
#[test]
fn a_consumer_advance_in_flight_does_not_expose_overwritten_items_after_a_power_cut() {
    for eager in [true, false] {
        let dev = FaultDevice::new(MemDevice::new(512, 8)); // 2560 bytes of data
        create(&dev).unwrap();
        let interval = if eager {
            Duration::ZERO
        } else {
            Duration::from_secs(3600)
        };
        let opts = Options::new().consumer_poll_interval(interval);
        let mut p = Producer::attach(dev.clone(), opts.clone()).unwrap();
        let mut items = BTreeMap::new();
        let mut at = 0u64;
        for i in 0..5u64 {
            let it = item_bytes(7, i, 500);
            let end = p.push(&it).unwrap().offset();
            items.insert(at, (end, it));
            at = end;
        }
        p.advance(Position::new(at)).unwrap();
        let mut c = Consumer::attach(
            dev.clone(),
            opts.clone().durability(Durability::ProcessCrash),
        )
        .unwrap();
        let released = items.keys().nth(3).copied().unwrap();
        c.advance(Position::new(released)).unwrap();
        // The producer sees the new position and fills the released space.
        for i in 5..8u64 {
            p.push(&item_bytes(7, i, 500)).unwrap();
        }
        dev.crash_after(0);
        let point = dev.crash_point().unwrap();
        let mut states = 0;
        for image in point.power_cut_images(4096, 1) {
            let mut c =
                Consumer::attach(MemDevice::from_bytes(512, image), Options::new()).unwrap();
            let from = c.position();
            c.for_each_bytes(from, |start, next, bytes| {
                let (end, want) = &items[&start.offset()];
                assert_eq!(
                    (next.offset(), bytes),
                    (*end, want.as_slice()),
                    "eager {eager}: the item at {} came back overwritten (consumer at {})",
                    start.offset(),
                    from.offset()
                );
                Ok(())
            })
            .unwrap();
            states += 1;
        }
        assert!(states > 1);
    }
}

/// Regression test, the same hazard at sector granularity: the producer's
/// write ends before the space released by a not-yet-durable consumer
/// position, but the sector it writes whole reaches into that space. The
/// bytes after the new item in that sector belong to items the durable
/// consumer position has not released; they must not be overwritten before
/// the new consumer position is durable.
#[test]
fn a_write_whose_last_sector_reaches_into_not_yet_durable_released_space_is_safe() {
    // 5 data sectors: capacity 2560. Items are placed so that the write of
    // E ends at 2600, within the 100 + 2560 the durable consumer position
    // allows, while its sector runs to 3072, over B (released at 600, not
    // yet durably).
    let dev = FaultDevice::new(MemDevice::new(512, 8));
    create(&dev).unwrap();
    let opts = Options::new().consumer_poll_interval(Duration::ZERO);
    let mut p = Producer::attach(dev.clone(), opts.clone()).unwrap();
    let mut c = Consumer::attach(
        dev.clone(),
        opts.clone().durability(Durability::ProcessCrash),
    )
    .unwrap();
    let mut items = BTreeMap::new();
    let mut at = 0u64;
    let mut push = |p: &mut Producer<FaultDevice<MemDevice>>, n: u64, len: usize| {
        let it = item_bytes(9, n, len);
        let end = p.push(&it).unwrap().offset();
        items.insert(at, (end, it));
        at = end;
        end
    };
    push(&mut p, 0, 96); // A: 0..100
    push(&mut p, 1, 496); // B: 100..600
    let end = push(&mut p, 2, 1896); // C: 600..2500
    p.advance(Position::new(end)).unwrap();
    c.advance(Position::new(100)).unwrap(); // release A
    let end = push(&mut p, 3, 16); // D: 2500..2520; sees 100
    p.advance(Position::new(end)).unwrap(); // its flush makes 100 durable
    c.advance(Position::new(600)).unwrap(); // release B: visible, not durable
    let end = push(&mut p, 4, 76); // E: 2520..2600; sees 600
    assert_eq!(end, 2600);
    dev.crash_after(0);
    let point = dev.crash_point().unwrap();
    let mut states = 0;
    for image in point.power_cut_images(4096, 2) {
        let mut c = Consumer::attach(MemDevice::from_bytes(512, image), Options::new()).unwrap();
        let from = c.position();
        c.for_each_bytes(from, |start, next, bytes| {
            let (end, want) = &items[&start.offset()];
            assert_eq!(
                (next.offset(), bytes),
                (*end, want.as_slice()),
                "the item at {} came back overwritten (consumer at {})",
                start.offset(),
                from.offset()
            );
            Ok(())
        })
        .unwrap_or_else(|e| panic!("consumer at {}: {e}", from.offset()));
        states += 1;
    }
    assert!(states > 1);
}

/// Regression test, the mirror case: a producer `advance` whose pointer
/// write has reached the device (so the consumer reads it) but is not yet
/// durable. A consumer that releases items up to that pointer must make it
/// durable first: otherwise a power cut could keep the consumer position
/// and lose the producer's, leaving the consumer ahead of the producer.
///
/// The producer here writes in the process-crash mode, with its data
/// flushed by hand, only to stage that in-flight state exactly.
#[test]
fn a_producer_advance_in_flight_does_not_let_the_consumer_pass_it_after_a_power_cut() {
    let dev = FaultDevice::new(MemDevice::new(512, 16));
    create(&dev).unwrap();
    let staged = Options::new().durability(Durability::ProcessCrash);
    let mut p = Producer::attach(dev.clone(), staged).unwrap();
    let mut end = Position::ZERO;
    for i in 0..4 {
        end = p.push(&item_bytes(3, i, 300)).unwrap();
    }
    dev.flush().unwrap(); // the data is durable, as a power-loss advance makes it
    p.advance(end).unwrap(); // the pointer: visible, not durable
    let mut c = Consumer::attach(dev.clone(), Options::new()).unwrap();
    let (last, n) = c.fold(c.position(), 0, |n, _| n + 1).unwrap();
    assert_eq!((last, n), (end, 4));
    c.advance(last).unwrap();
    dev.crash_after(0);
    let point = dev.crash_point().unwrap();
    let mut states = 0;
    for image in point.power_cut_images(4096, 3) {
        let ring = MemDevice::from_bytes(512, image);
        Consumer::attach(ring.clone(), Options::new())
            .and_then(|_| Producer::attach(ring, Options::new()).map(|_| ()))
            .unwrap_or_else(|e| panic!("after a power cut: {e}"));
        states += 1;
    }
    assert!(states >= 1);
}

/// Regression test (issue 15, item 1): a consumer that releases in two
/// steps past a producer pointer it read while that pointer was written but
/// not flushed. The consumer's first `advance` needs no flush (its target
/// is known durable); its durable (FUA) write makes only the consumer
/// sector durable, not the producer pointer it had read. The second
/// `advance` must therefore flush before it releases past the old durable
/// pointer; it used to skip the flush, and a power cut then left the
/// consumer ahead of the producer ("the consumer position 24 ... is ahead
/// of the producer position 16") in 2 of 4 images.
///
/// Both sides run in the power-loss mode on one `FaultDevice`; the
/// producer's pipelined publication is stopped in another thread between
/// its pointer write and its flush.
#[test]
fn a_consumer_releasing_in_steps_never_passes_a_producer_pointer_not_yet_flushed() {
    let dev = FaultDevice::new(MemDevice::new(512, 16));
    create(&dev).unwrap();
    let held = HeldFlush::new(dev.clone());
    let mut p = Producer::attach(held.clone(), Options::new()).unwrap();
    let mut c = Consumer::attach(dev.clone(), Options::new()).unwrap();
    p.push(b"a").unwrap();
    let pb = p.push(b"b").unwrap();
    p.advance(pb).unwrap();
    let (pa, a) = c.pop().unwrap();
    assert_eq!(a, b"a");
    c.advance(pa).unwrap(); // flushes: pb is now known durable
    let pc = p.push(b"c").unwrap();
    p.advance_pipelined(pc).unwrap();
    let pd = p.push(b"d").unwrap();
    held.arm();
    let producer = std::thread::spawn(move || p.advance_pipelined(pd));
    // Let the producer go however this test ends.
    let release = Release(held.clone());
    // The producer has written pointer pc and waits in its flush.
    held.wait_until_held();
    assert_eq!(c.pop_from(pa).unwrap(), (pb, b"b".to_vec()));
    assert_eq!(c.pop_from(pb).unwrap(), (pc, b"c".to_vec())); // reads pc
    assert_eq!(c.known_producer(), pc);
    c.advance(pb).unwrap();
    let before = dev.counts().flushes;
    c.advance(pc).unwrap();
    let flushes = dev.counts().flushes - before;
    let states = both_sides_attach_after_a_power_cut(&dev, pc.offset());
    assert!(states >= 1, "{states} power-cut images");
    assert_eq!(flushes, 1, "releasing past pb must flush first");
    drop(release);
    let r = common::join_within(producer, Duration::from_secs(30), "the held producer");
    assert!(r.is_err(), "the producer's flush came after the crash");
}

/// Regression test (issue 15, item 1), the same with a process-crash
/// producer (its pointer is never flushed by the producer) and a
/// power-loss consumer: a power cut used to leave the consumer ahead of
/// the producer in 1 of 2 images.
#[test]
fn a_power_loss_consumer_never_passes_an_unflushed_process_crash_producer() {
    let dev = FaultDevice::new(MemDevice::new(512, 16));
    create(&dev).unwrap();
    let mut p = Producer::attach(
        dev.clone(),
        Options::new().durability(Durability::ProcessCrash),
    )
    .unwrap();
    let mut c = Consumer::attach(dev.clone(), Options::new()).unwrap();
    p.push(b"a").unwrap();
    let pb = p.push(b"b").unwrap();
    p.advance(pb).unwrap();
    let (pa, _) = c.pop().unwrap();
    c.advance(pa).unwrap(); // flushes: pb is now durable
    let pc = p.push(b"c").unwrap();
    p.advance(pc).unwrap(); // written, never flushed
    assert_eq!(c.pop_from(pb).unwrap(), (pc, b"c".to_vec()));
    c.advance(pb).unwrap();
    c.advance(pc).unwrap();
    let states = both_sides_attach_after_a_power_cut(&dev, pc.offset());
    assert!(states >= 1, "{states} power-cut images");
}

/// Regression test (issue 12): a streaming producer writes the next batch's
/// items and the previous batch's pointer in one transfer, in flight
/// together, then flushes. A crash may keep any subset of that transfer's
/// writes (and a power cut any subset of the unflushed sector writes):
/// every image must publish the previous pointer or the one before it,
/// with its items intact, and never the batch in flight. With the batch's
/// own pointer in its transfer (the mutation this guards against) some
/// images publish a pointer whose items were never written.
#[test]
fn a_pipelined_pointer_in_flight_with_the_next_batch_never_publishes_that_batch() {
    let dev = FaultDevice::new(MemDevice::new(512, 16));
    create(&dev).unwrap();
    let mut p = Producer::attach(dev.clone(), Options::new()).unwrap();
    let first = vec![1u8; 300];
    let a = p.push(&first).unwrap();
    p.advance_pipelined(a).unwrap();
    // Items of 700 bytes: batches straddle sectors, and the next batch
    // rewrites the sector holding the previous one's end.
    let x = vec![2u8; 700];
    let b = p.push(&x).unwrap();
    p.advance_pipelined(b).unwrap(); // publishes a, b pending
    let (z, w) = (vec![4u8; 500], vec![5u8; 600]);
    let writes = dev.counts().writes;
    let c = p.push_many([&z[..], &w[..]]).unwrap();
    assert_eq!(
        dev.counts().writes,
        writes,
        "the push is written with the pointer"
    );
    dev.crash_after(1); // inside the next call's transfer
    let e = p.advance_pipelined(c).unwrap_err();
    assert!(e.is_io(), "{e}");
    let point = dev.crash_point().unwrap();
    assert!(
        point.in_flight().len() >= 2,
        "the crash came with the items and the pointer in flight: {:?}",
        point.in_flight()
    );
    let published = [(a, vec![first.clone()]), (b, vec![first, x])];
    let mut images = 0;
    let all = point
        .power_cut_images(4096, 11)
        .chain(point.process_crash_images(64));
    for image in all {
        let ring = MemDevice::from_bytes(512, image);
        let mut consumer = Consumer::attach(ring, Options::new())
            .unwrap_or_else(|e| panic!("consumer attach after a crash: {e}"));
        let end = consumer.known_producer();
        let (_, expected) = published
            .iter()
            .find(|(at, _)| *at == end)
            .unwrap_or_else(|| panic!("image {images} publishes {end:?}, not {a:?} or {b:?}"));
        let mut from = Position::new(0);
        let mut got = Vec::new();
        while from < end {
            let (next, item) = consumer
                .pop_from(from)
                .unwrap_or_else(|e| panic!("image {images}: pop at {from:?}: {e}"));
            got.push(item);
            from = next;
        }
        assert_eq!(&got, expected, "image {images}");
        images += 1;
    }
    assert!(images >= 4, "{images} images");
}
