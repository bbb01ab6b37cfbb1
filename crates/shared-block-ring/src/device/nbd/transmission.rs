//! The transmission phase: requests, simple replies, the server's error
//! replies, and what a lost connection or a timeout looks like.
//!
//! # Pipelining
//!
//! The protocol lets a client have many requests in flight on one
//! connection: the server may carry them out and reply in any order, and
//! each reply names its request by the handle the client chose. [`Conn::run`]
//! sends a batch of requests this way, up to [`MAX_IN_FLIGHT`] at a time,
//! and matches the replies as they come. The server guarantees no order
//! between requests in flight, except that a `FLUSH` covers the writes
//! whose replies arrived before it was sent ("Ordering of messages and
//! writes" in doc/proto.md), so a flush in a batch waits for every earlier
//! reply, and nothing after it is sent before its reply: a batch keeps the
//! order a caller needs across a flush and no other.
//!
//! Replies stay simple replies (the only kind a server may send unless the
//! client negotiates structured replies): the client knows from the handle
//! whether a reply to a successful READ carries data, and how much, so
//! simple replies pipeline as well, and every server has them.
//!
//! No batch mixes a READ before a WRITE: a server blocked sending READ
//! data the client has not read yet stops reading the client's requests,
//! and a client blocked sending a WRITE payload would then never read the
//! data. Writes go first; the headers of reads are small enough to fit the
//! socket buffers.

use std::io::{self, Read, Write};
use std::time::Duration;

use super::connect::Stream;
use super::wire::*;

/// Requests with up to this much payload are copied behind their header,
/// with the other requests sent at the same time, and go out in one system
/// call (one packet on a TCP_NODELAY socket); larger payloads are sent
/// from the caller's buffer, to avoid the copy.
pub(super) const COALESCE_LIMIT: usize = 64 << 10;

/// The most requests in flight on one connection. qemu-nbd serves up to
/// 16 requests of a client at once, as does nbdkit's default thread pool.
/// Small enough that the replies to writes in flight (16 bytes each)
/// always fit the socket buffers, which keeps a client that is still
/// sending from deadlocking with a server that is replying.
pub(super) const MAX_IN_FLIGHT: usize = 16;

/// One request of a batch given to [`Conn::run`].
pub(super) enum Request<'a> {
    /// Read `into.len()` bytes at `offset` into `into`.
    Read { offset: u64, into: &'a mut [u8] },
    /// Write `data` at `offset`, with `NBD_CMD_FLAG_FUA` when `fua`.
    Write {
        offset: u64,
        data: &'a [u8],
        fua: bool,
    },
    /// `NBD_CMD_FLUSH`, sent once every earlier request has its reply.
    Flush,
}

/// A request in flight: its handle, and where a READ's data goes.
struct Pending<'a> {
    handle: u64,
    into: Option<&'a mut [u8]>,
}

/// An established connection in the transmission phase.
pub(super) struct Conn {
    pub(super) stream: Stream,
    /// The handle of the last request; each request uses the next one.
    handle: u64,
    /// Request headers and small write payloads, sent in one call.
    scratch: Vec<u8>,
    pub(super) timeout: Duration,
}

/// Why a request failed.
pub(super) enum Failure {
    /// The server replied with an error; the connection is still in step.
    Server(io::Error),
    /// The connection can no longer be used.
    Lost(io::Error),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::Lost(e)
    }
}

impl Conn {
    /// A connection whose handshake is done.
    pub(super) fn new(stream: Stream, timeout: Duration) -> Conn {
        Conn {
            stream,
            handle: 0,
            scratch: Vec::new(),
            timeout,
        }
    }

