//! One vendor call, the same for every vendor: credential → pacer slot →
//! before-send hook → send → [`read_capped`] → decode → classify → retry with
//! backoff ([`super::retry`]) → [`CallStats`].
//!
//! A vendor says what differs in a [`Vendor`] impl (plus [`Tokens`] when it
//! authenticates with an access token), and per call in a [`Call`] (endpoint,
//! body cap, error table, whether an unclear failure may be resent) and three
//! functions: how to build the request (given the token, if any), how to read
//! an answer's text, and a hook that runs after the pacer's wait and before each
//! attempt. Everything is generic: nothing is boxed, and the answer's bytes go
//! to the reader as they were read, which may keep them without a copy.

use std::future::Future;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::StatusCode;

use super::codes::Class;
use super::retry::{retry, Attempt, RetryConfig, RetryError};
use super::token::{Rejection, TokenCache};
use super::{describe, read_capped, redact, redirected, ApiFailure, CallStats, ReadError};
use crate::secret::Secret;

/// Whether a request may be resent after an unclear failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resend {
    /// Reads and idempotent writes: an unclear failure is retried.
    Safe,
    /// Creates: an unclear failure (no answer, a 5xx, a 429, an answer that could
    /// not be read) ends the call as [`Failure::Ambiguous`]. Only a refusal whose
    /// code says nothing was stored (throttled, transient) is retried.
    Never,
}

/// One endpoint's call.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The endpoint's name: its pacer lane, its [`CallStats`] entry, log lines.
    pub endpoint: &'a str,
    /// The most its answer may hold ([`super::BODY_CAP`], [`super::REPORT_BODY_CAP`]).
    pub cap: usize,
    /// What each non-zero code of this endpoint means ([`super::codes`]).
    pub table: fn(i64) -> Class,
    pub resend: Resend,
}

/// What the status line says before the body is read ([`Vendor::status`]).
#[derive(Debug, PartialEq, Eq)]
pub enum OnStatus {
    /// Read the body and let the call's reader judge it.
    Read,
    /// Retried after a backoff (with [`Resend::Never`]: ambiguous, not answered).
    Transient(String),
    /// Counted as throttled; retried after the throttle wait (with
    /// [`Resend::Never`]: ambiguous, answered).
    Throttled {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Not retried.
    Protocol(String),
}

/// What an answer's text says, as the call's reader reads it.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<T> {
    /// The call worked.
    Done(T),
    /// The vendor refused the call with a non-zero code; `message` as it came
    /// (the wrapper redacts it).
    Code { code: i64, message: String },
    /// Not an answer (a gateway's page): retried after a backoff (with
    /// [`Resend::Never`]: ambiguous, answered).
    Transient(String),
    /// An answer that is not what the API documents: not retried (redacted).
    Protocol(String),
    /// The vendor blocks this client for a while (DingTalk's IP ban): see
    /// [`Vendor::blocked`]; counted as throttled and retried.
    Blocked(String),
    /// The vendor refused the request's form, not its content (DingTalk's body
    /// encoding), and the reader has changed what the call's request function
    /// builds next: sent again at once, within the same attempt (paced, hooked
    /// and counted like any send), so the refusal costs no attempt. Once per
    /// attempt: a second one is taken as [`Decoded::Code`].
    Resend { code: i64, message: String },
}

/// How a call failed, for the vendor to turn into its own error. Every text in
/// it went through [`redact`] with the vendor's secrets and the call's token.
#[derive(Debug)]
pub enum Failure<E> {
    /// A non-zero code the wrapper does not handle by itself: the vendor acts
    /// on its class.
    Api(ApiFailure),
    /// A redirect, an answer over its cap or not of the documented shape.
    Protocol(String),
    /// [`Resend::Never`]: the request may have been carried out. `answered`:
    /// the server did answer, so the request is over there.
    Ambiguous { reason: String, answered: bool },
    /// Every attempt failed transiently or was throttled.
    Exhausted { attempts: u32, last: String },
    /// The vendor's own: the token fetch or the before-send hook failed.
    Vendor(E),
}

/// What differs between vendors, apart from each call's request and reader.
pub trait Vendor: Sync {
    /// What the token fetch and the before-send hook fail with.
    type Error: Send;
    /// What the vendor calls its code in a retry reason: `errcode`, `code`.
    const CODE: &'static str;

    /// Secrets removed from every text that reaches a [`Failure`] (the call's
    /// token is added to them).
    fn secrets(&self) -> Vec<&str>;

    fn retry_config(&self) -> &RetryConfig;

