//! Enumerating every crash point of workloads, checking every crash state
//! there, and the tallies.

use std::collections::HashSet;
use std::time::Instant;

use shared_block_ring::device::{CrashPoint, FaultDevice};
use shared_block_ring::{Durability, MemDevice};

use crate::image::check_image;
use crate::workload::Workload;
use crate::world::{run, End};

#[derive(Debug, Default)]
pub(crate) struct Tally {
    points: u64,
    states: u64,
    /// Crash points inside a transfer, with several writes in flight.
    pub(crate) in_flight: u64,
    /// Steps one side took inside the other's calls (in the runs without
    /// a crash).
    inside: u64,
}

/// Crash states checked per crash point at most (power-loss mode).
const STATES_PER_POINT: usize = 2048;

/// Enumerates every crash point of `w` and checks every crash state there.
fn check_workload(w: &Workload) -> Tally {
    // A run without a crash counts the crash points.
    let dev = FaultDevice::new(MemDevice::new(w.sector_size, w.sectors));
    let (_, end, inside) = run(w, &dev);
    assert!(matches!(end, End::Finished));
    let total = dev.counts().crash_points;
    let mut tally = Tally {
        inside,
        ..Tally::default()
    };
    for k in 0..=total {
        let dev = FaultDevice::new(MemDevice::new(w.sector_size, w.sectors));
        dev.crash_after(k);
        let (acked, _, _) = run(w, &dev);
        let point: CrashPoint = dev.crash_point().expect("the device crashed");
        if point.in_flight().len() >= 2 {
            tally.in_flight += 1;
        }
        let images: Vec<Vec<u8>> = match w.durability {
            Durability::PowerLoss => point.power_cut_images(STATES_PER_POINT, k).collect(),
            // One image, or one per subset of a transfer's writes in flight.
            _ => point.process_crash_images(STATES_PER_POINT).collect(),
        };
        let mut seen = HashSet::new();
        for (i, image) in images.into_iter().enumerate() {
            assert!(seen.insert(image.clone()), "images are distinct");
            if let Err(e) = check_image(w, &acked, image, k * 1000 + i as u64) {
                panic!(
                    "VIOLATION: {} workload seed {}, crash point {k} of {total}, state {i} \
                     ({} unflushed sector writes): {e}\nacked: p={} (in flight {:?}), c={} \
                     (in flight {:?}), suspend={} (in flight {:?})",
                    w.durability,
                    w.seed,
                    point.unflushed().len(),
                    acked.p_ack,
                    acked.p_inflight,
                    acked.c_ack,
                    acked.c_inflight,
                    acked.s_ack,
                    acked.s_inflight
                );
            }
            tally.states += 1;
        }
        tally.points += 1;
    }
    tally
}

pub(crate) fn check_all(name: &str, workloads: Vec<Workload>, min_states: u64) -> Tally {
    let started = Instant::now();
    let mut total = Tally::default();
    for w in &workloads {
        let t = check_workload(w);
        total.points += t.points;
        total.states += t.states;
        total.inside += t.inside;
        total.in_flight += t.in_flight;
    }
    let inside = if total.inside > 0 {
        format!(
            " ({} steps taken inside the other side's calls)",
            total.inside
        )
    } else {
        String::new()
    };
    println!(
        "crash checker ({name}): {} workloads{inside}, {} crash points ({} inside a transfer), \
         {} distinct crash states checked, 0 violations, in {:.1?}",
        workloads.len(),
        total.points,
        total.in_flight,
        total.states,
        started.elapsed()
    );
    assert!(
        total.states >= min_states,
        "only {} crash states checked",
        total.states
    );
    total
}
