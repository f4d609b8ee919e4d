//! The manifest: the durable catalog of databases, tables, schemas and
//! segments, plus the WAL position the segments cover.
//!
//! It is rewritten whole and atomically (temp file, fsync, rename, fsync of
//! the directory) after every flush, so after a crash it is either the old or
//! the new version.
//!
//! ```text
//! file = magic "TMKMANI\0" (8) | version u16 | reserved u16 | body_len u32 | crc32c(body) u32
//!        | reserved u32 | body (JSON, UTF-8)
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::fs::FileBackend;
use crate::schema::TableSchema;
use crate::{Error, Result};

pub(crate) const FILE_NAME: &str = "MANIFEST";
pub(crate) const MAGIC: [u8; 8] = *b"TMKMANI\0";
/// The version this build writes. Version 2 added the WAL sequence range
/// and purge mark of each segment, delete tombstones, the delete log and
/// retention rules; version 1 manifests read unchanged (their segments keep
/// their list order as precedence). Version 3 added cold files (partitions
/// tiered to object storage): a version 2 reader would not know them, so it
/// must refuse the file rather than lose them.
pub(crate) const VERSION: u16 = 3;
pub(crate) const OLDEST_VERSION: u16 = 1;
const HEADER_LEN: usize = 24;

/// A segment as recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SegmentEntry {
    pub(crate) id: u64,
    pub(crate) partition_start: i64,
    pub(crate) min_time: i64,
    pub(crate) max_time: i64,
    pub(crate) rows: u64,
    pub(crate) bytes: u64,
    /// 0 for flushed segments; compaction raises it.
    pub(crate) level: u32,
    /// The WAL sequence numbers whose rows this file holds, inclusive: a
    /// flush covers `(flushed_seq before, flushed_seq after]`, a compaction
    /// the union of its inputs' contiguous ranges. Files of a partition never
    /// overlap in this range; for rows of the same series and time, the file
    /// with the higher range wins (last write wins). 0/0 for files written
    /// by version 1, which keep their list order.
    #[serde(default)]
    pub(crate) min_seq: u64,
    #[serde(default)]
    pub(crate) max_seq: u64,
    /// Every delete with a sequence number up to this one has been applied
    /// to the file's rows physically (they are not in it).
    #[serde(default)]
    pub(crate) purged_seq: u64,
}

impl SegmentEntry {
    pub(crate) fn file_name(id: u64) -> String {
        format!("{id:020}.tms")
    }
}

/// A partition tiered to object storage: one Parquet object, and a local
/// index file (`cold/<id>.tmc`) with its series and Parquet metadata so
/// that planning a query makes no remote call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ColdEntry {
    pub(crate) id: u64,
    pub(crate) partition_start: i64,
    pub(crate) min_time: i64,
    pub(crate) max_time: i64,
    pub(crate) rows: u64,
    /// Size of the object.
    pub(crate) bytes: u64,
    /// CRC32C of the whole object, checked after upload.
    pub(crate) crc32c: u32,
    /// The object's path in the store, below the store's prefix.
    pub(crate) object: String,
    /// As for segments: the WAL range of the rows it holds, and the deletes
    /// applied to them.
    pub(crate) min_seq: u64,
    pub(crate) max_seq: u64,
    pub(crate) purged_seq: u64,
}

impl ColdEntry {
    #[cfg_attr(not(feature = "tiering"), allow(dead_code))]
    pub(crate) fn index_name(id: u64) -> String {
        format!("{id:020}.tmc")
    }
}

/// A table: its schema and segments (in precedence order: oldest writes first).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TableEntry {
    pub(crate) schema: TableSchema,
    pub(crate) segments: Vec<SegmentEntry>,
    /// Partitions in object storage; their rows are older than those of any
    /// segment of the same partition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) cold: Vec<ColdEntry>,
}

/// A database: its tables.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DatabaseEntry {
    pub(crate) tables: BTreeMap<String, TableEntry>,
}

/// The whole catalog.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    /// Every WAL record with a sequence number up to this one is in segments.
    pub(crate) flushed_seq: u64,
    pub(crate) next_segment_id: u64,
    pub(crate) databases: BTreeMap<String, DatabaseEntry>,
    /// Deletes whose rows may still be in some segment file, oldest first.
    #[serde(default)]
    pub(crate) tombstones: Vec<crate::delete::Tombstone>,
    /// Deletes whose rows are gone from every file (the last
    /// [`crate::delete::PURGED_LOG_LIMIT`]), oldest first.
    #[serde(default)]
    pub(crate) purged: Vec<crate::delete::Tombstone>,
    /// Retention rules.
    #[serde(default)]
    pub(crate) retention: Vec<crate::retention::RetentionRule>,
}

