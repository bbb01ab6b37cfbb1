//! A producer process and a consumer process share one ring: on a file, and
//! on a loop device (root).

use std::path::Path;
use std::process::{Command, Stdio};

use shared_block_ring::{create, FileDevice};
use system_tests::{ring_file, ChildGuard, LoopDevice};

const PEER: &str = env!("CARGO_BIN_EXE_ring-peer");
const ITEMS: u64 = 100_000;
/// Up to three sectors per item.
const MAX_LEN: u64 = 1536;

fn run_pair(device: &Path, seed: u64, batch: u64, durability: &str) {
    create(&FileDevice::open(device).unwrap()).unwrap();
    let consumer = ChildGuard::spawn(
        Command::new(PEER)
            .args(["consume", &device.display().to_string()])
            .args([ITEMS, seed, MAX_LEN].map(|n| n.to_string()))
            .arg(durability)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let producer = ChildGuard::spawn(
        Command::new(PEER)
            .args(["produce", &device.display().to_string()])
            .args([ITEMS, seed, MAX_LEN, batch].map(|n| n.to_string()))
            .arg(durability)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let p = producer.wait_output();
    let c = consumer.wait_output();
    assert!(
        p.status.success(),
        "producer: {}",
        String::from_utf8_lossy(&p.stderr)
    );
    assert!(
        c.status.success(),
        "consumer: {}",
        String::from_utf8_lossy(&c.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&c.stdout).trim(),
        format!("consumed {ITEMS}")
    );
}

#[test]
fn two_processes_share_a_ring_file() {
    // 64 KiB: 100,000 items of ~770 bytes wrap it over a thousand times.
    let file = ring_file(64 * 1024);
    run_pair(file.path(), 1, 16, "power-loss");
}

#[test]
fn two_processes_share_a_ring_file_in_process_crash_mode_one_item_per_advance() {
    let file = ring_file(64 * 1024);
    run_pair(file.path(), 2, 1, "process-crash");
}

#[test]
fn two_processes_share_a_loop_device() {
    let file = ring_file(64 * 1024);
    let dev = LoopDevice::attach(file.path());
    run_pair(dev.path(), 3, 16, "power-loss");
}
