use super::*;
use crate::device::{MemDevice, Op};

fn sector(b: u8) -> Vec<u8> {
    vec![b; 512]
}

fn at(image: &[u8], s: usize) -> u8 {
    image[s * 512]
}

#[test]
fn counts_and_nth_faults() {
    let d = FaultDevice::new(MemDevice::new(512, 8));
    let mut buf = sector(0);
    d.fail_nth(FaultOp::Read, 2);
    d.read(0, &mut buf).unwrap();
    assert_eq!(
        d.read(0, &mut buf).unwrap_err().raw_os_error(),
        Some(libc::EIO)
    );
    d.read(0, &mut buf).unwrap();
    d.fail_nth(FaultOp::Write, 1);
    assert!(d.write(1, &sector(9)).is_err());
    // A failed write changes nothing.
    d.read(1, &mut buf).unwrap();
    assert_eq!(buf, sector(0));
    d.write(1, &sector(9)).unwrap();
    d.fail_all(FaultOp::Flush);
    assert!(d.flush().is_err());
    assert!(d.flush().is_err());
    d.clear_faults();
    d.flush().unwrap();
    d.write_durable(2, &sector(3)).unwrap();
    assert_eq!(
        d.counts(),
        OpCounts {
            reads: 4,
            writes: 2,
            durable_writes: 1,
            flushes: 3,
            failed: 4,
            crash_points: 4,
        }
    );
}

#[test]
fn power_cuts_keep_any_subset_of_unflushed_sectors() {
    let d = FaultDevice::new(MemDevice::new(512, 8));
    d.write(1, &sector(1)).unwrap();
    d.flush().unwrap();
    // Two unflushed writes: one of two sectors, one of one sector that
    // overwrites the first write's second sector.
    d.write(2, &[sector(2), sector(2)].concat()).unwrap();
    d.write(3, &sector(4)).unwrap();
    let p = d.snapshot().unwrap();
    assert_eq!(p.unflushed().len(), 3);
    assert_eq!(at(p.process_crash_image(), 3), 4);
    let durable = p.durable_image();
    assert_eq!(
        (at(&durable, 1), at(&durable, 2), at(&durable, 3)),
        (1, 0, 0)
    );
    let images: Vec<Vec<u8>> = p.power_cut_images(1000, 0).collect();
    // Sector 2: old or new (2 ways); sector 3: old, first or second
    // write (3 ways): 6 distinct images of 8 subsets.
    assert_eq!(images.len(), 6);
    let mut seen: Vec<(u8, u8)> = images.iter().map(|i| (at(i, 2), at(i, 3))).collect();
    seen.sort();
    assert_eq!(seen, vec![(0, 0), (0, 2), (0, 4), (2, 0), (2, 2), (2, 4)]);
    assert!(images.iter().all(|i| at(i, 1) == 1));
    // A limit is honoured.
    assert_eq!(p.power_cut_images(4, 0).count(), 4);
}

#[test]
fn sampling_covers_tears_when_there_are_many_writes() {
    let d = FaultDevice::new(MemDevice::new(512, 40));
    for i in 0..4u8 {
        d.write(3 + 8 * i as u64, &vec![i + 1; 512 * 8]).unwrap();
    }
    let p = d.snapshot().unwrap();
    assert_eq!(p.unflushed().len(), 32);
    let images: Vec<Vec<u8>> = p.power_cut_images(500, 7).collect();
    assert_eq!(images.len(), 500);
    // Every prefix tear of the third write (after the first two) is there.
    for cut in 0..=8usize {
        assert!(images.iter().any(|i| {
            (3..19).all(|s| at(i, s) != 0)
                && (19..27).all(|s| (at(i, s) != 0) == (s < 19 + cut))
                && (27..35).all(|s| at(i, s) == 0)
        }));
    }
}

#[test]
fn durable_writes_and_flushes_empty_the_cache() {
    let d = FaultDevice::new(MemDevice::new(512, 8));
    d.write(3, &sector(1)).unwrap();
    d.write(4, &sector(1)).unwrap();
    d.write_durable(3, &sector(2)).unwrap();
    let p = d.snapshot().unwrap();
    // Sector 3 is durable at its latest version; sector 4 is unflushed.
    assert_eq!(p.unflushed().len(), 1);
    assert!(p.power_cut_images(100, 0).all(|i| at(&i, 3) == 2));
    d.flush().unwrap();
    assert!(d.snapshot().unwrap().unflushed().is_empty());
}

