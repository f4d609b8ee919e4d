//! Telemark's end-to-end benchmarks.
//!
//! - [`fleet`]: the fleet workload generator (the shape of the TSBS IoT use
//!   case), deterministic by seed, as line protocol or MQTT JSON messages;
//! - `telemark-fleet-gen`: writes the generated data to stdout or files;
//! - `telemark-lp-load`: posts line protocol to any InfluxDB-compatible
//!   `/write` endpoint (Telemark, VictoriaMetrics, InfluxDB) and reports points/s;
//! - `telemark-mqtt-load`: MQTT publishers (QoS 0/1) against the listener,
//!   with PUBLISH→PUBACK and PUBLISH→queryable latencies.

pub mod fleet;
pub mod stats;
