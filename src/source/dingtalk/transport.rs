//! The request path: token, pacing, the IP ban, body encoding, retries, and
//! vendor answers turned into errors. The call itself is the shared wrapper
//! ([`crate::http::call`]); this file says what DingTalk does differently.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::CONTENT_TYPE;
use reqwest::StatusCode;
use serde_json::Value;

use super::wire::{api_message, errcode, form_encode, number, read_answer, Encoding, Read};
use super::{
    lock, DingtalkClient, GETCOLUMNVAL, GETLEAVETIME, GETTOKEN, METERED_ENDPOINTS, VENDOR,
};
use crate::http::call::{self, no_hook, Call, Decoded, Failure, OnStatus, Resend, Tokens, Vendor};
use crate::http::codes::{self, Class};
use crate::http::retry::RetryConfig;
use crate::http::token::TokenCache;
use crate::http::{endpoint_url, ApiFailure, CallStats, Url, BODY_CAP, REPORT_BODY_CAP};
use crate::secret::Secret;
use crate::source::SourceError;

/// The most an answer of `endpoint` may hold: report values (a month of columns
/// for a page of employees) and leave times are large; the rest are small (see
/// [`BODY_CAP`]).
fn body_cap(endpoint: &str) -> usize {
    if endpoint == GETCOLUMNVAL || endpoint == GETLEAVETIME {
        REPORT_BODY_CAP
    } else {
        BODY_CAP
    }
}

/// DingTalk bans an IP that exceeds the IP-wide limit for 5 minutes
/// (docs/vendors/dingtalk.md "Limits"): all calls pause at least this long after a ban
/// answer.
pub(super) const IP_BAN_MIN_WAIT: Duration = Duration::from_secs(5 * 60);
/// The longest pause after one ban answer, whatever `throttle_wait` says.
const IP_BAN_MAX_WAIT: Duration = Duration::from_secs(30 * 60);

/// How long to pause all calls after an IP-ban answer: at least `floor` (the
/// ban's 5 minutes) and at least `throttle_wait`, at most [`IP_BAN_MAX_WAIT`].
fn ip_ban_wait(throttle_wait: Duration, floor: Duration) -> Duration {
    throttle_wait.max(floor).min(IP_BAN_MAX_WAIT)
}

/// What DingTalk's token fetch and before-send hook fail with.
#[derive(Debug)]
pub enum CallError {
    Source(SourceError),
    /// Not sent: the pull it belonged to had stopped meanwhile.
    Halted,
}

/// One call's body encoding, between its request function and its reader: the
/// encoding of the request last built, whether it was forced, and the one the
/// next request must use (set when DingTalk refused the last one's).
#[derive(Default)]
struct Sent {
    last: Option<(Encoding, bool)>,
    force: Option<Encoding>,
}

/// Reads one answer: the ban, transient and protocol answers by status and
/// body ([`read_answer`]), then the `errcode`.
fn read(status: StatusCode, bytes: &[u8]) -> Decoded<Value> {
    match read_answer(status, bytes) {
        Read::Body(body) => match errcode(&body) {
            0 => Decoded::Done(body),
            code => Decoded::Code {
                code,
                message: api_message(&body),
            },
        },
        Read::Banned(what) => Decoded::Blocked(what),
        Read::Transient(reason) => Decoded::Transient(reason),
        Read::Protocol(message) => Decoded::Protocol(message),
    }
}

impl DingtalkClient {
    /// Tests only: a shorter IP-ban pause than DingTalk's 5 minutes.
    #[cfg(test)]
    fn with_ip_ban_floor(mut self, floor: Duration) -> Self {
        self.ip_ban_floor = floor;
        self
    }

    /// Sends `endpoint`'s bodies form-encoded (`true`) or as JSON (`false`, the
    /// default). The client also switches by itself when DingTalk refuses one.
    fn set_form_encoding(&self, endpoint: &str, on: bool) {
        let mut form = lock(&self.form);
        if on {
            form.insert(endpoint.trim_matches('/').to_owned());
        } else {
            form.remove(endpoint.trim_matches('/'));
        }
    }

    fn encoding(&self, endpoint: &str) -> Encoding {
        if lock(&self.form).contains(endpoint) {
            Encoding::Form
        } else {
            Encoding::Json
        }
    }

    fn url(&self, endpoint: &str) -> Url {
        endpoint_url(&self.base_url, &[endpoint])
    }

