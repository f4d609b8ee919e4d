//! One client connection: CONNECT, then packets until DISCONNECT, an error,
//! a takeover or shutdown.

use std::collections::hash_map::DefaultHasher;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use mqtt5_protocol::packet::connack::ConnAckPacket;
use mqtt5_protocol::packet::connect::ConnectPacket;
use mqtt5_protocol::packet::disconnect::DisconnectPacket;
use mqtt5_protocol::packet::pingresp::PingRespPacket;
use mqtt5_protocol::packet::puback::PubAckPacket;
use mqtt5_protocol::packet::pubcomp::PubCompPacket;
use mqtt5_protocol::packet::publish::PublishPacket;
use mqtt5_protocol::packet::pubrec::PubRecPacket;
use mqtt5_protocol::packet::suback::{SubAckPacket, SubAckReasonCode};
use mqtt5_protocol::packet::unsuback::{UnsubAckPacket, UnsubAckReasonCode};
use mqtt5_protocol::{Packet, QoS, ReasonCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, watch};

use super::broker::{Delivery, Message, RECENT, SessionState};
use super::codec::{self, FrameError};
use super::{Credentials, Grant, MqttContext, now_ns};
use crate::rules::Publish;
use crate::stats::IngestStats;
use crate::topic::{validate_topic_filter, validate_topic_name};

/// Why a connection ends.
enum End {
    /// The client sent DISCONNECT (with `will` = v5 reason 0x04).
    Disconnect { send_will: bool },
    /// The socket closed or failed.
    Closed(String),
    /// A protocol violation; v5 clients get this reason.
    Protocol(ReasonCode, String),
    /// Another connection took the session.
    TakenOver,
    /// The server is stopping.
    Shutdown,
    /// Storage cannot acknowledge: close without acks so the client resends later.
    Storage,
}

/// An acknowledgement waiting for its message's rows to be durable.
type PendingAck = Pin<Box<dyn Future<Output = (Option<Ack>, bool)> + Send>>;

#[derive(Debug, Clone, Copy)]
enum Ack {
    PubAck(u16),
    PubRec(u16),
}

struct Conn<W> {
    writer: WriteHalf<W>,
    out: BytesMut,
    version: u8,
    client_id: String,
    peer: SocketAddr,
}

impl<W: AsyncRead + AsyncWrite> Conn<W> {
    fn is_v5(&self) -> bool {
        self.version == 5
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            let buf = self.out.split();
            self.writer.write_all(&buf).await?;
        }
        Ok(())
    }

    fn push(&mut self, packet: &impl mqtt5_protocol::packet::MqttPacket) {
        if let Err(e) = codec::encode(packet, &mut self.out) {
            tracing::error!(client_id = %self.client_id, error = %e, "encoding a packet failed");
        }
    }

    fn push_ack(&mut self, ack: Ack) {
        match ack {
            Ack::PubAck(id) => self.push(&PubAckPacket::new(id)),
            Ack::PubRec(id) => self.push(&PubRecPacket::new(id)),
        }
    }

    fn push_publish(&mut self, d: &Delivery, packet_id: Option<u16>) {
        let qos = if d.qos >= 1 { QoS::AtLeastOnce } else { QoS::AtMostOnce };
        let m = &d.message;
        let mut p = if self.is_v5() {
            PublishPacket::new(m.topic.clone(), m.payload.clone(), qos)
        } else {
            PublishPacket::new_v311(m.topic.clone(), m.payload.clone(), qos)
        };
        if let Some(id) = packet_id {
            p = p.with_packet_id(id);
        }
        p = p.with_retain(d.retained);
        self.push(&p);
    }
}

fn hash_of(topic: &str, payload: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    topic.hash(&mut h);
    payload.hash(&mut h);
    h.finish()
}

