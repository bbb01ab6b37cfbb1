//! `sbr diagnostics`: show a ring's state and everything wrong with it.
//!
//! Opens the device read-only and takes no lock, so it is safe on a ring in
//! use. Everything read from the device is escaped before it is printed.
//! A format-2 ring (detected from sector 0) is shown by `format2`.

mod format2;

use serde_json::json;
use shared_block_ring::escape::escape_bytes;
use shared_block_ring::inspect::v2::{inspect_any, AnyInspection};
use shared_block_ring::inspect::{Inspection, ItemSummary};

use std::time::Duration;

use crate::common::{outln, parse_duration, CmdResult, DeviceArgs, Failure, OnDevice, EXIT_FATAL};
use crate::handshake::state_name;

/// Arguments of `sbr diagnostics`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    dev: DeviceArgs,

    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,

    /// How many pending items to show.
    #[arg(long, default_value_t = 5)]
    items: usize,

    /// Keep watching: one line (with --json, one object) every INTERVAL
    /// (default 1s) with the fill level, pending items and bytes, publish
    /// and release rates, and how long each side has not moved.
    #[arg(long, value_name = "INTERVAL", num_args = 0..=1, default_missing_value = "1s",
          value_parser = parse_duration)]
    watch: Option<Duration>,

    /// With --watch: stop after N samples.
    #[arg(long, value_name = "N", requires = "watch")]
    count: Option<u64>,
}

/// Payload bytes shown per item.
const PREVIEW: usize = 48;

/// Runs `sbr diagnostics`.
pub fn run(a: Args) -> CmdResult {
    let name = &a.dev.device;
    let device = a.dev.open(true)?;
    if let Some(interval) = a.watch {
        return crate::watch::run(&*device, name, interval, a.count, a.json);
    }
    let describe = device.describe();
    let r = match inspect_any(&*device, a.items, PREVIEW).on(name)? {
        AnyInspection::Format1(r) => r,
        AnyInspection::Format2(r) => {
            if a.json {
                outln!("{}", format2::to_json(&r, &describe))?;
            } else {
                format2::print_text(&r, name, &describe)?;
            }
            return match r.problems().first() {
                None => Ok(()),
                Some(first) => Err(Failure::new(EXIT_FATAL, format!("{name}: {first}"))),
            };
        }
    };
    let problems = r.problems();
    // A ring read with the wrong sector size looks corrupt: say so.
    let hint = if problems.is_empty() {
        None
    } else {
        a.dev.sector_size_hint()
    };
    if a.json {
        outln!("{}", to_json(&r, &describe, hint.as_deref()))?;
    } else {
        print_text(&r, name, &describe, hint.as_deref())?;
    }
    match (problems.first(), hint) {
        (None, _) => Ok(()),
        (Some(first), None) => Err(Failure::new(EXIT_FATAL, format!("{name}: {first}"))),
        (Some(first), Some(hint)) => {
            Err(Failure::new(EXIT_FATAL, format!("{name}: {first}; {hint}")))
        }
    }
}

fn print_text(r: &Inspection, name: &str, describe: &str, hint: Option<&str>) -> CmdResult {
    let g = r.geometry;
    outln!("device:      {name}")?;
    outln!("             {describe}")?;
    outln!("format:      1 (the OCaml library's)")?;
    outln!(
        "signature:   {}",
        match &r.signature {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("MISSING: {e}"),
        }
    )?;
    outln!(
        "geometry:    {} sectors of {} bytes; {} data sectors; capacity {} bytes",
        g.sectors(),
        g.sector_size(),
        g.data_sectors(),
        g.capacity()
    )?;
    match &r.producer {
        Ok(p) => outln!(
            "producer:    position {}, suspend_ack {} (flag byte {})",
            p.position,
            p.flag,
            r.producer_flag_byte
        )?,
        Err(e) => outln!("producer:    INVALID: {e}")?,
    }
    match &r.consumer {
        Ok(c) => outln!(
            "consumer:    position {}, suspend {} (flag byte {})",
            c.position,
            c.flag,
            r.consumer_flag_byte
        )?,
        Err(e) => outln!("consumer:    INVALID: {e}")?,
    }
    outln!("producer text: \"{}\"", escape_bytes(&r.producer_text))?;
    outln!("consumer text: \"{}\"", escape_bytes(&r.consumer_text))?;
    if let Some(Err(e)) = &r.positions {
        outln!("positions:   INVALID: {e}")?;
    }
    if let Some(used) = r.used() {
        outln!(
            "used:        {used} bytes; free {} bytes",
            g.capacity() - used
        )?;
        if let Some(state) = handshake(r) {
            outln!("state:       {state}")?;
        }
        print_pending("items", &r.items, r.item_count, r.item_error.as_ref())?;
    }
    print_verdict(&r.problems())?;
    if let Some(hint) = hint {
        outln!("hint:        {hint}")?;
    }
    Ok(())
}