    fn api_error(&self, endpoint: &str, f: ApiFailure) -> SourceError {
        let hint = match f.class {
            Class::Fatal(hint) => hint,
            Class::Token => {
                "fresh access tokens were rejected repeatedly; check `app_key` and `app_secret`"
            }
            Class::Record => "DingTalk rejected a request parameter",
            Class::NotFound => "DingTalk did not find the department or user",
            _ => "DingTalk rejected the call",
        };
        SourceError::Api {
            vendor: VENDOR,
            endpoint: endpoint.to_string(),
            code: f.code,
            message: f.message,
            hint,
        }
    }

    pub(super) fn protocol(&self, endpoint: &str, message: impl Into<String>) -> SourceError {
        SourceError::Protocol {
            vendor: VENDOR,
            endpoint: endpoint.to_string(),
            message: message.into(),
        }
    }

    pub(super) fn error(&self, endpoint: &str, e: Failure<CallError>) -> SourceError {
        match e {
            Failure::Api(f) => self.api_error(endpoint, f),
            Failure::Vendor(CallError::Source(e)) => e,
            // Only report calls are halted, and `report_call` never gets here.
            Failure::Vendor(CallError::Halted) => {
                self.protocol(endpoint, "not sent: the pull had already stopped")
            }
            // DingTalk calls are all resent safely, so nothing is ambiguous.
            Failure::Protocol(message)
            | Failure::Ambiguous {
                reason: message, ..
            } => self.protocol(endpoint, message),
            Failure::Exhausted { attempts, last } => SourceError::Exhausted {
                vendor: VENDOR,
                endpoint: endpoint.to_string(),
                attempts,
                last,
            },
        }
    }

    fn ban_in_force(&self) -> bool {
        lock(&self.banned_until).is_some_and(|u| Instant::now() < u)
    }

    /// Waits out an IP ban, if one is in force.
    async fn wait_out_ban(&self) {
        loop {
            let until = *lock(&self.banned_until);
            match until.map(|u| u.saturating_duration_since(Instant::now())) {
                Some(left) if !left.is_zero() => tokio::time::sleep(left).await,
                _ => return,
            }
        }
    }

    /// Records an IP ban: every call pauses until it is over. The wrapper
    /// counts the answer as throttled.
    fn banned(&self, endpoint: &str, what: String) -> String {
        let wait = ip_ban_wait(self.retry.throttle_wait, self.ip_ban_floor);
        {
            let mut until = lock(&self.banned_until);
            let end = Instant::now() + wait;
            if until.is_none_or(|u| u < end) {
                *until = Some(end);
            }
        }
        tracing::warn!(
            endpoint,
            wait_s = wait.as_secs_f64(),
            "DingTalk has banned this server's IP ({what}), probably for exceeding the IP-wide \
             limit of 10,000 calls per 20 s; pausing all DingTalk calls for {} s",
            wait.as_secs()
        );
        format!("this server's IP is banned by DingTalk ({what})")
    }

    /// Waits out a ban, then for the endpoint's time slot. Bans are looked at
    /// again after the pacer's wait: under concurrency a call can wait there a
    /// while, and meanwhile another call may have met a ban.
    async fn wait_turn(&self, endpoint: &str) {
        loop {
            self.wait_out_ban().await;
            self.pacer.slot(endpoint).await;
            if !self.ban_in_force() {
                return;
            }
        }
    }

    /// Before each send, after the pacer's wait: a stopped pull (quota,
    /// credentials) sends nothing more, and a metered call is counted before it
    /// is sent, refused at the budget's cap.
    async fn before_send(
        &self,
        endpoint: &str,
        halt: Option<&AtomicBool>,
    ) -> Result<(), CallError> {
        if halt.is_some_and(|h| h.load(Ordering::SeqCst)) {
            return Err(CallError::Halted);
        }
        if METERED_ENDPOINTS.contains(&endpoint) {
            // Counted before it is sent; refused at the budget's cap.
            if let Err(e) = self.take_metered().await {
                return Err(CallError::Source(e));
            }
            self.metered.fetch_add(1, Ordering::Relaxed);
            self.stats.metered(endpoint);
        }
        Ok(())
    }

