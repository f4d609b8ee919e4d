//! Tiering: partitions older than a threshold move to object storage as
//! Parquet, and scans read them back transparently (feature `tiering`).
//!
//! A tiering job takes every segment file of one table's time partition,
//! merges them series by series (last write wins, deleted and expired rows
//! left out: the same merge as compaction) and writes one Parquet file,
//! sorted by series (tag values, tag names in alphabetical order) then time,
//! with row-group and page statistics. The steps, each safe to crash after:
//!
//! 1. upload the object to `<prefix>/<db>/<table>/date=YYYY-MM-DD/<name>.parquet`;
//! 2. verify it: its size (HEAD) and the CRC32C of a read-back must match;
//! 3. write the local index `cold/<id>.tmc` (the object's series with their
//!    row ranges, and its Parquet metadata), so planning a query never makes
//!    a remote call;
//! 4. swap the manifest: the partition's segments out, the cold entry in;
//! 5. unlink the local segments once no scan holds them.
//!
//! A crash before step 4 leaves the segments referenced and an object (and
//! perhaps an index file) nobody references: the index file is removed on
//! open, the object is replaced when the same id is tiered again.
//!
//! Rows written later into a tiered partition stay in local segments, which
//! cover later WAL sequence numbers and so win over the cold rows.
//!
//! The engine is synchronous and object storage is async: the engine keeps a
//! small runtime of its own for it and waits on a channel, so this works from
//! any thread, including a DataFusion blocking task.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampNanosecondBuilder, UInt64Builder,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};

use crate::batch::{Column, Values};
use crate::db::{Inner, SegmentHandle, lock, read, write};
use crate::manifest::ColdEntry;
use crate::schema::{ColumnKind, FieldType, TIME_COLUMN, TableSchema};
use crate::segment::TimeRange;
use crate::series::{SeriesData, SeriesKey};
use crate::{Error, Result};

/// Where cold data goes: an object store and a prefix in it.
#[derive(Clone)]
pub struct TierStore {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) prefix: ObjectPath,
    description: String,
    /// The same store's multipart API, where it has one (S3, GCS, Azure,
    /// memory): uploads then record their id, so one a crash interrupts is
    /// aborted at the next open.
    pub(crate) multipart: Option<Arc<dyn object_store::multipart::MultipartStore>>,
    /// HTTP requests made to the store (S3 only; zero for local stores).
    pub(crate) requests: Arc<RequestCounters>,
}

/// Counts of the HTTP requests an S3 store makes, retries included.
#[derive(Debug, Default)]
pub(crate) struct RequestCounters {
    pub(crate) requests: std::sync::atomic::AtomicU64,
    /// Requests that failed in a way object_store retries (connection
    /// errors, timeouts, 5xx, 429): each is followed by a retry unless the
    /// retry budget (`max_retries`, `retry_timeout`) is spent.
    pub(crate) retryable_failures: std::sync::atomic::AtomicU64,
}

/// object_store's own HTTP client, wrapped to count requests and the
/// failures it retries (object_store has no hook for its retries).
#[derive(Debug)]
struct CountingConnector(Arc<RequestCounters>);

#[derive(Debug)]
struct CountingService {
    inner: object_store::client::HttpClient,
    counters: Arc<RequestCounters>,
}

impl object_store::client::HttpConnector for CountingConnector {
    fn connect(&self, options: &object_store::ClientOptions) -> object_store::Result<object_store::client::HttpClient> {
        let inner = object_store::client::ReqwestConnector::default().connect(options)?;
        Ok(object_store::client::HttpClient::new(CountingService { inner, counters: self.0.clone() }))
    }
}

#[async_trait::async_trait]
impl object_store::client::HttpService for CountingService {
    async fn call(
        &self,
        req: object_store::client::HttpRequest,
    ) -> std::result::Result<object_store::client::HttpResponse, object_store::client::HttpError> {
        use object_store::client::HttpErrorKind as K;
        use std::sync::atomic::Ordering::Relaxed;
        self.counters.requests.fetch_add(1, Relaxed);
        let result = self.inner.execute(req).await;
        let retryable = match &result {
            Ok(r) => r.status().is_server_error() || r.status().as_u16() == 429,
            Err(e) => matches!(e.kind(), K::Connect | K::Request | K::Timeout | K::Interrupted),
        };
        if retryable {
            self.counters.retryable_failures.fetch_add(1, Relaxed);
        }
        result
    }
}

impl std::fmt::Debug for TierStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TierStore")
            .field("store", &self.store)
            .field("prefix", &self.prefix)
            .field("description", &self.description)
            .field("multipart", &self.multipart.is_some())
            .finish()
    }
}

impl TierStore {
    /// Opens a store from a URL:
    /// - `s3://bucket/prefix`: S3 or an S3-compatible server; credentials,
    ///   region and endpoint from the standard `AWS_*` environment variables
    ///   (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
    ///   `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`);
    /// - `file:///dir`: a local directory (created if missing);
    /// - `memory://`: in memory (tests).
    ///
    /// Nothing is contacted here: [`TierStore::check`] does that.
    pub fn from_url(url: &str) -> Result<Self> {
        Self::from_url_with(url, &StoreOptions::default())
    }

    /// [`TierStore::from_url`] with request timeouts and retries.
    pub fn from_url_with(url: &str, o: &StoreOptions) -> Result<Self> {
        let bad = |why: &str| Error::InvalidInput(format!("object store URL {url:?}: {why}"));
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("expected s3://bucket/prefix or file:///dir"))?;
        match scheme {
            "s3" => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(bad("no bucket name"));
                }
                let retry = object_store::RetryConfig {
                    max_retries: o.max_retries,
                    retry_timeout: o.retry_timeout,
                    backoff: object_store::BackoffConfig {
                        init_backoff: o.init_backoff,
                        ..object_store::BackoffConfig::default()
                    },
                };
                let requests = Arc::new(RequestCounters::default());
                let mut builder = object_store::aws::AmazonS3Builder::from_env()
                    .with_http_connector(CountingConnector(requests.clone()))
                    .with_bucket_name(bucket)
                    .with_virtual_hosted_style_request(false)
                    .with_retry(retry);
                // Set key by key: `with_client_options` would drop what the
                // environment set (AWS_ALLOW_HTTP among them).
                use object_store::ClientConfigKey as K;
                use object_store::aws::AmazonS3ConfigKey::Client;
                builder = builder
                    .with_config(Client(K::Timeout), format!("{}ms", o.timeout.as_millis()))
                    .with_config(Client(K::ConnectTimeout), format!("{}ms", o.connect_timeout.as_millis()));
                if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none() {
                    builder = builder.with_region("us-east-1");
                }
                let store = Arc::new(builder.build().map_err(|e| bad(&e.to_string()))?);
                let mut t = TierStore::new(store.clone(), prefix, url).with_multipart_store(store);
                t.requests = requests;
                Ok(t)
            }
            "file" => {
                let dir = Path::new(rest);
                if !dir.is_absolute() {
                    return Err(bad("a file URL needs an absolute path (file:///dir)"));
                }
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
                let store =
                    object_store::local::LocalFileSystem::new_with_prefix(dir).map_err(|e| bad(&e.to_string()))?;
                Ok(TierStore::new(Arc::new(store), "", url))
            }
            "memory" => {
                let store = Arc::new(object_store::memory::InMemory::new());
                Ok(TierStore::new(store.clone(), rest, url).with_multipart_store(store))
            }
            other => Err(bad(&format!("unsupported scheme {other:?} (use s3, file or memory)"))),
        }
    }

    /// A store the caller built (a wrapping store in tests, another cloud).
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str, description: &str) -> Self {
        let prefix = ObjectPath::from(prefix.trim_matches('/'));
        TierStore { store, prefix, description: description.to_string(), multipart: None, requests: Arc::default() }
    }

    /// The store's multipart API (the same store as an `ObjectStore`):
    /// uploads interrupted by a crash can then be aborted at the next open.
    pub fn with_multipart_store(mut self, m: Arc<dyn object_store::multipart::MultipartStore>) -> Self {
        self.multipart = Some(m);
        self
    }

    /// The URL or description it was opened with.
    pub fn description(&self) -> &str {
        &self.description
    }

    pub(crate) fn path(&self, relative: &str) -> ObjectPath {
        let mut p = self.prefix.clone();
        for part in relative.split('/') {
            p = p.join(part);
        }
        p
    }
}

/// Timeouts and retries of object-store requests (S3).
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// A request's whole time limit. Default: 30 s.
    pub timeout: Duration,
    /// Connection time limit. Default: 5 s.
    pub connect_timeout: Duration,
    /// Retries of a failed request (5xx, timeouts, resets), with jittered
    /// exponential backoff. Default: 10.
    pub max_retries: usize,
    /// No retry starts after this long since the first attempt. Default: 3 min.
    pub retry_timeout: Duration,
    /// The first backoff. Default: 100 ms.
    pub init_backoff: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            max_retries: 10,
            retry_timeout: Duration::from_secs(180),
            init_backoff: Duration::from_millis(100),
        }
    }
}

