//! Observing writes: code embedding the engine (alert rules, a last-value
//! cache) registers a [`WriteObserver`] and sees every batch of rows right
//! after it is durable and visible, in commit order.
//!
//! The observer runs on the thread that committed the group while the other
//! writers of the group wait for their acknowledgement, so it must be quick
//! (constant work per row) and must not write to the database itself (that
//! would wait for the commit it is part of): hand work that writes or blocks
//! to a thread of its own.

use crate::batch::{BatchColumn, Values};
use crate::schema::ColumnKind;
use crate::wal::format::TableWrite;

/// Sees the rows of every committed write, after they are durable.
pub trait WriteObserver: Send + Sync + std::fmt::Debug {
    /// Rows of one table just made durable and visible.
    fn committed(&self, rows: &CommittedRows<'_>);
}

/// Rows of one table as committed: validated, with the table's column kinds.
#[derive(Debug, Clone, Copy)]
pub struct CommittedRows<'a> {
    pub(crate) write: &'a TableWrite,
}

/// A field value of a committed row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldRef<'a> {
    /// Float.
    F64(f64),
    /// Signed integer.
    I64(i64),
    /// Unsigned integer.
    U64(u64),
    /// Boolean.
    Bool(bool),
    /// String.
    Str(&'a str),
}

impl FieldRef<'_> {
    /// The value as a number (booleans as 0 and 1); `None` for strings.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            FieldRef::F64(v) => Some(v),
            FieldRef::I64(v) => Some(v as f64),
            FieldRef::U64(v) => Some(v as f64),
            FieldRef::Bool(v) => Some(if v { 1.0 } else { 0.0 }),
            FieldRef::Str(_) => None,
        }
    }
}

impl<'a> CommittedRows<'a> {
    /// Database.
    pub fn database(&self) -> &'a str {
        &self.write.database
    }

    /// Table.
    pub fn table(&self) -> &'a str {
        &self.write.table
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.write.times.len()
    }

    /// No rows.
    pub fn is_empty(&self) -> bool {
        self.write.times.is_empty()
    }

    /// Time of row `row` (ns since the epoch).
    pub fn time(&self, row: usize) -> i64 {
        self.write.times.get(row).copied().unwrap_or(0)
    }

    /// Index of a column by name, for [`CommittedRows::tag_at`] and
    /// [`CommittedRows::field_at`] (look it up once per batch).
    pub fn column(&self, name: &str) -> Option<usize> {
        self.write.columns.iter().position(|c| c.name == name)
    }

    /// Tag columns, by name, with their indexes (in the batch's order).
    pub fn tag_columns(&self) -> impl Iterator<Item = (usize, &'a str)> + 'a {
        let columns: &'a [BatchColumn] = &self.write.columns;
        columns.iter().enumerate().filter(|(_, c)| c.kind == ColumnKind::Tag).map(|(i, c)| (i, c.name.as_str()))
    }

    /// Field columns, by name, with their indexes.
    pub fn field_columns(&self) -> impl Iterator<Item = (usize, &'a str)> + 'a {
        let columns: &'a [BatchColumn] = &self.write.columns;
        columns.iter().enumerate().filter(|(_, c)| c.kind != ColumnKind::Tag).map(|(i, c)| (i, c.name.as_str()))
    }

    /// Value of tag column `column` in row `row`; `None` if absent (null).
    pub fn tag_at(&self, column: usize, row: usize) -> Option<&'a str> {
        let c = self.write.columns.get(column).filter(|c| c.kind == ColumnKind::Tag)?;
        match (&c.data.values, c.data.valid.get(row)) {
            (Values::Str(v), Some(true)) => v.get(row).map(String::as_str),
            _ => None,
        }
    }

    /// Value of field column `column` in row `row`; `None` if null.
    pub fn field_at(&self, column: usize, row: usize) -> Option<FieldRef<'a>> {
        let c = self.write.columns.get(column).filter(|c| c.kind != ColumnKind::Tag)?;
        if c.data.valid.get(row) != Some(&true) {
            return None;
        }
        Some(match &c.data.values {
            Values::F64(v) => FieldRef::F64(*v.get(row)?),
            Values::I64(v) => FieldRef::I64(*v.get(row)?),
            Values::U64(v) => FieldRef::U64(*v.get(row)?),
            Values::Bool(v) => FieldRef::Bool(*v.get(row)?),
            Values::Str(v) => FieldRef::Str(v.get(row)?.as_str()),
        })
    }
}
