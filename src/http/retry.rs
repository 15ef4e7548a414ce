//! Retries with capped, jittered exponential backoff.
//!
//! The `backoff` crate is unmaintained (RUSTSEC-2025-0012); it is used only here, as
//! an interval generator, so that it can be swapped in one place.

use std::future::Future;
use std::time::Duration;

use backoff::backoff::Backoff;
use backoff::ExponentialBackoff;

/// Retry behaviour of one side (README "Job files": `[source.retry]`, `[target.retry]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryConfig {
    /// Per request, first try included.
    pub max_attempts: u32,
    pub initial_wait: Duration,
    pub max_wait: Duration,
    /// First wait after a throttling answer.
    pub throttle_wait: Duration,
}

impl RetryConfig {
    pub const WECOM: RetryConfig = RetryConfig {
        max_attempts: 8,
        initial_wait: Duration::from_secs(1),
        max_wait: Duration::from_secs(60),
        throttle_wait: Duration::from_secs(60),
    };
    pub const DINGTALK: RetryConfig = RetryConfig {
        max_attempts: 8,
        initial_wait: Duration::from_secs(1),
        max_wait: Duration::from_secs(60),
        throttle_wait: Duration::from_secs(1),
    };
    pub const JIANDAOYUN: RetryConfig = RetryConfig {
        max_attempts: 8,
        initial_wait: Duration::from_secs(1),
        max_wait: Duration::from_secs(60),
        throttle_wait: Duration::from_secs(1),
    };
}