/// How tiering runs.
#[derive(Debug, Clone)]
pub struct TieringOptions {
    /// Where cold partitions go.
    pub store: TierStore,
    /// Partitions that ended more than this long ago (wall clock) move to
    /// the store. Default: 7 days.
    pub after: Duration,
    /// Overrides of `after` per database (`table` `None`) or table, the
    /// most specific first; `None` keeps that database or table local.
    pub rules: Vec<TieringRule>,
    /// The background compaction thread also tiers. Default: true.
    pub background: bool,
    /// Rows per Parquet row group: a group ends where a series ends once it
    /// holds this many (at most four times this). Default: 65 536.
    pub row_group_rows: usize,
    /// Bytes of decoded cold row groups kept in memory for queries. Default: 256 MiB.
    pub cache_bytes: usize,
    /// Files of at least this size are uploaded in parts (multipart).
    /// Default: 64 MiB.
    pub multipart_bytes: u64,
    /// Bytes of cold column chunks kept on local disk (`<data dir>/cache`),
    /// checked against their checksums on every read; 0 = none. Default: 1 GiB.
    pub disk_cache_bytes: u64,
    /// Garbage collection leaves an unreferenced object alone until it is
    /// this old (by the store's modification time), on top of its other
    /// rules (only ids this database allocated, never one a scan or an
    /// upload holds): a margin for clock skew and for a second writer
    /// pointed at the same prefix by mistake. Default: 1 hour.
    pub gc_grace: Duration,
}

/// Part size of multipart uploads (S3 wants at least 5 MiB but the last).
const MULTIPART_PART_BYTES: usize = 8 << 20;

impl TieringOptions {
    /// Tiering to `store` with the defaults.
    pub fn new(store: TierStore) -> Self {
        TieringOptions {
            store,
            after: Duration::from_secs(7 * 86_400),
            rules: Vec::new(),
            background: true,
            row_group_rows: 65_536,
            cache_bytes: 256 << 20,
            multipart_bytes: 64 << 20,
            disk_cache_bytes: 1 << 30,
            gc_grace: Duration::from_secs(3600),
        }
    }
}

/// A per-database or per-table tiering threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TieringRule {
    /// Database.
    pub database: String,
    /// Table, or `None` for every table of the database without a rule of its own.
    pub table: Option<String>,
    /// Partitions older than this move; `None` = never (stay local).
    pub after: Option<Duration>,
}

impl TieringOptions {
    /// The threshold for a table: its rule, its database's, or the default.
    pub fn after_for(&self, database: &str, table: &str) -> Option<Duration> {
        let table_rule = self.rules.iter().find(|r| r.database == database && r.table.as_deref() == Some(table));
        let db_rule = || self.rules.iter().find(|r| r.database == database && r.table.is_none());
        match table_rule.or_else(db_rule) {
            Some(r) => r.after,
            None => Some(self.after),
        }
    }
}

/// What a tiering run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TierReport {
    /// Partitions moved to the store.
    pub partitions: usize,
    /// Local segment files they were in (now gone).
    pub files: usize,
    /// Bytes of those segment files.
    pub segment_bytes: u64,
    /// Bytes of Parquet written to the store.
    pub object_bytes: u64,
    /// Rows moved.
    pub rows: u64,
    /// Time taken, in milliseconds.
    pub elapsed_ms: u64,
    /// Partitions that failed, with why (their files stay local).
    pub failures: Vec<String>,
    /// Cold files rewritten (or dropped) to purge deleted rows.
    pub cold_files_purged: usize,
    /// Unreferenced objects deleted (left by interrupted uploads).
    pub garbage_objects: usize,
}

/// Cold-tier counters.
#[derive(Debug, Default)]
pub(crate) struct TierCounters {
    pub(crate) uploads: std::sync::atomic::AtomicU64,
    pub(crate) upload_bytes: std::sync::atomic::AtomicU64,
    pub(crate) fetches: std::sync::atomic::AtomicU64,
    pub(crate) fetch_bytes: std::sync::atomic::AtomicU64,
    pub(crate) cache_hits: std::sync::atomic::AtomicU64,
    pub(crate) garbage_objects: std::sync::atomic::AtomicU64,
    pub(crate) checksum_failures: std::sync::atomic::AtomicU64,
    pub(crate) disk_cache_hits: std::sync::atomic::AtomicU64,
    /// Partitions whose tiering failed (they stay local; the next run retries them).
    pub(crate) failures: std::sync::atomic::AtomicU64,
}

/// The engine's connection to the cold tier: the store, a runtime for its
/// async I/O and a cache of decoded row groups.
#[derive(Debug)]
pub(crate) struct Tier {
    pub(crate) options: TieringOptions,
    io: IoRuntime,
    cache: Mutex<RowGroupCache>,
    /// Column chunks on local disk, when `disk_cache_bytes` > 0.
    pub(crate) disk: Option<Arc<DiskCache>>,
    pub(crate) counters: Arc<TierCounters>,
    /// Ids of retired cold files a running scan still holds.
    held: Arc<Mutex<std::collections::HashSet<u64>>>,
}

/// A small runtime for object-store I/O, usable from any thread: work is
/// spawned on it and waited for on a channel (never `block_on`, which would
/// panic on a thread of another runtime).
#[derive(Debug)]
pub(crate) struct IoRuntime {
    /// `Some` until dropped (shut down without blocking, so dropping it from
    /// inside another runtime does not panic).
    runtime: Option<tokio::runtime::Runtime>,
    pub(crate) handle: tokio::runtime::Handle,
}

impl IoRuntime {
    pub(crate) fn new(name: &str) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(name)
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("cannot start the object-store runtime: {e}")))?;
        let handle = runtime.handle().clone();
        Ok(IoRuntime { runtime: Some(runtime), handle })
    }

    /// Runs `f` on the runtime and waits for it.
    pub(crate) fn block<T: Send + 'static>(&self, f: impl Future<Output = T> + Send + 'static) -> Result<T> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.handle.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv().map_err(|_| Error::Internal("the object-store task ended without an answer".into()))
    }
}

impl Drop for IoRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Tier {
    pub(crate) fn new(options: TieringOptions, cache_dir: PathBuf) -> Result<Self> {
        let cache = Mutex::new(RowGroupCache::new(options.cache_bytes));
        let disk = match options.disk_cache_bytes {
            0 => None,
            cap => Some(Arc::new(DiskCache::open(cache_dir, cap)?)),
        };
        Ok(Tier {
            options,
            io: IoRuntime::new("telemark-tier")?,
            cache,
            disk,
            counters: Arc::default(),
            held: Arc::default(),
        })
    }

