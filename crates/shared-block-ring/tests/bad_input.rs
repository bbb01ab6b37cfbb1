//! The bad-input table of RELIABILITY.md, tested: each bad device gives
//! its own error, and the table quotes that error's text exactly (this test
//! fails if the table and the library drift apart).

mod common;

use common::two_items;

use shared_block_ring::device::{FaultDevice, FaultOp};
use shared_block_ring::{
    create, ring2, BlockDevice, Consumer, Error, FileDevice, FileOptions, MemDevice, Options,
    Position, Producer, Side,
};

const DOC: &str = include_str!("../RELIABILITY.md");

fn set(disk: &MemDevice, at: usize, bytes: &[u8]) {
    disk.with_bytes_mut(|b| b[at..at + bytes.len()].copy_from_slice(bytes));
}

fn consumer_error<D: shared_block_ring::BlockDevice>(disk: D) -> Error {
    Consumer::attach(disk, Options::new()).unwrap_err()
}

/// The error from reading the second item ("world", at position 12) after
/// its length field is set to `len`.
fn item_error(len: u32) -> Error {
    let disk = two_items();
    set(&disk, 3 * 512 + 12, &len.to_le_bytes());
    let mut c = Consumer::attach(disk, Options::new()).unwrap();
    assert_eq!(c.pop().unwrap().1, b"hello");
    c.pop_from(Position::new(12)).unwrap_err()
}

/// Every row: (what is wrong, the error the library gives).
fn rows() -> Vec<(&'static str, Error)> {
    let mut rows = Vec::new();

    rows.push(("not a ring", consumer_error(MemDevice::new(512, 32))));

    let disk = two_items();
    set(&disk, 0, b"mirage shared-block-device 2.0");
    rows.push(("foreign signature", consumer_error(disk)));

    rows.push(("too small", create(&MemDevice::new(512, 3)).unwrap_err()));

    let disk = two_items();
    set(&disk, 512 + 8, &[0]);
    rows.push(("flag byte 0", consumer_error(disk)));
    let disk = two_items();
    set(&disk, 2 * 512 + 8, &[7]);
    rows.push(("flag byte 7", consumer_error(disk)));

    let disk = two_items();
    set(&disk, 512, &22u64.to_le_bytes());
    rows.push(("unaligned position", consumer_error(disk)));

    let disk = two_items();
    set(&disk, 2 * 512, &100u64.to_le_bytes());
    rows.push(("consumer > producer", consumer_error(disk)));

    let disk = two_items();
    set(&disk, 512, &(14848u64 + 4).to_le_bytes());
    rows.push(("used beyond capacity", consumer_error(disk)));

    let disk = two_items();
    set(&disk, 512, &(u64::MAX - 3).to_le_bytes());
    rows.push(("producer position near 2^64", consumer_error(disk)));

    let disk = two_items();
    set(&disk, 2 * 512, &(1u64 << 63).to_le_bytes());
    rows.push(("consumer position past 2^63 - 4", consumer_error(disk)));

    rows.push(("item length past producer", item_error(100)));
    rows.push(("a length of 4 GiB", item_error(u32::MAX)));

    let file = common::ring_file(64 * 1024);
    create(&FileDevice::open(file.path()).unwrap()).unwrap();
    let e = FileDevice::open_with(file.path(), &FileOptions::new().sector_size(1000))
        .err()
        .unwrap();
    rows.push(("unsupported sector size", e));
    let big = FileDevice::open_with(file.path(), &FileOptions::new().sector_size(4096)).unwrap();
    rows.push(("wrong sector size", consumer_error(big)));

    let ro = FileDevice::open_with(file.path(), &FileOptions::new().read_only(true)).unwrap();
    rows.push(("read-only device", consumer_error(ro)));

    let file = common::ring_file(16384);
    create(&FileDevice::open(file.path()).unwrap()).unwrap();
    let mut p = Producer::attach(FileDevice::open(file.path()).unwrap(), Options::new()).unwrap();
    let end = p.push(&[1u8; 3000]).unwrap();
    p.advance(end).unwrap();
    p.detach();
    file.as_file().set_len(1536).unwrap();
    rows.push((
        "truncated file (to 3 sectors)",
        consumer_error(FileDevice::open(file.path()).unwrap()),
    ));
    file.as_file().set_len(2560).unwrap();
    rows.push((
        "truncated file (to 5 sectors)",
        consumer_error(FileDevice::open(file.path()).unwrap()),
    ));

    let failing = FaultDevice::new(two_items());
    failing.fail_all(FaultOp::Read);
    rows.push(("device failing reads", consumer_error(failing)));

    rows
}

#[test]
fn the_bad_input_table_quotes_every_error_exactly() {
    let rows = rows();
    assert_table_quotes(rows.iter().map(|(what, e)| (*what, e.to_string())));
}

