use super::*;

fn file_of(bytes: usize) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new_in(crate::test_dir()).unwrap();
    f.as_file().set_len(bytes as u64).unwrap();
    f
}

#[test]
fn files_default_to_512_byte_sectors_and_direct_io() {
    let f = file_of(8192);
    let d = FileDevice::open(f.path()).unwrap();
    assert_eq!(d.sector_size(), 512);
    assert_eq!(d.sectors(), 16);
    assert!(d.is_direct());
    let d = FileDevice::open_with(f.path(), &FileOptions::new().sector_size(4096)).unwrap();
    assert_eq!(d.sectors(), 2);
}

#[test]
fn unaligned_buffers_go_through_a_bounce_buffer() {
    let f = file_of(8192);
    let d = FileDevice::open(f.path()).unwrap();
    let mut v = vec![0u8; 1025];
    v[1..].fill(9);
    d.write(2, &v[1..]).unwrap();
    d.write_durable(4, &v[1..]).unwrap();
    let mut back = vec![0u8; 1025];
    d.read(2, &mut back[1..]).unwrap();
    assert!(back[1..].iter().all(|&b| b == 9));
    d.read(4, &mut back[1..]).unwrap();
    assert!(back[1..].iter().all(|&b| b == 9));
}

#[test]
fn out_of_range_and_partial_sectors_are_refused() {
    let f = file_of(2048);
    let d = FileDevice::open(f.path()).unwrap();
    let mut buf = AlignedBuf::zeroed(512);
    assert_eq!(
        d.read(4, &mut buf).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    assert_eq!(
        d.write(0, &buf[..100]).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
}

#[test]
fn a_filesystem_refusing_o_direct_names_the_buffered_option() {
    let e = open_error(
        Path::new("/mnt/fuse/ring.img"),
        io::Error::from_raw_os_error(libc::EINVAL),
        true,
    );
    assert!(matches!(e, Error::DirectIoUnsupported { .. }));
    let text = e.to_string();
    assert!(
        text.contains("/mnt/fuse/ring.img") && text.contains("O_DIRECT"),
        "{text}"
    );
    assert!(
        text.contains("direct(false)") && text.contains("--buffered"),
        "{text}"
    );
    // Without O_DIRECT, EINVAL is just an open error.
    let e = open_error(
        Path::new("x"),
        io::Error::from_raw_os_error(libc::EINVAL),
        false,
    );
    assert!(matches!(e, Error::Open { .. }));
}

#[test]
fn buffered_io_works_where_direct_io_does() {
    let f = file_of(8192);
    let d = FileDevice::open_with(f.path(), &FileOptions::new().direct(false)).unwrap();
    assert!(!d.is_direct());
    d.write_durable(1, &[5u8; 512]).unwrap();
    let mut b = [0u8; 512];
    d.read(1, &mut b).unwrap();
    assert_eq!(b, [5u8; 512]);
}

#[test]
fn another_handle_writing_wakes_a_waiter() {
    let f = file_of(8192);
    let waiter = FileDevice::open(f.path()).unwrap();
    let writer = FileDevice::open(f.path()).unwrap();
    // The first wait sets the watch up and asks for a fresh look.
    assert!(waiter.wait_for_change(Duration::from_secs(5)));
    // Nothing written: the wait runs to its timeout.
    assert!(!waiter.wait_for_change(Duration::from_millis(20)));
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        writer.write_durable(1, &AlignedBuf::zeroed(512)).unwrap();
    });
    // Woken by the write, long before the timeout.
    assert!(waiter.wait_for_change(Duration::from_secs(30)));
    t.join().unwrap();
}

