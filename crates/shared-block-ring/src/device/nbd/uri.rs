//! NBD URIs (doc/uri.md of the NBD project): `nbd://host[:port]/export`
//! and `nbd+unix:///export?socket=PATH`.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use super::NbdDevice;
use crate::error::Error;

/// The longest export name the protocol allows.
pub(super) const MAX_EXPORT_NAME: usize = 4096;

/// Where an NBD server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NbdAddress {
    /// A TCP host (a name, an IPv4 address, or an IPv6 address without
    /// brackets) and port.
    Tcp {
        /// Host name or address.
        host: String,
        /// TCP port (10809 when the URI names none).
        port: u16,
    },
    /// A Unix domain socket. A path starting with a NUL byte names a
    /// socket in Linux's abstract namespace.
    Unix {
        /// The socket's path.
        socket: PathBuf,
    },
}

/// A parsed NBD URI (the NBD project's `doc/uri.md`):
/// `nbd://host[:port]/[export]` or `nbd+unix:///[export]?socket=PATH`.
///
/// The export name is the URI's path without its leading `/`,
/// percent-decoded (`nbd://example.com//disk` names the export `/disk`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NbdUri {
    address: NbdAddress,
    export: String,
}

impl NbdUri {
    /// Parses `uri`.
    ///
    /// # Errors
    /// [`Error::InvalidUri`] naming what is wrong: an unknown scheme, a TLS
    /// scheme (`nbds://`, not supported), a missing host or socket, a bad
    /// port, bad percent-encoding, or an unknown query parameter (the URI
    /// specification asks clients to diagnose those rather than ignore
    /// them).
    pub fn parse(uri: &str) -> Result<NbdUri, Error> {
        parse_uri(uri).map_err(|reason| Error::InvalidUri {
            uri: uri.to_string(),
            reason,
        })
    }

    /// Where the server listens.
    pub fn address(&self) -> &NbdAddress {
        &self.address
    }

    /// The export name ("" for the server's default export).
    pub fn export(&self) -> &str {
        &self.export
    }
}

