//! Tiering to object storage through the public API, against an in-memory
//! store wrapped to count requests: old partitions move out as Parquet,
//! scans answer the same before and after, late rows into a tiered
//! partition win, deletes hide cold rows, retention deletes cold objects,
//! reopening needs no remote call to plan, and a one-device query fetches
//! only the row groups it needs.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a panic is a test failure")]

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampNanosecondType};
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult,
};
use telemark_engine::tiering::{TierStore, TieringOptions};
use telemark_engine::{CompactionOptions, Database, DeleteRequest, Options, ScanRequest, WriteBatch};

const HOUR: i64 = 3_600_000_000_000;
const DAY: i64 = 24 * HOUR;

/// Counts GET requests (whole or ranged) and puts.
#[derive(Debug, Default)]
struct Counting {
    inner: InMemory,
    gets: AtomicU64,
    puts: AtomicU64,
    deletes: AtomicU64,
    /// Flip a bit in every ranged GET's answer (damage in transit).
    corrupt: std::sync::atomic::AtomicBool,
}

impl fmt::Display for Counting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for Counting {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        if !options.head {
            self.gets.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.get_opts(location, options).await
    }
    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> object_store::Result<Vec<bytes::Bytes>> {
        self.gets.fetch_add(ranges.len() as u64, Ordering::SeqCst);
        let mut got = self.inner.get_ranges(location, ranges).await?;
        if self.corrupt.load(Ordering::SeqCst) {
            for b in &mut got {
                let mut v = b.to_vec();
                if let Some(x) = v.last_mut() {
                    *x ^= 0x01;
                }
                *b = bytes::Bytes::from(v);
            }
        }
        Ok(got)
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.deletes.fetch_add(1, Ordering::SeqCst);
        self.inner.delete_stream(locations)
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }
    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
}

fn options(store: &Arc<Counting>) -> Options {
    let mut tiering = TieringOptions::new(TierStore::new(store.clone(), "tier/test", "counting memory store"));
    tiering.after = Duration::from_secs(7 * 86_400);
    tiering.row_group_rows = 1000;
    // Every upload in parts: the multipart path, with parts smaller than S3 allows but the last.
    tiering.multipart_bytes = 1;
    Options {
        background_flush: false,
        compaction: CompactionOptions { background: false, ..CompactionOptions::default() },
        tiering: Some(tiering),
        ..Options::default()
    }
}

/// `(device, time) -> v` over the whole table (or one device).
fn rows(db: &Database, device: Option<&str>, range: Option<(i64, i64)>) -> BTreeMap<(String, i64), f64> {
    let mut req = ScanRequest::new("db", "m").project(["device", "time", "v"]);
    if let Some(d) = device {
        req = req.filter_tag("device", [d]);
    }
    if let Some((s, e)) = range {
        req = req.time_range(s, e);
    }
    let mut out = BTreeMap::new();
    for b in db.scan(&req).unwrap() {
        let b = b.unwrap();
        let dev = b.column(0).as_string_view();
        let t = b.column(1).as_primitive::<TimestampNanosecondType>();
        let v = b.column(2).as_primitive::<Float64Type>();
        for r in 0..b.num_rows() {
            assert!(out.insert((dev.value(r).to_string(), t.value(r)), v.value(r)).is_none(), "row twice");
        }
    }
    out
}

fn write(db: &Database, device: &str, points: impl IntoIterator<Item = (i64, f64)>) {
    let mut b = WriteBatch::new("m");
    for (t, v) in points {
        b.row(t).tag("device", device).field("v", v);
    }
    assert!(db.write("db", &b).unwrap().rejected.is_empty());
}

