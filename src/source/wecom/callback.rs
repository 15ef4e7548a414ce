//! WeCom callbacks (docs/vendors/events.md "WeCom approval callbacks"): the
//! URL check (a GET answered with the decrypted `echostr`) and the encrypted XML
//! events (a POST answered with an empty 200 once the event is recorded).
//!
//! Plain functions over [`MsgCrypt`] and a [`Sink`]: the daemon's listener
//! mounts [`handle_get`] and [`handle_post`] at `/callbacks/wecom/<job>`.
//! Nothing is trusted before the signature, the padding and the corp id are
//! checked (`attendsync_crypto`); the XML is read with DOCTYPE refused, so no
//! entity can be declared (no external entities, no entity expansion bombs).

use std::collections::HashMap;

use axum::http::StatusCode;
use quick_xml::events::Event;
use quick_xml::Reader;
use serde::Deserialize;

use crate::events::crypto::{CryptoError, MsgCrypt};
use crate::events::{Change, Sink};

/// The largest POST body taken. An approval event is a few kilobytes (its
/// approvers and comments); this is the daemon listener's own body limit.
pub const MAX_BODY: usize = 128 * 1024;
/// Elements nested deeper than this are refused: WeCom's events are three deep.
const MAX_DEPTH: usize = 16;
/// Elements in one document, at most.
const MAX_ELEMENTS: usize = 4096;

/// The event type the approval app sends on every status change.
pub const APPROVAL_EVENT: &str = "sys_approval_change";

/// A callback's query: `msg_signature`, `timestamp`, `nonce`, and for the URL
/// check `echostr` (URL-decoded, as axum's `Query` gives it).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CallbackQuery {
    #[serde(default)]
    pub msg_signature: String,
    #[serde(default)]
    pub timestamp: String,
    #[serde(default)]
    pub nonce: String,
    #[serde(default)]
    pub echostr: Option<String>,
}

