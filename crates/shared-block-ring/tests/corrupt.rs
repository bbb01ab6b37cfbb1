//! Every invalid state of FORMAT.md, and other bad devices, gives its own
//! clear error: never a panic, never a wild allocation.

mod common;

use common::two_items;

use shared_block_ring::{
    create, Consumer, Corruption, Error, FileDevice, FileOptions, MemDevice, Options, Position,
    Producer, Side, SignatureProblem,
};

fn attach_both(disk: &MemDevice) -> (Result<(), Error>, Result<(), Error>) {
    let c = Consumer::attach(disk.clone(), Options::new()).map(|_| ());
    let p = Producer::attach(disk.clone(), Options::new()).map(|_| ());
    (p, c)
}

fn set_u64(disk: &MemDevice, at: usize, v: u64) {
    disk.with_bytes_mut(|b| b[at..at + 8].copy_from_slice(&v.to_le_bytes()));
}

#[test]
fn blank_device_is_not_initialised() {
    let disk = MemDevice::new(512, 32);
    let (p, c) = attach_both(&disk);
    for r in [p, c] {
        let e = r.unwrap_err();
        assert!(
            matches!(e, Error::NotInitialised(SignatureProblem::Blank)),
            "{e}"
        );
        assert!(e.to_string().contains("not a shared block ring"), "{e}");
    }
}

#[test]
fn foreign_signature_is_named() {
    let disk = two_items();
    disk.with_bytes_mut(|b| b[..6].copy_from_slice(b"\x7fELF\x1b["));
    let e = Consumer::attach(disk, Options::new()).unwrap_err();
    assert!(
        matches!(e, Error::NotInitialised(SignatureProblem::Foreign { .. })),
        "{e}"
    );
    // The bytes found are shown escaped: no raw escape character.
    assert!(e.to_string().contains("\\x7fELF\\x1b["), "{e}");
}

#[test]
fn bad_flag_bytes_name_sector_byte_and_value() {
    for (sector, side) in [(1usize, Side::Producer), (2, Side::Consumer)] {
        for value in [0u8, 3, 7] {
            let disk = two_items();
            disk.with_bytes_mut(|b| b[sector * 512 + 8] = value);
            let (p, c) = attach_both(&disk);
            for r in [p, c] {
                let e = r.unwrap_err();
                assert!(
                    matches!(e, Error::Corrupt(Corruption::BadFlag { side: s, value: v }) if s == side && v == value),
                    "{e}"
                );
                let text = e.to_string();
                assert!(
                    text.contains(&format!("sector {sector} byte 8"))
                        && text.contains(&format!("is {value}")),
                    "{text}"
                );
            }
        }
    }
}

#[test]
fn consumer_ahead_of_producer() {
    let disk = two_items();
    set_u64(&disk, 1024, 100);
    let (p, c) = attach_both(&disk);
    for r in [p, c] {
        assert!(matches!(
            r.unwrap_err(),
            Error::Corrupt(Corruption::ConsumerAheadOfProducer {
                consumer: 100,
                producer: 24
            })
        ));
    }
}

#[test]
fn used_beyond_capacity() {
    let disk = two_items();
    set_u64(&disk, 512, 14848 + 4);
    let (p, c) = attach_both(&disk);
    for r in [p, c] {
        assert!(matches!(
            r.unwrap_err(),
            Error::Corrupt(Corruption::UsedExceedsCapacity {
                used: 14852,
                capacity: 14848
            })
        ));
    }
}

#[test]
fn unaligned_positions() {
    let disk = two_items();
    set_u64(&disk, 512, 22);
    let e = Consumer::attach(disk, Options::new()).unwrap_err();
    assert!(matches!(
        e,
        Error::Corrupt(Corruption::UnalignedPosition {
            side: Side::Producer,
            position: 22
        })
    ));
}

#[test]
fn item_length_past_the_producer() {
    for len in [9u32, 100, 14848, u32::MAX] {
        let disk = two_items();
        // The second item ("world", at 12) claims more bytes than exist.
        disk.with_bytes_mut(|b| b[3 * 512 + 12..3 * 512 + 16].copy_from_slice(&len.to_le_bytes()));
        let mut c = Consumer::attach(disk, Options::new()).unwrap();
        let (next, first) = c.pop().unwrap();
        assert_eq!(first, b"hello");
        let e = c.pop_from(next).unwrap_err();
        match &e {
            Error::Corrupt(Corruption::ItemPastProducer {
                position: 12,
                len: l,
                producer: 24,
                sector: 3,
                byte: 12,
            }) => assert_eq!(*l, len),
            other => panic!("{other}"),
        }
        assert!(e.to_string().contains("sector 3 byte 12"), "{e}");
        // fold reports the same, after delivering nothing wrong.
        assert!(matches!(
            c.fold(Position::ZERO, 0, |n, _| n + 1),
            Err(Error::Corrupt(Corruption::ItemPastProducer { .. }))
        ));
    }
}

