//! The async producer and consumer (feature `tokio`): waiting on an empty
//! and a full ring, the stream, the suspend handshake, cancellation at
//! every await point, shutdown, and two processes. Each scenario runs on
//! tokio's current-thread and multi-thread runtimes; every wait has a
//! deadline.
#![cfg(feature = "tokio")]

#[macro_use]
mod async_common;
mod common;

use std::io;
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use shared_block_ring::{
    create, AsyncConsumer, AsyncProducer, BlockDevice, Consumer, Durability, Error, FileDevice,
    MemDevice, Options, Position, Producer, RingState, Side,
};
use tokio::time::timeout;

use async_common::{drop_after, still_waiting, within, DEADLINE};

on_both_runtimes!(
    items_round_trip_in_order,
    pop_waits_on_an_empty_ring_until_an_item_is_published,
    push_waits_on_a_full_ring_until_space_is_released,
    the_stream_yields_every_item_once_and_releases_nothing,
    a_producer_and_a_consumer_task_move_items_round_the_ring,
    suspend_and_resume_wait_for_the_handshake,
    a_push_dropped_while_waiting_for_space_pushes_nothing,
    futures_dropped_at_any_poll_leave_whole_items_and_release_nothing,
    detach_waits_for_a_dropped_operation_and_frees_the_role,
    the_stream_ends_when_the_consumer_is_detached,
    a_waiting_operation_gives_way_to_the_next,
);

fn item(n: u64) -> Vec<u8> {
    let len = 1 + (n * 37 % 300) as usize;
    (0..len).map(|i| (n as usize * 7 + i) as u8).collect()
}

/// A ring of `sectors` sectors in memory, created.
fn mem_ring(sectors: u64) -> MemDevice {
    let disk = MemDevice::new(512, sectors);
    create(&disk).unwrap();
    disk
}

fn fast() -> Options {
    Options::new().durability(Durability::ProcessCrash)
}

async fn items_round_trip_in_order() {
    let disk = mem_ring(64);
    let producer = AsyncProducer::attach(disk.clone(), fast()).await.unwrap();
    let consumer = AsyncConsumer::attach(disk, fast()).await.unwrap();
    let mut end = Position::ZERO;
    for n in 0..20 {
        end = producer.push(&item(n)).await.unwrap();
    }
    // Pushed but not published: invisible.
    still_waiting(
        "pop before advance",
        Duration::from_millis(50),
        consumer.pop(),
    )
    .await;
    producer.advance(end).await.unwrap();
    assert_eq!(producer.published().await, end);
    for n in 0..20 {
        let (next, got) = within("pop", consumer.pop()).await.unwrap();
        // pop peeks: again the same item until advanced past.
        assert_eq!(consumer.pop().await.unwrap(), (next, got.clone()));
        assert_eq!(got, item(n), "item {n}");
        consumer.advance(next).await.unwrap();
    }
    assert_eq!(consumer.position().await, end);
}

async fn pop_waits_on_an_empty_ring_until_an_item_is_published() {
    // On a file, the waiting pop is woken by inotify; in memory, it polls.
    let file = common::ring_file(64 * 512);
    let on_file = FileDevice::open(file.path()).unwrap();
    create(&on_file).unwrap();
    let on_file_again = FileDevice::open(file.path()).unwrap();
    let mem = mem_ring(64);
    pop_waits_on(on_file, on_file_again).await;
    pop_waits_on(mem.clone(), mem).await;
}

async fn pop_waits_on<D: BlockDevice + 'static>(for_producer: D, for_consumer: D) {
    let producer = AsyncProducer::attach(for_producer, Options::new())
        .await
        .unwrap();
    let consumer = AsyncConsumer::attach(for_consumer, Options::new())
        .await
        .unwrap();
    let pop = consumer.pop();
    let publish = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let end = producer.push(b"late").await.unwrap();
        let publishing = Instant::now();
        producer.advance(end).await.unwrap();
        publishing
    };
    let (popped, published) = within("the pop and the publication", async {
        tokio::join!(
            async {
                let r = pop.await;
                (r, Instant::now())
            },
            publish
        )
    })
    .await;
    let ((next, got), popped_at) = (popped.0.unwrap(), popped.1);
    assert_eq!(got, b"late");
    assert!(
        popped_at >= published,
        "the pop returned before the item was published"
    );
    consumer.advance(next).await.unwrap();
}