    /// Carries out `requests` in order of sending, with up to
    /// [`MAX_IN_FLIGHT`] in flight, and returns once every request sent
    /// has its reply (so the connection is in step again). A flush waits
    /// for every earlier reply, and later requests for its reply.
    ///
    /// After the first error reply nothing more is sent, and that error is
    /// returned once the replies to the requests in flight are in: the
    /// requests before it in the batch may or may not have been carried
    /// out, as with any failed write.
    pub(super) fn run<'a>(
        &mut self,
        requests: impl IntoIterator<Item = Request<'a>>,
    ) -> Result<(), Failure> {
        let mut requests = requests.into_iter().peekable();
        let mut pending: [Option<Pending<'a>>; MAX_IN_FLIGHT] = Default::default();
        let mut in_flight = 0;
        let mut flushing = false;
        let mut error = None;
        loop {
            while in_flight < MAX_IN_FLIGHT && !flushing && error.is_none() {
                let Some(next) = requests.peek() else { break };
                if matches!(next, Request::Flush) && in_flight > 0 {
                    break;
                }
                let Some(request) = requests.next() else {
                    break;
                };
                let (handle, into) = match request {
                    Request::Read { offset, into } => (
                        self.queue(CMD_READ, 0, offset, into.len(), &[])?,
                        Some(into),
                    ),
                    Request::Write { offset, data, fua } => {
                        let flags = if fua { CMD_FLAG_FUA } else { 0 };
                        (
                            self.queue(CMD_WRITE, flags, offset, data.len(), data)?,
                            None,
                        )
                    }
                    Request::Flush => {
                        flushing = true;
                        (self.queue(CMD_FLUSH, 0, 0, 0, &[])?, None)
                    }
                };
                // A free slot exists: fewer than MAX_IN_FLIGHT are in use.
                if let Some(slot) = pending.iter_mut().find(|p| p.is_none()) {
                    *slot = Some(Pending { handle, into });
                }
                in_flight += 1;
            }
            self.send_queued()?;
            if in_flight == 0 {
                break;
            }
            if let Err(e) = self.receive(&mut pending)? {
                error.get_or_insert(e);
            }
            in_flight -= 1;
            if in_flight == 0 {
                flushing = false;
            }
        }
        match error {
            Some(e) => Err(Failure::Server(e)),
            None => Ok(()),
        }
    }

    /// Queues a request in `scratch`, or sends the queue, the header and
    /// then a large payload from the caller's buffer; returns its handle.
    fn queue(
        &mut self,
        cmd: u16,
        flags: u16,
        offset: u64,
        len: usize,
        payload: &[u8],
    ) -> io::Result<u64> {
        self.handle = self.handle.wrapping_add(1);
        let len = u32::try_from(len).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "request longer than 4 GiB")
        })?;
        let mut header = [0u8; REQUEST_LEN];
        header[0..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        header[4..6].copy_from_slice(&flags.to_be_bytes());
        header[6..8].copy_from_slice(&cmd.to_be_bytes());
        header[8..16].copy_from_slice(&self.handle.to_be_bytes());
        header[16..24].copy_from_slice(&offset.to_be_bytes());
        header[24..28].copy_from_slice(&len.to_be_bytes());
        self.scratch.extend_from_slice(&header);
        if payload.len() <= COALESCE_LIMIT {
            self.scratch.extend_from_slice(payload);
            if self.scratch.len() >= COALESCE_LIMIT {
                self.send_queued()?;
            }
        } else {
            self.send_queued()?;
            self.stream.write_all(payload)?;
        }
        Ok(self.handle)
    }

    /// Sends what [`queue`](Self::queue) has put in `scratch`.
    fn send_queued(&mut self) -> io::Result<()> {
        if !self.scratch.is_empty() {
            let r = self.stream.write_all(&self.scratch);
            self.scratch.clear();
            r?;
        }
        Ok(())
    }

    /// Sends one request on its own, without waiting for a reply
    /// (`NBD_CMD_DISC`, which has none).
    pub(super) fn send(&mut self, cmd: u16) -> io::Result<()> {
        self.scratch.clear();
        self.queue(cmd, 0, 0, 0, &[])?;
        self.send_queued()
    }

    /// Reads one reply, and a successful READ's data, for a request in
    /// `pending`, which it frees. `Ok(Err(e))` is the server's error reply.
    fn receive(
        &mut self,
        pending: &mut [Option<Pending<'_>>],
    ) -> Result<Result<(), io::Error>, Failure> {
        let reply: [u8; REPLY_LEN] = read_array(&mut self.stream)?;
        let magic = be_u32(&reply[0..4]);
        let error = be_u32(&reply[4..8]);
        let got = be_u64(&reply[8..16]);
        if magic != SIMPLE_REPLY_MAGIC {
            return Err(protocol(if magic == STRUCTURED_REPLY_MAGIC {
                "the server sent a structured reply, which was not negotiated".to_string()
            } else {
                format!("bad reply magic {magic:#010x}")
            }));
        }
        let Some(request) = pending
            .iter_mut()
            .find(|p| p.as_ref().is_some_and(|p| p.handle == got))
            .and_then(Option::take)
        else {
            return Err(protocol(format!(
                "reply for handle {got}, which no request in flight has"
            )));
        };
        if error != 0 {
            // A simple error reply carries no data, even for a READ: the
            // stream is still in step.
            return match server_errno(error) {
                Some(libc::ESHUTDOWN) => {
                    // The protocol asks the client to disconnect.
                    let _ = self.send(CMD_DISC);
                    Err(Failure::Lost(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "the server is shutting down (ESHUTDOWN)",
                    )))
                }
                Some(errno) => Ok(Err(io::Error::from_raw_os_error(errno))),
                None => Ok(Err(io::Error::other(format!(
                    "the server replied with error code {error}, which the NBD protocol does not define"
                )))),
            };
        }
        if let Some(into) = request.into {
            self.stream.read_exact(into)?;
        }
        Ok(Ok(()))
    }
}

