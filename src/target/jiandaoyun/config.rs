//! Jiandaoyun's `[target]` section (README "Job files"): credentials, the form,
//! address, workflow switches, the request timeout, and the endpoints its `limits`
//! may name.

use std::time::Duration;

use super::{BATCH_CREATE, BATCH_DELETE, LIST, UPDATE, WIDGETS};
use crate::http::pace::TOTAL;
use crate::http::rate::Rate;
use crate::http::retry::RetryConfig;
use crate::http::Url;
use crate::secret::Secret;
use crate::settings::{parse_duration, read_base_url, read_limits, read_retry, Endpoints};
use crate::toml_reader::{ConfigError, Table};

pub const JIANDAOYUN_BASE_URL: &str = "https://api.jiandaoyun.com";

/// The Jiandaoyun form a job writes to, and how the writes are sent.
#[derive(Debug, Clone)]
pub struct Target {
    pub api_key: Secret,
    pub app_id: String,
    pub entry_id: String,
    pub base_url: Url,
    pub is_start_workflow: bool,
    pub is_start_trigger: bool,
    pub limits: Vec<(String, Rate)>,
    pub retry: RetryConfig,
    /// How long one request may take, answer included. A create whose answer
    /// did not come is only read back once this (and a margin) has passed.
    pub request_timeout: Duration,
}

impl Target {
    /// Whose quota the job's writes count against: the app, as the key is a
    /// secret (docs/vendors/jiandaoyun.md "Limits" leaves open whether the
    /// count is per key or per company).
    pub fn pace_holder(&self) -> String {
        format!("jiandaoyun {} at {}", self.app_id, self.base_url)
    }
}

const TARGET_KEYS: &[&str] = &[
    "api_key",
    "app_id",
    "entry_id",
    "base_url",
    "allow_insecure_http",
    "is_start_workflow",
    "is_start_trigger",
    "request_timeout",
    "limits",
    "retry",
];

/// Jiandaoyun (docs/vendors/jiandaoyun.md "Limits"). The documented data endpoints attendsync does
/// not call are accepted too (pacing them changes nothing).
pub const JIANDAOYUN_ENDPOINTS: Endpoints = Endpoints {
    vendor: "Jiandaoyun",
    known: &[
        (BATCH_CREATE, Some(Rate::per_second(10))),
        (UPDATE, Some(Rate::per_second(20))),
        (LIST, Some(Rate::per_second(30))),
        (WIDGETS, Some(Rate::per_second(30))),
        (BATCH_DELETE, Some(Rate::per_second(10))),
        ("data/batch_update", Some(Rate::per_second(10))),
        ("data/create", Some(Rate::per_second(20))),
        ("data/delete", Some(Rate::per_second(20))),
        ("data/get", Some(Rate::per_second(30))),
        (TOTAL, Some(Rate::per_second(50))),
    ],
};

/// `[target]`: the Jiandaoyun form records are written to.
pub fn read_target(
    t: &Table<'_, '_>,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<ConfigError>,
) -> Option<Target> {
    let api_key = t.required_nonempty("api_key", errors);
    let app_id = t.required_nonempty("app_id", errors);
    let entry_id = t.required_nonempty("entry_id", errors);
    let base_url = read_base_url(t, JIANDAOYUN_BASE_URL, errors);
    let workflow = t.bool("is_start_workflow", errors).unwrap_or(false);
    let trigger = t.bool("is_start_trigger", errors).unwrap_or(false);
    let request_timeout = read_request_timeout(t, errors);
    let limits = read_limits(t, &JIANDAOYUN_ENDPOINTS, errors, warnings);
    let retry = read_retry(t, RetryConfig::JIANDAOYUN, errors);
    t.finish(TARGET_KEYS, errors);
    Some(Target {
        api_key: Secret::new(api_key?.value),
        app_id: app_id?.value,
        entry_id: entry_id?.value,
        base_url: base_url?,
        is_start_workflow: workflow,
        is_start_trigger: trigger,
        limits: limits?,
        retry: retry?,
        request_timeout: request_timeout?,
    })
}

/// `request_timeout`: 1 s to 10 min, default [`crate::http::REQUEST_TIMEOUT`].
fn read_request_timeout(t: &Table<'_, '_>, errors: &mut Vec<ConfigError>) -> Option<Duration> {
    let Some(text) = t.string("request_timeout", errors) else {
        return (!t.contains("request_timeout")).then_some(crate::http::REQUEST_TIMEOUT);
    };
    match parse_duration(&text.value) {
        Some(d) if (Duration::from_secs(1)..=Duration::from_secs(600)).contains(&d) => Some(d),
        _ => {
            errors.push(t.error(
                text.span,
                "request_timeout",
                format!(
                    "invalid request_timeout \"{}\"; expected a duration from \"1s\" to \"10m\", e.g. \"60s\"",
                    text.value
                ),
            ));
            None
        }
    }
}
