//! A durable write queue shared by many connections.
//!
//! Connections submit the rows of a message and await the result; one
//! writer thread takes everything queued, writes it with a single WAL
//! append and fsync ([`Database::write_many`]), and answers each
//! submitter. Many small messages thus share one fsync, and an
//! acknowledgement sent after `write` returns is an acknowledgement of
//! durable data.
//!
//! Within such a group, consecutive batches for the same table are joined
//! into one ([`WriteBatch::append`]) when that cannot change what happens to
//! any of their rows, so a thousand one-row messages cost the engine one
//! batch to check, log and apply rather than a thousand. Each submitter
//! still gets the outcome of its own batches ([`WriteOutcome::split`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc;

use telemark_engine::{Database, Error, TableSchema, WriteBatch, WriteOutcome};
use tokio::sync::oneshot;

/// Rows for one database.
pub type DatabaseBatch = (String, WriteBatch);

struct Job {
    writes: Vec<DatabaseBatch>,
    done: oneshot::Sender<Vec<telemark_engine::Result<WriteOutcome>>>,
}

/// The writer thread stopped (the database was closed or its thread died).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the ingest writer has stopped")]
pub struct SinkClosed;

/// Most jobs written in one group.
const MAX_GROUP: usize = 4096;

/// Most bytes ([`WriteBatch::approx_bytes`]) of batches joined into one: a
/// joined batch is one WAL record, kept as small as a large HTTP write's
/// (a group of big MQTT messages could otherwise make gigabytes).
const MAX_JOINED_BYTES: usize = 16 << 20;

/// Handle to the writer thread; cheap to clone.
#[derive(Debug, Clone)]
pub struct Sink {
    tx: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("writes", &self.writes.len()).finish()
    }
}

impl Sink {
    /// Starts the writer thread. It ends when every `Sink` clone is dropped.
    pub fn start(db: Arc<Database>) -> std::io::Result<Sink> {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new().name("telemark-ingest-writer".into()).spawn(move || run(&db, &rx))?;
        Ok(Sink { tx })
    }

    /// Writes the batches; returns one result per batch once they are durable.
    ///
    /// The result is what [`Database::write`] would give for each batch in
    /// turn, though the batches may be written together with other
    /// submitters' batches.
    pub async fn write(
        &self,
        writes: Vec<DatabaseBatch>,
    ) -> Result<Vec<telemark_engine::Result<WriteOutcome>>, SinkClosed> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let (done, wait) = oneshot::channel();
        self.tx.send(Job { writes, done }).map_err(|_| SinkClosed)?;
        wait.await.map_err(|_| SinkClosed)
    }
}

fn run(db: &Database, rx: &mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let pairs: Vec<(&str, &WriteBatch)> =
            jobs.iter().flat_map(|j| j.writes.iter().map(|(d, b)| (d.as_str(), b))).collect();
        let mut results = write_coalesced(db, &pairs, MAX_JOINED_BYTES).into_iter();
        for job in jobs {
            let mine: Vec<_> = results.by_ref().take(job.writes.len()).collect();
            // The submitter may have gone (connection closed); its rows are written anyway.
            let _ = job.done.send(mine);
        }
    }
}

/// Batches written as one: a batch alone, or several for one table joined in order.
struct Unit<'a> {
    database: &'a str,
    first: &'a WriteBatch,
    /// Position in the group and batch of each part, in order.
    parts: Vec<(usize, &'a WriteBatch)>,
    /// The parts appended together, once there are two.
    joined: Option<WriteBatch>,
    /// [`WriteBatch::approx_bytes`] of the parts.
    bytes: usize,
}

impl<'a> Unit<'a> {
    fn new(database: &'a str, at: usize, batch: &'a WriteBatch, bytes: usize) -> Self {
        Unit { database, first: batch, parts: vec![(at, batch)], joined: None, bytes }
    }

