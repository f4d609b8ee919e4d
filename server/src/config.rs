//! Configuration: a TOML file, overridden by command-line flags.
//! `telemark serve --print-config` prints the effective configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The whole configuration. Every field has a default, so an empty file (or
/// none) gives a working embedded server on loopback.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the data lives.
    pub data_dir: PathBuf,
    /// HTTP API address (SQL queries, health, metrics).
    pub http_addr: SocketAddr,
    /// Arrow Flight SQL (gRPC) address.
    pub flight_addr: SocketAddr,
    /// Allow binding a non-loopback address with no tokens configured (anyone can read and write).
    pub allow_unauthenticated: bool,
    /// Largest HTTP request body, in bytes.
    pub max_body_bytes: usize,
    /// Largest gRPC message, in bytes, each way.
    pub max_grpc_message_bytes: usize,
    /// Storage engine settings.
    pub storage: StorageConfig,
    /// TLS for the HTTP and Flight SQL listeners; off when absent.
    pub tls: Option<TlsConfig>,
    /// API tokens. With none, authentication is off (loopback only, unless allowed above).
    pub tokens: Vec<TokenConfig>,
    /// The MQTT listener, topic rules and broker bridges.
    pub mqtt: MqttConfig,
    /// Background compaction and retention passes.
    pub compaction: CompactionConfig,
    /// Retention rules, applied at every start (rules set over HTTP are kept
    /// in the data directory too; a rule here wins for its database/table).
    pub retention: Vec<RetentionConfig>,
    /// Object storage for the cold tier; tiering is off without a URL.
    pub object_store: ObjectStoreConfig,
    /// When partitions move to object storage.
    pub tiering: TieringConfig,
    /// Alert rules and where their notifications go.
    pub alert: AlertConfig,
    /// Rollups kept as data arrives: per-series aggregates of a table per interval.
    pub rollup: Vec<RollupConfig>,
}

/// `[[rollup]]`: keep `min`/`max`/`sum`/`count`/`last` of every numeric
/// field of `database.table` per `interval` (per series) in table `target`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollupConfig {
    /// Database.
    pub database: String,
    /// Source table.
    pub table: String,
    /// Bucket width, whole seconds: "1m", "1h", "1d".
    pub interval: String,
    /// Target table; default `<table>_<interval>`, e.g. `readings_1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// `[alert]`, with `[[alert.rule]]` and `[[alert.webhook]]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertConfig {
    /// Topic of MQTT notifications; `{rule}` and `{device}` are replaced.
    pub mqtt_topic: String,
    /// Rows older than this when written change no alert (a backfill sends nothing).
    pub backfill_cutoff: String,
    /// Database of the `alert_history` table (a row per transition).
    pub history_database: String,
    /// This server's URL as receivers should see it (`externalURL` in webhook bodies).
    pub external_url: String,
    /// The rules.
    pub rule: Vec<telemark_ingest::alerts::rule::RuleConfig>,
    /// Webhook receivers (Alertmanager v4 body).
    pub webhook: Vec<telemark_ingest::alerts::notify::WebhookConfig>,
}

impl Default for AlertConfig {
    fn default() -> Self {
        let o = telemark_ingest::alerts::AlertOptions::default();
        AlertConfig {
            mqtt_topic: o.mqtt_topic,
            backfill_cutoff: telemark_engine::format_duration(o.backfill_cutoff),
            history_database: o.history_database,
            external_url: o.external_url,
            rule: Vec::new(),
            webhook: Vec::new(),
        }
    }
}

impl AlertConfig {
    /// The options alerting runs with (it always runs: rules can also be
    /// added over HTTP).
    pub fn options(&self) -> Result<Option<telemark_ingest::alerts::AlertOptions>, String> {
        Ok(Some(telemark_ingest::alerts::AlertOptions {
            rules: self.rule.clone(),
            webhooks: self.webhook.clone(),
            mqtt_topic: self.mqtt_topic.clone(),
            backfill_cutoff: telemark_ingest::alerts::rule::duration(&self.backfill_cutoff, "alert.backfill_cutoff")?,
            history_database: self.history_database.clone(),
            external_url: self.external_url.clone(),
            ..telemark_ingest::alerts::AlertOptions::default()
        }))
    }
}

/// `[object_store]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectStoreConfig {
    /// `s3://bucket/prefix` (credentials, region and endpoint from the
    /// standard AWS_* environment variables) or `file:///dir`.
    pub url: Option<String>,
    /// A request's whole time limit, in seconds.
    pub timeout_secs: u64,
    /// Connection time limit, in seconds.
    pub connect_timeout_secs: u64,
    /// Retries of a failed request (5xx, timeout, reset), with backoff.
    pub max_retries: usize,
    /// No retry starts after this many seconds since the first attempt.
    pub retry_timeout_secs: u64,
}