/// Fills the ring with `filler` items until the next would not fit; returns
/// the number pushed (all published).
async fn fill<D: BlockDevice + 'static>(producer: &AsyncProducer<D>, filler: &[u8]) -> u64 {
    let mut n = 0;
    let stream_len = (4 + filler.len() as u64).div_ceil(4) * 4;
    while producer.free_bytes().await >= stream_len {
        let end = within("a push into a ring with room", producer.push(filler))
            .await
            .unwrap();
        producer.advance(end).await.unwrap();
        n += 1;
    }
    n
}

async fn push_waits_on_a_full_ring_until_space_is_released() {
    let disk = mem_ring(16);
    let producer = AsyncProducer::attach(disk.clone(), fast()).await.unwrap();
    let consumer = AsyncConsumer::attach(disk, fast()).await.unwrap();
    let filled = fill(&producer, &[7u8; 100]).await;
    assert!(filled > 10);
    let tail = producer.tail().await;
    still_waiting(
        "a push into a full ring",
        Duration::from_millis(100),
        producer.push(b"more"),
    )
    .await;
    // The dropped push left nothing behind.
    assert_eq!(producer.tail().await, tail);

    let push = async {
        let end = producer.push(b"more").await?;
        producer.advance(end).await?;
        Ok::<_, Error>(Instant::now())
    };
    let release = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (next, _) = consumer.pop().await.unwrap();
        let at = Instant::now();
        consumer.advance(next).await.unwrap();
        at
    };
    let (pushed_at, released_at) = within("a push waiting for space", async {
        tokio::join!(push, release)
    })
    .await;
    assert!(pushed_at.unwrap() >= released_at);
    let mut items = consumer.stream();
    for _ in 1..filled {
        let (_, got) = within("a filler item", items.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, [7u8; 100]);
    }
    let (_, got) = within("the item that waited", items.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"more");
}

async fn the_stream_yields_every_item_once_and_releases_nothing() {
    let disk = mem_ring(64);
    let producer = AsyncProducer::attach(disk.clone(), fast()).await.unwrap();
    let consumer = AsyncConsumer::attach(disk, fast()).await.unwrap();
    let end = producer
        .push_many(
            (0..30)
                .map(item)
                .collect::<Vec<_>>()
                .iter()
                .map(Vec::as_slice),
        )
        .await
        .unwrap();
    producer.advance(end).await.unwrap();
    let mut items = consumer.stream();
    let mut ends = Vec::new();
    for n in 0..30 {
        let (next, got) = within("a stream item", items.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, item(n));
        ends.push(next);
    }
    still_waiting(
        "the stream past the last item",
        Duration::from_millis(50),
        items.next(),
    )
    .await;
    // Nothing was released: a new stream (or a pop) starts again.
    assert_eq!(consumer.position().await, Position::ZERO);
    let mut again = consumer.stream();
    assert_eq!(
        within("a new stream", again.next())
            .await
            .unwrap()
            .unwrap()
            .1,
        item(0)
    );
    // Releasing through the stream; a stream made later starts there.
    items.advance(ends[9]).await.unwrap();
    assert_eq!(consumer.position().await, ends[9]);
    // The `next()` dropped above lost nothing: its fetch yields now.
    let end = producer.push(&item(30)).await.unwrap();
    producer.advance(end).await.unwrap();
    let (_, got) = within("the item after a dropped next()", items.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, item(30));
    let mut later = consumer.stream();
    assert_eq!(
        within("a stream after advance", later.next())
            .await
            .unwrap()
            .unwrap()
            .1,
        item(10)
    );
}

