//! Line protocol bodies turned into per-table write batches, with every
//! row remembering its line so engine rejections can name it.

use std::collections::HashMap;

use telemark_engine::{FieldValue, RowError, WriteBatch, WriteOutcome};

use crate::line_protocol::{self, LineError, Precision};

/// The rows of one table parsed from a body.
#[derive(Debug)]
pub struct TableLines {
    /// The rows, ready to write.
    pub batch: WriteBatch,
    /// For each row of `batch`, its 1-based line number in the body.
    pub lines: Vec<usize>,
}

/// A parsed body: batches per table and the lines that did not parse.
#[derive(Debug, Default)]
pub struct ParsedBody {
    /// Rows grouped by table, in order of first appearance.
    pub tables: Vec<TableLines>,
    /// Lines that did not parse, in line order.
    pub errors: Vec<LineError>,
    /// Lines that parsed.
    pub lines_ok: usize,
}

/// Parses a whole body. Lines without a timestamp get `now_ns`; `extra_tags`
/// are added to every line that does not set them itself.
pub fn parse_body(body: &[u8], precision: Precision, now_ns: i64, extra_tags: &[(&str, &str)]) -> ParsedBody {
    let mut out = ParsedBody::default();
    let mut by_table: HashMap<String, usize> = HashMap::new();
    for item in line_protocol::parse(body, precision) {
        let line = match item {
            Ok(line) => line,
            Err(e) => {
                out.errors.push(e);
                continue;
            }
        };
        out.lines_ok += 1;
        let idx = match by_table.get(line.measurement.as_ref()) {
            Some(&i) => i,
            None => {
                by_table.insert(line.measurement.to_string(), out.tables.len());
                out.tables.push(TableLines { batch: WriteBatch::new(line.measurement.as_ref()), lines: Vec::new() });
                out.tables.len() - 1
            }
        };
        let Some(t) = out.tables.get_mut(idx) else { continue };
        t.lines.push(line.line);
        let mut row = t.batch.row(line.timestamp.unwrap_or(now_ns));
        for (k, v) in extra_tags {
            if !line.tags.iter().any(|(name, _)| name == k) {
                row = row.tag(k, *v);
            }
        }
        for (k, v) in &line.tags {
            row = row.tag(k, v.as_ref());
        }
        for (k, v) in line.fields {
            let value = match v {
                line_protocol::FieldValue::F64(x) => FieldValue::F64(x),
                line_protocol::FieldValue::I64(x) => FieldValue::I64(x),
                line_protocol::FieldValue::U64(x) => FieldValue::U64(x),
                line_protocol::FieldValue::Bool(x) => FieldValue::Bool(x),
                line_protocol::FieldValue::Str(s) => FieldValue::Str(s.into_owned()),
            };
            row = row.field(&k, value);
        }
    }
    out
}

/// A line that did not land, for an error response.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RejectedLine {
    /// 1-based line number in the body.
    pub line: usize,
    /// 1-based column, when the parser knows it.
    pub column: Option<usize>,
    /// What was wrong.
    pub message: String,
}

impl std::fmt::Display for RejectedLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.column {
            Some(c) => write!(f, "line {}, column {}: {}", self.line, c, self.message),
            None => write!(f, "line {}: {}", self.line, self.message),
        }
    }
}

impl From<&LineError> for RejectedLine {
    fn from(e: &LineError) -> Self {
        RejectedLine { line: e.line, column: Some(e.column), message: e.message.clone() }
    }
}

/// Maps the engine's row rejections of one table back to line numbers.
pub fn rejected_lines(table: &TableLines, rejected: &[RowError]) -> Vec<RejectedLine> {
    rejected
        .iter()
        .map(|r| RejectedLine {
            line: table.lines.get(r.row).copied().unwrap_or(0),
            column: None,
            message: r.message.clone(),
        })
        .collect()
}

/// What a write of a parsed body did, line by line.
#[derive(Debug, Default, Clone)]
pub struct BodyOutcome {
    /// Rows written.
    pub rows_written: usize,
    /// Field values written.
    pub fields_written: usize,
    /// Lines rejected, by the parser or by the engine, in line order.
    pub rejected: Vec<RejectedLine>,
}

impl BodyOutcome {
    /// Combines the parse errors with the engine's per-table outcomes
    /// (`outcomes[i]` for `body.tables[i]`; an `Err` rejects the whole table).
    pub fn collect(body: &ParsedBody, outcomes: Vec<Result<WriteOutcome, telemark_engine::Error>>) -> Self {
        let mut out =
            BodyOutcome { rejected: body.errors.iter().map(RejectedLine::from).collect(), ..Default::default() };
        for (t, outcome) in body.tables.iter().zip(outcomes) {
            match outcome {
                Ok(o) => {
                    out.rows_written += o.rows_written;
                    out.fields_written += o.fields_written;
                    out.rejected.extend(rejected_lines(t, &o.rejected));
                }
                Err(e) => {
                    let message = e.to_string();
                    out.rejected.extend(t.lines.iter().map(|&line| RejectedLine {
                        line,
                        column: None,
                        message: message.clone(),
                    }));
                }
            }
        }
        out.rejected.sort_by_key(|r| r.line);
        out
    }
}
