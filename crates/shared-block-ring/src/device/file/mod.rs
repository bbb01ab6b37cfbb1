//! Regular files and kernel block devices.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::inotify;

use super::uring::{self, Piece, Pieces, Uring};
use super::{
    check_chain, check_range, choose_sector_size, AlignedBuf, BlockDevice, ChainError, Op,
    TransferFailed,
};
use crate::error::{Error, IoOp, Side};
use crate::layout;

/// How a [`FileDevice`] does its I/O: see [`FileOptions::io`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Io {
    /// io_uring for [`transfer`](BlockDevice::transfer) and
    /// [`chain`](BlockDevice::chain) where the kernel offers it, else
    /// synchronous I/O (with one
    /// log line, at info level, the first time a device is opened). The
    /// environment variable `SHARED_BLOCK_RING_IO` (`sync`, `uring` or
    /// `auto`) overrides this choice, so that a whole program or test suite
    /// can be run on either path.
    #[default]
    Auto,
    /// `pread`/`pwrite`/`pwritev2`/`fdatasync`, one system call per
    /// operation.
    Sync,
    /// io_uring: independent operations
    /// ([`transfer`](BlockDevice::transfer)) in flight together, dependent
    /// ones ([`chain`](BlockDevice::chain)) in one submission. Opening
    /// fails where the kernel does not offer it.
    Uring,
}

/// How long [`FileDevice`]'s `try_lock` waits for a role lock held by
/// another handle before reporting it, where the kernel has io_uring (see
/// [`BlockDevice::try_lock`] on [`FileDevice`]).
pub const LOCK_GRACE: Duration = Duration::from_secs(1);

/// The environment variable that overrides [`Io::Auto`].
pub const IO_ENV: &str = "SHARED_BLOCK_RING_IO";

impl Io {
    /// The path a [`FileDevice`] opened now with `self` would take:
    /// [`Io::Sync`] or [`Io::Uring`], after the environment variable and
    /// the kernel's say.
    ///
    /// # Errors
    /// [`io::ErrorKind::Unsupported`] when io_uring is asked for and the
    /// kernel does not offer it (opening would fail the same way).
    pub fn effective(self) -> io::Result<Io> {
        match self.use_uring() {
            Ok(true) => Ok(Io::Uring),
            Ok(false) => Ok(Io::Sync),
            Err(why) => Err(io::Error::new(io::ErrorKind::Unsupported, why)),
        }
    }

    /// `sync`, `uring` or `auto`, as the environment variable spells them.
    pub fn name(self) -> &'static str {
        match self {
            Io::Auto => "auto",
            Io::Sync => "sync",
            Io::Uring => "uring",
        }
    }

    /// Whether a device opened with `self` uses io_uring: `Err` when
    /// io_uring is asked for and unavailable.
    fn use_uring(self) -> Result<bool, String> {
        let io = self.resolve(std::env::var(IO_ENV).ok().as_deref());
        match io {
            Io::Sync => Ok(false),
            Io::Auto => Ok(uring::available().is_ok()),
            Io::Uring => uring::available().map(|()| true).map_err(|why| {
                format!(
                    "io_uring was asked for (FileOptions::io or {IO_ENV}) but is unavailable: {why}"
                )
            }),
        }
    }

    /// `self`, or for [`Io::Auto`] what the environment variable's value
    /// `env` asks for (an unknown value is ignored, with a warning).
    fn resolve(self, env: Option<&str>) -> Io {
        match (self, env) {
            (Io::Auto, Some("sync")) => Io::Sync,
            (Io::Auto, Some("uring")) => Io::Uring,
            (Io::Auto, None | Some("auto" | "")) => Io::Auto,
            (Io::Auto, Some(other)) => {
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| {
                    tracing::warn!("{IO_ENV}={other:?} is neither sync, uring nor auto: ignored");
                });
                Io::Auto
            }
            (io, _) => io,
        }
    }
}

/// How to open a [`FileDevice`].
#[derive(Debug, Clone)]
pub struct FileOptions {
    pub(crate) direct: bool,
    pub(crate) sector_size: Option<usize>,
    pub(crate) read_only: bool,
    pub(crate) io: Io,
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions {
            direct: true,
            sector_size: None,
            read_only: false,
            io: Io::Auto,
        }
    }
}

