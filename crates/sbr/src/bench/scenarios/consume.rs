//! Consuming: pop+advance one item at a time, against the rate of the
//! device writes a release needs, and draining everything published with
//! one advance, against the read bandwidth. Filling the ring beforehand
//! is not timed.

use std::hint::black_box;
use std::time::Instant;

use shared_block_ring::{Durability, Error, RetryReason, Side};

use super::{bench_row, Case, Ctx, Family};
use crate::bench::measure::basis::Kind;
use crate::bench::measure::clock::Stopwatch;
use crate::bench::measure::device::IoCounts;
use crate::bench::measure::fixture::{item, Pair};
use crate::bench::measure::BenchError;
use crate::bench::report::row::Row;
use crate::bench::report::Findings;

/// pop+advance, and drain.
pub struct Consume;

impl Family for Consume {
    fn ring_rows(&self, ctx: &Ctx, case: Case, out: &mut Findings) -> Result<(), BenchError> {
        ctx.row(out, "pop", case, || {
            pop(ctx, case.durability, case.payload)
        })?;
        ctx.row(out, "drain", case, || {
            drain(ctx, case.durability, case.payload)
        })
    }
}

/// pop+advance one item at a time, from a ring filled beforehand (filling
/// is not timed).
pub(super) fn pop(ctx: &Ctx, durability: Durability, payload: usize) -> Result<Row, BenchError> {
    let data = item(payload);
    let mut pair = Pair::new(&ctx.ring, durability)?;
    let room = ctx.geometry.capacity() * 9 / 10;
    let mut refill = 64u64;
    let mut rates = Vec::new();
    let mut io = IoCounts::default();
    let mut total = 0u64;
    let mut paired = ctx.paired(Kind::Pop, durability, payload);
    for _ in 0..ctx.cfg.reps {
        paired.sample()?;
        let before = pair.cstats.snapshot();
        let mut clock = Stopwatch::start();
        let mut n = 0u64;
        while n == 0 || clock.elapsed() < ctx.cfg.budget {
            match pair.c.pop() {
                Ok((next, item)) => {
                    black_box(item);
                    pair.c.advance(next)?;
                    n += 1;
                }
                Err(Error::Retry(RetryReason::Empty)) => {
                    // Filling is the producer's work (on its own device
                    // handle, so not in the consumer's counts): not timed.
                    clock.pause();
                    pair.fill(&data, refill, room)?;
                    refill = (refill * 2).min(1 << 20);
                    clock.resume();
                }
                Err(e) => return Err(e.into()),
            }
        }
        rates.push(n as f64 / clock.elapsed().as_secs_f64());
        io += pair.cstats.snapshot().since(before);
        total += n;
    }
    let row = bench_row("pop+advance", durability, payload, 1, rates, paired);
    Ok(row.counted(Side::Consumer, total, io, ctx.cfg.reps))
}

/// Drain: everything published read with `for_each_bytes` (as few reads
/// as the read-ahead allows), then one advance. The ring is filled with up
/// to `drain_bytes` beforehand, not timed.
pub(super) fn drain(ctx: &Ctx, durability: Durability, payload: usize) -> Result<Row, BenchError> {
    let data = item(payload);
    let mut pair = Pair::new(&ctx.ring, durability)?;
    let room = (ctx.geometry.capacity() * 9 / 10).min(ctx.cfg.drain_bytes);
    let mut rates = Vec::new();
    let mut io = IoCounts::default();
    let mut total = 0u64;
    let mut per_drain = 0u64;
    let mut paired = ctx.paired(Kind::Drain, durability, payload);
    for _ in 0..ctx.cfg.reps {
        paired.sample()?;
        pair.release_all()?;
        let filled = pair.fill(&data, u64::MAX, room)?;
        let before = pair.cstats.snapshot();
        let start = Instant::now();
        let mut n = 0u64;
        let mut sum = 0u64;
        let from = pair.c.position();
        let end = pair.c.for_each_bytes(from, |_, _, bytes| {
            n += 1;
            sum += bytes.len() as u64;
            Ok(())
        })?;
        pair.c.advance(end)?;
        let elapsed = start.elapsed();
        black_box(sum);
        if n != filled {
            return Err(BenchError::msg(format!(
                "drain read {n} items, {filled} were published"
            )));
        }
        io += pair.cstats.snapshot().since(before);
        rates.push(n as f64 / elapsed.as_secs_f64());
        total += n;
        per_drain = n;
    }
    let row = bench_row("drain", durability, payload, per_drain, rates, paired);
    Ok(row.counted(Side::Consumer, total, io, ctx.cfg.reps))
}
