//! Network block devices: a client for the NBD protocol spoken by
//! qemu-nbd, nbdkit and nbd-server.
//!
//! [`NbdDevice`] connects to one export of an NBD server, named by an NBD
//! URI (`nbd://host[:port]/export`, `nbd+unix:///export?socket=PATH`), and
//! reads and writes its sectors. Each producer or consumer opens its own
//! device, so each has its own connection; the server serves all of them
//! from one image, which is how two hosts share a ring without sharing a
//! disk.
//!
//! # Why a hand-written client
//!
//! The ring needs only a small part of the protocol: the fixed newstyle
//! handshake with `NBD_OPT_GO` and its `NBD_INFO_BLOCK_SIZE` constraints
//! (falling back to `NBD_OPT_EXPORT_NAME`), and the `READ`, `WRITE` (with
//! or without `FUA`) and `FLUSH` commands with simple replies, several in
//! flight at once.
//! The Rust crates available when this was written did not fit: `nbd`
//! (0.3) only does `NBD_OPT_EXPORT_NAME`, has no FUA, flush or block size
//! negotiation and no URI parsing; the `libnbd` bindings are not published
//! on crates.io and would tie the library to a C library at build time.
//! The subset implemented here, written from the protocol documents
//! (`doc/proto.md` and `doc/uri.md` of the NBD project), is about a
//! thousand lines with its documentation, and is tested against qemu-nbd
//! and nbdkit as well as against a fake server that misbehaves on purpose.
//!
//! Not implemented, because the ring has no use for them: TLS (`nbds://`
//! URIs are refused with a clear error; tunnel the connection instead),
//! structured replies, extended headers, oldstyle negotiation, TRIM,
//! WRITE_ZEROES and block status.
//!
//! How the device behaves (sector size, durability, lost connections,
//! timeouts) is documented on [`NbdDevice`].
//!
//! The client is split by protocol phase: `uri` parses the URI, `connect`
//! opens the socket, `handshake` haggles over options, `block_size` checks
//! the server's block size constraints and derives the sector size from
//! them, and `transmission` sends requests and reads replies. This file
//! ties them together as a [`BlockDevice`].

use std::fmt::Write as _;
use std::io;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::{check_chain, check_range, BlockDevice, ChainError, FileOptions, Op};
use crate::error::Error;

mod block_size;
mod connect;
#[cfg(test)]
mod fake;
mod handshake;
mod transmission;
mod uri;
mod wire;

pub use block_size::BlockSizes;
pub(crate) use uri::looks_like_uri;
pub use uri::{NbdAddress, NbdUri};

use connect::connect;
use handshake::{handshake, handshake_context, Export};
use transmission::{describe_loss, Conn, Failure, Request};
use wire::*;

enum State {
    Up(Conn),
    /// Why the connection was lost.
    Lost(String),
}

