//! One alert per failure streak: which alert, if any, a run calls for, given
//! what the store remembers of the job's earlier runs.
//!
//! - The first failed run of a streak alerts ([`Alert::Failed`]); the failed
//!   runs after it stay quiet, except for a reminder once `repeat_after` has
//!   passed since the last alert delivered ([`Alert::StillFailing`]).
//! - The next successful run ends the streak and says so ([`Alert::Recovered`]).
//! - Dry runs, busy skips and runs stopped by a shutdown neither alert nor
//!   touch the streak (with `on = "always"`, a busy skip still reports itself).
//! - With `on = "always"` every run sends its message; the streak still tells
//!   "failed" from "still failing" and "recovered".
//!
//! The streak is in SQLite (`store/alerts.rs`): cron runs are separate
//! processes. An alert counts as delivered when at least one target took it;
//! one that reached no target is tried again by the next failed run. When the
//! store cannot be read, a failed run alerts as a first failure: a repeated
//! alert is better than none.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{is_failure, send, target_count, Alert, NotifyError, TARGET_TIMEOUT};
use crate::config::job::{Job, Notify, NotifyOn};
use crate::pipeline::JobReport;
use crate::store::{FailureStreak, Store};

/// Alerts about one job's run as its `[notify]` and failure streak call for,
/// and updates the streak. `now` is when the run ended (the time in the text).
/// Returns the targets that failed; never panics, never fails the run.
pub async fn after_run(
    http: &reqwest::Client,
    store: &Store,
    job: &Job,
    report: &JobReport,
    exit_code: u8,
    now: DateTime<Utc>,
) -> Vec<NotifyError> {
    after_run_within(http, store, job, report, exit_code, now, TARGET_TIMEOUT).await
}

/// [`after_run`] with another bound per target.
pub async fn after_run_within(
    http: &reqwest::Client,
    store: &Store,
    job: &Job,
    report: &JobReport,
    exit_code: u8,
    now: DateTime<Utc>,
    timeout: Duration,
) -> Vec<NotifyError> {
    let Some(cfg) = &job.notify else {
        return Vec::new();
    };
    let Some(alert) = decide(store, cfg, job, report, exit_code, now).await else {
        return Vec::new();
    };
    let failed = send(http, job, report, exit_code, now, &alert, timeout).await;
    let reached_one = failed.len() < target_count(cfg);
    if reached_one && matches!(alert, Alert::Failed { .. } | Alert::StillFailing { .. }) {
        let name = job.name.clone();
        if let Err(e) = store.call(move |s| s.mark_alerted(&name, now)).await {
            tracing::warn!(job = %job.name, "cannot record that the alert was sent ({e}); the next failed run alerts again");
        }
    }
    failed
}

/// The alert a run calls for, after counting it in the job's streak.
async fn decide(
    store: &Store,
    cfg: &Notify,
    job: &Job,
    report: &JobReport,
    exit_code: u8,
    now: DateTime<Utc>,
) -> Option<Alert> {
    if report.dry_run {
        return None;
    }
    if report.stopped_by_shutdown {
        tracing::info!(job = %job.name, "no alert: the run was stopped by a shutdown request");
        return None;
    }
    let always = cfg.on == NotifyOn::Always;
    if report.busy.is_some() {
        return always.then_some(Alert::Skipped);
    }
    let name = job.name.clone();
    if is_failure(report, exit_code) {
        match store.call(move |s| s.record_failure(&name, now)).await {
            Ok(streak) => failure_alert(cfg, streak, now),
            Err(e) => {
                tracing::warn!(job = %job.name, "cannot record the failure streak ({e}); alerting as for a first failure");
                Some(Alert::Failed { streak: None })
            }
        }
    } else {
        match store.call(move |s| s.end_streak(&name)).await {
            Ok(Some(streak)) => Some(Alert::Recovered { streak }),
            Ok(None) => always.then_some(Alert::Ok),
            Err(e) => {
                tracing::warn!(job = %job.name, "cannot read the failure streak ({e}); no \"recovered\" message");
                always.then_some(Alert::Ok)
            }
        }
    }
}

/// The alert a failed run calls for, given its streak (this run counted): the
/// first delivered alert of the streak, a reminder when `repeat_after` has
/// passed since the last one, otherwise none (with `on = "always"`: still
/// failing).
pub fn failure_alert(cfg: &Notify, streak: FailureStreak, now: DateTime<Utc>) -> Option<Alert> {
    let Some(last) = streak.alerted_at else {
        return Some(Alert::Failed {
            streak: Some(streak),
        });
    };
    // A clock set back since the last alert: no reminder until it is passed again.
    let since_last = (now - last).to_std().unwrap_or(Duration::ZERO);
    let due = cfg.repeat_after.is_some_and(|every| since_last >= every);
    (due || cfg.on == NotifyOn::Always).then_some(Alert::StillFailing { streak })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::tests::job;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn streak(alerted_at: Option<&str>) -> FailureStreak {
        FailureStreak {
            since: at("2026-11-03T00:00:00Z"),
            failures: 2,
            alerted_at: alerted_at.map(at),
        }
    }

    #[test]
    fn a_streak_alerts_once_then_reminds_after_repeat_after() {
        let j = job("[notify]\nrepeat_after = \"6h\"\nwebhook = \"http://127.0.0.1:9/h\"\n");
        let cfg = j.notify.as_ref().expect("notify");
        let now = at("2026-11-03T05:59:59Z");
        // Never delivered yet: the first alert (again).
        assert!(matches!(
            failure_alert(cfg, streak(None), now),
            Some(Alert::Failed { .. })
        ));
        let last = Some("2026-11-03T00:00:00Z");
        assert_eq!(failure_alert(cfg, streak(last), now), None);
        assert!(matches!(
            failure_alert(cfg, streak(last), at("2026-11-03T06:00:00Z")),
            Some(Alert::StillFailing { .. })
        ));
        // A clock set back: no reminder.
        assert_eq!(
            failure_alert(cfg, streak(last), at("2026-11-02T00:00:00Z")),
            None
        );

        let never = job("[notify]\nrepeat_after = \"never\"\nwebhook = \"http://127.0.0.1:9/h\"\n");
        let cfg = never.notify.as_ref().expect("notify");
        assert_eq!(
            failure_alert(cfg, streak(last), at("2027-01-01T00:00:00Z")),
            None
        );

        let always = job("[notify]\non = \"always\"\nwebhook = \"http://127.0.0.1:9/h\"\n");
        let cfg = always.notify.as_ref().expect("notify");
        assert!(matches!(
            failure_alert(cfg, streak(last), now),
            Some(Alert::StillFailing { .. })
        ));
    }
}
