//! `sbr bench`: the device's own limits and the ring's speed, measured in
//! one run on the same device, with the ratio of each to the other.
//!
//! Step 1 measures the device through the same `BlockDevice` the rings use
//! (same file, same open options). Step 2 runs every scenario in each
//! durability mode for payloads of 16 B to 1 MiB: publishing one item at
//! a time and in batches, `sbr produce`'s streaming producer, popping one at
//! a time, draining, the latency from push to pop between two processes,
//! and the journal with one and four pushing threads. Step 3 puts each
//! figure beside its device limit, and counts the device round trips each
//! publication and release cost. Then the system measurements: allocations
//! on the hot paths, an idle consumer's CPU, the peak memory of `sbr
//! produce | sbr consume`, and a batched producer and consumer over
//! loopback NBD against the same on a local file. Every figure is the
//! median of several repetitions, each bounded in time. The targets T1..T11
//! of the performance issue are checked at the end.
//!
//! A measurement, not a test: nothing fails because a figure is low.
//!
//! # Where things are
//!
//! - [`scenarios`]: what is measured, one file per family of scenarios
//!   (publish, stream, consume, latency, journal, allocations, idle, cli,
//!   nbd, io_paths: the same scenarios on the other `--io` path),
//!   registered in one list. A new family (format-2 rows, the async API)
//!   is a new file there and one line in that list; its module doc says
//!   how.
//! - [`measure`]: the machinery: configurations, the counted devices, the
//!   device's limits and the limit each row is held to, fresh rings, clocks,
//!   child processes, the counting allocator.
//! - [`report`]: the rows and the table, the targets, the JSON and the plot.
//! - This file: the command line and the order of the run.
//!
//! The arrows run one way: this file uses the three; `scenarios` uses
//! `report` and `measure`; `report` uses `measure`; `measure` uses none.

use std::cell::RefCell;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use shared_block_ring::{Durability, Geometry};

use crate::common::{CmdResult, Failure, OpenArgs, EXIT_FATAL};

mod measure;
mod report;
mod scenarios;

pub use measure::alloc;
pub use scenarios::{run_peer, PeerArgs};

use measure::device::{make_file, work_dir, Access, RingDev};
use measure::limits::Meter;
use measure::{BenchError, Config};
use report::row::Row;
use report::{say, Findings, Report};
use scenarios::{Case, Ctx, FAMILIES};

/// Arguments of `sbr bench`.
#[derive(clap::Args, Debug)]
#[command(mut_arg("durability", |a| a.help(DURABILITY_HELP)))]
#[command(mut_arg("sector_size", |a| a.help(SECTOR_SIZE_HELP)))]
#[command(mut_arg("buffered", |a| a.help(BUFFERED_HELP)))]
pub struct Args {
    /// The device to measure: a file, a block device or an NBD URI.
    /// EVERYTHING ON IT IS OVERWRITTEN. Default: a file the bench creates
    /// (written in full) in a temporary directory, and removes.
    #[arg(value_name = "DEVICE")]
    device: Option<String>,

    /// How every device of the bench is opened, and the durability mode.
    #[command(flatten)]
    how: OpenArgs,

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
    /// idle, cli, nbd, io-paths); the targets they do not cover show as not
    /// met.
    #[arg(long, hide = true, value_name = "NAME")]
    only: Option<String>,

    /// For profiling: only this payload size.
    #[arg(long, hide = true, value_name = "BYTES")]
    payload: Option<usize>,

    /// For profiling: the time of one repetition, instead of the mode's.
    #[arg(long, hide = true, value_name = "DURATION", value_parser = crate::common::parse_duration)]
    budget: Option<Duration>,
}

/// What the shared device options mean for `sbr bench`.
const DURABILITY_HELP: &str = "The durability mode of the ring scenarios (steps 2 and 3, and the \
     NBD rows): power-loss or process-crash. Default: both, each in turn. The system \
     measurements keep the mode their target names (allocations: process-crash; idle \
     consumer, sbr produce | sbr consume: power-loss), and the targets of a mode not run \
     show as not met";
