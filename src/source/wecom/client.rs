//! The WeCom calls: every one through `http::call` (token, pacing, retries,
//! error table), answers read by `wire.rs`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::config::WecomSource;
use super::reports::Reports;
use super::wire::{read_answer, Answer, MonthAnswer, UserList};
use super::{
    APPROVAL_DETAIL, CONTACTS_IN_FLIGHT, DEFAULT_LIMITS, DEPARTMENTS, GETTOKEN, GLOBAL_LIMIT,
    MAX_USERS_PER_CALL, MONTHDATA, USERS, VENDOR,
};
use crate::http::call::{self, no_hook, Call, Failure, Resend, Tokens, Vendor};
use crate::http::codes::{self, Class};
use crate::http::pace::Pacer;
use crate::http::retry::RetryConfig;
use crate::http::token::TokenCache;
use crate::http::{endpoint_url, ApiFailure, CallStats, Url, BODY_CAP, REPORT_BODY_CAP};
use crate::roster::UserIds;
use crate::secret::Secret;
use crate::source::config::Scope;
use crate::source::{Pulled, SourceError};

/// The most an answer of `endpoint` may hold: monthdata carries a month of
/// detail for up to 100 employees; the rest are small (see [`BODY_CAP`]).
fn body_cap(endpoint: &str) -> usize {
    if endpoint == MONTHDATA {
        REPORT_BODY_CAP
    } else {
        BODY_CAP
    }
}

pub struct WecomClient {
    http: reqwest::Client,
    base_url: Url,
    corp_id: String,
    secret: Secret,
    tokens: TokenCache,
    pacer: std::sync::Arc<Pacer>,
    retry: RetryConfig,
    stats: Arc<CallStats>,
}

impl WecomClient {
    pub fn new(http: reqwest::Client, cfg: &WecomSource, stats: Arc<CallStats>) -> Self {
        WecomClient {
            http,
            base_url: cfg.base_url.clone(),
            corp_id: cfg.corp_id.clone(),
            secret: cfg.secret.clone(),
            tokens: TokenCache::new(),
            pacer: Pacer::shared(
                &cfg.app_identity(),
                GLOBAL_LIMIT,
                DEFAULT_LIMITS,
                &cfg.limits,
            ),
            retry: cfg.retry,
            stats,
        }
    }

    fn url(&self, endpoint: &str) -> Url {
        endpoint_url(&self.base_url, &["cgi-bin", endpoint])
    }

    fn api_error(&self, endpoint: &str, f: ApiFailure) -> SourceError {
        let hint = match f.class {
            Class::Fatal(hint) => hint,
            Class::Token => "fresh access tokens were rejected repeatedly; check `secret`",
            Class::Record => "an employee was rejected",
            Class::TooLarge => "the request was too large",
            _ => "WeCom rejected the call",
        };
        SourceError::Api {
            vendor: VENDOR,
            endpoint: endpoint.to_string(),
            code: f.code,
            message: f.message,
            hint,
        }
    }

    fn exhausted(&self, endpoint: &str, attempts: u32, last: String) -> SourceError {
        SourceError::Exhausted {
            vendor: VENDOR,
            endpoint: endpoint.to_string(),
            attempts,
            last,
        }
    }

    /// What a failed call comes to for the job.
    fn finish<T>(
        &self,
        endpoint: &str,
        r: Result<T, Failure<SourceError>>,
    ) -> Result<T, SourceError> {
        r.map_err(|f| match f {
            Failure::Api(f) => self.api_error(endpoint, f),
            Failure::Vendor(e) => e,
            Failure::Exhausted { attempts, last } => self.exhausted(endpoint, attempts, last),
            // WeCom calls are all resent safely, so nothing is ambiguous.
            Failure::Protocol(message)
            | Failure::Ambiguous {
                reason: message, ..
            } => SourceError::Protocol {
                vendor: VENDOR,
                endpoint: endpoint.to_string(),
                message,
            },
        })
    }

