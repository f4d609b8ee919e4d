//! WAL byte layout, in one place. Little-endian throughout.
//!
//! ```text
//! file   = header record*
//! header = magic "TMKWAL\0\0" (8) | version u16 | reserved u16 | crc32c(previous 12 bytes) u32 (zero)
//! record = payload_len u32 | crc32c(payload) u32 | payload
//! payload (kind 1, write) =
//!     kind u8 = 1 | seq u64 | database str | table str | rows varint
//!     | time i64 × rows | ncols varint | column × ncols
//! column = name str | kind u8 (0 tag, 1 f64, 2 i64, 3 u64, 4 bool, 5 string)
//!     | validity u8 (0 all valid, 1 bitmap follows) | [bitmap ⌈rows/8⌉ bytes, LSB first]
//!     | values: f64/i64/u64 as 8 bytes × rows; bool as bitmap; string as (str) × rows
//! payload (kind 2, delete; version 2) =
//!     kind u8 = 2 | seq u64 | database str | table str | ntags varint
//!     | (tag str | nvalues varint | value str × nvalues) × ntags
//!     | start i64 | end i64 | requested_at i64 | rows_matched u64
//! str    = len varint | UTF-8 bytes
//! ```

use crate::batch::{BatchColumn, Column, Values};
use crate::bytes::{PutBytes, ReadResult, Reader};
use crate::schema::ColumnKind;

/// First bytes of every WAL file.
pub(crate) const MAGIC: [u8; 8] = *b"TMKWAL\0\0";
/// The version this build writes. Version 2 added delete records (kind 2);
/// version 1 files read unchanged.
pub(crate) const VERSION: u16 = 2;
/// The oldest version this build reads.
pub(crate) const OLDEST_VERSION: u16 = 1;
/// Bytes of the file header.
pub(crate) const HEADER_LEN: usize = crate::bytes::FILE_HEADER_LEN;
/// Bytes of a record frame before the payload.
pub(crate) const FRAME_LEN: usize = 8;
/// The largest payload a record may have; larger lengths are corruption.
pub(crate) const MAX_PAYLOAD: usize = 1 << 30;

const KIND_WRITE: u8 = 1;
const KIND_DELETE: u8 = 2;

/// The file header's magic and versions, checked by [`crate::bytes::FileHeader`].
pub(crate) const HEADER: crate::bytes::FileHeader =
    crate::bytes::FileHeader { format: "WAL", magic: MAGIC, version: VERSION, oldest: OLDEST_VERSION };

pub(crate) fn header() -> [u8; HEADER_LEN] {
    HEADER.encode()
}

pub(crate) fn check_header(path: &std::path::Path, data: &[u8]) -> crate::Result<()> {
    HEADER.check(path, data)
}

/// Rows of one table, validated and ready to log and apply.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TableWrite {
    pub(crate) database: String,
    pub(crate) table: String,
    pub(crate) times: Vec<i64>,
    pub(crate) columns: Vec<BatchColumn>,
}

/// One logged operation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum WalEntry {
    Write(TableWrite),
    /// A delete; its `seq` is the record's.
    Delete(crate::delete::Tombstone),
}

/// Appends a framed record for `entry` with sequence number `seq` to `out`.
pub(crate) fn encode_entry(seq: u64, entry: &WalEntry, out: &mut Vec<u8>) {
    match entry {
        WalEntry::Write(w) => encode_record(seq, w, out),
        WalEntry::Delete(t) => encode_delete(seq, t, out),
    }
}

/// About the bytes `encode_entry` writes.
pub(crate) fn entry_len_estimate(entry: &WalEntry) -> usize {
    match entry {
        WalEntry::Write(w) => encoded_len_estimate(w),
        WalEntry::Delete(t) => {
            let tags: usize =
                t.tags.iter().map(|(k, v)| k.len() + 10 + v.iter().map(|x| x.len() + 5).sum::<usize>()).sum();
            FRAME_LEN + 64 + t.database.len() + t.table.len() + tags
        }
    }
}

fn finish_frame(out: &mut [u8], start: usize) {
    let payload_len = out.len() - start - FRAME_LEN;
    let crc = crc32c::crc32c(&out[start + FRAME_LEN..]);
    out[start..start + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn encode_delete(seq: u64, t: &crate::delete::Tombstone, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_LEN]);
    out.put_u8(KIND_DELETE);
    out.put_u64(seq);
    out.put_str(&t.database);
    out.put_str(&t.table);
    out.put_varint(t.tags.len() as u64);
    for (tag, values) in &t.tags {
        out.put_str(tag);
        out.put_varint(values.len() as u64);
        values.iter().for_each(|v| out.put_str(v));
    }
    out.put_i64(t.start);
    out.put_i64(t.end);
    out.put_i64(t.requested_at);
    out.put_u64(t.rows_matched);
    finish_frame(out, start);
}

