//! `sbr bench`: the device's own limits and the ring's speed, measured in
//! one run on the same device, with the ratio of each to the other.
//!
//! Step 1 measures the device through the same `BlockDevice` the rings use
//! (same file, same O_DIRECT open). Step 2 runs every scenario in both
//! durability modes for payloads of 16 B to 1 MiB: publishing one item at
//! a time and in batches, `sbr produce`'s streaming producer, popping one at
//! a time, draining, the latency from push to pop between two processes,
//! and the journal with one and four pushing threads. Step 3 puts each
//! figure beside its device limit. Then the system measurements: an idle
//! consumer's CPU, the peak memory of `sbr produce | sbr consume`, and a
//! batched producer and consumer over loopback NBD against the same on a
//! local file. Every figure is the median of several repetitions, each
//! bounded in time. The targets T1..T8 of the performance issue are
//! checked at the end.
//!
//! A measurement, not a test: nothing fails because a figure is low.

use std::cell::RefCell;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use shared_block_ring::{Durability, FileDevice, Geometry};

use crate::common::{CmdResult, Failure, EXIT_FATAL};

pub mod alloc;
mod io;
mod latency;
mod limits;
mod plot;
mod report;
mod ring;
mod system;

pub use latency::{run_peer, PeerArgs};

use limits::{Limits, Metric};
use report::{Kind, LimitInfo, Part, Report, Row, Target};

/// Arguments of `sbr bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The device to measure: a file, a block device or an NBD URI.
    /// EVERYTHING ON IT IS OVERWRITTEN. Default: a file the bench creates
    /// (written in full) in a temporary directory, and removes.
    #[arg(value_name = "DEVICE")]
    device: Option<String>,

    /// Two payloads (100 B and 1 MiB), three short repetitions: under a
    /// minute.
    #[arg(long)]
    quick: bool,

    /// Write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,

    /// Draw throughput against batch size and payload size into FILE
    /// (SVG).
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,

    /// Where to put the bench's files (default: the system's temporary
    /// directory, or the current directory if that refuses O_DIRECT).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,

    /// Overwrite DEVICE even when it holds a ring and standard input is a
    /// terminal.
    #[arg(long)]
    yes: bool,

    /// Tiny measurements, for the tests: seconds, not minutes.
    #[arg(long, hide = true)]
    smoke: bool,

    /// For profiling: run only the measurements whose name contains this
    /// (push, push_many, stream, pop, drain, latency, journal, allocations,
    /// idle, cli, nbd); the targets they do not cover show as not met.
    #[arg(long, hide = true, value_name = "NAME")]
    only: Option<String>,

    /// For profiling: only this payload size.
    #[arg(long, hide = true, value_name = "BYTES")]
    payload: Option<usize>,

    /// For profiling: only this durability mode.
    #[arg(long, hide = true, value_name = "MODE")]
    durability: Option<Durability>,

    /// For profiling: the time of one repetition, instead of the mode's.
    #[arg(long, hide = true, value_name = "DURATION", value_parser = crate::common::parse_duration)]
    budget: Option<Duration>,
}

/// How much to measure.
#[derive(Debug, Clone)]
pub struct Config {
    /// `full`, `quick` or `smoke`.
    pub name: &'static str,
    /// Repetitions of each measurement (the median is reported).
    pub reps: usize,
    /// Time for one repetition.
    pub budget: Duration,
    /// Time for one repetition of a device limit.
    pub limit_budget: Duration,
    /// Payload sizes.
    pub payloads: Vec<usize>,
    /// Size of the bench file the command creates.
    pub file_bytes: u64,
    /// Most bytes to put in the ring before one drain.
    pub drain_bytes: u64,
    /// Time for each latency row.
    pub latency_budget: Duration,
    /// How long to watch an idle consumer.
    pub idle: Duration,
    /// Bytes streamed through `sbr produce | sbr consume`.
    pub cli_bytes: u64,
    /// The ring they stream through.
    pub cli_ring: u64,
    /// Size of the image served over NBD (and of its local twin).
    pub nbd_bytes: u64,
}

