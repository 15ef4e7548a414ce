//! The daemon's event receivers (README "Re-pulls on change"). For each job
//! with `[events]`: an [`Inbox`] over SQLite that every verified event goes
//! through before it is acknowledged; what the job's source needs to receive
//! them (a Stream connection, or a callback route on the listener and
//! DingTalk's failed-push list); the approvals' lookups; and the connection's
//! state written to SQLite for `status`.
//!
//! A SIGHUP stops the receivers and starts those of the reloaded jobs.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::tick::Scheduled;
use crate::clock::Clock;
use crate::config::job::Job;
use crate::config::ConfigError;
use crate::events::inbox::{Inbox, Window};
use crate::events::lookups::resolve_loop;
use crate::events::{CallbackRoutes, Delivery, EventsConfig, FanOut, Link, Sink};
use crate::pipeline::Syncer;
use crate::shutdown::Shutdown;
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
    tasks: Vec<JoinHandle<()>>,
    /// Stops these receivers (a reload) or follows the daemon's shutdown.
    stop: Shutdown,
    /// The jobs they receive for, to mark `stopped` at the end.
    jobs: Vec<String>,
}

/// How long a reload waits for the old receivers to close their connections.
const RELOAD_GRACE: Duration = Duration::from_secs(3);

/// A stop for one set of receivers that also follows the daemon's shutdown.
fn receivers_stop(daemon: &Shutdown) -> (Shutdown, JoinHandle<()>) {
    let stop = Shutdown::new();
    let (daemon, mine) = (daemon.clone(), stop.clone());
    let follow = tokio::spawn(async move {
        tokio::select! {
            () = daemon.wait() => mine.trigger(),
            () = mine.wait() => {}
        }
    });
    (stop, follow)
}

/// Starts every job's receivers, their callbacks in `routes`. A job whose
/// events come over HTTP needs the listener (`[server]`): such a job gets
/// none, and is named in the errors (at start the daemon refuses them).
pub(super) fn start_receivers(
    jobs: &[Scheduled],
    syncer: &Arc<Syncer>,
    clock: &Clock,
    serving: bool,
    routes: CallbackRoutes,
) -> (Receivers, Vec<ConfigError>) {
    if let Ok(mut r) = routes.write() {
        r.clear();
    }
    let (stop, follow) = receivers_stop(&syncer.shutdown);
    let mut tasks = vec![follow];
    let mut errors = Vec::new();
    let mut names = Vec::new();
    let mut groups: Vec<(String, Vec<&Scheduled>)> = Vec::new();
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
        names.push(job.name.clone());
        let key = receiver_key(job, events);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(s),
            None => groups.push((key, vec![s])),
        }
    }
    for (_, members) in &groups {
        tasks.extend(start_group(members, syncer, clock, &routes, &stop));
    }
    if !names.is_empty() {
        tasks.push(tokio::spawn(forget_old_events(
            syncer.clone(),
            clock.clone(),
            stop.clone(),
        )));
    }
    let receivers = Receivers {
        routes,
        tasks,
        stop,
        jobs: names,
    };
    (receivers, errors)
}

/// What one receiver serves: jobs on the same vendor app and delivery share
/// it (the vendor pushes each event once, to one URL or one connection). A
/// callback's own token and key tell its app apart (a corp's apps each have
/// their own): they enter the key as a digest, never as text.
fn receiver_key(job: &Job, events: &EventsConfig) -> String {
    use sha2::{Digest, Sha256};
    let delivery = match &events.delivery {
        Delivery::Stream { gateway_url } => format!("stream {gateway_url}"),
        Delivery::DingtalkPush { token, aes_key } | Delivery::WecomCallback { token, aes_key } => {
            let mut digest = Sha256::new();
            digest.update(token.expose().as_bytes());
            digest.update([0]);
            digest.update(aes_key.expose().as_bytes());
            let sum: String = digest
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("callback {sum}")
        }
    };
    format!("{} by {delivery}", job.source.app_identity())
}

