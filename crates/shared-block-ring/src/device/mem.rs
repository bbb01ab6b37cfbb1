//! An in-memory device, for tests and examples.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{check_range, BlockDevice};
use crate::error::Side;

/// A device held in memory. Clones share one buffer, so a producer and a
/// consumer in one test can each own a clone and see each other's writes.
///
/// Writes are immediately "durable": there is no cache to lose. Use the
/// fault-injecting device to model a volatile cache and power cuts.
#[derive(Clone)]
pub struct MemDevice {
    inner: Arc<Mutex<Inner>>,
    sector_size: usize,
    sectors: u64,
}

struct Inner {
    data: Vec<u8>,
    locks: [bool; 2],
}

impl MemDevice {
    /// A zeroed device of `sectors` sectors of `sector_size` bytes.
    pub fn new(sector_size: usize, sectors: u64) -> MemDevice {
        MemDevice::from_bytes(sector_size, vec![0; sector_size * sectors as usize])
    }

    /// A device holding `bytes` (trailing bytes short of a sector are kept
    /// but not addressable).
    pub fn from_bytes(sector_size: usize, bytes: Vec<u8>) -> MemDevice {
        let sectors = (bytes.len() / sector_size.max(1)) as u64;
        MemDevice {
            inner: Arc::new(Mutex::new(Inner {
                data: bytes,
                locks: [false; 2],
            })),
            sector_size,
            sectors,
        }
    }

    /// A copy of the whole device.
    pub fn to_vec(&self) -> Vec<u8> {
        self.lock().data.clone()
    }

    /// Runs `f` on the device's bytes, for tests that corrupt a ring.
    pub fn with_bytes_mut<R>(&self, f: impl FnOnce(&mut [u8]) -> R) -> R {
        f(&mut self.lock().data)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the bytes half-updated
        // in a way that matters more than a torn write, so keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn range(&self, sector: u64, len: usize) -> io::Result<std::ops::Range<usize>> {
        check_range(self.sector_size, self.sectors, sector, len)?;
        let start = sector as usize * self.sector_size;
        Ok(start..start + len)
    }
}

impl BlockDevice for MemDevice {
    fn sector_size(&self) -> usize {
        self.sector_size
    }

    fn sectors(&self) -> u64 {
        self.sectors
    }

    fn read(&self, sector: u64, buf: &mut [u8]) -> io::Result<()> {
        let r = self.range(sector, buf.len())?;
        buf.copy_from_slice(&self.lock().data[r]);
        Ok(())
    }

    fn write(&self, sector: u64, buf: &[u8]) -> io::Result<()> {
        let r = self.range(sector, buf.len())?;
        self.lock().data[r].copy_from_slice(buf);
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "memory device ({} sectors of {} bytes)",
            self.sectors, self.sector_size
        )
    }

    fn try_lock(&self, side: Side) -> io::Result<Result<(), String>> {
        let mut inner = self.lock();
        let slot = &mut inner.locks[side as usize];
        if *slot {
            Ok(Err(format!("another {side} handle on this memory device")))
        } else {
            *slot = true;
            Ok(Ok(()))
        }
    }

    fn unlock(&self, side: Side) {
        self.lock().locks[side as usize] = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_bytes_and_ranges_are_checked() {
        let a = MemDevice::new(512, 4);
        let b = a.clone();
        a.write(3, &[7u8; 512]).unwrap();
        let mut buf = [0u8; 512];
        b.read(3, &mut buf).unwrap();
        assert_eq!(buf, [7u8; 512]);
        assert_eq!(
            b.read(4, &mut buf).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            b.read(0, &mut buf[..100]).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn one_lock_per_role() {
        let a = MemDevice::new(512, 4);
        let b = a.clone();
        assert!(a.try_lock(Side::Producer).unwrap().is_ok());
        assert!(b.try_lock(Side::Producer).unwrap().is_err());
        assert!(b.try_lock(Side::Consumer).unwrap().is_ok());
        a.unlock(Side::Producer);
        assert!(b.try_lock(Side::Producer).unwrap().is_ok());
    }
}