impl FileOptions {
    /// O_DIRECT, read-write, the device's own sector size (512 for files).
    pub fn new() -> FileOptions {
        FileOptions::default()
    }

    /// Whether to bypass the page cache with O_DIRECT (the default).
    ///
    /// Buffered I/O (`false`) is only coherent between processes on the
    /// same host: a reader on another host sharing the disk would see stale
    /// pages. It exists for filesystems that refuse O_DIRECT (tmpfs before
    /// Linux 6.6, some FUSE and network filesystems).
    pub fn direct(mut self, direct: bool) -> FileOptions {
        self.direct = direct;
        self
    }

    /// The sector size to use instead of the device's own. For a regular
    /// file any supported size works (both sides must agree); for a block
    /// device it must be a multiple of the logical block size.
    pub fn sector_size(mut self, sector_size: usize) -> FileOptions {
        self.sector_size = Some(sector_size);
        self
    }

    /// Opens without write access. Producers and consumers refuse such a
    /// device; diagnostics work.
    pub fn read_only(mut self, read_only: bool) -> FileOptions {
        self.read_only = read_only;
        self
    }

    /// How a file or block device does its I/O (default [`Io::Auto`]:
    /// io_uring where available). NBD devices ignore it.
    pub fn io(mut self, io: Io) -> FileOptions {
        self.io = io;
        self
    }
}

/// A regular file or a kernel block device (`/dev/loopN`, `/dev/sdX`, an
/// iSCSI or RBD device, a SAN LUN). A single read, write or flush is one
/// system call (`pread`/`pwrite`/`pwritev2`/`fdatasync`); where the kernel
/// offers io_uring ([`Io`]), operations made in one call
/// ([`transfer`](BlockDevice::transfer), [`chain`](BlockDevice::chain)) go
/// in one submission. (A lone operation gains nothing from io_uring, and a
/// lone durable write through it measured slower than `pwritev2` here.)
///
/// Opened with O_DIRECT by default, so that two processes (or two hosts
/// sharing a LUN) see each other's writes without page-cache incoherence.
/// [`write_durable`](BlockDevice::write_durable) is a write with
/// `RWF_DSYNC` (`pwritev2`, or the io_uring write's flags in a chain), one
/// request that completes once the data is on stable storage; [`flush`](BlockDevice::flush)
/// is `fdatasync`. With io_uring, [`transfer`](BlockDevice::transfer)
/// submits its reads and writes together, and buffers that are not
/// [`AlignedBuf`]-aligned under O_DIRECT take the synchronous path (they
/// are copied through a bounce buffer either way).
///
/// ```
/// use shared_block_ring::{create, BlockDevice, Error, FileDevice, FileOptions};
///
/// # fn main() -> Result<(), Error> {
/// # let file = tempfile::NamedTempFile::new_in(".").unwrap(); // O_DIRECT works here
/// # file.as_file().set_len(1 << 20).unwrap();
/// # let path = file.path();
/// let device = FileDevice::open(path)?; // O_DIRECT, 512-byte sectors for a file
/// assert_eq!((device.sector_size(), device.sectors()), (512, 2048));
/// create(&device)?;
/// // Another sector size (both sides must use the same), read-only:
/// let ro = FileDevice::open_with(path, &FileOptions::new().sector_size(4096).read_only(true))?;
/// assert_eq!(ro.sectors(), 256);
/// // What is not a regular file or a block device is named, not opened:
/// let e = FileDevice::open(std::env::temp_dir()).err().unwrap();
/// assert!(e.to_string().contains("it is a directory"));
/// # Ok(())
/// # }
/// ```
pub struct FileDevice {
    file: File,
    path: PathBuf,
    sector_size: usize,
    sectors: u64,
    direct: bool,
    read_only: bool,
    block_device: bool,
    /// Cleared when the kernel refuses `RWF_DSYNC` (before Linux 4.7).
    dsync_supported: AtomicBool,
    /// An inotify watch on the path, made on the first wait; `None` inside
    /// when inotify is unavailable (waits then just sleep).
    watch: OnceLock<Option<OwnedFd>>,
    /// The io_uring path's rings, when the device uses it.
    uring: Option<Uring>,
}

