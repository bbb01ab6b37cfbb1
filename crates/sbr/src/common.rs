//! What every command shares: device arguments, opening, exit codes and
//! error reporting.

use std::fmt;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use shared_block_ring::device::{self, BlockDevice, Io};
use shared_block_ring::inspect;
use shared_block_ring::{Durability, Error, FileOptions, Options};

/// Exit status for success.
pub const EXIT_OK: u8 = 0;
/// Exit status for a fatal error.
pub const EXIT_FATAL: u8 = 1;
/// Exit status for a usage error (clap uses it too).
pub const EXIT_USAGE: u8 = 2;
/// Exit status for "try again later" (EX_TEMPFAIL): the ring is full with
/// `--no-wait`, a handshake is not yet acknowledged, a `--wait` timed out.
pub const EXIT_RETRY: u8 = 75;
/// Exit status for "the ring is suspended" (EX_UNAVAILABLE).
pub const EXIT_SUSPENDED: u8 = 69;

/// A command's failure: one line for stderr and an exit status.
#[derive(Debug)]
pub struct Failure {
    /// The exit status.
    pub code: u8,
    /// The message, without the `error: ` prefix.
    pub message: String,
}

impl Failure {
    /// A failure with an explicit status.
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// A library error on `device`, with the status its kind calls for.
    pub fn ring(device: &str, e: &Error) -> Failure {
        let code = match e {
            Error::Retry(_) => EXIT_RETRY,
            Error::Suspended => EXIT_SUSPENDED,
            _ => EXIT_FATAL,
        };
        Failure::new(code, format!("{device}: {e}"))
    }

    /// Standard output was closed by its reader (`sbr ... | head -1`):
    /// not an error for a command-line tool. The command stops and exits 0
    /// without a message.
    pub fn output_closed() -> Failure {
        Failure::new(EXIT_OK, "")
    }

    /// A failure to write standard output: quiet for a closed pipe, fatal
    /// otherwise.
    pub fn output(e: &std::io::Error) -> Failure {
        if is_broken_pipe(e) {
            Failure::output_closed()
        } else {
            Failure::new(EXIT_FATAL, format!("writing standard output: {e}"))
        }
    }

    /// Prints the message (if any) and returns the exit status.
    pub fn report(&self) -> ExitCode {
        // The message may quote device contents; they are escaped where
        // they are formatted, so this is plain text. A closed stderr is
        // ignored: there is nowhere left to say anything.
        if !self.message.is_empty() {
            let _ = writeln!(std::io::stderr(), "error: {}", self.message);
        }
        ExitCode::from(self.code)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The result type of every command.
pub type CmdResult = Result<(), Failure>;

/// Turns a library result into a command result for `device`.
pub trait OnDevice<T> {
    /// Attaches the device name to the error.
    fn on(self, device: &str) -> Result<T, Failure>;
}

impl<T> OnDevice<T> for Result<T, Error> {
    fn on(self, device: &str) -> Result<T, Failure> {
        self.map_err(|e| Failure::ring(device, &e))
    }
}

/// The device and how to open it: shared by every command.
#[derive(Args, Debug, Clone)]
pub struct DeviceArgs {
    // The help text is given as an attribute, not a doc comment: rustdoc
    // would read "[:port]" as a link.
    #[arg(
        value_name = "DEVICE",
        help = "The ring's device: a regular file, a block device (/dev/loop0, /dev/sdb), \
                or a network block device URI (nbd://host[:port]/export, \
                nbd+unix:///export?socket=PATH)"
    )]
    pub device: String,

    /// How to open it.
    #[command(flatten)]
    pub how: OpenArgs,
}

/// How to open a device and which durability mode to use: the options
/// every device command takes (`sbr bench` too, which has no single
/// DEVICE argument).
#[derive(Args, Debug, Clone, Default)]
pub struct OpenArgs {
    /// Sector size in bytes; default: the device's own (512 for files).
    /// Both sides of a ring must use the same.
    #[arg(long, value_name = "BYTES")]
    pub sector_size: Option<usize>,

