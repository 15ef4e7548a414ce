//! One job end to end: plan → pull → map → diff → write → commit → summary.
//!
//! Pulling runs in its own task and hands chunks over a bounded channel, so
//! writing one chunk overlaps pulling the next and memory holds a few chunks at most.

use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::budget::{Meter, Plan, StoreLedger, RESERVE_BLOCK};
use crate::config::job::{DingtalkSource, Job, Source};
use crate::http::{CallStats, EndpointStats};
use crate::jiandaoyun::{JdyError, Jiandaoyun};
use crate::lease::Lease;
use crate::mapping::{FieldFill, Mapping, Row, Vars};
use crate::month::{default_months, with_owed, Month};
use crate::rerun::{confirmed_gone, prune_refusal, FormMonth};
use crate::roster::UserIds;
use crate::source::{Pulled, SourceClient, SourceError};
use crate::store::{MonthCounts, PendingRecord, RunStatus, Store, StoreError, Written};
use crate::writer::{canonical_key, FormFields, Outcome, WriteError, Writer};

/// How many errors a month keeps for the summary and alerts.
const MAX_ERRORS_KEPT: usize = 20;
/// Chunks pulled ahead of the writer.
const PIPELINE_DEPTH: usize = 2;
/// Chunks being written at once. The pacers keep every endpoint within its
/// quota; concurrency only hides each call's latency so the quota is what limits.
const WRITE_CONCURRENCY: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Write what is new or changed.
    Run,
    /// Bring a month in line with the source, compared with what the form
    /// holds; `force` rewrites every record (and deletes extra copies of a key),
    /// `prune` deletes records gone from the source, and `prune_all` lets it
    /// delete more than a fifth of the month.
    Rerun { force: bool, prune: Prune },
}

/// What `rerun` does with records gone from the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prune {
    /// List them (the default).
    Keep,
    /// `--prune`: delete them, unless that is more than a fifth of the month
    /// or the source returned nobody.
    Guarded,
    /// `--prune-all`: delete them whatever their number.
    All,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub mode: Mode,
    /// Explicit months; empty means the job's default months (spec §4).
    pub months: Vec<Month>,
    pub dry_run: bool,
    pub now: DateTime<Utc>,
}

impl Options {
    fn command(&self) -> &'static str {
        match self.mode {
            // Only a run of the default months stands for a scheduled one
            // (the daemon's catch-up looks for the last of those).
            Mode::Run if self.months.is_empty() => "run",
            Mode::Run => "run --month",
            Mode::Rerun { force: true, .. } => "rerun --force",
            Mode::Rerun {
                prune: Prune::Guarded,
                ..
            } => "rerun --prune",
            Mode::Rerun {
                prune: Prune::All, ..
            } => "rerun --prune-all",
            Mode::Rerun { .. } => "rerun",
        }
    }

    fn is_rerun(&self) -> bool {
        matches!(self.mode, Mode::Rerun { .. })
    }

    fn force(&self) -> bool {
        matches!(self.mode, Mode::Rerun { force: true, .. })
    }

    fn prune(&self) -> Prune {
        match self.mode {
            Mode::Rerun { prune, .. } => prune,
            Mode::Run => Prune::Keep,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MonthReport {
    /// The job, for log lines (the JSON summary has it once per job).
    #[serde(skip)]
    pub job: String,
    pub month: String,
    #[serde(flatten)]
    pub counts: MonthCounts,
    /// The first errors (employee, field, endpoint, code), at most 20.
    pub errors: Vec<String>,
    /// A failure that stopped this month before all records were seen.
    pub month_error: Option<String>,
    /// Keys in the store (and the form) that the source no longer returned.
    pub missing_keys: Vec<String>,
    /// Those of them whose employee the source answered for with nothing this
    /// month: known to be gone, and what `--prune` deletes.
    pub gone_keys: Vec<String>,
    /// How many of those `--prune` deleted.
    pub pruned: u64,
    /// Keys the form holds more than once (seen by `rerun`).
    pub duplicates: Vec<String>,
    /// Extra copies `rerun --force` deleted.
    pub copies_deleted: u64,
    /// Employees not pulled this run because the call budget ran short.
    pub skipped: u64,
    /// Mapped fields that came out empty in every record of the month.
    pub warnings: Vec<String>,
    /// Per mapped field, how many records had a value (makes `warnings`).
    #[serde(skip)]
    pub fill: FieldFill,
}

impl MonthReport {
    fn new(job: &str, month: Month) -> Self {
        MonthReport {
            job: job.to_string(),
            month: month.to_string(),
            counts: MonthCounts::default(),
            errors: Vec::new(),
            month_error: None,
            missing_keys: Vec::new(),
            gone_keys: Vec::new(),
            pruned: 0,
            duplicates: Vec::new(),
            copies_deleted: 0,
            skipped: 0,
            warnings: Vec::new(),
            fill: FieldFill::default(),
        }
    }

    /// Warns (in the report and the log) of fields empty in every record.
    fn warn_empty_fields(&mut self, job: &str, mapping: &Mapping) {
        self.warnings = self.fill.warnings(mapping);
        for w in &self.warnings {
            tracing::warn!(%job, month = %self.month, "{w}");
        }
    }

    /// A record that failed: counted, kept for the summary and logged at WARN.
    fn error(&mut self, message: String) {
        // Keys and reasons carry employee data and vendor text: one line, escaped.
        let message = crate::text::clean(&message).into_owned();
        tracing::warn!(job = %self.job, "{message}");
        self.counts.failed += 1;
        if self.errors.len() < MAX_ERRORS_KEPT {
            self.errors.push(message);
        }
    }

    pub fn ok(&self) -> bool {
        self.counts.failed == 0 && self.month_error.is_none() && self.skipped == 0
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct JobReport {
    pub job: String,
    pub dry_run: bool,
    pub months: Vec<MonthReport>,
    /// A failure that stopped the whole job.
    pub error: Option<String>,
    /// Set when another process holds the job's lease: nothing was done.
    pub busy: Option<String>,
    /// The run did not finish because of a shutdown request (SIGTERM/SIGINT):
    /// not a failure of the job, so it raises no alert.
    pub stopped_by_shutdown: bool,
    /// For a metered source: the call plan, made once the head count is known
    /// (before any metered call in a dry run).
    pub plan: Option<String>,
    pub calls: BTreeMap<String, EndpointStats>,
}

impl JobReport {
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.busy.is_none() && self.months.iter().all(MonthReport::ok)
    }
}

#[derive(Debug, thiserror::Error)]
enum JobError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Jiandaoyun(#[from] JdyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Setup(String),
}

impl From<WriteError> for JobError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Form(e) => JobError::Jiandaoyun(e),
            WriteError::Store(e) => JobError::Store(e),
        }
    }
}

