//! InfluxDB line protocol: a zero-copy parser and a printer.
//!
//! Line protocol is the text format InfluxDB and Telegraf speak, one point per
//! line:
//!
//! ```text
//! measurement[,tag_key=tag_value...] field_key=field_value[,field_key=field_value...] [timestamp]
//! ```
//!
//! [`parse`] walks a request body and yields one [`Line`] (or one
//! [`LineError`]) per point; [`write_line`] prints a [`Line`] back. Names and
//! strings are borrowed from the body ([`Cow::Borrowed`]) unless they contain
//! escapes, so a typical line costs no allocation beyond its tag and field
//! vectors, and none at all with [`Lines::next_into`].
//!
//! ```
//! use telemark_ingest::line_protocol::{FieldValue, Precision, parse};
//!
//! let body = b"# fleet\nreadings,name=truck_12 velocity=61.5,gear=3i 1700000000\n";
//! let lines: Vec<_> = parse(body, Precision::Seconds).collect::<Result<_, _>>().unwrap();
//! assert_eq!(lines[0].measurement, "readings");
//! assert_eq!(lines[0].tags[0].1, "truck_12");
//! assert_eq!(lines[0].fields[1], ("gear".into(), FieldValue::I64(3)));
//! assert_eq!(lines[0].timestamp, Some(1_700_000_000_000_000_000));
//! assert_eq!(lines[0].line, 2);
//! ```
//!
//! # Syntax
//!
//! The parser follows InfluxDB v2 (the Go `models` parser) wherever its
//! behaviour is defined:
//!
//! * Lines end at `\n` or `\r\n`. Lines that are empty or hold only spaces and
//!   tabs are skipped, and so are comments: lines whose first character after
//!   leading spaces and tabs is `#`. A `#` anywhere else is an ordinary
//!   character.
//! * Leading spaces and tabs are skipped, and so are runs of spaces and tabs
//!   between the key, the field set and the timestamp.
//! * Escapes. In the measurement, `\,` and `\ ` stand for `,` and ` `. In tag
//!   keys, tag values and field keys, `\,`, `\=` and `\ ` stand for `,`, `=`
//!   and ` `. A backslash before any other character is an ordinary character
//!   (so `a\b` is `a\b`, and `a\\,b` is `a\,b`: the first backslash is
//!   literal, the second escapes the comma). A name therefore cannot end with
//!   a backslash, and no name can hold a newline.
//! * The measurement, tag keys, tag values and field keys must not be empty.
//!   A tag value must not hold an unescaped `=`. A tag key may appear only
//!   once per line; a field key may repeat, and every occurrence is returned
//!   in order (InfluxDB keeps the last).
//! * Field values: `1`, `-1.5`, `1.`, `.5`, `1e10`, `-1.5E-3` are floats
//!   (NaN and infinity are rejected, and so are literals too large for an
//!   `f64`); `12i` is an `i64`, `12u` a `u64`; `t`, `T`, `true`, `True`,
//!   `TRUE`, `f`, `F`, `false`, `False`, `FALSE` are booleans; strings are
//!   double-quoted, with `\"` and `\\` as their only escapes. A string may hold
//!   raw newlines, as in InfluxDB; the line then spans several physical lines.
//! * The timestamp is an optional signed integer in the request's
//!   [`Precision`]; it is scaled to nanoseconds, and an overflow is an error.
//!   Only spaces, tabs and a final `\r` may follow it.
//!
//! # Differences from InfluxDB v2
//!
//! Where the Go parser's behaviour is an accident of its implementation, this
//! one picks the consistent rule:
//!
//! * `\r\n` line endings are accepted (the Go parser rejects most of them); a
//!   bare `\r` after a field value or timestamp is an error.
//! * Whitespace is spaces and tabs everywhere it is skipped: the Go parser
//!   also skips NUL bytes before a line, and allows only spaces after the
//!   timestamp.
//! * Backslashes behave the same in every kind of name (see above); the Go
//!   parser treats `\\` differently in field keys than in tags.
//! * A comment ends at the next newline even if it holds a `"`.
//! * Timestamps may use the whole `i64` nanosecond range; InfluxDB reserves
//!   `i64::MIN`, `i64::MIN + 1` and `i64::MAX`.
//! * No limit on key length is enforced here (InfluxDB rejects series keys
//!   over 65 535 bytes); callers enforce their own limits.
//!
//! # Errors and recovery
//!
//! An error names the physical line and column (1-based; the column counts
//! bytes from the start of that physical line) and what was expected. After an
//! error the iterator resumes at the next line, so one bad point does not
//! reject its neighbours. A line with invalid UTF-8 anywhere is rejected as a
//! whole.
//!
//! The parser never panics and runs in time linear in the input.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::iter::FusedIterator;

/// The unit of the timestamps in a request (the `precision` query parameter
/// of InfluxDB's write API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// Nanoseconds: `ns` or `n`. The default.
    #[default]
    Nanoseconds,
    /// Microseconds: `us`, `u` or `µs`.
    Microseconds,
    /// Milliseconds: `ms`.
    Milliseconds,
    /// Seconds: `s`.
    Seconds,
}

impl Precision {
    /// Parses a precision as InfluxDB's write API spells it: `ns`/`n`,
    /// `us`/`u`/`µs`, `ms` or `s`. Returns `None` for anything else.
    pub fn parse(s: &str) -> Option<Precision> {
        match s {
            "ns" | "n" => Some(Precision::Nanoseconds),
            // U+00B5 MICRO SIGN and U+03BC GREEK SMALL LETTER MU look alike.
            "us" | "u" | "\u{b5}s" | "\u{3bc}s" => Some(Precision::Microseconds),
            "ms" => Some(Precision::Milliseconds),
            "s" => Some(Precision::Seconds),
            _ => None,
        }
    }

    /// Nanoseconds in one unit of this precision.
    pub fn nanos_per_unit(self) -> i64 {
        match self {
            Precision::Nanoseconds => 1,
            Precision::Microseconds => 1_000,
            Precision::Milliseconds => 1_000_000,
            Precision::Seconds => 1_000_000_000,
        }
    }

    /// Scales `v` units of this precision to nanoseconds; `None` if the result
    /// does not fit in an `i64`.
    pub fn to_nanos(self, v: i64) -> Option<i64> {
        v.checked_mul(self.nanos_per_unit())
    }

    /// Converts nanoseconds to whole units of this precision, rounding towards
    /// negative infinity (so a time is never moved later).
    pub fn from_nanos(self, ns: i64) -> i64 {
        ns.div_euclid(self.nanos_per_unit())
    }

    /// The unit's symbol, for messages.
    fn unit(self) -> &'static str {
        match self {
            Precision::Nanoseconds => "ns",
            Precision::Microseconds => "µs",
            Precision::Milliseconds => "ms",
            Precision::Seconds => "s",
        }
    }
}

/// A field value.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    /// A float: `1`, `1.5`, `-1e10`. Never NaN or infinite when parsed.
    F64(f64),
    /// A signed integer: `12i`.
    I64(i64),
    /// An unsigned integer: `12u`.
    U64(u64),
    /// A boolean: `t`, `true`, `F`, `FALSE`, ...
    Bool(bool),
    /// A string: `"text"`, with its escapes resolved.
    Str(Cow<'a, str>),
}

impl FieldValue<'_> {
    /// Copies any borrowed string so the value outlives the request body.
    pub fn into_owned(self) -> FieldValue<'static> {
        match self {
            FieldValue::F64(v) => FieldValue::F64(v),
            FieldValue::I64(v) => FieldValue::I64(v),
            FieldValue::U64(v) => FieldValue::U64(v),
            FieldValue::Bool(v) => FieldValue::Bool(v),
            FieldValue::Str(s) => FieldValue::Str(Cow::Owned(s.into_owned())),
        }
    }
}

/// One parsed point.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Line<'a> {
    /// The measurement (table) name, unescaped.
    pub measurement: Cow<'a, str>,
    /// Tag keys and values, unescaped, in the order written. Keys are unique.
    pub tags: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// Field keys and values in the order written; never empty. A key may
    /// repeat (InfluxDB keeps the last occurrence).
    pub fields: Vec<(Cow<'a, str>, FieldValue<'a>)>,
    /// The timestamp in nanoseconds since the Unix epoch, already scaled from
    /// the request's precision; `None` if the line has none, in which case
    /// the caller supplies the server's time.
    pub timestamp: Option<i64>,
    /// The 1-based physical line on which the point starts.
    pub line: usize,
}

impl Line<'_> {
    /// Copies every borrowed name and string so the line outlives the body.
    pub fn into_owned(self) -> Line<'static> {
        Line {
            measurement: Cow::Owned(self.measurement.into_owned()),
            tags: self
                .tags
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k.into_owned()), Cow::Owned(v.into_owned())))
                .collect(),
            fields: self.fields.into_iter().map(|(k, v)| (Cow::Owned(k.into_owned()), v.into_owned())).collect(),
            timestamp: self.timestamp,
            line: self.line,
        }
    }
}

/// Why a line could not be parsed, and where.
///
/// Displays as `line 3, column 17: expected `=` after field key `temp`, found space`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LineError {
    /// The 1-based physical line of the offending byte (a string value with
    /// raw newlines makes one point span several physical lines).
    pub line: usize,
    /// The 1-based column of the offending byte, counted in bytes from the
    /// start of its physical line.
    pub column: usize,
    /// What was expected and what was found.
    pub message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}: {}", self.line, self.column, self.message)
    }
}

impl std::error::Error for LineError {}

/// Why [`write_line`] could not print a line: the line has no line-protocol
/// form (an empty name, a name that ends with a backslash, NaN, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriteError {
    /// What is wrong with the line.
    pub message: String,
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot write line protocol: {}", self.message)
    }
}

impl std::error::Error for WriteError {}

/// Parses a request body. The iterator yields one item per point, skipping
/// blank lines and comments, and resumes at the next line after an error.
pub fn parse(body: &[u8], precision: Precision) -> Lines<'_> {
    let (text, _) = utf8_window(body, 0);
    Lines { body, text, base: 0, pos: 0, line_no: 1, precision, tag_hint: 0, field_hint: 0 }
}

/// An iterator over the points of a body; see [`parse`].
pub struct Lines<'a> {
    body: &'a [u8],
    /// A stretch of `body` known to be valid UTF-8, starting at `base`. It is
    /// all of the rest of the body unless the body holds invalid UTF-8; then
    /// it ends after the last newline before the first invalid byte.
    text: &'a str,
    base: usize,
    /// Where the next line starts (byte offset in `body`).
    pos: usize,
    /// The 1-based physical line at `pos`.
    line_no: usize,
    precision: Precision,
    /// Tag and field counts of the last line, to size the next line's vectors.
    tag_hint: usize,
    field_hint: usize,
}

impl fmt::Debug for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lines")
            .field("body_len", &self.body.len())
            .field("pos", &self.pos)
            .field("line", &self.line_no)
            .field("precision", &self.precision)
            .finish_non_exhaustive()
    }
}

impl<'a> Lines<'a> {
    /// Like [`Iterator::next`], but parses into `line`, reusing its vectors,
    /// so a loop over a body allocates nothing once the vectors have grown
    /// (names and strings with escapes still allocate). On `Some(Ok(()))`,
    /// `line` holds the point; on `Some(Err(_))` its contents are unspecified;
    /// `None` means the body is exhausted.
    pub fn next_into(&mut self, line: &mut Line<'a>) -> Option<Result<(), LineError>> {
        loop {
            let mut p = self.pos;
            while let Some(b' ' | b'\t') = self.body.get(p) {
                p += 1;
            }
            match self.body.get(p) {
                None => {
                    self.pos = self.body.len();
                    return None;
                }
                Some(b'\n') => {
                    self.pos = p + 1;
                    self.line_no += 1;
                }
                Some(b'\r') if matches!(self.body.get(p + 1), None | Some(b'\n')) => self.pos = p + 1,
                Some(b'#') => self.pos = find_newline(self.body, p),
                Some(_) => return Some(self.parse_line_at(p, line)),
            }
        }
    }