/// One export of an NBD server, as a [`BlockDevice`].
///
/// One connection, behind a mutex (the trait's methods take `&self`): each
/// call has the connection to itself and returns once every reply to it is
/// in. Within a call, requests are pipelined: a large read or write is cut
/// into pieces of 512 KiB that are in flight together, as are the
/// transfers of one [`transfer`](BlockDevice::transfer) call, with the
/// replies matched to their requests by handle whatever their order. Each
/// producer or consumer should open its own device.
///
/// ```no_run
/// use shared_block_ring::device::NbdDevice;
/// use shared_block_ring::{Options, Producer};
///
/// # fn main() -> Result<(), shared_block_ring::Error> {
/// // qemu-nbd -f raw --shared=4 --cache=none --persistent -x ring ring.img
/// let device = NbdDevice::open("nbd://storage.example:10809/ring")?;
/// let mut producer = Producer::attach(device, Options::new())?;
/// let end = producer.push(b"hello")?;
/// producer.advance(end)?;
/// # Ok(())
/// # }
/// ```
///
/// # Sector size and request sizes
///
/// The sector size is the server's minimum block size, but never less than
/// 512 bytes, the smallest sector the format allows (its state sectors hold
/// a 384-byte text at byte 128). [`FileOptions::sector_size`] may ask for a
/// larger one, which must be a multiple of the minimum block size. Reads
/// and writes are cut into requests of at most 512 KiB, or of the server's
/// maximum payload when that is smaller, several in flight at once (up to
/// 16, the number qemu-nbd serves at once). The preferred block size is reported by
/// [`NbdDevice::block_sizes`] but not otherwise used: the ring writes whole
/// sectors, so a server whose preferred size is larger than the sector size
/// does a read-modify-write for small writes; choose a sector size equal to
/// the preferred size if that matters more than compatibility with rings
/// made on 512-byte devices.
///
/// # Durability
///
/// [`write_durable`](BlockDevice::write_durable) sends `WRITE` with the
/// `FUA` flag when the server supports it (`NBD_FLAG_SEND_FUA`): the server
/// replies only once the data is on its stable storage. Otherwise it sends
/// the writes and then, once every write has its reply (a `FLUSH` covers
/// only the writes the server has completed when it gets it), a `FLUSH`.
/// [`flush`](BlockDevice::flush) sends
/// `FLUSH` when the server supports it (`NBD_FLAG_SEND_FLUSH`); a server
/// that does not advertise it declares that it has no volatile cache, and
/// the flush is then a no-op, as in the Linux kernel's NBD driver. A server
/// configured to ignore flushes (qemu-nbd `--cache=unsafe`) voids the
/// power-loss guarantee, as a disk that lies about its cache would.
///
/// Two connections must see each other's completed writes. qemu-nbd (with
/// `--shared`) and nbdkit serve every connection from the same image, so
/// they do; a server with a per-connection cache would not.
///
/// # Lost connections and timeouts
///
/// The client never reconnects by itself: a request whose reply was lost
/// may or may not have been carried out, and only the ring (by attaching
/// again) can find out where it stands. After any failure of the connection
/// (the server closed it, a reset, a malformed reply, or no reply within
/// the I/O timeout) every operation fails with an error that says
/// "connection to nbd://... lost"; open the device again, and attach the
/// producer or consumer again, to continue. A server's error reply (EIO,
/// ENOSPC, EPERM...) is different: the connection stays usable, and the
/// error is an [`io::Error`] whose [`raw_os_error`](io::Error::raw_os_error)
/// is the errno the server sent.
///
/// Timeouts, so that a dead server or network is an error rather than a
/// hang: connecting gives up after [`NbdDevice::CONNECT_TIMEOUT`] (10 s)
/// per address; a send or receive that makes no progress for
/// [`NbdDevice::IO_TIMEOUT`] (30 s, long enough for a server flushing a
/// large cache to slow disks; change it with
/// [`NbdDevice::set_io_timeout`]) loses the connection. This applies to the
/// handshake too. Resolving a host name uses the system resolver, which has
/// its own timeouts.
pub struct NbdDevice {
    uri: String,
    export: Export,
    sector_size: usize,
    sectors: u64,
    /// The most bytes one READ or WRITE carries: the server's maximum
    /// payload in whole sectors, or less, so that a large transfer is
    /// several requests in flight together.
    chunk: usize,
    read_only: bool,
    state: Mutex<State>,
}

impl NbdDevice {
    /// The port assigned to NBD by IANA, used when a URI names none.
    pub const DEFAULT_PORT: u16 = 10809;
    /// How long connecting to one address of the server may take.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// How long one send or receive may block (the default for
    /// [`set_io_timeout`](Self::set_io_timeout)), during the handshake and
    /// every request.
    pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

    /// Connects to the export named by `uri`, read-write, with the sector
    /// size chosen from the server's block size constraints.
    ///
    /// # Errors
    /// See [`open_with`](Self::open_with).
    pub fn open(uri: &str) -> Result<NbdDevice, Error> {
        NbdDevice::open_with(uri, &FileOptions::default())
    }

