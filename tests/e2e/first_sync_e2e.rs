//! A first sync of a month reads the form once, not once per batch: when the
//! form holds no record of the month, no batch is looked up before it is
//! created. When it holds some (a lost database, a hand, a killed run), every
//! batch still is, and nothing is created twice.

use crate::common;

use attendsync_sim::{JdySimConfig, TxMode};
use std::time::Duration;

use common::{batch_in_flight, counts, fast_wecom, run_and_kill, Env, FAST_SOURCE, FAST_TARGET};

const MONTH: &str = "2026-10";

async fn env(employees: usize, jdy: JdySimConfig) -> Env {
    let env = Env::start(employees, fast_wecom(), jdy).await;
    env.write_job(FAST_SOURCE, FAST_TARGET);
    env
}

fn ids(env: &Env) -> Vec<String> {
    env.jdy
        .records()
        .iter()
        .filter_map(|r| r["_id"].as_str().map(String::from))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_sync_reads_the_form_once_and_creates_in_hundreds() {
    let env = env(250, JdySimConfig::default()).await;
    let first = env.run(&["run", "--month", MONTH]).await;
    first.expect_code(0);
    assert_eq!(counts(&first.stdout(), MONTH), (250, 250, 0, 0, 0));
    assert_eq!(
        env.jdy.calls("data/list"),
        1,
        "one read: is the month empty?"
    );
    assert_eq!(env.jdy.calls("data/batch_create"), 3, "⌈250 / 100⌉");
    assert_eq!(env.rows_by_key().len(), 250);

    let (reads, writes) = (env.jdy.calls("data/list"), env.jdy.write_calls());
    let second = env.run(&["run", "--month", MONTH]).await;
    second.expect_code(0);
    assert_eq!(counts(&second.stdout(), MONTH), (250, 0, 0, 250, 0));
    assert_eq!(
        env.jdy.calls("data/list"),
        reads,
        "nothing to create: no read"
    );
    assert_eq!(env.jdy.write_calls(), writes, "a second run writes nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_other_months_cost_no_look_ups() {
    let env = env(120, JdySimConfig::default()).await;
    env.run(&["run", "--month", "2026-09"]).await.expect_code(0);
    let reads = env.jdy.calls("data/list");
    let october = env.run(&["run", "--month", MONTH]).await;
    october.expect_code(0);
    assert_eq!(counts(&october.stdout(), MONTH), (120, 120, 0, 0, 0));
    assert_eq!(env.jdy.calls("data/list") - reads, 1);
    assert_eq!(env.rows_by_key().len(), 240, "one record per key and month");
}

/// The form already holds some of this month and the store knows none of it
/// (the database was lost, and some records were deleted since): those are
/// found by key and taken over, only the rest is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_already_holding_some_of_the_month_is_looked_up_not_duplicated() {
    let env = env(250, JdySimConfig::default()).await;
    env.run(&["run", "--month", MONTH]).await.expect_code(0);
    std::fs::remove_file(env.db()).unwrap_or_else(|e| panic!("{e}"));
    for id in ids(&env).iter().step_by(3) {
        assert!(env.jdy.delete_record(id));
    }
    let kept = env.jdy.records().len();
    let (reads, creates) = (
        env.jdy.calls("data/list"),
        env.jdy.calls("data/batch_create"),
    );
    let again = env.run(&["run", "--month", MONTH]).await;
    again.expect_code(0);
    let (pulled, created, _, _, failed) = counts(&again.stdout(), MONTH);
    assert_eq!((pulled, created, failed), (250, (250 - kept) as u64, 0));
    assert_eq!(
        env.rows_by_key().len(),
        250,
        "one record per key{}",
        again.all()
    );
    assert_eq!(env.jdy.records().len(), 250);
    assert!(
        env.jdy.calls("data/list") - reads > env.jdy.calls("data/batch_create") - creates,
        "every batch looked up before it is created"
    );
}

/// A record made by hand for an employee before the first sync of the month,
/// with a wrong value: taken over and corrected, not created a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_made_by_hand_before_the_first_sync_is_taken_over() {
    let env = env(150, JdySimConfig::default()).await;
    env.run(&["run", "--month", MONTH]).await.expect_code(0);
    let rows: Vec<_> = env.rows_by_key().into_values().collect();
    let mut by_hand = rows[7].clone();
    by_hand.remove("_id");
    by_hand.insert("work_hours".into(), serde_json::json!(999));
    let user = by_hand["userid"].clone();
    // A new form: everything deleted, the database lost, one record made by hand.
    for id in ids(&env) {
        assert!(env.jdy.delete_record(&id));
    }
    std::fs::remove_file(env.db()).unwrap_or_else(|e| panic!("{e}"));
    env.jdy.add_record(by_hand);
    let run = env.run(&["run", "--month", MONTH]).await;
    run.expect_code(0);
    let rows = env.rows_by_key();
    assert_eq!(rows.len(), 150, "one record per key{}", run.all());
    let hand = rows
        .values()
        .find(|r| r["userid"] == user)
        .unwrap_or_else(|| panic!("the hand-made record is gone"));
    assert_ne!(hand["work_hours"], serde_json::json!(999), "corrected");
}

/// A run killed with a batch in flight on a form that ignores
/// `transaction_id`: the next run finds the month no longer empty and the
/// pending batch in the store, and creates nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_first_sync_is_finished_without_duplicates() {
    // A slow commit keeps a batch in flight long enough to be killed with it
    // (a fast first sync is otherwise over between two looks), and lands after.
    let jdy = JdySimConfig {
        tx_mode: TxMode::Ignore,
        commit_delay: Duration::from_millis(600),
        ..JdySimConfig::default()
    };
    let env = env(300, jdy).await;
    run_and_kill(&env, MONTH, batch_in_flight).await;
    let next = env.run(&["run", "--month", MONTH]).await;
    next.expect_code(0);
    assert_eq!(env.rows_by_key().len(), 300, "{}", next.all());
    assert_eq!(env.jdy.records().len(), 300);
}
