//! The write-ahead log: every accepted batch is appended here, checksummed,
//! and made durable before it is acknowledged.
//!
//! The log is a directory of files named by the sequence number of their
//! first record (`00000000000000000042.wal`). The writer appends to the last
//! file and starts a new one when it grows past a size limit or when the
//! write buffer is frozen for a flush, so that whole files can be deleted
//! once their records are in durable segments.
//!
//! Replay is strict: a damaged or incomplete record at the very end of the
//! last file is what a crash leaves behind, so it is cut off and reported;
//! damage anywhere else fails the open with an error that names the file and
//! offset and says how to recover explicitly ([`crate::Database::repair_wal`]).

pub(crate) mod format;

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::fs::{Backend, DurableFile};
use crate::{Error, Result};
use format::{FRAME_LEN, HEADER_LEN, MAX_PAYLOAD, WalEntry};

/// The appending end of the log. Owned by the commit leader.
#[derive(Debug)]
pub(crate) struct WalWriter {
    dir: PathBuf,
    backend: Backend,
    file: Box<dyn DurableFile>,
    path: PathBuf,
    size: u64,
    first_seq: u64,
}

pub(crate) fn file_name(first_seq: u64) -> String {
    format!("{first_seq:020}.wal")
}

impl WalWriter {
    /// Starts a new log file whose first record will have `first_seq`.
    pub(crate) fn create(dir: &Path, backend: Backend, first_seq: u64) -> Result<Self> {
        let path = dir.join(file_name(first_seq));
        let mut file = backend.create_new(&path).map_err(|e| Error::io(&path, e))?;
        file.write_all(&format::header()).map_err(|e| Error::io(&path, e))?;
        file.sync_data().map_err(|e| Error::io(&path, e))?;
        backend.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
        Ok(WalWriter { dir: dir.to_path_buf(), backend, file, path, size: HEADER_LEN as u64, first_seq })
    }

    /// Appends already framed records (one group commit). Not yet durable.
    pub(crate) fn append(&mut self, framed: &[u8]) -> Result<()> {
        self.file.write_all(framed).map_err(|e| Error::io(&self.path, e))?;
        self.size += framed.len() as u64;
        Ok(())
    }

    /// Makes everything appended so far durable.
    pub(crate) fn sync(&mut self) -> Result<()> {
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))
    }

    /// Bytes in the current file.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Sequence number of the current file's first record.
    pub(crate) fn first_seq(&self) -> u64 {
        self.first_seq
    }

    /// Syncs the current file and starts a new one at `next_seq`.
    pub(crate) fn rotate(&mut self, next_seq: u64) -> Result<()> {
        if next_seq == self.first_seq {
            return Ok(()); // the current file is empty
        }
        self.sync()?;
        *self = WalWriter::create(&self.dir, self.backend.clone(), next_seq)?;
        Ok(())
    }
}

/// A log file found on disk.
#[derive(Debug, Clone)]
pub(crate) struct WalFile {
    pub(crate) first_seq: u64,
    pub(crate) path: PathBuf,
}

/// Lists the log files in sequence order.
pub(crate) fn list_files(dir: &Path) -> Result<Vec<WalFile>> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".wal") else {
            continue;
        };
        let Ok(first_seq) = stem.parse::<u64>() else {
            continue;
        };
        files.push(WalFile { first_seq, path: entry.path() });
    }
    files.sort_by_key(|f| f.first_seq);
    Ok(files)
}

/// A torn tail that replay cut off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The log file.
    pub file: PathBuf,
    /// Offset of the first byte dropped; the file was truncated here.
    pub offset: u64,
    /// How many bytes were dropped.
    pub bytes_dropped: u64,
}

/// What replay found.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReplayReport {
    pub(crate) records: usize,
    pub(crate) max_seq: Option<u64>,
    pub(crate) torn_tail: Option<TornTail>,
}

/// How replay treats damage before the tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplayMode {
    /// Fail with a corruption error.
    Strict,
    /// Truncate the damaged file at the bad record and delete the files after it.
    Repair,
}

const RECOVERY_HINT: &str = "; the records from here on cannot be read. To open the database anyway, call \
     `Database::repair_wal(data_dir)` (or run `telemark repair-wal --data-dir DIR` once the CLI is installed): \
     it truncates the WAL at this offset and deletes later WAL files, losing the writes they held";