    /// Where calls and throttling answers are counted, if anywhere.
    fn stats(&self) -> Option<&CallStats>;

    /// The pacer whose margins a throttling answer widens, if any.
    fn pacer(&self) -> Option<&super::pace::Pacer> {
        None
    }

    /// Waits for the endpoint's time slot.
    fn pace(&self, endpoint: &str) -> impl Future<Output = ()> + Send;

    /// The last wait, after the before-send hook and right before the send:
    /// the pacer's check of its windows on the times calls really left
    /// ([`super::pace::Pacer::depart`]), which a slow hook would otherwise
    /// move. Gives when the call left, for [`super::pace::Pacer::answered`];
    /// nothing for a vendor without a pacer.
    fn depart(&self, endpoint: &str) -> impl Future<Output = Option<Instant>> + Send {
        async move {
            match self.pacer() {
                Some(pacer) => Some(pacer.depart(endpoint).await),
                None => None,
            }
        }
    }

    /// What the status line alone says. By default a 5xx or 429 is transient
    /// and a redirect is refused ([`redirected`]).
    fn status(&self, status: StatusCode, _headers: &HeaderMap) -> OnStatus {
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return OnStatus::Transient(format!("HTTP {status}"));
        }
        match redirected(status) {
            Some(message) => OnStatus::Protocol(message),
            None => OnStatus::Read,
        }
    }

    /// The retry reason when the connection failed while the body was read.
    fn body_lost(&self, status: StatusCode, error: String) -> String {
        format!("HTTP {status}, {error}")
    }

    /// The wait a throttling code asks for, when it asks for one.
    fn retry_after(&self, _code: i64) -> Option<Duration> {
        None
    }

    /// A [`Decoded::Blocked`] answer: the vendor pauses its calls as it must and
    /// returns the retry reason.
    fn blocked(&self, _endpoint: &str, what: String) -> String {
        what
    }
}

/// A vendor that authenticates with an access token: cached, fetched once for
/// concurrent callers, refreshed on a token-class answer ([`Class::Token`]).
pub trait Tokens: Vendor {
    fn tokens(&self) -> &TokenCache;

    /// A fresh token and its lifetime (usually itself a [`call`]).
    fn fetch_token(&self) -> impl Future<Output = Result<(Secret, Duration), Self::Error>> + Send;
}

/// The before-send hook of a call that needs none.
pub fn no_hook<E>() -> std::future::Ready<Result<(), E>> {
    std::future::ready(Ok(()))
}

/// A call without an access token: the request carries its own credential
/// (Jiandaoyun's Bearer key, a `gettoken`'s secret) or none. A token-class
/// answer is a failure like any other.
pub async fn call<V, T, Q, D, H, HF>(
    vendor: &V,
    call: &Call<'_>,
    request: Q,
    read: D,
    before_send: H,
) -> Result<T, Failure<V::Error>>
where
    V: Vendor,
    Q: Fn(Option<&Secret>) -> reqwest::RequestBuilder,
    D: Fn(StatusCode, &mut Vec<u8>) -> Decoded<T>,
    H: Fn() -> HF,
    HF: Future<Output = Result<(), V::Error>>,
{
    let steps = Steps {
        request,
        read,
        before_send,
    };
    let r = retry(vendor.retry_config(), call.endpoint, || {
        attempt(vendor, call, None, &steps)
    })
    .await;
    finish(r)
}

/// A call with the vendor's access token, taken from its cache (fetched when
/// there is none) before the pacer's wait: calls held up by a token fetch would
/// otherwise all leave at once when it ends. A token-class answer drops the
/// token and retries at once with a fresh one ([`super::retry`] bounds how often).
pub async fn call_with_token<V, T, Q, D, H, HF>(
    vendor: &V,
    call: &Call<'_>,
    request: Q,
    read: D,
    before_send: H,
) -> Result<T, Failure<V::Error>>
where
    V: Tokens,
    Q: Fn(Option<&Secret>) -> reqwest::RequestBuilder,
    D: Fn(StatusCode, &mut Vec<u8>) -> Decoded<T>,
    H: Fn() -> HF,
    HF: Future<Output = Result<(), V::Error>>,
{
    let steps = Steps {
        request,
        read,
        before_send,
    };
    let r = retry(vendor.retry_config(), call.endpoint, || async {
        let token = match vendor.tokens().get(|| vendor.fetch_token()).await {
            Ok(t) => t,
            Err(e) => return Attempt::Fail(Failure::Vendor(e)),
        };
        attempt(vendor, call, Some((&token, vendor.tokens())), &steps).await
    })
    .await;
    finish(r)
}

