//! The report's columns: listed once per client, the job's column names
//! resolved to ids, its leave names checked against the listing, and the
//! warning about a column DingTalk zeroes for old days.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::json;

use super::wire::{number, text};
use super::{DingtalkClient, GETATTCOLUMNS};
use crate::month::Month;
use crate::source::SourceError;

/// One column of the attendance report as `getattcolumns` lists it. Leave
/// columns have no id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ReportColumn {
    pub id: Option<i64>,
    pub name: String,
    pub alias: String,
}

/// A report column the job asked for, resolved to its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedColumn {
    pub name: String,
    pub id: i64,
}

impl DingtalkClient {
    /// Every report column, from `getattcolumns` (one metered call per client).
    async fn report_columns(&self) -> Result<Arc<Vec<ReportColumn>>, SourceError> {
        self.report_columns
            .get_or_try_init(|| async {
                let body = self.call_ok(GETATTCOLUMNS, &json!({})).await?;
                let Some(list) = body["result"]["columns"].as_array() else {
                    return Err(self.protocol(GETATTCOLUMNS, "no result.columns in the answer"));
                };
                let columns = list
                    .iter()
                    .map(|c| ReportColumn {
                        id: number(&c["id"]),
                        name: text(&c["name"]),
                        alias: text(&c["alias"]),
                    })
                    .filter(|c| !c.name.is_empty())
                    .collect();
                Ok(Arc::new(columns))
            })
            .await
            .cloned()
    }

    /// Asks for the report columns ahead of the first chunk that needs them.
    /// A failure is left for that chunk's pull to meet again and report.
    pub(super) async fn ask_columns_early(&self) {
        if !self.columns.is_empty() {
            let _ = self.report_columns().await;
        }
    }

    /// Resolves the job's `columns` (display names) to report column ids, in
    /// the job's order. An unknown, ambiguous or leave-type name is a
    /// [`SourceError::Config`] that lists the available names. No call is made
    /// when the job asks for no columns. `check --remote` can call this.
    pub async fn resolve_columns(&self) -> Result<Vec<ResolvedColumn>, SourceError> {
        if self.columns.is_empty() {
            return Ok(Vec::new());
        }
        let all = self.report_columns().await?;
        resolve(&self.columns, &all)
    }

    /// Configured leave names that `getattcolumns` does not list among its
    /// id-less leave columns (a warning for `check --remote`: the listing of
    /// leave types is not documented as complete).
    pub async fn unlisted_leave_names(&self) -> Result<Vec<String>, SourceError> {
        if self.leave_names.is_empty() {
            return Ok(Vec::new());
        }
        let all = self.report_columns().await?;
        Ok(self
            .leave_names
            .iter()
            .filter(|n| !all.iter().any(|c| c.id.is_none() && &c.name == *n))
            .cloned()
            .collect())
    }
}

/// Resolves configured column names against the report's columns.
fn resolve(wanted: &[String], all: &[ReportColumn]) -> Result<Vec<ResolvedColumn>, SourceError> {
    let mut resolved = Vec::new();
    let mut unknown = Vec::new();
    let mut problems = Vec::new();
    for name in wanted {
        let ids: Vec<i64> = all
            .iter()
            .filter(|c| &c.name == name)
            .filter_map(|c| c.id)
            .collect();
        match ids.as_slice() {
            [id] => resolved.push(ResolvedColumn {
                name: name.clone(),
                id: *id,
            }),
            [] if all.iter().any(|c| &c.name == name) => problems.push(format!(
                "\"{name}\" in source.columns is a leave type (DingTalk lists it without an id); move it to source.leave_names"
            )),
            [] => unknown.push(format!("\"{name}\"")),
            several => problems.push(format!(
                "DingTalk report column \"{name}\" in source.columns is ambiguous: {} columns have that name (ids {})",
                several.len(),
                several.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
            )),
        }
    }
    if unknown.is_empty() && problems.is_empty() {
        return Ok(resolved);
    }
    let mut available: Vec<&str> = Vec::new();
    for c in all.iter().filter(|c| c.id.is_some()) {
        if !available.contains(&c.name.as_str()) {
            available.push(&c.name);
        }
    }
    if !unknown.is_empty() {
        let noun = if unknown.len() == 1 {
            "column"
        } else {
            "columns"
        };
        problems.insert(
            0,
            format!(
                "unknown DingTalk report {noun} {} in source.columns",
                unknown.join(", ")
            ),
        );
    }
    Err(SourceError::Config(format!(
        "{}; available: {}",
        problems.join("; "),
        available.join(", ")
    )))
}

