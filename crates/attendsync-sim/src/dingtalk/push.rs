//! DingTalk's HTTP push and its list of failed pushes (docs/vendors/events.md
//! "DingTalk HTTP push and the failed list").
//!
//! A [`Pusher`] POSTs events to a receiver as DingTalk does: the query carries
//! `msg_signature`, `timestamp` (ms) and `nonce`, the body is
//! `{"encrypt": "…"}`, and the decrypted JSON holds `EventType`, `eventId`,
//! `EventTime`, `CorpId` and the event's fields at the top level. Only a reply
//! that opens (signature, owner) to the text `success` counts as delivered;
//! anything else is retried after the configured delays (DingTalk: 10 s, then
//! 30 s), and after the last failure the event goes to the simulator's failed
//! list.
//!
//! The failed list answers `GET call_back/get_call_back_failed_result` a page
//! at a time (`has_more`), and each call first clears what the previous call
//! returned: a client that loses a page loses its events.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use attendsync_crypto::MsgCrypt;
use chrono::Utc;
use rand::distr::{Alphanumeric, SampleString};
use serde_json::{json, Map, Value};

use super::{Answer, DingtalkSim, Shared, SimState};

pub const FAILED_LIST: &str = "call_back/get_call_back_failed_result";
/// Items per page of the failed list, as DingTalk documents it.
pub const FAILED_PAGE_SIZE: usize = 200;
/// The corp id the pushed messages name.
const CORP_ID: &str = "dingsimcorp0000000001";

/// The failed list's state, under the simulator's lock.
pub(super) struct FailedList {
    items: VecDeque<Value>,
    /// Items at the front that the last call returned: the next call clears them.
    returned: usize,
    page_size: usize,
    calls: usize,
    /// Items hold their data wrapped in `callbackData`.
    wrapped: bool,
}

impl Default for FailedList {
    fn default() -> Self {
        FailedList {
            items: VecDeque::new(),
            returned: 0,
            page_size: FAILED_PAGE_SIZE,
            calls: 0,
            wrapped: false,
        }
    }
}

impl FailedList {
    fn add(&mut self, tag: &str, event_time: i64, data: Value) {
        let data = if self.wrapped {
            json!({ "callbackData": data })
        } else {
            data
        };
        let mut item = Map::new();
        item.insert("call_back_tag".into(), tag.into());
        item.insert("event_time".into(), event_time.into());
        item.insert(tag.into(), data);
        self.items.push_back(Value::Object(item));
    }
}

/// One call to the failed list: clears the previous call's page, returns the next.
pub(super) fn failed_page(state: &mut SimState) -> Answer {
    let list = &mut state.failed;
    list.calls += 1;
    let cleared = list.returned.min(list.items.len());
    list.items.drain(..cleared);
    let n = list.page_size.max(1).min(list.items.len());
    let page: Vec<Value> = list.items.iter().take(n).cloned().collect();
    list.returned = n;
    let has_more = list.items.len() > n;
    Answer::Json {
        errcode: 0,
        body: json!({"errcode": 0, "errmsg": "ok", "has_more": has_more, "failed_list": page}),
    }
}

/// Where and how a [`Pusher`] pushes.
#[derive(Clone, Debug)]
pub struct PushConfig {
    /// The receiver's URL (its query is added to).
    pub url: String,
    pub token: String,
    /// The 43-character `EncodingAESKey`.
    pub aes_key: String,
    /// The owner key the messages are encrypted for (an internal app's app key).
    pub owner: String,
    /// The waits before each retry of a failed push; DingTalk: 10 s, then 30 s.
    pub retry_delays: Vec<Duration>,
    /// How long an attempt waits for its reply.
    pub timeout: Duration,
}