/// True when `spec` looks like a URI (`scheme://...`) rather than a path:
/// such specs are parsed as URIs and never opened as files.
pub(crate) fn looks_like_uri(spec: &str) -> bool {
    match spec.split_once("://") {
        Some((scheme, _)) => {
            let mut chars = scheme.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

/// Hand-written rather than built on the `url` crate: NBD URIs use a small
/// corner of RFC 3986 (no relative references, no normalisation), and the
/// `url` crate would add internationalised-domain-name tables to the
/// library for host names that are handed to the resolver unchanged anyway.
fn parse_uri(uri: &str) -> Result<NbdUri, String> {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err("expected nbd://host[:port]/export or nbd+unix:///export?socket=PATH".into());
    };
    let unix = match scheme.to_ascii_lowercase().as_str() {
        "nbd" => false,
        "nbd+unix" => true,
        "nbds" | "nbds+unix" => {
            return Err(format!(
                "{scheme}:// requires TLS, which this client does not support; use nbd:// or \
                 nbd+unix:// over a trusted network, or tunnel the connection (SSH, VPN)"
            ))
        }
        "nbd+vsock" | "nbds+vsock" => {
            return Err(format!(
                "{scheme}:// (AF_VSOCK) is not supported; use nbd:// or nbd+unix://"
            ))
        }
        _ => {
            return Err(format!(
                "unsupported scheme {scheme:?}: a device is a path, an nbd:// URI or an \
                 nbd+unix:// URI"
            ))
        }
    };
    if rest.contains('#') {
        return Err("NBD URIs have no fragment (#...)".into());
    }
    let (hier, query) = match rest.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match hier.find('/') {
        Some(i) => (&hier[..i], &hier[i + 1..]),
        None => (hier, ""),
    };
    let export = String::from_utf8(percent_decode(path)?)
        .map_err(|_| "the export name is not valid UTF-8".to_string())?;
    if export.contains('\0') {
        return Err("the export name contains a NUL byte".into());
    }
    if export.len() > MAX_EXPORT_NAME {
        return Err(format!(
            "the export name is {} bytes long; the protocol allows at most {MAX_EXPORT_NAME}",
            export.len()
        ));
    }

    let mut socket: Option<Vec<u8>> = None;
    for param in query.into_iter().flat_map(|q| q.split('&')) {
        if param.is_empty() {
            continue;
        }
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        let key = String::from_utf8(percent_decode(key)?)
            .map_err(|_| "a query parameter name is not valid UTF-8".to_string())?;
        match key.as_str() {
            "socket" if unix => {
                if socket.is_some() {
                    return Err("the socket parameter is given twice".into());
                }
                socket = Some(percent_decode(value)?);
            }
            "socket" => {
                return Err(
                    "the socket parameter belongs to nbd+unix:// URIs; nbd:// connects over TCP"
                        .into(),
                )
            }
            k if k.starts_with("tls-") => {
                return Err(format!(
                    "{k} is a TLS parameter, and this client does not support TLS"
                ))
            }
            k => return Err(format!("unknown query parameter {k:?}")),
        }
    }

    let address = if unix {
        if !authority.is_empty() {
            return Err(format!(
                "nbd+unix:// URIs name no host (found {authority:?}); write \
                 nbd+unix:///export?socket=PATH"
            ));
        }
        let socket = socket.ok_or_else(|| {
            "nbd+unix:// URIs need the socket: nbd+unix:///export?socket=PATH".to_string()
        })?;
        if socket.is_empty() {
            return Err("the socket parameter is empty".into());
        }
        NbdAddress::Unix {
            socket: PathBuf::from(OsString::from_vec(socket)),
        }
    } else {
        let (host, port) = parse_authority(authority)?;
        NbdAddress::Tcp { host, port }
    };
    Ok(NbdUri { address, export })
}

/// Splits `host[:port]` (or `[v6]:port`), decoding the host.
fn parse_authority(authority: &str) -> Result<(String, u16), String> {
    if authority.contains('@') {
        return Err(
            "user names in NBD URIs serve TLS authentication, which this client does not support"
                .into(),
        );
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((host, after)) = v6.split_once(']') else {
            return Err(format!("unclosed '[' in {authority:?}"));
        };
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("unexpected {p:?} after the IPv6 address"))?,
            ),
        };
        (host.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (
                String::from_utf8(percent_decode(h)?)
                    .map_err(|_| "the host name is not valid UTF-8".to_string())?,
                Some(p),
            ),
            None => (
                String::from_utf8(percent_decode(authority)?)
                    .map_err(|_| "the host name is not valid UTF-8".to_string())?,
                None,
            ),
        }
    };
    if host.is_empty() {
        return Err("no host: write nbd://host[:port]/export".into());
    }
    let port = match port {
        // RFC 3986 allows an empty port, meaning the default.
        None | Some("") => NbdDevice::DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n != 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err(format!("bad port {p:?}: expected a number from 1 to 65535")),
        },
    };
    Ok((host, port))
}

