//! The comparison row: a plain sequential client, about what a 300-line script
//! does. It fetches a token once, lists the departments and their members one
//! call at a time, pulls the monthly report one call at a time, and writes
//! `data/batch_create` of 100 one call at a time, with no look-ups and nothing
//! kept between runs. Its pacing is the simple kind: each call waits until one
//! quota interval (period ÷ calls, no margin) has passed since the previous call
//! to the same endpoint (and to the vendor, where the vendor has a total quota),
//! and a throttling answer is slept off (one second, or the vendor's own wait)
//! and the call sent again. It runs in the benchmark's process, against the same
//! simulators and the same organisation as attendsync, after attendsync's runs.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use attendsync_sim::GLOBAL_LIMIT;
use serde_json::{json, Value};

use crate::calls::Quota;
use crate::run::{Bench, RunResult};
use crate::{Kind, API_KEY, APP_ID, APP_KEY, APP_SECRET, CORP_ID, MONTH, SECRET};

/// Tries per call, the first included, before the script gives up.
const TRIES: u32 = 10;

/// Simple pacing: the time of the last call per endpoint and per vendor.
struct Pace {
    intervals: HashMap<String, Duration>,
    last: HashMap<String, Instant>,
}

impl Pace {
    fn new(quotas: &[Quota]) -> Pace {
        Pace {
            intervals: quotas
                .iter()
                .map(|(e, calls, period)| (e.clone(), *period / (*calls).max(1)))
                .collect(),
            last: HashMap::new(),
        }
    }

    async fn wait(&mut self, endpoint: &str) {
        for key in [endpoint, GLOBAL_LIMIT] {
            if let (Some(interval), Some(last)) = (self.intervals.get(key), self.last.get(key)) {
                tokio::time::sleep_until((*last + *interval).into()).await;
            }
        }
        let now = Instant::now();
        self.last.insert(endpoint.to_owned(), now);
        self.last.insert(GLOBAL_LIMIT.to_owned(), now);
    }
}

/// The script: one HTTP client, one pace per vendor, the throttling answers met.
struct Script {
    http: reqwest::Client,
    source: Pace,
    target: Pace,
    throttled: u64,
}

/// What one call is: where it goes, and whether its answer says "throttled".
enum Req {
    Get(String),
    Post(String, Value),
}

/// A throttling answer, and how long to sleep it off.
fn throttled(kind: Option<Kind>, status: u16, body: &Value) -> Option<Duration> {
    let code = body["errcode"].as_i64().unwrap_or(0);
    match kind {
        Some(Kind::Wecom) if code == 45009 => Some(Duration::from_secs(1)),
        Some(Kind::Dingtalk) if code == 90018 || code == 88 => Some(Duration::from_secs(1)),
        // DingTalk's IP ban answer (docs/vendors/dingtalk.md).
        Some(Kind::Dingtalk) if body["status"] == 1111 || status == 403 => {
            Some(Duration::from_secs(5))
        }
        None if status == 429 => Some(Duration::from_secs(1)),
        _ => None,
    }
}

impl Script {
    /// Sends one call, paced, until it is not throttled; the answer's JSON.
    async fn call(
        &mut self,
        kind: Option<Kind>,
        endpoint: &str,
        req: &Req,
    ) -> Result<Value, String> {
        for _ in 0..TRIES {
            match kind {
                Some(_) => self.source.wait(endpoint).await,
                None => self.target.wait(endpoint).await,
            }
            let builder = match req {
                Req::Get(url) => self.http.get(url),
                Req::Post(url, body) => self.http.post(url).json(body),
            };
            let builder = match kind {
                None => builder.bearer_auth(API_KEY),
                Some(_) => builder,
            };
            let resp = builder
                .send()
                .await
                .map_err(|e| format!("{endpoint}: {e}"))?;
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            if let Some(wait) = throttled(kind, status, &body) {
                self.throttled += 1;
                tokio::time::sleep(wait).await;
                continue;
            }
            let code = body["errcode"].as_i64().unwrap_or(0);
            if status != 200 || code != 0 {
                return Err(format!("{endpoint}: HTTP {status}, {body}"));
            }
            return Ok(body);
        }
        Err(format!("{endpoint}: throttled {TRIES} times"))
    }
}

