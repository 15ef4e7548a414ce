//! Pace and retry settings of a vendor's table (`[source.limits]`,
//! `[target.limits]`, `[source.retry]`, `[target.retry]`): rates per endpoint,
//! checked against the endpoints the vendor names ([`Endpoints`], each vendor's
//! own table in its folder), and retry waits.

use super::{in_range, parse_duration};
use crate::http::rate::Rate;
use crate::http::retry::RetryConfig;
use crate::toml_reader::{one_of, ConfigError, Located, Table};

const RETRY_KEYS: &[&str] = &["max_attempts", "initial_wait", "max_wait", "throttle_wait"];

/// The endpoints a limits table may name, each with its documented quota
/// (`None` when the vendor documents none), and the vendor's name.
pub struct Endpoints {
    pub vendor: &'static str,
    pub known: &'static [(&'static str, Option<Rate>)],
}

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
    use std::time::Duration;

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