impl PushConfig {
    /// DingTalk's retry delays and a 5 s reply timeout.
    pub fn new(url: &str, token: &str, aes_key: &str, owner: &str) -> PushConfig {
        PushConfig {
            url: url.to_owned(),
            token: token.to_owned(),
            aes_key: aes_key.to_owned(),
            owner: owner.to_owned(),
            retry_delays: vec![Duration::from_secs(10), Duration::from_secs(30)],
            timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Default)]
struct Counts {
    sent: AtomicUsize,
    accepted: AtomicUsize,
    failed: AtomicUsize,
}

/// Pushes events to a receiver as DingTalk's HTTP push does. Cheap to clone.
#[derive(Clone)]
pub struct Pusher {
    shared: Arc<Shared>,
    config: Arc<PushConfig>,
    crypt: Arc<MsgCrypt>,
    http: reqwest::Client,
    counts: Arc<Counts>,
}

impl DingtalkSim {
    /// A pusher whose undelivered events go to this simulator's failed list.
    /// An error for a malformed AES key, or an HTTP client that cannot be built.
    pub fn pusher(&self, config: PushConfig) -> std::io::Result<Pusher> {
        let crypt = MsgCrypt::new(&config.token, &config.aes_key, &config.owner)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        // reqwest is built with `rustls-no-provider`: a provider must be
        // installed before a client is built, though the pushes are plain HTTP.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Pusher {
            shared: Arc::clone(&self.shared),
            config: Arc::new(config),
            crypt: Arc::new(crypt),
            http,
            counts: Arc::default(),
        })
    }

    /// Items in the failed list (those the last call returned included,
    /// until the next call clears them).
    pub fn failed_list_len(&self) -> usize {
        self.state().failed.items.len()
    }

    /// Calls to the failed list so far.
    pub fn failed_list_calls(&self) -> usize {
        self.state().failed.calls
    }

    /// Items per page of the failed list (default 200).
    pub fn set_failed_page_size(&self, n: usize) {
        self.state().failed.page_size = n.max(1);
    }

    /// From now on, failed items hold their data wrapped in `callbackData`.
    pub fn set_failed_wrapped(&self, on: bool) {
        self.state().failed.wrapped = on;
    }

    /// Puts an event straight into the failed list, as if its pushes had failed.
    pub fn add_failed(&self, event_type: &str, data: Value) {
        let now = Utc::now().timestamp_millis();
        self.state().failed.add(event_type, now, data);
    }
}

impl Pusher {
    /// Pushes one event, retrying after each delay; `true` once a reply is the
    /// encrypted `success`. An event never delivered goes to the failed list.
    pub async fn push(&self, event_type: &str, event_id: &str, data: Value) -> bool {
        let event_time = Utc::now().timestamp_millis();
        let mut message = Map::new();
        message.insert("EventType".into(), event_type.into());
        message.insert("eventId".into(), event_id.into());
        message.insert("EventTime".into(), event_time.to_string().into());
        message.insert("CorpId".into(), CORP_ID.into());
        if let Value::Object(fields) = &data {
            for (k, v) in fields {
                message.insert(k.clone(), v.clone());
            }
        }
        let message = Value::Object(message).to_string();
        let mut delays = self.config.retry_delays.iter();
        loop {
            if self.attempt(&message).await {
                self.counts.accepted.fetch_add(1, Ordering::SeqCst);
                return true;
            }
            match delays.next() {
                Some(delay) => tokio::time::sleep(*delay).await,
                None => break,
            }
        }
        self.counts.failed.fetch_add(1, Ordering::SeqCst);
        let mut state = self.shared.state();
        state.failed.add(event_type, event_time, data);
        false
    }

    /// Pushes the message `text` as is, once: whether the reply was the
    /// encrypted `success`. For tests of receivers (duplicates, odd payloads).
    pub async fn attempt(&self, text: &str) -> bool {
        self.counts.sent.fetch_add(1, Ordering::SeqCst);
        let timestamp = Utc::now().timestamp_millis().to_string();
        let nonce = Alphanumeric.sample_string(&mut rand::rng(), 8);
        let encrypt = self.crypt.encrypt(text);
        let signature = self.crypt.sign(&timestamp, &nonce, &encrypt);
        let sep = if self.config.url.contains('?') {
            '&'
        } else {
            '?'
        };
        let url = format!(
            "{}{sep}msg_signature={signature}&timestamp={timestamp}&nonce={nonce}",
            self.config.url
        );
        let body = json!({ "encrypt": encrypt }).to_string();
        let sent = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        let Ok(response) = sent else {
            return false;
        };
        match response.bytes().await {
            Ok(bytes) => is_success(&self.crypt, &bytes),
            Err(_) => false,
        }
    }

    /// Attempts sent so far (retries included).
    pub fn pushes_sent(&self) -> usize {
        self.counts.sent.load(Ordering::SeqCst)
    }

    /// Events whose push was answered with the encrypted `success`.
    pub fn replies_accepted(&self) -> usize {
        self.counts.accepted.load(Ordering::SeqCst)
    }

    /// Events that went to the failed list.
    pub fn events_failed(&self) -> usize {
        self.counts.failed.load(Ordering::SeqCst)
    }

    /// What the receiver's crypto is: for building replies in tests.
    pub fn crypt(&self) -> &MsgCrypt {
        &self.crypt
    }
}

/// A reply `{msg_signature, encrypt, timeStamp, nonce}` that opens to `success`.
pub fn is_success(crypt: &MsgCrypt, reply: &[u8]) -> bool {
    let Ok(reply) = serde_json::from_slice::<Value>(reply) else {
        return false;
    };
    let field = |k: &str| reply.get(k).and_then(Value::as_str).unwrap_or_default();
    let timestamp = Some(field("timeStamp"))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| field("timestamp"));
    crypt
        .open(
            field("msg_signature"),
            timestamp,
            field("nonce"),
            field("encrypt"),
        )
        .is_ok_and(|text| text == "success")
}

#[cfg(test)]
mod tests;