    /// A fresh access token from `gettoken`, the credentials in its query: a
    /// token error there means the credentials, so it is never retried.
    async fn new_token(&self) -> Result<(Secret, Duration), SourceError> {
        let at = Call {
            endpoint: GETTOKEN,
            cap: body_cap(GETTOKEN),
            table: codes::dingtalk_gettoken,
            resend: Resend::Safe,
        };
        let request = |_: Option<&Secret>| {
            self.http.get(self.url(GETTOKEN)).query(&[
                ("appkey", self.app_key.as_str()),
                ("appsecret", self.app_secret.expose()),
            ])
        };
        let result = call::call(self, &at, request, |s, b: &mut Vec<u8>| read(s, b), no_hook).await;
        let body = result.map_err(|e| self.error(GETTOKEN, e))?;
        let token = body["access_token"].as_str().unwrap_or_default();
        if token.is_empty() {
            return Err(self.protocol(GETTOKEN, "no access_token in the answer"));
        }
        let expires_in = number(&body["expires_in"])
            .and_then(|s| u64::try_from(s).ok())
            .filter(|s| *s > 0)
            .unwrap_or(7200);
        Ok((Secret::new(token), Duration::from_secs(expires_in)))
    }

    /// One API call with token, pacing, retries, and a switch of the body's
    /// encoding when DingTalk refuses it. Vendor errors that are not retryable
    /// come back as `Failure::Api` so callers can act on the class.
    pub(super) async fn call(
        &self,
        endpoint: &str,
        body: &Value,
    ) -> Result<Value, Failure<CallError>> {
        self.call_unless(endpoint, body, None).await
    }

    /// [`Self::call`], given up (`CallError::Halted`) once `halt` is set. The
    /// encoding is read when the request is built, after the pacer's wait:
    /// meanwhile another call may have switched it. A refused encoding is
    /// switched and the body resent at once in the other, within the same
    /// attempt ([`Decoded::Resend`]).
    pub(super) async fn call_unless(
        &self,
        endpoint: &str,
        body: &Value,
        halt: Option<&AtomicBool>,
    ) -> Result<Value, Failure<CallError>> {
        let at = Call {
            endpoint,
            cap: body_cap(endpoint),
            table: codes::dingtalk,
            resend: Resend::Safe,
        };
        let sent = Mutex::new(Sent::default());
        let request = |token: Option<&Secret>| {
            let encoding = {
                let mut sent = lock(&sent);
                let forced = sent.force.take();
                let encoding = forced.unwrap_or_else(|| self.encoding(endpoint));
                sent.last = Some((encoding, forced.is_some()));
                encoding
            };
            let request = self
                .http
                .post(self.url(endpoint))
                .query(&[("access_token", token.map_or("", Secret::expose))]);
            match encoding {
                Encoding::Json => request
                    .header(CONTENT_TYPE, "application/json;charset=UTF-8")
                    .body(body.to_string()),
                Encoding::Form => request
                    .header(
                        CONTENT_TYPE,
                        "application/x-www-form-urlencoded;charset=UTF-8",
                    )
                    .body(form_encode(body)),
            }
        };
        let reader = |status: StatusCode, bytes: &mut Vec<u8>| match read(status, bytes) {
            Decoded::Code { code, message } if codes::dingtalk_wrong_encoding(code) => {
                let mut sent = lock(&sent);
                match sent.last {
                    // A refusal of a forced encoding (the resend) is final.
                    Some((encoding, false)) => {
                        // Switch to the other of what was sent (not of the current
                        // setting), so concurrent refusals agree on the outcome.
                        let other = encoding.other();
                        tracing::info!(endpoint, code, from = ?encoding, to = ?other,
                            "DingTalk refused the request body's encoding; switching");
                        self.set_form_encoding(endpoint, other == Encoding::Form);
                        sent.force = Some(other);
                        Decoded::Resend { code, message }
                    }
                    _ => Decoded::Code { code, message },
                }
            }
            other => other,
        };
        let hook = || self.before_send(endpoint, halt);
        call::call_with_token(self, &at, request, reader, hook).await
    }

    pub(super) async fn call_ok(&self, endpoint: &str, body: &Value) -> Result<Value, SourceError> {
        let r = self.call(endpoint, body).await;
        r.map_err(|e| self.error(endpoint, e))
    }

    /// A `GET` whose only parameter is the token (the failed-push list), with
    /// the same token, pacing and retries as [`Self::call`].
    pub(super) async fn get_ok(&self, endpoint: &str) -> Result<Value, SourceError> {
        let at = Call {
            endpoint,
            cap: body_cap(endpoint),
            table: codes::dingtalk,
            resend: Resend::Safe,
        };
        let request = |token: Option<&Secret>| {
            self.http
                .get(self.url(endpoint))
                .query(&[("access_token", token.map_or("", Secret::expose))])
        };
        let reader = |s: StatusCode, b: &mut Vec<u8>| read(s, b);
        let hook = || self.before_send(endpoint, None);
        let r = call::call_with_token(self, &at, request, reader, hook).await;
        r.map_err(|e| self.error(endpoint, e))
    }

