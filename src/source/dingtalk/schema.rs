//! What a DingTalk record can hold, for checking mapping paths
//! ([`crate::mapping::Mapping::check_paths`]).

use crate::config::job::DingtalkSource;
use crate::mapping::Schema;

impl DingtalkSource {
    /// The record this source produces, and its name for messages.
    pub fn record_schema(&self) -> (Schema, &'static str) {
        (
            dingtalk_month(&self.columns, &self.leave_names),
            "DingTalk monthly",
        )
    }
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
    use crate::config::SourceFile;
    use crate::mapping::Mapping;

    fn shipped(name: &str) -> Mapping {
        let path = format!("{}/mappings/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        Mapping::parse(&SourceFile::new(path, text)).unwrap_or_else(|e| panic!("{e:?}"))
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
}
