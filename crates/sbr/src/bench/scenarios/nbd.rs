//! T8: a producer thread publishing batches and a consumer thread
//! draining them, each on its own device handle, on a local file and then
//! over loopback NBD, through a qemu-nbd the bench starts on a Unix socket
//! over that same file and always stops.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shared_block_ring::{Consumer, Durability, Error, Producer, RetryReason};

use super::{Ctx, Family};
use crate::bench::measure::basis::{limit, Kind, LimitInfo};
use crate::bench::measure::clock::median;
use crate::bench::measure::device::{make_file, IoCounts, RingDev};
use crate::bench::measure::fixture::options;
use crate::bench::measure::process::{find_tool, spawn, ChildGuard};
use crate::bench::measure::{BenchError, Config};
use crate::bench::report::row::Row;
use crate::bench::report::Findings;

/// Items per batch.
const PIPELINE_BATCH: usize = 256;
/// Bytes per item.
const PIPELINE_PAYLOAD: usize = 100;

/// The producer+consumer rows on a local file and over qemu-nbd.
pub struct Nbd;

impl Family for Nbd {
    fn once(&self, ctx: &Ctx, out: &mut Findings) -> Result<(), BenchError> {
        if ctx.wanted("nbd") {
            nbd_rows(ctx, out)?;
        }
        Ok(())
    }
}

/// The rows of each mode: the pipeline on a local file, then over
/// qemu-nbd serving that file, held to the local figure.
fn nbd_rows(ctx: &Ctx, out: &mut Findings) -> Result<(), BenchError> {
    let image = ctx.dir.join("nbd.img");
    make_file(&image, ctx.cfg.nbd_bytes)?;
    let local_dev = RingDev {
        spec: image.display().to_string(),
        sectors: None,
        access: ctx.access.clone(),
    };
    let qemu = find_tool("qemu-nbd");
    let row = |durability, device: &str, run: &Pipeline, limit| {
        Row::new(
            "producer+consumer",
            durability,
            device,
            PIPELINE_PAYLOAD,
            PIPELINE_BATCH as u64,
            run.items_per_s,
            limit,
            run.reps,
        )
        .publish_trips(run.producer)
        .release_trips(run.consumer)
    };
    for &durability in ctx.modes {
        let local = pipeline(&local_dev, durability, ctx.cfg)?;
        let batch = PIPELINE_BATCH as u64;
        let basis = limit(
            Kind::Publish { batch },
            durability,
            PIPELINE_PAYLOAD,
            &ctx.limits,
        );
        out.add(
            row(durability, "local file", &local, basis)
                .note("producer and consumer threads, each with its own handle; T8's reference"),
        );
        let same = LimitInfo {
            value: local.items_per_s,
            basis: "the same scenario on the local file".into(),
            uses: Vec::new(),
        };
        let nbd_row = match &qemu {
            Some(q) => {
                let server = QemuNbd::start(q, &image)?;
                let nbd_dev = RingDev {
                    spec: server.uri().to_string(),
                    ..local_dev.clone()
                };
                let measured = pipeline(&nbd_dev, durability, ctx.cfg);
                server.stop();
                row(durability, "qemu-nbd", &measured?, same)
                    .note("qemu-nbd --cache=none over a Unix socket (nbd+unix), same image")
            }
            None => row(durability, "qemu-nbd", &Pipeline::default(), same)
                .note("not measured: qemu-nbd is not installed (Debian: qemu-utils)"),
        };
        out.add(nbd_row);
    }
    Ok(())
}

/// A qemu-nbd serving one raw image on a Unix socket, stopped on drop.
struct QemuNbd {
    server: ChildGuard,
    // Holds the socket; removed after the server is stopped (fields drop
    // in order).
    _dir: tempfile::TempDir,
    uri: String,
}

