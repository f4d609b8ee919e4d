//! Encode and decode throughput of the column codecs, on data shaped like
//! what gateways send.
//!
//! Run with `cargo bench -p telemark-engine --bench codecs`; add a filter
//! such as `-- decode/1000` or `f64/decode/10000/decimal` to run part of it.
//! The first thing printed is a table of encoded bytes per value and a
//! quick decode rate (best of a few short timing loops; the criterion
//! numbers that follow are the careful ones) for every codec on every data
//! set; the README's compression numbers come from it. All data comes from a
//! fixed-seed `StdRng`, so every run measures the same bytes.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use telemark_engine::codec::{
    CodecError, CodecId, decode_bool, decode_bool_any, decode_bool_rle, decode_f64, decode_f64_any, decode_f64_decimal,
    decode_f64_rle, decode_i64, decode_i64_any, decode_i64_for, decode_i64_rle, decode_timestamps,
    decode_timestamps_any, decode_timestamps_grid, encode_bool, encode_bool_auto, encode_bool_rle, encode_f64,
    encode_f64_auto, encode_f64_decimal, encode_f64_rle, encode_i64, encode_i64_auto, encode_i64_for, encode_i64_rle,
    encode_timestamps, encode_timestamps_auto, encode_timestamps_grid, unzstd_stage, zstd_stage, zstd_stage_limit,
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

/// Event times: exponential gaps with a 10 s mean, in whole milliseconds, in ns.
fn ts_irregular(n: usize) -> Vec<i64> {
    let mut rng = rng();
    let mut t = START_NS;
    (0..n)
        .map(|_| {
            let gap_ms = -(1.0 - rng.random::<f64>()).ln() * 10_000.0;
            t += (gap_ms.round() as i64).max(1) * 1_000_000;
            t
        })
        .collect()
}

/// A temperature with two decimals: 72.41, then steps of ±0.01..=0.10.
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

/// A GPS latitude with five decimals (about 1 m), a truck moving a few
/// metres a sample.
fn f_latitude(n: usize) -> Vec<f64> {
    let mut rng = rng();
    let mut lat: i64 = 4_885_712;
    (0..n)
        .map(|_| {
            lat += rng.random_range(-30i64..=30);
            lat as f64 / 1e5
        })
        .collect()
}

