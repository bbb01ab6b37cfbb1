//! An idle consumer's CPU use (T5): a consumer waiting on an empty ring,
//! in the power-loss mode, for the configured time.

use std::time::{Duration, Instant};

use shared_block_ring::{Durability, Error, RetryReason};

use super::{Ctx, Family};
use crate::bench::measure::clock::thread_cpu;
use crate::bench::measure::device::RingDev;
use crate::bench::measure::fixture::Pair;
use crate::bench::measure::BenchError;
use crate::bench::report::{say, Findings, IdleCpu};

/// The idle consumer.
pub struct Idle;

impl Family for Idle {
    fn once(&self, ctx: &Ctx, out: &mut Findings) -> Result<(), BenchError> {
        if !ctx.wanted("idle") {
            return Ok(());
        }
        let idle = idle_cpu(&ctx.ring, ctx.cfg.idle)?;
        say(format!(
            "  idle consumer (wait_for_item for {:?}): {:.2}% of a core, {:.0} polls/s",
            ctx.cfg.idle,
            idle.cpu * 100.0,
            idle.polls_per_s,
        ));
        out.idle = Some(idle);
        Ok(())
    }
}

/// A consumer waiting for an item on an empty ring with `wait_for_item`
/// for `idle`: the fraction of a core it used and the device reads per
/// second it made.
fn idle_cpu(dev: &RingDev, idle: Duration) -> Result<IdleCpu, BenchError> {
    let mut pair = Pair::new(dev, Durability::PowerLoss)?;
    let before = pair.cstats.snapshot();
    let cpu0 = thread_cpu();
    let start = Instant::now();
    let at = pair.c.position();
    match pair.c.wait_for_item(at, Some(idle)) {
        Err(Error::Retry(RetryReason::Empty)) => {}
        Ok(()) => return Err(BenchError::msg("an item appeared in the idle ring")),
        Err(e) => return Err(e.into()),
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = (thread_cpu() - cpu0).as_secs_f64();
    let reads = pair.cstats.snapshot().since(before).reads as f64;
    Ok(IdleCpu {
        cpu: cpu / wall,
        polls_per_s: reads / wall,
    })
}
