//! The daemon's event receivers (README "Re-pulls on change"). For each job
//! with `[events]`: an [`Inbox`] over SQLite that every verified event goes
//! through before it is acknowledged; what the job's source needs to receive
//! them (a Stream connection, or a callback route on the listener and
//! DingTalk's failed-push list); the approvals' lookups; and the connection's
//! state written to SQLite for `status`.
//!
//! Receivers start with the daemon: a SIGHUP that changes `[events]` takes
//! effect at the next start (logged).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::tick::Scheduled;
use crate::clock::Clock;
use crate::config::{ConfigError, ConfigErrors};
use crate::events::inbox::{Inbox, Window};
use crate::events::lookups::resolve_loop;
use crate::events::{CallbackRoutes, Link};
use crate::pipeline::Syncer;
use crate::source::EventParts;

/// How often the approvals still to look up are looked at.
const LOOKUP_EVERY: Duration = Duration::from_secs(5);
/// Event ids are kept this long for de-duplication: vendors redeliver within
/// minutes (DingTalk's failed list within hours), never after a week.
const REMEMBER_EVENTS: chrono::Duration = chrono::Duration::days(7);
/// How often ids older than that are forgotten.
const FORGET_EVERY: Duration = Duration::from_secs(3600);

pub(super) struct Receivers {
    pub(super) routes: CallbackRoutes,
    pub(super) tasks: Vec<JoinHandle<()>>,
}

/// Starts every job's receivers. A job whose events come over HTTP needs the
/// listener (`[server]`): without one the daemon does not start.
pub(super) fn start_receivers(
    jobs: &[Scheduled],
    syncer: &Arc<Syncer>,
    clock: &Clock,
    serving: bool,
) -> Result<Receivers, ConfigErrors> {
    let routes: CallbackRoutes = Arc::new(RwLock::new(HashMap::new()));
    let mut tasks = Vec::new();
    let mut errors = Vec::new();
    for s in jobs {
        let job = &s.job.job;
        let Some(events) = &job.events else { continue };
        if let (Some(path), false) = (events.callback_path(&job.name), serving) {
            errors.push(ConfigError {
                file: s.job.file.clone(),
                line: 0,
                column: 0,
                key: "events".into(),
                message: format!(
                    "the vendor pushes this job's events to the daemon's listener at {path}, but {} has no [server]",
                    crate::server::config::SERVER_FILE
                ),
            });
            continue;
        }
        let inbox = Arc::new(Inbox {
            store: syncer.store.clone(),
            job: job.name.clone(),
            timezone: job.timezone,
            window: Window::of(events),
            clock: clock.clone(),
        });
        let (link, seen) = watch::channel(Link::Connecting);
        tasks.push(tokio::spawn(report_link(inbox.clone(), seen)));
        let parts = crate::source::event_parts(
            &job.source,
            events,
            job.timezone,
            syncer.http.clone(),
            inbox.clone(),
            link,
            syncer.shutdown.clone(),
        );
        let EventParts {
            tasks: started,
            route,
            resolver,
        } = parts;
        tasks.extend(started);
        if let Some(route) = route {
            let key = (route.vendor.to_string(), job.name.clone());
            if let Ok(mut r) = routes.write() {
                r.insert(key, route);
            }
        }
        if let Some(resolver) = resolver {
            let stop = syncer.shutdown.clone();
            tasks.push(tokio::spawn(resolve_loop(
                inbox,
                resolver,
                LOOKUP_EVERY,
                stop,
            )));
        }
        tracing::info!(job = %job.name, delay_s = events.delay.as_secs(), "listening for change events");
    }
    if jobs.iter().any(|s| s.job.job.events.is_some()) {
        tasks.push(tokio::spawn(forget_old_events(
            syncer.clone(),
            clock.clone(),
        )));
    }
    if errors.is_empty() {
        Ok(Receivers { routes, tasks })
    } else {
        Err(ConfigErrors(errors))
    }
}

impl Receivers {
    /// After the shutdown: receivers get until `deadline` to close their
    /// connections, then every job's connection reads `stopped`.
    pub(super) async fn stop(
        self,
        jobs: &[Scheduled],
        syncer: &Syncer,
        clock: &Clock,
        deadline: tokio::time::Instant,
    ) {
        for task in self.tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                abort.abort();
            }
        }
        let names: Vec<String> = jobs
            .iter()
            .filter(|s| s.job.job.events.is_some())
            .map(|s| s.job.job.name.clone())
            .collect();
        let now = clock.now();
        let stopped = syncer
            .store
            .call(move |s| {
                for job in &names {
                    s.set_event_link(job, "stopped", "", now)?;
                }
                Ok(())
            })
            .await;
        if let Err(e) = stopped {
            tracing::warn!(error = %e, "could not record the event connections as stopped");
        }
    }
}

/// Forgets event ids past [`REMEMBER_EVENTS`], now and every hour, so the
/// table of ids seen stays small.
async fn forget_old_events(syncer: Arc<Syncer>, clock: Clock) {
    loop {
        let before = clock.now() - REMEMBER_EVENTS;
        match syncer.store.call(move |s| s.forget_events(before)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(forgotten = n, "forgot event ids older than a week"),
            Err(e) => tracing::warn!(error = %e, "could not forget old event ids"),
        }
        tokio::select! {
            () = tokio::time::sleep(FORGET_EVERY) => {}
            () = syncer.shutdown.wait() => return,
        }
    }
}

/// Writes each change of the job's connection state to SQLite.
async fn report_link(inbox: Arc<Inbox>, mut seen: watch::Receiver<Link>) {
    loop {
        let link = seen.borrow_and_update().clone();
        let (state, detail) = match &link {
            Link::Connecting => ("connecting", String::new()),
            Link::Connected { since } => ("connected", format!("since {}", since.to_rfc3339())),
            Link::Retrying { attempt, error } => ("retrying", format!("try {attempt}: {error}")),
            Link::Listening => ("listening", String::new()),
            Link::Stopped => ("stopped", String::new()),
        };
        match &link {
            Link::Retrying { .. } => {
                tracing::warn!(job = %inbox.job, %detail, "event connection failed")
            }
            _ => tracing::info!(job = %inbox.job, state, %detail, "event connection"),
        }
        let (job, now) = (inbox.job.clone(), inbox.clock.now());
        let detail_saved = detail.clone();
        if let Err(e) = inbox
            .store
            .call(move |s| s.set_event_link(&job, state, &detail_saved, now))
            .await
        {
            tracing::warn!(job = %inbox.job, error = %e, "could not record the event connection's state");
        }
        if link == Link::Stopped || seen.changed().await.is_err() {
            return;
        }
    }
}
