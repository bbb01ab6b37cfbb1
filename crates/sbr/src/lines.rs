//! Standard output in whole lines, for `sbr consume`.
//!
//! A consumer killed with SIGKILL cannot finish what it was printing. So
//! that its output still ends with a whole line, a line never spans two
//! write(2) calls: lines are gathered in a buffer of at most
//! [`PIPE_BUF`](libc::PIPE_BUF) bytes, written when the next line would not
//! fit (or on [`flush`](LineOut::flush)), and a line longer than the buffer
//! is written on its own, whole, in one `write_all`. A write of at most
//! PIPE_BUF bytes to a pipe is all-or-nothing (POSIX), so a pipe never sees
//! part of a line shorter than that. What remains possible is said in the
//! README: a longer line to a pipe, or any write to a regular file, can be
//! cut by the kill inside the kernel.

use std::fs::File;
use std::io::{self, Write};
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;

/// Whole lines to standard output; see the module docs.
pub struct LineOut {
    /// File descriptor 1, written directly: `std::io::Stdout` would split
    /// a line without a newline (`--null`) at its own 1 KiB buffer.
    out: ManuallyDrop<File>,
    buf: Vec<u8>,
}

/// Largest write that holds several lines.
pub const CAPACITY: usize = libc::PIPE_BUF;

impl LineOut {
    /// Standard output.
    pub fn stdout() -> LineOut {
        // SAFETY: descriptor 1 stays open for the life of the process;
        // ManuallyDrop keeps this File from closing it.
        let out = ManuallyDrop::new(unsafe { File::from_raw_fd(1) });
        LineOut {
            out,
            buf: Vec::with_capacity(CAPACITY),
        }
    }

    /// Appends one line, which `line` writes into the buffer in full,
    /// terminator included. Writes out the lines before it first when it
    /// does not fit beside them.
    pub fn line(&mut self, line: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> io::Result<()> {
        let start = self.buf.len();
        if let Err(e) = line(&mut self.buf) {
            self.buf.truncate(start);
            return Err(e);
        }
        if self.buf.len() <= CAPACITY {
            return Ok(());
        }
        if start > 0 {
            let r = self.out.write_all(&self.buf[..start]);
            self.buf.drain(..start);
            r?;
        }
        if self.buf.len() > CAPACITY {
            // Larger than any buffer write: on its own, in one call.
            let r = self.out.write_all(&self.buf);
            self.buf.clear();
            r?;
        }
        Ok(())
    }

    /// Writes every buffered line.
    pub fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let r = self.out.write_all(&self.buf);
            self.buf.clear();
            r?;
        }
        Ok(())
    }
}
