//! Alert rules evaluated inside Telemark, with notifications over MQTT and
//! webhooks.
//!
//! - [`rule`]: the rules (`threshold`: a field compared on every row as it
//!   is committed, with hysteresis; `offline`: a device silent for `after`).
//! - [`eval`]: instances and their states (pending, firing, resolved), the
//!   Prometheus semantics of `for` and `keep_firing_for`.
//! - [`journal`]: every state change is appended and fsynced before a
//!   notification leaves; the journal is also the outbox, so a restart
//!   neither forgets a firing alert nor loses an undelivered notification.
//! - [`notify`]: the MQTT payload, the Alertmanager v4 webhook body, and
//!   delivery with retries.
//!
//! Rows reach the evaluator through the engine's write observer
//! ([`telemark_engine::observe`]) right after they are durable, whatever
//! path wrote them (MQTT, HTTP, Flight SQL). A worker thread makes the
//! changes durable, writes them to the history table, and hands the
//! notifications to the sinks; a clock tick (every second) moves pending
//! alerts to firing and detects silent devices.
//!
//! Rows older than `backfill_cutoff` (10 minutes) when they are committed
//! change no alert state and count as no sign of life: a backfill of old
//! data sends nothing.

pub mod eval;
pub mod journal;
pub mod notify;
pub mod rule;
mod seen;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, mpsc};
use std::time::{Duration, Instant};

use serde::Serialize;
use telemark_engine::observe::{CommittedRows, WriteObserver};
use telemark_engine::{Database, WriteBatch};

use eval::{Change, Evaluator, Instance, State};
use journal::{Journal, Record};
use notify::{Delivered, Outgoing, WebhookConfig, WebhookStats};
use rule::{Rule, RuleConfig};

/// The sink name of MQTT notifications.
pub const MQTT_SINK: &str = "mqtt";

/// Table of alert transitions in [`AlertOptions::history_database`].
pub const HISTORY_TABLE: &str = "alert_history";

/// How alerting runs.
#[derive(Debug, Clone)]
pub struct AlertOptions {
    pub rules: Vec<RuleConfig>,
    pub webhooks: Vec<WebhookConfig>,
    /// Topic of MQTT notifications; `{rule}` and `{device}` are replaced.
    pub mqtt_topic: String,
    /// Rows older than this when committed change no alert.
    pub backfill_cutoff: Duration,
    /// How often pending alerts and silent devices are checked.
    pub tick: Duration,
    /// Database of the history table (every transition is a row).
    pub history_database: String,
    /// Shown in webhook bodies (`externalURL`, `generatorURL`).
    pub external_url: String,
    /// Resolved instances are forgotten this long after they resolve.
    pub forget_resolved_after: Duration,
}

impl Default for AlertOptions {
    fn default() -> Self {
        AlertOptions {
            rules: Vec::new(),
            webhooks: Vec::new(),
            mqtt_topic: "alerts/{rule}/{device}".into(),
            backfill_cutoff: Duration::from_secs(600),
            tick: Duration::from_secs(1),
            history_database: "_telemark".into(),
            external_url: String::new(),
            forget_resolved_after: Duration::from_secs(3600),
        }
    }
}

/// Runs `sql` rules' queries (the server implements it with the query engine).
pub trait SqlRunner: Send + Sync + std::fmt::Debug {
    /// Runs `sql` in `database` with `now()` = `at_ms`; the rows as labels
    /// (string columns) and value (the first numeric column).
    fn run(
        &self,
        database: &str,
        sql: &str,
        at_ms: i64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<eval::SqlRow>, String>> + Send>>;
}

/// Publishes MQTT notifications (the built-in broker implements it).
pub trait Publisher: Send + Sync + std::fmt::Debug {
    /// Publishes at QoS 1.
    fn publish(&self, topic: &str, payload: Vec<u8>, retain: bool);
}

/// Alerting counters.
#[derive(Debug, Default)]
pub struct AlertStats {
    /// Transitions made durable.
    pub transitions: AtomicU64,
    /// Notifications published over MQTT.
    pub mqtt_notifications: AtomicU64,
    /// Journal appends that failed (their notifications are retried).
    pub journal_errors: AtomicU64,
    /// History rows that could not be written.
    pub history_errors: AtomicU64,
    /// `sql` rule evaluations, failed evaluations, and ticks skipped because
    /// an evaluation took longer than `every`.
    pub sql_evaluations: AtomicU64,
    pub sql_errors: AtomicU64,
    pub sql_skipped: AtomicU64,
    /// Webhook counters, all webhooks together.
    pub webhooks: Arc<WebhookStats>,
}

/// An instance as the API lists it.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceView {
    pub rule: String,
    pub device: String,
    pub state: &'static str,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub value: f64,
    pub fingerprint: String,
    /// Wall clock (ms) since the condition holds.
    pub active_at: i64,
    pub fired_at: Option<i64>,
    pub resolved_at: Option<i64>,
}

