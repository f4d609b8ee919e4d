//! Topic rules: which messages are stored, where, and how their payloads
//! are read (the rules engine).
//!
//! ```toml
//! [[mqtt.rule]]
//! topic = "fleet/{fleet}/{device_id}/readings"   # `{name}` captures a level as a tag
//! database = "fleet"
//! table = "readings"
//! format = "json"              # json | line_protocol | number
//! time_field = "timestamp"     # unit: time_unit = "auto" | "s" | "ms" | "us" | "ns"
//! tags = { site = "plant-1" }  # static tags
//! identity = "device_id"       # the `{device_id}` level must be the publisher's identity
//! ```
//!
//! Every rule whose topic matches a message applies to it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use telemark_engine::{FieldType, FieldValue, WriteBatch};

use crate::json::{JsonFormat, Reading, Scalar, TimeUnit};
use crate::line_protocol::Precision;
use crate::select::{Origin, SelectRule};
use crate::topic::TopicTemplate;

/// The table rejected payloads are stored in, in the rule's database.
pub const REJECTED_TABLE: &str = "_rejected";
/// How much of a rejected payload is kept.
pub const REJECTED_PAYLOAD_BYTES: usize = 256;

/// How a payload is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadFormat {
    /// A JSON object or an array of objects.
    #[default]
    Json,
    /// InfluxDB line protocol; the measurement names the table unless `table` is set.
    LineProtocol,
    /// A bare number (or `true`/`false`); the field is named by `field`, else the last topic level.
    Number,
}

/// One `[[mqtt.rule]]` as configured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicRuleConfig {
    /// Topic template, e.g. `fleet/{fleet}/{device_id}/readings` (or give `sql`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// AWS IoT-style statement `SELECT … FROM 'topic' WHERE …` instead of `topic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// Target database; may use `{capture}`.
    pub database: String,
    /// Target table; may use `{capture}`. Required except for line protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// Payload format.
    #[serde(default)]
    pub format: PayloadFormat,
    /// Static tags added to every row.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// JSON keys stored as tags instead of fields.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tag_keys: Vec<String>,
    /// JSON key holding the time; without it rows get the server's time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_field: Option<String>,
    /// Unit of a numeric `time_field`.
    #[serde(default)]
    pub time_unit: TimeUnit,
    /// Line protocol timestamp precision: ns, us, ms or s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<String>,
    /// Field name for the `number` format (default: the last topic level).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// A capture that must equal the publisher's identity (certificate CN/SAN
    /// or MQTT client id); other publishes to the topic are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct TopicRule {
    template: TopicTemplate,
    select: Option<SelectRule>,
    database: String,
    table: Option<String>,
    format: PayloadFormat,
    static_tags: Vec<(String, String)>,
    tag_keys: Vec<String>,
    json: JsonFormat,
    precision: Precision,
    field: Option<String>,
    identity: Option<String>,
}

/// Who published a message, where, and when it arrived.
#[derive(Debug, Clone, Copy)]
pub struct Publish<'a> {
    /// The topic name.
    pub topic: &'a str,
    /// The payload.
    pub payload: &'a [u8],
    /// MQTT client id.
    pub client_id: &'a str,
    /// The authenticated device identity (certificate CN/SAN, else client id), if any.
    pub identity: Option<&'a str>,
    /// Server time, nanoseconds since the epoch.
    pub now_ns: i64,
}

/// The stored type of a column, so numbers from JSON keep the table's type.
pub trait ColumnTypes {
    /// The field type of `database.table.column`, if it exists.
    fn field_type(&self, database: &str, table: &str, column: &str) -> Option<FieldType>;
}

impl ColumnTypes for telemark_engine::Database {
    fn field_type(&self, database: &str, table: &str, column: &str) -> Option<FieldType> {
        match self.column_kind(database, table, column) {
            Some(telemark_engine::ColumnKind::Field(t)) => Some(t),
            _ => None,
        }
    }
}

/// Rows for one database produced by the rules from one message.
#[derive(Debug)]
pub struct RuleWrite {
    /// Target database.
    pub database: String,
    /// One batch per table.
    pub batches: Vec<WriteBatch>,
}

