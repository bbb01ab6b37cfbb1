//! Sectors 1 and 2: the states of the two sides.

use super::fields::{block, check_block_checksum, encode_block, get_id, get_u32, get_u64};
use super::ids::{BootId, HostName, Owner, RingId, Token};
use crate::error::{Corruption, HeartbeatAge, Side};
use crate::format::Label;
use crate::layout::{self, v2 as l};

/// One side's state in format 2 (sector 1 for the producer, 2 for the
/// consumer). The ring id is not part of it: it is the header's, written
/// with every state and checked on every read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct State {
    /// Stream position: `P` (producer) or `C` (consumer).
    pub position: u64,
    /// `suspend_ack` (producer) or `suspend` (consumer).
    pub flag: bool,
    /// +1 on every write of the sector.
    pub generation: u64,
    /// Producer: the last position whose records are known durable (at
    /// most `position`). Consumer: zero.
    pub durable: u64,
    /// Unix time (ns) of this write.
    pub heartbeat: u64,
    /// Who owns the side.
    pub owner: Owner,
    /// Producer: its epoch, +1 at every producer attach; every record it
    /// writes carries it. Consumer: zero.
    pub epoch: u64,
}

impl State {
    /// The state of a new ring: position 0, flag false, generation 0, no
    /// owner, no heartbeat.
    pub const EMPTY: State = State {
        position: 0,
        flag: false,
        generation: 0,
        durable: 0,
        heartbeat: 0,
        owner: Owner::NONE,
        epoch: 0,
    };

    /// How long ago (by `now`, Unix ns) the heartbeat was written.
    pub fn heartbeat_age(&self, now: u64) -> HeartbeatAge {
        HeartbeatAge::between(self.heartbeat, now)
    }

    /// The next write of this side: generation + 1, the given heartbeat.
    pub fn next(&self, heartbeat: u64) -> State {
        State {
            generation: self.generation.wrapping_add(1),
            heartbeat,
            ..*self
        }
    }
}

/// Writes a state sector for `side` of ring `ring_id`: the fields, the
/// sector tag, the text (when `label` is given: as format 1's, truncated to
/// 252 bytes), and the CRC32C. The consumer's `durable` and `epoch` are
/// written as zero whatever `state` says.
pub fn encode_state(
    side: Side,
    ring_id: &RingId,
    state: &State,
    label: Option<Label<'_>>,
    sector: &mut [u8],
) {
    encode_block(sector, |b| {
        b[l::POSITION_OFFSET..][..8].copy_from_slice(&state.position.to_le_bytes());
        b[l::FLAG_OFFSET] = if state.flag {
            layout::FLAG_TRUE
        } else {
            layout::FLAG_FALSE
        };
        // Sectors 1 and 2: the tag fits a byte.
        b[l::SECTOR_TAG_OFFSET] = side.sector() as u8;
        b[l::STATE_RING_ID_OFFSET..][..l::ID_LEN].copy_from_slice(&ring_id.0);
        b[l::GENERATION_OFFSET..][..8].copy_from_slice(&state.generation.to_le_bytes());
        let (durable, epoch) = match side {
            Side::Producer => (state.durable, state.epoch),
            Side::Consumer => (0, 0),
        };
        b[l::DURABLE_OFFSET..][..8].copy_from_slice(&durable.to_le_bytes());
        b[l::EPOCH_OFFSET..][..8].copy_from_slice(&epoch.to_le_bytes());
        b[l::HEARTBEAT_OFFSET..][..8].copy_from_slice(&state.heartbeat.to_le_bytes());
        let o = &state.owner;
        b[l::OWNER_TOKEN_OFFSET..][..l::ID_LEN].copy_from_slice(&o.token.0);
        b[l::OWNER_BOOT_ID_OFFSET..][..l::ID_LEN].copy_from_slice(&o.boot_id.0);
        b[l::OWNER_PID_OFFSET..][..4].copy_from_slice(&o.pid.to_le_bytes());
        b[l::OWNER_PID_NS_OFFSET..][..4].copy_from_slice(&o.pid_namespace.to_le_bytes());
        b[l::OWNER_HOST_OFFSET..][..o.host.as_bytes().len()].copy_from_slice(o.host.as_bytes());
        if let Some(label) = label {
            let legacy = crate::format::State {
                position: state.position,
                flag: state.flag,
            };
            crate::format::write_label_text(
                side,
                legacy,
                label,
                &mut b[l::STATE_TEXT_OFFSET..l::STATE_TEXT_OFFSET + l::STATE_TEXT_MAX],
            );
        }
    });
}

