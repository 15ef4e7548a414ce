//! The DingTalk Stream gateway (docs/vendors/events.md "DingTalk Stream mode"):
//! `POST /v1.0/gateway/connections/open` hands out one-shot tickets that expire,
//! `GET /connect?ticket=…` upgrades to the WebSocket the events come down.
//!
//! Frames are the vendor's: string header values, `data` a JSON *string*. An
//! event goes to one open connection and stays pending until a `SUCCESS` reply
//! with its `messageId` arrives; one left unanswered (or answered `LATER`) is
//! sent again after `redeliver_after`. Events pushed while nobody is connected
//! wait for the next connection. Tests drive the faults: [`StreamGateway::send_ping`],
//! [`StreamGateway::send_disconnect`] (the server closes the socket
//! `disconnect_grace` later), [`StreamGateway::drop_connections`] (no close
//! frame), [`StreamGateway::duplicate_next`] and a seeded duplicate ratio.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use axum::routing::{get, post};
use axum::Router;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::{mix, spawn_server, ServerGuard};

mod serve;
#[cfg(test)]
mod tests;

/// The open endpoint's path.
pub const OPEN_PATH: &str = "/v1.0/gateway/connections/open";
/// The WebSocket endpoint's path.
pub const CONNECT_PATH: &str = "/connect";

/// How often time-driven work (redelivery, the close after a `disconnect`) runs.
const TICK: Duration = Duration::from_millis(10);

#[derive(Debug, Clone)]
pub struct StreamGatewayConfig {
    /// The app key the open call must carry as `clientId`.
    pub client_id: String,
    /// The app secret the open call must carry as `clientSecret`.
    pub client_secret: String,
    /// How long a ticket can open a connection (vendor: 90 s).
    pub ticket_ttl: Duration,
    /// When an event not acknowledged (or answered `LATER`) is sent again (vendor: ~60 s).
    pub redeliver_after: Duration,
    /// How long after a SYSTEM `disconnect` the server closes the socket (vendor: 10 s).
    pub disconnect_grace: Duration,
    /// The share of acknowledged events delivered once more (same ids), from a seeded RNG.
    pub duplicate_ratio: f64,
    /// `eventCorpId` of every event.
    pub corp_id: String,
    pub seed: u64,
}

impl Default for StreamGatewayConfig {
    fn default() -> Self {
        StreamGatewayConfig {
            client_id: "dingsimstreamkey".into(),
            client_secret: "sim-stream-secret".into(),
            ticket_ttl: Duration::from_secs(90),
            redeliver_after: Duration::from_secs(60),
            disconnect_grace: Duration::from_secs(10),
            duplicate_ratio: 0.0,
            corp_id: "dingsimcorp".into(),
            seed: 1,
        }
    }
}

/// What a connection's task is asked to do.
enum Command {
    Text(String),
    /// A close frame, then the socket is closed.
    Close,
    /// The socket is dropped without a close frame.
    Drop,
    /// The connection goes silent: nothing read (so no pong either), nothing sent.
    Freeze,
}

struct Conn {
    tx: mpsc::UnboundedSender<Command>,
    /// After a `disconnect`: no more events go to it; closed at this instant.
    close_at: Option<Instant>,
    closing: bool,
}

enum Delivery {
    Queued,
    Sent { at: Instant },
    Later { due: Instant },
    Acked,
}

struct Event {
    id: String,
    message_id: String,
    event_type: String,
    data: String,
    born_ms: i64,
    delivery: Delivery,
    acked_once: bool,
    duplicated: bool,
}

struct State {
    rng: StdRng,
    tickets: HashMap<String, Instant>,
    tickets_issued: Vec<String>,
    ticket_refusals: usize,
    conns: BTreeMap<u64, Conn>,
    next_conn: u64,
    connections_opened: usize,
    next_conn_turn: u64,
    events: Vec<Event>,
    acked: Vec<String>,
    latered: Vec<String>,
    deliveries: usize,
    pings: HashMap<String, String>,
    pings_answered: usize,
    duplicate_next: u32,
    /// `SUCCESS` acknowledgements still to lose in transit.
    lose_acks: u32,
    acks_lost: usize,
    duplicate_ratio: f64,
}

