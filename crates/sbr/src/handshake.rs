//! `sbr suspend` and `sbr resume`: the consumer's half of the handshake.

use std::time::Duration;

use shared_block_ring::{Consumer, Error, RetryReason, RingState};

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

/// Runs `sbr suspend` (`suspend` true) or `sbr resume`.
pub fn run(a: Args, suspend: bool) -> CmdResult {
    let name = &a.dev.device;
    let (verb, wanted) = if suspend {
        ("suspend", RingState::Suspended)
    } else {
        ("resume", RingState::Running)
    };
    let device = a.dev.open(false)?;
    let mut consumer = Consumer::attach(device, a.names.apply(a.dev.options())).on(name)?;
    let mut backoff = consumer.options().new_backoff(a.timeout);
    // The request: retried while the previous one is unacknowledged, if
    // we may wait.
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
                return Err(Failure::new(
                    EXIT_RETRY,
                    format!("{name}: cannot {verb} yet: {e}"),
                ))
            }
            Err(e) => return Err(Failure::ring(name, &e)),
        }
    }
    if !a.wait {
        let now = consumer.state().on(name)?;
        if now == wanted {
            outln!("{name}: {}", describe(wanted))?;
        } else {
            outln!("{name}: {verb} requested; the producer has not acknowledged it yet")?;
        }
        return Ok(());
    }
    loop {
        if consumer.state().on(name)? == wanted {
            outln!(
                "{name}: {} (acknowledged by the producer)",
                describe(wanted)
            )?;
            return Ok(());
        }
        if !backoff.wait() {
            return Err(Failure::new(
                EXIT_RETRY,
                format!("{name}: the producer did not acknowledge the {verb} request in time"),
            ));
        }
    }
}

fn describe(state: RingState) -> &'static str {
    match state {
        RingState::Suspended => "suspended",
        RingState::Running => "running",
    }
}
