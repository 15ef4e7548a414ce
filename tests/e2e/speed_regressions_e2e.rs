//! Attacks on the speed changes (docs/ARCHITECTURE.md "Bird's-eye view"):
//! two chunks pulled at once, the pacing margin widened by throttling
//! answers, and the form check and the source login taken together.

use std::process::Output;
use std::time::{Duration, Instant};

use attendsync_sim::{DingtalkSimConfig, JdySimConfig, Org};

use crate::common::dingtalk::{all, fast_retry, start_dingtalk, DingEnv, FAST_LIMITS};
use crate::common::{self, Env, FAST_SOURCE, FAST_TARGET, RUN_TIMEOUT};

const MONTH: &str = "2026-10";
const NOVEMBER: (&str, &str) = ("ATTENDSYNC_NOW", "2026-11-20T04:00:00Z");

/// The shipped DingTalk job against `employees` simulated ones.
async fn dingtalk(employees: usize, config: DingtalkSimConfig) -> DingEnv {
    let sim = start_dingtalk(Org::generate(employees, 5), config).await;
    let env = DingEnv::start(sim).await;
    let job = format!("{}\n{FAST_LIMITS}\n{}", env.pointed_job(), fast_retry(10));
    env.write("jobs/dingtalk_monthly.toml", &job);
    env
}

async fn run(env: &DingEnv, args: &[&str]) -> Output {
    env.run_with(args, &[NOVEMBER], RUN_TIMEOUT).await
}

/// Employees the simulator served both report calls for in `MONTH`: each
/// was pulled, so each should have its record written.
fn employees_served(env: &DingEnv) -> usize {
    let served = |endpoint: &str| {
        env.dingtalk
            .call_log()
            .iter()
            .filter(|c| c.endpoint == endpoint && c.outcome.is_ok())
            .count()
    };
    served(attendsync_sim::dingtalk::GETCOLUMNVAL)
        .min(served(attendsync_sim::dingtalk::GETLEAVETIME))
}

/// Every employee the simulator served is written, but for the calls under
/// way when the pull stopped (a few employees may have one report of two).
fn assert_served_were_written(env: &DingEnv, what: &str, detail: &str) {
    let served = employees_served(env);
    let written = env.jdy.records().len();
    eprintln!("{what}: both reports served for {served} employees, {written} written");
    assert!(
        written + 2 * attendsync::source::dingtalk::EMPLOYEES_IN_FLIGHT >= served,
        "{served} employees served, only {written} written\n{detail}"
    );
}

/// DingTalk's monthly quota (90020) runs out while two chunks are pulled at
/// once. Every employee whose reports DingTalk served (and counted against
/// the company's quota) must have their record written: the quota is gone
/// for the month, so a record pulled and then thrown away cannot be pulled
/// again until next month.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_stop_writes_the_records_of_the_chunk_pulled_beside_it() {
    // 1 getattcolumns + 2 calls for each of 150 employees of 250.
    let config = DingtalkSimConfig {
        monthly_quota: Some(301),
        ..DingtalkSimConfig::default().with_endpoint_rate(1000)
    };
    let env = dingtalk(250, config).await;
    let first = run(&env, &["run", "--month", MONTH]).await;
    let text = all(&first);
    assert_eq!(first.status.code(), Some(1), "{text}");
    assert!(text.contains("90020"), "{text}");
    assert_served_were_written(&env, "90020", &text);
}

