//! One run of a workload: both handles, and what the library told them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shared_block_ring::{create_with, Consumer, Error, Position, Producer, RetryReason, Side};

use crate::hooked::{Dev, Hooked};
use crate::workload::{item_bytes, Op, Workload};

/// What the workload had been told by the library when the crash came.
#[derive(Debug, Clone, Default)]
pub(crate) struct Acked {
    /// `create` returned.
    pub(crate) created: bool,
    /// Every item pushed and not abandoned: start -> (end, bytes).
    pub(crate) items: BTreeMap<u64, (u64, Vec<u8>)>,
    /// The last producer position whose `advance` returned.
    pub(crate) p_ack: u64,
    /// A producer pointer write that had not returned.
    pub(crate) p_inflight: Option<u64>,
    /// The position an `advance_pipelined` left to be written later.
    pub(crate) deferred: Option<u64>,
    pub(crate) c_ack: u64,
    pub(crate) c_inflight: Option<u64>,
    /// The consumer's suspend flag as last set by a returned request.
    pub(crate) s_ack: bool,
    pub(crate) s_inflight: Option<bool>,
}

/// How a workload run ended.
pub(crate) enum End {
    Finished,
    /// An operation failed because the device had crashed.
    Crashed,
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
pub(crate) struct World {
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
    pub(crate) fn next_steps(&self, side: Side) -> Vec<Op> {
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
    pub(crate) fn run_steps(&self, side: Side, steps: Vec<Op>) {
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
pub(crate) fn run(w: &Workload, dev: &Dev) -> (Acked, End, u64) {
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
