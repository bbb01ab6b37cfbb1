//! The io_uring path of [`FileDevice`](super::FileDevice): its reads,
//! writes and flushes as io_uring requests, so that independent requests
//! ([`transfer`](super::BlockDevice::transfer)) are in flight together and
//! a dependent sequence ([`chain`](super::BlockDevice::chain)) is one
//! submission whose requests the kernel starts one after another
//! (`IOSQE_IO_LINK`), instead of one system call and one wake-up each.
//!
//! # The buffers lent to the kernel
//!
//! A submitted request holds raw pointers into the caller's buffers until
//! its completion is reaped. [`Uring::run`] therefore returns only once
//! every request it submitted has completed, on its error paths too: a
//! [`Piece`] borrows its buffer for as long as the call that runs it, and
//! nothing is left in flight when the call returns. The one way out while
//! requests are in flight is a ring that keeps refusing to be waited on,
//! which a valid ring never does; the process is then aborted rather than
//! let the kernel write into freed memory.
//!
//! # Rings
//!
//! Each device keeps a few rings (one per thread using it at the same
//! time; most devices have one user). A ring is taken for a call and put
//! back after, so two threads sharing a device (the journal's pushers and
//! its worker) do not wait for each other's I/O, as with `pread`/`pwrite`.
//!
//! # Availability
//!
//! [`available`] creates a ring once per process and asks the kernel which
//! operations it has; a kernel without io_uring (before 5.6, or with it
//! disabled by `kernel.io_uring_disabled` or a seccomp filter) makes the
//! devices fall back to `pread`/`pwrite`, with one log line.

use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types, IoUring, Probe};

/// Submission queue entries per ring. A call with more requests submits
/// them in rounds (a chain: each round after the previous one completed).
const ENTRIES: u32 = 64;

/// The most bytes one read or write request asks for: the request length
/// is 32 bits, and Linux moves at most 2 GiB - 4 KiB per call anyway. A
/// longer buffer completes short and the rest is asked for again.
const MAX_REQUEST: usize = 1 << 30;

/// Rings a device keeps for later calls; more concurrent callers get a
/// ring each and drop it afterwards.
const KEPT_RINGS: usize = 4;

/// How long a ring may refuse to be waited on, while it holds requests in
/// flight, before the process is aborted (see the module documentation).
const STUCK_LIMIT: Duration = Duration::from_secs(60);

/// Whether this kernel offers what the io_uring path needs (a ring, and
/// the READ, WRITE and FSYNC operations): probed once per process. `Err`
/// says why not.
pub(crate) fn available() -> Result<(), &'static str> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            let r = probe();
            if let Err(why) = &r {
                tracing::info!(
                    "io_uring unavailable ({why}): files and block devices use synchronous I/O"
                );
            }
            r
        })
        .as_ref()
        .map(|_| ())
        .map_err(|why| why.as_str())
}

fn probe() -> Result<(), String> {
    let ring = IoUring::new(4).map_err(|e| format!("io_uring_setup: {e}"))?;
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| format!("IORING_REGISTER_PROBE: {e}"))?;
    for (code, name) in [
        (opcode::Read::CODE, "READ"),
        (opcode::Write::CODE, "WRITE"),
        (opcode::Fsync::CODE, "FSYNC"),
    ] {
        if !probe.is_supported(code) {
            return Err(format!("the kernel has no IORING_OP_{name}"));
        }
    }
    Ok(())
}

/// What a [`Piece`] asks the kernel to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Read,
    Write,
    /// A write with `RWF_DSYNC`: complete once durable.
    WriteDsync,
    /// `fdatasync`.
    Fsync,
}

/// How far a [`Piece`] has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Not submitted (again) yet: new, cancelled, or short so far.
    Todo,
    InFlight,
    Complete,
    /// Failed with this errno; 0 for a read or write that moved no bytes.
    Failed(i32),
}