impl Default for ObjectStoreConfig {
    fn default() -> Self {
        let o = telemark_engine::tiering::StoreOptions::default();
        ObjectStoreConfig {
            url: None,
            timeout_secs: o.timeout.as_secs(),
            connect_timeout_secs: o.connect_timeout.as_secs(),
            max_retries: o.max_retries,
            retry_timeout_secs: o.retry_timeout.as_secs(),
        }
    }
}

/// `[tiering]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TieringConfig {
    /// Partitions that ended longer ago than this move to object storage.
    pub after: String,
    /// Tier in the background (with compaction's passes).
    pub background: bool,
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
    /// Bytes of decoded cold data kept in memory for queries.
    pub cache_bytes: usize,
    /// Objects of at least this many bytes are uploaded in parts.
    pub multipart_bytes: u64,
    /// Bytes of cold column chunks cached on local disk (`<data_dir>/cache`); 0 = none.
    pub disk_cache_bytes: u64,
    /// Unreferenced objects younger than this are never garbage-collected.
    pub gc_grace: String,
    /// Per-database or per-table thresholds.
    pub rule: Vec<TieringRuleConfig>,
}

/// `[[tiering.rule]]`: `after` for one database, or one table of it; `after = "never"` keeps it local.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TieringRuleConfig {
    pub database: String,
    #[serde(default)]
    pub table: Option<String>,
    pub after: String,
}

impl Default for TieringConfig {
    fn default() -> Self {
        TieringConfig {
            after: "7d".into(),
            background: true,
            row_group_rows: 65_536,
            cache_bytes: 256 << 20,
            multipart_bytes: 64 << 20,
            disk_cache_bytes: 1 << 30,
            gc_grace: "1h".into(),
            rule: Vec::new(),
        }
    }
}

/// Compaction settings (see `telemark_engine::CompactionOptions`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompactionConfig {
    /// Run compaction and retention in the background.
    pub background: bool,
    /// Seconds between background passes.
    pub interval_secs: u64,
    /// Merge a time partition in the background once it has this many files.
    pub min_files: usize,
    /// Most input files per compaction job.
    pub max_input_files: usize,
    /// Most input bytes per job (the output is at most about as large).
    pub max_input_bytes: u64,
    /// Read plus written bytes per second a job may use; 0 = unlimited.
    pub bytes_per_second: u64,
    /// Start a job only with its input size plus this many bytes free on disk.
    pub min_free_bytes: u64,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        let o = telemark_engine::CompactionOptions::default();
        CompactionConfig {
            background: o.background,
            interval_secs: o.interval.as_secs(),
            min_files: o.min_files,
            max_input_files: o.max_input_files,
            max_input_bytes: o.max_input_bytes,
            bytes_per_second: o.bytes_per_second,
            min_free_bytes: o.min_free_bytes,
        }
    }
}

/// How long rows of a database (or one of its tables) are kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Database.
    pub database: String,
    /// Table; absent = every table of the database without a rule of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// How long, e.g. "30d", "12h", "1w".
    pub keep: String,
}

/// The MQTT listener, topic rules and bridges.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Run the MQTT listener(s).
    pub enabled: bool,
    /// Plain MQTT address.
    pub addr: SocketAddr,
    /// MQTT over TLS address; used only when [mqtt.tls] is configured.
    pub tls_addr: SocketAddr,
    /// Largest MQTT packet accepted, in bytes.
    pub max_packet_bytes: usize,
    /// Most MQTT connections at once.
    pub max_connections: usize,
    /// QoS 1/2 messages a connection may have awaiting acknowledgement (v5 Receive Maximum).
    pub max_inflight: u16,
    /// Seconds a new connection has to finish TLS and send CONNECT.
    pub connect_timeout_secs: u64,
    /// Certificate, key and device CA for the TLS listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<MqttTlsConfig>,
    /// Topic rules: which topics are stored where (see the README).
    #[serde(rename = "rule")]
    pub rules: Vec<telemark_ingest::TopicRuleConfig>,
    /// Existing brokers to subscribe to.
    #[serde(rename = "bridge", skip_serializing_if = "Vec::is_empty")]
    pub bridges: Vec<telemark_ingest::bridge::BridgeConfig>,
}