struct Shared {
    config: StreamGatewayConfig,
    addr: OnceLock<SocketAddr>,
    state: Mutex<State>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a test thread panicked; the data is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The simulated Stream gateway; stops when dropped.
pub struct StreamGateway {
    shared: Arc<Shared>,
    addr: SocketAddr,
    _server: Arc<ServerGuard>,
    _ticker: ServerGuard,
}

impl StreamGateway {
    /// Starts the gateway on `127.0.0.1:0` on the current tokio runtime.
    pub async fn start(config: StreamGatewayConfig) -> std::io::Result<StreamGateway> {
        let state = State {
            rng: StdRng::seed_from_u64(mix(config.seed, &[b"dingtalk-stream"])),
            tickets: HashMap::new(),
            tickets_issued: Vec::new(),
            ticket_refusals: 0,
            conns: BTreeMap::new(),
            next_conn: 0,
            connections_opened: 0,
            next_conn_turn: 0,
            events: Vec::new(),
            acked: Vec::new(),
            latered: Vec::new(),
            deliveries: 0,
            pings: HashMap::new(),
            pings_answered: 0,
            duplicate_next: 0,
            lose_acks: 0,
            acks_lost: 0,
            duplicate_ratio: config.duplicate_ratio,
        };
        let shared = Arc::new(Shared {
            config,
            addr: OnceLock::new(),
            state: Mutex::new(state),
        });
        let router = Router::new()
            .route(OPEN_PATH, post(serve::open))
            .route(CONNECT_PATH, get(serve::connect))
            .with_state(Arc::clone(&shared));
        let (addr, server) = spawn_server(router).await?;
        let _ = shared.addr.set(addr);
        let ticker = tokio::spawn(tick(Arc::downgrade(&shared)));
        Ok(StreamGateway {
            shared,
            addr,
            _server: server,
            _ticker: ServerGuard(ticker),
        })
    }

    /// `http://127.0.0.1:PORT`: the gateway URL a client opens connections at.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn config(&self) -> &StreamGatewayConfig {
        &self.shared.config
    }

    /// Queues an event and delivers it to one open connection (or to the next
    /// one that opens); returns its `eventId`.
    pub fn push_event(&self, event_type: &str, data: Value) -> String {
        self.push_raw_event(event_type, &data.to_string())
    }

    /// [`StreamGateway::push_event`] with `data` as given, JSON or not.
    pub fn push_raw_event(&self, event_type: &str, data: &str) -> String {
        let mut state = self.shared.state();
        let n = state.events.len();
        let id = format!("{:016x}{n:06x}", state.rng.random::<u64>());
        let message_id = format!(
            "{:08x}_sim_{:x}_{n}",
            state.rng.random::<u32>(),
            self.addr.port()
        );
        let event = Event {
            id: id.clone(),
            message_id,
            event_type: event_type.to_string(),
            data: data.to_string(),
            born_ms: chrono::Utc::now().timestamp_millis(),
            delivery: Delivery::Queued,
            acked_once: false,
            duplicated: false,
        };
        state.events.push(event);
        dispatch(&self.shared, &mut state, Instant::now());
        id
    }

    /// Sends a SYSTEM `ping` to every open connection; returns how many were sent.
    pub fn send_ping(&self) -> usize {
        let mut state = self.shared.state();
        let ids: Vec<u64> = state.conns.keys().copied().collect();
        let mut sent = 0;
        for id in ids {
            let n = state.pings.len() + state.pings_answered;
            let message_id = format!("ping_{:08x}_{n}", state.rng.random::<u32>());
            let data = json!({"opaque": format!("{:016x}", state.rng.random::<u64>())}).to_string();
            let frame = system_frame("ping", &message_id, &data);
            if send(&mut state, id, Command::Text(frame)) {
                state.pings.insert(message_id, data);
                sent += 1;
            }
        }
        sent
    }

    /// Sends a SYSTEM `disconnect` to every open connection; no event goes to
    /// them afterwards and the server closes them `disconnect_grace` later.
    pub fn send_disconnect(&self) {
        let mut state = self.shared.state();
        let close_at = Instant::now() + self.shared.config.disconnect_grace;
        let ids: Vec<u64> = state.conns.keys().copied().collect();
        for id in ids {
            let n = state.deliveries;
            let frame = system_frame(
                "disconnect",
                &format!("disconnect_{n}"),
                &json!({"reason": "server restarting"}).to_string(),
            );
            if send(&mut state, id, Command::Text(frame)) {
                if let Some(conn) = state.conns.get_mut(&id) {
                    conn.closing = true;
                    conn.close_at = Some(close_at);
                }
            }
        }
    }

    /// Drops every open connection's socket, with no close frame.
    pub fn drop_connections(&self) {
        let mut state = self.shared.state();
        let ids: Vec<u64> = state.conns.keys().copied().collect();
        for id in ids {
            send(&mut state, id, Command::Drop);
            state.conns.remove(&id);
        }
    }

    /// Every open connection goes silent (a half-open TCP connection): no
    /// frame and no pong comes out of it, and no event goes to it any more.
    pub fn freeze_connections(&self) {
        let mut state = self.shared.state();
        let ids: Vec<u64> = state.conns.keys().copied().collect();
        for id in ids {
            if send(&mut state, id, Command::Freeze) {
                if let Some(conn) = state.conns.get_mut(&id) {
                    conn.closing = true;
                }
            }
        }
    }

    /// The next `n` `SUCCESS` acknowledgements are lost on the way: their
    /// events stay unacknowledged and are delivered again after
    /// `redeliver_after`.
    pub fn lose_next_acks(&self, n: u32) {
        self.shared.state().lose_acks += n;
    }

    /// How many acknowledgements were lost so far.
    pub fn acks_lost(&self) -> usize {
        self.shared.state().acks_lost
    }

