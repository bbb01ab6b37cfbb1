//! The device limit each row is held to: which of the device's limits a
//! kind of work depends on ([`limit`]), and that limit measured again
//! alongside the row's repetitions ([`Paired`]).

use std::cell::RefCell;
use std::time::Duration;

use shared_block_ring::Durability;

use super::clock::median;
use super::fixture::{stream_len, stream_len_in};
use super::limits::{Limits, Meter, Metric};
use super::BenchError;

/// The kinds of work a row's limit is computed for.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A producer publishing `batch` items per advance.
    Publish {
        /// Items per advance.
        batch: u64,
    },
    /// The journal with `threads` pushing threads (group commit).
    Journal {
        /// Pushing threads.
        threads: u64,
    },
    /// A producer streaming, one flush per batch.
    Stream,
    /// A consumer popping and releasing one item at a time.
    Pop,
    /// A consumer reading everything, one release.
    Drain,
    /// One item from push to pop on an idle ring.
    Latency,
    /// Format 2: a producer publishing `batch` items per advance, one
    /// flush per publication.
    Publish2 {
        /// Items per advance.
        batch: u64,
    },
    /// Format 2: the journal with `threads` pushing threads, one flush
    /// per commit.
    Journal2 {
        /// Pushing threads.
        threads: u64,
    },
    /// Format 2: one item from push to pop on an idle ring.
    Latency2,
}

/// The device limit matching a row, in items/s, and how it was derived.
///
/// Producer rows in the power-loss mode pay two flushes per publication
/// (data, then pointer), so their limit is the smaller of `batch` x the
/// small O_DSYNC write rate / 2 and the durable write bandwidth; in the
/// process-crash mode, two plain small writes per publication instead.
/// The streaming producer is held to the durable write bandwidth
/// (process-crash writes are not flushed and may beat it). Consumers: one
/// flush per release in the power-loss mode, one small write otherwise,
/// and the read bandwidth. Latency: two writes (durable in the power-loss
/// mode) and a read. Format 2 publishes with one flush: its producer rows
/// are held to `batch` x the small O_DSYNC write rate (one write and one
/// flush each), its latency to one of those and a read.
pub fn limit(kind: Kind, durability: Durability, payload: usize, l: &Limits) -> LimitInfo {
    use Metric::*;
    let format2 = matches!(
        kind,
        Kind::Publish2 { .. } | Kind::Journal2 { .. } | Kind::Latency2
    );
    let s = if format2 {
        stream_len_in(shared_block_ring::RingFormat::V2, payload)
    } else {
        stream_len(payload)
    } as f64;
    let write_bw = l.write_bw() / s;
    let read_bw = l.read_bw() / s;
    let pl = durability == Durability::PowerLoss;
    let small = l.small_bytes;
    let info = |value: f64, basis: String, uses: &[Metric]| LimitInfo {
        value,
        basis,
        uses: uses.to_vec(),
    };
    let bw = || {
        let basis = if pl {
            "1 MiB O_DSYNC write bandwidth".to_string()
        } else {
            "1 MiB O_DSYNC write bandwidth (no flushes in this mode: may exceed it)".to_string()
        };
        info(write_bw, basis, &[DsyncBw])
    };
    // The small write a publication or release is made of, and how the
    // limit follows from it, in this mode: durable or plain.
    let small_write = |durable: &'static str, plain: &'static str| {
        if pl {
            (l.dsync_small_writes_per_s, DsyncSmall, durable)
        } else {
            (l.small_writes_per_s, SmallWrite, plain)
        }
    };
    match kind {
        Kind::Publish { batch: n } | Kind::Journal { threads: n } => {
            let what = if matches!(kind, Kind::Journal { .. }) {
                format!("{n} pushers per commit")
            } else {
                format!("{n} items per publish")
            };
            let (rate, metric, how) = small_write(
                "O_DSYNC writes/s / 2 (two flushes per publish)",
                "O_DIRECT writes/s / 2 (data and pointer, no flush)",
            );
            let io_bound = n as f64 * rate / 2.0;
            if io_bound <= write_bw {
                info(io_bound, format!("{what} x {small} B {how}"), &[metric])
            } else {
                bw()
            }
        }
        Kind::Publish2 { batch: n } | Kind::Journal2 { threads: n } => {
            let what = if matches!(kind, Kind::Journal2 { .. }) {
                format!("{n} pushers per commit")
            } else {
                format!("{n} items per publish")
            };
            let (rate, metric, how, per) = if pl {
                (
                    l.dsync_small_writes_per_s,
                    DsyncSmall,
                    "O_DSYNC writes/s (one flush per publish)",
                    1.0,
                )
            } else {
                (
                    l.small_writes_per_s,
                    SmallWrite,
                    "O_DIRECT writes/s / 2 (records and pointer, no flush)",
                    2.0,
                )
            };
            let io_bound = n as f64 * rate / per;
            if io_bound <= write_bw {
                info(io_bound, format!("{what} x {small} B {how}"), &[metric])
            } else {
                bw()
            }
        }
        Kind::Latency2 if pl => info(
            1.0 / latency_floor_2_s(l),
            format!("1 / (one {small} B O_DSYNC write + one {small} B O_DIRECT read)"),
            &[DsyncSmall, SmallRead],
        ),
        Kind::Latency2 => info(
            1.0 / (2.0 / l.small_writes_per_s + 1.0 / l.small_reads_per_s),
            format!("1 / (two {small} B O_DIRECT writes + one {small} B read)"),
            &[SmallWrite, SmallRead],
        ),
        Kind::Stream => bw(),
        Kind::Pop => {
            let (rate, metric, how) = small_write(
                "O_DSYNC writes/s (one flush per release)",
                "O_DIRECT writes/s (one pointer write per release, no flush)",
            );
            if rate <= read_bw {
                info(rate, format!("{small} B {how}"), &[metric])
            } else {
                info(read_bw, "1 MiB O_DIRECT read bandwidth".into(), &[ReadBw])
            }
        }
        Kind::Drain => info(read_bw, "1 MiB O_DIRECT read bandwidth".into(), &[ReadBw]),
        Kind::Latency if pl => info(
            1.0 / latency_floor_s(l),
            format!("1 / (two {small} B O_DSYNC writes + one {small} B O_DIRECT read)"),
            &[DsyncSmall, SmallRead],
        ),
        Kind::Latency => info(
            1.0 / (2.0 / l.small_writes_per_s + 1.0 / l.small_reads_per_s),
            format!("1 / (two {small} B O_DIRECT writes + one {small} B read)"),
            &[SmallWrite, SmallRead],
        ),
    }
}

