//! Byte-exact and rejection tests of the format-2 codec. The pinned
//! checksums were computed by an independent bitwise CRC32C (Castagnoli,
//! reflected polynomial 0x82F63B78), not by the crate under test.

use super::*;
use crate::error::{Corruption, Error, RecordProblem, Side, SignatureProblem};
use crate::format::{Geometry, Label};
use crate::layout::v2 as l;
use std::time::Duration;

const RID: RingId = RingId([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);

fn geom() -> Geometry {
    Geometry::new(512, 64).unwrap()
}

fn header() -> Header {
    Header {
        sector_size: 512,
        sectors: 64,
        ring_id: RID,
        created: 0x0102_0304_0506_0708,
        lease_ms: 30_000,
        flags: 0,
    }
}

fn encoded_header() -> Vec<u8> {
    let mut s = vec![0xaa; 512];
    encode_header(&header(), &mut s);
    s
}

/// Rewrites the checksum of a 512-byte block after a test changed a field,
/// so the field's own check is what fails.
fn reseal(s: &mut [u8]) {
    let crc = crc32c::crc32c(&s[..508]);
    s[508..512].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn the_crc_is_crc32c_castagnoli() {
    assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
}

#[test]
fn header_sector_is_byte_exact() {
    let s = encoded_header();
    let mut expected = vec![0u8; 512];
    expected[..26].copy_from_slice(b"shared-block-ring format 2");
    expected[32..36].copy_from_slice(&2u32.to_le_bytes());
    expected[36..40].copy_from_slice(&512u32.to_le_bytes());
    expected[40..48].copy_from_slice(&64u64.to_le_bytes());
    expected[48..64].copy_from_slice(&RID.0);
    expected[64..72].copy_from_slice(&[8, 7, 6, 5, 4, 3, 2, 1]);
    expected[72..76].copy_from_slice(&30_000u32.to_le_bytes());
    expected[508..512].copy_from_slice(&0xf9ce_5bafu32.to_le_bytes());
    assert_eq!(s, expected);
    assert_eq!(decode_header(&s).unwrap(), header());
}

#[test]
fn a_larger_sector_keeps_the_header_in_its_first_512_bytes() {
    let mut s = vec![0xaa; 4096];
    let h = Header {
        sector_size: 4096,
        ..header()
    };
    encode_header(&h, &mut s);
    assert!(s[512..].iter().all(|&b| b == 0));
    assert_eq!(decode_header(&s).unwrap(), h);
    // Bytes past 512 are ignored on read.
    s[4000] = 1;
    assert_eq!(decode_header(&s).unwrap(), h);
    // Read with 512-byte sectors, the first 512 bytes are the header.
    assert_eq!(decode_header(&s[..512]).unwrap(), h);
}

#[test]
fn every_flipped_header_bit_is_detected() {
    let good = encoded_header();
    for bit in 0..512 * 8 {
        let mut s = good.clone();
        s[bit / 8] ^= 1 << (bit % 8);
        match decode_header(&s) {
            // A flip in the magic: not a format-2 ring at all.
            Err(Error::NotInitialised(_)) => assert!(bit / 8 < 32, "bit {bit}"),
            Err(Error::Corrupt(Corruption::BadChecksum {
                sector: 0,
                byte: 508,
                expected,
                found,
            })) => assert_ne!(expected, found),
            other => panic!("bit {bit}: {other:?}"),
        }
    }
}

#[test]
fn header_checks_name_the_field() {
    let field_error = |at: usize, value: &[u8]| {
        let mut s = encoded_header();
        s[at..at + value.len()].copy_from_slice(value);
        reseal(&mut s);
        decode_header(&s).unwrap_err()
    };
    assert!(matches!(
        field_error(32, &3u32.to_le_bytes()),
        Error::UnsupportedFormat {
            version: 3,
            flags: 0
        }
    ));
    let e = field_error(76, &1u32.to_le_bytes());
    assert!(
        matches!(
            e,
            Error::UnsupportedFormat {
                version: 2,
                flags: 1
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("newer version"), "{e}");
    for (at, value, byte) in [
        (36, 1000u32.to_le_bytes().to_vec(), 36),
        (36, 256u32.to_le_bytes().to_vec(), 36),
        (36, (128u32 << 10).to_le_bytes().to_vec(), 36),
        (40, 3u64.to_le_bytes().to_vec(), 40),
        (72, 0u32.to_le_bytes().to_vec(), 72),
    ] {
        let e = field_error(at, &value);
        assert!(
            matches!(e, Error::Corrupt(Corruption::BadField { sector: 0, byte: b, .. }) if b == byte),
            "{e}"
        );
    }
    // A device size whose bytes overflow a u64 is an impossible sector size
    // or count, not a panic.
    let e = field_error(40, &u64::MAX.to_le_bytes());
    assert!(
        matches!(e, Error::Corrupt(Corruption::BadField { .. })),
        "{e}"
    );
}

#[test]
fn the_device_must_match_the_header() {
    let h = header();
    assert!(h.check_device(512, 64).is_ok());
    let e = h.check_device(4096, 8).unwrap_err();
    assert!(
        matches!(
            e,
            Error::WrongSectorSize {
                ring: 512,
                device: 4096
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("--sector-size 512"), "{e}");
    let e = h.check_device(512, 128).unwrap_err();
    assert!(
        matches!(
            e,
            Error::WrongDeviceSize {
                ring: 64,
                device: 128,
                sector_size: 512
            }
        ),
        "{e}"
    );
}

#[test]
fn detection_tells_the_formats_blank_and_foreign_apart() {
    let g = geom();
    let mut f1 = vec![0u8; 512];
    crate::format::encode_signature(&mut f1);
    assert_eq!(detect(&f1, &g).unwrap(), Detected::Format1);
    assert_eq!(
        detect(&[0; 512], &g).unwrap(),
        Detected::NotARing(SignatureProblem::Blank)
    );
    let mut elf = vec![0u8; 512];
    elf[..4].copy_from_slice(b"\x7fELF");
    assert!(matches!(
        detect(&elf, &g).unwrap(),
        Detected::NotARing(SignatureProblem::Foreign { found }) if found.len() == 32
    ));
    assert_eq!(
        detect(&encoded_header(), &g).unwrap(),
        Detected::Format2(header())
    );
    // Opened with 4096-byte sectors: the header is found, and refused.
    let g4k = Geometry::new(4096, 8).unwrap();
    let mut big = vec![0u8; 4096];
    big[..512].copy_from_slice(&encoded_header());
    assert!(matches!(
        detect(&big, &g4k),
        Err(Error::WrongSectorSize {
            ring: 512,
            device: 4096
        })
    ));
    let mut torn = encoded_header();
    torn[100] = 1;
    assert!(matches!(
        detect(&torn, &g),
        Err(Error::Corrupt(Corruption::BadChecksum { byte: 508, .. }))
    ));
}

#[test]
fn short_buffers_are_rejected_without_panicking() {
    for n in [0, 1, 31, 32, 100, 511] {
        let s = &encoded_header()[..n];
        assert!(decode_header(s).is_err(), "{n}");
        let _ = detect(s, &geom());
        let mut st = vec![0u8; 512];
        encode_state(Side::Producer, &RID, &State::EMPTY, None, &mut st);
        assert!(decode_state(Side::Producer, &RID, &st[..n]).is_err(), "{n}");
        let mut out = vec![0u8; n];
        encode_state(Side::Producer, &RID, &State::EMPTY, None, &mut out);
        assert!(out.iter().all(|&b| b == 0));
        assert_eq!(state_text(&st[..n]), b"");
    }
}

fn owner() -> Owner {
    Owner {
        token: Token([0xaa; 16]),
        boot_id: BootId([0xbb; 16]),
        pid: 4242,
        pid_namespace: 4_026_531_836,
        host: HostName::new(b"node-1"),
    }
}

fn producer_state() -> State {
    State {
        position: 4096,
        flag: false,
        generation: 7,
        durable: 2048,
        heartbeat: 0x1122_3344_5566_7788,
        owner: owner(),
        epoch: 0x0a0b_0c0d,
    }
}

#[test]
fn producer_sector_is_byte_exact() {
    let mut s = vec![0xcc; 512];
    encode_state(Side::Producer, &RID, &producer_state(), None, &mut s);
    let mut expected = vec![0u8; 512];
    expected[0..8].copy_from_slice(&4096u64.to_le_bytes());
    expected[8] = 2;
    expected[9] = 1;
    expected[16..32].copy_from_slice(&RID.0);
    expected[32..40].copy_from_slice(&7u64.to_le_bytes());
    expected[40..48].copy_from_slice(&2048u64.to_le_bytes());
    expected[48..56].copy_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
    expected[56..72].copy_from_slice(&[0xaa; 16]);
    expected[72..88].copy_from_slice(&[0xbb; 16]);
    expected[88..92].copy_from_slice(&4242u32.to_le_bytes());
    expected[92..96].copy_from_slice(&4_026_531_836u32.to_le_bytes());
    expected[96..102].copy_from_slice(b"node-1");
    expected[160..168].copy_from_slice(&0x0a0b_0c0du64.to_le_bytes());
    expected[508..512].copy_from_slice(&0x5f4e_8befu32.to_le_bytes());
    assert_eq!(s, expected);
    assert_eq!(
        decode_state(Side::Producer, &RID, &s).unwrap(),
        producer_state()
    );
}

#[test]
fn consumer_sector_has_its_tag_text_and_no_durable_or_epoch() {
    let mut s = vec![0u8; 4096];
    let st = State {
        position: 1024,
        flag: true,
        durable: 512, // ignored: the consumer writes zero
        ..producer_state()
    };
    let label = Label {
        queue: "q",
        client: "c",
    };
    encode_state(Side::Consumer, &RID, &st, Some(label), &mut s);
    assert_eq!((s[8], s[9]), (1, 2));
    assert_eq!(&s[40..48], &[0; 8]);
    assert_eq!(&s[160..168], &[0; 8]);
    assert!(s[512..].iter().all(|&b| b == 0));
    assert_eq!(
        state_text(&s),
        b"q used by c; consumer = 1024; suspend = true"
    );
    let back = decode_state(Side::Consumer, &RID, &s).unwrap();
    assert_eq!(
        back,
        State {
            durable: 0,
            epoch: 0,
            ..st
        }
    );
}

#[test]
fn text_and_host_name_are_truncated() {
    let mut s = vec![0u8; 512];
    let long = "q".repeat(1000);
    let label = Label {
        queue: &long,
        client: "c",
    };
    let mut st = producer_state();
    // 63 ASCII bytes then a two-byte character: cut before it.
    let host = format!("{}é", "h".repeat(63));
    st.owner.host = HostName::new(host.as_bytes());
    assert_eq!(st.owner.host.as_bytes(), "h".repeat(63).as_bytes());
    encode_state(Side::Producer, &RID, &st, Some(label), &mut s);
    assert_eq!(state_text(&s).len(), 252);
    assert_eq!(decode_state(Side::Producer, &RID, &s).unwrap(), st);
    // Not UTF-8: cut at 64 bytes; shown escaped.
    let raw = HostName::new(&[0xff; 100]);
    assert_eq!(raw.as_bytes().len(), 64);
    assert!(raw.to_string().starts_with("\\xff"));
    assert_eq!(HostName::new(b"ab\0cd").as_bytes(), b"ab");
    assert_eq!(owner().to_string(), "node-1 (pid 4242)");
    assert_eq!(Owner::NONE.to_string(), "an unnamed host (pid 0)");
}

#[test]
fn every_flipped_state_bit_is_detected() {
    let mut good = vec![0u8; 512];
    let label = Label {
        queue: "q",
        client: "c",
    };
    encode_state(
        Side::Producer,
        &RID,
        &producer_state(),
        Some(label),
        &mut good,
    );
    for bit in 0..512 * 8 {
        let mut s = good.clone();
        s[bit / 8] ^= 1 << (bit % 8);
        assert!(
            matches!(
                decode_state(Side::Producer, &RID, &s),
                Err(Corruption::BadChecksum {
                    sector: 1,
                    byte: 508,
                    ..
                })
            ),
            "bit {bit}"
        );
    }
}

#[test]
fn misdirected_and_foreign_state_sectors_are_detected() {
    let mut s = vec![0u8; 512];
    encode_state(Side::Producer, &RID, &producer_state(), None, &mut s);
    // The producer's sector read as the consumer's (written to sector 2).
    let e = decode_state(Side::Consumer, &RID, &s).unwrap_err();
    assert_eq!(
        e,
        Corruption::WrongSectorTag {
            sector: 2,
            byte: 9,
            found: 1
        }
    );
    // Another ring's sector.
    let other = RingId([0x55; 16]);
    let e = decode_state(Side::Producer, &other, &s).unwrap_err();
    assert_eq!(
        e,
        Corruption::WrongRing {
            sector: 1,
            byte: 16,
            expected: other.0,
            found: RID.0
        }
    );
    // A header misdirected onto a state sector fails the tag check.
    assert!(decode_state(Side::Producer, &RID, &encoded_header()).is_err());
    // A format-1 state sector fails the checksum.
    let mut f1 = vec![0u8; 512];
    crate::format::encode_state(
        Side::Producer,
        crate::format::State {
            position: 0,
            flag: false,
        },
        None,
        &mut f1,
    );
    assert!(matches!(
        decode_state(Side::Producer, &RID, &f1),
        Err(Corruption::BadChecksum { .. })
    ));
}

#[test]
fn state_field_checks_name_sector_and_byte() {
    let check = |side: Side, at: usize, value: &[u8]| {
        let mut s = vec![0u8; 512];
        encode_state(side, &RID, &producer_state(), None, &mut s);
        s[at..at + value.len()].copy_from_slice(value);
        reseal(&mut s);
        decode_state(side, &RID, &s).unwrap_err()
    };
    assert_eq!(
        check(Side::Producer, 8, &[0]),
        Corruption::BadFlag {
            side: Side::Producer,
            value: 0
        }
    );
    let e = check(Side::Producer, 0, &4100u64.to_le_bytes());
    assert!(
        matches!(
            e,
            Corruption::BadField {
                sector: 1,
                byte: 0,
                found: 4100,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("multiple of 8"), "{e}");
    let e = check(Side::Producer, 40, &2052u64.to_le_bytes());
    assert!(
        matches!(
            e,
            Corruption::BadField {
                byte: 40,
                found: 2052,
                ..
            }
        ),
        "{e}"
    );
    let e = check(Side::Producer, 40, &8192u64.to_le_bytes());
    assert!(
        e.to_string().contains("at most the producer position 4096"),
        "{e}"
    );
    let e = check(Side::Consumer, 40, &16u64.to_le_bytes());
    assert!(
        matches!(
            e,
            Corruption::BadField {
                sector: 2,
                byte: 40,
                found: 16,
                ..
            }
        ),
        "{e}"
    );
    let e = check(Side::Consumer, 0, &4u64.to_le_bytes());
    assert!(
        matches!(
            e,
            Corruption::BadField {
                sector: 2,
                byte: 0,
                ..
            }
        ),
        "{e}"
    );
    let e = check(Side::Consumer, 160, &1u64.to_le_bytes());
    assert!(
        matches!(
            e,
            Corruption::BadField {
                sector: 2,
                byte: 160,
                found: 1,
                ..
            }
        ),
        "{e}"
    );
    // A position past 2^63 - 8 (where the arithmetic keeps its headroom).
    let mut s = vec![0u8; 512];
    let high = State {
        position: (1 << 63) + 8,
        durable: 0,
        ..producer_state()
    };
    encode_state(Side::Producer, &RID, &high, None, &mut s);
    let e = decode_state(Side::Producer, &RID, &s).unwrap_err();
    assert!(
        matches!(
            e,
            Corruption::BadField {
                sector: 1,
                byte: 0,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("2^63 - 8"), "{e}");
    let top = State {
        position: l::MAX_POSITION,
        ..producer_state()
    };
    encode_state(Side::Producer, &RID, &top, None, &mut s);
    assert_eq!(decode_state(Side::Producer, &RID, &s), Ok(top));
}

#[test]
fn states_are_checked_against_each_other() {
    let p = producer_state();
    let c = State {
        position: 1024,
        ..State::EMPTY
    };
    assert!(check_states(&p, &c, 4096).is_ok());
    assert!(check_states(&p, &c, 3000).is_err());
    assert!(check_states(&c, &p, 1 << 20).is_err());
    assert_eq!(scan_start(&p, &c), 2048);
    let c = State {
        position: 3072,
        ..State::EMPTY
    };
    assert_eq!(scan_start(&p, &c), 3072);
    assert_eq!(p.next(99).generation, 8);
    assert_eq!(p.next(99).heartbeat, 99);
}

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

#[test]
fn header_new_refuses_impossible_leases() {
    let g = geom();
    assert!(matches!(
        Header::new(&g, RID, 0, Duration::ZERO),
        Err(Error::BadLease { millis: 0 })
    ));
    assert!(Header::new(&g, RID, 0, Duration::from_millis(u64::from(u32::MAX) + 1)).is_err());
    let h = Header::new(&g, RID, 5, Duration::from_secs(30)).unwrap();
    assert_eq!(h.lease(), Duration::from_secs(30));
    assert_eq!((h.sector_size, h.sectors, h.flags), (512, 64, 0));
}
