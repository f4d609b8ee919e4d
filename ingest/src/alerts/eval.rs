//! The evaluator: alert instances and their states, driven by rows as they
//! are committed and by a clock tick. Pure state: it returns the changes
//! and the caller makes them durable and sends the notifications.
//!
//! States follow Prometheus: a condition that becomes true makes an
//! instance *pending*; it *fires* once the condition has held for `for`;
//! when the condition clears it is *resolved* (after `keep_firing_for`, if
//! set). A pending instance whose condition clears goes back to *inactive*
//! without any notification, so a flapping value sends nothing.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use telemark_engine::observe::CommittedRows;

use super::rule::{Check, Rule};

/// The state of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// The condition does not hold (or stopped holding before `for`).
    Inactive,
    /// The condition holds, not yet for `for`.
    Pending,
    /// The condition held for `for`.
    Firing,
    /// It fired, and the condition cleared.
    Resolved,
}

impl State {
    /// As in notifications and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Inactive => "inactive",
            State::Pending => "pending",
            State::Firing => "firing",
            State::Resolved => "resolved",
        }
    }
}

/// One alert instance: a rule and a device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub rule: String,
    /// The device key: the rule's `device_tag` value, or the tag set.
    pub device: String,
    /// Stable hash of the rule name and labels (hex), as Alertmanager's.
    pub fingerprint: String,
    pub labels: BTreeMap<String, String>,
    pub state: State,
    /// The value that last made or kept the condition true (threshold), or
    /// the seconds since the device was last seen (offline).
    pub value: f64,
    /// Whether the condition holds now.
    pub condition: bool,
    /// Wall clock (ms) since the condition holds (the pending start).
    pub active_at: i64,
    /// Wall clock (ms) it fired.
    pub fired_at: Option<i64>,
    /// Wall clock (ms) it resolved.
    pub resolved_at: Option<i64>,
    /// Wall clock (ms) since the condition stopped holding while firing (`keep_firing_for`).
    pub cleared_at: Option<i64>,
    /// Newest row time (ns) seen; older rows never change the state.
    pub last_time: i64,
    /// Consecutive points matching / not matching (hysteresis).
    pub run: u32,
    pub clear_run: u32,
}

/// A change to make durable; `notify` when it is a firing or resolved transition.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub instance: Instance,
    pub notify: bool,
}

/// Where an offline rule last saw a device.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Seen {
    /// Wall clock, ms.
    pub at: i64,
    pub labels: BTreeMap<String, String>,
}

/// All rules' instances.
#[derive(Debug, Default)]
pub struct Evaluator {
    pub rules: Vec<Rule>,
    /// Per rule (same index): instances by device key.
    pub instances: Vec<HashMap<String, Instance>>,
    /// Per rule: offline rules' last sightings by device key.
    pub seen: Vec<HashMap<String, Seen>>,
    /// Rows older than this (ns before now) change no alert (backfill).
    pub backfill_cutoff_ns: i64,
}

/// FNV-1a, 64 bit: stable across Rust releases and platforms.
fn fnv(bytes: impl IntoIterator<Item = u8>, mut h: u64) -> u64 {
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The fingerprint of a label set.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut h = 0xcbf2_9ce4_8422_2325;
    for (k, v) in labels {
        h = fnv(k.bytes().chain([0xff]).chain(v.bytes()).chain([0xfe]), h);
    }
    format!("{h:016x}")
}

impl Evaluator {
    /// An evaluator for `rules`.
    pub fn new(rules: Vec<Rule>, backfill_cutoff_ns: i64) -> Self {
        let n = rules.len();
        Evaluator {
            rules,
            instances: (0..n).map(|_| HashMap::new()).collect(),
            seen: (0..n).map(|_| HashMap::new()).collect(),
            backfill_cutoff_ns,
        }
    }

