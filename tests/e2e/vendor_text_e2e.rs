//! A vendor's `errmsg` with a line break, terminal
//! escapes and the secret echoed percent-encoded reaches stdout, the log and
//! SQLite escaped, on one line, without the secret.

use crate::common;

use attendsync::store::Store;
use attendsync_sim::JdySimConfig;
use axum::routing::get;
use common::{fast_wecom, Env};

const SECRET: &str = "Top+Secret/9=%x-0123";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_errmsg_is_escaped_and_redacted_everywhere() {
    let env = Env::start(10, fast_wecom(), JdySimConfig::default()).await;
    // A WeCom whose gettoken refuses the secret with a forged log line, a
    // clear-screen escape and the secret as it was sent, percent-encoded.
    let hostile = axum::Router::new().route(
        "/cgi-bin/gettoken",
        get(|| async {
            r#"{"errcode":40001,"errmsg":"invalid credential\n2026-10-01T00:00:00Z  INFO forged line\u001b[2J corpsecret=Top%2BSecret%2F9%3D%25x-0123 or Top%2bSecret%2f9%3d%25x-0123"}"#
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, hostile).await });
    let job = env
        .job_text("", "")
        .replace(&env.wecom.base_url(), &format!("http://{addr}"));
    env.write("jobs/wecom_monthly.toml", &job);

    let run = env
        .run_with_env(
            &["run", "--month", "2026-10"],
            &[("WECOM_CHECKIN_SECRET", SECRET)],
        )
        .await;
    assert_ne!(run.code(), 0, "{}", run.all());
    let stored = Store::open(&env.db())
        .unwrap_or_else(|e| panic!("{e}"))
        .recent_runs(Some("wecom_monthly"), 1)
        .unwrap_or_else(|e| panic!("{e}"));
    let message = stored[0].message.clone().unwrap_or_default();
    for (place, text) in [
        ("stdout", run.stdout()),
        ("log", run.stderr()),
        ("runs.message", message.clone()),
    ] {
        assert!(!text.contains('\x1b'), "{place}: {text}");
        assert!(!text.contains("\nforged"), "{place}: {text}");
        for secret in [SECRET, "Top%2BSecret", "Top%2bSecret", "Secret"] {
            assert!(!text.contains(secret), "{place} holds {secret}: {text}");
        }
    }
    assert!(
        message.contains(r"invalid credential\n2026-10-01T00:00:00Z  INFO forged line\u{1b}[2J corpsecret=*** or ***"),
        "{message}"
    );
    assert!(run.all().contains(r"forged line\u{1b}[2J"), "{}", run.all());
}
