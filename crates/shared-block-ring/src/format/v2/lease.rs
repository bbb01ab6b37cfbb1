//! The owner lease, as pure decisions: may this process take a side, is it
//! still the owner, and when must it write or check its heartbeat.
//!
//! The rules (FORMAT.md, "Owner lease"):
//!
//! * No owner (zero token): take it.
//! * An owner on this host: same boot id, host name and pid namespace
//!   (each known, i.e. non-zero). Its pid is then meaningful here: if that
//!   process is alive and is not us, the side is [`Error::Owned`]; if it
//!   is dead, the owner is stale and we take it.
//! * An owner elsewhere (or one we cannot place): if its heartbeat is
//!   younger than the lease by our clock, or in our future, the side is
//!   [`Error::Owned`]; if it is older, it is [`Error::LeaseExpired`] unless
//!   the caller asked to take over.
//!
//! Why the pid namespace as well as the boot id and host name: containers
//! share the kernel (and so the boot id), may share the host name (host
//! networking), and have their own pid namespaces, where the owner's pid
//! means nothing. Without the namespace a process in one container could
//! take a side from a live owner in another because "its pid is dead".
//!
//! Clocks: a heartbeat is the writer's wall clock; the age is computed
//! with ours. The lease is safe when the clocks agree within half the
//! lease: an owner that wrote a heartbeat at `t` writes without re-reading
//! its sector only until `t + lease/2` (by its monotonic clock; see
//! [`must_check_owner`]), and a taker whose clock is less than `lease/2`
//! ahead cannot see the heartbeat as `lease` old before `t + lease/2`.
//! A heartbeat in our future counts as fresh: skew can delay a takeover,
//! never hasten it.

use std::time::Duration;

use super::{Owner, State};
use crate::error::{Error, HeartbeatAge, Side};

/// Why attach may take a side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Take {
    /// Nobody owned it.
    Free,
    /// It already carries our token.
    Ours,
    /// Its owner is this very process (same host, namespace and pid): a
    /// handle of ours that did not detach cleanly.
    ThisProcess,
    /// Its owner ran on this host and its process is gone.
    OwnerDead,
    /// Its owner's lease had expired and the caller asked to take over.
    TakenOver,
}

/// What attach knows when it decides about one side.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    /// The side asked for.
    pub side: Side,
    /// This process, with the token it will write.
    pub ours: &'a Owner,
    /// The side's state sector as read.
    pub sector: &'a State,
    /// The ring's lease (from the header).
    pub lease: Duration,
    /// Our wall clock, Unix nanoseconds.
    pub now: u64,
    /// Take the side over if its owner's lease has expired.
    pub take_over: bool,
}

/// True when `theirs` ran on this host, in this pid namespace, so that its
/// pid can be checked here. Unknown (zero) fields never match.
pub fn same_host(ours: &Owner, theirs: &Owner) -> bool {
    !ours.boot_id.is_zero()
        && ours.boot_id == theirs.boot_id
        && ours.pid_namespace != 0
        && ours.pid_namespace == theirs.pid_namespace
        && !ours.host.is_empty()
        && ours.host == theirs.host
        && theirs.pid != 0
}

/// Decides whether `claim.ours` may take `claim.side`. `pid_alive` is
/// asked only about an owner on this host (see [`same_host`]); pass
/// [`crate::host::pid_alive`].
///
/// # Errors
/// [`Error::Owned`] while the owner is alive (on this host) or its
/// heartbeat is younger than the lease or in the future (elsewhere);
/// [`Error::LeaseExpired`] for an expired owner elsewhere when
/// `take_over` is false.
pub fn decide(claim: &Claim<'_>, pid_alive: impl FnOnce(u32) -> bool) -> Result<Take, Error> {
    let theirs = &claim.sector.owner;
    if theirs.is_none() {
        return Ok(Take::Free);
    }
    if theirs.token == claim.ours.token {
        return Ok(Take::Ours);
    }
    let last_seen = claim.sector.heartbeat_age(claim.now);
    let owned = || Error::Owned {
        side: claim.side,
        owner: theirs.to_string(),
        last_seen,
    };
    if same_host(claim.ours, theirs) {
        return if theirs.pid == claim.ours.pid {
            Ok(Take::ThisProcess)
        } else if pid_alive(theirs.pid) {
            Err(owned())
        } else {
            Ok(Take::OwnerDead)
        };
    }
    let expired = match last_seen {
        HeartbeatAge::Ago(age) => age >= claim.lease,
        HeartbeatAge::Never => true,
        HeartbeatAge::InFuture(_) => false,
    };
    if !expired {
        Err(owned())
    } else if claim.take_over {
        Ok(Take::TakenOver)
    } else {
        Err(Error::LeaseExpired {
            side: claim.side,
            owner: theirs.to_string(),
            last_seen,
            lease: claim.lease,
        })
    }
}

