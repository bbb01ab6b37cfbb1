//! A device that holds back a flush, for the directed tests.

use std::time::Duration;

use shared_block_ring::device::FaultDevice;
use shared_block_ring::{MemDevice, Side};

/// A device that holds back the next flush while armed: the flush
/// announces itself and waits to be released, so that a test can act on
/// the other handle between a producer's pointer write and its flush.
#[derive(Clone)]
pub(crate) struct HeldFlush {
    inner: FaultDevice<MemDevice>,
    gate: std::sync::Arc<(std::sync::Mutex<Gate>, std::sync::Condvar)>,
}

#[derive(Default)]
struct Gate {
    armed: bool,
    waiting: bool,
    released: bool,
}

/// How long either side of a held flush waits for the other.
const GATE_DEADLINE: Duration = Duration::from_secs(20);

impl HeldFlush {
    pub(crate) fn new(inner: FaultDevice<MemDevice>) -> HeldFlush {
        HeldFlush {
            inner,
            gate: Default::default(),
        }
    }

    pub(crate) fn arm(&self) {
        self.gate.0.lock().unwrap().armed = true;
    }

    /// Waits until the armed flush has been called (and is being held).
    pub(crate) fn wait_until_held(&self) {
        let (lock, cv) = &*self.gate;
        let g = lock.lock().unwrap();
        let (g, timeout) = cv
            .wait_timeout_while(g, GATE_DEADLINE, |g| !g.waiting)
            .unwrap();
        assert!(
            !timeout.timed_out() && g.waiting,
            "the producer never reached its flush"
        );
    }

    pub(crate) fn release(&self) {
        let (lock, cv) = &*self.gate;
        lock.lock().unwrap().released = true;
        cv.notify_all();
    }
}

impl shared_block_ring::BlockDevice for HeldFlush {
    fn sector_size(&self) -> usize {
        self.inner.sector_size()
    }
    fn sectors(&self) -> u64 {
        self.inner.sectors()
    }
    fn read(&self, sector: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.inner.read(sector, buf)
    }
    fn write(&self, sector: u64, buf: &[u8]) -> std::io::Result<()> {
        self.inner.write(sector, buf)
    }
    fn write_durable(&self, sector: u64, buf: &[u8]) -> std::io::Result<()> {
        self.inner.write_durable(sector, buf)
    }
    fn flush(&self) -> std::io::Result<()> {
        let (lock, cv) = &*self.gate;
        let mut g = lock.lock().unwrap();
        if g.armed {
            g.armed = false;
            g.waiting = true;
            cv.notify_all();
            let (g, timeout) = cv
                .wait_timeout_while(g, GATE_DEADLINE, |g| !g.released)
                .unwrap();
            drop(g);
            if timeout.timed_out() {
                return Err(std::io::Error::other("the held flush was never released"));
            }
        }
        self.inner.flush()
    }
    fn try_lock(&self, side: Side) -> std::io::Result<Result<(), String>> {
        self.inner.try_lock(side)
    }
    fn unlock(&self, side: Side) {
        self.inner.unlock(side)
    }
}

/// Releases a held flush when dropped.
pub(crate) struct Release(pub(crate) HeldFlush);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.release();
    }
}
