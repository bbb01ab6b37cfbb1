//! The journal: performing, retrying, replaying at start, a full ring,
//! crashes (SIGKILL of a child process), the flush interval, group commit.

#[path = "journal/child.rs"]
mod child;
mod common;
#[path = "journal/devices.rs"]
mod devices;
#[path = "journal/recorder.rs"]
mod recorder;

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rand::Rng;
use serde::{Deserialize, Serialize};
use shared_block_ring::{
    create, format, Consumer, Error, FileDevice, Journal, JournalOptions, Json, MemDevice, Options,
    Producer, SignatureProblem,
};

use child::{crash_child, reap_within, split_id, stderr_of, ChildGuard, CHILD_RING, CHILD_THREADS};
use devices::{Failing, Flaky, SlowFlush};
use recorder::{le_u32, recorder};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Op {
    id: u32,
    volume: String,
}

#[test]
fn a_pushed_operation_is_performed_too_large_is_refused_and_shutdown_stops_pushes() {
    let disk = MemDevice::new(512, 16);
    let (seen, perform) = recorder::<Op>();
    let options = JournalOptions::new().name("volumes").client("test-1");
    let journal =
        Journal::start_with_codec(disk.clone(), Json::<Op>::new(), options, perform).unwrap();

    let first = Op {
        id: 1,
        volume: "vm1".into(),
    };
    let waiter = journal.push(&first).unwrap();
    assert_eq!(waiter.sequence(), 1);
    waiter.sync().unwrap();
    assert!(waiter.is_performed());
    assert_eq!(*seen.lock().unwrap(), std::slice::from_ref(&first));
    let stats = journal.stats();
    assert_eq!(
        (stats.pushed, stats.performed, stats.batches, stats.retried),
        (1, 1, 1, 0)
    );
    assert_eq!((stats.backlog_items, stats.backlog_bytes), (0, 0));
    assert_eq!(stats.last_error, None);

    // An operation larger than the whole ring can never fit: refused at
    // once, and the journal carries on.
    let capacity = journal.geometry().capacity() as usize;
    let huge = Op {
        id: 2,
        volume: "x".repeat(capacity),
    };
    let e = journal.push(&huge).unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains("too small"), "{e}");
    let second = Op {
        id: 3,
        volume: "vm2".into(),
    };
    journal.push(&second).unwrap().sync().unwrap();
    assert_eq!(*seen.lock().unwrap(), [first.clone(), second]);
    assert_eq!(journal.stats().pushed, 2);

    // The name and client are in the ring's state sectors.
    let bytes = disk.to_vec();
    let text = format::state_text(&bytes[512..1024]);
    let text = String::from_utf8_lossy(text);
    assert!(
        text.contains("volumes") && text.contains("test-1"),
        "{text}"
    );

    journal.shutdown();
    let e = journal.push(&first).unwrap_err();
    assert!(matches!(e, Error::ShutDown), "{e}");
    assert!(e.to_string().contains("shut down"), "{e}");
    journal.shutdown(); // again: nothing happens
    drop(journal);
    // Shutdown detached both roles: the ring can be attached again.
    Producer::attach(disk.clone(), Options::new()).unwrap();
    Consumer::attach(disk, Options::new()).unwrap();
}

#[test]
fn an_operation_not_performed_when_the_journal_is_dropped_ends_its_wait_and_is_replayed() {
    let disk = MemDevice::new(512, 16);
    let options = JournalOptions::new().flush_interval(Duration::from_secs(3600));
    let (seen, perform) = recorder::<Vec<u8>>();
    let journal = Journal::start(disk.clone(), options.clone(), perform).unwrap();
    let waiter = journal.push(b"later").unwrap();
    assert!(!waiter.is_performed());
    assert_eq!(journal.stats().backlog_items, 1);
    // Dropping the journal shuts it down (the waiter outlives it).
    drop(journal);
    let started = Instant::now();
    assert!(matches!(waiter.sync(), Err(Error::ShutDown)));
    assert!(matches!(
        waiter.sync_timeout(Duration::from_secs(10)),
        Err(Error::ShutDown)
    ));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(seen.lock().unwrap().is_empty());

    let (seen, perform) = recorder::<Vec<u8>>();
    let journal = Journal::start(disk, options, perform).unwrap();
    assert_eq!(*seen.lock().unwrap(), [b"later".to_vec()]);
    assert_eq!(journal.stats().replayed, 1);
}

