//! `telemark-ingest`: how data gets into Telemark from devices and gateways.
//!
//! - [`line_protocol`]: a fast, zero-copy InfluxDB line protocol parser whose
//!   errors name the line and column; [`lines`] turns a body into per-table
//!   [`telemark_engine::WriteBatch`]es and maps rejections back to lines.
//! - [`json`]: JSON telemetry payloads (flat, nested, arrays of readings).
//! - [`rules`]: topic rules, the rules engine mapping MQTT topics to tables,
//!   with [`select`] for AWS IoT-style `SELECT … FROM 'topic' WHERE …`.
//! - [`mqtt`]: the MQTT 3.1.1/5.0 listener (plain and TLS with X.509 device
//!   certificates), with durable acknowledgements through [`sink::Sink`].
//! - [`bridge`]: subscribing to an existing broker.
//! - [`alerts`]: alert rules evaluated on ingest, notifying over MQTT and webhooks.
//!
//! This crate knows the engine's write API and nothing of HTTP, gRPC or the
//! server's configuration files; the server wires it up.
//!
//! ```
//! use telemark_ingest::line_protocol::Precision;
//! use telemark_ingest::lines::parse_body;
//!
//! let body = b"readings,device_id=truck-7 speed=61.5,moving=true 1700000000\nbad line";
//! let parsed = parse_body(body, Precision::Seconds, 0, &[]);
//! assert_eq!(parsed.tables[0].batch.len(), 1);
//! assert_eq!(parsed.errors[0].line, 2);
//! ```

pub mod alerts;
pub mod bridge;
pub mod json;
pub mod line_protocol;
pub mod lines;
pub mod mqtt;
pub mod rules;
pub mod select;
pub mod sink;
pub mod stats;
pub mod topic;

pub use rules::{PayloadFormat, RuleSet, TopicRuleConfig};
pub use sink::Sink;
