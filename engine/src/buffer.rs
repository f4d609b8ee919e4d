//! The write buffer: rows that are durable in the WAL but not yet in
//! segments, per table and series, readable by scans at once.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use crate::batch::{BatchColumn, Column, Values};
use crate::schema::{ColumnKind, TableSchema};
use crate::segment::TimeRange;
use crate::series::{SeriesData, SeriesKey};
use crate::wal::format::TableWrite;

/// Rows of one series in arrival order (not necessarily sorted).
#[derive(Debug, Default)]
pub(crate) struct SeriesBuffer {
    data: SeriesData,
}

impl SeriesBuffer {
    /// All buffered rows (all columns), for flushing.
    pub(crate) fn data(&self) -> &SeriesData {
        &self.data
    }
}

/// The value of a tag column at `row`, if the row has the tag.
fn tag_value(c: &BatchColumn, row: usize) -> Option<&str> {
    match &c.data.values {
        Values::Str(v) if c.data.is_valid(row) => v.get(row).map(String::as_str),
        _ => None,
    }
}

/// Rows of a write grouped by series, in order of first appearance: a
/// representative row and every row of the series. Rows are compared by
/// their tag values in place, so a series key is built once per series of
/// the write instead of once per row.
fn group_by_series(rows: usize, tag_cols: &[&BatchColumn]) -> Vec<(u32, Vec<u32>)> {
    use std::hash::{BuildHasher, Hasher};
    let hasher = foldhash::fast::FixedState::with_seed(0);
    let same = |a: usize, b: usize| tag_cols.iter().all(|c| tag_value(c, a) == tag_value(c, b));
    let mut groups: Vec<(u32, Vec<u32>)> = Vec::new();
    let mut by_hash: HashMap<u64, Vec<usize>, foldhash::fast::FixedState> = HashMap::with_hasher(hasher.clone());
    let mut last: Option<usize> = None;
    for row in 0..rows {
        // Consecutive rows of one series are common: check the last group first.
        if let Some(g) = last
            && let Some((rep, members)) = groups.get_mut(g)
            && same(*rep as usize, row)
        {
            members.push(row as u32);
            continue;
        }
        let mut h = hasher.build_hasher();
        for c in tag_cols {
            match tag_value(c, row) {
                Some(v) => {
                    h.write_u8(1);
                    h.write(v.as_bytes());
                }
                None => h.write_u8(0),
            }
        }
        let candidates = by_hash.entry(h.finish()).or_default();
        let found =
            candidates.iter().copied().find(|&g| groups.get(g).is_some_and(|(rep, _)| same(*rep as usize, row)));
        let g = match found {
            Some(g) => g,
            None => {
                candidates.push(groups.len());
                groups.push((row as u32, Vec::new()));
                groups.len() - 1
            }
        };
        if let Some((_, members)) = groups.get_mut(g) {
            members.push(row as u32);
        }
        last = Some(g);
    }
    groups
}

/// The rows of a write grouped by series, with their keys.
pub(crate) fn series_of(write: &TableWrite) -> Vec<(SeriesKey, Vec<u32>)> {
    let mut tag_cols: Vec<&BatchColumn> = write.columns.iter().filter(|c| c.kind == ColumnKind::Tag).collect();
    tag_cols.sort_by(|a, b| a.name.cmp(&b.name));
    group_by_series(write.times.len(), &tag_cols)
        .into_iter()
        .map(|(rep, rows)| (key_of(&tag_cols, rep as usize), rows))
        .collect()
}

/// The series key of row `row`; `tag_cols` sorted by name.
fn key_of(tag_cols: &[&BatchColumn], row: usize) -> SeriesKey {
    SeriesKey(tag_cols.iter().filter_map(|c| tag_value(c, row).map(|v| (c.name.clone(), v.to_string()))).collect())
}

/// Buffered series of one table.
#[derive(Debug, Default)]
pub(crate) struct TableBuffer {
    pub(crate) series: BTreeMap<SeriesKey, SeriesBuffer>,
}

/// All buffered rows, keyed by (database, table).
#[derive(Debug, Default)]
pub(crate) struct WriteBuffer {
    pub(crate) tables: HashMap<(String, String), TableBuffer>,
    /// Approximate bytes held, for the flush trigger.
    pub(crate) bytes: usize,
    pub(crate) rows: usize,
    /// Highest WAL sequence number applied.
    pub(crate) max_seq: u64,
    /// When the first row arrived, for the age trigger.
    pub(crate) oldest: Option<Instant>,
}