#[test]
fn sync_timeout_reports_both_outcomes() {
    let disk = MemDevice::new(512, 16);
    let (gate, gate_rx) = mpsc::channel::<()>();
    let perform = move |_: &[Vec<u8>]| {
        // Blocks until the test opens the gate (or a minute passes: a
        // test that failed before opening it must still end).
        gate_rx
            .recv_timeout(Duration::from_secs(60))
            .map_err(|e| e.to_string())
    };
    let journal = Journal::start(disk, JournalOptions::new(), perform).unwrap();
    let waiter = journal.push(b"op").unwrap();
    assert!(!waiter.sync_timeout(Duration::from_millis(50)).unwrap());
    gate.send(()).unwrap();
    assert!(waiter.sync_timeout(Duration::from_secs(10)).unwrap());
}

#[test]
fn a_failing_batch_is_retried_never_skipped_and_replayed_in_order_at_start() {
    let disk = MemDevice::new(512, 16);
    let retry = Duration::from_millis(20);
    let options = JournalOptions::new().retry_interval(retry);

    // `perform` applies operations one by one and fails on the first;
    // its second attempt panics, which must count as a failure too.
    let (tx, attempts) = mpsc::channel::<Vec<Vec<u8>>>();
    let mut attempt = 0;
    let perform = move |ops: &[Vec<u8>]| -> Result<(), String> {
        attempt += 1;
        let mut tried = Vec::new();
        for op in ops {
            tried.push(op.clone());
            if op == b"first" {
                let _ = tx.send(tried);
                if attempt == 2 {
                    panic!("perform exploded on attempt 2");
                }
                return Err(format!("downstream unavailable (attempt {attempt})"));
            }
        }
        let _ = tx.send(tried);
        Ok(())
    };
    let journal = Journal::start(disk.clone(), options.clone(), perform).unwrap();
    let t0 = Instant::now();
    journal.push(b"first").unwrap();
    journal.push(b"second").unwrap();
    for n in 1..=4 {
        let tried = attempts
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("attempt {n} never came: {e}"));
        assert_eq!(tried, [b"first".to_vec()], "attempt {n}");
    }
    // Three waits of the retry interval separate four attempts.
    assert!(t0.elapsed() >= 3 * retry, "{:?}", t0.elapsed());
    let stats = journal.stats();
    assert!(stats.retried >= 3, "{stats:?}");
    assert_eq!((stats.performed, stats.batches), (0, 0), "{stats:?}");
    assert_eq!(stats.backlog_items, 2, "{stats:?}");
    assert!(
        stats.last_error.as_deref().is_some_and(
            |e| e.contains("downstream unavailable") || e.contains("perform exploded")
        ),
        "{stats:?}"
    );
    journal.shutdown();
    // The worker has stopped: no attempt after shutdown returned.
    while attempts.try_recv().is_ok() {}
    thread::sleep(3 * retry);
    assert!(attempts.try_recv().is_err());

    let (seen, perform) = recorder::<Vec<u8>>();
    let journal = Journal::start(disk, options, perform).unwrap();
    // Both were performed during start, in push order.
    assert_eq!(
        *seen.lock().unwrap(),
        [b"first".to_vec(), b"second".to_vec()]
    );
    let stats = journal.stats();
    assert_eq!(
        (stats.replayed, stats.performed, stats.backlog_items),
        (2, 2, 0)
    );
    journal.push(b"third").unwrap().sync().unwrap();
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[test]
fn a_full_ring_forces_processing_and_keeps_the_order() {
    // Four sectors: a single 512-byte data sector, room for 64 operations
    // of 4 bytes (each takes 8 with its header).
    let disk = MemDevice::new(512, 4);
    let (seen, perform) = recorder::<Vec<u8>>();
    let interval = Duration::from_secs(5);
    let journal = Journal::start(
        disk,
        JournalOptions::new().flush_interval(interval),
        perform,
    )
    .unwrap();
    let t0 = Instant::now();
    let mut last = None;
    for i in 0u32..=1000 {
        last = Some(journal.push(&i.to_le_bytes()).unwrap());
    }
    last.unwrap().sync().unwrap();
    let took = t0.elapsed();
    // Sixteen ring-fulls went through without waiting for the interval.
    assert!(took < interval - Duration::from_secs(1), "{took:?}");
    let performed: Vec<u32> = seen.lock().unwrap().iter().map(|op| le_u32(op)).collect();
    assert_eq!(performed, (0..=1000).collect::<Vec<u32>>());
    let stats = journal.stats();
    assert_eq!(stats.performed, 1001);
    assert!(stats.batches >= 1001 / 64, "{stats:?}");
}

