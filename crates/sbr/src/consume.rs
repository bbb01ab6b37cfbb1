//! `sbr consume`: print items, one per line, and release them; or hand
//! them to a command (`--exec`), or only look (`--peek`).
//!
//! Items are printed, standard output is written, and only then is the
//! consumer advanced past them: an item released was printed. SIGINT and
//! SIGTERM are noted and acted on between batches, after the advance: an
//! item printed is released. (SIGKILL cannot be caught: items printed since
//! the last advance are then printed again by the next consumer; see
//! [`crate::lines`] for what the output holds after such a kill.)

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Serialize;
use shared_block_ring::escape::escape_bytes;
use shared_block_ring::{BlockDevice, Consumer, Error, Position, RetryReason};

use crate::common::{parse_duration, CmdResult, DeviceArgs, Failure, Names, OnDevice, EXIT_FATAL};
use crate::exec::Run;
use crate::lines::LineOut;

/// Arguments of `sbr consume`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    dev: DeviceArgs,

    #[command(flatten)]
    names: Names,

    /// Wait for more items instead of exiting when the ring is empty;
    /// SIGINT or SIGTERM ends it cleanly.
    #[arg(long)]
    follow: bool,

    /// With --follow: exit 0 once no item has arrived for this long (5s,
    /// 250ms, 1m).
    #[arg(long, value_name = "D", value_parser = parse_duration, requires = "follow")]
    idle_timeout: Option<Duration>,

    /// Stop after N items.
    #[arg(long, value_name = "N")]
    max: Option<u64>,

    /// One JSON object per item: position, next, len, and text (UTF-8) or
    /// base64.
    #[arg(long)]
    json: bool,

    /// End each printed item with a NUL byte instead of a newline (with
    /// --exec: end each item on the command's input with one).
    #[arg(long, conflicts_with = "json")]
    null: bool,

    /// How to print item bytes: auto (escape control characters when
    /// standard output is a terminal), always, or never (raw bytes).
    #[arg(long, default_value = "auto", value_parser = ["auto", "always", "never"])]
    escape: String,

    /// Print items without releasing them: the ring is left as it was.
    #[arg(long)]
    peek: bool,

    /// With --peek: start at this position (a `position` or `next` from
    /// --json) instead of the consumer's.
    #[arg(long, value_name = "POSITION", requires = "peek")]
    from: Option<u64>,

    /// Run CMD (with `sh -c`) for each item, the item and a newline (a NUL
    /// with --null) on its standard input, and release the item only once
    /// CMD exits 0. SBR_POSITION, SBR_NEXT and SBR_ITEMS are set. On a
    /// failure, stop (exit 1) with the item still in the ring, or retry
    /// with --retry.
    #[arg(long, value_name = "CMD", conflicts_with = "json")]
    exec: Option<String>,

    /// With --exec: give CMD up to N items per run (one per line).
    #[arg(long, value_name = "N", requires = "exec",
          value_parser = clap::value_parser!(u64).range(1..))]
    batch: Option<u64>,

    /// With --exec: run CMD again up to N times on items it failed on,
    /// --retry-delay apart, before stopping.
    #[arg(long, value_name = "N", default_value_t = 0, requires = "exec")]
    retry: u32,

    /// With --retry: the pause before each new attempt.
    #[arg(long, value_name = "D", default_value = "1s", value_parser = parse_duration, requires = "exec")]
    retry_delay: Duration,
}

#[derive(Serialize)]
struct JsonItem<'a> {
    position: Position,
    next: Position,
    len: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    base64: Option<String>,
}

/// Most items printed between two advances.
const BATCH_ITEMS: u64 = 4096;
/// How often a waiting consumer checks for a signal.
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// How each item is printed.
struct Printer {
    json: bool,
    escape: bool,
    terminator: u8,
}

impl Printer {
    fn print(
        &self,
        out: &mut LineOut,
        at: Position,
        next: Position,
        bytes: &[u8],
    ) -> std::io::Result<()> {
        out.line(|buf| {
            if self.json {
                let text = std::str::from_utf8(bytes).ok();
                let item = JsonItem {
                    position: at,
                    next,
                    len: bytes.len(),
                    text,
                    base64: text
                        .is_none()
                        .then(|| base64::engine::general_purpose::STANDARD.encode(bytes)),
                };
                serde_json::to_writer(&mut *buf, &item).map_err(std::io::Error::from)?;
                buf.push(b'\n');
            } else if self.escape {
                write!(buf, "{}", escape_bytes(bytes))?;
                buf.push(self.terminator);
            } else {
                buf.extend_from_slice(bytes);
                buf.push(self.terminator);
            }
            Ok(())
        })
    }
}

