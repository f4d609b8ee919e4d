//! End-to-end behaviour of the embedded `Database`: write, scan, flush, reopen.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a panic is a test failure")]

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampNanosecondType};
use arrow_array::{Array, RecordBatch};
use telemark_engine::{Database, Error, Options, ScanRequest, WriteBatch};

fn opts() -> Options {
    Options { background_flush: false, ..Options::default() }
}

fn collect(db: &Database, req: &ScanRequest) -> Vec<RecordBatch> {
    db.scan(req).unwrap().collect::<Result<Vec<_>, _>>().unwrap()
}

/// (device, time, value) triples of a scan projecting `device`, `time`, `v`.
fn rows(db: &Database, req: ScanRequest) -> Vec<(Option<String>, i64, Option<f64>)> {
    let mut out = Vec::new();
    for b in collect(db, &req.project(["device", "time", "v"])) {
        let dev = b.column(0).as_string_view();
        let t = b.column(1).as_primitive::<TimestampNanosecondType>();
        let v = b.column(2).as_primitive::<Float64Type>();
        for i in 0..b.num_rows() {
            out.push((
                dev.is_valid(i).then(|| dev.value(i).to_string()),
                t.value(i),
                v.is_valid(i).then(|| v.value(i)),
            ));
        }
    }
    out
}

#[test]
fn out_of_order_and_duplicates_resolve_last_write_wins_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let expect = vec![
        (Some("a".to_string()), 1, Some(10.0)),
        (Some("a".to_string()), 2, Some(22.0)),
        (Some("a".to_string()), 3, Some(3.0)),
        (Some("b".to_string()), 2, Some(5.0)),
    ];
    {
        let db = Database::open(dir.path(), opts()).unwrap();
        let mut b = WriteBatch::new("m");
        b.row(3).tag("device", "a").field("v", 3.0);
        b.row(1).tag("device", "a").field("v", 1.0);
        b.row(2).tag("device", "a").field("v", 2.0);
        b.row(2).tag("device", "b").field("v", 5.0);
        assert_eq!(db.write("db", &b).unwrap().rows_written, 4);
        db.flush().unwrap();
        // Overwrite across the segment boundary, then again within the buffer.
        let mut b = WriteBatch::new("m");
        b.row(2).tag("device", "a").field("v", 20.0);
        b.row(1).tag("device", "a").field("v", 10.0);
        b.row(2).tag("device", "a").field("v", 22.0);
        let _ = db.write("db", &b).unwrap();
        assert_eq!(rows(&db, ScanRequest::new("db", "m")), expect);
        db.flush().unwrap();
        assert_eq!(rows(&db, ScanRequest::new("db", "m")), expect);
        assert_eq!(db.stats().segments, 2);
    }
    // Reopen: from segments only.
    let db = Database::open(dir.path(), opts()).unwrap();
    assert_eq!(rows(&db, ScanRequest::new("db", "m")), expect);
    assert_eq!(rows(&db, ScanRequest::new("db", "m").filter_tag("device", ["b"])), expect[3..].to_vec());
    assert_eq!(rows(&db, ScanRequest::new("db", "m").time_range(2, 3)), vec![expect[1].clone(), expect[3].clone()]);
}

#[test]
fn unflushed_writes_survive_reopen_through_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::open(dir.path(), opts()).unwrap();
        let mut b = WriteBatch::new("m");
        b.row(5).tag("device", "x").field("v", 1.5);
        let _ = db.write("db", &b).unwrap();
        // Dropped without close: only the WAL has the row.
    }
    let (db, report) = Database::open_with_report(dir.path(), opts()).unwrap();
    assert_eq!(report.wal_records_replayed, 1);
    assert_eq!(rows(&db, ScanRequest::new("db", "m")), vec![(Some("x".into()), 5, Some(1.5))]);
}