#[test]
fn start_positions_outside_the_readable_range() {
    let disk = two_items();
    let mut c = Consumer::attach(disk, Options::new()).unwrap();
    let (next, _) = c.pop().unwrap();
    c.advance(next).unwrap();
    for bad in [0u64, 28, 1000] {
        let e = c.pop_from(Position::new(bad)).unwrap_err();
        assert!(
            matches!(e, Error::PositionOutOfRange { position, consumer: 12, producer: 24 } if position == bad),
            "{e}"
        );
    }
    assert!(matches!(
        c.pop_from(Position::new(13)),
        Err(Error::InvalidPosition { .. })
    ));
    assert!(matches!(
        c.advance(Position::new(4)),
        Err(Error::PositionOutOfRange { .. })
    ));
}

#[test]
fn a_too_small_device_is_refused_with_the_original_message() {
    let disk = MemDevice::new(512, 3);
    let e = create(&disk).unwrap_err();
    assert!(matches!(e, Error::TooSmall { sectors: 3, .. }), "{e}");
    assert!(
        e.to_string().contains("the minimum size is 4 sectors"),
        "{e}"
    );
    let file = common::ring_file(1536);
    let e = create(&FileDevice::open(file.path()).unwrap()).unwrap_err();
    assert!(matches!(e, Error::TooSmall { .. }), "{e}");
}

#[test]
fn an_item_larger_than_the_ring_is_permanent() {
    let disk = MemDevice::new(512, 4);
    create(&disk).unwrap();
    let mut p = Producer::attach(disk, Options::new()).unwrap();
    let e = p.push(&[0u8; 509]).unwrap_err();
    assert!(!e.is_transient());
    assert!(
        e.to_string()
            .contains("the ring is too small for a message of size 513 bytes"),
        "{e}"
    );
    assert!(p.push(&[0u8; 508]).is_ok());
}

#[test]
fn a_wrong_sector_size_is_caught_by_validation() {
    // A ring made with 512-byte sectors, opened as 4096-byte sectors: the
    // "producer sector" is then data sector 5, whose flag byte is zero.
    let file = common::ring_file(64 * 1024);
    create(&FileDevice::open(file.path()).unwrap()).unwrap();
    let disk = FileDevice::open_with(file.path(), &FileOptions::new().sector_size(4096)).unwrap();
    let e = Consumer::attach(disk, Options::new()).unwrap_err();
    assert!(
        matches!(e, Error::Corrupt(Corruption::BadFlag { value: 0, .. })),
        "{e}"
    );
    assert!(e.to_string().contains("sector size is wrong"), "{e}");
    let e = FileDevice::open_with(file.path(), &FileOptions::new().sector_size(1000))
        .err()
        .unwrap();
    assert!(
        matches!(e, Error::BadSectorSize { sector_size: 1000 }),
        "{e}"
    );
}

#[test]
fn a_read_only_device_refuses_both_roles_but_not_reads() {
    let file = common::ring_file(16384);
    create(&FileDevice::open(file.path()).unwrap()).unwrap();
    let ro = || FileDevice::open_with(file.path(), &FileOptions::new().read_only(true)).unwrap();
    assert!(matches!(
        Producer::attach(ro(), Options::new()),
        Err(Error::ReadOnly)
    ));
    assert!(matches!(
        Consumer::attach(ro(), Options::new()),
        Err(Error::ReadOnly)
    ));
    // create on an initialised read-only device changes nothing: fine.
    assert!(create(&ro()).is_ok());
}

#[test]
fn a_truncated_file_is_too_small_or_out_of_range() {
    let file = common::ring_file(16384);
    create(&FileDevice::open(file.path()).unwrap()).unwrap();
    let mut p = Producer::attach(FileDevice::open(file.path()).unwrap(), Options::new()).unwrap();
    let end = p.push(&[1u8; 3000]).unwrap();
    p.advance(end).unwrap();
    p.detach();
    // Cut the file to 3 sectors: too small.
    file.as_file().set_len(1536).unwrap();
    let e = Consumer::attach(FileDevice::open(file.path()).unwrap(), Options::new()).unwrap_err();
    assert!(matches!(e, Error::TooSmall { .. }), "{e}");
    // Cut it to 5 sectors: the positions now exceed the capacity.
    file.as_file().set_len(2560).unwrap();
    let e = Consumer::attach(FileDevice::open(file.path()).unwrap(), Options::new()).unwrap_err();
    assert!(
        matches!(e, Error::Corrupt(Corruption::UsedExceedsCapacity { .. })),
        "{e}"
    );
}

/// A fresh empty ring with both positions set to `producer` and `consumer`.
fn ring_at(producer: u64, consumer: u64) -> MemDevice {
    let disk = MemDevice::new(512, 32);
    create(&disk).unwrap();
    set_u64(&disk, 512, producer);
    set_u64(&disk, 1024, consumer);
    disk
}

