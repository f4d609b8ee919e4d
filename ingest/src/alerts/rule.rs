//! Alert rules: their configuration (the same in the config file and over
//! HTTP) and the checked form the evaluator uses.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One `[[alert.rule]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique name; also the `alertname` label.
    pub name: String,
    /// Database the rule watches.
    pub database: String,
    /// Table the rule watches (not for kind `sql`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub table: String,
    /// `threshold` or `offline`.
    pub kind: RuleKind,
    /// How long the condition must hold before the alert fires (pending
    /// until then). Default: 0 (fires at once).
    #[serde(rename = "for", default, skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
    /// How long a firing alert keeps firing after its condition clears. Default: 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_firing_for: Option<String>,
    /// `threshold`: the field compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// `threshold`: `>`, `>=`, `<`, `<=`, `==` or `!=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
    /// `threshold`: the value compared against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// `threshold`: consecutive matching points that make the condition true. Default 1.
    #[serde(default = "one")]
    pub alarm_points: u32,
    /// `threshold`: consecutive non-matching points that clear it. Default 1.
    #[serde(default = "one")]
    pub clear_points: u32,
    /// `offline`: a device not seen for this long is offline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// `sql`: the query; each row is an instance (string columns are its
    /// labels, the first numeric column its value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// `sql`: how often it runs. Default `1m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// `sql`: `now()` in the query is the wall clock minus this, so late rows
    /// arrive before a window is judged. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_delay: Option<String>,
    /// `anomaly`: `flatline`, `rate`, `zscore` or `message_rate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detector: Option<String>,
    /// `anomaly` `flatline`: the same value for at least this long (data time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stuck_for: Option<String>,
    /// `anomaly` `rate` and `message_rate`: the window (data time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// `anomaly` `zscore`: the EWMA smoothing factor, in (0, 1]. Default 0.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// `anomaly` `zscore`: points before it judges anything. Default 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<u32>,
    /// `anomaly` `zscore`: |z| above this is anomalous. Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<f64>,
    /// The tag naming the device; an instance per value. Default `device_id`;
    /// rows without it are grouped by their whole tag set.
    #[serde(default = "device_tag")]
    pub device_tag: String,
    /// Labels added to every instance.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations; `{{ $value }}` and `{{ $labels.NAME }}` are replaced.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Where notifications go: `mqtt` and webhook names. Default: every sink.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sinks: Vec<String>,
}

fn one() -> u32 {
    1
}

fn device_tag() -> String {
    "device_id".into()
}

/// What a rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleKind {
    /// A field compared with a value on every row, as rows arrive.
    Threshold,
    /// A device that sent nothing for `after`.
    Offline,
    /// A detector on a field (or the message rate), as rows arrive.
    Anomaly,
    /// A SQL query run every `every`: a row present = the condition holds.
    Sql,
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "<" => Op::Lt,
            "<=" => Op::Le,
            "==" | "=" => Op::Eq,
            "!=" | "<>" => Op::Ne,
            _ => return None,
        })
    }

    /// `value OP threshold`.
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Gt => value > threshold,
            Op::Ge => value >= threshold,
            Op::Lt => value < threshold,
            Op::Le => value <= threshold,
            Op::Eq => value == threshold,
            Op::Ne => value != threshold,
        }
    }
}

/// A checked rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub config: RuleConfig,
    pub for_: Duration,
    pub keep_firing_for: Duration,
    pub check: Check,
}

/// What makes a rule's condition true.
#[derive(Debug, Clone)]
pub enum Check {
    /// Per row: `field OP value`, with consecutive points to alarm and to clear.
    Threshold {
        field: String,
        op: Op,
        value: f64,
        alarm_points: u32,
        clear_points: u32,
    },
    Offline {
        after: Duration,
    },
    /// Per row: a detector on `field` (empty for `message_rate`), with the same hysteresis.
    Anomaly {
        field: String,
        detector: Detector,
        alarm_points: u32,
        clear_points: u32,
    },
    /// A query run every `every`, with `now()` = the wall clock − `delay`.
    Sql {
        query: String,
        every: Duration,
        delay: Duration,
    },
}

