//! The monthly call budget of metered sources (DingTalk's standard edition counts
//! every attendance call against 5,000 a month). A run plans its calls, syncs
//! months in priority order (the previous month's final pull first), and stops
//! short of the budget rather than trigger the vendor's 90020. The first month's
//! share needs no head count (see `Metering` in `pipeline::plan`), so it is pulled while the
//! directory is listed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use crate::month::Month;
use crate::shutdown::Shutdown;
use crate::store::{Store, StoreError};

/// DingTalk's quota month is a calendar month in Beijing time, whatever the
/// job's timezone.
pub const QUOTA_TIMEZONE: chrono_tz::Tz = chrono_tz::Asia::Shanghai;

/// Metered calls reserved in SQLite with one write: a kill loses at most this
/// many (counted, never sent), and never under-counts.
pub const RESERVE_BLOCK: u64 = 20;

/// The quota month (Asia/Shanghai) that calls made at `now` count against.
pub fn quota_period(now: DateTime<Utc>) -> Month {
    Month::current(now, QUOTA_TIMEZONE)
}

/// What a run may spend, decided before its first metered call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub budget: u64,
    /// Spent earlier in `period` (counted in SQLite across runs).
    pub spent_before: u64,
    /// The calendar month the spending counts against (the quota's: Asia/Shanghai).
    pub period: Month,
    pub employees: usize,
    pub per_employee: u64,
    /// Calls spent once per run (e.g. the report-column lookup).
    pub fixed: u64,
    /// Months in priority order with the number of employees each may pull.
    pub allowed: Vec<(Month, usize)>,
}

impl Plan {
    pub fn make(
        months: &[Month],
        employees: usize,
        per_employee: u64,
        fixed: u64,
        budget: u64,
        spent_before: u64,
        period: Month,
    ) -> Plan {
        let mut ordered = months.to_vec();
        ordered.sort();
        ordered.dedup();
        let mut left = budget.saturating_sub(spent_before).saturating_sub(fixed);
        let allowed = ordered
            .into_iter()
            .map(|m| {
                let affordable = left.checked_div(per_employee).unwrap_or(u64::MAX);
                let n = employees.min(usize::try_from(affordable).unwrap_or(usize::MAX));
                left -= n as u64 * per_employee;
                (m, n)
            })
            .collect();
        Plan {
            budget,
            spent_before,
            period,
            employees,
            per_employee,
            fixed,
            allowed,
        }
    }

    /// Metered calls the whole run would need without a budget.
    pub fn needed(&self) -> u64 {
        let employee_months = (self.allowed.len() as u64).saturating_mul(self.employees as u64);
        self.fixed
            .saturating_add(employee_months.saturating_mul(self.per_employee))
    }

    /// Metered calls the plan will spend (retries aside).
    pub fn planned(&self) -> u64 {
        let pulls: usize = self.allowed.iter().map(|(_, n)| n).sum();
        let fixed = if pulls > 0 { self.fixed } else { 0 };
        fixed + pulls as u64 * self.per_employee
    }

    pub fn left(&self) -> u64 {
        self.budget.saturating_sub(self.spent_before)
    }

    pub fn allowance(&self, month: Month) -> usize {
        self.allowed
            .iter()
            .find(|(m, _)| *m == month)
            .map(|(_, n)| *n)
            .unwrap_or(0)
    }

    /// The months in the order they are synced.
    pub fn months(&self) -> Vec<Month> {
        self.allowed.iter().map(|(m, _)| *m).collect()
    }

    pub fn describe(&self) -> String {
        format!(
            "call plan: {} employees × {} month(s) × {} metered call(s) + {} = {} metered calls needed; \
             budget {}/month, {} spent in {}, {} left; this run spends at most {}",
            self.employees,
            self.allowed.len(),
            self.per_employee,
            self.fixed,
            self.needed(),
            self.budget,
            self.spent_before,
            self.period,
            self.left(),
            self.planned()
        )
    }