#[test]
fn old_partitions_move_to_object_storage_and_read_back_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Counting::default());
    let day0 = (now() / DAY - 12) * DAY; // 12 days ago, at midnight
    let db = Database::open(dir.path(), options(&store)).unwrap();
    // 10 devices, a row a minute, over 12 days (the last 2 stay hot).
    for d in 0..10 {
        let dev = format!("dev-{d}");
        write(&db, &dev, (0..12 * 24 * 60).map(|m| (day0 + m * 60_000_000_000, (d * 100_000 + m) as f64)));
        db.flush().unwrap(); // several files per partition
    }
    db.delete("db", &DeleteRequest::new("m").filter_tag("device", ["dev-3"])).unwrap();
    let before = rows(&db, None, None);
    assert_eq!(before.len(), 9 * 12 * 24 * 60);

    let report = db.tier(None).unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    // Partitions that ended more than 7 days ago: days 0..=4 of the 12.
    assert_eq!(report.partitions, 5, "{report:?}");
    assert_eq!(report.files, report.partitions * 10);
    assert!(store.puts.load(Ordering::SeqCst) as usize == report.partitions);
    assert_eq!(rows(&db, None, None), before, "answers changed after tiering");
    // A marker of the deleted device is in no object: its rows were left out.
    // Late rows into a tiered partition stay hot and win.
    write(&db, "dev-1", [(day0 + 60_000_000_000, -1.0)]);
    let mut expected = before.clone();
    expected.insert(("dev-1".into(), day0 + 60_000_000_000), -1.0);
    assert_eq!(rows(&db, None, None), expected);
    // A delete after tiering hides cold rows at once.
    db.delete("db", &DeleteRequest::new("m").filter_tag("device", ["dev-4"])).unwrap();
    expected.retain(|(d, _), _| d != "dev-4");
    assert_eq!(rows(&db, None, None), expected);
    // Compaction purges the delete from the cold files too: no object holds a row of dev-4 any more.
    assert!(device_rows_in_objects(&store, "dev-4") > 0);
    let report = db.compact().unwrap();
    assert_eq!(report.cold_files_purged, 5, "{report:?}");
    assert_eq!(device_rows_in_objects(&store, "dev-4"), 0);
    assert_eq!(device_rows_in_objects(&store, "dev-3"), 0, "rows deleted before tiering were never uploaded");
    assert_eq!(rows(&db, None, None), expected);
    let (pending, purged) = db.deletes(Some("db"));
    assert!(pending.is_empty() && purged.len() == 2, "pending {pending:?}, purged {purged:?}");
    // The replaced objects are deleted once no scan holds them (in the background).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while objects(&store).len() != 5 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(objects(&store).len(), 5, "the replaced objects are deleted");
    db.flush().unwrap();
    drop(db);
    // An object an interrupted upload left (an id below the manifest's next id, referenced by nothing)
    // is collected on open once it is older than `gc_grace`; an object whose id this database never
    // handed out is left alone.
    put(&store, "tier/test/db/m/date=2000-01-01/m-0-3.parquet");
    put(&store, "tier/test/db/m/date=2000-01-01/m-0-99999999.parquet");

    // Reopen: planning needs no remote call; a one-device one-hour query fetches one row group.
    // (The disk cache is emptied first: these reads must reach the store.)
    std::fs::remove_dir_all(dir.path().join("cache")).unwrap();
    let db = Database::open(dir.path(), options(&store)).unwrap();
    let names = objects(&store);
    assert!(names.iter().any(|n| n.ends_with("m-0-3.parquet")), "collected within gc_grace: {names:?}");
    let from = day0 + DAY + 5 * HOUR;
    // Damage in transit is an error naming the checksum, never a wrong answer, and is not cached.
    store.corrupt.store(true, Ordering::SeqCst);
    let req = ScanRequest::new("db", "m").filter_tag("device", ["dev-7"]).time_range(from, from + HOUR);
    let err = db.scan(&req).unwrap().find_map(Result::err).expect("a damaged row group must fail the scan");
    assert!(err.to_string().contains("CRC32C"), "{err}");
    store.corrupt.store(false, Ordering::SeqCst);
    let gets = store.gets.load(Ordering::SeqCst);
    let got = rows(&db, Some("dev-7"), Some((from, from + HOUR)));
    assert_eq!(got.len(), 60);
    assert!(got.keys().all(|(d, t)| d == "dev-7" && *t >= from && *t < from + HOUR));
    let fetched = store.gets.load(Ordering::SeqCst) - gets;
    // One row group (time + v: a ranged GET per column chunk, coalesced or not).
    assert!((1..=2).contains(&fetched), "a one-device one-hour query made {fetched} GETs");
    assert_eq!(rows(&db, None, None), expected, "answers changed after reopen");

    // The disk cache: after another reopen (memory cache empty) the same scan makes no GET.
    drop(db);
    let db = Database::open(dir.path(), options(&store)).unwrap();
    let gets = store.gets.load(Ordering::SeqCst);
    assert_eq!(rows(&db, None, None), expected);
    assert_eq!(store.gets.load(Ordering::SeqCst), gets, "the disk cache did not serve the cold chunks");
    assert!(db.stats().tier_disk_cache_hits > 0 && db.stats().tier_disk_cache_bytes > 0);
    // A damaged block is never served: fetched again, the answer unchanged.
    drop(db);
    let mut damaged = 0;
    for e in std::fs::read_dir(dir.path().join("cache")).unwrap() {
        let p = e.unwrap().path();
        let mut b = std::fs::read(&p).unwrap();
        b[0] ^= 0x40;
        std::fs::write(&p, b).unwrap();
        damaged += 1;
    }
    assert!(damaged > 0);
    let mut no_grace = options(&store);
    no_grace.tiering.as_mut().unwrap().gc_grace = Duration::ZERO;
    let db = Database::open(dir.path(), no_grace).unwrap();
    let gets = store.gets.load(Ordering::SeqCst);
    assert_eq!(rows(&db, None, None), expected, "a damaged cache block changed an answer");
    assert!(store.gets.load(Ordering::SeqCst) > gets, "damaged blocks were not fetched again");

    // Retention over everything older than 9 days removes cold objects too.
    let names = objects(&store);
    assert!(!names.iter().any(|n| n.ends_with("m-0-3.parquet")), "{names:?}");
    assert!(names.iter().any(|n| n.ends_with("m-0-99999999.parquet")), "{names:?}");
    let objects_before = store.inner.list(None).count_blocking();
    db.set_retention("db", None, Some(Duration::from_secs(9 * 86_400))).unwrap();
    db.enforce_retention().unwrap();
    let objects_after = store.inner.list(None).count_blocking();
    assert!(objects_after < objects_before, "{objects_before} -> {objects_after}");
    let cut = now() - 9 * DAY;
    expected.retain(|(_, t), _| *t >= cut);
    assert_eq!(rows(&db, None, None), expected);
}

