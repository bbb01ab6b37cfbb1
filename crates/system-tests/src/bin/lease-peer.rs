//! One side of a format-2 ring in its own process, for the owner-lease
//! tests, driven by commands on stdin.
//!
//! ```text
//! lease-peer DEVICE producer|consumer [--take-over]
//! ```
//!
//! DEVICE is anything `device::open` accepts (a file, a block device, an
//! NBD URI). The on-host role lock is not taken, as for two hosts sharing
//! a disk, which that lock cannot see: only the owner lease stands between
//! two peers. The peer attaches and prints `attached`, or `refused: ...`
//! and exits 2 (`Owned`) or 3 (`LeaseExpired`). Then it reads one command
//! per line, writing heartbeats every 20 ms while it waits:
//!
//! * `push TEXT` (producer): push TEXT and publish it; prints `ok`;
//! * `pop` (consumer): pop one item and release it; prints `item TEXT` or
//!   `empty`;
//! * `hang MS`: prints `hanging`, then does nothing at all for MS ms (a
//!   process that hangs, or a host that stops, without dying), then prints
//!   `ok`;
//! * `quit`: detaches and exits 0.
//!
//! When it finds it was displaced (at a heartbeat or a command) it prints
//! `displaced: MESSAGE` and exits 4; on any other error, `error: MESSAGE`
//! and exits 1.

use std::io::{self, BufRead, Write};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use shared_block_ring::device::{self, BlockDevice};
use shared_block_ring::{Consumer, Error, FileOptions, Options, Producer};

/// How often an idle peer calls `heartbeat` (which writes only when a
/// third of the lease has passed).
const IDLE_TICK: Duration = Duration::from_millis(20);

/// A device whose role locks are never taken.
struct NoLock(Box<dyn BlockDevice>);

impl BlockDevice for NoLock {
    fn sector_size(&self) -> usize {
        self.0.sector_size()
    }
    fn sectors(&self) -> u64 {
        self.0.sectors()
    }
    fn read(&self, sector: u64, buf: &mut [u8]) -> io::Result<()> {
        self.0.read(sector, buf)
    }
    fn write(&self, sector: u64, buf: &[u8]) -> io::Result<()> {
        self.0.write(sector, buf)
    }
    fn write_durable(&self, sector: u64, buf: &[u8]) -> io::Result<()> {
        self.0.write_durable(sector, buf)
    }
    fn flush(&self) -> io::Result<()> {
        self.0.flush()
    }
    fn describe(&self) -> String {
        self.0.describe()
    }
}

enum Handle {
    Producer(Producer<NoLock>),
    Consumer(Consumer<NoLock>),
}

impl Handle {
    fn heartbeat(&mut self) -> Result<(), Error> {
        match self {
            Handle::Producer(p) => p.heartbeat(),
            Handle::Consumer(c) => c.heartbeat(),
        }
    }
}

fn say(line: &str) {
    let mut out = io::stdout().lock();
    // The test may have stopped reading; the exit status still tells.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn fail(e: &Error) -> ExitCode {
    match e {
        Error::Displaced { .. } => {
            say(&format!("displaced: {e}"));
            ExitCode::from(4)
        }
        _ => {
            say(&format!("error: {e}"));
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 || args.len() > 4 {
        eprintln!("usage: lease-peer DEVICE producer|consumer [--take-over]");
        return ExitCode::from(1);
    }
    let take_over = args.get(3).is_some_and(|a| a == "--take-over");
    let options = Options::new().take_over(take_over);
    let dev = match device::open(&args[1], &FileOptions::new()) {
        Ok(d) => NoLock(d),
        Err(e) => return fail(&e),
    };
    let attached = match args[2].as_str() {
        "producer" => Producer::attach(dev, options).map(Handle::Producer),
        "consumer" => Consumer::attach(dev, options).map(Handle::Consumer),
        other => {
            eprintln!("lease-peer: unknown side {other}");
            return ExitCode::from(1);
        }
    };
    let mut handle = match attached {
        Ok(h) => h,
        Err(e @ Error::Owned { .. }) => {
            say(&format!("refused: owned: {e}"));
            return ExitCode::from(2);
        }
        Err(e @ Error::LeaseExpired { .. }) => {
            say(&format!("refused: lease expired: {e}"));
            return ExitCode::from(3);
        }
        Err(e) => return fail(&e),
    };
    say("attached");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    loop {
        let line = match rx.recv_timeout(IDLE_TICK) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Err(e) = handle.heartbeat() {
                    return fail(&e);
                }
                continue;
            }
            // stdin closed: as `quit`.
            Err(mpsc::RecvTimeoutError::Disconnected) => return ExitCode::SUCCESS,
        };
        let (cmd, arg) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let result = match (cmd, &mut handle) {
            ("push", Handle::Producer(p)) => p
                .push(arg.as_bytes())
                .and_then(|end| p.advance(end))
                .map(|()| "ok".to_string()),
            ("pop", Handle::Consumer(c)) => match c.pop() {
                Ok((next, item)) => c
                    .advance(next)
                    .map(|()| format!("item {}", String::from_utf8_lossy(&item))),
                Err(e) if e.is_retry() => Ok("empty".to_string()),
                Err(e) => Err(e),
            },
            ("hang", _) => {
                say("hanging");
                std::thread::sleep(Duration::from_millis(arg.parse().unwrap_or(0)));
                Ok("ok".to_string())
            }
            ("quit", _) => return ExitCode::SUCCESS,
            _ => {
                say(&format!("error: unknown command {line:?} for this side"));
                return ExitCode::from(1);
            }
        };
        match result {
            Ok(msg) => say(&msg),
            Err(e) => return fail(&e),
        }
    }
}
