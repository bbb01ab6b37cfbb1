//! Memory devices that misbehave on demand: slow flushes, failing writes.

use std::io;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use shared_block_ring::{BlockDevice, MemDevice, Side};

/// A memory device whose cache flushes take 2 ms, as a disk's do.
#[derive(Clone)]
pub(crate) struct SlowFlush(pub(crate) MemDevice);

impl BlockDevice for SlowFlush {
    fn sector_size(&self) -> usize {
        self.0.sector_size()
    }
    fn sectors(&self) -> u64 {
        self.0.sectors()
    }
    fn read(&self, sector: u64, buf: &mut [u8]) -> io::Result<()> {
        self.0.read(sector, buf)
    }
    fn write(&self, sector: u64, buf: &[u8]) -> io::Result<()> {
        self.0.write(sector, buf)
    }
    fn flush(&self) -> io::Result<()> {
        thread::sleep(Duration::from_millis(2));
        Ok(())
    }
    fn try_lock(&self, side: Side) -> io::Result<Result<(), String>> {
        self.0.try_lock(side)
    }
    fn unlock(&self, side: Side) {
        self.0.unlock(side)
    }
}

/// A memory device whose writes fail, on demand, in the data area or in
/// one state sector.
#[derive(Clone)]
pub(crate) struct Flaky {
    pub(crate) disk: MemDevice,
    pub(crate) fail: Arc<Mutex<Option<Failing>>>,
}

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Failing {
    Data,
    Sector(u64),
}

impl Flaky {
    pub(crate) fn set(&self, failing: Option<Failing>) {
        *self.fail.lock().unwrap() = failing;
    }
}

impl BlockDevice for Flaky {
    fn sector_size(&self) -> usize {
        self.disk.sector_size()
    }
    fn sectors(&self) -> u64 {
        self.disk.sectors()
    }
    fn read(&self, sector: u64, buf: &mut [u8]) -> io::Result<()> {
        self.disk.read(sector, buf)
    }
    fn write(&self, sector: u64, buf: &[u8]) -> io::Result<()> {
        let failing = *self.fail.lock().unwrap();
        let fails = match failing {
            Some(Failing::Data) => sector >= 3,
            Some(Failing::Sector(s)) => sector == s,
            None => false,
        };
        if fails {
            return Err(io::Error::other(format!(
                "injected write failure at sector {sector}"
            )));
        }
        self.disk.write(sector, buf)
    }
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
    fn try_lock(&self, side: Side) -> io::Result<Result<(), String>> {
        self.disk.try_lock(side)
    }
    fn unlock(&self, side: Side) {
        self.disk.unlock(side)
    }
}
