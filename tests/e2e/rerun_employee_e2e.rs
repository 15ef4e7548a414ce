//! `rerun JOB --month M --employee ID...`: an HR correction for one person
//! costs one person's calls, and touches only their records.

use crate::common;

use attendsync_sim::JdySimConfig;
use common::{counts, fast_wecom, Env, FAST_SOURCE, FAST_TARGET};

const MONTH: &str = "2026-10";

async fn synced(employees: usize) -> Env {
    let env = Env::start(employees, fast_wecom(), JdySimConfig::default()).await;
    env.write_job(FAST_SOURCE, FAST_TARGET);
    env.run(&["run", "--month", MONTH]).await.expect_code(0);
    env
}

fn user(env: &Env, i: usize) -> String {
    env.wecom.org().users[i].userid.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_of_two_employees_pulls_and_writes_only_theirs() {
    let env = synced(250).await;
    let (x, y, z) = (user(&env, 3), user(&env, 140), user(&env, 200));
    // All three corrected in the source; X's record also deleted by hand.
    for u in [&x, &y, &z] {
        env.wecom.bump_revision(u);
    }
    let x_row = env.rows_by_key().into_iter().find(|((u, _), _)| *u == x);
    let x_id = x_row.and_then(|(_, r)| r["_id"].as_str().map(String::from));
    assert!(env.jdy.delete_record(&x_id.unwrap_or_default()));
    let (monthdata, listing) = (
        env.wecom.calls("checkin/getcheckin_monthdata"),
        env.wecom.calls("user/simplelist") + env.wecom.calls("department/simplelist"),
    );
    let jdy_calls = env.jdy.call_log().len();

    let rerun = env
        .run(&[
            "rerun",
            "wecom_monthly",
            "--month",
            MONTH,
            "--employee",
            &x,
            "--employee",
            &y,
        ])
        .await;
    rerun.expect_code(0).expect_lacks("not returned");
    let (pulled, created, updated, unchanged, failed) = counts(&rerun.stdout(), MONTH);
    assert_eq!(
        (pulled, created, updated, unchanged, failed),
        (2, 1, 1, 0, 0),
        "{}",
        rerun.all()
    );
    assert_eq!(
        env.wecom.calls("checkin/getcheckin_monthdata") - monthdata,
        1
    );
    let listed = env.wecom.calls("user/simplelist") + env.wecom.calls("department/simplelist");
    assert_eq!(listed, listing, "the directory is not listed");
    assert!(
        env.jdy.call_log().len() - jdy_calls <= 4,
        "a widget read, a look-up, a create and an update: {:?}",
        &env.jdy.call_log()[jdy_calls..]
            .iter()
            .map(|c| &c.endpoint)
            .collect::<Vec<_>>()
    );
    assert_eq!(env.rows_by_key().len(), 250, "one record per key");

    // Z was not asked for: a plain rerun of the month still finds it changed.
    let full = env.run(&["rerun", "wecom_monthly", "--month", MONTH]).await;
    full.expect_code(0);
    assert_eq!(
        counts(&full.stdout(), MONTH),
        (250, 0, 1, 249, 0),
        "{}",
        full.all()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_employee_without_a_report_is_named_and_nothing_is_pruned() {
    let env = synced(30).await;
    let x = user(&env, 5);
    env.wecom.drop_report(&x);
    let rerun = env
        .run(&[
            "rerun",
            "wecom_monthly",
            "--month",
            MONTH,
            "--employee",
            &x,
            "--employee",
            "nobody",
            "--prune",
        ])
        .await;
    rerun
        .expect_code(0)
        .expect_contains("no report this month for employee(s) asked for:")
        .expect_contains("nobody");
    assert_eq!(counts(&rerun.stdout(), MONTH).0, 0);
    // Ids given by hand are no proof that a record is gone: listed, kept.
    assert_eq!(env.jdy.records().len(), 30, "{}", rerun.all());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_employee_rerun_does_not_settle_a_month_owed() {
    let env = Env::start(20, fast_wecom(), JdySimConfig::default()).await;
    env.write_job(FAST_SOURCE, FAST_TARGET);
    let at = |t: &'static str| [("ATTENDSYNC_NOW", t)];
    env.run_with_env(&["run"], &at("2026-12-24T02:10:00+08:00"))
        .await
        .expect_code(0);
    let jan3 = at("2027-01-03T02:10:00+08:00");
    env.run_with_env(&["run"], &[jan3[0], ("WECOM_CHECKIN_SECRET", "wrong")])
        .await
        .expect_code(1);
    let x = user(&env, 2);
    env.run_with_env(
        &[
            "rerun",
            "wecom_monthly",
            "--month",
            "2026-12",
            "--employee",
            &x,
        ],
        &jan3,
    )
    .await
    .expect_code(0);
    env.run_with_env(&["status"], &jan3)
        .await
        .expect_code(0)
        .expect_contains("Months owed")
        .expect_contains("2026-12")
        .expect_contains("rerun --employee");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_employee_ids_are_refused_before_anything_runs() {
    let env = synced(5).await;
    let calls = env.wecom.call_log().len();
    let empty = env
        .run(&[
            "rerun",
            "wecom_monthly",
            "--month",
            MONTH,
            "--employee",
            " ",
        ])
        .await;
    empty
        .expect_code(2)
        .expect_contains("an employee id must not be empty");
    let ids: Vec<String> = (0..1001).map(|i| format!("u{i}")).collect();
    let mut args = vec!["rerun", "wecom_monthly", "--month", MONTH];
    for id in &ids {
        args.extend(["--employee", id.as_str()]);
    }
    let many = env.run(&args).await;
    many.expect_code(2)
        .expect_contains("at most 1000 are taken at once");
    assert_eq!(env.wecom.call_log().len(), calls, "nothing was pulled");
}
