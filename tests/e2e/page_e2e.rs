//! The status page: signing in, the CSRF guard, and in a real headless
//! Chromium (driven over WebDriver by chromedriver), a rerun started with the
//! button and seen to finish, on a phone-sized window.

use crate::api_e2e::{Api, TOKEN};
use crate::common;

use std::time::{Duration, Instant};

use attendsync_sim::JdySimConfig;
use common::{fast_wecom, Env, FAST_SOURCE, FAST_TARGET};
use serde_json::{json, Value};

const MONTH: &str = "2026-10";

async fn post_form(api: &Api, path: &str, cookie: &str, origin: Option<&str>, body: &str) -> u16 {
    let mut request = api
        .http
        .post(format!("{}{path}", api.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", cookie)
        .body(body.to_string());
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_needs_a_session_and_its_forms_need_their_csrf_token() {
    let env = Env::start(20, fast_wecom(), JdySimConfig::default()).await;
    env.write_job(FAST_SOURCE, FAST_TARGET);
    env.run(&["run", "--month", MONTH]).await.expect_code(0);
    let api = Api::start(&env).await;
    let (status, html) = api.page("/", "").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("action=\"/login\"") && !html.contains("wecom_monthly"),
        "{html}"
    );
    let wrong = api
        .http
        .post(format!("{}/login", api.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=not-the-token")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(wrong.status().as_u16(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());

    let cookie = api.sign_in().await;
    let (_, html) = api.page("/", &cookie).await;
    assert!(
        html.contains("wecom_monthly") && html.contains(MONTH),
        "{html}"
    );
    assert!(
        html.contains("Asia/Shanghai") && html.contains("CST"),
        "times in the job's zone: {html}"
    );
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no csrf field: {html}"))
        .to_string();
    let rerun = "/jobs/wecom_monthly/rerun";
    let body = |csrf: &str| format!("csrf={csrf}&month={MONTH}&employees=");
    assert_eq!(
        post_form(&api, rerun, "", None, &body(&csrf)).await,
        403,
        "no session"
    );
    assert_eq!(
        post_form(&api, rerun, &cookie, None, &body("forged")).await,
        403,
        "wrong token"
    );
    let evil = Some("https://evil.example.com");
    assert_eq!(
        post_form(&api, rerun, &cookie, evil, &body(&csrf)).await,
        403,
        "foreign origin"
    );
    let (_, jobs) = api.get("/api/v1/jobs").await;
    assert_eq!(jobs["jobs"][0]["queued"], 0, "nothing was queued: {jobs}");
    let own = api.base.to_string();
    assert_eq!(
        post_form(&api, rerun, &cookie, Some(&own), &body(&csrf)).await,
        303
    );
    let (code, log) = api.daemon.terminate().await;
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains(&csrf) && !log.contains(TOKEN));
}

/// A WebDriver session in headless Chromium through chromedriver.
struct Browser {
    driver: tokio::process::Child,
    http: reqwest::Client,
    base: String,
}

/// Chromium and chromedriver, or why the browser test cannot run. `.ci/run`
/// installs both and sets `ATTENDSYNC_REQUIRE_BROWSER=1`, so there a missing
/// browser fails the test instead of skipping it.
fn browser_binaries() -> Option<(String, String)> {
    let find = |names: &[&str]| {
        names
            .iter()
            .map(|n| format!("/usr/bin/{n}"))
            .find(|p| std::path::Path::new(p).exists())
    };
    let found =
        find(&["chromium", "chromium-browser", "google-chrome"]).zip(find(&["chromedriver"]));
    if found.is_none() {
        assert!(
            std::env::var("ATTENDSYNC_REQUIRE_BROWSER").is_err(),
            "chromium and chromedriver are required (apt-get install chromium chromium-driver)"
        );
        eprintln!("skipping the browser test: chromium or chromedriver is not installed");
    }
    found
}

impl Browser {
    async fn start(chromium: &str, chromedriver: &str) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("{e}"));
        let driver = tokio::process::Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start chromedriver: {e}"));
        let http =
            attendsync::http::client(Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"));
        let root = format!("http://127.0.0.1:{port}");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=412,1400"
            ]}
        }}});
        let deadline = Instant::now() + Duration::from_secs(30);
        let session = loop {
            if let Ok(answer) = http
                .post(format!("{root}/session"))
                .json(&caps)
                .send()
                .await
            {
                let value: Value = answer.json().await.unwrap_or_default();
                match value["value"]["sessionId"].as_str() {
                    Some(id) => break id.to_string(),
                    None => panic!("no WebDriver session: {value}"),
                }
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not answer within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        Browser {
            driver,
            http,
            base: format!("{root}/session/{session}"),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if !body.is_null() {
            request = request.json(&body);
        }
        let answer = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"));
        let value: Value = answer.json().await.unwrap_or_default();
        assert!(
            value["value"]["error"].is_null(),
            "WebDriver {path}: {value}"
        );
        value["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", json!({"url": url}))
            .await;
    }

    async fn find(&self, css: &str) -> String {
        let found = self
            .call(
                reqwest::Method::POST,
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_string()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            json!({"text": text}),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            json!({}),
        )
        .await;
    }

    async fn source(&self) -> String {
        let value = self
            .call(reqwest::Method::GET, "/source", Value::Null)
            .await;
        value.as_str().unwrap_or_default().to_string()
    }

    /// Waits (bounded) until the page holds `text`.
    async fn until_page_has(&self, text: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let html = self.source().await;
            if html.contains(text) {
                return html;
            }
            assert!(
                Instant::now() < deadline,
                "the page never showed {text:?}:\n{html}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn screenshot(&self, file: &str) {
        use base64::Engine;
        let value = self
            .call(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(value.as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("screenshot: {e}"));
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.join(file), png).unwrap_or_else(|e| panic!("{e}"));
    }

    async fn quit(mut self) {
        let _ = self.http.delete(&self.base).send().await;
        let _ = self.driver.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_a_signed_in_user_reruns_a_month_with_the_button_and_sees_it_finish() {
    let Some((chromium, chromedriver)) = browser_binaries() else {
        return;
    };
    let env = Env::start(60, fast_wecom(), JdySimConfig::default()).await;
    env.write_job(FAST_SOURCE, FAST_TARGET);
    env.run(&["run", "--month", MONTH]).await.expect_code(0);
    let users = &env.wecom.org().users;
    let (x, y) = (users[3].userid.clone(), users[40].userid.clone());
    env.wecom.bump_revision(&x);
    let api = Api::start(&env).await;
    let browser = Browser::start(&chromium, &chromedriver).await;

    browser.go(&api.base).await;
    browser.type_into("#token", TOKEN).await;
    browser.click("#sign-in").await;
    let html = browser
        .until_page_has("id=\"jobs\"", Duration::from_secs(20))
        .await;
    assert!(
        html.contains("wecom_monthly") && html.contains(MONTH),
        "{html}"
    );
    browser.screenshot("status-page.png").await;

    browser
        .type_into("form.rerun textarea", &format!("{x}\n{y}"))
        .await;
    browser
        .click(&format!("button.rerun-button[data-month=\"{MONTH}\"]"))
        .await;
    let done = browser
        .until_page_has("id=\"state\" class=\"ok\">done", Duration::from_secs(60))
        .await;
    assert!(done.contains("id=\"run-status\" class=\"ok\">ok"), "{done}");
    assert!(
        done.contains(&x) && done.contains(&y),
        "the employees asked for: {done}"
    );
    browser.screenshot("run-page.png").await;
    let monthdata = env
        .wecom
        .call_log()
        .iter()
        .filter(|c| c.endpoint == "checkin/getcheckin_monthdata")
        .count();
    assert_eq!(
        monthdata, 2,
        "the first sync's one call and the rerun's one"
    );
    assert_eq!(env.rows_by_key().len(), 60);

    browser.go(&api.base).await;
    let html = browser
        .until_page_has("rerun --employee", Duration::from_secs(10))
        .await;
    assert!(html.contains("id=\"runs\""), "{html}");
    browser.quit().await;
    let (code, log) = api.daemon.terminate().await;
    assert_eq!(code, 0, "{log}");
}
