//! An async producer and an async consumer in one tokio program, over one
//! ring file: the producer pushes 10,000 lines faster than the consumer
//! takes them, so it waits for space; the consumer reads them as a stream,
//! releases each batch it has processed, and stops at the last line.
//!
//! ```sh
//! cargo run -p shared-block-ring --example async_pipeline --features tokio [RING_FILE]
//! ```
//!
//! Without an argument the ring is a 64 KiB file in the workspace's
//! `target/tmp`, deleted at the end; with one, that file is used (created
//! with 64 KiB when missing, and kept).

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use shared_block_ring::{
    create, AsyncConsumer, AsyncProducer, Error, FileDevice, FileOptions, Options, Utf8,
};

const LINES: u64 = 10_000;
const RING_BYTES: usize = 64 * 1024;

/// Opens the ring file with O_DIRECT, or through the page cache where the
/// filesystem refuses O_DIRECT (tmpfs).
fn open(path: &Path) -> Result<FileDevice, Error> {
    match FileDevice::open(path) {
        Err(Error::DirectIoUnsupported { .. }) => {
            FileDevice::open_with(path, &FileOptions::new().direct(false))
        }
        other => other,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (path, _temporary) = match std::env::args_os().nth(1) {
        Some(path) => (path.into(), None),
        None => {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tmp");
            std::fs::create_dir_all(&dir)?;
            let dir = dir.canonicalize()?;
            let file = tempfile::Builder::new()
                .prefix("async-pipeline-")
                .tempfile_in(dir)?;
            (file.path().to_path_buf(), Some(file))
        }
    };
    let path: std::path::PathBuf = path;
    if std::fs::metadata(&path).map_or(true, |m| m.len() == 0) {
        let mut file = std::fs::File::create(&path)?;
        file.write_all(&vec![0u8; RING_BYTES])?;
        file.sync_all()?;
    }
    let device = open(&path)?;
    create(&device)?; // a no-op when the file already holds a ring
    let consumer_device = open(&path)?;

    let producer = AsyncProducer::attach_with_codec(device, Utf8, Options::new()).await?;
    let consumer = AsyncConsumer::attach_with_codec(consumer_device, Utf8, Options::new()).await?;
    let started = Instant::now();

    let produce = tokio::spawn(async move {
        for n in 1..=LINES {
            // Waits while the ring is full, without blocking the runtime.
            let end = producer.push(&format!("line {n}")).await?;
            if n % 100 == 0 || n == LINES {
                producer.advance(end).await?; // publish a batch
            }
        }
        producer.detach().await;
        Ok::<_, Error>(())
    });

    let consume = tokio::spawn(async move {
        let mut lines = consumer.stream();
        let mut count = 0u64;
        while let Some(line) = lines.next().await {
            let (next, line) = line?;
            count += 1;
            if count % 1000 == 0 {
                println!("{line}");
                // Pretend each thousand lines take a while to process.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let last = line == format!("line {LINES}");
            if count % 50 == 0 || last {
                consumer.advance(next).await?; // release what was processed
            }
            if last {
                break;
            }
        }
        consumer.detach().await;
        Ok::<_, Error>(count)
    });

    produce.await??;
    let count = consume.await??;
    println!(
        "{count} lines through a 64 KiB ring at {} in {:.2?}",
        path.display(),
        started.elapsed()
    );
    Ok(())
}
