//! Backup and restore through the public API, to a local-directory object
//! store: a backup taken under concurrent ingest restores to a consistent
//! cut (every write acknowledged before it started, then a prefix of the
//! rest); backups are incremental; a damaged, missing or interrupted backup
//! is refused (or the previous complete one used) and leaves the target
//! empty; cold partitions are referenced and checked on restore.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a panic is a test failure")]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use telemark_engine::backup::restore;
use telemark_engine::tiering::{TierStore, TieringOptions};
use telemark_engine::{CompactionOptions, Database, Options, ScanRequest, WriteBatch};

const DAY: i64 = 86_400_000_000_000;

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
}

fn store(dir: &Path) -> TierStore {
    TierStore::from_url(&format!("file://{}", dir.display())).unwrap()
}

fn options(cold: Option<&Path>) -> Options {
    Options {
        background_flush: false,
        max_buffer_bytes: 16 << 10,
        compaction: CompactionOptions { background: false, ..CompactionOptions::default() },
        tiering: cold.map(|c| {
            let mut t = TieringOptions::new(store(c));
            t.background = false;
            t
        }),
        ..Options::default()
    }
}

/// The `seq` values of table `m`, sorted.
fn seqs(db: &Database) -> Vec<i64> {
    let mut out = Vec::new();
    for b in db.scan(&ScanRequest::new("db", "m").project(["seq"])).unwrap() {
        let b = b.unwrap();
        out.extend(b.column(0).as_primitive::<Int64Type>().values().iter().copied());
    }
    out.sort_unstable();
    out
}

fn write_seq(db: &Database, seq: i64, t: i64) {
    let mut b = WriteBatch::new("m");
    b.row(t).tag("device", format!("d{}", seq % 7)).field("seq", seq).field("v", seq as f64 * 0.5);
    assert!(db.write("db", &b).unwrap().rejected.is_empty());
}

fn files_in(dir: &Path) -> usize {
    fn walk(d: &Path, n: &mut usize) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                walk(&e.path(), n);
            } else {
                *n += 1;
            }
        }
    }
    let mut n = 0;
    walk(dir, &mut n);
    n
}

