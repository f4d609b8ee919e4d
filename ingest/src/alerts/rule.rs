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
    /// Table the rule watches.
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
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    Threshold { field: String, op: Op, value: f64, alarm_points: u32, clear_points: u32 },
    Offline { after: Duration },
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
        if c.database.is_empty() || c.table.is_empty() {
            return Err(bad("`database` and `table` are required".into()));
        }
        let opt = |v: &Option<String>, what: &str| v.as_deref().map_or(Ok(Duration::ZERO), |s| duration(s, what));
        let for_ = opt(&c.for_, "for").map_err(bad)?;
        let keep_firing_for = opt(&c.keep_firing_for, "keep_firing_for").map_err(bad)?;
        let check = match c.kind {
            RuleKind::Threshold => {
                let field = c.field.clone().ok_or_else(|| bad("kind threshold needs `field`".into()))?;
                let op =
                    c.op.as_deref().ok_or_else(|| bad("kind threshold needs `op` (>, >=, <, <=, ==, !=)".into()))?;
                let op = Op::parse(op).ok_or_else(|| bad(format!("unknown op {op:?}; use >, >=, <, <=, == or !=")))?;
                let value = c
                    .value
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| bad("kind threshold needs a finite `value`".into()))?;
                if c.alarm_points == 0 || c.clear_points == 0 {
                    return Err(bad("alarm_points and clear_points must be at least 1".into()));
                }
                if c.after.is_some() {
                    return Err(bad("`after` belongs to kind offline".into()));
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
                if c.field.is_some() || c.op.is_some() || c.value.is_some() {
                    return Err(bad("`field`, `op` and `value` belong to kind threshold".into()));
                }
                Check::Offline { after }
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
