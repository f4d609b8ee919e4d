//! Immutable, checksummed columnar segment files.
//!
//! A segment holds the rows of one table in one time partition, written by a
//! flush (or later a compaction). Per series, each column is one chunk,
//! compressed with the codec for its type (see [`crate::codec`]) and
//! checksummed. The footer indexes the series, their tag postings and where
//! each chunk lies, so a scan decodes only the series and columns it needs.
//! Files are read through `mmap`.

pub(crate) mod format;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::batch::{Column, Values};
use crate::bytes::Reader;
use crate::codec::{self, CodecId};
use crate::fs::FileBackend;
use crate::schema::{ColumnKind, FieldType, TableSchema};
use crate::series::{SeriesData, SeriesKey};
use crate::{Error, Result};
use format::{
    CHUNK_HEADER_LEN, ChunkHeader, ChunkRef, FLAG_STATS, FLAG_VALIDITY, FLAG_ZSTD, Footer, HEADER_LEN, KNOWN_FLAGS,
    SeriesEntry, TRAILER_LEN,
};

/// Summary of a written segment, recorded in the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentStats {
    pub(crate) rows: u64,
    pub(crate) min_time: i64,
    pub(crate) max_time: i64,
    pub(crate) bytes: u64,
}

/// Writes a segment for `table` and `partition_start` holding `series`
/// (each sorted by time without duplicates; columns indexed by table column
/// id) to `path`, durably: temp file, fsync, rename, fsync directory.
pub(crate) fn write_segment(
    backend: &dyn FileBackend,
    path: &Path,
    table: &str,
    partition_start: i64,
    schema: &TableSchema,
    series: &[(SeriesKey, SeriesData)],
) -> Result<SegmentStats> {
    let mut w = SegmentWriter::create(backend, path, table, partition_start, schema)?;
    for (key, data) in series {
        w.add(key, data)?;
    }
    w.finish()
}

/// Writes a segment file series by series, so memory holds one series'
/// chunks and the footer, not the file. The file is written under a
/// temporary name and renamed into place by [`SegmentWriter::finish`];
/// dropped unfinished (an error, a full disk), the temporary file is removed.
pub(crate) struct SegmentWriter<'a> {
    backend: &'a dyn FileBackend,
    path: PathBuf,
    tmp: PathBuf,
    file: Option<std::io::BufWriter<Box<dyn crate::fs::DurableFile>>>,
    schema: &'a TableSchema,
    footer: Footer,
    /// Table column id → segment-local id.
    local: HashMap<usize, u32>,
    postings: std::collections::BTreeMap<(u32, String), Vec<u32>>,
    /// Bytes written to the file so far.
    offset: u64,
    buf: Vec<u8>,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for SegmentWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentWriter").field("path", &self.path).field("offset", &self.offset).finish()
    }
}

