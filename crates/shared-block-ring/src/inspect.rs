//! Read-only inspection of a device: what `sbr diagnostics` shows.
//!
//! Unlike attaching, inspecting never writes, takes no role lock, and does
//! not stop at the first problem: it decodes whatever it can and records
//! what is wrong, and where, for each part of the ring.

use crate::device::{AlignedBuf, BlockDevice};
use crate::error::{Corruption, Error, IoOp, Result, Side, SignatureProblem};
use crate::format::{self, Geometry, State};
use crate::layout;

pub mod v2;

/// One pending item, as found on the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemSummary {
    /// Where the item starts.
    pub position: u64,
    /// Where the next item starts.
    pub next: u64,
    /// Payload length.
    pub len: u32,
    /// The first bytes of the payload (raw: escape before showing).
    pub preview: Vec<u8>,
}

/// Everything [`inspect`] found.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// Sector size and count.
    pub geometry: Geometry,
    /// Whether sector 0 holds the signature.
    pub signature: std::result::Result<(), SignatureProblem>,
    /// The producer sector, decoded.
    pub producer: std::result::Result<State, Corruption>,
    /// The consumer sector, decoded.
    pub consumer: std::result::Result<State, Corruption>,
    /// The producer sector's flag byte, raw.
    pub producer_flag_byte: u8,
    /// The consumer sector's flag byte, raw.
    pub consumer_flag_byte: u8,
    /// The producer sector's text (raw: escape before showing).
    pub producer_text: Vec<u8>,
    /// The consumer sector's text (raw: escape before showing).
    pub consumer_text: Vec<u8>,
    /// Whether the two positions agree with each other and the capacity
    /// (`None` when a sector could not be decoded).
    pub positions: Option<std::result::Result<(), Corruption>>,
    /// The first pending items.
    pub items: Vec<ItemSummary>,
    /// Pending items counted (all of them, unless `item_error` stopped the walk).
    pub item_count: u64,
    /// The first invalid item, which stopped the walk.
    pub item_error: Option<Corruption>,
}

impl Inspection {
    /// Every problem found, in the order a reader should fix them.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Err(e) = &self.signature {
            out.push(format!("not a shared block ring: {e}"));
        }
        for r in [&self.producer, &self.consumer] {
            if let Err(e) = r {
                out.push(e.to_string());
            }
        }
        if let Some(Err(e)) = &self.positions {
            out.push(e.to_string());
        }
        if let Some(e) = &self.item_error {
            out.push(e.to_string());
        }
        out
    }

    /// True when nothing is wrong.
    pub fn is_healthy(&self) -> bool {
        self.problems().is_empty()
    }

    /// Bytes in use, when both positions are valid.
    pub fn used(&self) -> Option<u64> {
        match (&self.producer, &self.consumer, &self.positions) {
            (Ok(p), Ok(c), Some(Ok(()))) => Some(p.position - c.position),
            _ => None,
        }
    }
}

/// Reads the ring on `device` without changing anything, listing up to
/// `max_items` pending items with up to `preview` payload bytes each, and
/// counting the rest.
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
    let geometry = Geometry::new(device.sector_size(), device.sectors())?;
    let ss = geometry.sector_size();
    let mut head = AlignedBuf::zeroed(3 * ss);
    device
        .read(layout::SIGNATURE_SECTOR, &mut head)
        .map_err(|e| Error::io(IoOp::Read, 0, e))?;
    let sector = |s: u64| &head[s as usize * ss..(s as usize + 1) * ss];
    let p_sector = sector(layout::PRODUCER_SECTOR);
    let c_sector = sector(layout::CONSUMER_SECTOR);
    let producer = format::decode_state(Side::Producer, p_sector);
    let consumer = format::decode_state(Side::Consumer, c_sector);
    let mut inspection = Inspection {
        geometry,
        signature: format::check_signature(sector(layout::SIGNATURE_SECTOR)),
        producer,
        consumer,
        producer_flag_byte: p_sector[layout::FLAG_OFFSET],
        consumer_flag_byte: c_sector[layout::FLAG_OFFSET],
        producer_text: format::state_text(p_sector).to_vec(),
        consumer_text: format::state_text(c_sector).to_vec(),
        positions: None,
        items: Vec::new(),
        item_count: 0,
        item_error: None,
    };
    let (Ok(p), Ok(c)) = (inspection.producer.clone(), inspection.consumer.clone()) else {
        return Ok(inspection);
    };
    let positions = format::check_positions(p.position, c.position, geometry.capacity());
    inspection.positions = Some(positions.clone());
    if positions.is_err() || inspection.signature.is_err() {
        return Ok(inspection);
    }
    let mut reader = StreamReader::new(device, geometry, p.position);
    let mut at = c.position;
    while at < p.position {
        let mut header = [0u8; 4];
        reader.read(at, &mut header)?;
        match format::check_item(&geometry, at, header, p.position) {
            Ok((len, next)) => {
                if inspection.items.len() < max_items {
                    let mut bytes = vec![0u8; len.min(preview)];
                    reader.read(at + layout::ITEM_HEADER_LEN, &mut bytes)?;
                    inspection.items.push(ItemSummary {
                        position: at,
                        next,
                        len: len as u32,
                        preview: bytes,
                    });
                }
                inspection.item_count += 1;
                at = next;
            }
            Err(e) => {
                inspection.item_error = Some(e);
                break;
            }
        }
    }
    Ok(inspection)
}

