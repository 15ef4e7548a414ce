//! Regressions found by attacking the data-safety fixes as a hostile user would
//! (in-flight batches held by the pacer, clocks set back, DingTalk users who
//! left, keys without the month, copies of gone keys, dry runs). Each test
//! failed on the code it was written against.

use crate::common;

use std::time::Duration;

use attendsync_sim::{DingtalkSim, DingtalkSimConfig, JdySim, JdySimConfig, Org, Outcome, TxMode};
use common::dingtalk::{all as text, fast_retry, start_dingtalk, DingEnv, FAST_LIMITS};
use common::{fast_wecom, spawn_and_kill, Env, API_KEY, CORP_ID, FAST_SOURCE, FAST_TARGET, SECRET};

const MONTH: &str = "2026-10";

async fn synced(employees: usize, jdy: JdySimConfig) -> Env {
    let env = Env::start(employees, fast_wecom(), jdy).await;
    env.write_job(FAST_SOURCE, FAST_TARGET);
    env.run(&["run", "--month", MONTH]).await.expect_code(0);
    assert_eq!(env.rows_by_key().len(), employees);
    env
}

fn users(env: &Env) -> Vec<String> {
    env.wecom
        .org()
        .users
        .iter()
        .map(|u| u.userid.clone())
        .collect()
}

/// Records of the form whose `userid` is `user`.
fn records_of(jdy: &JdySim, user: &str) -> usize {
    jdy.records()
        .iter()
        .filter(|r| r.get("userid").and_then(|v| v.as_str()) == Some(user))
        .count()
}

/// Runs the binary with `args`, at most `limit`; `None` when it did not finish.
async fn run_within(env: &Env, args: &[&str], limit: Duration) -> Option<std::process::Output> {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_attendsync"));
    cmd.args(args)
        .arg("--config-dir")
        .arg(env.path())
        .env_remove("ATTENDSYNC_DB")
        .env("WECOM_CORP_ID", CORP_ID)
        .env("WECOM_CHECKIN_SECRET", SECRET)
        .env("JDY_API_KEY", API_KEY)
        .env("RUST_LOG", "info")
        .kill_on_drop(true);
    tokio::time::timeout(limit, cmd.output())
        .await
        .ok()
        .map(|o| o.unwrap_or_else(|e| panic!("cannot run attendsync: {e}")))
}

fn pending_creates(env: &Env) -> usize {
    env.jdy
        .call_log()
        .iter()
        .filter(|c| c.endpoint == "data/batch_create" && c.outcome == Outcome::Pending)
        .count()
}

fn create_calls(env: &Env) -> usize {
    env.jdy
        .call_log()
        .iter()
        .filter(|c| c.endpoint == "data/batch_create")
        .count()
}

// ---------------------------------------------------------------------------
// Duplicates: the in-flight window is marked before the pacer's wait
// ---------------------------------------------------------------------------

/// `in_flight_until` is stamped in `before_send`, *before* the pacer's sleep
/// inside `attempt`. With a slow create pace (`6/min`, a 10 s slot), the second
/// batch is marked at t≈0 (until t≈8 s), sent at t≈10 s, times out at t≈13 s,
/// and its read-back runs at once (the window is over): a form that commits in
/// 4 s and ignores `transaction_id` stores it at t≈14 s, after the resend was
/// decided. Expected: one record per key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_held_by_the_pacer_is_not_judged_missing_before_its_send_can_commit() {
    let env = Env::start(
        101,
        fast_wecom(),
        JdySimConfig {
            tx_mode: TxMode::Ignore,
            commit_delay: Duration::from_secs(4),
            ..JdySimConfig::default()
        },
    )
    .await;
    env.write_job(
        FAST_SOURCE,
        "[target.limits]\n\"data/batch_create\" = \"6/min\"\n\"data/list\" = \"25/s\"\n",
    );
    let run = env.run(&["run", "--month", MONTH]).await;
    // Let anything still committing land before counting.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        env.jdy.records().len(),
        101,
        "a record was created twice{}",
        run.all()
    );
}

/// The same hole across a kill: the batch waiting for its slot was marked
/// before the wait; it is sent, the run is killed, and the next run (its window
/// already over) reads back before the form commits and sends it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_batch_killed_in_flight_is_not_resent_by_the_next_run() {
    let env = Env::start(
        200,
        fast_wecom(),
        JdySimConfig {
            tx_mode: TxMode::Ignore,
            commit_delay: Duration::from_secs(2),
            ..JdySimConfig::default()
        },
    )
    .await;
    env.write_job(
        FAST_SOURCE,
        "[target.limits]\n\"data/batch_create\" = \"6/min\"\n\"data/list\" = \"25/s\"\n",
    );
    // Kill when the second (paced) batch has arrived and is committing.
    spawn_and_kill(&env, &["run", "--month", MONTH], |e| {
        create_calls(e) >= 2 && pending_creates(e) >= 1
    })
    .await;
    let next = env.run(&["run", "--month", MONTH]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        env.jdy.records().len(),
        200,
        "a record was created twice{}",
        next.all()
    );
}

