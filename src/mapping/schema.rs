//! What a source record can hold ([`Schema`]), and whether a mapping's path can
//! ever find something in it ([`check`]). A path the record cannot hold would
//! blank its field in every record, so `check` and `run` refuse it, naming the
//! nearest path the record does hold.

use super::path::{Path, Step};

/// The shape of a source record: what a path may walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schema {
    /// A number, a text or a boolean.
    Value,
    /// An object with these members. `origin`, when set, says where the member
    /// names come from (e.g. "the job's source.columns"): configuration rather
    /// than the vendor's format, so an error lists them.
    Object {
        members: Vec<(String, Schema)>,
        origin: Option<String>,
    },
    /// A list whose elements are all of this shape.
    List(Box<Schema>),
}

impl Schema {
    /// An object with these members.
    pub fn object<'a>(members: impl IntoIterator<Item = (&'a str, Schema)>) -> Schema {
        Schema::Object {
            members: members
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            origin: None,
        }
    }

    /// An object whose members are these single values.
    pub fn values(names: &[&str]) -> Schema {
        Schema::object(names.iter().map(|n| (*n, Schema::Value)))
    }

    /// An object of single values named by configuration (`origin` says where).
    pub fn named(names: &[String], origin: impl Into<String>) -> Schema {
        Schema::Object {
            members: names.iter().map(|n| (n.clone(), Schema::Value)).collect(),
            origin: Some(origin.into()),
        }
    }

    pub fn list(of: Schema) -> Schema {
        Schema::List(Box::new(of))
    }

    fn member(&self, key: &str) -> Option<&Schema> {
        match self {
            Schema::Object { members, .. } => {
                members.iter().find(|(k, _)| k == key).map(|(_, s)| s)
            }
            _ => None,
        }
    }

    fn member_names(&self) -> Vec<&str> {
        match self {
            Schema::Object { members, .. } => members.iter().map(|(k, _)| k.as_str()).collect(),
            _ => Vec::new(),
        }
    }
}

/// Why a path can find nothing in a record of some schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unknown {
    /// The first step that cannot be taken (an index into the path's steps).
    pub step: usize,
    /// What is wrong at that step, e.g. "`summary_info` has no `regular_work_secs`".
    pub reason: String,
    /// The nearest path the record can hold, when one is close enough.
    pub suggestion: Option<String>,
}

/// How many fixes a suggestion may chain (one per misspelt step).
const MAX_FIXES: usize = 8;

/// Whether `path` (whose text is `text`) can find something in a record of
/// `schema`.
pub fn check(schema: &Schema, path: &Path, text: &str) -> Result<(), Unknown> {
    let Err(problem) = first_problem(schema, path, text) else {
        return Ok(());
    };
    // Apply the fix of each problem in turn until the path fits: that is the
    // suggestion. A path that needs more than fixing names gets none.
    let mut suggestion = None;
    let mut candidate = problem.fix.clone();
    for _ in 0..MAX_FIXES {
        let Some(fixed) = candidate.take() else { break };
        let Ok(p) = Path::parse(&fixed) else { break };
        match first_problem(schema, &p, &fixed) {
            Ok(()) => {
                suggestion = Some(fixed);
                break;
            }
            Err(next) => candidate = next.fix,
        }
    }
    Err(Unknown {
        step: problem.step,
        reason: problem.reason,
        suggestion,
    })
}

/// The first step that does not fit, and the text of the path with that step fixed.
struct Problem {
    step: usize,
    reason: String,
    fix: Option<String>,
}

