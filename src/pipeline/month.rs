//! One month: the pull task hands chunks over a bounded channel; each is mapped,
//! diffed and its writes sent as their own task, so pulling, mapping and writing
//! overlap and memory holds a few chunks at most. A complete month then lists
//! (and with `rerun --prune` deletes) what the source no longer returns.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinSet};

use super::ctx::{lease_lost, MonthCtx};
use super::pull::{pull_ended, Listing, MonthPull, Roster};
use super::report::MonthReport;
use super::send::Writing;
use super::JobError;
use crate::pipeline::rerun::FormMonth;
use crate::pipeline::write::InForm;
use crate::roster::UserIds;
use crate::source::{Pulled, SourceError};

/// Chunks pulled ahead of the writer.
const PIPELINE_DEPTH: usize = 2;
/// Chunks being written at once. The pacers keep every endpoint within its
/// quota; concurrency only hides each call's latency so the quota is what limits.
const WRITE_CONCURRENCY: usize = 4;

/// How far a month got: its first failure, and whether every record was seen.
struct Progress {
    outcome: Result<(), JobError>,
    /// Only a complete month tells what is gone from the source.
    complete: bool,
}

impl Progress {
    /// A month cut short by the budget is not complete: nobody is "gone".
    fn new(m: &MonthReport) -> Self {
        Progress {
            outcome: Ok(()),
            complete: m.skipped == 0,
        }
    }

    /// The month stops short; the first failure is the one reported.
    fn fail(&mut self, e: JobError) {
        self.complete = false;
        if self.outcome.is_ok() {
            self.outcome = Err(e);
        }
    }

    /// Takes what the pull task left: the organisation when it listed it in
    /// full. A task that panicked or was cancelled leaves the month
    /// incomplete and failed; employees beyond the budget leave it incomplete.
    fn pull_ended(
        &mut self,
        joined: Result<Listing, JoinError>,
        m: &mut MonthReport,
    ) -> Option<UserIds> {
        let listing = match pull_ended(joined) {
            Ok(listing) => listing,
            Err(e) => {
                self.fail(e);
                return None;
            }
        };
        if listing.over_cap > 0 {
            // Not pulled for the budget: the month is not complete, nobody is "gone".
            m.skipped = listing.over_cap as u64;
            self.complete = false;
        }
        listing.all
    }

    /// Whether the month may list (and prune) records gone from the source.
    fn saw_everything(&self) -> bool {
        self.complete && self.outcome.is_ok()
    }
}