/// A velocity in km/h with one decimal, 0..=120, changing by up to 2 km/h.
fn f_velocity(n: usize) -> Vec<f64> {
    let mut rng = rng();
    let mut tenths: i64 = 600;
    (0..n)
        .map(|_| {
            tenths = (tenths + rng.random_range(-20i64..=20)).clamp(0, 1200);
            tenths as f64 / 10.0
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

/// A status code that changes every 200 samples on average.
fn i_status(n: usize) -> Vec<i64> {
    let mut rng = rng();
    let mut code = 200i64;
    (0..n)
        .map(|_| {
            if rng.random_bool(0.005) {
                code = rng.random_range(0i64..8) * 100;
            }
            code
        })
        .collect()
}

/// Random booleans, true 10 % of the time (a status flag).
fn bools(n: usize) -> Vec<bool> {
    let mut rng = rng();
    (0..n).map(|_| rng.random_bool(0.1)).collect()
}

/// A door switch: runs of 100 samples on average.
fn bool_runs(n: usize) -> Vec<bool> {
    let mut rng = rng();
    let mut state = false;
    (0..n)
        .map(|_| {
            if rng.random_bool(0.01) {
                state = !state;
            }
            state
        })
        .collect()
}

type Gen<T> = (&'static str, fn(usize) -> Vec<T>);

const TIMESTAMPS: [Gen<i64>; 3] =
    [("regular_10s", ts_regular), ("jitter_5ms", ts_jitter_ms), ("irregular", ts_irregular)];
const FLOATS: [Gen<f64>; 6] = [
    ("walk_2dp", f_walk),
    ("latitude_5dp", f_latitude),
    ("velocity_1dp", f_velocity),
    ("constant", f_constant),
    ("counter", f_counter),
    ("random", f_random),
];
const INTS: [Gen<i64>; 3] = [("counter", i_counter), ("random_small", i_random_small), ("status", i_status)];
const BOOLS: [Gen<bool>; 2] = [("flag_10pct", bools), ("switch_runs", bool_runs)];

type Encode<T> = fn(&[T], &mut Vec<u8>) -> CodecId;
type Decode<T> = fn(CodecId, &[u8], usize, &mut Vec<T>) -> Result<(), CodecError>;

/// A codec under test: a fixed one reports its own id, `auto` the one it chose.
struct Codec<T> {
    name: &'static str,
    encode: Encode<T>,
    decode: Decode<T>,
}

fn float_codecs() -> Vec<Codec<f64>> {
    vec![
        Codec {
            name: "gorilla",
            encode: |v, out| {
                encode_f64(v, out);
                CodecId::FloatGorilla
            },
            decode: |_, data, n, out| decode_f64(data, n, out),
        },
        Codec {
            name: "decimal",
            encode: |v, out| {
                encode_f64_decimal(v, out);
                CodecId::FloatDecimal
            },
            decode: |_, data, n, out| decode_f64_decimal(data, n, out),
        },
        Codec {
            name: "rle",
            encode: |v, out| {
                encode_f64_rle(v, out);
                CodecId::FloatRle
            },
            decode: |_, data, n, out| decode_f64_rle(data, n, out),
        },
        Codec { name: "auto", encode: encode_f64_auto, decode: decode_f64_any },
        Codec { name: "auto+zstd", encode: encode_f64_staged, decode: decode_f64_staged },
    ]
}

/// What a segment stores for a float chunk: the chosen codec's payload, then
/// the zstd stage when it pays. A leading byte says which (1 = staged), so
/// the decode side can undo exactly what was done.
fn encode_f64_staged(values: &[f64], out: &mut Vec<u8>) -> CodecId {
    let mut payload = Vec::new();
    let id = encode_f64_auto(values, &mut payload);
    match zstd_stage(&payload) {
        Some(staged) => {
            out.push(1);
            out.extend_from_slice(&staged);
        }
        None => {
            out.push(0);
            out.extend_from_slice(&payload);
        }
    }
    id
}

fn decode_f64_staged(id: CodecId, data: &[u8], n: usize, out: &mut Vec<f64>) -> Result<(), CodecError> {
    match data.split_first() {
        Some((1, staged)) => {
            let payload = unzstd_stage(staged, zstd_stage_limit(n)).map_err(|reason| CodecError {
                codec: id.name(),
                offset: 0,
                reason,
            })?;
            decode_f64_any(id, &payload, n, out)
        }
        Some((_, payload)) => decode_f64_any(id, payload, n, out),
        None => decode_f64_any(id, data, n, out),
    }
}

fn timestamp_codecs() -> Vec<Codec<i64>> {
    vec![
        Codec {
            name: "gorilla",
            encode: |v, out| {
                encode_timestamps(v, out);
                CodecId::TimestampGorilla
            },
            decode: |_, data, n, out| decode_timestamps(data, n, out),
        },
        Codec {
            name: "grid",
            encode: |v, out| {
                encode_timestamps_grid(v, out);
                CodecId::TimestampGrid
            },
            decode: |_, data, n, out| decode_timestamps_grid(data, n, out),
        },
        Codec { name: "auto", encode: encode_timestamps_auto, decode: decode_timestamps_any },
    ]
}

fn int_codecs() -> Vec<Codec<i64>> {
    vec![
        Codec {
            name: "delta_zigzag",
            encode: |v, out| {
                encode_i64(v, out);
                CodecId::IntDeltaZigzag
            },
            decode: |_, data, n, out| decode_i64(data, n, out),
        },
        Codec {
            name: "for",
            encode: |v, out| {
                encode_i64_for(v, out);
                CodecId::IntFor
            },
            decode: |_, data, n, out| decode_i64_for(data, n, out),
        },
        Codec {
            name: "rle",
            encode: |v, out| {
                encode_i64_rle(v, out);
                CodecId::IntRle
            },
            decode: |_, data, n, out| decode_i64_rle(data, n, out),
        },
        Codec { name: "auto", encode: encode_i64_auto, decode: decode_i64_any },
    ]
}

fn bool_codecs() -> Vec<Codec<bool>> {
    vec![
        Codec {
            name: "bitpack",
            encode: |v, out| {
                encode_bool(v, out);
                CodecId::BoolBitpack
            },
            decode: |_, data, n, out| decode_bool(data, n, out),
        },
        Codec {
            name: "rle",
            encode: |v, out| {
                encode_bool_rle(v, out);
                CodecId::BoolRle
            },
            decode: |_, data, n, out| decode_bool_rle(data, n, out),
        },
        Codec { name: "auto", encode: encode_bool_auto, decode: decode_bool_any },
    ]
}

fn encoded<T>(values: &[T], codec: &Codec<T>) -> (CodecId, Vec<u8>) {
    let mut out = Vec::new();
    let id = (codec.encode)(values, &mut out);
    (id, out)
}

/// Decoded values a second: the best of five 20 ms timing loops.
fn quick_decode_rate<T>(codec: &Codec<T>, id: CodecId, data: &[u8], n: usize) -> f64 {
    let mut out = Vec::with_capacity(n);
    let mut best = f64::MAX;
    for _ in 0..5 {
        let started = Instant::now();
        let mut rounds = 0u32;
        while started.elapsed() < Duration::from_millis(20) {
            out.clear();
            let result = (codec.decode)(id, black_box(data), n, &mut out);
            black_box((result.is_ok(), out.len()));
            rounds += 1;
        }
        best = best.min(started.elapsed().as_secs_f64() / f64::from(rounds));
    }
    n as f64 / best
}

/// Prints, for every data set and chunk size, each codec's encoded bytes a
/// value and quick decode rate, and which codec `auto` chose.
fn report_family<T>(family: &str, sets: &[Gen<T>], codecs: &[Codec<T>]) {
    for n in SIZES {
        eprintln!("\n{family}, n={n}: bytes/value, decode M values/s");
        let header: String = codecs.iter().map(|c| format!("{:>22}", c.name)).collect();
        eprintln!("{:<16}{header}  auto chose", "data set");
        for (name, generate) in sets {
            let values = generate(n);
            let mut row = String::new();
            let mut chosen = String::new();
            for codec in codecs {
                let (id, data) = encoded(&values, codec);
                let rate = quick_decode_rate(codec, id, &data, n);
                row += &format!("{:>13.3} {:>7.0}M", data.len() as f64 / n as f64, rate / 1e6);
                if codec.name == "auto" {
                    chosen = id.name().to_string();
                }
            }
            eprintln!("{name:<16}{row}  {chosen}");
        }
    }
}

fn report() {
    report_family("timestamps", &TIMESTAMPS, &timestamp_codecs());
    report_family("f64", &FLOATS, &float_codecs());
    report_family("i64", &INTS, &int_codecs());
    report_family("bool", &BOOLS, &bool_codecs());
    eprintln!();
}

fn bench_family<T: PartialEq + std::fmt::Debug>(c: &mut Criterion, family: &str, sets: &[Gen<T>], codecs: &[Codec<T>]) {
    for n in SIZES {
        let mut group = c.benchmark_group(format!("{family}/encode/{n}"));
        group.throughput(Throughput::Elements(n as u64));
        for codec in codecs {
            for (name, generate) in sets {
                let values = generate(n);
                let mut out = Vec::with_capacity(n * 9);
                group.bench_with_input(BenchmarkId::new(codec.name, name), &values, |b, values| {
                    b.iter(|| {
                        out.clear();
                        let id = (codec.encode)(black_box(values), &mut out);
                        black_box((id, out.len()))
                    })
                });
            }
        }
        group.finish();

        let mut group = c.benchmark_group(format!("{family}/decode/{n}"));
        group.throughput(Throughput::Elements(n as u64));
        for codec in codecs {
            for (name, generate) in sets {
                let values = generate(n);
                let (id, data) = encoded(&values, codec);
                let mut out = Vec::with_capacity(n);
                assert!((codec.decode)(id, &data, n, &mut out).is_ok(), "{family}/{}/{name} must decode", codec.name);
                assert!(out == values, "{family}/{}/{name} must round-trip", codec.name);
                group.bench_with_input(BenchmarkId::new(codec.name, name), &data, |b, data| {
                    b.iter(|| {
                        out.clear();
                        let result = (codec.decode)(id, black_box(data), n, &mut out);
                        black_box((result.is_ok(), out.len()))
                    })
                });
            }
        }
        group.finish();
    }
}

fn codecs(c: &mut Criterion) {
    report();
    bench_family(c, "timestamps", &TIMESTAMPS, &timestamp_codecs());
    bench_family(c, "f64", &FLOATS, &float_codecs());
    bench_family(c, "i64", &INTS, &int_codecs());
    bench_family(c, "bool", &BOOLS, &bool_codecs());
}

criterion_group!(benches, codecs);
criterion_main!(benches);