    /// For `check --remote`: why a run now would stop short of its plan, if it
    /// would (a warning; the run still syncs what fits).
    pub fn fit_warning(&self) -> Option<String> {
        let needed = self.needed();
        if needed > self.budget {
            Some(format!(
                "the call budget cannot fit this job: a run over {} employees × {} month(s) × {} call(s) + {} \
                 needs {needed} metered calls, more than `monthly_call_budget` = {}; each run syncs what fits \
                 and leaves the rest to next month (raise the budget, pull fewer columns or leave types, or sync less often)",
                self.employees,
                self.allowed.len(),
                self.per_employee,
                self.fixed,
                self.budget
            ))
        } else if needed > self.left() {
            Some(format!(
                "a run now needs {needed} metered calls but only {} of the {} budget are left in {} (Beijing time); \
                 it would stop short and the rest waits for next calendar month",
                self.left(),
                self.budget,
                self.period
            ))
        } else {
            None
        }
    }

    /// Why a month is (partly) skipped, if it is.
    pub fn skipped(&self, month: Month) -> Option<String> {
        let n = self.allowance(month);
        (n < self.employees).then(|| {
            format!(
                "skipped {} of {} employees: the monthly call budget ({}) has {} calls left in {} and this month needs {} per employee; \
                 the budget starts fresh next calendar month (raise `monthly_call_budget` or sync less often)",
                self.employees - n,
                self.employees,
                self.budget,
                self.left(),
                self.period,
                self.per_employee
            )
        })
    }
}

/// For plain `check`, which cannot know the head count without calling the
/// source: a warning when the budget cannot pay for even one employee-month
/// (the once-a-run calls plus one employee's calls).
pub fn fixed_warning(budget: u64, per_employee: u64, fixed: u64) -> Option<String> {
    let one = fixed + per_employee;
    (per_employee > 0 && one > budget).then(|| {
        format!(
            "the call budget cannot fit this job: `monthly_call_budget` = {budget} is less than the {fixed} call(s) \
             a run makes once plus {per_employee} per employee-month, so no employee can be synced \
             (`check --remote` counts the employees and checks the whole plan)"
        )
    })
}

/// Where metered calls are counted durably (SQLite in a run, memory in tests).
pub trait Ledger: Send + Sync {
    /// Adds up to `want` calls to the period's count without passing `cap`;
    /// returns how many were added.
    fn reserve(&self, want: u64, cap: u64) -> BoxFuture<'_, Result<u64, StoreError>>;
    /// Takes back `calls` reserved and never sent.
    fn release(&self, calls: u64) -> BoxFuture<'_, Result<(), StoreError>>;
}

/// A job's count of metered calls in one quota month, in the store.
pub struct StoreLedger {
    pub store: Store,
    pub job: String,
    pub period: Month,
}

impl Ledger for StoreLedger {
    fn reserve(&self, want: u64, cap: u64) -> BoxFuture<'_, Result<u64, StoreError>> {
        let (job, period) = (self.job.clone(), self.period);
        Box::pin(
            self.store
                .call(move |s| s.reserve_metered(&job, period, want, cap)),
        )
    }

    fn release(&self, calls: u64) -> BoxFuture<'_, Result<(), StoreError>> {
        let (job, period) = (self.job.clone(), self.period);
        Box::pin(
            self.store
                .call(move |s| s.release_metered(&job, period, calls)),
        )
    }
}

/// Why a metered call was not sent.
#[derive(Debug, thiserror::Error)]
pub enum MeterError {
    #[error(
        "stopped before exceeding the monthly call budget ({budget}): every call of {period} \
         (Beijing time) is spent, retries and token refreshes included; the rest waits for the \
         next calendar month (or raise `monthly_call_budget`)"
    )]
    Exhausted { budget: u64, period: Month },
    #[error("interrupted by a shutdown request; the next run resumes here")]
    Shutdown,
    #[error("cannot count metered calls, so none is sent: {0}")]
    Ledger(#[from] StoreError),
}

/// The hard cap on a metered source's calls: every attempt takes one call
/// before it is sent. Calls are reserved in the ledger [`RESERVE_BLOCK`] at a
/// time and unused ones given back by [`Meter::release_unused`], so the ledger
/// never counts fewer calls than were sent, nor more than the budget.
pub struct Meter {
    ledger: Arc<dyn Ledger>,
    budget: u64,
    period: Month,
    block: u64,
    stop: Option<Shutdown>,
    /// Reserved and not yet taken; `None` once the ledger granted nothing.
    held: tokio::sync::Mutex<Option<u64>>,
    taken: AtomicU64,
}

impl Meter {
    pub fn new(ledger: Arc<dyn Ledger>, budget: u64, period: Month, block: u64) -> Meter {
        Meter {
            ledger,
            budget,
            period,
            block: block.max(1),
            stop: None,
            held: tokio::sync::Mutex::new(Some(0)),
            taken: AtomicU64::new(0),
        }
    }

