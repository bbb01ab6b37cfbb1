//! Standard output of the real `sbr` binary: a reader that goes away is
//! not an error for any command, and consumers write whole lines.

use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{dir, join_within, run, sbr, stderr, wait_timeout, LIMIT, SBR};

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
fn run_into_closed_pipe(args: &[&str]) -> Output {
    let mut child = sbr(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(closed_pipe()))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_timeout(
        &mut child,
        LIMIT,
        &format!("sbr {args:?} with its output closed"),
    );
    child.wait_with_output().unwrap()
}

fn sbr_ok(args: &[&str], stdin: &[u8]) {
    let o = run(args, stdin);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
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
        // Would sample for ever: the closed pipe ends it.
        vec!["diagnostics", &ring, "--watch", "10ms"],
        vec!["resume", &ring],
        vec!["suspend", &ring],
        vec!["erase", &other, "--pattern", "x"],
        vec!["--help"],
        vec!["diagnostics", "--help"],
        vec!["--version"],
        vec!["completions", "bash"],
        vec!["man"],
        vec!["man", "consume"],
        vec!["consume", &ring],
    ];
    for args in commands {
        let o = run_into_closed_pipe(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        assert_eq!(o.status.code(), Some(0), "{args:?}: {err}");
        assert_eq!(err, "", "{args:?}: nothing to say on stderr");
    }
    // The consumer printed nothing that reached anyone: nothing released.
    let o = Command::new(SBR).args(["consume", &ring]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "one\ntwo\nthree\n");
}

fn line(i: usize) -> String {
    format!("line {i} {}\n", "x".repeat(i % 300))
}

/// The index of a line made by [`line`], checked to be exactly that line.
fn index_of(l: &str) -> Option<usize> {
    let i: usize = l.strip_prefix("line ")?.split(' ').next()?.parse().ok()?;
    (format!("{l}\n") == line(i)).then_some(i)
}

/// `sbr consume --follow` killed with SIGKILL over and over while a slow
/// reader drains its pipe (so it is usually blocked in a write when the
/// kill lands): every run's output is whole lines, each a complete item;
/// each run starts at or before the first item not yet seen (the items a
/// killed consumer printed but had not released come again: at least
/// once), and nothing is lost.
#[test]
fn consume_killed_with_sigkill_leaves_only_whole_lines() {
    let d = dir();
    let ring = d.path().join("r.img").display().to_string();
    sbr_ok(&["create", &ring, "--size", "256KiB"], b"");
    let total = 30_000;
    let input: String = (0..total).map(line).collect();
    let mut producer = Command::new(SBR)
        .args(["produce", &ring, "--batch", "16"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pin = producer.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        std::io::Write::write_all(&mut pin, input.as_bytes()).unwrap();
    });
    let mut next_unseen = 0usize;
    let mut kills = 0;
    let mut repeated = 0usize;
    let mut rng = 0x5eed_u64;
    let deadline = Instant::now() + Duration::from_secs(300);
    while next_unseen < total {
        assert!(
            Instant::now() < deadline,
            "consumers got {next_unseen} of {total} lines in 300 s"
        );
        let mut c = Command::new(SBR)
            .args(["consume", &ring, "--follow"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut pipe = c.stdout.take().unwrap();
        // A slow reader: the pipe stays nearly full.
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            let mut buf = [0u8; 1024];
            loop {
                match std::io::Read::read(&mut pipe, &mut buf) {
                    Ok(0) | Err(_) => return out,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(20 + (rng >> 33) % 60));
        c.kill().unwrap();
        wait_timeout(&mut c, Duration::from_secs(30), "the killed consumer");
        kills += 1;
        let out = join_within(reader, Duration::from_secs(30), "the output reader");
        let out = String::from_utf8(out).expect("output is text");
        assert!(
            out.is_empty() || out.ends_with('\n'),
            "run {kills} ends in a partial line: {:?}",
            &out[out.rfind('\n').map_or(0, |i| i + 1)..]
        );
        let mut expect: Option<usize> = None;
        for l in out.lines() {
            let i = index_of(l).unwrap_or_else(|| panic!("run {kills}: not an item: {l:?}"));
            match expect {
                None => assert!(
                    i <= next_unseen,
                    "run {kills} starts at line {i}; line {next_unseen} was never printed"
                ),
                Some(e) => assert_eq!(i, e, "run {kills}: lines out of order"),
            }
            if i < next_unseen {
                repeated += 1;
            }
            next_unseen = next_unseen.max(i + 1);
            expect = Some(i + 1);
        }
        assert!(kills < 3000, "no progress after {kills} kills");
    }
    join_within(
        writer,
        Duration::from_secs(60),
        "the producer's input writer",
    );
    let status = wait_timeout(&mut producer, Duration::from_secs(60), "the producer");
    assert!(status.success(), "producer: {status:?}");
    assert!(kills >= 20, "only {kills} kills");
    eprintln!("{kills} kills, {total} lines, {repeated} printed again after a kill");
}

/// No log lines unless asked for, so the final error is the only line on
/// stderr; asked for with -v, no colour codes when stderr is not a
/// terminal. (A warning used to come first, in colour, even into a file.)
#[test]
fn logs_only_when_asked_and_without_colour_into_a_pipe() {
    let d = dir();
    let ring = d.path().join("r.img").display().to_string();
    sbr_ok(&["create", &ring, "--size", "64KiB"], b"");
    sbr_ok(&["produce", &ring], b"x\n");
    let failing = [
        "consume",
        &ring,
        "--exec",
        "cat >/dev/null; exit 1",
        "--retry",
        "1",
        "--retry-delay",
        "1ms",
    ];
    let o = Command::new(SBR)
        .args(failing)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    let o = Command::new(SBR)
        .arg("-v")
        .args(failing)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("WARN") && err.contains("retrying"), "{err}");
    assert!(!err.contains('\x1b'), "colour codes into a pipe: {err:?}");
    assert!(err.lines().last().unwrap().starts_with("error: "), "{err}");
}