#[test]
fn a_backup_under_ingest_restores_to_a_consistent_cut() {
    let root = tempfile::tempdir().unwrap();
    let (data, backups) = (root.path().join("data"), root.path().join("backups"));
    let db = Arc::new(Database::open(&data, options(None)).unwrap());
    let base = now() - DAY;
    for seq in 0..2000 {
        write_seq(&db, seq, base + seq * 1_000_000);
    }
    let acked = Arc::new(AtomicI64::new(1999));
    let stop = Arc::new(AtomicU64::new(0));
    let writer = {
        let (db, acked, stop) = (db.clone(), acked.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut seq = 2000;
            while stop.load(Ordering::SeqCst) == 0 {
                write_seq(&db, seq, base + seq * 1_000_000);
                acked.store(seq, Ordering::SeqCst);
                seq += 1;
                if seq % 50 == 0 {
                    db.flush().unwrap();
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    let acked_before = acked.load(Ordering::SeqCst);
    let mut calls = 0;
    let report = db.backup(&store(&backups), &mut |_| calls += 1).unwrap();
    let acked_after = acked.load(Ordering::SeqCst);
    stop.store(1, Ordering::SeqCst);
    writer.join().unwrap();
    assert!(report.files > 0 && report.files_copied == report.files && calls >= report.files, "{report:?}");

    let restored = root.path().join("restored");
    let r = restore(&store(&backups), None, &restored, &mut |_| {}).unwrap();
    assert_eq!(r.name, report.name);
    let back = Database::open(&restored, options(None)).unwrap();
    let got = seqs(&back);
    let k = *got.last().unwrap();
    assert_eq!(got, (0..=k).collect::<Vec<_>>(), "the restored rows are not a prefix of the writes");
    assert!(k >= acked_before, "a write acknowledged before the backup started is missing ({k} < {acked_before})");
    assert!(k <= acked_after, "the backup holds a write acknowledged after it ended");
    drop(back);

    // Incremental: nothing new to copy the second time (after one flush of what is left).
    db.flush().unwrap();
    let _ = db.backup(&store(&backups), &mut |_| {}).unwrap();
    let again = db.backup(&store(&backups), &mut |_| {}).unwrap();
    assert_eq!(again.files_copied, 0, "{again:?}");
    assert_eq!(again.files_skipped, again.files);
    let all = seqs(&db);
    let restored2 = root.path().join("restored2");
    restore(&store(&backups), None, &restored2, &mut |_| {}).unwrap();
    assert_eq!(seqs(&Database::open(&restored2, options(None)).unwrap()), all);
}

#[test]
fn damaged_missing_and_interrupted_backups_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let (data, backups) = (root.path().join("data"), root.path().join("backups"));
    let db = Database::open(&data, options(None)).unwrap();
    let base = now() - DAY;
    for seq in 0..500 {
        write_seq(&db, seq, base + seq * 1_000_000);
    }
    let first = db.backup(&store(&backups), &mut |_| {}).unwrap();
    for seq in 500..600 {
        write_seq(&db, seq, base + seq * 1_000_000);
    }
    let second = db.backup(&store(&backups), &mut |_| {}).unwrap();
    assert!(second.name > first.name);
    drop(db);

    // Not into a directory that holds something.
    let busy = root.path().join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("x"), b"x").unwrap();
    let e = restore(&store(&backups), None, &busy, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("not empty"), "{e}");

    // An interrupted backup (no BACKUP file): the newest complete one is restored.
    let newest = backups.join("backups").join(&second.name).join("BACKUP");
    let saved = std::fs::read(&newest).unwrap();
    std::fs::remove_file(&newest).unwrap();
    let t = root.path().join("t1");
    assert_eq!(restore(&store(&backups), None, &t, &mut |_| {}).unwrap().name, first.name);
    assert_eq!(seqs(&Database::open(&t, options(None)).unwrap()), (0..500).collect::<Vec<_>>());
    let e = restore(&store(&backups), Some(&second.name), &root.path().join("t2"), &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("incomplete"), "{e}");
    std::fs::write(&newest, saved).unwrap();

    // A damaged data file: refused, naming it, and the target left empty.
    let data_dir = backups.join("data");
    let victim = std::fs::read_dir(&data_dir).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&victim, &bytes).unwrap();
    let t3 = root.path().join("t3");
    let e = restore(&store(&backups), None, &t3, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("damaged") && e.contains(victim.file_name().unwrap().to_str().unwrap()), "{e}");
    assert_eq!(files_in(&t3), 0, "a failed restore left files behind");
    // A missing one: the same.
    std::fs::remove_file(&victim).unwrap();
    let e = restore(&store(&backups), None, &t3, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("missing"), "{e}");
    assert_eq!(files_in(&t3), 0);
}

#[test]
fn cold_partitions_are_referenced_and_checked() {
    let root = tempfile::tempdir().unwrap();
    let (data, backups, cold) = (root.path().join("data"), root.path().join("backups"), root.path().join("cold"));
    let db = Database::open(&data, options(Some(&cold))).unwrap();
    let base = (now() / DAY - 12) * DAY;
    for seq in 0..1200 {
        write_seq(&db, seq, base + seq * (DAY / 100));
    }
    let tiered = db.tier(None).unwrap();
    assert!(tiered.partitions >= 4, "{tiered:?}");
    let report = db.backup(&store(&backups), &mut |_| {}).unwrap();
    assert_eq!(report.cold_objects, tiered.partitions);
    let all = seqs(&db);
    drop(db);
    let t = root.path().join("t");
    restore(&store(&backups), None, &t, &mut |_| {}).unwrap();
    // The data directory's lock is released: open the original and the copy one after the other.
    assert_eq!(seqs(&Database::open(&t, options(Some(&cold))).unwrap()), all);
    // A cold object deleted since the backup: refused.
    let object = walk_first_parquet(&cold);
    std::fs::remove_file(&object).unwrap();
    let e = restore(&store(&backups), None, &root.path().join("t2"), &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("gone"), "{e}");
}

#[test]
fn a_data_directory_opens_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), options(None)).unwrap();
    let e = Database::open(dir.path(), options(None)).unwrap_err().to_string();
    assert!(e.contains("in use"), "{e}");
    drop(db);
    Database::open(dir.path(), options(None)).unwrap();
}

fn walk_first_parquet(dir: &Path) -> std::path::PathBuf {
    fn find(dir: &Path) -> Option<std::path::PathBuf> {
        for e in std::fs::read_dir(dir).ok()?.flatten() {
            let p = e.path();
            if p.is_dir() {
                if let Some(found) = find(&p) {
                    return Some(found);
                }
            } else if p.extension().is_some_and(|x| x == "parquet") {
                return Some(p);
            }
        }
        None
    }
    find(dir).unwrap_or_else(|| panic!("no parquet file under {}", dir.display()))
}