    fn push(&mut self, at: usize, batch: &'a WriteBatch, bytes: usize) {
        let first = self.first;
        self.joined.get_or_insert_with(|| first.clone()).append(batch);
        self.parts.push((at, batch));
        self.bytes += bytes;
    }

    fn batch(&self) -> &WriteBatch {
        self.joined.as_ref().unwrap_or(self.first)
    }
}

/// True if writing `batch` into a table with `schema` neither adds a column
/// nor can reject a row for reasons that depend on other batches: the table
/// has every column of the batch, and at most one of them with another kind
/// (a row rejected for it is rejected alike, with the same message,
/// whatever the batch is written with). Such batches fare the same written
/// together or one by one, since a table never loses a column nor changes
/// its kind.
///
/// A batch that adds a column is written on its own: a new column takes the
/// first kind in its batch and appears only if a written row holds it, both
/// of which joining could change.
fn fits(batch: &WriteBatch, schema: Option<&TableSchema>) -> bool {
    let Some(schema) = schema else { return false };
    let mut other_kinds = 0;
    for (name, kind) in batch.column_kinds() {
        match schema.id_of(name).and_then(|id| schema.column(id)) {
            None => return false,
            Some(c) if c.kind != kind => other_kinds += 1,
            Some(_) => {}
        }
    }
    other_kinds <= 1
}

/// What the writer knows of a table while it groups batches.
struct Table<'a> {
    /// The schema when the group started: a batch that fits it fits the
    /// table still, as columns are only ever added.
    schema: Option<TableSchema>,
    /// The last batch that fit. Devices send the same columns message after
    /// message: one like it fits without looking each column up.
    fitted: Option<&'a WriteBatch>,
}

impl<'a> Table<'a> {
    fn fits(&mut self, batch: &'a WriteBatch) -> bool {
        if self.fitted.is_some_and(|f| f.column_kinds().eq(batch.column_kinds())) {
            return true;
        }
        let fits = fits(batch, self.schema.as_ref());
        if fits {
            self.fitted = Some(batch);
        }
        fits
    }
}

/// Writes `writes` like [`Database::write_many`], one result per batch, but
/// first joins batches as [`plan`] says.
fn write_coalesced(
    db: &Database,
    writes: &[(&str, &WriteBatch)],
    max_joined_bytes: usize,
) -> Vec<telemark_engine::Result<WriteOutcome>> {
    let units = plan(db, writes, max_joined_bytes);
    let pairs = units.iter().map(|u| (u.database, u.batch()));
    let mut results: Vec<Option<telemark_engine::Result<WriteOutcome>>> = writes.iter().map(|_| None).collect();
    for (unit, result) in units.iter().zip(db.write_many(pairs)) {
        let mut put = |at: usize, r| {
            if let Some(slot) = results.get_mut(at) {
                *slot = Some(r);
            }
        };
        match (unit.parts.as_slice(), result) {
            ([(at, _)], r) => put(*at, r),
            (parts, Ok(outcome)) => {
                for ((at, _), o) in parts.iter().zip(outcome.split(parts.iter().map(|(_, b)| *b))) {
                    put(*at, Ok(o));
                }
            }
            (parts, Err(e)) => parts.iter().for_each(|(at, _)| put(*at, Err(copy_error(&e)))),
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(Error::Internal("the ingest writer lost the result of a batch".into()))))
        .collect()
}

