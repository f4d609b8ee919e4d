//! The embeddable database handle.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::batch::{BatchColumn, Column, RowError, WriteBatch, WriteOutcome};
use crate::buffer::WriteBuffer;
use crate::delete::{DeleteOutcome, DeleteRequest, Tombstone};
use crate::fs::Backend;
use crate::manifest::{Manifest, SegmentEntry};
use crate::options::{Durability, Options};
use crate::scan::{ScanPlan, ScanRequest, ScanStream, Source};
use crate::schema::{ColumnKind, TableSchema, validate_database_name, validate_name};
use crate::segment::{SegmentReader, write_segment};
use crate::series::{SeriesData, SeriesKey, merge};
use crate::wal::format::{TableWrite, WalEntry, encode_entry};
use crate::wal::{ReplayMode, TornTail, WalWriter};
use crate::{Error, Result};

const WAL_DIR: &str = "wal";
pub(crate) const SEGMENT_DIR: &str = "segments";
/// Local index files of partitions tiered to object storage.
pub(crate) const COLD_DIR: &str = "cold";

/// A Telemark storage engine over one data directory, which holds any number
/// of named databases, each with tables.
///
/// `Database` is `Send + Sync`: share it (e.g. in an `Arc`) between writer and
/// reader threads. Writes are acknowledged according to
/// [`Options::durability`]; concurrent writers share WAL fsyncs.
#[derive(Debug)]
pub struct Database {
    inner: Arc<Inner>,
    flusher: Mutex<Option<JoinHandle<()>>>,
    compactor: Mutex<Option<JoinHandle<()>>>,
    /// Recomputes rollup buckets (see [`crate::rollup`]), when there are rollups.
    refresher: Mutex<Option<JoinHandle<()>>>,
}

/// What opening a database found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpenReport {
    /// WAL records replayed into the write buffer.
    pub wal_records_replayed: usize,
    /// A torn WAL tail that was cut off (what a crash during a write leaves).
    pub torn_tail: Option<TornTail>,
    /// Segment files loaded.
    pub segments: usize,
}

/// Counters describing the database's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DatabaseStats {
    /// Rows in the write buffer (not yet in segments).
    pub buffered_rows: usize,
    /// Approximate bytes in the write buffer.
    pub buffered_bytes: usize,
    /// The most bytes the write buffer (active and frozen) has held since open.
    pub buffered_bytes_peak: u64,
    /// Segment files.
    pub segments: usize,
    /// Bytes of segment files.
    pub segment_bytes: u64,
    /// Rows in segment files (duplicates across segments counted each time).
    pub segment_rows: u64,
    /// Last WAL sequence number made durable.
    pub durable_seq: u64,
    /// WAL fsyncs since open (each may cover many writes: group commit).
    pub wal_syncs: u64,
    /// Total time spent in WAL fsyncs since open, in nanoseconds.
    pub wal_sync_nanos: u64,
    /// Rows written since open.
    pub rows_written: u64,
    /// Flushes of the write buffer since open.
    pub flushes: u64,
    /// Compaction jobs finished since open.
    pub compactions: u64,
    /// Bytes of segment chunks (series data, not footers) read by compaction since open.
    pub compaction_bytes_read: u64,
    /// Bytes of segment files written by compaction since open.
    pub compaction_bytes_written: u64,
    /// Time spent in compaction jobs since open, in nanoseconds.
    pub compaction_nanos: u64,
    /// Compaction jobs that failed (full disk, I/O error) since open; their inputs stay.
    pub compaction_failures: u64,
    /// Segment files dropped by retention since open.
    pub retention_files_dropped: u64,
    /// Rows refused on write because they were older than retention, since open.
    pub retention_rows_refused: u64,
    /// Deletes logged since open.
    pub deletes: u64,
    /// Deletes not yet purged from every segment file.
    pub deletes_pending: usize,
    /// Times a writer waited for the write buffer to drain (backpressure) since open.
    pub write_stalls: u64,
    /// Time writers spent waiting for the buffer to drain, in nanoseconds.
    pub write_stall_nanos: u64,
    /// Partitions in object storage (cold files).
    pub cold_files: usize,
    /// Bytes of cold files in object storage.
    pub cold_bytes: u64,
    /// Cold files uploaded (and verified) since open.
    pub tier_uploads: u64,
    /// Bytes uploaded since open.
    pub tier_upload_bytes: u64,
    /// Row groups fetched from object storage since open.
    pub tier_fetches: u64,
    /// Decoded bytes of the row groups fetched since open.
    pub tier_fetch_bytes: u64,
    /// Row groups served from the cache since open.
    pub tier_cache_hits: u64,
    /// Unreferenced objects deleted by garbage collection since open.
    pub tier_garbage_objects: u64,
    /// Column chunks fetched from object storage whose checksum did not match, since open.
    pub tier_checksum_failures: u64,
    /// Column chunks served from the local disk cache since open.
    pub tier_disk_cache_hits: u64,
    /// Bytes in the local disk cache of cold data.
    pub tier_disk_cache_bytes: u64,
    /// Partitions whose tiering failed since open (retried on the next run;
    /// single requests are also retried inside each upload, see `[object_store] max_retries`).
    pub tier_failures: u64,
    /// HTTP requests made to an S3 store since open, retries included.
    pub tier_requests: u64,
    /// Of those, requests that failed in a way that is retried (connection
    /// errors, timeouts, HTTP 5xx and 429): the retries made since open.
    pub tier_request_retries: u64,
    /// Series in the last-value cache (see [`Database::last_values`]).
    pub last_value_series: u64,
}

/// Monotonic counters, read by [`Database::stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    wal_syncs: AtomicU64,
    wal_sync_nanos: AtomicU64,
    rows_written: AtomicU64,
    flushes: AtomicU64,
    pub(crate) compactions: AtomicU64,
    pub(crate) compaction_bytes_read: AtomicU64,
    pub(crate) compaction_bytes_written: AtomicU64,
    pub(crate) compaction_nanos: AtomicU64,
    pub(crate) compaction_failures: AtomicU64,
    pub(crate) retention_files_dropped: AtomicU64,
    pub(crate) retention_rows_refused: AtomicU64,
    deletes: AtomicU64,
    write_stalls: AtomicU64,
    write_stall_nanos: AtomicU64,
    buffered_bytes_peak: AtomicU64,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) dir: PathBuf,
    wal_dir: PathBuf,
    pub(crate) segment_dir: PathBuf,
    #[cfg_attr(not(feature = "tiering"), allow(dead_code))]
    pub(crate) cold_dir: PathBuf,
    pub(crate) options: Options,
    pub(crate) backend: Backend,
    /// Table schemas, including columns not yet flushed.
    pub(crate) catalog: RwLock<BTreeMap<String, BTreeMap<String, TableSchema>>>,
    pub(crate) state: RwLock<State>,
    queue: Mutex<CommitQueue>,
    queue_cv: Condvar,
    wal: Mutex<WalWriter>,
    /// The manifest as last stored; held during a flush and while a
    /// compaction or retention drop swaps files. Lock order: manifest, then state.
    pub(crate) manifest: Mutex<Manifest>,
    /// Retention rules (a copy of the manifest's, read on every write and scan).
    pub(crate) retention: RwLock<Vec<crate::retention::RetentionRule>>,
    /// Held by the one compaction job running at a time.
    pub(crate) compaction_lock: Mutex<()>,
    poisoned: RwLock<Option<String>>,
    pub(crate) closed: AtomicBool,
    flush_signal: (Mutex<bool>, Condvar),
    /// Notified after every flush, for writers waiting for room in the buffer.
    room: (Mutex<()>, Condvar),
    /// Wakes the compaction thread early (on close, or when files pile up).
    pub(crate) compact_signal: (Mutex<bool>, Condvar),
    pub(crate) counters: Counters,
    /// The cold tier, when tiering is configured.
    #[cfg(feature = "tiering")]
    pub(crate) tier: Option<Arc<crate::tiering::Tier>>,
    /// An exclusive `flock` on `LOCK`, held while open.
    _dir_lock: std::fs::File,
    /// Told of every committed write; see [`crate::observe`].
    observers: RwLock<Vec<Arc<dyn crate::observe::WriteObserver>>>,
    /// The newest value of every field per series; see [`crate::lastvalue`].
    pub(crate) last_values: crate::lastvalue::LastValues,
    /// Rollup rules and their dirty buckets; see [`crate::rollup`].
    pub(crate) rollups: crate::rollup::Rollups,
}

/// Storage taken by one column of a table in segment files; see [`Database::storage`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ColumnStorage {
    /// Table.
    pub table: String,
    /// Column (`time` for timestamps, `(segment overhead)` for headers and indexes).
    pub column: String,
    /// Column chunks (one per series per segment).
    pub chunks: u64,
    /// Values stored (non-null).
    pub values: u64,
    /// Bytes in the files, chunk headers and checksums included.
    pub bytes: u64,
    /// Chunks per codec name.
    pub codecs: BTreeMap<String, u64>,
}

impl ColumnStorage {
    fn new(table: &str, column: &str) -> Self {
        ColumnStorage { table: table.to_string(), column: column.to_string(), ..Default::default() }
    }
}

