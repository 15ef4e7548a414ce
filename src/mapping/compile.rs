//! Mapping file → [`Mapping`]: parse, validate every rule, report every problem.

use std::ops::Range;

use serde_json::{Number, Value};
use toml::de::DeValue;
use toml::Spanned;

use super::path::Path;
use super::value::{Convert, Val};
use super::{Input, Mapping, Rule, Site, ValueType, Var};
use crate::toml_reader::one_of;
use crate::toml_reader::{self as reader, Located, Table};
use crate::toml_reader::{ConfigError, SourceFile};

const ROOT_KEYS: &[&str] = &["key", "fields", "description"];
const RULE_KEYS: &[&str] = &["from", "default", "convert", "sep", "map", "round", "type"];

/// The most decimal places a decimal number can hold.
const MAX_ROUND: i64 = 28;

pub(super) fn compile(file: &SourceFile) -> Result<Mapping, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let Some(doc) = reader::parse(file, &file.text, &mut errors) else {
        return Err(errors);
    };
    let root = Table::root(file, &doc, None);
    let _ = root.string("description", &mut errors);

    // Every name under [fields], compiled or not, so that a broken rule does not
    // also produce "key field is not in [fields]".
    let mut names: Vec<String> = Vec::new();
    let mut rules: Vec<Rule> = Vec::new();
    let mut fields_read = false;
    if !root.contains("fields") {
        errors.push(root.error(root.span(), "fields", "required table [fields] is missing"));
    } else if let Some(fields) = root.table("fields", &mut errors) {
        let entries = fields.entries();
        fields_read = !entries.is_empty();
        if entries.is_empty() {
            errors.push(root.error(
                fields.span(),
                "fields",
                "[fields] is empty; map at least the key fields",
            ));
        }
        for (name, name_span, value) in entries {
            names.push(name.clone());
            if name.trim().is_empty() {
                errors.push(file.error(
                    Some(name_span),
                    format!("{}.\"{name}\"", root.key_path("fields")),
                    "empty field name",
                ));
                continue;
            }
            if let Some(rule) = compile_rule(&fields, &name, value, &mut errors) {
                rules.push(rule);
            }
        }
    }

    let key = compile_key(
        &root,
        fields_read.then_some(names.as_slice()),
        &rules,
        &mut errors,
    );
    root.finish(ROOT_KEYS, &mut errors);

    if !errors.is_empty() {
        errors.sort_by_key(|e| (e.line, e.column));
        return Err(errors);
    }
    let key_index = key
        .iter()
        .filter_map(|k| rules.iter().position(|r| &r.name == k))
        .collect();
    let key_site = root
        .get("key")
        .map_or((0, 0), |v| file.line_col(v.span().start));
    Ok(Mapping::new(
        file.path.clone(),
        rules,
        (key, key_site),
        key_index,
    ))
}

/// `key`; `names` are the fields under [fields], `None` when that table is unusable
/// (then membership is not checked, to avoid a second error for one mistake).
fn compile_key(
    root: &Table<'_, '_>,
    names: Option<&[String]>,
    rules: &[Rule],
    errors: &mut Vec<ConfigError>,
) -> Vec<String> {
    let Some(value) = root.get("key") else {
        errors.push(root.error(
            root.span(),
            "key",
            "required key is missing; e.g. key = [\"userid\", \"month\"]",
        ));
        return Vec::new();
    };
    let before = errors.len();
    let Some(items) = root.string_array("key", errors) else {
        return Vec::new();
    };
    if items.is_empty() {
        errors.push(root.error(
            value.span(),
            "key",
            "key is empty; name the fields that identify one record, e.g. [\"userid\", \"month\"]",
        ));
    }
    let mut key: Vec<String> = Vec::new();
    for Located { value: name, span } in items {
        if key.contains(&name) {
            errors.push(root.error(span, "key", format!("\"{name}\" is listed twice")));
            continue;
        }
        let Some(names) = names else {
            key.push(name);
            continue;
        };
        if !names.contains(&name) {
            let known: Vec<&str> = names.iter().map(String::as_str).collect();
            errors.push(root.error(
                span.clone(),
                "key",
                format!(
                    "key field \"{name}\" is not in [fields]; fields: {}",
                    one_of(&known)
                ),
            ));
        } else if rules.iter().any(|r| r.name == name && r.from.is_volatile()) {
            errors.push(root.error(
                span.clone(),
                "key",
                format!("key field \"{name}\" comes from $synced_at, which changes on every run"),
            ));
        }
        key.push(name);
    }
    if names.is_some() && errors.len() == before && !key_reads_the_record(&key, rules) {
        errors.push(root.error(
            value.span(),
            "key",
            format!(
                "no key field is read from the source record ({} come from $variables), so every employee would get the same key; add one, e.g. \"userid\"",
                key.join(", ")
            ),
        ));
    }
    key
}

