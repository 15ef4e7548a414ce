//! Plan: which months a run syncs (the default months and those still owed),
//! and where each month's employees come from.
//!
//! The metered-source section below serves any source with a call quota
//! ([`crate::source::Metered`]): its monthly call budget (`budget.rs`) and the
//! plan of employees per month within it. It is the one place the pipeline
//! knows about a metered source.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::pull::{OnListed, Roster};
use super::report::{log_month, JobReport, MonthReport};
use super::{JobError, Options, Syncer};
use crate::budget::{Meter, Plan, StoreLedger, RESERVE_BLOCK};
use crate::config::job::Job;
use crate::month::{with_owed, Month};
use crate::roster::UserIds;
use crate::source::{Metered, Source, SourceError};
use crate::store::{Store, StoreError};

impl Syncer {
    /// The months this run syncs: `--month`s as given; otherwise the default
    /// months, recorded as due, and every month still owed within the job's
    /// `max_owed_months`, oldest first. An owed month older than that is not
    /// pulled: it is reported as a failed month, which alerts.
    pub(super) async fn due_months(
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
        let due: Vec<(Month, DateTime<Utc>)> = defaults
            .iter()
            .map(|m| (*m, m.next().start_in(job.timezone)))
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

    /// The months in the order they are synced, and for a metered source the
    /// budget every metered call passes. A metered source holds its first month
    /// to what the budget allows whatever the head count, and plans the rest
    /// once it is known; a dry run lists first, to show the plan before any
    /// metered call.
    pub(super) async fn plan(
        &self,
        job: &Job,
        opts: &Options,
        source: &dyn Source,
        mut months: Vec<Month>,
        report: &mut JobReport,
    ) -> Result<(Vec<Month>, Option<Arc<Budget>>, Planner), JobError> {
        // `--employee`: those employees are the roster; nobody is listed.
        let mut known: Option<Arc<UserIds>> = opts
            .some_employees()
            .then(|| Arc::new(opts.employees.iter().collect()));
        let mut budget = None;
        let mut metering = None;
        if let Some(metered) = source.metering() {
            let costs = metered.costs();
            let period = crate::budget::quota_period(opts.now);
            let j = job.name.clone();
            let spent = self
                .store
                .call(move |s| s.metered_spent(&j, period))
                .await?;
            let meter = Metering {
                months: months.clone(),
                per_employee: u64::from(costs.per_employee),
                budget: costs.monthly_budget,
                spent_before: spent,
                period,
                plan: None,
            };
            let unplanned = meter.plan_for(usize::MAX);
            months = unplanned.months();
            budget = Some(Arc::new(Budget::new(
                &unplanned,
                metered,
                &self.store,
                &job.name,
                &self.shutdown,
            )));
            metering = Some(meter);
        }
        source.warn_months(&job.name, &months, opts.now, job.timezone);
        if let (Some(meter), true, None) = (&mut metering, opts.dry_run, &known) {
            known = Some(meter.list_first(source, &job.name, report).await?);
        }
        let planner = Planner {
            known,
            metering,
            first: months.first().copied(),
        };
        Ok((months, budget, planner))
    }
}

/// Where each month of a run gets its employees: the first month is pulled
/// while the organisation is listed; later months reuse the list.
pub(super) struct Planner {
    /// The organisation as listed by an earlier month of this run (or before it).
    known: Option<Arc<UserIds>>,
    /// A metered source's call plan.
    metering: Option<Metering>,
    first: Option<Month>,
}

impl Planner {
    /// The roster of `month`; for a metered source, the employees the plan
    /// leaves out of it are counted as skipped.
    pub(super) async fn roster(
        &mut self,
        source: &Arc<dyn Source>,
        month: Month,
        m: &mut MonthReport,
        report: &mut JobReport,
    ) -> Result<Roster, JobError> {
        if let (Some(meter), None, false) =
            (&mut self.metering, &self.known, Some(month) == self.first)
        {
            // The first month stopped before the organisation was listed
            // completely: list it now, to plan this month.
            self.known = Some(meter.list_first(source.as_ref(), &m.job, report).await?);
        }
        let mut roster = match (&self.known, &self.metering) {
            (Some(all), _) => Roster::known(all),
            (None, Some(meter)) => Roster::discover(
                source,
                meter.first_month_cap(),
                Some(meter.announcer(&m.job)),
            ),
            (None, None) => Roster::discover(source, usize::MAX, None),
        };
        if let (Some(plan), Roster::Known { all, take }) = (
            self.metering.as_ref().and_then(|m| m.plan.as_ref()),
            &mut roster,
        ) {
            let allowed = plan.allowance(month);
            if allowed < all.len() {
                m.skipped = (all.len() - allowed) as u64;
                m.month_error = plan.skipped(month);
                *take = allowed;
            }
        }
        Ok(roster)
    }

