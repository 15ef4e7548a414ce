//! The run's paces and the store: at its start a run's paces take in the
//! departures the runs before it kept (another process's, say a `rerun` by
//! hand beside the daemon), and after each month and at its end the run keeps
//! its own, so that the next run keeps to the quota windows both share
//! (`http/pace/memory.rs`).
//! Neither is worth failing a run over: the vendors' throttling answers are
//! still retried, so a store that refuses costs a warning.

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::http::pace::{Departures, Pacer};

use super::Syncer;
use crate::config::job::Job;

impl Syncer {
    /// Before the first call of `holder`'s clients in a run: its paces learn
    /// when the calls of the runs before left (another process's included).
    pub(super) async fn recall_pace(&self, holder: String) {
        let paces = Pacer::of_holder(&holder);
        if paces.is_empty() {
            return;
        }
        let h = holder.clone();
        match self.store.call(move |s| s.recent_departures(&h)).await {
            Ok(earlier) => paces.iter().for_each(|p| p.remember(&earlier)),
            Err(e) => {
                tracing::warn!(%holder, error = %e, "could not read when the last run's calls left; pacing from now")
            }
        }
    }

    /// After each month and at the run's end: when the job's recent calls
    /// left, for the next run (a run killed mid-month leaves what its last
    /// month kept).
    pub(super) async fn keep_paces(&self, job: &Job) {
        self.keep_pace(job.source.app_identity()).await;
        self.keep_pace(job.target.pace_holder()).await;
    }

    async fn keep_pace(&self, holder: String) {
        let paces = Pacer::of_holder(&holder);
        if paces.is_empty() {
            return; // this process never called it (a dry run writes no form)
        }
        // Jobs of one app with different limits have paces of their own.
        let mut lanes: BTreeMap<String, Vec<SystemTime>> = BTreeMap::new();
        for pacer in paces {
            for (lane, times) in pacer.departures() {
                lanes.entry(lane).or_default().extend(times);
            }
        }
        let departures: Departures = lanes.into_iter().collect();
        let h = holder.clone();
        if let Err(e) = self
            .store
            .call(move |s| s.keep_departures(&h, &departures))
            .await
        {
            tracing::warn!(%holder, error = %e, "could not keep when this run's calls left; a run started within a minute may meet a throttling answer");
        }
    }
}