/// Whether some key field is read from the source record (a path), which is
/// what tells one employee's record from another's. Fields whose rule failed
/// to compile count as read, so one mistake gives one error.
fn key_reads_the_record(key: &[String], rules: &[Rule]) -> bool {
    key.is_empty()
        || key
            .iter()
            .any(|k| match rules.iter().find(|r| &r.name == k) {
                Some(rule) => matches!(rule.from, Input::Path(_)),
                None => true,
            })
}

/// A rule: `name = "path"` or `name = { from = …, … }`.
fn compile_rule(
    fields: &Table<'_, '_>,
    name: &str,
    value: &Spanned<DeValue<'_>>,
    errors: &mut Vec<ConfigError>,
) -> Option<Rule> {
    if value.get_ref().is_str() {
        let text = fields.string_value(name, value, errors)?;
        let (from, site) = compile_from(fields, name, &text, errors)?;
        return Some(Rule {
            name: name.to_string(),
            from_text: text.value,
            from,
            site,
            default: None,
            convert: None,
            map: None,
            round: None,
            value_type: ValueType::Auto,
        });
    }
    if !value.get_ref().is_table() {
        errors.push(fields.error(
            value.span(),
            name,
            format!(
                "expected a path string or a table like {{ from = \"…\" }}, found {}",
                value.get_ref().type_str()
            ),
        ));
        return None;
    }
    let t = fields.table_value(name, value, errors)?;
    compile_rule_table(&t, name, errors)
}

/// A rule's steps as written, each located for its errors.
struct Steps {
    default: Option<Located<Value>>,
    convert_name: Option<Located<String>>,
    convert: Option<Convert>,
    map: Option<Located<serde_json::Map<String, Value>>>,
    round: Option<Located<u32>>,
    value_type: Option<(ValueType, std::ops::Range<usize>)>,
}

