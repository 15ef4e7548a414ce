//! The Jiandaoyun (简道云) v5 client: form fields, record queries and writes.
//!
//! Writes that create records are never retried blindly: a timeout, a dropped
//! connection, a 5xx or a 429 after a create may mean it was stored, so those
//! come back as [`FormError::Ambiguous`] and the writer reconciles by key.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::config::Target;
use crate::http::codes::{self, Class};
use crate::http::pace::Pacer;
use crate::http::rate::Rate;
use crate::http::retry::RetryConfig;
use crate::http::retry::{retry, Attempt, RetryError};
use crate::http::{
    describe, endpoint_url, read_capped, redact, redirected, CallStats, ReadError, Url, BODY_CAP,
};
use crate::secret::Secret;
use crate::target::{Created, FieldKind, FormError, Widget, WriteData};

use super::codes::TRANSACTION_EXISTS;
use super::wire;

pub const BATCH_CREATE: &str = "data/batch_create";
pub const UPDATE: &str = "data/update";
pub const LIST: &str = "data/list";
pub const WIDGETS: &str = "widget/list";
pub const BATCH_DELETE: &str = "data/batch_delete";
/// Records per batch call, and values per `in` filter (jiandaoyun.md §5, §6).
pub const MAX_BATCH: usize = 100;
pub const MAX_IN_VALUES: usize = 200;

/// attendsync's defaults (jiandaoyun.md §9): below the documented limits, since
/// other integrations of the same company share them.
const DEFAULT_LIMITS: &[(&str, Rate)] = &[
    (BATCH_CREATE, Rate::per_second(5)),
    (UPDATE, Rate::per_second(10)),
    (LIST, Rate::per_second(10)),
    (WIDGETS, Rate::per_second(10)),
    (BATCH_DELETE, Rate::per_second(5)),
];
const GLOBAL_LIMIT: Rate = Rate::per_second(20);
/// The longest server-requested wait we honour before our own cap applies.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(60);

pub struct Jiandaoyun {
    http: reqwest::Client,
    base_url: Url,
    api_key: Secret,
    app_id: String,
    entry_id: String,
    is_start_workflow: bool,
    is_start_trigger: bool,
    pacer: Pacer,
    retry: RetryConfig,
    request_timeout: Duration,
    stats: Arc<CallStats>,
}

/// Whether a request may be resent after an unclear failure.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Resend {
    Safe,
    /// Creates: an unclear failure is reported as ambiguous, not retried.
    Never,
}

/// The vendor and endpoint, as every error message names a call.
fn at(endpoint: &str) -> String {
    format!("Jiandaoyun {endpoint}")
}

fn finish<T>(endpoint: &str, r: Result<T, RetryError<FormError>>) -> Result<T, FormError> {
    match r {
        Ok(v) => Ok(v),
        Err(RetryError::Failed(e)) => Err(e),
        Err(RetryError::Exhausted { attempts, last }) => Err(FormError::Exhausted {
            endpoint: at(endpoint),
            attempts,
            last,
        }),
    }
}

impl Jiandaoyun {
    pub fn new(http: reqwest::Client, target: &Target, stats: Arc<CallStats>) -> Self {
        Jiandaoyun {
            http,
            base_url: target.base_url.clone(),
            api_key: target.api_key.clone(),
            app_id: target.app_id.clone(),
            entry_id: target.entry_id.clone(),
            is_start_workflow: target.is_start_workflow,
            is_start_trigger: target.is_start_trigger,
            pacer: Pacer::new(GLOBAL_LIMIT, DEFAULT_LIMITS, &target.limits),
            retry: target.retry,
            request_timeout: target.request_timeout,
            stats,
        }
    }

    /// How long one request may take, answer included (`[target] request_timeout`).
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    pub fn entry_id(&self) -> &str {
        &self.entry_id
    }

    fn body(&self, extra: Value) -> Value {
        let mut body = json!({ "app_id": self.app_id, "entry_id": self.entry_id });
        if let (Some(b), Value::Object(extra)) = (body.as_object_mut(), extra) {
            b.extend(extra);
        }
        body
    }

