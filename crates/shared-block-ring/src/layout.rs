//! Every constant of the on-disk layout, in one place.
//!
//! Each constant is derived from the ones before it where the format allows,
//! and the byte-exact tests at the bottom pin them to the values written by
//! the original OCaml library, so this file and `FORMAT.md` (beside the crate
//! sources) cannot drift apart silently.

/// The signature that marks an initialised ring, at byte 0 of sector 0.
pub const SIGNATURE: &[u8; 30] = b"mirage shared-block-device 1.0";

/// Sector holding [`SIGNATURE`].
pub const SIGNATURE_SECTOR: u64 = 0;
/// Sector holding the producer's state; only the producer writes it.
pub const PRODUCER_SECTOR: u64 = SIGNATURE_SECTOR + 1;
/// Sector holding the consumer's state; only the consumer writes it.
pub const CONSUMER_SECTOR: u64 = PRODUCER_SECTOR + 1;
/// First sector of the circular data area.
pub const FIRST_DATA_SECTOR: u64 = CONSUMER_SECTOR + 1;
/// The smallest device that can hold a ring: the header sectors and one data sector.
pub const MIN_SECTORS: u64 = FIRST_DATA_SECTOR + 1;

/// Byte offset of the little-endian u64 stream position in a state sector.
pub const POSITION_OFFSET: usize = 0;
/// Length of the stream position field.
pub const POSITION_LEN: usize = 8;
/// Byte offset of the flag byte (`suspend_ack` or `suspend`) in a state sector.
pub const FLAG_OFFSET: usize = POSITION_OFFSET + POSITION_LEN;
/// Flag byte meaning `true`.
pub const FLAG_TRUE: u8 = 1;
/// Flag byte meaning `false`. Zero is deliberately invalid, so a zeroed
/// sector is never mistaken for a state.
pub const FLAG_FALSE: u8 = 2;
/// Byte offset of the optional human-readable text in a state sector.
pub const TEXT_OFFSET: usize = 128;
/// Longest human-readable text, in bytes.
pub const TEXT_MAX: usize = 384;

/// Smallest supported sector size: a state sector must hold its text field.
pub const MIN_SECTOR_SIZE: usize = TEXT_OFFSET + TEXT_MAX;
/// Largest supported sector size (Linux block devices stop at the page size;
/// this leaves room for 64 KiB pages).
pub const MAX_SECTOR_SIZE: usize = 64 * 1024;
/// Default sector size for regular files, as in the original.
pub const DEFAULT_FILE_SECTOR_SIZE: usize = MIN_SECTOR_SIZE;

/// Length of the little-endian u32 payload length that starts every item.
pub const ITEM_HEADER_LEN: u64 = 4;
/// Items start at multiples of this many bytes.
pub const ITEM_ALIGN: u64 = ITEM_HEADER_LEN;

/// Bytes of stream an item with `payload_len` payload bytes occupies: its
/// header plus the payload, rounded up to [`ITEM_ALIGN`].
///
/// This is `(L + 7) & !3` in FORMAT.md.
pub const fn item_stream_len(payload_len: u64) -> u64 {
    (payload_len + ITEM_HEADER_LEN + ITEM_ALIGN - 1) & !(ITEM_ALIGN - 1)
}

/// Memory alignment of the buffers used for direct I/O. 4096 covers every
/// logical block size Linux accepts for O_DIRECT on the devices we target.
pub const IO_ALIGN: usize = 4096;

/// Format 2: the opt-in checksummed format with an owner lease per side.
///
/// Same geometry as format 1 (sector 0 header, 1 producer state, 2 consumer
/// state, data from sector 3). Every field lives in the first
/// [`HEADER_LEN`](v2::HEADER_LEN) (= 512) bytes of its sector, so a ring
/// opened with the wrong sector size still finds its header; bytes past 512
/// of larger sectors are written zero and ignored on read. `FORMAT.md`
/// ("Format 2") has the byte diagrams; the tests below pin every offset.
pub mod v2 {
    use super::MIN_SECTOR_SIZE;

