//! Data-driven tests of the mapping engine: fixture records × mapping files →
//! hand-written expected rows (see tests/fixtures/README.md).

use std::path::{Path, PathBuf};

use attendsync::config::SourceFile;
use attendsync::mapping::{Mapping, ValueType, Vars};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

const RECORDS: &[&str] = &["zhangsan", "lisi_sparse", "wangwu_leave", "zhaoliu_bad"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures() -> PathBuf {
    root().join("tests/fixtures")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn load(path: &Path) -> Mapping {
    let file = SourceFile::new(path, read(path));
    Mapping::parse(&file).unwrap_or_else(|errors| {
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        panic!("{} does not compile:\n{}", path.display(), text.join("\n"))
    })
}

fn synced_at() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-02T18:30:00Z")
        .expect("time")
        .with_timezone(&Utc)
}

fn vars() -> Vars {
    Vars {
        month: "2026-10".parse().expect("month"),
        timezone: chrono_tz::Asia::Shanghai,
        job: "wecom_monthly".to_string(),
        source: "wecom".to_string(),
        synced_at: synced_at(),
    }
}

fn record(name: &str) -> Value {
    read_json(&fixtures().join(format!("wecom/records/{name}.json")))
}

/// Applies `mapping` to every record and compares with `expected/<name>/`.
fn check_snapshots(name: &str, mapping: &Mapping) {
    let mut failures = Vec::new();
    for rec in RECORDS {
        let expected_path = fixtures().join(format!("expected/{name}/{rec}.json"));
        let expected = read_json(&expected_path);
        let actual = match mapping.apply(&record(rec), &vars()) {
            Ok(row) => {
                // The order of the fields is part of the contract (mapping order).
                let names: Vec<&str> = row.fields().map(|(n, _)| n).collect();
                let expected_names: Vec<&str> = expected["row"]
                    .as_object()
                    .map(|o| o.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                if names != expected_names {
                    failures.push(format!(
                        "{rec}: field order {names:?} != {expected_names:?}"
                    ));
                }
                json!({ "key": row.key(), "row": row.to_json() })
            }
            Err(errors) => {
                json!({ "errors": errors.iter().map(|e| e.to_string()).collect::<Vec<_>>() })
            }
        };
        if actual != expected {
            failures.push(format!(
                "{}:\nexpected {}\nactual   {}",
                expected_path.display(),
                serde_json::to_string_pretty(&expected).unwrap_or_default(),
                serde_json::to_string_pretty(&actual).unwrap_or_default(),
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn spec_example_mapping_snapshots() {
    let m = load(&fixtures().join("mappings/spec_example.toml"));
    check_snapshots("spec_example", &m);
}

#[test]
fn shipped_wecom_mapping_snapshots() {
    let m = load(&root().join("mappings/wecom_monthly.toml"));
    check_snapshots("wecom_monthly", &m);
}

#[test]
fn every_expectation_has_its_record_and_mapping() {
    for dir in ["spec_example", "wecom_monthly"] {
        let mut found: Vec<String> = std::fs::read_dir(fixtures().join("expected").join(dir))
            .expect("expected dir")
            .filter_map(|e| e.ok())
            .map(|e| {
                e.file_name()
                    .to_string_lossy()
                    .trim_end_matches(".json")
                    .to_string()
            })
            .collect();
        found.sort();
        let mut want: Vec<String> = RECORDS.iter().map(|r| r.to_string()).collect();
        want.sort();
        assert_eq!(found, want, "expected/{dir}");
    }
}

#[test]
fn every_shipped_mapping_compiles() {
    let dir = root().join("mappings");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("mappings/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            load(&path);
            count += 1;
        }
    }
    assert!(count >= 1);
}

#[test]
fn fixture_and_shipped_wecom_mappings_read_only_what_the_record_holds() {
    let schema = attendsync::source::wecom::wecom_monthdata();
    for path in [
        fixtures().join("mappings/spec_example.toml"),
        root().join("mappings/wecom_monthly.toml"),
    ] {
        let errors = load(&path).check_paths(&schema, "WeCom getcheckin_monthdata");
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
    }
}

#[test]
fn shipped_wecom_mapping_has_the_promised_fields() {
    let m = load(&root().join("mappings/wecom_monthly.toml"));
    assert_eq!(m.key_fields(), ["userid", "month"]);
    let fields = m.fields();
    let from = |name: &str| {
        fields
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("field {name} is missing"))
            .from
            .clone()
    };
    assert_eq!(from("userid"), "base_info.acctid");
    assert_eq!(from("month"), "$month");
    assert_eq!(from("period_start"), "$month_start");
    assert_eq!(from("late_count"), "exception_infos[exception=1].count");
    assert_eq!(
        from("early_leave_count"),
        "exception_infos[exception=2].count"
    );
    assert_eq!(
        from("missing_punch_count"),
        "exception_infos[exception=3].count"
    );
    assert_eq!(from("absence_count"), "exception_infos[exception=4].count");
    assert_eq!(from("annual_leave_days"), "sp_items[name=年假].duration");
    for name in [
        "record_type",
        "name",
        "name_ex",
        "departs_name",
        "groupid",
        "groupname",
        "work_days",
        "regular_days",
        "except_days",
        "regular_work_sec",
        "standard_work_sec",
        "workday_over_sec",
        "holidays_over_sec",
        "restdays_over_sec",
        "work_hours",
    ] {
        from(name);
    }
    let period = fields
        .iter()
        .find(|f| f.name == "period_start")
        .expect("period");
    assert_eq!(period.value_type, ValueType::Datetime);
}

#[test]
fn shipped_rows_are_stable_between_runs() {
    let m = load(&root().join("mappings/wecom_monthly.toml"));
    let rec = record("zhangsan");
    let first = m.apply(&rec, &vars()).expect("row");
    let mut later = vars();
    later.synced_at = synced_at() + chrono::Duration::hours(24);
    let second = m.apply(&rec, &later).expect("row");
    // Only the volatile synced_at field differs, and it does not count as a change.
    assert_ne!(first.to_json(), second.to_json());
    assert_eq!(first.content_hash(), second.content_hash());
    assert_eq!(first.key(), second.key());
    // A changed value is a changed record.
    let mut changed = rec.clone();
    changed["summary_info"]["regular_work_sec"] = json!(32);
    let third = m.apply(&changed, &vars()).expect("row");
    assert_ne!(first.content_hash(), third.content_hash());
    // The write format wraps every value.
    let data = attendsync::target::record_format(&m.field_names())
        .encode(first.values())
        .to_value();
    assert_eq!(data["userid"], json!({"value": "ZhangSan"}));
    assert_eq!(
        data["period_start"],
        json!({"value": "2026-09-30T16:00:00.000Z"})
    );
    assert_eq!(data["standard_hours"], json!({"value": 8.07}));
    assert_eq!(
        data.as_object().map(|o| o.len()),
        Some(first.fields().len())
    );
}