    /// The labels of a new instance: the row's tags, the rule's labels, `alertname`.
    fn labels_of(rule: &Rule, tags: impl Iterator<Item = (String, String)>) -> BTreeMap<String, String> {
        let mut labels: BTreeMap<String, String> = tags.collect();
        labels.extend(rule.config.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        labels.insert("alertname".into(), rule.config.name.clone());
        labels
    }

    /// Applies committed rows; `now_ms` is the wall clock.
    pub fn rows(&mut self, rows: &CommittedRows<'_>, now_ms: i64, out: &mut Vec<Change>) {
        let now_ns = now_ms.saturating_mul(1_000_000);
        for r in 0..self.rules.len() {
            let rule = &self.rules[r];
            if rule.config.database != rows.database() || rule.config.table != rows.table() {
                continue;
            }
            let tag_columns: Vec<(usize, &str)> = rows.tag_columns().collect();
            let device_col = rows.column(&rule.config.device_tag).filter(|c| tag_columns.iter().any(|(i, _)| i == c));
            let field_col = match &rule.check {
                Check::Threshold { field, .. } => match rows.column(field) {
                    Some(c) => Some(c),
                    None => continue,
                },
                Check::Offline { .. } => None,
            };
            for row in 0..rows.len() {
                let time = rows.time(row);
                if time < now_ns.saturating_sub(self.backfill_cutoff_ns) {
                    continue;
                }
                let device: std::borrow::Cow<'_, str> = match device_col.and_then(|c| rows.tag_at(c, row)) {
                    Some(d) => d.into(),
                    None => tag_columns
                        .iter()
                        .filter_map(|(i, name)| rows.tag_at(*i, row).map(|v| format!("{name}={v}")))
                        .collect::<Vec<_>>()
                        .join(",")
                        .into(),
                };
                let tags = || {
                    tag_columns
                        .iter()
                        .filter_map(|(i, name)| rows.tag_at(*i, row).map(|v| (name.to_string(), v.to_string())))
                };
                match (&rule.check, field_col) {
                    (Check::Threshold { op, value: threshold, alarm_points, clear_points, .. }, Some(fc)) => {
                        let Some(v) = rows.field_at(fc, row).and_then(|f| f.as_f64()) else { continue };
                        let map = &mut self.instances[r];
                        if !map.contains_key(device.as_ref()) {
                            if !op.holds(v, *threshold) {
                                continue; // nothing to remember for a device that never matched
                            }
                            let labels = Self::labels_of(rule, tags());
                            map.insert(device.to_string(), new_instance(rule, &device, labels));
                        }
                        let Some(inst) = map.get_mut(device.as_ref()) else { continue };
                        if time <= inst.last_time {
                            continue;
                        }
                        inst.last_time = time;
                        if op.holds(v, *threshold) {
                            inst.run = inst.run.saturating_add(1);
                            inst.clear_run = 0;
                            if inst.condition || inst.run >= *alarm_points {
                                inst.value = v;
                            }
                        } else {
                            inst.clear_run = inst.clear_run.saturating_add(1);
                            inst.run = 0;
                        }
                        let before = inst.condition;
                        if !inst.condition && inst.run >= *alarm_points {
                            inst.condition = true;
                        } else if inst.condition && inst.clear_run >= *clear_points {
                            inst.condition = false;
                        }
                        let changed = before != inst.condition;
                        step(rule, inst, now_ms, changed, out);
                        if inst.state == State::Inactive && inst.run == 0 {
                            map.remove(device.as_ref());
                        }
                    }
                    (Check::Offline { .. }, _) => {
                        let seen = self.seen[r]
                            .entry(device.to_string())
                            .or_insert_with(|| Seen { at: now_ms, labels: Self::labels_of(rule, tags()) });
                        seen.at = seen.at.max(now_ms);
                        if let Some(inst) = self.instances[r].get_mut(device.as_ref())
                            && inst.condition
                        {
                            inst.condition = false;
                            step(rule, inst, now_ms, true, out);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// A device's MQTT client connected or pinged: a sign of life for the
    /// offline rules whose device key is the client id.
    pub fn alive(&mut self, device: &str, now_ms: i64, out: &mut Vec<Change>) {
        for r in 0..self.rules.len() {
            if !matches!(self.rules[r].check, Check::Offline { .. }) {
                continue;
            }
            if let Some(seen) = self.seen[r].get_mut(device) {
                seen.at = seen.at.max(now_ms);
                if let Some(inst) = self.instances[r].get_mut(device)
                    && inst.condition
                {
                    inst.condition = false;
                    step(&self.rules[r], inst, now_ms, true, out);
                }
            }
        }
    }

    /// Advances time: pending instances fire, kept ones resolve, silent devices go offline.
    pub fn tick(&mut self, now_ms: i64, out: &mut Vec<Change>) {
        for r in 0..self.rules.len() {
            let rule = &self.rules[r];
            if let Check::Offline { after } = rule.check {
                let after_ms = i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
                for (device, seen) in &self.seen[r] {
                    let silent = now_ms.saturating_sub(seen.at);
                    if silent < after_ms {
                        continue;
                    }
                    let inst = self.instances[r]
                        .entry(device.clone())
                        .or_insert_with(|| new_instance(rule, device, seen.labels.clone()));
                    if !inst.condition {
                        inst.condition = true;
                        inst.value = silent as f64 / 1000.0;
                        step(rule, inst, now_ms, true, out);
                    }
                }
            }
            for inst in self.instances[r].values_mut() {
                if matches!(inst.state, State::Pending | State::Firing) {
                    step(rule, inst, now_ms, false, out);
                }
            }
            self.instances[r].retain(|_, i| i.state != State::Inactive || i.run > 0);
        }
    }

    /// Every instance that is not inactive.
    pub fn active(&self) -> impl Iterator<Item = &Instance> {
        self.instances.iter().flat_map(HashMap::values).filter(|i| i.state != State::Inactive)
    }

    /// Restores an instance from the journal (its rule must still exist).
    pub fn restore(&mut self, inst: Instance) {
        if let Some(r) = self.rules.iter().position(|r| r.config.name == inst.rule) {
            if let Check::Offline { .. } = self.rules[r].check {
                self.seen[r]
                    .entry(inst.device.clone())
                    .or_insert_with(|| Seen { at: inst.active_at, labels: inst.labels.clone() });
            }
            self.instances[r].insert(inst.device.clone(), inst);
        }
    }
}

fn new_instance(rule: &Rule, device: &str, labels: BTreeMap<String, String>) -> Instance {
    Instance {
        rule: rule.config.name.clone(),
        device: device.to_string(),
        fingerprint: fingerprint(&labels),
        labels,
        state: State::Inactive,
        value: 0.0,
        condition: false,
        active_at: 0,
        fired_at: None,
        resolved_at: None,
        cleared_at: None,
        last_time: i64::MIN,
        run: 0,
        clear_run: 0,
    }
}

/// Moves an instance's state after its condition was (re)computed;
/// `changed` = the condition just flipped (its snapshot is then persisted).
fn step(rule: &Rule, inst: &mut Instance, now: i64, changed: bool, out: &mut Vec<Change>) {
    let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let mut emit = |inst: &Instance, notify: bool| out.push(Change { instance: inst.clone(), notify });
    match (inst.state, inst.condition) {
        (State::Inactive | State::Resolved, true) => {
            inst.state = State::Pending;
            inst.active_at = now;
            inst.fired_at = None;
            inst.resolved_at = None;
            inst.cleared_at = None;
            if now.saturating_sub(inst.active_at) >= ms(rule.for_) {
                inst.state = State::Firing;
                inst.fired_at = Some(now);
                emit(inst, true);
            } else {
                emit(inst, false);
            }
        }
        (State::Pending, true) => {
            if now.saturating_sub(inst.active_at) >= ms(rule.for_) {
                inst.state = State::Firing;
                inst.fired_at = Some(now);
                emit(inst, true);
            } else if changed {
                emit(inst, false);
            }
        }
        (State::Pending, false) => {
            inst.state = State::Inactive;
            emit(inst, false);
        }
        (State::Firing, true) => {
            if inst.cleared_at.take().is_some() || changed {
                emit(inst, false);
            }
        }
        (State::Firing, false) => {
            let since = *inst.cleared_at.get_or_insert(now);
            if now.saturating_sub(since) >= ms(rule.keep_firing_for) {
                inst.state = State::Resolved;
                inst.resolved_at = Some(now);
                inst.cleared_at = None;
                emit(inst, true);
            } else if changed {
                emit(inst, false);
            }
        }
        (State::Inactive | State::Resolved, false) => {
            if changed {
                emit(inst, false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::rule::{RuleConfig, RuleKind};

    fn rule(kind: RuleKind, extra: serde_json::Value) -> Rule {
        let mut v = serde_json::json!({"name": "r", "database": "db", "table": "t", "kind": kind});
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        Rule::compile(&serde_json::from_value::<RuleConfig>(v).unwrap()).unwrap()
    }

    fn inst(r: &Rule) -> Instance {
        new_instance(r, "d", BTreeMap::new())
    }

    #[test]
    fn pending_then_firing_then_resolved() {
        let r = rule(RuleKind::Threshold, serde_json::json!({"field": "x", "op": ">", "value": 1, "for": "1m"}));
        let mut i = inst(&r);
        let mut out = Vec::new();
        i.condition = true;
        step(&r, &mut i, 1_000, true, &mut out);
        assert_eq!((i.state, out.len(), out[0].notify), (State::Pending, 1, false));
        step(&r, &mut i, 30_000, false, &mut out);
        assert_eq!((i.state, out.len()), (State::Pending, 1), "nothing changes before `for`");
        step(&r, &mut i, 61_000, false, &mut out);
        assert_eq!((i.state, out.len(), out[1].notify, i.fired_at), (State::Firing, 2, true, Some(61_000)));
        i.condition = false;
        step(&r, &mut i, 70_000, true, &mut out);
        assert_eq!((i.state, out[2].notify, i.resolved_at), (State::Resolved, true, Some(70_000)));
    }

    #[test]
    fn flapping_within_for_sends_nothing() {
        let r = rule(RuleKind::Threshold, serde_json::json!({"field": "x", "op": ">", "value": 1, "for": "1m"}));
        let mut i = inst(&r);
        let mut out = Vec::new();
        for k in 0..20 {
            i.condition = k % 2 == 0;
            step(&r, &mut i, k * 15_000, true, &mut out);
        }
        assert!(out.iter().all(|c| !c.notify), "{out:?}");
        assert_eq!(i.state, State::Inactive);
    }

    #[test]
    fn keep_firing_for_holds_a_cleared_alert() {
        let r = rule(
            RuleKind::Threshold,
            serde_json::json!({"field": "x", "op": ">", "value": 1, "keep_firing_for": "2m"}),
        );
        let mut i = inst(&r);
        let mut out = Vec::new();
        i.condition = true;
        step(&r, &mut i, 0, true, &mut out);
        assert_eq!(i.state, State::Firing);
        i.condition = false;
        step(&r, &mut i, 10_000, true, &mut out);
        step(&r, &mut i, 100_000, false, &mut out);
        assert_eq!(i.state, State::Firing);
        i.condition = true; // back before the end: the countdown stops
        step(&r, &mut i, 110_000, true, &mut out);
        i.condition = false;
        step(&r, &mut i, 120_000, true, &mut out);
        step(&r, &mut i, 239_000, false, &mut out);
        assert_eq!(i.state, State::Firing);
        step(&r, &mut i, 240_000, false, &mut out);
        assert_eq!(i.state, State::Resolved);
        assert_eq!(out.iter().filter(|c| c.notify).count(), 2, "one firing, one resolved");
    }

    #[test]
    fn fingerprints_are_stable() {
        let labels = BTreeMap::from([("alertname".to_string(), "hot".to_string()), ("device_id".into(), "t-1".into())]);
        // Fixed forever (FNV-1a 64, checked by hand): receivers deduplicate by it across releases.
        assert_eq!(fingerprint(&labels), "866de99f7f8497b3");
        let swapped =
            BTreeMap::from([("alertname".to_string(), "t-1".to_string()), ("device_id".into(), "hot".into())]);
        assert_ne!(fingerprint(&labels), fingerprint(&swapped));
    }
}