#[test]
fn crash_at_random_moments_loses_no_acknowledged_operation() {
    if let Ok(ring) = std::env::var(CHILD_RING) {
        crash_child(&ring);
    }
    const RUNS: u64 = 40;
    // 13 data sectors: room for 554 operations, so the stream wraps often
    // and pushes sometimes wait for space.
    let ring = common::ring_file(16 * 512);
    let log = tempfile::Builder::new()
        .prefix("journal-log-")
        .tempfile_in(common::test_dir())
        .unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rng();
    // Highest acknowledged index per (run, thread).
    let mut acked: HashMap<(u64, u64), u64> = HashMap::new();
    let mut acked_total = 0u64;
    let mut runs_with_acks = 0;
    let mut kills_in_start = 0;
    for run in 1..=RUNS {
        // Every fourth kill aims at `start`, replaying what the last run
        // left; the others land anywhere.
        let aim_at_start = run % 4 == 0;
        let mode = if run % 2 == 1 || aim_at_start {
            "power-loss"
        } else {
            "process-crash"
        };
        let flush_ms = [0, 0, 2][run as usize % 3];
        // A slow `perform` makes pushes wait for space, and makes `start`
        // last long enough (replaying) for the aimed kills to land in it.
        let slow_ms = match run % 4 {
            0 => 5,
            3 => 1,
            _ => 0,
        };
        let mut child = ChildGuard(
            Command::new(&exe)
                .args([
                    "crash_at_random_moments_loses_no_acknowledged_operation",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_RING, ring.path())
                .env("SBR_JOURNAL_CHILD_RUN", run.to_string())
                .env("SBR_JOURNAL_CHILD_MODE", mode)
                .env("SBR_JOURNAL_CHILD_FLUSH_MS", flush_ms.to_string())
                .env("SBR_JOURNAL_CHILD_SLOW_MS", slow_ms.to_string())
                .env("SBR_JOURNAL_CHILD_LOG", log.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let stdout = child.0.stdout.take().unwrap();
        let mut stderr = child.0.stderr.take().unwrap();
        let (line_tx, line_rx) = mpsc::channel::<String>();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let errors = thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let mut lines = Vec::new();
        let delay = if aim_at_start {
            // Wait for the child to begin `start`, then kill it within it.
            loop {
                let Ok(line) = line_rx.recv_timeout(Duration::from_secs(30)) else {
                    let status = child.0.try_wait();
                    drop(child);
                    panic!(
                        "run {run}: the child never said `starting` ({status:?}); it said {:?} and\n{}",
                        &lines[..lines.len().min(5)],
                        stderr_of(errors)
                    );
                };
                // (After the harness's "test NAME ... ", on the same line.)
                let starting = line.ends_with("starting");
                lines.push(line);
                if starting {
                    break;
                }
            }
            Duration::from_micros(rng.random_range(0..3000))
        } else {
            // The child needs some milliseconds to start: anywhere from its
            // start to well into its pushes.
            Duration::from_millis(rng.random_range(5..160))
        };
        thread::sleep(delay);
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!(
                "run {run}: the child exited by itself ({status}):\n{}",
                stderr_of(errors)
            );
        }
        child.0.kill().unwrap();
        assert!(
            reap_within(&mut child.0, Duration::from_secs(30)),
            "run {run}: the killed child did not exit within 30 s"
        );
        drop(child);
        // The reader ends at the pipe's end, closing the channel.
        loop {
            match line_rx.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => lines.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("run {run}: the child's stdout did not end within 30 s")
                }
            }
        }
        let _ = stderr_of(errors);
        if lines.iter().any(|l| l.ends_with("starting")) && !lines.iter().any(|l| l == "running") {
            kills_in_start += 1;
        }
        let mut n = 0;
        for line in &lines {
            if let Some(id) = line.strip_prefix("acked ") {
                let (r, t, i) = split_id(id.parse().unwrap());
                assert_eq!(r, run, "{line}");
                let top = acked.entry((r, t)).or_insert(i);
                assert!(i >= *top, "acks of one thread go up: {line}");
                *top = i;
                n += 1;
            }
        }
        acked_total += n;
        runs_with_acks += (n > 0) as u32;
        // Drop a record torn by the kill, so that the next run's appends
        // stay aligned (its operation was not released: it is replayed).
        let f = OpenOptions::new().write(true).open(log.path()).unwrap();
        let len = f.metadata().unwrap().len();
        f.set_len(len - len % 8).unwrap();
    }

    // Finish what the last child left, in this process.
    let mut sink = OpenOptions::new().append(true).open(log.path()).unwrap();
    let journal = Journal::start(
        FileDevice::open(ring.path()).unwrap(),
        JournalOptions::new().name("crash"),
        move |ops: &[Vec<u8>]| sink.write_all(&ops.concat()),
    )
    .unwrap();
    assert_eq!(journal.stats().backlog_items, 0);
    drop(journal);

    let bytes = std::fs::read(log.path()).unwrap();
    assert_eq!(bytes.len() % 8, 0);
    let performed: Vec<u64> = bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    // Next index expected per (run, thread), in order of first performance.
    let mut next: HashMap<(u64, u64), u64> = HashMap::new();
    let mut last_run = 0;
    let mut firsts = 0u64;
    for &id in &performed {
        assert_ne!(
            id,
            u64::MAX,
            "an operation of the wrong length was performed"
        );
        let (run, t, i) = split_id(id);
        assert!(
            (1..=RUNS).contains(&run) && t < CHILD_THREADS,
            "performed {id:#x}, which was never pushed"
        );
        let expected = next.entry((run, t)).or_insert(0);
        if i < *expected {
            continue; // performed again: allowed (at least once)
        }
        // First performance: in push order, nothing skipped...
        assert_eq!(
            i, *expected,
            "run {run} thread {t}: operation {i} performed first before {expected}"
        );
        *expected += 1;
        firsts += 1;
        // ...runs in order (a run's leftovers go before the next run's)...
        assert!(run >= last_run, "run {run} performed after run {last_run}");
        last_run = run;
        // ...and only operations whose push at least began: at most one
        // unacknowledged one per thread (its push was cut by the kill).
        let limit = acked.get(&(run, t)).map_or(0, |&a| a + 1);
        assert!(
            i <= limit,
            "run {run} thread {t}: operation {i} performed, but only {limit} were pushed"
        );
    }
    // Every acknowledged operation was performed.
    for (&(run, t), &top) in &acked {
        let done = next.get(&(run, t)).copied().unwrap_or(0);
        assert!(
            done > top,
            "run {run} thread {t}: operation {top} was acknowledged but never performed"
        );
    }
    eprintln!(
        "{RUNS} kills, {kills_in_start} during start, {runs_with_acks} while pushing: \
         {acked_total} operations acknowledged, \
         {firsts} performed, {} performances in all (repeats after crashes: {})",
        performed.len(),
        performed.len() as u64 - firsts
    );
    // The kills must have hit working children, or this proves little.
    assert!(
        runs_with_acks >= RUNS as u32 / 2,
        "only {runs_with_acks} of {RUNS} runs acknowledged anything"
    );
    assert!(acked_total >= 500, "only {acked_total} acknowledged");
    assert!(kills_in_start >= 1, "no kill landed during start");
}

