//! `sbr consume`'s ways of taking items: --exec (release only what a
//! command accepted), --peek, --follow with --idle-timeout and --max, and
//! the names it writes into the consumer sector.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{dir, join_within, run, stderr as err, stdout as out, wait_timeout, SBR};

/// Runs `sbr args` with `stdin`, failing after 60 s.
fn ring_with(d: &std::path::Path, items: &[u8]) -> String {
    let ring = d.join("r.img").display().to_string();
    let o = run(&["create", &ring, "--size", "64KiB"], b"");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let o = run(&["produce", &ring], items);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    ring
}

#[test]
fn exec_releases_only_what_the_command_accepted() {
    let d = dir();
    let ring = ring_with(d.path(), b"one\ntwo\nthree\nfour\nfive\n");
    let done = d.path().join("done.txt");
    let cmd = format!(
        "x=$(cat); [ \"$x\" != three ] || exit 3; printf '%s\\n' \"$x\" >> {}",
        done.display()
    );
    let o = run(&["consume", &ring, "--exec", &cmd], b"");
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let e = err(&o);
    assert_eq!(e.lines().count(), 1, "one line: {e}");
    assert!(
        e.starts_with(&format!("error: {ring}: `{cmd}` failed (exit status: 3) on the item at position 16; not released")),
        "{e}"
    );
    assert_eq!(std::fs::read_to_string(&done).unwrap(), "one\ntwo\n");
    // The failed item and everything after it are still in the ring.
    let o = run(&["consume", &ring], b"");
    assert_eq!(out(&o), "three\nfour\nfive\n");
}

#[test]
fn exec_retries_then_goes_on() {
    let d = dir();
    let ring = ring_with(d.path(), b"a\nb\nc\n");
    let done = d.path().join("done.txt");
    let marks = d.path().display().to_string();
    // Fails the first time it sees each item, succeeds the second time.
    let cmd = format!(
        "x=$(cat); if [ -e {marks}/seen-$x ]; then echo $x >> {}; else touch {marks}/seen-$x; exit 1; fi",
        done.display()
    );
    let o = run(
        &[
            "consume",
            &ring,
            "--exec",
            &cmd,
            "--retry",
            "2",
            "--retry-delay",
            "10ms",
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(std::fs::read_to_string(&done).unwrap(), "a\nb\nc\n");
    assert_eq!(out(&run(&["consume", &ring], b"")), "");
    // Retries run out: the item stays.
    let ring2 = d.path().join("r2.img").display().to_string();
    run(&["create", &ring2, "--size", "64KiB"], b"");
    run(&["produce", &ring2], b"x\n");
    let o = run(
        &[
            "consume",
            &ring2,
            "--exec",
            "cat >/dev/null; exit 7",
            "--retry",
            "2",
            "--retry-delay",
            "1ms",
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains(
            "failed (exit status: 7) on the item at position 0 after 2 retries; not released"
        ),
        "{}",
        err(&o)
    );
    assert_eq!(out(&run(&["consume", &ring2], b"")), "x\n");
}

#[test]
fn exec_batches_give_several_items_per_run() {
    let d = dir();
    let ring = ring_with(d.path(), b"1\n2\n3\n4\n5\n");
    let log = d.path().join("log.txt");
    let cmd = format!(
        "echo \"$SBR_ITEMS items $SBR_POSITION..$SBR_NEXT: $(tr '\\n' ' ')\" >> {}",
        log.display()
    );
    let o = run(&["consume", &ring, "--exec", &cmd, "--batch", "2"], b"");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "2 items 0..16: 1 2 \n2 items 16..32: 3 4 \n1 items 32..40: 5 \n"
    );
}

#[test]
fn peek_prints_without_releasing() {
    let d = dir();
    let ring = ring_with(d.path(), b"one\ntwo\nthree\n");
    let o = run(&["consume", &ring, "--peek"], b"");
    assert_eq!(
        (o.status.code(), out(&o).as_str()),
        (Some(0), "one\ntwo\nthree\n")
    );
    let o = run(
        &["consume", &ring, "--peek", "--from", "8", "--max", "1"],
        b"",
    );
    assert_eq!(out(&o), "two\n");
    let o = run(&["consume", &ring, "--peek", "--from", "400"], b"");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).starts_with(&format!("error: {ring}: ")),
        "{}",
        err(&o)
    );
    // Still all there.
    let o = run(&["consume", &ring], b"");
    assert_eq!(out(&o), "one\ntwo\nthree\n");
    let o = run(&["consume", &ring, "--from", "8"], b"");
    assert_eq!(o.status.code(), Some(2), "--from needs --peek");
}