async fn a_producer_and_a_consumer_task_move_items_round_the_ring() {
    // 13 data sectors (6.5 KiB) for ~1 MiB of items: the producer waits for
    // space and the consumer for items, many times.
    let file = common::ring_file(16 * 512);
    let device = FileDevice::open(file.path()).unwrap();
    create(&device).unwrap();
    const N: u64 = 4000;
    let producer = AsyncProducer::attach(device, fast()).await.unwrap();
    let consumer = AsyncConsumer::attach(FileDevice::open(file.path()).unwrap(), fast())
        .await
        .unwrap();
    let produce = tokio::spawn(async move {
        for n in 0..N {
            let end = producer.push(&item(n)).await?;
            if n % 3 == 2 || n == N - 1 {
                producer.advance(end).await?;
            }
        }
        Ok::<_, Error>(())
    });
    let consume = tokio::spawn(async move {
        let mut items = consumer.stream();
        for n in 0..N {
            let (next, got) = items.next().await.expect("the stream ended")?;
            assert_eq!(got, item(n), "item {n}");
            if n % 5 == 4 || n == N - 1 {
                consumer.advance(next).await?;
            }
        }
        Ok::<_, Error>(())
    });
    let (p, c) = within("4000 items through a 6.5 KiB ring", async {
        tokio::join!(produce, consume)
    })
    .await;
    p.unwrap().unwrap();
    c.unwrap().unwrap();
}