#[test]
fn missing_fields_are_null_and_last_write_wins_per_field() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), opts()).unwrap();
    let mut b = WriteBatch::new("m");
    b.row(1).tag("device", "a").field("v", 1.0).field("n", 7i64);
    let _ = db.write("db", &b).unwrap();
    db.flush().unwrap();
    let mut b = WriteBatch::new("m");
    b.row(1).tag("device", "a").field("v", 2.0); // `n` kept from the first write
    b.row(2).tag("device", "a").field("n", 8i64); // `v` null
    let _ = db.write("db", &b).unwrap();
    for _ in 0..2 {
        let batches = collect(&db, &ScanRequest::new("db", "m").project(["time", "v", "n"]));
        let b = &batches[0];
        let v = b.column(1).as_primitive::<Float64Type>();
        let n = b.column(2).as_primitive::<Int64Type>();
        assert_eq!((v.value(0), n.value(0)), (2.0, 7));
        assert!(v.is_null(1));
        assert_eq!(n.value(1), 8);
        db.flush().unwrap();
    }
}

#[test]
fn type_conflict_rejects_only_that_row_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), opts()).unwrap();
    let mut b = WriteBatch::new("readings");
    b.row(1).tag("device", "a").field("temp", 21.5);
    let _ = db.write("fleet", &b).unwrap();
    let mut b = WriteBatch::new("readings");
    b.row(2).tag("device", "a").field("temp", 22.0);
    b.row(3).tag("device", "a").field("temp", "hot");
    b.row(4).tag("device", "a").field("temp", 23.0);
    let out = db.write("fleet", &b).unwrap();
    assert_eq!(out.rows_written, 2);
    assert_eq!(out.rejected.len(), 1);
    let e = &out.rejected[0];
    assert_eq!(e.row, 1);
    assert_eq!(e.column.as_deref(), Some("temp"));
    for part in ["`fleet`", "`readings`", "`temp`", "float field", "string field"] {
        assert!(e.message.contains(part), "{part} missing in {}", e.message);
    }
    let n: usize = collect(&db, &ScanRequest::new("fleet", "readings")).iter().map(RecordBatch::num_rows).sum();
    assert_eq!(n, 3);
}

#[test]
fn bad_names_and_unknown_tables_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), opts()).unwrap();
    let mut b = WriteBatch::new("m");
    b.row(1).field("v", 1.0);
    let err = db.write("bad name", &b).unwrap_err();
    assert!(matches!(err, Error::InvalidName { what: "database", .. }), "{err}");
    let mut b = WriteBatch::new("m");
    b.row(1).field("time", 1.0);
    b.row(2).field("ok", 1.0);
    let out = db.write("db", &b).unwrap();
    assert_eq!(out.rows_written, 1);
    assert!(out.rejected[0].message.contains("timestamp column"), "{}", out.rejected[0].message);
    let err = db.scan(&ScanRequest::new("db", "nope")).unwrap_err();
    assert!(err.to_string().contains("table \"db.nope\" not found"), "{err}");
    let err = db.scan(&ScanRequest::new("db", "m").project(["zzz"])).unwrap_err();
    assert!(err.to_string().contains("zzz"), "{err}");
}

#[test]
fn scans_split_large_series_into_bounded_batches() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), Options { scan_batch_rows: 1000, ..opts() }).unwrap();
    let mut b = WriteBatch::new("m");
    for i in 0..4500 {
        b.row(i).tag("device", "a").field("v", i as f64);
    }
    let _ = db.write("db", &b).unwrap();
    db.flush().unwrap();
    let batches = collect(&db, &ScanRequest::new("db", "m"));
    assert_eq!(batches.iter().map(RecordBatch::num_rows).collect::<Vec<_>>(), vec![1000, 1000, 1000, 1000, 500]);
}

