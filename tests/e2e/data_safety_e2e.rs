//! Data safety: no record reported as created that the form does not hold, no
//! duplicate from a batch that commits late, `rerun` repairs the form, and a
//! guarded prune.

use crate::common;

use std::time::Duration;

use attendsync_sim::{JdySimConfig, TxMode};
use common::{batch_in_flight, counts, fast_wecom, run_and_kill, Env, FAST_SOURCE, FAST_TARGET};

const MONTH: &str = "2026-10";

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerun_repairs_the_form_deletions_edits_and_duplicates() {
    let env = synced(59, JdySimConfig::default()).await;
    let rows: Vec<_> = env.rows_by_key().into_values().collect();
    let id = |i: usize| rows[i]["_id"].as_str().unwrap_or_default().to_string();
    // Three deleted by hand, two edited by hand, one copied by hand.
    for i in 0..3 {
        assert!(env.jdy.delete_record(&id(i)));
    }
    assert!(env
        .jdy
        .edit_record(&id(3), "work_hours", serde_json::json!(999)));
    assert!(env
        .jdy
        .edit_record(&id(4), "work_hours", serde_json::json!(999)));
    let mut copy = rows[5].clone();
    copy.remove("_id");
    env.jdy.add_record(copy);
    let dup_user = rows[5]["userid"].as_str().unwrap_or_default().to_string();

    // A plain run trusts the store: it sees nothing to do.
    let run = env.run(&["run", "--month", MONTH]).await;
    assert_eq!(counts(&run.stdout(), MONTH), (59, 0, 0, 59, 0));

    let rerun = env.run(&["rerun", "wecom_monthly", "--month", MONTH]).await;
    rerun
        .expect_code(0)
        .expect_contains("duplicates 1")
        .expect_contains(&format!("held more than once in the form (`rerun --force` deletes the extra copies): [\"{dup_user}\""));
    assert_eq!(counts(&rerun.stdout(), MONTH), (59, 3, 2, 54, 0));
    assert_eq!(
        env.jdy.records().len(),
        60,
        "the copy stays without --force"
    );
    let edited: Vec<_> = env
        .jdy
        .records()
        .into_iter()
        .filter(|r| r["work_hours"] == serde_json::json!(999))
        .collect();
    assert!(edited.is_empty(), "hand edits are reverted: {edited:?}");

    let forced = env
        .run(&["rerun", "wecom_monthly", "--month", MONTH, "--force"])
        .await;
    forced
        .expect_code(0)
        .expect_contains("extra copies deleted");
    assert_eq!(env.rows_by_key().len(), 59, "one record per key");
    assert_eq!(env.jdy.records().len(), 59);
    let again = env.run(&["rerun", "wecom_monthly", "--month", MONTH]).await;
    again.expect_code(0).expect_lacks("duplicates");
    assert_eq!(counts(&again.stdout(), MONTH), (59, 0, 0, 59, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_past_a_fifth_needs_prune_all_and_dry_run_lists_it() {
    let env = synced(59, JdySimConfig::default()).await;
    let users: Vec<String> = env
        .wecom
        .org()
        .users
        .iter()
        .map(|u| u.userid.clone())
        .collect();
    for u in &users[..15] {
        env.wecom.drop_report(u);
    }
    let refused = env
        .run(&["rerun", "wecom_monthly", "--month", MONTH, "--prune"])
        .await;
    refused
        .expect_code(1)
        .expect_contains("prune refused: 15 of 59 record(s) would be deleted")
        .expect_contains("--prune-all");
    assert_eq!(env.jdy.records().len(), 59, "nothing deleted");

    let dry = env
        .run(&[
            "rerun",
            "wecom_monthly",
            "--month",
            MONTH,
            "--prune-all",
            "--dry-run",
        ])
        .await;
    dry.expect_code(0).expect_contains(&users[0]);
    assert_eq!(env.jdy.records().len(), 59, "a dry run deletes nothing");

    let pruned = env
        .run(&["rerun", "wecom_monthly", "--month", MONTH, "--prune-all"])
        .await;
    pruned
        .expect_code(0)
        .expect_contains("deleted from Jiandaoyun");
    assert_eq!(env.rows_by_key().len(), 44);
}

/// A scope that makes the source return nobody, or employees who left (no
/// longer listed), is no evidence that their records are gone: nothing is
/// deleted, even with --prune-all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn employees_not_asked_are_never_pruned() {
    let env = synced(59, JdySimConfig::default()).await;
    env.write_job(
        &format!("userids = [\"nobody-here\"]\n{FAST_SOURCE}"),
        FAST_TARGET,
    );
    for flag in ["--prune", "--prune-all"] {
        let rerun = env
            .run(&["rerun", "wecom_monthly", "--month", MONTH, flag])
            .await;
        rerun
            .expect_code(0)
            .expect_contains("gone from source 59")
            .expect_contains("not known to be gone");
        assert_eq!(env.jdy.records().len(), 59, "{flag} deleted nothing");
    }
}

/// With `RUST_LOG=warn` (what log-based alerting watches), a failed record
/// and its month are in the log: failures are never INFO only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_record_is_logged_at_warn() {
    let env = Env::start(30, fast_wecom(), JdySimConfig::default()).await;
    env.write_job(FAST_SOURCE, FAST_TARGET);
    let victim = env.wecom.org().users[3].userid.clone();
    env.wecom.patch_record(
        &victim,
        "/summary_info/work_days",
        serde_json::json!("many"),
    );
    let run = env
        .run_with_env(&["run", "--month", MONTH], &[("RUST_LOG", "warn")])
        .await;
    run.expect_code(1);
    let stderr = run.stderr();
    let record_line = stderr
        .lines()
        .find(|l| l.contains(&victim))
        .unwrap_or_else(|| panic!("the failed record is not in the log:\n{stderr}"));
    assert!(record_line.contains("WARN"), "{record_line}");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("WARN") && l.contains("month done, with failures")),
        "{stderr}"
    );
}

/// A month that fails while writing still accounts for every record it pulled:
/// what was not confirmed counts as failed, and the summary says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_failing_during_write_has_counts_that_add_up() {
    let env = Env::start(250, fast_wecom(), JdySimConfig::default()).await;
    env.write_job(FAST_SOURCE, FAST_TARGET);
    env.jdy.refuse_writes(Some((7212, "本月数据量已达上限")));
    let run = env.run(&["run", "--month", MONTH]).await;
    run.expect_code(1).expect_contains("7212");
    let (pulled, created, updated, unchanged, failed) = counts(&run.stdout(), MONTH);
    assert!(pulled > 0, "{}", run.all());
    assert_eq!(
        created + updated + unchanged + failed,
        pulled,
        "{}",
        run.all()
    );
    assert_eq!(env.jdy.records().len(), 0);
}
