//! The ring over NBD, against real servers: qemu-nbd and nbdkit, started
//! by the tests on loopback ports or Unix sockets and stopped on drop.
//!
//! Each producer and consumer is its own process with its own connection,
//! as on two hosts. "Exactly once and in order" is checked by the consumer
//! peer: the released items are exactly items 0..N of the deterministic
//! stream, in order. After a failure, items read but not yet released are
//! delivered again (that is the ring's contract); the peer checks them
//! again against the same indices, so a gap, a duplicate in the released
//! sequence or a reordering fails the test.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shared_block_ring::device::{self, BlockDevice};
use shared_block_ring::{
    create, layout, AlignedBuf, Consumer, Error, FileDevice, FileOptions, NbdDevice, Options,
    Producer,
};
use system_tests::nbd::{NbdServer, Transport};
use system_tests::{item, ring_file, ChildGuard};

const PEER: &str = env!("CARGO_BIN_EXE_ring-peer");
const ITEMS: u64 = 100_000;
/// Up to three sectors per item.
const MAX_LEN: u64 = 1536;
/// A 64 KiB ring: 100,000 items of ~770 bytes wrap it over a thousand times.
const RING_BYTES: usize = 64 * 1024;

/// What a peer process printed.
struct PeerOutput {
    stdout: String,
    stderr: String,
}

impl PeerOutput {
    /// The `key=N` figure of the summary line.
    fn figure(&self, key: &str) -> u64 {
        self.stdout
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{key}=")))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {key}= in {:?}", self.stdout))
    }
}

/// A producer and a consumer process on `spec`.
struct Pair {
    producer: ChildGuard,
    consumer: ChildGuard,
}

impl Pair {
    fn spawn(spec: &str, seed: u64, items: u64, batch: u64, durability: &str, retry: bool) -> Pair {
        let retry: &[&str] = if retry { &["--retry", "60"] } else { &[] };
        let consumer = ChildGuard::spawn(
            Command::new(PEER)
                .args(["consume", spec])
                .args([items, seed, MAX_LEN].map(|n| n.to_string()))
                .arg(durability)
                .args(retry)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        );
        let producer = ChildGuard::spawn(
            Command::new(PEER)
                .args(["produce", spec])
                .args([items, seed, MAX_LEN, batch].map(|n| n.to_string()))
                .arg(durability)
                .args(retry)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        );
        Pair { producer, consumer }
    }

    /// Waits for both, asserts they succeeded and the consumer got every
    /// item, and returns their output.
    fn finish(self, items: u64) -> (PeerOutput, PeerOutput) {
        let out = |c: ChildGuard, role: &str| {
            let o = c.wait_output();
            let out = PeerOutput {
                stdout: String::from_utf8_lossy(&o.stdout).trim().to_string(),
                stderr: String::from_utf8_lossy(&o.stderr).to_string(),
            };
            assert!(o.status.success(), "{role} failed: {}", out.stderr);
            out
        };
        let p = out(self.producer, "producer");
        let c = out(self.consumer, "consumer");
        assert!(
            p.stdout.starts_with(&format!("produced {items}")),
            "{}",
            p.stdout
        );
        assert!(
            c.stdout.starts_with(&format!("consumed {items}")),
            "{}",
            c.stdout
        );
        (p, c)
    }
}

/// Creates a ring through the server.
fn create_over_nbd(uri: &str) {
    let device = NbdDevice::open(uri).unwrap_or_else(|e| panic!("opening {uri}: {e}"));
    create(&device).unwrap();
}

/// The producer and consumer positions in an image, read directly.
fn positions(image: &Path) -> (u64, u64) {
    let f = File::open(image).unwrap();
    let at = |sector: u64| {
        let mut b = [0u8; 8];
        f.read_exact_at(&mut b, sector * 512).unwrap();
        u64::from_le_bytes(b)
    };
    (at(layout::PRODUCER_SECTOR), at(layout::CONSUMER_SECTOR))
}

/// Stream bytes taken by items `0..items` of the stream from `seed`.
fn stream_len(seed: u64, items: u64) -> u64 {
    (0..items)
        .map(|i| layout::item_stream_len(item(seed, i, MAX_LEN as usize).len() as u64))
        .sum()
}

