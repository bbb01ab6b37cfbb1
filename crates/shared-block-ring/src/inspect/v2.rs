//! Read-only inspection of a format-2 ring: the header, both state sectors
//! with their owners and heartbeats, the recovery scan attach would make,
//! and the pending records, each checked (length, position, checksum).
//!
//! As [`super::inspect`]: never writes, takes no lock, and records what is
//! wrong instead of stopping at it. [`inspect_any`] detects the format and
//! runs the right inspector.

use crate::device::BlockDevice;
use crate::error::{Corruption, Error, HeartbeatAge, Result, Side};
use crate::format::v2::scan::{walk, Scan, Visit, SCAN_CHUNK};
use crate::format::v2::{self as codec, Detected, Header, State};
use crate::format::Geometry;

/// One valid pending record: format 1's item summary (the payload length
/// and a preview), at the record's position.
pub use super::ItemSummary as RecordSummary;

/// Everything [`inspect`] found on a format-2 ring.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// Sector size and count of the device as opened.
    pub geometry: Geometry,
    /// The header, or why it is not usable (damaged, newer, made for
    /// another sector size or device size, not format 2).
    pub header: std::result::Result<Header, String>,
    /// The producer sector, decoded (`None` without a usable header: its
    /// ring id is needed to check the sector).
    pub producer: Option<std::result::Result<State, Corruption>>,
    /// The consumer sector, decoded (as `producer`).
    pub consumer: Option<std::result::Result<State, Corruption>>,
    /// The producer sector's text (raw: escape before showing).
    pub producer_text: Vec<u8>,
    /// The consumer sector's text (raw: escape before showing).
    pub consumer_text: Vec<u8>,
    /// Whether `C <= P <= C + capacity` (`None` when a state is unusable).
    pub positions: Option<std::result::Result<(), Corruption>>,
    /// The scan attach makes, from `max(C, durable)` to `P`.
    pub recovery: Option<Scan>,
    /// The first valid pending records, from `C`.
    pub items: Vec<RecordSummary>,
    /// Valid pending records counted from `C` (up to `item_error`).
    pub item_count: u64,
    /// The first invalid record from `C`, which stopped the walk.
    pub item_error: Option<Corruption>,
    /// Our wall clock when inspected (Unix ns), for heartbeat ages.
    pub now: u64,
}

impl Inspection {
    /// How long ago `side`'s heartbeat was written, by our clock.
    pub fn heartbeat_age(&self, side: Side) -> Option<HeartbeatAge> {
        let state = match side {
            Side::Producer => &self.producer,
            Side::Consumer => &self.consumer,
        };
        match state {
            Some(Ok(s)) => Some(s.heartbeat_age(self.now)),
            _ => None,
        }
    }

    /// Every problem found, in the order a reader should fix them. A bad
    /// record before the producer's `durable` position is corruption; one
    /// at or after it is what a power cut during a publication leaves
    /// (attach ends the published records there).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Err(e) = &self.header {
            out.push(format!("sector 0: {e}"));
        }
        for s in [&self.producer, &self.consumer].into_iter().flatten() {
            if let Err(e) = s {
                out.push(e.to_string());
            }
        }
        if let Some(Err(e)) = &self.positions {
            out.push(e.to_string());
        }
        let durable = match &self.producer {
            Some(Ok(p)) => p.durable,
            _ => 0,
        };
        if let Some(e) = &self.item_error {
            let position = match e {
                Corruption::BadRecord { position, .. } => *position,
                _ => 0,
            };
            if position < durable {
                out.push(format!(
                    "{e} (before the durable position {durable}: the record was flushed, so this is corruption)"
                ));
            } else if let Some(scan) = &self.recovery {
                out.push(format!(
                    "{e} (at or after the durable position {durable}: a power cut kept the producer position {} \
                     but not all of its records; attach ends the published records at {})",
                    scan.stop, scan.end
                ));
            } else {
                out.push(e.to_string());
            }
        }
        out
    }

    /// True when nothing is wrong.
    pub fn is_healthy(&self) -> bool {
        self.problems().is_empty()
    }
}

