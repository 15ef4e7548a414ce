//! Paths into a source record: `base_info.acctid`, `a["x.y"]`, `datas[0]`,
//! `exception_infos[exception=1].count`, `sp_items[name=年假].duration`.
//!
//! Grammar (whitespace is only allowed inside brackets, around the parts):
//!
//! ```text
//! path     = first { "." key | bracket }
//! first    = key | bracket
//! key      = bare | quoted
//! bracket  = "[" ( index | quoted | selector ) "]"
//! index    = digit { digit }
//! selector = ( bare | quoted ) "=" ( quoted | text up to "]" )
//! bare     = one or more characters other than . [ ] " = and whitespace-at-the-ends
//! quoted   = '"' { any character but " and \ | \" | \\ } '"'
//! ```
//!
//! Evaluation never fails: a step that does not fit the data (a key on a number, an
//! index past the end, a selector that matches nothing) makes the whole path
//! missing, which the rule then treats like `null` (→ `default`).

use std::fmt;
use std::ops::Range;

use rust_decimal::Decimal;
use serde_json::{Number, Value};

use super::value::{decimal_of_number, number_text, parse_decimal};

/// A JSON document a path can walk: serde_json's `Value`, or a record read in
/// place ([`super::Node`]).
pub trait Tree: Sized {
    /// The member `key` of an object (the last one, if the key repeats).
    fn member(&self, key: &str) -> Option<&Self>;
    /// The elements of an array.
    fn items(&self) -> Option<&[Self]>;
    fn scalar(&self) -> Scalar<'_>;
    /// This part of the document as a `Value` (what a rule reads).
    fn to_value(&self) -> Value;
}

/// A scalar, as a selector compares it.
pub enum Scalar<'a> {
    Text(&'a str),
    Bool(bool),
    Num(&'a Number),
    /// Null, an array or an object: matches no selector.
    Other,
}

impl Tree for Value {
    fn member(&self, key: &str) -> Option<&Value> {
        self.as_object()?.get(key)
    }

    fn items(&self) -> Option<&[Value]> {
        self.as_array().map(Vec::as_slice)
    }

    fn scalar(&self) -> Scalar<'_> {
        match self {
            Value::String(s) => Scalar::Text(s),
            Value::Bool(b) => Scalar::Bool(*b),
            Value::Number(n) => Scalar::Num(n),
            _ => Scalar::Other,
        }
    }

    fn to_value(&self) -> Value {
        self.clone()
    }
}

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// An object member.
    Key(String),
    /// An array element, 0-based.
    Index(usize),
    /// The first array element that is an object whose `field`, read as text,
    /// equals `value`; `number` is `value` as a number, when it is one.
    Select {
        field: String,
        value: String,
        number: Option<Decimal>,
    },
}

/// A parsed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    steps: Vec<Step>,
    /// Per step, its bytes in the path text: a key without its leading `.`, a
    /// bracket from `[` to `]`.
    spans: Vec<Range<usize>>,
}

/// Why a path does not parse, and where: `offset` is a byte offset into the path text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Path {
    pub fn parse(text: &str) -> Result<Path, PathError> {
        Parser { text, pos: 0 }.path()
    }

    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Where each step is in the path text (bytes).
    pub fn spans(&self) -> &[Range<usize>] {
        &self.spans
    }

    /// The value at this path, or `None` when any step does not find one.
    pub fn get<'v, T: Tree>(&self, record: &'v T) -> Option<&'v T> {
        let mut current = record;
        for step in &self.steps {
            current = match step {
                Step::Key(k) => current.member(k)?,
                Step::Index(i) => current.items()?.get(*i)?,
                Step::Select {
                    field,
                    value,
                    number,
                } => current.items()?.iter().find(|e| {
                    e.member(field)
                        .is_some_and(|v| selects(v.scalar(), value, *number))
                })?,
            };
        }
        Some(current)
    }
}

