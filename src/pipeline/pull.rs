//! Pull: the task that pulls a month chunk by chunk and hands the chunks over a
//! bounded channel, listing the organisation while it pulls in the first month
//! of a run.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinSet};

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
    /// Set once the pull must start no further chunk: by a chunk that
    /// stopped, as soon as it ends, or by the month when it stops.
    pub(super) halt: Arc<AtomicBool>,
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
            let prepare = async {
                if cap > 0 {
                    source.prepare_pull().await;
                }
            };
            let (listed, ()) = tokio::join!(source.discover(&tx), prepare);
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
        let size = spec.source.chunk_size().max(1);
        let first = spec.source.first_chunk_size();
        let mut chunks = Chunks::new(spec, tx.clone());
        match self {
            Roster::Known { all, take } => {
                found.store(take as u64, Ordering::SeqCst);
                for start in (0..take).step_by(size) {
                    if !chunks
                        .start(all.slice(start, (start + size).min(take)))
                        .await
                    {
                        break;
                    }
                }
                chunks.finish().await;
                Listing::default()
            }
            Roster::Discovering {
                listing,
                found: mut rx,
                cap,
            } => {
                let mut buffer: Vec<String> = Vec::new();
                let (mut room, mut over_cap) = (cap, 0usize);
                let mut next = first.min(size).max(1);
                while let Some(batch) = rx.recv().await {
                    found.fetch_add(batch.len() as u64, Ordering::SeqCst);
                    let taken = batch.len().min(room);
                    room -= taken;
                    over_cap += batch.len() - taken;
                    buffer.extend(batch.into_iter().take(taken));
                    while buffer.len() >= next {
                        let chunk: Vec<String> = buffer.drain(..next).collect();
                        next = size;
                        if !chunks.start(chunk).await {
                            chunks.finish().await;
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
                        chunks.finish().await;
                        let _ = tx.send(Err(e)).await;
                        return Listing::default();
                    }
                };
                let started = buffer.is_empty() || chunks.start(buffer).await;
                // Always waited for: dropping `chunks` would abort the chunks
                // still running, and lose what they pulled.
                let complete = chunks.finish().await && started;
                if !complete {
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

/// Chunks pulled at once: the next one starts while the last calls of the one
/// before are still out, so that no slot of a fast quota goes unused at a
/// chunk's end (DingTalk pulls a chunk's employees a few at a time).
const CHUNKS_IN_FLIGHT: usize = 2;

/// The chunks being pulled, each handing its records on when done (in the
/// order they finish: the month writes each chunk on its own). The pull stops
/// on the month's `halt`, which a chunk that stops (a quota, the budget), a
/// reader gone away or the month itself sets.
struct Chunks {
    spec: Arc<MonthPull>,
    tx: mpsc::Sender<Result<Pulled, SourceError>>,
    running: JoinSet<()>,
    /// Employees of the chunks running: a metered source starts another
    /// chunk beside them only when the budget holds them all.
    promised: Arc<AtomicUsize>,
}

impl Chunks {
    fn new(spec: MonthPull, tx: mpsc::Sender<Result<Pulled, SourceError>>) -> Chunks {
        Chunks {
            spec: Arc::new(spec),
            tx,
            running: JoinSet::new(),
            promised: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn halted(&self) -> bool {
        self.spec.halt.load(Ordering::SeqCst)
    }

    /// Starts pulling `chunk` once there is room for it; false when the pull
    /// must stop.
    async fn start(&mut self, chunk: Vec<String>) -> bool {
        loop {
            // A chunk that stopped says so when it ends, not when it is
            // joined: no chunk starts after a stop (a quota, the budget).
            if self.halted() {
                return false;
            }
            let promised = self.promised.load(Ordering::SeqCst) + chunk.len();
            let fits = (self.spec.budget.as_ref()).is_none_or(|b| b.allows(promised));
            if self.running.is_empty() || (self.running.len() < CHUNKS_IN_FLIGHT && fits) {
                break;
            }
            self.join_one().await;
        }
        let (spec, tx, promised) = (self.spec.clone(), self.tx.clone(), self.promised.clone());
        promised.fetch_add(chunk.len(), Ordering::SeqCst);
        self.running.spawn(async move {
            let pulled = match &spec.budget {
                Some(b) if !b.allows(chunk.len()) => {
                    let beside = promised.load(Ordering::SeqCst).saturating_sub(chunk.len());
                    pull_what_fits(&spec, b, &chunk, beside).await
                }
                _ => {
                    (spec.source)
                        .pull(spec.month, &chunk, spec.now, spec.tz)
                        .await
                }
            };
            promised.fetch_sub(chunk.len(), Ordering::SeqCst);
            if pulled.as_ref().map_or(true, |p| p.stopped.is_some()) {
                spec.halt.store(true, Ordering::SeqCst);
            }
            if tx.send(pulled).await.is_err() {
                spec.halt.store(true, Ordering::SeqCst);
            }
        });
        true
    }

    /// Waits for one running chunk to end.
    async fn join_one(&mut self) {
        match self.running.join_next().await {
            Some(Ok(())) | None => {}
            // A chunk that panicked fails the pull task as it did when chunks
            // ran in it (see `pull_ended`).
            Some(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Some(Err(_)) => self.spec.halt.store(true, Ordering::SeqCst),
        }
    }

    /// Waits for every running chunk; false when the pull stopped.
    async fn finish(&mut self) -> bool {
        while !self.running.is_empty() {
            self.join_one().await;
        }
        !self.halted()
    }
}

/// Pulls the employees of a chunk the budget no longer holds whole that it
/// still pays for, besides the `beside` employees of the chunks running, then
/// stops the pull. Retries an earlier chunk met must not cost the run a whole
/// chunk of employees it can afford (the first of a listed month is small).
async fn pull_what_fits(
    spec: &MonthPull,
    budget: &Budget,
    chunk: &[String],
    beside: usize,
) -> Result<Pulled, SourceError> {
    let fits = budget
        .employees_left()
        .saturating_sub(beside)
        .min(chunk.len());
    let mut pulled = if fits == 0 {
        Ok(Pulled::default())
    } else {
        let part = &chunk[..fits];
        spec.source.pull(spec.month, part, spec.now, spec.tz).await
    };
    if let Ok(p) = &mut pulled {
        p.stopped.get_or_insert_with(|| budget.stop_reason());
    }
    pulled
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
    use futures::future::BoxFuture;
    use std::time::Duration;

    /// Two employees a chunk; each pull takes 50 ms, and the chunk holding
    /// `stops_at` stops partway.
    #[derive(Default)]
    struct Slow {
        running: AtomicUsize,
        most: AtomicUsize,
        pulls: AtomicUsize,
        stops_at: Option<&'static str>,
        /// What `discover` lists, in one batch.
        listed: Vec<&'static str>,
        prepared: AtomicUsize,
        /// `first_chunk_size`, when it differs from the chunk size.
        first: Option<usize>,
        /// Each pull's employees, in the order the pulls started.
        sizes: std::sync::Mutex<Vec<usize>>,
    }

    impl Source for Slow {
        fn kind(&self) -> &'static str {
            "slow"
        }
        fn chunk_size(&self) -> usize {
            2
        }
        fn first_chunk_size(&self) -> usize {
            self.first.unwrap_or(2)
        }
        fn login(&self) -> BoxFuture<'_, Result<(), SourceError>> {
            Box::pin(async { Ok(()) })
        }
        fn employees(&self) -> BoxFuture<'_, Result<Vec<String>, SourceError>> {
            Box::pin(async { Ok(Vec::new()) })
        }
        fn discover<'a>(
            &'a self,
            tx: &'a mpsc::Sender<Vec<String>>,
        ) -> BoxFuture<'a, Result<UserIds, SourceError>> {
            Box::pin(async move {
                let batch: Vec<String> = self.listed.iter().map(|e| e.to_string()).collect();
                let _ = tx.send(batch).await;
                Ok(self.listed.iter().copied().collect())
            })
        }
        fn pull<'a>(
            &'a self,
            _month: Month,
            employees: &'a [String],
            _now: DateTime<Utc>,
            _tz: chrono_tz::Tz,
        ) -> BoxFuture<'a, Result<Pulled, SourceError>> {
            Box::pin(async move {
                self.pulls.fetch_add(1, Ordering::SeqCst);
                if let Ok(mut sizes) = self.sizes.lock() {
                    sizes.push(employees.len());
                }
                let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
                self.most.fetch_max(now, Ordering::SeqCst);
                let stops = self
                    .stops_at
                    .is_some_and(|e| employees.iter().any(|x| x == e));
                if !stops {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                self.running.fetch_sub(1, Ordering::SeqCst);
                Ok(Pulled {
                    failed: employees.iter().map(|e| (e.clone(), "x".into())).collect(),
                    stopped: stops.then(|| SourceError::Protocol {
                        vendor: "slow",
                        endpoint: "pull".into(),
                        message: "quota spent".into(),
                    }),
                    ..Pulled::default()
                })
            })
        }
        fn prepare_pull(&self) -> BoxFuture<'_, ()> {
            self.prepared.fetch_add(1, Ordering::SeqCst);
            Box::pin(async {})
        }
        fn absence_proves_gone(&self) -> bool {
            false
        }
        fn check_remote(&self) -> BoxFuture<'_, Result<Vec<String>, SourceError>> {
            Box::pin(async { Ok(Vec::new()) })
        }
    }

    /// Pulls what `roster` names from `source`; the employees handed on, in
    /// the order their chunks came.
    async fn pull_with(source: Arc<dyn Source>, roster: Roster) -> Vec<String> {
        let spec = MonthPull {
            source,
            month: "2026-10".parse().expect("month"),
            now: Utc::now(),
            tz: chrono_tz::Asia::Shanghai,
            budget: None,
            halt: Arc::default(),
        };
        let (tx, mut rx) = mpsc::channel(16);
        let task = tokio::spawn(roster.pull(spec, tx, Arc::new(AtomicU64::new(0))));
        let mut handed = Vec::new();
        while let Some(Ok(pulled)) = rx.recv().await {
            handed.extend(pulled.failed.into_iter().map(|(e, _)| e));
        }
        task.await.expect("pull task");
        handed
    }

    /// Pulls six known employees (three chunks) from `source`.
    async fn pull_six(source: Arc<Slow>) -> Vec<String> {
        let all: Arc<UserIds> = Arc::new(["a", "b", "c", "d", "e", "f"].into_iter().collect());
        pull_with(source, Roster::known(&all)).await
    }

    #[tokio::test]
    async fn the_next_chunk_is_pulled_while_the_one_before_finishes() {
        let source = Arc::new(Slow::default());
        let mut handed = pull_six(source.clone()).await;
        handed.sort();
        assert_eq!(handed, ["a", "b", "c", "d", "e", "f"]);
        assert_eq!(source.most.load(Ordering::SeqCst), CHUNKS_IN_FLIGHT);
    }

    #[tokio::test]
    async fn a_chunk_that_stops_starts_no_further_chunk() {
        let source = Arc::new(Slow {
            stops_at: Some("a"),
            ..Slow::default()
        });
        let handed = pull_six(source.clone()).await;
        // The second chunk was under way already and is handed on; the third
        // never starts.
        assert_eq!(source.pulls.load(Ordering::SeqCst), 2);
        assert!(!handed.contains(&"e".to_string()), "{handed:?}");
    }

    /// The listing ends after a chunk stopped, with a chunk still running and
    /// a last, partial chunk that may no longer start: the running chunk is
    /// waited for and handed on, not aborted with what it pulled.
    #[tokio::test]
    async fn a_chunk_running_when_a_listing_ends_after_a_stop_is_handed_on() {
        let source = Arc::new(Slow {
            stops_at: Some("a"),
            listed: vec!["a", "b", "c", "d", "e"],
            ..Slow::default()
        });
        let dyn_source: Arc<dyn Source> = source.clone();
        let roster = Roster::discover(&dyn_source, usize::MAX, None);
        let mut handed = pull_with(dyn_source, roster).await;
        handed.sort();
        assert_eq!(handed, ["a", "b", "c", "d"]);
        assert_eq!(
            source.pulls.load(Ordering::SeqCst),
            2,
            "no chunk after the stop"
        );
    }

    /// A source that pulls employee by employee starts with the first few
    /// found while the month is listed; later chunks, and every chunk of a
    /// month whose employees are known, are whole.
    #[tokio::test]
    async fn a_listed_month_starts_with_the_sources_first_chunk() {
        let source = Arc::new(Slow {
            listed: vec!["a", "b", "c", "d", "e", "f"],
            first: Some(1),
            ..Slow::default()
        });
        let dyn_source: Arc<dyn Source> = source.clone();
        let roster = Roster::discover(&dyn_source, usize::MAX, None);
        let mut handed = pull_with(dyn_source, roster).await;
        handed.sort();
        assert_eq!(handed, ["a", "b", "c", "d", "e", "f"]);
        let sizes = |s: &Slow| s.sizes.lock().map(|v| v.clone()).unwrap_or_default();
        assert_eq!(sizes(&source), [1, 2, 2, 1]);

        let known = Arc::new(Slow {
            first: Some(1),
            ..Slow::default()
        });
        pull_six(known.clone()).await;
        assert_eq!(sizes(&known), [2, 2, 2]);
    }

    /// What every chunk's pull needs is fetched while the month is listed,
    /// but not when the budget lets no chunk be pulled: a run with nothing
    /// to pull spends no metered call.
    #[tokio::test]
    async fn a_listing_prepares_the_pull_only_when_a_chunk_may_be_pulled() {
        for (cap, prepared) in [(0, 0), (usize::MAX, 1)] {
            let source = Arc::new(Slow {
                listed: vec!["a", "b", "c"],
                ..Slow::default()
            });
            let dyn_source: Arc<dyn Source> = source.clone();
            let roster = Roster::discover(&dyn_source, cap, None);
            let handed = pull_with(dyn_source, roster).await;
            assert_eq!(handed.len(), 3.min(cap), "cap {cap}");
            assert_eq!(
                source.prepared.load(Ordering::SeqCst),
                prepared,
                "cap {cap}"
            );
        }
    }

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
