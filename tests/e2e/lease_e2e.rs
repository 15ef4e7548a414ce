//! A lease is taken over at once only from a dead process of
//! this boot and PID namespace; a holder in another namespace is waited out.

use crate::common;

use std::time::Duration;

use attendsync::lease::Identity;
use attendsync::store::Store;
use attendsync_sim::JdySimConfig;
use common::{fast_wecom, Env, API_KEY, CORP_ID, FAST_SOURCE, FAST_TARGET, SECRET};

const JOB: &str = "wecom_monthly";

/// Writes a lease held by `owner` for a minute, taking it from whoever holds it.
fn hold(env: &Env, owner: &str) {
    let store = Store::open(&env.db()).unwrap_or_else(|e| panic!("{e}"));
    let taken = store
        .acquire_lease(
            JOB,
            owner,
            Duration::from_secs(60),
            chrono::Utc::now(),
            &|_| true,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(taken.is_none());
}

/// Runs the job, under `unshare --pid --fork --mount-proc` when `unshared`.
async fn run(env: &Env, unshared: bool) -> (i32, String) {
    let bin = env!("CARGO_BIN_EXE_attendsync");
    let mut cmd = if unshared {
        let mut c = tokio::process::Command::new("unshare");
        c.args(["--pid", "--fork", "--mount-proc", bin]);
        c
    } else {
        tokio::process::Command::new(bin)
    };
    let out = cmd
        .args(["run", "--month", "2026-10", "--config-dir"])
        .arg(env.path())
        .env_remove("ATTENDSYNC_DB")
        .env("WECOM_CORP_ID", CORP_ID)
        .env("WECOM_CHECKIN_SECRET", SECRET)
        .env("JDY_API_KEY", API_KEY)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn unshare_works() -> bool {
    std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .status()
        .is_ok_and(|s| s.success())
}

/// A pid of this namespace that is certainly gone: a child that has exited.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true")
        .spawn()
        .unwrap_or_else(|e| panic!("spawn: {e}"));
    let pid = child.id();
    child.wait().unwrap_or_else(|e| panic!("wait: {e}"));
    pid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_is_taken_only_from_a_dead_process_of_our_namespace() {
    let env = Env::start(30, fast_wecom(), JdySimConfig::default()).await;
    env.write_job(FAST_SOURCE, FAST_TARGET);
    let me = Identity::current();
    let owner_of = |pid: u32| Identity { pid, ..me.clone() }.owner(uuid::Uuid::new_v4());

    // A holder of the old `host:pid:uuid` format, even with a dead pid on this
    // host: its namespace is unknown, so it is waited out.
    let old = format!("{}:{}:x", me.host, dead_pid());
    hold(&env, &old);
    let (code, text) = run(&env, false).await;
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("already running"), "{text}");

    // A dead holder of our boot and namespace is taken over at once.
    hold(&env, &owner_of(dead_pid()));
    let (code, text) = run(&env, false).await;
    assert_eq!(code, 0, "{text}");

    if !unshare_works() {
        eprintln!("skipped the PID-namespace case: `unshare --pid --fork --mount-proc` fails here");
        return;
    }
    // A live holder here (this test process) seen from another PID namespace,
    // where its pid is not in /proc: never taken over.
    let live = owner_of(std::process::id());
    hold(&env, &live);
    let (code, text) = run(&env, true).await;
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("already running"), "{text}");
}