/// Decodes `%XX` escapes (RFC 3986 section 2.1).
fn percent_decode(s: &str) -> Result<Vec<u8>, String> {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let pair = bytes
                .get(i + 1..i + 3)
                .and_then(|p| Some((hex(p[0])?, hex(p[1])?)));
            let Some((hi, lo)) = pair else {
                return Err(format!(
                    "bad percent-encoding at byte {i} of {s:?}: '%' must be followed by two hex digits"
                ));
            };
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16, export: &str) -> NbdUri {
        NbdUri {
            address: NbdAddress::Tcp {
                host: host.into(),
                port,
            },
            export: export.into(),
        }
    }

    fn unix(socket: &str, export: &str) -> NbdUri {
        NbdUri {
            address: NbdAddress::Unix {
                socket: socket.into(),
            },
            export: export.into(),
        }
    }

    #[test]
    fn uris_follow_the_nbd_uri_specification() {
        let cases = [
            ("nbd://example.com/disk", tcp("example.com", 10809, "disk")),
            ("nbd://example.com", tcp("example.com", 10809, "")),
            ("nbd://example.com/", tcp("example.com", 10809, "")),
            (
                "nbd://example.com//disk",
                tcp("example.com", 10809, "/disk"),
            ),
            (
                "nbd://example.com/hello%20world",
                tcp("example.com", 10809, "hello world"),
            ),
            ("nbd://127.0.0.1:1234/x", tcp("127.0.0.1", 1234, "x")),
            ("nbd://127.0.0.1:/x", tcp("127.0.0.1", 10809, "x")),
            ("nbd://[::1]:2000/ring", tcp("::1", 2000, "ring")),
            ("nbd://[::1]/ring", tcp("::1", 10809, "ring")),
            ("NBD://host/a/b", tcp("host", 10809, "a/b")),
            (
                "nbd+unix:///disk?socket=/run/nbd.sock",
                unix("/run/nbd.sock", "disk"),
            ),
            ("nbd+unix://?socket=sock", unix("sock", "")),
            (
                "nbd+unix:///?socket=%2Ftmp%2Fa%20b.sock",
                unix("/tmp/a b.sock", ""),
            ),
            ("nbd+unix:///?socket=%00abstract", unix("\0abstract", "")),
        ];
        for (uri, expected) in cases {
            assert_eq!(NbdUri::parse(uri).unwrap(), expected, "{uri}");
        }
    }

    #[test]
    fn bad_uris_are_refused_with_the_reason() {
        let cases = [
            ("nbds://host/x", "TLS"),
            ("nbds+unix:///x?socket=s", "TLS"),
            ("nbd+vsock://1:2/x", "vsock"),
            ("http://host/x", "unsupported scheme"),
            ("nbd://host:99999/x", "bad port"),
            ("nbd://host:0/x", "bad port"),
            ("nbd://host:+1/x", "bad port"),
            ("nbd://host:x1/x", "bad port"),
            ("nbd:///x", "no host"),
            ("nbd://user@host/x", "TLS"),
            ("nbd://[::1/x", "unclosed"),
            ("nbd://[::1]x/y", "after the IPv6"),
            ("nbd://host/a%zz", "percent-encoding"),
            ("nbd://host/a%2", "percent-encoding"),
            ("nbd://host/a%00b", "NUL"),
            ("nbd://host/a%ff", "UTF-8"),
            ("nbd://host/x#frag", "fragment"),
            ("nbd://host/x?socket=/s", "nbd+unix"),
            ("nbd://host/x?tls-type=x509", "TLS"),
            ("nbd://host/x?timeout=3", "unknown query parameter"),
            ("nbd+unix:///x", "need the socket"),
            ("nbd+unix:///x?socket=", "empty"),
            ("nbd+unix:///x?socket=a&socket=b", "twice"),
            ("nbd+unix://host/x?socket=s", "no host"),
        ];
        for (uri, reason) in cases {
            let e = NbdUri::parse(uri).unwrap_err();
            assert!(matches!(e, Error::InvalidUri { .. }), "{uri}: {e:?}");
            let msg = e.to_string();
            assert!(msg.contains(uri) && msg.contains(reason), "{uri}: {msg}");
        }
        let long = format!("nbd://host/{}", "x".repeat(MAX_EXPORT_NAME + 1));
        assert!(NbdUri::parse(&long)
            .unwrap_err()
            .to_string()
            .contains("at most"));
    }

    #[test]
    fn only_scheme_colon_slash_slash_specs_are_uris() {
        assert!(looks_like_uri("nbd://h/x"));
        assert!(looks_like_uri("nbd+unix:///x?socket=s"));
        assert!(looks_like_uri("http://x"));
        assert!(!looks_like_uri("/dev/sdb"));
        assert!(!looks_like_uri("ring.img"));
        assert!(!looks_like_uri("./nbd:/x"));
        assert!(!looks_like_uri("dir/nbd://x"));
        assert!(!looks_like_uri("://x"));
    }
}
