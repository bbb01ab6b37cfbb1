//! The workloads: their steps, how they are generated, and the bytes they
//! push.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shared_block_ring::{layout, Durability, Options, RingFormat};

#[derive(Debug, Clone)]
pub(crate) enum Op {
    Push(usize),
    PushMany(Vec<usize>),
    /// Publish up to the end of the k-th unpublished item (modulo).
    ProducerAdvance(usize),
    /// The same with `advance_pipelined` (one flush; the pointer is
    /// written by the next call, `sync`, `advance` or drop).
    ProducerAdvancePipelined(usize),
    Sync,
    ProducerState,
    Pop,
    Fold,
    /// Release up to the end of the k-th unreleased published item (modulo).
    ConsumerAdvance(usize),
    Suspend,
    Resume,
    ReattachProducer,
    ReattachConsumer,
}

impl Op {
    pub(crate) fn is_producer(&self) -> bool {
        matches!(
            self,
            Op::Push(_)
                | Op::PushMany(_)
                | Op::ProducerAdvance(_)
                | Op::ProducerAdvancePipelined(_)
                | Op::Sync
                | Op::ProducerState
                | Op::ReattachProducer
        )
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Workload {
    pub(crate) seed: u64,
    pub(crate) sector_size: usize,
    pub(crate) sectors: u64,
    pub(crate) durability: Durability,
    pub(crate) format: RingFormat,
    /// Whether the producer re-reads the consumer sector on every push.
    eager: bool,
    /// Two handles interleaved: the other side also acts in the middle of
    /// a side's call (see [`Hooked`](crate::hooked::Hooked)).
    pub(crate) interleave: bool,
    pub(crate) ops: Vec<Op>,
}

impl Workload {
    fn generate(
        seed: u64,
        sector_size: usize,
        sectors: u64,
        durability: Durability,
        len: usize,
    ) -> Workload {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut w = Workload {
            seed,
            sector_size,
            sectors,
            durability,
            format: RingFormat::V1,
            eager: seed % 2 == 0,
            interleave: false,
            ops: Vec::new(),
        };
        w.ops = (0..len)
            .map(|_| match rng.random_range(0..100) {
                0..=27 => Op::Push(w.item_size(&mut rng)),
                28..=37 => {
                    let n = rng.random_range(1..5);
                    Op::PushMany((0..n).map(|_| w.item_size(&mut rng) / 2).collect())
                }
                38..=47 => Op::ProducerAdvance(rng.random::<u32>() as usize),
                48..=55 => Op::ProducerAdvancePipelined(rng.random::<u32>() as usize),
                56 => Op::Sync,
                57..=58 => Op::ProducerState,
                59..=66 => Op::Pop,
                67..=69 => Op::Fold,
                70..=87 => Op::ConsumerAdvance(rng.random::<u32>() as usize),
                88..=89 => Op::Suspend,
                90..=95 => Op::Resume,
                96..=97 => Op::ReattachProducer,
                _ => Op::ReattachConsumer,
            })
            .collect();
        w
    }

    /// The same, with the other side acting inside each side's calls.
    pub(crate) fn interleaved(mut self) -> Workload {
        self.interleave = true;
        self
    }

    /// The same on a format-2 ring.
    pub(crate) fn format2(mut self) -> Workload {
        self.format = RingFormat::V2;
        self
    }

    /// Stream bytes of an item of `len` bytes.
    pub(crate) fn stream_len(&self, len: usize) -> u64 {
        match self.format {
            RingFormat::V1 => layout::item_stream_len(len as u64),
            _ => layout::v2::record_stream_len(len as u64),
        }
    }

    /// True when `advance_pipelined` defers its pointer (format 1, both
    /// modes); otherwise it is `advance`.
    pub(crate) fn pipelines(&self) -> bool {
        self.format == RingFormat::V1
    }

    fn item_size(&self, rng: &mut StdRng) -> usize {
        match rng.random_range(0..10) {
            0 => 0,
            1..=5 => rng.random_range(1..200),
            6..=8 => rng.random_range(200..self.sector_size * 2),
            _ => rng.random_range(0..self.capacity() as usize / 2),
        }
    }

    /// A producer step taken inside a consumer call: a push, a
    /// publication or a look at the consumer, in the proportions of the
    /// main mix.
    pub(crate) fn producer_op(&self, rng: &mut StdRng) -> Op {
        match rng.random_range(0..59) {
            0..=27 => Op::Push(self.item_size(rng)),
            28..=37 => {
                let n = rng.random_range(1..5);
                Op::PushMany((0..n).map(|_| self.item_size(rng) / 2).collect())
            }
            38..=47 => Op::ProducerAdvance(rng.random::<u32>() as usize),
            48..=55 => Op::ProducerAdvancePipelined(rng.random::<u32>() as usize),
            56 => Op::Sync,
            _ => Op::ProducerState,
        }
    }

    /// A consumer step taken inside a producer call: a read, a release or
    /// a suspend request, in the proportions of the main mix.
    pub(crate) fn consumer_op(&self, rng: &mut StdRng) -> Op {
        match rng.random_range(0..37) {
            0..=7 => Op::Pop,
            8..=10 => Op::Fold,
            11..=28 => Op::ConsumerAdvance(rng.random::<u32>() as usize),
            29..=30 => Op::Suspend,
            _ => Op::Resume,
        }
    }

    pub(crate) fn options(&self) -> Options {
        // Deterministic replays need a deterministic producer: it either
        // looks at the consumer on every push, or only when the ring looks
        // full (the interval is never reached).
        let interval = if self.eager {
            Duration::ZERO
        } else {
            Duration::from_secs(24 * 3600)
        };
        Options::new()
            .durability(self.durability)
            .consumer_poll_interval(interval)
            .queue("crash")
            .client(format!("seed {}", self.seed))
            .format(self.format)
            // Never expires during a run: no owner check, no heartbeat.
            .lease(Duration::from_millis(u32::MAX.into()))
    }

    pub(crate) fn capacity(&self) -> u64 {
        (self.sectors - 3) * self.sector_size as u64
    }
}

/// The bytes of the `n`-th item pushed by a workload.
pub(crate) fn item_bytes(seed: u64, n: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ n.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// `count` workloads of `len` steps with seeds from `first_seed`, on rings
/// of 16, 8, 24 and 5 sectors of 512 bytes in turn.
pub(crate) fn mixed(
    first_seed: u64,
    count: u64,
    durability: Durability,
    len: usize,
) -> impl Iterator<Item = Workload> {
    (0..count).map(move |i| {
        let sectors = [16, 8, 24, 5][i as usize % 4];
        Workload::generate(first_seed + i, 512, sectors, durability, len)
    })
}

/// A workload on a ring of 6 sectors of 4096 bytes.
pub(crate) fn on_4k_sectors(seed: u64, durability: Durability, len: usize) -> Workload {
    Workload::generate(seed, 4096, 6, durability, len)
}