enum Event {
    Changes(Vec<Change>),
    /// Offline rules met new devices: log them.
    Seen(Vec<seen::NewDevice>),
    Delivered(Delivered),
    Stop,
}

/// Tables some rule watches, by database (looked up without allocating on every write).
type Watched = HashMap<String, HashSet<String>>;

fn watched_by(rules: &[Rule]) -> Watched {
    let mut w = Watched::new();
    for r in rules {
        w.entry(r.config.database.clone()).or_default().insert(r.config.table.clone());
    }
    w
}

struct Shared {
    eval: Mutex<Evaluator>,
    /// (database, table) pairs some rule watches: writes to others skip the lock.
    watched: RwLock<Watched>,
    /// The rules by name (for notifications' sinks and annotations).
    rules: RwLock<HashMap<String, Rule>>,
    events: Mutex<mpsc::Sender<Event>>,
    stats: Arc<AlertStats>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Shared {
    /// Evaluates under the lock and queues the changes in the same order.
    fn evaluate(&self, f: impl FnOnce(&mut Evaluator, &mut Vec<Change>)) {
        let mut eval = lock(&self.eval);
        let mut changes = Vec::new();
        f(&mut eval, &mut changes);
        if !changes.is_empty() {
            let _ = lock(&self.events).send(Event::Changes(changes));
        }
        if !eval.seen_new.is_empty() {
            let new = std::mem::take(&mut eval.seen_new);
            let devices = new
                .into_iter()
                .filter_map(|(r, device)| {
                    let rule = eval.rules.get(r)?.config.name.clone();
                    let tags = eval.seen.get(r)?.get(&device)?.tags.clone();
                    Some(seen::NewDevice { rule, device, tags })
                })
                .collect();
            let _ = lock(&self.events).send(Event::Seen(devices));
        }
    }
}

#[derive(Debug)]
struct Observer(Arc<Shared>);

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("watched", &self.watched).finish_non_exhaustive()
    }
}

impl WriteObserver for Observer {
    fn committed(&self, rows: &CommittedRows<'_>) {
        let watched = self.0.watched.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let hit = watched.get(rows.database()).is_some_and(|tables| tables.contains(rows.table()));
        drop(watched);
        if !hit {
            return;
        }
        let now = now_ms();
        self.0.evaluate(|e, out| e.rows(rows, now, out));
    }
}

/// The running alert evaluator.
pub struct Alerts {
    shared: Arc<Shared>,
    /// Rules from the config file (not changeable over HTTP).
    config_rules: Vec<RuleConfig>,
    /// Rules set over HTTP, saved in `rules_path`; its lock serializes changes.
    api_rules: Mutex<Vec<RuleConfig>>,
    rules_path: PathBuf,
    /// Sink names rules may use.
    sinks: HashSet<String>,
    mqtt_topic: String,
    sql: Option<Arc<dyn SqlRunner>>,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// One task per `sql` rule, with the configuration it runs.
    sql_tasks: Mutex<HashMap<String, (RuleConfig, tokio::task::JoinHandle<()>)>>,
}

/// Where a rule comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleSource {
    /// `[[alert.rule]]` in the config file.
    Config,
    /// `PUT /api/v3/alerts/rules/NAME` (kept in the data directory).
    Api,
}

/// Why a rule change was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleError {
    /// The rule is not valid (the message says why).
    Invalid(String),
    /// No rule has this name.
    NotFound(String),
    /// The rule is defined in the config file.
    FromConfig(String),
    /// Saving the rules failed.
    Storage(String),
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuleError::Invalid(m) | RuleError::Storage(m) => f.write_str(m),
            RuleError::NotFound(n) => write!(f, "no alert rule named {n:?}"),
            RuleError::FromConfig(n) => {
                write!(f, "alert rule {n:?} is defined in the config file; change it there")
            }
        }
    }
}

/// The rules set over HTTP, as saved.
#[derive(Debug, Default, Serialize, serde::Deserialize)]
struct SavedRules {
    rules: Vec<RuleConfig>,
}

