//! JSON telemetry payloads: one object, or an array of objects, per message.
//!
//! Nested objects are flattened with `.` (`{"gps":{"lat":1}}` → `gps.lat`),
//! arrays of scalars with their index (`{"v":[1,2]}` → `v.0`, `v.1`);
//! `null` values are skipped. The time comes from a configured field (a
//! number in a unit, or an RFC 3339 string) or is the server's time.

use serde::Deserialize;
use serde_json::Value;

/// The unit of a numeric time field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeUnit {
    /// Guess from the magnitude: seconds below 10^11, milliseconds below
    /// 10^14, microseconds below 10^17, else nanoseconds (for dates between
    /// 1973 and 5138, each range is unambiguous).
    #[default]
    Auto,
    /// Seconds (fractions allowed).
    S,
    /// Milliseconds.
    Ms,
    /// Microseconds.
    Us,
    /// Nanoseconds.
    Ns,
}

impl TimeUnit {
    /// The concrete unit: `Auto` picks one by the magnitude of `v`.
    pub fn resolve(self, v: f64) -> TimeUnit {
        match self {
            TimeUnit::Auto => {
                let a = v.abs();
                if a < 1e11 {
                    TimeUnit::S
                } else if a < 1e14 {
                    TimeUnit::Ms
                } else if a < 1e17 {
                    TimeUnit::Us
                } else {
                    TimeUnit::Ns
                }
            }
            u => u,
        }
    }

    fn nanos_per_unit(self) -> i64 {
        match self {
            TimeUnit::S => 1_000_000_000,
            TimeUnit::Ms => 1_000_000,
            TimeUnit::Us => 1_000,
            TimeUnit::Ns | TimeUnit::Auto => 1,
        }
    }

    /// Converts an integer time in this unit to nanoseconds, exactly.
    pub fn int_to_nanos(self, v: i64) -> Option<i64> {
        #[expect(clippy::cast_precision_loss, reason = "only the magnitude picks the unit")]
        let unit = self.resolve(v as f64);
        v.checked_mul(unit.nanos_per_unit())
    }

    /// Converts a numeric time in this unit to nanoseconds since the epoch.
    pub fn to_nanos(self, v: f64) -> Option<i64> {
        if !v.is_finite() {
            return None;
        }
        #[expect(clippy::cast_precision_loss, reason = "scales are exact powers of ten below 2^53")]
        let ns = (v * self.resolve(v).nanos_per_unit() as f64).round();
        // 2^63 is the first f64 past i64::MAX, so compare strictly.
        const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
        if (-TWO_POW_63..TWO_POW_63).contains(&ns) {
            #[expect(clippy::cast_possible_truncation, reason = "range checked above")]
            Some(ns as i64)
        } else {
            None
        }
    }
}

/// A scalar taken from a payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// A JSON number, kept exact so integers stay integers where the table wants them.
    Number(serde_json::Number),
    /// A boolean.
    Bool(bool),
    /// A string.
    Str(String),
}

/// One row decoded from a payload, before it meets a table schema.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reading {
    /// Nanoseconds since the epoch, if the payload carried a time.
    pub time: Option<i64>,
    /// Flattened `(key, value)` pairs in payload order.
    pub values: Vec<(String, Scalar)>,
}

/// How to read a JSON payload.
#[derive(Debug, Clone, Default)]
pub struct JsonFormat {
    /// The key holding the row's time (after flattening), if any.
    pub time_field: Option<String>,
    /// Its unit when numeric.
    pub time_unit: TimeUnit,
}

/// Deepest nesting accepted; deeper payloads are refused rather than recursed into.
const MAX_DEPTH: usize = 16;

impl JsonFormat {
    /// Decodes a payload into readings, or says why it cannot be.
    pub fn decode(&self, payload: &[u8]) -> Result<Vec<Reading>, String> {
        let value: Value = serde_json::from_slice(payload).map_err(|e| format!("invalid JSON: {e}"))?;
        match value {
            Value::Object(_) => Ok(vec![self.reading(&value, None)?]),
            Value::Array(items) => {
                if items.is_empty() {
                    return Err("the JSON array holds no readings".into());
                }
                items.iter().enumerate().map(|(i, item)| self.reading(item, Some(i))).collect()
            }
            other => Err(format!("expected a JSON object or an array of objects, got {}", kind(&other))),
        }
    }

    fn reading(&self, value: &Value, index: Option<usize>) -> Result<Reading, String> {
        let at = |msg: String| match index {
            Some(i) => format!("reading {i} of the array: {msg}"),
            None => msg,
        };
        if !value.is_object() {
            return Err(at(format!("expected an object, got {}", kind(value))));
        }
        let mut reading = Reading::default();
        let mut prefix = String::new();
        flatten(value, &mut prefix, 0, &mut reading.values).map_err(at)?;
        if let Some(field) = &self.time_field
            && let Some(pos) = reading.values.iter().position(|(k, _)| k == field)
        {
            let (_, v) = reading.values.remove(pos);
            reading.time = Some(self.parse_time(field, &v).map_err(at)?);
        }
        if reading.values.is_empty() {
            return Err(at("the reading has no values".into()));
        }
        Ok(reading)
    }

