//! Decoding of everything format 2 reads from a device: the header sector
//! (and format detection), both state sectors, record headers and whole
//! records. Nothing may panic or allocate by a length it read, and every
//! accepted value must satisfy the invariants the rest of the library
//! relies on.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shared_block_ring::format::v2::{
    check_record, check_record_header, decode_header, decode_state, detect, encode_header,
    encode_state, Published, RingId,
};
use shared_block_ring::format::Geometry;
use shared_block_ring::{layout, Side};

#[derive(Debug, Arbitrary)]
struct Input {
    sector: Vec<u8>,
    ring_id: [u8; 16],
    sector_size_shift: u8,
    sectors: u64,
    at: u64,
    end: u64,
    epoch: u64,
    current_from: u64,
    record: Vec<u8>,
}

fuzz_target!(|input: Input| {
    // Decoding allocates at most an error's copy of a few bytes.
    fuzz_support::with_memory_bound(16 * 1024, || check(&input));
});

fn check(input: &Input) {
    let sector = &input.sector[..];
    let ss = 512usize << (input.sector_size_shift % 9); // up to 128 KiB: some invalid
    let geometry = Geometry::new(ss, input.sectors).ok();
    if let Ok(h) = decode_header(sector) {
        assert_eq!(h.flags, layout::v2::KNOWN_FLAGS);
        assert!(h.lease_ms > 0);
        let g = h.geometry().expect("a decoded header has a valid geometry");
        // What decodes re-encodes to the same header.
        let mut again = vec![0u8; layout::v2::HEADER_LEN];
        encode_header(&h, &mut again);
        assert_eq!(decode_header(&again).ok(), Some(h));
        assert!(detect(&again, &g).is_ok());
    }
    if let Some(g) = &geometry {
        let _ = detect(sector, g);
    }
    let rid = RingId(input.ring_id);
    for side in [Side::Producer, Side::Consumer] {
        if let Ok(state) = decode_state(side, &rid, sector) {
            assert_eq!(state.position % layout::v2::RECORD_ALIGN, 0);
            assert!(state.position <= layout::v2::MAX_POSITION);
            match side {
                Side::Producer => assert!(state.durable <= state.position),
                Side::Consumer => assert_eq!((state.durable, state.epoch), (0, 0)),
            }
            let mut again = vec![0u8; layout::v2::HEADER_LEN];
            encode_state(side, &rid, &state, None, &mut again);
            assert_eq!(decode_state(side, &rid, &again), Ok(state));
        }
    }
    let Some(g) = geometry else { return };
    let hl = layout::v2::RECORD_HEADER_LEN;
    let mut header = [0u8; layout::v2::RECORD_HEADER_LEN as usize];
    let n = input.record.len().min(header.len());
    header[..n].copy_from_slice(&input.record[..n]);
    if let Ok(span) = check_record_header(&g, input.at, &header, input.end) {
        // An accepted header lies wholly before the end.
        assert_eq!(span.position, input.at);
        assert!(hl + u64::from(span.len) <= input.end - input.at);
        assert_eq!(
            span.next,
            input.at + layout::v2::record_stream_len(u64::from(span.len))
        );
    }
    let published = Published {
        end: input.end,
        epoch: input.epoch,
        current_from: input.current_from,
    };
    if let Ok(span) = check_record(&g, &rid, input.at, &input.record, &published) {
        assert!(hl as usize + span.len as usize <= input.record.len());
        assert!(span.next > input.at);
        // The epoch rule held.
        if input.at >= input.current_from {
            assert_eq!(span.epoch, input.epoch);
        } else {
            assert!(span.epoch <= input.epoch);
        }
    }
}