/// Checks every rule and the sinks they name; compiled, in order.
fn compile_all(configs: &[RuleConfig], sinks: &HashSet<String>) -> Result<Vec<Rule>, String> {
    let mut names = HashSet::new();
    let mut rules = Vec::new();
    for c in configs {
        let r = Rule::compile(c)?;
        if !names.insert(c.name.clone()) {
            return Err(format!("alert rule {:?} is defined twice", c.name));
        }
        for sink in &c.sinks {
            if !sinks.contains(sink) {
                let mut known: Vec<&String> = sinks.iter().collect();
                known.sort();
                return Err(format!(
                    "alert rule {:?}: unknown sink {sink:?} (known: {known:?}; \"mqtt\" needs the MQTT listener)",
                    c.name
                ));
            }
        }
        rules.push(r);
    }
    Ok(rules)
}

impl std::fmt::Debug for Alerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerts").field("config_rules", &self.config_rules.len()).finish_non_exhaustive()
    }
}

/// What the worker owns.
struct Worker {
    db: Arc<Database>,
    journal: Journal,
    next_seq: u64,
    shared: Arc<Shared>,
    options: AlertOptions,
    publisher: Option<Arc<dyn Publisher>>,
    webhooks: HashMap<String, tokio::sync::mpsc::UnboundedSender<Outgoing>>,
    stats: Arc<AlertStats>,
    seen: seen::SeenStore,
    /// Records whose append failed, retried first next time.
    unwritten: Vec<Record>,
    /// The sequence number of each instance's last notification.
    notified: HashMap<(String, String), u64>,
    /// Deliveries made and not yet recorded.
    acks: Vec<Record>,
}

