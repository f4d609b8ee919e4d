//! `telemark-fleet-gen`: prints the fleet workload as line protocol (default)
//! or as MQTT messages (`topic<TAB>json` per line).
//!
//! ```text
//! telemark-fleet-gen --trucks 100 --hours 1 --interval 10 --seed 1 > fleet.lp
//! ```

use std::io::Write as _;

use clap::{Parser, ValueEnum};
use telemark_benches::fleet::{Fleet, FleetSpec};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    LineProtocol,
    Mqtt,
}

#[derive(Debug, Parser)]
#[command(about = "Generate the fleet (TSBS IoT-shaped) workload")]
struct Args {
    /// Number of trucks.
    #[arg(long, default_value_t = 100)]
    trucks: usize,
    /// Hours of data.
    #[arg(long, default_value_t = 1.0)]
    hours: f64,
    /// Seconds between reports.
    #[arg(long, default_value_t = 10)]
    interval: u64,
    /// Seed (same seed, same data).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::LineProtocol)]
    format: Format,
}

fn main() -> std::io::Result<()> {
    let a = Args::parse();
    let mut fleet = Fleet::new(FleetSpec {
        trucks: a.trucks,
        hours: a.hours,
        interval_secs: a.interval,
        seed: a.seed,
        ..FleetSpec::default()
    });
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut buf = String::new();
    while let Some(rows) = fleet.next_step() {
        buf.clear();
        for row in &rows {
            match a.format {
                Format::LineProtocol => fleet.line_protocol(row, &mut buf),
                Format::Mqtt => {
                    let (topic, payload) = fleet.mqtt_json_all_tags(row);
                    buf.push_str(&topic);
                    buf.push('\t');
                    buf.push_str(&payload);
                    buf.push('\n');
                }
            }
        }
        out.write_all(buf.as_bytes())?;
    }
    out.flush()
}
