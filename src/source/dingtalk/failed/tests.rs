//! Draining the simulator's failed list: paging, wrapped items, and the order
//! of sink records and list calls when the sink fails partway.

use std::sync::atomic::Ordering;

use super::*;
use crate::events::Day;
use crate::source::dingtalk::events::memory::MemorySink;
use crate::source::dingtalk::events::{BOSS_CHECK, CHECK_RECORD, DAILY_SUMMARY};
use crate::source::dingtalk::testkit::*;
use attendsync_sim::dingtalk::{PushConfig, FAILED_LIST as SIM_FAILED_LIST};

/// Events `0..n`: daily summaries of user `u{k}` on 2026-10-{k+1}.
fn fill(sim: &DingtalkSim, n: usize) {
    for k in 0..n {
        sim.add_failed(
            DAILY_SUMMARY,
            json!({"userId": format!("u{k}"), "workDate": format!("2026-10-{:02}", k + 1)}),
        );
    }
}

fn users(changes: &[Change]) -> Vec<String> {
    changes
        .iter()
        .map(|c| c.touched[0].employee.clone())
        .collect()
}

fn list_calls(sim: &DingtalkSim) -> Vec<Instant> {
    sim.call_log()
        .iter()
        .filter(|c| c.endpoint == SIM_FAILED_LIST)
        .map(|c| c.at)
        .collect()
}

/// Every change recorded before the list call that follows its page.
fn recorded_before_next_call(sink: &MemorySink, calls: &[Instant], page: usize) {
    let records = sink.records.lock().unwrap();
    for (k, (at, change)) in records.iter().enumerate() {
        let read_by = calls[k / page];
        assert!(
            *at > read_by,
            "{} recorded before it was read",
            change.event_id
        );
        if let Some(next) = calls.get(k / page + 1) {
            assert!(
                at < next,
                "{} recorded after the next list call",
                change.event_id
            );
        }
    }
}

#[tokio::test]
async fn drains_every_page_in_order() {
    let sim = start(2, fast_sim()).await;
    sim.set_failed_page_size(3);
    fill(&sim, 5);
    // Events whose pushes failed, as DingTalk lists them.
    let pusher = sim
        .pusher(PushConfig {
            retry_delays: vec![Duration::ZERO],
            ..PushConfig::new(
                &closed_url(),
                "t",
                "4g5j64qlyl3zvetqxz5jiocdr586fn2zvjpa8zls3ij",
                "dingapp",
            )
        })
        .unwrap();
    let punch = json!({"dataList": [{"userId": "u5", "checkTime": "1791234567000"}]});
    assert!(!pusher.push(CHECK_RECORD, "ev-push", punch).await);
    sim.set_failed_wrapped(true);
    sim.add_failed(
        BOSS_CHECK,
        json!({"userId": "u6", "workDate": "2026-10-07 00:00:00", "eventId": "ev-6"}),
    );
    sim.add_failed("user_add_org", json!({"userid": ["u7"]}));
    assert_eq!(sim.failed_list_len(), 8);

    let client = client_for(&job(&sim, &["出勤天数"], &[]));
    let sink = MemorySink::new();
    let mut carried = Vec::new();
    let drained = drain(&client, &sink, &mut carried).await.unwrap();
    assert_eq!(drained, Drained { items: 8, pages: 3 });
    assert!(carried.is_empty());
    let changes = sink.changes();
    assert_eq!(
        users(&changes[..7]),
        ["u0", "u1", "u2", "u3", "u4", "u5", "u6"]
    );
    assert_eq!(
        changes[0].touched[0].day,
        Day::Date(NaiveDate::from_ymd_opt(2026, 10, 1).unwrap())
    );
    assert_eq!(changes[5].kind, CHECK_RECORD);
    assert_eq!(
        changes[5].touched[0].day,
        Day::At(DateTime::from_timestamp_millis(1_791_234_567_000).unwrap())
    );
    // Unwrapped from `callbackData`, with its own event id.
    assert_eq!(changes[6].event_id, "ev-6");
    assert_eq!(
        changes[6].touched[0].day,
        Day::Date(NaiveDate::from_ymd_opt(2026, 10, 7).unwrap())
    );
    // Counted, touching nothing.
    assert_eq!(changes[7].kind, "user_add_org");
    assert!(changes[7].touched.is_empty());
    // Without an event id: a stable hash, distinct per event.
    let mut ids: Vec<&str> = changes.iter().map(|c| c.event_id.as_str()).collect();
    assert!(ids[0].starts_with("sha256:"));
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 8);
    recorded_before_next_call(&sink, &list_calls(&sim), 3);

    // The next drain's call clears the last page: nothing is read twice.
    let again = drain(&client, &sink, &mut carried).await.unwrap();
    assert_eq!(again, Drained { items: 0, pages: 1 });
    assert_eq!(sim.failed_list_len(), 0);
}

