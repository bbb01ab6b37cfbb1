//! The measurement machinery every scenario family uses: how much to
//! measure ([`Config`]), the bench's devices and their operation counters
//! ([`device`]), the device's own limits ([`limits`]) and the limit each
//! row is held to, measured again alongside it ([`basis`]), fresh rings
//! with a counted producer and consumer ([`fixture`]), clocks and medians
//! ([`clock`]), child processes ([`process`]) and the counting allocator
//! ([`alloc`]). Nothing here knows a scenario or a target.

use std::time::Duration;

pub mod alloc;
pub mod basis;
pub mod clock;
pub mod device;
pub mod fixture;
pub mod limits;
pub mod process;

/// How much to measure.
#[derive(Debug, Clone)]
pub struct Config {
    /// `full`, `quick` or `smoke`.
    pub name: &'static str,
    /// Repetitions of each measurement (the median is reported).
    pub reps: usize,
    /// Time for one repetition.
    pub budget: Duration,
    /// Time for one repetition of a device limit.
    pub limit_budget: Duration,
    /// Payload sizes.
    pub payloads: Vec<usize>,
    /// Size of the bench file the command creates.
    pub file_bytes: u64,
    /// Most bytes to put in the ring before one drain.
    pub drain_bytes: u64,
    /// Time for each latency row.
    pub latency_budget: Duration,
    /// How long to watch an idle consumer.
    pub idle: Duration,
    /// Bytes streamed through `sbr produce | sbr consume`.
    pub cli_bytes: u64,
    /// The ring they stream through.
    pub cli_ring: u64,
    /// Size of the image served over NBD (and of its local twin).
    pub nbd_bytes: u64,
}

impl Config {
    /// The full run: five payloads, five repetitions, about 4 minutes.
    pub fn full() -> Config {
        Config {
            name: "full",
            reps: 5,
            budget: Duration::from_millis(300),
            limit_budget: Duration::from_millis(300),
            payloads: vec![16, 100, 4000, 65_536, 1_048_576],
            file_bytes: 256 << 20,
            drain_bytes: 192 << 20,
            latency_budget: Duration::from_secs(2),
            idle: Duration::from_secs(3),
            cli_bytes: 1 << 30,
            cli_ring: 64 << 20,
            nbd_bytes: 64 << 20,
        }
    }

    /// `--quick`: two payloads, three short repetitions.
    pub fn quick() -> Config {
        Config {
            name: "quick",
            reps: 3,
            budget: Duration::from_millis(100),
            limit_budget: Duration::from_millis(100),
            payloads: vec![100, 1_048_576],
            file_bytes: 128 << 20,
            drain_bytes: 64 << 20,
            latency_budget: Duration::from_millis(500),
            idle: Duration::from_millis(1500),
            cli_bytes: 128 << 20,
            cli_ring: 64 << 20,
            nbd_bytes: 32 << 20,
        }
    }

    /// `--smoke` (hidden): tiny measurements for the tests.
    pub fn smoke() -> Config {
        Config {
            name: "smoke",
            reps: 1,
            budget: Duration::from_millis(15),
            limit_budget: Duration::from_millis(15),
            payloads: vec![100, 1_048_576],
            file_bytes: 16 << 20,
            drain_bytes: 4 << 20,
            latency_budget: Duration::from_millis(40),
            idle: Duration::from_millis(200),
            cli_bytes: 4 << 20,
            cli_ring: 4 << 20,
            nbd_bytes: 8 << 20,
        }
    }
}

/// A bench failure: one line.
#[derive(Debug)]
pub struct BenchError(pub String);

impl BenchError {
    /// A message.
    pub fn msg(m: impl Into<String>) -> BenchError {
        BenchError(m.into())
    }

    /// A library error on `device`.
    pub fn ring(device: &str, e: shared_block_ring::Error) -> BenchError {
        BenchError(format!("{device}: {e}"))
    }

    /// An I/O error on `device` while doing `what`.
    pub fn io(device: &str, what: &str, e: std::io::Error) -> BenchError {
        BenchError(format!("{device}: {what}: {e}"))
    }
}

impl std::fmt::Display for BenchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<shared_block_ring::Error> for BenchError {
    fn from(e: shared_block_ring::Error) -> BenchError {
        BenchError(e.to_string())
    }
}
