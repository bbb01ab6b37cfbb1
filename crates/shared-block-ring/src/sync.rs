//! The thread primitives of the journal, swappable for a model checker.
//!
//! Normal builds use `std`: these are thin wrappers that add nothing but
//! poison handling and deadline-based waits. With the `shuttle` feature
//! (for `tests/journal_model.rs` only) the same API runs on the `shuttle`
//! crate's controlled scheduler, which explores thread interleavings and
//! reports a deadlock when every thread waits for a notification that can
//! no longer come: exactly the lost wake-up that made the journal hang.
//!
//! Shuttle's own `Condvar::wait_timeout` never times out, which would turn
//! every timer the journal relies on (the idle release, the retry interval,
//! the group-commit gather) into a false deadlock. So under the model, time
//! is virtual: [`now`] reads a clock that moves only when a timed wait
//! times out, and each timed wait starts a timer thread that, when the
//! scheduler runs it, takes the waiter's mutex, moves the clock to the
//! deadline and wakes the condition variable. The scheduler thus explores
//! the timeout firing before, during and after every other event, and a
//! wait with a deadline can never be reported as a deadlock, while a wait
//! without one that nobody wakes always is.
//!
//! A build with the feature must run journals only inside a shuttle test.

use std::sync::PoisonError;
use std::time::Instant;

#[cfg(not(feature = "shuttle"))]
mod imp {
    use super::*;

    /// A mutex whose poisoning is ignored (see [`Mutex::lock`]).
    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T>(std::sync::Mutex<T>);

    pub(crate) type MutexGuard<'a, T> = std::sync::MutexGuard<'a, T>;

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Mutex<T> {
            Mutex(std::sync::Mutex::new(value))
        }

        /// Locks. A panic while the lock was held (there is no such path
        /// outside a bug) leaves counters, not half-written data: go on.
        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }

    #[derive(Debug, Default)]
    pub(crate) struct Condvar(std::sync::Condvar);

    impl Condvar {
        pub(crate) fn new() -> Condvar {
            Condvar(std::sync::Condvar::new())
        }

        /// Waits for a notification (or a spurious wake-up).
        pub(crate) fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
            self.0.wait(guard).unwrap_or_else(PoisonError::into_inner)
        }

        /// Waits for a notification, or until `deadline`. `mutex` is the
        /// one `guard` locks (the model's timer needs it).
        pub(crate) fn wait_until<'a, T: Send + 'static>(
            &self,
            _mutex: &'a Mutex<T>,
            guard: MutexGuard<'a, T>,
            deadline: Instant,
        ) -> MutexGuard<'a, T> {
            let timeout = deadline.saturating_duration_since(Instant::now());
            self.0
                .wait_timeout(guard, timeout)
                .unwrap_or_else(PoisonError::into_inner)
                .0
        }

        pub(crate) fn notify_one(&self) {
            self.0.notify_one();
        }

        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }

    pub(crate) use std::thread;

    /// The current time.
    pub(crate) fn now() -> Instant {
        Instant::now()
    }
}

#[cfg(feature = "shuttle")]
mod imp {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    /// A shuttle mutex behind an `Arc`, so a timer thread can hold it.
    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T>(Arc<shuttle::sync::Mutex<T>>);

    pub(crate) type MutexGuard<'a, T> = shuttle::sync::MutexGuard<'a, T>;

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Mutex<T> {
            Mutex(Arc::new(shuttle::sync::Mutex::new(value)))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }

    #[derive(Debug, Default)]
    pub(crate) struct Condvar(Arc<shuttle::sync::Condvar>);

    impl Condvar {
        pub(crate) fn new() -> Condvar {
            Condvar(Arc::new(shuttle::sync::Condvar::new()))
        }

        pub(crate) fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
            self.0.wait(guard).unwrap_or_else(PoisonError::into_inner)
        }

        /// Waits for a notification, or for a timer thread that moves the
        /// virtual clock to `deadline`. The timer takes `mutex` first, so
        /// it cannot fire between our decision to wait and the wait itself.
        pub(crate) fn wait_until<'a, T: Send + 'static>(
            &self,
            mutex: &'a Mutex<T>,
            guard: MutexGuard<'a, T>,
            deadline: Instant,
        ) -> MutexGuard<'a, T> {
            if now() >= deadline {
                return guard;
            }
            if beyond_horizon(deadline) {
                // A model that must make progress by notifications alone.
                return self.wait(guard);
            }
            let (lock, cv) = (Arc::clone(&mutex.0), Arc::clone(&self.0));
            shuttle::thread::spawn(move || {
                let _held = lock.lock().unwrap_or_else(PoisonError::into_inner);
                advance_to(deadline);
                cv.notify_all();
            });
            self.wait(guard)
        }

        pub(crate) fn notify_one(&self) {
            self.0.notify_one();
        }

        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }

    pub(crate) use shuttle::thread;

    std::thread_local! {
        /// The start of the virtual clock and how far it has moved. Shuttle
        /// runs every thread of an execution on the test's own OS thread,
        /// so this is one clock per model test, shared by its threads.
        static CLOCK: std::cell::Cell<Option<(Instant, Duration)>> =
            const { std::cell::Cell::new(None) };
    }

    std::thread_local! {
        /// Timers further ahead than this never fire (see `set_horizon`).
        static HORIZON: std::cell::Cell<Option<Duration>> = const { std::cell::Cell::new(None) };
    }

    fn beyond_horizon(deadline: Instant) -> bool {
        HORIZON
            .with(|h| h.get())
            .is_some_and(|h| deadline > now() + h)
    }

    /// From now on in this execution, a timed wait whose deadline is more
    /// than `horizon` ahead waits for a notification only: a model of a
    /// journal whose long timers (a minute's flush interval) must never be
    /// what makes it progress. A wake-up lost behind such a timer is then
    /// a deadlock.
    pub fn set_horizon(horizon: Duration) {
        HORIZON.with(|h| h.set(Some(horizon)));
    }

    fn clock() -> (Instant, Duration) {
        CLOCK.with(|c| {
            let v = c.get().unwrap_or((Instant::now(), Duration::ZERO));
            c.set(Some(v));
            v
        })
    }

    /// The virtual time.
    pub(crate) fn now() -> Instant {
        let (base, elapsed) = clock();
        base + elapsed
    }

    fn advance_to(deadline: Instant) {
        let (base, elapsed) = clock();
        let at = deadline.saturating_duration_since(base).max(elapsed);
        CLOCK.with(|c| c.set(Some((base, at))));
    }

    /// Starts the virtual clock afresh; call at the start of each
    /// execution of a model.
    pub fn reset_clock() {
        CLOCK.with(|c| c.set(None));
        HORIZON.with(|h| h.set(None));
    }

    /// How far the virtual clock has moved in this execution.
    pub fn elapsed() -> Duration {
        clock().1
    }
}

pub(crate) use imp::{now, thread, Condvar, Mutex, MutexGuard};

/// The model's virtual clock, for `tests/journal_model.rs`.
#[cfg(feature = "shuttle")]
#[doc(hidden)]
pub mod model_clock {
    pub use super::imp::{elapsed, reset_clock, set_horizon};
}