    /// Fetches a token now, so bad credentials stop the job before any other work.
    pub async fn login(&self) -> Result<(), SourceError> {
        self.tokens.get(|| self.new_token()).await.map(|_| ())
    }
}

impl Vendor for DingtalkClient {
    type Error = CallError;
    const CODE: &'static str = "errcode";

    fn secrets(&self) -> Vec<&str> {
        vec![self.app_secret.expose()]
    }

    fn retry_config(&self) -> &RetryConfig {
        &self.retry
    }

    fn stats(&self) -> Option<&CallStats> {
        Some(&self.stats)
    }

    fn pace(&self, endpoint: &str) -> impl Future<Output = ()> + Send {
        self.wait_turn(endpoint)
    }

    fn pacer(&self) -> Option<&crate::http::pace::Pacer> {
        Some(&self.pacer)
    }

    /// DingTalk's answers are judged with their body: a status line alone
    /// says nothing the body does not ([`read_answer`]).
    fn status(&self, _status: StatusCode, _headers: &reqwest::header::HeaderMap) -> OnStatus {
        OnStatus::Read
    }

    fn retry_after(&self, code: i64) -> Option<Duration> {
        codes::dingtalk_retry_after(code)
    }

    fn blocked(&self, endpoint: &str, what: String) -> String {
        self.banned(endpoint, what)
    }
}

impl Tokens for DingtalkClient {
    fn tokens(&self) -> &TokenCache {
        &self.tokens
    }