#[derive(Debug, Default)]
pub(crate) struct State {
    active: WriteBuffer,
    frozen: Vec<Arc<WriteBuffer>>,
    /// Per table, in precedence order (see [`sort_by_precedence`]).
    pub(crate) segments: HashMap<(String, String), Vec<Arc<SegmentHandle>>>,
    /// Per table, partitions in object storage (older than any segment of theirs).
    #[cfg(feature = "tiering")]
    pub(crate) cold: HashMap<(String, String), Vec<Arc<crate::tiering::ColdHandle>>>,
    /// Deletes that may still have rows in some source, oldest first.
    pub(crate) tombstones: Vec<Tombstone>,
    /// The highest WAL sequence number applied to the buffer: every delete
    /// up to it is in `tombstones` (or already purged).
    pub(crate) applied_seq: u64,
}

#[derive(Debug)]
pub(crate) struct SegmentHandle {
    pub(crate) entry: SegmentEntry,
    pub(crate) reader: Arc<SegmentReader>,
}

/// Orders a table's files so that later writes come later: by the end of
/// their WAL range (ranges of one partition never overlap), then by id.
pub(crate) fn sort_by_precedence(handles: &mut [Arc<SegmentHandle>]) {
    handles.sort_by_key(|h| (h.entry.max_seq, h.entry.id));
}

#[derive(Debug)]
struct CommitQueue {
    next_seq: u64,
    durable_seq: u64,
    pending: Vec<Pending>,
    leader: bool,
}