#[test]
fn a_crash_freezes_the_device() {
    let d = FaultDevice::new(MemDevice::new(512, 8));
    d.write(3, &sector(1)).unwrap();
    d.crash_after(2);
    d.write(4, &sector(1)).unwrap();
    // The durable write's first half is the second crash point: it
    // reaches the cache but does not return success.
    assert!(d.write_durable(5, &sector(1)).is_err());
    assert!(d.has_crashed());
    let mut buf = sector(0);
    assert!(d.read(0, &mut buf).is_err());
    assert!(d.write(6, &sector(1)).is_err());
    let p = d.crash_point().unwrap();
    assert_eq!(p.unflushed().len(), 3);
    assert_eq!(at(p.process_crash_image(), 5), 1);
    assert_eq!(at(p.process_crash_image(), 6), 0);
    assert_eq!(p.power_cut_images(100, 0).count(), 8);
    // crash_after(0) crashes at once.
    let d = FaultDevice::new(MemDevice::new(512, 8));
    d.crash_after(0);
    assert!(d.has_crashed());
}

#[test]
fn a_write_the_wrapped_device_fails_is_not_recorded() {
    let inner = FaultDevice::new(MemDevice::new(512, 8));
    let d = FaultDevice::new(inner.clone());
    inner.fail_all(FaultOp::Write);
    assert!(d.write(3, &sector(1)).is_err());
    assert!(d.write_durable(4, &sector(1)).is_err());
    assert!(d.snapshot().unwrap().unflushed().is_empty());
    assert_eq!(d.counts().crash_points, 0);
    inner.clear_faults();
    d.write(3, &sector(1)).unwrap();
    assert_eq!(d.snapshot().unwrap().unflushed().len(), 1);
}

#[test]
fn locks_pass_through() {
    let mem = MemDevice::new(512, 8);
    let a = FaultDevice::new(mem.clone());
    assert!(a.try_lock(Side::Producer).unwrap().is_ok());
    assert!(mem.try_lock(Side::Producer).unwrap().is_err());
    assert!(a.clone().try_lock(Side::Producer).unwrap().is_err());
    a.unlock(Side::Producer);
    assert!(mem.try_lock(Side::Producer).unwrap().is_ok());
    assert!(a.describe().contains("memory device"));
}

#[test]
fn a_crash_during_a_transfer_leaves_any_subset_of_its_writes() {
    let d = FaultDevice::new(MemDevice::new(512, 16));
    d.write(1, &sector(1)).unwrap();
    d.flush().unwrap();
    d.write(9, &sector(9)).unwrap();
    let before = d.counts().crash_points;
    // Crash while the transfer's two writes are in flight.
    d.crash_after(1);
    let two = [sector(5), sector(5)].concat();
    let mut x = sector(0);
    assert!(d
        .transfer(&[(3, &sector(3)), (5, &two)], &mut [(1, &mut x)])
        .is_err());
    assert_eq!(d.counts().crash_points, before + 1);
    let p = d.crash_point().unwrap();
    assert_eq!(p.in_flight().len(), 2);
    let base = p.process_crash_image();
    assert_eq!((at(base, 3), at(base, 5), at(base, 9)), (0, 0, 9));
    // A process crash: each write done whole or not at all.
    let mut seen: Vec<(u8, u8, u8)> = p
        .process_crash_images(100)
        .map(|i| {
            assert_eq!((at(&i, 1), at(&i, 9)), (1, 9));
            (at(&i, 3), at(&i, 5), at(&i, 6))
        })
        .collect();
    seen.sort();
    assert_eq!(seen, [(0, 0, 0), (0, 5, 5), (3, 0, 0), (3, 5, 5)]);
    assert_eq!(p.process_crash_images(3).count(), 3);
    // A power cut: any subset of the unflushed sectors, those of the
    // writes in flight included (sector 9, 3, 5 and 6: 16 images).
    let images: Vec<Vec<u8>> = p.power_cut_images(1000, 0).collect();
    assert_eq!(images.len(), 16);
    assert!(images.iter().all(|i| at(i, 1) == 1));
    assert!(images.iter().any(|i| at(i, 5) == 5 && at(i, 6) == 0));
}