/// `name = { from = …, default = …, convert = …, map = …, round = …, type = … }`.
fn compile_rule_table(
    t: &Table<'_, '_>,
    name: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<Rule> {
    let before = errors.len();
    let from_text = t.required_string("from", errors);
    let from = from_text
        .as_ref()
        .and_then(|text| compile_from(t, "from", text, errors));
    let default = read_default(t, errors);
    let (convert_name, convert) = read_convert(t, errors);
    let steps = Steps {
        default,
        convert_name,
        convert,
        map: t.get("map").and_then(|v| compile_map(t, v, errors)),
        round: t.get("round").and_then(|v| compile_round(t, v, errors)),
        value_type: t.choice("type", ValueType::NAMES, errors).map(|ty| {
            (
                ValueType::from_name(&ty.value).unwrap_or(ValueType::Auto),
                ty.span,
            )
        }),
    };
    t.finish(RULE_KEYS, errors);
    if errors.len() > before {
        return None;
    }
    let (from_text, (from, site)) = (from_text?, from?);
    check_kinds(t, &from, &steps, errors);
    if errors.len() > before {
        return None;
    }
    let rule = Rule {
        name: name.to_string(),
        from_text: from_text.value,
        from,
        site,
        default: steps.default.as_ref().map(|d| d.value.clone()),
        convert: steps.convert,
        map: steps.map.map(|m| m.value),
        round: steps.round.map(|r| r.value),
        value_type: steps.value_type.map_or(ValueType::Auto, |(ty, _)| ty),
    };
    check_default(t, &rule, steps.default.as_ref(), errors).then_some(rule)
}

/// `default`: any TOML value, as JSON.
fn read_default(t: &Table<'_, '_>, errors: &mut Vec<ConfigError>) -> Option<Located<Value>> {
    let v = t.get("default")?;
    match toml_to_json(v.get_ref()) {
        Ok(json) => Some(Located {
            value: json,
            span: v.span(),
        }),
        Err(message) => {
            errors.push(t.error(v.span(), "default", message));
            None
        }
    }
}

/// `convert` (and the `sep` that `split` and `join` need): the name as written
/// and the conversion.
fn read_convert(
    t: &Table<'_, '_>,
    errors: &mut Vec<ConfigError>,
) -> (Option<Located<String>>, Option<Convert>) {
    let convert_name = t.choice("convert", Convert::NAMES, errors);
    let sep = t.string("sep", errors);
    let convert = convert_name.as_ref().and_then(|c| {
        let needs_sep = matches!(c.value.as_str(), "split" | "join");
        match (&sep, needs_sep) {
            (None, true) => {
                if !t.contains("sep") {
                    errors.push(t.error(
                        c.span.clone(),
                        "convert",
                        format!("convert = \"{}\" needs `sep`, e.g. sep = \";\"", c.value),
                    ));
                }
                None
            }
            (Some(s), true) if s.value.is_empty() && c.value == "split" => {
                errors.push(t.error(s.span.clone(), "sep", "`sep` must not be empty for split"));
                None
            }
            (sep, _) => Convert::from_name(&c.value, sep.as_ref().map_or("", |s| s.value.as_str())),
        }
    });
    if let Some(s) = &sep {
        let used = convert_name
            .as_ref()
            .is_some_and(|c| matches!(c.value.as_str(), "split" | "join"));
        // An invalid `convert` was reported already; do not blame `sep` for it too.
        let convert_invalid = convert_name.is_none() && t.contains("convert");
        if !used && !convert_invalid {
            errors.push(t.error(
                s.span.clone(),
                "sep",
                "`sep` is only used with convert = \"split\" or \"join\"",
            ));
        }
    }
    (convert_name, convert)
}

/// Steps that can never work, whatever the record holds.
fn check_kinds(t: &Table<'_, '_>, from: &Input, steps: &Steps, errors: &mut Vec<ConfigError>) {
    let mut kind = match from {
        Input::Path(_) => Kind::Any,
        Input::Var(v) => v.kind(),
    };
    if let (Some(c), Some(name)) = (&steps.convert, &steps.convert_name) {
        match convert_kind(c, kind) {
            Ok(k) => kind = k,
            Err(message) => errors.push(t.error(name.span.clone(), "convert", message)),
        }
    }
    if let Some(m) = &steps.map {
        kind = map_kind(kind, &m.value, steps.default.as_ref().map(|d| &d.value));
    }
    if let Some(r) = &steps.round {
        if matches!(kind, Kind::Time | Kind::List) {
            errors.push(t.error(
                r.span.clone(),
                "round",
                format!(
                    "round needs a number, but the value here is {}",
                    kind.describe()
                ),
            ));
        }
        kind = Kind::Number;
    }
    if let Some((ty, span)) = &steps.value_type {
        if let Err(message) = type_accepts(*ty, kind) {
            errors.push(t.error(span.clone(), "type", message));
        }
    }
}

/// The default goes through the same steps as a read value: checked now.
fn check_default(
    t: &Table<'_, '_>,
    rule: &Rule,
    default: Option<&Located<Value>>,
    errors: &mut Vec<ConfigError>,
) -> bool {
    let Some(d) = default else { return true };
    match rule.run(Val::Json(d.value.clone()), chrono_tz::UTC) {
        Ok(_) => true,
        Err(e) => {
            errors.push(t.error(
                d.span.clone(),
                "default",
                format!(
                    "the default fails this rule ({}): value {} {}",
                    e.rule, e.value, e.message
                ),
            ));
            false
        }
    }
}

/// `from`: a `$variable` or a path; path errors point at the offending character.
fn compile_from(
    t: &Table<'_, '_>,
    key: &str,
    text: &Located<String>,
    errors: &mut Vec<ConfigError>,
) -> Option<(Input, Site)> {
    let mut site = Site {
        key: t.key_path(key),
        steps: Vec::new(),
    };
    if text.value.starts_with('$') {
        return match Var::from_name(&text.value) {
            Some(v) => Some((Input::Var(v), site)),
            None => {
                errors.push(t.error(
                    text.span.clone(),
                    key,
                    format!(
                        "unknown variable `{}`; allowed: {} (quote a key that starts with $: [\"{}\"])",
                        text.value,
                        one_of(Var::NAMES),
                        text.value
                    ),
                ));
                None
            }
        };
    }
    match Path::parse(&text.value) {
        Ok(p) => {
            site.steps = p
                .spans()
                .iter()
                .map(|s| {
                    let at = path_offset_in_file(t.file(), &text.span, &text.value, s.start);
                    t.file().line_col(at)
                })
                .collect();
            Some((Input::Path(p), site))
        }
        Err(e) => {
            let at = path_offset_in_file(t.file(), &text.span, &text.value, e.offset);
            let character = text.value.get(..e.offset).map_or(0, |s| s.chars().count()) + 1;
            errors.push(t.error(
                at..at,
                key,
                format!(
                    "invalid path \"{}\": {} (at character {character})",
                    text.value, e.message
                ),
            ));
            None
        }
    }
}

/// Where byte `offset` of the path text is in the file: exact when the TOML string
/// holds the path verbatim (no escapes), else the start of the string.
fn path_offset_in_file(file: &SourceFile, span: &Range<usize>, path: &str, offset: usize) -> usize {
    let raw = file.text.get(span.clone()).unwrap_or("");
    for quote in ["\"", "'"] {
        if let Some(inner) = raw.strip_prefix(quote).and_then(|r| r.strip_suffix(quote)) {
            if inner == path {
                return span.start + quote.len() + offset;
            }
        }
    }
    span.start
}

fn compile_map(
    t: &Table<'_, '_>,
    value: &Spanned<DeValue<'_>>,
    errors: &mut Vec<ConfigError>,
) -> Option<Located<serde_json::Map<String, Value>>> {
    let table = t.table_value("map", value, errors)?;
    let entries = table.entries();
    if entries.is_empty() {
        errors.push(t.error(value.span(), "map", "map is empty"));
        return None;
    }
    let mut out = serde_json::Map::new();
    let mut ok = true;
    for (key, _, v) in entries {
        let scalar = !matches!(v.get_ref(), DeValue::Array(_) | DeValue::Table(_));
        match toml_to_json(v.get_ref()) {
            Ok(json) if scalar => {
                out.insert(key, json);
            }
            _ if !scalar => {
                errors.push(table.error(
                    v.span(),
                    &key,
                    format!(
                        "a map value must be text, a number or a boolean, found {}",
                        v.get_ref().type_str()
                    ),
                ));
                ok = false;
            }
            Ok(_) => ok = false,
            Err(message) => {
                errors.push(table.error(v.span(), &key, message));
                ok = false;
            }
        }
    }
    ok.then(|| Located {
        value: out,
        span: value.span(),
    })
}

fn compile_round(
    t: &Table<'_, '_>,
    value: &Spanned<DeValue<'_>>,
    errors: &mut Vec<ConfigError>,
) -> Option<Located<u32>> {
    let n = value
        .get_ref()
        .as_integer()
        .and_then(|i| i64::from_str_radix(i.as_str(), i.radix()).ok());
    let message = match n {
        Some(n) if (0..=MAX_ROUND).contains(&n) => {
            return u32::try_from(n).ok().map(|places| Located {
                value: places,
                span: value.span(),
            })
        }
        Some(n) if n < 0 => {
            format!("round must be a non-negative integer (decimal places), found {n}")
        }
        Some(n) => format!("round is at most {MAX_ROUND} decimal places, found {n}"),
        None => format!(
            "round must be a non-negative integer (decimal places), found {}",
            value.get_ref().type_str()
        ),
    };
    errors.push(t.error(value.span(), "round", message));
    None
}

/// A TOML value as JSON (for `default` and `map` values).
fn toml_to_json(v: &DeValue<'_>) -> Result<Value, String> {
    Ok(match v {
        DeValue::String(s) => Value::String(s.to_string()),
        DeValue::Integer(i) => Value::from(
            i64::from_str_radix(i.as_str(), i.radix())
                .map_err(|_| "integer is out of range".to_string())?,
        ),
        DeValue::Float(f) => {
            let x: f64 = f
                .as_str()
                .replace('_', "")
                .parse()
                .map_err(|_| format!("invalid number {}", f.as_str()))?;
            Value::Number(
                Number::from_f64(x).ok_or_else(|| "inf and nan are not allowed".to_string())?,
            )
        }
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(d) => Value::String(d.to_string()),
        DeValue::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| toml_to_json(i.get_ref()))
                .collect::<Result<_, _>>()?,
        ),
        DeValue::Table(_) => return Err("expected a value, found a table".to_string()),
    })
}

