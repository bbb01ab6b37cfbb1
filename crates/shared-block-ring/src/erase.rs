//! Overwriting a whole device with a repeating pattern.
//!
//! The counterpart of the original's `EraseBlock`: used to wipe a device
//! before creating a ring on it, or to retire one. Writes go out in large
//! aligned chunks and are flushed at the end.

use crate::device::{AlignedBuf, BlockDevice};
use crate::error::{Error, IoOp, Result};

/// Bytes written per device write.
pub const CHUNK: usize = 1 << 20;

/// Overwrites every sector of `device` with `pattern` repeated from byte 0
/// (an empty pattern means zeroes), then flushes. `progress(done, total)`
/// is called after every chunk, with byte counts.
///
/// # Errors
/// [`Error::ReadOnly`], or the device error that stopped the erase (the
/// device is then partly erased).
pub fn erase<D: BlockDevice + ?Sized>(
    device: &D,
    pattern: &[u8],
    mut progress: impl FnMut(u64, u64),
) -> Result<()> {
    if device.is_read_only() {
        return Err(Error::ReadOnly);
    }
    let ss = device.sector_size();
    let total = device.sectors() * ss as u64;
    // A chunk is a whole number of sectors, and of pattern repetitions when
    // the pattern divides it, so one buffer serves every chunk when it can.
    let chunk_len = (CHUNK / ss).max(1) * ss;
    let mut buf = AlignedBuf::zeroed(chunk_len);
    let mut done = 0u64;
    let mut sector = 0u64;
    while done < total {
        let len = (total - done).min(chunk_len as u64) as usize;
        if !pattern.is_empty() {
            for (i, b) in buf[..len].iter_mut().enumerate() {
                *b = pattern[((done + i as u64) % pattern.len() as u64) as usize];
            }
        }
        device
            .write(sector, &buf[..len])
            .map_err(|e| Error::io(IoOp::Write, sector, e))?;
        done += len as u64;
        sector += (len / ss) as u64;
        progress(done, total);
    }
    device.flush().map_err(|e| Error::io(IoOp::Flush, 0, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemDevice;

    #[test]
    fn the_pattern_repeats_across_chunks_and_sectors() {
        let d = MemDevice::new(512, (CHUNK / 512 * 2 + 3) as u64);
        let mut calls = 0;
        erase(&d, b"abc", |done, total| {
            calls += 1;
            assert!(done <= total);
        })
        .unwrap();
        assert_eq!(calls, 3);
        let bytes = d.to_vec();
        assert!(bytes.iter().enumerate().all(|(i, &b)| b == b"abc"[i % 3]));
        erase(&d, b"", |_, _| {}).unwrap();
        assert!(d.to_vec().iter().all(|&b| b == 0));
    }
}
