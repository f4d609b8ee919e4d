//! Line-protocol parse throughput on fleet `readings` lines: 5 tags, 7 float
//! fields and a nanosecond timestamp, about 200 bytes a line, like
//!
//! ```text
//! readings,name=truck_12,fleet=South,driver=Trish,model=H-2,device_version=v2.3 latitude=52.31,longitude=4.91,elevation=12.0,velocity=61.5,heading=270.0,grade=0.5,fuel_consumption=25.3 1700000000000000000
//! ```
//!
//! Run with `cargo bench -p telemark-ingest --bench line_protocol`. Criterion
//! reports lines per second. `parse/iter` collects each point into a fresh
//! `Line` (two vector allocations a line); `parse/next_into` reuses one `Line`
//! and allocates nothing. The 100 000 lines come from a fixed-seed generator,
//! so every run parses the same bytes.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "bench code: a panic is a failed run")]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use telemark_ingest::line_protocol::{FieldValue, Line, Precision, parse, write_line};

const LINES: usize = 100_000;
const START_NS: i64 = 1_700_000_000_000_000_000;
const TEN_SECONDS_NS: i64 = 10_000_000_000;

const FLEETS: [&str; 4] = ["North", "South", "East", "West"];
const DRIVERS: [&str; 7] = ["Trish", "Albert", "Derek", "Rodney", "Seth", "Andy", "Zeke"];
const MODELS: [&str; 3] = ["F-150", "G-2000", "H-2"];
const VERSIONS: [&str; 4] = ["v1.0", "v1.5", "v2.0", "v2.3"];

/// Field names with the range of each value in hundredths.
const FIELDS: [(&str, i64, i64); 7] = [
    ("latitude", -9_000, 9_000),
    ("longitude", -18_000, 18_000),
    ("elevation", 0, 500_000),
    ("velocity", 0, 10_000),
    ("heading", 0, 36_000),
    ("grade", 0, 10_000),
    ("fuel_consumption", 0, 5_000),
];

/// SplitMix64: a small fixed-seed generator, so the bench needs no `rand`.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform enough in `lo..=hi` for a benchmark.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
}

/// The tag value of truck `truck` among `values`.
fn pick(values: &[&'static str], truck: usize) -> &'static str {
    values.get(truck % values.len()).copied().unwrap_or_default()
}

/// `LINES` fleet lines from 1 000 trucks reporting every 10 s, newline-terminated.
fn fleet_body() -> String {
    let mut rng = SplitMix64(0x7e1e_3a4c);
    let mut body = String::with_capacity(LINES * 210);
    for i in 0..LINES {
        let truck = rng.range(0, 999) as usize;
        let line = Line {
            measurement: "readings".into(),
            tags: vec![
                ("name".into(), format!("truck_{truck}").into()),
                ("fleet".into(), pick(&FLEETS, truck).into()),
                ("driver".into(), pick(&DRIVERS, truck).into()),
                ("model".into(), pick(&MODELS, truck).into()),
                ("device_version".into(), pick(&VERSIONS, truck).into()),
            ],
            fields: FIELDS
                .iter()
                .map(|&(name, lo, hi)| (name.into(), FieldValue::F64(rng.range(lo, hi) as f64 / 100.0)))
                .collect(),
            timestamp: Some(START_NS + (i / 1000) as i64 * TEN_SECONDS_NS),
            line: 0,
        };
        write_line(&line, Precision::Nanoseconds, &mut body).unwrap();
        body.push('\n');
    }
    body
}

fn bench_parse(c: &mut Criterion) {
    let body = fleet_body();
    let mut group = c.benchmark_group("line_protocol");
    group.throughput(Throughput::Elements(LINES as u64));

    group.bench_function("parse/iter", |b| {
        b.iter(|| {
            let mut fields = 0;
            for item in parse(black_box(body.as_bytes()), Precision::Nanoseconds) {
                let line = item.unwrap();
                fields += line.fields.len();
                black_box(&line);
            }
            assert_eq!(fields, LINES * FIELDS.len());
        })
    });

    group.bench_function("parse/next_into", |b| {
        let mut line = Line::default();
        b.iter(|| {
            let mut lines = parse(black_box(body.as_bytes()), Precision::Nanoseconds);
            let mut fields = 0;
            while let Some(item) = lines.next_into(&mut line) {
                item.unwrap();
                fields += line.fields.len();
                black_box(&line);
            }
            assert_eq!(fields, LINES * FIELDS.len());
        })
    });

    group.finish();
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