    /// Parses the line starting at `start` (a non-blank, non-comment line)
    /// and leaves `pos` at its terminating newline (or the end of the body).
    fn parse_line_at(&mut self, start: usize, out: &mut Line<'a>) -> Result<(), LineError> {
        out.measurement = Cow::Borrowed("");
        out.tags.clear();
        out.fields.clear();
        out.timestamp = None;
        out.line = self.line_no;
        let window_end = self.base + self.text.len();
        let window_is_tail = window_end == self.body.len();
        if start < window_end {
            let mut parser = Parser::new(self.text, start - self.base, self.precision);
            match parser.parse_line(out) {
                // Stopped at a newline inside the window, or at the true end
                // of the body: the line is complete.
                Ok(()) if window_is_tail || parser.pos < self.text.len() => {
                    self.pos = self.base + parser.pos;
                    self.line_no += parser.newlines;
                    return Ok(());
                }
                Err(fail) => {
                    let end = line_end(self.body, start);
                    if window_is_tail || end < window_end {
                        let err = self.error(start, self.base + fail.pos, fail.message);
                        self.skip_to(start, end);
                        return Err(err);
                    }
                }
                // The line runs past the window: it may hold invalid UTF-8.
                Ok(()) => {}
            }
        }
        self.parse_isolated(start, out)
    }

    /// The slow path for a line that reaches invalid UTF-8, or may: find its
    /// end by bytes, validate it alone, parse it alone, then move the UTF-8
    /// window past it.
    fn parse_isolated(&mut self, start: usize, out: &mut Line<'a>) -> Result<(), LineError> {
        let end = line_end(self.body, start);
        let bytes = self.body.get(start..end).unwrap_or_default();
        let result = match std::str::from_utf8(bytes) {
            Ok(text) => {
                let mut parser = Parser::new(text, 0, self.precision);
                parser.parse_line(out).map_err(|fail| self.error(start, start + fail.pos, fail.message))
            }
            Err(e) => {
                let bad = start + e.valid_up_to();
                let byte = self.body.get(bad).copied().unwrap_or_default();
                Err(self.error(start, bad, format!("invalid UTF-8 (byte 0x{byte:02x}); line protocol must be UTF-8")))
            }
        };
        self.skip_to(start, end);
        (self.text, self.base) = utf8_window(self.body, end);
        result
    }

    /// Moves past a line that started at `start` and ends at `end` (its
    /// newline, or the end of the body), counting the newlines inside it.
    fn skip_to(&mut self, start: usize, end: usize) {
        let inner = self.body.get(start..end).unwrap_or_default();
        self.line_no += count_newlines(inner);
        self.pos = end;
    }

    /// Builds an error at byte `at` of the body, for the line starting at
    /// `start` whose first physical line is `self.line_no`.
    fn error(&self, start: usize, at: usize, message: String) -> LineError {
        let before = self.body.get(start..at).unwrap_or_default();
        let line_start = before.iter().rposition(|&b| b == b'\n').map_or(start, |i| start + i + 1);
        LineError { line: self.line_no + count_newlines(before), column: at.saturating_sub(line_start) + 1, message }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = Result<Line<'a>, LineError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut line = Line {
            measurement: Cow::Borrowed(""),
            tags: Vec::with_capacity(self.tag_hint),
            fields: Vec::with_capacity(self.field_hint),
            timestamp: None,
            line: 0,
        };
        match self.next_into(&mut line)? {
            Ok(()) => {
                self.tag_hint = line.tags.len();
                self.field_hint = line.fields.len();
                Some(Ok(line))
            }
            Err(e) => Some(Err(e)),
        }
    }
}

impl FusedIterator for Lines<'_> {}

/// The longest stretch of `body[from..]` that is valid UTF-8, with its start.
/// If invalid UTF-8 follows, the stretch is cut after its last newline so
/// that no line in it runs into the invalid byte unnoticed.
fn utf8_window(body: &[u8], from: usize) -> (&str, usize) {
    let rest = body.get(from..).unwrap_or_default();
    // `from_utf8` has a fast path for ASCII; `utf8_chunks` does not.
    let valid_up_to = match std::str::from_utf8(rest) {
        Ok(text) => return (text, from),
        Err(e) => e.valid_up_to(),
    };
    let prefix = rest.get(..valid_up_to).unwrap_or_default();
    let cut = prefix.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    (prefix.get(..cut).and_then(|p| std::str::from_utf8(p).ok()).unwrap_or_default(), from)
}

fn find_newline(bytes: &[u8], from: usize) -> usize {
    let rest = bytes.get(from..).unwrap_or_default();
    rest.iter().position(|&b| b == b'\n').map_or(bytes.len(), |i| from + i)
}

fn count_newlines(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b == b'\n').count()
}

/// Where the line starting at `start` ends (its `\n`, or the end of `bytes`),
/// by the same rules the parser uses, but without validating anything: used
/// to resume after an error. It agrees with the parser on every valid line; on
/// a broken one it makes the same guess about string values that may hold
/// newlines.
fn line_end(bytes: &[u8], start: usize) -> usize {
    #[derive(Clone, Copy)]
    enum State {
        /// Measurement and tags: a space ends them.
        Key,
        /// A field key: `=` starts its value, a space the timestamp.
        FieldKey,
        /// An unquoted field value, or what follows a string's closing quote.
        Value,
        /// Inside a double-quoted string, where newlines do not end the line.
        Str,
        /// The timestamp and anything after it.
        Tail,
    }
    let mut state = State::Key;
    let mut i = start;
    while let Some(&b) = bytes.get(i) {
        let next = bytes.get(i + 1).copied();
        match (state, b) {
            (State::Str, b'\\') if matches!(next, Some(b'"' | b'\\')) => i += 1,
            (State::Str, b'"') => state = State::Value,
            (State::Str, _) => {}
            (_, b'\n') => return i,
            // The same escapes as the parser's: a backslash hides the next
            // byte only if that byte is escapable there.
            (State::Key, b'\\') if next == Some(b' ') => i += 1,
            (State::FieldKey, b'\\') if matches!(next, Some(b',' | b'=' | b' ')) => i += 1,
            (State::Key, b' ') => {
                state = State::FieldKey;
                while let Some(b' ' | b'\t') = bytes.get(i + 1) {
                    i += 1;
                }
            }
            (State::FieldKey | State::Value, b' ') => state = State::Tail,
            (State::FieldKey, b'=') if next == Some(b'"') => {
                state = State::Str;
                i += 1;
            }
            (State::FieldKey, b'=') => state = State::Value,
            (State::Value, b',') => state = State::FieldKey,
            _ => {}
        }
        i += 1;
    }
    bytes.len()
}

// Byte classes: which bytes stop a scan in each context.
const MEASUREMENT: u8 = 1;
const KEY: u8 = 2;
const VALUE: u8 = 4;
const STRING: u8 = 8;

#[expect(clippy::indexing_slicing, reason = "evaluated at compile time: a bad index fails the build")]
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b',' as usize] = MEASUREMENT | KEY | VALUE;
    t[b' ' as usize] = MEASUREMENT | KEY | VALUE;
    t[b'=' as usize] = KEY;
    t[b'\\' as usize] = MEASUREMENT | KEY | STRING;
    t[b'\n' as usize] = MEASUREMENT | KEY | VALUE | STRING;
    t[b'\r' as usize] = VALUE;
    t[b'"' as usize] = STRING;
    t
};

/// The first index at or after `from` whose byte is in `class`, or `bytes.len()`.
#[inline(always)]
fn scan(bytes: &[u8], from: usize, class: u8) -> usize {
    let mut i = from;
    while let Some(&b) = bytes.get(i) {
        // `usize::from(b) < 256`, so this lookup never misses.
        if CLASS.get(usize::from(b)).copied().unwrap_or(0) & class != 0 {
            return i;
        }
        i += 1;
    }
    i
}

fn is_measurement_escape(b: u8) -> bool {
    matches!(b, b',' | b' ')
}

fn is_key_escape(b: u8) -> bool {
    matches!(b, b',' | b'=' | b' ')
}

/// A parse failure at byte `pos` of the parser's text.
struct Fail {
    pos: usize,
    message: String,
}

/// Boxed, so that results on the hot path stay small.
type ParseResult<T> = Result<T, Box<Fail>>;

type Fields<'a> = Vec<(Cow<'a, str>, FieldValue<'a>)>;

