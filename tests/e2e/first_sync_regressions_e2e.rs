//! Attacks on the first-sync write path: a month that the form holds no
//! record of is created without per-batch look-ups (docs/ARCHITECTURE.md,
//! "Before creating, know the keys are not in the form").

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use attendsync_sim::{JdySimConfig, TxMode};
use serde_json::{Map, Value};

use crate::common;
use common::{counts, fast_wecom, spawn_and_kill, Env, FAST_SOURCE, FAST_TARGET};

const MONTH: &str = "2026-10";

fn widgets(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect()
}

fn form() -> Vec<(String, String)> {
    widgets(&[
        ("userid", "text"),
        ("month", "text"),
        ("period", "datetime"),
        ("period_end", "datetime"),
        ("job_name", "text"),
        ("ym", "number"),
        ("work_hours", "number"),
    ])
}

const BY_MONTH: &str = "key = [\"userid\", \"month\"]\n[fields]\nuserid = { from = \"base_info.acctid\", type = \"text\" }\nmonth = { from = \"$month\", type = \"text\" }\n";

const WORK: &str = "work_hours = { from = \"summary_info.regular_work_sec\", default = 0, convert = \"seconds_to_hours\", round = 2, type = \"number\" }\n";

async fn env_with(employees: usize, mapping: &str, jdy: JdySimConfig) -> Env {
    let env = Env::start(
        employees,
        fast_wecom(),
        JdySimConfig {
            widgets: form(),
            ..jdy
        },
    )
    .await;
    env.write("mappings/wecom_monthly.toml", &format!("{mapping}{WORK}"));
    env.write_job(FAST_SOURCE, FAST_TARGET);
    env
}

/// Form records grouped by the given fields; each group's size.
fn copies(env: &Env, fields: &[&str]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in env.jdy.records() {
        let key: Vec<String> = fields
            .iter()
            .map(|f| r.get(*f).map_or("null".into(), Value::to_string))
            .collect();
        *out.entry(key.join("|")).or_default() += 1;
    }
    out
}

fn assert_once_each(env: &Env, fields: &[&str], n: usize, ctx: &str) {
    let groups = copies(env, fields);
    let twice: Vec<_> = groups.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "keys held twice: {twice:?}{ctx}");
    assert_eq!(groups.len(), n, "records per key{ctx}");
}

fn ids(env: &Env) -> Vec<String> {
    env.jdy
        .records()
        .iter()
        .filter_map(|r| r["_id"].as_str().map(String::from))
        .collect()
}

