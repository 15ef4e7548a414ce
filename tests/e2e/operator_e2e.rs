//! For operators: `check --remote`, `--json`, `status`.

use crate::common;

use attendsync_sim::{JdySimConfig, WecomSimConfig};
use common::Env;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_remote_reports_a_mapped_field_missing_from_the_form() {
    let widgets: Vec<(String, String)> = common::shipped_widgets()
        .into_iter()
        .filter(|(name, _)| name != "late_count")
        .map(|(name, kind)| {
            if name == "groupid" {
                (name, "text".to_string())
            } else {
                (name, kind)
            }
        })
        .collect();
    let jdy = JdySimConfig {
        widgets,
        ..JdySimConfig::default()
    };
    let env = Env::start(3, WecomSimConfig::default(), jdy).await;
    env.write_job("", "");
    env.run(&["check"]).await.expect_code(0);
    let run = env.run(&["check", "--remote"]).await;
    run.expect_code(2)
        .expect_contains(
            "`late_count` (from exception_infos[exception=1].count) is not a field of the form",
        )
        .expect_contains("`groupid` sends a number value")
        .expect_contains("the form's fields are: userid")
        .expect_lacks(common::SECRET)
        .expect_lacks(common::API_KEY);
    assert_eq!(
        env.wecom.calls("gettoken"),
        1,
        "the source login was checked"
    );
    assert_eq!(env.jdy.write_calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_remote_passes_on_a_matching_form_and_json_summary_parses() {
    let env = Env::start(3, WecomSimConfig::default(), JdySimConfig::default()).await;
    env.write_job("", "");
    env.run(&["check", "--remote"])
        .await
        .expect_code(0)
        .expect_contains("check out");
    let run = env.run(&["run", "--month", "2026-10", "--json"]).await;
    run.expect_code(0);
    let summary: serde_json::Value = serde_json::from_str(run.stdout().trim())
        .unwrap_or_else(|e| panic!("--json prints one JSON document: {e}\n{}", run.stdout()));
    assert_eq!(summary["exit_code"], 0);
    assert_eq!(summary["jobs"][0]["job"], "wecom_monthly");
    assert_eq!(summary["jobs"][0]["months"][0]["month"], "2026-10");
    assert_eq!(summary["jobs"][0]["months"][0]["created"], 3);
    let status = env.run(&["status"]).await;
    status
        .expect_code(0)
        .expect_contains("Recent runs")
        .expect_contains("By job and month");
}

/// A local receiver recording (path, body) of every request it gets.
async fn receiver() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
) {
    use axum::http::Uri;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |uri: Uri, body: String| {
        let log = log.clone();
        async move {
            log.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((uri.path().to_string(), body));
            axum::Json(serde_json::json!({"errcode": 0, "errmsg": "ok"}))
        }
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("addr: {e}"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_run_alerts_each_configured_target_once_without_secrets() {
    let env = Env::start(20, WecomSimConfig::default(), JdySimConfig::default()).await;
    let (url, seen) = receiver().await;
    env.write_job("", "");
    let job =
        std::fs::read_to_string(env.path().join("jobs/wecom_monthly.toml")).unwrap_or_default();
    let robot_key = "robot-key-Secret-123456";
    let job = format!(
        "{job}\n[notify]\nwecom_robot = \"{url}/cgi-bin/webhook/send?key={robot_key}\"\nwebhook = \"{url}/hooks/attendsync\"\n"
    );
    env.write("jobs/wecom_monthly.toml", &job);
    let victim = env.wecom.org().users[3].userid.clone();
    env.wecom.patch_record(
        &victim,
        "/summary_info/work_days",
        serde_json::json!("many"),
    );

    let run = env.run(&["run", "--month", "2026-10"]).await;
    run.expect_code(1).expect_lacks(robot_key);
    let requests = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let paths: Vec<&str> = requests.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths
            .iter()
            .filter(|p| **p == "/cgi-bin/webhook/send")
            .count(),
        1,
        "{paths:?}"
    );
    assert_eq!(
        paths.iter().filter(|p| **p == "/hooks/attendsync").count(),
        1,
        "{paths:?}"
    );
    for (path, body) in &requests {
        assert!(
            body.contains("wecom_monthly") && body.contains("2026-10"),
            "{path}: {body}"
        );
        assert!(
            body.contains(&victim),
            "the first errors are in the alert: {body}"
        );
        for secret in [common::SECRET, common::API_KEY, robot_key] {
            assert!(!body.contains(secret), "{path} carries a secret: {body}");
        }
    }

    // The run that succeeds next ends the failure streak: "recovered" to each
    // target; a run that succeeds after it sends nothing (alerts are on
    // failure by default).
    env.wecom
        .patch_record(&victim, "/summary_info/work_days", serde_json::json!(20));
    env.run(&["run", "--month", "2026-10"]).await.expect_code(0);
    let after = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(after.len(), requests.len() + 2, "{after:?}");
    for (path, body) in &after[requests.len()..] {
        assert!(
            body.contains("已恢复") || body.contains("\"recovered\""),
            "{path}: {body}"
        );
    }
    env.run(&["run", "--month", "2026-10"]).await.expect_code(0);
    assert_eq!(
        seen.lock().unwrap_or_else(|e| e.into_inner()).len(),
        after.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_or_month_named_twice_runs_once() {
    let env = Env::start(3, WecomSimConfig::default(), JdySimConfig::default()).await;
    env.write_job("", "");
    let run = env
        .run(&[
            "run",
            "wecom_monthly",
            "wecom_monthly",
            "--month",
            "2026-10",
            "--month",
            "2026-10",
        ])
        .await;
    run.expect_code(0);
    let lines = run
        .stdout()
        .lines()
        .filter(|l| l.starts_with("wecom_monthly 2026-10: pulled"))
        .count();
    assert_eq!(lines, 1, "one summary line:\n{}", run.stdout());
    assert_eq!(common::counts(&run.stdout(), "2026-10"), (3, 3, 0, 0, 0));
    let store = attendsync::store::Store::open(&env.db()).unwrap_or_else(|e| panic!("{e}"));
    let runs = store
        .recent_runs(None, 10)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(runs.len(), 1, "one run of the job: {runs:?}");
}

/// Stdout of a `--json` run, parsed; panics unless it is one JSON document.
fn json_stdout(run: &common::Run) -> serde_json::Value {
    serde_json::from_str(run.stdout().trim())
        .unwrap_or_else(|e| panic!("--json prints one JSON document: {e}\n{}", run.all()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_runs_answer_configuration_and_database_errors_on_stdout() {
    let env = Env::start(3, WecomSimConfig::default(), JdySimConfig::default()).await;
    env.write_job("", "");
    // A configuration error: exit 2, and the same error as JSON on stdout.
    let bad = env.job_text("secret_typo = 1", "");
    env.write("jobs/wecom_monthly.toml", &bad);
    let run2 = env
        .run(&["rerun", "wecom_monthly", "--month", "2026-10", "--json"])
        .await;
    run2.expect_code(2);
    let answer = json_stdout(&run2);
    assert_eq!(answer["exit_code"], 2, "{answer}");
    let error = answer["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("`source.secret_typo`: unknown key"),
        "{answer}"
    );

    // A database error: the documented exit status 1, as JSON too.
    env.write_job("", "");
    let db_dir = env.path().join("not-a-file.db");
    std::fs::create_dir_all(&db_dir).unwrap_or_else(|e| panic!("{e}"));
    let db = db_dir.display().to_string();
    let run = env
        .run(&["run", "--month", "2026-10", "--json", "--db", &db])
        .await;
    run.expect_code(1);
    let answer = json_stdout(&run);
    assert_eq!(answer["exit_code"], 1, "{answer}");
    assert!(
        answer["error"].as_str().unwrap_or_default().contains(&db),
        "{answer}"
    );
    assert_eq!(env.jdy.write_calls(), 0);
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reads_without_writing_and_names_what_it_cannot_find() {
    let env = Env::start(3, WecomSimConfig::default(), JdySimConfig::default()).await;
    env.write_job("", "");
    // Before any run: no database, and `status` does not make one.
    let typo = env.path().join("attendsyncc.db");
    let typo_arg = typo.display().to_string();
    env.run(&["status", "--db", &typo_arg])
        .await
        .expect_code(2)
        .expect_contains(&format!("no database at {typo_arg}"));
    assert!(!typo.exists(), "status created {typo_arg}");
    env.run(&["status"]).await.expect_code(2);
    assert!(!env.db().exists(), "status created the default database");

    env.run(&["run", "--month", "2026-10"]).await.expect_code(0);
    #[cfg(unix)]
    assert_eq!(mode(&env.db()), 0o600, "the database is owner-only");
    let before = std::fs::read(env.db()).unwrap_or_else(|e| panic!("{e}"));
    env.run(&["status", "wecom_monthly"])
        .await
        .expect_code(0)
        .expect_contains("Recent runs");
    env.run(&["status", "wecom_monthy"])
        .await
        .expect_code(2)
        .expect_contains("unknown job \"wecom_monthy\"; known jobs: wecom_monthly")
        .expect_lacks("No runs recorded yet");
    let after = std::fs::read(env.db()).unwrap_or_else(|e| panic!("{e}"));
    assert!(before == after, "status changed the database file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_with_sigkill_shows_as_interrupted() {
    use attendsync::store::Store;
    let env = Env::start(3, WecomSimConfig::default(), JdySimConfig::default()).await;
    env.write_job("", "");
    env.run(&["run", "--month", "2026-10"]).await.expect_code(0);
    // What `kill -9` leaves: a run still marked running, its lease expired or
    // taken by no one.
    let store = Store::open(&env.db()).unwrap_or_else(|e| panic!("{e}"));
    let killed = store
        .start_run("wecom_monthly", "run", chrono::Utc::now())
        .unwrap_or_else(|e| panic!("{e}"));
    let status = env.run(&["status"]).await;
    status.expect_code(0);
    let line = status
        .stdout()
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{killed} ")))
        .unwrap_or_else(|| panic!("no line for run {killed}:\n{}", status.stdout()))
        .to_string();
    assert!(line.contains("interrupted"), "{line}");
    assert!(!line.contains("running"), "{line}");

    // While another live process holds the lease, its latest run is running.
    let held = store
        .start_run("wecom_monthly", "run", chrono::Utc::now())
        .unwrap_or_else(|e| panic!("{e}"));
    let alive = |_: &str| false;
    store
        .acquire_lease(
            "wecom_monthly",
            "elsewhere:1:x",
            std::time::Duration::from_secs(60),
            chrono::Utc::now(),
            &alive,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let status = env.run(&["status"]).await;
    let line_of = |id: i64| {
        status
            .stdout()
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{id} ")))
            .map(str::to_string)
            .unwrap_or_default()
    };
    assert!(line_of(held).contains("running"), "{}", status.stdout());
    assert!(
        line_of(killed).contains("interrupted"),
        "{}",
        status.stdout()
    );
    store
        .release_lease("wecom_monthly", "elsewhere:1:x")
        .unwrap_or_else(|e| panic!("{e}"));

    // The next run of the job marks both in the database.
    env.run(&["run", "--month", "2026-10"]).await.expect_code(0);
    let runs = store
        .recent_runs(Some("wecom_monthly"), 10)
        .unwrap_or_else(|e| panic!("{e}"));
    let status_of = |id: i64| {
        runs.iter()
            .find(|r| r.id == id)
            .map(|r| r.status.clone())
            .unwrap_or_default()
    };
    assert_eq!(status_of(killed), "interrupted");
    assert_eq!(status_of(held), "interrupted");
    assert_eq!(runs[0].status, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_refuses_an_empty_secret_and_warns_of_a_limit_above_quota() {
    let env = Env::start(3, WecomSimConfig::default(), JdySimConfig::default()).await;
    env.write_job(
        "[source.limits]\n\"checkin/getcheckin_monthdata\" = \"120/min\"\n",
        "",
    );
    env.run(&["check"])
        .await
        .expect_code(0)
        .expect_contains("warning: ")
        .expect_contains("120/min is above WeCom's documented quota of 60/min");
    env.run_with_env(&["check"], &[("WECOM_CHECKIN_SECRET", "")])
        .await
        .expect_code(2)
        .expect_contains(
            "`source.secret`: is empty: environment variable `WECOM_CHECKIN_SECRET` is set but empty",
        );
    env.write_job("", "[target.limits]\n\"data/bach_create\" = \"5/s\"\n");
    env.run(&["check"])
        .await
        .expect_code(2)
        .expect_contains("`target.limits.\"data/bach_create\"`: unknown Jiandaoyun endpoint; known endpoints: \"data/batch_create\"");
}

/// A Jiandaoyun that answers `widget/list` with an endless chunked stream: the run
/// fails within seconds, naming the endpoint and the cap, instead of growing until
/// the kernel kills it (the cap bounds memory; the timeout only bounds time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_answer_fails_the_run_at_the_cap() {
    let env = Env::start(5, WecomSimConfig::default(), JdySimConfig::default()).await;
    let endless = || async {
        let chunk = axum::body::Bytes::from(format!("{{\"widgets\":[{}", "{},".repeat(8192)));
        let stream =
            futures::stream::repeat_with(move || Ok::<_, std::convert::Infallible>(chunk.clone()));
        axum::body::Body::from_stream(stream)
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("addr: {e}"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, axum::Router::new().fallback(endless)).await;
    });
    env.write_job("", "");
    let job = std::fs::read_to_string(env.path().join("jobs/wecom_monthly.toml"))
        .unwrap_or_default()
        .replace(
            &format!("base_url = \"{}\"", env.jdy.base_url()),
            &format!("base_url = \"http://{addr}\""),
        );
    assert!(job.contains(&addr.to_string()), "{job}");
    env.write("jobs/wecom_monthly.toml", &job);

    let started = std::time::Instant::now();
    let run = env.run(&["run", "--month", "2026-10"]).await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{}",
        run.all()
    );
    assert_ne!(run.code(), 0, "{}", run.all());
    run.expect_contains("widget/list")
        .expect_contains("1 MiB cap");
}
