//! Regressions found by trying the reshaped engine as a new user would: odd
//! databases, configs and vendor faults, each checked through the binary.

use crate::common;

use attendsync_sim::JdySimConfig;
use common::{fast_wecom, Env, FAST_SOURCE, FAST_TARGET};

const MONTH: &str = "2026-11";

async fn env() -> Env {
    let env = Env::start(20, fast_wecom(), JdySimConfig::default()).await;
    env.write_job(FAST_SOURCE, FAST_TARGET);
    env
}

fn sql(env: &Env, statement: &str) {
    let db = rusqlite::Connection::open(env.db()).unwrap_or_else(|e| panic!("open db: {e}"));
    db.execute_batch(statement)
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

/// A month text in the database that does not parse is an error now; the
/// error must name the row and the way out, and following it must unblock the
/// job (a bad owed month used to stop every scheduled run of the job, and
/// `status` too, with only "invalid month" to go on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_owed_month_names_its_row_and_the_fix_unblocks_the_job() {
    let env = env().await;
    env.run(&["run", "--month", MONTH]).await.expect_code(0);
    sql(
        &env,
        "INSERT INTO months_owed (job, month, since, closes_at)
         VALUES ('wecom_monthly', '2026-13', '2026-12-01T00:00:00Z', '2000-01-01T00:00:00Z')",
    );
    let fix = "DELETE FROM months_owed WHERE job = 'wecom_monthly' AND month = '2026-13'";
    env.run(&["run"])
        .await
        .expect_code(1)
        .expect_contains("months_owed")
        .expect_contains(fix);
    env.run(&["status"])
        .await
        .expect_code(1)
        .expect_contains(fix);
    sql(&env, fix);
    env.run(&["run"]).await.expect_code(0);
    env.run(&["status"]).await.expect_code(0);
}

/// The same for a pending create batch: the run of its job fails naming the
/// row, instead of an anonymous "invalid month" while `status` promises that
/// the next run settles it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_pending_batch_month_names_its_row() {
    let env = env().await;
    env.run(&["run", "--month", MONTH]).await.expect_code(0);
    sql(
        &env,
        "INSERT INTO pending_batches (transaction_id, job, month, first_sent_at, records)
         VALUES ('tx-bad', 'wecom_monthly', '2026/11', '2026-11-01T00:00:00Z', '[]')",
    );
    let fix = "DELETE FROM pending_batches WHERE job = 'wecom_monthly' AND month = '2026/11'";
    env.run(&["run", "--month", MONTH])
        .await
        .expect_code(1)
        .expect_contains(fix);
    sql(&env, fix);
    env.run(&["run", "--month", MONTH]).await.expect_code(0);
}

/// `status` over a bad month in the run history or the metered calls names
/// the row to remove.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_over_a_bad_history_month_names_its_row() {
    let env = env().await;
    env.run(&["run", "--month", MONTH]).await.expect_code(0);
    sql(
        &env,
        "INSERT INTO metered_calls (job, period, calls) VALUES ('wecom_monthly', 'bad', 3)",
    );
    env.run(&["status"]).await.expect_code(1).expect_contains(
        "DELETE FROM metered_calls WHERE job = 'wecom_monthly' AND period = 'bad'",
    );
    sql(
        &env,
        "DELETE FROM metered_calls WHERE period = 'bad'; UPDATE run_months SET month = '11-2026'",
    );
    env.run(&["status"]).await.expect_code(1).expect_contains(
        "DELETE FROM run_months WHERE job = 'wecom_monthly' AND month = '11-2026'",
    );
}
