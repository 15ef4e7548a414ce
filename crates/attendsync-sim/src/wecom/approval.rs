//! Approvals in the WeCom simulator (docs/vendors/events.md "WeCom approval
//! callbacks", docs/vendors/wecom.md "Approval details"): approvals kept with
//! the simulator, `oa/getapprovaldetail` answering their documented shape
//! (or 301055 while the app is not allowed), and an [`ApprovalPusher`] that
//! calls a callback URL as WeCom does: the GET URL check, then encrypted XML
//! `sys_approval_change` events, retried only on a timeout or network failure.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use attendsync_crypto::MsgCrypt;
use axum::body::Bytes;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde_json::{json, Map, Value};

use super::{Answer, Shared, WecomSim, WecomState};

pub(super) const APPROVAL_DETAIL: &str = "oa/getapprovaldetail";

/// What an approval is for: a leave is a `Vacation` control, a trip, an
/// outing and overtime an `Attendance` control of that `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalKind {
    Leave,
    Trip,
    Outing,
    Overtime,
}

impl ApprovalKind {
    fn name(self) -> &'static str {
        match self {
            ApprovalKind::Leave => "请假",
            ApprovalKind::Trip => "出差",
            ApprovalKind::Outing => "外出",
            ApprovalKind::Overtime => "加班",
        }
    }

    /// `attendance.type`: 1 leave, 3 trip, 4 outing, 5 overtime.
    fn code(self) -> u8 {
        match self {
            ApprovalKind::Leave => 1,
            ApprovalKind::Trip => 3,
            ApprovalKind::Outing => 4,
            ApprovalKind::Overtime => 5,
        }
    }
}

/// `sp_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpStatus {
    Pending = 1,
    Approved = 2,
    Rejected = 3,
    Withdrawn = 4,
    RevokedAfterApproval = 6,
    Deleted = 7,
}

struct Approval {
    applicant: String,
    kind: ApprovalKind,
    begin: DateTime<Utc>,
    end: DateTime<Utc>,
    status: SpStatus,
    apply_time: i64,
}

/// The simulator's approvals, in its state.
#[derive(Default)]
pub(super) struct Approvals {
    list: BTreeMap<String, Approval>,
    /// Answer 301055 "no approval auth", as for an app not listed under the
    /// approval app's 可调用接口的应用.
    forbidden: bool,
}

impl WecomSim {
    /// Adds an approval by `applicant` from `begin` to `end`; returns its
    /// `sp_no` (the day it was added and a sequence number, as WeCom writes them).
    pub fn add_approval(
        &self,
        applicant: &str,
        kind: ApprovalKind,
        begin: DateTime<Utc>,
        end: DateTime<Utc>,
        status: SpStatus,
    ) -> String {
        let mut state = self.state();
        let approvals = &mut state.approvals;
        let day = begin.with_timezone(&self.shared.timezone).format("%Y%m%d");
        let sp_no = format!("{day}{:04}", approvals.list.len() + 1);
        approvals.list.insert(
            sp_no.clone(),
            Approval {
                applicant: applicant.to_owned(),
                kind,
                begin,
                end,
                status,
                apply_time: begin.timestamp() - 86_400,
            },
        );
        sp_no
    }

    /// Changes an approval's status (approved, revoked, …); false if unknown.
    pub fn set_approval_status(&self, sp_no: &str, status: SpStatus) -> bool {
        match self.state().approvals.list.get_mut(sp_no) {
            Some(approval) => {
                approval.status = status;
                true
            }
            None => false,
        }
    }

    /// `getapprovaldetail` answers 301055 while on.
    pub fn set_approval_forbidden(&self, on: bool) {
        self.state().approvals.forbidden = on;
    }
}

