//! Regressions found by trying to break the pace kept between runs
//! (docs/ARCHITECTURE.md "A pace is the vendor app's, not the run's"): the
//! target's and DingTalk's per-second quotas across back-to-back runs, kept
//! times that are corrupt or ahead of the clock, jobs whose limits are the
//! same but written differently, dry runs.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use attendsync_sim::{DingtalkSimConfig, JdySimConfig, Org, WecomSimConfig};

use crate::common::daemon::Daemon;
use crate::common::dingtalk::{all, fast_retry, start_dingtalk, DingEnv};
use crate::common::{fast_wecom, Env, FAST_RETRY, FAST_TARGET, FAST_TARGET_RETRY, RUN_TIMEOUT};
use crate::pace_memory_e2e::{
    assert_quota_kept, daemon_until_report_calls, one_report_a_second, two_jobs, MONTHDATA,
    ONE_A_SECOND,
};

const MONTH: &str = "2026-10";
const BATCH_CREATE: &str = "data/batch_create";

/// 250 employees synced once with the report calls paced at `rate` (the
/// simulator has no quota); the corp's pace holder.
async fn synced_with_report_quota(rate: &str) -> (Env, String) {
    let env = Env::start(250, fast_wecom(), JdySimConfig::default()).await;
    let limits = format!(
        "[source.limits]\n\"checkin/getcheckin_monthdata\" = \"{rate}\"\n\"user/simplelist\" = \"100/s\""
    );
    env.write_job(&limits, FAST_TARGET);
    env.run(&["run", "--month", MONTH]).await.expect_code(0);
    let holder = wecom_holder(&env);
    (env, holder)
}

/// `rerun` of the month started in the background, its stderr collected
/// and signals sent by pid.
fn spawn_rerun(env: &Env) -> Daemon {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_attendsync"));
    cmd.args(["rerun", "wecom_monthly", "--month", MONTH, "--config-dir"])
        .arg(env.path())
        .env_remove("ATTENDSYNC_DB")
        .env("WECOM_CORP_ID", crate::common::CORP_ID)
        .env("WECOM_CHECKIN_SECRET", crate::common::SECRET)
        .env("JDY_API_KEY", crate::common::API_KEY)
        .env("RUST_LOG", "info");
    Daemon::spawn(cmd)
}

/// The WeCom corp's pace holder as the store keeps it, read from the
/// database (`app_identity()`, docs/ARCHITECTURE.md).
fn wecom_holder(env: &Env) -> String {
    let conn = rusqlite::Connection::open(env.db()).unwrap_or_else(|e| panic!("open db: {e}"));
    conn.query_row(
        "SELECT DISTINCT holder FROM pace_departures WHERE holder LIKE 'wecom %'",
        [],
        |r| r.get(0),
    )
    .unwrap_or_else(|e| panic!("no kept WeCom pace: {e}"))
}

fn put_row(env: &Env, holder: &str, lane: &str, left_at: &str) {
    let conn = rusqlite::Connection::open(env.db()).unwrap_or_else(|e| panic!("open db: {e}"));
    // The run under way may be writing.
    conn.busy_timeout(Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("busy timeout: {e}"));
    conn.execute(
        "INSERT OR REPLACE INTO pace_departures (holder, lane, left_at) VALUES (?1, ?2, ?3)",
        rusqlite::params![holder, lane, left_at],
    )
    .unwrap_or_else(|e| panic!("write the row: {e}"));
}

