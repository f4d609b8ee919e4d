//! The write buffer: rows that are durable in the WAL but not yet in
//! segments, per table and series, readable by scans at once.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use crate::batch::Column;
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
    pub(crate) fn apply(&mut self, seq: u64, write: &TableWrite, schema: &TableSchema) {
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
        let mut last_key: Option<SeriesKey> = None;
        for (row, &time) in write.times.iter().enumerate() {
            let key = SeriesKey(
                tag_cols
                    .iter()
                    .filter(|c| c.data.is_valid(row))
                    .filter_map(|c| match &c.data.values {
                        crate::batch::Values::Str(v) => v.get(row).map(|s| (c.name.clone(), s.clone())),
                        _ => None,
                    })
                    .collect(),
            );
            // Consecutive rows of one series are common: skip the map lookup's key clone then.
            let series = if last_key.as_ref() == Some(&key) {
                table.series.get_mut(&key)
            } else {
                last_key = Some(key.clone());
                Some(table.series.entry(key).or_default())
            };
            let Some(series) = series else { continue };
            let data = &mut series.data;
            let n = data.times.len();
            data.times.push(time);
            if data.columns.len() < width {
                data.columns.resize(width, None);
            }
            bytes += 16;
            for (id, c) in &field_cols {
                if !c.data.is_valid(row) {
                    continue;
                }
                let Some(slot) = data.columns.get_mut(*id) else {
                    continue;
                };
                let col = slot.get_or_insert_with(|| Column::new(c.data.values.field_type()));
                col.pad_to(n);
                col.push_from(&c.data, row);
                bytes += 1 + c.data.values.approx_bytes_of(row);
            }
        }
        self.bytes += bytes;
        self.rows += write.times.len();
        self.max_seq = self.max_seq.max(seq);
        if self.oldest.is_none() {
            self.oldest = Some(Instant::now());
        }
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
