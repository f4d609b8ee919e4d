//! The fleet workload: trucks reporting `readings` and `diagnostics` at a
//! fixed interval, the shape of the TSBS IoT use case.
//!
//! Every truck has the tags name, fleet, driver, model, device_version,
//! load_capacity, fuel_capacity and nominal_fuel_consumption. Each interval
//! it sends one `readings` row (latitude, longitude, elevation, velocity,
//! heading, grade, fuel_consumption) and one `diagnostics` row (load,
//! fuel_state, status), with realistic decimal precision: values walk
//! randomly and are rounded to the digits a device would send. Like real
//! gateways, about 1 % of points are missing, 0.5 % are sent twice, and
//! about 1 % arrive late, in a later batch (out of order).
//!
//! Everything is a pure function of the seed.

use std::fmt::Write as _;

/// SplitMix64: tiny, fast, and stable across versions (the data must not
/// change when a dependency does).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        #[expect(clippy::cast_precision_loss, reason = "53 random bits")]
        let v = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        v
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

const FLEETS: [&str; 5] = ["East", "West", "North", "South", "Central"];
const DRIVERS: [&str; 10] = ["Albert", "Derek", "Rodney", "Seth", "Trish", "Andy", "Zeke", "Yvonne", "Mia", "Ola"];
const MODELS: [(&str, u32, u32, u32); 3] =
    [("F-150", 2000, 200, 15), ("G-2000", 5000, 300, 19), ("H-2", 1500, 150, 12)];
const VERSIONS: [&str; 4] = ["v1.0", "v1.5", "v2.0", "v2.3"];

/// One truck's fixed tags and moving state.
#[derive(Debug, Clone)]
pub struct Truck {
    /// `truck_N`.
    pub name: String,
    /// Fleet.
    pub fleet: &'static str,
    /// Driver.
    pub driver: &'static str,
    /// Model.
    pub model: &'static str,
    /// Firmware.
    pub device_version: &'static str,
    /// kg.
    pub load_capacity: u32,
    /// l.
    pub fuel_capacity: u32,
    /// l/100 km.
    pub nominal_fuel_consumption: u32,
    lat: f64,
    lon: f64,
    elevation: f64,
    velocity: f64,
    heading: f64,
    fuel: f64,
    load: f64,
}

