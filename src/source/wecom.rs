//! WeCom (企业微信): userids from the contacts APIs, then `getcheckin_monthdata`
//! in chunks of at most 100 users (docs/vendors/wecom.md "Pulling a month").

pub mod config;

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::config::Scope;
use super::{Pulled, SourceError};
use crate::http::call::{self, no_hook, Call, Decoded, Failure, Resend, Tokens, Vendor};
use crate::http::codes::{self, Class};
use crate::http::pace::Pacer;
use crate::http::rate::Rate;
use crate::http::retry::RetryConfig;
use crate::http::token::TokenCache;
use crate::http::{endpoint_url, ApiFailure, CallStats, Url, BODY_CAP, REPORT_BODY_CAP};
use crate::mapping::{Node, Tree};
use crate::roster::UserIds;
use crate::secret::Secret;
use config::WecomSource;

/// The most an answer of `endpoint` may hold: monthdata carries a month of
/// detail for up to 100 employees; the rest are small (see [`BODY_CAP`]).
fn body_cap(endpoint: &str) -> usize {
    if endpoint == MONTHDATA {
        REPORT_BODY_CAP
    } else {
        BODY_CAP
    }
}

const VENDOR: &str = "WeCom";
pub const MONTHDATA: &str = "checkin/getcheckin_monthdata";
pub const GETTOKEN: &str = "gettoken";
pub const DEPARTMENTS: &str = "department/simplelist";
pub const USERS: &str = "user/simplelist";
/// The most userids one monthdata call accepts.
pub const MAX_USERS_PER_CALL: usize = 100;
/// Department member lists requested at once while listing the organisation.
const CONTACTS_IN_FLIGHT: usize = 4;

/// Documented limits (docs/vendors/wecom.md "Limits"); a job's `[source.limits]` overrides them.
/// Report calls run one at a time per corp; department member lists a few at a
/// time (see [`CONTACTS_IN_FLIGHT`]). The global pace guards bursts.
const DEFAULT_LIMITS: &[(&str, Rate)] = &[
    (MONTHDATA, Rate::per_minute(60)),
    (GETTOKEN, Rate::per_second(2)),
    (DEPARTMENTS, Rate::per_second(5)),
    (USERS, Rate::per_second(5)),
];
const GLOBAL_LIMIT: Rate = Rate::per_second(20);

pub struct WecomClient {
    http: reqwest::Client,
    base_url: Url,
    corp_id: String,
    secret: Secret,
    tokens: TokenCache,
    pacer: Pacer,
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
            pacer: Pacer::new(GLOBAL_LIMIT, DEFAULT_LIMITS, &cfg.limits),
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
        while let Some(list) = answers.next().await {
            let fresh: Vec<String> = list?
                .userlist
                .into_iter()
                .flatten()
                .filter_map(|u| u.userid)
                .filter(|u| !u.is_empty() && seen.insert(u))
                .collect();
            if !fresh.is_empty() && tx.send(fresh).await.is_err() {
                return Ok(seen);
            }
        }
        Ok(seen)
    }

    /// Every department id under the starting ones (the whole visible scope when
    /// none are given). If an answer holds only direct children, walks down.
    async fn departments(&self, starts: &[u64]) -> Result<BTreeSet<u64>, SourceError> {
        let mut seen = BTreeSet::new();
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
            for (id, _) in list {
                if seen.insert(id) && one_level {
                    queue.push(Some(id));
                }
            }
        }
        Ok(seen)
    }

    /// The month reports of up to 100 employees for the window `[start, end]`
    /// (both local day starts), left in their answers (`Pulled::reports`).
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
        pulled.reports = Reports {
            asked: userids.to_vec(),
            answers,
        };
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
        self.pacer.ready(endpoint)
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

/// Reads one answer. A successful answer is read straight into `T`, which names
/// only the fields attendsync uses (the rest is skipped, not built): one pass
/// over the answer when it has the expected shape; an answer that does not is
/// read again for its errcode alone.
fn read_answer<T: Answer>(status: reqwest::StatusCode, bytes: &mut Vec<u8>) -> Decoded<T> {
    match T::read(bytes) {
        Ok(body) => match errcode(body.errcode()) {
            0 => Decoded::Done(body),
            code => Decoded::Code {
                code,
                message: body.errmsg().unwrap_or("").to_string(),
            },
        },
        Err(shape) => match serde_json::from_slice::<Outcome>(bytes) {
            Ok(o) if errcode(&o.errcode) != 0 => Decoded::Code {
                code: errcode(&o.errcode),
                message: o.errmsg.unwrap_or_default(),
            },
            // serde quotes the offending value: the wrapper redacts it like any vendor text.
            Ok(_) => Decoded::Protocol(format!(
                "the answer does not have the documented shape: {shape}"
            )),
            Err(e) => Decoded::Transient(format!(
                "HTTP {status}, the answer is not a JSON object: {e}"
            )),
        },
    }
}

