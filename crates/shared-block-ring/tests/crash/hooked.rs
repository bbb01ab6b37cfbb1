//! The device each side of an interleaved workload uses.

use std::sync::Weak;

use shared_block_ring::device::FaultDevice;
use shared_block_ring::{MemDevice, Side};

use crate::world::World;

pub(crate) type Dev = FaultDevice<MemDevice>;

/// The device each side uses: the shared [`FaultDevice`] and, in an
/// interleaved workload, a hook that lets the other side take a few steps
/// in the middle of this side's call: before each of its device
/// operations, and inside each durable (FUA) write, once the write is in
/// the device's cache (visible to the other side) and before it is
/// durable. One thread runs everything, so every run of a workload is the
/// same and can be crashed at each of its crash points in turn.
///
/// This reaches the states where one side acts on a write of the other
/// that is visible but not yet durable: the consumer reading a pipelined
/// pointer written just before its flush, and releasing up to it; the
/// producer reading a consumer position whose FUA write has not completed,
/// and filling the space it releases.
#[derive(Clone)]
pub(crate) struct Hooked {
    pub(crate) inner: Dev,
    pub(crate) side: Side,
    pub(crate) world: Weak<World>,
}

impl Hooked {
    fn hook(&self) {
        if let Some(world) = self.world.upgrade() {
            let steps = world.next_steps(self.side);
            world.run_steps(self.side, steps);
        }
    }
}

impl shared_block_ring::BlockDevice for Hooked {
    fn sector_size(&self) -> usize {
        self.inner.sector_size()
    }
    fn sectors(&self) -> u64 {
        self.inner.sectors()
    }
    fn read(&self, sector: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.hook();
        self.inner.read(sector, buf)
    }
    fn write(&self, sector: u64, buf: &[u8]) -> std::io::Result<()> {
        self.hook();
        self.inner.write(sector, buf)
    }
    fn write_durable(&self, sector: u64, buf: &[u8]) -> std::io::Result<()> {
        self.hook();
        if let Some(world) = self.world.upgrade() {
            let steps = world.next_steps(self.side);
            if !steps.is_empty() {
                // In flight: visible to the other side, not yet durable.
                self.inner.write(sector, buf)?;
                world.run_steps(self.side, steps);
            }
        }
        self.inner.write_durable(sector, buf)
    }
    fn flush(&self) -> std::io::Result<()> {
        self.hook();
        self.inner.flush()
    }
    /// The fault device's own: its writes are in flight together (a crash
    /// keeps any subset of them).
    fn transfer(
        &self,
        writes: &[(u64, &[u8])],
        reads: &mut [(u64, &mut [u8])],
    ) -> std::io::Result<()> {
        self.hook();
        self.inner.transfer(writes, reads)
    }
    fn try_lock(&self, side: Side) -> std::io::Result<Result<(), String>> {
        self.inner.try_lock(side)
    }
    fn unlock(&self, side: Side) {
        self.inner.unlock(side)
    }
}