#[test]
fn qemu_nbd_over_tcp_carries_100k_items_between_two_processes() {
    let image = ring_file(RING_BYTES);
    let server = NbdServer::qemu_nbd(image.path(), "ring", Transport::Tcp, &["--cache=none"]);
    create_over_nbd(&server.uri());
    Pair::spawn(&server.uri(), 11, ITEMS, 16, "power-loss", false).finish(ITEMS);
    drop(server);
    let end = stream_len(11, ITEMS);
    assert_eq!(positions(image.path()), (end, end));
}

#[test]
fn nbdkit_file_plugin_over_a_unix_socket_carries_100k_items_between_two_processes() {
    let image = ring_file(RING_BYTES);
    let file = image.path().to_str().unwrap();
    let server = NbdServer::nbdkit(&[], &["file", file], Transport::Unix);
    assert!(server.uri().starts_with("nbd+unix:///"));
    create_over_nbd(&server.uri());
    Pair::spawn(&server.uri(), 12, ITEMS, 16, "power-loss", false).finish(ITEMS);
    drop(server);
    let end = stream_len(12, ITEMS);
    assert_eq!(positions(image.path()), (end, end));
}

#[test]
fn nbdkit_memory_plugin_carries_100k_items_one_per_advance_in_process_crash_mode() {
    let server = NbdServer::nbdkit(&[], &["memory", "64K"], Transport::Tcp);
    create_over_nbd(&server.uri());
    Pair::spawn(&server.uri(), 13, ITEMS, 1, "process-crash", false).finish(ITEMS);
    // The memory plugin has no image to look at: ask the server.
    let device = NbdDevice::open(&server.uri()).unwrap();
    let mut c = Consumer::attach(device, Options::new()).unwrap();
    assert!(c.pop().unwrap_err().is_retry());
    assert_eq!(c.position().offset(), stream_len(13, ITEMS));
}

/// The same operations on a ring through NBD and on a local file.
fn scripted_ring(device: &dyn BlockDevice) {
    create(device).unwrap();
    let options = Options::new().queue("same-bytes").client("nbd-test");
    let mut p = Producer::attach(device, options.clone()).unwrap();
    let mut c = Consumer::attach(device, options).unwrap();
    let mut unread = std::collections::VecDeque::new();
    for round in 0..6u64 {
        let items: Vec<Vec<u8>> = (0..9).map(|i| item(round, i, 900)).collect();
        let end = p.push_many(items.iter().map(Vec::as_slice)).unwrap();
        p.advance(end).unwrap();
        unread.extend(items);
        for _ in 0..7 {
            let (next, got) = c.pop().unwrap();
            assert_eq!(Some(got), unread.pop_front());
            c.advance(next).unwrap();
        }
    }
}

#[test]
fn a_ring_made_through_nbd_is_byte_identical_to_one_made_on_a_local_file() {
    let size = 24 * 1024;
    let local = ring_file(size);
    let nbd_image = ring_file(size);
    let kit_image = ring_file(size);
    {
        let qemu = NbdServer::qemu_nbd(nbd_image.path(), "ring", Transport::Tcp, &["--cache=none"]);
        let kit = NbdServer::nbdkit(
            &[],
            &["file", kit_image.path().to_str().unwrap()],
            Transport::Unix,
        );
        let over_qemu = NbdDevice::open(&qemu.uri()).unwrap();
        let over_kit = NbdDevice::open(&kit.uri()).unwrap();
        assert_eq!(over_qemu.sector_size(), 512);
        assert_eq!(over_kit.sector_size(), 512);
        scripted_ring(&over_qemu);
        scripted_ring(&over_kit);
    }
    scripted_ring(&FileDevice::open(local.path()).unwrap());
    let expected = std::fs::read(local.path()).unwrap();
    assert!(expected.starts_with(layout::SIGNATURE));
    for image in [&nbd_image, &kit_image] {
        let got = std::fs::read(image.path()).unwrap();
        assert!(
            got == expected,
            "{} differs from the local ring at byte {:?}",
            image.path().display(),
            got.iter().zip(&expected).position(|(a, b)| a != b)
        );
    }
}

