//! A fake NBD server for the unit tests: it follows a [`Script`] that says
//! how to answer the handshake and which fault to inject in the
//! transmission phase, and records what the client sent.

use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::connect::Stream;
use super::wire::*;

/// How the fake server answers NBD_OPT_GO.
#[derive(Clone, Copy)]
pub(super) enum Go {
    /// NBD_INFO_EXPORT, then the block sizes if any, then ACK.
    Ok(Option<[u32; 3]>),
    /// NBD_REP_ERR_UNSUP: the client must fall back.
    Unsupported,
    /// This error reply, with a message.
    Error(u32),
    /// A reply header announcing this many bytes, which never come.
    Oversized(u32),
}

/// What the fake server does to the first READ.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Fault {
    None,
    /// An error reply with this NBD error value.
    ErrorReply(u32),
    /// The reply header and half of the data, then the server hangs up.
    ShortRead,
    /// A reply for another handle.
    WrongHandle,
    /// A structured reply chunk, never negotiated.
    Structured,
    /// No reply at all.
    Silent,
    /// An error reply with this NBD error value to the request with this
    /// index (counting from 0 in the transmission phase), of any kind.
    ErrorReplyTo(usize, u32),
}

#[derive(Clone, Copy)]
pub(super) struct Script {
    pub(super) fixed: bool,
    pub(super) no_zeroes: bool,
    pub(super) go: Go,
    pub(super) flags: u16,
    pub(super) size: u64,
    pub(super) fault: Fault,
    /// Replies are held back until this many are due (or a FLUSH comes),
    /// then sent in reverse order: a client that waits for each reply
    /// before sending the next request then hangs, and one that matches
    /// replies to requests by their order gets them wrong.
    pub(super) hold: usize,
    /// Before sending held replies, wait this long for more requests
    /// (TCP only): a request sent without waiting for those replies
    /// arrives in the meantime, and is received while they are due.
    pub(super) linger: Option<std::time::Duration>,
}

