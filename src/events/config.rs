//! `[events]` of a job file (README "Re-pulls on change"): how the source's
//! events arrive, and which employee-months they re-pull when.

use std::time::Duration;

use crate::events::crypto::MsgCrypt;
use crate::http::Url;
use crate::secret::Secret;
use crate::settings::{in_range, parse_duration, read_vendor_url};
use crate::toml_reader::{ConfigError, Located, Table};

/// Where DingTalk's Stream gateway is (`connections/open`).
pub const STREAM_GATEWAY_URL: &str = "https://api.dingtalk.com";
/// Wait this long after an employee's last event before the re-pull.
pub const DEFAULT_DELAY: Duration = Duration::from_secs(600);
const DELAY_RANGE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(86_400));
pub const DEFAULT_MAX_AGE_MONTHS: u32 = 3;

/// How events reach the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// DingTalk Stream mode: an outbound WebSocket opened through the gateway.
    Stream { gateway_url: Url },
    /// DingTalk HTTP push to `/callbacks/dingtalk/<job>` (owner: the app key).
    DingtalkPush { token: Secret, aes_key: Secret },
    /// WeCom callbacks to `/callbacks/wecom/<job>` (owner: the corp id).
    WecomCallback { token: Secret, aes_key: Secret },
}

/// Events about the month in progress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CurrentMonth {
    /// Left to the scheduled pull (every punch would cost a metered re-pull).
    #[default]
    Scheduled,
    /// Re-pulled too.
    Live,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsConfig {
    pub delivery: Delivery,
    pub delay: Duration,
    pub current_month: CurrentMonth,
    /// Events about months older than this many closed months are ignored.
    pub max_age_months: u32,
}

/// The vendor of a job's source, as `[events]` depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    Wecom,
    Dingtalk,
}

impl EventsConfig {
    /// The callback crypto of an HTTP delivery, for messages to `owner` (the
    /// WeCom corp id, the DingTalk app key); `None` for Stream mode.
    pub fn crypt(&self, owner: &str) -> Option<MsgCrypt> {
        let (token, aes_key) = match &self.delivery {
            Delivery::Stream { .. } => return None,
            Delivery::DingtalkPush { token, aes_key }
            | Delivery::WecomCallback { token, aes_key } => (token, aes_key),
        };
        // The key was checked when the job was read.
        MsgCrypt::new(token.expose(), aes_key.expose(), owner).ok()
    }

    /// The listener path an HTTP delivery comes to, for `check` and the logs,
    /// the job's name percent-encoded as one path segment.
    pub fn callback_path(&self, job: &str) -> Option<String> {
        let vendor = match self.delivery {
            Delivery::Stream { .. } => return None,
            Delivery::DingtalkPush { .. } => "dingtalk",
            Delivery::WecomCallback { .. } => "wecom",
        };
        let mut url = crate::settings::default_url("http://listener/");
        if let Ok(mut path) = url.path_segments_mut() {
            path.clear().extend(["callbacks", vendor, job]);
        }
        Some(url.path().to_string())
    }
}

const DINGTALK_KEYS: &[&str] = &[
    "mode",
    "token",
    "aes_key",
    "gateway_url",
    "allow_insecure_http",
    "delay",
    "current_month",
    "max_age_months",
];
const WECOM_KEYS: &[&str] = &[
    "token",
    "aes_key",
    "delay",
    "current_month",
    "max_age_months",
];

/// `[events]`, read against the vendor of the job's source (`None` when the
/// source did not read).
pub fn read_events(
    t: &Table<'_, '_>,
    vendor: Option<Vendor>,
    errors: &mut Vec<ConfigError>,
) -> Option<EventsConfig> {
    let before = errors.len();
    let delay = read_delay(t, errors);
    let current_month = match t.choice("current_month", &["scheduled", "live"], errors) {
        Some(c) if c.value == "live" => CurrentMonth::Live,
        _ => CurrentMonth::Scheduled,
    };
    let max_age_months = match t.integer("max_age_months", errors) {
        None => DEFAULT_MAX_AGE_MONTHS,
        Some(n) => in_range(t, "max_age_months", &n, 1, 24, errors).map_or(0, |n| n as u32),
    };
    let delivery = match vendor? {
        Vendor::Dingtalk => {
            let d = read_dingtalk_delivery(t, errors);
            t.finish(DINGTALK_KEYS, errors);
            d
        }
        Vendor::Wecom => {
            let d = read_secrets(t, errors)
                .map(|(token, aes_key)| Delivery::WecomCallback { token, aes_key });
            t.finish(WECOM_KEYS, errors);
            d
        }
    };
    (errors.len() == before).then_some(EventsConfig {
        delivery: delivery?,
        delay,
        current_month,
        max_age_months,
    })
}

fn read_dingtalk_delivery(t: &Table<'_, '_>, errors: &mut Vec<ConfigError>) -> Option<Delivery> {
    let mode = t.choice("mode", &["stream", "http"], errors);
    if mode.as_ref().is_some_and(|m| m.value == "http") {
        if let Some(url) = t.string("gateway_url", errors) {
            errors.push(t.error(url.span, "gateway_url", "is for mode = \"stream\" only"));
        }
        let (token, aes_key) = read_secrets(t, errors)?;
        return Some(Delivery::DingtalkPush { token, aes_key });
    }
    for key in ["token", "aes_key"] {
        if let Some(v) = t.get(key) {
            let message = "is for mode = \"http\"; Stream mode signs in with the app's credentials";
            errors.push(t.error(v.span(), key, message));
        }
    }
    let gateway_url = read_vendor_url(t, "gateway_url", STREAM_GATEWAY_URL, errors)?;
    Some(Delivery::Stream { gateway_url })
}