impl FileDevice {
    /// Opens `path` with the default options: O_DIRECT, read-write, the
    /// device's own sector size.
    ///
    /// # Errors
    /// See [`open_with`](Self::open_with).
    pub fn open(path: impl AsRef<Path>) -> Result<FileDevice, Error> {
        FileDevice::open_with(path, &FileOptions::default())
    }

    /// Opens `path`.
    ///
    /// # Errors
    /// [`Error::Open`] when the file cannot be opened (missing, permission
    /// denied); [`Error::DirectIoUnsupported`] when its filesystem refuses
    /// O_DIRECT; [`Error::BadSectorSize`] or [`Error::SectorSizeMismatch`]
    /// for a sector size the format or the device cannot use.
    pub fn open_with(path: impl AsRef<Path>, options: &FileOptions) -> Result<FileDevice, Error> {
        let path = path.as_ref().to_path_buf();
        let open_err = |source| Error::Open {
            path: path.clone(),
            source,
        };
        // Look before opening: opening a FIFO waits for a writer, and a
        // directory or a FIFO refuses O_DIRECT with the EINVAL that
        // otherwise means "this filesystem has no direct I/O".
        let meta = std::fs::metadata(&path).map_err(open_err)?;
        check_file_type(meta.file_type()).map_err(open_err)?;
        let mut oo = OpenOptions::new();
        oo.read(true).write(!options.read_only);
        // O_NONBLOCK: should the path become a FIFO after the look, the
        // open still returns at once (and the type is checked again).
        let mut flags = libc::O_NONBLOCK;
        if options.direct {
            flags |= libc::O_DIRECT;
        }
        oo.custom_flags(flags);
        let file = oo
            .open(&path)
            .map_err(|e| open_error(&path, e, options.direct))?;
        let meta = file.metadata().map_err(open_err)?;
        check_file_type(meta.file_type()).map_err(open_err)?;
        // Regular files and block devices ignore O_NONBLOCK for I/O; it is
        // cleared anyway so that the descriptor is an ordinary one.
        let fl = rustix::fs::fcntl_getfl(&file).map_err(|e| open_err(e.into()))?;
        rustix::fs::fcntl_setfl(&file, fl - rustix::fs::OFlags::NONBLOCK)
            .map_err(|e| open_err(e.into()))?;
        let block_device = meta.file_type().is_block_device();
        let (native_sector, bytes) = if block_device {
            let logical =
                rustix::fs::ioctl_blksszget(&file).map_err(|e| open_err(e.into()))? as usize;
            (logical, block_device_bytes(&file).map_err(open_err)?)
        } else {
            (layout::DEFAULT_FILE_SECTOR_SIZE, meta.len())
        };
        // Any size suits a regular file; a block device does I/O in whole
        // logical blocks.
        let unit = if block_device { native_sector } else { 1 };
        let sector_size = choose_sector_size(options.sector_size, unit, native_sector)?;
        let uring = match options.io.use_uring() {
            Ok(true) => Some(Uring::new()),
            Ok(false) => None,
            Err(why) => return Err(open_err(io::Error::new(io::ErrorKind::Unsupported, why))),
        };
        Ok(FileDevice {
            file,
            path,
            sector_size,
            sectors: bytes / sector_size as u64,
            direct: options.direct,
            read_only: options.read_only,
            block_device,
            dsync_supported: AtomicBool::new(true),
            watch: OnceLock::new(),
            uring,
        })
    }

    /// The path the device was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True for a kernel block device, false for a regular file.
    pub fn is_block_device(&self) -> bool {
        self.block_device
    }

    /// True when opened with O_DIRECT.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// How the device does its I/O: [`Io::Uring`] or [`Io::Sync`] (never
    /// [`Io::Auto`]: the choice made when it was opened).
    pub fn io(&self) -> Io {
        if self.uring.is_some() {
            Io::Uring
        } else {
            Io::Sync
        }
    }

    fn offset(&self, sector: u64) -> u64 {
        sector * self.sector_size as u64
    }