/// Series of every length, one of them in two pieces (a segment and the
/// write buffer), a field projected twice and one most series lack: rows
/// come out series by series in time order, in batches no longer than asked.
#[test]
fn pieces_of_every_length_give_the_same_rows_in_bounded_batches() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), Options { scan_batch_rows: 10, ..opts() }).unwrap();
    let mut b = WriteBatch::new("m");
    let mut expect = Vec::new();
    // Series of 1 to 26 rows; "w" only on some, null on some rows of those.
    for (d, n) in [("a", 26i64), ("b", 3), ("c", 5), ("d", 12), ("e", 1), ("f", 20)] {
        for t in 0..n {
            let r = b.row(t * 10).tag("device", d).field("v", t as f64);
            let w = (d == "b" || d == "f") && t % 3 != 0;
            if w {
                let _ = r.field("w", -(t as f64));
            }
            expect.push((d.to_string(), t * 10, t as f64, w.then(|| -(t as f64))));
        }
    }
    let _ = db.write("db", &b).unwrap();
    db.flush().unwrap();
    // Later rows still in the write buffer: a second, non-overlapping piece.
    let mut b = WriteBatch::new("m");
    for t in 26..31i64 {
        b.row(t * 10).tag("device", "a").field("v", t as f64);
        expect.push(("a".to_string(), t * 10, t as f64, None));
    }
    let _ = db.write("db", &b).unwrap();
    expect.sort_by(|x, y| (&x.0, x.1).cmp(&(&y.0, y.1)));
    let batches = collect(&db, &ScanRequest::new("db", "m").project(["device", "time", "v", "w", "v"]));
    assert!(
        batches.iter().all(|b| (1..=10).contains(&b.num_rows())),
        "{:?}",
        batches.iter().map(RecordBatch::num_rows).collect::<Vec<_>>()
    );
    let mut got = Vec::new();
    for b in &batches {
        let dev = b.column(0).as_string_view();
        let t = b.column(1).as_primitive::<TimestampNanosecondType>();
        let v = b.column(2).as_primitive::<Float64Type>();
        let w = b.column(3).as_primitive::<Float64Type>();
        assert_eq!(b.column(4).as_primitive::<Float64Type>(), v);
        for i in 0..b.num_rows() {
            got.push((dev.value(i).to_string(), t.value(i), v.value(i), w.is_valid(i).then(|| w.value(i))));
        }
    }
    for pair in got.windows(2) {
        if let [x, y] = pair
            && x.0 == y.0
        {
            assert!(x.1 < y.1, "series {} out of time order: {} then {}", x.0, x.1, y.1);
        }
    }
    let mut seen = Vec::new();
    for d in got.iter().map(|r| &r.0) {
        if seen.last() != Some(&d) {
            assert!(!seen.contains(&d), "series {d} comes out in two places");
            seen.push(d);
        }
    }
    got.sort_by(|x, y| (&x.0, x.1).cmp(&(&y.0, y.1)));
    assert_eq!(got, expect);
    let n: usize = collect(&db, &ScanRequest::new("db", "m").project(Vec::<String>::new()))
        .iter()
        .map(RecordBatch::num_rows)
        .sum();
    assert_eq!(n, expect.len());
}

#[test]
fn partitions_split_segments_by_day() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), opts()).unwrap();
    let day = 86_400_000_000_000i64;
    let mut b = WriteBatch::new("m");
    b.row(0).field("v", 1.0);
    b.row(day + 1).field("v", 2.0);
    b.row(-1).field("v", 0.5);
    let _ = db.write("db", &b).unwrap();
    db.flush().unwrap();
    assert_eq!(db.stats().segments, 3);
    let n: usize =
        collect(&db, &ScanRequest::new("db", "m").time_range(0, day)).iter().map(RecordBatch::num_rows).sum();
    assert_eq!(n, 1);
}

#[test]
fn segment_files_left_by_an_interrupted_flush_are_cleaned_up() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::open(dir.path(), opts()).unwrap();
        let mut b = WriteBatch::new("m");
        b.row(1).tag("device", "a").field("v", 1.0);
        let _ = db.write("db", &b).unwrap();
    }
    // What a crash between writing segment 1 and storing the manifest leaves.
    std::fs::write(dir.path().join("segments/00000000000000000001.tmp"), b"partial").unwrap();
    std::fs::write(dir.path().join("segments/00000000000000000001.tms"), b"unreferenced").unwrap();
    let db = Database::open(dir.path(), opts()).unwrap();
    db.flush().unwrap();
    drop(db);
    let db = Database::open(dir.path(), opts()).unwrap();
    assert_eq!(rows(&db, ScanRequest::new("db", "m")), vec![(Some("a".into()), 1, Some(1.0))]);
}