    fn block<T: Send + 'static>(&self, f: impl Future<Output = T> + Send + 'static) -> Result<T> {
        self.io.block(f)
    }

    /// Checks that the store answers (bucket exists, credentials work).
    pub(crate) fn check(&self) -> Result<()> {
        let store = self.options.store.store.clone();
        let prefix = self.options.store.prefix.clone();
        let what = self.options.store.description.clone();
        self.block(async move { store.list_with_delimiter(Some(&prefix)).await })?.map_err(|e| {
            Error::ObjectStore(format!(
                "{what} does not answer: {e}; check the bucket name, the credentials (AWS_ACCESS_KEY_ID, \
                 AWS_SECRET_ACCESS_KEY) and the endpoint (AWS_ENDPOINT_URL, AWS_ALLOW_HTTP for http://)"
            ))
        })?;
        Ok(())
    }

    /// Uploads a staged file (in one request, or as a multipart upload at or
    /// above `multipart_bytes`, aborted on failure) and verifies the stored
    /// object: its size by HEAD, then the CRC32C of a streamed read-back.
    fn upload(&self, relative: &str, file: &Staged, record_dir: &Path) -> Result<()> {
        let store = self.options.store.store.clone();
        let mp = self.options.store.multipart.clone();
        let path = self.options.store.path(relative);
        let (len, crc) = (file.size, file.crc);
        let local = file.path.clone();
        let multipart = len >= self.options.multipart_bytes;
        let record =
            record_dir.join(format!("{}.mpu", file.path.file_stem().and_then(|s| s.to_str()).unwrap_or("upload")));
        let shown = path.to_string();
        let sent = self
            .block(async move {
                let io = |e: std::io::Error| object_store::Error::Generic { store: "local stage", source: Box::new(e) };
                if multipart && let Some(mp) = mp {
                    // The upload's id is recorded before any part goes: a crash
                    // leaves the record, and the next open aborts the upload.
                    let id = mp.create_multipart(&path).await?;
                    std::fs::write(&record, format!("{path}\n{id}\n")).map_err(io)?;
                    let sent: object_store::Result<()> = async {
                        use std::io::Read;
                        let mut f = std::fs::File::open(&local).map_err(io)?;
                        let mut parts = Vec::new();
                        loop {
                            let mut buf = Vec::with_capacity(MULTIPART_PART_BYTES);
                            let n = (&mut f).take(MULTIPART_PART_BYTES as u64).read_to_end(&mut buf).map_err(io)?;
                            if n == 0 && !parts.is_empty() {
                                break;
                            }
                            parts.push(mp.put_part(&path, &id, parts.len(), PutPayload::from(buf)).await?);
                            crate::failpoint::hit("tier.part_uploaded");
                            if n < MULTIPART_PART_BYTES {
                                break;
                            }
                        }
                        mp.complete_multipart(&path, &id, parts).await?;
                        Ok(())
                    }
                    .await;
                    if sent.is_err() {
                        let _ = mp.abort_multipart(&path, &id).await;
                    }
                    let _ = std::fs::remove_file(&record);
                    sent?;
                } else if multipart {
                    let upload = store.put_multipart(&path).await?;
                    let mut w = object_store::WriteMultipart::new_with_chunk_size(upload, MULTIPART_PART_BYTES);
                    let sent: object_store::Result<()> = async {
                        use std::io::Read;
                        let mut f = std::fs::File::open(&local).map_err(io)?;
                        let mut buf = vec![0u8; 1 << 20];
                        loop {
                            let n = f.read(&mut buf).map_err(io)?;
                            if n == 0 {
                                break;
                            }
                            w.wait_for_capacity(4).await?;
                            w.write(&buf[..n]);
                        }
                        Ok(())
                    }
                    .await;
                    match sent {
                        Ok(()) => {
                            w.finish().await?;
                        }
                        Err(e) => {
                            w.abort().await?;
                            return Err(e);
                        }
                    }
                } else {
                    let data = std::fs::read(&local).map_err(io)?;
                    store.put(&path, PutPayload::from(data)).await?;
                }
                let meta = store.head(&path).await?;
                if meta.size != len {
                    return Ok(Err(format!("{path} holds {} bytes after upload, {len} were sent", meta.size)));
                }
                let mut stream = store.get(&path).await?.into_stream();
                let mut actual = 0u32;
                while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
                    actual = crc32c::crc32c_append(actual, &chunk?);
                }
                if actual != crc {
                    return Ok(Err(format!("{path} reads back with CRC32C {actual:#010x}, {crc:#010x} was sent")));
                }
                Ok::<_, object_store::Error>(Ok(()))
            })?
            .map_err(|e| Error::ObjectStore(format!("uploading {shown}: {e}")))
            .and_then(|verified| verified.map_err(|e| Error::ObjectStore(format!("verifying an upload: {e}"))));
        if let Err(e) = sent {
            // What reached the store is not trusted: remove it now rather
            // than leave it to garbage collection (which waits `gc_grace`).
            if let Err(d) = self.delete_object(relative) {
                tracing::warn!(object = %relative, error = %d, "removing a failed upload failed; garbage collection will");
            }
            return Err(e);
        }
        self.counters.uploads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.counters.upload_bytes.fetch_add(len, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Deletes an object; a missing object is not an error.
    pub(crate) fn delete_object(&self, relative: &str) -> Result<()> {
        let store = self.options.store.store.clone();
        let path = self.options.store.path(relative);
        let shown = path.to_string();
        match self.block(async move { store.delete(&path).await })? {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::ObjectStore(format!("deleting {shown}: {e}"))),
        }
    }

    /// One row group of a cold file, decoded, with the given columns.
    fn row_group(&self, cold: &ColdHandle, rg: usize, columns: &[usize]) -> Result<RecordBatch> {
        let key = (cold.entry.id, rg, columns.to_vec());
        if let Some(b) = lock(&self.cache).get(&key) {
            self.counters.cache_hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(b);
        }
        let store = self.options.store.store.clone();
        let path = self.options.store.path(&cold.entry.object);
        let shown = path.to_string();
        let meta = cold.metadata.clone();
        let mask = ProjectionMask::roots(meta.metadata().file_metadata().schema_descr(), columns.iter().copied());
        let reader = VerifiedReader {
            store,
            path,
            id: cold.entry.id,
            chunks: cold.chunks.clone(),
            metadata: cold.metadata.metadata().clone(),
            counters: self.counters.clone(),
            disk: self.disk.clone(),
        };
        let batches = self
            .block(async move {
                let stream = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, meta)
                    .with_row_groups(vec![rg])
                    .with_projection(mask)
                    .with_batch_size(1 << 20)
                    .build()?;
                stream.try_collect::<Vec<_>>().await
            })?
            .map_err(|e| Error::ObjectStore(format!("reading row group {rg} of {shown}: {e}")))?;
        let schema = batches.first().map(RecordBatch::schema).unwrap_or_else(|| Arc::new(Schema::empty()));
        let batch =
            arrow_select::concat::concat_batches(&schema, &batches).map_err(|e| Error::Internal(e.to_string()))?;
        let expected = cold.row_group_rows(rg);
        if batch.num_rows() as u64 != expected {
            return Err(Error::ObjectStore(format!(
                "row group {rg} of {shown} has {} rows, its metadata says {expected}: the object changed or is damaged",
                batch.num_rows()
            )));
        }
        self.counters.fetches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.counters.fetch_bytes.fetch_add(batch.get_array_memory_size() as u64, std::sync::atomic::Ordering::Relaxed);
        lock(&self.cache).put(key, batch.clone());
        Ok(batch)
    }

    /// The rows of one series of a cold file in `range`.
    pub(crate) fn read_series(
        &self,
        cold: &ColdHandle,
        series: usize,
        wanted: &[(usize, String, ColumnKind)],
        width: usize,
        range: TimeRange,
    ) -> Result<SeriesData> {
        let s = cold
            .index
            .series
            .get(series)
            .ok_or_else(|| Error::Internal(format!("cold series {series} out of range")))?;
        // Parquet columns to read: time, then each wanted field the file has.
        let mut columns = vec![0usize];
        let mut fields: Vec<(usize, FieldType, Option<usize>)> = Vec::with_capacity(wanted.len());
        for (id, name, kind) in wanted {
            let ColumnKind::Field(t) = kind else { continue };
            let at = cold.index.columns.iter().position(|c| c == name).map(|i| i + 1);
            if let Some(i) = at
                && !columns.contains(&i)
            {
                columns.push(i);
            }
            fields.push((*id, *t, at));
        }
        columns.sort_unstable();
        let mut out = SeriesData { times: Vec::with_capacity(s.rows as usize), columns: vec![None; width] };
        for (id, t, at) in &fields {
            if at.is_some()
                && let Some(slot) = out.columns.get_mut(*id)
            {
                *slot = Some(Column::with_capacity(*t, s.rows as usize));
            }
        }
        let (first, end) = (s.first_row, s.first_row + s.rows);
        for rg in cold.row_groups_for(first, end) {
            let rg_start = cold.row_group_starts.get(rg).copied().unwrap_or(0);
            let batch = self.row_group(cold, rg, &columns)?;
            let lo = (first.max(rg_start) - rg_start) as usize;
            let hi = ((end.min(rg_start + batch.num_rows() as u64)) - rg_start) as usize;
            let col_of = |parquet_index: usize| columns.iter().position(|c| *c == parquet_index);
            let times =
                batch.column(0).as_any().downcast_ref::<arrow_array::TimestampNanosecondArray>().ok_or_else(|| {
                    Error::ObjectStore("the time column of a cold file is not TIMESTAMP(NANOS)".into())
                })?;
            let keep: Vec<usize> = (lo..hi).filter(|&r| range.contains(times.value(r))).collect();
            out.times.extend(keep.iter().map(|&r| times.value(r)));
            for (id, t, at) in &fields {
                let Some(at) = at else { continue };
                let Some(ci) = col_of(*at) else { continue };
                let Some(Some(col)) = out.columns.get_mut(*id) else { continue };
                append_from_array(col, *t, batch.column(ci).as_ref(), &keep)?;
            }
        }
        Ok(out)
    }
}

/// Appends the rows `keep` of `array` to `col`.
fn append_from_array(col: &mut Column, t: FieldType, array: &dyn Array, keep: &[usize]) -> Result<()> {
    use arrow_array::cast::AsArray;
    let wrong = || Error::ObjectStore(format!("a cold column has type {}, expected {t:?}", array.data_type()));
    for &r in keep {
        col.valid.push(array.is_valid(r));
    }
    match (&mut col.values, t) {
        (Values::F64(v), FieldType::F64) => {
            let a = array.as_primitive_opt::<arrow_array::types::Float64Type>().ok_or_else(wrong)?;
            v.extend(keep.iter().map(|&r| a.value(r)));
        }
        (Values::I64(v), FieldType::I64) => {
            let a = array.as_primitive_opt::<arrow_array::types::Int64Type>().ok_or_else(wrong)?;
            v.extend(keep.iter().map(|&r| a.value(r)));
        }
        (Values::U64(v), FieldType::U64) => {
            let a = array.as_primitive_opt::<arrow_array::types::UInt64Type>().ok_or_else(wrong)?;
            v.extend(keep.iter().map(|&r| a.value(r)));
        }
        (Values::Bool(v), FieldType::Bool) => {
            let a = array.as_boolean_opt().ok_or_else(wrong)?;
            v.extend(keep.iter().map(|&r| a.value(r)));
        }
        (Values::Str(v), FieldType::String) => {
            let a = array.as_string_opt::<i32>().ok_or_else(wrong)?;
            v.extend(keep.iter().map(|&r| if a.is_valid(r) { a.value(r).to_string() } else { String::new() }));
        }
        _ => return Err(wrong()),
    }
    Ok(())
}

/// Reads a cold object for the Parquet decoder: ranged GETs of exactly the
/// column chunks it asks for, each checked against the CRC32C the local
/// index recorded at upload. A damaged or truncated response is an error,
/// never a wrong answer; a range that is not a whole column chunk is refused.
struct VerifiedReader {
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    /// The cold file's id (disk-cache keys).
    id: u64,
    chunks: Arc<HashMap<(u64, u64), u32>>,
    metadata: Arc<ParquetMetaData>,
    counters: Arc<TierCounters>,
    disk: Option<Arc<DiskCache>>,
}

