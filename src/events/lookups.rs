//! Approvals named by an event but not its employee and days (a WeCom
//! `sys_approval_change`, a DingTalk approval): stored with the event before it
//! was acknowledged, looked up here afterwards, and turned into marks. A lookup
//! that fails is tried again later, with a growing wait.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::inbox::{marks_of, Inbox};
use super::{Change, Touched};
use crate::shutdown::Shutdown;
use crate::store::Lookup;

/// The days an approval touches; `None` when it touches none (pending,
/// rejected, not about attendance).
pub type Resolved = Result<Option<Vec<Touched>>, String>;
pub type ResolveFuture<'a> = Pin<Box<dyn Future<Output = Resolved> + Send + 'a>>;

/// A source's way to look an approval up.
pub trait Resolve: Send + Sync {
    fn resolve<'a>(&'a self, reference: &'a str) -> ResolveFuture<'a>;
}

/// After this many failed tries a lookup is given up (logged at ERROR); the
/// scheduled pull stays the safety net.
const MAX_TRIES: u32 = 12;
/// Lookups taken per pass.
const PER_PASS: u32 = 50;

/// The wait before try `tries + 1`: 30 s doubling, at most an hour.
fn backoff(tries: u32) -> Duration {
    Duration::from_secs(30)
        .saturating_mul(1u32 << tries.min(7))
        .min(Duration::from_secs(3600))
}

/// Looks up what is due every `every` until the shutdown.
pub async fn resolve_loop(
    inbox: Arc<Inbox>,
    resolver: Arc<dyn Resolve>,
    every: Duration,
    shutdown: Shutdown,
) {
    loop {
        pass(&inbox, resolver.as_ref()).await;
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.wait() => return,
        }
    }
}

/// One pass over the due lookups; how many were resolved.
pub async fn pass(inbox: &Inbox, resolver: &dyn Resolve) -> usize {
    let now = inbox.clock.now();
    let job = inbox.job.clone();
    let due = match inbox
        .store
        .call(move |s| s.due_lookups(&job, now, PER_PASS))
        .await
    {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(job = %inbox.job, error = %e, "could not read the approvals to look up");
            return 0;
        }
    };
    let mut resolved = 0;
    for lookup in due {
        if one(inbox, resolver, lookup, now).await {
            resolved += 1;
        }
    }
    resolved
}

async fn one(inbox: &Inbox, resolver: &dyn Resolve, lookup: Lookup, now: DateTime<Utc>) -> bool {
    let job = inbox.job.clone();
    let touched = match resolver.resolve(&lookup.reference).await {
        Ok(t) => t.unwrap_or_default(),
        Err(e) if lookup.tries + 1 < MAX_TRIES => {
            let wait = backoff(lookup.tries);
            tracing::warn!(%job, approval = %lookup.reference, error = %e, retry_in_s = wait.as_secs(),
                "could not look an approval up; trying again later");
            let next = now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::hours(1));
            let reference = lookup.reference.clone();
            let _ = inbox
                .store
                .call(move |s| s.retry_lookup(&job, &reference, next))
                .await;
            return false;
        }
        Err(e) => {
            tracing::error!(%job, approval = %lookup.reference, error = %e, tries = MAX_TRIES,
                "giving up looking an approval up; the scheduled pull will catch its days");
            Vec::new()
        }
    };
    let change = Change {
        event_id: lookup.event_id,
        kind: String::new(),
        touched,
        lookups: Vec::new(),
    };
    let (marks, _) = marks_of(&change, inbox.timezone, inbox.window, now);
    let reference = lookup.reference;
    let r = inbox
        .store
        .call(move |s| s.resolve_lookup(&job, &reference, &marks, now))
        .await;
    if let Err(e) = &r {
        tracing::error!(job = %inbox.job, error = %e, "could not store a looked-up approval; it is looked up again");
    }
    r.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::events::inbox::Window;
    use crate::events::{CurrentMonth, Day, Recorded, Sink};
    use crate::store::Store;
    use chrono::NaiveDate;
    use std::sync::atomic::{AtomicU32, Ordering};

    struct Flaky {
        fails: AtomicU32,
    }

    impl Resolve for Flaky {
        fn resolve<'a>(&'a self, reference: &'a str) -> ResolveFuture<'a> {
            Box::pin(async move {
                if self.fails.load(Ordering::SeqCst) > 0 {
                    self.fails.fetch_sub(1, Ordering::SeqCst);
                    return Err("busy".to_string());
                }
                let days = ["2026-10-30", "2026-11-02"];
                Ok(Some(
                    days.iter()
                        .map(|d| Touched {
                            employee: format!("{reference}-applicant"),
                            day: Day::Date(d.parse::<NaiveDate>().expect("date")),
                        })
                        .collect(),
                ))
            })
        }
    }

    #[tokio::test]
    async fn an_approval_is_looked_up_after_a_failure_and_marks_both_months() {
        let store = Store::open_in_memory().expect("store");
        let clock = Clock::starting_at("2026-12-02T02:00:00Z".parse().expect("t"));
        let inbox = Inbox {
            store: store.clone(),
            job: "j".into(),
            timezone: chrono_tz::Asia::Shanghai,
            window: Window {
                current_month: CurrentMonth::Scheduled,
                max_age_months: 3,
            },
            clock,
        };
        let change = Change {
            event_id: "e1".into(),
            kind: "sys_approval_change".into(),
            touched: vec![],
            lookups: vec!["sp1".into()],
        };
        assert_eq!(inbox.record(change).await.expect("record"), Recorded::New);
        let resolver = Flaky {
            fails: AtomicU32::new(1),
        };
        assert_eq!(pass(&inbox, &resolver).await, 0);
        assert_eq!(store.lookup_count("j").expect("n"), 1);
        // Not due again until its backoff passed.
        assert_eq!(pass(&inbox, &resolver).await, 0);
        let later = Clock::starting_at("2026-12-02T02:01:00Z".parse().expect("t"));
        let inbox = Inbox {
            clock: later,
            ..inbox
        };
        assert_eq!(pass(&inbox, &resolver).await, 1);
        assert_eq!(store.lookup_count("j").expect("n"), 0);
        // 30 October and 2 November: both closed months, one mark each.
        assert_eq!(store.dirty_count("j").expect("n"), 2);
    }
}
