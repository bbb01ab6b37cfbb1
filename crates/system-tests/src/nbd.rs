//! NBD servers for the tests: qemu-nbd and nbdkit, listening on a free
//! loopback port or on a Unix socket in a temporary directory, and always
//! stopped, even when a test fails.

use std::ffi::OsString;
use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::require_tool;

/// How long a server may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Where a test server listens.
#[derive(Debug, Clone)]
enum Listen {
    Tcp(u16),
    Unix(PathBuf),
}

/// Which transport a test server should use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP on 127.0.0.1, on a free port.
    Tcp,
    /// A Unix socket in a temporary directory.
    Unix,
}

/// A running NBD server process, killed and reaped on drop.
pub struct NbdServer {
    program: PathBuf,
    /// Arguments before the listening address.
    args: Vec<OsString>,
    /// Arguments after it (the image or plugin).
    tail: Vec<OsString>,
    listen: Listen,
    export: String,
    /// Holds the socket and the server's log.
    dir: tempfile::TempDir,
    child: Option<Child>,
    starts: u32,
}

impl NbdServer {
    /// qemu-nbd exporting the raw `image` as `export`, for up to four
    /// clients at once, persistent (it would otherwise exit when its first
    /// client leaves), with `extra` options such as `--cache=none` or `-r`.
    pub fn qemu_nbd(image: &Path, export: &str, transport: Transport, extra: &[&str]) -> NbdServer {
        let program = require_tool("qemu-nbd", "qemu-utils");
        let mut args: Vec<OsString> = ["-f", "raw", "--shared=4", "--persistent", "-x", export]
            .iter()
            .map(OsString::from)
            .collect();
        args.extend(extra.iter().map(OsString::from));
        NbdServer::start_new(program, args, vec![image.into()], export, transport)
    }

    /// nbdkit in the foreground with `filters` (`--filter=NAME` each) and
    /// then `plugin_args` (the plugin and its parameters, filter parameters
    /// too). nbdkit serves the same image under any export name.
    pub fn nbdkit(filters: &[&str], plugin_args: &[&str], transport: Transport) -> NbdServer {
        let program = require_tool("nbdkit", "nbdkit");
        let mut args: Vec<OsString> = vec!["--foreground".into(), "--exit-with-parent".into()];
        args.extend(
            filters
                .iter()
                .map(|f| OsString::from(format!("--filter={f}"))),
        );
        let tail = plugin_args.iter().map(OsString::from).collect();
        NbdServer::start_new(program, args, tail, "ring", transport)
    }

    fn start_new(
        program: PathBuf,
        args: Vec<OsString>,
        tail: Vec<OsString>,
        export: &str,
        transport: Transport,
    ) -> NbdServer {
        // Unix socket paths are limited to 108 bytes: keep the directory
        // short (sockets work on any filesystem, tmpfs included).
        let dir = tempfile::Builder::new()
            .prefix("nbd-")
            .tempdir()
            .expect("create a directory for the NBD server");
        let mut server = NbdServer {
            program,
            args,
            tail,
            listen: Listen::Tcp(0),
            export: export.to_string(),
            dir,
            child: None,
            starts: 0,
        };
        // A free port can be taken by someone else between probing and the
        // server binding it: try a few.
        for attempt in 0.. {
            server.listen = match transport {
                Transport::Tcp => Listen::Tcp(free_port()),
                Transport::Unix => Listen::Unix(server.dir.path().join("nbd.sock")),
            };
            match server.start() {
                Ok(()) => return server,
                Err(e) if attempt < 4 && e.contains("in use") => continue,
                Err(e) => panic!("{e}"),
            }
        }
        unreachable!()
    }

    /// Starts the server process and waits until it accepts connections.
    fn start(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "the server is already running");
        self.starts += 1;
        let log_path = self.log_path();
        let log = File::create(&log_path).expect("create the server log");
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        match &self.listen {
            Listen::Tcp(port) if self.is_qemu() => {
                cmd.args(["-b", "127.0.0.1", "-p", &port.to_string()]);
            }
            Listen::Tcp(port) => {
                cmd.args(["-i", "127.0.0.1", "-p", &port.to_string()]);
            }
            Listen::Unix(path) if self.is_qemu() => {
                cmd.arg("-k").arg(path);
            }
            Listen::Unix(path) => {
                cmd.arg("-U").arg(path);
            }
        }
        cmd.args(&self.tail)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("clone log handle")))
            .stderr(Stdio::from(log));
        // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag of the calling
        // (child) process; it allocates nothing and is async-signal-safe,
        // as code between fork and exec must be. It makes the kernel kill
        // the server if the test thread that started it dies without
        // running our Drop (a test binary killed from outside).
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.program.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.accepts_connections() {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!(
                    "{} exited ({status}) before listening; its log:\n{}",
                    self.program.display(),
                    self.log()
                ));
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!(
                    "{} did not listen within {START_TIMEOUT:?}; its log:\n{}",
                    self.program.display(),
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn is_qemu(&self) -> bool {
        self.program.file_name().is_some_and(|n| n == "qemu-nbd")
    }

    /// A plain connect, without a handshake, so that probing never holds
    /// one of qemu-nbd's client slots.
    fn accepts_connections(&self) -> bool {
        match &self.listen {
            Listen::Tcp(port) => TcpStream::connect(("127.0.0.1", *port)).is_ok(),
            Listen::Unix(path) => UnixStream::connect(path).is_ok(),
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("server-{}.log", self.starts))
    }

    /// What the server has written to stdout and stderr since it was last
    /// started.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The NBD URI of the export.
    pub fn uri(&self) -> String {
        match &self.listen {
            Listen::Tcp(port) => format!("nbd://127.0.0.1:{port}/{}", self.export),
            Listen::Unix(path) => format!("nbd+unix:///{}?socket={}", self.export, path.display()),
        }
    }

    /// Kills the server with SIGKILL (no chance to close connections
    /// cleanly) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same address, with the same
    /// arguments.
    pub fn restart(&mut self) {
        self.kill();
        if let Listen::Unix(path) = &self.listen {
            // A killed server leaves its socket file behind.
            let _ = std::fs::remove_file(path);
        }
        if let Err(e) = self.start() {
            panic!("restarting the NBD server: {e}");
        }
    }
}

impl Drop for NbdServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    let l = TcpListener::bind(("127.0.0.1", 0)).expect("bind a free port");
    l.local_addr().expect("local address").port()
}