impl VerifiedReader {
    fn check(&self, range: &std::ops::Range<u64>, data: &bytes::Bytes) -> parquet::errors::Result<()> {
        let err = |what: String| parquet::errors::ParquetError::General(format!("{}: {what}", self.path));
        let want = self
            .chunks
            .get(&(range.start, range.end))
            .ok_or_else(|| err(format!("bytes {range:?} are not a column chunk the index knows")))?;
        if data.len() as u64 != range.end - range.start {
            return Err(err(format!("bytes {range:?}: {} bytes arrived (truncated)", data.len())));
        }
        let got = crc32c::crc32c(data);
        if got != *want {
            self.counters.checksum_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(err(format!(
                "bytes {range:?}: CRC32C {got:#010x}, expected {want:#010x} (damaged in transit or in the store)"
            )));
        }
        Ok(())
    }
}

impl VerifiedReader {
    /// The ranges, from the disk cache where it holds a block that checks
    /// out (a damaged block is dropped and fetched again), the rest from the
    /// store in one coalesced request, each checked, then cached.
    async fn fetch(&self, ranges: &[std::ops::Range<u64>]) -> parquet::errors::Result<Vec<bytes::Bytes>> {
        let mut out: Vec<Option<bytes::Bytes>> = vec![None; ranges.len()];
        let mut missing = Vec::new();
        for (i, r) in ranges.iter().enumerate() {
            let want = self.chunks.get(&(r.start, r.end)).copied();
            match (&self.disk, want) {
                (Some(disk), Some(crc)) => match disk.get(self.id, r, crc) {
                    Some(b) => {
                        self.counters.disk_cache_hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        out[i] = Some(b);
                    }
                    None => missing.push(i),
                },
                _ => missing.push(i),
            }
        }
        if !missing.is_empty() {
            let wanted: Vec<_> = missing.iter().map(|&i| ranges[i].clone()).collect();
            let data = self
                .store
                .get_ranges(&self.path, &wanted)
                .await
                .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))?;
            for (&i, d) in missing.iter().zip(data) {
                self.check(&ranges[i], &d)?;
                if let Some(disk) = &self.disk {
                    disk.put(self.id, &ranges[i], &d);
                }
                out[i] = Some(d);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }
}

impl AsyncFileReader for VerifiedReader {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> futures::future::BoxFuture<'_, parquet::errors::Result<bytes::Bytes>> {
        Box::pin(async move {
            let mut got = self.fetch(std::slice::from_ref(&range)).await?;
            got.pop().ok_or_else(|| parquet::errors::ParquetError::General("no data for a range".into()))
        })
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> futures::future::BoxFuture<'_, parquet::errors::Result<Vec<bytes::Bytes>>> {
        Box::pin(async move { self.fetch(&ranges).await })
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> futures::future::BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        let m = self.metadata.clone();
        Box::pin(async move { Ok(m) })
    }
}

/// Column chunks of cold files on local disk, capped in bytes (least
/// recently used out first). A block is a plain file; it is served only if
/// its CRC32C equals the one the index recorded at upload, else it is
/// removed and fetched again. Survives restarts (rebuilt from the
/// directory at open); never part of a backup.
#[derive(Debug)]
pub(crate) struct DiskCache {
    dir: PathBuf,
    cap: u64,
    state: Mutex<DiskState>,
}

#[derive(Debug, Default)]
struct DiskState {
    used: u64,
    /// Block file name -> (size, last use tick).
    blocks: HashMap<String, (u64, u64)>,
    tick: u64,
}

impl DiskCache {
    pub(crate) fn open(dir: PathBuf, cap: u64) -> Result<Self> {
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let mut state = DiskState::default();
        for e in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let Ok(meta) = e.metadata() else { continue };
            if name.ends_with(".blk") {
                state.used += meta.len();
                state.blocks.insert(name, (meta.len(), 0));
            } else {
                let _ = std::fs::remove_file(e.path()); // a temporary file of a crashed write
            }
        }
        let cache = DiskCache { dir, cap, state: Mutex::new(state) };
        cache.evict();
        Ok(cache)
    }

    fn name(id: u64, r: &std::ops::Range<u64>) -> String {
        format!("{id}-{}-{}.blk", r.start, r.end - r.start)
    }

    fn get(&self, id: u64, r: &std::ops::Range<u64>, crc: u32) -> Option<bytes::Bytes> {
        let name = Self::name(id, r);
        {
            let mut s = lock(&self.state);
            s.tick += 1;
            let tick = s.tick;
            s.blocks.get_mut(&name)?.1 = tick;
        }
        let path = self.dir.join(&name);
        match std::fs::read(&path) {
            Ok(data) if data.len() as u64 == r.end - r.start && crc32c::crc32c(&data) == crc => Some(data.into()),
            _ => {
                tracing::warn!(block = %path.display(), "a cold-cache block is damaged or unreadable; fetching it again");
                self.remove(&name);
                None
            }
        }
    }

    fn put(&self, id: u64, r: &std::ops::Range<u64>, data: &[u8]) {
        let len = data.len() as u64;
        if len > self.cap {
            return;
        }
        let name = Self::name(id, r);
        let tmp = self.dir.join(format!("{name}.tmp"));
        // No fsync: a block torn by a crash fails its checksum and is fetched again.
        #[allow(clippy::disallowed_methods, reason = "cache blocks need no durability")]
        let written = std::fs::write(&tmp, data).and_then(|()| std::fs::rename(&tmp, self.dir.join(&name)));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
            return;
        }
        {
            let mut s = lock(&self.state);
            s.tick += 1;
            let tick = s.tick;
            if let Some(old) = s.blocks.insert(name, (len, tick)) {
                s.used -= old.0;
            }
            s.used += len;
        }
        self.evict();
    }

    fn remove(&self, name: &str) {
        let mut s = lock(&self.state);
        if let Some((len, _)) = s.blocks.remove(name) {
            s.used -= len;
        }
        let _ = std::fs::remove_file(self.dir.join(name));
    }

    /// Drops every block of a cold file (it was retired).
    fn forget(&self, id: u64) {
        let prefix = format!("{id}-");
        let names: Vec<String> = lock(&self.state).blocks.keys().filter(|n| n.starts_with(&prefix)).cloned().collect();
        for n in names {
            self.remove(&n);
        }
    }

    fn evict(&self) {
        loop {
            let victim = {
                let s = lock(&self.state);
                if s.used <= self.cap {
                    return;
                }
                s.blocks.iter().min_by_key(|(_, (_, t))| *t).map(|(n, _)| n.clone())
            };
            match victim {
                Some(n) => self.remove(&n),
                None => return,
            }
        }
    }

    pub(crate) fn used(&self) -> u64 {
        lock(&self.state).used
    }
}

/// A least-recently-used cache of decoded row groups, capped in bytes.
#[derive(Debug)]
struct RowGroupCache {
    cap: usize,
    used: usize,
    map: HashMap<(u64, usize, Vec<usize>), RecordBatch>,
    order: VecDeque<(u64, usize, Vec<usize>)>,
}

impl RowGroupCache {
    fn new(cap: usize) -> Self {
        RowGroupCache { cap, used: 0, map: HashMap::new(), order: VecDeque::new() }
    }

    fn get(&mut self, key: &(u64, usize, Vec<usize>)) -> Option<RecordBatch> {
        let b = self.map.get(key)?.clone();
        if let Some(i) = self.order.iter().position(|k| k == key) {
            let k = self.order.remove(i)?;
            self.order.push_back(k);
        }
        Some(b)
    }

    fn put(&mut self, key: (u64, usize, Vec<usize>), batch: RecordBatch) {
        let size = batch.get_array_memory_size();
        if size > self.cap || self.map.contains_key(&key) {
            return;
        }
        while self.used + size > self.cap {
            let Some(old) = self.order.pop_front() else { break };
            if let Some(b) = self.map.remove(&old) {
                self.used -= b.get_array_memory_size();
            }
        }
        self.used += size;
        self.order.push_back(key.clone());
        self.map.insert(key, batch);
    }

    /// Drops everything of one cold file (it was deleted or replaced).
    fn forget(&mut self, id: u64) {
        let gone: Vec<_> = self.map.keys().filter(|k| k.0 == id).cloned().collect();
        for k in gone {
            if let Some(b) = self.map.remove(&k) {
                self.used -= b.get_array_memory_size();
            }
        }
        self.order.retain(|k| k.0 != id);
    }
}

/// One series of a cold file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ColdSeries {
    pub(crate) tags: Vec<(String, String)>,
    pub(crate) first_row: u64,
    pub(crate) rows: u64,
    pub(crate) min_time: i64,
    pub(crate) max_time: i64,
}

/// What the local index file of a cold object holds besides its Parquet metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ColdIndex {
    /// Parquet columns after `time`, in file order.
    pub(crate) columns: Vec<String>,
    pub(crate) series: Vec<ColdSeries>,
    /// Every column chunk of the object: `[offset, length, CRC32C]`.
    pub(crate) chunks: Vec<[u64; 3]>,
}

/// A cold file as a scan sees it.
#[derive(Debug)]
pub(crate) struct ColdHandle {
    pub(crate) entry: ColdEntry,
    pub(crate) index: ColdIndex,
    keys: Vec<SeriesKey>,
    metadata: ArrowReaderMetadata,
    row_group_starts: Vec<u64>,
    /// `(start, end)` of every column chunk → its CRC32C.
    chunks: Arc<HashMap<(u64, u64), u32>>,
    /// Set when the file left the manifest: the last holder deletes it.
    retired: Mutex<Option<Retired>>,
}

/// How a retired cold file is deleted when its last holder drops it.
#[derive(Debug)]
struct Retired {
    store: Arc<dyn ObjectStore>,
    object: ObjectPath,
    index: std::path::PathBuf,
    runtime: tokio::runtime::Handle,
    held: Arc<Mutex<std::collections::HashSet<u64>>>,
}