    async fn attempt<B: Serialize + ?Sized>(
        &self,
        endpoint: &str,
        body: &B,
        resend: Resend,
    ) -> Attempt<Value, FormError> {
        self.pacer.ready(endpoint).await;
        self.send_once(endpoint, body, resend).await
    }

    /// One request, sent at once (the caller has waited for its pace).
    async fn send_once<B: Serialize + ?Sized>(
        &self,
        endpoint: &str,
        body: &B,
        resend: Resend,
    ) -> Attempt<Value, FormError> {
        self.stats.call(endpoint);
        let unclear = |reason: String, answered: bool| match resend {
            Resend::Safe => Attempt::Transient(reason),
            Resend::Never => Attempt::Fail(FormError::Ambiguous {
                endpoint: at(endpoint),
                reason,
                answered,
            }),
        };
        let sent = self
            .http
            .post(endpoint_url(
                &self.base_url,
                &["api/v5/app/entry", endpoint],
            ))
            .bearer_auth(self.api_key.expose())
            .timeout(self.request_timeout)
            .json(body)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => return unclear(describe(e), false),
        };
        let status = resp.status();
        if status.as_u16() == 429 {
            self.stats.throttled(endpoint);
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| Duration::from_secs(s).min(RETRY_AFTER_CAP));
            return match resend {
                Resend::Safe => Attempt::Throttled {
                    reason: "HTTP 429".into(),
                    retry_after,
                },
                Resend::Never => unclear("HTTP 429".into(), true),
            };
        }
        if status.is_server_error() {
            // Often a gateway's answer: the request may still run behind it.
            return unclear(format!("HTTP {status}"), false);
        }
        if let Some(message) = redirected(status) {
            return Attempt::Fail(FormError::Protocol {
                endpoint: at(endpoint),
                message,
            });
        }
        let text = match read_capped(resp, BODY_CAP, endpoint).await {
            Ok(t) => t,
            Err(ReadError::Transport(e)) => return unclear(e, false),
            // Not retried: the same request gets the same answer. For a create the
            // server did answer, so the records may be stored: ambiguous, and the
            // writer reconciles by key.
            Err(e @ ReadError::TooLarge { .. }) => {
                return match resend {
                    Resend::Safe => Attempt::Fail(FormError::Protocol {
                        endpoint: at(endpoint),
                        message: e.to_string(),
                    }),
                    Resend::Never => Attempt::Fail(FormError::Ambiguous {
                        endpoint: at(endpoint),
                        reason: e.to_string(),
                        answered: true,
                    }),
                }
            }
        };
        let parsed: Result<Value, _> = serde_json::from_slice(&text);
        if status.is_success() {
            return match parsed {
                Ok(v) => Attempt::Done(v),
                Err(_) => unclear(format!("HTTP {status} with a body that is not JSON"), true),
            };
        }
        let Ok(err) = parsed else {
            return Attempt::Fail(FormError::Protocol {
                endpoint: at(endpoint),
                message: format!("HTTP {status} with a body that is not JSON"),
            });
        };
        let code = err["code"].as_i64().unwrap_or(-1);
        let message = redact(err["msg"].as_str().unwrap_or(""), &[self.api_key.expose()]);
        if endpoint == BATCH_CREATE && code == TRANSACTION_EXISTS {
            return Attempt::Fail(FormError::IdSpent {
                endpoint: at(endpoint),
                code,
                message,
            });
        }
        match codes::jiandaoyun(code) {
            // Refused before anything was stored: safe to resend even for creates.
            Class::Throttled => {
                self.stats.throttled(endpoint);
                Attempt::Throttled {
                    reason: format!("code {code} ({message})"),
                    retry_after: None,
                }
            }
            Class::Transient => Attempt::Transient(format!("code {code} ({message})")),
            Class::Fatal(hint) => Attempt::Fail(FormError::Fatal {
                endpoint: at(endpoint),
                code,
                message,
                hint,
            }),
            class => Attempt::Fail(FormError::Rejected {
                endpoint: at(endpoint),
                code,
                message,
                class,
            }),
        }
    }

    async fn post<B: Serialize + Sync + ?Sized>(
        &self,
        endpoint: &str,
        body: &B,
        resend: Resend,
    ) -> Result<Value, FormError> {
        let r = retry(&self.retry, endpoint, || {
            self.attempt(endpoint, body, resend)
        })
        .await;
        finish(endpoint, r)
    }

    /// The form's fields; also proves the key, app and form are right.
    pub async fn widgets(&self) -> Result<Vec<Widget>, FormError> {
        let v = self
            .post(WIDGETS, &self.body(json!({})), Resend::Safe)
            .await?;
        serde_json::from_value(v["widgets"].clone()).map_err(|e| FormError::Protocol {
            endpoint: at(WIDGETS),
            message: e.to_string(),
        })
    }

    /// Every record matching `filter`, paging by `data_id` (ids ascend).
    pub async fn list(
        &self,
        filter: &Value,
        fields: &[String],
    ) -> Result<Vec<Map<String, Value>>, FormError> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut body = self.body(json!({ "limit": MAX_BATCH, "filter": filter }));
            if !fields.is_empty() {
                body["fields"] = json!(fields);
            }
            if let Some(c) = &cursor {
                body["data_id"] = json!(c);
            }
            let mut v = self.post(LIST, &body, Resend::Safe).await?;
            let page: Vec<Map<String, Value>> = match v["data"].take() {
                Value::Array(rows) => rows
                    .into_iter()
                    .filter_map(|r| match r {
                        Value::Object(row) => Some(row),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            let full = page.len() >= MAX_BATCH;
            cursor = page
                .last()
                .and_then(|r| r["_id"].as_str())
                .map(str::to_string);
            out.extend(page);
            if !full || cursor.is_none() {
                return Ok(out);
            }
        }
    }

    /// Records whose key fields take the given values (`in` filters, one per key
    /// field, each within the 200-value cap), with `fields` (all when empty). The
    /// caller matches whole keys.
    pub async fn find_by_keys(
        &self,
        key_fields: &[(String, FieldKind)],
        keys: &[Vec<Value>],
        fields: &[String],
    ) -> Result<Vec<Map<String, Value>>, FormError> {
        let mut out = Vec::new();
        for group in keys.chunks(MAX_IN_VALUES) {
            out.extend(self.list(&wire::keys_in(key_fields, group), fields).await?);
        }
        Ok(out)
    }

    /// Every record whose fields equal the given values (`eq`), with `fields`.
    pub async fn rows_where(
        &self,
        equal: &[(String, FieldKind, Value)],
        fields: &[String],
    ) -> Result<Vec<Map<String, Value>>, FormError> {
        self.list(&wire::fields_equal(equal), fields).await
    }

    /// Creates up to 100 records under `transaction_id`. Unclear failures come back
    /// as [`FormError::Ambiguous`], never retried here. `before_send` runs before
    /// every attempt (a throttled one is retried): the writer records there that
    /// the batch may be in flight, and nothing is sent when it fails.
    pub async fn batch_create<F, Fut>(
        &self,
        transaction_id: &str,
        records: &[&WriteData],
        before_send: F,
    ) -> Result<Created, FormError>
    where
        F: Fn() -> Fut + Sync,
        Fut: std::future::Future<Output = Result<(), String>> + Send,
    {
        // Borrows every record's data: a batch is encoded once per attempt, never copied.
        #[derive(Serialize)]
        struct Body<'a> {
            app_id: &'a str,
            entry_id: &'a str,
            transaction_id: &'a str,
            is_start_workflow: bool,
            data_list: &'a [&'a WriteData],
        }
        let body = Body {
            app_id: &self.app_id,
            entry_id: &self.entry_id,
            transaction_id,
            is_start_workflow: self.is_start_workflow,
            data_list: records,
        };
        let r = retry(&self.retry, BATCH_CREATE, || async {
            // Marked after the pacer's wait, right before the request leaves:
            // the mark says until when this send may still commit.
            self.pacer.ready(BATCH_CREATE).await;
            match before_send().await {
                Ok(()) => self.send_once(BATCH_CREATE, &body, Resend::Never).await,
                Err(reason) => Attempt::Fail(FormError::NotMarked {
                    endpoint: at(BATCH_CREATE),
                    reason,
                }),
            }
        })
        .await;
        let v = finish(BATCH_CREATE, r)?;
        Ok(Created {
            success_count: v["success_count"].as_u64().unwrap_or(0),
            success_ids: v["success_ids"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect(),
        })
    }

    /// Replaces a record's mapped fields. Resending the same data is harmless, so
    /// unclear failures are retried.
    pub async fn update(&self, data_id: &str, data: &WriteData) -> Result<(), FormError> {
        let body = self.body(json!({
            "data_id": data_id,
            "data": data,
            "is_start_trigger": self.is_start_trigger,
        }));
        self.post(UPDATE, &body, Resend::Safe).await.map(|_| ())
    }

    pub async fn batch_delete(&self, data_ids: &[String]) -> Result<u64, FormError> {
        let body = self.body(json!({ "data_ids": data_ids }));
        let v = self.post(BATCH_DELETE, &body, Resend::Safe).await?;
        Ok(v["success_count"].as_u64().unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::BODY_CAP;
    use std::time::Instant;

    /// A Jiandaoyun stand-in that answers every call with an endless chunked JSON
    /// stream (no Content-Length), as a broken or hostile server could.
    async fn endless_target() -> Jiandaoyun {
        let endless = || async {
            let chunk = axum::body::Bytes::from(format!("[{}", "0,".repeat(8 * 1024)));
            let stream = futures::stream::repeat_with(move || {
                Ok::<_, std::convert::Infallible>(chunk.clone())
            });
            axum::body::Body::from_stream(stream)
        };
        target_answering(axum::Router::new().fallback(endless)).await
    }

    async fn target_answering(app: axum::Router) -> Jiandaoyun {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let target = Target {
            api_key: Secret::new("k3y-k3y-k3y"),
            app_id: "app".into(),
            entry_id: "entry".into(),
            base_url: Url::parse(&format!("http://{addr}")).unwrap(),
            is_start_workflow: false,
            is_start_trigger: false,
            limits: Vec::new(),
            retry: RetryConfig::JIANDAOYUN,
            request_timeout: Duration::from_secs(60),
        };
        let http = crate::http::client(target.request_timeout).unwrap();
        Jiandaoyun::new(http, &target, Arc::new(CallStats::default()))
    }

    /// The endless answer stops at the cap, at once and without a retry: the
    /// error names the endpoint and the cap.
    #[tokio::test]
    async fn an_endless_widget_list_fails_at_the_cap_without_retrying() {
        let jdy = endless_target().await;
        let started = Instant::now();
        let err = jdy.widgets().await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5), "{err}");
        assert!(matches!(err, FormError::Protocol { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(WIDGETS), "{text}");
        assert!(text.contains("1 MiB cap"), "{text}");
        assert_eq!(jdy.stats.snapshot()[WIDGETS].calls, 1);
        assert_eq!(BODY_CAP, 1024 * 1024);
    }

    /// A create answered without end did reach the server: it may be stored, so
    /// it is ambiguous (the writer reconciles), never resent.
    #[tokio::test]
    async fn an_endless_create_answer_is_ambiguous() {
        let jdy = endless_target().await;
        let err = jdy
            .batch_create("t-1", &[], || async { Ok(()) })
            .await
            .unwrap_err();
        match &err {
            FormError::Ambiguous {
                reason, answered, ..
            } => {
                assert!(*answered);
                assert!(reason.contains("1 MiB cap"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(jdy.stats.snapshot()[BATCH_CREATE].calls, 1);
    }

    /// 17026 on a create: the id was used before, so the batch may be stored;
    /// the writer reads it back and sends under a new id (`FormError::IdSpent`).
    #[tokio::test]
    async fn a_create_under_a_used_transaction_id_is_id_spent() {
        let used = || async {
            let body = r#"{"code":17026,"msg":"transaction_id 已存在"}"#;
            (axum::http::StatusCode::BAD_REQUEST, body)
        };
        let jdy = target_answering(axum::Router::new().fallback(used)).await;
        let err = jdy
            .batch_create("t-1", &[], || async { Ok(()) })
            .await
            .unwrap_err();
        assert!(
            matches!(err, FormError::IdSpent { code: 17026, .. }),
            "{err:?}"
        );
        assert_eq!(jdy.stats.snapshot()[BATCH_CREATE].calls, 1);
    }
}