    /// Connects to the export named by `uri`. Of `options`, the sector size
    /// and read-only mode apply; direct I/O is the server's business.
    ///
    /// # Errors
    /// [`Error::InvalidUri`] for a URI this client cannot use;
    /// [`Error::Open`] when the server cannot be reached or refuses the
    /// export (the message says which, with the server's own message when
    /// it sent one); [`Error::SectorSizeMismatch`] for a sector size that
    /// is not a multiple of the server's minimum block size;
    /// [`Error::BadSectorSize`] for one the format does not support.
    pub fn open_with(uri: &str, options: &FileOptions) -> Result<NbdDevice, Error> {
        let parsed = NbdUri::parse(uri)?;
        let open_err = |source: io::Error| Error::Open {
            path: PathBuf::from(uri),
            source,
        };
        let mut stream = connect(parsed.address()).map_err(open_err)?;
        stream
            .set_timeout(Some(NbdDevice::IO_TIMEOUT))
            .map_err(open_err)?;
        let export = handshake(&mut stream, parsed.export()).map_err(|e| {
            stream.shutdown();
            open_err(handshake_context(e, NbdDevice::IO_TIMEOUT))
        })?;
        let conn = Conn::new(stream, NbdDevice::IO_TIMEOUT);
        NbdDevice::from_export(uri, export, conn, options)
    }

    fn from_export(
        uri: &str,
        export: Export,
        conn: Conn,
        options: &FileOptions,
    ) -> Result<NbdDevice, Error> {
        let sector_size = block_size::sector_size(&export.block_sizes, options.sector_size)?;
        let max_request =
            block_size::max_request(&export.block_sizes, sector_size).map_err(|source| {
                Error::Open {
                    path: PathBuf::from(uri),
                    source,
                }
            })?;
        let device = NbdDevice {
            uri: uri.to_string(),
            sector_size,
            sectors: export.size / sector_size as u64,
            chunk: block_size::pipeline_chunk(max_request, sector_size),
            read_only: options.read_only || export.has(FLAG_READ_ONLY),
            export,
            state: Mutex::new(State::Up(conn)),
        };
        tracing::debug!(device = %device.describe(), ?export.block_sizes, "connected to NBD export");
        Ok(device)
    }

    /// The URI the device was opened with.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The export's size in bytes, as the server reported it.
    pub fn export_size(&self) -> u64 {
        self.export.size
    }

    /// The server's block size constraints.
    pub fn block_sizes(&self) -> BlockSizes {
        self.export.block_sizes
    }

    /// True when the server accepts the FUA flag, so that
    /// [`write_durable`](BlockDevice::write_durable) is one request.
    pub fn supports_fua(&self) -> bool {
        self.export.has(FLAG_SEND_FUA)
    }

    /// True when the server accepts FLUSH (it has a volatile cache).
    pub fn supports_flush(&self) -> bool {
        self.export.has(FLAG_SEND_FLUSH)
    }

    /// True until the connection is lost. It is never re-established:
    /// open a new device.
    pub fn is_connected(&self) -> bool {
        matches!(*self.lock(), State::Up(_))
    }

