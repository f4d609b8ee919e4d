//! Data lifecycle through the library API: compaction keeps last-write-wins
//! and answers queries running during it, deletes hide rows at once and are
//! purged from every byte on disk by compaction, retention hides, refuses and
//! drops by the wall clock, a full disk mid-compaction leaves no partial
//! output, and writers wait when flushing falls behind.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a panic is a test failure")]

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampNanosecondType};
use telemark_engine::fs::{DurableFile, FileBackend, StdBackend};
use telemark_engine::{CompactionOptions, Database, DeleteRequest, Options, ScanRequest, WriteBatch};

mod common;

const HOUR: i64 = 3_600_000_000_000;
const DAY: i64 = 24 * HOUR;

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
}

fn options() -> Options {
    Options {
        background_flush: false,
        compaction: CompactionOptions { background: false, ..CompactionOptions::default() },
        ..Options::default()
    }
}

/// `(device, time) -> v` over the whole table.
fn rows(db: &Database, table: &str) -> BTreeMap<(String, i64), f64> {
    let mut out = BTreeMap::new();
    let req = ScanRequest::new("db", table).project(["device", "time", "v"]);
    for b in db.scan(&req).unwrap() {
        let b = b.unwrap();
        let dev = b.column(0).as_string_view();
        let t = b.column(1).as_primitive::<TimestampNanosecondType>();
        let v = b.column(2).as_primitive::<Float64Type>();
        for r in 0..b.num_rows() {
            let prev = out.insert((dev.value(r).to_string(), t.value(r)), v.value(r));
            assert!(prev.is_none(), "row returned twice");
        }
    }
    out
}

fn write(db: &Database, table: &str, device: &str, points: &[(i64, f64)]) {
    let mut b = WriteBatch::new(table);
    for (t, v) in points {
        b.row(*t).tag("device", device).field("v", *v).field("note", format!("{device}-note-marker-7f3a"));
    }
    let out = db.write("db", &b).unwrap();
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("segments")).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

/// Every file under `dir`, recursively.
fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(all_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn compaction_merges_files_and_keeps_last_write_wins() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), options()).unwrap();
    let base = 1_700_000_000_000_000_000i64 / DAY * DAY;
    let mut expect = BTreeMap::new();
    // Ten flushes, each overwriting part of the previous ones (same series and times).
    for round in 0..10 {
        let pts: Vec<(i64, f64)> =
            (0..50).map(|i| (base + (round * 20 + i) * 1_000_000_000, (round * 1000 + i) as f64)).collect();
        write(&db, "m", "a", &pts);
        for (t, v) in &pts {
            expect.insert(("a".to_string(), *t), *v);
        }
        db.flush().unwrap();
    }
    assert_eq!(db.stats().segments, 10);
    assert_eq!(rows(&db, "m"), expect);
    let report = db.compact().unwrap();
    assert_eq!((report.files_before, report.files_after), (10, 1), "{report:?}");
    assert!(report.bytes_after < report.bytes_before, "{report:?}");
    assert_eq!(rows(&db, "m"), expect, "answers after compaction");
    assert_eq!(segment_files(dir.path()).len(), 1, "inputs deleted");
    // A late row into the compacted partition, overwriting: it still wins, and after another compaction too.
    write(&db, "m", "a", &[(base + 5_000_000_000, -1.0)]);
    expect.insert(("a".to_string(), base + 5_000_000_000), -1.0);
    db.flush().unwrap();
    assert_eq!(rows(&db, "m"), expect);
    db.compact().unwrap();
    assert_eq!(rows(&db, "m"), expect);
    drop(db);
    let db = Database::open(dir.path(), options()).unwrap();
    assert_eq!(rows(&db, "m"), expect, "after reopen");
    let v = db.verify().unwrap();
    assert_eq!((v.files, v.unreferenced.len()), (1, 0), "{v:?}");
}