    fn needs_bounce(&self, ptr: *const u8) -> bool {
        self.direct && !AlignedBuf::is_aligned(ptr)
    }

    /// A chain through io_uring, linked; `base` is the index of `ops[0]`
    /// in the caller's chain.
    fn uring_chain(&self, u: &Uring, ops: &mut [Op<'_>], base: usize) -> Result<(), ChainError> {
        let dsync = self.dsync_supported.load(Ordering::Relaxed);
        let mut pieces = Pieces::with_capacity(2 * ops.len());
        for (i, op) in ops.iter_mut().enumerate() {
            match op {
                Op::Read { sector, buf } => pieces.push(Piece::read(i, self.offset(*sector), buf)),
                Op::Write { sector, buf } => {
                    pieces.push(Piece::write(i, self.offset(*sector), buf, false));
                }
                Op::WriteDurable { sector, buf } => {
                    pieces.push(Piece::write(i, self.offset(*sector), buf, dsync));
                    if !dsync {
                        pieces.push(Piece::fsync(i));
                    }
                }
                Op::Flush => pieces.push(Piece::fsync(i)),
            }
        }
        let pieces = pieces.as_mut_slice();
        let Err((p, error)) = u.run(self.file.as_fd(), pieces, true) else {
            return Ok(());
        };
        let (done, refused) = (pieces[p].op, pieces[p].is_dsync() && dsync_refused(&error));
        if refused {
            // A kernel without RWF_DSYNC: the failed durable write did not
            // start, and the rest of the chain goes again with a write and
            // an fdatasync in its place.
            self.dsync_supported.store(false, Ordering::Relaxed);
            return self.uring_chain(u, &mut ops[done..], base + done);
        }
        Err(ChainError {
            done: base + done,
            error,
        })
    }

    fn write_dsync(&self, offset: u64, mut buf: &[u8]) -> io::Result<()> {
        let mut offset = offset;
        while !buf.is_empty() {
            let n = rustix::io::pwritev2(
                &self.file,
                &[IoSlice::new(buf)],
                offset,
                rustix::io::ReadWriteFlags::DSYNC,
            )
            .map_err(io::Error::from)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "pwritev2 wrote nothing",
                ));
            }
            buf = &buf[n..];
            offset += n as u64;
        }
        Ok(())
    }

    fn new_watch(&self) -> Option<OwnedFd> {
        let fd =
            inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK).ok()?;
        inotify::add_watch(&fd, &self.path, inotify::WatchFlags::MODIFY).ok()?;
        Some(fd)
    }

    fn ofd_lock(
        &self,
        side: Side,
        kind: libc::c_short,
        cmd: libc::c_int,
    ) -> io::Result<libc::flock> {
        // SAFETY: `flock` is a plain C struct for which all-zero is valid.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = kind;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        fl.l_start = self.offset(side.sector()) as libc::off_t;
        fl.l_len = self.sector_size as libc::off_t;
        // SAFETY: F_OFD_SETLK/F_OFD_GETLK take a pointer to a valid `flock`,
        // which lives for the whole call.
        let r = unsafe { libc::fcntl(self.file.as_raw_fd(), cmd, &mut fl as *mut libc::flock) };
        if r == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(fl)
        }
    }
}

/// True for the errors of a kernel that does not know `RWF_DSYNC`
/// (before Linux 4.7).
fn dsync_refused(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP)
    )
}

/// Refuses anything but a regular file or a block device, naming what it
/// is.
fn check_file_type(t: std::fs::FileType) -> io::Result<()> {
    let what = if t.is_file() || t.is_block_device() {
        return Ok(());
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else {
        "neither a regular file nor a block device"
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("it is {what}; a ring needs a regular file or a block device"),
    ))
}

/// Names the failure to open `path`: a filesystem that refuses O_DIRECT
/// fails the open with EINVAL (tmpfs before Linux 6.6, some FUSE and
/// network filesystems), which deserves its own error naming the way out.
fn open_error(path: &Path, e: io::Error, direct: bool) -> Error {
    if direct && e.raw_os_error() == Some(libc::EINVAL) {
        Error::DirectIoUnsupported {
            path: path.to_path_buf(),
        }
    } else {
        Error::Open {
            path: path.to_path_buf(),
            source: e,
        }
    }
}

