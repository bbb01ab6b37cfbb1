//! The producer's staging buffer: how pushed items are laid out in memory
//! after the partly filled sector at the end of the stream, checked against
//! the space the consumer has released, and written to the device (at
//! once, or with the next pipelined publication).

use super::Producer;
use crate::codec::Codec;
use crate::device::BlockDevice;
use crate::error::{Error, Result, RetryReason, Side};
use crate::position::Position;
use crate::ring::SideState;

impl<D: BlockDevice, C: Codec> Producer<D, C> {
    /// Bytes already in `staging`: from `base` to `tail`.
    pub(super) fn head(&self) -> usize {
        (self.tail - self.base()) as usize
    }

    /// The stream position of `staging[0]`: the start of the sector
    /// holding `written` (what is before it is on the device).
    fn base(&self) -> u64 {
        let ss = self.link.geometry.sector_size() as u64;
        self.written / ss * ss
    }

    /// Appends one encoded item at `staging[end..]`, for a batch that began
    /// at `head`. Returns the new end.
    pub(super) fn stage(&mut self, head: usize, end: usize, payload: &[u8]) -> Result<usize> {
        let geometry = self.link.geometry;
        let items = self.items;
        let stream_len = items.stream_len(&geometry, payload.len())? as usize;
        let new_end = end + stream_len;
        if (new_end - head) as u64 > geometry.capacity() {
            return Err(Error::TooLarge {
                needed: (new_end - head) as u64,
                capacity: geometry.capacity(),
            });
        }
        let ss = geometry.sector_size();
        let sectors_len = new_end.div_ceil(ss) * ss;
        if self.staging.len() < sectors_len {
            // Grow geometrically, but never past what a batch can span.
            let bound = (geometry.capacity() as usize + 2 * ss).max(sectors_len);
            self.staging
                .resize((self.staging.len() * 2).clamp(sectors_len, bound));
        }
        let body_start = end + items.header_len();
        // staging[0] is the start of the tail's sector in the stream.
        let position = self.tail - head as u64 + end as u64;
        items.write_header(position, payload, &mut self.staging[end..body_start])?;
        self.staging[body_start..body_start + payload.len()].copy_from_slice(payload);
        // Padding is never read, but zeroes keep images deterministic.
        self.staging[body_start + payload.len()..new_end].fill(0);
        Ok(new_end)
    }

    /// Pushes `staging[..end]` (the bytes from `base`: those not yet
    /// written, then the new batch), if the ring has room: writes them, or
    /// (write-behind, see [`write_behind`](Self::write_behind)) leaves
    /// them for the next publication to write. With `look`, also looks at
    /// the consumer sector (see `may_look_with_write`): in the same
    /// transfer as the write when there is one.
    pub(super) fn commit(&mut self, end: usize, mut look: bool) -> Result<Position> {
        let geometry = self.link.geometry;
        let ss = geometry.sector_size();
        let capacity = geometry.capacity();
        let head = self.head();
        let total = (end - head) as u64;
        // Positions stay at most the format's maximum (below 2^63), which
        // leaves 2^63 of headroom above: once `new_tail` is checked, the
        // sums below (a position plus at most a capacity and a sector)
        // cannot overflow.
        let max = self.items.max_position();
        let Some(new_tail) = self.tail.checked_add(total).filter(|&t| t <= max) else {
            if look {
                // A suspend first, as without the fold.
                self.check_running()?;
            }
            return Err(Error::PositionLimit {
                end: self.tail.saturating_add(total),
            });
        };
        if new_tail - self.consumer > capacity {
            look = false;
            self.look_at_consumer()?;
            if self.ack {
                return Err(Error::Suspended);
            }
            if new_tail - self.consumer > capacity {
                return Err(Error::Retry(RetryReason::Full));
            }
        }
        let sectors = end.div_ceil(ss);
        // The write covers whole sectors: its last one runs past new_tail.
        let write_end = self.base() + (sectors * ss) as u64;
        let durable = self.consumer_durable;
        // Saturating: a ring larger than the headroom (no real device)
        // must not overflow here either.
        if self.power_loss()
            && durable < self.consumer
            && write_end > durable.saturating_add(capacity)
        {
            // This write reuses space released since our last flush (or
            // since attaching). Make the release durable first, or a power
            // cut could restore the old consumer position over data that
            // is already overwritten. (A deferred write relies on this
            // flush too: the consumer position only moves forward.)
            self.flush()?;
        }
        let wraps_onto_itself = sectors > geometry.data_sectors() as usize;
        let write_now = wraps_onto_itself || !self.write_behind(end);
        if look && (!write_now || wraps_onto_itself) {
            // No plain write to carry the read: look first, as always.
            look = false;
            self.check_running()?;
        }
        if look {
            self.write_staging_and_look(end)?;
        } else if write_now {
            self.write_staging(end, None)?;
        }
        self.tail = new_tail;
        Ok(Position::new(new_tail))
    }

