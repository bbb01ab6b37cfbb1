//! Clocks and the statistics of repetitions: a stopwatch that can leave
//! out set-up work, the host-wide monotonic clock, a thread's CPU time,
//! medians and percentiles.

use std::time::{Duration, Instant};

/// A stopwatch that can leave out set-up work done in the middle of a
/// measurement (refilling or emptying the ring).
pub struct Stopwatch {
    since: Option<Instant>,
    total: Duration,
}

impl Stopwatch {
    /// Started now.
    pub fn start() -> Stopwatch {
        Stopwatch {
            since: Some(Instant::now()),
            total: Duration::ZERO,
        }
    }

    /// Stops counting.
    pub fn pause(&mut self) {
        if let Some(s) = self.since.take() {
            self.total += s.elapsed();
        }
    }

    /// Counts again.
    pub fn resume(&mut self) {
        if self.since.is_none() {
            self.since = Some(Instant::now());
        }
    }

    /// Time counted so far.
    pub fn elapsed(&self) -> Duration {
        self.total + self.since.map_or(Duration::ZERO, |s| s.elapsed())
    }
}

/// CLOCK_MONOTONIC in nanoseconds: shared by every process on the host,
/// so a time taken by one process can be compared with another's.
pub fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// CPU time used by the calling thread.
pub fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// The median; `xs` is reordered.
pub fn median(xs: &mut [f64]) -> f64 {
    percentile(xs, 0.5)
}

/// The `q` quantile (nearest rank); `xs` is reordered. NaN when empty.
pub fn percentile(xs: &mut [f64], q: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    let i = ((xs.len() - 1) as f64 * q).round() as usize;
    xs[i]
}