/// Reads frames into a channel, so the main loop can `select!` without
/// losing a half-read frame. Ends on EOF, error or keep-alive timeout.
async fn read_frames<R: AsyncRead>(
    mut reader: ReadHalf<R>,
    mut buf: BytesMut,
    version: u8,
    max: usize,
    keep_alive: u16,
    tx: mpsc::Sender<Result<Packet, End>>,
) {
    let idle = (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500));
    loop {
        match codec::try_decode(&mut buf, version, max) {
            Ok(Some(p)) => {
                if tx.send(Ok(p)).await.is_err() {
                    return;
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                let code = match e {
                    FrameError::TooLarge { .. } => ReasonCode::PacketTooLarge,
                    FrameError::Malformed(_) => ReasonCode::MalformedPacket,
                };
                let _ = tx.send(Err(End::Protocol(code, e.to_string()))).await;
                return;
            }
        }
        let read = reader.read_buf(&mut buf);
        let n = match idle {
            Some(d) => match tokio::time::timeout(d, read).await {
                Ok(r) => r,
                Err(_) => {
                    let _ = tx
                        .send(Err(End::Protocol(
                            ReasonCode::KeepAliveTimeout,
                            format!("no packet within 1.5 × keep-alive ({keep_alive} s)"),
                        )))
                        .await;
                    return;
                }
            },
            None => read.await,
        };
        match n {
            Ok(0) => {
                let _ = tx.send(Err(End::Closed("the client closed the connection".into()))).await;
                return;
            }
            Ok(_) => {}
            Err(e) => {
                let _ = tx.send(Err(End::Closed(format!("read failed: {e}")))).await;
                return;
            }
        }
    }
}

/// Reads the CONNECT packet within the connect timeout.
async fn read_connect<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    ctx: &MqttContext,
) -> Result<Box<ConnectPacket>, String> {
    let deadline = tokio::time::Instant::now() + ctx.options.connect_timeout;
    loop {
        // Refuse a stream that is not MQTT at its first byte instead of waiting for a frame.
        if let Some(&first) = buf.first()
            && first != 0x10
        {
            return Err(format!("expected CONNECT first, got byte 0x{first:02x}"));
        }
        match codec::try_decode(buf, 5, ctx.options.max_packet_bytes) {
            Ok(Some(Packet::Connect(c))) => return Ok(c),
            Ok(Some(other)) => return Err(format!("expected CONNECT first, got {}", other.packet_type_name())),
            Ok(None) => {}
            Err(e) => return Err(e.to_string()),
        }
        match tokio::time::timeout_at(deadline, reader.read_buf(buf)).await {
            Err(_) => return Err("no CONNECT within the connect timeout".into()),
            Ok(Ok(0)) => return Err("closed before CONNECT".into()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("read failed: {e}")),
        }
    }
}

fn connack(version: u8, present: bool, code: ReasonCode) -> ConnAckPacket {
    if version == 5 { ConnAckPacket::new(present, code) } else { ConnAckPacket::new_v311(present, code) }
}

