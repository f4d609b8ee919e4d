//! Backups of a database to object storage, and restores (feature `tiering`).
//!
//! A backup is a consistent snapshot: the write buffer is flushed, then,
//! under the manifest lock, the manifest is copied and every file it lists is
//! pinned (held open, so compaction cannot unlink it while it is copied).
//! Writes go on meanwhile; they are simply not in the snapshot.
//!
//! Layout under the backup URL's prefix:
//!
//! ```text
//! data/<crc32c>-<size>-<name>        every segment file and cold index, once (content-addressed:
//!                                   a later backup that finds the object skips the upload)
//! backups/<name>/MANIFEST            the snapshot's manifest
//! backups/<name>/BACKUP              what the backup holds, written last:
//!     magic "TMKBACK\0" | version u16 | reserved u16 | body_len u32 | crc32c(body) u32 | reserved u32
//!     | body (JSON: files with size and CRC32C, the cold objects referenced and their store)
//! ```
//!
//! Cold partitions (Parquet objects in the tier's store) are referenced, not
//! copied: a restore checks that each still exists with its size.
//!
//! A restore picks the newest complete backup (one with a `BACKUP`), or a
//! named one, downloads every file, checks its size and CRC32C, writes the
//! manifest last, and removes what it wrote if anything is wrong.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::db::{COLD_DIR, Inner, SEGMENT_DIR, lock, read};
use crate::manifest::{ColdEntry, SegmentEntry};
use crate::tiering::{IoRuntime, TierStore};
use crate::{Error, Result};

const MAGIC: [u8; 8] = *b"TMKBACK\0";
const VERSION: u16 = 1;
const HEADER_LEN: usize = 24;
const DATA: &str = "data";
const BACKUPS: &str = "backups";

/// Where a backup or restore stands, for a progress display.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Progress {
    /// Files handled so far.
    pub files_done: usize,
    /// Files in all.
    pub files_total: usize,
    /// Bytes handled so far (copied or skipped).
    pub bytes_done: u64,
    /// Bytes in all.
    pub bytes_total: u64,
}

/// What a backup did.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct BackupReport {
    /// The backup's name (`backups/<name>/`).
    pub name: String,
    /// Files in the snapshot.
    pub files: usize,
    /// Files uploaded by this backup.
    pub files_copied: usize,
    /// Files an earlier backup had already uploaded.
    pub files_skipped: usize,
    /// Bytes uploaded.
    pub bytes_copied: u64,
    /// Bytes of the snapshot's files.
    pub bytes_total: u64,
    /// Cold objects the backup references (not copied).
    pub cold_objects: usize,
    /// Rows in the snapshot's segment and cold files.
    pub rows: u64,
    /// Time taken, in milliseconds.
    pub elapsed_ms: u64,
}

