//! Alerts against local receivers: a small axum server on loopback plays the WeCom
//! group robot, the DingTalk custom robot, DingTalk's gettoken + asyncsend_v2 and a
//! generic webhook, and records every request it gets.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

use attendsync::config::job::{parse_job, Job};
use attendsync::config::SourceFile;
use attendsync::notify::{after_run, dingtalk_sign, notify, notify_within, Channel};
use attendsync::pipeline::{JobReport, MonthReport};
use attendsync::store::MonthCounts;
use attendsync::store::Store;

const APP_KEY: &str = "ding-app-key";
const APP_SECRET: &str = "DT-APP-SECRET-aaaa1111";
const API_KEY: &str = "JDY-API-KEY-bbbb2222";
const WECOM_KEY: &str = "WECOM-ROBOT-KEY-cccc3333";
const ROBOT_TOKEN: &str = "DT-ROBOT-TOKEN-dddd4444";
const SIGN_SECRET: &str = "SEC-ROBOT-SIGN-eeee5555";
const HOOK_TOKEN: &str = "WEBHOOK-PATH-TOKEN-ffff6666";
const ACCESS_TOKEN: &str = "ACCESS-TOKEN-gggg7777";

const WECOM_PATH: &str = "/cgi-bin/webhook/send";
const ROBOT_PATH: &str = "/robot/send";
const TOKEN_PATH: &str = "/gettoken";
const NOTICE_PATH: &str = "/topapi/message/corpconversation/asyncsend_v2";
const HOOK_PATH: &str = "/hooks/attendsync";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Ok,
    /// Every endpoint answers HTTP 500.
    Http500,
    /// Vendor endpoints answer a non-zero errcode that echoes secrets back.
    Errcode,
    /// Every endpoint answers after 3 s.
    Slow,
}

#[derive(Debug, Clone)]
struct Request {
    method: Method,
    path: String,
    query: String,
    body: String,
}

impl Request {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    fn query_pairs(&self) -> BTreeMap<String, String> {
        let url = reqwest::Url::parse(&format!("http://x/?{}", self.query)).expect("query");
        url.query_pairs().into_owned().collect()
    }
}

#[derive(Clone)]
struct Receiver {
    mode: Mode,
    requests: Arc<Mutex<Vec<Request>>>,
}

async fn receive(State(rx): State<Receiver>, method: Method, uri: Uri, body: String) -> Response {
    rx.requests.lock().expect("lock").push(Request {
        method,
        path: uri.path().to_string(),
        query: uri.query().unwrap_or("").to_string(),
        body,
    });
    let path = uri.path();
    match rx.mode {
        Mode::Slow => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            return (StatusCode::OK, "{\"errcode\":0}").into_response();
        }
        Mode::Http500 => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("internal error for key={WECOM_KEY}"),
            )
                .into_response()
        }
        Mode::Errcode if path != HOOK_PATH && !path.starts_with(HOOK_PATH) => {
            let answer = if path == TOKEN_PATH {
                json!({"errcode": 40089, "errmsg": format!("invalid appsecret {APP_SECRET}")})
            } else {
                json!({"errcode": "310000", "errmsg": format!("sign not match; token={ROBOT_TOKEN} key={WECOM_KEY}")})
            };
            return axum::Json(answer).into_response();
        }
        _ => {}
    }
    let answer = if path == TOKEN_PATH {
        json!({"errcode": 0, "errmsg": "ok", "access_token": ACCESS_TOKEN, "expires_in": 7200})
    } else if path == NOTICE_PATH {
        json!({"errcode": 0, "errmsg": "ok", "task_id": 256271667526_i64, "request_id": "4jzllmte0wau"})
    } else if path.starts_with(HOOK_PATH) {
        return (StatusCode::NO_CONTENT, "").into_response();
    } else {
        json!({"errcode": 0, "errmsg": "ok"})
    };
    axum::Json(answer).into_response()
}