/// The pending items (`what`: items or records): how many, the first ones
/// with a preview, and the invalid one that stopped the walk.
fn print_pending(
    what: &str,
    items: &[ItemSummary],
    count: u64,
    error: Option<&shared_block_ring::Corruption>,
) -> CmdResult {
    outln!(
        "pending:     {count} {what}{}",
        if error.is_some() {
            " before an invalid one"
        } else {
            ""
        }
    )?;
    for item in items {
        let more = if item.preview.len() < item.len as usize {
            "..."
        } else {
            ""
        };
        outln!(
            "  at {} (next {}), {} bytes: \"{}\"{more}",
            item.position,
            item.next,
            item.len,
            escape_bytes(&item.preview)
        )?;
    }
    if let Some(e) = error {
        outln!("  INVALID: {e}")?;
    }
    Ok(())
}

/// "healthy", or every problem on its own line.
fn print_verdict(problems: &[String]) -> CmdResult {
    if problems.is_empty() {
        outln!("verdict:     healthy")?;
    } else {
        for p in problems {
            outln!("problem:     {p}")?;
        }
    }
    Ok(())
}

/// The handshake state, with "not yet acknowledged" for a pending
/// request, when both flags are valid.
fn handshake(r: &Inspection) -> Option<String> {
    let (Ok(p), Ok(c)) = (&r.producer, &r.consumer) else {
        return None;
    };
    let name = state_name(c.flag, p.flag);
    Some(if c.flag == p.flag {
        name.to_string()
    } else {
        format!("{name}, not yet acknowledged by the producer")
    })
}

fn to_json(r: &Inspection, describe: &str, hint: Option<&str>) -> serde_json::Value {
    let state = |s: &Result<shared_block_ring::format::State, shared_block_ring::Corruption>,
                 byte: u8,
                 text: &[u8]| {
        match s {
            Ok(st) => json!({"position": st.position, "flag": st.flag, "flag_byte": byte,
                             "text": escape_bytes(text).to_string()}),
            Err(e) => json!({"error": e.to_string(), "flag_byte": byte,
                             "text": escape_bytes(text).to_string()}),
        }
    };
    json!({
        "device": describe,
        "format": 1,
        "signature_ok": r.signature.is_ok(),
        "signature_error": r.signature.as_ref().err().map(|e| e.to_string()),
        "sector_size": r.geometry.sector_size(),
        "sectors": r.geometry.sectors(),
        "capacity": r.geometry.capacity(),
        "producer": state(&r.producer, r.producer_flag_byte, &r.producer_text),
        "consumer": state(&r.consumer, r.consumer_flag_byte, &r.consumer_text),
        "state": match (&r.producer, &r.consumer) {
            (Ok(p), Ok(c)) => Some(state_name(c.flag, p.flag)),
            _ => None,
        },
        "used": r.used(),
        "free": r.used().map(|u| r.geometry.capacity() - u),
        "pending_items": r.item_count,
        "items": r.items.iter().map(|i| json!({
            "position": i.position, "next": i.next, "len": i.len,
            "preview": escape_bytes(&i.preview).to_string(),
        })).collect::<Vec<_>>(),
        "problems": r.problems(),
        "healthy": r.is_healthy(),
        "hint": hint,
    })
}
