//! The gateway's HTTP side: the open call, the WebSocket upgrade and each
//! connection's task.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rand::Rng;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::{dispatch, Command, Conn, Delivery, Shared, State as GatewayState, CONNECT_PATH};

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"code": code, "message": message, "requestid": "sim-stream"});
    (status, Json(body)).into_response()
}

/// `POST /v1.0/gateway/connections/open`.
pub(super) async fn open(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidBody",
            "the body is not JSON",
        );
    };
    let field = |name: &str| request.get(name).and_then(Value::as_str).unwrap_or("");
    let config = &shared.config;
    if field("clientId") != config.client_id || field("clientSecret") != config.client_secret {
        return error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthentication",
            "clientId or clientSecret is wrong",
        );
    }
    let subscribed = request
        .get("subscriptions")
        .and_then(Value::as_array)
        .is_some_and(|s| !s.is_empty());
    if !subscribed {
        return error(
            StatusCode::BAD_REQUEST,
            "MissingSubscriptions",
            "no subscriptions",
        );
    }
    let ticket = {
        let mut state = shared.state();
        let ticket = format!("{:032x}", state.rng.random::<u128>());
        state.tickets.insert(ticket.clone(), Instant::now());
        state.tickets_issued.push(ticket.clone());
        ticket
    };
    let addr = shared.addr.get().map(|a| a.to_string()).unwrap_or_default();
    let endpoint = format!("ws://{addr}{CONNECT_PATH}");
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    if wants_json {
        Json(json!({"endpoint": endpoint, "ticket": ticket})).into_response()
    } else {
        // Without `Accept: application/json` the vendor may answer XML.
        let xml = format!("<OpenConnectionResponse><endpoint>{endpoint}</endpoint><ticket>{ticket}</ticket></OpenConnectionResponse>");
        ([(header::CONTENT_TYPE, "application/xml")], xml).into_response()
    }
}

/// `GET /connect?ticket=…`: a valid ticket (used up here) upgrades to the WebSocket.
pub(super) async fn connect(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let ticket = query.get("ticket").map(String::as_str).unwrap_or("");
    let refused = {
        let mut state = shared.state();
        let refused = match state.tickets.remove(ticket) {
            None => Some("the ticket is unknown or was used"),
            Some(issued) if issued.elapsed() > shared.config.ticket_ttl => {
                Some("the ticket expired")
            }
            Some(_) => None,
        };
        if refused.is_some() {
            state.ticket_refusals += 1;
        }
        refused
    };
    if let Some(why) = refused {
        return error(StatusCode::UNAUTHORIZED, "InvalidTicket", why);
    }
    match upgrade {
        Ok(upgrade) => upgrade
            .on_upgrade(move |socket| connection(shared, socket))
            .into_response(),
        Err(rejection) => rejection.into_response(),
    }
}

/// One connection: frames the gateway queues go out, replies come in.
async fn connection(shared: Arc<Shared>, mut socket: WebSocket) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let id = {
        let mut state = shared.state();
        let id = state.next_conn;
        state.next_conn += 1;
        state.connections_opened += 1;
        let conn = Conn {
            tx,
            close_at: None,
            closing: false,
        };
        state.conns.insert(id, conn);
        dispatch(&shared, &mut state, Instant::now());
        id
    };
    let mut frozen = false;
    loop {
        if frozen {
            match rx.recv().await {
                Some(Command::Close | Command::Drop) | None => break,
                Some(_) => continue,
            }
        }
        tokio::select! {
            command = rx.recv() => match command {
                Some(Command::Freeze) => frozen = true,
                Some(Command::Text(text)) => {
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                Some(Command::Close) => {
                    let _ = socket.send(Message::Close(None)).await;
                    break;
                }
                // Dropping the socket closes the TCP connection with no close frame.
                Some(Command::Drop) | None => break,
            },
            message = socket.recv() => match message {
                Some(Ok(Message::Text(text))) => reply(&shared, text.as_str()),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    shared.state().conns.remove(&id);
}

/// A client's reply: a ping echoed, or an event's `SUCCESS` / `LATER`.
fn reply(shared: &Shared, text: &str) {
    let Ok(frame) = serde_json::from_str::<Value>(text) else {
        return;
    };
    let message_id = frame
        .pointer("/headers/messageId")
        .and_then(Value::as_str)
        .unwrap_or("");
    let data = frame.get("data").and_then(Value::as_str).unwrap_or("");
    let mut state = shared.state();
    if let Some(expected) = state.pings.get(message_id) {
        if expected == data {
            state.pings.remove(message_id);
            state.pings_answered += 1;
        }
        return;
    }
    let Some(i) = state.events.iter().position(|e| e.message_id == message_id) else {
        return;
    };
    let status = serde_json::from_str::<Value>(data)
        .ok()
        .and_then(|d| d.get("status").and_then(Value::as_str).map(str::to_owned));
    let now = Instant::now();
    match status.as_deref() {
        Some("SUCCESS") if state.lose_acks > 0 => {
            state.lose_acks -= 1;
            state.acks_lost += 1;
            return;
        }
        Some("SUCCESS") => acked(&mut state, i),
        Some("LATER") => {
            let id = state.events[i].id.clone();
            state.latered.push(id);
            state.events[i].delivery = Delivery::Later {
                due: now + shared.config.redeliver_after,
            };
        }
        _ => return,
    }
    dispatch(shared, &mut state, now);
}

/// An event acknowledged: done, unless it is to be duplicated.
fn acked(state: &mut GatewayState, i: usize) {
    let id = state.events[i].id.clone();
    state.acked.push(id);
    state.events[i].acked_once = true;
    state.events[i].delivery = Delivery::Acked;
    let duplicate = if state.duplicate_next > 0 {
        state.duplicate_next -= 1;
        true
    } else {
        let ratio = state.duplicate_ratio;
        !state.events[i].duplicated && ratio > 0.0 && state.rng.random_bool(ratio)
    };
    if duplicate {
        state.events[i].duplicated = true;
        state.events[i].delivery = Delivery::Queued;
    }
}