/// Reads `side`'s state sector of ring `ring_id`. Checks, in order: the
/// checksum, the sector tag, the ring id, the flag, the alignment of the
/// position (and of `durable`), the position at most
/// [`MAX_POSITION`](l::MAX_POSITION), `durable <= position` (producer), and
/// a zero `durable` and `epoch` (consumer).
///
/// # Errors
/// [`Corruption::BadChecksum`], [`Corruption::WrongSectorTag`],
/// [`Corruption::WrongRing`], [`Corruption::BadFlag`] or
/// [`Corruption::BadField`], each naming the sector and byte.
pub fn decode_state(side: Side, ring_id: &RingId, sector: &[u8]) -> Result<State, Corruption> {
    let b = block(sector);
    let sector_no = side.sector();
    check_block_checksum(&b, sector_no)?;
    let tag = b[l::SECTOR_TAG_OFFSET];
    if u64::from(tag) != sector_no {
        return Err(Corruption::WrongSectorTag {
            sector: sector_no,
            byte: l::SECTOR_TAG_OFFSET,
            found: tag,
        });
    }
    let found = get_id(&b, l::STATE_RING_ID_OFFSET);
    if found != ring_id.0 {
        return Err(Corruption::WrongRing {
            sector: sector_no,
            byte: l::STATE_RING_ID_OFFSET,
            expected: ring_id.0,
            found,
        });
    }
    let flag = match b[l::FLAG_OFFSET] {
        layout::FLAG_TRUE => true,
        layout::FLAG_FALSE => false,
        value => return Err(Corruption::BadFlag { side, value }),
    };
    let position = get_u64(&b, l::POSITION_OFFSET);
    let durable = get_u64(&b, l::DURABLE_OFFSET);
    let bad = |byte, field, found, expected: String| Corruption::BadField {
        sector: sector_no,
        byte,
        field,
        found,
        expected,
    };
    let aligned = format!("a multiple of {}", l::RECORD_ALIGN);
    if position % l::RECORD_ALIGN != 0 {
        return Err(bad(
            l::POSITION_OFFSET,
            position_field(side),
            position,
            aligned,
        ));
    }
    if position > l::MAX_POSITION {
        return Err(bad(
            l::POSITION_OFFSET,
            position_field(side),
            position,
            format!("at most {} (2^63 - 8)", l::MAX_POSITION),
        ));
    }
    let epoch = get_u64(&b, l::EPOCH_OFFSET);
    match side {
        Side::Producer if durable % l::RECORD_ALIGN != 0 => {
            return Err(bad(l::DURABLE_OFFSET, "durable position", durable, aligned))
        }
        Side::Producer if durable > position => {
            return Err(bad(
                l::DURABLE_OFFSET,
                "durable position",
                durable,
                format!("at most the producer position {position}"),
            ))
        }
        Side::Consumer if durable != 0 => {
            return Err(bad(
                l::DURABLE_OFFSET,
                "consumer's durable field",
                durable,
                "0".into(),
            ))
        }
        Side::Consumer if epoch != 0 => {
            return Err(bad(
                l::EPOCH_OFFSET,
                "consumer's epoch field",
                epoch,
                "0".into(),
            ))
        }
        _ => {}
    }
    Ok(State {
        position,
        flag,
        generation: get_u64(&b, l::GENERATION_OFFSET),
        durable,
        heartbeat: get_u64(&b, l::HEARTBEAT_OFFSET),
        owner: Owner {
            token: Token(get_id(&b, l::OWNER_TOKEN_OFFSET)),
            boot_id: BootId(get_id(&b, l::OWNER_BOOT_ID_OFFSET)),
            pid: get_u32(&b, l::OWNER_PID_OFFSET),
            pid_namespace: get_u32(&b, l::OWNER_PID_NS_OFFSET),
            host: HostName::new(&b[l::OWNER_HOST_OFFSET..l::OWNER_HOST_OFFSET + l::OWNER_HOST_MAX]),
        },
        epoch,
    })
}

fn position_field(side: Side) -> &'static str {
    match side {
        Side::Producer => "producer position",
        Side::Consumer => "consumer position",
    }
}

/// The human-readable text of a format-2 state sector (up to its first
/// zero byte), raw: escape it before showing it.
pub fn state_text(sector: &[u8]) -> &[u8] {
    let end = (l::STATE_TEXT_OFFSET + l::STATE_TEXT_MAX).min(sector.len());
    let text = &sector[l::STATE_TEXT_OFFSET.min(end)..end];
    let n = text.iter().position(|&b| b == 0).unwrap_or(text.len());
    &text[..n]
}

/// Checks the two decoded states against each other and the capacity:
/// `C <= P <= C + capacity`. (Alignment and `durable <= P` are checked by
/// [`decode_state`].)
///
/// # Errors
/// [`Corruption::ConsumerAheadOfProducer`] or [`Corruption::UsedExceedsCapacity`].
pub fn check_states(producer: &State, consumer: &State, capacity: u64) -> Result<(), Corruption> {
    crate::format::check_positions(producer.position, consumer.position, capacity)
}

/// Where the recovery scan starts: `max(C, durable)`. Records before it
/// were made durable by a completed flush (or already released).
pub fn scan_start(producer: &State, consumer: &State) -> u64 {
    consumer.position.max(producer.durable)
}
