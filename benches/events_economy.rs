//! Re-pulls on change, a month's economy (README "Re-pulls on change"; the
//! events read as docs/vendors/events.md describes; figures in
//! docs/benchmarks.md "Re-pulls on change: a month's economy").
//!
//! `cargo bench --bench events_economy [-- --employees 500 --corrected 25 --rate 200]`
//!
//! `--rate` is the job's limit per DingTalk API per second (the simulator
//! allows twice that; DingTalk's own quota is 20/s); `--budget N` keeps the job's
//! `monthly_call_budget` at N (the shipped 5,000) instead of raising it, to see
//! where the budget cuts the nightly pulls off.
//!
//! Two scenarios on fresh simulators and databases, the shipped DingTalk job
//! and mapping, the release binary; November is the closed month and a few
//! employees' November attendance is corrected after the close (an approved
//! leave, an admin's fix), spread over 1–4 December:
//!
//! 1. nightly full pulls through the 5th: `attendsync run` at 02:30 on each of
//!    1–5 December (the job's default months: November, which
//!    `previous_month_until_day = 5` keeps, and December to date);
//! 2. events: the same full pull on the 1st, then the daemon with `[events]`
//!    (DingTalk HTTP push) receives, day by day, one
//!    `attend_user_daily_summary_refresh` per correction, a morning and an
//!    evening check-in (`attendance_check_record`) of every employee for the
//!    month in progress (`current_month = "scheduled"`: they cost nothing),
//!    and a few duplicates.
//!
//! It prints the metered calls of each (all, and November's share), their
//! ratio, the share of the 5,000 calls a month of the standard edition, the
//! records written, the wall time, and whether November's form holds exactly
//! the simulator's figures, once per employee, identical in both scenarios.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use attendsync::config::SourceFile;
use attendsync::mapping::{Mapping, Vars};
use attendsync::month::Month;
use attendsync_sim::{
    DingtalkSim, DingtalkSimConfig, JdySim, JdySimConfig, Org, PushConfig, GLOBAL_LIMIT,
};
use futures::StreamExt;
use serde_json::{json, Value};

const APP_KEY: &str = "ding-economy-appkey";
const APP_SECRET: &str = "DingSecret-economy-0123456789abcdef";
const API_KEY: &str = "jdy-economy-key-0123456789";
const APP_ID: &str = "6399c24287cae90008d24e0b";
const ENTRY_ID: &str = "64093d8613931a00085bb2f5";
const TOKEN: &str = "economy-api-token-0123456789abcdef";
const EVENT_TOKEN: &str = "economy-event-token";
const AES_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
const JOB: &str = include_str!("../jobs/dingtalk_monthly.toml");
const MAPPING: &str = include_str!("../mappings/dingtalk_monthly.toml");
const JOB_NAME: &str = "dingtalk_monthly";
/// The standard edition's metered calls per calendar month.
const STANDARD_BUDGET: usize = 5_000;
/// Metered calls per employee-month of the shipped job: ⌈8 columns / 20⌉ +
/// ⌈4 leave names / 20⌉.
const CALLS_PER_EMPLOYEE_MONTH: usize = 2;
const CLOSED: &str = "2026-11";
const COLUMNS: [&str; 8] = [
    "出勤天数",
    "休息天数",
    "工作时长",
    "迟到次数",
    "迟到时长",
    "早退次数",
    "缺卡次数",
    "旷工天数",
];
const LEAVE: [&str; 4] = ["年假", "事假", "病假", "调休"];

struct Args {
    employees: usize,
    corrected: usize,
    rate: u32,
    /// The job's `monthly_call_budget`; `None`: raised out of the way.
    budget: Option<usize>,
}

