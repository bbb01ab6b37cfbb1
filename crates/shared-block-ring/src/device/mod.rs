//! Block devices: the trait the ring is generic over, and its backends.
//!
//! A [`BlockDevice`] reads and writes whole sectors at a sector index and
//! flushes its write cache. That is all the ring needs, so any storage with
//! those three operations can carry a ring: [`FileDevice`] for regular files
//! and kernel block devices, [`NbdDevice`] for an export of a network block
//! device server (qemu-nbd, nbdkit), [`MemDevice`] for tests, and wrappers
//! such as the fault-injecting [`FaultDevice`].
//!
//! Buffers passed to a device should come from [`AlignedBuf`]: the file
//! backend then hands them straight to the kernel with O_DIRECT (no copy).
//! Other buffers work too, through a bounce buffer.

use std::io;
use std::sync::Arc;

use crate::error::{IoOp, Side};

mod aligned;
pub mod fault;
mod file;
mod mem;
mod nbd;
mod uring;

pub use aligned::AlignedBuf;
pub use fault::{CrashPoint, FaultDevice, FaultOp, OpCounts, UnflushedSector};
pub use file::{FileDevice, FileOptions, Io, IO_ENV, LOCK_GRACE};
pub use mem::MemDevice;
pub use nbd::{BlockSizes, NbdAddress, NbdDevice, NbdUri};

/// The error of a [`BlockDevice::transfer`] with both writes and reads,
/// saying which kind of operation failed, so that an error message names
/// the right one. It travels inside the [`io::Error`] the transfer returns
/// (of the same kind); [`split`](Self::split) takes it out again.
#[derive(Debug)]
pub struct TransferFailed {
    op: IoOp,
    error: io::Error,
}

impl TransferFailed {
    /// `error`, of a failed write (`op` [`IoOp::Write`]) or read
    /// ([`IoOp::Read`]) in a transfer, wrapped.
    pub fn wrap(op: IoOp, error: io::Error) -> io::Error {
        io::Error::new(error.kind(), TransferFailed { op, error })
    }

    /// `error` of a failed `op` in a transfer of `writes` and `reads`
    /// operations: wrapped when the transfer has both (otherwise the kind
    /// is plain).
    pub(crate) fn wrap_in(writes: usize, reads: usize, op: IoOp, error: io::Error) -> io::Error {
        if writes > 0 && reads > 0 {
            TransferFailed::wrap(op, error)
        } else {
            error
        }
    }

    /// Which kind of operation failed (`None` when the error does not
    /// say), and that operation's own error.
    pub fn split(error: io::Error) -> (Option<IoOp>, io::Error) {
        if !error.get_ref().is_some_and(|e| e.is::<TransferFailed>()) {
            return (None, error);
        }
        match error.into_inner().map(|e| e.downcast::<TransferFailed>()) {
            Some(Ok(t)) => (Some(t.op), t.error),
            // Not reached: checked above.
            Some(Err(other)) => (None, io::Error::other(other)),
            None => (None, io::Error::other("transfer failed")),
        }
    }
}

impl std::fmt::Display for TransferFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for TransferFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

/// A device made of fixed-size sectors.
///
/// Implementations are shared between threads (`&self` methods), so that a
/// producer and a consumer in one process can use one device. Every method
/// that takes a buffer requires its length to be a whole number of sectors
/// and the range to lie within the device; otherwise it returns
/// [`io::ErrorKind::InvalidInput`].
pub trait BlockDevice: Send + Sync {
    /// Logical sector size in bytes.
    fn sector_size(&self) -> usize;

    /// Size of the device in sectors.
    fn sectors(&self) -> u64;

    /// Reads `buf.len() / sector_size()` sectors starting at `sector`.
    ///
    /// # Errors
    /// Any I/O error of the underlying storage.
    fn read(&self, sector: u64, buf: &mut [u8]) -> io::Result<()>;

