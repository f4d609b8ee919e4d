//! Embedded engine throughput: writes with the default durability (fsync per
//! acknowledged batch) and scans of a flushed table.
//!
//! Run: `cargo bench -p telemark-engine --bench engine`

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a panic is a test failure")]

use std::cell::Cell;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use telemark_engine::{Database, Options, ScanRequest, WriteBatch};

const FIELDS: [&str; 7] = ["latitude", "longitude", "elevation", "velocity", "heading", "grade", "fuel_consumption"];

/// `rows` rows spread over `devices` trucks, 10 s apart, with 7 decimal fields each.
fn fleet_batch(start: i64, rows: usize, devices: usize) -> WriteBatch {
    let mut b = WriteBatch::new("readings");
    for r in 0..rows {
        let device = r % devices;
        let step = (r / devices) as i64;
        let x = (step as f64 * 0.1 + device as f64).sin();
        let mut w = b
            .row(start + step * 10_000_000_000)
            .tag("name", format!("truck-{device}"))
            .tag("fleet", ["North", "South"][device % 2]);
        for (i, f) in FIELDS.iter().enumerate() {
            w = w.field(f, ((x * (i + 1) as f64 + 50.0) * 100.0).round() / 100.0);
        }
    }
    b
}

fn writes(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path(), Options::default()).expect("open");
    let rows = 10_000;
    let next = Cell::new(0i64);
    let mut g = c.benchmark_group("embedded_write");
    g.sample_size(20);
    g.throughput(Throughput::Elements((rows * FIELDS.len()) as u64));
    g.bench_function("10k_rows_x7_fields_fsync", |b| {
        b.iter_batched(
            || {
                let start = next.get();
                next.set(start + 1_000_000_000_000_000);
                fleet_batch(start, rows, 1000)
            },
            |batch| db.write("bench", &batch).expect("write"),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn scans(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path(), Options { background_flush: false, ..Options::default() }).expect("open");
    let devices = 100;
    let rows_per_batch = 100_000;
    let batches = 10; // 1 M rows, 10 k per device
    for i in 0..batches {
        let _ = db
            .write(
                "bench",
                &fleet_batch(i * (rows_per_batch / devices) as i64 * 10_000_000_000, rows_per_batch, devices),
            )
            .expect("write");
    }
    db.flush().expect("flush");
    let total_rows = (rows_per_batch * batches as usize) as u64;
    let mut g = c.benchmark_group("scan");
    g.sample_size(10);
    g.throughput(Throughput::Elements(total_rows * FIELDS.len() as u64));
    g.bench_function("1M_rows_7_float_fields_all_series", |b| {
        b.iter(|| {
            let req = ScanRequest::new("bench", "readings").project(std::iter::once("time").chain(FIELDS));
            let n: usize = db.scan(&req).expect("scan").map(|b| b.expect("batch").num_rows()).sum();
            assert_eq!(n as u64, total_rows);
        })
    });
    g.throughput(Throughput::Elements(total_rows / devices as u64));
    g.bench_function("one_series_of_100_by_tag_one_field", |b| {
        b.iter(|| {
            let req =
                ScanRequest::new("bench", "readings").filter_tag("name", ["truck-42"]).project(["time", "velocity"]);
            let n: usize = db.scan(&req).expect("scan").map(|b| b.expect("batch").num_rows()).sum();
            assert_eq!(n as u64, total_rows / devices as u64);
        })
    });
    g.finish();
}

criterion_group!(benches, writes, scans);
criterion_main!(benches);
