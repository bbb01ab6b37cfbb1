//! The header (sector 0), detection, and short buffers.

use super::*;

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
