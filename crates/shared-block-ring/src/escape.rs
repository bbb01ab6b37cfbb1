//! Escaping bytes read from a device before they reach a terminal or a log.
//!
//! Everything on a device is untrusted: a hostile ring could hold terminal
//! control sequences in its debug text or items. Only printable ASCII passes
//! through unchanged.

use std::fmt;

/// Displays bytes with everything but printable ASCII escaped: `\n`, `\t`,
/// `\r`, `\\`, `\"` and `\xNN` for the rest.
#[derive(Clone, Copy)]
pub struct EscapedBytes<'a>(pub &'a [u8]);

impl fmt::Display for EscapedBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in self.0 {
            match b {
                b'\n' => f.write_str("\\n")?,
                b'\t' => f.write_str("\\t")?,
                b'\r' => f.write_str("\\r")?,
                b'\\' => f.write_str("\\\\")?,
                b'"' => f.write_str("\\\"")?,
                0x20..=0x7e => fmt::Write::write_char(f, b as char)?,
                _ => write!(f, "\\x{b:02x}")?,
            }
        }
        Ok(())
    }
}

impl fmt::Debug for EscapedBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Shorthand for [`EscapedBytes`].
pub fn escape_bytes(bytes: &[u8]) -> EscapedBytes<'_> {
    EscapedBytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_never_pass_through() {
        let hostile = b"ok \x1b[2J\x07\x00\xff\n\"\\";
        let s = escape_bytes(hostile).to_string();
        assert_eq!(s, "ok \\x1b[2J\\x07\\x00\\xff\\n\\\"\\\\");
        assert!(s.bytes().all(|b| (0x20..=0x7e).contains(&b)));
    }
}
