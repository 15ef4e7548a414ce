//! The days of an approval's form, and the look-up against the simulator.

use serde_json::json;

use super::*;
use crate::source::dingtalk::testkit::{client_for, fast_sim, job, start};

fn day(s: &str) -> Day {
    Day::Date(NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap())
}

fn days(touched: &[Touched]) -> Vec<Day> {
    touched.iter().map(|t| t.day).collect()
}

#[test]
fn a_leave_field_touches_each_of_its_days() {
    let instance = json!({"originatorUserId": "u1", "status": "COMPLETED", "result": "agree", "formComponentValues": [
        {"componentType": "TextField", "value": "2026-01-01 not a range"},
        {"componentType": "DDHolidayField",
         "value": "[\"2026-10-30 上午\",\"2026-11-02 下午\",2.5,\"halfDay\",\"年假\"]"},
        {"componentType": "DDDateRangeField", "value": ["2026-11-02", "2026-11-01"]},
    ]});
    let t = touched(&instance).unwrap();
    assert!(t.iter().all(|t| t.employee == "u1"));
    assert_eq!(
        days(&t),
        ["2026-10-30", "2026-10-31", "2026-11-01", "2026-11-02"].map(day)
    );
}

#[test]
fn odd_forms_touch_nothing_and_long_ranges_are_capped() {
    for instance in [
        json!(null),
        json!({"formComponentValues": [{"value": "[\"2026-10-30\",\"2026-10-31\"]"}]}),
        json!({"originatorUserId": "u", "formComponentValues": "x"}),
        json!({"originatorUserId": "u", "formComponentValues": [{"value": "[\"soon\",\"later\"]"}, {"value": 3}, {"value": "[\"2026-10-30\"]"}]}),
    ] {
        assert_eq!(touched(&instance), None, "{instance}");
    }
    let year = json!({"originatorUserId": "u", "formComponentValues": [{"value": ["2026-01-01", "2026-12-31"]}]});
    let t = touched(&year).unwrap();
    assert_eq!(t.len(), MAX_DAYS as usize);
    assert_eq!(t[0].day, day("2026-01-01"));
}

#[test]
fn approvals_under_way_or_refused_touch_nothing_yet() {
    let with = |status: &str, result: &str| {
        json!({"originatorUserId": "u", "status": status, "result": result,
            "formComponentValues": [{"value": ["2026-10-05", "2026-10-05"]}]})
    };
    assert_eq!(touched(&with("RUNNING", "")), None);
    assert_eq!(touched(&with("NEW", "")), None);
    assert_eq!(touched(&with("COMPLETED", "refuse")), None);
    for (status, result) in [
        ("COMPLETED", "agree"),
        ("TERMINATED", ""),
        ("CANCELED", "agree"),
    ] {
        let t = touched(&with(status, result)).unwrap_or_default();
        assert_eq!(days(&t), [day("2026-10-05")], "{status} {result}");
    }
}

#[tokio::test]
async fn looks_up_an_approval_with_a_fresh_token_when_refused() {
    let sim = start(2, fast_sim()).await;
    sim.add_leave_approval("pi-1", "u7", "2026-10-31", "2026-11-01");
    let client = client_for(&job(&sim, &["出勤天数"], &[]));
    let api: Url = sim.base_url().parse().unwrap();
    let t = lookup(&client, &api, "pi-1").await.unwrap().unwrap();
    assert_eq!(days(&t), ["2026-10-31", "2026-11-01"].map(day));
    assert_eq!(t[0].employee, "u7");

    // The token turns invalid after one more call: refused with a 401, fetched
    // again, asked again.
    sim.set_token_expires_after_calls(Some(1));
    let issued = sim.tokens_issued();
    let t = lookup(&client, &api, "pi-1").await.unwrap().unwrap();
    assert_eq!(t.len(), 2);
    assert_eq!(sim.tokens_issued(), issued + 1);

    sim.set_token_expires_after_calls(None);
    let e = lookup(&client, &api, "pi-unknown").await.unwrap_err();
    assert!(e.to_string().contains("InvalidParameter"), "{e}");
}
