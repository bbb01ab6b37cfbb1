//! A producer or a consumer process for the system tests.
//!
//! ```text
//! ring-peer produce DEVICE COUNT SEED MAX_LEN BATCH DURABILITY [--retry SECONDS]
//! ring-peer consume DEVICE COUNT SEED MAX_LEN DURABILITY [--retry SECONDS]
//! ```
//!
//! DEVICE is anything `device::open` accepts: a file, a block device, or an
//! NBD URI. The producer pushes items `0..COUNT` of the deterministic stream
//! `system_tests::item(SEED, i, MAX_LEN)`, publishing every BATCH items; the
//! consumer checks that it receives exactly that stream, in order, and
//! exits non-zero naming the first difference. Each prints `produced COUNT`
//! or `consumed COUNT` when done.
//!
//! Without `--retry`, any error ends the process. With it, device errors
//! are survived: an error the device reported with an errno (such as an NBD
//! server's EIO reply) is retried on the same handle, and any other device
//! error (a lost connection) makes the peer drop its handle, open the
//! device again and re-attach, for up to SECONDS without success. After a
//! re-attach the peer checks that the ring still holds everything it had
//! acknowledged (the producer: its published position is the last one
//! `advance` confirmed, or one whose confirmation was lost; the consumer:
//! likewise for its own position), and continues from there. The summary
//! line then adds `errors=E reattached=R`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use shared_block_ring::device::{self, BlockDevice};
use shared_block_ring::{Consumer, Durability, Error, FileOptions, Options, Position, Producer};
use system_tests::item;

