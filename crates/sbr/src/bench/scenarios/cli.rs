//! `sbr produce | sbr consume --follow` as child processes moving lines
//! through a ring of their own: their peak memory (T7) and the rate end to
//! end.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use shared_block_ring::{create, Durability};

use super::{Ctx, Family};
use crate::bench::measure::basis::{limit, Kind};
use crate::bench::measure::device::{make_file, Access};
use crate::bench::measure::process::{sbr_itself, spawn, wait_all};
use crate::bench::measure::{BenchError, Config};
use crate::bench::report::row::Row;
use crate::bench::report::{CliRun, Findings};

/// The CLI pipeline.
pub struct Cli;

impl Family for Cli {
    fn once(&self, ctx: &Ctx, out: &mut Findings) -> Result<(), BenchError> {
        if !ctx.wanted("cli") {
            return Ok(());
        }
        let cfg = ctx.cfg;
        let cli = cli_memory(cfg, ctx.dir, ctx.access)?;
        let basis = limit(Kind::Stream, Durability::PowerLoss, cli.payload, &ctx.limits);
        let mut row = Row::new(
            "sbr produce | sbr consume",
            Durability::PowerLoss,
            "local file",
            cli.payload,
            1,
            cli.items_per_s,
            basis,
            1,
        )
        .note(format!(
            "{} items ({} MiB) through a {} MiB ring; peak RSS produce {:.1} MiB, consume {:.1} MiB",
            cli.items,
            cli.bytes >> 20,
            cli.ring_bytes >> 20,
            cli.produce_rss as f64 / (1 << 20) as f64,
            cli.consume_rss as f64 / (1 << 20) as f64
        ));
        if cfg.cli_bytes < 1 << 30 {
            row = row.note("less than the 1 GiB of the target (quick run)");
        }
        out.add(row);
        out.cli = Some(cli);
        Ok(())
    }
}

/// Bytes per line: large enough that 1 GiB moves in a few
/// seconds, small enough that every chunk holds many items.
const CLI_PAYLOAD: usize = 1000;

/// Streams `cfg.cli_bytes` of lines through `sbr produce` into a ring of
/// `cfg.cli_ring` bytes in `dir`, read by `sbr consume --follow` at the
/// same time; returns the peak RSS of each (VmHWM).
fn cli_memory(cfg: &Config, dir: &Path, access: &Access) -> Result<CliRun, BenchError> {
    let path = dir.join("cli-ring.img");
    let name = path.display().to_string();
    if path.exists() {
        std::fs::remove_file(&path).map_err(|e| BenchError::msg(format!("{name}: {e}")))?;
    }
    make_file(&path, cfg.cli_ring)?;
    create(&access.open(&name)?).map_err(|e| BenchError::ring(&name, e))?;
    let items = cfg.cli_bytes / (CLI_PAYLOAD as u64 + 1);

    let mut cmd = sbr_itself()?;
    cmd.arg("consume")
        .arg(&path)
        .args(&access.child_args)
        .args(["--follow", "--escape", "never", "--max", &items.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let start = Instant::now();
    let mut consumer = spawn(&mut cmd, "sbr consume")?;
    let mut cmd = sbr_itself()?;
    cmd.arg("produce")
        .arg(&path)
        .args(&access.child_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let mut producer = spawn(&mut cmd, "sbr produce")?;

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
    let statuses = wait_all(&mut [&mut producer, &mut consumer], limit)?;
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