#[derive(Debug)]
struct Pending {
    seq: u64,
    entry: WalEntry,
    /// About the bytes of its WAL record, measured once by `prepare`.
    bytes: usize,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
pub(crate) fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}
pub(crate) fn write<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Database {
    /// Opens (or creates) the database in `dir`, replaying the WAL.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Self> {
        Self::open_with_report(dir, options).map(|(db, _)| db)
    }

    /// Like [`Database::open`], also telling what recovery did.
    pub fn open_with_report(dir: impl AsRef<Path>, options: Options) -> Result<(Self, OpenReport)> {
        let dir = dir.as_ref().to_path_buf();
        let backend = options.backend.clone();
        crate::fs::create_dir_durable(backend.as_ref(), &dir)?;
        let wal_dir = dir.join(WAL_DIR);
        let segment_dir = dir.join(SEGMENT_DIR);
        crate::fs::create_dir_durable(backend.as_ref(), &wal_dir)?;
        crate::fs::create_dir_durable(backend.as_ref(), &segment_dir)?;
        let cold_dir = dir.join(COLD_DIR);
        crate::fs::create_dir_durable(backend.as_ref(), &cold_dir)?;
        let dir_lock = lock_dir(&dir)?;
        let manifest = Manifest::load(&dir)?;
        #[cfg(feature = "tiering")]
        let tier = match &options.tiering {
            Some(t) => {
                let tier = crate::tiering::Tier::new(t.clone(), dir.join("cache"))?;
                tier.check()?;
                Some(Arc::new(tier))
            }
            None => None,
        };
        let mut report = OpenReport::default();

        let mut catalog: BTreeMap<String, BTreeMap<String, TableSchema>> = BTreeMap::new();
        let mut state = State::default();
        for (db, entry) in &manifest.databases {
            for (table, t) in &entry.tables {
                catalog.entry(db.clone()).or_default().insert(table.clone(), t.schema.clone());
                let mut handles = Vec::with_capacity(t.segments.len());
                for seg in &t.segments {
                    let reader = SegmentReader::open(&segment_dir.join(SegmentEntry::file_name(seg.id)))?;
                    handles.push(Arc::new(SegmentHandle { entry: seg.clone(), reader: Arc::new(reader) }));
                }
                sort_by_precedence(&mut handles);
                report.segments += handles.len();
                state.segments.insert((db.clone(), table.clone()), handles);
                if let Some(first) = t.cold.first() {
                    #[cfg(feature = "tiering")]
                    if tier.is_some() {
                        let mut cold = Vec::with_capacity(t.cold.len());
                        for c in &t.cold {
                            cold.push(Arc::new(crate::tiering::open_cold(&cold_dir, c)?));
                        }
                        state.cold.insert((db.clone(), table.clone()), cold);
                        continue;
                    }
                    return Err(Error::InvalidInput(format!(
                        "{} partition(s) of {db}.{table} are in object storage ({}, ...): open the database \
                         with the object store they were tiered to (telemark serve --object-store URL)",
                        t.cold.len(),
                        first.object
                    )));
                }
            }
        }
        #[cfg(feature = "tiering")]
        {
            if let Some(t) = &tier {
                crate::tiering::abort_interrupted_uploads(t, &cold_dir)?;
            }
            let known = manifest.databases.values().flat_map(|d| d.tables.values()).flat_map(|t| t.cold.iter());
            let known: std::collections::HashSet<u64> = known.map(|c| c.id).collect();
            crate::tiering::remove_orphan_indexes(backend.as_ref(), &cold_dir, &known)?;
        }

        remove_orphan_segments(backend.as_ref(), &segment_dir, &manifest)?;
        let flushed = manifest.flushed_seq;
        state.tombstones = manifest.tombstones.clone();
        state.applied_seq = flushed;
        let last_values = crate::lastvalue::LastValues::new(options.last_value_cache);
        crate::lastvalue::remove_leftovers(&dir);
        let snapshot_seq = last_values.load(&dir, &catalog);
        let cached = snapshot_seq.unwrap_or(0);
        let mut first_replayed: Option<u64> = None;
        let rollups = crate::rollup::Rollups::new(&options.rollups)?;
        rollups.load(&dir)?;
        let replay = crate::wal::replay(&wal_dir, &backend, ReplayMode::Strict, |seq, entry| {
            first_replayed.get_or_insert(seq);
            // Even flushed records: their marks may not have been saved before the crash.
            match &entry {
                WalEntry::Write(w) => rollups.wrote(&w.database, &w.table, &w.times),
                WalEntry::Delete(t) => rollups.deleted(t),
            }
            if seq <= flushed {
                // In segments already; the last-value snapshot may predate it.
                if seq > cached {
                    match &entry {
                        WalEntry::Write(w) => {
                            if let Some(schema) = catalog.get(&w.database).and_then(|t| t.get(&w.table)) {
                                last_values.apply(w, schema);
                            }
                        }
                        WalEntry::Delete(t) => {
                            last_values.delete(t);
                        }
                    }
                }
                return Ok(());
            }
            match entry {
                WalEntry::Write(mut w) => {
                    let schema = resolve_replayed(&mut catalog, &mut w);
                    let mut cache = last_values.writer(&w, schema);
                    state.active.apply(seq, &w, schema, |key, rows| {
                        if seq > cached {
                            cache.series(key, rows);
                        }
                    });
                }
                WalEntry::Delete(t) => {
                    if seq > cached {
                        last_values.delete(&t);
                    }
                    state.apply_delete(seq, t)
                }
            }
            state.applied_seq = seq;
            Ok(())
        })?;
        report.wal_records_replayed = replay.records;
        report.torn_tail = replay.torn_tail.clone();
        let last_seq = replay.max_seq.unwrap_or(0).max(flushed);
        // The snapshot plus the WAL after it must cover every record.
        let cache_complete = cached >= flushed || first_replayed.is_some_and(|f| f <= cached + 1);
        last_values.applied(last_seq);
        if report.wal_records_replayed > 0 || report.torn_tail.is_some() {
            tracing::info!(records = replay.records, torn = ?replay.torn_tail, "WAL replayed");
        }
        let wal = WalWriter::create(&wal_dir, backend.clone(), last_seq + 1).or_else(|e| {
            // A file for this sequence number exists and is empty: an earlier open created it.
            let path = wal_dir.join(crate::wal::file_name(last_seq + 1));
            if path.exists() {
                std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                WalWriter::create(&wal_dir, backend.clone(), last_seq + 1)
            } else {
                Err(e)
            }
        })?;

        let retention = manifest.retention.clone();
        let inner = Arc::new(Inner {
            dir,
            wal_dir,
            segment_dir,
            cold_dir,
            backend,
            retention: RwLock::new(retention),
            compaction_lock: Mutex::new(()),
            room: (Mutex::new(()), Condvar::new()),
            compact_signal: (Mutex::new(false), Condvar::new()),
            catalog: RwLock::new(catalog),
            state: RwLock::new(state),
            queue: Mutex::new(CommitQueue {
                next_seq: last_seq + 1,
                durable_seq: last_seq,
                pending: Vec::new(),
                leader: false,
            }),
            queue_cv: Condvar::new(),
            wal: Mutex::new(wal),
            manifest: Mutex::new(manifest),
            poisoned: RwLock::new(None),
            closed: AtomicBool::new(false),
            flush_signal: (Mutex::new(false), Condvar::new()),
            counters: Counters::default(),
            #[cfg(feature = "tiering")]
            tier,
            _dir_lock: dir_lock,
            observers: RwLock::new(Vec::new()),
            last_values,
            rollups,
            options,
        });
        if inner.last_values.enabled() {
            if !cache_complete {
                inner.last_values.rebuild(&inner)?;
                inner.last_values.save(inner.backend.as_ref(), &inner.dir)?;
            }
            for (db, table) in inner.last_values.stale_tables() {
                inner.last_values.refresh(&inner, &db, &table)?;
            }
        }
        let flusher = spawn(&inner, inner.options.background_flush, "flush", background_flush)?;
        let compactor = spawn(&inner, inner.options.compaction.background, "compact", crate::compaction::background)?;
        #[cfg(feature = "tiering")]
        if let Some(tier) = inner.tier.clone() {
            // Objects of uploads a crash interrupted.
            if let Err(e) = crate::tiering::collect_garbage(&inner, &tier) {
                tracing::warn!(error = %e, "cold-tier garbage collection failed; it is retried on the next tiering run");
            }
        }
        let rollups = inner.options.background_flush && !inner.rollups.is_empty();
        let refresher = spawn(&inner, rollups, "rollup", crate::rollup::background)?;
        let (flusher, compactor, refresher) = (Mutex::new(flusher), Mutex::new(compactor), Mutex::new(refresher));
        Ok((Database { inner, flusher, compactor, refresher }, report))
    }

    /// Truncates the WAL of the database in `dir` at its first damaged record
    /// and deletes the WAL files after it, so the database can open again.
    /// The writes those records held are lost; everything before them is
    /// kept. Run it only after an open failed with a WAL corruption error and
    /// a backup of the directory was taken.
    pub fn repair_wal(dir: impl AsRef<Path>) -> Result<Option<TornTail>> {
        let backend: Backend = Arc::new(crate::fs::StdBackend);
        let report = crate::wal::replay(&dir.as_ref().join(WAL_DIR), &backend, ReplayMode::Repair, |_, _| Ok(()))?;
        Ok(report.torn_tail)
    }

    /// Writes `batch` into table `batch.table()` of `database`, creating the
    /// database, table and columns as needed. Rows that conflict with the
    /// schema are rejected (see [`WriteOutcome::rejected`]); the others are
    /// durable and visible to scans when this returns.
    pub fn write(&self, database: &str, batch: &WriteBatch) -> Result<WriteOutcome> {
        self.inner.write(database, batch)
    }

    /// Writes several batches, each into `database` of its pair, sharing one
    /// WAL write and fsync. Each batch is validated on its own: the result
    /// for a batch is its outcome, or the error that refused it (a bad name,
    /// say) without affecting the others. When this returns, every row
    /// reported as written is durable and visible. A WAL failure fails every
    /// batch that was to be logged.
    pub fn write_many<'a>(
        &self,
        writes: impl IntoIterator<Item = (&'a str, &'a WriteBatch)>,
    ) -> Vec<Result<WriteOutcome>> {
        if let Err(e) = self.inner.check_writable().and_then(|()| self.inner.wait_for_room()) {
            let msg = e.to_string();
            return writes
                .into_iter()
                .map(|_| match &e {
                    Error::Closed => Err(Error::Closed),
                    _ => Err(Error::Poisoned(msg.clone())),
                })
                .collect();
        }
        let mut results = Vec::new();
        let mut logged = Vec::new();
        let mut prepared_all = Vec::new();
        for (database, batch) in writes {
            match self.inner.prepare(database, batch) {
                Ok((Some((w, bytes)), mut outcome)) => {
                    outcome.rows_written = w.times.len();
                    logged.push(results.len());
                    prepared_all.push((WalEntry::Write(w), bytes));
                    results.push(Ok(outcome));
                }
                Ok((None, outcome)) => results.push(Ok(outcome)),
                Err(e) => results.push(Err(e)),
            }
        }
        if prepared_all.is_empty() {
            return results;
        }
        if let Err(e) = self.inner.commit(prepared_all) {
            let msg = match e {
                Error::Poisoned(m) => m,
                other => other.to_string(),
            };
            for i in logged {
                if let Some(r) = results.get_mut(i) {
                    *r = Err(Error::Poisoned(msg.clone()));
                }
            }
            return results;
        }
        self.inner.flush_if_full();
        results
    }

    /// Deletes the rows `request` names from `database`: durable (a WAL
    /// record) when this returns, and hidden from every scan from then on.
    /// Rows written after it are not affected. Compaction later removes the
    /// rows from the segment files; [`Database::deletes`] tells when.
    pub fn delete(&self, database: &str, request: &DeleteRequest) -> Result<DeleteOutcome> {
        self.inner.delete(database, request)
    }

    /// Deletes of `database` (every database if `None`): those whose rows may
    /// still be in some segment file, then the purged ones the manifest
    /// remembers (with the time their rows were gone from every file).
    pub fn deletes(&self, database: Option<&str>) -> (Vec<Tombstone>, Vec<Tombstone>) {
        let keep = |t: &&Tombstone| database.is_none_or(|d| t.database == d);
        let pending = read(&self.inner.state).tombstones.iter().filter(keep).cloned().collect();
        let purged = lock(&self.inner.manifest).purged.iter().filter(keep).cloned().collect();
        (pending, purged)
    }

    /// Sets how long rows of `database` (or of one `table` of it) are kept;
    /// `None` removes the rule. Stored in the manifest (it survives
    /// restarts) and in force at once: older rows are hidden and refused,
    /// and their files are dropped by the next retention pass.
    pub fn set_retention(&self, database: &str, table: Option<&str>, keep: Option<Duration>) -> Result<()> {
        validate_database_name(database)?;
        if let Some(t) = table {
            validate_name("table", t)?;
        }
        let keep_secs = match keep {
            Some(k) if k.as_secs() == 0 => {
                return Err(Error::InvalidInput("retention must keep rows for at least one second".into()));
            }
            Some(k) => Some(k.as_secs()),
            None => None,
        };
        let mut manifest = lock(&self.inner.manifest);
        let mut rules = manifest.retention.clone();
        rules.retain(|r| !(r.database == database && r.table.as_deref() == table));
        if let Some(keep_secs) = keep_secs {
            rules.push(crate::retention::RetentionRule {
                database: database.to_string(),
                table: table.map(str::to_string),
                keep_secs,
            });
        }
        rules.sort_by(|a, b| (&a.database, &a.table).cmp(&(&b.database, &b.table)));
        let mut next = manifest.clone();
        next.retention = rules.clone();
        next.store(self.inner.backend.as_ref(), &self.inner.dir)?;
        *manifest = next;
        *write(&self.inner.retention) = rules;
        drop(manifest);
        self.inner.signal_compaction();
        Ok(())
    }

    /// The retention rules.
    pub fn retention(&self) -> Vec<crate::retention::RetentionRule> {
        read(&self.inner.retention).clone()
    }

    /// The newest value of every field of each series of `table`, one row
    /// per series: `time` (the newest of the fields' times), then the
    /// table's columns (or those `projection` names, in its order), each
    /// field holding its newest non-null value, whatever row it came in.
    /// Only series matching every tag filter, and values inside retention.
    ///
    /// This reads the in-memory last-value cache ([`crate::lastvalue`]): it
    /// costs the same for a device silent for a year as for one that wrote a
    /// second ago, and a filter on a tag is an index lookup.
    pub fn last_values(
        &self,
        database: &str,
        table: &str,
        filters: &[crate::TagFilter],
        projection: Option<&[String]>,
    ) -> Result<arrow_array::RecordBatch> {
        if !self.inner.last_values.enabled() {
            return Err(Error::InvalidInput("the last-value cache is off (Options::last_value_cache = false)".into()));
        }
        self.read_last_values(database, table, filters, &[], projection, false)
    }

    /// The last-value cache of `table`: one row per series, or with `cells`
    /// one row per cached value (what an aggregate of `last(x, time)` grouped
    /// by tags reads in place of the table's rows; see [`crate::lastvalue`]).
    pub(crate) fn read_last_values(
        &self,
        database: &str,
        table: &str,
        filters: &[crate::TagFilter],
        required: &[String],
        projection: Option<&[String]>,
        cells: bool,
    ) -> Result<arrow_array::RecordBatch> {
        let schema = self.table_schema(database, table).ok_or_else(|| Error::NotFound {
            what: "table",
            name: format!("{database}.{table}"),
            hint: String::new(),
        })?;
        let cutoff =
            crate::retention::cutoff(&read(&self.inner.retention), database, table, crate::delete::now_nanos());
        self.inner.last_values.read(database, table, &schema, filters, required, projection, cutoff, cells)
    }

    /// True if the last-value cache is on and holds every series exactly
    /// (no series waits for a rescan after a delete).
    #[cfg(feature = "sql")]
    pub(crate) fn last_values_exact(&self) -> bool {
        self.inner.last_values.exact()
    }

    /// About the bytes the last-value cache holds (walks every series: for
    /// metrics, not for a tight loop).
    pub fn last_value_bytes(&self) -> u64 {
        self.inner.last_values.bytes() as u64
    }

    /// Drops every segment file whose rows have all expired, now; returns
    /// how many. The compaction thread does this on its own every
    /// [`crate::CompactionOptions::interval`].
    pub fn enforce_retention(&self) -> Result<usize> {
        self.inner.enforce_retention()
    }

    /// Runs compaction now: flushes the write buffer, then merges each time
    /// partition's files (up to the per-job caps) and rewrites every file a
    /// delete still applies to, until nothing is left to do.
    pub fn compact(&self) -> Result<crate::compaction::CompactionReport> {
        self.compact_in(None)
    }

    fn compact_in(&self, database: Option<&str>) -> Result<crate::compaction::CompactionReport> {
        self.inner.check_writable()?;
        self.inner.flush()?;
        self.inner.enforce_retention()?;
        #[allow(unused_mut)]
        let mut report = crate::compaction::run(&self.inner, crate::compaction::Mode::Full, database)?;
        // Deleted rows leave object storage too.
        #[cfg(feature = "tiering")]
        if let Some(tier) = self.inner.tier.clone() {
            report.cold_files_purged = crate::tiering::purge(&self.inner, &tier, database)?;
        }
        Ok(report)
    }

    /// Moves every partition older than the tiering threshold (of
    /// `database`, or of all databases) to object storage now, and answers
    /// when done. Errors if tiering is not configured.
    #[cfg(feature = "tiering")]
    pub fn tier(&self, database: Option<&str>) -> Result<crate::tiering::TierReport> {
        self.inner.check_writable()?;
        let tier = self.inner.tier.clone().ok_or_else(|| {
            Error::InvalidInput("tiering is not configured: start with an object store (--object-store URL)".into())
        })?;
        self.inner.flush()?;
        let purged = crate::tiering::purge(&self.inner, &tier, database)?;
        let garbage = crate::tiering::collect_garbage(&self.inner, &tier)?;
        let mut report = crate::tiering::run(&self.inner, &tier, database)?;
        report.cold_files_purged = purged;
        report.garbage_objects = garbage;
        Ok(report)
    }

    /// Backs up a consistent snapshot of every database to `to` (see
    /// [`crate::backup`]): incremental, written last, restorable with
    /// [`crate::backup::restore`]. Writes go on meanwhile.
    #[cfg(feature = "tiering")]
    pub fn backup(
        &self,
        to: &crate::tiering::TierStore,
        progress: &mut dyn FnMut(&crate::backup::Progress),
    ) -> Result<crate::backup::BackupReport> {
        self.inner.check_writable()?;
        crate::backup::backup(&self.inner, to, progress)
    }

    /// Like [`Database::compact`], for the files of one database only.
    pub fn compact_database(&self, database: &str) -> Result<crate::compaction::CompactionReport> {
        self.compact_in(Some(database))
    }

    /// Segment files per table and time partition.
    pub fn partitions(&self, database: Option<&str>) -> Vec<crate::compaction::PartitionFiles> {
        crate::compaction::partitions(&self.inner, database)
    }

    /// Reads every chunk of every segment file the manifest lists, checking
    /// every checksum, and lists files in the segment directory the manifest
    /// does not know. The first damage found is the error.
    pub fn verify(&self) -> Result<VerifyReport> {
        let _compaction = lock(&self.inner.compaction_lock);
        let handles: Vec<Arc<SegmentHandle>> = read(&self.inner.state).segments.values().flatten().cloned().collect();
        let mut report = VerifyReport::default();
        let mut known = std::collections::HashSet::new();
        for h in &handles {
            report.rows += h.reader.verify()?;
            report.files += 1;
            known.insert(SegmentEntry::file_name(h.entry.id));
        }
        let dir = &self.inner.segment_dir;
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let name = entry.map_err(|e| Error::io(dir, e))?.file_name().to_string_lossy().to_string();
            if !known.contains(&name) {
                report.unreferenced.push(name);
            }
        }
        Ok(report)
    }

    /// Starts a scan. The returned stream sees the data as of this call.
    pub fn scan(&self, request: &ScanRequest) -> Result<ScanStream> {
        self.inner.scan(request)
    }

    /// Recomputes the rollup buckets that writes and deletes made dirty (the
    /// background flush thread does this about once a second); see [`crate::rollup`].
    pub fn refresh_rollups(&self) -> Result<crate::rollup::RollupReport> {
        self.inner.refresh_rollups(None)
    }

    /// Recomputes the dirty buckets of `rule` in `[start, end)`, before a query reads them.
    pub(crate) fn refresh_rollup_range(&self, rule: &crate::rollup::RollupRule, start: i64, end: i64) -> Result<()> {
        let rollups = &self.inner.rollups;
        match rollups.by_target(&rule.database, &rule.target) {
            Some(r) if rollups.dirty_in(r, start, end) => self.inner.refresh_rollup(r, Some((start, end))).map(|_| ()),
            _ => Ok(()),
        }
    }

    /// The rollup rule whose source is `database.table`, if any.
    pub(crate) fn rollup_of(&self, database: &str, table: &str) -> Option<crate::rollup::RollupRule> {
        let rules = self.inner.rollups.all();
        rules.iter().find(|r| r.rule.database == database && r.rule.table == table).map(|r| r.rule.clone())
    }

    /// The rollup rules.
    pub fn rollups(&self) -> Vec<crate::rollup::RollupRule> {
        self.inner.rollups.all().iter().map(|r| r.rule.clone()).collect()
    }

    /// Moves everything in the write buffer into segment files and trims the WAL.
    pub fn flush(&self) -> Result<()> {
        self.inner.flush()
    }

    /// Flushes, stops the background thread and closes the database.
    pub fn close(self) -> Result<()> {
        let result = if self.inner.poisoned().is_none() { self.inner.flush() } else { Ok(()) };
        self.stop();
        result
    }

    fn stop(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.signal_flush();
        self.inner.signal_compaction();
        if let Some(h) = lock(&self.flusher).take() {
            let _ = h.join();
        }
        if let Some(h) = lock(&self.compactor).take() {
            let _ = h.join();
        }
        self.inner.rollups.wake();
        if let Some(h) = lock(&self.refresher).take() {
            let _ = h.join();
        }
    }

    /// Names of the databases.
    pub fn databases(&self) -> Vec<String> {
        read(&self.inner.catalog).keys().cloned().collect()
    }

    /// Names of the tables of a database.
    pub fn tables(&self, database: &str) -> Vec<String> {
        read(&self.inner.catalog).get(database).map(|t| t.keys().cloned().collect()).unwrap_or_default()
    }

    /// The schema of a table.
    pub fn table_schema(&self, database: &str, table: &str) -> Option<TableSchema> {
        self.inner.table_schema(database, table)
    }

    /// Bytes each column of each table of `database` takes in segment files
    /// (the write buffer and WAL are not counted: flush first for a full
    /// picture). Each table also gets a `(segment overhead)` row for file
    /// headers, footers and indexes.
    pub fn storage(&self, database: &str) -> Vec<ColumnStorage> {
        let state = read(&self.inner.state);
        let mut by: BTreeMap<(String, String), ColumnStorage> = BTreeMap::new();
        for ((db, table), handles) in &state.segments {
            if db != database {
                continue;
            }
            for h in handles {
                let footer = h.reader.footer();
                let mut chunk_bytes = 0u64;
                for (column, len, codec, values, zstd) in h.reader.chunk_sizes() {
                    let name = match column {
                        None => crate::schema::TIME_COLUMN.to_string(),
                        Some(c) => footer.columns.get(c as usize).map_or_else(|| format!("#{c}"), |(n, _)| n.clone()),
                    };
                    let e = by.entry((table.clone(), name.clone())).or_insert_with(|| ColumnStorage::new(table, &name));
                    e.chunks += 1;
                    e.values += u64::from(values);
                    e.bytes += u64::from(len);
                    let codec_name = crate::codec::CodecId::try_from(codec).map_or("unknown", |c| c.name());
                    let codec_name = if zstd { format!("{codec_name}+zstd") } else { codec_name.to_string() };
                    *e.codecs.entry(codec_name).or_default() += 1;
                    chunk_bytes += u64::from(len);
                }
                let overhead = "(segment overhead)".to_string();
                let e =
                    by.entry((table.clone(), overhead.clone())).or_insert_with(|| ColumnStorage::new(table, &overhead));
                e.bytes += h.reader.file_len().saturating_sub(chunk_bytes);
            }
        }
        by.into_values().collect()
    }

    /// The kind of one column, without copying the table's schema.
    pub fn column_kind(&self, database: &str, table: &str, column: &str) -> Option<ColumnKind> {
        let cat = read(&self.inner.catalog);
        let schema = cat.get(database)?.get(table)?;
        schema.id_of(column).and_then(|id| schema.column(id)).map(|c| c.kind)
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Current counters.
    pub fn stats(&self) -> DatabaseStats {
        // The commit queue before the state, never while holding it: a flush's
        // freeze holds the queue and waits for the state (lock order queue, state).
        let durable_seq = lock(&self.inner.queue).durable_seq;
        let state = read(&self.inner.state);
        let mut s = DatabaseStats {
            buffered_rows: state.active.rows + state.frozen.iter().map(|f| f.rows).sum::<usize>(),
            buffered_bytes: state.active.bytes + state.frozen.iter().map(|f| f.bytes).sum::<usize>(),
            ..Default::default()
        };
        for h in state.segments.values().flatten() {
            s.segments += 1;
            s.segment_bytes += h.entry.bytes;
            s.segment_rows += h.entry.rows;
        }
        s.deletes_pending = state.tombstones.len();
        drop(state);
        s.durable_seq = durable_seq;
        let c = &self.inner.counters;
        s.wal_syncs = c.wal_syncs.load(Ordering::Relaxed);
        s.wal_sync_nanos = c.wal_sync_nanos.load(Ordering::Relaxed);
        s.rows_written = c.rows_written.load(Ordering::Relaxed);
        s.flushes = c.flushes.load(Ordering::Relaxed);
        s.compactions = c.compactions.load(Ordering::Relaxed);
        s.compaction_bytes_read = c.compaction_bytes_read.load(Ordering::Relaxed);
        s.compaction_bytes_written = c.compaction_bytes_written.load(Ordering::Relaxed);
        s.compaction_nanos = c.compaction_nanos.load(Ordering::Relaxed);
        s.compaction_failures = c.compaction_failures.load(Ordering::Relaxed);
        s.retention_files_dropped = c.retention_files_dropped.load(Ordering::Relaxed);
        s.retention_rows_refused = c.retention_rows_refused.load(Ordering::Relaxed);
        s.deletes = c.deletes.load(Ordering::Relaxed);
        s.write_stalls = c.write_stalls.load(Ordering::Relaxed);
        s.buffered_bytes_peak = c.buffered_bytes_peak.load(Ordering::Relaxed);
        #[cfg(feature = "tiering")]
        {
            let state = read(&self.inner.state);
            let cold = state.cold.values().flatten();
            (s.cold_files, s.cold_bytes) = cold.fold((0, 0), |(n, b), h| (n + 1, b + h.entry.bytes));
            drop(state);
            if let Some(t) = &self.inner.tier {
                let c = &t.counters;
                s.tier_uploads = c.uploads.load(Ordering::Relaxed);
                s.tier_upload_bytes = c.upload_bytes.load(Ordering::Relaxed);
                s.tier_fetches = c.fetches.load(Ordering::Relaxed);
                s.tier_fetch_bytes = c.fetch_bytes.load(Ordering::Relaxed);
                s.tier_cache_hits = c.cache_hits.load(Ordering::Relaxed);
                s.tier_garbage_objects = c.garbage_objects.load(Ordering::Relaxed);
                s.tier_checksum_failures = c.checksum_failures.load(Ordering::Relaxed);
                s.tier_disk_cache_hits = c.disk_cache_hits.load(Ordering::Relaxed);
                s.tier_failures = c.failures.load(Ordering::Relaxed);
                s.tier_requests = t.options.store.requests.requests.load(Ordering::Relaxed);
                s.tier_request_retries = t.options.store.requests.retryable_failures.load(Ordering::Relaxed);
                s.tier_disk_cache_bytes = t.disk.as_ref().map_or(0, |d| d.used());
            }
        }
        s.write_stall_nanos = c.write_stall_nanos.load(Ordering::Relaxed);
        s.last_value_series = self.inner.last_values.series() as u64;
        s
    }

    /// Registers an observer of every write committed from now on (see
    /// [`crate::observe`]): it sees the rows right after they are durable.
    pub fn add_write_observer(&self, observer: Arc<dyn crate::observe::WriteObserver>) {
        write(&self.inner.observers).push(observer);
    }

    /// The reason writes are refused, if an fsync or flush failed.
    pub fn poisoned(&self) -> Option<String> {
        self.inner.poisoned()
    }
}

