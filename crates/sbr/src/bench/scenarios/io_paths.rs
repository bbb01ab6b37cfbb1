//! The same scenarios on the other I/O path in the same run: with `--io
//! uring` (or auto, where io_uring is there) the rows marked `[sync]`, with
//! `--io sync` those marked `[uring]`. Each such row comes right after the
//! run's own rows for its mode and payload, with its limit measured
//! alongside it like every row, so the two paths meet the same drift of
//! the disk as nearly as one run allows; [`IoPaths::once`] then sets each
//! pair side by side (ratio of their ratios to the limit, or of their p50
//! latencies) and counts the allocations on the other path too.
//!
//! The scenarios are those of the targets the issue holds both paths to:
//! push+advance (T1), the streaming producer (T2, T3), pop+advance and
//! drain (T4), the idle-consumer latency (T5) and the allocations (T7).

use shared_block_ring::device::Io;
use shared_block_ring::RingFormat;

use super::latency::Pause;
use super::{allocations, consume, latency, publish, stream, Case, Ctx, Family};
use crate::bench::measure::BenchError;
use crate::bench::report::row::Row;
use crate::bench::report::{say, Findings, PathComparison};

/// The comparison rows.
pub struct IoPaths;

impl Family for IoPaths {
    fn ring_rows(&self, ctx: &Ctx, case: Case, out: &mut Findings) -> Result<(), BenchError> {
        let Some(other) = ctx.access.other_io() else {
            return Ok(());
        };
        let access = ctx.access.with_io(other);
        let octx = ctx.with_access(&access);
        let Case {
            durability: d,
            payload: p,
        } = case;
        let mark = |row: Row| marked(row, other);
        ctx.row(out, "io-paths", case, || {
            publish::publish(&octx, d, p, 1, RingFormat::V1).map(mark)
        })?;
        ctx.row(out, "io-paths", case, || {
            stream::stream(&octx, d, p).map(mark)
        })?;
        ctx.row(out, "io-paths", case, || consume::pop(&octx, d, p).map(mark))?;
        ctx.row(out, "io-paths", case, || {
            consume::drain(&octx, d, p).map(mark)
        })?;
        if p == 100 {
            ctx.row(out, "io-paths", case, || {
                latency::latency(&octx, case, Pause::Idle, RingFormat::V1).map(mark)
            })?;
        }
        Ok(())
    }

    fn once(&self, ctx: &Ctx, out: &mut Findings) -> Result<(), BenchError> {
        let Some(other) = ctx.access.other_io() else {
            return Ok(());
        };
        let pairs = compare(&out.rows, &out.io_path);
        if !pairs.is_empty() {
            say("  io_uring against sync, same run (ratio of the rows' ratios to their limits; latency: sync p50 / uring p50; above 1: uring faster)");
        }
        for c in &pairs {
            say(format!(
                "    {:<24} {:<13} {:>8} B: {:.3}",
                c.scenario, c.durability, c.payload_bytes, c.uring_over_sync
            ));
        }
        out.io_paths = pairs;
        if ctx.wanted("io-paths") {
            let access = ctx.access.with_io(other);
            let a = allocations::allocations(&ctx.with_access(&access))?;
            say(format!(
                "  allocations per item on the {} path: push {:.3}, push_many {:.3}, drain {:.3}, pop {:.3} (the popped item)",
                other.name(),
                a.push,
                a.push_many,
                a.drain,
                a.pop
            ));
        }
        Ok(())
    }
}

/// `row`, taken on the path `io`: its scenario says so.
fn marked(mut row: Row, io: Io) -> Row {
    row.scenario = format!("{} [{}]", row.scenario, io.name());
    row.io_path = io.name().into();
    row
}

/// Each row of the other path beside the run's row of the same scenario,
/// mode and payload.
fn compare(rows: &[Row], path: &str) -> Vec<PathComparison> {
    let mut out = Vec::new();
    for o in rows.iter().filter(|r| r.io_path != path) {
        let suffix = format!(" [{}]", o.io_path);
        let Some(scenario) = o.scenario.strip_suffix(&suffix) else {
            continue;
        };
        let Some(m) = rows.iter().find(|r| {
            r.io_path == path
                && r.scenario == scenario
                && r.durability == o.durability
                && r.payload_bytes == o.payload_bytes
        }) else {
            continue;
        };
        let (uring, sync) = if path == "uring" { (m, o) } else { (o, m) };
        let latency = match (m.latency_p50_us, o.latency_p50_us) {
            (Some(a), Some(b)) => Some([a, b]),
            _ => None,
        };
        let uring_over_sync = match (uring.latency_p50_us, sync.latency_p50_us) {
            (Some(u), Some(s)) => s / u,
            _ => uring.ratio_to_limit / sync.ratio_to_limit,
        };
        out.push(PathComparison {
            scenario: scenario.into(),
            durability: m.durability.clone(),
            payload_bytes: m.payload_bytes,
            paths: [m.io_path.clone(), o.io_path.clone()],
            ratios: [m.ratio_to_limit, o.ratio_to_limit],
            latency_p50_us: latency,
            uring_over_sync,
        });
    }
    out
}
