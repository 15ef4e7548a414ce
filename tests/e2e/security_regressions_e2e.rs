//! Regressions found by attacking the issue-18 hardening: secret redaction that
//! misses the encoding attendsync itself sends, or leaks part of a secret, and
//! configuration errors that still print an interpolated `${VAR}` value.
//!
//! These call the library directly (the same functions the binary uses).

use attendsync::config::job::parse_job;
use attendsync::config::SourceFile;
use attendsync::http::{redact, Url};

/// A secret echoed back by a vendor exactly as attendsync sent it in the query.
/// reqwest's `.query()` (wecom `gettoken` `corpsecret`, dingtalk `appsecret`)
/// uses `application/x-www-form-urlencoded`: `~` becomes `%7E` and `*` stays
/// as it is. `http::redact` only tries forms where `~` is kept and `*` is
/// encoded, so the very bytes on the wire are not recognised.
#[test]
fn a_secret_echoed_as_sent_in_the_query_is_redacted() {
    let mut leaks = Vec::new();
    for secret in ["Wx~9fQ2kLmN0pR7s", "Wx*9fQ2k+LmN0pR7s/="] {
        let sent = Url::parse_with_params(
            "https://qyapi.weixin.qq.com/cgi-bin/gettoken",
            &[("corpid", "ww1"), ("corpsecret", secret)],
        )
        .unwrap();
        let query = sent.query().unwrap().to_string();
        let errmsg = format!("invalid credential, hint: [{query}]");
        let out = redact(&errmsg, &[secret]);
        if out.contains("9fQ2k") || out.contains("N0pR7s") {
            leaks.push(format!(
                "secret {secret:?} as sent ({query}) survived: {out}"
            ));
        }
    }
    assert!(leaks.is_empty(), "{}", leaks.join("\n"));
}

/// Two secrets where one is a prefix/substring of the other (say an app key and
/// an app secret that share a prefix, or a token that embeds the key): the
/// shorter one is replaced first and the rest of the longer one is then no longer
/// recognised, so its tail is printed.
#[test]
fn overlapping_secrets_leave_no_part_of_the_longer_one() {
    let key = "dingabcd1234";
    let secret = "dingabcd1234-SECRET-TAIL-5678";
    let out = redact(&format!("appsecret={secret} appkey={key}"), &[key, secret]);
    assert!(
        !out.contains("SECRET-TAIL-5678"),
        "tail of the longer secret leaked: {out}"
    );
}

const JOB: &str = r#"description = "test"
schedule = "0 30 2 * * *"
mapping = "wecom_monthly.toml"

[source]
type = "wecom"
corp_id = "${CORP}"
secret = "${SECRET}"
base_url = "https://qyapi.weixin.qq.com"

[source.limits]
"checkin/getcheckin_monthdata" = "600/min"

[source.retry]
throttle_wait = "50ms"

[target]
api_key = "${KEY}"
app_id = "app"
entry_id = "entry"
"#;

const PLANTED: &str = "pl4nted-S3CRET-value";

fn env(name: &str) -> Option<String> {
    match name {
        "CORP" => Some("ww123".into()),
        "SECRET" | "WRONG" => Some(PLANTED.into()),
        "KEY" => Some("k3y-long-enough".into()),
        _ => None,
    }
}

fn errors_of(text: &str) -> String {
    let file = SourceFile::new("jobs/j.toml", text);
    match parse_job("j", &file, &env) {
        Ok(_) => panic!("expected the job to be refused:\n{text}"),
        Err(errors) => errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

/// docs/SECURITY.md: "Configuration errors about non-secret keys … do not quote an
/// interpolated value either, so a key pointed at a secret variable by mistake
/// does not print it." `timezone` and `source.type` were fixed; these keys still
/// print the value of `${WRONG}`.
#[test]
fn config_errors_never_print_an_interpolated_value() {
    let cases = [
        (
            "schedule",
            JOB.replace("schedule = \"0 30 2 * * *\"", "schedule = \"${WRONG}\""),
        ),
        (
            "target.request_timeout",
            JOB.replace(
                "entry_id = \"entry\"",
                "entry_id = \"entry\"\nrequest_timeout = \"${WRONG}\"",
            ),
        ),
        (
            "source.limits rate",
            JOB.replace("= \"600/min\"", "= \"${WRONG}\""),
        ),
        (
            "source.retry.throttle_wait",
            JOB.replace("throttle_wait = \"50ms\"", "throttle_wait = \"${WRONG}\""),
        ),
        (
            "notify.repeat_after",
            format!(
                "{JOB}\n[notify]\nwebhook = \"https://ops.example.com/h\"\nrepeat_after = \"${{WRONG}}\"\n"
            ),
        ),
        (
            "source.userids listed twice",
            JOB.replace(
                "base_url = \"https://qyapi.weixin.qq.com\"",
                "base_url = \"https://qyapi.weixin.qq.com\"\nuserids = [\"${WRONG}\", \"${WRONG}\"]",
            ),
        ),
    ];
    let mut leaks = Vec::new();
    for (key, text) in &cases {
        let file = SourceFile::new("jobs/j.toml", text.as_str());
        let shown = match parse_job("j", &file, &env) {
            Ok(_) => continue, // accepted: nothing printed
            Err(errors) => errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        };
        if shown.contains(PLANTED) {
            leaks.push(format!("{key}: {shown}"));
        }
    }
    assert!(
        leaks.is_empty(),
        "config errors printed the value of ${{WRONG}}:\n{}",
        leaks.join("\n")
    );
    // The harness itself works: a fixed key names the variable.
    let tz = errors_of(&JOB.replace("mapping = ", "timezone = \"${WRONG}\"\nmapping = "));
    assert!(!tz.contains(PLANTED), "{tz}");
}
