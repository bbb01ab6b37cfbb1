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
}

impl Findings {
    /// Prints `row` as a line of the table and keeps it.
    pub fn add(&mut self, row: Row) {
        say(row.line());
        self.rows.push(row);
    }
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
    /// Step 1.
    pub limits: Limits,
    /// Steps 2 and 3, and the system measurements (NBD, CLI memory).
    pub rows: Vec<Row>,
    /// T1..T11.
    pub targets: Vec<Target>,
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