/// Finds the sector size a ring on `device` was made with, when it is not
/// the device's: the smallest supported size, other than
/// `device.sector_size()`, at which sector 0 holds the signature, both
/// state sectors decode, and their positions fit the capacity. `None` when
/// there is no such size.
///
/// A ring read with the wrong sector size looks corrupt (sector 1 is then
/// some other part of the device, usually with a zero flag byte); this
/// tells that apart from real damage, so a tool can suggest the right size.
///
/// ```
/// use shared_block_ring::{create, inspect, MemDevice};
///
/// let disk = MemDevice::new(4096, 16); // a ring made with 4096-byte sectors
/// create(&disk).unwrap();
/// // The same bytes seen as 512-byte sectors:
/// let as_512 = MemDevice::new(512, 128);
/// as_512.with_bytes_mut(|b| b.copy_from_slice(&disk.to_vec()));
/// assert_eq!(inspect::detect_sector_size(&as_512).unwrap(), Some(4096));
/// assert_eq!(inspect::detect_sector_size(&disk).unwrap(), None);
/// ```
///
/// # Errors
/// A device read error.
pub fn detect_sector_size<D: BlockDevice + ?Sized>(device: &D) -> Result<Option<usize>> {
    let ss = device.sector_size();
    let bytes = device.sectors().saturating_mul(ss as u64);
    // Enough for three sectors of the largest size, if the device has it.
    let want = (3 * layout::MAX_SECTOR_SIZE as u64).min(bytes) as usize;
    let mut head = AlignedBuf::zeroed(want / ss * ss);
    if head.is_empty() {
        return Ok(None);
    }
    device
        .read(0, &mut head)
        .map_err(|e| Error::io(IoOp::Read, 0, e))?;
    let mut size = layout::MIN_SECTOR_SIZE;
    while size <= layout::MAX_SECTOR_SIZE {
        if size != ss && 3 * size <= head.len() && fits(&head, size, bytes / size as u64) {
            return Ok(Some(size));
        }
        size *= 2;
    }
    Ok(None)
}

/// Whether `head` holds a valid ring's first three sectors at `size`.
fn fits(head: &[u8], size: usize, sectors: u64) -> bool {
    let Ok(geometry) = Geometry::new(size, sectors) else {
        return false;
    };
    let sector = |n: usize| &head[n * size..(n + 1) * size];
    let (Ok(p), Ok(c)) = (
        format::decode_state(Side::Producer, sector(1)),
        format::decode_state(Side::Consumer, sector(2)),
    ) else {
        return false;
    };
    format::check_signature(sector(0)).is_ok()
        && format::check_positions(p.position, c.position, geometry.capacity()).is_ok()
}

/// Reads published stream bytes in chunks of up to 1 MiB.
struct StreamReader<'d, D: ?Sized> {
    device: &'d D,
    geometry: Geometry,
    end: u64,
    buf: AlignedBuf,
    start: u64,
    len: u64,
}

impl<'d, D: BlockDevice + ?Sized> StreamReader<'d, D> {
    const CHUNK: u64 = 1 << 20;

    fn new(device: &'d D, geometry: Geometry, end: u64) -> Self {
        StreamReader {
            device,
            geometry,
            end,
            buf: AlignedBuf::zeroed(0),
            start: 0,
            len: 0,
        }
    }

    /// Copies stream bytes `at..at + out.len()` (all before `end`).
    fn read(&mut self, mut at: u64, out: &mut [u8]) -> Result<()> {
        let mut done = 0;
        while done < out.len() {
            if at < self.start || at >= self.start + self.len {
                self.fill(at)?;
            }
            let off = (at - self.start) as usize;
            let n = (out.len() - done).min(self.len as usize - off);
            out[done..done + n].copy_from_slice(&self.buf[off..off + n]);
            done += n;
            at += n as u64;
        }
        Ok(())
    }

