//! The bench's devices: how every device is opened (`--sector-size`,
//! `--buffered`), a wrapper that counts each device operation (the round
//! trips the table reports), where the rings live, and the bench's own
//! files.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use shared_block_ring::device::{self, BlockDevice, ChainError, Io, Op};
use shared_block_ring::{layout, AlignedBuf, FileDevice, FileOptions, Side};

use super::BenchError;
use crate::common::OpenArgs;

/// Device operations counted on one handle. Each read, write, durable
/// write and flush is one round trip to the device: the caller waits for
/// it before going on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoCounts {
    /// Reads.
    pub reads: u64,
    /// Plain writes (visible to others, not yet durable).
    pub writes: u64,
    /// Durable writes (`pwritev2(RWF_DSYNC)`, an NBD write with FUA): one
    /// round trip that is also a cache flush.
    pub durable_writes: u64,
    /// `flush` calls.
    pub flushes: u64,
    /// Writes of the producer sector, durable or not: publications.
    pub producer_sector_writes: u64,
    /// Writes of the consumer sector: releases.
    pub consumer_sector_writes: u64,
    /// Durable writes of the producer sector: full `advance`s (and
    /// `sync`s), each paying its own flush.
    pub durable_producer_sector_writes: u64,
    /// Operations that went in flight with another one of the same
    /// `transfer` (all of a transfer's but one, on a device that runs them
    /// together): counted above, but not a round trip of their own.
    #[serde(default)]
    pub overlapped: u64,
}

impl IoCounts {
    /// Device round trips: every operation, less those in flight with
    /// another of the same transfer.
    pub fn round_trips(&self) -> u64 {
        (self.reads + self.writes + self.durable_writes + self.flushes)
            .saturating_sub(self.overlapped)
    }

    /// Cache flushes: `flush` calls plus durable writes (each is one).
    pub fn cache_flushes(&self) -> u64 {
        self.flushes + self.durable_writes
    }

    /// Writes of item data: every write but those of the state sectors.
    pub fn data_writes(&self) -> u64 {
        self.writes + self.durable_writes
            - self.producer_sector_writes
            - self.consumer_sector_writes
    }

    /// What happened between `earlier` and `self`.
    pub fn since(self, earlier: IoCounts) -> IoCounts {
        self.zip(earlier, |a, b| a - b)
    }

    fn zip(self, o: IoCounts, f: impl Fn(u64, u64) -> u64) -> IoCounts {
        IoCounts {
            reads: f(self.reads, o.reads),
            writes: f(self.writes, o.writes),
            durable_writes: f(self.durable_writes, o.durable_writes),
            flushes: f(self.flushes, o.flushes),
            producer_sector_writes: f(self.producer_sector_writes, o.producer_sector_writes),
            consumer_sector_writes: f(self.consumer_sector_writes, o.consumer_sector_writes),
            durable_producer_sector_writes: f(
                self.durable_producer_sector_writes,
                o.durable_producer_sector_writes,
            ),
            overlapped: f(self.overlapped, o.overlapped),
        }
    }
}

impl std::ops::Add for IoCounts {
    type Output = IoCounts;
    fn add(self, o: IoCounts) -> IoCounts {
        self.zip(o, |a, b| a + b)
    }
}

impl std::ops::AddAssign for IoCounts {
    fn add_assign(&mut self, o: IoCounts) {
        *self = *self + o;
    }
}

/// The counters of one device handle, shared with whoever reads them.
#[derive(Debug, Default)]
pub struct IoStats {
    reads: AtomicU64,
    writes: AtomicU64,
    durable_writes: AtomicU64,
    flushes: AtomicU64,
    producer_sector_writes: AtomicU64,
    consumer_sector_writes: AtomicU64,
    durable_producer_sector_writes: AtomicU64,
    overlapped: AtomicU64,
}

