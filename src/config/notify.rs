//! `[notify]` of a job file: when to alert and where (README "Alerts"). Every target is
//! validated when the job is read, so `check` reports a broken alert setup
//! before the first failure needs it.

use std::time::Duration;

use crate::http::Url;
use crate::secret::Secret;
use crate::settings::{
    allow_insecure_http, default_url, in_range, is_loopback, parse_duration, read_base_url,
    INSECURE_HTTP,
};
use crate::source::config::SourceConfig as Source;
use crate::source::dingtalk::config::DINGTALK_BASE_URL;
use crate::toml_reader::Table;
use crate::toml_reader::{one_of, ConfigError};

/// When alerts are sent (`[notify] on`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NotifyOn {
    /// Only after a run that failed (exit 1), the default.
    #[default]
    Failure,
    /// After every run.
    Always,
}

/// The language of alert texts (`[notify] language`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Language {
    /// Chinese, the default.
    #[default]
    Zh,
    En,
}

/// How often a job that stays broken is alerted again, by default.
pub const DEFAULT_REPEAT_AFTER: Duration = Duration::from_secs(24 * 3600);
/// The shortest and longest `repeat_after`.
const REPEAT_AFTER_RANGE: (Duration, Duration) =
    (Duration::from_secs(60), Duration::from_secs(30 * 24 * 3600));

/// Alert targets of a job (README "Alerts"). Webhook URLs carry access keys in
/// their query strings, so they are kept as [`Secret`]s like every credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    pub on: NotifyOn,
    pub language: Language,
    /// A reminder while a job stays broken, this long after the last alert;
    /// `None` (`repeat_after = "never"`): one alert per failure streak.
    pub repeat_after: Option<Duration>,
    /// WeCom group-robot webhook URL (`…/cgi-bin/webhook/send?key=…`).
    pub wecom_robot: Option<Secret>,
    /// DingTalk custom-robot webhook URL (`…/robot/send?access_token=…`).
    pub dingtalk_robot: Option<Secret>,
    /// The custom robot's signing secret (`SEC…`), when its security setting is "sign".
    pub dingtalk_robot_secret: Option<Secret>,
    /// A generic webhook that receives the run's JSON report.
    pub webhook: Option<Secret>,
    pub dingtalk_work_notice: Option<WorkNotice>,
}

/// A DingTalk work notification (`asyncsend_v2`) to named users. The app's
/// credentials and base URL default to the job's DingTalk source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkNotice {
    /// The app's AgentID.
    pub agent_id: i64,
    /// Recipients (1 to 100 userids).
    pub userids: Vec<String>,
    pub app_key: String,
    pub app_secret: Secret,
    /// The old-style API host (`https://oapi.dingtalk.com`, or a test server).
    pub base_url: Url,
}

const NOTIFY_KEYS: &[&str] = &[
    "on",
    "language",
    "repeat_after",
    "wecom_robot",
    "dingtalk_robot",
    "dingtalk_robot_secret",
    "webhook",
    "allow_insecure_http",
    "dingtalk_work_notice",
];
const NOTIFY_ON: &[&str] = &["failure", "always"];
const LANGUAGES: &[&str] = &["zh", "en"];
const WORK_NOTICE_KEYS: &[&str] = &[
    "agent_id",
    "userids",
    "app_key",
    "app_secret",
    "base_url",
    "allow_insecure_http",
];
/// `asyncsend_v2` takes at most 100 userids per call.
const MAX_NOTICE_USERIDS: usize = 100;