impl MonthCtx<'_> {
    /// Syncs the month; comes back with how it ended and the organisation when
    /// this month's pull listed it in full.
    pub(super) async fn sync(&mut self, roster: Roster) -> (Result<(), JobError>, Option<UserIds>) {
        let run = self.run;
        let (job, opts) = (run.job, run.opts);
        let mut progress = Progress::new(&self.report);
        let found = Arc::new(AtomicU64::new(0));
        run.syncer
            .progress
            .month_started(&job.name, &self.report.month, roster.known_len());
        if let Err(e) = self.read_form().await {
            return (Err(e), None);
        }
        if let Err(e) = self.start_month_check().await {
            return (Err(e), None);
        }
        let (tx, mut rx) = mpsc::channel::<Result<Pulled, SourceError>>(PIPELINE_DEPTH);
        let halt = Arc::new(AtomicBool::new(false));
        let spec = MonthPull {
            source: run.source.clone(),
            month: self.month,
            now: opts.now,
            tz: job.timezone,
            budget: run.budget.clone(),
            halt: halt.clone(),
        };
        let producer = tokio::spawn(roster.pull(spec, tx, found.clone()));
        let mut writing: Writing = JoinSet::new();
        while let Some(pulled) = rx.recv().await {
            match self.chunk(pulled, &mut writing, &found).await {
                Ok(None) => {}
                // The pull stops, but the chunks already under way beside
                // the one that stopped still hand on what they pulled (a
                // metered source paid for it): it is written, then the
                // channel closes.
                Ok(Some(stop)) => {
                    halt.store(true, Ordering::SeqCst);
                    progress.fail(stop);
                }
                Err(e) => {
                    halt.store(true, Ordering::SeqCst);
                    progress.fail(e);
                    break;
                }
            }
        }
        while !writing.is_empty() {
            if let Err(e) = self.join_write(&mut writing).await {
                progress.fail(e);
            }
        }
        drop(rx);
        // A month that created nothing never needed its answer.
        if let Some(check) = self.state.early_check.take() {
            check.abort();
        }
        run.syncer
            .progress
            .month_done(&job.name, &self.report.month);
        let discovered = progress.pull_ended(producer.await, &mut self.report);
        if !self.state.asked_absent.is_empty() {
            let names: Vec<String> = (self.state.asked_absent.iter())
                .map(|id| crate::text::clean(id).into_owned())
                .collect();
            let warning = format!(
                "no report this month for employee(s) asked for: {} (not in the organisation, outside the app's visible range, or no check-in rule)",
                names.join(", ")
            );
            self.report.warn(&job.name, warning);
        }
        if self.state.absent > 0 {
            tracing::info!(job = %job.name, month = %self.month, employees = self.state.absent,
                "employees without a report this month (left, outside the app's visible range, or no check-in rule)");
        }
        if progress.saw_everything() {
            progress.outcome = self.handle_missing().await;
        }
        (progress.outcome, discovered)
    }

    /// `rerun`: reads the month as the form holds it, before anything is
    /// pulled: a metered source spends nothing when the form cannot be read.
    async fn read_form(&mut self) -> Result<(), JobError> {
        let run = self.run;
        if let (true, Some(writer)) = (run.opts.is_rerun(), &run.writer) {
            // Some employees: their keys are looked up chunk by chunk rather
            // than the whole month read.
            let month_keys = match run.opts.some_employees() {
                true => Vec::new(),
                false => run.mapping.bind(&self.vars).constant_key_values(),
            };
            self.state.form = Some(FormMonth::read(writer, &month_keys).await?);
        }
        Ok(())
    }

    /// One pulled chunk: mapped, diffed, its writes started. An error stops
    /// the month at once; `Some` is why the pull stops (the source's error or
    /// stop, a shutdown request) once the chunks under way are written.
    async fn chunk(
        &mut self,
        pulled: Result<Pulled, SourceError>,
        writing: &mut Writing,
        found: &AtomicU64,
    ) -> Result<Option<JobError>, JobError> {
        let run = self.run;
        let mut pulled = match pulled {
            Ok(pulled) => pulled,
            Err(e) => return Ok(Some(e.into())),
        };
        // A pull that stopped partway still hands over what it paid for;
        // those records are written, then the month stops.
        let stopped = pulled.stopped.take();
        // A lost lease stops before writing (another process may run the
        // job now); a shutdown request writes what was pulled, then stops.
        if let Some(e) = lease_lost(&run.lost) {
            return Err(e);
        }
        let records = self.map(pulled).await?;
        let mut writes = self.diff(records).await?;
        if !writes.creates.is_empty() && writes.in_form == InForm::Unknown {
            // The chunk's records are written by no one when the check fails:
            // counted failed, as a batch whose own look-up failed would be.
            writes.in_form = self.creates_in_form().await.inspect_err(|_| {
                self.report.counts.failed += writes.records();
            })?;
        }
        if let (Some(writer), false) = (&run.writer, writes.is_empty() || run.opts.dry_run) {
            writing.spawn(writes.send(writer.clone(), self.month));
        }
        while writing.len() >= WRITE_CONCURRENCY {
            self.join_write(writing).await?;
        }
        if let Some(b) = &run.budget {
            b.record().await?;
        }
        run.syncer.progress.chunk_done(
            &run.job.name,
            &self.report.month,
            &self.report.counts,
            found.load(Ordering::SeqCst),
        );
        if let Some(e) = lease_lost(&run.lost) {
            return Err(e);
        }
        Ok(run
            .syncer
            .interruption(&run.lost)
            .or(stopped.map(Into::into)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::month::Month;

    fn report() -> MonthReport {
        MonthReport::new("job", Month::new(2026, 10).expect("month"))
    }

    /// `producer.await.unwrap_or_default()` once turned a panicked pull into
    /// an empty, complete listing: with `rerun --prune`, every record not seen
    /// would have been deleted.
    #[tokio::test]
    async fn a_failed_pull_task_leaves_the_month_incomplete_so_nothing_is_pruned() {
        let mut m = report();
        let mut progress = Progress::new(&m);
        assert!(progress.saw_everything());
        let task = tokio::spawn(async {
            if true {
                panic!("simulated pull failure");
            }
            Listing::default()
        });
        let discovered = progress.pull_ended(task.await, &mut m);
        assert!(discovered.is_none());
        assert!(!progress.complete);
        assert!(
            !progress.saw_everything(),
            "a month with a failed pull must not look for gone records"
        );
        assert!(matches!(progress.outcome, Err(JobError::Setup(_))));
    }

    #[tokio::test]
    async fn a_cancelled_pull_task_leaves_the_month_incomplete() {
        let mut m = report();
        let mut progress = Progress::new(&m);
        let task = tokio::spawn(async {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            Listing::default()
        });
        task.abort();
        assert!(progress.pull_ended(task.await, &mut m).is_none());
        assert!(!progress.saw_everything());
    }

    #[tokio::test]
    async fn a_pull_within_the_budget_keeps_the_month_complete() {
        let mut m = report();
        let mut progress = Progress::new(&m);
        let task = tokio::spawn(async {
            Listing {
                all: Some(["u1"].into_iter().collect()),
                over_cap: 0,
            }
        });
        let discovered = progress.pull_ended(task.await, &mut m);
        assert_eq!(discovered.map(|d| d.len()), Some(1));
        assert!(progress.saw_everything());
    }

    #[tokio::test]
    async fn employees_beyond_the_budget_are_skipped_and_the_month_incomplete() {
        let mut m = report();
        let mut progress = Progress::new(&m);
        let task = tokio::spawn(async {
            Listing {
                all: Some(["u1"].into_iter().collect()),
                over_cap: 4,
            }
        });
        progress.pull_ended(task.await, &mut m);
        assert_eq!(m.skipped, 4);
        assert!(!progress.saw_everything());
        assert!(progress.outcome.is_ok());
    }

    #[test]
    fn the_first_failure_is_the_one_reported() {
        let mut progress = Progress::new(&report());
        progress.fail(JobError::Setup("first".into()));
        progress.fail(JobError::Setup("second".into()));
        assert!(matches!(&progress.outcome, Err(JobError::Setup(s)) if s == "first"));
    }
}
