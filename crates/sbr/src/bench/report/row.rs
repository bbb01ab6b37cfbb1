//! One row of the table (and of the JSON report): a scenario's rate, the
//! device limit it is held to, and the device operations it cost.

use serde::Serialize;
use shared_block_ring::{Durability, Side};

use crate::bench::measure::basis::LimitInfo;
use crate::bench::measure::device::IoCounts;

/// One measured scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// What was measured, such as `push+advance` or `drain`.
    pub scenario: String,
    /// `power-loss` or `process-crash`.
    pub durability: String,
    /// Where: `bench device`, `local file`, `qemu-nbd`.
    pub device: String,
    /// The I/O path of the files and block devices the row used: `sync`
    /// or `uring` (`sbr bench --io`; NBD rows: that of their local twin).
    pub io_path: String,
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
    /// Device round trips (reads, writes, durable writes and flushes,
    /// each an operation the caller waits for) per publication, counted
    /// on the producer's device handle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub round_trips_per_publish: Option<f64>,
    /// Device round trips per release, counted on the consumer's handle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub round_trips_per_release: Option<f64>,
    /// The operations behind the round trips, per side, summed over the
    /// repetitions.
    #[serde(skip_serializing_if = "RoundTrips::is_empty")]
    pub round_trips: RoundTrips,
    /// Latency from push to pop, median, in microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_p50_us: Option<f64>,
    /// Latency from push to pop, 99th percentile, in microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_p99_us: Option<f64>,
    /// An idle ring's latency floor, median, in microseconds: two O_DSYNC
    /// small writes and a small read timed back to back after the same
    /// idle pause as the row's items (the device's own time for them in
    /// that state).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_floor_us: Option<f64>,
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
            io_path: String::new(),
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
            round_trips_per_publish: None,
            round_trips_per_release: None,
            round_trips: RoundTrips::default(),
            latency_p50_us: None,
            latency_p99_us: None,
            idle_floor_us: None,
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

    /// Records the I/O counted on the handle of the side the row
    /// measures: items and flushes per publication (or release), and
    /// round trips.
    pub fn counted(self, side: Side, items: u64, io: IoCounts, reps: usize) -> Row {
        let row = self.with_io(IoSummary::of(items, io, side, reps));
        match side {
            Side::Producer => row.publish_trips(io),
            Side::Consumer => row.release_trips(io),
        }
    }

    /// Records the device operations of the producer's handle: round
    /// trips per publication.
    pub fn publish_trips(mut self, io: IoCounts) -> Row {
        self.round_trips_per_publish = per(io.round_trips(), io.producer_sector_writes);
        self.round_trips.producer = Some(io);
        self
    }

    /// Records the device operations of the consumer's handle: round
    /// trips per release.
    pub fn release_trips(mut self, io: IoCounts) -> Row {
        self.round_trips_per_release = per(io.round_trips(), io.consumer_sector_writes);
        self.round_trips.consumer = Some(io);
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
            "{:<24} {:<13} {:<10} {:<5} {:>8} {:>6} {:>12} {:>9} {:>12} {:>6} {:>6} {:>6}  {}",
            "scenario",
            "durability",
            "device",
            "io",
            "payload",
            "batch",
            "items/s",
            "MB/s",
            "limit/s",
            "ratio",
            "rt/pub",
            "rt/rel",
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
        let trips = |x: Option<f64>| fmt_rate(x.unwrap_or(f64::NAN));
        format!(
            "{:<24} {:<13} {:<10} {:<5} {:>8} {:>6} {:>12} {:>9} {:>12} {:>6} {:>6} {:>6}  {}",
            self.scenario,
            self.durability,
            self.device,
            self.io_path,
            self.payload_bytes,
            self.batch,
            fmt_rate(self.items_per_s),
            fmt_mb(self.mb_per_s),
            fmt_rate(self.limit),
            fmt_ratio(self.ratio_to_limit),
            trips(self.round_trips_per_publish),
            trips(self.round_trips_per_release),
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

impl IoSummary {
    /// The counted I/O `io` of one side, which moved `items` in `reps`
    /// repetitions.
    pub fn of(items: u64, io: IoCounts, side: Side, reps: usize) -> IoSummary {
        IoSummary {
            items,
            publishes: match side {
                Side::Producer => io.producer_sector_writes,
                Side::Consumer => io.consumer_sector_writes,
            },
            flushes: io.cache_flushes(),
            data_writes: io.data_writes(),
            syncs: io.durable_producer_sector_writes,
            reps,
        }
    }
}

/// The device operations of a row, per side: the producer's handle and
/// the consumer's (`None` where the row does not measure that side).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct RoundTrips {
    /// The producer's handle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub producer: Option<IoCounts>,
    /// The consumer's handle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumer: Option<IoCounts>,
}

impl RoundTrips {
    fn is_empty(&self) -> bool {
        self.producer.is_none() && self.consumer.is_none()
    }
}

/// `n / per`, when there is something to divide by.
fn per(n: u64, per: u64) -> Option<f64> {
    (per > 0).then(|| n as f64 / per as f64)
}
