//! Throughput benchmark: the release binary against the in-process simulators,
//! with realistic (scaled) quotas and added latency. See `docs/benchmarks.md`.
//!
//! ```text
//! cargo bench --bench sync -- [--sizes 2000,20000,200000] [--sources wecom,dingtalk]
//!     [--latency-ms 20] [--jitter-ms 0] [--dingtalk-rate 200] [--wecom-monthdata-rate 600]
//!     [--departments N] [--source-limits scaled|default] [--shapes 2000/40,20000/2000]
//!     [--no-plain] [--out target/bench-sync.md]
//! ```
//!
//! For every source and size: a first run of one past month into an empty form,
//! then a second run over the unchanged month, then the plain sequential client
//! (`plain.rs`) once, for comparison. The binary runs as a child
//! process, started through a small launcher (this binary with `--launch`); its
//! wall time, peak RSS and CPU time are measured with `wait4`, so the
//! simulators (in this process) are not counted. Calls, quota violations and
//! injected throttles come from the simulators' logs.
//!
//! `cargo test --all-targets` also builds and starts this target, without
//! `--bench`: it then returns at once.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod calls;
mod plain;
mod report;
mod run;

use report::{case_detail, reference_cpu, tables, Case};
use run::Bench;

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

const WECOM_JOB: &str = include_str!("../../jobs/wecom_monthly.toml");
const WECOM_MAPPING: &str = include_str!("../../mappings/wecom_monthly.toml");
const DINGTALK_JOB: &str = include_str!("../../jobs/dingtalk_monthly.toml");
const DINGTALK_MAPPING: &str = include_str!("../../mappings/dingtalk_monthly.toml");

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

    /// The endpoints `--source-limits default` leaves to attendsync's defaults:
    /// the directory listing and the token.
    fn contacts_endpoints(self) -> &'static [&'static str] {
        match self {
            Kind::Wecom => &["gettoken", "department/simplelist", "user/simplelist"],
            Kind::Dingtalk => &[
                "gettoken",
                "topapi/v2/department/listsub",
                "topapi/v2/user/list",
            ],
        }
    }

    /// The endpoint the monthly reports come from.
    fn report_endpoint(self) -> &'static str {
        match self {
            Kind::Wecom => "checkin/getcheckin_monthdata",
            Kind::Dingtalk => "topapi/attendance/getcolumnval",
        }
    }
}

struct Args {
    sizes: Vec<usize>,
    sources: Vec<Kind>,
    latency: Duration,
    /// Up to this much more latency per request, drawn afresh for each.
    jitter: Duration,
    dingtalk_rate: u32,
    /// WeCom `getcheckin_monthdata` calls per minute.
    wecom_monthdata_rate: u32,
    out: PathBuf,
    /// Keep each case's config dir (job, database, the runs' stdout and stderr).
    keep: bool,
    /// A command the binary is run under, e.g. `perf record -g --` (diagnosis only:
    /// the figures are then those of the wrapper).
    wrap: Vec<String>,
    /// Departments in the organisation, root included; `None`: `Org::generate`'s ~n/15.
    departments: Option<usize>,
    /// `--shapes`: (employees, departments) pairs, run instead of `--sizes`.
    shapes: Vec<(usize, usize)>,
    /// Which contacts limits the job file sets.
    source_limits: SourceLimits,
    /// Run the plain sequential client after attendsync's runs (`--no-plain`: not).
    plain: bool,
}

/// `--source-limits`: whether the job's `[source.limits]` name the contacts
/// endpoints (and WeCom's `total`) at the simulators' quotas, or leave them to
/// attendsync's own defaults, which a new user's job runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SourceLimits {
    /// Every endpoint at the simulator's quota (the report endpoint at the scaled one).
    Scaled,
    /// Only the report endpoints (and DingTalk's scaled IP-wide `total`); the
    /// contacts endpoints and the token are attendsync's defaults.
    Default,
}

