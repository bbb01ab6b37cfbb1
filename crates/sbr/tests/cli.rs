//! The real `sbr` binary: every command, exit status and error message.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{code, dir, join_within, new_ring, run, sbr, stderr, stdout, wait_timeout, SBR};

/// Asserts a failure: status, one `error:` line naming the device, and a cause.
fn assert_error(o: &Output, status: i32, device: &str, cause: &str) {
    let err = stderr(o);
    assert_eq!(code(o), status, "stderr: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(lines[0].contains(device), "names {device}: {err}");
    assert!(lines[0].contains(cause), "says {cause:?}: {err}");
}

#[test]
fn create_makes_a_private_file_and_is_idempotent() {
    let d = dir();
    let path = d.path().join("r.img").display().to_string();
    let o = run(&["create", &path], b"");
    assert_error(&o, 2, &path, "pass --size");
    let o = run(&["create", &path, "--size", "16KiB"], b"");
    assert_eq!(code(&o), 0);
    assert!(
        stdout(&o).contains("capacity 14848 bytes"),
        "{}",
        stdout(&o)
    );
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), 16384);
    let before = std::fs::read(&path).unwrap();
    let o = run(&["create", &path], b"");
    assert_eq!(code(&o), 0);
    assert!(
        stdout(&o).contains("already holds a ring"),
        "{}",
        stdout(&o)
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
    let o = run(&["create", &path, "--size", "32KiB"], b"");
    assert_error(&o, 1, &path, "refusing to resize");
    let other = d.path().join("o.img").display().to_string();
    let o = run(&["create", &other, "--size", "8192", "--mode", "640"], b"");
    assert_eq!(code(&o), 0);
    let meta = std::fs::metadata(&other).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);
}

#[test]
fn usage_errors_exit_2() {
    let o = run(&["produce"], b"");
    assert_eq!(code(&o), 2);
    let o = run(&["frobnicate"], b"");
    assert_eq!(code(&o), 2);
    let o = run(&["create", "x", "--size", "ten"], b"");
    assert_eq!(code(&o), 2);
    let o = run(&["produce", "x", "--durability", "sometimes"], b"");
    assert_eq!(code(&o), 2);
}

#[test]
fn produce_consume_round_trip_with_json_and_batches() {
    let d = dir();
    let ring = new_ring(d.path(), "r.img", "64KiB");
    let o = run(
        &["produce", &ring, "--batch", "3"],
        b"one\ntwo\n\nfour\nfive",
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = run(&["consume", &ring, "--max", "2"], b"");
    assert_eq!(stdout(&o), "one\ntwo\n");
    let o = run(&["consume", &ring, "--json"], b"");
    assert_eq!(code(&o), 0);
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["text"], "");
    assert_eq!(lines[0]["len"], 0);
    assert_eq!(lines[1]["text"], "four");
    assert_eq!(lines[2]["text"], "five");
    assert_eq!(lines[1]["position"], lines[0]["next"]);
    // Empty now: exits 0 with nothing printed.
    let o = run(&["consume", &ring], b"");
    assert_eq!((code(&o), stdout(&o).as_str()), (0, ""));
}

#[test]
fn binary_items_with_null_delimiters_and_base64() {
    let d = dir();
    let ring = new_ring(d.path(), "r.img", "64KiB");
    let o = run(&["produce", &ring, "--null"], b"a\nb\0\xff\xfe\0");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = run(&["consume", &ring, "--json", "--max", "1"], b"");
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["text"], "a\nb");
    let o = run(&["consume", &ring, "--json"], b"");
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["base64"], "//4=");
    assert!(v.get("text").is_none());
}

#[test]
fn consume_escapes_control_characters_when_asked() {
    let d = dir();
    let ring = new_ring(d.path(), "r.img", "64KiB");
    run(&["produce", &ring], b"\x1b[2J\x07bell\n");
    let o = run(&["consume", &ring, "--escape", "always"], b"");
    assert_eq!(stdout(&o), "\\x1b[2J\\x07bell\n");
}