    fn fill(&mut self, at: u64) -> Result<()> {
        let ss = self.geometry.sector_size() as u64;
        let first = at / ss;
        let stop = (at + Self::CHUNK)
            .min(self.end.div_ceil(ss) * ss)
            .max(at + 1);
        let sectors = stop.div_ceil(ss) - first;
        let bytes = (sectors * ss) as usize;
        if self.buf.len() < bytes {
            self.buf.resize(bytes);
        }
        crate::ring::read_stream(self.device, &self.geometry, first, &mut self.buf[..bytes])?;
        self.start = first * ss;
        self.len = sectors * ss;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{create, MemDevice, Options, Producer};

    #[test]
    fn a_healthy_ring_lists_its_items() {
        let d = MemDevice::new(512, 8);
        create(&d).unwrap();
        let mut p = Producer::attach(d.clone(), Options::new().queue("q")).unwrap();
        let mut model = std::collections::VecDeque::new();
        for i in 0..30u8 {
            let pos = p.push(&[i; 150]).unwrap();
            p.advance(pos).unwrap();
            model.push_back(i);
            if i % 3 != 0 {
                let mut c = crate::Consumer::attach(d.clone(), Options::new()).unwrap();
                let (next, _) = c.pop().unwrap();
                c.advance(next).unwrap();
                model.pop_front();
            }
        }
        let r = inspect(&d, 3, 4).unwrap();
        assert!(r.is_healthy(), "{:?}", r.problems());
        assert_eq!(r.items.len(), 3);
        assert_eq!(r.item_count, model.len() as u64);
        assert_eq!(r.items[0].len, 150);
        assert_eq!(r.items[0].preview, vec![model[0]; 4]);
        assert_eq!(r.items[2].preview, vec![model[2]; 4]);
        assert!(r.producer_text.starts_with(b"q used by unknown"));
    }

    #[test]
    fn problems_are_all_reported_without_stopping() {
        let d = MemDevice::new(512, 8);
        d.with_bytes_mut(|b| {
            b[512 + 8] = 7;
            b[1024 + 8] = 0;
        });
        let r = inspect(&d, 3, 4).unwrap();
        let problems = r.problems();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("all zero"));
        assert!(problems[1].contains("sector 1 byte 8"));
        assert!(problems[2].contains("sector 2 byte 8"));
    }

    #[test]
    fn the_sector_size_of_a_ring_is_found_from_either_side() {
        for (made, seen) in [(512, 4096), (4096, 512), (1024, 512), (512, 2048)] {
            let bytes = 64 * 1024;
            let disk = MemDevice::new(made, (bytes / made) as u64);
            create(&disk).unwrap();
            let mut p = Producer::attach(disk.clone(), Options::new()).unwrap();
            let end = p.push(b"item").unwrap();
            p.advance(end).unwrap();
            let other = MemDevice::new(seen, (bytes / seen) as u64);
            other.with_bytes_mut(|b| b.copy_from_slice(&disk.to_vec()));
            assert_eq!(
                detect_sector_size(&other).unwrap(),
                Some(made),
                "{made} seen as {seen}"
            );
            assert_eq!(detect_sector_size(&disk).unwrap(), None);
        }
        // Not a ring at any size.
        assert_eq!(detect_sector_size(&MemDevice::new(512, 64)).unwrap(), None);
        // Too small for the larger sizes: still no panic.
        assert_eq!(detect_sector_size(&MemDevice::new(512, 4)).unwrap(), None);
    }

    #[test]
    fn a_bad_item_stops_the_walk_with_its_location() {
        let d = MemDevice::new(512, 8);
        create(&d).unwrap();
        let mut p = Producer::attach(d.clone(), Options::new()).unwrap();
        p.push(b"one").unwrap();
        let end = p.push(b"two").unwrap();
        p.advance(end).unwrap();
        d.with_bytes_mut(|b| b[3 * 512 + 8..3 * 512 + 12].copy_from_slice(&[0xff; 4]));
        let r = inspect(&d, 10, 10).unwrap();
        assert_eq!(r.item_count, 1);
        assert!(matches!(
            r.item_error,
            Some(Corruption::ItemPastProducer {
                position: 8,
                sector: 3,
                byte: 8,
                ..
            })
        ));
    }
}