    /// Writes whole sectors starting at `sector`. When this returns, the
    /// data is visible to every other reader of the device, but it may
    /// still sit in a volatile write cache until [`flush`](Self::flush).
    ///
    /// # Errors
    /// Any I/O error of the underlying storage.
    fn write(&self, sector: u64, buf: &[u8]) -> io::Result<()>;

    /// Writes whole sectors and returns only once they are on stable
    /// storage (like a write followed by a flush, or a FUA write).
    ///
    /// The default is [`write`](Self::write) then [`flush`](Self::flush);
    /// backends override it with a cheaper single operation
    /// (`pwritev2(RWF_DSYNC)`, an NBD write with FUA).
    ///
    /// # Errors
    /// Any I/O error of the underlying storage.
    fn write_durable(&self, sector: u64, buf: &[u8]) -> io::Result<()> {
        self.write(sector, buf)?;
        self.flush()
    }

    /// Writes several runs of whole sectors, then reads several, as
    /// transfers that do not depend on each other: a device may have them
    /// in flight together and carry them out in any order ([`NbdDevice`]
    /// pipelines them on its connection, so they cost about one round trip
    /// instead of one each). When this returns, every write is done as by
    /// [`write`](Self::write) (visible, not yet durable) and every read as
    /// by [`read`](Self::read); after an error, any of them may or may not
    /// have been carried out.
    ///
    /// Because no order is kept, the writes must not overlap each other,
    /// and no read may overlap a write (it would see old or new data).
    /// Never put a write in the same call as a write it must follow, such
    /// as a pointer and the items it publishes: FORMAT.md's ordering rules
    /// need two calls for those (with a flush between them for
    /// durability). Independent transfers fit: the items of the next batch
    /// with the pointer to items already written, or a side's own state
    /// sector with a read of the other side's.
    ///
    /// The default does the writes and then the reads one at a time, in
    /// the order given.
    ///
    /// # Errors
    /// As [`write`](Self::write) and [`read`](Self::read). A transfer with
    /// both writes and reads says which kind failed, where the device
    /// knows (the default, [`FileDevice`], [`FaultDevice`]), by wrapping
    /// the failed operation's error in a [`TransferFailed`].
    fn transfer(&self, writes: &[(u64, &[u8])], reads: &mut [(u64, &mut [u8])]) -> io::Result<()> {
        transfer_one_by_one(self, writes, reads)
    }

    /// True when [`transfer`](Self::transfer) puts its operations in
    /// flight together (one device round trip for the lot, as on io_uring
    /// and NBD), false when it runs them one after another (the default).
    /// Only informs measurements: what a transfer does is the same either
    /// way.
    fn transfers_together(&self) -> bool {
        false
    }

