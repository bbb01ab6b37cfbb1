//! What a run produces: the rows and system figures the scenario
//! families find ([`Findings`]), the table ([`row`]), the targets T1..T11
//! read from them ([`targets`]), the JSON report and the plot ([`plot`]).

use std::io::Write as _;
use std::path::Path;

use serde::Serialize;

use super::measure::limits::Limits;
use super::measure::BenchError;

pub mod plot;
pub mod row;
pub mod targets;

use row::Row;
use targets::Target;

/// Prints one line of the report now (the table grows as rows are
/// measured).
pub fn say(line: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line.as_ref());
    let _ = out.flush();
}

/// What the scenario families found: the rows of the table, and the
/// system figures that are not rows but that the targets read.
#[derive(Default)]
pub struct Findings {
    /// Every row, in the order of the table.
    pub rows: Vec<Row>,
    /// Allocations per item on the hot paths (T7).
    pub allocations: Option<Allocations>,
    /// An idle consumer's CPU use (T5).
    pub idle: Option<IdleCpu>,
    /// `sbr produce | sbr consume` as child processes (T7).
    pub cli: Option<CliRun>,
    /// The I/O path of the run (`sync` or `uring`), given to the rows that
    /// name none.
    pub io_path: String,
    /// The same scenarios on both I/O paths.
    pub io_paths: Vec<PathComparison>,
}

impl Findings {
    /// Findings of a run on the I/O path `io_path`.
    pub fn new(io_path: &str) -> Findings {
        Findings {
            io_path: io_path.into(),
            ..Findings::default()
        }
    }

    /// Prints `row` as a line of the table and keeps it.
    pub fn add(&mut self, mut row: Row) {
        if row.io_path.is_empty() {
            row.io_path = self.io_path.clone();
        }
        say(row.line());
        self.rows.push(row);
    }
}

/// One scenario on the run's I/O path against the other path, in the
/// same run.
#[derive(Debug, Clone, Serialize)]
pub struct PathComparison {
    /// The scenario, durability mode and payload of both rows.
    pub scenario: String,
    /// `power-loss` or `process-crash`.
    pub durability: String,
    /// Bytes per item.
    pub payload_bytes: usize,
    /// The run's path and the other.
    pub paths: [String; 2],
    /// Each row's ratio to its limit (measured alongside it), in the order
    /// of `paths`.
    pub ratios: [f64; 2],
    /// Each row's p50 latency, for the latency rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_p50_us: Option<[f64; 2]>,
    /// io_uring against sync: the uring row's ratio over the sync row's
    /// (above 1: uring faster); for latency rows, sync's p50 over uring's.
    pub uring_over_sync: f64,
}

/// Allocations per item on the library's hot paths, counted on the
/// calling thread after a warm-up (T7). The item returned by `pop` is an
/// allocation of its own, allowed by the target.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Allocations {
    /// `push` + `advance`, one item at a time.
    pub push: f64,
    /// `push_many` of 256 items + `advance`.
    pub push_many: f64,
    /// `for_each_bytes` over everything + `advance`.
    pub drain: f64,
    /// `pop` + `advance` (1 expected: the returned item).
    pub pop: f64,
    /// Items counted per path.
    pub items: u64,
}

/// A consumer waiting on an empty ring.
#[derive(Debug, Clone, Copy)]
pub struct IdleCpu {
    /// The fraction of a core it used.
    pub cpu: f64,
    /// Device reads per second it made.
    pub polls_per_s: f64,
}

/// What `sbr produce | sbr consume` did.
pub struct CliRun {
    /// Items moved.
    pub items: u64,
    /// Bytes per item.
    pub payload: usize,
    /// Items per second, end to end.
    pub items_per_s: f64,
    /// Peak RSS of `sbr produce`, in bytes.
    pub produce_rss: u64,
    /// Peak RSS of `sbr consume`, in bytes.
    pub consume_rss: u64,
    /// Bytes of item data moved.
    pub bytes: u64,
    /// The ring's size.
    pub ring_bytes: u64,
}

/// The whole result of a run, as written with `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The command line that produced it.
    pub command: String,
    /// When it started (RFC 3339, UTC).
    pub started: String,
    /// `full`, `quick` or `smoke`.
    pub mode: String,
    /// The machine: kernel, CPU, cores.
    pub host: String,
    /// The device measured.
    pub device: String,
    /// Its description (path, size, open mode).
    pub device_description: String,
    /// The I/O path of files and block devices (`--io`): `sync` or `uring`.
    pub io_path: String,
    /// Step 1.
    pub limits: Limits,
    /// Steps 2 and 3, and the system measurements (NBD, CLI memory).
    pub rows: Vec<Row>,
    /// T1..T11.
    pub targets: Vec<Target>,
    /// Scenarios run on both I/O paths in this run.
    pub io_paths: Vec<PathComparison>,
    /// Wall time of the run.
    pub seconds: f64,
}

impl Report {
    /// Writes the report as JSON into `path`.
    pub fn write_json(&self, path: &Path) -> Result<(), BenchError> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| BenchError::msg(format!("encoding the report: {e}")))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| BenchError::msg(format!("{}: {e}", path.display())))
    }

    /// Draws the plot into `path` (SVG).
    pub fn write_plot(&self, path: &Path) -> Result<(), BenchError> {
        let title = format!(
            "sbr bench ({} run), {}",
            self.mode,
            self.started.split('T').next().unwrap_or("")
        );
        plot::draw(&self.rows, path, &title)
    }
}
