//! Compiling mapping files (every error, located) and applying rules.

use super::*;
use chrono::TimeZone;
use proptest::prelude::*;
use serde_json::json;

fn vars() -> Vars {
    Vars {
        month: "2026-10".parse().expect("month"),
        timezone: chrono_tz::Asia::Shanghai,
        job: "wecom_hr".to_string(),
        source: "wecom".to_string(),
        synced_at: Utc
            .with_ymd_and_hms(2026, 11, 2, 18, 30, 0)
            .single()
            .expect("time"),
    }
}

fn compile(text: &str) -> Result<Mapping, Vec<ConfigError>> {
    Mapping::parse(&SourceFile::new("mappings/m.toml", text))
}

fn mapping(text: &str) -> Mapping {
    compile(text).unwrap_or_else(|e| panic!("{e:#?}"))
}

/// Every error as `line:col key: message`.
fn errors(text: &str) -> Vec<String> {
    match compile(text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(errors) => errors
            .iter()
            .map(|e| format!("{}:{} {}: {}", e.line, e.column, e.key, e.message))
            .collect(),
    }
}

fn one_error(text: &str) -> String {
    let e = errors(text);
    assert_eq!(e.len(), 1, "{e:#?}");
    e[0].clone()
}

/// Maps one field `f` with the rule `rule` (TOML inline value) over `record`.
fn apply_one(rule: &str, record: Value) -> Result<Value, Vec<FieldError>> {
    let m = mapping(&format!(
        "key = [\"k\"]\n[fields]\nk = {{ from = \"id\", default = \"k\" }}\nf = {rule}\n"
    ));
    m.apply(&record, &vars()).map(|row| {
        let (name, value) = row.fields().nth(1).expect("two fields");
        assert_eq!(name, "f");
        value.clone()
    })
}

fn ok(rule: &str, record: Value) -> Value {
    apply_one(rule, record).unwrap_or_else(|e| panic!("{rule}: {e:#?}"))
}

fn err(rule: &str, record: Value) -> String {
    let e = apply_one(rule, record).expect_err(rule);
    assert_eq!(e.len(), 1, "{e:#?}");
    e[0].to_string()
}

// ---- compiling ------------------------------------------------------------

#[test]
fn the_spec_example_compiles() {
    let m = mapping(
        r#"
key = ["userid", "month"]           # target fields that identify one record

[fields]
userid     = "base_info.acctid"                      # a bare path
name       = "base_info.name"
month      = "$month"                                # "2026-10"
department = { from = "base_info.departs_name" }
work_hours = { from = "summary_info.regular_work_sec", convert = "seconds_to_hours", round = 2 }
late_count = { from = "exception_infos[exception=1].count", default = 0 }
annual_leave_days = { from = "sp_items[name=年假].duration", convert = "seconds_to_days", default = 0 }
rule_type  = { from = "base_info.record_type", map = { "1" = "固定上下班", "3" = "按班次上下班", "4" = "自由签到", "5" = "加班", "7" = "无规则" } }
period     = { from = "$month_start", type = "datetime" }
"#,
    );
    assert_eq!(m.key_fields(), ["userid", "month"]);
    let fields = m.fields();
    let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "userid",
            "name",
            "month",
            "department",
            "work_hours",
            "late_count",
            "annual_leave_days",
            "rule_type",
            "period"
        ]
    );
    assert_eq!(
        fields[8],
        FieldInfo {
            name: "period".into(),
            value_type: ValueType::Datetime,
            from: "$month_start".into()
        }
    );
    assert_eq!(fields[0].value_type, ValueType::Auto);
    assert_eq!(fields[0].from, "base_info.acctid");
}

#[test]
fn unknown_convert_lists_the_allowed_names() {
    let e = compile("key = [\"a\"]\n[fields]\na = \"x\"\nwork_hours = { from = \"s\", convert = \"seconds_to_hour\" }\n")
        .expect_err("bad convert");
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].key, "fields.work_hours.convert");
    assert_eq!((e[0].line, e[0].column), (4, 38));
    assert_eq!(
        e[0].to_string(),
        "mappings/m.toml:4:38: `fields.work_hours.convert`: unknown value \"seconds_to_hour\"; allowed: \
         \"seconds_to_hours\", \"seconds_to_minutes\", \"seconds_to_days\", \"unix_to_datetime\", \
         \"unix_ms_to_datetime\", \"to_number\", \"to_text\", \"split\" or \"join\""
    );
}