    /// Bytes of a sector that hold the header or a state: the smallest
    /// sector size.
    pub const HEADER_LEN: usize = MIN_SECTOR_SIZE;
    /// Length of the CRC32C that ends the header and each state sector.
    pub const CHECKSUM_LEN: usize = 4;
    /// Byte offset of the CRC32C of bytes `0..CHECKSUM_OFFSET`, in the
    /// header and in each state sector.
    pub const CHECKSUM_OFFSET: usize = HEADER_LEN - CHECKSUM_LEN;

    // ---- Sector 0: the header ----

    /// Length of the magic at byte 0 of sector 0.
    pub const MAGIC_LEN: usize = 32;
    /// The magic: ASCII `shared-block-ring format 2`, zero padded to 32
    /// bytes. Its first 30 bytes differ from format 1's signature, so the
    /// OCaml library sees an uninitialised device.
    pub const MAGIC: &[u8; MAGIC_LEN] = b"shared-block-ring format 2\0\0\0\0\0\0";
    /// Byte offset of the u32 format version.
    pub const VERSION_OFFSET: usize = MAGIC_LEN;
    /// The format version this library reads and writes.
    pub const VERSION: u32 = 2;
    /// Byte offset of the u32 sector size the ring was created with.
    pub const SECTOR_SIZE_OFFSET: usize = VERSION_OFFSET + 4;
    /// Byte offset of the u64 device size in sectors at creation.
    pub const DEVICE_SECTORS_OFFSET: usize = SECTOR_SIZE_OFFSET + 4;
    /// Length of a ring id (and of an owner token and a boot id).
    pub const ID_LEN: usize = 16;
    /// Byte offset of the 16 random bytes that identify the ring.
    pub const RING_ID_OFFSET: usize = DEVICE_SECTORS_OFFSET + 8;
    /// Byte offset of the u64 creation time (Unix time, nanoseconds).
    pub const CREATED_OFFSET: usize = RING_ID_OFFSET + ID_LEN;
    /// Byte offset of the u32 owner lease, in milliseconds.
    pub const LEASE_OFFSET: usize = CREATED_OFFSET + 8;
    /// The lease a ring is created with unless told otherwise.
    pub const DEFAULT_LEASE_MS: u32 = 30_000;
    /// Byte offset of the u32 feature flags.
    pub const FLAGS_OFFSET: usize = LEASE_OFFSET + 4;
    /// The flags this library understands: none. A ring with any other bit
    /// set needs a newer version.
    pub const KNOWN_FLAGS: u32 = 0;
    /// First byte after the header's fields (zero up to the checksum).
    pub const HEADER_FIELDS_END: usize = FLAGS_OFFSET + 4;

    // ---- Sectors 1 and 2: the states ----

    /// Byte offset of the u64 stream position (`P` or `C`).
    pub const POSITION_OFFSET: usize = super::POSITION_OFFSET;
    /// Byte offset of the flag byte (`suspend_ack` or `suspend`; 1 true, 2 false).
    pub const FLAG_OFFSET: usize = super::FLAG_OFFSET;
    /// Byte offset of the sector's own number (1 or 2): a producer state
    /// misdirected onto sector 2 (or the reverse) is detected by it.
    pub const SECTOR_TAG_OFFSET: usize = FLAG_OFFSET + 1;
    /// Byte offset of the ring id, which must equal the header's.
    pub const STATE_RING_ID_OFFSET: usize = 16;
    /// Byte offset of the u64 generation: +1 on every write of the sector.
    pub const GENERATION_OFFSET: usize = STATE_RING_ID_OFFSET + ID_LEN;
    /// Byte offset of the producer's u64 `durable` position (zero in the
    /// consumer's sector).
    pub const DURABLE_OFFSET: usize = GENERATION_OFFSET + 8;
    /// Byte offset of the u64 heartbeat (Unix time of the write, ns).
    pub const HEARTBEAT_OFFSET: usize = DURABLE_OFFSET + 8;
    /// Byte offset of the owner's 16-byte random token (zero: no owner).
    pub const OWNER_TOKEN_OFFSET: usize = HEARTBEAT_OFFSET + 8;
    /// Byte offset of the owner's boot id (zero: unknown).
    pub const OWNER_BOOT_ID_OFFSET: usize = OWNER_TOKEN_OFFSET + ID_LEN;
    /// Byte offset of the owner's u32 process id.
    pub const OWNER_PID_OFFSET: usize = OWNER_BOOT_ID_OFFSET + ID_LEN;
    /// Byte offset of the owner's u32 pid namespace (the inode number of
    /// `/proc/self/ns/pid`; zero: unknown). A pid is only checked for
    /// liveness within the same namespace.
    pub const OWNER_PID_NS_OFFSET: usize = OWNER_PID_OFFSET + 4;
    /// Byte offset of the owner's host name (UTF-8, zero padded).
    pub const OWNER_HOST_OFFSET: usize = OWNER_PID_NS_OFFSET + 4;
    /// Longest host name kept; longer ones are truncated.
    pub const OWNER_HOST_MAX: usize = 64;
    /// First byte after the owner fields.
    pub const OWNER_END: usize = OWNER_HOST_OFFSET + OWNER_HOST_MAX;
    /// Byte offset of the producer's u64 epoch (zero in the consumer's
    /// sector): +1 at every producer attach, and carried by every record
    /// that producer writes, so a record of an earlier producer is told
    /// from the one a later producer meant to write at the same place.
    pub const EPOCH_OFFSET: usize = OWNER_END;
    /// First byte after the state fields (zero up to the text).
    pub const STATE_FIELDS_END: usize = EPOCH_OFFSET + 8;
    /// Byte offset of the human-readable text.
    pub const STATE_TEXT_OFFSET: usize = 256;
    /// Longest human-readable text: up to the checksum.
    pub const STATE_TEXT_MAX: usize = CHECKSUM_OFFSET - STATE_TEXT_OFFSET;

