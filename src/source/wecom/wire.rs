//! WeCom answers: read into types naming only the fields attendsync uses; a
//! `getcheckin_monthdata` answer only up to its `errcode`, its text kept.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use crate::http::call::Decoded;

/// Reads one answer. A successful answer is read straight into `T`, which names
/// only the fields attendsync uses (the rest is skipped, not built): one pass
/// over the answer when it has the expected shape; an answer that does not is
/// read again for its errcode alone.
pub(super) fn read_answer<T: Answer>(
    status: reqwest::StatusCode,
    bytes: &mut Vec<u8>,
) -> Decoded<T> {
    match T::read(bytes) {
        Ok(body) => match errcode(body.errcode()) {
            0 => Decoded::Done(body),
            code => Decoded::Code {
                code,
                message: body.errmsg().unwrap_or("").to_string(),
            },
        },
        Err(shape) => match serde_json::from_slice::<Outcome>(bytes) {
            Ok(o) if errcode(&o.errcode) != 0 => Decoded::Code {
                code: errcode(&o.errcode),
                message: o.errmsg.unwrap_or_default(),
            },
            // serde quotes the offending value: the wrapper redacts it like any vendor text.
            Ok(_) => Decoded::Protocol(format!(
                "the answer does not have the documented shape: {shape}"
            )),
            Err(e) => Decoded::Transient(format!(
                "HTTP {status}, the answer is not a JSON object: {e}"
            )),
        },
    }
}

/// An answer read into a type: says itself whether the call worked.
pub(super) trait Answer: Sized {
    fn errcode(&self) -> &Value;
    fn errmsg(&self) -> Option<&str>;

    /// Reads an answer's text; may take it (`bytes` is left as it was on an error).
    fn read(bytes: &mut Vec<u8>) -> Result<Self, serde_json::Error>;
}

impl Answer for Value {
    fn errcode(&self) -> &Value {
        &self["errcode"]
    }

    fn errmsg(&self) -> Option<&str> {
        self["errmsg"].as_str()
    }

    fn read(bytes: &mut Vec<u8>) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// Typed answers carry `errcode` and `errmsg` next to their own fields, each
/// optional (absent or `null`: none).
macro_rules! answer {
    ($(#[$doc:meta])* struct $name:ident { $($field:ident: $ty:ty,)* }) => {
        $(#[$doc])*
        #[derive(Deserialize)]
        pub(super) struct $name {
            #[serde(default)]
            errcode: Value,
            #[serde(default)]
            errmsg: Option<String>,
            $(#[serde(default)] pub(super) $field: $ty,)*
        }

        impl Answer for $name {
            fn errcode(&self) -> &Value {
                &self.errcode
            }

            fn errmsg(&self) -> Option<&str> {
                self.errmsg.as_deref()
            }

            fn read(bytes: &mut Vec<u8>) -> Result<Self, serde_json::Error> {
                serde_json::from_slice(bytes)
            }
        }
    };
}

answer! {
    /// The part of every answer that says whether the call worked (read alone when
    /// the rest does not fit the expected type).
    struct Outcome {}
}

answer! {
    /// `user/simplelist`: only the userids are used.
    struct UserList {
        userlist: Option<Vec<ListedUser>>,
    }
}

#[derive(Deserialize)]
pub(super) struct ListedUser {
    #[serde(default)]
    pub(super) userid: Option<String>,
}

/// `getcheckin_monthdata`: whether it worked, and the answer's text, whose
/// reports are read once, where they are mapped (`reports.rs`).
pub(super) struct MonthAnswer {
    errcode: Value,
    errmsg: Option<String>,
    pub(super) text: Vec<u8>,
}

impl Answer for MonthAnswer {
    fn errcode(&self) -> &Value {
        &self.errcode
    }

    fn errmsg(&self) -> Option<&str> {
        self.errmsg.as_deref()
    }

    /// Reads the answer up to its `errcode` (WeCom sends it first) and keeps the
    /// text. serde_json reports the unread rest as an error, which is ignored here:
    /// the rest is read where the reports are mapped, and an answer that is not
    /// JSON at all fails this first step.
    fn read(bytes: &mut Vec<u8>) -> Result<Self, serde_json::Error> {
        let (mut errcode, mut errmsg) = (Value::Null, None);
        let mut reader = serde_json::Deserializer::from_slice(bytes);
        let head = Head {
            errcode: &mut errcode,
            errmsg: &mut errmsg,
        };
        match serde::Deserializer::deserialize_map(&mut reader, head) {
            Err(e) if errcode.is_null() => Err(e),
            _ => Ok(MonthAnswer {
                errcode,
                errmsg,
                text: std::mem::take(bytes),
            }),
        }
    }
}

/// Reads an answer's `errcode` and `errmsg`, stopping once it knows the call
/// worked (`errcode` 0) and skipping anything that comes before.
struct Head<'h> {
    errcode: &'h mut Value,
    errmsg: &'h mut Option<String>,
}

impl<'de> serde::de::Visitor<'de> for Head<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an answer object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match key.as_ref() {
                "errcode" => {
                    *self.errcode = map.next_value()?;
                    if errcode(self.errcode) == 0 {
                        return Ok(());
                    }
                }
                "errmsg" => *self.errmsg = map.next_value()?,
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// `errcode` as a number; some answers carry it as a string; absent means 0.
fn errcode(errcode: &Value) -> i64 {
    match errcode {
        Value::Number(n) => n.as_i64().unwrap_or(-1),
        Value::String(s) => s.trim().parse().unwrap_or(-1),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_read_up_to_its_errcode() {
        let mut ok =
            br#"{"errcode":0,"errmsg":"ok","datas":[{"base_info":{"acctid":"u1"}}]}"#.to_vec();
        let answer = MonthAnswer::read(&mut ok).expect("read");
        assert_eq!(errcode(answer.errcode()), 0);
        assert!(ok.is_empty(), "the text is kept with the answer");
        // errcode after the reports, and an error with its message after it.
        let mut late = br#"{"datas":[1,2],"errmsg":"no such user","errcode":301002}"#.to_vec();
        let answer = MonthAnswer::read(&mut late).expect("read");
        assert_eq!(errcode(answer.errcode()), 301002);
        assert_eq!(answer.errmsg(), Some("no such user"));
        let mut late =
            br#"{"errcode":"60020","errmsg":"not allow to access from your ip"}"#.to_vec();
        let answer = MonthAnswer::read(&mut late).expect("read");
        assert_eq!(errcode(answer.errcode()), 60020);
        assert_eq!(answer.errmsg(), Some("not allow to access from your ip"));
        // Not JSON: an error, and the text stays for the caller's second look.
        let mut html = b"<html>gateway</html>".to_vec();
        assert!(MonthAnswer::read(&mut html).is_err());
        assert_eq!(html, b"<html>gateway</html>");
    }
}