#[test]
fn bad_paths_point_at_the_character() {
    // Column of the second '.' in "a..b": `x = "` is 5 chars, then a . → column 8.
    assert_eq!(
        one_error("key = [\"x\"]\n[fields]\nx = \"a..b\"\n"),
        "3:8 fields.x: invalid path \"a..b\": expected a key, found '.' (at character 3)"
    );
    assert_eq!(
        one_error("key = [\"x\"]\n[fields]\nx = { from = 'sp_items[name=年假.duration' }\n"),
        "3:23 fields.x.from: invalid path \"sp_items[name=年假.duration\": unclosed \"[\" (at character 9)"
    );
    // Characters, not bytes: the error after 年假 is at character 4.
    assert_eq!(
        one_error("key = [\"x\"]\n[fields]\nx = \"年假[]\"\n"),
        "3:9 fields.x: invalid path \"年假[]\": empty brackets: expected an index, a quoted key or field=value (at character 4)"
    );
    // With escapes in the TOML string the error points at the string.
    let e = one_error("key = [\"x\"]\n[fields]\nx = \"a[\\\"b\"\n");
    assert!(
        e.starts_with("3:5 fields.x: invalid path \"a[\"b\": unterminated quoted key"),
        "{e}"
    );
    assert!(one_error("key = [\"x\"]\n[fields]\nx = \"\"\n").contains("the path is empty"));
}

#[test]
fn unknown_rule_keys_and_types_are_reported() {
    assert_eq!(
        errors(
            "key = [\"x\"]\n[fields]\nx = { from = \"a\", defualt = 0, type = \"integer\" }\n"
        ),
        [
            "3:19 fields.x.defualt: unknown key; allowed keys: \"from\", \"default\", \"convert\", \"sep\", \"map\", \"round\" or \"type\"",
            "3:39 fields.x.type: unknown value \"integer\"; allowed: \"text\", \"number\", \"datetime\" or \"date\"",
        ]
    );
    assert_eq!(
        one_error("key = [\"x\"]\n[fields]\nx = { convert = \"to_text\" }\n"),
        "3:5 fields.x.from: required key is missing"
    );
    assert_eq!(
        one_error("key = [\"x\"]\n[fields]\nx = 5\n"),
        "3:5 fields.x: expected a path string or a table like { from = \"…\" }, found integer"
    );
    assert_eq!(
        one_error("key = [\"x\"]\nfield = 1\n[fields]\nx = \"a\"\n"),
        "2:1 field: unknown key; allowed keys: \"key\", \"fields\" or \"description\""
    );
}

#[test]
fn split_and_join_need_sep_and_sep_needs_them() {
    assert_eq!(
        one_error("key = [\"x\"]\n[fields]\nx = { from = \"a\", convert = \"split\" }\n"),
        "3:29 fields.x.convert: convert = \"split\" needs `sep`, e.g. sep = \";\""
    );
    assert_eq!(
        one_error("key = [\"x\"]\n[fields]\nx = { from = \"a\", convert = \"join\" }\n"),
        "3:29 fields.x.convert: convert = \"join\" needs `sep`, e.g. sep = \";\""
    );
    assert_eq!(
        one_error("key = [\"x\"]\n[fields]\nx = { from = \"a\", sep = \";\" }\n"),
        "3:25 fields.x.sep: `sep` is only used with convert = \"split\" or \"join\""
    );
    assert_eq!(
        one_error(
            "key = [\"x\"]\n[fields]\nx = { from = \"a\", convert = \"split\", sep = \"\" }\n"
        ),
        "3:44 fields.x.sep: `sep` must not be empty for split"
    );
    mapping("key = [\"x\"]\n[fields]\nx = { from = \"a\", convert = \"join\", sep = \"\" }\n");
}

#[test]
fn round_must_be_a_small_non_negative_integer() {
    let rule = |r: &str| {
        one_error(&format!(
            "key = [\"x\"]\n[fields]\nx = {{ from = \"a\", round = {r} }}\n"
        ))
    };
    assert_eq!(
        rule("-1"),
        "3:27 fields.x.round: round must be a non-negative integer (decimal places), found -1"
    );
    assert_eq!(
        rule("1.5"),
        "3:27 fields.x.round: round must be a non-negative integer (decimal places), found float"
    );
    assert_eq!(
        rule("\"2\""),
        "3:27 fields.x.round: round must be a non-negative integer (decimal places), found string"
    );
    assert_eq!(
        rule("29"),
        "3:27 fields.x.round: round is at most 28 decimal places, found 29"
    );
    mapping("key = [\"x\"]\n[fields]\nx = { from = \"a\", round = 0 }\n");
}

