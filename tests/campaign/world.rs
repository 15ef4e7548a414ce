//! One trial's world: a config dir, a source simulator (WeCom or DingTalk) and
//! the Jiandaoyun form, built from the end-to-end harness (`tests/e2e/common/`),
//! and the real binary started on it as child processes that can be killed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use attendsync_sim::{DingtalkSimConfig, JdySim, JdySimConfig, Org, TxMode, WecomSimConfig};

use crate::common::dingtalk::{self as ding, DingEnv};
use crate::common::{self, Env};
use crate::plan::{Plan, SourceKind};

/// The form's request timeout in the trials' jobs: a send whose answer never
/// came is waited out for this + 5 s (docs/ARCHITECTURE.md, "A send whose answer
/// never came is waited out"), so it sets how long a trial waits after a fault.
const REQUEST_TIMEOUT: &str = "1s";
/// How long after a send it may still commit: [`REQUEST_TIMEOUT`] + 5 s.
pub const IN_FLIGHT_WINDOW: std::time::Duration = std::time::Duration::from_secs(1 + 5);

pub enum Side {
    Wecom(Env),
    Dingtalk(DingEnv),
}

pub struct World {
    pub side: Side,
    pub kind: SourceKind,
    spawned: std::sync::atomic::AtomicUsize,
}

/// A started process of the binary; its output goes to files in the config dir.
pub struct Proc {
    child: tokio::process::Child,
    stdout: PathBuf,
    stderr: PathBuf,
    killed: bool,
    started: Instant,
}

/// How a process ended.
pub struct Ended {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// We sent it SIGKILL.
    pub killed: bool,
    /// It outlived its deadline (and was then killed).
    pub hung: bool,
    pub output: String,
    pub took: Duration,
}

impl Ended {
    /// Ended by a signal we did not send, or a panic.
    pub fn crashed(&self) -> bool {
        (self.signal.is_some() && !self.killed && !self.hung)
            || self.code == Some(101)
            || self.output.contains("panicked at")
    }
}

impl World {
    pub async fn start(plan: &Plan) -> Result<World, String> {
        let org = Org::generate(plan.employees, plan.seed);
        let jdy_config = JdySimConfig {
            tx_mode: if plan.tx_ignored {
                TxMode::Ignore
            } else {
                TxMode::Honour
            },
            seed: plan.seed,
            ..JdySimConfig::default()
        };
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let side = match plan.source {
            SourceKind::Wecom => {
                let wecom = attendsync_sim::WecomSim::start(
                    org,
                    WecomSimConfig {
                        corp_id: common::CORP_ID.into(),
                        secret: common::SECRET.into(),
                        limits: vec![],
                        token_expires_after_calls: plan.token_expiry,
                        seed: plan.seed,
                        ..WecomSimConfig::default()
                    },
                )
                .await
                .map_err(|e| format!("start WeCom simulator: {e}"))?;
                let jdy = JdySim::start(JdySimConfig {
                    api_key: common::API_KEY.into(),
                    app_id: common::APP_ID.into(),
                    entry_id: common::ENTRY_ID.into(),
                    widgets: common::shipped_widgets(),
                    ..jdy_config
                })
                .await
                .map_err(|e| format!("start Jiandaoyun simulator: {e}"))?;
                let env = Env { dir, wecom, jdy };
                env.write("mappings/wecom_monthly.toml", common::shipped_mapping());
                let target = format!("{}\n{}", common::FAST_TARGET, common::FAST_TARGET_RETRY);
                let source = format!("{}\n{}", common::FAST_SOURCE, common::FAST_RETRY);
                let job = env.job_text(&source, &target).replacen(
                    "request_timeout = \"3s\"",
                    &timeout_line(),
                    1,
                );
                env.write("jobs/wecom_monthly.toml", &job);
                Side::Wecom(env)
            }
            SourceKind::Dingtalk => {
                let config = DingtalkSimConfig {
                    token_expires_after_calls: plan.token_expiry,
                    seed: plan.seed,
                    ..DingtalkSimConfig::default().with_endpoint_rate(1000)
                };
                let dingtalk = ding::start_dingtalk(org, config).await;
                let jdy = JdySim::start(JdySimConfig {
                    api_key: ding::API_KEY.into(),
                    app_id: common::APP_ID.into(),
                    entry_id: ding::ENTRY_ID.into(),
                    widgets: ding::widgets(),
                    ..jdy_config
                })
                .await
                .map_err(|e| format!("start Jiandaoyun simulator: {e}"))?;
                let env = DingEnv { dir, dingtalk, jdy };
                env.write("mappings/dingtalk_monthly.toml", ding::SHIPPED_MAPPING);
                env.write("jobs/dingtalk_monthly.toml", &dingtalk_job(&env)?);
                Side::Dingtalk(env)
            }
        };
        Ok(World {
            side,
            kind: plan.source,
            spawned: 0.into(),
        })
    }

    pub fn jdy(&self) -> &JdySim {
        match &self.side {
            Side::Wecom(env) => &env.jdy,
            Side::Dingtalk(env) => &env.jdy,
        }
    }

    pub fn path(&self) -> &Path {
        match &self.side {
            Side::Wecom(env) => env.path(),
            Side::Dingtalk(env) => env.path(),
        }
    }