/// Why a callback was refused. Nothing is recorded for any of them.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    #[error("the callback lacks `{0}`")]
    Missing(&'static str),
    /// Signature, padding, length frame or corp id (`CryptoError` says which).
    #[error("the callback does not verify: {0}")]
    Crypto(#[from] CryptoError),
    #[error("the callback body is over {MAX_BODY} bytes")]
    TooLarge,
    #[error("the callback's XML is refused: {0}")]
    Xml(String),
    #[error("the callback's timestamp is not a time within an hour of now")]
    Stale,
}

/// How far an event's timestamp may be from now: WeCom retries within
/// seconds, so an older one is a replay (its id is a duplicate anyway).
pub const MAX_SKEW_SECONDS: i64 = 3600;

/// A timestamp (Unix seconds) within [`MAX_SKEW_SECONDS`] of `now`.
fn fresh(timestamp: &str, now: chrono::DateTime<chrono::Utc>) -> bool {
    timestamp
        .trim()
        .parse::<i64>()
        .is_ok_and(|t| t.abs_diff(now.timestamp()) <= MAX_SKEW_SECONDS.unsigned_abs())
}

impl CallbackError {
    /// The status the vendor gets: 403 for what does not verify, 413 for a
    /// body too large, 400 for the rest.
    pub fn status(&self) -> StatusCode {
        match self {
            CallbackError::Crypto(CryptoError::BadSignature | CryptoError::WrongOwner) => {
                StatusCode::FORBIDDEN
            }
            CallbackError::TooLarge | CallbackError::Crypto(CryptoError::TooLarge) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

fn required<'a>(value: &'a str, name: &'static str) -> Result<&'a str, CallbackError> {
    if value.is_empty() {
        Err(CallbackError::Missing(name))
    } else {
        Ok(value)
    }
}

/// The URL check: the decrypted `echostr`, to be answered as plain text with
/// nothing added.
pub fn verify_url(crypt: &MsgCrypt, query: &CallbackQuery) -> Result<String, CallbackError> {
    let echostr = required(query.echostr.as_deref().unwrap_or(""), "echostr")?;
    // Base64 holds no spaces: a `+` that a form decoder on the way turned
    // into a space is put back.
    let echostr = echostr.replace(' ', "+");
    let text = crypt.open(
        required(&query.msg_signature, "msg_signature")?,
        required(&query.timestamp, "timestamp")?,
        required(&query.nonce, "nonce")?,
        &echostr,
    )?;
    Ok(text)
}

/// An event POST: the `Encrypt` element of the outer XML verified and
/// decrypted, the inner XML read into a [`Change`]. `Ok(None)` is never
/// returned today; it is kept for an event that must not be recorded at all.
pub fn open_event(
    crypt: &MsgCrypt,
    query: &CallbackQuery,
    body: &[u8],
) -> Result<Option<Change>, CallbackError> {
    open_event_at(crypt, query, body, chrono::Utc::now())
}

/// [`open_event`] at `now`: a timestamp more than an hour away is refused
/// (the URL check is not: it changes nothing).
pub fn open_event_at(
    crypt: &MsgCrypt,
    query: &CallbackQuery,
    body: &[u8],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<Change>, CallbackError> {
    if body.len() > MAX_BODY {
        return Err(CallbackError::TooLarge);
    }
    if !query.timestamp.is_empty() && !fresh(&query.timestamp, now) {
        return Err(CallbackError::Stale);
    }
    let outer = std::str::from_utf8(body)
        .map_err(|_| CallbackError::Xml("the body is not UTF-8".into()))?;
    let fields = read_fields(outer)?;
    let encrypt = fields
        .get("Encrypt")
        .map(String::as_str)
        .filter(|e| !e.is_empty())
        .ok_or(CallbackError::Missing("Encrypt"))?;
    let message = crypt.open(
        required(&query.msg_signature, "msg_signature")?,
        required(&query.timestamp, "timestamp")?,
        required(&query.nonce, "nonce")?,
        encrypt,
    )?;
    change_of(&message).map(Some)
}

/// What a decrypted event says. `sys_approval_change` names its approval
/// (`SpNo`), looked up later for the applicant and the days; any other event
/// is kept as seen, touching nothing.
fn change_of(message: &str) -> Result<Change, CallbackError> {
    let fields = read_fields(message)?;
    let get = |path: &str| fields.get(path).map(|s| s.trim()).unwrap_or("");
    let event = get("Event");
    let kind = if event.is_empty() {
        get("MsgType")
    } else {
        event
    };
    if kind == APPROVAL_EVENT {
        let sp_no = get("ApprovalInfo/SpNo");
        if sp_no.is_empty() {
            return Err(CallbackError::Xml("an approval event without SpNo".into()));
        }
        // A status change is one (approval, change, time): a redelivery carries
        // the same three, the approval's next change another.
        let event_id = format!(
            "{sp_no}/{}/{}",
            get("ApprovalInfo/StatuChangeEvent"),
            get("CreateTime")
        );
        return Ok(Change {
            event_id,
            kind: APPROVAL_EVENT.to_string(),
            touched: Vec::new(),
            lookups: vec![sp_no.to_string()],
        });
    }
    Ok(Change {
        event_id: format!("{}/{}", kind, digest(message)),
        kind: if kind.is_empty() { "unknown" } else { kind }.to_string(),
        touched: Vec::new(),
        lookups: Vec::new(),
    })
}

/// A redelivered event is the same text: its digest is its id.
fn digest(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes())
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The text of each element under the root, by path (`ApprovalInfo/SpNo`);
/// the first one wins when a path repeats. DOCTYPE (and so any entity
/// declaration) is refused, as are unknown entity references, and documents
/// deeper or larger than WeCom ever sends.
fn read_fields(xml: &str) -> Result<HashMap<String, String>, CallbackError> {
    let bad = |e: &dyn std::fmt::Display| CallbackError::Xml(e.to_string());
    let mut reader = Reader::from_str(xml);
    reader.config_mut().check_end_names = true;
    let mut path: Vec<String> = Vec::new();
    let mut fields: HashMap<String, String> = HashMap::new();
    let mut text = String::new();
    let mut elements = 0usize;
    let mut rooted = false;
    loop {
        match reader.read_event().map_err(|e| bad(&e))? {
            Event::DocType(_) => return Err(CallbackError::Xml("DOCTYPE is not accepted".into())),
            Event::Start(start) => {
                element(&mut elements, &mut rooted, path.len())?;
                let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
                path.push(name);
                text.clear();
            }
            Event::Empty(_) => element(&mut elements, &mut rooted, path.len())?,
            Event::End(_) => {
                if path.len() > 1 {
                    let key = path[1..].join("/");
                    fields
                        .entry(key)
                        .or_insert_with(|| std::mem::take(&mut text));
                }
                text.clear();
                path.pop();
            }
            Event::Text(t) => text.push_str(&t.xml10_content().map_err(|e| bad(&e))?),
            Event::CData(c) => text.push_str(&c.decode().map_err(|e| bad(&e))?),
            Event::GeneralRef(r) => {
                if let Some(c) = r.resolve_char_ref().map_err(|e| bad(&e))? {
                    text.push(c);
                } else {
                    let name = r.decode().map_err(|e| bad(&e))?;
                    let value = quick_xml::escape::resolve_xml_entity(&name)
                        .ok_or_else(|| CallbackError::Xml(format!("unknown entity &{name};")))?;
                    text.push_str(value);
                }
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
        }
    }
    if !rooted || !path.is_empty() {
        return Err(CallbackError::Xml("no complete root element".into()));
    }
    Ok(fields)
}

/// Counts an element opened at `depth`: within the bounds, and one root only.
fn element(elements: &mut usize, rooted: &mut bool, depth: usize) -> Result<(), CallbackError> {
    *elements += 1;
    if *elements > MAX_ELEMENTS || depth >= MAX_DEPTH {
        return Err(CallbackError::Xml("the document is too large".into()));
    }
    if depth == 0 {
        if *rooted {
            return Err(CallbackError::Xml("more than one root element".into()));
        }
        *rooted = true;
    }
    Ok(())
}

/// GET: the URL check. 200 with the plaintext, or the refusal's 4xx.
pub async fn handle_get(crypt: &MsgCrypt, query: &CallbackQuery) -> (StatusCode, String) {
    match verify_url(crypt, query) {
        Ok(text) => (StatusCode::OK, text),
        Err(e) => {
            tracing::warn!("WeCom callback URL check refused: {e}");
            (e.status(), String::new())
        }
    }
}

/// POST: an event, recorded in `sink` before the empty 200 is answered. A
/// refused event gets a 4xx and records nothing; a sink that fails gets a 503,
/// so the event is not acknowledged (WeCom retries only after a timeout or a
/// network failure, so the scheduled pull stays the safety net).
pub async fn handle_post(
    crypt: &MsgCrypt,
    query: &CallbackQuery,
    body: &[u8],
    sink: &dyn Sink,
) -> (StatusCode, String) {
    let change = match open_event(crypt, query, body) {
        Ok(Some(change)) => change,
        Ok(None) => return (StatusCode::OK, String::new()),
        Err(e) => {
            tracing::warn!("WeCom callback refused: {e}");
            return (e.status(), String::new());
        }
    };
    let kind = change.kind.clone();
    match sink.record(change).await {
        Ok(recorded) => {
            tracing::debug!("WeCom {kind} event: {recorded:?}");
            (StatusCode::OK, String::new())
        }
        Err(e) => {
            tracing::warn!("WeCom {kind} event not acknowledged: {e}");
            (StatusCode::SERVICE_UNAVAILABLE, String::new())
        }
    }
}

#[cfg(test)]
mod tests;