impl Config {
    fn full() -> Config {
        Config {
            name: "full",
            reps: 5,
            budget: Duration::from_millis(300),
            limit_budget: Duration::from_millis(300),
            payloads: vec![16, 100, 4000, 65_536, 1_048_576],
            file_bytes: 256 << 20,
            drain_bytes: 192 << 20,
            latency_budget: Duration::from_secs(2),
            idle: Duration::from_secs(3),
            cli_bytes: 1 << 30,
            cli_ring: 64 << 20,
            nbd_bytes: 64 << 20,
        }
    }

    fn quick() -> Config {
        Config {
            name: "quick",
            reps: 3,
            budget: Duration::from_millis(100),
            limit_budget: Duration::from_millis(100),
            payloads: vec![100, 1_048_576],
            file_bytes: 128 << 20,
            drain_bytes: 64 << 20,
            latency_budget: Duration::from_millis(500),
            idle: Duration::from_millis(1500),
            cli_bytes: 128 << 20,
            cli_ring: 64 << 20,
            nbd_bytes: 32 << 20,
        }
    }

    fn smoke() -> Config {
        Config {
            name: "smoke",
            reps: 1,
            budget: Duration::from_millis(15),
            limit_budget: Duration::from_millis(15),
            payloads: vec![100, 1_048_576],
            file_bytes: 16 << 20,
            drain_bytes: 4 << 20,
            latency_budget: Duration::from_millis(40),
            idle: Duration::from_millis(200),
            cli_bytes: 4 << 20,
            cli_ring: 4 << 20,
            nbd_bytes: 8 << 20,
        }
    }
}

/// A bench failure: one line.
#[derive(Debug)]
pub struct BenchError(String);

impl BenchError {
    /// A message.
    pub fn msg(m: impl Into<String>) -> BenchError {
        BenchError(m.into())
    }

    /// A library error on `device`.
    pub fn ring(device: &str, e: shared_block_ring::Error) -> BenchError {
        BenchError(format!("{device}: {e}"))
    }

    /// An I/O error on `device` while doing `what`.
    pub fn io(device: &str, what: &str, e: std::io::Error) -> BenchError {
        BenchError(format!("{device}: {what}: {e}"))
    }
}

impl std::fmt::Display for BenchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<shared_block_ring::Error> for BenchError {
    fn from(e: shared_block_ring::Error) -> BenchError {
        BenchError(e.to_string())
    }
}

/// What every scenario needs.
pub struct Ctx<'a> {
    /// How much to measure.
    pub cfg: &'a Config,
    /// Where the rings live.
    pub ring: io::RingDev,
    /// Step 1's results.
    pub limits: Limits,
    /// The ring's geometry on the device.
    pub geometry: Geometry,
    /// Measures the device's limits again, on the scratch area, beside
    /// each row's repetitions.
    pub meter: RefCell<limits::Meter>,
}

impl Ctx<'_> {
    /// The limit of a row of `kind`, to be measured alongside it.
    pub fn paired(&self, kind: Kind, durability: Durability, payload: usize) -> Paired<'_, '_> {
        let uses = report::limit(kind, durability, payload, &self.limits).uses;
        Paired {
            samples: vec![Vec::new(); uses.len()],
            uses,
            ctx: self,
            kind,
            durability,
            payload,
        }
    }
}

/// A row's device limit, measured again before each repetition of the
/// row: on a device shared with others, the speed can change several times
/// over within seconds, and a ratio against figures taken minutes earlier
/// would measure the neighbours, not the ring.
pub struct Paired<'c, 'a> {
    ctx: &'c Ctx<'a>,
    kind: Kind,
    durability: Durability,
    payload: usize,
    uses: Vec<Metric>,
    samples: Vec<Vec<f64>>,
}

