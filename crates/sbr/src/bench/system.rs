//! Measurements with other programs: `sbr produce | sbr consume` as child
//! processes (peak memory, T7), and a batched producer and consumer over
//! loopback NBD through a qemu-nbd the bench starts and always stops (T8).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shared_block_ring::{create, Consumer, Durability, Error, Producer, RetryReason};

use super::io::{die_with_parent, open, ChildGuard, RingDev};
use super::ring::options;
use super::{median, BenchError, Config};

/// What `sbr produce | sbr consume` did.
pub struct CliRun {
    /// Items moved.
    pub items: u64,
    /// Bytes per item.
    pub payload: usize,
    /// Items per second, end to end.
    pub items_per_s: f64,
    /// Peak RSS of `sbr produce`, in bytes.
    pub produce_rss: u64,
    /// Peak RSS of `sbr consume`, in bytes.
    pub consume_rss: u64,
    /// Bytes of item data moved.
    pub bytes: u64,
    /// The ring's size.
    pub ring_bytes: u64,
}

/// Bytes per line for the CLI run: large enough that 1 GiB moves in a few
/// seconds, small enough that every chunk holds many items.
pub const CLI_PAYLOAD: usize = 1000;

/// Streams `cfg.cli_bytes` of lines through `sbr produce` into a ring of
/// `cfg.cli_ring` bytes in `dir`, read by `sbr consume --follow` at the
/// same time; returns the peak RSS of each (VmHWM).
pub fn cli_memory(cfg: &Config, dir: &Path) -> Result<CliRun, BenchError> {
    let path = dir.join("cli-ring.img");
    let name = path.display().to_string();
    if path.exists() {
        std::fs::remove_file(&path).map_err(|e| BenchError::msg(format!("{name}: {e}")))?;
    }
    super::io::make_file(&path, cfg.cli_ring)?;
    create(&open(&name)?).map_err(|e| BenchError::ring(&name, e))?;
    let items = cfg.cli_bytes / (CLI_PAYLOAD as u64 + 1);
    let exe =
        std::env::current_exe().map_err(|e| BenchError::msg(format!("finding sbr itself: {e}")))?;

    let mut cmd = Command::new(&exe);
    cmd.arg("consume")
        .arg(&path)
        .args(["--follow", "--escape", "never", "--max", &items.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let start = Instant::now();
    let consumer = die_with_parent(&mut cmd)
        .spawn()
        .map_err(|e| BenchError::msg(format!("starting sbr consume: {e}")))?;
    let mut consumer = ChildGuard::new(consumer, "sbr consume");
    let mut cmd = Command::new(&exe);
    cmd.arg("produce")
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let producer = die_with_parent(&mut cmd)
        .spawn()
        .map_err(|e| BenchError::msg(format!("starting sbr produce: {e}")))?;
    let mut producer = ChildGuard::new(producer, "sbr produce");

    let mut input = producer
        .child()
        .stdin
        .take()
        .ok_or_else(|| BenchError::msg("no pipe to sbr produce"))?;
    let mut output = consumer
        .child()
        .stdout
        .take()
        .ok_or_else(|| BenchError::msg("no pipe from sbr consume"))?;
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        let mut line = vec![b'x'; CLI_PAYLOAD + 1];
        line[CLI_PAYLOAD] = b'\n';
        let per_block = 64;
        let block: Vec<u8> = line.repeat(per_block);
        let mut left = items;
        while left > 0 {
            let n = left.min(per_block as u64) as usize;
            input.write_all(&block[..n * line.len()])?;
            left -= n as u64;
        }
        Ok(())
        // Dropping `input` closes the pipe: end of input.
    });
    let reader = std::thread::spawn(move || -> std::io::Result<u64> {
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        loop {
            let n = output.read(&mut buf)?;
            if n == 0 {
                return Ok(total);
            }
            total += n as u64;
        }
    });
    // Generous: a slow disk moves 1 GiB in well under ten minutes.
    let limit = Duration::from_secs(600);
    // Both are watched at once, so that each one's peak is read until it
    // exits.
    let statuses = super::io::wait_all(&mut [&mut producer, &mut consumer], limit)?;
    let (pstatus, cstatus) = (statuses[0], statuses[1]);
    let elapsed = start.elapsed();
    let wrote = writer
        .join()
        .map_err(|_| BenchError::msg("the line writer panicked"))?;
    let read = reader
        .join()
        .map_err(|_| BenchError::msg("the line reader panicked"))?;
    if !pstatus.success() {
        return Err(BenchError::msg(format!("sbr produce failed ({pstatus})")));
    }
    if !cstatus.success() {
        return Err(BenchError::msg(format!("sbr consume failed ({cstatus})")));
    }
    wrote.map_err(|e| BenchError::msg(format!("writing to sbr produce: {e}")))?;
    let read = read.map_err(|e| BenchError::msg(format!("reading from sbr consume: {e}")))?;
    let expected = items * (CLI_PAYLOAD as u64 + 1);
    if read != expected {
        return Err(BenchError::msg(format!(
            "sbr consume printed {read} bytes, {expected} were produced"
        )));
    }
    let _ = std::fs::remove_file(&path);
    Ok(CliRun {
        items,
        payload: CLI_PAYLOAD,
        items_per_s: items as f64 / elapsed.as_secs_f64(),
        produce_rss: producer.peak().unwrap_or(0),
        consume_rss: consumer.peak().unwrap_or(0),
        bytes: items * CLI_PAYLOAD as u64,
        ring_bytes: cfg.cli_ring,
    })
}

