//! Allocations per item on the library's hot paths (T7), counted by the
//! counting allocator on the calling thread.

use std::hint::black_box;

use shared_block_ring::Durability;

use super::{Ctx, Family};
use crate::bench::measure::alloc::thread_allocations;
use crate::bench::measure::fixture::{item, stream_len, Pair};
use crate::bench::measure::BenchError;
use crate::bench::report::{say, Allocations, Findings};

/// Allocations per item of push, push_many, drain and pop.
pub struct Allocs;

impl Family for Allocs {
    fn once(&self, ctx: &Ctx, out: &mut Findings) -> Result<(), BenchError> {
        if !ctx.wanted("allocations") {
            return Ok(());
        }
        let a = allocations(ctx)?;
        say(format!(
            "  allocations per item (process-crash, after a warm-up): push {:.3}, push_many {:.3}, drain {:.3}, pop {:.3} (the popped item)",
            a.push, a.push_many, a.drain, a.pop
        ));
        out.allocations = Some(a);
        Ok(())
    }
}

/// Counts allocations per item on the hot paths, in the process-crash
/// mode (no flushes, so many items in little time; the code paths are the
/// same apart from the flush calls, which allocate nothing).
pub(super) fn allocations(ctx: &Ctx) -> Result<Allocations, BenchError> {
    let data = item(100);
    let len = stream_len(100);
    let n: u64 = if ctx.cfg.name == "smoke" { 512 } else { 4096 };
    let mut pair = Pair::new(&ctx.ring, Durability::ProcessCrash)?;
    let counted = |pair: &mut Pair| -> Result<[u64; 4], BenchError> {
        let mut out = [0u64; 4];
        // push + advance
        for _ in 0..n {
            if pair.p.free_bytes() < len {
                pair.release_all()?;
            }
            let a = thread_allocations();
            let end = pair.p.push(&data)?;
            pair.p.advance(end)?;
            out[0] += thread_allocations() - a;
        }
        // push_many + advance
        for _ in 0..n / 256 {
            if pair.p.free_bytes() < 256 * len {
                pair.release_all()?;
            }
            let a = thread_allocations();
            let end = pair.p.push_many(std::iter::repeat_n(&data[..], 256))?;
            pair.p.advance(end)?;
            out[1] += thread_allocations() - a;
        }
        // drain
        pair.release_all()?;
        pair.fill(&data, n, ctx.geometry.capacity() / 2)?;
        let a = thread_allocations();
        let from = pair.c.position();
        let end = pair.c.for_each_bytes(from, |_, _, b| {
            black_box(b);
            Ok(())
        })?;
        pair.c.advance(end)?;
        out[2] += thread_allocations() - a;
        // pop + advance
        pair.fill(&data, n, ctx.geometry.capacity() / 2)?;
        for _ in 0..n {
            let a = thread_allocations();
            let (next, it) = pair.c.pop()?;
            black_box(it);
            pair.c.advance(next)?;
            out[3] += thread_allocations() - a;
        }
        Ok(out)
    };
    // The first round grows the buffers; the second is the steady state.
    counted(&mut pair)?;
    let c = counted(&mut pair)?;
    let per = |x: u64| x as f64 / n as f64;
    Ok(Allocations {
        push: per(c[0]),
        push_many: c[1] as f64 / (n / 256 * 256) as f64,
        drain: per(c[2]),
        pop: per(c[3]),
        items: n,
    })
}