impl<'a> SegmentWriter<'a> {
    /// Starts a segment file for `table` and `partition_start` at `path`.
    pub(crate) fn create(
        backend: &'a dyn FileBackend,
        path: &Path,
        table: &str,
        partition_start: i64,
        schema: &'a TableSchema,
    ) -> Result<Self> {
        let tmp = path.with_extension("tmp");
        // A leftover from a crash was never renamed into place: garbage.
        match std::fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&tmp, e)),
        }
        let file = backend.create_new(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut w = SegmentWriter {
            backend,
            path: path.to_path_buf(),
            tmp,
            file: Some(std::io::BufWriter::with_capacity(1 << 20, file)),
            schema,
            footer: Footer {
                table: table.to_string(),
                partition_start,
                min_time: i64::MAX,
                max_time: i64::MIN,
                ..Default::default()
            },
            local: HashMap::new(),
            postings: Default::default(),
            offset: 0,
            buf: Vec::with_capacity(64 * 1024),
            scratch: Vec::new(),
        };
        let header = format::header();
        w.put(&header)?;
        Ok(w)
    }

    /// Series added so far.
    pub(crate) fn series_count(&self) -> usize {
        self.footer.series.len()
    }

    /// Bytes written so far.
    pub(crate) fn bytes_written(&self) -> u64 {
        self.offset
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        let Some(f) = self.file.as_mut() else {
            return Err(Error::Internal("segment writer used after an error".into()));
        };
        if let Err(e) = f.write_all(bytes) {
            self.file = None;
            return Err(Error::io(&self.tmp, e));
        }
        self.offset += bytes.len() as u64;
        Ok(())
    }

    fn local_id(&mut self, table_id: usize) -> Result<u32> {
        if let Some(&l) = self.local.get(&table_id) {
            return Ok(l);
        }
        let def = self
            .schema
            .column(table_id)
            .ok_or_else(|| Error::Internal(format!("column id {table_id} not in schema")))?;
        let l = self.footer.columns.len() as u32;
        self.footer.columns.push((def.name.clone(), def.kind));
        self.local.insert(table_id, l);
        Ok(l)
    }

    /// Appends one series (sorted by time without duplicates; series must
    /// come in key order, each once). An empty series is skipped.
    pub(crate) fn add(&mut self, key: &SeriesKey, data: &SeriesData) -> Result<()> {
        if data.times.is_empty() {
            return Ok(());
        }
        let rows = data.times.len();
        if rows > format::MAX_CHUNK_ROWS {
            return Err(Error::ResourceLimit(format!(
                "series {key} has {rows} rows in one segment; the limit is {}",
                format::MAX_CHUNK_ROWS
            )));
        }
        let min_time = data.times.first().copied().unwrap_or_default();
        let max_time = data.times.last().copied().unwrap_or_default();
        let series_id = self.footer.series.len() as u32;
        let mut tags = Vec::with_capacity(key.0.len());
        for (name, value) in &key.0 {
            let tid = self.schema.id_of(name).ok_or_else(|| Error::Internal(format!("tag {name} not in schema")))?;
            let l = self.local_id(tid)?;
            tags.push((l, value.clone()));
            self.postings.entry((l, value.clone())).or_default().push(series_id);
        }
        let mut buf = std::mem::take(&mut self.buf);
        let mut scratch = std::mem::take(&mut self.scratch);
        buf.clear();
        let base = self.offset;
        let mut chunks = Vec::new();
        // Time chunk.
        scratch.clear();
        let time_codec = codec::encode_timestamps_auto(&data.times, &mut scratch);
        let (min_v, max_v) = (min_time.to_le_bytes(), max_time.to_le_bytes());
        chunks.push(write_chunk(
            &mut buf,
            base,
            None,
            time_codec,
            rows,
            rows,
            None,
            &scratch,
            min_time,
            max_time,
            Some((min_v, max_v)),
        ));
        for (col_id, col) in data.columns.iter().enumerate() {
            let Some(col) = col else { continue };
            if !col.valid.iter().any(|v| *v) {
                continue;
            }
            let l = self.local_id(col_id)?;
            let validity = if col.valid.iter().all(|v| *v) { None } else { Some(col.valid.as_slice()) };
            scratch.clear();
            let (codec_id, count, stats) = encode_values(col, &mut scratch);
            chunks.push(write_chunk(
                &mut buf,
                base,
                Some(l),
                codec_id,
                rows,
                count,
                validity,
                &scratch,
                min_time,
                max_time,
                stats,
            ));
        }
        let written = self.put(&buf);
        self.buf = buf;
        self.scratch = scratch;
        written?;
        self.footer.min_time = self.footer.min_time.min(min_time);
        self.footer.max_time = self.footer.max_time.max(max_time);
        self.footer.rows += rows as u64;
        self.footer.series.push(SeriesEntry { tags, rows: rows as u32, min_time, max_time, chunks });
        Ok(())
    }

    /// Writes the footer and trailer, fsyncs the file and renames it into
    /// place durably.
    pub(crate) fn finish(mut self) -> Result<SegmentStats> {
        self.footer.postings =
            std::mem::take(&mut self.postings).into_iter().map(|((c, v), ids)| (c, v, ids)).collect();
        let footer_offset = self.offset;
        let mut tail = Vec::new();
        self.footer.encode(&mut tail);
        let footer_len = tail.len();
        let crc = crc32c::crc32c(&tail);
        tail.extend_from_slice(&footer_offset.to_le_bytes());
        tail.extend_from_slice(&(footer_len as u32).to_le_bytes());
        tail.extend_from_slice(&crc.to_le_bytes());
        tail.extend_from_slice(&format::MAGIC);
        self.put(&tail)?;
        let Some(file) = self.file.take() else {
            return Err(Error::Internal("segment writer used after an error".into()));
        };
        let mut file = file.into_inner().map_err(|e| Error::io(&self.tmp, e.into_error()))?;
        file.sync_data().map_err(|e| Error::io(&self.tmp, e))?;
        drop(file);
        crate::fs::rename_durable(self.backend, &self.tmp, &self.path)?;
        // Renamed: nothing for Drop to remove.
        self.tmp = PathBuf::new();
        Ok(SegmentStats {
            rows: self.footer.rows,
            min_time: self.footer.min_time,
            max_time: self.footer.max_time,
            bytes: self.offset,
        })
    }
}

