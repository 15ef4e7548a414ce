//! Reruns, kill -9 and resume, ambiguous commits and two
//! processes at once never duplicate a record and never lose one.

use crate::common;

use std::time::Duration;

use attendsync_sim::{JdySimConfig, Outcome, TxMode};
use common::{batch_in_flight, counts, fast_wecom, run_and_kill, Env, FAST_SOURCE, FAST_TARGET};

const MONTH: &str = "2026-10";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerun_updates_exactly_the_changed_records_and_force_rewrites_all() {
    let env = Env::start(250, fast_wecom(), JdySimConfig::default()).await;
    env.write_job(FAST_SOURCE, FAST_TARGET);
    env.run(&["run", "--month", MONTH]).await.expect_code(0);
    // One read of one record, to learn the form holds nothing of the month: no
    // batch is looked up before it is created, and acknowledged creates are not
    // read again (their ids are looked up when an update needs them).
    assert_eq!(env.jdy.calls("data/list"), 1);
    assert_eq!(env.jdy.calls("data/batch_create"), 3);
    let ids_before: Vec<String> = env
        .jdy
        .records()
        .iter()
        .filter_map(|r| r["_id"].as_str().map(String::from))
        .collect();

    let changed: Vec<String> = env
        .wecom
        .org()
        .users
        .iter()
        .step_by(31)
        .take(7)
        .map(|u| u.userid.clone())
        .collect();
    for u in &changed {
        env.wecom.bump_revision(u);
    }
    let updates_before = env.jdy.calls("data/update");
    let rerun = env.run(&["rerun", "wecom_monthly", "--month", MONTH]).await;
    rerun.expect_code(0);
    assert_eq!(counts(&rerun.stdout(), MONTH), (250, 0, 7, 243, 0));
    assert_eq!(env.jdy.calls("data/update") - updates_before, 7);
    assert_eq!(
        env.jdy.calls("data/batch_create"),
        3,
        "no create during the rerun"
    );
    let rows = env.rows_by_key();
    assert_eq!(rows.len(), 250);
    let ids_after: Vec<String> = env
        .jdy
        .records()
        .iter()
        .filter_map(|r| r["_id"].as_str().map(String::from))
        .collect();
    assert_eq!(ids_before, ids_after, "records are updated in place");

    // A changed record someone deleted from the form is created again, once. Its
    // id was never read back (created in an acknowledged batch, not updated since).
    let userid = env.wecom.org().users[1].userid.clone();
    assert!(!changed.contains(&userid));
    let row = env.rows_by_key()[&(userid.clone(), MONTH.to_string())].clone();
    assert!(env
        .jdy
        .delete_record(row["_id"].as_str().unwrap_or_default()));
    env.wecom.bump_revision(&userid);
    let again = env.run(&["rerun", "wecom_monthly", "--month", MONTH]).await;
    again.expect_code(0);
    assert_eq!(counts(&again.stdout(), MONTH), (250, 1, 0, 249, 0));
    assert_eq!(env.jdy.records().len(), 250, "no duplicate");
    let rows = env.rows_by_key();
    assert_eq!(rows.len(), 250);
    assert_ne!(rows[&(userid, MONTH.to_string())]["_id"], row["_id"]);

    let forced = env
        .run(&["rerun", "wecom_monthly", "--month", MONTH, "--force"])
        .await;
    forced.expect_code(0);
    assert_eq!(counts(&forced.stdout(), MONTH), (250, 0, 250, 0, 0));
    assert_eq!(env.rows_by_key().len(), 250);

    let status = env.run(&["status"]).await;
    status
        .expect_code(0)
        .expect_contains("rerun --force")
        .expect_contains("rerun ");
}

