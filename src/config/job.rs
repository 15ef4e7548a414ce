//! Job files (`jobs/NAME.toml`, README "Job files"): what to pull, where to write, how fast.

use std::path::Path;

use chrono_tz::Tz;

use super::notify::read_notify;
pub use super::notify::{Language, Notify, NotifyOn, WorkNotice, DEFAULT_REPEAT_AFTER};
use crate::events::config::{read_events, EventsConfig, Vendor};
use crate::settings::in_range;
use crate::source::config::{read_source, SourceConfig};
use crate::target::jiandaoyun::config::{read_target, Target};
use crate::toml_reader::{self as reader, EnvLookup, Table};
use crate::toml_reader::{ConfigError, SourceFile};

pub const DEFAULT_TIMEZONE: Tz = chrono_tz::Asia::Shanghai;
/// Through which day of a month the previous month is still synced by default (README "Which months").
pub const DEFAULT_PREVIOUS_MONTH_UNTIL_DAY: u32 = 5;
/// Closed months back a run still syncs an owed month (README "Months owed").
pub const DEFAULT_MAX_OWED_MONTHS: u32 = 3;

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
    pub source: SourceConfig,
    pub target: Target,
    /// Alerts (`[notify]`); `None` when the job has no `[notify]` table.
    pub notify: Option<Notify>,
    /// Re-pulls on change (`[events]`); `None` without the table.
    pub events: Option<EventsConfig>,
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
    "events",
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
    let events = match root.table("events", errors) {
        Some(t) => read_events(&t, source.as_ref().map(vendor_of), errors).map(Some),
        None => (!root.contains("events")).then_some(None),
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
        events: events?,
    })
}

