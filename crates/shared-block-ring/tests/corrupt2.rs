//! Format 2's checks, corruption by corruption: every bit of every field of
//! the header, both state sectors and the records; each sector of each
//! multi-sector record torn back to what it held before; records replaced
//! by the stale ones of the previous lap; sectors written to the wrong
//! place; and an earlier producer's record surfacing where a new record
//! was lost. For each corrupted image the test attaches and reads
//! everything a consumer would read, and checks that the corruption is
//! detected (attach fails, or the consumer stops at the bad record, or the
//! recovery scan ends the published records there), that the error names
//! the location (sector and byte), and that nothing is delivered that was
//! not written there. The counts are printed (`--nocapture`).

use std::collections::BTreeMap;

use shared_block_ring::format::v2 as codec;
use shared_block_ring::format::Geometry;
use shared_block_ring::layout::v2 as l;
use shared_block_ring::{
    ring2, Consumer, Corruption, Error, MemDevice, Options, Position, Producer, RecordProblem, Side,
};

const SS: usize = 512;

/// A healthy ring image, what it holds, and the image before the records
/// under test were written (for torn and stale sectors).
struct Fixture {
    g: Geometry,
    image: Vec<u8>,
    before: Vec<u8>,
    /// Every published record: position -> (next, payload).
    records: BTreeMap<u64, (u64, Vec<u8>)>,
    /// The records under test, all before the producer's `durable`.
    tested: Vec<u64>,
}

/// Bytes that do not repeat from sector to sector.
fn payload(n: usize, len: usize) -> Vec<u8> {
    let mut x = (n as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A ring of `sectors` sectors that has gone round once (lap 0 consumed),
/// then holds records of `lens` (lap 1), published and made durable by one
/// more publication after them.
fn fixture(sectors: u64, lens: &[usize]) -> Fixture {
    let d = MemDevice::new(SS, sectors);
    ring2::create(&d, ring2::DEFAULT_LEASE).unwrap();
    let g = Geometry::new(SS, sectors).unwrap();
    let mut p = Producer::attach(d.clone(), Options::new()).unwrap();
    let mut c = Consumer::attach(d.clone(), Options::new()).unwrap();
    // Lap 0: records of the same sizes, consumed.
    let mut n = 1000;
    while p.tail().offset() < g.capacity() {
        let len = lens[n % lens.len()].min(g.capacity() as usize / 4);
        match p.push(&payload(n, len)) {
            Ok(_) => n += 1,
            Err(e) if e.is_retry() => break,
            Err(e) => panic!("{e}"),
        }
        p.advance(p.tail()).unwrap();
        let (end, _) = c.fold(c.position(), 0, |k, _| k + 1).unwrap();
        c.advance(end).unwrap();
    }
    let before = d.to_vec();
    let mut records = BTreeMap::new();
    let mut tested = Vec::new();
    for (i, &len) in lens.iter().enumerate() {
        let at = p.tail().offset();
        let bytes = payload(i, len);
        let next = p.push(&bytes).unwrap().offset();
        records.insert(at, (next, bytes));
        tested.push(at);
    }
    p.advance(p.tail()).unwrap();
    let at = p.tail().offset();
    let next = p.push(b"after").unwrap().offset();
    records.insert(at, (next, b"after".to_vec()));
    p.advance(p.tail()).unwrap();
    drop((p, c));
    let image = d.to_vec();
    let r = ring2::recover(&d).unwrap();
    assert!(r.scan.is_complete());
    assert_eq!(
        r.producer.durable, at,
        "the tested records are before durable"
    );
    Fixture {
        g,
        image,
        before,
        records,
        tested,
    }
}

impl Fixture {
    /// The first record (in stream order) with bytes in device sector `s`.
    fn first_record_in(&self, s: usize) -> u64 {
        self.records
            .iter()
            .find(|(&at, &(next, _))| self.sectors(at, next).contains(&s))
            .map(|(&at, _)| at)
            .unwrap()
    }

    /// The device sectors holding stream bytes `[from, to)`.
    fn sectors(&self, from: u64, to: u64) -> Vec<usize> {
        let ss = SS as u64;
        (from / ss..to.div_ceil(ss))
            .map(|s| self.g.physical_sector(s) as usize)
            .collect()
    }
}

/// What reading a corrupted image found.
#[derive(Debug)]
enum Outcome {
    /// Attach refused the ring.
    Refused(Error),
    /// The consumer read up to a bad record and reported it.
    Stopped(Error),
    /// The consumer saw the published records end before the bad record
    /// (recovery's view of a power cut's lost tail), and the recovery scan
    /// named it.
    Capped(Corruption),
}

struct Tally {
    tried: u64,
    detected: u64,
    delivered_bad: u64,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            tried: 0,
            detected: 0,
            delivered_bad: 0,
        }
    }
}

