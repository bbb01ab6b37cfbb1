//! Model-based property test: random operation sequences on a small ring
//! against a plain in-memory queue.

use std::collections::VecDeque;
use std::time::Duration;

use proptest::prelude::*;
use shared_block_ring::{
    create, layout, Consumer, Error, MemDevice, Options, Position, Producer, RetryReason, RingState,
};

#[derive(Debug, Clone)]
enum Op {
    Push(usize),
    PushMany(Vec<usize>),
    /// Publish up to the k-th unpublished item (modulo their number).
    ProducerAdvance(usize),
    ProducerState,
    Pop,
    /// Peek at the k-th published item (modulo their number).
    PopFrom(usize),
    Fold,
    /// Release up to and including the k-th published item.
    ConsumerAdvance(usize),
    Suspend,
    Resume,
    ConsumerState,
    ReattachProducer,
    ReattachConsumer,
}

fn len_strategy(max: usize) -> impl Strategy<Value = usize> {
    prop_oneof![
        3 => 0..64usize,
        2 => prop::sample::select(vec![0, 1, 503, 504, 505, 507, 508, 509, 512, 1020, 1024]),
        1 => 0..max,
    ]
}

fn op_strategy(max: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => len_strategy(max).prop_map(Op::Push),
        2 => prop::collection::vec(len_strategy(max / 4 + 1), 0..6).prop_map(Op::PushMany),
        4 => any::<usize>().prop_map(Op::ProducerAdvance),
        1 => Just(Op::ProducerState),
        3 => Just(Op::Pop),
        2 => any::<usize>().prop_map(Op::PopFrom),
        1 => Just(Op::Fold),
        4 => any::<usize>().prop_map(Op::ConsumerAdvance),
        1 => Just(Op::Suspend),
        1 => Just(Op::Resume),
        1 => Just(Op::ConsumerState),
        1 => Just(Op::ReattachProducer),
        1 => Just(Op::ReattachConsumer),
    ]
}

/// The expected state of the ring.
struct Model {
    capacity: u64,
    /// Published, unreleased items with their end positions.
    published: VecDeque<(u64, Vec<u8>)>,
    /// Pushed, unpublished items with their end positions.
    unpublished: Vec<(u64, Vec<u8>)>,
    consumer: u64,
    producer: u64,
    tail: u64,
    suspend: bool,
    ack: bool,
    /// The consumer position as the producer last read it.
    seen_consumer: u64,
    /// Whether the producer re-reads the consumer sector on every push.
    eager: bool,
}

impl Model {
    fn producer_looks(&mut self) {
        self.seen_consumer = self.consumer;
        self.ack = self.suspend;
    }
}

fn item(len: usize, seed: u64) -> Vec<u8> {
    (0..len)
        .map(|j| (seed.wrapping_mul(131).wrapping_add(j as u64 * 7) % 253) as u8)
        .collect()
}

