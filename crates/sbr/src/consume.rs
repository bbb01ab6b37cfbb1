//! `sbr consume`: print items, one per line, and release them.
//!
//! Items are printed, standard output is flushed, and only then is the
//! consumer advanced past them: an item released was printed. SIGINT and
//! SIGTERM are noted and acted on between batches, after the advance: an
//! item printed is released. (SIGKILL cannot be caught: items printed since
//! the last advance are then printed again by the next consumer.)

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde::Serialize;
use shared_block_ring::escape::escape_bytes;
use shared_block_ring::{Consumer, Error, Position, RetryReason};

use crate::common::{is_broken_pipe, CmdResult, DeviceArgs, Failure, OnDevice, EXIT_FATAL};

/// Arguments of `sbr consume`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    dev: DeviceArgs,

    /// Wait for more items instead of exiting when the ring is empty;
    /// SIGINT or SIGTERM ends it cleanly.
    #[arg(long)]
    follow: bool,

    /// Stop after N items.
    #[arg(long, value_name = "N")]
    max: Option<u64>,

    /// One JSON object per item: position, next, len, and text (UTF-8) or
    /// base64.
    #[arg(long)]
    json: bool,

    /// End each printed item with a NUL byte instead of a newline.
    #[arg(long, conflicts_with = "json")]
    null: bool,

    /// How to print item bytes: auto (escape control characters when
    /// standard output is a terminal), always, or never (raw bytes).
    #[arg(long, default_value = "auto", value_parser = ["auto", "always", "never"])]
    escape: String,
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

/// Runs `sbr consume`.
pub fn run(a: Args) -> CmdResult {
    let name = a.dev.device.clone();
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while finishing a batch ends the process at once.
        signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&stop))
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&stop)))
            .map_err(|e| Failure::new(EXIT_FATAL, format!("installing signal handlers: {e}")))?;
    }
    let device = a.dev.open(false)?;
    let mut consumer = Consumer::attach(device, a.dev.options()).on(&name)?;
    let stdout = std::io::stdout();
    let escape = match a.escape.as_str() {
        "always" => true,
        "never" => false,
        _ => stdout.is_terminal(),
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    let terminator = if a.null { b"\0" } else { b"\n" };
    let max = a.max.unwrap_or(u64::MAX);
    let mut printed = 0u64;
    while printed < max && !stop.load(Ordering::Relaxed) {
        let mut at = consumer.position();
        let mut in_batch = 0u64;
        let mut write_error = None;
        while printed + in_batch < max && in_batch < BATCH_ITEMS {
            let (next, bytes) = match consumer.peek_bytes(at) {
                Ok(item) => item,
                Err(Error::Retry(RetryReason::Empty)) => break,
                Err(e) => return Err(Failure::ring(&name, &e)),
            };
            let written = if a.json {
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
                serde_json::to_writer(&mut out, &item)
                    .map_err(std::io::Error::from)
                    .and_then(|_| out.write_all(b"\n"))
            } else if escape {
                write!(out, "{}", escape_bytes(bytes)).and_then(|_| out.write_all(terminator))
            } else {
                out.write_all(bytes).and_then(|_| out.write_all(terminator))
            };
            if let Err(e) = written {
                write_error = Some(e);
                break;
            }
            at = next;
            in_batch += 1;
        }
        if write_error.is_none() {
            if let Err(e) = out.flush() {
                write_error = Some(e);
            }
        }
        if let Some(e) = write_error {
            // Nothing of this batch is released: it may not have reached
            // the reader, so the next consumer delivers it again.
            if is_broken_pipe(&e) {
                return Ok(());
            }
            return Err(Failure::new(
                EXIT_FATAL,
                format!("writing standard output: {e}"),
            ));
        }
        if in_batch > 0 {
            consumer.advance(at).on(&name)?;
            printed += in_batch;
            continue;
        }
        if !a.follow {
            break;
        }
        match consumer.wait_for_item(at, Some(SIGNAL_CHECK)) {
            Ok(()) | Err(Error::Retry(RetryReason::Empty)) => {}
            Err(e) => return Err(Failure::ring(&name, &e)),
        }
    }
    tracing::info!(items = printed, "consumed");
    Ok(())
}