impl Paired<'_, '_> {
    /// Takes one sample of each limit the row depends on, for a third of
    /// a repetition's time.
    pub fn sample(&mut self) -> Result<(), BenchError> {
        let budget = (self.ctx.cfg.budget / 3).max(Duration::from_millis(5));
        let mut meter = self.ctx.meter.borrow_mut();
        for (m, samples) in self.uses.iter().zip(&mut self.samples) {
            samples.push(meter.sample(*m, budget)?);
        }
        Ok(())
    }

    /// The limit from the medians of the samples, and the same from step 1.
    pub fn finish(mut self) -> (LimitInfo, f64) {
        let mut l = self.ctx.limits.clone();
        for (m, samples) in self.uses.iter().zip(&mut self.samples) {
            if !samples.is_empty() {
                l = l.with(*m, median(samples));
            }
        }
        let step1 = report::limit(self.kind, self.durability, self.payload, &self.ctx.limits).value;
        let mut info = report::limit(self.kind, self.durability, self.payload, &l);
        info.basis += ", measured alongside";
        (info, step1)
    }
}

/// The median; `xs` is reordered.
pub fn median(xs: &mut [f64]) -> f64 {
    percentile(xs, 0.5)
}

/// The `q` quantile (nearest rank); `xs` is reordered. NaN when empty.
pub fn percentile(xs: &mut [f64], q: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    let i = ((xs.len() - 1) as f64 * q).round() as usize;
    xs[i]
}

/// Runs `sbr bench`.
pub fn run(a: Args) -> CmdResult {
    let fatal = |e: BenchError| Failure::new(EXIT_FATAL, e.0);
    run_bench(a).map_err(fatal)
}

fn say(line: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line.as_ref());
    let _ = out.flush();
}

/// A directory for the bench's files on a filesystem that takes O_DIRECT.
fn work_dir(asked: Option<&Path>) -> Result<tempfile::TempDir, BenchError> {
    let candidates: Vec<PathBuf> = match asked {
        Some(d) => vec![d.to_path_buf()],
        None => {
            let mut v = vec![std::env::temp_dir()];
            if let Ok(cwd) = std::env::current_dir() {
                v.push(cwd);
            }
            v
        }
    };
    let mut why = Vec::new();
    for base in candidates {
        let dir = match tempfile::Builder::new()
            .prefix("sbr-bench-")
            .tempdir_in(&base)
        {
            Ok(d) => d,
            Err(e) => {
                why.push(format!("{}: {e}", base.display()));
                continue;
            }
        };
        let probe = dir.path().join("probe");
        let probed = std::fs::write(&probe, vec![0u8; 4096])
            .map_err(|e| e.to_string())
            .and_then(|()| {
                FileDevice::open(&probe)
                    .map(drop)
                    .map_err(|e| e.to_string())
            });
        let _ = std::fs::remove_file(&probe);
        match probed {
            Ok(()) => return Ok(dir),
            Err(e) => {
                if asked.is_none() {
                    eprintln!("note: {}: {e}; trying elsewhere", base.display());
                }
                why.push(e);
            }
        }
    }
    Err(BenchError::msg(format!(
        "no directory for the bench's files supports O_DIRECT ({}); pass --dir on a disk filesystem",
        why.join("; ")
    )))
}

fn host() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("Linux {kernel}, {cpu}, {cores} cores")
}

