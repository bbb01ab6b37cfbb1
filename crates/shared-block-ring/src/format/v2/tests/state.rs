//! The state sectors (1 and 2) and their owner.

use super::*;

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
