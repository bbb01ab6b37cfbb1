//! The async API against the blocking one, in the same run, on the same
//! ring file (O_DIRECT): push+advance and pop+advance of one 100-byte item
//! at a time, in both durability modes.
//!
//! ```text
//! cargo bench -p shared-block-ring --features tokio --bench async_ring [-- ROUNDS [MILLIS]]
//! ```
//!
//! The disk is shared and its speed drifts within seconds, so the APIs take
//! turns: each round times the blocking calls for MILLIS (default 300),
//! then the async calls from a task on a 2-worker multi-thread runtime
//! ("mt"), then on a current-thread runtime ("ct"), for as long each, and
//! the ratios async/blocking are taken per round; the table gives the
//! median rate of each and the median of the ratios over ROUNDS (default
//! 9). Producer rounds leave out releasing space; consumer rounds
//! leave out filling the ring. Without `--bench` (as under `cargo test
//! --benches`) it runs 3 short rounds, to check that it works.

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use shared_block_ring::{
    create, AsyncConsumer, AsyncProducer, Consumer, Durability, FileDevice, Options, Producer,
};

const RING_BYTES: usize = 16 << 20;
const PAYLOAD: [u8; 100] = [0x5a; 100];

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;
type P = Producer<FileDevice>;
type C = Consumer<FileDevice>;

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let numbers: Vec<u64> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let rounds = numbers.first().copied().unwrap_or(if full { 9 } else { 3 }) as usize;
    let millis = numbers
        .get(1)
        .copied()
        .unwrap_or(if full { 300 } else { 30 });
    let round = Duration::from_millis(millis);

    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/tmp");
    std::fs::create_dir_all(&dir)?;
    let file = tempfile::Builder::new()
        .prefix("async-bench-")
        .tempfile_in(&dir)?;
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    println!("async vs blocking, one 100-byte item per call, {rounds} rounds of {millis} ms each, alternating");
    println!(
        "{:<30} {:>10} {:>14} {:>6} {:>16} {:>6}",
        "scenario", "blocking/s", "async (mt)/s", "ratio", "async (ct)/s", "ratio"
    );
    for durability in [Durability::PowerLoss, Durability::ProcessCrash] {
        // A fresh ring, written in full (never sparse).
        file.as_file().set_len(0)?;
        file.as_file().write_all_at(&vec![0u8; RING_BYTES], 0)?;
        file.as_file().sync_all()?;
        let device = FileDevice::open(file.path())?;
        create(&device)?;
        let options = Options::new().durability(durability);
        let mut p = Producer::attach(device, options.clone())?;
        let mut c = Consumer::attach(FileDevice::open(file.path())?, options)?;

        let mut push = Rows::default();
        let mut pop = Rows::default();
        for _ in 0..rounds {
            drain(&mut c)?;
            push.blocking.push(push_blocking(&mut p, round)?);
            for (runtime, rates) in [(&multi, &mut push.multi), (&current, &mut push.current)] {
                drain(&mut c)?;
                let (rate, back) = runtime.block_on(async {
                    tokio::spawn(push_async(p, round)).await.expect("the task")
                })?;
                p = back;
                rates.push(rate);
            }

            let n = fill(&mut p, &mut c)?;
            pop.blocking.push(pop_blocking(&mut c, n, round)?);
            for (runtime, rates) in [(&multi, &mut pop.multi), (&current, &mut pop.current)] {
                let n = fill(&mut p, &mut c)?;
                // As a task: `block_on`'s own future is not on a worker.
                let (rate, back) = runtime.block_on(async {
                    tokio::spawn(pop_async(c, n, round))
                        .await
                        .expect("the task")
                })?;
                c = back;
                rates.push(rate);
            }
        }
        push.print(&format!("push+advance ({durability})"));
        pop.print(&format!("pop+advance ({durability})"));
    }
    Ok(())
}

/// Rates (items/s) per round: blocking, async on the multi-thread and on
/// the current-thread runtime.
#[derive(Default)]
struct Rows {
    blocking: Vec<f64>,
    multi: Vec<f64>,
    current: Vec<f64>,
}

impl Rows {
    fn print(&self, name: &str) {
        let ratios = |rates: &[f64]| -> Vec<f64> {
            self.blocking
                .iter()
                .zip(rates)
                .map(|(b, a)| a / b)
                .collect()
        };
        println!(
            "{name:<30} {:>10.0} {:>14.0} {:>6.3} {:>16.0} {:>6.3}",
            median(&self.blocking),
            median(&self.multi),
            median(&ratios(&self.multi)),
            median(&self.current),
            median(&ratios(&self.current)),
        );
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Releases everything published (untimed).
fn drain(c: &mut C) -> Res<()> {
    let end = c.for_each_bytes(c.position(), |_, _, _| Ok(()))?;
    c.advance(end)?;
    Ok(())
}

/// Drains, then fills half the ring (untimed); returns the items pushed.
fn fill(p: &mut P, c: &mut C) -> Res<u64> {
    drain(c)?;
    p.state()?; // look at the space just released
    let items: Vec<&[u8]> = vec![&PAYLOAD; 256];
    let mut n = 0;
    while p.free_bytes() > p.geometry().capacity() / 2 {
        let end = p.push_many(items.iter().copied())?;
        p.advance(end)?;
        n += 256;
    }
    Ok(n)
}

fn push_blocking(p: &mut P, round: Duration) -> Res<f64> {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < round && p.free_bytes() > 4096 {
        let end = p.push(&PAYLOAD)?;
        p.advance(end)?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

async fn push_async(p: P, round: Duration) -> Res<(f64, P)> {
    let p = AsyncProducer::new(p);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < round && p.free_bytes().await > 4096 {
        let end = p.push(&PAYLOAD).await?;
        p.advance(end).await?;
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    Ok((rate, p.into_blocking().await))
}

fn pop_blocking(c: &mut C, items: u64, round: Duration) -> Res<f64> {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < round && n < items {
        let (next, item) = c.pop()?;
        assert_eq!(item.len(), PAYLOAD.len());
        c.advance(next)?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

async fn pop_async(c: C, items: u64, round: Duration) -> Res<(f64, C)> {
    let c = AsyncConsumer::new(c);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < round && n < items {
        let (next, item) = c.pop().await?;
        assert_eq!(item.len(), PAYLOAD.len());
        c.advance(next).await?;
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    Ok((rate, c.into_blocking().await))
}
