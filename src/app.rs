//! The commands: what `main` calls. Each returns an exit status or a typed error;
//! only `main` turns errors into messages and exit codes.

use std::path::Path;
use std::sync::Arc;

use chrono::Utc;

use crate::cli::Global;
use crate::config::{self, ConfigErrors, LoadedJob};
use crate::month::Month;
use crate::store::{Store, StoreError};
use crate::sync::{JobReport, Mode, Options, RecordSink, Syncer};

/// Exit statuses (spec §2; 3 is ours).
pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_CONFIG: u8 = 2;
/// Another process holds a job's lease; that job was skipped.
pub const EXIT_BUSY: u8 = 3;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Client(#[from] crate::http::ClientError),
    #[error("{0}")]
    Io(String),
    #[error("unknown job \"{job}\"; {}", known_jobs(.known))]
    UnknownJob { job: String, known: Vec<String> },
}

fn known_jobs(known: &[String]) -> String {
    if known.is_empty() {
        "no job is known: no job files in jobs/ and no runs in the database".to_string()
    } else {
        format!("known jobs: {}", known.join(", "))
    }
}

impl AppError {
    pub fn exit_code(&self) -> u8 {
        match self {
            AppError::Config(_) | AppError::UnknownJob { .. } => EXIT_CONFIG,
            AppError::Store(StoreError::Missing { .. } | StoreError::NotAttendsync { .. }) => {
                EXIT_CONFIG
            }
            _ => EXIT_FAILED,
        }
    }
}

fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

pub fn open_store(path: &Path) -> Result<Store, AppError> {
    Ok(Store::open(path)?)
}

/// The current time, or `ATTENDSYNC_NOW` (RFC 3339) when set: for tests and for
/// replaying a missed day (see [`crate::clock`]).
pub fn now() -> Result<chrono::DateTime<Utc>, AppError> {
    Ok(clock()?.now())
}

/// The process's clock: real, or `ATTENDSYNC_NOW` advancing in real time.
pub fn clock() -> Result<crate::clock::Clock, AppError> {
    crate::clock::Clock::from_env().map_err(|e| {
        AppError::Config(ConfigErrors(vec![crate::config::ConfigError {
            file: crate::clock::NOW_VAR.into(),
            line: 0,
            column: 0,
            key: String::new(),
            message: e.to_string(),
        }]))
    })
}

/// How a run prints: the summary on stdout unless stdout carries records or JSON.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
    pub dry_run: bool,
}

pub fn stdout_sink() -> RecordSink {
    Arc::new(|record: &serde_json::Value| crate::outln!("{record}"))
}

/// `run` and `rerun`.
pub async fn sync(
    global: &Global,
    jobs: &[String],
    months: Vec<Month>,
    mode: Mode,
    output: Output,
) -> Result<u8, AppError> {
    // `run wc wc` or a repeated `--month` names a job or month once more, not a
    // second run of it.
    let jobs = first_of_each(jobs.to_vec());
    let months = first_of_each(months);
    let loaded = config::load(&global.config_dir, &jobs, &env_lookup)?;
    let syncer = syncer_for(global, output.dry_run)?;
    syncer.shutdown.on_signals();
    crate::shutdown::ignore_hangups();
    let opts = Options {
        mode,
        months,
        dry_run: output.dry_run,
        now: now()?,
    };
    let started = std::time::Instant::now();
    let reports = run_all(&syncer, &loaded, &opts).await;
    print_reports(&reports, output);
    // The clock of the run (`ATTENDSYNC_NOW` plus the time it took): the
    // alerts' time and their failure-streak arithmetic follow it.
    let ended = chrono::Duration::from_std(started.elapsed())
        .ok()
        .and_then(|d| opts.now.checked_add_signed(d))
        .unwrap_or(opts.now);
    for (j, report) in loaded.iter().zip(&reports) {
        // Each job alerts on its own result, once per failure streak; a
        // failed alert is logged and never changes the exit status.
        let status = exit_status(std::slice::from_ref(report));
        crate::notify::after_run(&syncer.http, &syncer.store, &j.job, report, status, ended).await;
    }
    Ok(exit_status(&reports))
}