/// An anomaly detector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Detector {
    /// The same value for at least `stuck_ns` of data time (a stuck sensor).
    Flatline { stuck_ns: i64 },
    /// Change per second against the oldest point within `window_ns`, compared by `op` with `value`.
    Rate { window_ns: i64, op: Op, value: f64 },
    /// Rows within `window_ns`, compared by `op` with `value` (Device Defender's message count).
    MessageRate { window_ns: i64, op: Op, value: f64 },
    /// EWMA z-score: |value − mean| / stddev above `k` after `warmup` points.
    ZScore { alpha: f64, warmup: u32, k: f64 },
}

/// Parses a duration like `5m`; `0` and `0s` are zero.
pub fn duration(text: &str, what: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t == "0" || t == "0s" {
        return Ok(Duration::ZERO);
    }
    telemark_engine::parse_duration(t).map_err(|e| format!("{what}: {e}"))
}

impl Rule {
    /// Checks a configuration; the error names the rule and the field.
    pub fn compile(config: &RuleConfig) -> Result<Rule, String> {
        let c = config;
        let bad = |why: String| format!("alert rule {:?}: {why}", c.name);
        if c.name.is_empty() || c.name.contains(['/', '+', '#']) || c.name.chars().any(char::is_control) {
            return Err(bad("the name must be non-empty, without '/', '+', '#' or control characters".into()));
        }
        if c.database.is_empty() {
            return Err(bad("`database` is required".into()));
        }
        if c.table.is_empty() != (c.kind == RuleKind::Sql) {
            return Err(bad(if c.kind == RuleKind::Sql {
                "kind sql takes no `table`: its query names what it reads".into()
            } else {
                "`table` is required".into()
            }));
        }
        if c.kind != RuleKind::Sql && (c.query.is_some() || c.every.is_some() || c.eval_delay.is_some()) {
            return Err(bad("`query`, `every` and `eval_delay` belong to kind sql".into()));
        }
        let opt = |v: &Option<String>, what: &str| v.as_deref().map_or(Ok(Duration::ZERO), |s| duration(s, what));
        let for_ = opt(&c.for_, "for").map_err(bad)?;
        let keep_firing_for = opt(&c.keep_firing_for, "keep_firing_for").map_err(bad)?;
        let nanos = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        let positive = |v: &Option<String>, what: &str| -> Result<i64, String> {
            let text = v.as_deref().ok_or_else(|| bad(format!("this detector needs `{what}` (e.g. \"10m\")")))?;
            let d = duration(text, what).map_err(bad)?;
            if d.is_zero() {
                return Err(bad(format!("`{what}` must be more than zero")));
            }
            Ok(nanos(d))
        };
        let comparison = |what: &str| -> Result<(Op, f64), String> {
            let op = c.op.as_deref().ok_or_else(|| bad(format!("{what} needs `op` (>, >=, <, <=, ==, !=)")))?;
            let op = Op::parse(op).ok_or_else(|| bad(format!("unknown op {op:?}; use >, >=, <, <=, == or !=")))?;
            let value =
                c.value.filter(|v| v.is_finite()).ok_or_else(|| bad(format!("{what} needs a finite `value`")))?;
            Ok((op, value))
        };
        if c.alarm_points == 0 || c.clear_points == 0 {
            return Err(bad("alarm_points and clear_points must be at least 1".into()));
        }
        let check = match c.kind {
            RuleKind::Threshold => {
                let field = c.field.clone().ok_or_else(|| bad("kind threshold needs `field`".into()))?;
                let (op, value) = comparison("kind threshold")?;
                if c.after.is_some() || c.detector.is_some() {
                    return Err(bad("`after` and `detector` do not belong to kind threshold".into()));
                }
                Check::Threshold { field, op, value, alarm_points: c.alarm_points, clear_points: c.clear_points }
            }
            RuleKind::Offline => {
                let after =
                    c.after.as_deref().ok_or_else(|| bad("kind offline needs `after` (e.g. \"10m\")".into()))?;
                let after = duration(after, "after").map_err(bad)?;
                if after.is_zero() {
                    return Err(bad("`after` must be more than zero".into()));
                }
                if c.field.is_some() || c.op.is_some() || c.value.is_some() || c.detector.is_some() {
                    return Err(bad("`field`, `op`, `value` and `detector` do not belong to kind offline".into()));
                }
                Check::Offline { after }
            }
            RuleKind::Sql => {
                let query = c.query.clone().filter(|q| !q.trim().is_empty());
                let query = query.ok_or_else(|| bad("kind sql needs `query`".into()))?;
                let every = duration(c.every.as_deref().unwrap_or("1m"), "every").map_err(bad)?;
                if every < Duration::from_secs(1) {
                    return Err(bad("`every` must be at least 1s".into()));
                }
                let delay =
                    c.eval_delay.as_deref().map_or(Ok(Duration::ZERO), |d| duration(d, "eval_delay")).map_err(bad)?;
                if c.field.is_some() || c.op.is_some() || c.value.is_some() || c.detector.is_some() || c.after.is_some()
                {
                    return Err(bad(
                        "kind sql puts its condition in `query` (no field, op, value, detector or after)".into()
                    ));
                }
                Check::Sql { query, every, delay }
            }
            RuleKind::Anomaly => {
                let name = c.detector.as_deref().ok_or_else(|| {
                    bad("kind anomaly needs `detector`: flatline, rate, zscore or message_rate".into())
                })?;
                let field = || c.field.clone().ok_or_else(|| bad(format!("detector {name} needs `field`")));
                let (field, detector) = match name {
                    "flatline" => (field()?, Detector::Flatline { stuck_ns: positive(&c.stuck_for, "stuck_for")? }),
                    "rate" => {
                        let (op, value) = comparison("detector rate")?;
                        (field()?, Detector::Rate { window_ns: positive(&c.window, "window")?, op, value })
                    }
                    "message_rate" => {
                        let (op, value) = comparison("detector message_rate")?;
                        (String::new(), Detector::MessageRate { window_ns: positive(&c.window, "window")?, op, value })
                    }
                    "zscore" => {
                        let alpha = c.alpha.unwrap_or(0.1);
                        if !(alpha > 0.0 && alpha <= 1.0) {
                            return Err(bad(format!("alpha {alpha} is not in (0, 1]")));
                        }
                        let k = c.k.unwrap_or(3.0);
                        if !(k.is_finite() && k > 0.0) {
                            return Err(bad(format!("k {k} must be a positive number")));
                        }
                        (field()?, Detector::ZScore { alpha, warmup: c.warmup.unwrap_or(30).max(2), k })
                    }
                    other => {
                        return Err(bad(format!(
                            "unknown detector {other:?}; use flatline, rate, zscore or message_rate"
                        )));
                    }
                };
                Check::Anomaly { field, detector, alarm_points: c.alarm_points, clear_points: c.clear_points }
            }
        };
        Ok(Rule { config: c.clone(), for_, keep_firing_for, check })
    }
}