/// Runs `f` until it succeeds, retrying the errors the error filter
/// injects, at most 200 times.
fn retrying<T>(mut f: impl FnMut() -> Result<T, Error>) -> T {
    for _ in 0..200 {
        match f() {
            Ok(t) => return t,
            Err(e) if e.is_io() => continue,
            Err(e) => panic!("{e}"),
        }
    }
    panic!("200 attempts in a row failed")
}

#[test]
fn server_errors_from_the_error_filter_surface_as_eio_and_retries_lose_nothing() {
    // A few percent of reads and writes fail with EIO, and every read and
    // write is delayed, so requests of both peers interleave.
    let server = NbdServer::nbdkit(
        &["error", "delay"],
        &[
            "memory",
            "64K",
            "error=EIO",
            "error-pread-rate=3%",
            "error-pwrite-rate=3%",
            "delay-read=1ms",
            "delay-write=1ms",
        ],
        Transport::Tcp,
    );
    let uri = server.uri();

    // One device: an injected error is an EIO naming the operation, and the
    // connection stays usable, so the next attempt can succeed.
    let device = NbdDevice::open(&uri).unwrap();
    let mut buf = AlignedBuf::zeroed(512);
    let mut seen = None;
    for _ in 0..2000 {
        if let Err(e) = device.read(0, &mut buf) {
            seen = Some(e);
            break;
        }
    }
    let e = seen.expect("no read failed in 2000 attempts at a 3% error rate");
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    assert!(device.is_connected());
    retrying(|| device.read(0, &mut buf).map_err(|e| shared_io(0, e)));
    retrying(|| create(&device));
    drop(device);

    // Two peers: both see errors, retry them on the same handle, and the
    // stream arrives whole.
    let items = 5_000;
    let (p, c) = Pair::spawn(&uri, 14, items, 16, "power-loss", true).finish(items);
    println!("producer: {}\nconsumer: {}", p.stdout, c.stdout);
    assert!(
        p.figure("errors") > 0,
        "the producer saw no error: {}",
        p.stdout
    );
    assert!(
        c.figure("errors") > 0,
        "the consumer saw no error: {}",
        c.stdout
    );
    assert_eq!(p.figure("reattached"), 0, "{}", p.stderr);
    assert_eq!(c.figure("reattached"), 0, "{}", c.stderr);
    assert!(p.stderr.contains("os error 5"), "{}", p.stderr);

    // Everything acknowledged is on the server: the ring is drained, at
    // the end of the stream.
    let mut c = retrying(|| Consumer::attach(NbdDevice::open(&uri)?, Options::new()));
    assert!(retrying(|| match c.pop() {
        Err(e) if e.is_retry() => Ok(true),
        Err(e) => Err(e),
        Ok(_) => Ok(false),
    }));
    assert_eq!(c.position().offset(), stream_len(14, items));
}

fn shared_io(sector: u64, e: std::io::Error) -> Error {
    // The ring's own error type for a raw device error, so `retrying` can
    // treat it as the ring would.
    Error::Io {
        op: shared_block_ring::IoOp::Read,
        sector,
        source: e,
    }
}

#[test]
fn both_peers_survive_the_server_being_killed_and_restarted_mid_stream() {
    let image = ring_file(RING_BYTES);
    let mut server = NbdServer::qemu_nbd(image.path(), "ring", Transport::Tcp, &["--cache=none"]);
    create_over_nbd(&server.uri());
    let seed = 15;
    let end = stream_len(seed, ITEMS);
    let pair = Pair::spawn(&server.uri(), seed, ITEMS, 16, "power-loss", true);
    for fraction in [4, 2] {
        // Wait until the producer is part-way through the stream.
        let deadline = Instant::now() + Duration::from_secs(120);
        while positions(image.path()).0 < end / fraction {
            assert!(Instant::now() < deadline, "the peers made no progress");
            std::thread::sleep(Duration::from_millis(5));
        }
        server.restart();
    }
    let (p, c) = pair.finish(ITEMS);
    println!(
        "producer: {}\n{}consumer: {}\n{}",
        p.stdout, p.stderr, c.stdout, c.stderr
    );
    for (role, out) in [("producer", &p), ("consumer", &c)] {
        assert!(
            out.figure("reattached") >= 2,
            "the {role} did not notice both restarts: {} {}",
            out.stdout,
            out.stderr
        );
        assert!(
            out.stderr.contains("lost"),
            "the {role} did not report a lost connection: {}",
            out.stderr
        );
    }
    drop(server);
    assert_eq!(positions(image.path()), (end, end));
}