/// `[notify]`: when to alert and where. Every target is validated here, so `check`
/// reports a broken alert setup before the first failure needs it.
pub(super) fn read_notify(
    t: &Table<'_, '_>,
    source: Option<&Source>,
    errors: &mut Vec<ConfigError>,
) -> Option<Notify> {
    let before = errors.len();
    let on = match t.choice("on", NOTIFY_ON, errors) {
        Some(on) if on.value == "always" => NotifyOn::Always,
        _ => NotifyOn::Failure,
    };
    let language = match t.choice("language", LANGUAGES, errors) {
        Some(l) if l.value == "en" => Language::En,
        _ => Language::Zh,
    };
    let repeat_after = read_repeat_after(t, errors);
    let insecure_ok = allow_insecure_http(t, errors);
    let wecom_robot = read_url(t, "wecom_robot", insecure_ok, errors);
    let dingtalk_robot = read_url(t, "dingtalk_robot", insecure_ok, errors);
    let webhook = read_url(t, "webhook", insecure_ok, errors);
    let dingtalk_robot_secret = match t.string("dingtalk_robot_secret", errors) {
        None => None,
        Some(s) if s.value.trim().is_empty() => {
            errors.push(t.error(
                s.span,
                "dingtalk_robot_secret",
                "is empty; remove the key when the robot does not sign its requests",
            ));
            None
        }
        Some(s) => {
            if !t.contains("dingtalk_robot") {
                errors.push(t.error(
                    s.span.clone(),
                    "dingtalk_robot_secret",
                    "a signing secret needs `dingtalk_robot`, the webhook URL of the robot it signs for",
                ));
            }
            Some(Secret::new(s.value))
        }
    };
    let notice = match t.table("dingtalk_work_notice", errors) {
        Some(n) => read_work_notice(&n, source, errors),
        None => None,
    };
    let targets = [
        "wecom_robot",
        "dingtalk_robot",
        "webhook",
        "dingtalk_work_notice",
    ];
    if !targets.iter().any(|k| t.contains(k)) {
        errors.push(t.file().error(
            Some(t.span()),
            "notify",
            format!(
                "no alert target; set at least one of {}, or remove [notify]",
                one_of(&targets)
            ),
        ));
    }
    t.finish(NOTIFY_KEYS, errors);
    (errors.len() == before).then_some(Notify {
        on,
        language,
        repeat_after,
        wecom_robot,
        dingtalk_robot,
        dingtalk_robot_secret,
        webhook,
        dingtalk_work_notice: notice,
    })
}

/// `repeat_after`: a duration from "1m" to "720h", or "never"; default 24 h.
fn read_repeat_after(t: &Table<'_, '_>, errors: &mut Vec<ConfigError>) -> Option<Duration> {
    let Some(text) = t.string("repeat_after", errors) else {
        return Some(DEFAULT_REPEAT_AFTER);
    };
    let value = text.value.trim();
    if value == "never" {
        return None;
    }
    let (min, max) = REPEAT_AFTER_RANGE;
    match parse_duration(value) {
        Some(d) if (min..=max).contains(&d) => Some(d),
        _ => {
            errors.push(t.error(
                text.span,
                "repeat_after",
                format!(
                    "invalid repeat_after \"{value}\"; expected a duration from \"1m\" to \"720h\" (e.g. \"24h\"), or \"never\" for one alert per failure streak"
                ),
            ));
            Some(DEFAULT_REPEAT_AFTER)
        }
    }
}

/// An optional webhook URL. The value is never echoed in a message: it carries a key.
/// Plain `http://` only to a loopback host or with `allow_insecure_http = true`.
fn read_url(
    t: &Table<'_, '_>,
    key: &str,
    insecure_ok: bool,
    errors: &mut Vec<ConfigError>,
) -> Option<Secret> {
    let url = t.string(key, errors)?;
    let v = url.value.trim();
    let rest = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"));
    match rest {
        Some(rest)
            if !rest.is_empty() && !rest.starts_with('/') && !v.contains(char::is_whitespace) =>
        {
            if v.starts_with("http://") && !insecure_ok {
                // Unparseable hosts are not loopback: refused here, with the same hint.
                let loopback = Url::parse(v).is_ok_and(|u| is_loopback(&u));
                if !loopback {
                    errors.push(t.error(url.span, key, INSECURE_HTTP));
                    return None;
                }
            }
            Some(Secret::new(v))
        }
        _ => {
            errors.push(t.error(
                url.span,
                key,
                "expected an http:// or https:// URL (the value is not shown: webhook URLs carry keys)",
            ));
            None
        }
    }
}

