//! Pace and retry settings of a job (`[source.limits]`, `[target.limits]`,
//! `[source.retry]`, `[target.retry]`): rates, durations, the endpoints each
//! vendor's limits may name and their documented quotas.

use std::time::Duration;

use super::diag::{one_of, ConfigError};
use super::job::in_range;
use super::reader::{Located, Table};
use crate::http::pace::TOTAL;
pub use crate::http::rate::Rate;
pub use crate::http::retry::RetryConfig;
use crate::source::{dingtalk, wecom};
use crate::target::jiandaoyun as jdy;

/// Parses durations like `"500ms"`, `"60s"`, `"5m"`, `"1h"`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    match unit.trim() {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" | "min" => Some(Duration::from_secs(n * 60)),
        "h" => Some(Duration::from_secs(n * 3600)),
        _ => None,
    }
}

const RETRY_KEYS: &[&str] = &["max_attempts", "initial_wait", "max_wait", "throttle_wait"];

/// The endpoints a limits table may name, each with its documented quota
/// (`None` when the vendor documents none), and the vendor's name.
pub struct Endpoints {
    pub vendor: &'static str,
    pub known: &'static [(&'static str, Option<Rate>)],
}

/// WeCom (docs/vendors/wecom.md "Limits"): 60/min for the monthly report; any other single API
/// 10,000/min per corp. No vendor-wide quota is documented.
pub const WECOM_ENDPOINTS: Endpoints = Endpoints {
    vendor: "WeCom",
    known: &[
        (wecom::MONTHDATA, Some(Rate::per_minute(60))),
        (wecom::GETTOKEN, Some(Rate::per_minute(10_000))),
        (wecom::DEPARTMENTS, Some(Rate::per_minute(10_000))),
        (wecom::USERS, Some(Rate::per_minute(10_000))),
        (TOTAL, None),
    ],
};

const DINGTALK_API: Option<Rate> = Some(Rate::per_second(20));
/// DingTalk (docs/vendors/dingtalk.md "Limits"): 20/s per app and API (standard edition);
/// 10,000 calls per 20 s per egress IP, all APIs together.
pub const DINGTALK_ENDPOINTS: Endpoints = Endpoints {
    vendor: "DingTalk",
    known: &[
        (dingtalk::GETTOKEN, DINGTALK_API),
        (dingtalk::LISTSUB, DINGTALK_API),
        (dingtalk::USER_LIST, DINGTALK_API),
        (dingtalk::GETATTCOLUMNS, DINGTALK_API),
        (dingtalk::GETCOLUMNVAL, DINGTALK_API),
        (dingtalk::GETLEAVETIME, DINGTALK_API),
        (
            TOTAL,
            Some(Rate {
                count: 10_000,
                per: Duration::from_secs(20),
            }),
        ),
    ],
};

/// Jiandaoyun (docs/vendors/jiandaoyun.md "Limits"). The documented data endpoints attendsync does
/// not call are accepted too (pacing them changes nothing).
pub const JIANDAOYUN_ENDPOINTS: Endpoints = Endpoints {
    vendor: "Jiandaoyun",
    known: &[
        (jdy::BATCH_CREATE, Some(Rate::per_second(10))),
        (jdy::UPDATE, Some(Rate::per_second(20))),
        (jdy::LIST, Some(Rate::per_second(30))),
        (jdy::WIDGETS, Some(Rate::per_second(30))),
        (jdy::BATCH_DELETE, Some(Rate::per_second(10))),
        ("data/batch_update", Some(Rate::per_second(10))),
        ("data/create", Some(Rate::per_second(20))),
        ("data/delete", Some(Rate::per_second(20))),
        ("data/get", Some(Rate::per_second(30))),
        (TOTAL, Some(Rate::per_second(50))),
    ],
};

