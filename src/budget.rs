//! The monthly call budget of metered sources (DingTalk's standard edition counts
//! every attendance call against 5,000 a month). A run plans its calls, syncs
//! months in priority order (the previous month's final pull first), and stops
//! short of the budget rather than trigger the vendor's 90020. The first month's
//! share needs no head count (see `sync::Metering`), so it is pulled while the
//! directory is listed.

use crate::month::Month;

/// What a run may spend, decided before its first metered call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub budget: u64,
    /// Spent earlier in `period` (counted in SQLite across runs).
    pub spent_before: u64,
    /// The calendar month the spending counts against (`YYYY-MM`, job timezone).
    pub period: String,
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
        period: String,
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
            let make = |n| Plan::make(&ms, n, per, fixed, budget, spent, "2026-11".into());
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
            "2026-11".into(),
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
            "2026-11".into(),
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
    fn an_exhausted_budget_spends_nothing() {
        let p = Plan::make(&[m("2026-11")], 10, 2, 1, 5000, 5000, "2026-11".into());
        assert_eq!(p.allowance(m("2026-11")), 0);
        assert_eq!(p.planned(), 0);
    }
}