/// Attaches a consumer (and, on success, reads every record it can) on
/// `image`; checks that every record delivered is one the fixture wrote
/// there, and returns how the reading stopped.
fn read(f: &Fixture, image: Vec<u8>, tally: &mut Tally) -> Option<Outcome> {
    let d = MemDevice::from_bytes(SS, image);
    let mut c = match Consumer::attach(d.clone(), Options::new()) {
        Ok(c) => c,
        Err(e) => return Some(Outcome::Refused(e)),
    };
    let mut at = c.position();
    loop {
        match c.pop_from(at) {
            Ok((next, got)) => {
                match f.records.get(&at.offset()) {
                    Some((n, want)) if *n == next.offset() && *want == got => {}
                    _ => tally.delivered_bad += 1,
                }
                at = next;
            }
            Err(Error::Retry(_)) => {
                let scan = ring2::recover(&d).ok()?.scan;
                return scan.problem.map(Outcome::Capped);
            }
            Err(e) => return Some(Outcome::Stopped(e)),
        }
    }
}

/// Checks that a corruption at record `position` (or, for a head sector,
/// anywhere) was detected and located.
fn expect_record(f: &Fixture, image: Vec<u8>, position: u64, what: &str, tally: &mut Tally) {
    tally.tried += 1;
    let outcome = read(f, image, tally);
    let (sector, byte) = f.g.locate(position);
    let located = |c: &Corruption| {
        matches!(c, Corruption::BadRecord { sector: s, byte: b, position: p, .. }
            if (*s, *b, *p) == (sector, byte, position))
    };
    match &outcome {
        Some(Outcome::Stopped(Error::Corrupt(c)))
        | Some(Outcome::Refused(Error::Corrupt(c)))
        | Some(Outcome::Capped(c))
            if located(c) =>
        {
            tally.detected += 1
        }
        other => panic!("{what} at {position}: not detected at its place: {other:?}"),
    }
}

/// Checks that a corrupted head sector is refused at attach, by both
/// sides, with an error naming a sector.
fn expect_refused(image: Vec<u8>, sector: u64, what: &str, tally: &mut Tally) {
    tally.tried += 1;
    let d = MemDevice::from_bytes(SS, image);
    let c = Consumer::attach(d.clone(), Options::new()).map(drop);
    let p = Producer::attach(d.clone(), Options::new()).map(drop);
    for r in [c, p] {
        let e = r.err().unwrap_or_else(|| panic!("{what}: attached"));
        let names_sector = match &e {
            Error::Corrupt(c) => c.to_string().contains(&format!("sector {sector} ")),
            Error::NotInitialised(_) => sector == 0,
            Error::UnsupportedFormat { .. } | Error::WrongDeviceSize { .. } => sector == 0,
            Error::WrongSectorSize { .. } => sector == 0,
            _ => false,
        };
        assert!(names_sector, "{what}: {e}");
    }
    tally.detected += 1;
}

fn flip(image: &[u8], at: usize, bit: usize) -> Vec<u8> {
    let mut v = image.to_vec();
    v[at] ^= 1 << bit;
    v
}

fn report(name: &str, t: &Tally) {
    println!(
        "format-2 corruption ({name}): {} corruptions tried, {} detected, {} bad records delivered",
        t.tried, t.detected, t.delivered_bad
    );
    assert_eq!(t.detected, t.tried);
    assert_eq!(t.delivered_bad, 0);
}

/// Sizes that give records within a sector, across a boundary, with a
/// header straddling one, and over several sectors.
const LENS: [usize; 8] = [0, 5, 100, 482, 489, 1000, 2000, 3100];