impl Drop for SegmentWriter<'_> {
    fn drop(&mut self) {
        // Unfinished: the temporary file is garbage (a full disk leaves no partial output).
        self.file = None;
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

use std::io::Write as _;

#[expect(
    clippy::too_many_arguments,
    reason = "one call site per column kind; a struct would only rename the arguments"
)]
fn write_chunk(
    out: &mut Vec<u8>,
    base: u64,
    column: Option<u32>,
    codec_id: CodecId,
    rows: usize,
    values: usize,
    validity: Option<&[bool]>,
    payload: &[u8],
    min_time: i64,
    max_time: i64,
    stats: ValueStats,
) -> ChunkRef {
    let start = out.len();
    let mut flags = 0;
    if validity.is_some() {
        flags |= FLAG_VALIDITY;
    }
    // Strings are zstd-compressed by their codec already; the reader's bound must hold.
    let zstd = (codec_id != CodecId::StringDictZstd && payload.len() <= codec::zstd_stage_limit(values))
        .then(|| codec::zstd_stage(payload))
        .flatten();
    let payload = match &zstd {
        Some(z) => {
            flags |= FLAG_ZSTD;
            z.as_slice()
        }
        None => payload,
    };
    if stats.is_some() {
        flags |= FLAG_STATS;
    }
    let (min_value, max_value) = stats.unwrap_or_default();
    ChunkHeader {
        codec: codec_id as u8,
        flags,
        rows: rows as u32,
        values: values as u32,
        payload_len: payload.len() as u32,
        min_time,
        max_time,
        min_value,
        max_value,
    }
    .encode(out);
    if let Some(v) = validity {
        crate::wal::format::put_bitmap(out, v);
    }
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    ChunkRef { column, offset: base + start as u64, len: (out.len() - start) as u32 }
}

/// Encodes the present values of a column; returns codec, count and min/max statistics.
/// Min and max value of a chunk, as the 8 bytes stored in its header.
type ValueStats = Option<([u8; 8], [u8; 8])>;

fn encode_values(col: &Column, out: &mut Vec<u8>) -> (CodecId, usize, ValueStats) {
    fn present<T: Copy>(v: &[T], valid: &[bool]) -> Vec<T> {
        v.iter().zip(valid).filter(|(_, ok)| **ok).map(|(x, _)| *x).collect()
    }
    match &col.values {
        Values::F64(v) => {
            let p = present(v, &col.valid);
            let id = codec::encode_f64_auto(&p, out);
            let mut it = p.iter().copied().filter(|x| !x.is_nan());
            let stats = it.next().map(|first| {
                let (lo, hi) = it.fold((first, first), |(lo, hi), x| (lo.min(x), hi.max(x)));
                (lo.to_le_bytes(), hi.to_le_bytes())
            });
            (id, p.len(), stats)
        }
        Values::I64(v) => {
            let p = present(v, &col.valid);
            let id = codec::encode_i64_auto(&p, out);
            let stats = p.iter().min().zip(p.iter().max()).map(|(lo, hi)| (lo.to_le_bytes(), hi.to_le_bytes()));
            (id, p.len(), stats)
        }
        Values::U64(v) => {
            let p = present(v, &col.valid);
            let id = codec::encode_u64_auto(&p, out);
            let stats = p.iter().min().zip(p.iter().max()).map(|(lo, hi)| (lo.to_le_bytes(), hi.to_le_bytes()));
            (id, p.len(), stats)
        }
        Values::Bool(v) => {
            let p = present(v, &col.valid);
            let id = codec::encode_bool_auto(&p, out);
            let stats = p
                .iter()
                .min()
                .zip(p.iter().max())
                .map(|(lo, hi)| (u64::from(*lo).to_le_bytes(), u64::from(*hi).to_le_bytes()));
            (id, p.len(), stats)
        }
        Values::Str(v) => {
            let p: Vec<&str> = v.iter().zip(&col.valid).filter(|(_, ok)| **ok).map(|(s, _)| s.as_str()).collect();
            codec::encode_strings(&p, out);
            (CodecId::StringDictZstd, p.len(), None)
        }
    }
}

