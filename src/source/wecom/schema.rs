//! What a WeCom record can hold, for checking mapping paths
//! ([`crate::mapping::Mapping::check_paths`]).

use crate::config::job::WecomSource;
use crate::mapping::Schema;

impl WecomSource {
    /// The record this source produces, and its name for messages.
    pub fn record_schema(&self) -> (Schema, &'static str) {
        (wecom_monthdata(), "WeCom getcheckin_monthdata")
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SourceFile;
    use crate::mapping::Mapping;

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
