#![no_main]
//! Frames and decodes arbitrary bytes as MQTT 3.1.1 and 5.0 packets, the way
//! the listener reads a connection. Nothing may panic.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for version in [4u8, 5] {
        let mut buf = bytes::BytesMut::from(data);
        while let Ok(Some(_)) = telemark_ingest::mqtt::codec::try_decode(&mut buf, version, 1 << 16) {}
    }
});
