//! What a run produces: rows, targets, the table and the JSON report.

use serde::Serialize;
use shared_block_ring::Durability;

use super::io::stream_len;
use super::limits::{Limits, Metric};

/// One measured scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// What was measured, such as `push+advance` or `drain`.
    pub scenario: String,
    /// `power-loss` or `process-crash`.
    pub durability: String,
    /// Where: `bench device`, `local file`, `qemu-nbd`.
    pub device: String,
    /// Bytes per item (without the 4-byte header).
    pub payload_bytes: usize,
    /// Items per push_many or per chunk, as used (capped where the ring
    /// could not hold the batch asked for).
    pub batch: u64,
    /// Median of the repetitions.
    pub items_per_s: f64,
    /// Payload megabytes (10^6 bytes) per second.
    pub mb_per_s: f64,
    /// The matching device limit, in items/s.
    pub limit: f64,
    /// `items_per_s / limit`.
    pub ratio_to_limit: f64,
    /// How `limit` follows from the device's limits.
    pub limit_basis: String,
    /// The same limit computed from step 1's figures. `limit` itself uses
    /// the limits measured again alongside this row's repetitions (on a
    /// scratch area of the device), because a shared device's speed drifts
    /// between step 1 and the row.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_step1: Option<f64>,
    /// Items per publication (producer sector write) or per release
    /// (consumer sector write), as counted on the device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items_per_publish: Option<f64>,
    /// Cache flushes per publication or release, as counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flushes_per_publish: Option<f64>,
    /// Latency from push to pop, median, in microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_p50_us: Option<f64>,
    /// Latency from push to pop, 99th percentile, in microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_p99_us: Option<f64>,
    /// The I/O counted on the device behind `items_per_publish` and
    /// `flushes_per_publish`, summed over the repetitions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io: Option<IoSummary>,
    /// Repetitions (or latency samples) behind the figure.
    pub samples: usize,
    /// Anything the figure needs to be read right.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Row {
    /// A row with its limit filled in; the ratio follows.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        scenario: impl Into<String>,
        durability: Durability,
        device: &str,
        payload: usize,
        batch: u64,
        items_per_s: f64,
        limit: LimitInfo,
        samples: usize,
    ) -> Row {
        let LimitInfo {
            value: limit,
            basis,
            ..
        } = limit;
        Row {
            scenario: scenario.into(),
            durability: durability.name().into(),
            device: device.into(),
            payload_bytes: payload,
            batch,
            items_per_s,
            mb_per_s: items_per_s * payload as f64 / 1e6,
            limit,
            ratio_to_limit: items_per_s / limit,
            limit_basis: basis,
            limit_step1: None,
            items_per_publish: None,
            flushes_per_publish: None,
            latency_p50_us: None,
            latency_p99_us: None,
            io: None,
            samples,
            note: None,
        }
    }

    /// Records the limit computed from step 1's figures.
    pub fn step1(mut self, limit: f64) -> Row {
        self.limit_step1 = Some(limit);
        self
    }

    /// Records the counted I/O: items and flushes per publication.
    pub fn with_io(mut self, io: IoSummary) -> Row {
        if io.publishes > 0 {
            self.items_per_publish = Some(io.items as f64 / io.publishes as f64);
            self.flushes_per_publish = Some(io.flushes as f64 / io.publishes as f64);
        }
        self.io = Some(io);
        self
    }

    /// Adds a note (joined to an earlier one).
    pub fn note(mut self, note: impl Into<String>) -> Row {
        let note = note.into();
        self.note = Some(match self.note.take() {
            Some(n) => format!("{n}; {note}"),
            None => note,
        });
        self
    }

    /// The header of the table.
    pub fn header() -> String {
        format!(
            "{:<24} {:<13} {:<10} {:>8} {:>6} {:>12} {:>9} {:>12} {:>6}  {}",
            "scenario",
            "durability",
            "device",
            "payload",
            "batch",
            "items/s",
            "MB/s",
            "limit/s",
            "ratio",
            "notes"
        )
    }

    /// One line of the table.
    pub fn line(&self) -> String {
        let mut extra = Vec::new();
        if let (Some(p50), Some(p99)) = (self.latency_p50_us, self.latency_p99_us) {
            extra.push(format!("p50 {p50:.0} us, p99 {p99:.0} us"));
        }
        if let Some(n) = self.items_per_publish {
            extra.push(format!("{n:.1} items/publish"));
        }
        if let Some(f) = self.flushes_per_publish {
            extra.push(format!("{f:.2} flushes/publish"));
        }
        if let Some(n) = &self.note {
            extra.push(n.clone());
        }
        format!(
            "{:<24} {:<13} {:<10} {:>8} {:>6} {:>12} {:>9} {:>12} {:>6}  {}",
            self.scenario,
            self.durability,
            self.device,
            self.payload_bytes,
            self.batch,
            fmt_rate(self.items_per_s),
            fmt_mb(self.mb_per_s),
            fmt_rate(self.limit),
            fmt_ratio(self.ratio_to_limit),
            extra.join("; ")
        )
    }
}

