//! kill -9 torture: a producer process and a consumer process on one ring on
//! a loop device, each killed with SIGKILL at random moments and restarted,
//! hundreds of times. The processes (`torture-peer`) report on stdout what
//! the library told them; the test checks, across every kill:
//!
//! * every item whose producer `advance` returned is delivered (the
//!   published position never goes back, and a final drain reaches every
//!   reported advance);
//! * every delivered item is intact and in its place (checked byte for byte
//!   by the consumer process, which reports `BAD` otherwise);
//! * nothing released by a returned consumer `advance` is delivered again.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shared_block_ring::{create, FileDevice};
use system_tests::{join_within, mix, ring_file, wait_within, ChildGuard, LoopDevice};

/// How long a peer's reader thread may take to see the end of its output
/// once the peer has exited.
const READER_LIMIT: Duration = Duration::from_secs(30);

const PEER: &str = env!("CARGO_BIN_EXE_torture-peer");
/// Up to three sectors per item.
const MAX_LEN: u64 = 1536;
/// Kills per durability mode (both modes run: at least 200 in all).
const KILLS: u64 = 200;

/// One incarnation of a peer process, with a thread collecting its lines.
struct Peer {
    child: ChildGuard,
    reader: Option<JoinHandle<Vec<String>>>,
}

impl Peer {
    fn spawn(role: &str, device: &Path, seed: u64, durability: &str) -> Peer {
        let mut child = ChildGuard::spawn(
            Command::new(PEER)
                .arg(role)
                .arg(device)
                .args([seed, MAX_LEN].map(|n| n.to_string()))
                .arg(durability)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        );
        let out = child.child().stdout.take().expect("piped stdout");
        let reader = std::thread::spawn(move || {
            // Only whole lines count: a process killed mid-write may leave
            // a partial last line.
            let mut lines = Vec::new();
            let mut r = BufReader::new(out);
            let mut line = String::new();
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                if line.ends_with('\n') {
                    lines.push(line.trim_end().to_string());
                }
                line.clear();
            }
            lines
        });
        Peer {
            child,
            reader: Some(reader),
        }
    }

    /// Fails the test if the process has exited on its own (it only ever
    /// stops by being killed, or after a drain).
    fn assert_running(&mut self, what: &str) {
        if let Some(status) = self.child.child().try_wait().expect("try_wait") {
            let lines = join_within(self.reader.take().unwrap(), READER_LIMIT, "reader thread");
            panic!(
                "{what} exited by itself ({status}); its last lines: {:?}",
                tail(&lines)
            );
        }
    }

    /// SIGKILL, reap, and return every whole line it printed.
    fn kill(mut self) -> Vec<String> {
        let c = self.child.child();
        let _ = c.kill(); // SIGKILL
        wait_within(c, READER_LIMIT, "the killed peer");
        join_within(self.reader.take().unwrap(), READER_LIMIT, "reader thread")
    }

    /// Waits for a process that exits by itself; returns its status and lines.
    fn finish(mut self, timeout: Duration) -> (bool, Vec<String>) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.child().try_wait().expect("try_wait") {
                return (
                    status.success(),
                    join_within(self.reader.take().unwrap(), READER_LIMIT, "reader thread"),
                );
            }
            assert!(Instant::now() < deadline, "a drain did not finish");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn tail(lines: &[String]) -> &[String] {
    &lines[lines.len().saturating_sub(5)..]
}

/// What the reports have established so far.
#[derive(Debug, Default)]
struct Ledger {
    /// Items before this were published by a returned producer advance.
    advanced: u64,
    /// Items before this were released by a returned consumer advance.
    released: u64,
    /// Items delivered, as ranges, over every consumer incarnation.
    delivered: Vec<(u64, u64)>,
    items_delivered: u64,
    producer_starts: u64,
    consumer_starts: u64,
}

fn num(s: Option<&str>, line: &str) -> u64 {
    s.and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("malformed report line {line:?}"))
}

impl Ledger {
    fn producer_lines(&mut self, lines: &[String]) {
        for line in lines {
            let mut w = line.split(' ');
            match w.next() {
                Some("start") => {
                    let at = num(w.next(), line);
                    assert!(
                        at >= self.advanced,
                        "the producer restarted at item {at}, but items up to {} were published",
                        self.advanced
                    );
                    self.producer_starts += 1;
                }
                Some("advanced") => {
                    let to = num(w.next(), line);
                    assert!(to >= self.advanced, "advance went back: {line}");
                    self.advanced = to;
                }
                _ => panic!("producer: {line}"),
            }
        }
    }