async fn suspend_and_resume_wait_for_the_handshake() {
    let disk = mem_ring(16);
    let producer = AsyncProducer::attach(disk.clone(), Options::new())
        .await
        .unwrap();
    let consumer = AsyncConsumer::attach(disk, Options::new()).await.unwrap();
    within("running() on a running ring", producer.running())
        .await
        .unwrap();
    // The producer only acknowledges when it looks: an idle one never does.
    still_waiting(
        "a suspend no producer acknowledges",
        Duration::from_millis(100),
        consumer.suspend(),
    )
    .await;
    let look = async {
        while producer.state().await.unwrap() != RingState::Suspended {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    within("suspend", async {
        tokio::join!(consumer.suspend(), look).0
    })
    .await
    .unwrap();
    assert_eq!(consumer.state().await.unwrap(), RingState::Suspended);
    assert!(matches!(producer.push(b"x").await, Err(Error::Suspended)));
    still_waiting(
        "running() while suspended",
        Duration::from_millis(100),
        producer.running(),
    )
    .await;
    let (resumed, running) = within("resume and running()", async {
        tokio::join!(consumer.resume(), producer.running())
    })
    .await;
    resumed.unwrap();
    running.unwrap();
    assert_eq!(consumer.state().await.unwrap(), RingState::Running);
    let end = producer.push(b"x").await.unwrap();
    producer.advance(end).await.unwrap();
}

/// A device whose change notifications the test sends: a waiting task
/// sleeps in `wait_for_change` until [`Gate::open`], so the test controls
/// exactly when it looks again.
#[derive(Clone)]
struct Gate {
    inner: MemDevice,
    state: Arc<(Mutex<GateState>, Condvar)>,
}

#[derive(Default)]
struct GateState {
    waiting: usize,
    opened: u64,
}

impl Gate {
    fn new(inner: MemDevice) -> Gate {
        Gate {
            inner,
            state: Arc::default(),
        }
    }

    /// Waits (with a deadline) until a task sleeps in `wait_for_change`.
    fn wait_for_a_waiter(&self) {
        let (m, cv) = &*self.state;
        let (g, t) = cv
            .wait_timeout_while(m.lock().unwrap(), DEADLINE, |s| s.waiting == 0)
            .unwrap();
        assert!(
            !t.timed_out() || g.waiting > 0,
            "nothing waited for a change"
        );
    }

    /// Wakes the waiters, as a change notification would.
    fn open(&self) {
        let (m, cv) = &*self.state;
        m.lock().unwrap().opened += 1;
        cv.notify_all();
    }
}

impl BlockDevice for Gate {
    fn sector_size(&self) -> usize {
        self.inner.sector_size()
    }
    fn sectors(&self) -> u64 {
        self.inner.sectors()
    }
    fn read(&self, sector: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read(sector, buf)
    }
    fn write(&self, sector: u64, buf: &[u8]) -> io::Result<()> {
        self.inner.write(sector, buf)
    }
    fn flush(&self) -> io::Result<()> {
        self.inner.flush()
    }
    fn try_lock(&self, side: Side) -> io::Result<Result<(), String>> {
        self.inner.try_lock(side)
    }
    fn unlock(&self, side: Side) {
        self.inner.unlock(side)
    }
    fn notifies_changes(&self) -> bool {
        true
    }
    /// Sleeps until the gate opens, whatever the backoff asked for (but
    /// never beyond the test's deadline).
    fn wait_for_change(&self, _: Duration) -> bool {
        let (m, cv) = &*self.state;
        let mut g = m.lock().unwrap();
        let seen = g.opened;
        g.waiting += 1;
        cv.notify_all();
        let (mut g, _) = cv
            .wait_timeout_while(g, DEADLINE, |s| s.opened == seen)
            .unwrap();
        g.waiting -= 1;
        g.opened != seen
    }
}

async fn a_push_dropped_while_waiting_for_space_pushes_nothing() {
    let disk = mem_ring(16);
    let gate = Gate::new(disk.clone());
    let producer = AsyncProducer::attach(gate.clone(), fast()).await.unwrap();
    let filled = fill(&producer, &[1u8; 200]).await;
    let tail = producer.tail().await;
    {
        let push = producer.push(&[2u8; 200]);
        let gate = gate.clone();
        let waiting = tokio::task::spawn_blocking(move || gate.wait_for_a_waiter());
        tokio::select! {
            r = push => panic!("a push into a full ring returned {r:?}"),
            w = waiting => w.unwrap(),
        }
        // The push future is dropped here, while its task sleeps.
    }
    // Space appears, then the sleeping task wakes: it must not push now.
    let consumer_disk = disk.clone();
    tokio::task::spawn_blocking(move || {
        let mut consumer = Consumer::attach(consumer_disk, fast()).unwrap();
        let (next, _) = consumer.pop().unwrap();
        consumer.advance(next).unwrap();
    })
    .await
    .unwrap();
    gate.open();
    // Let the task run alone: an operation queued now would make it give
    // way, which would hide a push made after the future was dropped.
    tokio::time::sleep(Duration::from_millis(100)).await;
    // tail() waits for the dropped push's task to give the handle back.
    assert_eq!(
        within("the dropped push's task", producer.tail()).await,
        tail
    );
    assert!(filled > 1);
}

async fn futures_dropped_at_any_poll_leave_whole_items_and_release_nothing() {
    let disk = mem_ring(32);
    let producer = AsyncProducer::attach(disk.clone(), fast()).await.unwrap();
    let consumer = AsyncConsumer::attach(disk, fast()).await.unwrap();
    let gaps = [
        Duration::ZERO,
        Duration::from_micros(50),
        Duration::from_millis(1),
    ];
    let mut n = 0u64;
    let mut expected = Vec::new();
    for polls in 0..6 {
        for gap in gaps {
            // A push dropped after `polls` polls: pushed whole, or not at all.
            let before = producer.tail().await;
            let done = drop_after(producer.push(&item(n)), polls, gap).await;
            let after = producer.tail().await;
            let len = (4 + item(n).len() as u64).div_ceil(4) * 4;
            match done {
                Some(r) => assert_eq!(r.unwrap().offset(), before.offset() + len),
                None => assert!(
                    after == before || after.offset() == before.offset() + len,
                    "a dropped push moved the tail from {before:?} to {after:?}"
                ),
            }
            if after != before {
                expected.push(item(n));
            }
            n += 1;

            // An advance dropped likewise: publishes all of it, or nothing.
            let published = producer.published().await;
            let done = drop_after(producer.advance(after), polls, gap).await;
            let now = producer.published().await;
            assert!(
                now == published || now == after,
                "advance published up to {now:?}"
            );
            if let Some(r) = done {
                r.unwrap();
                assert_eq!(now, after);
            }
            producer.advance(after).await.unwrap();

            // A pop dropped at any point releases nothing.
            let position = consumer.position().await;
            let _ = drop_after(consumer.pop(), polls, gap).await;
            assert_eq!(consumer.position().await, position);
            if expected.is_empty() {
                continue;
            }

            // A consumer advance releases up to a popped position, or nothing.
            let (next, got) = within("pop", consumer.pop()).await.unwrap();
            assert_eq!(got, expected.remove(0));
            let done = drop_after(consumer.advance(next), polls, gap).await;
            let now = consumer.position().await;
            assert!(now == position || now == next, "released up to {now:?}");
            if let Some(r) = done {
                r.unwrap();
                assert_eq!(now, next);
            }
            consumer.advance(next).await.unwrap();
        }
    }
    // Every item the producer kept arrives whole; nothing else.
    producer.advance(producer.tail().await).await.unwrap();
    for want in expected {
        let (next, got) = within("a kept item", consumer.pop()).await.unwrap();
        assert_eq!(got, want);
        consumer.advance(next).await.unwrap();
    }
    still_waiting(
        "a pop past the last kept item",
        Duration::from_millis(20),
        consumer.pop(),
    )
    .await;
}

async fn detach_waits_for_a_dropped_operation_and_frees_the_role() {
    let disk = mem_ring(16);
    let producer = AsyncProducer::attach(disk.clone(), fast()).await.unwrap();
    let consumer = AsyncConsumer::attach(disk.clone(), fast()).await.unwrap();
    fill(&producer, &[3u8; 100]).await;
    still_waiting(
        "a push into a full ring",
        Duration::from_millis(50),
        producer.push(b"x"),
    )
    .await;
    still_waiting(
        "a pop past the end",
        Duration::from_millis(50),
        consumer.pop_from(producer.published().await),
    )
    .await;
    // Both roles are taken until detached...
    assert!(matches!(
        Producer::attach(disk.clone(), fast()),
        Err(Error::Locked { .. })
    ));
    assert!(matches!(
        Consumer::attach(disk.clone(), fast()),
        Err(Error::Locked { .. })
    ));
    within("detach of the producer", producer.detach()).await;
    within("detach of the consumer", consumer.detach()).await;
    // ... and free as soon as detach returns.
    Producer::attach(disk.clone(), fast()).unwrap();
    let consumer = AsyncConsumer::attach(disk, fast()).await.unwrap();
    // Nothing was released by the pops.
    assert_eq!(consumer.position().await, Position::ZERO);
    let blocking = within("into_blocking", consumer.into_blocking()).await;
    assert_eq!(blocking.position(), Position::ZERO);
}

async fn the_stream_ends_when_the_consumer_is_detached() {
    let disk = mem_ring(16);
    let consumer = AsyncConsumer::attach(disk, fast()).await.unwrap();
    let mut items = consumer.stream();
    still_waiting(
        "a stream on an empty ring",
        Duration::from_millis(50),
        items.next(),
    )
    .await;
    within("detach", consumer.detach()).await;
    assert!(within("the end of the stream", items.next())
        .await
        .is_none());
    assert!(matches!(
        items.advance(Position::ZERO).await,
        Err(Error::ShutDown)
    ));
}

async fn a_waiting_operation_gives_way_to_the_next() {
    let disk = mem_ring(16);
    let producer = AsyncProducer::attach(disk.clone(), fast()).await.unwrap();
    let consumer = AsyncConsumer::attach(disk, fast()).await.unwrap();
    // A stream waiting for an item does not hold up an advance (of items
    // popped earlier, say) or a look at the producer.
    let mut items = consumer.stream();
    let others = async {
        let quick = Duration::from_secs(2);
        let position = consumer.position().await;
        timeout(quick, consumer.advance(position))
            .await
            .expect("an advance behind a waiting stream")
            .unwrap();
        timeout(quick, consumer.state())
            .await
            .expect("a state() behind a waiting stream")
            .unwrap();
        let end = producer.push(b"now").await.unwrap();
        producer.advance(end).await.unwrap();
    };
    let (item, ()) = within("the stream and the others", async {
        tokio::join!(items.next(), others)
    })
    .await;
    assert_eq!(item.unwrap().unwrap().1, b"now");
    // A push waiting for space does not hold up a publication.
    fill(&producer, &[9u8; 100]).await;
    let pushed = producer.push(&[9u8; 100]);
    let others = async {
        let end = producer.tail().await;
        timeout(Duration::from_secs(2), producer.advance(end))
            .await
            .expect("an advance behind a waiting push")
            .unwrap();
        let (next, _) = consumer.pop().await.unwrap();
        consumer.advance(next).await.unwrap();
    };
    let (pushed, ()) = within("the push and the others", async {
        tokio::join!(pushed, others)
    })
    .await;
    pushed.unwrap();
}

#[test]
fn dropping_the_runtime_ends_the_waiting_tasks() {
    let disk = mem_ring(16);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let holder = disk.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        runtime.spawn(async move {
            let producer = AsyncProducer::attach(holder.clone(), fast()).await.unwrap();
            let consumer = AsyncConsumer::attach(holder, fast()).await.unwrap();
            fill(&producer, &[5u8; 100]).await;
            let end = producer.published().await;
            tx.send(()).unwrap();
            // Both wait for ever: the ring is full, and nothing follows `end`.
            let _ = tokio::join!(producer.push(b"never"), consumer.pop_from(end));
        });
        rx.recv_timeout(DEADLINE).expect("the tasks started");
        std::thread::sleep(Duration::from_millis(50));
        let start = Instant::now();
        drop(runtime);
        done_tx.send(start.elapsed()).unwrap();
    });
    let took = done_rx
        .recv_timeout(DEADLINE)
        .expect("dropping the runtime returned");
    assert!(
        took < Duration::from_secs(2),
        "dropping the runtime took {took:?}"
    );
    // The blocking tasks ended, and gave the roles back.
    Producer::attach(disk.clone(), fast()).unwrap();
    Consumer::attach(disk, fast()).unwrap();
}

