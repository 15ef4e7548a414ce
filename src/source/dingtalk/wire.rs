//! What DingTalk answers look like on the wire, and how request bodies are
//! encoded: an answer classified by HTTP status and body, `errcode` and
//! `errmsg` read, loosely typed fields (numbers sent as text) read
//! (docs/vendors/dingtalk.md "Answers and errors").

use reqwest::StatusCode;
use serde_json::Value;

use crate::http::codes::dingtalk_code;
use crate::http::redirected;

/// How a request body is encoded (docs/vendors/dingtalk.md "Body encoding": JSON by
/// default; the official samples of some endpoints are form-encoded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Encoding {
    Json,
    Form,
}

impl Encoding {
    pub(super) fn other(self) -> Encoding {
        match self {
            Encoding::Json => Encoding::Form,
            Encoding::Form => Encoding::Json,
        }
    }
}

/// What an HTTP answer is, before its errcode is looked at.
#[derive(Debug, PartialEq)]
pub(super) enum Read {
    Body(Value),
    /// The IP-ban answer (non-JSON page or `{"status": 1111}`), described.
    Banned(String),
    Transient(String),
    Protocol(String),
}

/// Classifies an answer by HTTP status and body (docs/vendors/dingtalk.md "Answers and
/// errors"): a 5xx or 429 is transient; a redirect is not followed; a JSON body with
/// `status` 1111, or any other non-JSON body, is the IP ban — except a 404, which means
/// a wrong `base_url`.
pub(super) fn read_answer(status: StatusCode, bytes: &[u8]) -> Read {
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return Read::Transient(format!("HTTP {status}"));
    }
    if let Some(message) = redirected(status) {
        return Read::Protocol(message);
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(body @ Value::Object(_)) => {
            let ban = number(&body["status"]) == Some(dingtalk_code::IP_BANNED_STATUS)
                && body.get("errcode").is_none();
            if ban {
                Read::Banned(format!("HTTP {status}, body status 1111"))
            } else if !status.is_success() && body.get("errcode").is_none() {
                // A new-style error: a string `code`, or keep the text.
                let code = body["code"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| shorten(&String::from_utf8_lossy(bytes)));
                Read::Protocol(format!("HTTP {status}: {code}"))
            } else {
                Read::Body(body)
            }
        }
        _ if status == StatusCode::NOT_FOUND => Read::Protocol(format!(
            "HTTP {status}: no such endpoint; check `base_url` in the job's [source]"
        )),
        _ => Read::Banned(format!("HTTP {status}, a non-JSON answer")),
    }
}

fn shorten(text: &str) -> String {
    const MAX: usize = 200;
    if text.chars().count() > MAX {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut}…")
    } else {
        text.to_owned()
    }
}

/// `errcode` as a number; some answers carry it as a string. Absent = success.
pub(super) fn errcode(body: &Value) -> i64 {
    match &body["errcode"] {
        Value::Null => 0,
        other => number(other).unwrap_or(-1),
    }
}

/// A number sent as a number or as text.
pub(super) fn number(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub(super) fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::String(s) => s.trim().eq_ignore_ascii_case("true"),
        Value::Number(n) => n.as_i64().is_some_and(|n| n != 0),
        _ => false,
    }
}

pub(super) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `errmsg`, with the sub-code and sub-message of an errcode 88 answer under
/// either spelling (docs/vendors/dingtalk.md "Answers and errors").
pub(super) fn api_message(body: &Value) -> String {
    let mut message = text(&body["errmsg"]);
    let pick = |keys: [&str; 2]| keys.iter().map(|k| text(&body[*k])).find(|s| !s.is_empty());
    let sub_code = pick(["sub_code", "subCode"]);
    let sub_msg = pick(["sub_msg", "subMsg"]);
    if sub_code.is_some() || sub_msg.is_some() {
        message.push_str(&format!(
            "; sub-code {}: {}",
            sub_code.as_deref().unwrap_or("?"),
            sub_msg.as_deref().unwrap_or("")
        ));
    }
    message
}

/// `application/x-www-form-urlencoded` of a flat JSON object: text as is,
/// numbers and booleans as text, lists comma-separated, nulls left out.
pub(super) fn form_encode(body: &Value) -> String {
    let Some(fields) = body.as_object() else {
        return String::new();
    };
    fields
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| {
            let value = match v {
                Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
                other => text(other),
            };
            format!("{}={}", percent_encode(k), percent_encode(&value))
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'*' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_are_classified_by_status_and_body() {
        let ok = StatusCode::OK;
        assert!(matches!(
            read_answer(ok, br#"{"errcode":0}"#),
            Read::Body(_)
        ));
        assert!(matches!(
            read_answer(ok, br#"{"status":1111,"wait":5,"punish":"deny"}"#),
            Read::Banned(_)
        ));
        assert!(matches!(
            read_answer(ok, br#"{"status":"1111"}"#),
            Read::Banned(_)
        ));
        assert!(matches!(
            read_answer(ok, b"<html>denied</html>"),
            Read::Banned(_)
        ));
        assert!(matches!(
            read_answer(StatusCode::FORBIDDEN, b"<!DOCTYPE html>"),
            Read::Banned(_)
        ));
        assert!(matches!(
            read_answer(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>"),
            Read::Transient(_)
        ));
        assert!(matches!(
            read_answer(StatusCode::TOO_MANY_REQUESTS, b""),
            Read::Transient(_)
        ));
        // A redirect is not followed, and is no ban to wait out.
        assert!(matches!(
            read_answer(StatusCode::FOUND, b""),
            Read::Protocol(m) if m.starts_with("HTTP 302 Found: the server redirects elsewhere")
        ));
        assert_eq!(
            read_answer(StatusCode::NOT_FOUND, b"404 page not found"),
            Read::Protocol(
                "HTTP 404 Not Found: no such endpoint; check `base_url` in the job's [source]"
                    .into()
            )
        );
        assert_eq!(
            read_answer(
                StatusCode::BAD_REQUEST,
                br#"{"code":"invalidClientIdOrSecret","message":"x"}"#
            ),
            Read::Protocol("HTTP 400 Bad Request: invalidClientIdOrSecret".into())
        );
        // An errcode body is an answer even with `status` in it.
        assert!(matches!(
            read_answer(ok, br#"{"errcode":90018,"status":1111}"#),
            Read::Body(_)
        ));
    }

    #[test]
    fn sub_codes_under_either_spelling() {
        let a = json!({"errcode": 88, "errmsg": "ding talk error", "sub_code": "40078", "sub_msg": "x"});
        assert_eq!(api_message(&a), "ding talk error; sub-code 40078: x");
        let b =
            json!({"errcode": "88", "errmsg": "ding talk error", "subCode": 60011, "subMsg": "y"});
        assert_eq!(api_message(&b), "ding talk error; sub-code 60011: y");
        assert_eq!(errcode(&b), 88);
        assert_eq!(api_message(&json!({"errmsg": "plain"})), "plain");
    }

    #[test]
    fn form_encoding() {
        let body = json!({"userid": "a b", "leave_names": "年假,事假", "size": 100, "flag": true,
            "none": null, "list": [1, "x"]});
        assert_eq!(
            form_encode(&body),
            "userid=a+b&leave_names=%E5%B9%B4%E5%81%87%2C%E4%BA%8B%E5%81%87&size=100&flag=true&list=1%2Cx"
        );
        assert_eq!(form_encode(&json!({})), "");
    }
}