/// One request: an operation on a range of the file, with the buffer it
/// borrows for `'a`, and its progress.
pub(super) struct Piece<'a> {
    kind: Kind,
    offset: u64,
    ptr: *mut u8,
    len: usize,
    done: usize,
    status: Status,
    /// Which of the caller's operations this piece belongs to.
    pub(super) op: usize,
    _buf: PhantomData<&'a mut [u8]>,
}

impl<'a> Piece<'a> {
    pub(super) const EMPTY: Piece<'a> = Piece {
        kind: Kind::Fsync,
        offset: 0,
        ptr: std::ptr::null_mut(),
        len: 0,
        done: 0,
        status: Status::Todo,
        op: 0,
        _buf: PhantomData,
    };

    pub(super) fn read(op: usize, offset: u64, buf: &'a mut [u8]) -> Piece<'a> {
        Piece {
            kind: Kind::Read,
            offset,
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
            op,
            ..Piece::EMPTY
        }
    }

    pub(super) fn write(op: usize, offset: u64, buf: &'a [u8], dsync: bool) -> Piece<'a> {
        Piece {
            kind: if dsync { Kind::WriteDsync } else { Kind::Write },
            offset,
            // The kernel only reads through this pointer (a write).
            ptr: buf.as_ptr().cast_mut(),
            len: buf.len(),
            op,
            ..Piece::EMPTY
        }
    }

    pub(super) fn fsync(op: usize) -> Piece<'a> {
        Piece { op, ..Piece::EMPTY }
    }

    /// True for a write with `RWF_DSYNC`.
    pub(super) fn is_dsync(&self) -> bool {
        self.kind == Kind::WriteDsync
    }

    fn entry(&self, fd: types::Fd) -> squeue::Entry {
        let rest = self.len - self.done;
        let len = rest.min(MAX_REQUEST) as u32;
        let offset = self.offset + self.done as u64;
        // `done <= len`, so the pointer stays within (or one past) the
        // borrowed buffer.
        let ptr = self.ptr.wrapping_add(self.done);
        match self.kind {
            Kind::Read => opcode::Read::new(fd, ptr, len).offset(offset).build(),
            Kind::Write => opcode::Write::new(fd, ptr, len).offset(offset).build(),
            Kind::WriteDsync => opcode::Write::new(fd, ptr, len)
                .offset(offset)
                .rw_flags(libc::RWF_DSYNC)
                .build(),
            Kind::Fsync => opcode::Fsync::new(fd)
                .flags(types::FsyncFlags::DATASYNC)
                .build(),
        }
    }

    /// Takes the result of one completion.
    fn complete(&mut self, res: i32) {
        self.status = if res < 0 {
            match -res {
                // Not carried out: submit again. (The kernel retries
                // these itself for files; this is belt and braces.)
                libc::EINTR | libc::EAGAIN | libc::ECANCELED => Status::Todo,
                errno => Status::Failed(errno),
            }
        } else if self.kind == Kind::Fsync {
            Status::Complete
        } else if res == 0 {
            Status::Failed(0)
        } else {
            self.done = (self.done + res as usize).min(self.len);
            if self.done == self.len {
                Status::Complete
            } else {
                // Short: the rest goes in the next round.
                Status::Todo
            }
        };
    }

    fn error(&self, errno: i32) -> io::Error {
        match (errno, self.kind) {
            (0, Kind::Read) => io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end of the file (did it shrink?)",
            ),
            (0, _) => io::Error::new(io::ErrorKind::WriteZero, "the write moved no bytes"),
            (e, _) => io::Error::from_raw_os_error(e),
        }
    }
}

/// Pieces for one call, inline for the usual few (no allocation on the hot
/// paths), on the heap beyond.
pub(super) struct Pieces<'a> {
    inline: [Piece<'a>; 4],
    len: usize,
    /// Every piece, once there are more than fit inline.
    heap: Vec<Piece<'a>>,
}