fn micros_since_epoch(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_with_the_same_limits_written_in_another_order_share_the_daemons_pace() {
    // The same two limits, listed in the other order by the second job: the
    // vendor counts one quota, so the daemon's runs must share one pace.
    let env = one_report_a_second().await;
    let a = "[source.limits]\n\"checkin/getcheckin_monthdata\" = \"1/s\"\n\"user/simplelist\" = \"100/s\"";
    let b = "[source.limits]\n\"user/simplelist\" = \"100/s\"\n\"checkin/getcheckin_monthdata\" = \"1/s\"";
    two_jobs(
        &env,
        [a, b],
        FAST_TARGET,
        "schedule = \"*/3 * * * * *\"\nprevious_month_until_day = 0",
    );
    let log = daemon_until_report_calls(&env, 4, Duration::from_secs(25)).await;
    assert_quota_kept(&env, &log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_writing_one_app_back_to_back_keep_its_batch_create_quota() {
    // Jiandaoyun's batch_create scaled to 1 a second; two jobs of one app,
    // run by two processes one right after the other.
    let mut jdy = JdySimConfig::default();
    for (endpoint, calls, _) in &mut jdy.limits {
        if endpoint == BATCH_CREATE {
            *calls = 1;
        }
    }
    let env = Env::start(250, fast_wecom(), jdy).await;
    let fast_source =
        "[source.limits]\n\"checkin/getcheckin_monthdata\" = \"6000/min\"\n\"user/simplelist\" = \"100/s\"";
    let target = "[target.limits]\n\"data/batch_create\" = \"1/s\"\n\"data/list\" = \"25/s\"";
    two_jobs(&env, [fast_source, fast_source], target, "");
    let first = env.run(&["run", "first_half", "--month", MONTH]).await;
    first.expect_code(0);
    let second = env.run(&["run", "second_half", "--month", MONTH]).await;
    second.expect_code(0);
    let log = env.jdy.call_log();
    let throttled = log
        .iter()
        .filter(|c| c.endpoint == BATCH_CREATE && c.outcome.http_status() == Some(429))
        .count();
    assert_eq!(
        (env.jdy.quota_violations(), throttled),
        (0, 0),
        "{}{}",
        first.all(),
        second.all()
    );
    assert!(env.jdy.calls(BATCH_CREATE) >= 4);
    assert_eq!(env.rows_by_key().len(), 250);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dingtalk_run_then_rerun_keeps_a_per_second_quota() {
    const COLUMNVAL: &str = "topapi/attendance/getcolumnval";
    let mut config = DingtalkSimConfig::default().with_endpoint_rate(1000);
    for (endpoint, calls, _) in &mut config.limits {
        if endpoint == COLUMNVAL {
            *calls = 2;
        }
    }
    let env = DingEnv::start(start_dingtalk(Org::generate(3, 5), config).await).await;
    let limits = "[source.limits]\n\"topapi/v2/department/listsub\" = \"200/s\"\n\"topapi/v2/user/list\" = \"200/s\"\n\"topapi/attendance/getcolumnval\" = \"2/s\"\n\"topapi/attendance/getleavetimebynames\" = \"200/s\"\n";
    let job = format!("{}\n{limits}\n{}", env.pointed_job(), fast_retry(10));
    env.write("jobs/dingtalk_monthly.toml", &job);
    let first = env
        .run_with(&["run", "--month", MONTH], &[], RUN_TIMEOUT)
        .await;
    assert_eq!(first.status.code(), Some(0), "{}", all(&first));
    let rerun = env
        .run_with(
            &["rerun", "dingtalk_monthly", "--month", MONTH],
            &[],
            RUN_TIMEOUT,
        )
        .await;
    assert_eq!(rerun.status.code(), Some(0), "{}", all(&rerun));
    let log = env.dingtalk.call_log();
    let throttled = log
        .iter()
        .filter(|c| c.endpoint == COLUMNVAL && c.outcome.code() == Some(90018))
        .count();
    assert_eq!(
        (env.dingtalk.quota_violations(), throttled),
        (0, 0),
        "{}{}",
        all(&first),
        all(&rerun)
    );
    assert!(env.dingtalk.calls(COLUMNVAL) >= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_keeps_no_pace_in_a_database_it_must_not_create() {
    let env = Env::start(20, fast_wecom(), JdySimConfig::default()).await;
    env.write_job(crate::common::FAST_SOURCE, FAST_TARGET);
    env.run(&["run", "--dry-run", "--month", MONTH])
        .await
        .expect_code(0);
    assert!(!env.db().exists(), "a dry run created the database");
    env.run(&["rerun", "wecom_monthly", "--dry-run", "--month", MONTH])
        .await
        .expect_code(0);
    assert!(!env.db().exists(), "a dry rerun created the database");
    // With a database, a dry run's source calls are kept: they count too.
    env.run(&["run", "--month", MONTH]).await.expect_code(0);
    env.run(&["run", "--dry-run", "--month", MONTH])
        .await
        .expect_code(0);
    assert!(wecom_holder(&env).starts_with("wecom "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_lane_kept_does_not_cost_the_other_lanes() {
    let env = one_report_a_second().await;
    env.write_job(ONE_A_SECOND, FAST_TARGET);
    let first = env.run(&["run", "--month", MONTH]).await;
    first.expect_code(0);
    // A lane whose kept list cannot be read (a hand edit, a bad disk): the
    // report lane's kept times are still good and must hold the rerun.
    put_row(&env, &wecom_holder(&env), "user/simplelist", "[1, 2, \"x\"");
    let rerun = env.run(&["rerun", "wecom_monthly", "--month", MONTH]).await;
    rerun.expect_code(0);
    assert_quota_kept(&env, &format!("{}{}", first.all(), rerun.all()));
    assert_eq!(env.rows_by_key().len(), 250);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_times_ahead_of_the_clock_hold_a_run_an_interval_not_a_window() {
    // The wall clock was set back an hour since the last run: its kept times
    // are all in the future. Their spacing is still what it was; only the
    // last may be taken as now. Counting every one as now held the next
    // report call a whole minute.
    let (env, holder) = synced_with_report_quota("600/min").await;
    // A full minute's quota of report calls, 100 ms apart, the last an hour ahead.
    let last = SystemTime::now() + Duration::from_secs(3600);
    let times: Vec<i64> = (0..600)
        .rev()
        .map(|i| micros_since_epoch(last - Duration::from_millis(100) * i))
        .collect();
    let text = serde_json::to_string(&times).unwrap_or_default();
    put_row(&env, &holder, MONTHDATA, &text);
    let start = Instant::now();
    let rerun = env.run(&["rerun", "wecom_monthly", "--month", MONTH]).await;
    rerun.expect_code(0);
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(20),
        "the rerun took {took:?}\n{}",
        rerun.all()
    );
    assert_eq!(env.rows_by_key().len(), 250);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stopped_by_a_second_ctrl_c_keeps_its_pace_for_the_next_try() {
    // A second Ctrl-C exits at once, mid-month, before the month's keep; the
    // user's next try comes a moment later and must wait for its window.
    let env = one_report_a_second().await;
    env.write_job(ONE_A_SECOND, FAST_TARGET);
    env.run(&["run", "--month", MONTH]).await.expect_code(0);
    let rerun = spawn_rerun(&env);
    let deadline = Instant::now() + Duration::from_secs(20);
    while env.wecom.calls(MONTHDATA) < 5 {
        assert!(Instant::now() < deadline, "{}", rerun.log());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    rerun.signal("INT");
    rerun
        .wait_for_line(&["shutdown requested"], Duration::from_secs(5))
        .await;
    rerun.signal("INT");
    let (code, log) = rerun.wait_exit().await;
    assert_eq!(code, Some(130), "{log}");
    let again = env.run(&["rerun", "wecom_monthly", "--month", MONTH]).await;
    again.expect_code(0);
    assert_quota_kept(&env, &format!("{log}{}", again.all()));
    assert_eq!(env.rows_by_key().len(), 250);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_on_a_moved_logical_clock_then_one_on_the_real_clock_keep_the_quota() {
    // ATTENDSYNC_NOW moves the months and the budget's calendar, not the
    // times calls leave: the kept pace is on the real clock either way.
    let env = one_report_a_second().await;
    env.write_job(ONE_A_SECOND, FAST_TARGET);
    let first = env
        .run_with_env(
            &["run", "--month", MONTH],
            &[("ATTENDSYNC_NOW", "2027-03-14T01:59:50-05:00")],
        )
        .await;
    first.expect_code(0);
    let rerun = env.run(&["rerun", "wecom_monthly", "--month", MONTH]).await;
    rerun.expect_code(0);
    assert_quota_kept(&env, &format!("{}{}", first.all(), rerun.all()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_stopped_mid_month_by_sigterm_keeps_its_pace_for_a_run_right_after() {
    let env = one_report_a_second().await;
    let limits =
        "[source.limits]\n\"checkin/getcheckin_monthdata\" = \"1/s\"\n\"user/simplelist\" = \"100/s\"";
    let job = format!("{limits}\n{FAST_RETRY}");
    let text = env
        .job_text(&job, &format!("{FAST_TARGET}\n{FAST_TARGET_RETRY}"))
        .replace(
            "description = \"test job\"",
            "description = \"test job\"\nschedule = \"*/2 * * * * *\"\nprevious_month_until_day = 0",
        );
    env.write("jobs/wecom_monthly.toml", &text);
    let daemon = Daemon::start(&env, None);
    let deadline = Instant::now() + Duration::from_secs(20);
    while env.wecom.calls(MONTHDATA) < 2 {
        assert!(Instant::now() < deadline, "{}", daemon.log());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, 0, "{log}");
    let month = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .format("%Y-%m")
        .to_string();
    let rerun = env
        .run(&["rerun", "wecom_monthly", "--month", &month])
        .await;
    rerun.expect_code(0);
    assert_quota_kept(&env, &format!("{log}{}", rerun.all()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_wide_total_is_kept_between_runs_too() {
    // All of WeCom's calls together scaled to 20 a second, and the job's
    // `total` at that: the rerun's first calls come within a second of the
    // run's last ones.
    let wecom = WecomSimConfig {
        limits: vec![(
            attendsync_sim::GLOBAL_LIMIT.to_owned(),
            20,
            Duration::from_secs(1),
        )],
        ..WecomSimConfig::default()
    };
    let env = Env::start(250, wecom, JdySimConfig::default()).await;
    env.write_job("[source.limits]\ntotal = \"20/s\"", FAST_TARGET);
    let first = env.run(&["run", "--month", MONTH]).await;
    first.expect_code(0);
    let rerun = env.run(&["rerun", "wecom_monthly", "--month", MONTH]).await;
    rerun.expect_code(0);
    let throttled = env
        .wecom
        .call_log()
        .iter()
        .filter(|c| c.outcome.code() == Some(45009))
        .count();
    assert_eq!(
        (env.wecom.quota_violations(), throttled),
        (0, 0),
        "{}{}",
        first.all(),
        rerun.all()
    );
}

/// The report lane's kept times, in Unix microseconds.
fn kept_report_times(env: &Env, holder: &str) -> Vec<i64> {
    let conn = rusqlite::Connection::open(env.db()).unwrap_or_else(|e| panic!("open db: {e}"));
    let text: String = conn
        .query_row(
            "SELECT left_at FROM pace_departures WHERE holder = ?1 AND lane = ?2",
            rusqlite::params![holder, MONTHDATA],
            |r| r.get(0),
        )
        .unwrap_or_else(|e| panic!("no kept report lane: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_another_process_kept_during_a_run_survives_its_keep() {
    // A rerun by hand beside the daemon keeps its report calls while the
    // daemon's run is under way; the daemon's keep at its month's end must
    // not wipe them, or its next fire paces as if they never happened.
    let (env, holder) = synced_with_report_quota("120/min").await;
    let calls_before = env.wecom.calls(MONTHDATA);
    let run = spawn_rerun(&env);
    let deadline = Instant::now() + Duration::from_secs(20);
    // Its first report call left: it read the kept times already.
    while env.wecom.calls(MONTHDATA) <= calls_before {
        assert!(Instant::now() < deadline, "{}", run.log());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The other process's three report calls, just now.
    let now = SystemTime::now();
    let foreign: Vec<i64> = [300u64, 200, 100]
        .iter()
        .map(|ms| micros_since_epoch(now - Duration::from_millis(*ms)))
        .collect();
    put_row(
        &env,
        &holder,
        MONTHDATA,
        &serde_json::to_string(&foreign).unwrap_or_default(),
    );
    let (code, log) = run.wait_exit().await;
    assert_eq!(code, Some(0), "{log}");
    let kept = kept_report_times(&env, &holder);
    for t in &foreign {
        assert!(
            kept.iter().any(|k| (k - t).abs() < 1_000),
            "the other process's call at {t} was not kept: {kept:?}\n{log}"
        );
    }
}
