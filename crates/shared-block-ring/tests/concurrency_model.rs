//! Every place where threads of this library wait on each other, under
//! the shuttle model checker: the journal's pushers, group-commit leader,
//! waiters and worker; and a producer and a consumer that wait for each
//! other through the device's change notifications.
//!
//! Built only with the `shuttle` feature, which swaps the journal's
//! mutexes, condition variables, threads and clock for shuttle's (see
//! `src/sync.rs`): `cargo test -p shared-block-ring --features shuttle
//! --test concurrency_model -- --nocapture` (the README's test command
//! runs it). Shuttle runs each scenario many times, each time with another
//! interleaving of the threads (random schedules, and PCT schedules that
//! target bugs needing a few preemptions at the right places), and fails
//! on any deadlock (every thread waiting for a wake-up that cannot come),
//! panic or failed assertion. Timed waits cannot deadlock: their timeout
//! fires at a point the scheduler chooses (virtual time).
//!
//! Each scenario prints how many schedules it explored; together at least
//! [`MIN_SCHEDULES`].
#![cfg(feature = "shuttle")]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shuttle::sync::{Condvar, Mutex};
use shuttle::thread;

use shared_block_ring::model_clock;
use shared_block_ring::{
    create, BlockDevice, Consumer, Error, Journal, JournalOptions, MemDevice, Options, Producer,
    Side,
};

/// Schedules explored per scenario and scheduler (random, then PCT).
const RANDOM: usize = 3000;
const PCT: usize = 2000;
/// The floor the issue sets for one run across all scenarios.
const MIN_SCHEDULES: u64 = 10_000;

static EXPLORED: AtomicU64 = AtomicU64::new(0);

/// Explores `scenario` with both schedulers and prints the count.
fn explore(name: &str, scenario: impl Fn() + Send + Sync + 'static) {
    let count = Arc::new(AtomicU64::new(0));
    let scenario = Arc::new(scenario);
    let run = {
        let (count, scenario) = (count.clone(), scenario.clone());
        move || {
            model_clock::reset_clock();
            count.fetch_add(1, Ordering::Relaxed);
            scenario();
        }
    };
    shuttle::check_random(run.clone(), RANDOM);
    shuttle::check_pct(run, PCT, 3);
    let n = count.load(Ordering::Relaxed);
    EXPLORED.fetch_add(n, Ordering::Relaxed);
    println!("concurrency model: {name}: {n} schedules explored, 0 deadlocks, 0 failed assertions");
    assert!(n >= (RANDOM + PCT) as u64);
}

/// Operation `i` of thread `t`: two bytes, so the ring fills in a few.
fn op(t: u8, i: u8) -> Vec<u8> {
    vec![t, i]
}

type Log = Arc<Mutex<Vec<Vec<u8>>>>;

#[allow(clippy::type_complexity)]
/// A `perform` that records what it is given, failing the first
/// `failures` calls.
fn recorder(
    failures: u32,
) -> (
    Log,
    impl FnMut(&[Vec<u8>]) -> Result<(), String> + Send + 'static,
) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    let mut left = failures;
    (log, move |ops: &[Vec<u8>]| {
        if left > 0 {
            left -= 1;
            return Err("injected failure".into());
        }
        sink.lock().unwrap().extend_from_slice(ops);
        Ok(())
    })
}

fn options() -> JournalOptions {
    JournalOptions::new().retry_interval(Duration::from_millis(5))
}

/// Options under which only a waiter, a full ring or shutdown can start a
/// batch: the flush interval is a minute, and timers further than a second
/// ahead never fire in the model. A lost wake-up is then a deadlock.
fn notified_only() -> JournalOptions {
    model_clock::set_horizon(Duration::from_secs(1));
    options().flush_interval(Duration::from_secs(60))
}

/// Every operation a thread pushed with success is in `log`, and each
/// thread's operations come in the order it pushed them.
fn check_order(log: &[Vec<u8>], acked: &[Vec<Vec<u8>>]) {
    for ops in acked {
        let positions: Vec<usize> = ops
            .iter()
            .map(|op| {
                log.iter()
                    .position(|l| l == op)
                    .unwrap_or_else(|| panic!("acknowledged {op:?} never performed: {log:?}"))
            })
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "a thread's operations out of order: {log:?}"
        );
    }
}