/// What the rules made of one message.
#[derive(Debug, Default)]
pub struct Routed {
    /// Rows to store.
    pub writes: Vec<RuleWrite>,
    /// Payloads a matching rule could not decode: `(database, reason)`.
    pub rejections: Vec<(String, String)>,
    /// Readings a rule's WHERE dropped.
    pub filtered: usize,
    /// Number of rules that matched.
    pub matched: usize,
}

/// A publish the policy forbids.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyViolation(pub String);

/// The configured rules.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<TopicRule>,
}

fn substitute(template: &str, captures: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (name, value) in captures {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

impl TopicRule {
    /// Compiles a configured rule; `n` (from 1) names it in errors.
    pub fn compile(n: usize, c: &TopicRuleConfig) -> Result<TopicRule, String> {
        let at = |m: String| format!("mqtt rule {n}: {m}");
        let (topic, select) = match (&c.topic, &c.sql) {
            (Some(t), None) => (t.clone(), None),
            (None, Some(sql)) => {
                let s = SelectRule::parse(sql).map_err(at)?;
                (s.topic().to_string(), Some(s))
            }
            (Some(_), Some(_)) => return Err(at("give `topic` or `sql`, not both".into())),
            (None, None) => return Err(at("`topic` (or `sql`) is required".into())),
        };
        let template = TopicTemplate::parse(&topic).map_err(|e| at(e.to_string()))?;
        let captures: Vec<&str> = template.captures().collect();
        let unknown = |s: &str| -> Option<String> {
            let mut rest = s;
            while let Some(open) = rest.find('{') {
                let close = rest.get(open..)?.find('}')? + open;
                let name = rest.get(open + 1..close)?;
                if !captures.contains(&name) {
                    return Some(name.to_string());
                }
                rest = rest.get(close + 1..)?;
            }
            None
        };
        for (what, s) in [("database", Some(&c.database)), ("table", c.table.as_ref())] {
            if let Some(s) = s
                && let Some(name) = unknown(s)
            {
                return Err(at(format!("{what} `{s}` uses `{{{name}}}`, which the topic `{topic}` does not capture")));
            }
        }
        if !c.database.contains('{') {
            telemark_engine::validate_database_name(&c.database).map_err(|e| at(e.to_string()))?;
        }
        if c.table.is_none() && c.format != PayloadFormat::LineProtocol {
            return Err(at("`table` is required unless format = \"line_protocol\"".into()));
        }
        if select.is_some() && c.format != PayloadFormat::Json {
            return Err(at("`sql` rules read JSON payloads; drop `format` or use `topic`".into()));
        }
        if let Some(id) = &c.identity
            && !captures.contains(&id.as_str())
        {
            return Err(at(format!(
                "identity `{id}` is not a capture of the topic `{topic}`; write it as `{{{id}}}` in the topic"
            )));
        }
        let precision = match &c.precision {
            None => Precision::Nanoseconds,
            Some(p) => Precision::parse(p).ok_or_else(|| at(format!("precision `{p}`: expected ns, us, ms or s")))?,
        };
        Ok(TopicRule {
            template,
            select,
            database: c.database.clone(),
            table: c.table.clone(),
            format: c.format,
            static_tags: c.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            tag_keys: c.tag_keys.clone(),
            json: JsonFormat { time_field: c.time_field.clone(), time_unit: c.time_unit },
            precision,
            field: c.field.clone(),
            identity: c.identity.clone(),
        })
    }

    /// The topic filter to subscribe to on a broker.
    pub fn filter(&self) -> String {
        self.template.filter()
    }

    /// The rows this rule makes of a message whose topic it matched.
    fn apply(
        &self,
        p: &Publish<'_>,
        captures: &[(&str, &str)],
        types: &dyn ColumnTypes,
        routed: &mut Routed,
    ) -> Result<Option<RuleWrite>, (String, String)> {
        let database = substitute(&self.database, captures);
        let fail = |reason: String| (database.clone(), reason);
        telemark_engine::validate_database_name(&database).map_err(|e| fail(e.to_string()))?;
        let used_in_names = |name: &str| {
            let pat = format!("{{{name}}}");
            self.database.contains(&pat) || self.table.as_ref().is_some_and(|t| t.contains(&pat))
        };
        let mut tags: Vec<(&str, &str)> = self.static_tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        tags.extend(captures.iter().filter(|(k, _)| !used_in_names(k)).copied());
        let table = self.table.as_ref().map(|t| substitute(t, captures));
        let batches = match self.format {
            PayloadFormat::LineProtocol => {
                let body = crate::lines::parse_body(p.payload, self.precision, p.now_ns, &tags);
                if let Some(e) = body.errors.first() {
                    return Err(fail(format!("line protocol: {e}")));
                }
                let mut batches: Vec<WriteBatch> = body.tables.into_iter().map(|t| t.batch).collect();
                if let Some(table) = &table {
                    batches = batches.into_iter().map(|b| rename(b, table)).collect();
                }
                batches
            }
            PayloadFormat::Number => {
                let text = std::str::from_utf8(p.payload).map_err(|_| fail("payload is not UTF-8 text".into()))?.trim();
                let value = match text {
                    "true" => FieldValue::Bool(true),
                    "false" => FieldValue::Bool(false),
                    _ => match text.parse::<i64>() {
                        Ok(i)
                            if types.field_type(&database, table.as_deref().unwrap_or(""), self.number_field(p))
                                == Some(FieldType::I64) =>
                        {
                            FieldValue::I64(i)
                        }
                        _ => FieldValue::F64(
                            text.parse::<f64>()
                                .ok()
                                .filter(|f| f.is_finite())
                                .ok_or_else(|| fail(format!("payload {:?} is not a number", preview(p.payload))))?,
                        ),
                    },
                };
                let mut batch = WriteBatch::new(table.clone().unwrap_or_default());
                let mut row = batch.row(p.now_ns);
                for (k, v) in &tags {
                    row = row.tag(k, *v);
                }
                let _ = row.field(self.number_field(p), value);
                vec![batch]
            }
            PayloadFormat::Json => {
                let table = table.unwrap_or_default();
                let readings = self.json.decode(p.payload).map_err(fail)?;
                let mut batch = WriteBatch::new(table.as_str());
                let origin = Origin { topic: p.topic, client_id: p.client_id, now_ns: p.now_ns };
                for Reading { time, values } in readings {
                    let values = match &self.select {
                        None => values,
                        Some(s) => match s.apply(&values, &origin).map_err(&fail)? {
                            Some(v) => v,
                            None => {
                                routed.filtered += 1;
                                continue;
                            }
                        },
                    };
                    let mut row = batch.row(time.unwrap_or(p.now_ns));
                    for (k, v) in &tags {
                        row = row.tag(k, *v);
                    }
                    for (k, v) in values {
                        if self.tag_keys.contains(&k) {
                            row = row.tag(&k, scalar_text(v));
                            continue;
                        }
                        let value = match v {
                            Scalar::Bool(b) => FieldValue::Bool(b),
                            Scalar::Str(s) => FieldValue::Str(s),
                            Scalar::Number(n) => number(&n, types.field_type(&database, &table, &k)),
                        };
                        row = row.field(&k, value);
                    }
                }
                if batch.is_empty() {
                    return Ok(None);
                }
                vec![batch]
            }
        };
        Ok(Some(RuleWrite { database, batches }))
    }

    fn number_field<'a>(&'a self, p: &Publish<'a>) -> &'a str {
        self.field.as_deref().unwrap_or_else(|| p.topic.rsplit('/').next().unwrap_or("value"))
    }
}

fn rename(batch: WriteBatch, table: &str) -> WriteBatch {
    let mut b = batch;
    b.set_table(table);
    b
}

fn scalar_text(v: Scalar) -> String {
    match v {
        Scalar::Number(n) => n.to_string(),
        Scalar::Bool(b) => b.to_string(),
        Scalar::Str(s) => s,
    }
}

/// A JSON number as the table's column type where that keeps it exact, else a float.
fn number(n: &serde_json::Number, stored: Option<FieldType>) -> FieldValue {
    match stored {
        Some(FieldType::I64) if n.is_i64() => FieldValue::I64(n.as_i64().unwrap_or_default()),
        Some(FieldType::U64) if n.is_u64() => FieldValue::U64(n.as_u64().unwrap_or_default()),
        _ => FieldValue::F64(n.as_f64().unwrap_or(f64::NAN)),
    }
}

/// The first bytes of a payload as text, for logs and the `_rejected` table.
pub fn preview(payload: &[u8]) -> String {
    let cut = payload.get(..REJECTED_PAYLOAD_BYTES).unwrap_or(payload);
    let mut s = String::new();
    for chunk in cut.utf8_chunks() {
        s.push_str(chunk.valid());
        for b in chunk.invalid() {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    if payload.len() > cut.len() {
        s.push('…');
    }
    s
}

impl RuleSet {
    /// Compiles the configured rules.
    pub fn compile(configs: &[TopicRuleConfig]) -> Result<RuleSet, String> {
        let rules = configs.iter().enumerate().map(|(i, c)| TopicRule::compile(i + 1, c)).collect::<Result<_, _>>()?;
        Ok(RuleSet { rules })
    }

    /// True if no rules are configured.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The topic filters of all rules, for subscribing to a broker.
    pub fn filters(&self) -> Vec<String> {
        let mut f: Vec<String> = self.rules.iter().map(TopicRule::filter).collect();
        f.dedup();
        f
    }

    /// Checks the identity policies of the rules matching the topic. Without
    /// an identity (messages from a bridged broker, which authenticated its
    /// publishers itself) there is nothing to check.
    pub fn check_policy(&self, topic: &str, identity: Option<&str>) -> Result<(), PolicyViolation> {
        let Some(identity) = identity else { return Ok(()) };
        for rule in &self.rules {
            let Some(id_capture) = &rule.identity else { continue };
            let Some(captures) = rule.template.capture(topic) else { continue };
            let level = captures.iter().find(|(k, _)| k == id_capture).map(|(_, v)| *v);
            if level != Some(identity) {
                return Err(PolicyViolation(format!(
                    "device `{identity}` may not publish to `{topic}`: rule topic `{}` requires `{{{id_capture}}}` to be the device's own identity",
                    rule.template
                )));
            }
        }
        Ok(())
    }

    /// Applies every matching rule to a message.
    pub fn route(&self, p: &Publish<'_>, types: &dyn ColumnTypes) -> Routed {
        let mut routed = Routed::default();
        for rule in &self.rules {
            let Some(captures) = rule.template.capture(p.topic) else { continue };
            routed.matched += 1;
            match rule.apply(p, &captures, types, &mut routed) {
                Ok(Some(w)) => routed.writes.push(w),
                Ok(None) => {}
                Err(r) => routed.rejections.push(r),
            }
        }
        routed
    }
}

/// A row for the `_rejected` table: why a payload was not stored.
/// `p.payload` may be cut short already; `payload_bytes` is the whole size.
pub fn rejected_row(p: &Publish<'_>, reason: &str, payload_bytes: usize) -> WriteBatch {
    let mut batch = WriteBatch::new(REJECTED_TABLE);
    let row = batch.row(p.now_ns).tag("topic", p.topic);
    let row = if p.client_id.is_empty() { row } else { row.tag("client_id", p.client_id) };
    let _ =
        row.field("reason", reason).field("payload", preview(p.payload)).field("payload_bytes", payload_bytes as u64);
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoTypes;
    impl ColumnTypes for NoTypes {
        fn field_type(&self, _: &str, _: &str, c: &str) -> Option<FieldType> {
            (c == "count").then_some(FieldType::I64)
        }
    }

    fn rule(toml_like: TopicRuleConfig) -> RuleSet {
        RuleSet::compile(&[toml_like]).unwrap()
    }

    fn publish<'a>(topic: &'a str, payload: &'a [u8]) -> Publish<'a> {
        Publish { topic, payload, client_id: "c1", identity: Some("sensor-001"), now_ns: 42 }
    }

    #[test]
    fn json_rule_with_captures_and_static_tags() {
        let rules = rule(TopicRuleConfig {
            topic: Some("sensors/{device_id}/telemetry".into()),
            database: "iot".into(),
            table: Some("telemetry".into()),
            time_field: Some("timestamp".into()),
            tags: [("site".to_string(), "plant-1".to_string())].into(),
            ..Default::default()
        });
        let payload = br#"{"deviceId":"sensor-001","timestamp":1733000000,"temp":72.4,"humidity":34,"count":3}"#;
        let routed = rules.route(&publish("sensors/sensor-001/telemetry", payload), &NoTypes);
        assert_eq!(routed.matched, 1);
        assert!(routed.rejections.is_empty());
        let w = &routed.writes[0];
        assert_eq!(w.database, "iot");
        assert_eq!(w.batches[0].len(), 1);
        let routed = rules.route(&publish("sensors/sensor-001/telemetry", b"{nope"), &NoTypes);
        assert!(routed.rejections[0].1.starts_with("invalid JSON"), "{:?}", routed.rejections);
        assert_eq!(rules.route(&publish("other/topic", b"{}"), &NoTypes).matched, 0);
    }

    #[test]
    fn identity_policy() {
        let rules = rule(TopicRuleConfig {
            topic: Some("fleet/+/{device_id}/readings".into()),
            database: "fleet".into(),
            table: Some("readings".into()),
            identity: Some("device_id".into()),
            ..Default::default()
        });
        assert!(rules.check_policy("fleet/a/sensor-001/readings", Some("sensor-001")).is_ok());
        let err = rules.check_policy("fleet/a/sensor-002/readings", Some("sensor-001")).unwrap_err();
        assert!(err.0.contains("may not publish"), "{err}");
        assert!(rules.check_policy("fleet/a/x/readings", None).is_ok(), "bridged messages carry no identity");
        assert!(rules.check_policy("elsewhere", None).is_ok());
    }

    #[test]
    fn config_errors_name_the_rule() {
        let bad = |c: TopicRuleConfig| RuleSet::compile(&[c]).unwrap_err();
        assert!(bad(TopicRuleConfig { database: "d".into(), ..Default::default() }).contains("mqtt rule 1: `topic`"));
        let e = bad(TopicRuleConfig {
            topic: Some("a/{x}".into()),
            database: "{y}".into(),
            table: Some("t".into()),
            ..Default::default()
        });
        assert!(e.contains("does not capture"), "{e}");
        let e = bad(TopicRuleConfig { topic: Some("a/b".into()), database: "d".into(), ..Default::default() });
        assert!(e.contains("`table` is required"), "{e}");
        let e = bad(TopicRuleConfig {
            topic: Some("a/{x}".into()),
            database: "d".into(),
            table: Some("t".into()),
            identity: Some("dev".into()),
            ..Default::default()
        });
        assert!(e.contains("identity `dev`"), "{e}");
    }

    #[test]
    fn number_and_line_protocol_formats() {
        let rules = RuleSet::compile(&[
            TopicRuleConfig {
                topic: Some("plant/{line}/+".into()),
                database: "plant".into(),
                table: Some("sensors".into()),
                format: PayloadFormat::Number,
                ..Default::default()
            },
            TopicRuleConfig {
                topic: Some("lp/{gw}".into()),
                database: "{gw}".into(),
                format: PayloadFormat::LineProtocol,
                ..Default::default()
            },
        ])
        .unwrap();
        let r = rules.route(&publish("plant/l1/temperature", b" 21.5\n"), &NoTypes);
        assert_eq!(r.writes[0].batches[0].len(), 1);
        let r = rules.route(&publish("plant/l1/temperature", b"warm"), &NoTypes);
        assert!(r.rejections[0].1.contains("not a number"));
        let r = rules.route(&publish("lp/gw1", b"cpu,host=a usage=1 1\nmem free=2i 2"), &NoTypes);
        assert_eq!(r.writes[0].database, "gw1");
        assert_eq!(r.writes[0].batches.len(), 2);
        let r = rules.route(&publish("lp/gw1", b"cpu usage="), &NoTypes);
        assert!(r.rejections[0].1.starts_with("line protocol: line 1"), "{:?}", r.rejections);
    }

    #[test]
    fn preview_escapes_binary() {
        assert_eq!(preview(b"ok\xff"), "ok\\xff");
        assert!(preview(&[b'a'; 300]).ends_with('…'));
    }
}
