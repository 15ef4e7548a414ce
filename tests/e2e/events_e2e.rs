//! Re-pulls on change, end to end: the daemon receives vendor events from the
//! simulators (WeCom approval callbacks, DingTalk HTTP push and its failed
//! list, DingTalk Stream mode), marks employee-months in SQLite, and re-pulls
//! exactly those.

use crate::common;

use std::time::{Duration, Instant};

use attendsync_sim::{ApprovalKind, ApprovalPusher, JdySimConfig, SpStatus};
use chrono::{TimeZone, Utc};
use common::daemon::Daemon;
use common::{fast_wecom, Env, FAST_RETRY, FAST_TARGET_RETRY};

pub(crate) const TOKEN: &str = "api-token-for-the-tests-0123456789";
pub(crate) const EVENT_TOKEN: &str = "event-token-42";
pub(crate) const AES_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
/// 3 December, Beijing time: October and November are closed months.
pub(crate) const NOW: &str = "2026-12-03T10:00:00+08:00";

/// The listener's address, from the daemon's log.
pub(crate) async fn listener_address(daemon: &Daemon) -> String {
    let line = daemon
        .wait_for_line(&["serving the API", "address="], Duration::from_secs(20))
        .await;
    line.split("address=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line}"))
        .to_string()
}

/// Rows of `table` in the job's database matching `filter` (an SQL condition).
pub(crate) fn count(db: &std::path::Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap_or_else(|e| panic!("{e}"));
    conn.query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Waits (bounded) until `sql` counts `want`.
pub(crate) async fn until_count(db: &std::path::Path, sql: &str, want: i64, daemon: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if db.exists() && count(db, sql) == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{sql} did not reach {want}\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn wecom_events_job(env: &Env) -> String {
    let job = env.job_text(FAST_RETRY, FAST_TARGET_RETRY).replacen(
        "description = \"test job\"",
        "description = \"test job\"\nschedule = \"0 0 3 1 1 *\"",
        1,
    );
    format!(
        "{job}\n[events]\ntoken = \"${{EVENT_TOKEN}}\"\naes_key = \"${{EVENT_AES_KEY}}\"\ndelay = \"1s\"\n"
    )
}

fn write_server(env: &Env) {
    env.write(
        "attendsync.toml",
        "[server]\nlisten = \"127.0.0.1:0\"\ntoken = \"${ATTENDSYNC_API_TOKEN}\"\n",
    );
}

const VARS: &[(&str, &str)] = &[
    ("ATTENDSYNC_API_TOKEN", TOKEN),
    ("EVENT_TOKEN", EVENT_TOKEN),
    ("EVENT_AES_KEY", AES_KEY),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wecom_leave_across_a_month_boundary_re_pulls_both_months_of_that_employee() {
    let env = Env::start(8, fast_wecom(), JdySimConfig::default()).await;
    env.write("jobs/wecom_monthly.toml", &wecom_events_job(&env));
    write_server(&env);
    let mut now = vec![("ATTENDSYNC_NOW", NOW)];
    now.extend_from_slice(VARS);
    for month in ["2026-10", "2026-11"] {
        env.run_with_env(&["run", "--month", month], &now)
            .await
            .expect_code(0);
    }
    let before = env.rows_by_key();
    assert_eq!(before.len(), 16);
    let applicant = env.wecom.org().users[3].userid.clone();
    // The leave is approved: WeCom's reports of both months change.
    env.wecom.bump_revision(&applicant);
    let begin = Utc
        .with_ymd_and_hms(2026, 10, 30, 1, 0, 0)
        .single()
        .expect("t");
    let end = Utc
        .with_ymd_and_hms(2026, 11, 2, 10, 0, 0)
        .single()
        .expect("t");
    let sp_no = env.wecom.add_approval(
        &applicant,
        ApprovalKind::Leave,
        begin,
        end,
        SpStatus::Approved,
    );
    let monthdata_before = env.wecom.calls("checkin/getcheckin_monthdata");

    let daemon = Daemon::start_with(&env, Some(NOW), VARS);
    let address = listener_address(&daemon).await;
    let target = format!("http://{address}/callbacks/wecom/wecom_monthly");
    let pusher =
        ApprovalPusher::new(EVENT_TOKEN, AES_KEY, common::CORP_ID, &target).expect("pusher");
    let (check, echoed) = pusher.verify_url().await;
    assert!(echoed, "the URL check: {check:?}\n{}", daemon.log());
    for _ in 0..3 {
        // Delivered three times: one re-pull.
        let d = pusher
            .push_approval(&sp_no, &applicant, SpStatus::Approved, 2, 1_764_000_000)
            .await;
        assert_eq!(d.status, Some(200), "{d:?}\n{}", daemon.log());
    }
    let db = env.db();
    let repulls = "SELECT COUNT(*) FROM runs WHERE command = 'rerun --employee' AND status = 'ok'";
    until_count(&db, repulls, 2, &daemon).await;
    until_count(&db, "SELECT COUNT(*) FROM dirty", 0, &daemon).await;

    let after = env.rows_by_key();
    assert_eq!(after.len(), 16, "nothing created or lost");
    for (key, row) in &after {
        let changed = before.get(key) != Some(row);
        assert_eq!(changed, key.0 == applicant, "{key:?}");
    }
    // One monthdata call per month, for the applicant alone.
    let spent = env.wecom.calls("checkin/getcheckin_monthdata") - monthdata_before;
    assert_eq!(spent, 2, "{}", daemon.log());
    assert_eq!(
        count(
            &db,
            "SELECT received FROM event_counts WHERE kind = 'sys_approval_change'"
        ),
        1
    );
    assert_eq!(
        count(
            &db,
            "SELECT received FROM event_counts WHERE kind = '(duplicate)'"
        ),
        2
    );

    let status = env.run_with_env(&["status"], VARS).await;
    status
        .expect_code(0)
        .expect_contains("listening")
        .expect_contains("sys_approval_change 1");
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, 0, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wecom_callbacks_with_a_bad_signature_are_refused_and_change_nothing() {
    let env = Env::start(3, fast_wecom(), JdySimConfig::default()).await;
    env.write("jobs/wecom_monthly.toml", &wecom_events_job(&env));
    write_server(&env);
    let daemon = Daemon::start_with(&env, Some(NOW), VARS);
    let address = listener_address(&daemon).await;
    let target = format!("http://{address}/callbacks/wecom/wecom_monthly");
    let wrong =
        ApprovalPusher::new("another-token", AES_KEY, common::CORP_ID, &target).expect("pusher");
    let (check, echoed) = wrong.verify_url().await;
    assert!(
        !echoed && check.status.is_some_and(|s| (400..500).contains(&s)),
        "{check:?}"
    );
    let d = wrong
        .push_approval("202610300001", "u1", SpStatus::Approved, 2, 1_764_000_000)
        .await;
    assert!(d.status.is_some_and(|s| (400..500).contains(&s)), "{d:?}");
    let other_corp =
        ApprovalPusher::new(EVENT_TOKEN, AES_KEY, "ww-other-corp", &target).expect("pusher");
    let d = other_corp
        .push_approval("202610300001", "u1", SpStatus::Approved, 2, 1_764_000_000)
        .await;
    assert!(d.status.is_some_and(|s| (400..500).contains(&s)), "{d:?}");
    let unknown = format!("http://{address}/callbacks/wecom/no_such_job");
    let stray = ApprovalPusher::new(EVENT_TOKEN, AES_KEY, common::CORP_ID, &unknown).expect("p");
    let d = stray
        .push_approval("202610300001", "u1", SpStatus::Approved, 2, 1_764_000_000)
        .await;
    assert_eq!(d.status, Some(404), "{d:?}");
    let db = env.db();
    assert_eq!(count(&db, "SELECT COUNT(*) FROM events_seen"), 0);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM event_lookups"), 0);
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, 0, "{log}");
    assert!(
        !log.contains(AES_KEY) && !log.contains(EVENT_TOKEN),
        "{log}"
    );
}

mod dingtalk_push {
    use super::*;
    use crate::common::dingtalk::{events_job, http_events, start_dingtalk, DingEnv, APP_KEY};
    use attendsync_sim::{DingtalkSimConfig, Org, PushConfig};
    use serde_json::json;

    const DAILY_SUMMARY: &str = "attend_user_daily_summary_refresh";

    fn job(env: &DingEnv, delay: &str) -> String {
        events_job(env, &http_events(delay))
    }

    fn summary(userid: &str, day: &str) -> serde_json::Value {
        json!({"userId": userid, "workDate": day})
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn corrections_for_five_employees_re_pull_those_five_alone_failed_pushes_included() {
        let dingtalk = start_dingtalk(Org::generate(20, 4), DingtalkSimConfig::default()).await;
        let env = DingEnv::start(dingtalk).await;
        env.write("jobs/dingtalk_monthly.toml", &job(&env, "3s"));
        env.write(
            "attendsync.toml",
            "[server]\nlisten = \"127.0.0.1:0\"\ntoken = \"${ATTENDSYNC_API_TOKEN}\"\n",
        );
        let mut vars = vec![("ATTENDSYNC_NOW", NOW)];
        vars.extend_from_slice(VARS);
        let synced = env
            .run_with(
                &["run", "--month", "2026-10"],
                &vars,
                Duration::from_secs(120),
            )
            .await;
        assert!(
            synced.status.success(),
            "{}",
            common::dingtalk::all(&synced)
        );
        let before = env.jdy.records();
        assert_eq!(before.len(), 20);
        let users: Vec<String> = env
            .dingtalk
            .org()
            .users
            .iter()
            .map(|u| u.userid.clone())
            .collect();
        let corrected = &users[..5];
        for u in corrected {
            env.dingtalk.bump_revision(u);
        }
        // Three pushes fail while the daemon is down: they go to the failed list,
        // read one item a page.
        let down = PushConfig {
            retry_delays: vec![Duration::from_millis(10)],
            timeout: Duration::from_millis(500),
            ..PushConfig::new(
                "http://127.0.0.1:9/callbacks/dingtalk/dingtalk_monthly",
                EVENT_TOKEN,
                AES_KEY,
                APP_KEY,
            )
        };
        let offline = env.dingtalk.pusher(down).expect("pusher");
        for (i, u) in corrected[..3].iter().enumerate() {
            assert!(
                !offline
                    .push(DAILY_SUMMARY, &format!("ev-{i}"), summary(u, "2026-10-20"))
                    .await
            );
        }
        assert_eq!(env.dingtalk.failed_list_len(), 3);
        env.dingtalk.set_failed_page_size(1);
        let metered_before = env.dingtalk.metered_calls();

        let daemon = Daemon::spawn({
            let mut cmd = env.command(&["daemon"]);
            for (k, v) in &vars {
                cmd.env(k, v);
            }
            cmd
        });
        let address = listener_address(&daemon).await;
        let url = format!("http://{address}/callbacks/dingtalk/dingtalk_monthly");
        let live = env
            .dingtalk
            .pusher(PushConfig::new(&url, EVENT_TOKEN, AES_KEY, APP_KEY))
            .expect("pusher");
        for (i, u) in corrected[3..].iter().enumerate() {
            let pushed = live
                .push(
                    DAILY_SUMMARY,
                    &format!("live-{i}"),
                    summary(u, "2026-10-21"),
                )
                .await;
            assert!(pushed, "{}", daemon.log());
        }
        // The same event again, and one about a month in progress: nothing more.
        assert!(
            live.push(
                DAILY_SUMMARY,
                "live-0",
                summary(&corrected[3], "2026-10-21")
            )
            .await
        );
        assert!(
            live.push(DAILY_SUMMARY, "live-dec", summary(&users[9], "2026-12-02"))
                .await
        );

        let db = env.path().join("attendsync.db");
        let repulled =
            "SELECT COUNT(*) FROM runs WHERE command = 'rerun --employee' AND status = 'ok'";
        let deadline = Instant::now() + Duration::from_secs(60);
        while count(&db, "SELECT COUNT(*) FROM dirty") > 0 || count(&db, repulled) == 0 {
            assert!(Instant::now() < deadline, "{}", daemon.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Read one item a page (the last page leaves the list at the next drain).
        assert!(
            env.dingtalk.failed_list_calls() >= 3,
            "drained one page at a time"
        );
        let after = env.jdy.records();
        assert_eq!(after.len(), 20, "nothing created or lost");
        let row_of = |rows: &[serde_json::Map<String, serde_json::Value>], u: &str| {
            rows.iter()
                .find(|r| r.values().any(|v| v.as_str() == Some(u)))
                .cloned()
                .unwrap_or_else(|| panic!("no row of {u}"))
        };
        for u in &users {
            let changed = row_of(&before, u) != row_of(&after, u);
            assert_eq!(changed, corrected.contains(u), "{u}");
        }
        // Two metered calls per employee (8 columns, 4 leave names), and one
        // getattcolumns per re-pull run.
        let runs = count(&db, repulled) as usize;
        let spent = env.dingtalk.metered_calls() - metered_before;
        assert_eq!(
            spent,
            5 * 2 + runs,
            "{runs} re-pull run(s)\n{}",
            daemon.log()
        );
        // The month in progress was left to the schedule (current_month = "scheduled").
        assert_eq!(
            count(
                &db,
                "SELECT COUNT(*) FROM run_months WHERE month = '2026-12'"
            ),
            0
        );
        assert_eq!(count(&db, "SELECT COUNT(*) FROM events_seen"), 6);
        let (code, log) = daemon.terminate().await;
        assert_eq!(code, 0, "{log}");
    }
}

mod dingtalk_stream {
    use super::*;
    use crate::common::dingtalk::{events_job, start_dingtalk, DingEnv, APP_KEY, APP_SECRET};
    use attendsync_sim::{DingtalkSimConfig, Org, StreamGateway, StreamGatewayConfig};
    use serde_json::json;

    const DAILY_SUMMARY: &str = "attend_user_daily_summary_refresh";
    const REPULLED: &str =
        "SELECT COUNT(*) FROM runs WHERE command = 'rerun --employee' AND status = 'ok'";

    struct World {
        env: DingEnv,
        gateway: StreamGateway,
        vars: Vec<(&'static str, &'static str)>,
        before: Vec<serde_json::Map<String, serde_json::Value>>,
    }

    /// October synced in full; the job's events come over Stream mode.
    async fn world(employees: usize) -> World {
        let dingtalk =
            start_dingtalk(Org::generate(employees, 6), DingtalkSimConfig::default()).await;
        let env = DingEnv::start(dingtalk).await;
        let gateway = StreamGateway::start(StreamGatewayConfig {
            client_id: APP_KEY.into(),
            client_secret: APP_SECRET.into(),
            redeliver_after: Duration::from_millis(700),
            disconnect_grace: Duration::from_millis(200),
            ..StreamGatewayConfig::default()
        })
        .await
        .expect("gateway");
        let events = format!("gateway_url = \"{}\"\ndelay = \"1s\"", gateway.base_url());
        let job = events_job(&env, &events);
        env.write("jobs/dingtalk_monthly.toml", &job);
        let vars = vec![("ATTENDSYNC_NOW", NOW)];
        let synced = env
            .run_with(
                &["run", "--month", "2026-10"],
                &vars,
                Duration::from_secs(120),
            )
            .await;
        assert!(
            synced.status.success(),
            "{}",
            common::dingtalk::all(&synced)
        );
        let before = env.jdy.records();
        World {
            env,
            gateway,
            vars,
            before,
        }
    }

    impl World {
        fn daemon(&self) -> Daemon {
            let mut cmd = self.env.command(&["daemon"]);
            for (k, v) in &self.vars {
                cmd.env(k, v);
            }
            Daemon::spawn(cmd)
        }

        fn db(&self) -> std::path::PathBuf {
            self.env.path().join("attendsync.db")
        }

        fn user(&self, i: usize) -> String {
            self.env.dingtalk.org().users[i].userid.clone()
        }

        /// A correction of user `i`'s October, and its event.
        fn correct(&self, i: usize) -> String {
            let u = self.user(i);
            self.env.dingtalk.bump_revision(&u);
            self.gateway.push_event(
                DAILY_SUMMARY,
                json!({"userId": u, "workDate": "2026-10-15"}),
            )
        }

        /// Waits (bounded) until `sql` counts at least `want`.
        async fn until_at_least(&self, sql: &str, want: i64, daemon: &Daemon) {
            let deadline = Instant::now() + Duration::from_secs(60);
            let db = self.db();
            while !(db.exists() && count(&db, sql) >= want) {
                assert!(
                    Instant::now() < deadline,
                    "{sql} < {want}\n{}",
                    daemon.log()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }

        /// Waits until nothing waits for a re-pull and every event is
        /// acknowledged.
        async fn until_settled(&self, daemon: &Daemon) {
            let deadline = Instant::now() + Duration::from_secs(60);
            let db = self.db();
            while count(&db, "SELECT COUNT(*) FROM dirty") > 0 || !self.gateway.pending().is_empty()
            {
                assert!(Instant::now() < deadline, "{}", daemon.log());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }

        /// The users whose form row changed since October was synced.
        fn changed(&self) -> Vec<String> {
            let after = self.env.jdy.records();
            assert_eq!(after.len(), self.before.len(), "nothing created or lost");
            let row = |rows: &[serde_json::Map<String, serde_json::Value>], u: &str| {
                rows.iter()
                    .find(|r| r.values().any(|v| v.as_str() == Some(u)))
                    .cloned()
            };
            (0..self.before.len())
                .map(|i| self.user(i))
                .filter(|u| row(&self.before, u) != row(&after, u))
                .collect()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn disconnects_drops_and_duplicates_lose_no_event_and_re_pull_once() {
        let w = world(12).await;
        let daemon = w.daemon();
        let connected = "SELECT COUNT(*) FROM event_links WHERE state = 'connected'";
        w.until_at_least(connected, 1, &daemon).await;
        // Delivered three times (twice more after the ACK): one re-pull.
        w.gateway.duplicate_next(2);
        let first = w.correct(0);
        w.until_at_least(REPULLED, 1, &daemon).await;
        // The gateway asks for a reconnect; an event meanwhile is not lost.
        w.gateway.send_disconnect();
        let second = w.correct(1);
        // An abrupt drop; events pushed while no connection is open wait.
        w.until_at_least("SELECT COUNT(*) FROM events_seen", 2, &daemon)
            .await;
        w.gateway.drop_connections();
        let third = w.correct(2);
        w.until_at_least("SELECT COUNT(*) FROM events_seen", 3, &daemon)
            .await;
        w.until_settled(&daemon).await;
        w.until_at_least(REPULLED, 2, &daemon).await;

        let mut changed = w.changed();
        changed.sort();
        let mut expected = vec![w.user(0), w.user(1), w.user(2)];
        expected.sort();
        assert_eq!(changed, expected);
        let acked = w.gateway.acked();
        for id in [&first, &second, &third] {
            assert!(acked.contains(id), "{id} acknowledged: {acked:?}");
        }
        let tickets = w.gateway.tickets_issued();
        assert!(
            tickets.len() >= 3,
            "a new ticket per connection: {tickets:?}"
        );
        let unique: std::collections::BTreeSet<&String> = tickets.iter().collect();
        assert_eq!(unique.len(), tickets.len(), "no ticket used twice");
        let db = w.db();
        assert_eq!(count(&db, "SELECT COUNT(*) FROM events_seen"), 3);
        assert!(
            count(
                &db,
                "SELECT received FROM event_counts WHERE kind = '(duplicate)'"
            ) >= 2
        );
        let status = w
            .env
            .run_with(&["status"], &w.vars, Duration::from_secs(30))
            .await;
        let text = common::dingtalk::all(&status);
        assert!(
            text.contains("connected") && text.contains(DAILY_SUMMARY),
            "{text}"
        );
        let (code, log) = daemon.terminate().await;
        assert_eq!(code, 0, "{log}");
        assert!(!log.contains(APP_SECRET), "the secret in the log");
        let stopped = "SELECT COUNT(*) FROM event_links WHERE state = 'stopped'";
        assert_eq!(count(&db, stopped), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_kill_after_the_mark_loses_nothing_and_re_pulls_once() {
        let w = world(6).await;
        let daemon = w.daemon();
        let connected = "SELECT COUNT(*) FROM event_links WHERE state = 'connected'";
        w.until_at_least(connected, 1, &daemon).await;
        let id = w.correct(4);
        // Killed as soon as the mark is in SQLite: before the re-pull, and
        // maybe before the acknowledgement reached the gateway.
        w.until_at_least("SELECT COUNT(*) FROM dirty", 1, &daemon)
            .await;
        daemon.signal("KILL");
        let _ = daemon.wait_exit().await;
        let restarted = w.daemon();
        w.until_settled(&restarted).await;
        w.until_at_least(REPULLED, 1, &restarted).await;
        assert_eq!(w.changed(), vec![w.user(4)]);
        assert!(w.gateway.acked().contains(&id));
        assert_eq!(count(&w.db(), REPULLED), 1, "{}", restarted.log());
        let (code, log) = restarted.terminate().await;
        assert_eq!(code, 0, "{log}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_event_whose_ack_was_lost_is_redelivered_and_re_pulled_once() {
        let w = world(5).await;
        let daemon = w.daemon();
        let connected = "SELECT COUNT(*) FROM event_links WHERE state = 'connected'";
        w.until_at_least(connected, 1, &daemon).await;
        w.gateway.lose_next_acks(1);
        let id = w.correct(2);
        w.until_settled(&daemon).await;
        w.until_at_least(REPULLED, 1, &daemon).await;
        assert_eq!(w.gateway.acks_lost(), 1);
        assert!(
            w.gateway.acked().contains(&id),
            "acknowledged on redelivery"
        );
        assert!(w.gateway.deliveries() >= 2, "delivered again");
        let db = w.db();
        assert_eq!(count(&db, "SELECT COUNT(*) FROM events_seen"), 1);
        // Redelivered once (again if the second ACK were slower than the
        // gateway's 0.7 s): each time a duplicate, nothing marked twice.
        assert!(
            count(
                &db,
                "SELECT received FROM event_counts WHERE kind = '(duplicate)'"
            ) >= 1
        );
        assert_eq!(w.changed(), vec![w.user(2)]);
        assert_eq!(count(&db, REPULLED), 1, "{}", daemon.log());
        let (code, log) = daemon.terminate().await;
        assert_eq!(code, 0, "{log}");
    }
}