#[test]
fn flush_interval_bounds_each_operations_wait_in_a_steady_stream() {
    let disk = MemDevice::new(512, 256);
    let interval = Duration::from_millis(100);
    let performed_at = Arc::new(Mutex::new(Vec::<(u32, Instant)>::new()));
    let sink = performed_at.clone();
    let perform = move |ops: &[Vec<u8>]| {
        let now = Instant::now();
        sink.lock()
            .unwrap()
            .extend(ops.iter().map(|op| (le_u32(op), now)));
        Ok::<(), String>(())
    };
    let journal = Journal::start(
        disk,
        JournalOptions::new().flush_interval(interval),
        perform,
    )
    .unwrap();
    // One push every 10 ms for 2 s.
    let t0 = Instant::now();
    let mut pushed_at = Vec::new();
    let mut last = None;
    // How late this thread woke from its sleeps: on a loaded machine the
    // worker's timers fire late by as much, which is the machine's delay,
    // not the journal's (scripts/stress.sh saw 680 ms with a load of 9).
    let mut overslept = Duration::ZERO;
    for i in 0u32..200 {
        let due = t0 + Duration::from_millis(10) * i;
        thread::sleep(due.saturating_duration_since(Instant::now()));
        let now = Instant::now();
        overslept = overslept.max(now.saturating_duration_since(due));
        pushed_at.push(now);
        last = Some(journal.push(&i.to_le_bytes()).unwrap());
    }
    let slack = Duration::from_millis(400) + overslept * 2;
    let stream_end = Instant::now();
    let first = performed_at.lock().unwrap().first().copied();
    let (op, at) = first.expect("nothing was performed during a 2 s stream");
    assert_eq!(op, 0);
    // The first batch waited for the interval, and did not wait for the
    // stream to end.
    let delay = at - pushed_at[0];
    assert!(delay >= interval, "{delay:?}");
    assert!(
        at < stream_end && delay < interval + slack,
        "{delay:?} (slack {slack:?})"
    );
    last.unwrap().sync().unwrap();
    let performed = performed_at.lock().unwrap().clone();
    assert_eq!(performed.len(), 200);
    // Each operation waited about the interval, not for later pushes.
    let worst = performed
        .iter()
        .map(|&(i, at)| at - pushed_at[i as usize])
        .max()
        .unwrap();
    assert!(worst < interval + slack, "{worst:?} (slack {slack:?})");
    // And operations were batched: about one batch per interval.
    let batches = journal.stats().batches;
    assert!((5..=60).contains(&batches), "{batches} batches");
}