fn first_problem(schema: &Schema, path: &Path, text: &str) -> Result<(), Problem> {
    let mut node = schema;
    for (i, (step, span)) in path.steps().iter().zip(path.spans()).enumerate() {
        let before = text.get(..span.start).unwrap_or("");
        // What the path has walked so far, for messages: `summary_info`.
        let walked = before.strip_suffix('.').unwrap_or(before);
        let at = |reason: String, fix: Option<String>| Problem {
            step: i,
            reason,
            fix,
        };
        let replace = |with: &str| {
            let after = text.get(span.end..).unwrap_or("");
            format!("{before}{with}{after}")
        };
        node = match (step, node) {
            (Step::Key(k), Schema::Object { origin, .. }) => match node.member(k) {
                Some(next) => next,
                None => {
                    let names = node.member_names();
                    let fix = nearest(k, &names).map(|n| {
                        let bracketed = text.get(span.clone()).is_some_and(|s| s.starts_with('['));
                        replace(&render_key(n, i == 0 || bracketed, bracketed))
                    });
                    let reason = match origin {
                        Some(origin) => format!("`{k}` is not in {origin} ({})", names.join(", ")),
                        None if walked.is_empty() => format!("the record has no `{k}`"),
                        None => format!("`{walked}` has no `{k}`"),
                    };
                    return Err(at(reason, fix));
                }
            },
            (Step::Key(k), Schema::List(elem)) => {
                // `exception_infos.count`: an element must be picked first.
                let fix = elem.member(k).and_then(|_| {
                    let cut = span.start - usize::from(before.ends_with('.'));
                    Some(format!("{}[0]{}", text.get(..cut)?, text.get(cut..)?))
                });
                return Err(at(
                    format!("`{walked}` is a list: pick an element with [N] or [field=value] before `{k}`"),
                    fix,
                ));
            }
            (Step::Index(_), Schema::List(elem)) => elem,
            (Step::Select { field, value, .. }, Schema::List(elem)) => match &**elem {
                Schema::Object { .. } => {
                    if elem.member(field).is_none() {
                        let fix = nearest(field, &elem.member_names()).map(|n| {
                            replace(&format!(
                                "[{}={}]",
                                render_key(n, false, false),
                                render_selector_value(value)
                            ))
                        });
                        return Err(at(
                            format!("the elements of `{walked}` have no `{field}`"),
                            fix,
                        ));
                    }
                    elem
                }
                _ => {
                    return Err(at(
                        format!("the elements of `{walked}` are single values; pick one with [N]"),
                        None,
                    ))
                }
            },
            (_, Schema::Object { .. }) => {
                let what = if walked.is_empty() {
                    "the record".to_string()
                } else {
                    format!("`{walked}`")
                };
                return Err(at(format!("{what} is an object, not a list"), None));
            }
            (_, Schema::Value) => {
                return Err(at(
                    format!("`{walked}` is a single value; nothing is inside it"),
                    None,
                ))
            }
        };
    }
    whole_object(node, path, text)
}

/// A path must end at a value or a list of values: no form field takes an
/// object (`base_info.rule_info`, or `sp_items[name=年假]` without `.duration`).
fn whole_object(node: &Schema, path: &Path, text: &str) -> Result<(), Problem> {
    let object = match node {
        Schema::List(elem) => &**elem,
        other => other,
    };
    let Schema::Object { members, .. } = object else {
        return Ok(());
    };
    let names: Vec<&str> = members.iter().map(|(k, _)| k.as_str()).take(6).collect();
    let more = if members.len() > names.len() {
        ", …"
    } else {
        ""
    };
    let what = if matches!(node, Schema::List(_)) {
        "a list of objects"
    } else {
        "an object"
    };
    Err(Problem {
        step: path.steps().len().saturating_sub(1),
        reason: format!(
            "`{text}` is {what} ({}{more}), which no form field can hold; map one of its members",
            names.join(", ")
        ),
        fix: None,
    })
}

/// A key as a path writes it: bare when it can be, else quoted (`["…"]` in
/// brackets, or where a bare key would not parse).
fn render_key(key: &str, first: bool, bracketed: bool) -> String {
    let special = key.is_empty()
        || key.contains(['.', '[', ']', '"', '='])
        || key.starts_with(char::is_whitespace)
        || key.ends_with(char::is_whitespace)
        || (first && key.starts_with('$'));
    if !special && !bracketed {
        return key.to_string();
    }
    let quoted = format!("\"{}\"", key.replace('\\', "\\\\").replace('"', "\\\""));
    if bracketed || first {
        format!("[{quoted}]")
    } else {
        quoted
    }
}

fn render_selector_value(value: &str) -> String {
    if value.is_empty() || value.contains(['[', ']', '"']) || value.trim() != value {
        format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        value.to_string()
    }
}

