//! Helpers for the system tests: deterministic items, temporary rings,
//! loop devices, and child processes that are always cleaned up.

pub mod nbd;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The item with index `i` in a stream made from `seed`: a pseudo-random
/// length from 0 to `max_len`, starting with the index itself (when there
/// is room) so that a misplaced item is easy to name.
pub fn item(seed: u64, i: u64, max_len: usize) -> Vec<u8> {
    let h = mix(seed ^ mix(i));
    let len = item_len(seed, i, max_len);
    let mut v: Vec<u8> = (0..len).map(|j| (mix(h ^ j as u64) >> 56) as u8).collect();
    let tag = i.to_le_bytes();
    let n = len.min(8);
    v[..n].copy_from_slice(&tag[..n]);
    v
}

/// The length of [`item`]`(seed, i, max_len)`, without making it.
pub fn item_len(seed: u64, i: u64, max_len: usize) -> usize {
    (mix(seed ^ mix(i)) % (max_len as u64 + 1)) as usize
}

/// splitmix64's finaliser: a cheap, well-mixed hash.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A directory for test files on a filesystem that supports O_DIRECT.
pub fn test_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tmp");
    std::fs::create_dir_all(&dir).expect("create target/tmp");
    dir
}

/// A zero-filled file of `bytes` bytes, written in full, removed on drop.
pub fn ring_file(bytes: usize) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new()
        .prefix("sys-ring-")
        .suffix(".img")
        .tempfile_in(test_dir())
        .expect("create ring file");
    f.write_all(&vec![0u8; bytes]).expect("fill ring file");
    f.as_file().sync_all().expect("sync ring file");
    f
}

/// Fails the test with a clear message unless running as root.
pub fn require_root(what: &str) {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "{what} needs root (loop devices); run the tests as root, as .ci/run does"
    );
}

/// Fails the test with a clear message unless `tool` is on the PATH.
pub fn require_tool(tool: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(tool))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("this test needs `{tool}` (Debian package {package}); .ci/run installs it")
    })
}

/// A loop device over a file, detached on drop.
pub struct LoopDevice {
    path: PathBuf,
}

impl LoopDevice {
    /// Attaches `file` to a free loop device.
    pub fn attach(file: &Path) -> LoopDevice {
        require_root("a loop device");
        let losetup = require_tool("losetup", "mount");
        let out = Command::new(losetup)
            .args(["--find", "--show"])
            .arg(file)
            .output()
            .expect("run losetup");
        assert!(
            out.status.success(),
            "losetup --find --show {} failed: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        LoopDevice { path }
    }

    /// The device node, such as `/dev/loop0`.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.path).status();
    }
}

/// How long [`ChildGuard::wait_output`] waits: past it a child is hung
/// (the slowest, 100,000 items between two processes, takes about 30 s,
/// 90 s with both cores busy).
pub const CHILD_LIMIT: Duration = Duration::from_secs(200);

/// A child process killed (if still running) and reaped on drop, so a
/// failing test leaves nothing behind.
pub struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    /// Spawns `cmd`.
    pub fn spawn(cmd: &mut Command) -> ChildGuard {
        ChildGuard(Some(cmd.spawn().expect("spawn child process")))
    }

    /// Waits for the child and returns its exit status and output; kills
    /// it and fails the test if it runs past [`CHILD_LIMIT`].
    pub fn wait_output(mut self) -> std::process::Output {
        let child = self.0.take().expect("child already taken");
        output_within(child, CHILD_LIMIT, "a child process")
    }

    /// The child, while it runs.
    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("child already taken")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Joins `handle`, failing the test (naming `what`) if the thread has not
