//! Throughput benchmark: the release binary against the in-process simulators,
//! with realistic (scaled) quotas and added latency. See `docs/benchmarks.md`.
//!
//! ```text
//! cargo bench --bench sync -- [--sizes 2000,20000,200000] [--sources wecom,dingtalk]
//!     [--latency-ms 20] [--dingtalk-rate 200] [--wecom-monthdata-rate 600]
//!     [--out target/bench-sync.md]
//! ```
//!
//! For every source and size: a first run of one past month into an empty form,
//! then a second run over the unchanged month. The binary runs as a child
//! process, started through a small launcher (this binary with `--launch`); its
//! wall time, peak RSS and CPU time are measured with `wait4`, so the
//! simulators (in this process) are not counted. Calls, quota violations and
//! injected throttles come from the simulators' logs.
//!
//! `cargo test --all-targets` also builds and starts this target, without
//! `--bench`: it then returns at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use attendsync::config::SourceFile;
use attendsync::mapping::Mapping;
use attendsync_sim::{
    CallRecord, DingtalkSim, DingtalkSimConfig, JdySim, JdySimConfig, Org, WecomSim,
    WecomSimConfig, GLOBAL_LIMIT,
};

const MONTH: &str = "2026-10";
const SEED: u64 = 7;
const CORP_ID: &str = "ww-bench-corp";
const SECRET: &str = "bench-checkin-secret-0123456789abcdef";
const APP_KEY: &str = "ding-bench-appkey";
const APP_SECRET: &str = "DingSecret-bench-0123456789abcdef";
const API_KEY: &str = "jdy-bench-key-0123456789";
const APP_ID: &str = "6399c24287cae90008d24e0b";
/// The form ids of the shipped jobs.
const WECOM_ENTRY_ID: &str = "64093d8613931a00085bb2f4";
const DINGTALK_ENTRY_ID: &str = "64093d8613931a00085bb2f5";

const WECOM_JOB: &str = include_str!("../jobs/wecom_monthly.toml");
const WECOM_MAPPING: &str = include_str!("../mappings/wecom_monthly.toml");
const DINGTALK_JOB: &str = include_str!("../jobs/dingtalk_monthly.toml");
const DINGTALK_MAPPING: &str = include_str!("../mappings/dingtalk_monthly.toml");

/// WeCom's per-API cap (docs/vendors/wecom.md "Limits"), used for the contacts endpoints.
const WECOM_API_CAP_PER_MIN: u32 = 10_000;
/// `getcheckin_monthdata`: documented 60/min, scaled ×10 by default to keep runs short.
const WECOM_MONTHDATA_PER_MIN: u32 = 600;
/// DingTalk's documented per-API quota (standard edition), calls per second.
const DINGTALK_DOCUMENTED_RATE: u32 = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Wecom,
    Dingtalk,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Wecom => "wecom",
            Kind::Dingtalk => "dingtalk",
        }
    }
}

struct Args {
    sizes: Vec<usize>,
    sources: Vec<Kind>,
    latency: Duration,
    dingtalk_rate: u32,
    /// WeCom `getcheckin_monthdata` calls per minute.
    wecom_monthdata_rate: u32,
    out: PathBuf,
    /// Keep each case's config dir (job, database, the runs' stdout and stderr).
    keep: bool,
    /// A command the binary is run under, e.g. `perf record -g --` (diagnosis only:
    /// the figures are then those of the wrapper).
    wrap: Vec<String>,
}

