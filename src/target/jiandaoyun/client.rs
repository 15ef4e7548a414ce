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
use crate::http::rate::Rate;
use crate::http::retry::RetryConfig;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;

use crate::http::call::{self, no_hook, Call, Decoded, Failure, OnStatus, Resend, Vendor};
use crate::http::codes::{self, Class};
use crate::http::pace::Pacer;
use crate::http::{endpoint_url, redirected, CallStats, Url, BODY_CAP};
use crate::secret::Secret;
use crate::target::{Created, FieldKind, FormError, Widget, WriteData};

use super::codes::TRANSACTION_EXISTS;
use super::wire;

pub const BATCH_CREATE: &str = "data/batch_create";
pub const UPDATE: &str = "data/update";
pub const LIST: &str = "data/list";
pub const WIDGETS: &str = "widget/list";
pub const BATCH_DELETE: &str = "data/batch_delete";
/// Records per batch call, and values per `in` filter (docs/vendors/jiandaoyun.md "Calls").
pub const MAX_BATCH: usize = 100;
pub const MAX_IN_VALUES: usize = 200;

/// attendsync's defaults (docs/vendors/jiandaoyun.md "Limits"): below the documented limits, since
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
    pacer: std::sync::Arc<Pacer>,
    retry: RetryConfig,
    request_timeout: Duration,
    stats: Arc<CallStats>,
}

/// The vendor and endpoint, as every error message names a call.
/// What a JSON value is, for a message (never its content: it may be personal).
fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "missing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn at(endpoint: &str) -> String {
    format!("Jiandaoyun {endpoint}")
}

/// What a failed call comes to for the writer. Which outcomes are ambiguous
/// (the request may have been carried out) is the wrapper's: no answer, a 5xx,
/// a 429, an unreadable 2xx, an answer over its cap.
fn finish<T>(endpoint: &str, r: Result<T, Failure<FormError>>) -> Result<T, FormError> {
    r.map_err(|f| match f {
        Failure::Api(f) => match f.class {
            Class::Fatal(hint) => FormError::Fatal {
                endpoint: at(endpoint),
                code: f.code,
                message: f.message,
                hint,
            },
            class => FormError::Rejected {
                endpoint: at(endpoint),
                code: f.code,
                message: f.message,
                class,
            },
        },
        Failure::Protocol(message) => FormError::Protocol {
            endpoint: at(endpoint),
            message,
        },
        Failure::Ambiguous { reason, answered } => FormError::Ambiguous {
            endpoint: at(endpoint),
            reason,
            answered,
        },
        Failure::Exhausted { attempts, last } => FormError::Exhausted {
            endpoint: at(endpoint),
            attempts,
            last,
        },
        Failure::Vendor(e) => e,
    })
}