#[test]
fn concurrent_pushes_are_published_together_and_performed_in_ring_order() {
    const THREADS: u32 = 4;
    const EACH: u32 = 60;
    let disk = SlowFlush(MemDevice::new(512, 64));
    let (seen, perform) = recorder::<Vec<u8>>();
    let journal = Arc::new(Journal::start(disk, JournalOptions::new(), perform).unwrap());
    // (sequence, thread, index) of every acknowledged push.
    // Threads of their own (a scope would join them even after a failed
    // deadline), each joined within one.
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let journal = Arc::clone(&journal);
            thread::spawn(move || {
                let mut acks = Vec::new();
                let mut last = None;
                for i in 0..EACH {
                    let op = [t.to_le_bytes(), i.to_le_bytes()].concat();
                    let waiter = journal.push(&op).unwrap();
                    acks.push((waiter.sequence(), t, i));
                    last = Some(waiter);
                }
                last.unwrap().sync().unwrap();
                acks
            })
        })
        .collect();
    let acks: Vec<(u64, u32, u32)> = handles
        .into_iter()
        .flat_map(|h| common::join_within(h, Duration::from_secs(60), "a pushing thread"))
        .collect();
    let mut by_sequence = acks.clone();
    by_sequence.sort();
    let sequences: Vec<u64> = by_sequence.iter().map(|a| a.0).collect();
    let total = u64::from(THREADS * EACH);
    assert_eq!(sequences, (1..=total).collect::<Vec<u64>>());
    // Each thread's pushes are in its own order.
    for t in 0..THREADS {
        let mine: Vec<u32> = by_sequence
            .iter()
            .filter(|a| a.1 == t)
            .map(|a| a.2)
            .collect();
        assert_eq!(mine, (0..EACH).collect::<Vec<u32>>());
    }
    let stats = journal.stats();
    journal.shutdown();
    // Performed exactly once each (no crash, no failure), in sequence order.
    let performed: Vec<(u32, u32)> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|op| (le_u32(&op[..4]), le_u32(&op[4..])))
        .collect();
    let expected: Vec<(u32, u32)> = by_sequence.iter().map(|a| (a.1, a.2)).collect();
    assert_eq!(performed, expected);
    // Group commit: several operations per producer advance on average.
    assert_eq!(stats.pushed, total);
    assert!(
        stats.commits * 3 <= stats.pushed * 2,
        "{} pushes took {} commits",
        stats.pushed,
        stats.commits
    );
}

