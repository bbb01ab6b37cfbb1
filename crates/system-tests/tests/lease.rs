//! The owner lease of format 2 between processes: two `lease-peer`
//! processes on this host with the on-host role lock out of the way (as
//! two hosts sharing a disk, which that lock cannot see), on a ring file
//! and through one qemu-nbd export.
//!
//! A peer in its own pid namespace (`unshare --pid --fork`, root) is, to
//! the others, on a host they cannot place: its ownership is judged by its
//! heartbeat, as another host's would be. A peer in our pid namespace is
//! judged by whether its process is alive.

use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use shared_block_ring::format::v2 as codec;
use shared_block_ring::{ring2, Consumer, FileDevice, MemDevice, Options, Side};
use system_tests::nbd::{NbdServer, Transport};
use system_tests::{require_root, require_tool, ring_file, ChildGuard};

const PEER: &str = env!("CARGO_BIN_EXE_lease-peer");
/// The ring's lease: short, so that it expires within a test, and long
/// enough that a peer on a busy machine still writes its heartbeats in
/// time (one is due every third of it).
const LEASE: Duration = Duration::from_secs(2);
/// The longest any step may take on a busy machine.
const STEP: Duration = Duration::from_secs(20);

/// A running peer: its stdin, and its stdout lines as they come.
struct Peer {
    name: String,
    child: ChildGuard,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Peer {
    fn spawn(name: &str, device: &str, side: &str, take_over: bool, own_namespace: bool) -> Peer {
        let mut cmd = if own_namespace {
            require_root("a peer in its own pid namespace");
            let mut c = Command::new(require_tool("unshare", "util-linux"));
            c.args(["--pid", "--fork", "--kill-child", PEER]);
            c
        } else {
            Command::new(PEER)
        };
        cmd.args([device, side]);
        if take_over {
            cmd.arg("--take-over");
        }
        let mut child = ChildGuard::spawn(
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        );
        let stdin = child.child().stdin.take();
        let stdout = child.child().stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Peer {
            name: name.to_string(),
            child,
            stdin,
            lines,
        }
    }

    /// The next line, within [`STEP`].
    fn line(&self) -> String {
        self.lines
            .recv_timeout(STEP)
            .unwrap_or_else(|e| panic!("{}: no output within {STEP:?} ({e})", self.name))
    }

    fn expect(&self, prefix: &str) -> String {
        let line = self.line();
        assert!(
            line.starts_with(prefix),
            "{}: expected {prefix:?}, got {line:?}",
            self.name
        );
        line
    }

    fn send(&mut self, cmd: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            // A peer that has exited (displaced) no longer reads: its exit
            // status tells the test what happened.
            let _ = writeln!(stdin, "{cmd}");
            let _ = stdin.flush();
        }
    }

    /// Waits for the peer to exit, within [`STEP`]; its exit code and the
    /// lines it printed meanwhile.
    fn exit(mut self) -> (i32, Vec<String>) {
        self.stdin = None;
        let deadline = Instant::now() + STEP;
        let child = self.child.child();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for the peer") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "{}: did not exit within {STEP:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        // The reader thread ends at the end of the peer's output: take
        // every line it has, not only those it has passed on so far.
        let mut lines = Vec::new();
        loop {
            match self.lines.recv_timeout(STEP) {
                Ok(line) => lines.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("{}: its output did not end within {STEP:?}", self.name)
                }
            }
        }
        (status.code().unwrap_or(-1), lines)
    }
}

/// A peer that is refused: its exit code and its line.
fn refused(device: &str, side: &str, take_over: bool) -> (i32, String) {
    let p = Peer::spawn("refused peer", device, side, take_over, false);
    let (code, lines) = p.exit();
    (code, lines.join("\n"))
}

/// A live owner on this host is never taken over, even when asked; once its
/// process is gone (killed: no clean detach), the side is free to take.
fn a_live_owner_on_this_host(device: &str) {
    for side in ["producer", "consumer"] {
        let first = Peer::spawn("first", device, side, false, false);
        first.expect("attached");
        let (code, line) = refused(device, side, true);
        assert_eq!(code, 2, "{line}");
        assert!(
            line.contains("owned by") && line.contains("last seen"),
            "{line}"
        );
        // Killed with SIGKILL: it leaves its owner in the sector.
        drop(first);
        let mut second = Peer::spawn("second", device, side, false, false);
        second.expect("attached");
        second.send("quit");
        assert_eq!(second.exit().0, 0);
    }
}