    async fn fetch_token(&self) -> Result<(Secret, Duration), CallError> {
        self.new_token().await.map_err(CallError::Source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::dingtalk::testkit::*;

    #[tokio::test]
    async fn completes_with_a_fifth_of_the_calls_throttled() {
        let config = DingtalkSimConfig {
            throttle_ratio: 0.2,
            ..fast_sim()
        };
        let sim = start(30, config).await;
        let cfg = job(&sim, &DEFAULT_COLUMNS[..4], &["年假"]);
        let stats = Arc::new(CallStats::default());
        let source = source_client(&cfg, stats.clone());
        let (_, pulled) = pull_all(&source, october(), after_october()).await.unwrap();
        assert_eq!(pulled.records.len(), 30);
        check_records(&sim, &cfg, &pulled, october());
        let injected = sim.injected_throttles();
        assert!(injected > 10, "{injected}");
        let throttled: u64 = stats.snapshot().values().map(|s| s.throttled).sum();
        assert_eq!(throttled, injected as u64);
    }

    #[tokio::test]
    async fn bad_credentials_show_the_code_never_the_secret() {
        let sim = start(3, fast_sim()).await;
        let mut cfg = job(&sim, &["出勤天数"], &[]);
        cfg.app_secret = Secret::new("Wrong-Secret-0123456789");
        let e = client_for(&cfg).login().await.unwrap_err();
        let text = e.to_string();
        assert!(text.contains("errcode 40001"), "{text}");
        assert!(text.contains("app_secret"), "{text}");
        assert!(!text.contains("Wrong-Secret-0123456789"), "{text}");
        assert!(!e.is_transient());
        // No retry of a credentials error.
        assert_eq!(sim.calls(GETTOKEN), 1);

        let mut cfg = job(&sim, &["出勤天数"], &[]);
        cfg.app_key = "ding-unknown".into();
        let text = client_for(&cfg).login().await.unwrap_err().to_string();
        assert!(
            text.contains("errcode 40089") && text.contains("app_key"),
            "{text}"
        );
        assert!(!text.contains(&sim.config().app_secret));
    }

    #[tokio::test]
    async fn switches_body_encoding_when_refused() {
        let config = DingtalkSimConfig {
            body_styles: vec![
                (GETCOLUMNVAL.into(), BodyStyle::FormOnly),
                (GETLEAVETIME.into(), BodyStyle::JsonOnly),
                (USER_LIST.into(), BodyStyle::FormOnly),
            ],
            ..fast_sim()
        };
        let sim = start(12, config).await;
        let cfg = job(&sim, &["出勤天数", "工作时长"], &["年假", "事假"]);
        let client = client_for(&cfg);
        // Leave calls start form-encoded here: the switch back to JSON is exercised too.
        client.set_form_encoding(GETLEAVETIME, true);
        let employees = client.employees(&Scope::default()).await.unwrap();
        assert_eq!(employees.len(), 12);
        let pulled = client
            .month_data(&employees, october(), after_october(), SH)
            .await
            .unwrap();
        assert_eq!(pulled.records.len(), 12);
        check_records(&sim, &cfg, &pulled, october());
        // The other encoding sticks after the first refusal: only the calls
        // already sent when it came back are refused too (employees are pulled
        // several at once), each resent once in the other encoding.
        assert_eq!(client.encoding(GETCOLUMNVAL), Encoding::Form);
        assert_eq!(client.encoding(GETLEAVETIME), Encoding::Json);
        assert_eq!(client.encoding(USER_LIST), Encoding::Form);
        let log = sim.call_log();
        let refused = |endpoint: &str, code: i64| {
            log.iter()
                .filter(|c| c.endpoint == endpoint && c.outcome.code() == Some(code))
                .count()
        };
        let in_flight = client.employees_in_flight;
        for (endpoint, code) in [(GETCOLUMNVAL, 43004), (GETLEAVETIME, 43005)] {
            let n = refused(endpoint, code);
            assert!((1..=in_flight).contains(&n), "{endpoint}: {n}");
            assert_eq!(sim.calls(endpoint), 12 + n, "{endpoint}");
        }
        // The listing switched once (its first page is asked alone).
        assert_eq!(refused(USER_LIST, 43004), 1);
        let codes: Vec<i64> = log.iter().filter_map(|c| c.outcome.code()).collect();
        assert!(
            codes.iter().all(|c| *c == 43004 || *c == 43005),
            "{codes:?}"
        );
    }

    #[tokio::test]
    async fn expired_tokens_are_refreshed() {
        let config = DingtalkSimConfig {
            token_expires_after_calls: Some(9),
            ..fast_sim()
        };
        let sim = start(15, config).await;
        let cfg = job(&sim, &["出勤天数"], &["年假"]);
        let source = source_client(&cfg, Arc::new(CallStats::default()));
        let (_, pulled) = pull_all(&source, october(), after_october()).await.unwrap();
        assert_eq!(pulled.records.len(), 15);
        check_records(&sim, &cfg, &pulled, october());
        let issued = sim.tokens_issued();
        assert!(issued > 3, "{issued}");
        let log = sim.call_log();
        // One gettoken per expiry, however many calls met it: every token but the
        // last served its 9 calls, none was fetched twice and wasted.
        let served = log
            .iter()
            .filter(|c| c.endpoint != GETTOKEN && c.outcome.is_ok())
            .count();
        assert_eq!(issued, served.div_ceil(9), "{served} calls");
        // Each expiry is met by the calls under way with the old token (two per
        // employee pulled at once), at most; each of them is resent once.
        let expired = log
            .iter()
            .filter(|c| c.outcome.code() == Some(42001))
            .count();
        let in_flight = 2 * client_for(&cfg).employees_in_flight;
        assert!(
            (issued - 1..=(issued - 1) * in_flight).contains(&expired),
            "{expired} expired answers for {issued} tokens"
        );
        assert_eq!(log.len(), served + expired + issued);
    }

    #[tokio::test]
    async fn token_errors_on_a_call_refresh_once() {
        let sim = start(3, fast_sim()).await;
        let cfg = job(&sim, &["出勤天数"], &[]);
        let client = client_for(&cfg);
        let employees = client.employees(&Scope::default()).await.unwrap();
        sim.inject_answer(
            GETCOLUMNVAL,
            json!({"errcode": 40001, "errmsg": "invalid token"}),
            1,
        );
        let pulled = client
            .month_data(&employees, october(), after_october(), SH)
            .await
            .unwrap();
        assert_eq!(pulled.records.len(), 3);
        assert_eq!(sim.calls(GETTOKEN), 2);
        // A call whose fresh tokens are rejected again and again stops the pull:
        // the first rejection is of a token that had worked (it expired, free),
        // then three fresh ones that never worked. One employee: with several,
        // the rejections would be shared out among calls pulled at once.
        sim.inject_answer(
            GETCOLUMNVAL,
            json!({"errcode": 42001, "errmsg": "expired"}),
            5,
        );
        let e = stopped(
            client
                .month_data(&employees[..1], october(), after_october(), SH)
                .await,
        );
        assert!(e.contains("rejected repeatedly"), "{e}");
        assert_eq!(sim.calls(GETTOKEN), 2 + 4);

        // As many rejections as one call survives, over a chunk pulled at once:
        // however they are shared out, the pull goes on, every record is right,
        // and no rejection costs more than one refresh.
        sim.inject_answer(
            GETCOLUMNVAL,
            json!({"errcode": 42001, "errmsg": "expired"}),
            3,
        );
        let pulled = client
            .month_data(&employees, october(), after_october(), SH)
            .await
            .unwrap();
        assert!(pulled.stopped.is_none(), "{:?}", pulled.stopped);
        assert_eq!(pulled.records.len(), 3);
        check_records(&sim, &cfg, &pulled, october());
        // A fresh token after the last stop, then one refresh for the first
        // rejection and at most one for each of the two others.
        let fetched = sim.calls(GETTOKEN) - 6;
        assert!((2..=4).contains(&fetched), "{fetched}");
    }

    #[tokio::test]
    async fn ip_ban_pauses_every_call_then_goes_on() {
        let sim = start(4, fast_sim()).await;
        let cfg = job(&sim, &["出勤天数"], &["年假"]);
        let client = client_for(&cfg).with_ip_ban_floor(Duration::from_millis(300));
        let employees = client.employees(&Scope::default()).await.unwrap();
        for html in [false, true] {
            sim.set_ip_ban_html(html);
            sim.set_ip_banned(true);
            let lift = {
                let sim = sim.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    sim.set_ip_banned(false);
                })
            };
            let bans = sim.bans_answered();
            let logged = sim.call_log().len();
            let started = Instant::now();
            let pulled = client
                .month_data(&employees, october(), after_october(), SH)
                .await
                .unwrap();
            lift.await.unwrap();
            assert_eq!(pulled.records.len(), 4);
            check_records(&sim, &cfg, &pulled, october());
            assert!(started.elapsed() >= Duration::from_millis(300));
            // Only the calls already sent when the first ban answer came back
            // meet the ban (two per employee pulled at once, at most) ...
            let banned = sim.bans_answered() - bans;
            assert!((1..=8).contains(&banned), "{banned} ban answers");
            // ... and nothing goes out again until the pause is over.
            let log = sim.call_log();
            let round = &log[logged..];
            let first_ban = round
                .iter()
                .filter(|c| !c.outcome.is_ok())
                .map(|c| c.at)
                .min()
                .unwrap();
            let answered: Vec<&CallRecord> = round.iter().filter(|c| c.outcome.is_ok()).collect();
            let reports = answered
                .iter()
                .filter(|c| c.endpoint == GETCOLUMNVAL || c.endpoint == GETLEAVETIME)
                .count();
            assert_eq!(reports, 8);
            for c in answered {
                assert!(
                    c.at.duration_since(first_ban) >= Duration::from_millis(300),
                    "{} sent {:?} after the first ban answer",
                    c.endpoint,
                    c.at.duration_since(first_ban)
                );
            }
        }
    }

