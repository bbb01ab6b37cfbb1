//! `sbr demo`: a producer process and a consumer process move items
//! through a ring in a file; the consumer checks every item and both report
//! how fast it went.
//!
//! Each item carries its sequence number and the producer's monotonic
//! clock reading when it was made, then pseudo-random bytes derived from
//! the sequence number; the consumer recomputes them, so a lost,
//! duplicated, reordered or damaged item is caught, and measures the
//! latency from creation to pop (CLOCK_MONOTONIC is shared by all processes
//! on a host).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shared_block_ring::{
    create_with, Consumer, Durability, Error, FileDevice, FileOptions, Options, Producer,
    RetryReason, RingFormat,
};

use crate::common::{outln, parse_size, CmdResult, Failure, OnDevice, EXIT_FATAL};

/// Arguments of `sbr demo`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory for the ring file (default: a new temporary directory,
    /// removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,

    /// Number of items to move.
    #[arg(long, default_value_t = 1_000_000)]
    items: u64,

    /// Size of the ring file.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    size: u64,

    /// Largest item payload in bytes (lengths are uniform from 16 up).
    #[arg(long, default_value_t = 200)]
    max_len: usize,

    /// Items per published batch.
    #[arg(long, default_value_t = 256)]
    batch: usize,

    /// What an advance survives: power-loss or process-crash.
    #[arg(long, default_value = "power-loss")]
    durability: Durability,

    /// The ring's format: 1 (the OCaml library's) or 2 (checksummed
    /// records, one flush per publication, owner leases).
    #[arg(long, value_name = "N", default_value = "1")]
    format: RingFormat,
}

/// Arguments of the hidden `sbr demo-peer`.
#[derive(clap::Args, Debug)]
pub struct PeerArgs {
    #[arg(long, value_parser = ["producer", "consumer"])]
    role: String,
    #[arg(long)]
    device: PathBuf,
    #[arg(long)]
    items: u64,
    #[arg(long)]
    seed: u64,
    #[arg(long)]
    max_len: usize,
    #[arg(long)]
    batch: usize,
    #[arg(long)]
    durability: Durability,
    #[arg(long)]
    buffered: bool,
}

/// What a peer prints on standard output, as one JSON line.
#[derive(Serialize, Deserialize, Debug, Default)]
struct PeerReport {
    items: u64,
    bytes: u64,
    seconds: f64,
    errors: u64,
    first_error: Option<String>,
    latency_p50_us: Option<f64>,
    latency_p99_us: Option<f64>,
    latency_max_us: Option<f64>,
}

const HEADER: usize = 16;

