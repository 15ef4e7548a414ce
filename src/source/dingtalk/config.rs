//! DingTalk's `[source]` section (`type = "dingtalk"`, README "Job files"):
//! credentials, address, report columns and leave names, the monthly call budget,
//! scope, and the endpoints its `limits` may name.

use std::time::Duration;

use super::approval::PROCESS_INSTANCES;
use super::failed::FAILED_LIST;
use super::{GETATTCOLUMNS, GETCOLUMNVAL, GETLEAVETIME, GETTOKEN, LISTSUB, USER_LIST};
use crate::http::pace::TOTAL;
use crate::http::rate::Rate;
use crate::http::retry::RetryConfig;
use crate::http::Url;
use crate::secret::Secret;
use crate::settings::{in_range, read_base_url, read_limits, read_retry, Endpoints};
use crate::source::config::{read_scope, Scope};
use crate::toml_reader::{ConfigError, Located, Table};

pub const DINGTALK_BASE_URL: &str = "https://oapi.dingtalk.com";
pub const DEFAULT_MONTHLY_CALL_BUDGET: u32 = 5000;

/// A DingTalk source: the app's credentials and address, the report columns and
/// leave types pulled, the monthly call budget, whom to sync, pacing.
#[derive(Debug, Clone)]
pub struct DingtalkSource {
    pub app_key: String,
    pub app_secret: Secret,
    pub base_url: Url,
    pub columns: Vec<String>,
    pub leave_names: Vec<String>,
    pub monthly_call_budget: u32,
    pub scope: Scope,
    pub limits: Vec<(String, Rate)>,
    pub retry: RetryConfig,
}

impl DingtalkSource {
    /// The app the job signs in as; DingTalk counts its quotas per app
    /// (docs/vendors/dingtalk.md "Limits"), so jobs of one app share a pace.
    pub fn app_identity(&self) -> String {
        format!("dingtalk {} at {}", self.app_key, self.base_url)
    }
}

const DINGTALK_KEYS: &[&str] = &[
    "type",
    "app_key",
    "app_secret",
    "base_url",
    "allow_insecure_http",
    "columns",
    "leave_names",
    "monthly_call_budget",
    "departments",
    "userids",
    "limits",
    "retry",
];

const DINGTALK_API: Option<Rate> = Some(Rate::per_second(20));
/// DingTalk (docs/vendors/dingtalk.md "Limits"): 20/s per app and API (standard edition);
/// 10,000 calls per 20 s per egress IP, all APIs together.
pub const DINGTALK_ENDPOINTS: Endpoints = Endpoints {
    vendor: "DingTalk",
    known: &[
        (GETTOKEN, DINGTALK_API),
        (LISTSUB, DINGTALK_API),
        (USER_LIST, DINGTALK_API),
        (GETATTCOLUMNS, DINGTALK_API),
        (GETCOLUMNVAL, DINGTALK_API),
        (GETLEAVETIME, DINGTALK_API),
        // Called by the daemon's re-pulls on change (docs/vendors/dingtalk.md "Events").
        (PROCESS_INSTANCES, DINGTALK_API),
        (FAILED_LIST, DINGTALK_API),
        (
            TOTAL,
            Some(Rate {
                count: 10_000,
                per: Duration::from_secs(20),
            }),
        ),
    ],
};

/// `[source]` with `type = "dingtalk"`.
pub fn read_dingtalk(
    t: &Table<'_, '_>,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<ConfigError>,
) -> Option<DingtalkSource> {
    let app_key = t.required_nonempty("app_key", errors);
    let app_secret = t.required_nonempty("app_secret", errors);
    let base_url = read_base_url(t, DINGTALK_BASE_URL, errors);
    let columns = t.string_array("columns", errors).unwrap_or_default();
    let leave_names = t.string_array("leave_names", errors).unwrap_or_default();
    distinct_names(t, "columns", &columns, errors);
    distinct_names(t, "leave_names", &leave_names, errors);
    let budget = match t.integer("monthly_call_budget", errors) {
        None => Some(DEFAULT_MONTHLY_CALL_BUDGET),
        Some(b) => in_range(t, "monthly_call_budget", &b, 1, 100_000_000, errors).map(|b| b as u32),
    };
    let scope = read_scope(t, errors);
    let limits = read_limits(t, &DINGTALK_ENDPOINTS, errors, warnings);
    let retry = read_retry(t, RetryConfig::DINGTALK, errors);
    t.finish(DINGTALK_KEYS, errors);
    Some(DingtalkSource {
        app_key: app_key?.value,
        app_secret: Secret::new(app_secret?.value),
        base_url: base_url?,
        columns: columns.into_iter().map(|c| c.value).collect(),
        leave_names: leave_names.into_iter().map(|c| c.value).collect(),
        monthly_call_budget: budget?,
        scope: scope?,
        limits: limits?,
        retry: retry?,
    })
}

/// Names in a list of report columns or leave types: each given, and once
/// (a name twice would be pulled twice and counted twice against the budget).
fn distinct_names(
    t: &Table<'_, '_>,
    key: &str,
    names: &[Located<String>],
    errors: &mut Vec<ConfigError>,
) {
    for (i, name) in names.iter().enumerate() {
        if name.value.trim().is_empty() {
            errors.push(t.error(name.span.clone(), key, "a name is empty"));
        } else if names[..i].iter().any(|n| n.value == name.value) {
            errors.push(t.error(
                name.span.clone(),
                key,
                format!("\"{}\" is listed twice", name.value),
            ));
        }
    }
}
