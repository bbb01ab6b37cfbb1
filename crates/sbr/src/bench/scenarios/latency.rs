//! End-to-end latency between two processes: this process pushes one item
//! at a time on an idle ring, a `sbr bench-peer` child pops it; each item
//! carries the CLOCK_MONOTONIC time of its push, and the child reports, on
//! its standard output, how long before its pop that was.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rand::Rng;
use shared_block_ring::{Consumer, Durability, Producer, RingFormat};

use super::{Case, Ctx, Family};
use crate::bench::measure::basis::Kind;
use crate::bench::measure::clock::{now_ns, percentile};
use crate::bench::measure::device::{Counted, IoCounts};
use crate::bench::measure::fixture::{item, options};
use crate::bench::measure::process::{sbr_itself, spawn};
use crate::bench::measure::BenchError;
use crate::bench::report::row::Row;
use crate::bench::report::Findings;
use crate::common::{CmdResult, Failure, OnDevice, OpenArgs, EXIT_FATAL};

/// Push-to-pop latency with short pauses, and (for 100-byte items) on an
/// idle ring.
pub struct Latency;

impl Family for Latency {
    fn ring_rows(&self, ctx: &Ctx, case: Case, out: &mut Findings) -> Result<(), BenchError> {
        ctx.row(out, "latency", case, || {
            latency(ctx, case, Pause::Short, RingFormat::V1)
        })?;
        if case.payload == 100 {
            ctx.row(out, "latency", case, || {
                latency(ctx, case, Pause::Idle, RingFormat::V1)
            })?;
        }
        Ok(())
    }
}

/// Arguments of the hidden `sbr bench-peer`.
#[derive(clap::Args, Debug)]
pub struct PeerArgs {
    /// The ring's device.
    #[arg(long)]
    device: String,
    /// How to open it, and the durability mode.
    #[command(flatten)]
    how: OpenArgs,
    /// The ring spans only the first N sectors of the device.
    #[arg(long)]
    sectors: Option<u64>,
    /// Give up when no item comes for this long.
    #[arg(long, default_value = "10s", value_parser = crate::common::parse_duration)]
    timeout: Duration,
}

/// The sequence number of the item that ends a run.
const STOP: u64 = u64::MAX;
/// Items carry their sequence number and push time: 16 bytes.
pub const MIN_PAYLOAD: usize = 16;

/// Runs `sbr bench-peer`: pops until the stop item, printing each item's
/// latency in nanoseconds on its own line once the item is released, and
/// at the end its device operations as one line of JSON.
pub fn run_peer(a: PeerArgs) -> CmdResult {
    let fatal = |m: String| Failure::new(EXIT_FATAL, m);
    let opened = shared_block_ring::device::open(&a.device, &a.how.file_options()).on(&a.device)?;
    let device = Counted::new(opened, a.sectors);
    let stats = device.stats();
    let options = options(a.how.durability(), "bench peer");
    let mut consumer = Consumer::attach(device, options).on(&a.device)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let say = |out: &mut std::io::StdoutLock, line: String| {
        writeln!(out, "{line}")
            .and_then(|_| out.flush())
            .map_err(|e| fatal(format!("writing to the bench: {e}")))
    };
    say(&mut out, "ready".into())?;
    let before = stats.snapshot();
    loop {
        let (next, bytes) = consumer.pop_wait(Some(a.timeout)).on(&a.device)?;
        let popped = now_ns();
        let (Some(seq), Some(sent)) = (
            bytes
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes),
            bytes
                .get(8..16)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes),
        ) else {
            return Err(fatal(format!(
                "{}: an item of {} bytes: the bench's items have at least {MIN_PAYLOAD}",
                a.device,
                bytes.len()
            )));
        };
        consumer.advance(next).on(&a.device)?;
        if seq == STOP {
            let io = stats.snapshot().since(before);
            let line = serde_json::to_string(&io).map_err(|e| fatal(e.to_string()))?;
            return say(&mut out, line);
        }
        say(&mut out, popped.saturating_sub(sent).to_string())?;
    }
}

/// How long the producer pauses between one pop and the next push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    /// 0 to 2 ms at random: the consumer was busy a moment ago and still
    /// polls often (its hot phase lasts 2 ms).
    Short,
    /// 20 to 30 ms: the consumer has been waiting long and polls at its
    /// slowest (on a local file, which wakes it on this host's writes,
    /// every `max_backoff_notified`, 20 ms by default): an idle ring.
    Idle,
}

