//! Throughput of a batched producer and consumer on a local file and over
//! loopback NBD (qemu-nbd with `--cache=none`), in one run.
//!
//! ```text
//! cargo run --release -p system-tests --example nbd_throughput [ITEMS]
//! ```
//!
//! The producer pushes 100-byte items in batches of 256 (`push_many`) and
//! publishes each batch; the consumer, in another thread with its own
//! device (its own connection for NBD), drains everything published with
//! `for_each_bytes`, checks each item's index and releases it. The time is
//! from the first push to the consumer releasing the last item, for each
//! durability mode. A measurement, not a test: nothing is asserted about
//! the figures.

use std::time::{Duration, Instant};

use shared_block_ring::device::{self, BlockDevice};
use shared_block_ring::{create, Consumer, Durability, FileOptions, Options, Producer};
use system_tests::nbd::{NbdServer, Transport};
use system_tests::ring_file;

const ITEM_LEN: usize = 100;
const BATCH: usize = 256;
const RING_BYTES: usize = 16 << 20;

fn main() {
    let items: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("ITEMS must be a number"))
        .unwrap_or(500_000);
    let file = ring_file(RING_BYTES);
    let image = ring_file(RING_BYTES);
    let server = NbdServer::qemu_nbd(image.path(), "ring", Transport::Tcp, &["--cache=none"]);
    let local = file.path().to_str().expect("UTF-8 path").to_string();
    println!(
        "{items} items of {ITEM_LEN} bytes, batches of {BATCH}, a {} MiB ring",
        RING_BYTES >> 20
    );
    println!(
        "{:<44} {:<14} {:>8} {:>11} {:>8}",
        "device", "durability", "seconds", "items/s", "MB/s"
    );
    for durability in [Durability::PowerLoss, Durability::ProcessCrash] {
        for (name, spec) in [
            ("local file (O_DIRECT)", local.clone()),
            ("qemu-nbd --cache=none over loopback TCP", server.uri()),
        ] {
            let secs = run(&spec, items, durability).as_secs_f64();
            println!(
                "{name:<44} {:<14} {secs:>8.2} {:>11.0} {:>8.1}",
                durability.to_string(),
                items as f64 / secs,
                (items as usize * ITEM_LEN) as f64 / secs / 1e6
            );
        }
    }
}

fn open(spec: &str) -> Box<dyn BlockDevice> {
    device::open(spec, &FileOptions::new()).unwrap_or_else(|e| panic!("{spec}: {e}"))
}

/// Moves `items` items from a producer to a consumer thread; returns the
/// time taken.
fn run(spec: &str, items: u64, durability: Durability) -> Duration {
    // A fresh ring each time: wipe the signature so `create` starts over.
    let d = open(spec);
    d.write_durable(0, &vec![0u8; d.sector_size()]).unwrap();
    create(&d).unwrap();
    drop(d);
    let options = Options::new().durability(durability);
    let mut producer = Producer::attach(open(spec), options.clone()).unwrap();
    let mut consumer = Consumer::attach(open(spec), options).unwrap();
    let started = Instant::now();
    let reader = std::thread::spawn(move || {
        let mut next = 0u64;
        while next < items {
            consumer
                .wait_for_item(consumer.position(), Some(Duration::from_secs(60)))
                .unwrap();
            let end = consumer
                .for_each_bytes(consumer.position(), |_, _, bytes| {
                    assert_eq!(bytes.len(), ITEM_LEN);
                    assert_eq!(bytes[..8], next.to_le_bytes());
                    next += 1;
                    Ok(())
                })
                .unwrap();
            consumer.advance(end).unwrap();
        }
    });
    let mut batch = vec![vec![0u8; ITEM_LEN]; BATCH];
    let mut sent = 0u64;
    while sent < items {
        let n = (items - sent).min(BATCH as u64) as usize;
        for (i, it) in batch.iter_mut().take(n).enumerate() {
            it[..8].copy_from_slice(&(sent + i as u64).to_le_bytes());
        }
        let end = loop {
            match producer.push_many(batch.iter().take(n).map(Vec::as_slice)) {
                Ok(end) => break end,
                Err(e) if e.is_retry() => std::thread::sleep(Duration::from_micros(50)),
                Err(e) => panic!("push: {e}"),
            }
        };
        producer.advance(end).unwrap();
        sent += n as u64;
    }
    reader.join().unwrap();
    started.elapsed()
}