#[test]
fn query_running_during_compaction_still_answers() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), Options { scan_batch_rows: 10, ..options() }).unwrap();
    let base = 1_700_000_000_000_000_000i64;
    for f in 0..4 {
        for d in 0..5 {
            write(&db, "m", &format!("d{d}"), &[(base + f * 1_000_000_000, f as f64)]);
        }
        db.flush().unwrap();
    }
    let expect = rows(&db, "m");
    let mut stream = db.scan(&ScanRequest::new("db", "m").project(["device", "time", "v"])).unwrap();
    let first = stream.next().unwrap().unwrap(); // the scan has started reading the old files
    let before = segment_files(dir.path());
    db.compact().unwrap();
    // The old files are out of the manifest but still there for the running scan.
    assert!(before.iter().all(|p| p.exists()), "inputs deleted under a running scan");
    let mut got = first.num_rows();
    for b in stream.by_ref() {
        got += b.unwrap().num_rows();
    }
    assert_eq!(got, expect.len());
    drop(stream);
    assert!(before.iter().all(|p| !p.exists()), "inputs outlive the last reader");
    assert_eq!(rows(&db, "m"), expect);
}

#[test]
fn delete_hides_at_once_survives_restart_and_compaction_purges_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), options()).unwrap();
    let base = now() - 3 * DAY;
    // The deleted device's rows live in two flushed files, a frozen-then-flushed buffer and the active buffer.
    let marker = 123_456.789_f64;
    write(&db, "m", "gdpr", &[(base, marker), (base + DAY, marker)]);
    write(&db, "m", "keep", &[(base, 1.0), (base + DAY, 2.0)]);
    db.flush().unwrap();
    // The check below can fail: the marker string is readable in the segment files now.
    let found =
        segment_files(dir.path()).iter().any(|f| contains(&std::fs::read(f).unwrap(), b"gdpr-note-marker-7f3a"));
    assert!(found, "the marker should be visible in a segment before the delete");
    write(&db, "m", "gdpr", &[(base + 2 * DAY, marker)]);
    db.flush().unwrap();
    write(&db, "m", "gdpr", &[(base + 3, marker)]);
    let out = db.delete("db", &DeleteRequest::new("m").filter_tag("device", ["gdpr"])).unwrap();
    assert_eq!(out.rows_matched, 4);
    let left = rows(&db, "m");
    assert!(left.keys().all(|(d, _)| d == "keep"), "{left:?}");
    assert_eq!(left.len(), 2);
    // Rows written after the delete are visible.
    let mut b = WriteBatch::new("m");
    b.row(base + 7).tag("device", "gdpr").field("v", 7.0).field("note", "written later");
    let _ = db.write("db", &b).unwrap();
    assert_eq!(rows(&db, "m").len(), 3);
    let (pending, purged) = db.deletes(Some("db"));
    assert_eq!((pending.len(), purged.len()), (1, 0));
    // A field condition is refused with a clear error.
    let e = db.delete("db", &DeleteRequest::new("m").filter_tag("note", ["x"])).unwrap_err().to_string();
    assert!(e.contains("`note`") && e.contains("not a tag"), "{e}");
    // Survives a crash (no close) and a restart.
    drop(db);
    let db = Database::open(dir.path(), options()).unwrap();
    assert_eq!(rows(&db, "m").len(), 3);
    assert!(!rows(&db, "m").values().any(|v| *v == marker));
    db.compact().unwrap();
    assert_eq!(rows(&db, "m").len(), 3);
    let (pending, purged) = db.deletes(None);
    assert!(pending.is_empty(), "{pending:?}");
    assert_eq!(purged.len(), 1);
    assert!(purged[0].purged_at.is_some());
    // The marker's bytes (float and the string field) are in no file of the data directory.
    db.flush().unwrap();
    for f in all_files(dir.path()) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(!contains(&bytes, &marker.to_le_bytes()), "marker value still in {}", f.display());
        assert!(!contains(&bytes, b"gdpr-note-marker-7f3a"), "marker string still in {}", f.display());
    }
    drop(db);
    let db = Database::open(dir.path(), options()).unwrap();
    assert_eq!(rows(&db, "m").len(), 3);
    assert_eq!(db.deletes(None).1.len(), 1, "the delete log survives restart");
}

#[test]
fn delete_with_time_range_keeps_rows_outside_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), options()).unwrap();
    let base = 1_700_000_000_000_000_000i64;
    let pts: Vec<(i64, f64)> = (0..10).map(|i| (base + i * HOUR, i as f64)).collect();
    write(&db, "m", "a", &pts);
    write(&db, "m", "b", &pts);
    db.flush().unwrap();
    db.delete("db", &DeleteRequest::new("m").filter_tag("device", ["a"]).time_range(base + 2 * HOUR, base + 5 * HOUR))
        .unwrap();
    let got = rows(&db, "m");
    assert_eq!(got.len(), 17);
    assert!(!got.contains_key(&("a".to_string(), base + 2 * HOUR)));
    assert!(got.contains_key(&("a".to_string(), base + 5 * HOUR)));
    db.compact().unwrap();
    assert_eq!(rows(&db, "m"), got);
}

