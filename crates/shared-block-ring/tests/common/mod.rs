//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;

/// A directory on a filesystem that supports O_DIRECT (not tmpfs).
pub fn test_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A zero-filled file of `bytes` bytes, written in full (not sparse),
/// deleted when dropped.
pub fn ring_file(bytes: usize) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new()
        .prefix("ring-")
        .suffix(".img")
        .tempfile_in(test_dir())
        .unwrap();
    f.write_all(&vec![0u8; bytes]).unwrap();
    f.as_file().sync_all().unwrap();
    f
}

/// A file holding `bytes`.
pub fn file_with(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut f = ring_file(0);
    f.write_all(bytes).unwrap();
    f.as_file().sync_all().unwrap();
    f
}

/// A 16 KiB ring in memory holding "hello" and "world", published.
pub fn two_items() -> shared_block_ring::MemDevice {
    use shared_block_ring::{create, MemDevice, Options, Producer};
    let disk = MemDevice::new(512, 32);
    create(&disk).unwrap();
    let mut p = Producer::attach(disk.clone(), Options::new()).unwrap();
    p.push(b"hello").unwrap();
    let end = p.push(b"world").unwrap();
    p.advance(end).unwrap();
    disk
}

/// Joins `handle`, failing the test (naming `what`) if the thread has not
/// finished within `limit`, so that a hang fails by name instead of timing
/// CI out. (`system_tests::join_within` does the same for the other
/// crates; this crate's tests cannot depend on `system-tests`, which
/// depends on it.) A panic in the thread is passed on.
pub fn join_within<T>(
    handle: std::thread::JoinHandle<T>,
    limit: std::time::Duration,
    what: &str,
) -> T {
    let deadline = std::time::Instant::now() + limit;
    while !handle.is_finished() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not finish within {limit:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    match handle.join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