    /// What an advance survives: power-loss (flush before publishing; the
    /// default) or process-crash (no flushes, the original's behaviour).
    // Optional, with the default applied by `durability()`, so that a
    // command can tell "not given" apart (`sbr bench` then runs both).
    #[arg(long, value_name = "MODE")]
    pub durability: Option<Durability>,

    /// Use the page cache instead of O_DIRECT (for filesystems that refuse
    /// O_DIRECT: tmpfs before Linux 6.6, some FUSE and network
    /// filesystems). Only coherent on a single host.
    #[arg(long)]
    pub buffered: bool,

    /// How files and block devices do their I/O: uring (io_uring: a
    /// command's independent requests in flight together), sync
    /// (pread/pwrite, one system call each), or auto (io_uring where the
    /// kernel offers it; the default, which the environment variable
    /// SHARED_BLOCK_RING_IO=sync|uring overrides). NBD devices ignore it.
    #[arg(long, value_name = "MODE")]
    pub io: Option<IoArg>,
}

/// The values of `--io`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoArg {
    /// io_uring where the kernel offers it.
    Auto,
    /// pread/pwrite.
    Sync,
    /// io_uring; opening fails without it.
    Uring,
}

impl From<IoArg> for Io {
    fn from(a: IoArg) -> Io {
        match a {
            IoArg::Auto => Io::Auto,
            IoArg::Sync => Io::Sync,
            IoArg::Uring => Io::Uring,
        }
    }
}

impl OpenArgs {
    /// The options to open a device with (read-write).
    pub fn file_options(&self) -> FileOptions {
        let options = FileOptions::new()
            .direct(!self.buffered)
            .io(self.io.map_or(Io::Auto, Io::from));
        match self.sector_size {
            Some(ss) => options.sector_size(ss),
            None => options,
        }
    }

    /// The durability mode: power-loss unless given.
    pub fn durability(&self) -> Durability {
        self.durability.unwrap_or_default()
    }
}

/// How a command attaches its side: the names it writes into its state
/// sector, which `sbr diagnostics` shows ("QUEUE used by CLIENT"),
/// whether it takes a format-2 side over, and how often it looks at the
/// ring while it waits for the other side.
#[derive(Args, Debug, Clone)]
pub struct Names {
    /// Queue name written into this side's state sector.
    #[arg(long, default_value = "unknown")]
    pub queue: String,

    /// Client name written into this side's state sector.
    #[arg(long, default_value = "unknown")]
    pub client: String,

    /// Format 2: take this side over if its owner's lease has expired (a
    /// live owner is never taken over; see `sbr diagnostics` for who owns
    /// it and when it was last seen).
    #[arg(long)]
    pub take_over: bool,

    /// The longest wait between two looks at the ring while waiting for
    /// the other side (from 100us to 60s). Default: 20ms on a local file or
    /// block device, whose writes from this host wake the wait at once (the
    /// looks are only for writers on other hosts), 4ms elsewhere (NBD).
    /// Shorter sees another host's writes sooner, at some CPU per look.
    #[arg(long, value_name = "DURATION", value_parser = parse_poll_interval)]
    pub poll_interval: Option<Duration>,
}

impl Names {
    /// `options` with these names (and the poll interval, if given).
    pub fn apply(&self, options: Options) -> Options {
        let options = options
            .queue(&self.queue)
            .client(&self.client)
            .take_over(self.take_over);
        match self.poll_interval {
            Some(d) => options.max_backoff(d).max_backoff_notified(d),
            None => options,
        }
    }
}

/// Parses `--poll-interval`: a duration from 100us to 60s (shorter would
/// spin, longer would look stuck).
pub fn parse_poll_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if !(Duration::from_micros(100)..=Duration::from_secs(60)).contains(&d) {
        return Err(format!("{s:?} is outside 100us to 60s"));
    }
    Ok(d)
}