impl Alerts {
    /// Starts alerting: opens the journal in `dir`, restores the instances
    /// and the outbox, registers the write observer on `db`, and starts the
    /// worker thread and one delivery task per webhook (on the current
    /// tokio runtime).
    pub fn start(
        dir: &Path,
        options: AlertOptions,
        db: Arc<Database>,
        publisher: Option<Arc<dyn Publisher>>,
        sql: Option<Arc<dyn SqlRunner>>,
    ) -> Result<Arc<Alerts>, String> {
        let mut sink_names: HashSet<String> = options.webhooks.iter().map(|w| w.name.clone()).collect();
        if sink_names.len() != options.webhooks.len() || sink_names.contains(MQTT_SINK) {
            return Err("alert webhooks need distinct names, none of them \"mqtt\"".into());
        }
        for w in &options.webhooks {
            if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                return Err(format!("alert webhook {:?}: url {:?} is not http:// or https://", w.name, w.url));
            }
            rule::duration(&w.give_up_after, &format!("alert webhook {:?}: give_up_after", w.name))?;
        }
        if publisher.is_some() {
            sink_names.insert(MQTT_SINK.into());
        }
        compile_all(&options.rules, &sink_names)?;
        // Rules set over HTTP before; a config rule of the same name wins.
        let rules_path = dir.join("rules.json");
        let mut api_rules: Vec<RuleConfig> = match std::fs::read(&rules_path) {
            Ok(data) => {
                serde_json::from_slice::<SavedRules>(&data)
                    .map_err(|e| format!("{}: {e} (fix or remove the file)", rules_path.display()))?
                    .rules
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(format!("{}: {e}", rules_path.display())),
        };
        api_rules.retain(|r| {
            let shadowed = options.rules.iter().any(|c| c.name == r.name);
            if shadowed {
                tracing::warn!(rule = %r.name, "an alert rule set over HTTP has the name of a config rule; the config rule wins");
            }
            !shadowed
        });
        let all: Vec<RuleConfig> = options.rules.iter().chain(&api_rules).cloned().collect();
        let rules = compile_all(&all, &sink_names).map_err(|e| format!("{}: {e}", rules_path.display()))?;
        let forget = now_ms() - i64::try_from(options.forget_resolved_after.as_millis()).unwrap_or(i64::MAX);
        let (journal, recovered) = Journal::open(dir, forget)?;
        if recovered.torn_bytes > 0 {
            tracing::warn!(bytes = recovered.torn_bytes, "cut a torn tail of the alert journal left by a crash");
        }
        let cutoff = i64::try_from(options.backfill_cutoff.as_nanos()).unwrap_or(i64::MAX);
        let mut evaluator = Evaluator::new(rules.clone(), cutoff);
        for mut inst in recovered.instances.into_values() {
            if matches!(inst.state, State::Pending | State::Firing) {
                newest_stored(&db, &rules, &mut inst, cutoff);
            }
            evaluator.restore(inst);
        }
        // Devices offline rules knew: seen no earlier than now (a restart or
        // downtime is not silence); those already offline have firing instances.
        let seen_store = seen::SeenStore::open(dir, &mut evaluator, now_ms());
        let watched = watched_by(&rules);
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(AlertStats::default());
        let shared = Arc::new(Shared {
            eval: Mutex::new(evaluator),
            watched: RwLock::new(watched),
            rules: RwLock::new(rules.iter().map(|r| (r.config.name.clone(), r.clone())).collect()),
            events: Mutex::new(tx.clone()),
            stats: stats.clone(),
        });

        let mut webhooks = HashMap::new();
        for w in &options.webhooks {
            let (wtx, wrx) = tokio::sync::mpsc::unbounded_channel();
            let give_up = rule::duration(&w.give_up_after, "give_up_after")?;
            let events = Mutex::new(tx.clone());
            tokio::spawn(notify::deliver(
                w.clone(),
                give_up,
                options.external_url.clone(),
                wrx,
                move |d| {
                    let _ = lock(&events).send(Event::Delivered(d));
                },
                stats.webhooks.clone(),
            ));
            webhooks.insert(w.name.clone(), wtx);
        }
        let mut worker = Worker {
            db: db.clone(),
            journal,
            next_seq: recovered.next_seq,
            shared: shared.clone(),
            options: options.clone(),
            publisher,
            webhooks,
            stats,
            seen: seen_store,
            unwritten: Vec::new(),
            notified: HashMap::new(),
            acks: Vec::new(),
        };
        // The broker's retained state is gone after a restart: publish every instance's state again.
        for inst in lock(&shared.eval).active() {
            worker.notified.insert((inst.rule.clone(), inst.device.clone()), inst.seq);
            worker.publish_state(&worker.outgoing(inst.seq, inst), true);
        }
        // Undelivered notifications, in order.
        for (seq, _, inst, sinks) in recovered.outbox {
            let n = worker.outgoing(seq, &inst);
            worker.dispatch(&n, &sinks);
        }
        worker.record_acks();
        let handle = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("telemark-alerts".into())
                .spawn(move || worker.run(&shared, &rx))
                .map_err(|e| format!("cannot start the alert thread: {e}"))?
        };
        db.add_write_observer(Arc::new(Observer(shared.clone())));
        tracing::info!(rules = rules.len(), webhooks = options.webhooks.len(), "alerting started");
        let alerts = Arc::new(Alerts {
            shared,
            config_rules: options.rules,
            api_rules: Mutex::new(api_rules),
            rules_path,
            sinks: sink_names,
            mqtt_topic: options.mqtt_topic,
            sql,
            worker: Mutex::new(Some(handle)),
            sql_tasks: Mutex::new(HashMap::new()),
        });
        alerts.sync_sql_tasks(&rules)?;
        Ok(alerts)
    }

    /// A device's MQTT client connected or pinged (a sign of life for offline rules).
    pub fn client_alive(&self, client_id: &str) {
        let now = now_ms();
        self.shared.evaluate(|e, out| e.alive(client_id, now, out));
    }

    /// Every instance that is pending, firing or recently resolved.
    pub fn instances(&self) -> Vec<InstanceView> {
        let eval = lock(&self.shared.eval);
        let mut v: Vec<InstanceView> = eval
            .active()
            .map(|i| {
                let rule = eval.rules.iter().find(|r| r.config.name == i.rule);
                InstanceView {
                    rule: i.rule.clone(),
                    device: i.device.clone(),
                    state: i.state.as_str(),
                    labels: i.labels.clone(),
                    annotations: rule.map(|r| render_annotations(r, i)).unwrap_or_default(),
                    value: i.value,
                    fingerprint: i.fingerprint.clone(),
                    active_at: i.active_at,
                    fired_at: i.fired_at,
                    resolved_at: i.resolved_at,
                }
            })
            .collect();
        v.sort_by(|a, b| (&a.rule, &a.device).cmp(&(&b.rule, &b.device)));
        v
    }

    /// Every rule (config file first, then those set over HTTP), with where it comes from.
    pub fn rules(&self) -> Vec<(RuleConfig, RuleSource)> {
        let api = lock(&self.api_rules);
        let config = self.config_rules.iter().map(|r| (r.clone(), RuleSource::Config));
        config.chain(api.iter().map(|r| (r.clone(), RuleSource::Api))).collect()
    }

    /// Creates or replaces a rule (not one from the config file), saved so
    /// it survives restarts. Returns whether it was new. An unchanged rule
    /// keeps its alerts; a changed one starts over (its firing alerts resolve).
    pub fn put_rule(&self, config: RuleConfig) -> Result<bool, RuleError> {
        if self.config_rules.iter().any(|r| r.name == config.name) {
            return Err(RuleError::FromConfig(config.name));
        }
        let mut api = lock(&self.api_rules);
        let mut next = api.clone();
        let created = match next.iter_mut().find(|r| r.name == config.name) {
            Some(r) => {
                *r = config;
                false
            }
            None => {
                next.push(config);
                true
            }
        };
        self.apply(&next).map_err(RuleError::Invalid)?;
        self.save(&next)?;
        *api = next;
        Ok(created)
    }

    /// Deletes a rule set over HTTP; its firing alerts resolve.
    pub fn delete_rule(&self, name: &str) -> Result<(), RuleError> {
        if self.config_rules.iter().any(|r| r.name == name) {
            return Err(RuleError::FromConfig(name.to_string()));
        }
        let mut api = lock(&self.api_rules);
        let next: Vec<RuleConfig> = api.iter().filter(|r| r.name != name).cloned().collect();
        if next.len() == api.len() {
            return Err(RuleError::NotFound(name.to_string()));
        }
        self.apply(&next).map_err(RuleError::Invalid)?;
        self.save(&next)?;
        *api = next;
        Ok(())
    }

    fn save(&self, api: &[RuleConfig]) -> Result<(), RuleError> {
        let data = serde_json::to_vec_pretty(&SavedRules { rules: api.to_vec() })
            .map_err(|e| RuleError::Storage(e.to_string()))?;
        telemark_engine::fs::write_file_atomic(&self.rules_path, &data)
            .map_err(|e| RuleError::Storage(format!("saving the alert rules: {e}")))
    }

    /// Runs the config rules and `api`: checked first, then swapped in.
    fn apply(&self, api: &[RuleConfig]) -> Result<(), String> {
        let all: Vec<RuleConfig> = self.config_rules.iter().chain(api).cloned().collect();
        let rules = compile_all(&all, &self.sinks)?;
        if self.sql.is_none()
            && let Some(r) = rules.iter().find(|r| matches!(r.check, rule::Check::Sql { .. }))
        {
            return Err(format!(
                "alert rule {:?}: kind sql needs the query engine (not available here)",
                r.config.name
            ));
        }
        let now = now_ms();
        self.shared.evaluate(|e, out| {
            e.set_rules(rules.clone(), now, out);
            let watched = watched_by(&rules);
            *self.shared.watched.write().unwrap_or_else(std::sync::PoisonError::into_inner) = watched;
            *self.shared.rules.write().unwrap_or_else(std::sync::PoisonError::into_inner) =
                rules.iter().map(|r| (r.config.name.clone(), r.clone())).collect();
        });
        self.sync_sql_tasks(&rules)
    }

    /// One task per `sql` rule: new rules start one, changed or removed rules' tasks stop.
    fn sync_sql_tasks(&self, rules: &[Rule]) -> Result<(), String> {
        let mut tasks = lock(&self.sql_tasks);
        tasks.retain(|name, (config, task)| {
            let keep = rules.iter().any(|r| r.config.name == *name && r.config == *config);
            if !keep {
                task.abort();
            }
            keep
        });
        for rule in rules {
            let rule::Check::Sql { query, every, delay } = &rule.check else { continue };
            if tasks.contains_key(&rule.config.name) {
                continue;
            }
            let runner = self.sql.clone().ok_or_else(|| {
                format!("alert rule {:?}: kind sql needs the query engine (not available here)", rule.config.name)
            })?;
            let task = sql_rule(self.shared.clone(), runner, rule.config.clone(), query.clone(), *every, *delay);
            tasks.insert(rule.config.name.clone(), (rule.config.clone(), tokio::spawn(task)));
        }
        Ok(())
    }

    /// Counters.
    pub fn stats(&self) -> &AlertStats {
        &self.shared.stats
    }

    /// Metrics: (name, type, help, value).
    pub fn counters(&self) -> Vec<(&'static str, &'static str, &'static str, u64)> {
        let s = &self.shared.stats;
        let w = &s.webhooks;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (pending, firing) = {
            let eval = lock(&self.shared.eval);
            let count = |st: State| eval.active().filter(|i| i.state == st).count() as u64;
            (count(State::Pending), count(State::Firing))
        };
        vec![
            ("telemark_alerts_firing", "gauge", "Alert instances firing.", firing),
            (
                "telemark_alerts_pending",
                "gauge",
                "Alert instances pending (condition true, not yet for `for`).",
                pending,
            ),
            ("telemark_alert_transitions_total", "counter", "Alert state changes made durable.", get(&s.transitions)),
            (
                "telemark_alert_mqtt_notifications_total",
                "counter",
                "Notifications published over MQTT.",
                get(&s.mqtt_notifications),
            ),
            (
                "telemark_alert_webhook_deliveries_total",
                "counter",
                "Notifications a webhook accepted.",
                get(&w.delivered),
            ),
            (
                "telemark_alert_webhook_failed_attempts_total",
                "counter",
                "Webhook requests that failed (retried with backoff).",
                get(&w.failed_attempts),
            ),
            (
                "telemark_alert_webhook_dropped_total",
                "counter",
                "Notifications dropped: rejected with a 4xx, or undelivered after give_up_after.",
                get(&w.dropped),
            ),
            (
                "telemark_alert_journal_errors_total",
                "counter",
                "Failed appends to the alert journal.",
                get(&s.journal_errors),
            ),
            (
                "telemark_alert_sql_evaluations_total",
                "counter",
                "Queries of sql alert rules run.",
                get(&s.sql_evaluations),
            ),
            (
                "telemark_alert_sql_errors_total",
                "counter",
                "Queries of sql alert rules that failed.",
                get(&s.sql_errors),
            ),
            (
                "telemark_alert_sql_skipped_total",
                "counter",
                "Evaluations of sql alert rules skipped because the previous one was still running.",
                get(&s.sql_skipped),
            ),
            (
                "telemark_alert_history_errors_total",
                "counter",
                "Alert history rows that could not be written.",
                get(&s.history_errors),
            ),
        ]
    }

    /// Stops the worker after it has written what it holds (webhook tasks
    /// end with the runtime; what they have not delivered stays in the journal).
    pub fn stop(&self) {
        lock(&self.sql_tasks).values().for_each(|(_, t)| t.abort());
        let _ = lock(&self.shared.events).send(Event::Stop);
        if let Some(h) = lock(&self.worker).take() {
            let _ = h.join();
        }
    }
}

