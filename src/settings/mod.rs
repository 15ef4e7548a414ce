//! Readers of the settings every vendor's table shares (durations, ranges, base
//! URLs, `limits`, `retry`). They sit below `config` and the vendor folders, which
//! both use them: each vendor reads its own section with them, and `config` reads
//! the job-level keys and `[notify]`.

pub mod limits;

use std::time::Duration;

use crate::http::Url;
use crate::toml_reader::{ConfigError, Located, Table};

pub use limits::{read_limits, read_retry, Endpoints};

/// Parses durations like `"500ms"`, `"60s"`, `"5m"`, `"1h"`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    match unit.trim() {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        // A number too large for its unit is no duration (not a wrapped one).
        "m" | "min" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        _ => None,
    }
}

pub fn in_range(
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

pub fn read_base_url(
    t: &Table<'_, '_>,
    default: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<Url> {
    let url = read_vendor_url(t, "base_url", default, errors)?;
    // A base URL names the vendor app in logs, `status` and the database
    // (the app the quotas are kept for), so it must carry no secret; the
    // error does not repeat it.
    let refused = if !url.username().is_empty() || url.password().is_some() {
        "must not carry a user name or password: a vendor's credentials come \
         from the environment (`secret`, `api_key`), and the address is logged"
    } else if url.query().is_some() || url.fragment().is_some() {
        "must not carry a `?query` or `#fragment`: endpoints are added to its path, \
         and the address is logged"
    } else {
        return Some(url);
    };
    let span = t.get("base_url").map(|v| v.span()).unwrap_or_default();
    errors.push(t.error(span, "base_url", refused));
    None
}

/// A vendor address under `key` (`default` when absent): `https://`, or plain
/// `http://` to loopback or with `allow_insecure_http`.
pub fn read_vendor_url(
    t: &Table<'_, '_>,
    key: &str,
    default: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<Url> {
    let insecure_ok = allow_insecure_http(t, errors);
    let Some(text) = t.string(key, errors) else {
        return (!t.contains(key)).then(|| default_url(default));
    };
    if !(text.value.starts_with("https://") || text.value.starts_with("http://")) {
        errors.push(t.error(text.span, key, "expected an http:// or https:// URL"));
        return None;
    }
    match Url::parse(text.value.trim_end_matches('/')) {
        Ok(url) if url.scheme() == "http" && !insecure_ok && !is_loopback(&url) => {
            errors.push(t.error(text.span, key, INSECURE_HTTP));
            None
        }
        Ok(url) => Some(url),
        Err(e) => {
            errors.push(t.error(text.span, key, format!("not a valid URL: {e}")));
            None
        }
    }
}

/// Why a plain `http://` address is refused: the request would carry the vendor
/// credentials (secrets, tokens, API keys, webhook keys) in clear text.
pub const INSECURE_HTTP: &str =
    "`http://` would send credentials in clear text; use `https://`, or set \
     `allow_insecure_http = true` in this table if the network in between is trusted \
     (loopback hosts such as 127.0.0.1, ::1 and localhost are always allowed)";

/// The table's `allow_insecure_http` (default false). Read by every table that
/// names a URL, whether or not it has one, so the key is always known there.
pub fn allow_insecure_http(t: &Table<'_, '_>, errors: &mut Vec<ConfigError>) -> bool {
    t.bool("allow_insecure_http", errors).unwrap_or(false)
}

/// Loopback hosts (127.0.0.0/8, ::1, localhost): plain HTTP to them never leaves
/// the machine (the simulators, a local proxy).
pub fn is_loopback(url: &Url) -> bool {
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
pub fn default_url(text: &str) -> Url {
    // Only ever a vendor's built-in constant, which every test without a
    // `base_url` reads.
    Url::parse(text).expect("built-in base URLs are valid")
}

#[cfg(test)]
mod duration_tests {
    use super::*;

    #[test]
    fn durations_parse_and_a_number_too_large_for_its_unit_is_refused() {
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration(" 2h "), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("5124095576030432h"), None);
        assert_eq!(parse_duration("307445734561825861m"), None);
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("ten minutes"), None);
    }
}