    /// Carries out `ops` in order, each starting only once the previous one
    /// has completed, as the same calls one after another would, but with
    /// fewer waits where the device allows: [`FileDevice`] on io_uring
    /// submits the whole chain at once, linked (`IOSQE_IO_LINK`), so the
    /// kernel starts each request when the previous one completes, with no
    /// return to the caller between them; [`NbdDevice`] sends a read
    /// together with what precedes it when they do not overlap (a write,
    /// flush or durable write waits for every earlier reply, since the
    /// server keeps no order between requests in flight). The default does
    /// the operations one at a time.
    ///
    /// This is how a dependent sequence costs one submission: a format 1
    /// publication is `[Flush, WriteDurable(pointer)]` (the data durable
    /// before the pointer that publishes it), a format 2 one
    /// `[Write(pointer), Flush]`.
    ///
    /// # What a failure part-way leaves
    ///
    /// Every operation is checked before any starts (its range, as for
    /// [`read`](Self::read) and [`write`](Self::write); a write on a device
    /// that [refuses writes](Self::is_read_only)): a check that fails ends
    /// the chain with [`ChainError::done`] 0 and nothing started. Otherwise,
    /// when an operation fails, the error says how far the chain got:
    ///
    /// * `ops[..done]` completed, each as its own call would have (a
    ///   [`Write`](Op::Write) visible, a [`WriteDurable`](Op::WriteDurable)
    ///   durable, a [`Flush`](Op::Flush) having made every write completed
    ///   before it durable, a [`Read`](Op::Read) filled);
    /// * `ops[done]` failed: a failed write may have written all, some or
    ///   none of its sectors, a failed flush may have made some writes
    ///   durable, as with a failed call;
    /// * of `ops[done + 1..]`, no write, durable write or flush started; a
    ///   read may have been carried out (a device may have it in flight
    ///   with the failed operation), and its buffer's contents are then
    ///   unspecified.
    ///
    /// A crash part-way leaves a prefix of the chain done, the operation
    /// in progress possibly in part; what a power cut keeps of the writes
    /// follows from the flushes and durable writes that completed, as for
    /// separate calls ([`FaultDevice`] models both).
    ///
    /// # Errors
    /// [`ChainError`], which converts into the [`io::Error`] of the failed
    /// operation.
    fn chain(&self, ops: &mut [Op<'_>]) -> Result<(), ChainError> {
        chain_one_by_one(self, ops)
    }

    /// Makes every completed write durable.
    ///
    /// # Errors
    /// Any I/O error of the underlying storage.
    fn flush(&self) -> io::Result<()>;

    /// Waits until the device may have been written by someone, or until
    /// `timeout` passes; returns true when woken by a change notification.
    ///
    /// Polling loops (a consumer waiting for items, a producer waiting for
    /// space) call this instead of sleeping. The default sleeps: a device
    /// shared across hosts cannot notify. [`FileDevice`] wakes up as soon as
    /// another process on this host writes the file or block device
    /// (inotify), so waiters on one host see new items at once without
    /// polling fast; writers on other hosts are still seen by polling.
    fn wait_for_change(&self, timeout: std::time::Duration) -> bool {
        std::thread::sleep(timeout);
        false
    }

    /// True when [`wait_for_change`](Self::wait_for_change) is woken by
    /// writes from other processes on this host, so waiters need not poll
    /// fast to see them soon.
    fn notifies_changes(&self) -> bool {
        false
    }

    /// True when writes will be refused.
    fn is_read_only(&self) -> bool {
        false
    }

    /// A short description for messages, such as the path and open mode.
    fn describe(&self) -> String {
        String::from("block device")
    }

    /// Takes the advisory lock that marks `side` as attached, without
    /// waiting for its holder (a backend may wait briefly for a holder that
    /// is going away: [`FileDevice`] does, see [`LOCK_GRACE`]). Returns
    /// `Ok(Err(holder))` when someone else holds it.
    ///
    /// The default takes no lock: devices shared across hosts cannot
    /// enforce a single producer and a single consumer.
    ///
    /// # Errors
    /// An I/O error while asking for the lock.
    fn try_lock(&self, side: Side) -> io::Result<Result<(), String>> {
        let _ = side;
        Ok(Ok(()))
    }

    /// Releases a lock taken by [`try_lock`](Self::try_lock).
    fn unlock(&self, side: Side) {
        let _ = side;
    }
}

/// One operation of a [`BlockDevice::chain`].
#[derive(Debug)]
pub enum Op<'a> {
    /// As [`BlockDevice::read`]: fills `buf` from `sector` on.
    Read {
        /// The first sector.
        sector: u64,
        /// Whole sectors.
        buf: &'a mut [u8],
    },
    /// As [`BlockDevice::write`]: visible once done, durable after a later
    /// flush.
    Write {
        /// The first sector.
        sector: u64,
        /// Whole sectors.
        buf: &'a [u8],
    },
    /// As [`BlockDevice::write_durable`]: its own sectors durable once
    /// done (not a flush of other writes).
    WriteDurable {
        /// The first sector.
        sector: u64,
        /// Whole sectors.
        buf: &'a [u8],
    },
    /// As [`BlockDevice::flush`]: every write completed before it durable.
    Flush,
}