/// Size of a block device in bytes, from the kernel.
fn block_device_bytes(file: &File) -> io::Result<u64> {
    const BLKGETSIZE64: rustix::ioctl::Opcode = rustix::ioctl::opcode::read::<u64>(0x12, 114);
    // SAFETY: BLKGETSIZE64 is a getter that writes one u64 (size_t on 64-bit
    // Linux), which is what `Getter` provides.
    let size =
        unsafe { rustix::ioctl::ioctl(file, rustix::ioctl::Getter::<BLKGETSIZE64, u64>::new()) };
    size.map_err(io::Error::from)
}

impl BlockDevice for FileDevice {
    fn sector_size(&self) -> usize {
        self.sector_size
    }

    fn sectors(&self) -> u64 {
        self.sectors
    }

    fn read(&self, sector: u64, buf: &mut [u8]) -> io::Result<()> {
        check_range(self.sector_size, self.sectors, sector, buf.len())?;
        if self.needs_bounce(buf.as_ptr()) {
            let mut bounce = AlignedBuf::zeroed(buf.len());
            self.file.read_exact_at(&mut bounce, self.offset(sector))?;
            buf.copy_from_slice(&bounce);
            return Ok(());
        }
        self.file.read_exact_at(buf, self.offset(sector))
    }

    fn write(&self, sector: u64, buf: &[u8]) -> io::Result<()> {
        check_range(self.sector_size, self.sectors, sector, buf.len())?;
        if self.needs_bounce(buf.as_ptr()) {
            let mut bounce = AlignedBuf::zeroed(buf.len());
            bounce.copy_from_slice(buf);
            return self.file.write_all_at(&bounce, self.offset(sector));
        }
        self.file.write_all_at(buf, self.offset(sector))
    }

    fn write_durable(&self, sector: u64, buf: &[u8]) -> io::Result<()> {
        check_range(self.sector_size, self.sectors, sector, buf.len())?;
        if !self.dsync_supported.load(Ordering::Relaxed) || self.needs_bounce(buf.as_ptr()) {
            self.write(sector, buf)?;
            return self.flush();
        }
        match self.write_dsync(self.offset(sector), buf) {
            Err(e) if dsync_refused(&e) => {
                self.dsync_supported.store(false, Ordering::Relaxed);
                self.write(sector, buf)?;
                self.flush()
            }
            r => r,
        }
    }

