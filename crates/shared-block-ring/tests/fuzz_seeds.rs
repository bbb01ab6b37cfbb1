//! The committed seeds of the format-2 fuzz targets `scan2` and `attach2`
//! (`fuzz/seeds/scan2`, `fuzz/seeds/attach2`: the same images), built here
//! from the codec so that they follow the layout:
//! `committed_scan2_seeds_are_current` fails when a layout change leaves
//! them stale, and
//! `WRITE_FUZZ_SEEDS=1 cargo test --test fuzz_seeds` rewrites
//! them.
//!
//! An input of either target is a device image whose length modulo 4 picks
//! the sector size (512 << n) and whose last byte modulo 3 picks how much
//! of it the target makes valid first (0: nothing). Each seed is an image of
//! whole sectors followed by a few bytes that set both: the target cuts
//! them off.

use std::path::PathBuf;
use std::time::Duration;

use shared_block_ring::format::v2::{
    encode_header, encode_record, encode_state, Header, RingId, State,
};
use shared_block_ring::format::Geometry;
use shared_block_ring::layout::v2 as l;
use shared_block_ring::Side;

const RID: RingId = RingId([0x5e; 16]);

/// A format-2 image being built.
struct Image {
    g: Geometry,
    bytes: Vec<u8>,
}

impl Image {
    fn new(ss: usize, sectors: u64) -> Image {
        let g = Geometry::new(ss, sectors).unwrap();
        let mut bytes = vec![0u8; ss * sectors as usize];
        let h = Header::new(&g, RID, 1_700_000_000_000_000_000, Duration::from_secs(30)).unwrap();
        encode_header(&h, &mut bytes[..ss]);
        Image { g, bytes }
    }

    fn write(&mut self, at: u64, data: &[u8]) {
        let ss = self.g.sector_size();
        for (i, &b) in data.iter().enumerate() {
            let (sector, byte) = self.g.locate(at + i as u64);
            self.bytes[sector as usize * ss + byte] = b;
        }
    }

    /// Records of `lens` bytes from `at`, written by the producer of
    /// `epoch`; returns the position after each.
    fn records(&mut self, epoch: u64, mut at: u64, lens: &[usize]) -> Vec<u64> {
        let mut ends = Vec::new();
        for (i, &len) in lens.iter().enumerate() {
            let payload: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8).collect();
            let mut rec = vec![0u8; l::record_stream_len(len as u64) as usize];
            encode_record(&RID, at, epoch, &payload, &mut rec).unwrap();
            self.write(at, &rec);
            at += rec.len() as u64;
            ends.push(at);
        }
        ends
    }

    fn states(&mut self, p: u64, durable: u64, epoch: u64, c: u64) {
        let ss = self.g.sector_size();
        let producer = State {
            position: p,
            durable,
            epoch,
            generation: 3,
            ..State::EMPTY
        };
        let consumer = State {
            position: c,
            generation: 2,
            ..State::EMPTY
        };
        encode_state(
            Side::Producer,
            &RID,
            &producer,
            None,
            &mut self.bytes[ss..2 * ss],
        );
        encode_state(
            Side::Consumer,
            &RID,
            &consumer,
            None,
            &mut self.bytes[2 * ss..3 * ss],
        );
    }

    /// The seed: the image, then bytes that keep its length's residue
    /// modulo 4 (the sector size) and end with `mode`.
    fn seed(mut self, mode: u8) -> Vec<u8> {
        let shift = self.g.sector_size().trailing_zeros() - 9;
        let mut tail = vec![0u8; if shift == 0 { 4 } else { shift as usize }];
        *tail.last_mut().unwrap() = mode;
        self.bytes.extend_from_slice(&tail);
        assert_eq!(self.bytes.len() % 4, shift as usize % 4);
        self.bytes
    }
}

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();

    // Records across the wrap, with headers straddling sectors; the
    // consumer mid-way, durable before the last publication.
    let mut img = Image::new(512, 12);
    let cap = img.g.capacity();
    let start = 2 * cap - 1000;
    let ends = img.records(4, start, &[0, 1, 40, 500, 7, 1300, 64, 3]);
    img.states(*ends.last().unwrap(), ends[4], 4, ends[1]);
    out.push(("valid-wrapping", img.seed(0)));

    // A multi-sector record after durable with a sector lost (a power cut
    // kept the pointer): recovery ends the records at it.
    let mut img = Image::new(512, 16);
    let ends = img.records(2, 0, &[100, 1500, 20]);
    img.states(ends[2], ends[0], 2, 0);
    let lost = img.g.physical_sector(2) as usize * 512;
    img.bytes[lost..lost + 512].fill(0);
    out.push(("torn-after-durable", img.seed(0)));

    // A damaged record before durable: corruption.
    let mut img = Image::new(512, 16);
    let ends = img.records(2, 0, &[100, 200, 20]);
    img.states(ends[2], ends[2], 2, 0);
    img.write(ends[0] + 30, b"X");
    out.push(("bad-before-durable", img.seed(0)));

    // An earlier producer's record where the new producer's was lost.
    let mut img = Image::new(512, 16);
    let old = img.records(5, 0, &[40, 40, 40]);
    let new = img.records(6, 0, &[40]);
    assert_eq!(old[0], new[0]);
    img.states(old[2], 0, 6, 0);
    out.push(("old-epoch-after-durable", img.seed(0)));

    // A 4 KiB-sector ring, made valid by the target (mode 1).
    let mut img = Image::new(4096, 8);
    let ends = img.records(1, 4096, &[10, 5000, 0]);
    img.states(ends[2], 4096, 1, 4096);
    out.push(("valid-4k", img.seed(1)));

    // Records whose checksums the target re-seals (mode 2), some headers
    // straddling sectors.
    let mut img = Image::new(512, 8);
    let ends = img.records(3, 496, &[40, 40, 40, 40, 40, 40, 40, 40]);
    img.states(*ends.last().unwrap(), 496, 3, 496);
    out.push(("resealed-straddling", img.seed(2)));
    out
}