impl SourceLimits {
    fn name(self) -> &'static str {
        match self {
            SourceLimits::Scaled => "scaled",
            SourceLimits::Default => "default",
        }
    }
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
        jitter: Duration::ZERO,
        dingtalk_rate: 200,
        wecom_monthdata_rate: WECOM_MONTHDATA_PER_MIN,
        out: Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-sync.md"),
        keep: false,
        wrap: Vec::new(),
        departments: None,
        shapes: Vec::new(),
        source_limits: SourceLimits::Scaled,
        plain: true,
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
            "--jitter-ms" => {
                let ms: u64 = value()?.parse().map_err(|e| format!("--jitter-ms: {e}"))?;
                args.jitter = Duration::from_millis(ms);
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
            "--departments" => {
                let n: usize = value()?
                    .replace('_', "")
                    .parse()
                    .map_err(|e| format!("--departments: {e}"))?;
                if n < 2 {
                    return Err("--departments must be at least 2 (the root and one more)".into());
                }
                args.departments = Some(n);
            }
            "--shapes" => {
                args.shapes = value()?
                    .split(',')
                    .map(parse_shape)
                    .collect::<Result<_, _>>()?
            }
            "--source-limits" => {
                args.source_limits = match value()?.as_str() {
                    "scaled" => SourceLimits::Scaled,
                    "default" => SourceLimits::Default,
                    other => {
                        return Err(format!(
                            "--source-limits: {other:?} is not scaled or default"
                        ))
                    }
                }
            }
            "--out" => args.out = PathBuf::from(value()?),
            "--keep" => args.keep = true,
            "--no-plain" => args.plain = false,
            "--wrap" => args.wrap = value()?.split_whitespace().map(str::to_owned).collect(),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.dingtalk_rate == 0 || args.wecom_monthdata_rate == 0 {
        return Err("--dingtalk-rate and --wecom-monthdata-rate must be at least 1".into());
    }
    Ok(Some(args))
}

/// `2000/40`: 2,000 employees in 40 departments (root included).
fn parse_shape(text: &str) -> Result<(usize, usize), String> {
    let number = |t: &str| t.trim().replace('_', "").parse::<usize>();
    match text.split_once('/').map(|(n, d)| (number(n), number(d))) {
        Some((Ok(n), Ok(d))) if d >= 2 => Ok((n, d)),
        _ => Err(format!(
            "--shapes: {text:?} is not EMPLOYEES/DEPARTMENTS (at least 2 departments)"
        )),
    }
}

impl Args {
    /// The (employees, departments) of each case: `--shapes`, or each of
    /// `--sizes` with `--departments`.
    fn cases(&self) -> Vec<(usize, Option<usize>)> {
        if self.shapes.is_empty() {
            self.sizes.iter().map(|&n| (n, self.departments)).collect()
        } else {
            self.shapes.iter().map(|&(n, d)| (n, Some(d))).collect()
        }
    }
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
            println!("benches/sync: not run without --bench (use `cargo bench --bench sync`)");
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

async fn bench(args: Args) {
    let mut cases = Vec::new();
    let total = Instant::now();
    for &kind in &args.sources {
        for (n, departments) in args.cases() {
            eprintln!(
                "[{:>6.1}s] {} × {n}: starting the simulators",
                total.elapsed().as_secs_f64(),
                kind.name()
            );
            let bench = Bench::start(kind, n, departments, &args).await;
            bench.vary_answer_times(args.jitter);
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
            let plain = if args.plain {
                let entry_id = match kind {
                    Kind::Wecom => WECOM_ENTRY_ID,
                    Kind::Dingtalk => DINGTALK_ENTRY_ID,
                };
                let p = bench.run_plain(entry_id).await;
                eprintln!(
                    "[{:>6.1}s] {} × {n}: plain client {:.1} s (exit {})",
                    total.elapsed().as_secs_f64(),
                    kind.name(),
                    p.wall.as_secs_f64(),
                    p.exit
                );
                Some(p)
            } else {
                None
            };
            let report_endpoint = kind.report_endpoint();
            let expected_report_calls = match kind {
                Kind::Wecom => n.div_ceil(100),
                // The shipped job: 8 columns → ⌈8/20⌉ = 1 getcolumnval per employee.
                Kind::Dingtalk => n * 8usize.div_ceil(20),
            };
            let case = Case {
                kind,
                employees: n,
                reference,
                first,
                second,
                plain,
                departments,
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