/// Appends a framed record for `write` with sequence number `seq` to `out`.
pub(crate) fn encode_record(seq: u64, write: &TableWrite, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_LEN]);
    out.put_u8(KIND_WRITE);
    out.put_u64(seq);
    out.put_str(&write.database);
    out.put_str(&write.table);
    let rows = write.times.len();
    out.put_varint(rows as u64);
    for t in &write.times {
        out.put_i64(*t);
    }
    out.put_varint(write.columns.len() as u64);
    for c in &write.columns {
        out.put_str(&c.name);
        out.put_u8(c.kind.code());
        if c.data.valid.iter().all(|v| *v) {
            out.put_u8(0);
        } else {
            out.put_u8(1);
            put_bitmap(out, &c.data.valid);
        }
        match &c.data.values {
            Values::F64(v) => v.iter().for_each(|x| out.put_u64(x.to_bits())),
            Values::I64(v) => v.iter().for_each(|x| out.put_i64(*x)),
            Values::U64(v) => v.iter().for_each(|x| out.put_u64(*x)),
            Values::Bool(v) => put_bitmap(out, v),
            Values::Str(v) => v.iter().for_each(|x| out.put_str(x)),
        }
    }
    finish_frame(out, start);
}

/// About the bytes `encode_record` writes for `write`: for the size limit and to allocate once.
pub(crate) fn encoded_len_estimate(write: &TableWrite) -> usize {
    let rows = write.times.len();
    let columns: usize = write
        .columns
        .iter()
        .map(|c| {
            let values = match &c.data.values {
                Values::Str(v) => v.iter().map(|x| x.len() + 2).sum(),
                Values::Bool(_) => rows.div_ceil(8),
                _ => rows * 8,
            };
            c.name.len() + 8 + rows.div_ceil(8) + values
        })
        .sum();
    FRAME_LEN + 64 + write.database.len() + write.table.len() + rows * 8 + columns
}

pub(crate) fn put_bitmap(out: &mut Vec<u8>, bits: &[bool]) {
    for chunk in bits.chunks(8) {
        let mut b = 0u8;
        for (i, bit) in chunk.iter().enumerate() {
            b |= u8::from(*bit) << i;
        }
        out.push(b);
    }
}

pub(crate) fn read_bitmap(r: &mut Reader<'_>, n: usize, what: &str) -> ReadResult<Vec<bool>> {
    let bytes = r.take(n.div_ceil(8), what)?;
    Ok((0..n).map(|i| bytes.get(i / 8).is_some_and(|b| b >> (i % 8) & 1 == 1)).collect())
}

/// Decodes a record payload (already checksummed) into its sequence number and entry.
pub(crate) fn decode_payload(payload: &[u8]) -> ReadResult<(u64, WalEntry)> {
    let mut r = Reader::new(payload);
    let kind = r.u8("record kind")?;
    match kind {
        KIND_WRITE => decode_write(r).map(|(seq, w)| (seq, WalEntry::Write(w))),
        KIND_DELETE => decode_delete(r).map(|t| (t.seq, WalEntry::Delete(t))),
        _ => Err(r.error(format!("unknown record kind {kind}"))),
    }
}

fn decode_delete(mut r: Reader<'_>) -> ReadResult<crate::delete::Tombstone> {
    let seq = r.u64("sequence number")?;
    let database = r.str("database name")?.to_string();
    let table = r.str("table name")?.to_string();
    let ntags = r.len(r.remaining(), "tag count")?;
    let mut tags = Vec::with_capacity(ntags.min(64));
    for _ in 0..ntags {
        let tag = r.str("tag name")?.to_string();
        let n = r.len(r.remaining(), "value count")?;
        let mut values = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            values.push(r.str("tag value")?.to_string());
        }
        tags.push((tag, values));
    }
    let start = r.i64("start time")?;
    let end = r.i64("end time")?;
    let requested_at = r.i64("request time")?;
    let rows_matched = r.u64("matched rows")?;
    if r.remaining() != 0 {
        return Err(r.error(format!("{} unexpected bytes after the record", r.remaining())));
    }
    Ok(crate::delete::Tombstone { seq, database, table, tags, start, end, requested_at, rows_matched, purged_at: None })
}

