//! DingTalk Stream mode (docs/vendors/events.md "DingTalk Stream mode"): the
//! app opens a WebSocket to the vendor's gateway and events come down it, so
//! no public URL is needed.
//!
//! [`run`] keeps one connection open until the daemon stops: a fresh ticket
//! for every connect, each EVENT handed to `deliver` and acknowledged only
//! once `deliver` returned Ok (`SUCCESS`), or answered `LATER` so the gateway
//! sends it again. Deduplication is the sink's job: a duplicate is delivered
//! like any event and acknowledged when the sink says so.
//!
//! An EVENT whose `data` is not JSON (or has no `eventId`) can never be
//! recorded, however often it comes back: it is logged and acknowledged, and
//! the job's scheduled full pull covers whatever it was about.

use std::future::Future;
use std::time::Duration;

use backoff::backoff::Backoff;
use chrono::Utc;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::events::{Link, SinkError};
use crate::http::{describe, endpoint_url, read_capped, redact, Url, CONNECT_TIMEOUT};
use crate::secret::Secret;
use crate::shutdown::Shutdown;
use frames::{Inbound, Status};

mod frames;
#[cfg(test)]
mod tests;

/// The vendor's gateway.
pub const GATEWAY_URL: &str = "https://api.dingtalk.com";
/// The open call's path under the gateway URL.
const OPEN_PATH: &[&str] = &["v1.0", "gateway", "connections", "open"];
/// The open call's answer is two short strings.
const OPEN_ANSWER_CAP: usize = 64 * 1024;
/// How long closing the socket on shutdown may take.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Where and as whom to open Stream connections.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// [`GATEWAY_URL`], or a proxy or simulator in its place.
    pub gateway_url: Url,
    pub app_key: String,
    pub app_secret: Secret,
    /// First wait after a failed open or a dropped connection, doubled (with
    /// jitter) after each failure in a row up to `backoff_cap`.
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// WebSocket pings go out this often; a connection silent for two of
    /// these is taken as dropped.
    pub keepalive: Duration,
    /// A frame or message larger than this closes the connection.
    pub max_frame: usize,
}

impl StreamSettings {
    /// The vendor's defaults: backoff from 1 s to 60 s, a ping a minute, 1 MiB frames.
    pub fn new(gateway_url: Url, app_key: impl Into<String>, app_secret: Secret) -> Self {
        StreamSettings {
            gateway_url,
            app_key: app_key.into(),
            app_secret,
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(60),
            keepalive: Duration::from_secs(60),
            max_frame: 1024 * 1024,
        }
    }
}

/// One event from the gateway, its `data` string parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEvent {
    /// The same on a redelivery or a duplicate: what the sink dedupes on.
    pub event_id: String,
    pub event_type: String,
    /// What the acknowledgement names; the same on a redelivery.
    pub message_id: String,
    pub born_at_ms: Option<i64>,
    pub corp_id: String,
    pub data: Value,
}

/// Why a connection could not be opened or ended. Never holds the app secret.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("opening a DingTalk Stream connection at {endpoint} failed: {detail}")]
    Open { endpoint: String, detail: String },
    #[error("connecting to the DingTalk Stream endpoint {endpoint} failed: {detail}")]
    Connect { endpoint: String, detail: String },
    #[error("the DingTalk Stream connection dropped: {0}")]
    Dropped(String),
    #[error("the DingTalk Stream connection was silent for {0:?}; reconnecting")]
    Silent(Duration),
}

/// How one connection ended.
enum End {
    Stopped,
    /// The gateway said it will close this one: a new one at once.
    Disconnect,
    Failed(StreamError),
}