/// What [`Database::verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Segment files read, every chunk checked.
    pub files: usize,
    /// Rows in them (duplicates across files counted each time).
    pub rows: u64,
    /// Files in the segment directory the manifest does not list.
    pub unreferenced: Vec<String>,
}

impl Drop for Database {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Makes the catalog hold the columns of a replayed write; values of a
/// column whose kind disagrees with the catalog are dropped (with a warning).
fn resolve_replayed<'a>(
    catalog: &'a mut BTreeMap<String, BTreeMap<String, TableSchema>>,
    w: &mut TableWrite,
) -> &'a TableSchema {
    let schema = catalog.entry(w.database.clone()).or_default().entry(w.table.clone()).or_default();
    w.columns.retain(|c| match schema.id_of(&c.name).and_then(|id| schema.column(id)) {
        Some(def) if def.kind == c.kind => true,
        Some(def) => {
            tracing::warn!(column = %c.name, stored = %def.kind, logged = %c.kind, "WAL replay: dropping values of a column whose kind changed");
            false
        }
        None => {
            schema.push(&c.name, c.kind);
            true
        }
    });
    schema
}

impl Inner {
    pub(crate) fn write(&self, database: &str, batch: &WriteBatch) -> Result<WriteOutcome> {
        self.check_writable()?;
        self.wait_for_room()?;
        let (prepared, mut outcome) = self.prepare(database, batch)?;
        if let Some((w, bytes)) = prepared {
            outcome.rows_written = w.times.len();
            self.commit(vec![(WalEntry::Write(w), bytes)])?;
            self.flush_if_full();
        }
        Ok(outcome)
    }

