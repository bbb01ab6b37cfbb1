//! `sbr suspend` and `sbr resume`: the consumer's half of the handshake.
//!
//! The consumer sets its `suspend` flag; the producer acknowledges by
//! copying it into its `suspend_ack` flag the next time it looks. The two
//! flags give four states (see [`state_name`]). Asking for what is already
//! asked (on the device, not yet acknowledged) succeeds and says it is
//! pending; asking for the opposite while a request is unacknowledged is
//! refused with "try again later" (75), as in the original protocol.

use std::time::Duration;

use shared_block_ring::{BlockDevice, Consumer, Error, RetryReason};

use crate::common::{
    outln, parse_duration, CmdResult, DeviceArgs, Failure, Names, OnDevice, EXIT_RETRY,
};

/// Arguments of `sbr suspend` and `sbr resume`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    dev: DeviceArgs,

    #[command(flatten)]
    names: Names,

    /// Return only once the producer has acknowledged (or the timeout
    /// passes: exit status 75). Without it, return once the request is
    /// written.
    #[arg(long)]
    wait: bool,

    /// With --wait: how long to wait (5s, 250ms, 1m); default: forever.
    #[arg(long, value_parser = parse_duration, requires = "wait")]
    timeout: Option<Duration>,
}

/// The handshake state for the consumer's `suspend` flag and the
/// producer's `suspend_ack` flag.
pub fn state_name(suspend: bool, suspend_ack: bool) -> &'static str {
    match (suspend, suspend_ack) {
        (false, false) => "running",
        (true, false) => "suspend requested",
        (true, true) => "suspended",
        (false, true) => "resume requested",
    }
}

/// The two flags as on the device now: (`suspend`, `suspend_ack`).
fn flags<D: BlockDevice>(consumer: &mut Consumer<D>, name: &str) -> Result<(bool, bool), Failure> {
    let info = consumer.debug_info().on(name)?;
    let flag = |key: &str| info.iter().any(|(k, v)| k == key && v == "true");
    Ok((flag("consumer/suspend"), flag("producer/suspend_ack")))
}

/// Runs `sbr suspend` (`suspend` true) or `sbr resume`.
pub fn run(a: Args, suspend: bool) -> CmdResult {
    let name = &a.dev.device;
    let verb = if suspend { "suspend" } else { "resume" };
    let device = a.dev.open(false)?;
    let mut consumer =
        Consumer::attach(device, a.names.apply(a.dev.options())).map_err(|e| a.dev.failure(&e))?;
    let mut backoff = consumer.options().new_backoff(a.timeout);
    let (asked, acked) = flags(&mut consumer, name)?;
    let already = asked == suspend;
    if already && acked == suspend {
        return outln!("{name}: {}", state_name(asked, acked));
    }
    if !already {
        // The request: retried while the previous one is unacknowledged,
        // if we may wait.
        loop {
            let r = if suspend {
                consumer.suspend()
            } else {
                consumer.resume()
            };
            match r {
                Ok(()) => break,
                Err(Error::Retry(RetryReason::HandshakePending)) if a.wait && backoff.wait() => {}
                Err(e @ Error::Retry(_)) => {
                    let (asked, acked) = flags(&mut consumer, name)?;
                    return Err(Failure::new(
                        EXIT_RETRY,
                        format!(
                            "{name}: cannot {verb} yet: {e} (state: {})",
                            state_name(asked, acked)
                        ),
                    ));
                }
                Err(e) => return Err(Failure::ring(name, &e)),
            }
        }
    }
    let again = if already { " already" } else { "" };
    if !a.wait {
        let (asked, acked) = flags(&mut consumer, name)?;
        if asked == acked {
            return outln!("{name}: {}", state_name(asked, acked));
        }
        return outln!("{name}: {verb}{again} requested; the producer has not acknowledged it yet");
    }
    loop {
        let (asked, acked) = flags(&mut consumer, name)?;
        if asked == acked {
            return outln!(
                "{name}: {} (acknowledged by the producer)",
                state_name(asked, acked)
            );
        }
        if !backoff.wait() {
            return Err(Failure::new(
                EXIT_RETRY,
                format!(
                    "{name}: the producer did not acknowledge the {verb} request in time; \
                     it stays requested (state: {})",
                    state_name(asked, acked)
                ),
            ));
        }
    }
}
