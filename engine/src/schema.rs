//! The data model: names, column kinds and table schemas.
//!
//! A table has a `time` column (i64 nanoseconds since the Unix epoch, UTC),
//! tag columns (strings; the sorted set of a row's tags identifies its
//! series) and field columns of one [`FieldType`] each. Schemas grow on
//! write: a new tag or field adds a column; a column never changes type.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The name of the timestamp column every table has.
pub const TIME_COLUMN: &str = "time";

/// Longest database name, in bytes.
pub const MAX_DATABASE_NAME: usize = 64;
/// Longest table or column name, in bytes.
pub const MAX_NAME: usize = 128;

/// The type of a field column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// 64-bit IEEE float.
    F64,
    /// Signed 64-bit integer.
    I64,
    /// Unsigned 64-bit integer.
    U64,
    /// Boolean.
    Bool,
    /// UTF-8 string.
    String,
}

impl FieldType {
    /// The name used in error messages and docs.
    pub fn name(self) -> &'static str {
        match self {
            FieldType::F64 => "float",
            FieldType::I64 => "integer",
            FieldType::U64 => "unsigned",
            FieldType::Bool => "boolean",
            FieldType::String => "string",
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            FieldType::F64 => 1,
            FieldType::I64 => 2,
            FieldType::U64 => 3,
            FieldType::Bool => 4,
            FieldType::String => 5,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => FieldType::F64,
            2 => FieldType::I64,
            3 => FieldType::U64,
            4 => FieldType::Bool,
            5 => FieldType::String,
            _ => return None,
        })
    }
}

impl std::fmt::Display for FieldType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether a column is a tag (identifies the series) or a field (a measured value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "type")]
pub enum ColumnKind {
    /// A string that is part of the series key.
    Tag,
    /// A value column of the given type.
    Field(FieldType),
}

impl ColumnKind {
    /// The type values of this column are stored as.
    pub fn value_type(self) -> FieldType {
        match self {
            ColumnKind::Tag => FieldType::String,
            ColumnKind::Field(t) => t,
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            ColumnKind::Tag => 0,
            ColumnKind::Field(t) => t.code(),
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        if code == 0 { Some(ColumnKind::Tag) } else { FieldType::from_code(code).map(ColumnKind::Field) }
    }
}

impl ColumnKind {
    /// The kind with its indefinite article: "a tag", "an integer field".
    pub fn with_article(self) -> String {
        match self {
            ColumnKind::Field(FieldType::I64 | FieldType::U64) => format!("an {self}"),
            _ => format!("a {self}"),
        }
    }
}

impl std::fmt::Display for ColumnKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ColumnKind::Tag => f.write_str("tag"),
            ColumnKind::Field(t) => write!(f, "{} field", t.name()),
        }
    }
}

/// One column of a table schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    /// Column name.
    pub name: String,
    /// Tag or typed field.
    #[serde(flatten)]
    pub kind: ColumnKind,
}

/// The columns of a table besides `time`, in the order they were added.
/// A column's position is its id within the table; ids never change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    columns: Vec<ColumnDef>,
    #[serde(skip)]
    index: HashMap<String, usize>,
}

impl TableSchema {
    /// Rebuilds the name index after deserialization.
    pub(crate) fn reindex(&mut self) {
        self.index = self.columns.iter().enumerate().map(|(i, c)| (c.name.clone(), i)).collect();
    }

    /// All columns except `time`, in id order.
    pub fn columns(&self) -> &[ColumnDef] {
        &self.columns
    }

    /// The id of a column by name.
    pub fn id_of(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// A column by id.
    pub fn column(&self, id: usize) -> Option<&ColumnDef> {
        self.columns.get(id)
    }

    /// Adds a column and returns its id. The caller has checked the name is new.
    pub(crate) fn push(&mut self, name: &str, kind: ColumnKind) -> usize {
        let id = self.columns.len();
        self.columns.push(ColumnDef { name: name.to_string(), kind });
        self.index.insert(name.to_string(), id);
        id
    }

    /// Number of columns besides `time`.
    /// The field (non-tag) columns: `(column id, name, kind)`, for decoding.
    pub(crate) fn field_columns(&self) -> Vec<(usize, String, ColumnKind)> {
        self.columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.kind != ColumnKind::Tag)
            .map(|(i, c)| (i, c.name.clone(), c.kind))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.columns.len()
    }

    /// True if the table has no column besides `time`.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }
}

/// Checks a database name: 1 to 64 bytes of ASCII letters, digits, `_` and
/// `-`, starting with a letter, digit or `_`.
pub fn validate_database_name(name: &str) -> Result<()> {
    let bad = |reason: String| Err(Error::InvalidName { what: "database", name: name.to_string(), reason });
    if name.is_empty() {
        return bad("it is empty".into());
    }
    if name.len() > MAX_DATABASE_NAME {
        return bad(format!("it is {} bytes long, the limit is {MAX_DATABASE_NAME}", name.len()));
    }
    if name.starts_with('-') {
        return bad("it must start with a letter, digit or '_'".into());
    }
    if let Some((pos, c)) = name.char_indices().find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-')) {
        return bad(format!("character {c:?} at byte {pos} is not allowed (use ASCII letters, digits, '_' and '-')"));
    }
    Ok(())
}

/// Checks a table or column name: 1 to 128 bytes of UTF-8 without control
/// characters, without leading or trailing whitespace. Column names also may
/// not be `time`, which every table already has.
pub fn validate_name(what: &'static str, name: &str) -> Result<()> {
    let bad = |reason: String| Err(Error::InvalidName { what, name: name.to_string(), reason });
    if name.is_empty() {
        return bad("it is empty".into());
    }
    if name.len() > MAX_NAME {
        return bad(format!("it is {} bytes long, the limit is {MAX_NAME}", name.len()));
    }
    if let Some((pos, c)) = name.char_indices().find(|(_, c)| c.is_control()) {
        return bad(format!("control character {c:?} at byte {pos} is not allowed"));
    }
    if name.trim() != name {
        return bad("it has leading or trailing whitespace".into());
    }
    if what == "column" && name == TIME_COLUMN {
        return bad("`time` is the timestamp column every table has; choose another name".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names() {
        assert!(validate_database_name("fleet_01").is_ok());
        assert!(validate_database_name("a-b").is_ok());
        for bad in ["", "-a", "a.b", "a b", "ünï", &"x".repeat(65)] {
            let e = validate_database_name(bad).unwrap_err().to_string();
            assert!(e.contains("invalid database name"), "{e}");
        }
    }

    #[test]
    fn column_names() {
        assert!(validate_name("column", "gps.lat").is_ok());
        assert!(validate_name("column", "température").is_ok());
        let e = validate_name("column", "time").unwrap_err().to_string();
        assert!(e.contains("timestamp column"), "{e}");
        assert!(validate_name("table", "a\nb").is_err());
        assert!(validate_name("table", " a").is_err());
    }

    #[test]
    fn schema_serde_roundtrip() {
        let mut s = TableSchema::default();
        s.push("device", ColumnKind::Tag);
        s.push("temp", ColumnKind::Field(FieldType::F64));
        let json = serde_json::to_string(&s).unwrap();
        let mut back: TableSchema = serde_json::from_str(&json).unwrap();
        back.reindex();
        assert_eq!(back.id_of("temp"), Some(1));
        assert_eq!(back.column(0).unwrap().kind, ColumnKind::Tag);
    }
}
