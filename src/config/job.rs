//! Job files (`jobs/NAME.toml`, README "Job files"): what to pull, where to write, how fast.

use std::path::Path;
use std::time::Duration;

use chrono_tz::Tz;

use super::diag::{one_of, ConfigError, SourceFile};
pub use super::limits::{parse_duration, Rate, RetryConfig};
use super::limits::{
    read_limits, read_retry, DINGTALK_ENDPOINTS, JIANDAOYUN_ENDPOINTS, WECOM_ENDPOINTS,
};
use super::notify::read_notify;
pub use super::notify::{Language, Notify, NotifyOn, WorkNotice, DEFAULT_REPEAT_AFTER};
use super::reader::{self, EnvLookup, Located, Table};
use crate::http::Url;
use crate::secret::Secret;

pub const DEFAULT_TIMEZONE: Tz = chrono_tz::Asia::Shanghai;
pub const WECOM_BASE_URL: &str = "https://qyapi.weixin.qq.com";
pub const DINGTALK_BASE_URL: &str = "https://oapi.dingtalk.com";
pub const JIANDAOYUN_BASE_URL: &str = "https://api.jiandaoyun.com";
/// Through which day of a month the previous month is still synced by default (README "Which months").
pub const DEFAULT_PREVIOUS_MONTH_UNTIL_DAY: u32 = 5;
/// Closed months back a run still syncs an owed month (README "Months owed").
pub const DEFAULT_MAX_OWED_MONTHS: u32 = 3;
pub const DEFAULT_MONTHLY_CALL_BUDGET: u32 = 5000;

/// A fully validated job.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub description: String,
    pub schedule: Option<String>,
    pub timezone: Tz,
    pub mapping: String,
    pub previous_month_until_day: u32,
    /// How many closed months back an owed month is still synced by a run;
    /// an older one raises an alert instead (default 3).
    pub max_owed_months: u32,
    pub source: Source,
    pub target: Target,
    /// Alerts (`[notify]`); `None` when the job has no `[notify]` table.
    pub notify: Option<Notify>,
}

#[derive(Debug, Clone)]
pub enum Source {
    Wecom(WecomSource),
    Dingtalk(DingtalkSource),
}

impl Source {
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Wecom(_) => "wecom",
            Source::Dingtalk(_) => "dingtalk",
        }
    }
}

/// Which employees a job covers: the whole visible organisation by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    pub departments: Vec<u64>,
    pub userids: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct WecomSource {
    pub corp_id: String,
    pub secret: Secret,
    pub base_url: Url,
    pub scope: Scope,
    pub limits: Vec<(String, Rate)>,
    pub retry: RetryConfig,
}

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

const JOB_KEYS: &[&str] = &[
    "description",
    "schedule",
    "timezone",
    "mapping",
    "previous_month_until_day",
    "max_owed_months",
    "source",
    "target",
    "notify",
];
const SOURCE_TYPES: &[&str] = &["wecom", "dingtalk"];
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

/// Parses and validates one job file. `name` is the file stem.
pub fn parse_job(
    name: &str,
    file: &SourceFile,
    env: EnvLookup<'_>,
) -> Result<Job, Vec<ConfigError>> {
    parse_job_with_warnings(name, file, env).map(|(job, _)| job)
}

/// [`parse_job`], and what is allowed but probably wrong (e.g. a limit above the
/// vendor's documented quota), for `check` to show.
pub fn parse_job_with_warnings(
    name: &str,
    file: &SourceFile,
    env: EnvLookup<'_>,
) -> Result<(Job, Vec<ConfigError>), Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let Some(doc) = reader::parse(file, &file.text, &mut errors) else {
        return Err(errors);
    };
    let root = Table::root(file, &doc, Some(env));
    let job = read_job(name, &root, &mut errors, &mut warnings);
    root.finish(JOB_KEYS, &mut errors);
    for e in errors.iter_mut().chain(warnings.iter_mut()) {
        e.message = name_variables(&e.message, &file.text, env);
    }
    match job {
        Some(job) if errors.is_empty() => Ok((job, warnings)),
        _ => Err(errors),
    }
}

