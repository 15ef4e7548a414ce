//! A thin, error-collecting reader over `toml`'s spanned document tree.
//!
//! Job and mapping files are validated key by key so that `check` can report every
//! problem at once, each with its line and column. serde's derive stops at the first
//! error, so we walk `toml::de::DeTable` (which keeps spans) by hand instead.

use std::cell::RefCell;
use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

pub mod diag;

pub use diag::{one_of, ConfigError, ConfigErrors, SourceFile};

/// Looks up an environment variable; injected so tests need not touch the process env.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Parses TOML text, reporting every syntax error with its position.
pub fn parse<'i>(
    file: &SourceFile,
    text: &'i str,
    errors: &mut Vec<ConfigError>,
) -> Option<Spanned<DeTable<'i>>> {
    let (table, syntax) = DeTable::parse_recoverable(text);
    if syntax.is_empty() {
        return Some(table);
    }
    for e in syntax {
        let message = format!("invalid TOML: {}", e.message().trim());
        errors.push(file.error(e.span(), "", message));
    }
    None
}

/// A value with the byte range it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    pub value: T,
    pub span: Range<usize>,
}

/// One table of a document, read key by key. Keys that are read are remembered so
/// that `finish` can report the ones nobody asked for.
pub struct Table<'a, 'i> {
    file: &'a SourceFile,
    prefix: String,
    table: &'a DeTable<'i>,
    span: Range<usize>,
    env: Option<EnvLookup<'a>>,
    seen: RefCell<Vec<String>>,
}

impl<'a, 'i> Table<'a, 'i> {
    /// The root table of a file. With `env`, every string read goes through `${VAR}`
    /// interpolation.
    pub fn root(
        file: &'a SourceFile,
        table: &'a Spanned<DeTable<'i>>,
        env: Option<EnvLookup<'a>>,
    ) -> Self {
        Table {
            file,
            prefix: String::new(),
            table: table.get_ref(),
            span: table.span(),
            env,
            seen: RefCell::new(Vec::new()),
        }
    }