/// Where dry-run records go (stdout in the CLI).
pub type RecordSink = Arc<dyn Fn(&serde_json::Value) + Send + Sync>;

pub struct Syncer {
    pub store: Store,
    pub http: reqwest::Client,
    pub dry_run_sink: RecordSink,
    /// Set on SIGTERM/SIGINT: finish the chunk in flight, then stop. Everything
    /// written is committed and the next run resumes.
    pub shutdown: crate::shutdown::Shutdown,
    pub progress: Arc<dyn crate::progress::Progress>,
}

/// What every month of one job run shares.
struct Run<'a> {
    job: &'a Job,
    mapping: &'a Arc<Mapping>,
    opts: &'a Options,
    source: SourceClient,
    writer: Option<Arc<Writer>>,
    lost: Arc<AtomicBool>,
    budget: Option<Arc<Budget>>,
}

/// A metered source's call budget during a run: a hard cap on every metered
/// attempt (the [`Meter`], which counts each one in SQLite before it is sent,
/// reserving calls in blocks), and a guard checked before every chunk, so that
/// a chunk the budget cannot finish is not started. Neither needs a head count,
/// so both hold while the directory is still being listed.
struct Budget {
    budget: u64,
    /// Left in `period` when the run started.
    left: u64,
    per_employee: u64,
    fixed: u64,
    period: String,
    meter: Arc<Meter>,
}

impl Budget {
    fn new(
        plan: &Plan,
        source: &SourceClient,
        store: &Store,
        job: &str,
        shutdown: &crate::shutdown::Shutdown,
    ) -> Budget {
        let ledger = StoreLedger {
            store: store.clone(),
            job: job.to_owned(),
            period: plan.period.clone(),
        };
        let meter = Meter::new(
            Arc::new(ledger),
            plan.budget,
            plan.period.clone(),
            RESERVE_BLOCK,
        )
        .stopping_on(shutdown.clone());
        let meter = Arc::new(meter);
        source.set_meter(meter.clone());
        Budget {
            budget: plan.budget,
            left: plan.left(),
            per_employee: plan.per_employee,
            fixed: plan.fixed,
            period: plan.period.clone(),
            meter,
        }
    }

    fn spent_by_run(&self) -> u64 {
        self.meter.taken()
    }

    /// Whether `employees` more employee-months fit in what is left.
    fn allows(&self, employees: usize) -> bool {
        let committed = self.spent_by_run().max(self.fixed);
        committed + employees as u64 * self.per_employee <= self.left
    }

    fn stop_reason(&self) -> SourceError {
        SourceError::Config(format!(
            "stopped before exceeding the monthly call budget ({}): {} calls were left in {} (Beijing time) \
             and retries used some of them; the rest waits for the next run (the budget starts fresh next calendar month)",
            self.budget, self.left, self.period
        ))
    }

    /// Gives back the calls reserved in SQLite and not sent (every call sent
    /// was counted there before it left).
    async fn record(&self) -> Result<(), StoreError> {
        self.meter.release_unused().await
    }
}

fn lease_lost(lost: &AtomicBool) -> Option<JobError> {
    lost.load(Ordering::SeqCst).then(|| {
        JobError::Setup("the job lease was lost; another process may be running this job".into())
    })
}

/// What a metered source's call plan is made of, and the plan once the head
/// count is known.
#[derive(Clone)]
struct Metering {
    months: Vec<Month>,
    per_employee: u64,
    budget: u64,
    spent_before: u64,
    period: String,
    plan: Option<Plan>,
}

impl Metering {
    fn plan_for(&self, employees: usize) -> Plan {
        Plan::make(
            &self.months,
            employees,
            self.per_employee,
            1,
            self.budget,
            self.spent_before,
            self.period.clone(),
        )
    }

    /// The employees the first month (in priority order) may pull whatever the
    /// head count turns out to be: the plan gives it min(head count, this).
    fn first_month_cap(&self) -> usize {
        let plan = self.plan_for(usize::MAX);
        plan.allowed.first().map_or(0, |(_, n)| *n)
    }

    /// Makes and keeps the plan for `employees`.
    fn settle(&mut self, employees: usize) -> &Plan {
        let plan = self.plan_for(employees);
        self.plan.insert(plan)
    }

    /// Lists the organisation before any metered call and plans on it: for a
    /// dry run, and for a month after a first month whose listing stopped.
    async fn list_first(
        &mut self,
        source: &SourceClient,
        job: &str,
        report: &mut JobReport,
    ) -> Result<Arc<UserIds>, JobError> {
        let all: UserIds = source.employees().await?.iter().collect();
        let plan = self.settle(all.len());
        log_plan(job, plan);
        report.plan = Some(plan.describe());
        Ok(Arc::new(all))
    }

    /// Logs the plan as soon as a listing that runs with the first month's
    /// pull is over (the month itself may go on for a long while).
    fn announcer(&self, job: &str) -> OnListed {
        let (meter, job) = (self.clone(), job.to_owned());
        Box::new(move |employees| log_plan(&job, &meter.plan_for(employees)))
    }
}

fn log_plan(job: &str, plan: &Plan) {
    tracing::info!(job = %job, "{}", plan.describe());
}

/// Called with the head count once a listing is complete.
type OnListed = Box<dyn FnOnce(usize) + Send>;

/// What the pulling task of one month needs.
struct MonthPull {
    source: SourceClient,
    month: Month,
    now: DateTime<Utc>,
    tz: chrono_tz::Tz,
    budget: Option<Arc<Budget>>,
}

