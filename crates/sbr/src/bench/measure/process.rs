//! Child processes that never outlive the bench: `sbr` itself (the
//! latency peer, `sbr produce` and `sbr consume`) and servers such as
//! qemu-nbd, with their peak memory read while they run.

use std::io;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use super::BenchError;

/// This `sbr` executable, to run as a child.
pub fn sbr_itself() -> Result<Command, BenchError> {
    let exe =
        std::env::current_exe().map_err(|e| BenchError::msg(format!("finding sbr itself: {e}")))?;
    Ok(Command::new(exe))
}

/// Starts `cmd` as a child that dies with the bench, guarded so that it
/// is killed and reaped on every path; `what` names it in messages.
pub fn spawn(cmd: &mut Command, what: &str) -> Result<ChildGuard, BenchError> {
    let child = die_with_parent(cmd)
        .spawn()
        .map_err(|e| BenchError::msg(format!("starting {what}: {e}")))?;
    Ok(ChildGuard::new(child, what))
}

/// Makes a child process die with the bench (SIGKILL when the thread that
/// started it ends), so that an interrupted bench leaves no server or peer
/// behind; [`ChildGuard`] stops it on every normal path.
fn die_with_parent(cmd: &mut Command) -> &mut Command {
    // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag of the calling
    // (child) process; it allocates nothing and is async-signal-safe, as
    // code between fork and exec must be.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// A child process, killed and reaped when dropped unless it was reaped.
pub struct ChildGuard {
    child: Option<Child>,
    what: String,
    status: Option<ExitStatus>,
    peak: Option<u64>,
}

impl ChildGuard {
    /// Guards `child`, named `what` in messages.
    pub fn new(child: Child, what: impl Into<String>) -> ChildGuard {
        ChildGuard {
            child: Some(child),
            what: what.into(),
            status: None,
            peak: None,
        }
    }

    /// The running child.
    pub fn child(&mut self) -> &mut Child {
        self.child
            .as_mut()
            .expect("a guarded child is present until reaped")
    }

    /// Looks at the child once: notes its peak resident set size, and
    /// reaps it if it has exited. Returns its exit status once it has.
    ///
    /// The peak is the `VmHWM` of `/proc/PID/status` (the last reading
    /// before the child exits is the answer). Not wait4's `ru_maxrss`:
    /// Linux carries the parent's high-water mark over fork and exec into
    /// the child's, so that a child of a large bench process would look as
    /// large as the bench.
    pub fn poll(&mut self) -> Result<Option<ExitStatus>, BenchError> {
        let Some(child) = self.child.as_mut() else {
            return Ok(self.status);
        };
        // The child is not reaped before `try_wait` below says so, so its
        // pid cannot belong to anyone else while we read.
        if let Some(hwm) = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
            .ok()
            .as_deref()
            .and_then(vm_hwm)
        {
            self.peak = Some(self.peak.map_or(hwm, |p| p.max(hwm)));
        }
        let waited = child
            .try_wait()
            .map_err(|e| BenchError::msg(format!("waiting for {}: {e}", self.what)))?;
        if let Some(status) = waited {
            self.child = None;
            self.status = Some(status);
        }
        Ok(self.status)
    }

    /// The highest resident set size seen by [`poll`](Self::poll), in
    /// bytes.
    pub fn peak(&self) -> Option<u64> {
        self.peak
    }

    /// Waits for the child, for at most `limit` (then kills it), polling
    /// every 2 ms; returns its exit status.
    pub fn wait(&mut self, limit: Duration) -> Result<ExitStatus, BenchError> {
        wait_all(&mut [self], limit).map(|s| s[0])
    }

    /// Kills and reaps the child, if it is still there.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits for all of `children`, for at most `limit` in all (then kills
/// those left), polling each every 2 ms so that each one's peak memory is
/// read until it exits.
pub fn wait_all(
    children: &mut [&mut ChildGuard],
    limit: Duration,
) -> Result<Vec<ExitStatus>, BenchError> {
    let deadline = Instant::now() + limit;
    loop {
        let mut done = Vec::new();
        for c in children.iter_mut() {
            if let Some(s) = c.poll()? {
                done.push(s);
            }
        }
        if done.len() == children.len() {
            return Ok(done);
        }
        if Instant::now() >= deadline {
            let mut late = Vec::new();
            for c in children.iter_mut() {
                if c.child.is_some() {
                    late.push(c.what.clone());
                    c.kill();
                }
            }
            return Err(BenchError::msg(format!(
                "{} did not finish within {limit:?}; killed",
                late.join(" and ")
            )));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `VmHWM` line of a `/proc/PID/status`, in bytes.
fn vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Looks for an executable `name` on the PATH.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}
