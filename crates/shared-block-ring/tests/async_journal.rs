//! The journal from async code (feature `tokio`): `AsyncJournal::push`
//! resolves once the operation is stored, `Waiter::performed` once it is
//! performed, woken by the worker without holding a thread; shutdown and
//! dropped futures. Every wait has a deadline.
#![cfg(feature = "tokio")]

#[macro_use]
mod async_common;

use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shared_block_ring::{AsyncJournal, Durability, Error, JournalOptions, MemDevice};
use tokio::time::timeout;

use async_common::{drop_after, within};

/// Between two polls of a future that the test drops.
const GAP: Duration = Duration::from_micros(200);

on_both_runtimes!(
    push_resolves_when_stored_and_performed_when_performed,
    concurrent_pushers_are_performed_in_ring_order,
    a_waiter_resolves_with_shutdown_when_the_journal_stops_first,
    dropped_futures_lose_no_stored_operation,
);

fn options() -> JournalOptions {
    JournalOptions::new().durability(Durability::ProcessCrash)
}

/// A `perform` that records the operations, and the record.
#[allow(clippy::type_complexity)]
fn recorder() -> (
    Arc<Mutex<Vec<Vec<u8>>>>,
    impl FnMut(&[Vec<u8>]) -> Result<(), String> + Send + 'static,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    (seen, move |ops: &[Vec<u8>]| {
        sink.lock().unwrap().extend_from_slice(ops);
        Ok(())
    })
}

async fn push_resolves_when_stored_and_performed_when_performed() {
    let (seen, perform) = recorder();
    // Batches wait a minute unless someone waits for one.
    let options = options().flush_interval(Duration::from_secs(60));
    let journal = AsyncJournal::start(MemDevice::new(512, 64), options, perform)
        .await
        .unwrap();
    let waiter = within("push", journal.push(b"op")).await.unwrap();
    assert_eq!(journal.journal().stats().pushed, 1);
    assert!(!waiter.is_performed());
    assert!(seen.lock().unwrap().is_empty());
    within("performed", waiter.performed()).await.unwrap();
    assert!(waiter.is_performed());
    assert_eq!(*seen.lock().unwrap(), [b"op".to_vec()]);
    // Already performed: ready at once, again.
    within("performed again", waiter.performed()).await.unwrap();
    journal.shutdown().await;
    assert!(matches!(journal.push(b"late").await, Err(Error::ShutDown)));
}

async fn concurrent_pushers_are_performed_in_ring_order() {
    let (seen, perform) = recorder();
    // A small ring: pushers wait for the worker to make space.
    let journal = Arc::new(
        AsyncJournal::start(MemDevice::new(512, 8), options(), perform)
            .await
            .unwrap(),
    );
    let mut tasks = Vec::new();
    for t in 0..8u8 {
        let journal = journal.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in 0..25u8 {
                let op = vec![t, i];
                let waiter = journal.push(&op).await.unwrap();
                if i % 5 == 4 {
                    waiter.performed().await.unwrap();
                    assert!(waiter.is_performed());
                }
                mine.push((waiter.sequence(), op));
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(within("a pushing task", task).await.unwrap());
    }
    all.sort();
    let (last_seq, _) = all[all.len() - 1].clone();
    assert_eq!(last_seq, 200);
    let last = journal.push(b"end").await.unwrap();
    within("the last operation", last.performed())
        .await
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    let expected: Vec<Vec<u8>> = all
        .into_iter()
        .map(|(_, op)| op)
        .chain([b"end".to_vec()])
        .collect();
    assert_eq!(seen, expected, "performed in sequence order");
}

#[tokio::test(flavor = "current_thread")]
async fn waiting_for_performed_leaves_the_runtime_thread_free() {
    let perform = |_: &[Vec<u8>]| {
        // Slow work, on the journal's worker thread.
        std::thread::sleep(Duration::from_millis(300));
        Ok::<(), String>(())
    };
    let journal = AsyncJournal::start(MemDevice::new(512, 64), options(), perform)
        .await
        .unwrap();
    let waiter = journal.push(b"slow").await.unwrap();
    let ticks = Arc::new(AtomicU64::new(0));
    let counter = ticks.clone();
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(5)).await;
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    within("performed", waiter.performed()).await.unwrap();
    ticker.abort();
    // The only runtime thread went on running the ticker meanwhile.
    let n = ticks.load(Ordering::Relaxed);
    assert!(n >= 10, "the runtime thread ran {n} ticks in 300 ms");
}

async fn a_waiter_resolves_with_shutdown_when_the_journal_stops_first() {
    let options = options().retry_interval(Duration::from_secs(60));
    let journal = AsyncJournal::start(MemDevice::new(512, 64), options, |_: &[Vec<u8>]| {
        Err::<(), _>("always fails")
    })
    .await
    .unwrap();
    let waiter = journal.push(b"never").await.unwrap();
    let mut performed = pin!(waiter.performed());
    assert!(
        timeout(Duration::from_millis(100), performed.as_mut())
            .await
            .is_err(),
        "an operation whose perform fails was reported performed"
    );
    let (result, ()) = within("performed after shutdown", async {
        tokio::join!(performed, journal.shutdown())
    })
    .await;
    assert!(matches!(result, Err(Error::ShutDown)), "{result:?}");
    assert!(!waiter.is_performed());
}

async fn dropped_futures_lose_no_stored_operation() {
    let (seen, perform) = recorder();
    let journal = AsyncJournal::start(MemDevice::new(512, 64), options(), perform)
        .await
        .unwrap();
    let mut acknowledged = Vec::new();
    for n in 0..40u8 {
        let polls = n as usize % 5;
        // A dropped push: stored whole, or not at all.
        let before = journal.journal().stats().pushed;
        let done = drop_after(journal.push(&[n]), polls, GAP).await;
        if polls == 0 {
            assert!(done.is_none());
        }
        if let Some(waiter) = done {
            let waiter = waiter.unwrap();
            acknowledged.push(waiter.sequence());
            // A dropped wait changes nothing.
            let _ = drop_after(waiter.performed(), polls, GAP).await;
        }
        let after = journal.journal().stats().pushed;
        assert!(after == before || after == before + 1);
    }
    let last = journal.push(b"last").await.unwrap();
    within("the last operation", last.performed())
        .await
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    let stats = journal.journal().stats();
    // Every operation stored was performed once, in order; and every push
    // that returned was among them.
    assert_eq!(seen.len() as u64, stats.pushed);
    assert_eq!(stats.performed, stats.pushed);
    let numbers: Vec<u8> = seen[..seen.len() - 1].iter().map(|op| op[0]).collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
    assert!(acknowledged.iter().all(|&s| s <= stats.pushed));
    journal.shutdown().await;
}