/// Where a month's employees come from.
enum Roster {
    /// Being listed now (the first month of a run): chunks are pulled as soon as
    /// enough employees are found, up to `cap` of them (a metered source's
    /// budget); the rest are only counted.
    Discovering {
        listing: tokio::task::JoinHandle<Result<UserIds, SourceError>>,
        found: mpsc::Receiver<Vec<String>>,
        cap: usize,
    },
    /// Listed by an earlier month of this run (or before it): the first `take`.
    Known { all: Arc<UserIds>, take: usize },
}

/// What a month's pull learnt about the organisation.
#[derive(Default)]
struct Listing {
    /// Everyone, when the organisation was listed completely by this pull.
    all: Option<UserIds>,
    /// Employees listed but not pulled: beyond the budget's cap.
    over_cap: usize,
}

impl Roster {
    /// `on_listed` is called as soon as the listing is complete, while the
    /// month may still be pulled for a long while.
    fn discover(source: &SourceClient, cap: usize, on_listed: Option<OnListed>) -> Roster {
        let (tx, rx) = mpsc::channel(16);
        let source = source.clone();
        let listing = tokio::spawn(async move {
            let listed = source.discover(&tx).await;
            if let (Ok(all), Some(announce)) = (&listed, on_listed) {
                announce(all.len());
            }
            listed
        });
        Roster::Discovering {
            listing,
            found: rx,
            cap,
        }
    }

    fn known(all: &Arc<UserIds>) -> Roster {
        Roster::Known {
            all: all.clone(),
            take: all.len(),
        }
    }

    fn known_len(&self) -> u64 {
        match self {
            Roster::Known { take, .. } => *take as u64,
            Roster::Discovering { .. } => 0,
        }
    }

    /// Pulls the month chunk by chunk into `tx`.
    async fn pull(
        self,
        spec: MonthPull,
        tx: mpsc::Sender<Result<Pulled, SourceError>>,
        found: Arc<AtomicU64>,
    ) -> Listing {
        let MonthPull {
            source,
            month,
            now,
            tz,
            budget,
        } = spec;
        let size = source.chunk_size();
        // Pulls one chunk and hands it on; false when the pull must stop.
        let send = |chunk: Vec<String>| {
            let (source, tx, budget) = (&source, &tx, &budget);
            async move {
                let pulled = match budget {
                    Some(b) if !b.allows(chunk.len()) => Ok(Pulled {
                        stopped: Some(b.stop_reason()),
                        ..Pulled::default()
                    }),
                    _ => source.pull(month, &chunk, now, tz).await,
                };
                let stop = pulled.as_ref().map_or(true, |p| p.stopped.is_some());
                tx.send(pulled).await.is_ok() && !stop
            }
        };
        match self {
            Roster::Known { all, take } => {
                found.store(take as u64, Ordering::SeqCst);
                for start in (0..take).step_by(size.max(1)) {
                    if !send(all.slice(start, (start + size).min(take))).await {
                        break;
                    }
                }
                Listing::default()
            }
            Roster::Discovering {
                listing,
                found: mut rx,
                cap,
            } => {
                let mut buffer: Vec<String> = Vec::new();
                let (mut room, mut over_cap) = (cap, 0usize);
                while let Some(batch) = rx.recv().await {
                    found.fetch_add(batch.len() as u64, Ordering::SeqCst);
                    let taken = batch.len().min(room);
                    room -= taken;
                    over_cap += batch.len() - taken;
                    buffer.extend(batch.into_iter().take(taken));
                    while buffer.len() >= size {
                        let chunk: Vec<String> = buffer.drain(..size).collect();
                        if !send(chunk).await {
                            return Listing::default();
                        }
                    }
                }
                let listed = match listing.await {
                    Ok(r) => r,
                    Err(e) => Err(SourceError::Protocol {
                        vendor: "attendsync",
                        endpoint: "employee listing".into(),
                        message: e.to_string(),
                    }),
                };
                let all = match listed {
                    Ok(all) => all,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return Listing::default();
                    }
                };
                if !buffer.is_empty() && !send(buffer).await {
                    return Listing::default();
                }
                Listing {
                    all: Some(all),
                    over_cap,
                }
            }
        }
    }
}

/// The writes one chunk needs.
#[derive(Default)]
struct ChunkWrites {
    creates: Vec<PendingRecord>,
    updates: Vec<(String, PendingRecord)>,
    /// Records a rerun found in the form as the source has them: stored only.
    adopt: Vec<Written>,
    /// Ids of extra copies of a key, deleted by `rerun --force`.
    extra_copies: Vec<String>,
}

impl ChunkWrites {
    fn is_empty(&self) -> bool {
        self.creates.is_empty()
            && self.updates.is_empty()
            && self.adopt.is_empty()
            && self.extra_copies.is_empty()
    }

    /// Records whose outcome this chunk decides.
    fn records(&self) -> u64 {
        (self.creates.len() + self.updates.len()) as u64
    }

    /// Sends the chunk's writes; runs as its own task so several chunks write at
    /// once. Comes back with how many records it was to write.
    async fn send(self, writer: Arc<Writer>, month: String) -> (u64, Result<Outcome, WriteError>) {
        let records = self.records();
        let written = async {
            writer.adopt(&month, self.adopt).await?;
            let copies_deleted = writer.delete_copies(&self.extra_copies).await?;
            let mut out = writer.create(&month, self.creates).await?;
            out.absorb(writer.update(&month, self.updates).await?);
            out.copies_deleted += copies_deleted;
            Ok(out)
        };
        (records, written.await)
    }
}

/// Adds what a chunk's writes achieved to the month's report.
fn record_outcome(job: &str, month: Month, out: Outcome, m: &mut MonthReport) {
    m.counts.created += out.created;
    m.counts.updated += out.updated;
    m.counts.unchanged += out.adopted;
    m.copies_deleted += out.copies_deleted;
    for (key, reason) in out.failed {
        m.error(format!("{month} record {key}: {reason}"));
    }
    for key in out.duplicates {
        tracing::warn!(%job, %month, key = %crate::text::clean(&key.to_string()), "the form holds this key more than once; updating the oldest record (`rerun --force` deletes the other copies)");
        if !m.duplicates.contains(&key) {
            m.duplicates.push(key);
        }
    }
}

