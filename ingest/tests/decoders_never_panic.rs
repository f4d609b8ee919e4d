//! The fuzz targets' inputs in the normal test run: the seed files and
//! random mutations of them go through the line protocol parser, the MQTT
//! framing and the JSON payload decoder with a rule statement. Nothing may
//! panic. (`cargo fuzz run <target>` in ingest/fuzz explores further.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use telemark_ingest::json::{JsonFormat, TimeUnit};
use telemark_ingest::line_protocol::{Precision, parse};
use telemark_ingest::select::{Origin, SelectRule};

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds").join(target);
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out.sort();
    out
}

fn all_decoders(data: &[u8]) {
    for item in parse(data, Precision::Nanoseconds) {
        let _ = item;
    }
    for version in [4u8, 5] {
        let mut buf = bytes::BytesMut::from(data);
        while let Ok(Some(_)) = telemark_ingest::mqtt::codec::try_decode(&mut buf, version, 1 << 16) {}
    }
    let format = JsonFormat { time_field: Some("timestamp".into()), time_unit: TimeUnit::Auto };
    if let Ok(readings) = format.decode(data) {
        let rule = SelectRule::parse("SELECT *, a * 2 + b AS c FROM 'x/+' WHERE a > 1 OR s = 'x'").unwrap();
        let origin = Origin { topic: "x/y", client_id: "t", now_ns: 0 };
        for r in &readings {
            let _ = rule.apply(&r.values, &origin);
        }
    }
}

#[test]
fn seed_files_decode() {
    for target in ["line_protocol", "mqtt_packet", "json_payload"] {
        for s in seeds(target) {
            all_decoders(&s);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn mutated_seeds_never_panic(which in 0usize..3, edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..16), cut in any::<usize>()) {
        let target = ["line_protocol", "mqtt_packet", "json_payload"][which];
        let all = seeds(target);
        let mut data = all[0].clone();
        for (pos, byte) in edits {
            let i = pos % data.len().max(1);
            if let Some(b) = data.get_mut(i) { *b = byte; }
        }
        data.truncate(cut % (data.len() + 1));
        all_decoders(&data);
    }

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        all_decoders(&data);
    }
}