/// Does `candidate` (an element's field) match the selector text? Compared as
/// text, and numbers also by value so that `[exception=1]` matches `1` and `1.0`.
fn selects(candidate: Scalar<'_>, wanted: &str, wanted_number: Option<Decimal>) -> bool {
    match candidate {
        Scalar::Text(s) => s == wanted,
        Scalar::Bool(b) => wanted == if b { "true" } else { "false" },
        // Two numbers are equal as decimals exactly when their texts are, so the
        // text is only needed for numbers beyond a decimal's range.
        Scalar::Num(n) => match (decimal_of_number(n), wanted_number) {
            (Some(a), Some(b)) => a == b,
            _ => number_text(n) == wanted,
        },
        Scalar::Other => false,
    }
}

struct Parser<'t> {
    text: &'t str,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn err<T>(&self, offset: usize, message: impl Into<String>) -> Result<T, PathError> {
        Err(PathError {
            offset,
            message: message.into(),
        })
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    fn path(mut self) -> Result<Path, PathError> {
        if self.text.is_empty() {
            return self.err(0, "the path is empty");
        }
        let (mut steps, mut spans) = (Vec::new(), Vec::new());
        match self.peek() {
            Some('[') => steps.push(self.bracket()?),
            _ => steps.push(Step::Key(self.key()?)),
        }
        spans.push(0..self.pos);
        while let Some(c) = self.peek() {
            let start = self.pos;
            match c {
                '.' => {
                    self.bump();
                    steps.push(Step::Key(self.key()?));
                    spans.push(start + 1..self.pos);
                }
                '[' => {
                    steps.push(self.bracket()?);
                    spans.push(start..self.pos);
                }
                _ => return self.err(self.pos, format!("expected \".\" or \"[\", found {c:?}")),
            }
        }
        Ok(Path { steps, spans })
    }

    /// A key after `.` or at the start: bare or quoted.
    fn key(&mut self) -> Result<String, PathError> {
        match self.peek() {
            Some('"') => self.quoted(),
            None => self.err(self.pos, "expected a key at the end of the path"),
            Some(c @ ('.' | '[' | ']' | '=')) => {
                self.err(self.pos, format!("expected a key, found {c:?}"))
            }
            Some(_) => self.bare(&['.', '[', ']', '"', '='], "key", false),
        }
    }

    /// Characters up to one of `stops`. Whitespace at either end is an error, except
    /// at the end inside brackets (`[ name = x ]`), where it is skipped.
    fn bare(&mut self, stops: &[char], what: &str, in_brackets: bool) -> Result<String, PathError> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if stops.contains(&c) {
                break;
            }
            self.bump();
        }
        let mut word = &self.text[start..self.pos];
        if in_brackets {
            word = word.trim_end();
        }
        if word.is_empty() {
            return self.err(start, format!("expected a {what}"));
        }
        if word.starts_with(char::is_whitespace) || word.ends_with(char::is_whitespace) {
            return self.err(
                start,
                format!(
                    "whitespace around the {what} {word:?}; quote it if it belongs to the name"
                ),
            );
        }
        if let Some(c) = self
            .peek()
            .filter(|c| *c == '"' || (*c == '=' && !in_brackets))
        {
            return self.err(self.pos, format!("unexpected {c:?} in a {what}"));
        }
        Ok(word.to_string())
    }

    /// A `"…"` string with `\"` and `\\` escapes.
    fn quoted(&mut self) -> Result<String, PathError> {
        let open = self.pos;
        self.bump();
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return self.err(open, "unterminated quoted key: missing closing '\"'"),
                Some('"') => return Ok(out),
                Some('\\') => {
                    let at = self.pos;
                    match self.bump() {
                        Some(c @ ('"' | '\\')) => out.push(c),
                        _ => {
                            return self.err(
                                at - 1,
                                "unknown escape in a quoted key; only \\\" and \\\\ are allowed",
                            )
                        }
                    }
                }
                Some(c) => out.push(c),
            }
        }
    }

    /// `[N]`, `["key"]` or `[field=value]`.
    fn bracket(&mut self) -> Result<Step, PathError> {
        let open = self.pos;
        self.bump();
        self.skip_spaces();
        let step = match self.peek() {
            None => return self.err(open, "unclosed \"[\""),
            Some(']') => {
                return self.err(
                    self.pos,
                    "empty brackets: expected an index, a quoted key or field=value",
                )
            }
            Some('"') => {
                let key = self.quoted()?;
                self.skip_spaces();
                if self.peek() == Some('=') {
                    self.selector_value(key)?
                } else {
                    Step::Key(key)
                }
            }
            Some(c) if c.is_ascii_digit() => {
                let start = self.pos;
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.bump();
                }
                self.skip_spaces();
                if self.peek() == Some('=') {
                    // A field whose name is digits: `[0=x]`.
                    let field = self.text[start..self.pos].trim_end().to_string();
                    self.selector_value(field)?
                } else {
                    match self.text[start..self.pos].trim_end().parse::<usize>() {
                        Ok(i) => Step::Index(i),
                        Err(_) => return self.err(start, "index is too large"),
                    }
                }
            }
            Some('-') => {
                return self.err(self.pos, "negative indexes are not supported");
            }
            Some(_) => {
                let start = self.pos;
                let field = self.bare(&['=', ']', '[', '"'], "field name", true)?;
                if field.contains('.') {
                    return self.err(
                        start,
                        format!(
                            "a selector's field is one key, not a path; quote it (\"{field}\") if the dot is part of the name"
                        ),
                    );
                }
                if self.peek() != Some('=') {
                    return self.err(
                        start,
                        format!(
                            "expected an index, a quoted key or field=value, found {field:?}; write [\"{field}\"] for a key"
                        ),
                    );
                }
                self.selector_value(field)?
            }
        };
        self.skip_spaces();
        match self.peek() {
            Some(']') => {
                self.bump();
                Ok(step)
            }
            None => self.err(open, "unclosed \"[\""),
            Some(c) => self.err(self.pos, format!("expected \"]\", found {c:?}")),
        }
    }

    /// After `field`, at `=`: the value, quoted or raw up to `]` (trimmed).
    fn selector_value(&mut self, field: String) -> Result<Step, PathError> {
        self.bump(); // '='
        self.skip_spaces();
        let value = if self.peek() == Some('"') {
            self.quoted()?
        } else {
            let start = self.pos;
            while self.peek().is_some_and(|c| c != ']') {
                self.bump();
            }
            let raw = self.text[start..self.pos].trim_end();
            if raw.is_empty() {
                return self.err(
                    start,
                    "expected a value after \"=\" (write \"\" for an empty text)",
                );
            }
            if raw.contains('[') || raw.contains('"') {
                return self.err(start, "quote a selector value that contains '[' or '\"'");
            }
            raw.to_string()
        };
        let number = parse_decimal(&value);
        Ok(Step::Select {
            field,
            value,
            number,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn steps(text: &str) -> Vec<Step> {
        Path::parse(text)
            .unwrap_or_else(|e| panic!("{text}: {e:?}"))
            .steps
    }

    fn key(k: &str) -> Step {
        Step::Key(k.to_string())
    }

    fn sel(f: &str, v: &str) -> Step {
        Step::Select {
            field: f.to_string(),
            value: v.to_string(),
            number: parse_decimal(v),
        }
    }

    fn error(text: &str) -> (usize, String) {
        let e = Path::parse(text).expect_err(text);
        (e.offset, e.message)
    }

    #[test]
    fn parses_dotted_unicode_quoted_index_and_select() {
        assert_eq!(
            steps("base_info.acctid"),
            vec![key("base_info"), key("acctid")]
        );
        assert_eq!(
            steps("columns.出勤天数"),
            vec![key("columns"), key("出勤天数")]
        );
        assert_eq!(steps("a[\"x.y\"].z"), vec![key("a"), key("x.y"), key("z")]);
        assert_eq!(steps("a.\"x.y\""), vec![key("a"), key("x.y")]);
        assert_eq!(steps("[\"a b\"]"), vec![key("a b")]);
        assert_eq!(
            steps("datas[0][12]"),
            vec![key("datas"), Step::Index(0), Step::Index(12)]
        );
        assert_eq!(
            steps("exception_infos[exception=1].count"),
            vec![key("exception_infos"), sel("exception", "1"), key("count")]
        );
        assert_eq!(
            steps("sp_items[name=年假].duration"),
            vec![key("sp_items"), sel("name", "年假"), key("duration")]
        );
        assert_eq!(
            steps("x[ name = 年 假 ]"),
            vec![key("x"), sel("name", "年 假")]
        );
        assert_eq!(steps("x[\"a.b\"=\"c]\"]"), vec![key("x"), sel("a.b", "c]")]);
        assert_eq!(steps("x[k=a=b]"), vec![key("x"), sel("k", "a=b")]);
        assert_eq!(steps("x[k=\"\"]"), vec![key("x"), sel("k", "")]);
        assert_eq!(steps("x[\"q\\\"\\\\\"]"), vec![key("x"), key("q\"\\")]);
        assert_eq!(steps("x[0=a]"), vec![key("x"), sel("0", "a")]);
        assert_eq!(steps("a-b.c_d.$x"), vec![key("a-b"), key("c_d"), key("$x")]);
        assert_eq!(
            steps("columns.Overtime hours"),
            vec![key("columns"), key("Overtime hours")]
        );
    }

    #[test]
    fn errors_carry_the_offset_of_the_problem() {
        assert_eq!(error("").0, 0);
        assert_eq!(error("a..b"), (2, "expected a key, found '.'".to_string()));
        assert_eq!(
            error("a."),
            (2, "expected a key at the end of the path".to_string())
        );
        assert_eq!(error(".a").0, 0);
        assert_eq!(error("a[0"), (1, "unclosed \"[\"".to_string()));
        assert_eq!(error("a[]").0, 2);
        assert_eq!(error("a[x]").0, 2);
        assert!(error("a[x]").1.contains("[\"x\"]"));
        assert_eq!(error("a[-1]").0, 2);
        assert_eq!(
            error("a[1 2]"),
            (4, "expected \"]\", found '2'".to_string())
        );
        assert_eq!(error("a[k=]").0, 4);
        assert_eq!(error("a[\"x").0, 2);
        assert_eq!(error("a[\"x\\n\"]").0, 4);
        assert_eq!(
            error("a]b"),
            (1, "expected \".\" or \"[\", found ']'".to_string())
        );
        assert_eq!(error(" a").0, 0);
        assert_eq!(error("a .b").0, 0);
        assert_eq!(error("a\"b\"").0, 1);
        assert_eq!(error("a[b.c=1]").0, 2);
        assert_eq!(error("a[99999999999999999999999]").0, 2);
        // Offsets are bytes: after a multi-byte key.
        assert_eq!(error("年假..x").0, 7);
    }

    #[test]
    fn evaluates_against_records() {
        let rec = json!({
            "base_info": { "acctid": "ZhangSan", "x.y": 5 },
            "exception_infos": [
                { "exception": 1, "count": 1 },
                { "exception": "4", "count": 2 },
                { "exception": 3.0, "count": 7 }
            ],
            "sp_items": [ { "name": "年假", "duration": 86400 }, "junk", null ],
            "flags": [ { "on": true, "n": 1 } ]
        });
        let get = |p: &str| Path::parse(p).expect(p).get(&rec).cloned();
        assert_eq!(get("base_info.acctid"), Some(json!("ZhangSan")));
        assert_eq!(get("base_info[\"x.y\"]"), Some(json!(5)));
        assert_eq!(get("exception_infos[exception=1].count"), Some(json!(1)));
        assert_eq!(get("exception_infos[exception=4].count"), Some(json!(2)));
        assert_eq!(get("exception_infos[exception=3].count"), Some(json!(7)));
        assert_eq!(get("exception_infos[exception=1.0].count"), Some(json!(1)));
        assert_eq!(get("exception_infos[exception=2].count"), None);
        assert_eq!(get("exception_infos[1].count"), Some(json!(2)));
        assert_eq!(get("exception_infos[9].count"), None);
        assert_eq!(get("sp_items[name=年假].duration"), Some(json!(86400)));
        assert_eq!(get("flags[on=true].n"), Some(json!(1)));
        // Steps that do not fit the data make the path missing.
        assert_eq!(get("base_info.acctid.x"), None);
        assert_eq!(get("base_info[0]"), None);
        assert_eq!(get("base_info[a=b]"), None);
        assert_eq!(get("nope.deeper"), None);
        assert_eq!(Path::parse("a").expect("a").get(&json!(3)), None);
    }
}
