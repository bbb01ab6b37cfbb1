//! Connecting to the server over TCP or a Unix socket, and the socket the
//! other phases talk over.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::uri::NbdAddress;
use super::NbdDevice;

/// The socket to the server.
pub(super) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    pub(super) fn set_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => {
                s.set_read_timeout(timeout)?;
                s.set_write_timeout(timeout)
            }
            Stream::Unix(s) => {
                s.set_read_timeout(timeout)?;
                s.set_write_timeout(timeout)
            }
        }
    }

    pub(super) fn shutdown(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
        };
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Connects to the server, trying each address the host resolves to.
pub(super) fn connect(address: &NbdAddress) -> io::Result<Stream> {
    match address {
        NbdAddress::Tcp { host, port } => {
            let mut last = None;
            for addr in (host.as_str(), *port).to_socket_addrs()? {
                match TcpStream::connect_timeout(&addr, NbdDevice::CONNECT_TIMEOUT) {
                    Ok(s) => {
                        // Requests are small and synchronous: do not let
                        // Nagle's algorithm hold them back.
                        s.set_nodelay(true)?;
                        return Ok(Stream::Tcp(s));
                    }
                    Err(e) => last = Some(io::Error::new(e.kind(), format!("{addr}: {e}"))),
                }
            }
            Err(last.unwrap_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{host} resolves to no address"),
                )
            }))
        }
        NbdAddress::Unix { socket } => connect_unix(socket).map(Stream::Unix),
    }
}

fn connect_unix(socket: &Path) -> io::Result<UnixStream> {
    let bytes = socket.as_os_str().as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"\0") {
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            return UnixStream::connect_addr(&addr);
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = name;
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "abstract Unix sockets exist only on Linux",
            ));
        }
    }
    UnixStream::connect(socket)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", socket.display())))
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::os::unix::net::UnixListener;
    use std::sync::Mutex;

    use super::*;
    use crate::device::nbd::fake::*;
    use crate::device::BlockDevice;

    #[test]
    fn connection_refused_is_an_open_error_naming_the_uri() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let uri = format!("nbd://127.0.0.1:{port}/ring");
        let e = NbdDevice::open(&uri).err().unwrap();
        assert!(e.is_io(), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains(&uri) && msg.to_lowercase().contains("refused"),
            "{msg}"
        );
    }

    #[test]
    fn unix_sockets_work_and_a_missing_socket_is_named() {
        let fake = Fake::start_unix(Script::default());
        let d = NbdDevice::open(&fake.uri).unwrap();
        d.write_durable(3, &[1u8; 512]).unwrap();
        drop(d);
        fake.finish();
        let e = NbdDevice::open("nbd+unix:///x?socket=/nonexistent/nbd.sock")
            .err()
            .unwrap();
        assert!(e.to_string().contains("/nonexistent/nbd.sock"), "{e}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn abstract_unix_sockets_work() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("sbr-nbd-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixListener::bind_addr(&addr).unwrap();
        let t = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let seen = Mutex::new(Seen::default());
            let _ = serve(Stream::Unix(stream), Script::default(), &seen);
        });
        let d = NbdDevice::open(&format!("nbd+unix:///ring?socket=%00{name}")).unwrap();
        assert_eq!(d.sectors(), 128);
        drop(d);
        t.join().unwrap();
    }
}
