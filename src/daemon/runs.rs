//! Which runs are under way, one per job: a scheduled fire or a requested run
//! that meets the job's run in progress waits for it, never runs beside it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::fire::{start_run, Reason, Started};
use super::repull::next_repull;
use super::tick::Scheduled;
use crate::clock::Clock;
use crate::pipeline::Syncer;
use crate::server::Metrics;

pub(super) struct Runs {
    running: HashMap<String, JoinHandle<()>>,
    /// Jobs whose scheduled fire met their run in progress: run once it ends.
    deferred: HashSet<String>,
    /// Hears a job's name when its run ends.
    ended: mpsc::UnboundedSender<String>,
    syncer: Arc<Syncer>,
    clock: Clock,
    metrics: Arc<Metrics>,
}

impl Runs {
    pub(super) fn new(
        syncer: Arc<Syncer>,
        clock: Clock,
        ended: mpsc::UnboundedSender<String>,
        metrics: Arc<Metrics>,
    ) -> Runs {
        Runs {
            running: HashMap::new(),
            deferred: HashSet::new(),
            ended,
            syncer,
            clock,
            metrics,
        }
    }

    fn is_running(&self, job: &str) -> bool {
        self.running.get(job).is_some_and(|h| !h.is_finished())
    }

    /// A scheduled fire of `jobs[i]`: now, or after the run in progress.
    pub(super) fn fire(&mut self, jobs: &Arc<Vec<Scheduled>>, i: usize) {
        let Some(s) = jobs.get(i) else { return };
        let name = s.job.job.name.clone();
        if self.is_running(&name) {
            tracing::info!(job = %name, "a run of this job is under way; the scheduled run follows it");
            self.deferred.insert(name);
            return;
        }
        self.start(jobs, i, Reason::Schedule);
    }

    /// A run of `job` ended: a deferred fire goes first, then the queue.
    pub(super) async fn ended(&mut self, jobs: &Arc<Vec<Scheduled>>, job: &str) {
        self.running.remove(job);
        if self.deferred.remove(job) {
            if let Some(i) = index_of(jobs, job) {
                self.start(jobs, i, Reason::Schedule);
                return;
            }
        }
        self.requested(jobs, job).await;
    }

    /// A run of `job` was requested (or may be waiting): the oldest queued
    /// request starts unless the job is running.
    pub(super) async fn requested(&mut self, jobs: &Arc<Vec<Scheduled>>, job: &str) {
        if self.is_running(job) {
            return; // it starts when the run in progress ends
        }
        let Some(i) = index_of(jobs, job) else {
            tracing::warn!(%job, "runs requested for a job the daemon no longer runs stay queued");
            return;
        };
        let name = job.to_string();
        match self.syncer.store.call(move |s| s.take_request(&name)).await {
            Ok(Some(request)) => {
                tracing::info!(%job, run_request = request.id, month = %request.request.month, "starting a requested run");
                self.start(jobs, i, Reason::Request(request));
            }
            Ok(None) => {}
            Err(e) => tracing::error!(%job, error = %e, "could not read the queued runs"),
        }
    }

    /// A look for employee-months of `jobs[i]` that events marked: a re-pull
    /// starts when some are due and the job is not running (else the next
    /// look finds them).
    pub(super) async fn repull(&mut self, jobs: &Arc<Vec<Scheduled>>, i: usize) {
        let Some(s) = jobs.get(i) else { return };
        let Some(events) = &s.job.job.events else {
            return;
        };
        if self.is_running(&s.job.job.name) {
            return;
        }
        let now = self.clock.now();
        if let Some(r) = next_repull(&self.syncer, &s.job.job, events.delay, now).await {
            self.start(jobs, i, Reason::Repull(r));
        }
    }

    fn start(&mut self, jobs: &Arc<Vec<Scheduled>>, i: usize, reason: Reason) {
        let name = jobs[i].job.job.name.clone();
        let started = Started {
            syncer: self.syncer.clone(),
            now: self.clock.now(),
            ended: self.ended.clone(),
            metrics: self.metrics.clone(),
        };
        let handle = start_run(jobs.clone(), i, reason, started);
        self.running.insert(name, handle);
    }

    /// The runs still under way, for the shutdown to wait on.
    pub(super) fn into_handles(self) -> Vec<JoinHandle<()>> {
        self.running.into_values().collect()
    }
}

fn index_of(jobs: &[Scheduled], job: &str) -> Option<usize> {
    jobs.iter().position(|s| s.job.job.name == job)
}