/// `oa/getapprovaldetail`: `{"sp_no": "…"}` → `{"info": {…}}`.
pub(super) fn detail(shared: &Shared, state: &mut WecomState, body: &Bytes, ip: &str) -> Answer {
    let seed = shared.seed;
    if state.approvals.forbidden {
        return state.error(seed, 301055, "no approval auth", ip);
    }
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let sp_no = match &request["sp_no"] {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    let Some(approval) = state.approvals.list.get(&sp_no) else {
        return state.error(seed, 301025, "get approval param error", ip);
    };
    let info = info(&sp_no, approval, shared.timezone);
    let mut fields = Map::new();
    fields.insert("info".into(), info);
    Answer::ok(fields)
}

/// Local midnight of `day`, in Unix seconds (the earliest, around a DST change).
fn midnight(day: NaiveDate, tz: chrono_tz::Tz) -> i64 {
    let start = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    tz.from_local_datetime(&start)
        .earliest()
        .map_or(start.and_utc().timestamp(), |t| t.timestamp())
}

/// One `day_items` element per local day the approval covers, with the
/// seconds of it that it covers.
fn day_items(approval: &Approval, tz: chrono_tz::Tz) -> Vec<Value> {
    let (begin, end) = (approval.begin.timestamp(), approval.end.timestamp());
    let first = approval.begin.with_timezone(&tz).date_naive();
    let last = approval.end.with_timezone(&tz).date_naive();
    first
        .iter_days()
        .take_while(|d| *d <= last)
        .take(400)
        .map(|day| {
            let start = midnight(day, tz);
            let next = day.succ_opt().map_or(start + 86_400, |n| midnight(n, tz));
            let covered = end.min(next) - begin.max(start);
            json!({"daytime": start, "duration": covered.max(0)})
        })
        .collect()
}

fn info(sp_no: &str, approval: &Approval, tz: chrono_tz::Tz) -> Value {
    let (begin, end) = (approval.begin.timestamp(), approval.end.timestamp());
    let attendance = json!({
        "date_range": {"type": "hour", "new_begin": begin, "new_end": end, "new_duration": end - begin},
        "type": approval.kind.code(),
        "slice_info": {"day_items": day_items(approval, tz), "duration": end - begin, "state": 1},
    });
    let content = match approval.kind {
        ApprovalKind::Leave => json!({
            "control": "Vacation",
            "id": "vacation-1563793073898",
            "title": [{"text": "请假类型", "lang": "zh_CN"}],
            "value": {"vacation": {
                "selector": {"type": "single", "options": [{"key": "1", "value": [{"text": "年假", "lang": "zh_CN"}]}]},
                "attendance": attendance,
            }},
        }),
        _ => json!({
            "control": "Attendance",
            "id": "smart-time-1563793073899",
            "title": [{"text": approval.kind.name(), "lang": "zh_CN"}],
            "value": {"attendance": attendance},
        }),
    };
    json!({
        "sp_no": sp_no,
        "sp_name": approval.kind.name(),
        "sp_status": approval.status as u8,
        "template_id": "C4NxJWjh8xKVw4bWnE4ri2Ehm8yMpYC3m7Wp8e5Rt",
        "apply_time": approval.apply_time,
        "applyer": {"userid": approval.applicant, "partyid": "1"},
        "sp_record": [],
        "notifyer": [],
        "apply_data": {"contents": [content]},
        "comments": [],
    })
}

/// What one request of the pusher came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The receiver's HTTP status; `None` when the request failed (connection
    /// refused or reset, no answer within the timeout).
    pub status: Option<u16>,
    /// The body answered (empty when none).
    pub body: String,
    /// Why the request failed, when it did.
    pub error: Option<String>,
}

/// Calls a callback URL as WeCom does (docs/vendors/events.md "WeCom approval
/// callbacks"): the URL check, then signed, encrypted XML events. A request
/// that timed out or failed on the network is sent again, up to `retries`
/// times; any HTTP answer, a 4xx or 5xx included, ends it. Every attempt is
/// kept ([`ApprovalPusher::deliveries`]).
pub struct ApprovalPusher {
    crypt: MsgCrypt,
    corp_id: String,
    /// `host:port` and the path, from an `http://` URL.
    host: String,
    path: String,
    pub timeout: Duration,
    pub retries: u32,
    deliveries: Mutex<Vec<Delivery>>,
    nonces: Mutex<u64>,
}

impl ApprovalPusher {
    /// `target` is the receiver's `http://host:port/path`; the secrets are
    /// the callback's token and EncodingAESKey, and the corp id. `None` for a
    /// key that is not 43 letters and digits or a URL that is not `http://`.
    pub fn new(token: &str, aes_key: &str, corp_id: &str, target: &str) -> Option<ApprovalPusher> {
        let rest = target.strip_prefix("http://")?;
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        Some(ApprovalPusher {
            crypt: MsgCrypt::new(token, aes_key, corp_id).ok()?,
            corp_id: corp_id.to_owned(),
            host: host.to_owned(),
            path: path.to_owned(),
            timeout: Duration::from_secs(5),
            retries: 3,
            deliveries: Mutex::new(Vec::new()),
            nonces: Mutex::new(0),
        })
    }

