//! End-to-end harness: the built `attendsync` binary in a fresh config dir,
//! against the simulators running in the test process.
//!
//! On a failed expectation the harness prints the command, its status, stdout,
//! stderr and the config dir listing, so a CI failure can be read from the log.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use attendsync_sim::{JdySim, JdySimConfig, Org, Outcome, WecomSim, WecomSimConfig};

pub mod daemon;
pub mod dingtalk;

pub const CORP_ID: &str = "ww-test-corp";
pub const SECRET: &str = "TopSecret-checkin-0123456789abcdef";
pub const API_KEY: &str = "jdy-key-SuperSecret-9876543210";
pub const APP_ID: &str = "6399c24287cae90008d24e0b";
pub const ENTRY_ID: &str = "64093d8613931a00085bb2f4";
/// The longest one invocation of the binary may take in a test.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(240);

/// The shipped WeCom mapping.
pub fn shipped_mapping() -> &'static str {
    include_str!("../../../mappings/wecom_monthly.toml")
}

/// The form's fields as the shipped mapping fills them.
pub fn shipped_widgets() -> Vec<(String, String)> {
    let file = attendsync::config::SourceFile::new("wecom_monthly.toml", shipped_mapping());
    let Ok(mapping) = attendsync::mapping::Mapping::parse(&file) else {
        panic!("the shipped mapping must parse");
    };
    attendsync::app::demo::widgets_of_mapping(&mapping)
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub wecom: WecomSim,
    pub jdy: JdySim,
}

/// Fast retry settings so that tests never wait a real minute.
pub const FAST_RETRY: &str = r#"
[source.retry]
max_attempts = 10
initial_wait = "20ms"
max_wait = "200ms"
throttle_wait = "50ms"
"#;

pub const FAST_TARGET_RETRY: &str = r#"
[target.retry]
max_attempts = 10
initial_wait = "20ms"
max_wait = "200ms"
throttle_wait = "50ms"
"#;

impl Env {
    pub async fn start(employees: usize, wecom: WecomSimConfig, jdy: JdySimConfig) -> Env {
        let org = Org::generate(employees, 7);
        let wecom = WecomSim::start(
            org,
            WecomSimConfig {
                corp_id: CORP_ID.into(),
                secret: SECRET.into(),
                ..wecom
            },
        )
        .await
        .unwrap_or_else(|e| panic!("start WeCom simulator: {e}"));
        // The form has the shipped mapping's fields unless the test chose others.
        let widgets = if jdy.widgets == JdySimConfig::default().widgets {
            shipped_widgets()
        } else {
            jdy.widgets.clone()
        };
        let jdy = JdySim::start(JdySimConfig {
            api_key: API_KEY.into(),
            app_id: APP_ID.into(),
            entry_id: ENTRY_ID.into(),
            widgets,
            ..jdy
        })
        .await
        .unwrap_or_else(|e| panic!("start Jiandaoyun simulator: {e}"));
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let env = Env { dir, wecom, jdy };
        env.write("mappings/wecom_monthly.toml", shipped_mapping());
        env
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn db(&self) -> PathBuf {
        self.path().join("attendsync.db")
    }

    pub fn write(&self, rel: &str, text: &str) {
        let path = self.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir {parent:?}: {e}"));
        }
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {path:?}: {e}"));
    }

    /// A WeCom job pointed at the simulators, with `extra` appended (e.g. limits).
    pub fn job_text(&self, extra_source: &str, extra_target: &str) -> String {
        format!(
            r#"description = "test job"
mapping = "wecom_monthly.toml"

[source]
type = "wecom"
corp_id = "${{WECOM_CORP_ID}}"
secret = "${{WECOM_CHECKIN_SECRET}}"
base_url = "{wecom}"
{extra_source}

[target]
api_key = "${{JDY_API_KEY}}"
app_id = "{APP_ID}"
entry_id = "{ENTRY_ID}"
base_url = "{jdy}"
request_timeout = "3s"
{extra_target}
"#,
            wecom = self.wecom.base_url(),
            jdy = self.jdy.base_url(),
        )
    }

    /// Writes `jobs/wecom_monthly.toml` with fast retries and the given extras.
    pub fn write_job(&self, extra_source: &str, extra_target: &str) {
        let source = format!("{extra_source}\n{FAST_RETRY}");
        let target = format!("{extra_target}\n{FAST_TARGET_RETRY}");
        self.write("jobs/wecom_monthly.toml", &self.job_text(&source, &target));
    }

    /// Runs the binary with the test's credentials in its environment.
    pub async fn run(&self, args: &[&str]) -> Run {
        self.run_with_env(args, &[]).await
    }