impl crate::mqtt::presence::ClientHooks for Alerts {
    fn alive(&self, client_id: &str) {
        self.client_alive(client_id);
    }

    /// A filter that can match a rule's notification topics needs read
    /// access to the rule's database.
    fn may_subscribe(&self, grant: &crate::mqtt::Grant, filter: &str) -> Result<(), String> {
        for (r, _) in self.rules() {
            let sample = self.mqtt_topic.replace("{rule}", &r.name).replace("{device}", "x");
            if crate::topic::filter_matches(filter, &sample) && !grant.may_read(&r.database) {
                return Err(format!(
                    "{filter:?} matches the notifications of alert rule {:?}, which need read access to database {:?}",
                    r.name, r.database
                ));
            }
        }
        Ok(())
    }
}

/// A `sql` rule's schedule: runs the query every `every` (aligned to the
/// wall clock), one evaluation at a time; ticks that pass while a slow
/// query runs are skipped and counted, never queued. A failed query changes
/// no alert.
async fn sql_rule(
    shared: Arc<Shared>,
    runner: Arc<dyn SqlRunner>,
    config: RuleConfig,
    query: String,
    every: Duration,
    delay: Duration,
) {
    let every_ms = i64::try_from(every.as_millis()).unwrap_or(i64::MAX).max(1);
    let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
    let mut next = (now_ms() / every_ms + 1) * every_ms;
    loop {
        let wait = u64::try_from(next - now_ms()).unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let stats = &shared.stats;
        match runner.run(&config.database, &query, next - delay_ms).await {
            Ok(rows) => {
                stats.sql_evaluations.fetch_add(1, Ordering::Relaxed);
                let now = now_ms();
                shared.evaluate(|e, out| e.sql_result(&config.name, rows, now, out));
            }
            Err(e) => {
                stats.sql_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(rule = %config.name, error = %e, "an alert rule's query failed; its alerts keep their state");
            }
        }
        next += every_ms;
        let now = now_ms();
        while next <= now {
            stats.sql_skipped.fetch_add(1, Ordering::Relaxed);
            next += every_ms;
        }
    }
}

