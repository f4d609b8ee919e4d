//! Ingest throughput with alert rules active: `Database::write` of 10 000
//! fleet rows (100 trucks × 100 points, 7 float fields) with 0, 100 and
//! 10 000 threshold rules on the table, none of them firing (the common
//! case: rules watch for rare events). The ratio to 0 rules is the cost of
//! evaluating rules on ingest. Durability `Buffered` (no fsync), so the numbers
//! show CPU work, not the disk.
//!
//! `alerts/offline` measures one tick over 1 M devices known to an offline
//! rule (none offline) and prints the memory the rule keeps per device.
//!
//! Run with `cargo bench -p telemark-ingest --bench alerts`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "bench code: a panic is a failed run")]

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use telemark_engine::{Database, Durability, Options, WriteBatch};
use telemark_ingest::alerts::rule::RuleConfig;
use telemark_ingest::alerts::{AlertOptions, Alerts};

const TRUCKS: usize = 100;
const POINTS: usize = 100;
const FIELDS: [&str; 7] = ["latitude", "longitude", "elevation", "velocity", "heading", "grade", "fuel_consumption"];

fn rule(i: usize) -> RuleConfig {
    serde_json::from_value(serde_json::json!({
        "name": format!("r{i}"),
        "database": "fleet",
        "table": "readings",
        "kind": "threshold",
        "field": FIELDS[i % FIELDS.len()],
        "op": ">",
        "value": 1e9 + i as f64,
    }))
    .unwrap()
}

fn batch(start_ns: i64) -> WriteBatch {
    let mut b = WriteBatch::new("readings");
    for p in 0..POINTS {
        for t in 0..TRUCKS {
            let mut row = b.row(start_ns + p as i64 * 1_000_000).tag("name", format!("truck_{t}"));
            for (k, f) in FIELDS.iter().enumerate() {
                row = row.field(f, (t * 7 + k + p) as f64 * 0.5);
            }
        }
    }
    b
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let _guard = runtime.enter();
    let mut group = c.benchmark_group("alerts/ingest");
    group.throughput(Throughput::Elements((TRUCKS * POINTS) as u64));
    group.sample_size(20);
    for rules in [0usize, 100, 10_000] {
        let dir = tempfile::tempdir().unwrap();
        let options = Options { durability: Durability::Buffered, ..Options::default() };
        let db = Arc::new(Database::open(dir.path().join("data"), options).unwrap());
        let alerts = Alerts::start(
            &dir.path().join("alerts"),
            AlertOptions { rules: (0..rules).map(rule).collect(), ..AlertOptions::default() },
            db.clone(),
            None,
            None,
        )
        .unwrap();
        // Rows must be newer than each device's newest (and recent) to be evaluated.
        let clock = AtomicI64::new(chrono_now_ns());
        group.bench_with_input(BenchmarkId::from_parameter(rules), &rules, |b, _| {
            b.iter_batched(
                || batch(clock.fetch_add(POINTS as i64 * 1_000_000, Ordering::Relaxed)),
                |batch| black_box(db.write("fleet", &batch).unwrap()),
                BatchSize::LargeInput,
            );
        });
        alerts.stop();
    }
    group.finish();
}

fn chrono_now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
}

/// Resident memory of this process, in bytes (Linux).
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    pages * 4096
}

/// Offline detection of 1 M devices: the memory an offline rule keeps per
/// device (printed), and the time of one tick that checks them all (the
/// detection delay is the tick interval, 1 s, plus this).
fn offline(c: &mut Criterion) {
    use telemark_ingest::alerts::eval::{Evaluator, Seen};
    use telemark_ingest::alerts::rule::Rule;
    const DEVICES: usize = 1_000_000;
    let config: RuleConfig = serde_json::from_value(serde_json::json!({
        "name": "offline", "database": "fleet", "table": "readings", "kind": "offline", "after": "10m",
    }))
    .unwrap();
    let mut e = Evaluator::new(vec![Rule::compile(&config).unwrap()], i64::MAX);
    let now = chrono_now_ns() / 1_000_000;
    let before = resident_bytes();
    for i in 0..DEVICES {
        let device = format!("truck_{i:07}");
        let tags = vec![("name".to_string(), device.clone())];
        e.seen[0].insert(device, Seen { at: now, tags });
    }
    let after = resident_bytes();
    eprintln!(
        "offline rule: {DEVICES} devices take {} MB resident, {} bytes a device",
        (after - before) / 1_000_000,
        (after - before) / DEVICES as u64
    );
    let mut group = c.benchmark_group("alerts/offline");
    group.sample_size(10);
    group.throughput(Throughput::Elements(DEVICES as u64));
    group.bench_function("tick_1M_devices", |b| {
        let mut out = Vec::new();
        b.iter(|| {
            e.tick(now + 1000, &mut out);
            black_box(out.len())
        });
    });
    group.finish();
}

criterion_group!(benches, bench, offline);
criterion_main!(benches);