impl IoStats {
    /// The counts now.
    pub fn snapshot(&self) -> IoCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        IoCounts {
            reads: get(&self.reads),
            writes: get(&self.writes),
            durable_writes: get(&self.durable_writes),
            flushes: get(&self.flushes),
            producer_sector_writes: get(&self.producer_sector_writes),
            consumer_sector_writes: get(&self.consumer_sector_writes),
            durable_producer_sector_writes: get(&self.durable_producer_sector_writes),
            overlapped: get(&self.overlapped),
        }
    }

    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn wrote(&self, sector: u64, durable: bool) {
        Self::bump(if durable {
            &self.durable_writes
        } else {
            &self.writes
        });
        if sector == Side::Producer.sector() {
            Self::bump(&self.producer_sector_writes);
            if durable {
                Self::bump(&self.durable_producer_sector_writes);
            }
        } else if sector == Side::Consumer.sector() {
            Self::bump(&self.consumer_sector_writes);
        }
    }
}

/// A device that counts its operations and state-sector writes, so that
/// each row can say how many round trips and flushes a publication or a
/// release cost, and that may show only the first sectors of the device
/// (the rest is the bench's scratch area, where device limits are measured
/// while a ring is in use). The counting is a few relaxed atomic
/// increments per operation. Not the library's `FaultDevice`, whose
/// `counts()` would serve but which keeps a copy of every unflushed write
/// for its crash model under a lock: too slow to measure with.
pub struct Counted {
    inner: Box<dyn BlockDevice>,
    stats: Arc<IoStats>,
    sectors: u64,
}

/// The device type every ring in the bench uses.
pub type Dev = Counted;

impl Counted {
    /// Counts `inner`'s I/O in a new set of counters; shows its first
    /// `sectors` sectors (all of them with `None`).
    pub fn new(inner: Box<dyn BlockDevice>, sectors: Option<u64>) -> Counted {
        let all = inner.sectors();
        Counted {
            inner,
            stats: Arc::new(IoStats::default()),
            sectors: sectors.map_or(all, |s| s.min(all)),
        }
    }

    /// The counters, shared with the device.
    pub fn stats(&self) -> Arc<IoStats> {
        self.stats.clone()
    }
}

impl BlockDevice for Counted {
    fn sector_size(&self) -> usize {
        self.inner.sector_size()
    }
    fn sectors(&self) -> u64 {
        self.sectors
    }
    fn read(&self, sector: u64, buf: &mut [u8]) -> io::Result<()> {
        IoStats::bump(&self.stats.reads);
        self.inner.read(sector, buf)
    }
    fn write(&self, sector: u64, buf: &[u8]) -> io::Result<()> {
        self.stats.wrote(sector, false);
        self.inner.write(sector, buf)
    }
    fn write_durable(&self, sector: u64, buf: &[u8]) -> io::Result<()> {
        self.stats.wrote(sector, true);
        self.inner.write_durable(sector, buf)
    }
    fn flush(&self) -> io::Result<()> {
        IoStats::bump(&self.stats.flushes);
        self.inner.flush()
    }
    /// Counted as its writes and reads, and as one round trip where the
    /// device has them in flight together (io_uring, NBD).
    fn transfer(&self, writes: &[(u64, &[u8])], reads: &mut [(u64, &mut [u8])]) -> io::Result<()> {
        for &(sector, _) in writes {
            self.stats.wrote(sector, false);
        }
        for _ in reads.iter() {
            IoStats::bump(&self.stats.reads);
        }
        let ops = (writes.len() + reads.len()) as u64;
        if ops > 1 && self.inner.transfers_together() {
            self.stats.overlapped.fetch_add(ops - 1, Ordering::Relaxed);
        }
        self.inner.transfer(writes, reads)
    }
    fn transfers_together(&self) -> bool {
        self.inner.transfers_together()
    }
    /// Counted as its operations (one submission on io_uring).
    fn chain(&self, ops: &mut [Op<'_>]) -> Result<(), ChainError> {
        for op in ops.iter() {
            match op {
                Op::Read { .. } => IoStats::bump(&self.stats.reads),
                Op::Write { sector, .. } => self.stats.wrote(*sector, false),
                Op::WriteDurable { sector, .. } => self.stats.wrote(*sector, true),
                Op::Flush => IoStats::bump(&self.stats.flushes),
            }
        }
        self.inner.chain(ops)
    }
    fn is_read_only(&self) -> bool {
        self.inner.is_read_only()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn try_lock(&self, side: Side) -> io::Result<Result<(), String>> {
        self.inner.try_lock(side)
    }
    fn unlock(&self, side: Side) {
        self.inner.unlock(side)
    }
    fn wait_for_change(&self, timeout: std::time::Duration) -> bool {
        self.inner.wait_for_change(timeout)
    }
    fn notifies_changes(&self) -> bool {
        self.inner.notifies_changes()
    }
}

/// How the bench opens every device, from `--sector-size`, `--buffered`
/// and `--io`: in this process, and in the `sbr` children it starts (the
/// latency peer, `sbr produce`, `sbr consume`). An option added to
/// [`OpenArgs`] reaches every ring of the bench through
/// [`OpenArgs::file_options`] and the lines of `new`.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// The options of every open.
    pub options: FileOptions,
    /// The same, as arguments of an `sbr` device command.
    pub child_args: Vec<String>,
    /// The I/O path files and block devices take (`--io`, resolved):
    /// [`Io::Sync`] or [`Io::Uring`].
    pub io: Io,
}

impl Access {
    /// As the command line asks.
    ///
    /// # Errors
    /// `--io uring` where the kernel has no io_uring.
    pub fn new(open: &OpenArgs) -> Result<Access, BenchError> {
        let mut child_args = Vec::new();
        if let Some(ss) = open.sector_size {
            child_args.extend(["--sector-size".to_string(), ss.to_string()]);
        }
        if open.buffered {
            child_args.push("--buffered".into());
        }
        let access = Access {
            options: open.file_options(),
            child_args,
            io: Io::Sync,
        };
        let io = open
            .io
            .map_or(Io::Auto, Io::from)
            .effective()
            .map_err(|e| BenchError::msg(format!("--io: {e}")))?;
        Ok(access.with_io(io))
    }