    pub(crate) fn delete(&self, database: &str, request: &DeleteRequest) -> Result<DeleteOutcome> {
        self.check_writable()?;
        request.validate(database)?;
        let schema = self.table_schema(database, &request.table).ok_or_else(|| Error::NotFound {
            what: "table",
            name: format!("{database}.{}", request.table),
            hint: String::new(),
        })?;
        for f in &request.tag_filters {
            match schema.id_of(&f.tag).and_then(|id| schema.column(id)) {
                Some(def) if def.kind != ColumnKind::Tag => {
                    return Err(Error::InvalidInput(format!(
                        "delete from {database}.{}: column `{}` is {}, not a tag; a delete selects rows by tags and time only",
                        request.table,
                        f.tag,
                        def.kind.with_article()
                    )));
                }
                _ => {} // an unknown tag matches nothing
            }
        }
        let mut count = ScanRequest::new(database, &request.table).project(["time"]);
        count.tag_filters = request.tag_filters.clone();
        count.start = request.start;
        count.end = request.end;
        let mut rows_matched = 0u64;
        for b in self.scan(&count)? {
            rows_matched += b?.num_rows() as u64;
        }
        let t = Tombstone::from_request(0, database, request, rows_matched);
        let bytes = crate::wal::format::entry_len_estimate(&WalEntry::Delete(t.clone()));
        let seq = self.commit(vec![(WalEntry::Delete(t), bytes)])?;
        crate::failpoint::hit("delete.logged");
        self.counters.deletes.fetch_add(1, Ordering::Relaxed);
        // The deleted rows may have held series' newest values: rescan those series.
        if let Err(e) = self.last_values.refresh(self, database, &request.table) {
            tracing::warn!(error = %e, database, table = %request.table, "refreshing last values after a delete failed; they are refreshed at the next open");
        }
        Ok(DeleteOutcome { seq, rows_matched })
    }

    pub(crate) fn table_schema(&self, database: &str, table: &str) -> Option<TableSchema> {
        read(&self.catalog).get(database)?.get(table).cloned()
    }

    pub(crate) fn poisoned(&self) -> Option<String> {
        read(&self.poisoned).clone()
    }

    pub(crate) fn poison(&self, reason: String) {
        tracing::error!(%reason, "database poisoned: refusing writes until reopened");
        let mut p = write(&self.poisoned);
        if p.is_none() {
            *p = Some(reason);
        }
    }