/// Parses one line of a text that is known to be valid UTF-8. Every token
/// boundary is at an ASCII byte or at the ends of the text, so slicing the
/// text there always succeeds; `slice` still checks.
struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// Newlines passed inside string values.
    newlines: usize,
    precision: Precision,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str, pos: usize, precision: Precision) -> Self {
        Parser { text, bytes: text.as_bytes(), pos, newlines: 0, precision }
    }

    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    #[inline(always)]
    fn slice(&self, start: usize, end: usize) -> ParseResult<&'a str> {
        match self.text.get(start..end) {
            Some(s) => Ok(s),
            None => Err(Box::new(Fail {
                pos: start,
                message: "internal error: token boundary inside a character".to_owned(),
            })),
        }
    }

    /// Whether the line ends at `at`: a newline, `\r\n`, or the end of text.
    fn is_line_end(&self, at: usize) -> bool {
        match self.bytes.get(at) {
            None | Some(b'\n') => true,
            Some(b'\r') => matches!(self.bytes.get(at + 1), None | Some(b'\n')),
            Some(_) => false,
        }
    }

    fn skip_blanks(&mut self) {
        while let Some(b' ' | b'\t') = self.peek() {
            self.pos += 1;
        }
    }

    fn fail<T>(&self, pos: usize, message: String) -> ParseResult<T> {
        Err(Box::new(Fail { pos, message }))
    }

    /// Describes the byte at `at` for "found ..." in messages.
    fn found(&self, at: usize) -> String {
        match self.bytes.get(at) {
            _ if self.is_line_end(at) => "end of line".to_owned(),
            Some(b' ') => "space".to_owned(),
            Some(b'\t') => "tab".to_owned(),
            _ => match self.text.get(at..).and_then(|s| s.chars().next()) {
                Some(c) if c.is_control() => format!("`{}`", c.escape_default()),
                Some(c) => format!("`{c}`"),
                None => "end of line".to_owned(),
            },
        }
    }

    /// The text from `start` to `end` as written, shortened, for messages.
    fn snippet(&self, start: usize, end: usize) -> String {
        snippet(self.text.get(start..end).unwrap_or_default())
    }

    fn parse_line(&mut self, out: &mut Line<'a>) -> ParseResult<()> {
        let line_start = self.pos;
        let measurement = self.name(MEASUREMENT, is_measurement_escape)?;
        if measurement.is_empty() {
            return self.fail(line_start, format!("expected measurement name, found {}", self.found(line_start)));
        }
        out.measurement = self.cow(measurement);
        if self.peek() == Some(b',') {
            self.tags(line_start, out)?;
        }
        if self.peek() != Some(b' ') {
            let key = self.snippet(line_start, self.pos);
            return self.fail(self.pos, format!("missing field set after `{key}`; a line needs at least one field"));
        }
        self.skip_blanks();
        if self.is_line_end(self.pos) {
            return self.fail(self.pos, "missing field set; a line needs at least one field".to_owned());
        }
        if self.fields(out)? {
            self.timestamp(out)?;
        }
        Ok(())
    }

    /// Parses `,key=value...` up to the space before the field set.
    fn tags(&mut self, line_start: usize, out: &mut Line<'a>) -> ParseResult<()> {
        while self.peek() == Some(b',') {
            self.pos += 1;
            let key = self.name(KEY, is_key_escape)?;
            if key.is_empty() {
                return self.fail(self.pos, format!("expected tag key after `,`, found {}", self.found(self.pos)));
            }
            if self.peek() != Some(b'=') {
                let raw = self.raw(&key);
                return self
                    .fail(self.pos, format!("expected `=` after tag key `{raw}`, found {}", self.found(self.pos)));
            }
            self.pos += 1;
            let value = self.name(KEY, is_key_escape)?;
            if value.is_empty() {
                let raw = self.raw(&key);
                return self.fail(
                    self.pos,
                    format!(
                        "expected tag value after `{raw}=`, found {}; empty tag values are not allowed, omit the tag",
                        self.found(self.pos)
                    ),
                );
            }
            if self.peek() == Some(b'=') {
                let (raw, value) = (self.raw(&key), self.raw(&value));
                return self.fail(
                    self.pos,
                    format!("unescaped `=` after value `{value}` of tag `{raw}`; write `\\=` for a literal `=`"),
                );
            }
            match (&key.unescaped, &value.unescaped) {
                (None, None) => out.tags.push((self.borrow(&key), self.borrow(&value))),
                _ => self.push_escaped_tag(&mut out.tags, key, value),
            }
        }
        if let Some(dup) = duplicate_tag(&out.tags) {
            let at = nth_tag_key(self.bytes, line_start, dup);
            let key = out.tags.get(dup).map(|(k, _)| snippet(k)).unwrap_or_default();
            return self.fail(at, format!("duplicate tag key `{key}`"));
        }
        Ok(())
    }

    /// Parses the field set. Returns whether a timestamp may follow (the
    /// field set ended at a space rather than at the end of the line).
    fn fields(&mut self, out: &mut Line<'a>) -> ParseResult<bool> {
        loop {
            let key = self.name(KEY, is_key_escape)?;
            if key.is_empty() {
                let after = if out.fields.is_empty() { "" } else { " after `,`" };
                return self.fail(self.pos, format!("expected field key{after}, found {}", self.found(self.pos)));
            }
            if self.peek() != Some(b'=') {
                let raw = self.raw(&key);
                return self
                    .fail(self.pos, format!("expected `=` after field key `{raw}`, found {}", self.found(self.pos)));
            }
            self.pos += 1;
            let (key_start, key_end) = (key.start, key.end);
            self.field_value(key, &mut out.fields)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b' ') => return Ok(true),
                _ if self.is_line_end(self.pos) => return Ok(false),
                _ => {
                    let raw = self.snippet(key_start, key_end);
                    return self.fail(
                        self.pos,
                        format!(
                            "expected `,`, space or end of line after the value of field `{raw}`, found {}",
                            self.found(self.pos)
                        ),
                    );
                }
            }
        }
    }

    /// Parses the value of field `key` and pushes both onto `fields`.
    fn field_value(&mut self, key: Name, fields: &mut Fields<'a>) -> ParseResult<()> {
        let start = self.pos;
        match self.peek() {
            Some(b'"') => return self.string_value(key, fields),
            Some(b'0'..=b'9' | b'-' | b'.') => return self.number_value(key, fields),
            _ if self.is_line_end(start) => {}
            Some(b',' | b' ' | b'\r') => {}
            Some(_) => {
                let end = scan(self.bytes, start, VALUE);
                let token = self.slice(start, end)?;
                self.pos = end;
                if let Some(b) = parse_bool(token.as_bytes()) {
                    return self.push_field(fields, key, FieldValue::Bool(b));
                }
                let raw = self.raw(&key);
                let shown = snippet(token);
                let message = if is_nan_or_inf(token) {
                    format!("NaN and infinity are not supported: `{shown}` for field `{raw}`")
                } else if matches!(token.as_bytes().first(), Some(b't' | b'f' | b'T' | b'F')) {
                    format!(
                        "invalid boolean `{shown}` for field `{raw}`; use t, T, true, True, TRUE, f, F, false, False \
                         or FALSE"
                    )
                } else {
                    format!(
                        "invalid field value `{shown}` for field `{raw}`; expected a number, a boolean or a \
                         double-quoted string"
                    )
                };
                return self.fail(start, message);
            }
            None => {}
        }
        let raw = self.raw(&key);
        self.fail(start, format!("expected field value after `{raw}=`, found {}", self.found(start)))
    }

    fn number_value(&mut self, key: Name, fields: &mut Fields<'a>) -> ParseResult<()> {
        let start = self.pos;
        let end = scan(self.bytes, start, VALUE);
        let token = self.slice(start, end)?;
        self.pos = end;
        let bytes = token.as_bytes();
        let shown = || snippet(token);
        match bytes.split_last() {
            Some((b'i', digits)) => match parse_i64(digits) {
                Ok(v) => return self.push_field(fields, key, FieldValue::I64(v)),
                Err(IntError::Overflow) => {
                    let (raw, shown) = (self.raw(&key), shown());
                    return self.fail(
                        start,
                        format!(
                            "integer out of range for field `{raw}`: `{shown}` does not fit in a signed 64-bit integer"
                        ),
                    );
                }
                Err(IntError::Invalid) => {}
            },
            Some((b'u', digits)) => match parse_u64(digits) {
                Ok(v) => return self.push_field(fields, key, FieldValue::U64(v)),
                Err(IntError::Overflow) => {
                    let (raw, shown) = (self.raw(&key), shown());
                    return self.fail(
                        start,
                        format!(
                            "unsigned integer out of range for field `{raw}`: `{shown}` does not fit in an unsigned \
                             64-bit integer"
                        ),
                    );
                }
                Err(IntError::Invalid) => {}
            },
            _ => {
                if let Some(v) = parse_f64_fast(bytes) {
                    return self.push_field(fields, key, FieldValue::F64(v));
                }
                if is_float_syntax(bytes) {
                    match token.parse::<f64>() {
                        Ok(v) if v.is_finite() => return self.push_field(fields, key, FieldValue::F64(v)),
                        Ok(_) => {
                            let (raw, shown) = (self.raw(&key), shown());
                            return self.fail(
                                start,
                                format!(
                                    "float out of range for field `{raw}`: `{shown}` is too large for a 64-bit float"
                                ),
                            );
                        }
                        Err(_) => {}
                    }
                }
            }
        }
        let (raw, shown) = (self.raw(&key), shown());
        let message = match bytes.last() {
            _ if is_nan_or_inf(token) => format!("NaN and infinity are not supported: `{shown}` for field `{raw}`"),
            Some(b'i') => format!("invalid integer `{shown}` for field `{raw}`"),
            Some(b'u') => format!("invalid unsigned integer `{shown}` for field `{raw}`"),
            _ => format!("invalid float `{shown}` for field `{raw}`"),
        };
        self.fail(start, message)
    }

    /// Parses `"..."`, starting at the opening quote.
    fn string_value(&mut self, key: Name, fields: &mut Fields<'a>) -> ParseResult<()> {
        let open = self.pos;
        let start = open + 1;
        let mut i = scan(self.bytes, start, STRING);
        // Fast path: no escapes.
        loop {
            match self.bytes.get(i) {
                Some(b'"') => {
                    self.pos = i + 1;
                    let value = self.slice(start, i)?;
                    return self.push_field(fields, key, FieldValue::Str(Cow::Borrowed(value)));
                }
                Some(b'\n') => {
                    self.newlines += 1;
                    i = scan(self.bytes, i + 1, STRING);
                }
                Some(_) => break,
                None => return self.unterminated(open, &key),
            }
        }
        // Slow path: at the first backslash.
        let mut s = String::with_capacity(i - start + 16);
        let mut seg = start;
        loop {
            match self.bytes.get(i) {
                Some(b'"') => {
                    s.push_str(self.slice(seg, i)?);
                    self.pos = i + 1;
                    return self.push_field(fields, key, FieldValue::Str(Cow::Owned(s)));
                }
                Some(b'\n') => {
                    self.newlines += 1;
                    i += 1;
                }
                Some(_) => match self.bytes.get(i + 1) {
                    // `i` is at a backslash.
                    Some(&c @ (b'"' | b'\\')) => {
                        s.push_str(self.slice(seg, i)?);
                        s.push(char::from(c));
                        i += 2;
                        seg = i;
                    }
                    _ => i += 1,
                },
                None => return self.unterminated(open, &key),
            }
            i = scan(self.bytes, i, STRING);
        }
    }

    fn unterminated<T>(&self, open: usize, key: &Name) -> ParseResult<T> {
        let raw = self.raw(key);
        self.fail(open, format!("unterminated string value for field `{raw}`: no closing `\"`"))
    }

    /// Parses the optional timestamp after the field set's trailing space.
    fn timestamp(&mut self, out: &mut Line<'a>) -> ParseResult<()> {
        self.skip_blanks();
        if self.is_line_end(self.pos) {
            return Ok(());
        }
        let start = self.pos;
        let end = scan(self.bytes, start, VALUE);
        let token = self.slice(start, end)?;
        let units = match parse_i64(token.as_bytes()) {
            Ok(v) => v,
            Err(IntError::Invalid) => {
                return self.fail(start, format!("invalid timestamp `{}`; expected an integer", snippet(token)));
            }
            Err(IntError::Overflow) => {
                return self.fail(
                    start,
                    format!("timestamp out of range: `{}` does not fit in a signed 64-bit integer", snippet(token)),
                );
            }
        };
        let Some(nanos) = self.precision.to_nanos(units) else {
            let unit = self.precision.unit();
            return self.fail(
                start,
                format!(
                    "timestamp out of range: {units} {unit} is outside the signed 64-bit nanosecond range \
                     (1677-09-21 to 2262-04-11)"
                ),
            );
        };
        out.timestamp = Some(nanos);
        self.pos = end;
        self.skip_blanks();
        if !self.is_line_end(self.pos) {
            let end = find_newline(self.bytes, self.pos);
            let rest = snippet(self.text.get(self.pos..end).unwrap_or_default().trim_end());
            return self.fail(self.pos, format!("trailing characters after timestamp: `{rest}`"));
        }
        Ok(())
    }

    /// Scans a name up to the first unescaped byte of `class` (always
    /// including space, comma and newline), resolving escapes.
    #[inline(always)]
    fn name(&mut self, class: u8, escapable: fn(u8) -> bool) -> ParseResult<Name> {
        let start = self.pos;
        let end = scan(self.bytes, start, class);
        if self.bytes.get(end) == Some(&b'\\') {
            return self.escaped_name(start, end, class, escapable);
        }
        self.pos = end;
        Ok(Name { start, end, unescaped: None })
    }

    #[cold]
    fn escaped_name(&mut self, start: usize, mut i: usize, class: u8, escapable: fn(u8) -> bool) -> ParseResult<Name> {
        // Allocated at the first escape; a name whose backslashes are all
        // literal stays borrowed.
        let mut unescaped: Option<String> = None;
        let mut seg = start;
        loop {
            if self.bytes.get(i) != Some(&b'\\') {
                if let Some(s) = &mut unescaped {
                    s.push_str(self.slice(seg, i)?);
                }
                self.pos = i;
                return Ok(Name { start, end: i, unescaped });
            }
            match self.bytes.get(i + 1) {
                Some(&c) if escapable(c) => {
                    let s = unescaped.get_or_insert_with(|| String::with_capacity(i - start + 16));
                    s.push_str(self.slice(seg, i)?);
                    s.push(char::from(c));
                    i += 2;
                    seg = i;
                }
                // A backslash before anything else is itself.
                _ => i += 1,
            }
            i = scan(self.bytes, i, class);
        }
    }

    /// The name as stored in a [`Line`].
    fn cow(&self, name: Name) -> Cow<'a, str> {
        match name.unescaped {
            None => self.borrow(&name),
            Some(s) => Cow::Owned(s),
        }
    }

    /// The name as written, which is what it means when it has no escapes.
    /// Infallible, so that the `Cow` is built from registers: name
    /// boundaries are ASCII bytes, so slicing there cannot fail (if it did,
    /// the name would come out empty).
    #[inline(always)]
    fn borrow(&self, name: &Name) -> Cow<'a, str> {
        Cow::Borrowed(self.text.get(name.start..name.end).unwrap_or_default())
    }

    #[cold]
    #[inline(never)]
    fn push_escaped_tag(&self, tags: &mut Vec<(Cow<'a, str>, Cow<'a, str>)>, key: Name, value: Name) {
        tags.push((self.cow(key), self.cow(value)));
    }

    #[inline(always)]
    fn push_field(&self, fields: &mut Fields<'a>, key: Name, value: FieldValue<'a>) -> ParseResult<()> {
        match key.unescaped {
            None => fields.push((self.borrow(&key), value)),
            Some(key) => push_escaped_field(fields, key, value),
        }
        Ok(())
    }

    /// The name as written, shortened, for messages.
    fn raw(&self, name: &Name) -> String {
        self.snippet(name.start, name.end)
    }
}

/// Kept out of line: pushing escaped and unescaped names at one site made
/// the compiler merge them through a stack slot written with 8-byte stores
/// and read with 16-byte loads, a store-forwarding stall on every field.
#[cold]
#[inline(never)]
fn push_escaped_field<'a>(fields: &mut Fields<'a>, key: String, value: FieldValue<'a>) {
    fields.push((Cow::Owned(key), value));
}