    /// Sets how long one send or receive may block before the connection
    /// is given up as lost (default [`IO_TIMEOUT`](Self::IO_TIMEOUT)).
    ///
    /// # Errors
    /// A zero duration ([`io::ErrorKind::InvalidInput`]), or the error of
    /// a lost connection.
    pub fn set_io_timeout(&self, timeout: Duration) -> io::Result<()> {
        if timeout.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an I/O timeout of zero would disable the timeout",
            ));
        }
        self.with_conn(|conn| {
            conn.stream.set_timeout(Some(timeout))?;
            conn.timeout = timeout;
            Ok(())
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => {
                // A panic mid-request may have left a reply unread: the
                // stream can no longer be trusted to be in step.
                self.state.clear_poison();
                let mut g = poisoned.into_inner();
                if let State::Up(conn) = &*g {
                    conn.stream.shutdown();
                    *g = State::Lost("a thread panicked during a request".into());
                }
                g
            }
        }
    }

    /// Runs `f` on the connection. A [`Failure::Lost`] shuts the connection
    /// down for good and is reported as "connection to ... lost".
    fn with_conn<R>(&self, f: impl FnOnce(&mut Conn) -> Result<R, Failure>) -> io::Result<R> {
        let mut state = self.lock();
        let conn = match &mut *state {
            State::Up(conn) => conn,
            State::Lost(why) => {
                return Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    format!(
                        "connection to {} lost earlier ({why}); open the device again to reconnect",
                        self.uri
                    ),
                ))
            }
        };
        match f(conn) {
            Ok(r) => Ok(r),
            Err(Failure::Server(e)) => Err(e),
            Err(Failure::Lost(e)) => {
                let why = describe_loss(&e, conn.timeout);
                conn.stream.shutdown();
                tracing::warn!(uri = %self.uri, reason = %why, "NBD connection lost");
                let kind = match e.kind() {
                    io::ErrorKind::UnexpectedEof => io::ErrorKind::ConnectionAborted,
                    io::ErrorKind::WouldBlock => io::ErrorKind::TimedOut,
                    k => k,
                };
                let err = io::Error::new(
                    kind,
                    format!(
                        "connection to {} lost: {why}; open the device again to reconnect",
                        self.uri
                    ),
                );
                *state = State::Lost(why);
                Err(err)
            }
        }
    }

    fn refuse_writes(&self) -> io::Result<()> {
        if self.read_only {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{} is read-only", self.uri),
            ));
        }
        Ok(())
    }

    fn offset(&self, sector: u64) -> u64 {
        sector * self.sector_size as u64
    }

    /// The requests that write `buf` at `sector`: pieces of at most
    /// `chunk` bytes, to be in flight together.
    fn writes<'a>(
        &self,
        sector: u64,
        buf: &'a [u8],
        fua: bool,
    ) -> impl Iterator<Item = Request<'a>> + 'a {
        let (start, chunk) = (self.offset(sector), self.chunk);
        buf.chunks(chunk)
            .enumerate()
            .map(move |(i, data)| Request::Write {
                offset: start + (i * chunk) as u64,
                data,
                fua,
            })
    }

    /// The requests that read `buf` from `sector`, as for
    /// [`writes`](Self::writes).
    fn reads<'a>(&self, sector: u64, buf: &'a mut [u8]) -> impl Iterator<Item = Request<'a>> + 'a {
        let (start, chunk) = (self.offset(sector), self.chunk);
        buf.chunks_mut(chunk)
            .enumerate()
            .map(move |(i, into)| Request::Read {
                offset: start + (i * chunk) as u64,
                into,
            })
    }

    /// Writes `buf`, with FUA when `fua`, then flushes when `flush`.
    fn write_requests(&self, sector: u64, buf: &[u8], fua: bool, flush: bool) -> io::Result<()> {
        check_range(self.sector_size, self.sectors, sector, buf.len())?;
        self.refuse_writes()?;
        let flush = flush.then_some(Request::Flush);
        self.with_conn(|conn| conn.run(self.writes(sector, buf, fua).chain(flush)))
    }
}

impl Drop for NbdDevice {
    fn drop(&mut self) {
        if let State::Up(conn) = &mut *self.lock() {
            // A soft disconnect, so the server does not log a dropped client.
            let _ = conn.send(CMD_DISC);
            conn.stream.shutdown();
        }
    }
}

impl BlockDevice for NbdDevice {
    fn sector_size(&self) -> usize {
        self.sector_size
    }

    fn sectors(&self) -> u64 {
        self.sectors
    }

    fn read(&self, sector: u64, buf: &mut [u8]) -> io::Result<()> {
        check_range(self.sector_size, self.sectors, sector, buf.len())?;
        self.with_conn(|conn| conn.run(self.reads(sector, buf)))
    }

    fn write(&self, sector: u64, buf: &[u8]) -> io::Result<()> {
        self.write_requests(sector, buf, false, false)
    }

    fn write_durable(&self, sector: u64, buf: &[u8]) -> io::Result<()> {
        let fua = self.supports_fua();
        // Without FUA, a flush after the writes; without flush either, the
        // server has no volatile cache.
        self.write_requests(sector, buf, fua, !fua && self.supports_flush())
    }

    fn flush(&self) -> io::Result<()> {
        if !self.supports_flush() {
            // The server declares it has no volatile cache.
            return Ok(());
        }
        self.with_conn(|conn| conn.run([Request::Flush]))
    }