/// Serves one connection to its end.
pub(super) async fn run<S>(
    stream: S,
    peer: SocketAddr,
    cert_identity: Option<String>,
    ctx: Arc<MqttContext>,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, writer) = tokio::io::split(stream);
    let mut buf = BytesMut::with_capacity(4096);
    let connect = match read_connect(&mut reader, &mut buf, &ctx).await {
        Ok(c) => c,
        Err(reason) => {
            IngestStats::add(&ctx.stats.mqtt_protocol_errors, 1);
            tracing::warn!(%peer, %reason, "MQTT connection closed before CONNECT");
            return;
        }
    };
    let version = connect.protocol_version;
    let mut conn = Conn {
        writer,
        out: BytesMut::new(),
        version: if version == 5 { 5 } else { 4 },
        client_id: String::new(),
        peer,
    };
    if version != 4 && version != 5 {
        conn.push(&connack(conn.version, false, ReasonCode::UnsupportedProtocolVersion));
        let _ = conn.flush().await;
        tracing::warn!(%peer, version, "MQTT protocol level not supported (3.1.1 = 4 and 5.0 = 5 are)");
        return;
    }
    let persistent = if version == 5 {
        connect.properties.get_session_expiry_interval().unwrap_or(0) > 0
    } else {
        !connect.clean_start
    };
    let mut assigned = None;
    let client_id = if connect.client_id.is_empty() {
        if persistent && version == 4 {
            conn.push(&connack(4, false, ReasonCode::ClientIdentifierNotValid));
            let _ = conn.flush().await;
            tracing::warn!(%peer, "MQTT 3.1.1 client with an empty client id asked for a persistent session");
            return;
        }
        let id = format!("telemark-{:016x}", hash_of(&peer.to_string(), &now_ns().to_le_bytes()));
        assigned = Some(id.clone());
        id
    } else {
        connect.client_id.clone()
    };
    conn.client_id = client_id.clone();
    let credentials = Credentials {
        client_id: &client_id,
        username: connect.username.as_deref(),
        password: connect.password.as_deref(),
        certificate: cert_identity.as_deref(),
    };
    let grant: Grant = match ctx.auth.authenticate(&credentials) {
        Ok(g) => g,
        Err(reason) => {
            IngestStats::add(&ctx.stats.mqtt_connections_refused, 1);
            tracing::warn!(%peer, client_id = %client_id, %reason, "MQTT connection refused");
            let code =
                if connect.password.is_some() { ReasonCode::BadUsernameOrPassword } else { ReasonCode::NotAuthorized };
            conn.push(&connack(conn.version, false, code));
            let _ = conn.flush().await;
            return;
        }
    };
    // Policies compare topic levels with the certificate identity, else the client id.
    let identity = cert_identity.clone().unwrap_or_else(|| client_id.clone());
    let conn_id = ctx.broker.connection_id();
    let (present, session, mut kicked) = ctx.broker.attach(&client_id, conn_id, connect.clean_start, persistent);
    let window = ctx.options.max_inflight.max(1);
    let mut ack = connack(conn.version, present, ReasonCode::Success);
    if conn.is_v5() {
        ack = ack
            .with_receive_maximum(window)
            .with_maximum_packet_size(u32::try_from(ctx.options.max_packet_bytes).unwrap_or(u32::MAX))
            .with_retain_available(true)
            .with_shared_subscription_available(false)
            .with_subscription_identifier_available(false)
            .with_wildcard_subscription_available(true)
            .with_topic_alias_maximum(0);
        if let Some(id) = &assigned {
            ack = ack.with_assigned_client_id(id.clone());
        }
    }
    conn.push(&ack);
    if let Err(e) = conn.flush().await {
        ctx.broker.detach(&client_id, conn_id);
        tracing::debug!(%peer, error = %e, "MQTT write failed after CONNECT");
        return;
    }
    ctx.stats.mqtt_connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    IngestStats::add(&ctx.stats.mqtt_connections_total, 1);
    tracing::debug!(%peer, client_id = %client_id, grant = %grant.name, version, present, "MQTT client connected");
    super::presence::event(&ctx, &client_id, &peer.to_string(), None);
    if let Some(h) = ctx.hooks.get() {
        h.alive(&client_id);
    }

    let (deliver_tx, mut deliver_rx) = mpsc::channel::<Delivery>(1024);
    let filters = lock(&session).subscriptions.clone();
    ctx.broker.set_subscriptions(conn_id, &deliver_tx, &filters);
    let (frames_tx, mut frames) = mpsc::channel(8);
    let reader_task = tokio::spawn(read_frames(
        reader,
        buf,
        conn.version,
        ctx.options.max_packet_bytes,
        connect.keep_alive,
        frames_tx,
    ));
    let will = connect.will.clone();
    let mut state = Loop {
        ctx: ctx.clone(),
        session,
        grant,
        identity,
        conn_id,
        deliver_tx,
        next_packet_id: 0,
        pending: FuturesOrdered::new(),
    };

    let end = loop {
        let reading = state.pending.len() < usize::from(window);
        tokio::select! {
            frame = frames.recv(), if reading => match frame {
                Some(Ok(packet)) => {
                    if let Some(end) = state.handle(&mut conn, packet) {
                        break end;
                    }
                }
                Some(Err(end)) => break end,
                None => break End::Closed("reader stopped".into()),
            },
            Some((ack, ok)) = state.pending.next(), if !state.pending.is_empty() => {
                if !ok {
                    break End::Storage;
                }
                if let Some(a) = ack {
                    conn.push_ack(a);
                }
            }
            Some(d) = deliver_rx.recv() => {
                let id = (d.qos > 0).then(|| state.packet_id());
                conn.push_publish(&d, id);
            }
            _ = &mut kicked => break End::TakenOver,
            _ = crate::mqtt::stopped(&mut stop) => break End::Shutdown,
        }
        if let Err(e) = conn.flush().await {
            break End::Closed(format!("write failed: {e}"));
        }
    };
    reader_task.abort();
    // Acks already due go out before we leave, unless storage failed.
    if !matches!(end, End::Storage | End::Closed(_)) {
        while let Some((ack, ok)) = state.pending.next().await {
            if !ok {
                break;
            }
            if let Some(a) = ack {
                conn.push_ack(a);
            }
        }
    }
    // A will is for a device that vanished: not for a clean DISCONNECT, and
    // not when the server itself is stopping (that would store one "offline"
    // message per connected device on every restart).
    let send_will = match &end {
        End::Disconnect { send_will } => *send_will,
        End::Shutdown => false,
        _ => true,
    };
    let (log_reason, v5_code) = match &end {
        End::Disconnect { .. } => (None, None),
        End::Closed(r) => (Some(r.clone()), None),
        End::Protocol(code, r) => {
            IngestStats::add(&ctx.stats.mqtt_protocol_errors, 1);
            (Some(r.clone()), Some(*code))
        }
        End::TakenOver => (Some("another connection took over the session".into()), Some(ReasonCode::SessionTakenOver)),
        End::Shutdown => (None, Some(ReasonCode::ServerShuttingDown)),
        End::Storage => {
            (Some("storage failed; closing without acknowledging".into()), Some(ReasonCode::UnspecifiedError))
        }
    };
    if conn.is_v5()
        && let Some(code) = v5_code
    {
        conn.push(&DisconnectPacket::new(code));
    }
    let _ = conn.flush().await;
    let _ = conn.writer.shutdown().await;
    if let Some(reason) = &log_reason {
        if matches!(end, End::Protocol(..) | End::Storage) {
            tracing::warn!(peer = %conn.peer, client_id = %client_id, %reason, "MQTT connection closed");
        } else {
            tracing::debug!(peer = %conn.peer, client_id = %client_id, %reason, "MQTT connection closed");
        }
    }
    ctx.broker.detach(&client_id, conn_id);
    ctx.stats.mqtt_connections.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    {
        use super::presence::DisconnectReason as R;
        let reason = match &end {
            End::Disconnect { .. } => R::Clean,
            End::Closed(_) => R::ConnectionLost,
            End::Protocol(ReasonCode::KeepAliveTimeout, _) => R::KeepAliveTimeout,
            End::Protocol(..) => R::ProtocolError,
            End::TakenOver => R::TakenOver,
            End::Shutdown => R::ServerShutdown,
            End::Storage => R::StorageError,
        };
        super::presence::event(&ctx, &client_id, &conn.peer.to_string(), Some(reason));
    }
    if send_will && let Some(w) = will {
        let qos = u8::from(w.qos);
        let publish = Publish {
            topic: &w.topic,
            payload: &w.payload,
            client_id: &client_id,
            identity: Some(&state.identity),
            now_ns: now_ns(),
        };
        match ctx.prepare(&publish, Some(&state.grant)) {
            Ok(prepared) => {
                if let Err(e) = ctx.store(prepared).await {
                    tracing::warn!(client_id = %client_id, error = %e, "storing the will message failed");
                }
                ctx.broker.publish(Message {
                    topic: w.topic.clone(),
                    payload: Bytes::from(w.payload.clone()),
                    qos,
                    retain: w.retain,
                });
            }
            Err(e) => tracing::warn!(client_id = %client_id, reason = %e, "will message refused"),
        }
    }
}