#[test]
fn other_file_types_are_named_and_a_fifo_never_blocks() {
    let dir = tempfile::tempdir_in(crate::test_dir()).unwrap();
    let fifo = dir.path().join("fifo");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
    )
    .unwrap();
    let cases = [
        (dir.path().to_path_buf(), "a directory"),
        (fifo, "a FIFO (named pipe)"),
        (PathBuf::from("/dev/null"), "a character device"),
    ];
    for (path, what) in cases {
        for read_only in [true, false] {
            // A FIFO with no writer would block a plain open for ever:
            // the open runs in a thread with a deadline.
            let (tx, rx) = std::sync::mpsc::channel();
            let p = path.clone();
            std::thread::spawn(move || {
                let r = FileDevice::open_with(&p, &FileOptions::new().read_only(read_only));
                let _ = tx.send(r.err().map(|e| e.to_string()));
            });
            let e = rx
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("opening {} blocked", path.display()))
                .expect("refused");
            assert_eq!(
                e,
                format!(
                    "cannot open {}: it is {what}; a ring needs a regular file or a block device",
                    path.display()
                )
            );
        }
    }
}

#[test]
fn a_missing_file_names_its_path() {
    let e = FileDevice::open("/nonexistent/ring.img").err().unwrap();
    assert!(e.to_string().contains("/nonexistent/ring.img"), "{e}");
}

/// Both I/O paths, where this kernel has io_uring (it is required to:
/// the development machine and CI have it; elsewhere only Sync runs).
fn both_paths() -> Vec<Io> {
    match uring::available() {
        Ok(()) => vec![Io::Sync, Io::Uring],
        Err(_) => vec![Io::Sync],
    }
}

fn pattern(len: usize, seed: u8) -> AlignedBuf {
    let mut b = AlignedBuf::zeroed(len);
    for (i, x) in b.iter_mut().enumerate() {
        *x = (i / 512) as u8 ^ seed ^ (i as u8).rotate_left(3);
    }
    b
}

#[test]
fn the_environment_overrides_auto_only() {
    assert_eq!(Io::Auto.resolve(Some("sync")), Io::Sync);
    assert_eq!(Io::Auto.resolve(Some("uring")), Io::Uring);
    assert_eq!(Io::Auto.resolve(Some("auto")), Io::Auto);
    assert_eq!(Io::Auto.resolve(None), Io::Auto);
    assert_eq!(Io::Auto.resolve(Some("fast")), Io::Auto);
    assert_eq!(Io::Sync.resolve(Some("uring")), Io::Sync);
    assert_eq!(Io::Uring.resolve(Some("sync")), Io::Uring);
}

#[test]
fn io_uring_is_found_where_nothing_forbids_it() {
    // Where the kernel has io_uring enabled (the sysctl, Linux 6.6 on)
    // and no seccomp filter can refuse it, a failed probe is a bug in
    // the probe, which would silently send every device to the
    // synchronous path.
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let enabled = read("/proc/sys/kernel/io_uring_disabled").trim() == "0";
    let unfiltered = read("/proc/self/status")
        .lines()
        .any(|l| l.split_whitespace().eq(["Seccomp:", "0"]));
    if enabled && unfiltered {
        assert_eq!(uring::available(), Ok(()));
    }
}

#[test]
fn both_paths_read_what_either_wrote() {
    let f = file_of(1 << 20);
    let devices: Vec<FileDevice> = both_paths()
        .into_iter()
        .map(|io| FileDevice::open_with(f.path(), &FileOptions::new().io(io)).unwrap())
        .collect();
    for (k, d) in devices.iter().enumerate() {
        assert_eq!(d.io(), both_paths()[k]);
        let data = pattern(64 << 10, k as u8);
        d.write(8 + 256 * k as u64, &data).unwrap();
        d.write_durable(1024 + 256 * k as u64, &data).unwrap();
        d.flush().unwrap();
        for r in &devices {
            let mut back = AlignedBuf::zeroed(64 << 10);
            r.read(8 + 256 * k as u64, &mut back).unwrap();
            assert_eq!(&back[..], &data[..]);
            r.read(1024 + 256 * k as u64, &mut back).unwrap();
            assert_eq!(&back[..], &data[..]);
        }
    }
}

