//! The mapping engine: compile a mapping file (README "Mapping files") once, then turn
//! each source record into a Jiandaoyun row.
//!
//! Architecture invariant: this module does no IO, reads no clock and never
//! panics on data. Bad data is a value ([`FieldError`]); a bad mapping file is a
//! list of [`ConfigError`]s, all of them, each with file, line, column and key.
//!
//! A rule runs in a fixed order: read `from` (a path or a `$variable`); if it is
//! missing or null use `default` (no default: the field is sent as JSON `null`,
//! and the other steps are skipped); then `convert`, `map`, `round`, `type`.

mod compile;
mod fill;
mod node;
mod path;
mod row;
mod schema;
mod value;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use crate::month::Month;
use crate::toml_reader::{ConfigError, SourceFile};

pub use fill::FieldFill;
pub use node::Node;
use path::Path;
pub use path::{Scalar, Tree};
pub use row::Row;
use row::Shape;
pub use schema::{edit_distance, Schema};

use value::{Convert, Val};

/// The values of `$month`, `$month_start`, `$month_end`, `$job`, `$source` and
/// `$synced_at` for one run of one job-month.
#[derive(Debug, Clone, PartialEq)]
pub struct Vars {
    pub month: Month,
    /// The job's timezone: month boundaries and `type = "date"` use it.
    pub timezone: Tz,
    pub job: String,
    /// `"wecom"` or `"dingtalk"`.
    pub source: String,
    pub synced_at: DateTime<Utc>,
}

/// How a field's value is sent (`type = …`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// No `type` given: the JSON value is sent as it is.
    Auto,
    Text,
    Number,
    /// UTC `YYYY-MM-DDTHH:MM:SS.sssZ`.
    Datetime,
    /// Local midnight (in the job's timezone) of the date, as a UTC datetime.
    Date,
}

impl ValueType {
    pub const NAMES: &'static [&'static str] = &["text", "number", "datetime", "date"];

    /// The name used in mapping files; `"auto"` for [`ValueType::Auto`].
    pub fn as_str(&self) -> &'static str {
        match self {
            ValueType::Auto => "auto",
            ValueType::Text => "text",
            ValueType::Number => "number",
            ValueType::Datetime => "datetime",
            ValueType::Date => "date",
        }
    }

    fn from_name(name: &str) -> Option<ValueType> {
        Some(match name {
            "text" => ValueType::Text,
            "number" => ValueType::Number,
            "datetime" => ValueType::Datetime,
            "date" => ValueType::Date,
            _ => return None,
        })
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One target field of a mapping, for `check --remote`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldInfo {
    /// The Jiandaoyun field name (alias or `_widget_…` id).
    pub name: String,
    pub value_type: ValueType,
    /// The `from` text as written: a path or a `$variable`.
    pub from: String,
}

/// Why one field of one record could not be mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The target field.
    pub field: String,
    /// The rule and the step that failed, e.g. `from summary_info.regular_work_sec,
    /// convert seconds_to_hours`.
    pub rule: String,
    /// The offending value as compact JSON (`"abc"`, `5`, `null`), shortened when long.
    pub value: String,
    /// What is wrong with it, phrased to follow the value: `is not a number`.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "field \"{}\" ({}): value {} {}",
            self.field,
            self.rule,
            // JSON escapes C0 controls but not C1 or U+2028/2029: employee data.
            crate::text::clean(&self.value),
            self.message
        )
    }
}

impl std::error::Error for FieldError {}

/// A compiled mapping file.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// The mapping file, for errors found after compiling ([`Mapping::check_paths`]).
    file: PathBuf,
    rules: Vec<Rule>,
    key: Vec<String>,
    /// Line and column of `key` in the file.
    key_site: (usize, usize),
    /// Field names, key and hash order, shared by every row.
    shape: Arc<Shape>,
}

/// A mapping with the values of its `$variables` for one job-month: rules fed
/// by a variable give the same result for every record, so they run once here.
pub struct Bound<'m> {
    mapping: &'m Mapping,
    vars: &'m Vars,
    /// Per rule, what it reads.
    inputs: Vec<BoundInput<'m>>,
}

enum BoundInput<'m> {
    Path(&'m Path),
    /// A rule fed by a variable: its result, the same for every record.
    Constant(Result<Value, FieldError>),
}

impl Mapping {
    fn new(
        file: PathBuf,
        rules: Vec<Rule>,
        (key, key_site): (Vec<String>, (usize, usize)),
        key_index: Vec<usize>,
    ) -> Mapping {
        let names = rules.iter().map(|r| r.name.clone()).collect();
        let volatile: Vec<bool> = rules.iter().map(|r| r.from.is_volatile()).collect();
        let shape = Arc::new(Shape::new(names, key_index, &volatile));
        Mapping {
            file,
            rules,
            key,
            key_site,
            shape,
        }
    }