/// DingTalk fills 应出勤天数 only for days within 15 days of the call; older days
/// come back as 0 (dingtalk.md §6). Says so when a synced month has such days.
fn warn_zeroed_columns(job: &Job, cfg: &DingtalkSource, months: &[Month], now: DateTime<Utc>) {
    const COLUMN: &str = "应出勤天数";
    if !cfg.columns.iter().any(|c| c == COLUMN) {
        return;
    }
    let fresh_from = (now - chrono::Duration::days(15))
        .with_timezone(&job.timezone)
        .date_naive();
    for month in months {
        let stale_days = (0..month.days())
            .filter_map(|d| {
                month
                    .first_day()
                    .checked_add_days(chrono::Days::new(d.into()))
            })
            .filter(|day| *day < fresh_from)
            .count();
        if stale_days > 0 {
            tracing::warn!(job = %job.name, %month, stale_days,
                "{COLUMN} is zeroed by DingTalk for days more than 15 days old: {stale_days} day(s) of {month} will read 0; pull nightly to keep it, or leave it out of `columns`");
        }
    }
}

fn small_hash(key: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

/// A mapped record with its key and hash; the write format is only built for
/// records that are written (most records of a nightly run are unchanged).
struct Planned {
    row: Row,
    key: String,
    content_hash: String,
}

impl Planned {
    fn into_pending(self) -> PendingRecord {
        PendingRecord {
            key_values: self.row.key_values(),
            data: self.row.write_data(),
            key: self.key,
            content_hash: self.content_hash,
        }
    }
}

/// What mapping one chunk produced.
struct MappedChunk {
    records: Vec<Planned>,
    /// Per employee: what went wrong (without the month, added by the caller).
    errors: Vec<String>,
    pulled: u64,
    /// Employees asked for whom the source has no record this month.
    absent: Vec<String>,
    fill: FieldFill,
}

/// Maps a chunk's records, drops keys already produced this month (`seen`), and
/// prints dry-run records to `dry_run`. Fails only on a source answer that
/// cannot be read at all.
fn map_chunk(
    mapping: &Mapping,
    vars: &Vars,
    pulled: Pulled,
    seen: &mut HashSet<u64>,
    dry_run: Option<&RecordSink>,
) -> Result<MappedChunk, SourceError> {
    let reports = pulled.reports.read(&pulled.failed)?;
    let mut out = MappedChunk {
        records: Vec::with_capacity(pulled.records.len() + reports.found.len()),
        errors: pulled
            .failed
            .iter()
            .map(|(employee, reason)| format!("employee {employee}: {reason}"))
            .collect(),
        pulled: (pulled.records.len() + reports.found.len()) as u64,
        absent: (pulled.absent.iter().map(String::as_str))
            .chain(reports.absent.iter().copied())
            .map(str::to_owned)
            .collect(),
        fill: FieldFill::default(),
    };
    let bound = mapping.bind(vars);
    let built = pulled
        .records
        .iter()
        .map(|r| (r.employee.as_str(), bound.apply(&r.record)));
    let read = reports
        .found
        .iter()
        .map(|(employee, report)| (*employee, bound.apply(report)));
    for (employee, mapped) in built.chain(read) {
        let row = match mapped {
            Ok(row) => row,
            Err(field_errors) => {
                let text: Vec<String> = field_errors.iter().map(ToString::to_string).collect();
                out.errors
                    .push(format!("employee {employee}: {}", text.join("; ")));
                continue;
            }
        };
        out.fill.observe(&row);
        let record = Planned {
            key: row.key(),
            content_hash: row.content_hash(),
            row,
        };
        if !seen.insert(small_hash(&record.key)) {
            out.errors.push(format!(
                "employee {employee}: key {} was already produced by another record of this month; skipped",
                record.key
            ));
            continue;
        }
        if let Some(sink) = dry_run {
            sink(&record.row.to_json());
        }
        out.records.push(record);
    }
    Ok(out)
}

/// The month's end: INFO when all went well, WARN when records failed, ERROR
/// when the month itself failed.
fn log_month(m: &MonthReport) {
    let c = &m.counts;
    let (job, month) = (&m.job, &m.month);
    if let Some(error) = &m.month_error {
        tracing::error!(%job, %month, pulled = c.pulled, created = c.created, updated = c.updated,
            unchanged = c.unchanged, failed = c.failed, %error, "month failed");
    } else if c.failed > 0 || m.skipped > 0 {
        tracing::warn!(%job, %month, pulled = c.pulled, created = c.created, updated = c.updated,
            unchanged = c.unchanged, failed = c.failed, skipped = m.skipped, "month done, with failures");
    } else {
        tracing::info!(%job, %month, pulled = c.pulled, created = c.created, updated = c.updated,
            unchanged = c.unchanged, failed = c.failed, "month done");
    }
}

/// What one month's pass keeps between chunks.
#[derive(Default)]
struct MonthState {
    /// Hashes of the keys produced so far: a key twice is an error, and stored
    /// keys not among them are gone from the source.
    seen: HashSet<u64>,
    /// Employees the source answered for with nothing this month, when that
    /// proves their record gone (`SourceClient::absence_proves_gone`).
    answered_empty: HashSet<String>,
    /// Employees asked for and left out of the answers.
    absent: usize,
    /// `rerun`: the month as the form holds it.
    form: Option<FormMonth>,
}

/// Where the key fields read from the source record sit in a key.
fn employee_positions(mapping: &Mapping) -> Vec<usize> {
    let employee = mapping.employee_key_fields();
    mapping
        .key_fields()
        .iter()
        .enumerate()
        .filter(|(_, k)| employee.contains(k))
        .map(|(i, _)| i)
        .collect()
}

/// A rerun chunk compared with the form: what to create, update, store, and
/// which extra copies of a key `--force` deletes.
async fn repair_chunk(
    form: &mut FormMonth,
    writer: &Writer,
    records: Vec<PendingRecord>,
    force: bool,
    m: &mut MonthReport,
) -> Result<ChunkWrites, JobError> {
    form.look_up(writer, &records).await?;
    let repairs = form.compare(writer, records, force);
    for key in repairs.duplicates {
        tracing::warn!(job = %m.job, month = %m.month, key = %crate::text::clean(&key.to_string()),
            "the form holds this key more than once; `rerun --force` deletes the extra copies");
        m.duplicates.push(key);
    }
    Ok(ChunkWrites {
        creates: repairs.creates,
        updates: repairs.updates,
        adopt: repairs.unchanged,
        extra_copies: if force {
            repairs.extra_copies
        } else {
            Vec::new()
        },
    })
}

impl Syncer {
    /// Runs one job for its months. Never panics on bad data; every problem ends up
    /// in the report.
    pub async fn run_job(&self, job: &Job, mapping: Arc<Mapping>, opts: &Options) -> JobReport {
        let stats = Arc::new(CallStats::default());
        let mut report = JobReport {
            job: job.name.clone(),
            dry_run: opts.dry_run,
            months: Vec::new(),
            error: None,
            busy: None,
            stopped_by_shutdown: false,
            plan: None,
            calls: BTreeMap::new(),
        };
        let months = if opts.months.is_empty() {
            default_months(opts.now, job.timezone, job.previous_month_until_day)
        } else {
            opts.months.clone()
        };
        let lease = if opts.dry_run {
            None
        } else {
            match Lease::acquire(&self.store, &job.name).await {
                Ok(Ok(lease)) => Some(lease),
                Ok(Err(busy)) => {
                    report.busy = Some(busy);
                    return report;
                }
                Err(e) => {
                    report.error = Some(format!("job {}: {e}", job.name));
                    return report;
                }
            }
        };
        let run_id = if opts.dry_run {
            None
        } else {
            let (j, c, now) = (job.name.clone(), opts.command(), opts.now);
            match self.store.call(move |s| s.start_run(&j, c, now)).await {
                Ok(id) => Some(id),
                Err(e) => {
                    report.error = Some(format!("job {}: {e}", job.name));
                    if let Some(l) = lease {
                        l.release().await;
                    }
                    return report;
                }
            }
        };
        let lost = lease.as_ref().map(Lease::lost).unwrap_or_default();
        let result = self
            .run_months(
                job,
                &mapping,
                opts,
                &months,
                stats.clone(),
                lost,
                run_id,
                &mut report,
            )
            .await;
        if let Err(e) = result {
            tracing::error!(job = %job.name, error = %e, "job failed");
            report.error = Some(format!("job {}: {e}", job.name));
        }
        // A shutdown stops a run between chunks with an "interrupted by a
        // shutdown request" error: whatever else went wrong, it did not finish.
        report.stopped_by_shutdown = self.shutdown.is_triggered() && !report.ok();
        // The run's writes are safe in the store's log already; folding them now
        // spares the next run the work. Should it fail, the next run folds.
        if !opts.dry_run {
            if let Err(e) = self.store.call(|s| s.fold_written()).await {
                tracing::warn!(job = %job.name, error = %e, "could not fold the run's writes into the checkpoints");
            }
        }
        report.calls = stats.snapshot();
        if let Some(run_id) = run_id {
            let status = if report.ok() {
                RunStatus::Ok
            } else if report.error.is_some() {
                RunStatus::Failed
            } else {
                RunStatus::Partial
            };
            let message = report.error.clone();
            let finished = self
                .store
                .call(move |s| s.finish_run(run_id, status, message.as_deref(), Utc::now()))
                .await;
            if let Err(e) = finished {
                tracing::warn!(error = %e, "could not record the end of the run");
            }
        }
        if let Some(l) = lease {
            l.release().await;
        }
        report
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_months(
        &self,
        job: &Job,
        mapping: &Arc<Mapping>,
        opts: &Options,
        months: &[Month],
        stats: Arc<CallStats>,
        lost: Arc<AtomicBool>,
        run_id: Option<i64>,
        report: &mut JobReport,
    ) -> Result<(), JobError> {
        // What a killed run logged but did not fold must be seen by the look-ups.
        self.store.call(|s| s.fold_written()).await?;
        let months = &self.due_months(job, opts, months, report).await?;
        let source =
            SourceClient::new(&job.source, self.http.clone(), stats.clone()).ok_or_else(|| {
                JobError::Setup(format!(
                    "source type \"{}\" is not supported by this version of attendsync",
                    job.source.kind()
                ))
            })?;
        // A dry run writes nothing, but a rerun reads the form even then.
        let writer = if opts.dry_run && !opts.is_rerun() {
            None
        } else {
            let jdy = Arc::new(Jiandaoyun::new(
                self.http.clone(),
                &job.target,
                stats.clone(),
            ));
            let widgets = jdy.widgets().await?;
            crate::form_check::require_fields(&mapping.fields(), &widgets)
                .map_err(JobError::Setup)?;
            let form = FormFields::from_widgets(mapping, &widgets).map_err(JobError::Setup)?;
            let writer = Writer::new(jdy, self.store.clone(), &job.name, form);
            let settled = if opts.dry_run {
                Outcome::default()
            } else {
                writer.settle_pending().await?
            };
            if settled.created > 0 || !settled.failed.is_empty() {
                tracing::info!(job = %job.name, created = settled.created, failed = settled.failed.len(),
                    "settled batches left pending by an earlier run");
            }
            Some(Arc::new(writer))
        };
        source.login().await?;
        // The first month is pulled while the organisation is listed; later months
        // reuse the list. A metered source holds its first month to what the
        // budget allows whatever the head count, and plans the rest once it is
        // known; a dry run lists first, to show the plan before any metered call.
        let mut known: Option<Arc<UserIds>> = None;
        let mut budget = None;
        let mut metering = None;
        let mut months = months.to_vec();
        if let (Some(per), Source::Dingtalk(cfg)) =
            (source.metered_calls_per_employee(), &job.source)
        {
            let period = crate::budget::quota_period(opts.now);
            let (j, p) = (job.name.clone(), period.clone());
            let spent = self.store.call(move |s| s.metered_spent(&j, &p)).await?;
            let mut meter = Metering {
                months: months.clone(),
                per_employee: u64::from(per),
                budget: u64::from(cfg.monthly_call_budget),
                spent_before: spent,
                period,
                plan: None,
            };
            let unplanned = meter.plan_for(usize::MAX);
            months = unplanned.months();
            warn_zeroed_columns(job, cfg, &months, opts.now);
            budget = Some(Arc::new(Budget::new(
                &unplanned,
                &source,
                &self.store,
                &job.name,
                &self.shutdown,
            )));
            if opts.dry_run {
                known = Some(meter.list_first(&source, &job.name, report).await?);
            }
            metering = Some(meter);
        }
        tracing::info!(job = %job.name, months = ?months.iter().map(|m| m.to_string()).collect::<Vec<_>>(), "starting");
        let run = Run {
            job,
            mapping,
            opts,
            source,
            writer,
            lost,
            budget,
        };
        let first = months.first().copied();
        for month in months {
            if self.shutdown.is_triggered() {
                return Err(JobError::Setup(
                    "interrupted by a shutdown request before this month".into(),
                ));
            }
            let mut m = MonthReport::new(&job.name, month);
            if let (Some(meter), None, false) = (&mut metering, &known, Some(month) == first) {
                // The first month stopped before the organisation was listed
                // completely: list it now, to plan this month.
                known = Some(meter.list_first(&run.source, &job.name, report).await?);
            }
            let mut roster = match (&known, &metering) {
                (Some(all), _) => Roster::known(all),
                (None, Some(meter)) => Roster::discover(
                    &run.source,
                    meter.first_month_cap(),
                    Some(meter.announcer(&job.name)),
                ),
                (None, None) => Roster::discover(&run.source, usize::MAX, None),
            };
            if let (Some(plan), Roster::Known { all, take }) =
                (metering.as_ref().and_then(|m| m.plan.as_ref()), &mut roster)
            {
                let allowed = plan.allowance(month);
                if allowed < all.len() {
                    m.skipped = (all.len() - allowed) as u64;
                    m.month_error = plan.skipped(month);
                    *take = allowed;
                }
            }
            let (result, discovered) = self.sync_month(&run, month, roster, &mut m).await;
            m.warn_empty_fields(&job.name, mapping);
            if let Some(b) = &run.budget {
                b.record().await?;
            }
            if let Some(all) = discovered {
                if let Some(meter) = &mut metering {
                    // Logged already, the moment the listing ended.
                    let plan = meter.settle(all.len());
                    report.plan = Some(plan.describe());
                    m.month_error = plan.skipped(month);
                }
                known = Some(Arc::new(all));
            }
            let fatal = match result {
                Ok(()) => None,
                Err(JobError::Source(e)) if e.is_transient() => {
                    m.month_error = Some(format!("{month}: {e}"));
                    None
                }
                Err(e) => {
                    m.month_error = Some(format!("{month}: {e}"));
                    Some(e)
                }
            };
            log_month(&m);
            if let Some(run_id) = run_id {
                let (j, ms, c, err) = (
                    job.name.clone(),
                    month.to_string(),
                    m.counts,
                    m.month_error.clone(),
                );
                self.store
                    .call(move |s| s.save_month(run_id, &j, &ms, &c, err.as_deref()))
                    .await?;
                if m.ok() && month < Month::current(opts.now, job.timezone) {
                    // Synced in full after it closed: owed no more.
                    let (j, ms) = (job.name.clone(), month.to_string());
                    self.store.call(move |s| s.settle_month(&j, &ms)).await?;
                }
            }
            report.months.push(m);
            if let Some(e) = fatal {
                return Err(e);
            }
        }
        Ok(())
    }

    async fn sync_month(
        &self,
        run: &Run<'_>,
        month: Month,
        roster: Roster,
        m: &mut MonthReport,
    ) -> (Result<(), JobError>, Option<UserIds>) {
        let (job, opts, source) = (run.job, run.opts, &run.source);
        let lost = &*run.lost;
        // A month cut short by the budget is not complete: nobody is "gone".
        let mut complete = m.skipped == 0;
        let found = Arc::new(AtomicU64::new(0));
        self.progress
            .month_started(&job.name, &m.month, roster.known_len());
        let vars = Vars {
            month,
            timezone: job.timezone,
            job: job.name.clone(),
            source: source.kind().to_string(),
            synced_at: opts.now,
        };
        let mut state = MonthState::default();
        if let (true, Some(writer)) = (opts.is_rerun(), &run.writer) {
            // Read before anything is pulled: a metered source spends nothing
            // when the form cannot be read.
            let month_keys = run.mapping.bind(&vars).constant_key_values();
            match FormMonth::read(writer, &month_keys).await {
                Ok(form) => state.form = Some(form),
                Err(e) => return (Err(e.into()), None),
            }
        }
        let (tx, mut rx) = mpsc::channel::<Result<Pulled, SourceError>>(PIPELINE_DEPTH);
        let spec = MonthPull {
            source: source.clone(),
            month,
            now: opts.now,
            tz: job.timezone,
            budget: run.budget.clone(),
        };
        let producer = tokio::spawn(roster.pull(spec, tx, found.clone()));
        let mut writing: JoinSet<(u64, Result<Outcome, WriteError>)> = JoinSet::new();
        let mut outcome = Ok(());
        while let Some(pulled) = rx.recv().await {
            let mut pulled = match pulled {
                Ok(p) => p,
                Err(e) => {
                    complete = false;
                    outcome = Err(e.into());
                    break;
                }
            };
            // A pull that stopped partway still hands over what it paid for;
            // those records are written, then the month stops.
            let stopped = pulled.stopped.take();
            // A lost lease stops before writing (another process may run the
            // job now); a shutdown request writes what was pulled, then stops.
            if let Some(e) = lease_lost(lost) {
                complete = false;
                outcome = Err(e);
                break;
            }
            let writes = match self
                .plan_chunk(run, month, &vars, pulled, &mut state, m)
                .await
            {
                Ok(w) => w,
                Err(e) => {
                    complete = false;
                    outcome = Err(e);
                    break;
                }
            };
            if let (Some(writer), false) = (&run.writer, writes.is_empty() || opts.dry_run) {
                writing.spawn(writes.send(writer.clone(), m.month.clone()));
            }
            while writing.len() >= WRITE_CONCURRENCY {
                if let Err(e) = self.join_write(&mut writing, job, month, m).await {
                    complete = false;
                    outcome = Err(e);
                    break;
                }
            }
            if outcome.is_err() {
                break;
            }
            if let Some(b) = &run.budget {
                if let Err(e) = b.record().await {
                    outcome = Err(e.into());
                    break;
                }
            }
            self.progress
                .chunk_done(&job.name, &m.month, &m.counts, found.load(Ordering::SeqCst));
            if let Some(e) = self.interruption(lost).or(stopped.map(Into::into)) {
                complete = false;
                outcome = Err(e);
                break;
            }
        }
        while !writing.is_empty() {
            if let Err(e) = self.join_write(&mut writing, job, month, m).await {
                complete = false;
                if outcome.is_ok() {
                    outcome = Err(e);
                }
            }
        }
        drop(rx);
        self.progress.month_done(&job.name, &m.month);
        let listing = producer.await.unwrap_or_default();
        if listing.over_cap > 0 {
            // Not pulled for the budget: the month is not complete, nobody is "gone".
            m.skipped = listing.over_cap as u64;
            complete = false;
        }
        let discovered = listing.all;
        if state.absent > 0 {
            tracing::info!(job = %job.name, %month, employees = state.absent,
                "employees without a report this month (left, outside the app's visible range, or no check-in rule)");
        }
        if complete && outcome.is_ok() {
            outcome = self.handle_missing(run, month, state, m).await;
        }
        (outcome, discovered)
    }

    /// Why the month must stop before the next chunk, if it must.
    fn interruption(&self, lost: &AtomicBool) -> Option<JobError> {
        if self.shutdown.is_triggered() {
            return Some(JobError::Setup(
                "interrupted by a shutdown request; the next run resumes here".into(),
            ));
        }
        lease_lost(lost)
    }

    /// Lists records gone from the source, and with `rerun --prune` deletes
    /// those known to be gone (within the guard), every copy of each.
    async fn handle_missing(
        &self,
        run: &Run<'_>,
        month: Month,
        state: MonthState,
        m: &mut MonthReport,
    ) -> Result<(), JobError> {
        let (job, opts) = (run.job, run.opts);
        let produced = state.seen.len();
        let stored = self.find_missing(job, month, state.seen).await?;
        let mut month_keys = produced + stored.len();
        // Key → the ids of the records holding it (an empty id: look it up).
        let missing: Vec<(String, Vec<String>)> = match state.form.filter(FormMonth::is_whole) {
            Some(form) => {
                month_keys = month_keys.max(form.total());
                let left = form.left_over();
                self.forget_stale(job, month, opts, stored, &left).await?;
                left.into_iter().map(|l| (l.key, l.data_ids)).collect()
            }
            None => stored.into_iter().map(|(k, id)| (k, vec![id])).collect(),
        };
        let positions = employee_positions(run.mapping);
        let gone: Vec<&(String, Vec<String>)> = missing
            .iter()
            .filter(|(key, _)| confirmed_gone(key, &positions, &state.answered_empty))
            .collect();
        m.counts.missing = missing.len() as u64;
        m.missing_keys = missing.iter().map(|(k, _)| k.clone()).collect();
        m.gone_keys = gone.iter().map(|(k, _)| k.clone()).collect();
        let prune = opts.prune();
        if prune == Prune::Keep || gone.is_empty() {
            return Ok(());
        }
        if prune == Prune::Guarded {
            if let Some(refusal) = prune_refusal(gone.len(), month_keys, m.counts.pulled) {
                tracing::error!(job = %job.name, %month, "{refusal}");
                m.month_error = Some(refusal);
                return Ok(());
            }
        }
        if let (Some(writer), false) = (&run.writer, opts.dry_run) {
            let records = gone
                .iter()
                .flat_map(|(key, ids)| ids.iter().map(move |id| (key.clone(), id.clone())))
                .collect();
            m.pruned = writer.delete(&month.to_string(), records).await?;
            tracing::info!(job = %job.name, %month, deleted = m.pruned, "pruned records gone from the source");
        }
        Ok(())
    }

    /// Forgets stored keys the form no longer holds and the source did not
    /// produce: deleted by hand, they are gone from the form already.
    async fn forget_stale(
        &self,
        job: &Job,
        month: Month,
        opts: &Options,
        stored: Vec<(String, String)>,
        left: &[crate::rerun::LeftOver],
    ) -> Result<(), StoreError> {
        let in_form: HashSet<String> = left.iter().map(|l| canonical_key(&l.key)).collect();
        let stale: Vec<String> = stored
            .into_iter()
            .map(|(key, _)| key)
            .filter(|k| !in_form.contains(&canonical_key(k)))
            .collect();
        if stale.is_empty() || opts.dry_run {
            return Ok(());
        }
        let (j, ms) = (job.name.clone(), month.to_string());
        self.store
            .call(move |s| s.delete_checkpoints(&j, &ms, &stale))
            .await
    }

    /// The months this run syncs: `--month`s as given; otherwise the default
    /// months, recorded as due, and every month still owed within the job's
    /// `max_owed_months`, oldest first. An owed month older than that is not
    /// pulled: it is reported as a failed month, which alerts.
    async fn due_months(
        &self,
        job: &Job,
        opts: &Options,
        defaults: &[Month],
        report: &mut JobReport,
    ) -> Result<Vec<Month>, JobError> {
        if !opts.months.is_empty() {
            return Ok(defaults.to_vec());
        }
        let (j, now, dry_run) = (job.name.clone(), opts.now, opts.dry_run);
        let due: Vec<(String, DateTime<Utc>)> = defaults
            .iter()
            .map(|m| (m.to_string(), m.next().start_in(job.timezone)))
            .collect();
        let owed = self
            .store
            .call(move |s| {
                if !dry_run {
                    s.owe_months(&j, &due, now)?;
                }
                s.owed_months(&j)
            })
            .await?;
        let owed: Vec<Month> = owed.iter().filter_map(|m| m.parse().ok()).collect();
        let current = Month::current(opts.now, job.timezone);
        let (months, too_old) = with_owed(defaults, &owed, current, job.max_owed_months);
        if months.len() > defaults.len() {
            let extra: Vec<String> = months
                .iter()
                .filter(|m| !defaults.contains(m))
                .map(ToString::to_string)
                .collect();
            tracing::info!(job = %job.name, owed = ?extra, "also syncing months owed: not yet synced in full since they closed");
        }
        for month in too_old {
            let mut m = MonthReport::new(&job.name, month);
            m.month_error = Some(format!(
                "owed: not synced in full since it closed, and more than max_owed_months ({}) back, so runs no longer pull it; \
                 run `attendsync rerun {} --month {month}` to sync it",
                job.max_owed_months, job.name
            ));
            log_month(&m);
            report.months.push(m);
        }
        Ok(months)
    }

    /// Waits for one chunk's writes and adds them to the report. A chunk whose
    /// writes failed counts its records as failed, so the month's counts add up.
    async fn join_write(
        &self,
        writing: &mut JoinSet<(u64, Result<Outcome, WriteError>)>,
        job: &Job,
        month: Month,
        m: &mut MonthReport,
    ) -> Result<(), JobError> {
        match writing.join_next().await {
            Some(Ok((_, Ok(out)))) => {
                record_outcome(&job.name, month, out, m);
                Ok(())
            }
            Some(Ok((records, Err(e)))) => {
                m.counts.failed += records;
                Err(e.into())
            }
            Some(Err(e)) => Err(JobError::Setup(format!("a write task failed: {e}"))),
            None => Ok(()),
        }
    }

    /// Maps and diffs one chunk: counts failures and unchanged records, prints
    /// dry-run records, and returns the writes it needs. A rerun diffs with
    /// the form, a run with the store.
    async fn plan_chunk(
        &self,
        run: &Run<'_>,
        month: Month,
        vars: &Vars,
        pulled: Pulled,
        state: &mut MonthState,
        m: &mut MonthReport,
    ) -> Result<ChunkWrites, JobError> {
        let (job, opts) = (run.job, run.opts);
        // Mapping and hashing a chunk is the CPU-heavy part of a sync: done on a
        // blocking thread, it never delays a paced request that is due to go out.
        let (mapping, vars, sink) = (run.mapping.clone(), vars.clone(), self.dry_run_sink.clone());
        let (mut taken, dry_run) = (std::mem::take(&mut state.seen), opts.dry_run);
        let (taken, mapped) = tokio::task::spawn_blocking(move || {
            let mapped = map_chunk(
                &mapping,
                &vars,
                pulled,
                &mut taken,
                dry_run.then_some(&sink),
            );
            (taken, mapped)
        })
        .await
        .map_err(|e| JobError::Setup(format!("mapping a chunk failed: {e}")))?;
        state.seen = taken;
        let mapped = mapped?;
        m.counts.pulled += mapped.pulled;
        state.absent += mapped.absent.len();
        if run.source.absence_proves_gone() {
            state.answered_empty.extend(mapped.absent);
        }
        m.fill.absorb(mapped.fill);
        for message in mapped.errors {
            m.error(format!("{month} {message}"));
        }
        let writes = match (&mut state.form, &run.writer) {
            (Some(form), Some(writer)) => {
                let records = mapped
                    .records
                    .into_iter()
                    .map(Planned::into_pending)
                    .collect();
                repair_chunk(form, writer, records, opts.force(), m).await?
            }
            _ => self.diff_with_store(job, month, mapped.records, m).await?,
        };
        m.counts.unchanged += writes.adopt.len() as u64;
        if opts.dry_run {
            m.counts.created += writes.creates.len() as u64;
            m.counts.updated += writes.updates.len() as u64;
            return Ok(ChunkWrites::default());
        }
        Ok(writes)
    }

    /// The writes a chunk needs by the store: new keys created, changed ones
    /// updated, the rest counted unchanged.
    async fn diff_with_store(
        &self,
        job: &Job,
        month: Month,
        records: Vec<Planned>,
        m: &mut MonthReport,
    ) -> Result<ChunkWrites, JobError> {
        let keys: Vec<String> = records.iter().map(|r| r.key.clone()).collect();
        let (j, ms) = (job.name.clone(), month.to_string());
        let known = self
            .store
            .call(move |s| s.checkpoints_for(&j, &ms, &keys))
            .await?;
        let mut writes = ChunkWrites::default();
        for record in records {
            match known.get(&record.key) {
                None => writes.creates.push(record.into_pending()),
                Some(cp) if cp.content_hash == record.content_hash => m.counts.unchanged += 1,
                Some(cp) => writes
                    .updates
                    .push((cp.data_id.clone(), record.into_pending())),
            }
        }
        Ok(writes)
    }

    /// Records (key, data id) the store holds for the month that the source no
    /// longer returned.
    async fn find_missing(
        &self,
        job: &Job,
        month: Month,
        seen_hashes: HashSet<u64>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let (j, ms) = (job.name.clone(), month.to_string());
        self.store
            .call(move |s| {
                let mut out = Vec::new();
                s.for_each_key(&j, &ms, |key, data_id| {
                    if !seen_hashes.contains(&small_hash(key)) {
                        out.push((key.to_string(), data_id.to_string()));
                    }
                })?;
                Ok(out)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A month's errors reach the log, stdout, `runs.message` and alerts: employee
    /// data and vendor text in them are escaped, on one line.
    #[test]
    fn month_errors_are_escaped() {
        let month = Month::new(2026, 10).expect("month");
        let mut m = MonthReport::new("job", month);
        m.error("record u1\n* * * * * root sh\x1b[2J: rejected".to_string());
        assert_eq!(
            m.errors,
            [r"record u1\n* * * * * root sh\u{1b}[2J: rejected"]
        );
        assert_eq!(m.counts.failed, 1);
    }
}
