//! Streaming: `sbr produce`'s own feeder (push_many of each chunk, one
//! `advance_pipelined` per group of chunks already waiting, `advance` when
//! the input pauses), fed by a thread
//! that makes chunks as `sbr produce`'s reader does, against the durable
//! write bandwidth.

use std::time::Instant;

use shared_block_ring::{Durability, Producer, Side};

use super::{bench_row, Case, Ctx, Family};
use crate::bench::measure::basis::Kind;
use crate::bench::measure::device::IoCounts;
use crate::bench::measure::fixture::{item, options, stream_len};
use crate::bench::measure::BenchError;
use crate::bench::report::row::Row;
use crate::bench::report::Findings;
use crate::produce::{Chunk, Feeder, Input, CHUNK_BYTES, CHUNK_ITEMS};
use crate::sync::mpsc;

/// The streaming producer.
pub struct Stream;

impl Family for Stream {
    fn ring_rows(&self, ctx: &Ctx, case: Case, out: &mut Findings) -> Result<(), BenchError> {
        ctx.row(out, "stream", case, || {
            stream(ctx, case.durability, case.payload)
        })
    }
}

/// The streaming producer: `sbr produce`'s own feeder (push_many of each
/// chunk, advance_pipelined per group, advance when the input pauses), fed
/// by a thread
/// that makes chunks as `sbr produce`'s reader does, for the budget or
/// until the ring would be full.
pub(super) fn stream(ctx: &Ctx, durability: Durability, payload: usize) -> Result<Row, BenchError> {
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
            // At least one chunk, however late this thread starts: a row
            // of 0 items/s would measure the scheduler.
            while sent < max_items && (sent == 0 || start.elapsed() < budget) {
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
        io += stats.snapshot().since(before);
        rates.push(sent as f64 / elapsed.as_secs_f64());
        total += sent;
    }
    let row = bench_row(
        "stream (sbr produce)",
        durability,
        payload,
        chunk_items,
        rates,
        paired,
    );
    Ok(row.counted(Side::Producer, total, io, ctx.cfg.reps))
}