fn dirs() -> [PathBuf; 2] {
    let seeds = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds");
    [seeds.join("scan2"), seeds.join("attach2")]
}

/// The seeds show what their names say.
#[test]
fn the_seeds_are_what_they_say() {
    use shared_block_ring::{inspect, ring2, Corruption, MemDevice, RecordProblem};
    let image = |name: &str| {
        let (_, bytes) = seeds().into_iter().find(|(n, _)| *n == name).unwrap();
        MemDevice::from_bytes(512, bytes[..bytes.len() / 512 * 512].to_vec())
    };
    let r = ring2::recover(&image("valid-wrapping")).unwrap();
    assert!(r.scan.is_complete() && r.scan.records == 3, "{:?}", r.scan);
    let r = ring2::recover(&image("torn-after-durable")).unwrap();
    assert!(r.pointer_ahead_of_records());
    let d = image("bad-before-durable");
    assert!(ring2::recover(&d).unwrap().scan.is_complete());
    assert!(matches!(
        inspect::v2::inspect(&d, 8, 8).unwrap().item_error,
        Some(Corruption::BadRecord {
            problem: RecordProblem::Checksum { .. },
            ..
        })
    ));
    let r = ring2::recover(&image("old-epoch-after-durable")).unwrap();
    assert!(matches!(
        r.scan.problem,
        Some(Corruption::BadRecord {
            problem: RecordProblem::Epoch {
                expected: 6,
                found: 5
            },
            ..
        })
    ));
}

/// With `WRITE_FUZZ_SEEDS=1` this rewrites the committed seeds instead of
/// comparing them (a variable rather than an ignored test, so that the
/// suite has no test it silently skips).
#[test]
fn committed_scan2_seeds_are_current() {
    let write = std::env::var_os("WRITE_FUZZ_SEEDS").is_some_and(|v| v == "1");
    for (name, bytes) in seeds() {
        for dir in dirs() {
            let path = dir.join(name);
            if write {
                std::fs::write(&path, &bytes).unwrap();
                continue;
            }
            let committed = std::fs::read(&path).unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (run with WRITE_FUZZ_SEEDS=1 to write it)",
                    path.display()
                )
            });
            assert!(
                committed == bytes,
                "{} is stale: run `WRITE_FUZZ_SEEDS=1 cargo test -p shared-block-ring --test fuzz_seeds`",
                path.display()
            );
        }
    }
}