impl<'a> Pieces<'a> {
    pub(super) fn with_capacity(n: usize) -> Pieces<'a> {
        Pieces {
            inline: [const { Piece::EMPTY }; 4],
            len: 0,
            heap: if n > 4 {
                Vec::with_capacity(n)
            } else {
                Vec::new()
            },
        }
    }

    pub(super) fn push(&mut self, piece: Piece<'a>) {
        if self.len < self.inline.len() && self.heap.capacity() == 0 {
            self.inline[self.len] = piece;
            self.len += 1;
            return;
        }
        if self.heap.is_empty() {
            self.heap.reserve(self.len * 2);
            let inline = self.inline[..self.len].iter_mut();
            self.heap
                .extend(inline.map(|p| std::mem::replace(p, Piece::EMPTY)));
        }
        self.heap.push(piece);
    }

    pub(super) fn as_mut_slice(&mut self) -> &mut [Piece<'a>] {
        if self.heap.is_empty() {
            &mut self.inline[..self.len]
        } else {
            &mut self.heap
        }
    }
}

/// A device's rings.
pub(super) struct Uring {
    rings: Mutex<Vec<IoUring>>,
}

impl Uring {
    pub(super) fn new() -> Uring {
        Uring {
            rings: Mutex::new(Vec::new()),
        }
    }

    fn take(&self) -> io::Result<IoUring> {
        let kept = self.rings.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match kept {
            Some(ring) => Ok(ring),
            None => IoUring::new(ENTRIES),
        }
    }

    fn give_back(&self, ring: IoUring) {
        let mut rings = self.rings.lock().unwrap_or_else(|e| e.into_inner());
        if rings.len() < KEPT_RINGS {
            rings.push(ring);
        }
    }