fn fmt_rate(x: f64) -> String {
    if !x.is_finite() {
        "-".into()
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

fn fmt_mb(x: f64) -> String {
    if !x.is_finite() {
        "-".into()
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    }
}

fn fmt_ratio(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.2}")
    } else {
        "-".into()
    }
}

/// Counted I/O of a scenario, over all its repetitions.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct IoSummary {
    /// Items moved.
    pub items: u64,
    /// Publications (producer sector writes) or releases (consumer sector
    /// writes).
    pub publishes: u64,
    /// Cache flushes (flush calls and durable writes).
    pub flushes: u64,
    /// Writes of item data: one per pushed batch (two at the wrap).
    pub data_writes: u64,
    /// Durable writes of the producer sector: full advances and syncs,
    /// each a flush of its own.
    pub syncs: u64,
    /// Repetitions: each ends with one final durable publication.
    pub reps: usize,
}

/// The kinds of work a row's limit is computed for.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A producer publishing `batch` items per advance.
    Publish {
        /// Items per advance.
        batch: u64,
    },
    /// The journal with `threads` pushing threads (group commit).
    Journal {
        /// Pushing threads.
        threads: u64,
    },
    /// A producer streaming, one flush per batch.
    Stream,
    /// A consumer popping and releasing one item at a time.
    Pop,
    /// A consumer reading everything, one release.
    Drain,
    /// One item from push to pop on an idle ring.
    Latency,
}

/// The device limit matching a row, in items/s, and how it was derived.
///
/// Producer rows in the power-loss mode pay two flushes per publication
/// (data, then pointer), so their limit is the smaller of `batch` x the
/// small O_DSYNC write rate / 2 and the durable write bandwidth; in the
/// process-crash mode, two plain small writes per publication instead.
/// The streaming producer is held to the durable write bandwidth
/// (process-crash writes are not flushed and may beat it). Consumers: one
/// flush per release in the power-loss mode, one small write otherwise,
/// and the read bandwidth. Latency: two writes (durable in the power-loss
/// mode) and a read.
pub fn limit(kind: Kind, durability: Durability, payload: usize, l: &Limits) -> LimitInfo {
    use Metric::*;
    let s = stream_len(payload) as f64;
    let write_bw = l.write_bw() / s;
    let read_bw = l.read_bw() / s;
    let pl = durability == Durability::PowerLoss;
    let small = l.small_bytes;
    let info = |value: f64, basis: String, uses: &[Metric]| LimitInfo {
        value,
        basis,
        uses: uses.to_vec(),
    };
    let bw = || {
        let basis = if pl {
            "1 MiB O_DSYNC write bandwidth".to_string()
        } else {
            "1 MiB O_DSYNC write bandwidth (no flushes in this mode: may exceed it)".to_string()
        };
        info(write_bw, basis, &[DsyncBw])
    };
    match kind {
        Kind::Publish { batch: n } | Kind::Journal { threads: n } => {
            let what = if matches!(kind, Kind::Journal { .. }) {
                format!("{n} pushers per commit")
            } else {
                format!("{n} items per publish")
            };
            let (rate, metric, how) = if pl {
                (
                    l.dsync_small_writes_per_s,
                    DsyncSmall,
                    "O_DSYNC writes/s / 2 (two flushes per publish)",
                )
            } else {
                (
                    l.small_writes_per_s,
                    SmallWrite,
                    "O_DIRECT writes/s / 2 (data and pointer, no flush)",
                )
            };
            let io_bound = n as f64 * rate / 2.0;
            if io_bound <= write_bw {
                info(io_bound, format!("{what} x {small} B {how}"), &[metric])
            } else {
                bw()
            }
        }
        Kind::Stream => bw(),
        Kind::Pop => {
            let (rate, metric, how) = if pl {
                (
                    l.dsync_small_writes_per_s,
                    DsyncSmall,
                    "O_DSYNC writes/s (one flush per release)",
                )
            } else {
                (
                    l.small_writes_per_s,
                    SmallWrite,
                    "O_DIRECT writes/s (one pointer write per release, no flush)",
                )
            };
            if rate <= read_bw {
                info(rate, format!("{small} B {how}"), &[metric])
            } else {
                info(read_bw, "1 MiB O_DIRECT read bandwidth".into(), &[ReadBw])
            }
        }
        Kind::Drain => info(read_bw, "1 MiB O_DIRECT read bandwidth".into(), &[ReadBw]),
        Kind::Latency if pl => info(
            1.0 / latency_floor_s(l),
            format!("1 / (two {small} B O_DSYNC writes + one {small} B O_DIRECT read)"),
            &[DsyncSmall, SmallRead],
        ),
        Kind::Latency => info(
            1.0 / (2.0 / l.small_writes_per_s + 1.0 / l.small_reads_per_s),
            format!("1 / (two {small} B O_DIRECT writes + one {small} B read)"),
            &[SmallWrite, SmallRead],
        ),
    }
}