/// Runs `sbr demo`.
pub fn run(a: Args) -> CmdResult {
    let fatal = |m: String| Failure::new(EXIT_FATAL, m);
    let tmp;
    let dir = match &a.dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::Builder::new()
                .prefix("sbr-demo-")
                .tempdir()
                .map_err(|e| fatal(format!("creating a temporary directory: {e}")))?;
            tmp.path().to_path_buf()
        }
    };
    let path = dir.join("demo-ring.img");
    let name = path.display().to_string();
    if path.exists() {
        std::fs::remove_file(&path).map_err(|e| fatal(format!("{name}: {e}")))?;
    }
    crate::create::make_file(&name, a.size, 0o600)?;
    // Some filesystems refuse O_DIRECT (tmpfs before Linux 6.6); both peers are on this host, so the page
    // cache is coherent for them and buffered I/O is a sound fallback here.
    let (device, buffered) = match FileDevice::open(&path) {
        Ok(d) => (d, false),
        Err(Error::DirectIoUnsupported { .. }) => {
            let _ = writeln!(
                std::io::stderr(),
                "note: {} does not support O_DIRECT; using buffered I/O",
                dir.display()
            );
            let d = FileDevice::open_with(&path, &FileOptions::new().direct(false)).on(&name)?;
            (d, true)
        }
        Err(e) => return Err(Failure::ring(&name, &e)),
    };
    create_with(&device, &Options::new().format(a.format)).on(&name)?;
    drop(device);
    let seed = rand::random::<u64>();
    outln!(
        "demo: {} items of 16..{} bytes through a {} byte format-{} ring in {} ({} mode, batches of {})",
        a.items,
        a.max_len,
        a.size,
        a.format,
        name,
        a.durability,
        a.batch
    )?;
    let exe = std::env::current_exe().map_err(|e| fatal(format!("finding sbr itself: {e}")))?;
    let spawn = |role: &str| {
        let mut cmd = Command::new(&exe);
        cmd.arg("demo-peer")
            .args(["--role", role, "--device"])
            .arg(&path)
            .args(["--items", &a.items.to_string()])
            .args(["--seed", &seed.to_string()])
            .args(["--max-len", &a.max_len.max(HEADER).to_string()])
            .args(["--batch", &a.batch.max(1).to_string()])
            .args(["--durability", a.durability.name()])
            .stdout(Stdio::piped());
        if buffered {
            cmd.arg("--buffered");
        }
        cmd.spawn()
            .map_err(|e| fatal(format!("starting the {role} process: {e}")))
    };
    let start = Instant::now();
    let consumer = spawn("consumer")?;
    let producer = match spawn("producer") {
        Ok(p) => p,
        Err(e) => {
            let mut c = consumer;
            let _ = c.kill();
            let _ = c.wait();
            return Err(e);
        }
    };
    let p = collect(producer, "producer")?;
    let c = collect(consumer, "consumer")?;
    let wall = start.elapsed().as_secs_f64();
    // The verdict does not depend on anyone reading the report: a closed
    // standard output stops the printing, not the check.
    let printed = print_report(&p, &c, wall);
    if c.errors > 0 || c.items != a.items || p.items != a.items {
        return Err(fatal(format!(
            "the consumer received {} of {} items with {} errors; first: {}",
            c.items,
            a.items,
            c.errors,
            c.first_error.as_deref().unwrap_or("none")
        )));
    }
    printed?;
    outln!("ok: every item arrived once, in order, intact")
}

fn print_report(p: &PeerReport, c: &PeerReport, wall: f64) -> CmdResult {
    outln!(
        "producer: {} items, {:.1} MB in {:.2} s",
        p.items,
        p.bytes as f64 / 1e6,
        p.seconds
    )?;
    outln!(
        "consumer: {} items, {:.1} MB in {:.2} s, {} errors",
        c.items,
        c.bytes as f64 / 1e6,
        c.seconds,
        c.errors
    )?;
    outln!(
        "throughput: {:.0} items/s, {:.1} MB/s (end to end, {:.2} s)",
        c.items as f64 / wall,
        c.bytes as f64 / 1e6 / wall,
        wall
    )?;
    if let (Some(p50), Some(p99), Some(max)) =
        (c.latency_p50_us, c.latency_p99_us, c.latency_max_us)
    {
        outln!("latency from push to pop: p50 {p50:.0} us, p99 {p99:.0} us, max {max:.0} us")?;
    }
    Ok(())
}

fn collect(child: std::process::Child, role: &str) -> Result<PeerReport, Failure> {
    let out = child
        .wait_with_output()
        .map_err(|e| Failure::new(EXIT_FATAL, format!("waiting for the {role}: {e}")))?;
    if !out.status.success() {
        return Err(Failure::new(
            EXIT_FATAL,
            format!("the {role} process failed ({})", out.status),
        ));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| Failure::new(EXIT_FATAL, format!("reading the {role}'s report: {e}")))
}

/// splitmix64's finaliser.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Length and body bytes of item `seq`: the body is everything after the
/// 16-byte header.
fn item_len(seed: u64, seq: u64, max_len: usize) -> usize {
    HEADER + (mix(seed ^ seq) % (max_len - HEADER + 1) as u64) as usize
}

