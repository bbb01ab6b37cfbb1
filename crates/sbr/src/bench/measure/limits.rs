//! Step 1: the device's own limits, measured through the same
//! `BlockDevice` the rings use (same file, same open flags: O_DIRECT, and
//! `write_durable`, which is `pwritev2(RWF_DSYNC)` on a file and a FUA
//! write on NBD).

use std::time::{Duration, Instant};

use serde::Serialize;
use shared_block_ring::{AlignedBuf, BlockDevice};

use super::clock::median;
use super::{BenchError, Config};

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

/// One of the device's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Small O_DSYNC writes per second.
    DsyncSmall,
    /// 64 KiB O_DSYNC writes per second.
    Dsync64k,
    /// 1 MiB O_DSYNC writes, MB/s.
    DsyncBw,
    /// Small O_DIRECT writes per second, no O_DSYNC.
    SmallWrite,
    /// Small O_DIRECT reads per second.
    SmallRead,
    /// 1 MiB O_DIRECT reads, MB/s.
    ReadBw,
}

impl Metric {
    /// All of them, in the order of the table.
    pub const ALL: [Metric; 6] = [
        Metric::DsyncSmall,
        Metric::Dsync64k,
        Metric::DsyncBw,
        Metric::SmallWrite,
        Metric::SmallRead,
        Metric::ReadBw,
    ];
}

impl Limits {
    /// These limits with `m` set to `v`.
    pub fn with(mut self, m: Metric, v: f64) -> Limits {
        let slot = match m {
            Metric::DsyncSmall => &mut self.dsync_small_writes_per_s,
            Metric::Dsync64k => &mut self.dsync_64k_writes_per_s,
            Metric::DsyncBw => &mut self.dsync_1m_write_mb_per_s,
            Metric::SmallWrite => &mut self.small_writes_per_s,
            Metric::SmallRead => &mut self.small_reads_per_s,
            Metric::ReadBw => &mut self.read_1m_mb_per_s,
        };
        *slot = v;
        self
    }
}

/// Measures limits on a scratch region of a device: sectors
/// `start..start + sectors`, which nothing else uses.
pub struct Meter {
    device: Box<dyn BlockDevice>,
    start: u64,
    sectors: u64,
    small: usize,
    buf: AlignedBuf,
}

impl Meter {
    /// A meter over the region; it must hold at least 2 MiB.
    pub fn new(
        device: Box<dyn BlockDevice>,
        start: u64,
        sectors: u64,
    ) -> Result<Meter, BenchError> {
        let ss = device.sector_size();
        if sectors * (ss as u64) < 2 << 20 {
            return Err(BenchError::msg(format!(
                "{}: too small for the bench (a scratch area of at least 2 MiB is needed)",
                device.describe()
            )));
        }
        let mut buf = AlignedBuf::zeroed(1 << 20);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (i % 253) as u8;
        }
        Ok(Meter {
            small: ss.max(512),
            device,
            start,
            sectors,
            buf,
        })
    }

    /// Measures `m` for `budget` (at least two operations): one sample,
    /// in the unit of [`Limits`].
    pub fn sample(&mut self, m: Metric, budget: Duration) -> Result<f64, BenchError> {
        let ss = self.device.sector_size();
        let (len, op) = match m {
            Metric::DsyncSmall => (self.small, "O_DSYNC write"),
            Metric::Dsync64k => (64 << 10, "O_DSYNC write"),
            Metric::DsyncBw => (1 << 20, "O_DSYNC write"),
            Metric::SmallWrite => (self.small, "write"),
            Metric::SmallRead => (self.small, "read"),
            Metric::ReadBw => (1 << 20, "read"),
        };
        let step = (len / ss) as u64;
        let slots = (self.sectors / step).max(1);
        let start = Instant::now();
        let mut n = 0u64;
        while n < 2 || start.elapsed() < budget {
            let sector = self.start + (n % slots) * step;
            let buf = &mut self.buf[..len];
            let r = match m {
                Metric::DsyncSmall | Metric::Dsync64k | Metric::DsyncBw => {
                    self.device.write_durable(sector, buf)
                }
                Metric::SmallWrite => self.device.write(sector, buf),
                Metric::SmallRead | Metric::ReadBw => self.device.read(sector, buf),
            };
            r.map_err(|e| {
                BenchError::msg(format!(
                    "{}: {op} of {len} bytes at sector {sector}: {e}",
                    self.device.describe()
                ))
            })?;
            n += 1;
        }
        if m == Metric::SmallWrite {
            // Writes left unflushed must not linger in a cache that the
            // next measurement (or a ring) would pay to flush.
            self.device
                .flush()
                .map_err(|e| BenchError::msg(format!("{}: flush: {e}", self.device.describe())))?;
        }
        let per_s = n as f64 / start.elapsed().as_secs_f64();
        Ok(match m {
            Metric::DsyncBw | Metric::ReadBw => per_s * len as f64 / 1e6,
            _ => per_s,
        })
    }

    /// A latency floor once: `writes` durable small writes (two for T5,
    /// one for format 2's T10) and one small read, back to back, on
    /// consecutive small slots at the start of the scratch area;
    /// microseconds. Timed after the same idle pause as an idle ring's
    /// items, it is what the device itself takes for those operations in
    /// that state.
    pub fn floor_once(&mut self, writes: usize) -> Result<f64, BenchError> {
        let len = self.small;
        let step = (len / self.device.sector_size()) as u64;
        let start = Instant::now();
        for i in 0..=writes {
            let op = if i < writes { "O_DSYNC write" } else { "read" };
            let sector = self.start + i as u64 * step;
            let buf = &mut self.buf[..len];
            let r = if i < writes {
                self.device.write_durable(sector, buf)
            } else {
                self.device.read(sector, buf)
            };
            r.map_err(|e| {
                BenchError::msg(format!(
                    "{}: {op} of {len} bytes at sector {sector}: {e}",
                    self.device.describe()
                ))
            })?;
        }
        Ok(start.elapsed().as_secs_f64() * 1e6)
    }

    /// Every limit, each the median of `cfg.reps` samples of
    /// `cfg.limit_budget`.
    pub fn measure(&mut self, cfg: &Config) -> Result<Limits, BenchError> {
        let mut limits = Limits {
            small_bytes: self.small,
            dsync_small_writes_per_s: 0.0,
            dsync_64k_writes_per_s: 0.0,
            dsync_1m_write_mb_per_s: 0.0,
            small_writes_per_s: 0.0,
            small_reads_per_s: 0.0,
            read_1m_mb_per_s: 0.0,
        };
        for m in Metric::ALL {
            let mut samples = Vec::new();
            for _ in 0..cfg.reps {
                samples.push(self.sample(m, cfg.limit_budget)?);
            }
            limits = limits.with(m, median(&mut samples));
        }
        Ok(limits)
    }
}
