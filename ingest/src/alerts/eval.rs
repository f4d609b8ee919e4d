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

use super::rule::{Check, Detector, Rule};

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
    /// Sequence number of its last notification (0 before any).
    #[serde(default)]
    pub seq: u64,
}

/// A change to make durable; `notify` when it is a firing or resolved transition.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub instance: Instance,
    pub notify: bool,
}

/// A row of a `sql` rule's result: its labels (string columns) and value
/// (its first numeric column).
#[derive(Debug, Clone, PartialEq)]
pub struct SqlRow {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Where an offline rule last saw a device.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Seen {
    /// Wall clock, ms.
    pub at: i64,
    /// The device's tags (an instance's labels add the rule's and `alertname`).
    /// A short vector, not a map: an offline rule keeps one per device.
    pub tags: Vec<(String, String)>,
}

/// Most points an anomaly detector keeps per device for a window.
const MAX_WINDOW_POINTS: usize = 10_000;

/// An anomaly detector's memory of one device (data time).
#[derive(Debug, Clone, Default)]
pub struct DetectorState {
    last_time: Option<i64>,
    /// Flatline: the value, and since when it has not changed.
    value: f64,
    since: i64,
    /// Rate and message rate: the points within the window.
    window: std::collections::VecDeque<(i64, f64)>,
    /// Z-score: EWMA mean and variance, and points seen.
    mean: f64,
    var: f64,
    n: u32,
}

impl DetectorState {
    /// Feeds one point (rows older than the newest are ignored: `None`);
    /// returns whether it is anomalous and the value to show.
    fn observe(&mut self, d: &Detector, time: i64, v: f64) -> Option<(bool, f64)> {
        if self.last_time.is_some_and(|t| time <= t) {
            return None;
        }
        let first = self.last_time.is_none();
        self.last_time = Some(time);
        Some(match *d {
            Detector::Flatline { stuck_ns } => {
                if first || v != self.value {
                    self.value = v;
                    self.since = time;
                }
                (time.saturating_sub(self.since) >= stuck_ns, v)
            }
            Detector::Rate { window_ns, op, value } => {
                self.push(time, v, window_ns);
                let (t0, v0) = self.window.front().copied().unwrap_or((time, v));
                if time == t0 {
                    return Some((false, 0.0));
                }
                let rate = (v - v0) / ((time - t0) as f64 / 1e9);
                (op.holds(rate, value), rate)
            }
            Detector::MessageRate { window_ns, op, value } => {
                self.push(time, v, window_ns);
                let n = self.window.len() as f64;
                (op.holds(n, value), n)
            }
            Detector::ZScore { alpha, warmup, k } => {
                let judged = if self.n >= warmup && self.var > 0.0 {
                    let z = (v - self.mean) / self.var.sqrt();
                    (z.abs() > k, z)
                } else {
                    (false, 0.0)
                };
                if self.n == 0 {
                    self.mean = v;
                } else {
                    let diff = v - self.mean;
                    let incr = alpha * diff;
                    self.mean += incr;
                    self.var = (1.0 - alpha) * (self.var + diff * incr);
                }
                self.n = self.n.saturating_add(1);
                judged
            }
        })
    }

