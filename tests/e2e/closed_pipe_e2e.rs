//! Every command survives a closed stdout (`status | head -2`):
//! exit 0 or 141 (SIGPIPE), never a panic ("failed printing to stdout").

use crate::common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};

use attendsync_sim::{JdySimConfig, WecomSimConfig};
use common::{Env, RUN_TIMEOUT};

fn command(env: &Env, args: &[&str]) -> tokio::process::Command {
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
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Exit 0, or killed by SIGPIPE (141 in a shell), and no panic on stderr.
fn assert_survived(args: &[&str], status: ExitStatus, stderr: &[u8]) {
    let stderr = String::from_utf8_lossy(stderr);
    assert!(
        status.code() == Some(0) || status.code() == Some(141) || status.signal() == Some(13),
        "attendsync {args:?} with a closed stdout: {status:?}\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{args:?}:\n{stderr}");
    assert!(!stderr.contains("Broken pipe"), "{args:?}:\n{stderr}");
}

/// Runs the binary with a stdout whose reader goes away as soon as it starts
/// (before it has anything to print): its first write fails with EPIPE.
async fn run_with_closed_stdout(env: &Env, args: &[&str]) {
    let mut child = command(env, args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run attendsync: {e}"));
    drop(child.stdout.take());
    let output = tokio::time::timeout(RUN_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("attendsync {args:?} did not finish"))
        .unwrap_or_else(|e| panic!("attendsync {args:?}: {e}"));
    assert_survived(args, output.status, &output.stderr);
}

/// Like `attendsync … | head -1`: reads the first line, then closes stdout.
async fn run_and_close_after_first_line(env: &Env, args: &[&str]) {
    let mut child = command(env, args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run attendsync: {e}"));
    let stdout = child
        .stdout
        .take()
        .unwrap_or_else(|| panic!("no stdout"))
        .into_owned_fd()
        .unwrap_or_else(|e| panic!("stdout fd: {e}"));
    let first = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        let mut reader = BufReader::new(std::fs::File::from(stdout));
        reader.read_line(&mut line).map(|_| line)
        // The reader (the pipe's read end) is dropped here.
    });
    let first = tokio::time::timeout(RUN_TIMEOUT, first)
        .await
        .unwrap_or_else(|_| panic!("no first line from {args:?}"))
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!first.is_empty(), "{args:?} printed nothing");
    let output = tokio::time::timeout(RUN_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("attendsync {args:?} did not finish"))
        .unwrap_or_else(|e| panic!("attendsync {args:?}: {e}"));
    assert_survived(args, output.status, &output.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_survives_a_closed_stdout() {
    let env = Env::start(5, WecomSimConfig::default(), JdySimConfig::default()).await;
    env.write_job("", "");
    for month in ["2026-09", "2026-10"] {
        env.run(&["run", "--month", month]).await.expect_code(0);
    }
    let commands: [&[&str]; 6] = [
        &["status"],
        &["status", "wecom_monthly"],
        &["run", "--dry-run", "--month", "2026-10"],
        &["run", "--month", "2026-10"],
        &["run", "--month", "2026-10", "--json"],
        &["check"],
    ];
    for args in commands {
        run_with_closed_stdout(&env, args).await;
    }
    for args in [&["status"][..], &["run", "--dry-run", "--month", "2026-10"]] {
        run_and_close_after_first_line(&env, args).await;
    }
}