#[test]
fn every_bit_of_every_record_field_is_detected() {
    let f = fixture(40, &LENS);
    let mut t = Tally::new();
    for &at in &f.tested {
        let (_, bytes) = &f.records[&at];
        // Header and payload, every bit (padding is no field: never read).
        let end = at + l::RECORD_HEADER_LEN + bytes.len() as u64;
        for pos in at..end {
            let (s, b) = f.g.locate(pos);
            let i = s as usize * SS + b;
            for bit in 0..8 {
                expect_record(&f, flip(&f.image, i, bit), at, "flipped bit", &mut t);
            }
        }
    }
    report("flipped record bits", &t);
    assert!(t.tried > 50_000, "{}", t.tried);
}

#[test]
fn every_bit_of_the_header_and_state_sectors_is_detected() {
    let f = fixture(40, &LENS[..3]);
    let mut t = Tally::new();
    for sector in 0..3u64 {
        for byte in 0..l::HEADER_LEN {
            for bit in 0..8 {
                let image = flip(&f.image, sector as usize * SS + byte, bit);
                expect_refused(image, sector, "flipped head bit", &mut t);
            }
        }
    }
    report("flipped header and state bits", &t);
}

/// Fields whose checksum is right but whose value is wrong (resealed), and
/// sectors written to the wrong place.
#[test]
fn wrong_values_and_misdirected_head_sectors_are_detected() {
    let f = fixture(40, &LENS[..3]);
    let mut t = Tally::new();
    let reseal = |image: &mut Vec<u8>, sector: usize| {
        let s = &mut image[sector * SS..sector * SS + l::HEADER_LEN];
        let crc = codec::checksum_append(0, &s[..l::CHECKSUM_OFFSET]);
        s[l::CHECKSUM_OFFSET..].copy_from_slice(&crc.to_le_bytes());
    };
    let set = |sector: usize, at: usize, value: &[u8]| {
        let mut image = f.image.clone();
        image[sector * SS + at..sector * SS + at + value.len()].copy_from_slice(value);
        reseal(&mut image, sector);
        image
    };
    let p = codec::decode_state(
        Side::Producer,
        &codec::decode_header(&f.image[..SS]).unwrap().ring_id,
        &f.image[SS..2 * SS],
    )
    .unwrap();
    for (sector, at, value, what) in [
        (
            0,
            l::VERSION_OFFSET,
            3u64.to_le_bytes()[..4].to_vec(),
            "version",
        ),
        (
            0,
            l::FLAGS_OFFSET,
            1u64.to_le_bytes()[..4].to_vec(),
            "flags",
        ),
        (
            0,
            l::SECTOR_SIZE_OFFSET,
            4096u32.to_le_bytes().to_vec(),
            "sector size",
        ),
        (
            0,
            l::DEVICE_SECTORS_OFFSET,
            41u64.to_le_bytes().to_vec(),
            "device size",
        ),
        (0, l::LEASE_OFFSET, 0u32.to_le_bytes().to_vec(), "lease"),
        (
            0,
            l::RING_ID_OFFSET,
            vec![0xee; 16],
            "ring id (states no longer match)",
        ),
        (1, l::FLAG_OFFSET, vec![0], "producer flag"),
        (2, l::FLAG_OFFSET, vec![9], "consumer flag"),
        (1, l::SECTOR_TAG_OFFSET, vec![2], "producer tag"),
        (2, l::SECTOR_TAG_OFFSET, vec![1], "consumer tag"),
        (
            1,
            l::STATE_RING_ID_OFFSET,
            vec![0xee; 16],
            "producer ring id",
        ),
        (
            2,
            l::STATE_RING_ID_OFFSET,
            vec![0xee; 16],
            "consumer ring id",
        ),
        (
            1,
            l::POSITION_OFFSET,
            (p.position + 4).to_le_bytes().to_vec(),
            "unaligned P",
        ),
        (
            2,
            l::POSITION_OFFSET,
            (p.position + 8).to_le_bytes().to_vec(),
            "C past P",
        ),
        (
            1,
            l::POSITION_OFFSET,
            (1u64 << 63).to_le_bytes().to_vec(),
            "P too large",
        ),
        (
            1,
            l::DURABLE_OFFSET,
            (p.position + 8).to_le_bytes().to_vec(),
            "durable past P",
        ),
        (
            1,
            l::DURABLE_OFFSET,
            (p.durable + 4).to_le_bytes().to_vec(),
            "unaligned durable",
        ),
        (
            2,
            l::DURABLE_OFFSET,
            8u64.to_le_bytes().to_vec(),
            "consumer durable",
        ),
        (
            2,
            l::EPOCH_OFFSET,
            1u64.to_le_bytes().to_vec(),
            "consumer epoch",
        ),
    ] {
        // A sound header whose ring id no longer matches the states: the
        // error names sector 1, where the mismatch is seen.
        let named = if sector == 0 && at == l::RING_ID_OFFSET {
            1
        } else {
            sector as u64
        };
        expect_refused(set(sector, at, &value), named, what, &mut t);
    }
    // Misdirected head sectors: each state onto the other, the header onto
    // a state, a state onto the header, another ring's state.
    let head = |from: usize, to: usize| {
        let mut image = f.image.clone();
        image.copy_within(from * SS..(from + 1) * SS, to * SS);
        image
    };
    expect_refused(head(1, 2), 2, "producer state on sector 2", &mut t);
    expect_refused(head(2, 1), 1, "consumer state on sector 1", &mut t);
    expect_refused(head(0, 1), 1, "header on sector 1", &mut t);
    expect_refused(head(1, 0), 0, "a state on sector 0", &mut t);
    let other = fixture(40, &LENS[..1]);
    let mut image = f.image.clone();
    image[SS..2 * SS].copy_from_slice(&other.image[SS..2 * SS]);
    expect_refused(image, 1, "another ring's producer state", &mut t);
    report("wrong values and misdirected head sectors", &t);
}