    /// After a shutdown request no further call is sent.
    pub fn stopping_on(mut self, shutdown: Shutdown) -> Meter {
        self.stop = Some(shutdown);
        self
    }

    /// Takes one call for an attempt about to be sent, or says why it must not be.
    pub async fn take(&self) -> Result<(), MeterError> {
        if self.stop.as_ref().is_some_and(Shutdown::is_triggered) {
            return Err(MeterError::Shutdown);
        }
        let mut held = self.held.lock().await;
        let left = match *held {
            Some(0) => self.ledger.reserve(self.block, self.budget).await?,
            Some(n) => n,
            None => 0,
        };
        if left == 0 {
            *held = None;
            return Err(MeterError::Exhausted {
                budget: self.budget,
                period: self.period,
            });
        }
        *held = Some(left - 1);
        self.taken.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Gives back the calls reserved and not taken (call it when no attempt is
    /// under way, e.g. after a chunk); later takes reserve again.
    pub async fn release_unused(&self) -> Result<(), StoreError> {
        let mut held = self.held.lock().await;
        if let Some(n) = held.filter(|n| *n > 0) {
            self.ledger.release(n).await?;
            *held = Some(0);
        }
        Ok(())
    }

    /// Calls taken so far.
    pub fn taken(&self) -> u64 {
        self.taken.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Month {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    proptest::proptest! {
        /// What a run pulling its first month while listing relies on: the first
        /// month's allowance is min(head count, the allowance with no head count
        /// known), and no plan spends more than is left.
        #[test]
        fn the_first_months_share_needs_no_head_count(
            employees in 0usize..2_000,
            per in 1u64..6,
            fixed in 0u64..3,
            budget in 0u64..6_000,
            spent in 0u64..6_000,
            months in 1usize..4,
        ) {
            let ms: Vec<Month> = ["2026-09", "2026-10", "2026-11"][..months].iter().map(|x| m(x)).collect();
            let make = |n| Plan::make(&ms, n, per, fixed, budget, spent, m("2026-11"));
            let (known, unknown) = (make(employees), make(usize::MAX));
            proptest::prop_assert_eq!(known.allowed[0].1, employees.min(unknown.allowed[0].1));
            proptest::prop_assert!(known.planned() <= known.left());
        }
    }

    #[test]
    fn everything_fits_when_the_budget_allows() {
        let p = Plan::make(
            &[m("2026-11"), m("2026-10")],
            100,
            2,
            1,
            5000,
            0,
            m("2026-11"),
        );
        assert_eq!(p.months(), vec![m("2026-10"), m("2026-11")]);
        assert_eq!(p.needed(), 401);
        assert_eq!(p.planned(), 401);
        assert!(p.skipped(m("2026-10")).is_none() && p.skipped(m("2026-11")).is_none());
    }

    #[test]
    fn the_previous_month_goes_first_and_the_rest_stops_short() {
        // 300 left: 1 fixed, then 100 employees × 2 for October, 49 × 2 for November.
        let p = Plan::make(
            &[m("2026-11"), m("2026-10")],
            100,
            2,
            1,
            5000,
            4700,
            m("2026-11"),
        );
        assert_eq!(p.allowance(m("2026-10")), 100);
        assert_eq!(p.allowance(m("2026-11")), 49);
        assert_eq!(p.planned(), 299);
        assert!(p.planned() <= p.left());
        let why = p.skipped(m("2026-11")).unwrap_or_default();
        assert!(
            why.contains("skipped 51 of 100 employees") && why.contains("next calendar month"),
            "{why}"
        );
    }

    #[test]
    fn check_warns_when_the_plan_cannot_fit() {
        let plan =
            |budget, spent| Plan::make(&[m("2026-10")], 59, 2, 1, budget, spent, m("2026-11"));
        let w = plan(50, 0).fit_warning().unwrap_or_default();
        assert!(
            w.contains("needs 119 metered calls") && w.contains("= 50"),
            "{w}"
        );
        let w = plan(130, 30).fit_warning().unwrap_or_default();
        assert!(
            w.contains("only 100 of the 130 budget are left in 2026-11"),
            "{w}"
        );
        assert!(plan(130, 11).fit_warning().is_none());
        assert!(fixed_warning(2, 2, 1).is_some());
        assert!(fixed_warning(3, 2, 1).is_none());
        assert!(fixed_warning(0, 0, 0).is_none(), "nothing metered");
    }

    #[test]
    fn an_exhausted_budget_spends_nothing() {
        let p = Plan::make(&[m("2026-11")], 10, 2, 1, 5000, 5000, m("2026-11"));
        assert_eq!(p.allowance(m("2026-11")), 0);
        assert_eq!(p.planned(), 0);
    }

    /// The ledger in memory: `count` as SQLite would hold it.
    #[derive(Default)]
    struct Memory {
        count: std::sync::Mutex<u64>,
        writes: AtomicU64,
    }

    impl Memory {
        fn count(&self) -> u64 {
            *self.count.lock().unwrap_or_else(|e| e.into_inner())
        }
    }

    impl Ledger for Memory {
        fn reserve(&self, want: u64, cap: u64) -> BoxFuture<'_, Result<u64, StoreError>> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            let mut count = self.count.lock().unwrap_or_else(|e| e.into_inner());
            let granted = want.min(cap.saturating_sub(*count));
            *count += granted;
            Box::pin(std::future::ready(Ok(granted)))
        }

        fn release(&self, calls: u64) -> BoxFuture<'_, Result<(), StoreError>> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            let mut count = self.count.lock().unwrap_or_else(|e| e.into_inner());
            *count = count.saturating_sub(calls);
            Box::pin(std::future::ready(Ok(())))
        }
    }

    fn meter(ledger: &Arc<Memory>, budget: u64) -> Meter {
        Meter::new(ledger.clone(), budget, m("2026-11"), RESERVE_BLOCK)
    }

    #[tokio::test]
    async fn reservations_come_in_blocks_and_stop_exactly_at_the_cap() {
        let ledger = Arc::new(Memory::default());
        *ledger.count.lock().unwrap_or_else(|e| e.into_inner()) = 7; // spent earlier
        let m = meter(&ledger, 50);
        for _ in 0..43 {
            assert!(m.take().await.is_ok());
        }
        // 20 + 20 + 3: three writes for 43 calls, the count at the cap.
        assert_eq!(ledger.writes.load(Ordering::SeqCst), 3);
        assert_eq!(ledger.count(), 50);
        let e = m
            .take()
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("stopped before exceeding the monthly call budget (50)"),
            "{e}"
        );
        assert!(m.take().await.is_err(), "stays stopped");
        assert_eq!(m.taken(), 43);
        assert_eq!(ledger.count(), 50);
    }

    #[tokio::test]
    async fn unused_reservations_are_given_back_and_a_kill_never_under_counts() {
        let ledger = Arc::new(Memory::default());
        let m = meter(&ledger, 5000);
        for _ in 0..25 {
            assert!(m.take().await.is_ok());
        }
        // Killed here: the ledger holds the 25 sent plus 15 reserved, never fewer.
        assert_eq!(ledger.count(), 40);
        assert!(m.release_unused().await.is_ok());
        assert_eq!(ledger.count(), 25);
        assert!(
            m.release_unused().await.is_ok(),
            "nothing more to give back"
        );
        assert_eq!(ledger.count(), 25);
        assert!(
            m.take().await.is_ok(),
            "takes reserve again after a release"
        );
        assert_eq!(ledger.count(), 45);
    }

    #[tokio::test]
    async fn concurrent_takes_never_pass_the_cap() {
        let ledger = Arc::new(Memory::default());
        let m = Arc::new(meter(&ledger, 97));
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let m = m.clone();
                tokio::spawn(async move { m.take().await.is_ok() })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            ok += u64::from(t.await.unwrap_or(false));
        }
        assert_eq!(ok, 97);
        assert_eq!(ledger.count(), 97);
    }

    #[tokio::test]
    async fn no_call_after_a_shutdown_request() {
        let ledger = Arc::new(Memory::default());
        let shutdown = Shutdown::new();
        let m = meter(&ledger, 100).stopping_on(shutdown.clone());
        assert!(m.take().await.is_ok());
        shutdown.trigger();
        assert!(matches!(m.take().await, Err(MeterError::Shutdown)));
        assert_eq!(m.taken(), 1);
    }

    #[test]
    fn the_quota_month_is_beijing_time() {
        // 16:30 UTC on Nov 30 is already December in Beijing.
        let now = DateTime::parse_from_rfc3339("2026-11-30T16:30:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(quota_period(now), "2026-12");
    }
}
