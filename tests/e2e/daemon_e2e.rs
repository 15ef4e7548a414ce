//! Daemon mode: schedules fire, SIGTERM stops cleanly,
//! missed runs are caught up exactly once.

use crate::common;

use std::time::{Duration, Instant};

use attendsync::store::{RunStatus, Store};
use attendsync_sim::{JdySimConfig, WecomSimConfig};
use common::daemon::Daemon;
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
    // Start-up noise tokio-cron-scheduler (used before) logged at INFO.
    for noise in ["Job creator created", "Uninited"] {
        assert!(!stderr.contains(noise), "{noise:?} in: {stderr}");
    }
}

/// The job with a schedule in a timezone.
fn job_in_zone(env: &Env, schedule: &str, timezone: &str) {
    job_with_schedule(env, schedule);
    let path = env.path().join("jobs/wecom_monthly.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
    env.write(
        "jobs/wecom_monthly.toml",
        &text.replacen(
            "description = \"test job\"",
            &format!("description = \"test job\"\ntimezone = \"{timezone}\""),
            1,
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spring_forward_a_job_at_0300_05_fires_15_s_after_0159_50_est() {
    let env = Env::start(3, common::fast_wecom(), JdySimConfig::default()).await;
    job_in_zone(&env, "5 0 3 * * *", "America/New_York");
    // 2027-03-14: 02:00 EST → 03:00 EDT. 03:00:05 EDT is 15 s after 01:59:50 EST.
    let daemon = Daemon::start(&env, Some("2027-03-14T01:59:50-05:00"));
    daemon
        .wait_for_line(
            &["scheduled", "next_fire=2027-03-14T03:00:05-04:00"],
            Duration::from_secs(10),
        )
        .await;
    daemon
        .wait_for_line(
            &[
                "scheduled time reached",
                "scheduled=2027-03-14T03:00:05-04:00",
                "next_fire=2027-03-15T03:00:05-04:00",
            ],
            Duration::from_secs(40),
        )
        .await;
    let waited = daemon.started.elapsed();
    assert!(
        waited >= Duration::from_secs(14) && waited < Duration::from_secs(30),
        "fired after {waited:?}, expected about 15 s"
    );
    // The run syncs the month of the daemon's clock (the simulator has no
    // reports for a month after the real today).
    daemon
        .wait_for_line(
            &["wecom_monthly 2027-03: pulled", "exit=0"],
            Duration::from_secs(60),
        )
        .await;
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, 0, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fall_back_0130_runs_once_and_0230_keeps_firing_after_the_change() {
    let env = Env::start(3, common::fast_wecom(), JdySimConfig::default()).await;
    // 2026-11-01: 02:00 EDT → 01:00 EST; 01:30 happens twice.
    job_in_zone(&env, "0 30 1 * * *", "America/New_York");
    let daemon = Daemon::start(&env, Some("2026-11-01T01:29:56-04:00"));
    // The first 01:30 fires; the next fire is tomorrow's, not 01:30 EST today.
    daemon
        .wait_for_line(
            &[
                "scheduled time reached",
                "scheduled=2026-11-01T01:30:00-04:00",
                "next_fire=2026-11-02T01:30:00-05:00",
            ],
            Duration::from_secs(30),
        )
        .await;
    daemon
        .wait_for_line(
            &["wecom_monthly 2026-11: pulled", "exit=0"],
            Duration::from_secs(60),
        )
        .await;
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, 0, "{log}");
    assert_eq!(log.matches("scheduled time reached").count(), 1, "{log}");

    // The original bug: after the change a 02:30 job fired at the old offset and
    // was refused. On the day of the change and the days after, it fires at 02:30 EST.
    job_in_zone(&env, "0 30 2 * * *", "America/New_York");
    let daemon = Daemon::start(&env, Some("2026-11-02T02:29:56-05:00"));
    daemon
        .wait_for_line(
            &[
                "scheduled time reached",
                "scheduled=2026-11-02T02:30:00-05:00",
                "next_fire=2026-11-03T02:30:00-05:00",
            ],
            Duration::from_secs(30),
        )
        .await;
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, 0, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_job_files_and_a_broken_one_keeps_the_old_config() {
    let env = Env::start(3, common::fast_wecom(), JdySimConfig::default()).await;
    job_with_schedule(&env, "0 30 2 * * *");
    let mut daemon = Daemon::start(&env, None);
    daemon
        .wait_for_line(&["daemon started"], Duration::from_secs(20))
        .await;
    job_with_schedule(&env, "0 45 3 * * *");
    daemon.signal("HUP");
    daemon
        .wait_for_line(&["job files reloaded"], Duration::from_secs(10))
        .await;
    daemon
        .wait_for_line(&["schedule=0 45 3 * * *"], Duration::from_secs(10))
        .await;
    daemon.assert_running();

    // A broken file: logged at ERROR with its file and line; the old config stays.
    job_with_schedule(&env, "0 30 2 31 2 *");
    daemon.signal("HUP");
    let line = daemon
        .wait_for_line(&["ERROR", "do not load"], Duration::from_secs(10))
        .await;
    let log = daemon.log();
    assert!(
        log.contains("wecom_monthly.toml:2:") && log.contains("never fires"),
        "{line}\n{log}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    daemon.assert_running();
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, 0, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_does_not_stop_a_one_shot_run() {
    let jdy = JdySimConfig {
        latency: Duration::from_millis(400),
        ..JdySimConfig::default()
    };
    let env = Env::start(3, common::fast_wecom(), jdy).await;
    job_with_schedule(&env, "0 30 2 * * *");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_attendsync"))
        .args(["run", "--config-dir"])
        .arg(env.path())
        .env_remove("ATTENDSYNC_DB")
        .env("WECOM_CORP_ID", common::CORP_ID)
        .env("WECOM_CHECKIN_SECRET", common::SECRET)
        .env("JDY_API_KEY", common::API_KEY)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn: {e}"));
    wait_until(
        "the run to reach Jiandaoyun",
        Duration::from_secs(30),
        || !env.jdy.call_log().is_empty(),
    )
    .await;
    let pid = child
        .id()
        .unwrap_or_else(|| panic!("the run already ended"));
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap_or_else(|e| panic!("kill: {e}"));
    assert!(sent.success());
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .unwrap_or_else(|_| panic!("the run did not finish within 60 s"))
        .unwrap_or_else(|e| panic!("wait: {e}"));
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        use tokio::io::AsyncReadExt;
        let _ = err.read_to_string(&mut stderr).await;
    }
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("SIGHUP ignored"), "{stderr}");
    assert_eq!(env.rows_by_key().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_refuses_a_schedule_that_never_fires() {
    let env = Env::start(1, common::fast_wecom(), JdySimConfig::default()).await;
    job_with_schedule(&env, "0 30 2 31 2 *");
    env.run(&["check"])
        .await
        .expect_code(2)
        .expect_contains("wecom_monthly.toml:2:")
        .expect_contains("never fires");
    let run = env.run(&["daemon"]).await;
    run.expect_code(2).expect_contains("never fires");
}

/// A catch-up across a month end: the last run was on 12-24 and the daemon
/// starts on 01-07 (the shipped schedule's 01-03 run was missed). Catching up
/// once syncs January and December, which closed owed its final pull.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_up_across_a_month_end_syncs_the_month_that_closed() {
    let env = Env::start(20, common::fast_wecom(), JdySimConfig::default()).await;
    job_with_schedule(&env, "0 10 2 3,10,17,24 * *");
    env.run_with_env(&["run"], &[("ATTENDSYNC_NOW", "2026-12-24T02:10:00+08:00")])
        .await
        .expect_code(0);
    let daemon = Daemon::start(&env, Some("2027-01-07T09:00:00+08:00"));
    daemon
        .wait_for_line(&["catching up once"], Duration::from_secs(20))
        .await;
    daemon
        .wait_for_line(
            &["wecom_monthly 2026-12: pulled 20", "exit=0"],
            Duration::from_secs(60),
        )
        .await;
    daemon
        .wait_for_line(&["wecom_monthly 2027-01: pulled"], Duration::from_secs(60))
        .await;
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, 0, "{log}");
}