    /// A fresh access token from `gettoken`, the secret in its query: a token
    /// error there means the secret, so it is never retried.
    async fn new_token(&self) -> Result<(Secret, Duration), SourceError> {
        let at = Call {
            endpoint: GETTOKEN,
            cap: BODY_CAP,
            table: codes::wecom_gettoken,
            resend: Resend::Safe,
        };
        let request = |_: Option<&Secret>| {
            self.http.get(self.url(GETTOKEN)).query(&[
                ("corpid", self.corp_id.as_str()),
                ("corpsecret", self.secret.expose()),
            ])
        };
        let result = call::call(self, &at, request, read_answer::<Value>, no_hook).await;
        let body = self.finish(GETTOKEN, result)?;
        let token = body["access_token"].as_str().unwrap_or_default();
        if token.is_empty() {
            return Err(SourceError::Protocol {
                vendor: VENDOR,
                endpoint: GETTOKEN.into(),
                message: "no access_token in the answer".into(),
            });
        }
        let expires_in = body["expires_in"].as_u64().unwrap_or(7200);
        Ok((Secret::new(token), Duration::from_secs(expires_in)))
    }

    /// One API call with token, pacing and retries. Vendor errors that are not
    /// retryable come back as `Failure::Api` so callers can act on the class.
    async fn call<T: Answer>(
        &self,
        endpoint: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<T, Failure<SourceError>> {
        let at = Call {
            endpoint,
            cap: body_cap(endpoint),
            table: codes::wecom,
            resend: Resend::Safe,
        };
        let request = |token: Option<&Secret>| {
            // The query is written once, into the URL itself.
            let mut url = self.url(endpoint);
            url.query_pairs_mut()
                .append_pair("access_token", token.map_or("", Secret::expose))
                .extend_pairs(query.iter().map(|(k, v)| (k, v.as_str())));
            match body {
                Some(b) => self.http.post(url).json(b),
                None => self.http.get(url),
            }
        };
        call::call_with_token(self, &at, request, read_answer::<T>, no_hook).await
    }

    async fn call_ok<T: Answer>(
        &self,
        endpoint: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<T, SourceError> {
        let r = self.call(endpoint, query, body).await;
        self.finish(endpoint, r)
    }

    /// Fetches a token now, so bad credentials stop the job before any other work.
    pub async fn login(&self) -> Result<(), SourceError> {
        self.tokens.get(|| self.new_token()).await.map(|_| ())
    }

    /// The userids a job covers, sorted and de-duplicated (docs/vendors/wecom.md "Pulling a month", step 2).
    pub async fn employees(&self, scope: &Scope) -> Result<Vec<String>, SourceError> {
        let (tx, mut rx) = mpsc::channel(16);
        let discover = async {
            let tx = tx;
            self.discover(scope, &tx).await
        };
        // Discovery returns every userid; the batches it streams are not needed here.
        let drain = async { while rx.recv().await.is_some() {} };
        let (listed, ()) = tokio::join!(discover, drain);
        let mut all: Vec<String> = listed?.iter().map(str::to_string).collect();
        all.sort();
        Ok(all)
    }

    /// Sends the job's userids as they are found, each once: the configured
    /// `userids`, or the members of each department in turn. Pulling can start with
    /// the first department instead of waiting for the whole organisation. Stops
    /// quietly when the receiver is gone. Returns every userid sent, in order.
    pub async fn discover(
        &self,
        scope: &Scope,
        tx: &mpsc::Sender<Vec<String>>,
    ) -> Result<UserIds, SourceError> {
        if !scope.userids.is_empty() {
            let set: BTreeSet<String> = scope.userids.iter().cloned().collect();
            let all: UserIds = set.iter().collect();
            let _ = tx.send(set.into_iter().collect()).await;
            return Ok(all);
        }
        let mut seen = UserIds::new();
        let departments = self.departments(&scope.departments).await?;
        // A few departments are listed at once, answers taken in order: the pacer
        // keeps the pace, the overlap only hides each call's latency.
        let mut answers = futures::stream::iter(departments)
            .map(|id| async move {
                self.call_ok::<UserList>(USERS, &[("department_id", id.to_string())], None)
                    .await
            })
            .buffered(CONTACTS_IN_FLIGHT);
        // Handed on a chunk's worth at a time: the receiver's channel holds a
        // few sends, and a send per department (one or two people in an inner
        // one) would stop the listing a few people ahead of the pulls.
        let mut found = Vec::new();
        while let Some(list) = answers.next().await {
            found.extend(
                list?
                    .userlist
                    .into_iter()
                    .flatten()
                    .filter_map(|u| u.userid)
                    .filter(|u| !u.is_empty() && seen.insert(u)),
            );
            if found.len() >= MAX_USERS_PER_CALL
                && tx.send(std::mem::take(&mut found)).await.is_err()
            {
                return Ok(seen);
            }
        }
        if !found.is_empty() {
            let _ = tx.send(found).await;
        }
        Ok(seen)
    }

    /// Every department id under the starting ones (the whole visible scope when
    /// none are given), the leaves first. If an answer holds only direct children,
    /// walks down. Most people sit in the leaves of an organisation tree and few
    /// in the departments above them, so the first chunks fill after a few
    /// member lists rather than after every inner department's.
    async fn departments(&self, starts: &[u64]) -> Result<Vec<u64>, SourceError> {
        let mut seen = BTreeSet::new();
        let mut parents = BTreeSet::new();
        let mut queue: Vec<Option<u64>> = if starts.is_empty() {
            vec![None]
        } else {
            starts.iter().map(|d| Some(*d)).collect()
        };
        while let Some(start) = queue.pop() {
            let query: Vec<(&str, String)> =
                start.map(|id| ("id", id.to_string())).into_iter().collect();
            let body: Value = self.call_ok(DEPARTMENTS, &query, None).await?;
            let list: Vec<(u64, u64)> = body["department_id"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| Some((d["id"].as_u64()?, d["parentid"].as_u64().unwrap_or(0))))
                .collect();
            if let Some(id) = start {
                seen.insert(id);
            }
            let one_level =
                start.is_some_and(|s| list.iter().all(|(id, parent)| *parent == s || *id == s));
            for (id, parent) in list {
                if id != parent {
                    parents.insert(parent);
                }
                if seen.insert(id) && one_level {
                    queue.push(Some(id));
                }
            }
        }
        let (mut order, inner): (Vec<u64>, Vec<u64>) =
            seen.into_iter().partition(|id| !parents.contains(id));
        order.extend(inner);
        Ok(order)
    }

    /// One approval's detail (`oa/getapprovaldetail`), read by `approval.rs`.
    pub async fn approval_detail(&self, sp_no: &str) -> Result<Value, SourceError> {
        let body = json!({ "sp_no": sp_no });
        self.call_ok(APPROVAL_DETAIL, &[], Some(&body)).await
    }

    /// The month reports of up to 100 employees for the window `[start, end]`
    /// (both local day starts), left in their answers (`Pulled::unread`).
    /// Oversized chunks are halved; rejected userids are isolated by bisection
    /// and reported as failed.
    pub async fn month_data(
        &self,
        userids: &[String],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Pulled, SourceError> {
        let mut pulled = Pulled::default();
        let mut answers = Vec::new();
        let mut work: Vec<Vec<String>> = userids
            .chunks(MAX_USERS_PER_CALL)
            .map(|c| c.to_vec())
            .collect();
        while let Some(chunk) = work.pop() {
            let body = json!({
                "starttime": start.timestamp(),
                "endtime": end.timestamp(),
                "useridlist": chunk,
            });
            match self.call::<MonthAnswer>(MONTHDATA, &[], Some(&body)).await {
                Ok(answer) => answers.push(answer.text),
                Err(Failure::Api(f)) if start == end && f.code == 301024 => {
                    // The 1st of a month in progress: nothing to report yet.
                    tracing::info!("WeCom has no report yet for a window of zero days");
                }
                Err(Failure::Api(f))
                    if matches!(f.class, Class::TooLarge | Class::Record) && chunk.len() > 1 =>
                {
                    let (a, b) = chunk.split_at(chunk.len() / 2);
                    work.push(a.to_vec());
                    work.push(b.to_vec());
                }
                Err(Failure::Api(f)) if f.class == Class::Record => {
                    let reason = format!("WeCom {MONTHDATA}: errcode {} ({})", f.code, f.message);
                    pulled
                        .failed
                        .extend(chunk.into_iter().map(|u| (u, reason.clone())));
                }
                Err(e) => return self.finish(MONTHDATA, Err::<(), _>(e)).map(|()| pulled),
            }
        }
        pulled.unread = Some(Box::new(Reports {
            asked: userids.to_vec(),
            answers,
        }));
        Ok(pulled)
    }
}

impl Vendor for WecomClient {
    type Error = SourceError;
    const CODE: &'static str = "errcode";

    fn secrets(&self) -> Vec<&str> {
        vec![self.secret.expose()]
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
}

impl Tokens for WecomClient {
    fn tokens(&self) -> &TokenCache {
        &self.tokens
    }

    fn fetch_token(
        &self,
    ) -> impl std::future::Future<Output = Result<(Secret, Duration), SourceError>> + Send {
        self.new_token()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::Tree;
    use crate::source::config::Scope;
    use crate::source::ReadRecords;
    use axum::routing::{get, post};
    use axum::Router;
    use chrono::TimeZone;

    fn owners<'a>(read: &ReadRecords<'a>) -> Vec<&'a str> {
        read.found.iter().map(|(employee, _)| *employee).collect()
    }

    /// A WeCom stand-in whose monthdata answer is `monthdata`, word for word.
    async fn client_answering(monthdata: &'static str) -> WecomClient {
        client_with(post(move || async move { monthdata })).await
    }

    /// A WeCom stand-in whose monthdata endpoint is `monthdata`.
    async fn client_with(monthdata: axum::routing::MethodRouter) -> WecomClient {
        let app = Router::new()
            .route(
                "/cgi-bin/gettoken",
                get(|| async {
                    r#"{"errcode":0,"errmsg":"ok","access_token":"tok","expires_in":7200}"#
                }),
            )
            .route(&format!("/cgi-bin/{MONTHDATA}"), monthdata);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let cfg = WecomSource {
            corp_id: "corp".into(),
            secret: Secret::new("s3cret"),
            base_url: format!("http://{addr}").parse().expect("url"),
            scope: Scope::default(),
            limits: Vec::new(),
            retry: RetryConfig::WECOM,
        };
        let http = crate::http::client(Duration::from_secs(5)).expect("client");
        WecomClient::new(http, &cfg, Arc::new(CallStats::default()))
    }

    async fn pull(client: &WecomClient) -> Result<Pulled, SourceError> {
        let start = Utc.with_ymd_and_hms(2026, 9, 30, 16, 0, 0).unwrap();
        let end = Utc.with_ymd_and_hms(2026, 10, 30, 16, 0, 0).unwrap();
        client
            .month_data(&["u1".to_string(), "u2".to_string()], start, end)
            .await
    }

    #[tokio::test]
    async fn reports_are_matched_by_acctid_and_the_rest_are_absent() {
        let client = client_answering(
            r#"{"errcode":0,"errmsg":"ok","datas":[
                {"base_info":{"name":"张三","acctid":"u1"},"summary_info":{"work_days":21}},
                {"base_info":{"acctid":5}}]}"#,
        )
        .await;
        let pulled = pull(&client).await.expect("pulled");
        let read = pulled.read_unread().expect("readable");
        assert_eq!(owners(&read), ["u1"]);
        let report = read.found[0].1.to_value();
        assert_eq!(report["summary_info"]["work_days"], 21);
        // A report whose acctid is not text belongs to nobody.
        assert_eq!(read.absent.len(), 1);
    }

    #[tokio::test]
    async fn null_datas_means_no_reports() {
        let client = client_answering(r#"{"errcode":0,"errmsg":"ok","datas":null}"#).await;
        let pulled = pull(&client).await.expect("pulled");
        let read = pulled.read_unread().expect("readable");
        assert!(read.found.is_empty());
        assert_eq!(read.absent.len(), 2);
    }

    #[tokio::test]
    async fn an_answer_of_the_wrong_shape_is_a_protocol_error_naming_the_endpoint() {
        let client = client_answering(r#"{"errcode":0,"errmsg":"ok","datas":"s3cret"}"#).await;
        let pulled = pull(&client).await.expect("pulled");
        let err = pulled.read_unread().expect_err("refused");
        let text = err.to_string();
        assert!(
            matches!(err, SourceError::Protocol { .. })
                && text.contains(MONTHDATA)
                && text.contains("documented shape"),
            "{text}"
        );
        // serde quotes the value it choked on; a secret never reaches the message.
        assert!(!text.contains("s3cret"), "{text}");
    }

    /// A vendor's `errmsg` can forge a log line or clear a terminal: it reaches the
    /// error (and so logs, stdout and `runs.message`) escaped, on one line.
    #[tokio::test]
    async fn an_errmsg_with_line_breaks_and_escapes_is_escaped() {
        let client = client_answering(
            r#"{"errcode":60020,"errmsg":"not allow\n* * * * * root sh\u001b[2J s3cret"}"#,
        )
        .await;
        let text = pull(&client).await.expect_err("refused").to_string();
        assert!(
            text.contains(r"not allow\n* * * * * root sh\u{1b}[2J ***"),
            "{text}"
        );
        assert!(!text.contains('\n') && !text.contains('\x1b'), "{text}");
    }

    #[tokio::test]
    async fn a_redirect_is_a_protocol_error_and_is_not_retried() {
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = calls.clone();
        let client = client_with(post(move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async {
                (
                    axum::http::StatusCode::MOVED_PERMANENTLY,
                    [("location", "https://other.example/")],
                )
            }
        }))
        .await;
        let err = pull(&client).await.expect_err("refused");
        let text = err.to_string();
        assert!(
            matches!(err, SourceError::Protocol { .. })
                && text.contains(MONTHDATA)
                && text.contains("301 Moved Permanently")
                && text.contains("check `base_url`"),
            "{text}"
        );
        assert!(!text.contains("other.example"), "{text}");
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    /// The organisation is listed at the contacts quota, many departments at
    /// once, and never over it: with 20 ms of latency, ~100 departments and the
    /// documented 10,000/min, a run at the old 5/s took 20 s to list them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_directory_is_listed_concurrently_within_the_documented_quota() {
        let org = attendsync_sim::Org::generate(1500, 7);
        let config = attendsync_sim::wecom::WecomSimConfig {
            latency: Duration::from_millis(20),
            ..Default::default()
        };
        let sim = attendsync_sim::wecom::WecomSim::start(org, config.clone())
            .await
            .expect("simulator");
        let cfg = WecomSource {
            corp_id: config.corp_id.clone(),
            secret: Secret::new(&config.secret),
            base_url: sim.base_url().parse().expect("url"),
            scope: Scope::default(),
            limits: Vec::new(),
            retry: RetryConfig::WECOM,
        };
        let http = crate::http::client(Duration::from_secs(5)).expect("client");
        let client = WecomClient::new(http, &cfg, Arc::new(CallStats::default()));
        let listed = tokio::time::timeout(Duration::from_secs(60), client.employees(&cfg.scope))
            .await
            .expect("listed within a minute")
            .expect("listed");
        assert_eq!(listed.len(), 1500);
        assert_eq!(sim.quota_violations(), 0);
        let log = sim.call_log();
        let departments = sim.calls(USERS);
        assert!(departments >= 90, "{departments} member lists");
        let most = attendsync_sim::most_calls_within(&log, USERS, Duration::from_secs(1));
        assert!(
            most >= 30,
            "at most {most} member lists in any second: listed at the old 5/s"
        );
    }
}