/// A row's device limit.
#[derive(Debug, Clone)]
pub struct LimitInfo {
    /// Items/s.
    pub value: f64,
    /// How it follows from the device's limits.
    pub basis: String,
    /// The limits it depends on.
    pub uses: Vec<Metric>,
}

/// Two durable small writes and one small read: the least time between a
/// push and the pop that sees it in the power-loss mode (T5).
pub fn latency_floor_s(l: &Limits) -> f64 {
    2.0 / l.dsync_small_writes_per_s + 1.0 / l.small_reads_per_s
}

/// One part of a target.
#[derive(Debug, Clone, Serialize)]
pub struct Part {
    /// What is compared.
    pub name: String,
    /// Measured.
    pub value: f64,
    /// Required.
    pub goal: f64,
    /// Unit of both.
    pub unit: String,
    /// `at least` or `at most`.
    pub comparison: &'static str,
    /// Whether `value` satisfies `goal`.
    pub met: bool,
}

impl Part {
    /// A part that needs `value >= goal`.
    pub fn at_least(name: impl Into<String>, value: f64, goal: f64, unit: &str) -> Part {
        Part {
            name: name.into(),
            value,
            goal,
            unit: unit.into(),
            comparison: "at least",
            met: value >= goal,
        }
    }

    /// A part that needs `value <= goal`.
    pub fn at_most(name: impl Into<String>, value: f64, goal: f64, unit: &str) -> Part {
        Part {
            name: name.into(),
            value,
            goal,
            unit: unit.into(),
            comparison: "at most",
            met: value <= goal,
        }
    }

    /// How far from the goal, as a factor: above 1 is met with room, below
    /// 1 missed. NaN (not measured) counts as missed by everything.
    fn margin(&self) -> f64 {
        let m = if self.comparison == "at least" {
            self.value / self.goal
        } else {
            self.goal / self.value
        };
        if m.is_nan() {
            0.0
        } else {
            m
        }
    }
}

/// One of the targets, T1..T8.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// `T1`..`T8`.
    pub id: String,
    /// The target as the issue states it.
    pub description: String,
    /// The value of the part furthest from its goal (the only part for
    /// simple targets).
    pub value: f64,
    /// That part's goal.
    pub goal: f64,
    /// That part's unit.
    pub unit: String,
    /// Every part met.
    pub met: bool,
    /// The measured parts.
    pub parts: Vec<Part>,
    /// How the value was obtained, and why a miss happened where known.
    pub detail: String,
}

impl Target {
    /// A target from its parts; the headline is the part with the least
    /// margin.
    pub fn new(id: &str, description: &str, parts: Vec<Part>, detail: impl Into<String>) -> Target {
        let worst = parts
            .iter()
            .min_by(|a, b| a.margin().total_cmp(&b.margin()))
            .cloned()
            .unwrap_or_else(|| Part::at_least("not measured", f64::NAN, f64::NAN, ""));
        Target {
            id: id.into(),
            description: description.into(),
            value: worst.value,
            goal: worst.goal,
            unit: worst.unit,
            met: !parts.is_empty() && parts.iter().all(|p| p.met),
            parts,
            detail: detail.into(),
        }
    }

    /// Lines for the table.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "{} {}: {}",
            self.id,
            if self.met { "met    " } else { "NOT MET" },
            self.description
        )];
        for p in &self.parts {
            out.push(format!(
                "     {}: {} {} (goal: {} {}) {}",
                p.name,
                fmt_value(p.value),
                p.unit,
                p.comparison,
                fmt_value(p.goal),
                if p.met { "ok" } else { "missed" }
            ));
        }
        if !self.detail.is_empty() {
            out.push(format!("     {}", self.detail));
        }
        out
    }
}

fn fmt_value(x: f64) -> String {
    if !x.is_finite() {
        "n/a".into()
    } else if x.abs() >= 1000.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
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
    /// T1..T8.
    pub targets: Vec<Target>,
    /// Wall time of the run.
    pub seconds: f64,
}
