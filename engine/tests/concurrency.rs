//! Concurrent writers share WAL fsyncs (group commit); readers scan while
//! writers write and the buffer flushes; flushes fire on size and age and
//! trim the WAL.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a panic is a test failure")]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use telemark_engine::{Database, Options, ScanRequest, WriteBatch};

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn database_is_send_and_sync() {
    assert_send_sync::<Database>();
}

mod common;

/// Counts file syncs and makes each take a while, as on a real disk.
fn slow_counting_sync(syncs: Arc<AtomicUsize>) -> Arc<common::HookBackend> {
    Arc::new(common::HookBackend {
        on_sync: Arc::new(move || {
            syncs.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(4));
            Ok(())
        }),
    })
}

fn batch(writer: usize, i: usize) -> WriteBatch {
    let mut b = WriteBatch::new("m");
    for r in 0..10 {
        b.row(((i * 10 + r) * 1_000_000) as i64).tag("writer", writer.to_string()).field("v", (i * 10 + r) as f64);
    }
    b
}

fn count(db: &Database) -> usize {
    match db.scan(&ScanRequest::new("db", "m")) {
        Ok(stream) => stream.map(|b| b.unwrap_or_else(|e| panic!("scan failed: {e}")).num_rows()).sum(),
        // Readers may start before the first write creates the database and table.
        Err(telemark_engine::Error::NotFound { .. }) => 0,
        Err(e) => panic!("scan failed: {e}"),
    }
}

#[test]
fn concurrent_writers_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let syncs = Arc::new(AtomicUsize::new(0));
    let options = Options { background_flush: false, backend: slow_counting_sync(syncs.clone()), ..Options::default() };
    let db = Arc::new(Database::open(dir.path(), options).unwrap());
    let before = syncs.load(Ordering::SeqCst);
    let (writers, per_writer) = (8, 40);
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let db = db.clone();
            std::thread::spawn(move || {
                for i in 0..per_writer {
                    let out = db.write("db", &batch(w, i)).unwrap();
                    assert_eq!(out.rows_written, 10);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let used = syncs.load(Ordering::SeqCst) - before;
    let writes = writers * per_writer;
    eprintln!("{writes} acknowledged writes used {used} fsyncs");
    assert!(used < writes * 2 / 3, "{writes} writes used {used} fsyncs: writers are not sharing fsyncs");
    assert_eq!(count(&db), writes * 10);
}

#[test]
fn readers_scan_while_writers_write_and_flushes_happen() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { max_buffer_bytes: 16 * 1024, ..Options::default() };
    let db = Arc::new(Database::open(dir.path(), options).unwrap());
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let db = db.clone();
            std::thread::spawn(move || {
                for i in 0..150 {
                    let _ = db.write("db", &batch(w, i)).unwrap();
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let db = db.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                let mut last = 0;
                let mut scans = 0;
                while !done.load(Ordering::SeqCst) {
                    // A row once visible stays visible; per writer, rows become visible in order.
                    let n = count(&db);
                    assert!(n >= last, "a scan saw {n} rows after one saw {last}");
                    last = n;
                    scans += 1;
                }
                scans
            })
        })
        .collect();
    for h in writers {
        h.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let scans: usize = readers.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(scans > 0);
    assert_eq!(count(&db), 3 * 150 * 10);
    assert!(db.stats().segments > 0, "the size limit should have triggered flushes");
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wal_files(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "wal"))
        .count()
}

#[test]
fn age_limit_flushes_and_trims_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { max_buffer_age: Duration::from_millis(200), ..Options::default() };
    let db = Database::open(dir.path(), options).unwrap();
    for i in 0..5 {
        let _ = db.write("db", &batch(0, i)).unwrap();
    }
    assert_eq!(db.stats().segments, 0);
    // `flushes` counts a flush once its WAL files are trimmed.
    wait_for("an age-triggered flush", || db.stats().flushes > 0);
    assert_eq!(db.stats().buffered_rows, 0);
    assert_eq!(wal_files(dir.path()), 1, "only the current WAL file remains after a flush");
    assert_eq!(count(&db), 50);
}

#[test]
fn size_limit_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { max_buffer_bytes: 4096, max_buffer_age: Duration::from_secs(3600), ..Options::default() };
    let db = Database::open(dir.path(), options).unwrap();
    for i in 0..40 {
        let _ = db.write("db", &batch(0, i)).unwrap();
    }
    wait_for("a size-triggered flush", || db.stats().segments > 0);
    assert_eq!(count(&db), 400);
}
