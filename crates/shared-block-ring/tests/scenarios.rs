//! The original library's own test scenarios, re-expressed, and the
//! behaviours this library adds (batches, blocking helpers, role locks).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use shared_block_ring::{
    create, BlockDevice, Consumer, Durability, Error, FileDevice, MemDevice, Options, Position,
    Producer, RetryReason, RingState,
};

/// The original's interesting lengths around a 512-byte sector.
const LENGTHS: [usize; 6] = [0, 1, 507, 508, 509, 2000];

fn payload(len: usize, seed: usize) -> Vec<u8> {
    (0..len)
        .map(|j| ((seed * 31 + j * 7) % 251) as u8)
        .collect()
}

fn push_pop_scenario<D: BlockDevice + Clone>(disk: D, durability: Durability, loops: usize) {
    create(&disk).unwrap();
    let options = Options::new().durability(durability);
    let mut producer = Producer::attach(disk.clone(), options.clone()).unwrap();
    let mut consumer = Consumer::attach(disk.clone(), options).unwrap();
    let size_of_device = disk.sectors() as usize * disk.sector_size();
    let mut seed = 0;
    for &len in &LENGTHS {
        for batch in 1..=5 {
            for _ in 0..loops {
                assert!(matches!(
                    consumer.pop(),
                    Err(Error::Retry(RetryReason::Empty))
                ));
                let e = producer.push(&vec![0u8; size_of_device]).unwrap_err();
                assert!(
                    matches!(e, Error::TooLarge { .. }) && !e.is_transient(),
                    "{e}"
                );
                let items: Vec<Vec<u8>> = (0..batch)
                    .map(|_| {
                        seed += 1;
                        payload(len, seed)
                    })
                    .collect();
                for item in &items {
                    let p = producer.push(item).unwrap();
                    producer.advance(p).unwrap();
                }
                for item in &items {
                    let (next, got) = consumer.pop().unwrap();
                    assert_eq!(&got, item, "len {len} batch {batch}");
                    consumer.advance(next).unwrap();
                }
            }
        }
    }
    // The stream wrapped many times over.
    assert!(producer.published().offset() > loops as u64 / 3 * producer.geometry().capacity());
}

#[test]
fn original_push_pop_scenarios_in_memory() {
    push_pop_scenario(MemDevice::new(512, 32), Durability::PowerLoss, 64);
}

#[test]
fn original_push_pop_scenarios_on_a_file_in_both_modes() {
    // Fewer loops than in memory: in the power-loss mode this ping-pong on a
    // tiny ring costs five cache flushes per item (the worst case: every
    // push reuses space released an instant before).
    for (durability, loops) in [(Durability::PowerLoss, 12), (Durability::ProcessCrash, 64)] {
        let file = common::ring_file(16384);
        push_pop_scenario(
            std::sync::Arc::new(FileDevice::open(file.path()).unwrap()),
            durability,
            loops,
        );
    }
}

