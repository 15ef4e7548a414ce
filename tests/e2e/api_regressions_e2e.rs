//! The daemon's API, metrics and status page as a new user (or an attacker)
//! meets them: what broke, kept as tests.

use crate::api_e2e::{Api, TOKEN};
use crate::common;

use std::time::{Duration, Instant};

use attendsync_sim::JdySimConfig;
use common::daemon::Daemon;
use common::{fast_wecom, Env, FAST_SOURCE, FAST_TARGET};
use serde_json::{json, Value};

const MONTH: &str = "2026-10";
const RUNS: &str = "/api/v1/jobs/wecom_monthly/runs";

/// README's own example, `curl -d '{"month": …}'`, sends the JSON as
/// `application/x-www-form-urlencoded` (curl's default for `-d`): the body is
/// JSON all the same, and the run is queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_curl_example_without_a_json_content_type_queues_the_run() {
    let env = Env::start(3, fast_wecom(), JdySimConfig::default()).await;
    let api = Api::start(&env).await;
    for content_type in [Some("application/x-www-form-urlencoded"), None] {
        let mut request = api
            .http
            .post(format!("{}{RUNS}", api.base))
            .bearer_auth(TOKEN)
            .body(json!({"month": MONTH, "employees": ["u0001"]}).to_string());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let answer = request.send().await.unwrap_or_else(|e| panic!("{e}"));
        let status = answer.status().as_u16();
        let body: Value = answer.json().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(status, 202, "{content_type:?}: {body}");
        let id = body["run"].as_i64().unwrap_or(0);
        let run = api.until_done(id, Duration::from_secs(60)).await;
        assert_eq!(run["employees"], json!(["u0001"]), "{run}");
    }
    let (code, log) = api.daemon.terminate().await;
    assert_eq!(code, 0, "{log}");
}