#[test]
fn torn_stale_and_misdirected_records_are_detected() {
    let f = fixture(40, &LENS);
    let mut t = Tally::new();
    // A torn write of each multi-sector record: each of its sectors in
    // turn as it was before the write. The write of a sector also carries
    // the end of the record before it, when they share it: the first
    // record with bytes in the sector is the one found.
    for &at in &f.tested {
        let (next, _) = f.records[&at];
        let sectors = f.sectors(at, next);
        if sectors.len() < 2 {
            continue;
        }
        for &s in &sectors {
            if f.image[s * SS..(s + 1) * SS] == f.before[s * SS..(s + 1) * SS] {
                continue; // nothing of the record in it changed
            }
            let mut image = f.image.clone();
            image[s * SS..(s + 1) * SS].copy_from_slice(&f.before[s * SS..(s + 1) * SS]);
            let first = f.first_record_in(s);
            expect_record(&f, image, first, "torn record", &mut t);
        }
    }
    // Each record replaced whole by what the previous lap left there.
    for &at in &f.tested {
        let (next, _) = f.records[&at];
        let mut image = f.image.clone();
        let sectors = f.sectors(at, next);
        for &s in &sectors {
            image[s * SS..(s + 1) * SS].copy_from_slice(&f.before[s * SS..(s + 1) * SS]);
        }
        let first = f.first_record_in(sectors[0]);
        expect_record(&f, image, first, "stale sectors", &mut t);
    }
    // A data sector written in place of the next one (and the reverse):
    // the first record with a header in the overwritten sector is found.
    let data = f.sectors(f.tested[0], f.records.values().last().unwrap().0);
    for pair in data.windows(2) {
        for (from, to) in [(pair[0], pair[1]), (pair[1], pair[0])] {
            if f.image[from * SS..(from + 1) * SS] == f.image[to * SS..(to + 1) * SS] {
                continue;
            }
            let mut image = f.image.clone();
            image.copy_within(from * SS..(from + 1) * SS, to * SS);
            let first = f.first_record_in(to);
            expect_record(&f, image, first, "misdirected sector", &mut t);
        }
    }
    report("torn, stale and misdirected records", &t);
    assert!(t.tried >= 30, "{}", t.tried);
}

