//! The binary syncs WeCom month reports into the Jiandaoyun
//! simulator end to end.

use crate::common;

use std::time::Duration;

use attendsync::config::SourceFile;
use attendsync::mapping::{Mapping, Vars};
use attendsync::month::Month;
use attendsync_sim::{most_calls_within, wecom_month_record, JdySimConfig, WecomSimConfig};
use common::{counts, Env};

const MONTH: &str = "2026-10";

fn shipped() -> Mapping {
    Mapping::parse(&SourceFile::new("m.toml", common::shipped_mapping()))
        .unwrap_or_else(|e| panic!("{e:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_run_then_second_run_writes_nothing() {
    let env = Env::start(250, WecomSimConfig::default(), JdySimConfig::default()).await;
    env.write_job("", "");

    let first = env.run(&["run", "--month", MONTH]).await;
    first.expect_code(0);
    assert_eq!(counts(&first.stdout(), MONTH), (250, 250, 0, 0, 0));
    assert_eq!(env.wecom.calls("checkin/getcheckin_monthdata"), 3);
    let rows = env.rows_by_key();
    assert_eq!(rows.len(), 250);

    // Every row holds exactly what the mapping makes of the simulator's report.
    let mapping = shipped();
    let month: Month = MONTH.parse().unwrap_or_else(|e| panic!("{e}"));
    let org = env.wecom.org();
    for user in org.users.iter().step_by(17) {
        let record = wecom_month_record(org, user, 2026, 10, 0);
        let vars = Vars {
            month,
            timezone: chrono_tz::Asia::Shanghai,
            job: "wecom_monthly".into(),
            source: "wecom".into(),
            synced_at: chrono::Utc::now(),
        };
        let expected = mapping
            .apply(&record, &vars)
            .unwrap_or_else(|e| panic!("{e:?}"));
        let row = &rows[&(user.userid.clone(), MONTH.to_string())];
        for (field, value) in expected.fields() {
            if field == "synced_at" {
                continue;
            }
            assert_eq!(
                row.get(field),
                Some(value),
                "user {} field {field}",
                user.userid
            );
        }
    }
    assert_eq!(
        rows[&(org.users[0].userid.clone(), MONTH.to_string())]["period_start"],
        "2026-09-30T16:00:00.000Z"
    );

    let writes = env.jdy.write_calls();
    let second = env.run(&["run", "--month", MONTH]).await;
    second.expect_code(0);
    assert_eq!(counts(&second.stdout(), MONTH), (250, 0, 0, 250, 0));
    assert_eq!(
        env.jdy.write_calls(),
        writes,
        "the second run must not write"
    );
    assert_eq!(env.jdy.records().len(), 250);

    let status = env.run(&["status"]).await;
    status
        .expect_code(0)
        .expect_contains("wecom_monthly")
        .expect_contains(MONTH);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_expiring_tokens_lose_nothing_and_pace_is_kept() {
    let wecom = WecomSimConfig {
        throttle_ratio: 0.2,
        token_expires_after_calls: Some(3),
        limits: vec![(
            "checkin/getcheckin_monthdata".into(),
            600,
            Duration::from_secs(60),
        )],
        ..WecomSimConfig::default()
    };
    let jdy = JdySimConfig {
        throttle_ratio: 0.2,
        seed: 11,
        ..JdySimConfig::default()
    };
    let env = Env::start(600, wecom, jdy).await;
    env.write_job(
        "[source.limits]\n\"checkin/getcheckin_monthdata\" = \"600/min\"\n\"user/simplelist\" = \"50/s\"\ngettoken = \"50/s\"\n",
        "[target.limits]\n\"data/batch_create\" = \"10/s\"\n\"data/list\" = \"20/s\"\n",
    );
    let run = env.run(&["run", "--month", MONTH]).await;
    run.expect_code(0);
    assert_eq!(env.rows_by_key().len(), 600);
    assert!(
        env.wecom.injected_throttles() > 0,
        "the test must inject WeCom throttling"
    );
    assert!(
        env.jdy.injected_throttles() > 0,
        "the test must inject Jiandaoyun throttling"
    );
    assert!(
        env.wecom.tokens_issued() > 1,
        "tokens must have expired and been refreshed"
    );
    assert_eq!(env.wecom.quota_violations(), 0);
    assert_eq!(env.jdy.quota_violations(), 0);
    // The configured paces (600/min and 10/s) space calls 100 ms apart: 10 in
    // a second, 11 when a window holds both ends, one more when a loaded
    // machine wakes a slot late. A burst would show dozens; the quotas
    // themselves are checked above (no violation).
    let second = Duration::from_secs(1);
    let monthdata = most_calls_within(
        &env.wecom.call_log(),
        "checkin/getcheckin_monthdata",
        second,
    );
    assert!(
        (1..=12).contains(&monthdata),
        "monthdata calls in one second: {monthdata}"
    );
    let creates = most_calls_within(&env.jdy.call_log(), "data/batch_create", second);
    assert!(
        (1..=12).contains(&creates),
        "batch_create calls in one second: {creates}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_exits_2_naming_file_line_and_key_and_sends_nothing() {
    let env = Env::start(5, WecomSimConfig::default(), JdySimConfig::default()).await;

    // An unknown convert name in the mapping.
    env.write_job("", "");
    let mapping =
        common::shipped_mapping().replacen("\"seconds_to_hours\"", "\"seconds_to_weeks\"", 1);
    assert_ne!(mapping, common::shipped_mapping());
    env.write("mappings/wecom_monthly.toml", &mapping);
    let line = mapping
        .lines()
        .position(|l| l.contains("seconds_to_weeks"))
        .unwrap_or(0)
        + 1;
    env.run(&["run", "--month", MONTH])
        .await
        .expect_code(2)
        .expect_contains(&format!("wecom_monthly.toml:{line}:"))
        .expect_contains(".convert`")
        .expect_contains("seconds_to_weeks")
        .expect_contains("seconds_to_hours");
    env.write("mappings/wecom_monthly.toml", common::shipped_mapping());

    // A variable that is not set.
    let job = env
        .job_text("", "")
        .replace("${JDY_API_KEY}", "${JDY_KEY_THAT_IS_NOT_SET}");
    env.write("jobs/wecom_monthly.toml", &job);
    let line = job
        .lines()
        .position(|l| l.contains("JDY_KEY_THAT_IS_NOT_SET"))
        .unwrap_or(0)
        + 1;
    env.run(&["run", "--month", MONTH])
        .await
        .expect_code(2)
        .expect_contains(&format!("wecom_monthly.toml:{line}:"))
        .expect_contains("`target.api_key`")
        .expect_contains("JDY_KEY_THAT_IS_NOT_SET");

    // Malformed TOML.
    env.write(
        "jobs/wecom_monthly.toml",
        "description = \"ok\"\nmapping = = 3\n",
    );
    env.run(&["run"])
        .await
        .expect_code(2)
        .expect_contains("wecom_monthly.toml:2:")
        .expect_contains("invalid TOML");

    // `check` reports the same way.
    env.run(&["check"])
        .await
        .expect_code(2)
        .expect_contains("wecom_monthly.toml:2:");

    assert!(
        env.wecom.call_log().is_empty(),
        "no request may reach WeCom"
    );
    assert!(
        env.jdy.call_log().is_empty(),
        "no request may reach Jiandaoyun"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_show_the_vendor_code_and_never_the_secret() {
    let env = Env::start(5, WecomSimConfig::default(), JdySimConfig::default()).await;
    env.write_job("", "");
    let wrong = "WrongSecret-0f9e8d7c6b5a49382716";
    let run = env
        .run_with_env(
            &["run", "--month", MONTH],
            &[("WECOM_CHECKIN_SECRET", wrong)],
        )
        .await;
    run.expect_code(1)
        .expect_contains("40001")
        .expect_contains("secret");
    run.expect_lacks(wrong)
        .expect_lacks(common::SECRET)
        .expect_lacks(common::API_KEY);

    // A bad Jiandaoyun key: the code, and again no secret.
    let wrong_key = "jdy-WrongKey-00112233445566";
    let run = env
        .run_with_env(&["run", "--month", MONTH], &[("JDY_API_KEY", wrong_key)])
        .await;
    run.expect_code(1)
        .expect_contains("8301")
        .expect_contains("api_key");
    run.expect_lacks(wrong_key).expect_lacks(common::API_KEY);

    let mut db = Vec::new();
    for entry in std::fs::read_dir(env.path())
        .into_iter()
        .flatten()
        .flatten()
    {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with("attendsync.db")
        {
            db.extend(std::fs::read(entry.path()).unwrap_or_default());
        }
    }
    assert!(!db.is_empty(), "the database exists");
    for secret in [wrong, common::SECRET, common::API_KEY, wrong_key] {
        assert!(
            !db.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} stored in SQLite"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_value_fails_that_employee_only() {
    let env = Env::start(120, WecomSimConfig::default(), JdySimConfig::default()).await;
    env.write_job("", "");
    let victim = env.wecom.org().users[42].userid.clone();
    env.wecom.patch_record(
        &victim,
        "/summary_info/regular_work_sec",
        serde_json::json!("abc"),
    );
    let run = env.run(&["run", "--month", MONTH]).await;
    run.expect_code(1)
        .expect_contains(&victim)
        .expect_contains("regular_work_sec")
        .expect_contains("\"abc\"");
    assert_eq!(counts(&run.stdout(), MONTH), (120, 119, 0, 0, 1));
    let rows = env.rows_by_key();
    assert_eq!(rows.len(), 119);
    assert!(!rows.contains_key(&(victim, MONTH.to_string())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_prints_rows_and_writes_nothing() {
    let env = Env::start(30, WecomSimConfig::default(), JdySimConfig::default()).await;
    env.write_job("", "");
    let run = env.run(&["run", "--month", MONTH, "--dry-run"]).await;
    run.expect_code(0);
    let lines: Vec<serde_json::Value> = run
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    assert_eq!(lines.len(), 30);
    assert!(lines
        .iter()
        .all(|r| r["month"] == MONTH && r["userid"].is_string()));
    assert_eq!(env.jdy.write_calls(), 0);
    assert!(env.jdy.records().is_empty());
    // No checkpoint moved: a real run still creates everything.
    let real = env.run(&["run", "--month", MONTH]).await;
    real.expect_code(0);
    assert_eq!(counts(&real.stdout(), MONTH), (30, 30, 0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_end_to_end() {
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_attendsync"))
            .arg("demo")
            .current_dir(std::env::temp_dir())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("demo took over two minutes"))
    .unwrap_or_else(|e| panic!("cannot run the demo: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("created 250"), "{stdout}");
    assert!(
        stdout.contains("Jiandaoyun write calls in the second run: 0"),
        "{stdout}"
    );
    // A correction over DingTalk Stream mode, re-pulled alone.
    assert!(
        stdout.contains("pulled 1, created 0, updated 1, unchanged 0, failed 0")
            && stdout.contains("From the event to the record in the form"),
        "{stdout}"
    );
}