/// Replays every record in `dir` in order, calling `apply` for each, and
/// cuts a torn tail off the last file.
pub(crate) fn replay(
    dir: &Path,
    backend: &Backend,
    mode: ReplayMode,
    mut apply: impl FnMut(u64, WalEntry) -> Result<()>,
) -> Result<ReplayReport> {
    let files = list_files(dir)?;
    let mut report = ReplayReport::default();
    let last = files.len().saturating_sub(1);
    for (i, file) in files.iter().enumerate() {
        let data = std::fs::read(&file.path).map_err(|e| Error::io(&file.path, e))?;
        match scan_file(&file.path, &data, &mut apply, &mut report)? {
            FileEnd::Clean => {}
            FileEnd::Damaged { offset, detail, at_tail } => {
                let dropped = data.len() as u64 - offset;
                if (i == last && at_tail) || mode == ReplayMode::Repair {
                    backend.truncate(&file.path, offset).map_err(|e| Error::io(&file.path, e))?;
                    tracing::warn!(
                        file = %file.path.display(), offset, bytes_dropped = dropped, %detail,
                        "WAL: cut a torn or damaged tail"
                    );
                    report.torn_tail = Some(TornTail { file: file.path.clone(), offset, bytes_dropped: dropped });
                    if mode == ReplayMode::Repair {
                        for later in files.iter().skip(i + 1) {
                            crate::fs::remove_durable(backend.as_ref(), &later.path)?;
                        }
                        return Ok(report);
                    }
                } else {
                    return Err(Error::Corruption {
                        file: file.path.clone(),
                        offset,
                        detail,
                        hint: RECOVERY_HINT.to_string(),
                    });
                }
            }
        }
    }
    Ok(report)
}

enum FileEnd {
    Clean,
    /// Reading stopped at `offset`. `at_tail` is true when nothing readable
    /// follows: the damage is what an interrupted append leaves.
    Damaged {
        offset: u64,
        detail: String,
        at_tail: bool,
    },
}