fn parse_args() -> Result<Option<Args>, String> {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    if !raw.iter().any(|a| a == "--bench") {
        return Ok(None);
    }
    let mut args = Args {
        sizes: vec![2_000, 20_000, 200_000],
        sources: vec![Kind::Wecom, Kind::Dingtalk],
        latency: Duration::from_millis(20),
        dingtalk_rate: 200,
        wecom_monthdata_rate: WECOM_MONTHDATA_PER_MIN,
        out: Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-sync.md"),
        keep: false,
        wrap: Vec::new(),
    };
    let mut it = raw.into_iter().filter(|a| a != "--bench");
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--sizes" => {
                args.sizes = value()?
                    .split(',')
                    .map(|s| s.trim().replace('_', "").parse::<usize>())
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("--sizes: {e}"))?
            }
            "--sources" => {
                args.sources = value()?
                    .split(',')
                    .map(|s| match s.trim() {
                        "wecom" => Ok(Kind::Wecom),
                        "dingtalk" => Ok(Kind::Dingtalk),
                        other => Err(format!("--sources: unknown source {other:?}")),
                    })
                    .collect::<Result<_, _>>()?
            }
            "--latency-ms" => {
                let ms: u64 = value()?.parse().map_err(|e| format!("--latency-ms: {e}"))?;
                args.latency = Duration::from_millis(ms);
            }
            "--dingtalk-rate" => {
                args.dingtalk_rate = value()?
                    .parse()
                    .map_err(|e| format!("--dingtalk-rate: {e}"))?
            }
            "--wecom-monthdata-rate" => {
                args.wecom_monthdata_rate = value()?
                    .parse()
                    .map_err(|e| format!("--wecom-monthdata-rate: {e}"))?
            }
            "--out" => args.out = PathBuf::from(value()?),
            "--keep" => args.keep = true,
            "--wrap" => args.wrap = value()?.split_whitespace().map(str::to_owned).collect(),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.dingtalk_rate == 0 || args.wecom_monthdata_rate == 0 {
        return Err("--dingtalk-rate and --wecom-monthdata-rate must be at least 1".into());
    }
    Ok(Some(args))
}

/// What `wait4` tells about one finished child.
struct Usage {
    wall: Duration,
    exit: i32,
    max_rss_kib: i64,
    user: Duration,
    system: Duration,
}

/// Runs `cmd` and measures it with `wait4`.
fn run_measured(mut cmd: std::process::Command) -> Usage {
    let start = Instant::now();
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let pid = child.id() as libc::pid_t;
    // Reaped here by wait4, which also gives the child's own resource usage.
    drop(child);
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: plain syscall on our own child's pid with valid pointers.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    Usage {
        wall,
        exit: if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1
        },
        max_rss_kib: usage.ru_maxrss,
        user: tv(usage.ru_utime),
        system: tv(usage.ru_stime),
    }
}

/// `--launch FILE PROGRAM ARGS…`: runs the program, measured, and writes the figures
/// to FILE. The benchmark starts the binary through this small process because on
/// Linux a child's `ru_maxrss` also counts the peak RSS of the process it was
/// spawned from (exec keeps the high-water mark of the address space it replaces,
/// the parent's with vfork/posix_spawn): spawned straight from the benchmark,
/// whose simulators hold the whole organisation and form, the binary would be
/// charged with their memory.
fn launch(args: &[String]) {
    let [out, program, rest @ ..] = args else {
        eprintln!("--launch FILE PROGRAM [ARGS…]");
        std::process::exit(2);
    };
    let mut cmd = std::process::Command::new(program);
    cmd.args(rest);
    let u = run_measured(cmd);
    let text = format!(
        "{} {} {} {} {}\n",
        u.wall.as_nanos(),
        u.exit,
        u.max_rss_kib,
        u.user.as_micros(),
        u.system.as_micros()
    );
    std::fs::write(out, text).unwrap_or_else(|e| panic!("write {out}: {e}"));
}

fn main() {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    if raw.first().map(String::as_str) == Some("--launch") {
        launch(&raw[1..]);
        return;
    }
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("benches/sync.rs: not run without --bench (use `cargo bench --bench sync`)");
            return;
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("tokio runtime: {e}"));
    runtime.block_on(bench(args));
}

/// One quota of a simulator: `(endpoint or "*", calls, period)`.
type Quota = (String, u32, Duration);

fn rate_text(calls: u32, period: Duration) -> String {
    if period == Duration::from_secs(60) {
        format!("{calls}/min")
    } else if period == Duration::from_secs(1) {
        format!("{calls}/s")
    } else {
        format!("{calls}/{}s", period.as_secs_f64())
    }
}

/// Calls per endpoint in a slice of a call log.
fn count(log: &[CallRecord]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in log {
        *out.entry(r.endpoint.clone()).or_insert(0) += 1;
    }
    out
}

/// One endpoint's share of a run.
struct EndpointRow {
    vendor: &'static str,
    endpoint: String,
    calls: usize,
    quota: Option<(u32, Duration)>,
    /// calls ÷ allowed rate, seconds.
    bound: Option<f64>,
    /// First and last arrival, seconds after the child was started.
    first: f64,
    last: f64,
    /// The smallest gap between two arrivals, milliseconds.
    min_gap_ms: Option<f64>,
    /// For a quota of `n` calls per period: the shortest span of `n + 1`
    /// consecutive arrivals, seconds (below the period means a window held one
    /// call too many, whether or not the simulator refused it).
    tightest: Option<f64>,
}