/// One latency row: push to pop between this process and a peer, on a
/// ring of `format`.
pub(super) fn latency(
    ctx: &Ctx,
    case: Case,
    pause: Pause,
    format: RingFormat,
) -> Result<Row, BenchError> {
    let durability: Durability = case.durability;
    let payload = case.payload.max(MIN_PAYLOAD);
    ctx.ring.fresh_format(format)?;
    let dev = ctx.ring.open()?;
    let pstats = dev.stats();
    let mut producer = Producer::attach(dev, options(durability, "bench producer"))?;
    let mut cmd = sbr_itself()?;
    cmd.args(["bench-peer", "--device", &ctx.ring.spec])
        .args(["--durability", durability.name()])
        .args(&ctx.ring.access.child_args);
    if let Some(n) = ctx.ring.sectors {
        cmd.args(["--sectors", &n.to_string()]);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut peer = spawn(&mut cmd, "sbr bench-peer")?;
    let stdout = peer
        .child()
        .stdout
        .take()
        .ok_or_else(|| BenchError::msg("no pipe from sbr bench-peer"))?;
    let mut lines = BufReader::new(stdout).lines();
    let mut next_line = || -> Result<String, BenchError> {
        match lines.next() {
            Some(Ok(l)) => Ok(l),
            Some(Err(e)) => Err(BenchError::msg(format!("reading from sbr bench-peer: {e}"))),
            None => Err(BenchError::msg(
                "sbr bench-peer stopped early (see its error above)",
            )),
        }
    };
    if next_line()? != "ready" {
        return Err(BenchError::msg("sbr bench-peer said something unexpected"));
    }
    let mut data = item(payload);
    let mut rng = rand::rng();
    let mut samples = Vec::new();
    let mut floors = Vec::new();
    let kind = match format {
        RingFormat::V1 => Kind::Latency,
        _ => Kind::Latency2,
    };
    let mut paired = ctx.paired(kind, durability, payload);
    let per_rep = ctx.cfg.latency_budget / ctx.cfg.reps as u32;
    let p0 = pstats.snapshot();
    for _ in 0..ctx.cfg.reps {
        paired.sample()?;
        let start = Instant::now();
        let first = samples.len();
        while samples.len() < first + 3 || start.elapsed() < per_rep {
            // A random pause, so that pushes meet the consumer at every
            // point of its polling schedule.
            let us = match pause {
                Pause::Short => rng.random_range(0..2_000),
                Pause::Idle => rng.random_range(20_000..30_000),
            };
            std::thread::sleep(Duration::from_micros(us));
            data[..8].copy_from_slice(&(samples.len() as u64).to_le_bytes());
            data[8..16].copy_from_slice(&now_ns().to_le_bytes());
            let end = producer.push(&data)?;
            producer.advance(end)?;
            let ns: u64 = next_line()?
                .parse()
                .map_err(|e| BenchError::msg(format!("sbr bench-peer sent a bad latency: {e}")))?;
            samples.push(ns as f64 / 1e3);
            if pause == Pause::Idle && durability == Durability::PowerLoss {
                // The floor in the same state: the device goes on idle
                // too, and its first operations after a pause cost several
                // times a warm one (BENCHMARKS.md, "T5 and an idle device").
                std::thread::sleep(Duration::from_micros(rng.random_range(20_000..30_000)));
                let writes = if format == RingFormat::V1 { 2 } else { 1 };
                floors.push(ctx.meter.borrow_mut().floor_once(writes)?);
            }
        }
    }
    data[..8].copy_from_slice(&STOP.to_le_bytes());
    let end = producer.push(&data)?;
    producer.advance(end)?;
    let pio = pstats.snapshot().since(p0);
    let cio: IoCounts = serde_json::from_str(&next_line()?)
        .map_err(|e| BenchError::msg(format!("sbr bench-peer sent bad counts: {e}")))?;
    let status = peer.wait(Duration::from_secs(20))?;
    if !status.success() {
        return Err(BenchError::msg(format!("sbr bench-peer failed ({status})")));
    }
    let (lim, step1) = paired.finish();
    let p50 = percentile(&mut samples, 0.5);
    let p99 = percentile(&mut samples, 0.99);
    let mut row = Row::new(
        format!(
            "{}{}",
            super::publish::prefix(format),
            match pause {
                Pause::Short => "latency (2 processes)",
                Pause::Idle => "latency, idle consumer",
            }
        ),
        durability,
        "bench device",
        payload,
        1,
        1e6 / p50,
        lim,
        samples.len(),
    )
    .step1(step1)
    .publish_trips(pio)
    .release_trips(cio);
    row.latency_p50_us = Some(p50);
    row.latency_p99_us = Some(p99);
    row.idle_floor_us = (!floors.is_empty()).then(|| percentile(&mut floors, 0.5));
    Ok(row.note(match pause {
        Pause::Short => "items/s = 1 / p50; pushes 0-2 ms after the previous pop",
        Pause::Idle => "items/s = 1 / p50; pushes 20-30 ms after the previous pop",
    }))
}
