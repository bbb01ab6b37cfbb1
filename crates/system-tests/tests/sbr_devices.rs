//! The `sbr` binary on kernel block devices (loop devices, a device-mapper
//! device that fails I/O) and over NBD.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use system_tests::nbd::{NbdServer, Transport};
use system_tests::{join_within, output_within, ring_file, LoopDevice};

/// How long one sbr command of these tests may take (the slowest moves
/// 30,000 items over NBD in a few seconds; a hang fails here, named).
const LIMIT: Duration = Duration::from_secs(120);

/// The `sbr` binary that `cargo test --workspace` builds next to this test.
fn sbr_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("sbr"))
        .unwrap();
    assert!(
        bin.is_file(),
        "{} is missing: run these tests with `cargo test --workspace`, which builds sbr",
        bin.display()
    );
    bin
}

fn sbr(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(sbr_bin())
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = output_within(child, LIMIT, &format!("sbr {}", args.join(" ")));
    join_within(writer, LIMIT, "the writer of sbr's standard input");
    out
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "sbr failed ({:?}): {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn failed(o: &Output, code: i32, cause: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "{err}");
    assert!(err.starts_with("error: ") && err.contains(cause), "{err}");
}

fn lines(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| format!("item {i} {}\n", "y".repeat(i % 200)).into_bytes())
        .collect()
}