/// An open segment file.
#[derive(Debug)]
pub(crate) struct SegmentReader {
    path: PathBuf,
    map: Mmap,
    footer: Footer,
    /// Column name → segment-local id.
    by_name: HashMap<String, u32>,
    /// Set once the manifest no longer lists the file (compacted away,
    /// expired): the last holder (a running scan, say) removes it.
    obsolete: std::sync::atomic::AtomicBool,
}

impl Drop for SegmentReader {
    fn drop(&mut self) {
        if self.obsolete.load(std::sync::atomic::Ordering::SeqCst) {
            // Not fsynced: after a crash the file is unreferenced, and open removes it.
            if let Err(e) = std::fs::remove_file(&self.path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(file = %self.path.display(), error = %e, "cannot remove an obsolete segment file");
            }
        }
    }
}

/// Which rows of a series a scan wants.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TimeRange {
    /// Inclusive lower bound.
    pub(crate) start: i64,
    /// Exclusive upper bound.
    pub(crate) end: i64,
}

impl TimeRange {
    pub(crate) const ALL: TimeRange = TimeRange { start: i64::MIN, end: i64::MAX };

    pub(crate) fn overlaps(&self, min: i64, max: i64) -> bool {
        min < self.end && max >= self.start && min <= max
    }

    pub(crate) fn contains(&self, t: i64) -> bool {
        t >= self.start && t < self.end
    }
}