const SECTOR_SIZE_HELP: &str = "Sector size in bytes of every device the bench opens (the \
     bench device, its rings, the sbr children it starts); default: the device's own (512 \
     for files). The device limits' small I/O is one sector of at least 512 bytes";
const BUFFERED_HELP: &str = "Open every device of the bench through the page cache instead of \
     O_DIRECT (for filesystems that refuse O_DIRECT): the device limits and the rows then \
     measure the page cache, not the disk";

/// Runs `sbr bench`.
pub fn run(a: Args) -> CmdResult {
    run_bench(a).map_err(|e| Failure::new(EXIT_FATAL, e.0))
}

/// The machine: kernel, CPU, cores.
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

/// How much to measure, as the command line asks.
fn config(a: &Args) -> Config {
    let mut cfg = if a.smoke {
        Config::smoke()
    } else if a.quick {
        Config::quick()
    } else {
        Config::full()
    };
    if let Some(p) = a.payload {
        cfg.payloads = vec![p.max(scenarios::MIN_PAYLOAD)];
    }
    if let Some(b) = a.budget {
        cfg.budget = b;
        cfg.latency_budget = b;
        cfg.idle = b;
    }
    cfg
}

fn run_bench(a: Args) -> Result<(), BenchError> {
    let started_at = Instant::now();
    let started = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let cfg = config(&a);
    let modes: Vec<Durability> = match a.how.durability {
        Some(d) => vec![d],
        None => vec![Durability::PowerLoss, Durability::ProcessCrash],
    };
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let access = Access::new(&a.how)?;
    let dir = work_dir(a.dir.as_deref(), &access)?;
    let spec = match &a.device {
        Some(d) => {
            let dev = access.open(d)?;
            crate::erase::confirm_if_ring(&*dev, d, a.yes).map_err(|f| BenchError(f.message))?;
            d.clone()
        }
        None => {
            let path = dir.path().join("bench.img");
            make_file(&path, cfg.file_bytes)?;
            path.display().to_string()
        }
    };
    let device = access.open(&spec)?;
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
        "sbr bench ({} run): {description}\nhost: {}\nio: {} (files and block devices{})\nring: the first {} MiB; device limits measured on the last {} MiB\n",
        cfg.name,
        host(),
        access.io.name(),
        match access.other_io() {
            Some(other) => format!("; the rows marked [{}] take the other path", other.name()),
            None => "; the other path is not available here".into(),
        },
        (ring_sectors * ss) >> 20,
        (scratch * ss) >> 20,
    ));

    say("Step 1: the device's own limits (same device, same open flags)");
    let mut meter = Meter::new(device, ring_sectors, scratch)?;
    let limits = meter.measure(&cfg)?;
    for l in limits.lines() {
        say(format!("  {l}"));
    }
    say("");

    let meter = RefCell::new(meter);
    let ctx = Ctx {
        cfg: &cfg,
        ring: RingDev {
            spec: spec.clone(),
            sectors: Some(ring_sectors),
            access: access.clone(),
        },
        access: &access,
        limits: limits.clone(),
        geometry,
        meter: &meter,
        modes: &modes,
        dir: dir.path(),
        only: a.only.as_deref(),
    };
    let mut found = Findings::new(access.io.name());
    say("Steps 2 and 3: the ring, against the matching device limit (medians)");
    say(Row::header());
    for &durability in &modes {
        for &payload in &cfg.payloads {
            for family in FAMILIES {
                let case = Case {
                    durability,
                    payload,
                };
                family.ring_rows(&ctx, case, &mut found)?;
            }
        }
    }
    say("");
    say("System measurements");
    for family in FAMILIES {
        family.once(&ctx, &mut found)?;
    }
    say("");

    let targets = report::targets::targets(&found, &limits, &cfg);
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
        io_path: access.io.name().into(),
        limits,
        rows: found.rows,
        targets,
        io_paths: found.io_paths,
        seconds: started_at.elapsed().as_secs_f64(),
    };
    if let Some(path) = &a.json {
        report.write_json(path)?;
    }
    if let Some(path) = &a.plot {
        report.write_plot(path)?;
    }
    say(format!("\ndone in {:.0} s", report.seconds));
    Ok(())
}