/// A row's device limit.
#[derive(Debug, Clone)]
pub struct LimitInfo {
    /// Items/s.
    pub value: f64,
    /// How it follows from the device's limits.
    pub basis: String,
    /// The limits it depends on.
    pub uses: Vec<Metric>,
}

/// Two durable small writes and one small read: the least time between a
/// push and the pop that sees it in the power-loss mode (T5).
pub fn latency_floor_s(l: &Limits) -> f64 {
    2.0 / l.dsync_small_writes_per_s + 1.0 / l.small_reads_per_s
}

/// Format 2: one durable small write (one flush) and one small read
/// (T10).
pub fn latency_floor_2_s(l: &Limits) -> f64 {
    1.0 / l.dsync_small_writes_per_s + 1.0 / l.small_reads_per_s
}

/// A row's device limit, measured again before each repetition of the
/// row: on a device shared with others, the speed can change several times
/// over within seconds, and a ratio against figures taken minutes earlier
/// would measure the neighbours, not the ring.
pub struct Paired<'a> {
    meter: &'a RefCell<Meter>,
    limits: &'a Limits,
    budget: Duration,
    kind: Kind,
    durability: Durability,
    payload: usize,
    uses: Vec<Metric>,
    samples: Vec<Vec<f64>>,
}

impl<'a> Paired<'a> {
    /// The limit of a row of `kind`, against step 1's `limits`, to be
    /// sampled with `meter` for a third of each repetition's `budget`.
    pub fn new(
        meter: &'a RefCell<Meter>,
        limits: &'a Limits,
        budget: Duration,
        kind: Kind,
        durability: Durability,
        payload: usize,
    ) -> Paired<'a> {
        let uses = limit(kind, durability, payload, limits).uses;
        Paired {
            meter,
            limits,
            budget,
            kind,
            durability,
            payload,
            samples: vec![Vec::new(); uses.len()],
            uses,
        }
    }

    /// Takes one sample of each limit the row depends on, for a third of
    /// a repetition's time.
    pub fn sample(&mut self) -> Result<(), BenchError> {
        let budget = (self.budget / 3).max(Duration::from_millis(5));
        let mut meter = self.meter.borrow_mut();
        for (m, samples) in self.uses.iter().zip(&mut self.samples) {
            samples.push(meter.sample(*m, budget)?);
        }
        Ok(())
    }

    /// The limit from the medians of the samples, and the same from step 1.
    pub fn finish(mut self) -> (LimitInfo, f64) {
        let mut l = self.limits.clone();
        for (m, samples) in self.uses.iter().zip(&mut self.samples) {
            if !samples.is_empty() {
                l = l.with(*m, median(samples));
            }
        }
        let step1 = limit(self.kind, self.durability, self.payload, self.limits).value;
        let mut info = limit(self.kind, self.durability, self.payload, &l);
        info.basis += ", measured alongside";
        (info, step1)
    }
}
