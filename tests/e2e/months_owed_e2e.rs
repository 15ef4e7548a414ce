//! Months owed: a month stays owed until a run has synced it in full after it
//! closed, and every run without `--month` takes owed months too.

use crate::common;

use attendsync_sim::JdySimConfig;
use common::{counts, fast_wecom, Env, FAST_SOURCE, FAST_TARGET};

async fn env() -> Env {
    let env = Env::start(30, fast_wecom(), JdySimConfig::default()).await;
    env.write_job(FAST_SOURCE, FAST_TARGET);
    env
}

/// The shipped schedule runs on the 3rd, 10th, 17th and 24th. A run on the
/// 3rd that fails (a wrong secret) must not lose December's final pull: the
/// run on the 10th, when December is no longer a default month, syncs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_on_the_3rd_is_made_good_by_the_run_on_the_10th() {
    let env = env().await;
    let at = |t: &str| ("ATTENDSYNC_NOW", t.to_string());
    let dec24 = at("2026-12-24T02:10:00+08:00");
    env.run_with_env(&["run"], &[(dec24.0, &dec24.1)])
        .await
        .expect_code(0);

    let jan3 = at("2027-01-03T02:10:00+08:00");
    env.run_with_env(
        &["run"],
        &[(jan3.0, &jan3.1), ("WECOM_CHECKIN_SECRET", "wrong-secret")],
    )
    .await
    .expect_code(1);
    env.run_with_env(&["status"], &[(jan3.0, &jan3.1)])
        .await
        .expect_code(0)
        .expect_contains("Months owed")
        .expect_contains("2026-12");

    let jan10 = at("2027-01-10T02:10:00+08:00");
    let run = env.run_with_env(&["run"], &[(jan10.0, &jan10.1)]).await;
    run.expect_code(0).expect_contains("months owed");
    assert_eq!(counts(&run.stdout(), "2026-12").0, 30, "{}", run.all());
    assert_eq!(counts(&run.stdout(), "2027-01").0, 30, "{}", run.all());
    env.run_with_env(&["status"], &[(jan10.0, &jan10.1)])
        .await
        .expect_code(0)
        .expect_lacks("Months owed");

    // Settled: the next run syncs January alone.
    let jan17 = at("2027-01-17T02:10:00+08:00");
    let next = env.run_with_env(&["run"], &[(jan17.0, &jan17.1)]).await;
    next.expect_code(0).expect_lacks("2026-12:");
}

/// Catching up across a month end: the last run was on the 24th, the next
/// on the 7th of the following month (past the 5th, so the previous month is
/// no longer a default month). The month that closed in between is owed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_after_a_gap_across_a_month_end_syncs_the_closed_month() {
    let env = env().await;
    env.run_with_env(&["run"], &[("ATTENDSYNC_NOW", "2026-12-24T02:10:00+08:00")])
        .await
        .expect_code(0);
    let run = env
        .run_with_env(&["run"], &[("ATTENDSYNC_NOW", "2027-01-07T09:00:00+08:00")])
        .await;
    run.expect_code(0);
    assert_eq!(counts(&run.stdout(), "2026-12").0, 30, "{}", run.all());
}

/// An owed month older than `max_owed_months` is not pulled any more: it is a
/// failed month in the summary (so alerts fire) naming the rerun that syncs it,
/// and that rerun settles it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_owed_too_long_is_reported_and_a_rerun_settles_it() {
    let env = env().await;
    env.run_with_env(&["run"], &[("ATTENDSYNC_NOW", "2026-09-20T02:10:00+08:00")])
        .await
        .expect_code(0);
    let late = ("ATTENDSYNC_NOW", "2027-01-10T02:10:00+08:00");
    let run = env.run_with_env(&["run"], &[late]).await;
    run.expect_code(1)
        .expect_contains("max_owed_months (3)")
        .expect_contains("attendsync rerun wecom_monthly --month 2026-09");
    env.run_with_env(&["rerun", "wecom_monthly", "--month", "2026-09"], &[late])
        .await
        .expect_code(0);
    env.run_with_env(&["run"], &[late]).await.expect_code(0);
}
