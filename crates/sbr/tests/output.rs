//! Standard output of the real `sbr` binary: a reader that goes away is
//! not an error for any command, and consumers write whole lines.

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const SBR: &str = env!("CARGO_BIN_EXE_sbr");

fn dir() -> tempfile::TempDir {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&base).unwrap();
    tempfile::Builder::new()
        .prefix("output-")
        .tempdir_in(base)
        .unwrap()
}

/// A pipe whose reading end is already closed: every write to the other
/// end fails with EPIPE (sbr, like every Rust program, ignores SIGPIPE).
fn closed_pipe() -> OwnedFd {
    let mut fds = [0; 2];
    // SAFETY: pipe(2) writes two descriptors into the array it is given.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors are new and owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    write
}

/// Runs `sbr args` with standard output closed by its reader, within a
/// deadline.
fn run_into_closed_pipe(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(SBR)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::from(closed_pipe()))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    std::thread::spawn(move || {
        let _ = std::io::Write::write_all(&mut input, &data);
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("sbr {args:?} did not exit within 60 s with its output closed");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

fn sbr_ok(args: &[&str], stdin: &[u8]) {
    let mut child = Command::new(SBR)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn every_command_exits_cleanly_when_its_reader_has_gone() {
    let d = dir();
    let ring = d.path().join("r.img").display().to_string();
    sbr_ok(&["create", &ring, "--size", "64KiB"], b"");
    sbr_ok(&["produce", &ring], b"one\ntwo\nthree\n");
    let other = d.path().join("o.img").display().to_string();
    let commands: Vec<Vec<&str>> = vec![
        vec!["create", &other, "--size", "64KiB"],
        vec!["create", &ring],
        vec!["diagnostics", &ring],
        vec!["diagnostics", &ring, "--json"],
        vec!["resume", &ring],
        vec!["suspend", &ring],
        vec!["erase", &other, "--pattern", "x"],
        vec!["--help"],
        vec!["diagnostics", "--help"],
        vec!["--version"],
        vec!["consume", &ring],
    ];
    for args in commands {
        let o = run_into_closed_pipe(&args, b"");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        assert_eq!(o.status.code(), Some(0), "{args:?}: {err}");
        assert_eq!(err, "", "{args:?}: nothing to say on stderr");
    }
    // The consumer printed nothing that reached anyone: nothing released.
    let o = Command::new(SBR).args(["consume", &ring]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "one\ntwo\nthree\n");
}
