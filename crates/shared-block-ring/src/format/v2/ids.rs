//! The identifiers format 2 records: the ring id, owner tokens, boot ids,
//! host names, and the owner of a side.

use std::fmt;

use crate::error::Hex;
use crate::layout::v2 as l;

/// The 16 random bytes that identify a ring. Every state sector carries
/// it, and it seeds every record's CRC32C, so sectors and records of
/// another ring (a previous ring on the same device, a misdirected write)
/// are told apart from this ring's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RingId(pub [u8; l::ID_LEN]);

/// An owner token: 16 random bytes drawn at each attach. All zero means
/// "no owner".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Token(pub [u8; l::ID_LEN]);

/// A Linux boot id (`/proc/sys/kernel/random/boot_id`): random at every
/// boot, so equal boot ids mean the same running kernel. All zero means
/// unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct BootId(pub [u8; l::ID_LEN]);

macro_rules! hex_display {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                Hex(&self.0).fmt(f)
            }
        }
        impl $t {
            /// True when all bytes are zero.
            pub fn is_zero(&self) -> bool {
                self.0 == [0; l::ID_LEN]
            }
        }
    )*};
}
hex_display!(RingId, Token, BootId);

/// A host name as stored in a state sector: at most
/// [`OWNER_HOST_MAX`](l::OWNER_HOST_MAX) bytes, no zero byte. Kept as
/// bytes (a host name need not be UTF-8); compared byte for byte.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HostName {
    bytes: [u8; l::OWNER_HOST_MAX],
    len: u8,
}

impl HostName {
    /// No host name.
    pub const EMPTY: HostName = HostName {
        bytes: [0; l::OWNER_HOST_MAX],
        len: 0,
    };

    /// `name` up to its first zero byte, truncated to 64 bytes (at a
    /// character boundary when it is UTF-8).
    pub fn new(name: &[u8]) -> HostName {
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        let mut len = name.len().min(l::OWNER_HOST_MAX);
        if let Ok(text) = std::str::from_utf8(name) {
            while !text.is_char_boundary(len) {
                len -= 1;
            }
        }
        let mut bytes = [0; l::OWNER_HOST_MAX];
        bytes[..len].copy_from_slice(&name[..len]);
        HostName {
            bytes,
            // len <= 64 fits a u8.
            len: len as u8,
        }
    }

    /// The name's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// True for an empty name.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Debug for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostName(\"{}\")", self)
    }
}

/// Escaped: a host name read from a device is untrusted.
impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::escape::escape_bytes(self.as_bytes()).fmt(f)
    }
}

/// Who owns a side of a format-2 ring: what its state sector records about
/// the process that last took it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Owner {
    /// Random per attach; zero: no owner.
    pub token: Token,
    /// The owner's boot id; zero: unknown.
    pub boot_id: BootId,
    /// The owner's process id (in its pid namespace); zero: unknown.
    pub pid: u32,
    /// The owner's pid namespace (inode number of `/proc/self/ns/pid`);
    /// zero: unknown.
    pub pid_namespace: u32,
    /// The owner's host name.
    pub host: HostName,
}

impl Owner {
    /// No owner: every field zero.
    pub const NONE: Owner = Owner {
        token: Token([0; l::ID_LEN]),
        boot_id: BootId([0; l::ID_LEN]),
        pid: 0,
        pid_namespace: 0,
        host: HostName::EMPTY,
    };

    /// True when nobody owns the side (a zero token).
    pub fn is_none(&self) -> bool {
        self.token.is_zero()
    }
}

/// `host (pid N)`, as error messages name an owner.
impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.is_empty() {
            f.write_str("an unnamed host")?;
        } else {
            self.host.fmt(f)?;
        }
        write!(f, " (pid {})", self.pid)
    }
}
