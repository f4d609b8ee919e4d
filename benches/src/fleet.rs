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
//! about 1 % arrive late, 10 seconds to 5 minutes after rows newer than
//! them (out of order).
//!
//! The trucks behave like a fleet, so the TSBS queries find something:
//! - a quarter are long-haul (team-driven, on the road day and night); the
//!   rest are regional, with breaks every 2–4.5 hours and a 10–12 hour rest
//!   after 6–10 hours of driving, parked (velocity 0) meanwhile;
//! - tanks drain with distance × consumption; drivers refuel below 15–30 %,
//!   a third of them only below 4–8 %; refuelling is a 5–15 minute stop;
//! - regional loads change at stops, long-haul loads stay;
//! - status is 0 but for a rare transient fault code, and during a
//!   breakdown (15–90 minutes stationary, reporting a fault code 1–4 in
//!   most rows); 15 % of trucks break down about every 10 hours on the
//!   road, the others about every 500 hours.
//!
//! Fleets are dealt evenly, and each fleet's first two trucks play planned
//! parts at the end of the data, so even a two-truck fleet answers the
//! "current state" queries (low fuel, high load, stationary, long driving)
//! and short runs have a breakdown: one is a long-hauler that ends heavily
//! loaded on a tank below 10 % (it fills up just enough at its last stop),
//! the other a regional truck parked, loaded over 90 %, for the last 15
//! minutes to 2 hours; the first of those breaks down once mid-run.
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

/// The tags an MQTT message carries in its JSON payload (fleet and name are
/// topic levels), in the order of the line protocol.
pub const MQTT_TAG_KEYS: [&str; 6] =
    ["driver", "model", "device_version", "load_capacity", "fuel_capacity", "nominal_fuel_consumption"];

/// How a truck is driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Duty {
    /// Team-driven long haul: on the road day and night, stopping only in
    /// traffic, to refuel, or when it breaks down.
    LongHaul,
    /// One driver: 2–4.5 h at the wheel between 30–45 min breaks, and a
    /// 10–12 h rest (with loading) after 6–10 h of driving (EU-style
    /// driving-time rules).
    Regional,
}

/// What a truck is doing during an interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Activity {
    /// On the road.
    Driving,
    /// Stopped in traffic.
    Traffic,
    /// Parked for a break (`rest = false`) or the daily rest.
    Parked { rest: bool },
    /// Stopped at a pump.
    Refuelling,
    /// Broken down, the diagnostics reporting fault `code`.
    BrokenDown { code: u8 },
}

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
    duty: Duty,
    /// Cruising speed, km/h.
    cruise: f64,
    /// Tank fraction below which the driver heads for a pump.
    refuel_below: f64,
    /// Chance of breaking down in an interval on the road.
    breakdown_chance: f64,
    activity: Activity,
    /// Intervals left in the current stop after this one.
    stop_left: u64,
    /// Regional: driving intervals to the next break.
    block_left: u64,
    /// Regional: driving intervals to the next daily rest.
    day_left: u64,
    /// Driving intervals to the pump, once the tank is low.
    to_pump: Option<u64>,
    /// The tank level (fraction) this truck ends the data on: it fills
    /// up just enough at its last stop (the low-fuel truck of its fleet).
    final_fuel: Option<f64>,
    /// The last fill-up is done.
    last_fill: bool,
    /// Tank fraction burned since the start, for the last fill-up.
    burned: f64,
    /// The interval its final rest starts (the parked truck of its fleet).
    rest_at: Option<u64>,
    /// A planned breakdown: first interval and length.
    breakdown_at: Option<(u64, u64)>,
    /// The load it takes on for its final rest (kg).
    final_load: Option<f64>,
    lat: f64,
    lon: f64,
    elevation: f64,
    velocity: f64,
    heading: f64,
    grade: f64,
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

/// Uniform in [lo, hi).
fn between(rng: &mut Rng, lo: f64, hi: f64) -> f64 {
    lo + rng.unit() * (hi - lo)
}

/// Converts durations to whole intervals.
#[derive(Debug, Clone, Copy)]
struct Clock {
    interval_secs: f64,
}

impl Clock {
    /// Intervals in `secs` (at least one).
    fn steps(self, secs: f64) -> u64 {
        #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "a positive step count")]
        let n = (secs / self.interval_secs).round().max(1.0) as u64;
        n
    }