/// First sync, database lost, a third of the records deleted, run again:
/// one record per key, and the first sync cost one read.
async fn lost_database_round(mapping: &str, key: &[&str]) {
    let env = env_with(250, mapping, JdySimConfig::default()).await;
    let first = env.run(&["run", "--month", MONTH]).await;
    first.expect_code(0);
    assert_eq!(env.jdy.calls("data/list"), 1, "{}", first.all());
    assert_eq!(env.jdy.calls("data/batch_create"), 3);
    assert_once_each(&env, key, 250, &first.all());
    std::fs::remove_file(env.db()).unwrap_or_else(|e| panic!("{e}"));
    for id in ids(&env).iter().step_by(3) {
        assert!(env.jdy.delete_record(id));
    }
    let again = env.run(&["run", "--month", MONTH]).await;
    again.expect_code(0);
    assert_once_each(&env, key, 250, &again.all());
    assert_eq!(env.jdy.records().len(), 250, "{}", again.all());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_key_in_a_datetime_field_finds_the_month() {
    lost_database_round(
        "key = [\"userid\", \"period\"]\n[fields]\nuserid = { from = \"base_info.acctid\", type = \"text\" }\nperiod = { from = \"$month_start\", type = \"datetime\" }\n",
        &["userid", "period"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_three_fields_two_constant_finds_the_month() {
    lost_database_round(
        "key = [\"userid\", \"period_end\", \"job_name\"]\n[fields]\nuserid = { from = \"base_info.acctid\", type = \"text\" }\nperiod_end = { from = \"$month_end\", type = \"datetime\" }\njob_name = { from = \"$job\", type = \"text\" }\n",
        &["userid", "period_end", "job_name"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_key_named_by_widget_id_finds_the_month() {
    let env = Env::start(
        1,
        fast_wecom(),
        JdySimConfig {
            widgets: form(),
            ..JdySimConfig::default()
        },
    )
    .await;
    let id = env
        .jdy
        .widget_names()
        .into_iter()
        .find(|(alias, _)| alias == "month")
        .map(|(_, id)| id)
        .unwrap_or_else(|| panic!("no month widget"));
    drop(env);
    lost_database_round(
        &format!("key = [\"userid\", \"{id}\"]\n[fields]\nuserid = {{ from = \"base_info.acctid\", type = \"text\" }}\n{id} = {{ from = \"$month\", type = \"text\" }}\n"),
        &["userid", "month"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_key_mapped_to_a_number_finds_the_month() {
    lost_database_round(
        "key = [\"userid\", \"ym\"]\n[fields]\nuserid = { from = \"base_info.acctid\", type = \"text\" }\nym = { from = \"$month\", map = { \"2026-10\" = 202610, \"2026-09\" = 202609 }, type = \"number\" }\n",
        &["userid", "ym"],
    )
    .await;
}

/// The check itself refused for good (HTTP 429 on every `data/list`): the
/// month fails naming the endpoint, creates nothing, and its summary still
/// adds up: the records pulled that could not be written are counted failed,
/// as when a batch's own look-up fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_refused_for_good_fails_the_month_and_counts_its_records() {
    let mut jdy = JdySimConfig::default();
    jdy.limits.retain(|(e, _, _)| e != "data/list");
    jdy.limits
        .push(("data/list".into(), 0, Duration::from_secs(600)));
    let env = env_with(150, BY_MONTH, jdy).await;
    let run = env.run(&["run", "--month", MONTH]).await;
    assert_eq!(run.code(), 1, "{}", run.all());
    run.expect_contains("Jiandaoyun data/list: gave up");
    assert_eq!(env.jdy.records().len(), 0);
    let (pulled, created, updated, unchanged, failed) = counts(&run.stdout(), MONTH);
    assert!(pulled > 0, "{}", run.all());
    assert_eq!(
        created + updated + unchanged + failed,
        pulled,
        "records pulled but counted nowhere{}",
        run.all()
    );
}

/// Throttling on every other call, the check included: nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_first_sync_creates_each_key_once() {
    let jdy = JdySimConfig {
        throttle_ratio: 0.3,
        ..JdySimConfig::default()
    };
    let env = env_with(450, BY_MONTH, jdy).await;
    let run = env.run(&["run", "--month", MONTH]).await;
    run.expect_code(0);
    eprintln!("{}", run.all());
    assert_once_each(&env, &["userid", "month"], 450, &run.all());
    eprintln!(
        "list={} create={}",
        env.jdy.calls("data/list"),
        env.jdy.calls("data/batch_create")
    );
}

/// Killed at every stage of a first sync on a form that ignores
/// transaction ids and commits late; the next run finishes without a copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_sync_killed_at_every_stage_is_finished_without_copies() {
    type Ready = fn(&Env) -> bool;
    let stages: [(&str, Ready); 4] = [
        ("after the check", |e| e.jdy.calls("data/list") >= 1),
        ("first batch sent", |e| {
            e.jdy.calls("data/batch_create") >= 1
        }),
        ("first batch landed", |e| !e.jdy.records().is_empty()),
        ("third batch sent", |e| {
            e.jdy.calls("data/batch_create") >= 3
        }),
    ];
    for (stage, ready) in stages {
        let jdy = JdySimConfig {
            tx_mode: TxMode::Ignore,
            commit_delay: Duration::from_millis(300),
            ..JdySimConfig::default()
        };
        let env = env_with(500, BY_MONTH, jdy).await;
        spawn_and_kill(&env, &["run", "--month", MONTH], ready).await;
        let next = env.run(&["run", "--month", MONTH]).await;
        next.expect_code(0);
        // Late commits of the killed run have landed by now.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_once_each(
            &env,
            &["userid", "month"],
            500,
            &format!("{stage}{}", next.all()),
        );
    }
}

/// A rerun of a month the form holds in part: a dry run writes nothing, the
/// rerun creates what is missing once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerun_of_a_month_held_in_part() {
    let env = env_with(250, BY_MONTH, JdySimConfig::default()).await;
    env.run(&["run", "--month", MONTH]).await.expect_code(0);
    for id in ids(&env).iter().step_by(4) {
        assert!(env.jdy.delete_record(id));
    }
    let kept = env.jdy.records().len();
    let writes = env.jdy.write_calls();
    let dry = env
        .run(&["rerun", "wecom_monthly", "--month", MONTH, "--dry-run"])
        .await;
    dry.expect_code(0);
    eprintln!("{}", dry.all());
    assert_eq!(env.jdy.write_calls(), writes);
    let lists = env.jdy.calls("data/list");
    let rerun = env.run(&["rerun", "wecom_monthly", "--month", MONTH]).await;
    rerun.expect_code(0);
    eprintln!(
        "{} list={}",
        rerun.all(),
        env.jdy.calls("data/list") - lists
    );
    assert_once_each(&env, &["userid", "month"], 250, &rerun.all());
    let (_, created, ..) = counts(&rerun.stdout(), MONTH);
    assert_eq!(created as usize, 250 - kept);
    let again = env
        .run(&[
            "rerun",
            "wecom_monthly",
            "--month",
            MONTH,
            "--force",
            "--prune",
        ])
        .await;
    eprintln!("{}", again.all());
    assert_once_each(&env, &["userid", "month"], 250, &again.all());
}

/// A record made by hand while the first sync is under way (the one case the
/// check does not cover): `rerun` reports the copy and `--force` removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_made_by_hand_during_a_first_sync_is_repaired_by_rerun_force() {
    let jdy = JdySimConfig {
        latency: Duration::from_millis(30),
        ..JdySimConfig::default()
    };
    let env = env_with(400, BY_MONTH, jdy).await;
    env.run(&["run", "--month", "2026-09"]).await.expect_code(0);
    let users: Vec<Value> = env
        .jdy
        .records()
        .iter()
        .map(|r| r["userid"].clone())
        .collect();
    let run = {
        let handle = env.run(&["run", "--month", MONTH]);
        let add = async {
            let deadline = Instant::now() + Duration::from_secs(60);
            while env.jdy.records().len() < 500 {
                assert!(Instant::now() < deadline, "no batch of the month landed");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            for u in users.iter().rev().take(50) {
                let mut m = Map::new();
                m.insert("userid".into(), u.clone());
                m.insert("month".into(), Value::String(MONTH.into()));
                m.insert("work_hours".into(), serde_json::json!(1));
                env.jdy.add_record(m);
            }
        };
        let (run, ()) = tokio::join!(handle, add);
        run
    };
    eprintln!("{}", run.all());
    let twice = copies(&env, &["userid", "month"])
        .values()
        .filter(|c| **c > 1)
        .count();
    eprintln!("keys twice after the run: {twice}");
    let rerun = env.run(&["rerun", "wecom_monthly", "--month", MONTH]).await;
    eprintln!("{}", rerun.all());
    let force = env
        .run(&["rerun", "wecom_monthly", "--month", MONTH, "--force"])
        .await;
    eprintln!("{}", force.all());
    assert_once_each(&env, &["userid", "month"], 800, &force.all());
}

/// A stand-in between attendsync and the Jiandaoyun simulator that answers
/// the first `data/list` with HTTP 200 and a body holding no `data` (a
/// gateway's or a changed API's answer) and passes everything else on.
async fn proxy_with_one_bad_list(to: String) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let lists = Arc::new(AtomicUsize::new(0));
    let http = attendsync::http::client(Duration::from_secs(10)).unwrap_or_else(|e| panic!("{e}"));
    let app = axum::Router::new().fallback(
        move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let (lists, http, to) = (lists.clone(), http.clone(), to.clone());
            async move {
                let path = uri.path().to_string();
                if path.ends_with("/data/list") && lists.fetch_add(1, Ordering::SeqCst) == 0 {
                    return (
                        axum::http::StatusCode::OK,
                        r#"{"msg":"ok"}"#.as_bytes().to_vec(),
                    );
                }
                let mut req = http.post(format!("{to}{path}")).body(body);
                for name in ["authorization", "content-type"] {
                    if let Some(v) = headers.get(name) {
                        req = req.header(name, v.as_bytes());
                    }
                }
                match req.send().await {
                    Ok(r) => {
                        let status = axum::http::StatusCode::from_u16(r.status().as_u16())
                            .unwrap_or(axum::http::StatusCode::BAD_GATEWAY);
                        (
                            status,
                            r.bytes().await.map(|b| b.to_vec()).unwrap_or_default(),
                        )
                    }
                    Err(_) => (axum::http::StatusCode::BAD_GATEWAY, Vec::new()),
                }
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// The database is lost and the form holds most of the month; the check is
/// answered with a body that holds no records list. That answer is not "the
/// month is empty": nothing is created twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_answered_without_a_records_list_creates_nothing_twice() {
    let env = env_with(250, BY_MONTH, JdySimConfig::default()).await;
    env.run(&["run", "--month", MONTH]).await.expect_code(0);
    std::fs::remove_file(env.db()).unwrap_or_else(|e| panic!("{e}"));
    for id in ids(&env).iter().step_by(3) {
        assert!(env.jdy.delete_record(id));
    }
    let proxy = proxy_with_one_bad_list(env.jdy.base_url()).await;
    let job = env.job_text(
        &format!("{FAST_SOURCE}\n{}", common::FAST_RETRY),
        &format!("{FAST_TARGET}\n{}", common::FAST_TARGET_RETRY),
    );
    env.write(
        "jobs/wecom_monthly.toml",
        &job.replace(&env.jdy.base_url(), &proxy),
    );
    let run = env.run(&["run", "--month", MONTH]).await;
    let twice = copies(&env, &["userid", "month"])
        .into_values()
        .filter(|c| *c > 1)
        .count();
    assert_eq!(twice, 0, "keys created twice{}", run.all());
    assert_eq!(run.code(), 1, "{}", run.all());
    run.expect_contains("Jiandaoyun data/list");
    // The next answer is sound: the month is finished, each key once.
    let next = env.run(&["run", "--month", MONTH]).await;
    next.expect_code(0);
    assert_once_each(&env, &["userid", "month"], 250, &next.all());
}

/// Two months first synced in one run (the closed month and the current one):
/// one check each, ⌈N/100⌉ creates each; run again, nothing is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_months_in_one_run_cost_one_check_each() {
    let env = env_with(150, BY_MONTH, JdySimConfig::default()).await;
    let jan3 = ("ATTENDSYNC_NOW", "2027-01-03T02:10:00+08:00");
    let run = env.run_with_env(&["run"], &[jan3]).await;
    run.expect_code(0);
    for month in ["2026-12", "2027-01"] {
        assert_eq!(counts(&run.stdout(), month).1, 150, "{}", run.all());
    }
    assert_eq!(env.jdy.calls("data/list"), 2, "{}", run.all());
    assert_eq!(env.jdy.calls("data/batch_create"), 4);
    assert_once_each(&env, &["userid", "month"], 300, &run.all());
    let reads = env.jdy.calls("data/list");
    let next = env.run_with_env(&["run"], &[jan3]).await;
    next.expect_code(0);
    assert_eq!(env.jdy.calls("data/list"), reads, "{}", next.all());
    assert_eq!(env.jdy.calls("data/batch_create"), 4);
}

mod dingtalk {
    use std::time::Duration;

    use attendsync_sim::{DingtalkSimConfig, Org};

    use super::MONTH;
    use crate::common::dingtalk::{all, fast_retry, start_dingtalk, DingEnv, FAST_LIMITS};

    async fn env(employees: usize) -> DingEnv {
        let config = DingtalkSimConfig::default().with_endpoint_rate(1000);
        let env = DingEnv::start(start_dingtalk(Org::generate(employees, 5), config).await).await;
        let job = format!("{}\n{FAST_LIMITS}\n{}", env.pointed_job(), fast_retry(10));
        env.write("jobs/dingtalk_monthly.toml", &job);
        env
    }

    fn users(env: &DingEnv) -> std::collections::BTreeMap<String, usize> {
        let mut out = std::collections::BTreeMap::new();
        for r in env.jdy.records() {
            *out.entry(format!("{}|{}", r["userid"], r["month"]))
                .or_default() += 1;
        }
        out
    }

    /// The shipped DingTalk job: a first sync reads the form once, a lost
    /// database with a form holding most of the month creates nothing twice.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dingtalk_first_sync_then_a_lost_database_creates_each_key_once() {
        let env = env(250).await;
        let timeout = Duration::from_secs(200);
        let first = env.run_with(&["run", "--month", MONTH], &[], timeout).await;
        assert_eq!(first.status.code(), Some(0), "{}", all(&first));
        assert_eq!(env.jdy.calls("data/list"), 1, "{}", all(&first));
        // 16 + 100 + 100 + 34: the first chunk starts with the first 16 found.
        assert_eq!(env.jdy.calls("data/batch_create"), 4);
        std::fs::remove_file(env.path().join("attendsync.db")).unwrap_or_else(|e| panic!("{e}"));
        let ids: Vec<String> = env
            .jdy
            .records()
            .iter()
            .filter_map(|r| r["_id"].as_str().map(String::from))
            .collect();
        for id in ids.iter().step_by(3) {
            assert!(env.jdy.delete_record(id));
        }
        let again = env.run_with(&["run", "--month", MONTH], &[], timeout).await;
        assert_eq!(again.status.code(), Some(0), "{}", all(&again));
        let keys = users(&env);
        assert_eq!(keys.len(), 250, "{}", all(&again));
        assert!(keys.values().all(|c| *c == 1), "a key twice{}", all(&again));
        let (reads, writes) = (env.jdy.calls("data/list"), env.jdy.write_calls());
        let third = env.run_with(&["run", "--month", MONTH], &[], timeout).await;
        assert_eq!(third.status.code(), Some(0), "{}", all(&third));
        assert_eq!(env.jdy.calls("data/list"), reads, "{}", all(&third));
        assert_eq!(env.jdy.write_calls(), writes);
    }
}

/// A month already synced gains one record to create (here: one the form
/// and the store both lost, as for a new employee): the run creates it and
/// reads the form once, to look that batch up. Asking first whether the form
/// holds any record of the month, when the store shows this job wrote some,
/// cannot spare that look-up and costs a read more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_new_record_in_a_month_already_synced_costs_one_read() {
    let env = env_with(150, BY_MONTH, JdySimConfig::default()).await;
    env.run(&["run", "--month", MONTH]).await.expect_code(0);
    let db = rusqlite::Connection::open(env.db()).unwrap_or_else(|e| panic!("{e}"));
    let key: String = db
        .query_row(
            "DELETE FROM checkpoints WHERE record_key = (SELECT MIN(record_key) FROM checkpoints) RETURNING record_key",
            [],
            |r| r.get(0),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    drop(db);
    let lost = env
        .jdy
        .records()
        .into_iter()
        .find(|r| key.contains(&format!("\"{}\"", r["userid"].as_str().unwrap_or("?"))))
        .unwrap_or_else(|| panic!("no record of {key}"));
    assert!(env.jdy.delete_record(lost["_id"].as_str().unwrap_or("")));
    let (reads, creates) = (
        env.jdy.calls("data/list"),
        env.jdy.calls("data/batch_create"),
    );
    let run = env.run(&["run", "--month", MONTH]).await;
    run.expect_code(0);
    assert_eq!(counts(&run.stdout(), MONTH).1, 1, "{}", run.all());
    assert_eq!(env.jdy.calls("data/batch_create") - creates, 1);
    assert_eq!(
        env.jdy.calls("data/list") - reads,
        1,
        "one look-up, no check{}",
        run.all()
    );
    assert_once_each(&env, &["userid", "month"], 150, &run.all());
}

/// Commits answered by a 502 or a dropped connection on a form that ignores
/// `transaction_id`, during a first sync: read back, never sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unclear_create_answers_during_a_first_sync_create_each_key_once() {
    let jdy = JdySimConfig {
        tx_mode: TxMode::Ignore,
        store_then_502_ratio: 0.25,
        store_then_drop_ratio: 0.25,
        ..JdySimConfig::default()
    };
    let env = env_with(600, BY_MONTH, jdy).await;
    let run = env.run(&["run", "--month", MONTH]).await;
    run.expect_code(0);
    assert_once_each(&env, &["userid", "month"], 600, &run.all());
    assert_eq!(counts(&run.stdout(), MONTH).1, 600, "{}", run.all());
}

/// Another job writing the same form (a copy of the job under another name)
/// synced the month first: the copy's first sync finds the month, looks each
/// batch up and takes the records over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_job_on_the_same_form_takes_the_month_over() {
    let env = env_with(250, BY_MONTH, JdySimConfig::default()).await;
    let job = std::fs::read_to_string(env.path().join("jobs/wecom_monthly.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    env.write("jobs/wecom_copy.toml", &job);
    env.run(&["run", "wecom_monthly", "--month", MONTH])
        .await
        .expect_code(0);
    let copy = env.run(&["run", "wecom_copy", "--month", MONTH]).await;
    copy.expect_code(0);
    assert_once_each(&env, &["userid", "month"], 250, &copy.all());
}

/// A rerun killed with a batch in flight on a form that ignores
/// `transaction_id` and commits late; the next run and rerun finish the month
/// without a copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_rerun_is_finished_without_copies() {
    let jdy = JdySimConfig {
        tx_mode: TxMode::Ignore,
        commit_delay: Duration::from_millis(300),
        ..JdySimConfig::default()
    };
    let env = env_with(400, BY_MONTH, jdy).await;
    env.run(&["run", "--month", MONTH]).await.expect_code(0);
    for id in ids(&env).iter().step_by(2) {
        assert!(env.jdy.delete_record(id));
    }
    let creates = env.jdy.calls("data/batch_create");
    spawn_and_kill(&env, &["rerun", "wecom_monthly", "--month", MONTH], |e| {
        e.jdy.calls("data/batch_create") > creates
    })
    .await;
    let next = env.run(&["run", "--month", MONTH]).await;
    next.expect_code(0);
    let rerun = env.run(&["rerun", "wecom_monthly", "--month", MONTH]).await;
    rerun.expect_code(0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_once_each(&env, &["userid", "month"], 400, &rerun.all());
}