/// SIGTERM while two DingTalk chunks are pulled: the meter stops every
/// further call, both chunks end with what they already have, and "what was
/// pulled is written, then the run stops" (docs/ARCHITECTURE.md, "A metered
/// source never spends past its budget") must hold for both of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_two_chunks_in_flight_writes_what_both_pulled() {
    let mut config = DingtalkSimConfig::default().with_endpoint_rate(1000);
    config.latency = Duration::from_millis(20);
    let env = dingtalk(250, config).await;
    let mut child = env
        .command(&["run", "--month", MONTH])
        .env(NOVEMBER.0, NOVEMBER.1)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn: {e}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    // Past the first chunk's start and the second's (the directory is listed
    // long before): ~60 employees of each pulled.
    while env.dingtalk.metered_calls() < 240 {
        assert!(Instant::now() < deadline, "no metered calls");
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the run ended ({status}) before the signal");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let pid = child.id().unwrap_or_else(|| panic!("already gone"));
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap_or_else(|e| panic!("kill: {e}"));
    assert!(sent.success());
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .unwrap_or_else(|_| panic!("no exit within 60 s of SIGTERM"))
        .unwrap_or_else(|e| panic!("wait: {e}"));
    assert_ne!(status.code(), Some(0));
    assert_served_were_written(&env, "SIGTERM", "");
}

/// A wrong WeCom secret and a wrong form id at once: the form check and the
/// login now run together, and each run must still say the same thing with
/// the same exit status, whichever answered first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_and_wrong_form_say_the_same_thing_every_time() {
    let env = Env::start(5, common::fast_wecom(), JdySimConfig::default()).await;
    let job = env
        .job_text(FAST_SOURCE, FAST_TARGET)
        .replace(common::ENTRY_ID, "64093d8613931a00085bb2ff");
    env.write("jobs/wecom_monthly.toml", &job);
    let wrong = [("WECOM_CHECKIN_SECRET", "Wrong-secret-00112233445566")];
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let run = env.run_with_env(&["run", "--month", MONTH], &wrong).await;
        let out = run.all();
        assert_ne!(run.code(), 0, "{out}");
        assert!(
            out.contains("64093d8613931a00085bb2ff") || out.contains("entry"),
            "{out}"
        );
        seen.insert((run.code(), out.contains("40001")));
    }
    assert_eq!(seen.len(), 1, "runs differ: {seen:?}");
    assert!(env.jdy.records().is_empty());
}

/// A run killed with a batch in flight, then a run with a wrong source
/// secret: the form check settles the pending batch while the login fails;
/// the next good run creates nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_after_a_kill_neither_loses_nor_duplicates_the_pending_batch() {
    let jdy = JdySimConfig {
        tx_mode: attendsync_sim::TxMode::Ignore,
        commit_delay: Duration::from_millis(600),
        ..JdySimConfig::default()
    };
    let env = Env::start(300, common::fast_wecom(), jdy).await;
    env.write_job(FAST_SOURCE, FAST_TARGET);
    common::run_and_kill(&env, MONTH, common::batch_in_flight).await;
    let wrong = [("WECOM_CHECKIN_SECRET", "Wrong-secret-00112233445566")];
    let bad = env.run_with_env(&["run", "--month", MONTH], &wrong).await;
    assert_ne!(bad.code(), 0, "{}", bad.all());
    assert!(bad.all().contains("40001"), "{}", bad.all());
    let good = env.run(&["run", "--month", MONTH]).await;
    good.expect_code(0);
    assert_eq!(env.jdy.records().len(), 300, "no record twice");
    assert_eq!(env.rows_by_key().len(), 300);
}