/// Records whose employee the source answers for with nothing are "gone from
/// the source": listed, and deleted by `rerun --prune`. (Employees not asked —
/// a `userids` scope, or gone from the directory — are never pruned:
/// data_safety_e2e and breaker_e2e.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_gone_from_the_source_are_listed_and_pruned_on_request() {
    let env = Env::start(40, fast_wecom(), JdySimConfig::default()).await;
    env.write_job(FAST_SOURCE, FAST_TARGET);
    env.run(&["run", "--month", MONTH]).await.expect_code(0);
    let users: Vec<String> = env
        .wecom
        .org()
        .users
        .iter()
        .map(|u| u.userid.clone())
        .collect();
    let gone = users[0].clone();
    env.wecom.drop_report(&gone);
    env.wecom.drop_report(&users[2]);

    let run = env.run(&["run", "--month", MONTH]).await;
    run.expect_code(0)
        .expect_contains("gone from source 2")
        .expect_contains(&gone)
        .expect_contains("`rerun --prune` deletes it");
    assert_eq!(env.jdy.records().len(), 40, "nothing is deleted by default");

    let prune = env
        .run(&["rerun", "wecom_monthly", "--month", MONTH, "--prune"])
        .await;
    prune
        .expect_code(0)
        .expect_contains("deleted from Jiandaoyun");
    let rows = env.rows_by_key();
    assert_eq!(rows.len(), 38);
    assert!(!rows.contains_key(&(gone, MONTH.to_string())));
    let again = env.run(&["run", "--month", MONTH]).await;
    again.expect_code(0).expect_lacks("gone from source");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_runs_resume_without_duplicates_or_loss() {
    let jdy = JdySimConfig {
        latency: Duration::from_millis(40),
        ..JdySimConfig::default()
    };
    let env = Env::start(2000, fast_wecom(), jdy).await;
    env.write_job(FAST_SOURCE, FAST_TARGET);

    // 1. While the first batch is in flight.
    run_and_kill(&env, MONTH, batch_in_flight).await;
    // 2. Once some records landed.
    run_and_kill(&env, MONTH, |e| e.jdy.records().len() >= 500).await;
    // 3. While a later batch is in flight (after send, before the commit).
    let seen = env.jdy.calls("data/batch_create");
    run_and_kill(&env, MONTH, move |e| {
        e.jdy.calls("data/batch_create") > seen + 2 && batch_in_flight(e)
    })
    .await;
    // 4. Right after a batch was stored.
    let stored = env.jdy.records().len();
    run_and_kill(&env, MONTH, move |e| e.jdy.records().len() > stored).await;

    let last = env.run(&["run", "--month", MONTH]).await;
    last.expect_code(0);
    let rows = env.rows_by_key();
    assert_eq!(rows.len(), 2000, "every employee exactly once");
    assert_eq!(env.jdy.records().len(), 2000);
    let (pulled, _, _, _, failed) = counts(&last.stdout(), MONTH);
    assert_eq!((pulled, failed), (2000, 0));
    let status = env.run(&["status"]).await;
    status.expect_code(0).expect_lacks("pending");
}

async fn ambiguous_commits(mode: TxMode) {
    let jdy = JdySimConfig {
        tx_mode: mode,
        store_then_502_ratio: 0.1,
        store_then_drop_ratio: 0.1,
        seed: 5,
        ..JdySimConfig::default()
    };
    let env = Env::start(1500, fast_wecom(), jdy).await;
    env.write_job(FAST_SOURCE, FAST_TARGET);
    let run = env.run(&["run", "--month", MONTH]).await;
    run.expect_code(0);
    let faults = env
        .jdy
        .call_log()
        .iter()
        .filter(|c| {
            c.endpoint == "data/batch_create"
                && matches!(c.outcome, Outcome::Http(502) | Outcome::Dropped)
        })
        .count();
    assert!(
        faults >= 2,
        "the test must inject ambiguous failures, saw {faults}"
    );
    assert_eq!(env.rows_by_key().len(), 1500);
    assert_eq!(env.jdy.records().len(), 1500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_commits_with_transaction_id_honoured() {
    ambiguous_commits(TxMode::Honour).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_commits_with_transaction_id_ignored() {
    ambiguous_commits(TxMode::Ignore).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_at_once_write_once() {
    let jdy = JdySimConfig {
        latency: Duration::from_millis(20),
        ..JdySimConfig::default()
    };
    let env = Env::start(600, fast_wecom(), jdy).await;
    env.write_job(FAST_SOURCE, FAST_TARGET);
    let (a, b) = tokio::join!(
        env.run(&["run", "--month", MONTH]),
        env.run(&["run", "--month", MONTH])
    );
    let mut codes = [a.code(), b.code()];
    codes.sort();
    assert_eq!(
        codes,
        [0, 3],
        "one runs, one reports the lease\n{}\n{}",
        a.all(),
        b.all()
    );
    let busy = if a.code() == 3 { &a } else { &b };
    busy.expect_contains("already running");
    assert_eq!(env.rows_by_key().len(), 600);
}