/// Arrival-time figures of one endpoint: (smallest gap in ms, tightest span of
/// `calls + 1` arrivals in s).
fn spacing(times: &[f64], quota: Option<(u32, Duration)>) -> (Option<f64>, Option<f64>) {
    let min_gap = times
        .windows(2)
        .map(|w| (w[1] - w[0]) * 1000.0)
        .fold(None, |a: Option<f64>, g| Some(a.map_or(g, |a| a.min(g))));
    let tightest = quota.and_then(|(n, _)| {
        times
            .windows(n as usize + 1)
            .map(|w| w[n as usize] - w[0])
            .fold(None, |a: Option<f64>, s| Some(a.map_or(s, |a| a.min(s))))
    });
    (min_gap, tightest)
}

/// What one simulator saw during one run.
struct VendorCalls {
    vendor: &'static str,
    log: Vec<CallRecord>,
    quotas: Vec<Quota>,
}

impl VendorCalls {
    fn rows(&self, start: Instant) -> Vec<EndpointRow> {
        let since = |t: Instant| t.saturating_duration_since(start).as_secs_f64();
        let quota_of = |e: &str| {
            self.quotas
                .iter()
                .find(|(q, _, _)| q == e)
                .map(|(_, c, p)| (*c, *p))
        };
        let bound = |calls: usize, q: Option<(u32, Duration)>| {
            q.map(|(c, p)| calls as f64 * p.as_secs_f64() / f64::from(c))
        };
        let mut rows: Vec<EndpointRow> = count(&self.log)
            .into_iter()
            .map(|(endpoint, calls)| {
                let times: Vec<f64> = self
                    .log
                    .iter()
                    .filter(|r| r.endpoint == endpoint)
                    .map(|r| since(r.at))
                    .collect();
                let quota = quota_of(&endpoint);
                let (min_gap_ms, tightest) = spacing(&times, quota);
                EndpointRow {
                    min_gap_ms,
                    tightest,
                    vendor: self.vendor,
                    calls,
                    quota,
                    bound: bound(calls, quota),
                    first: times.first().copied().unwrap_or(0.0),
                    last: times.last().copied().unwrap_or(0.0),
                    endpoint,
                }
            })
            .collect();
        if let (Some(q), false) = (quota_of(GLOBAL_LIMIT), self.log.is_empty()) {
            let times: Vec<f64> = self.log.iter().map(|r| since(r.at)).collect();
            let (min_gap_ms, tightest) = spacing(&times, Some(q));
            rows.push(EndpointRow {
                min_gap_ms,
                tightest,
                vendor: self.vendor,
                endpoint: "* (all endpoints)".into(),
                calls: self.log.len(),
                quota: Some(q),
                bound: bound(self.log.len(), Some(q)),
                first: self.log.first().map_or(0.0, |r| since(r.at)),
                last: self.log.last().map_or(0.0, |r| since(r.at)),
            });
        }
        rows
    }
}

/// The simulators of one source and size.
enum SourceSim {
    Wecom(WecomSim),
    Dingtalk(DingtalkSim),
}

struct Bench {
    kind: Kind,
    source: SourceSim,
    source_quotas: Vec<Quota>,
    jdy: JdySim,
    jdy_quotas: Vec<Quota>,
    dir: tempfile::TempDir,
}

/// What one run of the binary cost and did.
struct RunResult {
    wall: Duration,
    exit: i32,
    max_rss_kib: i64,
    user: Duration,
    system: Duration,
    /// Rows of the run's calls, per endpoint, both vendors.
    rows: Vec<EndpointRow>,
    source_calls: usize,
    jdy_calls: usize,
    jdy_writes: usize,
    violations: usize,
    injected: usize,
    /// Throttling answers the client reported receiving (its summary's `throttled`).
    throttled: u64,
    /// The same, per endpoint, where not zero.
    throttled_by: Vec<(String, u64)>,
    counts: serde_json::Value,
}

impl RunResult {
    fn cpu(&self) -> Duration {
        self.user + self.system
    }