/// The child side of [`two_processes_share_a_ring_file`]: an async consumer.
const CHILD_RING: &str = "SBR_ASYNC_CHILD_RING";
const ITEMS: u64 = 3000;

async fn consume_in_child(ring: &str) {
    let device = FileDevice::open(ring).unwrap();
    let consumer = AsyncConsumer::attach(device, fast()).await.unwrap();
    let mut items = consumer.stream();
    for n in 0..ITEMS {
        let (next, got) = within("an item from the parent", items.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, item(n), "item {n}");
        consumer.advance(next).await.unwrap();
    }
    println!("consumed {ITEMS} items");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_a_ring_file() {
    if let Ok(ring) = std::env::var(CHILD_RING) {
        consume_in_child(&ring).await;
        return;
    }
    // 13 data sectors: the producer here waits for the consumer there, and
    // the other way round, woken by inotify across the processes.
    let file = common::ring_file(16 * 512);
    let device = FileDevice::open(file.path()).unwrap();
    create(&device).unwrap();
    let producer = AsyncProducer::attach(device, fast()).await.unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "two_processes_share_a_ring_file",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_RING, file.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    for n in 0..ITEMS {
        let end = within(
            "space in the ring (is the child consuming?)",
            producer.push(&item(n)),
        )
        .await
        .unwrap();
        producer.advance(end).await.unwrap();
    }
    let output = within(
        "the child to finish",
        tokio::task::spawn_blocking(move || {
            let mut child = child;
            let deadline = Instant::now() + DEADLINE;
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            child.wait_with_output().unwrap()
        }),
    )
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains(&format!("consumed {ITEMS} items")),
        "the child failed ({:?}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!(
        "{ITEMS} items between two processes in {:?}",
        started.elapsed()
    );
}
