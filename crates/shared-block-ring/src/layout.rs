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
}