impl Op<'_> {
    /// The sectors and length the operation covers, if any.
    fn range(&self) -> Option<(u64, usize)> {
        match self {
            Op::Read { sector, buf } => Some((*sector, buf.len())),
            Op::Write { sector, buf } | Op::WriteDurable { sector, buf } => {
                Some((*sector, buf.len()))
            }
            Op::Flush => None,
        }
    }

    /// True for the operations a read-only device refuses.
    fn writes(&self) -> bool {
        matches!(self, Op::Write { .. } | Op::WriteDurable { .. })
    }
}

/// A [`BlockDevice::chain`] that stopped at a failed operation: see the
/// method for what the chain left.
#[derive(Debug)]
pub struct ChainError {
    /// How many operations, from the first, completed; `ops[done]` is the
    /// one that failed.
    pub done: usize,
    /// Its error.
    pub error: io::Error,
}

impl std::fmt::Display for ChainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "operation {} of a chain failed: {}",
            self.done + 1,
            self.error
        )
    }
}

impl std::error::Error for ChainError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl From<ChainError> for io::Error {
    fn from(e: ChainError) -> io::Error {
        e.error
    }
}

/// Checks every operation of a chain before any starts (see
/// [`BlockDevice::chain`]).
pub(crate) fn check_chain<D: BlockDevice + ?Sized>(
    device: &D,
    ops: &[Op<'_>],
) -> Result<(), ChainError> {
    let fail = |error| ChainError { done: 0, error };
    for op in ops {
        if let Some((sector, len)) = op.range() {
            check_range(device.sector_size(), device.sectors(), sector, len).map_err(fail)?;
        }
        if op.writes() && device.is_read_only() {
            return Err(fail(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{} is read-only", device.describe()),
            )));
        }
    }
    Ok(())
}

