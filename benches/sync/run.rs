//! One source and size: starting its simulators, writing the job, and one
//! measured run of the binary.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use attendsync::config::SourceFile;
use attendsync::mapping::Mapping;
use attendsync_sim::{
    CallRecord, DingtalkSim, DingtalkSimConfig, JdySim, JdySimConfig, Org, WecomSim,
    WecomSimConfig, GLOBAL_LIMIT,
};

use crate::calls::{rate_text, EndpointRow, Quota, VendorCalls};
use crate::{
    run_measured, Args, Kind, SourceLimits, API_KEY, APP_ID, APP_KEY, APP_SECRET, CORP_ID,
    DINGTALK_DOCUMENTED_RATE, DINGTALK_ENTRY_ID, DINGTALK_JOB, DINGTALK_MAPPING, MONTH, SECRET,
    SEED, WECOM_API_CAP_PER_MIN, WECOM_ENTRY_ID, WECOM_JOB, WECOM_MAPPING,
};

/// The simulators of one source and size.
pub(crate) enum SourceSim {
    Wecom(WecomSim),
    Dingtalk(DingtalkSim),
}

pub(crate) struct Bench {
    pub(crate) kind: Kind,
    pub(crate) source: SourceSim,
    pub(crate) source_quotas: Vec<Quota>,
    pub(crate) jdy: JdySim,
    pub(crate) jdy_quotas: Vec<Quota>,
    pub(crate) dir: tempfile::TempDir,
    /// Which contacts limits the job file sets.
    pub(crate) source_limits: SourceLimits,
}

/// What one run of the binary cost and did.
pub(crate) struct RunResult {
    pub(crate) wall: Duration,
    pub(crate) exit: i32,
    pub(crate) max_rss_kib: i64,
    pub(crate) user: Duration,
    pub(crate) system: Duration,
    /// Rows of the run's calls, per endpoint, both vendors.
    pub(crate) rows: Vec<EndpointRow>,
    pub(crate) source_calls: usize,
    pub(crate) jdy_calls: usize,
    pub(crate) jdy_writes: usize,
    pub(crate) violations: usize,
    pub(crate) injected: usize,
    /// Throttling answers the client reported receiving (its summary's `throttled`).
    pub(crate) throttled: u64,
    /// The same, per endpoint, where not zero.
    pub(crate) throttled_by: Vec<(String, u64)>,
    pub(crate) counts: serde_json::Value,
}

impl RunResult {
    pub(crate) fn cpu(&self) -> Duration {
        self.user + self.system
    }

    /// The largest calls ÷ allowed rate over the given vendors' endpoints.
    pub(crate) fn bound(&self, vendors: &[&str]) -> (f64, String) {
        self.rows
            .iter()
            .filter(|r| vendors.contains(&r.vendor))
            .filter_map(|r| r.bound.map(|b| (b, format!("{} {}", r.vendor, r.endpoint))))
            .fold((0.0, "-".to_string()), |a, b| if b.0 > a.0 { b } else { a })
    }

    pub(crate) fn calls(&self, endpoint: &str) -> usize {
        self.rows
            .iter()
            .filter(|r| r.endpoint == endpoint)
            .map(|r| r.calls)
            .sum()
    }
}

pub(crate) fn form_widgets(mapping_text: &str, file: &str) -> Vec<(String, String)> {
    let mapping = Mapping::parse(&SourceFile::new(file, mapping_text))
        .unwrap_or_else(|e| panic!("the shipped mapping {file} must parse: {e:?}"));
    attendsync::app::demo::widgets_of_mapping(&mapping)
}

pub(crate) const FAST_RETRY: &str = r#"max_attempts = 10
initial_wait = "20ms"
max_wait = "200ms"
throttle_wait = "50ms"
"#;

