//! Framing MQTT packets off a byte stream, on top of `mqtt5-protocol`.
//!
//! The codec decodes one complete frame; this module finds frame
//! boundaries, enforces the maximum packet size before buffering a frame,
//! and refuses what the codec lets through but the spec forbids (trailing
//! bytes, packet id 0, AUTH or a DISCONNECT body on 3.1.1).

use bytes::{Buf, Bytes, BytesMut};
use mqtt5_protocol::packet::MqttPacket;
use mqtt5_protocol::{FixedHeader, Packet, PacketType};

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Larger than the configured maximum packet size.
    #[error("packet of {size} bytes exceeds the maximum packet size of {max} bytes")]
    TooLarge {
        /// Whole packet size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Not a valid MQTT packet.
    #[error("malformed packet: {0}")]
    Malformed(String),
}

/// `(fixed header length, remaining length)` once the fixed header is complete.
fn peek_fixed_header(buf: &[u8]) -> Result<Option<(usize, usize)>, FrameError> {
    let mut value = 0usize;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else { return Ok(None) };
        value |= usize::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((2 + i, value)));
        }
    }
    Err(FrameError::Malformed("remaining length longer than 4 bytes".into()))
}

/// Decodes one packet from the front of `buf` if a whole frame is there.
///
/// `version` is the protocol level from CONNECT (4 = 3.1.1, 5 = 5.0); before
/// CONNECT pass 5 (CONNECT carries its own level). `max` bounds the whole packet.
pub fn try_decode(buf: &mut BytesMut, version: u8, max: usize) -> Result<Option<Packet>, FrameError> {
    let Some((header, remaining)) = peek_fixed_header(buf)? else { return Ok(None) };
    let total = header + remaining;
    if total > max {
        return Err(FrameError::TooLarge { size: total, max });
    }
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    let mut frame: Bytes = buf.split_to(total).freeze();
    let fixed = FixedHeader::decode(&mut frame).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if version == 4 && matches!(fixed.packet_type, PacketType::Auth) {
        return Err(FrameError::Malformed("AUTH is not an MQTT 3.1.1 packet".into()));
    }
    if version == 4 && matches!(fixed.packet_type, PacketType::Disconnect) && frame.has_remaining() {
        return Err(FrameError::Malformed("an MQTT 3.1.1 DISCONNECT has no body".into()));
    }
    if matches!(fixed.packet_type, PacketType::PingReq) && frame.has_remaining() {
        return Err(FrameError::Malformed("PINGREQ has no body".into()));
    }
    let packet = Packet::decode_from_body_with_version(fixed.packet_type, &fixed, &mut frame, version)
        .map_err(|e| FrameError::Malformed(format!("{}: {e}", packet_name(fixed.packet_type))))?;
    if frame.has_remaining() {
        return Err(FrameError::Malformed(format!(
            "{} trailing byte(s) after {}",
            frame.remaining(),
            packet.packet_type_name()
        )));
    }
    let zero_id = match &packet {
        Packet::Publish(p) => p.packet_id == Some(0),
        Packet::Subscribe(s) => s.packet_id == 0,
        Packet::Unsubscribe(u) => u.packet_id == 0,
        Packet::PubAck(a) => a.packet_id == 0,
        Packet::PubRec(a) => a.packet_id == 0,
        Packet::PubRel(a) => a.packet_id == 0,
        Packet::PubComp(a) => a.packet_id == 0,
        _ => false,
    };
    if zero_id {
        return Err(FrameError::Malformed(format!("{} with packet identifier 0", packet.packet_type_name())));
    }
    Ok(Some(packet))
}

fn packet_name(t: PacketType) -> &'static str {
    match t {
        PacketType::Connect => "CONNECT",
        PacketType::ConnAck => "CONNACK",
        PacketType::Publish => "PUBLISH",
        PacketType::PubAck => "PUBACK",
        PacketType::PubRec => "PUBREC",
        PacketType::PubRel => "PUBREL",
        PacketType::PubComp => "PUBCOMP",
        PacketType::Subscribe => "SUBSCRIBE",
        PacketType::SubAck => "SUBACK",
        PacketType::Unsubscribe => "UNSUBSCRIBE",
        PacketType::UnsubAck => "UNSUBACK",
        PacketType::PingReq => "PINGREQ",
        PacketType::PingResp => "PINGRESP",
        PacketType::Disconnect => "DISCONNECT",
        PacketType::Auth => "AUTH",
    }
}

/// Appends an encoded packet to `out`.
pub fn encode(packet: &impl MqttPacket, out: &mut BytesMut) -> Result<(), FrameError> {
    packet.encode(out).map_err(|e| FrameError::Malformed(format!("encoding failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8], version: u8) -> Result<Vec<Packet>, FrameError> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(p) = try_decode(&mut buf, version, 1 << 20)? {
            out.push(p);
        }
        assert!(buf.is_empty() || out.is_empty() || buf.len() < 5);
        Ok(out)
    }

    #[test]
    fn frames_split_anywhere() {
        // PINGREQ, then a QoS 1 PUBLISH "a/b" id 7 payload "hi", then DISCONNECT (3.1.1).
        let bytes = [0xc0, 0x00, 0x32, 0x09, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x07, b'h', b'i', 0xe0, 0x00];
        for cut in 0..bytes.len() {
            let mut buf = BytesMut::from(&bytes[..cut]);
            let mut got = Vec::new();
            while let Some(p) = try_decode(&mut buf, 4, 1 << 20).unwrap() {
                got.push(p);
            }
            buf.extend_from_slice(&bytes[cut..]);
            while let Some(p) = try_decode(&mut buf, 4, 1 << 20).unwrap() {
                got.push(p);
            }
            assert_eq!(got.len(), 3, "cut at {cut}");
            assert!(
                matches!(&got[1], Packet::Publish(p) if p.topic_name == "a/b" && p.packet_id == Some(7) && &p.payload[..] == b"hi")
            );
        }
    }

    #[test]
    fn refusals() {
        let too_big = [0x30, 0xff, 0xff, 0x7f];
        assert!(matches!(try_decode(&mut BytesMut::from(&too_big[..]), 4, 1024), Err(FrameError::TooLarge { .. })));
        assert!(decode_all(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01], 4).is_err());
        assert!(decode_all(&[0xc0, 0x01, 0x00], 4).is_err(), "PINGREQ with a body");
        assert!(decode_all(&[0x40, 0x02, 0x00, 0x00], 4).is_err(), "PUBACK id 0");
        assert!(decode_all(&[0xe0, 0x01, 0x00], 4).is_err(), "3.1.1 DISCONNECT with a body");
        assert!(decode_all(&[0xe0, 0x01, 0x00], 5).is_ok(), "5.0 DISCONNECT with a reason");
        assert!(decode_all(&[0x00, 0x00], 4).is_err(), "reserved type 0");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512), version in 4u8..=5) {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = try_decode(&mut buf, version, 4096) {}
        }
    }
}