fn finish<T, E>(r: Result<T, RetryError<Failure<E>>>) -> Result<T, Failure<E>> {
    r.map_err(|e| match e {
        RetryError::Failed(f) => f,
        RetryError::Exhausted { attempts, last } => Failure::Exhausted { attempts, last },
    })
}

/// A call's own functions.
struct Steps<Q, D, H> {
    request: Q,
    read: D,
    before_send: H,
}

/// Text from outside made fit for an error: the vendor's secrets and the token removed.
fn scrub<V: Vendor>(vendor: &V, text: &str, token: Option<&Secret>) -> String {
    let mut secrets = vendor.secrets();
    if let Some(t) = token {
        secrets.push(t.expose());
    }
    redact(text, &secrets)
}

/// One try: pace, hook, send, read, decode, classify; a [`Decoded::Resend`]
/// sends once more within the try.
async fn attempt<V, T, Q, D, H, HF>(
    vendor: &V,
    call: &Call<'_>,
    credential: Option<(&Secret, &TokenCache)>,
    steps: &Steps<Q, D, H>,
) -> Attempt<T, Failure<V::Error>>
where
    V: Vendor,
    Q: Fn(Option<&Secret>) -> reqwest::RequestBuilder,
    D: Fn(StatusCode, &mut Vec<u8>) -> Decoded<T>,
    H: Fn() -> HF,
    HF: Future<Output = Result<(), V::Error>>,
{
    let endpoint = call.endpoint;
    let token = credential.map(|(t, _)| t);
    let mut resent = false;
    loop {
        let decoded = match exchange(vendor, call, token, steps).await {
            Ok(d) => d,
            Err(over) => return over,
        };
        return match decoded {
            Decoded::Done(answer) => {
                if let Some((token, cache)) = credential {
                    cache.accepted(token);
                }
                Attempt::Done(answer)
            }
            Decoded::Resend { .. } if !resent => {
                resent = true;
                continue;
            }
            Decoded::Code { code, message } | Decoded::Resend { code, message } => {
                let failure = ApiFailure {
                    code,
                    message: scrub(vendor, &message, token),
                    class: (call.table)(code),
                };
                refused(vendor, endpoint, failure, credential).await
            }
            Decoded::Transient(reason) => unclear(vendor, call, reason, true, token),
            Decoded::Protocol(message) => protocol(vendor, message, token),
            Decoded::Blocked(what) => {
                let reason = vendor.blocked(endpoint, what);
                throttled(vendor, endpoint);
                Attempt::Throttled {
                    reason: scrub(vendor, &reason, token),
                    retry_after: None,
                }
            }
        };
    }
}

/// A throttling answer: counted, and the pacer told, so that the margins of
/// the windows the call counted in widen ([`super::pace::Pacer::widen`]).
fn throttled<V: Vendor>(vendor: &V, endpoint: &str) {
    if let Some(stats) = vendor.stats() {
        stats.throttled(endpoint);
    }
    if let Some(pacer) = vendor.pacer() {
        pacer.widen(endpoint);
    }
}

/// A failure that may have left the request carried out: retried when the
/// call may be resent, else ambiguous.
fn unclear<V: Vendor, T>(
    vendor: &V,
    call: &Call<'_>,
    reason: String,
    answered: bool,
    token: Option<&Secret>,
) -> Attempt<T, Failure<V::Error>> {
    let reason = scrub(vendor, &reason, token);
    match call.resend {
        Resend::Safe => Attempt::Transient(reason),
        Resend::Never => Attempt::Fail(Failure::Ambiguous { reason, answered }),
    }
}

fn protocol<V: Vendor, T>(
    vendor: &V,
    message: String,
    token: Option<&Secret>,
) -> Attempt<T, Failure<V::Error>> {
    Attempt::Fail(Failure::Protocol(scrub(vendor, &message, token)))
}