pub(crate) fn limits_toml(quotas: &[Quota], extra: &[(&str, String)]) -> String {
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

/// The generated organisation of a case.
fn organisation(employees: usize, departments: Option<usize>) -> Org {
    match departments {
        Some(d) => Org::generate_in(employees, d, SEED),
        None => Org::generate(employees, SEED),
    }
}

impl Bench {
    /// `departments`: `None` for `Org::generate`'s ~n/15.
    pub(crate) async fn start(
        kind: Kind,
        employees: usize,
        departments: Option<usize>,
        args: &Args,
    ) -> Bench {
        let org = organisation(employees, departments);
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
            source_limits: args.source_limits,
        };
        bench.write(&format!("mappings/{mapping_file}"), mapping_text);
        bench.write(&format!("jobs/{}", mapping_file), &bench.job());
        bench
    }

    /// Each simulator adds up to `jitter` more latency to each request.
    pub(crate) fn vary_answer_times(&self, jitter: Duration) {
        self.jdy.set_latency_jitter(jitter);
        match &self.source {
            SourceSim::Wecom(s) => s.set_latency_jitter(jitter),
            SourceSim::Dingtalk(s) => s.set_latency_jitter(jitter),
        }
    }

    pub(crate) fn write(&self, rel: &str, text: &str) {
        let path = self.dir.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir {parent:?}: {e}"));
        }
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {path:?}: {e}"));
    }

    /// Calls per endpoint of one run, the source's then Jiandaoyun's.
    pub(crate) fn call_rows(
        &self,
        start: Instant,
        source_log: &[CallRecord],
        jdy_log: &[CallRecord],
    ) -> Vec<EndpointRow> {
        let mut rows = VendorCalls {
            vendor: self.kind.name(),
            log: source_log.to_vec(),
            quotas: self.source_quotas.clone(),
        }
        .rows(start);
        rows.extend(
            VendorCalls {
                vendor: "jiandaoyun",
                log: jdy_log.to_vec(),
                quotas: self.jdy_quotas.clone(),
            }
            .rows(start),
        );
        rows
    }

    pub(crate) fn source_url(&self) -> String {
        match &self.source {
            SourceSim::Wecom(s) => s.base_url(),
            SourceSim::Dingtalk(s) => s.base_url(),
        }
    }

    /// The shipped job, pointed at the simulators, with the simulators' quotas as
    /// its limits and fast retries.
    pub(crate) fn job(&self) -> String {
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
        let source_limits = match self.source_limits {
            SourceLimits::Scaled => limits_toml(&self.source_quotas, &extra_source),
            // attendsync's defaults for the contacts endpoints, the token and
            // WeCom's total; the report endpoints keep the simulator's quotas so
            // that the quota-bound minimum is the same as in a scaled run.
            SourceLimits::Default => {
                let report: Vec<Quota> = self
                    .source_quotas
                    .iter()
                    .filter(|q| !self.kind.contacts_endpoints().contains(&q.0.as_str()))
                    .cloned()
                    .collect();
                let total: Vec<(&str, String)> = match self.kind {
                    Kind::Wecom => Vec::new(),
                    Kind::Dingtalk => extra_source,
                };
                limits_toml(&report, &total)
            }
        };
        let jdy_total = self
            .jdy_quotas
            .iter()
            .find(|(e, _, _)| e == GLOBAL_LIMIT)
            .map(|(_, c, p)| vec![("total", rate_text(*c, *p))])
            .unwrap_or_default();
        format!(
            "{job}\n[source.limits]\n{}\n[source.retry]\n{FAST_RETRY}\n[target.limits]\n{}\n[target.retry]\n{FAST_RETRY}",
            source_limits,
            limits_toml(&self.jdy_quotas, &jdy_total),
        )
    }

    /// `{label}.calls.tsv` in the case's dir (kept with `--keep`): every call's
    /// arrival in seconds after the start, vendor, endpoint and outcome, for
    /// profiling where a run's time goes.
    pub(crate) fn write_log(
        &self,
        label: &str,
        start: Instant,
        source: &[CallRecord],
        jdy: &[CallRecord],
    ) {
        let mut rows: Vec<(f64, &str, &CallRecord)> = source
            .iter()
            .map(|r| (self.kind.name(), r))
            .chain(jdy.iter().map(|r| ("jiandaoyun", r)))
            .map(|(v, r)| (r.at.saturating_duration_since(start).as_secs_f64(), v, r))
            .collect();
        rows.sort_by(|a, b| a.0.total_cmp(&b.0));
        let text: String = rows
            .iter()
            .map(|(t, v, r)| format!("{t:.6}\t{v}\t{}\t{:?}\n", r.endpoint, r.outcome))
            .collect();
        self.write(&format!("{label}.calls.tsv"), &text);
    }

    pub(crate) fn source_log(&self) -> Vec<CallRecord> {
        match &self.source {
            SourceSim::Wecom(s) => s.call_log(),
            SourceSim::Dingtalk(s) => s.call_log(),
        }
    }

    pub(crate) fn faults(&self) -> (usize, usize) {
        let (v, i) = match &self.source {
            SourceSim::Wecom(s) => (s.quota_violations(), s.injected_throttles()),
            SourceSim::Dingtalk(s) => (s.quota_violations(), s.injected_throttles()),
        };
        (
            v + self.jdy.quota_violations(),
            i + self.jdy.injected_throttles(),
        )
    }

    /// The launcher command for one run, and the files it writes: its
    /// figures, the binary's stdout and its stderr.
    fn command(&self, label: &str, wrap: &[String]) -> (std::process::Command, [PathBuf; 3]) {
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
        (cmd, [usage_path, stdout_path, stderr_path])
    }

    /// Runs the binary once and measures it and what the simulators saw.
    pub(crate) async fn run(&self, label: &str, wrap: &[String]) -> RunResult {
        let (source_before, jdy_before) = (self.source_log().len(), self.jdy.call_log().len());
        let jdy_writes_before = self.jdy.write_calls();
        let (violations_before, injected_before) = self.faults();
        let (cmd, [usage_path, stdout_path, stderr_path]) = self.command(label, wrap);
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
        self.write_log(label, start, &source_log, &jdy_log);
        let rows = self.call_rows(start, &source_log, &jdy_log);
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
