//! A daemon under test: spawned on an [`Env`]'s config dir, its stderr
//! collected as it comes.

use std::time::{Duration, Instant};

use super::Env;

/// A running daemon whose stderr is collected as it comes.
pub struct Daemon {
    child: tokio::process::Child,
    log: std::sync::Arc<std::sync::Mutex<String>>,
    pub started: Instant,
}

impl Daemon {
    /// Starts the daemon, with `ATTENDSYNC_NOW` when `now` is given.
    pub fn start(env: &Env, now: Option<&str>) -> Daemon {
        Daemon::start_with(env, now, &[])
    }

    /// [`Daemon::start`] with extra environment variables.
    pub fn start_with(env: &Env, now: Option<&str>, vars: &[(&str, &str)]) -> Daemon {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_attendsync"));
        cmd.args(["daemon", "--config-dir"])
            .arg(env.path())
            .env_remove("ATTENDSYNC_DB")
            .env_remove("ATTENDSYNC_NOW")
            .env("WECOM_CORP_ID", super::CORP_ID)
            .env("WECOM_CHECKIN_SECRET", super::SECRET)
            .env("JDY_API_KEY", super::API_KEY)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        if let Some(now) = now {
            cmd.env("ATTENDSYNC_NOW", now);
        }
        for (k, v) in vars {
            cmd.env(k, v);
        }
        Daemon::spawn(cmd)
    }

    /// Spawns `cmd` (an `attendsync daemon` command), collecting its stderr.
    pub fn spawn(mut cmd: tokio::process::Command) -> Daemon {
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn the daemon: {e}"));
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        if let Some(err) = child.stderr.take() {
            let log = log.clone();
            tokio::spawn(async move {
                use tokio::io::AsyncBufReadExt;
                let mut lines = tokio::io::BufReader::new(err).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Ok(mut log) = log.lock() {
                        log.push_str(&line);
                        log.push('\n');
                    }
                }
            });
        }
        Daemon {
            child,
            log,
            started: Instant::now(),
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits (bounded) for a log line holding every one of `needles`; returns it.
    pub async fn wait_for_line(&self, needles: &[&str], limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let log = self.log();
            if let Some(line) = log.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
                return line.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no line with {needles:?} within {limit:?}:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn signal(&self, name: &str) {
        let pid = self
            .child
            .id()
            .unwrap_or_else(|| panic!("daemon already gone"));
        let sent = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid.to_string()])
            .status()
            .unwrap_or_else(|e| panic!("kill: {e}"));
        assert!(sent.success());
    }

    pub fn assert_running(&mut self) {
        let status = self.child.try_wait().unwrap_or_else(|e| panic!("{e}"));
        assert!(
            status.is_none(),
            "the daemon exited: {status:?}\n{}",
            self.log()
        );
    }

    /// The exit status once the daemon has exited (after a signal sent with
    /// [`Daemon::signal`]); panics if it takes over 10 s.
    pub async fn wait_exit(mut self) -> (Option<i32>, String) {
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the daemon did not exit within 10 s"))
            .unwrap_or_else(|e| panic!("wait: {e}"));
        (status.code(), self.log())
    }

    /// SIGTERM, then the exit status; panics if it takes over 10 s.
    pub async fn terminate(mut self) -> (i32, String) {
        self.signal("TERM");
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the daemon did not exit within 10 s of SIGTERM"))
            .unwrap_or_else(|e| panic!("wait: {e}"));
        // Let the reader take the last lines.
        tokio::time::sleep(Duration::from_millis(100)).await;
        (status.code().unwrap_or(-1), self.log())
    }
}
