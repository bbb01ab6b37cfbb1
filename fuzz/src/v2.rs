//! Format-2 images for the fuzz targets `scan2` and `attach2`.

use shared_block_ring::format::v2::{
    self as v2, decode_state, encode_header, record_checksum, Header, RingId,
};
use shared_block_ring::format::Geometry;
use shared_block_ring::layout::v2 as l;
use shared_block_ring::Side;

/// The image a fuzz input stands for: its length modulo 4 picks the sector
/// size (512 << n), its last byte modulo 3 the mode of [`make_valid`],
/// applied when the image (cut to whole sectors) holds a ring. Returns
/// the sector size and the image.
pub fn image_of(data: &[u8], clear_owners: bool) -> (usize, Vec<u8>) {
    let ss = 512usize << (data.len() % 4);
    let mode = data.last().copied().unwrap_or(0) % 3;
    let mut image = data.to_vec();
    image.truncate(image.len() / ss * ss);
    if image.len() >= 4 * ss && mode > 0 {
        make_valid(&mut image, ss, mode, clear_owners);
    }
    (ss, image)
}

/// Makes the head sectors (and, in mode 2, the records) of a format-2
/// image pass their checksums, keeping everything else the fuzzer wrote:
/// mode 1 rewrites a valid header for the image's geometry (ring id from
/// the image) and re-seals both state sectors (tag, ring id, checksum);
/// mode 2 also re-seals the checksum of every record along the chain from
/// the scan's start whose position field is right (after lowering an epoch
/// above the producer's to it). `clear_owners` also clears both owner
/// tokens, so that attach may take the sides.
pub fn make_valid(image: &mut [u8], ss: usize, mode: u8, clear_owners: bool) {
    let Ok(g) = Geometry::new(ss, (image.len() / ss) as u64) else {
        return;
    };
    let mut id = [0u8; 16];
    id.copy_from_slice(&image[l::RING_ID_OFFSET..l::RING_ID_OFFSET + 16]);
    let rid = RingId(id);
    let lease = std::time::Duration::from_millis(1000);
    let Ok(header) = Header::new(&g, rid, 1, lease) else {
        return;
    };
    encode_header(&header, &mut image[..ss]);
    for side in [Side::Producer, Side::Consumer] {
        let s = &mut image[side.sector() as usize * ss..][..l::HEADER_LEN];
        s[l::SECTOR_TAG_OFFSET] = side.sector() as u8;
        s[l::STATE_RING_ID_OFFSET..][..16].copy_from_slice(&rid.0);
        if clear_owners {
            s[l::OWNER_TOKEN_OFFSET..][..l::ID_LEN].fill(0);
        }
        let crc = crc(&s[..l::CHECKSUM_OFFSET]);
        s[l::CHECKSUM_OFFSET..].copy_from_slice(&crc.to_le_bytes());
    }
    if mode < 2 {
        return;
    }
    let p = &image[ss..2 * ss];
    let c = &image[2 * ss..3 * ss];
    let (Ok(p), Ok(c)) = (
        decode_state(Side::Producer, &rid, p),
        decode_state(Side::Consumer, &rid, c),
    ) else {
        return;
    };
    let mut at = v2::scan_start(&p, &c);
    let end = p.position;
    // Bounded: each step moves forward by at least 24 bytes of at most the
    // capacity.
    while at < end && end - at <= g.capacity() {
        let mut header = [0u8; l::RECORD_HEADER_LEN as usize];
        read(image, &g, at, &mut header);
        // The scan wants the producer's epoch in every record it checks: a
        // fuzzed epoch above it becomes it; one below it stays (a record of
        // an earlier producer, which must end the run).
        let mut epoch = [0u8; 8];
        epoch.copy_from_slice(&header[l::RECORD_EPOCH_OFFSET..]);
        if u64::from_le_bytes(epoch) > p.epoch {
            header[l::RECORD_EPOCH_OFFSET..].copy_from_slice(&p.epoch.to_le_bytes());
            write(image, &g, at, &header);
        }
        let Ok(span) = v2::check_record_header(&g, at, &header, end) else {
            return;
        };
        let mut payload = vec![0u8; span.len as usize];
        read(image, &g, span.payload_start(), &mut payload);
        let crc = record_checksum(&rid, &header, &payload);
        write(image, &g, at + 4, &crc.to_le_bytes());
        at = span.next;
    }
}

fn crc(bytes: &[u8]) -> u32 {
    // CRC32C of `bytes`: the chaining helper continued from nothing.
    v2::checksum_append(0, bytes)
}

fn read(image: &[u8], g: &Geometry, at: u64, out: &mut [u8]) {
    for (i, b) in out.iter_mut().enumerate() {
        let (s, off) = g.locate(at + i as u64);
        *b = image[s as usize * g.sector_size() + off];
    }
}

fn write(image: &mut [u8], g: &Geometry, at: u64, bytes: &[u8]) {
    for (i, &b) in bytes.iter().enumerate() {
        let (s, off) = g.locate(at + i as u64);
        image[s as usize * g.sector_size() + off] = b;
    }
}