    fn check_writable(&self) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        match self.poisoned() {
            Some(r) => Err(Error::Poisoned(r)),
            None => Ok(()),
        }
    }

    fn flush_if_full(&self) {
        let over = read(&self.state).active.bytes >= self.options.max_buffer_bytes;
        if over {
            self.signal_flush();
        }
    }

    fn signal_flush(&self) {
        let (m, cv) = &self.flush_signal;
        *lock(m) = true;
        cv.notify_all();
    }

    pub(crate) fn signal_compaction(&self) {
        let (m, cv) = &self.compact_signal;
        *lock(m) = true;
        cv.notify_all();
    }

    /// Bytes held by the active and frozen buffers.
    fn buffered_bytes(&self) -> usize {
        let s = read(&self.state);
        s.active.bytes + s.frozen.iter().map(|f| f.bytes).sum::<usize>()
    }

    /// Backpressure: while the buffers hold more than
    /// [`Options::max_buffer_memory`], waits for a flush to drain them (or
    /// flushes itself when there is no background flush thread).
    fn wait_for_room(&self) -> Result<()> {
        let limit = self.options.max_buffer_memory;
        if self.buffered_bytes() < limit {
            return Ok(());
        }
        let started = std::time::Instant::now();
        self.counters.write_stalls.fetch_add(1, Ordering::Relaxed);
        let result = loop {
            if let Err(e) = self.check_writable() {
                break Err(e);
            }
            if self.buffered_bytes() < limit {
                break Ok(());
            }
            if !self.options.background_flush {
                if let Err(e) = self.flush() {
                    break Err(e);
                }
                continue;
            }
            self.signal_flush();
            let (m, cv) = &self.room;
            let g = lock(m);
            let _ = cv.wait_timeout(g, Duration::from_millis(50));
        };
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.counters.write_stall_nanos.fetch_add(nanos, Ordering::Relaxed);
        result
    }

    /// Validates a batch against the catalog, adding new columns, and returns
    /// the accepted rows ready to log, plus the rejected ones.
    /// The write to log (with about the bytes of its WAL record) unless every row was rejected.
    fn prepare(&self, database: &str, batch: &WriteBatch) -> Result<(Option<(TableWrite, usize)>, WriteOutcome)> {
        validate_database_name(database)?;
        validate_name("table", &batch.table)?;
        let n = batch.len();
        let mut errors: BTreeMap<usize, RowError> = BTreeMap::new();
        let reject = |errors: &mut BTreeMap<usize, RowError>, row: usize, column: &str, message: String| {
            errors.entry(row).or_insert(RowError { row, column: Some(column.to_string()), message });
        };
        let table = &batch.table;
        // Rows past retention first: a refused row must not add columns (or the table).
        let cutoff = crate::retention::cutoff(&read(&self.retention), database, table, crate::delete::now_nanos());
        if cutoff > i64::MIN {
            let keep = crate::retention::rule_for(&read(&self.retention), database, table).map(|r| r.keep_text());
            for (row, t) in batch.times.iter().enumerate() {
                if *t < cutoff {
                    self.counters.retention_rows_refused.fetch_add(1, Ordering::Relaxed);
                    errors.insert(row, RowError {
                        row,
                        column: Some(crate::schema::TIME_COLUMN.to_string()),
                        message: format!(
                            "database `{database}`, table `{table}`: time {t} is older than the retention period ({}): \
                             rows before {cutoff} (ns) are expired",
                            keep.as_deref().unwrap_or("?")
                        ),
                    });
                }
            }
        }
        if n > 0 && errors.len() >= n {
            let rejected = errors.into_values().collect();
            return Ok((None, WriteOutcome { rows_written: 0, fields_written: 0, rejected }));
        }
        let expired = errors.clone();
        let needs_new = {
            let cat = read(&self.catalog);
            // A new table is created even for rows without columns: the logged
            // write must find its table when it is applied.
            match cat.get(database).and_then(|t| t.get(table)) {
                None => true,
                Some(s) => batch.columns.iter().any(|c| s.id_of(&c.name).is_none()),
            }
        };
        // Rejects conflicting rows; returns the columns the table does not have yet.
        let mut check = |schema: &TableSchema| -> Vec<(&str, ColumnKind)> {
            let mut new_columns = Vec::new();
            // The kind of each name's first value in a row not refused by retention; values of
            // other kinds for it are conflicts.
            let mut first_of: HashMap<&str, (usize, ColumnKind)> = HashMap::new();
            for c in &batch.columns {
                if let Some(r) = (0..n).find(|&r| c.data.is_valid(r) && !expired.contains_key(&r)) {
                    let e = first_of.entry(c.name.as_str()).or_insert((r, c.kind));
                    if r < e.0 {
                        *e = (r, c.kind);
                    }
                }
            }
            for c in &batch.columns {
                let rows_with_value = || (0..n).filter(|&r| c.data.is_valid(r));
                if let Err(e) = validate_name("column", &c.name) {
                    let msg = e.to_string();
                    rows_with_value().for_each(|r| reject(&mut errors, r, &c.name, msg.clone()));
                    continue;
                }
                // Every row with a value here is refused by retention already.
                let Some(&(_, first)) = first_of.get(c.name.as_str()) else { continue };
                match schema.id_of(&c.name).and_then(|id| schema.column(id)) {
                    None if first != c.kind => {
                        let msg = format!(
                            "database `{database}`, table `{table}`: column `{}` is {} earlier in this batch, got {} value",
                            c.name,
                            first.with_article(),
                            c.kind.with_article()
                        );
                        rows_with_value().for_each(|r| reject(&mut errors, r, &c.name, msg.clone()));
                    }
                    Some(def) if def.kind != c.kind => {
                        let msg = format!(
                            "database `{database}`, table `{table}`: column `{}` is {}, got {} value",
                            c.name,
                            def.kind.with_article(),
                            c.kind.with_article()
                        );
                        rows_with_value().for_each(|r| reject(&mut errors, r, &c.name, msg.clone()));
                    }
                    Some(_) => {}
                    None => new_columns.push((c.name.as_str(), c.kind, &c.data)),
                }
            }
            // A column appears only if a row that is written holds a value in it:
            // a column seen only in rejected rows would vanish again on reopen.
            new_columns
                .into_iter()
                .filter(|(_, _, data)| (0..n).any(|r| data.is_valid(r) && !errors.contains_key(&r)))
                .map(|(name, kind, _)| (name, kind))
                .collect::<Vec<_>>()
        };
        if needs_new {
            // Checked again under the write lock: another writer may have added these columns meanwhile.
            let mut cat = write(&self.catalog);
            let schema = cat.entry(database.to_string()).or_default().entry(table.clone()).or_default();
            for (name, kind) in check(schema) {
                schema.push(name, kind);
            }
        } else {
            let cat = read(&self.catalog);
            let empty = TableSchema::default();
            check(cat.get(database).and_then(|t| t.get(table)).unwrap_or(&empty));
        }
        let rejected: Vec<RowError> = errors.into_values().collect();
        let mut outcome = WriteOutcome { rows_written: 0, fields_written: 0, rejected };
        if outcome.rejected.len() >= n {
            return Ok((None, outcome));
        }
        let keep: Vec<usize> = if outcome.rejected.is_empty() {
            (0..n).collect()
        } else {
            let bad: std::collections::HashSet<usize> = outcome.rejected.iter().map(|e| e.row).collect();
            (0..n).filter(|r| !bad.contains(r)).collect()
        };
        let mut columns = Vec::with_capacity(batch.columns.len());
        for c in &batch.columns {
            if validate_name("column", &c.name).is_err() {
                continue;
            }
            let data = if keep.len() == n && c.data.len() == n {
                c.data.clone()
            } else {
                let mut d = Column::with_capacity(c.kind.value_type(), keep.len());
                keep.iter().for_each(|&r| d.push_from(&c.data, r));
                d
            };
            let present = data.valid.iter().filter(|v| **v).count();
            if present == 0 {
                continue;
            }
            if matches!(c.kind, ColumnKind::Field(_)) {
                outcome.fields_written += present;
            }
            columns.push(BatchColumn { name: c.name.clone(), kind: c.kind, data });
        }
        let times = keep.iter().filter_map(|&r| batch.times.get(r).copied()).collect();
        let write = TableWrite { database: database.to_string(), table: table.clone(), times, columns };
        // Replay refuses WAL records over MAX_PAYLOAD: refuse such a write now
        // (with a margin: the estimate is close, not exact) rather than log it.
        let size = crate::wal::format::encoded_len_estimate(&write);
        if size > crate::wal::format::MAX_PAYLOAD / 2 {
            return Err(Error::InvalidInput(format!(
                "database `{database}`, table `{table}`: a batch of {n} rows is about {} MiB, over the limit of {} MiB \
                 for one write; split it into smaller batches",
                size >> 20,
                crate::wal::format::MAX_PAYLOAD >> 21
            )));
        }
        Ok((Some((write, size)), outcome))
    }

    /// Logs a write and applies it to the write buffer, sharing the WAL
    /// write and fsync with concurrent writers (group commit).
    /// Several writes are queued together and share one fsync; this returns
    /// when the last of them is durable.
    /// Returns the sequence number of the last entry.
    fn commit(&self, entries: Vec<(WalEntry, usize)>) -> Result<u64> {
        let mut q = lock(&self.queue);
        let mut seq = q.durable_seq;
        for (entry, bytes) in entries {
            seq = q.next_seq;
            q.next_seq += 1;
            q.pending.push(Pending { seq, entry, bytes });
        }
        loop {
            if q.durable_seq >= seq {
                return Ok(seq);
            }
            if let Some(r) = self.poisoned() {
                return Err(Error::Poisoned(r));
            }
            if q.leader {
                q = self.queue_cv.wait(q).unwrap_or_else(std::sync::PoisonError::into_inner);
                continue;
            }
            q.leader = true;
            let group = std::mem::take(&mut q.pending);
            drop(q);
            let result = self.write_group(&group);
            if result.is_ok() {
                self.tell_observers(&group);
            }
            q = lock(&self.queue);
            q.leader = false;
            match result {
                Ok(()) => q.durable_seq = group.last().map_or(q.durable_seq, |p| p.seq),
                Err(e) => self.poison(format!("writing the WAL failed: {e}")),
            }
            self.queue_cv.notify_all();
        }
    }

    /// Shows a committed group's writes to the observers, in order.
    fn tell_observers(&self, group: &[Pending]) {
        let observers = read(&self.observers);
        if observers.is_empty() {
            return;
        }
        for p in group {
            if let WalEntry::Write(w) = &p.entry {
                let rows = crate::observe::CommittedRows { write: w };
                observers.iter().for_each(|o| o.committed(&rows));
            }
        }
    }

    /// The leader's work: append the group to the WAL, sync, then apply in order.
    fn write_group(&self, group: &[Pending]) -> Result<()> {
        // One allocation for the group's records (zeroing fresh pages on regrowth showed in profiles).
        let mut framed = Vec::with_capacity(group.iter().map(|p| p.bytes).sum());
        for p in group {
            encode_entry(p.seq, &p.entry, &mut framed);
        }
        {
            let mut wal = lock(&self.wal);
            wal.append(&framed)?;
            if self.options.durability == Durability::Sync {
                let started = std::time::Instant::now();
                wal.sync()?;
                let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
                self.counters.wal_syncs.fetch_add(1, Ordering::Relaxed);
                self.counters.wal_sync_nanos.fetch_add(nanos, Ordering::Relaxed);
            }
            if wal.size() >= self.options.wal_file_bytes
                && let Some(last) = group.last()
            {
                wal.rotate(last.seq + 1)?;
            }
        }
        let cat = read(&self.catalog);
        let mut state = write(&self.state);
        for p in group {
            match &p.entry {
                WalEntry::Write(w) => {
                    let Some(schema) = cat.get(&w.database).and_then(|t| t.get(&w.table)) else {
                        return Err(Error::Internal(format!(
                            "table {}.{} vanished from the catalog",
                            w.database, w.table
                        )));
                    };
                    let mut cache = self.last_values.writer(w, schema);
                    state.active.apply(p.seq, w, schema, |key, rows| cache.series(key, rows));
                    self.rollups.wrote(&w.database, &w.table, &w.times);
                    self.counters.rows_written.fetch_add(w.times.len() as u64, Ordering::Relaxed);
                }
                WalEntry::Delete(t) => {
                    self.last_values.delete(t);
                    self.rollups.deleted(t);
                    state.apply_delete(p.seq, t.clone())
                }
            }
            state.applied_seq = p.seq;
            self.last_values.applied(p.seq);
        }
        let held = state.active.bytes + state.frozen.iter().map(|f| f.bytes).sum::<usize>();
        self.counters.buffered_bytes_peak.fetch_max(held as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Waits to become commit leader, so no group is between WAL and buffer.
    fn become_leader(&self) -> MutexGuard<'_, CommitQueue> {
        let mut q = lock(&self.queue);
        while q.leader {
            q = self.queue_cv.wait(q).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        q
    }

    /// Moves the active buffer to the frozen list and starts a new WAL file,
    /// so the frozen rows' WAL files can be deleted once they are flushed.
    /// A buffer is frozen even without rows when deletes were logged since
    /// `flushed_seq`: its flush moves them into the manifest and frees their WAL.
    fn freeze(&self, flushed_seq: u64) -> Result<()> {
        let q = self.become_leader();
        let mut state = write(&self.state);
        if state.active.is_empty() && state.applied_seq <= flushed_seq {
            return Ok(());
        }
        let mut wal = lock(&self.wal);
        wal.rotate(q.durable_seq + 1)?;
        let mut active = std::mem::take(&mut state.active);
        // Every delete up to here was applied to its rows.
        active.max_seq = state.applied_seq;
        state.frozen.push(Arc::new(active));
        Ok(())
    }

    pub(crate) fn flush(&self) -> Result<()> {
        let mut manifest = lock(&self.manifest);
        if let Some(r) = self.poisoned() {
            return Err(Error::Poisoned(r));
        }
        self.freeze(manifest.flushed_seq).inspect_err(|e| self.poison(format!("rotating the WAL failed: {e}")))?;
        let frozen: Vec<Arc<WriteBuffer>> = read(&self.state).frozen.clone();
        if frozen.is_empty() {
            return Ok(());
        }
        match self.flush_frozen(&mut manifest, &frozen) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.poison(format!("flushing the write buffer failed: {e}"));
                Err(e)
            }
        }
    }

    fn flush_frozen(&self, manifest: &mut Manifest, frozen: &[Arc<WriteBuffer>]) -> Result<()> {
        let catalog = read(&self.catalog).clone();
        let (tombstones, applied_seq) = {
            let s = read(&self.state);
            (s.tombstones.clone(), s.applied_seq)
        };
        let rules = read(&self.retention).clone();
        let now = crate::delete::now_nanos();
        // (database, table) -> partition -> series -> sources oldest first
        type Parts = BTreeMap<(String, String), BTreeMap<i64, BTreeMap<SeriesKey, Vec<SeriesData>>>>;
        let mut parts: Parts = BTreeMap::new();
        for buf in frozen {
            for ((db, table), tb) in &buf.tables {
                let cutoff = crate::retention::cutoff(&rules, db, table, now);
                for (key, series) in &tb.series {
                    // Deletes logged after this buffer was frozen, and expired rows, are not written.
                    let hidden = crate::delete::hidden_ranges(&tombstones, db, table, key, buf.max_seq, 0);
                    let by_part = split_by_partition(series.data(), &self.options);
                    let entry = parts.entry((db.clone(), table.clone())).or_default();
                    for (p, mut d) in by_part {
                        crate::delete::retain_rows(&mut d, &hidden, cutoff);
                        if !d.times.is_empty() {
                            entry.entry(p).or_default().entry(key.clone()).or_default().push(d);
                        }
                    }
                }
            }
        }
        let flushed_seq = frozen.iter().map(|f| f.max_seq).max().unwrap_or(0).max(manifest.flushed_seq);
        let min_seq = manifest.flushed_seq + 1;
        let mut new_handles: Vec<((String, String), Arc<SegmentHandle>)> = Vec::new();
        let mut written_bytes = 0u64;
        for ((db, table), partitions) in parts {
            let schema = catalog.get(&db).and_then(|t| t.get(&table)).cloned().unwrap_or_default();
            for (partition_start, series) in partitions {
                // `parts` owns its copies of the frozen rows: merge them without copying again.
                let merged: Vec<(SeriesKey, SeriesData)> =
                    series.into_iter().map(|(k, srcs)| (k, merge(srcs))).collect();
                let id = manifest.next_segment_id;
                manifest.next_segment_id += 1;
                let path = self.segment_dir.join(SegmentEntry::file_name(id));
                let stats = write_segment(self.backend.as_ref(), &path, &table, partition_start, &schema, &merged)?;
                written_bytes += stats.bytes;
                let entry = SegmentEntry {
                    id,
                    partition_start,
                    min_time: stats.min_time,
                    max_time: stats.max_time,
                    rows: stats.rows,
                    bytes: stats.bytes,
                    level: 0,
                    min_seq,
                    max_seq: flushed_seq,
                    purged_seq: applied_seq,
                };
                let reader = Arc::new(SegmentReader::open(&path)?);
                manifest
                    .databases
                    .entry(db.clone())
                    .or_default()
                    .tables
                    .entry(table.clone())
                    .or_default()
                    .segments
                    .push(entry.clone());
                new_handles.push(((db.clone(), table.clone()), Arc::new(SegmentHandle { entry, reader })));
            }
        }
        crate::failpoint::hit("flush.segments_written");
        for (db, tables) in &catalog {
            for (table, schema) in tables {
                manifest.databases.entry(db.clone()).or_default().tables.entry(table.clone()).or_default().schema =
                    schema.clone();
            }
        }
        manifest.flushed_seq = flushed_seq;
        let mut next = manifest.clone();
        {
            let mut state = write(&self.state);
            state.frozen.retain(|f| !frozen.iter().any(|x| Arc::ptr_eq(x, f)));
            for (key, h) in new_handles {
                let list = state.segments.entry(key).or_default();
                list.push(h);
                sort_by_precedence(list);
            }
            self.settle_tombstones(&mut next, &mut state);
        }
        // Scans see the new files from here; readers of the old manifest state stay valid.
        next.store(self.backend.as_ref(), &self.dir)?;
        *manifest = next;
        crate::failpoint::hit("flush.manifest_stored");
        // The WAL files about to go may hold values the last snapshot lacks.
        if let Err(e) = self.last_values.save(self.backend.as_ref(), &self.dir) {
            tracing::warn!(error = %e, "writing the last-value snapshot failed; the next open rebuilds the cache by scanning");
        }
        crate::failpoint::hit("flush.last_values_saved");
        // The rollup marks the WAL files about to go made.
        self.rollups.save(self.backend.as_ref(), &self.dir)?;
        self.trim_wal(flushed_seq)?;
        self.counters.flushes.fetch_add(1, Ordering::Relaxed);
        let (m, cv) = &self.room;
        drop(lock(m));
        cv.notify_all();
        tracing::debug!(flushed_seq, written_bytes, "flushed write buffer");
        Ok(())
    }

    /// Moves the deletes whose rows are gone from every file (and that the
    /// manifest's WAL position covers) to the delete log, and records the
    /// pending ones in `manifest` (which the caller stores).
    pub(crate) fn settle_tombstones(&self, manifest: &mut Manifest, state: &mut State) {
        let now = crate::delete::now_nanos();
        let mut purged = Vec::new();
        let flushed = manifest.flushed_seq;
        let segments = &state.segments;
        #[cfg(feature = "tiering")]
        let cold = &state.cold;
        state.tombstones.retain(|t| {
            let key = (t.database.clone(), t.table.clone());
            let needed = t.seq > flushed
                || segments.get(&key).is_some_and(|list| {
                    list.iter().any(|h| {
                        t.applies_to(h.entry.max_seq, h.entry.purged_seq) && h.reader.may_hold(&t.tags, t.range())
                    })
                });
            // Cold files are not rewritten (yet): a delete that hides rows in one stays pending.
            #[cfg(feature = "tiering")]
            let needed = needed
                || cold.get(&key).is_some_and(|list| {
                    list.iter()
                        .any(|h| t.applies_to(h.entry.max_seq, h.entry.purged_seq) && h.may_hold(&t.tags, t.range()))
                });
            if !needed {
                let mut done = t.clone();
                done.purged_at = Some(now);
                tracing::info!(seq = t.seq, database = %t.database, table = %t.table, "delete purged from every file");
                purged.push(done);
            }
            needed
        });
        manifest.tombstones = state.tombstones.clone();
        manifest.purged.extend(purged);
        let over = manifest.purged.len().saturating_sub(crate::delete::PURGED_LOG_LIMIT);
        manifest.purged.drain(..over);
    }

    /// Deletes WAL files whose records are all at or below `flushed_seq`.
    fn trim_wal(&self, flushed_seq: u64) -> Result<()> {
        let files = crate::wal::list_files(&self.wal_dir)?;
        let current = lock(&self.wal).first_seq();
        for pair in files.windows(2) {
            let (f, next) = (&pair[0], &pair[1]);
            if next.first_seq <= flushed_seq + 1 && f.first_seq < current {
                crate::fs::remove_durable(self.backend.as_ref(), &f.path)?;
            }
        }
        Ok(())
    }

    pub(crate) fn scan(&self, req: &ScanRequest) -> Result<ScanStream> {
        let schema =
            read(&self.catalog).get(&req.database).and_then(|t| t.get(&req.table)).cloned().ok_or_else(|| {
                if read(&self.catalog).contains_key(&req.database) {
                    Error::NotFound {
                        what: "table",
                        name: format!("{}.{}", req.database, req.table),
                        hint: String::new(),
                    }
                } else {
                    Error::NotFound { what: "database", name: req.database.clone(), hint: String::new() }
                }
            })?;
        // Expired rows are hidden at once, before their files are dropped.
        let cutoff =
            crate::retention::cutoff(&read(&self.retention), &req.database, &req.table, crate::delete::now_nanos());
        let narrowed;
        let req = if req.start.is_none_or(|s| s < cutoff) {
            let mut r = req.clone();
            r.start = Some(cutoff);
            narrowed = r;
            &narrowed
        } else {
            req
        };
        let mut plan = ScanPlan::new(req, &schema, self.options.scan_batch_rows)?;
        let range = plan.range();
        let wanted = plan.wanted_ids();
        let width = plan.width();
        let mut series: BTreeMap<SeriesKey, Vec<Source>> = BTreeMap::new();
        let filter = |k: &SeriesKey| req.matches(k);
        let state = read(&self.state);
        let key = (req.database.clone(), req.table.clone());
        let tombstones: Vec<&Tombstone> =
            state.tombstones.iter().filter(|t| t.is_for(&req.database, &req.table)).collect();
        // Cold files first: their rows are older than any segment of their partition.
        #[cfg(feature = "tiering")]
        if let Some(cold) = state.cold.get(&key) {
            plan.tier = self.tier.clone();
            for h in cold {
                if !range.overlaps(h.entry.min_time, h.entry.max_time) {
                    continue;
                }
                let deletes: Vec<&Tombstone> =
                    tombstones.iter().copied().filter(|t| t.applies_to(h.entry.max_seq, h.entry.purged_seq)).collect();
                for (i, s) in h.index.series.iter().enumerate() {
                    let Some(skey) = h.series_key(i) else { continue };
                    if !range.overlaps(s.min_time, s.max_time) || !req.matches(skey) {
                        continue;
                    }
                    let hidden =
                        crate::delete::hidden_ranges(deletes.iter().copied(), &req.database, &req.table, skey, 0, 0);
                    series.entry(skey.clone()).or_default().push(Source::Cold(h.clone(), i, hidden));
                }
            }
        }
        if let Some(segs) = state.segments.get(&key) {
            let preds: Vec<(String, Vec<String>)> =
                req.tag_filters.iter().map(|f| (f.tag.clone(), f.values.clone())).collect();
            for h in segs {
                if !range.overlaps(h.entry.min_time, h.entry.max_time) {
                    continue;
                }
                let deletes: Vec<&Tombstone> =
                    tombstones.iter().copied().filter(|t| t.applies_to(h.entry.max_seq, h.entry.purged_seq)).collect();
                for id in h.reader.matching_series(&preds) {
                    let skey = h.reader.series_key(id);
                    if !req.matches(&skey) {
                        continue;
                    }
                    let hidden =
                        crate::delete::hidden_ranges(deletes.iter().copied(), &req.database, &req.table, &skey, 0, 0);
                    series.entry(skey).or_default().push(Source::Segment(h.reader.clone(), id, hidden));
                }
            }
        }
        for buf in state.frozen.iter().map(Arc::as_ref) {
            for (k, mut d) in buf.collect(&req.database, &req.table, &filter, range, &wanted, width) {
                let hidden = crate::delete::hidden_ranges(
                    tombstones.iter().copied(),
                    &req.database,
                    &req.table,
                    &k,
                    buf.max_seq,
                    0,
                );
                crate::delete::retain_rows(&mut d, &hidden, i64::MIN);
                series.entry(k).or_default().push(Source::Buffer(d));
            }
        }
        // Deletes were applied to the active buffer's rows when they were logged.
        for (k, d) in state.active.collect(&req.database, &req.table, &filter, range, &wanted, width) {
            series.entry(k).or_default().push(Source::Buffer(d));
        }
        drop(state);
        plan.series = series.into_iter().collect();
        Ok(ScanStream::new(plan))
    }
}

