//! Text from outside (vendor `errmsg`/`msg`, lease owners read from SQLite,
//! employee-provided strings) made safe to print on one line of a log, a
//! terminal or a crontab-fed file.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether a character must not reach a log line or terminal as it is: C0 and C1
/// controls (newline, carriage return, ESC …), DEL, the Unicode line and
/// paragraph separators and the bidirectional overrides that reorder what a
/// reader sees.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}')
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// `text` with every unsafe character escaped (`\n`, `\r`, `\t`, otherwise
/// `\u{1b}` style); everything else, CJK included, is kept. Borrowed when nothing
/// needed escaping.
pub fn clean(text: &str) -> Cow<'_, str> {
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if unsafe_char(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_cjk_kept() {
        assert!(matches!(clean("参数错误 ok"), Cow::Borrowed(_)));
        assert_eq!(
            clean("bad\n* * * * * root sh\r\x1b[2J"),
            "bad\\n* * * * * root sh\\r\\u{1b}[2J"
        );
        assert_eq!(
            clean("a\u{85}b\u{2028}c\u{2029}d\u{7f}"),
            "a\\u{85}b\\u{2028}c\\u{2029}d\\u{7f}"
        );
        assert_eq!(clean("无效\u{202e}的USERID\t"), "无效\\u{202e}的USERID\\t");
        assert!(!clean("\x00\x07\x1b\u{9b}").chars().any(|c| c.is_control()));
    }
}
