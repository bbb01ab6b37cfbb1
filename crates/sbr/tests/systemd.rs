//! `docs/sbr-consumer.service` works: its `ExecStart` line, with the ring
//! and the command replaced by test ones, hands every item to the command
//! once, and stops cleanly (exit 0, nothing lost, nothing handed over
//! twice) on SIGTERM as systemd sends it, even with items still coming.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The unit file's `ExecStart` value, split into words as systemd does
/// for this line (spaces, and single quotes around one word).
fn exec_start() -> Vec<String> {
    let unit = include_str!("../../../docs/sbr-consumer.service");
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("the unit has an ExecStart line");
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for ch in line.chars() {
        match ch {
            '\'' => quoted = !quoted,
            ' ' if !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    assert!(!quoted, "unbalanced quote in ExecStart");
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// Lines in `path` (0 if it does not exist yet).
fn lines_in(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|s| s.lines().map(String::from).collect())
        .unwrap_or_default()
}

#[test]
fn the_example_unit_consumes_every_item_once_and_stops_cleanly_on_sigterm() {
    let d = dir();
    let ring = new_ring(d.path(), "jobs.img", "64KiB");
    let handled = d.path().join("handled.txt");
    let handler = d.path().join("handle-job");
    std::fs::write(
        &handler,
        format!("#!/bin/sh\ncat >> '{}'\n", handled.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&handler, std::fs::Permissions::from_mode(0o755)).unwrap();

    let words = exec_start();
    assert_eq!(words[0], "/usr/local/bin/sbr", "{words:?}");
    let args: Vec<String> = words[1..]
        .iter()
        .map(|w| match w.as_str() {
            "/var/lib/sbr/jobs.img" => ring.clone(),
            "/usr/local/bin/handle-job" => handler.display().to_string(),
            "%H" => "test-host".to_string(),
            other => other.to_string(),
        })
        .collect();
    assert!(args.iter().any(|a| a == "--follow"), "{args:?}");

    let mut service = Command::new(SBR)
        .args(&args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // A first batch, all handled while the service runs.
    let first: Vec<String> = (0..50).map(|i| format!("job {i}")).collect();
    let o = run(&["produce", &ring], (first.join("\n") + "\n").as_bytes());
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let deadline = Instant::now() + Duration::from_secs(30);
    while lines_in(&handled).len() < first.len() {
        assert!(
            Instant::now() < deadline,
            "the service handled {} of {} items in 30 s",
            lines_in(&handled).len(),
            first.len()
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    // More items arrive while systemd stops the service.
    let second: Vec<String> = (50..2050).map(|i| format!("job {i}")).collect();
    let producer = {
        let ring = ring.clone();
        let input = second.join("\n") + "\n";
        std::thread::spawn(move || run(&["produce", &ring], input.as_bytes()))
    };
    std::thread::sleep(Duration::from_millis(20));
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(service.id() as i32, libc::SIGTERM) };
    let status = wait_timeout(
        &mut service,
        Duration::from_secs(30),
        "the service after SIGTERM",
    );
    let p = join_within(producer, Duration::from_secs(60), "sbr produce");
    assert_eq!(code(&p), 0, "{}", stderr(&p));
    let mut err = String::new();
    std::io::Read::read_to_string(service.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(
        status.success(),
        "the service exited with {status:?} (signal {:?}) on SIGTERM: {err}",
        status.signal()
    );

    // What the service released was handled exactly once; what it did not
    // is still in the ring, and a restart hands over the rest.
    let o = run(&["consume", &ring], b"");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let mut all = lines_in(&handled);
    let done = all.len();
    all.extend(stdout(&o).lines().map(String::from));
    let expected: Vec<String> = first.iter().chain(&second).cloned().collect();
    assert_eq!(
        all, expected,
        "items handled by the service ({done}) then left in the ring differ from the input"
    );
}