/// Takes an exclusive lock on `dir/LOCK`: two processes (or two opens in one
/// process) writing one data directory would destroy it.
fn lock_dir(dir: &Path) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    // A child process this one forks (anything run with `Command`) shares the
    // lock until its exec closes the descriptor: a few tries ride that out.
    let mut tries = 0;
    loop {
        // SAFETY: flock on a file descriptor this function owns; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(file);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) && tries < 25 {
            tries += 1;
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(Error::InvalidInput(format!(
                "the data directory {} is in use by another Telemark process (or another open in this one); \
                 stop it first, or use its HTTP API (for a backup: POST /api/v3/admin/backup)",
                dir.display()
            )));
        }
        return Err(Error::io(&path, e));
    }
}

/// Deletes segment files the manifest does not list: leftovers of a flush
/// that crashed before its manifest was stored. Their rows are still in the WAL.
fn remove_orphan_segments(backend: &dyn crate::fs::FileBackend, dir: &Path, manifest: &Manifest) -> Result<()> {
    let known: std::collections::HashSet<String> = manifest
        .databases
        .values()
        .flat_map(|d| d.tables.values())
        .flat_map(|t| t.segments.iter())
        .map(|s| SegmentEntry::file_name(s.id))
        .collect();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().to_string();
        let ours = name.ends_with(".tms") || name.ends_with(".tmp");
        if ours && !known.contains(&name) {
            tracing::info!(file = %entry.path().display(), "removing a segment file left by an interrupted flush");
            crate::fs::remove_durable(backend, &entry.path())?;
        }
    }
    Ok(())
}