    /// A job syncs many months into one form, so its key must tell months
    /// apart: without a field from `$month`, `$month_start` or `$month_end`, a
    /// month's run would take over the previous month's records and overwrite
    /// them. Checked where a mapping is used by a job, as configuration.
    pub fn check_key_names_the_month(&self) -> Option<ConfigError> {
        let names_month = self.key.iter().any(|k| {
            self.rules
                .iter()
                .any(|r| &r.name == k && r.from.names_the_month())
        });
        if names_month || self.key.is_empty() {
            return None;
        }
        Some(ConfigError {
            file: self.file.clone(),
            line: self.key_site.0,
            column: self.key_site.1,
            key: "key".into(),
            message: format!(
                "no key field names the month ({} hold the same value every month), so a month's run would take over and overwrite the previous month's records; add a field from $month to the key, e.g. month = {{ from = \"$month\", type = \"text\" }}",
                self.key.join(", ")
            ),
        })
    }

    /// Every `from` path that a record of `schema` cannot hold, as configuration
    /// errors at the path's first unknown step, each naming the nearest path the
    /// record holds when one is close. `record` names the record for messages
    /// ("WeCom getcheckin_monthdata"). `$variables` always pass.
    pub fn check_paths(&self, schema: &Schema, record: &str) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        for rule in &self.rules {
            let Input::Path(path) = &rule.from else {
                continue;
            };
            let Err(e) = schema::check(schema, path, &rule.from_text) else {
                continue;
            };
            let hint = match &e.suggestion {
                Some(s) => format!("; did you mean `{s}`?"),
                None => String::new(),
            };
            let (line, column) = rule.site.steps.get(e.step).copied().unwrap_or((0, 0));
            errors.push(ConfigError {
                file: self.file.clone(),
                line,
                column,
                key: rule.site.key.clone(),
                message: format!(
                    "path `{}` is not in the {record} record: {}{hint}",
                    rule.from_text, e.reason
                ),
            });
        }
        errors
    }

    /// Parses, validates and compiles a mapping file, reporting every problem.
    pub fn parse(file: &SourceFile) -> Result<Mapping, Vec<ConfigError>> {
        compile::compile(file)
    }

    /// The target fields that identify a record, in `key` order.
    pub fn key_fields(&self) -> &[String] {
        &self.key
    }

    /// The key fields read from the source record (e.g. `userid` from
    /// `base_info.acctid`): what tells one employee's record from another's.
    pub fn employee_key_fields(&self) -> Vec<String> {
        self.rules
            .iter()
            .filter(|r| self.key.contains(&r.name) && matches!(r.from, Input::Path(_)))
            .map(|r| r.name.clone())
            .collect()
    }

    /// Fields that change on every run (`$synced_at`): not part of the change
    /// check, so not compared with what the form holds either.
    pub fn volatile_fields(&self) -> Vec<String> {
        self.rules
            .iter()
            .filter(|r| r.from.is_volatile())
            .map(|r| r.name.clone())
            .collect()
    }

    /// Every target field, in mapping order.
    pub fn fields(&self) -> Vec<FieldInfo> {
        self.rules
            .iter()
            .map(|r| FieldInfo {
                name: r.name.clone(),
                value_type: r.value_type,
                from: r.from_text.clone(),
            })
            .collect()
    }

    /// The field names in mapping order, as every row's values are ordered.
    pub fn field_names(&self) -> Vec<String> {
        self.rules.iter().map(|r| r.name.clone()).collect()
    }

    /// Applies the mapping to one source record: the complete row, or every field
    /// error of that record. Never panics, whatever the record holds.
    pub fn apply<T: Tree>(&self, record: &T, vars: &Vars) -> Result<Row, Vec<FieldError>> {
        self.bind(vars).apply(record)
    }

    /// The mapping for one job-month, to apply to many records.
    pub fn bind<'m>(&'m self, vars: &'m Vars) -> Bound<'m> {
        let inputs = self
            .rules
            .iter()
            .map(|r| match &r.from {
                Input::Path(p) => BoundInput::Path(p),
                Input::Var(v) => BoundInput::Constant(r.run(v.value(vars), vars.timezone)),
            })
            .collect();
        Bound {
            mapping: self,
            vars,
            inputs,
        }
    }
}