#[test]
fn a_transfer_passes_a_crash_point_in_flight_and_once_done() {
    let d = FaultDevice::new(MemDevice::new(512, 16));
    let mut x = sector(0);
    d.transfer(&[], &mut [(0, &mut x)]).unwrap();
    assert_eq!(d.counts().crash_points, 0);
    d.transfer(&[(2, &sector(2))], &mut []).unwrap();
    assert_eq!(d.counts().crash_points, 1);
    d.transfer(&[(3, &sector(3)), (4, &sector(4))], &mut [(2, &mut x)])
        .unwrap();
    assert_eq!(d.counts().crash_points, 3);
    assert_eq!(x, sector(2));
    let c = d.counts();
    assert_eq!((c.writes, c.reads), (3, 2));
    // A crash once the writes are done: they are all in the image, and
    // nothing is in flight.
    d.crash_after(2);
    assert!(d
        .transfer(&[(5, &sector(5)), (6, &sector(6))], &mut [])
        .is_err());
    let p = d.crash_point().unwrap();
    assert!(p.in_flight().is_empty());
    let images: Vec<Vec<u8>> = p.process_crash_images(10).collect();
    assert_eq!(images.len(), 1);
    assert_eq!((at(&images[0], 5), at(&images[0], 6)), (5, 6));
}

#[test]
fn a_fault_in_a_transfer_fails_one_write_and_the_others_are_done() {
    let d = FaultDevice::new(MemDevice::new(512, 16));
    d.fail_nth(FaultOp::Write, 2);
    let e = d
        .transfer(
            &[(3, &sector(3)), (4, &sector(4)), (5, &sector(5))],
            &mut [],
        )
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
    let image = d.inner().to_vec();
    assert_eq!((at(&image, 3), at(&image, 4), at(&image, 5)), (3, 0, 5));
    // Only the writes carried out are in the cache.
    assert_eq!(d.snapshot().unwrap().unflushed().len(), 2);
    // Ranges are checked first: nothing is done or counted.
    let c = d.counts();
    assert!(d
        .transfer(&[(3, &sector(7)), (16, &sector(7))], &mut [])
        .is_err());
    assert_eq!(d.counts(), c);
    assert_eq!(at(&d.inner().to_vec(), 3), 3);
}

#[test]
fn a_crash_inside_a_chain_leaves_a_prefix_and_power_cuts_keep_its_order() {
    // A format 1 publication: data, flush, durable pointer.
    let data = [sector(2), sector(2)].concat();
    let run = |d: &FaultDevice<MemDevice>| {
        d.chain(&mut [
            Op::Write {
                sector: 2,
                buf: &data,
            },
            Op::Flush,
            Op::WriteDurable {
                sector: 1,
                buf: &sector(1),
            },
        ])
    };
    let points = {
        let d = FaultDevice::new(MemDevice::new(512, 8));
        run(&d).unwrap();
        d.counts().crash_points
    };
    assert_eq!(points, 4);
    for k in 0..=points {
        let d = FaultDevice::new(MemDevice::new(512, 8));
        d.crash_after(k);
        let r = run(&d);
        assert_eq!(r.is_ok(), k == points, "crash point {k}");
        let p = d.crash_point().unwrap();
        // A process crash: a prefix of the chain.
        let i = p.process_crash_image();
        let (data_done, ptr_done) = (at(i, 2) == 2 && at(i, 3) == 2, at(i, 1) == 1);
        assert_eq!(data_done, k >= 1, "crash point {k}");
        assert_eq!(ptr_done, k >= 3, "crash point {k}");
        // A power cut: never the pointer without the data.
        for image in p.power_cut_images(100, k) {
            if at(&image, 1) == 1 {
                assert!(at(&image, 2) == 2 && at(&image, 3) == 2, "crash point {k}");
            }
        }
    }
}