/// Moves a restored instance's newest row time up to the newest row stored
/// for its device (the journal records only state changes), so rows older
/// than those written before the restart do not move it.
fn newest_stored(db: &Database, rules: &[Rule], inst: &mut Instance, cutoff_ns: i64) {
    use arrow_array::Array as _;
    let Some(rule) = rules.iter().find(|r| r.config.name == inst.rule) else { return };
    if matches!(rule.check, rule::Check::Offline { .. } | rule::Check::Sql { .. }) {
        return;
    }
    let c = &rule.config;
    if inst.labels.get(&c.device_tag) != Some(&inst.device) {
        return; // keyed by its whole tag set: no single tag to look it up by
    }
    let from = now_ms().saturating_mul(1_000_000).saturating_sub(cutoff_ns).max(inst.last_time);
    let threshold = match &rule.check {
        rule::Check::Threshold { field, op, value, .. } => Some((field.as_str(), *op, *value)),
        _ => None,
    };
    let mut columns = vec!["time"];
    columns.extend(threshold.map(|t| t.0));
    let req = telemark_engine::ScanRequest::new(c.database.as_str(), c.table.as_str())
        .filter_tag(c.device_tag.as_str(), [inst.device.as_str()])
        .time_range(from, i64::MAX)
        .project(columns);
    let Ok(scan) = db.scan(&req) else { return };
    for batch in scan.flatten() {
        let Some(t) = batch.column(0).as_any().downcast_ref::<arrow_array::TimestampNanosecondArray>() else {
            continue;
        };
        for i in (0..t.len()).filter(|&i| t.is_valid(i)) {
            if t.value(i) <= inst.last_time {
                continue;
            }
            inst.last_time = t.value(i);
            // The value shown is that of the newest matching row, as before the restart.
            if let Some((_, op, threshold)) = threshold
                && let Some(v) = batch.columns().get(1).and_then(|col| number_at(col.as_ref(), i))
                && op.holds(v, threshold)
            {
                inst.value = v;
            }
        }
    }
}