impl Default for Script {
    fn default() -> Script {
        Script {
            fixed: true,
            no_zeroes: true,
            go: Go::Ok(None),
            flags: FLAG_HAS_FLAGS | FLAG_SEND_FLUSH | FLAG_SEND_FUA,
            size: 64 * 1024,
            fault: Fault::None,
            hold: 1,
            linger: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Req {
    pub(super) cmd: u16,
    pub(super) flags: u16,
    pub(super) offset: u64,
    pub(super) len: u32,
}

#[derive(Default)]
pub(super) struct Seen {
    pub(super) options: Vec<u32>,
    pub(super) export: Option<String>,
    pub(super) requests: Vec<Req>,
    /// The most requests received and not yet replied to, at once.
    pub(super) most_in_flight: usize,
    /// True when a FLUSH came while replies to earlier requests were due:
    /// the flush need not cover those writes.
    pub(super) flush_overtook: bool,
}

pub(super) struct Fake {
    pub(super) seen: Arc<Mutex<Seen>>,
    thread: Option<JoinHandle<()>>,
    pub(super) uri: String,
    _dir: Option<tempfile::TempDir>,
}

impl Fake {
    pub(super) fn start(script: Script) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let uri = format!(
            "nbd://127.0.0.1:{}/ring",
            listener.local_addr().unwrap().port()
        );
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s = seen.clone();
        let thread = std::thread::spawn(move || {
            if let Ok((stream, _)) = listener.accept() {
                let _ = serve(Stream::Tcp(stream), script, &s);
            }
        });
        Fake {
            seen,
            thread: Some(thread),
            uri,
            _dir: None,
        }
    }

    pub(super) fn start_unix(script: Script) -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fake.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let uri = format!("nbd+unix:///ring?socket={}", path.display());
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s = seen.clone();
        let thread = std::thread::spawn(move || {
            if let Ok((stream, _)) = listener.accept() {
                let _ = serve(Stream::Unix(stream), script, &s);
            }
        });
        Fake {
            seen,
            thread: Some(thread),
            uri,
            _dir: Some(dir),
        }
    }

    /// What the server saw, once the client has gone.
    pub(super) fn finish(mut self) -> Seen {
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

pub(super) fn reply_header(option: u32, kind: u32, len: u32) -> Vec<u8> {
    let mut v = OPTION_REPLY_MAGIC.to_be_bytes().to_vec();
    v.extend_from_slice(&option.to_be_bytes());
    v.extend_from_slice(&kind.to_be_bytes());
    v.extend_from_slice(&len.to_be_bytes());
    v
}

pub(super) fn serve(mut s: Stream, script: Script, seen: &Mutex<Seen>) -> io::Result<()> {
    let mut hflags = 0u16;
    if script.fixed {
        hflags |= FLAG_FIXED_NEWSTYLE;
    }
    if script.no_zeroes {
        hflags |= FLAG_NO_ZEROES;
    }
    let mut hello = NBDMAGIC.to_be_bytes().to_vec();
    hello.extend_from_slice(&IHAVEOPT.to_be_bytes());
    hello.extend_from_slice(&hflags.to_be_bytes());
    s.write_all(&hello)?;
    let client_flags = u32::from_be_bytes(read_array(&mut s)?);
    let mut data = vec![0u8; script.size as usize];
    loop {
        let head: [u8; 16] = read_array(&mut s)?;
        assert_eq!(be_u64(&head[0..8]), IHAVEOPT);
        let option = be_u32(&head[8..12]);
        let mut body = vec![0u8; be_u32(&head[12..16]) as usize];
        s.read_exact(&mut body)?;
        seen.lock().unwrap().options.push(option);
        match option {
            OPT_GO => {
                let n = be_u32(&body[0..4]) as usize;
                seen.lock().unwrap().export =
                    Some(String::from_utf8(body[4..4 + n].to_vec()).unwrap());
                match script.go {
                    Go::Ok(sizes) => {
                        let mut info = INFO_EXPORT.to_be_bytes().to_vec();
                        info.extend_from_slice(&script.size.to_be_bytes());
                        info.extend_from_slice(&script.flags.to_be_bytes());
                        let mut out = reply_header(OPT_GO, REP_INFO, 12);
                        out.extend_from_slice(&info);
                        if let Some([min, pref, max]) = sizes {
                            out.extend(reply_header(OPT_GO, REP_INFO, 14));
                            out.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
                            for v in [min, pref, max] {
                                out.extend_from_slice(&v.to_be_bytes());
                            }
                        }
                        out.extend(reply_header(OPT_GO, REP_ACK, 0));
                        s.write_all(&out)?;
                        break;
                    }
                    Go::Unsupported => s.write_all(&reply_header(OPT_GO, REP_ERR_UNSUP, 0))?,
                    Go::Error(kind) => {
                        let msg = b"not here, try elsewhere";
                        let mut out = reply_header(OPT_GO, kind, msg.len() as u32);
                        out.extend_from_slice(msg);
                        s.write_all(&out)?;
                    }
                    Go::Oversized(len) => {
                        s.write_all(&reply_header(OPT_GO, REP_INFO, len))?;
                        // Wait for the client to hang up.
                        let mut sink = [0u8; 64];
                        while s.read(&mut sink)? > 0 {}
                        return Ok(());
                    }
                }
            }
            OPT_EXPORT_NAME => {
                seen.lock().unwrap().export = Some(String::from_utf8(body).unwrap());
                let mut out = script.size.to_be_bytes().to_vec();
                out.extend_from_slice(&script.flags.to_be_bytes());
                if client_flags & FLAG_C_NO_ZEROES == 0 {
                    out.extend_from_slice(&[0u8; 124]);
                }
                s.write_all(&out)?;
                break;
            }
            _ => s.write_all(&reply_header(option, REP_ERR_UNSUP, 0))?,
        }
    }
    let mut fault = script.fault;
    let mut held: Vec<Vec<u8>> = Vec::new();
    for index in 0.. {
        let req: [u8; REQUEST_LEN] = match read_array(&mut s) {
            Ok(r) => r,
            Err(_) => return Ok(()),
        };
        assert_eq!(be_u32(&req[0..4]), REQUEST_MAGIC);
        let r = Req {
            flags: be_u16(&req[4..6]),
            cmd: be_u16(&req[6..8]),
            offset: be_u64(&req[16..24]),
            len: be_u32(&req[24..28]),
        };
        let handle = be_u64(&req[8..16]);
        seen.lock().unwrap().requests.push(r);
        let range = r.offset as usize..(r.offset + r.len as u64) as usize;
        let simple = |error: u32, handle: u64| {
            let mut v = SIMPLE_REPLY_MAGIC.to_be_bytes().to_vec();
            v.extend_from_slice(&error.to_be_bytes());
            v.extend_from_slice(&handle.to_be_bytes());
            v
        };
        let out = match r.cmd {
            CMD_READ => {
                let read_fault = match fault {
                    Fault::ErrorReplyTo(..) => Fault::None,
                    _ => std::mem::replace(&mut fault, Fault::None),
                };
                match read_fault {
                    Fault::None | Fault::ErrorReplyTo(..) => {
                        let mut out = simple(0, handle);
                        out.extend_from_slice(&data[range]);
                        out
                    }
                    Fault::ErrorReply(e) => simple(e, handle),
                    Fault::ShortRead => {
                        let mut out = simple(0, handle);
                        out.extend_from_slice(&data[range][..r.len as usize / 2]);
                        s.write_all(&out)?;
                        return Ok(());
                    }
                    Fault::WrongHandle => {
                        let mut out = simple(0, handle + 1);
                        out.extend_from_slice(&data[range]);
                        out
                    }
                    Fault::Structured => {
                        let mut out = STRUCTURED_REPLY_MAGIC.to_be_bytes().to_vec();
                        out.extend_from_slice(&[0u8; 16]);
                        out
                    }
                    Fault::Silent => {
                        let mut sink = [0u8; 64];
                        while s.read(&mut sink)? > 0 {}
                        return Ok(());
                    }
                }
            }
            CMD_WRITE => {
                s.read_exact(&mut data[range])?;
                simple(0, handle)
            }
            CMD_FLUSH => {
                if !held.is_empty() {
                    seen.lock().unwrap().flush_overtook = true;
                }
                simple(0, handle)
            }
            CMD_DISC => return Ok(()),
            _ => simple(22, handle),
        };
        let out = match fault {
            Fault::ErrorReplyTo(i, e) if i == index => simple(e, handle),
            _ => out,
        };
        held.push(out);
        {
            let mut seen = seen.lock().unwrap();
            seen.most_in_flight = seen.most_in_flight.max(held.len());
        }
        if (held.len() >= script.hold && !more_coming(&s, script.linger)?) || r.cmd == CMD_FLUSH {
            for out in held.drain(..).rev() {
                s.write_all(&out)?;
            }
        }
    }
    Ok(())
}

/// True when another request arrives within `linger`.
fn more_coming(s: &Stream, linger: Option<std::time::Duration>) -> io::Result<bool> {
    let (Some(linger), Stream::Tcp(t)) = (linger, s) else {
        return Ok(false);
    };
    t.set_read_timeout(Some(linger))?;
    let more = match t.peek(&mut [0u8; 1]) {
        Ok(n) => n > 0,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            false
        }
        Err(e) => return Err(e),
    };
    t.set_read_timeout(None)?;
    Ok(more)
}

pub(super) fn requests(seen: &Seen, cmd: u16) -> Vec<Req> {
    seen.requests
        .iter()
        .copied()
        .filter(|r| r.cmd == cmd)
        .collect()
}