// ---------------------------------------------------------------------------
// Data loss: prune
// ---------------------------------------------------------------------------

/// DingTalk job scoped by `userids`. One employee leaves after October
/// (DingTalk no longer knows them). `rerun --month 2026-10 --prune` asks
/// DingTalk for them, DingTalk does not know the user, and the run counts that
/// as "answered with nothing": their October record, for a month they worked,
/// is deleted. The README says an employee missing from today's
/// directory is not evidence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dingtalk_prune_keeps_a_past_month_of_a_userids_scoped_employee_who_left() {
    let org = Org::generate(10, 5);
    let ids: Vec<String> = org.users.iter().map(|u| u.userid.clone()).collect();
    let env = DtEnv::start(org.clone(), &ids).await;
    let first = env.run(&["run", "--month", MONTH]).await;
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    assert_eq!(env.jdy.records().len(), 10);

    // ids[0] leaves in December: DingTalk no longer knows them.
    let mut after = org;
    after.users.retain(|u| u.userid != ids[0]);
    let env = env.with_dingtalk(after).await;
    let pruned = env
        .run(&["rerun", "dingtalk_monthly", "--month", MONTH, "--prune"])
        .await;
    assert_eq!(
        records_of(&env.jdy, &ids[0]),
        1,
        "the October record of an employee who left since was deleted\n{}",
        text(&pruned)
    );
}

/// A gone employee (the source answers for them with nothing) whose record was
/// copied by hand: `rerun --prune` deletes one copy, reports the employee as
/// deleted, exits 0, and the other copy stays in the form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_deletes_every_copy_of_a_gone_key() {
    let env = synced(20, JdySimConfig::default()).await;
    let gone = users(&env)[3].clone();
    let row = env
        .jdy
        .records()
        .into_iter()
        .find(|r| r["userid"].as_str() == Some(gone.as_str()))
        .unwrap_or_else(|| panic!("no record of {gone}"));
    let mut copy = row.clone();
    copy.remove("_id");
    env.jdy.add_record(copy);
    env.wecom.drop_report(&gone);

    let pruned = env
        .run(&[
            "rerun",
            "wecom_monthly",
            "--month",
            MONTH,
            "--prune",
            "--force",
        ])
        .await;
    assert_eq!(
        records_of(&env.jdy, &gone),
        0,
        "a copy of a pruned record is left in the form{}",
        pruned.all()
    );
    assert_eq!(env.jdy.records().len(), 19);
}

// ---------------------------------------------------------------------------
// Availability: the in-flight wait trusts a stored wall-clock time
// ---------------------------------------------------------------------------