/// The longest a peer waits for the other side before giving up.
const STALL: Duration = Duration::from_secs(60);
/// Recovered errors logged in full to stderr before the rest are only
/// counted.
const LOGGED: u64 = 20;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (args, retry) = match split_retry(&args) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("ring-peer: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match args.get(1).map(String::as_str) {
        Some("produce") if args.len() == 8 => produce(&args[2..], retry),
        Some("consume") if args.len() == 7 => consume(&args[2..], retry),
        _ => Err("usage: ring-peer produce DEVICE COUNT SEED MAX_LEN BATCH DURABILITY [--retry SECONDS] | consume DEVICE COUNT SEED MAX_LEN DURABILITY [--retry SECONDS]".into()),
    };
    match result {
        Ok(msg) => {
            println!("{msg}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ring-peer: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Removes `--retry SECONDS` from the arguments.
fn split_retry(args: &[String]) -> Result<(Vec<String>, Option<Duration>), String> {
    match args.iter().position(|a| a == "--retry") {
        None => Ok((args.to_vec(), None)),
        Some(i) => {
            let secs = args.get(i + 1).ok_or("--retry needs a number of seconds")?;
            let secs = num(secs)?;
            let mut rest = args.to_vec();
            rest.drain(i..i + 2);
            Ok((rest, Some(Duration::from_secs(secs))))
        }
    }
}

fn num(s: &str) -> Result<u64, String> {
    s.parse().map_err(|e| format!("{s}: {e}"))
}

fn options(durability: &str) -> Result<Options, String> {
    let d: Durability = durability.parse()?;
    Ok(Options::new()
        .durability(d)
        .max_backoff(Duration::from_millis(1)))
}

/// How a peer survives device errors.
struct Recovery {
    role: &'static str,
    spec: String,
    retry: Option<Duration>,
    errors: u64,
    reattached: u64,
}

enum Action {
    /// Try again on the same handle.
    Retry,
    /// Open the device again and re-attach.
    Reattach,
}

impl Recovery {
    fn new(role: &'static str, spec: &str, retry: Option<Duration>) -> Recovery {
        Recovery {
            role,
            spec: spec.to_string(),
            retry,
            errors: 0,
            reattached: 0,
        }
    }

    /// Decides what to do about `e` (from `what`), or gives up.
    fn on_error(&mut self, what: &str, e: &Error) -> Result<Action, String> {
        if self.retry.is_none() || !e.is_io() {
            return Err(format!("{what}: {e}"));
        }
        let server_errno = match e {
            Error::Io { source, .. } => source.raw_os_error().is_some(),
            _ => false,
        };
        let action = if server_errno {
            self.errors += 1;
            Action::Retry
        } else {
            self.reattached += 1;
            Action::Reattach
        };
        if self.errors + self.reattached <= LOGGED {
            let verb = match action {
                Action::Retry => "retrying",
                Action::Reattach => "re-attaching",
            };
            eprintln!("ring-peer: {}: {what}: {e}; {verb}", self.role);
        }
        Ok(action)
    }

    /// Opens the device and attaches with `attach`, retrying device errors
    /// (the server may be restarting) for up to the retry time.
    fn attach<T>(
        &mut self,
        attach: impl Fn(Box<dyn BlockDevice>) -> Result<T, Error>,
    ) -> Result<T, String> {
        let deadline = Instant::now() + self.retry.unwrap_or(Duration::ZERO);
        loop {
            let r = device::open(&self.spec, &FileOptions::new()).and_then(&attach);
            match r {
                Ok(t) => return Ok(t),
                Err(e) if e.is_io() && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(format!("attaching to {}: {e}", self.spec)),
            }
        }
    }

    fn summary(&self, what: String) -> String {
        match self.retry {
            None => what,
            Some(_) => format!(
                "{what} errors={} reattached={}",
                self.errors, self.reattached
            ),
        }
    }
}

/// Fails once nothing has moved for [`STALL`].
struct Stall(Instant);

impl Stall {
    fn progress(&mut self) {
        self.0 = Instant::now();
    }

    fn check(&self, what: &str) -> Result<(), String> {
        if self.0.elapsed() > STALL {
            Err(format!("no progress for {STALL:?} ({what})"))
        } else {
            Ok(())
        }
    }
}

fn produce(a: &[String], retry: Option<Duration>) -> Result<String, String> {
    let (count, seed, max_len, batch) =
        (num(&a[1])?, num(&a[2])?, num(&a[3])? as usize, num(&a[4])?);
    let opts = options(&a[5])?;
    let mut rec = Recovery::new("producer", &a[0], retry);
    let attach = |d: Box<dyn BlockDevice>| Producer::attach(d, opts.clone());
    let mut p = rec.attach(attach)?;
    // Items before `acked.1` are published, ending at `acked.0`, and
    // `advance` confirmed it. `pending` holds the end of each item pushed
    // since, with the index after it.
    let mut acked = (p.published(), 0u64);
    let mut pending: Vec<(Position, u64)> = Vec::new();
    let mut stall = Stall(Instant::now());
    while acked.1 < count {
        let next = pending.last().map_or(acked.1, |&(_, i)| i);
        let result = if next < count && (pending.len() as u64) < batch {
            match p.push(&item(seed, next, max_len)) {
                Ok(pos) => {
                    pending.push((pos, next + 1));
                    stall.progress();
                    continue;
                }
                Err(e) if e.is_retry() && pending.is_empty() => {
                    // Full of published items: wait for the consumer.
                    stall.check("the ring stays full")?;
                    std::thread::sleep(Duration::from_micros(200));
                    continue;
                }
                // Full: publish what is pending so the consumer can make room.
                Err(e) if e.is_retry() => Ok(()),
                Err(e) => Err((format!("push {next}"), e)),
            }
        } else {
            Ok(())
        };
        let result = result.and_then(|()| {
            let &(pos, index) = pending.last().expect("something to publish");
            p.advance(pos)
                .map(|()| {
                    acked = (pos, index);
                    pending.clear();
                    stall.progress();
                })
                .map_err(|e| (format!("advance to item {index}"), e))
        });
        let Err((what, e)) = result else { continue };
        stall.check(&what)?;
        match rec.on_error(&what, &e)? {
            Action::Retry => {}
            Action::Reattach => {
                drop(p);
                p = rec.attach(attach)?;
                let published = p.published();
                if published != acked.0 {
                    // Only an advance whose confirmation was lost may have
                    // moved it, and only to the end of a pushed item.
                    acked = *pending
                        .iter()
                        .find(|&&(pos, _)| pos == published)
                        .ok_or_else(|| {
                            format!(
                                "after re-attaching, the published position is {published}, \
                                 not the acknowledged {} nor the end of an item pushed since: \
                                 acknowledged items were lost",
                                acked.0
                            )
                        })?;
                }
                // Unpublished pushes were abandoned: push them again.
                pending.clear();
            }
        }
    }
    Ok(rec.summary(format!("produced {count}")))
}

fn consume(a: &[String], retry: Option<Duration>) -> Result<String, String> {
    let (count, seed, max_len) = (num(&a[1])?, num(&a[2])?, num(&a[3])? as usize);
    let opts = options(&a[4])?;
    let mut rec = Recovery::new("consumer", &a[0], retry);
    let attach = |d: Box<dyn BlockDevice>| Consumer::attach(d, opts.clone());
    let mut c = rec.attach(attach)?;
    // Items before `acked.1` are released, ending at `acked.0`; `pending`
    // is a release whose confirmation was lost.
    let mut acked = (c.position(), 0u64);
    let mut pending = None;
    let mut stall = Stall(Instant::now());
    while acked.1 < count {
        let mut i = acked.1;
        let result = c
            .wait_for_item(c.position(), Some(STALL))
            .map_err(|e| (format!("waiting for item {i}"), e))
            .and_then(|()| {
                let mut bad = None;
                let end = c
                    .for_each_bytes(c.position(), |start, _, bytes| {
                        if bad.is_none() && (i >= count || bytes != item(seed, i, max_len)) {
                            bad = Some(format!(
                                "item {i} at position {start} is wrong ({} bytes)",
                                bytes.len()
                            ));
                        }
                        i += 1;
                        Ok(())
                    })
                    .map_err(|e| (format!("reading from item {}", acked.1), e))?;
                Ok((end, bad))
            });
        let result = match result {
            Ok((_, Some(bad))) => return Err(bad),
            Ok((end, None)) => c.advance(end).map(|()| (end, i)).map_err(|e| {
                pending = Some((end, i));
                (format!("releasing up to item {i}"), e)
            }),
            Err(e) => Err(e),
        };
        let (what, e) = match result {
            Ok(done) => {
                acked = done;
                pending = None;
                stall.progress();
                continue;
            }
            Err(failure) => failure,
        };
        stall.check(&what)?;
        match rec.on_error(&what, &e)? {
            Action::Retry => {}
            Action::Reattach => {
                drop(c);
                c = rec.attach(attach)?;
                let position = c.position();
                if position != acked.0 {
                    acked = pending.filter(|&(end, _)| end == position).ok_or_else(|| {
                        format!(
                            "after re-attaching, the consumer position is {position}, not the \
                             acknowledged {} nor a release whose confirmation was lost",
                            acked.0
                        )
                    })?;
                }
            }
        }
        pending = None;
    }
    Ok(rec.summary(format!("consumed {}", acked.1)))
}
