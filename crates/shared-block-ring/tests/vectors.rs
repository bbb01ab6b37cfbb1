//! Compatibility with ring images written by the original OCaml library
//! (`tests/vectors`, copied from the project's reference material).

mod common;

use std::path::{Path, PathBuf};

use serde::Deserialize;
use shared_block_ring::{
    create, layout, BlockDevice, Consumer, Error, FileDevice, MemDevice, Options, Producer,
    RingState,
};

#[derive(Deserialize)]
struct Manifest {
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct Vector {
    file: String,
    bytes: usize,
    sector_size: usize,
    operations: Vec<String>,
    producer: u64,
    consumer: u64,
    suspend: bool,
    suspend_ack: bool,
    pending_items_hex: Vec<String>,
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn manifest() -> Vec<Vector> {
    let text = std::fs::read_to_string(dir().join("manifest.json")).unwrap();
    let m: Manifest = serde_json::from_str(&text).unwrap();
    assert!(
        m.vectors.len() >= 8,
        "manifest lists {} vectors",
        m.vectors.len()
    );
    m.vectors
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn image(v: &Vector) -> Vec<u8> {
    let bytes = std::fs::read(dir().join(&v.file)).unwrap();
    assert_eq!(bytes.len(), v.bytes, "{}", v.file);
    bytes
}

/// Every pending item of the ring, via a fresh consumer.
fn pending<D: BlockDevice>(disk: D) -> (u64, u64, Vec<Vec<u8>>) {
    let mut consumer = Consumer::attach(disk, Options::new()).unwrap();
    let from = consumer.position();
    let (end, items) = consumer
        .fold(from, Vec::new(), |mut v, item| {
            v.push(item);
            v
        })
        .unwrap();
    (from.offset(), end.offset(), items)
}

#[test]
fn every_image_reads_back_as_the_manifest_says() {
    for v in manifest() {
        assert_eq!(v.sector_size, 512);
        let disk = MemDevice::from_bytes(512, image(&v));
        let (consumer, producer, items) = pending(disk.clone());
        assert_eq!((consumer, producer), (v.consumer, v.producer), "{}", v.file);
        let expected: Vec<Vec<u8>> = v.pending_items_hex.iter().map(|h| unhex(h)).collect();
        assert_eq!(items, expected, "{}", v.file);
        // Flags, through both sides' debug info (the producer's attach
        // would acknowledge, so read them before any producer looks).
        let mut c = Consumer::attach(disk.clone(), Options::new()).unwrap();
        let info = c.debug_info().unwrap();
        let get = |k: &str| info.iter().find(|(key, _)| key == k).unwrap().1.clone();
        assert_eq!(get("consumer/suspend"), v.suspend.to_string(), "{}", v.file);
        assert_eq!(
            get("producer/suspend_ack"),
            v.suspend_ack.to_string(),
            "{}",
            v.file
        );
        let expected_state = if v.suspend_ack {
            RingState::Suspended
        } else {
            RingState::Running
        };
        assert_eq!(c.state().unwrap(), expected_state, "{}", v.file);
    }
}

#[test]
fn every_image_attaches_from_a_file_too() {
    for v in manifest() {
        let file = common::file_with(&image(&v));
        let disk = FileDevice::open(file.path()).unwrap();
        let (consumer, producer, items) = pending(disk);
        assert_eq!((consumer, producer), (v.consumer, v.producer), "{}", v.file);
        assert_eq!(items.len(), v.pending_items_hex.len(), "{}", v.file);
    }
}

#[test]
fn every_image_keeps_working() {
    for v in manifest() {
        let disk = MemDevice::from_bytes(512, image(&v));
        let mut consumer = Consumer::attach(disk.clone(), Options::new()).unwrap();
        if v.suspend {
            // As in the original: a producer attaching to a suspend request
            // acknowledges it and fails; it can attach once resumed.
            assert!(matches!(
                Producer::attach(disk.clone(), Options::new()),
                Err(Error::Suspended)
            ));
            assert_eq!(consumer.state().unwrap(), RingState::Suspended);
            consumer.resume().unwrap();
        }
        let mut producer = Producer::attach(disk.clone(), Options::new()).unwrap();
        assert_eq!(producer.state().unwrap(), RingState::Running, "{}", v.file);
        // Drain what is there, then move new items through, wrapping.
        let mut expected: Vec<Vec<u8>> = v.pending_items_hex.iter().map(|h| unhex(h)).collect();
        for round in 0..40usize {
            let item: Vec<u8> = (0..(round * 37) % 300).map(|j| (j ^ round) as u8).collect();
            match producer.push(&item) {
                Ok(p) => {
                    producer.advance(p).unwrap();
                    expected.push(item);
                }
                Err(Error::Retry(_)) => {}
                Err(e) => panic!("{}: {e}", v.file),
            }
            while let Ok((next, got)) = consumer.pop() {
                assert_eq!(got, expected.remove(0), "{}", v.file);
                consumer.advance(next).unwrap();
            }
        }
        assert!(expected.is_empty(), "{}", v.file);
        // The handshake still works.
        consumer.suspend().unwrap();
        assert_eq!(producer.state().unwrap(), RingState::Suspended);
        assert!(matches!(producer.push(b"x"), Err(Error::Suspended)));
        consumer.resume().unwrap();
        assert_eq!(producer.state().unwrap(), RingState::Running);
    }
}

/// Walks the items in `[consumer, producer)` and returns each item's header
/// and payload bytes (padding excluded: it is undefined).
fn item_bytes(image: &[u8], consumer: u64, producer: u64) -> Vec<Vec<u8>> {
    let data = &image[3 * 512..];
    let cap = data.len() as u64;
    let byte = |p: u64| data[(p % cap) as usize];
    let mut out = Vec::new();
    let mut p = consumer;
    while p < producer {
        let header: Vec<u8> = (0..4).map(|i| byte(p + i)).collect();
        let len = u32::from_le_bytes(header.clone().try_into().unwrap()) as u64;
        let mut item = header;
        item.extend((0..len).map(|i| byte(p + 4 + i)));
        out.push(item);
        p += layout::item_stream_len(len);
    }
    assert_eq!(p, producer);
    out
}

/// Replays a manifest's operations with this library on a zeroed device.
fn replay(v: &Vector) -> Vec<u8> {
    let disk = MemDevice::new(512, (v.bytes / 512) as u64);
    let mut producer: Option<Producer<MemDevice>> = None;
    let mut consumer: Option<Consumer<MemDevice>> = None;
    let lengths_rule = v.file.starts_with("lengths") || v.file.starts_with("full");
    let pushes = v
        .operations
        .iter()
        .filter(|o| o.starts_with("push+advance"))
        .count();
    let first_pending = pushes - v.pending_items_hex.len();
    let mut pushed = 0;
    for op in &v.operations {
        if op == "create" {
            create(&disk).unwrap();
        } else if let Some(arg) = op.strip_prefix("push+advance ") {
            let item = if let Some(text) = arg.strip_prefix('\'') {
                text.trim_end_matches('\'').as_bytes().to_vec()
            } else {
                let len: usize = arg.strip_prefix("len ").unwrap().parse().unwrap();
                if pushed >= first_pending {
                    unhex(&v.pending_items_hex[pushed - first_pending])
                } else if lengths_rule {
                    (0..len).map(|j| ((7 * pushed + j) % 256) as u8).collect()
                } else {
                    vec![0xee; len]
                }
            };
            if lengths_rule && pushed >= first_pending {
                let expected: Vec<u8> = (0..item.len())
                    .map(|j| ((7 * pushed + j) % 256) as u8)
                    .collect();
                assert_eq!(item, expected, "the manifest's byte rule holds");
            }
            let p = producer
                .get_or_insert_with(|| Producer::attach(disk.clone(), Options::new()).unwrap());
            let pos = p
                .push(&item)
                .unwrap_or_else(|e| panic!("{}: {op}: {e}", v.file));
            p.advance(pos).unwrap();
            pushed += 1;
        } else if let Some(rest) = op.strip_prefix("pop+advance") {
            let times = rest
                .trim()
                .strip_prefix('x')
                .map(|n| n.parse().unwrap())
                .unwrap_or(1);
            let c = consumer
                .get_or_insert_with(|| Consumer::attach(disk.clone(), Options::new()).unwrap());
            for _ in 0..times {
                let (next, _) = c.pop().unwrap();
                c.advance(next).unwrap();
            }
        } else if op == "consumer suspend" {
            let c = consumer
                .get_or_insert_with(|| Consumer::attach(disk.clone(), Options::new()).unwrap());
            c.suspend().unwrap();
        } else if op == "producer attach (acknowledges)" {
            producer = None;
            assert!(matches!(
                Producer::attach(disk.clone(), Options::new()),
                Err(Error::Suspended)
            ));
        } else {
            panic!("{}: unknown operation {op:?}", v.file);
        }
    }
    disk.to_vec()
}

#[test]
fn replaying_each_image_gives_the_same_bytes() {
    for v in manifest() {
        let original = image(&v);
        let ours = replay(&v);
        for sector in 0..3 {
            let r = sector * 512..(sector + 1) * 512;
            assert_eq!(
                ours[r.clone()],
                original[r],
                "{}: sector {sector} differs",
                v.file
            );
        }
        assert_eq!(
            item_bytes(&ours, v.consumer, v.producer),
            item_bytes(&original, v.consumer, v.producer),
            "{}: data in [consumer, producer) differs",
            v.file
        );
    }
}

#[test]
fn images_are_what_the_manifest_hashes_say() {
    // Guards against a damaged copy of the vectors.
    let text = std::fs::read_to_string(dir().join("manifest.json")).unwrap();
    let raw: serde_json::Value = serde_json::from_str(&text).unwrap();
    for v in raw["vectors"].as_array().unwrap() {
        let file = v["file"].as_str().unwrap();
        let bytes = std::fs::read(dir().join(file)).unwrap();
        let digest = sha256(&bytes);
        assert_eq!(digest, v["sha256"].as_str().unwrap(), "{file}");
    }
}

/// `sha256sum`, to avoid a dependency for one check.
fn sha256(bytes: &[u8]) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(bytes)?;
            child.wait_with_output()
        })
        .expect("sha256sum (coreutils) is needed for this test");
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

#[test]
fn a_ring_created_here_matches_a_fresh_original_image() {
    let v = manifest()
        .into_iter()
        .find(|v| v.file == "fresh-16k.img")
        .unwrap();
    let disk = MemDevice::new(512, 32);
    create(&disk).unwrap();
    assert_eq!(disk.to_vec(), image(&v));
}