/// The vendor of a source, as `[events]` reads it.
fn vendor_of(source: &SourceConfig) -> Vendor {
    match source {
        SourceConfig::Wecom(_) => Vendor::Wecom,
        SourceConfig::Dingtalk(_) => Vendor::Dingtalk,
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
    use crate::http::rate::Rate;
    use crate::source::config::SourceConfig as Source;
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
            "EV_TOKEN" => Some("ev-token".into()),
            "EV_AES" => Some("jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C".into()),
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

    /// A base URL is logged and names the app in the database: a password or
    /// token written into it is refused, and the error does not repeat it.
    #[test]
    fn a_base_url_with_credentials_or_a_query_is_refused_without_echoing_it() {
        for (url, says) in [
            (
                "https://admin:hunter2@qyapi.example/",
                "user name or password",
            ),
            ("https://token-9f8e@qyapi.example/", "user name or password"),
            ("https://qyapi.example/?access_token=tok-7d6c", "`?query`"),
            ("https://qyapi.example/#tok-7d6c", "`?query`"),
        ] {
            let text = GOOD.replace("http://127.0.0.1:9/", url);
            let errors = parse(&text).expect_err(url);
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(
                errors[0].starts_with("jobs/j.toml:10:12: `source.base_url`: must not carry"),
                "{errors:?}"
            );
            assert!(errors[0].contains(says), "{errors:?}");
            for secret in ["hunter2", "token-9f8e", "tok-7d6c"] {
                assert!(!errors[0].contains(secret), "{errors:?}");
            }
        }
        let text = GOOD.replace("http://127.0.0.1:9/", "https://proxy.example/wecom/");
        assert!(parse(&text).is_ok(), "a path prefix is fine");
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

    /// `limits` and `retry` of each vendor's table, as `check` shows them.
    mod limits {
        use super::super::*;

        fn job(source_type: &str, source: &str, target: &str) -> String {
            let credentials = if source_type == "wecom" {
                "corp_id = \"ww1\"\nsecret = \"s\""
            } else {
                "app_key = \"k\"\napp_secret = \"s\""
            };
            format!(
                "mapping = \"m.toml\"\n[source]\ntype = \"{source_type}\"\n{credentials}\n{source}\n[target]\napi_key = \"k\"\napp_id = \"a\"\nentry_id = \"e\"\n{target}\n"
            )
        }

        /// (errors, warnings) of a job file, as `check` prints them.
        fn check(text: &str) -> (Vec<String>, Vec<String>) {
            let file = SourceFile::new("jobs/j.toml", text);
            let show = |es: Vec<ConfigError>| es.iter().map(|e| e.to_string()).collect();
            match parse_job_with_warnings("j", &file, &|_| None) {
                Ok((_, warnings)) => (Vec::new(), show(warnings)),
                Err(errors) => (show(errors), Vec::new()),
            }
        }

        #[test]
        fn a_misspelt_endpoint_is_an_error_listing_the_known_ones() {
            let (errors, _) = check(&job(
                "wecom",
                "",
                "[target.limits]\n\"data/bach_create\" = \"5/s\"\n",
            ));
            assert_eq!(
                errors,
                ["jobs/j.toml:12:1: `target.limits.\"data/bach_create\"`: unknown Jiandaoyun endpoint; known endpoints: \"data/batch_create\", \"data/update\", \"data/list\", \"widget/list\", \"data/batch_delete\", \"data/batch_update\", \"data/create\", \"data/delete\", \"data/get\" or \"total\""]
            );
            let (errors, _) = check(&job(
                "wecom",
                "[source.limits]\n\"checkin/getcheckin_monthdta\" = \"60/min\"\n",
                "",
            ));
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(
                errors[0].starts_with("jobs/j.toml:7:1: `source.limits.\"checkin/getcheckin_monthdta\"`: unknown WeCom endpoint; known endpoints: \"checkin/getcheckin_monthdata\""),
                "{errors:?}"
            );
            let (errors, _) = check(&job(
                "dingtalk",
                "[source.limits]\n\"topapi/attendance/getcolumnvalue\" = \"10/s\"\n",
                "",
            ));
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(
                errors[0].contains("unknown DingTalk endpoint; known endpoints: \"gettoken\", \"topapi/v2/department/listsub\""),
                "{errors:?}"
            );
            // Known names pass, with or without slashes around them.
            let (errors, _) = check(&job(
                "dingtalk",
                "[source.limits]\n\"/topapi/attendance/getcolumnval\" = \"10/s\"\ntotal = \"100/s\"\n",
                "[target.limits]\n\"data/batch_create\" = \"5/s\"\n",
            ));
            assert!(errors.is_empty(), "{errors:?}");
            // The endpoints the daemon's re-pulls on change call can be paced too.
            let (errors, warnings) = check(&job(
                "dingtalk",
                "[source.limits]\n\"call_back/get_call_back_failed_result\" = \"5/s\"\n\"v1.0/workflow/processInstances\" = \"10/s\"\n",
                "",
            ));
            assert!(
                errors.is_empty() && warnings.is_empty(),
                "{errors:?} {warnings:?}"
            );
        }

        #[test]
        fn a_limit_above_the_documented_quota_is_a_warning() {
            let (errors, warnings) = check(&job(
                "wecom",
                "[source.limits]\n\"checkin/getcheckin_monthdata\" = \"2/s\"\n\"user/simplelist\" = \"60/s\"\n",
                "[target.limits]\n\"data/batch_create\" = \"10/s\"\ntotal = \"60/s\"\n",
            ));
            assert!(errors.is_empty(), "{errors:?}");
            assert_eq!(
                warnings,
                [
                    "jobs/j.toml:7:34: `source.limits.\"checkin/getcheckin_monthdata\"`: 2/s is above WeCom's documented quota of 60/min; calls beyond it are throttled",
                    "jobs/j.toml:16:9: `target.limits.total`: 60/s is above Jiandaoyun's documented quota of 50/s; calls beyond it are throttled",
                ]
            );
            let (_, warnings) = check(&job("dingtalk", "[source.limits]\ntotal = \"501/s\"\n", ""));
            assert_eq!(warnings.len(), 1, "{warnings:?}");
            assert!(
                warnings[0].contains("documented quota of 10000 per 20 s"),
                "{warnings:?}"
            );
        }

        #[test]
        fn initial_wait_longer_than_max_wait_is_an_error() {
            let (errors, _) = check(&job(
                "wecom",
                "[source.retry]\ninitial_wait = \"90s\"\nmax_wait = \"30s\"\n",
                "",
            ));
            assert_eq!(
                errors,
                ["jobs/j.toml:7:16: `source.retry.initial_wait`: initial_wait (90s) is longer than max_wait (30s), the cap of every backoff; make initial_wait at most max_wait"]
            );
            // Against the default cap (60 s) too.
            let (errors, _) = check(&job("wecom", "", "[target.retry]\ninitial_wait = \"2m\"\n"));
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(errors[0].contains("initial_wait (120s) is longer than max_wait (60s)"));
            let (errors, _) = check(&job(
                "wecom",
                "[source.retry]\ninitial_wait = \"60s\"\n",
                "",
            ));
            assert!(errors.is_empty(), "{errors:?}");
        }
    }
}
