//! The daemon's HTTP API under load during a large sync (README "The daemon's
//! HTTP API"; figures in docs/benchmarks.md "The API under load").
//!
//! `cargo bench --bench api_load [-- --employees 20000 --requests 200 --bad 50]`
//!
//! Twice, each on fresh simulators and a fresh database: the release daemon
//! runs a requested rerun of one month of N employees (a first sync of it),
//! once undisturbed and once while bursts of `--requests` concurrent API
//! requests (jobs, months, metrics, health, the run) and `--bad` requests with
//! a wrong token arrive every 2 s. It reports the sync's wall time and its
//! ratio to the undisturbed one, the API's latency (p50, p99, max), answers
//! that were not 200 (or 401 for the bad token), records lost or held twice,
//! and the daemon's peak RSS.

use std::time::{Duration, Instant};

use attendsync::config::SourceFile;
use attendsync::mapping::Mapping;
use attendsync_sim::{JdySim, JdySimConfig, Org, WecomSim, WecomSimConfig};
use serde_json::{json, Value};

const MONTH: &str = "2026-10";
const CORP_ID: &str = "ww-load-corp";
const SECRET: &str = "load-checkin-secret-0123456789abcdef";
const API_KEY: &str = "jdy-load-key-0123456789";
const TOKEN: &str = "load-test-api-token-0123456789abcdef";
const JOB: &str = include_str!("../jobs/wecom_monthly.toml");
const MAPPING: &str = include_str!("../mappings/wecom_monthly.toml");

struct Args {
    employees: usize,
    requests: usize,
    bad: usize,
}

fn args() -> Args {
    let mut out = Args {
        employees: 20_000,
        requests: 200,
        bad: 50,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1).and_then(|v| v.parse().ok());
        match (argv[i].as_str(), value) {
            ("--employees", Some(v)) => out.employees = v,
            ("--requests", Some(v)) => out.requests = v,
            ("--bad", Some(v)) => out.bad = v,
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

/// What one sync under the daemon came to.
struct Outcome {
    wall: Duration,
    latencies: Vec<Duration>,
    unexpected: usize,
    bursts: usize,
    records: usize,
    duplicates: usize,
    peak_rss_kib: u64,
    stop: Duration,
}

struct Daemon {
    child: tokio::process::Child,
    base: String,
}

async fn start_daemon(dir: &std::path::Path) -> Daemon {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_attendsync"))
        .args(["daemon", "--config-dir"])
        .arg(dir)
        .env_remove("ATTENDSYNC_DB")
        .env("WECOM_CORP_ID", CORP_ID)
        .env("WECOM_CHECKIN_SECRET", SECRET)
        .env("JDY_API_KEY", API_KEY)
        .env("ATTENDSYNC_API_TOKEN", TOKEN)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start the daemon: {e}"));
    let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let address = loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .ok()
            .and_then(Result::ok)
            .flatten()
            .unwrap_or_else(|| panic!("the daemon stopped before it listened"));
        if let Some(rest) = line.split("address=").nth(1) {
            break rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not listen within 30 s"
        );
    };
    // Keep reading, so the daemon never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Daemon {
        child,
        base: format!("http://{address}"),
    }
}