/// A scanned name: where it is in the text (as written), and its unescaped
/// form when escapes make the two differ. The parser turns it into a `Cow`
/// only where it stores it: a `Cow` carried across calls was spilled with
/// 8-byte stores and reloaded with 16-byte loads, a store-forwarding stall on
/// every tag and field that cost about a quarter of the parse time.
struct Name {
    start: usize,
    end: usize,
    unescaped: Option<String>,
}

impl Name {
    fn is_empty(&self) -> bool {
        // An escape is two bytes, so an unescaped name is never empty.
        self.start == self.end
    }
}

/// Where the `n`-th (0-based) tag key of the line at `line_start` begins:
/// after the `n + 1`-th unescaped comma of the measurement and tag set.
fn nth_tag_key(bytes: &[u8], line_start: usize, n: usize) -> usize {
    let mut commas = 0;
    let mut i = line_start;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' if matches!(bytes.get(i + 1), Some(b',' | b'=' | b' ')) => i += 1,
            b',' => {
                commas += 1;
                if commas > n {
                    return i + 1;
                }
            }
            b' ' | b'\n' => break,
            _ => {}
        }
        i += 1;
    }
    line_start
}

/// The index of the first tag whose key repeats an earlier one.
fn duplicate_tag(tags: &[(Cow<'_, str>, Cow<'_, str>)]) -> Option<usize> {
    if tags.len() <= 16 {
        // Few tags (the usual case): comparing pairs is cheaper than sorting.
        for (i, (key, _)) in tags.iter().enumerate().skip(1) {
            if tags.iter().take(i).any(|(k, _)| k == key) {
                return Some(i);
            }
        }
        return None;
    }
    let mut order: Vec<usize> = (0..tags.len()).collect();
    let key = |i: usize| tags.get(i).map(|(k, _)| k.as_ref());
    order.sort_by(|&a, &b| key(a).cmp(&key(b)).then(a.cmp(&b)));
    order
        .windows(2)
        .filter_map(|pair| match *pair {
            [a, b] if key(a) == key(b) => Some(b),
            _ => None,
        })
        .min()
}

/// Shortens text for an error message and makes control characters visible.
fn snippet(s: &str) -> String {
    const MAX_CHARS: usize = 48;
    let mut out = String::new();
    for (n, c) in s.chars().enumerate() {
        if n == MAX_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn is_nan_or_inf(token: &str) -> bool {
    let t = token.strip_prefix(['-', '+']).unwrap_or(token);
    ["nan", "inf", "infinity"].iter().any(|s| t.eq_ignore_ascii_case(s))
}

fn parse_bool(token: &[u8]) -> Option<bool> {
    match token {
        b"t" | b"T" | b"true" | b"True" | b"TRUE" => Some(true),
        b"f" | b"F" | b"false" | b"False" | b"FALSE" => Some(false),
        _ => None,
    }
}

enum IntError {
    Invalid,
    Overflow,
}

/// Parses ASCII decimal digits (at least one) into a `u64`. Reports
/// `Invalid` before `Overflow`, so `99999999999999999999x` is invalid.
fn parse_digits(digits: &[u8]) -> Result<u64, IntError> {
    if digits.is_empty() {
        return Err(IntError::Invalid);
    }
    // 19 digits are below 10^19 < 2^64, so they need no overflow checks;
    // only longer numbers (leading zeros, or out of range) take the checked loop.
    let (head, tail) = digits.split_at(digits.len().min(19));
    let mut acc: u64 = 0;
    for &b in head {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return Err(IntError::Invalid);
        }
        acc = acc * 10 + u64::from(d);
    }
    let mut overflow = false;
    for &b in tail {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return Err(IntError::Invalid);
        }
        match acc.checked_mul(10).and_then(|a| a.checked_add(u64::from(d))) {
            Some(a) => acc = a,
            None => overflow = true,
        }
    }
    if overflow { Err(IntError::Overflow) } else { Ok(acc) }
}

/// `-?[0-9]+` into an `i64`.
fn parse_i64(s: &[u8]) -> Result<i64, IntError> {
    match s.split_first() {
        Some((b'-', digits)) => 0i64.checked_sub_unsigned(parse_digits(digits)?).ok_or(IntError::Overflow),
        _ => i64::try_from(parse_digits(s)?).map_err(|_| IntError::Overflow),
    }
}

/// `[0-9]+` into a `u64`.
fn parse_u64(s: &[u8]) -> Result<u64, IntError> {
    parse_digits(s)
}

/// Exact powers of ten representable in an `f64`.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// Parses the common float shape `-?digits[.digits]` without an exponent,
/// when the result is exact by Clinger's fast path: the digits form an
/// integer below 2^53 and at most 22 of them follow the point, so one
/// correctly rounded division gives the correctly rounded value. Returns
/// `None` for anything else; the caller then uses `str::parse`.
#[inline]
fn parse_f64_fast(token: &[u8]) -> Option<f64> {
    let (negative, body) = match token.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, token),
    };
    let mut mantissa: u64 = 0;
    let mut digits = 0u32;
    let mut point: Option<u32> = None;
    for &b in body {
        let d = b.wrapping_sub(b'0');
        if d <= 9 {
            if digits == 18 {
                return None;
            }
            mantissa = mantissa * 10 + u64::from(d);
            digits += 1;
        } else if b == b'.' && point.is_none() {
            point = Some(digits);
        } else {
            return None;
        }
    }
    if digits == 0 || mantissa > (1 << 53) {
        return None;
    }
    let scale = POW10.get(usize::try_from(digits - point.unwrap_or(digits)).ok()?)?;
    // `mantissa <= 2^53` converts exactly.
    let value = mantissa as f64 / scale;
    Some(if negative { -value } else { value })
}

