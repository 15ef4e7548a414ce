//! The DingTalk side of the harness: the shipped DingTalk job and mapping in a
//! fresh config dir, against a DingTalk and a Jiandaoyun simulator. Used by
//! `dingtalk_e2e`, `schedule_regressions_e2e` and `data_safety_regressions_e2e`;
//! each adds its own job settings (limits, retries, budget, scope).

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use attendsync::config::SourceFile;
use attendsync::mapping::Mapping;
use attendsync_sim::{DingtalkSim, DingtalkSimConfig, JdySim, JdySimConfig, Org};

use super::APP_ID;

pub const APP_KEY: &str = "ding-e2e-appkey";
pub const APP_SECRET: &str = "DingSecret-e2e-0123456789abcdef";
pub const API_KEY: &str = "jdy-key-e2e-SuperSecret-9876543210";
/// The shipped DingTalk job's form.
pub const ENTRY_ID: &str = "64093d8613931a00085bb2f5";

pub const SHIPPED_JOB: &str = include_str!("../../../jobs/dingtalk_monthly.toml");
pub const SHIPPED_MAPPING: &str = include_str!("../../../mappings/dingtalk_monthly.toml");

/// Source limits well above the tests' pace, appended to the shipped job.
pub const FAST_LIMITS: &str = r#"[source.limits]
"topapi/v2/department/listsub" = "200/s"
"topapi/v2/user/list" = "200/s"
"topapi/attendance/getcolumnval" = "200/s"
"topapi/attendance/getleavetimebynames" = "200/s"
"#;

/// Retry settings for both sides with `max_attempts`, so tests never wait long.
pub fn fast_retry(max_attempts: u32) -> String {
    format!(
        r#"[source.retry]
max_attempts = {max_attempts}
initial_wait = "20ms"
max_wait = "200ms"
throttle_wait = "50ms"

[target.retry]
max_attempts = {max_attempts}
initial_wait = "20ms"
max_wait = "200ms"
throttle_wait = "50ms"
"#
    )
}

/// The shipped DingTalk mapping, parsed.
pub fn mapping() -> Mapping {
    match Mapping::parse(&SourceFile::new("dingtalk_monthly.toml", SHIPPED_MAPPING)) {
        Ok(m) => m,
        Err(e) => panic!("the shipped mapping must parse: {e:?}"),
    }
}

/// The form's fields as the shipped DingTalk mapping fills them.
pub fn widgets() -> Vec<(String, String)> {
    attendsync::app::demo::widgets_of_mapping(&mapping())
}

/// Status, stdout and stderr of a run, for assertion messages.
pub fn all(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A DingTalk simulator of `org` that accepts [`APP_KEY`] and [`APP_SECRET`].
pub async fn start_dingtalk(org: Org, config: DingtalkSimConfig) -> DingtalkSim {
    DingtalkSim::start(
        org,
        DingtalkSimConfig {
            app_key: APP_KEY.into(),
            app_secret: APP_SECRET.into(),
            ..config
        },
    )
    .await
    .unwrap_or_else(|e| panic!("start the DingTalk simulator: {e}"))
}

/// A config dir holding the shipped DingTalk mapping, a DingTalk simulator and
/// the Jiandaoyun form the mapping fills. The job is the caller's to write.
pub struct DingEnv {
    pub dir: tempfile::TempDir,
    pub dingtalk: DingtalkSim,
    pub jdy: JdySim,
}

impl DingEnv {
    pub async fn start(dingtalk: DingtalkSim) -> DingEnv {
        let jdy = JdySim::start(JdySimConfig {
            api_key: API_KEY.into(),
            app_id: APP_ID.into(),
            entry_id: ENTRY_ID.into(),
            widgets: widgets(),
            ..JdySimConfig::default()
        })
        .await
        .unwrap_or_else(|e| panic!("start the Jiandaoyun simulator: {e}"));
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let env = DingEnv { dir, dingtalk, jdy };
        env.write("mappings/dingtalk_monthly.toml", SHIPPED_MAPPING);
        env
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, text: &str) {
        let path = self.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir {parent:?}: {e}"));
        }
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {path:?}: {e}"));
    }

    /// The shipped job with its base URLs pointed at the simulators.
    pub fn pointed_job(&self) -> String {
        let source_url = "# base_url = \"https://oapi.dingtalk.com\"";
        let target_url = "# base_url = \"https://api.jiandaoyun.com\"";
        assert!(SHIPPED_JOB.contains(source_url) && SHIPPED_JOB.contains(target_url));
        SHIPPED_JOB
            .replacen(
                source_url,
                &format!("base_url = \"{}\" #", self.dingtalk.base_url()),
                1,
            )
            .replacen(
                target_url,
                &format!("base_url = \"{}\" #", self.jdy.base_url()),
                1,
            )
    }

    /// The binary with `args` on this config dir and the simulators' credentials.
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_attendsync"));
        cmd.args(args)
            .arg("--config-dir")
            .arg(self.path())
            .env_remove("ATTENDSYNC_DB")
            .env("DINGTALK_APP_KEY", APP_KEY)
            .env("DINGTALK_APP_SECRET", APP_SECRET)
            .env("JDY_API_KEY", API_KEY)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Runs the binary with `args` and the extra `env` to its end, at most `timeout`.
    pub async fn run_with(&self, args: &[&str], env: &[(&str, &str)], timeout: Duration) -> Output {
        let mut cmd = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        tokio::time::timeout(timeout, cmd.output())
            .await
            .unwrap_or_else(|_| panic!("attendsync {args:?} did not finish in time"))
            .unwrap_or_else(|e| panic!("cannot run attendsync: {e}"))
    }
}