/// [`BlockDevice::chain`]'s default: each operation by its own call.
pub(crate) fn chain_one_by_one<D: BlockDevice + ?Sized>(
    device: &D,
    ops: &mut [Op<'_>],
) -> Result<(), ChainError> {
    check_chain(device, ops)?;
    for (done, op) in ops.iter_mut().enumerate() {
        let r = match op {
            Op::Read { sector, buf } => device.read(*sector, buf),
            Op::Write { sector, buf } => device.write(*sector, buf),
            Op::WriteDurable { sector, buf } => device.write_durable(*sector, buf),
            Op::Flush => device.flush(),
        };
        r.map_err(|error| ChainError { done, error })?;
    }
    Ok(())
}

/// [`BlockDevice::transfer`]'s default: the writes, then the reads, one at
/// a time in the order given.
pub(crate) fn transfer_one_by_one<D: BlockDevice + ?Sized>(
    device: &D,
    writes: &[(u64, &[u8])],
    reads: &mut [(u64, &mut [u8])],
) -> io::Result<()> {
    let (w, r) = (writes.len(), reads.len());
    let say = |op, e| TransferFailed::wrap_in(w, r, op, e);
    for &(sector, buf) in writes {
        device.write(sector, buf).map_err(|e| say(IoOp::Write, e))?;
    }
    for (sector, buf) in reads.iter_mut() {
        device.read(*sector, buf).map_err(|e| say(IoOp::Read, e))?;
    }
    Ok(())
}

/// Opens the device named by `spec`: a path to a regular file or a block
/// device, or an NBD URI (`nbd://host[:port]/export`,
/// `nbd+unix:///export?socket=PATH`). `options` apply to whichever backend
/// `spec` selects (for NBD, the sector size and read-only mode).
///
/// A spec of the form `scheme://...` is always taken as a URI, never as a
/// path.
///
/// ```
/// use shared_block_ring::{create, device, Consumer, FileOptions, Options, Producer};
///
/// # fn main() -> Result<(), shared_block_ring::Error> {
/// # let file = tempfile::NamedTempFile::new_in(".").unwrap(); // O_DIRECT works here
/// # file.as_file().set_len(64 * 1024).unwrap();
/// # let spec = file.path().to_str().unwrap().to_string();
/// // `spec` is a path here; "nbd://host/export" would connect to a server.
/// let dev = device::open(&spec, &FileOptions::new())?; // a Box<dyn BlockDevice>
/// create(&dev)?;
/// let mut producer = Producer::attach(dev, Options::new())?;
/// let end = producer.push(b"via a path or a URI")?;
/// producer.advance(end)?;
/// let mut consumer = Consumer::attach(device::open(&spec, &FileOptions::new())?, Options::new())?;
/// assert_eq!(consumer.pop()?.1, b"via a path or a URI");
/// assert!(device::open("ftp://host/x", &FileOptions::new()).is_err());
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// As [`FileDevice::open_with`] or [`NbdDevice::open_with`];
/// [`Error::InvalidUri`](crate::Error::InvalidUri) for a URI of another
/// scheme.
pub fn open(spec: &str, options: &FileOptions) -> Result<Box<dyn BlockDevice>, crate::Error> {
    if nbd::looks_like_uri(spec) {
        return Ok(Box::new(NbdDevice::open_with(spec, options)?));
    }
    Ok(Box::new(FileDevice::open_with(spec, options)?))
}

/// The sector size for a device whose I/O unit is `unit` bytes (1 when any
/// size works): `requested`, which must be a multiple of the unit, or else
/// `default`; either way one the format supports.
pub(crate) fn choose_sector_size(
    requested: Option<usize>,
    unit: usize,
    default: usize,
) -> Result<usize, crate::Error> {
    let sector_size = match requested {
        None => default,
        Some(s) if unit > 1 && s % unit != 0 => {
            return Err(crate::Error::SectorSizeMismatch {
                requested: s,
                device: unit,
            })
        }
        Some(s) => s,
    };
    if !sector_size.is_power_of_two()
        || !(crate::layout::MIN_SECTOR_SIZE..=crate::layout::MAX_SECTOR_SIZE).contains(&sector_size)
    {
        return Err(crate::Error::BadSectorSize { sector_size });
    }
    Ok(sector_size)
}

/// Checks that `len` bytes at `sector` are whole sectors within a device.
pub(crate) fn check_range(
    sector_size: usize,
    sectors: u64,
    sector: u64,
    len: usize,
) -> io::Result<()> {
    if len % sector_size != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("buffer of {len} bytes is not a whole number of {sector_size}-byte sectors"),
        ));
    }
    let count = (len / sector_size) as u64;
    match sector.checked_add(count) {
        Some(end) if end <= sectors => Ok(()),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("sectors {sector}..{sector}+{count} lie beyond the end of the device ({sectors} sectors)"),
        )),
    }
}

