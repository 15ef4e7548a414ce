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
        *slot = Some(Cached {
            token: token.clone(),
            fresh_until: Instant::now() + expires_in.saturating_sub(margin(expires_in)),
        });
        Ok(token)
    }

    /// Drops `stale` if it is still the cached token. False when another caller
    /// already replaced it (so the rejection says nothing about the new one).
    pub async fn invalidate(&self, stale: &Secret) -> bool {
        let mut slot = self.slot.lock().await;
        if slot.as_ref().is_some_and(|c| &c.token == stale) {
            *slot = None;
            true
        } else {
            slot.is_none()
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
        cache.invalidate(&Secret::new("other")).await;
        let same = cache
            .get(|| async { Err::<(Secret, Duration), ()>(()) })
            .await;
        assert_eq!(same, Ok(Secret::new("t0")));
        cache.invalidate(&Secret::new("t0")).await;
        let fresh = cache
            .get(|| async { Ok::<_, ()>((Secret::new("t1"), Duration::from_secs(7200))) })
            .await;
        assert_eq!(fresh, Ok(Secret::new("t1")));
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
