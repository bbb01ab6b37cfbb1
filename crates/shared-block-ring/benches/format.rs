//! Micro-benchmarks of the pure format code: what every push, pop and
//! advance pays in CPU beside its I/O.
//!
//! ```text
//! cargo bench -p shared-block-ring --bench format
//! ```
//!
//! The state-sector functions run once per advance (and per look at the
//! other side); `check_item`, `item_len_fits` and the header encoding run
//! once per item; `runs` once per device read or write.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use shared_block_ring::format::{self, Geometry, Label, State};
use shared_block_ring::{layout, Side};

fn state_sectors(c: &mut Criterion) {
    let mut g = c.benchmark_group("state sector");
    g.throughput(Throughput::Elements(1));
    let mut sector = vec![0u8; 512];
    let state = State {
        position: 123_456_789_012,
        flag: false,
    };
    let label = Label {
        queue: "allocations",
        client: "thin-provisioning daemon",
    };
    g.bench_function("encode with label", |b| {
        b.iter(|| {
            format::encode_state(
                Side::Producer,
                black_box(state),
                Some(black_box(label)),
                &mut sector,
            )
        })
    });
    g.bench_function("encode without label", |b| {
        b.iter(|| format::encode_state(Side::Producer, black_box(state), None, &mut sector))
    });
    format::encode_state(Side::Consumer, state, Some(label), &mut sector);
    g.bench_function("decode", |b| {
        b.iter(|| format::decode_state(Side::Consumer, black_box(&sector)))
    });
    g.bench_function("text", |b| {
        b.iter(|| format::state_text(black_box(&sector)).len())
    });
    let mut signature = vec![0u8; 512];
    format::encode_signature(&mut signature);
    g.bench_function("check signature", |b| {
        b.iter(|| format::check_signature(black_box(&signature)))
    });
    g.finish();
}

fn items(c: &mut Criterion) {
    // A 64 MiB ring of 512-byte sectors, as `sbr demo` uses.
    let geometry = Geometry::new(512, 131_072).expect("geometry");
    let mut g = c.benchmark_group("item");
    g.throughput(Throughput::Elements(1));
    g.bench_function("header encode", |b| {
        b.iter(|| format::encode_item_header(black_box(100)))
    });
    g.bench_function("len fits", |b| {
        b.iter(|| geometry.item_len_fits(black_box(100)))
    });
    let header = format::encode_item_header(100);
    g.bench_function("check", |b| {
        b.iter(|| {
            format::check_item(
                black_box(&geometry),
                black_box(4096),
                black_box(header),
                black_box(1 << 20),
            )
        })
    });
    g.bench_function("check positions", |b| {
        b.iter(|| {
            format::check_positions(
                black_box(1 << 30),
                black_box((1 << 30) - 4096),
                geometry.capacity(),
            )
        })
    });
    g.bench_function("locate", |b| {
        b.iter(|| geometry.locate(black_box(987_654_321)))
    });
    g.bench_function("runs at the wrap", |b| {
        b.iter(|| geometry.runs(black_box(geometry.data_sectors() - 3), black_box(8)))
    });
    g.finish();
}

/// Walking a buffer of packed 100-byte items the way a drain does: header,
/// check, next. Per-item cost of the consumer's format work.
fn walk(c: &mut Criterion) {
    let geometry = Geometry::new(512, 131_072).expect("geometry");
    let n = 10_000u64;
    let stride = layout::item_stream_len(100) as usize;
    let mut buf = vec![0u8; n as usize * stride];
    for chunk in buf.chunks_mut(stride) {
        chunk[..4].copy_from_slice(&format::encode_item_header(100));
    }
    let end = buf.len() as u64;
    let mut g = c.benchmark_group("walk");
    g.throughput(Throughput::Elements(n));
    g.bench_function("10000 items of 100 bytes", |b| {
        b.iter_batched(
            || 0u64,
            |mut at| {
                let mut total = 0usize;
                while at < end {
                    let i = at as usize;
                    let header = [buf[i], buf[i + 1], buf[i + 2], buf[i + 3]];
                    let (len, next) =
                        format::check_item(&geometry, at, header, end).expect("valid item");
                    total += len;
                    at = next;
                }
                total
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, state_sectors, items, walk);
criterion_main!(benches);