#[test]
fn retention_hides_refuses_and_drops_by_the_wall_clock() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), options()).unwrap();
    let t = now();
    write(&db, "m", "a", &[(t - 40 * DAY, 1.0), (t - 35 * DAY, 2.0), (t - DAY, 3.0)]);
    write(&db, "m", "future", &[(t + 365 * DAY, 9.0)]);
    db.flush().unwrap();
    let files_before = db.stats().segments;
    db.set_retention("db", None, Some(Duration::from_secs(30 * 86_400))).unwrap();
    // Hidden at once; the future-dated row evicts nothing.
    let got = rows(&db, "m");
    assert_eq!(got.len(), 2, "{got:?}");
    // Writes past retention are refused, naming the reason; the rest of the batch lands.
    let mut b = WriteBatch::new("m");
    b.row(t - 31 * DAY).tag("device", "a").field("v", 5.0);
    b.row(t - 2 * DAY).tag("device", "a").field("v", 6.0);
    let out = db.write("db", &b).unwrap();
    assert_eq!(out.rows_written, 1);
    assert_eq!(out.rejected.len(), 1);
    assert!(out.rejected[0].message.contains("retention"), "{:?}", out.rejected);
    assert_eq!(db.stats().retention_rows_refused, 1);
    // Files whose rows all expired are dropped, with their manifest entries.
    let dropped = db.enforce_retention().unwrap();
    assert_eq!(dropped, 2, "two daily partitions expired");
    assert_eq!(db.stats().segments, files_before - 2);
    // Table override and persistence across restart.
    db.set_retention("db", Some("m"), Some(Duration::from_secs(10 * 86_400))).unwrap();
    drop(db);
    let db = Database::open(dir.path(), options()).unwrap();
    let rules = db.retention();
    assert_eq!(rules.len(), 2);
    assert_eq!(rows(&db, "m").len(), 3, "rows of the last 10 days and the future row");
    db.set_retention("db", Some("m"), None).unwrap();
    assert_eq!(db.retention().len(), 1);
}

#[test]
fn manifest_stays_small_over_many_retention_cycles() {
    let dir = tempfile::tempdir().unwrap();
    let db =
        Database::open(dir.path(), Options { partition_duration: Duration::from_secs(3600), ..options() }).unwrap();
    db.set_retention("db", None, Some(Duration::from_secs(2 * 3600))).unwrap();
    let manifest = dir.path().join("MANIFEST");
    let mut sizes = Vec::new();
    for cycle in 0..300 {
        // Each cycle writes a file that has expired by the time the next pass runs: an hour
        // older than retention, written through a window where it is just inside.
        let t = now() - 2 * HOUR + 1_000_000_000;
        write(&db, "m", &format!("d{}", cycle % 7), &[(t, cycle as f64)]);
        db.flush().unwrap();
        if cycle % 50 == 49 {
            std::thread::sleep(Duration::from_millis(1500));
            db.enforce_retention().unwrap();
            sizes.push(std::fs::metadata(&manifest).unwrap().len());
        }
    }
    assert!(db.stats().retention_files_dropped >= 250, "{:?}", db.stats());
    let (first, last) = (sizes[0], *sizes.last().unwrap());
    assert!(last <= first + 1024, "manifest grew from {first} to {last} bytes over the cycles: {sizes:?}");
}

/// A file system whose segment writes fail with ENOSPC while `full` is set.
#[derive(Debug)]
struct FullDisk {
    full: Arc<AtomicBool>,
}

#[derive(Debug)]
struct FullDiskFile {
    inner: Box<dyn DurableFile>,
    full: Arc<AtomicBool>,
    segment: bool,
    written: u64,
}