/// What a restore did.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct RestoreReport {
    /// The backup restored.
    pub name: String,
    /// Files written (the manifest included).
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Cold objects checked in their store.
    pub cold_objects: usize,
    /// Time taken, in milliseconds.
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FileRecord {
    /// Path inside the data directory (`segments/…`, `cold/…`, `MANIFEST`).
    path: String,
    /// Object name below the backup prefix.
    object: String,
    size: u64,
    crc32c: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ColdRecord {
    object: String,
    size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct BackupFile {
    name: String,
    created_at_ns: i64,
    files: Vec<FileRecord>,
    manifest: FileRecord,
    /// The store cold objects live in (its URL), and the objects.
    cold_store: Option<String>,
    cold: Vec<ColdRecord>,
}

fn encode(b: &BackupFile) -> Result<Vec<u8>> {
    let body = serde_json::to_vec(b).map_err(|e| Error::Internal(format!("backup file: {e}")))?;
    Ok(crate::manifest::frame(&MAGIC, VERSION, &body))
}

fn decode(what: &str, data: &[u8]) -> Result<BackupFile> {
    let bad = |why: String| Error::InvalidInput(format!("{what} is not a usable backup: {why}"));
    if data.len() < HEADER_LEN || data.get(..8) != Some(&MAGIC[..]) {
        return Err(bad("bad magic or too short".into()));
    }
    let version = u16::from_le_bytes([data[8], data[9]]);
    if data[10..12] != [0, 0] || data[20..24] != [0, 0, 0, 0] {
        return Err(bad("reserved header bytes are not zero".into()));
    }
    if version != VERSION {
        return Err(bad(format!("version {version}, this build reads {VERSION}: use a newer telemark")));
    }
    let len = u32::from_le_bytes([data[12], data[13], data[14], data[15]]) as usize;
    let crc = u32::from_le_bytes([data[16], data[17], data[18], data[19]]);
    let body = data.get(HEADER_LEN..).filter(|b| b.len() == len).ok_or_else(|| bad("truncated".into()))?;
    if crc32c::crc32c(body) != crc {
        return Err(bad("checksum mismatch".into()));
    }
    serde_json::from_slice(body).map_err(|e| bad(format!("invalid body: {e}")))
}

/// `YYYYMMDDTHHMMSS.nnnnnnnnnZ` for a time in nanoseconds: sorts by time.
fn backup_name(now: i64) -> String {
    let date = crate::tiering::date_of(now).replace('-', "");
    let secs = now.rem_euclid(86_400 * 1_000_000_000) / 1_000_000_000;
    let nanos = now.rem_euclid(1_000_000_000);
    format!("{date}T{:02}{:02}{:02}.{nanos:09}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// Object-store calls of a backup or restore.
struct Remote {
    io: IoRuntime,
    store: TierStore,
}

impl Remote {
    fn new(store: &TierStore) -> Result<Self> {
        Ok(Remote { io: IoRuntime::new("telemark-backup")?, store: store.clone() })
    }

    fn shown(&self, relative: &str) -> String {
        format!("{} ({})", self.store.path(relative), self.store.description())
    }

    fn put(&self, relative: &str, data: Vec<u8>) -> Result<()> {
        let (store, path) = (self.store.store.clone(), self.store.path(relative));
        self.io
            .block(async move { store.put(&path, PutPayload::from(data)).await })?
            .map_err(|e| Error::ObjectStore(format!("uploading {}: {e}", self.shown(relative))))?;
        Ok(())
    }

    /// The size of an object, `None` if there is none.
    fn size(&self, relative: &str) -> Result<Option<u64>> {
        let (store, path) = (self.store.store.clone(), self.store.path(relative));
        match self.io.block(async move { store.head(&path).await })? {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Error::ObjectStore(format!("checking {}: {e}", self.shown(relative)))),
        }
    }

    fn get(&self, relative: &str) -> Result<Option<Vec<u8>>> {
        let (store, path) = (self.store.store.clone(), self.store.path(relative));
        let got = self.io.block(async move {
            match store.get(&path).await {
                Ok(r) => r.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })?;
        got.map(|b| b.map(|b| b.to_vec()))
            .map_err(|e| Error::ObjectStore(format!("reading {}: {e}", self.shown(relative))))
    }

    /// Names of the backups under the prefix (complete or not).
    fn backups(&self) -> Result<Vec<String>> {
        let store = self.store.store.clone();
        let prefix = self.store.path(BACKUPS);
        let listed = self
            .io
            .block(async move { store.list_with_delimiter(Some(&prefix)).await })?
            .map_err(|e| Error::ObjectStore(format!("listing {}: {e}", self.shown(BACKUPS))))?;
        let mut names: Vec<String> =
            listed.common_prefixes.iter().filter_map(|p| p.filename().map(str::to_string)).collect();
        names.sort();
        Ok(names)
    }
}

/// A file of the snapshot, pinned so compaction cannot unlink it meanwhile.
enum Pinned {
    Segment(Arc<crate::db::SegmentHandle>),
    Cold(Arc<crate::tiering::ColdHandle>),
}

/// Backs up the database; see the module documentation.
pub(crate) fn backup(inner: &Inner, to: &TierStore, progress: &mut dyn FnMut(&Progress)) -> Result<BackupReport> {
    let started = Instant::now();
    let remote = Remote::new(to)?;
    remote.backups()?; // the store answers before any work
    inner.flush()?;
    // The snapshot: the manifest and, pinned, every file it lists. Taken
    // between jobs (compaction, tiering), so no upload is in flight whose id
    // the snapshot would count as handed out but not know.
    let (manifest, pinned) = {
        let _between_jobs = lock(&inner.compaction_lock);
        let manifest = lock(&inner.manifest);
        let state = read(&inner.state);
        let mut pinned = Vec::new();
        for list in state.segments.values() {
            pinned.extend(list.iter().cloned().map(Pinned::Segment));
        }
        for list in state.cold.values() {
            pinned.extend(list.iter().cloned().map(Pinned::Cold));
        }
        (manifest.clone(), pinned)
    };
    let listed: std::collections::HashSet<u64> = manifest
        .databases
        .values()
        .flat_map(|d| d.tables.values())
        .flat_map(|t| t.segments.iter().map(|s| s.id).chain(t.cold.iter().map(|c| c.id)))
        .collect();
    let mut files: Vec<(String, PathBuf, u64)> = Vec::new();
    let mut rows = 0u64;
    for p in &pinned {
        let (rel, id, n) = match p {
            Pinned::Segment(h) => {
                (format!("{SEGMENT_DIR}/{}", SegmentEntry::file_name(h.entry.id)), h.entry.id, h.entry.rows)
            }
            Pinned::Cold(h) => (format!("{COLD_DIR}/{}", ColdEntry::index_name(h.entry.id)), h.entry.id, h.entry.rows),
        };
        if !listed.contains(&id) {
            continue; // swapped in after the manifest copy: not in the snapshot
        }
        rows += n;
        let path = inner.dir.join(&rel);
        let size = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?.len();
        files.push((rel, path, size));
    }
    files.sort();
    let mut p =
        Progress { files_total: files.len() + 1, bytes_total: files.iter().map(|f| f.2).sum(), ..Progress::default() };
    progress(&p);
    let mut report = BackupReport { files: files.len(), bytes_total: p.bytes_total, rows, ..BackupReport::default() };
    let mut records = Vec::with_capacity(files.len());
    for (rel, path, size) in &files {
        let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        if data.len() as u64 != *size {
            return Err(Error::Internal(format!("{} changed size while it was backed up", path.display())));
        }
        let crc = crc32c::crc32c(&data);
        let name = rel.rsplit('/').next().unwrap_or(rel);
        let object = format!("{DATA}/{crc:08x}-{size}-{name}");
        if remote.size(&object)? == Some(*size) {
            report.files_skipped += 1;
        } else {
            remote.put(&object, data)?;
            report.files_copied += 1;
            report.bytes_copied += size;
        }
        records.push(FileRecord { path: rel.clone(), object, size: *size, crc32c: crc });
        p.files_done += 1;
        p.bytes_done += size;
        progress(&p);
    }
    let name = backup_name(crate::delete::now_nanos());
    let manifest_bytes = manifest.encode()?;
    let manifest_record = FileRecord {
        path: crate::manifest::FILE_NAME.into(),
        object: format!("{BACKUPS}/{name}/MANIFEST"),
        size: manifest_bytes.len() as u64,
        crc32c: crc32c::crc32c(&manifest_bytes),
    };
    remote.put(&manifest_record.object, manifest_bytes)?;
    crate::failpoint::hit("backup.files_uploaded");
    let cold: Vec<ColdRecord> = manifest
        .databases
        .values()
        .flat_map(|d| d.tables.values())
        .flat_map(|t| t.cold.iter())
        .map(|c| ColdRecord { object: c.object.clone(), size: c.bytes })
        .collect();
    let cold_store = inner.tier.as_ref().map(|t| t.options.store.description().to_string());
    report.cold_objects = cold.len();
    let file = BackupFile {
        name: name.clone(),
        created_at_ns: crate::delete::now_nanos(),
        files: records,
        manifest: manifest_record,
        cold_store,
        cold,
    };
    remote.put(&format!("{BACKUPS}/{name}/BACKUP"), encode(&file)?)?;
    p.files_done += 1;
    progress(&p);
    drop(pinned);
    report.name = name;
    report.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::info!(backup = %report.name, files = report.files, copied = report.files_copied, "backup written");
    Ok(report)
}

/// Restores a backup into `dir`, which must be empty or absent.
pub fn restore(
    from: &TierStore,
    name: Option<&str>,
    dir: &Path,
    progress: &mut dyn FnMut(&Progress),
) -> Result<RestoreReport> {
    let started = Instant::now();
    if let Ok(mut entries) = std::fs::read_dir(dir)
        && entries.next().is_some()
    {
        return Err(Error::InvalidInput(format!(
            "{} is not empty: restore only into an empty or new directory",
            dir.display()
        )));
    }
    let remote = Remote::new(from)?;
    let names = remote.backups()?;
    let (name, data) = match name {
        Some(n) => {
            let data = remote.get(&format!("{BACKUPS}/{n}/BACKUP"))?.ok_or_else(|| {
                Error::InvalidInput(format!(
                    "backup {n:?} at {} is incomplete or absent (no BACKUP file); complete backups: {:?}",
                    from.description(),
                    names
                ))
            })?;
            (n.to_string(), data)
        }
        None => {
            let mut found = None;
            for n in names.iter().rev() {
                if let Some(d) = remote.get(&format!("{BACKUPS}/{n}/BACKUP"))? {
                    found = Some((n.clone(), d));
                    break;
                }
            }
            found.ok_or_else(|| {
                Error::InvalidInput(format!(
                    "no complete backup at {} (an interrupted backup leaves no BACKUP file)",
                    from.description()
                ))
            })?
        }
    };
    let backup = decode(&format!("backup {name:?} at {}", from.description()), &data)?;
    let mut written: Vec<PathBuf> = Vec::new();
    let result = restore_files(&remote, &backup, dir, &mut written, progress);
    match result {
        Ok((files, bytes)) => Ok(RestoreReport {
            name,
            files,
            bytes,
            cold_objects: backup.cold.len(),
            elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        }),
        Err(e) => {
            for p in written.iter().rev() {
                let _ = std::fs::remove_file(p);
            }
            for sub in [SEGMENT_DIR, COLD_DIR] {
                let _ = std::fs::remove_dir(dir.join(sub));
            }
            Err(e)
        }
    }
}

fn restore_files(
    remote: &Remote,
    backup: &BackupFile,
    dir: &Path,
    written: &mut Vec<PathBuf>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<(usize, u64)> {
    // Cold objects first: a backup whose cold data is gone cannot answer as it did.
    if !backup.cold.is_empty() {
        let url = backup
            .cold_store
            .as_deref()
            .ok_or_else(|| Error::InvalidInput("the backup references cold objects but not their store".into()))?;
        let cold = Remote::new(&TierStore::from_url(url)?)?;
        for c in &backup.cold {
            match cold.size(&c.object)? {
                Some(s) if s == c.size => {}
                Some(s) => {
                    return Err(Error::InvalidInput(format!(
                        "cold object {} has {s} bytes, the backup expects {}: it was replaced after the backup",
                        cold.shown(&c.object),
                        c.size
                    )));
                }
                None => {
                    return Err(Error::InvalidInput(format!(
                        "cold object {} the backup references is gone (deleted by retention or a purge after the backup)",
                        cold.shown(&c.object)
                    )));
                }
            }
        }
    }
    let backend = crate::fs::StdBackend;
    crate::fs::create_dir_durable(&backend, dir)?;
    for sub in [SEGMENT_DIR, COLD_DIR] {
        crate::fs::create_dir_durable(&backend, &dir.join(sub))?;
    }
    let mut p = Progress {
        files_total: backup.files.len() + 1,
        bytes_total: backup.files.iter().map(|f| f.size).sum::<u64>() + backup.manifest.size,
        ..Progress::default()
    };
    progress(&p);
    let fetch = |r: &FileRecord| -> Result<Vec<u8>> {
        let data = remote.get(&r.object)?.ok_or_else(|| {
            Error::InvalidInput(format!("the backup is incomplete: {} is missing", remote.shown(&r.object)))
        })?;
        let crc = crc32c::crc32c(&data);
        if data.len() as u64 != r.size || crc != r.crc32c {
            return Err(Error::InvalidInput(format!(
                "the backup is damaged: {} has {} bytes and CRC32C {crc:#010x}, the backup recorded {} bytes and {:#010x}",
                remote.shown(&r.object),
                data.len(),
                r.size,
                r.crc32c
            )));
        }
        Ok(data)
    };
    for r in &backup.files {
        let ok_path = r.path.starts_with(&format!("{SEGMENT_DIR}/")) || r.path.starts_with(&format!("{COLD_DIR}/"));
        if !ok_path || r.path.contains("..") {
            return Err(Error::InvalidInput(format!(
                "the backup lists a file outside the data directory: {:?}",
                r.path
            )));
        }
        let data = fetch(r)?;
        let path = dir.join(&r.path);
        written.push(path.clone());
        crate::fs::write_atomic(&backend, &path, &data)?;
        p.files_done += 1;
        p.bytes_done += r.size;
        progress(&p);
    }
    // The manifest last: without it the directory is no database.
    let data = fetch(&backup.manifest)?;
    let path = dir.join(crate::manifest::FILE_NAME);
    written.push(path.clone());
    crate::fs::write_atomic(&backend, &path, &data)?;
    p.files_done += 1;
    p.bytes_done += backup.manifest.size;
    progress(&p);
    Ok((backup.files.len() + 1, p.bytes_done))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_time() {
        assert_eq!(backup_name(1_733_000_000_123_456_789), "20241130T205320.123456789Z");
        assert!(backup_name(1_733_000_000_000_000_000) < backup_name(1_733_000_001_000_000_000));
    }

    #[test]
    fn backup_file_round_trip_and_damage() {
        let f = BackupFile {
            name: "n".into(),
            created_at_ns: 1,
            files: vec![FileRecord { path: "segments/x".into(), object: "data/x".into(), size: 3, crc32c: 7 }],
            manifest: FileRecord { path: "MANIFEST".into(), object: "backups/n/MANIFEST".into(), size: 1, crc32c: 2 },
            cold_store: None,
            cold: Vec::new(),
        };
        let bytes = encode(&f).unwrap();
        assert_eq!(decode("t", &bytes).unwrap(), f);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x04;
            assert!(decode("t", &bad).is_err(), "a flipped bit at {i} was not noticed");
        }
        for n in 0..bytes.len() {
            assert!(decode("t", &bytes[..n]).is_err());
        }
    }
}