/// `limits`: a pace per endpoint. A name that is not one of `endpoints` is an
/// error listing the known ones; a rate above the documented quota is a warning
/// (a job may have been granted more).
pub fn read_limits(
    t: &Table<'_, '_>,
    endpoints: &Endpoints,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<ConfigError>,
) -> Option<Vec<(String, Rate)>> {
    let Some(limits) = t.table("limits", errors) else {
        return (!t.contains("limits")).then(Vec::new);
    };
    let mut out = Vec::new();
    let before = errors.len();
    for (endpoint, key_span, value) in limits.entries() {
        let Some(text) = limits.string_value(&endpoint, value, errors) else {
            continue;
        };
        let name = endpoint.trim_matches('/');
        let Some((_, quota)) = endpoints.known.iter().find(|(e, _)| *e == name) else {
            let names: Vec<&str> = endpoints.known.iter().map(|(e, _)| *e).collect();
            errors.push(limits.error(
                key_span,
                &endpoint,
                format!(
                    "unknown {} endpoint; known endpoints: {}",
                    endpoints.vendor,
                    one_of(&names)
                ),
            ));
            continue;
        };
        match text.value.parse::<Rate>() {
            Ok(rate) => {
                if let Some(quota) = quota.filter(|q| rate.above(q)) {
                    warnings.push(limits.error(
                        text.span,
                        &endpoint,
                        format!(
                            "{rate} is above {}'s documented quota of {quota}; calls beyond it are throttled",
                            endpoints.vendor
                        ),
                    ));
                }
                out.push((name.to_string(), rate));
            }
            Err(msg) => errors.push(limits.error(text.span, &endpoint, msg)),
        }
    }
    (errors.len() == before).then_some(out)
}

/// `retry`: attempts and waits, over the vendor's defaults. `initial_wait` may
/// not exceed `max_wait`, the cap of every backoff.
pub fn read_retry(
    t: &Table<'_, '_>,
    defaults: RetryConfig,
    errors: &mut Vec<ConfigError>,
) -> Option<RetryConfig> {
    let Some(r) = t.table("retry", errors) else {
        return (!t.contains("retry")).then_some(defaults);
    };
    let before = errors.len();
    let mut cfg = defaults;
    if let Some(n) = r.integer("max_attempts", errors) {
        if let Some(n) = in_range(&r, "max_attempts", &n, 1, 100, errors) {
            cfg.max_attempts = n as u32;
        }
    }
    let mut spans: Vec<(&str, Located<String>)> = Vec::new();
    for (key, slot) in [
        ("initial_wait", &mut cfg.initial_wait),
        ("max_wait", &mut cfg.max_wait),
        ("throttle_wait", &mut cfg.throttle_wait),
    ] {
        if let Some(text) = r.string(key, errors) {
            match parse_duration(&text.value) {
                Some(d) => {
                    *slot = d;
                    spans.push((key, text));
                }
                None => errors.push(r.error(
                    text.span,
                    key,
                    format!(
                        "invalid duration \"{}\"; expected e.g. \"500ms\", \"60s\", \"5m\"",
                        text.value
                    ),
                )),
            }
        }
    }
    if errors.len() == before && cfg.initial_wait > cfg.max_wait {
        // Point at whichever of the two the file sets (the first, if both).
        let (key, span) = spans
            .iter()
            .find(|(k, _)| *k == "initial_wait" || *k == "max_wait")
            .map(|(k, l)| (*k, l.span.clone()))
            .unwrap_or(("initial_wait", r.span()));
        errors.push(r.error(
            span,
            key,
            format!(
                "initial_wait ({:?}) is longer than max_wait ({:?}), the cap of every backoff; make initial_wait at most max_wait",
                cfg.initial_wait, cfg.max_wait
            ),
        ));
    }
    r.finish(RETRY_KEYS, errors);
    (errors.len() == before).then_some(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::job::parse_job_with_warnings;
    use crate::config::SourceFile;

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

    #[test]
    fn rates_and_durations() {
        assert_eq!("10/s".parse::<Rate>(), Ok(Rate::per_second(10)));
        assert!("0/s".parse::<Rate>().is_err());
        assert!("10/h".parse::<Rate>().is_err());
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("5 days"), None);
        assert!(Rate::per_second(2).above(&Rate::per_minute(60)));
        assert!(!Rate::per_minute(60).above(&Rate::per_second(1)));
        assert_eq!(Rate::per_minute(60).to_string(), "60/min");
    }
}
