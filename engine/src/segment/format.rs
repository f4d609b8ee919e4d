//! Segment byte layout, in one place. Little-endian throughout.
//! `docs/format.md` has the same layout as tables.
//!
//! ```text
//! file    = header chunk* footer trailer
//! header  = magic "TMKSEG\0\0" (8) | version u16 | reserved u16 | crc32c(previous 12 bytes) u32
//! chunk   = codec u8 | flags u8 | reserved u16 | rows u32 | values u32 | payload_len u32
//!           | min_time i64 | max_time i64 | min_value [u8; 8] | max_value [u8; 8]
//!           | [validity bitmap ⌈rows/8⌉ bytes, if flags & 1] | payload | crc32c u32
//!           (the crc covers every byte of the chunk before it; if flags & 4
//!           the payload is raw_len u32 | zstd frame of the codec's payload)
//! footer  = see `Footer::encode`
//! trailer = footer_offset u64 | footer_len u32 | crc32c(footer) u32 | magic (8)
//! ```

use crate::bytes::{PutBytes, ReadResult, Reader};
use crate::schema::ColumnKind;

/// First and last bytes of every segment file.
pub(crate) const MAGIC: [u8; 8] = *b"TMKSEG\0\0";
/// The version this build writes. Version 2 added [`FLAG_ZSTD`]; version 1
/// files (no zstd chunks) read unchanged.
pub(crate) const VERSION: u16 = 2;
/// The oldest version this build reads.
pub(crate) const OLDEST_VERSION: u16 = 1;
pub(crate) const HEADER_LEN: usize = crate::bytes::FILE_HEADER_LEN;
pub(crate) const TRAILER_LEN: usize = 24;
pub(crate) const CHUNK_HEADER_LEN: usize = 48;
/// Chunk flag: a validity bitmap follows the header.
pub(crate) const FLAG_VALIDITY: u8 = 1;
/// Chunk flag: min/max value statistics are set.
pub(crate) const FLAG_STATS: u8 = 2;
/// Chunk flag (version 2): the payload is `raw_len u32 | zstd frame`, which
/// decompresses to the codec's payload of exactly `raw_len` bytes.
pub(crate) const FLAG_ZSTD: u8 = 4;
/// Every flag this build knows; a chunk with another bit set is refused.
pub(crate) const KNOWN_FLAGS: u8 = FLAG_VALIDITY | FLAG_STATS | FLAG_ZSTD;
/// The most rows one chunk may hold.
pub(crate) const MAX_CHUNK_ROWS: usize = 1 << 26;

/// The file header's magic and versions, checked by [`crate::bytes::FileHeader`].
pub(crate) const HEADER: crate::bytes::FileHeader =
    crate::bytes::FileHeader { format: "segment", magic: MAGIC, version: VERSION, oldest: OLDEST_VERSION };

pub(crate) fn header() -> [u8; HEADER_LEN] {
    HEADER.encode()
}

pub(crate) fn check_header(path: &std::path::Path, data: &[u8]) -> crate::Result<()> {
    HEADER.check(path, data)
}

/// The fixed part of a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkHeader {
    pub(crate) codec: u8,
    pub(crate) flags: u8,
    pub(crate) rows: u32,
    pub(crate) values: u32,
    pub(crate) payload_len: u32,
    pub(crate) min_time: i64,
    pub(crate) max_time: i64,
    pub(crate) min_value: [u8; 8],
    pub(crate) max_value: [u8; 8],
}

impl ChunkHeader {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.put_u8(self.codec);
        out.put_u8(self.flags);
        out.put_u16(0);
        out.put_u32(self.rows);
        out.put_u32(self.values);
        out.put_u32(self.payload_len);
        out.put_i64(self.min_time);
        out.put_i64(self.max_time);
        out.extend_from_slice(&self.min_value);
        out.extend_from_slice(&self.max_value);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> ReadResult<Self> {
        let codec = r.u8("chunk codec")?;
        let flags = r.u8("chunk flags")?;
        let _reserved = r.u16("chunk reserved")?;
        let rows = r.u32("chunk rows")?;
        let values = r.u32("chunk value count")?;
        let payload_len = r.u32("chunk payload length")?;
        let min_time = r.i64("chunk min time")?;
        let max_time = r.i64("chunk max time")?;
        let min_value = r.u64("chunk min value")?.to_le_bytes();
        let max_value = r.u64("chunk max value")?.to_le_bytes();
        Ok(ChunkHeader { codec, flags, rows, values, payload_len, min_time, max_time, min_value, max_value })
    }
}

/// Where a column chunk of a series lies in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkRef {
    /// Segment-local column id; `None` is the time column.
    pub(crate) column: Option<u32>,
    pub(crate) offset: u64,
    pub(crate) len: u32,
}

/// A series as listed in the footer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SeriesEntry {
    /// (segment-local tag column id, value), sorted by tag name.
    pub(crate) tags: Vec<(u32, String)>,
    pub(crate) rows: u32,
    pub(crate) min_time: i64,
    pub(crate) max_time: i64,
    pub(crate) chunks: Vec<ChunkRef>,
}

/// The footer index of a segment.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Footer {
    pub(crate) table: String,
    pub(crate) partition_start: i64,
    pub(crate) min_time: i64,
    pub(crate) max_time: i64,
    pub(crate) rows: u64,
    /// Columns this segment holds (besides time), by segment-local id.
    pub(crate) columns: Vec<(String, ColumnKind)>,
    pub(crate) series: Vec<SeriesEntry>,
    /// Tag postings: (tag column id, value) → ids of the series having it, ascending.
    pub(crate) postings: Vec<(u32, String, Vec<u32>)>,
}