    /// Intervals in a random duration between `lo` and `hi` seconds.
    fn between(self, rng: &mut Rng, lo: f64, hi: f64) -> u64 {
        self.steps(between(rng, lo, hi))
    }
}

const MIN: f64 = 60.0;
const HOUR: f64 = 3600.0;

/// The part a truck plays in its fleet. The first two trucks dealt to each
/// fleet get the two planned parts (in a seeded order), so even a two-truck
/// fleet has a truck in each state the fleet queries look for at the end of
/// the data; every other truck is drawn at random.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Long haul through to the end, heavily loaded, running its tank
    /// below 10 % on the way to a pump.
    LowOnFuel,
    /// Regional, loaded to over 90 % and parked for its rest from 15
    /// minutes to 2 hours before the end; the first of these also breaks
    /// down once mid-run, for 20–60 minutes.
    ParkedAtEnd { breaks_down: bool },
    /// Everything drawn at random.
    Random,
}

impl Truck {
    /// Tank fraction burned per interval at cruising speed and nominal consumption.
    fn nominal_burn(&self, clock: Clock) -> f64 {
        self.cruise * clock.interval_secs / HOUR * f64::from(self.nominal_fuel_consumption)
            / 100.0
            / f64::from(self.fuel_capacity)
    }

    /// The truck's plan and starting state for a run of `steps` intervals.
    fn plan(&mut self, part: Part, rng: &mut Rng, clock: Clock, steps: u64) {
        let capacity_kg = f64::from(self.load_capacity);
        self.duty = match part {
            Part::LowOnFuel => Duty::LongHaul,
            Part::ParkedAtEnd { .. } => Duty::Regional,
            Part::Random if rng.unit() < 0.25 => Duty::LongHaul,
            Part::Random => Duty::Regional,
        };
        self.cruise = match self.duty {
            Duty::LongHaul => between(rng, 78.0, 92.0),
            Duty::Regional => between(rng, 45.0, 75.0),
        };
        self.velocity = self.cruise;
        // About a third of drivers run the tank low before refuelling.
        self.refuel_below = if part == Part::LowOnFuel || rng.unit() < 0.3 {
            between(rng, 0.04, 0.08)
        } else {
            between(rng, 0.15, 0.3)
        };
        // A minority of trucks is breakdown-prone (about once every 10 hours
        // on the road); the rest break down about once in 500 hours.
        self.breakdown_chance = match part {
            Part::LowOnFuel => 0.0,
            _ if rng.unit() < 0.15 => clock.interval_secs / (10.0 * HOUR),
            _ => clock.interval_secs / (500.0 * HOUR),
        };
        self.load = capacity_kg
            * match self.duty {
                Duty::LongHaul if part == Part::LowOnFuel => between(rng, 0.92, 0.99),
                Duty::LongHaul => between(rng, 0.5, 1.0),
                Duty::Regional => rng.unit(),
            };
        self.fuel = f64::from(self.fuel_capacity) * between(rng, 0.3, 1.0);
        if self.duty == Duty::Regional {
            // Somewhere into its day and its current block.
            self.block_left = clock.between(rng, 0.0, 4.5 * HOUR);
            self.day_left = clock.between(rng, 0.0, 10.0 * HOUR).max(self.block_left);
            if part == Part::Random && rng.unit() < 0.35 {
                // Part-way through its daily rest.
                self.activity = Activity::Parked { rest: true };
                self.stop_left = clock.between(rng, 0.0, 12.0 * HOUR);
                self.velocity = 0.0;
            }
        }
        #[expect(clippy::cast_precision_loss, reason = "a step count")]
        let run = steps as f64;
        #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "a step within the run")]
        let at = |fraction: f64| (run * fraction) as u64;
        match part {
            Part::LowOnFuel => {
                let target = between(rng, 0.03, 0.07);
                self.final_fuel = Some(target);
                // A run short enough for one tank starts on just enough fuel.
                #[expect(clippy::cast_precision_loss, reason = "a step count")]
                let need = self.nominal_burn(clock) * steps as f64;
                if need + target <= 0.95 {
                    self.fuel = f64::from(self.fuel_capacity) * (need + target);
                    self.last_fill = true;
                }
            }
            Part::ParkedAtEnd { breaks_down } => {
                // Short runs squeeze the plan but keep its order: driving, the
                // breakdown, driving again, parked.
                if breaks_down {
                    let start = at(between(rng, 0.2, 0.35));
                    let len = clock.between(rng, 20.0 * MIN, 60.0 * MIN).min(at(0.25).max(1));
                    self.breakdown_at = Some((start, len));
                }
                let before_end = clock.between(rng, 15.0 * MIN, 2.0 * HOUR).min(at(0.3).max(1));
                self.rest_at = Some(steps.saturating_sub(before_end));
                self.final_load = Some(capacity_kg * between(rng, 0.92, 0.99));
            }
            Part::Random => {}
        }
    }