/// `message` with the value of every `${VAR}` the file uses replaced by
/// `${VAR}`: a key pointed at a secret variable by mistake (a timezone, a
/// schedule, a rate) must not print the secret in its error, whichever check
/// quoted it. Values shorter than 4 bytes are left, as in log redaction.
fn name_variables(message: &str, text: &str, env: EnvLookup<'_>) -> String {
    let mut vars: Vec<(String, String)> = text
        .split("${")
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name.to_string()))
        .filter_map(|name| env(&name).map(|value| (name, value)))
        .filter(|(_, value)| value.len() >= 4)
        .collect();
    // Longest value first, so one that contains another goes whole.
    vars.sort_by_key(|v| std::cmp::Reverse(v.1.len()));
    let mut out = message.to_string();
    for (name, value) in vars {
        if out.contains(&value) {
            out = out.replace(&value, &format!("${{{name}}}"));
        }
    }
    out
}

fn read_job(
    name: &str,
    root: &Table<'_, '_>,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<ConfigError>,
) -> Option<Job> {
    let description = root.string("description", errors).map(|d| d.value);
    let schedule = root.string("schedule", errors);
    let timezone = match root.string("timezone", errors) {
        None => Some(DEFAULT_TIMEZONE),
        Some(tz) => match tz.value.parse::<Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                errors.push(root.error(
                    tz.span.clone(),
                    "timezone",
                    format!(
                        "unknown timezone {}; use an IANA name such as \"Asia/Shanghai\"",
                        root.shown(&tz)
                    ),
                ));
                None
            }
        },
    };
    if let (Some(text), Some(tz)) = (&schedule, timezone) {
        if let Err(message) = crate::schedule::Schedule::parse(&text.value, tz) {
            errors.push(root.error(text.span.clone(), "schedule", message));
        }
    }
    let mapping = root.required_string("mapping", errors);
    if let Some(m) = &mapping {
        if m.value.contains('/') || m.value.contains('\\') || !m.value.ends_with(".toml") {
            errors.push(root.error(
                m.span.clone(),
                "mapping",
                "expected the name of a .toml file in mappings/, e.g. \"wecom_monthly.toml\"",
            ));
        }
    }
    let until_day = match root.integer("previous_month_until_day", errors) {
        None => Some(DEFAULT_PREVIOUS_MONTH_UNTIL_DAY),
        Some(d) => in_range(root, "previous_month_until_day", &d, 0, 28, errors).map(|d| d as u32),
    };
    let max_owed = match root.integer("max_owed_months", errors) {
        None => Some(DEFAULT_MAX_OWED_MONTHS),
        Some(n) => in_range(root, "max_owed_months", &n, 1, 24, errors).map(|n| n as u32),
    };
    let source = match root.table("source", errors) {
        Some(t) => read_source(&t, errors, warnings),
        None => {
            if !root.contains("source") {
                errors.push(root.error(
                    root.span(),
                    "source",
                    "required table [source] is missing",
                ));
            }
            None
        }
    };
    let target = match root.table("target", errors) {
        Some(t) => read_target(&t, errors, warnings),
        None => {
            if !root.contains("target") {
                errors.push(root.error(
                    root.span(),
                    "target",
                    "required table [target] is missing",
                ));
            }
            None
        }
    };
    let notify = match root.table("notify", errors) {
        Some(t) => read_notify(&t, source.as_ref(), errors).map(Some),
        None => (!root.contains("notify")).then_some(None),
    };
    Some(Job {
        name: name.to_string(),
        description: description.unwrap_or_default(),
        schedule: schedule.map(|s| s.value),
        timezone: timezone?,
        mapping: mapping?.value,
        previous_month_until_day: until_day?,
        max_owed_months: max_owed?,
        source: source?,
        target: target?,
        notify: notify?,
    })
}

pub(super) fn in_range(
    table: &Table<'_, '_>,
    key: &str,
    value: &Located<i64>,
    min: i64,
    max: i64,
    errors: &mut Vec<ConfigError>,
) -> Option<i64> {
    if (min..=max).contains(&value.value) {
        Some(value.value)
    } else {
        errors.push(table.error(
            value.span.clone(),
            key,
            format!("{} is out of range; allowed: {min} to {max}", value.value),
        ));
        None
    }
}