/// finished within `limit`: a hang becomes a failure that says what it
/// waited for. A panic in the thread is passed on.
pub fn join_within<T>(handle: JoinHandle<T>, limit: Duration, what: &str) -> T {
    let deadline = Instant::now() + limit;
    while !handle.is_finished() {
        assert!(
            Instant::now() < deadline,
            "{what} did not finish within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    match handle.join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// `child.wait()` with a deadline: kills the child and fails the test
/// (naming `what`) if it has not exited within `limit`.
pub fn wait_within(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            // What it was doing, before the kill ends it: each thread's
            // state, wait channel and kernel stack (root), and its stderr.
            let threads = threads_of(child.id());
            let _ = child.kill();
            let stderr = stderr_after_kill(child);
            panic!("{what} did not exit within {limit:?}; its threads:\n{threads}its stderr:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Each thread of process `pid`: name, state, wait channel and kernel
/// stack, as /proc shows them (what it can; a hang's report).
pub fn threads_of(pid: u32) -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_else(|e| format!("({e})"));
    let mut out = String::new();
    let dir = format!("/proc/{pid}/task");
    let Ok(tasks) = std::fs::read_dir(&dir) else {
        return format!("({dir} unreadable)\n");
    };
    for t in tasks.flatten() {
        let base = t.path().display().to_string();
        let stat = read(&format!("{base}/stat"));
        // The state is the field after the parenthesised name.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .unwrap_or("?");
        out += &format!(
            "  {} {} state {state} wchan {}\n",
            t.file_name().to_string_lossy(),
            read(&format!("{base}/comm")).trim(),
            read(&format!("{base}/wchan")).trim(),
        );
        for line in read(&format!("{base}/stack")).lines().take(12) {
            out += &format!("      {line}\n");
        }
    }
    out
}

/// The stderr of a child just killed, if it was piped and not taken: what
/// it had written (at most the last 4 KiB), once it has exited; a note if
/// it has not within 2 s (a process stuck in the kernel dies late).
fn stderr_after_kill(child: &mut Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !matches!(child.try_wait(), Ok(Some(_))) {
        if Instant::now() > deadline {
            return "(it had not exited 2 s after the kill)".into();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let Some(mut pipe) = child.stderr.take() else {
        return "(not piped, or taken by the test)".into();
    };
    let mut bytes = Vec::new();
    let _ = pipe.read_to_end(&mut bytes);
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    String::from_utf8_lossy(tail).into_owned()
}

/// `child.wait_with_output()` with a deadline: kills the child and fails
/// the test (naming `what`) if it has not exited within `limit`.
pub fn output_within(mut child: Child, limit: Duration, what: &str) -> Output {
    fn drain(pipe: Option<impl Read + Send + 'static>) -> Option<JoinHandle<Vec<u8>>> {
        pipe.map(|mut p| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = p.read_to_end(&mut bytes);
                bytes
            })
        })
    }
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    // The child has exited; its pipes end unless it left a process behind
    // holding them, which the deadline turns into a failure too.
    let collect = |h: Option<JoinHandle<Vec<u8>>>, pipe: &str| {
        h.map(|h| join_within(h, limit, &format!("reading {what}'s {pipe}")))
            .unwrap_or_default()
    };
    Output {
        status,
        stdout: collect(out, "stdout"),
        stderr: collect(err, "stderr"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "sleeper did not finish within")]
    fn join_within_turns_a_hang_into_a_named_failure() {
        let h = std::thread::spawn(|| std::thread::sleep(Duration::from_secs(2)));
        join_within(h, Duration::from_millis(50), "sleeper");
    }

    #[test]
    fn output_within_returns_what_the_child_printed() {
        let child = Command::new("sh")
            .args(["-c", "echo out; echo err >&2; exit 3"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let o = output_within(child, Duration::from_secs(30), "sh");
        assert_eq!(
            (o.status.code(), &o.stdout[..], &o.stderr[..]),
            (Some(3), &b"out\n"[..], &b"err\n"[..])
        );
    }

    #[test]
    fn wait_within_reports_a_hung_childs_threads_and_stderr() {
        let mut child = Command::new("sh")
            .args(["-c", "echo about to hang >&2; exec sleep 5"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let hung = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_within(&mut child, Duration::from_millis(300), "sleeper")
        }));
        let message = *hung.unwrap_err().downcast::<String>().unwrap();
        assert!(message.contains("sleeper did not exit within"), "{message}");
        // The thread, by name and state (sleeping), and what it wrote.
        assert!(message.contains("sleep state S"), "{message}");
        assert!(message.contains("about to hang"), "{message}");
    }

    #[test]
    #[should_panic(expected = "sleep 5 did not exit within")]
    fn output_within_kills_a_hung_child() {
        let child = Command::new("sleep").arg("5").spawn().unwrap();
        output_within(child, Duration::from_millis(100), "sleep 5");
    }
}