fn lock(m: &Mutex<SessionState>) -> std::sync::MutexGuard<'_, SessionState> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Loop {
    ctx: Arc<MqttContext>,
    session: Arc<Mutex<SessionState>>,
    grant: Grant,
    identity: String,
    conn_id: u64,
    deliver_tx: mpsc::Sender<Delivery>,
    next_packet_id: u16,
    pending: FuturesOrdered<PendingAck>,
}

impl Loop {
    fn packet_id(&mut self) -> u16 {
        self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
        self.next_packet_id
    }

    /// Queues an ack behind those already pending, keeping acks in receive order.
    fn ack_in_order(&mut self, ack: Option<Ack>) {
        if ack.is_none() && self.pending.is_empty() {
            return;
        }
        self.pending.push_back(Box::pin(async move { (ack, true) }));
    }

    fn handle<W: AsyncRead + AsyncWrite>(&mut self, conn: &mut Conn<W>, packet: Packet) -> Option<End> {
        match packet {
            Packet::Publish(p) => return self.publish(conn, p),
            Packet::PubRel(r) => {
                let known = lock(&self.session).awaiting_release.remove(&r.packet_id);
                let comp = if known || !conn.is_v5() {
                    PubCompPacket::new(r.packet_id)
                } else {
                    PubCompPacket::new_with_reason(r.packet_id, ReasonCode::PacketIdentifierNotFound)
                };
                conn.push(&comp);
            }
            Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubComp(_) => {
                // Acks for what we delivered at QoS 1; nothing is retransmitted, so nothing to track.
            }
            Packet::Subscribe(s) => {
                let mut suback =
                    if conn.is_v5() { SubAckPacket::new(s.packet_id) } else { SubAckPacket::new_v311(s.packet_id) };
                let mut retained = Vec::new();
                {
                    let mut session = lock(&self.session);
                    for f in &s.filters {
                        if f.filter.starts_with("$share/") {
                            suback = suback.add_reason_code(SubAckReasonCode::SharedSubscriptionsNotSupported);
                            continue;
                        }
                        if let Err(e) = validate_topic_filter(&f.filter) {
                            tracing::warn!(client_id = %conn.client_id, reason = %e, "subscription refused");
                            suback = suback.add_reason_code(SubAckReasonCode::TopicFilterInvalid);
                            continue;
                        }
                        let allowed =
                            super::presence::check_presence_subscription(&self.grant, &f.filter).and_then(|()| {
                                self.ctx.hooks.get().map_or(Ok(()), |h| h.may_subscribe(&self.grant, &f.filter))
                            });
                        if let Err(reason) = allowed {
                            tracing::warn!(client_id = %conn.client_id, grant = %self.grant.name, %reason, "subscription refused");
                            suback = suback.add_reason_code(SubAckReasonCode::NotAuthorized);
                            continue;
                        }
                        let granted = u8::from(f.options.qos).min(1);
                        session.subscriptions.retain(|(existing, _)| existing != &f.filter);
                        session.subscriptions.push((f.filter.clone(), granted));
                        suback = suback.add_granted_qos(if granted == 1 { QoS::AtLeastOnce } else { QoS::AtMostOnce });
                        retained.extend(self.ctx.broker.retained_for(&f.filter).into_iter().map(|m| (m, granted)));
                    }
                    self.ctx.broker.set_subscriptions(self.conn_id, &self.deliver_tx, &session.subscriptions);
                }
                conn.push(&suback);
                for (message, granted) in retained {
                    let d = Delivery { qos: granted.min(message.qos), message, retained: true };
                    let id = (d.qos > 0).then(|| self.packet_id());
                    conn.push_publish(&d, id);
                }
            }
            Packet::Unsubscribe(u) => {
                let mut unsuback =
                    if conn.is_v5() { UnsubAckPacket::new(u.packet_id) } else { UnsubAckPacket::new_v311(u.packet_id) };
                let mut session = lock(&self.session);
                for f in &u.filters {
                    let before = session.subscriptions.len();
                    session.subscriptions.retain(|(existing, _)| existing != f);
                    if conn.is_v5() {
                        unsuback = unsuback.add_reason_code(if session.subscriptions.len() < before {
                            UnsubAckReasonCode::Success
                        } else {
                            UnsubAckReasonCode::NoSubscriptionExisted
                        });
                    }
                }
                self.ctx.broker.set_subscriptions(self.conn_id, &self.deliver_tx, &session.subscriptions);
                drop(session);
                conn.push(&unsuback);
            }
            Packet::PingReq => {
                if let Some(h) = self.ctx.hooks.get() {
                    h.alive(&conn.client_id);
                }
                conn.push(&PingRespPacket::default());
            }
            Packet::Disconnect(d) => {
                return Some(End::Disconnect { send_will: d.reason_code == ReasonCode::DisconnectWithWillMessage });
            }
            Packet::Connect(_) => return Some(End::Protocol(ReasonCode::ProtocolError, "a second CONNECT".into())),
            Packet::Auth(_) => {
                return Some(End::Protocol(
                    ReasonCode::BadAuthenticationMethod,
                    "enhanced authentication (AUTH) is not supported".into(),
                ));
            }
            other => {
                return Some(End::Protocol(
                    ReasonCode::ProtocolError,
                    format!("{} is not sent by clients", other.packet_type_name()),
                ));
            }
        }
        None
    }

