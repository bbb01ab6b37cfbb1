//! Publishing: push+advance one item at a time, and push_many of 16 and
//! 256 items per advance, against `batch` x the rate of the device writes
//! a publication needs.

use shared_block_ring::{Durability, Side};

use super::{bench_row, Case, Ctx, Family};
use crate::bench::measure::basis::Kind;
use crate::bench::measure::clock::Stopwatch;
use crate::bench::measure::fixture::{cap_batch, item, stream_len, Pair};
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
                publish(ctx, case.durability, case.payload, batch)
            })?;
        }
        Ok(())
    }
}

/// push+advance one at a time (`batch` 1) or push_many+advance.
pub(super) fn publish(
    ctx: &Ctx,
    durability: Durability,
    payload: usize,
    batch: u64,
) -> Result<Row, BenchError> {
    let used = cap_batch(ctx.geometry.capacity(), payload, batch);
    let data = item(payload);
    let mut pair = Pair::new(&ctx.ring, durability)?;
    let need = used * stream_len(payload);
    let mut paired = ctx.paired(Kind::Publish { batch: used }, durability, payload);
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
