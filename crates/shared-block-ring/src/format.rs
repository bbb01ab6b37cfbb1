//! The on-disk format: pure encoding, decoding and validation, no I/O.
//!
//! Everything here works on byte slices, so it can be unit-tested byte for
//! byte and fuzzed directly. The layout is described in `FORMAT.md` beside
//! the crate sources and its constants live in [`crate::layout`].
//!
//! Nothing here trusts its input: every decoder returns a
//! [`Corruption`] rather than panicking, and no length read
//! from a device is used before it has been checked against the ring's
//! capacity.

use std::fmt::{self, Write as _};

use crate::error::{Corruption, Error, Side, SignatureProblem};
use crate::layout::{self, item_stream_len};

pub mod v2;

/// The shape of a ring on a device: its sector size and sector count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    sector_size: usize,
    sectors: u64,
}

impl Geometry {
    /// Checks that a device of `sectors` sectors of `sector_size` bytes can
    /// hold a ring.
    ///
    /// # Errors
    /// [`Error::BadSectorSize`] unless the sector size is a power of two in
    /// `512..=65536`; [`Error::TooSmall`] below 4 sectors.
    pub fn new(sector_size: usize, sectors: u64) -> Result<Geometry, Error> {
        if !sector_size.is_power_of_two()
            || !(layout::MIN_SECTOR_SIZE..=layout::MAX_SECTOR_SIZE).contains(&sector_size)
        {
            return Err(Error::BadSectorSize { sector_size });
        }
        if sectors < layout::MIN_SECTORS {
            return Err(Error::TooSmall {
                sectors,
                sector_size,
            });
        }
        // The capacity must be representable; no real device comes close.
        if sectors.checked_mul(sector_size as u64).is_none() {
            return Err(Error::BadSectorSize { sector_size });
        }
        Ok(Geometry {
            sector_size,
            sectors,
        })
    }

    /// Sector size in bytes.
    pub const fn sector_size(&self) -> usize {
        self.sector_size
    }

    /// Device size in sectors.
    pub const fn sectors(&self) -> u64 {
        self.sectors
    }

    /// Number of sectors in the data area (`N - 3`).
    pub const fn data_sectors(&self) -> u64 {
        self.sectors - layout::FIRST_DATA_SECTOR
    }

    /// Bytes the data area holds: the most that can be in use at once.
    pub const fn capacity(&self) -> u64 {
        self.data_sectors() * self.sector_size as u64
    }

    /// Largest payload a single item can have in this ring.
    pub fn max_item_len(&self) -> u64 {
        (self.capacity() - layout::ITEM_HEADER_LEN).min(u32::MAX as u64)
    }

    /// Device sector holding stream byte `position`, and the byte within it.
    pub const fn locate(&self, position: u64) -> (u64, usize) {
        let ss = self.sector_size as u64;
        (
            self.physical_sector(position / ss),
            (position % ss) as usize,
        )
    }

    /// Device sector of stream sector `stream_sector` (stream position / sector size).
    pub const fn physical_sector(&self, stream_sector: u64) -> u64 {
        layout::FIRST_DATA_SECTOR + stream_sector % self.data_sectors()
    }

    /// Splits `count` stream sectors starting at `stream_sector` into at most
    /// two runs of device sectors, cut at the wrap. `count` must not exceed
    /// `data_sectors() + 1` (the most a read from a mid-sector consumer to a
    /// mid-sector producer can span).
    pub fn runs(&self, stream_sector: u64, count: u64) -> Runs {
        debug_assert!(count <= self.data_sectors() + 1);
        let start = self.physical_sector(stream_sector);
        let to_end = layout::FIRST_DATA_SECTOR + self.data_sectors() - start;
        if count <= to_end {
            Runs([(start, count), (0, 0)])
        } else {
            Runs([(start, to_end), (layout::FIRST_DATA_SECTOR, count - to_end)])
        }
    }

    /// Checks whether an item of `payload_len` bytes could ever fit, and
    /// returns the stream bytes it occupies.
    ///
    /// # Errors
    /// [`Error::TooLarge`] when `4 + payload_len` exceeds the capacity (or
    /// the u32 length field).
    pub fn item_len_fits(&self, payload_len: usize) -> Result<u64, Error> {
        let needed = payload_len as u64 + layout::ITEM_HEADER_LEN;
        if needed > self.capacity() || payload_len as u64 > u32::MAX as u64 {
            return Err(Error::TooLarge {
                needed,
                capacity: self.capacity(),
            });
        }
        Ok(item_stream_len(payload_len as u64))
    }
}

/// At most two runs of device sectors, `(first sector, count)`; an unused
/// run has a count of zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Runs(pub [(u64, u64); 2]);

impl Runs {
    /// The non-empty runs, in stream order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.0.iter().copied().filter(|&(_, n)| n > 0)
    }
}