#[test]
fn a_full_ring_with_no_wait_exits_75_after_publishing() {
    let d = dir();
    let ring = new_ring(d.path(), "r.img", "2048"); // 512 bytes of data
    let input: Vec<u8> = (0..10).flat_map(|_| b"0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789\n".to_vec()).collect();
    let o = run(&["produce", &ring, "--no-wait"], &input);
    assert_error(&o, 75, &ring, "the ring is full");
    // What was pushed is published: 4 items of 104 bytes fit in 512.
    let o = run(&["consume", &ring], b"");
    assert_eq!(stdout(&o).lines().count(), 4);
}

#[test]
fn an_item_larger_than_the_ring_is_an_error_and_earlier_lines_survive() {
    let d = dir();
    let ring = new_ring(d.path(), "r.img", "2048");
    let mut input = b"small\n".to_vec();
    input.extend(vec![b'x'; 600]);
    input.push(b'\n');
    let o = run(&["produce", &ring, "--batch", "10"], &input);
    assert_error(&o, 1, &ring, "larger than the ring");
    let o = run(&["consume", &ring], b"");
    assert_eq!(stdout(&o), "small\n");
}

#[test]
fn suspend_and_resume_exit_codes() {
    let d = dir();
    let ring = new_ring(d.path(), "r.img", "64KiB");
    let o = run(&["suspend", &ring], b"");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("not acknowledged"), "{}", stdout(&o));
    // No producer has looked: a resume must wait.
    let o = run(&["resume", &ring], b"");
    assert_error(&o, 75, &ring, "has not acknowledged");
    let o = run(&["resume", &ring, "--wait", "--timeout", "200ms"], b"");
    assert_error(&o, 75, &ring, "has not acknowledged");
    // A producer attaching acknowledges, then reports the suspension.
    let o = run(&["produce", &ring], b"x\n");
    assert_error(&o, 69, &ring, "suspended");
    let o = run(&["diagnostics", &ring], b"");
    assert!(
        stdout(&o).contains("state:       suspended"),
        "{}",
        stdout(&o)
    );
    let o = run(&["suspend", &ring], b"");
    assert!(stdout(&o).contains("suspended"), "{}", stdout(&o));
    let o = run(&["resume", &ring], b"");
    assert_eq!(code(&o), 0);
    // With a producer running, --wait returns once it acknowledges.
    let mut producer = sbr(&["produce", &ring])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut input = producer.stdin.take().unwrap();
    input.write_all(b"a\n").unwrap();
    input.flush().unwrap();
    let waiter = std::thread::spawn({
        let ring = ring.clone();
        move || run(&["suspend", &ring, "--wait", "--timeout", "20s"], b"")
    });
    // Keep pushing so the producer keeps looking at the consumer sector.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !waiter.is_finished() && Instant::now() < deadline {
        if input.write_all(b"more\n").is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = join_within(waiter, Duration::from_secs(120), "sbr suspend --wait");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("acknowledged by the producer"));
    drop(input);
    let status = wait_timeout(
        &mut producer,
        Duration::from_secs(60),
        "the suspended producer",
    );
    assert_eq!(status.code(), Some(69));
}

