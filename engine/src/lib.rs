//! # telemark-engine
//!
//! The storage engine of Telemark, a time-series database for fleets of
//! connected devices, usable as a library inside another Rust program.
//!
//! It is: a write-ahead log with group commit, a write buffer that scans
//! read at once, immutable columnar segment files compressed per series and
//! column (Gorilla timestamps and floats, delta/zig-zag/bit-packed integers,
//! dictionary + zstd strings), a checksummed manifest, and a scan API that
//! yields Arrow record batches.
//!
//! It keeps itself in bounds: background [`compaction`] merges a time
//! partition's files series by series (last write wins, crash-safe),
//! [`retention`] hides, refuses and drops rows older than a table's keep
//! period by the wall clock, [`Database::delete`] removes a device's rows
//! at once (compaction then purges them from disk), and writers wait when
//! flushing falls behind ([`Options::max_buffer_memory`]).
//!
//! It is not: a network server, a SQL engine or a protocol parser. Those
//! live in `telemark-server` and `telemark-ingest`, which build on this
//! crate; nothing here knows of HTTP, MQTT or gRPC.
//!
//! ## Data model
//!
//! A data directory holds databases; a database holds tables; a row has a
//! `time` (i64 nanoseconds since the Unix epoch, UTC), tags (strings whose
//! sorted set identifies the row's series) and typed fields. Schemas grow on
//! write. The same series and time written twice: the last write wins, field
//! by field.
//!
//! ## Example
//!
//! ```
//! use telemark_engine::{Database, Options, ScanRequest, WriteBatch};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let db = Database::open(dir.path(), Options::default())?;
//!
//! let mut batch = WriteBatch::new("readings");
//! batch.row(1_700_000_000_000_000_000).tag("device_id", "truck-1").field("speed", 61.5);
//! batch.row(1_700_000_010_000_000_000).tag("device_id", "truck-1").field("speed", 63.0);
//! let outcome = db.write("fleet", &batch)?; // durable (fsynced) when this returns
//! assert_eq!(outcome.rows_written, 2);
//!
//! let request = ScanRequest::new("fleet", "readings").filter_tag("device_id", ["truck-1"]);
//! let rows: usize = db.scan(&request)?.map(|b| b.map(|b| b.num_rows())).sum::<Result<_, _>>()?;
//! assert_eq!(rows, 2);
//! db.close()?; // flushes the write buffer into segment files
//! # Ok(())
//! # }
//! ```

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

#[cfg(feature = "tiering")]
pub mod backup;
mod batch;
mod buffer;
mod bytes;
pub mod codec;
pub mod compaction;
mod db;
pub mod delete;
mod error;
pub mod failpoint;
pub mod fs;
pub mod lastvalue;
mod manifest;
pub mod observe;
mod options;
#[cfg(feature = "sql")]
pub mod query;
pub mod retention;
pub mod rollup;
mod scan;
mod schema;
mod segment;
mod series;
#[cfg(feature = "tiering")]
pub mod tiering;
mod wal;

pub use batch::{FieldValue, RowError, RowWriter, WriteBatch, WriteOutcome};
pub use bytes::{FILE_HEADER_LEN, FileHeader};
pub use compaction::{CompactionReport, PartitionFiles};
pub use db::{ColumnStorage, Database, DatabaseStats, OpenReport, VerifyReport};
pub use delete::{DeleteOutcome, DeleteRequest, Tombstone};
pub use error::{Error, Result};
pub use options::{CompactionOptions, Durability, Options};
pub use retention::{RetentionRule, format_duration, parse_duration};
pub use rollup::{RollupReport, RollupRule};
pub use scan::{CmpOp, FieldCondition, FieldFilter, ScanRequest, ScanStream, TagFilter, arrow_schema, arrow_type};
pub use schema::{
    ColumnDef, ColumnKind, FieldType, MAX_DATABASE_NAME, MAX_NAME, TIME_COLUMN, TableSchema, validate_database_name,
    validate_name,
};
pub use series::SeriesKey;
pub use wal::TornTail;

/// Entry points for fuzzing and property tests of the on-disk decoders.
/// Each takes arbitrary bytes and must return without panicking.
#[doc(hidden)]
pub mod fuzz {
    #![allow(missing_docs)]
    /// Decodes arbitrary bytes as a WAL file.
    pub fn wal_file(data: &[u8]) {
        let Ok(dir) = tempfile_dir() else { return };
        let path = dir.join(crate::wal::file_name(1));
        if std::fs::write(&path, data).is_err() {
            return;
        }
        let backend: crate::fs::Backend = std::sync::Arc::new(crate::fs::StdBackend);
        let _ = crate::wal::replay(&dir, &backend, crate::wal::ReplayMode::Strict, |_, _| Ok(()));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Decodes arbitrary bytes as a WAL record payload.
    pub fn wal_payload(data: &[u8]) {
        let _ = crate::wal::format::decode_payload(data);
    }

    /// Opens arbitrary bytes as a segment file and reads every series of it.
    pub fn segment_file(data: &[u8]) {
        let Ok(dir) = tempfile_dir() else { return };
        let path = dir.join("fuzz.tms");
        if std::fs::write(&path, data).is_ok() {
            read_all_series(&path);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Reads every series and column of a segment file, ignoring errors.
    pub fn read_all_series(path: &std::path::Path) {
        let Ok(seg) = crate::segment::SegmentReader::open(path) else {
            return;
        };
        let cols: Vec<(usize, String, crate::ColumnKind)> =
            seg.footer().columns.iter().enumerate().map(|(i, (n, k))| (i, n.clone(), *k)).collect();
        let wanted: Vec<(usize, &str, crate::ColumnKind)> = cols.iter().map(|(i, n, k)| (*i, n.as_str(), *k)).collect();
        for id in 0..seg.footer().series.len() as u32 {
            let _ = seg.series_key(id);
            let _ = seg.read_series(id, &wanted, cols.len(), crate::segment::TimeRange::ALL);
        }
        let _ = seg.matching_series(&[("a".into(), vec!["b".into()])]);
    }

    /// Decodes arbitrary bytes with every codec. The first two bytes choose the value count.
    pub fn codecs(data: &[u8]) {
        use crate::codec::*;
        let (count, rest) = match data {
            [a, b, rest @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), rest),
            _ => (0, data),
        };
        let _ = decode_timestamps(rest, count, &mut Vec::new());
        let _ = decode_f64(rest, count, &mut Vec::new());
        let _ = decode_i64(rest, count, &mut Vec::new());
        let _ = decode_u64(rest, count, &mut Vec::new());
        let _ = decode_bool(rest, count, &mut Vec::new());
        let _ = decode_strings(rest, count, &mut Vec::new());
        // Every codec id through the dispatchers the segment reader uses.
        for id in (1u8..=20).filter_map(|b| CodecId::try_from(b).ok()) {
            let _ = decode_timestamps_any(id, rest, count, &mut Vec::new());
            let _ = decode_f64_any(id, rest, count, &mut Vec::new());
            let _ = decode_i64_any(id, rest, count, &mut Vec::new());
            let _ = decode_u64_any(id, rest, count, &mut Vec::new());
            let _ = decode_bool_any(id, rest, count, &mut Vec::new());
        }
    }

    fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "telemark-fuzz-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }
}