/// A run is killed with a batch in flight while the machine's clock was two
/// hours fast; NTP steps it back before the next run. The stored
/// `in_flight_until` is two hours ahead, and the next run sleeps until then,
/// holding the job's lease. The wait should be bounded by what a send can
/// take (request_timeout + margin), as the issue says ("up to a minute").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_stepped_back_after_a_crash_does_not_stall_the_next_run_for_hours() {
    let env = Env::start(
        150,
        fast_wecom(),
        JdySimConfig {
            tx_mode: TxMode::Ignore,
            commit_delay: Duration::from_millis(600),
            ..JdySimConfig::default()
        },
    )
    .await;
    env.write_job(FAST_SOURCE, FAST_TARGET);
    spawn_and_kill(&env, &["run", "--month", MONTH], |e| {
        pending_creates(e) >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // What the killed run stored, as its clock (two hours fast) had it.
    let ahead = (chrono::Utc::now() + chrono::Duration::hours(2))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let db = rusqlite::Connection::open(env.db()).unwrap_or_else(|e| panic!("open db: {e}"));
    let n = db
        .execute(
            "UPDATE pending_batches SET in_flight_until = ?1 WHERE in_flight_until IS NOT NULL",
            [ahead],
        )
        .unwrap_or_else(|e| panic!("update: {e}"));
    assert!(n >= 1, "no pending batch was left in flight");
    drop(db);
    let next = run_within(&env, &["run", "--month", MONTH], Duration::from_secs(60)).await;
    assert!(
        next.is_some(),
        "the run after the crash was still waiting after 60 s (it sleeps until the stored time, 2 h away)"
    );
    assert_eq!(env.rows_by_key().len(), 150);
}

// ---------------------------------------------------------------------------
// DingTalk harness (`common::dingtalk`) with a `userids` scope and a
// DingTalk simulator that can be replaced (an employee leaves).
// ---------------------------------------------------------------------------

/// The shipped DingTalk job, scoped to `userids`.
struct DtEnv {
    env: DingEnv,
    userids: Vec<String>,
}

impl std::ops::Deref for DtEnv {
    type Target = DingEnv;
    fn deref(&self) -> &DingEnv {
        &self.env
    }
}

async fn dingtalk_of(org: Org) -> DingtalkSim {
    start_dingtalk(org, DingtalkSimConfig::default().with_endpoint_rate(1000)).await
}

impl DtEnv {
    async fn start(org: Org, userids: &[String]) -> DtEnv {
        let env = DtEnv {
            env: DingEnv::start(dingtalk_of(org).await).await,
            userids: userids.to_vec(),
        };
        env.write_job();
        env
    }

    /// The same form and database, a new DingTalk (e.g. with someone gone).
    async fn with_dingtalk(self, org: Org) -> DtEnv {
        let env = DtEnv {
            env: DingEnv {
                dingtalk: dingtalk_of(org).await,
                ..self.env
            },
            userids: self.userids,
        };
        env.write_job();
        env
    }

    fn write_job(&self) {
        let scope = "# userids = [\"manager4220\"]";
        let job = self.pointed_job();
        assert!(job.contains(scope));
        let ids: Vec<String> = self.userids.iter().map(|u| format!("\"{u}\"")).collect();
        let job = job.replacen(scope, &format!("userids = [{}]", ids.join(", ")), 1);
        self.write(
            "jobs/dingtalk_monthly.toml",
            &format!("{job}\n{FAST_LIMITS}\n{}", fast_retry(10)),
        );
    }

    async fn run(&self, args: &[&str]) -> std::process::Output {
        self.run_with(args, &[], common::RUN_TIMEOUT).await
    }
}

// ---------------------------------------------------------------------------
// Data loss by configuration: a key that does not name the month
// ---------------------------------------------------------------------------

/// `key = ["userid"]` (a new user's guess: the month is a field of its own).
/// `check` accepts it, and the November run finds October's records by key
/// ("before creating, look"), adopts them and overwrites them with November:
/// October is gone from the form. Either `check` refuses a key that cannot
/// tell months apart (like a key with no per-employee field), or both months
/// stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_without_the_month_does_not_overwrite_the_previous_month() {
    let env = Env::start(20, fast_wecom(), JdySimConfig::default()).await;
    env.write_job(FAST_SOURCE, FAST_TARGET);
    let mapping = common::shipped_mapping().replacen(
        "key = [\"userid\", \"month\"]",
        "key = [\"userid\"]",
        1,
    );
    assert_ne!(mapping, common::shipped_mapping());
    env.write("mappings/wecom_monthly.toml", &mapping);
    let check = env.run(&["check"]).await;
    if check.code() != 0 {
        return; // refused: fine
    }
    env.run(&["run", "--month", "2026-10"]).await.expect_code(0);
    let nov = env.run(&["run", "--month", "2026-11"]).await;
    let months: Vec<String> = env
        .jdy
        .records()
        .iter()
        .filter_map(|r| r["month"].as_str().map(String::from))
        .collect();
    let october = months.iter().filter(|m| *m == "2026-10").count();
    assert_eq!(
        october,
        20,
        "`check` accepted key = [\"userid\"] and the November run overwrote October's records{}",
        nov.all()
    );
}

// ---------------------------------------------------------------------------
// ---------------------------------------------------------------------------
// Operator: dry runs; the prune guard
// ---------------------------------------------------------------------------

/// `rerun --dry-run` promises to write nothing: in a fresh config dir it
/// should not leave a database behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerun_dry_run_creates_no_database() {
    let env = Env::start(20, fast_wecom(), JdySimConfig::default()).await;
    env.write_job(FAST_SOURCE, FAST_TARGET);
    let dry = env
        .run(&["rerun", "wecom_monthly", "--month", MONTH, "--dry-run"])
        .await;
    dry.expect_code(0);
    assert!(env.jdy.records().is_empty());
    assert!(
        !env.db().exists(),
        "a dry run created {:?}{}",
        env.db(),
        dry.all()
    );
}

/// The prune guard's "month" is the form's record count, copies included: a
/// month whose records are all held twice (a hand import done twice, say)
/// lets `--prune` delete 15 of 59 employees (a quarter) without
/// `--prune-all`, where the same month without copies is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_in_the_form_do_not_widen_the_prune_guard() {
    let env = synced(59, JdySimConfig::default()).await;
    for r in env.jdy.records() {
        let mut copy = r.clone();
        copy.remove("_id");
        env.jdy.add_record(copy);
    }
    assert_eq!(env.jdy.records().len(), 118);
    for u in &users(&env)[..15] {
        env.wecom.drop_report(u);
    }
    let pruned = env
        .run(&["rerun", "wecom_monthly", "--month", MONTH, "--prune"])
        .await;
    let left: usize = users(&env)[..15]
        .iter()
        .map(|u| records_of(&env.jdy, u))
        .sum();
    assert_eq!(
        left,
        30,
        "15 of 59 employees pruned without --prune-all{}",
        pruned.all()
    );
    pruned.expect_contains("prune refused");
}