/// Two threads push concurrently (group commit, the leader hand-over) and
/// wait for their last operation (`Waiter::sync`).
fn concurrent_pushers_and_waiters() {
    explore("two pushers, sync", || {
        let disk = MemDevice::new(512, 16);
        let (log, perform) = recorder(0);
        let journal = Arc::new(Journal::start(disk, notified_only(), perform).unwrap());
        let threads: Vec<_> = (0..2u8)
            .map(|t| {
                let journal = journal.clone();
                thread::spawn(move || {
                    let mut waiter = None;
                    for i in 0..2 {
                        waiter = Some(journal.push(&op(t, i)).unwrap());
                    }
                    waiter.unwrap().sync().unwrap();
                    vec![op(t, 0), op(t, 1)]
                })
            })
            .collect();
        let acked: Vec<_> = threads.into_iter().map(|h| h.join().unwrap()).collect();
        check_order(&log.lock().unwrap(), &acked);
        journal.shutdown();
    });
}

/// A ring that holds three operations, two pushers of three each: leaders
/// wait for the worker to release space (the lost wake-up fixed in
/// `journal_deadlock.rs` is a deadlock here).
fn a_full_ring_waits_for_space() {
    explore("full ring", || {
        // 4 sectors: 1 data sector of 512 bytes; operations of 164 bytes
        // take 168: three fit.
        let disk = MemDevice::new(512, 4);
        let (log, perform) = recorder(0);
        let journal = Arc::new(Journal::start(disk, notified_only(), perform).unwrap());
        let big = |t: u8, i: u8| {
            let mut v = vec![t; 164];
            v[1] = i;
            v
        };
        let threads: Vec<_> = (0..2u8)
            .map(|t| {
                let journal = journal.clone();
                thread::spawn(move || {
                    let mut last = None;
                    for i in 0..3 {
                        last = Some(journal.push(&big(t, i)).unwrap());
                    }
                    last.unwrap().sync().unwrap();
                    (0..3).map(|i| big(t, i)).collect::<Vec<_>>()
                })
            })
            .collect();
        let acked: Vec<_> = threads.into_iter().map(|h| h.join().unwrap()).collect();
        check_order(&log.lock().unwrap(), &acked);
        journal.shutdown();
    });
}

/// `perform` fails twice; the batch is retried, never skipped, and the
/// waiter returns once it succeeded.
fn a_failing_perform_is_retried() {
    explore("failing perform", || {
        let disk = MemDevice::new(512, 16);
        let (log, perform) = recorder(2);
        let journal = Arc::new(Journal::start(disk, options(), perform).unwrap());
        let other = {
            let journal = journal.clone();
            thread::spawn(move || journal.push(&op(1, 0)).unwrap().sync().unwrap())
        };
        journal.push(&op(0, 0)).unwrap().sync().unwrap();
        other.join().unwrap();
        let log = log.lock().unwrap();
        assert_eq!(log.len(), 2, "{log:?}");
        assert!(journal.stats().retried >= 2);
        drop(log);
        journal.shutdown();
    });
}

/// `shutdown` from another thread while pushers push (one of them into a
/// full ring) and wait: every call returns, with `Ok` or `ShutDown`, and
/// whatever was acknowledged is performed, before the shutdown or by the
/// next start.
fn shutdown_from_another_thread_ends_every_wait() {
    explore("shutdown", || {
        let disk = MemDevice::new(512, 4);
        let (log, perform) = recorder(0);
        let journal = Arc::new(Journal::start(disk.clone(), options(), perform).unwrap());
        let big = |t: u8, i: u8| {
            let mut v = vec![t; 250];
            v[1] = i;
            v
        };
        let threads: Vec<_> = (0..2u8)
            .map(|t| {
                let journal = journal.clone();
                thread::spawn(move || {
                    let mut acked = Vec::new();
                    for i in 0..2 {
                        match journal.push(&big(t, i)) {
                            Ok(w) => {
                                acked.push(big(t, i));
                                match w.sync() {
                                    Ok(()) | Err(Error::ShutDown) => {}
                                    Err(e) => panic!("sync: {e}"),
                                }
                            }
                            Err(Error::ShutDown) => break,
                            Err(e) => panic!("push: {e}"),
                        }
                    }
                    acked
                })
            })
            .collect();
        let stopper = {
            let journal = journal.clone();
            thread::spawn(move || journal.shutdown())
        };
        let acked: Vec<_> = threads.into_iter().map(|h| h.join().unwrap()).collect();
        stopper.join().unwrap();
        // What the first journal did not perform, the next one does.
        let (replayed, perform) = recorder(0);
        let again = Journal::start(disk, options(), perform).unwrap();
        let mut all = log.lock().unwrap().clone();
        all.extend(replayed.lock().unwrap().iter().cloned());
        check_order(&all, &acked);
        again.shutdown();
    });
}