    /// The config dir, kept on disk for a failed trial.
    pub fn keep(self) -> PathBuf {
        match self.side {
            Side::Wecom(env) => env.dir.keep(),
            Side::Dingtalk(env) => env.dir.keep(),
        }
    }

    pub fn set_source_throttle(&self, ratio: f64) {
        match &self.side {
            Side::Wecom(env) => env.wecom.set_throttle_ratio(ratio),
            Side::Dingtalk(env) => env.dingtalk.set_throttle_ratio(ratio),
        }
    }

    pub fn set_token_expiry(&self, calls: Option<u32>) {
        match &self.side {
            Side::Wecom(env) => env.wecom.set_token_expires_after_calls(calls),
            Side::Dingtalk(env) => env.dingtalk.set_token_expires_after_calls(calls),
        }
    }

    /// Throttling answers injected by the source so far.
    pub fn source_throttles(&self) -> usize {
        match &self.side {
            Side::Wecom(env) => env.wecom.injected_throttles(),
            Side::Dingtalk(env) => env.dingtalk.injected_throttles(),
        }
    }

    /// Calls the source refused for an expired token (42001) so far.
    pub fn expired_tokens(&self) -> usize {
        let log = match &self.side {
            Side::Wecom(env) => env.wecom.call_log(),
            Side::Dingtalk(env) => env.dingtalk.call_log(),
        };
        log.iter()
            .filter(|c| c.outcome.code() == Some(42001))
            .count()
    }

    /// The SQLite file and its `-wal`/`-shm` removed, as an operator might.
    pub fn delete_db(&self) -> Result<(), String> {
        for name in ["attendsync.db", "attendsync.db-wal", "attendsync.db-shm"] {
            let path = self.path().join(name);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("remove {}: {e}", path.display())),
            }
        }
        Ok(())
    }

    /// Starts the binary with `args` on this config dir.
    pub fn spawn(&self, args: &[&str]) -> Result<Proc, String> {
        let n = self
            .spawned
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stdout = self.path().join(format!("run-{n:02}.out"));
        let stderr = self.path().join(format!("run-{n:02}.err"));
        let file = |p: &Path| std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()));
        let mut cmd = match &self.side {
            Side::Wecom(env) => {
                let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_attendsync"));
                cmd.args(args)
                    .arg("--config-dir")
                    .arg(env.path())
                    .env_remove("ATTENDSYNC_DB")
                    .env("WECOM_CORP_ID", common::CORP_ID)
                    .env("WECOM_CHECKIN_SECRET", common::SECRET)
                    .env("JDY_API_KEY", common::API_KEY)
                    .env("RUST_LOG", "info")
                    .stdin(Stdio::null())
                    .kill_on_drop(true);
                cmd
            }
            Side::Dingtalk(env) => env.command(args),
        };
        cmd.stdout(file(&stdout)?).stderr(file(&stderr)?);
        let child = cmd.spawn().map_err(|e| format!("spawn attendsync: {e}"))?;
        Ok(Proc {
            child,
            stdout,
            stderr,
            killed: false,
            started: Instant::now(),
        })
    }
}

/// `request_timeout = …` for the `[target]` table.
fn timeout_line() -> String {
    format!("request_timeout = \"{REQUEST_TIMEOUT}\"")
}

/// The shipped DingTalk job pointed at the simulators, with fast limits and
/// retries, the short request timeout, and a call budget no trial reaches.
fn dingtalk_job(env: &DingEnv) -> Result<String, String> {
    let jdy_url = format!("base_url = \"{}\" #", env.jdy.base_url());
    let pointed = env.pointed_job();
    let budget = "monthly_call_budget = 5000";
    if !pointed.contains(&jdy_url) || !pointed.contains(budget) {
        return Err("the shipped DingTalk job changed: the campaign cannot point it".into());
    }
    let job = pointed
        .replacen(&jdy_url, &format!("{}\n{jdy_url}", timeout_line()), 1)
        .replacen(budget, "monthly_call_budget = 1000000", 1);
    Ok(format!(
        "{job}\n{}\n{}",
        ding::FAST_LIMITS,
        ding::fast_retry(10)
    ))
}

impl Proc {
    /// Whether it has ended (without reaping more than `try_wait` does).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL, if it is still running; whether the signal found it alive.
    pub fn kill(&mut self) -> bool {
        if !self.running() {
            return false;
        }
        self.killed = self.child.start_kill().is_ok();
        self.killed
    }

    /// Waits for its end until `deadline`; past it, kills it and says it hung.
    pub async fn wait(mut self, deadline: Instant) -> Ended {
        let deadline = tokio::time::Instant::from_std(deadline);
        let (status, hung) = match tokio::time::timeout_at(deadline, self.child.wait()).await {
            Ok(status) => (status.ok(), false),
            Err(_) => {
                let _ = self.child.start_kill();
                let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
                (status.ok().and_then(Result::ok), true)
            }
        };
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        use std::os::unix::process::ExitStatusExt;
        Ended {
            code: status.and_then(|s| s.code()),
            signal: status.and_then(|s| s.signal()),
            killed: self.killed,
            hung,
            output: format!("{}{}", read(&self.stdout), read(&self.stderr)),
            took: self.started.elapsed(),
        }
    }
}
