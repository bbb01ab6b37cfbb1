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