impl Drop for ColdHandle {
    fn drop(&mut self) {
        let Some(r) = self.retired.get_mut().ok().and_then(Option::take) else { return };
        // Not fsynced: after a crash the index is unreferenced and open removes it.
        if let Err(e) = std::fs::remove_file(&r.index)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(file = %r.index.display(), error = %e, "cannot remove a retired cold index");
        }
        let id = self.entry.id;
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        // If the process dies first, garbage collection finds the object.
        r.runtime.spawn(async move {
            match r.store.delete(&r.object).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => tracing::warn!(object = %r.object, error = %e, "cannot delete a retired cold object"),
            }
            lock(&r.held).remove(&id);
            let _ = tx.send(());
        });
        // Outside any async runtime (the engine's own threads, a library
        // caller) wait for it, so the object is gone when the caller goes on;
        // on a runtime's thread, never block.
        if tokio::runtime::Handle::try_current().is_err() {
            let _ = rx.recv_timeout(std::time::Duration::from_secs(30));
        }
    }
}

impl ColdHandle {
    fn new(entry: ColdEntry, index: ColdIndex, metadata: ParquetMetaData) -> Result<Self> {
        let metadata = ArrowReaderMetadata::try_new(Arc::new(metadata), ArrowReaderOptions::new())
            .map_err(|e| Error::ObjectStore(format!("the Parquet metadata of {} is unusable: {e}", entry.object)))?;
        let mut row_group_starts = Vec::new();
        let mut at = 0u64;
        for rg in metadata.metadata().row_groups() {
            row_group_starts.push(at);
            at += rg.num_rows() as u64;
        }
        let keys = index.series.iter().map(|s| SeriesKey::new(s.tags.clone())).collect();
        let chunks = Arc::new(index.chunks.iter().map(|[o, l, c]| ((*o, o + l), *c as u32)).collect());
        Ok(ColdHandle { entry, index, keys, metadata, row_group_starts, chunks, retired: Mutex::new(None) })
    }

    /// The file left the manifest: delete its object and index once the
    /// last scan holding it is done.
    pub(crate) fn retire(&self, tier: &Tier, cold_dir: &Path) {
        lock(&tier.cache).forget(self.entry.id);
        if let Some(d) = &tier.disk {
            d.forget(self.entry.id);
        }
        lock(&tier.held).insert(self.entry.id);
        *lock(&self.retired) = Some(Retired {
            store: tier.options.store.store.clone(),
            object: tier.options.store.path(&self.entry.object),
            index: cold_dir.join(ColdEntry::index_name(self.entry.id)),
            runtime: tier.io.handle.clone(),
            held: tier.held.clone(),
        });
    }

    pub(crate) fn series_key(&self, i: usize) -> Option<&SeriesKey> {
        self.keys.get(i)
    }

    fn row_group_rows(&self, rg: usize) -> u64 {
        self.metadata.metadata().row_groups().get(rg).map_or(0, |r| r.num_rows() as u64)
    }

    /// Row groups holding any of the rows `first..end`.
    fn row_groups_for(&self, first: u64, end: u64) -> Vec<usize> {
        (0..self.row_group_starts.len())
            .filter(|&rg| {
                let start = self.row_group_starts[rg];
                start < end && start + self.row_group_rows(rg) > first
            })
            .collect()
    }

    /// True if a delete with these tag predicates and range may hide rows here.
    pub(crate) fn may_hold(&self, predicates: &[(String, Vec<String>)], range: TimeRange) -> bool {
        self.index.series.iter().zip(&self.keys).any(|(s, k)| {
            range.overlaps(s.min_time, s.max_time)
                && predicates.iter().all(|(tag, values)| k.get(tag).is_some_and(|v| values.iter().any(|x| x == v)))
        })
    }
}

// --- the local index file ----------------------------------------------------------------------

const INDEX_MAGIC: [u8; 8] = *b"TMKCOLD\0";
const INDEX_VERSION: u16 = 1;
const INDEX_HEADER: usize = 24;

/// `magic (8) | version u16 | reserved u16 | json_len u32 | metadata_len u32 | crc32c(rest) u32 | json | metadata`
fn encode_index(index: &ColdIndex, metadata: &[u8]) -> Result<Vec<u8>> {
    let json = serde_json::to_vec(index).map_err(|e| Error::Internal(format!("cold index: {e}")))?;
    let mut out = Vec::with_capacity(INDEX_HEADER + json.len() + metadata.len());
    out.extend_from_slice(&INDEX_MAGIC);
    out.extend_from_slice(&INDEX_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u32).to_le_bytes());
    let mut crc = crc32c::crc32c(&json);
    crc = crc32c::crc32c_append(crc, metadata);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(metadata);
    Ok(out)
}

fn decode_index(path: &Path, data: &[u8]) -> Result<(ColdIndex, ParquetMetaData)> {
    let corrupt = |offset: u64, detail: String| Error::Corruption {
        file: path.to_path_buf(),
        offset,
        detail,
        hint: "; the local index of a cold file is damaged".into(),
    };
    let u32_at = |i: usize| data.get(i..i + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    if data.len() < INDEX_HEADER || data.get(..8) != Some(&INDEX_MAGIC[..]) {
        return Err(corrupt(0, "not a Telemark cold index (bad magic or too short)".into()));
    }
    let version = u16::from_le_bytes([data[8], data[9]]);
    if data[10] != 0 || data[11] != 0 {
        return Err(corrupt(10, "reserved header bytes are not zero".into()));
    }
    if version != INDEX_VERSION {
        return Err(Error::UnsupportedVersion {
            file: path.to_path_buf(),
            format: "cold index",
            found: version,
            supported: INDEX_VERSION,
        });
    }
    let (json_len, meta_len, crc) = match (u32_at(12), u32_at(16), u32_at(20)) {
        (Some(a), Some(b), Some(c)) => (a as usize, b as usize, c),
        _ => return Err(corrupt(12, "truncated header".into())),
    };
    let body = &data[INDEX_HEADER..];
    if body.len() != json_len.saturating_add(meta_len) {
        return Err(corrupt(12, format!("lengths {json_len} + {meta_len} do not match the file")));
    }
    if crc32c::crc32c(body) != crc {
        return Err(corrupt(INDEX_HEADER as u64, "checksum mismatch".into()));
    }
    let (json, meta) = body.split_at(json_len);
    let index: ColdIndex =
        serde_json::from_slice(json).map_err(|e| corrupt(INDEX_HEADER as u64, format!("invalid body: {e}")))?;
    let metadata = ParquetMetaDataReader::decode_metadata(meta)
        .map_err(|e| corrupt((INDEX_HEADER + json_len) as u64, format!("invalid Parquet metadata: {e}")))?;
    Ok((index, metadata))
}

/// Opens the cold files of the manifest from their local index files.
pub(crate) fn open_cold(cold_dir: &Path, entry: &ColdEntry) -> Result<ColdHandle> {
    let path = cold_dir.join(ColdEntry::index_name(entry.id));
    let data = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let (index, metadata) = decode_index(&path, &data)?;
    ColdHandle::new(entry.clone(), index, metadata)
}

/// Aborts the multipart uploads a crash interrupted (their `.mpu` records
/// in `cold_dir`: the object path and the upload id), then drops the records.
pub(crate) fn abort_interrupted_uploads(tier: &Tier, cold_dir: &Path) -> Result<usize> {
    let mut aborted = 0;
    for e in std::fs::read_dir(cold_dir).map_err(|e| Error::io(cold_dir, e))?.flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "mpu") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        let mut lines = text.lines();
        if let (Some(path), Some(id), Some(mp)) = (lines.next(), lines.next(), tier.options.store.multipart.clone()) {
            let (path, id) = (ObjectPath::from(path), id.to_string());
            match tier.block(async move { mp.abort_multipart(&path, &id).await })? {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    tracing::warn!(record = %p.display(), error = %e, "could not abort an interrupted multipart upload; keeping its record");
                    continue;
                }
            }
            tracing::info!(object = %text.lines().next().unwrap_or(""), "aborted a multipart upload a crash interrupted");
            aborted += 1;
        }
        let _ = std::fs::remove_file(&p);
    }
    Ok(aborted)
}

/// Removes index files the manifest does not list (a tiering job that
/// crashed before its manifest swap).
pub(crate) fn remove_orphan_indexes(
    backend: &dyn crate::fs::FileBackend,
    cold_dir: &Path,
    known: &std::collections::HashSet<u64>,
) -> Result<()> {
    for e in std::fs::read_dir(cold_dir).map_err(|e| Error::io(cold_dir, e))? {
        let e = e.map_err(|e| Error::io(cold_dir, e))?;
        let name = e.file_name().to_string_lossy().to_string();
        if name.ends_with(".mpu") {
            continue; // an interrupted multipart upload, aborted once a store is configured
        }
        let id = name.strip_suffix(".tmc").and_then(|n| n.parse::<u64>().ok());
        if id.is_none_or(|id| !known.contains(&id)) {
            crate::fs::remove_durable(backend, &e.path())?;
        }
    }
    Ok(())
}

// --- writing Parquet ---------------------------------------------------------------------------

