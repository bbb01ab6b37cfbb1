//! `sbr diagnostics --watch`: lag at a glance, sampled every interval.
//!
//! Each sample inspects the ring read-only (like `sbr diagnostics`) and
//! prints one line, or with `--json` one object, with the fill level, the
//! pending items and bytes, the publish and release rates since the last
//! sample (bytes/s of stream positions), and how long each side's position
//! has not moved. Before a side is first seen to move, its idle time is
//! the time watched so far, a lower bound (marked `>=` in text, and
//! `*_idle_at_least: true` in JSON).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use shared_block_ring::inspect::v2::{inspect_any, AnyInspection};
use shared_block_ring::BlockDevice;

use crate::common::{outln, CmdResult, Failure, OnDevice, EXIT_FATAL};
use crate::handshake::state_name;

/// One look at the ring, in either format: each side's position and flag
/// (when its sector is valid), the bytes in use, the pending items, the
/// problems.
struct Sample {
    producer: Option<(u64, bool)>,
    consumer: Option<(u64, bool)>,
    used: Option<u64>,
    capacity: u64,
    item_count: u64,
    problems: Vec<String>,
}

impl Sample {
    fn take(device: &dyn BlockDevice) -> Result<Sample, shared_block_ring::Error> {
        Ok(match inspect_any(device, 0, 0)? {
            AnyInspection::Format1(r) => Sample {
                producer: r.producer.as_ref().ok().map(|s| (s.position, s.flag)),
                consumer: r.consumer.as_ref().ok().map(|s| (s.position, s.flag)),
                used: r.used(),
                capacity: r.geometry.capacity(),
                item_count: r.item_count,
                problems: r.problems(),
            },
            AnyInspection::Format2(r) => {
                let side = |s: &Option<Result<shared_block_ring::format::v2::State, _>>| match s {
                    Some(Ok(s)) => Some((s.position, s.flag)),
                    _ => None,
                };
                let (producer, consumer) = (side(&r.producer), side(&r.consumer));
                Sample {
                    used: match (producer, consumer, &r.positions) {
                        (Some(p), Some(c), Some(Ok(()))) => Some(p.0 - c.0),
                        _ => None,
                    },
                    producer,
                    consumer,
                    capacity: r.geometry.capacity(),
                    item_count: r.item_count,
                    problems: r.problems(),
                }
            }
        })
    }
}

/// What is remembered of one side between samples.
struct Side {
    position: Option<u64>,
    /// When the position was last seen to change.
    moved: Option<Instant>,
}

impl Side {
    fn new() -> Side {
        Side {
            position: None,
            moved: None,
        }
    }

    /// Records `now`'s position; returns the bytes/s since `last` (None on
    /// the first sample) and the idle time (and whether it is a lower
    /// bound).
    fn sample(
        &mut self,
        position: u64,
        now: Instant,
        last: Option<Instant>,
        start: Instant,
    ) -> (Option<f64>, f64, bool) {
        let rate = match (self.position, last) {
            (Some(before), Some(t)) => {
                let dt = now.duration_since(t).as_secs_f64();
                Some(position.saturating_sub(before) as f64 / dt.max(1e-9))
            }
            _ => None,
        };
        if self.position.is_some_and(|p| p != position) {
            self.moved = Some(now);
        }
        self.position = Some(position);
        match self.moved {
            Some(t) => (rate, now.duration_since(t).as_secs_f64(), false),
            None => (rate, now.duration_since(start).as_secs_f64(), true),
        }
    }
}

/// A byte rate for people.
fn rate_text(r: Option<f64>) -> String {
    match r {
        None => "-".to_string(),
        Some(r) if r >= 1e6 => format!("{:.1} MB/s", r / 1e6),
        Some(r) if r >= 1e3 => format!("{:.1} kB/s", r / 1e3),
        Some(r) => format!("{r:.0} B/s"),
    }
}

fn idle_text(idle: f64, at_least: bool) -> String {
    format!("{}{idle:.1}s", if at_least { ">=" } else { "" })
}

/// Samples `device` every `interval`, `count` times (or until stopped).
pub fn run(
    device: &dyn BlockDevice,
    name: &str,
    interval: Duration,
    count: Option<u64>,
    json: bool,
) -> CmdResult {
    let start = Instant::now();
    let mut producer = Side::new();
    let mut consumer = Side::new();
    let mut last: Option<Instant> = None;
    let mut n = 0u64;
    let mut problem = None;
    while count.is_none_or(|c| n < c) {
        if n > 0 {
            let next = start + interval * n as u32;
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        n += 1;
        let r = Sample::take(device).on(name)?;
        let now = Instant::now();
        let t = now.duration_since(start).as_secs_f64();
        let problems = r.problems.clone();
        problem = problems.first().cloned();
        let (Some(p), Some(c), Some(used)) = (r.producer, r.consumer, r.used) else {
            let first = problem.clone().unwrap_or_default();
            if json {
                outln!(
                    "{}",
                    json!({"t": t, "problems": problems, "healthy": false})
                )?;
            } else {
                outln!("t={t:.1}s problem: {first}")?;
            }
            last = Some(now);
            continue;
        };
        let (publish, p_idle, p_least) = producer.sample(p.0, now, last, start);
        let (release, c_idle, c_least) = consumer.sample(c.0, now, last, start);
        last = Some(now);
        let capacity = r.capacity;
        let fill = used as f64 * 100.0 / capacity as f64;
        let state = state_name(c.1, p.1);
        if json {
            let unix = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            outln!(
                "{}",
                json!({
                    "t": t,
                    "time": unix,
                    "capacity": capacity,
                    "used": used,
                    "fill_percent": fill,
                    "pending_items": r.item_count,
                    "pending_bytes": used,
                    "producer": p.0,
                    "consumer": c.0,
                    "publish_bytes_per_second": publish,
                    "release_bytes_per_second": release,
                    "producer_idle_seconds": p_idle,
                    "producer_idle_at_least": p_least,
                    "consumer_idle_seconds": c_idle,
                    "consumer_idle_at_least": c_least,
                    "state": state,
                    "problems": problems,
                    "healthy": problems.is_empty(),
                })
            )?;
        } else {
            let trouble = match &problem {
                Some(p) => format!("; problem: {p}"),
                None => String::new(),
            };
            outln!(
                "t={t:.1}s fill {fill:.1}% ({used} of {capacity} bytes); pending {} items; \
                 publish {}, release {}; producer idle {}, consumer idle {}; {state}{trouble}",
                r.item_count,
                rate_text(publish),
                rate_text(release),
                idle_text(p_idle, p_least),
                idle_text(c_idle, c_least),
            )?;
        }
    }
    match problem {
        None => Ok(()),
        Some(p) => Err(Failure::new(EXIT_FATAL, format!("{name}: {p}"))),
    }
}