    /// The largest calls ÷ allowed rate over the given vendors' endpoints.
    fn bound(&self, vendors: &[&str]) -> (f64, String) {
        self.rows
            .iter()
            .filter(|r| vendors.contains(&r.vendor))
            .filter_map(|r| r.bound.map(|b| (b, format!("{} {}", r.vendor, r.endpoint))))
            .fold((0.0, "-".to_string()), |a, b| if b.0 > a.0 { b } else { a })
    }

    fn calls(&self, endpoint: &str) -> usize {
        self.rows
            .iter()
            .filter(|r| r.endpoint == endpoint)
            .map(|r| r.calls)
            .sum()
    }
}

fn form_widgets(mapping_text: &str, file: &str) -> Vec<(String, String)> {
    let mapping = Mapping::parse(&SourceFile::new(file, mapping_text))
        .unwrap_or_else(|e| panic!("the shipped mapping {file} must parse: {e:?}"));
    attendsync::demo::widgets_of_mapping(&mapping)
}

const FAST_RETRY: &str = r#"max_attempts = 10
initial_wait = "20ms"
max_wait = "200ms"
throttle_wait = "50ms"
"#;

fn limits_toml(quotas: &[Quota], extra: &[(&str, String)]) -> String {
    let mut out = String::new();
    for (endpoint, calls, period) in quotas {
        if endpoint != GLOBAL_LIMIT {
            out.push_str(&format!(
                "\"{endpoint}\" = \"{}\"\n",
                rate_text(*calls, *period)
            ));
        }
    }
    for (k, v) in extra {
        out.push_str(&format!("\"{k}\" = \"{v}\"\n"));
    }
    out
}

impl Bench {
    async fn start(kind: Kind, employees: usize, args: &Args) -> Bench {
        let org = Org::generate(employees, SEED);
        let minute = Duration::from_secs(60);
        let (source, source_quotas, mapping_text, mapping_file) = match kind {
            Kind::Wecom => {
                let quotas: Vec<Quota> = vec![
                    (
                        "checkin/getcheckin_monthdata".into(),
                        args.wecom_monthdata_rate,
                        minute,
                    ),
                    ("gettoken".into(), 1000, minute),
                    (
                        "department/simplelist".into(),
                        WECOM_API_CAP_PER_MIN,
                        minute,
                    ),
                    ("user/simplelist".into(), WECOM_API_CAP_PER_MIN, minute),
                ];
                let sim = WecomSim::start(
                    org,
                    WecomSimConfig {
                        corp_id: CORP_ID.into(),
                        secret: SECRET.into(),
                        limits: quotas.clone(),
                        latency: args.latency,
                        ..WecomSimConfig::default()
                    },
                )
                .await
                .unwrap_or_else(|e| panic!("start the WeCom simulator: {e}"));
                (
                    SourceSim::Wecom(sim),
                    quotas,
                    WECOM_MAPPING,
                    "wecom_monthly.toml",
                )
            }
            Kind::Dingtalk => {
                let mut config = DingtalkSimConfig {
                    app_key: APP_KEY.into(),
                    app_secret: APP_SECRET.into(),
                    latency: args.latency,
                    ..DingtalkSimConfig::default().with_endpoint_rate(args.dingtalk_rate)
                };
                // A run with the per-API quotas scaled stands for a run at the
                // documented ones, so the IP-wide limit scales with them: left
                // as it is, it would bind in the scaled run (four APIs at ×10
                // exceed it) though it never does at the real quotas.
                for (endpoint, calls, _) in &mut config.limits {
                    if endpoint == GLOBAL_LIMIT {
                        *calls = *calls * args.dingtalk_rate / DINGTALK_DOCUMENTED_RATE;
                    }
                }
                let quotas = config.limits.clone();
                let sim = DingtalkSim::start(org, config)
                    .await
                    .unwrap_or_else(|e| panic!("start the DingTalk simulator: {e}"));
                (
                    SourceSim::Dingtalk(sim),
                    quotas,
                    DINGTALK_MAPPING,
                    "dingtalk_monthly.toml",
                )
            }
        };
        let jdy_config = JdySimConfig {
            api_key: API_KEY.into(),
            app_id: APP_ID.into(),
            entry_id: match kind {
                Kind::Wecom => WECOM_ENTRY_ID.into(),
                Kind::Dingtalk => DINGTALK_ENTRY_ID.into(),
            },
            widgets: form_widgets(mapping_text, mapping_file),
            latency: args.latency,
            ..JdySimConfig::default()
        };
        let jdy_quotas = jdy_config.limits.clone();
        let jdy = JdySim::start(jdy_config)
            .await
            .unwrap_or_else(|e| panic!("start the Jiandaoyun simulator: {e}"));
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let bench = Bench {
            kind,
            source,
            source_quotas,
            jdy,
            jdy_quotas,
            dir,
        };
        bench.write(&format!("mappings/{mapping_file}"), mapping_text);
        bench.write(&format!("jobs/{}", mapping_file), &bench.job());
        bench
    }