/// Writes the signature sector.
pub fn encode_signature(sector: &mut [u8]) {
    sector.fill(0);
    sector[..layout::SIGNATURE.len()].copy_from_slice(layout::SIGNATURE);
}

/// Checks the signature sector.
///
/// # Errors
/// Says whether sector 0 is blank or holds something else.
pub fn check_signature(sector: &[u8]) -> Result<(), SignatureProblem> {
    let n = layout::SIGNATURE.len().min(sector.len());
    let found = &sector[..n];
    if found == layout::SIGNATURE {
        Ok(())
    } else if found.iter().all(|&b| b == 0) {
        Err(SignatureProblem::Blank)
    } else {
        Err(SignatureProblem::Foreign {
            found: found.to_vec(),
        })
    }
}

/// The state one side keeps in its sector: a stream position and a flag
/// (`suspend_ack` for the producer, `suspend` for the consumer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    /// Stream position (`producer` or `consumer`).
    pub position: u64,
    /// `suspend_ack` (producer) or `suspend` (consumer).
    pub flag: bool,
}

/// Names written into the human-readable text of a state sector.
#[derive(Debug, Clone, Copy)]
pub struct Label<'a> {
    /// Queue name.
    pub queue: &'a str,
    /// Client name.
    pub client: &'a str,
}

/// Writes a state sector: position, flag and, when `label` is given, the
/// text `"<queue> used by <client>; producer = <p>; suspend_ack = <b>"` (or
/// `consumer`/`suspend`), truncated to 384 bytes, with anything but
/// printable ASCII replaced by `?`.
pub fn encode_state(side: Side, state: State, label: Option<Label<'_>>, sector: &mut [u8]) {
    sector.fill(0);
    sector[layout::POSITION_OFFSET..layout::POSITION_OFFSET + layout::POSITION_LEN]
        .copy_from_slice(&state.position.to_le_bytes());
    sector[layout::FLAG_OFFSET] = if state.flag {
        layout::FLAG_TRUE
    } else {
        layout::FLAG_FALSE
    };
    if let Some(label) = label {
        write_label_text(
            side,
            state,
            label,
            &mut sector[layout::TEXT_OFFSET..layout::TEXT_OFFSET + layout::TEXT_MAX],
        );
    }
}

/// Writes `"<queue> used by <client>; producer = <p>; suspend_ack = <b>"`
/// (or `consumer`/`suspend`) into `buf`, truncated to its length, anything
/// but printable ASCII replaced by `?`. Both formats write this text.
pub(crate) fn write_label_text(side: Side, state: State, label: Label<'_>, buf: &mut [u8]) {
    let mut w = TextWriter { buf, len: 0 };
    // TextWriter never fails; it truncates.
    let _ = write!(
        w,
        "{} used by {}; {} = {}; {} = {}",
        label.queue,
        label.client,
        side.name(),
        state.position,
        side.flag_name(),
        state.flag
    );
}

/// Truncating ASCII writer into a fixed slice.
struct TextWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl fmt::Write for TextWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            if self.len == self.buf.len() {
                break;
            }
            self.buf[self.len] = if c.is_ascii_graphic() || c == ' ' {
                c as u8
            } else {
                b'?'
            };
            self.len += 1;
        }
        Ok(())
    }
}

/// Reads a state sector.
///
/// # Errors
/// [`Corruption::BadFlag`] for a flag byte other than 1 or 2,
/// [`Corruption::UnalignedPosition`] for a position that is not a multiple
/// of 4, and [`Corruption::PositionTooLarge`] for one past
/// [`Position::MAX`](crate::Position::MAX).
pub fn decode_state(side: Side, sector: &[u8]) -> Result<State, Corruption> {
    let mut pos = [0u8; 8];
    pos.copy_from_slice(
        &sector[layout::POSITION_OFFSET..layout::POSITION_OFFSET + layout::POSITION_LEN],
    );
    let position = u64::from_le_bytes(pos);
    let flag = match sector[layout::FLAG_OFFSET] {
        layout::FLAG_TRUE => true,
        layout::FLAG_FALSE => false,
        value => return Err(Corruption::BadFlag { side, value }),
    };
    if position % layout::ITEM_ALIGN != 0 {
        return Err(Corruption::UnalignedPosition { side, position });
    }
    if position > crate::Position::MAX.offset() {
        return Err(Corruption::PositionTooLarge { side, position });
    }
    Ok(State { position, flag })
}

/// The human-readable text of a state sector (up to its first zero byte),
/// raw: escape it before showing it.
pub fn state_text(sector: &[u8]) -> &[u8] {
    let end = (layout::TEXT_OFFSET + layout::TEXT_MAX).min(sector.len());
    let text = &sector[layout::TEXT_OFFSET.min(end)..end];
    let n = text.iter().position(|&b| b == 0).unwrap_or(text.len());
    &text[..n]
}