#[test]
fn unknown_variables_list_the_known_ones() {
    assert_eq!(
        one_error("key = [\"x\"]\n[fields]\nx = \"$monthh\"\n"),
        "3:5 fields.x: unknown variable `$monthh`; allowed: \"$month\", \"$month_start\", \"$month_end\", \"$job\", \"$source\" or \"$synced_at\" (quote a key that starts with $: [\"$monthh\"])"
    );
}

#[test]
fn key_problems() {
    assert_eq!(
        one_error("key = [\"userid\", \"month\"]\n[fields]\nuserid = \"a\"\n"),
        "1:18 key: key field \"month\" is not in [fields]; fields: \"userid\""
    );
    assert_eq!(
        one_error("key = []\n[fields]\nx = \"a\"\n"),
        "1:7 key: key is empty; name the fields that identify one record, e.g. [\"userid\", \"month\"]"
    );
    assert_eq!(
        one_error("[fields]\nx = \"a\"\n"),
        "1:1 key: required key is missing; e.g. key = [\"userid\", \"month\"]"
    );
    assert_eq!(
        one_error("key = \"x\"\n[fields]\nx = \"a\"\n"),
        "1:7 key: expected an array of strings, found string"
    );
    assert_eq!(
        one_error("key = [\"x\", \"x\"]\n[fields]\nx = \"a\"\n"),
        "1:13 key: \"x\" is listed twice"
    );
    assert_eq!(
        one_error("key = [\"at\"]\n[fields]\nat = \"$synced_at\"\n"),
        "1:8 key: key field \"at\" comes from $synced_at, which changes on every run"
    );
    assert_eq!(
        one_error("key = [\"x\"]\n"),
        "1:1 fields: required table [fields] is missing"
    );
    assert_eq!(
        one_error("key = [\"x\"]\n[fields]\n"),
        "2:1 fields: [fields] is empty; map at least the key fields"
    );
    // A key naming a broken rule only reports the rule.
    assert_eq!(
        one_error("key = [\"x\"]\n[fields]\nx = \"a..\"\n"),
        "3:8 fields.x: invalid path \"a..\": expected a key, found '.' (at character 3)"
    );
}

#[test]
fn every_problem_is_reported_at_once_in_file_order() {
    let text = r#"key = ["userid", "nope"]
[fields]
userid = "base_info.acctid"
a = { from = "x", convert = "seconds_to_hour" }
b = { from = "x[", round = -2 }
c = { from = "$when", type = "datetime", extra = true }
d = { from = "x", convert = "split" }
e = { from = "x", map = {} }
f = { from = "x", map = { "1" = { a = 1 } } }
g = { from = "x", default = { a = 1 } }
"#;
    assert_eq!(
        errors(text),
        [
            "1:18 key: key field \"nope\" is not in [fields]; fields: \"userid\", \"a\", \"b\", \"c\", \"d\", \"e\", \"f\" or \"g\"",
            "4:29 fields.a.convert: unknown value \"seconds_to_hour\"; allowed: \"seconds_to_hours\", \"seconds_to_minutes\", \"seconds_to_days\", \"unix_to_datetime\", \"unix_ms_to_datetime\", \"to_number\", \"to_text\", \"split\" or \"join\"",
            "5:16 fields.b.from: invalid path \"x[\": unclosed \"[\" (at character 2)",
            "5:28 fields.b.round: round must be a non-negative integer (decimal places), found -2",
            "6:14 fields.c.from: unknown variable `$when`; allowed: \"$month\", \"$month_start\", \"$month_end\", \"$job\", \"$source\" or \"$synced_at\" (quote a key that starts with $: [\"$when\"])",
            "6:42 fields.c.extra: unknown key; allowed keys: \"from\", \"default\", \"convert\", \"sep\", \"map\", \"round\" or \"type\"",
            "7:29 fields.d.convert: convert = \"split\" needs `sep`, e.g. sep = \";\"",
            "8:25 fields.e.map: map is empty",
            "9:33 fields.f.map.1: a map value must be text, a number or a boolean, found table",
            "10:29 fields.g.default: expected a value, found a table",
        ]
    );
}

