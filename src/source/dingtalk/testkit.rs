//! What the tests of the client share: a simulator, a job for it, a pull.

pub(super) use std::sync::Arc;
pub(super) use std::time::{Duration, Instant};

pub(super) use chrono::{DateTime, NaiveDate, Utc};
pub(super) use chrono_tz::Tz;
pub(super) use serde_json::json;

pub(super) use super::config::DingtalkSource;
pub(super) use super::{
    Dingtalk, DingtalkClient, DIRECTORY_IN_FLIGHT, EMPLOYEES_IN_FLIGHT, EMPLOYEES_PER_CHUNK,
    GETATTCOLUMNS, GETCOLUMNVAL, GETLEAVETIME, GETTOKEN, LISTSUB, USER_LIST,
};
pub(super) use crate::http::rate::Rate;
pub(super) use crate::http::retry::RetryConfig;
pub(super) use crate::http::CallStats;
pub(super) use crate::month::Month;
pub(super) use crate::secret::Secret;
pub(super) use crate::source::config::{Scope, SourceConfig as Source};
pub(super) use crate::source::{Pulled, Source as SourceTrait, SourceError};
pub(super) use attendsync_sim::dingtalk::{
    BodyStyle, DingtalkSim, DingtalkSimConfig, DEFAULT_COLUMNS, GETATTCOLUMNS as SIM_COLUMNS,
};
pub(super) use attendsync_sim::{CallRecord, Org};

pub(super) const SH: Tz = chrono_tz::Asia::Shanghai;

pub(super) fn october() -> Month {
    Month::new(2026, 10).unwrap()
}

/// 2026-11-02 12:00 in Shanghai: October is complete.
pub(super) fn after_october() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-02T04:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

pub(super) fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .with_timezone(&Utc)
}

pub(super) fn fast_sim() -> DingtalkSimConfig {
    DingtalkSimConfig {
        today: NaiveDate::from_ymd_opt(2026, 11, 2),
        ..DingtalkSimConfig::default().with_endpoint_rate(2000)
    }
}

pub(super) async fn start(employees: usize, config: DingtalkSimConfig) -> DingtalkSim {
    DingtalkSim::start(Org::generate(employees, 11), config)
        .await
        .unwrap()
}

pub(super) fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn fast_limits() -> Vec<(String, Rate)> {
    [
        GETTOKEN,
        LISTSUB,
        USER_LIST,
        GETATTCOLUMNS,
        GETCOLUMNVAL,
        GETLEAVETIME,
    ]
    .iter()
    .map(|e| ((*e).to_owned(), Rate::per_second(1000)))
    .collect()
}

pub(super) fn job(sim: &DingtalkSim, columns: &[&str], leave: &[&str]) -> DingtalkSource {
    DingtalkSource {
        app_key: sim.config().app_key.clone(),
        app_secret: Secret::new(sim.config().app_secret.clone()),
        base_url: sim.base_url().parse().expect("url"),
        columns: strings(columns),
        leave_names: strings(leave),
        monthly_call_budget: 5000,
        scope: Scope::default(),
        limits: fast_limits(),
        retry: RetryConfig {
            max_attempts: 10,
            initial_wait: Duration::from_millis(5),
            max_wait: Duration::from_millis(40),
            throttle_wait: Duration::from_millis(10),
        },
    }
}

pub(super) fn client_for(cfg: &DingtalkSource) -> DingtalkClient {
    DingtalkClient::new(sim_client(), cfg, Arc::new(CallStats::default()))
}

/// The error that stopped a pull partway.
pub(super) fn stopped(pulled: Result<Pulled, SourceError>) -> String {
    match pulled {
        Ok(p) => p.stopped.map(|e| e.to_string()).unwrap_or_default(),
        Err(e) => e.to_string(),
    }
}

/// Pulls `month` for everyone in chunks, as the sync engine does.
pub(super) async fn pull_all(
    source: &dyn SourceTrait,
    month: Month,
    now: DateTime<Utc>,
) -> Result<(Vec<String>, Pulled), SourceError> {
    source.login().await?;
    let employees = source.employees().await?;
    let mut all = Pulled::default();
    for chunk in employees.chunks(source.chunk_size()) {
        let p = source.pull(month, chunk, now, SH).await?;
        all.records.extend(p.records);
        all.failed.extend(p.failed);
        all.absent.extend(p.absent);
        if let Some(stop) = p.stopped {
            return Err(stop);
        }
    }
    Ok((employees, all))
}

pub(super) fn source_client(cfg: &DingtalkSource, stats: Arc<CallStats>) -> Dingtalk {
    Dingtalk::new(sim_client(), cfg, stats)
}

/// Metered calls a run over `employees` × `months` costs at most (without
/// retries): the per-employee calls plus one `getattcolumns`
/// (docs/vendors/dingtalk.md "The calls").
pub(super) fn calls_for(cfg: &DingtalkSource, employees: usize, months: usize) -> u64 {
    let costs = super::call_costs(cfg);
    employees as u64 * months as u64 * u64::from(costs.per_employee) + costs.fixed
}

pub(super) fn check_records(
    sim: &DingtalkSim,
    cfg: &DingtalkSource,
    pulled: &Pulled,
    month: Month,
) {
    for r in &pulled.records {
        let expected = sim
            .expected_record(&r.employee, month, &cfg.columns, &cfg.leave_names)
            .unwrap();
        assert_eq!(r.record, expected, "{}", r.employee);
    }
}

/// A reqwest client for talking to the simulators (plain HTTP on loopback).
pub(super) fn sim_client() -> reqwest::Client {
    // reqwest is built with `rustls-no-provider`: a provider must be installed
    // before a client is built, even though the simulators speak plain HTTP.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .expect("a client for the simulators")
}