/// Reads the format-2 ring on `device` without changing anything, listing
/// up to `max_items` valid pending records with up to `preview` payload
/// bytes each, and counting the rest.
///
/// # Errors
/// [`Error::TooSmall`] or [`Error::BadSectorSize`] when the device cannot
/// hold a ring at all; a device error. Invalid contents are not errors:
/// they are recorded in the [`Inspection`].
pub fn inspect<D: BlockDevice + ?Sized>(
    device: &D,
    max_items: usize,
    preview: usize,
) -> Result<Inspection> {
    let (geometry, head) = crate::ring2::read_head(device)?;
    let ss = geometry.sector_size();
    let sector = |n: usize| &head[n * ss..(n + 1) * ss];
    let header = match codec::detect(sector(0), &geometry) {
        Ok(Detected::Format2(h)) => Ok(h),
        Ok(Detected::Format1) => Err(Error::WrongFormat {
            found: 1,
            expected: 2,
        }
        .to_string()),
        Ok(Detected::NotARing(p)) => Err(Error::NotInitialised(p).to_string()),
        Err(e) => Err(e.to_string()),
    };
    let mut inspection = Inspection {
        geometry,
        producer: None,
        consumer: None,
        producer_text: codec::state_text(sector(1)).to_vec(),
        consumer_text: codec::state_text(sector(2)).to_vec(),
        positions: None,
        recovery: None,
        items: Vec::new(),
        item_count: 0,
        item_error: None,
        now: crate::host::now_ns(),
        header: header.clone(),
    };
    let Ok(header) = header else {
        return Ok(inspection);
    };
    let rid = header.ring_id;
    let producer = codec::decode_state(Side::Producer, &rid, sector(1));
    let consumer = codec::decode_state(Side::Consumer, &rid, sector(2));
    inspection.producer = Some(producer.clone());
    inspection.consumer = Some(consumer.clone());
    let (Ok(p), Ok(c)) = (producer, consumer) else {
        return Ok(inspection);
    };
    let positions = codec::check_states(&p, &c, geometry.capacity());
    inspection.positions = Some(positions.clone());
    if positions.is_err() {
        return Ok(inspection);
    }
    let read = |first: u64, buf: &mut [u8]| crate::ring::read_stream(device, &geometry, first, buf);
    inspection.recovery = Some(crate::ring2::scan(
        device,
        &geometry,
        &rid,
        codec::scan_start(&p, &c),
        p.position,
        p.epoch,
    )?);
    // The walk from C keeps a preview of each record until its checksum
    // says whether it is listed.
    let mut pending: Vec<u8> = Vec::new();
    let mut items = Vec::new();
    let walked = walk(
        &geometry,
        &rid,
        c.position,
        &codec::Published::by(&p, c.position),
        SCAN_CHUNK,
        read,
        |visit| match visit {
            Visit::Payload { offset, bytes, .. }
                if items.len() < max_items && (offset as usize) < preview =>
            {
                let n = (preview - offset as usize).min(bytes.len());
                pending.extend_from_slice(&bytes[..n]);
            }
            Visit::Payload { .. } => {}
            Visit::Valid(span) => {
                if items.len() < max_items {
                    items.push(RecordSummary {
                        position: span.position,
                        next: span.next,
                        len: span.len,
                        preview: std::mem::take(&mut pending),
                    });
                }
                pending.clear();
            }
        },
    )?;
    inspection.items = items;
    inspection.item_count = walked.records;
    inspection.item_error = walked.problem;
    Ok(inspection)
}

/// What [`inspect_any`] found.
#[derive(Debug, Clone)]
pub enum AnyInspection {
    /// A format-1 ring, or no ring (format 1's inspector reports it).
    Format1(Box<super::Inspection>),
    /// Sector 0 has the format-2 magic (a sound header or not).
    Format2(Box<Inspection>),
}