#[test]
fn a_read_only_export_refuses_producers_and_consumers() {
    let image = ring_file(RING_BYTES);
    create(&FileDevice::open(image.path()).unwrap()).unwrap();
    let server = NbdServer::qemu_nbd(image.path(), "ring", Transport::Unix, &["--read-only"]);
    let device = NbdDevice::open(&server.uri()).unwrap();
    assert!(device.is_read_only());
    assert!(
        device.describe().contains("read-only"),
        "{}",
        device.describe()
    );
    let e = device.write(3, &[0u8; 512]).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
    let e = Producer::attach(device, Options::new()).unwrap_err();
    assert!(matches!(e, Error::ReadOnly), "{e}");
    let e = Consumer::attach(NbdDevice::open(&server.uri()).unwrap(), Options::new()).unwrap_err();
    assert!(matches!(e, Error::ReadOnly), "{e}");

    // Asking for read-only on a writable export works the same way.
    let writable = NbdServer::nbdkit(&[], &["memory", "64K"], Transport::Tcp);
    let ro = device::open(&writable.uri(), &FileOptions::new().read_only(true)).unwrap();
    assert!(ro.is_read_only());
}

#[test]
fn device_open_takes_nbd_uris_and_applies_the_sector_size_option() {
    let server = NbdServer::nbdkit(&[], &["memory", "1M"], Transport::Tcp);
    let d = device::open(&server.uri(), &FileOptions::new()).unwrap();
    assert_eq!((d.sector_size(), d.sectors()), (512, 2048));
    let d = device::open(&server.uri(), &FileOptions::new().sector_size(4096)).unwrap();
    assert_eq!((d.sector_size(), d.sectors()), (4096, 256));
    assert!(d.describe().starts_with(&server.uri()), "{}", d.describe());
    create(&d).unwrap();
}

#[test]
fn the_servers_block_size_constraints_choose_the_sector_size_and_split_requests() {
    // The server refuses (with EINVAL) any request that breaks its
    // constraints, so the ring working proves the client keeps them.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("requests.log");
    let server = NbdServer::nbdkit(
        &["log", "blocksize-policy"],
        &[
            "memory",
            "1M",
            &format!("logfile={}", log.display()),
            "blocksize-minimum=1024",
            "blocksize-preferred=4096",
            "blocksize-maximum=8192",
            "blocksize-error-policy=error",
        ],
        Transport::Unix,
    );
    let device = NbdDevice::open(&server.uri()).unwrap();
    let sizes = device.block_sizes();
    assert!(sizes.advertised);
    assert_eq!(
        (sizes.minimum, sizes.preferred, sizes.maximum),
        (1024, 4096, 8192)
    );
    assert_eq!(device.sector_size(), 1024);
    let e = NbdDevice::open_with(&server.uri(), &FileOptions::new().sector_size(512))
        .err()
        .unwrap();
    assert!(
        matches!(
            e,
            Error::SectorSizeMismatch {
                requested: 512,
                device: 1024
            }
        ),
        "{e}"
    );

    // 40 KiB in one call: five 8 KiB requests.
    let data: Vec<u8> = (0..40 * 1024).map(|i| (i % 251) as u8).collect();
    device.write_durable(8, &data).unwrap();
    let mut back = vec![0u8; data.len()];
    device.read(8, &mut back).unwrap();
    assert!(back == data);
    create(&device).unwrap();
    let mut p = Producer::attach(&device, Options::new()).unwrap();
    let big = vec![7u8; 20_000];
    let end = p.push(&big).unwrap();
    p.advance(end).unwrap();
    let mut c = Consumer::attach(NbdDevice::open(&server.uri()).unwrap(), Options::new()).unwrap();
    assert_eq!(c.pop().unwrap().1, big);
    drop(p);
    drop(c);
    drop(device);
    drop(server);

    let log = std::fs::read_to_string(&log).unwrap();
    let writes: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" Write ") && l.contains("offset=0x2000 "))
        .collect();
    assert_eq!(writes.len(), 1, "{log}");
    assert!(writes[0].contains("count=0x2000 fua=1"), "{log}");
    assert!(!log.contains("return=-1"), "a request failed:\n{log}");
    let largest = log
        .lines()
        .filter_map(|l| l.split("count=0x").nth(1)?.split(' ').next())
        .map(|hex| u64::from_str_radix(hex, 16).unwrap())
        .max();
    assert_eq!(largest, Some(8192), "{log}");
}