#[test]
fn exactly_285_items_of_45_bytes_fit_a_16k_ring() {
    let disk = MemDevice::new(512, 32);
    create(&disk).unwrap();
    let mut producer = Producer::attach(disk, Options::new()).unwrap();
    let mut n = 0;
    loop {
        match producer.push(&[0x45; 45]) {
            Ok(p) => {
                producer.advance(p).unwrap();
                n += 1;
            }
            Err(Error::Retry(RetryReason::Full)) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(n, (16384 - 1536) / 52);
    assert_eq!(n, 285);
}

#[test]
fn suspend_resume_handshake_step_by_step() {
    let disk = MemDevice::new(512, 32);
    create(&disk).unwrap();
    let mut producer = Producer::attach(disk.clone(), Options::new()).unwrap();
    let mut consumer = Consumer::attach(disk, Options::new()).unwrap();
    assert_eq!(producer.state().unwrap(), RingState::Running);
    assert_eq!(consumer.state().unwrap(), RingState::Running);

    consumer.suspend().unwrap();
    assert!(matches!(
        consumer.resume(),
        Err(Error::Retry(RetryReason::HandshakePending))
    ));
    // Nothing changes for the consumer until the producer looks.
    assert_eq!(consumer.state().unwrap(), RingState::Running);
    assert_eq!(producer.state().unwrap(), RingState::Suspended);
    assert_eq!(consumer.state().unwrap(), RingState::Suspended);
    assert!(matches!(producer.push(b"x"), Err(Error::Suspended)));

    consumer.resume().unwrap();
    assert_eq!(consumer.state().unwrap(), RingState::Suspended);
    assert!(matches!(
        consumer.suspend(),
        Err(Error::Retry(RetryReason::HandshakePending))
    ));
    assert_eq!(producer.state().unwrap(), RingState::Running);
    assert_eq!(consumer.state().unwrap(), RingState::Running);
    let p = producer.push(b"x").unwrap();
    producer.advance(p).unwrap();
    assert_eq!(consumer.pop().unwrap().1, b"x");
}

#[test]
fn a_push_notices_a_suspend_within_the_poll_interval() {
    let disk = MemDevice::new(512, 32);
    create(&disk).unwrap();
    let options = Options::new().consumer_poll_interval(Duration::ZERO);
    let mut producer = Producer::attach(disk.clone(), options).unwrap();
    let mut consumer = Consumer::attach(disk, Options::new()).unwrap();
    consumer.suspend().unwrap();
    // With a zero interval every push looks, as the original did.
    assert!(matches!(producer.push(b"x"), Err(Error::Suspended)));
    assert_eq!(consumer.state().unwrap(), RingState::Suspended);
    consumer.resume().unwrap();
    assert!(producer.push(b"x").is_ok());
}

/// A device that records which calls it gets, for tests that care how
/// operations are grouped (one transfer, or calls one after another).
#[derive(Clone)]
struct Recorded {
    inner: MemDevice,
    calls: Arc<Mutex<Vec<String>>>,
}

impl Recorded {
    fn new(inner: MemDevice) -> Recorded {
        Recorded {
            inner,
            calls: Arc::default(),
        }
    }

    fn note(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

impl BlockDevice for Recorded {
    fn sector_size(&self) -> usize {
        self.inner.sector_size()
    }
    fn sectors(&self) -> u64 {
        self.inner.sectors()
    }
    fn read(&self, sector: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.note(format!("read {sector}"));
        self.inner.read(sector, buf)
    }
    fn write(&self, sector: u64, buf: &[u8]) -> std::io::Result<()> {
        self.note(format!("write {sector}"));
        self.inner.write(sector, buf)
    }
    fn write_durable(&self, sector: u64, buf: &[u8]) -> std::io::Result<()> {
        self.note(format!("write_durable {sector}"));
        self.inner.write_durable(sector, buf)
    }
    fn transfer(
        &self,
        writes: &[(u64, &[u8])],
        reads: &mut [(u64, &mut [u8])],
    ) -> std::io::Result<()> {
        let w: Vec<String> = writes.iter().map(|(s, _)| s.to_string()).collect();
        let r: Vec<String> = reads.iter().map(|(s, _)| s.to_string()).collect();
        self.note(format!("transfer w[{}] r[{}]", w.join(","), r.join(",")));
        self.inner.transfer(writes, reads)
    }
    fn flush(&self) -> std::io::Result<()> {
        self.note("flush".into());
        self.inner.flush()
    }
}

/// A format 1 push that is due to look at the consumer sector reads it in
/// one transfer with its data write (in flight together where the device
/// allows), not in a round trip before it. When that read finds a suspend
/// request, the push is undone: it fails with `Suspended`, the tail does
/// not move, and the next push writes over the bytes it left past the
/// tail, starting in the partly filled sector the undone push began in.
#[test]
fn a_push_looks_at_the_consumer_with_its_write_and_undoes_itself_on_a_suspend() {
    let disk = Recorded::new(MemDevice::new(512, 32));
    create(&disk).unwrap();
    let options = Options::new().consumer_poll_interval(Duration::ZERO);
    let mut producer = Producer::attach(disk.clone(), options).unwrap();
    let mut consumer = Consumer::attach(disk.clone(), Options::new()).unwrap();
    let first = producer.push(&payload(100, 1)).unwrap();
    producer.advance(first).unwrap();
    disk.take();
    // Ends mid-sector: the next push starts in a sector held in memory.
    let second = producer.push(&payload(300, 2)).unwrap();
    assert_eq!(
        disk.take(),
        ["transfer w[3] r[2]"],
        "the look (sector 2) goes with the data write"
    );
    producer.advance(second).unwrap();

    consumer.suspend().unwrap();
    disk.take();
    assert!(matches!(
        producer.push(&payload(700, 3)),
        Err(Error::Suspended)
    ));
    assert_eq!(producer.tail(), second, "nothing was pushed");
    let calls = disk.take();
    assert_eq!(calls[0], "transfer w[3] r[2]", "{calls:?}");
    assert!(
        calls[1..].iter().all(|c| c.ends_with(" 1") || c == "flush"),
        "then only the acknowledgement: {calls:?}"
    );
    assert_eq!(consumer.state().unwrap(), RingState::Suspended);
    consumer.resume().unwrap();
    let third = producer.push(&payload(50, 4)).unwrap();
    producer.advance(third).unwrap();
    let mut got = Vec::new();
    while let Ok((next, item)) = consumer.pop() {
        got.push(item);
        consumer.advance(next).unwrap();
    }
    assert_eq!(got, [payload(100, 1), payload(300, 2), payload(50, 4)]);
    // And so does a consumer attaching afresh (the same bytes on disk).
    drop(consumer);
    drop(producer);
    let mut again = Consumer::attach(disk, Options::new()).unwrap();
    assert!(matches!(again.pop(), Err(Error::Retry(RetryReason::Empty))));
}

#[test]
fn a_producer_attaching_to_a_suspend_request_acknowledges_and_fails() {
    let disk = MemDevice::new(512, 32);
    create(&disk).unwrap();
    let mut consumer = Consumer::attach(disk.clone(), Options::new()).unwrap();
    consumer.suspend().unwrap();
    assert!(matches!(
        Producer::attach(disk.clone(), Options::new()),
        Err(Error::Suspended)
    ));
    assert_eq!(consumer.state().unwrap(), RingState::Suspended);
    consumer.resume().unwrap();
    let mut producer = Producer::attach(disk, Options::new()).unwrap();
    assert_eq!(consumer.state().unwrap(), RingState::Running);
    assert!(producer.push(b"ok").is_ok());
}

#[test]
fn several_pushes_are_published_by_one_advance() {
    let disk = MemDevice::new(512, 32);
    create(&disk).unwrap();
    let mut producer = Producer::attach(disk.clone(), Options::new()).unwrap();
    let mut consumer = Consumer::attach(disk, Options::new()).unwrap();
    let a = producer.push(b"a").unwrap();
    let b = producer.push(b"bb").unwrap();
    let c = producer.push(b"ccc").unwrap();
    assert!(a < b && b < c);
    assert!(consumer.pop().unwrap_err().is_retry());
    producer.advance(b).unwrap();
    let (next, _) = consumer.pop().unwrap();
    assert_eq!(next, a);
    assert_eq!(consumer.pop_from(a).unwrap(), (b, b"bb".to_vec()));
    assert!(consumer.pop_from(b).unwrap_err().is_retry());
    producer.advance(c).unwrap();
    let (end, all) = consumer
        .fold(consumer.position(), Vec::new(), |mut v, item| {
            v.push(item);
            v
        })
        .unwrap();
    assert_eq!(end, c);
    assert_eq!(all, vec![b"a".to_vec(), b"bb".to_vec(), b"ccc".to_vec()]);
    // Re-advancing to an old position is harmless; past the tail is refused.
    producer.advance(a).unwrap();
    assert!(matches!(
        producer.advance(Position::new(c.offset() + 4)),
        Err(Error::InvalidPosition { .. })
    ));
    consumer.advance(end).unwrap();
    assert!(consumer.pop().unwrap_err().is_retry());
}

#[test]
fn push_many_writes_a_batch_all_or_nothing() {
    let disk = MemDevice::new(512, 8); // capacity 2560
    create(&disk).unwrap();
    let mut producer = Producer::attach(disk.clone(), Options::new()).unwrap();
    let mut consumer = Consumer::attach(disk, Options::new()).unwrap();
    let items: Vec<Vec<u8>> = (0..10).map(|i| payload(100 + i, i)).collect();
    let end = producer
        .push_many(items.iter().map(|v| v.as_slice()))
        .unwrap();
    producer.advance(end).unwrap();
    // 10 more do not fit now (2 x 10 x ~108 > 2560 - ...): nothing is written.
    let big: Vec<Vec<u8>> = (0..20).map(|i| payload(100, i)).collect();
    assert!(matches!(
        producer.push_many(big.iter().map(|v| v.as_slice())),
        Err(Error::Retry(RetryReason::Full))
    ));
    assert_eq!(producer.tail(), end);
    // A batch larger than the ring never fits.
    let huge: Vec<Vec<u8>> = (0..30).map(|i| payload(100, i)).collect();
    assert!(matches!(
        producer.push_many(huge.iter().map(|v| v.as_slice())),
        Err(Error::TooLarge { .. })
    ));
    let mut got = Vec::new();
    let last = consumer
        .for_each_bytes(consumer.position(), |_, _, bytes| {
            got.push(bytes.to_vec());
            Ok(())
        })
        .unwrap();
    assert_eq!(got, items);
    assert_eq!(last, end);
}

#[test]
fn blocking_helpers_wait_and_time_out() {
    let disk = MemDevice::new(512, 8);
    create(&disk).unwrap();
    let options = Options::new().max_backoff(Duration::from_millis(1));
    let mut producer = Producer::attach(disk.clone(), options.clone()).unwrap();
    let mut consumer = Consumer::attach(disk, options).unwrap();
    assert!(matches!(
        consumer.pop_wait(Some(Duration::from_millis(20))),
        Err(Error::Retry(RetryReason::Empty))
    ));
    let item = vec![7u8; 1000];
    let handle = std::thread::spawn(move || {
        for _ in 0..50 {
            let p = producer.push_wait(&item, None).unwrap();
            producer.advance(p).unwrap();
        }
        // The ring now holds two items; a third cannot fit until one goes.
        producer
    });
    for _ in 0..50 {
        let (next, got) = consumer.pop_wait(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(got, vec![7u8; 1000]);
        consumer.advance(next).unwrap();
    }
    let mut producer = handle.join().unwrap();
    producer.push(&[1; 1000]).unwrap();
    producer.push(&[1; 1000]).unwrap();
    assert!(matches!(
        producer.push_wait(&[1; 1000], Some(Duration::from_millis(20))),
        Err(Error::Retry(RetryReason::Full))
    ));
}

#[test]
fn one_producer_and_one_consumer_per_ring() {
    let file = common::ring_file(16384);
    create(&FileDevice::open(file.path()).unwrap()).unwrap();
    let producer =
        Producer::attach(FileDevice::open(file.path()).unwrap(), Options::new()).unwrap();
    let consumer =
        Consumer::attach(FileDevice::open(file.path()).unwrap(), Options::new()).unwrap();
    let e = Producer::attach(FileDevice::open(file.path()).unwrap(), Options::new()).unwrap_err();
    assert!(matches!(e, Error::Locked { .. }), "{e}");
    assert!(e.to_string().contains("producer role"), "{e}");
    let e = Consumer::attach(FileDevice::open(file.path()).unwrap(), Options::new()).unwrap_err();
    assert!(matches!(e, Error::Locked { .. }), "{e}");
    producer.detach();
    consumer.detach();
    Producer::attach(FileDevice::open(file.path()).unwrap(), Options::new()).unwrap();
    Consumer::attach(FileDevice::open(file.path()).unwrap(), Options::new()).unwrap();
}

#[test]
fn create_is_a_no_op_on_an_existing_ring() {
    let disk = MemDevice::new(512, 32);
    assert_eq!(create(&disk).unwrap(), shared_block_ring::Created::Created);
    let mut producer = Producer::attach(disk.clone(), Options::new()).unwrap();
    let p = producer.push(b"keep me").unwrap();
    producer.advance(p).unwrap();
    let before = disk.to_vec();
    assert_eq!(
        create(&disk).unwrap(),
        shared_block_ring::Created::AlreadyInitialised
    );
    assert_eq!(disk.to_vec(), before);
}

#[test]
fn debug_info_reports_both_sides() {
    let disk = MemDevice::new(512, 32);
    create(&disk).unwrap();
    let mut producer =
        Producer::attach(disk.clone(), Options::new().queue("q").client("c")).unwrap();
    let p = producer.push(b"hello").unwrap();
    producer.advance(p).unwrap();
    let info = producer.debug_info().unwrap();
    let get = |k: &str| {
        info.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get("producer/offset").as_deref(), Some("12"));
    assert_eq!(get("producer/suspend_ack").as_deref(), Some("false"));
    assert_eq!(get("consumer/offset").as_deref(), Some("0"));
    assert_eq!(get("consumer/suspend").as_deref(), Some("false"));
}

#[test]
fn utf8_and_json_codecs_carry_typed_items() {
    use shared_block_ring::{Json, Utf8};
    let disk = MemDevice::new(512, 32);
    create(&disk).unwrap();
    let mut producer = Producer::attach_with_codec(disk.clone(), Utf8, Options::new()).unwrap();
    let p = producer.push("héllo").unwrap();
    producer.advance(p).unwrap();
    producer.detach();
    let mut consumer = Consumer::attach_with_codec(disk.clone(), Utf8, Options::new()).unwrap();
    let (next, s) = consumer.pop().unwrap();
    assert_eq!(s, "héllo");
    consumer.advance(next).unwrap();
    consumer.detach();

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Op {
        id: u32,
        name: String,
    }
    let mut producer =
        Producer::attach_with_codec(disk.clone(), Json::<Op>::new(), Options::new()).unwrap();
    let p = producer
        .push(&Op {
            id: 7,
            name: "alloc".into(),
        })
        .unwrap();
    producer.advance(p).unwrap();
    let mut consumer =
        Consumer::attach_with_codec(disk, Json::<Op>::new(), Options::new()).unwrap();
    assert_eq!(
        consumer.pop().unwrap().1,
        Op {
            id: 7,
            name: "alloc".into()
        }
    );
}

/// Regression test (issue 15, item 3): `advance` to a position below the
/// one an `advance_pipelined` left pending publishes the pending position
/// too (its items are durable already), durably. It used to write the
/// lower position and forget the pending one: `b` was never published,
/// not even by `sync` or drop.
#[test]
fn an_advance_below_a_pending_pipelined_position_publishes_it() {
    use shared_block_ring::device::FaultDevice;
    let dev = FaultDevice::new(MemDevice::new(512, 16));
    create(&dev).unwrap();
    let mut producer = Producer::attach(dev.clone(), Options::new()).unwrap();
    let a = producer.push(b"a").unwrap();
    let b = producer.push(b"b").unwrap();
    producer.advance_pipelined(b).unwrap();
    assert_eq!(producer.pending_publication(), Some(b));
    producer.advance(a).unwrap();
    assert_eq!(
        (producer.published(), producer.pending_publication()),
        (b, None)
    );
    // Durable at once: every image a power cut may leave holds both items.
    dev.crash_after(0);
    let point = dev.crash_point().unwrap();
    let mut images = 0;
    for image in point.power_cut_images(1024, 0) {
        let mut c = Consumer::attach(MemDevice::from_bytes(512, image), Options::new()).unwrap();
        let (end, items) = c
            .fold(c.position(), Vec::new(), |mut v, i| {
                v.push(i);
                v
            })
            .unwrap();
        assert_eq!((end, items), (b, vec![b"a".to_vec(), b"b".to_vec()]));
        images += 1;
    }
    assert!(images >= 1);
}