/// TLS for the MQTT listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttTlsConfig {
    /// Server certificate chain, PEM.
    pub cert: PathBuf,
    /// Private key, PEM.
    pub key: PathBuf,
    /// CA (PEM) that device certificates must chain to. With it, every
    /// device must present a certificate, whose CN (or SAN) is its identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<PathBuf>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        let o = telemark_ingest::mqtt::ListenerOptions::default();
        MqttConfig {
            enabled: true,
            addr: SocketAddr::from(([127, 0, 0, 1], 1883)),
            tls_addr: SocketAddr::from(([127, 0, 0, 1], 8883)),
            max_packet_bytes: o.max_packet_bytes,
            max_connections: o.max_connections,
            max_inflight: o.max_inflight,
            connect_timeout_secs: o.connect_timeout.as_secs(),
            tls: None,
            // Out of the box: JSON telemetry on sensors/<device>/telemetry lands in iot.telemetry.
            rules: vec![telemark_ingest::TopicRuleConfig {
                topic: Some("sensors/{device_id}/telemetry".into()),
                database: "iot".into(),
                table: Some("telemetry".into()),
                time_field: Some("timestamp".into()),
                ..Default::default()
            }],
            bridges: Vec::new(),
        }
    }
}

impl MqttConfig {
    /// The listener limits.
    pub fn listener_options(&self) -> telemark_ingest::mqtt::ListenerOptions {
        telemark_ingest::mqtt::ListenerOptions {
            max_packet_bytes: self.max_packet_bytes.max(64),
            max_connections: self.max_connections.max(1),
            max_inflight: self.max_inflight.max(1),
            connect_timeout: Duration::from_secs(self.connect_timeout_secs.max(1)),
        }
    }
}

/// Storage engine settings (see `telemark_engine::Options`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// "sync" (acknowledge after fsync; survives power loss) or "buffered"
    /// (acknowledge after write(2); survives a process crash).
    pub durability: String,
    /// Flush the write buffer at about this many bytes.
    pub max_buffer_bytes: usize,
    /// Flush the write buffer when its oldest row is this many seconds old.
    pub max_buffer_age_secs: u64,
    /// Width of a time partition, in seconds.
    pub partition_secs: u64,
    /// Start a new WAL file past this size.
    pub wal_file_bytes: u64,
    /// Writers wait while the write buffer (with buffers being flushed)
    /// holds about this many bytes: backpressure instead of unbounded memory.
    pub max_buffer_memory: usize,
}

/// Certificate and key files (PEM).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Server certificate chain, PEM.
    pub cert: PathBuf,
    /// Private key, PEM.
    pub key: PathBuf,
}

/// A token and what it may do.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// A name for logs.
    pub name: String,
    /// The secret, sent as `Authorization: Bearer <token>` (or `Token <token>`).
    pub token: String,
    /// Databases it may read; `["*"]` for all.
    #[serde(default)]
    pub read: Vec<String>,
    /// Databases it may write; `["*"]` for all.
    #[serde(default)]
    pub write: Vec<String>,
    /// Username for basic auth (Flight SQL handshake); the password is the token.
    #[serde(default)]
    pub username: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("telemark-data"),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8181)),
            flight_addr: SocketAddr::from(([127, 0, 0, 1], 8182)),
            allow_unauthenticated: false,
            max_body_bytes: 64 << 20,
            max_grpc_message_bytes: 16 << 20,
            storage: StorageConfig::default(),
            tls: None,
            tokens: Vec::new(),
            mqtt: MqttConfig::default(),
            compaction: CompactionConfig::default(),
            retention: Vec::new(),
            object_store: ObjectStoreConfig::default(),
            tiering: TieringConfig::default(),
            alert: AlertConfig::default(),
            rollup: Vec::new(),
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        let o = telemark_engine::Options::default();
        StorageConfig {
            durability: "sync".into(),
            max_buffer_bytes: o.max_buffer_bytes,
            max_buffer_age_secs: o.max_buffer_age.as_secs(),
            partition_secs: o.partition_duration.as_secs(),
            wal_file_bytes: o.wal_file_bytes,
            max_buffer_memory: o.max_buffer_memory,
        }
    }
}

