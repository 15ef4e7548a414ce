//! The job lease: one run of a job at a time, across processes (`run`, `rerun`,
//! `daemon`), kept in SQLite and renewed while its holder runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::store::{Store, StoreError};

/// How long a lease lasts without renewal; renewed every third of it.
pub const LEASE_TTL: Duration = Duration::from_secs(60);

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| {
            !h.is_empty()
                && !h
                    .contains(|c: char| c == ':' || c == '=' || c.is_whitespace() || c.is_control())
        })
        .unwrap_or_else(|| "localhost".to_string())
}

/// What names a process for the lease: host, kernel boot, PID namespace and pid.
/// A boot id or namespace that cannot be read is empty, and matches nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub host: String,
    /// `/proc/sys/kernel/random/boot_id`: one per kernel boot.
    pub boot: String,
    /// The inode of `/proc/self/ns/pid` (`pid:[4026531836]`): one per PID namespace.
    pub pidns: String,
    pub pid: u32,
}

impl Identity {
    /// This process.
    pub fn current() -> Identity {
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|b| b.trim().to_string())
            .unwrap_or_default();
        let pidns = std::fs::read_link("/proc/self/ns/pid")
            .ok()
            .and_then(|l| {
                let l = l.to_string_lossy().into_owned();
                let inode = l.strip_prefix("pid:[")?.strip_suffix(']')?.to_string();
                inode.bytes().all(|b| b.is_ascii_digit()).then_some(inode)
            })
            .unwrap_or_default();
        Identity {
            host: hostname(),
            boot: word(boot),
            pidns,
            pid: std::process::id(),
        }
    }

    /// The lease owner string: `host=… boot=… pidns=… pid=… id=<uuid>`. It has no
    /// `:`, so a binary that knows only the old `host:pid:uuid` owners cannot
    /// parse it and waits for the lease to expire instead of judging it.
    pub fn owner(&self, id: uuid::Uuid) -> String {
        format!(
            "host={} boot={} pidns={} pid={} id={id}",
            self.host, self.boot, self.pidns, self.pid
        )
    }

    /// The identity in an owner string of the current format; `None` for anything
    /// else (the old `host:pid:uuid`, or text that is not an owner).
    pub fn parse(owner: &str) -> Option<Identity> {
        let mut fields = owner.split(' ');
        let mut next = |key: &str| fields.next()?.strip_prefix(key)?.strip_prefix('=');
        let host = next("host")?.to_string();
        let boot = next("boot")?.to_string();
        let pidns = next("pidns")?.to_string();
        let pid = next("pid")?.parse().ok()?;
        next("id")?;
        Some(Identity {
            host,
            boot,
            pidns,
            pid,
        })
    }
}

/// `s` if it is one word of printable ASCII, else empty (unknown).
fn word(s: String) -> String {
    if s.bytes().all(|b| b.is_ascii_graphic() && b != b'=') {
        s
    } else {
        String::new()
    }
}

/// Whether the process named by a lease owner is certainly gone: it ran on this
/// host, under this kernel boot, in this PID namespace, and `gone(pid)` says its
/// pid is not there. Anything else — another namespace (its pids are not ours to
/// look up), another boot id (another machine with the same name is possible;
/// after a reboot the lease has as good as expired anyway), an unreadable boot id
/// or namespace, an owner of the old `host:pid:uuid` format (namespace unknown) —
/// is presumed alive and waited out to the lease's expiry, never taken over.
pub fn judge_dead(owner: &str, me: &Identity, gone: impl Fn(u32) -> bool) -> bool {
    let Some(holder) = Identity::parse(owner) else {
        return false;
    };
    !me.boot.is_empty()
        && !me.pidns.is_empty()
        && holder.host == me.host
        && holder.boot == me.boot
        && holder.pidns == me.pidns
        && holder.pid != me.pid
        && gone(holder.pid)
}