    fn consumer_lines(&mut self, lines: &[String]) -> Option<u64> {
        let mut drained = None;
        for line in lines {
            let mut w = line.split(' ');
            match w.next() {
                Some("start") => {
                    let at = num(w.next(), line);
                    assert!(
                        at >= self.released,
                        "the consumer restarted at item {at}, but items up to {} were released",
                        self.released
                    );
                    self.consumer_starts += 1;
                }
                Some("delivered") => {
                    let (from, to) = (num(w.next(), line), num(w.next(), line));
                    assert!(
                        from >= self.released,
                        "items {from}..{to} delivered again after items up to {} were released",
                        self.released
                    );
                    self.delivered.push((from, to));
                    self.items_delivered += to - from;
                }
                Some("released") => {
                    let to = num(w.next(), line);
                    assert!(to >= self.released, "release went back: {line}");
                    self.released = to;
                }
                Some("drained") => drained = Some(num(w.next(), line)),
                _ => panic!("consumer: {line}"),
            }
        }
        drained
    }

    /// Items 0..n were each delivered at least once.
    fn check_coverage(&self, n: u64) {
        let mut ranges = self.delivered.clone();
        ranges.sort();
        let mut covered = 0u64;
        for (from, to) in ranges {
            assert!(
                from <= covered,
                "items {covered}..{from} were published but never delivered"
            );
            covered = covered.max(to);
        }
        assert!(
            covered >= n,
            "items {covered}..{n} were published but never delivered"
        );
    }
}

fn torture(durability: &str, seed: u64) {
    let file = ring_file(64 * 1024);
    let dev = LoopDevice::attach(file.path());
    create(&FileDevice::open(dev.path()).unwrap()).unwrap();
    let started = Instant::now();
    let mut ledger = Ledger::default();
    let mut producer = Peer::spawn("produce", dev.path(), seed, durability);
    let mut consumer = Peer::spawn("consume", dev.path(), seed, durability);
    let (mut kills, mut producer_kills, mut consumer_kills) = (0u64, 0u64, 0u64);
    let mut rng = seed;
    while kills < KILLS {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "torture ran too long"
        );
        rng = mix(rng);
        // Anywhere from at once to 40 ms: at attach, mid-push, mid-advance.
        std::thread::sleep(Duration::from_micros(rng % 40_000));
        producer.assert_running("the producer");
        consumer.assert_running("the consumer");
        match (rng >> 32) % 3 {
            0 => {
                ledger.producer_lines(&producer.kill());
                producer = Peer::spawn("produce", dev.path(), seed, durability);
                producer_kills += 1;
            }
            1 => {
                ledger.consumer_lines(&consumer.kill());
                consumer = Peer::spawn("consume", dev.path(), seed, durability);
                consumer_kills += 1;
            }
            _ => {
                ledger.producer_lines(&producer.kill());
                ledger.consumer_lines(&consumer.kill());
                producer = Peer::spawn("produce", dev.path(), seed, durability);
                consumer = Peer::spawn("consume", dev.path(), seed, durability);
                producer_kills += 1;
                consumer_kills += 1;
            }
        }
        kills += 1;
    }
    ledger.producer_lines(&producer.kill());
    ledger.consumer_lines(&consumer.kill());
    // With both stopped, a last consumer drains the ring: it must reach
    // every item whose advance returned.
    let (ok, lines) =
        Peer::spawn("drain", dev.path(), seed, durability).finish(Duration::from_secs(60));
    let drained = ledger.consumer_lines(&lines);
    assert!(ok, "the drain failed: {:?}", tail(&lines));
    let drained = drained.expect("the drain reports where it ended");
    assert!(
        drained >= ledger.advanced,
        "the ring ends at item {drained}, but items up to {} were published",
        ledger.advanced
    );
    ledger.check_coverage(ledger.advanced);
    assert!(
        ledger.advanced > 1000,
        "too little progress: {} items",
        ledger.advanced
    );
    println!(
        "kill -9 torture ({durability}): {kills} kill cycles ({producer_kills} producer kills, \
         {consumer_kills} consumer kills; {} producer and {} consumer starts), {} items published, \
         {} item deliveries, every published item delivered, in {:.1?}",
        ledger.producer_starts,
        ledger.consumer_starts,
        ledger.advanced,
        ledger.items_delivered,
        started.elapsed()
    );
}

#[test]
fn kill_9_torture_power_loss_mode() {
    torture("power-loss", 11);
}

#[test]
fn kill_9_torture_process_crash_mode() {
    torture("process-crash", 12);
}