    /// The next `n` events acknowledged with `SUCCESS` are delivered once more
    /// (same `eventId` and `messageId`).
    pub fn duplicate_next(&self, n: u32) {
        self.shared.state().duplicate_next += n;
    }

    pub fn set_duplicate_ratio(&self, ratio: f64) {
        self.shared.state().duplicate_ratio = ratio.clamp(0.0, 1.0);
    }

    /// Every `SUCCESS` reply, by `eventId`, in order (a duplicate acknowledged
    /// again appears again).
    pub fn acked(&self) -> Vec<String> {
        self.shared.state().acked.clone()
    }

    /// Every `LATER` reply, by `eventId`, in order.
    pub fn latered(&self) -> Vec<String> {
        self.shared.state().latered.clone()
    }

    /// Events never acknowledged with `SUCCESS`, by `eventId`.
    pub fn pending(&self) -> Vec<String> {
        let state = self.shared.state();
        state
            .events
            .iter()
            .filter(|e| !e.acked_once)
            .map(|e| e.id.clone())
            .collect()
    }

    /// Event frames sent, redeliveries and duplicates included.
    pub fn deliveries(&self) -> usize {
        self.shared.state().deliveries
    }

    /// WebSocket connections accepted so far.
    pub fn connections_opened(&self) -> usize {
        self.shared.state().connections_opened
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.shared.state().conns.len()
    }

    /// Every ticket handed out, in order.
    pub fn tickets_issued(&self) -> Vec<String> {
        self.shared.state().tickets_issued.clone()
    }

    /// Connect attempts refused for an unknown, used or expired ticket.
    pub fn ticket_refusals(&self) -> usize {
        self.shared.state().ticket_refusals
    }

    /// Pings answered with the same `messageId` and the same `data`.
    pub fn pings_answered(&self) -> usize {
        self.shared.state().pings_answered
    }
}

/// Redelivers what is due and closes connections whose `disconnect` grace is
/// over, until the gateway is dropped.
async fn tick(shared: Weak<Shared>) {
    loop {
        tokio::time::sleep(TICK).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let now = Instant::now();
        let mut state = shared.state();
        let due: Vec<u64> = state
            .conns
            .iter()
            .filter(|(_, c)| c.close_at.is_some_and(|at| at <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            send(&mut state, id, Command::Close);
            state.conns.remove(&id);
        }
        dispatch(&shared, &mut state, now);
    }
}

/// Sends `command` to connection `id`; a connection whose task is gone is forgotten.
fn send(state: &mut State, id: u64, command: Command) -> bool {
    let sent = state
        .conns
        .get(&id)
        .is_some_and(|c| c.tx.send(command).is_ok());
    if !sent {
        state.conns.remove(&id);
    }
    sent
}

/// The next open connection events may go to, in turn.
fn next_conn(state: &mut State) -> Option<u64> {
    let turn = state.next_conn_turn;
    let pick = state
        .conns
        .range(turn..)
        .chain(state.conns.range(..turn))
        .find(|(_, c)| !c.closing)
        .map(|(id, _)| *id)?;
    state.next_conn_turn = pick + 1;
    Some(pick)
}

/// Sends every event that is queued or due again to an open connection.
fn dispatch(shared: &Shared, state: &mut State, now: Instant) {
    let redeliver_after = shared.config.redeliver_after;
    for i in 0..state.events.len() {
        let due = match state.events[i].delivery {
            Delivery::Queued => true,
            Delivery::Sent { at } => at + redeliver_after <= now,
            Delivery::Later { due } => due <= now,
            Delivery::Acked => false,
        };
        if !due {
            continue;
        }
        let frame = event_frame(&state.events[i], &shared.config.corp_id);
        let mut delivered = false;
        while let Some(conn) = next_conn(state) {
            if send(state, conn, Command::Text(frame.clone())) {
                delivered = true;
                break;
            }
        }
        if delivered {
            state.deliveries += 1;
            state.events[i].delivery = Delivery::Sent { at: now };
        } else {
            state.events[i].delivery = Delivery::Queued;
            return;
        }
    }
}

fn now_ms() -> String {
    chrono::Utc::now().timestamp_millis().to_string()
}

fn event_frame(event: &Event, corp_id: &str) -> String {
    json!({
        "specVersion": "1.0",
        "type": "EVENT",
        "headers": {
            "topic": "*",
            "messageId": event.message_id,
            "contentType": "application/json",
            "time": now_ms(),
            "eventType": event.event_type,
            "eventId": event.id,
            "eventCorpId": corp_id,
            "eventBornTime": event.born_ms.to_string(),
            "eventUnifiedAppId": "simapp",
        },
        "data": event.data,
    })
    .to_string()
}

fn system_frame(topic: &str, message_id: &str, data: &str) -> String {
    json!({
        "specVersion": "1.0",
        "type": "SYSTEM",
        "headers": {
            "topic": topic,
            "messageId": message_id,
            "contentType": "application/json",
            "time": now_ms(),
        },
        "data": data,
    })
    .to_string()
}
