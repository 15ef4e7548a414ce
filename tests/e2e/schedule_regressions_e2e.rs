//! Regressions found attacking the schedules (months owed, the DingTalk
//! budget as a hard cap, alerts, closed pipes). Each test is bounded in time.

use crate::common;

use std::process::{Output, Stdio};
use std::time::Duration;

use attendsync::store::Store;
use attendsync_sim::{DingtalkSimConfig, Org};

use crate::common::dingtalk::{all, fast_retry, start_dingtalk, DingEnv};

const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// The shipped DingTalk job against the simulators, with a call budget.
struct Ding(DingEnv);

impl std::ops::Deref for Ding {
    type Target = DingEnv;
    fn deref(&self) -> &DingEnv {
        &self.0
    }
}

impl Ding {
    /// The shipped DingTalk job against the simulators, with `budget`.
    async fn start(employees: usize, budget: u32) -> Ding {
        let dingtalk = start_dingtalk(
            Org::generate(employees, 3),
            DingtalkSimConfig::default().with_endpoint_rate(1000),
        )
        .await;
        let env = Ding(DingEnv::start(dingtalk).await);
        env.write("jobs/dingtalk_monthly.toml", &env.job(budget));
        env
    }

    fn job(&self, budget: u32) -> String {
        let job = self.pointed_job();
        assert!(job.contains("\nmonthly_call_budget = 5000"));
        let job = job.replace(
            "\nmonthly_call_budget = 5000",
            &format!("\nmonthly_call_budget = {budget}"),
        );
        format!("{job}\n{}", fast_retry(5))
    }

    async fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, &[], RUN_TIMEOUT).await
    }
}

/// The budget is a hard cap on *every* metered call (README: "no attempt is sent
/// that would pass the budget"). `check --remote` looks the report columns up
/// with `getattcolumns`, a metered call, without the meter: once a run has
/// spent the month's budget, each `check --remote` spends one more that
/// SQLite never counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_remote_spends_metered_calls_past_an_exhausted_budget() {
    // 1 column lookup + 10 employees × 2 calls = 21: the run may pull 10 of 20.
    let budget = 21;
    let env = Ding::start(20, budget).await;
    let run = env.run(&["run", "--month", "2026-10"]).await;
    assert_eq!(run.status.code(), Some(1), "{}", all(&run));
    assert!(
        env.dingtalk.metered_calls() <= budget as usize,
        "the run itself passed the budget: {}\n{}",
        env.dingtalk.metered_calls(),
        all(&run)
    );
    let spent_by_run = env.dingtalk.metered_calls();
    let check = env.run(&["check", "--remote"]).await;
    assert_eq!(check.status.code(), Some(0), "{}", all(&check));
    assert!(
        env.dingtalk.metered_calls() <= budget as usize,
        "`check --remote` sent {} metered call(s) after the run had spent {spent_by_run} of the \
         budget {budget}: DingTalk served {} in all, more than the hard cap\n{}",
        env.dingtalk.metered_calls() - spent_by_run,
        env.dingtalk.metered_calls(),
        all(&check)
    );
}