    /// Keeps the organisation a month's pull listed in full, and plans on it.
    pub(super) fn learnt(
        &mut self,
        discovered: Option<UserIds>,
        month: Month,
        m: &mut MonthReport,
        report: &mut JobReport,
    ) {
        if let Some(all) = discovered {
            if let Some(meter) = &mut self.metering {
                // Logged already, the moment the listing ended.
                let plan = meter.settle(all.len());
                report.plan = Some(plan.describe());
                m.month_error = plan.skipped(month);
            }
            self.known = Some(Arc::new(all));
        }
    }
}

// ---- A metered source: its call budget and plan ----

/// A metered source's call budget during a run: a hard cap on every metered
/// attempt (the [`Meter`], which counts each one in SQLite before it is sent,
/// reserving calls in blocks), and a guard checked before every chunk, so that
/// a chunk starts with no more employees than the budget can finish. Neither
/// needs a head count, so both hold while the directory is still being listed.
pub(super) struct Budget {
    budget: u64,
    /// Left in `period` when the run started.
    left: u64,
    per_employee: u64,
    fixed: u64,
    period: Month,
    meter: Arc<Meter>,
}

impl Budget {
    fn new(
        plan: &Plan,
        source: &dyn Metered,
        store: &Store,
        job: &str,
        shutdown: &crate::shutdown::Shutdown,
    ) -> Budget {
        let ledger = StoreLedger {
            store: store.clone(),
            job: job.to_owned(),
            period: plan.period,
        };
        let meter = Meter::new(Arc::new(ledger), plan.budget, plan.period, RESERVE_BLOCK)
            .stopping_on(shutdown.clone());
        let meter = Arc::new(meter);
        source.set_meter(meter.clone());
        Budget {
            budget: plan.budget,
            left: plan.left(),
            per_employee: plan.per_employee,
            fixed: plan.fixed,
            period: plan.period,
            meter,
        }
    }

    fn spent_by_run(&self) -> u64 {
        self.meter.taken()
    }

    /// Whether `employees` more employee-months fit in what is left.
    pub(super) fn allows(&self, employees: usize) -> bool {
        let committed = self.spent_by_run().max(self.fixed);
        committed + employees as u64 * self.per_employee <= self.left
    }

    /// How many more employee-months fit in what is left (see [`Budget::allows`]).
    pub(super) fn employees_left(&self) -> usize {
        let committed = self.spent_by_run().max(self.fixed);
        let left = self.left.saturating_sub(committed) / self.per_employee.max(1);
        usize::try_from(left).unwrap_or(usize::MAX)
    }

    pub(super) fn stop_reason(&self) -> SourceError {
        SourceError::BudgetSpent {
            budget: self.budget,
            left: self.left,
            period: self.period,
        }
    }

    /// Gives back the calls reserved in SQLite and not sent (every call sent
    /// was counted there before it left).
    pub(super) async fn record(&self) -> Result<(), StoreError> {
        self.meter.release_unused().await
    }
}

/// What a metered source's call plan is made of, and the plan once the head
/// count is known.
#[derive(Clone)]
struct Metering {
    months: Vec<Month>,
    per_employee: u64,
    budget: u64,
    spent_before: u64,
    period: Month,
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
            self.period,
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
        source: &dyn Source,
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
