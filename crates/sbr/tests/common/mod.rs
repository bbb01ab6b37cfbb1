//! What the `sbr` integration tests share: the binary, a scratch
//! directory, and running it with a deadline.

// Each test file uses its own share of these.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// The `sbr` binary under test.
pub const SBR: &str = env!("CARGO_BIN_EXE_sbr");

/// How long one `sbr` run may take before the test fails.
pub const LIMIT: Duration = Duration::from_secs(60);

/// A new directory under `target/tmp` (a filesystem with O_DIRECT; /tmp
/// may not have it), removed on drop.
pub fn dir() -> tempfile::TempDir {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&base).unwrap();
    tempfile::Builder::new()
        .prefix("sbr-")
        .tempdir_in(base)
        .unwrap()
}

/// `sbr args`, without the caller's RUST_LOG.
pub fn sbr(args: &[&str]) -> Command {
    let mut c = Command::new(SBR);
    c.args(args).env_remove("RUST_LOG");
    c
}

/// Runs `cmd` with `stdin` as its input and its output captured; fails
/// the test when it has not exited within `limit`.
pub fn output_of(mut cmd: Command, stdin: &[u8], limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    // Fed from a thread: the command may not read it all.
    std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output().unwrap());
    });
    rx.recv_timeout(limit).unwrap_or_else(|_| {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        panic!("{cmd:?} did not exit within {limit:?}")
    })
}

/// Runs `sbr args` with `stdin`, within [`LIMIT`].
pub fn run(args: &[&str], stdin: &[u8]) -> Output {
    output_of(sbr(args), stdin, LIMIT)
}

// Re-exported for the test binaries that wait on children or threads (not
// every binary that includes this module does).
/// Joins a thread, failing the test after `limit`.
#[allow(unused_imports)]
pub use system_tests::join_within;
/// Waits for `child`, killing it and failing the test after `limit`.
#[allow(unused_imports)]
pub use system_tests::wait_within as wait_timeout;

/// The exit status, or -1 when killed by a signal.
pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// Standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Creates a ring file `name` of `size` in `d`; returns its path.
pub fn new_ring(d: &Path, name: &str, size: &str) -> String {
    let path = d.join(name).display().to_string();
    let o = run(&["create", &path, "--size", size], b"");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    path
}
