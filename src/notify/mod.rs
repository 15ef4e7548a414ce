//! Alerts after a run (README "Alerts"): a WeCom group robot, a DingTalk custom
//! robot, a DingTalk work notification and a generic JSON webhook.
//!
//! One message per configured target and run, sent concurrently, each bounded by
//! [`TARGET_TIMEOUT`]. Every text carries the job, the month(s), the counts and
//! the first errors, and goes through [`crate::http::redact`] with every secret
//! the job knows (credentials, webhook URLs and their keys, the robot's signing
//! secret, the work notice's token). A failed alert is logged and returned; it
//! never panics and never changes the run's exit status.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::config::job::{Job, Notify, NotifyOn, WorkNotice};
use crate::http::call::{self, no_hook, Call, Decoded, Failure, OnStatus, Resend, Tokens, Vendor};
use crate::http::codes::Class;
use crate::http::retry::RetryConfig;
use crate::http::token::TokenCache;
use crate::http::{
    describe, endpoint_url, read_capped, redact, redact_secrets, CallStats, BODY_CAP,
};
use crate::outcome::EXIT_BUSY;
use crate::pipeline::JobReport;
use crate::secret::Secret;
use crate::source::config::SourceConfig as Source;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;

mod streak;
mod text;

pub use streak::{after_run, after_run_within, failure_alert};
use text::truncate_chars;
pub use text::{local_time, message_for, message_text, without_month, Alert};

/// The longest one target may take, token fetch included.
pub const TARGET_TIMEOUT: Duration = Duration::from_secs(10);
/// How many errors a message shows.
pub const MAX_ERRORS_SHOWN: usize = 5;
/// `asyncsend_v2` takes a `msg` of at most 2048 bytes.
const MAX_WORK_NOTICE_MSG_BYTES: usize = 2048;
/// How much of an unexpected answer an error quotes, in characters.
const MAX_ANSWER_CHARS: usize = 200;

/// One alert target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    WecomRobot,
    DingtalkRobot,
    DingtalkWorkNotice,
    Webhook,
}

