//! Adaptive polling for the blocking helpers.
//!
//! A block device cannot signal its readers, so waiting means polling. The
//! first polls come quickly (a fresh item usually arrives within
//! microseconds when the other side is busy), then, for a couple of
//! milliseconds (about the time the other side needs to publish with two
//! cache flushes), every 50 µs, so a waiter notices an item soon after it
//! is published; after that the sleeps double up to a cap, so an idle
//! waiter costs a few hundred cheap reads a second rather than a core.
//! Where the device wakes waiters on this host's writes, the hot phase is
//! skipped and the cap is longer (see
//! [`Options::max_backoff_notified`](crate::Options::max_backoff_notified)):
//! the polls are then only for writers on other hosts.

use std::time::{Duration, Instant};

/// Doubling sleeps from 1 µs to a cap, with a "hot" phase of short sleeps
/// first, and an optional deadline.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
    deadline: Option<Instant>,
    hot_until: Instant,
}

impl Backoff {
    const FIRST: Duration = Duration::from_micros(1);
    /// Below this, yield the CPU instead of sleeping: a sleep's timer slack
    /// is larger than the wait itself.
    const SPIN: Duration = Duration::from_micros(20);
    /// How long to keep polling often after a start or a reset.
    const HOT: Duration = Duration::from_millis(2);
    /// The longest sleep while hot.
    const HOT_STEP: Duration = Duration::from_micros(50);

    /// Sleeps capped at `max`; give up after `timeout` (never when `None`).
    pub fn new(max: Duration, timeout: Option<Duration>) -> Backoff {
        let now = Instant::now();
        Backoff {
            next: Self::FIRST,
            max: max.max(Self::FIRST),
            deadline: timeout.map(|t| now + t),
            hot_until: now + Self::HOT,
        }
    }

    /// Waits before the next poll. Returns false, without waiting, once the
    /// deadline has passed.
    pub fn wait(&mut self) -> bool {
        self.wait_with(|pause| {
            std::thread::sleep(pause);
            false
        })
    }

    /// Like [`wait`](Self::wait), but sleeps with `sleep(pause)`, which may
    /// return early (and true) when it learns of a change, such as
    /// [`BlockDevice::wait_for_change`](crate::BlockDevice::wait_for_change).
    /// An early wake keeps the sleeps short: the other side is active.
    pub fn wait_with(&mut self, sleep: impl FnOnce(Duration) -> bool) -> bool {
        let now = Instant::now();
        let mut pause = self.next;
        if now < self.hot_until {
            pause = pause.min(Self::HOT_STEP);
        }
        if let Some(deadline) = self.deadline {
            if now >= deadline {
                return false;
            }
            pause = pause.min(deadline - now);
        }
        if pause < Self::SPIN {
            std::thread::yield_now();
        } else if sleep(pause) {
            self.reset();
            return true;
        }
        self.next = (self.next * 2).min(self.max);
        true
    }

    /// Skips the phase of frequent polls: for a waiter that is woken by
    /// change notifications ([`BlockDevice::notifies_changes`](crate::BlockDevice::notifies_changes)).
    pub fn without_hot_phase(mut self) -> Backoff {
        self.hot_until = Instant::now();
        self.next = Self::HOT_STEP;
        self
    }

    /// Caps the sleeps at `max` (the async handles, which give way to
    /// other operations after each sleep, keep the shorter cap).
    #[cfg(feature = "tokio")]
    pub(crate) fn capped(mut self, max: Duration) -> Backoff {
        self.max = self.max.min(max.max(Self::FIRST));
        self.next = self.next.min(self.max);
        self
    }

    /// Starts again from the shortest wait (after progress).
    pub fn reset(&mut self) {
        self.next = Self::FIRST;
        self.hot_until = Instant::now() + Self::HOT;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pauses `b` asks for, without sleeping (pauses too short to
    /// sleep are yields and are not recorded).
    fn pauses(b: &mut Backoff, n: usize) -> Vec<Duration> {
        let mut seen = Vec::new();
        for _ in 0..n {
            b.wait_with(|p| {
                seen.push(p);
                false
            });
        }
        seen
    }

    #[test]
    fn the_hot_phase_polls_every_50_us_at_most() {
        let mut b = Backoff::new(Duration::from_millis(4), None);
        // The hot phase lasts 2 ms of real time; a loaded machine can take
        // longer than that for these 20 calls (scripts/stress.sh --busy
        // failed it 4 times in 4), so stretch it: the test is about the
        // pauses inside the phase, not its length.
        b.hot_until = Instant::now() + Duration::from_secs(3600);
        let p = pauses(&mut b, 20);
        // 1, 2, 4, 8 and 16 µs are yields; then 32 µs, then 50 µs steps.
        assert_eq!(p.len(), 15);
        assert_eq!(p[0], Duration::from_micros(32));
        assert!(p[1..].iter().all(|&d| d == Backoff::HOT_STEP), "{p:?}");
    }

    #[test]
    fn after_the_hot_phase_sleeps_double_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(2), None).without_hot_phase();
        let p: Vec<u64> = pauses(&mut b, 9)
            .iter()
            .map(|d| d.as_micros() as u64)
            .collect();
        assert_eq!(p, vec![50, 100, 200, 400, 800, 1600, 2000, 2000, 2000]);
    }

    #[test]
    fn an_early_wake_starts_over_with_short_sleeps() {
        let mut b = Backoff::new(Duration::from_millis(2), None).without_hot_phase();
        pauses(&mut b, 6);
        assert!(b.wait_with(|_| true));
        assert_eq!(b.next, Backoff::FIRST);
    }

    #[cfg(feature = "tokio")]
    #[test]
    fn a_capped_backoff_never_sleeps_longer_than_its_cap() {
        let mut b = Backoff::new(Duration::from_millis(20), None)
            .without_hot_phase()
            .capped(Duration::from_micros(300));
        let p: Vec<u64> = pauses(&mut b, 6)
            .iter()
            .map(|d| d.as_micros() as u64)
            .collect();
        assert_eq!(p, vec![50, 100, 200, 300, 300, 300]);
        // A larger cap than the backoff's own changes nothing.
        let mut b = Backoff::new(Duration::from_micros(200), None)
            .without_hot_phase()
            .capped(Duration::from_millis(20));
        assert_eq!(
            *pauses(&mut b, 5).last().unwrap(),
            Duration::from_micros(200)
        );
    }

    #[test]
    fn gives_up_at_the_deadline() {
        let mut b = Backoff::new(Duration::from_millis(2), Some(Duration::from_millis(30)));
        let start = Instant::now();
        let mut polls = 0;
        while b.wait() {
            polls += 1;
            assert!(polls < 10_000);
        }
        assert!(start.elapsed() >= Duration::from_millis(30));
        // Once past the deadline it says so without waiting again.
        let again = Instant::now();
        assert!(!b.wait());
        assert!(again.elapsed() < Duration::from_millis(30));
    }
}