/// A numeric cell as f64.
fn number_at(col: &dyn arrow_array::Array, i: usize) -> Option<f64> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type, UInt64Type};
    if col.is_null(i) {
        return None;
    }
    match col.data_type() {
        arrow_schema::DataType::Float64 => Some(col.as_primitive::<Float64Type>().value(i)),
        arrow_schema::DataType::Int64 => Some(col.as_primitive::<Int64Type>().value(i) as f64),
        arrow_schema::DataType::UInt64 => Some(col.as_primitive::<UInt64Type>().value(i) as f64),
        arrow_schema::DataType::Boolean => Some(f64::from(u8::from(col.as_boolean().value(i)))),
        _ => None,
    }
}

fn render_annotations(rule: &Rule, i: &Instance) -> BTreeMap<String, String> {
    rule.config.annotations.iter().map(|(k, t)| (k.clone(), rule::render(t, &i.labels, i.value))).collect()
}

impl Worker {
    fn run(&mut self, shared: &Shared, rx: &mpsc::Receiver<Event>) {
        let mut next_tick = Instant::now() + self.options.tick;
        loop {
            let timeout = next_tick.saturating_duration_since(Instant::now());
            let mut stop = false;
            let mut events = Vec::new();
            match rx.recv_timeout(timeout) {
                Ok(e) => events.push(e),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => stop = true,
            }
            if Instant::now() >= next_tick {
                next_tick = Instant::now() + self.options.tick;
                let now = now_ms();
                shared.evaluate(|e, out| e.tick(now, out));
            }
            while let Ok(e) = rx.try_recv() {
                events.push(e);
            }
            let mut changes = Vec::new();
            let mut records = std::mem::take(&mut self.unwritten);
            let mut new_devices = Vec::new();
            for e in events {
                match e {
                    Event::Changes(c) => changes.extend(c),
                    Event::Seen(d) => new_devices.extend(d),
                    Event::Delivered(d) => {
                        records.push(Record::Delivered { seq: d.seq, sink: d.sink, dropped: d.dropped })
                    }
                    Event::Stop => stop = true,
                }
            }
            for mut c in changes {
                let seq = self.next_seq;
                self.next_seq += 1;
                let key = (c.instance.rule.clone(), c.instance.device.clone());
                let sinks = if c.notify { self.sinks_of(&c.instance.rule) } else { Vec::new() };
                if c.notify {
                    self.notified.insert(key.clone(), seq);
                }
                c.instance.seq = self.notified.get(&key).copied().unwrap_or(0);
                records.push(Record::Change { seq, at: now_ms(), instance: c.instance, sinks });
            }
            if let Err(e) = self.journal.append(&records) {
                // Nothing leaves before it is durable: keep the records and try again.
                self.stats.journal_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "appending to the alert journal failed; notifications wait");
                self.unwritten = records;
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
            let transitions = records.iter().filter(|r| matches!(r, Record::Change { .. })).count();
            self.stats.transitions.fetch_add(transitions as u64, Ordering::Relaxed);
            self.write_history(&records);
            for r in &records {
                if let Record::Change { seq, instance, sinks, .. } = r
                    && !sinks.is_empty()
                {
                    let n = self.outgoing(*seq, instance);
                    self.dispatch(&n, sinks);
                }
            }
            self.record_acks();
            if let Err(e) = self.seen.append(&new_devices) {
                tracing::warn!(error = %e, "logging newly seen devices failed; saving the whole list");
                self.seen.fold(&lock(&shared.eval));
            } else if self.seen.should_fold() {
                self.seen.fold(&lock(&shared.eval));
            }
            if stop {
                return;
            }
        }
    }

