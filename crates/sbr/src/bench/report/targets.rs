//! The targets T1..T8 of the performance issue, and T9..T11 of format 2
//! (issue 11), read from the rows and the system figures of a run. A target is met when every one of its
//! parts is; its headline is the part furthest from its goal. A new
//! target reads the rows it needs by scenario name, durability and
//! payload ([`find`]).

use serde::Serialize;
use shared_block_ring::Durability;

use super::row::Row;
use super::{Allocations, CliRun, Findings};
use crate::bench::measure::basis::{latency_floor_2_s, latency_floor_s};
use crate::bench::measure::limits::Limits;
use crate::bench::measure::Config;

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

/// One of the issues' targets, T1..T11.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// `T1`..`T11`.
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

/// A row's items/s, its ratio to its limit, and its limit; NaN when the
/// row was not measured.
fn rate(r: Option<&Row>) -> f64 {
    r.map_or(f64::NAN, |r| r.items_per_s)
}

fn ratio(r: Option<&Row>) -> f64 {
    r.map_or(f64::NAN, |r| r.ratio_to_limit)
}

fn limit_of(r: Option<&Row>) -> f64 {
    r.map_or(f64::NAN, |r| r.limit)
}

/// The row of `scenario` in `durability` mode for `payload`-byte items.
pub fn find<'r>(
    rows: &'r [Row],
    scenario: &str,
    durability: Durability,
    payload: usize,
) -> Option<&'r Row> {
    rows.iter().find(|r| {
        r.scenario == scenario && r.durability == durability.name() && r.payload_bytes == payload
    })
}