/// RFC 7235: the authentication scheme is case-insensitive; `bearer` works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_case_insensitive() {
    let env = Env::start(1, fast_wecom(), JdySimConfig::default()).await;
    let api = Api::start(&env).await;
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let answer = api
            .http
            .get(format!("{}/api/v1/jobs", api.base))
            .header("authorization", format!("{scheme} {TOKEN}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(answer.status().as_u16(), 200, "{scheme}");
    }
    let answer = api
        .http
        .get(format!("{}/api/v1/jobs", api.base))
        .header("authorization", format!("Bearerx {TOKEN}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answer.status().as_u16(), 401);
    let (code, log) = api.daemon.terminate().await;
    assert_eq!(code, 0, "{log}");
}

/// A token the API can never accept (non-ASCII cannot be read from an HTTP
/// header; spaces at its ends are trimmed from the header) is refused by
/// `check` and the daemon at its line, not accepted and then 401 forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_no_http_client_can_send_is_refused_at_its_line() {
    let env = Env::start(1, fast_wecom(), JdySimConfig::default()).await;
    crate::api_e2e::write_daemon_config(&env);
    for token in [
        "pässwörter-für-die-api-0123",
        "令牌令牌令牌令牌令牌令牌令牌令牌",
        " api-token-for-the-tests-0123 ",
    ] {
        let check = env
            .run_with_env(&["check"], &[("ATTENDSYNC_API_TOKEN", token)])
            .await;
        check
            .expect_code(2)
            .expect_contains("attendsync.toml:3")
            .expect_contains("server.token")
            .expect_lacks(token.trim());
        let daemon = Daemon::start_with(&env, None, &[("ATTENDSYNC_API_TOKEN", token)]);
        let line = daemon
            .wait_for_line(&["server.token"], Duration::from_secs(20))
            .await;
        assert!(!line.contains(token.trim()), "{line}");
        // It exits on its own at once; a SIGTERM after a second finds it gone.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (code, log) = daemon.terminate().await;
        assert_eq!(code, 2, "{log}");
    }
    // Exactly 16 visible characters, spaces inside: still a token.
    let check = env
        .run_with_env(&["check"], &[("ATTENDSYNC_API_TOKEN", "sixteen ch token")])
        .await;
    check.expect_code(0);
}

/// A job whose file name holds `#`, `?` or `%`: its "Rerun this month"
/// button posts to that job, not to a path cut at the `#`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rerun_button_of_a_job_with_url_characters_in_its_name_posts_to_that_job() {
    let env = Env::start(3, fast_wecom(), JdySimConfig::default()).await;
    let name = "hr#2?x%";
    let encoded = "hr%232%3Fx%25";
    let job = env.job_text(FAST_SOURCE, FAST_TARGET).replacen(
        "description = \"test job\"",
        "description = \"test job\"\nschedule = \"0 0 3 1 1 *\"",
        1,
    );
    env.write(&format!("jobs/{name}.toml"), &job);
    let api = Api::start(&env).await;
    let (status, answer) = api
        .post(
            &format!("/api/v1/jobs/{encoded}/runs"),
            json!({"month": MONTH}),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    let first = api
        .until_done(answer["run"].as_i64().unwrap_or(0), Duration::from_secs(60))
        .await;
    assert_eq!(first["job"], name, "{first}");

    let cookie = api.sign_in().await;
    let html = get_page(&api, "/", &cookie).await;
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no csrf in {html}"))
        .to_string();
    let action = html
        .split("action=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .find(|a| a.ends_with("/rerun") && !a.contains("wecom_monthly"))
        .unwrap_or_else(|| panic!("no rerun form of {name}: {html}"))
        .replace("&amp;", "&");
    // Where a browser posts the form: the action resolved against the page.
    let base = reqwest::Url::parse(&api.base).unwrap_or_else(|e| panic!("{e}"));
    let url = base.join(&action).unwrap_or_else(|e| panic!("{e}"));
    let answer = api
        .http
        .post(url.clone())
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", &cookie)
        .body(format!("csrf={csrf}&month={MONTH}&employees=u0001"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answer.status().as_u16(), 303, "{url} ({action})");
    let location = answer.headers()["location"]
        .to_str()
        .unwrap_or_default()
        .to_string();
    let id: i64 = location
        .trim_start_matches("/runs/")
        .parse()
        .unwrap_or_else(|_| panic!("{location}"));
    let run = api.until_done(id, Duration::from_secs(60)).await;
    assert_eq!(run["job"], name, "{run}");
    let (code, log) = api.daemon.terminate().await;
    assert_eq!(code, 0, "{log}");
}

/// A requested run that SIGTERM stops part-way is `interrupted` (README: "done
/// (or interrupted by a daemon stop)"), not `done` as if it had finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requested_run_stopped_by_sigterm_is_interrupted_not_done() {
    let env = Env::start(300, fast_wecom(), JdySimConfig::default()).await;
    env.wecom.set_latency(Duration::from_millis(300));
    let api = Api::start(&env).await;
    let (status, answer) = api.post(RUNS, json!({"month": MONTH})).await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["run"].as_i64().unwrap_or(0);
    api.until_state(id, &["running"], Duration::from_secs(20))
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (code, log) = api.daemon.terminate().await;
    assert_eq!(code, 0, "{log}");
    assert!(
        env.rows_by_key().len() < 300,
        "the run was to be stopped part-way"
    );
    let api = Api::start(&env).await;
    let (_, run) = api.get(&format!("/api/v1/runs/{id}")).await;
    assert_eq!(run["state"], "interrupted", "{run}");
    let (code, log) = api.daemon.terminate().await;
    assert_eq!(code, 0, "{log}");
}

/// Product contract §9: the API answers JSON, errors as `{"error": "..."}`,
/// also for a wrong method (405) and a path that is not UTF-8 once decoded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_method_or_an_undecodable_path_is_answered_in_json() {
    let env = Env::start(1, fast_wecom(), JdySimConfig::default()).await;
    let api = Api::start(&env).await;
    use reqwest::Method as M;
    for (method, path, expected) in [
        (M::GET, RUNS, 405),
        (M::PUT, "/api/v1/jobs", 405),
        (M::DELETE, "/api/v1/runs/1", 405),
        (M::POST, "/api/v1/jobs/wecom_monthly/months", 405),
        (M::GET, "/api/v1/jobs/%E0%A4%A/months", 400),
        (M::POST, "/api/v1/jobs/%FF/runs", 400),
    ] {
        let answer = api
            .http
            .request(method.clone(), format!("{}{path}", api.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let status = answer.status().as_u16();
        let text = answer.text().await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{method} {path}: not JSON ({status}): {text:?}"));
        assert_eq!(status, expected, "{method} {path}: {body}");
        assert!(body["error"].is_string(), "{method} {path}: {body}");
    }
    let (code, log) = api.daemon.terminate().await;
    assert_eq!(code, 0, "{log}");
}

/// `rerun --employee` counts employees after repeats are dropped (at most
/// 1,000 different ones); the API agrees: 1,001 mentions of three employees
/// queue a rerun of those three, and 1,001 different ones are refused by both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_employees_count_once_in_the_api_as_in_the_cli() {
    let env = Env::start(3, fast_wecom(), JdySimConfig::default()).await;
    let api = Api::start(&env).await;
    let repeated: Vec<String> = (0..1001).map(|i| format!("e{}", i % 3)).collect();
    let (status, answer) = api
        .post(RUNS, json!({"month": MONTH, "employees": repeated}))
        .await;
    assert_eq!(status, 202, "{answer}");
    let run = api
        .until_done(answer["run"].as_i64().unwrap_or(0), Duration::from_secs(60))
        .await;
    assert_eq!(run["employees"], json!(["e0", "e1", "e2"]), "{run}");
    let mut args = vec!["rerun", "wecom_monthly", "--month", MONTH, "--dry-run"];
    for id in &repeated {
        args.extend(["--employee", id.as_str()]);
    }
    env.run(&args).await.expect_lacks("at most");
    let different: Vec<String> = (0..1001).map(|i| format!("e{i}")).collect();
    let (status, answer) = api
        .post(RUNS, json!({"month": MONTH, "employees": different}))
        .await;
    assert_eq!(status, 400, "{answer}");
    let mut args = vec!["rerun", "wecom_monthly", "--month", MONTH, "--dry-run"];
    for id in &different {
        args.extend(["--employee", id.as_str()]);
    }
    env.run(&args).await.expect_code(2);
    let (code, log) = api.daemon.terminate().await;
    assert_eq!(code, 0, "{log}");
}

/// DingTalk: a rerun of one employee from the CLI and the same requested
/// through the API cost the same metered calls, those of one employee, and
/// pull that employee alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dingtalk_rerun_of_one_employee_costs_the_same_from_the_cli_and_the_api() {
    use attendsync_sim::{DingtalkSimConfig, Org};
    use common::dingtalk::{fast_retry, start_dingtalk, DingEnv, FAST_LIMITS};
    let sim = start_dingtalk(
        Org::generate(30, 5),
        DingtalkSimConfig::default().with_endpoint_rate(1000),
    )
    .await;
    let env = DingEnv::start(sim).await;
    let job = format!("{}\n{FAST_LIMITS}\n{}", env.pointed_job(), fast_retry(10));
    env.write("jobs/dingtalk_monthly.toml", &job);
    let timeout = Duration::from_secs(60);
    let first = env.run_with(&["run", "--month", MONTH], &[], timeout).await;
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        common::dingtalk::all(&first)
    );
    assert_eq!(env.jdy.records().len(), 30);
    let user = env.dingtalk.org().users[7].userid.clone();
    let before = env.dingtalk.metered_calls();
    let args = [
        "rerun",
        "dingtalk_monthly",
        "--month",
        MONTH,
        "--employee",
        &user,
    ];
    let cli = env.run_with(&args, &[], timeout).await;
    assert_eq!(
        cli.status.code(),
        Some(0),
        "{}",
        common::dingtalk::all(&cli)
    );
    let cli_calls = env.dingtalk.metered_calls() - before;

    env.write(
        "attendsync.toml",
        "[server]\nlisten = \"127.0.0.1:0\"\ntoken = \"${ATTENDSYNC_API_TOKEN}\"\n",
    );
    let mut daemon = env
        .command(&["daemon"])
        .env("ATTENDSYNC_API_TOKEN", TOKEN)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let base = {
        use tokio::io::AsyncBufReadExt;
        let stderr = daemon.stderr.take().unwrap_or_else(|| panic!("no stderr"));
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        let find = async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.split("address=").nth(1) {
                    return rest.split_whitespace().next().map(str::to_string);
                }
            }
            None
        };
        let address = tokio::time::timeout(Duration::from_secs(20), find)
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("the daemon did not serve"));
        // Keep draining stderr so that the daemon never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        format!("http://{address}")
    };
    let http = attendsync::http::client(Duration::from_secs(10)).unwrap_or_else(|e| panic!("{e}"));
    let before = env.dingtalk.metered_calls();
    let answer: Value = http
        .post(format!("{base}/api/v1/jobs/dingtalk_monthly/runs"))
        .bearer_auth(TOKEN)
        .json(&json!({"month": MONTH, "employees": [user]}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let id = answer["run"].as_i64().unwrap_or_else(|| panic!("{answer}"));
    let deadline = Instant::now() + timeout;
    let run = loop {
        let run: Value = http
            .get(format!("{base}/api/v1/runs/{id}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if run["state"] == "done" {
            break run;
        }
        assert!(Instant::now() < deadline, "not done: {run}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(run["run"]["status"], "ok", "{run}");
    assert_eq!(run["run"]["command"], "rerun --employee", "{run}");
    assert_eq!(run["run"]["months"][0]["counts"]["pulled"], 1, "{run}");
    let api_calls = env.dingtalk.metered_calls() - before;
    assert_eq!(api_calls, cli_calls, "API and CLI spend alike");
    assert!(api_calls <= 3, "one employee's calls: {api_calls}");
    assert_eq!(env.jdy.records().len(), 30);
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &daemon.id().unwrap_or(0).to_string()])
        .status();
    let status = tokio::time::timeout(Duration::from_secs(10), daemon.wait())
        .await
        .unwrap_or_else(|_| panic!("no exit within 10 s of SIGTERM"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.code(), Some(0));
}

/// Markup in a job name, an employee id and an error reaches the page as
/// text; a CSRF token of another session is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markup_stays_text_on_the_page_and_csrf_tokens_belong_to_their_session() {
    let env = Env::start(2, fast_wecom(), JdySimConfig::default()).await;
    let name = "<img src=x onerror=alert(1)>";
    let job = env.job_text(FAST_SOURCE, FAST_TARGET).replacen(
        "description = \"test job\"",
        "description = \"test job\"\nschedule = \"0 0 3 1 1 *\"",
        1,
    );
    env.write(&format!("jobs/{name}.toml"), &job);
    let api = Api::start(&env).await;
    let evil = "<script>alert(1)</script>";
    let path = "/api/v1/jobs/%3Cimg%20src=x%20onerror=alert(1)%3E/runs";
    let (status, answer) = api
        .post(path, json!({"month": MONTH, "employees": [evil]}))
        .await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["run"].as_i64().unwrap_or(0);
    api.until_done(id, Duration::from_secs(60)).await;
    // A month that fails, so that an error is shown too.
    let (_, failed) = api.post(path, json!({"month": "1900-01"})).await;
    api.until_done(failed["run"].as_i64().unwrap_or(0), Duration::from_secs(60))
        .await;
    let cookie = api.sign_in().await;
    for page in ["/".to_string(), format!("/runs/{id}")] {
        let html = get_page(&api, &page, &cookie).await;
        assert!(html.contains("&lt;img src=x"), "{page}: {html}");
        assert!(
            !html.contains(name) && !html.contains(evil),
            "{page}: {html}"
        );
    }
    let other = api.sign_in().await;
    let other_html = get_page(&api, "/", &other).await;
    let other_csrf = other_html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_string();
    let answer = api
        .http
        .post(
            format!("{}{RUNS}", api.base)
                .replace("/api/v1", "")
                .replace("/runs", "/rerun"),
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", &cookie)
        .body(format!("csrf={other_csrf}&month={MONTH}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answer.status().as_u16(), 403);
    let (code, log) = api.daemon.terminate().await;
    assert_eq!(code, 0, "{log}");
}

/// Behind a reverse proxy that sends the upstream address as `Host` (nginx's
/// default), the browser's `Origin` is the public address: with `public_url`
/// set to it, the page's forms work; another origin is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_proxy_the_forms_work_from_the_public_url() {
    let env = Env::start(2, fast_wecom(), JdySimConfig::default()).await;
    let api = Api::start(&env).await;
    drop(api);
    env.write(
        "attendsync.toml",
        "[server]\nlisten = \"127.0.0.1:0\"\ntoken = \"${ATTENDSYNC_API_TOKEN}\"\npublic_url = \"https://sync.example.com/\"\n",
    );
    let daemon = Daemon::start_with(&env, None, &[("ATTENDSYNC_API_TOKEN", TOKEN)]);
    let line = daemon
        .wait_for_line(&["serving the API", "address="], Duration::from_secs(20))
        .await;
    let address = line
        .split("address=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line}"))
        .to_string();
    let http = attendsync::http::client(Duration::from_secs(10)).unwrap_or_else(|e| panic!("{e}"));
    let api = Api {
        daemon,
        base: format!("http://{address}"),
        http,
    };
    let cookie = api.sign_in().await;
    let html = get_page(&api, "/", &cookie).await;
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_string();
    let post = |origin: &'static str| {
        api.http
            .post(format!("{}/jobs/wecom_monthly/rerun", api.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", &cookie)
            .header("origin", origin)
            .body(format!("csrf={csrf}&month={MONTH}"))
            .send()
    };
    let foreign = post("https://evil.example.com").await;
    assert_eq!(foreign.map(|a| a.status().as_u16()).ok(), Some(403));
    let public = post("https://sync.example.com").await;
    assert_eq!(public.map(|a| a.status().as_u16()).ok(), Some(303));
    let (code, log) = api.daemon.terminate().await;
    assert_eq!(code, 0, "{log}");
}

/// A job removed from the config (SIGHUP) leaves `/metrics`' gauges: its
/// last success would otherwise stay frozen and, 26 hours on, page someone
/// about a job that no longer exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_removed_by_a_reload_leaves_the_gauges() {
    let env = Env::start(2, fast_wecom(), JdySimConfig::default()).await;
    let job = env.job_text(FAST_SOURCE, FAST_TARGET).replacen(
        "description = \"test job\"",
        "description = \"test job\"\nschedule = \"0 0 3 1 1 *\"",
        1,
    );
    env.write("jobs/retired.toml", &job);
    let api = Api::start(&env).await;
    let (status, answer) = api
        .post("/api/v1/jobs/retired/runs", json!({"month": MONTH}))
        .await;
    assert_eq!(status, 202, "{answer}");
    api.until_done(answer["run"].as_i64().unwrap_or(0), Duration::from_secs(60))
        .await;
    // A run of the default months, so that a last success is recorded.
    let run = env.run(&["run", "retired"]).await;
    run.expect_code(0);
    let metrics = || async {
        api.http
            .get(format!("{}/metrics", api.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .text()
            .await
            .unwrap_or_default()
    };
    let gauges = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.contains("sync_job=\"retired\""))
            .filter(|l| l.contains("last_success") || l.contains("queued_runs"))
            .map(str::to_string)
            .collect()
    };
    let before = metrics().await;
    assert_eq!(gauges(&before).len(), 2, "{before}");
    std::fs::remove_file(env.path().join("jobs/retired.toml")).unwrap_or_else(|e| panic!("{e}"));
    api.daemon.signal("HUP");
    api.daemon
        .wait_for_line(&["job files reloaded", "jobs=1"], Duration::from_secs(10))
        .await;
    let after = metrics().await;
    assert_eq!(gauges(&after), Vec::<String>::new(), "{after}");
    let (code, log) = api.daemon.terminate().await;
    assert_eq!(code, 0, "{log}");
}

/// Starts a requested rerun of the month and three more behind it, and kills
/// the daemon with SIGKILL part-way through the first; restarts it. The id of
/// the first and those of the queued ones.
async fn kill_during_a_requested_run(env: &Env) -> (Api, i64, Vec<i64>) {
    env.wecom.set_latency(Duration::from_millis(150));
    let api = Api::start(env).await;
    let (_, first) = api.post(RUNS, json!({"month": MONTH})).await;
    let first = first["run"].as_i64().unwrap_or(0);
    let mut queued = Vec::new();
    for body in [
        json!({"month": MONTH, "force": true}),
        json!({"month": "2026-11"}),
        json!({"month": MONTH}),
    ] {
        let (status, answer) = api.post(RUNS, body).await;
        assert_eq!(status, 202, "{answer}");
        queued.push(answer["run"].as_i64().unwrap_or(0));
    }
    api.until_state(first, &["running"], Duration::from_secs(20))
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.jdy.records().len() < 40 {
        assert!(Instant::now() < deadline, "no records written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    api.daemon.signal("KILL");
    // The killed process's lease runs out before the next takes it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(api);
    env.wecom.set_latency(Duration::from_millis(0));
    (Api::start(env).await, first, queued)
}

/// kill -9 during a requested run with more queued: the one running is
/// interrupted, the queued ones run after the restart, once each, and the
/// form ends with every record once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_queued_requests_run_once_and_the_running_one_is_interrupted() {
    let env = Env::start(200, fast_wecom(), JdySimConfig::default()).await;
    let (api, first, queued) = kill_during_a_requested_run(&env).await;
    let (_, run) = api.get(&format!("/api/v1/runs/{first}")).await;
    assert_eq!(run["state"], "interrupted", "{run}");
    let mut run_ids = Vec::new();
    for id in queued {
        let run = api.until_done(id, Duration::from_secs(120)).await;
        assert_eq!(run["run"]["status"], "ok", "{run}");
        run_ids.push(run["run"]["id"].as_i64().unwrap_or(0));
    }
    run_ids.dedup();
    assert_eq!(run_ids.len(), 3, "one run each: {run_ids:?}");
    // Panics on a duplicate key.
    let rows = env.rows_by_key();
    assert_eq!(rows.len(), 400, "200 employees × 2 months");
    let (code, log) = api.daemon.terminate().await;
    assert_eq!(code, 0, "{log}");
}

/// A requested run killed part-way keeps its link to its run, which shows how
/// far it got, not `"run": null`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requested_run_killed_part_way_still_shows_its_run() {
    let env = Env::start(200, fast_wecom(), JdySimConfig::default()).await;
    let (api, first, _) = kill_during_a_requested_run(&env).await;
    let (_, run) = api.get(&format!("/api/v1/runs/{first}")).await;
    assert_eq!(run["state"], "interrupted", "{run}");
    assert!(run["run"]["id"].is_i64(), "the killed run is shown: {run}");
    let (code, log) = api.daemon.terminate().await;
    assert_eq!(code, 0, "{log}");
}

/// A page that must answer 200; its HTML.
async fn get_page(api: &Api, path: &str, cookie: &str) -> String {
    let (status, html) = api.page(path, cookie).await;
    assert_eq!(status, 200, "{path}: {html}");
    html
}
