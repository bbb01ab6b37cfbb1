//! `sbr diagnostics` on a format-2 ring: the header (format, ring id,
//! creation time, lease), both sides with their owners and heartbeats,
//! the recovery scan, the pending records (each checked), and every
//! problem with its location.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::json;
use shared_block_ring::escape::escape_bytes;
use shared_block_ring::format::v2::{Owner, State};
use shared_block_ring::inspect::v2::Inspection;
use shared_block_ring::{Corruption, HeartbeatAge, Side};

use crate::common::{outln, CmdResult};
use crate::handshake::state_name;

/// The owner as text: `HOST (pid N)`, or `none`.
fn owner_text(o: &Owner) -> String {
    if o.is_none() {
        "none (free)".into()
    } else {
        o.to_string()
    }
}

fn age_text(age: Option<HeartbeatAge>) -> String {
    age.map_or_else(|| "unknown".into(), |a| a.to_string())
}

/// A Unix time in nanoseconds as RFC 3339 (UTC, seconds).
fn time_text(ns: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_nanos(ns)).to_string()
}

fn used(r: &Inspection) -> Option<(State, State, u64)> {
    match (&r.producer, &r.consumer, &r.positions) {
        (Some(Ok(p)), Some(Ok(c)), Some(Ok(()))) => Some((*p, *c, p.position - c.position)),
        _ => None,
    }
}

pub(super) fn print_text(r: &Inspection, name: &str, describe: &str) -> CmdResult {
    let g = r.geometry;
    outln!("device:      {name}")?;
    outln!("             {describe}")?;
    match &r.header {
        Ok(h) => {
            outln!("format:      2")?;
            outln!("ring id:     {}", h.ring_id)?;
            outln!("created:     {}", time_text(h.created))?;
            outln!(
                "lease:       {} (a side's owner may be taken over with --take-over once it has \
                 not written a heartbeat for this long)",
                humantime::format_duration(h.lease())
            )?;
        }
        Err(e) => outln!("format:      2 (sector 0 has the format-2 magic); header INVALID: {e}")?,
    }
    outln!(
        "geometry:    {} sectors of {} bytes; {} data sectors; capacity {} bytes",
        g.sectors(),
        g.sector_size(),
        g.data_sectors(),
        g.capacity()
    )?;
    for (side, state) in [(Side::Producer, &r.producer), (Side::Consumer, &r.consumer)] {
        let label = format!("{side}:");
        match state {
            Some(Ok(s)) => {
                let flag = match side {
                    Side::Producer => "suspend_ack",
                    Side::Consumer => "suspend",
                };
                let extra = match side {
                    Side::Producer => format!(", durable {}, epoch {}", s.durable, s.epoch),
                    Side::Consumer => String::new(),
                };
                outln!(
                    "{label:<12} position {}{extra}, {flag} {}, generation {}",
                    s.position,
                    s.flag,
                    s.generation
                )?;
                outln!(
                    "             owner {}, {}",
                    owner_text(&s.owner),
                    age_text(r.heartbeat_age(side))
                )?;
            }
            Some(Err(e)) => outln!("{label:<12} INVALID: {e}")?,
            None => outln!("{label:<12} not read (no usable header)")?,
        }
    }
    outln!("producer text: \"{}\"", escape_bytes(&r.producer_text))?;
    outln!("consumer text: \"{}\"", escape_bytes(&r.consumer_text))?;
    if let Some(Err(e)) = &r.positions {
        outln!("positions:   INVALID: {e}")?;
    }
    if let Some(scan) = &r.recovery {
        if scan.is_complete() {
            outln!(
                "recovery:    the records from {} to {} are valid ({} checked, producer epoch {})",
                scan.start,
                scan.stop,
                scan.records,
                scan.epoch
            )?;
        } else {
            outln!(
                "recovery:    the producer position is {}, but the valid records end at {} \
                 ({} checked from {}): attach publishes up to {}",
                scan.stop,
                scan.end,
                scan.records,
                scan.start,
                scan.end
            )?;
        }
    }
    if let Some((p, c, used)) = used(r) {
        outln!(
            "used:        {used} bytes; free {} bytes",
            g.capacity() - used
        )?;
        let state = state_name(c.flag, p.flag);
        if c.flag == p.flag {
            outln!("state:       {state}")?;
        } else {
            outln!("state:       {state}, not yet acknowledged by the producer")?;
        }
        super::print_pending("records", &r.items, r.item_count, r.item_error.as_ref())?;
    }
    super::print_verdict(&r.problems())
}