#[test]
fn syntax_errors_are_located() {
    let e = errors("key = [\"x\"]\n[fields]\nx = { from = \"a\" \n");
    assert!(e[0].starts_with("3:"), "{e:?}");
    assert!(e[0].contains("invalid TOML"), "{e:?}");
}

#[test]
fn steps_that_can_never_work_are_config_errors() {
    let rule = |r: &str| one_error(&format!("key = [\"k\"]\n[fields]\nk = \"a\"\nx = {r}\n"));
    assert_eq!(
        rule("{ from = \"$month_start\", round = 2 }"),
        "4:38 fields.x.round: round needs a number, but the value here is a datetime"
    );
    assert_eq!(
        rule("{ from = \"$month_start\", convert = \"seconds_to_hours\" }"),
        "4:40 fields.x.convert: \"seconds_to_hours\" needs a number, but the value here is a datetime"
    );
    assert_eq!(
        rule("{ from = \"s\", convert = \"seconds_to_hours\", type = \"date\" }"),
        "4:56 fields.x.type: type = \"date\" needs a date or datetime, but the value here is a number; for a Unix timestamp use convert = \"unix_to_datetime\""
    );
    assert_eq!(
        rule("{ from = \"s\", convert = \"split\", sep = \",\", type = \"text\" }"),
        "4:56 fields.x.type: type = \"text\" cannot take a list"
    );
    assert_eq!(
        rule("{ from = \"s\", convert = \"unix_to_datetime\", round = 1 }"),
        "4:57 fields.x.round: round needs a number, but the value here is a datetime"
    );
}

#[test]
fn defaults_are_checked_against_the_rule() {
    assert_eq!(
        one_error("key = [\"k\"]\n[fields]\nk = \"a\"\nx = { from = \"s\", default = \"n/a\", convert = \"seconds_to_hours\" }\n"),
        "4:29 fields.x.default: the default fails this rule (from s, convert seconds_to_hours): value \"n/a\" is not a number"
    );
    assert_eq!(
        one_error("key = [\"k\"]\n[fields]\nk = \"a\"\nx = { from = \"s\", default = \"soon\", type = \"date\" }\n"),
        "4:29 fields.x.default: the default fails this rule (from s, type date): value \"soon\" is not a date (expected e.g. \"2026-10-01\")"
    );
    mapping("key = [\"k\"]\n[fields]\nk = \"a\"\nx = { from = \"s\", default = \"其他\", map = { \"1\" = \"一\" } }\n");
    mapping("key = [\"k\"]\n[fields]\nk = \"a\"\nx = { from = \"s\", default = [\"a\", 1], convert = \"join\", sep = \",\" }\n");
}

#[test]
fn quoted_field_names_and_widget_ids() {
    let m = mapping(
        "key = [\"_widget_1529400746031\"]\n[fields]\n_widget_1529400746031 = \"u\"\n\"工作 时长\" = \"h\"\n",
    );
    let row = m.apply(&json!({"u": "x", "h": 1}), &vars()).expect("row");
    assert_eq!(
        row.to_json(),
        json!({"_widget_1529400746031": "x", "工作 时长": 1})
    );
    assert_eq!(
        one_error("key = [\"a\"]\n[fields]\na = \"u\"\n\"\" = \"h\"\n"),
        "4:1 fields.\"\": empty field name"
    );
}

// ---- applying -------------------------------------------------------------

#[test]
fn a_bare_string_equals_from() {
    let rec = json!({"a": {"b": [10, 20]}});
    assert_eq!(ok("\"a.b[1]\"", rec.clone()), json!(20));
    assert_eq!(ok("{ from = \"a.b[1]\" }", rec), json!(20));
}

