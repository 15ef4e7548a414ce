//! The job lease: one run of a job at a time, across processes (`run`, `rerun`,
//! `daemon`), kept in SQLite and renewed while its holder runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::store::{Store, StoreError};

/// How long a lease lasts without renewal; renewed every third of it.
pub const LEASE_TTL: Duration = Duration::from_secs(60);

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty() && !h.contains(':'))
        .unwrap_or_else(|| "localhost".to_string())
}

/// Whether the process named by an owner id (`host:pid:uuid`) is certainly gone.
/// Only decidable for processes on this machine with a /proc filesystem; anything
/// else is presumed alive and waits for the lease to expire.
pub fn holder_is_dead(owner: &str) -> bool {
    let mut parts = owner.splitn(3, ':');
    let (Some(host), Some(pid)) = (parts.next(), parts.next()) else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    host == hostname()
        && pid != std::process::id()
        && std::path::Path::new("/proc/self").exists()
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Holds a job's lease and renews it until dropped.
pub struct Lease {
    store: Store,
    job: String,
    owner: String,
    lost: Arc<AtomicBool>,
    renewer: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Takes the job's lease, or says who holds it. A holder on this machine whose
    /// process is gone (killed with -9) is taken over at once; others expire.
    pub async fn acquire(store: &Store, job: &str) -> Result<Result<Lease, String>, StoreError> {
        let owner = format!(
            "{}:{}:{}",
            hostname(),
            std::process::id(),
            uuid::Uuid::new_v4()
        );
        let (j, o) = (job.to_string(), owner.clone());
        let holder = store
            .call(move |s| s.acquire_lease(&j, &o, LEASE_TTL, Utc::now(), &holder_is_dead))
            .await?;
        if let Some(h) = holder {
            return Ok(Err(format!(
                "job {job} is already running in another process ({}); its lease expires at {} unless renewed",
                crate::text::clean(&h.owner),
                h.expires_at.to_rfc3339()
            )));
        }
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = tokio::spawn({
            let (store, job, owner, lost) =
                (store.clone(), job.to_string(), owner.clone(), lost.clone());
            async move {
                loop {
                    tokio::time::sleep(LEASE_TTL / 3).await;
                    let (j, o) = (job.clone(), owner.clone());
                    let kept = store
                        .call(move |s| s.renew_lease(&j, &o, LEASE_TTL, Utc::now()))
                        .await;
                    if !matches!(kept, Ok(true)) {
                        tracing::error!(%job, "lost the job lease; stopping writes");
                        lost.store(true, Ordering::SeqCst);
                        return;
                    }
                }
            }
        });
        Ok(Ok(Lease {
            store: store.clone(),
            job: job.to_string(),
            owner,
            lost,
            renewer,
        }))
    }

    /// True once the lease was lost (expired and taken by another process).
    pub fn lost(&self) -> Arc<AtomicBool> {
        self.lost.clone()
    }

    pub async fn release(self) {
        self.renewer.abort();
        let (job, owner) = (self.job, self.owner);
        if let Err(e) = self
            .store
            .call(move |s| s.release_lease(&job, &owner))
            .await
        {
            tracing::warn!(error = %e, "could not release the job lease; it expires by itself");
        }
    }
}