/// The candidate nearest to `word` by edit distance, if it is close enough to
/// be a misspelling: at most a third of the longer name's characters differ
/// (`出勤天` for `出勤天数`, but not `休息天数` for `出勤天数`).
fn nearest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d * 3 <= word.chars().count().max(c.chars().count()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance in characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Schema {
        Schema::object([
            (
                "base_info",
                Schema::object([
                    ("acctid", Schema::Value),
                    ("rule_info", Schema::values(&["groupid", "groupname"])),
                ]),
            ),
            (
                "summary_info",
                Schema::values(&["regular_work_sec", "standard_work_sec", "work_days"]),
            ),
            (
                "exception_infos",
                Schema::list(Schema::values(&["exception", "count", "duration"])),
            ),
            ("departments", Schema::list(Schema::Value)),
            (
                "columns",
                Schema::named(
                    &["出勤天数".to_string(), "工作时长".to_string()],
                    "the job's source.columns",
                ),
            ),
            ("odd", Schema::values(&["x.y"])),
        ])
    }

    fn run(text: &str) -> Result<(), Unknown> {
        let path = Path::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        check(&record(), &path, text)
    }

    fn suggestion(text: &str) -> Option<String> {
        run(text).expect_err(text).suggestion
    }

    #[test]
    fn paths_the_record_holds_pass() {
        for ok in [
            "base_info.acctid",
            "base_info.rule_info.groupname",
            "base_info[\"acctid\"]",
            "exception_infos[exception=1].count",
            "exception_infos[0].duration",
            "departments",
            "departments[2]",
            "columns.出勤天数",
            "odd[\"x.y\"]",
        ] {
            assert_eq!(run(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn a_path_to_a_whole_object_or_list_of_objects_is_refused() {
        for (path, what) in [
            ("base_info", "an object"),
            ("base_info.rule_info", "an object"),
            ("exception_infos[exception=1]", "an object"),
            ("exception_infos", "a list of objects"),
        ] {
            let e = run(path).expect_err(path);
            assert!(
                e.reason.contains(what) && e.reason.contains("map one of its members"),
                "{path}: {}",
                e.reason
            );
            assert_eq!(e.suggestion, None);
        }
    }

    #[test]
    fn a_misspelt_key_names_the_nearest_known_path() {
        let e = run("summary_info.regular_work_secs").expect_err("typo");
        assert_eq!(e.step, 1);
        assert_eq!(e.reason, "`summary_info` has no `regular_work_secs`");
        assert_eq!(
            e.suggestion.as_deref(),
            Some("summary_info.regular_work_sec")
        );
        assert_eq!(
            suggestion("summry_info.regular_work_sec").as_deref(),
            Some("summary_info.regular_work_sec")
        );
        // Two misspelt steps are both fixed.
        assert_eq!(
            suggestion("summry_info.regular_work_secs").as_deref(),
            Some("summary_info.regular_work_sec")
        );
        assert_eq!(
            suggestion("exception_infos[exception=1].cont").as_deref(),
            Some("exception_infos[exception=1].count")
        );
        assert_eq!(
            suggestion("exception_infos[exceptoin=1].count").as_deref(),
            Some("exception_infos[exception=1].count")
        );
        assert_eq!(
            suggestion("base_info[\"acctidd\"]").as_deref(),
            Some("base_info[\"acctid\"]")
        );
        assert_eq!(suggestion("odd.x_y").as_deref(), Some("odd.\"x.y\""));
        // Nothing close: no suggestion.
        assert_eq!(suggestion("summary_info.zzzzzzzzzz"), None);
        assert_eq!(
            run("nothing").expect_err("root").reason,
            "the record has no `nothing`"
        );
    }

    #[test]
    fn configured_names_are_listed() {
        let e = run("columns.休息天数").expect_err("removed column");
        assert_eq!(
            e.reason,
            "`休息天数` is not in the job's source.columns (出勤天数, 工作时长)"
        );
        assert_eq!(
            suggestion("columns.出勤天").as_deref(),
            Some("columns.出勤天数")
        );
        // A different column is not offered as a misspelling of a removed one.
        assert_eq!(e.suggestion, None);
    }

    #[test]
    fn steps_that_do_not_fit_the_shape_are_refused() {
        let e = run("exception_infos.count").expect_err("list");
        assert!(
            e.reason.contains("`exception_infos` is a list"),
            "{}",
            e.reason
        );
        assert_eq!(e.suggestion.as_deref(), Some("exception_infos[0].count"));
        assert!(run("summary_info[0]")
            .expect_err("object")
            .reason
            .contains("is an object, not a list"));
        assert!(run("base_info.acctid.x")
            .expect_err("value")
            .reason
            .contains("`base_info.acctid` is a single value"));
        assert!(run("departments[name=x]")
            .expect_err("values")
            .reason
            .contains("single values"));
        assert_eq!(run("[0]").expect_err("root").step, 0);
    }

    #[test]
    fn edit_distance_counts_characters() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("休息天数", "出勤天数"), 2);
        assert_eq!(edit_distance("regular_work_secs", "regular_work_sec"), 1);
    }
}