impl QemuNbd {
    /// Starts `qemu` serving `image` with `--cache=none`, shared by
    /// several clients, and waits until it accepts connections.
    fn start(qemu: &Path, image: &Path) -> Result<QemuNbd, BenchError> {
        // Unix socket paths are limited to 108 bytes: a short directory
        // (sockets work on any filesystem).
        let dir = tempfile::Builder::new()
            .prefix("sbr-nbd-")
            .tempdir()
            .map_err(|e| BenchError::msg(format!("creating a socket directory: {e}")))?;
        let socket = dir.path().join("nbd.sock");
        let mut cmd = Command::new(qemu);
        cmd.args([
            "-f",
            "raw",
            "--shared=4",
            "--persistent",
            "--cache=none",
            "-x",
            "bench",
            "-k",
        ])
        .arg(&socket)
        .arg(image)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        let mut server = spawn(&mut cmd, "qemu-nbd")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if UnixStream::connect(&socket).is_ok() {
                break;
            }
            if let Ok(Some(status)) = server.child().try_wait() {
                let mut err = String::new();
                if let Some(mut e) = server.child().stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                return Err(BenchError::msg(format!(
                    "qemu-nbd exited ({status}) before listening: {}",
                    err.trim()
                )));
            }
            if Instant::now() > deadline {
                return Err(BenchError::msg("qemu-nbd did not listen within 20 s"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let uri = format!("nbd+unix:///bench?socket={}", socket.display());
        Ok(QemuNbd {
            server,
            _dir: dir,
            uri,
        })
    }

    /// The export's URI.
    fn uri(&self) -> &str {
        &self.uri
    }

    /// Stops the server now.
    fn stop(mut self) {
        self.server.kill();
    }
}

/// What the pipeline measured.
struct Pipeline {
    /// The median items/s from the first push to the last release.
    items_per_s: f64,
    /// Repetitions.
    reps: usize,
    /// The producer handle's operations, over all repetitions.
    producer: IoCounts,
    /// The consumer handle's operations.
    consumer: IoCounts,
}

impl Default for Pipeline {
    /// Not measured.
    fn default() -> Pipeline {
        Pipeline {
            items_per_s: f64::NAN,
            reps: 0,
            producer: IoCounts::default(),
            consumer: IoCounts::default(),
        }
    }
}

/// A producer (this thread) pushing batches of 256 items of 100 bytes and
/// publishing each with `advance_pipelined` (as `sbr produce` does: each
/// batch's pointer goes with the next batch's items), then `sync`, and a
/// consumer thread draining with `for_each_bytes_wait` (as `sbr demo`
/// does) and releasing, each on its own device handle (its own
/// connection for NBD), for the budget.
fn pipeline(dev: &RingDev, durability: Durability, cfg: &Config) -> Result<Pipeline, BenchError> {
    let spec = &dev.spec;
    let mut rates = Vec::new();
    let mut run = Pipeline::default();
    let data = [7u8; PIPELINE_PAYLOAD];
    for _ in 0..cfg.reps {
        dev.fresh()?;
        let (pd, cd) = (dev.open()?, dev.open()?);
        let (pstats, cstats) = (pd.stats(), cd.stats());
        let mut p = Producer::attach(pd, options(durability, "bench producer"))?;
        let mut c = Consumer::attach(cd, options(durability, "bench consumer"))?;
        let (p0, c0) = (pstats.snapshot(), cstats.snapshot());
        let sent = AtomicU64::new(0);
        let done = AtomicBool::new(false);
        let start = Instant::now();
        let (produced, consumed) = std::thread::scope(|s| {
            let consumer = s.spawn(|| -> Result<u64, Error> {
                let mut got = 0u64;
                loop {
                    if done.load(Ordering::Acquire) && got >= sent.load(Ordering::Acquire) {
                        return Ok(got);
                    }
                    let walked = c.for_each_bytes_wait(
                        c.position(),
                        Some(Duration::from_millis(20)),
                        |_, _, _| {
                            got += 1;
                            Ok(())
                        },
                    );
                    match walked {
                        Ok(end) => c.advance(end)?,
                        Err(Error::Retry(RetryReason::Empty)) => continue,
                        Err(e) => return Err(e),
                    }
                }
            });
            let produced = (|| -> Result<u64, Error> {
                let mut n = 0u64;
                while n == 0 || start.elapsed() < cfg.budget {
                    let mut backoff = p.backoff(Some(Duration::from_secs(30)));
                    let end = loop {
                        match p.push_many(std::iter::repeat_n(&data[..], PIPELINE_BATCH)) {
                            Ok(end) => break end,
                            Err(Error::Retry(RetryReason::Full)) => {
                                // The consumer cannot free space it cannot
                                // see: publish the pending batch first.
                                p.sync()?;
                                if !p.pause(&mut backoff) {
                                    return Err(Error::Retry(RetryReason::Full));
                                }
                            }
                            Err(e) => return Err(e),
                        }
                    };
                    p.advance_pipelined(end)?;
                    n += PIPELINE_BATCH as u64;
                    sent.store(n, Ordering::Release);
                }
                p.sync()?;
                Ok(n)
            })();
            done.store(true, Ordering::Release);
            let consumed = consumer.join().unwrap_or_else(|_| Err(Error::ShutDown));
            (produced, consumed)
        });
        let elapsed = start.elapsed();
        let produced = produced?;
        let consumed = consumed?;
        if consumed != produced {
            return Err(BenchError::msg(format!(
                "{spec}: the consumer got {consumed} items, {produced} were published"
            )));
        }
        rates.push(consumed as f64 / elapsed.as_secs_f64());
        run.producer += pstats.snapshot().since(p0);
        run.consumer += cstats.snapshot().since(c0);
    }
    run.reps = rates.len();
    run.items_per_s = median(&mut rates);
    Ok(run)
}