/// DingTalk fills 应出勤天数 only for days within 15 days of the call; older days
/// come back as 0 (docs/vendors/dingtalk.md "Report values"). Says so when a synced month has such days.
pub(super) fn warn_zeroed_columns(
    columns: &[String],
    job: &str,
    months: &[Month],
    now: DateTime<Utc>,
    tz: Tz,
) {
    const COLUMN: &str = "应出勤天数";
    if !columns.iter().any(|c| c == COLUMN) {
        return;
    }
    let fresh_from = (now - chrono::Duration::days(15))
        .with_timezone(&tz)
        .date_naive();
    for month in months {
        let stale_days = (0..month.days())
            .filter_map(|d| {
                month
                    .first_day()
                    .checked_add_days(chrono::Days::new(d.into()))
            })
            .filter(|day| *day < fresh_from)
            .count();
        if stale_days > 0 {
            tracing::warn!(job = %job, %month, stale_days,
                "{COLUMN} is zeroed by DingTalk for days more than 15 days old: {stale_days} day(s) of {month} will read 0; pull nightly to keep it, or leave it out of `columns`");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::dingtalk::testkit::*;

    #[tokio::test]
    async fn unknown_column_lists_the_available_names() {
        let sim = start(3, fast_sim()).await;
        let cfg = job(&sim, &["出勤天", "工作时长"], &[]);
        let client = client_for(&cfg);
        let e = client.resolve_columns().await.unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("unknown DingTalk report column \"出勤天\" in source.columns; available: 出勤天数, 休息天数, 工作时长"),
            "{text}"
        );
        assert!(!e.is_transient());
        // The pull stops with the same error, before any report call.
        let source = source_client(&cfg, Arc::new(CallStats::default()));
        let e = pull_all(&source, october(), after_october())
            .await
            .unwrap_err();
        assert!(matches!(e, SourceError::Config(_)), "{e}");
        let e = source.check_remote().await.unwrap_err();
        assert!(matches!(e, SourceError::Config(_)), "{e}");
        let ok = source_client(
            &job(&sim, &["出勤天数"], &["年假", "育儿假"]),
            Arc::default(),
        );
        assert_eq!(
            ok.check_remote().await.unwrap(),
            ["leave name \"育儿假\" in source.leave_names is not among the report's leave columns; check its spelling"]
        );
        assert_eq!(sim.calls(GETCOLUMNVAL), 0);

        let client = client_for(&job(&sim, &["年假", "x", "y"], &["年假", "育儿假"]));
        let text = client.resolve_columns().await.unwrap_err().to_string();
        assert!(
            text.starts_with("unknown DingTalk report columns \"x\", \"y\" in source.columns; \"年假\" in source.columns is a leave type"),
            "{text}"
        );
        assert_eq!(client.unlisted_leave_names().await.unwrap(), ["育儿假"]);
        // getattcolumns once per client.
        assert_eq!(client.report_columns().await.unwrap().len(), 36);
        assert_eq!(sim.calls(SIM_COLUMNS), 4);
    }

    #[test]
    fn ambiguous_columns_are_reported() {
        let all = vec![
            ReportColumn {
                id: Some(1),
                name: "加班时长".into(),
                alias: "a".into(),
            },
            ReportColumn {
                id: Some(2),
                name: "加班时长".into(),
                alias: "b".into(),
            },
            ReportColumn {
                id: Some(3),
                name: "出勤天数".into(),
                alias: "c".into(),
            },
        ];
        let r = resolve(&strings(&["出勤天数"]), &all).unwrap();
        assert_eq!(
            r,
            [ResolvedColumn {
                name: "出勤天数".into(),
                id: 3
            }]
        );
        let e = resolve(&strings(&["加班时长"]), &all)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "DingTalk report column \"加班时长\" in source.columns is ambiguous: 2 columns have that name (ids 1, 2); available: 加班时长, 出勤天数");
    }
}