    fn write(&self, rel: &str, text: &str) {
        let path = self.dir.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir {parent:?}: {e}"));
        }
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {path:?}: {e}"));
    }

    fn source_url(&self) -> String {
        match &self.source {
            SourceSim::Wecom(s) => s.base_url(),
            SourceSim::Dingtalk(s) => s.base_url(),
        }
    }

    /// The shipped job, pointed at the simulators, with the simulators' quotas as
    /// its limits and fast retries.
    fn job(&self) -> String {
        let (shipped, source_url, extra_source) = match self.kind {
            // WeCom has no vendor-wide quota; attendsync's own default total pace
            // (20/s) is raised to the per-API cap so only the quotas bind.
            Kind::Wecom => (
                WECOM_JOB,
                "# base_url = \"https://qyapi.weixin.qq.com\"",
                vec![(
                    "total",
                    rate_text(WECOM_API_CAP_PER_MIN, Duration::from_secs(60)),
                )],
            ),
            // attendsync's own total pace is the IP-wide limit: its default
            // unless the simulator's is scaled.
            Kind::Dingtalk => (
                DINGTALK_JOB,
                "# base_url = \"https://oapi.dingtalk.com\"",
                self.source_quotas
                    .iter()
                    .filter(|q| {
                        q.0 == GLOBAL_LIMIT
                            && !DingtalkSimConfig::default().limits.contains(q)
                            && q.2.as_secs() > 0
                    })
                    .map(|(_, c, p)| ("total", format!("{}/s", u64::from(*c) / p.as_secs())))
                    .collect(),
            ),
        };
        let target_url = "# base_url = \"https://api.jiandaoyun.com\"";
        assert!(shipped.contains(source_url) && shipped.contains(target_url));
        let job = shipped
            .replacen(
                source_url,
                &format!("base_url = \"{}\" #", self.source_url()),
                1,
            )
            .replacen(
                target_url,
                &format!("base_url = \"{}\" #", self.jdy.base_url()),
                1,
            )
            // The benchmark is not about the monthly call budget.
            .replacen(
                "monthly_call_budget = 5000",
                "monthly_call_budget = 100000000",
                1,
            );
        let jdy_total = self
            .jdy_quotas
            .iter()
            .find(|(e, _, _)| e == GLOBAL_LIMIT)
            .map(|(_, c, p)| vec![("total", rate_text(*c, *p))])
            .unwrap_or_default();
        format!(
            "{job}\n[source.limits]\n{}\n[source.retry]\n{FAST_RETRY}\n[target.limits]\n{}\n[target.retry]\n{FAST_RETRY}",
            limits_toml(&self.source_quotas, &extra_source),
            limits_toml(&self.jdy_quotas, &jdy_total),
        )
    }

    fn source_log(&self) -> Vec<CallRecord> {
        match &self.source {
            SourceSim::Wecom(s) => s.call_log(),
            SourceSim::Dingtalk(s) => s.call_log(),
        }
    }

    fn faults(&self) -> (usize, usize) {
        let (v, i) = match &self.source {
            SourceSim::Wecom(s) => (s.quota_violations(), s.injected_throttles()),
            SourceSim::Dingtalk(s) => (s.quota_violations(), s.injected_throttles()),
        };
        (
            v + self.jdy.quota_violations(),
            i + self.jdy.injected_throttles(),
        )
    }

    /// Runs the binary once and measures it and what the simulators saw.
    async fn run(&self, label: &str, wrap: &[String]) -> RunResult {
        let (source_before, jdy_before) = (self.source_log().len(), self.jdy.call_log().len());
        let jdy_writes_before = self.jdy.write_calls();
        let (violations_before, injected_before) = self.faults();
        let stdout_path = self.dir.path().join(format!("{label}.stdout"));
        let stderr_path = self.dir.path().join(format!("{label}.stderr"));
        let file =
            |p: &Path| std::fs::File::create(p).unwrap_or_else(|e| panic!("create {p:?}: {e}"));
        let binary = env!("CARGO_BIN_EXE_attendsync");
        let usage_path = self.dir.path().join(format!("{label}.usage"));
        let launcher = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
        let mut cmd = std::process::Command::new(launcher);
        cmd.arg("--launch")
            .arg(&usage_path)
            .args(wrap)
            .arg(binary)
            .args(["run", "--month", MONTH, "--json", "--config-dir"])
            .arg(self.dir.path())
            .env_remove("ATTENDSYNC_DB")
            .env("WECOM_CORP_ID", CORP_ID)
            .env("WECOM_CHECKIN_SECRET", SECRET)
            .env("DINGTALK_APP_KEY", APP_KEY)
            .env("DINGTALK_APP_SECRET", APP_SECRET)
            .env("JDY_API_KEY", API_KEY)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file(&stdout_path))
            .stderr(file(&stderr_path));
        let start = Instant::now();
        // The launcher measures the binary; it ends right after it.
        tokio::task::spawn_blocking(move || run_measured(cmd))
            .await
            .unwrap_or_else(|e| panic!("launcher task: {e}"));
        let figures = std::fs::read_to_string(&usage_path)
            .unwrap_or_else(|e| panic!("read {usage_path:?}: {e}"));
        let n: Vec<i64> = figures
            .split_whitespace()
            .filter_map(|t| t.parse().ok())
            .collect();
        let [wall_ns, exit, max_rss_kib, user_us, system_us] = n[..] else {
            panic!("unreadable launcher figures {figures:?}");
        };
        let us = |v: i64| Duration::from_micros(v.max(0) as u64);
        let (wall, exit) = (Duration::from_nanos(wall_ns.max(0) as u64), exit as i32);
        let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
        let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_default();
        if exit != 0 {
            let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
            eprintln!(
                "attendsync exited {exit}; stdout:\n{stdout}\nstderr (last lines):\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        let job = &report["jobs"][0];
        let throttled: u64 = job["calls"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(_, s)| s["throttled"].as_u64())
            .sum();
        let throttled_by = job["calls"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(e, s)| Some((e.clone(), s["throttled"].as_u64()?)))
            .filter(|(_, n)| *n > 0)
            .collect();
        let source_log = self.source_log().split_off(source_before);
        let jdy_log = self.jdy.call_log().split_off(jdy_before);
        let (violations, injected) = self.faults();
        let source_vendor = self.kind.name();
        let mut rows = VendorCalls {
            vendor: source_vendor,
            log: source_log.clone(),
            quotas: self.source_quotas.clone(),
        }
        .rows(start);
        rows.extend(
            VendorCalls {
                vendor: "jiandaoyun",
                log: jdy_log.clone(),
                quotas: self.jdy_quotas.clone(),
            }
            .rows(start),
        );
        RunResult {
            wall,
            exit,
            max_rss_kib,
            user: us(user_us),
            system: us(system_us),
            rows,
            source_calls: source_log.len(),
            jdy_calls: jdy_log.len(),
            jdy_writes: self.jdy.write_calls() - jdy_writes_before,
            violations: violations - violations_before,
            injected: injected - injected_before,
            throttled,
            throttled_by,
            counts: job["months"][0].clone(),
        }
    }
}

