//! The per-employee report pull: `getcolumnval` and `getleavetimebynames`
//! for each employee of a chunk, summed into one record per employee-month.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

use super::columns::ResolvedColumn;
use super::people::Person;
use super::sums::{sum_column, Window};
use super::transport::CallError;
use super::wire::{number, text};
use super::{lock, DingtalkClient, GETCOLUMNVAL, GETLEAVETIME, MAX_PER_REPORT_CALL, VENDOR};
use crate::decimal::decimal_to_json;
use crate::http::call::Failure;
use crate::http::codes::Class;
use crate::month::{report_window, Month};
use crate::source::{Pulled, SourceError, SourceRecord};

const DATE_SUFFIX: &str = " 00:00:00";

/// How one employee-month failed.
enum EmployeeError {
    /// Reported as failed; the others go on.
    Failed(String),
    /// The user is gone (left, unknown): reported as absent.
    Absent,
    /// Stop the pull.
    Stop(SourceError),
    /// Not pulled because the pull stopped meanwhile: neither failed nor absent,
    /// the next run pulls it again.
    Halted,
}

impl DingtalkClient {
    /// The records of `userids` for `month` as of `now` (docs/vendors/dingtalk.md
    /// "The calls", 4–6), in the order of `userids`. A rejected employee-month (400002, a
    /// non-numeric value) is reported as failed, a user DingTalk no longer knows
    /// as absent; quota, credential and permission errors stop the pull.
    pub async fn month_data(
        &self,
        userids: &[String],
        month: Month,
        now: DateTime<Utc>,
        tz: Tz,
    ) -> Result<Pulled, SourceError> {
        let mut pulled = Pulled::default();
        let Some((_, end)) = report_window(month, now, tz) else {
            return Ok(pulled);
        };
        let last = end.with_timezone(&tz).date_naive().min(month.last_day());
        let window = Window {
            month,
            from: format!("{}{DATE_SUFFIX}", month.first_day()),
            to: format!("{last}{DATE_SUFFIX}"),
        };
        let columns = self.resolve_columns().await?;
        let people = self.people(userids).await?;
        // Several employees are pulled at once: one at a time, each call's latency
        // (not the quota) would set the pace, while the pacers keep every API
        // within its rate whatever the overlap. Once one employee stops the pull,
        // no further employee starts and no further call is sent; what the
        // others already got is kept, since those calls are paid for.
        let halt = AtomicBool::new(false);
        let (people, columns, window, halt) = (&people, &columns, &window, &halt);
        // By index: a closure over `&String` would not be provably `Send` for
        // every lifetime, which `tokio::spawn` of the pull needs.
        let pull_one = move |i: usize| async move {
            let userid = &userids[i];
            if halt.load(Ordering::SeqCst) {
                return (i, Err(EmployeeError::Halted));
            }
            let Some(Some(person)) = people.get(i) else {
                return (i, Err(EmployeeError::Absent));
            };
            let outcome = self
                .employee_month(userid, person, columns, window, halt)
                .await;
            (i, outcome)
        };
        let mut outcomes: Vec<Option<Result<Value, EmployeeError>>> =
            userids.iter().map(|_| None).collect();
        // Chunks pulled at once take turns to start their employees: the
        // next one starts once this one has started its last, and fills the
        // slots this one's last employees leave. Started side by side, both
        // would end together, at the month's end, and the last chunk's write
        // would wait a whole `batch_create` interval behind the one before.
        let mut turn = Some(self.pull_turn.lock().await);
        // Unordered, so that one employee held up by retries does not keep the
        // next ones from starting; the order is restored below.
        let mut running = FuturesUnordered::new();
        let mut next = 0;
        loop {
            while running.len() < self.employees_in_flight && next < userids.len() {
                running.push(pull_one(next));
                next += 1;
            }
            if next == userids.len() {
                turn.take();
            }
            let Some((i, outcome)) = running.next().await else {
                break;
            };
            if let Some(slot) = outcomes.get_mut(i) {
                *slot = Some(outcome);
            }
        }
        let mut halted = 0usize;
        for (userid, outcome) in userids.iter().zip(outcomes) {
            match outcome {
                Some(Ok(record)) => pulled.records.push(SourceRecord {
                    employee: userid.clone(),
                    record,
                }),
                Some(Err(EmployeeError::Failed(reason))) => {
                    tracing::warn!(userid = %crate::text::clean(userid), month = %month, %reason, "DingTalk employee-month failed");
                    pulled.failed.push((userid.clone(), reason));
                }
                Some(Err(EmployeeError::Absent)) => pulled.absent.push(userid.clone()),
                // The first in the chunk's order, so the message does not depend on timing.
                Some(Err(EmployeeError::Stop(e))) => {
                    pulled.stopped.get_or_insert(e);
                }
                Some(Err(EmployeeError::Halted)) | None => halted += 1,
            }
        }
        if pulled.stopped.is_some() {
            tracing::info!(month = %month, kept = pulled.records.len(), not_pulled = halted,
                "DingTalk pull stopped; keeping the records already pulled");
        }
        Ok(pulled)
    }

