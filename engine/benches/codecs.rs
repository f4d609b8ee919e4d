//! Encode and decode throughput of the column codecs, on data shaped like
//! what gateways send.
//!
//! Run with `cargo bench -p telemark-engine --bench codecs`; add a filter
//! such as `-- decode/1000` to run part of it. The first thing printed is a
//! table of encoded bytes per value for every data set (the README's
//! compression numbers come from it). All data comes from a fixed-seed
//! `StdRng`, so every run measures the same bytes.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use telemark_engine::codec::{
    decode_bool, decode_f64, decode_i64, decode_timestamps, encode_bool, encode_f64, encode_i64, encode_timestamps,
};

/// Values per chunk: 1 000 is the engine's typical chunk, 10 000 a large one.
const SIZES: [usize; 2] = [1_000, 10_000];

const START_NS: i64 = 1_700_000_000_000_000_000;
const TEN_SECONDS_NS: i64 = 10_000_000_000;

fn rng() -> StdRng {
    StdRng::seed_from_u64(0x7e1e_3a4c)
}

/// Every 10 s exactly, in nanoseconds.
fn ts_regular(n: usize) -> Vec<i64> {
    (0..n as i64).map(|i| START_NS + i * TEN_SECONDS_NS).collect()
}

/// Every 10 s with ±5 ms of uniform jitter in whole milliseconds, in ns.
fn ts_jitter_ms(n: usize) -> Vec<i64> {
    let mut rng = rng();
    (0..n as i64).map(|i| START_NS + i * TEN_SECONDS_NS + rng.random_range(-5i64..=5) * 1_000_000).collect()
}

/// A sensor reading with two decimals: 72.41, then steps of ±0.01..=0.10.
fn f_walk(n: usize) -> Vec<f64> {
    let mut rng = rng();
    let mut cents: i64 = 7241;
    (0..n)
        .map(|_| {
            let step = rng.random_range(1i64..=10);
            cents += if rng.random_bool(0.5) { step } else { -step };
            cents as f64 / 100.0
        })
        .collect()
}

fn f_constant(n: usize) -> Vec<f64> {
    vec![72.41; n]
}

/// A monotonically increasing counter stored as f64 (increments 1..=10).
fn f_counter(n: usize) -> Vec<f64> {
    let mut rng = rng();
    let mut c = 1_000_000u64;
    (0..n)
        .map(|_| {
            c += rng.random_range(1u64..=10);
            c as f64
        })
        .collect()
}

/// Uniformly random in [0, 1): the incompressible case.
fn f_random(n: usize) -> Vec<f64> {
    let mut rng = rng();
    (0..n).map(|_| rng.random::<f64>()).collect()
}

/// A slowly varying counter (increments 0..=3).
fn i_counter(n: usize) -> Vec<i64> {
    let mut rng = rng();
    let mut c = 5_000_000i64;
    (0..n)
        .map(|_| {
            c += rng.random_range(0i64..=3);
            c
        })
        .collect()
}

/// Random small integers in -1000..1000.
fn i_random_small(n: usize) -> Vec<i64> {
    let mut rng = rng();
    (0..n).map(|_| rng.random_range(-1000i64..1000)).collect()
}

/// Random booleans, true 10 % of the time (a status flag).
fn bools(n: usize) -> Vec<bool> {
    let mut rng = rng();
    (0..n).map(|_| rng.random_bool(0.1)).collect()
}

type Gen<T> = (&'static str, fn(usize) -> Vec<T>);

const TIMESTAMPS: [Gen<i64>; 2] = [("regular_10s", ts_regular), ("jitter_5ms", ts_jitter_ms)];
const FLOATS: [Gen<f64>; 4] =
    [("walk_2dp", f_walk), ("constant", f_constant), ("counter", f_counter), ("random", f_random)];
const INTS: [Gen<i64>; 2] = [("counter", i_counter), ("random_small", i_random_small)];
const BOOLS: [Gen<bool>; 1] = [("flag_10pct", bools)];

fn encoded<T>(values: &[T], encode: fn(&[T], &mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    encode(values, &mut out);
    out
}

/// Prints encoded bytes per value for every data set and chunk size.
fn report_sizes() {
    eprintln!("\nencoded size (bytes/value)");
    eprintln!("{:<28} {:>10} {:>10}", "data set", "n=1000", "n=10000");
    fn row<T>(name: &str, generate: fn(usize) -> Vec<T>, encode: fn(&[T], &mut Vec<u8>)) {
        let per_value = SIZES.map(|n| encoded(&generate(n), encode).len() as f64 / n as f64);
        eprintln!("{name:<28} {:>10.3} {:>10.3}", per_value[0], per_value[1]);
    }
    for (name, g) in TIMESTAMPS {
        row(&format!("timestamps/{name}"), g, encode_timestamps);
    }
    for (name, g) in FLOATS {
        row(&format!("f64/{name}"), g, encode_f64);
    }
    for (name, g) in INTS {
        row(&format!("i64/{name}"), g, encode_i64);
    }
    for (name, g) in BOOLS {
        row(&format!("bool/{name}"), g, encode_bool);
    }
    eprintln!();
}

type Decode<T> = fn(&[u8], usize, &mut Vec<T>) -> Result<(), telemark_engine::codec::CodecError>;

fn bench_family<T: PartialEq + std::fmt::Debug>(
    c: &mut Criterion,
    family: &str,
    sets: &[Gen<T>],
    encode: fn(&[T], &mut Vec<u8>),
    decode: Decode<T>,
) {
    for n in SIZES {
        let mut group = c.benchmark_group(format!("{family}/encode/{n}"));
        group.throughput(Throughput::Elements(n as u64));
        for (name, generate) in sets {
            let values = generate(n);
            let mut out = Vec::with_capacity(n * 9);
            group.bench_with_input(BenchmarkId::from_parameter(name), &values, |b, values| {
                b.iter(|| {
                    out.clear();
                    encode(black_box(values), &mut out);
                    black_box(out.len())
                })
            });
        }
        group.finish();

        let mut group = c.benchmark_group(format!("{family}/decode/{n}"));
        group.throughput(Throughput::Elements(n as u64));
        for (name, generate) in sets {
            let values = generate(n);
            let data = encoded(&values, encode);
            let mut out = Vec::with_capacity(n);
            assert!(decode(&data, n, &mut out).is_ok(), "{family}/{name} must decode");
            assert!(out == values, "{family}/{name} must round-trip");
            group.bench_with_input(BenchmarkId::from_parameter(name), &data, |b, data| {
                b.iter(|| {
                    out.clear();
                    let result = decode(black_box(data), n, &mut out);
                    black_box((result.is_ok(), out.len()))
                })
            });
        }
        group.finish();
    }
}

fn codecs(c: &mut Criterion) {
    report_sizes();
    bench_family(c, "timestamps", &TIMESTAMPS, encode_timestamps, decode_timestamps);
    bench_family(c, "f64", &FLOATS, encode_f64, decode_f64);
    bench_family(c, "i64", &INTS, encode_i64, decode_i64);
    bench_family(c, "bool", &BOOLS, encode_bool, decode_bool);
}

criterion_group!(benches, codecs);
criterion_main!(benches);
