//! DingTalk's HTTP push (docs/vendors/events.md "Callback crypto" and "DingTalk
//! HTTP push and the failed list"): a signed, encrypted `POST` whose decrypted
//! JSON names the event, answered with the encrypted text `success` once the
//! change is recorded. The daemon's listener mounts [`handle`]; [`open`] and
//! [`success_reply`] are its parts.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::distr::{Alphanumeric, SampleString};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::events::{self, CHECK_URL};
use crate::events::crypto::{CryptoError, MsgCrypt};
use crate::events::{Change, Sink};

/// The largest push body taken. An event is a few hundred bytes (a check-in
/// push holds the punches of one person within a minute); far more is not
/// DingTalk.
pub const MAX_BODY: usize = 64 * 1024;
/// How far a push's timestamp may be from now. DingTalk retries a failed push
/// for 40 s; anything hours away is a replay or a broken clock.
pub const MAX_SKEW: Duration = Duration::from_secs(60 * 60);
/// Timestamps above this are milliseconds (DingTalk's), below it seconds
/// (some of its samples): 10^11 s is the year 5138.
const MILLIS_FROM: i64 = 100_000_000_000;

/// The query of a push. DingTalk's spellings vary: `msg_signature` or
/// `signature`, `timestamp` or `timeStamp`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PushQuery {
    pub msg_signature: Option<String>,
    pub signature: Option<String>,
    pub timestamp: Option<String>,
    #[serde(rename = "timeStamp")]
    pub time_stamp: Option<String>,
    pub nonce: Option<String>,
}

/// What a verified push says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// DingTalk checking the URL when the subscription is saved.
    CheckUrl,
    Event(Change),
}

/// Why a push was refused. The texts name the fault, never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    #[error("the signature, timestamp or nonce is missing from the query")]
    MissingQuery,
    #[error("the body is over {MAX_BODY} bytes")]
    TooLarge,
    #[error("the body is not a JSON object with an `encrypt` text")]
    NotJson,
    #[error("the timestamp is not a time within an hour of now")]
    Stale,
    #[error("{0}")]
    Crypto(#[from] CryptoError),
    #[error("the decrypted message is not a JSON object")]
    BadMessage,
}

impl PushError {
    /// The status answered: DingTalk retries anything but the encrypted
    /// `success`; a 4xx says the fault is the request's.
    pub fn status(&self) -> StatusCode {
        match self {
            PushError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            PushError::Crypto(CryptoError::BadSignature) => StatusCode::UNAUTHORIZED,
            PushError::Crypto(CryptoError::WrongOwner) => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// [`open_at`] now.
pub fn open(crypt: &MsgCrypt, query: &PushQuery, body: &[u8]) -> Result<Pushed, PushError> {
    open_at(crypt, query, body, Utc::now())
}

/// Checks and decrypts one push received at `now`: its size, the query, the
/// timestamp, then the signature, padding and owner (the app key).
pub fn open_at(
    crypt: &MsgCrypt,
    query: &PushQuery,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Pushed, PushError> {
    if body.len() > MAX_BODY {
        return Err(PushError::TooLarge);
    }
    let pick = |a: &Option<String>, b: &Option<String>| {
        a.as_deref()
            .or(b.as_deref())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let (Some(signature), Some(timestamp), Some(nonce)) = (
        pick(&query.msg_signature, &query.signature),
        pick(&query.timestamp, &query.time_stamp),
        pick(&query.nonce, &None),
    ) else {
        return Err(PushError::MissingQuery);
    };
    if !fresh(&timestamp, now) {
        return Err(PushError::Stale);
    }
    let encrypt = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(mut o)) => match o.remove("encrypt") {
            Some(Value::String(s)) => s,
            _ => return Err(PushError::NotJson),
        },
        _ => return Err(PushError::NotJson),
    };
    let plain = crypt.open(&signature, &timestamp, &nonce, &encrypt)?;
    let message: Value = match serde_json::from_str(&plain) {
        Ok(v @ Value::Object(_)) => v,
        _ => return Err(PushError::BadMessage),
    };
    let kind = first_text(&message, &["EventType", "eventType"]).unwrap_or_default();
    if kind == CHECK_URL {
        return Ok(Pushed::CheckUrl);
    }
    let event_id = first_text(&message, &["eventId", "EventId"])
        .unwrap_or_else(|| format!("sha256:{}", hex_sha256(plain.as_bytes())));
    Ok(Pushed::Event(events::change(&kind, &event_id, &message)))
}

fn first_text(v: &Value, keys: &[&str]) -> Option<String> {
    keys.iter()
        .find_map(|k| v.get(k).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

pub(super) fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A timestamp (ms or s) within [`MAX_SKEW`] of `now`.
fn fresh(timestamp: &str, now: DateTime<Utc>) -> bool {
    let Ok(n) = timestamp.trim().parse::<i64>() else {
        return false;
    };
    let ms = if n >= MILLIS_FROM {
        n
    } else {
        n.saturating_mul(1000)
    };
    let skew = ms.abs_diff(now.timestamp_millis());
    u128::from(skew) <= MAX_SKEW.as_millis()
}

/// The answer DingTalk takes as delivered: the encrypted `success`, signed,
/// with a millisecond timestamp and a 16-character nonce.
pub fn success_reply(crypt: &MsgCrypt, now: DateTime<Utc>) -> Value {
    let timestamp = now.timestamp_millis().to_string();
    let nonce = Alphanumeric.sample_string(&mut rand::rng(), 16);
    let encrypt = crypt.encrypt("success");
    json!({
        "msg_signature": crypt.sign(&timestamp, &nonce, &encrypt),
        "encrypt": encrypt,
        "timeStamp": timestamp,
        "nonce": nonce,
    })
}

/// One push end to end: opened, its change recorded in `sink`, and only then
/// the `success` reply. A refused push is a 4xx with the fault's name; a sink
/// that fails is a 503, so DingTalk pushes again (and later lists the event
/// as failed).
pub async fn handle(
    crypt: &MsgCrypt,
    sink: &dyn Sink,
    query: &PushQuery,
    body: &[u8],
) -> (StatusCode, Value) {
    let change = match open(crypt, query, body) {
        Ok(Pushed::CheckUrl) => None,
        Ok(Pushed::Event(change)) => Some(change),
        Err(e) => {
            tracing::warn!(error = %e, "refused a DingTalk push");
            return (e.status(), json!({"error": e.to_string()}));
        }
    };
    if let Some(change) = change {
        let (kind, id) = (change.kind.clone(), change.event_id.clone());
        if let Err(e) = sink.record(change).await {
            tracing::warn!(kind, event_id = id, error = %e, "a DingTalk push not recorded");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "the event could not be recorded; push it again"}),
            );
        }
    }
    (StatusCode::OK, success_reply(crypt, Utc::now()))
}

#[cfg(test)]
mod tests;