impl Write for FullDiskFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.segment && self.full.load(Ordering::SeqCst) && self.written + buf.len() as u64 > 4096 {
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl DurableFile for FullDiskFile {
    fn sync_data(&mut self) -> io::Result<()> {
        self.inner.sync_data()
    }
}

impl FileBackend for FullDisk {
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn DurableFile>> {
        let segment = path.parent().is_some_and(|p| p.ends_with("segments"));
        Ok(Box::new(FullDiskFile { inner: StdBackend.create_new(path)?, full: self.full.clone(), segment, written: 0 }))
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn DurableFile>> {
        StdBackend.open_append(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        StdBackend.sync_dir(dir)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdBackend.rename(from, to)
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        StdBackend.truncate(path, len)
    }
}

#[test]
fn full_disk_mid_compaction_leaves_no_partial_output_and_a_later_run_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let full = Arc::new(AtomicBool::new(false));
    let db = Database::open(dir.path(), Options { backend: Arc::new(FullDisk { full: full.clone() }), ..options() })
        .unwrap();
    let base = 1_700_000_000_000_000_000i64;
    for f in 0..4 {
        for d in 0..200 {
            let pts: Vec<(i64, f64)> =
                (0..20).map(|i| (base + (f * 20 + i) * 1_000_000_000, (d * i) as f64 + 0.37)).collect();
            write(&db, "m", &format!("dev-{d}"), &pts);
        }
        db.flush().unwrap();
    }
    let expect = rows(&db, "m");
    let files = segment_files(dir.path());
    full.store(true, Ordering::SeqCst);
    let report = db.compact().unwrap();
    assert_eq!(report.failures.len(), 1, "{report:?}");
    assert!(report.failures[0].contains("No space left"), "{report:?}");
    assert_eq!(segment_files(dir.path()), files, "no partial output, inputs in place");
    assert_eq!(rows(&db, "m"), expect);
    assert!(db.poisoned().is_none(), "a failed compaction does not stop writes");
    write(&db, "m", "after", &[(base, 1.0)]);
    full.store(false, Ordering::SeqCst);
    let report = db.compact().unwrap();
    assert!(report.failures.is_empty(), "{report:?}");
    assert_eq!(report.files_after, 1);
    let mut expect = expect;
    expect.insert(("after".to_string(), base), 1.0);
    assert_eq!(rows(&db, "m"), expect);
}

#[test]
fn writers_wait_instead_of_the_buffer_growing_when_flushing_is_slow() {
    let dir = tempfile::tempdir().unwrap();
    // Segment fsyncs take 200 ms: ingest outpaces flushing.
    let slow = Arc::new(common::HookBackend {
        on_sync: Arc::new(|| {
            std::thread::sleep(Duration::from_millis(200));
            Ok(())
        }),
    });
    let limit = 2 << 20;
    let db = Arc::new(
        Database::open(
            dir.path(),
            Options {
                backend: slow,
                background_flush: true,
                durability: telemark_engine::Durability::Buffered,
                max_buffer_bytes: 512 << 10,
                max_buffer_memory: limit,
                compaction: CompactionOptions { background: false, ..CompactionOptions::default() },
                ..Options::default()
            },
        )
        .unwrap(),
    );
    let peak = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (db, peak, stop) = (db.clone(), peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                peak.fetch_max(db.stats().buffered_bytes as u64, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let base = 1_700_000_000_000_000_000i64;
    let mut batch_bytes = 0;
    for i in 0..150 {
        let mut b = WriteBatch::new("m");
        for r in 0..2000 {
            b.row(base + (i * 2000 + r) * 1_000_000).tag("device", format!("d{}", r % 10)).field("v", r as f64);
        }
        batch_bytes = b.approx_bytes();
        let _ = db.write("db", &b).unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    watcher.join().unwrap();
    let stats = db.stats();
    assert!(stats.write_stalls > 0, "writers never waited: {stats:?}");
    let peak = peak.load(Ordering::SeqCst) as usize;
    assert!(peak <= limit + 2 * batch_bytes, "buffer reached {peak} bytes, limit {limit}");
    let n: usize = db.scan(&ScanRequest::new("db", "m")).unwrap().map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(n, 300_000, "every acknowledged row is there");
}

#[test]
fn flush_compaction_delete_retention_and_queries_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(
        Database::open(
            dir.path(),
            Options {
                durability: telemark_engine::Durability::Buffered,
                background_flush: true,
                max_buffer_bytes: 64 << 10,
                partition_duration: Duration::from_secs(3600),
                compaction: CompactionOptions {
                    background: true,
                    interval: Duration::from_millis(30),
                    min_files: 2,
                    ..CompactionOptions::default()
                },
                ..Options::default()
            },
        )
        .unwrap(),
    );
    db.set_retention("db", None, Some(Duration::from_secs(30 * 86_400))).unwrap();
    let base = now() - 6 * HOUR;
    let stop = Arc::new(AtomicBool::new(false));
    // device -> times acknowledged (and not deleted)
    let acked: Arc<std::sync::Mutex<BTreeMap<String, std::collections::BTreeSet<i64>>>> = Arc::default();
    // One row first, so the table exists before a reader scans it (a scan of a missing table is an error).
    write(&db, "m", "seed", &[(base, 0.0)]);
    acked.lock().unwrap().entry("seed".to_string()).or_default().insert(base);
    let mut threads = Vec::new();
    for w in 0..2 {
        let (db, stop, acked) = (db.clone(), stop.clone(), acked.clone());
        threads.push(std::thread::spawn(move || {
            let mut i = 0i64;
            while !stop.load(Ordering::SeqCst) {
                let device = format!("w{w}-d{}", i % 4);
                let pts: Vec<(i64, f64)> =
                    (0..50).map(|k| (base + (i * 50 + k) * 1_000_000, (i * 50 + k) as f64)).collect();
                let mut b = WriteBatch::new("m");
                for (t, v) in &pts {
                    b.row(*t).tag("device", device.as_str()).field("v", *v);
                }
                // One old row per batch: refused by retention, the rest lands.
                b.row(base - 40 * DAY).tag("device", device.as_str()).field("v", -1.0);
                let out = db.write("db", &b).unwrap();
                assert_eq!(out.rows_written, 50);
                assert_eq!(out.rejected.len(), 1);
                acked.lock().unwrap().entry(device).or_default().extend(pts.iter().map(|p| p.0));
                i += 1;
            }
        }));
    }
    // Writes a window, then deletes its first half, window after window.
    {
        let (db, stop, acked) = (db.clone(), stop.clone(), acked.clone());
        threads.push(std::thread::spawn(move || {
            let mut k = 0i64;
            while !stop.load(Ordering::SeqCst) {
                let start = base + HOUR + k * 1_000_000_000;
                let pts: Vec<(i64, f64)> = (0..20).map(|j| (start + j * 10_000_000, j as f64)).collect();
                let mut b = WriteBatch::new("m");
                for (t, v) in &pts {
                    b.row(*t).tag("device", "victim").field("v", *v);
                }
                let _ = db.write("db", &b).unwrap();
                let del =
                    DeleteRequest::new("m").filter_tag("device", ["victim"]).time_range(start, start + 100_000_000);
                assert_eq!(db.delete("db", &del).unwrap().rows_matched, 10);
                acked.lock().unwrap().entry("victim".into()).or_default().extend(pts[10..].iter().map(|p| p.0));
                k += 1;
            }
        }));
    }
    {
        let (db, stop) = (db.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let r = db.compact().unwrap();
                assert!(r.failures.is_empty(), "{r:?}");
                db.enforce_retention().unwrap();
            }
        }));
    }
    // Readers: every scan succeeds, returns no row twice, and holds every row acknowledged before it started.
    for _ in 0..2 {
        let (db, stop, acked) = (db.clone(), stop.clone(), acked.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let before = acked.lock().unwrap().clone();
                let got = rows(&db, "m");
                for (device, times) in &before {
                    for t in times {
                        assert!(got.contains_key(&(device.clone(), *t)), "acknowledged row {device}@{t} missing");
                    }
                }
                assert!(got.keys().all(|(_, t)| *t >= base - HOUR), "an expired row is visible");
            }
        }));
    }
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    let expect: BTreeMap<String, std::collections::BTreeSet<i64>> = acked.lock().unwrap().clone();
    let check = |db: &Database| {
        let got = rows(db, "m");
        let got_keys: BTreeMap<String, std::collections::BTreeSet<i64>> =
            got.keys().fold(BTreeMap::new(), |mut m, (d, t)| {
                m.entry(d.clone()).or_default().insert(*t);
                m
            });
        assert_eq!(got_keys, expect);
    };
    check(&db);
    let stats = db.stats();
    assert!(stats.compactions > 0 && stats.flushes > 1 && stats.deletes > 0, "{stats:?}");
    drop(db);
    let db = Database::open(dir.path(), options()).unwrap();
    check(&db);
    let v = db.verify().unwrap();
    assert!(v.unreferenced.is_empty(), "{v:?}");
}
