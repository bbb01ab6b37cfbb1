//! Step 2 on the bench device: producer and consumer scenarios, through
//! the library's own calls (and, for streaming, `sbr produce`'s own code).

use std::hint::black_box;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use shared_block_ring::{
    Consumer, Durability, Error, Journal, JournalOptions, Options, Producer, RetryReason,
};

use super::io::{item, stream_len, Dev, IoCounts, IoStats, RingDev, Stopwatch};
use super::report::{IoSummary, Kind, Row};
use super::{median, BenchError, Ctx};
use crate::produce::{Chunk, Feeder, Input, CHUNK_BYTES, CHUNK_ITEMS};

/// A producer and a consumer attached to a fresh ring, each on its own
/// device handle, with their I/O counted.
pub struct Pair {
    /// The producer.
    pub p: Producer<Dev>,
    /// The consumer.
    pub c: Consumer<Dev>,
    /// The producer's device counters.
    pub pstats: std::sync::Arc<IoStats>,
    /// The consumer's device counters.
    pub cstats: std::sync::Arc<IoStats>,
}

/// Ring options for the bench.
pub fn options(durability: Durability, client: &str) -> Options {
    Options::new()
        .durability(durability)
        .queue("sbr-bench")
        .client(client)
}

impl Pair {
    /// Writes a new ring on `dev` and attaches to it.
    pub fn new(dev: &RingDev, durability: Durability) -> Result<Pair, BenchError> {
        dev.fresh()?;
        let pd = dev.open()?;
        let pstats = pd.stats();
        let p = Producer::attach(pd, options(durability, "bench producer"))?;
        let cd = dev.open()?;
        let cstats = cd.stats();
        let c = Consumer::attach(cd, options(durability, "bench consumer"))?;
        Ok(Pair {
            p,
            c,
            pstats,
            cstats,
        })
    }

    /// Releases everything published, and lets the producer see it.
    pub fn release_all(&mut self) -> Result<(), BenchError> {
        self.p.sync()?;
        let end = self.p.published();
        self.c.advance(end)?;
        self.p.state()?;
        Ok(())
    }

    /// Pushes and publishes up to `items` items of `payload` bytes, at
    /// most `bytes` stream bytes, in groups of up to 4 MiB, as long as
    /// the ring has room. Returns how many.
    pub fn fill(&mut self, payload: &[u8], items: u64, bytes: u64) -> Result<u64, BenchError> {
        let len = stream_len(payload.len());
        let per_group = ((4u64 << 20) / len).max(1);
        let mut done = 0u64;
        while done < items && (done + 1) * len <= bytes {
            let n = per_group.min(items - done).min(bytes / len - done);
            if self.p.free_bytes() < n * len {
                self.p.state()?;
                if self.p.free_bytes() < n * len {
                    break;
                }
            }
            let end = self.p.push_many(std::iter::repeat_n(payload, n as usize))?;
            self.p.advance(end)?;
            done += n;
        }
        Ok(done)
    }
}

/// The counted I/O of `items` moved in `reps` repetitions.
fn summary(items: u64, io: IoCounts, consumer: bool, reps: usize) -> IoSummary {
    IoSummary {
        items,
        publishes: if consumer {
            io.consumer_sector_writes
        } else {
            io.producer_sector_writes
        },
        flushes: io.flushes,
        data_writes: io.writes - io.producer_sector_writes - io.consumer_sector_writes,
        syncs: io.durable_producer_sector_writes,
        reps,
    }
}

/// The largest batch of `payload`-byte items that fits half the ring (so
/// that a measurement can publish at least two), at least 1.
pub fn cap_batch(ctx: &Ctx, payload: usize, batch: u64) -> u64 {
    let fit = ctx.geometry.capacity() / 2 / stream_len(payload);
    batch.min(fit.max(1))
}

/// push+advance one at a time (`batch` 1) or push_many+advance.
pub fn publish(
    ctx: &Ctx,
    durability: Durability,
    payload: usize,
    batch: u64,
) -> Result<Row, BenchError> {
    let used = cap_batch(ctx, payload, batch);
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
    let (lim, step1) = paired.finish();
    let scenario = if batch == 1 {
        "push+advance".to_string()
    } else {
        format!("push_many({batch})+advance")
    };
    let mut row = Row::new(
        scenario,
        durability,
        "bench device",
        payload,
        used,
        median(&mut rates),
        lim,
        rates.len(),
    )
    .step1(step1);
    // Releases by the bench make the producer flush before reusing space:
    // count only what the producer did (its own device handle).
    row = row.with_io(summary(total, io, false, ctx.cfg.reps));
    if used != batch {
        row = row.note(format!(
            "batch capped from {batch} to {used} (half the ring's {} bytes)",
            ctx.geometry.capacity()
        ));
    }
    Ok(row)
}