/// The receivers of jobs that share an app: an Inbox each, one receiver of
/// the source's fanned out to them (the first job's `[events]` secrets and
/// timezone), a callback route under each job's name, lookups per job.
fn start_group(
    members: &[&Scheduled],
    syncer: &Arc<Syncer>,
    clock: &Clock,
    routes: &CallbackRoutes,
    stop: &Shutdown,
) -> Vec<JoinHandle<()>> {
    let Some(first) = members.first().map(|s| &s.job.job) else {
        return Vec::new();
    };
    let Some(events) = &first.events else {
        return Vec::new();
    };
    let inboxes: Vec<Arc<Inbox>> = members
        .iter()
        .filter_map(|s| {
            let job = &s.job.job;
            job.events.as_ref().map(|e| {
                Arc::new(Inbox {
                    store: syncer.store.clone(),
                    job: job.name.clone(),
                    timezone: job.timezone,
                    window: Window::of(e),
                    clock: clock.clone(),
                })
            })
        })
        .collect();
    let sink: Arc<dyn Sink> = match inboxes.as_slice() {
        [one] => one.clone(),
        _ => Arc::new(FanOut {
            sinks: inboxes.iter().map(|i| i.clone() as Arc<dyn Sink>).collect(),
            label: inboxes
                .iter()
                .map(|i| i.job.as_str())
                .collect::<Vec<_>>()
                .join(","),
        }),
    };
    let (link, seen) = watch::channel(Link::Connecting);
    let mut tasks = vec![tokio::spawn(report_link(inboxes.clone(), seen))];
    let EventParts {
        tasks: started,
        route,
        resolver,
    } = crate::source::event_parts(
        &first.source,
        events,
        first.timezone,
        syncer.http.clone(),
        sink,
        link,
        stop.clone(),
    );
    tasks.extend(started);
    if let (Some(route), Ok(mut r)) = (route, routes.write()) {
        for inbox in &inboxes {
            r.insert((route.vendor.to_string(), inbox.job.clone()), route.clone());
        }
    }
    for inbox in &inboxes {
        if let Some(resolver) = &resolver {
            let lookups = resolve_loop(inbox.clone(), resolver.clone(), LOOKUP_EVERY, stop.clone());
            tasks.push(tokio::spawn(lookups));
        }
        tracing::info!(job = %inbox.job, shared_with = members.len() - 1, "listening for change events");
    }
    tasks
}

impl Receivers {
    /// A SIGHUP: these receivers stop (their connections closed, within a
    /// few seconds) and the reloaded jobs' start, on the same routes.
    pub(super) async fn reload(
        self,
        jobs: &[Scheduled],
        syncer: &Arc<Syncer>,
        clock: &Clock,
        serving: bool,
    ) -> Receivers {
        let routes = self.routes.clone();
        let deadline = tokio::time::Instant::now() + RELOAD_GRACE;
        self.stop(syncer, clock, deadline).await;
        let (receivers, errors) = start_receivers(jobs, syncer, clock, serving, routes);
        for e in errors {
            tracing::error!("SIGHUP: {e}; this job's events are not received");
        }
        receivers
    }

    /// Stops the receivers: they get until `deadline` to close their
    /// connections, then each of their jobs' connection reads `stopped`.
    pub(super) async fn stop(self, syncer: &Syncer, clock: &Clock, deadline: tokio::time::Instant) {
        self.stop.trigger();
        for task in self.tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                abort.abort();
            }
        }
        let (names, now) = (self.jobs, clock.now());
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
async fn forget_old_events(syncer: Arc<Syncer>, clock: Clock, stop: Shutdown) {
    loop {
        let before = clock.now() - REMEMBER_EVENTS;
        match syncer.store.call(move |s| s.forget_events(before)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(forgotten = n, "forgot event ids older than a week"),
            Err(e) => tracing::warn!(error = %e, "could not forget old event ids"),
        }
        tokio::select! {
            () = tokio::time::sleep(FORGET_EVERY) => {}
            () = stop.wait() => return,
        }
    }
}

/// Writes each change of the connection's state to SQLite, for each job
/// it serves.
async fn report_link(inboxes: Vec<Arc<Inbox>>, mut seen: watch::Receiver<Link>) {
    let Some(first) = inboxes.first().cloned() else {
        return;
    };
    loop {
        let link = seen.borrow_and_update().clone();
        let (state, detail) = match &link {
            Link::Connecting => ("connecting", String::new()),
            Link::Connected { since } => ("connected", format!("since {}", since.to_rfc3339())),
            Link::Retrying { attempt, error } => ("retrying", format!("try {attempt}: {error}")),
            Link::Listening => ("listening", String::new()),
            Link::Stopped => ("stopped", String::new()),
        };
        let jobs: Vec<String> = inboxes.iter().map(|i| i.job.clone()).collect();
        match &link {
            Link::Retrying { .. } => {
                tracing::warn!(jobs = %jobs.join(","), %detail, "event connection failed")
            }
            _ => tracing::info!(jobs = %jobs.join(","), state, %detail, "event connection"),
        }
        let now = first.clock.now();
        let saved = first
            .store
            .call(move |s| {
                for job in &jobs {
                    s.set_event_link(job, state, &detail, now)?;
                }
                Ok(())
            })
            .await;
        if let Err(e) = saved {
            tracing::warn!(error = %e, "could not record the event connection's state");
        }
        if link == Link::Stopped || seen.changed().await.is_err() {
            return;
        }
    }
}
