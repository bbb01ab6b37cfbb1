//! What the ring scenarios start from: a fresh ring with a producer and
//! a consumer attached, each on its own counted device handle, and the
//! items they move.

use std::sync::Arc;

use shared_block_ring::{layout, Consumer, Durability, Options, Producer, RingFormat};

use super::device::{Dev, IoStats, RingDev};
use super::BenchError;

/// A producer and a consumer attached to a fresh ring, each on its own
/// device handle, with their I/O counted.
pub struct Pair {
    /// The producer.
    pub p: Producer<Dev>,
    /// The consumer.
    pub c: Consumer<Dev>,
    /// The producer's device counters.
    pub pstats: Arc<IoStats>,
    /// The consumer's device counters.
    pub cstats: Arc<IoStats>,
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
        Pair::new_format(dev, durability, RingFormat::V1)
    }

    /// Writes a new ring of `format` on `dev` and attaches to it.
    pub fn new_format(
        dev: &RingDev,
        durability: Durability,
        format: RingFormat,
    ) -> Result<Pair, BenchError> {
        dev.fresh_format(format)?;
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

/// The largest batch of `payload`-byte items that fits half a ring of
/// `capacity` bytes of `format` (so that a measurement can publish at
/// least two), at least 1.
pub fn cap_batch_in(format: RingFormat, capacity: u64, payload: usize, batch: u64) -> u64 {
    let fit = capacity / 2 / stream_len_in(format, payload);
    batch.min(fit.max(1))
}

/// The item a bench writes: `payload` bytes, the first 8 (when there is
/// room) a sequence number, the rest a fixed pattern.
pub fn item(payload: usize) -> Vec<u8> {
    (0..payload).map(|i| (i % 251) as u8).collect()
}

/// Stream bytes an item of `payload` bytes occupies in the ring.
pub fn stream_len(payload: usize) -> u64 {
    layout::item_stream_len(payload as u64)
}

/// Stream bytes an item of `payload` bytes occupies in a ring of `format`
/// (format 2's records carry a 24-byte header).
pub fn stream_len_in(format: RingFormat, payload: usize) -> u64 {
    match format {
        RingFormat::V1 => stream_len(payload),
        _ => layout::v2::record_stream_len(payload as u64),
    }
}