impl Config {
    /// Reads a TOML file; unknown keys are errors that name them.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("config {}: {e}", path.display()))
    }

    /// The engine options this configuration asks for.
    pub fn engine_options(&self) -> Result<telemark_engine::Options, String> {
        let durability = match self.storage.durability.as_str() {
            "sync" => telemark_engine::Durability::Sync,
            "buffered" => telemark_engine::Durability::Buffered,
            other => return Err(format!("storage.durability must be \"sync\" or \"buffered\", got {other:?}")),
        };
        Ok(telemark_engine::Options {
            durability,
            max_buffer_bytes: self.storage.max_buffer_bytes,
            max_buffer_age: Duration::from_secs(self.storage.max_buffer_age_secs.max(1)),
            partition_duration: Duration::from_secs(self.storage.partition_secs.max(1)),
            wal_file_bytes: self.storage.wal_file_bytes,
            max_buffer_memory: self.storage.max_buffer_memory.max(1 << 20),
            compaction: telemark_engine::CompactionOptions {
                background: self.compaction.background,
                interval: Duration::from_secs(self.compaction.interval_secs.max(1)),
                min_files: self.compaction.min_files.max(2),
                max_input_files: self.compaction.max_input_files.max(2),
                max_input_bytes: self.compaction.max_input_bytes,
                bytes_per_second: self.compaction.bytes_per_second,
                min_free_bytes: self.compaction.min_free_bytes,
            },
            tiering: self.tiering_options()?,
            rollups: self.rollup_rules()?,
            ..telemark_engine::Options::default()
        })
    }

    /// The `[[rollup]]` rules, parsed.
    pub fn rollup_rules(&self) -> Result<Vec<telemark_engine::RollupRule>, String> {
        self.rollup
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let named = |e: String| format!("rollup {} ({}.{}): {e}", i + 1, r.database, r.table);
                telemark_engine::validate_database_name(&r.database).map_err(|e| named(e.to_string()))?;
                let interval = telemark_engine::parse_duration(&r.interval).map_err(|e| named(e.to_string()))?;
                let rule = telemark_engine::RollupRule::new(&r.database, &r.table, interval);
                Ok(match &r.target {
                    Some(t) => rule.with_target(t),
                    None => rule,
                })
            })
            .collect()
    }

    /// Tiering, when `[object_store] url` is set.
    fn tiering_options(&self) -> Result<Option<telemark_engine::tiering::TieringOptions>, String> {
        let Some(url) = &self.object_store.url else { return Ok(None) };
        let o = &self.object_store;
        let store_options = telemark_engine::tiering::StoreOptions {
            timeout: Duration::from_secs(o.timeout_secs.max(1)),
            connect_timeout: Duration::from_secs(o.connect_timeout_secs.max(1)),
            max_retries: o.max_retries,
            retry_timeout: Duration::from_secs(o.retry_timeout_secs.max(1)),
            ..telemark_engine::tiering::StoreOptions::default()
        };
        let store =
            telemark_engine::tiering::TierStore::from_url_with(url, &store_options).map_err(|e| e.to_string())?;
        let mut t = telemark_engine::tiering::TieringOptions::new(store);
        t.after = telemark_engine::parse_duration(&self.tiering.after).map_err(|e| format!("tiering.after: {e}"))?;
        t.background = self.tiering.background;
        for (i, r) in self.tiering.rule.iter().enumerate() {
            let after = match r.after.as_str() {
                "never" => None,
                text => Some(
                    telemark_engine::parse_duration(text)
                        .map_err(|e| format!("tiering rule {} (database {:?}): {e}", i + 1, r.database))?,
                ),
            };
            t.rules.push(telemark_engine::tiering::TieringRule {
                database: r.database.clone(),
                table: r.table.clone(),
                after,
            });
        }
        t.row_group_rows = self.tiering.row_group_rows.max(1);
        t.cache_bytes = self.tiering.cache_bytes;
        t.multipart_bytes = self.tiering.multipart_bytes.max(1);
        t.disk_cache_bytes = self.tiering.disk_cache_bytes;
        t.gc_grace =
            telemark_engine::parse_duration(&self.tiering.gc_grace).map_err(|e| format!("tiering.gc_grace: {e}"))?;
        Ok(Some(t))
    }

    /// The `[[retention]]` rules, parsed: (database, table, keep).
    pub fn retention_rules(&self) -> Result<Vec<(String, Option<String>, Duration)>, String> {
        self.retention
            .iter()
            .enumerate()
            .map(|(i, r)| {
                telemark_engine::validate_database_name(&r.database)
                    .map_err(|e| format!("retention rule {} : {e}", i + 1))?;
                let keep = telemark_engine::parse_duration(&r.keep)
                    .map_err(|e| format!("retention rule {} (database {:?}): {e}", i + 1, r.database))?;
                Ok((r.database.clone(), r.table.clone(), keep))
            })
            .collect()
    }

    /// Refuses to expose an unauthenticated server beyond loopback.
    pub fn check_exposure(&self) -> Result<(), String> {
        if !self.tokens.is_empty() || self.allow_unauthenticated {
            return Ok(());
        }
        let mut exposed = vec![("http_addr", self.http_addr), ("flight_addr", self.flight_addr)];
        if self.mqtt.enabled {
            exposed.push(("mqtt.addr", self.mqtt.addr));
            // Devices on the TLS listener with a client CA are authenticated by their certificates.
            if self.mqtt.tls.as_ref().is_some_and(|t| t.client_ca.is_none()) {
                exposed.push(("mqtt.tls_addr", self.mqtt.tls_addr));
            }
        }
        for (name, addr) in exposed {
            if !addr.ip().is_loopback() {
                return Err(format!(
                    "{name} = {addr} is not a loopback address and no tokens are configured, so anyone who can reach it \
                     could read and write all data. Configure [[tokens]] in the config file, or pass \
                     --allow-unauthenticated (allow_unauthenticated = true) if that is really what you want."
                ));
            }
        }
        Ok(())
    }

    /// The configuration as TOML, with every option.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot print the configuration: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults_and_unknown_keys_are_named() {
        let c: Config = toml::from_str("").unwrap();
        assert_eq!(c.http_addr.port(), 8181);
        assert!(c.check_exposure().is_ok());
        let e = toml::from_str::<Config>("htp_addr = \"1.2.3.4:1\"").unwrap_err().to_string();
        assert!(e.contains("htp_addr"), "{e}");
    }

    #[test]
    fn public_bind_without_tokens_is_refused() {
        let c: Config = toml::from_str("http_addr = \"0.0.0.0:8181\"").unwrap();
        let e = c.check_exposure().unwrap_err();
        assert!(e.contains("--allow-unauthenticated"), "{e}");
        let c: Config =
            toml::from_str("http_addr = \"0.0.0.0:8181\"\n[[tokens]]\nname = \"a\"\ntoken = \"t\"\nread = [\"*\"]")
                .unwrap();
        assert!(c.check_exposure().is_ok());
    }

    #[test]
    fn the_readme_alert_rules_are_valid() {
        let readme = include_str!("../../README.md");
        let section = readme.split("### Alerts").nth(1).and_then(|s| s.split("\n### ").next()).unwrap();
        let toml: String = section.split("```toml\n").skip(1).filter_map(|b| b.split("```").next()).collect();
        let c: Config = toml::from_str(&toml).unwrap();
        assert_eq!(c.alert.rule.len(), 4);
        for r in &c.alert.rule {
            telemark_ingest::alerts::rule::Rule::compile(r).unwrap();
        }
        assert!(c.alert.options().unwrap().is_some());
    }

    #[test]
    fn example_file_is_the_defaults() {
        let text = include_str!("../telemark.example.toml");
        let c: Config = toml::from_str(text).unwrap();
        assert_eq!(c.to_toml(), Config::default().to_toml(), "telemark.example.toml drifted from the defaults");
    }

    #[test]
    fn rollup_rules_parse_with_default_targets() {
        let c: Config = toml::from_str(
            "[[rollup]]\ndatabase = \"fleet\"\ntable = \"readings\"\ninterval = \"1h\"\n\
             [[rollup]]\ndatabase = \"fleet\"\ntable = \"diag\"\ninterval = \"1m\"\ntarget = \"diag_minutely\"",
        )
        .unwrap();
        let rules = c.rollup_rules().unwrap();
        assert_eq!(rules[0].target, "readings_1h");
        assert_eq!(rules[0].interval, Duration::from_secs(3600));
        assert_eq!(rules[1].target, "diag_minutely");
        let c: Config =
            toml::from_str("[[rollup]]\ndatabase = \"fleet\"\ntable = \"readings\"\ninterval = \"1 hour\"").unwrap();
        let e = c.rollup_rules().unwrap_err();
        assert!(e.contains("rollup 1 (fleet.readings)"), "{e}");
    }

    #[test]
    fn retention_rules_parse_and_bad_durations_are_named() {
        let c: Config = toml::from_str(
            "[[retention]]\ndatabase = \"fleet\"\nkeep = \"30d\"\n[[retention]]\ndatabase = \"fleet\"\ntable = \"diag\"\nkeep = \"12h\"",
        )
        .unwrap();
        let rules = c.retention_rules().unwrap();
        assert_eq!(rules[0], ("fleet".into(), None, Duration::from_secs(30 * 86_400)));
        assert_eq!(rules[1].1.as_deref(), Some("diag"));
        let c: Config = toml::from_str("[[retention]]\ndatabase = \"fleet\"\nkeep = \"30x\"").unwrap();
        let e = c.retention_rules().unwrap_err();
        assert!(e.contains("retention rule 1") && e.contains("30x"), "{e}");
    }

    #[test]
    fn printed_config_parses_back() {
        let c = Config::default();
        let back: Config = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(back.to_toml(), c.to_toml());
    }
}
