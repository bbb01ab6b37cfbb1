//! Decoding of everything the format module reads from a device: state
//! sectors, the signature sector, the state text, item headers, and the
//! geometry arithmetic they are checked with. Nothing may panic, and every
//! accepted value must satisfy the invariants the rest of the library
//! relies on.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shared_block_ring::format::{
    check_item, check_positions, check_signature, decode_state, encode_state, state_text, Geometry,
};
use shared_block_ring::{layout, Position, Side};

#[derive(Debug, Arbitrary)]
struct Input {
    sector: Vec<u8>,
    sector_size_shift: u8,
    sectors: u64,
    position: u64,
    header: [u8; 4],
    producer: u64,
    consumer: u64,
    run_start: u64,
    run_count: u64,
}

fuzz_target!(|input: Input| {
    // A state or signature sector is at least 512 bytes; pad or cut.
    let mut sector = input.sector.clone();
    sector.resize(layout::MIN_SECTOR_SIZE, 0);
    // Decoding allocates at most an error's copy of a few bytes.
    fuzz_support::with_memory_bound(16 * 1024, || check(&input, &sector));
});

fn check(input: &Input, sector: &[u8]) {
    let _ = check_signature(sector);
    let text = state_text(sector);
    assert!(text.len() <= layout::TEXT_MAX && !text.contains(&0));
    for side in [Side::Producer, Side::Consumer] {
        if let Ok(state) = decode_state(side, sector) {
            assert_eq!(state.position % layout::ITEM_ALIGN, 0);
            assert!(state.position <= Position::MAX.offset());
            // What decodes re-encodes to the same position and flag bytes.
            let mut again = vec![0u8; layout::MIN_SECTOR_SIZE];
            encode_state(side, state, None, &mut again);
            assert_eq!(again[..9], sector[..9]);
            assert_eq!(decode_state(side, &again), Ok(state));
        }
    }

    let ss = 512usize << (input.sector_size_shift % 9); // up to 128 KiB: some invalid
    let Ok(g) = Geometry::new(ss, input.sectors) else {
        return;
    };
    assert!(g.capacity() >= ss as u64);
    let (sector_no, byte) = g.locate(input.position);
    assert!((layout::FIRST_DATA_SECTOR..g.sectors()).contains(&sector_no) && byte < ss);
    let count = input.run_count % (g.data_sectors() + 2);
    let runs: Vec<(u64, u64)> = g.runs(input.run_start, count).iter().collect();
    assert_eq!(runs.iter().map(|r| r.1).sum::<u64>(), count);
    for (first, n) in runs {
        assert!(first >= layout::FIRST_DATA_SECTOR && first + n <= g.sectors());
    }

    if check_positions(input.producer, input.consumer, g.capacity()).is_ok() {
        assert!(input.consumer <= input.producer);
        assert!(input.producer - input.consumer <= g.capacity());
    }
    if let Ok((len, next)) = check_item(&g, input.position, input.header, input.producer) {
        // An accepted item lies wholly before the producer position.
        assert!(input.position + layout::ITEM_HEADER_LEN + len as u64 <= input.producer);
        assert_eq!(next, input.position + layout::item_stream_len(len as u64));
        assert_eq!(len as u32, u32::from_le_bytes(input.header));
    }
}
