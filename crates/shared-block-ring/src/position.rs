//! Positions in the ring's endless byte stream.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A byte offset in the ring's data stream.
///
/// Positions only grow; the data area maps them onto sectors modulo its
/// size. A position returned by `push` or `pop` is the one to pass to the
/// matching `advance`. Ordering follows the stream, so a later item has a
/// greater position.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Position(u64);

impl Position {
    /// The start of the stream, where a new ring begins.
    pub const ZERO: Position = Position(0);

    /// The largest position the format allows: 2^63 - 4, the largest
    /// multiple of 4 the OCaml library's signed 64-bit positions can hold
    /// (about 9.2 EB of items after the ring was created). A state sector
    /// holding a larger position is corrupt
    /// ([`Corruption::PositionTooLarge`](crate::Corruption::PositionTooLarge)),
    /// and a push that would end past it fails with
    /// [`Error::PositionLimit`](crate::Error::PositionLimit). The 2^63
    /// above it are headroom: a position plus any length, capacity or
    /// read-ahead cannot overflow a u64.
    pub const MAX: Position = Position(i64::MAX as u64 - 3);

    /// A position at byte offset `offset` of the stream.
    pub const fn new(offset: u64) -> Position {
        Position(offset)
    }

    /// The byte offset in the stream.
    pub const fn offset(self) -> u64 {
        self.0
    }
}

/// Refuses a position that cannot be an item boundary: items start at
/// multiples of `align` ([`ITEM_ALIGN`](crate::layout::ITEM_ALIGN) in
/// format 1, [`RECORD_ALIGN`](crate::layout::v2::RECORD_ALIGN) in format 2).
pub(crate) fn check_alignment(position: u64, align: u64) -> Result<(), crate::Error> {
    if position % align == 0 {
        Ok(())
    } else {
        Err(crate::Error::InvalidPosition {
            position,
            reason: if align == crate::layout::ITEM_ALIGN {
                "not on an item boundary (positions are multiples of 4)"
            } else {
                "not on an item boundary (format-2 positions are multiples of 8)"
            },
        })
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Position({})", self.0)
    }
}

impl From<Position> for u64 {
    fn from(p: Position) -> u64 {
        p.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_stream_offset_and_serialises_as_a_number() {
        assert!(Position::new(4) < Position::new(8));
        assert_eq!(Position::new(104).to_string(), "104");
        assert_eq!(serde_json::to_string(&Position::new(104)).unwrap(), "104");
        let back: Position = serde_json::from_str("104").unwrap();
        assert_eq!(back, Position::new(104));
    }
}
