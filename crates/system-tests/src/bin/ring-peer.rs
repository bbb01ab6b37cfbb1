//! A producer or a consumer process for the system tests.
//!
//! ```text
//! ring-peer produce DEVICE COUNT SEED MAX_LEN BATCH DURABILITY
//! ring-peer consume DEVICE COUNT SEED MAX_LEN DURABILITY
//! ```
//!
//! The producer pushes items `0..COUNT` of the deterministic stream
//! `system_tests::item(SEED, i, MAX_LEN)`, publishing every BATCH items; the
//! consumer checks that it receives exactly that stream, in order, and
//! exits non-zero naming the first difference.

use std::process::ExitCode;
use std::time::Duration;

use shared_block_ring::{Consumer, Durability, FileDevice, Options, Producer};
use system_tests::item;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("produce") if args.len() == 8 => produce(&args[2..]),
        Some("consume") if args.len() == 7 => consume(&args[2..]),
        _ => Err("usage: ring-peer produce DEVICE COUNT SEED MAX_LEN BATCH DURABILITY | consume DEVICE COUNT SEED MAX_LEN DURABILITY".into()),
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

fn num(s: &str) -> Result<u64, String> {
    s.parse().map_err(|e| format!("{s}: {e}"))
}

fn options(durability: &str) -> Result<Options, String> {
    let d: Durability = durability.parse()?;
    Ok(Options::new()
        .durability(d)
        .max_backoff(Duration::from_millis(1)))
}

fn produce(a: &[String]) -> Result<String, String> {
    let (count, seed, max_len, batch) =
        (num(&a[1])?, num(&a[2])?, num(&a[3])? as usize, num(&a[4])?);
    let device = FileDevice::open(&a[0]).map_err(|e| e.to_string())?;
    let mut p = Producer::attach(device, options(&a[5])?).map_err(|e| e.to_string())?;
    let mut since = 0;
    for i in 0..count {
        let it = item(seed, i, max_len);
        let pos = loop {
            match p.push_wait(&it, Some(Duration::from_secs(60))) {
                Ok(pos) => break pos,
                // Publish what is pending so the consumer can make room.
                Err(e) if e.is_retry() && p.tail() > p.published() => {
                    p.advance(p.tail()).map_err(|e| e.to_string())?
                }
                Err(e) => return Err(format!("push {i}: {e}")),
            }
        };
        since += 1;
        if since == batch || i + 1 == count {
            p.advance(pos).map_err(|e| format!("advance {i}: {e}"))?;
            since = 0;
        }
    }
    Ok(format!("produced {count}"))
}

fn consume(a: &[String]) -> Result<String, String> {
    let (count, seed, max_len) = (num(&a[1])?, num(&a[2])?, num(&a[3])? as usize);
    let device = FileDevice::open(&a[0]).map_err(|e| e.to_string())?;
    let mut c = Consumer::attach(device, options(&a[4])?).map_err(|e| e.to_string())?;
    let mut i = 0u64;
    while i < count {
        c.wait_for_item(c.position(), Some(Duration::from_secs(60)))
            .map_err(|e| format!("waiting for item {i}: {e}"))?;
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
            .map_err(|e| e.to_string())?;
        if let Some(b) = bad {
            return Err(b);
        }
        c.advance(end).map_err(|e| e.to_string())?;
    }
    Ok(format!("consumed {i}"))
}