#[test]
fn errors_name_the_device_and_the_cause() {
    let d = dir();
    let missing = d.path().join("missing.img").display().to_string();
    assert_error(
        &run(&["consume", &missing], b""),
        1,
        &missing,
        "No such file",
    );
    assert_error(
        &run(&["diagnostics", &missing], b""),
        1,
        &missing,
        "No such file",
    );

    let blank = d.path().join("blank.img");
    std::fs::write(&blank, vec![0u8; 8192]).unwrap();
    let blank = blank.display().to_string();
    assert_error(
        &run(&["consume", &blank], b""),
        1,
        &blank,
        "not a shared block ring",
    );
    assert_error(
        &run(&["produce", &blank], b"x\n"),
        1,
        &blank,
        "not a shared block ring",
    );

    let tiny = d.path().join("tiny.img");
    std::fs::write(&tiny, vec![0u8; 1536]).unwrap();
    let tiny = tiny.display().to_string();
    assert_error(
        &run(&["create", &tiny], b""),
        1,
        &tiny,
        "minimum size is 4 sectors",
    );
    let small = d.path().join("small.img").display().to_string();
    assert_error(
        &run(&["create", &small, "--size", "1000"], b""),
        1,
        &small,
        "too small",
    );

    let corrupt = new_ring(d.path(), "c.img", "16KiB");
    let mut bytes = std::fs::read(&corrupt).unwrap();
    bytes[512 + 8] = 7;
    std::fs::write(&corrupt, &bytes).unwrap();
    for cmd in ["consume", "produce", "suspend"] {
        assert_error(&run(&[cmd, &corrupt], b""), 1, &corrupt, "sector 1 byte 8");
    }
}

#[test]
fn diagnostics_reports_corruption_where_it_is() {
    let d = dir();
    let ring = new_ring(d.path(), "r.img", "16KiB");
    run(&["produce", &ring], b"hello\nworld\n");
    let healthy = run(&["diagnostics", &ring], b"");
    assert_eq!(code(&healthy), 0, "{}", stderr(&healthy));
    assert!(stdout(&healthy).contains("pending:     2 items"));
    let j = run(&["diagnostics", &ring, "--json"], b"");
    let v: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
    assert_eq!(v["healthy"], true);
    assert_eq!(v["producer"]["position"], 24);
    assert_eq!(v["pending_items"], 2);

    type Damage = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Damage)> = vec![
        (
            "sector 0 bytes 0..30",
            Box::new(|b| b[..6].copy_from_slice(b"\x1b]0;pw")),
        ),
        (
            "sector 1 byte 8: the suspend_ack flag is 0",
            Box::new(|b| b[512 + 8] = 0),
        ),
        (
            "sector 2 byte 8: the suspend flag is 7",
            Box::new(|b| b[1024 + 8] = 7),
        ),
        (
            "is ahead of the producer position",
            Box::new(|b| b[1024] = 100),
        ),
        (
            "more than the ring's capacity",
            Box::new(|b| b[512..520].copy_from_slice(&20000u64.to_le_bytes())),
        ),
        (
            "sector 3 byte 12: the item at position 12 has length 4294967295",
            Box::new(|b| b[1536 + 12..1536 + 16].copy_from_slice(&[0xff; 4])),
        ),
    ];
    for (expect, damage) in cases {
        let mut bytes = std::fs::read(&ring).unwrap();
        let good = bytes.clone();
        damage(&mut bytes);
        std::fs::write(&ring, &bytes).unwrap();
        let o = run(&["diagnostics", &ring], b"");
        assert_eq!(code(&o), 1, "{expect}");
        assert!(stdout(&o).contains(expect), "{expect}: {}", stdout(&o));
        assert!(stderr(&o).starts_with("error: "), "{}", stderr(&o));
        assert!(stderr(&o).contains(expect), "{expect}: {}", stderr(&o));
        // Nothing from the device reaches the terminal unescaped.
        assert!(!o.stdout.contains(&0x1b), "{expect}");
        let j = run(&["diagnostics", &ring, "--json"], b"");
        let v: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
        assert_eq!(v["healthy"], false);
        // diagnostics never writes.
        assert_eq!(std::fs::read(&ring).unwrap(), bytes);
        std::fs::write(&ring, &good).unwrap();
    }
}

