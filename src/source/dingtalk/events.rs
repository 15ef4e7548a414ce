//! DingTalk event payloads made into [`Change`]s (docs/vendors/events.md
//! "DingTalk HTTP push and the failed list"): the same reading serves Stream
//! mode (the frame's `data`), HTTP push (the decrypted object, fields at the
//! top level) and the failed-push list (the object under the item's tag).
//!
//! Nothing here fails: a payload with missing or odd fields is a change that
//! touches nothing, still counted under its kind.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

use crate::events::{Change, Day, Touched};

pub const CHECK_RECORD: &str = "attendance_check_record";
pub const DAILY_SUMMARY: &str = "attend_user_daily_summary_refresh";
pub const BOSS_CHECK: &str = "attend_bossCheck_change";
pub const APPROVE_STATUS: &str = "attendance_approve_status_change";
pub const BPMS_INSTANCE: &str = "bpms_instance_change";
pub const CHECK_URL: &str = "check_url";

/// What the event of type `kind` with id `event_id` says changed.
pub fn change(kind: &str, event_id: &str, data: &Value) -> Change {
    let mut touched = Vec::new();
    let mut lookups = Vec::new();
    match kind {
        CHECK_RECORD => {
            let punches = data.get("dataList").and_then(Value::as_array);
            for punch in punches.into_iter().flatten() {
                if let (Some(employee), Some(day)) = (
                    text(punch.get("userId")),
                    punch.get("checkTime").and_then(instant),
                ) {
                    touched.push(Touched { employee, day });
                }
            }
        }
        DAILY_SUMMARY | BOSS_CHECK => {
            if let (Some(employee), Some(day)) =
                (text(data.get("userId")), data.get("workDate").and_then(day))
            {
                touched.push(Touched { employee, day });
            }
        }
        APPROVE_STATUS | BPMS_INSTANCE => {
            lookups.extend(text(data.get("processInstanceId")));
        }
        _ => {}
    }
    Change {
        event_id: event_id.to_owned(),
        kind: kind.to_owned(),
        touched,
        lookups,
    }
}