    fn publish<W: AsyncRead + AsyncWrite>(&mut self, conn: &mut Conn<W>, p: PublishPacket) -> Option<End> {
        IngestStats::add(&self.ctx.stats.mqtt_messages_received, 1);
        if let Err(e) = validate_topic_name(&p.topic_name) {
            let code = if p.topic_name.is_empty() && p.topic_alias().is_some() {
                ReasonCode::TopicAliasInvalid
            } else {
                ReasonCode::TopicNameInvalid
            };
            return Some(End::Protocol(code, format!("PUBLISH: {e}")));
        }
        let qos = u8::from(p.qos);
        let id = p.packet_id.unwrap_or(0);
        if qos == 2 && lock(&self.session).awaiting_release.contains(&id) {
            // A resend before PUBREL: already stored, answer again.
            self.ack_in_order(Some(Ack::PubRec(id)));
            return None;
        }
        let mut now = now_ns();
        if qos == 1 {
            let h = hash_of(&p.topic_name, &p.payload);
            let mut session = lock(&self.session);
            if p.dup
                && let Some(&(_, _, t)) = session.recent.iter().find(|(i, hh, _)| *i == id && *hh == h)
            {
                now = t;
            } else {
                if session.recent.len() >= RECENT {
                    session.recent.pop_front();
                }
                session.recent.push_back((id, h, now));
            }
        }
        let publish = Publish {
            topic: &p.topic_name,
            payload: &p.payload,
            client_id: &conn.client_id,
            identity: Some(&self.identity),
            now_ns: now,
        };
        let prepared = match self.ctx.prepare(&publish, Some(&self.grant)) {
            Ok(prepared) => prepared,
            Err(refused) => {
                IngestStats::add(&self.ctx.stats.mqtt_policy_denied, 1);
                tracing::warn!(peer = %conn.peer, client_id = %conn.client_id, topic = %p.topic_name, reason = %refused, "publish refused");
                if !conn.is_v5() {
                    return Some(End::Protocol(ReasonCode::NotAuthorized, refused.0));
                }
                match qos {
                    1 => conn.push(&PubAckPacket::new_with_reason(id, ReasonCode::NotAuthorized)),
                    2 => conn.push(&PubRecPacket::new_with_reason(id, ReasonCode::NotAuthorized)),
                    _ => return Some(End::Protocol(ReasonCode::NotAuthorized, refused.0)),
                }
                return None;
            }
        };
        self.ctx.broker.publish(Message {
            topic: p.topic_name.clone(),
            payload: p.payload.clone(),
            qos,
            retain: p.retain,
        });
        if qos == 2 {
            lock(&self.session).awaiting_release.insert(id);
        }
        let ack = match qos {
            1 => Some(Ack::PubAck(id)),
            2 => Some(Ack::PubRec(id)),
            _ => None,
        };
        if prepared.is_empty() {
            self.ack_in_order(ack);
            return None;
        }
        let ctx = self.ctx.clone();
        let session = self.session.clone();
        self.pending.push_back(Box::pin(async move {
            match ctx.store(prepared).await {
                Ok(()) => (ack, true),
                Err(_) => {
                    if qos == 2 {
                        lock(&session).awaiting_release.remove(&id);
                    }
                    (None, false)
                }
            }
        }));
        None
    }
}
