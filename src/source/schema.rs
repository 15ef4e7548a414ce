//! What each source's record can hold, for checking mapping paths
//! ([`crate::mapping::Mapping::check_paths`]).

use super::config::SourceConfig as Source;
use crate::mapping::Schema;

/// The record a job's source produces, and its name for messages.
pub fn record_schema(source: &Source) -> (Schema, &'static str) {
    match source {
        Source::Wecom(_) => (wecom_monthdata(), "WeCom getcheckin_monthdata"),
        Source::Dingtalk(cfg) => (
            dingtalk_month(&cfg.columns, &cfg.leave_names),
            "DingTalk monthly",
        ),
    }
}

/// One element of `getcheckin_monthdata`'s `datas[]`: every documented member.
// docs/vendors/wecom.md "monthdata fields"
pub fn wecom_monthdata() -> Schema {
    Schema::object([
        (
            "base_info",
            Schema::object([
                ("record_type", Schema::Value),
                ("name", Schema::Value),
                ("name_ex", Schema::Value),
                ("departs_name", Schema::Value),
                ("acctid", Schema::Value),
                ("rule_info", Schema::values(&["groupid", "groupname"])),
            ]),
        ),
        (
            "summary_info",
            Schema::values(&[
                "work_days",
                "regular_days",
                "except_days",
                "rest_days",
                "regular_work_sec",
                "standard_work_sec",
            ]),
        ),
        (
            "exception_infos",
            Schema::list(Schema::values(&["exception", "count", "duration"])),
        ),
        (
            "sp_items",
            Schema::list(Schema::values(&[
                "type",
                "vacation_id",
                "count",
                "duration",
                "time_type",
                "name",
            ])),
        ),
        (
            "overwork_info",
            Schema::values(&[
                "workday_over_sec",
                "restdays_over_sec",
                "holidays_over_sec",
                "workdays_over_as_vacation",
                "workdays_over_as_money",
                "restdays_over_as_vacation",
                "restdays_over_as_money",
                "holidays_over_as_vacation",
                "holidays_over_as_money",
            ]),
        ),
    ])
}

/// The record `source::dingtalk` builds: `columns` and `leave` hold only the
/// names the job lists.
// docs/vendors/dingtalk.md "monthly record"
pub fn dingtalk_month(columns: &[String], leave_names: &[String]) -> Schema {
    Schema::object([
        ("userid", Schema::Value),
        ("name", Schema::Value),
        ("departments", Schema::list(Schema::Value)),
        ("job_number", Schema::Value),
        ("title", Schema::Value),
        (
            "columns",
            Schema::named(columns, "the job's source.columns"),
        ),
        (
            "leave",
            Schema::named(leave_names, "the job's source.leave_names"),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::Mapping;
    use crate::toml_reader::SourceFile;

    fn shipped(name: &str) -> Mapping {
        let path = format!("{}/mappings/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        Mapping::parse(&SourceFile::new(path, text)).unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn the_shipped_wecom_mapping_reads_only_documented_fields() {
        let errors = shipped("wecom_monthly.toml").check_paths(&wecom_monthdata(), "WeCom");
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn the_shipped_dingtalk_mapping_fits_the_shipped_job_only() {
        let mapping = shipped("dingtalk_monthly.toml");
        let names = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let mut columns = names(&[
            "出勤天数",
            "休息天数",
            "工作时长",
            "迟到次数",
            "迟到时长",
            "早退次数",
            "缺卡次数",
            "旷工天数",
        ]);
        let leave = names(&["年假", "事假", "病假", "调休"]);
        assert!(mapping
            .check_paths(&dingtalk_month(&columns, &leave), "DingTalk")
            .is_empty());
        columns.retain(|c| c != "休息天数");
        let errors = mapping.check_paths(&dingtalk_month(&columns, &leave), "DingTalk");
        assert_eq!(errors.len(), 1, "{errors:?}");
        let e = &errors[0];
        assert_eq!(e.key, "fields.rest_days.from");
        assert!(e.line > 0 && e.column > 0);
        assert!(
            e.message
                .contains("path `columns.休息天数` is not in the DingTalk record")
                && e.message
                    .contains("`休息天数` is not in the job's source.columns"),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_misspelt_wecom_path_is_located_at_its_step_with_the_nearest_path() {
        let text = "key = [\"userid\"]\n[fields]\nuserid = \"base_info.acctid\"\nwork_hours = { from = \"summary_info.regular_work_secs\", default = 0 }\nmonth = \"$month\"\n";
        let mapping = Mapping::parse(&SourceFile::new("mappings/w.toml", text))
            .unwrap_or_else(|e| panic!("{e:?}"));
        let errors = mapping.check_paths(&wecom_monthdata(), "WeCom getcheckin_monthdata");
        assert_eq!(errors.len(), 1, "{errors:?}");
        // Line 4; the step `regular_work_secs` starts after `work_hours = { from = "summary_info.`.
        let column = "work_hours = { from = \"summary_info.".chars().count() + 1;
        assert_eq!(
            errors[0].to_string(),
            format!(
                "mappings/w.toml:4:{column}: `fields.work_hours.from`: path `summary_info.regular_work_secs` is not in the WeCom getcheckin_monthdata record: \
                 `summary_info` has no `regular_work_secs`; did you mean `summary_info.regular_work_sec`?"
            )
        );
    }
}