fn write_config(dir: &std::path::Path, wecom: &WecomSim, jdy: &JdySim) {
    let job = JOB
        .replacen(
            "# base_url = \"https://qyapi.weixin.qq.com\"",
            &format!("base_url = \"{}\" #", wecom.base_url()),
            1,
        )
        .replacen(
            "# base_url = \"https://api.jiandaoyun.com\"",
            &format!("base_url = \"{}\" #", jdy.base_url()),
            1,
        );
    let job = format!(
        "{job}\n[source.limits]\n\"checkin/getcheckin_monthdata\" = \"600/min\"\n\
         [target.limits]\n\"data/batch_create\" = \"10/s\"\n\"data/list\" = \"30/s\"\n"
    );
    let job = job.replacen("schedule = ", "# schedule = ", 1);
    let job = format!("schedule = \"0 0 3 1 1 *\"\n{job}");
    std::fs::create_dir_all(dir.join("jobs")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(dir.join("mappings")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join("jobs/wecom_monthly.toml"), job).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join("mappings/wecom_monthly.toml"), MAPPING)
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.join("attendsync.toml"),
        "[server]\nlisten = \"127.0.0.1:0\"\ntoken = \"${ATTENDSYNC_API_TOKEN}\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

async fn simulators(employees: usize) -> (WecomSim, JdySim) {
    let org = Org::generate_in(employees, employees.div_ceil(10).max(1), 7);
    let minute = Duration::from_secs(60);
    let wecom = WecomSim::start(
        org,
        WecomSimConfig {
            corp_id: CORP_ID.into(),
            secret: SECRET.into(),
            latency: Duration::from_millis(20),
            limits: vec![("checkin/getcheckin_monthdata".into(), 600, minute)],
            ..WecomSimConfig::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let mapping = Mapping::parse(&SourceFile::new("mappings/wecom_monthly.toml", MAPPING))
        .unwrap_or_else(|e| panic!("the shipped mapping must parse: {e:?}"));
    let jdy = JdySim::start(JdySimConfig {
        api_key: API_KEY.into(),
        app_id: "6399c24287cae90008d24e0b".into(),
        entry_id: "64093d8613931a00085bb2f4".into(),
        widgets: attendsync::app::demo::widgets_of_mapping(&mapping),
        latency: Duration::from_millis(20),
        ..JdySimConfig::default()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    (wecom, jdy)
}

/// One burst: `good` requests with the token over the read endpoints and
/// `bad` with a wrong one, all at once. Latencies of the good ones, and how
/// many answers were not what they should be.
async fn burst(
    http: &reqwest::Client,
    base: &str,
    run: i64,
    good: usize,
    bad: usize,
) -> (Vec<Duration>, usize) {
    let paths = [
        "/api/v1/jobs".to_string(),
        "/api/v1/jobs/wecom_monthly/months".to_string(),
        "/metrics".to_string(),
        "/healthz".to_string(),
        format!("/api/v1/runs/{run}"),
    ];
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..good + bad {
        let (http, url) = (http.clone(), format!("{base}{}", paths[i % paths.len()]));
        let token = if i < good {
            TOKEN
        } else {
            "not-the-token-0123456789"
        };
        let expected = if i < good || url.ends_with("/healthz") {
            200
        } else {
            401
        };
        tasks.spawn(async move {
            let started = Instant::now();
            let status = http
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .map(|a| a.status().as_u16());
            (
                i < good,
                started.elapsed(),
                status.is_ok_and(|s| s == expected),
            )
        });
    }
    let (mut latencies, mut unexpected) = (Vec::new(), 0);
    while let Some(Ok((good, took, ok))) = tasks.join_next().await {
        if good {
            latencies.push(took);
        }
        unexpected += usize::from(!ok);
    }
    (latencies, unexpected)
}

async fn one_case(args: &Args, load: bool) -> Outcome {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (wecom, jdy) = simulators(args.employees).await;
    write_config(dir.path(), &wecom, &jdy);
    let mut daemon = start_daemon(dir.path()).await;
    let http = attendsync::http::client(Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let answer: Value = http
        .post(format!("{}/api/v1/jobs/wecom_monthly/runs", daemon.base))
        .bearer_auth(TOKEN)
        .json(&json!({"month": MONTH}))
        .send()
        .await
        .and_then(|a| a.error_for_status())
        .unwrap_or_else(|e| panic!("request the run: {e}"))
        .json()
        .await
        .unwrap_or_default();
    let run = answer["run"]
        .as_i64()
        .unwrap_or_else(|| panic!("no run id: {answer}"));
    let (mut latencies, mut unexpected, mut bursts) = (Vec::new(), 0, 0);
    let mut next_burst = Instant::now() + Duration::from_secs(2);
    let deadline = Instant::now() + Duration::from_secs(1800);
    let wall = loop {
        let state: Value = match http
            .get(format!("{}/api/v1/runs/{run}", daemon.base))
            .bearer_auth(TOKEN)
            .send()
            .await
        {
            Ok(a) => a.json().await.unwrap_or_default(),
            Err(_) => Value::Null,
        };
        if state["state"] == "done" {
            break started.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "the run did not end within 30 min: {state}"
        );
        if load && Instant::now() >= next_burst {
            let (l, u) = burst(&http, &daemon.base, run, args.requests, args.bad).await;
            latencies.extend(l);
            unexpected += u;
            bursts += 1;
            next_burst = Instant::now() + Duration::from_secs(2);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let peak_rss_kib = daemon.child.id().map_or(0, peak_rss);
    let stop = terminate(&mut daemon).await;
    let rows = jdy.records();
    let keys: std::collections::HashSet<String> = rows
        .iter()
        .map(|r| format!("{}|{}", r["userid"], r["month"]))
        .collect();
    Outcome {
        wall,
        latencies,
        unexpected,
        bursts,
        records: keys.len(),
        duplicates: rows.len() - keys.len(),
        peak_rss_kib,
        stop,
    }
}

fn peak_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// SIGTERM; how long the daemon took to exit.
async fn terminate(daemon: &mut Daemon) -> Duration {
    let started = Instant::now();
    if let Some(pid) = daemon.child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), daemon.child.wait()).await;
    started.elapsed()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    // `cargo test --all-targets` runs bench targets too, without `--bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("benches/api_load: not run without --bench (use `cargo bench --bench api_load`)");
        return;
    }
    let args = args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    runtime.block_on(async {
        eprintln!("baseline: a first sync of {} employees, no API load", args.employees);
        let quiet = one_case(&args, false).await;
        eprintln!("under load: {} + {} bad-token requests every 2 s", args.requests, args.bad);
        let loaded = one_case(&args, true).await;
        println!("| case | sync wall | ÷ undisturbed | API requests | p50 | p99 | max | unexpected answers | records | held twice | daemon peak RSS | SIGTERM to exit |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
        for (name, o) in [("undisturbed", &quiet), ("under load", &loaded)] {
            let mut sorted = o.latencies.clone();
            sorted.sort();
            let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
            println!(
                "| {name} | {:.1} s | {:.3} | {} in {} bursts | {} | {} | {} | {} | {} of {} | {} | {:.0} MiB | {:.2} s |",
                o.wall.as_secs_f64(),
                o.wall.as_secs_f64() / quiet.wall.as_secs_f64(),
                o.latencies.len() + o.bursts * args.bad,
                o.bursts,
                ms(percentile(&sorted, 0.5)),
                ms(percentile(&sorted, 0.99)),
                ms(sorted.last().copied().unwrap_or_default()),
                o.unexpected,
                o.records,
                args.employees,
                o.duplicates,
                o.peak_rss_kib as f64 / 1024.0,
                o.stop.as_secs_f64(),
            );
        }
    });
}
