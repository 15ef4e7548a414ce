//! The run's paces and the store: at its start a run's paces take in the
//! departures the runs before it kept (another process's, say a `rerun` by
//! hand beside the daemon), and after each month and at its end the run keeps
//! its own with whatever another process kept meanwhile, so that the next run
//! keeps to the quota windows both share (`http/pace/memory.rs`).
//! Neither is worth failing a run over: the vendors' throttling answers are
//! still retried, so a store that refuses costs a warning.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::job::Job;
use crate::http::pace::{Departures, Pacer};
use crate::store::{Store, StoreError};

use super::Syncer;

/// How long a second shutdown signal waits for the paces to be kept.
const KEEP_BEFORE_EXIT: Duration = Duration::from_secs(1);

impl Syncer {
    /// Before the first call of `holder`'s clients in a run: its paces learn
    /// when the calls of the runs before left (another process's included).
    pub(super) async fn recall_pace(&self, holder: String) {
        let paces = Pacer::of_holder(&holder);
        if paces.is_empty() {
            return;
        }
        let read = self.store.call(move |s| {
            take_in_kept(s, &holder, &paces);
            Ok(())
        });
        if let Err(e) = read.await {
            tracing::warn!(error = %e, "could not read when the last run's calls left; pacing from now");
        }
    }

    /// After each month and at the run's end: when the job's recent calls
    /// left, for the next run (a run killed mid-month leaves what its last
    /// month kept).
    pub(super) async fn keep_paces(&self, job: &Job) {
        self.keep_pace(job.source.app_identity()).await;
        self.keep_pace(job.target.pace_holder()).await;
    }

    /// Listens for SIGTERM and SIGINT; a second signal, which exits at once,
    /// first keeps every pace of the process, so that a run started right
    /// after (the user's next try) keeps to the windows the stopped one used.
    /// It waits at most [`KEEP_BEFORE_EXIT`] for the store (busy folding a
    /// large run's writes, say): the user asked to exit now.
    pub fn on_signals(&self) {
        let store = self.store.clone();
        self.shutdown.on_signals_then(move || {
            let (done, wait) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for holder in Pacer::holders() {
                    if let Err(e) = keep_holder(&store, &holder, &Pacer::of_holder(&holder)) {
                        tracing::warn!(%holder, error = %e, "could not keep when this run's calls left");
                    }
                }
                let _ = done.send(());
            });
            let _ = wait.recv_timeout(KEEP_BEFORE_EXIT);
        });
    }

    async fn keep_pace(&self, holder: String) {
        let paces = Pacer::of_holder(&holder);
        if paces.is_empty() {
            return; // this process never called it (a dry run writes no form)
        }
        let h = holder.clone();
        if let Err(e) = self.store.call(move |s| keep_holder(s, &h, &paces)).await {
            tracing::warn!(%holder, error = %e, "could not keep when this run's calls left; a run started within a minute may meet a throttling answer");
        }
    }
}

/// `paces` take in the departures kept for `holder` (their own included,
/// which they know already).
fn take_in_kept(store: &Store, holder: &str, paces: &[Arc<Pacer>]) {
    match store.recent_departures(holder) {
        Ok(earlier) => paces.iter().for_each(|p| p.remember(&earlier)),
        Err(e) => {
            tracing::warn!(%holder, error = %e, "could not read when other runs' calls left")
        }
    }
}

/// Keeps the departures of `holder`'s `paces`, with what another process
/// kept since this run read them taken in first: replacing them would lose
/// that process's calls for the runs after, and taking them in paces the rest
/// of this run around them (docs/ARCHITECTURE.md, "A pace is the vendor
/// app's, not the run's").
fn keep_holder(store: &Store, holder: &str, paces: &[Arc<Pacer>]) -> Result<(), StoreError> {
    take_in_kept(store, holder, paces);
    store.keep_departures(holder, &departures_of(paces))
}

/// When the recent calls of `paces` left, lane by lane: jobs of one app with
/// different limits have paces of their own.
fn departures_of(paces: &[Arc<Pacer>]) -> Departures {
    let mut lanes: BTreeMap<String, Vec<SystemTime>> = BTreeMap::new();
    for pacer in paces {
        for (lane, times) in pacer.departures() {
            lanes.entry(lane).or_default().extend(times);
        }
    }
    lanes.into_iter().collect()
}