#[test]
fn buffered_durability_writes_replay_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::open(dir.path(), Options { durability: telemark_engine::Durability::Buffered, ..opts() })
            .unwrap();
        for t in 0..20 {
            let mut b = WriteBatch::new("m");
            b.row(t).tag("device", "a").field("v", t as f64);
            let _ = db.write("db", &b).unwrap();
        }
        // Dropped without close: the bytes are in the OS page cache, which survives a process crash.
    }
    let db = Database::open(dir.path(), opts()).unwrap();
    assert_eq!(rows(&db, ScanRequest::new("db", "m")).len(), 20);
}

#[test]
fn empty_projection_counts_rows() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), opts()).unwrap();
    let mut b = WriteBatch::new("m");
    for t in 0..7 {
        b.row(t).tag("device", "a").field("v", 1.0);
    }
    let _ = db.write("db", &b).unwrap();
    let batches = collect(&db, &ScanRequest::new("db", "m").project(Vec::<String>::new()));
    assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 7);
    assert_eq!(batches[0].num_columns(), 0);
}

#[test]
fn partitioned_scans_read_every_series_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), opts()).unwrap();
    let mut b = WriteBatch::new("m");
    for d in 0..40 {
        for t in 0..5 {
            b.row(t).tag("device", format!("d{d}")).field("v", f64::from(d * 10 + t as i32));
        }
    }
    let _ = db.write("db", &b).unwrap();
    db.flush().unwrap();
    let mut b = WriteBatch::new("m");
    b.row(99).tag("device", "d3").field("v", 1.0);
    let _ = db.write("db", &b).unwrap(); // one series in both a segment and the buffer
    let mut all = rows(&db, ScanRequest::new("db", "m"));
    let mut parts = Vec::new();
    let mut sizes = Vec::new();
    for i in 0..3 {
        let mut req = ScanRequest::new("db", "m");
        req.partition = Some((i, 3));
        let r = rows(&db, req);
        sizes.push(r.len());
        parts.extend(r);
    }
    all.sort_by(|a, b| a.partial_cmp(b).unwrap());
    parts.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(parts, all);
    assert!(sizes.iter().all(|n| *n > 0), "every share got some series: {sizes:?}");
}

#[test]
fn a_conflicting_first_row_does_not_take_the_good_rows_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), opts()).unwrap();
    let mut b = WriteBatch::new("tf");
    b.row(1).field("temp", 20.5);
    assert_eq!(db.write("d", &b).unwrap().rows_written, 1);
    let mut b = WriteBatch::new("tf");
    b.row(2).field("temp", 21i64);
    b.row(3).field("temp", 22.5);
    b.row(4).field("temp", 23.5);
    let out = db.write("d", &b).unwrap();
    assert_eq!(out.rows_written, 2);
    assert_eq!(out.rejected.len(), 1);
    assert_eq!(out.rejected[0].row, 0);
    assert!(
        out.rejected[0].message.contains("column `temp` is a float field, got an integer field value"),
        "{}",
        out.rejected[0].message
    );
    // In a new table the first kind seen wins, and the message says so.
    let mut b = WriteBatch::new("fresh");
    b.row(1).field("v", 1i64);
    b.row(2).field("v", 2.5);
    b.row(3).field("v", 3i64);
    let out = db.write("d", &b).unwrap();
    assert_eq!(out.rows_written, 2);
    assert_eq!(out.rejected[0].row, 1);
    assert!(
        out.rejected[0].message.contains("is an integer field earlier in this batch, got a float field value"),
        "{}",
        out.rejected[0].message
    );
}