    #[tokio::test]
    async fn default_pacing_stays_under_twenty_per_second() {
        let sim = start(30, DingtalkSimConfig::default()).await;
        let mut cfg = job(&sim, &["出勤天数"], &[]);
        cfg.limits = Vec::new();
        let client = client_for(&cfg);
        let employees = client.employees(&Scope::default()).await.unwrap();
        let started = Instant::now();
        let pulled = client
            .month_data(&employees, october(), after_october(), SH)
            .await
            .unwrap();
        assert_eq!(pulled.records.len(), 30);
        // 30 calls spaced at least 50 ms apart.
        assert!(started.elapsed() >= Duration::from_millis(29 * 50));
        let log = sim.call_log();
        let times: Vec<Instant> = log
            .iter()
            .filter(|c| c.endpoint == GETCOLUMNVAL)
            .map(|c| c.at)
            .collect();
        assert!(times.len() >= 30);
    }

    #[test]
    fn ip_ban_wait_has_a_five_minute_floor_and_a_cap() {
        assert_eq!(IP_BAN_MIN_WAIT, Duration::from_secs(300));
        let floor = IP_BAN_MIN_WAIT;
        assert_eq!(
            ip_ban_wait(Duration::from_secs(1), floor),
            Duration::from_secs(300)
        );
        assert_eq!(
            ip_ban_wait(Duration::from_secs(600), floor),
            Duration::from_secs(600)
        );
        assert_eq!(
            ip_ban_wait(Duration::from_secs(7200), floor),
            IP_BAN_MAX_WAIT
        );
    }
}