    pub async fn run_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_attendsync"));
        cmd.args(args)
            .arg("--config-dir")
            .arg(self.path())
            .env_remove("ATTENDSYNC_DB")
            .env("WECOM_CORP_ID", CORP_ID)
            .env("WECOM_CHECKIN_SECRET", SECRET)
            .env("JDY_API_KEY", API_KEY)
            .env("RUST_LOG", "info")
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let output = tokio::time::timeout(RUN_TIMEOUT, cmd.output())
            .await
            .unwrap_or_else(|_| panic!("attendsync {args:?} did not finish within {RUN_TIMEOUT:?}"))
            .unwrap_or_else(|e| panic!("cannot run attendsync: {e}"));
        Run {
            args: args.iter().map(|s| s.to_string()).collect(),
            output,
            dir: self.path().to_path_buf(),
        }
    }

    /// Form records, each checked to carry a key; panics on duplicate keys.
    pub fn rows_by_key(
        &self,
    ) -> std::collections::BTreeMap<(String, String), serde_json::Map<String, serde_json::Value>>
    {
        let mut out = std::collections::BTreeMap::new();
        for r in self.jdy.records() {
            let key = (
                r.get("userid")
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string(),
                r.get("month")
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string(),
            );
            if out.insert(key.clone(), r).is_some() {
                panic!("duplicate key in the form: {key:?}");
            }
        }
        out
    }
}

pub struct Run {
    pub args: Vec<String>,
    pub output: Output,
    pub dir: PathBuf,
}

impl Run {
    pub fn code(&self) -> i32 {
        self.output.status.code().unwrap_or(-1)
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    pub fn all(&self) -> String {
        format!("{}{}", self.stdout(), self.stderr())
    }

    fn explain(&self) -> String {
        let listing: Vec<String> = walk(&self.dir);
        format!(
            "\n--- attendsync {:?}\n--- status: {:?}\n--- stdout:\n{}\n--- stderr:\n{}\n--- config dir:\n{}\n",
            self.args,
            self.output.status,
            self.stdout(),
            self.stderr(),
            listing.join("\n")
        )
    }

    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code(),
            code,
            "unexpected exit status{}",
            self.explain()
        );
        self
    }

    pub fn expect_contains(&self, text: &str) -> &Self {
        assert!(
            self.all().contains(text),
            "output lacks {text:?}{}",
            self.explain()
        );
        self
    }

    pub fn expect_lacks(&self, text: &str) -> &Self {
        assert!(
            !self.all().contains(text),
            "output contains {text:?}{}",
            self.explain()
        );
        self
    }
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

/// The summary line of a job-month, parsed: (pulled, created, updated, unchanged, failed).
pub fn counts(output: &str, month: &str) -> (u64, u64, u64, u64, u64) {
    let needle = format!(" {month}: pulled ");
    let line = output
        .lines()
        .find(|l| l.contains(&needle))
        .unwrap_or_else(|| panic!("no summary line for {month} in:\n{output}"));
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    // The month's own digits come first: YYYY, MM.
    (nums[2], nums[3], nums[4], nums[5], nums[6])
}

/// Source limits fast enough for tests (the simulators here have no quota).
pub const FAST_SOURCE: &str = "[source.limits]\n\"checkin/getcheckin_monthdata\" = \"6000/min\"\n\"user/simplelist\" = \"100/s\"\n";
/// Target limits just under the Jiandaoyun simulator's quotas.
pub const FAST_TARGET: &str = "[target.limits]\n\"data/batch_create\" = \"9/s\"\n\"data/list\" = \"25/s\"\n\"data/update\" = \"18/s\"\n\"data/batch_delete\" = \"9/s\"\n";

/// A WeCom simulator without quotas.
pub fn fast_wecom() -> WecomSimConfig {
    WecomSimConfig {
        limits: vec![],
        ..WecomSimConfig::default()
    }
}

/// Starts a run of `month`, waits until `ready` says so (bounded), and kills it
/// with SIGKILL.
pub async fn run_and_kill(env: &Env, month: &str, ready: impl Fn(&Env) -> bool) {
    spawn_and_kill(env, &["run", "--month", month], ready).await;
}

/// Starts the binary with `args`, waits until `ready` says so (bounded), and
/// kills it with SIGKILL.
pub async fn spawn_and_kill(env: &Env, args: &[&str], ready: impl Fn(&Env) -> bool) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_attendsync"))
        .args(args)
        .arg("--config-dir")
        .arg(env.path())
        .env_remove("ATTENDSYNC_DB")
        .env("WECOM_CORP_ID", CORP_ID)
        .env("WECOM_CHECKIN_SECRET", SECRET)
        .env("JDY_API_KEY", API_KEY)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn: {e}"));
    let deadline = Instant::now() + Duration::from_secs(90);
    while !ready(env) {
        if Instant::now() > deadline {
            panic!("the kill point was never reached");
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the run ended ({status}) before the kill point");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // tokio's kill sends SIGKILL.
    child.kill().await.unwrap_or_else(|e| panic!("kill: {e}"));
}

pub fn batch_in_flight(env: &Env) -> bool {
    env.jdy
        .call_log()
        .iter()
        .any(|c| c.endpoint == "data/batch_create" && c.outcome == Outcome::Pending)
}