impl Bound<'_> {
    /// The key fields fed by a `$variable`, with their value this job-month
    /// (e.g. `month` = "2026-10"): every record of the month has these values,
    /// so they select the month's records in the form.
    pub fn constant_key_values(&self) -> Vec<(String, Value)> {
        let m = self.mapping;
        m.rules
            .iter()
            .zip(&self.inputs)
            .enumerate()
            .filter(|(i, _)| m.shape.is_key(*i))
            .filter_map(|(_, (rule, input))| match input {
                BoundInput::Constant(Ok(v)) => Some((rule.name.clone(), v.clone())),
                _ => None,
            })
            .collect()
    }

    /// [`Mapping::apply`] with the variables bound.
    pub fn apply<T: Tree>(&self, record: &T) -> Result<Row, Vec<FieldError>> {
        let m = self.mapping;
        let mut values = Vec::with_capacity(m.rules.len());
        let mut errors = Vec::new();
        for (i, (rule, input)) in m.rules.iter().zip(&self.inputs).enumerate() {
            let result = match input {
                BoundInput::Constant(done) => done.clone(),
                BoundInput::Path(p) => rule.run(
                    Val::Json(p.get(record).map_or(Value::Null, Tree::to_value)),
                    self.vars.timezone,
                ),
            };
            match result {
                Ok(v) => {
                    if m.shape.is_key(i) && is_empty(&v) {
                        errors.push(FieldError {
                            field: rule.name.clone(),
                            rule: format!("from {}, key field", rule.from_text),
                            value: v.to_string(),
                            message: "is empty, but key fields need a value".to_string(),
                        });
                    }
                    values.push(v);
                }
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Row::new(m.shape.clone(), values))
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// A `$variable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Month,
    MonthStart,
    MonthEnd,
    Job,
    Source,
    SyncedAt,
}

impl Var {
    const NAMES: &'static [&'static str] = &[
        "$month",
        "$month_start",
        "$month_end",
        "$job",
        "$source",
        "$synced_at",
    ];

    fn from_name(name: &str) -> Option<Var> {
        Some(match name {
            "$month" => Var::Month,
            "$month_start" => Var::MonthStart,
            "$month_end" => Var::MonthEnd,
            "$job" => Var::Job,
            "$source" => Var::Source,
            "$synced_at" => Var::SyncedAt,
            _ => return None,
        })
    }

    fn value(self, vars: &Vars) -> Val {
        match self {
            Var::Month => Val::Json(Value::String(vars.month.to_string())),
            Var::MonthStart => Val::Time(vars.month.start_in(vars.timezone)),
            Var::MonthEnd => Val::Time(vars.month.end_in(vars.timezone)),
            Var::Job => Val::Json(Value::String(vars.job.clone())),
            Var::Source => Val::Json(Value::String(vars.source.clone())),
            Var::SyncedAt => Val::Time(vars.synced_at),
        }
    }
}

#[derive(Debug, Clone)]
enum Input {
    Path(Path),
    Var(Var),
}

impl Input {
    /// Fields fed by `$synced_at` change on every run; the content hash skips them.
    fn is_volatile(&self) -> bool {
        matches!(self, Input::Var(Var::SyncedAt))
    }

    /// Fields fed by `$month`, `$month_start` or `$month_end` differ from one
    /// month to the next: a key needs one, or months overwrite each other.
    fn names_the_month(&self) -> bool {
        matches!(
            self,
            Input::Var(Var::Month | Var::MonthStart | Var::MonthEnd)
        )
    }
}

/// Where a rule's `from` is in the mapping file.
#[derive(Debug, Clone, Default)]
struct Site {
    /// The key of the path string, e.g. `fields.work_hours.from`.
    key: String,
    /// Line and column of each step of the path (of the string when the path
    /// is not written verbatim).
    steps: Vec<(usize, usize)>,
}

/// One compiled field rule.
#[derive(Debug, Clone)]
struct Rule {
    name: String,
    from_text: String,
    from: Input,
    site: Site,
    default: Option<Value>,
    convert: Option<Convert>,
    map: Option<serde_json::Map<String, Value>>,
    round: Option<u32>,
    value_type: ValueType,
}

impl Rule {
    /// Every step after reading the value.
    fn run(&self, v: Val, tz: Tz) -> Result<Value, FieldError> {
        let mut v = v;
        if v.is_null() {
            match &self.default {
                Some(d) => v = Val::Json(d.clone()),
                None => return Ok(Value::Null),
            }
        }
        if let Some(c) = &self.convert {
            v = self.step(v, || format!("convert {c}"), |v| c.apply(v))?;
        }
        if let Some(table) = &self.map {
            v = self.step(
                v,
                || "map".to_string(),
                |v| value::map_value(table, self.default.as_ref(), v),
            )?;
        }
        if let Some(places) = self.round {
            v = self.step(v, || format!("round {places}"), |v| value::round(places, v))?;
        }
        let typed = matches!(
            (self.value_type, &v),
            (ValueType::Auto, _)
                | (ValueType::Text, Val::Json(Value::String(_)))
                | (ValueType::Number, Val::Json(Value::Number(_)) | Val::Num(_))
        );
        // Most values already have their type: kept as they are, not copied.
        if !typed {
            let t = self.value_type;
            v = self.step(v, || format!("type {t}"), |v| value::to_type(t, v, tz))?;
        }
        // Only a computed number can fail to finish (out of JSON's range).
        let shown = match &v {
            Val::Num(_) => v.describe(),
            _ => String::new(),
        };
        v.finish().map_err(|message| FieldError {
            field: self.name.clone(),
            rule: format!("from {}", self.from_text),
            value: shown,
            message,
        })
    }

    /// Runs one step unless the value is null; a failure names the step.
    fn step(
        &self,
        v: Val,
        what: impl FnOnce() -> String,
        f: impl FnOnce(&Val) -> Result<Val, String>,
    ) -> Result<Val, FieldError> {
        if v.is_null() {
            return Ok(v);
        }
        f(&v).map_err(|message| FieldError {
            field: self.name.clone(),
            rule: format!("from {}, {}", self.from_text, what()),
            value: v.describe(),
            message,
        })
    }
}

#[cfg(test)]
mod tests;
