//! What every measurement uses: a device that counts its I/O, fresh rings,
//! a stopwatch that can be paused, child processes that are always
//! stopped, and clocks.

use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shared_block_ring::device::{self, BlockDevice};
use shared_block_ring::{create, layout, AlignedBuf, FileOptions, Side};

use super::BenchError;

/// Counters of one device handle.
#[derive(Debug, Default)]
pub struct IoStats {
    reads: AtomicU64,
    writes: AtomicU64,
    flushes: AtomicU64,
    producer_sector_writes: AtomicU64,
    consumer_sector_writes: AtomicU64,
    durable_producer_sector_writes: AtomicU64,
}

/// A snapshot of [`IoStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoCounts {
    /// Read calls.
    pub reads: u64,
    /// Write calls, durable or not.
    pub writes: u64,
    /// Cache flushes: `flush` calls plus durable writes (each is one).
    pub flushes: u64,
    /// Writes of the producer sector: producer publications.
    pub producer_sector_writes: u64,
    /// Writes of the consumer sector: consumer releases.
    pub consumer_sector_writes: u64,
    /// Durable writes of the producer sector: full `advance`s (and
    /// `sync`s), each paying its own flush.
    pub durable_producer_sector_writes: u64,
}

impl IoCounts {
    /// What happened between `earlier` and `self`.
    pub fn since(self, earlier: IoCounts) -> IoCounts {
        IoCounts {
            reads: self.reads - earlier.reads,
            writes: self.writes - earlier.writes,
            flushes: self.flushes - earlier.flushes,
            producer_sector_writes: self.producer_sector_writes - earlier.producer_sector_writes,
            consumer_sector_writes: self.consumer_sector_writes - earlier.consumer_sector_writes,
            durable_producer_sector_writes: self.durable_producer_sector_writes
                - earlier.durable_producer_sector_writes,
        }
    }
}

impl IoStats {
    /// The counts now.
    pub fn snapshot(&self) -> IoCounts {
        IoCounts {
            reads: self.reads.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            flushes: self.flushes.load(Ordering::Relaxed),
            producer_sector_writes: self.producer_sector_writes.load(Ordering::Relaxed),
            consumer_sector_writes: self.consumer_sector_writes.load(Ordering::Relaxed),
            durable_producer_sector_writes: self
                .durable_producer_sector_writes
                .load(Ordering::Relaxed),
        }
    }

