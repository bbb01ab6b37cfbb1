//! The records: encoding, checking, the epoch rule, size bounds.

use super::*;

#[test]
fn record_header_is_byte_exact() {
    let h = encode_record_header(&RID, 48, 9, b"hello").unwrap();
    let mut expected = [0u8; 24];
    expected[0..4].copy_from_slice(&5u32.to_le_bytes());
    expected[4..8].copy_from_slice(&0x3e10_e509u32.to_le_bytes());
    expected[8..16].copy_from_slice(&48u64.to_le_bytes());
    expected[16..24].copy_from_slice(&9u64.to_le_bytes());
    assert_eq!(h, expected);
    assert_eq!(
        decode_record_header(&h),
        RecordHeader {
            len: 5,
            checksum: 0x3e10_e509,
            position: 48,
            epoch: 9
        }
    );
    let mut out = [0xeeu8; 40];
    assert_eq!(encode_record(&RID, 48, 9, b"hello", &mut out).unwrap(), 32);
    assert_eq!(&out[..24], &expected);
    assert_eq!(&out[24..29], b"hello");
    assert_eq!(&out[29..32], &[0; 3]);
    assert_eq!(&out[32..], &[0xee; 8]);
    assert!(matches!(
        encode_record(&RID, 48, 9, b"hello", &mut [0u8; 31]),
        Err(Error::TooLarge { needed: 32, .. })
    ));
}

const EPOCH: u64 = 5;

/// A stream of records from `start`, as a ring writes them (epoch
/// [`EPOCH`]).
fn stream(start: u64, payloads: &[&[u8]]) -> (Vec<u8>, Vec<u64>) {
    stream_of(start, EPOCH, payloads)
}

fn stream_of(start: u64, epoch: u64, payloads: &[&[u8]]) -> (Vec<u8>, Vec<u64>) {
    let mut bytes = Vec::new();
    let mut ends = Vec::new();
    let mut at = start;
    for p in payloads {
        let mut rec = vec![0u8; l::record_stream_len(p.len() as u64) as usize];
        encode_record(&RID, at, epoch, p, &mut rec).unwrap();
        bytes.extend_from_slice(&rec);
        at += rec.len() as u64;
        ends.push(at);
    }
    (bytes, ends)
}

/// Records up to `end`, all of epoch [`EPOCH`] from `start` on.
fn published(start: u64, end: u64) -> Published {
    Published {
        end,
        epoch: EPOCH,
        current_from: start,
    }
}

#[test]
fn valid_records_check_and_chain() {
    let g = geom();
    let start = 3 * g.capacity() + 96;
    let (bytes, ends) = stream(start, &[b"", b"a", &[7; 300]]);
    let end = start + bytes.len() as u64;
    let mut at = start;
    for want in ends {
        let off = (at - start) as usize;
        let span = check_record(&g, &RID, at, &bytes[off..], &published(start, end)).unwrap();
        assert_eq!(span.next, want);
        assert_eq!(span.payload_start(), at + 24);
        assert_eq!(span.epoch, EPOCH);
        at = span.next;
    }
    assert_eq!(at, end);
}

#[test]
fn bad_records_name_what_was_expected_and_found() {
    let g = geom();
    let cap = g.capacity();
    let at = cap + 512 + 32; // sector 3 + 1, byte 32
    let (bytes, _) = stream(at, &[&[9; 100]]);
    let end = at + bytes.len() as u64;
    let (sector, byte) = (4, 32);
    let problem = |bytes: &[u8], ring: &RingId, published: Published| match check_record(
        &g, ring, at, bytes, &published,
    ) {
        Err(Corruption::BadRecord {
            sector: s,
            byte: b,
            position,
            problem,
        }) => {
            assert_eq!((s, b, position), (sector, byte, at));
            problem
        }
        other => panic!("{other:?}"),
    };
    let all = published(at, end);
    // A stale record from one lap earlier (same bytes at p - C).
    let (stale, _) = stream(at - cap, &[&[9; 100]]);
    assert_eq!(
        problem(&stale, &RID, all),
        RecordProblem::Stale {
            expected: at,
            found: at - cap,
            laps: 1
        }
    );
    // A misdirected sector: a record of another position.
    let (moved, _) = stream(at + 512, &[&[9; 100]]);
    assert_eq!(
        problem(&moved, &RID, all),
        RecordProblem::Position {
            expected: at,
            found: at + 512
        }
    );
    // A length past the published end: checked before anything is sized.
    let mut long = bytes.clone();
    long[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        problem(&long, &RID, all),
        RecordProblem::Length {
            len: u32::MAX,
            available: end - at
        }
    );
    // One byte short of the published end.
    assert_eq!(
        problem(&bytes, &RID, published(at, at + 123)),
        RecordProblem::Length {
            len: 100,
            available: 123
        }
    );
    // A flipped payload bit (a torn or damaged record).
    let mut flipped = bytes.clone();
    flipped[60] ^= 0x10;
    assert!(matches!(
        problem(&flipped, &RID, all),
        RecordProblem::Checksum { expected, found } if expected != found
    ));
    // A record of another ring.
    assert!(matches!(
        problem(&bytes, &RingId([1; 16]), all),
        RecordProblem::Checksum { .. }
    ));
    // Fewer bytes than published: nothing outside them is read.
    assert!(matches!(
        problem(&bytes[..50], &RID, all),
        RecordProblem::Length {
            len: 100,
            available: 50
        }
    ));
    assert!(matches!(
        problem(&bytes[..3], &RID, all),
        RecordProblem::Length { .. }
    ));
    // A header cut by the end (16 of its 24 bytes published).
    assert!(matches!(
        problem(&bytes, &RID, published(at, at + 16)),
        RecordProblem::Length { available: 16, .. }
    ));
    assert!(matches!(
        problem(&[], &RID, all),
        RecordProblem::Length { .. }
    ));
    // An end before the record.
    assert!(matches!(
        problem(&bytes, &RID, published(at, at - 16)),
        RecordProblem::Length { available: 0, .. }
    ));
}