fn args() -> Args {
    let mut out = Args {
        employees: 500,
        corrected: 25,
        rate: 200,
        budget: None,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1).and_then(|v| v.parse::<usize>().ok());
        match (argv[i].as_str(), value) {
            ("--employees", Some(v)) => out.employees = v,
            ("--corrected", Some(v)) => out.corrected = v,
            ("--rate", Some(v)) => out.rate = u32::try_from(v).unwrap_or(u32::MAX),
            ("--budget", Some(v)) => out.budget = Some(v),
            // `cargo bench` passes `--bench`; anything else is ignored likewise.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    out
}

/// "Now" for a run at 02:30 Beijing time on `day` December.
fn night(day: u32) -> String {
    format!("2026-12-{day:02}T02:30:00+08:00")
}

/// Which employees are corrected on which day of 1–4 December (after that
/// night's run): `corrected` of them, spread evenly over the organisation and
/// the days, the remainder on the first days.
fn corrections(users: &[String], corrected: usize) -> Vec<Vec<String>> {
    let step = (users.len() / corrected.max(1)).max(1);
    let chosen: Vec<String> = users
        .iter()
        .step_by(step)
        .take(corrected)
        .cloned()
        .collect();
    let mut days = vec![Vec::new(); 4];
    let mut start = 0;
    for (d, day) in days.iter_mut().enumerate() {
        let n = chosen.len() / 4 + usize::from(d < chosen.len() % 4);
        day.extend_from_slice(&chosen[start..start + n]);
        start += n;
    }
    days
}

/// A config dir with the shipped job pointed at the simulators: its schedule
/// never fires during the bench (runs are started by hand, or by events), its
/// budget is raised so the nightly pulls are measured whole rather than cut
/// off (unless `--budget`), and the quotas are the bench's.
struct Env {
    dir: tempfile::TempDir,
    dingtalk: DingtalkSim,
    jdy: JdySim,
}

async fn start_env(args: &Args) -> Env {
    let config = DingtalkSimConfig {
        app_key: APP_KEY.into(),
        app_secret: APP_SECRET.into(),
        ..DingtalkSimConfig::default().with_endpoint_rate(args.rate.saturating_mul(2))
    };
    let dingtalk = DingtalkSim::start(Org::generate(args.employees, 5), config)
        .await
        .unwrap_or_else(|e| panic!("start the DingTalk simulator: {e}"));
    let second = Duration::from_secs(1);
    let jdy = JdySim::start(JdySimConfig {
        api_key: API_KEY.into(),
        app_id: APP_ID.into(),
        entry_id: ENTRY_ID.into(),
        widgets: attendsync::app::demo::widgets_of_mapping(&mapping()),
        limits: vec![
            ("data/batch_create".into(), 100, second),
            ("data/update".into(), 200, second),
            ("data/list".into(), 300, second),
            (GLOBAL_LIMIT.into(), 500, second),
        ],
        ..JdySimConfig::default()
    })
    .await
    .unwrap_or_else(|e| panic!("start the Jiandaoyun simulator: {e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let env = Env { dir, dingtalk, jdy };
    env.write("mappings/dingtalk_monthly.toml", MAPPING);
    env.write(
        "attendsync.toml",
        "[server]\nlisten = \"127.0.0.1:0\"\ntoken = \"${ATTENDSYNC_API_TOKEN}\"\n",
    );
    env
}

fn mapping() -> Mapping {
    Mapping::parse(&SourceFile::new("mappings/dingtalk_monthly.toml", MAPPING))
        .unwrap_or_else(|e| panic!("the shipped mapping must parse: {e:?}"))
}

impl Env {
    fn write(&self, rel: &str, text: &str) {
        let path = self.dir.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir {parent:?}: {e}"));
        }
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {path:?}: {e}"));
    }

    fn write_job(&self, args: &Args, events: bool) {
        let replace = |text: String, from: &str, to: &str| {
            assert!(text.contains(from), "the shipped job no longer has {from}");
            text.replacen(from, to, 1)
        };
        let mut job = JOB.to_string();
        job = replace(
            job,
            "# base_url = \"https://oapi.dingtalk.com\"",
            &format!("base_url = \"{}\" #", self.dingtalk.base_url()),
        );
        job = replace(
            job,
            "# base_url = \"https://api.jiandaoyun.com\"",
            &format!("base_url = \"{}\" #", self.jdy.base_url()),
        );
        job = replace(
            job,
            "schedule = \"0 10 2 3,10,17,24 * *\"",
            "schedule = \"0 0 3 1 1 *\"",
        );
        job = replace(
            job,
            "monthly_call_budget = 5000",
            &format!("monthly_call_budget = {}", args.budget.unwrap_or(1_000_000)),
        );
        let rate = args.rate;
        job.push_str(&format!(
            "\n[source.limits]\n\"topapi/attendance/getcolumnval\" = \"{rate}/s\"\n\
             \"topapi/attendance/getleavetimebynames\" = \"{rate}/s\"\n\
             \"topapi/v2/user/list\" = \"{rate}/s\"\n\"topapi/v2/department/listsub\" = \"{rate}/s\"\n\
             \n[target.limits]\n\"data/batch_create\" = \"50/s\"\n\"data/update\" = \"100/s\"\n\
             \"data/list\" = \"100/s\"\n"
        ));
        if events {
            job.push_str(
                "\n[events]\nmode = \"http\"\ntoken = \"${EVENT_TOKEN}\"\n\
                 aes_key = \"${EVENT_AES_KEY}\"\ndelay = \"2s\"\n",
            );
        }
        self.write("jobs/dingtalk_monthly.toml", &job);
    }

    fn db(&self) -> std::path::PathBuf {
        self.dir.path().join("attendsync.db")
    }

    fn command(&self, args: &[&str], now: &str) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_attendsync"));
        cmd.args(args)
            .arg("--config-dir")
            .arg(self.dir.path())
            .env_remove("ATTENDSYNC_DB")
            .env("ATTENDSYNC_NOW", now)
            .env("DINGTALK_APP_KEY", APP_KEY)
            .env("DINGTALK_APP_SECRET", APP_SECRET)
            .env("JDY_API_KEY", API_KEY)
            .env("ATTENDSYNC_API_TOKEN", TOKEN)
            .env("EVENT_TOKEN", EVENT_TOKEN)
            .env("EVENT_AES_KEY", AES_KEY)
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// `attendsync run` as the nightly cron job runs it, "now" at `now`;
    /// whether it succeeded. A failure is fatal unless `budget` is given
    /// (a run the budget cuts off fails).
    async fn run_at(&self, now: &str, budget: Option<usize>) -> bool {
        let out = tokio::time::timeout(
            Duration::from_secs(600),
            self.command(&["run"], now).output(),
        )
        .await
        .unwrap_or_else(|_| panic!("the run at {now} did not end in 10 min"))
        .unwrap_or_else(|e| panic!("cannot run attendsync: {e}"));
        assert!(
            out.status.success() || budget.is_some(),
            "the run at {now} failed: {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out.status.success()
    }
}

/// One number from the job's database.
fn count(db: &Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap_or_else(|e| panic!("{e}"));
    conn.query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Employee-months pulled and records updated, per month, over all runs.
fn per_month(db: &Path, column: &str) -> BTreeMap<String, i64> {
    let conn = rusqlite::Connection::open(db).unwrap_or_else(|e| panic!("{e}"));
    let sql = format!("SELECT month, SUM({column}) FROM run_months GROUP BY month");
    let mut stmt = conn.prepare(&sql).unwrap_or_else(|e| panic!("{e}"));
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .unwrap_or_else(|e| panic!("{e}"));
    rows.map(|r| r.unwrap_or_else(|e| panic!("{e}"))).collect()
}

/// What one scenario came to.
struct Outcome {
    metered: usize,
    wall: Duration,
    runs: i64,
    /// `attendsync run`s that exited with an error (the budget cut them off).
    failed: usize,
    repulls: i64,
    pulled: BTreeMap<String, i64>,
    updated: BTreeMap<String, i64>,
    events: Option<EventFigures>,
    form: Form,
}

struct EventFigures {
    pushed: usize,
    accepted: usize,
    by_kind: BTreeMap<String, i64>,
    /// Runs that pulled December: the full pull alone, if check-ins cost nothing.
    december_runs: i64,
}

/// November's rows of the form, and how they compare with the simulator.
struct Form {
    rows: BTreeMap<String, BTreeMap<String, Value>>,
    duplicates: usize,
    wrong: usize,
}

/// November's rows by employee (fields the mapping fills, `synced_at` aside),
/// held twice, and rows unlike what the mapping makes of the simulator's figures.
fn november_form(env: &Env) -> Form {
    let month: Month = CLOSED.parse().unwrap_or_else(|e| panic!("{e}"));
    let mapping = mapping();
    let vars = Vars {
        month,
        timezone: chrono_tz::Asia::Shanghai,
        job: JOB_NAME.into(),
        source: "dingtalk".into(),
        synced_at: chrono::Utc::now(),
    };
    let columns: Vec<String> = COLUMNS.iter().map(|s| s.to_string()).collect();
    let leave: Vec<String> = LEAVE.iter().map(|s| s.to_string()).collect();
    let (mut rows, mut seen, mut duplicates, mut wrong) = (BTreeMap::new(), HashSet::new(), 0, 0);
    for row in env.jdy.records() {
        if row.get("month").and_then(Value::as_str) != Some(CLOSED) {
            continue;
        }
        let user = row.get("userid").and_then(Value::as_str).unwrap_or("");
        duplicates += usize::from(!seen.insert(user.to_string()));
        let expected = env
            .dingtalk
            .expected_record(user, month, &columns, &leave)
            .and_then(|r| mapping.apply(&r, &vars).ok());
        let mut fields = BTreeMap::new();
        let mut right = expected.is_some();
        if let Some(expected) = &expected {
            for (field, value) in expected.fields() {
                if field != "synced_at" {
                    right &= row.get(field) == Some(value);
                    fields.insert(
                        field.to_string(),
                        row.get(field).cloned().unwrap_or_default(),
                    );
                }
            }
        }
        wrong += usize::from(!right);
        rows.insert(user.to_string(), fields);
    }
    Form {
        rows,
        duplicates,
        wrong,
    }
}

fn users(env: &Env) -> Vec<String> {
    env.dingtalk
        .org()
        .users
        .iter()
        .map(|u| u.userid.clone())
        .collect()
}

/// Scenario 1: `attendsync run` at 02:30 on 1–5 December; each day's
/// corrections land after that night's run, so the next night pulls them.
async fn nightly(args: &Args) -> Outcome {
    let env = start_env(args).await;
    env.write_job(args, false);
    let days = corrections(&users(&env), args.corrected);
    let started = Instant::now();
    let mut failed = 0;
    for day in 1..=5u32 {
        let run = Instant::now();
        failed += usize::from(!env.run_at(&night(day), args.budget).await);
        let took = run.elapsed();
        for u in days.get(day as usize - 1).into_iter().flatten() {
            env.dingtalk.bump_revision(u);
        }
        eprintln!(
            "  night of the {day}: {:.1} s, {} metered calls so far",
            took.as_secs_f64(),
            env.dingtalk.metered_calls()
        );
    }
    let wall = started.elapsed();
    let db = env.db();
    Outcome {
        metered: env.dingtalk.metered_calls(),
        wall,
        runs: count(&db, "SELECT COUNT(*) FROM runs"),
        failed,
        repulls: 0,
        pulled: per_month(&db, "pulled"),
        updated: per_month(&db, "updated"),
        events: None,
        form: november_form(&env),
    }
}

/// The daemon, its listener's address, its log (kept for failure messages).
struct Daemon {
    child: tokio::process::Child,
    address: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    async fn start(env: &Env, now: &str) -> Daemon {
        use tokio::io::AsyncBufReadExt;
        let mut cmd = env.command(&["daemon"], now);
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start the daemon: {e}"));
        let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let address = loop {
            let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
                .await
                .ok()
                .and_then(Result::ok)
                .flatten()
                .unwrap_or_else(|| panic!("the daemon stopped before it listened"));
            let found = line
                .contains("serving the API")
                .then(|| line.split("address=").nth(1))
                .flatten()
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_owned);
            log.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            if let Some(address) = found {
                break address;
            }
        };
        let kept = Arc::clone(&log);
        // Keep reading, so the daemon never blocks on a full pipe.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                kept.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        Daemon {
            child,
            address,
            log,
        }
    }

    /// The log's last lines, for a failure message.
    fn tail(&self) -> String {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log[log.len().saturating_sub(40)..].join("\n")
    }

    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
    }
}

/// Pushes every event of `batch` (type, id, data), 16 at a time; how many
/// were acknowledged.
async fn push_all(pusher: &attendsync_sim::Pusher, batch: Vec<(&str, String, Value)>) -> usize {
    futures::stream::iter(batch)
        .map(|(kind, id, data)| async move { pusher.push(kind, &id, data).await })
        .buffer_unordered(16)
        .filter(|ok| futures::future::ready(*ok))
        .count()
        .await
}

/// A punch of `user` on `day` December at `hour`:00 Beijing time.
fn check_in(user: &str, day: u32, hour: u32) -> Value {
    let at = format!("2026-12-{day:02}T{hour:02}:00:00+08:00");
    let ms = chrono::DateTime::parse_from_rfc3339(&at)
        .map(|t| t.timestamp_millis())
        .unwrap_or_else(|e| panic!("{e}"));
    json!({"dataList": [{"userId": user, "checkTime": ms, "checkByUser": true}]})
}

/// The events of `day` December: one daily-summary refresh per correction
/// (for a November day), every employee's two check-ins of the day, and the
/// day's first two corrections delivered again.
fn events_of(
    day: u32,
    corrected: &[String],
    users: &[String],
) -> Vec<(&'static str, String, Value)> {
    let summary = "attend_user_daily_summary_refresh";
    let mut out = Vec::new();
    for (i, u) in corrected.iter().enumerate() {
        let work_date = format!("2026-11-{:02}", (day as usize * 7 + i) % 30 + 1);
        out.push((
            summary,
            format!("fix-{day}-{i}"),
            json!({"userId": u, "workDate": work_date}),
        ));
    }
    for (i, u) in users.iter().enumerate() {
        for hour in [9, 18] {
            out.push((
                "attendance_check_record",
                format!("punch-{day}-{i}-{hour}"),
                check_in(u, day, hour),
            ));
        }
    }
    let again: Vec<_> = out.iter().take(corrected.len().min(2)).cloned().collect();
    out.extend(again);
    out
}

/// Events received per kind (`(duplicate)` for redeliveries).
fn kinds(db: &Path) -> BTreeMap<String, i64> {
    let conn = rusqlite::Connection::open(db).unwrap_or_else(|e| panic!("{e}"));
    let mut stmt = conn
        .prepare("SELECT kind, received FROM event_counts")
        .unwrap_or_else(|e| panic!("{e}"));
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .unwrap_or_else(|e| panic!("{e}"));
    rows.map(|r| r.unwrap_or_else(|e| panic!("{e}"))).collect()
}

const REPULLS: &str =
    "SELECT COUNT(*) FROM runs WHERE command = 'rerun --employee' AND status = 'ok'";

/// Waits (at most 2 min) until no mark is left, no run is under way, and, when
/// `more_than` is given, more re-pulls have ended well than that.
async fn settled(db: &Path, more_than: Option<i64>, daemon: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = count(db, "SELECT COUNT(*) FROM dirty") == 0
            && count(db, "SELECT COUNT(*) FROM runs WHERE finished_at IS NULL") == 0
            && more_than.is_none_or(|n| count(db, REPULLS) > n);
        if done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the re-pulls did not settle within 2 min\n{}",
            daemon.tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Scenario 2: the full pull on the 1st at 02:30, then the daemon receiving
/// each day's events; each day's re-pulls end before the next day's events.
async fn with_events(args: &Args) -> Outcome {
    let env = start_env(args).await;
    env.write_job(args, true);
    let users = users(&env);
    let days = corrections(&users, args.corrected);
    let started = Instant::now();
    let failed = usize::from(!env.run_at(&night(1), args.budget).await);
    eprintln!(
        "  full pull on the 1st: {:.1} s, {} metered calls",
        started.elapsed().as_secs_f64(),
        env.dingtalk.metered_calls()
    );
    let daemon = Daemon::start(&env, "2026-12-01T02:40:00+08:00").await;
    let url = format!("http://{}/callbacks/dingtalk/{JOB_NAME}", daemon.address);
    let pusher = env
        .dingtalk
        .pusher(PushConfig::new(&url, EVENT_TOKEN, AES_KEY, APP_KEY))
        .unwrap_or_else(|e| panic!("pusher: {e}"));
    let db = env.db();
    let mut accepted = 0;
    for day in 1..=5u32 {
        let corrected = days.get(day as usize - 1).cloned().unwrap_or_default();
        for u in &corrected {
            env.dingtalk.bump_revision(u);
        }
        let (before, day_started) = (count(&db, REPULLS), Instant::now());
        accepted += push_all(&pusher, events_of(day, &corrected, &users)).await;
        settled(&db, (!corrected.is_empty()).then_some(before), &daemon).await;
        eprintln!(
            "  events of the {day}: pushed and re-pulled in {:.1} s, {} metered calls so far",
            day_started.elapsed().as_secs_f64(),
            env.dingtalk.metered_calls()
        );
    }
    let wall = started.elapsed();
    let events = EventFigures {
        pushed: pusher.pushes_sent(),
        accepted,
        by_kind: kinds(&db),
        december_runs: count(
            &db,
            "SELECT COUNT(*) FROM run_months WHERE month = '2026-12'",
        ),
    };
    daemon.stop().await;
    Outcome {
        metered: env.dingtalk.metered_calls(),
        wall,
        runs: count(&db, "SELECT COUNT(*) FROM runs"),
        failed,
        repulls: count(&db, REPULLS),
        pulled: per_month(&db, "pulled"),
        updated: per_month(&db, "updated"),
        events: Some(events),
        form: november_form(&env),
    }
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn report(args: &Args, nightly: &Outcome, events: &Outcome) {
    let november = |o: &Outcome| {
        o.pulled.get(CLOSED).copied().unwrap_or(0) as usize * CALLS_PER_EMPLOYEE_MONTH
    };
    let updated = |o: &Outcome, m: &str| o.updated.get(m).copied().unwrap_or(0);
    let budget = args
        .budget
        .map_or("raised out of the way".to_string(), thousands);
    println!(
        "\n{} employees, {} corrected after the close (1–4 December), monthly_call_budget {budget}\n",
        args.employees, args.corrected
    );
    println!("| scenario | metered calls | of which November | share of 5,000/month | runs: all (re-pulls, failed) | records updated: Nov / Dec | wall | November's form |");
    println!("|---|---|---|---|---|---|---|---|");
    for (name, o) in [
        ("nightly full pulls, 1st–5th", nightly),
        ("full pull on the 1st + events", events),
    ] {
        println!(
            "| {name} | {} | {} | {:.0} % | {} ({}, {}) | {} / {} | {:.1} s | {} of {} rows right, {} held twice |",
            thousands(o.metered),
            thousands(november(o)),
            o.metered as f64 * 100.0 / STANDARD_BUDGET as f64,
            o.runs,
            o.repulls,
            o.failed,
            updated(o, CLOSED),
            updated(o, "2026-12"),
            o.wall.as_secs_f64(),
            o.form.rows.len() - o.form.wrong,
            args.employees,
            o.form.duplicates,
        );
    }
    let identical = nightly.form.rows == events.form.rows;
    println!(
        "\nnightly ÷ events: {:.2}× the metered calls ({} saved); November's forms identical: {}",
        nightly.metered as f64 / events.metered.max(1) as f64,
        thousands(nightly.metered.saturating_sub(events.metered)),
        if identical { "yes" } else { "NO" }
    );
    if let Some(e) = &events.events {
        let kinds: Vec<String> = e.by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
        println!(
            "events: {} pushed, {} acknowledged; received: {}; runs that pulled December: {}",
            thousands(e.pushed),
            thousands(e.accepted),
            kinds.join(", "),
            e.december_runs
        );
    }
}

fn main() {
    // `cargo test --all-targets` runs bench targets too, without `--bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "benches/events_economy: not run without --bench (use `cargo bench --bench events_economy`)"
        );
        return;
    }
    let args = args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    runtime.block_on(async {
        eprintln!(
            "1. nightly full pulls through the 5th, {} employees",
            args.employees
        );
        let nightly = nightly(&args).await;
        eprintln!("2. one full pull and events");
        let events = with_events(&args).await;
        report(&args, &nightly, &events);
    });
}