/// A problem's location, when it has one: sector, byte, and the stream
/// position of a record.
fn location(c: &Corruption) -> serde_json::Value {
    match c {
        Corruption::BadRecord {
            sector,
            byte,
            position,
            problem,
        } => json!({"sector": sector, "byte": byte, "position": position,
                    "problem": problem.to_string()}),
        Corruption::BadChecksum { sector, byte, .. }
        | Corruption::WrongRing { sector, byte, .. }
        | Corruption::WrongSectorTag { sector, byte, .. }
        | Corruption::BadField { sector, byte, .. } => json!({"sector": sector, "byte": byte}),
        _ => serde_json::Value::Null,
    }
}

pub(super) fn to_json(r: &Inspection, describe: &str) -> serde_json::Value {
    let side = |s: &Option<Result<State, Corruption>>, text: &[u8], who: Side| match s {
        Some(Ok(st)) => json!({
            "position": st.position,
            "flag": st.flag,
            "generation": st.generation,
            "durable": (who == Side::Producer).then_some(st.durable),
            "epoch": (who == Side::Producer).then_some(st.epoch),
            "owner": if st.owner.is_none() { serde_json::Value::Null } else { json!({
                "host": st.owner.host.to_string(),
                "pid": st.owner.pid,
                "pid_namespace": st.owner.pid_namespace,
                "boot_id": st.owner.boot_id.to_string(),
            })},
            "heartbeat": (st.heartbeat != 0).then(|| time_text(st.heartbeat)),
            "last_seen": age_text(r.heartbeat_age(who)),
            "last_seen_seconds": match r.heartbeat_age(who) {
                Some(HeartbeatAge::Ago(d)) => Some(d.as_secs_f64()),
                _ => None,
            },
            "text": escape_bytes(text).to_string(),
        }),
        Some(Err(e)) => json!({"error": e.to_string(), "location": location(e),
                               "text": escape_bytes(text).to_string()}),
        None => json!({"error": "not read (no usable header)"}),
    };
    let header = match &r.header {
        Ok(h) => json!({"ring_id": h.ring_id.to_string(), "created": time_text(h.created),
                        "lease_ms": h.lease_ms}),
        Err(e) => json!({"error": e}),
    };
    let u = used(r);
    json!({
        "device": describe,
        "format": 2,
        "header": header,
        "ring_id": r.header.as_ref().ok().map(|h| h.ring_id.to_string()),
        "sector_size": r.geometry.sector_size(),
        "sectors": r.geometry.sectors(),
        "capacity": r.geometry.capacity(),
        "producer": side(&r.producer, &r.producer_text, Side::Producer),
        "consumer": side(&r.consumer, &r.consumer_text, Side::Consumer),
        "state": u.map(|(p, c, _)| state_name(c.flag, p.flag)),
        "used": u.map(|(_, _, used)| used),
        "free": u.map(|(_, _, used)| r.geometry.capacity() - used),
        "recovery": r.recovery.as_ref().map(|s| json!({
            "start": s.start, "stop": s.stop, "end": s.end, "records": s.records,
            "epoch": s.epoch, "complete": s.is_complete(),
            "problem": s.problem.as_ref().map(|p| p.to_string()),
            "location": s.problem.as_ref().map(location),
        })),
        "pending_items": r.item_count,
        "items": r.items.iter().map(|i| json!({
            "position": i.position, "next": i.next, "len": i.len,
            "preview": escape_bytes(&i.preview).to_string(),
        })).collect::<Vec<_>>(),
        "invalid_record": r.item_error.as_ref().map(|e| json!({
            "error": e.to_string(), "location": location(e),
        })),
        "problems": r.problems(),
        "healthy": r.is_healthy(),
    })
}