impl SegmentReader {
    /// Opens and verifies the header, trailer and footer of a segment file.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: segment files are immutable once renamed into place and
        // never truncated or rewritten; deletion only unlinks them, which
        // leaves an existing mapping valid.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let corrupt = |offset: u64, detail: String| Error::corruption(path, offset, detail);
        let len = map.len();
        if len < HEADER_LEN + TRAILER_LEN {
            return Err(corrupt(0, format!("file is {len} bytes, too short for a segment")));
        }
        format::check_header(path, &map)?;
        let tpos = len - TRAILER_LEN;
        let mut t = Reader::new(&map[tpos..]);
        let trailer_err = |e: crate::bytes::ReadError| corrupt(tpos as u64 + e.offset as u64, e.detail);
        let footer_offset = t.u64("footer offset").map_err(trailer_err)?;
        let footer_len = t.u32("footer length").map_err(trailer_err)? as usize;
        let footer_crc = t.u32("footer checksum").map_err(trailer_err)?;
        if map.get(len - 8..) != Some(&format::MAGIC[..]) {
            return Err(corrupt(
                (len - 8) as u64,
                "bad magic at the end of the file (truncated or overwritten?)".into(),
            ));
        }
        let fstart = usize::try_from(footer_offset).unwrap_or(usize::MAX);
        let Some(fbytes) = fstart
            .checked_add(footer_len)
            .filter(|&e| e == tpos && fstart >= HEADER_LEN)
            .and_then(|e| map.get(fstart..e))
        else {
            return Err(corrupt(
                tpos as u64,
                format!(
                    "footer at {footer_offset} of {footer_len} bytes does not end where the trailer starts ({tpos})"
                ),
            ));
        };
        let actual = crc32c::crc32c(fbytes);
        if !crate::bytes::checksum_matches(footer_crc, actual) {
            return Err(corrupt(
                footer_offset,
                format!("footer checksum mismatch (expected {footer_crc:#010x}, found {actual:#010x})"),
            ));
        }
        let footer = Footer::decode(fbytes)
            .map_err(|e| corrupt(footer_offset + e.offset as u64, format!("footer: {}", e.detail)))?;
        let by_name = footer.columns.iter().enumerate().map(|(i, (n, _))| (n.clone(), i as u32)).collect();
        Ok(SegmentReader {
            path: path.to_path_buf(),
            map,
            footer,
            by_name,
            obsolete: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Marks the file for removal once the last holder of this reader drops it.
    pub(crate) fn mark_obsolete(&self) {
        self.obsolete.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Decodes every chunk of every series, checking every checksum; the
    /// first damage found is the error.
    pub(crate) fn verify(&self) -> Result<u64> {
        let cols: Vec<(usize, String, ColumnKind)> =
            self.footer.columns.iter().enumerate().map(|(i, (n, k))| (i, n.clone(), *k)).collect();
        let wanted: Vec<(usize, &str, ColumnKind)> =
            cols.iter().filter(|(_, _, k)| *k != ColumnKind::Tag).map(|(i, n, k)| (*i, n.as_str(), *k)).collect();
        let mut rows = 0u64;
        for id in 0..self.footer.series.len() as u32 {
            rows += self.read_series(id, &wanted, cols.len(), TimeRange::ALL)?.times.len() as u64;
        }
        Ok(rows)
    }

    /// True if some series matching `predicates` has rows in `range`
    /// (by the footer's bounds: it may still have none there).
    pub(crate) fn may_hold(&self, predicates: &[(String, Vec<String>)], range: TimeRange) -> bool {
        range.overlaps(self.footer.min_time, self.footer.max_time)
            && self
                .matching_series(predicates)
                .into_iter()
                .any(|id| self.footer.series.get(id as usize).is_some_and(|s| range.overlaps(s.min_time, s.max_time)))
    }

    pub(crate) fn footer(&self) -> &Footer {
        &self.footer
    }

    /// Ids of the series whose tags satisfy every predicate (`tag IN values`),
    /// found through the postings.
    pub(crate) fn matching_series(&self, predicates: &[(String, Vec<String>)]) -> Vec<u32> {
        let mut result: Option<Vec<u32>> = None;
        for (tag, values) in predicates {
            let Some(&col) = self.by_name.get(tag) else {
                return Vec::new();
            };
            let mut ids: Vec<u32> = self
                .footer
                .postings
                .iter()
                .filter(|(c, v, _)| *c == col && values.iter().any(|x| x == v))
                .flat_map(|(_, _, ids)| ids.iter().copied())
                .collect();
            ids.sort_unstable();
            ids.dedup();
            result = Some(match result {
                None => ids,
                Some(prev) => prev.into_iter().filter(|id| ids.binary_search(id).is_ok()).collect(),
            });
        }
        result.unwrap_or_else(|| (0..self.footer.series.len() as u32).collect())
    }

    /// The key of series `id`.
    pub(crate) fn series_key(&self, id: u32) -> SeriesKey {
        let Some(s) = self.footer.series.get(id as usize) else {
            return SeriesKey::default();
        };
        SeriesKey::new(
            s.tags
                .iter()
                .filter_map(|(c, v)| self.footer.columns.get(*c as usize).map(|(n, _)| (n.clone(), v.clone())))
                .collect(),
        )
    }

    /// Decodes series `id` within `range`: times and the `wanted` columns
    /// (table column id, name, kind), placed at their table column ids in a
    /// vector of `width` columns.
    pub(crate) fn read_series(
        &self,
        id: u32,
        wanted: &[(usize, &str, ColumnKind)],
        width: usize,
        range: TimeRange,
    ) -> Result<SeriesData> {
        let s = self
            .footer
            .series
            .get(id as usize)
            .ok_or_else(|| Error::Internal(format!("series id {id} out of range")))?;
        let rows = s.rows as usize;
        let mut data = SeriesData { times: Vec::new(), columns: vec![None; width] };
        if !range.overlaps(s.min_time, s.max_time) {
            return Ok(data);
        }
        let time_ref =
            s.chunks.iter().find(|c| c.column.is_none()).ok_or_else(|| self.corrupt(0, "series has no time chunk"))?;
        let times = self.read_chunk(time_ref, rows, FieldType::I64, true)?;
        let Values::I64(times) = times.values else {
            return Err(Error::Internal("time chunk decoded to the wrong type".into()));
        };
        let lo = times.partition_point(|t| *t < range.start);
        let hi = times.partition_point(|t| *t < range.end);
        if !times.windows(2).all(|w| w[0] < w[1]) {
            return Err(self.corrupt(time_ref.offset, "timestamps in a segment series are not strictly increasing"));
        }
        let full = lo == 0 && hi == times.len();
        data.times = if full { times } else { times.get(lo..hi).map(<[i64]>::to_vec).unwrap_or_default() };
        for &(table_id, name, kind) in wanted {
            let Some(&local) = self.by_name.get(name) else {
                continue;
            };
            if self.footer.columns.get(local as usize).map(|(_, k)| *k) != Some(kind) {
                continue; // the table's column has another kind than this segment's: not the same column
            }
            let Some(cref) = s.chunks.iter().find(|c| c.column == Some(local)) else {
                continue;
            };
            let t = kind.value_type();
            let col = self.read_chunk(cref, rows, t, false)?;
            let sliced = slice_column(col, lo, hi);
            if let Some(slot) = data.columns.get_mut(table_id) {
                *slot = Some(sliced);
            }
        }
        Ok(data)
    }

    /// Every chunk's column, size in the file (header and checksum included),
    /// codec byte, value count and whether the zstd stage was applied, for
    /// storage reports. Chunks whose header cannot be read are reported with
    /// codec 0 and no values.
    pub(crate) fn chunk_sizes(&self) -> Vec<(Option<u32>, u32, u8, u32, bool)> {
        let mut out = Vec::new();
        for s in &self.footer.series {
            for c in &s.chunks {
                let start = usize::try_from(c.offset).unwrap_or(usize::MAX);
                let header = self.map.get(start..).map(Reader::new).and_then(|mut r| ChunkHeader::decode(&mut r).ok());
                let (codec, values, flags) = header.map_or((0, 0, 0), |h| (h.codec, h.values, h.flags));
                out.push((c.column, c.len, codec, values, flags & FLAG_ZSTD != 0));
            }
        }
        out
    }

    /// Size of the whole file.
    pub(crate) fn file_len(&self) -> u64 {
        self.map.len() as u64
    }

    fn corrupt(&self, offset: u64, detail: impl Into<String>) -> Error {
        Error::Corruption {
            file: self.path.clone(),
            offset,
            detail: detail.into(),
            hint: "; the segment is damaged: restore it from a backup, or remove it from the manifest to drop its rows"
                .into(),
        }
    }

    /// Reads a chunk of type `t` (`is_time`: the time column), whatever codec
    /// its header names among those that type can use.
    fn read_chunk(&self, cref: &ChunkRef, rows: usize, t: FieldType, is_time: bool) -> Result<Column> {
        let off = cref.offset;
        let start = usize::try_from(off).unwrap_or(usize::MAX);
        let Some(bytes) = start.checked_add(cref.len as usize).and_then(|end| self.map.get(start..end)) else {
            return Err(self.corrupt(
                off,
                format!("chunk of {} bytes lies outside the file ({} bytes)", cref.len, self.map.len()),
            ));
        };
        if bytes.len() < CHUNK_HEADER_LEN + 4 {
            return Err(self.corrupt(off, "chunk is shorter than its header"));
        }
        let (body, crc_bytes) = bytes.split_at(bytes.len() - 4);
        let stored = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
        let actual = crc32c::crc32c(body);
        if !crate::bytes::checksum_matches(stored, actual) {
            return Err(
                self.corrupt(off, format!("chunk checksum mismatch (expected {stored:#010x}, found {actual:#010x})"))
            );
        }
        let mut r = Reader::new(body);
        let h = ChunkHeader::decode(&mut r).map_err(|e| self.corrupt(off + e.offset as u64, e.detail))?;
        if h.flags & !KNOWN_FLAGS != 0 {
            return Err(self.corrupt(off, format!("chunk has unknown flags {:#04x}", h.flags & !KNOWN_FLAGS)));
        }
        let codec_id = CodecId::try_from(h.codec).map_err(|e| self.corrupt(off, e.to_string()))?;
        if h.rows as usize != rows || h.values > h.rows {
            return Err(self.corrupt(
                off,
                format!("chunk has {} rows and {} values, the series has {rows} rows", h.rows, h.values),
            ));
        }
        let valid = if h.flags & FLAG_VALIDITY != 0 {
            let v = crate::wal::format::read_bitmap(&mut r, rows, "validity bitmap")
                .map_err(|e| self.corrupt(off + e.offset as u64, e.detail))?;
            let n = v.iter().filter(|b| **b).count();
            if n != h.values as usize {
                return Err(self.corrupt(off, format!("validity bitmap marks {n} values, header says {}", h.values)));
            }
            v
        } else {
            if h.values != h.rows {
                return Err(self.corrupt(off, "chunk without validity bitmap has nulls"));
            }
            vec![true; rows]
        };
        let at = r.pos();
        let payload = r
            .take(h.payload_len as usize, "chunk payload")
            .map_err(|e| self.corrupt(off + e.offset as u64, e.detail))?;
        let count = h.values as usize;
        let dense = |e: codec::CodecError| self.corrupt(off + at as u64 + e.offset as u64, e.to_string());
        let unzstd;
        let payload = if h.flags & FLAG_ZSTD != 0 {
            unzstd = codec::unzstd_stage(payload, codec::zstd_stage_limit(count))
                .map_err(|e| self.corrupt(off + at as u64, e))?;
            unzstd.as_slice()
        } else {
            payload
        };
        let values = match t {
            FieldType::F64 => {
                let mut v = Vec::with_capacity(count);
                codec::decode_f64_any(codec_id, payload, count, &mut v).map_err(dense)?;
                Values::F64(expand(v, &valid))
            }
            FieldType::I64 if is_time => {
                let mut v = Vec::with_capacity(count);
                codec::decode_timestamps_any(codec_id, payload, count, &mut v).map_err(dense)?;
                Values::I64(expand(v, &valid))
            }
            FieldType::I64 => {
                let mut v = Vec::with_capacity(count);
                codec::decode_i64_any(codec_id, payload, count, &mut v).map_err(dense)?;
                Values::I64(expand(v, &valid))
            }
            FieldType::U64 => {
                let mut v = Vec::with_capacity(count);
                codec::decode_u64_any(codec_id, payload, count, &mut v).map_err(dense)?;
                Values::U64(expand(v, &valid))
            }
            FieldType::Bool => {
                let mut v = Vec::with_capacity(count);
                codec::decode_bool_any(codec_id, payload, count, &mut v).map_err(dense)?;
                Values::Bool(expand(v, &valid))
            }
            FieldType::String => {
                let mut v = Vec::with_capacity(count);
                if codec_id != CodecId::StringDictZstd {
                    return Err(self.corrupt(off, format!("string chunk has codec {}", codec_id.name())));
                }
                codec::decode_strings(payload, count, &mut v).map_err(dense)?;
                Values::Str(expand(v, &valid))
            }
        };
        if values.len() != rows {
            return Err(self.corrupt(off, format!("chunk decoded to {} values, expected {rows}", values.len())));
        }
        Ok(Column { values, valid })
    }
}

/// Spreads present values over the rows marked valid; null rows get defaults.
fn expand<T: Default>(present: Vec<T>, valid: &[bool]) -> Vec<T> {
    if present.len() == valid.len() {
        return present;
    }
    let mut it = present.into_iter();
    valid.iter().map(|ok| if *ok { it.next().unwrap_or_default() } else { T::default() }).collect()
}

fn slice_column(col: Column, lo: usize, hi: usize) -> Column {
    if lo == 0 && hi == col.len() {
        return col;
    }
    let mut out = Column::with_capacity(col.values.field_type(), hi.saturating_sub(lo));
    out.extend_range(&col, lo, hi);
    out
}