/// DingTalk's quota (90020) is spent by the first chunk while the directory
/// is still being listed: the pull stops, and no chunk may start after that
/// (each of its calls is refused, and each refusal is one more metered
/// request at a vendor that has said stop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_chunk_starts_after_the_quota_stopped_the_pull() {
    let config = DingtalkSimConfig {
        monthly_quota: Some(10),
        page_size_cap: Some(10),
        ..DingtalkSimConfig::default().with_endpoint_rate(1000)
    };
    let sim = start_dingtalk(Org::generate(250, 5), config).await;
    let env = DingEnv::start(sim).await;
    // The directory listed slowly (25 pages at 5/s): the first chunk meets
    // the quota long before the second chunk's employees are known.
    let limits = "[source.limits]\n\"topapi/v2/department/listsub\" = \"200/s\"\n\"topapi/v2/user/list\" = \"5/s\"\n\"topapi/attendance/getcolumnval\" = \"200/s\"\n\"topapi/attendance/getleavetimebynames\" = \"200/s\"\n";
    let job = format!("{}\n{limits}\n{}", env.pointed_job(), fast_retry(10));
    env.write("jobs/dingtalk_monthly.toml", &job);
    let first = run(&env, &["run", "--month", MONTH]).await;
    let text = all(&first);
    assert_eq!(first.status.code(), Some(1), "{text}");
    assert!(text.contains("90020"), "{text}");
    let log = env.dingtalk.call_log();
    let metered = |c: &&attendsync_sim::CallRecord| {
        attendsync_sim::dingtalk::METERED.contains(&c.endpoint.as_str())
    };
    let first_refusal = log
        .iter()
        .filter(metered)
        .filter(|c| c.outcome.code() == Some(90020))
        .map(|c| c.at)
        .min()
        .unwrap_or_else(|| panic!("no 90020 in the call log\n{text}"));
    let late = log
        .iter()
        .filter(metered)
        .filter(|c| c.at > first_refusal + Duration::from_secs(1))
        .count();
    let refused = env.dingtalk.quota_refusals();
    eprintln!("{refused} refusals, {late} metered requests more than 1 s after the first");
    assert_eq!(
        late, 0,
        "{late} metered requests long after the quota stop\n{text}"
    );
    assert!(
        refused <= 2 * attendsync::source::dingtalk::EMPLOYEES_IN_FLIGHT,
        "{refused} refusals"
    );
}

/// A DingTalk run of 200 employees at the default rates, with
/// `throttle_ratio` of answers throttled by both simulators: its seconds,
/// and the quota violations both simulators counted.
async fn dingtalk_storm(ratio: f64) -> (f64, usize, usize, usize) {
    let config = DingtalkSimConfig {
        throttle_ratio: ratio,
        seed: 7,
        ..DingtalkSimConfig::default()
    };
    let sim = start_dingtalk(Org::generate(200, 5), config).await;
    let env = DingEnv::start(sim).await;
    env.jdy.set_throttle_ratio(ratio);
    env.write(
        "jobs/dingtalk_monthly.toml",
        &format!("{}\n{}", env.pointed_job(), fast_retry(30)),
    );
    let start = Instant::now();
    let out = run(&env, &["run", "--month", MONTH]).await;
    let took = start.elapsed().as_secs_f64();
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    assert_eq!(env.jdy.records().len(), 200);
    (
        took,
        env.dingtalk.quota_violations(),
        env.jdy.quota_violations(),
        env.dingtalk.injected_throttles(),
    )
}

/// A throttling storm on both vendors widens every margin to its bound; the
/// run still completes, its own pacing trips no quota, and it costs about
/// the retried calls, not a crawl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttling_storm_widens_the_margins_without_crawling_or_tripping_quotas() {
    let (calm, calm_dt, calm_jdy, _) = dingtalk_storm(0.0).await;
    let (storm, storm_dt, storm_jdy, injected) = dingtalk_storm(0.5).await;
    eprintln!("calm {calm:.1} s ({calm_dt}+{calm_jdy} violations); storm {storm:.1} s ({storm_dt}+{storm_jdy} violations, {injected} injected)");
    // Violations of the calm run are the next test's. In the storm every
    // margin is at its bound (80 ms a second): only a stall of the simulator's
    // process longer than that could trip one.
    assert!(
        storm_dt + storm_jdy <= 2,
        "violations in the storm: {storm_dt} + {storm_jdy}"
    );
    // Half the answers throttled: about twice the calls, at a pace at most
    // 8 % slower; more than three times as long is a crawl.
    assert!(storm < calm * 3.0, "calm {calm:.1} s, storm {storm:.1} s");
}

