//! The journal under the crash-consistency checker: a journal on a
//! [`FaultDevice`] is crashed at every device write and flush of a
//! workload; for every image the crash may leave, a new journal starts on
//! it, and the promise is checked: every operation whose `push` returned is
//! performed (before the crash, or by the replay in `start`), first
//! performances come in push order, and nothing is performed that was not
//! pushed, nor torn.
//!
//! Both formats: the journal creates the ring on the blank device, in
//! format 1 or format 2.
//!
//! The journal's worker runs in its own thread, so where crash point N
//! falls differs from run to run; every run is a real execution, checked
//! on its own. The number of crash states checked is printed (run with
//! `--nocapture`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shared_block_ring::device::{CrashPoint, FaultDevice};
use shared_block_ring::{Durability, Journal, JournalOptions, MemDevice, RingFormat, Waiter};

/// Operation `i`: its index, then bytes derived from it, 4 to 300 bytes in
/// all, so a torn or foreign item is recognised.
fn op(i: u32) -> Vec<u8> {
    let len = 4 + (i as usize * 37) % 297;
    let mut v: Vec<u8> = (0..len).map(|j| (i as usize * 7 + j * 13) as u8).collect();
    v[..4].copy_from_slice(&i.to_le_bytes());
    v
}

/// The index of a performed operation, checked byte for byte; `u32::MAX`
/// for bytes that are no operation of this test (torn, or garbage), which
/// the checks then report. (`perform` must not panic: the journal would
/// count that as a failure and retry.)
fn index_of(bytes: &[u8]) -> u32 {
    match bytes
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    {
        Some(i) if i < OPS && bytes == op(i) => i,
        _ => u32::MAX,
    }
}

const OPS: u32 = 200;
/// 13 data sectors: the 200 operations wrap the ring about five times.
const SECTORS: u64 = 16;

fn options(w: Workload) -> JournalOptions {
    JournalOptions::new()
        .durability(w.durability)
        .format(w.format)
        .retry_interval(Duration::from_millis(1))
}

/// How often a pusher waits for its operation to be performed: never
/// (the worker batches freely) or every few pushes (crash points fall among
/// the worker's releases too).
#[derive(Clone, Copy)]
struct Workload {
    durability: Durability,
    format: RingFormat,
    sync_every: Option<u32>,
}

struct Run {
    /// Operations whose push returned Ok.
    acked: Vec<u32>,
    /// Operations whose push was started.
    pushed: u32,
    /// What the journal performed before the crash, in order.
    performed: Vec<u32>,
    point: Option<CrashPoint>,
    crash_points: u64,
}

/// Waits until the operation is performed (true), or the device has crashed
/// and it never will be (false).
fn performed_or_crashed(waiter: &Waiter, dev: &FaultDevice<MemDevice>) -> bool {
    loop {
        match waiter.sync_timeout(Duration::from_millis(10)) {
            Ok(true) => return true,
            Ok(false) if !dev.has_crashed() => {}
            _ => return false,
        }
    }
}

