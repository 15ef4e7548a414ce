//! An access-token cache per app: refreshed before expiry, shared by concurrent
//! callers (one refresh at a time), and invalidated on a token error.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::secret::Secret;

struct Cached {
    token: Secret,
    fresh_until: Instant,
}

#[derive(Default)]
pub struct TokenCache {
    slot: Mutex<Option<Cached>>,
    /// The token fetched last, and whether a call carrying it was answered
    /// since: one rejected after that expired or was revoked, which says
    /// nothing about the credentials. Per fetch, not per string: vendors hand
    /// out the same string again while it is valid.
    fetched: std::sync::Mutex<(Option<Secret>, bool)>,
}

/// What the rejection of a token comes to ([`TokenCache::invalidate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Another caller had already replaced it: use the new one.
    Replaced,
    /// It had worked for some call before: it expired early; dropped.
    Expired,
    /// No call ever succeeded with it: dropped, and a fresh one that meets the
    /// same fate points at the credentials or the app's permissions.
    Refused,
}

/// How long before the announced expiry a token is considered stale: vendors
/// may revoke early, and a call in flight must not carry a token that expires.
fn margin(expires_in: Duration) -> Duration {
    (expires_in / 10).min(Duration::from_secs(200))
}

impl TokenCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The cached token, or a fresh one from `fetch` (which returns the token and its
    /// lifetime). Concurrent callers wait for a single fetch and share its result.
    pub async fn get<F, Fut, E>(&self, fetch: F) -> Result<Secret, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(Secret, Duration), E>>,
    {
        let mut slot = self.slot.lock().await;
        if let Some(c) = slot.as_ref() {
            if Instant::now() < c.fresh_until {
                return Ok(c.token.clone());
            }
        }
        let (token, expires_in) = fetch().await?;
        if let Ok(mut fetched) = self.fetched.lock() {
            *fetched = (Some(token.clone()), false);
        }
        *slot = Some(Cached {
            token: token.clone(),
            fresh_until: Instant::now() + expires_in.saturating_sub(margin(expires_in)),
        });
        Ok(token)
    }

    /// Notes that a call carrying `token` was answered.
    pub fn accepted(&self, token: &Secret) {
        if let Ok(mut fetched) = self.fetched.lock() {
            if !fetched.1 && fetched.0.as_ref() == Some(token) {
                fetched.1 = true;
            }
        }
    }

    /// Drops `stale` if it is still the cached token, and says what its
    /// rejection means: under load a fresh token can expire before a call that
    /// fetched it is sent, which must not read as a bad secret.
    pub async fn invalidate(&self, stale: &Secret) -> Rejection {
        let mut slot = self.slot.lock().await;
        let current = slot.as_ref().is_some_and(|c| &c.token == stale);
        if !current && slot.is_some() {
            return Rejection::Replaced;
        }
        *slot = None;
        let worked = self
            .fetched
            .lock()
            .map(|f| f.1 && f.0.as_ref() == Some(stale))
            .unwrap_or(false);
        if worked {
            Rejection::Expired
        } else {
            Rejection::Refused
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch_and_invalidate_refetches() {
        let cache = Arc::new(TokenCache::new());
        let fetches = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (cache, fetches) = (cache.clone(), fetches.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get(|| async {
                        let n = fetches.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok::<_, ()>((Secret::new(format!("t{n}")), Duration::from_secs(7200)))
                    })
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.ok().and_then(|r| r.ok()), Some(Secret::new("t0")));
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        assert_eq!(
            cache.invalidate(&Secret::new("other")).await,
            Rejection::Replaced
        );
        let same = cache
            .get(|| async { Err::<(Secret, Duration), ()>(()) })
            .await;
        assert_eq!(same, Ok(Secret::new("t0")));
        assert_eq!(
            cache.invalidate(&Secret::new("t0")).await,
            Rejection::Refused
        );
        let fresh = cache
            .get(|| async { Ok::<_, ()>((Secret::new("t1"), Duration::from_secs(7200))) })
            .await;
        assert_eq!(fresh, Ok(Secret::new("t1")));
    }

    #[tokio::test]
    async fn a_token_rejected_after_it_worked_has_expired() {
        let cache = TokenCache::new();
        let t = cache
            .get(|| async { Ok::<_, ()>((Secret::new("a"), Duration::from_secs(10))) })
            .await;
        assert_eq!(t, Ok(Secret::new("a")));
        cache.accepted(&Secret::new("a"));
        assert_eq!(
            cache.invalidate(&Secret::new("a")).await,
            Rejection::Expired
        );
        let fresh = cache
            .get(|| async { Ok::<_, ()>((Secret::new("b"), Duration::from_secs(10))) })
            .await;
        assert_eq!(fresh, Ok(Secret::new("b")));
        assert_eq!(
            cache.invalidate(&Secret::new("b")).await,
            Rejection::Refused
        );
        // The same string fetched again has not worked yet.
        let again = cache
            .get(|| async { Ok::<_, ()>((Secret::new("b"), Duration::from_secs(10))) })
            .await;
        assert_eq!(again, Ok(Secret::new("b")));
        assert_eq!(
            cache.invalidate(&Secret::new("b")).await,
            Rejection::Refused
        );
    }

    #[tokio::test]
    async fn refreshes_before_expiry() {
        let cache = TokenCache::new();
        let short = || async { Ok::<_, ()>((Secret::new("a"), Duration::from_millis(50))) };
        assert!(cache.get(short).await.is_ok());
        tokio::time::sleep(Duration::from_millis(60)).await;
        let next = cache
            .get(|| async { Ok::<_, ()>((Secret::new("b"), Duration::from_secs(10))) })
            .await;
        assert_eq!(next, Ok(Secret::new("b")));
    }
}