/// Runs `ops` on an empty ring whose stream starts at `start` (0 for a new
/// ring; near `Position::MAX` to meet the limit).
fn run(sectors: u64, eager: bool, start: u64, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let disk = MemDevice::new(512, sectors);
    create(&disk).unwrap();
    disk.with_bytes_mut(|b| {
        for sector in [1, 2] {
            b[sector * 512..sector * 512 + 8].copy_from_slice(&start.to_le_bytes());
        }
    });
    let interval = if eager {
        Duration::ZERO
    } else {
        Duration::from_secs(3600)
    };
    let options = Options::new().consumer_poll_interval(interval);
    let mut producer = Some(Producer::attach(disk.clone(), options.clone()).unwrap());
    let mut consumer = Consumer::attach(disk.clone(), options.clone()).unwrap();
    let mut m = Model {
        capacity: (sectors - 3) * 512,
        published: VecDeque::new(),
        unpublished: Vec::new(),
        consumer: start,
        producer: start,
        tail: start,
        suspend: false,
        ack: false,
        seen_consumer: start,
        eager,
    };
    let mut seed = 0u64;
    for op in ops {
        match op {
            Op::Push(_) | Op::PushMany(_) => {
                let Some(p) = producer.as_mut() else { continue };
                let lens = match &op {
                    Op::Push(l) => vec![*l],
                    Op::PushMany(ls) => ls.clone(),
                    _ => unreachable!(),
                };
                let items: Vec<Vec<u8>> = lens
                    .iter()
                    .map(|&l| {
                        seed += 1;
                        item(l, seed)
                    })
                    .collect();
                let result = if let Op::Push(_) = op {
                    p.push(&items[0])
                } else {
                    p.push_many(items.iter().map(|v| v.as_slice()))
                };
                // Predict.
                if m.eager || m.ack {
                    m.producer_looks();
                }
                let sizes: Vec<u64> = lens
                    .iter()
                    .map(|&l| layout::item_stream_len(l as u64))
                    .collect();
                let total: u64 = sizes.iter().sum();
                let expected: Result<(), &str> = if m.ack {
                    Err("suspended")
                } else if lens.iter().any(|&l| l as u64 + 4 > m.capacity) || total > m.capacity {
                    Err("too large")
                } else if total == 0 {
                    Ok(())
                } else if m.tail + total > Position::MAX.offset() {
                    Err("position limit")
                } else if m.tail + total - m.seen_consumer > m.capacity && {
                    m.producer_looks();
                    m.ack || m.tail + total - m.seen_consumer > m.capacity
                } {
                    Err(if m.ack { "suspended" } else { "full" })
                } else {
                    Ok(())
                };
                match (&result, expected) {
                    (Ok(pos), Ok(())) => {
                        for (it, size) in items.into_iter().zip(sizes) {
                            m.tail += size;
                            m.unpublished.push((m.tail, it));
                        }
                        prop_assert_eq!(pos.offset(), m.tail);
                    }
                    (Err(Error::Suspended), Err("suspended")) => {}
                    (Err(Error::TooLarge { .. }), Err("too large")) => {}
                    (Err(Error::Retry(RetryReason::Full)), Err("full")) => {}
                    (Err(Error::PositionLimit { end }), Err("position limit")) => {
                        prop_assert_eq!(*end, m.tail + total);
                    }
                    (r, e) => prop_assert!(
                        false,
                        "push {:?}: got {:?}, expected {:?}",
                        lens,
                        r.as_ref().map_err(|e| e.to_string()),
                        e
                    ),
                }
            }
            Op::ProducerAdvance(k) => {
                let Some(p) = producer.as_mut() else { continue };
                if m.unpublished.is_empty() {
                    p.advance(Position::new(m.producer)).unwrap();
                    continue;
                }
                let k = k % m.unpublished.len();
                let end = m.unpublished[k].0;
                p.advance(Position::new(end)).unwrap();
                for it in m.unpublished.drain(..=k) {
                    m.published.push_back(it);
                }
                m.producer = end;
            }
            Op::ProducerState => {
                let Some(p) = producer.as_mut() else { continue };
                let s = p.state().unwrap();
                m.producer_looks();
                prop_assert_eq!(s == RingState::Suspended, m.ack);
            }
            Op::Pop => match consumer.pop() {
                Ok((next, got)) => {
                    let (end, want) = m.published.front().cloned().unwrap_or_default();
                    prop_assert!(!m.published.is_empty(), "popped from an empty ring");
                    prop_assert_eq!(next.offset(), end);
                    prop_assert_eq!(got, want);
                }
                Err(Error::Retry(RetryReason::Empty)) => prop_assert!(m.published.is_empty()),
                Err(e) => prop_assert!(false, "pop: {}", e),
            },
            Op::PopFrom(k) => {
                if m.published.is_empty() {
                    prop_assert!(consumer
                        .pop_from(Position::new(m.consumer))
                        .unwrap_err()
                        .is_retry());
                    continue;
                }
                let k = k % m.published.len();
                let from = if k == 0 {
                    m.consumer
                } else {
                    m.published[k - 1].0
                };
                let (next, got) = consumer.pop_from(Position::new(from)).unwrap();
                prop_assert_eq!(next.offset(), m.published[k].0);
                prop_assert_eq!(&got, &m.published[k].1);
            }
            Op::Fold => {
                let (end, items) = consumer
                    .fold(Position::new(m.consumer), Vec::new(), |mut v, i| {
                        v.push(i);
                        v
                    })
                    .unwrap();
                prop_assert_eq!(end.offset(), m.producer);
                let want: Vec<Vec<u8>> = m.published.iter().map(|(_, i)| i.clone()).collect();
                prop_assert_eq!(items, want);
            }
            Op::ConsumerAdvance(k) => {
                if m.published.is_empty() {
                    consumer.advance(Position::new(m.consumer)).unwrap();
                    continue;
                }
                let k = k % m.published.len();
                let end = m.published[k].0;
                consumer.advance(Position::new(end)).unwrap();
                m.published.drain(..=k);
                m.consumer = end;
            }
            Op::Suspend | Op::Resume => {
                let want = matches!(op, Op::Suspend);
                let r = if want {
                    consumer.suspend()
                } else {
                    consumer.resume()
                };
                if m.suspend != m.ack {
                    prop_assert!(matches!(
                        r,
                        Err(Error::Retry(RetryReason::HandshakePending))
                    ));
                } else {
                    r.unwrap();
                    m.suspend = want;
                }
            }
            Op::ConsumerState => {
                let s = consumer.state().unwrap();
                prop_assert_eq!(s == RingState::Suspended, m.ack);
            }
            Op::ReattachProducer => {
                producer = None;
                m.unpublished.clear();
                m.tail = m.producer;
                let r = Producer::attach(disk.clone(), options.clone());
                m.producer_looks();
                match r {
                    Ok(p) => {
                        prop_assert!(!m.ack);
                        producer = Some(p);
                    }
                    Err(Error::Suspended) => prop_assert!(m.ack),
                    Err(e) => prop_assert!(false, "attach: {}", e),
                }
            }
            Op::ReattachConsumer => {
                consumer.detach();
                consumer = Consumer::attach(disk.clone(), options.clone()).unwrap();
            }
        }
    }
    // Finally everything published can be read back in order.
    let (end, items) = consumer
        .fold(Position::new(m.consumer), Vec::new(), |mut v, i| {
            v.push(i);
            v
        })
        .unwrap();
    prop_assert_eq!(end.offset(), m.producer);
    prop_assert_eq!(items.len(), m.published.len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn ring_behaves_like_a_queue(
        sectors in prop_oneof![Just(4u64), Just(5), 6..12u64, Just(40)],
        eager in any::<bool>(),
        // Some streams start a little below the largest position, so that
        // pushes meet the limit.
        start in prop_oneof![
            3 => Just(0u64),
            1 => (0..3000u64).prop_map(|d| Position::MAX.offset() - 4 * d),
        ],
        ops in prop::collection::vec(op_strategy(2400), 1..120),
    ) {
        run(sectors, eager, start, ops)?;
    }
}