/// Maps an NBD error value (doc/proto.md, "Error values") to this
/// system's errno.
fn server_errno(nbd: u32) -> Option<i32> {
    Some(match nbd {
        1 => libc::EPERM,
        5 => libc::EIO,
        12 => libc::ENOMEM,
        22 => libc::EINVAL,
        28 => libc::ENOSPC,
        75 => libc::EOVERFLOW,
        95 => libc::EOPNOTSUPP,
        108 => libc::ESHUTDOWN,
        _ => return None,
    })
}

fn protocol(msg: String) -> Failure {
    Failure::Lost(io::Error::new(
        io::ErrorKind::InvalidData,
        format!("NBD protocol error: {msg}"),
    ))
}

/// Says why a connection failed, in words.
pub(super) fn describe_loss(e: &io::Error, timeout: Duration) -> String {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => "the server closed the connection".into(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            format!("no progress within the I/O timeout of {timeout:?}")
        }
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::device::nbd::fake::*;
    use crate::device::nbd::NbdDevice;
    use crate::device::{BlockDevice, Op};

    #[test]
    fn an_error_reply_is_the_servers_errno_and_the_connection_stays_usable() {
        for (nbd, errno) in [(5, libc::EIO), (28, libc::ENOSPC), (1, libc::EPERM)] {
            let fake = Fake::start(Script {
                fault: Fault::ErrorReply(nbd),
                ..Script::default()
            });
            let d = NbdDevice::open(&fake.uri).unwrap();
            d.write(4, &[6u8; 512]).unwrap();
            let mut buf = [0u8; 512];
            let e = d.read(4, &mut buf).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(errno), "{e}");
            assert!(d.is_connected());
            d.read(4, &mut buf).unwrap();
            assert_eq!(buf, [6u8; 512]);
            drop(d);
            fake.finish();
        }
        let fake = Fake::start(Script {
            fault: Fault::ErrorReply(4242),
            ..Script::default()
        });
        let d = NbdDevice::open(&fake.uri).unwrap();
        let e = d.read(0, &mut [0u8; 512]).unwrap_err();
        assert!(e.to_string().contains("4242"), "{e}");
        assert!(d.is_connected());
    }

    #[test]
    fn eshutdown_ends_the_connection() {
        let fake = Fake::start(Script {
            fault: Fault::ErrorReply(108),
            ..Script::default()
        });
        let d = NbdDevice::open(&fake.uri).unwrap();
        let e = d.read(0, &mut [0u8; 512]).unwrap_err();
        assert!(e.to_string().contains("shutting down"), "{e}");
        assert!(!d.is_connected());
        drop(d);
        let seen = fake.finish();
        assert_eq!(requests(&seen, CMD_DISC).len(), 1);
    }

    fn assert_lost(fault: Fault, words: &str) {
        let fake = Fake::start(Script {
            fault,
            ..Script::default()
        });
        let d = NbdDevice::open(&fake.uri).unwrap();
        d.set_io_timeout(Duration::from_millis(300)).unwrap();
        let started = Instant::now();
        let mut buf = vec![0u8; 2048];
        let e = d.read(0, &mut buf).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5), "it hung");
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("connection to {} lost", fake.uri)),
            "{msg}"
        );
        assert!(msg.contains(words), "{msg}");
        assert!(!d.is_connected());
        // Every later operation says so at once, without touching the
        // socket.
        let e = d.write(0, &[0u8; 512]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotConnected, "{e}");
        assert!(e.to_string().contains(words), "{e}");
        assert!(d.describe().contains("connection lost"));
        drop(d);
        let seen = fake.finish();
        assert!(requests(&seen, CMD_WRITE).is_empty());
    }

    #[test]
    fn a_short_read_is_a_lost_connection() {
        assert_lost(Fault::ShortRead, "the server closed the connection");
    }

    #[test]
    fn a_reply_for_another_handle_is_a_lost_connection() {
        assert_lost(Fault::WrongHandle, "reply for handle");
    }

    #[test]
    fn an_unnegotiated_structured_reply_is_a_lost_connection() {
        assert_lost(Fault::Structured, "structured reply");
    }

    #[test]
    fn a_silent_server_times_out_instead_of_hanging() {
        assert_lost(Fault::Silent, "no progress within the I/O timeout of 300ms");
    }

    #[test]
    fn a_zero_timeout_is_refused() {
        let fake = Fake::start(Script::default());
        let d = NbdDevice::open(&fake.uri).unwrap();
        assert_eq!(
            d.set_io_timeout(Duration::ZERO).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }

    /// A fake whose requests carry at most 4096 bytes (so that 32 KiB is
    /// eight requests), holding its replies back until `hold` are due.
    fn holding(hold: usize, flags: u16, fault: Fault) -> (Fake, NbdDevice) {
        let fake = Fake::start(Script {
            go: Go::Ok(Some([512, 4096, 4096])),
            size: 256 * 1024,
            flags,
            fault,
            hold,
            ..Script::default()
        });
        let d = NbdDevice::open(&fake.uri).unwrap();
        // A client that waits for each reply before the next request
        // fails after this instead of hanging.
        d.set_io_timeout(Duration::from_secs(5)).unwrap();
        (fake, d)
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
    }

    #[test]
    fn large_transfers_keep_requests_in_flight_and_match_replies_by_handle() {
        // The fake answers only once eight requests are in, and then in
        // reverse order.
        let (fake, d) = holding(8, FLAG_HAS_FLAGS | FLAG_SEND_FLUSH, Fault::None);
        let data = pattern(32 * 1024, 0);
        d.write(8, &data).unwrap();
        let mut back = vec![0u8; data.len()];
        d.read(8, &mut back).unwrap();
        assert!(back == data, "the read's pieces landed in the wrong places");
        drop(d);
        let seen = fake.finish();
        assert_eq!(seen.most_in_flight, 8);
        let offsets: Vec<u64> = requests(&seen, CMD_READ).iter().map(|r| r.offset).collect();
        assert_eq!(
            offsets,
            (0..8).map(|i| 4096 + i * 4096).collect::<Vec<u64>>()
        );
    }

    #[test]
    fn no_more_than_max_in_flight_requests_are_in_flight() {
        let (fake, d) = holding(MAX_IN_FLIGHT, FLAG_HAS_FLAGS, Fault::None);
        let data = pattern(2 * MAX_IN_FLIGHT * 4096, 1);
        d.write(0, &data).unwrap();
        let mut back = vec![0u8; data.len()];
        d.read(0, &mut back).unwrap();
        assert!(back == data);
        drop(d);
        let seen = fake.finish();
        assert_eq!(seen.most_in_flight, MAX_IN_FLIGHT);
        assert_eq!(requests(&seen, CMD_WRITE).len(), 2 * MAX_IN_FLIGHT);
    }

    #[test]
    fn a_flush_is_sent_only_once_the_writes_it_covers_have_replies() {
        // Without FUA, write_durable is writes then a flush. The protocol's
        // flush covers only the writes whose replies the client has: sent
        // with the writes still in flight, it would not cover them.
        let fake = Fake::start(Script {
            go: Go::Ok(Some([512, 4096, 4096])),
            flags: FLAG_HAS_FLAGS | FLAG_SEND_FLUSH,
            hold: 8,
            // A flush sent with the writes in flight would arrive before
            // the fake replies to them.
            linger: Some(Duration::from_millis(300)),
            ..Script::default()
        });
        let d = NbdDevice::open(&fake.uri).unwrap();
        d.write_durable(8, &pattern(32 * 1024, 2)).unwrap();
        drop(d);
        let seen = fake.finish();
        assert!(!seen.flush_overtook, "the flush overtook the writes");
        let cmds: Vec<u16> = seen.requests.iter().map(|r| r.cmd).collect();
        let mut expected = vec![CMD_WRITE; 8];
        expected.extend([CMD_FLUSH, CMD_DISC]);
        assert_eq!(cmds, expected);
    }

    #[test]
    fn an_error_reply_in_a_batch_fails_the_call_and_keeps_the_connection() {
        for hold in [1, 8] {
            let (fake, d) = holding(hold, FLAG_HAS_FLAGS, Fault::ErrorReplyTo(2, 28));
            let e = d.write(8, &pattern(32 * 1024, 3)).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "hold {hold}: {e}");
            assert!(d.is_connected());
            // The replies still due were read: the next call is in step.
            let data = pattern(32 * 1024, 4);
            d.write(8, &data).unwrap();
            let mut back = vec![0u8; data.len()];
            d.read(8, &mut back).unwrap();
            assert!(back == data, "hold {hold}");
            drop(d);
            fake.finish();
        }
    }

    #[test]
    fn transfer_sends_its_writes_then_its_reads_in_flight_together() {
        // The fake answers once three requests are in: one call's worth.
        let (fake, d) = holding(3, FLAG_HAS_FLAGS, Fault::None);
        let (a, b) = (pattern(4096, 6), pattern(512, 7));
        let mut x = vec![1u8; 512];
        d.transfer(&[(8, &a), (40, &b)], &mut [(100, &mut x)])
            .unwrap();
        assert!(x == [0u8; 512]);
        let (mut a2, mut b2) = (vec![0u8; 4096], vec![0u8; 512]);
        d.transfer(&[], &mut [(8, &mut a2), (40, &mut b2), (100, &mut x)])
            .unwrap();
        assert!(a2 == a && b2 == b && x == [0u8; 512]);
        drop(d);
        let seen = fake.finish();
        let cmds: Vec<u16> = seen.requests.iter().map(|r| r.cmd).collect();
        assert_eq!(
            cmds,
            [CMD_WRITE, CMD_WRITE, CMD_READ, CMD_READ, CMD_READ, CMD_READ, CMD_DISC]
        );
        assert_eq!(seen.most_in_flight, 3);
    }

    #[test]
    fn transfer_checks_every_range_before_sending_anything() {
        let fake = Fake::start(Script::default());
        let d = NbdDevice::open(&fake.uri).unwrap();
        let mut far = vec![0u8; 512];
        let e = d
            .transfer(&[(0, &[1u8; 512])], &mut [(128, &mut far)])
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        drop(d);
        let seen = fake.finish();
        assert!(requests(&seen, CMD_WRITE).is_empty());
    }

    /// A fake that waits 200 ms for more requests before replying: a
    /// request sent without waiting for the replies before it arrives
    /// while they are due, and raises `most_in_flight`.
    fn lingering(fault: Fault) -> (Fake, NbdDevice) {
        let fake = Fake::start(Script {
            go: Go::Ok(Some([512, 4096, 4096])),
            size: 256 * 1024,
            fault,
            linger: Some(Duration::from_millis(200)),
            ..Script::default()
        });
        let d = NbdDevice::open(&fake.uri).unwrap();
        d.set_io_timeout(Duration::from_secs(5)).unwrap();
        (fake, d)
    }

    #[test]
    fn a_chain_waits_for_the_replies_before_each_write_and_flush() {
        let (fake, d) = lingering(Fault::None);
        let (a, b) = (pattern(4096, 8), pattern(512, 9));
        let mut x = vec![0u8; 4096];
        d.chain(&mut [
            Op::Write { sector: 8, buf: &a },
            Op::Write {
                sector: 40,
                buf: &b,
            },
            Op::Flush,
            Op::WriteDurable {
                sector: 48,
                buf: &b,
            },
            // Overlaps the write before it: waits for its reply too.
            Op::Read {
                sector: 48,
                buf: &mut x[..512],
            },
        ])
        .unwrap();
        assert!(x[..512] == b[..]);
        drop(d);
        let seen = fake.finish();
        assert_eq!(seen.most_in_flight, 1, "a request overtook an earlier one");
        let cmds: Vec<(u16, u16)> = seen.requests.iter().map(|r| (r.cmd, r.flags)).collect();
        assert_eq!(
            cmds,
            [
                (CMD_WRITE, 0),
                (CMD_WRITE, 0),
                (CMD_FLUSH, 0),
                (CMD_WRITE, CMD_FLAG_FUA),
                (CMD_READ, 0),
                (CMD_DISC, 0)
            ]
        );
    }

    #[test]
    fn a_chain_sends_reads_with_the_write_before_them() {
        // The fake answers once three requests are in.
        let (fake, d) = holding(3, FLAG_HAS_FLAGS, Fault::None);
        let a = pattern(4096, 10);
        let (mut x, mut y) = (vec![1u8; 512], vec![1u8; 512]);
        d.chain(&mut [
            Op::Write { sector: 8, buf: &a },
            Op::Read {
                sector: 100,
                buf: &mut x,
            },
            Op::Read {
                sector: 40,
                buf: &mut y,
            },
        ])
        .unwrap();
        assert!(x == [0u8; 512] && y == [0u8; 512]);
        drop(d);
        let seen = fake.finish();
        assert_eq!(seen.most_in_flight, 3);
    }

    #[test]
    fn a_failed_chain_sends_nothing_after_the_failure() {
        // The second request (the second write) gets ENOSPC.
        let (fake, d) = lingering(Fault::ErrorReplyTo(1, 28));
        let a = pattern(512, 11);
        let e = d
            .chain(&mut [
                Op::Write { sector: 8, buf: &a },
                Op::Write { sector: 9, buf: &a },
                Op::Flush,
                Op::WriteDurable {
                    sector: 10,
                    buf: &a,
                },
            ])
            .unwrap_err();
        assert_eq!((e.done, e.error.raw_os_error()), (1, Some(libc::ENOSPC)));
        assert!(d.is_connected());
        drop(d);
        let seen = fake.finish();
        let cmds: Vec<u16> = seen.requests.iter().map(|r| r.cmd).collect();
        assert_eq!(cmds, [CMD_WRITE, CMD_WRITE, CMD_DISC]);
    }
}
