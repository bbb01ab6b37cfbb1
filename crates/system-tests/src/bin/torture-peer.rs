//! A producer or consumer process for the kill -9 torture test: it runs
//! until killed, and reports on stdout (one flushed line each) what the
//! library has told it, so that the test can check the promise across
//! SIGKILLs.
//!
//! ```text
//! torture-peer produce DEVICE SEED MAX_LEN DURABILITY
//! torture-peer consume DEVICE SEED MAX_LEN DURABILITY
//! torture-peer drain   DEVICE SEED MAX_LEN DURABILITY
//! ```
//!
//! The stream is `system_tests::item(SEED, i, MAX_LEN)` for i = 0, 1, ...;
//! item i starts at the sum of the stream lengths of the items before it,
//! so either side can tell from a position alone which item it is at.
//!
//! Lines (indexes count items from the start of the stream):
//! * `start I`: attached; the published (producer) or released (consumer)
//!   position is the start of item I.
//! * `advanced I`: a producer `advance` returned: items before I published.
//! * `delivered I J`: the consumer read items I..J, each intact and where
//!   it belongs (checked here, byte for byte).
//! * `released J`: a consumer `advance` returned: items before J released.
//! * `drained J`: (drain) the ring is empty at item J; the process exits.
//! * `BAD ...`: a violation; the process exits with status 3.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use shared_block_ring::{layout, Consumer, Durability, Error, FileDevice, Options, Producer};
use system_tests::{item, item_len, mix};

struct Stream {
    seed: u64,
    max_len: usize,
}

impl Stream {
    fn stream_len(&self, i: u64) -> u64 {
        layout::item_stream_len(item_len(self.seed, i, self.max_len) as u64)
    }

    /// The index of the item starting at `position`, if one does.
    fn index_of(&self, position: u64) -> Option<u64> {
        let (mut i, mut at) = (0u64, 0u64);
        while at < position {
            at += self.stream_len(i);
            i += 1;
        }
        (at == position).then_some(i)
    }
}

fn say(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    // If the test has gone away there is no one to tell.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        eprintln!("usage: torture-peer produce|consume|drain DEVICE SEED MAX_LEN DURABILITY");
        return ExitCode::from(2);
    }
    let parse = |s: &str| s.parse::<u64>().map_err(|e| format!("{s}: {e}"));
    let run = || -> Result<(), String> {
        let stream = Stream {
            seed: parse(&args[3])?,
            max_len: parse(&args[4])? as usize,
        };
        let durability: Durability = args[5].parse()?;
        let options = Options::new()
            .durability(durability)
            .max_backoff(Duration::from_millis(1));
        match args[1].as_str() {
            "produce" => produce(&args[2], &stream, options),
            "consume" => consume(&args[2], &stream, options, false),
            "drain" => consume(&args[2], &stream, options, true),
            other => Err(format!("unknown role {other}")),
        }
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.starts_with("BAD") => {
            say(format_args!("{e}"));
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("torture-peer {}: {e}", args[1]);
            ExitCode::FAILURE
        }
    }
}

/// Attaches, waiting while the previous (killed) holder's lock goes away.
fn attach<T>(mut f: impl FnMut() -> Result<T, Error>) -> Result<T, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match f() {
            Err(Error::Locked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1))
            }
            other => return other.map_err(|e| format!("attach: {e}")),
        }
    }
}

fn produce(device: &str, stream: &Stream, options: Options) -> Result<(), String> {
    let mut p = attach(|| Producer::attach(FileDevice::open(device)?, options.clone()))?;
    let published = p.published().offset();
    let mut next = stream
        .index_of(published)
        .ok_or_else(|| format!("BAD producer position {published} is not an item boundary"))?;
    say(format_args!("start {next}"));
    let mut batch = 0u64;
    loop {
        let it = item(stream.seed, next, stream.max_len);
        match p.push(&it) {
            Ok(_) => {
                next += 1;
                batch += 1;
            }
            Err(e) if e.is_retry() => {
                if p.tail() > p.published() {
                    // Publish what is pending so the consumer can make room.
                    batch = u64::MAX;
                } else {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            Err(e) => return Err(format!("push {next}: {e}")),
        }
        // Publish after a pseudo-random number (1..=8) of items.
        if batch > mix(next ^ stream.seed) % 8 && p.tail() > p.published() {
            p.advance(p.tail())
                .map_err(|e| format!("advance to {next}: {e}"))?;
            say(format_args!("advanced {next}"));
            batch = 0;
        }
    }
}

fn consume(device: &str, stream: &Stream, options: Options, drain: bool) -> Result<(), String> {
    let mut c = attach(|| Consumer::attach(FileDevice::open(device)?, options.clone()))?;
    let released = c.position().offset();
    let mut next = stream
        .index_of(released)
        .ok_or_else(|| format!("BAD consumer position {released} is not an item boundary"))?;
    say(format_args!("start {next}"));
    loop {
        let from = next;
        let mut expected_at = c.position().offset();
        let mut bad = None;
        let end = c
            .for_each_bytes(c.position(), |start, after, bytes| {
                let want = item(stream.seed, next, stream.max_len);
                if bad.is_none() && (start.offset() != expected_at || bytes != want) {
                    bad = Some(format!(
                        "BAD item {next} at position {}: {} bytes, expected {} bytes at {expected_at}",
                        start.offset(),
                        bytes.len(),
                        want.len()
                    ));
                }
                expected_at = after.offset();
                next += 1;
                Ok(())
            })
            .map_err(|e| format!("reading item {from}: {e}"))?;
        if let Some(b) = bad {
            return Err(b);
        }
        if next == from {
            if drain {
                say(format_args!("drained {next}"));
                return Ok(());
            }
            match c.wait_for_item(c.position(), Some(Duration::from_millis(50))) {
                Ok(()) => {}
                Err(e) if e.is_retry() => {}
                Err(e) => return Err(format!("waiting for item {next}: {e}")),
            }
            continue;
        }
        say(format_args!("delivered {from} {next}"));
        c.advance(end)
            .map_err(|e| format!("advance to {next}: {e}"))?;
        say(format_args!("released {next}"));
    }
}