/// Runs `sbr consume`.
pub fn run(a: Args) -> CmdResult {
    let name = a.dev.device.clone();
    let stop = Arc::new(AtomicBool::new(false));
    // Set by the first signal: a second one while a batch finishes ends
    // the process at once.
    let armed = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // `stop` first, so that no signal is lost from the moment the
        // default action is replaced. With the shutdown check registered
        // first on the same flag (signal-hook's own example), a signal
        // that came between the two calls ran only the check and was
        // forgotten, and a `--follow` consumer then never stopped.
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .and_then(|_| {
                signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&armed))
            })
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&armed)))
            .map_err(|e| Failure::new(EXIT_FATAL, format!("installing signal handlers: {e}")))?;
    }
    let device = a.dev.open(false)?;
    let options = a.names.apply(a.dev.options());
    let mut consumer = Consumer::attach(device, options).map_err(|e| a.dev.failure(&e))?;
    let mut at = match a.from {
        Some(p) => Position::new(p),
        None => consumer.position(),
    };
    let terminator = if a.null { 0 } else { b'\n' };
    let max = a.max.unwrap_or(u64::MAX);
    let mut done = 0u64;
    let mut last_item = Instant::now();
    let printer = Printer {
        json: a.json,
        escape: match a.escape.as_str() {
            "always" => true,
            "never" => false,
            _ => std::io::stdout().is_terminal(),
        },
        terminator,
    };
    let mut out = LineOut::stdout();
    while done < max && !stop.load(Ordering::Relaxed) {
        let step = match &a.exec {
            Some(command) => {
                let per_run = a.batch.unwrap_or(1).min(max - done);
                let run = collect_run(&mut consumer, at, per_run, command, terminator).on(&name)?;
                match run {
                    Some(run) => {
                        execute(&a, &name, &run, &stop)?;
                        Some((run.next, run.count as u64))
                    }
                    None => None,
                }
            }
            None => print_batch(&mut consumer, &mut out, &printer, at, max - done).on(&name)?,
        };
        if let Some((next, n)) = step {
            if !a.peek {
                consumer.advance(next).on(&name)?;
            }
            at = next;
            done += n;
            last_item = Instant::now();
            continue;
        }
        if !a.follow {
            break;
        }
        let mut wait = SIGNAL_CHECK;
        if let Some(idle) = a.idle_timeout {
            let left = idle.saturating_sub(last_item.elapsed());
            if left.is_zero() {
                break;
            }
            wait = wait.min(left);
        }
        match consumer.wait_for_item(at, Some(wait)) {
            Ok(()) | Err(Error::Retry(RetryReason::Empty)) => {}
            Err(e) => return Err(Failure::ring(&name, &e)),
        }
        // Following an idle ring: keep a format-2 side's lease.
        consumer.heartbeat().on(&name)?;
    }
    tracing::info!(items = done, "consumed");
    Ok(())
}

/// What a batch step failed on: the ring, or standard output.
enum StepError {
    Ring(Error),
    Output(std::io::Error),
}

trait OnStep<T> {
    fn on(self, device: &str) -> Result<T, Failure>;
}

impl<T> OnStep<T> for Result<T, StepError> {
    fn on(self, device: &str) -> Result<T, Failure> {
        self.map_err(|e| match e {
            StepError::Ring(e) => Failure::ring(device, &e),
            // Nothing of this batch is released: it may not have reached
            // the reader, so the next consumer delivers it again. A reader
            // that went away (`| head`) is a clean end.
            StepError::Output(e) => Failure::output(&e),
        })
    }
}

/// Prints up to `limit` items (and at most [`BATCH_ITEMS`]) from `at` and
/// writes them out; returns the position after them and how many, or
/// `None` when no item is published at `at`.
fn print_batch<D: BlockDevice>(
    consumer: &mut Consumer<D>,
    out: &mut LineOut,
    printer: &Printer,
    mut at: Position,
    limit: u64,
) -> Result<Option<(Position, u64)>, StepError> {
    let mut n = 0u64;
    while n < limit.min(BATCH_ITEMS) {
        let (next, bytes) = match consumer.peek_bytes(at) {
            Ok(item) => item,
            Err(Error::Retry(RetryReason::Empty)) => break,
            Err(e) => return Err(StepError::Ring(e)),
        };
        printer
            .print(out, at, next, bytes)
            .map_err(StepError::Output)?;
        at = next;
        n += 1;
    }
    out.flush().map_err(StepError::Output)?;
    Ok((n > 0).then_some((at, n)))
}

/// Gathers up to `limit` items from `at` as the input of one run of
/// `command`, or `None` when no item is published at `at`.
fn collect_run<'c, D: BlockDevice>(
    consumer: &mut Consumer<D>,
    at: Position,
    limit: u64,
    command: &'c str,
    terminator: u8,
) -> Result<Option<Run<'c>>, StepError> {
    let mut run = Run {
        command,
        input: Vec::new(),
        first: at,
        next: at,
        count: 0,
    };
    while (run.count as u64) < limit {
        let (next, bytes) = match consumer.peek_bytes(run.next) {
            Ok(item) => item,
            Err(Error::Retry(RetryReason::Empty)) => break,
            Err(e) => return Err(StepError::Ring(e)),
        };
        run.input.extend_from_slice(bytes);
        run.input.push(terminator);
        run.next = next;
        run.count += 1;
    }
    Ok((run.count > 0).then_some(run))
}

/// Runs the command on `run`, retrying as asked; an error once it has
/// failed for the last time (the items are then not released).
fn execute(a: &Args, name: &str, run: &Run<'_>, stop: &AtomicBool) -> CmdResult {
    let mut attempt = 0;
    loop {
        let why = match run.once() {
            Ok(()) => return Ok(()),
            Err(why) => why,
        };
        if attempt < a.retry && !stop.load(Ordering::Relaxed) {
            attempt += 1;
            tracing::warn!(command = run.command, position = %run.first, attempt, "{why}; retrying");
            sleep_unless(stop, a.retry_delay);
            continue;
        }
        let items = if run.count == 1 {
            format!("the item at position {}", run.first)
        } else {
            format!(
                "{} items at positions {}..{}",
                run.count, run.first, run.next
            )
        };
        let retried = match attempt {
            0 => String::new(),
            1 => " after 1 retry".to_string(),
            n => format!(" after {n} retries"),
        };
        return Err(Failure::new(
            EXIT_FATAL,
            format!(
                "{name}: `{}` {why} on {items}{retried}; not released (the next consumer gets it again)",
                run.command
            ),
        ));
    }
}

/// Sleeps for `d`, waking early once `stop` is set.
fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let end = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(SIGNAL_CHECK));
    }
}
