//! Rough throughput of the journal's group commit, against a producer
//! publishing one item at a time, on a ring in a file (O_DIRECT).
//!
//! ```text
//! cargo run --release -p shared-block-ring --example journal_throughput [ROUNDS] [SECONDS] [DIR]
//! ```
//!
//! For each durability mode, each round measures, one after the other
//! for SECONDS each: a `Producer` doing push + advance of one 100-byte
//! item at a time, then the journal with 1, 4 and 8 threads pushing
//! 100-byte operations (a no-op `perform`). The device's speed drifts
//! (other programs share it), so each round's journal rates are divided
//! by the same round's single-item rate, and the median ratio over the
//! rounds is printed, with the journal's average group size (operations
//! per producer advance). The ring file goes in DIR (default: the
//! workspace's `target/tmp`, on a filesystem that supports O_DIRECT).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shared_block_ring::{
    create, Durability, FileDevice, Journal, JournalOptions, Options, Producer,
};

const RING_BYTES: usize = 8 << 20;
const THREADS: [usize; 3] = [1, 4, 8];
const PAYLOAD: [u8; 100] = [0x5a; 100];

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// A fresh, fully written (not sparse) ring file.
fn fresh_ring(path: &Path) -> Res<FileDevice> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(&vec![0u8; RING_BYTES])?;
    f.sync_all()?;
    let device = FileDevice::open(path)?;
    create(&device)?;
    Ok(device)
}

/// Items per second published one at a time (push, then advance).
fn single_item_rate(path: &Path, durability: Durability, run: Duration) -> Res<f64> {
    let device = fresh_ring(path)?;
    let mut producer = Producer::attach(device, Options::new().durability(durability))?;
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < run {
        let end = producer.push(&PAYLOAD)?;
        producer.advance(end)?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Operations per second with `threads` threads pushing into one journal,
/// and the average number of operations per producer advance.
fn journal_rate(
    path: &Path,
    durability: Durability,
    threads: usize,
    run: Duration,
) -> Res<(f64, f64)> {
    let device = fresh_ring(path)?;
    let journal = Journal::start(
        device,
        JournalOptions::new().name("bench").durability(durability),
        |_: &[Vec<u8>]| Ok::<(), String>(()),
    )?;
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    journal.push(&PAYLOAD).expect("push");
                }
            });
        }
        std::thread::sleep(run);
        stop.store(true, Ordering::Relaxed);
    });
    let elapsed = start.elapsed().as_secs_f64();
    let stats = journal.stats();
    journal.shutdown();
    Ok((
        stats.pushed as f64 / elapsed,
        stats.pushed as f64 / stats.commits.max(1) as f64,
    ))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Res<()> {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5);
    let seconds: f64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1.0);
    let dir = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tmp"));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("journal-throughput.img");
    let run = Duration::from_secs_f64(seconds);
    println!(
        "ring: {} ({} MiB); {rounds} rounds of {seconds} s per scenario",
        path.display(),
        RING_BYTES >> 20
    );
    for durability in [Durability::PowerLoss, Durability::ProcessCrash] {
        let mut singles = Vec::new();
        let mut ratios = vec![Vec::new(); THREADS.len()];
        let mut groups = vec![Vec::new(); THREADS.len()];
        for round in 1..=rounds {
            let single = single_item_rate(&path, durability, run)?;
            singles.push(single);
            let mut line = format!("{durability} round {round}: single {single:.0}/s");
            for (k, &threads) in THREADS.iter().enumerate() {
                let (rate, group) = journal_rate(&path, durability, threads, run)?;
                ratios[k].push(rate / single);
                groups[k].push(group);
                line += &format!(", journal x{threads} {rate:.0}/s ({:.2} x)", rate / single);
            }
            println!("{line}");
        }
        println!(
            "{durability}: median single-item push+advance {:.0} items/s",
            median(singles)
        );
        for (k, threads) in THREADS.iter().enumerate() {
            println!(
                "{durability}: journal with {threads} thread(s): median {:.2} x single, {:.2} ops per advance",
                median(ratios[k].clone()),
                median(groups[k].clone())
            );
        }
    }
    std::fs::remove_file(&path)?;
    Ok(())
}
