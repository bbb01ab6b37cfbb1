//! Random operation sequences on a small ring, checked against a plain
//! in-memory queue: the fuzzing counterpart of tests/model.rs. The producer
//! looks at the consumer sector on every push, so every outcome (pushed,
//! full, suspended, too large, empty, handshake pending) is predictable.
#![no_main]

use std::collections::VecDeque;
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shared_block_ring::{
    create, layout, Consumer, Error, MemDevice, Options, Position, Producer, RetryReason, RingState,
};

#[derive(Debug, Arbitrary)]
enum Op {
    Push(u16),
    PushMany(Vec<u16>),
    ProducerAdvance(u8),
    ProducerAdvancePipelined(u8),
    Sync,
    ProducerState,
    Pop,
    PopFrom(u8),
    Fold,
    ConsumerAdvance(u8),
    Suspend,
    Resume,
    ConsumerState,
    ReattachProducer,
    ReattachConsumer,
}

#[derive(Debug, Arbitrary)]
struct Input {
    /// Ring size: 4 + (sectors % 28) sectors of 512 bytes. From 128 on,
    /// the stream also starts near the top of the position range,
    /// `4 * (read_ahead % 3000)` bytes below `Position::MAX`, so that
    /// pushes meet the limit.
    sectors: u8,
    read_ahead: u16,
    ops: Vec<Op>,
}

fn item(len: usize, seed: u64) -> Vec<u8> {
    (0..len)
        .map(|j| (seed.wrapping_mul(131).wrapping_add(j as u64 * 7) % 253) as u8)
        .collect()
}

fuzz_target!(|input: Input| {
    let sectors = 4 + u64::from(input.sectors % 28);
    let capacity = (sectors - 3) * 512;
    let disk = MemDevice::new(512, sectors);
    let bound = fuzz_support::bound_for_ring(disk.to_vec().len()) + 16 * capacity as usize;
    fuzz_support::with_memory_bound(bound, || run(disk, capacity, &input));
});