    /// Fills the tank at the end of a stop at a pump.
    fn fill_up(&mut self, rng: &mut Rng, clock: Clock, step: u64, steps: u64) {
        let full = between(rng, 0.95, 1.0);
        let mut level = full;
        if let Some(target) = self.final_fuel {
            // Enough to reach the end of the data on `target`, judged by
            // what the truck has burned per interval so far (after an hour).
            #[expect(clippy::cast_precision_loss, reason = "step counts")]
            let per_step = if step >= clock.steps(HOUR) { self.burned / step as f64 } else { self.nominal_burn(clock) };
            #[expect(clippy::cast_precision_loss, reason = "a step count")]
            let need = per_step * steps.saturating_sub(step) as f64 + target;
            if need < full {
                level = need.max(self.fuel / f64::from(self.fuel_capacity));
                self.last_fill = true;
            }
        }
        self.fuel = self.fuel.max(f64::from(self.fuel_capacity) * level);
    }

    /// Starts a stop of `steps` intervals (this one included).
    fn stop(&mut self, activity: Activity, steps: u64) {
        self.activity = activity;
        self.stop_left = steps.saturating_sub(1);
    }

    /// Advances one interval; returns (grade, fuel consumption, status).
    fn advance(&mut self, rng: &mut Rng, clock: Clock, step: u64, steps: u64) -> (f64, f64, f64) {
        // A stop that has run its course ends.
        if self.activity != Activity::Driving {
            if self.stop_left == 0 {
                match self.activity {
                    Activity::Refuelling => self.fill_up(rng, clock, step, steps),
                    Activity::Parked { rest } if self.duty == Duty::Regional => {
                        self.block_left = clock.between(rng, 2.0 * HOUR, 4.5 * HOUR);
                        if rest {
                            self.day_left = clock.between(rng, 6.0 * HOUR, 10.0 * HOUR);
                        }
                        if rng.unit() < 0.5 {
                            // Delivered, or picked up.
                            self.load = f64::from(self.load_capacity) * rng.unit();
                        }
                    }
                    _ => {}
                }
                self.activity = Activity::Driving;
            } else {
                self.stop_left -= 1;
            }
        }
        // The planned parts.
        if let Some((at, len)) = self.breakdown_at
            && at == step
        {
            let code = u8::try_from(1 + rng.below(4)).unwrap_or(1);
            self.stop(Activity::BrokenDown { code }, len);
        }
        if self.rest_at == Some(step) {
            self.stop(Activity::Parked { rest: true }, u64::MAX);
            if let Some(load) = self.final_load {
                self.load = load;
            }
        }
        // On the road: what happens next.
        if self.activity == Activity::Driving {
            if self.fuel < f64::from(self.fuel_capacity) * self.refuel_below
                && self.to_pump.is_none()
                && !self.last_fill
            {
                self.to_pump = Some(clock.between(rng, 5.0 * MIN, 30.0 * MIN));
            }
            if rng.unit() < self.breakdown_chance {
                let code = u8::try_from(1 + rng.below(4)).unwrap_or(1);
                self.stop(Activity::BrokenDown { code }, clock.between(rng, 15.0 * MIN, 90.0 * MIN));
            } else if self.to_pump == Some(0) {
                self.to_pump = None;
                self.stop(Activity::Refuelling, clock.between(rng, 5.0 * MIN, 15.0 * MIN));
            } else if self.duty == Duty::Regional && self.day_left == 0 {
                self.stop(Activity::Parked { rest: true }, clock.between(rng, 10.0 * HOUR, 12.0 * HOUR));
            } else if self.duty == Duty::Regional && self.block_left == 0 {
                self.stop(Activity::Parked { rest: false }, clock.between(rng, 30.0 * MIN, 45.0 * MIN));
            } else if rng.unit()
                < match self.duty {
                    Duty::LongHaul => 0.002,
                    Duty::Regional => 0.01,
                }
            {
                self.stop(Activity::Traffic, 1 + rng.below(6));
            }
        }
        let mut consumption = 0.0;
        if self.activity == Activity::Driving {
            self.block_left = self.block_left.saturating_sub(1);
            self.day_left = self.day_left.saturating_sub(1);
            self.to_pump = self.to_pump.map(|n| n.saturating_sub(1));
            // Mean-reverting to the cruising speed (and pulling away after a stop).
            self.velocity =
                (self.velocity + 0.1 * (self.cruise - self.velocity) + (rng.unit() - 0.5) * 4.0).clamp(3.0, 110.0);
            self.heading = (self.heading + (rng.unit() - 0.5) * 10.0).rem_euclid(360.0);
            let km = self.velocity * clock.interval_secs / HOUR;
            let dist_deg = km / 111.0;
            self.lat = (self.lat + dist_deg * self.heading.to_radians().cos()).clamp(-89.0, 89.0);
            self.lon = (self.lon + dist_deg * self.heading.to_radians().sin()).clamp(-179.0, 179.0);
            self.elevation = (self.elevation + (rng.unit() - 0.5) * 4.0).clamp(0.0, 3000.0);
            self.grade = (rng.unit() - 0.5) * 8.0;
            consumption = f64::from(self.nominal_fuel_consumption) * between(rng, 0.8, 1.2);
            let litres = (km * consumption / 100.0).min(self.fuel);
            self.fuel -= litres;
            self.burned += litres / f64::from(self.fuel_capacity);
        } else {
            self.velocity = 0.0;
        }
        let status = match self.activity {
            // Most of a broken-down truck's reports carry the fault code.
            Activity::BrokenDown { code } if rng.unit() < 0.9 => f64::from(code),
            Activity::BrokenDown { .. } => 0.0,
            // A transient fault now and then.
            _ if rng.unit() < 0.002 => f64::from(u8::try_from(1 + rng.below(4)).unwrap_or(1)),
            _ => 0.0,
        };
        (self.grade, consumption, status)
    }
}