    // ---- Records ----

    /// Byte offset of a record's u32 payload length.
    pub const RECORD_LEN_OFFSET: usize = 0;
    /// Byte offset of a record's CRC32C.
    pub const RECORD_CRC_OFFSET: usize = RECORD_LEN_OFFSET + 4;
    /// Byte offset of a record's own u64 stream position.
    pub const RECORD_POSITION_OFFSET: usize = RECORD_CRC_OFFSET + 4;
    /// Byte offset of a record's u64 epoch: the epoch of the producer that
    /// wrote it (the producer sector's [`EPOCH_OFFSET`] field).
    pub const RECORD_EPOCH_OFFSET: usize = RECORD_POSITION_OFFSET + 8;
    /// Length of a record header; the payload follows it.
    pub const RECORD_HEADER_LEN: u64 = (RECORD_EPOCH_OFFSET + 8) as u64;
    /// Records start at multiples of this many bytes. A header (24 bytes)
    /// may straddle a sector boundary: readers work on contiguous stream
    /// bytes.
    pub const RECORD_ALIGN: u64 = 8;
    /// The largest stream position of format 2: the largest multiple of
    /// [`RECORD_ALIGN`] below 2^63, which leaves 2^63 of headroom above any
    /// position (a position plus a length or a capacity fits a u64).
    pub const MAX_POSITION: u64 = (i64::MAX as u64) & !(RECORD_ALIGN - 1);