/// What one try of a request came to.
pub enum Attempt<T, E> {
    Done(T),
    /// Network error, 5xx, "system busy": retried after an exponential backoff.
    Transient(String),
    /// A throttling answer: retried after at least `throttle_wait`, or the
    /// server's own wait when it gave one (capped).
    Throttled {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// The access token was rejected and the caller invalidated it: retried at
    /// once with a fresh token (bounded, see `MAX_TOKEN_REFRESHES`).
    TokenRejected(E),
    /// The token was rejected but another caller had already replaced it: retried
    /// at once with the new token. Not the call's fault (it carried the token
    /// that was current when it started), so not an attempt, up to
    /// `MAX_STALE_TOKENS` times; after that each one counts.
    StaleToken,
    /// Not retryable.
    Fail(E),
}

#[derive(Debug)]
pub enum RetryError<E> {
    Failed(E),
    /// Every attempt failed transiently; `last` says how the last one failed.
    Exhausted {
        attempts: u32,
        last: String,
    },
}

/// A call whose token is rejected is retried once with a fresh token. A fresh
/// token that is rejected again (the vendor revoked it early while other calls
/// used it) gets the same one retry, up to this many in all.
const MAX_TOKEN_REFRESHES: u32 = 3;

/// A call that met a token already replaced by another call retries with the
/// new one without spending an attempt, this many times. When a vendor revokes
/// tokens early, every call under way meets the revoked one at once; counted as
/// attempts, those retries used up the attempts meant for throttling.
const MAX_STALE_TOKENS: u32 = 16;

/// Waits from `initial`, doubling to `max`, with ±25 % jitter, for ever: the
/// one backoff every retry and reconnect uses.
pub fn exponential(initial: Duration, max: Duration) -> ExponentialBackoff {
    ExponentialBackoff {
        initial_interval: initial,
        current_interval: initial,
        randomization_factor: 0.25,
        multiplier: 2.0,
        max_interval: max,
        max_elapsed_time: None,
        ..ExponentialBackoff::default()
    }
}

/// Runs `op` until it is done, fails, or `cfg.max_attempts` tries were spent.
/// `endpoint` only labels the log lines.
pub async fn retry<T, E, F, Fut>(
    cfg: &RetryConfig,
    endpoint: &str,
    mut op: F,
) -> Result<T, RetryError<E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Attempt<T, E>>,
{
    let throttle_cap = cfg.max_wait.max(cfg.throttle_wait);
    let mut transient = exponential(cfg.initial_wait, cfg.max_wait);
    let mut throttled = exponential(cfg.throttle_wait, throttle_cap);
    let mut token_refreshes = 0u32;
    let mut stale_tokens = 0u32;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let (reason, wait) = match op().await {
            Attempt::Done(v) => return Ok(v),
            Attempt::Fail(e) => return Err(RetryError::Failed(e)),
            Attempt::TokenRejected(e) => {
                if token_refreshes >= MAX_TOKEN_REFRESHES {
                    return Err(RetryError::Failed(e));
                }
                token_refreshes += 1;
                attempt -= 1;
                tracing::info!(
                    endpoint,
                    "access token rejected; refreshed it, retrying once"
                );
                continue;
            }
            Attempt::StaleToken => {
                if stale_tokens < MAX_STALE_TOKENS {
                    stale_tokens += 1;
                    attempt -= 1;
                    continue;
                }
                if attempt >= cfg.max_attempts {
                    return Err(RetryError::Exhausted {
                        attempts: attempt,
                        last: "the access token kept expiring".into(),
                    });
                }
                continue;
            }
            Attempt::Transient(reason) => {
                let wait = transient.next_backoff().unwrap_or(cfg.max_wait);
                (reason, wait)
            }
            Attempt::Throttled {
                reason,
                retry_after,
            } => {
                let ours = throttled.next_backoff().unwrap_or(throttle_cap);
                let wait = match retry_after {
                    Some(theirs) => theirs.min(throttle_cap).max(ours.min(cfg.throttle_wait)),
                    None => ours,
                };
                (reason, wait)
            }
        };
        if attempt >= cfg.max_attempts {
            tracing::warn!(endpoint, attempt, %reason, "giving up after the last attempt");
            return Err(RetryError::Exhausted {
                attempts: attempt,
                last: reason,
            });
        }
        tracing::warn!(endpoint, attempt, wait_ms = wait.as_millis() as u64, %reason, "retrying");
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::time::Instant;

    fn fast(max_attempts: u32) -> RetryConfig {
        RetryConfig {
            max_attempts,
            initial_wait: Duration::from_millis(5),
            max_wait: Duration::from_millis(20),
            throttle_wait: Duration::from_millis(40),
        }
    }

    #[tokio::test]
    async fn retries_transient_errors_then_succeeds() {
        let n = Cell::new(0);
        let r: Result<u32, RetryError<()>> = retry(&fast(5), "e", || {
            n.set(n.get() + 1);
            let v = n.get();
            async move {
                if v < 3 {
                    Attempt::Transient("busy".into())
                } else {
                    Attempt::Done(v)
                }
            }
        })
        .await;
        assert_eq!(r.ok(), Some(3));
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts() {
        let n = Cell::new(0);
        let r: Result<(), RetryError<()>> = retry(&fast(3), "e", || {
            n.set(n.get() + 1);
            async { Attempt::Transient("down".into()) }
        })
        .await;
        assert!(matches!(r, Err(RetryError::Exhausted { attempts: 3, .. })));
        assert_eq!(n.get(), 3);
    }

    #[tokio::test]
    async fn throttling_waits_at_least_the_throttle_wait() {
        let n = Cell::new(0);
        let start = Instant::now();
        let r: Result<(), RetryError<()>> = retry(&fast(5), "e", || {
            n.set(n.get() + 1);
            let first = n.get() == 1;
            async move {
                if first {
                    Attempt::Throttled {
                        reason: "45009".into(),
                        retry_after: None,
                    }
                } else {
                    Attempt::Done(())
                }
            }
        })
        .await;
        assert!(r.is_ok());
        // 40 ms with up to 25 % jitter either way.
        assert!(start.elapsed() >= Duration::from_millis(30));
    }

    #[tokio::test]
    async fn a_token_replaced_meanwhile_costs_no_attempt_within_its_bound() {
        // Two attempts allowed; five stale tokens, a throttle, then success.
        let n = Cell::new(0);
        let r: Result<u32, RetryError<()>> = retry(&fast(2), "e", || {
            n.set(n.get() + 1);
            let v = n.get();
            async move {
                match v {
                    1..=5 => Attempt::StaleToken,
                    6 => Attempt::Throttled {
                        reason: "45009".into(),
                        retry_after: None,
                    },
                    _ => Attempt::Done(v),
                }
            }
        })
        .await;
        assert_eq!(r.ok(), Some(7));

        // A token that never stops being replaced still ends.
        let n = Cell::new(0);
        let r: Result<(), RetryError<()>> = retry(&fast(3), "e", || {
            n.set(n.get() + 1);
            async { Attempt::StaleToken }
        })
        .await;
        assert!(matches!(r, Err(RetryError::Exhausted { attempts: 3, .. })));
        assert_eq!(n.get(), MAX_STALE_TOKENS + 3);
    }

    #[tokio::test]
    async fn token_rejection_is_retried_with_a_fresh_token_a_bounded_number_of_times() {
        let n = Cell::new(0);
        let r: Result<(), RetryError<&str>> = retry(&fast(5), "e", || {
            n.set(n.get() + 1);
            async { Attempt::TokenRejected("42001") }
        })
        .await;
        assert!(matches!(r, Err(RetryError::Failed("42001"))));
        assert_eq!(n.get(), 1 + MAX_TOKEN_REFRESHES);
    }
}