    fn sinks_of(&self, rule: &str) -> Vec<String> {
        let rules = self.shared.rules.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(r) = rules.get(rule) else { return Vec::new() };
        if r.config.sinks.is_empty() {
            let mut all: Vec<String> = self.webhooks.keys().cloned().collect();
            all.sort();
            if self.publisher.is_some() {
                all.insert(0, MQTT_SINK.into());
            }
            all
        } else {
            r.config.sinks.clone()
        }
    }

    fn outgoing(&self, seq: u64, inst: &Instance) -> Outgoing {
        let rules = self.shared.rules.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let annotations = rules.get(&inst.rule).map(|r| render_annotations(r, inst)).unwrap_or_default();
        Outgoing { seq, instance: inst.clone(), annotations }
    }

    fn topic(&self, inst: &Instance) -> String {
        self.options
            .mqtt_topic
            .replace("{rule}", &inst.rule)
            .replace("{device}", &inst.device.replace(['/', '+', '#'], "_"))
    }

    fn publish_state(&self, n: &Outgoing, retain: bool) {
        if let Some(p) = &self.publisher {
            p.publish(&self.topic(&n.instance), notify::mqtt_payload(n), retain);
        }
    }

    /// Sends a durable notification to its sinks.
    fn dispatch(&mut self, n: &Outgoing, sinks: &[String]) {
        let mut acks = Vec::new();
        for s in sinks {
            if s == MQTT_SINK {
                self.publish_state(n, true);
                self.stats.mqtt_notifications.fetch_add(1, Ordering::Relaxed);
                acks.push(Record::Delivered { seq: n.seq, sink: s.clone(), dropped: self.publisher.is_none() });
            } else if let Some(tx) = self.webhooks.get(s) {
                let _ = tx.send(n.clone());
            } else {
                tracing::warn!(sink = %s, seq = n.seq, "a notification's sink no longer exists; dropped");
                acks.push(Record::Delivered { seq: n.seq, sink: s.clone(), dropped: true });
            }
        }
        self.acks.extend(acks);
    }

    /// Records the deliveries `dispatch` made (one append for many notifications).
    fn record_acks(&mut self) {
        let acks = std::mem::take(&mut self.acks);
        if let Err(e) = self.journal.append(&acks) {
            tracing::warn!(error = %e, "recording MQTT deliveries failed; they may be repeated after a restart");
        }
    }

    /// Every transition as a row of the history table.
    fn write_history(&self, records: &[Record]) {
        let mut batch = WriteBatch::new(HISTORY_TABLE);
        for r in records {
            let Record::Change { at, instance: i, .. } = r else { continue };
            let labels = serde_json::to_string(&i.labels).unwrap_or_default();
            batch
                .row(at.saturating_mul(1_000_000))
                .tag("rule", i.rule.as_str())
                .tag("device", i.device.as_str())
                .field("state", i.state.as_str())
                .field("value", i.value)
                .field("labels", labels)
                .field("fingerprint", i.fingerprint.as_str())
                .field("active_at", i.active_at.saturating_mul(1_000_000));
        }
        if batch.is_empty() {
            return;
        }
        match self.db.write(&self.options.history_database, &batch) {
            Ok(o) if o.rejected.is_empty() => {}
            Ok(o) => {
                self.stats.history_errors.fetch_add(o.rejected.len() as u64, Ordering::Relaxed);
                tracing::warn!(rejected = ?o.rejected.first(), "alert history rows were rejected");
            }
            Err(e) => {
                self.stats.history_errors.fetch_add(batch.len() as u64, Ordering::Relaxed);
                tracing::warn!(error = %e, "writing alert history failed");
            }
        }
    }
}
