#![no_main]
//! Parses arbitrary bytes as line protocol and consumes every item. Nothing
//! may panic, and every point that parses must print with `write_line` and
//! parse back to the same point (floats compared bit for bit).

use libfuzzer_sys::fuzz_target;
use telemark_ingest::line_protocol::{FieldValue, Line, Precision, parse, write_line};

fuzz_target!(|data: &[u8]| {
    let mut text = String::new();
    for item in parse(data, Precision::Nanoseconds) {
        let Ok(line) = item else { continue };
        text.clear();
        if let Err(e) = write_line(&line, Precision::Nanoseconds, &mut text) {
            panic!("a parsed line must print, but {e}: {line:?}");
        }
        let mut again = parse(text.as_bytes(), Precision::Nanoseconds);
        let reparsed = match again.next() {
            Some(Ok(reparsed)) => reparsed,
            other => panic!("{line:?} printed as {text:?}, which reads back as {other:?}"),
        };
        assert!(again.next().is_none(), "{line:?} printed as {text:?}, which holds more than one point");
        assert!(same(&line, &reparsed), "{line:?} printed as {text:?}, which reads back as {reparsed:?}");
    }
});

/// Equal apart from `line` (the reparse starts at line 1), with floats
/// compared by their bits.
fn same(a: &Line<'_>, b: &Line<'_>) -> bool {
    a.measurement == b.measurement
        && a.tags == b.tags
        && a.timestamp == b.timestamp
        && a.fields.len() == b.fields.len()
        && a.fields.iter().zip(&b.fields).all(|((ka, va), (kb, vb))| {
            ka == kb
                && match (va, vb) {
                    (FieldValue::F64(x), FieldValue::F64(y)) => x.to_bits() == y.to_bits(),
                    _ => va == vb,
                }
        })
}
