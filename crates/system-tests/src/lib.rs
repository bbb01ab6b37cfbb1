//! Helpers for the system tests: deterministic items, temporary rings,
//! loop devices, and child processes that are always cleaned up.

pub mod nbd;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

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

/// A child process killed (if still running) and reaped on drop, so a
/// failing test leaves nothing behind.
pub struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    /// Spawns `cmd`.
    pub fn spawn(cmd: &mut Command) -> ChildGuard {
        ChildGuard(Some(cmd.spawn().expect("spawn child process")))
    }

    /// Waits for the child and returns its exit status and output.
    pub fn wait_output(mut self) -> std::process::Output {
        self.0
            .take()
            .expect("child already taken")
            .wait_with_output()
            .expect("wait for child")
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