#[test]
fn every_command_works_on_a_loop_device() {
    let file = ring_file(1 << 20);
    let dev = LoopDevice::attach(file.path());
    let d = dev.path().display().to_string();
    // A block device exists already: no --size.
    let out = ok(&sbr(&["create", &d], b""));
    assert!(out.contains("capacity 1047040 bytes"), "{out}");
    ok(&sbr(&["produce", &d, "--queue", "q"], b"alpha\nbeta\n"));
    let diag = ok(&sbr(&["diagnostics", &d], b""));
    assert!(
        diag.contains("block device") && diag.contains("pending:     2 items"),
        "{diag}"
    );
    assert_eq!(ok(&sbr(&["consume", &d], b"")), "alpha\nbeta\n");
    ok(&sbr(&["suspend", &d], b""));
    failed(&sbr(&["produce", &d], b"x\n"), 69, "suspended");
    ok(&sbr(&["resume", &d], b""));
    ok(&sbr(&["produce", &d], b"gamma\n"));
    // Two processes through the loop device, wrapping the ring many times.
    let input = lines(30_000);
    let consumer = Command::new(sbr_bin())
        .args(["consume", &d, "--follow", "--max", "30000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let consumer =
        std::thread::spawn(move || output_within(consumer, LIMIT, "sbr consume --follow"));
    ok(&sbr(&["produce", &d], &input));
    let c = join_within(consumer, LIMIT, "the thread waiting for sbr consume");
    // The consumer stops after 30,000 items: "gamma" and all but the last line.
    let mut expected = b"gamma\n".to_vec();
    for line in input.split_inclusive(|&b| b == b'\n').take(29_999) {
        expected.extend_from_slice(line);
    }
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
    assert_eq!(c.stdout.len(), expected.len());
    assert!(c.stdout == expected, "output differs");
    // The last line is still in the ring.
    assert_eq!(ok(&sbr(&["consume", &d], b"")).lines().count(), 1);
    ok(&sbr(&["erase", &d, "--pattern", "gone"], b""));
    failed(
        &sbr(&["diagnostics", &d], b""),
        1,
        "not a shared block ring",
    );
}

#[test]
fn a_loop_device_that_is_too_small() {
    let file = ring_file(1536);
    let dev = LoopDevice::attach(file.path());
    let d = dev.path().display().to_string();
    failed(&sbr(&["create", &d], b""), 1, "minimum size is 4 sectors");
}

#[test]
fn device_io_errors_are_reported_and_lose_nothing_published() {
    // A real server failing every request while a trigger file exists
    // (nbdkit's error filter): the kernel here has no device-mapper, so no
    // dm-error target.
    let image = ring_file(64 * 1024);
    let dir = tempfile::tempdir_in(system_tests::test_dir()).unwrap();
    let trigger = dir.path().join("fail-now");
    let file_arg = format!("file={}", image.path().display());
    let trigger_arg = format!("error-file={}", trigger.display());
    let server = NbdServer::nbdkit(
        &["error"],
        &[
            "file",
            &file_arg,
            "error=EIO",
            "error-rate=100%",
            &trigger_arg,
        ],
        Transport::Unix,
    );
    let d = server.uri();
    ok(&sbr(&["create", &d], b""));
    let line = format!("{}\n", "z".repeat(999));
    ok(&sbr(
        &["produce", &d, "--batch", "10"],
        line.repeat(20).as_bytes(),
    ));
    std::fs::write(&trigger, b"").unwrap();
    let o = sbr(
        &["produce", &d, "--batch", "10"],
        line.repeat(20).as_bytes(),
    );
    failed(&o, 1, "Input/output error");
    assert!(String::from_utf8_lossy(&o.stderr).contains(&d));
    let o = sbr(&["diagnostics", &d], b"");
    failed(&o, 1, "device I/O error while reading sector 0");
    std::fs::remove_file(&trigger).unwrap();
    // What was published before the failure is intact and readable.
    let diag = ok(&sbr(&["diagnostics", &d], b""));
    assert!(diag.contains("pending:     20 items"), "{diag}");
    let consumed = ok(&sbr(&["consume", &d], b""));
    assert_eq!(consumed.lines().count(), 20);
    assert!(consumed.lines().all(|l| l == &line[..999]));
}

#[test]
fn sbr_takes_nbd_uris() {
    let image = ring_file(1 << 20);
    let server = NbdServer::qemu_nbd(image.path(), "ring", Transport::Unix, &["--cache=none"]);
    let uri = server.uri();
    let out = ok(&sbr(&["create", &uri], b""));
    assert!(out.contains("created a ring"), "{out}");
    ok(&sbr(&["produce", &uri], b"over\nthe\nnetwork\n"));
    let diag = ok(&sbr(&["diagnostics", &uri, "--json"], b""));
    let v: serde_json::Value = serde_json::from_str(&diag).unwrap();
    assert_eq!(v["pending_items"], 3);
    assert_eq!(
        ok(&sbr(&["consume", &uri, "--max", "2"], b"")),
        "over\nthe\n"
    );
    ok(&sbr(&["suspend", &uri], b""));
    failed(&sbr(&["produce", &uri], b"x\n"), 69, "suspended");
    ok(&sbr(&["resume", &uri], b""));
    assert_eq!(ok(&sbr(&["consume", &uri], b"")), "network\n");
    failed(
        &sbr(&["consume", "nbd://127.0.0.1:1/none"], b""),
        1,
        "nbd://127.0.0.1:1/none",
    );
    failed(&sbr(&["consume", "nbds://host/x"], b""), 1, "nbds://host/x");
}

/// The pid of the only child of `pid` (the process `unshare --fork` runs).
fn only_child(pid: u32) -> u32 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        if let Some(c) = children.split_whitespace().next() {
            return c.parse().unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "unshare started no child"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Two `sbr consume` processes through one qemu-nbd export (no on-host
/// lock reaches across NBD): the first, in its own pid namespace (to the
/// second, a process on a host it cannot place), follows the ring and
/// holds the consumer side; the second is refused while the first's
/// heartbeats are fresh, told the lease expired once the first hangs
/// (SIGSTOP), and takes over with --take-over; the first, resumed, finds
/// itself displaced and stops. Every item is printed once.
#[test]
fn two_sbr_consumers_through_one_qemu_nbd_export_share_by_lease() {
    use std::io::{BufRead, BufReader};
    use std::time::Instant;
    system_tests::require_root("a consumer in its own pid namespace");
    let unshare = system_tests::require_tool("unshare", "util-linux");
    let image = ring_file(1 << 20);
    let server = NbdServer::qemu_nbd(image.path(), "ring", Transport::Unix, &["--cache=none"]);
    let uri = server.uri();
    ok(&sbr(
        &["create", &uri, "--format", "2", "--lease", "2s"],
        b"",
    ));
    ok(&sbr(&["produce", &uri], b"one\ntwo\n"));
    let mut first = system_tests::ChildGuard::spawn(
        Command::new(unshare)
            .args(["--pid", "--fork", "--kill-child"])
            .arg(sbr_bin())
            .args(["consume", &uri, "--follow"])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let sbr_pid = only_child(first.child().id());
    let mut out = BufReader::new(first.child().stdout.take().unwrap());
    let mut line = String::new();
    for want in ["one\n", "two\n"] {
        line.clear();
        out.read_line(&mut line).unwrap();
        assert_eq!(line, want);
    }
    // The first holds the side, and its heartbeats keep it.
    std::thread::sleep(Duration::from_secs(3));
    failed(&sbr(&["consume", &uri, "--take-over"], b""), 1, "last seen");
    // It hangs.
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(sbr_pid as i32, libc::SIGSTOP) };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = sbr(&["consume", &uri], b"");
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(1), "{err}");
        if err.contains("has expired") {
            assert!(err.contains("--take-over"), "{err}");
            break;
        }
        assert!(err.contains("owned by"), "{err}");
        assert!(Instant::now() < deadline, "the lease never expired: {err}");
        std::thread::sleep(Duration::from_millis(100));
    }
    ok(&sbr(&["produce", &uri], b"three\n"));
    let second = Command::new(sbr_bin())
        .args([
            "consume",
            &uri,
            "--take-over",
            "--follow",
            "--idle-timeout",
            "4s",
        ])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut second = system_tests::ChildGuard(Some(second));
    let mut out2 = BufReader::new(second.child().stdout.take().unwrap());
    line.clear();
    out2.read_line(&mut line).unwrap();
    assert_eq!(line, "three\n");
    // The first comes back: its next look at the ring finds another owner.
    // SAFETY: as above.
    unsafe { libc::kill(sbr_pid as i32, libc::SIGCONT) };
    let o = first.wait_output();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("this consumer was displaced") && err.contains("writes nothing more"),
        "{err}"
    );
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert_eq!(rest, "", "the first printed nothing more");
    let o = second.wait_output();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    rest.clear();
    std::io::Read::read_to_string(&mut out2, &mut rest).unwrap();
    assert_eq!(rest, "", "the second printed nothing more");
}
