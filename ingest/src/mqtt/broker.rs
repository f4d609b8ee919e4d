//! Sessions, subscriptions and retained messages shared by all connections.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::stats::IngestStats;
use crate::topic::filter_matches;

/// A message on its way to subscribers.
#[derive(Debug)]
pub struct Message {
    /// Topic name.
    pub topic: String,
    /// Payload.
    pub payload: Bytes,
    /// QoS it was published with.
    pub qos: u8,
    /// Retain flag as published.
    pub retain: bool,
}

/// A message for one subscriber, at the QoS it gets.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The message.
    pub message: Arc<Message>,
    /// min(published QoS, granted QoS).
    pub qos: u8,
    /// Retained message sent on subscribe.
    pub retained: bool,
}

/// What a session remembers between connections (when it is persistent).
#[derive(Debug, Default)]
pub struct SessionState {
    /// Topic filters and the QoS granted.
    pub subscriptions: Vec<(String, u8)>,
    /// QoS 2 packet ids received and stored, awaiting PUBREL.
    pub awaiting_release: HashSet<u16>,
    /// Recent QoS 1 publishes: packet id, payload hash, the time given to
    /// rows without their own; a DUP resend reuses the time, so it
    /// overwrites instead of duplicating.
    pub recent: VecDeque<(u16, u64, i64)>,
}

/// Most recent QoS 1 publishes remembered per session.
pub const RECENT: usize = 256;

struct SessionEntry {
    state: Arc<Mutex<SessionState>>,
    /// The connection holding the session now, and how to end it.
    owner: Option<(u64, oneshot::Sender<()>)>,
    persistent: bool,
}

struct Subscriber {
    tx: mpsc::Sender<Delivery>,
    filters: Vec<(String, u8)>,
}

/// The shared broker state.
#[derive(Default)]
pub struct Broker {
    sessions: Mutex<HashMap<String, SessionEntry>>,
    subscribers: RwLock<HashMap<u64, Subscriber>>,
    retained: RwLock<HashMap<String, Arc<Message>>>,
    next_id: AtomicU64,
    stats: Arc<IngestStats>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Most sessions kept for disconnected clients; past it the oldest-connected is not tracked (new ones are refused persistence).
const MAX_PERSISTENT_SESSIONS: usize = 100_000;

impl Broker {
    /// A broker counting deliveries into `stats`.
    pub fn new(stats: Arc<IngestStats>) -> Self {
        Broker { stats, ..Default::default() }
    }

    /// A fresh connection id.
    pub fn connection_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Attaches connection `conn` to the session of `client_id`, ending any
    /// connection that holds it now. Returns whether an old session was
    /// resumed, its state, and a receiver that fires if another connection
    /// takes the session over.
    pub fn attach(
        &self,
        client_id: &str,
        conn: u64,
        clean_start: bool,
        persistent: bool,
    ) -> (bool, Arc<Mutex<SessionState>>, oneshot::Receiver<()>) {
        let (kick_tx, kick_rx) = oneshot::channel();
        let mut sessions = lock(&self.sessions);
        let persistent = persistent && (sessions.len() < MAX_PERSISTENT_SESSIONS || sessions.contains_key(client_id));
        let entry = sessions.remove(client_id);
        let (present, state) = match entry {
            Some(mut e) => {
                if let Some((old, kick)) = e.owner.take() {
                    let _ = kick.send(());
                    self.unsubscribe_connection(old);
                }
                if clean_start { (false, Arc::default()) } else { (true, e.state) }
            }
            None => (false, Arc::default()),
        };
        sessions.insert(
            client_id.to_string(),
            SessionEntry { state: state.clone(), owner: Some((conn, kick_tx)), persistent },
        );
        (present, state, kick_rx)
    }

    /// Detaches a connection; a non-persistent session is forgotten.
    pub fn detach(&self, client_id: &str, conn: u64) {
        self.unsubscribe_connection(conn);
        let mut sessions = lock(&self.sessions);
        if let Some(e) = sessions.get_mut(client_id)
            && e.owner.as_ref().is_some_and(|(c, _)| *c == conn)
        {
            if e.persistent {
                e.owner = None;
            } else {
                sessions.remove(client_id);
            }
        }
    }

    /// Sets the connection's subscriptions (all of them) and where to deliver.
    pub fn set_subscriptions(&self, conn: u64, tx: &mpsc::Sender<Delivery>, filters: &[(String, u8)]) {
        let mut subs = self.subscribers.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if filters.is_empty() {
            subs.remove(&conn);
        } else {
            subs.insert(conn, Subscriber { tx: tx.clone(), filters: filters.to_vec() });
        }
    }

    fn unsubscribe_connection(&self, conn: u64) {
        self.subscribers.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&conn);
    }

    /// Delivers a message to every matching subscriber (once each, at the
    /// highest QoS among its matching filters) and updates the retained set.
    pub fn publish(&self, message: Message) {
        let message = Arc::new(message);
        if message.retain {
            let mut retained = self.retained.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            if message.payload.is_empty() {
                retained.remove(&message.topic);
            } else {
                retained.insert(message.topic.clone(), message.clone());
            }
        }
        let subs = self.subscribers.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        for sub in subs.values() {
            let granted = sub.filters.iter().filter(|(f, _)| filter_matches(f, &message.topic)).map(|(_, q)| *q).max();
            if let Some(q) = granted {
                // A subscriber that does not keep up loses messages rather than stalling publishers.
                if sub
                    .tx
                    .try_send(Delivery { message: message.clone(), qos: q.min(message.qos), retained: false })
                    .is_ok()
                {
                    IngestStats::add(&self.stats.mqtt_messages_delivered, 1);
                }
            }
        }
    }

    /// Retained messages matching a filter.
    pub fn retained_for(&self, filter: &str) -> Vec<Arc<Message>> {
        let retained = self.retained.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        retained.values().filter(|m| filter_matches(filter, &m.topic)).cloned().collect()
    }
}