/// The fleet: trucks and the stream of rows, one interval at a time.
#[derive(Debug, Clone)]
pub struct Fleet {
    spec: FleetSpec,
    clock: Clock,
    /// The trucks.
    pub trucks: Vec<Truck>,
    rng: Rng,
    step: u64,
    steps: u64,
    /// Rows held back, with the interval they are sent after.
    late: Vec<(u64, Row)>,
}

impl Fleet {
    /// A fleet per the spec.
    pub fn new(spec: FleetSpec) -> Fleet {
        let mut rng = Rng::new(spec.seed);
        #[expect(clippy::cast_precision_loss, reason = "seconds")]
        let clock = Clock { interval_secs: spec.interval_secs.max(1) as f64 };
        #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "a step count")]
        let steps = ((spec.hours * HOUR) / clock.interval_secs).round() as u64;
        let pick = |rng: &mut Rng, n: usize| usize::try_from(rng.below(n as u64)).unwrap_or(0);
        // Fleets are dealt like cards, a shuffled deck of the five for every
        // five trucks, so they stay the same size; which of a fleet's first
        // two trucks plays which planned part is a coin flip per fleet.
        let mut deck = FLEETS;
        let mut low_fuel_first = [false; FLEETS.len()];
        for flip in &mut low_fuel_first {
            *flip = rng.unit() < 0.5;
        }
        let mut planned_breakdown = false;
        let trucks = (0..spec.trucks)
            .map(|i| {
                if i % FLEETS.len() == 0 {
                    for k in (1..deck.len()).rev() {
                        deck.swap(k, pick(&mut rng, k + 1));
                    }
                }
                let fleet_index = FLEETS.iter().position(|f| *f == deck[i % FLEETS.len()]).unwrap_or(0);
                let part = match (i / FLEETS.len(), low_fuel_first.get(fleet_index).copied().unwrap_or(true)) {
                    (0, true) | (1, false) => Part::LowOnFuel,
                    (0, false) | (1, true) => {
                        let breaks_down = !planned_breakdown;
                        planned_breakdown = true;
                        Part::ParkedAtEnd { breaks_down }
                    }
                    _ => Part::Random,
                };
                let (model, load_capacity, fuel_capacity, nominal) = MODELS[pick(&mut rng, MODELS.len())];
                let mut truck = Truck {
                    name: format!("truck_{i}"),
                    fleet: deck[i % FLEETS.len()],
                    driver: DRIVERS[pick(&mut rng, DRIVERS.len())],
                    model,
                    device_version: VERSIONS[pick(&mut rng, VERSIONS.len())],
                    load_capacity,
                    fuel_capacity,
                    nominal_fuel_consumption: nominal,
                    duty: Duty::Regional,
                    cruise: 0.0,
                    refuel_below: 0.0,
                    breakdown_chance: 0.0,
                    activity: Activity::Driving,
                    stop_left: 0,
                    block_left: 0,
                    day_left: 0,
                    to_pump: None,
                    final_fuel: None,
                    last_fill: false,
                    burned: 0.0,
                    rest_at: None,
                    breakdown_at: None,
                    final_load: None,
                    lat: 30.0 + rng.unit() * 30.0,
                    lon: -120.0 + rng.unit() * 60.0,
                    elevation: rng.unit() * 500.0,
                    velocity: 0.0,
                    heading: rng.unit() * 360.0,
                    grade: 0.0,
                    fuel: 0.0,
                    load: 0.0,
                };
                truck.plan(part, &mut rng, clock, steps);
                truck
            })
            .collect();
        Fleet { spec, clock, trucks, rng, step: 0, steps, late: Vec::new() }
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
            let mut late = std::mem::take(&mut self.late);
            late.sort_by_key(|(due, _)| *due);
            return Some(late.into_iter().map(|(_, row)| row).collect());
        }
        let interval_ns = i64::try_from(self.spec.interval_secs).unwrap_or(10) * 1_000_000_000;
        let step = self.step;
        let time = self.spec.start_ns + i64::try_from(step).unwrap_or(0) * interval_ns;
        self.step += 1;
        let mut rows = Vec::with_capacity(self.rows_per_step() + self.late.len());
        for i in 0..self.trucks.len() {
            let rng = &mut self.rng;
            let Some(t) = self.trucks.get_mut(i) else { continue };
            let (grade, consumption, status) = t.advance(rng, self.clock, step, self.steps);
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
                    self.late.push((step + 1 + rng.below(30), row)); // held back, sent after newer rows
                } else if r < 0.025 {
                    rows.push(row.clone()); // sent twice
                    rows.push(row);
                } else {
                    rows.push(row);
                }
            }
        }
        let (due, held): (Vec<_>, Vec<_>) = std::mem::take(&mut self.late).into_iter().partition(|(d, _)| *d <= step);
        self.late = held;
        rows.extend(due.into_iter().map(|(_, row)| row));
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
    /// JSON payload with a millisecond `timestamp`, the tags driver, model
    /// and device_version, and the fields.
    pub fn mqtt_json(&self, row: &Row) -> (String, String) {
        self.json_message(row, &MQTT_TAG_KEYS[..3])
    }

    /// [`Fleet::mqtt_json`] with every tag of the line protocol that the
    /// topic does not hold (also load_capacity, fuel_capacity and
    /// nominal_fuel_consumption, as JSON numbers): a rule with
    /// `tag_keys` = [`MQTT_TAG_KEYS`] stores the row the line protocol stores.
    pub fn mqtt_json_all_tags(&self, row: &Row) -> (String, String) {
        self.json_message(row, &MQTT_TAG_KEYS)
    }

    fn json_message(&self, row: &Row, tags: &[&str]) -> (String, String) {
        let Some(t) = self.trucks.get(row.truck) else { return (String::new(), String::new()) };
        let mut obj = serde_json::Map::new();
        obj.insert("timestamp".into(), (row.time / 1_000_000).into());
        for key in tags {
            let value: serde_json::Value = match *key {
                "driver" => t.driver.into(),
                "model" => t.model.into(),
                "device_version" => t.device_version.into(),
                "load_capacity" => t.load_capacity.into(),
                "fuel_capacity" => t.fuel_capacity.into(),
                "nominal_fuel_consumption" => t.nominal_fuel_consumption.into(),
                _ => continue,
            };
            obj.insert((*key).to_string(), value);
        }
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
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    const TEN_MINUTES_NS: i64 = 600_000_000_000;

    /// A whole run as stored: `(table, truck, time) -> fields`, later copies winning.
    type Stored = BTreeMap<(&'static str, usize, i64), Vec<f64>>;

    fn store(spec: FleetSpec) -> (Fleet, Stored, usize) {
        let mut f = Fleet::new(spec);
        let mut stored = Stored::new();
        let mut sent = 0;
        while let Some(rows) = f.next_step() {
            for r in rows {
                sent += 1;
                stored.insert((r.table, r.truck, r.time), r.fields.iter().map(|(_, v, _)| *v).collect());
            }
        }
        (f, stored, sent)
    }

    /// One truck's rows of a table in time order.
    fn series<'a>(stored: &'a Stored, table: &'static str, truck: usize) -> impl Iterator<Item = (i64, &'a [f64])> {
        stored.range((table, truck, i64::MIN)..=(table, truck, i64::MAX)).map(|((_, _, t), v)| (*t, v.as_slice()))
    }

    /// Per ten-minute bucket of one truck: `(bucket, mean of field `i`)`, or of `status != 0` with `nonzero`.
    fn buckets(stored: &Stored, table: &'static str, truck: usize, i: usize, nonzero: bool) -> Vec<(i64, f64)> {
        let mut b: BTreeMap<i64, (f64, f64)> = BTreeMap::new();
        for (t, v) in series(stored, table, truck) {
            let x = v[i];
            let e = b.entry(t.div_euclid(TEN_MINUTES_NS)).or_default();
            e.0 += if nonzero { f64::from(u8::from(x != 0.0)) } else { x };
            e.1 += 1.0;
        }
        b.into_iter().map(|(k, (s, n))| (k, s / n)).collect()
    }

    /// Transitions into a broken-down bucket (≥ half the rows with a fault), as breakdown-frequency counts them.
    fn breakdowns(stored: &Stored, truck: usize) -> usize {
        let b = buckets(stored, "diagnostics", truck, 2, true);
        b.windows(2).filter(|w| w[0].1 < 0.5 && w[1].1 >= 0.5).count()
    }

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
    fn about_one_percent_missing_half_a_percent_twice_one_percent_late() {
        let spec = FleetSpec { trucks: 50, hours: 1.0, ..FleetSpec::default() };
        let mut f = Fleet::new(spec);
        let (mut sent, mut late, mut seen) = (0usize, 0usize, BTreeSet::new());
        let mut newest = i64::MIN;
        while let Some(rows) = f.next_step() {
            for r in &rows {
                sent += 1;
                late += usize::from(r.time < newest);
                newest = newest.max(r.time);
                seen.insert((r.table, r.truck, r.time));
            }
        }
        let full = 50 * 2 * 360;
        let missing = full - seen.len();
        let twice = sent - seen.len();
        assert!((full / 200..full * 2 / 100).contains(&missing), "{missing} of {full} missing");
        assert!((full / 400..full / 100).contains(&twice), "{twice} of {full} sent twice");
        assert!((full / 200..full * 2 / 100).contains(&late), "{late} of {full} late");
    }

    #[test]
    fn fleets_are_dealt_evenly() {
        let f = Fleet::new(FleetSpec { trucks: 23, ..FleetSpec::default() });
        let mut sizes = BTreeMap::new();
        for t in &f.trucks {
            *sizes.entry(t.fleet).or_insert(0) += 1;
        }
        assert_eq!(sizes.len(), 5);
        assert!(sizes.values().all(|n| (4..=5).contains(n)), "{sizes:?}");
    }

    /// What the fleet-scoped TSBS queries look for holds in every fleet, even
    /// in a short run of two trucks a fleet; short runs have breakdowns.
    #[test]
    fn every_fleet_ends_with_a_truck_low_on_fuel_one_parked_one_driving_and_one_loaded() {
        for seed in 1..=8 {
            let spec = FleetSpec { trucks: 10, hours: 2.0, seed, ..FleetSpec::default() };
            let (f, stored, _) = store(spec);
            let end = spec.start_ns + 7200 * 1_000_000_000;
            let mut by_fleet: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
            for (i, t) in f.trucks.iter().enumerate() {
                by_fleet.entry(t.fleet).or_default().push(i);
            }
            for (fleet, trucks) in &by_fleet {
                let last = |table, i| series(&stored, table, i).last().map(|(_, v)| v.to_vec()).unwrap();
                let at = format!("seed {seed}, fleet {fleet}");
                assert!(trucks.iter().any(|&i| last("diagnostics", i)[1] < 0.1), "{at}: nobody low on fuel");
                assert!(
                    trucks.iter().any(|&i| last("diagnostics", i)[0] > 0.9 * f64::from(f.trucks[i].load_capacity)),
                    "{at}: nobody loaded over 90 %"
                );
                assert!(
                    trucks.iter().any(|&i| series(&stored, "readings", i)
                        .filter(|(t, _)| *t >= end - TEN_MINUTES_NS)
                        .all(|(_, v)| v[3] == 0.0)),
                    "{at}: nobody parked for the last ten minutes"
                );
                assert!(
                    trucks.iter().any(|&i| buckets(&stored, "readings", i, 3, false).iter().all(|(_, v)| *v > 1.0)),
                    "{at}: nobody drove in every ten minutes"
                );
            }
            let total: usize = (0..10).map(|i| breakdowns(&stored, i)).sum();
            assert!(total >= 1, "seed {seed}: no breakdown");
        }
    }

    /// Over two days a minority of trucks breaks down, tanks run low and are
    /// refilled, regional trucks park for hours, and status is mostly 0.
    #[test]
    fn two_days_have_refuelling_rests_and_a_minority_of_breakdowns() {
        let spec = FleetSpec { trucks: 10, hours: 48.0, ..FleetSpec::default() };
        let (_, stored, _) = store(spec);
        let (mut refills, mut below_10, mut long_parks, mut broken_trucks, mut faults, mut diag) = (0, 0, 0, 0, 0, 0);
        for i in 0..10 {
            let fuel: Vec<f64> = series(&stored, "diagnostics", i).map(|(_, v)| v[1]).collect();
            refills += fuel.windows(2).filter(|w| w[1] > w[0] + 0.3).count();
            below_10 += fuel.iter().filter(|x| **x < 0.1).count();
            let mut parked = 0;
            for (_, v) in series(&stored, "readings", i) {
                parked = if v[3] == 0.0 { parked + 1 } else { 0 };
                long_parks += usize::from(parked == 6 * 60 * 5);
            }
            broken_trucks += usize::from(breakdowns(&stored, i) > 0);
            for (_, v) in series(&stored, "diagnostics", i) {
                faults += usize::from(v[2] != 0.0);
                diag += 1;
            }
        }
        assert!(refills >= 5, "{refills} refills");
        assert!(below_10 > 0, "no tank below 10 %");
        assert!(long_parks >= 5, "{long_parks} stops of 5 hours or more");
        assert!((1..=4).contains(&broken_trucks), "{broken_trucks} of 10 trucks broke down");
        assert!(faults * 20 < diag, "{faults} of {diag} rows report a fault");
    }

    #[test]
    fn json_messages_keep_decimals_and_carry_the_tags() {
        let mut f = Fleet::new(FleetSpec { trucks: 1, hours: 0.01, ..FleetSpec::default() });
        let rows = f.next_step().unwrap();
        let (topic, payload) = f.mqtt_json(&rows[0]);
        assert!(topic.starts_with("fleet/") && topic.ends_with("/truck_0/readings"), "{topic}");
        let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(v["timestamp"], 1_733_011_200_000i64);
        assert!(v.get("driver").is_some() && v.get("load_capacity").is_none(), "{payload}");
        let (topic_all, payload) = f.mqtt_json_all_tags(&rows[0]);
        assert_eq!(topic_all, topic);
        let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
        let truck = &f.trucks[0];
        assert_eq!(v["load_capacity"], truck.load_capacity);
        assert_eq!(v["nominal_fuel_consumption"], truck.nominal_fuel_consumption);
        let mut lp = String::new();
        f.line_protocol(&rows[0], &mut lp);
        for (k, value, decimals) in &rows[0].fields {
            let text = format!("{value:.d$}", d = decimals.unwrap_or(0));
            assert!(lp.contains(&format!("{k}={text}")), "{lp}");
            assert_eq!(v[*k].as_f64(), Some(*value), "{payload}");
        }
    }
}
