//! End-to-end: the built binary runs the shipped DingTalk job and mapping
//! against the DingTalk and Jiandaoyun simulators.

use std::process::Output;
use std::time::Duration;

use attendsync::month::Month;
use attendsync::source::dingtalk::EMPLOYEES_IN_FLIGHT;
use attendsync_sim::{DingtalkSimConfig, Org};

use crate::common::dingtalk::{
    all, assert_rows_are_the_sources, fast_retry, start_dingtalk, DingEnv, API_KEY, APP_KEY,
    APP_SECRET, FAST_LIMITS, SHIPPED_MAPPING,
};
use crate::common::RUN_TIMEOUT;

const MONTH: &str = "2026-10";

/// The shipped job against the simulators, with fast limits and retries.
struct Env(DingEnv);

impl std::ops::Deref for Env {
    type Target = DingEnv;
    fn deref(&self) -> &DingEnv {
        &self.0
    }
}

impl Env {
    async fn start(employees: usize, config: DingtalkSimConfig) -> Env {
        let dingtalk = start_dingtalk(Org::generate(employees, 5), config).await;
        let env = Env(DingEnv::start(dingtalk).await);
        env.write("jobs/dingtalk_monthly.toml", &env.job());
        env
    }

    /// The shipped job pointed at the simulators, with fast limits and retries.
    fn job(&self) -> String {
        format!("{}\n{FAST_LIMITS}\n{}", self.pointed_job(), fast_retry(10))
    }