/// Detects the format from sector 0 and inspects the ring with the
/// matching inspector.
///
/// # Errors
/// As [`inspect`] and [`super::inspect`].
pub fn inspect_any<D: BlockDevice + ?Sized>(
    device: &D,
    max_items: usize,
    preview: usize,
) -> Result<AnyInspection> {
    let (_, head) = crate::ring2::read_head(device)?;
    if codec::has_magic(&head) {
        inspect(device, max_items, preview).map(|i| AnyInspection::Format2(Box::new(i)))
    } else {
        super::inspect(device, max_items, preview).map(|i| AnyInspection::Format1(Box::new(i)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::v2::{encode_record, encode_state, RingId};
    use crate::layout::v2 as l;
    use crate::{MemDevice, RecordProblem};

    /// A format-2 ring with `payloads` published (written through the
    /// codec, so that `durable` can be put anywhere), the consumer at
    /// the start of record `consumed` and `durable` at the end of record
    /// `durable`.
    fn ring(payloads: &[&[u8]], consumed: usize, durable: usize) -> (MemDevice, Vec<u64>) {
        let d = MemDevice::new(512, 32);
        crate::ring2::create(&d, crate::ring2::DEFAULT_LEASE).unwrap();
        let rid = crate::ring2::recover(&d).unwrap().header.ring_id;
        let g = Geometry::new(512, 32).unwrap();
        let mut ends = vec![0u64];
        for p in payloads {
            let at = *ends.last().unwrap();
            let mut rec = vec![0u8; l::record_stream_len(p.len() as u64) as usize];
            encode_record(&rid, at, EPOCH, p, &mut rec).unwrap();
            write_stream(&d, &g, at, &rec);
            ends.push(at + rec.len() as u64);
        }
        write_states(
            &d,
            &rid,
            *ends.last().unwrap(),
            ends[durable],
            ends[consumed],
        );
        (d, ends)
    }

    fn write_stream(d: &MemDevice, g: &Geometry, at: u64, bytes: &[u8]) {
        d.with_bytes_mut(|img| {
            for (i, &b) in bytes.iter().enumerate() {
                let (s, off) = g.locate(at + i as u64);
                img[s as usize * 512 + off] = b;
            }
        });
    }

    /// The epoch of the producer that wrote the records.
    const EPOCH: u64 = 1;

    fn write_states(d: &MemDevice, rid: &RingId, p: u64, durable: u64, c: u64) {
        let mut s = vec![0u8; 512];
        let producer = State {
            position: p,
            durable,
            epoch: EPOCH,
            heartbeat: crate::host::now_ns(),
            owner: crate::host::this_process().unwrap(),
            ..State::EMPTY
        };
        encode_state(Side::Producer, rid, &producer, None, &mut s);
        d.write(1, &s).unwrap();
        let consumer = State {
            position: c,
            ..State::EMPTY
        };
        encode_state(Side::Consumer, rid, &consumer, None, &mut s);
        d.write(2, &s).unwrap();
    }

    #[test]
    fn a_healthy_ring_lists_its_records_and_owners() {
        let (d, ends) = ring(&[b"zero", &[1; 700], b"two", b"three"], 1, 4);
        let r = inspect(&d, 2, 3).unwrap();
        assert!(r.is_healthy(), "{:?}", r.problems());
        assert_eq!(r.item_count, 3);
        assert_eq!(r.items.len(), 2);
        assert_eq!(
            r.items[0],
            RecordSummary {
                position: ends[1],
                next: ends[2],
                len: 700,
                preview: vec![1; 3]
            }
        );
        assert_eq!(r.items[1].preview, b"two");
        assert!(r.recovery.as_ref().unwrap().is_complete());
        assert!(matches!(
            r.heartbeat_age(Side::Producer),
            Some(HeartbeatAge::Ago(_))
        ));
        assert_eq!(r.heartbeat_age(Side::Consumer), Some(HeartbeatAge::Never));
        assert!(matches!(
            inspect_any(&d, 1, 1).unwrap(),
            AnyInspection::Format2(_)
        ));
    }

    #[test]
    fn a_bad_record_after_durable_is_a_lost_tail_before_it_corruption() {
        let payloads: [&[u8]; 4] = [b"zero", b"one", b"two", b"three"];
        let g = Geometry::new(512, 32).unwrap();
        // Record 2 damaged, durable after it: corruption.
        let (d, ends) = ring(&payloads, 0, 3);
        write_stream(&d, &g, ends[2] + 16, b"X");
        let r = inspect(&d, 10, 10).unwrap();
        assert_eq!(r.item_count, 2);
        assert!(matches!(
            r.item_error,
            Some(Corruption::BadRecord { position, problem: RecordProblem::Checksum { .. }, .. })
                if position == ends[2]
        ));
        let problems = r.problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("this is corruption"), "{problems:?}");
        // The same with durable before it: a power cut's lost tail.
        let (d, ends) = ring(&payloads, 0, 1);
        write_stream(&d, &g, ends[2] + 16, b"X");
        let r = inspect(&d, 10, 10).unwrap();
        let scan = r.recovery.as_ref().unwrap();
        assert_eq!((scan.start, scan.end), (ends[1], ends[2]));
        assert!(r.problems()[0].contains("attach ends the published records at"));
    }

    #[test]
    fn problems_are_reported_without_stopping() {
        // Blank device: the header problem only.
        let d = MemDevice::new(512, 32);
        let r = inspect(&d, 1, 1).unwrap();
        assert_eq!(r.problems().len(), 1);
        assert!(r.producer.is_none());
        assert!(matches!(
            inspect_any(&d, 1, 1).unwrap(),
            AnyInspection::Format1(_)
        ));
        // Both state sectors damaged: both named.
        let (d, _) = ring(&[b"a"], 0, 0);
        d.with_bytes_mut(|b| {
            b[512 + 3] ^= 1;
            b[1024 + 3] ^= 1;
        });
        let problems = inspect(&d, 1, 1).unwrap().problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].starts_with("sector 1 bytes 508..512"),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with("sector 2 bytes 508..512"),
            "{problems:?}"
        );
        // A header damaged: named, and nothing else is guessed.
        let (d, _) = ring(&[b"a"], 0, 0);
        d.with_bytes_mut(|b| b[200] ^= 1);
        let r = inspect(&d, 1, 1).unwrap();
        assert!(
            r.problems()[0].contains("sector 0 bytes 508..512"),
            "{:?}",
            r.problems()
        );
        assert!(matches!(
            inspect_any(&d, 1, 1).unwrap(),
            AnyInspection::Format2(_)
        ));
    }
}