#[test]
fn variables() {
    let rec = json!({});
    assert_eq!(ok("\"$month\"", rec.clone()), json!("2026-10"));
    assert_eq!(
        ok("\"$month_start\"", rec.clone()),
        json!("2026-09-30T16:00:00.000Z")
    );
    assert_eq!(
        ok("\"$month_end\"", rec.clone()),
        json!("2026-10-30T16:00:00.000Z")
    );
    assert_eq!(
        ok(
            "{ from = \"$month_start\", type = \"datetime\" }",
            rec.clone()
        ),
        json!("2026-09-30T16:00:00.000Z")
    );
    assert_eq!(
        ok("{ from = \"$month_end\", type = \"date\" }", rec.clone()),
        json!("2026-10-30T16:00:00.000Z")
    );
    assert_eq!(
        ok("{ from = \"$month\", type = \"date\" }", rec.clone()),
        json!("2026-09-30T16:00:00.000Z")
    );
    assert_eq!(ok("\"$job\"", rec.clone()), json!("wecom_hr"));
    assert_eq!(ok("\"$source\"", rec.clone()), json!("wecom"));
    assert_eq!(
        ok("\"$synced_at\"", rec.clone()),
        json!("2026-11-02T18:30:00.000Z")
    );
    // A key that starts with $ is reachable when quoted.
    assert_eq!(ok("'[\"$month\"]'", json!({"$month": 7})), json!(7));
}

#[test]
fn missing_or_null_uses_default_else_null() {
    assert_eq!(ok("\"nope\"", json!({})), Value::Null);
    assert_eq!(ok("{ from = \"a\", default = 0 }", json!({})), json!(0));
    assert_eq!(
        ok("{ from = \"a\", default = 0 }", json!({"a": null})),
        json!(0)
    );
    assert_eq!(
        ok("{ from = \"a\", default = 0 }", json!({"a": 5})),
        json!(5)
    );
    assert_eq!(ok("{ from = \"a\", default = 1.5 }", json!({})), json!(1.5));
    assert_eq!(
        ok("{ from = \"a\", default = \"无\" }", json!({})),
        json!("无")
    );
    assert_eq!(
        ok("{ from = \"a\", default = false }", json!({})),
        json!(false)
    );
    // Null skips every step instead of failing them.
    assert_eq!(
        ok(
            "{ from = \"a\", convert = \"seconds_to_hours\", round = 2, type = \"number\" }",
            json!({})
        ),
        Value::Null
    );
    // The default goes through the steps like a read value.
    assert_eq!(
        ok(
            "{ from = \"a\", default = 7200, convert = \"seconds_to_hours\" }",
            json!({})
        ),
        json!(2)
    );
}

#[test]
fn field_errors_name_field_rule_and_value() {
    assert_eq!(
        err(
            "{ from = \"summary_info.regular_work_sec\", convert = \"seconds_to_hours\" }",
            json!({"summary_info": {"regular_work_sec": "abc"}})
        ),
        "field \"f\" (from summary_info.regular_work_sec, convert seconds_to_hours): value \"abc\" is not a number"
    );
    let e = apply_one(
        "{ from = \"a\", convert = \"seconds_to_hours\" }",
        json!({"a": true}),
    )
    .expect_err("bool");
    assert_eq!(
        e[0],
        FieldError {
            field: "f".into(),
            rule: "from a, convert seconds_to_hours".into(),
            value: "true".into(),
            message: "is a boolean, not a number".into(),
        }
    );
    assert_eq!(
        err("{ from = \"a\", round = 1 }", json!({"a": [1]})),
        "field \"f\" (from a, round 1): value [1] is a list, not a number"
    );
    assert_eq!(
        err("{ from = \"a\", type = \"number\" }", json!({"a": "12,5"})),
        "field \"f\" (from a, type number): value \"12,5\" is not a number"
    );
    assert_eq!(
        err(
            "{ from = \"a\", convert = \"split\", sep = \";\" }",
            json!({"a": {"x": 1}})
        ),
        "field \"f\" (from a, convert split (sep \";\")): value {\"x\":1} is an object, not text"
    );
}

#[test]
fn map_then_round_then_type() {
    let map = "{ from = \"t\", map = { \"1\" = \"固定上下班\", \"3\" = \"按班次上下班\" } }";
    assert_eq!(ok(map, json!({"t": 1})), json!("固定上下班"));
    assert_eq!(ok(map, json!({"t": "3"})), json!("按班次上下班"));
    assert_eq!(ok(map, json!({})), Value::Null);
    assert_eq!(
        err(map, json!({"t": 6})),
        "field \"f\" (from t, map): value 6 is not in map (known: \"1\", \"3\"); add it to the table or give a default"
    );
    let with_default = "{ from = \"t\", map = { \"1\" = \"固定上下班\" }, default = \"其他\" }";
    assert_eq!(ok(with_default, json!({"t": 6})), json!("其他"));
    assert_eq!(ok(with_default, json!({"t": 1})), json!("固定上下班"));
    // Missing → default "其他" → not in the table → the default again.
    assert_eq!(ok(with_default, json!({})), json!("其他"));
    // map to numbers, then round and type.
    let numeric = "{ from = \"g\", map = { A = 1.234, B = 2 }, round = 1, type = \"text\" }";
    assert_eq!(ok(numeric, json!({"g": "A"})), json!("1.2"));
    assert_eq!(ok(numeric, json!({"g": "B"})), json!("2"));
    // A list maps element by element.
    assert_eq!(
        ok(
            "{ from = \"d\", convert = \"split\", sep = \";\", map = { a = \"甲\", b = \"乙\" } }",
            json!({"d": "a;b"})
        ),
        json!(["甲", "乙"])
    );
}