#[test]
fn write_durable_is_one_fua_write_on_a_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("requests.log");
    let server = NbdServer::nbdkit(
        &["log"],
        &["memory", "1M", &format!("logfile={}", log.display())],
        Transport::Unix,
    );
    let device = NbdDevice::open(&server.uri()).unwrap();
    assert!(device.supports_fua());
    device.write_durable(2, &[1u8; 512]).unwrap();
    device.write(3, &[2u8; 512]).unwrap();
    device.flush().unwrap();
    drop(device);
    drop(server);
    let log = std::fs::read_to_string(&log).unwrap();
    let ops: Vec<&str> = log
        .lines()
        .filter(|l| !l.contains("return="))
        .filter_map(|l| {
            [
                "Write id=1 offset=0x400 count=0x200 fua=1",
                "Write id=2 offset=0x600 count=0x200 fua=0",
                "Flush id=3",
            ]
            .into_iter()
            .find(|op| l.contains(op))
        })
        .collect();
    assert_eq!(ops.len(), 3, "{log}");
}

#[test]
fn a_server_that_goes_away_is_a_lost_connection_then_an_open_error() {
    let server = NbdServer::nbdkit(&[], &["memory", "64K"], Transport::Tcp);
    let uri = server.uri();
    let device = NbdDevice::open(&uri).unwrap();
    drop(server);
    // The connection is gone: an error naming it, at once and afterwards.
    let mut buf = AlignedBuf::zeroed(512);
    let started = Instant::now();
    let e = device.read(0, &mut buf).unwrap_err();
    assert!(
        e.to_string().contains(&format!("connection to {uri} lost")),
        "{e}"
    );
    let e = device.read(0, &mut buf).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotConnected, "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!device.is_connected());
    let e = NbdDevice::open(&uri).err().unwrap();
    assert!(matches!(e, Error::Open { .. }), "{e}");
    assert!(e.to_string().contains(&uri), "{e}");
}

/// The requests one connection sent, as `Write offset count fua`, `Flush`
/// or `Read`, from nbdkit's log filter.
fn requests_of(log: &str, connection: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(&format!("connection={connection} ")) && !l.contains("return="))
        .filter_map(|l| {
            let rest = l.split(&format!("connection={connection} ")).nth(1)?;
            let mut words = rest.split_whitespace();
            let op = words.next()?;
            let field = |name: &str| {
                rest.split_whitespace()
                    .find_map(|w| w.strip_prefix(name))
                    .unwrap_or("?")
                    .to_string()
            };
            match op {
                "Write" => Some(format!(
                    "Write {} {} fua={}",
                    field("offset="),
                    field("count="),
                    field("fua=")
                )),
                "Flush" | "Read" => Some(op.to_string()),
                _ => None,
            }
        })
        .collect()
}