/// Fails unless the table has a row `| what | `text` | ...` for each.
fn assert_table_quotes<'a>(rows: impl Iterator<Item = (&'a str, String)>) {
    let mut missing = Vec::new();
    for (what, text) in rows {
        let row = format!("| {what} |");
        match DOC.lines().find(|l| l.starts_with(&row)) {
            Some(l) if l.contains(&format!("`{text}`")) => {}
            _ => missing.push(format!("{row} `{text}` |")),
        }
    }
    assert!(
        missing.is_empty(),
        "RELIABILITY.md's bad-input table lacks these rows (or quotes them wrongly):\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_bad_input_is_a_distinct_non_transient_error() {
    let rows = rows();
    // Two rows are, on the device, the same thing as another row: a ring
    // read with too large a sector size shows a zero flag byte where the
    // producer sector is expected, and a file cut to 3 sectors is a device
    // too small for a ring. Every other row has its own text.
    fn same_as(what: &str) -> &str {
        match what {
            "wrong sector size" => "flag byte 0",
            "truncated file (to 3 sectors)" => "too small",
            other => other,
        }
    }
    let text_of = |what: &str| rows.iter().find(|(w, _)| *w == what).unwrap().1.to_string();
    let mut texts = std::collections::HashMap::new();
    for (what, e) in &rows {
        assert_eq!(e.to_string(), text_of(same_as(what)), "{what}");
        if let Some(other) = texts.insert(e.to_string(), same_as(what)) {
            assert_eq!(
                other,
                same_as(what),
                "{what} and {other} give the same error"
            );
        }
    }
    for (what, e) in &rows {
        assert!(!e.is_transient(), "{what}: {e}");
        // Only the failing device is worth retrying.
        assert_eq!(e.is_io(), *what == "device failing reads", "{what}: {e}");
    }
}

#[test]
fn a_device_failing_reads_fails_every_read_path_then_recovers() {
    let failing = FaultDevice::new(two_items());
    let mut c = Consumer::attach(failing.clone(), Options::new()).unwrap();
    let mut p = Producer::attach(failing.clone(), Options::new()).unwrap();
    failing.fail_all(FaultOp::Read);
    assert!(c.pop().unwrap_err().is_io());
    assert!(c.fold(Position::ZERO, 0, |n, _| n + 1).unwrap_err().is_io());
    assert!(p.state().unwrap_err().is_io());
    failing.clear_faults();
    assert_eq!(c.pop().unwrap().1, b"hello");
}

/// Paths that are neither a regular file nor a block device: refused by
/// type before anything is opened for I/O (a FIFO would otherwise block in
/// `open` until a writer came, and a directory would be misreported as a
/// filesystem without O_DIRECT). The table quotes each error with the path
/// written as PATH.
#[test]
fn other_file_types_are_named_in_the_table_and_never_block() {
    let dir = tempfile::tempdir_in(common::test_dir()).unwrap();
    let fifo = dir.path().join("ring.fifo");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
    )
    .unwrap();
    let rows = [
        ("a directory", dir.path().to_path_buf()),
        ("a FIFO (named pipe)", fifo),
        ("a character device", std::path::PathBuf::from("/dev/null")),
    ];
    let mut found = Vec::new();
    for (what, path) in rows {
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.clone();
        std::thread::spawn(move || {
            let _ = tx.send(FileDevice::open(&p).err().map(|e| e.to_string()));
        });
        let text = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("opening {what} blocked for 10 s"))
            .unwrap_or_else(|| panic!("{what} was accepted as a device"));
        found.push((what, text.replace(&path.display().to_string(), "PATH")));
    }
    assert_table_quotes(found.into_iter());
}

/// A format-2 ring written deterministically (fixed ring id, fixed state
/// sectors), holding "hello", "world" and "third" (records at 0, 32 and 64;
/// `durable` at 64), and its geometry.
fn format2_ring() -> MemDevice {
    use shared_block_ring::format::v2::{encode_header, encode_state, Header, RingId, State};
    use shared_block_ring::format::Geometry;
    let g = Geometry::new(512, 32).unwrap();
    let disk = MemDevice::new(512, 32);
    let rid = RingId([0x5a; 16]);
    let mut s = vec![0u8; 512];
    let h = Header::new(&g, rid, 1_700_000_000_000_000_000, ring2::DEFAULT_LEASE).unwrap();
    encode_header(&h, &mut s);
    disk.write(0, &s).unwrap();
    for side in [Side::Producer, Side::Consumer] {
        encode_state(side, &rid, &State::EMPTY, None, &mut s);
        disk.write(side.sector(), &s).unwrap();
    }
    let mut p = Producer::attach(disk.clone(), Options::new()).unwrap();
    p.push(b"hello").unwrap();
    let end = p.push(b"world").unwrap();
    p.advance(end).unwrap();
    let end = p.push(b"third").unwrap();
    p.advance(end).unwrap();
    drop(p);
    // The state sectors again, without the heartbeat times and tokens the
    // producer wrote: every error text below is the same in every run.
    let producer = State {
        position: 96,
        durable: 64,
        epoch: 1,
        generation: 5,
        ..State::EMPTY
    };
    encode_state(Side::Producer, &rid, &producer, None, &mut s);
    disk.write(1, &s).unwrap();
    disk
}