fn run_bench(a: Args) -> Result<(), BenchError> {
    let started_at = Instant::now();
    let started = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let mut cfg = if a.smoke {
        Config::smoke()
    } else if a.quick {
        Config::quick()
    } else {
        Config::full()
    };
    if let Some(p) = a.payload {
        cfg.payloads = vec![p.max(latency::MIN_PAYLOAD)];
    }
    if let Some(b) = a.budget {
        cfg.budget = b;
        cfg.latency_budget = b;
        cfg.idle = b;
    }
    let wanted = |name: &str| a.only.as_deref().is_none_or(|o| name.contains(o));
    let modes: Vec<Durability> = match a.durability {
        Some(d) => vec![d],
        None => vec![Durability::PowerLoss, Durability::ProcessCrash],
    };
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let dir = work_dir(a.dir.as_deref())?;
    let spec = match &a.device {
        Some(d) => {
            let dev = io::open(d)?;
            crate::erase::confirm_if_ring(&*dev, d, a.yes).map_err(|f| BenchError(f.message))?;
            d.clone()
        }
        None => {
            let path = dir.path().join("bench.img");
            io::make_file(&path, cfg.file_bytes)?;
            path.display().to_string()
        }
    };
    let device = io::open(&spec)?;
    let description = device.describe();
    // The ring takes the first three quarters of the device; the last
    // quarter (64 MiB at most) is scratch space where the device's limits
    // are measured, in step 1 and again beside each row.
    let sectors = device.sectors();
    let ss = device.sector_size() as u64;
    let scratch = (sectors / 4).min((64 << 20) / ss) / 8 * 8;
    let ring_sectors = (sectors - scratch) / 8 * 8;
    let geometry = Geometry::new(device.sector_size(), ring_sectors)
        .map_err(|e| BenchError::ring(&spec, e))?;
    say(format!(
        "sbr bench ({} run): {description}\nhost: {}\nring: the first {} MiB; device limits measured on the last {} MiB\n",
        cfg.name,
        host(),
        (ring_sectors * ss) >> 20,
        (scratch * ss) >> 20,
    ));

    say("Step 1: the device's own limits (same device, same open flags)");
    let mut meter = limits::Meter::new(device, ring_sectors, scratch)?;
    let limits = meter.measure(&cfg)?;
    for l in limits.lines() {
        say(format!("  {l}"));
    }
    say("");

    let ctx = Ctx {
        cfg: &cfg,
        ring: io::RingDev {
            spec: spec.clone(),
            sectors: Some(ring_sectors),
        },
        limits: limits.clone(),
        geometry,
        meter: RefCell::new(meter),
    };
    let mut rows: Vec<Row> = Vec::new();
    let mut add = |row: Row| {
        say(row.line());
        rows.push(row);
    };
    say("Steps 2 and 3: the ring, against the matching device limit (medians)");
    say(Row::header());
    for &durability in &modes {
        for &payload in &cfg.payloads {
            let at = |what: &str, e: BenchError| {
                BenchError(format!("{what}, {durability}, {payload} B: {e}"))
            };
            for batch in [1, 16, 256] {
                let name = if batch == 1 {
                    "push+advance"
                } else {
                    "push_many"
                };
                if wanted(name) {
                    add(ring::publish(&ctx, durability, payload, batch).map_err(|e| at(name, e))?);
                }
            }
            if wanted("stream") {
                add(ring::stream(&ctx, durability, payload).map_err(|e| at("stream", e))?);
            }
            if wanted("pop") {
                add(ring::pop(&ctx, durability, payload).map_err(|e| at("pop", e))?);
            }
            if wanted("drain") {
                add(ring::drain(&ctx, durability, payload).map_err(|e| at("drain", e))?);
            }
            if wanted("latency") {
                add(
                    latency::latency(&ctx, durability, payload, latency::Pause::Short)
                        .map_err(|e| at("latency", e))?,
                );
                if payload == 100 {
                    add(
                        latency::latency(&ctx, durability, payload, latency::Pause::Idle)
                            .map_err(|e| at("latency", e))?,
                    );
                }
            }
            for threads in [1, 4] {
                if wanted("journal") {
                    add(ring::journal(&ctx, durability, payload, threads)
                        .map_err(|e| at("journal", e))?);
                }
            }
        }
    }
    say("");

    say("System measurements");
    let allocs = if wanted("allocations") {
        let a = ring::allocations(&ctx)?;
        say(format!(
            "  allocations per item (process-crash, after a warm-up): push {:.3}, push_many {:.3}, drain {:.3}, pop {:.3} (the popped item)",
            a.push, a.push_many, a.drain, a.pop
        ));
        Some(a)
    } else {
        None
    };
    let mut idle_polls = None;
    let idle_cpu = if wanted("idle") {
        let (cpu, polls) = ring::idle_cpu(&ctx.ring, cfg.idle)?;
        idle_polls = Some(polls);
        say(format!(
            "  idle consumer (wait_for_item for {:?}): {:.2}% of a core, {polls:.0} polls/s",
            cfg.idle,
            cpu * 100.0,
        ));
        Some(cpu)
    } else {
        None
    };
    let cli = if wanted("cli") {
        let cli = system::cli_memory(&cfg, dir.path())?;
        let mut row = Row::new(
            "sbr produce | sbr consume",
            Durability::PowerLoss,
            "local file",
            cli.payload,
            1,
            cli.items_per_s,
            report::limit(report::Kind::Stream, Durability::PowerLoss, cli.payload, &limits),
            1,
        )
        .note(format!(
            "{} items ({} MiB) through a {} MiB ring; peak RSS produce {:.1} MiB, consume {:.1} MiB",
            cli.items,
            cli.bytes >> 20,
            cli.ring_bytes >> 20,
            cli.produce_rss as f64 / (1 << 20) as f64,
            cli.consume_rss as f64 / (1 << 20) as f64
        ));
        if cfg.cli_bytes < 1 << 30 {
            row = row.note("less than the 1 GiB of the target (quick run)");
        }
        say(row.line());
        rows.push(row);
        Some(cli)
    } else {
        None
    };

    // T8: the same batched producer and consumer on a local file and over
    // loopback NBD, on one image.
    let mut nbd_ratio = Vec::new();
    if wanted("nbd") {
        nbd_ratio = nbd_rows(&cfg, dir.path(), &limits, &modes, &mut rows)?;
    }
    say("");

    let targets = targets(
        &rows,
        &limits,
        allocs.as_ref(),
        idle_cpu,
        idle_polls,
        cli.as_ref(),
        &nbd_ratio,
        &cfg,
    );
    say("Targets");
    for t in &targets {
        for l in t.lines() {
            say(l);
        }
    }
    let report = Report {
        command,
        started,
        mode: cfg.name.into(),
        host: host(),
        device: if a.device.is_some() {
            spec.clone()
        } else {
            "a new file in a temporary directory".into()
        },
        device_description: description,
        limits,
        rows,
        targets,
        seconds: started_at.elapsed().as_secs_f64(),
    };
    if let Some(path) = &a.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| BenchError::msg(format!("encoding the report: {e}")))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| BenchError::msg(format!("{}: {e}", path.display())))?;
    }
    if let Some(path) = &a.plot {
        let title = format!(
            "sbr bench ({} run), {}",
            cfg.name,
            report.started.split('T').next().unwrap_or("")
        );
        plot::draw(&report.rows, path, &title)?;
    }
    say(format!("\ndone in {:.0} s", report.seconds));
    Ok(())
}