impl Channel {
    /// The target's key in `[notify]`.
    pub fn key(self) -> &'static str {
        match self {
            Channel::WecomRobot => "wecom_robot",
            Channel::DingtalkRobot => "dingtalk_robot",
            Channel::DingtalkWorkNotice => "dingtalk_work_notice",
            Channel::Webhook => "webhook",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// An alert that could not be delivered. `message` holds no URL and no secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("alert via {channel} not sent: {message}")]
pub struct NotifyError {
    pub channel: Channel,
    pub message: String,
}

/// Whether a run counts as failed for alerts: the report has a failure, or the
/// job's exit status says so. A job skipped because another process holds its
/// lease ("busy", exit 3) is not a failure.
pub fn is_failure(report: &JobReport, exit_code: u8) -> bool {
    report.busy.is_none() && (!report.ok() || (exit_code != 0 && exit_code != EXIT_BUSY))
}

/// Whether `[notify]` asks for an alert about this run. Dry runs and runs
/// stopped by a shutdown never alert.
pub fn should_notify(notify: &Notify, report: &JobReport, exit_code: u8) -> bool {
    !report.dry_run
        && !report.stopped_by_shutdown
        && match notify.on {
            NotifyOn::Always => true,
            NotifyOn::Failure => is_failure(report, exit_code),
        }
}

/// Sends the alert about one job's run to every target of its `[notify]`, when
/// its `on` asks for one, without failure-streak state: every failed run
/// alerts. [`after_run`] is the streak-aware form (one alert per streak, then
/// "recovered"). Pass the job's own exit status
/// (`app::exit_status(std::slice::from_ref(report))`). Returns the targets that
/// failed (each also logged with `tracing::warn!`); never panics.
pub async fn notify(
    http: &reqwest::Client,
    job: &Job,
    report: &JobReport,
    exit_code: u8,
) -> Vec<NotifyError> {
    notify_within(http, job, report, exit_code, TARGET_TIMEOUT).await
}

/// [`notify`] with another bound per target.
pub async fn notify_within(
    http: &reqwest::Client,
    job: &Job,
    report: &JobReport,
    exit_code: u8,
    timeout: Duration,
) -> Vec<NotifyError> {
    let Some(cfg) = &job.notify else {
        return Vec::new();
    };
    if !should_notify(cfg, report, exit_code) {
        return Vec::new();
    }
    let alert = Alert::of_run(report, exit_code);
    send(http, job, report, exit_code, Utc::now(), &alert, timeout).await
}

/// How many targets `[notify]` names.
pub fn target_count(cfg: &Notify) -> usize {
    usize::from(cfg.wecom_robot.is_some())
        + usize::from(cfg.dingtalk_robot.is_some())
        + usize::from(cfg.dingtalk_work_notice.is_some())
        + usize::from(cfg.webhook.is_some())
}

/// Sends `alert` about the run to every target of the job's `[notify]`,
/// concurrently, each bounded by `timeout`. Returns the targets that failed.
async fn send(
    http: &reqwest::Client,
    job: &Job,
    report: &JobReport,
    exit_code: u8,
    now: DateTime<Utc>,
    alert: &Alert,
    timeout: Duration,
) -> Vec<NotifyError> {
    let Some(cfg) = &job.notify else {
        return Vec::new();
    };
    let secrets = job_secrets(job);
    let text = message_for(job, report, exit_code, now, alert);
    let payload = cfg
        .webhook
        .as_ref()
        .map(|_| webhook_payload_for(job, report, exit_code, now, alert));
    let sender = Sender {
        http,
        timeout,
        secrets: &secrets,
    };

    type Sending<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;
    let mut sends: Vec<(Channel, Sending<'_>)> = Vec::new();
    if let Some(url) = &cfg.wecom_robot {
        sends.push((
            Channel::WecomRobot,
            Box::pin(sender.wecom_robot(url, &text)),
        ));
    }
    if let Some(url) = &cfg.dingtalk_robot {
        let secret = cfg.dingtalk_robot_secret.as_ref();
        sends.push((
            Channel::DingtalkRobot,
            Box::pin(sender.dingtalk_robot(url, secret, &text, now)),
        ));
    }
    if let Some(notice) = &cfg.dingtalk_work_notice {
        sends.push((
            Channel::DingtalkWorkNotice,
            Box::pin(sender.work_notice(notice, &text)),
        ));
    }
    if let (Some(url), Some(payload)) = (&cfg.webhook, &payload) {
        sends.push((Channel::Webhook, Box::pin(sender.webhook(url, payload))));
    }

    let results = futures::future::join_all(sends.into_iter().map(|(channel, send)| async move {
        let result = match tokio::time::timeout(timeout, send).await {
            Ok(r) => r,
            Err(_) => Err(format!("timed out after {}s", timeout.as_secs_f32())),
        };
        (channel, result)
    }))
    .await;

    let mut failed = Vec::new();
    for (channel, result) in results {
        match result {
            Ok(()) => tracing::info!(
                job = %job.name,
                channel = channel.key(),
                alert = alert.key(),
                "alert sent"
            ),
            Err(message) => {
                let message = redact(&message, &as_strs(&secrets));
                tracing::warn!(
                    job = %job.name,
                    channel = channel.key(),
                    "alert not sent: {message}"
                );
                failed.push(NotifyError { channel, message });
            }
        }
    }
    failed
}

/// The generic webhook's body for a run when no streak is known.
pub fn webhook_payload(job: &Job, report: &JobReport, exit_code: u8, now: DateTime<Utc>) -> Value {
    webhook_payload_for(
        job,
        report,
        exit_code,
        now,
        &Alert::of_run(report, exit_code),
    )
}

/// The generic webhook's body: the serialized [`JobReport`] plus `ok`,
/// `exit_code`, `failed`, `source`, `at` (RFC 3339), `alert` ([`Alert::key`]),
/// for a failure streak `failing_since` (RFC 3339) and `failed_runs`, and
/// `text` (the alert text), with every string scrubbed of the job's secrets.
pub fn webhook_payload_for(
    job: &Job,
    report: &JobReport,
    exit_code: u8,
    now: DateTime<Utc>,
    alert: &Alert,
) -> Value {
    let mut value = serde_json::to_value(report)
        .unwrap_or_else(|e| json!({ "job": report.job, "serialization_error": e.to_string() }));
    if let Value::Object(map) = &mut value {
        map.insert("ok".into(), Value::Bool(report.ok()));
        map.insert("exit_code".into(), Value::from(exit_code));
        map.insert("failed".into(), Value::Bool(is_failure(report, exit_code)));
        map.insert("source".into(), Value::from(job.source.kind()));
        let rfc3339 = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        map.insert("at".into(), Value::from(rfc3339(now)));
        map.insert("alert".into(), Value::from(alert.key()));
        if let Some(streak) = alert.streak() {
            map.insert("failing_since".into(), Value::from(rfc3339(streak.since)));
            map.insert("failed_runs".into(), Value::from(streak.failures));
        }
        map.insert(
            "text".into(),
            Value::from(message_for(job, report, exit_code, now, alert)),
        );
    }
    let secrets = job_secrets(job);
    scrub(&mut value, &as_strs(&secrets));
    value
}

/// DingTalk custom-robot signature: base64(HMAC-SHA256(key = secret,
/// message = "<timestamp_ms>\n<secret>")), before URL encoding.
pub fn dingtalk_sign(secret: &str, timestamp_ms: i64) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        // HMAC takes keys of any length; this arm is unreachable in practice.
        Err(_) => return String::new(),
    };
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

struct Sender<'a> {
    http: &'a reqwest::Client,
    timeout: Duration,
    secrets: &'a [String],
}

impl Sender<'_> {
    /// WeCom group robot: `{"msgtype":"text","text":{"content":…}}`, success is errcode 0.
    async fn wecom_robot(&self, url: &Secret, text: &str) -> Result<(), String> {
        let body = json!({ "msgtype": "text", "text": { "content": text } });
        let request = self.http.post(url.expose()).json(&body);
        let answer = self.send(request).await?;
        self.errcode_ok(&answer, &[]).map(drop)
    }

