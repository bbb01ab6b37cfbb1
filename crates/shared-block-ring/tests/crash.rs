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
//! The number of distinct crash states checked is printed (run with
//! `--nocapture` to see it).

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shared_block_ring::device::{CrashPoint, FaultDevice};
use shared_block_ring::format::decode_state;
use shared_block_ring::BlockDevice as _;
use shared_block_ring::{
    create, layout, Consumer, Created, Durability, Error, MemDevice, Options, Position, Producer,
    RetryReason, Side, SignatureProblem,
};

#[derive(Debug, Clone)]
enum Op {
    Push(usize),
    PushMany(Vec<usize>),
    /// Publish up to the end of the k-th unpublished item (modulo).
    ProducerAdvance(usize),
    /// The same with `advance_pipelined` (one flush; the pointer is
    /// written by the next call, `sync`, `advance` or drop).
    ProducerAdvancePipelined(usize),
    Sync,
    ProducerState,
    Pop,
    Fold,
    /// Release up to the end of the k-th unreleased published item (modulo).
    ConsumerAdvance(usize),
    Suspend,
    Resume,
    ReattachProducer,
    ReattachConsumer,
}

#[derive(Debug, Clone)]
struct Workload {
    seed: u64,
    sector_size: usize,
    sectors: u64,
    durability: Durability,
    /// Whether the producer re-reads the consumer sector on every push.
    eager: bool,
    ops: Vec<Op>,
}

impl Workload {
    fn generate(
        seed: u64,
        sector_size: usize,
        sectors: u64,
        durability: Durability,
        len: usize,
    ) -> Workload {
        let mut rng = StdRng::seed_from_u64(seed);
        let capacity = (sectors as usize - 3) * sector_size;
        let size = |rng: &mut StdRng| match rng.random_range(0..10) {
            0 => 0,
            1..=5 => rng.random_range(1..200),
            6..=8 => rng.random_range(200..sector_size * 2),
            _ => rng.random_range(0..capacity / 2),
        };
        let ops = (0..len)
            .map(|_| match rng.random_range(0..100) {
                0..=27 => Op::Push(size(&mut rng)),
                28..=37 => {
                    let n = rng.random_range(1..5);
                    Op::PushMany((0..n).map(|_| size(&mut rng) / 2).collect())
                }
                38..=47 => Op::ProducerAdvance(rng.random::<u32>() as usize),
                48..=55 => Op::ProducerAdvancePipelined(rng.random::<u32>() as usize),
                56 => Op::Sync,
                57..=58 => Op::ProducerState,
                59..=66 => Op::Pop,
                67..=69 => Op::Fold,
                70..=87 => Op::ConsumerAdvance(rng.random::<u32>() as usize),
                88..=89 => Op::Suspend,
                90..=95 => Op::Resume,
                96..=97 => Op::ReattachProducer,
                _ => Op::ReattachConsumer,
            })
            .collect();
        Workload {
            seed,
            sector_size,
            sectors,
            durability,
            eager: seed % 2 == 0,
            ops,
        }
    }

    fn options(&self) -> Options {
        // Deterministic replays need a deterministic producer: it either
        // looks at the consumer on every push, or only when the ring looks
        // full (the interval is never reached).
        let interval = if self.eager {
            Duration::ZERO
        } else {
            Duration::from_secs(24 * 3600)
        };
        Options::new()
            .durability(self.durability)
            .consumer_poll_interval(interval)
            .queue("crash")
            .client(format!("seed {}", self.seed))
    }

    fn capacity(&self) -> u64 {
        (self.sectors - 3) * self.sector_size as u64
    }
}