/// The T8 rows: the pipeline scenario on a local file, then over qemu-nbd
/// serving that file; returns the NBD/local ratio of each mode.
fn nbd_rows(
    cfg: &Config,
    dir: &Path,
    limits: &Limits,
    modes: &[Durability],
    rows: &mut Vec<Row>,
) -> Result<Vec<(Durability, f64)>, BenchError> {
    let image = dir.join("nbd.img");
    let image_name = image.display().to_string();
    io::make_file(&image, cfg.nbd_bytes)?;
    let qemu = system::find_tool("qemu-nbd");
    let mut ratios = Vec::new();
    let row = |durability, device: &str, rate, limit, n| {
        Row::new(
            "producer+consumer",
            durability,
            device,
            system::PIPELINE_PAYLOAD,
            system::PIPELINE_BATCH as u64,
            rate,
            limit,
            n,
        )
    };
    for &durability in modes {
        let (local, n) = system::pipeline(&image_name, durability, cfg)?;
        let basis = report::limit(
            report::Kind::Publish {
                batch: system::PIPELINE_BATCH as u64,
            },
            durability,
            system::PIPELINE_PAYLOAD,
            limits,
        );
        let local_row = row(durability, "local file", local, basis, n)
            .note("producer and consumer threads, each with its own handle; T8's reference");
        say(local_row.line());
        rows.push(local_row);
        let same = LimitInfo {
            value: local,
            basis: "the same scenario on the local file".into(),
            uses: Vec::new(),
        };
        let nbd_row = match &qemu {
            Some(q) => {
                let server = system::QemuNbd::start(q, &image)?;
                let measured = system::pipeline(server.uri(), durability, cfg);
                server.stop();
                let (rate, n) = measured?;
                ratios.push((durability, rate / local));
                row(durability, "qemu-nbd", rate, same.clone(), n)
                    .note("qemu-nbd --cache=none over a Unix socket (nbd+unix), same image")
            }
            None => row(durability, "qemu-nbd", f64::NAN, same, 0)
                .note("not measured: qemu-nbd is not installed (Debian: qemu-utils)"),
        };
        say(nbd_row.line());
        rows.push(nbd_row);
    }
    Ok(ratios)
}