    fn wrote(&self, sector: u64) {
        self.writes.fetch_add(1, Ordering::Relaxed);
        if sector == Side::Producer.sector() {
            self.producer_sector_writes.fetch_add(1, Ordering::Relaxed);
        } else if sector == Side::Consumer.sector() {
            self.consumer_sector_writes.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A device that counts reads, writes, flushes and state-sector writes,
/// so that each row can say how many flushes a publication cost, and that
/// may show only the first sectors of the device (the rest is the bench's
/// scratch area, where device limits are measured while a ring is in
/// use). The counting is a few relaxed atomic increments per I/O.
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
        self.stats.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.read(sector, buf)
    }
    fn write(&self, sector: u64, buf: &[u8]) -> io::Result<()> {
        self.stats.wrote(sector);
        self.inner.write(sector, buf)
    }
    fn write_durable(&self, sector: u64, buf: &[u8]) -> io::Result<()> {
        self.stats.wrote(sector);
        if sector == Side::Producer.sector() {
            self.stats
                .durable_producer_sector_writes
                .fetch_add(1, Ordering::Relaxed);
        }
        self.stats.flushes.fetch_add(1, Ordering::Relaxed);
        self.inner.write_durable(sector, buf)
    }
    fn flush(&self) -> io::Result<()> {
        self.stats.flushes.fetch_add(1, Ordering::Relaxed);
        self.inner.flush()
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

/// Opens `spec` as the ring's users do: O_DIRECT for files, a new
/// connection for NBD.
pub fn open(spec: &str) -> Result<Box<dyn BlockDevice>, BenchError> {
    device::open(spec, &FileOptions::new()).map_err(|e| BenchError::ring(spec, e))
}

/// Where the bench's rings live: a device spec, and how many of its
/// sectors the ring may use (the rest is scratch space).
#[derive(Debug, Clone)]
pub struct RingDev {
    /// The device spec (path or URI).
    pub spec: String,
    /// The sectors the ring spans; `None`: the whole device.
    pub sectors: Option<u64>,
}

impl RingDev {
    /// The whole of `spec`.
    pub fn whole(spec: &str) -> RingDev {
        RingDev {
            spec: spec.into(),
            sectors: None,
        }
    }

    /// Opens a new handle, with counters.
    pub fn open(&self) -> Result<Dev, BenchError> {
        Ok(Counted::new(open(&self.spec)?, self.sectors))
    }

    /// Makes the device hold a new, empty ring (positions 0), whatever it
    /// held: blanks the signature, then creates. Nobody may be attached.
    pub fn fresh(&self) -> Result<(), BenchError> {
        let d = self.open()?;
        let blank = AlignedBuf::zeroed(d.sector_size());
        d.write_durable(layout::SIGNATURE_SECTOR, &blank)
            .map_err(|e| BenchError::io(&self.spec, "blanking the signature", e))?;
        create(&d).map_err(|e| BenchError::ring(&self.spec, e))?;
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

/// A stopwatch that can leave out set-up work done in the middle of a
/// measurement (refilling or emptying the ring).
pub struct Stopwatch {
    since: Option<Instant>,
    total: Duration,
}

impl Stopwatch {
    /// Started now.
    pub fn start() -> Stopwatch {
        Stopwatch {
            since: Some(Instant::now()),
            total: Duration::ZERO,
        }
    }

    /// Stops counting.
    pub fn pause(&mut self) {
        if let Some(s) = self.since.take() {
            self.total += s.elapsed();
        }
    }

    /// Counts again.
    pub fn resume(&mut self) {
        if self.since.is_none() {
            self.since = Some(Instant::now());
        }
    }

    /// Time counted so far.
    pub fn elapsed(&self) -> Duration {
        self.total + self.since.map_or(Duration::ZERO, |s| s.elapsed())
    }
}

/// CLOCK_MONOTONIC in nanoseconds: shared by every process on the host,
/// so a time taken by one process can be compared with another's.
pub fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// CPU time used by the calling thread.
pub fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Makes a child process die with the bench (SIGKILL when the thread that
/// started it ends), so that an interrupted bench leaves no server or peer
/// behind; [`ChildGuard`] stops it on every normal path.
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag of the calling
    // (child) process; it allocates nothing and is async-signal-safe, as
    // code between fork and exec must be.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// A child process, killed and reaped when dropped unless it was reaped.
pub struct ChildGuard {
    child: Option<Child>,
    what: String,
    status: Option<std::process::ExitStatus>,
    peak: Option<u64>,
}

impl ChildGuard {
    /// Guards `child`, named `what` in messages.
    pub fn new(child: Child, what: impl Into<String>) -> ChildGuard {
        ChildGuard {
            child: Some(child),
            what: what.into(),
            status: None,
            peak: None,
        }
    }

    /// The running child.
    pub fn child(&mut self) -> &mut Child {
        self.child
            .as_mut()
            .expect("a guarded child is present until reaped")
    }

    /// Looks at the child once: notes its peak resident set size, and
    /// reaps it if it has exited. Returns its exit status once it has.
    ///
    /// The peak is the `VmHWM` of `/proc/PID/status` (the last reading
    /// before the child exits is the answer). Not wait4's `ru_maxrss`:
    /// Linux carries the parent's high-water mark over fork and exec into
    /// the child's, so that a child of a large bench process would look as
    /// large as the bench.
    pub fn poll(&mut self) -> Result<Option<std::process::ExitStatus>, BenchError> {
        let Some(child) = self.child.as_mut() else {
            return Ok(self.status);
        };
        // The child is not reaped before `try_wait` below says so, so its
        // pid cannot belong to anyone else while we read.
        if let Some(hwm) = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
            .ok()
            .as_deref()
            .and_then(vm_hwm)
        {
            self.peak = Some(self.peak.map_or(hwm, |p| p.max(hwm)));
        }
        let waited = child
            .try_wait()
            .map_err(|e| BenchError::msg(format!("waiting for {}: {e}", self.what)))?;
        if let Some(status) = waited {
            self.child = None;
            self.status = Some(status);
        }
        Ok(self.status)
    }

    /// The highest resident set size seen by [`poll`](Self::poll), in
    /// bytes.
    pub fn peak(&self) -> Option<u64> {
        self.peak
    }

    /// Waits for the child, for at most `limit` (then kills it), polling
    /// every 2 ms; returns its exit status.
    pub fn wait(&mut self, limit: Duration) -> Result<std::process::ExitStatus, BenchError> {
        wait_all(&mut [self], limit).map(|s| s[0])
    }

    /// Kills and reaps the child, if it is still there.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits for all of `children`, for at most `limit` in all (then kills
/// those left), polling each every 2 ms so that each one's peak memory is
/// read until it exits.
pub fn wait_all(
    children: &mut [&mut ChildGuard],
    limit: Duration,
) -> Result<Vec<std::process::ExitStatus>, BenchError> {
    let deadline = Instant::now() + limit;
    loop {
        let mut done = Vec::new();
        for c in children.iter_mut() {
            if let Some(s) = c.poll()? {
                done.push(s);
            }
        }
        if done.len() == children.len() {
            return Ok(done);
        }
        if Instant::now() >= deadline {
            let mut late = Vec::new();
            for c in children.iter_mut() {
                if c.child.is_some() {
                    late.push(c.what.clone());
                    c.kill();
                }
            }
            return Err(BenchError::msg(format!(
                "{} did not finish within {limit:?}; killed",
                late.join(" and ")
            )));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `VmHWM` line of a `/proc/PID/status`, in bytes.
fn vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The item a bench writes: `payload` bytes, the first 8 (when there is
/// room) a sequence number, the rest a fixed pattern.
pub fn item(payload: usize) -> Vec<u8> {
    (0..payload).map(|i| (i % 251) as u8).collect()
}

/// Stream bytes an item of `payload` bytes occupies in the ring.
pub fn stream_len(payload: usize) -> u64 {
    layout::item_stream_len(payload as u64)
}