/// The shipped job pointed at the simulators, scheduled once a year (never
/// during a test), fast limits and retries, and `[events]` holding `events`.
pub fn events_job(env: &DingEnv, events: &str) -> String {
    let shipped = "schedule = \"0 10 2 3,10,17,24 * *\"";
    let job = env.pointed_job();
    assert!(job.contains(shipped), "the shipped job's schedule moved");
    format!(
        "{}\n{FAST_LIMITS}\n{}\n[events]\n{events}\n",
        job.replacen(shipped, "schedule = \"0 0 3 1 1 *\"", 1),
        fast_retry(5)
    )
}

/// `[events]` for HTTP push with the tests' secrets and `delay`.
pub fn http_events(delay: &str) -> String {
    format!("mode = \"http\"\ntoken = \"${{EVENT_TOKEN}}\"\naes_key = \"${{EVENT_AES_KEY}}\"\ndelay = \"{delay}\"")
}

/// The shipped job's report columns and leave names, as the simulator sums them.
const SHIPPED_COLUMNS: [&str; 8] = [
    "出勤天数",
    "休息天数",
    "工作时长",
    "迟到次数",
    "迟到时长",
    "早退次数",
    "缺卡次数",
    "旷工天数",
];
const SHIPPED_LEAVE: [&str; 4] = ["年假", "事假", "病假", "调休"];

/// Every `step`-th employee's row in the form is what the shipped mapping
/// makes of the simulator's sums for `month` (all fields but `synced_at`).
pub fn assert_rows_are_the_sources(env: &DingEnv, month: &str, step: usize) {
    let mapping = mapping();
    let month: attendsync::month::Month = month.parse().unwrap_or_else(|e| panic!("{e}"));
    let vars = attendsync::mapping::Vars {
        month,
        timezone: chrono_tz::Asia::Shanghai,
        job: "dingtalk_monthly".into(),
        source: "dingtalk".into(),
        synced_at: chrono::Utc::now(),
    };
    let columns: Vec<String> = SHIPPED_COLUMNS.iter().map(|s| s.to_string()).collect();
    let leave: Vec<String> = SHIPPED_LEAVE.iter().map(|s| s.to_string()).collect();
    let rows = env.jdy.records();
    for user in env.dingtalk.org().users.iter().step_by(step) {
        let record = env
            .dingtalk
            .expected_record(&user.userid, month, &columns, &leave)
            .unwrap_or_else(|| panic!("no expected record for {}", user.userid));
        let expected = mapping
            .apply(&record, &vars)
            .unwrap_or_else(|e| panic!("{e:?}"));
        let row = rows
            .iter()
            .find(|r| r.get("userid").and_then(|v| v.as_str()) == Some(user.userid.as_str()))
            .unwrap_or_else(|| panic!("no row for {}", user.userid));
        for (field, value) in expected.fields() {
            if field != "synced_at" {
                assert_eq!(row.get(field), Some(value), "{} {field}", user.userid);
            }
        }
    }
}