impl Footer {
    /// ```text
    /// footer = table str | partition_start i64 | min_time i64 | max_time i64 | rows u64
    ///        | ncols varint | (name str | kind u8) × ncols
    ///        | nseries varint | series × nseries
    ///        | npostings varint | (column varint | value str | n varint | delta-coded ids varint × n) × npostings
    /// series = ntags varint | (column varint | value str) × ntags | rows varint | min_time i64 | max_time i64
    ///        | nchunks varint | (column varint, 0 = time, c+1 = column c | offset u64 | len u32) × nchunks
    /// ```
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.put_str(&self.table);
        out.put_i64(self.partition_start);
        out.put_i64(self.min_time);
        out.put_i64(self.max_time);
        out.put_u64(self.rows);
        out.put_varint(self.columns.len() as u64);
        for (name, kind) in &self.columns {
            out.put_str(name);
            out.put_u8(kind.code());
        }
        out.put_varint(self.series.len() as u64);
        for s in &self.series {
            out.put_varint(s.tags.len() as u64);
            for (c, v) in &s.tags {
                out.put_varint(u64::from(*c));
                out.put_str(v);
            }
            out.put_varint(u64::from(s.rows));
            out.put_i64(s.min_time);
            out.put_i64(s.max_time);
            out.put_varint(s.chunks.len() as u64);
            for c in &s.chunks {
                out.put_varint(c.column.map_or(0, |c| u64::from(c) + 1));
                out.put_u64(c.offset);
                out.put_u32(c.len);
            }
        }
        out.put_varint(self.postings.len() as u64);
        for (col, value, ids) in &self.postings {
            out.put_varint(u64::from(*col));
            out.put_str(value);
            out.put_varint(ids.len() as u64);
            let mut prev = 0u32;
            for id in ids {
                out.put_varint(u64::from(id.wrapping_sub(prev)));
                prev = *id;
            }
        }
    }

    pub(crate) fn decode(data: &[u8]) -> ReadResult<Self> {
        let mut r = Reader::new(data);
        let table = r.str("table name")?.to_string();
        let partition_start = r.i64("partition start")?;
        let min_time = r.i64("min time")?;
        let max_time = r.i64("max time")?;
        let rows = r.u64("row count")?;
        let ncols = r.len(r.remaining(), "column count")?;
        let mut columns = Vec::with_capacity(ncols);
        for _ in 0..ncols {
            let name = r.str("column name")?.to_string();
            let code = r.u8("column kind")?;
            let kind = ColumnKind::from_code(code).ok_or_else(|| r.error(format!("unknown column kind {code}")))?;
            columns.push((name, kind));
        }
        let col_id = |r: &mut Reader<'_>, what: &str| -> ReadResult<u32> {
            let at = r.pos();
            let c = r.varint(what)?;
            u32::try_from(c).ok().filter(|c| (*c as usize) < ncols).ok_or(crate::bytes::ReadError {
                offset: at,
                detail: format!("{what} {c} out of range ({ncols} columns)"),
            })
        };
        let nseries = r.len(r.remaining(), "series count")?;
        let mut series = Vec::with_capacity(nseries);
        for _ in 0..nseries {
            let ntags = r.len(r.remaining(), "tag count")?;
            let mut tags = Vec::with_capacity(ntags);
            for _ in 0..ntags {
                let c = col_id(&mut r, "tag column")?;
                tags.push((c, r.str("tag value")?.to_string()));
            }
            let srows = r.len(MAX_CHUNK_ROWS, "series rows")? as u32;
            let smin = r.i64("series min time")?;
            let smax = r.i64("series max time")?;
            let nchunks = r.len(r.remaining(), "chunk count")?;
            let mut chunks = Vec::with_capacity(nchunks);
            for _ in 0..nchunks {
                let at = r.pos();
                let c = r.varint("chunk column")?;
                let column = match c {
                    0 => None,
                    c => Some(u32::try_from(c - 1).ok().filter(|c| (*c as usize) < ncols).ok_or(
                        crate::bytes::ReadError { offset: at, detail: format!("chunk column {c} out of range") },
                    )?),
                };
                chunks.push(ChunkRef { column, offset: r.u64("chunk offset")?, len: r.u32("chunk length")? });
            }
            series.push(SeriesEntry { tags, rows: srows, min_time: smin, max_time: smax, chunks });
        }
        let npost = r.len(r.remaining(), "postings count")?;
        let mut postings = Vec::with_capacity(npost);
        for _ in 0..npost {
            let col = col_id(&mut r, "postings column")?;
            let value = r.str("postings value")?.to_string();
            let n = r.len(nseries, "postings length")?;
            let mut ids = Vec::with_capacity(n);
            let mut prev = 0u32;
            for _ in 0..n {
                let at = r.pos();
                let d = r.varint("series id")?;
                let id = u32::try_from(d).ok().and_then(|d| prev.checked_add(d)).filter(|id| (*id as usize) < nseries);
                let id = id.ok_or(crate::bytes::ReadError { offset: at, detail: "series id out of range".into() })?;
                ids.push(id);
                prev = id;
            }
            postings.push((col, value, ids));
        }
        if r.remaining() != 0 {
            return Err(r.error(format!("{} unexpected bytes after the footer", r.remaining())));
        }
        Ok(Footer { table, partition_start, min_time, max_time, rows, columns, series, postings })
    }
}