fn fill_body(seed: u64, seq: u64, body: &mut [u8]) {
    let mut x = mix(seed.wrapping_add(seq));
    for chunk in body.chunks_mut(8) {
        x = mix(x);
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
}

fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Runs a demo peer.
pub fn run_peer(a: PeerArgs) -> CmdResult {
    let name = a.device.display().to_string();
    let device =
        FileDevice::open_with(&a.device, &FileOptions::new().direct(!a.buffered)).on(&name)?;
    let options = Options::new()
        .durability(a.durability)
        .queue("demo")
        .client(a.role.clone());
    let report = if a.role == "producer" {
        produce(Producer::attach(device, options).on(&name)?, &a)
    } else {
        consume(Consumer::attach(device, options).on(&name)?, &a)
    }
    .on(&name)?;
    outln!(
        "{}",
        serde_json::to_string(&report).map_err(|e| Failure::new(EXIT_FATAL, e.to_string()))?
    )?;
    Ok(())
}

fn produce(mut p: Producer<FileDevice>, a: &PeerArgs) -> Result<PeerReport, Error> {
    let start = Instant::now();
    let mut flat = Vec::new();
    let mut ends = Vec::new();
    let mut bytes = 0u64;
    let mut seq = 0;
    while seq < a.items {
        flat.clear();
        ends.clear();
        while ends.len() < a.batch && seq < a.items {
            let len = item_len(a.seed, seq, a.max_len);
            let at = flat.len();
            flat.resize(at + len, 0);
            flat[at..at + 8].copy_from_slice(&seq.to_le_bytes());
            fill_body(a.seed, seq, &mut flat[at + HEADER..at + len]);
            flat[at + 8..at + 16].copy_from_slice(&now_ns().to_le_bytes());
            ends.push(flat.len());
            bytes += len as u64;
            seq += 1;
        }
        let mut backoff = p.backoff(Some(Duration::from_secs(60)));
        loop {
            let mut start_of = 0;
            let items = ends.iter().map(|&e| {
                let s = &flat[start_of..e];
                start_of = e;
                s
            });
            match p.push_many(items) {
                Ok(end) => {
                    p.advance(end)?;
                    break;
                }
                Err(Error::Retry(RetryReason::Full)) if p.pause(&mut backoff) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(PeerReport {
        items: seq,
        bytes,
        seconds: start.elapsed().as_secs_f64(),
        ..PeerReport::default()
    })
}

fn consume(mut c: Consumer<FileDevice>, a: &PeerArgs) -> Result<PeerReport, Error> {
    let mut report = PeerReport::default();
    let mut latencies: Vec<u64> = Vec::with_capacity(a.items.min(10_000_000) as usize);
    let mut expected = vec![0u8; a.max_len];
    let mut start = None;
    let wait = Some(Duration::from_secs(30));
    while report.items < a.items {
        // Waits for an item, then walks what that wait saw (one look at
        // the producer sector a pass at most).
        let walked = c.for_each_bytes_wait(c.position(), wait, |_, _, item| {
            start.get_or_insert_with(Instant::now);
            let now = now_ns();
            let seq = report.items;
            report.items += 1;
            report.bytes += item.len() as u64;
            let problem = if item.len() < HEADER {
                Some(format!("item {seq} has only {} bytes", item.len()))
            } else {
                let got_seq = u64::from_le_bytes(item[..8].try_into().unwrap_or([0; 8]));
                let len = item_len(a.seed, seq, a.max_len);
                if got_seq != seq {
                    Some(format!("expected item {seq}, got item {got_seq}"))
                } else if item.len() != len {
                    Some(format!(
                        "item {seq} has {} bytes, expected {len}",
                        item.len()
                    ))
                } else {
                    fill_body(a.seed, seq, &mut expected[HEADER..len]);
                    if item[HEADER..] != expected[HEADER..len] {
                        Some(format!("item {seq} is damaged"))
                    } else {
                        let sent = u64::from_le_bytes(item[8..16].try_into().unwrap_or([0; 8]));
                        latencies.push(now.saturating_sub(sent));
                        None
                    }
                }
            };
            if let Some(p) = problem {
                report.errors += 1;
                report.first_error.get_or_insert(p);
            }
            Ok(())
        });
        let end = match walked {
            Ok(end) => end,
            Err(Error::Retry(_)) => {
                report.errors += 1;
                report.first_error.get_or_insert_with(|| {
                    format!("no item for 30 s after {} items", report.items)
                });
                break;
            }
            Err(e) => return Err(e),
        };
        c.advance(end)?;
    }
    report.seconds = start.map(|s| s.elapsed().as_secs_f64()).unwrap_or(0.0);
    latencies.sort_unstable();
    let pct = |q: f64| {
        (!latencies.is_empty())
            .then(|| latencies[((latencies.len() - 1) as f64 * q) as usize] as f64 / 1000.0)
    };
    report.latency_p50_us = pct(0.5);
    report.latency_p99_us = pct(0.99);
    report.latency_max_us = pct(1.0);
    Ok(report)
}
