//! Format 2 on an attached side: what the handle knows about its ring and
//! its own state sector, and the owner lease's bookkeeping (FORMAT.md,
//! "Owner lease"): when to write a heartbeat, when to re-read the sector
//! before writing, and the poison of a displaced handle. The decisions are
//! the pure functions of [`crate::format::v2::lease`]; the I/O is
//! [`Link`](super::Link)'s.

use std::time::{Duration, Instant};

use crate::device::AlignedBuf;
use crate::error::{Error, Side};
use crate::format::v2::{lease, Header, Owner, State};

/// A side of a format-2 ring, as its owner holds it.
pub(crate) struct Owned {
    pub(crate) header: Header,
    /// This handle as the owner: the token it wrote at attach.
    pub(crate) me: Owner,
    /// Our sector as we last wrote it.
    pub(crate) own: State,
    /// When our last heartbeat was written, by the monotonic clock, read
    /// together with the wall-clock time written into it (before the
    /// write was issued).
    last_heartbeat: Instant,
    /// Our sector was read and found ours after our last write: the next
    /// write needs no further check.
    owner_seen: bool,
    /// Another owner took the side over: who, and its heartbeat. The
    /// handle writes nothing more.
    displaced: Option<(String, u64)>,
    /// Consumer: `(generation, q)` while the producer sector is the one
    /// read at attach (same generation) and its pointer runs past its
    /// valid records: the published records end at `q`.
    pub(crate) cap: Option<(u64, u64)>,
    /// Two sectors, for reading sectors 1 and 2 in one read.
    pub(crate) pair: AlignedBuf,
}

impl Owned {
    pub(crate) fn new(header: Header, me: Owner, own: State, sector_size: usize) -> Owned {
        Owned {
            header,
            me,
            own,
            last_heartbeat: Instant::now(),
            owner_seen: false,
            displaced: None,
            cap: None,
            pair: AlignedBuf::zeroed(2 * sector_size),
        }
    }

    /// The ring's lease.
    pub(crate) fn lease(&self) -> Duration {
        self.header.lease()
    }

    /// `Err(Displaced)` once another owner has taken the side.
    pub(crate) fn check_poison(&self, side: Side) -> Result<(), Error> {
        match &self.displaced {
            Some((by, at)) => Err(Error::Displaced {
                side,
                by: by.clone(),
                at: *at,
            }),
            None => Ok(()),
        }
    }

    /// True when the next write must be preceded by a read of our sector:
    /// more than half the lease since our last heartbeat, and no read
    /// since our last write.
    pub(crate) fn must_check(&self) -> bool {
        !self.owner_seen && lease::must_check_owner(self.last_heartbeat.elapsed(), self.lease())
    }

    /// True when an idle owner should write a heartbeat.
    pub(crate) fn heartbeat_due(&self) -> bool {
        lease::heartbeat_due(self.last_heartbeat.elapsed(), self.lease())
    }

    /// Judges our sector as just read: still ours, or the handle is
    /// poisoned.
    ///
    /// # Errors
    /// [`Error::Displaced`].
    pub(crate) fn judge(&mut self, side: Side, sector: &State) -> Result<(), Error> {
        match lease::check_still_owner(side, &self.me, sector) {
            Ok(()) => {
                self.owner_seen = true;
                Ok(())
            }
            Err(e) => {
                if let Error::Displaced { by, at, .. } = &e {
                    tracing::error!(%side, by = %by, "displaced: another owner took this side of the ring over");
                    self.displaced = Some((by.clone(), *at));
                }
                Err(e)
            }
        }
    }

    /// The next write of our sector: `state`'s position, flag, `durable`
    /// and epoch, with our owner, generation + 1 and a heartbeat now; with
    /// the monotonic time to record once the write has succeeded.
    pub(crate) fn next(&self, state: State) -> (State, Instant) {
        let at = Instant::now();
        let next = State {
            owner: self.me,
            generation: self.own.generation.wrapping_add(1),
            heartbeat: crate::host::now_ns(),
            ..state
        };
        (next, at)
    }

    /// Records a completed write of our sector.
    pub(crate) fn written(&mut self, state: State, at: Instant) {
        self.own = state;
        self.last_heartbeat = at;
        self.owner_seen = false;
    }

    /// Records a completed write of records (no heartbeat).
    pub(crate) fn wrote_records(&mut self) {
        self.owner_seen = false;
    }

    /// The sector that clears our ownership on a clean detach, unless the
    /// handle was displaced.
    pub(crate) fn release(&self) -> Option<State> {
        if self.displaced.is_some() || self.own.owner.token != self.me.token {
            return None;
        }
        Some(State {
            owner: Owner::NONE,
            ..self.own.next(crate::host::now_ns())
        })
    }

    /// Applies a consumer's cap to the producer sector just read: its
    /// position, or `q` while it is the sector read at attach.
    pub(crate) fn capped(&mut self, producer: &State) -> u64 {
        match self.cap {
            Some((generation, q)) if generation == producer.generation => producer.position.min(q),
            Some(_) => {
                // The producer has written its sector since (its attach
                // rewrote it with P = q): the cap is no longer needed.
                self.cap = None;
                producer.position
            }
            None => producer.position,
        }
    }
}
