//! Every released on-disk format version stays readable: a data directory
//! written by format version 1 (manifest, segments, and WAL records not yet
//! flushed) is kept under `tests/fixtures/v1`, one written by version 2
//! (manifest v2 and WAL delete records) under `tests/fixtures/v2`, and each
//! must open with the same contents. Regenerate only for a new format
//! version, into a new folder (`TELEMARK_WRITE_FIXTURE_V2=1` rewrote v2).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a panic is a test failure")]

use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, UInt64Type};
use telemark_engine::{Database, Options, ScanRequest, WriteBatch};

fn opts() -> Options {
    Options {
        background_flush: false,
        compaction: telemark_engine::CompactionOptions { background: false, ..Default::default() },
        ..Options::default()
    }
}

fn batch(from: i64, to: i64) -> WriteBatch {
    let mut b = WriteBatch::new("readings");
    for i in from..to {
        b.row(1_733_000_000_000_000_000 + i * 10_000_000_000)
            .tag("device_id", format!("sensor-{:03}", i % 3))
            .tag("fleet", "north")
            .field("temp", 20.0 + (i as f64) / 100.0)
            .field("count", i)
            .field("bytes", i as u64 * 1000)
            .field("ok", i % 5 != 0)
            .field("state", ["idle", "moving", "parked"][(i % 3) as usize]);
    }
    b
}

fn write_fixture(dir: &Path) {
    let db = Database::open(dir, opts()).unwrap();
    let _ = db.write("fixture", &batch(0, 60)).unwrap();
    db.flush().unwrap();
    let _ = db.write("fixture", &batch(60, 75)).unwrap();
    // Dropped without close: rows 60..75 stay in the WAL only.
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn format_v1_fixture_opens_with_its_contents() {
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1");
    if let Ok(target) = std::env::var("TELEMARK_WRITE_FIXTURE") {
        write_fixture(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(target));
        return;
    }
    assert!(fixture.join("MANIFEST").is_file(), "fixture missing at {}", fixture.display());
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture, dir.path());
    let (db, report) = Database::open_with_report(dir.path(), opts()).unwrap();
    assert_eq!(report.segments, 1);
    assert_eq!(report.wal_records_replayed, 1);
    let batches: Vec<RecordBatch> = db
        .scan(&ScanRequest::new("fixture", "readings").project([
            "time",
            "device_id",
            "temp",
            "count",
            "bytes",
            "ok",
            "state",
        ]))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut seen = Vec::new();
    for b in &batches {
        let dev = b.column(1).as_string_view();
        let temp = b.column(2).as_primitive::<Float64Type>();
        let count = b.column(3).as_primitive::<Int64Type>();
        let bytes = b.column(4).as_primitive::<UInt64Type>();
        let ok = b.column(5).as_boolean();
        let state = b.column(6).as_string::<i32>();
        for r in 0..b.num_rows() {
            let i = count.value(r);
            assert_eq!(dev.value(r), format!("sensor-{:03}", i % 3));
            assert_eq!(temp.value(r), 20.0 + (i as f64) / 100.0);
            assert_eq!(bytes.value(r), i as u64 * 1000);
            assert_eq!(ok.value(r), i % 5 != 0);
            assert_eq!(state.value(r), ["idle", "moving", "parked"][(i % 3) as usize]);
            seen.push(i);
        }
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..75).collect::<Vec<_>>());
}

const V2_KEEP_SECS: u64 = 36_500 * 86_400;

/// Version 2 (manifest with sequence ranges, tombstones, the delete log and
/// retention; WAL delete records): a compacted file, a delete still pending
/// in the manifest, one in the delete log, a retention rule, and a write and
/// a delete in the WAL only.
fn write_fixture_v2(dir: &Path) {
    use telemark_engine::DeleteRequest;
    let db = Database::open(dir, opts()).unwrap();
    let _ = db.write("fixture", &batch(0, 60)).unwrap();
    db.flush().unwrap();
    let _ = db.write("fixture", &batch(60, 90)).unwrap();
    db.flush().unwrap();
    db.compact().unwrap();
    let t = |i: i64| 1_733_000_000_000_000_000 + i * 10_000_000_000;
    db.delete(
        "fixture",
        &DeleteRequest::new("readings").filter_tag("device_id", ["sensor-000"]).time_range(t(0), t(30)),
    )
    .unwrap();
    db.delete("fixture", &DeleteRequest::new("readings").filter_tag("device_id", ["sensor-999"])).unwrap();
    db.set_retention("fixture", None, Some(std::time::Duration::from_secs(V2_KEEP_SECS))).unwrap();
    db.flush().unwrap();
    let _ = db.write("fixture", &batch(90, 100)).unwrap();
    db.delete(
        "fixture",
        &DeleteRequest::new("readings").filter_tag("device_id", ["sensor-001"]).time_range(t(90), t(100)),
    )
    .unwrap();
    // Dropped without close: the last write and delete stay in the WAL only.
}

#[test]
fn format_v2_fixture_opens_with_its_contents() {
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v2");
    if std::env::var("TELEMARK_WRITE_FIXTURE_V2").is_ok() {
        write_fixture_v2(&fixture);
        return;
    }
    assert!(fixture.join("MANIFEST").is_file(), "fixture missing at {}", fixture.display());
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture, dir.path());
    let (db, report) = Database::open_with_report(dir.path(), opts()).unwrap();
    assert_eq!(report.segments, 1, "one compacted file");
    assert_eq!(report.wal_records_replayed, 2, "a write and a delete");
    let counts = |db: &Database| -> Vec<i64> {
        let mut seen: Vec<i64> = Vec::new();
        for b in db.scan(&ScanRequest::new("fixture", "readings").project(["count"])).unwrap() {
            let b = b.unwrap();
            seen.extend(b.column(0).as_primitive::<Int64Type>().values().iter());
        }
        seen.sort_unstable();
        seen
    };
    let expect: Vec<i64> = (0..100).filter(|i| !(i % 3 == 0 && *i < 30 || i % 3 == 1 && *i >= 90)).collect();
    assert_eq!(counts(&db), expect);
    let (pending, purged) = db.deletes(Some("fixture"));
    assert_eq!(pending.len(), 2, "{pending:?}");
    assert_eq!(purged.len(), 1, "{purged:?}");
    assert_eq!(purged[0].tags, vec![("device_id".to_string(), vec!["sensor-999".to_string()])]);
    let rules = db.retention();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].keep_secs, V2_KEEP_SECS);
    db.compact().unwrap();
    assert_eq!(counts(&db), expect);
    assert!(db.deletes(Some("fixture")).0.is_empty(), "compaction purges both");
}