/// Keeps a Stream connection open and delivers its events until `stop`;
/// reports how the connection stands on `link`, [`Link::Stopped`] last.
pub async fn run<D, F>(
    settings: StreamSettings,
    http: reqwest::Client,
    deliver: D,
    link: watch::Sender<Link>,
    stop: Shutdown,
) where
    D: Fn(StreamEvent) -> F,
    F: Future<Output = Result<(), SinkError>>,
{
    // wss:// uses rustls' process-wide provider, the one `http::client` installs.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut backoff = crate::http::retry::exponential(settings.backoff_base, settings.backoff_cap);
    let mut attempt = 0u32;
    link.send_replace(Link::Connecting);
    while !stop.is_triggered() {
        let mut connected = None;
        let end = connection(&settings, &http, &deliver, &link, &stop, &mut connected).await;
        // Only a connection that lasted starts the backoff over: one the
        // gateway accepts and drops at once must not be retried every second.
        if connected.is_some_and(|at: Instant| at.elapsed() >= settings.keepalive) {
            attempt = 0;
            backoff.reset();
        }
        match end {
            End::Stopped => break,
            End::Disconnect => {
                tracing::info!(
                    "DingTalk Stream gateway asked to reconnect; opening a new connection"
                );
                link.send_replace(Link::Connecting);
            }
            End::Failed(error) => {
                attempt += 1;
                let wait = backoff.next_backoff().unwrap_or(settings.backoff_cap);
                tracing::warn!(attempt, wait_ms = wait.as_millis() as u64, %error, "DingTalk Stream: reconnecting after a wait");
                link.send_replace(Link::Retrying {
                    attempt,
                    error: error.to_string(),
                });
                tokio::select! {
                    _ = stop.wait() => break,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
    link.send_replace(Link::Stopped);
}

/// One connection: a ticket, the WebSocket, then its frames until it ends.
async fn connection<D, F>(
    settings: &StreamSettings,
    http: &reqwest::Client,
    deliver: &D,
    link: &watch::Sender<Link>,
    stop: &Shutdown,
    connected: &mut Option<Instant>,
) -> End
where
    D: Fn(StreamEvent) -> F,
    F: Future<Output = Result<(), SinkError>>,
{
    let opening = async { connect(settings, open(settings, http).await?).await };
    let ws = tokio::select! {
        _ = stop.wait() => return End::Stopped,
        ws = opening => ws,
    };
    let mut ws = match ws {
        Ok(ws) => ws,
        Err(e) => return End::Failed(e),
    };
    *connected = Some(Instant::now());
    link.send_replace(Link::Connected { since: Utc::now() });
    tracing::info!("DingTalk Stream connected");
    let end = serve(settings, &mut ws, deliver, stop).await;
    if matches!(end, End::Stopped | End::Disconnect) {
        let _ = tokio::time::timeout(CLOSE_WAIT, ws.close(None)).await;
    }
    end
}

/// Asks the gateway for a ticket; returns the WebSocket URL with it.
async fn open(settings: &StreamSettings, http: &reqwest::Client) -> Result<Url, StreamError> {
    let url = endpoint_url(&settings.gateway_url, OPEN_PATH);
    let endpoint = url.as_str().to_string();
    let failed = |detail: String| StreamError::Open {
        endpoint: endpoint.clone(),
        detail: redact(&detail, &[settings.app_secret.expose()]),
    };
    let body = json!({
        "clientId": settings.app_key,
        "clientSecret": settings.app_secret.expose(),
        "subscriptions": [{"type": "EVENT", "topic": "*"}],
        "ua": crate::http::USER_AGENT,
    });
    let resp = http
        .post(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .json(&body)
        .send()
        .await
        .map_err(|e| failed(describe(e)))?;
    let status = resp.status();
    let body = read_capped(resp, OPEN_ANSWER_CAP, &endpoint)
        .await
        .map_err(|e| failed(e.to_string()))?;
    if status != reqwest::StatusCode::OK {
        let text = String::from_utf8_lossy(&body);
        let text: String = text.chars().take(300).collect();
        return Err(failed(format!("HTTP {status}: {text}")));
    }
    let answer: Value = serde_json::from_slice(&body).map_err(|_| {
        failed("the answer is not JSON (it may be XML: was `Accept` dropped on the way?)".into())
    })?;
    let field = |name: &str| {
        answer
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let (Some(ws_endpoint), Some(ticket)) = (field("endpoint"), field("ticket")) else {
        return Err(failed("the answer has no `endpoint` or no `ticket`".into()));
    };
    let mut ws_url = Url::parse(ws_endpoint)
        .map_err(|e| failed(format!("the answer's endpoint is not a URL: {e}")))?;
    if !matches!(ws_url.scheme(), "ws" | "wss") {
        return Err(failed(format!(
            "the answer's endpoint is not ws:// or wss:// but {}://",
            ws_url.scheme()
        )));
    }
    ws_url.query_pairs_mut().append_pair("ticket", ticket);
    Ok(ws_url)
}

/// Opens the WebSocket, frames capped at `max_frame`.
async fn connect(settings: &StreamSettings, url: Url) -> Result<Ws, StreamError> {
    let mut shown = url.clone();
    shown.set_query(None);
    let failed = |detail: String| StreamError::Connect {
        endpoint: shown.to_string(),
        detail,
    };
    let config = WebSocketConfig::default()
        .max_frame_size(Some(settings.max_frame))
        .max_message_size(Some(settings.max_frame));
    let connecting = tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true);
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Err(_) => Err(failed(format!("no answer within {CONNECT_TIMEOUT:?}"))),
        Ok(Err(e)) => Err(failed(ws_error(&e))),
        Ok(Ok((ws, _))) => Ok(ws),
    }
}

/// A WebSocket error in a line; never the URL (it holds the ticket).
fn ws_error(e: &tungstenite::Error) -> String {
    match e {
        tungstenite::Error::Http(resp) => format!("refused with HTTP {}", resp.status()),
        tungstenite::Error::Capacity(c) => format!("a frame over the size limit: {c}"),
        tungstenite::Error::Url(_) => "the endpoint is not a usable WebSocket URL".to_string(),
        other => crate::text::clean(&other.to_string()).into_owned(),
    }
}

/// Reads frames until the connection ends: events delivered and answered,
/// pings echoed, WebSocket pings sent every `keepalive`.
async fn serve<D, F>(settings: &StreamSettings, ws: &mut Ws, deliver: &D, stop: &Shutdown) -> End
where
    D: Fn(StreamEvent) -> F,
    F: Future<Output = Result<(), SinkError>>,
{
    let every = settings.keepalive;
    let mut keepalive = tokio::time::interval_at(Instant::now() + every, every);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_frame = Instant::now();
    loop {
        let message = tokio::select! {
            _ = stop.wait() => return End::Stopped,
            _ = keepalive.tick() => {
                if last_frame.elapsed() >= every * 2 {
                    return End::Failed(StreamError::Silent(last_frame.elapsed()));
                }
                if let Err(e) = ws.send(Message::Ping(Default::default())).await {
                    return End::Failed(StreamError::Dropped(ws_error(&e)));
                }
                continue;
            }
            message = ws.next() => message,
        };
        last_frame = Instant::now();
        let text = match message {
            None => {
                return End::Failed(StreamError::Dropped(
                    "the gateway closed the connection".into(),
                ))
            }
            Some(Err(e)) => return End::Failed(StreamError::Dropped(ws_error(&e))),
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                let why = frame
                    .map(|f| format!(" (code {})", f.code))
                    .unwrap_or_default();
                return End::Failed(StreamError::Dropped(format!(
                    "the gateway closed the connection{why}"
                )));
            }
            // Pongs only prove the connection is alive; tungstenite answers pings.
            Some(Ok(_)) => continue,
        };
        let handled = frame(text.as_str(), deliver).await;
        // Time spent recording the event is not the connection's silence.
        last_frame = Instant::now();
        match handled {
            Ok(None) => {}
            Ok(Some(reply)) => {
                if let Err(e) = ws.send(Message::Text(reply.into())).await {
                    return End::Failed(StreamError::Dropped(ws_error(&e)));
                }
            }
            Err(end) => return end,
        }
    }
}

/// Handles one text frame; returns the reply to send, if any.
async fn frame<D, F>(text: &str, deliver: &D) -> Result<Option<String>, End>
where
    D: Fn(StreamEvent) -> F,
    F: Future<Output = Result<(), SinkError>>,
{
    let inbound = match frames::parse(text) {
        Ok(inbound) => inbound,
        Err(e) => {
            tracing::warn!(error = %e, bytes = text.len(), "DingTalk Stream: skipping a frame that cannot be read");
            return Ok(None);
        }
    };
    match inbound {
        Inbound::Ping { message_id, data } => Ok(Some(frames::reply(&message_id, &data))),
        Inbound::Disconnect => Err(End::Disconnect),
        Inbound::Other { kind, topic } => {
            tracing::debug!(%kind, %topic, "DingTalk Stream: ignoring a frame that is not an event");
            Ok(None)
        }
        Inbound::Event {
            message_id,
            event: Err(why),
        } => {
            // Redelivery would bring the same unusable frame back forever.
            tracing::warn!(%message_id, %why, "DingTalk Stream: acknowledging an event that can never be recorded");
            Ok(Some(frames::ack(&message_id, Status::Success)))
        }
        Inbound::Event {
            message_id,
            event: Ok(event),
        } => {
            let (event_id, event_type) = (event.event_id.clone(), event.event_type.clone());
            let status = match deliver(event).await {
                Ok(()) => Status::Success,
                Err(e) => {
                    tracing::warn!(%event_id, %event_type, error = %e, "DingTalk Stream: event not recorded; asking the gateway to send it again");
                    Status::Later
                }
            };
            Ok(Some(frames::ack(&message_id, status)))
        }
    }
}