    /// The same, on the I/O path `io` (sync or uring), children included.
    pub fn with_io(&self, io: Io) -> Access {
        let mut child_args: Vec<String> = Vec::new();
        let mut args = self.child_args.iter();
        while let Some(a) = args.next() {
            if a == "--io" {
                args.next();
            } else {
                child_args.push(a.clone());
            }
        }
        child_args.extend(["--io".to_string(), io.name().to_string()]);
        Access {
            options: self.options.clone().io(io),
            child_args,
            io,
        }
    }

    /// The other I/O path, when this kernel offers both.
    pub fn other_io(&self) -> Option<Io> {
        let other = match self.io {
            Io::Uring => Io::Sync,
            _ => Io::Uring,
        };
        other.effective().ok().map(|_| other)
    }

    /// Opens `spec` as the ring's users do: a file or block device with
    /// these options, a new connection for NBD.
    pub fn open(&self, spec: &str) -> Result<Box<dyn BlockDevice>, BenchError> {
        device::open(spec, &self.options).map_err(|e| BenchError::ring(spec, e))
    }
}

/// Where the bench's rings live: a device spec, how many of its sectors
/// the ring may use (the rest is scratch space), and how to open it.
#[derive(Debug, Clone)]
pub struct RingDev {
    /// The device spec (path or URI).
    pub spec: String,
    /// The sectors the ring spans; `None`: the whole device.
    pub sectors: Option<u64>,
    /// How to open it.
    pub access: Access,
}

impl RingDev {
    /// Opens a new handle, with counters.
    pub fn open(&self) -> Result<Dev, BenchError> {
        Ok(Counted::new(self.access.open(&self.spec)?, self.sectors))
    }

    /// Makes the device hold a new, empty ring (positions 0), whatever it
    /// held: blanks the signature, then creates. Nobody may be attached.
    pub fn fresh(&self) -> Result<(), BenchError> {
        self.fresh_format(shared_block_ring::RingFormat::V1)
    }