impl WriteBuffer {
    pub(crate) fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Adds the rows of a logged write. `schema` is the table's schema, which
    /// already holds every column of `write`.
    /// `each` sees every series of the write with its rows (the last-value cache).
    pub(crate) fn apply(
        &mut self,
        seq: u64,
        write: &TableWrite,
        schema: &TableSchema,
        mut each: impl FnMut(&SeriesKey, &[u32]),
    ) {
        let table = self.tables.entry((write.database.clone(), write.table.clone())).or_default();
        let mut tag_cols = Vec::new();
        let mut field_cols = Vec::new();
        for c in &write.columns {
            match c.kind {
                ColumnKind::Tag => tag_cols.push(c),
                ColumnKind::Field(_) => {
                    if let Some(id) = schema.id_of(&c.name) {
                        field_cols.push((id, c));
                    }
                }
            }
        }
        tag_cols.sort_by(|a, b| a.name.cmp(&b.name));
        let width = schema.len();
        let mut bytes = 0usize;
        for (rep, rows) in group_by_series(write.times.len(), &tag_cols) {
            let key = key_of(&tag_cols, rep as usize);
            each(&key, &rows);
            let data = &mut table.series.entry(key).or_default().data;
            let n0 = data.times.len();
            data.times.extend(rows.iter().filter_map(|&r| write.times.get(r as usize)));
            if data.columns.len() < width {
                data.columns.resize(width, None);
            }
            bytes += 16 * rows.len();
            for (id, c) in &field_cols {
                let Some(slot) = data.columns.get_mut(*id) else {
                    continue;
                };
                for (i, &r) in rows.iter().enumerate() {
                    let r = r as usize;
                    if !c.data.is_valid(r) {
                        continue;
                    }
                    let col = slot.get_or_insert_with(|| Column::new(c.data.values.field_type()));
                    col.pad_to(n0 + i);
                    col.push_from(&c.data, r);
                    bytes += 1 + c.data.values.approx_bytes_of(r);
                }
            }
        }
        self.bytes += bytes;
        self.rows += write.times.len();
        self.max_seq = self.max_seq.max(seq);
        if self.oldest.is_none() {
            self.oldest = Some(Instant::now());
        }
    }

    /// Removes the rows a delete names.
    pub(crate) fn delete(&mut self, t: &crate::delete::Tombstone) {
        let Some(tb) = self.tables.get_mut(&(t.database.clone(), t.table.clone())) else {
            return;
        };
        let range = t.range();
        let mut removed_rows = 0usize;
        tb.series.retain(|key, s| {
            if !t.matches(key) {
                return true;
            }
            let before = s.data.times.len();
            crate::delete::retain_rows(&mut s.data, &[range], i64::MIN);
            removed_rows += before - s.data.times.len();
            !s.data.times.is_empty()
        });
        // The byte count stays an over-estimate until the flush; the row count is exact.
        self.rows = self.rows.saturating_sub(removed_rows);
    }

    /// Copies the rows of matching series within `range`, unsorted.
    pub(crate) fn collect(
        &self,
        database: &str,
        table: &str,
        filter: &dyn Fn(&SeriesKey) -> bool,
        range: TimeRange,
        wanted: &[usize],
        width: usize,
    ) -> Vec<(SeriesKey, SeriesData)> {
        let Some(t) = self.tables.get(&(database.to_string(), table.to_string())) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (key, s) in &t.series {
            if !filter(key) {
                continue;
            }
            let rows: Vec<usize> =
                (0..s.data.times.len()).filter(|&i| s.data.times.get(i).is_some_and(|t| range.contains(*t))).collect();
            if rows.is_empty() {
                continue;
            }
            let mut data = SeriesData {
                times: rows.iter().filter_map(|&i| s.data.times.get(i).copied()).collect(),
                columns: vec![None; width],
            };
            for &id in wanted {
                let Some(Some(col)) = s.data.columns.get(id) else {
                    continue;
                };
                let mut c = Column::with_capacity(col.values.field_type(), rows.len());
                for &i in &rows {
                    c.push_from(col, i);
                }
                if let Some(slot) = data.columns.get_mut(id) {
                    *slot = Some(c);
                }
            }
            out.push((key.clone(), data));
        }
        out
    }
}