#[test]
fn rounding_and_number_shapes() {
    let hours = "{ from = \"s\", convert = \"seconds_to_hours\", round = 2 }";
    assert_eq!(ok(hours, json!({"s": 29040})), json!(8.07));
    assert_eq!(ok(hours, json!({"s": 28800})), json!(8));
    assert_eq!(ok(hours, json!({"s": "12.5"})), json!(0));
    assert_eq!(ok(hours, json!({"s": 18})), json!(0.01)); // 0.005 → 0.01, half away from zero
    assert_eq!(ok(hours, json!({"s": -18})), json!(-0.01));
    assert_eq!(ok(hours, json!({"s": 31})), json!(0.01));
    assert_eq!(
        ok("{ from = \"s\", round = 0 }", json!({"s": 2.5})),
        json!(3)
    );
    assert_eq!(
        ok("{ from = \"s\", type = \"number\" }", json!({"s": "7"})),
        json!(7)
    );
    // Auto passes values through untouched.
    assert_eq!(ok("\"s\"", json!({"s": 1.0})), json!(1.0));
    assert_eq!(ok("\"s\"", json!({"s": {"x": [1]}})), json!({"x": [1]}));
}

#[test]
fn datetimes_and_dates() {
    assert_eq!(
        ok(
            "{ from = \"t\", convert = \"unix_to_datetime\" }",
            json!({"t": 1790784000})
        ),
        json!("2026-09-30T16:00:00.000Z")
    );
    assert_eq!(
        ok(
            "{ from = \"t\", convert = \"unix_ms_to_datetime\", type = \"date\" }",
            json!({"t": 1790830800000_i64})
        ),
        json!("2026-09-30T16:00:00.000Z")
    );
    assert_eq!(
        ok(
            "{ from = \"t\", type = \"datetime\" }",
            json!({"t": "2026-10-08 09:00:00"})
        ),
        json!("2026-10-08T01:00:00.000Z")
    );
    assert_eq!(
        ok(
            "{ from = \"t\", type = \"date\" }",
            json!({"t": "2026-10-08"})
        ),
        json!("2026-10-07T16:00:00.000Z")
    );
    assert_eq!(
        err("{ from = \"t\", type = \"datetime\" }", json!({"t": 1790784000})),
        "field \"f\" (from t, type datetime): value 1790784000 is a number, not a datetime; for a Unix timestamp use convert = \"unix_to_datetime\""
    );
}

#[test]
fn key_fields_must_not_end_up_empty() {
    let m = mapping("key = [\"userid\", \"month\"]\n[fields]\nuserid = \"base_info.acctid\"\nmonth = \"$month\"\nn = { from = \"x\", convert = \"to_number\" }\n");
    let row = m
        .apply(&json!({"base_info": {"acctid": "ZhangSan"}}), &vars())
        .expect("row");
    assert_eq!(row.key(), r#"["ZhangSan","2026-10"]"#);
    for bad in [
        json!({}),
        json!({"base_info": {"acctid": null}}),
        json!({"base_info": {"acctid": " "}}),
    ] {
        let e = m.apply(&bad, &vars()).expect_err("empty key");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].field, "userid");
        assert_eq!(e[0].rule, "from base_info.acctid, key field");
        assert!(
            e[0].to_string()
                .ends_with("is empty, but key fields need a value"),
            "{}",
            e[0]
        );
    }
    // Every error of the record, not just the first.
    let e = m
        .apply(&json!({"base_info": {}, "x": "many"}), &vars())
        .expect_err("two errors");
    let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["userid", "n"]);
}