    /// Every request of a transfer is sent before the first reply is read.
    fn transfers_together(&self) -> bool {
        true
    }

    fn transfer(&self, writes: &[(u64, &[u8])], reads: &mut [(u64, &mut [u8])]) -> io::Result<()> {
        for &(sector, buf) in writes {
            check_range(self.sector_size, self.sectors, sector, buf.len())?;
        }
        for (sector, buf) in reads.iter() {
            check_range(self.sector_size, self.sectors, *sector, buf.len())?;
        }
        if !writes.is_empty() {
            self.refuse_writes()?;
        }
        // Writes first: see "Pipelining" in the transmission module.
        let writes = writes
            .iter()
            .flat_map(|&(sector, buf)| self.writes(sector, buf, false));
        let reads = reads
            .iter_mut()
            .flat_map(|(sector, buf)| self.reads(*sector, buf));
        self.with_conn(|conn| conn.run(writes.chain(reads)))
    }

    /// Each write, durable write or flush waits for the replies to
    /// everything before it (the server keeps no order between requests
    /// in flight, and a FLUSH covers only the writes it has replied to);
    /// the reads that follow one and do not overlap its write go with it.
    fn chain(&self, ops: &mut [Op<'_>]) -> Result<(), ChainError> {
        check_chain(self, ops)?;
        let mut i = 0;
        while i < ops.len() {
            let head = ops[i].range();
            let head_writes = !matches!(ops[i], Op::Read { .. });
            let overlaps = |r: Option<(u64, usize)>| match (head, r) {
                (Some((a, alen)), Some((b, blen))) => {
                    let ss = self.sector_size as u64;
                    a < b + blen as u64 / ss && b < a + alen as u64 / ss
                }
                _ => false,
            };
            let mut end = i + 1;
            while end < ops.len()
                && matches!(ops[end], Op::Read { .. })
                && !(head_writes && overlaps(ops[end].range()))
            {
                end += 1;
            }
            let (head, rest) = ops[i..end].split_at_mut(1);
            let reads = rest
                .iter_mut()
                .filter_map(|op| match op {
                    Op::Read { sector, buf } => Some((*sector, &mut **buf)),
                    _ => None,
                })
                .flat_map(|(sector, buf)| self.reads(sector, buf));
            let fua = self.supports_fua();
            let flush = self.supports_flush().then_some(Request::Flush);
            let r = match &mut head[0] {
                Op::Read { sector, buf } => {
                    self.with_conn(|conn| conn.run(self.reads(*sector, buf).chain(reads)))
                }
                Op::Write { sector, buf } => {
                    self.with_conn(|conn| conn.run(self.writes(*sector, buf, false).chain(reads)))
                }
                Op::WriteDurable { sector, buf } => {
                    // As write_durable: FUA, or the writes and then a flush.
                    let flush = flush.filter(|_| !fua);
                    self.with_conn(|conn| {
                        conn.run(self.writes(*sector, buf, fua).chain(flush).chain(reads))
                    })
                }
                Op::Flush => self.with_conn(|conn| conn.run(flush.into_iter().chain(reads))),
            };
            r.map_err(|error| ChainError { done: i, error })?;
            i = end;
        }
        Ok(())
    }

    fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn describe(&self) -> String {
        let mut s = format!(
            "{} (NBD export, {} sectors of {} bytes",
            self.uri, self.sectors, self.sector_size
        );
        if self.read_only {
            s.push_str(", read-only");
        }
        s.push_str(match (self.supports_fua(), self.supports_flush()) {
            (true, _) => ", FUA",
            (false, true) => ", flush",
            (false, false) => ", no flush (the server writes through)",
        });
        if self.export.has(FLAG_CAN_MULTI_CONN) {
            s.push_str(", multi-conn");
        }
        if !self.is_connected() {
            s.push_str(", connection lost");
        }
        let _ = write!(s, ")");
        s
    }
}

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;

    use super::fake::*;
    use super::*;