macro_rules! forward_block_device {
    ($($ty:ty),*) => {$(
        impl<T: BlockDevice + ?Sized> BlockDevice for $ty {
            fn sector_size(&self) -> usize { (**self).sector_size() }
            fn sectors(&self) -> u64 { (**self).sectors() }
            fn read(&self, sector: u64, buf: &mut [u8]) -> io::Result<()> { (**self).read(sector, buf) }
            fn write(&self, sector: u64, buf: &[u8]) -> io::Result<()> { (**self).write(sector, buf) }
            fn write_durable(&self, sector: u64, buf: &[u8]) -> io::Result<()> { (**self).write_durable(sector, buf) }
            fn flush(&self) -> io::Result<()> { (**self).flush() }
            fn transfer(&self, writes: &[(u64, &[u8])], reads: &mut [(u64, &mut [u8])]) -> io::Result<()> { (**self).transfer(writes, reads) }
            fn chain(&self, ops: &mut [Op<'_>]) -> Result<(), ChainError> { (**self).chain(ops) }
            fn transfers_together(&self) -> bool { (**self).transfers_together() }
            fn is_read_only(&self) -> bool { (**self).is_read_only() }
            fn wait_for_change(&self, timeout: std::time::Duration) -> bool { (**self).wait_for_change(timeout) }
            fn notifies_changes(&self) -> bool { (**self).notifies_changes() }
            fn describe(&self) -> String { (**self).describe() }
            fn try_lock(&self, side: Side) -> io::Result<Result<(), String>> { (**self).try_lock(side) }
            fn unlock(&self, side: Side) { (**self).unlock(side) }
        }
    )*};
}

forward_block_device!(&T, Arc<T>, Box<T>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_transfer_writes_then_reads_in_order_and_stops_at_an_error() {
        let d = MemDevice::new(512, 16);
        let (a, b) = ([1u8; 1024], [2u8; 512]);
        let (mut x, mut y) = ([0u8; 512], [0u8; 1024]);
        // Through a reference, as the ring holds devices.
        <&MemDevice as BlockDevice>::transfer(
            &&d,
            &[(2, &a), (3, &b)],
            &mut [(3, &mut x), (1, &mut y)],
        )
        .unwrap();
        // One at a time, in the order given: the second write wins the
        // sector both cover, and the reads see the writes.
        assert_eq!(x, [2u8; 512]);
        assert_eq!(y[..512], [0u8; 512]);
        assert_eq!(y[512..], [1u8; 512]);
        let e = d.transfer(&[(15, &a), (0, &b)], &mut []).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let mut first = [9u8; 512];
        d.read(0, &mut first).unwrap();
        assert_eq!(first, [0u8; 512], "nothing after the failed write is done");
    }

    #[test]
    fn the_default_chain_runs_in_order_and_says_how_far_it_got() {
        let d = FaultDevice::new(MemDevice::new(512, 16));
        let (a, b) = ([1u8; 512], [2u8; 512]);
        let mut x = [0u8; 512];
        // Through a reference, as the ring holds devices.
        <&FaultDevice<MemDevice> as BlockDevice>::chain(
            &&d,
            &mut [
                Op::Write { sector: 3, buf: &a },
                Op::Write { sector: 3, buf: &b },
                Op::Flush,
                Op::Read {
                    sector: 3,
                    buf: &mut x,
                },
            ],
        )
        .unwrap();
        assert_eq!(x, b, "in order: the second write wins, the read sees it");
        // The second write fails: the first ran, nothing after it did.
        d.fail_nth(FaultOp::Write, 2);
        let flushes = d.counts().flushes;
        let e = d
            .chain(&mut [
                Op::Write { sector: 4, buf: &a },
                Op::Write { sector: 5, buf: &a },
                Op::Flush,
                Op::WriteDurable { sector: 6, buf: &a },
            ])
            .unwrap_err();
        assert_eq!((e.done, e.error.raw_os_error()), (1, Some(libc::EIO)));
        assert!(
            e.to_string().starts_with("operation 2 of a chain failed"),
            "{e}"
        );
        assert_eq!(io::Error::from(e).raw_os_error(), Some(libc::EIO));
        let image = d.inner().to_vec();
        assert_eq!([image[4 * 512], image[5 * 512], image[6 * 512]], [1, 0, 0]);
        assert_eq!(d.counts().flushes, flushes);
        // An operation out of range stops the chain before it starts.
        let e = d
            .chain(&mut [
                Op::Write { sector: 7, buf: &a },
                Op::Write {
                    sector: 16,
                    buf: &a,
                },
            ])
            .unwrap_err();
        assert_eq!((e.done, e.error.kind()), (0, io::ErrorKind::InvalidInput));
        assert_eq!(d.inner().to_vec()[7 * 512], 0);
        let e = d
            .chain(&mut [Op::Write {
                sector: 7,
                buf: &a[..100],
            }])
            .unwrap_err();
        assert_eq!((e.done, e.error.kind()), (0, io::ErrorKind::InvalidInput));
    }
}
