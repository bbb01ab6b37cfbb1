//! Recovery scans of hand-built images: every way a record can be wrong
//! after a power cut or a misbehaving device, found at the right place.

use super::*;
use crate::error::RecordProblem;
use crate::format::v2::{encode_header, encode_record, encode_state, Owner};

const RID: RingId = RingId([0x42; 16]);
/// The producer epoch of the images' producer sector and records.
const EPOCH: u64 = 7;

/// A format-2 ring image in memory, written through the codec.
struct Image {
    g: Geometry,
    bytes: Vec<u8>,
}

impl Image {
    fn new(ss: usize, sectors: u64) -> Image {
        let g = Geometry::new(ss, sectors).unwrap();
        let mut img = Image {
            g,
            bytes: vec![0; ss * sectors as usize],
        };
        let h = Header::new(&g, RID, 1, std::time::Duration::from_secs(30)).unwrap();
        encode_header(&h, &mut img.bytes[..ss]);
        img.states(0, 0, 0);
        img
    }

    fn ss(&self) -> usize {
        self.g.sector_size()
    }

    fn states(&mut self, p: u64, durable: u64, c: u64) {
        let ss = self.ss();
        let producer = State {
            position: p,
            durable,
            owner: Owner::NONE,
            epoch: EPOCH,
            ..State::EMPTY
        };
        let consumer = State {
            position: c,
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

    /// Writes stream bytes at `at`, wrapping.
    fn write(&mut self, at: u64, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            let (sector, byte) = self.g.locate(at + i as u64);
            let ss = self.ss();
            self.bytes[sector as usize * ss + byte] = b;
        }
    }

    /// Writes the record of `payload` at `at` for ring `ring`, written by
    /// the producer of epoch `epoch`; returns the next position.
    fn record_of(&mut self, ring: &RingId, epoch: u64, at: u64, payload: &[u8]) -> u64 {
        let mut rec = vec![0u8; l::record_stream_len(payload.len() as u64) as usize];
        let n = encode_record(ring, at, epoch, payload, &mut rec).unwrap();
        self.write(at, &rec);
        at + n
    }

    fn record(&mut self, at: u64, payload: &[u8]) -> u64 {
        self.record_of(&RID, EPOCH, at, payload)
    }

    fn physical(&self, stream_sector: u64) -> std::ops::Range<usize> {
        let s = self.g.physical_sector(stream_sector) as usize * self.ss();
        s..s + self.ss()
    }

    /// Scans `[from, to)` with `chunk`-byte reads, checking that only the
    /// sectors holding the range are read, never more than the data area
    /// at once.
    fn scan_with(&self, from: u64, to: u64, chunk: usize) -> Scan {
        let ss = self.ss() as u64;
        let (lo, hi) = (from / ss, to.div_ceil(ss));
        let published = Published {
            end: to,
            epoch: EPOCH,
            current_from: from,
        };
        walk(
            &self.g,
            &RID,
            from,
            &published,
            chunk,
            |first, buf: &mut [u8]| {
                let count = buf.len() as u64 / ss;
                assert_eq!(buf.len() as u64 % ss, 0);
                assert!(count >= 1 && count <= self.g.data_sectors());
                assert!(
                    first >= lo && first + count <= hi,
                    "read {first}+{count} outside {lo}..{hi}"
                );
                for i in 0..count {
                    let dst = &mut buf[(i * ss) as usize..((i + 1) * ss) as usize];
                    dst.copy_from_slice(&self.bytes[self.physical(first + i)]);
                }
                Ok::<(), Error>(())
            },
            |_| {},
        )
        .unwrap()
    }

    /// The scan with several chunk sizes, which must all agree.
    fn scan(&self, from: u64, to: u64) -> Scan {
        let ss = self.ss();
        let whole = self.scan_with(from, to, SCAN_CHUNK);
        for chunk in [ss, 2 * ss, 3 * ss + 1] {
            assert_eq!(self.scan_with(from, to, chunk), whole, "chunk {chunk}");
        }
        whole
    }
}

fn problem(scan: &Scan) -> (u64, usize, u64, RecordProblem) {
    match scan.problem {
        Some(Corruption::BadRecord {
            sector,
            byte,
            position,
            problem,
        }) => (sector, byte, position, problem),
        ref other => panic!("expected a bad record, got {other:?}"),
    }
}

#[test]
fn valid_records_across_the_wrap_scan_to_the_producer_position() {
    let mut img = Image::new(512, 8); // 5 data sectors, capacity 2560
    let cap = img.g.capacity();
    let start = 2 * cap + 1024; // mid-ring, third lap
    let mut at = start;
    for (i, len) in [0usize, 1, 495, 496, 497, 700, 16].into_iter().enumerate() {
        at = img.record(at, &vec![i as u8; len]);
    }
    assert!(at - start <= cap && at > 3 * cap, "the records wrap");
    let s = img.scan(start, at);
    assert!(s.is_complete(), "{s:?}");
    assert_eq!((s.end, s.records), (at, 7));
    // An empty range is complete with nothing read.
    let s = img.scan(at, at);
    assert!(s.is_complete() && s.records == 0);
}

#[test]
fn a_torn_record_ends_the_valid_run_at_its_start() {
    let mut img = Image::new(512, 16);
    let a = img.record(0, b"first");
    let b = img.record(a, &[7; 1200]); // spans sectors 3..6
    let c = img.record(b, b"after");
    // The record's middle sector never reached the disk.
    let mid = img.physical(1);
    img.bytes[mid].fill(0);
    let s = img.scan(0, c);
    assert_eq!((s.end, s.records), (a, 1));
    let (sector, byte, position, p) = problem(&s);
    assert_eq!((sector, byte, position), (3, a as usize, a));
    assert!(matches!(p, RecordProblem::Checksum { expected, found } if expected != found));
    // Its last sector only: the same.
    let mut img2 = Image::new(512, 16);
    let a = img2.record(0, b"first");
    let b = img2.record(a, &[7; 1200]);
    let last = img2.physical((b - 1) / 512);
    img2.bytes[last].fill(0xee);
    let s = img2.scan(0, b);
    assert_eq!(s.end, a);
    assert!(matches!(problem(&s).3, RecordProblem::Checksum { .. }));
}

#[test]
fn a_stale_record_of_an_earlier_lap_is_named_as_such() {
    let mut img = Image::new(512, 8);
    let cap = img.g.capacity();
    // Lap 0 left a record at 512; lap 2's record at 512 + 2C was lost.
    img.record(512, b"old news");
    let p = 2 * cap + 512;
    let first = img.record(p - 32, &[1; 8]); // the record before it, valid
    assert_eq!(first, p);
    let s = img.scan(p - 32, p + 64);
    assert_eq!((s.end, s.records), (p, 1));
    let (sector, byte, position, prob) = problem(&s);
    assert_eq!((sector, byte, position), (4, 0, p));
    assert_eq!(
        prob,
        RecordProblem::Stale {
            expected: p,
            found: 512,
            laps: 2
        }
    );
}

#[test]
fn a_misdirected_sector_is_found_by_its_positions() {
    let mut img = Image::new(512, 16);
    // Records at the start of sectors 0, 1 and 2 of the stream.
    let mut ends = vec![];
    let mut at = 0;
    for i in 0..3u8 {
        at = img.record(at, &vec![i; 488]);
        ends.push(at);
    }
    assert_eq!(ends, [512, 1024, 1536]);
    // The write meant for stream sector 2 landed on stream sector 1.
    let (from, to) = (img.physical(2), img.physical(1));
    let moved = img.bytes[from].to_vec();
    img.bytes[to].copy_from_slice(&moved);
    let s = img.scan(0, 1536);
    assert_eq!((s.end, s.records), (512, 1));
    assert_eq!(
        problem(&s),
        (
            4,
            0,
            512,
            RecordProblem::Position {
                expected: 512,
                found: 1024
            }
        )
    );
}

#[test]
fn a_record_of_another_ring_fails_its_checksum() {
    let mut img = Image::new(512, 16);
    let a = img.record(0, b"ours");
    let b = img.record_of(
        &RingId([0x43; 16]),
        EPOCH,
        a,
        b"a previous ring's, same place",
    );
    let s = img.scan(0, b);
    assert_eq!(s.end, a);
    assert!(matches!(
        problem(&s),
        (3, 32, 32, RecordProblem::Checksum { .. })
    ));
}

#[test]
fn a_length_past_the_end_is_refused_before_anything_is_read_for_it() {
    let mut img = Image::new(512, 16);
    let a = img.record(0, b"ours");
    let b = img.record(a, &[3; 40]);
    // The second record claims 4 GiB; the scan reads only the range's
    // sectors (checked by the reader) and reports it.
    let mut len = [0u8; 4];
    len.copy_from_slice(&u32::MAX.to_le_bytes());
    img.write(a, &len);
    let s = img.scan(0, b);
    assert_eq!(s.end, a);
    assert_eq!(
        problem(&s).3,
        RecordProblem::Length {
            len: u32::MAX,
            available: b - a
        }
    );
    // A length that fits the ring but not the published range.
    let mut img = Image::new(512, 16);
    let a = img.record(0, &[1; 100]);
    let s = img.scan(0, a - 16);
    assert_eq!(
        problem(&s).3,
        RecordProblem::Length {
            len: 100,
            available: a - 16
        }
    );
}

#[test]
fn impossible_ranges_are_problems_and_read_nothing() {
    let img = Image::new(512, 8);
    let cap = img.g.capacity();
    for (from, to) in [(32, 16), (0, cap + 16), (4, 32), (0, 28)] {
        let s = scan(
            &img.g,
            &RID,
            from,
            to,
            EPOCH,
            |_, _: &mut [u8]| -> Result<(), Error> {
                panic!("read for an impossible range {from}..{to}")
            },
        )
        .unwrap();
        assert_eq!(s.end, from);
        assert!(s.problem.is_some(), "{from}..{to}");
    }
}

#[test]
fn read_errors_are_returned() {
    let mut img = Image::new(512, 8);
    let a = img.record(0, b"x");
    let e = scan(&img.g, &RID, 0, a, EPOCH, |_, _: &mut [u8]| {
        Err("device gone")
    })
    .unwrap_err();
    assert_eq!(e, "device gone");
}

#[test]
fn recovery_scans_from_the_later_of_consumer_and_durable() {
    let mut img = Image::new(512, 16);
    let mut ends = vec![0];
    for i in 0..6u8 {
        let at = *ends.last().unwrap();
        ends.push(img.record(at, &[i; 200]));
    }
    let p = ends[6];
    let ss = img.ss();
    let head = |img: &Image| img.bytes[..3 * ss].to_vec();
    let read = |img: &Image| {
        let g = img.g;
        let bytes = img.bytes.clone();
        move |first: u64, buf: &mut [u8]| {
            for (i, dst) in buf.chunks_mut(ss).enumerate() {
                let s = g.physical_sector(first + i as u64) as usize * ss;
                dst.copy_from_slice(&bytes[s..s + ss]);
            }
            Ok(())
        }
    };
    // Damage record 2: before durable (record 4) it is not scanned.
    let (sector, byte) = img.g.locate(ends[2] + 20);
    img.bytes[sector as usize * ss + byte] ^= 1;
    img.states(p, ends[4], ends[1]);
    let r = recover(&img.g, &head(&img), read(&img)).unwrap();
    assert_eq!((r.scan.start, r.scan.end, r.scan.records), (ends[4], p, 2));
    assert!(!r.pointer_ahead_of_records() && r.published_end() == p);
    // From the consumer position when it is later than durable.
    img.states(p, ends[1], ends[3]);
    let r = recover(&img.g, &head(&img), read(&img)).unwrap();
    assert_eq!((r.scan.start, r.scan.records), (ends[3], 3));
    // With durable before the damage, the pointer is ahead of its records.
    img.states(p, ends[1], ends[1]);
    let r = recover(&img.g, &head(&img), read(&img)).unwrap();
    assert!(r.pointer_ahead_of_records());
    assert_eq!((r.published_end(), r.scan.records), (ends[2], 1));
    assert!(matches!(
        r.scan.problem,
        Some(Corruption::BadRecord { position, .. }) if position == ends[2]
    ));
}

#[test]
fn recovery_refuses_what_is_not_a_sound_format_2_ring() {
    let mut img = Image::new(512, 16);
    let ss = img.ss();
    let no_read = |_: u64, _: &mut [u8]| -> Result<(), Error> { panic!("no scan expected") };
    // Consumer ahead of producer.
    img.states(0, 0, 32);
    assert!(matches!(
        recover(&img.g, &img.bytes[..3 * ss], no_read),
        Err(Error::Corrupt(Corruption::ConsumerAheadOfProducer { .. }))
    ));
    // A damaged producer sector.
    img.states(0, 0, 0);
    img.bytes[ss + 3] ^= 1;
    assert!(matches!(
        recover(&img.g, &img.bytes[..3 * ss], no_read),
        Err(Error::Corrupt(Corruption::BadChecksum { sector: 1, .. }))
    ));
    // A format-1 ring.
    let mut f1 = vec![0u8; 3 * ss];
    crate::format::encode_signature(&mut f1[..ss]);
    assert!(matches!(
        recover(&img.g, &f1, no_read),
        Err(Error::WrongFormat {
            found: 1,
            expected: 2
        })
    ));
    // Blank, and a head shorter than three sectors.
    assert!(matches!(
        recover(&img.g, &[0; 1536], no_read),
        Err(Error::NotInitialised(_))
    ));
    img.states(0, 0, 0);
    assert!(recover(&img.g, &img.bytes[..ss + 100], no_read).is_err());
    // Opened with another device size.
    let g2 = Geometry::new(512, 32).unwrap();
    assert!(matches!(
        recover(&g2, &img.bytes[..3 * ss], no_read),
        Err(Error::WrongDeviceSize { .. })
    ));
}

#[test]
fn headers_straddling_sectors_and_chunks_are_read_whole() {
    let mut img = Image::new(512, 8);
    let cap = img.g.capacity();
    // Records of 40 bytes (64 in the stream) from 504: every few records a
    // header crosses a sector boundary, and at the wrap the ring's end.
    let start = cap - 8;
    let mut at = start;
    let mut straddling = 0;
    for i in 0..30u8 {
        if at / 512 != (at + l::RECORD_HEADER_LEN - 1) / 512 {
            straddling += 1;
        }
        at = img.record(at, &[i; 40]);
    }
    assert!(straddling >= 3, "{straddling}");
    // Every chunk size (one sector, two, three and a byte) agrees.
    let s = img.scan(start, at);
    assert!(s.is_complete(), "{s:?}");
    assert_eq!(s.records, 30);
    // A damaged byte in the second half of a straddling header (the
    // epoch, in the next sector) is found at that record.
    let bad = cap + 504;
    let (sector, byte) = img.g.locate(bad + 20);
    img.bytes[sector as usize * 512 + byte] ^= 1;
    let s = img.scan(start, at);
    assert_eq!(s.end, bad);
    assert!(matches!(problem(&s), (_, 504, p, RecordProblem::Checksum { .. }) if p == bad));
}

#[test]
fn a_header_cut_by_the_end_of_the_range_reads_nothing_past_it() {
    let mut img = Image::new(512, 16);
    let a = img.record(0, &[1; 480]); // ends at 504
    img.record(a, b"past the end");
    // The range ends 8 bytes into the second record's header, which
    // straddles sectors 0 and 1 of the stream: sector 1 must not be read
    // (the reader checks), and the record is too short.
    let s = img.scan(0, a + 8);
    assert_eq!((s.end, s.records), (a, 1));
    assert_eq!(
        problem(&s),
        (
            3,
            504,
            a,
            RecordProblem::Length {
                len: 12,
                available: 8
            }
        )
    );
}

#[test]
fn a_record_of_an_earlier_producer_where_a_new_one_was_lost_ends_the_run() {
    // An earlier producer (epoch 6) pushed records it never published; the
    // producer of epoch 7 published records at the same places, and a power
    // cut kept its pointer and its first record but lost the second. The
    // boundaries coincide, so only the epoch tells the old record apart.
    let mut img = Image::new(512, 16);
    let a = img.record_of(&RID, EPOCH - 1, 0, b"old 0");
    img.record_of(&RID, EPOCH - 1, a, b"old 1");
    let a2 = img.record(0, b"new 0");
    assert_eq!(a, a2);
    let p = a + l::record_stream_len(5);
    let s = img.scan(0, p);
    assert_eq!((s.end, s.records), (a, 1));
    assert_eq!(
        problem(&s),
        (
            3,
            a as usize,
            a,
            RecordProblem::Epoch {
                expected: EPOCH,
                found: EPOCH - 1
            }
        )
    );
    // So recovery ends the published records there.
    let ss = img.ss();
    img.states(p, 0, 0);
    let bytes = img.bytes.clone();
    let g = img.g;
    let r = recover(&img.g, &img.bytes[..3 * ss], |first, buf: &mut [u8]| {
        for (i, dst) in buf.chunks_mut(ss).enumerate() {
            let s = g.physical_sector(first + i as u64) as usize * ss;
            dst.copy_from_slice(&bytes[s..s + ss]);
        }
        Ok(())
    })
    .unwrap();
    assert!(r.pointer_ahead_of_records());
    assert_eq!(r.published_end(), a);
}