    /// DingTalk custom robot; with a signing secret, `&timestamp=…&sign=…` is appended.
    async fn dingtalk_robot(
        &self,
        url: &Secret,
        secret: Option<&Secret>,
        text: &str,
        now: DateTime<Utc>,
    ) -> Result<(), String> {
        let body = json!({ "msgtype": "text", "text": { "content": text } });
        let mut request = self.http.post(url.expose());
        if let Some(secret) = secret {
            let ts = now.timestamp_millis();
            let sign = dingtalk_sign(secret.expose(), ts);
            request = request.query(&[("timestamp", ts.to_string()), ("sign", sign)]);
        }
        let answer = self.send(request.json(&body)).await?;
        self.errcode_ok(&answer, &[]).map(drop)
    }

    /// DingTalk work notification: `gettoken`, then `asyncsend_v2`, each through
    /// the shared call wrapper ([`WorkNoticeApi`]).
    async fn work_notice(&self, notice: &WorkNotice, text: &str) -> Result<(), String> {
        let api = WorkNoticeApi {
            sender: self,
            notice,
            tokens: TokenCache::new(),
            token: OnceLock::new(),
        };
        let body = json!({
            "agent_id": notice.agent_id,
            "userid_list": notice.userids.join(","),
            "msg": work_notice_msg(text),
        });
        let url = endpoint_url(
            &notice.base_url,
            &["topapi/message/corpconversation/asyncsend_v2"],
        );
        let request = |token: Option<&Secret>| {
            self.http
                .post(url.clone())
                .query(&[("access_token", token.map_or("", Secret::expose))])
                .timeout(self.timeout)
                .json(&body)
        };
        let read = |status, bytes: &mut Vec<u8>| api.judge(status, bytes, "");
        call::call_with_token(&api, &WORK_NOTICE_CALL, request, read, no_hook)
            .await
            .map(drop)
            .map_err(|f| api.failed("asyncsend_v2", f, ""))
    }

    /// Generic webhook: POSTs the JSON report; any 2xx status is success.
    async fn webhook(&self, url: &Secret, payload: &Value) -> Result<(), String> {
        self.send(self.http.post(url.expose()).json(payload))
            .await
            .map(drop)
    }

    /// Sends a request; a non-2xx status is an error quoting the start of the body.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<String, String> {
        let response = request
            .timeout(self.timeout)
            .send()
            .await
            .map_err(describe)?;
        let status = response.status();
        // Robots and webhooks answer a few bytes; the cap keeps a broken receiver
        // from growing the process. Lossy: the text is only checked and quoted.
        let body = read_capped(response, BODY_CAP, "the alert receiver")
            .await
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok(body)
        } else {
            let quoted = self.quote(&body, &[]);
            Err(if quoted.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {quoted}")
            })
        }
    }

    /// Vendor convention: a JSON body whose `errcode` (number or string) is 0.
    fn errcode_ok(&self, body: &str, extra: &[&str]) -> Result<Value, String> {
        let Ok(value) = serde_json::from_str::<Value>(body) else {
            return Err(format!(
                "unexpected answer (not JSON): {}",
                self.quote(body, extra)
            ));
        };
        match errcode(&value) {
            Some(0) => Ok(value),
            Some(code) => {
                let msg = value.get("errmsg").and_then(Value::as_str).unwrap_or("");
                Err(format!("errcode {code}: {}", self.quote(msg, extra)))
            }
            None => Err(format!(
                "unexpected answer (no errcode): {}",
                self.quote(body, extra)
            )),
        }
    }

    fn quote(&self, text: &str, extra: &[&str]) -> String {
        let mut secrets = as_strs(self.secrets);
        secrets.extend_from_slice(extra);
        truncate_chars(&redact(text.trim(), &secrets), MAX_ANSWER_CHARS)
    }
}