/// The figures of one source and size, for the tables.
struct Case {
    kind: Kind,
    employees: usize,
    /// [`reference_cpu`], just before the first run.
    reference: Duration,
    first: RunResult,
    second: RunResult,
    /// Report calls expected by the issue's formula.
    expected_report_calls: usize,
    report_endpoint: &'static str,
}

/// CPU time of a fixed workload like attendsync's own (JSON read into trees and
/// written out again, with allocations), taken on one thread of this process just
/// before a case runs. On a shared host the same binary's CPU time drifts with the
/// host's state (by a third within an hour here); this figure drifts with it, so
/// CPU figures taken apart are compared through it.
fn reference_cpu() -> Duration {
    let reports: Vec<serde_json::Value> = (0..500)
        .map(|i| {
            serde_json::json!({
                "base_info": {"acctid": format!("user{i:05}"), "name": format!("张三{i}"), "departs_name": "研发部/平台组"},
                "summary_info": {"work_days": 21, "regular_days": 20, "except_days": 1, "standard_work_sec": 604_800, "work_sec": 600_000 + i},
                "sp_items": (0..5).map(|k| serde_json::json!({"type": 1, "vacation_id": k, "count": k, "duration": 28_800 * k, "time_type": 0, "name": "年假"})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let text = serde_json::to_string(&reports).unwrap_or_default();
    let start = thread_cpu_time();
    for _ in 0..40 {
        let tree: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        std::hint::black_box(serde_json::to_string(&tree).unwrap_or_default());
    }
    thread_cpu_time().saturating_sub(start)
}

fn thread_cpu_time() -> Duration {
    // SAFETY: an all-zero timespec is valid; clock_gettime fills it in.
    let mut t: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid clock id and a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// `user + sys` seconds.
fn cpu_split(r: &RunResult) -> String {
    format!(
        "{:.2} + {:.2}",
        r.user.as_secs_f64(),
        r.system.as_secs_f64()
    )
}

fn secs(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64())
}

fn mib(kib: i64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn ok(b: bool) -> &'static str {
    if b {
        "✓"
    } else {
        "✗"
    }
}

async fn bench(args: Args) {
    let mut cases = Vec::new();
    let total = Instant::now();
    for &kind in &args.sources {
        for &n in &args.sizes {
            eprintln!(
                "[{:>6.1}s] {} × {n}: starting the simulators",
                total.elapsed().as_secs_f64(),
                kind.name()
            );
            let bench = Bench::start(kind, n, &args).await;
            let reference = tokio::task::spawn_blocking(reference_cpu)
                .await
                .unwrap_or_else(|e| panic!("reference workload: {e}"));
            let first = bench.run("first", &args.wrap).await;
            eprintln!(
                "[{:>6.1}s] {} × {n}: first run {:.1} s (exit {}), second run…",
                total.elapsed().as_secs_f64(),
                kind.name(),
                first.wall.as_secs_f64(),
                first.exit
            );
            let second = bench.run("second", &args.wrap).await;
            eprintln!(
                "[{:>6.1}s] {} × {n}: second run {:.1} s (exit {})",
                total.elapsed().as_secs_f64(),
                kind.name(),
                second.wall.as_secs_f64(),
                second.exit
            );
            let (report_endpoint, expected_report_calls) = match kind {
                Kind::Wecom => ("checkin/getcheckin_monthdata", n.div_ceil(100)),
                // The shipped job: 8 columns → ⌈8/20⌉ = 1 getcolumnval per employee.
                Kind::Dingtalk => ("topapi/attendance/getcolumnval", n * 8usize.div_ceil(20)),
            };
            let case = Case {
                kind,
                employees: n,
                reference,
                first,
                second,
                expected_report_calls,
                report_endpoint,
            };
            println!("{}", case_detail(&case));
            cases.push(case);
            if args.keep {
                let dir = bench.dir.keep();
                eprintln!("kept {}", dir.display());
            }
            // The simulators of this case stop here.
        }
    }
    let text = tables(&cases, &args);
    println!("{text}");
    if let Some(parent) = args.out.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    match std::fs::write(&args.out, &text) {
        Ok(()) => eprintln!("results written to {}", args.out.display()),
        Err(e) => eprintln!("cannot write {}: {e}", args.out.display()),
    }
}

/// The per-endpoint table of one case.
fn case_detail(c: &Case) -> String {
    let mut out = format!(
        "\n#### {} × {} employees: calls per endpoint\n\n\
         | run | vendor | endpoint | calls | per employee-month | quota | calls ÷ rate (s) | first call (s) | last call (s) | smallest gap (ms) | tightest quota+1 calls (s) |\n\
         |---|---|---|---:|---:|---|---:|---:|---:|---:|---:|\n",
        c.kind.name(),
        c.employees
    );
    for (label, run) in [("first", &c.first), ("second", &c.second)] {
        for r in &run.rows {
            out.push_str(&format!(
                "| {label} | {} | {} | {} | {:.3} | {} | {} | {:.2} | {:.2} | {} | {} |\n",
                r.vendor,
                r.endpoint,
                r.calls,
                r.calls as f64 / c.employees as f64,
                r.quota.map_or("—".into(), |(n, p)| rate_text(n, p)),
                r.bound.map_or("—".into(), |b| format!("{b:.2}")),
                r.first,
                r.last,
                r.min_gap_ms.map_or("—".into(), |g| format!("{g:.1}")),
                r.tightest.map_or("—".into(), |t| format!("{t:.3}")),
            ));
        }
        for (endpoint, n) in &run.throttled_by {
            out.push_str(&format!(
                "\n{label} run: {n} throttling answer(s) on {endpoint}\n"
            ));
        }
    }
    out
}

fn tables(cases: &[Case], args: &Args) -> String {
    let mut out = format!(
        "Latency {} ms per request; WeCom monthdata quota {}/min; DingTalk per-API quota {}/s; \
         month {MONTH}.\n",
        args.latency.as_millis(),
        args.wecom_monthdata_rate,
        args.dingtalk_rate
    );
    for kind in [Kind::Wecom, Kind::Dingtalk] {
        let of_kind: Vec<&Case> = cases.iter().filter(|c| c.kind == kind).collect();
        if of_kind.is_empty() {
            continue;
        }
        out.push_str(&format!(
            "\n### {} → Jiandaoyun, first run (empty form)\n\n\
             | employees | wall (s) | quota-bound min (s) | bounding endpoint | wall ÷ min | report calls (expected) | batch_create (expected) | calls / employee-month | throttled answers / injected | quota violations | peak RSS (MiB) | CPU user + sys (s) | CPU ÷ wall | reference (ms) | exit |\n\
             |---:|---:|---:|---|---:|---|---|---:|---|---:|---:|---:|---:|---:|---:|\n",
            kind.name()
        ));
        for c in &of_kind {
            let r = &c.first;
            let (min, by) = r.bound(&[kind.name(), "jiandaoyun"]);
            let created = r.counts["created"].as_u64().unwrap_or(0) as usize;
            let batches = r.calls("data/batch_create");
            let report = r.calls(c.report_endpoint);
            out.push_str(&format!(
                "| {} | {} | {:.1} | {} | {:.3} | {} ({}) {} | {} ({}) {} | {:.3} | {} / {} {} | {} {} | {} | {} | {:.1} % | {} | {} |\n",
                c.employees,
                secs(r.wall),
                min,
                by,
                r.wall.as_secs_f64() / min,
                report,
                c.expected_report_calls,
                ok(report == c.expected_report_calls),
                batches,
                created.div_ceil(100),
                ok(batches == created.div_ceil(100)),
                (r.source_calls + r.jdy_calls) as f64 / c.employees as f64,
                r.throttled,
                r.injected,
                ok(r.throttled as usize <= r.injected),
                r.violations,
                ok(r.violations == 0),
                mib(r.max_rss_kib),
                cpu_split(r),
                100.0 * r.cpu().as_secs_f64() / r.wall.as_secs_f64(),
                c.reference.as_millis(),
                r.exit,
            ));
        }
        out.push_str(&format!(
            "\n### {} → Jiandaoyun, second run (nothing changed)\n\n\
             | employees | wall (s) | pull-alone min (s) | wall ÷ min | Jiandaoyun writes | Jiandaoyun calls (reads) | unchanged | throttled / violations | peak RSS (MiB) | CPU user + sys (s) | CPU ÷ wall | exit |\n\
             |---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|\n",
            kind.name()
        ));
        for c in &of_kind {
            let r = &c.second;
            let (min, _) = r.bound(&[kind.name()]);
            out.push_str(&format!(
                "| {} | {} | {:.1} | {:.3} | {} {} | {} | {} | {} / {} | {} | {} | {:.1} % | {} |\n",
                c.employees,
                secs(r.wall),
                min,
                r.wall.as_secs_f64() / min,
                r.jdy_writes,
                ok(r.jdy_writes == 0),
                r.jdy_calls,
                r.counts["unchanged"].as_u64().unwrap_or(0),
                r.throttled,
                r.violations,
                mib(r.max_rss_kib),
                cpu_split(r),
                100.0 * r.cpu().as_secs_f64() / r.wall.as_secs_f64(),
                r.exit,
            ));
        }
    }
    for c in cases {
        out.push_str(&case_detail(c));
    }
    out
}