/// Records of a fixed size that divides the capacity: each lap's records
/// lie exactly where the previous lap's did, so a record lost by a power
/// cut leaves the previous lap's record at the very place: its position
/// field names the lap.
#[test]
fn a_stale_record_of_the_previous_lap_is_named_as_such() {
    // 13 data sectors, one 488-byte record per sector.
    let f = fixture(16, &[488; 12]);
    let cap = f.g.capacity();
    let mut t = Tally::new();
    for &at in &f.tested {
        let s = f.sectors(at, at + 512)[0];
        let mut image = f.image.clone();
        image[s * SS..(s + 1) * SS].copy_from_slice(&f.before[s * SS..(s + 1) * SS]);
        let stale = codec::decode_record_header(image[s * SS..s * SS + 24].try_into().unwrap());
        if stale.position + cap != at {
            continue; // lap 0 did not end a record here
        }
        t.tried += 1;
        match read(&f, image, &mut t) {
            Some(Outcome::Stopped(Error::Corrupt(Corruption::BadRecord {
                position,
                problem: RecordProblem::Stale { laps: 1, found, .. },
                ..
            }))) if position == at && found == at - cap => t.detected += 1,
            other => panic!("stale record at {at}: {other:?}"),
        }
    }
    report("stale records of the previous lap", &t);
    assert!(t.tried >= 10, "{}", t.tried);
}

/// An earlier producer pushed records it never published; a later one
/// published its own at the same places, and a power cut lost one of them
/// but kept the pointer. Positions, lengths and checksums of the old
/// record left there are all valid: only its epoch tells it apart, and
/// recovery ends the published records at it.
///
/// (A record brought back before the `durable` position, by a device that
/// lost a write it had flushed, is not detected this way: records there
/// may carry any earlier epoch. See RELIABILITY.md.)
#[test]
fn an_earlier_producers_record_where_a_new_one_was_lost_is_detected() {
    let d = MemDevice::new(SS, 40);
    ring2::create(&d, ring2::DEFAULT_LEASE).unwrap();
    let mut old = Producer::attach(d.clone(), Options::new()).unwrap();
    for i in 0..6 {
        old.push(&payload(i, 300)).unwrap(); // never published
    }
    drop(old);
    let before = d.to_vec();
    let mut new = Producer::attach(d.clone(), Options::new()).unwrap();
    let mut records = BTreeMap::new();
    for i in 0..6 {
        let at = new.tail().offset();
        let next = new.push(&payload(100 + i, 300)).unwrap().offset();
        records.insert(at, (next, payload(100 + i, 300)));
    }
    new.advance(new.tail()).unwrap();
    drop(new);
    let g = Geometry::new(SS, 40).unwrap();
    let image = d.to_vec();
    assert_eq!(ring2::recover(&d).unwrap().producer.durable, 0);
    let f = Fixture {
        g,
        image: image.clone(),
        before: before.clone(),
        tested: records.keys().copied().collect(),
        records,
    };
    let mut t = Tally::new();
    for &at in &f.tested {
        let (next, _) = f.records[&at];
        let mut image = image.clone();
        for pos in at..next {
            let (s, b) = g.locate(pos);
            let i = s as usize * SS + b;
            image[i] = before[i];
        }
        t.tried += 1;
        match read(&f, image, &mut t) {
            Some(Outcome::Capped(Corruption::BadRecord {
                position,
                problem: RecordProblem::Epoch { expected, found },
                ..
            })) if position == at && found < expected => t.detected += 1,
            other => panic!("old record at {at}: {other:?}"),
        }
    }
    report("an earlier producer's records", &t);
    assert_eq!(t.tried, 6);
}

#[test]
fn a_record_read_through_the_api_names_its_place() {
    // The same through pop on a consumer attached before the damage: the
    // error's text names the sector, the byte and what was wrong.
    let f = fixture(40, &LENS[..4]);
    let d = MemDevice::from_bytes(SS, f.image.clone());
    let mut c = Consumer::attach(d.clone(), Options::new()).unwrap();
    let at = f.tested[2];
    let (s, b) = f.g.locate(at + 30);
    d.with_bytes_mut(|img| img[s as usize * SS + b] ^= 0x80);
    let e = c.pop_from(Position::new(at)).unwrap_err();
    let (sector, byte) = f.g.locate(at);
    let text = e.to_string();
    assert!(
        text.contains(&format!(
            "sector {sector} byte {byte}: the record at position {at}"
        )),
        "{text}"
    );
    assert!(text.contains("CRC32C"), "{text}");
}