/// One attempt per request: an alert as a whole is bounded by [`TARGET_TIMEOUT`],
/// and one that fails is reported, not retried.
const SEND_ONCE: RetryConfig = RetryConfig {
    max_attempts: 1,
    initial_wait: Duration::ZERO,
    max_wait: Duration::ZERO,
    throttle_wait: Duration::ZERO,
};

/// Both work-notice calls: every non-zero `errcode` ends the alert, as any
/// other answer that is not a success.
const WORK_NOTICE_CALL: Call<'static> = Call {
    endpoint: "the alert receiver",
    cap: BODY_CAP,
    table: |_| Class::Fatal("the alert was refused"),
    resend: Resend::Safe,
};

/// What a refused `gettoken` adds to its error.
const GETTOKEN_HINT: &str = "; check the app's app_key/app_secret";

/// DingTalk's work notice as a vendor of the shared call wrapper: a token of
/// its own, fetched once per alert; no pacing; one attempt per request.
struct WorkNoticeApi<'a> {
    sender: &'a Sender<'a>,
    notice: &'a WorkNotice,
    tokens: TokenCache,
    /// The token once fetched, redacted from answers with the job's secrets.
    token: OnceLock<Secret>,
}

impl Vendor for WorkNoticeApi<'_> {
    type Error = String;
    const CODE: &'static str = "errcode";

    fn secrets(&self) -> Vec<&str> {
        let mut secrets = as_strs(self.sender.secrets);
        secrets.extend(self.token.get().map(Secret::expose));
        secrets
    }

    fn retry_config(&self) -> &RetryConfig {
        &SEND_ONCE
    }

    fn stats(&self) -> Option<&CallStats> {
        None
    }

    fn pace(&self, _endpoint: &str) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }

    /// As for every alert target, the status is judged with the body ([`WorkNoticeApi::judge`]).
    fn status(&self, _status: StatusCode, _headers: &HeaderMap) -> OnStatus {
        OnStatus::Read
    }

    fn body_lost(&self, _status: StatusCode, error: String) -> String {
        error
    }
}

impl Tokens for WorkNoticeApi<'_> {
    fn tokens(&self) -> &TokenCache {
        &self.tokens
    }

    async fn fetch_token(&self) -> Result<(Secret, Duration), String> {
        let notice = self.notice;
        let request = |_: Option<&Secret>| {
            self.sender
                .http
                .get(endpoint_url(&notice.base_url, &["gettoken"]))
                .query(&[
                    ("appkey", notice.app_key.as_str()),
                    ("appsecret", notice.app_secret.expose()),
                ])
                .timeout(self.sender.timeout)
        };
        let read = |status, bytes: &mut Vec<u8>| self.judge(status, bytes, GETTOKEN_HINT);
        let answer = call::call(self, &WORK_NOTICE_CALL, request, read, no_hook)
            .await
            .map_err(|f| self.failed("gettoken", f, GETTOKEN_HINT))?;
        let token = match answer.get("access_token").and_then(Value::as_str) {
            Some(t) if !t.is_empty() => Secret::new(t),
            _ => return Err("gettoken: the answer has no access_token".into()),
        };
        let _ = self.token.set(token.clone());
        // The lifetime does not matter: the token serves this one alert.
        Ok((token, Duration::from_secs(7200)))
    }
}