/// The batches to write, in an order that keeps the order within each
/// table: consecutive batches of a table (among that table's) that [`fits`]
/// it are joined, up to `max_joined_bytes` a joined batch. Batches for
/// different tables are independent, and a batch written on its own ends the
/// run of its table.
fn plan<'a>(db: &Database, writes: &[(&'a str, &'a WriteBatch)], max_joined_bytes: usize) -> Vec<Unit<'a>> {
    let mut tables: HashMap<(&str, &str), Table<'_>> = HashMap::new();
    // The unit of each table that takes further batches.
    let mut open: HashMap<(&str, &str), usize> = HashMap::new();
    let mut units: Vec<Unit<'_>> = Vec::new();
    for (at, &(database, batch)) in writes.iter().enumerate() {
        let key = (database, batch.table());
        let table = tables
            .entry(key)
            .or_insert_with(|| Table { schema: db.table_schema(database, batch.table()), fitted: None });
        if !table.fits(batch) {
            open.remove(&key);
            units.push(Unit::new(database, at, batch, 0));
            continue;
        }
        let bytes = batch.approx_bytes();
        match open.get(&key).and_then(|&u| units.get_mut(u)) {
            Some(unit) if unit.bytes + bytes <= max_joined_bytes => unit.push(at, batch, bytes),
            _ => {
                open.insert(key, units.len());
                units.push(Unit::new(database, at, batch, bytes));
            }
        }
    }
    units
}