    fn push(&mut self, time: i64, v: f64, window_ns: i64) {
        self.window.push_back((time, v));
        while self.window.front().is_some_and(|(t, _)| time.saturating_sub(*t) > window_ns)
            || self.window.len() > MAX_WINDOW_POINTS
        {
            self.window.pop_front();
        }
    }
}

/// A rule with everything the evaluator remembers for it.
type RuleMemory = (Rule, HashMap<String, Instance>, HashMap<String, Seen>, HashMap<String, DetectorState>);

/// All rules' instances.
#[derive(Debug, Default)]
pub struct Evaluator {
    pub rules: Vec<Rule>,
    /// Per rule (same index): instances by device key.
    pub instances: Vec<HashMap<String, Instance>>,
    /// Per rule: offline rules' last sightings by device key.
    pub seen: Vec<HashMap<String, Seen>>,
    /// Per rule: anomaly detectors' state by device key.
    pub detectors: Vec<HashMap<String, DetectorState>>,
    /// Per (database, table, device tag): the newest row time (ns) of every
    /// device, so an older row never moves an alert, even for a device with
    /// no instance. One entry per device, however many rules watch it.
    pub newest: HashMap<(String, String, String), HashMap<String, i64>>,
    /// Devices offline rules met for the first time since the worker last looked: (rule, device).
    pub seen_new: Vec<(usize, String)>,
    /// Rows older than this (ns before now) change no alert (backfill).
    pub backfill_cutoff_ns: i64,
    /// How a batch of each (database, table) is evaluated; dropped when the
    /// rules change or a threshold rule gains its first or loses its last instance.
    plans: HashMap<String, HashMap<String, std::sync::Arc<TablePlan>>>,
}

/// Idle threshold rules of one field and comparison: (threshold, rule), sorted by threshold.
type Thresholds = Vec<(f64, usize)>;

/// The rules a table's batches go to, so a batch costs in proportion to its
/// rows and the rules they cross, not to every rule there is.
#[derive(Debug, Default)]
struct TablePlan {
    /// Device tags whose newest row times a batch updates (rules other than offline).
    device_tags: Vec<String>,
    /// Rules evaluated from a batch's first row.
    always: Vec<usize>,
    /// Threshold rules without instances, by field and comparison, sorted by
    /// threshold: a row that crosses none of them touches nothing.
    idle: Vec<(String, super::rule::Op, Thresholds)>,
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
            detectors: (0..n).map(|_| HashMap::new()).collect(),
            newest: HashMap::new(),
            seen_new: Vec::new(),
            backfill_cutoff_ns,
            plans: HashMap::new(),
        }
    }

    /// True if rule `r` is a threshold rule the plans index while it has no instances.
    fn indexable(&self, r: usize) -> bool {
        use super::rule::Op;
        matches!(self.rules.get(r).map(|x| &x.check), Some(Check::Threshold { op, .. }) if !matches!(op, Op::Eq | Op::Ne))
    }

    /// The plan of a table's batches (built on first use).
    fn plan(&mut self, database: &str, table: &str) -> std::sync::Arc<TablePlan> {
        if let Some(p) = self.plans.get(database).and_then(|t| t.get(table)) {
            return p.clone();
        }
        let mut plan = TablePlan::default();
        for (r, rule) in self.rules.iter().enumerate() {
            let c = &rule.config;
            if c.database != database || c.table != table {
                continue;
            }
            if !matches!(rule.check, Check::Offline { .. }) && !plan.device_tags.contains(&c.device_tag) {
                plan.device_tags.push(c.device_tag.clone());
            }
            match &rule.check {
                Check::Sql { .. } => {} // evaluated on its schedule, not per row
                Check::Threshold { field, op, value, .. } if self.indexable(r) && self.instances[r].is_empty() => {
                    match plan.idle.iter_mut().find(|(f, o, _)| f == field && o == op) {
                        Some((_, _, list)) => list.push((*value, r)),
                        None => plan.idle.push((field.clone(), *op, vec![(*value, r)])),
                    }
                }
                _ => plan.always.push(r),
            }
        }
        for (_, _, list) in plan.idle.iter_mut() {
            list.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        let plan = std::sync::Arc::new(plan);
        self.plans.entry(database.to_string()).or_default().insert(table.to_string(), plan.clone());
        plan
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
        let plan = self.plan(rows.database(), rows.table());
        if plan.always.is_empty() && plan.idle.is_empty() {
            return;
        }
        // Which rows are newer than their device's newest, per device tag
        // (once per row, not per rule).
        let mut fresh: HashMap<&str, Vec<bool>> = HashMap::new();
        for tag in &plan.device_tags {
            let key = (rows.database().to_string(), rows.table().to_string(), tag.clone());
            let newest = self.newest.entry(key).or_default();
            let device_col = rows.column(tag);
            let flags = (0..rows.len())
                .map(|row| {
                    let device = device_key(rows, device_col, row);
                    let t = rows.time(row);
                    match newest.get_mut(device.as_ref()) {
                        Some(n) if t <= *n => false,
                        Some(n) => {
                            *n = t;
                            true
                        }
                        None => {
                            newest.insert(device.into_owned(), t);
                            true
                        }
                    }
                })
                .collect();
            fresh.insert(tag.as_str(), flags);
        }
        let start = self.first_rows(&plan, rows, now_ns);
        let mut replan = false;
        for (r, first_row) in start {
            let was_idle = self.indexable(r) && !plan.always.contains(&r);
            let rule = &self.rules[r];
            let tag_columns: Vec<(usize, &str)> = rows.tag_columns().collect();
            let field_col = match &rule.check {
                Check::Threshold { field, .. } | Check::Anomaly { field, .. } if !field.is_empty() => {
                    match rows.column(field) {
                        Some(c) => Some(c),
                        None => continue,
                    }
                }
                _ => None,
            };
            let device_col = rows.column(&rule.config.device_tag);
            for row in first_row..rows.len() {
                let time = rows.time(row);
                if time < now_ns.saturating_sub(self.backfill_cutoff_ns) {
                    continue;
                }
                let device = device_key(rows, device_col, row);
                let tags = || {
                    tag_columns
                        .iter()
                        .filter_map(|(i, name)| rows.tag_at(*i, row).map(|v| (name.to_string(), v.to_string())))
                };
                let value = field_col.and_then(|fc| rows.field_at(fc, row)).and_then(|f| f.as_f64());
                // (does the row match, the value shown, alarm points, clear points)
                let (matches, shown, alarm, clear) = match &rule.check {
                    Check::Sql { .. } => break, // evaluated on its schedule, not per row
                    Check::Offline { .. } => {
                        match self.seen[r].get_mut(device.as_ref()) {
                            Some(seen) => seen.at = seen.at.max(now_ms),
                            None => {
                                let mut tags: Vec<(String, String)> = tags().collect();
                                tags.shrink_to_fit();
                                self.seen[r].insert(device.to_string(), Seen { at: now_ms, tags });
                                self.seen_new.push((r, device.to_string()));
                            }
                        }
                        if let Some(inst) = self.instances[r].get_mut(device.as_ref())
                            && inst.condition
                        {
                            inst.condition = false;
                            step(rule, inst, now_ms, true, out);
                        }
                        continue;
                    }
                    Check::Threshold { op, value: threshold, alarm_points, clear_points, .. } => {
                        let Some(v) = value else { continue };
                        if !fresh.get(rule.config.device_tag.as_str()).is_some_and(|f| f[row]) {
                            continue;
                        }
                        (op.holds(v, *threshold), v, *alarm_points, *clear_points)
                    }
                    Check::Anomaly { detector, alarm_points, clear_points, .. } => {
                        if field_col.is_some() && value.is_none() {
                            continue;
                        }
                        let state = self.detectors[r].entry(device.to_string()).or_default();
                        let Some((m, shown)) = state.observe(detector, time, value.unwrap_or(0.0)) else { continue };
                        (m, shown, *alarm_points, *clear_points)
                    }
                };
                let map = &mut self.instances[r];
                if !map.contains_key(device.as_ref()) {
                    if !matches {
                        continue; // nothing to remember for a device that does not match
                    }
                    let labels = Self::labels_of(rule, tags());
                    map.insert(device.to_string(), new_instance(rule, &device, labels));
                }
                let Some(inst) = map.get_mut(device.as_ref()) else { continue };
                if time <= inst.last_time {
                    continue;
                }
                inst.last_time = time;
                if matches {
                    inst.run = inst.run.saturating_add(1);
                    inst.clear_run = 0;
                    if inst.condition || inst.run >= alarm {
                        inst.value = shown;
                    }
                } else {
                    inst.clear_run = inst.clear_run.saturating_add(1);
                    inst.run = 0;
                }
                let before = inst.condition;
                if !inst.condition && inst.run >= alarm {
                    inst.condition = true;
                } else if inst.condition && inst.clear_run >= clear {
                    inst.condition = false;
                }
                let changed = before != inst.condition;
                step(rule, inst, now_ms, changed, out);
                if inst.state == State::Inactive && inst.run == 0 {
                    map.remove(device.as_ref());
                }
            }
            if self.indexable(r) && was_idle != self.instances[r].is_empty() {
                replan = true;
            }
        }
        if replan {
            self.plans.clear();
        }
    }

    /// The rules a batch goes to, each with the row its evaluation starts
    /// at, in rule order: every rule of `plan.always` from the first row, and
    /// each idle threshold rule from the first row that crosses its threshold
    /// (a row that does not touches nothing), found by binary search.
    fn first_rows(&self, plan: &TablePlan, rows: &CommittedRows<'_>, now_ns: i64) -> Vec<(usize, usize)> {
        use super::rule::Op;
        let mut start: Vec<(usize, usize)> = plan.always.iter().map(|&r| (r, 0)).collect();
        if plan.idle.is_empty() {
            return start;
        }
        let cutoff = now_ns.saturating_sub(self.backfill_cutoff_ns);
        let lists: Vec<(usize, Op, &Thresholds)> =
            plan.idle.iter().filter_map(|(f, op, list)| Some((rows.column(f)?, *op, list))).collect();
        let mut first: HashMap<usize, usize> = HashMap::new();
        for row in 0..rows.len() {
            if rows.time(row) < cutoff {
                continue;
            }
            for &(column, op, list) in &lists {
                let Some(v) = rows.field_at(column, row).and_then(|f| f.as_f64()) else { continue };
                // The rules whose threshold the value passes: a prefix (>, >=) or a suffix (<, <=).
                let matched = match op {
                    Op::Gt => &list[..list.partition_point(|(t, _)| *t < v)],
                    Op::Ge => &list[..list.partition_point(|(t, _)| *t <= v)],
                    Op::Lt => &list[list.partition_point(|(t, _)| *t <= v)..],
                    Op::Le => &list[list.partition_point(|(t, _)| *t < v)..],
                    Op::Eq | Op::Ne => &[],
                };
                for &(_, r) in matched {
                    first.entry(r).or_insert(row);
                }
            }
        }
        start.extend(first);
        start.sort_unstable();
        start
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
                    let inst = self.instances[r].entry(device.clone()).or_insert_with(|| {
                        new_instance(rule, device, Self::labels_of(rule, seen.tags.iter().cloned()))
                    });
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
            let had = !self.instances[r].is_empty();
            self.instances[r].retain(|_, i| i.state != State::Inactive || i.run > 0);
            if had && self.instances[r].is_empty() && self.indexable(r) {
                self.plans.clear();
            }
        }
    }

    /// Replaces the rules. A rule whose configuration did not change keeps
    /// its instances and memory; the firing instances of a rule removed or
    /// changed are resolved (notified), its pending ones dropped.
    pub fn set_rules(&mut self, rules: Vec<Rule>, now_ms: i64, out: &mut Vec<Change>) {
        self.plans.clear();
        let mut old: HashMap<String, RuleMemory> = HashMap::new();
        let taken = std::mem::take(&mut self.rules).into_iter().zip(
            std::mem::take(&mut self.instances)
                .into_iter()
                .zip(std::mem::take(&mut self.seen))
                .zip(std::mem::take(&mut self.detectors)),
        );
        for (rule, ((instances, seen), detectors)) in taken {
            old.insert(rule.config.name.clone(), (rule, instances, seen, detectors));
        }
        for rule in rules {
            let unchanged = old.get(&rule.config.name).is_some_and(|(o, ..)| o.config == rule.config);
            let kept = if unchanged { old.remove(&rule.config.name) } else { None };
            let (instances, seen, detectors) = kept.map(|(_, i, s, d)| (i, s, d)).unwrap_or_default();
            self.rules.push(rule);
            self.instances.push(instances);
            self.seen.push(seen);
            self.detectors.push(detectors);
        }
        for (_, (_, instances, _, _)) in old {
            for mut inst in instances.into_values() {
                match inst.state {
                    State::Firing => {
                        inst.state = State::Resolved;
                        inst.condition = false;
                        inst.resolved_at = Some(now_ms);
                        out.push(Change { instance: inst, notify: true });
                    }
                    State::Pending => {
                        inst.state = State::Inactive;
                        inst.condition = false;
                        out.push(Change { instance: inst, notify: false });
                    }
                    State::Inactive | State::Resolved => {}
                }
            }
        }
    }

    /// Applies the result of `sql` rule `name`'s evaluation: each row is an
    /// instance whose condition holds; the rule's instances not in it clear.
    pub fn sql_result(&mut self, name: &str, result: Vec<SqlRow>, now_ms: i64, out: &mut Vec<Change>) {
        let Some(r) = self.rules.iter().position(|x| x.config.name == name) else { return };
        let rule = &self.rules[r];
        let mut present = std::collections::HashSet::new();
        for row in result {
            let device =
                row.labels.get(&rule.config.device_tag).cloned().unwrap_or_else(|| {
                    row.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
                });
            let inst = self.instances[r].entry(device.clone()).or_insert_with(|| {
                let labels = Self::labels_of(rule, row.labels.clone().into_iter());
                new_instance(rule, &device, labels)
            });
            inst.value = row.value;
            let changed = !inst.condition;
            inst.condition = true;
            step(rule, inst, now_ms, changed, out);
            present.insert(device);
        }
        for (device, inst) in &mut self.instances[r] {
            if inst.condition && !present.contains(device) {
                inst.condition = false;
                step(rule, inst, now_ms, true, out);
            }
        }
        self.instances[r].retain(|_, i| i.state != State::Inactive);
    }

    /// Every instance that is not inactive.
    pub fn active(&self) -> impl Iterator<Item = &Instance> {
        self.instances.iter().flat_map(HashMap::values).filter(|i| i.state != State::Inactive)
    }

    /// Restores an instance from the journal (its rule must still exist).
    pub fn restore(&mut self, inst: Instance) {
        self.plans.clear();
        if let Some(r) = self.rules.iter().position(|r| r.config.name == inst.rule) {
            if inst.last_time > i64::MIN {
                let c = &self.rules[r].config;
                let key = (c.database.clone(), c.table.clone(), c.device_tag.clone());
                let t = self.newest.entry(key).or_default().entry(inst.device.clone()).or_insert(i64::MIN);
                *t = (*t).max(inst.last_time);
            }
            if let Check::Offline { .. } = self.rules[r].check {
                self.seen[r]
                    .entry(inst.device.clone())
                    .or_insert_with(|| Seen { at: inst.active_at, tags: inst.labels.clone().into_iter().collect() });
            }
            self.instances[r].insert(inst.device.clone(), inst);
        }
    }
}