/// [`judge_dead`] for this process, on this machine's `/proc`, which must be the
/// `/proc` of our PID namespace (`/proc/self` is our own pid) to be believed.
pub fn holder_is_dead(owner: &str) -> bool {
    let me = Identity::current();
    judge_dead(owner, &me, |pid| {
        let own_proc = std::fs::read_link("/proc/self")
            .is_ok_and(|l| l.to_string_lossy() == me.pid.to_string());
        own_proc && !std::path::Path::new(&format!("/proc/{pid}")).exists()
    })
}

/// Why the job's lease was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Another live process holds it (`holder` is its owner text as stored,
    /// cleaned when shown).
    #[error(
        "job {job} is already running in another process ({}); its lease expires at {} unless renewed",
        crate::text::clean(.holder),
        .expires_at.to_rfc3339()
    )]
    Busy {
        job: String,
        holder: String,
        expires_at: DateTime<Utc>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
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
    pub async fn acquire(store: &Store, job: &str) -> Result<Lease, LeaseError> {
        let owner = Identity::current().owner(uuid::Uuid::new_v4());
        let (j, o) = (job.to_string(), owner.clone());
        let holder = store
            .call(move |s| s.acquire_lease(&j, &o, LEASE_TTL, Utc::now(), &holder_is_dead))
            .await?;
        if let Some(h) = holder {
            return Err(LeaseError::Busy {
                job: job.to_string(),
                holder: h.owner,
                expires_at: h.expires_at,
            });
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
        Ok(Lease {
            store: store.clone(),
            job: job.to_string(),
            owner,
            lost,
            renewer,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Identity {
        Identity {
            host: "web1".into(),
            boot: "9c1f6f2e-0b7e-4a53-9d0f-3c1a2b4c5d6e".into(),
            pidns: "4026531836".into(),
            pid: 100,
        }
    }

    fn owner(f: impl FnOnce(&mut Identity)) -> String {
        let mut id = me();
        id.pid = 200;
        f(&mut id);
        id.owner(uuid::Uuid::nil())
    }

    #[test]
    fn owners_round_trip() {
        let o = me().owner(uuid::Uuid::nil());
        assert_eq!(Identity::parse(&o), Some(me()));
        assert!(!o.contains(':'), "old binaries must not parse {o}");
    }

    #[test]
    fn only_a_gone_pid_of_our_boot_and_namespace_is_dead() {
        let all_gone = |_: u32| true;
        let none_gone = |_: u32| false;
        // Same host, boot and namespace, pid gone: dead at once.
        assert!(judge_dead(&owner(|_| {}), &me(), all_gone));
        // ... but not while the pid is there, nor when it is our own.
        assert!(!judge_dead(&owner(|_| {}), &me(), none_gone));
        assert!(!judge_dead(&owner(|i| i.pid = 100), &me(), all_gone));
        // Another PID namespace (unshare --pid, a container): its pids are not ours.
        assert!(!judge_dead(
            &owner(|i| i.pidns = "4026532500".into()),
            &me(),
            all_gone
        ));
        // Another boot id or host: another machine is possible; wait for expiry.
        assert!(!judge_dead(
            &owner(|i| i.boot = "other".into()),
            &me(),
            all_gone
        ));
        assert!(!judge_dead(
            &owner(|i| i.host = "web2".into()),
            &me(),
            all_gone
        ));
        // Unknown on either side matches nothing.
        assert!(!judge_dead(&owner(|i| i.pidns.clear()), &me(), all_gone));
        let mut blind = me();
        blind.pidns.clear();
        assert!(!judge_dead(&owner(|i| i.pidns.clear()), &blind, all_gone));
        // Old-format owners (namespace unknown) and garbage: wait for expiry.
        assert!(!judge_dead("web1:200:0000", &me(), all_gone));
        assert!(!judge_dead("host=web1\nboot=x", &me(), all_gone));
        assert!(!judge_dead("", &me(), all_gone));
    }

    #[test]
    fn this_process_has_an_identity() {
        let me = Identity::current();
        assert_eq!(me.pid, std::process::id());
        if std::path::Path::new("/proc/self/ns/pid").exists() {
            assert!(!me.boot.is_empty() && !me.pidns.is_empty(), "{me:?}");
        }
        // Our own owner is never judged dead.
        assert!(!holder_is_dead(&me.owner(uuid::Uuid::new_v4())));
    }
}