/// The Arrow schema of a cold file: `time` (TIMESTAMP(NANOS, UTC)), then the
/// table's columns in order (tags as strings).
fn cold_schema(table: &TableSchema) -> SchemaRef {
    let mut fields =
        vec![Field::new(TIME_COLUMN, DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())), false)];
    for c in table.columns() {
        let t = match c.kind {
            ColumnKind::Tag => DataType::Utf8,
            ColumnKind::Field(FieldType::F64) => DataType::Float64,
            ColumnKind::Field(FieldType::I64) => DataType::Int64,
            ColumnKind::Field(FieldType::U64) => DataType::UInt64,
            ColumnKind::Field(FieldType::Bool) => DataType::Boolean,
            ColumnKind::Field(FieldType::String) => DataType::Utf8,
        };
        fields.push(Field::new(&c.name, t, true));
    }
    Arc::new(Schema::new(fields))
}

enum Builder {
    Str(StringBuilder),
    F64(Float64Builder),
    I64(Int64Builder),
    U64(UInt64Builder),
    Bool(BooleanBuilder),
}

/// Accumulates series into record batches of the cold schema.
struct ColdBatcher {
    schema: SchemaRef,
    table: TableSchema,
    time: TimestampNanosecondBuilder,
    columns: Vec<Builder>,
    rows: usize,
}

impl ColdBatcher {
    fn new(table: &TableSchema) -> Self {
        let columns = table
            .columns()
            .iter()
            .map(|c| match c.kind {
                ColumnKind::Tag | ColumnKind::Field(FieldType::String) => Builder::Str(StringBuilder::new()),
                ColumnKind::Field(FieldType::F64) => Builder::F64(Float64Builder::new()),
                ColumnKind::Field(FieldType::I64) => Builder::I64(Int64Builder::new()),
                ColumnKind::Field(FieldType::U64) => Builder::U64(UInt64Builder::new()),
                ColumnKind::Field(FieldType::Bool) => Builder::Bool(BooleanBuilder::new()),
            })
            .collect();
        ColdBatcher {
            schema: cold_schema(table),
            table: table.clone(),
            time: TimestampNanosecondBuilder::new().with_timezone("UTC"),
            columns,
            rows: 0,
        }
    }

    fn add(&mut self, key: &SeriesKey, data: &SeriesData) {
        let n = data.times.len();
        self.time.append_slice(&data.times);
        for (i, (def, b)) in self.table.columns().iter().zip(&mut self.columns).enumerate() {
            match (def.kind, b) {
                (ColumnKind::Tag, Builder::Str(b)) => match key.get(&def.name) {
                    Some(v) => (0..n).for_each(|_| b.append_value(v)),
                    None => b.append_nulls(n),
                },
                (_, b) => {
                    let col = data.columns.get(i).and_then(Option::as_ref);
                    append_column(b, col, n);
                }
            }
        }
        self.rows += n;
    }

    fn finish(&mut self) -> Result<RecordBatch> {
        let mut arrays: Vec<ArrayRef> = vec![Arc::new(self.time.finish())];
        for b in &mut self.columns {
            arrays.push(match b {
                Builder::Str(b) => Arc::new(b.finish()),
                Builder::F64(b) => Arc::new(b.finish()),
                Builder::I64(b) => Arc::new(b.finish()),
                Builder::U64(b) => Arc::new(b.finish()),
                Builder::Bool(b) => Arc::new(b.finish()),
            });
        }
        self.rows = 0;
        RecordBatch::try_new(self.schema.clone(), arrays).map_err(|e| Error::Internal(format!("cold batch: {e}")))
    }
}

fn append_column(b: &mut Builder, col: Option<&Column>, n: usize) {
    let Some(col) = col else {
        match b {
            Builder::Str(b) => b.append_nulls(n),
            Builder::F64(b) => b.append_nulls(n),
            Builder::I64(b) => b.append_nulls(n),
            Builder::U64(b) => b.append_nulls(n),
            Builder::Bool(b) => b.append_nulls(n),
        }
        return;
    };
    let valid = |i: usize| col.valid.get(i).copied().unwrap_or(false);
    match (b, &col.values) {
        (Builder::Str(b), Values::Str(v)) => (0..n).for_each(|i| b.append_option(valid(i).then(|| v[i].as_str()))),
        (Builder::F64(b), Values::F64(v)) => (0..n).for_each(|i| b.append_option(valid(i).then(|| v[i]))),
        (Builder::I64(b), Values::I64(v)) => (0..n).for_each(|i| b.append_option(valid(i).then(|| v[i]))),
        (Builder::U64(b), Values::U64(v)) => (0..n).for_each(|i| b.append_option(valid(i).then(|| v[i]))),
        (Builder::Bool(b), Values::Bool(v)) => (0..n).for_each(|i| b.append_option(valid(i).then(|| v[i]))),
        (b, _) => append_column(b, None, n),
    }
}

/// `YYYY-MM-DD` of a time in nanoseconds (UTC), for Hive-style partition paths.
pub(crate) fn date_of(nanos: i64) -> String {
    let days = nanos.div_euclid(86_400 * 1_000_000_000);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// A Parquet file written to a local temporary file (removed on drop).
#[derive(Debug)]
struct Staged {
    path: PathBuf,
    size: u64,
    crc: u32,
    /// The Parquet metadata bytes (as in the footer).
    metadata: Vec<u8>,
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

static STAGE_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Writes the series `produce` hands over (in key order) as Parquet into a
/// temporary file in `dir`, one row group at a time (memory holds about one
/// row group): the file, its index and its row count. `sorted_by_tags`: no
/// series lacks a tag, so key order is a sort by the tag columns.
fn build_parquet(
    schema: &TableSchema,
    row_group_rows: usize,
    dir: &Path,
    sorted_by_tags: bool,
    produce: impl FnOnce(&mut dyn FnMut(&SeriesKey, SeriesData) -> Result<()>) -> Result<()>,
) -> Result<(Staged, ColdIndex, u64)> {
    let mut batcher = ColdBatcher::new(schema);
    let mut index = ColdIndex {
        columns: schema.columns().iter().map(|c| c.name.clone()).collect(),
        series: Vec::new(),
        chunks: Vec::new(),
    };
    let mut sorted_tags: Vec<&str> =
        schema.columns().iter().filter(|c| c.kind == ColumnKind::Tag).map(|c| c.name.as_str()).collect();
    sorted_tags.sort_unstable();
    // Series come in key order: tag names sorted, then values.
    let sorting = sorted_by_tags.then(|| {
        let mut cols: Vec<SortingColumn> = sorted_tags
            .iter()
            .filter_map(|t| index.columns.iter().position(|c| c == t))
            .map(|i| SortingColumn { column_idx: (i + 1) as i32, descending: false, nulls_first: true })
            .collect();
        cols.push(SortingColumn { column_idx: 0, descending: false, nulls_first: true });
        cols
    });
    // Time and integers delta-encoded, floats byte-stream-split (zstd then
    // finds the repeated exponent bytes); dictionaries for strings only.
    let mut props = WriterProperties::builder();
    for c in
        std::iter::once((TIME_COLUMN, None)).chain(schema.columns().iter().map(|c| (c.name.as_str(), Some(c.kind))))
    {
        let path = ColumnPath::from(c.0);
        let encoding = match c.1 {
            None | Some(ColumnKind::Field(FieldType::I64 | FieldType::U64)) => Encoding::DELTA_BINARY_PACKED,
            Some(ColumnKind::Field(FieldType::F64)) => Encoding::BYTE_STREAM_SPLIT,
            _ => continue,
        };
        props = props.set_column_dictionary_enabled(path.clone(), false).set_column_encoding(path, encoding);
    }
    let props = props
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).map_err(|e| Error::Internal(e.to_string()))?))
        // Row groups end where a series ends once they hold `row_group_rows`
        // (see below), so a one-series query reads one row group; only a
        // series longer than four times that is split.
        .set_max_row_group_row_count(Some(row_group_rows.max(1).saturating_mul(4)))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_sorting_columns(sorting)
        .set_key_value_metadata(Some(vec![parquet::file::metadata::KeyValue::new(
            "telemark.sort".to_string(),
            format!("series ({}), then time", sorted_tags.join(", ")),
        )]))
        .build();
    let n = STAGE_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!("stage-{}-{n}.parquet.tmp", std::process::id()));
    let mut staged = Staged { path, size: 0, crc: 0, metadata: Vec::new() };
    let file = std::fs::File::create(&staged.path).map_err(|e| Error::io(&staged.path, e))?;
    let parquet_err = |e: parquet::errors::ParquetError| Error::Internal(format!("writing Parquet: {e}"));
    let mut writer =
        ArrowWriter::try_new(std::io::BufWriter::with_capacity(1 << 20, file), batcher.schema.clone(), Some(props))
            .map_err(parquet_err)?;
    let mut rows = 0u64;
    produce(&mut |key: &SeriesKey, data: SeriesData| {
        if data.times.is_empty() {
            return Ok(());
        }
        index.series.push(ColdSeries {
            tags: key.tags().to_vec(),
            first_row: rows,
            rows: data.times.len() as u64,
            min_time: data.times.first().copied().unwrap_or(0),
            max_time: data.times.last().copied().unwrap_or(0),
        });
        rows += data.times.len() as u64;
        batcher.add(key, &data);
        if batcher.rows >= row_group_rows {
            // One row group per batch, ending where a series ends.
            writer.write(&batcher.finish()?).map_err(parquet_err)?;
            writer.flush().map_err(parquet_err)?;
        }
        Ok(())
    })?;
    if batcher.rows > 0 {
        writer.write(&batcher.finish()?).map_err(parquet_err)?;
    }
    let buffered = writer.into_inner().map_err(parquet_err)?;
    buffered.into_inner().map_err(|e| Error::io(&staged.path, e.into_error()))?;
    // Checksums of the whole file and of every column chunk, and the metadata.
    let data = std::fs::File::open(&staged.path).map_err(|e| Error::io(&staged.path, e))?;
    let size = data.metadata().map_err(|e| Error::io(&staged.path, e))?.len();
    let read_at = |offset: u64, len: u64| -> Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; usize::try_from(len).map_err(|_| Error::Internal("chunk too large".into()))?];
        data.read_exact_at(&mut buf, offset).map_err(|e| Error::io(&staged.path, e))?;
        Ok(buf)
    };
    let mut crc = 0u32;
    let mut at = 0u64;
    while at < size {
        let len = (size - at).min(8 << 20);
        crc = crc32c::crc32c_append(crc, &read_at(at, len)?);
        at += len;
    }
    let tail = read_at(size.saturating_sub(8), 8.min(size))?;
    if tail.len() < 8 || &tail[4..] != b"PAR1" {
        return Err(Error::Internal("the Parquet writer produced a file without a footer".into()));
    }
    let meta_len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    let metadata = read_at(size - 8 - meta_len.min(size - 8), meta_len)?;
    let written = ParquetMetaDataReader::decode_metadata(&metadata)
        .map_err(|e| Error::Internal(format!("decoding our own Parquet metadata: {e}")))?;
    for rg in written.row_groups() {
        for col in rg.columns() {
            let (start, len) = col.byte_range();
            index.chunks.push([start, len, u64::from(crc32c::crc32c(&read_at(start, len)?))]);
        }
    }
    (staged.size, staged.crc, staged.metadata) = (size, crc, metadata);
    Ok((staged, index, rows))
}