/// Whether `token` is a float as InfluxDB accepts it:
/// `-?(digits[.digits?]|.digits)([eE][+-]?digits)?`.
fn is_float_syntax(token: &[u8]) -> bool {
    fn digits(t: &[u8], i: &mut usize) -> usize {
        let start = *i;
        while t.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    }
    let mut i = usize::from(token.first() == Some(&b'-'));
    let mut mantissa_digits = digits(token, &mut i);
    if token.get(i) == Some(&b'.') {
        i += 1;
        mantissa_digits += digits(token, &mut i);
    }
    if mantissa_digits == 0 {
        return false;
    }
    if matches!(token.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(token.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(token, &mut i) == 0 {
            return false;
        }
    }
    i == token.len()
}

/// Appends `line` to `out` in line protocol, with timestamps in `precision`
/// (rounded towards negative infinity if `precision` is coarser than the
/// timestamp), and no trailing newline. Floats are written in the shortest
/// form that reads back to the same bits. `line.line` is ignored.
///
/// Fails, leaving `out` unchanged, if the line has no line-protocol form: an
/// empty measurement, tag key, tag value or field key; a name holding a
/// newline or ending with a backslash; a measurement starting with `#` (a
/// comment) or a tab, or a first field key starting with a tab (both read as
/// whitespace); a repeated tag key; no fields; a NaN or infinite float.
/// Whenever it succeeds, [`parse`] reads the output back to an equal line.
pub fn write_line(line: &Line<'_>, precision: Precision, out: &mut String) -> Result<(), WriteError> {
    let start = out.len();
    let result = write_line_unchecked(line, precision, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn write_line_unchecked(line: &Line<'_>, precision: Precision, out: &mut String) -> Result<(), WriteError> {
    let measurement = line.measurement.as_ref();
    check_name(measurement, "measurement")?;
    if measurement.starts_with('#') {
        return write_error(format!(
            "measurement `{}` starts with `#`, which makes the line a comment",
            snippet(measurement)
        ));
    }
    if measurement.starts_with('\t') {
        return write_error(format!(
            "measurement `{}` starts with a tab, which reads as whitespace",
            snippet(measurement)
        ));
    }
    escape_name(out, measurement, is_measurement_escape);
    for (key, value) in &line.tags {
        check_name(key, "tag key")?;
        check_name(value, "tag value")?;
        out.push(',');
        escape_name(out, key, is_key_escape);
        out.push('=');
        escape_name(out, value, is_key_escape);
    }
    if let Some(i) = duplicate_tag(&line.tags) {
        let key = line.tags.get(i).map(|(k, _)| snippet(k)).unwrap_or_default();
        return write_error(format!("duplicate tag key `{key}`"));
    }
    if line.fields.is_empty() {
        return write_error("a line needs at least one field".to_owned());
    }
    for (i, (key, value)) in line.fields.iter().enumerate() {
        check_name(key, "field key")?;
        if i == 0 && key.starts_with('\t') {
            return write_error(format!(
                "first field key `{}` starts with a tab, which reads as whitespace",
                snippet(key)
            ));
        }
        out.push(if i == 0 { ' ' } else { ',' });
        escape_name(out, key, is_key_escape);
        out.push('=');
        // Writing to a `String` cannot fail, so the `fmt::Result`s below are ignored.
        match value {
            FieldValue::F64(v) if !v.is_finite() => {
                return write_error(format!("field `{}` is {v}, which line protocol cannot hold", snippet(key)));
            }
            // `Debug` prints the shortest round-tripping form, with an
            // exponent for very large and small magnitudes (`1e300`, not 301 digits).
            FieldValue::F64(v) => _ = write!(out, "{v:?}"),
            FieldValue::I64(v) => _ = write!(out, "{v}i"),
            FieldValue::U64(v) => _ = write!(out, "{v}u"),
            FieldValue::Bool(v) => out.push_str(if *v { "true" } else { "false" }),
            FieldValue::Str(s) => {
                out.push('"');
                let mut seg = 0;
                for (i, b) in s.bytes().enumerate() {
                    if b == b'"' || b == b'\\' {
                        out.push_str(s.get(seg..i).unwrap_or_default());
                        out.push('\\');
                        seg = i;
                    }
                }
                out.push_str(s.get(seg..).unwrap_or_default());
                out.push('"');
            }
        }
    }
    if let Some(ts) = line.timestamp {
        _ = write!(out, " {}", precision.from_nanos(ts));
    }
    Ok(())
}

fn write_error<T>(message: String) -> Result<T, WriteError> {
    Err(WriteError { message })
}

fn check_name(name: &str, what: &str) -> Result<(), WriteError> {
    if name.is_empty() {
        return write_error(format!("{what} is empty"));
    }
    if name.contains('\n') {
        return write_error(format!("{what} `{}` holds a newline", snippet(name)));
    }
    if name.ends_with('\\') {
        return write_error(format!(
            "{what} `{}` ends with a backslash, which would escape the delimiter after it",
            snippet(name)
        ));
    }
    Ok(())
}

/// Writes `name` with a backslash before every byte `escapable` accepts.
fn escape_name(out: &mut String, name: &str, escapable: fn(u8) -> bool) {
    let mut seg = 0;
    for (i, b) in name.bytes().enumerate() {
        if escapable(b) {
            out.push_str(name.get(seg..i).unwrap_or_default());
            out.push('\\');
            seg = i;
        }
    }
    out.push_str(name.get(seg..).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FLEET: &str = "readings,name=truck_12,fleet=South,driver=Trish,model=H-2,device_version=v2.3 \
        latitude=52.31,longitude=4.91,elevation=12.0,velocity=61.5,heading=270.0,grade=0.5,fuel_consumption=25.3 \
        1700000000000000000";

    fn all(body: &[u8], precision: Precision) -> Vec<Result<Line<'_>, LineError>> {
        parse(body, precision).collect()
    }

    /// The single point in `body`, which must parse.
    fn one(body: &str) -> Line<'_> {
        let mut items = all(body.as_bytes(), Precision::Nanoseconds);
        assert_eq!(items.len(), 1, "{body:?} gave {items:?}");
        match items.pop() {
            Some(Ok(line)) => line,
            other => panic!("{body:?} gave {other:?}"),
        }
    }

    /// The single error in `body`, displayed.
    fn error(body: &[u8], precision: Precision) -> String {
        let items = all(body, precision);
        assert_eq!(items.len(), 1, "{:?} gave {items:?}", String::from_utf8_lossy(body));
        match items.into_iter().next() {
            Some(Err(e)) => e.to_string(),
            other => panic!("{:?} parsed: {other:?}", String::from_utf8_lossy(body)),
        }
    }

    /// Every item of `body` as `ok <line>` or the error's text.
    fn outcomes(body: &[u8]) -> Vec<String> {
        parse(body, Precision::Nanoseconds)
            .map(|item| match item {
                Ok(line) => format!("ok {}", line.line),
                Err(e) => e.to_string(),
            })
            .collect()
    }

    fn field<'a>(line: &'a Line<'_>, key: &str) -> &'a FieldValue<'a> {
        &line.fields.iter().find(|(k, _)| k == key).unwrap().1
    }

    #[expect(clippy::ptr_arg, reason = "the variant is what is checked")]
    fn borrowed(c: &Cow<'_, str>) -> bool {
        matches!(c, Cow::Borrowed(_))
    }

    /// A line's contents with floats as bits, so `-0.0 != 0.0` and equal NaNs compare equal.
    #[derive(Debug, PartialEq)]
    enum Value {
        F64(u64),
        I64(i64),
        U64(u64),
        Bool(bool),
        Str(String),
    }

    type Normalized = (String, Vec<(String, String)>, Vec<(String, Value)>, Option<i64>, usize);

    fn normalize(line: &Line<'_>) -> Normalized {
        let fields = line
            .fields
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    FieldValue::F64(v) => Value::F64(v.to_bits()),
                    FieldValue::I64(v) => Value::I64(*v),
                    FieldValue::U64(v) => Value::U64(*v),
                    FieldValue::Bool(v) => Value::Bool(*v),
                    FieldValue::Str(s) => Value::Str(s.to_string()),
                };
                (k.to_string(), v)
            })
            .collect();
        let tags = line.tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        (line.measurement.to_string(), tags, fields, line.timestamp, line.line)
    }

    fn written(line: &Line<'_>, precision: Precision) -> String {
        let mut out = String::new();
        write_line(line, precision, &mut out).unwrap();
        out
    }

    // ---- Lines and their parts --------------------------------------------

    #[test]
    fn fleet_line() {
        let line = one(FLEET);
        assert_eq!(line.measurement, "readings");
        let tags: Vec<(&str, &str)> = line.tags.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect();
        assert_eq!(
            tags,
            [
                ("name", "truck_12"),
                ("fleet", "South"),
                ("driver", "Trish"),
                ("model", "H-2"),
                ("device_version", "v2.3")
            ]
        );
        let fields: Vec<(&str, f64)> = line
            .fields
            .iter()
            .map(|(k, v)| match v {
                FieldValue::F64(v) => (k.as_ref(), *v),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            fields,
            [
                ("latitude", 52.31),
                ("longitude", 4.91),
                ("elevation", 12.0),
                ("velocity", 61.5),
                ("heading", 270.0),
                ("grade", 0.5),
                ("fuel_consumption", 25.3)
            ]
        );
        assert_eq!(line.timestamp, Some(1_700_000_000_000_000_000));
        assert_eq!(line.line, 1);
        // Nothing escaped, so nothing copied.
        assert!(borrowed(&line.measurement));
        assert!(line.tags.iter().all(|(k, v)| borrowed(k) && borrowed(v)));
        assert!(line.fields.iter().all(|(k, _)| borrowed(k)));
    }

    #[test]
    fn minimal_line_has_no_tags_and_no_timestamp() {
        let line = one("m f=1");
        assert_eq!(line.measurement, "m");
        assert!(line.tags.is_empty());
        assert_eq!(line.fields, [("f".into(), FieldValue::F64(1.0))]);
        assert_eq!(line.timestamp, None);
    }

    #[test]
    fn whitespace_between_sections() {
        let line = one("  \tm,t=a \t f=1,g=2i \t 5 \t ");
        assert_eq!(line.measurement, "m");
        assert_eq!(line.fields.len(), 2);
        assert_eq!(line.timestamp, Some(5));
        assert_eq!(one("m f=1   ").timestamp, None);
    }

    #[test]
    fn duplicate_field_keys_are_all_kept() {
        let line = one("m a=1,a=2i");
        assert_eq!(line.fields, [("a".into(), FieldValue::F64(1.0)), ("a".into(), FieldValue::I64(2))]);
    }

    #[test]
    fn hash_inside_a_line_is_not_a_comment() {
        let line = one("m#1,t=#a #f=\"#\" 1");
        assert_eq!(line.measurement, "m#1");
        assert_eq!(line.tags, [("t".into(), "#a".into())]);
        assert_eq!(line.fields, [("#f".into(), FieldValue::Str("#".into()))]);
    }

    #[test]
    fn measurement_may_hold_equals_and_quotes() {
        assert_eq!(one("a=b\"c f=1").measurement, "a=b\"c");
        assert_eq!(one("m,t=\"q\" f=1").tags, [("t".into(), "\"q\"".into())]);
    }

    // ---- Escapes ----------------------------------------------------------

    #[test]
    fn measurement_escapes() {
        let line = one(r"my\ meas\,ure f=1");
        assert_eq!(line.measurement, "my meas,ure");
        assert!(!borrowed(&line.measurement));
        // `=` is not special in a measurement, so `\=` is two characters.
        assert_eq!(one(r"a\=b f=1").measurement, r"a\=b");
        assert_eq!(one(r"a\b f=1").measurement, r"a\b");
        assert_eq!(one(r"a\\b f=1").measurement, r"a\\b");
        // The first backslash is literal, the second escapes the space.
        assert_eq!(one(r"a\\ b f=1").measurement, r"a\ b");
        assert_eq!(one(r"\ lead f=1").measurement, " lead");
        assert_eq!(one(r"\#x f=1").measurement, r"\#x");
    }

    #[test]
    fn tag_escapes() {
        let line = one(r"m,k\ e\,y\==v\ a\,l\=ue f=1");
        assert_eq!(line.tags, [("k e,y=".into(), "v a,l=ue".into())]);
        let line = one(r"m,k=a\b,c=d\\,e\=f\\\,g f=1");
        assert_eq!(line.tags, [("k".into(), r"a\b".into()), ("c".into(), r"d\,e=f\\,g".into())]);
        // An escaped space at the end of a value, then the real separator.
        let line = one(r"m,k=a\  f=1");
        assert_eq!(line.tags, [("k".into(), "a ".into())]);
    }

    #[test]
    fn field_key_escapes() {
        let line = one(r"m f\ i\,e\=ld=1,g\x=2");
        assert_eq!(line.fields[0].0, "f i,e=ld");
        assert_eq!(line.fields[1].0, r"g\x");
        assert!(!borrowed(&line.fields[0].0));
        assert!(borrowed(&line.fields[1].0));
    }

    #[test]
    fn string_escapes() {
        let line = one(r#"m a="plain",b="q\"uote",c="back\\slash",d="lit\eral",e="",f="x\\",g="\\\"""#);
        let s = |k| match field(&line, k) {
            FieldValue::Str(s) => s.to_string(),
            other => panic!("{other:?}"),
        };
        assert_eq!(s("a"), "plain");
        assert_eq!(s("b"), "q\"uote");
        assert_eq!(s("c"), r"back\slash");
        assert_eq!(s("d"), r"lit\eral");
        assert_eq!(s("e"), "");
        assert_eq!(s("f"), r"x\");
        assert_eq!(s("g"), r#"\""#);
        assert!(matches!(field(&line, "a"), FieldValue::Str(Cow::Borrowed(_))));
        assert!(matches!(field(&line, "b"), FieldValue::Str(Cow::Owned(_))));
        // Delimiters mean nothing inside quotes.
        let line = one(r#"m a="x, y=z \,w" 7"#);
        assert_eq!(line.fields, [("a".into(), FieldValue::Str(r"x, y=z \,w".into()))]);
        assert_eq!(line.timestamp, Some(7));
    }

    #[test]
    fn unicode_names_and_strings() {
        let line = one("température,capteur=été 値=\"🦀 ok\",ß=1i");
        assert_eq!(line.measurement, "température");
        assert_eq!(line.tags, [("capteur".into(), "été".into())]);
        assert_eq!(line.fields[0], ("値".into(), FieldValue::Str("🦀 ok".into())));
        assert_eq!(line.fields[1], ("ß".into(), FieldValue::I64(1)));
    }

    #[test]
    fn strings_may_span_lines() {
        let items = all(b"m s=\"one\ntwo\r\nthree\",n=1i 5\nm n=2i\n", Precision::Nanoseconds);
        let lines: Vec<Line<'_>> = items.into_iter().map(Result::unwrap).collect();
        assert_eq!(lines[0].fields[0].1, FieldValue::Str("one\ntwo\r\nthree".into()));
        assert_eq!(lines[0].timestamp, Some(5));
        assert_eq!((lines[0].line, lines[1].line), (1, 4));
        // The escape path counts newlines too.
        let lines: Vec<usize> =
            all(b"m s=\"\\\"\n\\\\\n\"\nm n=2i", Precision::Nanoseconds).into_iter().map(|l| l.unwrap().line).collect();
        assert_eq!(lines, [1, 4]);
    }

    // ---- Value types ------------------------------------------------------

    #[test]
    fn floats() {
        let cases: &[(&str, f64)] = &[
            ("1", 1.0),
            ("-1", -1.0),
            ("1.5", 1.5),
            ("-1e10", -1e10),
            ("1.", 1.0),
            (".5", 0.5),
            ("-.5", -0.5),
            ("1E+5", 1e5),
            ("1.5e-3", 1.5e-3),
            ("1.e3", 1e3),
            ("007.50", 7.5),
            ("0.1", 0.1),
            ("52.31", 52.31),
            ("9007199254740993", 9007199254740993.0),
            ("123456789012345678901234567890", 123456789012345678901234567890.0),
            ("0.30000000000000004", 0.30000000000000004),
            ("1.7976931348623157e308", f64::MAX),
            ("-1.7976931348623157e308", f64::MIN),
            ("5e-324", 5e-324),
            ("2.2250738585072014e-308", f64::MIN_POSITIVE),
            ("1e-400", 0.0),
            ("0.0000000000000000000001", 1e-22),
        ];
        for &(text, want) in cases {
            let line = one(&format!("m f={text}")).into_owned();
            match line.fields[0].1 {
                FieldValue::F64(got) => assert_eq!(got.to_bits(), want.to_bits(), "{text}"),
                ref other => panic!("{text}: {other:?}"),
            }
        }
        for text in ["-0", "-0.0", "-0e0"] {
            match one(&format!("m f={text}")).fields[0].1 {
                FieldValue::F64(v) => assert_eq!(v.to_bits(), (-0.0f64).to_bits(), "{text}"),
                ref other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn integers() {
        let line = one("m a=0i,b=-0i,c=9223372036854775807i,d=-9223372036854775808i,e=007i");
        let values: Vec<&FieldValue<'_>> = line.fields.iter().map(|(_, v)| v).collect();
        assert_eq!(
            values,
            [
                &FieldValue::I64(0),
                &FieldValue::I64(0),
                &FieldValue::I64(i64::MAX),
                &FieldValue::I64(i64::MIN),
                &FieldValue::I64(7)
            ]
        );
    }

    #[test]
    fn unsigned_integers() {
        let line = one("m a=0u,b=18446744073709551615u,c=42u");
        let values: Vec<&FieldValue<'_>> = line.fields.iter().map(|(_, v)| v).collect();
        assert_eq!(values, [&FieldValue::U64(0), &FieldValue::U64(u64::MAX), &FieldValue::U64(42)]);
    }

    #[test]
    fn booleans() {
        for (text, want) in [
            ("t", true),
            ("T", true),
            ("true", true),
            ("True", true),
            ("TRUE", true),
            ("f", false),
            ("F", false),
            ("false", false),
            ("False", false),
            ("FALSE", false),
        ] {
            assert_eq!(one(&format!("m b={text},x=1")).fields[0].1, FieldValue::Bool(want), "{text}");
        }
        for text in ["tRUE", "yes", "fals", "truee", "FaLsE"] {
            assert!(all(format!("m b={text}").as_bytes(), Precision::Nanoseconds)[0].is_err(), "{text}");
        }
    }

    // ---- Timestamps and precision -----------------------------------------

    #[test]
    fn precision_names() {
        assert_eq!(Precision::parse("ns"), Some(Precision::Nanoseconds));
        assert_eq!(Precision::parse("n"), Some(Precision::Nanoseconds));
        assert_eq!(Precision::parse("us"), Some(Precision::Microseconds));
        assert_eq!(Precision::parse("u"), Some(Precision::Microseconds));
        assert_eq!(Precision::parse("µs"), Some(Precision::Microseconds));
        assert_eq!(Precision::parse("\u{3bc}s"), Some(Precision::Microseconds));
        assert_eq!(Precision::parse("ms"), Some(Precision::Milliseconds));
        assert_eq!(Precision::parse("s"), Some(Precision::Seconds));
        for bad in ["", "m", "h", "NS", "sec", " s"] {
            assert_eq!(Precision::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Precision::default(), Precision::Nanoseconds);
    }

    #[test]
    fn every_precision_scales() {
        for (precision, want) in [
            (Precision::Nanoseconds, 1_700_000_000),
            (Precision::Microseconds, 1_700_000_000_000),
            (Precision::Milliseconds, 1_700_000_000_000_000),
            (Precision::Seconds, 1_700_000_000_000_000_000),
        ] {
            let items = all(b"m f=1 1700000000\nm f=1 -1700000000\nm f=1", precision);
            let ts: Vec<Option<i64>> = items.into_iter().map(|l| l.unwrap().timestamp).collect();
            assert_eq!(ts, [Some(want), Some(-want), None], "{precision:?}");
            assert_eq!(precision.to_nanos(1_700_000_000), Some(want));
            assert_eq!(precision.from_nanos(want), 1_700_000_000);
        }
        assert_eq!(Precision::Seconds.from_nanos(-1), -1, "rounds towards negative infinity");
        assert_eq!(Precision::Milliseconds.from_nanos(1_999_999), 1);
    }

    #[test]
    fn timestamp_extremes() {
        let ns = |body: &str| all(body.as_bytes(), Precision::Nanoseconds)[0].as_ref().unwrap().timestamp;
        assert_eq!(ns("m f=1 9223372036854775807"), Some(i64::MAX));
        assert_eq!(ns("m f=1 -9223372036854775808"), Some(i64::MIN));
        assert_eq!(ns("m f=1 -0"), Some(0));
        assert_eq!(ns("m f=1 0001"), Some(1));
        let s = |body: &str| all(body.as_bytes(), Precision::Seconds)[0].as_ref().unwrap().timestamp;
        assert_eq!(s("m f=1 9223372036"), Some(9_223_372_036_000_000_000));
        assert_eq!(s("m f=1 -9223372036"), Some(-9_223_372_036_000_000_000));
    }

    #[test]
    fn timestamp_overflow_per_precision() {
        assert_eq!(
            error(b"m f=1 9223372037", Precision::Seconds),
            "line 1, column 7: timestamp out of range: 9223372037 s is outside the signed 64-bit nanosecond range \
             (1677-09-21 to 2262-04-11)"
        );
        assert_eq!(
            error(b"m f=1 -9223372036855", Precision::Milliseconds),
            "line 1, column 7: timestamp out of range: -9223372036855 ms is outside the signed 64-bit nanosecond \
             range (1677-09-21 to 2262-04-11)"
        );
        assert_eq!(
            error(b"m f=1 9223372036854776", Precision::Microseconds),
            "line 1, column 7: timestamp out of range: 9223372036854776 \u{b5}s is outside the signed 64-bit \
             nanosecond range (1677-09-21 to 2262-04-11)"
        );
        assert_eq!(
            error(b"m f=1 9223372036854775808", Precision::Nanoseconds),
            "line 1, column 7: timestamp out of range: `9223372036854775808` does not fit in a signed 64-bit integer"
        );
    }

    // ---- Line structure ---------------------------------------------------

    #[test]
    fn comments_and_blank_lines_are_skipped() {
        let body = b"# header\n\n   \n\t\n  # indented comment\nm f=1\n#m f=2\r\n \r\nm f=3\n\n";
        assert_eq!(outcomes(body), ["ok 6", "ok 9"]);
        assert!(outcomes(b"").is_empty());
        assert!(outcomes(b"\n\n# only a comment").is_empty());
        assert!(outcomes(b" \t \r\n").is_empty());
        // A comment with a quote still ends at its newline.
        assert_eq!(outcomes(b"# say \"hi\nm f=1"), ["ok 2"]);
    }

    #[test]
    fn crlf_line_endings() {
        let body = b"m,t=a f=1 5\r\nm f=2\r\nm f=\"s\"\r\n\r\nm f=T\r\n";
        let lines: Vec<Line<'_>> = all(body, Precision::Nanoseconds).into_iter().map(Result::unwrap).collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0].timestamp, Some(5));
        assert_eq!(lines[1].fields[0].1, FieldValue::F64(2.0));
        assert_eq!(lines[2].fields[0].1, FieldValue::Str("s".into()));
        assert_eq!(lines[3].fields[0].1, FieldValue::Bool(true));
        assert_eq!(lines.iter().map(|l| l.line).collect::<Vec<_>>(), [1, 2, 3, 5]);
        // A final `\r` without `\n` ends the body just as well.
        assert_eq!(one("m f=1 5\r").timestamp, Some(5));
        assert_eq!(one("m f=1 \r").timestamp, None);
    }

    #[test]
    fn good_lines_after_bad_ones() {
        let body = b"m f=1\nm f=\nm f=2\nm,t= f=1\n\nm s=\"open\nm f=3";
        // The unterminated string swallows the rest, as in InfluxDB.
        assert_eq!(
            outcomes(body),
            [
                "ok 1",
                "line 2, column 5: expected field value after `f=`, found end of line",
                "ok 3",
                "line 4, column 5: expected tag value after `t=`, found space; empty tag values are not allowed, \
                 omit the tag",
                "line 6, column 5: unterminated string value for field `s`: no closing `\"`",
            ]
        );
        // After an error in the field set, recovery knows a string may hold a newline.
        let body = b"m x=bad,s=\"a\nb\"\nm f=4";
        assert_eq!(
            outcomes(body),
            [
                "line 1, column 5: invalid field value `bad` for field `x`; expected a number, a boolean or a \
                 double-quoted string",
                "ok 3"
            ]
        );
        let body = b"m f=1 2 3\nm\nm f=5";
        assert_eq!(
            outcomes(body),
            [
                "line 1, column 9: trailing characters after timestamp: `3`",
                "line 2, column 2: missing field set after `m`; a line needs at least one field",
                "ok 3"
            ]
        );
    }

    #[test]
    fn errors_report_the_physical_line() {
        let body = b"m s=\"one\ntwo\" 12x\nm f=1";
        assert_eq!(outcomes(body), ["line 2, column 6: invalid timestamp `12x`; expected an integer", "ok 3"]);
        let body = b"m s=\"a\\\"\nb\",t=1 \nm f=1";
        assert_eq!(outcomes(body), ["ok 1", "ok 3"]);
    }

    #[test]
    fn every_error_message() {
        let cases: &[(&str, &str)] = &[
            (",t=a f=1", "line 1, column 1: expected measurement name, found `,`"),
            ("m", "line 1, column 2: missing field set after `m`; a line needs at least one field"),
            ("m,t=a", "line 1, column 6: missing field set after `m,t=a`; a line needs at least one field"),
            ("m \t ", "line 1, column 5: missing field set; a line needs at least one field"),
            ("m,", "line 1, column 3: expected tag key after `,`, found end of line"),
            ("m,=a f=1", "line 1, column 3: expected tag key after `,`, found `=`"),
            ("m,t=a, f=1", "line 1, column 7: expected tag key after `,`, found space"),
            ("m,t f=1", "line 1, column 4: expected `=` after tag key `t`, found space"),
            ("m,t,u=1 f=1", "line 1, column 4: expected `=` after tag key `t`, found `,`"),
            (
                "m,t= f=1",
                "line 1, column 5: expected tag value after `t=`, found space; empty tag values are not allowed, omit \
                 the tag",
            ),
            (
                "m,t=,u=1 f=1",
                "line 1, column 5: expected tag value after `t=`, found `,`; empty tag values are not allowed, omit \
                 the tag",
            ),
            (
                "m,t=a=b f=1",
                "line 1, column 6: unescaped `=` after value `a` of tag `t`; write `\\=` for a literal `=`",
            ),
            ("m,a=1,b=2,a=3 f=1", "line 1, column 11: duplicate tag key `a`"),
            (r"m,a\ b=1,a\ b=2 f=1", "line 1, column 10: duplicate tag key `a b`"),
            ("m =1", "line 1, column 3: expected field key, found `=`"),
            ("m ,f=1", "line 1, column 3: expected field key, found `,`"),
            ("m f=1,", "line 1, column 7: expected field key after `,`, found end of line"),
            ("m f=1,,g=2", "line 1, column 7: expected field key after `,`, found `,`"),
            ("m temp 1", "line 1, column 7: expected `=` after field key `temp`, found space"),
            ("m temp", "line 1, column 7: expected `=` after field key `temp`, found end of line"),
            ("m temp,a=1", "line 1, column 7: expected `=` after field key `temp`, found `,`"),
            ("m temp=", "line 1, column 8: expected field value after `temp=`, found end of line"),
            ("m temp=,a=1", "line 1, column 8: expected field value after `temp=`, found `,`"),
            ("m temp= 1", "line 1, column 8: expected field value after `temp=`, found space"),
            ("m temp=\rx", "line 1, column 8: expected field value after `temp=`, found `\\r`"),
            ("m a=12x3i", "line 1, column 5: invalid integer `12x3i` for field `a`"),
            ("m a=-i", "line 1, column 5: invalid integer `-i` for field `a`"),
            ("m a=1.5i", "line 1, column 5: invalid integer `1.5i` for field `a`"),
            (
                "m a=9223372036854775808i",
                "line 1, column 5: integer out of range for field `a`: `9223372036854775808i` does not fit in a \
                 signed 64-bit integer",
            ),
            (
                "m a=-9223372036854775809i",
                "line 1, column 5: integer out of range for field `a`: `-9223372036854775809i` does not fit in a \
                 signed 64-bit integer",
            ),
            ("m a=-1u", "line 1, column 5: invalid unsigned integer `-1u` for field `a`"),
            ("m a=1.0u", "line 1, column 5: invalid unsigned integer `1.0u` for field `a`"),
            (
                "m a=18446744073709551616u",
                "line 1, column 5: unsigned integer out of range for field `a`: `18446744073709551616u` does not fit \
                 in an unsigned 64-bit integer",
            ),
            ("m a=1.2.3", "line 1, column 5: invalid float `1.2.3` for field `a`"),
            ("m a=-", "line 1, column 5: invalid float `-` for field `a`"),
            ("m a=.", "line 1, column 5: invalid float `.` for field `a`"),
            ("m a=1e", "line 1, column 5: invalid float `1e` for field `a`"),
            ("m a=1e+", "line 1, column 5: invalid float `1e+` for field `a`"),
            ("m a=0x10", "line 1, column 5: invalid float `0x10` for field `a`"),
            ("m a=1_000", "line 1, column 5: invalid float `1_000` for field `a`"),
            ("m a=1\"", "line 1, column 5: invalid float `1\"` for field `a`"),
            (
                "m a=1e400",
                "line 1, column 5: float out of range for field `a`: `1e400` is too large for a 64-bit float",
            ),
            (
                "m a=-1e400",
                "line 1, column 5: float out of range for field `a`: `-1e400` is too large for a 64-bit float",
            ),
            ("m a=NaN", "line 1, column 5: NaN and infinity are not supported: `NaN` for field `a`"),
            ("m a=nan", "line 1, column 5: NaN and infinity are not supported: `nan` for field `a`"),
            ("m a=-inf", "line 1, column 5: NaN and infinity are not supported: `-inf` for field `a`"),
            ("m a=Infinity", "line 1, column 5: NaN and infinity are not supported: `Infinity` for field `a`"),
            (
                "m a=tru",
                "line 1, column 5: invalid boolean `tru` for field `a`; use t, T, true, True, TRUE, f, F, false, False \
                 or FALSE",
            ),
            (
                "m a=xyz",
                "line 1, column 5: invalid field value `xyz` for field `a`; expected a number, a boolean or a \
                 double-quoted string",
            ),
            (
                "m a=+1",
                "line 1, column 5: invalid field value `+1` for field `a`; expected a number, a boolean or a \
                 double-quoted string",
            ),
            ("m a=\"abc", "line 1, column 5: unterminated string value for field `a`: no closing `\"`"),
            ("m a=\"ab\\\"", "line 1, column 5: unterminated string value for field `a`: no closing `\"`"),
            (
                "m a=\"abc\"x",
                "line 1, column 10: expected `,`, space or end of line after the value of field `a`, found `x`",
            ),
            (
                "m a=1\rb",
                "line 1, column 6: expected `,`, space or end of line after the value of field `a`, found `\\r`",
            ),
            ("m a=1 12a", "line 1, column 7: invalid timestamp `12a`; expected an integer"),
            ("m a=1 -", "line 1, column 7: invalid timestamp `-`; expected an integer"),
            ("m a=1 +5", "line 1, column 7: invalid timestamp `+5`; expected an integer"),
            ("m a=1 1.5", "line 1, column 7: invalid timestamp `1.5`; expected an integer"),
            (
                "m a=1 99999999999999999999",
                "line 1, column 7: timestamp out of range: `99999999999999999999` does not fit in a signed 64-bit \
                 integer",
            ),
            ("m a=1 123 x", "line 1, column 11: trailing characters after timestamp: `x`"),
            ("m a=1 123 \t x y  ", "line 1, column 13: trailing characters after timestamp: `x y`"),
            ("m a=1 123,b=2", "line 1, column 10: trailing characters after timestamp: `,b=2`"),
            ("m a=1 123\rx", "line 1, column 10: trailing characters after timestamp: `\\rx`"),
            // Columns count bytes: `é` is two.
            ("mé,t f=1", "line 1, column 6: expected `=` after tag key `t`, found space"),
            (
                "m f=\u{1F980}",
                "line 1, column 5: invalid field value `\u{1F980}` for field `f`; expected a number, a boolean or a \
                 double-quoted string",
            ),
        ];
        for &(body, want) in cases {
            assert_eq!(error(body.as_bytes(), Precision::Nanoseconds), want, "{body:?}");
        }
    }

    #[test]
    fn long_tokens_are_shortened_in_messages() {
        let body = format!("m a={}x", "1".repeat(100));
        let message = error(body.as_bytes(), Precision::Nanoseconds);
        assert_eq!(message, format!("line 1, column 5: invalid float `{}…` for field `a`", "1".repeat(48)));
    }

    #[test]
    fn error_display_and_trait() {
        let err = LineError { line: 3, column: 17, message: "expected `=` after field key `temp`".to_owned() };
        assert_eq!(err.to_string(), "line 3, column 17: expected `=` after field key `temp`");
        let boxed: Box<dyn std::error::Error> = Box::new(err);
        assert!(boxed.source().is_none());
    }

    #[test]
    fn many_tags_duplicate_check_sorts() {
        let mut body = String::from("m");
        for i in 0..1000 {
            body.push_str(&format!(",k{i}=v"));
        }
        body.push_str(" f=1");
        assert_eq!(one(&body).tags.len(), 1000);
        let dup = format!("{},k500=w f=1", body.trim_end_matches(" f=1"));
        let message = error(dup.as_bytes(), Precision::Nanoseconds);
        let column = dup.find(",k500=w").unwrap() + 2;
        assert_eq!(message, format!("line 1, column {column}: duplicate tag key `k500`"));
    }

    // ---- Invalid UTF-8 ----------------------------------------------------

    #[test]
    fn invalid_utf8_rejects_only_its_line() {
        let body = b"a f=1\nm,t=\xff f=1\nb f=2\nc s=\"x\xc3\" 1\nd f=3";
        assert_eq!(
            outcomes(body),
            [
                "ok 1",
                "line 2, column 5: invalid UTF-8 (byte 0xff); line protocol must be UTF-8",
                "ok 3",
                "line 4, column 7: invalid UTF-8 (byte 0xc3); line protocol must be UTF-8",
                "ok 5",
            ]
        );
        // In a comment it does no harm; at the very start or end, neither do the other lines.
        assert_eq!(outcomes(b"# \xfe\xff\nm f=1"), ["ok 2"]);
        assert_eq!(
            outcomes(b"\xff\nm f=1"),
            ["line 1, column 1: invalid UTF-8 (byte 0xff); line protocol must be UTF-8", "ok 2"]
        );
        assert_eq!(
            outcomes(b"m f=1\n\xff"),
            ["ok 1", "line 2, column 1: invalid UTF-8 (byte 0xff); line protocol must be UTF-8"]
        );
        // Right after a valid value, with no newline in between.
        assert_eq!(
            outcomes(b"m f=1\xff"),
            ["line 1, column 6: invalid UTF-8 (byte 0xff); line protocol must be UTF-8"]
        );
        assert_eq!(
            outcomes(b"m f=1\r\xff\nm f=2"),
            ["line 1, column 7: invalid UTF-8 (byte 0xff); line protocol must be UTF-8", "ok 2"]
        );
        // A syntax error before the bad byte: the bad byte still decides.
        assert_eq!(
            outcomes(b"m f=x \xff\nm f=2"),
            ["line 1, column 7: invalid UTF-8 (byte 0xff); line protocol must be UTF-8", "ok 2"]
        );
        // A truncated character at the end of the body.
        assert_eq!(
            outcomes(b"m f=\"\xe2\x82"),
            ["line 1, column 6: invalid UTF-8 (byte 0xe2); line protocol must be UTF-8"]
        );
    }

    #[test]
    fn invalid_utf8_after_a_multi_line_string() {
        let body = b"m s=\"a\nb\" 1\nm s=\"c\nd\xff\" 2\nm s=\"e\nf\" 3";
        assert_eq!(
            outcomes(body),
            ["ok 1", "line 4, column 2: invalid UTF-8 (byte 0xff); line protocol must be UTF-8", "ok 5"]
        );
        let lines: Vec<Line<'_>> = all(body, Precision::Nanoseconds).into_iter().filter_map(Result::ok).collect();
        assert_eq!(lines[1].fields[0].1, FieldValue::Str("e\nf".into()));
        assert_eq!(lines[1].timestamp, Some(3));
    }

    // ---- Iteration --------------------------------------------------------

    #[test]
    fn next_into_reuses_the_line() {
        let body = format!("{FLEET}\nbad\n{FLEET}\n");
        let mut lines = parse(body.as_bytes(), Precision::Nanoseconds);
        let mut line = Line::default();
        assert_eq!(lines.next_into(&mut line), Some(Ok(())));
        assert_eq!((line.tags.len(), line.fields.len(), line.line), (5, 7, 1));
        let capacity = (line.tags.capacity(), line.fields.capacity());
        assert!(matches!(lines.next_into(&mut line), Some(Err(LineError { line: 2, .. }))));
        assert_eq!(lines.next_into(&mut line), Some(Ok(())));
        assert_eq!(line, one(FLEET).into_owned().tap_line(3));
        assert_eq!((line.tags.capacity(), line.fields.capacity()), capacity);
        assert_eq!(lines.next_into(&mut line), None);
        assert_eq!(lines.next_into(&mut line), None);
        assert!(lines.next().is_none());
        assert!(format!("{lines:?}").starts_with("Lines {"));
    }

    impl Line<'_> {
        fn tap_line(mut self, line: usize) -> Self {
            self.line = line;
            self
        }
    }

    // ---- Printing ---------------------------------------------------------

    #[test]
    fn write_line_escapes_everything() {
        let line = Line {
            measurement: r"m ,=\x".into(),
            tags: vec![(r"k ,=".into(), r"v\,".into())],
            fields: vec![
                (r"f ,=".into(), FieldValue::Str("a\"b\\c\nd".into())),
                ("i".into(), FieldValue::I64(i64::MIN)),
                ("u".into(), FieldValue::U64(u64::MAX)),
                ("b".into(), FieldValue::Bool(false)),
                ("x".into(), FieldValue::F64(1e300)),
                ("y".into(), FieldValue::F64(-0.0)),
                ("z".into(), FieldValue::F64(52.31)),
            ],
            timestamp: Some(1_700_000_000_123_456_789),
            line: 1,
        };
        let text = written(&line, Precision::Nanoseconds);
        assert_eq!(
            text,
            r#"m\ \,=\x,k\ \,\==v\\, f\ \,\=="a\"b\\c"#.to_owned()
                + "\n"
                + r#"d",i=-9223372036854775808i,u=18446744073709551615u,b=false,x=1e300,y=-0.0,z=52.31 1700000000123456789"#
        );
        assert_eq!(normalize(&one(&text)), normalize(&line));
        assert!(written(&line, Precision::Seconds).ends_with(" 1700000000"));
        assert!(written(&line, Precision::Milliseconds).ends_with(" 1700000000123"));
        assert!(written(&line, Precision::Microseconds).ends_with(" 1700000000123456"));
        let mut no_ts = line.clone();
        no_ts.timestamp = None;
        assert!(written(&no_ts, Precision::Nanoseconds).ends_with("z=52.31"));
    }

    #[test]
    fn write_line_refuses_what_cannot_be_read_back() {
        let good = one("m,t=v f=1 1").into_owned();
        let cases: Vec<(Line<'static>, &str)> = vec![
            (Line { measurement: "".into(), ..good.clone() }, "measurement is empty"),
            (Line { measurement: "a\nb".into(), ..good.clone() }, "measurement `a\\nb` holds a newline"),
            (
                Line { measurement: "a\\".into(), ..good.clone() },
                "measurement `a\\` ends with a backslash, which would escape the delimiter after it",
            ),
            (
                Line { measurement: "#m".into(), ..good.clone() },
                "measurement `#m` starts with `#`, which makes the line a comment",
            ),
            (
                Line { measurement: "\tm".into(), ..good.clone() },
                "measurement `\\tm` starts with a tab, which reads as whitespace",
            ),
            (Line { tags: vec![("".into(), "v".into())], ..good.clone() }, "tag key is empty"),
            (Line { tags: vec![("k".into(), "".into())], ..good.clone() }, "tag value is empty"),
            (
                Line { tags: vec![("k".into(), "v".into()), ("k".into(), "w".into())], ..good.clone() },
                "duplicate tag key `k`",
            ),
            (Line { fields: vec![], ..good.clone() }, "a line needs at least one field"),
            (Line { fields: vec![("".into(), FieldValue::Bool(true))], ..good.clone() }, "field key is empty"),
            (
                Line { fields: vec![("\tf".into(), FieldValue::Bool(true))], ..good.clone() },
                "first field key `\\tf` starts with a tab, which reads as whitespace",
            ),
            (
                Line { fields: vec![("f".into(), FieldValue::F64(f64::NAN))], ..good.clone() },
                "field `f` is NaN, which line protocol cannot hold",
            ),
            (
                Line { fields: vec![("f".into(), FieldValue::F64(f64::NEG_INFINITY))], ..good.clone() },
                "field `f` is -inf, which line protocol cannot hold",
            ),
        ];
        for (line, want) in cases {
            let mut out = String::from("keep");
            let err = write_line(&line, Precision::Nanoseconds, &mut out).unwrap_err();
            assert_eq!(err.message, want);
            assert_eq!(err.to_string(), format!("cannot write line protocol: {want}"));
            assert_eq!(out, "keep", "output must be left unchanged");
        }
        // A tab is fine in a later field key, and `\` inside names is fine.
        let line = Line {
            measurement: r"a\b".into(),
            fields: vec![("f".into(), FieldValue::I64(1)), ("\tg\\h".into(), FieldValue::I64(2))],
            ..good
        };
        assert_eq!(normalize(&one(&written(&line, Precision::Nanoseconds))), normalize(&line));
    }

    #[test]
    fn write_then_parse_the_fleet_line() {
        let line = one(FLEET);
        assert_eq!(written(&line, Precision::Nanoseconds), FLEET);
    }

    // ---- Internals --------------------------------------------------------

    #[test]
    fn fast_float_path_agrees_with_std() {
        for text in ["0", "1", "52.31", "0.1", "9007199254740992", "9007199254740993", "123456789012345678", "0.000001"]
        {
            let std: f64 = text.parse().unwrap();
            if let Some(fast) = parse_f64_fast(text.as_bytes()) {
                assert_eq!(fast.to_bits(), std.to_bits(), "{text}");
            }
        }
        assert_eq!(parse_f64_fast(b"9007199254740993"), None, "above 2^53 goes to the slow path");
        assert_eq!(parse_f64_fast(b"1e5"), None);
    }

    #[test]
    fn line_end_follows_the_grammar() {
        let cases: &[(&[u8], usize)] = &[
            (b"m f=1\nx", 5),
            (b"m s=\"a\nb\" 1\nx", 11),
            (b"m s=\"a\\\"\nb\"\nx", 11),
            (b"m,t=\"a f=1\nx", 10),
            (b"m,t=\"a b=\"\nx", 12),
            (br#"m a\ b="x"#, 9),
            (b"m x=1,s=\"\n\"\n", 11),
            (b"m f\\==\"\n\"\n", 9),
            // The first backslash is literal and the second escapes `=`, so no value starts.
            (b"m f\\\\=\"\n\"\n", 7),
            (b"m\\\nx", 2),
            (b"m a=\"\n", 6),
        ];
        for &(body, want) in cases {
            assert_eq!(line_end(body, 0), want, "{:?}", String::from_utf8_lossy(body));
        }
    }

    // ---- Properties -------------------------------------------------------

    fn name_char() -> impl Strategy<Value = char> {
        prop_oneof![
            6 => prop::char::range('a', 'z'),
            3 => prop::sample::select(vec![
                ',', ' ', '=', '"', '\\', '#', '\t', '\r', '\n', 'é', '日', '🦀', '\u{0}', '\'', '.', '-', '0', '9'
            ]),
            1 => any::<char>(),
        ]
    }

    fn raw_name() -> impl Strategy<Value = String> {
        prop::collection::vec(name_char(), 0..8).prop_map(String::from_iter)
    }

    /// A name that line protocol can hold.
    fn name() -> impl Strategy<Value = String> {
        raw_name().prop_map(|s| {
            let mut s = s.replace('\n', "n");
            if s.is_empty() || s.ends_with('\\') {
                s.push('x');
            }
            s
        })
    }

    fn finite_f64() -> impl Strategy<Value = f64> {
        use prop::num::f64::{NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
        prop_oneof![
            4 => POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO,
            1 => POSITIVE | NEGATIVE | SUBNORMAL,
            1 => prop::sample::select(vec![
                0.0, -0.0, f64::MAX, f64::MIN, f64::MIN_POSITIVE, 5e-324, -5e-324, 1e22, 1e23,
            ]),
            2 => (-1_000_000i64..1_000_000).prop_map(|c| c as f64 / 100.0),
        ]
    }

    fn string_value() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                3 => any::<char>(),
                2 => prop::sample::select(vec!['"', '\\', '\n', '\r', ',', ' ', '=', '#']),
            ],
            0..12,
        )
        .prop_map(String::from_iter)
    }

    fn field_value() -> impl Strategy<Value = FieldValue<'static>> {
        prop_oneof![
            finite_f64().prop_map(FieldValue::F64),
            prop_oneof![any::<i64>(), Just(i64::MIN), Just(i64::MAX), Just(0), Just(-1)].prop_map(FieldValue::I64),
            prop_oneof![any::<u64>(), Just(u64::MAX), Just(0)].prop_map(FieldValue::U64),
            any::<bool>().prop_map(FieldValue::Bool),
            string_value().prop_map(|s| FieldValue::Str(Cow::Owned(s))),
        ]
    }

    fn precision() -> impl Strategy<Value = Precision> {
        prop::sample::select(vec![
            Precision::Nanoseconds,
            Precision::Microseconds,
            Precision::Milliseconds,
            Precision::Seconds,
        ])
    }

    /// A timestamp that `precision` represents exactly.
    fn timestamp(precision: Precision) -> impl Strategy<Value = Option<i64>> {
        let unit = precision.nanos_per_unit();
        prop_oneof![
            1 => Just(None),
            1 => prop::sample::select(vec![i64::MIN / unit, i64::MAX / unit, 0, -1]).prop_map(move |u| Some(u * unit)),
            4 => (i64::MIN / unit..=i64::MAX / unit).prop_map(move |u| Some(u * unit)),
        ]
    }

    /// A line that line protocol can hold, with timestamps exact in `precision`.
    fn line(precision: Precision) -> impl Strategy<Value = Line<'static>> {
        (
            name(),
            prop::collection::vec((name(), name()), 0..5),
            prop::collection::vec((name(), field_value()), 1..6),
            timestamp(precision),
        )
            .prop_map(|(measurement, tags, mut fields, timestamp)| {
                let mut measurement = measurement;
                if measurement.starts_with(['#', '\t']) {
                    measurement.insert(0, 'm');
                }
                let mut seen = std::collections::HashSet::new();
                let tags = tags.into_iter().filter(|(k, _)| seen.insert(k.clone())).map(|(k, v)| (k.into(), v.into()));
                if let Some((key, _)) = fields.first_mut()
                    && key.starts_with('\t')
                {
                    key.insert(0, 'k');
                }
                Line {
                    measurement: measurement.into(),
                    tags: tags.collect(),
                    fields: fields.into_iter().map(|(k, v)| (k.into(), v)).collect(),
                    timestamp,
                    line: 1,
                }
            })
    }

    /// Any line at all, including ones with no line-protocol form.
    fn raw_line() -> impl Strategy<Value = Line<'static>> {
        let value = prop_oneof![
            4 => field_value(),
            1 => prop::sample::select(vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY]).prop_map(FieldValue::F64),
        ];
        (
            raw_name(),
            prop::collection::vec((raw_name(), raw_name()), 0..4),
            prop::collection::vec((raw_name(), value), 0..4),
            prop::option::of(any::<i64>()),
        )
            .prop_map(|(measurement, tags, fields, timestamp)| Line {
                measurement: measurement.into(),
                tags: tags.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
                fields: fields.into_iter().map(|(k, v)| (k.into(), v)).collect(),
                timestamp,
                line: 1,
            })
    }

    /// Parses `text`, which must hold exactly one point.
    fn parse_one(text: &str, precision: Precision) -> Result<Line<'_>, TestCaseError> {
        let mut items = all(text.as_bytes(), precision);
        prop_assert_eq!(items.len(), 1, "{:?} gave {:?}", text, items);
        match items.pop() {
            Some(Ok(line)) => Ok(line),
            other => Err(TestCaseError::fail(format!("{text:?} gave {other:?}"))),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

        #[test]
        fn round_trip((precision, line) in precision().prop_flat_map(|p| (Just(p), line(p)))) {
            let text = written(&line, precision);
            let parsed = parse_one(&text, precision)?;
            prop_assert_eq!(normalize(&parsed), normalize(&line), "text: {:?}", text);
            // The recovery scanner finds the same end as the parser.
            let followed = format!("{text}\nnext f=1");
            prop_assert_eq!(line_end(followed.as_bytes(), 0), text.len(), "text: {:?}", text);
        }

        #[test]
        fn round_trip_many(
            lines in prop::collection::vec(line(Precision::Nanoseconds), 1..8),
            separators in prop::collection::vec(
                prop::sample::select(vec!["\n", "\r\n", "\n\n", "\n# a \"comment\n", "\n \t \r\n", "\n  "]), 8),
            invalid_utf8_around in any::<bool>(),
        ) {
            let mut body = String::new();
            let mut expected = Vec::new();
            for (line, separator) in lines.iter().zip(&separators) {
                let mut line = line.clone();
                line.line = body.matches('\n').count() + 1;
                write_line(&line, Precision::Nanoseconds, &mut body).unwrap();
                body.push_str(separator);
                expected.push(normalize(&line));
            }
            let mut bytes = body.clone().into_bytes();
            if invalid_utf8_around {
                // A bad line before and after exercises the slow path.
                bytes.splice(0..0, b"\xff\n".iter().copied());
                bytes.extend_from_slice(b"\n\xc0 f=1");
                for e in &mut expected {
                    e.4 += 1;
                }
            }
            let mut items: Vec<Result<Line<'_>, LineError>> = all(&bytes, Precision::Nanoseconds);
            if invalid_utf8_around {
                prop_assert!(items.first().is_some_and(Result::is_err));
                prop_assert!(items.last().is_some_and(Result::is_err));
                _ = items.remove(0);
                _ = items.pop();
            }
            let parsed: Vec<Normalized> = items.iter().map(|item| match item {
                Ok(line) => normalize(line),
                Err(e) => panic!("{e} in {body:?}"),
            }).collect();
            prop_assert_eq!(parsed, expected, "body: {:?}", body);
        }

        #[test]
        fn written_lines_always_read_back(line in raw_line(), precision in precision()) {
            let mut text = String::new();
            if write_line(&line, precision, &mut text).is_ok() {
                let parsed = parse_one(&text, precision)?;
                let mut line = line;
                line.timestamp = line.timestamp.map(|ts| precision.from_nanos(ts) * precision.nanos_per_unit());
                prop_assert_eq!(normalize(&parsed), normalize(&line), "text: {:?}", text);
            } else {
                prop_assert!(text.is_empty());
            }
        }

        #[test]
        fn floats_read_back_bit_for_bit(v in finite_f64()) {
            let fields = vec![("f".into(), FieldValue::F64(v))];
            let line = Line { measurement: "m".into(), fields, ..Line::default() };
            let text = written(&line, Precision::Nanoseconds);
            match parse_one(&text, Precision::Nanoseconds)?.fields[0].1 {
                FieldValue::F64(got) => prop_assert_eq!(got.to_bits(), v.to_bits(), "{}", text),
                ref other => prop_assert!(false, "{:?}", other),
            }
        }

        #[test]
        fn decimal_floats_match_std(text in "-?[0-9]{0,20}(\\.[0-9]{0,25})?([eE][+-]?[0-9]{1,3})?") {
            let std = text.parse::<f64>().ok().filter(|v| v.is_finite());
            let body = format!("m f={text}");
            let items = all(body.as_bytes(), Precision::Nanoseconds);
            match (&items[0], std) {
                (Ok(line), Some(want)) => match line.fields[0].1 {
                    FieldValue::F64(got) => prop_assert_eq!(got.to_bits(), want.to_bits(), "{}", text),
                    ref other => prop_assert!(false, "{:?}", other),
                },
                (Err(_), None) => {}
                (got, want) => prop_assert!(false, "{:?}: parsed {:?}, std {:?}", text, got, want),
            }
        }

        #[test]
        fn integers_match_std(v in any::<i64>(), u in any::<u64>()) {
            let text = format!("m i={v}i,u={u}u {v}");
            let line = parse_one(&text, Precision::Nanoseconds)?;
            prop_assert_eq!(&line.fields[0].1, &FieldValue::I64(v));
            prop_assert_eq!(&line.fields[1].1, &FieldValue::U64(u));
            prop_assert_eq!(line.timestamp, Some(v));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            check_any_input(&bytes)?;
        }

        #[test]
        fn line_protocol_shaped_bytes_never_panic(
            bytes in prop::collection::vec(
                prop_oneof![
                    1 => any::<u8>(),
                    8 => prop::sample::select(b" ,=\\\"\n\r\t#-.0123456789eEiutfTFam".to_vec()),
                ],
                0..300,
            )
        ) {
            check_any_input(&bytes)?;
        }
    }

    /// Whatever `bytes` hold: no panic, sane positions, the iterator and
    /// `next_into` agree, and every point read prints and reads back.
    fn check_any_input(bytes: &[u8]) -> Result<(), TestCaseError> {
        let physical_lines = count_newlines(bytes) + 1;
        let items = all(bytes, Precision::Nanoseconds);
        prop_assert!(items.len() <= physical_lines);
        let mut lines = parse(bytes, Precision::Nanoseconds);
        let mut reused = Line::default();
        for item in &items {
            match lines.next_into(&mut reused) {
                Some(Ok(())) => prop_assert_eq!(item.as_ref().ok(), Some(&reused)),
                Some(Err(e)) => prop_assert_eq!(item.as_ref().err(), Some(&e)),
                None => prop_assert!(false, "next_into ended early"),
            }
            match item {
                Ok(line) => {
                    prop_assert!((1..=physical_lines).contains(&line.line));
                    let text = written(line, Precision::Nanoseconds);
                    let mut again = parse_one(&text, Precision::Nanoseconds)?;
                    again.line = line.line;
                    prop_assert_eq!(normalize(&again), normalize(line), "text: {:?}", text);
                }
                Err(e) => {
                    prop_assert!((1..=physical_lines).contains(&e.line), "{}", e);
                    prop_assert!(e.column >= 1, "{}", e);
                }
            }
        }
        prop_assert!(lines.next_into(&mut reused).is_none());
        Ok(())
    }
}