/// Reads one answer: JSON on a 2xx is the result (a 2xx that is not JSON may
/// still have been carried out); JSON on any other status is a refusal with
/// its `code` and `msg`.
fn read_answer(status: StatusCode, bytes: &[u8]) -> Decoded<Value> {
    let parsed: Result<Value, _> = serde_json::from_slice(bytes);
    if status.is_success() {
        return match parsed {
            Ok(v) => Decoded::Done(v),
            Err(_) => Decoded::Transient(format!("HTTP {status} with a body that is not JSON")),
        };
    }
    match parsed {
        Ok(err) => Decoded::Code {
            code: err["code"].as_i64().unwrap_or(-1),
            message: err["msg"].as_str().unwrap_or("").to_string(),
        },
        Err(_) => Decoded::Protocol(format!("HTTP {status} with a body that is not JSON")),
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
            pacer: Pacer::shared(
                &target.pace_holder(),
                GLOBAL_LIMIT,
                DEFAULT_LIMITS,
                &target.limits,
            ),
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

    fn call_for(endpoint: &str, resend: Resend) -> Call<'_> {
        Call {
            endpoint,
            cap: BODY_CAP,
            table: codes::jiandaoyun,
            resend,
        }
    }

    /// The request of one attempt: the body encoded anew each time.
    fn request<B: Serialize + ?Sized>(&self, endpoint: &str, body: &B) -> reqwest::RequestBuilder {
        self.http
            .post(endpoint_url(
                &self.base_url,
                &["api/v5/app/entry", endpoint],
            ))
            .bearer_auth(self.api_key.expose())
            .timeout(self.request_timeout)
            .json(body)
    }

    async fn post<B: Serialize + Sync + ?Sized>(
        &self,
        endpoint: &str,
        body: &B,
        resend: Resend,
    ) -> Result<Value, FormError> {
        let r = call::call(
            self,
            &Self::call_for(endpoint, resend),
            |_| self.request(endpoint, body),
            |s, b: &mut Vec<u8>| read_answer(s, b),
            no_hook,
        )
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
            let page = self
                .list_page(filter, fields, MAX_BATCH, cursor.as_deref())
                .await?;
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

    /// One `data/list` call: up to `limit` records matching `filter` after `cursor`.
    async fn list_page(
        &self,
        filter: &Value,
        fields: &[String],
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Vec<Map<String, Value>>, FormError> {
        let mut body = self.body(json!({ "limit": limit, "filter": filter }));
        if !fields.is_empty() {
            body["fields"] = json!(fields);
        }
        if let Some(c) = cursor {
            body["data_id"] = json!(c);
        }
        let mut v = self.post(LIST, &body, Resend::Safe).await?;
        match v["data"].take() {
            Value::Array(rows) => Ok(rows
                .into_iter()
                .filter_map(|r| match r {
                    Value::Object(row) => Some(row),
                    _ => None,
                })
                .collect()),
            // Not "no records": read as such, one answer to the month check
            // would let every new key of the month be created unlooked-up.
            other => Err(FormError::Protocol {
                endpoint: at(LIST),
                message: format!(
                    "the answer holds no records list (`data` is {})",
                    json_kind(&other)
                ),
            }),
        }
    }

    /// Whether any record's fields equal the given values: one `data/list`
    /// call of one record, however many there are.
    pub async fn holds_any(
        &self,
        equal: &[(String, FieldKind, Value)],
        fields: &[String],
    ) -> Result<bool, FormError> {
        let page = self
            .list_page(&wire::fields_equal(equal), fields, 1, None)
            .await?;
        Ok(!page.is_empty())
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
        // Marked after the pacer's wait, right before the request leaves (the
        // wrapper's hook): the mark says until when this send may still commit.
        let mark = || async {
            before_send().await.map_err(|reason| FormError::NotMarked {
                endpoint: at(BATCH_CREATE),
                reason,
            })
        };
        let r = call::call(
            self,
            &Self::call_for(BATCH_CREATE, Resend::Never),
            |_| self.request(BATCH_CREATE, &body),
            |s, b: &mut Vec<u8>| read_answer(s, b),
            mark,
        )
        .await;
        let v = match r {
            // The id was used before, so the batch may be stored.
            Err(Failure::Api(f)) if f.code == TRANSACTION_EXISTS => {
                return Err(FormError::IdSpent {
                    endpoint: at(BATCH_CREATE),
                    code: f.code,
                    message: f.message,
                })
            }
            r => finish(BATCH_CREATE, r)?,
        };
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

impl Vendor for Jiandaoyun {
    type Error = FormError;
    const CODE: &'static str = "code";

    fn secrets(&self) -> Vec<&str> {
        vec![self.api_key.expose()]
    }

    fn retry_config(&self) -> &RetryConfig {
        &self.retry
    }

    fn stats(&self) -> Option<&CallStats> {
        Some(&self.stats)
    }

    fn pace(&self, endpoint: &str) -> impl std::future::Future<Output = ()> + Send {
        self.pacer.slot(endpoint)
    }

    fn pacer(&self) -> Option<&crate::http::pace::Pacer> {
        Some(&self.pacer)
    }

    /// A 429 is throttling, with the server's wait when it names one (capped);
    /// a 5xx is often a gateway's answer: the request may still run behind it.
    fn status(&self, status: StatusCode, headers: &HeaderMap) -> OnStatus {
        if status == StatusCode::TOO_MANY_REQUESTS {
            let retry_after = headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| Duration::from_secs(s).min(RETRY_AFTER_CAP));
            return OnStatus::Throttled {
                reason: "HTTP 429".into(),
                retry_after,
            };
        }
        if status.is_server_error() {
            return OnStatus::Transient(format!("HTTP {status}"));
        }
        match redirected(status) {
            Some(message) => OnStatus::Protocol(message),
            None => OnStatus::Read,
        }
    }

    fn body_lost(&self, _status: StatusCode, error: String) -> String {
        error
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

    /// An answer without a records list is not "no records": the month check
    /// and the look-ups fail naming the endpoint instead of finding nothing.
    #[tokio::test]
    async fn a_list_answer_without_records_is_a_protocol_error() {
        let no_data = || async { r#"{"msg":"ok"}"# };
        let jdy = target_answering(axum::Router::new().fallback(no_data)).await;
        let equal = [("month".to_string(), FieldKind::Text, json!("2026-10"))];
        let err = jdy.holds_any(&equal, &[]).await.unwrap_err();
        assert!(matches!(err, FormError::Protocol { .. }), "{err:?}");
        assert!(err.to_string().contains(LIST), "{err}");
        let err = jdy.rows_where(&equal, &[]).await.unwrap_err();
        assert!(err.to_string().contains("no records list"), "{err}");
    }
}