/// No throttling injected: every quota violation the simulator counts comes
/// from our own pacing against the simulator's arrival stamps. The margin is
/// 10 ms a one-second window (`http/pace.rs`); on this two-core machine under
/// load (load average 2-3) the simulator, sharing the CPU, stamped the 21st
/// call of a span 991-999 ms after the 1st: 1-2 violations in each of 7 runs
/// of 200 employees, 0 in 3 runs with 30 ms, at the same wall time. A real
/// vendor's stamps do not stall with our machine; a quiet machine gave none
/// (docs/benchmarks.md). What must hold: each answer widens the margin, so a
/// run meets a few at most, and every record lands once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_own_pacing_meets_a_few_throttling_answers_at_most() {
    let (took, dingtalk, jdy, _) = dingtalk_storm(0.0).await;
    assert!(
        dingtalk + jdy <= 6,
        "{dingtalk} + {jdy} violations in a calm run of {took:.1} s: the margins do not widen"
    );
}

/// Head counts at the chunk boundaries (100 a chunk): every employee once,
/// nothing written twice, a second run writes nothing; `rerun --employee`
/// of employees in different chunks and a dry run behave as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_boundaries_100_101_200_and_reruns_across_chunks() {
    for n in [100usize, 101, 200] {
        let env = Env::start(n, common::fast_wecom(), JdySimConfig::default()).await;
        env.write_job(FAST_SOURCE, FAST_TARGET);
        let dry = env.run(&["run", "--month", MONTH, "--dry-run"]).await;
        dry.expect_code(0);
        assert_eq!(env.jdy.write_calls(), 0, "a dry run writes nothing");
        let first = env.run(&["run", "--month", MONTH]).await;
        first.expect_code(0);
        assert_eq!(
            common::counts(&first.stdout(), MONTH),
            (n as u64, n as u64, 0, 0, 0)
        );
        assert_eq!(env.rows_by_key().len(), n);
        let writes = env.jdy.write_calls();
        let second = env.run(&["run", "--month", MONTH]).await;
        second.expect_code(0);
        assert_eq!(env.jdy.write_calls(), writes, "{n}: the second run wrote");
        let users = &env.wecom.org().users;
        let (x, y) = (users[0].userid.clone(), users[n - 1].userid.clone());
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
        rerun.expect_code(0);
        assert_eq!(
            common::counts(&rerun.stdout(), MONTH),
            (2, 0, 0, 2, 0),
            "{}",
            rerun.all()
        );
        assert_eq!(env.rows_by_key().len(), n);
    }
}

/// Metered requests the simulator received, whatever it answered.
fn metered_attempts(env: &DingEnv) -> usize {
    attendsync_sim::dingtalk::METERED
        .iter()
        .map(|e| env.dingtalk.calls(e))
        .sum()
}