/// The streaming producer: `sbr produce`'s own feeder (push_many of each
/// chunk, advance_pipelined, sync when the input pauses), fed by a thread
/// that makes chunks as `sbr produce`'s reader does, for the budget or
/// until the ring would be full.
pub fn stream(ctx: &Ctx, durability: Durability, payload: usize) -> Result<Row, BenchError> {
    let data = item(payload);
    let len = stream_len(payload);
    let chunk_items = (CHUNK_BYTES.div_ceil(payload.max(1))).clamp(1, CHUNK_ITEMS) as u64;
    let mut rates = Vec::new();
    let mut io = IoCounts::default();
    let mut total = 0u64;
    let mut paired = ctx.paired(Kind::Stream, durability, payload);
    for _ in 0..ctx.cfg.reps {
        paired.sample()?;
        ctx.ring.fresh()?;
        let dev = ctx.ring.open()?;
        let stats = dev.stats();
        let producer = Producer::attach(dev, options(durability, "bench producer"))?;
        // Stop before the ring is full: nobody consumes.
        let max_items = (ctx.geometry.capacity() * 9 / 10) / len;
        let budget = ctx.cfg.budget;
        let (tx, rx) = mpsc::sync_channel::<Input>(2);
        let (recycle_tx, recycle_rx) = mpsc::channel::<Chunk>();
        let before = stats.snapshot();
        let start = Instant::now();
        let data = data.clone();
        let generator = std::thread::spawn(move || {
            let mut sent = 0u64;
            while sent < max_items && start.elapsed() < budget {
                let mut chunk = recycle_rx.try_recv().unwrap_or_default();
                chunk.bytes.clear();
                chunk.ends.clear();
                let n = chunk_items.min(max_items - sent);
                for i in 0..n {
                    let at = chunk.bytes.len();
                    chunk.bytes.extend_from_slice(&data);
                    if payload >= 8 {
                        chunk.bytes[at..at + 8].copy_from_slice(&(sent + i).to_le_bytes());
                    }
                    chunk.ends.push(chunk.bytes.len());
                }
                sent += n;
                if tx.send(Input::Items(chunk)).is_err() {
                    break;
                }
            }
            sent
        });
        let mut feeder = Feeder::new(ctx.ring.spec.clone(), producer, None, false);
        let fed = feeder.feed(rx, recycle_tx).and_then(|()| feeder.publish());
        let elapsed = start.elapsed();
        let sent = generator
            .join()
            .map_err(|_| BenchError::msg("the item generator panicked"))?;
        fed.map_err(|f| BenchError::msg(f.message))?;
        drop(feeder);
        io = add(io, stats.snapshot().since(before));
        rates.push(sent as f64 / elapsed.as_secs_f64());
        total += sent;
    }
    let (lim, step1) = paired.finish();
    let row = Row::new(
        "stream (sbr produce)",
        durability,
        "bench device",
        payload,
        chunk_items,
        median(&mut rates),
        lim,
        rates.len(),
    )
    .step1(step1);
    Ok(row.with_io(summary(total, io, false, ctx.cfg.reps)))
}

fn add(a: IoCounts, b: IoCounts) -> IoCounts {
    IoCounts {
        reads: a.reads + b.reads,
        writes: a.writes + b.writes,
        flushes: a.flushes + b.flushes,
        producer_sector_writes: a.producer_sector_writes + b.producer_sector_writes,
        consumer_sector_writes: a.consumer_sector_writes + b.consumer_sector_writes,
        durable_producer_sector_writes: a.durable_producer_sector_writes
            + b.durable_producer_sector_writes,
    }
}

/// pop+advance one item at a time, from a ring filled beforehand (filling
/// is not timed).
pub fn pop(ctx: &Ctx, durability: Durability, payload: usize) -> Result<Row, BenchError> {
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
        io = add(io, pair.cstats.snapshot().since(before));
        total += n;
    }
    let (lim, step1) = paired.finish();
    let row = Row::new(
        "pop+advance",
        durability,
        "bench device",
        payload,
        1,
        median(&mut rates),
        lim,
        rates.len(),
    )
    .step1(step1);
    Ok(row.with_io(summary(total, io, true, ctx.cfg.reps)))
}