/// One send: pace, hook, send, then the answer ([`read_answer`]), whose
/// time the pacer is told. What ends the try before the reader has judged an
/// answer comes back as `Err`.
async fn exchange<V, T, Q, D, H, HF>(
    vendor: &V,
    call: &Call<'_>,
    token: Option<&Secret>,
    steps: &Steps<Q, D, H>,
) -> Result<Decoded<T>, Attempt<T, Failure<V::Error>>>
where
    V: Vendor,
    Q: Fn(Option<&Secret>) -> reqwest::RequestBuilder,
    D: Fn(StatusCode, &mut Vec<u8>) -> Decoded<T>,
    H: Fn() -> HF,
    HF: Future<Output = Result<(), V::Error>>,
{
    let endpoint = call.endpoint;
    vendor.pace(endpoint).await;
    // After the pacer's wait, right before the request leaves: what the hook
    // records (a create that may be in flight) holds from the real send on.
    if let Err(e) = (steps.before_send)().await {
        return Err(Attempt::Fail(Failure::Vendor(e)));
    }
    // Milliseconds at most (see `Vendor::depart`): what the hook recorded still
    // holds from a moment before the send.
    let left = vendor.depart(endpoint).await;
    if let Some(stats) = vendor.stats() {
        stats.call(endpoint);
    }
    let resp = match (steps.request)(token).send().await {
        Ok(r) => r,
        Err(e) => return Err(unclear(vendor, call, describe(e), false, token)),
    };
    let answered_at = Instant::now();
    let answer = read_answer(vendor, call, token, &steps.read, resp).await;
    // How long the status line took says when the vendor may have counted
    // the call; only a good answer's time is typical of the endpoint (a
    // gateway's quick refusal is not) (docs/ARCHITECTURE.md, "Pacing by
    // reserved slots").
    if let (Some(pacer), Some(left)) = (vendor.pacer(), left) {
        let good = matches!(answer, Ok(Decoded::Done(_)));
        pacer.answered(endpoint, left, answered_at, good);
    }
    answer
}

/// The status line, the body and the call's reader. What ends the try
/// before the reader has judged an answer comes back as `Err`.
async fn read_answer<V, T, D>(
    vendor: &V,
    call: &Call<'_>,
    token: Option<&Secret>,
    read: &D,
    resp: reqwest::Response,
) -> Result<Decoded<T>, Attempt<T, Failure<V::Error>>>
where
    V: Vendor,
    D: Fn(StatusCode, &mut Vec<u8>) -> Decoded<T>,
{
    let endpoint = call.endpoint;
    let status = resp.status();
    match vendor.status(status, resp.headers()) {
        OnStatus::Read => {}
        // Often a gateway's answer: the request may still run behind it.
        OnStatus::Transient(reason) => return Err(unclear(vendor, call, reason, false, token)),
        OnStatus::Throttled {
            reason,
            retry_after,
        } => {
            throttled(vendor, endpoint);
            return Err(match call.resend {
                Resend::Safe => Attempt::Throttled {
                    reason,
                    retry_after,
                },
                Resend::Never => unclear(vendor, call, reason, true, token),
            });
        }
        OnStatus::Protocol(message) => return Err(protocol(vendor, message, token)),
    }
    let mut bytes = match read_capped(resp, call.cap, endpoint).await {
        Ok(b) => b,
        Err(ReadError::Transport(e)) => {
            return Err(unclear(
                vendor,
                call,
                vendor.body_lost(status, e),
                false,
                token,
            ))
        }
        // Not retried: the same request gets the same answer. The server did
        // answer, so a create may have been stored.
        Err(e @ ReadError::TooLarge { .. }) => {
            return Err(match call.resend {
                Resend::Safe => protocol(vendor, e.to_string(), token),
                Resend::Never => unclear(vendor, call, e.to_string(), true, token),
            })
        }
    };
    Ok(read(status, &mut bytes))
}

/// What a non-zero code means for the call: retry after a backoff, wait out a
/// throttle, refresh the token, or give the failure to the vendor. Transient and
/// throttling codes say the request was refused before anything was done, so
/// they are retried even with [`Resend::Never`].
async fn refused<V: Vendor, T>(
    vendor: &V,
    endpoint: &str,
    failure: ApiFailure,
    credential: Option<(&Secret, &TokenCache)>,
) -> Attempt<T, Failure<V::Error>> {
    let reason = || format!("{} {} ({})", V::CODE, failure.code, failure.message);
    match failure.class {
        Class::Transient => Attempt::Transient(reason()),
        Class::Throttled => {
            throttled(vendor, endpoint);
            Attempt::Throttled {
                reason: reason(),
                retry_after: vendor.retry_after(failure.code),
            }
        }
        Class::Token => match credential {
            // Replaced by another call, or expired after it worked: just use a
            // new one. Only a token that never worked counts against the call.
            Some((token, cache)) => match cache.invalidate(token).await {
                Rejection::Replaced | Rejection::Expired => Attempt::StaleToken,
                Rejection::Refused => Attempt::TokenRejected(Failure::Api(failure)),
            },
            // A token error without a token (the token fetch itself) means the
            // credentials: never retried.
            None => Attempt::Fail(Failure::Api(failure)),
        },
        _ => Attempt::Fail(Failure::Api(failure)),
    }
}

#[cfg(test)]
#[path = "call_tests.rs"]
mod tests;
