//! `sbr consume --exec CMD`: hands items to a command and reports whether
//! it accepted them. The consumer releases items only after the command
//! exits 0 on them, so nothing it did not accept is lost: at least once,
//! like a Kafka consumer committing its offset after processing.

use std::io::Write;
use std::process::{Command, Stdio};

use shared_block_ring::Position;

/// One run of the command on a group of items.
pub struct Run<'a> {
    /// The shell command (run with `sh -c`).
    pub command: &'a str,
    /// The items, each followed by the terminator, as its standard input.
    pub input: Vec<u8>,
    /// The position of the first item.
    pub first: Position,
    /// The position after the last item.
    pub next: Position,
    /// How many items.
    pub count: usize,
}

impl Run<'_> {
    /// Runs the command once; `Err` says how it failed (for messages).
    /// Its standard output and error are this process's.
    pub fn once(&self) -> Result<(), String> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(self.command)
            .env("SBR_POSITION", self.first.to_string())
            .env("SBR_NEXT", self.next.to_string())
            .env("SBR_ITEMS", self.count.to_string())
            .stdin(Stdio::piped())
            .spawn()
            .map_err(|e| format!("could not be started: {e}"))?;
        let mut stdin = child.stdin.take();
        let input = self.input.clone();
        // Fed from a thread: a command that reads only part of its input
        // must not block the wait below. A command that does not read it
        // all closes the pipe; that is its business (its exit status
        // decides).
        let feeder = std::thread::spawn(move || {
            if let Some(s) = stdin.as_mut() {
                let _ = s.write_all(&input);
            }
        });
        let status = child
            .wait()
            .map_err(|e| format!("could not be waited for: {e}"))?;
        let _ = feeder.join();
        if status.success() {
            Ok(())
        } else {
            Err(format!("failed ({status})"))
        }
    }
}
