//! Redelivery at the protocol level, with hand-made frames: a QoS 1 resend
//! (DUP) in a resumed session and a repeated QoS 2 PUBLISH before PUBREL
//! store one row each; a malformed packet closes only its own connection.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use telemark_engine::{Database, Options, ScanRequest};
use telemark_ingest::mqtt::{self, Authorizer, Credentials, Grant, ListenerOptions, MqttContext};
use telemark_ingest::{RuleSet, Sink, TopicRuleConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug)]
struct AllowAll;
impl Authorizer for AllowAll {
    fn authenticate(&self, _: &Credentials<'_>) -> Result<Grant, String> {
        Ok(Grant::all("test"))
    }
}

struct Fixture {
    db: Arc<Database>,
    addr: std::net::SocketAddr,
    _stop: tokio::sync::watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

async fn start() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Database::open(dir.path(), Options::default()).unwrap());
    let rules = RuleSet::compile(&[TopicRuleConfig {
        topic: Some("dev/{device_id}/t".into()),
        database: "iot".into(),
        table: Some("t".into()),
        ..Default::default()
    }])
    .unwrap();
    let sink = Sink::start(db.clone()).unwrap();
    let ctx = Arc::new(MqttContext::new(
        db.clone(),
        sink,
        rules,
        Arc::new(AllowAll),
        Arc::default(),
        ListenerOptions::default(),
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(mqtt::serve(listener, ctx, rx));
    Fixture { db, addr, _stop: stop, _dir: dir }
}

fn rows(db: &Database) -> usize {
    match db.scan(&ScanRequest::new("iot", "t")) {
        Ok(stream) => stream.map(|b| b.unwrap().num_rows()).sum(),
        Err(_) => 0,
    }
}

fn string(s: &str) -> Vec<u8> {
    let mut v = (s.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(s.as_bytes());
    v
}

fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut n = body.len();
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// MQTT 3.1.1 CONNECT with clean session = `clean`.
fn connect(client_id: &str, clean: bool) -> Vec<u8> {
    let mut body = string("MQTT");
    body.extend([4, if clean { 0x02 } else { 0x00 }, 0, 60]);
    body.extend(string(client_id));
    frame(0x10, &body)
}

fn publish(qos: u8, dup: bool, id: u16, topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = string(topic);
    body.extend(id.to_be_bytes());
    body.extend_from_slice(payload);
    frame(0x30 | (u8::from(dup) << 3) | (qos << 1), &body)
}

async fn read_exact(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut buf)).await.expect("timed out").unwrap();
    buf
}

async fn session(addr: std::net::SocketAddr, client_id: &str, clean: bool) -> (TcpStream, bool) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&connect(client_id, clean)).await.unwrap();
    let ack = read_exact(&mut s, 4).await;
    assert_eq!((ack[0], ack[1], ack[3]), (0x20, 2, 0), "CONNACK accepted");
    (s, ack[2] == 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_resend_with_dup_in_a_resumed_session_stores_one_row() {
    let f = start().await;
    let (mut s, present) = session(f.addr, "dev-1", false).await;
    assert!(!present);
    s.write_all(&publish(1, false, 5, "dev/d1/t", br#"{"v":1}"#)).await.unwrap();
    assert_eq!(read_exact(&mut s, 4).await, [0x40, 2, 0, 5], "PUBACK 5");
    drop(s);
    // The ack was "lost": the device reconnects and resends with DUP.
    let (mut s, present) = session(f.addr, "dev-1", false).await;
    assert!(present, "the persistent session is resumed");
    s.write_all(&publish(1, true, 5, "dev/d1/t", br#"{"v":1}"#)).await.unwrap();
    assert_eq!(read_exact(&mut s, 4).await, [0x40, 2, 0, 5]);
    assert_eq!(rows(&f.db), 1, "the resend overwrote the row");
    // A new message with the same id (after the ack) is a new row.
    s.write_all(&publish(1, false, 5, "dev/d1/t", br#"{"v":2}"#)).await.unwrap();
    assert_eq!(read_exact(&mut s, 4).await, [0x40, 2, 0, 5]);
    assert_eq!(rows(&f.db), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_repeat_before_pubrel_is_stored_once() {
    let f = start().await;
    let (mut s, _) = session(f.addr, "dev-2", false).await;
    s.write_all(&publish(2, false, 9, "dev/d2/t", br#"{"v":1}"#)).await.unwrap();
    assert_eq!(read_exact(&mut s, 4).await, [0x50, 2, 0, 9], "PUBREC 9");
    drop(s);
    let (mut s, present) = session(f.addr, "dev-2", false).await;
    assert!(present);
    s.write_all(&publish(2, true, 9, "dev/d2/t", br#"{"v":1}"#)).await.unwrap();
    assert_eq!(read_exact(&mut s, 4).await, [0x50, 2, 0, 9], "PUBREC again");
    s.write_all(&[0x62, 2, 0, 9]).await.unwrap(); // PUBREL 9
    assert_eq!(read_exact(&mut s, 4).await, [0x70, 2, 0, 9], "PUBCOMP 9");
    assert_eq!(rows(&f.db), 1);
    // PUBREL for an unknown id is still completed (3.1.1).
    s.write_all(&[0x62, 2, 0, 10]).await.unwrap();
    assert_eq!(read_exact(&mut s, 4).await, [0x70, 2, 0, 10]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_packet_closes_only_its_connection() {
    let f = start().await;
    let (mut good, _) = session(f.addr, "good", true).await;
    for (i, bad) in [
        vec![0x00, 0x00],                    // reserved packet type
        vec![0xc0, 0x01, 0x00],              // PINGREQ with a body
        frame(0x82, &[0, 0, 0, 1, b'a', 0]), // SUBSCRIBE with packet id 0
        connect("again", true),              // a second CONNECT
        vec![0x30, 0xff, 0xff, 0xff, 0x7f],  // PUBLISH larger than the limit
    ]
    .into_iter()
    .enumerate()
    {
        let (mut s, _) = session(f.addr, &format!("bad-{i}"), true).await;
        s.write_all(&bad).await.unwrap();
        let mut buf = [0u8; 64];
        let n =
            tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.expect("closed in time").unwrap_or(0);
        assert_eq!(n, 0, "case {i}: connection closed without a reply");
        good.write_all(&publish(1, false, 1 + i as u16, "dev/g/t", format!(r#"{{"v":{i}}}"#).as_bytes()))
            .await
            .unwrap();
        assert_eq!(read_exact(&mut good, 4).await, [0x40, 2, 0, 1 + i as u8], "the other connection still works");
    }
    // Garbage before CONNECT closes the socket too.
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.unwrap().unwrap_or(0);
    assert_eq!(n, 0);
    assert_eq!(rows(&f.db), 5);
}