impl Manifest {
    /// Reads the manifest in `dir`, or an empty one if there is none yet.
    pub(crate) fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(FILE_NAME);
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Manifest { next_segment_id: 1, ..Default::default() });
            }
            Err(e) => return Err(Error::io(&path, e)),
        };
        let corrupt = |offset: u64, detail: String| Error::Corruption {
            file: path.clone(),
            offset,
            detail,
            hint: "; the manifest is damaged: restore it from a backup".into(),
        };
        if data.len() < HEADER_LEN || data.get(..8) != Some(&MAGIC[..]) {
            return Err(corrupt(0, "not a Telemark manifest (bad magic or too short)".into()));
        }
        let version = u16::from_le_bytes([data[8], data[9]]);
        if !(OLDEST_VERSION..=VERSION).contains(&version) {
            return Err(Error::UnsupportedVersion {
                file: path.clone(),
                format: "manifest",
                found: version,
                supported: VERSION,
            });
        }
        let len = u32::from_le_bytes([data[12], data[13], data[14], data[15]]) as usize;
        let crc = u32::from_le_bytes([data[16], data[17], data[18], data[19]]);
        let body = data.get(HEADER_LEN..).filter(|b| b.len() == len).ok_or_else(|| {
            corrupt(
                12,
                format!(
                    "body length {len} does not match the file ({} bytes after the header)",
                    data.len() - HEADER_LEN
                ),
            )
        })?;
        let actual = crc32c::crc32c(body);
        if actual != crc {
            return Err(corrupt(
                HEADER_LEN as u64,
                format!("checksum mismatch (expected {crc:#010x}, found {actual:#010x})"),
            ));
        }
        let mut m: Manifest =
            serde_json::from_slice(body).map_err(|e| corrupt(HEADER_LEN as u64, format!("invalid body: {e}")))?;
        for db in m.databases.values_mut() {
            for t in db.tables.values_mut() {
                t.schema.reindex();
                assign_legacy_seqs(&mut t.segments);
            }
        }
        Ok(m)
    }

    /// Writes the manifest to `dir` atomically and durably.
    pub(crate) fn store(&self, backend: &dyn FileBackend, dir: &Path) -> Result<()> {
        crate::fs::write_atomic(backend, &dir.join(FILE_NAME), &self.encode()?)
    }

    /// The file's bytes.
    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        let body = serde_json::to_vec(self).map_err(|e| Error::Internal(format!("manifest serialization: {e}")))?;
        Ok(frame(&MAGIC, VERSION, &body))
    }
}

/// `magic (8) | version u16 | reserved u16 | body_len u32 | crc32c(body) u32 | reserved u32 | body`:
/// the header of the manifest, also used by backup files.
pub(crate) fn frame(magic: &[u8; 8], version: u16, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// Gives files written by version 1 (no WAL range) a range that keeps their
/// list order as precedence within each partition: the k-th such file of a
/// partition covers `k..=k`. Each of them took at least one flush, and every
/// flush at least one sequence number, so `k` is at most the manifest's
/// `flushed_seq` and below every later flush's range.
fn assign_legacy_seqs(segments: &mut [SegmentEntry]) {
    let mut count: BTreeMap<i64, u64> = BTreeMap::new();
    for s in segments.iter_mut().filter(|s| s.max_seq == 0) {
        let k = count.entry(s.partition_start).or_default();
        *k += 1;
        s.min_seq = *k;
        s.max_seq = *k;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::StdBackend;

    #[test]
    fn roundtrip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Manifest::load(dir.path()).unwrap();
        m.flushed_seq = 7;
        let t = m.databases.entry("db".into()).or_default().tables.entry("t".into()).or_default();
        t.schema.push("host", crate::ColumnKind::Tag);
        t.segments.push(SegmentEntry {
            id: 1,
            partition_start: 0,
            min_time: 1,
            max_time: 2,
            rows: 2,
            bytes: 100,
            level: 0,
            min_seq: 1,
            max_seq: 7,
            purged_seq: 0,
        });
        m.store(&StdBackend, dir.path()).unwrap();
        let back = Manifest::load(dir.path()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.databases["db"].tables["t"].schema.id_of("host"), Some(0));

        let p = dir.path().join(FILE_NAME);
        let mut data = std::fs::read(&p).unwrap();
        let n = data.len();
        data[n - 3] ^= 4;
        std::fs::write(&p, &data).unwrap();
        let msg = Manifest::load(dir.path()).unwrap_err().to_string();
        assert!(msg.contains("MANIFEST") && msg.contains("checksum mismatch"), "{msg}");
    }
}
