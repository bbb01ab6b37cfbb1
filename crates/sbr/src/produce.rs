//! `sbr produce`: standard input to the ring, one item per line.

use std::io::{BufRead, BufReader, Read};

use shared_block_ring::{BlockDevice, Error, Position, Producer, RetryReason};

use crate::common::{CmdResult, DeviceArgs, Failure, OnDevice, EXIT_FATAL, EXIT_RETRY};

/// Arguments of `sbr produce`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    dev: DeviceArgs,

    /// Queue name written into the producer sector.
    #[arg(long, default_value = "unknown")]
    queue: String,

    /// Client name written into the producer sector.
    #[arg(long, default_value = "unknown")]
    client: String,

    /// Publish after every N items (and at the end of input). Items are
    /// also published early when the ring fills up, so that the consumer
    /// can make room.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,

    /// When the ring is full, exit with status 75 instead of waiting
    /// (everything pushed so far is published first).
    #[arg(long)]
    no_wait: bool,

    /// The byte that ends each item (default: newline), as a character or
    /// an escape: '\n', '\t', '\0', '\x1e'.
    #[arg(long, value_parser = parse_delimiter, default_value = "\\n", conflicts_with = "null")]
    delimiter: u8,

    /// Items end with NUL bytes (like find -print0).
    #[arg(long)]
    null: bool,
}

fn parse_delimiter(s: &str) -> Result<u8, String> {
    match s {
        "\\n" => Ok(b'\n'),
        "\\t" => Ok(b'\t'),
        "\\0" => Ok(0),
        _ if s.len() == 1 => Ok(s.as_bytes()[0]),
        _ => s
            .strip_prefix("\\x")
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or_else(|| {
                format!("invalid delimiter {s:?}: give one byte, such as ',' or '\\x1e'")
            }),
    }
}

/// Lines read but not yet pushed, in one flat buffer (no allocation per
/// item once it has grown).
struct Pending {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Pending {
    fn items(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let item = &self.bytes[start..end];
            start = end;
            item
        })
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }
}

/// Runs `sbr produce`.
pub fn run(a: Args) -> CmdResult {
    let name = a.dev.device.clone();
    let device = a.dev.open(false)?;
    let options = a.dev.options().queue(&a.queue).client(&a.client);
    let producer = Producer::attach(device, options).on(&name)?;
    let delimiter = if a.null { 0 } else { a.delimiter };
    let stdin = std::io::stdin().lock();
    let mut feeder = Feeder {
        name,
        producer,
        batch: a.batch,
        no_wait: a.no_wait,
        unpublished: 0,
        published: 0,
    };
    let result = feeder.feed(BufReader::with_capacity(1 << 20, stdin), delimiter);
    // Whatever happened, items already pushed are complete: publish them.
    let publish = feeder.publish();
    result.and(publish)?;
    tracing::info!(items = feeder.published, "produced");
    Ok(())
}

struct Feeder<D: BlockDevice> {
    name: String,
    producer: Producer<D>,
    batch: u64,
    no_wait: bool,
    /// Items pushed since the last advance.
    unpublished: u64,
    /// Items published so far.
    published: u64,
}

impl<D: BlockDevice> Feeder<D> {
    fn feed(&mut self, mut input: impl BufRead, delimiter: u8) -> CmdResult {
        // Items are pushed in groups of at most this many bytes, one write
        // each, so a large --batch does not need one large write.
        let group_bytes = (self.producer.geometry().capacity() / 4).clamp(1, 4 << 20) as usize;
        let max_item = self.producer.geometry().max_item_len();
        let mut pending = Pending {
            bytes: Vec::new(),
            ends: Vec::new(),
        };
        let mut line = 0u64;
        loop {
            let start = pending.bytes.len();
            // Never buffer more of one line than the ring could take.
            let n = (&mut input)
                .take(max_item + 2)
                .read_until(delimiter, &mut pending.bytes)
                .map_err(|e| Failure::new(EXIT_FATAL, format!("reading standard input: {e}")))?;
            if n == 0 {
                break;
            }
            line += 1;
            if pending.bytes.last() == Some(&delimiter) {
                pending.bytes.pop();
            }
            if (pending.bytes.len() - start) as u64 > max_item {
                // Keep the lines before it: push them (run() publishes).
                pending.bytes.truncate(start);
                if !pending.ends.is_empty() {
                    self.push(&pending)?;
                }
                return Err(Failure::new(
                    EXIT_FATAL,
                    format!(
                        "{}: item {line} is larger than the ring can ever hold \
                         (at most {max_item} bytes per item in a ring of {} bytes)",
                        self.name,
                        self.producer.geometry().capacity()
                    ),
                ));
            }
            pending.ends.push(pending.bytes.len());
            let due = self.unpublished + pending.ends.len() as u64 >= self.batch;
            if due || pending.bytes.len() >= group_bytes {
                self.push(&pending)?;
                pending.clear();
                if due {
                    self.publish()?;
                }
            }
        }
        if !pending.ends.is_empty() {
            self.push(&pending)?;
        }
        Ok(())
    }

    /// Pushes a group, waiting for room as needed.
    fn push(&mut self, pending: &Pending) -> CmdResult {
        let mut backoff = self.producer.options().new_backoff(None);
        loop {
            match self.producer.push_many(pending.items()) {
                Ok(_) => {
                    self.unpublished += pending.ends.len() as u64;
                    return Ok(());
                }
                Err(Error::Retry(RetryReason::Full)) => {
                    // The consumer cannot free space it cannot see.
                    self.publish()?;
                    if self.no_wait {
                        return Err(Failure::new(
                            EXIT_RETRY,
                            format!(
                                "{}: the ring is full; {} items published, the rest of the input was not read",
                                self.name, self.published
                            ),
                        ));
                    }
                    backoff.wait();
                }
                Err(Error::TooLarge { .. }) if pending.ends.len() > 1 => {
                    // The group is larger than the ring: push its items one
                    // by one, publishing as needed.
                    for item in pending.items() {
                        let one = Pending {
                            bytes: item.to_vec(),
                            ends: vec![item.len()],
                        };
                        self.push(&one)?;
                    }
                    return Ok(());
                }
                Err(e) => return Err(Failure::ring(&self.name, &e)),
            }
        }
    }

    /// Publishes everything pushed.
    fn publish(&mut self) -> CmdResult {
        if self.unpublished > 0 {
            let tail: Position = self.producer.tail();
            self.producer.advance(tail).on(&self.name)?;
            self.published += self.unpublished;
            self.unpublished = 0;
        }
        Ok(())
    }
}
