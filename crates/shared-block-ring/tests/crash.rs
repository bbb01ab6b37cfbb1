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

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shared_block_ring::device::{CrashPoint, FaultDevice};
use shared_block_ring::format::{decode_state, v2 as codec};
use shared_block_ring::BlockDevice as _;
use shared_block_ring::{
    create, create_with, layout, Consumer, Created, Durability, Error, MemDevice, Options,
    Position, Producer, RetryReason, RingFormat, Side, SignatureProblem,
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

impl Op {
    fn is_producer(&self) -> bool {
        matches!(
            self,
            Op::Push(_)
                | Op::PushMany(_)
                | Op::ProducerAdvance(_)
                | Op::ProducerAdvancePipelined(_)
                | Op::Sync
                | Op::ProducerState
                | Op::ReattachProducer
        )
    }
}

#[derive(Debug, Clone)]
struct Workload {
    seed: u64,
    sector_size: usize,
    sectors: u64,
    durability: Durability,
    format: RingFormat,
    /// Whether the producer re-reads the consumer sector on every push.
    eager: bool,
    /// Two handles interleaved: the other side also acts in the middle of
    /// a side's call (see [`Hooked`]).
    interleave: bool,
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
        let mut w = Workload {
            seed,
            sector_size,
            sectors,
            durability,
            format: RingFormat::V1,
            eager: seed % 2 == 0,
            interleave: false,
            ops: Vec::new(),
        };
        w.ops = (0..len)
            .map(|_| match rng.random_range(0..100) {
                0..=27 => Op::Push(w.item_size(&mut rng)),
                28..=37 => {
                    let n = rng.random_range(1..5);
                    Op::PushMany((0..n).map(|_| w.item_size(&mut rng) / 2).collect())
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
        w
    }

    /// The same, with the other side acting inside each side's calls.
    fn interleaved(mut self) -> Workload {
        self.interleave = true;
        self
    }

    /// The same on a format-2 ring.
    fn format2(mut self) -> Workload {
        self.format = RingFormat::V2;
        self
    }

    /// Stream bytes of an item of `len` bytes.
    fn stream_len(&self, len: usize) -> u64 {
        match self.format {
            RingFormat::V1 => layout::item_stream_len(len as u64),
            _ => layout::v2::record_stream_len(len as u64),
        }
    }

    /// True when `advance_pipelined` defers its pointer (format 1, both
    /// modes); otherwise it is `advance`.
    fn pipelines(&self) -> bool {
        self.format == RingFormat::V1
    }

    fn item_size(&self, rng: &mut StdRng) -> usize {
        match rng.random_range(0..10) {
            0 => 0,
            1..=5 => rng.random_range(1..200),
            6..=8 => rng.random_range(200..self.sector_size * 2),
            _ => rng.random_range(0..self.capacity() as usize / 2),
        }
    }

    /// A producer step taken inside a consumer call: a push, a
    /// publication or a look at the consumer, in the proportions of the
    /// main mix.
    fn producer_op(&self, rng: &mut StdRng) -> Op {
        match rng.random_range(0..59) {
            0..=27 => Op::Push(self.item_size(rng)),
            28..=37 => {
                let n = rng.random_range(1..5);
                Op::PushMany((0..n).map(|_| self.item_size(rng) / 2).collect())
            }
            38..=47 => Op::ProducerAdvance(rng.random::<u32>() as usize),
            48..=55 => Op::ProducerAdvancePipelined(rng.random::<u32>() as usize),
            56 => Op::Sync,
            _ => Op::ProducerState,
        }
    }

    /// A consumer step taken inside a producer call: a read, a release or
    /// a suspend request, in the proportions of the main mix.
    fn consumer_op(&self, rng: &mut StdRng) -> Op {
        match rng.random_range(0..37) {
            0..=7 => Op::Pop,
            8..=10 => Op::Fold,
            11..=28 => Op::ConsumerAdvance(rng.random::<u32>() as usize),
            29..=30 => Op::Suspend,
            _ => Op::Resume,
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
            .format(self.format)
            // Never expires during a run: no owner check, no heartbeat.
            .lease(Duration::from_millis(u32::MAX.into()))
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

type Dev = FaultDevice<MemDevice>;

/// The device each side uses: the shared [`FaultDevice`] and, in an
/// interleaved workload, a hook that lets the other side take a few steps
/// in the middle of this side's call: before each of its device
/// operations, and inside each durable (FUA) write, once the write is in
/// the device's cache (visible to the other side) and before it is
/// durable. One thread runs everything, so every run of a workload is the
/// same and can be crashed at each of its crash points in turn.
///
/// This reaches the states where one side acts on a write of the other
/// that is visible but not yet durable: the consumer reading a pipelined
/// pointer written just before its flush, and releasing up to it; the
/// producer reading a consumer position whose FUA write has not completed,
/// and filling the space it releases.
#[derive(Clone)]
struct Hooked {
    inner: Dev,
    side: Side,
    world: Weak<World>,
}

impl Hooked {
    fn hook(&self) {
        if let Some(world) = self.world.upgrade() {
            let steps = world.next_steps(self.side);
            world.run_steps(self.side, steps);
        }
    }
}

impl shared_block_ring::BlockDevice for Hooked {
    fn sector_size(&self) -> usize {
        self.inner.sector_size()
    }
    fn sectors(&self) -> u64 {
        self.inner.sectors()
    }
    fn read(&self, sector: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.hook();
        self.inner.read(sector, buf)
    }
    fn write(&self, sector: u64, buf: &[u8]) -> std::io::Result<()> {
        self.hook();
        self.inner.write(sector, buf)
    }
    fn write_durable(&self, sector: u64, buf: &[u8]) -> std::io::Result<()> {
        self.hook();
        if let Some(world) = self.world.upgrade() {
            let steps = world.next_steps(self.side);
            if !steps.is_empty() {
                // In flight: visible to the other side, not yet durable.
                self.inner.write(sector, buf)?;
                world.run_steps(self.side, steps);
            }
        }
        self.inner.write_durable(sector, buf)
    }
    fn flush(&self) -> std::io::Result<()> {
        self.hook();
        self.inner.flush()
    }
    /// The fault device's own: its writes are in flight together (a crash
    /// keeps any subset of them).
    fn transfer(
        &self,
        writes: &[(u64, &[u8])],
        reads: &mut [(u64, &mut [u8])],
    ) -> std::io::Result<()> {
        self.hook();
        self.inner.transfer(writes, reads)
    }
    fn try_lock(&self, side: Side) -> std::io::Result<Result<(), String>> {
        self.inner.try_lock(side)
    }
    fn unlock(&self, side: Side) {
        self.inner.unlock(side)
    }
}

/// The producer's side of a run.
struct ProducerSide {
    p: Option<Producer<Hooked>>,
    /// The end of the last item pushed.
    tail: u64,
    /// Items pushed so far (numbers them).
    pushed: u64,
}

/// One run of a workload: both handles, and what the library told them.
struct World {
    w: Workload,
    dev: Dev,
    me: Weak<World>,
    acked: Mutex<Acked>,
    producer: Mutex<ProducerSide>,
    consumer: Mutex<Option<Consumer<Hooked>>>,
    /// Hook calls so far: numbers them for the schedule.
    hooks: AtomicU64,
    /// True while a hook runs steps (they do not nest).
    nested: AtomicBool,
    /// Steps taken inside the other side's calls.
    inside: AtomicU64,
}

/// Locks a mutex of this single-threaded test (a panic already fails it).
fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl World {
    fn device(&self, side: Side) -> Hooked {
        Hooked {
            inner: self.dev.clone(),
            side,
            world: self.me.clone(),
        }
    }

    fn acked(&self) -> MutexGuard<'_, Acked> {
        locked(&self.acked)
    }

    /// An error from the library: after the crash, the end of the run;
    /// anything else is a violation.
    fn stop(&self, what: &str, e: Error, step: usize) -> End {
        assert!(
            e.is_io() && self.dev.has_crashed(),
            "workload seed {} step {step}: {what}: unexpected error {e}",
            self.w.seed
        );
        End::Crashed
    }

    /// The steps the other side takes at this hook of `side`'s call: none
    /// most of the time, or one to three, drawn from the seed and the
    /// number of the hook.
    fn next_steps(&self, side: Side) -> Vec<Op> {
        if !self.w.interleave || self.nested.load(Ordering::Relaxed) {
            return Vec::new();
        }
        let n = self.hooks.fetch_add(1, Ordering::Relaxed);
        let mut rng = StdRng::seed_from_u64(self.w.seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        if rng.random_range(0..4) != 0 {
            return Vec::new();
        }
        (0..rng.random_range(1..=3))
            .map(|_| match side {
                Side::Producer => self.w.consumer_op(&mut rng),
                Side::Consumer => self.w.producer_op(&mut rng),
            })
            .collect()
    }

    /// Runs the other side's `steps` inside a call of `side`, unless the
    /// other side is itself in a call.
    fn run_steps(&self, side: Side, steps: Vec<Op>) {
        if steps.is_empty() {
            return;
        }
        self.nested.store(true, Ordering::Relaxed);
        match side {
            Side::Producer => {
                if let Ok(mut c) = self.consumer.try_lock() {
                    for op in &steps {
                        self.inside.fetch_add(1, Ordering::Relaxed);
                        if self.consumer_step(&mut c, op, usize::MAX).is_err() {
                            break;
                        }
                    }
                }
            }
            Side::Consumer => {
                if let Ok(mut p) = self.producer.try_lock() {
                    for op in &steps {
                        self.inside.fetch_add(1, Ordering::Relaxed);
                        if self.producer_step(&mut p, op, usize::MAX).is_err() {
                            break;
                        }
                    }
                }
            }
        }
        self.nested.store(false, Ordering::Relaxed);
    }

    /// Runs the workload until it ends or the device crashes. Any error
    /// other than the expected transient ones, or an I/O error after the
    /// crash, is a violation (panics with the workload and step).
    fn drive(&self) -> End {
        match create_with(&self.dev, &self.w.options()) {
            Ok(_) => self.acked().created = true,
            Err(e) => return self.stop("create", e, 0),
        }
        let opts = self.w.options();
        match Producer::attach(self.device(Side::Producer), opts.clone()) {
            Ok(p) => locked(&self.producer).p = Some(p),
            Err(e) => return self.stop("producer attach", e, 0),
        }
        match Consumer::attach(self.device(Side::Consumer), opts) {
            Ok(c) => *locked(&self.consumer) = Some(c),
            Err(e) => return self.stop("consumer attach", e, 0),
        }
        for (step, op) in self.w.ops.iter().enumerate() {
            let r = if op.is_producer() {
                self.producer_step(&mut locked(&self.producer), op, step)
            } else {
                self.consumer_step(&mut locked(&self.consumer), op, step)
            };
            if let Err(end) = r {
                return end;
            }
            if self.dev.has_crashed() {
                // In a step the hooks ran; the call around them failed
                // after it and said so.
                return End::Crashed;
            }
        }
        // Dropping the producer writes a pending pipelined pointer.
        let deferred = self.acked().deferred;
        self.acked().p_inflight = deferred;
        // Dropped under the producer's mutex, as every producer step runs:
        // a format-2 producer clears its owner as it detaches (a write),
        // and the consumer steps taken inside that write must not attach
        // a producer while this one still holds the role.
        locked(&self.producer).p = None;
        if self.dev.has_crashed() {
            return End::Crashed;
        }
        let mut a = self.acked();
        if let Some(d) = a.deferred.take() {
            a.p_ack = d;
        }
        a.p_inflight = None;
        End::Finished
    }

    /// One producer step.
    fn producer_step(&self, ps: &mut ProducerSide, op: &Op, step: usize) -> Result<(), End> {
        let w = &self.w;
        if let Op::ReattachProducer = op {
            // Dropping the producer writes a pending pipelined pointer.
            let deferred = self.acked().deferred;
            self.acked().p_inflight = deferred;
            ps.p = None;
            if self.dev.has_crashed() {
                return Err(End::Crashed);
            }
            let mut a = self.acked();
            if let Some(d) = a.deferred.take() {
                a.p_ack = d;
            }
            a.p_inflight = None;
            // Unpublished items are abandoned; their space is reused.
            let p_ack = a.p_ack;
            a.items.retain(|&start, _| start < p_ack);
            ps.tail = p_ack;
            drop(a);
            return self.attach_producer(ps, step);
        }
        let Some(p) = ps.p.as_mut() else {
            if let Op::ProducerState = op {
                return self.attach_producer(ps, step);
            }
            return Ok(());
        };
        match op {
            Op::Push(_) | Op::PushMany(_) => {
                let lens = match op {
                    Op::Push(l) => vec![*l],
                    Op::PushMany(ls) => ls.clone(),
                    _ => unreachable!(),
                };
                let items: Vec<Vec<u8>> = lens
                    .iter()
                    .enumerate()
                    .map(|(i, &l)| item_bytes(w.seed, ps.pushed + i as u64, l))
                    .collect();
                let r = match op {
                    Op::Push(_) => p.push(&items[0]),
                    _ => p.push_many(items.iter().map(Vec::as_slice)),
                };
                match r {
                    Ok(end) => {
                        let mut a = self.acked();
                        for it in items {
                            let next = ps.tail + w.stream_len(it.len());
                            a.items.insert(ps.tail, (next, it));
                            ps.tail = next;
                            ps.pushed += 1;
                        }
                        assert_eq!(end.offset(), ps.tail, "seed {} step {step}", w.seed);
                    }
                    Err(Error::Retry(RetryReason::Full)) | Err(Error::Suspended) => {}
                    // A batch may exceed a tiny ring as a whole.
                    Err(Error::TooLarge { needed, .. })
                        if needed > w.capacity()
                            && lens.iter().map(|&l| w.stream_len(l)).sum::<u64>()
                                > w.capacity() => {}
                    Err(e) => return Err(self.stop("push", e, step)),
                }
            }
            Op::ProducerAdvance(k) => {
                let mut a = self.acked();
                let ends: Vec<u64> = a.items.range(a.p_ack..).map(|(_, (e, _))| *e).collect();
                if ends.is_empty() {
                    return Ok(());
                }
                // Below a pending pipelined position, `advance` publishes
                // that one.
                let asked = ends[k % ends.len()];
                let target = asked.max(a.deferred.unwrap_or(0));
                a.p_inflight = Some(target);
                drop(a);
                let r = p.advance(Position::new(asked));
                let mut a = self.acked();
                match r {
                    Ok(()) => {
                        a.p_ack = target;
                        a.p_inflight = None;
                        a.deferred = None;
                    }
                    Err(e) => return Err(self.stop("producer advance", e, step)),
                }
            }
            Op::ProducerAdvancePipelined(k) => {
                let mut a = self.acked();
                let pipelined = w.pipelines();
                // In format 2 it is `advance`.
                let from = if pipelined {
                    a.deferred.unwrap_or(a.p_ack)
                } else {
                    a.p_ack
                };
                let ends: Vec<u64> = a.items.range(from..).map(|(_, (e, _))| *e).collect();
                if ends.is_empty() {
                    return Ok(());
                }
                let target = ends[k % ends.len()];
                // In format 1 this call writes the previous pending
                // pointer.
                a.p_inflight = if pipelined { a.deferred } else { Some(target) };
                drop(a);
                let r = p.advance_pipelined(Position::new(target));
                let mut a = self.acked();
                match r {
                    Ok(()) if pipelined => {
                        if let Some(d) = a.deferred {
                            a.p_ack = d;
                        }
                        a.deferred = Some(target);
                        a.p_inflight = None;
                    }
                    Ok(()) => {
                        a.p_ack = target;
                        a.p_inflight = None;
                    }
                    Err(e) => return Err(self.stop("producer advance_pipelined", e, step)),
                }
            }
            Op::Sync => {
                let deferred = self.acked().deferred;
                self.acked().p_inflight = deferred;
                let r = p.sync();
                let mut a = self.acked();
                match r {
                    Ok(()) => {
                        if let Some(d) = a.deferred.take() {
                            a.p_ack = d;
                        }
                        a.p_inflight = None;
                    }
                    Err(e) => return Err(self.stop("producer sync", e, step)),
                }
            }
            Op::ProducerState => {
                if let Err(e) = p.state() {
                    return Err(self.stop("producer state", e, step));
                }
            }
            _ => unreachable!("not a producer step: {op:?}"),
        }
        Ok(())
    }

    /// Attaches a producer (it stays detached while the ring is suspended).
    fn attach_producer(&self, ps: &mut ProducerSide, step: usize) -> Result<(), End> {
        match Producer::attach(self.device(Side::Producer), self.w.options()) {
            Ok(p) => ps.p = Some(p),
            // The resume is not acknowledged yet.
            Err(Error::Suspended) => {}
            Err(e) => return Err(self.stop("producer attach", e, step)),
        }
        Ok(())
    }

    /// One consumer step.
    fn consumer_step(
        &self,
        slot: &mut Option<Consumer<Hooked>>,
        op: &Op,
        step: usize,
    ) -> Result<(), End> {
        let Some(consumer) = slot.as_mut() else {
            return Ok(());
        };
        match op {
            Op::Pop => match consumer.pop() {
                Ok((next, got)) => {
                    let at = consumer.position().offset();
                    let a = self.acked();
                    let want = a.items.get(&at).expect("popped an item never pushed");
                    assert_eq!((next.offset(), &got), (want.0, &want.1), "live pop");
                }
                Err(Error::Retry(RetryReason::Empty)) => {}
                Err(e) => return Err(self.stop("pop", e, step)),
            },
            Op::Fold => {
                let from = consumer.position();
                match consumer.fold(from, 0usize, |n, _| n + 1) {
                    Ok((end, n)) => {
                        let want = self
                            .acked()
                            .items
                            .range(from.offset()..end.offset())
                            .count();
                        assert_eq!(n, want, "live fold");
                    }
                    Err(e) => return Err(self.stop("fold", e, step)),
                }
            }
            Op::ConsumerAdvance(k) => {
                let mut a = self.acked();
                // Up to what a returned advance published or, interleaved,
                // what the consumer has read (perhaps a pointer not yet
                // durable).
                let known = consumer.known_producer().offset();
                let ends: Vec<u64> = a
                    .items
                    .range(a.c_ack..a.p_ack.max(known))
                    .map(|(_, (e, _))| *e)
                    .collect();
                if ends.is_empty() {
                    return Ok(());
                }
                let target = ends[k % ends.len()];
                a.c_inflight = Some(target);
                drop(a);
                let r = consumer.advance(Position::new(target));
                let mut a = self.acked();
                match r {
                    Ok(()) => {
                        a.c_ack = target;
                        a.c_inflight = None;
                    }
                    Err(e) => return Err(self.stop("consumer advance", e, step)),
                }
            }
            Op::Suspend | Op::Resume => {
                let want = matches!(op, Op::Suspend);
                self.acked().s_inflight = Some(want);
                let r = if want {
                    consumer.suspend()
                } else {
                    consumer.resume()
                };
                match r {
                    Ok(()) => self.acked().s_ack = want,
                    Err(Error::Retry(RetryReason::HandshakePending)) => {}
                    Err(e) => return Err(self.stop("suspend/resume", e, step)),
                }
                self.acked().s_inflight = None;
                if !want {
                    // Not from inside a producer call.
                    if let Ok(mut ps) = self.producer.try_lock() {
                        if ps.p.is_none() {
                            self.attach_producer(&mut ps, step)?;
                        }
                    }
                }
            }
            Op::ReattachConsumer => {
                *slot = None;
                match Consumer::attach(self.device(Side::Consumer), self.w.options()) {
                    Ok(c) => *slot = Some(c),
                    Err(e) => return Err(self.stop("consumer attach", e, step)),
                }
            }
            _ => unreachable!("not a consumer step: {op:?}"),
        }
        Ok(())
    }
}

/// Runs `w` on `dev` until it ends or the device crashes (see
/// [`World::drive`]); also returns how many steps one side took inside
/// the other's calls.
fn run(w: &Workload, dev: &Dev) -> (Acked, End, u64) {
    let world = Arc::new_cyclic(|me| World {
        w: w.clone(),
        dev: dev.clone(),
        me: me.clone(),
        acked: Mutex::new(Acked::default()),
        producer: Mutex::new(ProducerSide {
            p: None,
            tail: 0,
            pushed: 0,
        }),
        consumer: Mutex::new(None),
        hooks: AtomicU64::new(0),
        nested: AtomicBool::new(false),
        inside: AtomicU64::new(0),
    });
    let end = world.drive();
    let acked = world.acked().clone();
    (acked, end, world.inside.load(Ordering::Relaxed))
}

/// Checks the promise on one crash image. `salt` varies the item pushed
/// afterwards.
fn check_image(w: &Workload, a: &Acked, image: Vec<u8>, salt: u64) -> Result<(), String> {
    let ss = w.sector_size;
    let suspend_on_disk = suspend_flag(w, &image);
    let disk = MemDevice::from_bytes(ss, image);
    let opts = w.options();
    let mut c = match Consumer::attach(disk.clone(), opts.clone()) {
        Ok(c) => c,
        Err(Error::NotInitialised(SignatureProblem::Blank)) if !a.created => {
            if create_with(&disk, &opts)
                .map_err(|e| format!("create after a crash in create: {e}"))?
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
    // Format 2 may also end the published items inside the publication in
    // flight (every item delivered was checked against the pushed ones
    // above, so `end` is an item boundary).
    let within_inflight =
        w.format == RingFormat::V2 && a.p_inflight.is_some_and(|f| a.p_ack <= end && end <= f);
    if end != a.p_ack && Some(end) != a.p_inflight && !within_inflight {
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
    let len = (salt.wrapping_mul(131) % (w.capacity() - w.stream_len(0)).min(3000)) as usize;
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

/// The consumer's suspend flag in a crash image, if its sector decodes.
fn suspend_flag(w: &Workload, image: &[u8]) -> Option<bool> {
    let ss = w.sector_size;
    let sector = &image[2 * ss..3 * ss];
    match w.format {
        RingFormat::V1 => decode_state(Side::Consumer, sector).map(|s| s.flag).ok(),
        _ => {
            let header = codec::decode_header(&image[..ss]).ok()?;
            codec::decode_state(Side::Consumer, &header.ring_id, sector)
                .map(|s| s.flag)
                .ok()
        }
    }
}

#[derive(Debug, Default)]
struct Tally {
    points: u64,
    states: u64,
    /// Crash points inside a transfer, with several writes in flight.
    in_flight: u64,
    /// Steps one side took inside the other's calls (in the runs without
    /// a crash).
    inside: u64,
}

/// Crash states checked per crash point at most (power-loss mode).
const STATES_PER_POINT: usize = 2048;

/// Enumerates every crash point of `w` and checks every crash state there.
fn check_workload(w: &Workload) -> Tally {
    // A run without a crash counts the crash points.
    let dev = FaultDevice::new(MemDevice::new(w.sector_size, w.sectors));
    let (_, end, inside) = run(w, &dev);
    assert!(matches!(end, End::Finished));
    let total = dev.counts().crash_points;
    let mut tally = Tally {
        inside,
        ..Tally::default()
    };
    for k in 0..=total {
        let dev = FaultDevice::new(MemDevice::new(w.sector_size, w.sectors));
        dev.crash_after(k);
        let (acked, _, _) = run(w, &dev);
        let point: CrashPoint = dev.crash_point().expect("the device crashed");
        if point.in_flight().len() >= 2 {
            tally.in_flight += 1;
        }
        let images: Vec<Vec<u8>> = match w.durability {
            Durability::PowerLoss => point.power_cut_images(STATES_PER_POINT, k).collect(),
            // One image, or one per subset of a transfer's writes in flight.
            _ => point.process_crash_images(STATES_PER_POINT).collect(),
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

fn check_all(name: &str, workloads: Vec<Workload>, min_states: u64) -> Tally {
    let started = Instant::now();
    let mut total = Tally::default();
    for w in &workloads {
        let t = check_workload(w);
        total.points += t.points;
        total.states += t.states;
        total.inside += t.inside;
        total.in_flight += t.in_flight;
    }
    let inside = if total.inside > 0 {
        format!(
            " ({} steps taken inside the other side's calls)",
            total.inside
        )
    } else {
        String::new()
    };
    println!(
        "crash checker ({name}): {} workloads{inside}, {} crash points ({} inside a transfer), \
         {} distinct crash states checked, 0 violations, in {:.1?}",
        workloads.len(),
        total.points,
        total.in_flight,
        total.states,
        started.elapsed()
    );
    assert!(
        total.states >= min_states,
        "only {} crash states checked",
        total.states
    );
    total
}

/// `count` workloads of `len` steps with seeds from `first_seed`, on rings
/// of 16, 8, 24 and 5 sectors of 512 bytes in turn.
fn mixed(
    first_seed: u64,
    count: u64,
    durability: Durability,
    len: usize,
) -> impl Iterator<Item = Workload> {
    (0..count).map(move |i| {
        let sectors = [16, 8, 24, 5][i as usize % 4];
        Workload::generate(first_seed + i, 512, sectors, durability, len)
    })
}

/// A workload on a ring of 6 sectors of 4096 bytes.
fn on_4k_sectors(seed: u64, durability: Durability, len: usize) -> Workload {
    Workload::generate(seed, 4096, 6, durability, len)
}

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
