//! Default rates and how many calls are worth having under way at once.

use std::time::Duration;

use crate::http::pace::TOTAL;
use crate::http::rate::Rate;

use super::approval::PROCESS_INSTANCES;
use super::failed::FAILED_LIST;
use super::{GETATTCOLUMNS, GETCOLUMNVAL, GETLEAVETIME, GETTOKEN, LISTSUB, USER_LIST};

/// Per app and API (standard edition, docs/vendors/dingtalk.md "Limits");
/// `[source.limits]` overrides.
const API_RATE: Rate = Rate::per_second(20);
pub(super) const DEFAULT_LIMITS: &[(&str, Rate)] = &[
    (GETTOKEN, API_RATE),
    (LISTSUB, API_RATE),
    (USER_LIST, API_RATE),
    (GETATTCOLUMNS, API_RATE),
    (GETCOLUMNVAL, API_RATE),
    (GETLEAVETIME, API_RATE),
    (PROCESS_INSTANCES, API_RATE),
    (FAILED_LIST, API_RATE),
];
/// Per egress IP, all APIs together.
pub(super) const IP_LIMIT: Rate = Rate {
    count: 10_000,
    per: Duration::from_secs(20),
};

/// How many calls to `endpoints` are worth having under way at once, at most
/// `most`: no more than one second's worth of the slowest of their configured
/// rates (and of the vendor-wide `total`), since the pacers hold any more back
/// anyway, and with a slow quota a burst of waiting calls gains nothing.
pub(super) fn in_flight(overrides: &[(String, Rate)], endpoints: &[&str], most: usize) -> usize {
    let rate = |key: &str, default: Option<Rate>| {
        overrides
            .iter()
            .rev()
            .find(|(e, _)| e == key)
            .map(|(_, r)| *r)
            .or(default)
    };
    let per_second = |r: Rate| {
        let secs = r.per.as_secs_f64();
        if secs > 0.0 {
            f64::from(r.count) / secs
        } else {
            f64::INFINITY
        }
    };
    let default = |key: &str| {
        DEFAULT_LIMITS
            .iter()
            .find(|(e, _)| *e == key)
            .map(|(_, r)| *r)
    };
    endpoints
        .iter()
        .filter_map(|e| rate(e, default(e)))
        .chain(rate(TOTAL, Some(IP_LIMIT)))
        .map(|r| per_second(r).ceil())
        .fold(most as f64, f64::min)
        .max(1.0) as usize
}