#[test]
fn a_device_holding_something_else_is_refused_not_overwritten() {
    let disk = MemDevice::new(512, 16);
    disk.with_bytes_mut(|b| b[..16].copy_from_slice(b"not a ring, mine"));
    let before = disk.to_vec();
    let (_, perform) = recorder::<Vec<u8>>();
    let e = Journal::start(disk.clone(), JournalOptions::new(), perform).unwrap_err();
    assert!(
        matches!(e, Error::NotInitialised(SignatureProblem::Foreign { .. })),
        "{e}"
    );
    assert_eq!(disk.to_vec(), before);
}

#[test]
fn a_suspend_left_on_the_ring_is_lifted_at_start() {
    let disk = MemDevice::new(512, 16);
    create(&disk).unwrap();
    let mut consumer = Consumer::attach(disk.clone(), Options::new()).unwrap();
    consumer.suspend().unwrap();
    assert!(Producer::attach(disk.clone(), Options::new())
        .unwrap_err()
        .is_suspended());
    drop(consumer);
    let (seen, perform) = recorder::<Vec<u8>>();
    let journal = Journal::start(disk, JournalOptions::new(), perform).unwrap();
    journal.push(b"go").unwrap().sync().unwrap();
    assert_eq!(*seen.lock().unwrap(), [b"go".to_vec()]);
}

#[test]
fn device_errors_fail_the_push_and_the_journal_recovers() {
    let disk = Flaky {
        disk: MemDevice::new(512, 16),
        fail: Arc::new(Mutex::new(None)),
    };
    let (seen, perform) = recorder::<Vec<u8>>();
    let journal = Journal::start(
        disk.clone(),
        JournalOptions::new().retry_interval(Duration::from_millis(10)),
        perform,
    )
    .unwrap();
    journal.push(b"a").unwrap().sync().unwrap();

    // The data write fails: nothing reaches the ring, never performed.
    disk.set(Some(Failing::Data));
    let e = journal.push(b"lost").unwrap_err();
    assert!(e.is_io(), "{e}");
    // The data is written but publishing it fails: the push fails, and the
    // operation is published (and performed) with the next one, as after
    // a crash during a push.
    disk.set(Some(Failing::Sector(1)));
    let e = journal.push(b"orphan").unwrap_err();
    assert!(e.is_io() && e.to_string().contains("sector 1"), "{e}");
    disk.set(None);
    let waiter = journal.push(b"c").unwrap();
    assert_eq!(waiter.sequence(), 3, "the orphan took number 2");
    waiter.sync().unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [b"a".to_vec(), b"orphan".to_vec(), b"c".to_vec()]
    );

    // Recording progress fails: performing goes on; the last attempt, at
    // shutdown, fails too and shows in the stats.
    disk.set(Some(Failing::Sector(2)));
    journal.push(b"d").unwrap().sync().unwrap();
    journal.shutdown();
    let stats = journal.stats();
    assert_eq!((stats.pushed, stats.performed), (3, 4), "{stats:?}");
    assert!(
        stats
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("recording progress")),
        "{stats:?}"
    );
    // So the next start performs again what was not recorded, at least
    // `d`, in order: at least once.
    disk.set(None);
    let (seen, perform) = recorder::<Vec<u8>>();
    let journal = Journal::start(disk, JournalOptions::new(), perform).unwrap();
    let all = [
        b"a".to_vec(),
        b"orphan".to_vec(),
        b"c".to_vec(),
        b"d".to_vec(),
    ];
    let again = seen.lock().unwrap().clone();
    assert!(
        !again.is_empty() && all.ends_with(&again),
        "replayed {again:?}"
    );
    assert_eq!(journal.stats().replayed, again.len() as u64);
}