/// Every command survives a closed stdout. Plain `check` prints
/// its budget warning with `println!`, which panics on EPIPE (exit 101).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_with_a_budget_warning_survives_a_closed_stdout() {
    // A budget of 1 cannot pay for one employee-month: `check` warns.
    let env = Ding::start(3, 1).await;
    let open = env.run(&["check"]).await;
    assert!(
        String::from_utf8_lossy(&open.stdout).contains("warning: job"),
        "{}",
        all(&open)
    );
    let mut child = env
        .command(&["check"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run attendsync: {e}"));
    drop(child.stdout.take());
    let out = tokio::time::timeout(RUN_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("check did not finish"))
        .unwrap_or_else(|e| panic!("check: {e}"));
    use std::os::unix::process::ExitStatusExt;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(0)
            || out.status.code() == Some(141)
            || out.status.signal() == Some(13),
        "`attendsync check` with a closed stdout: {:?}\n{stderr}",
        out.status
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `status` lists months owed (README "Months owed"), but
/// decides which month is "current" in Beijing time whatever the job's
/// timezone. For a job in Pacific/Auckland whose run on the 1st failed,
/// November has closed (it is 1 December there) and is owed, yet it is still
/// November in Beijing, so `status` does not list it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_a_month_owed_by_a_job_in_a_timezone_ahead_of_beijing() {
    use attendsync_sim::{JdySimConfig, WecomSimConfig};
    let env = common::Env::start(5, common::fast_wecom(), JdySimConfig::default()).await;
    let _ = WecomSimConfig::default();
    let job = format!(
        "timezone = \"Pacific/Auckland\"\n{}",
        env.job_text(common::FAST_RETRY, common::FAST_TARGET_RETRY)
    );
    env.write("jobs/wecom_monthly.toml", &job);
    // 03:00 on 1 December in Auckland = 22:00 on 30 November in Beijing.
    let now = ("ATTENDSYNC_NOW", "2026-12-01T03:00:00+13:00");
    let failed = env
        .run_with_env(
            &["run"],
            &[now, ("WECOM_CHECKIN_SECRET", "wrong-secret-0123456789")],
        )
        .await;
    assert_ne!(failed.code(), 0, "{}", failed.all());
    let owed = Store::open(&env.db())
        .and_then(|s| s.owed_months("wecom_monthly"))
        .unwrap_or_else(|e| panic!("read owed months: {e}"));
    assert!(
        owed.iter().any(|m| m == "2026-11"),
        "the failed run should owe November: {owed:?}"
    );
    let status = env.run_with_env(&["status"], &[now]).await;
    status.expect_code(0);
    assert!(
        status.stdout().contains("2026-11") && status.stdout().contains("Months owed"),
        "November is closed in the job's timezone and owed, but `status` does not list it:\n{}",
        status.stdout()
    );
}

/// SIGHUP never kills, even while the daemon starts: before, the daemon only
/// listened for it after it had loaded its job files and opened the database,
/// and a SIGHUP in that window (a `systemctl reload` right after a restart)
/// had the default action and killed it. Here the start is held for as long
/// as the test likes: the database path is a FIFO, whose open blocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_right_after_the_daemon_starts_does_not_kill_it() {
    use attendsync_sim::JdySimConfig;
    let env = common::Env::start(3, common::fast_wecom(), JdySimConfig::default()).await;
    env.write_job("", "");
    let job = std::fs::read_to_string(env.path().join("jobs/wecom_monthly.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    env.write(
        "jobs/wecom_monthly.toml",
        &format!("schedule = \"0 30 2 * * *\"\n{job}"),
    );
    let fifo = env.path().join("held.db");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap_or_else(|e| panic!("mkfifo: {e}"));
    assert!(made.success());
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_attendsync"))
        .args(["daemon", "--config-dir"])
        .arg(env.path())
        .arg("--db")
        .arg(&fifo)
        .env_remove("ATTENDSYNC_DB")
        .env("WECOM_CORP_ID", common::CORP_ID)
        .env("WECOM_CHECKIN_SECRET", common::SECRET)
        .env("JDY_API_KEY", common::API_KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn the daemon: {e}"));
    let pid = child.id().unwrap_or_else(|| panic!("no pid"));
    // Its own code runs within milliseconds (no program can handle a signal
    // while the loader maps it); from then on SIGHUP must be handled.
    let armed = std::time::Instant::now() + Duration::from_secs(5);
    while !sighup_handled(pid) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the daemon ended before its start was held: {status:?}");
        }
        assert!(
            std::time::Instant::now() < armed,
            "SIGHUP is not handled while the daemon starts"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for _ in 0..50 {
        let _ = std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let status = child.try_wait().unwrap_or_else(|e| panic!("wait: {e}"));
    assert!(
        status.is_none(),
        "a SIGHUP during the start killed it: {status:?}"
    );
    child.kill().await.unwrap_or_else(|e| panic!("kill: {e}"));
}

/// Whether the process ignores or catches SIGHUP (bit 0 of SigIgn or SigCgt
/// in /proc/PID/status).
fn sighup_handled(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().any(|l| {
        let mask = l
            .strip_prefix("SigIgn:")
            .or_else(|| l.strip_prefix("SigCgt:"))
            .map(str::trim);
        mask.and_then(|m| u64::from_str_radix(m, 16).ok())
            .is_some_and(|bits| bits & 1 == 1)
    })
}
