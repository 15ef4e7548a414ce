//! attendsync-sim: in-process simulators of the vendor APIs (WeCom, DingTalk,
//! Jiandaoyun), used by attendsync's end-to-end tests and by `attendsync demo`.
//!
//! Each simulator is an axum server bound to `127.0.0.1:0` and spawned on the
//! caller's tokio runtime. Everything a simulator does is deterministic given
//! its seed: the generated organisation and its monthly reports, the tokens and
//! ids it hands out, and the pattern of injected faults (for a given order of
//! requests). Nothing here ever contacts the network beyond loopback.
//!
//! Architecture invariants:
//! - The simulators only imitate the vendor facts written down in
//!   `docs/vendors/*.md`; they do not know anything about attendsync's client.
//! - State lives behind one `std::sync::Mutex` per simulator that is never held
//!   across an `.await`; handlers never panic on request data.
//! - Every request is logged (endpoint, arrival `Instant`, outcome) so tests can
//!   assert on pacing, quota violations and call counts. Quotas are exact
//!   sliding windows over arrival times, so a client paced at exactly the
//!   quota can trip one through scheduling jitter; give the client a slightly
//!   lower rate than the simulator in tests that assert zero violations.
//!
//! Usage note: the servers run on the runtime that started them. A test that
//! runs the `attendsync` binary as a subprocess must not block that runtime
//! while waiting for it: use `#[tokio::test(flavor = "multi_thread")]`, or
//! `tokio::process::Command`, or `spawn_blocking` for `std::process`.

pub mod dingtalk;
pub mod jiandaoyun;
mod limits;
pub mod org;
pub mod wecom;

pub use dingtalk::stream::{StreamGateway, StreamGatewayConfig};
pub use dingtalk::{BodyStyle, ColumnValues, DingtalkSim, DingtalkSimConfig, PushConfig, Pusher};
pub use jiandaoyun::{JdySim, JdySimConfig, TxMode};
pub use limits::{most_calls_within, CallRecord, Outcome, GLOBAL_LIMIT};
pub use org::{
    month_bounds, month_figures, wecom_month_record, wecom_period_record, Department, MonthFigures,
    Org, Tally, User,
};
pub use wecom::{ApprovalKind, ApprovalPusher, SpStatus, WecomSim, WecomSimConfig};

/// Convenience for [`JdySimConfig::widgets`]: `&[("userid", "text"), ("work_hours", "number")]`
/// → owned pairs.
pub fn widgets_for(fields: &[(&str, &str)]) -> Vec<(String, String)> {
    fields
        .iter()
        .map(|(name, ty)| ((*name).to_owned(), (*ty).to_owned()))
        .collect()
}

/// A calendar month, e.g. 2026-10, for the whole-month helpers
/// ([`DingtalkSim::expected_record`], [`DingtalkSim::daily_values`]). The
/// simulators do not depend on attendsync, so they carry their own month.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Month {
    /// Always the first day of the month.
    first: chrono::NaiveDate,
}

impl Month {
    /// The month `year`-`month`; `None` unless `month` is 1..=12 and `year` is
    /// within 1..=9999.
    pub fn new(year: i32, month: u32) -> Option<Month> {
        if !(1..=9999).contains(&year) {
            return None;
        }
        chrono::NaiveDate::from_ymd_opt(year, month, 1).map(|first| Month { first })
    }

    /// The month `date` falls in.
    pub fn containing(date: chrono::NaiveDate) -> Month {
        use chrono::Datelike;
        Month {
            first: date.with_day(1).unwrap_or(date),
        }
    }

    pub fn first_day(&self) -> chrono::NaiveDate {
        self.first
    }

    pub fn last_day(&self) -> chrono::NaiveDate {
        use chrono::Datelike;
        (28..=31)
            .rev()
            .find_map(|d| chrono::NaiveDate::from_ymd_opt(self.first.year(), self.first.month(), d))
            .unwrap_or(self.first)
    }
}

/// Aborts the server task when the last handle to a simulator is dropped.
#[derive(Debug)]
struct ServerGuard(tokio::task::JoinHandle<()>);

impl Drop for ServerGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Binds `127.0.0.1:0` and serves `router` on the current tokio runtime.
async fn spawn_server(
    router: axum::Router,
) -> std::io::Result<(std::net::SocketAddr, std::sync::Arc<ServerGuard>)> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let task = tokio::spawn(async move {
        // Only returns on a listener error; the simulator then stops answering.
        let _ = axum::serve(listener, service).await;
    });
    Ok((addr, std::sync::Arc::new(ServerGuard(task))))
}

/// A stable 64-bit mix of a seed and some byte strings (FNV-1a, then the
/// splitmix64 finaliser). Unlike `std`'s hasher it is fixed forever, so the
/// generated data does not change with the Rust version.
pub(crate) fn mix(seed: u64, parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Separator, so ("ab", "c") and ("a", "bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    splitmix64(h)
}

pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
pub(crate) mod test_util {
    /// A reqwest client for talking to the simulators (plain HTTP on loopback).
    pub fn client() -> reqwest::Client {
        // reqwest is built with `rustls-no-provider`: a provider must be installed
        // before a client is built, even though the simulators speak plain HTTP.
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .unwrap()
    }
}
