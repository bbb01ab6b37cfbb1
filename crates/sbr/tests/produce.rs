//! `sbr produce`: --no-wait fills the ring and says exactly what it
//! published; --wait-resume waits out a suspend.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{dir, run, wait_timeout as wait, SBR};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn new_ring(d: &std::path::Path, size: &str) -> String {
    let ring = d.join("r.img").display().to_string();
    let o = run(&["create", &ring, "--size", size], b"");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    ring
}

/// `seq 1 1000 | sbr produce --no-wait` on a 4 KiB ring (2560 bytes of
/// data: 320 items of up to 4 bytes, 8 bytes each with the header). It
/// stopped at 249 before, saying the rest of the input was not read.
#[test]
fn no_wait_fills_the_ring_and_says_what_was_published() {
    let d = dir();
    let ring = new_ring(d.path(), "4KiB");
    let input: String = (1..=1000).map(|i| format!("{i}\n")).collect();
    let o = run(&["produce", &ring, "--no-wait"], input.as_bytes());
    assert_eq!(o.status.code(), Some(75), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    let prefix = format!(
        "error: {ring}: the ring is full: lines 1 to 320 were published (320 items); lines 321 to "
    );
    assert!(err.starts_with(&prefix), "{err}");
    // However far the reader got, it is named exactly.
    let last: u64 = err[prefix.len()..]
        .strip_suffix(" were read but not published\n")
        .unwrap_or_else(|| panic!("{err}"))
        .parse()
        .unwrap_or_else(|_| panic!("{err}"));
    assert!((321..=1000).contains(&last), "{err}");
    let o = run(&["consume", &ring], b"");
    let expect: String = (1..=320).map(|i| format!("{i}\n")).collect();
    assert_eq!(text(&o.stdout), expect);
}

#[test]
fn wait_resume_waits_out_a_suspend() {
    let d = dir();
    let ring = new_ring(d.path(), "64KiB");
    // Suspended before the producer starts: it waits at attach.
    assert_eq!(run(&["suspend", &ring], b"").status.code(), Some(0));
    let mut p = Command::new(SBR)
        .args(["produce", &ring, "--wait-resume"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = p.stdin.take().unwrap();
    input.write_all(b"one\n").unwrap();
    input.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(p.try_wait().unwrap().is_none(), "exited while suspended");
    let diag = text(&run(&["diagnostics", &ring], b"").stdout);
    assert!(diag.contains("state:       suspended"), "{diag}");
    assert_eq!(run(&["resume", &ring], b"").status.code(), Some(0));
    // It resumes and pushes; then a suspend while it runs.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !text(&run(&["consume", &ring, "--peek"], b"").stdout).contains("one") {
        assert!(Instant::now() < deadline, "the producer never resumed");
        std::thread::sleep(Duration::from_millis(20));
    }
    // An idle producer (waiting for input) still acknowledges a suspend:
    // --wait returns. Then "two" finds the ring suspended, and waits.
    let o = run(&["suspend", &ring, "--wait", "--timeout", "30s"], b"");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    input.write_all(b"two\n").unwrap();
    input.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(p.try_wait().unwrap().is_none(), "exited while suspended");
    assert_eq!(
        text(&run(&["consume", &ring, "--peek"], b"").stdout),
        "one\n"
    );
    assert_eq!(run(&["resume", &ring], b"").status.code(), Some(0));
    drop(input);
    let status = wait(&mut p, Duration::from_secs(30), "produce --wait-resume");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut p.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{status:?}: {err}");
    assert_eq!(text(&run(&["consume", &ring], b"").stdout), "one\ntwo\n");
    // Without the flag, a suspended ring is exit 69, as before.
    assert_eq!(run(&["suspend", &ring], b"").status.code(), Some(0));
    assert_eq!(run(&["produce", &ring], b"x\n").status.code(), Some(69));
}