    /// [`fresh`](Self::fresh), with a ring of `format` (a format-2 ring
    /// gets a new ring id: whatever an earlier ring left is never taken
    /// for its records).
    pub fn fresh_format(&self, format: shared_block_ring::RingFormat) -> Result<(), BenchError> {
        let d = self.open()?;
        let blank = AlignedBuf::zeroed(d.sector_size());
        d.write_durable(layout::SIGNATURE_SECTOR, &blank)
            .map_err(|e| BenchError::io(&self.spec, "blanking the signature", e))?;
        let options = shared_block_ring::Options::new().format(format);
        shared_block_ring::create_with(&d, &options)
            .map_err(|e| BenchError::ring(&self.spec, e))?;
        Ok(())
    }
}

/// Creates `path` with `bytes` zero bytes, written in full (never
/// sparse, never just allocated: O_DIRECT writes into unwritten extents
/// make the filesystem journal each extent change), as `sbr create` does,
/// then drops its pages from the page cache: an O_DIRECT write over cached
/// pages must invalidate them first, which would slow the first pass over
/// the file and make it unlike a device nobody read through the cache.
pub fn make_file(path: &Path, bytes: u64) -> Result<(), BenchError> {
    let name = path.display().to_string();
    crate::create::make_file(&name, bytes, 0o600).map_err(|f| BenchError::msg(f.message))?;
    let file = std::fs::File::open(path).map_err(|e| BenchError::io(&name, "opening", e))?;
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed)
        .map_err(|e| BenchError::io(&name, "dropping cached pages", e.into()))?;
    Ok(())
}

/// A directory for the bench's files on a filesystem that takes O_DIRECT
/// (or any, with `--buffered`).
pub fn work_dir(asked: Option<&Path>, access: &Access) -> Result<tempfile::TempDir, BenchError> {
    let candidates: Vec<PathBuf> = match asked {
        Some(d) => vec![d.to_path_buf()],
        None => {
            let mut v = vec![std::env::temp_dir()];
            if let Ok(cwd) = std::env::current_dir() {
                v.push(cwd);
            }
            v
        }
    };
    let mut why = Vec::new();
    for base in candidates {
        let dir = match tempfile::Builder::new()
            .prefix("sbr-bench-")
            .tempdir_in(&base)
        {
            Ok(d) => d,
            Err(e) => {
                why.push(format!("{}: {e}", base.display()));
                continue;
            }
        };
        let probe = dir.path().join("probe");
        let probed = std::fs::write(&probe, vec![0u8; layout::MAX_SECTOR_SIZE])
            .map_err(|e| e.to_string())
            .and_then(|()| {
                FileDevice::open_with(&probe, &access.options)
                    .map(drop)
                    .map_err(|e| e.to_string())
            });
        let _ = std::fs::remove_file(&probe);
        match probed {
            Ok(()) => return Ok(dir),
            Err(e) => {
                if asked.is_none() {
                    eprintln!("note: {}: {e}; trying elsewhere", base.display());
                }
                why.push(e);
            }
        }
    }
    Err(BenchError::msg(format!(
        "no directory for the bench's files supports O_DIRECT ({}); pass --dir on a disk filesystem, or --buffered",
        why.join("; ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_block_ring::MemDevice;

    /// A memory device that says its transfers go together, or not.
    struct Together(MemDevice, bool);

    impl BlockDevice for Together {
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
            self.0.flush()
        }
        fn transfers_together(&self) -> bool {
            self.1
        }
    }

    #[test]
    fn a_transfer_is_one_round_trip_only_where_its_operations_go_together() {
        for (together, trips) in [(true, 2), (false, 4)] {
            let d = Counted::new(Box::new(Together(MemDevice::new(512, 8), together)), None);
            let stats = d.stats();
            let buf = vec![7u8; 512];
            let mut into = vec![0u8; 512];
            // A transfer of two writes and a read, then a flush.
            d.transfer(&[(3, &buf), (4, &buf)], &mut [(5, &mut into[..])])
                .unwrap();
            d.flush().unwrap();
            let io = stats.snapshot();
            assert_eq!((io.writes, io.reads, io.flushes), (2, 1, 1));
            assert_eq!(io.round_trips(), trips, "together: {together}");
        }
    }
}
