//! What a device already holds, looked at before `create` or `erase`
//! overwrites it. Both commands use this module, and neither uses the
//! other's internals through it, so the dependency runs one way:
//! `create` -> `erase` -> `contents`.

use shared_block_ring::{format, AlignedBuf, BlockDevice};

/// Whether sector 0 of `device` holds the ring signature.
pub fn holds_ring(device: &dyn BlockDevice) -> bool {
    let mut sector = AlignedBuf::zeroed(device.sector_size());
    device.sectors() > 0
        && device.read(0, &mut sector).is_ok()
        && format::check_signature(&sector).is_ok()
}
