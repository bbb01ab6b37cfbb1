//! Publishing: push+advance one item at a time, and push_many of 16 and
//! 256 items per advance, against `batch` x the rate of the device writes
//! a publication needs.

use shared_block_ring::{Durability, RingFormat, Side};

use super::{bench_row, Case, Ctx, Family};
use crate::bench::measure::basis::Kind;
use crate::bench::measure::clock::Stopwatch;
use crate::bench::measure::fixture::{cap_batch_in, item, stream_len_in, Pair};
use crate::bench::measure::BenchError;
use crate::bench::report::row::Row;
use crate::bench::report::Findings;

/// push+advance and push_many(16 and 256)+advance.
pub struct Publish;

impl Family for Publish {
    fn ring_rows(&self, ctx: &Ctx, case: Case, out: &mut Findings) -> Result<(), BenchError> {
        for batch in [1, 16, 256] {
            let name = if batch == 1 {
                "push+advance"
            } else {
                "push_many"
            };
            ctx.row(out, name, case, || {
                publish(ctx, case.durability, case.payload, batch, RingFormat::V1)
            })?;
        }
        Ok(())
    }
}

/// push+advance one at a time (`batch` 1) or push_many+advance, on a ring
/// of `format` (format 2's rows are named "format 2 ...").
pub(super) fn publish(
    ctx: &Ctx,
    durability: Durability,
    payload: usize,
    batch: u64,
    format: RingFormat,
) -> Result<Row, BenchError> {
    let used = cap_batch_in(format, ctx.geometry.capacity(), payload, batch);
    let data = item(payload);
    let mut pair = Pair::new_format(&ctx.ring, durability, format)?;
    let need = used * stream_len_in(format, payload);
    let kind = match format {
        RingFormat::V1 => Kind::Publish { batch: used },
        _ => Kind::Publish2 { batch: used },
    };
    let mut paired = ctx.paired(kind, durability, payload);
    let mut rates = Vec::new();
    let before = pair.pstats.snapshot();
    let mut total = 0u64;
    for _ in 0..ctx.cfg.reps {
        paired.sample()?;
        let mut clock = Stopwatch::start();
        let mut n = 0u64;
        while n == 0 || clock.elapsed() < ctx.cfg.budget {
            if pair.p.free_bytes() < need {
                // The consumer's work, not the producer's: not timed.
                clock.pause();
                pair.release_all()?;
                clock.resume();
            }
            let end = if used == 1 {
                pair.p.push(&data)?
            } else {
                pair.p
                    .push_many(std::iter::repeat_n(&data[..], used as usize))?
            };
            pair.p.advance(end)?;
            n += used;
        }
        rates.push(n as f64 / clock.elapsed().as_secs_f64());
        total += n;
    }
    let io = pair.pstats.snapshot().since(before);
    let scenario = if batch == 1 {
        "push+advance".to_string()
    } else {
        format!("push_many({batch})+advance")
    };
    let scenario = format!("{}{scenario}", prefix(format));
    let mut row = bench_row(scenario, durability, payload, used, rates, paired);
    // Releases by the bench make the producer flush before reusing space:
    // count only what the producer did (its own device handle).
    row = row.counted(Side::Producer, total, io, ctx.cfg.reps);
    if used != batch {
        row = row.note(format!(
            "batch capped from {batch} to {used} (half the ring's {} bytes)",
            ctx.geometry.capacity()
        ));
    }
    Ok(row)
}

/// What a scenario name starts with for a ring of `format`: nothing for
/// format 1, `format 2 ` for format 2.
pub(super) fn prefix(format: RingFormat) -> &'static str {
    match format {
        RingFormat::V1 => "",
        _ => "format 2 ",
    }
}
