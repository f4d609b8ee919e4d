#![no_main]
//! Decodes arbitrary bytes as a JSON telemetry payload and applies an
//! AWS IoT-style rule statement to every reading. Nothing may panic.

use libfuzzer_sys::fuzz_target;
use telemark_ingest::json::{JsonFormat, TimeUnit};
use telemark_ingest::select::{Origin, SelectRule};

fuzz_target!(|data: &[u8]| {
    let format = JsonFormat { time_field: Some("timestamp".into()), time_unit: TimeUnit::Auto };
    let Ok(readings) = format.decode(data) else { return };
    let Ok(rule) = SelectRule::parse("SELECT *, a * 2 + b AS c FROM 'x/+' WHERE a > 1 OR s = 'x'") else { return };
    let origin = Origin { topic: "x/y", client_id: "fuzz", now_ns: 0 };
    for r in &readings {
        let _ = rule.apply(&r.values, &origin);
    }
});
