//! The bad-input table of RELIABILITY.md, tested: each bad device gives
//! its own error, and the table quotes that error's text exactly (this test
//! fails if the table and the library drift apart).

mod common;

use common::two_items;

use shared_block_ring::device::{FaultDevice, FaultOp};
use shared_block_ring::{
    create, Consumer, Error, FileDevice, FileOptions, MemDevice, Options, Position, Producer,
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
