//! Checking the promise on crash images.

use shared_block_ring::device::FaultDevice;
use shared_block_ring::format::{decode_state, v2 as codec};
use shared_block_ring::{
    create_with, Consumer, Created, Error, MemDevice, Options, Position, Producer, RingFormat,
    Side, SignatureProblem,
};

use crate::workload::{item_bytes, Workload};
use crate::world::Acked;

/// Checks the promise on one crash image. `salt` varies the item pushed
/// afterwards.
pub(crate) fn check_image(
    w: &Workload,
    a: &Acked,
    image: Vec<u8>,
    salt: u64,
) -> Result<(), String> {
    let ss = w.sector_size;
    let suspend_on_disk = suspend_flag(w, &image);
    let disk = MemDevice::from_bytes(ss, image);
    let opts = w.options();
    let mut c = match Consumer::attach(disk.clone(), opts.clone()) {
        Ok(c) => c,
        Err(Error::NotInitialised(SignatureProblem::Blank)) if !a.created => {
            if create_with(&disk, &opts)
                .map_err(|e| format!("create after a crash in create: {e}"))?
                != Created::Created
            {
                return Err("create after a crash found a ring".into());
            }
            Consumer::attach(disk.clone(), opts.clone())
                .map_err(|e| format!("attach after re-create: {e}"))?
        }
        Err(e) => return Err(format!("consumer attach: {e}")),
    };
    let cpos = c.position().offset();
    if cpos != a.c_ack && Some(cpos) != a.c_inflight {
        return Err(format!(
            "consumer position {cpos}: expected {} (returned) or {:?} (in flight)",
            a.c_ack, a.c_inflight
        ));
    }
    let suspended = suspend_on_disk.unwrap_or(false);
    if suspended != a.s_ack && Some(suspended) != a.s_inflight {
        return Err(format!(
            "suspend flag {suspended}: expected {} or {:?}",
            a.s_ack, a.s_inflight
        ));
    }
    let mut bad = None;
    let end = c
        .for_each_bytes(Position::new(cpos), |start, next, bytes| {
            match a.items.get(&start.offset()) {
                Some((e, want)) if *e == next.offset() && want == bytes => {}
                Some((e, want)) => {
                    bad.get_or_insert(format!(
                        "item at {}: {} bytes ending at {}, expected {} bytes ending at {e}{}",
                        start.offset(),
                        bytes.len(),
                        next.offset(),
                        want.len(),
                        if want.len() == bytes.len() {
                            " (contents differ)"
                        } else {
                            ""
                        }
                    ));
                }
                None => {
                    bad.get_or_insert(format!(
                        "delivered an item at {} that was never pushed",
                        start.offset()
                    ));
                }
            }
            Ok(())
        })
        .map_err(|e| format!("reading the items: {e}"))?
        .offset();
    if let Some(b) = bad {
        return Err(b);
    }
    // Format 2 may also end the published items inside the publication in
    // flight (every item delivered was checked against the pushed ones
    // above, so `end` is an item boundary).
    let within_inflight =
        w.format == RingFormat::V2 && a.p_inflight.is_some_and(|f| a.p_ack <= end && end <= f);
    if end != a.p_ack && Some(end) != a.p_inflight && !within_inflight {
        return Err(format!(
            "producer position {end}: expected {} (returned) or {:?} (in flight)",
            a.p_ack, a.p_inflight
        ));
    }
    // The ring keeps working.
    let mut p = match Producer::attach(disk.clone(), opts.clone()) {
        Ok(p) if !suspended => p,
        Err(Error::Suspended) if suspended => {
            c.resume().map_err(|e| format!("resume: {e}"))?;
            Producer::attach(disk.clone(), opts.clone())
                .map_err(|e| format!("producer attach after resume: {e}"))?
        }
        Ok(_) => return Err("producer attached to a suspended ring".into()),
        Err(e) => return Err(format!("producer attach: {e}")),
    };
    c.advance(Position::new(end))
        .map_err(|e| format!("consumer advance: {e}"))?;
    let len = (salt.wrapping_mul(131) % (w.capacity() - w.stream_len(0)).min(3000)) as usize;
    let marker = item_bytes(!w.seed, salt, len);
    let next = p.push(&marker).map_err(|e| format!("push: {e}"))?;
    p.advance(next)
        .map_err(|e| format!("producer advance: {e}"))?;
    let (after, got) = c.pop().map_err(|e| format!("pop: {e}"))?;
    if after != next || got != marker {
        return Err("the item pushed after recovery came back wrong".into());
    }
    c.advance(after)
        .map_err(|e| format!("consumer advance: {e}"))?;
    Ok(())
}

/// The consumer's suspend flag in a crash image, if its sector decodes.
fn suspend_flag(w: &Workload, image: &[u8]) -> Option<bool> {
    let ss = w.sector_size;
    let sector = &image[2 * ss..3 * ss];
    match w.format {
        RingFormat::V1 => decode_state(Side::Consumer, sector).map(|s| s.flag).ok(),
        _ => {
            let header = codec::decode_header(&image[..ss]).ok()?;
            codec::decode_state(Side::Consumer, &header.ring_id, sector)
                .map(|s| s.flag)
                .ok()
        }
    }
}

/// Every power-cut image of `dev` (crashed now) attaches on both sides, with
/// the consumer at `released`. Returns how many images there were.
pub(crate) fn both_sides_attach_after_a_power_cut(
    dev: &FaultDevice<MemDevice>,
    released: u64,
) -> usize {
    dev.crash_after(0);
    let point = dev.crash_point().unwrap();
    let mut states = 0;
    for image in point.power_cut_images(4096, 5) {
        let ring = MemDevice::from_bytes(512, image);
        let c = Consumer::attach(ring.clone(), Options::new())
            .unwrap_or_else(|e| panic!("consumer attach after a power cut: {e}"));
        assert_eq!(c.position().offset(), released);
        drop(c);
        Producer::attach(ring, Options::new())
            .unwrap_or_else(|e| panic!("producer attach after a power cut: {e}"));
        states += 1;
    }
    states
}