/// `token` and `aes_key`, both required and from `${VAR}`.
fn read_secrets(t: &Table<'_, '_>, errors: &mut Vec<ConfigError>) -> Option<(Secret, Secret)> {
    let token = read_secret(t, "token", errors);
    let aes_key = read_secret(t, "aes_key", errors);
    if let Some(key) = &aes_key {
        if MsgCrypt::new("t", &key.value, "o").is_err() {
            let message = "must be the 43 letters and digits of the EncodingAESKey the vendor's console shows";
            errors.push(t.error(key.span.clone(), "aes_key", message));
            return None;
        }
    }
    Some((Secret::new(token?.value), Secret::new(aes_key?.value)))
}

fn read_secret(
    t: &Table<'_, '_>,
    key: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<Located<String>> {
    let example = format!("ATTENDSYNC_EVENTS_{}", key.to_ascii_uppercase());
    t.required_from_env(key, &example, errors)
}

fn read_delay(t: &Table<'_, '_>, errors: &mut Vec<ConfigError>) -> Duration {
    let Some(text) = t.string("delay", errors) else {
        return DEFAULT_DELAY;
    };
    let (min, max) = DELAY_RANGE;
    match parse_duration(&text.value) {
        Some(d) if (min..=max).contains(&d) => d,
        _ => {
            let message = format!(
                "invalid delay \"{}\"; expected a duration from \"1s\" to \"24h\" (e.g. \"10m\")",
                text.value.trim()
            );
            errors.push(t.error(text.span, "delay", message));
            DEFAULT_DELAY
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::job::tests::{parse, DINGTALK, GOOD};

    fn events_of(text: &str) -> EventsConfig {
        match parse(text) {
            Ok(job) => job.events.expect("an [events] table"),
            Err(e) => panic!("invalid: {e:?}"),
        }
    }

    fn errors_of(text: &str) -> String {
        match parse(text) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e.join("\n"),
        }
    }

    #[test]
    fn dingtalk_defaults_to_stream_mode_and_ten_minutes() {
        let e = events_of(&format!("{DINGTALK}\n[events]\n"));
        assert_eq!(
            e.delivery,
            Delivery::Stream {
                gateway_url: Url::parse(STREAM_GATEWAY_URL).expect("url")
            }
        );
        assert_eq!(e.delay, DEFAULT_DELAY);
        assert_eq!(e.current_month, CurrentMonth::Scheduled);
        assert_eq!(e.max_age_months, 3);
        assert_eq!(parse(DINGTALK).expect("valid").events, None);
    }

    #[test]
    fn http_mode_and_wecom_take_secrets_from_the_environment() {
        let text = format!(
            "{DINGTALK}\n[events]\nmode = \"http\"\ntoken = \"${{EV_TOKEN}}\"\naes_key = \"${{EV_AES}}\"\ndelay = \"30s\"\ncurrent_month = \"live\"\nmax_age_months = 2\n"
        );
        let e = events_of(&text);
        assert!(matches!(e.delivery, Delivery::DingtalkPush { .. }));
        assert_eq!(e.delay, Duration::from_secs(30));
        assert_eq!(e.current_month, CurrentMonth::Live);
        assert_eq!(
            e.callback_path("j").as_deref(),
            Some("/callbacks/dingtalk/j")
        );
        let wecom =
            format!("{GOOD}\n[events]\ntoken = \"${{EV_TOKEN}}\"\naes_key = \"${{EV_AES}}\"\n");
        let e = events_of(&wecom);
        assert!(matches!(e.delivery, Delivery::WecomCallback { .. }));
        assert_eq!(e.callback_path("j").as_deref(), Some("/callbacks/wecom/j"));
        assert_eq!(
            e.callback_path("night shift/2").as_deref(),
            Some("/callbacks/wecom/night%20shift%2F2")
        );
    }

    #[test]
    fn wrong_events_settings_name_their_line_and_never_the_secret() {
        let literal = format!(
            "{GOOD}\n[events]\ntoken = \"written-in-the-file\"\naes_key = \"${{EV_AES}}\"\n"
        );
        let e = errors_of(&literal);
        assert!(e.contains("token") && e.contains("environment"), "{e}");
        assert!(!e.contains("written-in-the-file"), "{e}");
        let short_key =
            format!("{GOOD}\n[events]\ntoken = \"${{EV_TOKEN}}\"\naes_key = \"${{KEY}}\"\n");
        let e = errors_of(&short_key);
        assert!(e.contains("aes_key") && e.contains("43"), "{e}");
        let mode_for_wecom = format!(
            "{GOOD}\n[events]\nmode = \"stream\"\ntoken = \"${{EV_TOKEN}}\"\naes_key = \"${{EV_AES}}\"\n"
        );
        assert!(errors_of(&mode_for_wecom).contains("mode"));
        let stream_with_token = format!("{DINGTALK}\n[events]\ntoken = \"${{EV_TOKEN}}\"\n");
        assert!(errors_of(&stream_with_token).contains("mode = \"http\""));
        let bad_delay = format!("{DINGTALK}\n[events]\ndelay = \"soon\"\n");
        let e = errors_of(&bad_delay);
        assert!(e.contains("delay") && e.contains("jobs/j.toml:"), "{e}");
        let bad_age = format!("{DINGTALK}\n[events]\nmax_age_months = 0\n");
        assert!(errors_of(&bad_age).contains("max_age_months"));
    }
}
