//! What format 2 records about the process that owns a side of a ring,
//! read from this host: random ids, the boot id, the pid and its
//! namespace, the host name, whether a pid is alive, and the wall clock.
//!
//! Everything here degrades to "unknown" (zero) rather than failing, except
//! randomness: a ring id or an owner token that is not random would defeat
//! what it is for, so its absence is an error.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::Error;
use crate::format::v2::{BootId, HostName, Owner, RingId, Token};
use crate::layout::v2::ID_LEN;

/// Where Linux publishes the boot id.
const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";
/// This process's pid namespace; its inode number identifies it.
const PID_NS_PATH: &str = "/proc/self/ns/pid";

/// 16 bytes from the operating system's random source.
///
/// # Errors
/// [`Error::NoRandomness`] when the system has none to give.
pub fn random_id() -> Result<[u8; ID_LEN], Error> {
    let mut id = [0u8; ID_LEN];
    getrandom::fill(&mut id).map_err(|e| Error::NoRandomness {
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(id)
}

/// A new random ring id.
///
/// # Errors
/// As [`random_id`].
pub fn new_ring_id() -> Result<RingId, Error> {
    random_id().map(RingId)
}

/// A new random owner token; never all zero (which means "no owner").
///
/// # Errors
/// As [`random_id`].
pub fn new_token() -> Result<Token, Error> {
    let mut id = random_id()?;
    // All zero has probability 2^-128; make it impossible all the same.
    if id == [0; ID_LEN] {
        id[0] = 1;
    }
    Ok(Token(id))
}

/// Parses the text of `/proc/sys/kernel/random/boot_id`: 32 hex digits,
/// with or without dashes. Anything else gives zero (unknown).
pub fn parse_boot_id(text: &str) -> BootId {
    let mut id = [0u8; ID_LEN];
    let mut digits = text.trim().chars().filter(|&c| c != '-');
    for byte in &mut id {
        let (Some(hi), Some(lo)) = (digits.next(), digits.next()) else {
            return BootId::default();
        };
        match (hi.to_digit(16), lo.to_digit(16)) {
            // Two hex digits make a byte.
            (Some(h), Some(l)) => *byte = (h * 16 + l) as u8,
            _ => return BootId::default(),
        }
    }
    if digits.next().is_some() {
        return BootId::default();
    }
    BootId(id)
}

/// This host's boot id; zero when it cannot be read.
pub fn boot_id() -> BootId {
    std::fs::read_to_string(BOOT_ID_PATH)
        .map(|t| parse_boot_id(&t))
        .unwrap_or_default()
}

/// This host's name (`uname -n`), truncated to 64 bytes.
pub fn host_name() -> HostName {
    HostName::new(rustix::system::uname().nodename().to_bytes())
}

/// The inode number of this process's pid namespace; zero when unknown.
pub fn pid_namespace() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(PID_NS_PATH)
        .ok()
        .and_then(|m| u32::try_from(m.ino()).ok())
        .unwrap_or(0)
}

/// This process's id.
pub fn current_pid() -> u32 {
    // A pid is positive.
    rustix::process::getpid()
        .as_raw_nonzero()
        .get()
        .unsigned_abs()
}

/// True when a process `pid` exists in this pid namespace (`kill(pid, 0)`
/// succeeds or is refused for permission). Pid 0 and pids beyond the
/// kernel's range are never alive (`kill(0, 0)` would test our own process
/// group).
pub fn pid_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

/// Wall-clock time as Unix nanoseconds; 0 for a clock before 1970, and
/// saturating in 2554.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// This process as the owner of a side: a new token, the boot id, pid,
/// pid namespace and host name.
///
/// # Errors
/// As [`random_id`].
pub fn this_process() -> Result<Owner, Error> {
    Ok(Owner {
        token: new_token()?,
        boot_id: boot_id(),
        pid: current_pid(),
        pid_namespace: pid_namespace(),
        host: host_name(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_ids_parse_with_or_without_dashes() {
        let id = parse_boot_id("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0\n");
        assert_eq!(
            id.0,
            [
                0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78, 0x87, 0x96, 0xa5, 0xb4, 0xc3, 0xd2,
                0xe1, 0xf0
            ]
        );
        assert_eq!(parse_boot_id("0f1e2d3c4b5a69788796a5b4c3d2e1f0"), id);
        for bad in [
            "",
            "0f1e",
            "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0ff",
            "zz",
            "é",
        ] {
            assert!(parse_boot_id(bad).is_zero(), "{bad:?}");
        }
    }

    #[test]
    fn this_host_is_known() {
        // Linux (the only platform the crate targets) has all of these.
        assert!(!boot_id().is_zero());
        assert_eq!(boot_id(), boot_id());
        assert!(!host_name().is_empty());
        assert_ne!(pid_namespace(), 0);
        assert_eq!(current_pid(), std::process::id());
        let me = this_process().unwrap();
        assert!(!me.is_none());
        assert_ne!(me.token, this_process().unwrap().token);
        assert!(now_ns() > 1_600_000_000_000_000_000);
    }

    #[test]
    fn liveness_of_pids() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(0));
        assert!(!pid_alive(u32::MAX));
        // A child that has exited and been reaped is gone.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        // Its pid could be reused in between, but not within this test in
        // practice; the kernel hands out pids in increasing order.
        assert!(!pid_alive(pid));
    }
}