    /// Carries out `pieces` on `fd` and returns once every request it
    /// submitted has completed.
    ///
    /// Independent (`linked` false): every piece is in flight at once (in
    /// rounds of [`ENTRIES`]), carried out in any order; on failure, the
    /// first failed piece by index and its error, every other piece having
    /// been carried out or failed too.
    ///
    /// Linked: each piece starts once the previous one has completed
    /// (`IOSQE_IO_LINK`; a round waits for the previous round); on
    /// failure, the failed piece, the pieces before it having completed
    /// and the pieces after it not having started.
    ///
    /// A read or write that completes short continues where it stopped;
    /// in a chain, the kernel cancels the requests linked after a short
    /// one, and they are submitted again after it.
    pub(super) fn run(
        &self,
        fd: BorrowedFd<'_>,
        pieces: &mut [Piece<'_>],
        linked: bool,
    ) -> Result<(), (usize, io::Error)> {
        // A ring that cannot be made leaves nothing started.
        let mut ring = self.take().map_err(|e| (0, e))?;
        let r = run_on(&mut ring, types::Fd(fd.as_raw_fd()), pieces, linked);
        // Nothing is in flight on the ring any more (run_on waited).
        self.give_back(ring);
        r
    }
}

fn run_on(
    ring: &mut IoUring,
    fd: types::Fd,
    pieces: &mut [Piece<'_>],
    linked: bool,
) -> Result<(), (usize, io::Error)> {
    let n = pieces.len();
    let capacity = ring.params().sq_entries() as usize;
    // Linked: every piece before `first` is complete.
    let mut first = 0;
    let mut idle_rounds = 0;
    loop {
        let progress_before: usize = pieces.iter().map(progress).sum();
        let mut queued = 0;
        {
            let mut sq = ring.submission();
            let end = if linked { (first + capacity).min(n) } else { n };
            for (i, piece) in pieces.iter_mut().enumerate().take(end).skip(first) {
                if piece.status != Status::Todo {
                    continue;
                }
                if sq.is_full() {
                    break;
                }
                let mut entry = piece.entry(fd).user_data(i as u64);
                if linked && i + 1 < end {
                    entry = entry.flags(squeue::Flags::IO_LINK);
                }
                // SAFETY: the entry points into the buffer that
                // `pieces[i]` borrows for longer than this call, at
                // `done..done + len` within it (`entry`), and this call
                // waits for the entry's completion (`wait_all`) before it
                // returns, on every path. The fd is borrowed by the caller
                // for the call too.
                unsafe {
                    if sq.push(&entry).is_err() {
                        break;
                    }
                }
                piece.status = Status::InFlight;
                queued += 1;
            }
        }
        if queued == 0 {
            break;
        }
        wait_all(ring, queued, pieces);
        if linked {
            while first < n && pieces[first].status == Status::Complete {
                first += 1;
            }
            if first == n {
                return Ok(());
            }
            if let Status::Failed(e) = pieces[first].status {
                return Err((first, pieces[first].error(e)));
            }
        } else if !pieces.iter().any(|p| p.status == Status::Todo) {
            break;
        }
        // Something is left to (re)submit: a short transfer, or requests
        // the kernel cancelled. Give up should rounds stop making progress.
        if pieces.iter().map(progress).sum::<usize>() == progress_before {
            idle_rounds += 1;
            if idle_rounds >= 100 {
                let i = pieces
                    .iter()
                    .position(|p| p.status == Status::Todo)
                    .unwrap_or(0);
                return Err((
                    i,
                    io::Error::new(
                        io::ErrorKind::Interrupted,
                        "io_uring request cancelled or interrupted 100 times in a row",
                    ),
                ));
            }
        } else {
            idle_rounds = 0;
        }
    }
    match pieces.iter().enumerate().find_map(|(i, p)| match p.status {
        Status::Failed(e) => Some((i, p.error(e))),
        _ => None,
    }) {
        Some(failed) => Err(failed),
        None => Ok(()),
    }
}

/// A measure of how far a piece has got, to tell a round that moved
/// nothing.
fn progress(p: &Piece<'_>) -> usize {
    p.done
        + match p.status {
            Status::Complete | Status::Failed(_) => 1,
            Status::Todo | Status::InFlight => 0,
        }
}

/// Submits what is queued and reaps `outstanding` completions into
/// `pieces`. Returns only once all have arrived: the requests hold
/// pointers into the pieces' buffers until then.
fn wait_all(ring: &mut IoUring, mut outstanding: usize, pieces: &mut [Piece<'_>]) {
    let mut stuck_since: Option<Instant> = None;
    while outstanding > 0 {
        match ring.submit_and_wait(outstanding) {
            Ok(_) => stuck_since = None,
            // A signal, or a kernel short of memory for a moment: the
            // requests not yet taken stay queued and go with the next call.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::EBUSY)
                ) => {}
            Err(e) => {
                // Not expected of a valid ring; the buffers are still lent
                // to the kernel, so returning is not an option.
                let since = *stuck_since.get_or_insert_with(Instant::now);
                if since.elapsed() > STUCK_LIMIT {
                    eprintln!(
                        "shared-block-ring: io_uring_enter failed for {} s with requests in \
                         flight ({e}); aborting rather than freeing their buffers",
                        STUCK_LIMIT.as_secs()
                    );
                    std::process::abort();
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        for cqe in ring.completion() {
            // Every user_data is an index into `pieces`, set above.
            if let Some(p) = pieces.get_mut(cqe.user_data() as usize) {
                if p.status == Status::InFlight {
                    p.complete(cqe.result());
                    outstanding -= 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;
    use std::os::unix::fs::FileExt;

    use super::*;
    use crate::device::AlignedBuf;

    fn ring_file(len: u64) -> (tempfile::NamedTempFile, std::fs::File) {
        let f = tempfile::NamedTempFile::new_in(crate::test_dir()).unwrap();
        f.as_file().set_len(len).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(f.path())
            .unwrap();
        (f, file)
    }

    fn skip() -> bool {
        available().is_err()
    }

    #[test]
    fn a_short_read_continues_and_then_fails_at_the_end_of_the_file() {
        if skip() {
            return;
        }
        // 3000 bytes in the file, a read of 4096 at 0: 3000, then 0.
        let (_f, file) = ring_file(3000);
        file.write_all_at(&[7u8; 3000], 0).unwrap();
        let u = Uring::new();
        let mut buf = vec![0u8; 4096];
        let (i, e) = u
            .run(file.as_fd(), &mut [Piece::read(0, 0, &mut buf)], false)
            .unwrap_err();
        assert_eq!((i, e.kind()), (0, io::ErrorKind::UnexpectedEof));
        assert!(buf[..3000].iter().all(|&b| b == 7));
        // Within the file, a read is whole.
        let mut small = vec![0u8; 3000];
        u.run(file.as_fd(), &mut [Piece::read(0, 0, &mut small)], false)
            .unwrap();
        assert_eq!(small, buf[..3000]);
    }

    #[test]
    fn a_failed_link_leaves_the_rest_of_the_chain_unstarted() {
        if skip() {
            return;
        }
        let (_f, file) = ring_file(3000);
        let u = Uring::new();
        let mut past_end = vec![0u8; 1024];
        let data = [5u8; 100];
        // The read fails at the end of the file; the write linked after it
        // must not happen.
        let (i, _) = u
            .run(
                file.as_fd(),
                &mut [
                    Piece::read(0, 2500, &mut past_end),
                    Piece::write(1, 0, &data, false),
                    Piece::fsync(2),
                ],
                true,
            )
            .unwrap_err();
        assert_eq!(i, 0);
        let mut head = [0u8; 100];
        file.read_exact_at(&mut head, 0).unwrap();
        assert_eq!(head, [0u8; 100], "the write after the failed read ran");
        // Without the failure the whole chain runs, in order: the second
        // write of the same bytes wins.
        let again = [6u8; 100];
        u.run(
            file.as_fd(),
            &mut [
                Piece::write(0, 0, &data, false),
                Piece::write(1, 0, &again, true),
                Piece::fsync(2),
            ],
            true,
        )
        .unwrap();
        file.read_exact_at(&mut head, 0).unwrap();
        assert_eq!(head, again);
    }

    #[test]
    fn long_chains_run_in_rounds_in_order() {
        if skip() {
            return;
        }
        let (_f, file) = ring_file(4096);
        let u = Uring::new();
        // 200 writes of the same sector: the last one must win, which it
        // does only if every round kept the order.
        let datas: Vec<[u8; 512]> = (0..200u32).map(|i| [i as u8; 512]).collect();
        let mut pieces: Vec<Piece<'_>> = datas
            .iter()
            .enumerate()
            .map(|(i, d)| Piece::write(i, 512, d, false))
            .collect();
        u.run(file.as_fd(), &mut pieces, true).unwrap();
        let mut back = [0u8; 512];
        file.read_exact_at(&mut back, 512).unwrap();
        assert_eq!(back, [199u8; 512]);
        // Rings are kept for later calls, not one per call.
        assert_eq!(u.rings.lock().unwrap().len(), 1);
        let _ = AlignedBuf::zeroed(0);
    }

    #[test]
    fn inline_pieces_spill_to_the_heap() {
        let bufs = [[0u8; 512]; 6];
        for (capacity, n) in [(2, 3), (2, 4), (2, 6), (6, 6), (0, 0)] {
            let mut p = Pieces::with_capacity(capacity);
            for (i, b) in bufs.iter().enumerate().take(n) {
                p.push(Piece::write(i, 0, b, false));
            }
            let ops: Vec<usize> = p.as_mut_slice().iter().map(|p| p.op).collect();
            assert_eq!(ops, (0..n).collect::<Vec<_>>());
        }
    }
}