    /// Every request sent so far and what it came to, in order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn nonce(&self) -> String {
        let mut n = self.nonces.lock().unwrap_or_else(|e| e.into_inner());
        *n += 1;
        format!("{}", 1_372_623_149 + *n)
    }

    /// The signed query of a request whose encrypted text is `encrypt`.
    fn query(&self, encrypt: &str) -> String {
        let timestamp = Utc::now().timestamp().to_string();
        let nonce = self.nonce();
        let signature = self.crypt.sign(&timestamp, &nonce, encrypt);
        format!("msg_signature={signature}&timestamp={timestamp}&nonce={nonce}")
    }

    /// The URL check: a GET with an encrypted `echostr`. Returns the last
    /// delivery and whether its body is the plaintext, exactly.
    pub async fn verify_url(&self) -> (Delivery, bool) {
        let plain = format!(
            "{}",
            1_616_140_317_555_161_061u64 + u64::from(rand::random::<u16>())
        );
        let echostr = self.crypt.encrypt(&plain);
        let query = format!("{}&echostr={}", self.query(&echostr), percent(&echostr));
        let delivery = self.send("GET", &query, "").await;
        let echoed = delivery.status == Some(200) && delivery.body == plain;
        (delivery, echoed)
    }

    /// A `sys_approval_change` event for `sp_no` (its applicant, status and
    /// `StatuChangeEvent`), created at `create_time`: the last delivery.
    pub async fn push_approval(
        &self,
        sp_no: &str,
        applicant: &str,
        status: SpStatus,
        change_event: u8,
        create_time: i64,
    ) -> Delivery {
        let message = format!(
            "<xml><ToUserName><![CDATA[{corp}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>\
             <CreateTime>{create_time}</CreateTime><MsgType><![CDATA[event]]></MsgType>\
             <Event><![CDATA[sys_approval_change]]></Event><AgentID>3010040</AgentID>\
             <ApprovalInfo><SpNo>{sp_no}</SpNo><SpName><![CDATA[请假]]></SpName><SpStatus>{status}</SpStatus>\
             <TemplateId><![CDATA[C4NxJWjh8xKVw4bWnE4ri2Ehm8yMpYC3m7Wp8e5Rt]]></TemplateId>\
             <ApplyTime>{create_time}</ApplyTime><Applyer><UserId><![CDATA[{applicant}]]></UserId>\
             <Party><![CDATA[1]]></Party></Applyer><StatuChangeEvent>{change_event}</StatuChangeEvent>\
             </ApprovalInfo></xml>",
            corp = self.corp_id,
            status = status as u8,
        );
        self.push_message(&message).await
    }

    /// Any decrypted message, encrypted, signed and POSTed: the last delivery.
    pub async fn push_message(&self, message: &str) -> Delivery {
        let encrypt = self.crypt.encrypt(message);
        let body = format!(
            "<xml><ToUserName><![CDATA[{}]]></ToUserName><AgentID><![CDATA[3010040]]></AgentID>\
             <Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>",
            self.corp_id
        );
        let query = self.query(&encrypt);
        self.send("POST", &query, &body).await
    }

    /// One request, sent again after a timeout or a network failure only.
    async fn send(&self, method: &str, query: &str, body: &str) -> Delivery {
        let mut attempt = 0;
        loop {
            let delivery =
                match tokio::time::timeout(self.timeout, self.request(method, query, body)).await {
                    Ok(Ok((status, body))) => Delivery {
                        status: Some(status),
                        body,
                        error: None,
                    },
                    Ok(Err(e)) => Delivery {
                        status: None,
                        body: String::new(),
                        error: Some(e),
                    },
                    Err(_) => Delivery {
                        status: None,
                        body: String::new(),
                        error: Some("timed out".into()),
                    },
                };
            self.deliveries
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(delivery.clone());
            if delivery.status.is_some() || attempt >= self.retries {
                return delivery;
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// HTTP/1.1 over a fresh connection, closed after the answer: the status
    /// and the body (a `Content-Length` body; the receivers under test are axum).
    async fn request(
        &self,
        method: &str,
        query: &str,
        body: &str,
    ) -> Result<(u16, String), String> {
        let stream = tokio::net::TcpStream::connect(&self.host)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let head = format!(
            "{method} {}?{query} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.path,
            self.host,
            body.len(),
        );
        write_all(&stream, head.as_bytes()).await?;
        let answer = read_to_end(&stream, 1 << 20).await?;
        parse_answer(&answer).ok_or_else(|| "not an HTTP answer".to_owned())
    }
}

async fn write_all(stream: &tokio::net::TcpStream, mut data: &[u8]) -> Result<(), String> {
    while !data.is_empty() {
        stream.writable().await.map_err(|e| format!("write: {e}"))?;
        match stream.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(format!("write: {e}")),
        }
    }
    Ok(())
}

async fn read_to_end(stream: &tokio::net::TcpStream, cap: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        stream.readable().await.map_err(|e| format!("read: {e}"))?;
        match stream.try_read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) if out.len() + n > cap => return Err("answer too large".into()),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

/// The status and the body of an HTTP/1.1 answer.
fn parse_answer(answer: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(answer);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let length = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    });
    let body = match length {
        Some(n) => body.get(..n).unwrap_or(body),
        None => body,
    };
    Some((status, body.to_owned()))
}

/// Percent-encoding of a query value: everything but the unreserved characters.
fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests;
