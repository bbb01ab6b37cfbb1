use super::*;

#[test]
fn duplicated_errors_keep_their_kind_and_message() {
    let e = Error::io(
        IoOp::Write,
        7,
        io::Error::new(io::ErrorKind::TimedOut, "slow disk"),
    );
    let d = e.duplicate();
    assert_eq!(d.to_string(), e.to_string());
    assert!(
        matches!(d, Error::Io { op: IoOp::Write, sector: 7, ref source } if source.kind() == io::ErrorKind::TimedOut)
    );
    assert!(matches!(Error::ShutDown.duplicate(), Error::ShutDown));
}

/// One of each error format 2 added.
fn format2_errors() -> Vec<Error> {
    let owner = String::from("host-a (pid 42)");
    vec![
        Error::UnsupportedFormat {
            version: 3,
            flags: 0,
        },
        Error::WrongSectorSize {
            ring: 4096,
            device: 512,
        },
        Error::WrongDeviceSize {
            ring: 100,
            device: 200,
            sector_size: 512,
        },
        Error::WrongFormat {
            found: 1,
            expected: 2,
        },
        Error::BadLease { millis: 0 },
        Error::NoRandomness {
            source: io::Error::other("no entropy"),
        },
        Error::Owned {
            side: Side::Producer,
            owner: owner.clone(),
            last_seen: HeartbeatAge::Ago(std::time::Duration::from_millis(3_000)),
        },
        Error::LeaseExpired {
            side: Side::Consumer,
            owner: owner.clone(),
            last_seen: HeartbeatAge::Ago(std::time::Duration::from_secs(40)),
            lease: std::time::Duration::from_secs(30),
        },
        Error::Displaced {
            side: Side::Producer,
            by: owner,
            at: 1_700_000_000_123_456_789,
        },
    ]
}

#[test]
fn format2_errors_are_faults_and_duplicate_exactly() {
    for e in format2_errors() {
        assert!(
            !e.is_transient() && !e.is_retry() && !e.is_suspended(),
            "{e}"
        );
        assert!(!e.is_io(), "{e}");
        assert_eq!(e.duplicate().to_string(), e.to_string());
    }
    let ownership: Vec<bool> = format2_errors().iter().map(Error::is_ownership).collect();
    assert_eq!(
        ownership,
        [false, false, false, false, false, false, true, true, true]
    );
    assert!(!Error::ShutDown.is_ownership());
}

#[test]
fn format2_errors_name_what_was_expected_and_found() {
    let text: Vec<String> = format2_errors().iter().map(Error::to_string).collect();
    assert!(
        text[0].contains("version 3") && text[0].contains("newer"),
        "{}",
        text[0]
    );
    assert!(
        text[1].contains("4096-byte")
            && text[1].contains("512-byte")
            && text[1].contains("--sector-size 4096"),
        "{}",
        text[1]
    );
    assert!(
        text[2].contains("100 sectors") && text[2].contains("200 sectors"),
        "{}",
        text[2]
    );
    assert!(
        text[6].contains("producer")
            && text[6].contains("host-a (pid 42)")
            && text[6].contains("3.0 s ago"),
        "{}",
        text[6]
    );
    assert!(
        text[7].contains("--take-over")
            && text[7].contains("40.0 s ago")
            && text[7].contains("30.0 s"),
        "{}",
        text[7]
    );
    assert!(
        text[8].contains("1700000000.123") && text[8].contains("writes nothing more"),
        "{}",
        text[8]
    );
}

#[test]
fn format2_corruptions_name_sector_byte_expected_and_found() {
    let c = Corruption::BadChecksum {
        sector: 0,
        byte: 508,
        expected: 0xdead_beef,
        found: 0x0000_0001,
    };
    assert_eq!(
        c.to_string(),
        "sector 0 bytes 508..512: the CRC32C is 0x00000001, but bytes 0..508 give 0xdeadbeef \
         (a torn or damaged sector)"
    );
    let c = Corruption::WrongRing {
        sector: 1,
        byte: 16,
        expected: [0x11; 16],
        found: [0xab; 16],
    };
    let s = c.to_string();
    assert!(
        s.starts_with("sector 1 bytes 16..32: ring id abababab"),
        "{s}"
    );
    assert!(s.contains(&"11".repeat(16)), "{s}");
    let c = Corruption::BadRecord {
        sector: 5,
        byte: 48,
        position: 1072,
        problem: RecordProblem::Stale {
            expected: 1072,
            found: 48,
            laps: 1,
        },
    };
    let s = c.to_string();
    assert!(
        s.starts_with("sector 5 byte 48: the record at position 1072"),
        "{s}"
    );
    assert!(
        s.contains("holds 48, expected 1072") && s.contains("1 lap"),
        "{s}"
    );
    let s = RecordProblem::Length {
        len: 1000,
        available: 64,
    }
    .to_string();
    assert!(
        s.contains("length 1000") && s.contains("24 + 1000") && s.contains("at most 40"),
        "{s}"
    );
    let s = RecordProblem::Checksum {
        expected: 1,
        found: 2,
    }
    .to_string();
    assert!(s.contains("0x00000002") && s.contains("0x00000001"), "{s}");
    let s = RecordProblem::Epoch {
        expected: 3,
        found: 2,
    }
    .to_string();
    assert!(
        s.contains("epoch is 2, expected 3") && s.contains("earlier producer"),
        "{s}"
    );
    let s = RecordProblem::Epoch {
        expected: 3,
        found: 4,
    }
    .to_string();
    assert!(s.contains("newer") && s.contains("at most 3"), "{s}");
}

#[test]
fn heartbeat_ages_cover_past_future_and_never() {
    use std::time::Duration;
    assert_eq!(HeartbeatAge::between(0, 5), HeartbeatAge::Never);
    assert_eq!(
        HeartbeatAge::between(1_000, 3_000),
        HeartbeatAge::Ago(Duration::from_nanos(2_000))
    );
    assert_eq!(
        HeartbeatAge::between(5_000, 3_000),
        HeartbeatAge::InFuture(Duration::from_nanos(2_000))
    );
    assert_eq!(
        HeartbeatAge::between(u64::MAX, 0),
        HeartbeatAge::InFuture(Duration::from_nanos(u64::MAX))
    );
    assert!(HeartbeatAge::InFuture(Duration::from_secs(2))
        .to_string()
        .contains("clocks disagree"));
}