#[test]
fn erase_overwrites_and_asks_only_at_a_terminal() {
    let d = dir();
    let ring = new_ring(d.path(), "r.img", "16KiB");
    // Standard input is a pipe here, so no confirmation is needed.
    let o = run(&["erase", &ring, "--pattern", "ab"], b"");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let bytes = std::fs::read(&ring).unwrap();
    assert!(bytes.iter().enumerate().all(|(i, &b)| b == b"ab"[i % 2]));
    let o = run(&["diagnostics", &ring], b"");
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("not a shared block ring"));
    let o = run(&["create", &ring, "--erase"], b"");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("created a ring"));
    let o = run(&["diagnostics", &ring], b"");
    assert_eq!(code(&o), 0);
    // At a terminal, erasing a ring needs --yes: run under `script`, which
    // gives the command a pseudo-terminal.
    let script = Command::new("script")
        .args(["-qec", &format!("{SBR} erase {ring}"), "/dev/null"])
        .output()
        .expect("`script` (util-linux bsdutils) is needed for this test");
    assert_eq!(
        script.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&script.stdout)
    );
    assert!(String::from_utf8_lossy(&script.stdout).contains("pass --yes"));
    assert_eq!(run(&["diagnostics", &ring], b"").status.code(), Some(0));
}

fn lines(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| format!("line {i} {}\n", "x".repeat(i % 300)).into_bytes())
        .collect()
}

#[test]
fn concurrent_produce_and_consume_move_100000_lines_in_order() {
    let d = dir();
    let ring = new_ring(d.path(), "r.img", "32KiB");
    let input = lines(100_000);
    let consumer = sbr(&["consume", &ring, "--follow", "--max", "100000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read its output while the producer runs, or the pipe fills up.
    let consumer = std::thread::spawn(move || consumer.wait_with_output().unwrap());
    let p = run(&["produce", &ring, "--batch", "64"], &input);
    assert_eq!(code(&p), 0, "{}", stderr(&p));
    let c = join_within(
        consumer,
        Duration::from_secs(300),
        "consume --follow --max 100000",
    );
    assert_eq!(code(&c), 0, "{}", stderr(&c));
    assert!(c.stdout == input, "output differs from input");
}

#[test]
fn consume_follow_killed_with_sigterm_loses_and_duplicates_nothing() {
    let d = dir();
    let ring = new_ring(d.path(), "r.img", "16KiB");
    let total = 20_000;
    let input = lines(total);
    let producer = {
        let ring = ring.clone();
        let input = input.clone();
        std::thread::spawn(move || run(&["produce", &ring, "--batch", "8"], &input))
    };
    let mut got = Vec::new();
    let mut restarts = 0;
    let mut rng = 12345u64;
    while got.len() < input.len() {
        let mut c = sbr(&["consume", &ring, "--follow"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Drain its output concurrently, so it never blocks on a full pipe.
        let mut pipe = c.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut pipe, &mut out).unwrap();
            out
        });
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(5 + (rng >> 33) % 40));
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let status = wait_timeout(
            &mut c,
            Duration::from_secs(10),
            "sbr consume --follow after SIGTERM",
        );
        let out = join_within(
            reader,
            Duration::from_secs(30),
            "the consumer's stdout reader",
        );
        // A signal that lands before the handlers are installed (during
        // start-up) kills the process before it has printed anything.
        use std::os::unix::process::ExitStatusExt;
        assert!(
            status.success() || (status.signal() == Some(libc::SIGTERM) && out.is_empty()),
            "consumer exit {status:?} after printing {} bytes",
            out.len()
        );
        got.extend(out);
        restarts += 1;
        assert!(restarts < 5000, "no progress");
    }
    let p = join_within(producer, Duration::from_secs(120), "sbr produce");
    assert_eq!(code(&p), 0, "{}", stderr(&p));
    assert!(
        got == input,
        "union of outputs differs from the input after {restarts} restarts"
    );
    assert!(restarts >= 10, "only {restarts} restarts");
    eprintln!("{restarts} consumer restarts, {total} lines");
}