    /// Bytes of stream a record with `payload_len` payload bytes occupies:
    /// its header plus the payload, zero padded to [`RECORD_ALIGN`]
    /// (`(24 + L + 7) & !7` in FORMAT.md). Saturates instead of
    /// overflowing (payloads are at most `u32::MAX` bytes).
    pub const fn record_stream_len(payload_len: u64) -> u64 {
        payload_len.saturating_add(RECORD_HEADER_LEN + RECORD_ALIGN - 1) & !(RECORD_ALIGN - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_match_the_original_layout() {
        assert_eq!(SIGNATURE.len(), 30);
        assert_eq!(&SIGNATURE[..], b"mirage shared-block-device 1.0");
        assert_eq!(
            (SIGNATURE_SECTOR, PRODUCER_SECTOR, CONSUMER_SECTOR),
            (0, 1, 2)
        );
        assert_eq!(FIRST_DATA_SECTOR, 3);
        assert_eq!(MIN_SECTORS, 4);
        assert_eq!((POSITION_OFFSET, FLAG_OFFSET, TEXT_OFFSET), (0, 8, 128));
        assert_eq!((FLAG_TRUE, FLAG_FALSE), (1, 2));
        assert_eq!(MIN_SECTOR_SIZE, 512);
        assert_eq!(DEFAULT_FILE_SECTOR_SIZE, 512);
    }

    #[test]
    fn item_stream_len_is_header_plus_payload_rounded_to_four() {
        for l in 0u64..4096 {
            assert_eq!(item_stream_len(l), (l + 7) & !3, "payload {l}");
            assert_eq!(item_stream_len(l) % 4, 0);
            assert!(item_stream_len(l) >= l + 4);
        }
        assert_eq!(item_stream_len(0), 4);
        assert_eq!(item_stream_len(5), 12);
        assert_eq!(item_stream_len(45), 52);
        assert_eq!(item_stream_len(508), 512);
    }

    #[test]
    fn format2_header_offsets_are_byte_exact() {
        use super::v2::*;
        assert_eq!(&MAGIC[..26], b"shared-block-ring format 2");
        assert_eq!(&MAGIC[26..], &[0u8; 6]);
        // The OCaml library compares the first 30 bytes with its signature.
        assert_ne!(&MAGIC[..30], &SIGNATURE[..]);
        assert_eq!(
            (
                VERSION_OFFSET,
                SECTOR_SIZE_OFFSET,
                DEVICE_SECTORS_OFFSET,
                RING_ID_OFFSET,
                CREATED_OFFSET,
                LEASE_OFFSET,
                FLAGS_OFFSET,
                HEADER_FIELDS_END
            ),
            (32, 36, 40, 48, 64, 72, 76, 80)
        );
        assert_eq!((VERSION, KNOWN_FLAGS, DEFAULT_LEASE_MS), (2, 0, 30_000));
        assert_eq!(
            (HEADER_LEN, CHECKSUM_OFFSET, CHECKSUM_LEN, ID_LEN),
            (512, 508, 4, 16)
        );
    }

    #[test]
    fn format2_state_offsets_are_byte_exact() {
        use super::v2::*;
        assert_eq!(
            (
                POSITION_OFFSET,
                FLAG_OFFSET,
                SECTOR_TAG_OFFSET,
                STATE_RING_ID_OFFSET
            ),
            (0, 8, 9, 16)
        );
        assert_eq!(
            (GENERATION_OFFSET, DURABLE_OFFSET, HEARTBEAT_OFFSET),
            (32, 40, 48)
        );
        assert_eq!(
            (
                OWNER_TOKEN_OFFSET,
                OWNER_BOOT_ID_OFFSET,
                OWNER_PID_OFFSET,
                OWNER_PID_NS_OFFSET,
                OWNER_HOST_OFFSET,
                OWNER_HOST_MAX,
                OWNER_END
            ),
            (56, 72, 88, 92, 96, 64, 160)
        );
        assert_eq!((EPOCH_OFFSET, STATE_FIELDS_END), (160, 168));
        assert_eq!((STATE_TEXT_OFFSET, STATE_TEXT_MAX), (256, 252));
        const { assert!(STATE_FIELDS_END <= STATE_TEXT_OFFSET) };
    }

    #[test]
    fn format2_record_layout_is_byte_exact() {
        use super::v2::*;
        assert_eq!(
            (
                RECORD_LEN_OFFSET,
                RECORD_CRC_OFFSET,
                RECORD_POSITION_OFFSET,
                RECORD_EPOCH_OFFSET
            ),
            (0, 4, 8, 16)
        );
        assert_eq!((RECORD_HEADER_LEN, RECORD_ALIGN), (24, 8));
        // Every supported sector size is a multiple of the alignment (a
        // header may still straddle two sectors).
        assert_eq!(MIN_SECTOR_SIZE as u64 % RECORD_ALIGN, 0);
        for l in 0u64..4096 {
            assert_eq!(record_stream_len(l), (24 + l + 7) & !7, "payload {l}");
        }
        assert_eq!(record_stream_len(0), 24);
        assert_eq!(record_stream_len(1), 32);
        assert_eq!(record_stream_len(8), 32);
        assert_eq!(record_stream_len(9), 40);
        assert_eq!(record_stream_len(488), 512);
        assert_eq!(
            record_stream_len(u32::MAX as u64),
            (24 + u32::MAX as u64 + 7) & !7
        );
        assert_eq!(record_stream_len(u64::MAX), !7);
        assert_eq!(MAX_POSITION, (1 << 63) - 8);
        assert_eq!(MAX_POSITION % RECORD_ALIGN, 0);
    }
}
