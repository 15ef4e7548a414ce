//! WeCom's `[source]` section (`type = "wecom"`, README "Job files"): credentials,
//! address, scope, and the endpoints its `limits` may name.

use super::{APPROVAL_DETAIL, DEPARTMENTS, GETTOKEN, MONTHDATA, USERS};
use crate::http::pace::TOTAL;
use crate::http::rate::Rate;
use crate::http::retry::RetryConfig;
use crate::http::Url;
use crate::secret::Secret;
use crate::settings::{read_base_url, read_limits, read_retry, Endpoints};
use crate::source::config::{read_scope, Scope};
use crate::toml_reader::{ConfigError, Table};

pub const WECOM_BASE_URL: &str = "https://qyapi.weixin.qq.com";

/// A WeCom source: the app's credentials and address, whom to sync, pacing.
#[derive(Debug, Clone)]
pub struct WecomSource {
    pub corp_id: String,
    pub secret: Secret,
    pub base_url: Url,
    pub scope: Scope,
    pub limits: Vec<(String, Rate)>,
    pub retry: RetryConfig,
}

impl WecomSource {
    /// The app the job signs in as; WeCom counts its quotas per corp
    /// (docs/vendors/wecom.md "Limits"), so jobs of one corp share a pace.
    pub fn app_identity(&self) -> String {
        format!("wecom {} at {}", self.corp_id, self.base_url)
    }
}

const WECOM_KEYS: &[&str] = &[
    "type",
    "corp_id",
    "secret",
    "base_url",
    "allow_insecure_http",
    "departments",
    "userids",
    "limits",
    "retry",
];

/// WeCom (docs/vendors/wecom.md "Limits"): 60/min for the monthly report; any other single API
/// 10,000/min per corp. No vendor-wide quota is documented.
pub const WECOM_ENDPOINTS: Endpoints = Endpoints {
    vendor: "WeCom",
    known: &[
        (MONTHDATA, Some(Rate::per_minute(60))),
        (GETTOKEN, Some(Rate::per_minute(10_000))),
        (DEPARTMENTS, Some(Rate::per_minute(10_000))),
        (USERS, Some(Rate::per_minute(10_000))),
        (APPROVAL_DETAIL, Some(Rate::per_minute(600))),
        (TOTAL, None),
    ],
};

/// `[source]` with `type = "wecom"`.
pub fn read_wecom(
    t: &Table<'_, '_>,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<ConfigError>,
) -> Option<WecomSource> {
    let corp_id = t.required_nonempty("corp_id", errors);
    let secret = t.required_nonempty("secret", errors);
    let base_url = read_base_url(t, WECOM_BASE_URL, errors);
    let scope = read_scope(t, errors);
    let limits = read_limits(t, &WECOM_ENDPOINTS, errors, warnings);
    let retry = read_retry(t, RetryConfig::WECOM, errors);
    t.finish(WECOM_KEYS, errors);
    Some(WecomSource {
        corp_id: corp_id?.value,
        secret: Secret::new(secret?.value),
        base_url: base_url?,
        scope: scope?,
        limits: limits?,
        retry: retry?,
    })
}