    pub fn file(&self) -> &'a SourceFile {
        self.file
    }

    pub fn span(&self) -> Range<usize> {
        self.span.clone()
    }

    /// The dotted path of `key` inside this table, as shown in messages.
    pub fn key_path(&self, key: &str) -> String {
        let key = if key.is_empty()
            || key
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        {
            key.to_string()
        } else {
            format!("\"{key}\"")
        };
        if self.prefix.is_empty() {
            key
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    pub fn error(&self, span: Range<usize>, key: &str, message: impl Into<String>) -> ConfigError {
        self.file.error(Some(span), self.key_path(key), message)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.table.keys().any(|k| k.get_ref() == key)
    }

    /// The raw value of `key`, marking it as known.
    pub fn get(&self, key: &str) -> Option<&'a Spanned<DeValue<'i>>> {
        self.seen.borrow_mut().push(key.to_string());
        self.table
            .iter()
            .find(|(k, _)| k.get_ref() == key)
            .map(|(_, v)| v)
    }

    /// All entries in file order, marking them as known: (key, key span, value).
    pub fn entries(&self) -> Vec<(String, Range<usize>, &'a Spanned<DeValue<'i>>)> {
        let mut out: Vec<_> = self
            .table
            .iter()
            .map(|(k, v)| (k.get_ref().to_string(), k.span(), v))
            .collect();
        out.sort_by_key(|(_, span, _)| span.start);
        self.seen
            .borrow_mut()
            .extend(out.iter().map(|(k, _, _)| k.clone()));
        out
    }

    fn type_error(&self, key: &str, value: &Spanned<DeValue<'i>>, wanted: &str) -> ConfigError {
        self.error(
            value.span(),
            key,
            format!("expected {wanted}, found {}", value.get_ref().type_str()),
        )
    }

    /// A string, interpolated when this table reads a job file.
    pub fn string(&self, key: &str, errors: &mut Vec<ConfigError>) -> Option<Located<String>> {
        let value = self.get(key)?;
        self.string_value(key, value, errors)
    }

    /// Converts an already fetched value to an (interpolated) string.
    pub fn string_value(
        &self,
        key: &str,
        value: &Spanned<DeValue<'i>>,
        errors: &mut Vec<ConfigError>,
    ) -> Option<Located<String>> {
        let Some(raw) = value.get_ref().as_str() else {
            errors.push(self.type_error(key, value, "a string"));
            return None;
        };
        let text = match self.env {
            Some(env) => match interpolate(raw, env) {
                Ok(text) => text,
                Err(var) => {
                    errors.push(self.error(
                        value.span(),
                        key,
                        format!("environment variable `{var}` is not set"),
                    ));
                    return None;
                }
            },
            None => raw.to_string(),
        };
        Some(Located {
            value: text,
            span: value.span(),
        })
    }

    /// A string that is required; a missing key is reported at the table.
    pub fn required_string(
        &self,
        key: &str,
        errors: &mut Vec<ConfigError>,
    ) -> Option<Located<String>> {
        if !self.contains(key) {
            errors.push(self.error(self.span(), key, "required key is missing"));
            return None;
        }
        self.string(key, errors)
    }

    /// A required string that may not be empty (credentials, ids) once `${VAR}`
    /// is replaced. An empty value is reported with the variables it came from,
    /// never with a value.
    pub fn required_nonempty(
        &self,
        key: &str,
        errors: &mut Vec<ConfigError>,
    ) -> Option<Located<String>> {
        let s = self.required_string(key, errors)?;
        self.nonempty(key, s, errors)
    }

    /// A required, non-empty secret that must come from `${VAR}`: one written
    /// into the file would be read by whoever reads the config. `example`
    /// names a variable for the error's hint.
    pub fn required_from_env(
        &self,
        key: &str,
        example: &str,
        errors: &mut Vec<ConfigError>,
    ) -> Option<Located<String>> {
        let value = self.required_nonempty(key, errors)?;
        let raw = self
            .get(key)
            .and_then(|v| v.get_ref().as_str())
            .unwrap_or_default();
        if variables(raw).is_empty() {
            let message =
                format!("must come from the environment, e.g. {key} = \"${{{example}}}\"");
            errors.push(self.error(value.span, key, message));
            return None;
        }
        Some(value)
    }

    /// `value` (read from `key`) unless it is empty or blank, then an error
    /// naming the variables in the key's text.
    pub fn nonempty(
        &self,
        key: &str,
        value: Located<String>,
        errors: &mut Vec<ConfigError>,
    ) -> Option<Located<String>> {
        if !value.value.trim().is_empty() {
            return Some(value);
        }
        let raw = self
            .get(key)
            .and_then(|v| v.get_ref().as_str())
            .unwrap_or_default();
        let vars: Vec<String> = variables(raw).iter().map(|v| format!("`{v}`")).collect();
        let message = match vars.len() {
            0 => "is empty".to_string(),
            1 => format!(
                "is empty: environment variable {} is set but empty",
                vars[0]
            ),
            _ => format!(
                "is empty: environment variables {} are set but empty",
                vars.join(", ")
            ),
        };
        errors.push(self.error(value.span, key, message));
        None
    }

    /// A string value as an error message may quote it: itself, or, when it
    /// came from `${VAR}` (which could be a secret put under the wrong key),
    /// only the variable's name.
    pub fn shown(&self, value: &Located<String>) -> String {
        let raw = self.file.text.get(value.span.clone()).unwrap_or("");
        if raw.contains("${") {
            format!(
                "the value of {}",
                raw.trim_matches(|c| c == '"' || c == '\'')
            )
        } else {
            format!("\"{}\"", value.value)
        }
    }

    /// A string that must be one of `allowed`.
    pub fn choice(
        &self,
        key: &str,
        allowed: &[&str],
        errors: &mut Vec<ConfigError>,
    ) -> Option<Located<String>> {
        let s = self.string(key, errors)?;
        if allowed.contains(&s.value.as_str()) {
            Some(s)
        } else {
            errors.push(self.error(
                s.span.clone(),
                key,
                format!(
                    "unknown value {}; allowed: {}",
                    self.shown(&s),
                    one_of(allowed)
                ),
            ));
            None
        }
    }

    pub fn integer(&self, key: &str, errors: &mut Vec<ConfigError>) -> Option<Located<i64>> {
        let value = self.get(key)?;
        let parsed = value
            .get_ref()
            .as_integer()
            .and_then(|i| i64::from_str_radix(i.as_str(), i.radix()).ok());
        match parsed {
            Some(n) => Some(Located {
                value: n,
                span: value.span(),
            }),
            None => {
                errors.push(self.type_error(key, value, "an integer"));
                None
            }
        }
    }

    pub fn bool(&self, key: &str, errors: &mut Vec<ConfigError>) -> Option<bool> {
        let value = self.get(key)?;
        let b = value.get_ref().as_bool();
        if b.is_none() {
            errors.push(self.type_error(key, value, "true or false"));
        }
        b
    }

    /// An array whose every element is a string.
    pub fn string_array(
        &self,
        key: &str,
        errors: &mut Vec<ConfigError>,
    ) -> Option<Vec<Located<String>>> {
        let value = self.get(key)?;
        let Some(items) = value.get_ref().as_array() else {
            errors.push(self.type_error(key, value, "an array of strings"));
            return None;
        };
        let mut out = Vec::new();
        for item in items.iter() {
            out.push(self.string_value(key, item, errors)?);
        }
        Some(out)
    }

    /// An array whose every element is an integer (e.g. department ids).
    pub fn integer_array(
        &self,
        key: &str,
        errors: &mut Vec<ConfigError>,
    ) -> Option<Vec<Located<i64>>> {
        let value = self.get(key)?;
        let Some(items) = value.get_ref().as_array() else {
            errors.push(self.type_error(key, value, "an array of integers"));
            return None;
        };
        let mut out = Vec::new();
        for item in items.iter() {
            let n = item
                .get_ref()
                .as_integer()
                .and_then(|i| i64::from_str_radix(i.as_str(), i.radix()).ok());
            match n {
                Some(n) => out.push(Located {
                    value: n,
                    span: item.span(),
                }),
                None => {
                    errors.push(self.type_error(key, item, "an integer"));
                    return None;
                }
            }
        }
        Some(out)
    }

    /// A sub-table (`[source]`, `[fields]`, or an inline table).
    pub fn table(&self, key: &str, errors: &mut Vec<ConfigError>) -> Option<Table<'a, 'i>> {
        let value = self.get(key)?;
        self.table_value(key, value, errors)
    }

    /// Views an already fetched value as a sub-table.
    pub fn table_value(
        &self,
        key: &str,
        value: &'a Spanned<DeValue<'i>>,
        errors: &mut Vec<ConfigError>,
    ) -> Option<Table<'a, 'i>> {
        let Some(table) = value.get_ref().as_table() else {
            errors.push(self.type_error(key, value, "a table"));
            return None;
        };
        Some(Table {
            file: self.file,
            prefix: self.key_path(key),
            table,
            span: value.span(),
            env: self.env,
            seen: RefCell::new(Vec::new()),
        })
    }

    /// Reports every key of this table that was never read, listing the allowed ones.
    pub fn finish(&self, allowed: &[&str], errors: &mut Vec<ConfigError>) {
        let seen = self.seen.borrow();
        for (k, _) in self.table.iter() {
            let name = k.get_ref();
            if !seen.iter().any(|s| s == name.as_ref()) {
                errors.push(self.error(
                    k.span(),
                    name,
                    format!("unknown key; allowed keys: {}", one_of(allowed)),
                ));
            }
        }
    }
}

/// The names of the `${VAR}`s in `text`, in order.
pub fn variables(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            break;
        };
        out.push(&after[..end]);
        rest = &after[end + 1..];
    }
    out
}

