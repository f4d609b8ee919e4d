//! The server's own metrics, in Prometheus text format at `GET /metrics`.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use telemark_engine::DatabaseStats;

const BUCKETS: [f64; 11] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// Counters and a latency histogram.
#[derive(Debug, Default)]
pub struct Metrics {
    queries: AtomicU64,
    /// Query latency histogram: counts per bucket (plus +Inf), sum in ns.
    latency: Mutex<([u64; BUCKETS.len() + 1], u64)>,
    /// Errors by kind label.
    errors: Mutex<std::collections::BTreeMap<(&'static str, &'static str), u64>>,
    http_requests: AtomicU64,
    flight_requests: AtomicU64,
}

impl Metrics {
    /// Records a finished query.
    pub fn query(&self, took: Duration) {
        self.queries.fetch_add(1, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        let mut h = self.latency.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let i = BUCKETS.iter().position(|b| secs <= *b).unwrap_or(BUCKETS.len());
        if let Some(c) = h.0.get_mut(i) {
            *c += 1;
        }
        h.1 += u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
    }

    /// Records an error returned to a client.
    pub fn error(&self, interface: &'static str, kind: crate::errors::Kind) {
        *self
            .errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry((interface, kind.label()))
            .or_default() += 1;
    }

    /// Counts a request.
    pub fn request(&self, interface: &'static str) {
        match interface {
            "http" => self.http_requests.fetch_add(1, Ordering::Relaxed),
            _ => self.flight_requests.fetch_add(1, Ordering::Relaxed),
        };
    }

    /// Renders everything, with the engine's counters.
    pub fn render(
        &self,
        db: &DatabaseStats,
        partitions: &[telemark_engine::PartitionFiles],
        ingest: &telemark_ingest::stats::IngestStats,
        alerts: Option<&telemark_ingest::alerts::Alerts>,
        last_value_bytes: u64,
    ) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, lines: &[(String, String)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in lines {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        let one = |v: u64| vec![(String::new(), v.to_string())];
        for (name, help, v) in ingest.counters() {
            metric(name, "counter", help, &one(v));
        }
        metric(
            "telemark_mqtt_connections",
            "gauge",
            "MQTT connections open now.",
            &[(String::new(), ingest.connections().to_string())],
        );
        metric("telemark_rows_written_total", "counter", "Rows written since start.", &one(db.rows_written));
        metric("telemark_queries_total", "counter", "SQL queries run.", &one(self.queries.load(Ordering::Relaxed)));
        metric(
            "telemark_requests_total",
            "counter",
            "Requests by interface.",
            &[
                ("{interface=\"http\"}".into(), self.http_requests.load(Ordering::Relaxed).to_string()),
                ("{interface=\"flight\"}".into(), self.flight_requests.load(Ordering::Relaxed).to_string()),
            ],
        );
        {
            let h = self.latency.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut lines = Vec::new();
            let mut cumulative = 0;
            for (i, b) in BUCKETS.iter().enumerate() {
                cumulative += h.0.get(i).copied().unwrap_or(0);
                lines.push((format!("_bucket{{le=\"{b}\"}}"), cumulative.to_string()));
            }
            cumulative += h.0.get(BUCKETS.len()).copied().unwrap_or(0);
            lines.push(("_bucket{le=\"+Inf\"}".into(), cumulative.to_string()));
            lines.push(("_sum".into(), format!("{}", h.1 as f64 / 1e9)));
            lines.push(("_count".into(), cumulative.to_string()));
            metric("telemark_query_duration_seconds", "histogram", "SQL query latency.", &lines);
        }
        metric("telemark_wal_fsyncs_total", "counter", "WAL fsyncs (one per group commit).", &one(db.wal_syncs));
        metric(
            "telemark_wal_fsync_seconds_total",
            "counter",
            "Time spent in WAL fsyncs.",
            &[(String::new(), format!("{}", db.wal_sync_nanos as f64 / 1e9))],
        );
        metric(
            "telemark_buffer_bytes",
            "gauge",
            "Approximate bytes in the write buffer.",
            &one(db.buffered_bytes as u64),
        );
        metric("telemark_buffer_rows", "gauge", "Rows in the write buffer.", &one(db.buffered_rows as u64));
        metric("telemark_segments", "gauge", "Segment files.", &one(db.segments as u64));
        metric("telemark_last_value_series", "gauge", "Series in the last-value cache.", &one(db.last_value_series));
        metric(
            "telemark_last_value_bytes",
            "gauge",
            "Approximate bytes of the last-value cache.",
            &one(last_value_bytes),
        );
        metric("telemark_segment_bytes", "gauge", "Bytes of segment files.", &one(db.segment_bytes));
        metric("telemark_flushes_total", "counter", "Write buffer flushes.", &one(db.flushes));
        metric("telemark_compactions_total", "counter", "Compaction jobs finished.", &one(db.compactions));
        metric(
            "telemark_compaction_failures_total",
            "counter",
            "Compaction jobs that failed (their files stay as they were).",
            &one(db.compaction_failures),
        );
        metric(
            "telemark_compaction_bytes_total",
            "counter",
            "Bytes of segment chunks read and of segment files written by compaction.",
            &[
                ("{direction=\"read\"}".into(), db.compaction_bytes_read.to_string()),
                ("{direction=\"written\"}".into(), db.compaction_bytes_written.to_string()),
            ],
        );
        metric(
            "telemark_compaction_seconds_total",
            "counter",
            "Time spent in compaction jobs.",
            &[(String::new(), format!("{}", db.compaction_nanos as f64 / 1e9))],
        );
        metric("telemark_partitions", "gauge", "Time partitions with segment files.", &one(partitions.len() as u64));
        metric(
            "telemark_partition_files_max",
            "gauge",
            "Most segment files in one time partition.",
            &one(partitions.iter().map(|p| p.files as u64).max().unwrap_or(0)),
        );
        metric(
            "telemark_retention_files_dropped_total",
            "counter",
            "Segment files dropped by retention.",
            &one(db.retention_files_dropped),
        );
        metric(
            "telemark_retention_rows_refused_total",
            "counter",
            "Rows refused on write because they were older than retention.",
            &one(db.retention_rows_refused),
        );
        metric("telemark_deletes_total", "counter", "Deletes logged.", &one(db.deletes));
        metric(
            "telemark_deletes_pending",
            "gauge",
            "Deletes whose rows are still in some segment file (hidden from queries).",
            &one(db.deletes_pending as u64),
        );
        metric(
            "telemark_write_stalls_total",
            "counter",
            "Writes that waited for the write buffer to drain (backpressure).",
            &one(db.write_stalls),
        );
        metric(
            "telemark_write_stall_seconds_total",
            "counter",
            "Time writers waited for the write buffer to drain.",
            &[(String::new(), format!("{}", db.write_stall_nanos as f64 / 1e9))],
        );
        for (name, kind, help, v) in [
            ("telemark_cold_files", "gauge", "Partitions in object storage.", db.cold_files as u64),
            ("telemark_cold_bytes", "gauge", "Bytes of partitions in object storage.", db.cold_bytes),
            ("telemark_tier_uploads_total", "counter", "Cold files uploaded and verified.", db.tier_uploads),
            ("telemark_tier_upload_bytes_total", "counter", "Bytes uploaded to object storage.", db.tier_upload_bytes),
            ("telemark_tier_fetches_total", "counter", "Row groups fetched from object storage.", db.tier_fetches),
            ("telemark_tier_fetch_bytes_total", "counter", "Decoded bytes of row groups fetched.", db.tier_fetch_bytes),
            ("telemark_tier_cache_hits_total", "counter", "Cold row groups served from the cache.", db.tier_cache_hits),
            (
                "telemark_tier_garbage_objects_total",
                "counter",
                "Unreferenced objects deleted by garbage collection.",
                db.tier_garbage_objects,
            ),
            (
                "telemark_tier_failures_total",
                "counter",
                "Partitions whose tiering failed; they stay local and the next run retries them.",
                db.tier_failures,
            ),
            ("telemark_tier_requests_total", "counter", "HTTP requests made to object storage.", db.tier_requests),
            (
                "telemark_tier_request_retries_total",
                "counter",
                "Object-storage requests that failed and were retried (connection errors, timeouts, HTTP 5xx, 429).",
                db.tier_request_retries,
            ),
            (
                "telemark_tier_disk_cache_hits_total",
                "counter",
                "Cold column chunks served from the disk cache.",
                db.tier_disk_cache_hits,
            ),
            (
                "telemark_tier_disk_cache_bytes",
                "gauge",
                "Bytes in the disk cache of cold data.",
                db.tier_disk_cache_bytes,
            ),
            (
                "telemark_tier_checksum_failures_total",
                "counter",
                "Column chunks from object storage that failed their checksum (refused, never served).",
                db.tier_checksum_failures,
            ),
        ] {
            metric(name, kind, help, &one(v));
        }
        metric(
            "telemark_buffer_peak_bytes",
            "gauge",
            "The most bytes the write buffer has held since start.",
            &one(db.buffered_bytes_peak),
        );
        for (name, kind, help, v) in alerts.map(telemark_ingest::alerts::Alerts::counters).unwrap_or_default() {
            metric(name, kind, help, &one(v));
        }
        let errors = self.errors.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let lines: Vec<_> =
            errors.iter().map(|((i, k), v)| (format!("{{interface=\"{i}\",kind=\"{k}\"}}"), v.to_string())).collect();
        metric("telemark_errors_total", "counter", "Errors returned to clients, by interface and kind.", &lines);
        out
    }
}
