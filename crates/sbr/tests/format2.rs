//! `sbr` on format-2 rings: create (and what it refuses), produce and
//! consume, diagnostics (text and JSON: format, ring id, owners and their
//! heartbeats, every problem with its location), the options that only
//! format 2 has, and the demo.

mod common;

use common::{code, dir, run, stderr, stdout};

fn ring2(d: &std::path::Path, name: &str) -> String {
    let path = d.join(name).display().to_string();
    let o = run(
        &[
            "create", &path, "--size", "64KiB", "--format", "2", "--lease", "5s",
        ],
        b"",
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with(&format!(
            "created a format-2 ring on {path}: capacity 64000 bytes"
        )) && stdout(&o).contains("owner lease 5s"),
        "{}",
        stdout(&o)
    );
    path
}

#[test]
fn create_keeps_a_ring_format_and_refuses_the_other() {
    let d = dir();
    let r = ring2(d.path(), "r2.img");
    // Again, with or without --format 2: nothing changes.
    let before = std::fs::read(&r).unwrap();
    for args in [vec!["create", &r], vec!["create", &r, "--format", "2"]] {
        let o = run(&args, b"");
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert!(
            stdout(&o).contains("already holds a format-2 ring"),
            "{}",
            stdout(&o)
        );
    }
    assert_eq!(std::fs::read(&r).unwrap(), before);
    // The other format: refused, nothing written.
    let o = run(&["create", &r, "--format", "1"], b"");
    assert_eq!(code(&o), 1);
    assert_eq!(
        stderr(&o),
        format!("error: {r}: the device holds a format-2 ring; this operation needs format 1\n")
    );
    assert_eq!(std::fs::read(&r).unwrap(), before);
    let r1 = common::new_ring(d.path(), "r1.img", "64KiB");
    let o = run(&["create", &r1, "--format", "2"], b"");
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("holds a format-1 ring; this operation needs format 2"));
    // --lease is format 2's.
    let o = run(&["create", &r1, "--lease", "5s"], b"");
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("--lease applies to format 2 only"));
    let o = run(&["create", &r1, "--format", "3"], b"");
    assert_eq!(code(&o), 2);
}

#[test]
fn items_go_through_and_diagnostics_shows_owners_and_records() {
    let d = dir();
    let r = ring2(d.path(), "r.img");
    let o = run(
        &["produce", &r, "--queue", "q", "--client", "c"],
        b"alpha\nbeta\n",
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = run(&["diagnostics", &r], b"");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = stdout(&o);
    for want in [
        "format:      2",
        "ring id:     ",
        "lease:       5s",
        "producer:    position 64, durable 0, epoch 1",
        "owner none (free), last seen ",
        "producer text: \"q used by c; producer = 64; suspend_ack = false\"",
        "recovery:    the records from 0 to 64 are valid",
        "  at 0 (next 32), 5 bytes: \"alpha\"",
        "verdict:     healthy",
    ] {
        assert!(text.contains(want), "{want:?} in:\n{text}");
    }
    let j: serde_json::Value =
        serde_json::from_slice(&run(&["diagnostics", &r, "--json"], b"").stdout).unwrap();
    assert_eq!(j["format"], 2);
    assert_eq!(j["ring_id"].as_str().unwrap().len(), 32);
    assert_eq!(j["header"]["lease_ms"], 5000);
    assert_eq!(j["producer"]["epoch"], 1);
    assert!(j["producer"]["last_seen_seconds"].as_f64().unwrap() < 60.0);
    assert_eq!(j["pending_items"], 2);
    assert_eq!(j["healthy"], true);
    let o = run(&["consume", &r], b"");
    assert_eq!(stdout(&o), "alpha\nbeta\n");
}

#[test]
fn a_damaged_record_is_reported_with_its_location_and_not_delivered() {
    let d = dir();
    let r = ring2(d.path(), "r.img");
    // Two publications: the first record is before `durable`.
    run(&["produce", &r], b"first\n");
    run(&["produce", &r], b"second\n");
    let mut bytes = std::fs::read(&r).unwrap();
    bytes[3 * 512 + 24] ^= 1; // the first record's payload
    std::fs::write(&r, &bytes).unwrap();
    let o = run(&["diagnostics", &r], b"");
    assert_eq!(code(&o), 1);
    let text = stdout(&o);
    assert!(
        text.contains("INVALID: sector 3 byte 0: the record at position 0 is invalid: its CRC32C"),
        "{text}"
    );
    assert!(text.contains("this is corruption"), "{text}");
    assert!(
        stderr(&o).starts_with(&format!(
            "error: {r}: sector 3 byte 0: the record at position 0"
        )),
        "{}",
        stderr(&o)
    );
    let j: serde_json::Value =
        serde_json::from_slice(&run(&["diagnostics", &r, "--json"], b"").stdout).unwrap();
    assert_eq!(j["invalid_record"]["location"]["sector"], 3);
    assert_eq!(j["invalid_record"]["location"]["byte"], 0);
    assert_eq!(j["invalid_record"]["location"]["position"], 0);
    assert_eq!(j["healthy"], false);
    // The consumer stops at it, delivering nothing.
    let o = run(&["consume", &r], b"");
    assert_eq!(code(&o), 1);
    assert_eq!(stdout(&o), "");
    assert!(stderr(&o).contains("CRC32C"), "{}", stderr(&o));
    // A damaged state sector: named too.
    bytes[512 + 100] ^= 1;
    std::fs::write(&r, &bytes).unwrap();
    let o = run(&["diagnostics", &r], b"");
    assert!(
        stdout(&o).contains("producer:    INVALID: sector 1 bytes 508..512: the CRC32C is"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn take_over_is_accepted_and_watch_works_on_format_2() {
    let d = dir();
    let r = ring2(d.path(), "r.img");
    let o = run(&["produce", &r, "--take-over"], b"x\n");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = run(
        &[
            "consume",
            &r,
            "--take-over",
            "--follow",
            "--idle-timeout",
            "100ms",
        ],
        b"",
    );
    assert_eq!(stdout(&o), "x\n");
    let o = run(&["suspend", &r, "--take-over"], b"");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = run(&["diagnostics", &r, "--watch", "10ms", "--count", "2"], b"");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 2);
    assert!(stdout(&o).contains("suspend requested"), "{}", stdout(&o));
}

#[test]
fn the_demo_runs_on_format_2() {
    let d = dir();
    let dir = d.path().display().to_string();
    let o = run(
        &[
            "demo", "--format", "2", "--items", "3000", "--size", "1MiB", "--dir", &dir,
        ],
        b"",
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("format-2 ring"), "{out}");
    assert!(
        out.contains("every item arrived once, in order, intact"),
        "{out}"
    );
}