/// Replaces `{{ $value }}` and `{{ $labels.NAME }}` (spaces optional) in `template`.
pub fn render(template: &str, labels: &BTreeMap<String, String>, value: f64) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = rest[start + 2..start + len].trim();
        if inner == "$value" {
            out.push_str(&format_value(value));
        } else if let Some(name) = inner.strip_prefix("$labels.") {
            out.push_str(labels.get(name.trim()).map_or("", String::as_str));
        } else {
            out.push_str(&rest[start..start + len + 2]);
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { format!("{v}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn threshold() -> RuleConfig {
        serde_json::from_value(serde_json::json!({
            "name": "hot", "database": "fleet", "table": "readings", "kind": "threshold",
            "field": "temp", "op": ">", "value": 30.0, "for": "5m"
        }))
        .unwrap()
    }

    #[test]
    fn rules_are_checked_with_clear_errors() {
        let r = Rule::compile(&threshold()).unwrap();
        assert_eq!(r.for_, Duration::from_secs(300));
        let mut c = threshold();
        c.op = Some("=>".into());
        let e = Rule::compile(&c).unwrap_err();
        assert!(e.contains("\"hot\"") && e.contains("unknown op"), "{e}");
        let mut c = threshold();
        c.kind = RuleKind::Offline;
        let e = Rule::compile(&c).unwrap_err();
        assert!(e.contains("needs `after`"), "{e}");
        let mut c = threshold();
        c.name = "a/b".into();
        assert!(Rule::compile(&c).unwrap_err().contains("name"));
        let mut c = threshold();
        c.for_ = Some("5 minutes".into());
        assert!(Rule::compile(&c).unwrap_err().contains("for:"));
    }

    #[test]
    fn templates() {
        let labels = BTreeMap::from([("device_id".to_string(), "t-1".to_string())]);
        assert_eq!(render("{{ $labels.device_id }} at {{$value}}°C", &labels, 31.5), "t-1 at 31.5°C");
        assert_eq!(render("{{ $value }} {{ $labels.nope }}|{{ other }}|{{", &labels, 30.0), "30 |{{ other }}|{{");
    }
}