/// `items` without repeats, in the order each first appears.
pub fn first_of_each<T: PartialEq>(items: Vec<T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// The sync engine for a config dir: its database, an HTTP client, stdout for
/// dry-run records.
pub fn syncer(global: &Global) -> Result<Syncer, AppError> {
    syncer_for(global, false)
}

/// [`syncer`]; a dry run without a database yet uses an empty one in memory
/// rather than create the file.
fn syncer_for(global: &Global, dry_run: bool) -> Result<Syncer, AppError> {
    let path = global.db_path();
    let store = if dry_run && !path.exists() {
        Store::open_in_memory()?
    } else {
        open_store(&path)?
    };
    Ok(Syncer {
        store,
        http: crate::http::client(crate::http::REQUEST_TIMEOUT)?,
        dry_run_sink: stdout_sink(),
        shutdown: crate::shutdown::Shutdown::new(),
        progress: crate::progress::for_stderr(),
    })
}

/// `daemon`: every job on its schedule until SIGTERM/SIGINT.
pub async fn daemon(global: &Global) -> Result<u8, AppError> {
    let clock = clock()?;
    let loaded = config::load(&global.config_dir, &[], &env_lookup)?;
    let syncer = syncer(global)?;
    syncer.shutdown.on_signals();
    let dir = global.config_dir.clone();
    let reload: crate::daemon::Reload = Box::new(move || config::load(&dir, &[], &env_lookup));
    crate::daemon::run(loaded, reload, Arc::new(syncer), clock).await
}

pub async fn run_all(syncer: &Syncer, jobs: &[LoadedJob], opts: &Options) -> Vec<JobReport> {
    let mut reports = Vec::new();
    for j in jobs {
        reports.push(syncer.run_job(&j.job, j.mapping.clone(), opts).await);
    }
    reports
}

pub fn exit_status(reports: &[JobReport]) -> u8 {
    if reports.iter().any(|r| r.busy.is_none() && !r.ok()) {
        EXIT_FAILED
    } else if reports.iter().any(|r| r.busy.is_some()) {
        EXIT_BUSY
    } else {
        EXIT_OK
    }
}

/// The human summary: one line per job and month, then the first errors.
pub fn summary_text(reports: &[JobReport]) -> String {
    let mut s = String::new();
    for r in reports {
        let prefix = if r.dry_run { "[dry run] " } else { "" };
        if let Some(busy) = &r.busy {
            s.push_str(&format!("{prefix}{}: skipped: {busy}\n", r.job));
            continue;
        }
        if let Some(plan) = &r.plan {
            s.push_str(&format!("{prefix}{} {plan}\n", r.job));
        }
        for m in &r.months {
            let c = &m.counts;
            s.push_str(&format!(
                "{prefix}{} {}: pulled {}, created {}, updated {}, unchanged {}, failed {}",
                r.job, m.month, c.pulled, c.created, c.updated, c.unchanged, c.failed
            ));
            if c.missing > 0 {
                s.push_str(&format!(", gone from source {}", c.missing));
            }
            if m.skipped > 0 {
                s.push_str(&format!(", skipped {} (call budget)", m.skipped));
            }
            if !m.duplicates.is_empty() {
                s.push_str(&format!(", duplicates {}", m.duplicates.len()));
            }
            s.push('\n');
            for w in &m.warnings {
                s.push_str(&format!("  warning: {w}\n"));
            }
            if let Some(e) = &m.month_error {
                s.push_str(&format!("  month failed: {e}\n"));
            }
            for e in &m.errors {
                s.push_str(&format!("  error: {e}\n"));
            }
            if c.failed as usize > m.errors.len() {
                s.push_str(&format!(
                    "  … and {} more errors\n",
                    c.failed as usize - m.errors.len()
                ));
            }
            for k in m.missing_keys.iter().take(20) {
                let fate = match (m.gone_keys.contains(k), m.pruned > 0) {
                    (true, true) => "deleted from Jiandaoyun",
                    (true, false) => "kept in Jiandaoyun; `rerun --prune` deletes it",
                    (false, _) => "kept: the source was not asked for this employee this month (no longer in its scope or directory), so it is not known to be gone",
                };
                s.push_str(&format!("  gone from source ({fate}): {k}\n"));
            }
            let copies = if m.copies_deleted > 0 {
                "extra copies deleted"
            } else {
                "`rerun --force` deletes the extra copies"
            };
            for k in m.duplicates.iter().take(20) {
                s.push_str(&format!(
                    "  held more than once in the form ({copies}): {k}\n"
                ));
            }
        }
        if let Some(e) = &r.error {
            s.push_str(&format!("{prefix}{}: failed: {e}\n", r.job));
        }
        let calls: Vec<String> = r
            .calls
            .iter()
            .map(|(e, st)| format!("{e} {}", st.calls))
            .collect();
        if !calls.is_empty() {
            s.push_str(&format!("{prefix}{} calls: {}\n", r.job, calls.join(", ")));
        }
    }
    s
}

fn print_reports(reports: &[JobReport], output: Output) {
    let text = summary_text(reports);
    if output.json {
        let json = serde_json::json!({ "jobs": reports, "exit_code": exit_status(reports) });
        crate::outln!("{json}");
        eprint!("{text}");
    } else if output.dry_run {
        eprint!("{text}");
    } else {
        crate::out!("{text}");
    }
}

/// `check`: validates every job and mapping; exit 2 on any problem. With
/// `remote`, also logs in to each source and compares the mapping with the
/// Jiandaoyun form's fields.
pub async fn check(global: &Global, remote: bool) -> Result<u8, AppError> {
    let loaded = config::load(&global.config_dir, &[], &env_lookup)?;
    let mut status = EXIT_OK;
    let http = if remote {
        Some(crate::http::client(crate::http::REQUEST_TIMEOUT)?)
    } else {
        None
    };
    for j in &loaded {
        let job = &j.job;
        crate::outln!(
            "ok: job {} ({} → Jiandaoyun form {}, mapping {} with {} fields)",
            job.name,
            job.source.kind(),
            job.target.entry_id,
            job.mapping,
            j.mapping.fields().len()
        );
        for w in &j.warnings {
            crate::outln!("warning: {w}");
        }
        if let (false, Some(w)) = (remote, fixed_budget_warning(j)) {
            crate::outln!("warning: job {}: {w}", job.name);
        }
        if let Some(http) = &http {
            let problems = check_remote(http, j, &global.db_path()).await;
            if problems.is_empty() {
                crate::outln!(
                    "ok: job {}: source login and form fields check out",
                    job.name
                );
            } else {
                status = EXIT_CONFIG;
                for p in problems {
                    crate::outln!("problem: job {}: {p}", job.name);
                }
            }
        }
    }
    Ok(status)
}

/// For plain `check` of a metered source: a budget that cannot pay for one
/// employee-month (the head count needs a call to the source).
fn fixed_budget_warning(j: &LoadedJob) -> Option<String> {
    let crate::config::job::Source::Dingtalk(cfg) = &j.job.source else {
        return None;
    };
    let per = crate::source::dingtalk::calls_per_employee(cfg);
    let fixed = u64::from(!cfg.columns.is_empty());
    crate::budget::fixed_warning(u64::from(cfg.monthly_call_budget), u64::from(per), fixed)
}

/// What `check --remote` finds wrong with one job, as readable lines.
/// For a metered source: what a run of the job's default months would spend,
/// against what is left of this calendar month's budget (Beijing time), and a
/// warning when it does not fit.
async fn expected_calls(
    source: &crate::source::SourceClient,
    j: &LoadedJob,
    db: &Path,
) -> Option<String> {
    let per = source.metered_calls_per_employee()?;
    let crate::config::job::Source::Dingtalk(cfg) = &j.job.source else {
        return None;
    };
    let employees = match source.employees().await {
        Ok(e) => e.len(),
        Err(e) => return Some(format!("cannot list employees to plan the calls: {e}")),
    };
    let now = now().ok()?;
    let tz = j.job.timezone;
    let months = crate::month::default_months(now, tz, j.job.previous_month_until_day);
    let period = crate::budget::quota_period(now);
    // `check` never creates or changes the database; without one nothing was
    // spent yet.
    let spent = Store::open_read_only(db)
        .and_then(|s| s.metered_spent(&j.job.name, &period))
        .unwrap_or(0);
    let plan = crate::budget::Plan::make(
        &months,
        employees,
        u64::from(per),
        1,
        u64::from(cfg.monthly_call_budget),
        spent,
        period,
    );
    match plan.fit_warning() {
        Some(w) => Some(format!(
            "{}\nwarning: job {}: {w}",
            plan.describe(),
            j.job.name
        )),
        None => Some(plan.describe()),
    }
}

/// The source's remote check. Its calls to a metered source (DingTalk's
/// column lookup) count against the monthly budget like a run's, and are
/// refused when it is spent: the cap covers every metered call.
async fn metered_check(
    source: &crate::source::SourceClient,
    j: &LoadedJob,
    db: &Path,
) -> Result<Vec<String>, crate::source::SourceError> {
    let crate::config::job::Source::Dingtalk(cfg) = &j.job.source else {
        return source.check_remote().await;
    };
    let store = Store::open(db).map_err(|e| crate::source::SourceError::Config(e.to_string()))?;
    let period = crate::budget::quota_period(now().unwrap_or_else(|_| Utc::now()));
    let ledger = crate::budget::StoreLedger {
        store,
        job: j.job.name.clone(),
        period: period.clone(),
    };
    let meter = Arc::new(crate::budget::Meter::new(
        Arc::new(ledger),
        u64::from(cfg.monthly_call_budget),
        period,
        1,
    ));
    source.set_meter(meter.clone());
    let checked = source.check_remote().await;
    if let Err(e) = meter.release_unused().await {
        tracing::warn!(job = %j.job.name, error = %e, "could not give back unused metered calls");
    }
    checked
}

async fn check_remote(http: &reqwest::Client, j: &LoadedJob, db: &Path) -> Vec<String> {
    let stats = Arc::new(crate::http::CallStats::default());
    let mut problems = Vec::new();
    match crate::source::SourceClient::new(&j.job.source, http.clone(), stats.clone()) {
        Some(source) => match source.login().await {
            Err(e) => problems.push(format!("source login failed: {e}")),
            Ok(()) => match metered_check(&source, j, db).await {
                Err(crate::source::SourceError::Budget(e)) => crate::outln!(
                    "warning: job {}: the report columns were not checked: {e}",
                    j.job.name
                ),
                Err(e) => problems.push(e.to_string()),
                Ok(warnings) => {
                    for w in warnings {
                        crate::outln!("warning: job {}: {w}", j.job.name);
                    }
                    if let Some(plan) = expected_calls(&source, j, db).await {
                        crate::outln!("plan: job {}: {plan}", j.job.name);
                    }
                }
            },
        },
        None => problems.push(format!(
            "source type \"{}\" is not supported by this version",
            j.job.source.kind()
        )),
    }
    let jdy = crate::jiandaoyun::Jiandaoyun::new(http.clone(), &j.job.target, stats);
    match jdy.widgets().await {
        Ok(widgets) => {
            let found =
                crate::form_check::problems(&j.mapping.fields(), j.mapping.key_fields(), &widgets);
            if !found.is_empty() {
                problems.extend(found);
                problems.push(format!(
                    "the form's fields are: {}",
                    crate::form_check::describe_widgets(&widgets)
                ));
            }
        }
        Err(e) => problems.push(format!("cannot read the form's fields: {e}")),
    }
    problems
}

/// `status`: recent runs and per job-month counts. Reads the database without
/// creating or changing it.
pub fn status(global: &Global, job: Option<&str>) -> Result<u8, AppError> {
    let store = Store::open_read_only(&global.db_path())?;
    if let Some(job) = job {
        known_job(global, &store, job)?;
    }
    let mut runs = store.recent_runs(job, 10)?;
    show_interrupted(&store, &mut runs, Utc::now())?;
    let months = store.month_rows(job)?;
    let pending = store.pending_count(job)?;
    crate::out!("{}", status_text(&runs, &months, pending));
    crate::out!("{}", owed_text(&store.all_owed(job, now()?)?));
    let metered = store.metered_rows(job)?;
    if !metered.is_empty() {
        crate::outln!(
            "\nMetered source calls by calendar month (counted against `monthly_call_budget`):"
        );
        for (job, period, calls) in metered.iter().take(12) {
            crate::outln!("  {job:<20} {period}  {calls:>7}");
        }
    }
    Ok(EXIT_OK)
}

/// Months owed by each job: closed in the job's timezone, and not yet synced
/// in full since.
fn owed_text(owed: &[(String, String, String)]) -> String {
    if owed.is_empty() {
        return String::new();
    }
    let lines: Vec<String> = owed
        .iter()
        .map(|(job, month, since)| format!("  {job:<20} {month}  (due since {since})\n"))
        .collect();
    format!(
        "\nMonths owed (closed, not yet synced in full since; the next run without --month syncs them):\n{}",
        lines.concat()
    )
}

/// A job `status` can tell about: a job file in the config dir, or a job the
/// database has runs of.
fn known_job(global: &Global, store: &Store, job: &str) -> Result<(), AppError> {
    let mut known: Vec<String> = config::job_files(&global.config_dir)
        .map(|files| files.into_iter().map(|(name, _)| name).collect())
        .unwrap_or_default();
    known.extend(store.job_names()?);
    known.sort();
    known.dedup();
    if known.iter().any(|k| k == job) {
        Ok(())
    } else {
        Err(AppError::UnknownJob {
            job: job.to_string(),
            known,
        })
    }
}

/// A run still marked running is in progress only if it is its job's latest run
/// and a live process holds the job's lease; any other (killed with -9, the
/// machine went down) is shown as interrupted. The next run of the job marks
/// them so in the database.
fn show_interrupted(
    store: &Store,
    runs: &mut [crate::store::RunRow],
    now: chrono::DateTime<Utc>,
) -> Result<(), AppError> {
    let running = crate::store::RunStatus::Running.as_str();
    let mut in_progress: std::collections::HashMap<String, Option<i64>> = Default::default();
    for r in runs.iter_mut().filter(|r| r.status == running) {
        let id = match in_progress.get(&r.job) {
            Some(id) => *id,
            None => {
                let held = store
                    .lease_holder(&r.job, now)?
                    .is_some_and(|h| !crate::lease::holder_is_dead(&h.owner));
                let id = if held {
                    store.recent_runs(Some(&r.job), 1)?.first().map(|l| l.id)
                } else {
                    None
                };
                in_progress.insert(r.job.clone(), id);
                id
            }
        };
        if id != Some(r.id) {
            r.status = crate::store::RunStatus::Interrupted.as_str().to_string();
            r.message
                .get_or_insert_with(|| crate::store::INTERRUPTED_MESSAGE.to_string());
        }
    }
    Ok(())
}

pub fn status_text(
    runs: &[crate::store::RunRow],
    months: &[crate::store::MonthRow],
    pending: u64,
) -> String {
    let mut s = String::new();
    if runs.is_empty() {
        s.push_str("No runs recorded yet.\n");
        return s;
    }
    s.push_str("Recent runs:\n");
    s.push_str(&format!(
        "  {:>5}  {:<20} {:<14} {:<11} {:<25} {}\n",
        "run", "job", "command", "status", "started", "message"
    ));
    for r in runs {
        s.push_str(&format!(
            "  {:>5}  {:<20} {:<14} {:<11} {:<25} {}\n",
            r.id,
            r.job,
            r.command,
            r.status,
            r.started_at,
            r.message.as_deref().unwrap_or("")
        ));
    }
    s.push_str("\nBy job and month (latest run):\n");
    s.push_str(&format!(
        "  {:<20} {:<8} {:>5} {:>8} {:>8} {:>8} {:>10} {:>7} {:>7}  {}\n",
        "job",
        "month",
        "run",
        "pulled",
        "created",
        "updated",
        "unchanged",
        "failed",
        "stored",
        "at"
    ));
    for m in months {
        let c = &m.counts;
        s.push_str(&format!(
            "  {:<20} {:<8} {:>5} {:>8} {:>8} {:>8} {:>10} {:>7} {:>7}  {}\n",
            m.job,
            m.month,
            m.run_id,
            c.pulled,
            c.created,
            c.updated,
            c.unchanged,
            c.failed,
            m.stored,
            m.at
        ));
    }
    if pending > 0 {
        s.push_str(&format!(
            "\n{pending} create batch(es) pending: the next run of their job settles them.\n"
        ));
    }
    s
}