/// A device with the wake-up semantics of `FileDevice` on one host
/// (inotify): every write queues a change event for every handle's watch;
/// `wait_for_change` returns true at once when events are queued (and
/// drains them), and on its first call (the watch did not exist before,
/// so the caller must look again); otherwise it waits for the next event.
/// Unlike the real device it never times out: the waits of a producer and
/// a consumer must be ended by the other side's writes alone, or shuttle
/// reports a deadlock. Data lives under a shuttle mutex, so every device
/// operation is a point where the scheduler may switch threads.
struct Notifying {
    shared: Arc<(Mutex<Shared>, Condvar)>,
    /// Events this handle's watch has drained; `None` before its first wait.
    seen: Mutex<Option<u64>>,
}

struct Shared {
    bytes: Vec<u8>,
    writes: u64,
    locks: [bool; 2],
}

const SS: usize = 512;

impl Notifying {
    fn new(sectors: usize) -> Notifying {
        let shared = Shared {
            bytes: vec![0; SS * sectors],
            writes: 0,
            locks: [false; 2],
        };
        Notifying {
            shared: Arc::new((Mutex::new(shared), Condvar::new())),
            seen: Mutex::new(None),
        }
    }

    /// Another handle on the same device, with its own watch.
    fn handle(&self) -> Notifying {
        Notifying {
            shared: self.shared.clone(),
            seen: Mutex::new(None),
        }
    }
}

impl BlockDevice for Notifying {
    fn sector_size(&self) -> usize {
        SS
    }
    fn sectors(&self) -> u64 {
        (self.shared.0.lock().unwrap().bytes.len() / SS) as u64
    }
    fn read(&self, sector: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let at = sector as usize * SS;
        buf.copy_from_slice(&self.shared.0.lock().unwrap().bytes[at..at + buf.len()]);
        Ok(())
    }
    fn write(&self, sector: u64, buf: &[u8]) -> std::io::Result<()> {
        let at = sector as usize * SS;
        let mut sh = self.shared.0.lock().unwrap();
        sh.bytes[at..at + buf.len()].copy_from_slice(buf);
        sh.writes += 1;
        self.shared.1.notify_all();
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn wait_for_change(&self, _timeout: Duration) -> bool {
        let mut seen = self.seen.lock().unwrap();
        let mut sh = self.shared.0.lock().unwrap();
        let Some(drained) = *seen else {
            *seen = Some(sh.writes);
            return true;
        };
        while sh.writes == drained {
            sh = self.shared.1.wait(sh).unwrap();
        }
        *seen = Some(sh.writes);
        true
    }
    fn notifies_changes(&self) -> bool {
        true
    }
    fn try_lock(&self, side: Side) -> std::io::Result<Result<(), String>> {
        let mut sh = self.shared.0.lock().unwrap();
        let slot = &mut sh.locks[side as usize];
        Ok(if std::mem::replace(slot, true) {
            Err(format!("{side} taken"))
        } else {
            Ok(())
        })
    }
    fn unlock(&self, side: Side) {
        self.shared.0.lock().unwrap().locks[side as usize] = false;
    }
}

/// A producer that waits for space (`push_wait`) and a consumer that waits
/// for items (`pop_wait`), on a ring that holds two items, with no timeout
/// on either side: each is woken only by the other's writes. Every item
/// arrives once, in order.
fn producer_and_consumer_wake_each_other() {
    explore("producer and consumer wake-ups", || {
        let disk = Notifying::new(4);
        create(&disk).unwrap();
        let item = |i: u8| vec![i; 200];
        let producer = {
            let disk = disk.handle();
            thread::spawn(move || {
                let mut p = Producer::attach(disk, Options::new()).unwrap();
                for i in 0..4 {
                    let end = p.push_wait(&item(i), None).unwrap();
                    p.advance(end).unwrap();
                }
            })
        };
        let mut c = Consumer::attach(disk.handle(), Options::new()).unwrap();
        for i in 0..4 {
            let (next, got) = c.pop_wait(None).unwrap();
            assert_eq!(got, item(i));
            c.advance(next).unwrap();
        }
        producer.join().unwrap();
    });
}

/// Every scenario, one after the other, and the total.
#[test]
fn no_deadlock_no_lost_wake_up_no_lost_operation() {
    concurrent_pushers_and_waiters();
    a_full_ring_waits_for_space();
    a_failing_perform_is_retried();
    shutdown_from_another_thread_ends_every_wait();
    producer_and_consumer_wake_each_other();
    let n = EXPLORED.load(Ordering::Relaxed);
    println!("concurrency model: {n} schedules explored in all, 0 deadlocks, 0 failed assertions");
    assert!(
        n >= MIN_SCHEDULES,
        "{n} schedules, fewer than {MIN_SCHEDULES}"
    );
}
