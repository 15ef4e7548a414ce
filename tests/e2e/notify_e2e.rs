//! End to end: the built binary alerts once per failure
//! streak across separate runs (cron), says "recovered", and sends nothing for
//! a run stopped by SIGTERM.

use crate::common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::Router;
use serde_json::Value;

use attendsync_sim::JdySimConfig;
use common::Env;

type Received = Arc<Mutex<Vec<Value>>>;

async fn receive(State(got): State<Received>, body: String) -> &'static str {
    let value = serde_json::from_str(&body).unwrap_or(Value::Null);
    got.lock().unwrap_or_else(|e| e.into_inner()).push(value);
    "ok"
}

/// A generic webhook on loopback that keeps every body it gets.
async fn webhook() -> (SocketAddr, Received, tokio::task::JoinHandle<()>) {
    let got: Received = Arc::default();
    let app = Router::new().fallback(receive).with_state(got.clone());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("addr: {e}"));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, got, task)
}

fn alerts(got: &Received) -> Vec<String> {
    got.lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|v| v["alert"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// Starts a run, sends SIGTERM once Jiandaoyun got a write, waits (bounded)
/// for the exit.
async fn run_and_terminate(env: &Env) -> std::process::ExitStatus {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_attendsync"))
        .args(["run", "--month", "2026-10", "--config-dir"])
        .arg(env.path())
        .env_remove("ATTENDSYNC_DB")
        .env("WECOM_CORP_ID", common::CORP_ID)
        .env("WECOM_CHECKIN_SECRET", common::SECRET)
        .env("JDY_API_KEY", common::API_KEY)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn: {e}"));
    let deadline = Instant::now() + Duration::from_secs(90);
    while env.jdy.write_calls() == 0 {
        assert!(Instant::now() < deadline, "no write within 90 s");
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the run ended ({status}) before it was stopped");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let pid = child.id().unwrap_or_else(|| panic!("the run is gone"));
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap_or_else(|e| panic!("kill: {e}"));
    assert!(sent.success());
    tokio::time::timeout(common::RUN_TIMEOUT, child.wait())
        .await
        .unwrap_or_else(|_| panic!("the run did not stop after SIGTERM"))
        .unwrap_or_else(|e| panic!("wait: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_sends_nothing_and_a_failure_streak_alerts_once_then_recovered() {
    let (addr, got, server) = webhook().await;
    let jdy = JdySimConfig {
        latency: Duration::from_millis(150),
        ..JdySimConfig::default()
    };
    let env = Env::start(600, common::fast_wecom(), jdy).await;
    let notify = format!("\n[notify]\nlanguage = \"en\"\nwebhook = \"http://{addr}/hook\"\n");
    let text = format!(
        "{}{notify}",
        env.job_text(common::FAST_RETRY, common::FAST_TARGET_RETRY)
    );
    env.write("jobs/wecom_monthly.toml", &text);

    let status = run_and_terminate(&env).await;
    assert_ne!(
        status.code(),
        Some(0),
        "the run was meant to be stopped early"
    );
    assert!(
        alerts(&got).is_empty(),
        "alerts after SIGTERM: {:?}",
        alerts(&got)
    );

    // Two failed runs (separate processes): one alert.
    for _ in 0..2 {
        env.run_with_env(
            &["run", "--month", "2026-10"],
            &[("WECOM_CHECKIN_SECRET", "wrong-secret")],
        )
        .await
        .expect_code(1);
    }
    assert_eq!(alerts(&got), ["failed"]);
    // The next good run: "recovered".
    env.run(&["run", "--month", "2026-10"]).await.expect_code(0);
    assert_eq!(alerts(&got), ["failed", "recovered"]);
    let bodies = got.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(bodies[1]["failed_runs"], 2, "{}", bodies[1]);
    let text = bodies[1]["text"].as_str().unwrap_or_default();
    assert!(text.contains("RECOVERED"), "{text}");
    assert!(
        !text.contains(common::SECRET) && !text.contains(common::API_KEY),
        "{text}"
    );
    server.abort();
}
