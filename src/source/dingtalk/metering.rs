//! Metered calls: what a job costs per employee and month, what a client has
//! sent, the job's budget ([`Metered`], what the run plans with), and the hard
//! cap: a [`Meter`] set by the run takes one call
//! for every metered attempt (retries and retries after a token refresh
//! included) before it is sent. Without a meter (`check --remote`, tests of
//! the client alone) calls are only counted in memory.

use std::sync::Arc;

use super::{lock, Dingtalk, DingtalkClient, MAX_PER_REPORT_CALL};
use crate::budget::Meter;
use crate::config::job::DingtalkSource;
use crate::source::{CallCosts, Metered, SourceError};

impl DingtalkClient {
    /// Counts every later metered attempt against `meter`, refusing the ones
    /// it refuses.
    pub fn set_meter(&self, meter: Arc<Meter>) {
        *lock(&self.meter) = Some(meter);
    }

    /// Takes one call from the meter for an attempt about to be sent.
    pub(super) async fn take_metered(&self) -> Result<(), SourceError> {
        let meter = lock(&self.meter).clone();
        match meter {
            Some(m) => m.take().await.map_err(SourceError::from),
            None => Ok(()),
        }
    }

    /// Metered calls sent so far by this client (retries included).
    #[cfg(test)]
    pub(super) fn metered_calls(&self) -> u64 {
        self.metered.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Metered calls per employee and month: ⌈columns/20⌉ + ⌈leave names/20⌉.
fn per_employee(columns: usize, leave_names: usize) -> u32 {
    let calls = |n: usize| n.div_ceil(MAX_PER_REPORT_CALL) as u32;
    calls(columns) + calls(leave_names)
}

/// What a job's DingTalk calls cost, without a client: per employee and
/// month, and one `getattcolumns` when it names columns (docs/vendors/dingtalk.md
/// "The calls").
pub fn call_costs(cfg: &DingtalkSource) -> CallCosts {
    CallCosts {
        per_employee: per_employee(cfg.columns.len(), cfg.leave_names.len()),
        fixed: u64::from(!cfg.columns.is_empty()),
        monthly_budget: u64::from(cfg.monthly_call_budget),
    }
}

impl Metered for Dingtalk {
    fn costs(&self) -> CallCosts {
        self.costs
    }

    fn set_meter(&self, meter: Arc<Meter>) {
        self.client.set_meter(meter);
    }
}

#[cfg(test)]
mod tests {
    use crate::source::dingtalk::testkit::*;

    #[test]
    fn shipped_job_parses_and_its_budget_fits_a_few_hundred_employees() {
        use crate::config::job::parse_job;
        use crate::config::SourceFile;
        let file = SourceFile::new(
            "jobs/dingtalk_monthly.toml",
            include_str!("../../../jobs/dingtalk_monthly.toml"),
        );
        let env = |name: &str| Some(format!("value-of-{name}"));
        let job = match parse_job("dingtalk_monthly", &file, &env) {
            Ok(j) => j,
            Err(e) => panic!(
                "{}",
                e.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        };
        let Source::Dingtalk(src) = &job.source else {
            panic!("expected a DingTalk source");
        };
        assert_eq!(job.mapping, "dingtalk_monthly.toml");
        assert_eq!(src.app_secret.expose(), "value-of-DINGTALK_APP_SECRET");
        assert_eq!(super::call_costs(src).per_employee, 2);
        // 4 runs a month; the one on the 3rd pulls two months.
        let runs = [2usize, 1, 1, 1];
        let per_month =
            |employees: usize| -> u64 { runs.iter().map(|m| calls_for(src, employees, *m)).sum() };
        assert_eq!(per_month(499), 4994);
        assert!(per_month(499) <= u64::from(src.monthly_call_budget));
        assert!(per_month(500) > u64::from(src.monthly_call_budget));
    }
}