/// Checks the producer and consumer positions against each other and the
/// capacity.
///
/// # Errors
/// [`Corruption::ConsumerAheadOfProducer`] or [`Corruption::UsedExceedsCapacity`].
pub fn check_positions(producer: u64, consumer: u64, capacity: u64) -> Result<(), Corruption> {
    if consumer > producer {
        return Err(Corruption::ConsumerAheadOfProducer { consumer, producer });
    }
    let used = producer - consumer;
    if used > capacity {
        return Err(Corruption::UsedExceedsCapacity { used, capacity });
    }
    Ok(())
}

/// The 4-byte header of an item with `payload_len` payload bytes.
pub const fn encode_item_header(payload_len: u32) -> [u8; 4] {
    payload_len.to_le_bytes()
}

/// Checks the header of the item at stream position `position`, read as
/// `header`, against the producer position, and returns the payload length
/// and the position of the next item.
///
/// # Errors
/// [`Corruption::ItemPastProducer`] when `4 + len` runs past `producer`.
pub fn check_item(
    geometry: &Geometry,
    position: u64,
    header: [u8; 4],
    producer: u64,
) -> Result<(usize, u64), Corruption> {
    let len = u32::from_le_bytes(header);
    let available = producer.saturating_sub(position);
    // The next position rounds up to a multiple of 4: with an unaligned
    // `position` at the very top of the u64 range it could overflow, so it
    // is computed checked (the library only passes aligned positions).
    match position.checked_add(item_stream_len(len as u64)) {
        Some(next) if layout::ITEM_HEADER_LEN + len as u64 <= available => Ok((len as usize, next)),
        _ => {
            let (sector, byte) = geometry.locate(position);
            Err(Corruption::ItemPastProducer {
                position,
                len,
                producer,
                sector,
                byte,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geom() -> Geometry {
        Geometry::new(512, 32).unwrap()
    }

    #[test]
    fn geometry_of_a_16k_file() {
        let g = geom();
        assert_eq!(g.data_sectors(), 29);
        assert_eq!(g.capacity(), 14848);
        assert_eq!(g.locate(0), (3, 0));
        assert_eq!(g.locate(513), (4, 1));
        assert_eq!(g.locate(14848), (3, 0));
        assert_eq!(g.locate(14848 + 1030), (5, 6));
    }

    #[test]
    fn geometry_refuses_small_devices_and_odd_sector_sizes() {
        assert!(matches!(
            Geometry::new(512, 3),
            Err(Error::TooSmall { sectors: 3, .. })
        ));
        assert!(Geometry::new(512, 4).is_ok());
        for bad in [0, 256, 500, 1000, 128 * 1024] {
            assert!(
                matches!(Geometry::new(bad, 100), Err(Error::BadSectorSize { .. })),
                "{bad}"
            );
        }
        assert!(Geometry::new(4096, 4).is_ok());
    }

    #[test]
    fn runs_split_at_the_wrap() {
        let g = Geometry::new(512, 8).unwrap(); // 5 data sectors: 3..8
        assert_eq!(g.runs(0, 5).iter().collect::<Vec<_>>(), vec![(3, 5)]);
        assert_eq!(
            g.runs(3, 4).iter().collect::<Vec<_>>(),
            vec![(6, 2), (3, 2)]
        );
        assert_eq!(
            g.runs(7, 6).iter().collect::<Vec<_>>(),
            vec![(5, 3), (3, 3)]
        );
    }

    #[test]
    fn signature_sector_is_exact() {
        let mut s = vec![0xaa; 512];
        encode_signature(&mut s);
        let mut expected = vec![0u8; 512];
        expected[..30].copy_from_slice(b"mirage shared-block-device 1.0");
        assert_eq!(s, expected);
        assert_eq!(check_signature(&s), Ok(()));
        assert_eq!(check_signature(&[0; 512]), Err(SignatureProblem::Blank));
        let mut foreign = vec![0u8; 512];
        foreign[..4].copy_from_slice(b"\x7fELF");
        assert!(matches!(
            check_signature(&foreign),
            Err(SignatureProblem::Foreign { .. })
        ));
    }

    #[test]
    fn producer_sector_is_byte_exact() {
        let mut s = vec![0xaa; 512];
        encode_state(
            Side::Producer,
            State {
                position: 24,
                flag: false,
            },
            Some(Label {
                queue: "unknown",
                client: "unknown",
            }),
            &mut s,
        );
        let mut expected = vec![0u8; 512];
        expected[0] = 24;
        expected[8] = 2;
        let text = b"unknown used by unknown; producer = 24; suspend_ack = false";
        expected[128..128 + text.len()].copy_from_slice(text);
        assert_eq!(s, expected);
        assert_eq!(
            decode_state(Side::Producer, &s),
            Ok(State {
                position: 24,
                flag: false
            })
        );
        assert_eq!(state_text(&s), text);
    }

    #[test]
    fn consumer_sector_without_label_has_no_text() {
        let mut s = vec![0xaa; 512];
        encode_state(
            Side::Consumer,
            State {
                position: 0x0102_0304_0506_0708,
                flag: true,
            },
            None,
            &mut s,
        );
        let mut expected = vec![0u8; 512];
        expected[..8].copy_from_slice(&[8, 7, 6, 5, 4, 3, 2, 1]);
        expected[8] = 1;
        assert_eq!(s, expected);
        assert_eq!(state_text(&s), b"");
    }

    #[test]
    fn text_is_truncated_and_ascii_only() {
        let mut s = vec![0u8; 512];
        let long = "q".repeat(1000);
        encode_state(
            Side::Consumer,
            State {
                position: 0,
                flag: false,
            },
            Some(Label {
                queue: &long,
                client: "é\x1b",
            }),
            &mut s,
        );
        assert_eq!(state_text(&s).len(), 384);
        encode_state(
            Side::Consumer,
            State {
                position: 0,
                flag: false,
            },
            Some(Label {
                queue: "q",
                client: "é\x1b",
            }),
            &mut s,
        );
        assert_eq!(
            state_text(&s),
            b"q used by ??; consumer = 0; suspend = false"
        );
    }

    #[test]
    fn bad_flags_are_reported_with_their_value() {
        for value in [0u8, 3, 7, 255] {
            let mut s = vec![0u8; 512];
            s[8] = value;
            assert_eq!(
                decode_state(Side::Consumer, &s),
                Err(Corruption::BadFlag {
                    side: Side::Consumer,
                    value
                })
            );
        }
    }

    #[test]
    fn unaligned_positions_are_refused() {
        let mut s = vec![0u8; 512];
        s[0] = 6;
        s[8] = 2;
        assert_eq!(
            decode_state(Side::Producer, &s),
            Err(Corruption::UnalignedPosition {
                side: Side::Producer,
                position: 6
            })
        );
    }

    #[test]
    fn positions_past_the_maximum_are_refused() {
        let mut s = vec![0u8; 512];
        s[8] = 2;
        for (position, ok) in [
            (crate::Position::MAX.offset(), true),
            (crate::Position::MAX.offset() + 4, false),
            (u64::MAX - 3, false),
        ] {
            s[..8].copy_from_slice(&position.to_le_bytes());
            let r = decode_state(Side::Consumer, &s);
            if ok {
                assert_eq!(r.map(|st| st.position), Ok(position));
            } else {
                assert_eq!(
                    r,
                    Err(Corruption::PositionTooLarge {
                        side: Side::Consumer,
                        position
                    })
                );
            }
        }
    }

    #[test]
    fn position_invariants() {
        assert_eq!(check_positions(24, 0, 100), Ok(()));
        assert_eq!(check_positions(100, 0, 100), Ok(()));
        assert_eq!(
            check_positions(0, 4, 100),
            Err(Corruption::ConsumerAheadOfProducer {
                consumer: 4,
                producer: 0
            })
        );
        assert_eq!(
            check_positions(104, 0, 100),
            Err(Corruption::UsedExceedsCapacity {
                used: 104,
                capacity: 100
            })
        );
    }

    #[test]
    fn item_headers_are_checked_against_the_producer() {
        let g = geom();
        assert_eq!(encode_item_header(5), [5, 0, 0, 0]);
        assert_eq!(check_item(&g, 0, [5, 0, 0, 0], 12), Ok((5, 12)));
        assert!(matches!(
            check_item(&g, 0, [6, 0, 0, 0], 9),
            Err(Corruption::ItemPastProducer { len: 6, .. })
        ));
        // A length of 4 GiB - 1 is refused without any allocation.
        assert!(matches!(
            check_item(&g, 512, [0xff; 4], 14848),
            Err(Corruption::ItemPastProducer {
                sector: 4,
                byte: 0,
                ..
            })
        ));
        // Zero-length items are fine.
        assert_eq!(check_item(&g, 8, [0; 4], 12), Ok((0, 12)));
        // An unaligned position at the top of the range does not overflow.
        assert!(matches!(
            check_item(&g, u64::MAX - 6, [1, 0, 0, 0], u64::MAX),
            Err(Corruption::ItemPastProducer { len: 1, .. })
        ));
    }

    #[test]
    fn item_capacity_limits() {
        let g = Geometry::new(512, 4).unwrap();
        assert!(matches!(g.item_len_fits(508), Ok(512)));
        assert!(matches!(
            g.item_len_fits(509),
            Err(Error::TooLarge {
                needed: 513,
                capacity: 512
            })
        ));
    }
}