#[test]
fn a_transfer_carries_out_every_write_and_read() {
    for io in both_paths() {
        let f = file_of(1 << 20);
        let d = FileDevice::open_with(f.path(), &FileOptions::new().io(io)).unwrap();
        // More requests than one ring round holds (64), of several sizes.
        let datas: Vec<AlignedBuf> = (0..100)
            .map(|i| pattern(512 * (1 + i % 3), i as u8))
            .collect();
        let writes: Vec<(u64, &[u8])> = datas
            .iter()
            .enumerate()
            .map(|(i, b)| (4 * i as u64, &b[..]))
            .collect();
        let before = pattern(4096, 77);
        d.write(1000, &before).unwrap();
        let mut old = AlignedBuf::zeroed(4096);
        d.transfer(&writes, &mut [(1000, &mut old)]).unwrap();
        assert_eq!(&old[..], &before[..], "{io:?}");
        let mut backs: Vec<AlignedBuf> =
            datas.iter().map(|b| AlignedBuf::zeroed(b.len())).collect();
        let mut reads: Vec<(u64, &mut [u8])> = backs
            .iter_mut()
            .enumerate()
            .map(|(i, b)| (4 * i as u64, &mut b[..]))
            .collect();
        d.transfer(&[], &mut reads).unwrap();
        for (a, b) in datas.iter().zip(&backs) {
            assert_eq!(&a[..], &b[..], "{io:?}");
        }
        // Unaligned buffers work too (through a bounce buffer).
        let mut v = vec![0u8; 1025];
        v[1..].fill(9);
        let mut w = vec![0u8; 1025];
        d.transfer(&[(600, &v[1..])], &mut []).unwrap();
        d.transfer(&[], &mut [(600, &mut w[1..])]).unwrap();
        assert_eq!(w[1..], v[1..]);
        // Ranges are checked before anything is done.
        let e = d
            .transfer(&[(0, &datas[0][..512])], &mut [(2048, &mut w[1..513])])
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let mut first = AlignedBuf::zeroed(512);
        d.read(0, &mut first).unwrap();
        assert_eq!(&first[..], &datas[0][..512]);
    }
}

#[test]
fn a_chain_runs_in_order_and_stops_at_a_failure_on_either_path() {
    for io in both_paths() {
        let f = file_of(64 * 512);
        let d = FileDevice::open_with(f.path(), &FileOptions::new().io(io)).unwrap();
        let (a, b, p) = (pattern(2048, 1), pattern(2048, 2), pattern(512, 3));
        let mut back = AlignedBuf::zeroed(2048);
        d.chain(&mut [
            Op::Write { sector: 4, buf: &a },
            Op::Write { sector: 4, buf: &b },
            Op::Flush,
            Op::WriteDurable { sector: 1, buf: &p },
            Op::Read {
                sector: 4,
                buf: &mut back,
            },
        ])
        .unwrap();
        assert_eq!(&back[..], &b[..], "{io:?}: out of order");
        // The file shrinks under the device: a read of its last sectors
        // fails in the middle of a chain. What came before it ran, the
        // write after it did not.
        f.as_file().set_len(32 * 512).unwrap();
        let mut far = AlignedBuf::zeroed(512);
        let e = d
            .chain(&mut [
                Op::Write { sector: 8, buf: &a },
                Op::Read {
                    sector: 40,
                    buf: &mut far,
                },
                Op::Write {
                    sector: 12,
                    buf: &a,
                },
                Op::Flush,
            ])
            .unwrap_err();
        assert_eq!(
            (e.done, e.error.kind()),
            (1, io::ErrorKind::UnexpectedEof),
            "{io:?}: {e}"
        );
        d.read(8, &mut back).unwrap();
        assert_eq!(&back[..], &a[..], "{io:?}");
        d.read(12, &mut back).unwrap();
        assert_eq!(&back[..], &[0u8; 2048][..], "{io:?}: ran past the failure");
        // A read-only device refuses a chain that writes before it
        // starts.
        let ro =
            FileDevice::open_with(f.path(), &FileOptions::new().io(io).read_only(true)).unwrap();
        let e = ro
            .chain(&mut [
                Op::Read {
                    sector: 0,
                    buf: &mut far,
                },
                Op::Write { sector: 0, buf: &p },
            ])
            .unwrap_err();
        assert_eq!(
            (e.done, e.error.kind()),
            (0, io::ErrorKind::PermissionDenied)
        );
    }
}