#[test]
fn permission_denied_is_reported() {
    let d = dir();
    let ring = new_ring(d.path(), "r.img", "16KiB");
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let o = if root {
        // Root bypasses file permissions: run as nobody instead.
        let out = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                SBR,
                "consume",
                &ring,
            ])
            .output()
            .expect("`setpriv` (util-linux) is needed for this test when run as root");
        out
    } else {
        std::fs::set_permissions(&ring, std::os::unix::fs::PermissionsExt::from_mode(0o000))
            .unwrap();
        run(&["consume", &ring], b"")
    };
    assert_error(&o, 1, &ring, "Permission denied");
}

/// For each bad device of RELIABILITY.md's table, `sbr` prints exactly the
/// library's error after the device name, and exits 1.
#[test]
fn bad_inputs_print_the_library_error_after_the_device_name() {
    use shared_block_ring::{Consumer, FileDevice, FileOptions, Options, Position};
    let d = dir();
    let base = new_ring(d.path(), "base.img", "16KiB");
    run(&["produce", &base], b"hello\nworld\n");
    let good = std::fs::read(&base).unwrap();
    type Damage = fn(&mut Vec<u8>);
    let cases: Vec<(&str, Damage, &[&str])> = vec![
        ("not a ring", |b| b.fill(0), &[]),
        (
            "foreign signature",
            |b| b[27..30].copy_from_slice(b"2.0"),
            &[],
        ),
        ("flag byte 0", |b| b[512 + 8] = 0, &[]),
        ("flag byte 7", |b| b[1024 + 8] = 7, &[]),
        ("unaligned position", |b| b[512] = 22, &[]),
        ("consumer > producer", |b| b[1024] = 100, &[]),
        (
            "used beyond capacity",
            |b| b[512..520].copy_from_slice(&14852u64.to_le_bytes()),
            &[],
        ),
        ("item length past producer", |b| b[1536 + 12] = 100, &[]),
        (
            "a length of 4 GiB",
            |b| b[1536 + 12..1536 + 16].fill(0xff),
            &[],
        ),
        ("truncated file", |b| b.truncate(1536), &[]),
        (
            "wrong sector size",
            |b| b.resize(65536, 0),
            &["--sector-size", "4096"],
        ),
    ];
    for (what, damage, extra) in cases {
        let path = d.path().join(format!("{}.img", what.replace(' ', "-")));
        let mut bytes = good.clone();
        damage(&mut bytes);
        std::fs::write(&path, &bytes).unwrap();
        let p = path.display().to_string();
        // The library's own words, on the same device.
        let mut options = FileOptions::new();
        if extra.len() == 2 {
            options = options.sector_size(extra[1].parse().unwrap());
        }
        let lib_error = FileDevice::open_with(&path, &options)
            .and_then(|dev| Consumer::attach(dev, Options::new()))
            .and_then(|mut c| {
                c.fold(Position::ZERO.max(c.position()), (), |_, _| ())
                    .map(|_| ())
            })
            .expect_err(what)
            .to_string();
        let mut args = vec!["consume", p.as_str()];
        args.extend_from_slice(extra);
        let o = run(&args, b"");
        assert_eq!(code(&o), 1, "{what}");
        // A ring opened with the wrong sector size: the size it was made
        // with is named after the library's words.
        let hint = if what == "wrong sector size" {
            "; the ring's state is valid with 512-byte sectors: pass --sector-size 512"
        } else {
            ""
        };
        assert_eq!(
            stderr(&o),
            format!("error: {p}: {lib_error}{hint}\n"),
            "{what}"
        );
    }
    // Refused before the device is used at all.
    let o = run(&["consume", &base, "--sector-size", "1000"], b"");
    assert_error(
        &o,
        1,
        &base,
        "unsupported sector size 1000: it must be a power of two",
    );
    let tiny = d.path().join("tiny.img");
    std::fs::write(&tiny, vec![0u8; 1536]).unwrap();
    let t = tiny.display().to_string();
    assert_eq!(
        stderr(&run(&["create", &t], b"")),
        format!(
            "error: {t}: the block device is too small for a ring: it has 3 sectors of 512 bytes; \
             the minimum size is 4 sectors\n"
        )
    );
}