#[test]
fn an_item_read_twice_has_the_same_event_id() {
    let item = json!({"call_back_tag": DAILY_SUMMARY, "event_time": 1_606_126_433_000_i64,
        DAILY_SUMMARY: {"userId": "u", "workDate": "2026-10-01"}});
    let wrapped = json!({"call_back_tag": DAILY_SUMMARY, "event_time": "1606126433000",
        DAILY_SUMMARY: {"callbackData": "{\"userId\":\"u\",\"workDate\":\"2026-10-01\"}"}});
    let (a, b) = (item_change(&item), item_change(&wrapped));
    assert_eq!(a, item_change(&item.clone()));
    assert_eq!(a.touched, b.touched);
    assert_eq!(a.event_id, b.event_id);
    let later = json!({"call_back_tag": DAILY_SUMMARY, "event_time": 1_606_126_433_001_i64,
        DAILY_SUMMARY: {"userId": "u", "workDate": "2026-10-01"}});
    assert_ne!(item_change(&later).event_id, a.event_id);
    assert!(item_change(&json!("junk")).touched.is_empty());
}

#[tokio::test]
async fn a_sink_failure_stops_the_drain_and_carries_the_page() {
    let sim = start(2, fast_sim()).await;
    sim.set_failed_page_size(3);
    fill(&sim, 8);
    let client = client_for(&job(&sim, &["出勤天数"], &[]));
    // Records four: the first page and one of the second.
    let sink = MemorySink::failing_after(4);
    let mut carried = Vec::new();
    let e = drain(&client, &sink, &mut carried).await.unwrap_err();
    match &e {
        DrainError::Sink { drained, .. } => assert_eq!(*drained, Drained { items: 4, pages: 2 }),
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains("the disk is full"), "{e}");
    // The list was not called again after the failure.
    assert_eq!(sim.failed_list_calls(), 2);
    assert_eq!(users(&carried), ["u4", "u5"]);
    recorded_before_next_call(&sink, &list_calls(&sim), 3);

    // Still failing: the carried changes are retried first and the list is
    // not called (its next call would clear nothing more, but the rest waits).
    let e = drain(&client, &sink, &mut carried).await.unwrap_err();
    assert!(matches!(
        e,
        DrainError::Sink {
            drained: Drained { items: 0, pages: 0 },
            ..
        }
    ));
    assert_eq!(sim.failed_list_calls(), 2);

    // The sink recovers: every event once, in order.
    sink.fail_after.store(usize::MAX, Ordering::SeqCst);
    let drained = drain(&client, &sink, &mut carried).await.unwrap();
    assert_eq!(drained, Drained { items: 4, pages: 1 });
    let all: Vec<String> = (0..8).map(|k| format!("u{k}")).collect();
    assert_eq!(users(&sink.changes()), all);
    let calls = list_calls(&sim);
    let records = sink.records.lock().unwrap();
    // u4 and u5 were recorded before the call that cleared their page.
    assert!(records[5].0 < calls[2]);
}

#[tokio::test]
async fn a_refused_list_call_is_an_error() {
    let sim = start(2, fast_sim()).await;
    fill(&sim, 2);
    sim.inject_answer(
        SIM_FAILED_LIST,
        json!({"errcode": 60011, "errmsg": "no permission"}),
        1,
    );
    let client = client_for(&job(&sim, &["出勤天数"], &[]));
    let sink = MemorySink::new();
    let e = drain(&client, &sink, &mut Vec::new()).await.unwrap_err();
    assert!(matches!(e, DrainError::Source { .. }), "{e}");
    assert!(e.to_string().contains("60011"), "{e}");
    assert!(sink.changes().is_empty());
    assert_eq!(sim.failed_list_len(), 2);
}

/// A loopback URL nobody listens on (a port just bound and released).
fn closed_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}/none")
}