#[test]
fn follow_ends_after_an_idle_timeout_or_max_items() {
    let d = dir();
    let ring = ring_with(d.path(), b"a\nb\nc\n");
    let start = Instant::now();
    let o = run(
        &["consume", &ring, "--follow", "--idle-timeout", "300ms"],
        b"",
    );
    assert_eq!((o.status.code(), out(&o).as_str()), (Some(0), "a\nb\nc\n"));
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    // On an empty ring: nothing, exit 0.
    let o = run(
        &["consume", &ring, "--follow", "--idle-timeout", "100ms"],
        b"",
    );
    assert_eq!((o.status.code(), out(&o).as_str()), (Some(0), ""));
    // --max with --follow: stops after that many, waiting for them.
    let mut c = Command::new(SBR)
        .args(["consume", &ring, "--follow", "--max", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    run(&["produce", &ring], b"x\ny\nz\n");
    let stdout = c.stdout.take().unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap());
    let status = wait_timeout(&mut c, Duration::from_secs(30), "consume --follow --max 2");
    assert!(status.success());
    let printed = join_within(reader, Duration::from_secs(30), "the output reader");
    assert_eq!(printed, "x\ny\n");
    assert_eq!(out(&run(&["consume", &ring], b"")), "z\n");
}

#[test]
fn the_consumer_sector_names_its_queue_and_client() {
    let d = dir();
    let ring = ring_with(d.path(), b"a\n");
    run(
        &["consume", &ring, "--queue", "jobs", "--client", "worker-1"],
        b"",
    );
    let o = run(&["diagnostics", &ring], b"");
    assert!(
        out(&o).contains("consumer text: \"jobs used by worker-1; consumer = 8; suspend = false\""),
        "{}",
        out(&o)
    );
    run(
        &["suspend", &ring, "--queue", "jobs", "--client", "admin"],
        b"",
    );
    let o = run(&["diagnostics", &ring], b"");
    assert!(
        out(&o).contains("consumer text: \"jobs used by admin; consumer = 8; suspend = true\""),
        "{}",
        out(&o)
    );
}

#[test]
fn diagnostics_watch_reports_lag_once_per_interval() {
    let d = dir();
    let ring = ring_with(d.path(), b"one\ntwo\n");
    let o = run(
        &[
            "diagnostics",
            &ring,
            "--watch",
            "100ms",
            "--count",
            "3",
            "--json",
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let samples: Vec<serde_json::Value> = out(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(samples.len(), 3, "{}", out(&o));
    for (i, s) in samples.iter().enumerate() {
        assert_eq!(s["pending_items"], 2, "{s}");
        assert_eq!(s["pending_bytes"], 16, "{s}");
        assert_eq!(s["state"], "running", "{s}");
        assert_eq!(s["producer_idle_at_least"], true, "{s}");
        if i == 0 {
            assert!(s["publish_bytes_per_second"].is_null(), "{s}");
        } else {
            assert_eq!(s["publish_bytes_per_second"], 0.0, "{s}");
            assert_eq!(s["release_bytes_per_second"], 0.0, "{s}");
        }
    }
    let t: Vec<f64> = samples.iter().map(|s| s["t"].as_f64().unwrap()).collect();
    assert!(t[2] - t[0] >= 0.19, "{t:?}");

    // A consumer moving while watched: a release rate, and the consumer
    // seen to move. The watch lasts 3 s, so that its last samples come
    // after the consumer's run even when starting that process takes a
    // second on a busy machine (with 4 samples over 0.8 s it once ended
    // first).
    let watcher = {
        let ring = ring.clone();
        std::thread::spawn(move || {
            run(
                &[
                    "diagnostics",
                    &ring,
                    "--watch",
                    "200ms",
                    "--count",
                    "15",
                    "--json",
                ],
                b"",
            )
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    run(&["consume", &ring], b"");
    let o = join_within(watcher, Duration::from_secs(120), "sbr diagnostics --watch");
    let last: serde_json::Value = serde_json::from_str(out(&o).lines().last().unwrap()).unwrap();
    assert_eq!(last["pending_items"], 0, "{}", out(&o));
    assert_eq!(last["consumer_idle_at_least"], false, "{}", out(&o));
    let released: f64 = out(&o)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter_map(|s| s["release_bytes_per_second"].as_f64())
        .sum();
    assert!(released > 0.0, "{}", out(&o));

    // Text: one line per sample.
    let o = run(
        &["diagnostics", &ring, "--watch", "50ms", "--count", "2"],
        b"",
    );
    let text = out(&o);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.starts_with("t=0.0s fill 0.0% (0 of 64000 bytes); pending 0 items; publish -, release -; producer idle >="), "{text}");
    assert!(text.lines().all(|l| l.ends_with("; running")), "{text}");
}

/// The first SIGTERM lets the command running for an item finish, and the
/// item is released (exit 0); a second one while it runs ends `sbr
/// consume` at once with exit 130, the item not released. Both signals
/// come right after start-up as well as later: none is lost.
#[test]
fn one_sigterm_finishes_the_item_and_a_second_ends_at_once() {
    use std::os::unix::process::ExitStatusExt;
    let d = dir();
    let ring = ring_with(d.path(), b"one\n");
    let started = d.path().join("started");
    // Marks that it started, then takes 2 s.
    let cmd = format!("cat >/dev/null; touch {}; sleep 2", started.display());
    let start = |d: &std::path::Path| {
        let _ = std::fs::remove_file(d.join("started"));
        let child = Command::new(SBR)
            .args(["consume", &ring, "--exec", &cmd])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !started.exists() {
            assert!(Instant::now() < deadline, "the command never started");
            std::thread::sleep(Duration::from_millis(5));
        }
        child
    };
    let term = |c: &std::process::Child| {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
    };

    // Two signals: out at once, with 130, long before the command ends.
    let mut c = start(d.path());
    term(&c);
    std::thread::sleep(Duration::from_millis(50));
    term(&c);
    let t = Instant::now();
    let status = wait_timeout(
        &mut c,
        Duration::from_secs(10),
        "sbr consume after two SIGTERMs",
    );
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        t.elapsed()
    );
    let o = run(&["consume", &ring, "--peek"], b"");
    assert_eq!(out(&o), "one\n", "not released");

    // One signal: the command finishes, the item is released, exit 0.
    let mut c = start(d.path());
    term(&c);
    let status = wait_timeout(
        &mut c,
        Duration::from_secs(10),
        "sbr consume after one SIGTERM",
    );
    assert!(status.success() && status.signal().is_none(), "{status:?}");
    let o = run(&["consume", &ring], b"");
    assert_eq!(out(&o), "", "released");
}