fn find<'r>(
    rows: &'r [Row],
    scenario: &str,
    durability: Durability,
    payload: usize,
) -> Option<&'r Row> {
    rows.iter().find(|r| {
        r.scenario == scenario && r.durability == durability.name() && r.payload_bytes == payload
    })
}

#[allow(clippy::too_many_arguments)]
fn targets(
    rows: &[Row],
    l: &Limits,
    allocs: Option<&ring::Allocations>,
    idle_cpu: Option<f64>,
    idle_polls: Option<f64>,
    cli: Option<&system::CliRun>,
    nbd_ratio: &[(Durability, f64)],
    cfg: &Config,
) -> Vec<Target> {
    let pl = Durability::PowerLoss;
    let get = |scenario: &str, payload: usize| find(rows, scenario, pl, payload);
    let rate = |r: Option<&Row>| r.map_or(f64::NAN, |r| r.items_per_s);
    let small = l.small_bytes;
    let mut out = Vec::new();

    let ratio = |r: Option<&Row>| r.map_or(f64::NAN, |r| r.ratio_to_limit);
    let limit_of = |r: Option<&Row>| r.map_or(f64::NAN, |r| r.limit);
    let alongside = "against the device limit measured alongside the row";

    let t1_row = get("push+advance", 100);
    let t1 = rate(t1_row);
    out.push(Target::new(
        "T1",
        "durable push+advance, one 100-byte item at a time: at least 0.9 x (512-byte O_DSYNC writes/s / 2)",
        vec![Part::at_least(
            format!("items/s / ({small} B O_DSYNC writes/s / 2)"),
            ratio(t1_row),
            0.9,
            "x",
        )],
        format!(
            "{t1:.0} items/s {alongside} ({:.0}; from step 1: {:.0})",
            limit_of(t1_row),
            l.dsync_small_writes_per_s / 2.0
        ),
    ));

    let stream = get("stream (sbr produce)", 100);
    let (flush_ratio, detail) = match stream.and_then(|r| r.io) {
        Some(io) if io.data_writes > 0 => (
            io.flushes.saturating_sub(io.syncs) as f64 / io.data_writes as f64,
            format!(
                "{} batches pushed (one write each) with {} flushes, of which {} durable pointer writes: the syncs when the input paused or ended ({} runs); the pointer of each other batch rode on the next batch's flush",
                io.data_writes, io.flushes, io.syncs, io.reps
            ),
        ),
        _ => (f64::NAN, "no batch counted".into()),
    };
    out.push(Target::new(
        "T2",
        "streaming durable producer, 100-byte items: at least 1,000,000 items/s and at most one flush per published batch",
        vec![
            Part::at_least("items/s", rate(stream), 1e6, "items/s"),
            Part::at_most(
                "flushes per published batch, besides syncs",
                flush_ratio,
                1.0,
                "flushes",
            ),
        ],
        detail,
    ));

    let big = 1_048_576;
    let t3 = get("stream (sbr produce)", big);
    let one = get("push+advance", big);
    out.push(Target::new(
        "T3",
        "1 MiB items, durable: at least 0.75 x the 1 MiB O_DSYNC write MB/s",
        vec![Part::at_least(
            "streaming producer MB/s / 1 MiB O_DSYNC MB/s",
            ratio(t3),
            0.75,
            "x",
        )],
        format!(
            "streaming (sbr produce's path) {:.1} MB/s, {alongside}; one at a time with push+advance (two flushes each): {:.2} x",
            t3.map_or(f64::NAN, |r| r.mb_per_s),
            ratio(one)
        ),
    ));

    let pop = get("pop+advance", 100);
    let drain100 = rate(get("drain", 100));
    let drain_big = get("drain", big);
    out.push(Target::new(
        "T4",
        "consumer, durable: pop+advance of 100-byte items at least 0.9 x the O_DSYNC write rate; drain of 100-byte items at least 2,000,000 items/s; drain of 1 MiB items at least 0.8 x the 1 MiB O_DIRECT read MB/s",
        vec![
            Part::at_least(
                format!("pop+advance items/s / {small} B O_DSYNC writes/s"),
                ratio(pop),
                0.9,
                "x",
            ),
            Part::at_least("drain, 100 B items/s", drain100, 2e6, "items/s"),
            Part::at_least(
                "drain, 1 MiB: MB/s / 1 MiB O_DIRECT read MB/s",
                ratio(drain_big),
                0.8,
                "x",
            ),
        ],
        format!("ratios {alongside}"),
    ));

    // An idle ring: the consumer has been waiting for a while (20-30 ms),
    // so it polls at its slowest. The row with short pauses shows what a
    // consumer that was busy a moment ago sees.
    let idle_lat = get("latency, idle consumer", 100);
    let busy_lat = get("latency (2 processes)", 100);
    let floor_us = 1e6 / limit_of(idle_lat);
    let p = |r: Option<&Row>, f: fn(&Row) -> Option<f64>| r.and_then(f).unwrap_or(f64::NAN);
    let cpu_per_poll_us = idle_cpu
        .zip(idle_polls)
        .map_or(f64::NAN, |(c, n)| c / n * 1e6);
    out.push(Target::new(
        "T5",
        "end-to-end latency between two processes, one item at a time on an idle ring: p50 at most 1.5 x (two O_DSYNC 512-byte writes + one O_DIRECT 512-byte read); an idle waiting consumer under 2% of a core",
        vec![
            Part::at_most(
                "p50 push-to-pop latency, 100 B, idle consumer",
                p(idle_lat, |r| r.latency_p50_us),
                1.5 * floor_us,
                "us",
            ),
            Part::at_most(
                "idle consumer CPU",
                idle_cpu.map_or(f64::NAN, |c| c * 100.0),
                2.0,
                "% of a core",
            ),
        ],
        format!(
            "floor (two O_DSYNC writes + one read, measured alongside): {floor_us:.0} us (from step 1: {:.0} us); idle consumer p99 {:.0} us; \
             pushed 0-2 ms after the previous pop: p50 {:.0} us, p99 {:.0} us against a floor of {:.0} us; \
             an idle consumer polls every max_backoff (4 ms: {:.0} polls/s, {:.0} us of CPU each) for writers on other hosts, \
             and is woken at once by writes from this host (inotify on the file or block device), so it does not need fast polling \
             (fast polling alone would need a poll every ~{:.0} us, about {:.0}% of a core at this cost per poll)",
            report::latency_floor_s(l) * 1e6,
            p(idle_lat, |r| r.latency_p99_us),
            p(busy_lat, |r| r.latency_p50_us),
            p(busy_lat, |r| r.latency_p99_us),
            1e6 / limit_of(busy_lat),
            idle_polls.unwrap_or(f64::NAN),
            cpu_per_poll_us,
            floor_us,
            1e6 / floor_us * cpu_per_poll_us / 1e4,
        ),
    ));

    let j4 = get("journal 4 threads", 100);
    // Each row's limit is (pushers per commit) x the flush rate measured
    // alongside it / 2: dividing each rate by its own flush rate takes
    // the device's drift between the two rows out of the comparison.
    let per_flush = |r: Option<&Row>, pushers: f64| ratio(r) * pushers;
    out.push(Target::new(
        "T6",
        "the journal with 4 threads pushing concurrently, no-op perform: at least 5 x the T1 rate",
        vec![Part::at_least(
            "journal (4 threads) / push+advance, per flush of the device",
            per_flush(j4, 4.0) / per_flush(t1_row, 1.0),
            5.0,
            "x",
        )],
        format!(
            "{:.0} items/s against T1's {t1:.0} (raw ratio {:.2}), {:.2} operations per commit; each push waits for a data flush and then a pointer flush, so with 4 blocking threads Little's law caps the rate at 4 operations per two flushes: at most 4 x a two-flush publish",
            rate(j4),
            rate(j4) / t1,
            j4.and_then(|r| r.items_per_publish).unwrap_or(f64::NAN)
        ),
    ));

    let mib = (1u64 << 20) as f64;
    let nan = f64::NAN;
    let rss = |f: fn(&system::CliRun) -> u64| cli.map_or(nan, |c| f(c) as f64 / mib);
    let al = |f: fn(&ring::Allocations) -> f64| allocs.map_or(nan, f);
    out.push(Target::new(
        "T7",
        "memory: sbr produce and sbr consume streaming 1 GiB through a 64 MiB ring stay under 32 MiB peak RSS; no allocation per item on the hot path beyond the item itself",
        vec![
            Part::at_most("sbr produce peak RSS", rss(|c| c.produce_rss), 32.0, "MiB"),
            Part::at_most("sbr consume peak RSS", rss(|c| c.consume_rss), 32.0, "MiB"),
            Part::at_most("allocations per push", al(|a| a.push), 0.01, "per item"),
            Part::at_most("allocations per item, push_many", al(|a| a.push_many), 0.01, "per item"),
            Part::at_most("allocations per item, drain", al(|a| a.drain), 0.01, "per item"),
            Part::at_most("allocations per pop beyond the item", al(|a| a.pop - 1.0), 0.01, "per item"),
        ],
        match cli {
            Some(cli) => format!(
                "{} MiB of {}-byte lines through a {} MiB ring{}; peak RSS is VmHWM, read while each process runs; allocations counted on {} items per path after a warm-up",
                cli.bytes >> 20,
                cli.payload,
                cli.ring_bytes >> 20,
                if cfg.cli_bytes < 1 << 30 {
                    " (less than the target's 1 GiB: a quick run)"
                } else {
                    ""
                },
                allocs.map_or(0, |a| a.items)
            ),
            None => "not measured in this run".into(),
        },
    ));

    let parts: Vec<Part> = [Durability::PowerLoss, Durability::ProcessCrash]
        .into_iter()
        .map(|d| {
            let v = nbd_ratio
                .iter()
                .find(|(m, _)| *m == d)
                .map_or(f64::NAN, |(_, r)| *r);
            Part::at_least(format!("{d}: NBD items/s / local items/s"), v, 0.5, "x")
        })
        .collect();
    out.push(Target::new(
        "T8",
        "over loopback NBD (qemu-nbd, cache=none), batched 100-byte items: at least 0.5 x the local-file figure",
        parts,
        if nbd_ratio.is_empty() {
            "not measured: qemu-nbd is not installed (Debian: qemu-utils)".to_string()
        } else {
            "batches of 256 published with advance, drained by a consumer thread, on the same image".to_string()
        },
    ));
    out
}