#[test]
fn a_power_loss_advance_flushes_the_items_before_a_fua_write_of_the_pointer() {
    for durability in ["power-loss", "process-crash"] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("requests.log");
        let server = NbdServer::nbdkit(
            &["log"],
            &["memory", "64K", &format!("logfile={}", log.display())],
            Transport::Unix,
        );
        create_over_nbd(&server.uri());
        let options = Options::new()
            .durability(durability.parse().unwrap())
            // Never re-read the consumer sector between pushes.
            .consumer_poll_interval(Duration::from_secs(3600));
        let mut p = Producer::attach(NbdDevice::open(&server.uri()).unwrap(), options).unwrap();
        p.push(&[1u8; 100]).unwrap();
        let end = p.push(&[2u8; 100]).unwrap();
        p.advance(end).unwrap();
        drop(p);
        drop(server);
        let log = std::fs::read_to_string(&log).unwrap();
        // Connection 1 created the ring; connection 2 is the producer.
        let got = requests_of(&log, "2");
        // Attach reads sectors 0-2; each push writes the item's sector
        // (stream sector 0 is device sector 3, at 0x600); then advance.
        let publish: &[&str] = if durability == "power-loss" {
            &["Flush", "Write 0x200 0x200 fua=1"]
        } else {
            &["Write 0x200 0x200 fua=0"]
        };
        let mut expected = vec![
            "Read",
            "Read",
            "Read",
            "Write 0x600 0x200 fua=0",
            "Write 0x600 0x200 fua=0",
        ];
        expected.extend(publish);
        assert_eq!(got, expected, "{durability}:\n{log}");
    }
}

/// nbdkit's log once it has logged the client's disconnect, which comes
/// after every request of the connection: killing the server before that
/// can lose the last lines.
fn log_after_disconnect(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if log.contains(" Disconnect ") {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "nbdkit logged no disconnect within 10 s:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// How many requests were in flight at once, at most, in nbdkit's log: a
/// request counts from its start line to its `return=` line.
fn most_in_flight(log: &str) -> usize {
    let (mut now, mut most) = (0usize, 0usize);
    // Start lines read "Write id=N ...", end lines "...Write id=N return=0".
    for line in log
        .lines()
        .filter(|l| l.contains("Write id=") || l.contains("Read id="))
    {
        if line.contains("return=") {
            now = now.saturating_sub(1);
        } else {
            now += 1;
            most = most.max(now);
        }
    }
    most
}

#[test]
fn large_reads_and_writes_are_several_requests_in_flight_on_a_real_server() {
    // Each request waits half a second in the server: four requests carried
    // out one after the other would never overlap in the log.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("requests.log");
    let server = NbdServer::nbdkit(
        &["log", "delay"],
        &[
            "memory",
            "8M",
            &format!("logfile={}", log.display()),
            "delay-write=500ms",
            "delay-read=500ms",
        ],
        Transport::Unix,
    );
    let device = NbdDevice::open(&server.uri()).unwrap();
    let data: Vec<u8> = (0..2 << 20).map(|i| (i % 253) as u8).collect();
    device.write(8, &data).unwrap();
    let mut back = vec![0u8; data.len()];
    device.read(8, &mut back).unwrap();
    assert!(back == data);
    // A transfer: the writes, then the reads, in flight together (the
    // order they are sent in is checked against the fake server of the
    // unit tests: nbdkit's worker threads log them in any order).
    let (a, b) = (vec![5u8; 4096], vec![6u8; 512]);
    let (mut x, mut y) = (vec![0u8; 512], vec![0u8; 4096]);
    device
        .transfer(
            &[(16_000, &a), (16_100, &b)],
            &mut [(8, &mut x), (20, &mut y)],
        )
        .unwrap();
    assert!(x[..] == data[..512] && y[..] == data[12 * 512..12 * 512 + 4096]);
    let (mut a2, mut b2) = (vec![0u8; 4096], vec![0u8; 512]);
    device
        .transfer(&[], &mut [(16_000, &mut a2), (16_100, &mut b2)])
        .unwrap();
    assert!(a2 == a && b2 == b);
    drop(device);
    let log = log_after_disconnect(&log);
    drop(server);
    assert!(!log.contains("return=-1"), "a request failed:\n{log}");
    let pieces = |op: &str| {
        log.lines()
            .filter(|l| l.contains(op) && !l.contains("return="))
            .count()
    };
    // 2 MiB in 512 KiB pieces, then the transfers' two writes and four
    // reads.
    assert_eq!((pieces(" Write "), pieces(" Read ")), (6, 8), "{log}");
    assert!(most_in_flight(&log) >= 4, "{log}");
}