/// The Parquet metadata bytes of a whole file in memory.
#[cfg(test)]
fn footer_of(file: &[u8]) -> Result<&[u8]> {
    let n = file.len();
    let bad = || Error::Internal("the Parquet writer produced a file without a footer".into());
    if n < 12 || &file[n - 4..] != b"PAR1" {
        return Err(bad());
    }
    let len = u32::from_le_bytes([file[n - 8], file[n - 7], file[n - 6], file[n - 5]]) as usize;
    file.get(n - 8 - len.min(n - 8)..n - 8).filter(|m| m.len() == len).ok_or_else(bad)
}

// --- the tiering job ---------------------------------------------------------------------------

/// Moves every partition that ended before `now - after` to the store.
pub(crate) fn run(inner: &Inner, tier: &Tier, database: Option<&str>) -> Result<TierReport> {
    let started = Instant::now();
    let _one_job = lock(&inner.compaction_lock);
    let mut report = TierReport::default();
    let now = crate::delete::now_nanos();
    let width = inner.options.partition_nanos();
    // (db, table, partition) -> its segments, in precedence order.
    let mut jobs: BTreeMap<(String, String, i64), Vec<Arc<SegmentHandle>>> = BTreeMap::new();
    for ((db, table), list) in &read(&inner.state).segments {
        if database.is_some_and(|d| d != db) {
            continue;
        }
        let Some(after) = tier.options.after_for(db, table) else { continue };
        let cut = now.saturating_sub(i64::try_from(after.as_nanos()).unwrap_or(i64::MAX));
        for h in list {
            if h.entry.partition_start.saturating_add(width) <= cut {
                jobs.entry((db.clone(), table.clone(), h.entry.partition_start)).or_default().push(h.clone());
            }
        }
    }
    for ((db, table, partition), inputs) in jobs {
        match tier_partition(inner, tier, &db, &table, partition, &inputs) {
            Ok(Some((object_bytes, rows))) => {
                report.partitions += 1;
                report.files += inputs.len();
                report.segment_bytes += inputs.iter().map(|h| h.entry.bytes).sum::<u64>();
                report.object_bytes += object_bytes;
                report.rows += rows;
            }
            Ok(None) => {}
            Err(e) => {
                tier.counters.failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::error!(database = %db, table = %table, partition, error = %e, "tiering a partition failed; its files stay local");
                report.failures.push(format!("{db}.{table} partition {}: {e}", date_of(partition)));
            }
        }
    }
    report.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    if report.partitions > 0 {
        tracing::info!(
            partitions = report.partitions,
            files = report.files,
            bytes = report.object_bytes,
            "tiered partitions to object storage"
        );
    }
    Ok(report)
}

/// Tiers one partition; `None` if every row in it was deleted or expired
/// (its files are then simply dropped by the next compaction).
fn tier_partition(
    inner: &Inner,
    tier: &Tier,
    db: &str,
    table: &str,
    partition: i64,
    inputs: &[Arc<SegmentHandle>],
) -> Result<Option<(u64, u64)>> {
    let schema = crate::compaction::table_schema(inner, db, table)?;
    let applied_seq = read(&inner.state).applied_seq;
    let tags: Vec<&str> =
        schema.columns().iter().filter(|c| c.kind == ColumnKind::Tag).map(|c| c.name.as_str()).collect();
    let sorted_by_tags = inputs.iter().all(|h| {
        (0..h.reader.footer().series.len() as u32).all(|i| {
            let k = h.reader.series_key(i);
            tags.iter().all(|t| k.get(t).is_some())
        })
    });
    let (file, index, rows) =
        build_parquet(&schema, tier.options.row_group_rows, &inner.cold_dir, sorted_by_tags, |emit| {
            crate::compaction::for_each_merged_series(inner, db, table, inputs, &schema, |key, data, _| emit(key, data))
        })?;
    if rows == 0 {
        return Ok(None);
    }
    let seqs = (
        inputs.iter().map(|h| h.entry.min_seq).min().unwrap_or(0),
        inputs.iter().map(|h| h.entry.max_seq).max().unwrap_or(0),
        applied_seq,
    );
    let bytes = file.size;
    install(inner, tier, db, table, partition, file, index, rows, seqs, Replaces::Segments(inputs))?;
    Ok(Some((bytes, rows)))
}