/// Rewrites the CRC32C of the 512-byte block at `at` after a change.
fn reseal(disk: &MemDevice, at: usize) {
    disk.with_bytes_mut(|b| {
        let crc = shared_block_ring::format::v2::checksum_append(0, &b[at..at + 508]);
        b[at + 508..at + 512].copy_from_slice(&crc.to_le_bytes());
    });
}

/// The error from reading the record at `at` of [`format2_ring`] changed
/// by `damage`.
fn record_error(at: u64, damage: impl FnOnce(&MemDevice)) -> Error {
    let disk = format2_ring();
    damage(&disk);
    let mut c = Consumer::attach(disk, Options::new()).unwrap();
    c.pop_from(Position::new(at)).unwrap_err()
}

/// Format 2's rows.
fn format2_rows() -> Vec<(&'static str, Error)> {
    use shared_block_ring::format::v2::encode_record;
    use shared_block_ring::format::v2::RingId;
    let mut rows = Vec::new();

    let disk = format2_ring();
    disk.with_bytes_mut(|b| b[100] ^= 1);
    rows.push(("format 2: header damaged", consumer_error(disk)));

    let disk = format2_ring();
    set(&disk, 32, &3u32.to_le_bytes());
    reseal(&disk, 0);
    rows.push(("format 2: a newer version", consumer_error(disk)));

    let disk = format2_ring();
    set(&disk, 40, &64u64.to_le_bytes());
    reseal(&disk, 0);
    rows.push(("format 2: a device of another size", consumer_error(disk)));

    let file = common::ring_file(64 * 1024);
    ring2::create(
        &FileDevice::open(file.path()).unwrap(),
        ring2::DEFAULT_LEASE,
    )
    .unwrap();
    let big = FileDevice::open_with(file.path(), &FileOptions::new().sector_size(4096)).unwrap();
    rows.push(("format 2: wrong sector size", consumer_error(big)));

    let disk = format2_ring();
    disk.with_bytes_mut(|b| b[512 + 100] ^= 1);
    rows.push(("format 2: state sector damaged", consumer_error(disk)));

    let disk = format2_ring();
    set(&disk, 512 + 16, &[0xa5; 16]);
    reseal(&disk, 512);
    rows.push((
        "format 2: a state sector of another ring",
        consumer_error(disk),
    ));

    let disk = format2_ring();
    disk.with_bytes_mut(|b| b.copy_within(512..1024, 1024));
    rows.push((
        "format 2: a state sector on the other's place",
        consumer_error(disk),
    ));

    rows.push((
        "format 2: a damaged record",
        record_error(32, |d| d.with_bytes_mut(|b| b[3 * 512 + 32 + 24] ^= 1)),
    ));
    rows.push((
        "format 2: a record written to the wrong place",
        record_error(32, |d| {
            // The record meant for one lap later (its position field says
            // p + C): a misdirected write. (A record of an earlier lap, p -
            // k*C, is named as stale: tests/corrupt2.rs.)
            let capacity = 29 * 512;
            let mut rec = [0u8; 32];
            encode_record(&RingId([0x5a; 16]), 32 + capacity, 1, b"world", &mut rec).unwrap();
            set(d, 3 * 512 + 32, &rec);
        }),
    ));
    rows.push((
        "format 2: a record length past the published end",
        record_error(32, |d| set(d, 3 * 512 + 32, &1000u32.to_le_bytes())),
    ));

    let v1 = two_items();
    rows.push((
        "format 2: format 1 ring given to a format-2 operation",
        ring2::create(&v1, ring2::DEFAULT_LEASE).unwrap_err(),
    ));
    rows.push((
        "format 1: format-2 ring given to a format-1 operation",
        create(&format2_ring()).unwrap_err(),
    ));
    rows
}

#[test]
fn the_bad_input_table_quotes_every_format_2_error_exactly() {
    let rows = format2_rows();
    let mut texts = std::collections::HashSet::new();
    for (what, e) in &rows {
        assert!(!e.is_transient() && !e.is_io(), "{what}: {e}");
        assert!(texts.insert(e.to_string()), "{what}: not distinct: {e}");
    }
    assert_table_quotes(rows.iter().map(|(what, e)| (*what, e.to_string())));
}
