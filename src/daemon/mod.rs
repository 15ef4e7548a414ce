//! `attendsync daemon`: runs every job on its schedule, in its timezone.
//!
//! One ticker task per job (`tick.rs`) computes the job's next fire with
//! [`Schedule`](crate::schedule::Schedule) (croner, evaluated in the job's
//! timezone), sleeps until it on the daemon's [`Clock`], hands it to the loop
//! here, and computes the next one from there: every fire
//! is computed with the UTC offset of its own day, so a DST change moves nothing.
//! A job never overlaps itself (one run per job name here, and the SQLite lease
//! across processes). Missed runs are caught up once at start from the last
//! successful run in SQLite. SIGHUP reloads the job files; a file that does not
//! load keeps the old configuration.

mod events;
mod fire;
mod repull;
mod runs;
mod tick;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::{ConfigErrors, LoadedJob};
use crate::outcome::{AppError, EXIT_OK};
use crate::pipeline::Syncer;
use crate::server::{Auth, JobInfo, Metrics, ServerConfig, Shared};
use crate::shutdown::Hangups;
use repull::start_repull_tickers;
use runs::Runs;
use tick::{catch_up, scheduled_jobs, start_tickers, Fire, FireKind, Scheduled};

/// How long a shutdown waits for runs in flight before leaving them to the next run.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

/// Reads the job files again (on SIGHUP).
pub type Reload = Box<dyn Fn() -> Result<Vec<LoadedJob>, ConfigErrors> + Send>;

/// The job files read again; `None` (logged at ERROR) keeps the old configuration.
fn reloaded(reload: &Reload, serving: bool) -> Option<Vec<Scheduled>> {
    match reload().and_then(|jobs| scheduled_jobs(jobs, serving)) {
        Ok(jobs) => Some(jobs),
        Err(e) => {
            let text = e.to_string();
            tracing::error!(
                "SIGHUP: the job files do not load; keeping the configuration in use:\n{}",
                text.trim_end()
            );
            None
        }
    }
}

/// The API and `/metrics` (whose gauges follow the job list) show `jobs`
/// from now on; the log says the reload is done only once they do.
fn show_reloaded(listener: Option<&Listener>, jobs: &[Scheduled]) {
    if let Some(l) = listener {
        if let Ok(mut shown) = l.jobs.write() {
            *shown = job_infos(jobs);
        }
    }
    tracing::info!(jobs = jobs.len(), "SIGHUP: job files reloaded");
}

/// The daemon's listener, when `attendsync.toml` has `[server]`.
struct Listener {
    jobs: crate::server::Jobs,
    requested: mpsc::UnboundedReceiver<String>,
    task: JoinHandle<()>,
}

/// What the API shows of the jobs.
fn job_infos(jobs: &[Scheduled]) -> Arc<Vec<JobInfo>> {
    Arc::new(
        jobs.iter()
            .map(|s| JobInfo {
                name: s.job.job.name.clone(),
                source: s.job.job.source.kind().to_string(),
                schedule: s.schedule.clone(),
                timezone: s.job.job.timezone,
                budget: s.job.job.source.call_costs().map(|c| c.monthly_budget),
                events: s.job.job.events.is_some(),
            })
            .collect(),
    )
}

/// Binds `[server] listen` and serves until the shutdown.
async fn listen(
    config: &ServerConfig,
    jobs: &[Scheduled],
    syncer: &Arc<Syncer>,
    clock: &Clock,
    metrics: &Arc<Metrics>,
    callbacks: crate::events::CallbackRoutes,
) -> Result<Listener, AppError> {
    let socket = crate::server::bind(config.listen).await.map_err(|e| {
        AppError::Io(format!(
            "cannot listen on {} ([server] listen in attendsync.toml): {e}",
            config.listen
        ))
    })?;
    let (tx, requested) = mpsc::unbounded_channel();
    let shared_jobs: crate::server::Jobs = Arc::new(std::sync::RwLock::new(job_infos(jobs)));
    let shared = Arc::new(Shared {
        store: syncer.store.clone(),
        auth: Auth::new(&config.token),
        jobs: shared_jobs.clone(),
        requested: tx,
        clock: clock.clone(),
        metrics: metrics.clone(),
        sessions: Default::default(),
        healthy_at: Default::default(),
        callbacks,
        public_origin: config
            .public_url
            .as_ref()
            .map(|url| url.origin().ascii_serialization()),
    });
    let stop = syncer.shutdown.clone();
    // The bound address: with port 0 the system picks one.
    let address = socket.local_addr().unwrap_or(config.listen);
    let task = tokio::spawn(async move {
        let stopped = async move { stop.wait().await };
        if let Err(e) = crate::server::serve(socket, shared, stopped).await {
            tracing::error!(error = %e, "the HTTP listener stopped");
        }
    });
    tracing::info!(%address, "serving the API, /metrics and /healthz");
    Ok(Listener {
        jobs: shared_jobs,
        requested,
        task,
    })
}