#[test]
fn write_many_lands_each_batch_on_its_own_and_shares_one_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), opts()).unwrap();
    let mut a = WriteBatch::new("a");
    a.row(1).field("x", 1.0);
    let mut b = WriteBatch::new("b");
    b.row(1).field("y", 2i64);
    b.row(2).field("y", 3i64);
    let bad = WriteBatch::new("bad name\u{7}");
    let syncs = db.stats().wal_syncs;
    let results = db.write_many([("d", &a), ("d", &b), ("d", &bad), ("e", &a)]);
    assert_eq!(db.stats().wal_syncs - syncs, 1, "one fsync for the whole group");
    assert_eq!(results.len(), 4);
    assert_eq!(results[0].as_ref().unwrap().rows_written, 1);
    assert_eq!(results[1].as_ref().unwrap().rows_written, 2);
    assert!(matches!(results[2], Err(Error::InvalidName { .. })));
    assert_eq!(results[3].as_ref().unwrap().rows_written, 1);
    assert_eq!(collect(&db, &ScanRequest::new("d", "b")).iter().map(RecordBatch::num_rows).sum::<usize>(), 2);
    assert_eq!(collect(&db, &ScanRequest::new("e", "a")).iter().map(RecordBatch::num_rows).sum::<usize>(), 1);
}

/// Found by the model test: a column whose only values were in rejected rows
/// used to be added to the catalog, then vanished on reopen, so the same
/// write was refused before and accepted after.
#[test]
fn a_column_seen_only_in_rejected_rows_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), opts()).unwrap();
    let mut b = WriteBatch::new("m");
    b.row(0).field("v", 0i64).field("v", f64::NAN);
    let out = db.write("model", &b).unwrap();
    assert_eq!((out.rows_written, out.rejected.len()), (0, 1));
    assert!(db.column_kind("model", "m", "v").is_none());
    let mut b = WriteBatch::new("m");
    b.row(0).field("v", f64::NAN);
    assert_eq!(db.write("model", &b).unwrap().rows_written, 1, "v is free to become a float");
}

#[test]
fn storage_report_counts_every_flushed_value_by_column() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), opts()).unwrap();
    let mut b = WriteBatch::new("r");
    for i in 0..1000i64 {
        b.row(i * 10_000_000_000).tag("name", format!("t{}", i % 10)).field("v", i as f64 / 10.0).field("n", i);
    }
    assert_eq!(db.write("d", &b).unwrap().rows_written, 1000);
    assert!(db.storage("d").is_empty(), "nothing in segments before a flush");
    db.flush().unwrap();
    let s = db.storage("d");
    let get = |c: &str| s.iter().find(|x| x.table == "r" && x.column == c).unwrap_or_else(|| panic!("{c}: {s:?}"));
    assert_eq!(get("time").values, 1000);
    assert_eq!(get("v").values, 1000);
    assert_eq!(get("n").values, 1000);
    assert_eq!(get("v").chunks, 10, "one chunk per series");
    // Tenths are decimals: the adaptive choice stores them as scaled integers, not Gorilla XOR.
    assert_eq!(get("v").codecs.get("float-decimal"), Some(&10), "{:?}", get("v").codecs);
    assert!(get("v").bytes < 1000 * 3, "decimal floats take well under 3 bytes each: {}", get("v").bytes);
    let total: u64 = s.iter().map(|c| c.bytes).sum();
    assert_eq!(total, db.stats().segment_bytes, "columns plus overhead add up to the files");
}

#[test]
fn rows_without_columns_create_their_table_and_do_not_poison() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), opts()).unwrap();
    let mut bare = WriteBatch::new("fresh");
    bare.row(1_000);
    bare.row(2_000);
    let outcome = db.write("iot", &bare).unwrap();
    assert_eq!(outcome.rows_written, 2);
    assert!(db.tables("iot").contains(&"fresh".to_string()));
    // Still writable, and the rows survive a flush and a reopen.
    let mut b = WriteBatch::new("fresh");
    b.row(3_000).field("v", 1.5);
    let _ = db.write("iot", &b).unwrap();
    db.flush().unwrap();
    db.close().unwrap();
    let db = Database::open(dir.path(), opts()).unwrap();
    let n: usize = collect(&db, &ScanRequest::new("iot", "fresh")).iter().map(RecordBatch::num_rows).sum();
    assert_eq!(n, 3);
}