/// The bytes of the `n`-th item pushed by a workload.
fn item_bytes(seed: u64, n: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ n.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// What the workload had been told by the library when the crash came.
#[derive(Debug, Clone, Default)]
struct Acked {
    /// `create` returned.
    created: bool,
    /// Every item pushed and not abandoned: start -> (end, bytes).
    items: BTreeMap<u64, (u64, Vec<u8>)>,
    /// The last producer position whose `advance` returned.
    p_ack: u64,
    /// A producer pointer write that had not returned.
    p_inflight: Option<u64>,
    /// The position an `advance_pipelined` left to be written later.
    deferred: Option<u64>,
    c_ack: u64,
    c_inflight: Option<u64>,
    /// The consumer's suspend flag as last set by a returned request.
    s_ack: bool,
    s_inflight: Option<bool>,
}

/// How a workload run ended.
enum End {
    Finished,
    /// An operation failed because the device had crashed.
    Crashed,
}

/// Runs `w` on `dev` until it ends or the device crashes. Any error other
/// than the expected transient ones, or an I/O error after the crash,
/// is a violation (panics with the workload and step).
fn run(w: &Workload, dev: &FaultDevice<MemDevice>) -> (Acked, End) {
    let mut a = Acked::default();
    let stop = |what: &str, e: Error, step: usize| -> End {
        assert!(
            e.is_io() && dev.has_crashed(),
            "workload seed {} step {step}: {what}: unexpected error {e}",
            w.seed
        );
        End::Crashed
    };
    match create(dev) {
        Ok(_) => a.created = true,
        Err(e) => return (a, stop("create", e, 0)),
    }
    let opts = w.options();
    let mut producer = match Producer::attach(dev.clone(), opts.clone()) {
        Ok(p) => Some(p),
        Err(e) => return (a, stop("producer attach", e, 0)),
    };
    let mut consumer = match Consumer::attach(dev.clone(), opts.clone()) {
        Ok(c) => c,
        Err(e) => return (a, stop("consumer attach", e, 0)),
    };
    let mut tail = 0u64;
    let mut pushed = 0u64;
    for (step, op) in w.ops.iter().enumerate() {
        match op {
            Op::Push(_) | Op::PushMany(_) => {
                let Some(p) = producer.as_mut() else { continue };
                let lens = match op {
                    Op::Push(l) => vec![*l],
                    Op::PushMany(ls) => ls.clone(),
                    _ => unreachable!(),
                };
                let items: Vec<Vec<u8>> = lens
                    .iter()
                    .enumerate()
                    .map(|(i, &l)| item_bytes(w.seed, pushed + i as u64, l))
                    .collect();
                let r = match op {
                    Op::Push(_) => p.push(&items[0]),
                    _ => p.push_many(items.iter().map(Vec::as_slice)),
                };
                match r {
                    Ok(end) => {
                        for it in items {
                            let next = tail + layout::item_stream_len(it.len() as u64);
                            a.items.insert(tail, (next, it));
                            tail = next;
                            pushed += 1;
                        }
                        assert_eq!(end.offset(), tail, "seed {} step {step}", w.seed);
                    }
                    Err(Error::Retry(RetryReason::Full)) | Err(Error::Suspended) => {}
                    // A batch may exceed a tiny ring as a whole.
                    Err(Error::TooLarge { needed, .. })
                        if needed > w.capacity()
                            && lens
                                .iter()
                                .map(|&l| layout::item_stream_len(l as u64))
                                .sum::<u64>()
                                > w.capacity() => {}
                    Err(e) => return (a, stop("push", e, step)),
                }
            }
            Op::ProducerAdvance(k) => {
                let Some(p) = producer.as_mut() else { continue };
                let ends: Vec<u64> = a.items.range(a.p_ack..).map(|(_, (e, _))| *e).collect();
                if ends.is_empty() {
                    continue;
                }
                // Below a pending pipelined position, `advance` publishes
                // that one.
                let asked = ends[k % ends.len()];
                let target = asked.max(a.deferred.unwrap_or(0));
                a.p_inflight = Some(target);
                match p.advance(Position::new(asked)) {
                    Ok(()) => {
                        a.p_ack = target;
                        a.p_inflight = None;
                        a.deferred = None;
                    }
                    Err(e) => return (a, stop("producer advance", e, step)),
                }
            }
            Op::ProducerAdvancePipelined(k) => {
                let Some(p) = producer.as_mut() else { continue };
                if w.durability != Durability::PowerLoss {
                    // There it is `advance`.
                    let ends: Vec<u64> = a.items.range(a.p_ack..).map(|(_, (e, _))| *e).collect();
                    if ends.is_empty() {
                        continue;
                    }
                    let target = ends[k % ends.len()];
                    a.p_inflight = Some(target);
                    match p.advance_pipelined(Position::new(target)) {
                        Ok(()) => {
                            a.p_ack = target;
                            a.p_inflight = None;
                        }
                        Err(e) => return (a, stop("producer advance_pipelined", e, step)),
                    }
                    continue;
                }
                let from = a.deferred.unwrap_or(a.p_ack);
                let ends: Vec<u64> = a.items.range(from..).map(|(_, (e, _))| *e).collect();
                if ends.is_empty() {
                    continue;
                }
                let target = ends[k % ends.len()];
                // This call writes the previous pending pointer.
                a.p_inflight = a.deferred;
                match p.advance_pipelined(Position::new(target)) {
                    Ok(()) => {
                        if let Some(d) = a.deferred {
                            a.p_ack = d;
                        }
                        a.deferred = Some(target);
                        a.p_inflight = None;
                    }
                    Err(e) => return (a, stop("producer advance_pipelined", e, step)),
                }
            }
            Op::Sync => {
                let Some(p) = producer.as_mut() else { continue };
                a.p_inflight = a.deferred;
                match p.sync() {
                    Ok(()) => {
                        if let Some(d) = a.deferred.take() {
                            a.p_ack = d;
                        }
                        a.p_inflight = None;
                    }
                    Err(e) => return (a, stop("producer sync", e, step)),
                }
            }
            Op::ProducerState => match producer.as_mut() {
                Some(p) => {
                    if let Err(e) = p.state() {
                        return (a, stop("producer state", e, step));
                    }
                }
                None => match Producer::attach(dev.clone(), opts.clone()) {
                    Ok(p) => producer = Some(p),
                    Err(Error::Suspended) => {}
                    Err(e) => return (a, stop("producer attach", e, step)),
                },
            },
            Op::ReattachProducer => {
                // Dropping the producer writes a pending pipelined pointer.
                a.p_inflight = a.deferred;
                producer = None;
                if dev.has_crashed() {
                    return (a, End::Crashed);
                }
                if let Some(d) = a.deferred.take() {
                    a.p_ack = d;
                }
                a.p_inflight = None;
                // Unpublished items are abandoned; their space is reused.
                a.items.retain(|&start, _| start < a.p_ack);
                tail = a.p_ack;
                match Producer::attach(dev.clone(), opts.clone()) {
                    Ok(p) => producer = Some(p),
                    Err(Error::Suspended) => {}
                    Err(e) => return (a, stop("producer attach", e, step)),
                }
            }
            Op::Pop => match consumer.pop() {
                Ok((next, got)) => {
                    let at = consumer.position().offset();
                    let want = a.items.get(&at).expect("popped an item never pushed");
                    assert_eq!((next.offset(), &got), (want.0, &want.1), "live pop");
                }
                Err(Error::Retry(RetryReason::Empty)) => {}
                Err(e) => return (a, stop("pop", e, step)),
            },
            Op::Fold => {
                let from = consumer.position();
                match consumer.fold(from, 0usize, |n, _| n + 1) {
                    Ok((end, n)) => {
                        let want = a.items.range(from.offset()..end.offset()).count();
                        assert_eq!(n, want, "live fold");
                    }
                    Err(e) => return (a, stop("fold", e, step)),
                }
            }
            Op::ConsumerAdvance(k) => {
                let ends: Vec<u64> = a
                    .items
                    .range(a.c_ack..a.p_ack)
                    .map(|(_, (e, _))| *e)
                    .collect();
                if ends.is_empty() {
                    continue;
                }
                let target = ends[k % ends.len()];
                a.c_inflight = Some(target);
                match consumer.advance(Position::new(target)) {
                    Ok(()) => {
                        a.c_ack = target;
                        a.c_inflight = None;
                    }
                    Err(e) => return (a, stop("consumer advance", e, step)),
                }
            }
            Op::Suspend | Op::Resume => {
                let want = matches!(op, Op::Suspend);
                a.s_inflight = Some(want);
                let r = if want {
                    consumer.suspend()
                } else {
                    consumer.resume()
                };
                match r {
                    Ok(()) => a.s_ack = want,
                    Err(Error::Retry(RetryReason::HandshakePending)) => {}
                    Err(e) => return (a, stop("suspend/resume", e, step)),
                }
                a.s_inflight = None;
                if !want && producer.is_none() {
                    match Producer::attach(dev.clone(), opts.clone()) {
                        Ok(p) => producer = Some(p),
                        // The resume is not acknowledged yet.
                        Err(Error::Suspended) => {}
                        Err(e) => return (a, stop("producer attach", e, step)),
                    }
                }
            }
            Op::ReattachConsumer => {
                drop(consumer);
                consumer = match Consumer::attach(dev.clone(), opts.clone()) {
                    Ok(c) => c,
                    Err(e) => return (a, stop("consumer attach", e, 0)),
                };
            }
        }
    }
    // Dropping the producer writes a pending pipelined pointer.
    a.p_inflight = a.deferred;
    drop(producer);
    if dev.has_crashed() {
        return (a, End::Crashed);
    }
    if let Some(d) = a.deferred.take() {
        a.p_ack = d;
    }
    a.p_inflight = None;
    (a, End::Finished)
}

/// Checks the promise on one crash image. `salt` varies the item pushed
/// afterwards.
fn check_image(w: &Workload, a: &Acked, image: Vec<u8>, salt: u64) -> Result<(), String> {
    let ss = w.sector_size;
    let suspend_on_disk = decode_state(Side::Consumer, &image[2 * ss..3 * ss])
        .map(|s| s.flag)
        .ok();
    let disk = MemDevice::from_bytes(ss, image);
    let opts = w.options();
    let mut c = match Consumer::attach(disk.clone(), opts.clone()) {
        Ok(c) => c,
        Err(Error::NotInitialised(SignatureProblem::Blank)) if !a.created => {
            if create(&disk).map_err(|e| format!("create after a crash in create: {e}"))?
                != Created::Created
            {
                return Err("create after a crash found a ring".into());
            }
            Consumer::attach(disk.clone(), opts.clone())
                .map_err(|e| format!("attach after re-create: {e}"))?
        }
        Err(e) => return Err(format!("consumer attach: {e}")),
    };
    let cpos = c.position().offset();
    if cpos != a.c_ack && Some(cpos) != a.c_inflight {
        return Err(format!(
            "consumer position {cpos}: expected {} (returned) or {:?} (in flight)",
            a.c_ack, a.c_inflight
        ));
    }
    let suspended = suspend_on_disk.unwrap_or(false);
    if suspended != a.s_ack && Some(suspended) != a.s_inflight {
        return Err(format!(
            "suspend flag {suspended}: expected {} or {:?}",
            a.s_ack, a.s_inflight
        ));
    }
    let mut bad = None;
    let end = c
        .for_each_bytes(Position::new(cpos), |start, next, bytes| {
            match a.items.get(&start.offset()) {
                Some((e, want)) if *e == next.offset() && want == bytes => {}
                Some((e, want)) => {
                    bad.get_or_insert(format!(
                        "item at {}: {} bytes ending at {}, expected {} bytes ending at {e}{}",
                        start.offset(),
                        bytes.len(),
                        next.offset(),
                        want.len(),
                        if want.len() == bytes.len() {
                            " (contents differ)"
                        } else {
                            ""
                        }
                    ));
                }
                None => {
                    bad.get_or_insert(format!(
                        "delivered an item at {} that was never pushed",
                        start.offset()
                    ));
                }
            }
            Ok(())
        })
        .map_err(|e| format!("reading the items: {e}"))?
        .offset();
    if let Some(b) = bad {
        return Err(b);
    }
    if end != a.p_ack && Some(end) != a.p_inflight {
        return Err(format!(
            "producer position {end}: expected {} (returned) or {:?} (in flight)",
            a.p_ack, a.p_inflight
        ));
    }
    // The ring keeps working.
    let mut p = match Producer::attach(disk.clone(), opts.clone()) {
        Ok(p) if !suspended => p,
        Err(Error::Suspended) if suspended => {
            c.resume().map_err(|e| format!("resume: {e}"))?;
            Producer::attach(disk.clone(), opts.clone())
                .map_err(|e| format!("producer attach after resume: {e}"))?
        }
        Ok(_) => return Err("producer attached to a suspended ring".into()),
        Err(e) => return Err(format!("producer attach: {e}")),
    };
    c.advance(Position::new(end))
        .map_err(|e| format!("consumer advance: {e}"))?;
    let len = (salt.wrapping_mul(131) % (w.capacity() - 4).min(3000)) as usize;
    let marker = item_bytes(!w.seed, salt, len);
    let next = p.push(&marker).map_err(|e| format!("push: {e}"))?;
    p.advance(next)
        .map_err(|e| format!("producer advance: {e}"))?;
    let (after, got) = c.pop().map_err(|e| format!("pop: {e}"))?;
    if after != next || got != marker {
        return Err("the item pushed after recovery came back wrong".into());
    }
    c.advance(after)
        .map_err(|e| format!("consumer advance: {e}"))?;
    Ok(())
}

#[derive(Debug, Default)]
struct Tally {
    points: u64,
    states: u64,
}

/// Crash states checked per crash point at most (power-loss mode).
const STATES_PER_POINT: usize = 2048;

/// Enumerates every crash point of `w` and checks every crash state there.
fn check_workload(w: &Workload) -> Tally {
    // A run without a crash counts the crash points.
    let dev = FaultDevice::new(MemDevice::new(w.sector_size, w.sectors));
    let (_, end) = run(w, &dev);
    assert!(matches!(end, End::Finished));
    let total = dev.counts().crash_points;
    let mut tally = Tally::default();
    for k in 0..=total {
        let dev = FaultDevice::new(MemDevice::new(w.sector_size, w.sectors));
        dev.crash_after(k);
        let (acked, _) = run(w, &dev);
        let point: CrashPoint = dev.crash_point().expect("the device crashed");
        let images: Vec<Vec<u8>> = match w.durability {
            Durability::PowerLoss => point.power_cut_images(STATES_PER_POINT, k).collect(),
            _ => vec![point.process_crash_image().to_vec()],
        };
        let mut seen = HashSet::new();
        for (i, image) in images.into_iter().enumerate() {
            assert!(seen.insert(image.clone()), "images are distinct");
            if let Err(e) = check_image(w, &acked, image, k * 1000 + i as u64) {
                panic!(
                    "VIOLATION: {} workload seed {}, crash point {k} of {total}, state {i} \
                     ({} unflushed sector writes): {e}\nacked: p={} (in flight {:?}), c={} \
                     (in flight {:?}), suspend={} (in flight {:?})",
                    w.durability,
                    w.seed,
                    point.unflushed().len(),
                    acked.p_ack,
                    acked.p_inflight,
                    acked.c_ack,
                    acked.c_inflight,
                    acked.s_ack,
                    acked.s_inflight
                );
            }
            tally.states += 1;
        }
        tally.points += 1;
    }
    tally
}

fn check_all(name: &str, workloads: Vec<Workload>, min_states: u64) {
    let started = Instant::now();
    let mut total = Tally::default();
    for w in &workloads {
        let t = check_workload(w);
        total.points += t.points;
        total.states += t.states;
    }
    println!(
        "crash checker ({name}): {} workloads, {} crash points, {} distinct crash states checked, \
         0 violations, in {:.1?}",
        workloads.len(),
        total.points,
        total.states,
        started.elapsed()
    );
    assert!(
        total.states >= min_states,
        "only {} crash states checked",
        total.states
    );
}

#[test]
fn power_loss_mode_survives_every_power_cut_and_process_crash() {
    let workloads = (0..40u64)
        .map(|seed| {
            let sectors = [16, 8, 24, 5][seed as usize % 4];
            Workload::generate(seed, 512, sectors, Durability::PowerLoss, 200)
        })
        .chain((100..102).map(|seed| Workload::generate(seed, 4096, 6, Durability::PowerLoss, 120)))
        .collect();
    check_all("power-loss", workloads, 100_000);
}

#[test]
fn process_crash_mode_survives_every_process_crash() {
    let workloads = (0..120u64)
        .map(|seed| {
            let sectors = [16, 8, 24, 5][seed as usize % 4];
            Workload::generate(1000 + seed, 512, sectors, Durability::ProcessCrash, 200)
        })
        .chain([Workload::generate(
            1100,
            4096,
            6,
            Durability::ProcessCrash,
            80,
        )])
        .collect();
    check_all("process-crash", workloads, 10_000);
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

/// A device that holds back the next flush while armed: the flush
/// announces itself and waits to be released, so that a test can act on
/// the other handle between a producer's pointer write and its flush.
#[derive(Clone)]
struct HeldFlush {
    inner: FaultDevice<MemDevice>,
    gate: std::sync::Arc<(std::sync::Mutex<Gate>, std::sync::Condvar)>,
}

#[derive(Default)]
struct Gate {
    armed: bool,
    waiting: bool,
    released: bool,
}

/// How long either side of a held flush waits for the other.
const GATE_DEADLINE: Duration = Duration::from_secs(20);

impl HeldFlush {
    fn new(inner: FaultDevice<MemDevice>) -> HeldFlush {
        HeldFlush {
            inner,
            gate: Default::default(),
        }
    }

    fn arm(&self) {
        self.gate.0.lock().unwrap().armed = true;
    }

    /// Waits until the armed flush has been called (and is being held).
    fn wait_until_held(&self) {
        let (lock, cv) = &*self.gate;
        let g = lock.lock().unwrap();
        let (g, timeout) = cv
            .wait_timeout_while(g, GATE_DEADLINE, |g| !g.waiting)
            .unwrap();
        assert!(
            !timeout.timed_out() && g.waiting,
            "the producer never reached its flush"
        );
    }

    fn release(&self) {
        let (lock, cv) = &*self.gate;
        lock.lock().unwrap().released = true;
        cv.notify_all();
    }
}

impl shared_block_ring::BlockDevice for HeldFlush {
    fn sector_size(&self) -> usize {
        self.inner.sector_size()
    }
    fn sectors(&self) -> u64 {
        self.inner.sectors()
    }
    fn read(&self, sector: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.inner.read(sector, buf)
    }
    fn write(&self, sector: u64, buf: &[u8]) -> std::io::Result<()> {
        self.inner.write(sector, buf)
    }
    fn write_durable(&self, sector: u64, buf: &[u8]) -> std::io::Result<()> {
        self.inner.write_durable(sector, buf)
    }
    fn flush(&self) -> std::io::Result<()> {
        let (lock, cv) = &*self.gate;
        let mut g = lock.lock().unwrap();
        if g.armed {
            g.armed = false;
            g.waiting = true;
            cv.notify_all();
            let (g, timeout) = cv
                .wait_timeout_while(g, GATE_DEADLINE, |g| !g.released)
                .unwrap();
            drop(g);
            if timeout.timed_out() {
                return Err(std::io::Error::other("the held flush was never released"));
            }
        }
        self.inner.flush()
    }
    fn try_lock(&self, side: Side) -> std::io::Result<Result<(), String>> {
        self.inner.try_lock(side)
    }
    fn unlock(&self, side: Side) {
        self.inner.unlock(side)
    }
}

/// Releases a held flush when dropped.
struct Release(HeldFlush);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// Every power-cut image of `dev` (crashed now) attaches on both sides, with
/// the consumer at `released`. Returns how many images there were.
fn both_sides_attach_after_a_power_cut(dev: &FaultDevice<MemDevice>, released: u64) -> usize {
    dev.crash_after(0);
    let point = dev.crash_point().unwrap();
    let mut states = 0;
    for image in point.power_cut_images(4096, 5) {
        let ring = MemDevice::from_bytes(512, image);
        let c = Consumer::attach(ring.clone(), Options::new())
            .unwrap_or_else(|e| panic!("consumer attach after a power cut: {e}"));
        assert_eq!(c.position().offset(), released);
        drop(c);
        Producer::attach(ring, Options::new())
            .unwrap_or_else(|e| panic!("producer attach after a power cut: {e}"));
        states += 1;
    }
    states
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
    let r = producer.join().unwrap();
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