/// What a value is known to be at a step, for the checks above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Any,
    Number,
    Text,
    Time,
    List,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Any => "anything",
            Kind::Number => "a number",
            Kind::Text => "text",
            Kind::Time => "a datetime",
            Kind::List => "a list",
        }
    }

    fn of_json(v: &Value) -> Kind {
        match v {
            Value::Number(_) => Kind::Number,
            Value::String(_) => Kind::Text,
            Value::Array(_) => Kind::List,
            _ => Kind::Any,
        }
    }

    fn merge(self, other: Kind) -> Kind {
        if self == other {
            self
        } else {
            Kind::Any
        }
    }
}

impl Var {
    fn kind(self) -> Kind {
        match self {
            Var::Month | Var::Job | Var::Source => Kind::Text,
            Var::MonthStart | Var::MonthEnd | Var::SyncedAt => Kind::Time,
        }
    }
}

fn convert_kind(c: &Convert, input: Kind) -> Result<Kind, String> {
    let wrong = |needs: &str| {
        Err(format!(
            "\"{}\" needs {needs}, but the value here is {}",
            c.name(),
            input.describe()
        ))
    };
    match c {
        Convert::SecondsToHours
        | Convert::SecondsToMinutes
        | Convert::SecondsToDays
        | Convert::ToNumber => match input {
            Kind::Time | Kind::List => wrong("a number"),
            _ => Ok(Kind::Number),
        },
        Convert::UnixToDatetime | Convert::UnixMsToDatetime => match input {
            Kind::Time | Kind::List => wrong("a number"),
            _ => Ok(Kind::Time),
        },
        Convert::ToText => match input {
            Kind::List => wrong("a single value (use \"join\" for a list)"),
            _ => Ok(Kind::Text),
        },
        Convert::Split(_) => match input {
            Kind::List => wrong("text"),
            _ => Ok(Kind::List),
        },
        Convert::Join(_) => Ok(Kind::Text),
    }
}

fn map_kind(input: Kind, table: &serde_json::Map<String, Value>, default: Option<&Value>) -> Kind {
    let mut out: Option<Kind> = None;
    for v in table.values().chain(default) {
        let k = Kind::of_json(v);
        out = Some(out.map_or(k, |o| o.merge(k)));
    }
    if input == Kind::List {
        Kind::List
    } else {
        out.unwrap_or(Kind::Any)
    }
}

fn type_accepts(ty: ValueType, kind: Kind) -> Result<(), String> {
    let bad = match (ty, kind) {
        (ValueType::Text | ValueType::Number | ValueType::Datetime | ValueType::Date, Kind::List) => {
            true
        }
        (ValueType::Number, Kind::Time) => true,
        (ValueType::Datetime | ValueType::Date, Kind::Number) => {
            return Err(format!(
                "type = \"{ty}\" needs a date or datetime, but the value here is a number; for a Unix timestamp use convert = \"unix_to_datetime\""
            ))
        }
        _ => false,
    };
    if bad {
        Err(format!("type = \"{ty}\" cannot take {}", kind.describe()))
    } else {
        Ok(())
    }
}