#[test]
fn the_epoch_rule_is_exact_from_the_durable_position_and_at_most_before() {
    let g = geom();
    let at = 1024;
    let (old, _) = stream_of(at, EPOCH - 1, &[b"an earlier producer's"]);
    let (new, _) = stream_of(at, EPOCH + 1, &[b"a later producer's"]);
    let (ours, _) = stream(at, &[b"ours"]);
    let end = at + 64;
    // At or after `current_from`: only the sector's own epoch.
    let exact = published(at, end);
    assert!(check_record(&g, &RID, at, &ours, &exact).is_ok());
    for (bytes, found) in [(&old, EPOCH - 1), (&new, EPOCH + 1)] {
        let e = check_record(&g, &RID, at, bytes, &exact).unwrap_err();
        assert_eq!(
            e,
            Corruption::BadRecord {
                sector: 5,
                byte: 0,
                position: at,
                problem: RecordProblem::Epoch {
                    expected: EPOCH,
                    found
                }
            }
        );
    }
    // Before it: an earlier epoch is fine (flushed by an earlier
    // producer), a later one is not.
    let before = published(at + 8, end);
    assert!(check_record(&g, &RID, at, &ours, &before).is_ok());
    assert_eq!(
        check_record(&g, &RID, at, &old, &before).unwrap().epoch,
        EPOCH - 1
    );
    assert!(matches!(
        check_record(&g, &RID, at, &new, &before),
        Err(Corruption::BadRecord {
            problem: RecordProblem::Epoch { found, .. },
            ..
        }) if found == EPOCH + 1
    ));
    // The epoch is checksummed: a flipped epoch bit is a checksum problem.
    let mut flipped = ours.clone();
    flipped[16] ^= 1;
    assert!(matches!(
        check_record(&g, &RID, at, &flipped, &exact),
        Err(Corruption::BadRecord {
            problem: RecordProblem::Checksum { .. },
            ..
        })
    ));
    assert_eq!(
        Published::by(
            &State {
                position: 800,
                durable: 96,
                epoch: 3,
                ..State::EMPTY
            },
            64
        ),
        Published {
            end: 800,
            epoch: 3,
            current_from: 96
        }
    );
}

#[test]
fn every_flipped_record_bit_is_detected() {
    let g = geom();
    let at = 1024;
    let (bytes, _) = stream(at, &[b"a payload of some length"]);
    let end = at + bytes.len() as u64;
    let payload_end = 24 + 24;
    for bit in 0..payload_end * 8 {
        let mut b = bytes.clone();
        b[bit / 8] ^= 1 << (bit % 8);
        assert!(
            check_record(&g, &RID, at, &b, &published(at, end)).is_err(),
            "bit {bit} went unnoticed"
        );
    }
}

#[test]
fn record_sizes_are_bounded_by_the_capacity_and_the_field() {
    let g = Geometry::new(512, 4).unwrap(); // capacity 512
    assert_eq!(max_record_len(&g), 488);
    assert_eq!(record_len_fits(&g, 488).unwrap(), 512);
    assert!(matches!(
        record_len_fits(&g, 489),
        Err(Error::TooLarge {
            needed: 513,
            capacity: 512
        })
    ));
    let big = Geometry::new(65536, 1 << 20).unwrap();
    assert_eq!(max_record_len(&big), u64::from(u32::MAX));
    assert!(record_len_fits(&big, u32::MAX as usize + 1).is_err());
}