/// Counting the objects of a listing without a runtime of our own.
trait CountBlocking {
    fn count_blocking(self) -> usize;
}

impl CountBlocking for BoxStream<'static, object_store::Result<ObjectMeta>> {
    fn count_blocking(self) -> usize {
        futures::executor::block_on(futures::StreamExt::count(self))
    }
}

#[test]
fn opening_tiered_data_without_its_store_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Counting::default());
    let db = Database::open(dir.path(), options(&store)).unwrap();
    write(&db, "a", [(now() - 30 * DAY, 1.0)]);
    assert_eq!(db.tier(None).unwrap().partitions, 1);
    db.close().unwrap();
    let e = Database::open(dir.path(), Options::default()).unwrap_err().to_string();
    assert!(e.contains("object storage") && e.contains("--object-store"), "{e}");
}

fn objects(store: &Counting) -> Vec<String> {
    let list: Vec<ObjectMeta> =
        futures::executor::block_on(futures::TryStreamExt::try_collect(store.inner.list(None))).unwrap();
    list.into_iter().map(|m| m.location.to_string()).collect()
}

fn put(store: &Counting, name: &str) {
    use object_store::ObjectStoreExt;
    futures::executor::block_on(store.inner.put(&Path::from(name), PutPayload::from_static(b"PAR1 stray"))).unwrap();
}

/// Rows of `device` in every Parquet object of the store, read with the parquet crate.
fn device_rows_in_objects(store: &Counting, device: &str) -> usize {
    use object_store::ObjectStoreExt;
    let mut n = 0;
    for name in objects(store).into_iter().filter(|n| n.ends_with(".parquet")) {
        // A retired object may be deleted (asynchronously) between the listing and the read.
        let Ok(got) = futures::executor::block_on(store.inner.get(&Path::from(name.as_str()))) else { continue };
        let bytes = futures::executor::block_on(got.bytes()).unwrap();
        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap().build().unwrap();
        for b in reader {
            let b = b.unwrap();
            let col = b.column_by_name("device").unwrap().as_string::<i32>();
            n += (0..b.num_rows()).filter(|&r| col.value(r) == device).count();
        }
    }
    n
}