    /// A report call for one employee; per-employee failures are told apart.
    /// An error that stops the pull sets `halt` at once, so that calls still
    /// waiting at the pacer are not sent.
    async fn report_call(
        &self,
        endpoint: &str,
        body: &Value,
        halt: &AtomicBool,
    ) -> Result<Value, EmployeeError> {
        match self.call_unless(endpoint, body, Some(halt)).await {
            Ok(v) => Ok(v),
            Err(Failure::Api(f)) if f.class == Class::Record => Err(EmployeeError::Failed(
                format!("{VENDOR} {endpoint}: errcode {} ({})", f.code, f.message),
            )),
            Err(Failure::Api(f)) if f.class == Class::NotFound => Err(EmployeeError::Absent),
            Err(Failure::Vendor(CallError::Halted)) => Err(EmployeeError::Halted),
            Err(e) => {
                halt.store(true, Ordering::SeqCst);
                Err(EmployeeError::Stop(self.error(endpoint, e)))
            }
        }
    }

    /// The employee's report columns summed over the window (`getcolumnval`,
    /// ≤20 columns a call).
    async fn column_sums<'c>(
        &self,
        userid: &str,
        columns: &'c [ResolvedColumn],
        window: &Window,
        halt: &AtomicBool,
    ) -> Result<HashMap<&'c str, Decimal>, EmployeeError> {
        let mut sums = HashMap::new();
        for chunk in columns.chunks(MAX_PER_REPORT_CALL) {
            let ids: Vec<String> = chunk.iter().map(|c| c.id.to_string()).collect();
            let body = json!({
                "userid": userid,
                "column_id_list": ids.join(","),
                "from_date": window.from,
                "to_date": window.to,
            });
            let answer = self.report_call(GETCOLUMNVAL, &body, halt).await?;
            for cv in answer["result"]["column_vals"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let Some(column) =
                    number(&cv["column_vo"]["id"]).and_then(|id| chunk.iter().find(|c| c.id == id))
                else {
                    continue;
                };
                let total = sum_column(
                    window,
                    &column.name,
                    cv["column_vals"].as_array(),
                    &cv["fixed_value"],
                )
                .map_err(|why| EmployeeError::Failed(format!("{VENDOR} {GETCOLUMNVAL}: {why}")))?;
                sums.insert(column.name.as_str(), total);
            }
        }
        Ok(sums)
    }

    /// The employee's configured leave types summed over the window
    /// (`getleavetimebynames`, ≤20 names a call).
    async fn leave_sums(
        &self,
        userid: &str,
        window: &Window,
        halt: &AtomicBool,
    ) -> Result<HashMap<&str, Decimal>, EmployeeError> {
        let mut leave = HashMap::new();
        for chunk in self.leave_names.chunks(MAX_PER_REPORT_CALL) {
            let body = json!({
                "userid": userid,
                "leave_names": chunk.join(","),
                "from_date": window.from,
                "to_date": window.to,
            });
            let answer = self.report_call(GETLEAVETIME, &body, halt).await?;
            for c in answer["result"]["columns"].as_array().into_iter().flatten() {
                let name = text(&c["columnvo"]["name"]);
                let Some(name) = chunk.iter().find(|n| **n == name) else {
                    continue;
                };
                let total = sum_column(window, name, c["columnvals"].as_array(), &c["fixed_value"])
                    .map_err(|why| {
                        EmployeeError::Failed(format!("{VENDOR} {GETLEAVETIME}: {why}"))
                    })?;
                leave.insert(name.as_str(), total);
            }
        }
        Ok(leave)
    }

    async fn employee_month(
        &self,
        userid: &str,
        person: &Person,
        columns: &[ResolvedColumn],
        window: &Window,
        halt: &AtomicBool,
    ) -> Result<Value, EmployeeError> {
        let failed = |endpoint: &str, why: String| {
            EmployeeError::Failed(format!("{VENDOR} {endpoint}: {why}"))
        };
        // Two different APIs, each with its own quota: asked at the same time.
        let (sums, leave) = futures::future::try_join(
            self.column_sums(userid, columns, window, halt),
            self.leave_sums(userid, window, halt),
        )
        .await?;

        let mut column_values = Map::new();
        for c in columns {
            match sums.get(c.name.as_str()) {
                Some(total) => {
                    let v = decimal_to_json(*total).ok_or_else(|| {
                        failed(
                            GETCOLUMNVAL,
                            format!("column \"{}\": the sum is out of range", c.name),
                        )
                    })?;
                    column_values.insert(c.name.clone(), v);
                }
                None => {
                    tracing::warn!(userid = %crate::text::clean(userid), column = %c.name, "DingTalk answered without this report column")
                }
            }
        }
        let mut leave_values = Map::new();
        for name in &self.leave_names {
            match leave.get(name.as_str()) {
                Some(total) => {
                    let v = decimal_to_json(*total).ok_or_else(|| {
                        failed(
                            GETLEAVETIME,
                            format!("leave \"{name}\": the sum is out of range"),
                        )
                    })?;
                    leave_values.insert(name.clone(), v);
                }
                None => {
                    if lock(&self.leave_warned).insert(name.clone()) {
                        tracing::warn!(leave = %name, "DingTalk's answer does not contain this configured leave name; check source.leave_names");
                    }
                }
            }
        }
        Ok(json!({
            "userid": userid,
            "name": person.name,
            "departments": person.departments,
            "job_number": person.job_number,
            "title": person.title,
            "columns": column_values,
            "leave": leave_values,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::dingtalk::testkit::*;

    /// Two chunks pulled at once (as the month's pull does) take turns: the
    /// first ends about halfway, so its records are written while the second
    /// is pulled, and the month's last write does not queue behind another.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chunks_pulled_at_once_take_turns_and_end_apart() {
        let sim = start(
            80,
            DingtalkSimConfig {
                latency: Duration::from_millis(5),
                ..fast_sim()
            },
        )
        .await;
        let mut cfg = job(&sim, &["出勤天数"], &["年假"]);
        // 40 employees a chunk at 100/s for each report API: 0.4 s a chunk.
        for (endpoint, rate) in &mut cfg.limits {
            if endpoint == GETCOLUMNVAL || endpoint == GETLEAVETIME {
                *rate = Rate::per_second(100);
            }
        }
        let client = client_for(&cfg);
        let employees = client.employees(&Scope::default()).await.unwrap();
        let (a, b) = employees.split_at(40);
        let started = Instant::now();
        let ((first, first_done), (second, second_done)) = tokio::join!(
            timed_pull(&client, a, started),
            timed_pull(&client, b, started)
        );
        assert_eq!((first, second), (40, 40));
        let (first_done, second_done) = (first_done.as_secs_f64(), second_done.as_secs_f64());
        // Taking turns, the first ends near half the second's time (~0.4 s of
        // ~0.8 s); side by side both end together (ratio ~1). 0.85 tells them
        // apart on a loaded machine too (0.706 was measured under a full test
        // run on two cores).
        assert!(
            first_done < 0.85 * second_done,
            "the first chunk ended at {first_done:.3} s, the second at {second_done:.3} s"
        );
        assert_eq!(sim.quota_violations(), 0);
    }

    /// October's records of `chunk`, and when they were all in after `started`.
    async fn timed_pull(
        client: &DingtalkClient,
        chunk: &[String],
        started: Instant,
    ) -> (usize, Duration) {
        let pulled = client
            .month_data(chunk, october(), after_october(), SH)
            .await
            .unwrap();
        (pulled.records.len(), started.elapsed())
    }

    #[tokio::test]
    async fn twenty_five_columns_take_two_calls_per_user() {
        let sim = start(5, fast_sim()).await;
        let cfg = job(&sim, &DEFAULT_COLUMNS[..25], &[]);
        let source = source_client(&cfg, Arc::new(CallStats::default()));
        assert_eq!(source.metering().map(|m| m.costs().per_employee), Some(2));
        let (_, pulled) = pull_all(&source, october(), after_october()).await.unwrap();
        assert_eq!(pulled.records.len(), 5);
        check_records(&sim, &cfg, &pulled, october());
        assert_eq!(sim.calls(GETCOLUMNVAL), 10);
        assert_eq!(sim.calls(GETLEAVETIME), 0);
        // 标准工作时长 has a fixed value.
        assert_eq!(
            pulled.records[0].record["columns"]["标准工作时长"],
            json!(8)
        );
        assert_eq!(pulled.records[0].record["leave"], json!({}));

        let cfg = job(&sim, &DEFAULT_COLUMNS[..21], &["年假"; 41]);
        assert_eq!(super::super::call_costs(&cfg).per_employee, 2 + 3);
        assert_eq!(calls_for(&cfg, 100, 2), 1001);
        assert_eq!(calls_for(&job(&sim, &[], &[]), 10, 1), 0);
    }

    #[tokio::test]
    async fn quota_exhausted_stops_with_the_reset_message() {
        let config = DingtalkSimConfig {
            monthly_quota: Some(5),
            ..fast_sim()
        };
        let sim = start(10, config).await;
        let cfg = job(&sim, &["出勤天数"], &[]);
        let source = source_client(&cfg, Arc::new(CallStats::default()));
        let e = pull_all(&source, october(), after_october())
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("errcode 90020"), "{text}");
        assert!(text.contains("next calendar month"), "{text}");
        assert!(!e.is_transient());
        // One column lookup and four employees fit. Employees are pulled several
        // at once, so the calls already under way when the first refusal comes
        // back are refused too, but none is retried and none starts afterwards.
        let in_flight = client_for(&cfg).employees_in_flight;
        assert!(in_flight > 1, "{in_flight}");
        let refused = sim.quota_refusals();
        assert!((1..=in_flight).contains(&refused), "{refused}");
        assert_eq!(sim.calls(GETCOLUMNVAL), 4 + refused);

        // The records the quota paid for are kept, alongside the stop.
        let sim = start(
            10,
            DingtalkSimConfig {
                monthly_quota: Some(5),
                ..fast_sim()
            },
        )
        .await;
        let cfg = job(&sim, &["出勤天数"], &[]);
        let client = client_for(&cfg);
        let employees = client.employees(&Scope::default()).await.unwrap();
        let pulled = client
            .month_data(&employees, october(), after_october(), SH)
            .await
            .unwrap();
        assert_eq!(pulled.records.len(), 4);
        check_records(&sim, &cfg, &pulled, october());
        assert!(pulled.failed.is_empty() && pulled.absent.is_empty());
        let stop = pulled.stopped.map(|e| e.to_string()).unwrap_or_default();
        assert!(stop.contains("errcode 90020"), "{stop}");
        // In the chunk's order, as pulled one at a time.
        let order: Vec<usize> = pulled
            .records
            .iter()
            .filter_map(|r| employees.iter().position(|e| *e == r.employee))
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
        assert_eq!(client.metered_calls(), 1 + sim.calls(GETCOLUMNVAL) as u64);
    }

    #[tokio::test]
    async fn text_values_fail_the_employee_month_and_name_column_date_value() {
        let sim = start(4, fast_sim()).await;
        let cfg = job(&sim, &["出勤天数", "班次"], &[]);
        let source = source_client(&cfg, Arc::new(CallStats::default()));
        let (_, pulled) = pull_all(&source, october(), after_october()).await.unwrap();
        assert!(pulled.records.is_empty());
        assert_eq!(pulled.failed.len(), 4);
        let reason = &pulled.failed[0].1;
        assert!(
            reason.starts_with(
                "DingTalk topapi/attendance/getcolumnval: column \"班次\" on 2026-10-01: value \""
            ),
            "{reason}"
        );
        assert!(reason.ends_with("\" is not a number"), "{reason}");

        let cfg = job(&sim, &["考勤组"], &[]);
        let client = client_for(&cfg);
        let employees = client.employees(&Scope::default()).await.unwrap();
        let pulled = client
            .month_data(&employees[..1], october(), after_october(), SH)
            .await
            .unwrap();
        let reason = &pulled.failed[0].1;
        assert!(
            reason.contains("column \"考勤组\": fixed value \""),
            "{reason}"
        );
    }

    #[tokio::test]
    async fn per_user_rejections_and_unknown_users() {
        let sim = start(6, fast_sim()).await;
        let cfg = job(&sim, &["出勤天数"], &[]);
        let client = client_for(&cfg);
        let mut employees = client.employees(&Scope::default()).await.unwrap();
        sim.inject_answer(
            GETCOLUMNVAL,
            json!({"errcode": 400002, "errmsg": "参数错误"}),
            1,
        );
        sim.inject_answer(
            GETCOLUMNVAL,
            json!({"errcode": 33012, "errmsg": "无效的USERID"}),
            1,
        );
        employees.push("NoSuchUser".into());
        let pulled = client
            .month_data(&employees, october(), after_october(), SH)
            .await
            .unwrap();
        // Employees are pulled several at once, so which one meets which injected
        // answer depends on timing; the chunk's order is kept in every list.
        assert_eq!(pulled.records.len(), 4);
        check_records(&sim, &cfg, &pulled, october());
        assert_eq!(pulled.failed.len(), 1);
        assert_eq!(
            pulled.failed[0].1,
            "DingTalk topapi/attendance/getcolumnval: errcode 400002 (参数错误)"
        );
        assert_eq!(pulled.absent.len(), 2);
        assert_eq!(pulled.absent[1], "NoSuchUser");
        let rejected = [&pulled.failed[0].0, &pulled.absent[0]];
        assert_ne!(rejected[0], rejected[1]);
        let records: Vec<&String> = pulled.records.iter().map(|r| &r.employee).collect();
        let expected: Vec<&String> = employees[..6]
            .iter()
            .filter(|e| !rejected.contains(e))
            .collect();
        assert_eq!(records, expected);

        // Transient answers are retried; an auth exception stops with its sub-code.
        sim.inject_answer(
            GETCOLUMNVAL,
            json!({"errcode": -1, "errmsg": "系统繁忙"}),
            2,
        );
        sim.inject_answer(
            GETCOLUMNVAL,
            json!({"errcode": 88, "errmsg": "ding talk error", "sub_code": "40078", "sub_msg": "不存在的临时授权码"}),
            1,
        );
        let e = stopped(
            client
                .month_data(&employees[..1], october(), after_october(), SH)
                .await,
        );
        assert!(
            e.contains("errcode 88 (ding talk error; sub-code 40078: 不存在的临时授权码)"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn month_in_progress_and_future_months() {
        let sim = start(3, fast_sim()).await;
        let cfg = job(&sim, &DEFAULT_COLUMNS[..8], &["年假", "事假"]);
        let client = client_for(&cfg);
        let employees = client.employees(&Scope::default()).await.unwrap();
        let day = |d: u32| NaiveDate::from_ymd_opt(2026, 10, d).unwrap();
        for (now, last) in [
            ("2026-10-15T04:00:00Z", 15),
            ("2026-09-30T16:00:00Z", 1), // 00:00 on the 1st in Shanghai
        ] {
            let pulled = client
                .month_data(&employees, october(), at(now), SH)
                .await
                .unwrap();
            assert_eq!(pulled.records.len(), 3);
            for r in &pulled.records {
                let expected = sim
                    .expected_period_record(
                        &r.employee,
                        day(1),
                        day(last),
                        &cfg.columns,
                        &cfg.leave_names,
                    )
                    .unwrap();
                assert_eq!(r.record, expected, "{now}");
            }
        }
        let calls = sim.calls(GETCOLUMNVAL);
        let pulled = client
            .month_data(
                &employees,
                Month::new(2026, 12).unwrap(),
                after_october(),
                SH,
            )
            .await
            .unwrap();
        assert!(pulled.records.is_empty() && pulled.absent.is_empty());
        assert_eq!(sim.calls(GETCOLUMNVAL), calls);
    }
}
