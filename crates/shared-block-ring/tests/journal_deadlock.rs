//! Regression test for a lost wake-up in the journal: a push waiting for
//! space must notice a release that happened while it was re-reading the
//! consumer's position.
//!
//! The bug: a committing pusher that found the ring full dropped the
//! journal's lock to read the consumer sector (`Producer::state`), then
//! took the lock again and started waiting for the *next* release. If the
//! worker wrote its release after that read but before the lock was taken
//! again, the pusher's view of the free space was stale and the release it
//! waited for never came: the worker had nothing left to release, so both
//! slept for ever. `journal_crash` hung in 2 of 3 runs on a 2-core machine.
//!
//! This test stages exactly that window with a device that holds the
//! pusher's read of the consumer sector until the worker's release has
//! been written. Before the fix it failed (the push did not return within
//! its deadline) in 20 of 20 runs; after it, 0 of 200.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use shared_block_ring::layout::CONSUMER_SECTOR;
use shared_block_ring::{BlockDevice, Journal, JournalOptions, MemDevice, Side};

/// A memory device whose next read of the consumer sector, once armed,
/// returns what it read only after someone has written that sector (and a
/// little longer, so the writer finishes its bookkeeping).
#[derive(Clone)]
struct HoldConsumerRead {
    inner: MemDevice,
    armed: Arc<AtomicBool>,
    /// Writes of the consumer sector so far.
    writes: Arc<(Mutex<u64>, Condvar)>,
    /// Tells the test that the held read has begun.
    held: Arc<Mutex<Option<mpsc::Sender<()>>>>,
}

impl BlockDevice for HoldConsumerRead {
    fn sector_size(&self) -> usize {
        self.inner.sector_size()
    }
    fn sectors(&self) -> u64 {
        self.inner.sectors()
    }
    fn read(&self, sector: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.inner.read(sector, buf)?;
        if sector == CONSUMER_SECTOR && self.armed.swap(false, Ordering::SeqCst) {
            let (count, changed) = &*self.writes;
            let mut n = count.lock().unwrap();
            let before = *n;
            if let Some(tx) = self.held.lock().unwrap().take() {
                let _ = tx.send(());
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while *n == before && Instant::now() < deadline {
                n = changed
                    .wait_timeout(n, deadline - Instant::now())
                    .unwrap()
                    .0;
            }
            drop(n);
            // The worker counts its release right after the write returns.
            thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }
    fn write(&self, sector: u64, buf: &[u8]) -> std::io::Result<()> {
        self.inner.write(sector, buf)?;
        if sector == CONSUMER_SECTOR {
            let (count, changed) = &*self.writes;
            *count.lock().unwrap() += 1;
            changed.notify_all();
        }
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        self.inner.flush()
    }
    fn try_lock(&self, side: Side) -> std::io::Result<Result<(), String>> {
        self.inner.try_lock(side)
    }
    fn unlock(&self, side: Side) {
        self.inner.unlock(side)
    }
}

/// An operation that takes exactly one 512-byte sector of the ring.
fn op(i: u8) -> Vec<u8> {
    vec![i; 508]
}

#[test]
fn a_push_waiting_for_space_sees_a_release_made_while_it_looked_at_the_consumer() {
    // 8 sectors: 5 data sectors, room for exactly five operations.
    let dev = HoldConsumerRead {
        inner: MemDevice::new(512, 8),
        armed: Arc::new(AtomicBool::new(false)),
        writes: Arc::new((Mutex::new(0), Condvar::new())),
        held: Arc::new(Mutex::new(None)),
    };
    // The first batch blocks in `perform` until the test opens the gate.
    let (entered_tx, entered) = mpsc::channel::<()>();
    let (gate, gate_rx) = mpsc::channel::<()>();
    let mut first = true;
    let journal = Journal::start(dev.clone(), JournalOptions::new(), move |_ops| {
        if std::mem::take(&mut first) {
            let _ = entered_tx.send(());
            gate_rx
                .recv_timeout(Duration::from_secs(10))
                .map_err(|e| format!("the test never opened the gate: {e}"))?;
        }
        Ok::<(), String>(())
    })
    .unwrap();
    let journal = Arc::new(journal);

    journal.push(&op(1)).unwrap();
    entered
        .recv_timeout(Duration::from_secs(10))
        .expect("the worker took the first operation");
    for i in 2..=5 {
        journal.push(&op(i)).unwrap();
    }
    assert_eq!(journal.stats().backlog_bytes, 5 * 512, "the ring is full");

    // The sixth push finds the ring full and looks at the consumer sector;
    // that read is held until the worker has released.
    let (held_tx, held) = mpsc::channel();
    *dev.held.lock().unwrap() = Some(held_tx);
    dev.armed.store(true, Ordering::SeqCst);
    let (done_tx, done) = mpsc::channel();
    let pusher = {
        let journal = journal.clone();
        thread::spawn(move || {
            let _ = done_tx.send(journal.push(&op(6)).map(|w| w.sequence()));
        })
    };
    held.recv_timeout(Duration::from_secs(10))
        .expect("the sixth push read the consumer sector");
    gate.send(()).unwrap();

    let outcome = done.recv_timeout(Duration::from_secs(10));
    // Whatever happened, free the pusher so the test ends.
    journal.shutdown();
    pusher.join().unwrap();
    match outcome {
        Ok(Ok(seq)) => assert_eq!(seq, 6),
        Ok(Err(e)) => panic!("the sixth push failed: {e}"),
        Err(_) => panic!(
            "the sixth push waited for space for 10 s after the worker had released it: \
             a lost wake-up between the journal's pusher and its worker"
        ),
    }
}