/// Looks for an executable `name` on the PATH.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// A qemu-nbd serving one raw image on a Unix socket, stopped on drop.
pub struct QemuNbd {
    server: ChildGuard,
    // Holds the socket; removed after the server is stopped (fields drop
    // in order).
    _dir: tempfile::TempDir,
    uri: String,
}

impl QemuNbd {
    /// Starts `qemu` serving `image` with `--cache=none`, shared by
    /// several clients, and waits until it accepts connections.
    pub fn start(qemu: &Path, image: &Path) -> Result<QemuNbd, BenchError> {
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
        let child = die_with_parent(&mut cmd)
            .spawn()
            .map_err(|e| BenchError::msg(format!("starting {}: {e}", qemu.display())))?;
        let mut server = ChildGuard::new(child, "qemu-nbd");
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
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// Stops the server now.
    pub fn stop(mut self) {
        self.server.kill();
    }
}

/// Items per batch in the pipeline scenario (T8).
pub const PIPELINE_BATCH: usize = 256;
/// Bytes per item in the pipeline scenario.
pub const PIPELINE_PAYLOAD: usize = 100;

/// A producer (this thread) pushing batches of 256 items of 100 bytes and
/// publishing each with `advance`, and a consumer thread draining with
/// `for_each_bytes` and releasing, each on its own device handle (its own
/// connection for NBD), for the budget; returns the median items/s from
/// the first push to the last release.
pub fn pipeline(
    spec: &str,
    durability: Durability,
    cfg: &Config,
) -> Result<(f64, usize), BenchError> {
    let mut rates = Vec::new();
    let data = [7u8; PIPELINE_PAYLOAD];
    for _ in 0..cfg.reps {
        let dev = RingDev::whole(spec);
        dev.fresh()?;
        let mut p = Producer::attach(dev.open()?, options(durability, "bench producer"))?;
        let mut c = Consumer::attach(dev.open()?, options(durability, "bench consumer"))?;
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
                    match c.wait_for_item(c.position(), Some(Duration::from_millis(20))) {
                        Ok(()) => {}
                        Err(Error::Retry(RetryReason::Empty)) => continue,
                        Err(e) => return Err(e),
                    }
                    let end = c.for_each_bytes(c.position(), |_, _, _| {
                        got += 1;
                        Ok(())
                    })?;
                    c.advance(end)?;
                }
            });
            let produced = (|| -> Result<u64, Error> {
                let mut n = 0u64;
                while n == 0 || start.elapsed() < cfg.budget {
                    let mut backoff = p.backoff(Some(Duration::from_secs(30)));
                    let end = loop {
                        match p.push_many(std::iter::repeat_n(&data[..], PIPELINE_BATCH)) {
                            Ok(end) => break end,
                            Err(Error::Retry(RetryReason::Full)) if p.pause(&mut backoff) => {}
                            Err(e) => return Err(e),
                        }
                    };
                    p.advance(end)?;
                    n += PIPELINE_BATCH as u64;
                    sent.store(n, Ordering::Release);
                }
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
    }
    let n = rates.len();
    Ok((median(&mut rates), n))
}