/// The device key of a row: the value of the device tag (column
/// `device_col`, looked up once per batch), or else its whole tag set.
fn device_key<'a>(rows: &CommittedRows<'a>, device_col: Option<usize>, row: usize) -> std::borrow::Cow<'a, str> {
    if let Some(d) = device_col.and_then(|c| rows.tag_at(c, row)) {
        return d.into();
    }
    rows.tag_columns()
        .filter_map(|(i, name)| rows.tag_at(i, row).map(|v| format!("{name}={v}")))
        .collect::<Vec<_>>()
        .join(",")
        .into()
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
        seq: 0,
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

    /// Rules `gt{i}` (`x > i * step`) and `le{i}` (`x <= i * step`) for i in 0..n.
    fn gt_le_rules(n: i32, step: i32) -> Vec<Rule> {
        let mut rules = Vec::new();
        for i in 0..n {
            for (op, name) in [(">", "gt"), ("<=", "le")] {
                let mut r = rule(RuleKind::Threshold, serde_json::json!({"field": "x", "op": op, "value": i * step}));
                r.config.name = format!("{name}{i}");
                rules.push(r);
            }
        }
        rules
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

    /// Whether each point (time in seconds, value) is anomalous.
    fn feed(r: &Rule, points: &[(i64, f64)]) -> Vec<bool> {
        let Check::Anomaly { detector, .. } = &r.check else { panic!("not an anomaly rule") };
        let mut d = DetectorState::default();
        points.iter().map(|&(t, v)| d.observe(detector, t * 1_000_000_000, v).is_some_and(|(m, _)| m)).collect()
    }

    #[test]
    fn detectors() {
        let flat =
            rule(RuleKind::Anomaly, serde_json::json!({"detector": "flatline", "field": "x", "stuck_for": "10s"}));
        let got: Vec<bool> = feed(&flat, &[(0, 1.0), (5, 1.0), (10, 1.0), (11, 2.0), (20, 2.0), (21, 2.0)]);
        assert_eq!(got, [false, false, true, false, false, true]);
        let rate = rule(
            RuleKind::Anomaly,
            serde_json::json!({"detector": "rate", "field": "x", "window": "10s", "op": ">", "value": 1.0}),
        );
        let got: Vec<bool> = feed(&rate, &[(0, 0.0), (5, 4.0), (10, 20.0), (30, 21.0)]);
        assert_eq!(got, [false, false, true, false], "0.8/s, then 2/s, then a lone point");
        let msgs = rule(
            RuleKind::Anomaly,
            serde_json::json!({"detector": "message_rate", "window": "10s", "op": ">", "value": 3.0}),
        );
        let got: Vec<bool> = feed(&msgs, &[(0, 0.0), (1, 0.0), (2, 0.0), (3, 0.0), (30, 0.0)]);
        assert_eq!(got, [false, false, false, true, false]);
        let z = rule(
            RuleKind::Anomaly,
            serde_json::json!({"detector": "zscore", "field": "x", "alpha": 0.2, "warmup": 10, "k": 4.0}),
        );
        let mut points: Vec<(i64, f64)> = (0..50).map(|i| (i, 20.0 + if i % 2 == 0 { 0.5 } else { -0.5 })).collect();
        points.push((50, 40.0));
        let got: Vec<bool> = feed(&z, &points);
        assert!(got[..50].iter().all(|m| !m), "steady noise is not anomalous");
        assert!(got[50], "a jump of 20 on noise of 0.5 is");
        // Older points are ignored.
        let Check::Anomaly { detector, .. } = &flat.check else { panic!() };
        let mut d = DetectorState::default();
        assert!(d.observe(detector, 10, 1.0).is_some());
        assert!(d.observe(detector, 5, 1.0).is_none());
    }

    /// Feeds committed rows of a real database to an evaluator.
    #[derive(Debug)]
    struct Feed(std::sync::Mutex<(Evaluator, Vec<Change>)>);

    impl telemark_engine::observe::WriteObserver for Feed {
        fn committed(&self, rows: &CommittedRows<'_>) {
            let mut g = self.0.lock().unwrap();
            let (e, out) = &mut *g;
            e.rows(rows, chrono::Utc::now().timestamp_millis(), out);
        }
    }

    #[test]
    fn indexed_idle_rules_fire_exactly_the_matching_ones() {
        // 200 rules `x > i` and 200 rules `x <= i` for i in 0..200; rows of several devices.
        let rules = gt_le_rules(200, 1);
        let feed = std::sync::Arc::new(Feed(std::sync::Mutex::new((Evaluator::new(rules, i64::MAX), Vec::new()))));
        let dir = tempfile::tempdir().unwrap();
        let db = telemark_engine::Database::open(dir.path(), telemark_engine::Options::default()).unwrap();
        db.add_write_observer(feed.clone());
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
        let values = [("a", 50.5), ("b", -3.0), ("c", 199.0), ("a", 10.0)];
        let mut batch = telemark_engine::WriteBatch::new("t");
        for (k, (device, v)) in values.iter().enumerate() {
            batch.row(now + k as i64).tag("device_id", *device).field("x", *v);
        }
        assert_eq!(db.write("db", &batch).unwrap().rows_written, 4);
        let g = feed.0.lock().unwrap();
        let firing: std::collections::BTreeSet<(String, String)> =
            g.0.active().filter(|i| i.state == State::Firing).map(|i| (i.rule.clone(), i.device.clone())).collect();
        // The naive answer: the last row of each device decides (one point alarms and clears).
        let mut expected = std::collections::BTreeSet::new();
        for (device, v) in [("a", 10.0), ("b", -3.0), ("c", 199.0)] {
            for i in 0..200 {
                if v > f64::from(i) {
                    expected.insert((format!("gt{i}"), device.to_string()));
                }
                if v <= f64::from(i) {
                    expected.insert((format!("le{i}"), device.to_string()));
                }
            }
        }
        assert_eq!(firing, expected);
        // `a` fired gt0..=gt50 at 50.5; at 10.0 gt10..=gt50 resolved (and le10..=le50 fired).
        let resolved = g.0.active().filter(|i| i.state == State::Resolved && i.device == "a").count();
        assert_eq!(resolved, 41);
    }

    /// Single-row writes (one MQTT message each) through the cached plans:
    /// rules move between the idle index and the evaluated list as they gain
    /// and lose instances, and the firing set always equals the naive answer.
    #[test]
    fn single_row_batches_through_cached_plans_match_the_naive_answer() {
        let rules = gt_le_rules(30, 5);
        let feed = std::sync::Arc::new(Feed(std::sync::Mutex::new((Evaluator::new(rules, i64::MAX), Vec::new()))));
        let dir = tempfile::tempdir().unwrap();
        let db = telemark_engine::Database::open(dir.path(), telemark_engine::Options::default()).unwrap();
        db.add_write_observer(feed.clone());
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
        let mut last: BTreeMap<String, f64> = BTreeMap::new();
        let mut seed: u64 = 7;
        for k in 0..300i64 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let device = format!("d{}", (seed >> 33) % 5);
            let v = ((seed >> 40) % 170) as f64 - 10.0;
            let mut batch = telemark_engine::WriteBatch::new("t");
            batch.row(now + k).tag("device_id", device.as_str()).field("x", v);
            assert_eq!(db.write("db", &batch).unwrap().rows_written, 1);
            last.insert(device, v);
            let mut g = feed.0.lock().unwrap();
            if k % 20 == 19 {
                // Time passes: resolved instances go, their rules back to the idle index.
                let mut out = Vec::new();
                g.0.tick(chrono::Utc::now().timestamp_millis() + 3_600_000, &mut out);
            }
            let firing: std::collections::BTreeSet<(String, String)> =
                g.0.active().filter(|i| i.state == State::Firing).map(|i| (i.rule.clone(), i.device.clone())).collect();
            let mut expected = std::collections::BTreeSet::new();
            for (device, &v) in &last {
                for i in 0..30 {
                    let t = f64::from(i * 5);
                    if v > t {
                        expected.insert((format!("gt{i}"), device.clone()));
                    }
                    if v <= t {
                        expected.insert((format!("le{i}"), device.clone()));
                    }
                }
            }
            assert_eq!(firing, expected, "after write {k}");
        }
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
