//! The journal: 1 and 4 threads pushing concurrently with a no-op
//! perform (group commit), against the pushers per commit x the rate of
//! the device writes a publication needs.

use std::time::Instant;

use shared_block_ring::{Durability, Error, Journal as RingJournal, JournalOptions, RingFormat, Side};

use super::{bench_row, Case, Ctx, Family};
use crate::bench::measure::basis::Kind;
use crate::bench::measure::device::IoCounts;
use crate::bench::measure::fixture::item;
use crate::bench::measure::BenchError;
use crate::bench::report::row::{IoSummary, Row};
use crate::bench::report::Findings;

/// The journal with 1 and 4 pushing threads.
pub struct Journal;

impl Family for Journal {
    fn ring_rows(&self, ctx: &Ctx, case: Case, out: &mut Findings) -> Result<(), BenchError> {
        for threads in [1, 4] {
            ctx.row(out, "journal", case, || {
                journal(ctx, case.durability, case.payload, threads, RingFormat::V1)
            })?;
        }
        Ok(())
    }
}

/// The journal with `threads` threads pushing concurrently and a no-op
/// perform, on a ring of `format`.
pub(super) fn journal(
    ctx: &Ctx,
    durability: Durability,
    payload: usize,
    threads: u64,
    format: RingFormat,
) -> Result<Row, BenchError> {
    let data = item(payload);
    let mut rates = Vec::new();
    let mut pushes = 0u64;
    let mut commits = 0u64;
    let mut io = IoCounts::default();
    let kind = match format {
        RingFormat::V1 => Kind::Journal { threads },
        _ => Kind::Journal2 { threads },
    };
    let mut paired = ctx.paired(kind, durability, payload);
    for _ in 0..ctx.cfg.reps {
        paired.sample()?;
        ctx.ring.fresh_format(format)?;
        let dev = ctx.ring.open()?;
        let stats = dev.stats();
        let options = JournalOptions::new()
            .name("sbr-bench")
            .client("bench journal")
            .durability(durability);
        let journal = RingJournal::start(dev, options, |_ops: &[Vec<u8>]| Ok::<(), String>(()))?;
        let before = stats.snapshot();
        let start = Instant::now();
        let budget = ctx.cfg.budget;
        let counts: Vec<Result<u64, Error>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let journal = &journal;
                    let data = &data;
                    s.spawn(move || {
                        let mut n = 0u64;
                        while n == 0 || start.elapsed() < budget {
                            journal.push(data)?;
                            n += 1;
                        }
                        Ok(n)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(Ok(0)))
                .collect()
        });
        let elapsed = start.elapsed();
        let mut n = 0;
        for c in counts {
            n += c?;
        }
        let stats_now = journal.stats();
        journal.shutdown();
        io += stats.snapshot().since(before);
        pushes += stats_now.pushed;
        commits += stats_now.commits;
        rates.push(n as f64 / elapsed.as_secs_f64());
    }
    let plural = if threads == 1 { "" } else { "s" };
    let scenario = format!(
        "{}journal {threads} thread{plural}",
        super::publish::prefix(format)
    );
    let mut row = bench_row(scenario, durability, payload, 1, rates, paired);
    if commits > 0 {
        // The journal's producer and consumer share one device handle:
        // its counts are the worker's releases as well as the commits.
        row = row
            .with_io(IoSummary {
                publishes: commits,
                ..IoSummary::of(pushes, io, Side::Producer, ctx.cfg.reps)
            })
            .publish_trips(io)
            .note("flushes/publish and rt/pub include the worker's releases");
    }
    Ok(row)
}