fn decode_write(mut r: Reader<'_>) -> ReadResult<(u64, TableWrite)> {
    let seq = r.u64("sequence number")?;
    let database = r.str("database name")?.to_string();
    let table = r.str("table name")?.to_string();
    // Every row costs at least 8 bytes of timestamp: bound the count before allocating.
    let rows = r.len(r.remaining() / 8, "row count")?;
    let mut times = Vec::with_capacity(rows);
    for _ in 0..rows {
        times.push(r.i64("timestamp")?);
    }
    let ncols = r.len(r.remaining(), "column count")?;
    let mut columns = Vec::with_capacity(ncols.min(1024));
    for _ in 0..ncols {
        let name = r.str("column name")?.to_string();
        let code = r.u8("column kind")?;
        let kind = ColumnKind::from_code(code).ok_or_else(|| r.error(format!("unknown column kind {code}")))?;
        let valid = match r.u8("validity flag")? {
            0 => vec![true; rows],
            1 => read_bitmap(&mut r, rows, "validity bitmap")?,
            other => return Err(r.error(format!("unknown validity flag {other}"))),
        };
        let values = match kind.value_type() {
            crate::FieldType::F64 => {
                let mut v = Vec::with_capacity(rows);
                for _ in 0..rows {
                    v.push(f64::from_bits(r.u64("float value")?));
                }
                Values::F64(v)
            }
            crate::FieldType::I64 => {
                let mut v = Vec::with_capacity(rows);
                for _ in 0..rows {
                    v.push(r.i64("integer value")?);
                }
                Values::I64(v)
            }
            crate::FieldType::U64 => {
                let mut v = Vec::with_capacity(rows);
                for _ in 0..rows {
                    v.push(r.u64("unsigned value")?);
                }
                Values::U64(v)
            }
            crate::FieldType::Bool => Values::Bool(read_bitmap(&mut r, rows, "boolean values")?),
            crate::FieldType::String => {
                let mut v = Vec::with_capacity(rows.min(r.remaining()));
                for _ in 0..rows {
                    v.push(r.str("string value")?.to_string());
                }
                Values::Str(v)
            }
        };
        columns.push(BatchColumn { name, kind, data: Column { values, valid } });
    }
    if r.remaining() != 0 {
        return Err(r.error(format!("{} unexpected bytes after the record", r.remaining())));
    }
    Ok((seq, TableWrite { database, table, times, columns }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FieldType;

    pub(crate) fn sample() -> TableWrite {
        TableWrite {
            database: "db".into(),
            table: "t".into(),
            times: vec![3, 1, -2],
            columns: vec![
                BatchColumn {
                    name: "host".into(),
                    kind: ColumnKind::Tag,
                    data: Column {
                        values: Values::Str(vec!["a".into(), "".into(), "c".into()]),
                        valid: vec![true, false, true],
                    },
                },
                BatchColumn {
                    name: "v".into(),
                    kind: ColumnKind::Field(FieldType::F64),
                    data: Column { values: Values::F64(vec![f64::NAN, -0.0, 1.5]), valid: vec![true; 3] },
                },
                BatchColumn {
                    name: "ok".into(),
                    kind: ColumnKind::Field(FieldType::Bool),
                    data: Column { values: Values::Bool(vec![true, false, true]), valid: vec![true; 3] },
                },
            ],
        }
    }

    #[test]
    fn record_roundtrip() {
        let w = sample();
        let mut out = Vec::new();
        encode_record(42, &w, &mut out);
        let len = u32::from_le_bytes(out[0..4].try_into().unwrap()) as usize;
        assert_eq!(len, out.len() - FRAME_LEN);
        assert_eq!(u32::from_le_bytes(out[4..8].try_into().unwrap()), crc32c::crc32c(&out[8..]));
        let (seq, back) = decode_payload(&out[8..]).unwrap();
        assert_eq!(seq, 42);
        let WalEntry::Write(back) = back else { panic!("not a write") };
        assert_eq!(back.times, w.times);
        assert_eq!(back.columns.len(), 3);
        let Values::F64(v) = &back.columns[1].data.values else { panic!() };
        assert_eq!(v[0].to_bits(), f64::NAN.to_bits());
        assert_eq!(v[1].to_bits(), (-0.0f64).to_bits());
        assert_eq!(back.columns[0].data.valid, vec![true, false, true]);
    }

    #[test]
    fn delete_record_roundtrip() {
        let req = crate::delete::DeleteRequest::new("t").filter_tag("device", ["a", "b"]).time_range(-5, 99);
        let t = crate::delete::Tombstone::from_request(7, "db", &req, 12);
        let mut out = Vec::new();
        encode_entry(7, &WalEntry::Delete(t.clone()), &mut out);
        assert!(out.len() <= entry_len_estimate(&WalEntry::Delete(t.clone())));
        let (seq, back) = decode_payload(&out[FRAME_LEN..]).unwrap();
        assert_eq!(seq, 7);
        assert_eq!(back, WalEntry::Delete(t));
        // Every truncation is an error, never a panic.
        for n in 0..out.len() - FRAME_LEN {
            assert!(decode_payload(&out[FRAME_LEN..FRAME_LEN + n]).is_err());
        }
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = decode_payload(&data);
        }
    }
}