    /// Writes `staging[..end]` as [`write_staging`](Self::write_staging)
    /// does, reading the consumer sector in the same transfer. If the read
    /// fails, finds the ring broken, or finds a suspend request, the batch
    /// is un-pushed: its bytes stay on the device past the tail, where
    /// nothing reads them and the next push writes over them, and
    /// `written`, `staging` and everything counted as flushed are as
    /// before; then a suspend request is acknowledged and the push fails
    /// with [`Error::Suspended`], as if the look had come first.
    fn write_staging_and_look(&mut self, end: usize) -> Result<()> {
        let ss = self.link.geometry.sector_size();
        let written = self.written;
        let mut front = std::mem::take(&mut self.scratch);
        front.clear();
        front.extend_from_slice(&self.staging[..ss]);
        let seen = self.write_staging_with(end, With::ConsumerRead);
        let noted = match seen {
            Err(e) => Err(e),
            Ok(Some(c)) => Ok(c),
            // Undecodable as read: an ordinary read says why.
            Ok(None) => self.link.read_state(Side::Consumer),
        }
        .and_then(|c| self.note_consumer(c).map(|()| c));
        let stop = match noted {
            Ok(c) if !c.flag => None,
            Ok(_) => Some(Error::Suspended),
            Err(e) => Some(e),
        };
        if stop.is_some() {
            // As before the call, whether or not the write went out.
            self.written = written;
            self.staging[..ss].copy_from_slice(&front);
        }
        self.scratch = front;
        match stop {
            None => Ok(()),
            Some(Error::Suspended) => {
                self.acknowledge(true)?;
                Err(Error::Suspended)
            }
            Some(e) => Err(e),
        }
    }

    /// Whether a push may leave its bytes unwritten until the next
    /// publication: in the power-loss mode of format 1, while an
    /// [`advance_pipelined`](Self::advance_pipelined) publication is
    /// pending, whose pointer the next call writes in one transfer with
    /// them. At most [`WRITE_BEHIND_MAX`] bytes are held this way (or one
    /// batch, which `staging` holds anyway).
    fn write_behind(&self, end: usize) -> bool {
        self.deferred.is_some()
            && self.link.publication().pipelined
            && (self.written == self.tail || end <= WRITE_BEHIND_MAX)
    }

    /// Writes `staging[..end]` at `base`, in one write (two at the wrap),
    /// or in one transfer with `pointer`, the state sector of a
    /// publication whose items are already flushed (never one that
    /// publishes these bytes). Then everything before `base + end` is
    /// written, and `staging` keeps the partly filled sector at that end.
    pub(super) fn write_staging(&mut self, end: usize, pointer: Option<SideState>) -> Result<()> {
        let with = match pointer {
            Some(state) => With::Pointer(state),
            None => With::Nothing,
        };
        self.write_staging_with(end, with).map(|_| ())
    }

    /// [`write_staging`](Self::write_staging), with what goes in the same
    /// transfer; returns the consumer state read, if that was asked for
    /// and it decodes.
    fn write_staging_with(&mut self, end: usize, with: With) -> Result<Option<SideState>> {
        let ss = self.link.geometry.sector_size();
        let data_sectors = self.link.geometry.data_sectors() as usize;
        let sectors = end.div_ceil(ss);
        let write_sectors = if sectors > data_sectors {
            // The write wraps all the way round into the sector it started
            // in (possible when it starts mid-sector and fills the ring):
            // its last stream sector is its first device sector. Fold the
            // last sector's bytes into the first, whose other bytes (our
            // earlier items, and this write's start) are already right, and
            // write every data sector once. The folded first sector is then
            // also the new end's sector. (If the write fails, the bytes
            // overwritten in memory belong to released items, so a retry is
            // still right.)
            debug_assert_eq!(sectors, data_sectors + 1);
            self.staging.copy_within(data_sectors * ss..end, 0);
            data_sectors
        } else {
            if end % ss != 0 {
                // The bytes after the end in its last sector are free
                // space, unless they wrap around onto data the consumer
                // has not released: in the power-loss mode, durably (the
                // release `commit` flushed for this write, or an earlier
                // one; a later release, seen since a deferred write was
                // pushed, may not be durable yet). Read now, not when the
                // bytes were pushed: a push that failed since may have
                // staged over them.
                let new_end = self.base() + end as u64;
                let last = new_end / ss as u64;
                let capacity = self.link.geometry.capacity();
                let released = if self.power_loss() {
                    self.consumer_durable
                } else {
                    self.consumer
                };
                if (last + 1) * ss as u64 > released.saturating_add(capacity) {
                    let from = end % ss;
                    let on_disk = self.link.read_stream_sector(last)?;
                    let keep = &on_disk[from..];
                    let last_start = (sectors - 1) * ss;
                    self.staging[last_start + from..last_start + ss].copy_from_slice(keep);
                }
            }
            sectors
        };
        let first = self.base() / ss as u64;
        let buf = &self.staging[..write_sectors * ss];
        let seen = match with {
            With::Nothing => {
                self.link.write_stream(first, buf)?;
                None
            }
            With::Pointer(state) => {
                self.link.write_stream_with_state(first, buf, state)?;
                None
            }
            With::ConsumerRead => self.link.write_stream_and_read_other(first, buf)?,
        };
        let new_end = self.base() + end as u64;
        if new_end % ss as u64 != 0 && write_sectors == sectors && sectors > 1 {
            // Keep the new end's partial sector at the front.
            self.staging
                .copy_within((sectors - 1) * ss..sectors * ss, 0);
        }
        self.written = new_end;
        Ok(seen)
    }
}

/// What goes in one transfer with a write of the staging buffer.
enum With {
    Nothing,
    /// The producer sector with this state: a publication whose items an
    /// earlier flush made durable (never one of these bytes).
    Pointer(SideState),
    /// A read of the consumer sector.
    ConsumerRead,
}

/// The most pushed bytes a producer holds in memory, unwritten, for the
/// next pipelined publication (more than a batch: one batch is held
/// anyway).
const WRITE_BEHIND_MAX: usize = 16 << 20;
