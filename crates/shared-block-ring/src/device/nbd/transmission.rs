//! The transmission phase: requests, simple replies, the server's error
//! replies, and what a lost connection or a timeout looks like.

use std::io::{self, Read, Write};
use std::time::Duration;

use super::connect::Stream;
use super::wire::*;

/// Writes up to this size are copied behind their request header and sent
/// in one system call (one packet on a TCP_NODELAY socket); larger ones are
/// sent as header then payload, to avoid the copy.
pub(super) const COALESCE_LIMIT: usize = 64 << 10;

/// An established connection in the transmission phase.
pub(super) struct Conn {
    pub(super) stream: Stream,
    /// The handle of the last request; each request uses the next one.
    handle: u64,
    /// Request header plus a small write payload, sent in one call.
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

    /// Sends one request and waits for its simple reply; `payload` is sent
    /// after the header (WRITE), and `into` receives the reply's data
    /// (READ).
    pub(super) fn request(
        &mut self,
        cmd: u16,
        flags: u16,
        offset: u64,
        len: usize,
        payload: &[u8],
        into: &mut [u8],
    ) -> Result<(), Failure> {
        let handle = self.send(cmd, flags, offset, len, payload)?;
        self.receive(handle, into)
    }

    pub(super) fn send(
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
        if payload.len() <= COALESCE_LIMIT {
            self.scratch.clear();
            self.scratch.extend_from_slice(&header);
            self.scratch.extend_from_slice(payload);
            self.stream.write_all(&self.scratch)?;
        } else {
            self.stream.write_all(&header)?;
            self.stream.write_all(payload)?;
        }
        Ok(self.handle)
    }

    fn receive(&mut self, handle: u64, into: &mut [u8]) -> Result<(), Failure> {
        let mut reply = [0u8; REPLY_LEN];
        self.stream.read_exact(&mut reply)?;
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
        if got != handle {
            return Err(protocol(format!(
                "reply for handle {got} while waiting for handle {handle}"
            )));
        }
        if error != 0 {
            // A simple error reply carries no data, even for a READ: the
            // stream is still in step.
            return Err(match server_errno(error) {
                Some(libc::ESHUTDOWN) => {
                    // The protocol asks the client to disconnect.
                    let _ = self.send(CMD_DISC, 0, 0, 0, &[]);
                    Failure::Lost(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "the server is shutting down (ESHUTDOWN)",
                    ))
                }
                Some(errno) => Failure::Server(io::Error::from_raw_os_error(errno)),
                None => Failure::Server(io::Error::other(format!(
                    "the server replied with error code {error}, which the NBD protocol does not define"
                ))),
            });
        }
        self.stream.read_exact(into)?;
        Ok(())
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
    use crate::device::BlockDevice;

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
}