    async fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.run_with(args, env, RUN_TIMEOUT).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_job_syncs_a_month_then_writes_nothing_the_second_time() {
    let env = Env::start(60, DingtalkSimConfig::default().with_endpoint_rate(1000)).await;
    let first = env.run(&["run", "--month", MONTH], &[]).await;
    let text = all(&first);
    assert_eq!(first.status.code(), Some(0), "{text}");
    assert!(text.contains("metered calls: 121"), "{text}");
    assert_eq!(env.dingtalk.metered_calls(), 121);
    assert_eq!(env.jdy.records().len(), 60);

    // Every row is what the mapping makes of the simulator's sums.
    assert_rows_are_the_sources(&env, MONTH, 7);

    let writes = env.jdy.write_calls();
    let second = env.run(&["run", "--month", MONTH], &[]).await;
    assert_eq!(second.status.code(), Some(0), "{}", all(&second));
    assert_eq!(
        env.jdy.write_calls(),
        writes,
        "the second run must not write"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_and_exhausted_quota_stop_the_job() {
    let config = DingtalkSimConfig {
        monthly_quota: Some(10),
        ..DingtalkSimConfig::default().with_endpoint_rate(1000)
    };
    let env = Env::start(60, config).await;
    let wrong = "Wrong-DingSecret-00112233445566";
    let run = env
        .run(
            &["run", "--month", MONTH],
            &[("DINGTALK_APP_SECRET", wrong)],
        )
        .await;
    let text = all(&run);
    assert_eq!(run.status.code(), Some(1), "{text}");
    assert!(
        text.contains("40001") && text.contains("app_secret"),
        "{text}"
    );
    for secret in [wrong, APP_SECRET, API_KEY] {
        assert!(!text.contains(secret), "{secret} in the output:\n{text}");
    }

    let run = env.run(&["run", "--month", MONTH], &[]).await;
    let text = all(&run);
    assert_eq!(run.status.code(), Some(1), "{text}");
    assert!(text.contains("90020"), "{text}");
    assert!(text.contains("next calendar month"), "{text}");
    // Employees are pulled several at once, two calls each, and while the
    // month is listed its first two chunks (16, then the rest) overlap: the
    // calls already under way when the first refusal comes back are refused
    // too, no more (of the 121 the month would make).
    let refused = env.dingtalk.quota_refusals();
    eprintln!("{refused} calls refused after the quota ran out");
    assert!(
        (1..=2 * 2 * EMPLOYEES_IN_FLIGHT).contains(&refused),
        "{refused} refusals"
    );
    assert_eq!(env.dingtalk.metered_calls(), 10);
}

/// Counts of a summary line: (pulled, created, updated, unchanged, failed).
fn counts(o: &Output) -> (u64, u64, u64, u64, u64) {
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let line = text
        .lines()
        .find(|l| l.contains(&format!(" {MONTH}: pulled ")))
        .unwrap_or_else(|| panic!("no summary line in:\n{text}"));
    let n: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok())
        .collect();
    (n[2], n[3], n[4], n[5], n[6])
}

fn with_budget(job: &str, budget: u32) -> String {
    job.replacen(
        "type = \"dingtalk\"",
        &format!("type = \"dingtalk\"\nmonthly_call_budget = {budget}"),
        1,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_budget_stops_short_reports_what_it_skipped_and_starts_fresh_next_month() {
    let env = Env::start(60, DingtalkSimConfig::default().with_endpoint_rate(1000)).await;
    let job = env.job();
    assert!(
        job.contains("\nmonthly_call_budget = 5000"),
        "the shipped job states its budget"
    );
    let job = with_budget(
        &job.replace("\nmonthly_call_budget = 5000", "\n# (budget set below)"),
        50,
    );
    env.write("jobs/dingtalk_monthly.toml", &job);
    let november = [("ATTENDSYNC_NOW", "2026-11-20T04:00:00Z")];

    // 60 employees × 2 calls + 1 = 121 needed; 50 allowed: 1 + 24 × 2 = 49.
    let run = env.run(&["run", "--month", MONTH], &november).await;
    let text = all(&run);
    assert_eq!(run.status.code(), Some(1), "{text}");
    assert!(text.contains("121 metered calls needed"), "{text}");
    assert!(text.contains("skipped 36 (call budget)"), "{text}");
    assert!(text.contains("skipped 36 of 60 employees"), "{text}");
    assert_eq!(counts(&run).0, 24);
    assert_eq!(env.dingtalk.metered_calls(), 49, "no more than the budget");
    assert_eq!(env.dingtalk.quota_refusals(), 0, "never runs into 90020");
    assert_eq!(env.jdy.records().len(), 24);

    // Same calendar month: 1 call left, nothing is spent.
    let again = env.run(&["run", "--month", MONTH], &november).await;
    assert_eq!(again.status.code(), Some(1), "{}", all(&again));
    assert_eq!(env.dingtalk.metered_calls(), 49);

    // Next calendar month: the budget starts fresh.
    let december = [("ATTENDSYNC_NOW", "2026-12-02T04:00:00Z")];
    let fresh = env.run(&["run", "--month", MONTH], &december).await;
    assert!(
        all(&fresh).contains("0 spent in 2026-12"),
        "{}",
        all(&fresh)
    );
    assert_eq!(env.dingtalk.metered_calls(), 98);
}

/// Retries in the small first chunk of a listed month spend calls the plan
/// did not count. The next chunk, no longer held whole by the budget, still
/// pulls the employees the budget pays for; it used to start none of its 100
/// and leave most of the budget unspent (found by a breaker, stop 30).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_early_in_a_month_still_leave_the_budget_spent_on_employees() {
    let env = Env::start(150, DingtalkSimConfig::default().with_endpoint_rate(1000)).await;
    // Users listed slowly: the next chunk is found after the first one ends,
    // and is checked against the budget alone.
    let job = env
        .job()
        .replace("\nmonthly_call_budget = 5000", "\n# (budget set below)")
        .replace(
            r#""topapi/v2/user/list" = "200/s""#,
            r#""topapi/v2/user/list" = "10/s""#,
        );
    // 1 + 117 × 2 = 235: 117 employees planned, 115 once 3 calls are retried.
    env.write("jobs/dingtalk_monthly.toml", &with_budget(&job, 235));
    let busy = serde_json::json!({"errcode": -1, "errmsg": "system busy"});
    env.dingtalk
        .inject_answer("topapi/attendance/getcolumnval", busy, 3);
    let november = [("ATTENDSYNC_NOW", "2026-11-20T04:00:00Z")];
    let run = env.run(&["run", "--month", MONTH], &november).await;
    let text = all(&run);
    assert_eq!(run.status.code(), Some(1), "{text}");
    let attempts = metered_attempts(&env);
    assert!(attempts <= 235, "{attempts} metered attempts\n{text}");
    let written = env.jdy.records().len();
    assert!(
        written >= 110,
        "{written} written with {attempts} of 235 calls spent\n{text}"
    );
    assert_eq!(counts(&run).0 as usize, written, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerun_force_and_killed_runs_never_duplicate_dingtalk_records() {
    let mut config = DingtalkSimConfig::default().with_endpoint_rate(1000);
    config.latency = Duration::from_millis(5);
    let env = Env::start(150, config).await;

    // Kill a run once some records have landed, then finish.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_attendsync"))
        .args(["run", "--month", MONTH, "--config-dir"])
        .arg(env.path())
        .env("DINGTALK_APP_KEY", APP_KEY)
        .env("DINGTALK_APP_SECRET", APP_SECRET)
        .env("JDY_API_KEY", API_KEY)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn: {e}"));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while env.jdy.records().len() < 40 {
        assert!(std::time::Instant::now() < deadline, "no records landed");
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the run ended ({status}) before the kill point");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().await.unwrap_or_else(|e| panic!("kill: {e}"));

    let run = env.run(&["run", "--month", MONTH], &[]).await;
    assert_eq!(run.status.code(), Some(0), "{}", all(&run));
    let forced = env
        .run(
            &["rerun", "dingtalk_monthly", "--month", MONTH, "--force"],
            &[],
        )
        .await;
    assert_eq!(forced.status.code(), Some(0), "{}", all(&forced));
    assert_eq!(counts(&forced), (150, 0, 150, 0, 0));

    let rows = env.jdy.records();
    assert_eq!(rows.len(), 150);
    let mut keys: Vec<String> = rows
        .iter()
        .map(|r| format!("{}|{}", r["userid"], r["month"]))
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 150, "no duplicate keys");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_reading_a_column_the_job_no_longer_pulls_is_refused() {
    let env = Env::start(10, DingtalkSimConfig::default().with_endpoint_rate(1000)).await;
    // 休息天数 taken out of the job's columns; the mapping still reads it.
    let job = env.job().replacen("\"休息天数\", ", "", 1);
    assert_ne!(job, env.job());
    env.write("jobs/dingtalk_monthly.toml", &job);
    let line = SHIPPED_MAPPING
        .lines()
        .position(|l| l.contains("columns.休息天数"))
        .map_or(0, |i| i + 1);
    for args in [&["check"][..], &["run", "--month", MONTH]] {
        let out = env.run(args, &[]).await;
        let text = all(&out);
        assert_eq!(out.status.code(), Some(2), "{text}");
        assert!(
            text.contains(&format!("dingtalk_monthly.toml:{line}:"))
                && text.contains("`fields.rest_days.from`"),
            "{text}"
        );
        assert!(
            text.contains("path `columns.休息天数` is not in the DingTalk monthly record")
                && text
                    .contains("`休息天数` is not in the job's source.columns (出勤天数, 工作时长"),
            "{text}"
        );
    }
    assert!(
        env.dingtalk.call_log().is_empty(),
        "nothing was sent to DingTalk"
    );
    assert!(
        env.jdy.call_log().is_empty(),
        "nothing was sent to Jiandaoyun"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_remote_prints_the_call_plan_and_rejects_unknown_columns() {
    let env = Env::start(30, DingtalkSimConfig::default().with_endpoint_rate(1000)).await;
    let ok = env.run(&["check", "--remote"], &[]).await;
    let text = all(&ok);
    assert_eq!(ok.status.code(), Some(0), "{text}");
    assert!(
        text.contains("plan: job dingtalk_monthly: call plan: 30 employees"),
        "{text}"
    );
    assert_eq!(
        env.dingtalk.calls("topapi/attendance/getcolumnval"),
        0,
        "no report call spent"
    );

    // The job and its mapping agree on a column DingTalk does not have: only
    // the remote check can tell.
    let job = env.job().replacen("\"出勤天数\"", "\"出勤天\"", 1);
    env.write("jobs/dingtalk_monthly.toml", &job);
    let mapping = SHIPPED_MAPPING.replacen("columns.出勤天数", "columns.出勤天", 1);
    env.write("mappings/dingtalk_monthly.toml", &mapping);
    let bad = env.run(&["check", "--remote"], &[]).await;
    let text = all(&bad);
    assert_eq!(bad.status.code(), Some(2), "{text}");
    assert!(
        text.contains("unknown DingTalk report column \"出勤天\""),
        "{text}"
    );
    assert!(
        text.contains("available: ") && text.contains("出勤天数"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_run_120_users_small_pages_10_columns_3_leaves_with_throttling() {
    let config = DingtalkSimConfig {
        page_size_cap: Some(7),
        throttle_ratio: 0.2,
        seed: 3,
        ..DingtalkSimConfig::default().with_endpoint_rate(1000)
    };
    let env = Env::start(120, config).await;
    let columns = [
        "出勤天数",
        "休息天数",
        "工作时长",
        "迟到次数",
        "迟到时长",
        "早退次数",
        "缺卡次数",
        "旷工天数",
        "加班时长",
        "出差时长",
    ];
    let leave = ["年假", "事假", "病假"];
    let quoted = |xs: &[&str]| {
        xs.iter()
            .map(|x| format!("\"{x}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let job = env
        .job()
        .lines()
        .map(|l| {
            if l.starts_with("columns = ") {
                format!("columns = [{}]", quoted(&columns))
            } else if l.starts_with("leave_names = ") {
                format!("leave_names = [{}]", quoted(&leave))
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    env.write("jobs/dingtalk_monthly.toml", &job);
    // 调休 is no longer pulled, so the mapping must not read it (`check` refuses
    // a path the record cannot hold).
    let mapping: Vec<&str> = SHIPPED_MAPPING
        .lines()
        .filter(|l| !l.contains("leave.调休"))
        .collect();
    env.write("mappings/dingtalk_monthly.toml", &mapping.join("\n"));

    let run = env.run(&["run", "--month", MONTH], &[]).await;
    let text = all(&run);
    assert_eq!(run.status.code(), Some(0), "{text}");
    assert!(env.dingtalk.injected_throttles() > 0, "90018 was injected");
    assert_eq!(env.jdy.records().len(), 120);
    // One report call of each kind per user, plus the retries of throttled ones.
    let answered_ok = |endpoint: &str| {
        env.dingtalk
            .call_log()
            .iter()
            .filter(|c| c.endpoint == endpoint && c.outcome.is_ok())
            .count()
    };
    assert_eq!(answered_ok("topapi/attendance/getcolumnval"), 120);
    assert_eq!(answered_ok("topapi/attendance/getleavetimebynames"), 120);

    let month: Month = MONTH.parse().unwrap_or_else(|e| panic!("{e}"));
    let columns: Vec<String> = columns.iter().map(|s| s.to_string()).collect();
    let leave: Vec<String> = leave.iter().map(|s| s.to_string()).collect();
    let rows = env.jdy.records();
    for user in env.dingtalk.org().users.iter().step_by(11) {
        let expected = env
            .dingtalk
            .expected_record(&user.userid, month, &columns, &leave)
            .unwrap_or_else(|| panic!("no expected record for {}", user.userid));
        let row = rows
            .iter()
            .find(|r| r.get("userid").and_then(|v| v.as_str()) == Some(user.userid.as_str()))
            .unwrap_or_else(|| panic!("no row for {}", user.userid));
        let sum = |name: &str| expected["columns"][name].as_f64().unwrap_or(-1.0);
        assert_eq!(
            row["attendance_days"].as_f64(),
            Some(sum("出勤天数")),
            "{}",
            user.userid
        );
        assert_eq!(
            row["late_minutes"].as_f64(),
            Some(sum("迟到时长")),
            "{}",
            user.userid
        );
        assert_eq!(
            row["annual_leave"].as_f64(),
            expected["leave"]["年假"].as_f64(),
            "{}",
            user.userid
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_are_pulled_while_the_directory_is_listed_and_a_dry_run_lists_first() {
    let env = Env::start(400, DingtalkSimConfig::default().with_endpoint_rate(1000)).await;
    // A slow directory: the report calls must not wait for the end of it.
    let job = env.job().replacen(
        "\"topapi/v2/user/list\" = \"200/s\"",
        "\"topapi/v2/user/list\" = \"20/s\"",
        1,
    );
    env.write("jobs/dingtalk_monthly.toml", &job);
    // First and last arrival at `endpoint` among the calls after the `from`-th.
    let arrivals = |endpoint: &str, from: usize| {
        let log = env.dingtalk.call_log();
        let at: Vec<_> = log
            .iter()
            .skip(from)
            .filter(|c| c.endpoint == endpoint)
            .map(|c| c.at)
            .collect();
        (at.first().copied(), at.last().copied())
    };

    let dry = env.run(&["run", "--dry-run", "--month", MONTH], &[]).await;
    let text = all(&dry);
    assert_eq!(dry.status.code(), Some(0), "{text}");
    assert!(text.contains("call plan: 400 employees"), "{text}");
    let (Some(first_report), _) = arrivals("topapi/attendance/getcolumnval", 0) else {
        panic!("the dry run pulled nothing: {text}");
    };
    let (_, Some(last_page)) = arrivals("topapi/v2/user/list", 0) else {
        panic!("the dry run listed nobody: {text}");
    };
    assert!(
        last_page < first_report,
        "a dry run plans before any metered call"
    );

    let before = env.dingtalk.call_log().len();
    let run = env.run(&["run", "--month", MONTH], &[]).await;
    let text = all(&run);
    assert_eq!(run.status.code(), Some(0), "{text}");
    assert!(text.contains("call plan: 400 employees"), "{text}");
    assert_eq!(env.jdy.records().len(), 400);
    let (Some(first_report), _) = arrivals("topapi/attendance/getcolumnval", before) else {
        panic!("the run pulled nothing: {text}");
    };
    let (_, Some(last_page)) = arrivals("topapi/v2/user/list", before) else {
        panic!("the run listed nobody: {text}");
    };
    assert!(first_report < last_page, "reports are pulled while listing");
    // The plan is logged once the listing is over, not when the month is.
    let log = String::from_utf8_lossy(&run.stderr);
    let planned = log.find("call plan: 400 employees");
    let last_chunk = log.rfind("progress job=dingtalk_monthly");
    assert!(
        matches!((planned, last_chunk), (Some(p), Some(c)) if p < c),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_listing_that_fails_in_the_first_month_is_listed_again_for_the_next() {
    let env = Env::start(60, DingtalkSimConfig::default().with_endpoint_rate(1000)).await;
    let job = env
        .job()
        .replacen("max_attempts = 10", "max_attempts = 2", 1);
    env.write("jobs/dingtalk_monthly.toml", &job);
    // Both attempts at the first page of users fail: the first month stops
    // before anyone is listed.
    let busy = serde_json::json!({"errcode": -1, "errmsg": "system busy"});
    env.dingtalk.inject_answer("topapi/v2/user/list", busy, 2);

    let run = env
        .run(&["run", "--month", "2026-09", "--month", MONTH], &[])
        .await;
    let text = all(&run);
    assert_eq!(run.status.code(), Some(1), "{text}");
    assert!(
        text.contains("2026-09: DingTalk topapi/v2/user/list"),
        "{text}"
    );
    assert!(
        text.contains("call plan: 60 employees × 2 month(s)"),
        "{text}"
    );
    assert!(
        text.contains(&format!("{MONTH}: pulled 60, created 60")),
        "{text}"
    );
    assert_eq!(env.jdy.records().len(), 60);
    assert_eq!(
        env.dingtalk.metered_calls(),
        121,
        "nothing spent on 2026-09"
    );
}

/// Metered requests the simulator received, whatever the answer (throttled,
/// expired token, served): every one is an attempt the budget counts.
fn metered_attempts(env: &Env) -> usize {
    attendsync_sim::dingtalk::METERED
        .iter()
        .map(|e| env.dingtalk.calls(e))
        .sum()
}

/// The calls `status` shows as spent in `period`.
async fn spent_in(env: &Env, period: &str) -> u64 {
    let status = env.run(&["status"], &[]).await;
    let text = String::from_utf8_lossy(&status.stdout).to_string();
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.len() == 3 && w[0] == "dingtalk_monthly" && w[1] == period)
        .and_then(|w| w[2].parse().ok())
        .unwrap_or_else(|| panic!("no metered row for {period} in:\n{}", all(&status)))
}

/// Records the summary says were pulled, over every month.
fn pulled_total(o: &Output) -> usize {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split(": pulled ").nth(1))
        .filter_map(|rest| rest.split(',').next()?.trim().parse::<usize>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_is_a_hard_cap_under_throttling_and_token_expiry() {
    let throttled = DingtalkSimConfig {
        throttle_ratio: 0.3,
        seed: 5,
        ..DingtalkSimConfig::default().with_endpoint_rate(1000)
    };
    let expiring = DingtalkSimConfig {
        token_expires_after_calls: Some(7),
        ..DingtalkSimConfig::default().with_endpoint_rate(1000)
    };
    // Before the hard cap: 175, 445 and 577 metered calls.
    let one_month: &[&str] = &["run", "--month", MONTH];
    let cases = [
        (
            59,
            130,
            throttled.clone(),
            one_month,
            "2026-11-20T04:00:00Z",
        ),
        (59, 130, expiring, one_month, "2026-11-20T04:00:00Z"),
        // The 3rd: October's final pull, then November.
        (250, 520, throttled, &["run"][..], "2026-11-03T04:00:00Z"),
    ];
    for (employees, budget, config, args, now) in cases {
        let cap = u64::from(budget);
        let env = Env::start(employees, config).await;
        env.write(
            "jobs/dingtalk_monthly.toml",
            &with_budget(&env.job(), budget)
                .replace("\nmonthly_call_budget = 5000", "\n# (budget set above)"),
        );
        let now = [("ATTENDSYNC_NOW", now)];
        let run = env.run(args, &now).await;
        let text = all(&run);
        let attempts = metered_attempts(&env) as u64;
        eprintln!(
            "budget {budget}: {attempts} metered attempts, {} served",
            env.dingtalk.metered_calls()
        );
        assert!(
            attempts <= cap,
            "{attempts} metered attempts > budget {budget}\n{text}"
        );
        assert_eq!(run.status.code(), Some(1), "{text}");
        let stopped = format!("stopped before exceeding the monthly call budget ({budget})");
        assert!(text.contains(&stopped), "{text}");
        let spent = spent_in(&env, "2026-11").await;
        assert!(
            spent >= attempts && spent <= cap,
            "spent {spent}, attempts {attempts}"
        );
        // What was pulled is written.
        assert_eq!(env.jdy.records().len(), pulled_total(&run), "{text}");
        // Nothing is left this month: the next run sends no metered call.
        let again = env.run(args, &now).await;
        assert_eq!(again.status.code(), Some(1), "{}", all(&again));
        assert!(metered_attempts(&env) as u64 <= cap);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_pull_writes_what_was_pulled_and_counts_the_calls() {
    let mut config = DingtalkSimConfig::default().with_endpoint_rate(1000);
    config.latency = Duration::from_millis(20);
    let env = Env::start(150, config).await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_attendsync"))
        .args(["run", "--month", MONTH, "--config-dir"])
        .arg(env.path())
        .env_remove("ATTENDSYNC_DB")
        .env("ATTENDSYNC_NOW", "2026-11-20T04:00:00Z")
        .env("DINGTALK_APP_KEY", APP_KEY)
        .env("DINGTALK_APP_SECRET", APP_SECRET)
        .env("JDY_API_KEY", API_KEY)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn: {e}"));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    // Before the first chunk (16 employees, 32 report calls) is written.
    while env.dingtalk.metered_calls() < 12 {
        assert!(std::time::Instant::now() < deadline, "no metered calls");
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the run ended ({status}) before the signal");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(env.jdy.records().is_empty(), "signal sent before any write");
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
    let served = env.dingtalk.metered_calls();
    let written = env.jdy.records().len();
    eprintln!("SIGTERM: {served} metered calls served, {written} records written");
    assert!(
        written > 0,
        "the records pulled before the signal are written"
    );
    let spent = spent_in(&env, "2026-11").await;
    assert!(
        spent >= metered_attempts(&env) as u64,
        "spent {spent} < {} attempts",
        metered_attempts(&env)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_warns_when_the_budget_cannot_fit_and_still_exits_0() {
    let env = Env::start(59, DingtalkSimConfig::default().with_endpoint_rate(1000)).await;
    let job = env
        .job()
        .replace("\nmonthly_call_budget = 5000", "\n# (budget below)");
    env.write("jobs/dingtalk_monthly.toml", &with_budget(&job, 50));
    let now = [("ATTENDSYNC_NOW", "2026-11-20T04:00:00Z")];
    let remote = env.run(&["check", "--remote"], &now).await;
    let text = all(&remote);
    assert_eq!(remote.status.code(), Some(0), "{text}");
    assert!(
        text.contains("warning: job dingtalk_monthly: the call budget cannot fit this job"),
        "{text}"
    );
    assert!(text.contains("needs 119 metered calls"), "{text}");
    assert_eq!(metered_attempts(&env), 1, "only the column lookup");
    // Plain `check` cannot count the employees: it warns only when not even
    // one employee-month fits.
    let plain = env.run(&["check"], &now).await;
    assert_eq!(plain.status.code(), Some(0), "{}", all(&plain));
    assert!(!all(&plain).contains("cannot fit"), "{}", all(&plain));
    env.write("jobs/dingtalk_monthly.toml", &with_budget(&job, 2));
    let plain = env.run(&["check"], &now).await;
    assert_eq!(plain.status.code(), Some(0), "{}", all(&plain));
    assert!(
        all(&plain).contains("no employee can be synced"),
        "{}",
        all(&plain)
    );
}

/// Employees skipped for the budget leave their month owed: a later run (in a
/// fresh budget month, after the month closed) takes it first and settles it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_cut_short_by_the_budget_stays_owed_until_a_later_run_completes_it() {
    let env = Env::start(60, DingtalkSimConfig::default().with_endpoint_rate(1000)).await;
    let job = env
        .job()
        .replace("\nmonthly_call_budget = 5000", "\n# (budget set below)");
    env.write("jobs/dingtalk_monthly.toml", &with_budget(&job, 100));
    // 60 employees need 121 calls; 100 allow 49 of them.
    let nov = [("ATTENDSYNC_NOW", "2026-11-20T04:00:00Z")];
    let short = env.run(&["run"], &nov).await;
    assert_eq!(short.status.code(), Some(1), "{}", all(&short));
    assert!(
        all(&short).contains("skipped 11 (call budget)"),
        "{}",
        all(&short)
    );

    env.write("jobs/dingtalk_monthly.toml", &with_budget(&job, 130));
    let dec = [("ATTENDSYNC_NOW", "2026-12-08T04:00:00Z")];
    let status = env.run(&["status"], &dec).await;
    assert!(all(&status).contains("Months owed"), "{}", all(&status));
    // December 8th: November is no default month any more, but it is owed,
    // and the oldest month comes first within the budget.
    let later = env.run(&["run"], &dec).await;
    let text = all(&later);
    assert!(
        text.contains("dingtalk_monthly 2026-11: pulled 60"),
        "{text}"
    );
    let status = env.run(&["status"], &dec).await;
    assert!(!all(&status).contains("Months owed"), "{}", all(&status));
}

/// `rerun --employee` on a metered source: the asked employees' report calls
/// and the column look-up, nothing for anyone else. (The directory is still
/// walked, with unmetered calls: it gives the names and departments the records
/// carry, and DingTalk documents no call for one user.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_of_two_employees_spends_two_employees_calls() {
    let env = Env::start(60, DingtalkSimConfig::default().with_endpoint_rate(1000)).await;
    let first = env.run(&["run", "--month", MONTH], &[]).await;
    assert_eq!(first.status.code(), Some(0), "{}", all(&first));
    let users = &env.dingtalk.org().users;
    let (x, y) = (users[4].userid.clone(), users[50].userid.clone());
    let before = env.dingtalk.metered_calls();
    let args = [
        "rerun",
        "dingtalk_monthly",
        "--month",
        MONTH,
        "--employee",
        &x,
        "--employee",
        &y,
    ];
    let rerun = env.run(&args, &[]).await;
    let text = all(&rerun);
    assert_eq!(rerun.status.code(), Some(0), "{text}");
    assert!(
        text.contains("metered calls: 5"),
        "2 × 2 report calls + the columns: {text}"
    );
    assert_eq!(env.dingtalk.metered_calls() - before, 5);
    assert!(text.contains(&format!("{MONTH}: pulled 2")), "{text}");
    assert_eq!(env.jdy.records().len(), 60);
}