/// The same error for another submitter of a joined batch (`Error` is not
/// `Clone`, as it can hold an `io::Error`).
fn copy_error(e: &Error) -> Error {
    match e {
        Error::InvalidName { what, name, reason } => {
            Error::InvalidName { what, name: name.clone(), reason: reason.clone() }
        }
        Error::NotFound { what, name, hint } => Error::NotFound { what, name: name.clone(), hint: hint.clone() },
        Error::InvalidInput(m) => Error::InvalidInput(m.clone()),
        Error::Corruption { file, offset, detail, hint } => {
            Error::Corruption { file: file.clone(), offset: *offset, detail: detail.clone(), hint: hint.clone() }
        }
        Error::UnsupportedVersion { file, format, found, supported } => {
            Error::UnsupportedVersion { file: file.clone(), format, found: *found, supported: *supported }
        }
        Error::Io { path, source } => {
            Error::Io { path: path.clone(), source: std::io::Error::new(source.kind(), source.to_string()) }
        }
        Error::Poisoned(m) => Error::Poisoned(m.clone()),
        Error::Closed => Error::Closed,
        Error::ResourceLimit(m) => Error::ResourceLimit(m.clone()),
        Error::Internal(m) => Error::Internal(m.clone()),
        other => Error::Internal(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};
    use telemark_engine::fs::{DurableFile, FileBackend, StdBackend};
    use telemark_engine::{Durability, Options, ScanRequest};

    fn open(dir: &tempfile::TempDir) -> Arc<Database> {
        let options = Options { durability: Durability::Buffered, background_flush: false, ..Options::default() };
        Arc::new(Database::open(dir.path(), options).unwrap())
    }

    /// Message `i` of a small fleet whose devices are named after `fleet`:
    /// one row of `readings` or `diagnostics` mostly, some sent twice with
    /// new values, a new column from message 60 on, and at fixed places the
    /// cases that joining batches must not change.
    fn message(fleet: &str, i: usize) -> DatabaseBatch {
        let device_of = |at: usize| format!("{fleet}-{}", at % 5);
        let time_of = |at: usize| i64::try_from(at).unwrap() * 1_000;
        let (device, time, x) = (device_of(i), time_of(i), i as f64);
        let mut b = WriteBatch::new("readings");
        let mut database = "fleet";
        match i {
            // A field of another kind than the table's: the row is rejected.
            20 => drop(b.row(time).tag("device", device).field("speed", "fast").field("heading", 1.0)),
            // Row 1 of 2 is rejected.
            21 => {
                b.row(time).tag("device", device.as_str()).field("speed", x);
                b.row(time + 1).tag("device", device).field("speed", 5i64);
            }
            // Two faults in one row: reported for the first of its columns.
            22 => drop(b.row(time).tag("device", device).field("heading", true).field("speed", "fast")),
            23 => drop(b.row(time).tag("device", device).tag("speed", "tagged").field("heading", x)),
            30 => drop(b.row(time).tag("device", device).field("speed", x)),
            31 => {
                database = "other";
                b.row(time).tag("device", device).field("speed", x);
            }
            40 => {} // no rows
            // One series and time three times; the one in the middle adds a column.
            50..=52 => {
                let row = b.row(time_of(50)).tag("device", device_of(50)).field("speed", x);
                if i == 51 {
                    row.field("note", "late");
                }
            }
            41 => drop(b.row(time).tag("device", device)),
            // New columns: `mode` a string, then given a bool; `gear` an
            // integer and a string in one message.
            70 => drop(b.row(time).tag("device", device).field("speed", x).field("mode", "eco")),
            71 => drop(b.row(time).tag("device", device).field("mode", true).field("speed", x)),
            72 => {
                b.row(time).tag("device", device.as_str()).field("gear", 3i64);
                b.row(time + 1).tag("device", device).field("gear", "third");
            }
            _ => {
                // Every seventh message repeats the series and time of the one before.
                let at = if i % 7 == 6 { i - 1 } else { i };
                if at % 4 == 3 {
                    b.set_table("diagnostics");
                    b.row(time_of(at)).tag("device", device_of(at)).field("load", i64::try_from(i).unwrap());
                } else {
                    let mut row = b.row(time_of(at)).tag("device", device_of(at)).field("speed", x);
                    if !i.is_multiple_of(6) {
                        row = row.field("heading", x * 2.0);
                    }
                    if i >= 60 {
                        row.field("fuel", 100.0 - x);
                    }
                }
            }
        }
        if i == 30 {
            b.set_table("bad\ttable");
        }
        (database.to_string(), b)
    }

    type Shown = Result<WriteOutcome, String>;

    fn show(r: telemark_engine::Result<WriteOutcome>) -> Shown {
        r.map_err(|e| format!("{e:?}"))
    }

    fn one_by_one(db: &Database, writes: &[DatabaseBatch]) -> Vec<Shown> {
        writes.iter().map(|(d, b)| show(db.write(d, b))).collect()
    }

    fn scan(db: &Database, database: &str, table: &str) -> impl std::fmt::Debug + PartialEq {
        db.scan(&ScanRequest::new(database, table)).unwrap().collect::<telemark_engine::Result<Vec<_>>>().unwrap()
    }

    fn assert_same_tables(db: &Database, expected: &Database) {
        for database in ["fleet", "other"] {
            assert_eq!(db.tables(database), expected.tables(database));
            for table in expected.tables(database) {
                assert_eq!(db.table_schema(database, &table), expected.table_schema(database, &table));
                assert_eq!(scan(db, database, &table), scan(expected, database, &table), "{database}.{table}");
            }
        }
    }

    /// Writes the messages one by one and through [`write_coalesced`] in
    /// groups; checks every outcome and table are the same, before and after
    /// reopening. Returns the WAL records each way.
    fn coalesced_fares_as_one_by_one(max_joined_bytes: usize) -> (usize, usize) {
        let messages: Vec<DatabaseBatch> = (0..200).map(|i| message("d", i)).collect();
        let expected_dir = tempfile::tempdir().unwrap();
        let expected_db = open(&expected_dir);
        let expected = one_by_one(&expected_db, &messages);
        // The cases are what they claim to be.
        let rejected_rows = |i: usize| expected[i].as_ref().unwrap().rejected.iter().map(|e| e.row).collect::<Vec<_>>();
        assert_eq!(rejected_rows(20), vec![0]);
        assert_eq!(rejected_rows(21), vec![1]);
        assert_eq!(expected[22].as_ref().unwrap().rejected[0].column.as_deref(), Some("heading"));
        assert_eq!(rejected_rows(71), vec![0]);
        assert_eq!(rejected_rows(72), vec![1]);
        assert!(expected[30].is_err());

        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir);
        let mut got = Vec::new();
        // In groups, as the writer thread takes them. Nothing is joined
        // before the tables exist: the first group makes them.
        let (first, rest) = messages.split_at(10);
        for chunk in std::iter::once(first).chain(rest.chunks(25)) {
            let pairs: Vec<(&str, &WriteBatch)> = chunk.iter().map(|(d, b)| (d.as_str(), b)).collect();
            got.extend(write_coalesced(&db, &pairs, max_joined_bytes).into_iter().map(show));
        }
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(g, e, "message {i}: {:?}", messages[i]);
        }
        assert_eq!(got.len(), expected.len());
        assert_same_tables(&db, &expected_db);

        drop((db, expected_db));
        let (db, report) = Database::open_with_report(dir.path(), Options::default()).unwrap();
        let (expected_db, expected_report) =
            Database::open_with_report(expected_dir.path(), Options::default()).unwrap();
        assert_same_tables(&db, &expected_db);
        (report.wal_records_replayed, expected_report.wal_records_replayed)
    }

    #[test]
    fn joined_batches_fare_as_if_written_one_by_one() {
        let (joined, one_by_one) = coalesced_fares_as_one_by_one(MAX_JOINED_BYTES);
        assert!(joined * 3 < one_by_one, "{joined} WAL records joined, {one_by_one} one by one");
    }

    #[test]
    fn joined_batches_stay_under_the_byte_limit() {
        let limit = 3 * message("d", 100).1.approx_bytes();
        let (joined, one_by_one) = coalesced_fares_as_one_by_one(limit);
        assert!(joined < one_by_one, "{joined} WAL records joined, {one_by_one} one by one");
        assert_eq!(coalesced_fares_as_one_by_one(0), (one_by_one, one_by_one));

        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir);
        let messages: Vec<DatabaseBatch> = (0..200).map(|i| message("d", i)).collect();
        let pairs: Vec<(&str, &WriteBatch)> = messages.iter().map(|(d, b)| (d.as_str(), b)).collect();
        let (seed, rest) = pairs.split_at(10);
        let _ = write_coalesced(&db, seed, 0);
        let units = plan(&db, rest, limit);
        assert!(units.iter().any(|u| u.parts.len() > 1));
        for u in units.iter().filter(|u| u.parts.len() > 1) {
            assert!(u.bytes <= limit, "{} of {limit}", u.bytes);
        }
    }

    /// Jobs of one or two batches, submitted in order without waiting, so the
    /// writer thread groups them as they come.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_submitter_gets_the_outcome_of_its_own_batches() {
        let messages: Vec<DatabaseBatch> = (0..300).map(|i| message("d", i % 200 + i / 200 * 1000)).collect();
        let expected_dir = tempfile::tempdir().unwrap();
        let expected_db = open(&expected_dir);
        let expected = one_by_one(&expected_db, &messages);

        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir);
        let sink = Sink::start(db.clone()).unwrap();
        let mut jobs: Vec<Vec<DatabaseBatch>> = Vec::new();
        let mut rest = messages.iter().cloned().enumerate().peekable();
        while let Some((i, m)) = rest.next() {
            let mut job = vec![m];
            if i % 3 == 0
                && let Some((_, next)) = rest.next()
            {
                job.push(next);
            }
            jobs.push(job);
        }
        let results = futures::future::join_all(jobs.into_iter().map(|job| sink.write(job))).await;
        let got: Vec<Shown> = results.into_iter().flat_map(|r| r.unwrap()).map(show).collect();
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(g, e, "message {i}: {:?}", messages[i]);
        }
        assert_eq!(got.len(), expected.len());
        assert_same_tables(&db, &expected_db);
    }

    /// Connections write concurrently, each its own devices, message by
    /// message; the tables already have every column, so no outcome depends
    /// on how their messages interleave.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_connections_get_their_own_outcomes() {
        let seed: Vec<DatabaseBatch> = (0..100).map(|i| message("seed", i)).collect();
        let connections: Vec<Vec<DatabaseBatch>> =
            (0..8).map(|c| (0..200).map(|i| message(&format!("c{c}"), i)).collect()).collect();
        let expected_dir = tempfile::tempdir().unwrap();
        let expected_db = open(&expected_dir);
        let _ = one_by_one(&expected_db, &seed);
        let expected: Vec<Vec<Shown>> = connections.iter().map(|m| one_by_one(&expected_db, m)).collect();

        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir);
        let _ = one_by_one(&db, &seed);
        let sink = Sink::start(db.clone()).unwrap();
        let tasks: Vec<_> = connections
            .into_iter()
            .map(|messages| {
                let sink = sink.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    for m in messages {
                        got.extend(sink.write(vec![m]).await.unwrap().into_iter().map(show));
                    }
                    got
                })
            })
            .collect();
        for (c, (task, expected)) in tasks.into_iter().zip(expected).enumerate() {
            assert_eq!(task.await.unwrap(), expected, "connection {c}");
        }
        assert_same_tables(&db, &expected_db);
    }

    /// The real file system, but file syncs fail once `fail` is set.
    #[derive(Debug)]
    struct FailingSync {
        fail: Arc<AtomicBool>,
    }

    #[derive(Debug)]
    struct FailingSyncFile {
        inner: Box<dyn DurableFile>,
        fail: Arc<AtomicBool>,
    }

    impl std::io::Write for FailingSyncFile {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.inner.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.inner.flush()
        }
    }

    impl DurableFile for FailingSyncFile {
        fn sync_data(&mut self) -> std::io::Result<()> {
            if self.fail.load(Ordering::SeqCst) {
                return Err(std::io::Error::other("injected fsync failure"));
            }
            self.inner.sync_data()
        }
    }

    impl FileBackend for FailingSync {
        fn create_new(&self, path: &Path) -> std::io::Result<Box<dyn DurableFile>> {
            Ok(Box::new(FailingSyncFile { inner: StdBackend.create_new(path)?, fail: self.fail.clone() }))
        }
        fn open_append(&self, path: &Path) -> std::io::Result<Box<dyn DurableFile>> {
            Ok(Box::new(FailingSyncFile { inner: StdBackend.open_append(path)?, fail: self.fail.clone() }))
        }
        fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
            StdBackend.sync_dir(dir)
        }
        fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
            StdBackend.rename(from, to)
        }
        fn truncate(&self, path: &Path, len: u64) -> std::io::Result<()> {
            StdBackend.truncate(path, len)
        }
    }

    #[test]
    fn a_joined_batch_that_fails_fails_for_every_submitter() {
        let dir = tempfile::tempdir().unwrap();
        let fail = Arc::new(AtomicBool::new(false));
        let backend = Arc::new(FailingSync { fail: fail.clone() });
        let db =
            Database::open(dir.path(), Options { backend, background_flush: false, ..Options::default() }).unwrap();
        let messages: Vec<DatabaseBatch> = (0..30).map(|i| message("d", i)).collect();
        let pairs: Vec<(&str, &WriteBatch)> = messages.iter().map(|(d, b)| (d.as_str(), b)).collect();
        let (seed, rest) = pairs.split_at(10);
        assert!(write_coalesced(&db, seed, MAX_JOINED_BYTES).iter().all(Result::is_ok));

        fail.store(true, Ordering::SeqCst);
        // The WAL fsync fails: no batch is acknowledged, whether joined or not.
        let results = write_coalesced(&db, rest, MAX_JOINED_BYTES);
        assert_eq!(results.len(), rest.len());
        for (i, r) in (10..).zip(&results) {
            match r {
                Err(Error::Poisoned(m)) => assert!(m.contains("injected fsync failure"), "{m}"),
                // Refused before reaching the WAL: a bad table name, no row to write.
                Err(Error::InvalidName { .. }) => assert_eq!(i, 30),
                Ok(o) => assert!(o.rows_written == 0 && [20, 22, 23, 40].contains(&i), "message {i}: {o:?}"),
                Err(e) => panic!("message {i}: {e:?}"),
            }
        }
        // And from then on, the database refuses every batch.
        assert!(write_coalesced(&db, seed, MAX_JOINED_BYTES).iter().all(|r| matches!(r, Err(Error::Poisoned(_)))));
    }
}