#[test]
fn io_errors_come_back_from_either_path() {
    for io in both_paths() {
        let f = file_of(8192);
        let ro =
            FileDevice::open_with(f.path(), &FileOptions::new().io(io).read_only(true)).unwrap();
        let buf = AlignedBuf::zeroed(512);
        // The descriptor is read-only: the kernel refuses the write.
        for e in [
            ro.write(1, &buf).unwrap_err(),
            ro.write_durable(1, &buf).unwrap_err(),
            ro.transfer(&[(1, &buf), (2, &buf)], &mut []).unwrap_err(),
        ] {
            assert_eq!(e.raw_os_error(), Some(libc::EBADF), "{io:?}: {e}");
        }
    }
}

#[test]
fn an_io_uring_writer_wakes_a_waiter() {
    for io in both_paths() {
        let f = file_of(8192);
        let waiter = FileDevice::open(f.path()).unwrap();
        let writer = FileDevice::open_with(f.path(), &FileOptions::new().io(io)).unwrap();
        assert!(waiter.wait_for_change(Duration::from_secs(5)));
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            writer.write(1, &AlignedBuf::zeroed(512)).unwrap();
        });
        let started = std::time::Instant::now();
        assert!(
            waiter.wait_for_change(Duration::from_secs(30)),
            "{io:?}: no change notification for the write within 30 s"
        );
        assert!(started.elapsed() < Duration::from_secs(20), "{io:?}");
        t.join().unwrap();
    }
}

#[test]
fn a_lock_released_within_the_grace_period_is_taken() {
    if uring::available().is_err() {
        return;
    }
    // As when the holder is a process that died with io_uring requests
    // in flight: the lock goes a little after the attach is tried.
    let f = file_of(4096);
    let a = FileDevice::open(f.path()).unwrap();
    let b = FileDevice::open(f.path()).unwrap();
    assert!(a.try_lock(Side::Consumer).unwrap().is_ok());
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        drop(a);
    });
    assert!(b.try_lock(Side::Consumer).unwrap().is_ok());
    t.join().unwrap();
}

#[test]
fn role_locks_conflict_between_opens() {
    let f = file_of(4096);
    let a = FileDevice::open(f.path()).unwrap();
    let b = FileDevice::open(f.path()).unwrap();
    assert!(a.try_lock(Side::Producer).unwrap().is_ok());
    assert!(b.try_lock(Side::Producer).unwrap().is_err());
    assert!(b.try_lock(Side::Consumer).unwrap().is_ok());
    a.unlock(Side::Producer);
    assert!(b.try_lock(Side::Producer).unwrap().is_ok());
    drop(b);
    assert!(a.try_lock(Side::Consumer).unwrap().is_ok());
}

#[test]
fn transfers_go_together_on_the_io_uring_path_only() {
    for io in both_paths() {
        let f = file_of(8192);
        let d = FileDevice::open_with(f.path(), &FileOptions::new().io(io)).unwrap();
        assert_eq!(d.transfers_together(), io == Io::Uring, "{io:?}");
        // Through a box, as `device::open` hands it out.
        let boxed: Box<dyn BlockDevice> = Box::new(d);
        assert_eq!(boxed.transfers_together(), io == Io::Uring, "{io:?}");
    }
}