fn read_work_notice(
    n: &Table<'_, '_>,
    source: Option<&Source>,
    errors: &mut Vec<ConfigError>,
) -> Option<WorkNotice> {
    let before = errors.len();
    let agent_id = if n.contains("agent_id") {
        n.integer("agent_id", errors)
            .and_then(|a| in_range(n, "agent_id", &a, 1, i64::MAX, errors))
    } else {
        errors.push(n.error(
            n.span(),
            "agent_id",
            "required key is missing: the AgentID of the DingTalk app that sends the notice",
        ));
        None
    };
    let mut userids = Vec::new();
    if !n.contains("userids") {
        errors.push(n.error(
            n.span(),
            "userids",
            "required key is missing: the DingTalk userids to notify",
        ));
    } else if let Some(ids) = n.string_array("userids", errors) {
        if ids.is_empty() || ids.len() > MAX_NOTICE_USERIDS {
            errors.push(n.error(
                n.span(),
                "userids",
                format!("{} userids; allowed: 1 to {MAX_NOTICE_USERIDS}", ids.len()),
            ));
        }
        for id in ids {
            let v = id.value.trim();
            if v.is_empty() || v.contains(',') {
                errors.push(n.error(id.span, "userids", "a userid is not empty and has no comma"));
            } else {
                userids.push(v.to_string());
            }
        }
    }
    let app_key = n
        .string("app_key", errors)
        .and_then(|k| n.nonempty("app_key", k, errors));
    let app_secret = n
        .string("app_secret", errors)
        .and_then(|s| n.nonempty("app_secret", s, errors));
    let base_url = if n.contains("base_url") {
        read_base_url(n, DINGTALK_BASE_URL, errors)
    } else {
        allow_insecure_http(n, errors);
        None
    };
    let dingtalk = match source {
        Some(Source::Dingtalk(d)) => Some(d),
        _ => None,
    };
    let credentials = match (app_key, app_secret) {
        (Some(k), Some(s)) => Some((k.value, Secret::new(s.value))),
        (Some(k), None) if !n.contains("app_secret") => {
            errors.push(n.error(k.span, "app_secret", "`app_key` needs `app_secret` too"));
            None
        }
        (None, Some(s)) if !n.contains("app_key") => {
            errors.push(n.error(s.span, "app_key", "`app_secret` needs `app_key` too"));
            None
        }
        (None, None) if !n.contains("app_key") && !n.contains("app_secret") => match dingtalk {
            Some(d) => Some((d.app_key.clone(), d.app_secret.clone())),
            None => {
                if matches!(source, Some(Source::Wecom(_))) {
                    errors.push(n.error(
                        n.span(),
                        "app_key",
                        "a WeCom job sends DingTalk work notices with a DingTalk app of its own: set `app_key` and `app_secret` here",
                    ));
                }
                None
            }
        },
        // A present key that failed to read was reported already.
        _ => None,
    };
    let base_url = base_url.or_else(|| match dingtalk {
        Some(d) => Some(d.base_url.clone()),
        None => Some(default_url(DINGTALK_BASE_URL)),
    });
    n.finish(WORK_NOTICE_KEYS, errors);
    if errors.len() != before {
        return None;
    }
    let (app_key, app_secret) = credentials?;
    Some(WorkNotice {
        agent_id: agent_id?,
        userids,
        app_key,
        app_secret,
        base_url: base_url?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::job::tests::{parse, DINGTALK, GOOD};

    fn notify_of(text: &str) -> Notify {
        match parse(text) {
            Ok(job) => job.notify.expect("a [notify] table"),
            Err(e) => panic!("invalid: {e:?}"),
        }
    }

    #[test]
    fn a_job_without_notify_has_none() {
        assert_eq!(parse(GOOD).expect("valid").notify, None);
        assert_eq!(parse(DINGTALK).expect("valid").notify, None);
    }

    #[test]
    fn parses_every_notify_target_and_defaults_the_notice_to_the_source_app() {
        let text = DINGTALK.to_string()
            + r#"
[notify]
on = "always"
wecom_robot = "${WECOM_HOOK}"
dingtalk_robot = "${DT_HOOK}"
dingtalk_robot_secret = "${DT_SIGN}"
webhook = "https://ops.example.com/hooks/attendsync"

[notify.dingtalk_work_notice]
agent_id = 123456789
userids = ["manager4220", "hr01"]
"#;
        let n = notify_of(&text);
        assert_eq!(n.on, NotifyOn::Always);
        assert_eq!(
            n.wecom_robot.as_ref().map(Secret::expose),
            Some("https://qyapi.example/cgi-bin/webhook/send?key=wk-123")
        );
        assert_eq!(
            n.dingtalk_robot.as_ref().map(Secret::expose),
            Some("https://oapi.example/robot/send?access_token=dt-456")
        );
        assert_eq!(
            n.dingtalk_robot_secret.as_ref().map(Secret::expose),
            Some("SECsign789")
        );
        assert_eq!(
            n.webhook.as_ref().map(Secret::expose),
            Some("https://ops.example.com/hooks/attendsync")
        );
        let notice = n.dingtalk_work_notice.expect("work notice");
        assert_eq!(notice.agent_id, 123456789);
        assert_eq!(notice.userids, vec!["manager4220", "hr01"]);
        assert_eq!(notice.app_key, "dingkey");
        assert_eq!(notice.app_secret.expose(), "dt-s3cr3t");
        assert_eq!(notice.base_url.as_str(), "http://127.0.0.1:9/");
        // Debug output of the whole job never shows a key.
        let debug = format!("{:?}", parse(&text).expect("valid"));
        for secret in ["wk-123", "dt-456", "SECsign789", "dt-s3cr3t", "k3y"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
    }

    #[test]
    fn notify_defaults_to_failure() {
        let n = notify_of(&(GOOD.to_string() + "\n[notify]\nwecom_robot = \"${WECOM_HOOK}\"\n"));
        assert_eq!(n.on, NotifyOn::Failure);
        assert_eq!(n.language, Language::Zh);
        assert_eq!(n.repeat_after, Some(DEFAULT_REPEAT_AFTER));
        assert_eq!(n.dingtalk_robot, None);
        assert_eq!(n.dingtalk_work_notice, None);
    }

    #[test]
    fn a_wecom_job_sends_work_notices_with_its_own_dingtalk_app() {
        let text = GOOD.to_string()
            + r#"
[notify.dingtalk_work_notice]
agent_id = 42
userids = ["boss"]
app_key = "notice-app"
app_secret = "${DT_SECRET}"
base_url = "http://127.0.0.1:7/"
"#;
        let notice = notify_of(&text).dingtalk_work_notice.expect("notice");
        assert_eq!(notice.app_key, "notice-app");
        assert_eq!(notice.app_secret.expose(), "dt-s3cr3t");
        assert_eq!(notice.base_url.as_str(), "http://127.0.0.1:7/");

        let text = GOOD.to_string()
            + "\n[notify.dingtalk_work_notice]\nagent_id = 42\nuserids = [\"boss\"]\napp_key = \"k\"\napp_secret = \"s\"\n";
        let notice = notify_of(&text).dingtalk_work_notice.expect("notice");
        assert_eq!(notice.base_url.as_str(), "https://oapi.dingtalk.com/");
    }

    /// Webhook URLs carry keys: plain `http://` only to a loopback host or with
    /// `allow_insecure_http = true` in `[notify]`; the URL is never echoed.
    #[test]
    fn plain_http_webhooks_need_loopback_or_an_allowance() {
        let table = |extra: &str| {
            GOOD.to_string()
                + &format!(
                    "\n[notify]\nwebhook = \"http://example.com/hook?key=leaky-key-42\"\n{extra}"
                )
        };
        let errors = parse(&table("")).expect_err("refused");
        let all = errors.join("\n");
        assert!(
            all.contains("jobs/j.toml:24:11: `notify.webhook`: `http://` would send credentials in clear text"),
            "{all}"
        );
        assert!(!all.contains("leaky-key-42"), "{all}");

        let n = notify_of(&table("allow_insecure_http = true"));
        assert_eq!(
            n.webhook.as_ref().map(Secret::expose),
            Some("http://example.com/hook?key=leaky-key-42")
        );

        let text = GOOD.to_string()
            + "\n[notify]\nwebhook = \"http://127.0.0.1:9/hook\"\nwecom_robot = \"http://[::1]:9/r\"\n";
        let n = notify_of(&text);
        assert!(n.webhook.is_some() && n.wecom_robot.is_some());
    }

    #[test]
    fn notify_errors_name_file_line_key_and_never_the_url() {
        let text = GOOD.to_string()
            + r#"
[notify]
on = "sometimes"
wecom_robot = "${NOT_A_URL}"
webhook = "ftp://ops.example.com/x"
dingtalk_robot_secret = "${DT_SIGN}"
colour = "red"

[notify.dingtalk_work_notice]
userids = []
agent = 1
"#;
        let errors = parse(&text).expect_err("invalid");
        let all = errors.join("\n");
        let expected = [
            "jobs/j.toml:24:6: `notify.on`: unknown value \"sometimes\"; allowed: \"failure\" or \"always\"",
            "jobs/j.toml:25:15: `notify.wecom_robot`: expected an http:// or https:// URL",
            "jobs/j.toml:26:11: `notify.webhook`: expected an http:// or https:// URL",
            "jobs/j.toml:27:25: `notify.dingtalk_robot_secret`: a signing secret needs `dingtalk_robot`",
            "jobs/j.toml:28:1: `notify.colour`: unknown key; allowed keys: \"on\"",
            "`notify.dingtalk_work_notice.agent_id`: required key is missing",
            "`notify.dingtalk_work_notice.userids`: 0 userids; allowed: 1 to 100",
            "jobs/j.toml:32:1: `notify.dingtalk_work_notice.agent`: unknown key; allowed keys: \"agent_id\"",
            "`notify.dingtalk_work_notice.app_key`: a WeCom job sends DingTalk work notices with a DingTalk app of its own",
        ];
        for e in expected {
            assert!(all.contains(e), "missing {e:?} in:\n{all}");
        }
        assert!(!all.contains("leaky-key-42"), "{all}");
        assert!(!all.contains("SECsign789"), "{all}");
    }

    #[test]
    fn notify_needs_a_target_and_complete_credentials() {
        let errors = parse(&(GOOD.to_string() + "\n[notify]\non = \"always\"\n"))
            .expect_err("invalid")
            .join("\n");
        assert!(
            errors.contains("`notify`: no alert target; set at least one of"),
            "{errors}"
        );

        let text = DINGTALK.to_string()
            + "\n[notify]\ndingtalk_robot = \"${DT_HOOK}\"\ndingtalk_robot_secret = \"${EMPTY}\"\n\n[notify.dingtalk_work_notice]\nagent_id = 0\nuserids = [\"a,b\"]\napp_key = \"k\"\n";
        let errors = parse(&text).expect_err("invalid").join("\n");
        for e in [
            "`notify.dingtalk_robot_secret`: is empty",
            "`notify.dingtalk_work_notice.agent_id`: 0 is out of range",
            "`notify.dingtalk_work_notice.userids`: a userid is not empty and has no comma",
            "`notify.dingtalk_work_notice.app_secret`: `app_key` needs `app_secret` too",
        ] {
            assert!(errors.contains(e), "missing {e:?} in:\n{errors}");
        }
    }

    #[test]
    fn language_and_repeat_after_are_read_and_checked_at_their_line() {
        let base = GOOD.to_string() + "\n[notify]\nwecom_robot = \"${WECOM_HOOK}\"\n";
        let n = notify_of(&(base.clone() + "language = \"en\"\nrepeat_after = \"6h\"\n"));
        assert_eq!(n.language, Language::En);
        assert_eq!(n.repeat_after, Some(Duration::from_secs(6 * 3600)));
        let n = notify_of(&(base.clone() + "repeat_after = \"never\"\n"));
        assert_eq!(n.repeat_after, None);

        let errors = parse(&(base + "language = \"fr\"\nrepeat_after = \"10s\"\n"))
            .expect_err("invalid")
            .join("\n");
        for e in [
            "jobs/j.toml:25:12: `notify.language`: unknown value \"fr\"; allowed: \"zh\" or \"en\"",
            "jobs/j.toml:26:16: `notify.repeat_after`: invalid repeat_after \"10s\"",
        ] {
            assert!(errors.contains(e), "missing {e:?} in:\n{errors}");
        }
    }
}
