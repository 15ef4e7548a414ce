//! Data safety: no record reported as created that the form does not hold, no
//! duplicate from a batch that commits late, `rerun` repairs the form, and a
//! guarded prune.

mod common;

use std::time::Duration;

use attendsync::sim::{JdySimConfig, TxMode, WecomSimConfig};
use common::{batch_in_flight, counts, run_and_kill, Env};

const MONTH: &str = "2026-10";
const FAST_SOURCE: &str = "[source.limits]\n\"checkin/getcheckin_monthdata\" = \"6000/min\"\n\"user/simplelist\" = \"100/s\"\n";
const FAST_TARGET: &str = "[target.limits]\n\"data/batch_create\" = \"9/s\"\n\"data/list\" = \"25/s\"\n\"data/update\" = \"18/s\"\n\"data/batch_delete\" = \"9/s\"\n";

fn fast_wecom() -> WecomSimConfig {
    WecomSimConfig {
        limits: vec![],
        ..WecomSimConfig::default()
    }
}

async fn synced(employees: usize, jdy: JdySimConfig) -> Env {
    let env = Env::start(employees, fast_wecom(), jdy).await;
    env.write_job(FAST_SOURCE, FAST_TARGET);
    env.run(&["run", "--month", MONTH]).await.expect_code(0);
    assert_eq!(env.rows_by_key().len(), employees);
    env
}

fn ids(env: &Env) -> Vec<String> {
    env.jdy
        .records()
        .iter()
        .filter_map(|r| r["_id"].as_str().map(String::from))
        .collect()
}

/// The whole month deleted by hand, then `rerun --force`: every record is
/// created again and really is in the form, and later runs agree.
async fn whole_month_deleted_then_forced(mode: TxMode) {
    let env = synced(
        59,
        JdySimConfig {
            tx_mode: mode,
            ..JdySimConfig::default()
        },
    )
    .await;
    for id in ids(&env) {
        assert!(env.jdy.delete_record(&id));
    }
    let forced = env
        .run(&["rerun", "wecom_monthly", "--month", MONTH, "--force"])
        .await;
    forced.expect_code(0);
    assert_eq!(counts(&forced.stdout(), MONTH), (59, 59, 0, 0, 0));
    assert_eq!(
        env.rows_by_key().len(),
        59,
        "the form holds what was reported"
    );
    let again = env.run(&["run", "--month", MONTH]).await;
    again.expect_code(0);
    assert_eq!(counts(&again.stdout(), MONTH), (59, 0, 0, 59, 0));
    assert_eq!(env.rows_by_key().len(), 59);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_month_deleted_by_hand_is_recreated_with_transaction_id_honoured() {
    whole_month_deleted_then_forced(TxMode::Honour).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_month_deleted_by_hand_is_recreated_with_transaction_id_ignored() {
    whole_month_deleted_then_forced(TxMode::Ignore).await;
}

/// A run is killed while its batch is in flight on a form that takes 0.6 s to
/// commit and ignores `transaction_id`; the next run starts at once. It must
/// wait the batch out rather than read back too early and send it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_committing_after_its_run_was_killed_is_not_sent_twice() {
    let jdy = JdySimConfig {
        tx_mode: TxMode::Ignore,
        commit_delay: Duration::from_millis(600),
        ..JdySimConfig::default()
    };
    let env = Env::start(300, fast_wecom(), jdy).await;
    env.write_job(FAST_SOURCE, FAST_TARGET);
    run_and_kill(&env, MONTH, batch_in_flight).await;
    let next = env.run(&["run", "--month", MONTH]).await;
    next.expect_code(0)
        .expect_contains("may still be committing");
    assert_eq!(env.jdy.records().len(), 300, "no record twice");
    assert_eq!(env.rows_by_key().len(), 300);
    let (pulled, _, _, _, failed) = counts(&next.stdout(), MONTH);
    assert_eq!((pulled, failed), (300, 0));
}