    #[test]
    fn device_open_sends_uris_to_nbd_and_paths_to_files() {
        let e = super::super::open("nbds://h/x", &FileOptions::new())
            .err()
            .unwrap();
        assert!(matches!(e, Error::InvalidUri { .. }), "{e}");
        let e = super::super::open("ftp://h/x", &FileOptions::new())
            .err()
            .unwrap();
        assert!(matches!(e, Error::InvalidUri { .. }), "{e}");
        let e = super::super::open("/nonexistent/nbd.img", &FileOptions::new())
            .err()
            .unwrap();
        assert!(matches!(e, Error::Open { .. }), "{e}");
    }

    #[test]
    fn write_durable_uses_fua_when_offered_else_write_then_flush() {
        let w = |flags| Req {
            cmd: CMD_WRITE,
            flags,
            offset: 1024,
            len: 512,
        };
        let f = Req {
            cmd: CMD_FLUSH,
            flags: 0,
            offset: 0,
            len: 0,
        };
        for (flags, durable, flush) in [
            (
                FLAG_HAS_FLAGS | FLAG_SEND_FLUSH | FLAG_SEND_FUA,
                vec![w(CMD_FLAG_FUA)],
                vec![f],
            ),
            (FLAG_HAS_FLAGS | FLAG_SEND_FLUSH, vec![w(0), f], vec![f]),
            // No flush: the server has no cache to flush.
            (FLAG_HAS_FLAGS, vec![w(0)], vec![]),
            // Flags without NBD_FLAG_HAS_FLAGS mean nothing.
            (
                FLAG_SEND_FLUSH | FLAG_SEND_FUA | FLAG_READ_ONLY,
                vec![w(0)],
                vec![],
            ),
        ] {
            let fake = Fake::start(Script {
                flags,
                ..Script::default()
            });
            let d = NbdDevice::open(&fake.uri).unwrap();
            d.write_durable(2, &[3u8; 512]).unwrap();
            d.flush().unwrap();
            drop(d);
            let seen = fake.finish();
            let mut expected = durable;
            expected.extend(flush);
            let got: Vec<Req> = seen
                .requests
                .iter()
                .copied()
                .filter(|r| r.cmd != CMD_DISC)
                .collect();
            assert_eq!(got, expected, "flags {flags:#x}");
        }
    }

    #[test]
    fn read_only_exports_refuse_writes_locally() {
        let fake = Fake::start(Script {
            flags: FLAG_HAS_FLAGS | FLAG_READ_ONLY | FLAG_SEND_FLUSH,
            ..Script::default()
        });
        let d = NbdDevice::open(&fake.uri).unwrap();
        assert!(d.is_read_only());
        for e in [d.write(3, &[0u8; 512]), d.write_durable(3, &[0u8; 512])] {
            let e = e.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
            assert!(e.to_string().contains("read-only"), "{e}");
        }
        assert!(matches!(crate::create(&d).unwrap_err(), Error::ReadOnly));
        drop(d);
        let seen = fake.finish();
        assert!(requests(&seen, CMD_WRITE).is_empty());
    }

    #[test]
    fn ranges_are_checked_before_anything_is_sent() {
        let fake = Fake::start(Script::default());
        let d = NbdDevice::open(&fake.uri).unwrap();
        let mut buf = vec![0u8; 1024];
        assert_eq!(
            d.read(127, &mut buf).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            d.write(0, &buf[..100]).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert!(d.is_connected());
        drop(d);
        let seen = fake.finish();
        assert!(requests(&seen, CMD_READ).is_empty() && requests(&seen, CMD_WRITE).is_empty());
    }

    #[test]
    fn a_ring_works_over_the_fake_server() {
        let fake = Fake::start(Script::default());
        let d = NbdDevice::open(&fake.uri).unwrap();
        crate::create(&d).unwrap();
        let mut p = crate::Producer::attach(&d, crate::Options::new()).unwrap();
        let mut c = crate::Consumer::attach(&d, crate::Options::new()).unwrap();
        for round in 0..50u32 {
            let item = round.to_le_bytes().repeat(round as usize * 7 + 1);
            let end = p.push(&item).unwrap();
            p.advance(end).unwrap();
            let (next, got) = c.pop().unwrap();
            assert_eq!(got, item);
            c.advance(next).unwrap();
        }
    }
}
