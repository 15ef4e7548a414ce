//! What the stages share: the job run ([`Run`]) and one month of it
//! ([`MonthCtx`]), instead of long argument lists.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::plan::Budget;
use super::report::MonthReport;
use super::{JobError, Options, Syncer};
use crate::config::job::Job;
use crate::mapping::{Mapping, Vars};
use crate::month::Month;
use crate::pipeline::rerun::FormMonth;
use crate::pipeline::write::{InForm, Writer};
use crate::source::Source;

/// What every month of one job run shares.
pub(super) struct Run<'a> {
    pub(super) syncer: &'a Syncer,
    pub(super) job: &'a Job,
    pub(super) mapping: &'a Arc<Mapping>,
    pub(super) opts: &'a Options,
    pub(super) source: Arc<dyn Source>,
    /// None in a dry run of `run` (a rerun reads the form even then).
    pub(super) writer: Option<Arc<Writer>>,
    /// Set when the job's lease was lost.
    pub(super) lost: Arc<AtomicBool>,
    /// A metered source's call budget.
    pub(super) budget: Option<Arc<Budget>>,
    /// The target's write format for this mapping.
    pub(super) format: Arc<dyn crate::target::RecordFormat>,
    /// The run's row in SQLite (none in a dry run).
    pub(super) run_id: Option<i64>,
}

/// One month of a job run: what its stages read and what they add to.
pub(super) struct MonthCtx<'a> {
    pub(super) run: &'a Run<'a>,
    pub(super) month: Month,
    /// The `$variables` of the month's mapping.
    pub(super) vars: Vars,
    pub(super) report: MonthReport,
    pub(super) state: MonthState,
}

impl<'a> MonthCtx<'a> {
    pub(super) fn new(run: &'a Run<'a>, month: Month, report: MonthReport) -> Self {
        let vars = Vars {
            month,
            timezone: run.job.timezone,
            job: run.job.name.clone(),
            source: run.source.kind().to_string(),
            synced_at: run.opts.now,
        };
        MonthCtx {
            run,
            month,
            vars,
            report,
            state: MonthState::default(),
        }
    }
}

/// What one month's pass keeps between chunks.
#[derive(Default)]
pub(super) struct MonthState {
    /// Hashes of the keys produced so far: a key twice is an error, and stored
    /// keys not among them are gone from the source.
    pub(super) seen: HashSet<u64>,
    /// Employees the source answered for with nothing this month, when that
    /// proves their record gone (`Source::absence_proves_gone`).
    pub(super) answered_empty: HashSet<String>,
    /// Employees asked for and left out of the answers.
    pub(super) absent: usize,
    /// `--employee`: those of them the source had no report for.
    pub(super) asked_absent: Vec<String>,
    /// `rerun`: the month as the form holds it.
    pub(super) form: Option<FormMonth>,
    /// Whether the month's new keys may be in the form (asked once, when a
    /// chunk first has records to create).
    pub(super) in_form: Option<InForm>,
    /// The store holds records of the month this job wrote: the form holds
    /// them too, so asking whether it holds any would only cost a read.
    pub(super) stored_any: bool,
    /// The month check of a first sync, under way since before the pull.
    pub(super) early_check: Option<super::send::EarlyCheck>,
}

pub(super) fn lease_lost(lost: &AtomicBool) -> Option<JobError> {
    lost.load(Ordering::SeqCst).then(|| {
        JobError::Setup("the job lease was lost; another process may be running this job".into())
    })
}