impl WorkNoticeApi<'_> {
    /// An answer judged as every alert target's: a non-2xx status is an error
    /// quoting the body; otherwise a JSON body whose `errcode` (number or
    /// string) is 0. `hint` is added to what that convention refuses.
    fn judge(&self, status: StatusCode, bytes: &[u8], hint: &str) -> Decoded<Value> {
        // Lossy: the text is only checked and quoted.
        let body = String::from_utf8_lossy(bytes);
        let quote =
            |text: &str| truncate_chars(&redact(text.trim(), &self.secrets()), MAX_ANSWER_CHARS);
        if !status.is_success() {
            let quoted = quote(&body);
            return Decoded::Protocol(if quoted.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {quoted}")
            });
        }
        let Ok(value) = serde_json::from_str::<Value>(&body) else {
            return Decoded::Protocol(format!(
                "unexpected answer (not JSON): {}{hint}",
                quote(&body)
            ));
        };
        match errcode(&value) {
            Some(0) => Decoded::Done(value),
            Some(code) => Decoded::Code {
                code,
                message: value
                    .get("errmsg")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .trim()
                    .to_string(),
            },
            None => Decoded::Protocol(format!(
                "unexpected answer (no errcode): {}{hint}",
                quote(&body)
            )),
        }
    }

    /// A failed call's error, as the alert reports it.
    fn failed(&self, call: &str, failure: Failure<String>, hint: &str) -> String {
        let text = match failure {
            // Already says which call failed.
            Failure::Vendor(e) => return e,
            Failure::Api(f) => format!(
                "errcode {}: {}{hint}",
                f.code,
                truncate_chars(&f.message, MAX_ANSWER_CHARS)
            ),
            Failure::Protocol(text)
            | Failure::Exhausted { last: text, .. }
            | Failure::Ambiguous { reason: text, .. } => text,
        };
        format!("{call}: {text}")
    }
}

/// `errcode` as a number; some answers carry it as a string.
fn errcode(value: &Value) -> Option<i64> {
    match value.get("errcode") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A text `msg` for `asyncsend_v2`, its content cut so that the JSON fits 2048 bytes.
fn work_notice_msg(text: &str) -> Value {
    let msg = |content: &str| json!({ "msgtype": "text", "text": { "content": content } });
    let json_len = |v: &Value| serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX);
    let full = msg(text);
    if json_len(&full) <= MAX_WORK_NOTICE_MSG_BYTES {
        return full;
    }
    let ellipsis = "…";
    let budget = MAX_WORK_NOTICE_MSG_BYTES
        .saturating_sub(json_len(&msg("")))
        .saturating_sub(ellipsis.len());
    let mut used = 0;
    let mut cut = 0;
    for (i, c) in text.char_indices() {
        used += escaped_len(c);
        if used > budget {
            break;
        }
        cut = i + c.len_utf8();
    }
    msg(&format!("{}{ellipsis}", &text[..cut]))
}

