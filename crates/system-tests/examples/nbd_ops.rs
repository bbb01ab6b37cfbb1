//! Where the time of an NBD device goes: the median latency of each device
//! operation the ring uses, on a local file (O_DIRECT) and through
//! qemu-nbd serving another file on the same filesystem, measured in
//! alternation so that both see the same machine load.
//!
//! ```text
//! cargo run --release -p system-tests --example nbd_ops [ROUNDS]
//! ```
//!
//! qemu-nbd runs as `sbr bench` starts it for T8 (`--cache=none`, a Unix
//! socket). Each operation is timed ROUNDS times (default 300) on each
//! device; the table gives the medians in microseconds and NBD / local.
//! The sizes are those of the T8 scenario (a state sector, a batch of 256
//! items of 100 bytes) and of large items (1 MiB, 4 MiB: the consumer's
//! read-ahead), where pipelining several requests matters. A measurement,
//! not a test: nothing is asserted about the figures.

use std::time::Instant;

use shared_block_ring::device::{self, AlignedBuf, BlockDevice};
use shared_block_ring::FileOptions;
use system_tests::nbd::{NbdServer, Transport};
use system_tests::ring_file;

const IMAGE_BYTES: usize = 64 << 20;

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("ROUNDS must be a number"))
        .unwrap_or(300);
    let file = ring_file(IMAGE_BYTES);
    let image = ring_file(IMAGE_BYTES);
    let server = NbdServer::qemu_nbd(image.path(), "ops", Transport::Unix, &["--cache=none"]);
    let local = file.path().to_str().expect("UTF-8 path").to_string();
    let open = |spec: &str| -> Box<dyn BlockDevice> {
        device::open(spec, &FileOptions::new()).unwrap_or_else(|e| panic!("{spec}: {e}"))
    };
    let devices = [open(&local), open(&server.uri())];
    println!("{}", devices[1].describe());
    let ops: &[(&str, usize, Op)] = &[
        ("read 1 sector", 512, Op::Read),
        ("write 1 sector", 512, Op::Write),
        ("write_durable 1 sector", 512, Op::WriteDurable),
        ("flush", 0, Op::Flush),
        ("read 28 KiB", 28 << 10, Op::Read),
        ("write 28 KiB", 28 << 10, Op::Write),
        ("write 28 KiB, flush", 28 << 10, Op::WriteThenFlush),
        ("write_durable 28 KiB", 28 << 10, Op::WriteDurable),
        ("read 1 MiB", 1 << 20, Op::Read),
        ("write 1 MiB", 1 << 20, Op::Write),
        ("read 4 MiB", 4 << 20, Op::Read),
        ("write 4 MiB", 4 << 20, Op::Write),
    ];
    println!(
        "{:<24} {:>11} {:>11} {:>9}",
        "operation", "local us", "NBD us", "NBD/local"
    );
    for (name, bytes, op) in ops {
        let mut times = [Vec::new(), Vec::new()];
        let mut buf = AlignedBuf::zeroed(*bytes);
        for round in 0..rounds {
            for (d, times) in devices.iter().zip(times.iter_mut()) {
                // Spread the requests over the first 52 MiB of the image.
                let sector = 8 + (round as u64 % 12) * 8192;
                let started = Instant::now();
                match op {
                    Op::Read => d.read(sector, &mut buf).unwrap(),
                    Op::Write => d.write(sector, &buf).unwrap(),
                    Op::WriteDurable => d.write_durable(sector, &buf).unwrap(),
                    Op::Flush => d.flush().unwrap(),
                    Op::WriteThenFlush => {
                        d.write(sector, &buf).unwrap();
                        d.flush().unwrap()
                    }
                }
                times.push(started.elapsed().as_secs_f64() * 1e6);
            }
        }
        let [l, n] = times.map(median);
        println!("{name:<24} {l:>11.1} {n:>11.1} {:>9.2}", n / l);
    }
}

#[derive(Clone, Copy)]
enum Op {
    Read,
    Write,
    WriteDurable,
    Flush,
    WriteThenFlush,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