/// Drain: everything published read with `for_each_bytes` (as few reads
/// as the read-ahead allows), then one advance. The ring is filled with up
/// to `drain_bytes` beforehand, not timed.
pub fn drain(ctx: &Ctx, durability: Durability, payload: usize) -> Result<Row, BenchError> {
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
        io = add(io, pair.cstats.snapshot().since(before));
        rates.push(n as f64 / elapsed.as_secs_f64());
        total += n;
        per_drain = n;
    }
    let (lim, step1) = paired.finish();
    let row = Row::new(
        "drain",
        durability,
        "bench device",
        payload,
        per_drain,
        median(&mut rates),
        lim,
        rates.len(),
    )
    .step1(step1);
    Ok(row.with_io(summary(total, io, true, ctx.cfg.reps)))
}

/// The journal with `threads` threads pushing concurrently and a no-op
/// perform.
pub fn journal(
    ctx: &Ctx,
    durability: Durability,
    payload: usize,
    threads: u64,
) -> Result<Row, BenchError> {
    let data = item(payload);
    let mut rates = Vec::new();
    let mut pushes = 0u64;
    let mut commits = 0u64;
    let mut io = IoCounts::default();
    let mut paired = ctx.paired(Kind::Journal { threads }, durability, payload);
    for _ in 0..ctx.cfg.reps {
        paired.sample()?;
        ctx.ring.fresh()?;
        let dev = ctx.ring.open()?;
        let stats = dev.stats();
        let options = JournalOptions::new()
            .name("sbr-bench")
            .client("bench journal")
            .durability(durability);
        let journal = Journal::start(dev, options, |_ops: &[Vec<u8>]| Ok::<(), String>(()))?;
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
        io = add(io, stats.snapshot().since(before));
        pushes += stats_now.pushed;
        commits += stats_now.commits;
        rates.push(n as f64 / elapsed.as_secs_f64());
    }
    let (lim, step1) = paired.finish();
    let mut row = Row::new(
        format!(
            "journal {threads} thread{}",
            if threads == 1 { "" } else { "s" }
        ),
        durability,
        "bench device",
        payload,
        1,
        median(&mut rates),
        lim,
        rates.len(),
    )
    .step1(step1);
    if commits > 0 {
        row = row
            .with_io(IoSummary {
                items: pushes,
                publishes: commits,
                flushes: io.flushes,
                data_writes: io.writes - io.producer_sector_writes - io.consumer_sector_writes,
                syncs: io.durable_producer_sector_writes,
                reps: ctx.cfg.reps,
            })
            .note("flushes/publish include the worker's releases");
    }
    Ok(row)
}

/// Idle consumer CPU (T5): a consumer waiting for an item on an empty ring
/// with `wait_for_item` for `idle`; returns the fraction of a core it used
/// and the device reads per second it made.
pub fn idle_cpu(dev: &RingDev, idle: Duration) -> Result<(f64, f64), BenchError> {
    let mut pair = Pair::new(dev, Durability::PowerLoss)?;
    let before = pair.cstats.snapshot();
    let cpu0 = super::io::thread_cpu();
    let start = Instant::now();
    let at = pair.c.position();
    match pair.c.wait_for_item(at, Some(idle)) {
        Err(Error::Retry(RetryReason::Empty)) => {}
        Ok(()) => return Err(BenchError::msg("an item appeared in the idle ring")),
        Err(e) => return Err(e.into()),
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = (super::io::thread_cpu() - cpu0).as_secs_f64();
    let reads = pair.cstats.snapshot().since(before).reads as f64;
    Ok((cpu / wall, reads / wall))
}

/// Allocations per item on the library's hot paths, counted on the
/// calling thread after a warm-up (T7). The item returned by `pop` is an
/// allocation of its own, allowed by the target.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Allocations {
    /// `push` + `advance`, one item at a time.
    pub push: f64,
    /// `push_many` of 256 items + `advance`.
    pub push_many: f64,
    /// `for_each_bytes` over everything + `advance`.
    pub drain: f64,
    /// `pop` + `advance` (1 expected: the returned item).
    pub pop: f64,
    /// Items counted per path.
    pub items: u64,
}

/// Counts allocations per item on the hot paths, in the process-crash
/// mode (no flushes, so many items in little time; the code paths are the
/// same apart from the flush calls, which allocate nothing).
pub fn allocations(ctx: &Ctx) -> Result<Allocations, BenchError> {
    use super::alloc::thread_allocations;
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