/// A generated row.
#[derive(Debug, Clone)]
pub struct Row {
    /// `readings` or `diagnostics`.
    pub table: &'static str,
    /// Index of the truck.
    pub truck: usize,
    /// Nanoseconds since the epoch.
    pub time: i64,
    /// `(field, value, decimals)`; `decimals = None` marks an integer field.
    pub fields: Vec<(&'static str, f64, Option<usize>)>,
}

/// Generator settings.
#[derive(Debug, Clone, Copy)]
pub struct FleetSpec {
    /// Number of trucks.
    pub trucks: usize,
    /// Hours of data.
    pub hours: f64,
    /// Seconds between reports.
    pub interval_secs: u64,
    /// Seed.
    pub seed: u64,
    /// First timestamp (ns).
    pub start_ns: i64,
}

impl Default for FleetSpec {
    fn default() -> Self {
        FleetSpec { trucks: 100, hours: 1.0, interval_secs: 10, seed: 1, start_ns: 1_733_011_200_000_000_000 }
    }
}

fn round(v: f64, decimals: usize) -> f64 {
    let scale = 10f64.powi(i32::try_from(decimals).unwrap_or(0));
    (v * scale).round() / scale
}

/// The fleet: trucks and the stream of rows, one interval at a time.
#[derive(Debug, Clone)]
pub struct Fleet {
    spec: FleetSpec,
    /// The trucks.
    pub trucks: Vec<Truck>,
    rng: Rng,
    step: u64,
    steps: u64,
    late: Vec<Row>,
}

impl Fleet {
    /// A fleet per the spec.
    pub fn new(spec: FleetSpec) -> Fleet {
        let mut rng = Rng::new(spec.seed);
        let trucks = (0..spec.trucks)
            .map(|i| {
                let pick = |rng: &mut Rng, n: usize| usize::try_from(rng.below(n as u64)).unwrap_or(0);
                let (model, load_capacity, fuel_capacity, nominal) = MODELS[pick(&mut rng, MODELS.len())];
                Truck {
                    name: format!("truck_{i}"),
                    fleet: FLEETS[pick(&mut rng, FLEETS.len())],
                    driver: DRIVERS[pick(&mut rng, DRIVERS.len())],
                    model,
                    device_version: VERSIONS[pick(&mut rng, VERSIONS.len())],
                    load_capacity,
                    fuel_capacity,
                    nominal_fuel_consumption: nominal,
                    lat: 30.0 + rng.unit() * 30.0,
                    lon: -120.0 + rng.unit() * 60.0,
                    elevation: rng.unit() * 500.0,
                    velocity: rng.unit() * 80.0,
                    heading: rng.unit() * 360.0,
                    fuel: f64::from(fuel_capacity) * (0.2 + rng.unit() * 0.8),
                    load: f64::from(load_capacity) * rng.unit(),
                }
            })
            .collect();
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "a step count"
        )]
        let steps = ((spec.hours * 3600.0) / spec.interval_secs.max(1) as f64).round() as u64;
        Fleet { spec, trucks, rng, step: 0, steps, late: Vec::new() }
    }

    /// Rows per full interval (both tables).
    pub fn rows_per_step(&self) -> usize {
        self.trucks.len() * 2
    }

    /// Number of intervals.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The rows of the next interval (plus late rows from earlier ones), or `None` at the end.
    pub fn next_step(&mut self) -> Option<Vec<Row>> {
        if self.step >= self.steps {
            if self.late.is_empty() {
                return None;
            }
            return Some(std::mem::take(&mut self.late));
        }
        let interval_ns = i64::try_from(self.spec.interval_secs).unwrap_or(10) * 1_000_000_000;
        let time = self.spec.start_ns + i64::try_from(self.step).unwrap_or(0) * interval_ns;
        self.step += 1;
        let mut rows = std::mem::take(&mut self.late);
        for i in 0..self.trucks.len() {
            let rng = &mut self.rng;
            let Some(t) = self.trucks.get_mut(i) else { continue };
            // Move: a random walk, stopping now and then.
            let moving = rng.unit() > 0.1;
            t.velocity = if moving { (t.velocity + (rng.unit() - 0.5) * 6.0).clamp(0.0, 100.0) } else { 0.0 };
            t.heading = (t.heading + (rng.unit() - 0.5) * 10.0).rem_euclid(360.0);
            let dist_deg = t.velocity / 3600.0 * 10.0 / 111.0;
            t.lat = (t.lat + dist_deg * t.heading.to_radians().cos()).clamp(-89.0, 89.0);
            t.lon = (t.lon + dist_deg * t.heading.to_radians().sin()).clamp(-179.0, 179.0);
            t.elevation = (t.elevation + (rng.unit() - 0.5) * 4.0).clamp(0.0, 3000.0);
            let grade = (rng.unit() - 0.5) * 8.0;
            let consumption =
                f64::from(t.nominal_fuel_consumption) * (0.6 + rng.unit() * 0.8) * f64::from(u8::from(moving));
            t.fuel = (t.fuel - consumption / 3600.0).max(0.0);
            if t.fuel < 1.0 || rng.unit() < 0.0005 {
                t.fuel = f64::from(t.fuel_capacity);
            }
            if rng.unit() < 0.01 {
                t.load = f64::from(t.load_capacity) * rng.unit();
            }
            let status = if moving { 0.0 } else { f64::from(u8::try_from(1 + rng.below(4)).unwrap_or(1)) };
            let readings = Row {
                table: "readings",
                truck: i,
                time,
                fields: vec![
                    ("latitude", round(t.lat, 5), Some(5)),
                    ("longitude", round(t.lon, 5), Some(5)),
                    ("elevation", round(t.elevation, 0), Some(0)),
                    ("velocity", round(t.velocity, 1), Some(1)),
                    ("heading", round(t.heading, 0), Some(0)),
                    ("grade", round(grade, 1), Some(1)),
                    ("fuel_consumption", round(consumption, 1), Some(1)),
                ],
            };
            let diagnostics = Row {
                table: "diagnostics",
                truck: i,
                time,
                fields: vec![
                    ("load", round(t.load, 0), Some(0)),
                    ("fuel_state", round(t.fuel / f64::from(t.fuel_capacity), 2), Some(2)),
                    ("status", status, None),
                ],
            };
            for row in [readings, diagnostics] {
                let r = rng.unit();
                if r < 0.01 {
                    continue; // missing
                } else if r < 0.02 {
                    self.late.push(row); // arrives with the next interval
                } else if r < 0.025 {
                    rows.push(row.clone()); // sent twice
                    rows.push(row);
                } else {
                    rows.push(row);
                }
            }
        }
        Some(rows)
    }

    /// Appends a row as line protocol (seconds precision is enough for the
    /// interval, but nanoseconds keep it general).
    pub fn line_protocol(&self, row: &Row, out: &mut String) {
        let Some(t) = self.trucks.get(row.truck) else { return };
        let _ = write!(
            out,
            "{},name={},fleet={},driver={},model={},device_version={},load_capacity={},fuel_capacity={},nominal_fuel_consumption={} ",
            row.table,
            t.name,
            t.fleet,
            t.driver,
            t.model,
            t.device_version,
            t.load_capacity,
            t.fuel_capacity,
            t.nominal_fuel_consumption
        );
        for (i, (k, v, decimals)) in row.fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            match decimals {
                Some(d) => {
                    let _ = write!(out, "{k}={v:.d$}", d = *d);
                }
                None => {
                    #[expect(clippy::cast_possible_truncation, reason = "integer fields hold small integers")]
                    let _ = write!(out, "{k}={}i", *v as i64);
                }
            }
        }
        let _ = writeln!(out, " {}", row.time);
    }

    /// The row as an MQTT message: topic `fleet/{fleet}/{name}/{table}` and a
    /// JSON payload with a millisecond `timestamp` and the other tags.
    pub fn mqtt_json(&self, row: &Row) -> (String, String) {
        let Some(t) = self.trucks.get(row.truck) else { return (String::new(), String::new()) };
        let mut obj = serde_json::Map::new();
        obj.insert("timestamp".into(), (row.time / 1_000_000).into());
        obj.insert("driver".into(), t.driver.into());
        obj.insert("model".into(), t.model.into());
        obj.insert("device_version".into(), t.device_version.into());
        for (k, v, decimals) in &row.fields {
            let value: serde_json::Value = match decimals {
                #[expect(clippy::cast_possible_truncation, reason = "integer fields hold small integers")]
                None => (*v as i64).into(),
                Some(d) => format!("{v:.d$}", d = *d)
                    .parse::<serde_json::Number>()
                    .map_or(serde_json::Value::Null, serde_json::Value::Number),
            };
            obj.insert((*k).to_string(), value);
        }
        (format!("fleet/{}/{}/{}", t.fleet, t.name, row.table), serde_json::Value::Object(obj).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_by_seed_and_shaped_like_the_spec() {
        let spec = FleetSpec { trucks: 20, hours: 0.1, ..FleetSpec::default() };
        let generate = |spec| {
            let mut f = Fleet::new(spec);
            let mut out = String::new();
            while let Some(rows) = f.next_step() {
                for r in &rows {
                    f.line_protocol(r, &mut out);
                }
            }
            out
        };
        let a = generate(spec);
        assert_eq!(a, generate(spec));
        assert_ne!(a, generate(FleetSpec { seed: 2, ..spec }));
        let lines = a.lines().count();
        let full = 20 * 2 * 36;
        assert!(lines > full * 95 / 100 && lines < full * 103 / 100, "{lines} vs {full}");
        let first = a.lines().next().unwrap();
        assert!(first.starts_with("readings,name=truck_0,fleet="), "{first}");
    }

    #[test]
    fn json_messages_keep_decimals() {
        let mut f = Fleet::new(FleetSpec { trucks: 1, hours: 0.01, ..FleetSpec::default() });
        let rows = f.next_step().unwrap();
        let (topic, payload) = f.mqtt_json(&rows[0]);
        assert!(topic.starts_with("fleet/") && topic.ends_with("/truck_0/readings"), "{topic}");
        let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(v["timestamp"], 1_733_011_200_000i64);
    }
}