impl State {
    /// Applies a logged delete: removes its rows from the active buffer and
    /// keeps its tombstone for older sources.
    pub(crate) fn apply_delete(&mut self, seq: u64, mut t: Tombstone) {
        t.seq = seq;
        self.active.delete(&t);
        if !self.tombstones.iter().any(|x| x.seq == seq) {
            self.tombstones.push(t);
        }
    }
}

fn split_by_partition(data: &SeriesData, options: &Options) -> Vec<(i64, SeriesData)> {
    let first = data.times.first().map(|t| options.partition_of(*t));
    if let Some(p) = first
        && data.times.iter().all(|t| options.partition_of(*t) == p)
    {
        return vec![(p, data.clone())];
    }
    let mut rows: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (i, t) in data.times.iter().enumerate() {
        rows.entry(options.partition_of(*t)).or_default().push(i);
    }
    rows.into_iter()
        .map(|(p, idx)| {
            let times = idx.iter().filter_map(|&i| data.times.get(i).copied()).collect();
            let columns = data
                .columns
                .iter()
                .map(|c| {
                    c.as_ref().map(|c| {
                        let mut out = Column::with_capacity(c.values.field_type(), idx.len());
                        idx.iter().for_each(|&i| out.push_from(c, i));
                        out
                    })
                })
                .collect();
            (p, SeriesData { times, columns })
        })
        .collect()
}

/// Starts background thread `telemark-<name>` running `body` (if `wanted`).
fn spawn(inner: &Arc<Inner>, wanted: bool, name: &str, body: fn(Weak<Inner>)) -> Result<Option<JoinHandle<()>>> {
    if !wanted {
        return Ok(None);
    }
    let weak = Arc::downgrade(inner);
    std::thread::Builder::new()
        .name(format!("telemark-{name}"))
        .spawn(move || body(weak))
        .map(Some)
        .map_err(|e| Error::Internal(format!("cannot start the {name} thread: {e}")))
}

fn background_flush(weak: Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if inner.closed.load(Ordering::SeqCst) {
            return;
        }
        let age_limit = inner.options.max_buffer_age;
        let tick = (age_limit / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        {
            let (m, cv) = &inner.flush_signal;
            let mut signaled = lock(m);
            if !*signaled {
                signaled = cv.wait_timeout(signaled, tick).map(|(g, _)| g).unwrap_or_else(|e| e.into_inner().0);
            }
            *signaled = false;
        }
        if inner.closed.load(Ordering::SeqCst) || inner.poisoned().is_some() {
            if inner.closed.load(Ordering::SeqCst) {
                return;
            }
            drop(inner);
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        let due = {
            let s = read(&inner.state);
            s.active.bytes >= inner.options.max_buffer_bytes
                || s.active.oldest.is_some_and(|t| t.elapsed() >= age_limit)
        };
        if due && let Err(e) = inner.flush() {
            tracing::error!(error = %e, "background flush failed");
        }
    }
}