/// Runs `sbr args` with no input, failing the test if it takes more than
/// `limit` (a command blocked in open(2) on a FIFO would hang for ever).
fn run_within(args: &[&str], limit: Duration) -> Output {
    let mut child = sbr(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_timeout(&mut child, limit, &format!("sbr {args:?}"));
    child.wait_with_output().unwrap()
}

#[test]
fn directories_fifos_and_character_devices_are_named_and_never_block() {
    let d = dir();
    let fifo = d.path().join("ring.fifo");
    let c_path = std::ffi::CString::new(fifo.display().to_string()).unwrap();
    // SAFETY: mkfifo reads a NUL-terminated path, which lives for the call.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let fifo = fifo.display().to_string();
    let dir_path = d.path().display().to_string();
    let cases = [
        (dir_path.as_str(), "it is a directory"),
        (fifo.as_str(), "it is a FIFO (named pipe)"),
        ("/dev/null", "it is a character device"),
    ];
    for (path, what) in cases {
        for cmd in ["diagnostics", "consume", "produce", "suspend"] {
            let o = run_within(&[cmd, path], Duration::from_secs(20));
            assert_error(&o, 1, path, what);
            assert!(
                stderr(&o).contains("a ring needs a regular file or a block device"),
                "{}",
                stderr(&o)
            );
        }
    }
}

fn state_line(ring: &str) -> String {
    let o = run(&["diagnostics", ring], b"");
    stdout(&o)
        .lines()
        .find(|l| l.starts_with("state:"))
        .unwrap_or("no state line")
        .to_string()
}

#[test]
fn every_handshake_state_is_shown_and_repeating_a_pending_request_succeeds() {
    let d = dir();
    let ring = new_ring(d.path(), "r.img", "64KiB");
    assert_eq!(state_line(&ring), "state:       running");
    let o = run(&["suspend", &ring], b"");
    assert_eq!(
        stdout(&o),
        format!("{ring}: suspend requested; the producer has not acknowledged it yet\n")
    );
    assert_eq!(
        state_line(&ring),
        "state:       suspend requested, not yet acknowledged by the producer"
    );
    let o = run(&["suspend", &ring], b"");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!("{ring}: suspend already requested; the producer has not acknowledged it yet\n")
    );
    // A producer attaching acknowledges and exits 69.
    assert_eq!(code(&run(&["produce", &ring], b"x\n")), 69);
    assert_eq!(state_line(&ring), "state:       suspended");
    let o = run(&["resume", &ring], b"");
    assert_eq!(
        stdout(&o),
        format!("{ring}: resume requested; the producer has not acknowledged it yet\n")
    );
    assert_eq!(
        state_line(&ring),
        "state:       resume requested, not yet acknowledged by the producer"
    );
    let o = run(&["resume", &ring], b"");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!("{ring}: resume already requested; the producer has not acknowledged it yet\n")
    );
    let o = run(&["resume", &ring, "--wait", "--timeout", "200ms"], b"");
    assert_error(&o, 75, &ring, "did not acknowledge the resume request in time; it stays requested (state: resume requested)");
    // The opposite request must wait for the acknowledgement.
    let o = run(&["suspend", &ring], b"");
    assert_error(&o, 75, &ring, "cannot suspend yet");
    let v: serde_json::Value =
        serde_json::from_slice(&run(&["diagnostics", &ring, "--json"], b"").stdout).unwrap();
    assert_eq!(v["state"], "resume requested");
    // The next producer acknowledges the resume and pushes.
    let o = run(&["produce", &ring], b"more\n");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(state_line(&ring), "state:       running");
    assert_eq!(stdout(&run(&["consume", &ring], b"")), "more\n");
}