/// Another host's owner (a peer in its own pid namespace) keeps the side
/// while its heartbeats are fresh; once it hangs longer than the lease,
/// attach says the lease expired, and with take-over a second producer
/// takes the side. The first, when it comes back, finds another owner and
/// stops without writing anything.
fn takeover_after_expiry(device: &str, read: &dyn Fn() -> Vec<u8>, ss: usize) {
    let mut first = Peer::spawn("first (elsewhere)", device, "producer", false, true);
    first.expect("attached");
    first.send("push one");
    first.expect("ok");
    // Its heartbeats keep the side, take-over or not.
    std::thread::sleep(LEASE + LEASE / 2);
    let (code, line) = refused(device, "producer", true);
    assert_eq!(code, 2, "a fresh heartbeat: {line}");
    assert!(line.contains("(pid 1)"), "the owner is named: {line}");
    // It hangs: no heartbeat. Once the lease has expired, attach says so,
    // and suggests taking over.
    first.send(&format!("hang {}", (3 * LEASE).as_millis()));
    first.expect("hanging");
    let deadline = Instant::now() + STEP;
    loop {
        let (code, line) = refused(device, "producer", false);
        if code == 3 {
            assert!(line.contains("take over"), "{line}");
            break;
        }
        assert_eq!(code, 2, "{line}");
        assert!(Instant::now() < deadline, "the lease never expired: {line}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut second = Peer::spawn("second", device, "producer", true, false);
    second.expect("attached");
    second.send("push two");
    second.expect("ok");
    let before = read();
    // The first comes back: its next write comes more than half a lease
    // after its last heartbeat, so it reads its sector first, finds the
    // second's token, and stops.
    first.send("push three");
    let (code, lines) = first.exit();
    assert_eq!(code, 4, "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("displaced:") && l.contains("took the producer side over")),
        "{lines:?}"
    );
    let after = read();
    // It wrote nothing: the header and the data are as they were, and the
    // producer sector is still the second's (whose heartbeats may have
    // rewritten it meanwhile).
    assert!(before[..ss] == after[..ss], "sector 0 changed");
    assert!(before[3 * ss..] == after[3 * ss..], "the data area changed");
    let rid = codec::decode_header(&after[..ss]).unwrap().ring_id;
    let p_before = codec::decode_state(Side::Producer, &rid, &before[ss..2 * ss]).unwrap();
    let p_after = codec::decode_state(Side::Producer, &rid, &after[ss..2 * ss]).unwrap();
    assert_eq!(p_after.owner.token, p_before.owner.token);
    assert_eq!(p_after.position, p_before.position);
    second.send("quit");
    assert_eq!(second.exit().0, 0);
    // Everything published, in order, and nothing else.
    let disk = MemDevice::from_bytes(ss, read());
    let mut c = Consumer::attach(disk, Options::new()).unwrap();
    let (_, items) = c
        .fold(c.position(), Vec::new(), |mut v, i| {
            v.push(i);
            v
        })
        .unwrap();
    assert_eq!(items, [b"one".to_vec(), b"two".to_vec()]);
}

#[test]
fn two_processes_on_a_ring_file() {
    let file = ring_file(64 * 1024);
    ring2::create(&FileDevice::open(file.path()).unwrap(), LEASE).unwrap();
    let path = file.path().display().to_string();
    a_live_owner_on_this_host(&path);
    let read = || std::fs::read(file.path()).unwrap();
    takeover_after_expiry(&path, &read, 512);
}

#[test]
fn two_processes_through_one_qemu_nbd_export() {
    let file = ring_file(64 * 1024);
    ring2::create(&FileDevice::open(file.path()).unwrap(), LEASE).unwrap();
    let server = NbdServer::qemu_nbd(file.path(), "ring", Transport::Unix, &["--cache=none"]);
    let uri = server.uri();
    a_live_owner_on_this_host(&uri);
    // qemu-nbd with --cache=none writes through to the file.
    let read = || std::fs::read(file.path()).unwrap();
    takeover_after_expiry(&uri, &read, 512);
}