/// A budget of one and a half chunks, then of exactly two, with chunks
/// pulled two at a time: never one metered call over it, the month reported
/// cut short by the budget (not complete), and the JSON report, the form,
/// the simulator and `status` agreeing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_of_one_and_a_half_and_two_chunks_are_hard_caps_and_agree_everywhere() {
    for (budget, pulled) in [(301u64, 150u64), (401, 200)] {
        let env = dingtalk(250, DingtalkSimConfig::default().with_endpoint_rate(1000)).await;
        let job = format!("{}\n{FAST_LIMITS}\n{}", env.pointed_job(), fast_retry(10)).replace(
            "\nmonthly_call_budget = 5000",
            &format!("\nmonthly_call_budget = {budget}"),
        );
        env.write("jobs/dingtalk_monthly.toml", &job);
        let out = run(&env, &["run", "--month", MONTH, "--json"]).await;
        let text = all(&out);
        assert_eq!(out.status.code(), Some(1), "{text}");
        let attempts = metered_attempts(&env) as u64;
        assert!(
            attempts <= budget,
            "{attempts} metered attempts > {budget}\n{text}"
        );
        assert_eq!(attempts, 1 + 2 * pulled, "{text}");
        assert_eq!(env.jdy.records().len() as u64, pulled, "{text}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("JSON summary: {e}\n{text}"));
        let month = &report["jobs"][0]["months"][0];
        assert_eq!(month["pulled"], serde_json::json!(pulled), "{report}");
        assert_eq!(
            month["skipped"],
            serde_json::json!(250 - pulled),
            "{report}"
        );
        let status = env.run_with(&["status"], &[NOVEMBER], RUN_TIMEOUT).await;
        let spent = String::from_utf8_lossy(&status.stdout)
            .lines()
            .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .find(|w| w.len() == 3 && w[0] == "dingtalk_monthly" && w[1] == "2026-11")
            .and_then(|w| w[2].parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no metered row in:\n{}", all(&status)));
        assert_eq!(spent, attempts, "status vs the simulator");
    }
}

/// kill -9 while two DingTalk chunks are pulled and the first writes are
/// under way, then a clean run: one record per employee, each holding what
/// the mapping makes of the simulator's sums.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_two_chunks_in_flight_then_a_clean_run_leaves_one_right_record_each() {
    let mut config = DingtalkSimConfig::default().with_endpoint_rate(1000);
    config.latency = Duration::from_millis(15);
    let env = dingtalk(250, config).await;
    let mut child = env
        .command(&["run", "--month", MONTH])
        .env(NOVEMBER.0, NOVEMBER.1)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn: {e}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.jdy.write_calls() == 0 || env.dingtalk.metered_calls() < 300 {
        assert!(Instant::now() < deadline, "never reached the kill point");
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the run ended ({status}) before the kill");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.kill().await.unwrap_or_else(|e| panic!("kill: {e}"));
    let clean = run(&env, &["run", "--month", MONTH]).await;
    assert_eq!(clean.status.code(), Some(0), "{}", all(&clean));
    let rows = env.jdy.records();
    let mut ids: Vec<&str> = rows
        .iter()
        .filter_map(|r| r.get("userid").and_then(|v| v.as_str()))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        (rows.len(), ids.len()),
        (250, 250),
        "one record per employee"
    );
    crate::common::dingtalk::assert_rows_are_the_sources(&env, MONTH, 9);
}

/// A permission error (48002) meets a later chunk of `rerun --prune-all`
/// while the chunks before it are written: the month is not complete, so
/// nothing is pruned, not even the records really gone; once the
/// permission is back, the same rerun prunes exactly those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_failing_beside_another_prunes_nothing() {
    let env = Env::start(300, common::fast_wecom(), JdySimConfig::default()).await;
    env.write_job(FAST_SOURCE, FAST_TARGET);
    env.run(&["run", "--month", MONTH]).await.expect_code(0);
    assert_eq!(env.rows_by_key().len(), 300);
    let users: Vec<String> = (env.wecom.org().users.iter())
        .map(|u| u.userid.clone())
        .collect();
    for u in users[..5].iter().chain(&users[250..255]) {
        env.wecom.drop_report(u);
    }
    env.wecom.set_latency(Duration::from_millis(400));
    let endpoint = "checkin/getcheckin_monthdata";
    let before = env.wecom.calls(endpoint);
    let args = ["rerun", "wecom_monthly", "--month", MONTH, "--prune-all"];
    let (failed, ()) = tokio::join!(env.run(&args), async {
        let deadline = Instant::now() + Duration::from_secs(60);
        while env.wecom.calls(endpoint) < before + 2 {
            assert!(Instant::now() < deadline, "the rerun never pulled");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        env.wecom.set_api_forbidden(true);
    });
    assert_ne!(failed.code(), 0, "{}", failed.all());
    assert!(failed.all().contains("48002"), "{}", failed.all());
    assert_eq!(
        env.rows_by_key().len(),
        300,
        "nothing pruned\n{}",
        failed.all()
    );
    env.wecom.set_api_forbidden(false);
    env.wecom.set_latency(Duration::ZERO);
    let pruned = env.run(&args).await;
    pruned.expect_code(0);
    let left = env.rows_by_key();
    assert_eq!(left.len(), 290, "{}", pruned.all());
    for u in users[..5].iter().chain(&users[250..255]) {
        assert!(!left.keys().any(|(id, _)| id == u), "{u} kept");
    }
}