impl DeviceArgs {
    /// Opens the device read-write (or read-only).
    pub fn open(&self, read_only: bool) -> Result<Box<dyn BlockDevice>, Failure> {
        let options = self.how.file_options().read_only(read_only);
        device::open(&self.device, &options).map_err(|e| Failure::ring(&self.device, &e))
    }

    /// The failure for a library error on this device. A ring that looks
    /// corrupt is checked for a wrong sector size: when its state is valid
    /// at another size, the message says so and names the option.
    pub fn failure(&self, e: &Error) -> Failure {
        let mut f = Failure::ring(&self.device, e);
        if matches!(e, Error::Corrupt(_)) {
            if let Some(hint) = self.sector_size_hint() {
                f.message = format!("{}; {hint}", f.message);
            }
        }
        f
    }

    /// "the ring's state is valid with N-byte sectors: pass --sector-size
    /// N" when a ring on this device was made with another sector size
    /// than the one it is opened with.
    pub fn sector_size_hint(&self) -> Option<String> {
        let device = self.open(true).ok()?;
        let size = inspect::detect_sector_size(&*device).ok()??;
        Some(format!(
            "the ring's state is valid with {size}-byte sectors: pass --sector-size {size}"
        ))
    }

    /// Ring options with this durability mode.
    pub fn options(&self) -> Options {
        Options::new().durability(self.how.durability())
    }
}

/// Parses a size such as `10MiB`, `1G` or `65536`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    parse_size::Config::new()
        .with_binary()
        .parse_size(s)
        .map_err(|e| format!("invalid size {s:?}: {e}"))
}

/// Parses a duration such as `5s`, `250ms` or `1m`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// True when a write failed because the reader went away; not an error
/// for a command-line filter.
pub fn is_broken_pipe(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}

/// Writes one line of a command's output to standard output. Unlike
/// `println!`, which panics when the reader has gone away, a closed pipe
/// becomes [`Failure::output_closed`]: the command stops and exits 0.
pub fn write_line(args: fmt::Arguments<'_>) -> CmdResult {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .map_err(|e| Failure::output(&e))
}

/// `println!` for command output, returning a [`CmdResult`] (see
/// [`write_line`]); use it with `?`.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::common::write_line(format_args!($($arg)*))
    };
}
pub(crate) use outln;

#[cfg(test)]
mod tests {
    use clap::Parser;
    use shared_block_ring::{create, FileDevice, Producer};

    use super::*;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        names: Names,
    }

    /// The longest sleep of a producer's wait for space on a ring in a
    /// local file, attached with the options `args` give.
    fn longest_sleep(args: &[&str]) -> Duration {
        let cmd = Cmd::try_parse_from(std::iter::once("t").chain(args.iter().copied())).unwrap();
        let f = system_tests::ring_file(64 << 10);
        let dev = FileDevice::open(f.path()).unwrap();
        create(&dev).unwrap();
        let p = Producer::attach(dev, cmd.names.apply(Options::new())).unwrap();
        let mut backoff = p.backoff(None);
        let mut longest = Duration::ZERO;
        for _ in 0..40 {
            backoff.wait_with(|d| {
                longest = longest.max(d);
                false
            });
        }
        longest
    }

    #[test]
    fn poll_interval_sets_the_longest_wait_between_looks() {
        assert_eq!(longest_sleep(&[]), Duration::from_millis(20));
        assert_eq!(
            longest_sleep(&["--poll-interval", "3ms"]),
            Duration::from_millis(3)
        );
        assert_eq!(
            longest_sleep(&["--poll-interval", "1s"]),
            Duration::from_secs(1)
        );
        for bad in ["10us", "0s", "2m", "soon"] {
            let e = Cmd::try_parse_from(["t", "--poll-interval", bad])
                .err()
                .unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(e.to_string().contains(bad), "{bad}: {e}");
        }
    }
}