/// An answer read into a type: says itself whether the call worked.
trait Answer: Sized {
    fn errcode(&self) -> &Value;
    fn errmsg(&self) -> Option<&str>;

    /// Reads an answer's text; may take it (`bytes` is left as it was on an error).
    fn read(bytes: &mut Vec<u8>) -> Result<Self, serde_json::Error>;
}

impl Answer for Value {
    fn errcode(&self) -> &Value {
        &self["errcode"]
    }

    fn errmsg(&self) -> Option<&str> {
        self["errmsg"].as_str()
    }

    fn read(bytes: &mut Vec<u8>) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// Typed answers carry `errcode` and `errmsg` next to their own fields, each
/// optional (absent or `null`: none).
macro_rules! answer {
    ($(#[$doc:meta])* struct $name:ident { $($field:ident: $ty:ty,)* }) => {
        $(#[$doc])*
        #[derive(Deserialize)]
        struct $name {
            #[serde(default)]
            errcode: Value,
            #[serde(default)]
            errmsg: Option<String>,
            $(#[serde(default)] $field: $ty,)*
        }

        impl Answer for $name {
            fn errcode(&self) -> &Value {
                &self.errcode
            }

            fn errmsg(&self) -> Option<&str> {
                self.errmsg.as_deref()
            }

            fn read(bytes: &mut Vec<u8>) -> Result<Self, serde_json::Error> {
                serde_json::from_slice(bytes)
            }
        }
    };
}

answer! {
    /// The part of every answer that says whether the call worked (read alone when
    /// the rest does not fit the expected type).
    struct Outcome {}
}

answer! {
    /// `user/simplelist`: only the userids are used.
    struct UserList {
        userlist: Option<Vec<ListedUser>>,
    }
}

#[derive(Deserialize)]
struct ListedUser {
    #[serde(default)]
    userid: Option<String>,
}

/// `getcheckin_monthdata`: whether it worked, and the answer's text, whose
/// reports are read once, where they are mapped ([`Reports::read`]).
struct MonthAnswer {
    errcode: Value,
    errmsg: Option<String>,
    text: Vec<u8>,
}

impl Answer for MonthAnswer {
    fn errcode(&self) -> &Value {
        &self.errcode
    }

    fn errmsg(&self) -> Option<&str> {
        self.errmsg.as_deref()
    }

    /// Reads the answer up to its `errcode` (WeCom sends it first) and keeps the
    /// text. serde_json reports the unread rest as an error, which is ignored here:
    /// the rest is read where the reports are mapped, and an answer that is not
    /// JSON at all fails this first step.
    fn read(bytes: &mut Vec<u8>) -> Result<Self, serde_json::Error> {
        let (mut errcode, mut errmsg) = (Value::Null, None);
        let mut reader = serde_json::Deserializer::from_slice(bytes);
        let head = Head {
            errcode: &mut errcode,
            errmsg: &mut errmsg,
        };
        match serde::Deserializer::deserialize_map(&mut reader, head) {
            Err(e) if errcode.is_null() => Err(e),
            _ => Ok(MonthAnswer {
                errcode,
                errmsg,
                text: std::mem::take(bytes),
            }),
        }
    }
}

/// Reads an answer's `errcode` and `errmsg`, stopping once it knows the call
/// worked (`errcode` 0) and skipping anything that comes before.
struct Head<'h> {
    errcode: &'h mut Value,
    errmsg: &'h mut Option<String>,
}

impl<'de> serde::de::Visitor<'de> for Head<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an answer object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match key.as_ref() {
                "errcode" => {
                    *self.errcode = map.next_value()?;
                    if errcode(self.errcode) == 0 {
                        return Ok(());
                    }
                }
                "errmsg" => *self.errmsg = map.next_value()?,
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// `getcheckin_monthdata` answers as they came, for the employees asked: each
/// report is read once, in place, where it is mapped, instead of being split out
/// of its answer first and read again.
#[derive(Debug, Default)]
pub struct Reports {
    asked: Vec<String>,
    answers: Vec<Vec<u8>>,
}

/// The reports of a [`Reports`], read.
#[derive(Debug, Default)]
pub struct ReadReports<'a> {
    /// Each employee's report, in the order they were asked for.
    pub found: Vec<(&'a str, Node<'a>)>,
    /// Employees asked for whose report is not in the answers (left, out of
    /// scope, no rule).
    pub absent: Vec<&'a str>,
}

#[derive(Deserialize)]
struct Datas<'a> {
    #[serde(borrow, default)]
    datas: Option<Vec<Node<'a>>>,
}

impl Reports {
    /// Finds each asked employee's report by the `acctid` of its `base_info`; a
    /// report without one is nobody's. Employees in `failed` are neither found
    /// nor absent.
    pub fn read(&self, failed: &[(String, String)]) -> Result<ReadReports<'_>, SourceError> {
        let mut by_owner: HashMap<Cow<'_, str>, Node<'_>> = HashMap::new();
        for answer in &self.answers {
            // Checked as UTF-8 in one pass, so that reading it does not check
            // each text again.
            let text = std::str::from_utf8(answer).map_err(|e| {
                unreadable_answer(format!(
                    "the answer is not UTF-8 text (at byte {})",
                    e.valid_up_to()
                ))
            })?;
            let datas = serde_json::from_str::<Datas>(text).map_err(unreadable)?;
            for report in datas.datas.into_iter().flatten() {
                if let Some(Node::Text(owner)) =
                    report.member("base_info").and_then(|b| b.member("acctid"))
                {
                    by_owner.insert(owner.clone(), report);
                }
            }
        }
        let failed: HashSet<&str> = failed.iter().map(|(u, _)| u.as_str()).collect();
        let mut read = ReadReports::default();
        for id in &self.asked {
            match by_owner.remove(id.as_str()) {
                Some(report) => read.found.push((id, report)),
                None if failed.contains(id.as_str()) => {}
                None => read.absent.push(id),
            }
        }
        Ok(read)
    }
}

/// Why a report answer could not be read, without quoting it: serde_json's
/// text would show the value it choked on, which could be anything.
fn unreadable(e: serde_json::Error) -> SourceError {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Data => "the answer does not have the documented shape (`datas` is not a list)",
        Category::Syntax | Category::Eof | Category::Io => "the answer is not valid JSON",
    };
    unreadable_answer(format!(
        "{what} at line {}, column {}",
        e.line(),
        e.column()
    ))
}