fn scan_file(
    path: &Path,
    data: &[u8],
    apply: &mut impl FnMut(u64, WalEntry) -> Result<()>,
    report: &mut ReplayReport,
) -> Result<FileEnd> {
    if data.len() < HEADER_LEN {
        // A crash while the file was being created: nothing in it was ever acknowledged.
        return Ok(FileEnd::Damaged {
            offset: 0,
            detail: format!("file header is incomplete ({} bytes)", data.len()),
            at_tail: true,
        });
    }
    if data.iter().all(|b| *b == 0) {
        // Allocated but never written (power loss right after the file was created).
        return Ok(FileEnd::Damaged {
            offset: 0,
            detail: format!("file holds only {} zero bytes", data.len()),
            at_tail: true,
        });
    }
    if let Err(e) = format::check_header(path, data) {
        return match e {
            Error::Corruption { offset, detail, .. } => Ok(FileEnd::Damaged { offset, detail, at_tail: false }),
            other => Err(other),
        };
    }
    let mut pos = HEADER_LEN;
    while pos < data.len() {
        let rest = &data[pos..];
        let damaged = |detail: String, at_tail: bool| Ok(FileEnd::Damaged { offset: pos as u64, detail, at_tail });
        if rest.len() < FRAME_LEN {
            return damaged(format!("record frame is incomplete ({} of {FRAME_LEN} bytes)", rest.len()), true);
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len == 0 && crc == 0 && rest.iter().all(|b| *b == 0) {
            // Zero-filled space past the last write (a crash after the file was extended).
            return damaged(format!("{} zero bytes after the last record", rest.len()), true);
        }
        if len > MAX_PAYLOAD {
            return damaged(format!("record length {len} exceeds the limit {MAX_PAYLOAD}"), is_last_record(rest, len));
        }
        let Some(payload) = rest.get(FRAME_LEN..FRAME_LEN + len) else {
            return damaged(format!("record needs {len} payload bytes, the file has {}", rest.len() - FRAME_LEN), true);
        };
        let actual = crc32c::crc32c(payload);
        if !crate::bytes::checksum_matches(crc, actual) {
            return damaged(
                format!("record checksum mismatch (expected {crc:#010x}, found {actual:#010x})"),
                is_last_record(rest, len),
            );
        }
        match format::decode_payload(payload) {
            Ok((seq, write)) => {
                report.records += 1;
                report.max_seq = Some(report.max_seq.map_or(seq, |m| m.max(seq)));
                apply(seq, write)?;
            }
            Err(e) => {
                return damaged(
                    format!(
                        "record passed its checksum but does not decode at payload byte {}: {}",
                        e.offset, e.detail
                    ),
                    false,
                );
            }
        }
        pos += FRAME_LEN + len;
    }
    Ok(FileEnd::Clean)
}

/// True if a bad record of `len` payload bytes is the last thing in `rest`
/// (what a torn final append looks like), rather than followed by more data.
fn is_last_record(rest: &[u8], len: usize) -> bool {
    match rest.get(FRAME_LEN.saturating_add(len)..) {
        None => true,
        Some(after) => after.iter().all(|b| *b == 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BatchColumn, Column, Values};
    use crate::fs::StdBackend;
    use crate::schema::{ColumnKind, FieldType};
    use crate::wal::format::TableWrite;
    use std::sync::Arc;

    fn write(i: i64) -> TableWrite {
        TableWrite {
            database: "db".into(),
            table: "t".into(),
            times: vec![i, i + 1],
            columns: vec![BatchColumn {
                name: "v".into(),
                kind: ColumnKind::Field(FieldType::I64),
                data: Column { values: Values::I64(vec![i * 10, i * 10 + 1]), valid: vec![true, true] },
            }],
        }
    }

    fn make_log(dir: &Path, n: u64) -> (Vec<u64>, PathBuf) {
        let backend: Backend = Arc::new(StdBackend);
        let mut w = WalWriter::create(dir, backend, 1).unwrap();
        let mut ends = vec![HEADER_LEN as u64];
        for seq in 1..=n {
            let mut buf = Vec::new();
            format::encode_record(seq, &write(seq as i64), &mut buf);
            w.append(&buf).unwrap();
            ends.push(w.size());
        }
        w.sync().unwrap();
        (ends, dir.join(file_name(1)))
    }

    fn replay_all(dir: &Path) -> Result<(Vec<u64>, ReplayReport)> {
        let backend: Backend = Arc::new(StdBackend);
        let mut seqs = Vec::new();
        let report = replay(dir, &backend, ReplayMode::Strict, |seq, w| {
            assert_eq!(w, WalEntry::Write(write(seq as i64)));
            seqs.push(seq);
            Ok(())
        })?;
        Ok((seqs, report))
    }

    #[test]
    fn truncation_at_every_offset_keeps_earlier_records() {
        let src = tempfile::tempdir().unwrap();
        let (ends, path) = make_log(src.path(), 4);
        let full = std::fs::read(&path).unwrap();
        let last_start = ends[3] as usize;
        for cut in last_start..full.len() {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join(file_name(1));
            std::fs::write(&p, &full[..cut]).unwrap();
            let (seqs, report) = replay_all(dir.path()).unwrap();
            assert_eq!(seqs, vec![1, 2, 3], "cut at {cut}");
            if cut > last_start {
                let torn = report.torn_tail.expect("torn tail reported");
                assert_eq!(torn.offset, last_start as u64);
                assert_eq!(torn.bytes_dropped, (cut - last_start) as u64);
            }
            // The tail was cut off the file: a second replay is clean.
            assert_eq!(std::fs::metadata(&p).unwrap().len(), last_start as u64);
            let (seqs, report) = replay_all(dir.path()).unwrap();
            assert_eq!(seqs, vec![1, 2, 3]);
            assert!(report.torn_tail.is_none());
        }
    }

    #[test]
    fn bit_flip_in_the_middle_is_a_named_error() {
        let dir = tempfile::tempdir().unwrap();
        let (ends, path) = make_log(dir.path(), 4);
        let mut data = std::fs::read(&path).unwrap();
        let at = ends[1] as usize + 12; // inside record 2's payload
        data[at] ^= 0x10;
        std::fs::write(&path, &data).unwrap();
        let err = replay_all(dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(err.is_corruption(), "{msg}");
        assert!(msg.contains(&file_name(1)), "{msg}");
        assert!(msg.contains(&format!("offset {}", ends[1])), "{msg}");
        assert!(msg.contains("repair_wal"), "{msg}");

        // Repair mode truncates there and keeps record 1.
        let backend: Backend = Arc::new(StdBackend);
        let mut seqs = Vec::new();
        replay(dir.path(), &backend, ReplayMode::Repair, |s, _| {
            seqs.push(s);
            Ok(())
        })
        .unwrap();
        assert_eq!(seqs, vec![1]);
        assert_eq!(replay_all(dir.path()).unwrap().0, vec![1]);
    }

    #[test]
    fn damage_in_an_earlier_file_is_an_error_even_at_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let (_, path) = make_log(dir.path(), 2);
        let backend: Backend = Arc::new(StdBackend);
        let mut w = WalWriter::create(dir.path(), backend, 3).unwrap();
        let mut buf = Vec::new();
        format::encode_record(3, &write(3), &mut buf);
        w.append(&buf).unwrap();
        w.sync().unwrap();
        let mut data = std::fs::read(&path).unwrap();
        let n = data.len();
        data[n - 1] ^= 1;
        std::fs::write(&path, &data).unwrap();
        assert!(replay_all(dir.path()).unwrap_err().is_corruption());
    }

    #[test]
    fn newer_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_, path) = make_log(dir.path(), 1);
        let mut data = std::fs::read(&path).unwrap();
        data[8] = 9;
        let crc = crc32c::crc32c(&data[..12]);
        data[12..16].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&path, &data).unwrap();
        let msg = replay_all(dir.path()).unwrap_err().to_string();
        assert!(msg.contains("version 9 is newer"), "{msg}");
    }
}