/// Runs the workload, crashing at crash point `crash_at` (never if `None`).
fn run(w: Workload, crash_at: Option<u64>) -> Run {
    let dev = FaultDevice::new(MemDevice::new(512, SECTORS));
    if let Some(n) = crash_at {
        dev.crash_after(n);
    }
    let performed = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&performed);
    let mut acked = Vec::new();
    let mut pushed = 0;
    let started = Journal::start(dev.clone(), options(w), move |ops: &[Vec<u8>]| {
        let mut l = log.lock().unwrap();
        l.extend(ops.iter().map(|o| index_of(o)));
        Ok::<(), String>(())
    });
    if let Ok(journal) = started {
        let journal = Arc::new(journal);
        // Once the device has crashed, nothing can be published or
        // performed any more: a push waiting for space would wait for ever.
        // Shut the journal down then, as a supervisor would.
        let done = Arc::new(AtomicBool::new(false));
        let watchdog = {
            let (journal, dev, done) = (Arc::clone(&journal), dev.clone(), Arc::clone(&done));
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    if dev.has_crashed() {
                        journal.shutdown();
                        return;
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
            })
        };
        for i in 0..OPS {
            pushed = i + 1;
            match journal.push(&op(i)) {
                Ok(waiter) => {
                    acked.push(i);
                    if w.sync_every.is_some_and(|k| i % k == 0)
                        && !performed_or_crashed(&waiter, &dev)
                    {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        done.store(true, Ordering::Relaxed);
        watchdog.join().unwrap();
        journal.shutdown();
    }
    let performed = performed.lock().unwrap().clone();
    Run {
        acked,
        pushed,
        performed,
        point: dev.crash_point(),
        crash_points: dev.counts().crash_points,
    }
}

/// Starts a journal on `image` and checks the promise against `run`.
fn check(run: &Run, image: Vec<u8>, w: Workload, what: &str) {
    let replayed = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&replayed);
    let journal = Journal::start(
        MemDevice::from_bytes(512, image),
        options(w),
        move |ops: &[Vec<u8>]| {
            log.lock().unwrap().extend(ops.iter().map(|o| index_of(o)));
            Ok::<(), String>(())
        },
    )
    .unwrap_or_else(|e| panic!("{what}: the journal does not start after the crash: {e}"));
    journal.shutdown();
    let replayed = replayed.lock().unwrap().clone();
    let all: Vec<u32> = run.performed.iter().chain(&replayed).copied().collect();
    // Nothing torn, nothing performed that was not pushed.
    assert!(
        !all.contains(&u32::MAX),
        "{what}: performed bytes that are no pushed operation (torn or garbage): {all:?}"
    );
    assert!(
        all.iter().all(|&i| i < run.pushed),
        "{what}: performed an operation never pushed: {all:?} (pushed {})",
        run.pushed
    );
    // First performances in push order.
    let mut seen = vec![false; OPS as usize];
    let mut firsts = Vec::new();
    for &i in &all {
        if !seen[i as usize] {
            seen[i as usize] = true;
            firsts.push(i);
        }
    }
    assert!(
        firsts.windows(2).all(|w| w[0] < w[1]),
        "{what}: first performances out of order: {firsts:?}"
    );
    // Every acknowledged operation performed.
    for &i in &run.acked {
        assert!(
            seen[i as usize],
            "{what}: acknowledged operation {i} was never performed (before: {:?}, replay: {replayed:?})",
            run.performed
        );
    }
}

fn checker(durability: Durability, format: RingFormat, images_per_point: usize) -> (u64, usize) {
    let mut points = 0;
    let mut states = 0;
    for sync_every in [None, Some(7), Some(1)] {
        let w = Workload {
            durability,
            format,
            sync_every,
        };
        let (p, s) = check_workload(w, images_per_point);
        points += p;
        states += s;
    }
    (points, states)
}

fn check_workload(w: Workload, images_per_point: usize) -> (u64, usize) {
    let durability = w.durability;
    let total = run(w, None).crash_points;
    assert!(total > 50, "only {total} crash points");
    let mut states = 0;
    for n in 0..total {
        let r = run(w, Some(n));
        let Some(point) = r.point.clone() else {
            // The run ended before reaching crash point n (thread timing).
            continue;
        };
        match durability {
            Durability::PowerLoss => {
                for (k, image) in point.power_cut_images(images_per_point, n).enumerate() {
                    check(
                        &r,
                        image,
                        w,
                        &format!("format {}, power cut at point {n}, image {k}", w.format),
                    );
                    states += 1;
                }
            }
            _ => {
                // One image, or one per subset of a transfer's writes in
                // flight.
                for (k, image) in point.process_crash_images(images_per_point).enumerate() {
                    check(
                        &r,
                        image,
                        w,
                        &format!("format {}, process crash at point {n}, image {k}", w.format),
                    );
                    states += 1;
                }
            }
        }
    }
    (total, states)
}

#[test]
fn replay_after_a_power_cut_performs_every_acknowledged_operation_in_order() {
    for format in [RingFormat::V1, RingFormat::V2] {
        let (points, states) = checker(Durability::PowerLoss, format, 64);
        println!(
            "journal, format {format}, power-loss mode: {states} crash states at {points} crash \
             points, 0 violations"
        );
        assert!(states > 2000, "{states}");
    }
}

#[test]
fn replay_after_a_process_crash_performs_every_acknowledged_operation_in_order() {
    for format in [RingFormat::V1, RingFormat::V2] {
        let (points, states) = checker(Durability::ProcessCrash, format, 1);
        println!(
            "journal, format {format}, process-crash mode: {states} crash states at {points} \
             crash points, 0 violations"
        );
        assert!(states > 500, "{states}");
    }
}
