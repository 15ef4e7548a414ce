//! The daemon's HTTP API with the real listener: the token, JSON errors, and
//! requested runs queued behind the job's run in progress.

use crate::common;

use std::time::{Duration, Instant};

use attendsync_sim::JdySimConfig;
use common::daemon::Daemon;
use common::{fast_wecom, Env, FAST_SOURCE, FAST_TARGET};
use serde_json::{json, Value};

const MONTH: &str = "2026-10";
pub(crate) const TOKEN: &str = "api-token-for-the-tests-0123456789";

/// A daemon serving the API, its job scheduled once a year (never during a test).
pub(crate) struct Api {
    pub(crate) daemon: Daemon,
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
}

impl Api {
    pub(crate) async fn start(env: &Env) -> Api {
        write_daemon_config(env);
        let daemon = Daemon::start_with(env, None, &[("ATTENDSYNC_API_TOKEN", TOKEN)]);
        let line = daemon
            .wait_for_line(&["serving the API", "address="], Duration::from_secs(20))
            .await;
        let address = line
            .split("address=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in {line}"));
        // attendsync's own client: it installs the TLS provider reqwest needs.
        let http =
            attendsync::http::client(Duration::from_secs(10)).unwrap_or_else(|e| panic!("{e}"));
        Api {
            daemon,
            base: format!("http://{address}"),
            http,
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let answer = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = answer.status().as_u16();
        let text = answer.text().await.unwrap_or_default();
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{path}: not JSON ({status}): {text}"));
        (status, value)
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, Some(TOKEN), None)
            .await
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(
            reqwest::Method::POST,
            path,
            Some(TOKEN),
            Some(body.to_string()),
        )
        .await
    }

    /// Polls a requested run until it is done (bounded).
    pub(crate) async fn until_done(&self, id: i64, limit: Duration) -> Value {
        self.until_state(id, &["done"], limit).await
    }

    /// Polls a requested run until its state is one of `states` (bounded).
    pub(crate) async fn until_state(&self, id: i64, states: &[&str], limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let (status, run) = self.get(&format!("/api/v1/runs/{id}")).await;
            assert_eq!(status, 200, "{run}");
            if states.iter().any(|s| run["state"] == *s) {
                return run;
            }
            assert!(
                Instant::now() < deadline,
                "run {id} not in {states:?} within {limit:?}: {run}\n{}",
                self.daemon.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Signs in to the status page with a form post; the session cookie
    /// (`name=value`), checked to be `HttpOnly` and `SameSite=Strict`.
    pub(crate) async fn sign_in(&self) -> String {
        let answer = self
            .http
            .post(format!("{}/login", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={TOKEN}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(answer.status().as_u16(), 303);
        let set = answer.headers()["set-cookie"]
            .to_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        set.split(';').next().unwrap_or_default().to_string()
    }

    /// A page of the status site with the session cookie: (status, HTML).
    pub(crate) async fn page(&self, path: &str, cookie: &str) -> (u16, String) {
        let answer = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        (
            answer.status().as_u16(),
            answer.text().await.unwrap_or_default(),
        )
    }
}

/// The WeCom job scheduled once a year (never during a test) and
/// `attendsync.toml` serving on an ephemeral port with the token from
/// `ATTENDSYNC_API_TOKEN`.
pub(crate) fn write_daemon_config(env: &Env) {
    let job = env.job_text(FAST_SOURCE, FAST_TARGET).replacen(
        "description = \"test job\"",
        "description = \"test job\"\nschedule = \"0 0 3 1 1 *\"",
        1,
    );
    env.write("jobs/wecom_monthly.toml", &job);
    env.write(
        "attendsync.toml",
        "[server]\nlisten = \"127.0.0.1:0\"\ntoken = \"${ATTENDSYNC_API_TOKEN}\"\n",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_needs_the_token_and_answers_errors_in_json() {
    let env = Env::start(5, fast_wecom(), JdySimConfig::default()).await;
    let api = Api::start(&env).await;
    let get = reqwest::Method::GET;
    let (status, health) = api.send(get.clone(), "/healthz", None, None).await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    for token in [None, Some("wrong-token"), Some("")] {
        let (status, answer) = api.send(get.clone(), "/api/v1/jobs", token, None).await;
        assert_eq!(status, 401, "{token:?}: {answer}");
        assert!(answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("token")));
    }
    let (status, jobs) = api.get("/api/v1/jobs").await;
    assert_eq!(status, 200);
    assert_eq!(jobs["jobs"][0]["name"], "wecom_monthly", "{jobs}");
    assert_eq!(jobs["jobs"][0]["source"], "wecom", "{jobs}");
    let (status, answer) = api
        .post("/api/v1/jobs/nope/runs", json!({"month": MONTH}))
        .await;
    assert_eq!(status, 404, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("wecom_monthly")),
        "{answer}"
    );
    let post = reqwest::Method::POST;
    let runs = "/api/v1/jobs/wecom_monthly/runs";
    let (status, answer) = api
        .send(post.clone(), runs, Some(TOKEN), Some("{\"month\": ".into()))
        .await;
    assert_eq!(status, 400, "{answer}");
    for (body, needle) in [
        (json!({"month": "2026-13"}), "month"),
        (json!({"month": MONTH, "employees": [" "]}), "employees"),
        (json!({"month": MONTH, "colour": 1}), "colour"),
    ] {
        let (status, answer) = api.post(runs, body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer["error"].as_str().is_some_and(|e| e.contains(needle)),
            "{body}: {answer}"
        );
    }
    // The most employees allowed, at the longest id, fit the body limit.
    let most: Vec<String> = (0..1000).map(|i| format!("{i:064}")).collect();
    let (status, answer) = api
        .post(runs, json!({"month": MONTH, "employees": most}))
        .await;
    assert_eq!(status, 202, "{answer}");
    let huge = json!({"month": MONTH, "employees": vec!["x".repeat(60); 3000]}).to_string();
    assert_eq!(post_oversized(&api, runs, huge).await.ok(), Some(413));
    let (status, _) = api.get("/api/v1/runs/999").await;
    assert_eq!(status, 404);
    let (status, _) = api.get("/api/v1/nothing-here").await;
    assert_eq!(status, 404);
    let (code, log) = api.daemon.terminate().await;
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains(TOKEN), "the token is never logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requested_rerun_of_two_employees_completes_with_their_calls_alone() {
    let env = Env::start(150, fast_wecom(), JdySimConfig::default()).await;
    env.write_job(FAST_SOURCE, FAST_TARGET);
    env.run(&["run", "--month", MONTH]).await.expect_code(0);
    let users = &env.wecom.org().users;
    let (x, y) = (users[10].userid.clone(), users[120].userid.clone());
    env.wecom.bump_revision(&x);
    env.wecom.bump_revision(&y);
    let monthdata = env.wecom.calls("checkin/getcheckin_monthdata");
    let api = Api::start(&env).await;
    let (status, answer) = api
        .post(
            "/api/v1/jobs/wecom_monthly/runs",
            json!({"month": MONTH, "employees": [x, y]}),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["run"].as_i64().unwrap_or_else(|| panic!("{answer}"));
    let run = api.until_done(id, Duration::from_secs(60)).await;
    assert_eq!(run["run"]["status"], "ok", "{run}");
    let counts = &run["run"]["months"][0]["counts"];
    assert_eq!(
        (counts["pulled"].as_u64(), counts["updated"].as_u64()),
        (Some(2), Some(2)),
        "{run}"
    );
    assert_eq!(
        env.wecom.calls("checkin/getcheckin_monthdata") - monthdata,
        1
    );
    assert_eq!(env.rows_by_key().len(), 150);
    let (status, months) = api.get("/api/v1/jobs/wecom_monthly/months").await;
    assert_eq!(status, 200);
    assert_eq!(
        months["months"][0]["counts"]["pulled"], 150,
        "the month's full run stands: {months}"
    );
    let (code, log) = api.daemon.terminate().await;
    assert_eq!(code, 0, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_request_while_one_runs_is_queued_never_parallel() {
    let env = Env::start(200, fast_wecom(), JdySimConfig::default()).await;
    env.wecom.set_latency(Duration::from_millis(300));
    let api = Api::start(&env).await;
    let runs = "/api/v1/jobs/wecom_monthly/runs";
    let (_, first) = api.post(runs, json!({"month": MONTH})).await;
    let (_, second) = api.post(runs, json!({"month": MONTH, "force": true})).await;
    let (first, second) = (
        first["run"].as_i64().unwrap_or(0),
        second["run"].as_i64().unwrap_or(0),
    );
    let (_, queued) = api.get(&format!("/api/v1/runs/{second}")).await;
    assert_eq!(queued["state"], "queued", "{queued}");
    let (_, jobs) = api.get("/api/v1/jobs").await;
    assert!(jobs["jobs"][0]["queued"].as_u64() >= Some(1), "{jobs}");
    let a = api.until_done(first, Duration::from_secs(60)).await;
    let b = api.until_done(second, Duration::from_secs(60)).await;
    let ended = a["run"]["finished_at"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let began = b["run"]["started_at"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        !ended.is_empty() && began >= ended,
        "one after the other: {a}\n{b}"
    );
    assert_eq!(b["run"]["command"], "rerun --force");
    assert_eq!(env.rows_by_key().len(), 200);
    let (code, log) = api.daemon.terminate().await;
    assert_eq!(code, 0, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_validates_attendsync_toml_with_its_lines() {
    let env = Env::start(3, fast_wecom(), JdySimConfig::default()).await;
    env.write_job(FAST_SOURCE, FAST_TARGET);
    env.write(
        "attendsync.toml",
        "[server]\nlisten = \"everywhere\"\ntoken = \"written-in-the-file-0123456789\"\n",
    );
    let check = env.run(&["check"]).await;
    check
        .expect_code(2)
        .expect_contains("attendsync.toml:2")
        .expect_contains("is not an address and port")
        .expect_contains("attendsync.toml:3")
        .expect_contains("must come from the environment")
        .expect_lacks("written-in-the-file");
    let daemon = env.run(&["daemon"]).await;
    daemon.expect_code(2).expect_contains("attendsync.toml:2");

    env.write(
        "attendsync.toml",
        "[server]\nlisten = \"0.0.0.0:8787\"\ntoken = \"${ATTENDSYNC_API_TOKEN}\"\n",
    );
    let ok = env
        .run_with_env(&["check"], &[("ATTENDSYNC_API_TOKEN", TOKEN)])
        .await;
    ok.expect_code(0)
        .expect_contains("serves the API")
        .expect_contains("reverse proxy");
}

/// One sample's value from a parsed scrape: `metric{labels…}`.
fn sample(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text_that_matches_the_runs() {
    let env = Env::start(120, fast_wecom(), JdySimConfig::default()).await;
    env.write_job(FAST_SOURCE, FAST_TARGET);
    env.run(&["run"]).await.expect_code(0);
    env.run(&["run", "--month", MONTH]).await.expect_code(0);
    let x = env.wecom.org().users[7].userid.clone();
    env.wecom.bump_revision(&x);
    let api = Api::start(&env).await;
    let (status, _) = api.send(reqwest::Method::GET, "/metrics", None, None).await;
    assert_eq!(status, 401, "the 401 is JSON like every error");
    let (_, answer) = api
        .post(
            "/api/v1/jobs/wecom_monthly/runs",
            json!({"month": MONTH, "employees": [x]}),
        )
        .await;
    api.until_done(answer["run"].as_i64().unwrap_or(0), Duration::from_secs(60))
        .await;

    let answer = api
        .http
        .get(format!("{}/metrics", api.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answer.status().as_u16(), 200);
    let content_type = answer.headers()["content-type"]
        .to_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = answer.text().await.unwrap_or_default();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap_or_else(|e| panic!("{e}: {text}"));
    let job = ("sync_job", "wecom_monthly");
    let get = |m: &str, labels: &[(&str, &str)]| {
        let mut all = vec![job];
        all.extend_from_slice(labels);
        sample(&scrape, m, &all).unwrap_or_else(|| panic!("no {m} {labels:?} in:\n{text}"))
    };
    assert_eq!(get("attendsync_runs_total", &[("outcome", "ok")]), 1.0);
    assert_eq!(get("attendsync_records_total", &[("kind", "updated")]), 1.0);
    assert_eq!(get("attendsync_records_total", &[("kind", "created")]), 0.0);
    let monthdata = [("endpoint", "checkin/getcheckin_monthdata")];
    assert_eq!(get("attendsync_vendor_calls_total", &monthdata), 1.0);
    assert_eq!(get("attendsync_vendor_throttled_total", &monthdata), 0.0);
    assert_eq!(get("attendsync_queued_runs", &[]), 0.0);
    let last = get("attendsync_last_success_timestamp_seconds", &[]);
    // In milliseconds: whole seconds made a run 0.08 s ago look like the future.
    let age = chrono::Utc::now().timestamp_millis() as f64 / 1000.0 - last;
    assert!(
        (0.0..600.0).contains(&age),
        "the `run` a moment ago: {age} s"
    );
    assert!(!text.contains(TOKEN));
    let (code, log) = api.daemon.terminate().await;
    assert_eq!(code, 0, "{log}");
}

/// Clients that send garbage, too much, or too slowly get 4xx (or nothing)
/// while a requested run goes on undisturbed, and SIGTERM still ends the
/// daemon within 10 s with such a client still connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_and_slow_clients_disturb_neither_a_run_nor_the_shutdown() {
    use tokio::io::AsyncWriteExt;
    let env = Env::start(150, fast_wecom(), JdySimConfig::default()).await;
    env.wecom.set_latency(Duration::from_millis(100));
    let api = Api::start(&env).await;
    let address = api.base.trim_start_matches("http://").to_string();
    // A body promised and never sent, and headers never finished.
    let mut stalled_body = tokio::net::TcpStream::connect(&address)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let head = format!(
        "POST /api/v1/jobs/wecom_monthly/runs HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    );
    stalled_body
        .write_all(head.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut stalled_head = tokio::net::TcpStream::connect(&address)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    stalled_head
        .write_all(b"GET /api/v1/jobs HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let (status, answer) = api
        .post("/api/v1/jobs/wecom_monthly/runs", json!({"month": MONTH}))
        .await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["run"].as_i64().unwrap_or(0);
    let runs = "/api/v1/jobs/wecom_monthly/runs";
    for body in [
        "",
        "[]",
        "{\"month\": 202610}",
        "\u{0}\u{1}garbage",
        "{\"month\":\"2026-10\",\"employees\":\"x\"}",
    ] {
        let (status, answer) = api
            .send(reqwest::Method::POST, runs, Some(TOKEN), Some(body.into()))
            .await;
        assert!((400..500).contains(&status), "{body:?}: {status} {answer}");
    }
    let status = post_oversized(&api, runs, "x".repeat(200 * 1024)).await;
    assert!(matches!(status, Ok(413) | Err(_)), "{status:?}");
    let run = api.until_done(id, Duration::from_secs(60)).await;
    assert_eq!(run["run"]["status"], "ok", "{run}");
    assert_eq!(env.rows_by_key().len(), 150);
    let (_, jobs) = api.get("/api/v1/jobs").await;
    assert_eq!(
        jobs["jobs"][0]["queued"], 0,
        "no garbage was queued: {jobs}"
    );
    // `terminate` fails the test unless the daemon exits within 10 s.
    let (code, log) = api.daemon.terminate().await;
    assert_eq!(code, 0, "{log}");
    drop((stalled_body, stalled_head));
}

/// Posts an oversized body on a connection of its own: the server answers
/// 413 without reading the body and closes the connection, which a pooled
/// client could otherwise reuse for the next request.
async fn post_oversized(api: &Api, path: &str, body: String) -> Result<u16, reqwest::Error> {
    attendsync::http::client(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"))
        .post(format!("{}{path}", api.base))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map(|a| a.status().as_u16())
}

/// A job without `schedule` is not run by the daemon's clock, but with the
/// API on it is listed and can be requested.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_without_a_schedule_runs_on_request() {
    let env = Env::start(30, fast_wecom(), JdySimConfig::default()).await;
    let api = Api::start(&env).await;
    let job = env.job_text(FAST_SOURCE, FAST_TARGET);
    assert!(!job.contains("schedule"), "the plain job has no schedule");
    env.write("jobs/on_request.toml", &job);
    env.write("mappings/on_request.toml", common::shipped_mapping());
    let job = job.replace(
        "mapping = \"wecom_monthly.toml\"",
        "mapping = \"on_request.toml\"",
    );
    env.write("jobs/on_request.toml", &job);
    api.daemon.signal("HUP");
    api.daemon
        .wait_for_line(&["job files reloaded", "jobs=2"], Duration::from_secs(10))
        .await;
    let (_, jobs) = api.get("/api/v1/jobs").await;
    let listed = jobs["jobs"].as_array().cloned().unwrap_or_default();
    let on_request = listed.iter().find(|j| j["name"] == "on_request");
    let on_request = on_request.unwrap_or_else(|| panic!("not listed: {jobs}"));
    assert!(
        on_request["schedule"].is_null() && on_request["next_fire"].is_null(),
        "{jobs}"
    );
    let (status, answer) = api
        .post("/api/v1/jobs/on_request/runs", json!({"month": MONTH}))
        .await;
    assert_eq!(status, 202, "{answer}");
    let run = api
        .until_done(answer["run"].as_i64().unwrap_or(0), Duration::from_secs(60))
        .await;
    assert_eq!(run["run"]["status"], "ok", "{run}");
    let (code, log) = api.daemon.terminate().await;
    assert_eq!(code, 0, "{log}");
}