fn run(disk: MemDevice, capacity: u64, input: &Input) {
    create(&disk).unwrap();
    let start = if input.sectors >= 128 {
        Position::MAX.offset() - 4 * u64::from(input.read_ahead % 3000)
    } else {
        0
    };
    disk.with_bytes_mut(|b| {
        for sector in [1, 2] {
            b[sector * 512..sector * 512 + 8].copy_from_slice(&start.to_le_bytes());
        }
    });
    let options = Options::new()
        .consumer_poll_interval(Duration::ZERO)
        .read_ahead(usize::from(input.read_ahead) + 1);
    let mut producer = Some(Producer::attach(disk.clone(), options.clone()).unwrap());
    let mut consumer = Consumer::attach(disk.clone(), options.clone()).unwrap();
    // Published, unreleased items and unpublished ones, with end positions.
    let mut published: VecDeque<(u64, Vec<u8>)> = VecDeque::new();
    let mut unpublished: Vec<(u64, Vec<u8>)> = Vec::new();
    let (mut cpos, mut ppos, mut tail) = (start, start, start);
    let (mut suspend, mut ack) = (false, false);
    let mut seed = 0u64;
    // The position an advance_pipelined left to be written later.
    let mut deferred: Option<u64> = None;
    // Publishes every unpublished item up to `to`.
    fn publish(
        to: u64,
        unpublished: &mut Vec<(u64, Vec<u8>)>,
        published: &mut VecDeque<(u64, Vec<u8>)>,
        ppos: &mut u64,
    ) {
        let n = unpublished.iter().take_while(|(e, _)| *e <= to).count();
        published.extend(unpublished.drain(..n));
        *ppos = to;
    }
    for op in input.ops.iter().take(400) {
        match op {
            Op::Push(_) | Op::PushMany(_) => {
                let Some(p) = producer.as_mut() else { continue };
                let lens: Vec<usize> = match op {
                    Op::Push(l) => vec![usize::from(*l) % (capacity as usize + 64)],
                    Op::PushMany(ls) => ls
                        .iter()
                        .take(8)
                        .map(|&l| usize::from(l) % (capacity as usize / 2 + 64))
                        .collect(),
                    _ => unreachable!(),
                };
                let items: Vec<Vec<u8>> = lens
                    .iter()
                    .map(|&l| {
                        seed += 1;
                        item(l, seed)
                    })
                    .collect();
                let r = match op {
                    Op::Push(_) => p.push(&items[0]),
                    _ => p.push_many(items.iter().map(Vec::as_slice)),
                };
                // The producer reads the consumer sector first, always.
                ack = suspend;
                let sizes: Vec<u64> = lens
                    .iter()
                    .map(|&l| layout::item_stream_len(l as u64))
                    .collect();
                let total: u64 = sizes.iter().sum();
                match r {
                    Ok(end) => {
                        assert!(!ack && total + tail - cpos <= capacity);
                        assert!(tail + total <= Position::MAX.offset());
                        for (it, size) in items.into_iter().zip(sizes) {
                            tail += size;
                            unpublished.push((tail, it));
                        }
                        assert_eq!(end.offset(), tail);
                    }
                    Err(Error::Suspended) => assert!(ack),
                    Err(Error::TooLarge { .. }) => assert!(
                        !ack && (lens.iter().any(|&l| l as u64 + 4 > capacity) || total > capacity)
                    ),
                    Err(Error::PositionLimit { end }) => {
                        assert!(!ack && total <= capacity);
                        assert!(tail + total > Position::MAX.offset() && end == tail + total);
                    }
                    Err(Error::Retry(RetryReason::Full)) => {
                        assert!(!ack && total <= capacity && tail + total - cpos > capacity);
                        assert!(tail + total <= Position::MAX.offset());
                    }
                    Err(e) => panic!("push {lens:?}: {e}"),
                }
            }
            Op::ProducerAdvance(k) => {
                let Some(p) = producer.as_mut() else { continue };
                if unpublished.is_empty() {
                    p.advance(Position::new(ppos)).unwrap();
                    continue;
                }
                let k = usize::from(*k) % unpublished.len();
                let end = unpublished[k].0;
                p.advance(Position::new(end)).unwrap();
                // Below a pending pipelined position, that one is published.
                let to = end.max(deferred.take().unwrap_or(0));
                publish(to, &mut unpublished, &mut published, &mut ppos);
            }
            Op::ProducerAdvancePipelined(k) => {
                let Some(p) = producer.as_mut() else { continue };
                if unpublished.is_empty() {
                    continue;
                }
                let end = unpublished[usize::from(*k) % unpublished.len()].0;
                p.advance_pipelined(Position::new(end)).unwrap();
                // The previous pending position is published now; this one
                // is pending (unless it was not past it).
                if end > deferred.unwrap_or(ppos) {
                    if let Some(d) = deferred {
                        publish(d, &mut unpublished, &mut published, &mut ppos);
                    }
                    deferred = Some(end);
                }
                assert_eq!(p.pending_publication().map(|x| x.offset()), deferred);
            }
            Op::Sync => {
                let Some(p) = producer.as_mut() else { continue };
                p.sync().unwrap();
                if let Some(d) = deferred.take() {
                    publish(d, &mut unpublished, &mut published, &mut ppos);
                }
            }
            Op::ProducerState => {
                let Some(p) = producer.as_mut() else { continue };
                let s = p.state().unwrap();
                ack = suspend;
                assert_eq!(s == RingState::Suspended, ack);
            }
            Op::Pop => match consumer.pop() {
                Ok((next, got)) => {
                    let (end, want) = published.front().expect("popped from an empty ring");
                    assert_eq!((next.offset(), &got), (*end, want));
                }
                Err(Error::Retry(RetryReason::Empty)) => assert!(published.is_empty()),
                Err(e) => panic!("pop: {e}"),
            },
            Op::PopFrom(k) => {
                if published.is_empty() {
                    assert!(consumer
                        .pop_from(Position::new(cpos))
                        .unwrap_err()
                        .is_retry());
                    continue;
                }
                let k = usize::from(*k) % published.len();
                let from = if k == 0 { cpos } else { published[k - 1].0 };
                let (next, got) = consumer.pop_from(Position::new(from)).unwrap();
                assert_eq!((next.offset(), &got), (published[k].0, &published[k].1));
            }
            Op::Fold => {
                let (end, n) = consumer
                    .fold(Position::new(cpos), 0usize, |n, _| n + 1)
                    .unwrap();
                assert_eq!((end.offset(), n), (ppos, published.len()));
            }
            Op::ConsumerAdvance(k) => {
                if published.is_empty() {
                    consumer.advance(Position::new(cpos)).unwrap();
                    continue;
                }
                let k = usize::from(*k) % published.len();
                let end = published[k].0;
                consumer.advance(Position::new(end)).unwrap();
                published.drain(..=k);
                cpos = end;
            }
            Op::Suspend | Op::Resume => {
                let want = matches!(op, Op::Suspend);
                let r = if want {
                    consumer.suspend()
                } else {
                    consumer.resume()
                };
                if suspend != ack {
                    assert!(matches!(
                        r,
                        Err(Error::Retry(RetryReason::HandshakePending))
                    ));
                } else {
                    r.unwrap();
                    suspend = want;
                }
            }
            Op::ConsumerState => {
                let s = consumer.state().unwrap();
                assert_eq!(s == RingState::Suspended, ack);
            }
            Op::ReattachProducer => {
                // Dropping the producer writes a pending pipelined pointer.
                producer = None;
                if let Some(d) = deferred.take() {
                    publish(d, &mut unpublished, &mut published, &mut ppos);
                }
                unpublished.clear();
                tail = ppos;
                let r = Producer::attach(disk.clone(), options.clone());
                ack = suspend;
                match r {
                    Ok(p) => {
                        assert!(!ack);
                        producer = Some(p);
                    }
                    Err(Error::Suspended) => assert!(ack),
                    Err(e) => panic!("attach: {e}"),
                }
            }
            Op::ReattachConsumer => {
                drop(consumer);
                consumer = Consumer::attach(disk.clone(), options.clone()).unwrap();
            }
        }
    }
    let (end, n) = consumer
        .fold(Position::new(cpos), 0usize, |n, _| n + 1)
        .unwrap();
    assert_eq!((end.offset(), n), (ppos, published.len()));
}
