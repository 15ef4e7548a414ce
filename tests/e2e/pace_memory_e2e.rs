//! A vendor counts its quota per corp or app, not per run: runs one after
//! the other, two jobs of one corp, and the daemon's overlapping runs share
//! one sliding window (docs/ARCHITECTURE.md "Pacing by reserved slots").
//! Here the report quota is scaled to 1 call a second, so a pace that starts
//! afresh with a run (whose first report call comes a fraction of a second
//! after the last one of the run before) trips it.

use std::time::Duration;

use attendsync_sim::{most_calls_within, JdySimConfig, WecomSimConfig};

use crate::common::daemon::Daemon;
use crate::common::{Env, FAST_RETRY, FAST_TARGET, FAST_TARGET_RETRY};

const MONTH: &str = "2026-10";
pub(super) const MONTHDATA: &str = "checkin/getcheckin_monthdata";
pub(super) const ONE_A_SECOND: &str =
    "[source.limits]\n\"checkin/getcheckin_monthdata\" = \"1/s\"\n\"user/simplelist\" = \"100/s\"\n";

/// 250 employees (three report calls a run), the report quota 1 a second.
pub(super) async fn one_report_a_second() -> Env {
    let wecom = WecomSimConfig {
        limits: vec![(MONTHDATA.to_owned(), 1, Duration::from_secs(1))],
        ..WecomSimConfig::default()
    };
    Env::start(250, wecom, JdySimConfig::default()).await
}

/// No second of report calls held more than the quota, as the simulator
/// counted them.
pub(super) fn assert_quota_kept(env: &Env, detail: &str) {
    let log = env.wecom.call_log();
    let throttled = log
        .iter()
        .filter(|c| c.endpoint == MONTHDATA && c.outcome.code() == Some(45009))
        .count();
    assert_eq!(
        (env.wecom.quota_violations(), throttled),
        (0, 0),
        "report calls over the 1/s quota\n{detail}"
    );
    assert!(most_calls_within(&log, MONTHDATA, Duration::from_secs(1)) <= 1);
}

/// Users `range` of the simulated organisation, as a `userids` line.
fn userids(env: &Env, range: std::ops::Range<usize>) -> String {
    let ids: Vec<String> = env.wecom.org().users[range]
        .iter()
        .map(|u| format!("{:?}", u.userid))
        .collect();
    format!("userids = [{}]", ids.join(", "))
}

/// Two jobs of one corp, `first_half` and `second_half`, each with half the
/// organisation and its own `[source.limits]`; `extra` in their top level.
pub(super) fn two_jobs(env: &Env, limits: [&str; 2], target: &str, extra: &str) {
    let halves = [("first_half", 0..125), ("second_half", 125..250)];
    for ((name, range), limits) in halves.into_iter().zip(limits) {
        let source = format!("{}\n{limits}\n{FAST_RETRY}", userids(env, range));
        let text = env
            .job_text(&source, &format!("{target}\n{FAST_TARGET_RETRY}"))
            .replace(
                "description = \"test job\"",
                &format!("description = \"test job\"\n{extra}"),
            );
        env.write(&format!("jobs/{name}.toml"), &text);
    }
}

/// Two jobs of one corp at the scaled report quota.
fn two_jobs_of_one_corp(env: &Env, extra: &str) {
    two_jobs(env, [ONE_A_SECOND; 2], FAST_TARGET, extra);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_right_after_another_keeps_to_the_window_they_share() {
    let env = one_report_a_second().await;
    env.write_job(ONE_A_SECOND, FAST_TARGET);
    let first = env.run(&["run", "--month", MONTH]).await;
    first.expect_code(0);
    let rerun = env.run(&["rerun", "wecom_monthly", "--month", MONTH]).await;
    rerun.expect_code(0);
    assert_quota_kept(&env, &format!("{}{}", first.all(), rerun.all()));
    assert_eq!(env.wecom.calls(MONTHDATA), 6);
    assert_eq!(env.rows_by_key().len(), 250);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_of_one_corp_in_one_process_share_its_pace() {
    let env = one_report_a_second().await;
    two_jobs_of_one_corp(&env, "");
    let both = env.run(&["run", "--month", MONTH]).await;
    both.expect_code(0);
    assert_quota_kept(&env, &both.all());
    assert_eq!(env.wecom.calls(MONTHDATA), 4);
    assert_eq!(env.rows_by_key().len(), 250);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemons_overlapping_runs_of_one_corp_share_its_pace() {
    let env = one_report_a_second().await;
    // Both fire every three seconds, at the same instants.
    two_jobs_of_one_corp(
        &env,
        "schedule = \"*/3 * * * * *\"\nprevious_month_until_day = 0",
    );
    // Two fires of each job: runs together, and runs after runs.
    let log = daemon_until_report_calls(&env, 8, Duration::from_secs(60)).await;
    assert_quota_kept(&env, &log);
}

/// Runs the daemon until the simulator has answered `calls` report calls
/// (within `limit`), stops it and returns its log.
pub(super) async fn daemon_until_report_calls(env: &Env, calls: usize, limit: Duration) -> String {
    let daemon = Daemon::start(env, None);
    let deadline = std::time::Instant::now() + limit;
    while env.wecom.calls(MONTHDATA) < calls {
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon made {} report calls in {limit:?}\n{}",
            env.wecom.calls(MONTHDATA),
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, 0, "{log}");
    log
}
