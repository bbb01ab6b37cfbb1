//! Step 1: the device's own limits, measured through the same
//! `BlockDevice` the rings use (same file, same open flags: O_DIRECT, and
//! `write_durable`, which is `pwritev2(RWF_DSYNC)` on a file and a FUA
//! write on NBD).

use std::time::Instant;

use serde::Serialize;
use shared_block_ring::{AlignedBuf, BlockDevice};

use super::{median, BenchError, Config};

/// The device's limits; every rate is a median of the configured
/// repetitions.
#[derive(Debug, Clone, Serialize)]
pub struct Limits {
    /// The size of the "small" I/O below: 512 bytes, or the device's
    /// sector size when larger.
    pub small_bytes: usize,
    /// O_DSYNC (durable) writes of `small_bytes` per second: one cache
    /// flush each.
    pub dsync_small_writes_per_s: f64,
    /// O_DSYNC writes of 64 KiB per second.
    pub dsync_64k_writes_per_s: f64,
    /// O_DSYNC writes of 1 MiB, in MB/s (10^6 bytes).
    pub dsync_1m_write_mb_per_s: f64,
    /// O_DIRECT writes of `small_bytes` per second without O_DSYNC (no
    /// flush: what the process-crash mode pays per write). Not among the
    /// issue's list, measured for the process-crash rows' limits.
    pub small_writes_per_s: f64,
    /// O_DIRECT reads of `small_bytes` per second.
    pub small_reads_per_s: f64,
    /// O_DIRECT reads of 1 MiB, in MB/s.
    pub read_1m_mb_per_s: f64,
}

impl Limits {
    /// Durable write bandwidth in bytes/s.
    pub fn write_bw(&self) -> f64 {
        self.dsync_1m_write_mb_per_s * 1e6
    }

    /// Read bandwidth in bytes/s.
    pub fn read_bw(&self) -> f64 {
        self.read_1m_mb_per_s * 1e6
    }

    /// Lines for the table.
    pub fn lines(&self) -> Vec<String> {
        vec![
            format!(
                "O_DSYNC write {:>7} B: {:>10.0} writes/s ({:.2} ms each)",
                self.small_bytes,
                self.dsync_small_writes_per_s,
                1e3 / self.dsync_small_writes_per_s
            ),
            format!(
                "O_DSYNC write   64 KiB: {:>10.0} writes/s ({:.1} MB/s)",
                self.dsync_64k_writes_per_s,
                self.dsync_64k_writes_per_s * 65536.0 / 1e6
            ),
            format!(
                "O_DSYNC write    1 MiB: {:>10.1} MB/s",
                self.dsync_1m_write_mb_per_s
            ),
            format!(
                "O_DIRECT write {:>6} B: {:>10.0} writes/s ({:.0} us each; no O_DSYNC)",
                self.small_bytes,
                self.small_writes_per_s,
                1e6 / self.small_writes_per_s
            ),
            format!(
                "O_DIRECT read {:>7} B: {:>10.0} reads/s ({:.0} us each)",
                self.small_bytes,
                self.small_reads_per_s,
                1e6 / self.small_reads_per_s
            ),
            format!(
                "O_DIRECT read    1 MiB: {:>10.1} MB/s",
                self.read_1m_mb_per_s
            ),
        ]
    }
}

/// Measures `device`'s limits. Overwrites its first 64 MiB (or all of it,
/// when smaller) except sector 0.
pub fn measure(device: &dyn BlockDevice, cfg: &Config) -> Result<Limits, BenchError> {
    let ss = device.sector_size();
    let small = ss.max(512);
    let region_bytes = (device.sectors().saturating_sub(8) * ss as u64).min(64 << 20);
    if region_bytes < 2 << 20 {
        return Err(BenchError::msg(format!(
            "{}: too small for the bench ({} bytes; at least 4 MiB are needed)",
            device.describe(),
            device.sectors() * ss as u64
        )));
    }
    let mut buf = AlignedBuf::zeroed(1 << 20);
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (i % 253) as u8;
    }
    #[derive(Clone, Copy, PartialEq)]
    enum Op {
        DurableWrite,
        Write,
        Read,
    }
    let run = |len: usize, op: Op, buf: &mut AlignedBuf| -> Result<f64, BenchError> {
        let per_region = (region_bytes / len as u64).max(1);
        let step = (len / ss) as u64;
        let mut rates = Vec::new();
        for _ in 0..cfg.reps {
            let start = Instant::now();
            let mut n = 0u64;
            while n < 2 || start.elapsed() < cfg.budget {
                let sector = 8 + (n % per_region) * step;
                let r = match op {
                    Op::DurableWrite => device.write_durable(sector, &buf[..len]),
                    Op::Write => device.write(sector, &buf[..len]),
                    Op::Read => device.read(sector, &mut buf[..len]),
                };
                r.map_err(|e| {
                    BenchError::msg(format!(
                        "{}: {} of {len} bytes at sector {sector}: {e}",
                        device.describe(),
                        match op {
                            Op::DurableWrite => "O_DSYNC write",
                            Op::Write => "write",
                            Op::Read => "read",
                        }
                    ))
                })?;
                n += 1;
            }
            rates.push(n as f64 / start.elapsed().as_secs_f64());
        }
        Ok(median(&mut rates))
    };
    let dsync_small = run(small, Op::DurableWrite, &mut buf)?;
    let dsync_64k = run(64 << 10, Op::DurableWrite, &mut buf)?;
    let dsync_1m = run(1 << 20, Op::DurableWrite, &mut buf)? * (1 << 20) as f64 / 1e6;
    let write_small = run(small, Op::Write, &mut buf)?;
    // What was written without a flush must not linger in a cache that
    // the next measurement (or the rings) would pay to flush.
    device
        .flush()
        .map_err(|e| BenchError::msg(format!("{}: flush: {e}", device.describe())))?;
    let read_small = run(small, Op::Read, &mut buf)?;
    let read_1m = run(1 << 20, Op::Read, &mut buf)? * (1 << 20) as f64 / 1e6;
    Ok(Limits {
        small_bytes: small,
        dsync_small_writes_per_s: dsync_small,
        dsync_64k_writes_per_s: dsync_64k,
        dsync_1m_write_mb_per_s: dsync_1m,
        small_writes_per_s: write_small,
        small_reads_per_s: read_small,
        read_1m_mb_per_s: read_1m,
    })
}