/// The next thing for the loop to do.
enum Event {
    Fire(Fire),
    Requested(String),
    Ended(String),
    Reload,
    Stop,
}

pub async fn run(
    jobs: Vec<LoadedJob>,
    reload: Reload,
    syncer: Arc<Syncer>,
    clock: Clock,
    server: Option<ServerConfig>,
) -> Result<u8, AppError> {
    let mut jobs = Arc::new(scheduled_jobs(jobs, server.is_some())?);
    let metrics = Arc::new(Metrics::new());
    let routes: crate::events::CallbackRoutes = Default::default();
    let (mut receivers, errors) =
        events::start_receivers(&jobs, &syncer, &clock, server.is_some(), routes);
    if !errors.is_empty() {
        return Err(crate::config::ConfigErrors(errors).into());
    }
    let mut listener = match &server {
        Some(config) => {
            let routes = receivers.routes.clone();
            Some(listen(config, &jobs, &syncer, &clock, &metrics, routes).await?)
        }
        None => None,
    };
    let mut hangups = Hangups::listen();
    let (tx, mut rx) = mpsc::unbounded_channel::<Fire>();
    let (ended_tx, mut ended) = mpsc::unbounded_channel::<String>();
    let mut runs = Runs::new(syncer.clone(), clock.clone(), ended_tx, metrics);
    let mut generation = 0;
    catch_up(&jobs, &syncer, clock.now(), &tx).await?;
    let mut tickers = start_tickers(&jobs, generation, &clock, &tx);
    tickers.extend(start_repull_tickers(&jobs, generation, &tx));
    tracing::info!(
        jobs = jobs.len(),
        now = %clock.now().to_rfc3339(),
        clock = if clock.is_overridden() { "ATTENDSYNC_NOW" } else { "system" },
        "daemon started; SIGTERM or Ctrl-C stops it, SIGHUP reloads the job files"
    );
    for job in syncer.store.call(|s| s.recover_requests()).await? {
        runs.requested(&jobs, &job).await;
    }

    loop {
        // Biased: fires already queued (the catch-ups) are served before a reload.
        let event = tokio::select! {
            biased;
            _ = syncer.shutdown.wait() => Event::Stop,
            fire = rx.recv() => fire.map_or(Event::Stop, Event::Fire),
            Some(job) = ended.recv() => Event::Ended(job),
            Some(job) = next_request(&mut listener) => Event::Requested(job),
            _ = hangups.recv() => Event::Reload,
        };
        match event {
            Event::Stop => break,
            Event::Reload => {
                if let Some(new) = reloaded(&reload, server.is_some()) {
                    tickers.iter().for_each(JoinHandle::abort);
                    generation += 1;
                    jobs = Arc::new(new);
                    tickers = start_tickers(&jobs, generation, &clock, &tx);
                    tickers.extend(start_repull_tickers(&jobs, generation, &tx));
                    receivers = receivers
                        .reload(&jobs, &syncer, &clock, server.is_some())
                        .await;
                    show_reloaded(listener.as_ref(), &jobs);
                }
            }
            // A ticker of the configuration before a reload is ignored.
            Event::Fire(fire) if fire.generation != generation => {}
            Event::Fire(fire) if fire.kind == FireKind::Repull => {
                runs.repull(&jobs, fire.job).await
            }
            Event::Fire(fire) => runs.fire(&jobs, fire.job),
            Event::Requested(job) => runs.requested(&jobs, &job).await,
            Event::Ended(job) => runs.ended(&jobs, &job).await,
        }
    }

    tracing::info!("stopping: no new runs; waiting for runs in flight");
    tickers.iter().for_each(JoinHandle::abort);
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    for handle in runs.into_handles() {
        if tokio::time::timeout_at(deadline, handle).await.is_err() {
            tracing::warn!(
                "a run did not finish in time; its pending batch is settled by the next run"
            );
        }
    }
    if let Some(l) = listener {
        // Connections still open are not waited for past the grace period.
        if tokio::time::timeout_at(deadline, l.task).await.is_err() {
            tracing::warn!("the HTTP listener did not close in time; leaving it");
        }
    }
    receivers.stop(&syncer, &clock, deadline).await;
    tracing::info!("daemon stopped");
    Ok(EXIT_OK)
}

/// The next requested job, or never when nothing listens.
async fn next_request(listener: &mut Option<Listener>) -> Option<String> {
    match listener {
        Some(l) => l.requested.recv().await,
        None => std::future::pending().await,
    }
}
