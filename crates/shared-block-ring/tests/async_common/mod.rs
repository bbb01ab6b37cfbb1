//! Helpers shared by the async tests: deadlines, both runtime flavours,
//! and dropping a future after a given number of polls.
#![allow(dead_code)]

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use tokio::time::timeout;

/// The longest any single wait in these tests may take.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Awaits `fut`, failing the test with `what` after [`DEADLINE`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match timeout(DEADLINE, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {DEADLINE:?} waiting for {what}"),
    }
}

/// Asserts that `fut` is still pending after `wait`, and drops it there.
pub async fn still_waiting<T: std::fmt::Debug>(
    what: &str,
    wait: Duration,
    fut: impl Future<Output = T>,
) {
    if let Ok(v) = timeout(wait, fut).await {
        panic!("{what} returned {v:?} instead of waiting");
    }
}

/// Runs a whole scenario with a deadline, so that even a wait the scenario
/// does not bound (a lock of the handle) cannot hang the test.
pub async fn scenario(name: &str, fut: impl Future<Output = ()>) {
    if timeout(3 * DEADLINE, fut).await.is_err() {
        panic!(
            "the scenario {name} did not finish within {:?}",
            3 * DEADLINE
        );
    }
}

/// Polls `fut` `polls` times, `gap` apart (letting its blocking task run),
/// then drops it unless it finished.
pub async fn drop_after<F: Future>(fut: F, polls: usize, gap: Duration) -> Option<F::Output> {
    let mut fut = pin!(fut);
    for _ in 0..polls {
        if let Poll::Ready(v) = poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await {
            return Some(v);
        }
        if gap.is_zero() {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(gap).await;
        }
    }
    None
}

/// Runs each scenario (an `async fn` of the test crate's root) on both
/// runtime flavours, as tests `NAME::current_thread` and
/// `NAME::multi_thread`.
macro_rules! on_both_runtimes {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "current_thread")]
            async fn current_thread() {
                $crate::async_common::scenario(stringify!($name), super::$name()).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn multi_thread() {
                $crate::async_common::scenario(stringify!($name), super::$name()).await
            }
        }
    )*};
}