    fn flush(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// With io_uring, one submission of linked requests (see the trait).
    fn chain(&self, ops: &mut [Op<'_>]) -> Result<(), ChainError> {
        check_chain(self, ops)?;
        let aligned = ops.iter().all(|op| match op {
            Op::Read { buf, .. } => !self.needs_bounce(buf.as_ptr()),
            Op::Write { buf, .. } | Op::WriteDurable { buf, .. } => {
                !self.needs_bounce(buf.as_ptr())
            }
            Op::Flush => true,
        });
        match self.uring.as_ref().filter(|_| aligned) {
            Some(u) => self.uring_chain(u, ops, 0),
            None => super::chain_one_by_one(self, ops),
        }
    }

    /// With io_uring (and buffers it can take without a bounce copy), so
    /// the ring's own transfers: their buffers are aligned.
    fn transfers_together(&self) -> bool {
        self.uring.is_some()
    }

    /// With io_uring, every write and read is in flight at once.
    fn transfer(&self, writes: &[(u64, &[u8])], reads: &mut [(u64, &mut [u8])]) -> io::Result<()> {
        for &(sector, buf) in writes {
            check_range(self.sector_size, self.sectors, sector, buf.len())?;
        }
        for (sector, buf) in reads.iter() {
            check_range(self.sector_size, self.sectors, *sector, buf.len())?;
        }
        let aligned = writes.iter().all(|(_, b)| !self.needs_bounce(b.as_ptr()))
            && reads.iter().all(|(_, b)| !self.needs_bounce(b.as_ptr()));
        let Some(u) = self.uring.as_ref().filter(|_| aligned) else {
            return super::transfer_one_by_one(self, writes, reads);
        };
        let mut pieces = Pieces::with_capacity(writes.len() + reads.len());
        for (i, &(sector, buf)) in writes.iter().enumerate() {
            pieces.push(Piece::write(i, self.offset(sector), buf, false));
        }
        let (w, r) = (writes.len(), reads.len());
        for (i, (sector, buf)) in reads.iter_mut().enumerate() {
            pieces.push(Piece::read(writes.len() + i, self.offset(*sector), buf));
        }
        u.run(self.file.as_fd(), pieces.as_mut_slice(), false)
            .map_err(|(op, e)| {
                let kind = if op < w { IoOp::Write } else { IoOp::Read };
                TransferFailed::wrap_in(w, r, kind, e)
            })
    }

    fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Waits on an inotify watch of the path: every write through the
    /// kernel's VFS on this host, by any process, to this file or block
    /// device node wakes it. Writes from other hosts do not; callers poll
    /// at the timeout for those.
    fn wait_for_change(&self, timeout: Duration) -> bool {
        let mut created = false;
        let watch = self.watch.get_or_init(|| {
            created = true;
            self.new_watch()
        });
        let Some(fd) = watch else {
            std::thread::sleep(timeout);
            return false;
        };
        if created {
            // Writes made before the watch existed were not recorded: let
            // the caller look again now that they will be.
            return true;
        }
        let ts = Timespec {
            tv_sec: timeout.as_secs() as _,
            tv_nsec: timeout.subsec_nanos() as _,
        };
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(n) if n > 0 => {
                // Drain the queued events; how many does not matter.
                let mut buf = [MaybeUninit::<u8>::uninit(); 1024];
                let mut reader = inotify::Reader::new(fd, &mut buf);
                while reader.next().is_ok() {}
                true
            }
            Ok(_) => false,
            Err(_) => {
                std::thread::sleep(timeout);
                false
            }
        }
    }

    fn notifies_changes(&self) -> bool {
        self.watch.get_or_init(|| self.new_watch()).is_some()
    }

    fn describe(&self) -> String {
        format!(
            "{} ({}, {} sectors of {} bytes, {})",
            self.path.display(),
            if self.block_device {
                "block device"
            } else {
                "file"
            },
            self.sectors,
            self.sector_size,
            // Not the I/O path: the same on both (diagnostics print this).
            if self.direct { "O_DIRECT" } else { "buffered" }
        )
    }

    /// Open file description locks on the role's state sector: released
    /// when the handle is dropped or the process dies, and shared by no
    /// other open of the file, so two handles in one process conflict too.
    ///
    /// Where the kernel has io_uring, a lock found held is tried again for
    /// up to [`LOCK_GRACE`] before its holder is reported: a process that
    /// died with io_uring requests in flight is gone before they are, and
    /// its open file description, with the lock, lasts until the kernel
    /// has finished them (measured: up to 50 ms after `wait` returns,
    /// 300 ms with a slow disk). The lock is right to last that long, as a
    /// write of the dead handle may land until then; a new handle attaching
    /// right after a crash waits for it instead of failing. A role held
    /// by a live handle is thus reported after the grace period.
    fn try_lock(&self, side: Side) -> io::Result<Result<(), String>> {
        let grace = if uring::available().is_ok() {
            LOCK_GRACE
        } else {
            Duration::ZERO
        };
        let deadline = std::time::Instant::now() + grace;
        loop {
            match self.ofd_lock(side, libc::F_WRLCK as libc::c_short, libc::F_OFD_SETLK) {
                Ok(_) => return Ok(Ok(())),
                Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)) => {
                    if std::time::Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(2));
                        continue;
                    }
                    let inode = self.file.metadata().map(|m| m.ino()).unwrap_or(0);
                    return Ok(Err(format!(
                        "another open handle on this host holds an open-file-description lock on \
                         bytes {}..{} of {} (inode {inode}; see /proc/locks)",
                        self.offset(side.sector()),
                        self.offset(side.sector()) + self.sector_size as u64,
                        self.path.display()
                    )));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn unlock(&self, side: Side) {
        let _ = self.ofd_lock(side, libc::F_UNLCK as libc::c_short, libc::F_OFD_SETLK);
    }
}

#[cfg(test)]
mod tests;