struct Server {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(mode: Mode) -> Server {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new().fallback(receive).with_state(Receiver {
            mode,
            requests: requests.clone(),
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Server {
            addr,
            requests,
            task,
        }
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("lock").clone()
    }

    fn one(&self, path: &str) -> Request {
        let found: Vec<Request> = self
            .requests()
            .into_iter()
            .filter(|r| r.path.starts_with(path))
            .collect();
        assert_eq!(found.len(), 1, "requests to {path}: {found:#?}");
        found[0].clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A DingTalk job whose four alert targets all point at `addr`, its texts in English.
fn job(addr: SocketAddr, on: &str) -> Job {
    job_with(addr, &format!("on = \"{on}\"\nlanguage = \"en\""))
}

/// A DingTalk job whose four alert targets all point at `addr`, with `notify`
/// (lines of `[notify]`).
fn job_with(addr: SocketAddr, notify: &str) -> Job {
    let base = format!("http://{addr}");
    let text = format!(
        r#"
mapping = "dingtalk_monthly.toml"

[source]
type = "dingtalk"
app_key = "{APP_KEY}"
app_secret = "${{DINGTALK_APP_SECRET}}"
base_url = "{base}"

[target]
api_key = "${{JDY_API_KEY}}"
app_id = "app"
entry_id = "entry"

[notify]
{notify}
wecom_robot = "${{WECOM_ROBOT_WEBHOOK}}"
dingtalk_robot = "${{DINGTALK_ROBOT_WEBHOOK}}"
dingtalk_robot_secret = "${{DINGTALK_ROBOT_SECRET}}"
webhook = "{base}{HOOK_PATH}/{HOOK_TOKEN}"

[notify.dingtalk_work_notice]
agent_id = 123456789
userids = ["manager4220", "hr01"]
"#
    );
    let env = move |name: &str| -> Option<String> {
        Some(match name {
            "DINGTALK_APP_SECRET" => APP_SECRET.to_string(),
            "JDY_API_KEY" => API_KEY.to_string(),
            "WECOM_ROBOT_WEBHOOK" => format!("{base}{WECOM_PATH}?key={WECOM_KEY}"),
            "DINGTALK_ROBOT_WEBHOOK" => format!("{base}{ROBOT_PATH}?access_token={ROBOT_TOKEN}"),
            "DINGTALK_ROBOT_SECRET" => SIGN_SECRET.to_string(),
            _ => return None,
        })
    };
    let file = SourceFile::new("jobs/dt_monthly.toml", text);
    match parse_job("dt_monthly", &file, &env) {
        Ok(job) => job,
        Err(e) => panic!("{e:#?}"),
    }
}

fn month(month: &str, failed: u64, errors: Vec<String>) -> MonthReport {
    MonthReport {
        job: "j".into(),
        month: month.into(),
        counts: MonthCounts {
            pulled: 120,
            created: 4,
            updated: 2,
            unchanged: 114 - failed,
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
    }
}

fn failing_report() -> JobReport {
    JobReport {
        job: "dt_monthly".into(),
        dry_run: false,
        months: vec![
            month("2026-09", 0, vec![]),
            month(
                "2026-10",
                3,
                vec![
                    "employee u42: field work_hours: cannot convert \"abc\" (seconds_to_hours)"
                        .into(),
                    format!("data/batch_create: vendor echoed appsecret={APP_SECRET} key={WECOM_KEY}"),
                    format!("api_key {API_KEY} token {ROBOT_TOKEN} sign {SIGN_SECRET} hook {HOOK_TOKEN}"),
                ],
            ),
        ],
        error: None,
        busy: None,
        stopped_by_shutdown: false,
        plan: None,
        calls: BTreeMap::new(),
        run_id: None,
    }
}

fn ok_report() -> JobReport {
    JobReport {
        job: "dt_monthly".into(),
        dry_run: false,
        months: vec![month("2026-10", 0, vec![])],
        error: None,
        busy: None,
        stopped_by_shutdown: false,
        plan: None,
        calls: BTreeMap::new(),
        run_id: None,
    }
}

fn client() -> reqwest::Client {
    attendsync::http::client(Duration::from_secs(30)).expect("client")
}

const ALL_SECRETS: [&str; 8] = [
    APP_SECRET,
    API_KEY,
    WECOM_KEY,
    ROBOT_TOKEN,
    SIGN_SECRET,
    HOOK_TOKEN,
    ACCESS_TOKEN,
    "SEC-ROBOT",
];

fn content(r: &Request) -> String {
    let v = r.json();
    v["text"]["content"]
        .as_str()
        .or_else(|| v["msg"]["text"]["content"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn a_failed_run_sends_one_message_to_each_target_without_secrets() {
    let server = Server::start(Mode::Ok).await;
    let job = job(server.addr, "failure");
    let errors = notify(&client(), &job, &failing_report(), 1).await;
    assert!(errors.is_empty(), "{errors:#?}");

    let requests = server.requests();
    assert_eq!(
        requests.len(),
        5,
        "four targets and one token: {requests:#?}"
    );
    let wecom = server.one(WECOM_PATH);
    let robot = server.one(ROBOT_PATH);
    let token = server.one(TOKEN_PATH);
    let notice = server.one(NOTICE_PATH);
    let hook = server.one(HOOK_PATH);

    // No secret in any body; the signing secret nowhere at all.
    for r in &requests {
        for secret in ALL_SECRETS {
            assert!(
                !r.body.contains(secret),
                "{secret} in body of {}: {}",
                r.path,
                r.body
            );
        }
        let line = format!("{}?{}", r.path, r.query);
        assert!(!line.contains("SEC-ROBOT"), "signing secret sent: {line}");
        assert!(!line.contains(API_KEY), "{line}");
    }
    // Keys appear only where the protocol puts them.
    assert_eq!(
        wecom.query_pairs().get("key").map(String::as_str),
        Some(WECOM_KEY)
    );
    assert_eq!(
        robot.query_pairs().get("access_token").map(String::as_str),
        Some(ROBOT_TOKEN)
    );
    assert_eq!(token.method, Method::GET);
    assert_eq!(
        token.query_pairs(),
        BTreeMap::from([
            ("appkey".to_string(), APP_KEY.to_string()),
            ("appsecret".to_string(), APP_SECRET.to_string())
        ])
    );
    assert_eq!(
        notice.query_pairs(),
        BTreeMap::from([("access_token".to_string(), ACCESS_TOKEN.to_string())])
    );
    assert_eq!(hook.path, format!("{HOOK_PATH}/{HOOK_TOKEN}"));
    for r in [&wecom, &robot, &notice, &hook] {
        assert_eq!(r.method, Method::POST);
        assert!(!r.query.contains(APP_SECRET), "{}", r.query);
    }

    // The DingTalk robot request is signed as documented.
    let q = robot.query_pairs();
    let ts: i64 = q
        .get("timestamp")
        .and_then(|t| t.parse().ok())
        .expect("timestamp");
    let now = chrono::Utc::now().timestamp_millis();
    assert!((now - ts).abs() < 60_000, "timestamp {ts} vs now {now}");
    assert_eq!(q.get("sign"), Some(&dingtalk_sign(SIGN_SECRET, ts)));

    // Every message names the job, the months, the counts and the first errors.
    for r in [&wecom, &robot, &notice] {
        assert_failure_message(r);
    }

    // The webhook gets the JSON report.
    assert_failure_report(&hook);
}

/// A text message about the failed run of `failing_report`.
fn assert_failure_message(r: &Request) {
    let v = r.json();
    let text = content(r);
    assert!(text.contains("dt_monthly"), "{text}");
    assert!(text.contains("FAILED (exit 1)"), "{text}");
    assert!(
        text.contains("2026-10: pulled 120, created 4, updated 2, unchanged 111, failed 3"),
        "{text}"
    );
    assert!(text.contains("2026-09: pulled 120"), "{text}");
    assert!(
        text.contains("employee u42: field work_hours: cannot convert"),
        "{text}"
    );
    assert!(text.contains("first errors (3 of 3)"), "{text}");
    assert!(
        text.contains("vendor echoed appsecret=*** key=***"),
        "{text}"
    );
    assert!(text.len() <= 2048, "{}", text.len());
    if r.path == NOTICE_PATH {
        assert_eq!(v["agent_id"], 123456789);
        assert_eq!(v["userid_list"], "manager4220,hr01");
        assert_eq!(v["msg"]["msgtype"], "text");
        assert!(serde_json::to_vec(&v["msg"]).map(|b| b.len()).unwrap_or(0) <= 2048);
    } else {
        assert_eq!(v["msgtype"], "text", "{}", r.body);
    }
}

/// The webhook's JSON report of the failed run of `failing_report`.
fn assert_failure_report(hook: &Request) {
    let v = hook.json();
    assert_eq!(v["job"], "dt_monthly");
    assert_eq!(v["ok"], false);
    assert_eq!(v["failed"], true);
    assert_eq!(v["exit_code"], 1);
    assert_eq!(v["source"], "dingtalk");
    assert_eq!(v["months"][1]["month"], "2026-10");
    assert_eq!(v["months"][1]["failed"], 3);
    assert_eq!(v["months"][1]["pulled"], 120);
    assert!(v["months"][1]["errors"][0]
        .as_str()
        .unwrap_or_default()
        .contains("employee u42"));
    assert!(v["text"]
        .as_str()
        .unwrap_or_default()
        .contains("dt_monthly"));
}

#[tokio::test]
async fn on_failure_sends_nothing_for_an_ok_run_or_a_busy_skip_and_always_sends() {
    let server = Server::start(Mode::Ok).await;
    let http = client();

    let errors = notify(&http, &job(server.addr, "failure"), &ok_report(), 0).await;
    assert!(errors.is_empty());
    let mut busy = ok_report();
    busy.months.clear();
    busy.busy = Some("another process holds the job's lease".into());
    let errors = notify(&http, &job(server.addr, "failure"), &busy, 3).await;
    assert!(errors.is_empty());
    let mut dry = failing_report();
    dry.dry_run = true;
    let errors = notify(&http, &job(server.addr, "failure"), &dry, 1).await;
    assert!(errors.is_empty());
    assert!(server.requests().is_empty(), "{:#?}", server.requests());

    let errors = notify(&http, &job(server.addr, "always"), &ok_report(), 0).await;
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(server.requests().len(), 5);
    let text = content(&server.one(WECOM_PATH));
    assert!(
        text.starts_with("attendsync: job dt_monthly (dingtalk → Jiandaoyun) ok, run at"),
        "{text}"
    );
    assert!(text.contains("2026-10: pulled 120"), "{text}");
    assert_eq!(server.one(HOOK_PATH).json()["ok"], true);
}

#[tokio::test]
async fn a_500_answer_is_reported_per_target_without_urls_or_secrets() {
    let server = Server::start(Mode::Http500).await;
    let errors = notify(
        &client(),
        &job(server.addr, "failure"),
        &failing_report(),
        1,
    )
    .await;
    let channels: Vec<Channel> = errors.iter().map(|e| e.channel).collect();
    assert_eq!(
        channels,
        vec![
            Channel::WecomRobot,
            Channel::DingtalkRobot,
            Channel::DingtalkWorkNotice,
            Channel::Webhook
        ]
    );
    for e in &errors {
        let text = e.to_string();
        assert!(text.contains("HTTP 500"), "{text}");
        assert!(!text.contains("127.0.0.1"), "{text}");
        for secret in ALL_SECRETS {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
    assert!(
        errors[2].message.starts_with("gettoken: HTTP 500"),
        "{errors:#?}"
    );
    // The work notice stopped at its token: four requests in all.
    assert_eq!(server.requests().len(), 4);
}

#[tokio::test]
async fn a_vendor_errcode_is_reported_and_its_echoed_secrets_redacted() {
    let server = Server::start(Mode::Errcode).await;
    let errors = notify(
        &client(),
        &job(server.addr, "failure"),
        &failing_report(),
        1,
    )
    .await;
    let by_channel: BTreeMap<String, String> = errors
        .iter()
        .map(|e| (e.channel.to_string(), e.message.clone()))
        .collect();
    assert_eq!(by_channel.len(), 3, "{by_channel:#?}");
    assert_eq!(
        by_channel.get("wecom_robot").map(String::as_str),
        Some("errcode 310000: sign not match; token=*** key=***")
    );
    assert_eq!(
        by_channel.get("dingtalk_robot").map(String::as_str),
        Some("errcode 310000: sign not match; token=*** key=***")
    );
    assert_eq!(
        by_channel.get("dingtalk_work_notice").map(String::as_str),
        Some("gettoken: errcode 40089: invalid appsecret ***; check the app's app_key/app_secret")
    );
    assert!(!by_channel.contains_key("webhook"));
}

#[tokio::test]
async fn slow_and_unreachable_targets_are_bounded_and_reported() {
    let server = Server::start(Mode::Slow).await;
    let started = Instant::now();
    let errors = notify_within(
        &client(),
        &job(server.addr, "failure"),
        &failing_report(),
        1,
        Duration::from_millis(300),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(errors.len(), 4, "{errors:#?}");
    for e in &errors {
        assert!(e.message.contains("timed out"), "{e}");
    }

    // Nothing listens on a freshly closed port.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let errors = notify(&client(), &job(closed, "always"), &ok_report(), 0).await;
    assert_eq!(errors.len(), 4, "{errors:#?}");
    for e in &errors {
        assert!(e.message.contains("connection failed"), "{e}");
        assert!(!e.message.contains("127.0.0.1"), "{e}");
    }
}

fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&chrono::Utc)
}

/// The WeCom robot's texts so far, in order.
fn wecom_texts(server: &Server) -> Vec<String> {
    server
        .requests()
        .iter()
        .filter(|r| r.path == WECOM_PATH)
        .map(content)
        .collect()
}

#[tokio::test]
async fn a_failure_streak_alerts_once_then_says_recovered_in_chinese() {
    let server = Server::start(Mode::Ok).await;
    let store = Store::open_in_memory().expect("store");
    let (http, job) = (client(), job_with(server.addr, "on = \"failure\""));
    // A `*/5` job failing every time: one alert, not one per run.
    for minute in ["00", "05", "10", "15"] {
        let now = at(&format!("2026-11-02T18:{minute}:07Z"));
        let errors = after_run(&http, &store, &job, &failing_report(), 1, now).await;
        assert!(errors.is_empty(), "{errors:#?}");
    }
    assert_eq!(
        server.requests().len(),
        5,
        "four targets and one token once"
    );
    let texts = wecom_texts(&server);
    assert_eq!(texts.len(), 1, "{texts:#?}");
    assert!(
        texts[0].starts_with(
            "attendsync：任务 dt_monthly（钉钉 → 简道云）同步失败（退出码 1），运行时间 2026-11-03 02:00:07 +08:00 (Asia/Shanghai)"
        ),
        "{}",
        texts[0]
    );
    assert!(texts[0].contains("2026-10：拉取 120"), "{}", texts[0]);
    assert!(texts[0].contains("每 24 小时提醒一次"), "{}", texts[0]);
    let streak = store
        .failure_streak("dt_monthly")
        .expect("read")
        .expect("open");
    assert_eq!(streak.failures, 4);

    // The next good run: "recovered", once; the run after it: nothing.
    let now = at("2026-11-02T18:20:03Z");
    let errors = after_run(&http, &store, &job, &ok_report(), 0, now).await;
    assert!(errors.is_empty(), "{errors:#?}");
    after_run(
        &http,
        &store,
        &job,
        &ok_report(),
        0,
        at("2026-11-02T18:25:03Z"),
    )
    .await;
    let texts = wecom_texts(&server);
    assert_eq!(texts.len(), 2, "{texts:#?}");
    assert!(
        texts[1].contains("已恢复：本次运行成功，此前自 2026-11-03 02:00:07 +08:00 (Asia/Shanghai) 起连续失败 4 次"),
        "{}",
        texts[1]
    );
    assert!(
        texts[1].contains("运行时间 2026-11-03 02:20:03"),
        "{}",
        texts[1]
    );
    let hook: Vec<Value> = server
        .requests()
        .iter()
        .filter(|r| r.path.starts_with(HOOK_PATH))
        .map(Request::json)
        .collect();
    assert_eq!(hook.len(), 2);
    assert_eq!(hook[0]["alert"], "failed");
    assert_eq!(hook[1]["alert"], "recovered");
    assert_eq!(hook[1]["failed_runs"], 4);
    assert_eq!(hook[1]["failing_since"], "2026-11-02T18:00:07.000Z");
    assert_eq!(store.failure_streak("dt_monthly").expect("read"), None);
    for text in &texts {
        for secret in ALL_SECRETS {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
}

#[tokio::test]
async fn the_streak_survives_a_restart_and_an_undelivered_alert_is_tried_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("attendsync.db");
    let server = Server::start(Mode::Ok).await;
    let http = client();
    // The first failure finds every target down: nothing delivered.
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let store = Store::open(&db).expect("store");
    let errors = after_run(
        &http,
        &store,
        &job(down, "failure"),
        &failing_report(),
        1,
        at("2026-11-03T00:00:00Z"),
    )
    .await;
    assert_eq!(errors.len(), 4, "{errors:#?}");
    drop(store);
    // Each cron run is a new process: the next one alerts, the one after stays quiet.
    let job = job(server.addr, "failure");
    for (minute, expected) in [("05", 1), ("10", 1)] {
        let store = Store::open(&db).expect("store");
        let now = at(&format!("2026-11-03T00:{minute}:00Z"));
        after_run(&http, &store, &job, &failing_report(), 1, now).await;
        let texts = wecom_texts(&server);
        assert_eq!(texts.len(), expected, "{texts:#?}");
        assert!(
            texts[0].contains("FAILED (exit 1), 2 failed runs in a row since 2026-11-03 08:00:00 +08:00 (Asia/Shanghai)"),
            "{}",
            texts[0]
        );
    }
}

#[tokio::test]
async fn a_run_stopped_by_a_shutdown_sends_nothing_and_leaves_the_streak_alone() {
    let server = Server::start(Mode::Ok).await;
    let store = Store::open_in_memory().expect("store");
    let http = client();
    let mut stopped = ok_report();
    stopped.error =
        Some("job dt_monthly: interrupted by a shutdown request; the next run resumes here".into());
    stopped.stopped_by_shutdown = true;
    for on in ["failure", "always"] {
        let job = job(server.addr, on);
        assert!(notify(&http, &job, &stopped, 1).await.is_empty());
        assert!(
            after_run(&http, &store, &job, &stopped, 1, at("2026-11-03T00:00:00Z"))
                .await
                .is_empty()
        );
    }
    assert!(server.requests().is_empty(), "{:#?}", server.requests());
    assert_eq!(store.failure_streak("dt_monthly").expect("read"), None);

    // Within a streak it neither ends it nor counts as one more failure.
    let job = job(server.addr, "failure");
    after_run(
        &http,
        &store,
        &job,
        &failing_report(),
        1,
        at("2026-11-03T00:00:00Z"),
    )
    .await;
    after_run(&http, &store, &job, &stopped, 1, at("2026-11-03T00:05:00Z")).await;
    let streak = store
        .failure_streak("dt_monthly")
        .expect("read")
        .expect("open");
    assert_eq!(streak.failures, 1);
    assert_eq!(wecom_texts(&server).len(), 1);
}

#[tokio::test]
async fn a_reminder_follows_repeat_after_while_the_job_stays_broken() {
    let server = Server::start(Mode::Ok).await;
    let store = Store::open_in_memory().expect("store");
    let http = client();
    let job = job_with(server.addr, "language = \"en\"\nrepeat_after = \"1h\"");
    let runs = [
        ("2026-11-03T00:00:00Z", 1),
        ("2026-11-03T00:30:00Z", 1),
        ("2026-11-03T00:59:59Z", 1),
        ("2026-11-03T01:00:01Z", 2),
        ("2026-11-03T01:30:00Z", 2),
        ("2026-11-03T02:00:01Z", 3),
    ];
    for (now, expected) in runs {
        after_run(&http, &store, &job, &failing_report(), 1, at(now)).await;
        assert_eq!(
            wecom_texts(&server).len(),
            expected,
            "after the run at {now}"
        );
    }
    let texts = wecom_texts(&server);
    assert!(
        texts[0].contains("a reminder every 1h while it stays broken"),
        "{}",
        texts[0]
    );
    assert!(
        texts[1].starts_with("attendsync: job dt_monthly (dingtalk → Jiandaoyun) STILL FAILING (exit 1): 4 failed runs in a row since 2026-11-03 08:00:00 +08:00 (Asia/Shanghai), run at 2026-11-03 09:00:01 +08:00"),
        "{}",
        texts[1]
    );
    assert!(texts[2].contains("6 failed runs in a row"), "{}", texts[2]);
    assert_ne!(texts[1], texts[2]);
}