    fn parse_time(&self, field: &str, v: &Scalar) -> Result<i64, String> {
        match v {
            Scalar::Number(n) => {
                let ns = match n.as_i64() {
                    Some(i) => self.time_unit.int_to_nanos(i),
                    None => n.as_f64().and_then(|f| self.time_unit.to_nanos(f)),
                };
                ns.ok_or_else(|| format!("time field `{field}` = {n} is out of range"))
            }
            Scalar::Str(s) => chrono::DateTime::parse_from_rfc3339(s)
                .ok()
                .and_then(|t| t.timestamp_nanos_opt())
                .ok_or_else(|| format!("time field `{field}` = {s:?} is not an RFC 3339 time")),
            Scalar::Bool(b) => {
                Err(format!("time field `{field}` is a boolean ({b}), expected a number or RFC 3339 string"))
            }
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn flatten(value: &Value, prefix: &mut String, depth: usize, out: &mut Vec<(String, Scalar)>) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("`{prefix}` is nested deeper than {MAX_DEPTH} levels"));
    }
    let mut child = |key: &str, v: &Value, out: &mut Vec<(String, Scalar)>| {
        let len = prefix.len();
        if !prefix.is_empty() {
            prefix.push('.');
        }
        prefix.push_str(key);
        let r = flatten(v, prefix, depth + 1, out);
        prefix.truncate(len);
        r
    };
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k.is_empty() {
                    return Err(format!("an empty key inside `{prefix}`"));
                }
                child(k, v, out)?;
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                child(&i.to_string(), v, out)?;
            }
        }
        Value::Null => {}
        Value::Bool(b) => out.push((prefix.clone(), Scalar::Bool(*b))),
        Value::Number(n) => out.push((prefix.clone(), Scalar::Number(n.clone()))),
        Value::String(s) => out.push((prefix.clone(), Scalar::Str(s.clone()))),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(time_field: &str) -> JsonFormat {
        JsonFormat { time_field: Some(time_field.into()), time_unit: TimeUnit::Auto }
    }

    #[test]
    fn the_readme_payload() {
        let r = fmt("timestamp")
            .decode(br#"{"deviceId":"sensor-001","timestamp":1733000000,"temp":72.4,"humidity":34,"battery":89}"#)
            .unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].time, Some(1_733_000_000_000_000_000));
        let keys: Vec<&str> = r[0].values.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["deviceId", "temp", "humidity", "battery"]);
    }

    #[test]
    fn nesting_arrays_and_units() {
        let r = fmt("ts").decode(br#"[{"ts":1733000000123,"gps":{"lat":1.5,"lon":2},"v":[1,null,true]},{"ts":"2024-12-01T00:00:00Z","x":1}]"#).unwrap();
        assert_eq!(r[0].time, Some(1_733_000_000_123_000_000));
        let keys: Vec<&str> = r[0].values.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["gps.lat", "gps.lon", "v.0", "v.2"]);
        assert_eq!(r[1].time, Some(1_733_011_200_000_000_000));
        let ms = JsonFormat { time_field: Some("t".into()), time_unit: TimeUnit::Ms };
        assert_eq!(ms.decode(br#"{"t":5,"a":1}"#).unwrap()[0].time, Some(5_000_000));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let f = fmt("timestamp");
        assert!(f.decode(b"{").unwrap_err().starts_with("invalid JSON"));
        assert_eq!(f.decode(b"42").unwrap_err(), "expected a JSON object or an array of objects, got a number");
        assert_eq!(f.decode(b"[1]").unwrap_err(), "reading 0 of the array: expected an object, got a number");
        assert_eq!(f.decode(br#"{"timestamp":1}"#).unwrap_err(), "the reading has no values");
        assert!(f.decode(br#"{"timestamp":"soon","a":1}"#).unwrap_err().contains("RFC 3339"));
        assert!(f.decode(br#"{"timestamp":1e300,"a":1}"#).unwrap_err().contains("out of range"));
        let deep = format!("{}1{}", r#"{"a":"#.repeat(40), "}".repeat(40));
        assert!(f.decode(deep.as_bytes()).unwrap_err().contains("nested deeper"));
    }

    #[test]
    fn auto_units() {
        assert_eq!(TimeUnit::Auto.to_nanos(1.7e9), Some(1_700_000_000_000_000_000));
        assert_eq!(TimeUnit::Auto.to_nanos(1.7e12), Some(1_700_000_000_000_000_000));
        assert_eq!(TimeUnit::Auto.to_nanos(1.7e15), Some(1_700_000_000_000_000_000));
        assert_eq!(TimeUnit::Auto.to_nanos(1.7e18), Some(1_700_000_000_000_000_000));
        assert_eq!(TimeUnit::Ns.to_nanos(1e19), None);
        assert_eq!(TimeUnit::S.to_nanos(f64::NAN), None);
    }
}