/// Replaces every `${VAR}` with the variable's value. Returns the first variable
/// that is not set. `$` not followed by `{` is kept as is.
pub fn interpolate(text: &str, env: EnvLookup<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = &after[..end];
        match env(name) {
            Some(value) => out.push_str(&value),
            None => return Err(name.to_string()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "HOME_DIR").then(|| "/home/hr".to_string())
    }

    #[test]
    fn interpolates_known_variables_and_names_missing_ones() {
        assert_eq!(
            interpolate("${HOME_DIR}/x", &env).as_deref(),
            Ok("/home/hr/x")
        );
        assert_eq!(interpolate("cost $5", &env).as_deref(), Ok("cost $5"));
        assert_eq!(interpolate("${NOPE}", &env), Err("NOPE".to_string()));
    }

    #[test]
    fn reports_unknown_keys_and_type_errors_with_positions() {
        let file = SourceFile::new("jobs/j.toml", "a = 1\n[source]\ntype = 3\nextra = \"x\"\n");
        let mut errors = Vec::new();
        let doc = parse(&file, &file.text, &mut errors).expect("valid toml");
        let root = Table::root(&file, &doc, Some(&env));
        let _ = root.integer("a", &mut errors);
        let source = root.table("source", &mut errors).expect("table");
        assert!(source.string("type", &mut errors).is_none());
        source.finish(&["type"], &mut errors);
        root.finish(&["a", "source"], &mut errors);
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            text,
            vec![
                "jobs/j.toml:3:8: `source.type`: expected a string, found integer",
                "jobs/j.toml:4:1: `source.extra`: unknown key; allowed keys: \"type\"",
            ]
        );
    }

    #[test]
    fn an_empty_value_names_its_variables_never_a_value() {
        let env = |name: &str| match name {
            "EMPTY" => Some(String::new()),
            "BLANK" => Some("  ".to_string()),
            _ => None,
        };
        let file = SourceFile::new(
            "jobs/j.toml",
            "a = \"${EMPTY}\"\nb = \"${EMPTY}${BLANK}\"\nc = \"\"\n",
        );
        let mut errors = Vec::new();
        let doc = parse(&file, &file.text, &mut errors).expect("valid toml");
        let root = Table::root(&file, &doc, Some(&env));
        for key in ["a", "b", "c"] {
            assert!(root.required_nonempty(key, &mut errors).is_none());
        }
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            text,
            vec![
                "jobs/j.toml:1:5: `a`: is empty: environment variable `EMPTY` is set but empty",
                "jobs/j.toml:2:5: `b`: is empty: environment variables `EMPTY`, `BLANK` are set but empty",
                "jobs/j.toml:3:5: `c`: is empty",
            ]
        );
    }

    #[test]
    fn syntax_errors_are_located() {
        let file = SourceFile::new("m.toml", "a = 1\nb = = 2\n");
        let mut errors = Vec::new();
        assert!(parse(&file, &file.text, &mut errors).is_none());
        assert_eq!(errors[0].line, 2);
        assert!(errors[0].message.starts_with("invalid TOML"));
    }
}
