//! Pull: the task that pulls a month chunk by chunk and hands the chunks over a
//! bounded channel, listing the organisation while it pulls in the first month
//! of a run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio::task::JoinError;

use super::plan::Budget;
use super::JobError;
use crate::month::Month;
use crate::roster::UserIds;
use crate::source::{Pulled, Source, SourceError};

/// Called with the head count once a listing is complete.
pub(super) type OnListed = Box<dyn FnOnce(usize) + Send>;

/// What the pulling task of one month needs.
pub(super) struct MonthPull {
    pub(super) source: Arc<dyn Source>,
    pub(super) month: Month,
    pub(super) now: DateTime<Utc>,
    pub(super) tz: chrono_tz::Tz,
    pub(super) budget: Option<Arc<Budget>>,
}

/// Where a month's employees come from.
pub(super) enum Roster {
    /// Being listed now (the first month of a run): chunks are pulled as soon as
    /// enough employees are found, up to `cap` of them (a metered source's
    /// budget); the rest are only counted.
    Discovering {
        listing: tokio::task::JoinHandle<Result<UserIds, SourceError>>,
        found: mpsc::Receiver<Vec<String>>,
        cap: usize,
    },
    /// Listed by an earlier month of this run (or before it): the first `take`.
    Known { all: Arc<UserIds>, take: usize },
}

/// What a month's pull learnt about the organisation.
#[derive(Default)]
pub(super) struct Listing {
    /// Everyone, when the organisation was listed completely by this pull.
    pub(super) all: Option<UserIds>,
    /// Employees listed but not pulled: beyond the budget's cap.
    pub(super) over_cap: usize,
}

impl Roster {
    /// `on_listed` is called as soon as the listing is complete, while the
    /// month may still be pulled for a long while.
    pub(super) fn discover(
        source: &Arc<dyn Source>,
        cap: usize,
        on_listed: Option<OnListed>,
    ) -> Roster {
        let (tx, rx) = mpsc::channel(16);
        let source = source.clone();
        let listing = tokio::spawn(async move {
            let listed = source.discover(&tx).await;
            if let (Ok(all), Some(announce)) = (&listed, on_listed) {
                announce(all.len());
            }
            listed
        });
        Roster::Discovering {
            listing,
            found: rx,
            cap,
        }
    }

    pub(super) fn known(all: &Arc<UserIds>) -> Roster {
        Roster::Known {
            all: all.clone(),
            take: all.len(),
        }
    }

    pub(super) fn known_len(&self) -> u64 {
        match self {
            Roster::Known { take, .. } => *take as u64,
            Roster::Discovering { .. } => 0,
        }
    }

    /// Pulls the month chunk by chunk into `tx`.
    pub(super) async fn pull(
        self,
        spec: MonthPull,
        tx: mpsc::Sender<Result<Pulled, SourceError>>,
        found: Arc<AtomicU64>,
    ) -> Listing {
        let MonthPull {
            source,
            month,
            now,
            tz,
            budget,
        } = spec;
        let size = source.chunk_size();
        // Pulls one chunk and hands it on; false when the pull must stop.
        let send = |chunk: Vec<String>| {
            let (source, tx, budget) = (&source, &tx, &budget);
            async move {
                let pulled = match budget {
                    Some(b) if !b.allows(chunk.len()) => Ok(Pulled {
                        stopped: Some(b.stop_reason()),
                        ..Pulled::default()
                    }),
                    _ => source.pull(month, &chunk, now, tz).await,
                };
                let stop = pulled.as_ref().map_or(true, |p| p.stopped.is_some());
                tx.send(pulled).await.is_ok() && !stop
            }
        };
        match self {
            Roster::Known { all, take } => {
                found.store(take as u64, Ordering::SeqCst);
                for start in (0..take).step_by(size.max(1)) {
                    if !send(all.slice(start, (start + size).min(take))).await {
                        break;
                    }
                }
                Listing::default()
            }
            Roster::Discovering {
                listing,
                found: mut rx,
                cap,
            } => {
                let mut buffer: Vec<String> = Vec::new();
                let (mut room, mut over_cap) = (cap, 0usize);
                while let Some(batch) = rx.recv().await {
                    found.fetch_add(batch.len() as u64, Ordering::SeqCst);
                    let taken = batch.len().min(room);
                    room -= taken;
                    over_cap += batch.len() - taken;
                    buffer.extend(batch.into_iter().take(taken));
                    while buffer.len() >= size {
                        let chunk: Vec<String> = buffer.drain(..size).collect();
                        if !send(chunk).await {
                            return Listing::default();
                        }
                    }
                }
                let listed = match listing.await {
                    Ok(r) => r,
                    Err(e) => Err(SourceError::Protocol {
                        vendor: "attendsync",
                        endpoint: "employee listing".into(),
                        message: e.to_string(),
                    }),
                };
                let all = match listed {
                    Ok(all) => all,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return Listing::default();
                    }
                };
                if !buffer.is_empty() && !send(buffer).await {
                    return Listing::default();
                }
                Listing {
                    all: Some(all),
                    over_cap,
                }
            }
        }
    }
}

/// What the pull task left: its listing, or an error when the task panicked or
/// was cancelled. Such a task may have stopped anywhere, so its month was not
/// pulled completely: nothing in it may count as gone from the source (and
/// `rerun --prune` must delete nothing), and the month fails.
pub(super) fn pull_ended(joined: Result<Listing, JoinError>) -> Result<Listing, JobError> {
    joined.map_err(|e| {
        JobError::Setup(format!(
            "the pull task failed ({e}); the month was not pulled completely, so nothing in it counts as gone from the source"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pull_task_that_panicked_is_an_error_not_an_empty_listing() {
        let task = tokio::spawn(async {
            if true {
                panic!("simulated pull failure");
            }
            Listing::default()
        });
        let ended = pull_ended(task.await);
        let Err(JobError::Setup(message)) = ended else {
            panic!("a panicked pull task must fail its month");
        };
        assert!(message.contains("the pull task failed"), "{message}");
        assert!(message.contains("panicked"), "{message}");
    }

    #[tokio::test]
    async fn a_cancelled_pull_task_is_an_error_not_an_empty_listing() {
        let task = tokio::spawn(async {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            Listing::default()
        });
        task.abort();
        let ended = pull_ended(task.await);
        let Err(JobError::Setup(message)) = ended else {
            panic!("a cancelled pull task must fail its month");
        };
        assert!(message.contains("cancelled"), "{message}");
    }

    #[tokio::test]
    async fn a_finished_pull_task_hands_over_its_listing() {
        let task = tokio::spawn(async {
            Listing {
                all: Some(["u1", "u2"].into_iter().collect()),
                over_cap: 3,
            }
        });
        let listing = pull_ended(task.await).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(listing.all.map(|a| a.len()), Some(2));
        assert_eq!(listing.over_cap, 3);
    }
}