/// T1..T11, from what a run found.
pub fn targets(found: &Findings, l: &Limits, cfg: &Config) -> Vec<Target> {
    let rows = &found.rows[..];
    let allocs = found.allocations.as_ref();
    let idle_cpu = found.idle.map(|i| i.cpu);
    let idle_polls = found.idle.map(|i| i.polls_per_s);
    let cli = found.cli.as_ref();
    let nbd_ratio = nbd_ratios(rows);
    let pl = Durability::PowerLoss;
    let get = |scenario: &str, payload: usize| find(rows, scenario, pl, payload);
    let small = l.small_bytes;
    let mut out = Vec::new();

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
        "1 MiB items, durable: at least 0.85 x the 1 MiB O_DSYNC write MB/s (0.75 before the second performance issue)",
        vec![Part::at_least(
            "streaming producer MB/s / 1 MiB O_DSYNC MB/s",
            ratio(t3),
            0.85,
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
    // consumer that was busy a moment ago sees. The floor is the device's
    // own time for two durable writes and a read after the same idle pause
    // (timed between the row's items): a device left idle answers its
    // first operations several times slower than a busy one, so the warm
    // floor (back to back, measured alongside) is below what the device
    // itself can do from idle; both are printed.
    let idle_lat = get("latency, idle consumer", 100);
    let busy_lat = get("latency (2 processes)", 100);
    let warm_floor_us = 1e6 / limit_of(idle_lat);
    let idle_floor_us = idle_lat.and_then(|r| r.idle_floor_us).unwrap_or(f64::NAN);
    let p = |r: Option<&Row>, f: fn(&Row) -> Option<f64>| r.and_then(f).unwrap_or(f64::NAN);
    let idle_p50 = p(idle_lat, |r| r.latency_p50_us);
    let cpu_per_poll_us = idle_cpu
        .zip(idle_polls)
        .map_or(f64::NAN, |(c, n)| c / n * 1e6);
    out.push(Target::new(
        "T5",
        "end-to-end latency between two processes, one item at a time on an idle ring: p50 at most 1.5 x (two O_DSYNC 512-byte writes + one O_DIRECT 512-byte read, timed on the device after the same idle pause); an idle waiting consumer under 2% of a core",
        vec![
            Part::at_most(
                "p50 push-to-pop latency, 100 B, idle consumer",
                idle_p50,
                1.5 * idle_floor_us,
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
            "floor after the same 20-30 ms idle pause (two O_DSYNC writes + one read, timed between the items): {idle_floor_us:.0} us; \
             the same operations back to back on a busy device, measured alongside: {warm_floor_us:.0} us (from step 1: {:.0} us), \
             against which the idle p50 is {:.2} x; idle consumer p99 {:.0} us; \
             pushed 0-2 ms after the previous pop: p50 {:.0} us, p99 {:.0} us against a floor of {:.0} us; \
             an idle consumer polls for writers on other hosts at most every max_backoff_notified (20 ms; measured {:.0} polls/s, {:.0} us of CPU each), \
             and is woken at once by writes from this host (inotify on the file or block device), so it does not need fast polling \
             (fast polling alone would need a poll every ~{:.0} us, about {:.0}% of a core at this cost per poll)",
            latency_floor_s(l) * 1e6,
            idle_p50 / warm_floor_us,
            p(idle_lat, |r| r.latency_p99_us),
            p(busy_lat, |r| r.latency_p50_us),
            p(busy_lat, |r| r.latency_p99_us),
            1e6 / limit_of(busy_lat),
            idle_polls.unwrap_or(f64::NAN),
            cpu_per_poll_us,
            warm_floor_us,
            1e6 / warm_floor_us * cpu_per_poll_us / 1e4,
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
    let rss = |f: fn(&CliRun) -> u64| cli.map_or(nan, |c| f(c) as f64 / mib);
    let al = |f: fn(&Allocations) -> f64| allocs.map_or(nan, f);
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
            Part::at_least(format!("{d}: NBD items/s / local items/s"), v, 0.7, "x")
        })
        .collect();
    out.push(Target::new(
        "T8",
        "over loopback NBD (qemu-nbd, cache=none), batched 100-byte items: at least 0.7 x the local-file figure (0.5 before the second performance issue)",
        parts,
        if nbd_ratio.is_empty() {
            "not measured: qemu-nbd is not installed (Debian: qemu-utils)".to_string()
        } else {
            "batches of 256 published with advance_pipelined (as sbr produce does), drained by a consumer thread, on the same image".to_string()
        },
    ));
    out.extend(format2_targets(rows, l));
    out
}

/// T9..T11: format 2 against the device's single-flush rate (the small
/// O_DSYNC write rate: one write and one flush), measured alongside each
/// row.
fn format2_targets(rows: &[Row], l: &Limits) -> Vec<Target> {
    let pl = Durability::PowerLoss;
    let get = |scenario: &str| find(rows, scenario, pl, 100);
    let small = l.small_bytes;
    let mut out = Vec::new();

    let t9 = get("format 2 push+advance");
    let f1 = get("push+advance");
    out.push(Target::new(
        "T9",
        "format 2, unbatched durable push+advance of 100-byte items: at least 0.85 x the device's single-flush rate",
        vec![Part::at_least(
            format!("items/s / {small} B O_DSYNC writes/s"),
            ratio(t9),
            0.85,
            "x",
        )],
        format!(
            "{:.0} items/s against a single-flush rate of {:.0}/s measured alongside (step 1: {:.0}); format 1 \
             (two flushes): {:.0} items/s, {:.2} x its own single-flush rate; flushes per publication: {}",
            rate(t9),
            limit_of(t9),
            l.dsync_small_writes_per_s,
            rate(f1),
            ratio(f1) / 2.0,
            t9.and_then(|r| r.io.map(|io| io.flushes as f64 / io.publishes.max(1) as f64))
                .map_or("n/a".into(), |f| format!("{f:.2}")),
        ),
    ));

    let t10 = get("format 2 latency, idle consumer");
    let warm_floor_us = 1e6 / limit_of(t10);
    let idle_floor_us = t10.and_then(|r| r.idle_floor_us).unwrap_or(f64::NAN);
    let p50 = t10.and_then(|r| r.latency_p50_us).unwrap_or(f64::NAN);
    out.push(Target::new(
        "T10",
        "format 2, push-to-pop latency of 100-byte items between two processes on an idle ring: p50 at most 1.5 x (one flush + one read, timed on the device after the same idle pause)",
        vec![Part::at_most(
            "p50 push-to-pop latency, 100 B, idle consumer",
            p50,
            1.5 * idle_floor_us,
            "us",
        )],
        format!(
            "floor after the same 20-30 ms idle pause (one {small} B O_DSYNC write + one {small} B read, timed between the items): {idle_floor_us:.0} us; \
             the same back to back on a busy device, measured alongside: {warm_floor_us:.0} us (from step 1: {:.0} us), against which the p50 is {:.2} x; \
             p99 {:.0} us; format 1 idle p50: {:.0} us",
            latency_floor_2_s(l) * 1e6,
            p50 / warm_floor_us,
            t10.and_then(|r| r.latency_p99_us).unwrap_or(f64::NAN),
            get("latency, idle consumer")
                .and_then(|r| r.latency_p50_us)
                .unwrap_or(f64::NAN),
        ),
    ));

    let t11 = get("format 2 journal 4 threads");
    // The row's limit is 4 x the single-flush rate measured alongside it.
    let per_flush = ratio(t11) * 4.0;
    out.push(Target::new(
        "T11",
        "format 2, the journal with 4 threads pushing 100-byte operations concurrently: at least 3 x the device's single-flush rate",
        vec![Part::at_least(
            "journal (4 threads) items/s / single-flush rate",
            per_flush,
            3.0,
            "x",
        )],
        format!(
            "{:.0} items/s against a single-flush rate of {:.0}/s measured alongside; {:.2} operations per commit; \
             each push waits for one flush (its commit's), so 4 blocking threads can reach 4 operations per flush at most",
            rate(t11),
            limit_of(t11) / 4.0,
            t11.and_then(|r| r.items_per_publish).unwrap_or(f64::NAN),
        ),
    ));
    out
}

/// NBD items/s / local items/s of each mode whose NBD row was measured
/// (T8).
fn nbd_ratios(rows: &[Row]) -> Vec<(Durability, f64)> {
    let rate = |d: Durability, device: &str| {
        rows.iter()
            .find(|r| {
                r.scenario == "producer+consumer" && r.durability == d.name() && r.device == device
            })
            .map(|r| r.items_per_s)
    };
    [Durability::PowerLoss, Durability::ProcessCrash]
        .into_iter()
        .filter_map(|d| {
            let nbd = rate(d, "qemu-nbd").filter(|r| r.is_finite())?;
            Some((d, nbd / rate(d, "local file")?))
        })
        .collect()
}