#[test]
fn volatile_fields_do_not_change_the_hash() {
    let m = mapping("key = [\"u\"]\n[fields]\nu = \"u\"\nat = \"$synced_at\"\nn = \"n\"\n");
    let rec = json!({"u": "ZhangSan", "n": 1});
    let a = m.apply(&rec, &vars()).expect("a");
    let mut later = vars();
    later.synced_at += chrono::Duration::days(1);
    let b = m.apply(&rec, &later).expect("b");
    assert_ne!(a.to_json(), b.to_json());
    assert_eq!(a.content_hash(), b.content_hash());
    let c = m
        .apply(&json!({"u": "ZhangSan", "n": 2}), &vars())
        .expect("c");
    assert_ne!(a.content_hash(), c.content_hash());
    assert_eq!(a.key(), c.key());
}

#[test]
fn write_data_is_wrapped_in_mapping_order() {
    let m = mapping("key = [\"u\"]\n[fields]\nz = \"$month\"\nu = \"u\"\n");
    let row = m.apply(&json!({"u": "x"}), &vars()).expect("row");
    assert_eq!(
        crate::target::record_format(&m.field_names())
            .encode(row.values())
            .get(),
        r#"{"z":{"value":"2026-10"},"u":{"value":"x"}}"#
    );
    assert_eq!(row.key_values(), vec![("u".to_string(), json!("x"))]);
}

// ---- robustness -----------------------------------------------------------

/// A mapping that uses every step, so arbitrary records exercise all of them.
const EVERYTHING: &str = r#"
key = ["k"]
[fields]
k = { from = "a", default = "none", type = "text" }
b = "b.c[0][x=1].d"
h = { from = "n", convert = "seconds_to_hours", round = 2 }
m = { from = "n", convert = "seconds_to_minutes", type = "number" }
d = { from = "n", convert = "seconds_to_days", default = 0 }
t = { from = "n", convert = "unix_to_datetime", type = "date" }
tm = { from = "n", convert = "unix_ms_to_datetime" }
num = { from = "a", convert = "to_number" }
txt = { from = "b", convert = "to_text" }
sp = { from = "a", convert = "split", sep = ";", map = { x = 1 }, default = "?" }
jn = { from = "l", convert = "join", sep = "," }
mp = { from = "a", map = { "1" = "一" } }
dt = { from = "a", type = "datetime" }
dd = { from = "l[0]", type = "date" }
"#;

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[0-9x;.,: -]{0,12}".prop_map(Value::String),
        ".{0,8}".prop_map(Value::String),
        Just(json!("2026-10-01 08:00:00")),
        Just(json!("99999-01-01")),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("a"),
                        Just("b"),
                        Just("c"),
                        Just("d"),
                        Just("n"),
                        Just("l"),
                        Just("x")
                    ],
                    inner
                ),
                0..5
            )
            .prop_map(|kv| Value::Object(
                kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            )),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn apply_never_panics_and_is_deterministic(record in any_json(), ts in -10_000_000_000i64..10_000_000_000) {
        let m = mapping(EVERYTHING);
        let mut v = vars();
        v.synced_at = DateTime::from_timestamp(ts, 0).expect("ts");
        let first = m.apply(&record, &v);
        let second = m.apply(&record, &v);
        prop_assert_eq!(&first, &second);
        match first {
            Ok(row) => {
                prop_assert_eq!(row.fields().len(), 14);
                prop_assert_eq!(row.content_hash().len(), 64);
                prop_assert!(!row.key().is_empty());
            }
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                for e in errors {
                    prop_assert!(!e.to_string().is_empty());
                }
            }
        }
    }

    #[test]
    fn parse_never_panics(text in "[a-z\\[\\]=\"{}.,$_0-9 \n]{0,80}") {
        let _ = compile(&text);
    }

    #[test]
    fn paths_never_panic(text in ".{0,24}") {
        if let Ok(p) = Path::parse(&text) {
            let _ = p.get(&json!({"a": [1, {"b": 2}]}));
        }
    }
}

#[test]
fn a_key_with_no_field_from_the_record_is_refused() {
    assert_eq!(
        one_error("key = [\"month\", \"src\"]\n[fields]\nmonth = \"$month\"\nsrc = \"$source\"\nname = \"base_info.name\"\n"),
        "1:7 key: no key field is read from the source record (month, src come from $variables), so every employee would get the same key; add one, e.g. \"userid\""
    );
    // One field read from the record is enough, variables may complete it.
    mapping("key = [\"userid\", \"month\"]\n[fields]\nuserid = \"base_info.acctid\"\nmonth = \"$month\"\n");
}