fn read_source(
    t: &Table<'_, '_>,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<ConfigError>,
) -> Option<Source> {
    let kind = if t.contains("type") {
        t.choice("type", SOURCE_TYPES, errors)
    } else {
        errors.push(t.error(
            t.span(),
            "type",
            format!("required key is missing; allowed: {}", one_of(SOURCE_TYPES)),
        ));
        None
    }?;
    match kind.value.as_str() {
        "wecom" => read_wecom(t, errors, warnings).map(Source::Wecom),
        _ => read_dingtalk(t, errors, warnings).map(Source::Dingtalk),
    }
}

fn read_wecom(
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

fn read_dingtalk(
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

fn read_target(
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

pub(super) fn read_base_url(
    t: &Table<'_, '_>,
    default: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<Url> {
    let insecure_ok = allow_insecure_http(t, errors);
    let Some(text) = t.string("base_url", errors) else {
        return (!t.contains("base_url")).then(|| default_url(default));
    };
    if !(text.value.starts_with("https://") || text.value.starts_with("http://")) {
        errors.push(t.error(text.span, "base_url", "expected an http:// or https:// URL"));
        return None;
    }
    match Url::parse(text.value.trim_end_matches('/')) {
        Ok(url) if url.scheme() == "http" && !insecure_ok && !is_loopback(&url) => {
            errors.push(t.error(text.span, "base_url", INSECURE_HTTP));
            None
        }
        Ok(url) => Some(url),
        Err(e) => {
            errors.push(t.error(text.span, "base_url", format!("not a valid URL: {e}")));
            None
        }
    }
}

/// Why a plain `http://` address is refused: the request would carry the vendor
/// credentials (secrets, tokens, API keys, webhook keys) in clear text.
pub(super) const INSECURE_HTTP: &str =
    "`http://` would send credentials in clear text; use `https://`, or set \
     `allow_insecure_http = true` in this table if the network in between is trusted \
     (loopback hosts such as 127.0.0.1, ::1 and localhost are always allowed)";

/// The table's `allow_insecure_http` (default false). Read by every table that
/// names a URL, whether or not it has one, so the key is always known there.
pub(super) fn allow_insecure_http(t: &Table<'_, '_>, errors: &mut Vec<ConfigError>) -> bool {
    t.bool("allow_insecure_http", errors).unwrap_or(false)
}

/// Loopback hosts (127.0.0.0/8, ::1, localhost): plain HTTP to them never leaves
/// the machine (the simulators, a local proxy).
pub(super) fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// A built-in vendor address.
pub(super) fn default_url(text: &str) -> Url {
    // Only ever one of this file's constants, which every test without a
    // `base_url` reads.
    Url::parse(text).expect("built-in base URLs are valid")
}

fn read_scope(t: &Table<'_, '_>, errors: &mut Vec<ConfigError>) -> Option<Scope> {
    let mut ok = true;
    let mut departments = Vec::new();
    if let Some(ids) = t.integer_array("departments", errors) {
        for id in ids {
            match u64::try_from(id.value) {
                Ok(v) if v > 0 => departments.push(v),
                _ => {
                    ok = false;
                    errors.push(t.error(
                        id.span,
                        "departments",
                        "department ids are positive integers",
                    ));
                }
            }
        }
    } else if t.contains("departments") {
        ok = false;
    }
    let userids = match t.string_array("userids", errors) {
        Some(ids) => {
            for id in ids.iter().filter(|u| u.value.trim().is_empty()) {
                ok = false;
                errors.push(t.error(id.span.clone(), "userids", "a userid is empty"));
            }
            ids.into_iter().map(|u| u.value).collect()
        }
        None => {
            ok &= !t.contains("userids");
            Vec::new()
        }
    };
    ok &= scope_is_usable(t, errors);
    ok.then_some(Scope {
        departments,
        userids,
    })
}

/// An empty list selects nobody, and `departments` with `userids` would leave
/// one of them unused: both are errors rather than a silent surprise.
fn scope_is_usable(t: &Table<'_, '_>, errors: &mut Vec<ConfigError>) -> bool {
    let before = errors.len();
    let span_of = |key: &str| t.get(key).map(|v| v.span()).unwrap_or_else(|| t.span());
    for key in ["departments", "userids"] {
        let empty = t
            .get(key)
            .and_then(|v| v.get_ref().as_array())
            .is_some_and(|items| items.is_empty());
        if empty {
            errors.push(t.error(
                span_of(key),
                key,
                "is empty, which selects nobody; remove the key to sync everyone the app can see",
            ));
        }
    }
    if t.contains("departments") && t.contains("userids") {
        errors.push(t.error(
            span_of("userids"),
            "userids",
            "`departments` and `userids` are both set, and only one can choose whom to sync; keep one of them",
        ));
    }
    errors.len() == before
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

/// The job name of a job file: its stem.
pub fn job_name(path: &Path) -> Option<String> {
    path.file_stem()
        .and_then(|s| s.to_str())
        .map(str::to_string)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;

    pub(crate) const GOOD: &str = r#"
description = "test"
schedule = "0 30 2 * * *"
mapping = "wecom_monthly.toml"

[source]
type = "wecom"
corp_id = "${CORP}"
secret = "${SECRET}"
base_url = "http://127.0.0.1:9/"

[source.limits]
"checkin/getcheckin_monthdata" = "600/min"

[source.retry]
throttle_wait = "50ms"

[target]
api_key = "${KEY}"
app_id = "app"
entry_id = "entry"
"#;

    fn env(name: &str) -> Option<String> {
        match name {
            "CORP" => Some("ww123".into()),
            "SECRET" => Some("s3cr3t".into()),
            "KEY" => Some("k3y".into()),
            "DT_SECRET" => Some("dt-s3cr3t".into()),
            "WECOM_HOOK" => Some("https://qyapi.example/cgi-bin/webhook/send?key=wk-123".into()),
            "DT_HOOK" => Some("https://oapi.example/robot/send?access_token=dt-456".into()),
            "DT_SIGN" => Some("SECsign789".into()),
            "NOT_A_URL" => Some("qyapi.example/send?key=leaky-key-42".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    pub(crate) fn parse(text: &str) -> Result<Job, Vec<String>> {
        let file = SourceFile::new("jobs/j.toml", text);
        parse_job("j", &file, &env).map_err(|e| e.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn a_base_url_that_is_no_url_names_its_line() {
        let text = GOOD.replace("http://127.0.0.1:9/", "http://qyapi example.com");
        let errors = parse(&text).expect_err("invalid");
        assert_eq!(
            errors,
            ["jobs/j.toml:10:12: `source.base_url`: not a valid URL: invalid international domain name"]
        );
        let text = GOOD.replace("http://127.0.0.1:9/", "ftp://127.0.0.1:9/");
        let errors = parse(&text).expect_err("invalid");
        assert_eq!(
            errors,
            ["jobs/j.toml:10:12: `source.base_url`: expected an http:// or https:// URL"]
        );
    }

    /// Credentials never go out in clear text by a typo: plain `http://` only to a
    /// loopback host (the simulators) or with `allow_insecure_http = true`.
    #[test]
    fn plain_http_needs_a_loopback_host_or_an_explicit_allowance() {
        let text = GOOD.replace("http://127.0.0.1:9/", "http://example.com/");
        let errors = parse(&text).expect_err("refused");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with(
                "jobs/j.toml:10:12: `source.base_url`: `http://` would send credentials in clear text; use `https://`"
            ),
            "{errors:?}"
        );
        assert!(
            errors[0].contains("allow_insecure_http = true"),
            "{errors:?}"
        );

        for host in [
            "127.0.0.1:9",
            "127.8.9.10",
            "[::1]:9",
            "localhost:9",
            "LOCALHOST",
        ] {
            let text = GOOD.replace("127.0.0.1:9", host);
            assert!(parse(&text).is_ok(), "{host}: {:?}", parse(&text).err());
        }

        let text = GOOD.replace(
            "base_url = \"http://127.0.0.1:9/\"",
            "base_url = \"http://attendance-proxy.internal/\"\nallow_insecure_http = true",
        );
        let job = parse(&text).expect("allowed");
        let Source::Wecom(src) = job.source else {
            panic!("expected wecom")
        };
        assert_eq!(src.base_url.as_str(), "http://attendance-proxy.internal/");

        // The target's table has its own switch; the source's does not cover it.
        let text = GOOD.replace(
            "entry_id = \"entry\"",
            "entry_id = \"entry\"\nbase_url = \"http://jdy.example.com\"",
        );
        let errors = parse(&text).expect_err("refused");
        assert!(
            errors[0].contains("`target.base_url`: `http://`"),
            "{errors:?}"
        );
        let text = GOOD.replace(
            "entry_id = \"entry\"",
            "entry_id = \"entry\"\nbase_url = \"http://jdy.example.com\"\nallow_insecure_http = true",
        );
        assert!(parse(&text).is_ok());

        // https is always fine.
        let text = GOOD.replace("http://127.0.0.1:9/", "https://example.com/");
        assert!(parse(&text).is_ok());
    }

    #[test]
    fn parses_a_complete_wecom_job() {
        let job = parse(GOOD).expect("valid");
        assert_eq!(job.timezone, chrono_tz::Asia::Shanghai);
        assert_eq!(job.previous_month_until_day, 5);
        let Source::Wecom(src) = job.source else {
            panic!("expected wecom")
        };
        assert_eq!(src.corp_id, "ww123");
        assert_eq!(src.secret.expose(), "s3cr3t");
        assert_eq!(src.base_url.as_str(), "http://127.0.0.1:9/");
        assert_eq!(
            src.limits,
            vec![("checkin/getcheckin_monthdata".into(), Rate::per_minute(600))]
        );
        assert_eq!(src.retry.throttle_wait, Duration::from_millis(50));
        assert_eq!(src.retry.max_attempts, 8);
        assert_eq!(job.target.api_key.expose(), "k3y");
        assert_eq!(job.target.base_url.as_str(), "https://api.jiandaoyun.com/");
    }

    #[test]
    fn reports_every_problem_with_position_and_allowed_values() {
        let text = "colour = \"red\"\n".to_string()
            + &GOOD
                .replace("type = \"wecom\"", "type = \"wecon\"")
                .replace("${KEY}", "${MISSING_KEY}")
                .replace("app_id = \"app\"", "app_id = 7");
        let errors = parse(&text).expect_err("invalid");
        let all = errors.join("\n");
        assert!(all.contains("jobs/j.toml:8:8: `source.type`: unknown value \"wecon\"; allowed: \"wecom\" or \"dingtalk\""), "{all}");
        assert!(
            all.contains("`target.api_key`: environment variable `MISSING_KEY` is not set"),
            "{all}"
        );
        assert!(
            all.contains("jobs/j.toml:1:1: `colour`: unknown key"),
            "{all}"
        );
        assert!(
            all.contains("`target.app_id`: expected a string, found integer"),
            "{all}"
        );
        assert!(
            all.contains("unknown key; allowed keys: \"description\""),
            "{all}"
        );
    }

    #[test]
    fn request_timeout_defaults_to_a_minute_and_is_bounded() {
        let job = parse(GOOD).expect("valid");
        assert_eq!(job.target.request_timeout, Duration::from_secs(60));
        let with = |v: &str| {
            GOOD.replace(
                "app_id = \"app\"",
                &format!("app_id = \"app\"\nrequest_timeout = \"{v}\""),
            )
        };
        let job = parse(&with("5s")).expect("valid");
        assert_eq!(job.target.request_timeout, Duration::from_secs(5));
        for bad in ["0s", "11m", "soon"] {
            let errors = parse(&with(bad)).expect_err("invalid").join("\n");
            assert!(
                errors.contains("`target.request_timeout`: invalid request_timeout")
                    && errors.contains("from \"1s\" to \"10m\""),
                "{bad}: {errors}"
            );
        }
    }

    #[test]
    fn invalid_rate_is_reported_with_the_endpoint() {
        let errors = parse(&GOOD.replace("\"600/min\"", "\"fast\"")).expect_err("invalid");
        assert_eq!(errors, vec!["jobs/j.toml:13:34: `source.limits.\"checkin/getcheckin_monthdata\"`: invalid rate \"fast\"; expected \"N/s\" or \"N/min\", e.g. \"60/min\"".to_string()]);
    }

    #[test]
    fn an_empty_secret_names_its_variable_and_key() {
        let errors = parse(&GOOD.replace("${SECRET}", "${EMPTY}")).expect_err("invalid");
        assert_eq!(
            errors,
            ["jobs/j.toml:9:10: `source.secret`: is empty: environment variable `EMPTY` is set but empty"]
        );
        let errors = parse(&DINGTALK.replace("${DT_SECRET}", "")).expect_err("invalid");
        assert_eq!(errors, ["jobs/j.toml:7:14: `source.app_secret`: is empty"]);
        let errors = parse(&GOOD.replace("${KEY}", "${EMPTY}")).expect_err("invalid");
        assert!(errors[0].contains("`target.api_key`: is empty: environment variable `EMPTY`"));
    }

    #[test]
    fn a_scope_that_selects_nobody_or_twice_is_an_error() {
        let with = |scope: &str| {
            parse(&GOOD.replace(
                "base_url = \"http://127.0.0.1:9/\"",
                &format!("base_url = \"http://127.0.0.1:9/\"\n{scope}"),
            ))
        };
        assert_eq!(
            with("departments = []").expect_err("invalid"),
            ["jobs/j.toml:11:15: `source.departments`: is empty, which selects nobody; remove the key to sync everyone the app can see"]
        );
        assert!(with("userids = []").expect_err("invalid")[0]
            .contains("`source.userids`: is empty, which selects nobody"));
        assert_eq!(
            with("departments = [2]\nuserids = [\"zhangsan\"]").expect_err("invalid"),
            ["jobs/j.toml:12:11: `source.userids`: `departments` and `userids` are both set, and only one can choose whom to sync; keep one of them"]
        );
        let job = with("departments = [2, 3]").expect("valid");
        let Source::Wecom(src) = job.source else {
            panic!("expected wecom")
        };
        assert_eq!(src.scope.departments, [2, 3]);
        assert!(with("userids = [\"a\", \" \"]").expect_err("invalid")[0]
            .contains("`source.userids`: a userid is empty"));
    }

    #[test]
    fn a_bad_value_from_a_variable_is_named_by_the_variable_not_shown() {
        let text = GOOD.replace("mapping = ", "timezone = \"${SECRET}\"\nmapping = ");
        let errors = parse(&text).expect_err("invalid").join("\n");
        assert!(
            errors.contains("unknown timezone the value of ${SECRET}"),
            "{errors}"
        );
        assert!(!errors.contains("s3cr3t"), "{errors}");
        let text = GOOD.replace("type = \"wecom\"", "type = \"${SECRET}\"");
        let errors = parse(&text).expect_err("invalid").join("\n");
        assert!(
            errors.contains("unknown value the value of ${SECRET}"),
            "{errors}"
        );
        assert!(!errors.contains("s3cr3t"), "{errors}");
    }

    #[test]
    fn missing_variable_error_names_variable_not_value() {
        let text = GOOD.replace("${SECRET}", "${NOT_SET_SECRET}");
        let errors = parse(&text).expect_err("invalid").join("\n");
        assert!(errors.contains("jobs/j.toml:9:10: `source.secret`: environment variable `NOT_SET_SECRET` is not set"), "{errors}");
    }

    #[test]
    fn report_columns_and_leave_names_are_each_given_once() {
        let with = |lines: &str| {
            parse(&DINGTALK.replace(
                "base_url = \"http://127.0.0.1:9\"",
                &format!("base_url = \"http://127.0.0.1:9\"\n{lines}"),
            ))
        };
        let errors = with("columns = [\"出勤天数\", \"出勤天数\"]\nleave_names = [\"\"]")
            .expect_err("invalid")
            .join("\n");
        assert!(
            errors.contains("`source.columns`: \"出勤天数\" is listed twice"),
            "{errors}"
        );
        assert!(
            errors.contains("`source.leave_names`: a name is empty"),
            "{errors}"
        );
        assert!(with("columns = [\"出勤天数\", \"迟到次数\"]").is_ok());
    }

    pub(crate) const DINGTALK: &str = r#"
mapping = "dingtalk_monthly.toml"

[source]
type = "dingtalk"
app_key = "dingkey"
app_secret = "${DT_SECRET}"
base_url = "http://127.0.0.1:9"

[target]
api_key = "${KEY}"
app_id = "app"
entry_id = "entry"
"#;
}