/// The bytes a character takes inside a JSON string, as serde_json writes it.
fn escaped_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// Every secret of a job, as text to scrub from messages: credentials, webhook
/// URLs and the keys inside them, the robot's signing secret.
pub(crate) fn job_secrets(job: &Job) -> Vec<String> {
    let mut out = vec![job.target.api_key.expose().to_string()];
    match &job.source {
        Source::Wecom(w) => out.push(w.secret.expose().to_string()),
        Source::Dingtalk(d) => out.push(d.app_secret.expose().to_string()),
    }
    if let Some(n) = &job.notify {
        for url in [&n.wecom_robot, &n.dingtalk_robot, &n.webhook]
            .into_iter()
            .flatten()
        {
            out.extend(url_secrets(url.expose()));
        }
        if let Some(s) = &n.dingtalk_robot_secret {
            out.push(s.expose().to_string());
        }
        if let Some(w) = &n.dingtalk_work_notice {
            out.push(w.app_secret.expose().to_string());
        }
    }
    // Longest first, so a URL is replaced whole before the key inside it.
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

/// A webhook URL, its query values, and path segments long enough to be tokens
/// (generic webhooks often carry the key in the path).
fn url_secrets(url: &str) -> Vec<String> {
    let mut out = vec![url.to_string()];
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    for pair in query.split('&') {
        if let Some((_, value)) = pair.split_once('=') {
            out.push(value.to_string());
        }
    }
    let path = path.split_once("://").map(|(_, rest)| rest).unwrap_or(path);
    for segment in path.split('/').skip(1) {
        if segment.len() >= 16 {
            out.push(segment.to_string());
        }
    }
    out.retain(|s| s.len() >= 4);
    out
}

pub(crate) fn as_strs(secrets: &[String]) -> Vec<&str> {
    secrets.iter().map(String::as_str).collect()
}

fn scrub(value: &mut Value, secrets: &[&str]) {
    match value {
        Value::String(s) => *s = redact_secrets(s, secrets),
        Value::Array(items) => items.iter_mut().for_each(|v| scrub(v, secrets)),
        Value::Object(map) => map.values_mut().for_each(|v| scrub(v, secrets)),
        _ => {}
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::job::parse_job;
    use crate::config::SourceFile;
    use crate::pipeline::MonthReport;
    use crate::store::MonthCounts;

    pub(crate) fn job(notify: &str) -> Job {
        let text = format!(
            r#"
mapping = "m.toml"
[source]
type = "wecom"
corp_id = "ww1"
secret = "wecom-secret-123"
[target]
api_key = "jdy-key-456"
app_id = "a"
entry_id = "e"
{notify}
"#
        );
        let file = SourceFile::new("jobs/j.toml", text);
        match parse_job("j", &file, &|_| None) {
            Ok(job) => job,
            Err(e) => panic!("{e:?}"),
        }
    }

    pub(crate) fn report(failed: u64, errors: Vec<String>) -> JobReport {
        JobReport {
            job: "j".into(),
            dry_run: false,
            months: vec![MonthReport {
                job: "j".into(),
                month: "2026-10".into(),
                counts: MonthCounts {
                    pulled: 10,
                    created: 2,
                    updated: 1,
                    unchanged: 7 - failed.min(7),
                    failed,
                    missing: 0,
                },
                errors,
                month_error: None,
                missing_keys: Vec::new(),
                gone_keys: Vec::new(),
                pruned: 0,
                duplicates: Vec::new(),
                copies_deleted: 0,
                skipped: 0,
                warnings: Vec::new(),
                fill: Default::default(),
            }],
            error: None,
            busy: None,
            stopped_by_shutdown: false,
            plan: None,
            calls: Default::default(),
            run_id: None,
        }
    }

    #[test]
    fn signature_matches_an_independent_implementation() {
        // openssl dgst -sha256 -hmac SECabc123 over "1700000000000\nSECabc123", base64.
        assert_eq!(
            dingtalk_sign("SECabc123", 1_700_000_000_000),
            "N5P09a4+p1AMJIJWnIvQd2Yxw9+fu/oEBnPrjCcsLXk="
        );
    }

    #[test]
    fn failure_rules_ignore_busy_skips() {
        let ok = report(0, vec![]);
        assert!(!is_failure(&ok, 0));
        assert!(is_failure(&ok, 1));
        assert!(!is_failure(&ok, EXIT_BUSY));
        assert!(is_failure(&report(1, vec!["x".into()]), 0));
        let mut busy = report(0, vec![]);
        busy.busy = Some("held by pid 7".into());
        assert!(!is_failure(&busy, EXIT_BUSY));
        assert!(!is_failure(&busy, 1));

        let j = job("[notify]\nwebhook = \"http://127.0.0.1:9/h\"\n");
        let n = j.notify.as_ref().expect("notify");
        assert!(!should_notify(n, &ok, 0));
        assert!(!should_notify(n, &busy, EXIT_BUSY));
        let mut dry = report(3, vec![]);
        dry.dry_run = true;
        assert!(!should_notify(n, &dry, 1));
        let always = job("[notify]\non = \"always\"\nwebhook = \"http://127.0.0.1:9/h\"\n");
        assert!(should_notify(
            always.notify.as_ref().expect("notify"),
            &ok,
            0
        ));
    }

    #[test]
    fn work_notice_msg_fits_2048_bytes() {
        let len = |m: &Value| serde_json::to_vec(m).map(|v| v.len()).unwrap_or(0);
        for unit in ["异常\n\"引号\"\t", "a", "\u{1}x", "考勤"] {
            let msg = work_notice_msg(&unit.repeat(3000));
            let n = len(&msg);
            assert!(n <= MAX_WORK_NOTICE_MSG_BYTES && n > 2030, "{unit:?}: {n}");
        }
        let short = work_notice_msg("短");
        assert_eq!(short["text"]["content"], "短");
    }

    #[test]
    fn url_secrets_cover_query_values_and_long_path_tokens() {
        let s = url_secrets(
            "https://hooks.example/services/T0000/B0000/XXXXXXXXXXXXXXXXXXXXXXXX?a=1&token=abcd",
        );
        assert!(s.contains(&"XXXXXXXXXXXXXXXXXXXXXXXX".to_string()), "{s:?}");
        assert!(s.contains(&"abcd".to_string()), "{s:?}");
        assert!(!s.contains(&"services".to_string()), "{s:?}");
    }
}