/// Part of the month's budget spent by an earlier run: what is left holds
/// less than one chunk, and two chunks are never pulled against it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_mostly_spent_earlier_this_month_is_still_a_hard_cap() {
    let env = dingtalk(250, DingtalkSimConfig::default().with_endpoint_rate(1000)).await;
    let first = run(&env, &["run", "--month", MONTH]).await;
    assert_eq!(first.status.code(), Some(0), "{}", all(&first));
    assert_eq!(metered_attempts(&env), 501);
    // 700 in all: 199 left, one call for the columns and 99 employees.
    let job = format!("{}\n{FAST_LIMITS}\n{}", env.pointed_job(), fast_retry(10)).replace(
        "\nmonthly_call_budget = 5000",
        "\nmonthly_call_budget = 700",
    );
    env.write("jobs/dingtalk_monthly.toml", &job);
    let out = run(&env, &["run", "--month", "2026-09", "--json"]).await;
    let text = all(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        metered_attempts(&env) <= 700,
        "{} attempts\n{text}",
        metered_attempts(&env)
    );
    assert_eq!(
        metered_attempts(&env),
        700,
        "the budget left is used\n{text}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("JSON summary: {e}\n{text}"));
    let month = &report["jobs"][0]["months"][0];
    assert_eq!(month["pulled"], serde_json::json!(99), "{report}");
    assert_eq!(month["skipped"], serde_json::json!(151), "{report}");
    assert_eq!(env.jdy.records().len(), 250 + 99);
}

/// A throttling storm that exhausts the retries of a report call while
/// chunks are in flight: the pull stops, what was served is written (give
/// or take the employees under way), the month fails, and a calm run then
/// leaves exactly one record per employee.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_exhausted_in_a_storm_lose_nothing_and_duplicate_nothing() {
    let config = DingtalkSimConfig {
        seed: 11,
        latency: Duration::from_millis(5),
        ..DingtalkSimConfig::default().with_endpoint_rate(1000)
    };
    let env = dingtalk(250, config).await;
    let job = format!("{}\n{FAST_LIMITS}\n{}", env.pointed_job(), fast_retry(2));
    env.write("jobs/dingtalk_monthly.toml", &job);
    // The storm starts once the reports are being pulled (a storm on the
    // token alone fails the job before any month).
    let (stormy, ()) = tokio::join!(run(&env, &["run", "--month", MONTH, "--json"]), async {
        let deadline = Instant::now() + Duration::from_secs(60);
        while env.dingtalk.metered_calls() < 20 {
            assert!(Instant::now() < deadline, "no metered calls");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        env.dingtalk.set_throttle_ratio(0.6);
    });
    let text = all(&stormy);
    assert_ne!(stormy.status.code(), Some(0), "{text}");
    let report: serde_json::Value = serde_json::from_slice(&stormy.stdout)
        .unwrap_or_else(|e| panic!("JSON summary: {e}\n{text}"));
    let month = &report["jobs"][0]["months"][0];
    let n = |k: &str| month[k].as_u64().unwrap_or(0);
    assert_eq!(env.jdy.records().len() as u64, n("created"), "{month}");
    assert!(month["month_error"].is_string(), "{month}");
    let served = employees_served(&env) as u64;
    let in_flight = 2 * attendsync::source::dingtalk::EMPLOYEES_IN_FLIGHT as u64;
    assert!(
        n("pulled") + in_flight >= served,
        "{served} served: {month}"
    );
    env.dingtalk.set_throttle_ratio(0.0);
    let calm = run(&env, &["run", "--month", MONTH]).await;
    assert_eq!(calm.status.code(), Some(0), "{}", all(&calm));
    let rows = env.jdy.records();
    let mut ids: Vec<&str> = (rows.iter())
        .filter_map(|r| r.get("userid").and_then(|v| v.as_str()))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!((rows.len(), ids.len()), (250, 250));
}