#[test]
fn a_write_too_large_for_one_wal_record_is_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), opts()).unwrap();
    let mut b = WriteBatch::new("blobs");
    b.row(1).field("payload", "x".repeat(600 << 20));
    let err = db.write("iot", &b).unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    assert!(err.to_string().contains("split it into smaller batches"), "{err}");
    // The database is not poisoned.
    let mut small = WriteBatch::new("blobs");
    small.row(2).field("payload", "ok");
    assert_eq!(db.write("iot", &small).unwrap().rows_written, 1);
}

#[test]
fn chunks_that_zstd_shrinks_are_stored_compressed_and_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), opts()).unwrap();
    // Binary floats from a small set: Gorilla's bit stream repeats, which zstd finds.
    let set = [std::f64::consts::PI, std::f64::consts::E, 2f64.sqrt(), -1.0 / 3.0];
    let mut b = WriteBatch::new("m");
    for i in 0..8000i64 {
        b.row(i * 1_000_000_000).tag("device", "d1").field("v", set[(i * 7 % 4) as usize]);
    }
    let _ = db.write("iot", &b).unwrap();
    db.flush().unwrap();
    let storage = db.storage("iot");
    let v = storage.iter().find(|c| c.column == "v").unwrap();
    assert!(v.codecs.keys().any(|k| k.ends_with("+zstd")), "{:?}", v.codecs);
    db.close().unwrap();
    let db = Database::open(dir.path(), opts()).unwrap();
    let got: Vec<f64> = collect(&db, &ScanRequest::new("iot", "m").project(["v"]))
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Float64Type>().values().to_vec())
        .collect();
    let want: Vec<f64> = (0..8000i64).map(|i| set[(i * 7 % 4) as usize]).collect();
    assert_eq!(got.len(), want.len());
    assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()));
}

#[test]
fn field_filters_choose_rows_after_duplicates_resolve_and_name_bad_conditions() {
    use telemark_engine::{CmpOp, FieldCondition, FieldValue};
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), opts()).unwrap();
    let mut b = WriteBatch::new("m");
    b.row(1).tag("device", "a").field("v", 1.0).field("n", 5i64).field("s", "x");
    b.row(2).tag("device", "a").field("v", 7.0);
    b.row(3).tag("device", "b").field("n", 9i64);
    assert!(db.write("db", &b).unwrap().rejected.is_empty());
    db.flush().unwrap();
    // A later write of the same row replaces its value: the filter sees the new one.
    let mut b = WriteBatch::new("m");
    b.row(1).tag("device", "a").field("v", 8.0);
    assert!(db.write("db", &b).unwrap().rejected.is_empty());

    let gt5 = FieldCondition::Compare(CmpOp::Gt, FieldValue::F64(5.0));
    let got = rows(&db, ScanRequest::new("db", "m").filter_field("v", gt5.clone()));
    assert_eq!(got, vec![(Some("a".into()), 1, Some(8.0)), (Some("a".into()), 2, Some(7.0))]);
    // A null never matches, not even `<>`; a series without the field has no rows.
    let ne = FieldCondition::Compare(CmpOp::NotEq, FieldValue::F64(7.0));
    assert_eq!(rows(&db, ScanRequest::new("db", "m").filter_field("v", ne)), vec![(Some("a".into()), 1, Some(8.0))]);
    let present = ScanRequest::new("db", "m").filter_field("n", FieldCondition::Present);
    assert_eq!(rows(&db, present).iter().map(|r| r.1).collect::<Vec<_>>(), vec![1, 3]);
    // A column the table lacks is null everywhere.
    assert!(rows(&db, ScanRequest::new("db", "m").filter_field("nope", FieldCondition::Present)).is_empty());

    let err = |req: ScanRequest| db.scan(&req).unwrap_err().to_string();
    let e = err(ScanRequest::new("db", "m").filter_field("device", FieldCondition::Present));
    assert!(e.contains("`device`") && e.contains("tag"), "{e}");
    let e = err(ScanRequest::new("db", "m").filter_field("n", gt5));
    assert!(e.contains("`n`") && e.contains("integer") && e.contains("float"), "{e}");
}