/// Checks, before writing, that `side`'s sector (just read) still carries
/// our token.
///
/// # Errors
/// [`Error::Displaced`] naming whoever's token is there (or that the
/// owner was cleared) and its heartbeat.
pub fn check_still_owner(side: Side, ours: &Owner, sector: &State) -> Result<(), Error> {
    if sector.owner.token == ours.token {
        return Ok(());
    }
    let by = if sector.owner.is_none() {
        String::from("another process (it cleared the owner)")
    } else {
        sector.owner.to_string()
    };
    Err(Error::Displaced {
        side,
        by,
        at: sector.heartbeat,
    })
}

/// True when an owner must re-read its sector before its next write:
/// more than half the lease has passed (by its monotonic clock) since its
/// last heartbeat write, so a taker with a clock within `lease/2` may have
/// seen the lease expire.
pub fn must_check_owner(since_last_heartbeat: Duration, lease: Duration) -> bool {
    since_last_heartbeat > lease / 2
}

/// True when an idle owner should write a heartbeat: a third of the lease
/// has passed since the last one, which leaves two more chances before
/// others see it expire.
pub fn heartbeat_due(since_last_heartbeat: Duration, lease: Duration) -> bool {
    since_last_heartbeat >= lease / 3
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::v2::{BootId, HostName, Token};

    const SEC: u64 = 1_000_000_000;
    const LEASE: Duration = Duration::from_secs(30);
    const NOW: u64 = 1_700_000_000 * SEC;

    fn me() -> Owner {
        Owner {
            token: Token([1; 16]),
            boot_id: BootId([2; 16]),
            pid: 100,
            pid_namespace: 7,
            host: HostName::new(b"here"),
        }
    }

    fn elsewhere() -> Owner {
        Owner {
            token: Token([9; 16]),
            boot_id: BootId([8; 16]),
            pid: 100,
            pid_namespace: 7,
            host: HostName::new(b"there"),
        }
    }

    fn sector(owner: Owner, heartbeat: u64) -> State {
        State {
            heartbeat,
            owner,
            ..State::EMPTY
        }
    }

    fn decide_at(
        owner: Owner,
        heartbeat: u64,
        now: u64,
        take_over: bool,
        alive: Option<bool>,
    ) -> Result<Take, Error> {
        let ours = me();
        let s = sector(owner, heartbeat);
        let claim = Claim {
            side: Side::Producer,
            ours: &ours,
            sector: &s,
            lease: LEASE,
            now,
            take_over,
        };
        decide(&claim, |pid| {
            assert_eq!(pid, owner.pid);
            alive.expect("pid_alive asked about an owner on another host")
        })
    }

    #[test]
    fn a_free_side_or_our_own_token_is_taken() {
        assert_eq!(
            decide_at(Owner::NONE, 0, NOW, false, None).unwrap(),
            Take::Free
        );
        // A zero token is no owner, whatever else the sector says.
        let ghost = Owner {
            token: Token([0; 16]),
            ..elsewhere()
        };
        assert_eq!(decide_at(ghost, NOW, NOW, false, None).unwrap(), Take::Free);
        assert_eq!(decide_at(me(), NOW, NOW, false, None).unwrap(), Take::Ours);
    }

    #[test]
    fn an_owner_on_this_host_is_judged_by_its_pid() {
        let sibling = Owner {
            token: Token([3; 16]),
            pid: 200,
            ..me()
        };
        let e = decide_at(sibling, NOW, NOW, true, Some(true)).unwrap_err();
        assert!(
            matches!(e, Error::Owned { side: Side::Producer, ref owner, .. } if owner == "here (pid 200)"),
            "{e}"
        );
        // Dead: stale, taken without take_over, however fresh its heartbeat.
        assert_eq!(
            decide_at(sibling, NOW, NOW, false, Some(false)).unwrap(),
            Take::OwnerDead
        );
        // Our own pid: a handle of ours that did not detach.
        let mine = Owner {
            token: Token([3; 16]),
            ..me()
        };
        assert_eq!(
            decide_at(mine, NOW, NOW, false, None).unwrap(),
            Take::ThisProcess
        );
    }

    #[test]
    fn an_owner_we_cannot_place_on_this_host_is_judged_by_its_lease() {
        // Same host name, other boot (a reboot, or another machine with the
        // same name), other pid namespace (another container), unknown
        // fields: its pid means nothing here, so pid_alive is not asked.
        let twins = [
            Owner {
                boot_id: BootId([5; 16]),
                ..me()
            },
            Owner {
                pid_namespace: 8,
                ..me()
            },
            Owner {
                pid_namespace: 0,
                ..me()
            },
            Owner { pid: 0, ..me() },
            Owner {
                host: HostName::new(b"elsewhere"),
                ..me()
            },
        ];
        for twin in twins {
            let twin = Owner {
                token: Token([4; 16]),
                ..twin
            };
            assert!(
                matches!(
                    decide_at(twin, NOW - SEC, NOW, true, None),
                    Err(Error::Owned { .. })
                ),
                "{twin:?}"
            );
            assert_eq!(
                decide_at(twin, NOW - 31 * SEC, NOW, true, None).unwrap(),
                Take::TakenOver
            );
        }
        // Our own unknown boot id never matches an unknown one.
        let unknown_me = Owner {
            boot_id: BootId::default(),
            ..me()
        };
        let unknown_them = Owner {
            token: Token([4; 16]),
            ..unknown_me
        };
        assert!(!same_host(&unknown_me, &unknown_them));
    }

    #[test]
    fn an_owner_elsewhere_holds_the_side_for_the_lease() {
        let lease = LEASE.as_nanos() as u64;
        let e = decide_at(elsewhere(), NOW - 3 * SEC, NOW, false, None).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Owned {
                    last_seen: HeartbeatAge::Ago(d),
                    ..
                } if d == Duration::from_secs(3)
            ),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains("there (pid 100), last seen 3.0 s ago"),
            "{e}"
        );
        // One nanosecond short of the lease: still owned, even with take_over.
        assert!(matches!(
            decide_at(elsewhere(), NOW - lease + 1, NOW, true, None),
            Err(Error::Owned { .. })
        ));
        // Exactly the lease: expired.
        let e = decide_at(elsewhere(), NOW - lease, NOW, false, None).unwrap_err();
        assert!(matches!(e, Error::LeaseExpired { lease: LEASE, .. }), "{e}");
        assert!(e.to_string().contains("--take-over"), "{e}");
        assert_eq!(
            decide_at(elsewhere(), NOW - lease, NOW, true, None).unwrap(),
            Take::TakenOver
        );
        // An owner that never wrote a heartbeat has expired.
        assert!(matches!(
            decide_at(elsewhere(), 0, NOW, false, None),
            Err(Error::LeaseExpired {
                last_seen: HeartbeatAge::Never,
                ..
            })
        ));
    }

    #[test]
    fn a_heartbeat_in_our_future_is_fresh() {
        // The owner's clock is ahead of ours (or ours is behind).
        for ahead in [1, SEC, 3600 * SEC, u64::MAX - NOW] {
            let e = decide_at(elsewhere(), NOW + ahead, NOW, true, None).unwrap_err();
            assert!(
                matches!(
                    e,
                    Error::Owned {
                        last_seen: HeartbeatAge::InFuture(_),
                        ..
                    }
                ),
                "{ahead}: {e}"
            );
        }
        // A clock before 1970 (now = 0) sees every heartbeat in its future.
        assert!(matches!(
            decide_at(elsewhere(), 1, 0, true, None),
            Err(Error::Owned { .. })
        ));
        // Extremes do not overflow.
        assert!(decide_at(elsewhere(), u64::MAX, u64::MAX, true, None).is_err());
        assert_eq!(
            decide_at(elsewhere(), 1, u64::MAX, true, None).unwrap(),
            Take::TakenOver
        );
    }

    /// The safety argument of the module docs, checked over a grid: an
    /// owner may write without re-reading its sector while its last
    /// heartbeat is at most lease/2 old (true time); a taker whose clock
    /// is off by less than lease/2 (either way) is refused all that time.
    #[test]
    fn a_skew_below_half_the_lease_never_admits_a_taker_while_the_owner_writes_unchecked() {
        let lease = LEASE.as_nanos() as u64;
        let step = lease / 50;
        let written = NOW; // true time of the owner's last heartbeat
        let mut checked = 0;
        let mut since = 0;
        while since <= lease / 2 {
            // The owner writes unchecked at `written + since`.
            assert!(!must_check_owner(Duration::from_nanos(since), LEASE));
            let mut skew = -(lease as i64 / 2) + 1;
            while skew < lease as i64 / 2 {
                let taker_now = (written + since).checked_add_signed(skew).unwrap();
                assert!(
                    decide_at(elsewhere(), written, taker_now, true, None).is_err(),
                    "since {since} skew {skew}"
                );
                checked += 1;
                skew += step as i64;
            }
            since += step;
        }
        assert!(checked > 1000);
        // Past lease/2 the owner must check; a taker may get in at lease.
        assert!(must_check_owner(Duration::from_nanos(lease / 2 + 1), LEASE));
    }

    #[test]
    fn a_displaced_owner_learns_who_took_over() {
        let ours = me();
        let s = sector(ours, NOW);
        assert!(check_still_owner(Side::Consumer, &ours, &s).is_ok());
        let s = sector(elsewhere(), NOW + 5);
        let e = check_still_owner(Side::Consumer, &ours, &s).unwrap_err();
        assert!(
            matches!(e, Error::Displaced { side: Side::Consumer, ref by, at } if by == "there (pid 100)" && at == NOW + 5),
            "{e}"
        );
        let s = sector(Owner::NONE, 0);
        let e = check_still_owner(Side::Producer, &ours, &s).unwrap_err();
        assert!(e.to_string().contains("cleared the owner"), "{e}");
    }

    #[test]
    fn heartbeats_are_due_at_a_third_of_the_lease() {
        assert!(!heartbeat_due(Duration::from_secs(9), LEASE));
        assert!(heartbeat_due(Duration::from_secs(10), LEASE));
        assert!(!must_check_owner(Duration::from_secs(15), LEASE));
        assert!(must_check_owner(Duration::from_millis(15_001), LEASE));
    }
}