/// The month's first and last day.
fn month_days() -> (chrono::NaiveDate, chrono::NaiveDate) {
    let first = chrono::NaiveDate::parse_from_str(&format!("{MONTH}-01"), "%Y-%m-%d")
        .unwrap_or_else(|e| panic!("month {MONTH}: {e}"));
    let next = first
        .checked_add_months(chrono::Months::new(1))
        .unwrap_or_else(|| panic!("month after {MONTH}"));
    (first, next.pred_opt().unwrap_or(first))
}

/// Midnight of a day in Asia/Shanghai (UTC+8, no DST), as a Unix time.
fn shanghai_midnight(day: chrono::NaiveDate) -> i64 {
    day.and_hms_opt(0, 0, 0)
        .map_or(0, |t| t.and_utc().timestamp())
        - 8 * 3600
}

impl Script {
    /// WeCom: token, departments, members one department at a time, then the
    /// month's reports 100 employees a call. Records: (userid, name, a number).
    async fn wecom(&mut self, base: &str) -> Result<Vec<Value>, String> {
        let url = |e: &str| format!("{base}/cgi-bin/{e}");
        let k = Some(Kind::Wecom);
        let token = self
            .call(
                k,
                "gettoken",
                &Req::Get(format!(
                    "{}?corpid={CORP_ID}&corpsecret={SECRET}",
                    url("gettoken")
                )),
            )
            .await?["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let departments = self
            .call(
                k,
                "department/simplelist",
                &Req::Get(format!(
                    "{}?access_token={token}",
                    url("department/simplelist")
                )),
            )
            .await?;
        let mut users = BTreeSet::new();
        for d in departments["department_id"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let q = format!(
                "{}?access_token={token}&department_id={}",
                url("user/simplelist"),
                d["id"]
            );
            let members = self.call(k, "user/simplelist", &Req::Get(q)).await?;
            for u in members["userlist"].as_array().into_iter().flatten() {
                users.insert(u["userid"].as_str().unwrap_or_default().to_owned());
            }
        }
        let (first, last) = month_days();
        let users: Vec<String> = users.into_iter().collect();
        let mut records = Vec::new();
        for ids in users.chunks(100) {
            let body = json!({"starttime": shanghai_midnight(first), "endtime": shanghai_midnight(last), "useridlist": ids});
            let q = format!(
                "{}?access_token={token}",
                url("checkin/getcheckin_monthdata")
            );
            let answer = self
                .call(k, "checkin/getcheckin_monthdata", &Req::Post(q, body))
                .await?;
            for r in answer["datas"].as_array().into_iter().flatten() {
                let b = &r["base_info"];
                records.push(record(
                    &b["acctid"],
                    &b["name"],
                    "work_days",
                    &r["summary_info"]["work_days"],
                ));
            }
        }
        Ok(records)
    }

    /// DingTalk: token, the department tree one `listsub` at a time, each
    /// department's members page by page, the report columns, then per
    /// employee one `getcolumnval` and one `getleavetimebynames`.
    async fn dingtalk(&mut self, base: &str) -> Result<Vec<Value>, String> {
        let k = Some(Kind::Dingtalk);
        let q = format!("{base}/gettoken?appkey={APP_KEY}&appsecret={APP_SECRET}");
        let token = self.call(k, "gettoken", &Req::Get(q)).await?["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let url = |e: &str| format!("{base}/{e}?access_token={token}");
        let (mut queue, mut departments) = (vec![1u64], Vec::new());
        while let Some(id) = queue.pop() {
            departments.push(id);
            let e = "topapi/v2/department/listsub";
            let subs = self
                .call(k, e, &Req::Post(url(e), json!({"dept_id": id})))
                .await?;
            queue.extend(
                subs["result"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|d| d["dept_id"].as_u64()),
            );
        }
        let mut users: HashMap<String, String> = HashMap::new();
        for dept in departments {
            let mut cursor = 0;
            loop {
                let e = "topapi/v2/user/list";
                let body = json!({"dept_id": dept, "cursor": cursor, "size": 100});
                let page = self.call(k, e, &Req::Post(url(e), body)).await?;
                for u in page["result"]["list"].as_array().into_iter().flatten() {
                    let name = u["name"].as_str().unwrap_or_default().to_owned();
                    users.insert(u["userid"].as_str().unwrap_or_default().to_owned(), name);
                }
                match page["result"]["next_cursor"].as_u64() {
                    Some(next) if page["result"]["has_more"] == true => cursor = next,
                    _ => break,
                }
            }
        }
        let e = "topapi/attendance/getattcolumns";
        let columns = self.call(k, e, &Req::Post(url(e), json!({}))).await?;
        let wanted = [
            "出勤天数",
            "休息天数",
            "工作时长",
            "迟到次数",
            "迟到时长",
            "早退次数",
            "缺卡次数",
            "旷工天数",
        ];
        let ids: Vec<String> = columns["result"]["columns"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| wanted.contains(&c["name"].as_str().unwrap_or_default()))
            .filter_map(|c| c["id"].as_i64().map(|id| id.to_string()))
            .collect();
        let (first, last) = month_days();
        let (from, to) = (format!("{first} 00:00:00"), format!("{last} 00:00:00"));
        let mut users: Vec<(String, String)> = users.into_iter().collect();
        users.sort();
        let mut records = Vec::new();
        for (userid, name) in users {
            let e = "topapi/attendance/getcolumnval";
            let body = json!({"userid": userid, "column_id_list": ids.join(","), "from_date": from, "to_date": to});
            let vals = self.call(k, e, &Req::Post(url(e), body)).await?;
            let e = "topapi/attendance/getleavetimebynames";
            let body = json!({"userid": userid, "leave_names": "年假,事假,病假,调休", "from_date": from, "to_date": to});
            self.call(k, e, &Req::Post(url(e), body)).await?;
            let days = vals["result"]["column_vals"][0]["column_vals"]
                .as_array()
                .map_or(0, Vec::len);
            records.push(record(
                &json!(userid),
                &json!(name),
                "attendance_days",
                &json!(days),
            ));
        }
        Ok(records)
    }

    /// Writes the records 100 a call, blind (a second run duplicates them).
    async fn write(
        &mut self,
        base: &str,
        entry_id: &str,
        records: Vec<Value>,
    ) -> Result<(), String> {
        let url = format!("{base}/api/v5/app/entry/data/batch_create");
        for batch in records.chunks(100) {
            let body = json!({"app_id": APP_ID, "entry_id": entry_id, "data_list": batch});
            self.call(None, "data/batch_create", &Req::Post(url.clone(), body))
                .await?;
        }
        Ok(())
    }
}

/// A form record with the shipped mappings' key fields and one number.
fn record(userid: &Value, name: &Value, number_field: &str, number: &Value) -> Value {
    json!({
        "userid": {"value": userid},
        "name": {"value": name},
        "month": {"value": MONTH},
        number_field: {"value": number.as_f64().unwrap_or(0.0)},
    })
}

impl Bench {
    /// Runs the plain client once, measured like a run of the binary (wall time,
    /// calls, violations; CPU and memory are not its own process's, so zero).
    pub(crate) async fn run_plain(&self, entry_id: &str) -> RunResult {
        let (source_before, jdy_before) = (self.source_log().len(), self.jdy.call_log().len());
        let jdy_writes_before = self.jdy.write_calls();
        let (violations_before, injected_before) = self.faults();
        let http = attendsync::http::client(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("HTTP client: {e}"));
        let mut script = Script {
            http,
            source: Pace::new(&self.source_quotas),
            target: Pace::new(&self.jdy_quotas),
            throttled: 0,
        };
        let start = Instant::now();
        let pulled = match self.kind {
            Kind::Wecom => script.wecom(&self.source_url()).await,
            Kind::Dingtalk => script.dingtalk(&self.source_url()).await,
        };
        let written = match pulled {
            Ok(records) => {
                let n = records.len();
                script
                    .write(&self.jdy.base_url(), entry_id, records)
                    .await
                    .map(|()| n)
            }
            Err(e) => Err(e),
        };
        let wall = start.elapsed();
        let (exit, created) = match written {
            Ok(n) => (0, n),
            Err(e) => {
                eprintln!("the plain client failed: {e}");
                (1, 0)
            }
        };
        let source_log = self.source_log().split_off(source_before);
        let jdy_log = self.jdy.call_log().split_off(jdy_before);
        let (violations, injected) = self.faults();
        self.write_log("plain", start, &source_log, &jdy_log);
        let rows = self.call_rows(start, &source_log, &jdy_log);
        RunResult {
            wall,
            exit,
            max_rss_kib: 0,
            user: Duration::ZERO,
            system: Duration::ZERO,
            rows,
            source_calls: source_log.len(),
            jdy_calls: jdy_log.len(),
            jdy_writes: self.jdy.write_calls() - jdy_writes_before,
            violations: violations - violations_before,
            injected: injected - injected_before,
            throttled: script.throttled,
            throttled_by: Vec::new(),
            counts: json!({"created": created}),
        }
    }
}