/// A non-empty id, sent as text or as a number.
fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Milliseconds since the epoch, as a number or as text.
fn millis(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn instant(v: &Value) -> Option<Day> {
    millis(v)
        .and_then(DateTime::<Utc>::from_timestamp_millis)
        .map(Day::At)
}

/// `workDate`: `"2023-12-12"` or `"2020-11-10 00:00:00"` (a calendar date,
/// whatever the time says), or milliseconds.
fn day(v: &Value) -> Option<Day> {
    if let Value::String(s) = v {
        let s = s.trim();
        let date = s.split([' ', 'T']).next().unwrap_or(s);
        if let Ok(d) = NaiveDate::parse_from_str(date, "%Y-%m-%d") {
            return Some(Day::Date(d));
        }
    }
    instant(v)
}

/// An in-memory [`crate::events::Sink`] for the folder's tests: what it
/// recorded and when, and a switch to make it fail.
#[cfg(test)]
pub(super) mod memory {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::time::Instant;

    use crate::events::{Change, Recorded, Sink, SinkError, SinkFuture};

    pub struct MemorySink {
        pub records: Mutex<Vec<(Instant, Change)>>,
        /// Records this many changes, then fails every one.
        pub fail_after: AtomicUsize,
    }

    impl MemorySink {
        pub fn new() -> MemorySink {
            MemorySink::failing_after(usize::MAX)
        }

        pub fn failing_after(n: usize) -> MemorySink {
            MemorySink {
                records: Mutex::new(Vec::new()),
                fail_after: AtomicUsize::new(n),
            }
        }

        pub fn changes(&self) -> Vec<Change> {
            let records = self.records.lock().unwrap();
            records.iter().map(|(_, c)| c.clone()).collect()
        }
    }

    impl Sink for MemorySink {
        fn record(&self, change: Change) -> SinkFuture<'_> {
            Box::pin(async move {
                // Durable "later": the caller must wait for this future.
                tokio::task::yield_now().await;
                let mut records = self.records.lock().unwrap();
                if records.len() >= self.fail_after.load(Ordering::SeqCst) {
                    return Err(SinkError("the disk is full".into()));
                }
                records.push((Instant::now(), change));
                Ok(Recorded::New)
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn date(s: &str) -> Day {
        Day::Date(NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap())
    }

    fn at_ms(ms: i64) -> Day {
        Day::At(DateTime::from_timestamp_millis(ms).unwrap())
    }

    fn touched(employee: &str, day: Day) -> Touched {
        Touched {
            employee: employee.to_owned(),
            day,
        }
    }

    #[test]
    fn a_check_record_touches_each_punch() {
        let data = json!({"dataList": [
            {"userId": "0126", "corpId": "ding1", "checkTime": 1570791880000_i64, "checkByUser": true},
            {"userId": "0127", "checkTime": "1570791990000"},
            {"userId": "", "checkTime": 1570791880000_i64},
            {"userId": "0128"},
        ]});
        let c = change(CHECK_RECORD, "ev1", &data);
        assert_eq!(c.event_id, "ev1");
        assert_eq!(c.kind, CHECK_RECORD);
        assert_eq!(
            c.touched,
            vec![
                touched("0126", at_ms(1_570_791_880_000)),
                touched("0127", at_ms(1_570_791_990_000)),
            ]
        );
        assert!(c.lookups.is_empty());
    }

    #[test]
    fn a_daily_summary_touches_its_work_date() {
        let c = change(
            DAILY_SUMMARY,
            "ev2",
            &json!({"userId": "u1", "workDate": "2023-12-12"}),
        );
        assert_eq!(c.touched, vec![touched("u1", date("2023-12-12"))]);
    }

    #[test]
    fn a_boss_check_touches_the_date_of_its_work_date() {
        let c = change(
            BOSS_CHECK,
            "ev3",
            &json!({"userId": 42, "workDate": "2020-11-10 00:00:00", "action": "x"}),
        );
        assert_eq!(c.touched, vec![touched("42", date("2020-11-10"))]);
    }

    #[test]
    fn approvals_are_looked_up_later() {
        for kind in [APPROVE_STATUS, BPMS_INSTANCE] {
            let c = change(
                kind,
                "ev4",
                &json!({"processInstanceId": "pi-1", "staffId": "u1", "approveType": 1}),
            );
            assert!(c.touched.is_empty(), "{kind}");
            assert_eq!(c.lookups, vec!["pi-1".to_owned()], "{kind}");
            assert_eq!(c.kind, kind);
        }
        assert!(change(APPROVE_STATUS, "ev5", &json!({})).lookups.is_empty());
    }

    #[test]
    fn other_kinds_and_junk_touch_nothing() {
        let junk = [
            json!(null),
            json!("text"),
            json!([1, 2]),
            json!({"dataList": "not a list"}),
            json!({"dataList": [null, 3, {"userId": {}, "checkTime": []}]}),
            json!({"dataList": [{"userId": "u", "checkTime": "soon"}]}),
            json!({"dataList": [{"userId": "u", "checkTime": 1e300}]}),
            json!({"userId": "u", "workDate": "12/12/2023"}),
            json!({"userId": null, "workDate": "2023-12-12"}),
            json!({"processInstanceId": ["x"]}),
        ];
        for kind in [
            CHECK_RECORD,
            DAILY_SUMMARY,
            BOSS_CHECK,
            APPROVE_STATUS,
            CHECK_URL,
            "user_add_org",
        ] {
            for data in &junk {
                let c = change(kind, "e", data);
                assert!(c.touched.is_empty(), "{kind} {data}");
                assert!(c.lookups.is_empty(), "{kind} {data}");
                assert_eq!(c.kind, kind);
            }
        }
        // A well-formed payload under a kind that says nothing about attendance.
        let c = change(
            CHECK_URL,
            "e",
            &json!({"userId": "u", "workDate": "2023-12-12"}),
        );
        assert!(c.touched.is_empty());
    }
}