/// What a new cold file takes the place of.
enum Replaces<'a> {
    /// The segments of the partition it tiers.
    Segments(&'a [Arc<SegmentHandle>]),
    /// An older version of itself (a purge rewrote it).
    Cold(&'a Arc<ColdHandle>),
}

/// Uploads and verifies a cold file, writes its index, swaps the manifest
/// and retires what it replaces. `seqs` = (min_seq, max_seq, purged_seq).
#[allow(clippy::too_many_arguments)]
fn install(
    inner: &Inner,
    tier: &Tier,
    db: &str,
    table: &str,
    partition: i64,
    file: Staged,
    index: ColdIndex,
    rows: u64,
    seqs: (u64, u64, u64),
    replaces: Replaces<'_>,
) -> Result<()> {
    // The id is stored before the upload: an object a crash leaves behind
    // then has an id below the manifest's next id, so the garbage
    // collection at the next open recognises it as ours and unreferenced.
    let id = {
        let mut m = lock(&inner.manifest);
        let id = m.next_segment_id;
        let mut next = m.clone();
        next.next_segment_id += 1;
        next.store(inner.backend.as_ref(), &inner.dir)?;
        *m = next;
        id
    };
    let object = object_name(db, table, partition, id);
    let (crc, bytes) = (file.crc, file.size);
    tier.upload(&object, &file, &inner.cold_dir)?;
    let metadata_bytes = std::mem::take(&mut { file }.metadata);
    crate::failpoint::hit("tier.uploaded");
    let metadata = ParquetMetaDataReader::decode_metadata(&metadata_bytes)
        .map_err(|e| Error::Internal(format!("decoding our own Parquet metadata: {e}")))?;
    let entry = ColdEntry {
        id,
        partition_start: partition,
        min_time: index.series.iter().map(|s| s.min_time).min().unwrap_or(0),
        max_time: index.series.iter().map(|s| s.max_time).max().unwrap_or(0),
        rows,
        bytes,
        crc32c: crc,
        object,
        min_seq: seqs.0,
        max_seq: seqs.1,
        purged_seq: seqs.2,
    };
    let index_bytes = encode_index(&index, &metadata_bytes)?;
    crate::fs::write_atomic(inner.backend.as_ref(), &inner.cold_dir.join(ColdEntry::index_name(id)), &index_bytes)?;
    crate::failpoint::hit("tier.index_written");
    let handle = Arc::new(ColdHandle::new(entry.clone(), index, metadata)?);
    let (segment_ids, cold_id): (Vec<u64>, Option<u64>) = match &replaces {
        Replaces::Segments(inputs) => (inputs.iter().map(|h| h.entry.id).collect(), None),
        Replaces::Cold(old) => (Vec::new(), Some(old.entry.id)),
    };
    {
        let mut manifest = lock(&inner.manifest);
        let mut next = manifest.clone();
        let t = next
            .databases
            .get_mut(db)
            .and_then(|d| d.tables.get_mut(table))
            .ok_or_else(|| Error::Internal(format!("table {db}.{table} left the manifest while tiering")))?;
        t.segments.retain(|s| !segment_ids.contains(&s.id));
        t.cold.retain(|c| Some(c.id) != cold_id);
        t.cold.push(entry);
        let mut state = write(&inner.state);
        let key = (db.to_string(), table.to_string());
        if let Some(list) = state.segments.get_mut(&key) {
            list.retain(|h| !segment_ids.contains(&h.entry.id));
        }
        state.segments.retain(|_, l| !l.is_empty());
        let cold = state.cold.entry(key).or_default();
        cold.retain(|h| Some(h.entry.id) != cold_id);
        cold.push(handle);
        inner.settle_tombstones(&mut next, &mut state);
        drop(state);
        if let Err(e) = next.store(inner.backend.as_ref(), &inner.dir) {
            inner.poison(format!("storing the manifest after tiering failed: {e}"));
            return Err(e);
        }
        *manifest = next;
    }
    crate::failpoint::hit("tier.manifest_swapped");
    match replaces {
        Replaces::Segments(inputs) => inputs.iter().for_each(|h| h.reader.mark_obsolete()),
        Replaces::Cold(old) => old.retire(tier, &inner.cold_dir),
    }
    Ok(())
}

/// `<db>/<table>/date=YYYY-MM-DD/<table>-<partition>-<id>.parquet`
fn object_name(db: &str, table: &str, partition: i64, id: u64) -> String {
    format!("{db}/{table}/date={}/{table}-{partition}-{id}.parquet", date_of(partition))
}

/// The id in an object name `object_name` made.
fn id_of_object(name: &str) -> Option<u64> {
    name.rsplit('/').next()?.strip_suffix(".parquet")?.rsplit('-').next()?.parse().ok()
}

/// Rewrites the cold files that hold rows of a pending delete without them,
/// so the rows are gone from object storage too (the delete then moves to
/// the delete log). Returns the files rewritten.
pub(crate) fn purge(inner: &Inner, tier: &Tier, database: Option<&str>) -> Result<usize> {
    let _one_job = lock(&inner.compaction_lock);
    let work: Vec<(String, String, Arc<ColdHandle>)> = {
        let state = read(&inner.state);
        let mut v = Vec::new();
        for ((db, table), list) in &state.cold {
            if database.is_some_and(|d| d != db) {
                continue;
            }
            for h in list {
                let hit = state.tombstones.iter().any(|t| {
                    t.is_for(db, table)
                        && t.applies_to(h.entry.max_seq, h.entry.purged_seq)
                        && h.may_hold(&t.tags, t.range())
                });
                if hit {
                    v.push((db.clone(), table.clone(), h.clone()));
                }
            }
        }
        v
    };
    let mut done = 0;
    for (db, table, old) in work {
        let schema = crate::compaction::table_schema(inner, &db, &table)?;
        let (tombstones, applied_seq) = {
            let s = read(&inner.state);
            (s.tombstones.iter().filter(|t| t.is_for(&db, &table)).cloned().collect::<Vec<_>>(), s.applied_seq)
        };
        let wanted = schema.field_columns();
        let tags: Vec<&str> =
            schema.columns().iter().filter(|c| c.kind == ColumnKind::Tag).map(|c| c.name.as_str()).collect();
        let sorted_by_tags = old.keys.iter().all(|k| tags.iter().all(|t| k.get(t).is_some()));
        let (file, index, rows) =
            build_parquet(&schema, tier.options.row_group_rows, &inner.cold_dir, sorted_by_tags, |emit| {
                for i in 0..old.index.series.len() {
                    let Some(key) = old.series_key(i) else { continue };
                    let mut data = tier.read_series(&old, i, &wanted, schema.len(), TimeRange::ALL)?;
                    let hidden = crate::delete::hidden_ranges(
                        &tombstones,
                        &db,
                        &table,
                        key,
                        old.entry.max_seq,
                        old.entry.purged_seq,
                    );
                    crate::delete::retain_rows(&mut data, &hidden, i64::MIN);
                    emit(key, data)?;
                }
                Ok(())
            })?;
        let seqs = (old.entry.min_seq, old.entry.max_seq, applied_seq);
        if rows == 0 {
            drop_cold(inner, tier, &db, &table, &old)?;
        } else {
            install(
                inner,
                tier,
                &db,
                &table,
                old.entry.partition_start,
                file,
                index,
                rows,
                seqs,
                Replaces::Cold(&old),
            )?;
        }
        tracing::info!(database = %db, table = %table, object = %old.entry.object, rows, "purged deleted rows from a cold file");
        done += 1;
    }
    Ok(done)
}

/// Removes a cold file every row of which was deleted.
fn drop_cold(inner: &Inner, tier: &Tier, db: &str, table: &str, old: &Arc<ColdHandle>) -> Result<()> {
    let mut manifest = lock(&inner.manifest);
    let mut next = manifest.clone();
    if let Some(t) = next.databases.get_mut(db).and_then(|d| d.tables.get_mut(table)) {
        t.cold.retain(|c| c.id != old.entry.id);
    }
    let mut state = write(&inner.state);
    if let Some(list) = state.cold.get_mut(&(db.to_string(), table.to_string())) {
        list.retain(|h| h.entry.id != old.entry.id);
    }
    inner.settle_tombstones(&mut next, &mut state);
    drop(state);
    if let Err(e) = next.store(inner.backend.as_ref(), &inner.dir) {
        inner.poison(format!("storing the manifest after a cold purge failed: {e}"));
        return Err(e);
    }
    *manifest = next;
    drop(manifest);
    old.retire(tier, &inner.cold_dir);
    Ok(())
}

/// Deletes objects under the prefix that no cold entry references: uploads
/// of jobs that crashed before their manifest swap, and files retired while
/// the process died before deleting them. Runs under the job lock, so no
/// upload of this process is in flight; objects still read by a running
/// scan (retired but held) are kept; objects whose id is not below the
/// manifest's next id (another writer's, or not ours) are never touched.
/// Object modification times are not trusted for anything.
pub(crate) fn collect_garbage(inner: &Inner, tier: &Tier) -> Result<usize> {
    let _one_job = lock(&inner.compaction_lock);
    let (referenced, next_id): (std::collections::HashSet<String>, u64) = {
        let m = lock(&inner.manifest);
        let refs = m.databases.values().flat_map(|d| d.tables.values()).flat_map(|t| t.cold.iter());
        (refs.map(|c| c.object.clone()).collect(), m.next_segment_id)
    };
    let held = lock(&tier.held).clone();
    let store = tier.options.store.store.clone();
    let prefix = tier.options.store.prefix.clone();
    let listed: Vec<object_store::ObjectMeta> = tier
        .block(async move { store.list(Some(&prefix)).try_collect::<Vec<_>>().await })?
        .map_err(|e| Error::ObjectStore(format!("listing {}: {e}", tier.options.store.description)))?;
    let prefix_len = tier.options.store.prefix.as_ref().len();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let grace_ms = i64::try_from(tier.options.gc_grace.as_millis()).unwrap_or(i64::MAX);
    let mut removed = 0;
    for meta in listed {
        let full = meta.location.as_ref();
        let relative = full.get(prefix_len..).unwrap_or(full).trim_start_matches('/');
        let Some(id) = id_of_object(relative) else { continue };
        if referenced.contains(relative) || held.contains(&id) || id >= next_id {
            continue;
        }
        if now_ms.saturating_sub(meta.last_modified.timestamp_millis()) < grace_ms {
            tracing::debug!(object = %full, "an unreferenced cold object is younger than gc_grace; kept for now");
            continue;
        }
        tier.delete_object(relative)?;
        crate::failpoint::hit("tier.garbage_deleted");
        tracing::info!(object = %full, "deleted an unreferenced cold object");
        removed += 1;
    }
    tier.counters.garbage_objects.fetch_add(removed as u64, std::sync::atomic::Ordering::Relaxed);
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_specific_rule_sets_the_threshold() {
        let mut o = TieringOptions::new(TierStore::from_url("memory://").unwrap());
        let day = Duration::from_secs(86_400);
        o.rules = vec![
            TieringRule { database: "fleet".into(), table: Some("positions".into()), after: Some(30 * day) },
            TieringRule { database: "fleet".into(), table: None, after: Some(day) },
            TieringRule { database: "lab".into(), table: None, after: None },
        ];
        assert_eq!(o.after_for("fleet", "positions"), Some(30 * day));
        assert_eq!(o.after_for("fleet", "readings"), Some(day));
        assert_eq!(o.after_for("lab", "anything"), None);
        assert_eq!(o.after_for("other", "t"), Some(7 * day));
    }

    #[test]
    fn dates_of_partitions() {
        assert_eq!(date_of(0), "1970-01-01");
        assert_eq!(date_of(1_733_000_000 * 1_000_000_000), "2024-11-30");
        assert_eq!(date_of(951_782_400 * 1_000_000_000), "2000-02-29");
        assert_eq!(date_of(-1), "1969-12-31");
    }

    #[test]
    fn index_round_trip_and_damage() {
        let index = ColdIndex {
            columns: vec!["device".into(), "v".into()],
            series: vec![ColdSeries {
                tags: vec![("device".into(), "a".into())],
                first_row: 0,
                rows: 3,
                min_time: 1,
                max_time: 3,
            }],
            chunks: vec![[4, 100, 0xdead_beef]],
        };
        // A real Parquet footer from a tiny file.
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(arrow_array::Int64Array::from(vec![1, 2]))]).unwrap();
        let mut buf = Vec::new();
        let mut w = ArrowWriter::try_new(&mut buf, schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let meta = footer_of(&buf).unwrap().to_vec();
        let bytes = encode_index(&index, &meta).unwrap();
        let p = Path::new("x.tmc");
        let (back, m) = decode_index(p, &bytes).unwrap();
        assert_eq!(back, index);
        assert_eq!(m.file_metadata().num_rows(), 2);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(decode_index(p, &bad).is_err(), "a flipped bit at {i} was not noticed");
        }
        for n in 0..bytes.len() {
            assert!(decode_index(p, &bytes[..n]).is_err());
        }
    }
}