/// Regression test (issue 15, item 4): positions near the top of the u64
/// range, from a hostile or corrupt image, are refused at attach, naming
/// the side and the value. They used to be accepted: with both at
/// `u64::MAX - 3` a push panicked on overflow in a debug build, and in a
/// release build acknowledged an item the consumer never saw; with the
/// consumer 100 bytes behind, the consumer's read-ahead overflowed.
#[test]
fn positions_past_the_maximum_are_refused_at_attach() {
    let max = Position::MAX.offset();
    assert_eq!(max, (1 << 63) - 4);
    for (producer, consumer, side, bad) in [
        (u64::MAX - 3, u64::MAX - 3, Side::Producer, u64::MAX - 3),
        (u64::MAX - 3, u64::MAX - 103, Side::Producer, u64::MAX - 3),
        (max + 4, max - 96, Side::Producer, max + 4),
        (max + 4, max + 4, Side::Producer, max + 4),
        (max, max + 4, Side::Consumer, max + 4),
        (100, 1 << 63, Side::Consumer, 1 << 63),
    ] {
        let disk = ring_at(producer, consumer);
        let (p, c) = attach_both(&disk);
        for r in [p, c] {
            let e = r.unwrap_err();
            assert!(
                matches!(e, Error::Corrupt(Corruption::PositionTooLarge { side: s, position })
                    if s == side && position == bad),
                "producer {producer}, consumer {consumer}: {e}"
            );
        }
    }
    // The error names the sector, the side and both values.
    let e = Consumer::attach(ring_at(u64::MAX - 3, 0), Options::new()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the ring is corrupt: sector 1 bytes 0..8: the producer position 18446744073709551612 \
         is past the largest valid position 9223372036854775804 (2^63 - 4)"
    );
}

/// A ring whose stream reaches `Position::MAX` works up to it exactly;
/// then a push fails with `Error::PositionLimit`, pushes nothing, and the
/// items before it are still delivered.
#[test]
fn the_stream_works_up_to_the_maximum_position_and_refuses_to_pass_it() {
    let max = Position::MAX.offset();
    // Mid-sector, so the item crosses a sector boundary.
    let start = max - 16;
    let disk = ring_at(start, start);
    let mut p = Producer::attach(disk.clone(), Options::new()).unwrap();
    let mut c = Consumer::attach(disk.clone(), Options::new()).unwrap();
    let a = p.push(b"abcd").unwrap();
    assert_eq!(a.offset(), max - 8);
    let end = p.push(b"efg").unwrap();
    assert_eq!(end, Position::MAX);
    p.advance(end).unwrap();
    for what in [&b""[..], b"x"] {
        let e = p.push(what).unwrap_err();
        assert!(
            matches!(e, Error::PositionLimit { end } if end == max + 4 + 4 * what.len() as u64),
            "{e}"
        );
        assert!(!e.is_transient());
    }
    assert!(matches!(
        p.push_many([&b"y"[..], b"z"]),
        Err(Error::PositionLimit { .. })
    ));
    assert_eq!(
        p.push(b"x").unwrap_err().to_string(),
        "cannot push: the stream would end at position 9223372036854775812, past the largest \
         position the format allows (9223372036854775804); drain the ring, then erase and \
         create it anew"
    );
    assert_eq!((p.tail(), p.published()), (end, end));
    p.advance(end).unwrap();
    assert_eq!(c.pop().unwrap(), (a, b"abcd".to_vec()));
    assert_eq!(c.pop_from(a).unwrap(), (end, b"efg".to_vec()));
    assert!(c.pop_from(end).unwrap_err().is_retry());
    c.advance(end).unwrap();
    drop((p, c));
    // Both sides attach to the drained ring at the maximum.
    let (p, c) = attach_both(&disk);
    p.unwrap();
    c.unwrap();
}

#[test]
fn errors_are_distinct_variants() {
    // One representative of each, to guard against two failures sharing a
    // message: every Display text differs.
    let errors: Vec<Error> = vec![
        Error::NotInitialised(SignatureProblem::Blank),
        Corruption::BadFlag {
            side: Side::Producer,
            value: 0,
        }
        .into(),
        Corruption::ConsumerAheadOfProducer {
            consumer: 8,
            producer: 4,
        }
        .into(),
        Corruption::UsedExceedsCapacity {
            used: 8,
            capacity: 4,
        }
        .into(),
        Corruption::ItemPastProducer {
            position: 0,
            len: 9,
            producer: 8,
            sector: 3,
            byte: 0,
        }
        .into(),
        Error::PositionOutOfRange {
            position: 12,
            consumer: 0,
            producer: 8,
        },
        Error::TooSmall {
            sectors: 3,
            sector_size: 512,
        },
        Error::TooLarge {
            needed: 600,
            capacity: 512,
        },
        Corruption::PositionTooLarge {
            side: Side::Producer,
            position: u64::MAX - 3,
        }
        .into(),
        Error::PositionLimit { end: 1 << 63 },
    ];
    let texts: std::collections::HashSet<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(texts.len(), errors.len());
    assert!(errors.iter().all(|e| !e.is_transient()));
}