/// A `getcheckin_monthdata` answer that could not be read, and why.
fn unreadable_answer(message: String) -> SourceError {
    SourceError::Protocol {
        vendor: VENDOR,
        endpoint: MONTHDATA.into(),
        message,
    }
}

/// `errcode` as a number; some answers carry it as a string; absent means 0.
fn errcode(errcode: &Value) -> i64 {
    match errcode {
        Value::Number(n) => n.as_i64().unwrap_or(-1),
        Value::String(s) => s.trim().parse().unwrap_or(-1),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::config::Scope;
    use axum::routing::{get, post};
    use axum::Router;
    use chrono::TimeZone;

    fn reports(asked: &[&str], answers: &[&str]) -> Reports {
        Reports {
            asked: asked.iter().map(|a| a.to_string()).collect(),
            answers: answers.iter().map(|a| a.as_bytes().to_vec()).collect(),
        }
    }

    fn owners<'a>(read: &ReadReports<'a>) -> Vec<&'a str> {
        read.found.iter().map(|(employee, _)| *employee).collect()
    }

    #[test]
    fn a_report_belongs_to_the_acctid_of_its_base_info_wherever_that_is() {
        let first =
            r#"{"base_info":{"acctid":"zhangsan","name":"张三"},"summary_info":{"work_days":21}}"#;
        let later = r#"{"summary_info":{"acctid":"u3","x":[1,{"y":null}]},"base_info":{"name":"李\"四","acctid":"li\"si"},"z":1}"#;
        let others = [
            r#"{"summary_info":{"acctid":"u4"}}"#,
            r#"{"base_info":{"acctid":7}}"#,
            r#"{"base_info":{}}"#,
            "[]",
        ]
        .join(",");
        let answer_1 = format!(r#"{{"errcode":0,"datas":[{first},{others}]}}"#);
        let answer_2 = format!(r#"{{"datas":[{later}],"errcode":0}}"#);
        let asked = ["li\"si", "u3", "zhangsan", "u4"];
        let r = reports(&asked, &[&answer_1, &answer_2]);
        let read = r.read(&[]).expect("readable");
        // In the order asked; nested look-alikes, numbers and missing ids are nobody's.
        assert_eq!(owners(&read), ["li\"si", "zhangsan"]);
        assert_eq!(read.absent.len(), 2);
        let work_days = read.found[1]
            .1
            .member("summary_info")
            .and_then(|s| s.member("work_days"));
        assert_eq!(work_days.map(Tree::to_value), Some(json!(21)));
    }

    #[test]
    fn the_last_report_of_an_owner_counts_and_rejected_employees_are_not_absent() {
        let answer = r#"{"errcode":0,"datas":[
            {"base_info":{"acctid":"u1"},"n":1},
            {"base_info":{"acctid":"u1"},"n":2}]}"#;
        let r = reports(&["u1", "u2", "u3"], &[answer]);
        let failed = [("u2".to_string(), "errcode 301025".to_string())];
        let read = r.read(&failed).expect("readable");
        assert_eq!(owners(&read), ["u1"]);
        assert_eq!(
            read.found[0].1.member("n").map(Tree::to_value),
            Some(json!(2))
        );
        assert_eq!(read.absent.len(), 1);
    }

    #[test]
    fn an_answer_that_is_not_utf8_or_not_json_is_a_protocol_error_that_says_where() {
        let mut bytes = br#"{"errcode":0,"datas":[{"base_info":{"acctid":"u"#.to_vec();
        bytes.extend_from_slice(&[0xff, 0xfe]);
        bytes.extend_from_slice(br#""}}]}"#);
        let r = Reports {
            asked: vec!["u1".into()],
            answers: vec![bytes],
        };
        let err = r.read(&[]).expect_err("not UTF-8").to_string();
        assert!(err.contains("not UTF-8 text (at byte 47)"), "{err}");
        assert!(err.contains(MONTHDATA), "{err}");
        let r = reports(&["u1"], &[r#"{"errcode":0,"datas":[{"base_info":"#]);
        let err = r.read(&[]).expect_err("cut short").to_string();
        assert!(err.contains("not valid JSON at line 1"), "{err}");
    }

    #[test]
    fn an_answer_is_read_up_to_its_errcode() {
        let mut ok =
            br#"{"errcode":0,"errmsg":"ok","datas":[{"base_info":{"acctid":"u1"}}]}"#.to_vec();
        let answer = MonthAnswer::read(&mut ok).expect("read");
        assert_eq!(errcode(answer.errcode()), 0);
        assert!(ok.is_empty(), "the text is kept with the answer");
        // errcode after the reports, and an error with its message after it.
        let mut late = br#"{"datas":[1,2],"errmsg":"no such user","errcode":301002}"#.to_vec();
        let answer = MonthAnswer::read(&mut late).expect("read");
        assert_eq!(errcode(answer.errcode()), 301002);
        assert_eq!(answer.errmsg(), Some("no such user"));
        let mut late =
            br#"{"errcode":"60020","errmsg":"not allow to access from your ip"}"#.to_vec();
        let answer = MonthAnswer::read(&mut late).expect("read");
        assert_eq!(errcode(answer.errcode()), 60020);
        assert_eq!(answer.errmsg(), Some("not allow to access from your ip"));
        // Not JSON: an error, and the text stays for the caller's second look.
        let mut html = b"<html>gateway</html>".to_vec();
        assert!(MonthAnswer::read(&mut html).is_err());
        assert_eq!(html, b"<html>gateway</html>");
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
        let read = pulled.reports.read(&pulled.failed).expect("readable");
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
        let read = pulled.reports.read(&pulled.failed).expect("readable");
        assert!(read.found.is_empty());
        assert_eq!(read.absent.len(), 2);
    }

    #[tokio::test]
    async fn an_answer_of_the_wrong_shape_is_a_protocol_error_naming_the_endpoint() {
        let client = client_answering(r#"{"errcode":0,"errmsg":"ok","datas":"s3cret"}"#).await;
        let pulled = pull(&client).await.expect("pulled");
        let err = pulled.reports.read(&pulled.failed).expect_err("refused");
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
}
