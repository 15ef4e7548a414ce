//! Issue 5 acceptance for daemon mode: schedules fire, SIGTERM stops cleanly,
//! missed runs are caught up exactly once.

mod common;

use std::time::{Duration, Instant};

use attendsync::sim::{JdySimConfig, WecomSimConfig};
use attendsync::store::{RunStatus, Store};
use common::Env;

fn spawn_daemon(env: &Env) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_attendsync"))
        .args(["daemon", "--config-dir"])
        .arg(env.path())
        .env("WECOM_CORP_ID", common::CORP_ID)
        .env("WECOM_CHECKIN_SECRET", common::SECRET)
        .env("JDY_API_KEY", common::API_KEY)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn the daemon: {e}"))
}

async fn wait_until(what: &str, limit: Duration, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// SIGTERM, then the exit status and stderr; panics if it takes over 10 s.
async fn terminate(mut child: tokio::process::Child) -> (i32, String) {
    let pid = child.id().unwrap_or_else(|| panic!("daemon already gone"));
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap_or_else(|e| panic!("kill: {e}"));
    assert!(sent.success());
    let started = Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap_or_else(|_| panic!("the daemon did not exit within 10 s of SIGTERM"))
        .unwrap_or_else(|e| panic!("wait: {e}"));
    assert!(started.elapsed() < Duration::from_secs(10));
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        use tokio::io::AsyncReadExt;
        let _ = err.read_to_string(&mut stderr).await;
    }
    (status.code().unwrap_or(-1), stderr)
}

fn job_with_schedule(env: &Env, schedule: &str) {
    let limits = "[source.limits]\n\"checkin/getcheckin_monthdata\" = \"6000/min\"\n\"user/simplelist\" = \"100/s\"\n";
    let text = env.job_text(limits, "").replace(
        "description = \"test job\"",
        // One month per fire whatever today's date: through the 5th a run also
        // syncs the previous month, and the counts below are of one month.
        &format!(
            "description = \"test job\"\nschedule = \"{schedule}\"\nprevious_month_until_day = 0"
        ),
    );
    env.write("jobs/wecom_monthly.toml", &text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_second_schedule_fires_and_sigterm_stops_cleanly() {
    let jdy = JdySimConfig {
        latency: Duration::from_millis(30),
        ..JdySimConfig::default()
    };
    let wecom = WecomSimConfig {
        limits: vec![],
        ..WecomSimConfig::default()
    };
    let env = Env::start(300, wecom, jdy).await;
    job_with_schedule(&env, "*/2 * * * * *");
    let child = spawn_daemon(&env);
    wait_until(
        "the first scheduled run to write every record",
        Duration::from_secs(60),
        || env.jdy.records().len() == 300,
    )
    .await;
    // Let a later fire start, then stop while it works.
    let calls = env.wecom.calls("checkin/getcheckin_monthdata");
    wait_until("a second fire", Duration::from_secs(30), || {
        env.wecom.calls("checkin/getcheckin_monthdata") > calls
    })
    .await;
    let (code, stderr) = terminate(child).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("next_fire"),
        "start-up lists the next fire time: {stderr}"
    );
    assert_eq!(env.rows_by_key().len(), 300);
    let store = Store::open(&env.db()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        store.pending_count(None).unwrap_or(99),
        0,
        "no pending batch left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_run_is_caught_up_exactly_once() {
    let wecom = WecomSimConfig {
        limits: vec![],
        ..WecomSimConfig::default()
    };
    let env = Env::start(50, wecom, JdySimConfig::default()).await;
    job_with_schedule(&env, "0 30 2 * * *");
    {
        // A successful run two days ago: at least one 02:30 was missed since.
        let store = Store::open(&env.db()).unwrap_or_else(|e| panic!("{e}"));
        let then = chrono::Utc::now() - chrono::Duration::days(2);
        let id = store
            .start_run("wecom_monthly", "run", then)
            .unwrap_or_else(|e| panic!("{e}"));
        store
            .finish_run(id, RunStatus::Ok, None, then)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let runs = |env: &Env| {
        Store::open(&env.db())
            .and_then(|s| s.recent_runs(Some("wecom_monthly"), 100))
            .map(|r| r.len())
            .unwrap_or(0)
    };
    let child = spawn_daemon(&env);
    wait_until("the catch-up run", Duration::from_secs(60), || {
        env.jdy.records().len() == 50
    })
    .await;
    wait_until(
        "the catch-up run to finish",
        Duration::from_secs(30),
        || {
            Store::open(&env.db())
                .and_then(|s| s.last_success("wecom_monthly"))
                .ok()
                .flatten()
                .is_some_and(|t| t > chrono::Utc::now() - chrono::Duration::minutes(5))
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (code, stderr) = terminate(child).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("catching up once"), "{stderr}");
    assert_eq!(runs(&env), 2, "the seeded run and one catch-up");

    // Started again, nothing was missed since the catch-up: no run.
    let child = spawn_daemon(&env);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (code, _) = terminate(child).await;
    assert_eq!(code, 0);
    assert_eq!(runs(&env), 2, "no second catch-up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_rust_log_other_crates_stay_out_of_info() {
    let env = Env::start(3, WecomSimConfig::default(), JdySimConfig::default()).await;
    job_with_schedule(&env, "0 30 2 * * *");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_attendsync"))
        .args(["daemon", "--config-dir"])
        .arg(env.path())
        .env("WECOM_CORP_ID", common::CORP_ID)
        .env("WECOM_CHECKIN_SECRET", common::SECRET)
        .env("JDY_API_KEY", common::API_KEY)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn the daemon: {e}"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (code, stderr) = terminate(child).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("next_fire"),
        "attendsync's own INFO lines are kept: {stderr}"
    );
    // tokio-cron-scheduler logs these at INFO when it starts.
    for noise in ["Job creator created", "Uninited"] {
        assert!(!stderr.contains(noise), "{noise:?} in: {stderr}");
    }
}
